//! Replies across accounts for service imports.
//!
//! Cold per request, hot-ish per reply. A request that crosses from an importing account into
//! the exporting one gets a fresh reply subject `_R_.<token>`, and the shard that routed the
//! request (the owner) records what the token stands for in its [`ResponseMaps`]: importer,
//! exporter, the original reply, the export's `response_type` and `response_threshold`. The
//! token is 128 bits written as 32 hex digits: a keyed tag (SipHash with a per-process random
//! key) and the owner shard with the entry's sequence number masked by a second keyed hash of
//! that tag. It reveals neither the importer nor its inbox, cannot be forged, and names no
//! account by number, so a reload that reorders accounts does not change what it means (the
//! table is remapped by account name instead).
//!
//! A publish on a genuine token, from any shard, goes to the owner (`ShardMsg::Response`), which
//! alone decides: only a publish made in the exporting account is delivered, in the importer's
//! account on the original reply; a `singleton` entry is used once, `stream` and `chunked`
//! entries until an empty message, and every entry lapses `response_threshold` after its last
//! use (nats-server `addRespServiceImport`, `processServiceImport`, `checkExpiredResponses`).
//! Anything else is an ordinary publish in the publisher's own account.
//!
//! Invariant: a shard's table holds at most [`RESPONSE_MAPS_MAX`] entries (used and unused
//! slots alike) and [`RESPONSE_MAP_BYTES_MAX`] bytes of replies; past either, the oldest entry
//! is dropped and its reply can no longer be delivered.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use crate::ids::ShardId;

/// The reserved prefix of rewritten replies (nats-server `replyPrefix`).
pub const REPLY_PREFIX: &[u8] = b"_R_.";
/// Hex digits after [`REPLY_PREFIX`]: a 64-bit tag and a 64-bit masked (shard, sequence).
const TOKEN_HEX_LEN: usize = 32;
/// Bits of the sequence number in a token; the shard id takes the 16 above them.
const SEQ_BITS: u32 = 48;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;
/// Response entries one shard keeps (used slots and holes alike); past it the oldest goes.
pub const RESPONSE_MAPS_MAX: usize = 65_536;
/// Bytes of original reply subjects one shard keeps; past it the oldest entries go.
pub const RESPONSE_MAP_BYTES_MAX: usize = 16 * 1024 * 1024;
/// nats-server `DEFAULT_SERVICE_EXPORT_RESPONSE_THRESHOLD`.
pub const RESPONSE_THRESHOLD_DEFAULT: Duration = Duration::from_secs(120);

const _: () = assert!(RESPONSE_MAPS_MAX as u64 <= SEQ_MASK);

/// Reply prefixes a client may not use as its own reply subject (nats-server
/// `isReservedReply`): they would impersonate internal routing.
pub fn is_reserved_reply(reply: &[u8]) -> bool {
    reply.starts_with(REPLY_PREFIX) || reply.starts_with(b"$JS.ACK.") || reply.starts_with(b"$GNR.")
}

/// A service export's `response_type` (nats-server `ServiceRespType`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ResponseType {
    /// One reply per request (the default).
    #[default]
    Singleton,
    /// Any number of replies, until an empty message or the threshold.
    Stream,
    /// As `Stream` (nats-server treats them alike when routing).
    Chunked,
}

impl ResponseType {
    /// Parses a config value as nats-server does (`single`, `singleton`, `stream`, `chunk`,
    /// `chunked`, any case).
    pub fn from_config(text: &str) -> Option<ResponseType> {
        match text.to_ascii_lowercase().as_str() {
            "single" | "singleton" => Some(ResponseType::Singleton),
            "stream" => Some(ResponseType::Stream),
            "chunk" | "chunked" => Some(ResponseType::Chunked),
            _ => None,
        }
    }
}

/// How replies to one service export behave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseSettings {
    pub kind: ResponseType,
    /// How long a reply subject stays valid after its creation or last use.
    pub threshold: Duration,
}

impl Default for ResponseSettings {
    fn default() -> Self {
        ResponseSettings {
            kind: ResponseType::Singleton,
            threshold: RESPONSE_THRESHOLD_DEFAULT,
        }
    }
}

/// What a genuine reply token names: the owner shard and its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyToken {
    pub shard: ShardId,
    pub seq: u64,
}

/// Writes and reads reply tokens; one per process, shared by all shards.
#[derive(Clone)]
pub struct ReplyMapper {
    tag_keys: std::collections::hash_map::RandomState,
    mask_keys: std::collections::hash_map::RandomState,
}

impl Default for ReplyMapper {
    fn default() -> Self {
        ReplyMapper {
            tag_keys: std::collections::hash_map::RandomState::new(),
            mask_keys: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl ReplyMapper {
    /// Writes the reply subject for entry `seq` of shard `shard` into `out` (cleared first).
    pub fn encode(&self, token: ReplyToken, out: &mut Vec<u8>) {
        debug_assert!(token.seq <= SEQ_MASK);
        let plain = (u64::from(token.shard.0) << SEQ_BITS) | (token.seq & SEQ_MASK);
        let tag = self.tag(plain);
        out.clear();
        out.extend_from_slice(REPLY_PREFIX);
        push_hex(out, tag);
        push_hex(out, plain ^ self.mask(tag));
    }

    /// The token of a reply subject, if `subject` is one this process wrote.
    pub fn decode(&self, subject: &[u8]) -> Option<ReplyToken> {
        let hex = subject.strip_prefix(REPLY_PREFIX)?;
        if hex.len() != TOKEN_HEX_LEN {
            return None;
        }
        let tag = parse_hex(&hex[..16])?;
        let plain = parse_hex(&hex[16..])? ^ self.mask(tag);
        (self.tag(plain) == tag).then_some(ReplyToken {
            shard: ShardId(u16::try_from(plain >> SEQ_BITS).ok()?),
            seq: plain & SEQ_MASK,
        })
    }

    fn tag(&self, plain: u64) -> u64 {
        let mut h = self.tag_keys.build_hasher();
        h.write_u64(plain);
        h.finish()
    }

    fn mask(&self, tag: u64) -> u64 {
        let mut h = self.mask_keys.build_hasher();
        h.write_u64(tag);
        h.finish()
    }
}

fn push_hex(out: &mut Vec<u8>, v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..16).rev() {
        out.push(DIGITS[((v >> (shift * 4)) & 0xf) as usize]);
    }
}

fn parse_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |v, &d| {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some((v << 4) | u64::from(nibble))
    })
}

/// One shard's pending service-import replies, oldest first. Owned by the shard that routed
/// the requests; see the module doc for the rules it applies.
#[derive(Debug, Default)]
pub struct ResponseMaps {
    /// Sequence number of `slots[0]`.
    base: u64,
    /// `None` = used up or expired, kept until it reaches the front.
    slots: VecDeque<Option<ResponseEntry>>,
    /// Bytes of the replies held.
    reply_bytes: usize,
}

#[derive(Debug)]
struct ResponseEntry {
    importer: u32,
    exporter: u32,
    reply: Box<[u8]>,
    settings: ResponseSettings,
    deadline: Instant,
}

/// What to do with a reply published on a token this shard owns.
#[derive(Debug, PartialEq, Eq)]
pub enum ResponseRoute {
    /// Deliver in account `importer` on the reply written into the caller's buffer, then call
    /// [`ResponseMaps::settle`].
    Deliver { importer: u32 },
    /// Not a reply this entry accepts (unknown, used up, expired, or published outside the
    /// exporting account): an ordinary publish.
    Ordinary,
}

impl ResponseMaps {
    pub fn new() -> ResponseMaps {
        ResponseMaps::default()
    }

    /// Records a request from `importer` with reply `reply` routed to `exporter`; returns the
    /// sequence number to put in its token.
    pub fn insert(
        &mut self,
        importer: u32,
        exporter: u32,
        reply: &[u8],
        settings: ResponseSettings,
        now: Instant,
    ) -> u64 {
        self.trim_front(now);
        while self.slots.len() >= RESPONSE_MAPS_MAX
            || (!self.slots.is_empty() && self.reply_bytes + reply.len() > RESPONSE_MAP_BYTES_MAX)
        {
            self.pop_front();
        }
        let seq = self.base + self.slots.len() as u64;
        self.reply_bytes += reply.len();
        self.slots.push_back(Some(ResponseEntry {
            importer,
            exporter,
            reply: reply.into(),
            settings,
            deadline: now + settings.threshold,
        }));
        seq
    }

    /// Looks entry `seq` up for a publish made in `publisher_account`; on `Deliver` the
    /// original reply is in `reply` (cleared first).
    pub fn route(
        &mut self,
        seq: u64,
        publisher_account: u32,
        now: Instant,
        reply: &mut Vec<u8>,
    ) -> ResponseRoute {
        let Some(index) = self.index_of(seq) else {
            return ResponseRoute::Ordinary;
        };
        let Some(entry) = &self.slots[index] else {
            return ResponseRoute::Ordinary;
        };
        if now > entry.deadline {
            self.remove(index);
            return ResponseRoute::Ordinary;
        }
        if entry.exporter != publisher_account {
            return ResponseRoute::Ordinary;
        }
        reply.clear();
        reply.extend_from_slice(&entry.reply);
        ResponseRoute::Deliver {
            importer: entry.importer,
        }
    }

    /// After a delivered (`Deliver`) reply: drops the entry when it was not delivered to
    /// anyone, is a singleton, or `ended` (an empty message); else restarts its threshold.
    pub fn settle(&mut self, seq: u64, delivered: bool, ended: bool, now: Instant) {
        let Some(index) = self.index_of(seq) else {
            return;
        };
        let Some(entry) = &mut self.slots[index] else {
            return;
        };
        if !delivered || ended || entry.settings.kind == ResponseType::Singleton {
            self.remove(index);
        } else {
            entry.deadline = now + entry.settings.threshold;
        }
    }

    /// Forgets entry `seq` (its request reached no responder).
    pub fn forget(&mut self, seq: u64) {
        if let Some(index) = self.index_of(seq) {
            self.remove(index);
        }
    }

    /// After a reload: gives every entry its accounts' new ids (`new_id` maps an old id to the
    /// new one, by name), dropping entries whose accounts are gone.
    pub fn remap_accounts(&mut self, new_id: impl Fn(u32) -> Option<u32>) {
        for index in 0..self.slots.len() {
            let Some(entry) = &mut self.slots[index] else {
                continue;
            };
            match (new_id(entry.importer), new_id(entry.exporter)) {
                (Some(importer), Some(exporter)) => {
                    entry.importer = importer;
                    entry.exporter = exporter;
                }
                _ => self.remove(index),
            }
        }
        self.trim_holes();
    }

    /// Entries that can still be used.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn index_of(&self, seq: u64) -> Option<usize> {
        let index = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        (index < self.slots.len()).then_some(index)
    }

    fn remove(&mut self, index: usize) {
        if let Some(entry) = self.slots[index].take() {
            self.reply_bytes -= entry.reply.len();
        }
        self.trim_holes();
    }

    /// Drops used-up slots and expired entries from the front.
    fn trim_front(&mut self, now: Instant) {
        while let Some(front) = self.slots.front() {
            match front {
                Some(entry) if now <= entry.deadline => return,
                _ => self.pop_front(),
            }
        }
    }

    fn trim_holes(&mut self) {
        while let Some(None) = self.slots.front() {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(Some(entry)) = self.slots.pop_front() {
            self.reply_bytes -= entry.reply.len();
        }
        self.base += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: ResponseSettings = ResponseSettings {
        kind: ResponseType::Stream,
        threshold: Duration::from_secs(10),
    };

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let mapper = ReplyMapper::default();
        let mut out = Vec::new();
        let token = ReplyToken {
            shard: ShardId(3),
            seq: 77,
        };
        mapper.encode(token, &mut out);
        assert_eq!(out.len(), REPLY_PREFIX.len() + TOKEN_HEX_LEN);
        assert_eq!(mapper.decode(&out), Some(token));
        // Another token differs everywhere that matters; a changed digit, a longer subject or
        // another process's key is refused.
        let mut other = Vec::new();
        mapper.encode(
            ReplyToken {
                shard: ShardId(3),
                seq: 78,
            },
            &mut other,
        );
        assert_ne!(out[4..20], other[4..20]);
        let mut flipped = out.clone();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(mapper.decode(&flipped), None);
        let mut longer = out.clone();
        longer.push(b'0');
        assert_eq!(mapper.decode(&longer), None);
        assert_eq!(ReplyMapper::default().decode(&out), None);
        assert_eq!(mapper.decode(b"_R_."), None);
        assert_eq!(mapper.decode(b"foo"), None);
    }

    #[test]
    fn singleton_is_used_once_and_only_by_the_exporter() {
        let mut maps = ResponseMaps::new();
        let now = Instant::now();
        let seq = maps.insert(1, 2, b"_INBOX.a.1", ResponseSettings::default(), now);
        let mut reply = Vec::new();
        assert_eq!(maps.route(seq, 3, now, &mut reply), ResponseRoute::Ordinary);
        assert_eq!(maps.route(seq, 1, now, &mut reply), ResponseRoute::Ordinary);
        let route = maps.route(seq, 2, now, &mut reply);
        assert_eq!(route, ResponseRoute::Deliver { importer: 1 });
        assert_eq!(reply, b"_INBOX.a.1");
        maps.settle(seq, true, false, now);
        assert_eq!(maps.route(seq, 2, now, &mut reply), ResponseRoute::Ordinary);
        assert!(maps.is_empty());
    }

    #[test]
    fn stream_lasts_until_an_empty_message_or_the_threshold() {
        let mut maps = ResponseMaps::new();
        let t0 = Instant::now();
        let seq = maps.insert(1, 2, b"r", STREAM, t0);
        let mut reply = Vec::new();
        for i in 1..4 {
            let at = t0 + Duration::from_secs(8 * i);
            let route = maps.route(seq, 2, at, &mut reply);
            assert_eq!(route, ResponseRoute::Deliver { importer: 1 }, "reply {i}");
            maps.settle(seq, true, false, at);
        }
        // The threshold counts from the last use.
        let late = t0 + Duration::from_secs(24 + 11);
        assert_eq!(
            maps.route(seq, 2, late, &mut reply),
            ResponseRoute::Ordinary
        );
        let seq = maps.insert(1, 2, b"r", STREAM, t0);
        assert!(matches!(
            maps.route(seq, 2, t0, &mut reply),
            ResponseRoute::Deliver { .. }
        ));
        maps.settle(seq, true, true, t0);
        assert_eq!(maps.route(seq, 2, t0, &mut reply), ResponseRoute::Ordinary);
        // Not delivered to anyone: dropped too.
        let seq = maps.insert(1, 2, b"r", STREAM, t0);
        maps.settle(seq, false, false, t0);
        assert!(maps.is_empty());
    }

    #[test]
    fn table_is_bounded_by_count_and_bytes() {
        let mut maps = ResponseMaps::new();
        let now = Instant::now();
        let first = maps.insert(1, 2, b"first", ResponseSettings::default(), now);
        for _ in 0..RESPONSE_MAPS_MAX {
            maps.insert(1, 2, b"r", ResponseSettings::default(), now);
        }
        assert_eq!(maps.slots.len(), RESPONSE_MAPS_MAX);
        let mut reply = Vec::new();
        assert_eq!(
            maps.route(first, 2, now, &mut reply),
            ResponseRoute::Ordinary
        );
        let big = vec![b'x'; RESPONSE_MAP_BYTES_MAX / 4 + 1];
        for _ in 0..8 {
            maps.insert(1, 2, &big, ResponseSettings::default(), now);
        }
        assert!(maps.reply_bytes <= RESPONSE_MAP_BYTES_MAX);
        assert_eq!(maps.len(), 3);
    }

    #[test]
    fn expired_entries_leave_from_the_front() {
        let mut maps = ResponseMaps::new();
        let t0 = Instant::now();
        maps.insert(1, 2, b"a", STREAM, t0);
        maps.insert(1, 2, b"b", STREAM, t0);
        maps.insert(
            1,
            2,
            b"c",
            STREAM,
            t0 + Duration::from_secs(20) - Duration::from_secs(1),
        );
        maps.insert(1, 2, b"d", STREAM, t0 + Duration::from_secs(11));
        assert_eq!(maps.len(), 2);
        assert_eq!(maps.reply_bytes, 2);
    }

    #[test]
    fn remap_follows_accounts_by_name_and_drops_the_gone() {
        let mut maps = ResponseMaps::new();
        let now = Instant::now();
        let kept = maps.insert(1, 2, b"a", ResponseSettings::default(), now);
        let gone = maps.insert(3, 2, b"b", ResponseSettings::default(), now);
        maps.remap_accounts(|id| match id {
            1 => Some(2),
            2 => Some(1),
            _ => None,
        });
        let mut reply = Vec::new();
        assert_eq!(
            maps.route(gone, 1, now, &mut reply),
            ResponseRoute::Ordinary
        );
        let route = maps.route(kept, 1, now, &mut reply);
        assert_eq!(route, ResponseRoute::Deliver { importer: 2 });
    }

    #[test]
    fn reserved_replies() {
        assert!(is_reserved_reply(b"_R_.x"));
        assert!(is_reserved_reply(b"$JS.ACK.a"));
        assert!(is_reserved_reply(b"$GNR.a"));
        assert!(!is_reserved_reply(b"_INBOX.x"));
    }
}
