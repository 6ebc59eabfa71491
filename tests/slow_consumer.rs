//! Slow consumers: a subscriber that stops reading is cut off; nobody else is hurt.
//!
//! Checked against a server with `max_pending: 262144`, `write_deadline: "500ms"` (and
//! `max_payload: 65536`, which must not exceed max_pending): a raw subscriber with a tiny kernel
//! receive buffer subscribes and then stops reading; a healthy async-nats subscriber on the same
//! subject keeps pace with a publisher that sends a bounded stream (20 000 x 1 KiB, in windows the
//! healthy subscriber confirms, all under a time bound). Afterwards the stalled socket, read
//! again, reaches EOF (or a reset) having received far less than the stream: the server closed
//! it, as nats-server does, with no `-ERR`. The healthy subscriber got every message in order
//! without a disconnect, and the server still accepts and serves new connections. Guards the
//! outbound-buffer limit and the promise that one stuck reader does not stall the others.

mod common;

use std::time::Duration;

use bytes::Bytes;

use common::{Launch, Nats, RawConn, Server, next_msg, wait_for_route};

const MESSAGES: usize = 20_000;
const PAYLOAD_BYTES: usize = 1024;
/// Messages published before waiting for the healthy subscriber to catch up; well under
/// `max_pending` so the healthy subscriber is never at risk.
const WINDOW: usize = 64;
const LOAD_TIME_MAX: Duration = Duration::from_secs(30);

#[tokio::test]
async fn stalled_subscriber_is_disconnected_and_others_get_everything() {
    // nats-server refuses to start when max_payload (default 1 MiB) exceeds max_pending.
    // nats-server 2.9.10 may flush a subscriber's socket from the publisher's read loop, so a
    // stuck subscriber holds the publisher for up to `write_deadline` (default 10 s) before it
    // is closed; a short deadline keeps the test fast.
    let config = "max_pending: 262144\nmax_payload: 65536\nwrite_deadline: \"500ms\"";
    let server = Server::start(config);
    let mut stalled = RawConn::connect_small_rcvbuf(server.port(), 4096);
    stalled.send_connect(r#"{"verbose":false,"pedantic":false}"#);
    stalled.send(b"SUB sc 1\r\n");
    stalled.expect_open();

    let healthy = Nats::connect(&server).await;
    let mut healthy_sub = healthy.subscribe("sc").await.expect("subscribe");
    let publisher = Nats::connect(&server).await;
    wait_for_route(&publisher, "sc", &mut healthy_sub).await;

    let load = publish_in_windows(&publisher, &mut healthy_sub);
    tokio::time::timeout(LOAD_TIME_MAX, load)
        .await
        .expect("load did not finish in time");
    assert_eq!(
        healthy.disconnects(),
        0,
        "the healthy subscriber was disconnected"
    );
    assert_eq!(publisher.disconnects(), 0, "the publisher was disconnected");

    // Reading again, the stalled socket ends: the server closed it.
    let drained = stalled.drain_until_closed(common::TIMEOUT);
    let stream_bytes = MESSAGES * PAYLOAD_BYTES;
    assert!(
        drained < stream_bytes / 2,
        "stalled reader got {drained} of {stream_bytes} bytes"
    );

    let mut fresh = RawConn::connect(server.port());
    fresh.send_connect(r#"{"verbose":false,"pedantic":false}"#);
    fresh.send(b"SUB after 1\r\nPUB after 2\r\nok\r\n");
    fresh.expect_msg("after", "1", None, b"ok");
}

/// Publishes `MESSAGES` sequenced payloads; after each window, reads that window from the
/// healthy subscriber and checks order.
async fn publish_in_windows(publisher: &Nats, healthy_sub: &mut async_nats::Subscriber) {
    let mut next_expected = 0;
    for start in (0..MESSAGES).step_by(WINDOW) {
        let end = (start + WINDOW).min(MESSAGES);
        for seq in start..end {
            publisher
                .publish("sc", payload(seq))
                .await
                .expect("publish");
        }
        while next_expected < end {
            let msg = next_msg(healthy_sub).await;
            assert_eq!(msg.payload.len(), PAYLOAD_BYTES);
            assert_eq!(
                sequence(&msg.payload),
                next_expected,
                "healthy subscriber order"
            );
            next_expected += 1;
        }
    }
}

fn payload(seq: usize) -> Bytes {
    let mut bytes = vec![b'.'; PAYLOAD_BYTES];
    let digits = format!("{seq:08}");
    bytes[..digits.len()].copy_from_slice(digits.as_bytes());
    Bytes::from(bytes)
}

fn sequence(payload: &[u8]) -> usize {
    let digits = std::str::from_utf8(&payload[..8]).expect("sequence digits");
    digits.parse().expect("sequence number")
}

// ---- fast producers, slower subscriber ---------------------------------------------------

/// `max_pending` for the fan-in test: the stall threshold is half of it.
const FANIN_MAX_PENDING: usize = 2 * 1024 * 1024;
const FANIN_PUBLISHERS: usize = 4;
const FANIN_MESSAGES_EACH: usize = 4_000;
const FANIN_PAYLOAD: usize = 1024;

/// Four publishers write 16 MiB as fast as their sockets take it, eight times `max_pending`, to
/// one subscriber that reads steadily but slower. The server must hold the publishers back (it
/// stops reading them, as nats-server's `stalledWait` does) rather than queue their bytes for
/// the subscriber and close it as a slow consumer: the subscriber gets every message, each
/// publisher's in order, and is never disconnected.
fn scenario_fan_in_holds_publishers_back(port: u16) {
    let mut sub = RawConn::connect_small_rcvbuf(port, 16 * 1024);
    sub.send_connect(r#"{"verbose":false,"pedantic":false}"#);
    sub.send(b"SUB fanin.* 1\r\n");
    sub.ping_pong();
    let publishers: Vec<_> = (0..FANIN_PUBLISHERS)
        .map(|p| {
            let mut conn = RawConn::connect(port);
            conn.send_connect(r#"{"verbose":false,"pedantic":false}"#);
            std::thread::spawn(move || {
                let mut batch = Vec::new();
                for seq in 0..FANIN_MESSAGES_EACH {
                    let mut payload = vec![b'x'; FANIN_PAYLOAD];
                    let tag = format!("{seq:08}");
                    payload[..8].copy_from_slice(tag.as_bytes());
                    batch
                        .extend_from_slice(format!("PUB fanin.{p} {FANIN_PAYLOAD}\r\n").as_bytes());
                    batch.extend_from_slice(&payload);
                    batch.extend_from_slice(b"\r\n");
                    if batch.len() >= 256 * 1024 {
                        conn.send(&batch);
                        batch.clear();
                    }
                }
                conn.send(&batch);
                conn.ping_pong();
                conn
            })
        })
        .collect();
    let mut next = [0usize; FANIN_PUBLISHERS];
    let deadline = std::time::Instant::now() + LOAD_TIME_MAX;
    for received in 0..FANIN_PUBLISHERS * FANIN_MESSAGES_EACH {
        assert!(
            std::time::Instant::now() < deadline,
            "fan-in did not finish in {LOAD_TIME_MAX:?}"
        );
        let msg = sub.read_msg();
        let p: usize = msg.subject["fanin.".len()..]
            .parse()
            .expect("publisher index");
        let seq: usize = std::str::from_utf8(&msg.payload[..8])
            .expect("tag")
            .parse()
            .expect("sequence");
        assert_eq!(
            seq, next[p],
            "publisher {p} out of order at message {received}"
        );
        next[p] += 1;
        // A steady reader, slower than four writers: a pause every 32 KiB or so.
        if received % 32 == 0 {
            std::thread::sleep(Duration::from_micros(300));
        }
    }
    for publisher in publishers {
        publisher.join().expect("publisher thread");
    }
    sub.ping_pong();
}

#[test]
fn fan_in_holds_publishers_back_instead_of_dropping_the_subscriber() {
    let server = Server::start(&format!(
        "max_pending: {FANIN_MAX_PENDING}\nmax_payload: 65536"
    ));
    scenario_fan_in_holds_publishers_back(server.port());
}

#[test]
fn fan_in_holds_publishers_back_instead_of_dropping_the_subscriber_nats_server() {
    if let Some(server) = common::start_nats_server(
        &format!("max_pending: {FANIN_MAX_PENDING}\nmax_payload: 65536"),
        &[],
    ) {
        scenario_fan_in_holds_publishers_back(server.port());
    }
}

// ---- one subscriber stops reading, another keeps reading -----------------------------------

/// `max_pending` and `write_deadline` of the issue's run: the stuck subscriber is cut either
/// way, and the healthy one must not be cut with it.
const STUCK_CONFIG: &str = "max_pending: 1048576\nmax_payload: 65536\nwrite_deadline: \"2s\"";
/// Small messages, as in the issue: one op at a time adds little to a subscriber's pending
/// bytes, so a publisher that is let through an op at a time fills nobody.
const STUCK_MESSAGES: usize = 400_000;
const STUCK_PAYLOAD: usize = 16;
/// The healthy subscriber sleeps 1 ms every this many messages: at most about 8 MB/s, slower
/// than the publisher, so the publisher waits for it too.
const HEALTHY_PAUSE_EVERY: usize = 256;

/// Connects (with `connect`) until the connection lands on `shard` of `shards`.
fn connect_on_shard(shards: usize, shard: u64, connect: impl Fn() -> RawConn) -> RawConn {
    for _ in 0..64 {
        let conn = connect();
        if conn.client_id() % shards as u64 == shard {
            return conn;
        }
    }
    panic!("no connection landed on shard {shard} of {shards}");
}

/// One publisher, two subscribers on one subject; one subscriber (a tiny receive buffer) never
/// reads. The other reads every message, slower than the publisher writes, so the
/// publisher is held back for it too. The healthy subscriber must get every message in order
/// and stay open; the stuck one must be closed as a slow consumer. With `shards` 2 the
/// publisher is on the other shard than the subscribers (`healthy_with_publisher` puts the
/// healthy one on the publisher's shard). Returns the client ids of the healthy and the stuck
/// subscriber.
fn scenario_stuck_subscriber(port: u16, shards: usize, healthy_with_publisher: bool) -> (u64, u64) {
    let sub_shard = 0;
    let pub_shard = (shards as u64 - 1).min(1);
    let healthy_shard = if healthy_with_publisher {
        pub_shard
    } else {
        sub_shard
    };
    let mut stuck = connect_on_shard(shards, sub_shard, || {
        RawConn::connect_small_rcvbuf(port, 4096)
    });
    stuck.send_connect(r#"{"verbose":false,"pedantic":false}"#);
    stuck.send(b"SUB stuck 1\r\n");
    stuck.ping_pong();
    let mut healthy = connect_on_shard(shards, healthy_shard, || RawConn::connect(port));
    healthy.send_connect(r#"{"verbose":false,"pedantic":false}"#);
    healthy.send(b"SUB stuck 1\r\n");
    healthy.ping_pong();
    let mut publisher = connect_on_shard(shards, pub_shard, || RawConn::connect(port));
    publisher.send_connect(r#"{"verbose":false,"pedantic":false}"#);
    publisher.ping_pong();
    let (healthy_cid, stuck_cid) = (healthy.client_id(), stuck.client_id());

    let writer = std::thread::spawn(move || {
        let mut batch = Vec::new();
        for seq in 0..STUCK_MESSAGES {
            batch.extend_from_slice(
                format!("PUB stuck {STUCK_PAYLOAD}\r\n{seq:016}\r\n").as_bytes(),
            );
            if batch.len() >= 256 * 1024 {
                publisher.send(&batch);
                batch.clear();
            }
        }
        publisher.send(&batch);
        publisher
    });
    read_sequence(&mut healthy);
    healthy.expect_open();
    let mut publisher = writer.join().expect("publisher thread");
    publisher.expect_open();
    let drained = stuck.drain_until_closed(common::TIMEOUT);
    assert!(
        drained < STUCK_MESSAGES * STUCK_PAYLOAD / 2,
        "the stuck subscriber was not cut: it got {drained} bytes"
    );
    (healthy_cid, stuck_cid)
}

/// Reads `STUCK_MESSAGES` MSGs and checks that their payloads count up from 0, slower than the
/// publisher writes. Parses in place and slows down by sleeping, so it needs little CPU: one
/// that burnt a tenth of a core to free a 64 KiB segment of its socket buffer looked stuck on
/// a loaded machine that gave it less.
fn read_sequence(healthy: &mut RawConn) {
    let deadline = std::time::Instant::now() + LOAD_TIME_MAX;
    let mut data = Vec::new();
    let mut at = 0;
    let mut seq = 0;
    while seq < STUCK_MESSAGES {
        assert!(
            std::time::Instant::now() < deadline,
            "the healthy subscriber got {seq} of {STUCK_MESSAGES} in {LOAD_TIME_MAX:?}"
        );
        data.drain(..at);
        at = 0;
        healthy.read_chunk(&mut data);
        while let Some(eol) = memchr::memmem::find(&data[at..], b"\r\n") {
            let line = &data[at..at + eol];
            if line == b"PING" {
                healthy.send(b"PONG\r\n");
                at += eol + 2;
                continue;
            }
            let expected = format!("MSG stuck 1 {STUCK_PAYLOAD}");
            assert_eq!(
                common::show(line),
                expected,
                "the healthy subscriber's line"
            );
            let body = at + eol + 2;
            if data.len() < body + STUCK_PAYLOAD + 2 {
                break;
            }
            let got: usize = std::str::from_utf8(&data[body..body + STUCK_PAYLOAD])
                .expect("tag")
                .parse()
                .expect("sequence");
            assert_eq!(
                got, seq,
                "the healthy subscriber lost or reordered messages"
            );
            at = body + STUCK_PAYLOAD + 2;
            seq += 1;
            if seq % HEALTHY_PAUSE_EVERY == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            if seq == STUCK_MESSAGES {
                // Only server PINGs may follow the last message (the RTT PING comes 2 s after
                // CONNECT, as from nats-server).
                let rest = &data[at..];
                const PING: &[u8] = b"PING\r\n";
                assert!(
                    rest.len() % PING.len() == 0 && rest.chunks(PING.len()).all(|c| c == PING),
                    "more than was published: {}",
                    common::show(rest)
                );
                for _ in rest.chunks(PING.len()) {
                    healthy.send(b"PONG\r\n");
                }
                break;
            }
        }
    }
}

/// The server's slow-consumer lines about client `cid`.
fn slow_consumer_lines(log: &str, cid: u64) -> Vec<&str> {
    let tags = [format!("cid:{cid} "), format!("cid:{cid}-")];
    log.lines()
        .filter(|line| line.contains("Slow Consumer Detected"))
        .filter(|line| tags.iter().any(|tag| line.contains(tag.as_str())))
        .collect()
}

fn stuck_subscriber_on_shards(shards: usize, healthy_with_publisher: bool) {
    let server = Launch::under_test()
        .config(STUCK_CONFIG)
        .shards(shards)
        // Debug lines (a subscriber found stuck) go with the log a failure prints.
        .arg("-D")
        .start();
    let (healthy, stuck) = scenario_stuck_subscriber(server.port(), shards, healthy_with_publisher);
    let log = server.output();
    assert_eq!(
        slow_consumer_lines(&log, healthy),
        Vec::<&str>::new(),
        "the healthy subscriber (cid {healthy}) was closed as a slow consumer"
    );
    // Having drained nothing for a whole stall window, the stuck subscriber stalls the
    // publisher no more: the publisher's messages fill it to max_pending. (Letting the
    // publisher through an op at a time for it instead feeds it a message at a time until the
    // write deadline, and its subscribers starve meanwhile.)
    let lines = slow_consumer_lines(&log, stuck);
    assert!(
        lines.len() == 1 && lines[0].contains("MaxPending"),
        "the stuck subscriber (cid {stuck}) was not filled to max_pending and cut: {lines:?}\n{log}"
    );
}

#[test]
fn a_stuck_subscriber_is_cut_and_the_healthy_one_gets_everything() {
    stuck_subscriber_on_shards(1, false);
}

#[test]
fn a_stuck_subscriber_is_cut_and_the_healthy_one_gets_everything_across_shards() {
    stuck_subscriber_on_shards(2, false);
}

#[test]
fn a_stuck_subscriber_on_another_shard_does_not_hold_the_publishers_shard() {
    stuck_subscriber_on_shards(2, true);
}

#[test]
fn a_stuck_subscriber_is_cut_and_the_healthy_one_gets_everything_nats_server() {
    if let Some(server) = common::start_nats_server(STUCK_CONFIG, &[]) {
        let (healthy, stuck) = scenario_stuck_subscriber(server.port(), 1, false);
        let log = server.output();
        assert!(slow_consumer_lines(&log, healthy).is_empty(), "{log}");
        assert_eq!(slow_consumer_lines(&log, stuck).len(), 1, "{log}");
    }
}

/// A client that subscribes to its own subject several times, sends PING (its PONG waits for
/// the other shard's acknowledgement, so its reading pauses) and then a burst of PUBs, is cut
/// as a slow consumer by its own echo when the PUBs run after the PONG. The server must stay
/// up: the ops after the one that closed the publisher once ran on its freed slot and panicked
/// the shard (found by the simulator, `tests/sim.rs` seed 2).
#[test]
fn a_publisher_cut_by_its_own_echo_after_a_held_pong_leaves_the_server_up() {
    const SIDS: usize = 8;
    let mut server = Launch::under_test()
        .config("max_pending: 65536\nmax_payload: 65536")
        .shards(2)
        .start();
    for _ in 0..4 {
        let mut conn = RawConn::connect(server.port());
        let mut burst = Vec::new();
        burst.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n");
        for sid in 1..=SIDS {
            burst.extend_from_slice(format!("SUB echo {sid}\r\n").as_bytes());
        }
        burst.extend_from_slice(b"PING\r\n");
        let payload = vec![b'x'; 16 * 1024];
        for _ in 0..8 {
            burst.extend_from_slice(format!("PUB echo {}\r\n", payload.len()).as_bytes());
            burst.extend_from_slice(&payload);
            burst.extend_from_slice(b"\r\n");
        }
        conn.send(&burst);
        conn.drain_until_closed(common::TIMEOUT);
        server.assert_alive();
    }
    let mut check = RawConn::connect(server.port());
    check.send_connect(r#"{"verbose":false,"pedantic":false}"#);
    check.expect_open();
    server.assert_alive();
}
