//! The wire format of published messages crossing to another shard inside one
//! `ShardMsg::Messages` batch.
//!
//! Hot: `encode` runs once per (published message, remote shard with interest), `Decoder` once
//! per message received from a peer. One message crosses to a shard once, however many
//! subscribers it has there (DESIGN.md invariant 3): the record says whether the receiving
//! shard delivers to its plain subscribers and which queue groups it must pick a member of.
//!
//! Record layout (native endian; both ends are the same process):
//! `account u32 | subject_len u16 | reply_len u16 | headers_len u32 | payload_len u32 |
//!  tried u64 | plain u8 | queue_count u8 | subject | reply | (queue_len u16, queue)* |
//!  headers | payload`
//! `tried` is the set of shards (bit per shard id) that already failed to hand the message to a
//! member of its queue groups; a shard that fails too passes it to one not in the set.

const FIXED_LEN: usize = 4 + 2 + 2 + 4 + 4 + 8 + 1 + 1;

/// One published message as the delivery code sees it.
#[derive(Clone, Copy, Debug)]
pub struct Published<'a> {
    pub subject: &'a [u8],
    pub reply: &'a [u8],
    /// The header block (empty when the message has none).
    pub headers: &'a [u8],
    pub payload: &'a [u8],
}

/// A forwarded message decoded from a batch.
#[derive(Debug)]
pub struct Forwarded<'a> {
    pub account: u32,
    pub msg: Published<'a>,
    /// Deliver to the receiving shard's plain subscribers.
    pub plain: bool,
    /// Shards that could not deliver to a member of the queue groups.
    pub tried: u64,
    queues: &'a [u8],
    queue_count: u8,
}

impl<'a> Forwarded<'a> {
    /// Queue groups in which the receiving shard picks one member.
    pub fn queues(&self) -> QueueNames<'a> {
        QueueNames {
            rest: self.queues,
            left: self.queue_count,
        }
    }
}

pub struct QueueNames<'a> {
    rest: &'a [u8],
    left: u8,
}

impl<'a> Iterator for QueueNames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 || self.rest.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([self.rest[0], self.rest[1]]));
        let name = self.rest.get(2..2 + len)?;
        self.rest = &self.rest[2 + len..];
        self.left -= 1;
        Some(name)
    }
}

/// Whether `msg` fits the record's length fields. Subjects longer than 64 KiB need a
/// `max_control_line` far above nats-server's default; such a message is delivered on its own
/// shard only (the caller logs it) rather than corrupting a batch.
pub fn fits(msg: &Published<'_>) -> bool {
    msg.subject.len() <= usize::from(u16::MAX)
        && msg.reply.len() <= usize::from(u16::MAX)
        && msg.headers.len() <= u32::MAX as usize
        && msg.payload.len() <= u32::MAX as usize
}

/// Appends one record to `batch`. Subjects and queue names are bounded by the control line
/// limit and payloads by `max_payload`, so the length fields cannot overflow (asserted).
pub fn encode(
    batch: &mut Vec<u8>,
    account: u32,
    msg: &Published<'_>,
    plain: bool,
    queues: &[&[u8]],
    tried: u64,
) {
    debug_assert!(msg.subject.len() <= usize::from(u16::MAX));
    debug_assert!(msg.reply.len() <= usize::from(u16::MAX));
    debug_assert!(queues.len() <= usize::from(u8::MAX));
    let queues_len: usize = queues.iter().map(|q| 2 + q.len()).sum();
    batch.reserve(
        FIXED_LEN
            + msg.subject.len()
            + msg.reply.len()
            + queues_len
            + msg.headers.len()
            + msg.payload.len(),
    );
    batch.extend_from_slice(&account.to_ne_bytes());
    batch.extend_from_slice(&(msg.subject.len() as u16).to_ne_bytes());
    batch.extend_from_slice(&(msg.reply.len() as u16).to_ne_bytes());
    batch.extend_from_slice(&(msg.headers.len() as u32).to_ne_bytes());
    batch.extend_from_slice(&(msg.payload.len() as u32).to_ne_bytes());
    batch.extend_from_slice(&tried.to_ne_bytes());
    batch.push(u8::from(plain));
    batch.push(queues.len() as u8);
    batch.extend_from_slice(msg.subject);
    batch.extend_from_slice(msg.reply);
    for q in queues {
        batch.extend_from_slice(&(q.len() as u16).to_ne_bytes());
        batch.extend_from_slice(q);
    }
    batch.extend_from_slice(msg.headers);
    batch.extend_from_slice(msg.payload);
}

/// Iterates the records of a batch. A malformed batch (impossible unless memory is corrupt)
/// ends the iteration instead of panicking.
pub struct Decoder<'a> {
    rest: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(batch: &'a [u8]) -> Decoder<'a> {
        Decoder { rest: batch }
    }

    /// Bytes of the batch not decoded yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }
}

impl<'a> Iterator for Decoder<'a> {
    type Item = Forwarded<'a>;

    fn next(&mut self) -> Option<Forwarded<'a>> {
        let b = self.rest;
        if b.len() < FIXED_LEN {
            return None;
        }
        let account = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
        let subject_len = usize::from(u16::from_ne_bytes([b[4], b[5]]));
        let reply_len = usize::from(u16::from_ne_bytes([b[6], b[7]]));
        let headers_len = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]) as usize;
        let payload_len = u32::from_ne_bytes([b[12], b[13], b[14], b[15]]) as usize;
        let mut tried = [0u8; 8];
        tried.copy_from_slice(&b[16..24]);
        let tried = u64::from_ne_bytes(tried);
        let plain = b[24] != 0;
        let queue_count = b[25];
        let mut at = FIXED_LEN;
        let subject = b.get(at..at + subject_len)?;
        at += subject_len;
        let reply = b.get(at..at + reply_len)?;
        at += reply_len;
        let queues_start = at;
        for _ in 0..queue_count {
            let len = b.get(at..at + 2)?;
            at += 2 + usize::from(u16::from_ne_bytes([len[0], len[1]]));
        }
        let queues = b.get(queues_start..at)?;
        let headers = b.get(at..at + headers_len)?;
        at += headers_len;
        let payload = b.get(at..at + payload_len)?;
        at += payload_len;
        self.rest = &b[at..];
        Some(Forwarded {
            account,
            msg: Published {
                subject,
                reply,
                headers,
                payload,
            },
            plain,
            tried,
            queues,
            queue_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let mut batch = Vec::new();
        let a = Published {
            subject: b"foo.bar",
            reply: b"_INBOX.1",
            headers: b"",
            payload: b"hello",
        };
        let b = Published {
            subject: b"h",
            reply: b"",
            headers: b"NATS/1.0\r\n\r\n",
            payload: b"",
        };
        encode(&mut batch, 0, &a, true, &[], 0);
        encode(&mut batch, 7, &b, false, &[b"workers", b"q2"], 0b101);
        let got: Vec<_> = Decoder::new(&batch).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].msg.subject, b"foo.bar");
        assert_eq!(got[0].msg.reply, b"_INBOX.1");
        assert_eq!(got[0].msg.payload, b"hello");
        assert!(got[0].plain);
        assert_eq!(got[0].queues().count(), 0);
        assert_eq!(got[1].account, 7);
        assert_eq!(got[1].tried, 0b101);
        assert_eq!(got[0].tried, 0);
        assert_eq!(got[1].msg.headers, b"NATS/1.0\r\n\r\n");
        assert!(!got[1].plain);
        let queues: Vec<_> = got[1].queues().collect();
        assert_eq!(queues, vec![&b"workers"[..], &b"q2"[..]]);
    }

    #[test]
    fn oversized_subjects_do_not_fit_a_record() {
        let long = vec![b'a'; usize::from(u16::MAX) + 1];
        let msg = Published {
            subject: &long,
            reply: b"",
            headers: b"",
            payload: b"",
        };
        assert!(!fits(&msg));
        let msg = Published {
            subject: b"ok",
            reply: &long,
            headers: b"",
            payload: b"",
        };
        assert!(!fits(&msg));
        let msg = Published {
            subject: b"ok",
            reply: b"r",
            headers: b"",
            payload: b"x",
        };
        assert!(fits(&msg));
    }

    #[test]
    fn truncated_batches_end_without_panic() {
        let mut batch = Vec::new();
        let a = Published {
            subject: b"foo",
            reply: b"",
            headers: b"",
            payload: b"12345",
        };
        encode(&mut batch, 0, &a, true, &[b"q"], 0);
        for cut in 0..batch.len() {
            assert_eq!(Decoder::new(&batch[..cut]).count(), 0, "cut at {cut}");
        }
        assert_eq!(Decoder::new(&batch).count(), 1);
    }
}
