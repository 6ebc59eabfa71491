//! Publish/subscribe as a real client library sees it.
//!
//! Checked, with async-nats against a server started per test: delivery of plain subjects,
//! `*` and `>` wildcards (including the subjects that must not match), queue groups (each
//! message to exactly one member, plain subscribers still get all), request/reply, header
//! round trips, the no-responders error, `unsubscribe_after`, payloads at exactly
//! `max_payload` and one byte over, and `no_echo`. Negative cases ("this must not arrive") use
//! per-publisher ordering: the publisher sends the message that must not arrive and then a
//! marker that must, so the check never waits for time to pass. Before another connection
//! publishes, `wait_for_route` proves the subscription is visible to it (async-nats 0.46 has no
//! PING-based flush). Guards the routing core (subject index, queue selection, fan-out) and the
//! CONNECT options async-nats relies on.

mod common;

use std::collections::HashSet;

use async_nats::{ConnectOptions, HeaderMap, Subscriber};
use bytes::Bytes;
use futures::FutureExt;

use common::{Launch, Nats, Server, next_msg, wait_for_route};

async fn subscribe(nats: &Nats, subject: &str) -> Subscriber {
    nats.subscribe(subject.to_owned()).await.expect("subscribe")
}

async fn publish(nats: &Nats, subject: &str, payload: &str) {
    let payload = Bytes::copy_from_slice(payload.as_bytes());
    nats.publish(subject.to_owned(), payload)
        .await
        .expect("publish");
}

/// Receives messages and returns their (subject, payload) pairs.
async fn receive(sub: &mut Subscriber, count: usize) -> Vec<(String, String)> {
    let mut got = Vec::with_capacity(count);
    for _ in 0..count {
        let msg = next_msg(sub).await;
        got.push((
            msg.subject.to_string(),
            String::from_utf8_lossy(&msg.payload).into_owned(),
        ));
    }
    got
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(s, p)| ((*s).to_owned(), (*p).to_owned()))
        .collect()
}

#[tokio::test]
async fn publish_reaches_own_and_other_subscribers() {
    let server = Server::start("");
    let alice = Nats::connect(&server).await;
    let bob = Nats::connect(&server).await;
    let mut own = subscribe(&alice, "ps.one").await;
    let mut other = subscribe(&bob, "ps.one").await;
    wait_for_route(&alice, "ps.one", &mut other).await;

    publish(&alice, "ps.one", "hello").await;

    // Echo is on by default: the publisher's own subscription gets the message too.
    assert_eq!(receive(&mut own, 1).await, pairs(&[("ps.one", "hello")]));
    assert_eq!(receive(&mut other, 1).await, pairs(&[("ps.one", "hello")]));
}

#[tokio::test]
async fn star_matches_exactly_one_token() {
    let server = Server::start("");
    let nats = Nats::connect(&server).await;
    let mut sub = subscribe(&nats, "w.*.end").await;

    for subject in [
        "w.a.end",
        "w.end",
        "w.a.b.end",
        "w.a.end.x",
        "x.a.end",
        "w.*.end",
        "w.b.end",
    ] {
        publish(&nats, subject, subject).await;
    }

    // `w.*.end` published literally (no pedantic in async-nats) matches the `*` subscription.
    let got = receive(&mut sub, 3).await;
    let expected = [
        ("w.a.end", "w.a.end"),
        ("w.*.end", "w.*.end"),
        ("w.b.end", "w.b.end"),
    ];
    assert_eq!(got, pairs(&expected));
}

#[tokio::test]
async fn greater_than_matches_one_or_more_tokens() {
    let server = Server::start("");
    let nats = Nats::connect(&server).await;
    let mut sub = subscribe(&nats, "g.>").await;

    for subject in ["g", "g.a", "h.a", "gg.a", "g.a.b.c", "a.g.b", "g.z"] {
        publish(&nats, subject, subject).await;
    }

    let got = receive(&mut sub, 3).await;
    assert_eq!(
        got,
        pairs(&[("g.a", "g.a"), ("g.a.b.c", "g.a.b.c"), ("g.z", "g.z")])
    );
}

#[tokio::test]
async fn overlapping_subscriptions_each_get_a_copy() {
    let server = Server::start("");
    let nats = Nats::connect(&server).await;
    let mut exact = subscribe(&nats, "o.a.b").await;
    let mut star = subscribe(&nats, "o.*.b").await;
    let mut tail = subscribe(&nats, "o.>").await;

    publish(&nats, "o.a.b", "x").await;
    publish(&nats, "o.a.c", "y").await;

    assert_eq!(receive(&mut exact, 1).await, pairs(&[("o.a.b", "x")]));
    assert_eq!(receive(&mut star, 1).await, pairs(&[("o.a.b", "x")]));
    assert_eq!(
        receive(&mut tail, 2).await,
        pairs(&[("o.a.b", "x"), ("o.a.c", "y")])
    );
}

#[tokio::test]
async fn queue_group_delivers_each_message_to_exactly_one_member() {
    const MEMBERS: usize = 3;
    const COUNT: usize = 300;
    let server = Server::start("");
    let publisher = Nats::connect(&server).await;
    let mut members = Vec::new();
    for index in 0..MEMBERS {
        let nats = Nats::connect(&server).await;
        let sub = nats
            .queue_subscribe("q.work", "workers".to_owned())
            .await
            .expect("qsub");
        // A connection's SUBs are processed in order, so once this later plain subscription is
        // visible to the publisher, the queue subscription before it is too.
        let ready_subject = format!("q.ready.{index}");
        let mut ready = subscribe(&nats, &ready_subject).await;
        wait_for_route(&publisher, &ready_subject, &mut ready).await;
        members.push((nats, sub));
    }
    let plain_client = Nats::connect(&server).await;
    let mut plain = subscribe(&plain_client, "q.work").await;
    wait_for_route(&publisher, "q.work", &mut plain).await;

    for i in 0..COUNT {
        publish(&publisher, "q.work", &i.to_string()).await;
    }

    // The plain subscriber gets every message, in publish order.
    let plain_got: Vec<String> = receive(&mut plain, COUNT)
        .await
        .into_iter()
        .map(|p| p.1)
        .collect();
    let expected: Vec<String> = (0..COUNT).map(|i| i.to_string()).collect();
    assert_eq!(plain_got, expected);

    let per_member = collect_queue_deliveries(&publisher, &mut members, COUNT).await;
    for (index, count) in per_member.iter().enumerate() {
        assert!(*count > 0, "member {index} got nothing: {per_member:?}");
    }
}

/// Reads from all members until `count` distinct payloads arrived; fails on any duplicate,
/// including one still queued after the last distinct payload. Returns per-member counts.
async fn collect_queue_deliveries(
    publisher: &Nats,
    members: &mut [(Nats, Subscriber)],
    count: usize,
) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut per_member = vec![0; members.len()];
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    while seen.len() < count {
        let next =
            futures::future::select_all(members.iter_mut().map(|(_, sub)| Box::pin(next_msg(sub))));
        let waited = tokio::time::timeout_at(deadline, next).await;
        let (msg, index, _) =
            waited.unwrap_or_else(|_| panic!("{} of {count} arrived", seen.len()));
        let payload = String::from_utf8_lossy(&msg.payload).into_owned();
        assert!(
            seen.insert(payload.clone()),
            "payload {payload} delivered twice"
        );
        per_member[index] += 1;
    }
    // A duplicate would have been published before this marker on each member's own subject,
    // and one publisher's messages arrive in order.
    for (index, (nats, sub)) in members.iter_mut().enumerate() {
        let marker_subject = format!("q.marker.{index}");
        let mut marker = subscribe(nats, &marker_subject).await;
        wait_for_route(publisher, &marker_subject, &mut marker).await;
        let extra = futures::StreamExt::next(sub).now_or_never();
        assert!(
            extra.is_none(),
            "extra delivery to member {index}: {extra:?}"
        );
    }
    per_member
}

#[tokio::test]
async fn request_gets_the_reply() {
    request_reply_round_trips(Server::start("")).await;
}

/// The same exchange with the shard's busy-poll off (`--busy_poll 0`): every turn ends in a
/// sleeping wait, so replies must come from wake-ups alone.
#[tokio::test]
async fn request_gets_the_reply_without_busy_poll() {
    let server = Launch::under_test().args(["--busy_poll", "0"]).start();
    request_reply_round_trips(server).await;
}

async fn request_reply_round_trips(server: Server) {
    let responder = Nats::connect(&server).await;
    let requester = Nats::connect(&server).await;
    let mut service = subscribe(&responder, "svc.upper").await;
    wait_for_route(&requester, "svc.upper", &mut service).await;
    let serve = tokio::spawn(async move {
        for _ in 0..3 {
            let msg = next_msg(&mut service).await;
            let reply = msg.reply.expect("request carries a reply subject");
            let upper = Bytes::from(msg.payload.to_ascii_uppercase());
            responder.publish(reply, upper).await.expect("reply");
        }
        responder.round_trip().await;
    });

    for word in ["one", "two", "three"] {
        let reply = requester
            .request("svc.upper", Bytes::from(word))
            .await
            .expect("request");
        assert_eq!(reply.payload, Bytes::from(word.to_ascii_uppercase()));
    }
    serve.await.expect("responder task");
}

#[tokio::test]
async fn headers_round_trip_untouched() {
    let server = Server::start("");
    let nats = Nats::connect(&server).await;
    let mut sub = subscribe(&nats, "hdr.t").await;

    let mut headers = HeaderMap::new();
    headers.insert("X-Trace", "abc-123");
    headers.append("X-Multi", "first");
    headers.append("X-Multi", "second");
    headers.insert("Mixed-Case-Name", "Value With Spaces");
    let payload = Bytes::from_static(b"body\r\nwith CRLF and \0 bytes");
    nats.publish_with_headers("hdr.t", headers.clone(), payload.clone())
        .await
        .expect("publish");

    let msg = next_msg(&mut sub).await;
    assert_eq!(msg.payload, payload);
    let got = msg.headers.expect("headers delivered");
    assert_eq!(got.get("X-Trace").map(|v| v.as_str()), Some("abc-123"));
    let multi: Vec<&str> = got.get_all("X-Multi").map(|v| v.as_str()).collect();
    assert_eq!(multi, ["first", "second"]);
    assert_eq!(
        got.get("Mixed-Case-Name").map(|v| v.as_str()),
        Some("Value With Spaces")
    );
    assert_eq!(got, headers);
}

#[tokio::test]
async fn request_without_subscribers_fails_with_no_responders() {
    let server = Server::start("");
    let requester = Nats::connect(&server).await;
    let started = std::time::Instant::now();
    let err = requester
        .request("nobody.listens.here", Bytes::from_static(b"?"))
        .await
        .expect_err("request with no subscriber must fail");
    assert_eq!(
        err.kind(),
        async_nats::RequestErrorKind::NoResponders,
        "{err}"
    );
    // The 503 comes back at once; a timeout would take the client's request timeout (10 s).
    assert!(
        started.elapsed() < common::TIMEOUT,
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn unsubscribe_after_stops_at_the_count() {
    let server = Server::start("");
    let nats = Nats::connect(&server).await;
    let mut limited = subscribe(&nats, "ua.t").await;
    let mut marker = subscribe(&nats, "ua.marker").await;
    limited
        .unsubscribe_after(3)
        .await
        .expect("unsubscribe_after");

    for i in 0..5 {
        publish(&nats, "ua.t", &i.to_string()).await;
    }
    publish(&nats, "ua.marker", "done").await;

    let got: Vec<String> = receive(&mut limited, 3)
        .await
        .into_iter()
        .map(|p| p.1)
        .collect();
    assert_eq!(got, ["0", "1", "2"]);
    assert_eq!(
        receive(&mut marker, 1).await,
        pairs(&[("ua.marker", "done")])
    );
    // Messages 3 and 4 were published before the marker, so they would be here by now.
    let after = futures::StreamExt::next(&mut limited).now_or_never();
    assert!(
        matches!(after, None | Some(None)),
        "message after the unsubscribe count: {after:?}"
    );
}

#[tokio::test]
async fn payload_of_exactly_max_payload_is_delivered_and_one_more_is_refused() {
    let server = Server::start("");
    let nats = Nats::connect(&server).await;
    let max = nats.server_info().max_payload;
    assert_eq!(max, 1024 * 1024, "nats-server default max_payload");
    let mut sub = subscribe(&nats, "big.t").await;

    let payload: Bytes = (0..max)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    nats.publish("big.t", payload.clone())
        .await
        .expect("publish max_payload");
    let msg = next_msg(&mut sub).await;
    assert_eq!(msg.payload.len(), max);
    assert!(msg.payload == payload, "payload altered");

    // async-nats checks the INFO max_payload itself; the server-side refusal is in
    // protocol_raw.rs and limits.rs.
    let too_big = Bytes::from(vec![7u8; max + 1]);
    let err = nats
        .publish("big.t", too_big)
        .await
        .expect_err("over max_payload");
    assert_eq!(
        err.kind(),
        async_nats::client::PublishErrorKind::MaxPayloadExceeded
    );
    // The refusal did not hurt the connection.
    publish(&nats, "big.t", "small").await;
    assert_eq!(
        next_msg(&mut sub).await.payload,
        Bytes::from_static(b"small")
    );
    assert_eq!(nats.disconnects(), 0);
}

#[tokio::test]
async fn no_echo_connection_does_not_receive_its_own_messages() {
    let server = Server::start("");
    let quiet = Nats::connect_with(&server, ConnectOptions::new().no_echo()).await;
    let other = Nats::connect(&server).await;
    let mut quiet_sub = subscribe(&quiet, "echo.t").await;
    let mut other_sub = subscribe(&other, "echo.t").await;
    wait_for_route(&other, "echo.t", &mut quiet_sub).await;
    wait_for_route(&quiet, "echo.t", &mut other_sub).await;

    publish(&quiet, "echo.t", "from-quiet").await;
    // An echo of "from-quiet" would be queued to `quiet` before this barrier completes, so it
    // would arrive before "from-other", which is published only afterwards.
    quiet.round_trip().await;
    publish(&other, "echo.t", "from-other").await;

    assert_eq!(
        receive(&mut quiet_sub, 1).await,
        pairs(&[("echo.t", "from-other")])
    );
    // The other connection sees both (two publishers: no order between them).
    let mut seen = receive(&mut other_sub, 2).await;
    seen.sort();
    assert_eq!(
        seen,
        pairs(&[("echo.t", "from-other"), ("echo.t", "from-quiet")])
    );
}
