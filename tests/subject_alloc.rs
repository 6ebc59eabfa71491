//! A warm `SubjectIndex::matches` does not allocate (STYLE.md §2).
//!
//! A counting global allocator wraps the system one; after one miss fills the cache, repeated
//! matches of the same subjects, and validation of subjects, must count zero allocations. Guards
//! the hot-path promise in the `subject` module doc.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ringnats::subject::{SubjectIndex, is_valid_filter, is_valid_literal};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to `System` unchanged; the counter is thread-local, so tests in other threads
// do not disturb it.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

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
