//! A warm PUB → MSG round allocates nothing (STYLE.md §2, issue 4).
//!
//! A counting global allocator wraps the system one. The round is what a shard does per
//! message, with the pieces the shard uses: the parser reads a `PUB` out of a read buffer, the
//! compiled permissions answer through the per-connection cache, the subject index finds the
//! subscribers through its match cache, and the encoder appends the `MSG` to an output buffer
//! that already has room. After one warm-up round fills the caches, further rounds must count
//! zero allocations. Guards the hot-path promise of `protocol`, `perms` and `subject`.

use ringnats::perms::{PermCache, PermissionSpec, Permissions};
use ringnats::protocol::{Op, Parser, ParserLimits, encode};
use ringnats::subject::SubjectIndex;

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations;

/// One message through parser, permission check, index and encoder; returns bytes written.
fn round(
    parser: &mut Parser,
    input: &[u8],
    perms: &Permissions,
    cache: &mut PermCache,
    index: &mut SubjectIndex<u32>,
    out: &mut Vec<u8>,
) -> usize {
    let mut used = 0;
    let mut written = 0;
    while let Ok(Some((op, n))) = parser.parse(&input[used..]) {
        used += n;
        let Op::Pub {
            subject,
            reply,
            payload,
        } = op
        else {
            panic!("expected PUB")
        };
        assert!(
            cache.can_publish(perms, subject),
            "events.> allows {subject:?}"
        );
        let matches = index.matches(subject);
        for _sid in &matches.plain {
            let before = out.len();
            encode::msg(out, subject, b"1", reply, payload);
            written += out.len() - before;
        }
    }
    assert_eq!(used, input.len(), "every PUB parsed");
    written
}

#[test]
fn a_warm_pub_to_msg_round_does_not_allocate() {
    let spec = PermissionSpec {
        publish_allow: Some(vec!["events.>".to_string()]),
        ..PermissionSpec::default()
    };
    let perms = Permissions::compile(&spec).expect("valid permissions");
    let mut cache = PermCache::new();
    let mut index = SubjectIndex::new();
    index.insert(b"events.*", None, 1u32);
    index.insert(b"events.>", None, 2u32);
    let mut parser = Parser::new(ParserLimits::default());
    let mut input = Vec::new();
    for i in 0..64 {
        let subject = format!("events.{}", i % 4);
        input.extend_from_slice(format!("PUB {subject} 16\r\n0123456789abcdef\r\n").as_bytes());
    }
    let mut out = Vec::with_capacity(64 * 1024);

    let first = round(
        &mut parser,
        &input,
        &perms,
        &mut cache,
        &mut index,
        &mut out,
    );
    assert!(first > 0, "the subscribers were reached");
    for _ in 0..100 {
        out.clear();
        let before = allocations();
        let written = round(
            &mut parser,
            &input,
            &perms,
            &mut cache,
            &mut index,
            &mut out,
        );
        let after = allocations();
        assert_eq!(written, first, "every round delivers the same bytes");
        assert_eq!(after - before, 0, "a warm round allocated");
    }
}
