//! Subject index for one account: a trie of tokens with `*` and `>` nodes.
//!
//! Hot: `matches` runs once per PUB. A repeated subject is one hash lookup in the match cache
//! (`cache.rs`) and does not allocate; a cache miss walks the trie, doing work bounded by the
//! number of subject tokens and the subscriptions found, and allocates the cached result.
//! `matches` counts its calls (one plain add) and its cache misses (on the miss path only),
//! for `/subsz` ([`SubjectIndex::stats`]).
//! Cold: `insert` and `remove` run on SUB and UNSUB (and on remote interest changes) and may
//! allocate. They keep the cache exact by updating only the cached subjects the changed filter
//! matches, so a SUB on an unrelated subject leaves a hot cache alone.
//!
//! Invariant: the trie holds no empty node (no subscriptions and no children) except the root,
//! and a cached result always equals what a fresh walk of the trie would return (as multisets).
//! One index belongs to one account (DESIGN invariant 9); it is shard-local and `!Send` (`Rc`).
//!
//! Recursion: a trie walk recurses once per `*` level and `remove` once per filter token, so the
//! depth is bounded by the longest filter, which the control-line limit bounds.

use std::hash::Hash;
use std::rc::Rc;

use crate::subject::seed::{SeededMap, map};
use smallvec::SmallVec;

use crate::subject::cache::{MATCH_CACHE_CAPACITY_DEFAULT, MatchCache};
use crate::subject::{
    TOKEN_SEPARATOR, WILDCARD_ONE, WILDCARD_TAIL, is_valid_filter, is_valid_queue,
};

/// Subject tokens split on a cache miss; subjects with more tokens spill to the heap.
type Tokens<'a> = SmallVec<[&'a [u8]; 16]>;

/// The subscriptions that match one publish subject.
///
/// A value inserted under two filters that both match the subject appears twice in `plain` (and
/// a value inserted twice under one filter appears twice too): the index keeps a multiset, and a
/// caller that wants one delivery per value dedups. Queue members with the same queue name are
/// merged into one [`QueueMatch`] whatever filter they came from (`foo.*` q1 and `foo.>` q1).
/// The order of `plain`, of `queues` and of `members` is unspecified.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct Matches<T> {
    /// Plain (non-queue) subscriptions: each gets a copy.
    pub plain: Vec<T>,
    /// One entry per queue group name: one member of each gets a copy.
    pub queues: Vec<QueueMatch<T>>,
}

/// The members of one queue group that match a subject.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct QueueMatch<T> {
    /// The queue group name, shared with the index.
    pub name: Rc<[u8]>,
    /// Never empty.
    pub members: Vec<T>,
}

/// A trie of subscription filters with a bounded, exact match cache. See the module doc.
pub struct SubjectIndex<T: Copy + Eq + Hash> {
    root: Node<T>,
    cache: MatchCache<T>,
    /// Returned for subjects that match nothing by rule (empty token) and never written.
    empty: Matches<T>,
    /// The result of the last walk when the cache is disabled (capacity 0); cleared, not dropped.
    scratch: Matches<T>,
    len: usize,
    generation: u64,
    /// `matches` calls, and those the cache did not answer (nats-server `Sublist.matches` and,
    /// by difference, `cacheHits`).
    lookups: u64,
    misses: u64,
}

/// What `/subsz` shows of one index: nats-server's `SublistStats` inputs.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct IndexStats {
    /// `matches` calls.
    pub lookups: u64,
    /// Of which the match cache answered.
    pub cache_hits: u64,
    /// Subjects in the match cache.
    pub cached: u64,
    /// The largest and the summed fanout of the cached results.
    pub fanout_max: u64,
    pub fanout_total: u64,
}

impl<T: Copy + Eq + Hash> SubjectIndex<T> {
    /// An empty index with a match cache of [`MATCH_CACHE_CAPACITY_DEFAULT`] subjects.
    pub fn new() -> Self {
        Self::with_cache_capacity(MATCH_CACHE_CAPACITY_DEFAULT)
    }

    /// An empty index caching at most `capacity` subjects; 0 disables the cache.
    pub fn with_cache_capacity(capacity: usize) -> Self {
        Self {
            root: Node::default(),
            cache: MatchCache::new(capacity),
            empty: Matches::default(),
            scratch: Matches::default(),
            len: 0,
            generation: 0,
            lookups: 0,
            misses: 0,
        }
    }

    /// Adds one `(filter, queue, value)` entry; `queue` is `None` for a plain subscription.
    /// Adding an entry that is already there adds a second copy (see [`Matches`]).
    ///
    /// `filter` must be valid ([`is_valid_filter`]); this is checked in debug builds only. An
    /// invalid filter in a release build does not panic but may never match.
    pub fn insert(&mut self, filter: &[u8], queue: Option<&[u8]>, value: T) {
        debug_assert!(is_valid_filter(filter), "insert of an invalid filter");
        debug_assert!(
            queue.is_none_or(is_valid_queue),
            "insert with an invalid queue name"
        );
        let node = self.root.descend_or_create(filter);
        let queue_name = node.subs.add(queue, value);
        self.len += 1;
        self.generation = self.generation.wrapping_add(1);
        self.cache.on_insert(filter, queue_name.as_ref(), value);
    }

    /// Removes one `(filter, queue, value)` entry and prunes nodes left empty. Returns whether
    /// the entry was there; if not, nothing changes.
    pub fn remove(&mut self, filter: &[u8], queue: Option<&[u8]>, value: T) -> bool {
        let mut tokens = filter.split(|&b| b == TOKEN_SEPARATOR);
        if !remove_at(&mut self.root, &mut tokens, queue, value) {
            return false;
        }
        debug_assert!(self.len > 0, "removed from an index of len 0");
        self.len -= 1;
        self.generation = self.generation.wrapping_add(1);
        self.cache.on_remove(filter, queue, value);
        true
    }

    /// All subscriptions matching the publish subject `subject`.
    ///
    /// `subject` is matched token by token as given, as nats-server does for non-pedantic
    /// clients: `foo.*` is matched by the filters `foo.*`, `*.*`, `foo.>` and `>`. A subject that
    /// is empty or has an empty token (`a..b`, `.x`, `x.`) matches nothing, as in nats-server's
    /// `Sublist.match`. A repeated subject is served from the cache without allocating.
    pub fn matches(&mut self, subject: &[u8]) -> &Matches<T> {
        self.lookups = self.lookups.wrapping_add(1);
        if let Some(slot) = self.cache.slot(subject) {
            return self.cache.at(slot);
        }
        self.misses = self.misses.wrapping_add(1);
        let tokens: Tokens<'_> = subject.split(|&b| b == TOKEN_SEPARATOR).collect();
        if tokens.iter().any(|t| t.is_empty()) {
            debug_assert!(self.empty.is_empty(), "the empty result was written");
            return &self.empty;
        }
        let root = &self.root;
        if self.cache.capacity() == 0 {
            self.scratch.clear();
            collect(root, &tokens, &mut self.scratch);
            return &self.scratch;
        }
        self.cache
            .insert_with(subject, |out| collect(root, &tokens, out))
    }

    /// The number of `(filter, queue, value)` entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the index holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A number that changes on every successful `insert` and `remove`, for callers that derive
    /// their own cached data from match results.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The number of subjects in the match cache (at most its capacity).
    pub fn cache_len(&self) -> usize {
        self.cache.len()
    }

    /// `matches` calls and cache misses so far (no walk).
    pub fn lookups(&self) -> (u64, u64) {
        (self.lookups, self.misses)
    }

    /// The match counters and the fanout of the cached results (walks the cache: cold).
    pub fn stats(&self) -> IndexStats {
        let mut stats = IndexStats {
            lookups: self.lookups,
            cache_hits: self.lookups.wrapping_sub(self.misses),
            cached: self.cache.len() as u64,
            ..IndexStats::default()
        };
        for fanout in self.cache.fanouts() {
            stats.fanout_max = stats.fanout_max.max(fanout as u64);
            stats.fanout_total += fanout as u64;
        }
        stats
    }

    /// Drops every cached result (for tests and memory pressure); the next matches walk the trie.
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }
}

impl<T: Copy + Eq + Hash> Default for SubjectIndex<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Matches<T> {
    /// Whether no subscription matched.
    pub fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    /// The number of plain subscriptions plus the number of queue members.
    pub fn len(&self) -> usize {
        self.plain.len() + self.queues.iter().map(|q| q.members.len()).sum::<usize>()
    }

    /// Empties the lists, keeping the plain list's allocation.
    pub(crate) fn clear(&mut self) {
        self.plain.clear();
        self.queues.clear();
    }
}

impl<T: Copy + Eq> Matches<T> {
    /// Adds `count` copies of `value` as a plain match or a member of queue `queue`.
    pub(crate) fn push(&mut self, queue: Option<&Rc<[u8]>>, value: T, count: u32) {
        let list = match queue {
            None => &mut self.plain,
            Some(name) => self.queue_members(name),
        };
        list.extend(std::iter::repeat_n(value, count as usize));
    }

    /// Removes one copy of `value` from the plain list or from queue `queue`, dropping the queue
    /// if it becomes empty. Returns whether a copy was found.
    pub(crate) fn remove_one(&mut self, queue: Option<&[u8]>, value: T) -> bool {
        let Some(name) = queue else {
            return swap_remove_value(&mut self.plain, value);
        };
        let Some(qi) = self.queues.iter().position(|q| &*q.name == name) else {
            return false;
        };
        let removed = swap_remove_value(&mut self.queues[qi].members, value);
        if self.queues[qi].members.is_empty() {
            self.queues.swap_remove(qi);
        }
        removed
    }

    fn queue_members(&mut self, name: &Rc<[u8]>) -> &mut Vec<T> {
        let qi = match self.queues.iter().position(|q| q.name == *name) {
            Some(qi) => qi,
            None => {
                self.queues.push(QueueMatch {
                    name: Rc::clone(name),
                    members: Vec::new(),
                });
                self.queues.len() - 1
            }
        };
        &mut self.queues[qi].members
    }
}

impl<T> Default for Matches<T> {
    fn default() -> Self {
        Self {
            plain: Vec::new(),
            queues: Vec::new(),
        }
    }
}

/// One trie node: the subscriptions whose filter ends here and the next level.
struct Node<T> {
    literal: SeededMap<Box<[u8]>, Node<T>>,
    /// The `*` child.
    pwc: Option<Box<Node<T>>>,
    /// The `>` child; a `>` is always last, so this node never has children.
    fwc: Option<Box<Node<T>>>,
    subs: Subs<T>,
}

/// The entries of one filter, as value -> number of copies.
struct Subs<T> {
    plain: SeededMap<T, u32>,
    /// Never holds an empty member map.
    queues: SeededMap<Rc<[u8]>, SeededMap<T, u32>>,
}

impl<T: Copy + Eq + Hash> Node<T> {
    fn descend_or_create(&mut self, filter: &[u8]) -> &mut Node<T> {
        let mut node = self;
        for token in filter.split(|&b| b == TOKEN_SEPARATOR) {
            node = match token {
                WILDCARD_ONE => node.pwc.get_or_insert_with(Box::default),
                WILDCARD_TAIL => node.fwc.get_or_insert_with(Box::default),
                _ => node.literal.entry(Box::from(token)).or_default(),
            };
        }
        node
    }

    fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.literal.is_empty() && self.pwc.is_none() && self.fwc.is_none()
    }
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            literal: map(),
            pwc: None,
            fwc: None,
            subs: Subs::default(),
        }
    }
}

impl<T: Copy + Eq + Hash> Subs<T> {
    /// Adds one copy; returns the index's shared queue name for a queue entry.
    fn add(&mut self, queue: Option<&[u8]>, value: T) -> Option<Rc<[u8]>> {
        let Some(queue) = queue else {
            *self.plain.entry(value).or_insert(0) += 1;
            return None;
        };
        let name = match self.queues.get_key_value(queue) {
            Some((name, _)) => Rc::clone(name),
            None => Rc::from(queue),
        };
        *self
            .queues
            .entry(Rc::clone(&name))
            .or_insert_with(map)
            .entry(value)
            .or_insert(0) += 1;
        Some(name)
    }

    fn remove(&mut self, queue: Option<&[u8]>, value: T) -> bool {
        let Some(queue) = queue else {
            return remove_count(&mut self.plain, value);
        };
        let Some(members) = self.queues.get_mut(queue) else {
            return false;
        };
        let removed = remove_count(members, value);
        if members.is_empty() {
            self.queues.remove(queue);
        }
        removed
    }

    fn is_empty(&self) -> bool {
        self.plain.is_empty() && self.queues.is_empty()
    }

    fn push_into(&self, out: &mut Matches<T>) {
        for (&value, &count) in &self.plain {
            out.plain.extend(std::iter::repeat_n(value, count as usize));
        }
        for (name, members) in &self.queues {
            for (&value, &count) in members {
                out.push(Some(name), value, count);
            }
        }
    }
}

impl<T> Default for Subs<T> {
    fn default() -> Self {
        Self {
            plain: map(),
            queues: map(),
        }
    }
}

/// Adds every subscription under `node` that matches `tokens` (all non-empty) to `out`.
/// Follows literal children in a loop and recurses only into `*` children.
fn collect<T: Copy + Eq + Hash>(mut node: &Node<T>, tokens: &[&[u8]], out: &mut Matches<T>) {
    for (i, token) in tokens.iter().enumerate() {
        if let Some(fwc) = &node.fwc {
            fwc.subs.push_into(out);
        }
        if let Some(pwc) = &node.pwc {
            collect(pwc, &tokens[i + 1..], out);
        }
        match node.literal.get(*token) {
            Some(next) => node = next,
            None => return,
        }
    }
    node.subs.push_into(out);
}

/// Removes one entry at the node reached by `tokens`, pruning the child nodes left empty.
fn remove_at<'f, T: Copy + Eq + Hash>(
    node: &mut Node<T>,
    tokens: &mut impl Iterator<Item = &'f [u8]>,
    queue: Option<&[u8]>,
    value: T,
) -> bool {
    let Some(token) = tokens.next() else {
        return node.subs.remove(queue, value);
    };
    match token {
        WILDCARD_ONE => remove_in_box(&mut node.pwc, tokens, queue, value),
        WILDCARD_TAIL => remove_in_box(&mut node.fwc, tokens, queue, value),
        _ => {
            let Some(child) = node.literal.get_mut(token) else {
                return false;
            };
            let removed = remove_at(child, tokens, queue, value);
            if child.is_empty() {
                node.literal.remove(token);
            }
            removed
        }
    }
}

fn remove_in_box<'f, T: Copy + Eq + Hash>(
    slot: &mut Option<Box<Node<T>>>,
    tokens: &mut impl Iterator<Item = &'f [u8]>,
    queue: Option<&[u8]>,
    value: T,
) -> bool {
    let Some(child) = slot.as_deref_mut() else {
        return false;
    };
    let removed = remove_at(child, tokens, queue, value);
    if child.is_empty() {
        *slot = None;
    }
    removed
}

fn remove_count<T: Eq + Hash>(counts: &mut SeededMap<T, u32>, value: T) -> bool {
    let Some(count) = counts.get_mut(&value) else {
        return false;
    };
    debug_assert!(*count > 0, "a zero count was kept");
    *count -= 1;
    if *count == 0 {
        counts.remove(&value);
    }
    true
}

fn swap_remove_value<T: Copy + Eq>(list: &mut Vec<T>, value: T) -> bool {
    match list.iter().position(|&v| v == value) {
        Some(i) => {
            list.swap_remove(i);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::subject::naive_match;

    type Normal = (Vec<u32>, Vec<(Vec<u8>, Vec<u32>)>);

    /// A match result in a canonical order, for comparing as multisets.
    fn normal(m: &Matches<u32>) -> Normal {
        let mut plain = m.plain.clone();
        plain.sort_unstable();
        let mut queues: Vec<(Vec<u8>, Vec<u32>)> = m
            .queues
            .iter()
            .map(|q| {
                let mut members = q.members.clone();
                members.sort_unstable();
                (q.name.to_vec(), members)
            })
            .collect();
        queues.sort();
        (plain, queues)
    }

    fn plain(index: &mut SubjectIndex<u32>, subject: &str) -> Vec<u32> {
        let m = index.matches(subject.as_bytes());
        assert!(m.queues.is_empty(), "unexpected queue match for {subject}");
        normal(m).0
    }

    fn index_of(filters: &[&str]) -> SubjectIndex<u32> {
        let mut index = SubjectIndex::new();
        for (value, filter) in (0u32..).zip(filters) {
            index.insert(filter.as_bytes(), None, value);
        }
        index
    }

    #[test]
    fn literal_filters_match_only_themselves() {
        let mut index = index_of(&["foo", "foo.bar", "foo.bar.baz", "bar"]);
        assert_eq!(plain(&mut index, "foo"), [0]);
        assert_eq!(plain(&mut index, "foo.bar"), [1]);
        assert_eq!(plain(&mut index, "foo.bar.baz"), [2]);
        assert_eq!(plain(&mut index, "bar"), [3]);
        assert_eq!(plain(&mut index, "foo.baz"), Vec::<u32>::new());
        assert_eq!(plain(&mut index, "fo"), Vec::<u32>::new());
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn star_matches_exactly_one_token() {
        let mut index = index_of(&["foo.*", "*.bar", "*", "*.*.baz"]);
        assert_eq!(plain(&mut index, "foo.bar"), [0, 1]);
        assert_eq!(plain(&mut index, "foo.x"), [0]);
        assert_eq!(plain(&mut index, "foo"), [2]);
        assert_eq!(plain(&mut index, "foo.bar.baz"), [3]);
        assert_eq!(plain(&mut index, "foo.bar.x"), Vec::<u32>::new());
    }

    #[test]
    fn tail_matches_one_or_more_tokens() {
        let mut index = index_of(&["foo.>", ">", "foo.bar.>"]);
        assert_eq!(plain(&mut index, "foo"), [1]);
        assert_eq!(plain(&mut index, "foo.bar"), [0, 1]);
        assert_eq!(plain(&mut index, "foo.bar.baz"), [0, 1, 2]);
        assert_eq!(plain(&mut index, "x.y.z.w"), [1]);
    }

    #[test]
    fn mixed_wildcards_and_literals() {
        let mut index = index_of(&["a.b.c", "a.*.c", "a.>", "*.b.>", ">", "*.*", "a.*.>"]);
        assert_eq!(plain(&mut index, "a.b.c"), [0, 1, 2, 3, 4, 6]);
        assert_eq!(plain(&mut index, "a.b"), [2, 4, 5]);
        assert_eq!(plain(&mut index, "x.b.c.d"), [3, 4]);
        assert_eq!(plain(&mut index, "a.x.c"), [1, 2, 4, 6]);
    }

    #[test]
    fn wildcard_chars_inside_tokens_are_literal() {
        let mut index = index_of(&["foo*", "foo.b>", "foo.*"]);
        assert_eq!(plain(&mut index, "foo*"), [0]);
        assert_eq!(plain(&mut index, "foox"), Vec::<u32>::new());
        assert_eq!(plain(&mut index, "foo.b>"), [1, 2]);
        assert_eq!(plain(&mut index, "foo.bar"), [2]);
    }

    #[test]
    fn odd_publish_subjects_never_panic_and_match_as_nats_server() {
        let mut index = index_of(&["foo.*", "foo.>", ">", "*", "foo.bar"]);
        // Matched token by token: `*` in a subject is just a token.
        assert_eq!(plain(&mut index, "foo.*"), [0, 1, 2]);
        assert_eq!(plain(&mut index, "foo.>"), [0, 1, 2]);
        assert_eq!(plain(&mut index, "*"), [2, 3]);
        // Empty tokens match nothing, even `>`.
        for subject in ["", ".", "..", "a..b", ".x", "x.", "foo.", ".foo.bar"] {
            assert_eq!(plain(&mut index, subject), Vec::<u32>::new(), "{subject:?}");
        }
        assert_eq!(plain(&mut index, "foo\tbar"), [2, 3]);
    }

    #[test]
    fn queue_members_merge_by_name_across_filters() {
        let mut index = SubjectIndex::new();
        index.insert(b"foo.*", Some(b"q1"), 1);
        index.insert(b"foo.>", Some(b"q1"), 2);
        index.insert(b"foo.bar", Some(b"q2"), 3);
        index.insert(b"foo.bar", None, 4);
        index.insert(b"foo.baz", Some(b"q1"), 5);
        let got = normal(index.matches(b"foo.bar"));
        let want = (
            vec![4],
            vec![(b"q1".to_vec(), vec![1, 2]), (b"q2".to_vec(), vec![3])],
        );
        assert_eq!(got, want);
        let got = normal(index.matches(b"foo.bar.x"));
        assert_eq!(got, (vec![], vec![(b"q1".to_vec(), vec![2])]));
    }

    #[test]
    fn duplicates_are_kept_as_a_multiset() {
        let mut index = SubjectIndex::new();
        index.insert(b"foo.*", None, 7);
        index.insert(b"foo.>", None, 7);
        index.insert(b"foo.*", None, 7);
        index.insert(b"foo.*", Some(b"q"), 7);
        index.insert(b"foo.*", Some(b"q"), 7);
        assert_eq!(index.len(), 5);
        let got = normal(index.matches(b"foo.bar"));
        assert_eq!(got, (vec![7, 7, 7], vec![(b"q".to_vec(), vec![7, 7])]));
        assert!(index.remove(b"foo.*", None, 7));
        assert!(index.remove(b"foo.*", Some(b"q"), 7));
        let got = normal(index.matches(b"foo.bar"));
        assert_eq!(got, (vec![7, 7], vec![(b"q".to_vec(), vec![7])]));
        assert_eq!(index.len(), 3);
    }

    #[test]
    fn remove_needs_the_exact_entry() {
        let mut index = SubjectIndex::new();
        index.insert(b"foo.*", Some(b"q"), 1);
        index.insert(b"foo.bar", None, 2);
        assert!(!index.remove(b"foo.*", None, 1), "plain vs queue");
        assert!(!index.remove(b"foo.*", Some(b"r"), 1), "other queue");
        assert!(!index.remove(b"foo.*", Some(b"q"), 2), "other value");
        assert!(!index.remove(b"foo.>", Some(b"q"), 1), "other filter");
        assert!(!index.remove(b"foo", None, 2), "prefix of a filter");
        assert!(
            !index.remove(b"foo.bar.baz", None, 2),
            "longer than a filter"
        );
        assert!(!index.remove(b"foo..bar", None, 2), "invalid filter");
        assert_eq!(index.len(), 2);
        assert!(index.remove(b"foo.*", Some(b"q"), 1));
        assert!(!index.remove(b"foo.*", Some(b"q"), 1), "removed twice");
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn remove_prunes_empty_nodes() {
        let filters = [
            "a.b.c",
            "a.*.c",
            "a.>",
            "*.b.>",
            ">",
            "*",
            "a.b.c.d.e.f",
            "x.y",
        ];
        let mut index = SubjectIndex::new();
        for (value, filter) in (0u32..).zip(filters) {
            index.insert(filter.as_bytes(), None, value);
            index.insert(filter.as_bytes(), Some(b"q"), value);
        }
        assert!(!index.root.is_empty());
        // Removing the deep filter leaves `a.b.c` but prunes `d.e.f` below it.
        assert!(index.remove(b"a.b.c.d.e.f", None, 6));
        assert!(index.remove(b"a.b.c.d.e.f", Some(b"q"), 6));
        let c = &index.root.literal[&b"a"[..]].literal[&b"b"[..]].literal[&b"c"[..]];
        assert!(c.literal.is_empty(), "d.e.f not pruned");
        for (value, filter) in (0u32..).zip(filters) {
            index.remove(filter.as_bytes(), None, value);
            index.remove(filter.as_bytes(), Some(b"q"), value);
        }
        assert!(index.is_empty());
        assert!(index.root.is_empty(), "trie not pruned to the root");
        assert!(index.matches(b"a.b.c").is_empty());
    }

    #[test]
    fn a_repeated_subject_is_served_from_the_cache() {
        let mut index = index_of(&["a.*", "a.b"]);
        let first: *const Matches<u32> = index.matches(b"a.b");
        let second: *const Matches<u32> = index.matches(b"a.b");
        assert!(
            std::ptr::eq(first, second),
            "second match was not a cache hit"
        );
        assert_eq!(index.cache_len(), 1);
    }

    #[test]
    fn stats_count_lookups_hits_and_cached_fanout() {
        let mut index = index_of(&["a.*", "a.b"]);
        index.insert(b"a.b", Some(b"q"), 7);
        assert_eq!(index.stats(), IndexStats::default());
        for _ in 0..3 {
            index.matches(b"a.b");
        }
        index.matches(b"a.c");
        index.matches(b"a..c");
        let stats = index.stats();
        assert_eq!((stats.lookups, stats.cache_hits), (5, 2));
        assert_eq!(stats.cached, 2, "a.b and a.c");
        assert_eq!((stats.fanout_max, stats.fanout_total), (3, 4));
        assert_eq!(index.lookups(), (5, 3));
    }

    #[test]
    fn insert_updates_cached_results() {
        let mut index = SubjectIndex::new();
        index.insert(b"a.b", None, 1);
        assert_eq!(plain(&mut index, "a.b"), [1]);
        assert_eq!(plain(&mut index, "a.c"), Vec::<u32>::new());
        index.insert(b"a.*", None, 2);
        assert_eq!(plain(&mut index, "a.b"), [1, 2]);
        assert_eq!(plain(&mut index, "a.c"), [2]);
        index.insert(b"a.b", None, 3);
        assert_eq!(plain(&mut index, "a.b"), [1, 2, 3]);
        assert_eq!(plain(&mut index, "a.c"), [2]);
        index.insert(b">", Some(b"q"), 4);
        let got = normal(index.matches(b"a.c"));
        assert_eq!(got, (vec![2], vec![(b"q".to_vec(), vec![4])]));
    }

    #[test]
    fn remove_updates_cached_results() {
        let mut index = SubjectIndex::new();
        index.insert(b"a.b", None, 1);
        index.insert(b"a.*", None, 2);
        index.insert(b"a.>", Some(b"q"), 3);
        assert_eq!(index.matches(b"a.b").len(), 3);
        assert!(index.remove(b"a.*", None, 2));
        let got = normal(index.matches(b"a.b"));
        assert_eq!(got, (vec![1], vec![(b"q".to_vec(), vec![3])]));
        assert!(index.remove(b"a.>", Some(b"q"), 3));
        assert_eq!(plain(&mut index, "a.b"), [1]);
        assert!(index.remove(b"a.b", None, 1));
        assert!(index.matches(b"a.b").is_empty());
    }

    #[test]
    fn an_unrelated_insert_keeps_the_cache() {
        let mut index = index_of(&["a.b", "a.*"]);
        index.matches(b"a.b");
        index.matches(b"a.c");
        assert_eq!(index.cache_len(), 2);
        let generation = index.generation();
        index.insert(b"x.y", None, 9);
        index.insert(b"x.*", None, 9);
        assert!(index.remove(b"x.y", None, 9));
        assert_eq!(index.cache_len(), 2, "unrelated changes wiped the cache");
        assert_ne!(index.generation(), generation);
        assert_eq!(plain(&mut index, "a.b"), [0, 1]);
        assert_eq!(plain(&mut index, "x.y"), [9]);
    }

    #[test]
    fn the_cache_bound_is_respected() {
        let mut index: SubjectIndex<u32> = SubjectIndex::with_cache_capacity(8);
        index.insert(b"s.*", None, 1);
        for i in 0..100 {
            let subject = format!("s.{i}");
            assert_eq!(plain(&mut index, &subject), [1]);
            assert!(
                index.cache_len() <= 8,
                "cache grew to {}",
                index.cache_len()
            );
        }
        assert_eq!(index.cache_len(), 8);
        index.insert(b"s.5", None, 2);
        for i in 0..100 {
            let want: &[u32] = if i == 5 { &[1, 2] } else { &[1] };
            assert_eq!(plain(&mut index, &format!("s.{i}")), want);
        }
        index.clear_cache();
        assert_eq!(index.cache_len(), 0);
    }

    #[test]
    fn a_disabled_cache_still_matches() {
        let mut index: SubjectIndex<u32> = SubjectIndex::with_cache_capacity(0);
        index.insert(b"a.*", None, 1);
        assert_eq!(plain(&mut index, "a.b"), [1]);
        index.insert(b"a.b", None, 2);
        assert_eq!(plain(&mut index, "a.b"), [1, 2]);
        assert_eq!(plain(&mut index, "a.c"), [1]);
        assert_eq!(index.cache_len(), 0);
    }

    // Property tests: the index, with its cache on, against `naive_match` over a plain list.

    #[derive(Clone, Debug)]
    enum Op {
        Insert(String, Option<u8>, u32),
        /// Removes the live entry at this position (modulo the count), or a likely absent one.
        RemoveLive(usize),
        RemoveAny(String, Option<u8>, u32),
        Match(String),
    }

    fn token() -> impl Strategy<Value = &'static str> {
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("*")]
    }

    fn filter() -> impl Strategy<Value = String> {
        (prop::collection::vec(token(), 1..4), any::<bool>()).prop_map(|(tokens, tail)| {
            let mut f = tokens.join(".");
            if tail {
                f.push_str(".>");
            }
            f
        })
    }

    fn subject() -> impl Strategy<Value = String> {
        let tokens = prop::collection::vec(prop_oneof![token(), Just(">")], 1..6);
        prop_oneof![
            8 => tokens.prop_map(|t| t.join(".")),
            1 => prop_oneof![Just(""), Just("a..b"), Just(".a"), Just("a."), Just(">")]
                .prop_map(String::from),
        ]
    }

    fn op() -> impl Strategy<Value = Op> {
        let queue = prop::option::of(0u8..2);
        prop_oneof![
            4 => (filter(), queue.clone(), 0u32..4).prop_map(|(f, q, v)| Op::Insert(f, q, v)),
            2 => any::<usize>().prop_map(Op::RemoveLive),
            1 => (filter(), queue, 0u32..4).prop_map(|(f, q, v)| Op::RemoveAny(f, q, v)),
            4 => subject().prop_map(Op::Match),
        ]
    }

    type Live = Vec<(String, Option<Vec<u8>>, u32)>;

    fn queue_name(q: Option<u8>) -> Option<Vec<u8>> {
        q.map(|q| format!("q{q}").into_bytes())
    }

    fn naive_matches(live: &Live, subject: &str) -> Normal {
        let mut m = Matches::default();
        for (f, q, v) in live {
            if naive_match(f.as_bytes(), subject.as_bytes()) {
                m.push(q.as_deref().map(Rc::from).as_ref(), *v, 1);
            }
        }
        normal(&m)
    }

    fn apply_remove(
        index: &mut SubjectIndex<u32>,
        live: &mut Live,
        f: &str,
        q: Option<Vec<u8>>,
        v: u32,
    ) {
        let pos = live.iter().position(|e| e.0 == f && e.1 == q && e.2 == v);
        let removed = index.remove(f.as_bytes(), q.as_deref(), v);
        assert_eq!(removed, pos.is_some(), "remove({f}, {q:?}, {v})");
        if let Some(pos) = pos {
            live.swap_remove(pos);
        }
    }

    fn run_ops(capacity: usize, ops: Vec<Op>) {
        let mut index = SubjectIndex::with_cache_capacity(capacity);
        let mut live: Live = Vec::new();
        for op in ops {
            match op {
                Op::Insert(f, q, v) => {
                    index.insert(f.as_bytes(), queue_name(q).as_deref(), v);
                    live.push((f, queue_name(q), v));
                }
                Op::RemoveLive(i) if !live.is_empty() => {
                    let (f, q, v) = live[i % live.len()].clone();
                    apply_remove(&mut index, &mut live, &f, q, v);
                }
                Op::RemoveLive(_) => assert!(!index.remove(b"a", None, 0)),
                Op::RemoveAny(f, q, v) => apply_remove(&mut index, &mut live, &f, queue_name(q), v),
                Op::Match(s) => {
                    let got = index.matches(s.as_bytes());
                    assert!(got.queues.iter().all(|q| !q.members.is_empty()));
                    assert_eq!(normal(got), naive_matches(&live, &s), "subject {s:?}");
                }
            }
            assert_eq!(index.len(), live.len());
            assert!(index.cache_len() <= capacity);
        }
        for (f, q, v) in std::mem::take(&mut live) {
            assert!(index.remove(f.as_bytes(), q.as_deref(), v));
        }
        assert!(
            index.root.is_empty(),
            "trie not pruned after removing everything"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn index_agrees_with_naive_matcher(ops in prop::collection::vec(op(), 1..80)) {
            run_ops(MATCH_CACHE_CAPACITY_DEFAULT, ops);
        }

        #[test]
        fn index_with_tiny_cache_agrees_with_naive_matcher(
            ops in prop::collection::vec(op(), 1..80),
        ) {
            run_ops(3, ops);
        }

        #[test]
        fn filter_matches_agrees_with_naive_matcher(f in filter(), s in subject()) {
            let fast = crate::subject::filter_matches(f.as_bytes(), s.as_bytes());
            prop_assert_eq!(fast, naive_match(f.as_bytes(), s.as_bytes()));
        }

        #[test]
        fn fuzz_parse_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
            crate::subject::fuzz_parse(&data);
        }

        #[test]
        fn validation_never_panics_and_literal_implies_filter(
            data in prop::collection::vec(prop_oneof![
                Just(b'.'), Just(b'*'), Just(b'>'), Just(b'a'), Just(b' '), any::<u8>()
            ], 0..24),
        ) {
            if crate::subject::is_valid_literal(&data) {
                prop_assert!(crate::subject::is_valid_filter(&data));
            }
        }
    }
}
