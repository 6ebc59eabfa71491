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

use common::{Nats, RawConn, Server, next_msg, wait_for_route};

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
    let server = Server::start_with(common::ServerOpts {
        config_extra: format!("max_pending: {FANIN_MAX_PENDING}\nmax_payload: 65536"),
        ..Default::default()
    });
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
