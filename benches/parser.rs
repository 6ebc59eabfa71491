//! Client protocol parser: `PUB` at three payload sizes, `HPUB`, and a stream that arrives in
//! 7-byte pieces. Ids are `parser/<case>/<size>`.
//!
//! Each iteration parses one read buffer of [`OPS`] identical ops, as a busy connection hands the
//! parser a buffer of many ops. The reported throughput is bytes/s by default;
//! `RINGNATS_BENCH_THROUGHPUT=elements` reports ops/s for the same ids instead.
//! `parser/split/128b` parses the same bytes as `parser/pub/128b` but delivered 7 bytes at a time,
//! with the caller keeping the unconsumed tail in its own buffer as `shard::on_data` does, so the
//! difference between the two is the cost of resuming a partial op.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringnats::protocol::{Op, Parser, ParserLimits};

/// Ops per iteration (one read buffer).
const OPS: usize = 64;
/// Piece size for `parser/split`: small and odd, so pieces end inside every part of an op.
const PIECE_LEN: usize = 7;

/// `count` copies of `PUB orders.eu.created <size>\r\n<payload>\r\n`.
fn pub_stream(payload_len: usize, count: usize) -> Vec<u8> {
    let payload = vec![b'x'; payload_len];
    let op = [
        format!("PUB orders.eu.created {payload_len}\r\n").as_bytes(),
        &payload,
        b"\r\n",
    ]
    .concat();
    op.repeat(count)
}

/// `count` copies of an `HPUB` whose header block and payload total `total_len` bytes.
fn hpub_stream(total_len: usize, count: usize) -> Vec<u8> {
    let headers: &[u8] = b"NATS/1.0\r\nTrace-Id: 4bf92f3577b34da6\r\n\r\n";
    let payload = vec![b'x'; total_len - headers.len()];
    let line = format!("HPUB orders.eu.created {} {total_len}\r\n", headers.len());
    let op = [line.as_bytes(), headers, &payload, b"\r\n"].concat();
    op.repeat(count)
}

/// Bytes/s unless `RINGNATS_BENCH_THROUGHPUT=elements` asks for ops/s.
fn throughput(bytes: usize, ops: usize) -> Throughput {
    match std::env::var("RINGNATS_BENCH_THROUGHPUT").as_deref() {
        Ok("elements") => Throughput::Elements(ops as u64),
        _ => Throughput::Bytes(bytes as u64),
    }
}

fn new_parser() -> Parser {
    let mut parser = Parser::new(ParserLimits::default());
    parser.set_headers(true);
    parser
}

/// Parses every op in `buf`; returns the op count and the bytes consumed.
fn parse_whole(parser: &mut Parser, buf: &[u8]) -> (usize, usize) {
    let mut used = 0;
    let mut ops = 0;
    while let Ok(Some((op, n))) = parser.parse(&buf[used..]) {
        black_box(op);
        used += n;
        ops += 1;
    }
    (ops, used)
}

/// Feeds `stream` in `PIECE_LEN` pieces the way a connection does: parse straight out of the
/// piece when nothing is held back, else append to `held` and parse from there; keep the tail.
fn parse_in_pieces(parser: &mut Parser, held: &mut Vec<u8>, stream: &[u8]) -> usize {
    let mut ops = 0;
    for piece in stream.chunks(PIECE_LEN) {
        if held.is_empty() {
            let (n, used) = parse_whole(parser, piece);
            ops += n;
            held.extend_from_slice(&piece[used..]);
        } else {
            held.extend_from_slice(piece);
            let (n, used) = parse_whole(parser, held);
            ops += n;
            held.drain(..used);
        }
    }
    ops
}

fn bench(c: &mut Criterion) {
    check_hpub_case();
    let mut group = c.benchmark_group("parser");
    let cases = [
        ("pub/16b", pub_stream(16, OPS)),
        ("pub/128b", pub_stream(128, OPS)),
        ("pub/1kb", pub_stream(1024, OPS)),
        ("hpub/128b", hpub_stream(128, OPS)),
    ];
    for (id, stream) in &cases {
        let mut parser = new_parser();
        assert_eq!(
            parse_whole(&mut parser, stream),
            (OPS, stream.len()),
            "{id}"
        );
        group.throughput(throughput(stream.len(), OPS));
        group.bench_function(*id, |b| {
            b.iter(|| black_box(parse_whole(&mut parser, black_box(stream))))
        });
    }

    let stream = pub_stream(128, OPS);
    let mut parser = new_parser();
    let mut held = Vec::with_capacity(4096);
    assert_eq!(parse_in_pieces(&mut parser, &mut held, &stream), OPS);
    assert!(held.is_empty());
    group.throughput(throughput(stream.len(), OPS));
    group.bench_function("split/128b", |b| {
        b.iter(|| black_box(parse_in_pieces(&mut parser, &mut held, black_box(&stream))))
    });
    group.finish();
}

/// The HPUB case really is a header message of 128 bytes (guards against timing an error path).
fn check_hpub_case() {
    let hpub = hpub_stream(128, 1);
    match new_parser().parse(&hpub) {
        Ok(Some((
            Op::Hpub {
                headers, payload, ..
            },
            n,
        ))) => {
            assert_eq!((headers.len() + payload.len(), n), (128, hpub.len()));
        }
        other => panic!("the hpub case does not parse: {other:?}"),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
