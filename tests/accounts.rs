//! Accounts: isolation between accounts, stream exports/imports, service exports/imports.
//!
//! Each check starts the real binary as a `Server` (ringnats with `--shards 2`) and also runs as a
//! `*_nats_server` sibling against nats-server 2.9.10 (skipped when it is not installed; a failure
//! under CI), with two accounts: A (users `a`, `a2`) exports the stream `pub.>` and the service
//! `svc.>`; B (user `b`) imports both. Checked over raw sockets: a publish in A reaches A's
//! subscribers and never B's, not even a `>` subscriber, and a publish in B never reaches A; A's
//! `pub.x` is delivered to B's `pub.>` subscriber under its own subject; a request B sends on
//! `svc.echo` reaches A's `svc.>` responder with a reply subject; through async-nats, A's answer
//! travels back to B's requester. "Never reaches" is made observable: the silent connection is on
//! the same shard as a connection of the publishing account that did receive the message, and a
//! PING/PONG on the silent one then proves nothing was queued for it. SUB visibility across shards
//! is awaited with a PING (ringnats answers it once every shard applied the SUB). Guards the
//! per-account subject index, `auth::accounts` and the import routing of the shard.

mod common;

use std::time::Duration;

use async_nats::ConnectOptions;
use futures::StreamExt;

use common::{Launch, RawConn, Server, try_connect};

const ACCOUNTS_CONF: &str = r#"
accounts {
  A: {
    users: [ {user: a, password: apw}, {user: a2, password: a2pw} ]
    exports: [ {stream: "pub.>"}, {service: "svc.>"} ]
  }
  B: {
    users: [ {user: b, password: bpw} ]
    imports: [
      {stream: {account: A, subject: "pub.>"}}
      {service: {account: A, subject: "svc.>"}}
    ]
  }
}
"#;

/// A raw connection logged in as `user` (password `<user>pw`), `verbose` off.
fn login(server: &Server, user: &str) -> RawConn {
    let mut conn = RawConn::connect_as(server.port(), user, &format!("{user}pw"));
    conn.expect_open();
    conn
}

/// A connection of `user` on the same shard as `other` (ringnats: `client_id % shards`).
fn login_on_shard_of(server: &Server, user: &str, other: &RawConn, shards: u64) -> RawConn {
    for _ in 0..40 {
        let conn = login(server, user);
        if conn.client_id() % shards == other.client_id() % shards {
            return conn;
        }
    }
    panic!(
        "no connection of {user} landed on the shard of client {}",
        other.client_id()
    );
}

fn shards_of(broker: &Launch) -> u64 {
    if broker.is_ringnats() { 2 } else { 1 }
}

// ---- isolation -------------------------------------------------------------------------------

fn check_isolation(broker: &Launch) {
    let server = broker.config(ACCOUNTS_CONF).start();
    let shards = shards_of(broker);
    let mut b = login(&server, "b");
    b.subscribe_synced(">", "1");
    b.subscribe_synced("foo", "2");
    let mut a_witness = login_on_shard_of(&server, "a2", &b, shards);
    a_witness.subscribe_synced("foo", "1");
    let mut a = login(&server, "a");
    a.subscribe_synced("bar", "1");

    a.send(b"PUB foo 3\r\none\r\n");
    a.ping_pong();
    a_witness.expect_msg("foo", "1", None, b"one");
    // The witness shares b's shard: had the message leaked into B it would be queued by now.
    b.expect_nothing_more("A's publish reached B");

    // The other way: B publishes on a subject A listens to.
    let mut a_witness_b = login_on_shard_of(&server, "b", &a, shards);
    a_witness_b.subscribe_synced("bar", "9");
    b.send(b"PUB bar 3\r\ntwo\r\n");
    b.expect_msg("bar", "1", None, b"two");
    a_witness_b.expect_msg("bar", "9", None, b"two");
    a.expect_nothing_more("B's publish reached A");
}

#[test]
fn publish_in_one_account_never_reaches_another() {
    check_isolation(&Launch::ringnats());
}

#[test]
fn publish_in_one_account_never_reaches_another_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_isolation(&nats);
    }
}

// ---- stream import ---------------------------------------------------------------------------

fn check_stream_import(broker: &Launch) {
    let server = broker.config(ACCOUNTS_CONF).start();
    let mut b = login(&server, "b");
    b.subscribe_synced("pub.>", "7");
    let mut a = login(&server, "a");
    a.send(b"PUB pub.x 5\r\nhello\r\n");
    a.send(b"PUB pub.y.z r.1 2\r\nhi\r\n");
    a.send(b"PUB notpub 2\r\nno\r\n");
    a.ping_pong();
    b.expect_msg("pub.x", "7", None, b"hello");
    let msg = b.read_msg();
    assert_eq!(
        (msg.subject.as_str(), msg.sid.as_str(), &msg.payload[..]),
        ("pub.y.z", "7", &b"hi"[..]),
        "{msg:?}"
    );
    // The reply subject crosses too (nats-server may map it; it must be there).
    assert!(msg.reply.is_some(), "reply subject lost: {msg:?}");
}

#[test]
fn stream_export_is_delivered_to_the_importing_account() {
    check_stream_import(&Launch::ringnats());
}

#[test]
fn stream_export_is_delivered_to_the_importing_account_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_stream_import(&nats);
    }
}

// ---- service import --------------------------------------------------------------------------

fn check_service_request_reaches_exporter(broker: &Launch) {
    let server = broker.config(ACCOUNTS_CONF).start();
    let mut responder = login(&server, "a");
    responder.subscribe_synced("svc.>", "3");
    let mut b = login(&server, "b");
    b.subscribe_synced("_INBOX.b.*", "1");
    b.send(b"PUB svc.echo _INBOX.b.1 4\r\nping\r\n");
    b.ping_pong();
    let request = responder.read_msg();
    assert_eq!(request.subject, "svc.echo", "{request:?}");
    assert_eq!(request.sid, "3");
    assert_eq!(request.payload, b"ping");
    assert!(
        request.reply.as_deref().is_some_and(|r| !r.is_empty()),
        "the request reached A without a reply subject: {request:?}"
    );
    // A publish in B on a service subject is not a stream: B's own `svc.>` is not A's.
    let mut b_sub = login(&server, "b");
    b_sub.subscribe_synced("svc.>", "4");
    b.send(b"PUB svc.other 1\r\nx\r\n");
    b.ping_pong();
    b_sub.expect_msg("svc.other", "4", None, b"x");
    let again = responder.read_msg();
    assert_eq!(again.subject, "svc.other", "{again:?}");
}

#[test]
fn service_request_from_importer_reaches_exporting_responder() {
    check_service_request_reaches_exporter(&Launch::ringnats());
}

#[test]
fn service_request_from_importer_reaches_exporting_responder_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_service_request_reaches_exporter(&nats);
    }
}

async fn check_service_request_reply(broker: &Launch) {
    let server = broker.config(ACCOUNTS_CONF).start();
    let a = try_connect(
        server.port(),
        ConnectOptions::with_user_and_password("a".into(), "apw".into()),
    )
    .await
    .expect("connect a");
    let b = try_connect(
        server.port(),
        ConnectOptions::with_user_and_password("b".into(), "bpw".into()),
    )
    .await
    .expect("connect b");
    let mut service = a.subscribe("svc.>").await.expect("subscribe");
    // A request into a service import with no responder yet is dropped without a
    // no-responders status (nats-server): make sure the SUB was processed first.
    let _ = a.request("svc_nobody", "".into()).await;
    let responder = tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            if let Some(reply) = msg.reply {
                let mut answer = b"re:".to_vec();
                answer.extend_from_slice(&msg.payload);
                a.publish(reply, answer.into()).await.expect("reply");
                a.flush().await.expect("flush");
            }
        }
    });
    // The responder's SUB may not be visible to b's shard yet: retry on no-responders or
    // silence, a bounded number of times.
    let mut answer = None;
    for _ in 0..20 {
        let request = b.request("svc.echo", "ping".into());
        match tokio::time::timeout(Duration::from_millis(500), request).await {
            Ok(Ok(msg)) => {
                answer = Some(msg);
                break;
            }
            Ok(Err(err)) if err.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(Err(err)) => panic!("request failed: {err}"),
            // Dropped for want of a responder (no status for imports): ask again.
            Err(_) => {}
        }
    }
    responder.abort();
    let answer = answer.expect("no reply to any of 20 requests");
    assert_eq!(&answer.payload[..], b"re:ping");
}

#[tokio::test]
async fn service_request_reply_across_accounts() {
    check_service_request_reply(&Launch::ringnats()).await;
}

#[tokio::test]
async fn service_request_reply_across_accounts_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_service_request_reply(&nats).await;
    }
}
