//! A warm `SubjectIndex::matches` does not allocate (STYLE.md §2).
//!
//! A counting global allocator wraps the system one; after one miss fills the cache, repeated
//! matches of the same subjects, and validation of subjects, must count zero allocations. Guards
//! the hot-path promise in the `subject` module doc.

use ringnats::subject::{SubjectIndex, is_valid_filter, is_valid_literal};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations;

#[test]
fn a_warm_match_does_not_allocate() {
    let mut index: SubjectIndex<u32> = SubjectIndex::new();
    index.insert(b"orders.*.created", None, 1);
    index.insert(b"orders.>", Some(b"workers"), 2);
    index.insert(b"orders.eu.created", None, 3);
    let subjects: [&[u8]; 3] = [b"orders.eu.created", b"orders.us.created", b"nobody.home"];
    for s in subjects {
        index.matches(s);
    }
    let before = allocations();
    let mut delivered = 0;
    for _ in 0..1000 {
        for s in subjects {
            delivered += index.matches(s).len();
        }
    }
    assert_eq!(allocations() - before, 0, "a cache hit allocated");
    assert_eq!(delivered, 1000 * (3 + 2));
}

#[test]
fn validation_does_not_allocate() {
    let before = allocations();
    let mut valid = 0;
    for s in [
        &b"foo.bar.>"[..],
        b"foo.*.baz",
        b"foo..bar",
        b"a.>.b",
        b"plain.subject",
    ] {
        valid += usize::from(is_valid_filter(s)) + usize::from(is_valid_literal(s));
    }
    assert_eq!(allocations() - before, 0, "validation allocated");
    assert_eq!(valid, 3 + 1);
}
