//! Server-to-client encoding: `MSG` at two payload sizes and `HMSG`. Ids are
//! `encode/<case>/<size>`.
//!
//! Each iteration clears one output buffer and appends [`MSGS`] deliveries to it, as a shard fills
//! a connection's output buffer once per loop turn (so the buffer's capacity is reused, as it is
//! in the server). The reported throughput is bytes written per second by default;
//! `RINGNATS_BENCH_THROUGHPUT=elements` reports messages/s for the same ids instead.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringnats::protocol::encode;

/// Messages per iteration (one output buffer flush).
const MSGS: usize = 64;
const SUBJECT: &[u8] = b"orders.eu.created";
const SID: &[u8] = b"17";
const REPLY: &[u8] = b"_INBOX.Xj3hT9uWq1pL0aBcDeFgHi.42";
const HEADERS: &[u8] = b"NATS/1.0\r\nTrace-Id: 4bf92f3577b34da6\r\n\r\n";

/// Bytes/s unless `RINGNATS_BENCH_THROUGHPUT=elements` asks for messages/s.
fn throughput(bytes: usize, msgs: usize) -> Throughput {
    match std::env::var("RINGNATS_BENCH_THROUGHPUT").as_deref() {
        Ok("elements") => Throughput::Elements(msgs as u64),
        _ => Throughput::Bytes(bytes as u64),
    }
}

/// One `MSG` per payload size; every other message carries a reply subject.
fn fill_msg(out: &mut Vec<u8>, payload: &[u8]) -> usize {
    out.clear();
    for i in 0..MSGS {
        let reply = if i % 2 == 0 { &b""[..] } else { REPLY };
        encode::msg(out, SUBJECT, SID, reply, payload);
    }
    out.len()
}

/// `HMSG` with a header block; header block and payload total `payload.len() + HEADERS.len()`.
fn fill_hmsg(out: &mut Vec<u8>, payload: &[u8]) -> usize {
    out.clear();
    for i in 0..MSGS {
        let reply = if i % 2 == 0 { &b""[..] } else { REPLY };
        encode::hmsg(out, SUBJECT, SID, reply, HEADERS, payload);
    }
    out.len()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let mut out = Vec::with_capacity(256 * 1024);
    for (id, payload_len) in [("msg/16b", 16), ("msg/128b", 128)] {
        let payload = vec![b'x'; payload_len];
        let written = fill_msg(&mut out, &payload);
        assert!(out.starts_with(b"MSG orders.eu.created 17 "), "{id}");
        group.throughput(throughput(written, MSGS));
        group.bench_function(id, |b| {
            b.iter(|| black_box(fill_msg(&mut out, black_box(&payload))))
        });
    }

    // 128 bytes in all after the control line: header block plus payload.
    let payload = vec![b'x'; 128 - HEADERS.len()];
    let written = fill_hmsg(&mut out, &payload);
    assert!(out.starts_with(b"HMSG orders.eu.created 17 40 128\r\nNATS/1.0\r\n"));
    group.throughput(throughput(written, MSGS));
    group.bench_function("hmsg/128b", |b| {
        b.iter(|| black_box(fill_hmsg(&mut out, black_box(&payload))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
