//! Subject index: warm (cached) match, cold match (cache disabled), insert+remove, validation.
//! Ids are `subject_index/<case>/<size>`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ringnats::subject::{SubjectIndex, is_valid_filter};

/// `n` subscriptions spread over literal, `*` and `>` filters, plus one queue group.
fn index_with(n: u32, cache_capacity: usize) -> SubjectIndex<u32> {
    let mut index = SubjectIndex::with_cache_capacity(cache_capacity);
    for i in 0..n {
        let filter = match i % 4 {
            0 => format!("orders.{}.created", i % 97),
            1 => format!("orders.*.{}", i % 13),
            2 => format!("orders.{}.>", i % 31),
            _ => format!("telemetry.{i}.cpu"),
        };
        index.insert(filter.as_bytes(), None, i);
    }
    index.insert(b"orders.>", Some(b"workers"), n);
    index
}

fn bench(c: &mut Criterion) {
    for n in [10u32, 10_000, 100_000] {
        let mut warm = index_with(n, 1024);
        warm.matches(b"orders.5.created");
        c.bench_function(&format!("subject_index/match_warm/{n}subs"), |b| {
            b.iter(|| black_box(warm.matches(black_box(b"orders.5.created")).len()))
        });
        let mut cold = index_with(n, 0);
        c.bench_function(&format!("subject_index/match_cold/{n}subs"), |b| {
            b.iter(|| black_box(cold.matches(black_box(b"orders.5.created")).len()))
        });
        let mut churn = index_with(n, 1024);
        churn.matches(b"orders.5.created");
        c.bench_function(&format!("subject_index/insert_remove/{n}subs"), |b| {
            b.iter(|| {
                churn.insert(b"orders.*.created", Some(b"q"), u32::MAX);
                black_box(churn.remove(b"orders.*.created", Some(b"q"), u32::MAX))
            })
        });
    }
    c.bench_function("subject_index/validate_filter/5tokens", |b| {
        b.iter(|| black_box(is_valid_filter(black_box(b"orders.eu.*.created.>"))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
