//! Replies across accounts for service imports.
//!
//! Cold per request, hot-ish per reply: a request that crosses from an importing account into
//! the exporting one gets its reply subject rewritten to `_R_.<importer>.<tag>.<reply>`; a
//! publish to such a subject, from any shard, is delivered in the importer's account on the
//! original reply subject. The mapping lives in the subject itself, so every shard can route a
//! reply without shared state (DESIGN.md invariant 1); `tag` is a keyed hash (SipHash with a
//! per-process random key) over importer and reply, so a client cannot forge a subject that
//! injects into another account.
//! nats-server does the same job with per-request response imports (`addRespServiceImport`).

use std::hash::{BuildHasher, Hasher};

/// The reserved prefix of rewritten replies (nats-server `replyPrefix`).
pub const REPLY_PREFIX: &[u8] = b"_R_.";

/// Reply prefixes a client may not use as its own reply subject (nats-server
/// `isReservedReply`): they would impersonate internal routing.
pub fn is_reserved_reply(reply: &[u8]) -> bool {
    reply.starts_with(REPLY_PREFIX) || reply.starts_with(b"$JS.ACK.") || reply.starts_with(b"$GNR.")
}

/// Rewrites and resolves service-import replies; one per process, shared by all shards.
#[derive(Clone)]
pub struct ReplyMapper {
    keys: std::collections::hash_map::RandomState,
}

impl Default for ReplyMapper {
    fn default() -> Self {
        ReplyMapper {
            keys: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl ReplyMapper {
    /// Writes the rewritten reply for a request from `importer` with reply `reply` into `out`.
    pub fn encode(&self, importer: u32, reply: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(REPLY_PREFIX);
        let mut id = itoa::Buffer::new();
        out.extend_from_slice(id.format(importer).as_bytes());
        out.push(b'.');
        let tag = self.tag(importer, reply);
        out.extend_from_slice(format!("{tag:016x}").as_bytes());
        out.push(b'.');
        out.extend_from_slice(reply);
    }

    /// The importer account and original reply of a rewritten reply subject, if `subject` is
    /// one and its tag is genuine.
    pub fn decode<'a>(&self, subject: &'a [u8]) -> Option<(u32, &'a [u8])> {
        let rest = subject.strip_prefix(REPLY_PREFIX)?;
        let dot = memchr::memchr(b'.', rest)?;
        let importer: u32 = std::str::from_utf8(&rest[..dot]).ok()?.parse().ok()?;
        let rest = &rest[dot + 1..];
        let dot = memchr::memchr(b'.', rest)?;
        let tag = u64::from_str_radix(std::str::from_utf8(&rest[..dot]).ok()?, 16).ok()?;
        let reply = &rest[dot + 1..];
        (!reply.is_empty() && tag == self.tag(importer, reply)).then_some((importer, reply))
    }

    fn tag(&self, importer: u32, reply: &[u8]) -> u64 {
        let mut h = self.keys.build_hasher();
        h.write_u32(importer);
        h.write(reply);
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_round_trip_and_forgeries_fail() {
        let mapper = ReplyMapper::default();
        let mut out = Vec::new();
        mapper.encode(3, b"_INBOX.abc.1", &mut out);
        assert!(out.starts_with(b"_R_.3."));
        assert_eq!(mapper.decode(&out), Some((3, &b"_INBOX.abc.1"[..])));
        // Another importer, another reply, or another process's key: refused.
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            mapper.decode(text.replacen("_R_.3.", "_R_.4.", 1).as_bytes()),
            None
        );
        assert_eq!(mapper.decode(format!("{text}x").as_bytes()), None);
        assert_eq!(ReplyMapper::default().decode(&out), None);
        assert_eq!(mapper.decode(b"_R_.1.zz.x"), None);
        assert_eq!(mapper.decode(b"_R_."), None);
        assert_eq!(mapper.decode(b"foo"), None);
    }

    #[test]
    fn reserved_replies() {
        assert!(is_reserved_reply(b"_R_.x"));
        assert!(is_reserved_reply(b"$JS.ACK.a"));
        assert!(is_reserved_reply(b"$GNR.a"));
        assert!(!is_reserved_reply(b"_INBOX.x"));
    }
}
