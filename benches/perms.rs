//! Permission checks on the publish path: a warm cache hit, a miss (cache cleared every
//! iteration is not representative, so a rotating set larger than the cache), and a denied hit.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ringnats::perms::{PermCache, PermissionSpec, Permissions};

fn permissions() -> Permissions {
    let spec = PermissionSpec {
        publish_allow: Some(vec![
            "foo.>".into(),
            "req.*".into(),
            "orders.*.created".into(),
        ]),
        publish_deny: vec!["foo.secret".into(), "foo.admin.>".into()],
        ..PermissionSpec::default()
    };
    Permissions::compile(&spec).expect("valid bench permissions")
}

fn bench_publish(c: &mut Criterion) {
    let perms = permissions();
    let mut group = c.benchmark_group("perms/publish");
    group.bench_function("hit", |b| {
        let mut cache = PermCache::new();
        cache.can_publish(&perms, b"foo.bar.baz");
        b.iter(|| black_box(cache.can_publish(&perms, black_box(b"foo.bar.baz"))));
    });
    group.bench_function("miss", |b| {
        let subjects: Vec<Vec<u8>> = (0..1024)
            .map(|i| format!("foo.n{i}").into_bytes())
            .collect();
        let mut cache = PermCache::new();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % subjects.len();
            black_box(cache.can_publish(&perms, black_box(&subjects[i])))
        });
    });
    group.bench_function("deny", |b| {
        let mut cache = PermCache::new();
        cache.can_publish(&perms, b"foo.secret");
        b.iter(|| black_box(cache.can_publish(&perms, black_box(b"foo.secret"))));
    });
    group.finish();
}

criterion_group!(benches, bench_publish);
criterion_main!(benches);
