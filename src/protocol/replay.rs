//! Replaying a byte stream through a [`Parser`] in chunks, the way a connection feeds it.
//!
//! Cold: used by `fuzz_parse` and the tests only; it copies every op into an owned form so runs
//! with different chunkings can be compared. Invariant it checks on the way: an op consumes at
//! least one byte and no more than it was given, and `bytes_needed` is always beyond what the
//! parser already has.

use crate::protocol::parser::{Op, Parser, ParserLimits, ProtocolError};

/// An [`Op`] with its bytes copied out of the read buffer.
#[derive(Clone, Debug, Eq, PartialEq)]
pub enum OwnedOp {
    Connect(Vec<u8>),
    Pub {
        subject: Vec<u8>,
        reply: Vec<u8>,
        payload: Vec<u8>,
    },
    Hpub {
        subject: Vec<u8>,
        reply: Vec<u8>,
        headers: Vec<u8>,
        payload: Vec<u8>,
    },
    Sub {
        subject: Vec<u8>,
        queue: Vec<u8>,
        sid: Vec<u8>,
    },
    Unsub {
        sid: Vec<u8>,
        max: Option<u64>,
    },
    Ping,
    Pong,
    Info(Vec<u8>),
    Ok,
    Err(Vec<u8>),
}

impl From<Op<'_>> for OwnedOp {
    fn from(op: Op<'_>) -> Self {
        match op {
            Op::Connect { json } => OwnedOp::Connect(json.to_vec()),
            Op::Pub {
                subject,
                reply,
                payload,
            } => OwnedOp::Pub {
                subject: subject.to_vec(),
                reply: reply.to_vec(),
                payload: payload.to_vec(),
            },
            Op::Hpub {
                subject,
                reply,
                headers,
                payload,
            } => OwnedOp::Hpub {
                subject: subject.to_vec(),
                reply: reply.to_vec(),
                headers: headers.to_vec(),
                payload: payload.to_vec(),
            },
            Op::Sub {
                subject,
                queue,
                sid,
            } => OwnedOp::Sub {
                subject: subject.to_vec(),
                queue: queue.to_vec(),
                sid: sid.to_vec(),
            },
            Op::Unsub { sid, max } => OwnedOp::Unsub {
                sid: sid.to_vec(),
                max,
            },
            Op::Ping => OwnedOp::Ping,
            Op::Pong => OwnedOp::Pong,
            Op::Info { json } => OwnedOp::Info(json.to_vec()),
            Op::Ok => OwnedOp::Ok,
            Op::Err { text } => OwnedOp::Err(text.to_vec()),
        }
    }
}

/// How the parser of a replay is set up.
#[derive(Clone, Copy, Debug)]
pub struct ReplayConfig {
    pub limits: ParserLimits,
    pub headers: bool,
    /// Start with `set_connect_required(true)`; it is turned off after the first CONNECT.
    pub connect_required: bool,
}

/// What a replay produced.
#[derive(Clone, Debug, Default, Eq, PartialEq)]
pub struct Replay {
    pub ops: Vec<OwnedOp>,
    pub error: Option<ProtocolError>,
    /// Bytes left unconsumed at the end (0 after an error).
    pub unconsumed: usize,
    /// `bytes_needed` at the end (`None` after an error).
    pub bytes_needed: Option<usize>,
}

/// Feed `chunks` one after the other, keeping unconsumed bytes and appending new ones.
pub fn replay<'c>(config: ReplayConfig, chunks: impl IntoIterator<Item = &'c [u8]>) -> Replay {
    let mut parser = Parser::new(config.limits);
    parser.set_headers(config.headers);
    parser.set_connect_required(config.connect_required);
    let mut pending: Vec<u8> = Vec::new();
    let mut result = Replay::default();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        if let Err(e) = drain_ops(&mut parser, &mut pending, &mut result.ops) {
            result.error = Some(e);
            return result;
        }
    }
    result.unconsumed = pending.len();
    result.bytes_needed = parser.bytes_needed();
    result
}

fn drain_ops(
    parser: &mut Parser,
    pending: &mut Vec<u8>,
    ops: &mut Vec<OwnedOp>,
) -> Result<(), ProtocolError> {
    loop {
        let Some((op, consumed)) = parser.parse(pending)? else {
            if let Some(needed) = parser.bytes_needed() {
                assert!(
                    needed > pending.len(),
                    "bytes_needed {needed} <= {}",
                    pending.len()
                );
            }
            return Ok(());
        };
        assert!(consumed > 0, "an op must consume bytes");
        assert!(consumed <= pending.len(), "consumed more than given");
        if let Op::Connect { .. } = op {
            parser.set_connect_required(false);
        }
        ops.push(op.into());
        // Removing the prefix moves the rest to the front: the parser must not care.
        pending.drain(..consumed);
    }
}
