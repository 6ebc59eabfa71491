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
