//! Subjects: validation, the checked subject types and the wildcard rules.
//!
//! Hot: `is_valid_filter` runs on every SUB and `is_valid_literal` on every PUB of a pedantic
//! client. Both make one pass over the bytes and never allocate. The index (`index.rs`) and its
//! match cache (`cache.rs`) live below this module.
//!
//! The rules are those of nats-server 2.9.10 (`IsValidSubject`, `IsValidLiteralSubject`): a
//! subject is one or more non-empty tokens separated by `.`, with no space, tab, CR or LF
//! anywhere. In a filter, `*` as a whole token matches exactly one token and `>` as the whole last
//! token matches one or more tokens. A `*` or `>` inside a longer token (`foo*`) is a literal
//! character. Unlike nats-server, other control bytes (below 0x20, and 0x7f) are refused too: a
//! client library that drops them would show `in.secret\x0c` as `in.secret`, a subject that
//! permissions deny (issue 8 §4); PUB checks them with [`has_control_byte`] on every message.
//!
//! Invariant: a `FilterSubject` or `PublishSubject` only exists for bytes that passed the check,
//! so code that receives one never checks again.

pub mod cache;
pub mod index;
pub mod seed;

pub use cache::{MATCH_CACHE_CAPACITY_DEFAULT, MatchCache};
pub use index::{IndexStats, Matches, QueueMatch, SubjectIndex};

/// The token separator.
pub const TOKEN_SEPARATOR: u8 = b'.';
/// A whole-token wildcard that matches exactly one token.
pub const WILDCARD_ONE: &[u8] = b"*";
/// A whole last-token wildcard that matches one or more tokens.
pub const WILDCARD_TAIL: &[u8] = b">";

/// Whether `s` is a valid subscription subject (wildcards allowed). Allocation-free.
pub fn is_valid_filter(s: &[u8]) -> bool {
    is_valid(s, Wildcards::Allowed)
}

/// Whether `s` is a valid literal (publish) subject: a valid filter with no `*` or `>` token.
/// Allocation-free. nats-server only applies this check to pedantic clients.
pub fn is_valid_literal(s: &[u8]) -> bool {
    is_valid(s, Wildcards::Rejected)
}

/// Whether `s` holds a control byte (below 0x20, or 0x7f). One pass, allocation-free: run on
/// every PUB, so a publish subject with one is refused (`Invalid Publish Subject`) whatever the
/// client's `pedantic` flag says.
#[inline]
pub fn has_control_byte(s: &[u8]) -> bool {
    s.iter().any(|&b| is_control_byte(b))
}

/// Whether `queue` is a usable queue group name: non-empty with no whitespace. (The parser splits
/// arguments on whitespace, so a queue name from the wire always passes.)
pub fn is_valid_queue(queue: &[u8]) -> bool {
    !queue.is_empty()
        && !queue
            .iter()
            .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Whether `subject` has at least one token and no empty token. nats-server (`Sublist.match`)
/// returns no match at all for a publish subject that fails this, so the index does the same.
pub fn has_only_nonempty_tokens(subject: &[u8]) -> bool {
    !subject.is_empty()
        && subject
            .split(|&b| b == TOKEN_SEPARATOR)
            .all(|t| !t.is_empty())
}

/// Whether the filter `filter` matches the publish subject `subject`, token by token, as the
/// index does. Allocation-free.
///
/// `subject` is compared literally: a `*` token in it only matches a `*` or a literal `*` in the
/// filter, as nats-server delivers `PUB foo.*` from a non-pedantic client. A subject with an
/// empty token matches nothing (see [`has_only_nonempty_tokens`]).
pub fn filter_matches(filter: &[u8], subject: &[u8]) -> bool {
    if !has_only_nonempty_tokens(subject) {
        return false;
    }
    let mut subject_tokens = subject.split(|&b| b == TOKEN_SEPARATOR);
    for filter_token in filter.split(|&b| b == TOKEN_SEPARATOR) {
        if filter_token == WILDCARD_TAIL {
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(t) if filter_token == WILDCARD_ONE || filter_token == t => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// A subscription subject that passed [`is_valid_filter`]; may hold `*` and `>` tokens.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub struct FilterSubject<'a>(&'a [u8]);

impl<'a> FilterSubject<'a> {
    /// Checks `s`; `None` if it is not a valid filter (`-ERR 'Invalid Subject'`).
    pub fn new(s: &'a [u8]) -> Option<Self> {
        is_valid_filter(s).then_some(Self(s))
    }

    /// The checked bytes.
    pub fn as_bytes(self) -> &'a [u8] {
        self.0
    }

    /// Whether any token is `*` or `>`.
    pub fn has_wildcard(self) -> bool {
        self.0
            .split(|&b| b == TOKEN_SEPARATOR)
            .any(is_wildcard_token)
    }
}

/// A publish subject that passed [`is_valid_literal`]: no `*` or `>` token.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Hash)]
pub struct PublishSubject<'a>(&'a [u8]);

impl<'a> PublishSubject<'a> {
    /// Checks `s`; `None` if it is not a valid literal subject (`-ERR 'Invalid Publish Subject'`).
    pub fn new(s: &'a [u8]) -> Option<Self> {
        is_valid_literal(s).then_some(Self(s))
    }

    /// The checked bytes.
    pub fn as_bytes(self) -> &'a [u8] {
        self.0
    }
}

impl<'a> From<PublishSubject<'a>> for FilterSubject<'a> {
    /// A literal subject is also a valid filter (one that matches only itself).
    fn from(s: PublishSubject<'a>) -> Self {
        Self(s.0)
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/subject.rs` is a thin wrapper).
///
/// Reads `data` as lines of operations, `<op byte><subject>[ <queue>]`: ops `i` to `l` insert
/// the values 0 to 3, ops `r` to `u` remove them, anything else matches. Valid filters go into a
/// [`SubjectIndex`] with a tiny cache (so eviction and in-place cache updates run too); every
/// match is compared with [`naive_match`] over a plain list of the live entries, at most 512
/// operations per input. No input makes it panic unless the index disagrees with the naive
/// matcher or with the live list, which is a bug the fuzzer should report.
pub fn fuzz_parse(data: &[u8]) {
    const OPS_MAX: usize = 512;
    let mut index: SubjectIndex<u16> = SubjectIndex::with_cache_capacity(4);
    let mut live: Vec<FuzzEntry> = Vec::new();
    for line in data.split(|&b| b == b'\n').take(OPS_MAX) {
        let Some((&op, rest)) = line.split_first() else {
            continue;
        };
        let (subject, queue) = match rest.iter().position(|&b| b == b' ') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let is_valid = is_valid_filter(subject) && queue.is_none_or(is_valid_queue);
        match op {
            b'i'..=b'l' if is_valid => {
                let value = u16::from(op - b'i');
                index.insert(subject, queue, value);
                live.push((subject.to_vec(), queue.map(<[u8]>::to_vec), value));
            }
            b'r'..=b'u' if is_valid => {
                let value = u16::from(op - b'r');
                let pos = live
                    .iter()
                    .position(|(f, q, v)| f == subject && q.as_deref() == queue && *v == value);
                let removed = index.remove(subject, queue, value);
                assert_eq!(
                    removed,
                    pos.is_some(),
                    "remove disagrees with the live list"
                );
                if let Some(pos) = pos {
                    live.swap_remove(pos);
                }
            }
            _ => fuzz_check_match(&mut index, &live, subject),
        }
        assert_eq!(index.len(), live.len(), "len disagrees with the live list");
    }
}

/// The straightforward matcher the index is checked against: splits both sides into vectors and
/// compares token by token. Allocates; for tests, benches and fuzzing only.
#[doc(hidden)]
pub fn naive_match(filter: &[u8], subject: &[u8]) -> bool {
    let f: Vec<&[u8]> = filter.split(|&b| b == b'.').collect();
    let s: Vec<&[u8]> = subject.split(|&b| b == b'.').collect();
    if subject.is_empty() || s.iter().any(|t| t.is_empty()) {
        return false;
    }
    for (i, ft) in f.iter().enumerate() {
        if *ft == b">" {
            return s.len() > i;
        }
        if i >= s.len() || (*ft != b"*" && *ft != s[i]) {
            return false;
        }
    }
    f.len() == s.len()
}

/// A live `(filter, queue, value)` entry in `fuzz_parse`.
type FuzzEntry = (Vec<u8>, Option<Vec<u8>>, u16);

/// Whether subscribers may use wildcards in the subject being checked.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
enum Wildcards {
    Allowed,
    Rejected,
}

fn is_valid(s: &[u8], wildcards: Wildcards) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        match b {
            b' ' => return false,
            b if is_control_byte(b) => return false,
            TOKEN_SEPARATOR => {
                if !is_valid_token(&s[start..i], wildcards, false) {
                    return false;
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    is_valid_token(&s[start..], wildcards, true)
}

#[inline]
fn is_control_byte(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn is_valid_token(token: &[u8], wildcards: Wildcards, is_last: bool) -> bool {
    match token {
        b"" => false,
        b"*" => wildcards == Wildcards::Allowed,
        b">" => wildcards == Wildcards::Allowed && is_last,
        _ => true,
    }
}

fn is_wildcard_token(token: &[u8]) -> bool {
    token == WILDCARD_ONE || token == WILDCARD_TAIL
}

fn fuzz_check_match(index: &mut SubjectIndex<u16>, live: &[FuzzEntry], subject: &[u8]) {
    let mut want_plain: Vec<u16> = Vec::new();
    let mut want_queues: Vec<(Vec<u8>, u16)> = Vec::new();
    for (_, q, v) in live.iter().filter(|(f, _, _)| naive_match(f, subject)) {
        match q {
            None => want_plain.push(*v),
            Some(q) => want_queues.push((q.clone(), *v)),
        }
    }
    let got = index.matches(subject);
    let mut got_plain = got.plain.clone();
    let mut got_queues: Vec<(Vec<u8>, u16)> = Vec::new();
    for qm in &got.queues {
        assert!(!qm.members.is_empty(), "empty queue group in a match");
        got_queues.extend(qm.members.iter().map(|v| (qm.name.to_vec(), *v)));
    }
    let names = got.queues.iter().map(|qm| &qm.name);
    let mut names: Vec<_> = names.collect();
    names.sort();
    let names_len = names.len();
    names.dedup();
    assert_eq!(names.len(), names_len, "queue group listed twice");
    want_plain.sort_unstable();
    got_plain.sort_unstable();
    want_queues.sort_unstable();
    got_queues.sort_unstable();
    assert_eq!(got_plain, want_plain, "plain matches differ");
    assert_eq!(got_queues, want_queues, "queue matches differ");
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID_FILTERS: &[&[u8]] = &[
        b"foo",
        b"foo.bar",
        b"foo.*",
        b"*",
        b">",
        b"foo.>",
        b"*.*.>",
        b"foo*",
        b"foo.bar*.baz",
        b"f>",
        b"a.*.b",
        b"$SYS.>",
        b"_INBOX.abc.def",
        b"a\xc3\xa9b",
        b"a~b",
    ];
    const INVALID_FILTERS: &[&[u8]] = &[
        b"",
        b"foo..bar",
        b".foo",
        b"foo.",
        b".",
        b"..",
        b"foo.>.bar",
        b">.foo",
        b">.>",
        b"foo bar",
        b"foo\tbar",
        b"a\x0cb",
        b"a\x00b",
        b"a.b\x1f",
        b"\x7f",
        b"foo\rbar",
        b"foo\nbar",
        b" foo",
        b"foo.\t",
    ];

    #[test]
    fn valid_filters_are_accepted() {
        for s in VALID_FILTERS {
            assert!(is_valid_filter(s), "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn control_bytes_are_found() {
        for b in (0u8..0x20).chain([0x7f]) {
            assert!(has_control_byte(&[b'a', b, b'b']), "{b:#x}");
        }
        assert!(!has_control_byte(b"in.secret"));
        assert!(!has_control_byte("caf\u{e9}.~".as_bytes()));
    }

    #[test]
    fn invalid_filters_are_rejected() {
        for s in INVALID_FILTERS {
            assert!(!is_valid_filter(s), "{:?}", String::from_utf8_lossy(s));
            assert!(!is_valid_literal(s), "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn literal_rejects_whole_token_wildcards_only() {
        for s in [&b"foo.*"[..], b"*", b">", b"foo.>", b"*.bar", b"a.*.b"] {
            assert!(!is_valid_literal(s), "{:?}", String::from_utf8_lossy(s));
        }
        for s in [
            &b"foo"[..],
            b"foo.bar",
            b"foo*",
            b"f>",
            b"a.b*.>c",
            b"$SYS.ACCOUNT",
        ] {
            assert!(is_valid_literal(s), "{:?}", String::from_utf8_lossy(s));
        }
    }

    #[test]
    fn checked_types_follow_the_checks() {
        assert!(FilterSubject::new(b"foo.*").is_some());
        assert!(FilterSubject::new(b"foo..*").is_none());
        assert!(PublishSubject::new(b"foo.*").is_none());
        let p = PublishSubject::new(b"foo.bar").expect("valid literal");
        let f: FilterSubject<'_> = p.into();
        assert_eq!(f.as_bytes(), b"foo.bar");
        assert!(!f.has_wildcard());
        assert!(FilterSubject::new(b"a.>").is_some_and(|f| f.has_wildcard()));
        assert!(FilterSubject::new(b"a*.b").is_some_and(|f| !f.has_wildcard()));
    }

    #[test]
    fn filter_matches_follows_the_rules() {
        let cases: &[(&[u8], &[u8], bool)] = &[
            (b"foo", b"foo", true),
            (b"foo", b"foo.bar", false),
            (b"foo.bar", b"foo", false),
            (b"foo.*", b"foo.bar", true),
            (b"foo.*", b"foo", false),
            (b"foo.*", b"foo.bar.baz", false),
            (b"foo.>", b"foo", false),
            (b"foo.>", b"foo.bar", true),
            (b"foo.>", b"foo.bar.baz", true),
            (b">", b"a", true),
            (b">", b"a.b.c", true),
            (b"*.b", b"a.b", true),
            (b"*.b", b"a.c", false),
            (b"foo*", b"foo*", true),
            (b"foo*", b"foox", false),
            // A non-pedantic PUB to `foo.*` is matched token by token.
            (b"foo.*", b"foo.*", true),
            (b"foo.bar", b"foo.*", false),
            (b"foo.>", b"foo.>", true),
            // Subjects with an empty token match nothing, as in nats-server.
            (b">", b"", false),
            (b">", b"a..b", false),
            (b"*.x", b".x", false),
            (b"x.>", b"x.", false),
        ];
        for (f, s, want) in cases {
            let show = (String::from_utf8_lossy(f), String::from_utf8_lossy(s));
            assert_eq!(filter_matches(f, s), *want, "{show:?}");
            assert_eq!(naive_match(f, s), *want, "{show:?}");
        }
    }

    #[test]
    fn fuzz_parse_runs_over_seed_inputs() {
        let seeds: &[&[u8]] = &[
            b"",
            b"\n\n\n",
            b"ifoo\nifoo.*\nif.>\nmfoo.bar\nmfoo\nrfoo\nmfoo",
            b"ia.* q\nia.> q\nia.b\nma.b\nra.* q\nma.b\nma.*\nm.a\nma..b\nm",
            b"i>\ni*\ni*.*\nm\x00\nm.\nma. \ni \nr>\nma",
            b"ifoo..bar\nifoo.>.bar\nrfoo..bar\nmfoo.x.bar",
            b"ia\nib\nic\nid\nie\nif\nma\nmb\nmc\nmd\nme\nmf\nma\nia.>\nma\nmb.c",
            b"ja q\nka q\nj* q\nma\nsa q\nma\nta q\nma\nra q\nj>\nk>\nj>\nmx.y\ns>\nmx.y",
        ];
        for seed in seeds {
            fuzz_parse(seed);
        }
    }
}
