//! Hostile and broken input never takes the server down.
//!
//! Checked, each input on its own raw connection: seeded random bytes (bounded count and size,
//! some behind a real operation name so they reach the argument parsers), truncated operations,
//! absurd and negative sizes, binary junk, operations only a server may send, and 1 MiB lines
//! with no newline. Where nats-server 2.9.10 answers deterministically, the exact answer is
//! asserted (`-ERR` text or a silent close). After each input the client half-closes and waits
//! for the server to close, so the input was fully processed; then a separate connection must
//! still publish and receive, and the server process must still be running. Guards the rule
//! that network input ends at most in a `-ERR` and a close for that one connection.

mod common;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use common::{QUIET, RawConn, ReadEnd, Server, show};

const SEED: u64 = 0x5eed_f00d_6a7b_a6e0;
const RANDOM_INPUTS: usize = 48;
const RANDOM_BYTES_MAX: usize = 8 * 1024;

/// Sends `input` after CONNECT, half-closes, and returns every line the server sent before it
/// closed the connection (a reset after the lines counts as a close).
fn send_garbage(server: &Server, input: &[u8]) -> Vec<Vec<u8>> {
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(QUIET);
    // The server may close mid-input; what it does with it is checked below.
    let _ = conn.send_lossy(input);
    conn.shutdown_write();
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + common::TIMEOUT;
    loop {
        match conn.try_read_line(deadline) {
            Ok(line) => lines.push(line),
            Err(ReadEnd::Closed(_)) => return lines,
            Err(ReadEnd::Timeout) => panic!("server kept {} open", show(input)),
        }
    }
}

/// A new connection still does pub/sub, and the process is alive.
fn assert_healthy(server: &mut Server, context: &[u8]) {
    server.assert_alive();
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(QUIET);
    conn.send(b"SUB health.check 1\r\nPUB health.check 2\r\nok\r\n");
    let msg = conn.read_msg();
    assert_eq!(msg.payload, b"ok", "after {}", show(context));
}

#[test]
fn seeded_random_bytes() {
    let mut server = Server::start("");
    let mut rng = StdRng::seed_from_u64(SEED);
    let prefixes: [&[u8]; 6] = [b"", b"PUB ", b"SUB ", b"HPUB ", b"CONNECT ", b"UNSUB "];
    for index in 0..RANDOM_INPUTS {
        let len = rng.gen_range(1..=RANDOM_BYTES_MAX);
        let mut input = prefixes[index % prefixes.len()].to_vec();
        input.extend((0..len).map(|_| rng.r#gen::<u8>()));
        send_garbage(&server, &input);
        assert_healthy(&mut server, &input);
    }
}

#[test]
fn truncated_operations_are_never_delivered() {
    let mut server = Server::start("");
    let mut watcher = RawConn::connect(server.port());
    watcher.send_connect(QUIET);
    watcher.send(b"SUB > 1\r\n");
    watcher.expect_open();
    let inputs: [&[u8]; 8] = [
        b"P",
        b"PU",
        b"PUB",
        b"PUB a",
        b"PUB a 5",
        b"PUB a 5\r\nhel",
        b"HPUB a 12 14\r\nNATS/1.0\r\n",
        b"SUB a 1\r\nPUB a 10\r\n0123",
    ];
    for input in inputs {
        let lines = send_garbage(&server, input);
        // nats-server treats a client's EOF as a close; it sends nothing for a partial op.
        assert!(lines.is_empty(), "{} got {:?}", show(input), lines);
        assert_healthy(&mut server, input);
    }
    // Nothing partial reached the watcher: the next message it sees is this marker.
    let mut marker = RawConn::connect(server.port());
    marker.send_connect(QUIET);
    marker.send(b"PUB z.marker 1\r\nm\r\n");
    marker.expect_open();
    let mut seen = watcher.read_msg();
    while seen.subject == "health.check" {
        seen = watcher.read_msg();
    }
    assert_eq!(
        seen.subject, "z.marker",
        "partial publish delivered: {seen:?}"
    );
}

#[test]
fn absurd_sizes_close_without_err() {
    let mut server = Server::start("");
    let inputs: [&[u8]; 6] = [
        b"PUB a 99999999999999999999\r\n",
        b"PUB a 18446744073709551616\r\n",
        b"PUB a -1\r\n",
        b"PUB a 1x\r\n",
        b"HPUB a 5 3\r\n",
        b"HPUB a -5 3\r\n",
    ];
    for input in inputs {
        let lines = send_garbage_with_headers(&server, input);
        assert!(
            lines.is_empty(),
            "{}: nats-server closes silently, got {:?}",
            show(input),
            lines
        );
        assert_healthy(&mut server, input);
    }
}

/// Like `send_garbage` with `headers:true`, so that HPUB reaches its size checks.
fn send_garbage_with_headers(server: &Server, input: &[u8]) -> Vec<Vec<u8>> {
    let mut with_connect = br#"CONNECT {"verbose":false,"pedantic":false,"headers":true}"#.to_vec();
    with_connect.extend_from_slice(b"\r\n");
    with_connect.extend_from_slice(input);
    send_garbage(server, &with_connect)
}

#[test]
fn binary_junk_and_misplaced_ops_are_unknown_operations() {
    let mut server = Server::start("");
    let inputs: [&[u8]; 5] = [
        b"\x00\xff\xfe\r\n",
        b"\xde\xad\xbe\xef",
        b"\r\n",
        b"MSG a 1 2\r\nhi\r\n",
        b"UNSUB\r\n",
    ];
    for input in inputs {
        let lines = send_garbage(&server, input);
        assert_eq!(
            lines,
            [b"-ERR 'Unknown Protocol Operation'".to_vec()],
            "{}",
            show(input)
        );
        assert_healthy(&mut server, input);
    }
}

#[test]
fn server_side_ops_from_a_client() {
    let mut server = Server::start("");
    // nats-server ignores INFO, +OK and PONG from a client...
    for input in [&b"INFO {}\r\n"[..], b"+OK\r\n", b"PONG\r\n"] {
        let mut conn = RawConn::connect(server.port());
        conn.send_connect(QUIET);
        conn.send(input);
        conn.expect_open();
        assert_healthy(&mut server, input);
    }
    // ...and closes, without a reply, on a client's -ERR.
    let lines = send_garbage(&server, b"-ERR 'x'\r\nPING\r\n");
    assert!(lines.is_empty(), "got {lines:?}");
    assert_healthy(&mut server, b"-ERR");
}

#[test]
fn megabyte_lines_without_newline() {
    let mut server = Server::start("");
    let megabyte = vec![b'A'; 1 << 20];
    let cases: [(&[u8], &str); 3] = [
        (b"", "Unknown Protocol Operation"),
        (b"SUB ", "maximum control line exceeded"),
        (b"PUB ", "maximum control line exceeded"),
    ];
    for (prefix, err) in cases {
        let input = [prefix, &megabyte].concat();
        let lines = send_garbage(&server, &input);
        // The server closes with most of the input unread, so the kernel may reset the
        // connection; the -ERR line can be lost then, but nothing else may arrive.
        let expected = format!("-ERR '{err}'").into_bytes();
        assert!(
            lines.iter().all(|l| *l == expected),
            "{}: {:?}",
            show(prefix),
            lines
        );
        assert_healthy(&mut server, prefix);
    }
    // A huge CONNECT is a control line like any other.
    let input = [&b"CONNECT {\"name\":\""[..], &megabyte].concat();
    let lines = send_garbage(&server, &input);
    let expected = b"-ERR 'maximum control line exceeded'".to_vec();
    assert!(lines.iter().all(|l| *l == expected), "CONNECT: {lines:?}");
    assert_healthy(&mut server, b"CONNECT");
}
