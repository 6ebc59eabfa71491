//! The NATS client protocol: bytes from a client into ops, and ops for a client into bytes.
//!
//! Hot: `parser` (one call per client op) and `encode` (one call per delivered message) do not
//! allocate beyond the connection's own buffers and never copy a payload. Cold: `connect`
//! (CONNECT and INFO JSON, once per connection). No sockets and no clock in here, so every part
//! is tested and fuzzed on plain byte slices.
//!
//! Invariant: the parser gives the same ops and errors for any chunking of a byte stream
//! ([`fuzz_parse`] checks it), and both directions match nats-server 2.9.10 byte for byte.

pub mod connect;
pub mod encode;
pub mod parser;
mod replay;

pub use connect::{ConnectError, ConnectOptions, ServerInfo, check_client_info, validate};
pub use parser::{Op, Parser, ParserLimits, ProtocolError};

use replay::{ReplayConfig, replay};

/// Fuzz entry point (cargo-fuzz target `protocol_parse`): runs the parser over `data` whole, one
/// byte at a time, in fixed-size chunks and split in two at many points, under small limits
/// (so limit errors are reached) and default limits, and panics if any two runs disagree.
pub fn fuzz_parse(data: &[u8]) {
    let small = ReplayConfig {
        limits: ParserLimits {
            max_control_line: 32,
            max_payload: 64,
        },
        headers: true,
        connect_required: false,
    };
    let default = ReplayConfig {
        limits: ParserLimits::default(),
        headers: false,
        connect_required: false,
    };
    let guarded = ReplayConfig {
        connect_required: true,
        ..small
    };
    for config in [small, default, guarded] {
        check_splits(config, data);
    }
}

fn check_splits(config: ReplayConfig, data: &[u8]) {
    let whole = replay(config, [data]);
    let bytewise = replay(config, data.chunks(1));
    assert_eq!(whole, bytewise, "one byte at a time differs from one read");
    for chunk_len in [2, 3, 7, 61] {
        let chunked = replay(config, data.chunks(chunk_len));
        assert_eq!(whole, chunked, "chunks of {chunk_len} differ from one read");
    }
    // Every split point for short inputs, 16 spread-out ones for long inputs.
    let step = (data.len() / 16).max(1);
    for at in (1..data.len()).step_by(step) {
        let (head, tail) = data.split_at(at);
        let split = replay(config, [head, tail]);
        assert_eq!(whole, split, "split at {at} differs from one read");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Seed corpus for the fuzz target; kept here so it is exercised on every `cargo test`.
    const SEEDS: &[&[u8]] = &[
        b"",
        b"CONNECT {\"verbose\":true,\"headers\":true}\r\nSUB foo 1\r\nPUB foo 5\r\nhello\r\n",
        b"SUB\tbar\t2\r\nPUB\tbar\trep.x\t2\r\nhi\r\n",
        b"HPUB h r 22 24\r\nNATS/1.0\r\nAb: defg\r\n\r\nhi\r\n",
        b"SUB inbox 1\r\nPUB nobody inbox 2\r\nhi\r\n",
        b"PUB foo 2000000\r\n",
        b"PUB foo 3\r\nhi\r\n",
        b"ping\r\nPONG\r\n+OK\r\n-ERR 'x'\r\nINFO {}\r\nUNSUB 1 5\r\n",
        b"PUB \nfoo 0\r\n\r\nSUB a\rb 1\n",
        b"PUB a 99999999999999999999999\r\n",
        b"PINGxyz\r\nPUB q 2 \r\nab\r\nMSG a 1 1\r\n",
        b"HPUB foo 3 2\r\n",
        b"SUB aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa 1\r\n",
    ];

    #[test]
    fn fuzz_seed_corpus() {
        for seed in SEEDS {
            fuzz_parse(seed);
        }
    }

    #[test]
    fn fuzz_parse_detects_a_disagreement_free_run_of_real_ops() {
        // Guard against a vacuous harness: the first seed really yields ops under small limits.
        let config = ReplayConfig {
            limits: ParserLimits::default(),
            headers: true,
            connect_required: false,
        };
        let run = replay(config, [SEEDS[1]]);
        assert_eq!(run.ops.len(), 3);
        assert_eq!(run.error, None);
    }

    /// Bytes that look like protocol more often than random bytes do.
    fn protocol_ish() -> impl Strategy<Value = Vec<u8>> {
        let pieces: Vec<&'static [u8]> = vec![
            b"PUB ",
            b"HPUB ",
            b"SUB ",
            b"UNSUB ",
            b"PING",
            b"PONG",
            b"CONNECT ",
            b"INFO ",
            b"+OK",
            b"-ERR ",
            b"pub\t",
            b"\r\n",
            b"\n",
            b"\r",
            b" ",
            b"\t",
            b"foo",
            b"a.b",
            b"0",
            b"1",
            b"2",
            b"12",
            b"5",
            b"hello",
            b"{}",
            b"NATS/1.0\r\n\r\n",
            b"x",
            b"999999999",
            b"1234567890",
        ];
        prop::collection::vec(prop::sample::select(pieces), 0..40).prop_map(|v| v.concat())
    }

    /// One well-formed op with random subject, reply, sid and payload bytes.
    fn valid_op() -> impl Strategy<Value = Vec<u8>> {
        let token = "[a-zA-Z0-9_]{1,6}(\\.[a-z*>]{1,4}){0,2}";
        let payload = prop::collection::vec(any::<u8>(), 0..40);
        let blank = prop::sample::select(vec![" ", "\t", "  ", " \t "]);
        prop_oneof![
            (token, token, payload.clone(), any::<bool>(), blank.clone()).prop_map(
                |(subject, reply, payload, with_reply, blank)| {
                    let reply = if with_reply {
                        format!("{reply}{blank}")
                    } else {
                        String::new()
                    };
                    let line = format!("PUB{blank}{subject}{blank}{reply}{}\r\n", payload.len());
                    [line.as_bytes(), &payload, b"\r\n"].concat()
                }
            ),
            (token, payload.clone(), 0usize..20).prop_map(|(subject, payload, hdr)| {
                let hdr = hdr.min(payload.len());
                let line = format!("HPUB {subject} {hdr} {}\r\n", payload.len());
                [line.as_bytes(), &payload, b"\r\n"].concat()
            }),
            (token, token, 0u32..1000, blank).prop_map(|(subject, queue, sid, blank)| {
                format!("SUB{blank}{subject}{blank}{queue}{blank}{sid}\r\n").into_bytes()
            }),
            (0u32..1000, prop::option::of(0u32..100)).prop_map(|(sid, max)| match max {
                Some(max) => format!("UNSUB {sid} {max}\r\n").into_bytes(),
                None => format!("unsub {sid}\n").into_bytes(),
            }),
            Just(b"PING\r\n".to_vec()),
            Just(b"pong\r\n".to_vec()),
            Just(b"+OK\r\n".to_vec()),
            Just(b"CONNECT {\"verbose\":false}\r\n".to_vec()),
        ]
    }

    /// A script of valid ops, sometimes with one byte overwritten or cut short.
    fn script() -> impl Strategy<Value = Vec<u8>> {
        let ops = prop::collection::vec(valid_op(), 1..12).prop_map(|v| v.concat());
        (ops, any::<prop::sample::Index>(), any::<u8>(), 0u8..4).prop_map(
            |(mut s, at, byte, how)| {
                let at = at.index(s.len());
                match how {
                    0 => s[at] = byte,
                    1 => s.truncate(at),
                    _ => {}
                }
                s
            },
        )
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_are_split_invariant(data in prop::collection::vec(any::<u8>(), 0..200)) {
            fuzz_parse(&data);
        }

        #[test]
        fn protocol_like_bytes_are_split_invariant(data in protocol_ish()) {
            fuzz_parse(&data);
        }

        #[test]
        fn scripts_of_valid_ops_are_split_invariant(data in script()) {
            fuzz_parse(&data);
        }

        #[test]
        fn random_chunkings_agree(
            data in prop_oneof![protocol_ish(), script()],
            cuts in prop::collection::vec(1usize..12, 1..20),
        ) {
            let config = ReplayConfig {
                limits: ParserLimits { max_control_line: 24, max_payload: 16 },
                headers: true,
                connect_required: false,
            };
            let whole = replay(config, [&data[..]]);
            let mut chunks = Vec::new();
            let mut rest = &data[..];
            for cut in cuts.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (head, tail) = rest.split_at((*cut).min(rest.len()));
                chunks.push(head);
                rest = tail;
            }
            prop_assert_eq!(whole, replay(config, chunks));
        }
    }
}
