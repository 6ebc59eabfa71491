//! Replies to service-import requests can be neither replayed nor forged (issue 8 §3).
//!
//! Account A imports services from B: `svc.>` (default `singleton` responses) and `st.>`
//! (`response_type: stream`); C is unrelated. Over raw sockets against the real binary with two
//! shards, the responder placed on the requester's shard and on the other one: the reply subject
//! B receives reveals neither A nor A's inbox and differs per request; B answering twice, then C
//! and A publishing on that reply subject, deliver exactly B's first answer; on a `stream`
//! export every answer of B arrives and C's does not, until B's empty message ends the stream.
//! "Not delivered" is observed with a marker: C sits on A's shard, so whatever its publish
//! delivers is queued before C's PONG, and B's later answer on another request arrives after
//! anything B sent before it (per-publisher order). Last, a reload that swaps two accounts
//! (so their numbers change) keeps a pending reply going to A, not to the account that now has
//! A's old number. Guards `account.rs` (reply tokens and the per-shard response table),
//! `Shard::route_imports` / `on_pub` and the `ShardMsg::Response` hand-off between shards.

mod common;

use common::{Launch, RawConn, Server, TIMEOUT};

const SHARDS: u64 = 2;

fn accounts_conf(first: &str, second: &str) -> String {
    let a = r#"A: {
    users: [ {user: a, password: apw} ]
    imports: [
      {service: {account: B, subject: "svc.>"}}
      {service: {account: B, subject: "st.>"}}
    ]
  }"#;
    let x = r#"X: { users: [ {user: x, password: xpw} ] }"#;
    let pick = |name| if name == "A" { a } else { x };
    format!(
        r#"accounts {{
  {}
  {}
  B: {{
    users: [ {{user: b, password: bpw}} ]
    exports: [ {{service: "svc.>"}}, {{service: "st.>", response_type: stream}} ]
  }}
  C: {{ users: [ {{user: c, password: cpw}} ] }}
}}"#,
        pick(first),
        pick(second)
    )
}

fn start() -> Server {
    Launch::ringnats()
        .shards(SHARDS as usize)
        .config(&accounts_conf("X", "A"))
        .start()
}

fn login(server: &Server, user: &str) -> RawConn {
    let mut conn = RawConn::connect_as(server.port(), user, &format!("{user}pw"));
    conn.expect_open();
    conn
}

/// A connection of `user` on shard `shard` (ringnats places client `cid` on `cid % shards`).
fn login_on_shard(server: &Server, user: &str, shard: u64) -> RawConn {
    for _ in 0..40 {
        let conn = login(server, user);
        if conn.client_id() % SHARDS == shard {
            return conn;
        }
    }
    panic!("no connection of {user} landed on shard {shard}");
}

fn shard_of(conn: &RawConn) -> u64 {
    conn.client_id() % SHARDS
}

fn publish(conn: &mut RawConn, subject: &str, payload: &str) {
    let op = format!("PUB {subject} {}\r\n{payload}\r\n", payload.len());
    conn.send(op.as_bytes());
}

/// A sends a request on `subject` with reply `inbox`; returns the reply subject B received.
fn request(a: &mut RawConn, b: &mut RawConn, subject: &str, inbox: &str) -> String {
    let op = format!("PUB {subject} {inbox} 3\r\nreq\r\n");
    a.send(op.as_bytes());
    let msg = b.read_msg();
    assert_eq!(msg.subject, subject, "{msg:?}");
    let reply = msg.reply.expect("request without a reply subject");
    assert!(reply.starts_with("_R_."), "{reply}");
    reply
}

/// The reply subject B saw names neither A's inbox nor (as a token of its own) any account.
#[track_caller]
fn assert_opaque(reply: &str, inbox: &str) {
    assert!(
        !reply.contains("INBOX") && !reply.contains(&inbox[inbox.len() - 6..]),
        "the reply subject shows the importer's inbox: {reply}"
    );
    let tokens: Vec<&str> = reply.split('.').collect();
    assert_eq!(tokens.len(), 2, "more than one opaque token: {reply}");
}

/// Reads messages up to and including the one with payload `end` (at most 8).
fn msgs_until_end(conn: &mut RawConn) -> Vec<(String, String)> {
    let mut got = Vec::new();
    for _ in 0..8 {
        let msg = conn.read_msg();
        let payload = String::from_utf8_lossy(&msg.payload).into_owned();
        let done = payload == "end";
        got.push((msg.subject, payload));
        if done {
            return got;
        }
    }
    panic!("no end marker among {got:?}");
}

/// The issue's scenario: B answers twice, C and A publish on the same reply subject; A gets
/// B's first answer only.
fn check_singleton(responder_shard_differs: bool) {
    let server = start();
    let mut a = login(&server, "a");
    a.subscribe_synced("_INBOX.req1.*", "1");
    let b_shard = (shard_of(&a) + u64::from(responder_shard_differs)) % SHARDS;
    let mut b = login_on_shard(&server, "b", b_shard);
    b.subscribe_synced("svc.>", "1");
    let mut c = login_on_shard(&server, "c", shard_of(&a));
    let mut a2 = login_on_shard(&server, "a", shard_of(&a));
    let reply = request(&mut a, &mut b, "svc.q", "_INBOX.req1.one111");
    let marker = request(&mut a, &mut b, "svc.q", "_INBOX.req1.two222");
    publish(&mut b, &reply, "R1");
    publish(&mut b, &reply, "R2");
    b.expect_open();
    // C and a2 share A's shard: what their publishes deliver is queued before their PONG.
    publish(&mut c, &reply, "C1");
    c.expect_open();
    publish(&mut a2, &reply, "A1");
    a2.expect_open();
    publish(&mut b, &marker, "end");
    b.expect_open();
    let want = [("_INBOX.req1.one111", "R1"), ("_INBOX.req1.two222", "end")]
        .map(|(s, p)| (s.to_owned(), p.to_owned()));
    assert_eq!(msgs_until_end(&mut a), want);
    assert_ne!(reply, marker, "two requests share a reply subject");
    a.expect_nothing_more("after the marker");
    assert_opaque(&reply, "_INBOX.req1.one111");
}

#[test]
fn singleton_reply_is_delivered_once_responder_on_same_shard() {
    check_singleton(false);
}

#[test]
fn singleton_reply_is_delivered_once_responder_on_other_shard() {
    check_singleton(true);
}

/// `response_type: stream`: every answer of B arrives, C's never; an empty message from B is
/// delivered and ends the stream (nats-server `processServiceImport`).
fn check_stream(responder_shard_differs: bool) {
    let server = start();
    let mut a = login(&server, "a");
    a.subscribe_synced("_INBOX.st.*", "1");
    let b_shard = (shard_of(&a) + u64::from(responder_shard_differs)) % SHARDS;
    let mut b = login_on_shard(&server, "b", b_shard);
    b.subscribe_synced("st.>", "1");
    b.subscribe_synced("svc.>", "2");
    let mut c = login_on_shard(&server, "c", shard_of(&a));
    let reply = request(&mut a, &mut b, "st.q", "_INBOX.st.stream1");
    publish(&mut b, &reply, "S1");
    publish(&mut b, &reply, "S2");
    b.expect_open();
    publish(&mut c, &reply, "C1");
    c.expect_open();
    publish(&mut b, &reply, "S3");
    b.expect_open();
    a.expect_msg("_INBOX.st.stream1", "1", None, b"S1");
    a.expect_msg("_INBOX.st.stream1", "1", None, b"S2");
    a.expect_msg("_INBOX.st.stream1", "1", None, b"S3");
    a.expect_nothing_more("C's publish reached the stream");
    publish(&mut b, &reply, "");
    publish(&mut b, &reply, "S4");
    let marker = request(&mut a, &mut b, "svc.q", "_INBOX.st.marker");
    publish(&mut b, &marker, "end");
    b.expect_open();
    a.expect_msg("_INBOX.st.stream1", "1", None, b"");
    a.expect_msg("_INBOX.st.marker", "1", None, b"end");
    a.expect_nothing_more("after the end of the stream");
    assert_opaque(&reply, "_INBOX.st.stream1");
}

#[test]
fn stream_export_delivers_every_answer_of_the_exporter_only_same_shard() {
    check_stream(false);
}

#[test]
fn stream_export_delivers_every_answer_of_the_exporter_only_other_shard() {
    check_stream(true);
}

/// A reload that swaps X and A (their account numbers trade places) while a request is
/// pending: B's answer reaches A's inbox, never X's.
#[test]
fn pending_reply_follows_its_account_across_a_reload_that_reorders_accounts() {
    let server = start();
    let mut a_old = login(&server, "a");
    let mut x_old = login(&server, "x");
    let mut b = login(&server, "b");
    b.subscribe_synced("svc.>", "1");
    let reply = request(&mut a_old, &mut b, "svc.q", "_INBOX.rl.reload1");
    server.reload(&accounts_conf("A", "X"), TIMEOUT);
    // Users whose account changed number are closed (as moved): proof both shards reloaded.
    a_old.expect_closed();
    x_old.expect_closed();
    b.expect_open();
    let mut x = login(&server, "x");
    x.subscribe_synced("_INBOX.rl.*", "1");
    let mut a = login(&server, "a");
    a.subscribe_synced("_INBOX.rl.*", "1");
    publish(&mut b, &reply, "R1");
    b.expect_open();
    a.expect_msg("_INBOX.rl.reload1", "1", None, b"R1");
    x.expect_nothing_more("the reply went to the account with A's old number");
    assert_opaque(&reply, "_INBOX.rl.reload1");
}
