//! Bounded match cache: publish subject -> [`Matches`], in the manner of nats-server's sublist
//! cache (`slCacheMax`).
//!
//! Hot: a hit is one `ahash` lookup plus a slot read and does not allocate. Cold: filling a miss
//! allocates the key and the result (reusing the evicted entry's lists when the cache is full).
//!
//! Invariant: the cache never holds more than `capacity` subjects, and every cached result equals
//! what the trie would return now. The index keeps it exact on every change rather than wiping it:
//! an inserted or removed entry is added to or taken from exactly the cached subjects its filter
//! matches (one lookup for a literal filter, a scan of at most `capacity` keys for a wildcard
//! one), as nats-server's `addToCache` / `removeFromCache` do. A SUB on an unrelated subject
//! therefore leaves a hot cache alone.
//!
//! Eviction: when full, one entry chosen at random (a xorshift generator) makes room for the new
//! one. nats-server instead sweeps down to a quarter (`slCacheSweep`) once over the bound; one
//! random eviction per miss keeps every miss O(1) with no sweep pause, keeps hot subjects
//! likely to stay (they are re-added at once if evicted), and cannot be steered by the subjects a
//! client picks, unlike LRU or FIFO order.

use std::cell::Cell;
use std::hash::Hash;
use std::rc::Rc;

use ahash::AHashMap;

use crate::subject::index::Matches;
use crate::subject::{TOKEN_SEPARATOR, WILDCARD_ONE, WILDCARD_TAIL, filter_matches};

/// The default bound on cached subjects per index (nats-server `slCacheMax`).
pub const MATCH_CACHE_CAPACITY_DEFAULT: usize = 1024;

/// The match cache of one [`SubjectIndex`](crate::subject::SubjectIndex).
pub struct MatchCache<T> {
    /// Subject -> position in `entries`.
    slots: AHashMap<Rc<[u8]>, usize>,
    entries: Vec<Entry<T>>,
    capacity: usize,
    /// xorshift64 state for picking the entry to evict; never 0.
    rng: u64,
    /// Position of the last subject found: a publisher repeating its subject (the common
    /// case) costs one compare instead of a hash and a probe. Checked against the entry's
    /// subject on use, so entries may move under it.
    last: Cell<usize>,
}

struct Entry<T> {
    subject: Rc<[u8]>,
    matches: Matches<T>,
}

impl<T: Copy + Eq + Hash> MatchCache<T> {
    /// An empty cache holding at most `capacity` subjects (0: caches nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            slots: AHashMap::with_capacity(capacity.min(MATCH_CACHE_CAPACITY_DEFAULT)),
            entries: Vec::new(),
            capacity,
            rng: 0x9E37_79B9_7F4A_7C15,
            last: Cell::new(usize::MAX),
        }
    }

    /// The slot of a cached subject; pass it to [`MatchCache::at`]. One hash lookup, no
    /// allocation. (A slot rather than a reference lets the caller fill a miss afterwards.)
    #[inline]
    pub fn slot(&self, subject: &[u8]) -> Option<usize> {
        let last = self.last.get();
        if let Some(entry) = self.entries.get(last) {
            if *entry.subject == *subject {
                return Some(last);
            }
        }
        let slot = self.slots.get(subject).copied();
        if let Some(slot) = slot {
            self.last.set(slot);
        }
        slot
    }

    /// The cached result in `slot`, from [`MatchCache::slot`] with no change in between.
    pub fn at(&self, slot: usize) -> &Matches<T> {
        &self.entries[slot].matches
    }

    /// Caches the result `fill` writes for `subject` (not cached yet), evicting one random entry
    /// if full, and returns it. `fill` receives an empty `Matches`. With capacity 0 only the last
    /// result is kept, so it stays valid until the next insert.
    pub fn insert_with(
        &mut self,
        subject: &[u8],
        fill: impl FnOnce(&mut Matches<T>),
    ) -> &Matches<T> {
        debug_assert!(self.slot(subject).is_none(), "subject cached twice");
        let mut matches = self.make_room();
        fill(&mut matches);
        let subject: Rc<[u8]> = Rc::from(subject);
        self.slots.insert(Rc::clone(&subject), self.entries.len());
        self.entries.push(Entry { subject, matches });
        debug_assert!(
            self.entries.len() <= self.capacity.max(1),
            "cache over its bound"
        );
        let kept = self.entries.len() - 1;
        &self.entries[kept].matches
    }

    /// Adds a new `(filter, queue, value)` entry to every cached subject `filter` matches.
    pub fn on_insert(&mut self, filter: &[u8], queue: Option<&Rc<[u8]>>, value: T) {
        if !has_wildcard(filter) {
            if let Some(slot) = self.slot(filter) {
                self.entries[slot].matches.push(queue, value, 1);
            }
            return;
        }
        for entry in &mut self.entries {
            if filter_matches(filter, &entry.subject) {
                entry.matches.push(queue, value, 1);
            }
        }
    }

    /// Takes a removed `(filter, queue, value)` entry out of every cached subject `filter`
    /// matches. If a cached result lacks it (which would be a bug), that subject is dropped so it
    /// is recomputed.
    pub fn on_remove(&mut self, filter: &[u8], queue: Option<&[u8]>, value: T) {
        if !has_wildcard(filter) {
            if let Some(slot) = self.slot(filter) {
                if !self.entries[slot].matches.remove_one(queue, value) {
                    debug_assert!(false, "a cached result lacked a removed entry");
                    self.evict(slot);
                }
            }
            return;
        }
        let mut i = 0;
        while i < self.entries.len() {
            let entry = &mut self.entries[i];
            if filter_matches(filter, &entry.subject) && !entry.matches.remove_one(queue, value) {
                debug_assert!(false, "a cached result lacked a removed entry");
                self.evict(i);
                continue;
            }
            i += 1;
        }
    }

    /// Drops every cached result.
    pub fn clear(&mut self) {
        self.slots.clear();
        self.entries.clear();
    }

    /// The number of cached subjects.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The fanout (plain subscriptions plus queue members) of every cached result.
    pub fn fanouts(&self) -> impl Iterator<Item = usize> + '_ {
        self.entries.iter().map(|e| e.matches.len())
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The most subjects this cache holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Returns an empty `Matches` for a new entry, evicting a random entry (and reusing its lists)
    /// if the cache is full.
    fn make_room(&mut self) -> Matches<T> {
        if self.entries.len() < self.capacity.max(1) {
            return Matches::default();
        }
        let victim = (self.next_random() % self.entries.len() as u64) as usize;
        let mut matches = self.evict(victim);
        matches.clear();
        matches
    }

    /// Removes the entry in `slot`, moving the last entry into it, and returns its result.
    fn evict(&mut self, slot: usize) -> Matches<T> {
        let entry = self.entries.swap_remove(slot);
        self.slots.remove(&*entry.subject);
        if let Some(moved) = self.entries.get(slot) {
            if let Some(s) = self.slots.get_mut(&*moved.subject) {
                *s = slot;
            }
        }
        entry.matches
    }

    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

fn has_wildcard(filter: &[u8]) -> bool {
    filter
        .split(|&b| b == TOKEN_SEPARATOR)
        .any(|t| t == WILDCARD_ONE || t == WILDCARD_TAIL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_slots_consistent(cache: &MatchCache<u32>) {
        assert_eq!(cache.slots.len(), cache.entries.len());
        for (i, entry) in cache.entries.iter().enumerate() {
            assert_eq!(cache.slot(&entry.subject), Some(i));
        }
    }

    #[test]
    fn eviction_keeps_the_bound_and_the_slots() {
        let mut cache = MatchCache::new(4);
        for i in 0..50u32 {
            let subject = format!("s.{i}");
            let m = cache.insert_with(subject.as_bytes(), |m| m.plain.push(i));
            assert_eq!(m.plain, [i]);
            assert!(cache.len() <= 4);
            assert_slots_consistent(&cache);
        }
        assert_eq!(cache.len(), 4);
        // Every cached subject still maps to its own result.
        for entry in &cache.entries {
            let i: u32 = std::str::from_utf8(&entry.subject[2..])
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(entry.matches.plain, [i]);
        }
    }

    #[test]
    fn the_last_subject_memo_follows_entries_that_move() {
        let mut cache = MatchCache::new(3);
        for i in 0..200u32 {
            let subject = format!("m.{i}");
            if cache.slot(subject.as_bytes()).is_none() {
                cache.insert_with(subject.as_bytes(), |m| m.plain.push(i));
            }
            // Ask for an older subject twice (the second answer comes from the memo), then for
            // one that was evicted, whose memoised position now holds another subject.
            for back in [1u32, 1, 5] {
                let Some(old) = i.checked_sub(back) else {
                    continue;
                };
                let subject = format!("m.{old}");
                match cache.slot(subject.as_bytes()) {
                    Some(slot) => assert_eq!(cache.at(slot).plain, [old], "{subject}"),
                    None => assert!(
                        cache
                            .entries
                            .iter()
                            .all(|e| *e.subject != *subject.as_bytes()),
                        "{subject} is cached but was not found"
                    ),
                }
            }
        }
    }

    #[test]
    fn a_reused_result_starts_empty() {
        let mut cache = MatchCache::new(1);
        cache.insert_with(b"a", |m| m.plain.extend([1, 2, 3]));
        let m = cache.insert_with(b"b", |m| {
            assert!(m.is_empty(), "evicted result not cleared")
        });
        assert!(m.is_empty());
        assert_eq!(cache.slot(b"a"), None);
        assert_eq!(cache.slot(b"b"), Some(0));
    }

    #[test]
    fn changes_reach_only_the_subjects_the_filter_matches() {
        let mut cache = MatchCache::new(8);
        for s in ["a.b", "a.c", "x.y"] {
            cache.insert_with(s.as_bytes(), |_| {});
        }
        let q: Rc<[u8]> = Rc::from(&b"q"[..]);
        cache.on_insert(b"a.*", Some(&q), 1);
        cache.on_insert(b"a.b", None, 2);
        cache.on_insert(b"a.b.c", None, 3);
        let at = |cache: &MatchCache<u32>, s: &[u8]| cache.at(cache.slot(s).unwrap()).clone();
        assert_eq!(at(&cache, b"a.b").plain, [2]);
        assert_eq!(at(&cache, b"a.b").queues.len(), 1);
        assert_eq!(at(&cache, b"a.c").len(), 1);
        assert!(at(&cache, b"x.y").is_empty());
        cache.on_remove(b"a.*", Some(b"q"), 1);
        assert_eq!(at(&cache, b"a.b").len(), 1);
        assert!(at(&cache, b"a.c").is_empty());
        assert_eq!(cache.len(), 3);
        assert_slots_consistent(&cache);
    }

    #[test]
    fn capacity_zero_keeps_only_the_last_result() {
        let mut cache = MatchCache::new(0);
        cache.insert_with(b"a", |m| m.plain.push(1));
        assert_eq!(cache.insert_with(b"b", |m| m.plain.push(2)).plain, [2]);
        assert_eq!(cache.len(), 1);
    }
}
