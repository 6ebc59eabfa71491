//! The wire format of published messages crossing to another shard inside one
//! `ShardMsg::Messages` batch.
//!
//! Hot: `encode` runs once per (published message, remote shard with interest), `Decoder` once
//! per message received from a peer. One message crosses to a shard once, however many
//! subscribers it has there (DESIGN.md invariant 3): the record says whether the receiving
//! shard delivers to its plain subscribers and which queue groups it must pick a member of.
//!
//! Record layout (native endian; both ends are the same process):
//! `account u32 | subject_len u32 | reply_len u32 | headers_len u32 | payload_len u32 |
//!  tried u64 | no_echo u64 | queue_count u32 | plain u8 | subject | reply |
//!  (queue_len u32, queue)* | headers | payload`
//! `tried` is the set of shards (bit per shard id) that already failed to hand the message to a
//! member of its queue groups; a shard that fails too passes it to one not in the set.
//! `no_echo` is the client id of a publisher that turned echo off (0: none), so the message
//! never reaches that publisher's own subscriptions, even when passed back to its shard.
//!
//! Invariant: every length and count field is as wide as what the protocol allows, so no
//! message a client may send is ever narrowed. Subjects, replies and queue names are bounded by
//! `max_control_line` and headers and payloads by `max_payload`, both int32 in nats-server and
//! here; a queue group count is bounded by the subscription slab's `u32` keys. `fits` checks
//! each field against `FIELD_MAX` on every build all the same, and the caller keeps a message
//! that does not fit on its own shard (logged) rather than corrupting a batch. (The queue count
//! was once a byte guarded by a `debug_assert!`: 300 queue groups made the receiver read queue
//! names as payload.)

/// Largest value of any length or count field of a record.
pub const FIELD_MAX: usize = u32::MAX as usize;

const FIXED_LEN: usize = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 1;

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
    /// Client id of a publisher with echo off (0: none).
    pub no_echo: u64,
    queues: &'a [u8],
    queue_count: u32,
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
    left: u32,
}

impl<'a> Iterator for QueueNames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        let (len, rest) = read_len(self.rest)?;
        let name = rest.get(..len)?;
        self.rest = &rest[len..];
        self.left -= 1;
        Some(name)
    }
}

/// Whether `msg` fits the record's length fields (always, within the protocol's limits; see
/// the module doc).
pub fn fits(msg: &Published<'_>) -> bool {
    len_fits(msg.subject.len())
        && len_fits(msg.reply.len())
        && len_fits(msg.headers.len())
        && len_fits(msg.payload.len())
}

/// Whether a record may list these queue groups: their count and each name's length fit.
pub fn queues_fit<'q>(mut names: impl ExactSizeIterator<Item = &'q [u8]>) -> bool {
    len_fits(names.len()) && names.all(|name| len_fits(name.len()))
}

#[inline]
fn len_fits(len: usize) -> bool {
    len <= FIELD_MAX
}

/// Appends one record to `batch`. The caller has checked `fits` and `queues_fit`; a field that
/// does not fit panics here (on every build) rather than corrupting the batch.
pub fn encode(
    batch: &mut Vec<u8>,
    account: u32,
    msg: &Published<'_>,
    plain: bool,
    queues: &[&[u8]],
    tried: u64,
    no_echo: u64,
) {
    let queues_len: usize = queues.iter().map(|q| 4 + q.len()).sum();
    batch.reserve(
        FIXED_LEN
            + msg.subject.len()
            + msg.reply.len()
            + queues_len
            + msg.headers.len()
            + msg.payload.len(),
    );
    batch.extend_from_slice(&account.to_ne_bytes());
    push_len(batch, msg.subject.len());
    push_len(batch, msg.reply.len());
    push_len(batch, msg.headers.len());
    push_len(batch, msg.payload.len());
    batch.extend_from_slice(&tried.to_ne_bytes());
    batch.extend_from_slice(&no_echo.to_ne_bytes());
    push_len(batch, queues.len());
    batch.push(u8::from(plain));
    batch.extend_from_slice(msg.subject);
    batch.extend_from_slice(msg.reply);
    for q in queues {
        push_len(batch, q.len());
        batch.extend_from_slice(q);
    }
    batch.extend_from_slice(msg.headers);
    batch.extend_from_slice(msg.payload);
}

#[inline]
fn push_len(batch: &mut Vec<u8>, len: usize) {
    // Checked by `fits`/`queues_fit` before any record is started (see the module doc).
    let len = u32::try_from(len).expect("record field checked by fits()");
    batch.extend_from_slice(&len.to_ne_bytes());
}

/// Reads one `u32` length; `None` when the bytes end first.
#[inline]
fn read_len(b: &[u8]) -> Option<(usize, &[u8])> {
    let (len, rest) = b.split_first_chunk::<4>()?;
    Some((usize::try_from(u32::from_ne_bytes(*len)).ok()?, rest))
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
        let (account, rest) = b.split_first_chunk::<4>()?;
        let account = u32::from_ne_bytes(*account);
        let (subject_len, rest) = read_len(rest)?;
        let (reply_len, rest) = read_len(rest)?;
        let (headers_len, rest) = read_len(rest)?;
        let (payload_len, rest) = read_len(rest)?;
        let (tried, rest) = rest.split_first_chunk::<8>()?;
        let tried = u64::from_ne_bytes(*tried);
        let (no_echo, rest) = rest.split_first_chunk::<8>()?;
        let no_echo = u64::from_ne_bytes(*no_echo);
        let (queue_count, rest) = rest.split_first_chunk::<4>()?;
        let queue_count = u32::from_ne_bytes(*queue_count);
        let plain = rest.first()? != &0;
        let mut at = FIXED_LEN;
        let subject = b.get(at..at + subject_len)?;
        at += subject_len;
        let reply = b.get(at..at + reply_len)?;
        at += reply_len;
        let queues_start = at;
        // Each name takes at least 4 bytes, so a corrupt count ends with the batch.
        for _ in 0..queue_count {
            let (len, _) = read_len(b.get(at..)?)?;
            at += 4 + len;
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
            no_echo,
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
        encode(&mut batch, 0, &a, true, &[], 0, 0);
        encode(&mut batch, 7, &b, false, &[b"workers", b"q2"], 0b101, 0);
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

    /// Round-trips one record with `count` queue groups and checks every field.
    fn round_trip_queues(count: usize) {
        let names: Vec<Vec<u8>> = (0..count).map(|i| format!("q{i}").into_bytes()).collect();
        let names: Vec<&[u8]> = names.iter().map(Vec::as_slice).collect();
        assert!(queues_fit(names.iter().copied()));
        let msg = Published {
            subject: b"fan",
            reply: b"r",
            headers: b"",
            payload: b"hello",
        };
        let mut batch = Vec::new();
        encode(&mut batch, 3, &msg, true, &names, 0, 0);
        encode(&mut batch, 4, &msg, false, &[], 0, 0);
        let got: Vec<_> = Decoder::new(&batch).collect();
        assert_eq!(got.len(), 2, "{count} queues");
        assert_eq!(got[0].msg.payload, b"hello", "{count} queues");
        assert!(got[0].queues().eq(names.iter().copied()), "{count} queues");
        assert_eq!(got[1].account, 4, "{count} queues");
        assert_eq!(got[1].msg.payload, b"hello", "{count} queues");
    }

    #[test]
    fn queue_counts_past_a_byte_and_past_16_bits_round_trip() {
        for count in [255, 256, 300, 65_535, 65_536, 70_000] {
            round_trip_queues(count);
        }
    }

    #[test]
    fn lengths_past_16_bits_round_trip() {
        let long = vec![b'a'; usize::from(u16::MAX) + 1];
        let msg = Published {
            subject: &long,
            reply: &long,
            headers: b"",
            payload: &long,
        };
        assert!(fits(&msg));
        let names: [&[u8]; 2] = [&long, b"q"];
        assert!(queues_fit(names.iter().copied()));
        let mut batch = Vec::new();
        encode(&mut batch, 0, &msg, true, &names, 0, 0);
        encode(&mut batch, 1, &msg, true, &[], 0, 0);
        let got: Vec<_> = Decoder::new(&batch).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].msg.subject.len(), long.len());
        assert_eq!(got[0].msg.reply.len(), long.len());
        assert_eq!(got[0].msg.payload.len(), long.len());
        assert!(got[0].queues().eq(names.iter().copied()));
        assert_eq!(got[1].account, 1);
    }

    #[test]
    fn fields_fit_up_to_their_limit_and_not_past_it() {
        assert!(len_fits(FIELD_MAX));
        assert!(!len_fits(FIELD_MAX + 1));
        // The protocol's own limits (int32 `max_control_line` and `max_payload`) fit.
        assert!(len_fits(i32::MAX as usize));
    }

    #[test]
    #[should_panic(expected = "checked by fits")]
    fn a_field_past_its_limit_is_refused_on_every_build() {
        let mut batch = Vec::new();
        push_len(&mut batch, FIELD_MAX + 1);
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
        encode(&mut batch, 0, &a, true, &[b"q"], 0, 0);
        for cut in 0..batch.len() {
            assert_eq!(Decoder::new(&batch[..cut]).count(), 0, "cut at {cut}");
        }
        assert_eq!(Decoder::new(&batch).count(), 1);
    }
}
