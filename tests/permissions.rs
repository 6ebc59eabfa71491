//! Per-user publish/subscribe permissions over plain TCP, as clients see them.
//!
//! Users log in with passwords (`authorization { users = [...] }`). Checked byte for byte with
//! `RawConn`: a denied PUB gets `-ERR 'Permissions Violation for Publish to "x"'`, the message is
//! dropped and the connection stays open; a denied SUB gets `... for Subscription to "x"` (with
//! `using queue "q"` for queue subscriptions) and is ignored; queue entries (`"subject group"`)
//! decide for queue subscriptions only; deny wins over allow; entries are wildcard patterns; a
//! wildcard SUB covering a denied subject is accepted and the denied subject's messages are
//! filtered out of it (also for `>` and queue subscriptions, and a queue group passes such a
//! message to a member that may take it); `allow_responses` lets a responder answer the requests it
//! received (once, or `max` times, also through wildcard queue subscriptions);
//! `authorization.permissions` is the default for users without their own; verbose mode
//! acknowledges only accepted ops; answers stay right past the permission cache's capacity;
//! violation texts quote subjects like Go's `%q`; a reload applies new permissions, removes
//! subscriptions they deny and closes connections of removed users. Every raw scenario has a
//! `*_nats_server` sibling running it unchanged against nats-server 2.9.10 (skipped when it is not
//! installed; a failure under CI). One test pushes a steady stream from a restricted async-nats
//! publisher and checks that every allowed message arrives, in order, and no denied one does. Tests
//! marked `#[ignore = "bug: ..."]` are known ringnats deviations, kept to be un-ignored once fixed.
//! Guards `src/perms.rs` and its use in `shard/mod.rs` (`may_publish`, `may_deliver`, queue
//! routing), `shard/session.rs` (`on_sub`) and `shard/admission.rs` (`reauthorize_all`).

mod common;

use async_nats::ConnectOptions;
use common::{Launch, Nats, RawConn, Server, next_msg, start_nats_server, wait_for_route};
use futures::{FutureExt, StreamExt};

/// One config with every user the raw scenarios need; `all` may do anything.
const USERS: &str = r#"
authorization {
  users = [
    {user: all, password: all}
    {user: a, password: a, permissions: {
      publish: {allow: ["foo.>", "req.*"], deny: ["foo.secret"]}
      subscribe: {allow: "_INBOX.>", deny: ["_INBOX.x"]}
    }}
    {user: q, password: q, permissions: {subscribe: ["bar", "q.sub grp"]}}
    {user: dw, password: dw, permissions: {
      publish: {allow: [">"], deny: ["secret.>", "exact"]}
      subscribe: {allow: ["s.*"], deny: ["s.*"]}
    }}
    {user: wc, password: wc, permissions: {
      publish: ["foo.*", "bar.>"]
      subscribe: ["sub.*.x", "all.>"]
    }}
    {user: w, password: w, permissions: {subscribe: {deny: ["foo.bar"]}}}
    {user: r1, password: r1, permissions: {subscribe: "svc.>", allow_responses: true}}
    {user: r2, password: r2, permissions: {subscribe: "svc.>", allow_responses: {max: 2}}}
    {user: ev, password: ev, permissions: {publish: ["events.>"]}}
  ]
}
"#;

/// Default permissions for users that have none.
const DEFAULTS: &str = r#"
authorization {
  permissions: {publish: ["dflt.>"], subscribe: ["dflt.>"]}
  users = [
    {user: d, password: d}
    {user: own, password: own, permissions: {publish: ["own.>"]}}
  ]
}
"#;

/// A raw client logged in as `user` (password = user name), past a PING/PONG.
fn login(port: u16, user: &str) -> RawConn {
    let mut conn = RawConn::connect_as(port, user, user);
    conn.expect_open();
    conn
}

fn pub_violation(subject: &str) -> String {
    format!("Permissions Violation for Publish to \"{subject}\"")
}

fn sub_violation(subject: &str) -> String {
    format!("Permissions Violation for Subscription to \"{subject}\"")
}

fn queue_violation(subject: &str, queue: &str) -> String {
    format!("Permissions Violation for Subscription to \"{subject}\" using queue \"{queue}\"")
}

/// A watcher (user `all`) subscribed to everything, its SUB visible server-wide.
fn watcher(port: u16) -> RawConn {
    let mut conn = login(port, "all");
    conn.send(b"SUB > 1\r\n");
    conn.expect_open();
    conn
}

/// Runs `scenario` against ringnats and, in the `_nats_server` test, against nats-server.
macro_rules! on_both {
    ($ringnats:ident, $nats_server:ident, $config:expr, $scenario:path) => {
        #[test]
        fn $ringnats() {
            let server = Server::start($config);
            $scenario(server.port());
        }

        #[test]
        fn $nats_server() {
            if let Some(server) = start_nats_server($config, &[]) {
                $scenario(server.port());
            }
        }
    };
}

// ---- publish -----------------------------------------------------------------------------

/// Allow `foo.>`, `req.*`; deny `foo.secret`: denied PUBs get the exact `-ERR`, are not
/// delivered, and the connection stays open.
fn scenario_publish_allow_deny(port: u16) {
    let mut watch = watcher(port);
    let mut a = login(port, "a");
    a.send(b"PUB foo.secret 2\r\nno\r\nPUB baz 2\r\nno\r\nPUB foo.ok 2\r\nok\r\n");
    a.send(b"PUB req.one 3\r\nyes\r\nPUB req.one.two 2\r\nno\r\nPUB foo.end 3\r\nend\r\n");
    a.expect_err(&pub_violation("foo.secret"));
    a.expect_err(&pub_violation("baz"));
    a.expect_err(&pub_violation("req.one.two"));
    a.expect_open();
    watch.expect_msg("foo.ok", "1", None, b"ok");
    watch.expect_msg("req.one", "1", None, b"yes");
    watch.expect_msg("foo.end", "1", None, b"end");
    watch.expect_open();
}

on_both!(
    publish_allow_and_deny_lists,
    publish_allow_and_deny_lists_nats_server,
    USERS,
    scenario_publish_allow_deny
);

/// The bytes of a publish violation, exactly: one line, then the connection still answers.
fn scenario_publish_violation_bytes(port: u16) {
    let mut a = RawConn::connect(port);
    a.send_connect(r#"{"verbose":false,"pedantic":false,"headers":true,"user":"a","pass":"a"}"#);
    a.set_auto_pong(false);
    a.send(b"PUB baz 5\r\nhello\r\nPING\r\n");
    a.expect_line(b"-ERR 'Permissions Violation for Publish to \"baz\"'");
    a.expect_line(b"PONG");
    // HPUB is checked the same way.
    a.send(b"HPUB foo.secret 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n");
    a.expect_line(b"-ERR 'Permissions Violation for Publish to \"foo.secret\"'");
    a.expect_line(b"PONG");
}

on_both!(
    publish_violation_exact_bytes,
    publish_violation_exact_bytes_nats_server,
    USERS,
    scenario_publish_violation_bytes
);

// ---- subscribe ---------------------------------------------------------------------------

/// Allow `_INBOX.>`, deny `_INBOX.x`: refused SUBs get the exact `-ERR` and are ignored.
fn scenario_subscribe_allow_deny(port: u16) {
    let mut a = login(port, "a");
    a.send(b"SUB other 1\r\nSUB _INBOX.x 2\r\nSUB foo.> q 3\r\nSUB _INBOX.y 4\r\n");
    a.expect_err(&sub_violation("other"));
    a.expect_err(&sub_violation("_INBOX.x"));
    a.expect_err(&queue_violation("foo.>", "q"));
    a.expect_open();
    let mut all = login(port, "all");
    all.send(b"PUB other 1\r\nx\r\nPUB _INBOX.x 1\r\nx\r\nPUB _INBOX.y 2\r\nok\r\n");
    all.expect_open();
    a.expect_msg("_INBOX.y", "4", None, b"ok");
    a.expect_open();
}

on_both!(
    subscribe_allow_and_deny_lists,
    subscribe_allow_and_deny_lists_nats_server,
    USERS,
    scenario_subscribe_allow_deny
);

/// `subscribe: ["bar", "q.sub grp"]` (auth.md's live vector): the queue entry allows only
/// that group; the plain entry allows plain and any-queue subscriptions.
fn scenario_queue_entries(port: u16) {
    let mut q = login(port, "q");
    q.send(b"SUB q.sub 1\r\nSUB q.sub grp 2\r\nSUB q.sub other 3\r\n");
    q.send(b"SUB bar anyq 4\r\nSUB bar 5\r\nSUB q.sub _sys_ 6\r\n");
    q.expect_err(&sub_violation("q.sub"));
    q.expect_err(&queue_violation("q.sub", "other"));
    q.expect_err(&queue_violation("q.sub", "_sys_"));
    q.expect_open();
    let mut all = login(port, "all");
    all.send(b"PUB q.sub 1\r\na\r\nPUB bar 1\r\nb\r\n");
    all.expect_open();
    q.expect_msg("q.sub", "2", None, b"a");
    let mut sids = [q.read_msg().sid, q.read_msg().sid];
    sids.sort();
    assert_eq!(sids, ["4", "5"], "both bar subscriptions receive");
    q.expect_open();
}

on_both!(
    queue_permission_entries,
    queue_permission_entries_nats_server,
    USERS,
    scenario_queue_entries
);

// ---- deny wins, wildcards ----------------------------------------------------------------

/// Deny wins over an allow that also matches, in both directions.
fn scenario_deny_wins(port: u16) {
    let mut watch = watcher(port);
    let mut dw = login(port, "dw");
    dw.send(b"PUB secret.x 1\r\nx\r\nPUB exact 1\r\nx\r\nPUB public 2\r\nok\r\n");
    dw.expect_err(&pub_violation("secret.x"));
    dw.expect_err(&pub_violation("exact"));
    dw.send(b"SUB s.a 1\r\nSUB s.* 2\r\n");
    dw.expect_err(&sub_violation("s.a"));
    dw.expect_err(&sub_violation("s.*"));
    dw.expect_open();
    watch.expect_msg("public", "1", None, b"ok");
    watch.expect_open();
}

on_both!(deny_wins, deny_wins_nats_server, USERS, scenario_deny_wins);

/// Entries are patterns: `foo.*` allows one token, `bar.>` one or more; a SUB subject is
/// allowed only if an entry covers all of it (`sub.>` is broader than `sub.*.x`).
fn scenario_wildcard_entries(port: u16) {
    let mut watch = watcher(port);
    let mut wc = login(port, "wc");
    wc.send(b"PUB foo.a 1\r\n1\r\nPUB foo.a.b 1\r\nx\r\nPUB foo 1\r\nx\r\n");
    wc.send(b"PUB bar.a.b.c 1\r\n2\r\nPUB bar 1\r\nx\r\nPUB bar.z 1\r\n3\r\n");
    wc.expect_err(&pub_violation("foo.a.b"));
    wc.expect_err(&pub_violation("foo"));
    wc.expect_err(&pub_violation("bar"));
    wc.send(b"SUB sub.a.x 1\r\nSUB sub.*.x 2\r\nSUB sub.a.y 3\r\nSUB all.> 4\r\n");
    wc.send(b"SUB all.* 5\r\nSUB all 6\r\nSUB sub.> 7\r\n");
    wc.expect_err(&sub_violation("sub.a.y"));
    wc.expect_err(&sub_violation("all"));
    wc.expect_err(&sub_violation("sub.>"));
    wc.expect_open();
    watch.expect_msg("foo.a", "1", None, b"1");
    watch.expect_msg("bar.a.b.c", "1", None, b"2");
    watch.expect_msg("bar.z", "1", None, b"3");
    let mut all = login(port, "all");
    all.send(b"PUB sub.q.x 1\r\nm\r\nPUB all.z 1\r\nn\r\n");
    all.expect_open();
    wc.expect_msg("sub.q.x", "2", None, b"m");
    let mut sids = [wc.read_msg().sid, wc.read_msg().sid];
    sids.sort();
    assert_eq!(sids, ["4", "5"], "all.> and all.* both receive all.z");
    wc.expect_open();
}

on_both!(
    wildcard_permission_entries,
    wildcard_permission_entries_nats_server,
    USERS,
    scenario_wildcard_entries
);

/// `subscribe: {deny: ["foo.bar"]}`: `SUB foo.*` is accepted, `SUB foo.bar` is not, and
/// `foo.bar` messages never reach the wildcard subscription while `foo.baz` and `foo.qux` do.
fn scenario_wildcard_sub_filters_denied(port: u16) {
    let mut w = login(port, "w");
    w.send(b"SUB foo.* 1\r\nSUB foo.bar 2\r\n");
    w.expect_err(&sub_violation("foo.bar"));
    w.expect_open();
    let mut all = login(port, "all");
    all.send(b"PUB foo.bar 1\r\nx\r\nPUB foo.baz 3\r\nbaz\r\nPUB foo.bar 1\r\ny\r\n");
    all.send(b"PUB foo.qux 3\r\nqux\r\n");
    all.expect_open();
    w.expect_msg("foo.baz", "1", None, b"baz");
    w.expect_msg("foo.qux", "1", None, b"qux");
    w.expect_open();
    // The filter also holds for the subscriber's own messages.
    w.send(b"PUB foo.bar 1\r\nz\r\nPUB foo.end 3\r\nend\r\n");
    w.expect_msg("foo.end", "1", None, b"end");
}

on_both!(
    wildcard_sub_over_denied_subject_is_filtered,
    wildcard_sub_over_denied_subject_is_filtered_nats_server,
    USERS,
    scenario_wildcard_sub_filters_denied
);

/// A queue group whose member may not receive a subject: every such message goes to a member
/// that may (nats-server tries the next member when one refuses the delivery).
fn scenario_queue_member_filtered(port: u16) {
    let mut w = login(port, "w");
    w.send(b"SUB foo.* grp 1\r\n");
    w.expect_open();
    // The other member on the other shard of ringnats' two (`client_id % shards`), where
    // the choice between shards is made.
    let mut member = login(port, "all");
    while member.client_id() % 2 == w.client_id() % 2 {
        member = login(port, "all");
    }
    member.send(b"SUB foo.* grp 1\r\n");
    member.expect_open();
    let mut publisher = login(port, "all");
    let mut ops = Vec::new();
    for i in 0..20 {
        ops.extend_from_slice(format!("PUB foo.bar 2\r\n{i:02}\r\n").as_bytes());
    }
    publisher.send(&ops);
    publisher.expect_open();
    // Every message arrives. ringnats may deliver one that another shard's member refused
    // after later ones (it took one more hop), so the check is on the set, not the order.
    let mut got: Vec<Vec<u8>> = (0..20)
        .map(|_| {
            let msg = member.read_msg();
            assert_eq!(msg.subject, "foo.bar");
            msg.payload
        })
        .collect();
    got.sort();
    let want: Vec<Vec<u8>> = (0..20).map(|i| format!("{i:02}").into_bytes()).collect();
    assert_eq!(got, want);
    member.expect_open();
    w.expect_open();
}

#[test]
fn queue_delivery_skips_a_member_that_may_not_receive() {
    let server = Server::start(USERS);
    scenario_queue_member_filtered(server.port());
}

#[test]
fn queue_delivery_skips_a_member_that_may_not_receive_nats_server() {
    if let Some(server) = start_nats_server(USERS, &[]) {
        scenario_queue_member_filtered(server.port());
    }
}

// ---- allow_responses ---------------------------------------------------------------------

/// A requester (user `all`) waiting on `_INBOX.r1`, a responder `user` subscribed to
/// `svc.a`, and one request delivered to the responder.
fn request_setup(port: u16, user: &str) -> (RawConn, RawConn) {
    let mut requester = login(port, "all");
    requester.send(b"SUB _INBOX.r1 1\r\n");
    requester.expect_open();
    let mut responder = login(port, user);
    responder.send(b"SUB svc.a 1\r\n");
    responder.expect_open();
    send_request(&mut requester, &mut responder);
    (requester, responder)
}

fn send_request(requester: &mut RawConn, responder: &mut RawConn) {
    requester.send(b"PUB svc.a _INBOX.r1 3\r\nreq\r\n");
    responder.expect_msg("svc.a", "1", Some("_INBOX.r1"), b"req");
}

/// `allow_responses: true`: one reply to a received request; a second one, and any other
/// publish, is a violation.
fn scenario_allow_responses_once(port: u16) {
    let (mut requester, mut responder) = request_setup(port, "r1");
    responder.send(b"PUB _INBOX.r1 4\r\nrep1\r\nPUB _INBOX.r1 4\r\nrep2\r\n");
    responder.send(b"PUB other 1\r\nx\r\nPUB _INBOX.r2 1\r\nx\r\n");
    responder.expect_err(&pub_violation("_INBOX.r1"));
    responder.expect_err(&pub_violation("other"));
    responder.expect_err(&pub_violation("_INBOX.r2"));
    responder.expect_open();
    requester.expect_msg("_INBOX.r1", "1", None, b"rep1");
    requester.expect_open();
}

on_both!(
    allow_responses_true_allows_one_reply,
    allow_responses_true_allows_one_reply_nats_server,
    USERS,
    scenario_allow_responses_once
);

/// `allow_responses: {max: 2}`: two replies pass, the third is a violation; a new request
/// on the same reply subject allows replies again.
fn scenario_allow_responses_max(port: u16) {
    let (mut requester, mut responder) = request_setup(port, "r2");
    responder.send(b"PUB _INBOX.r1 4\r\nrep1\r\nPUB _INBOX.r1 4\r\nrep2\r\n");
    responder.send(b"PUB _INBOX.r1 4\r\nrep3\r\n");
    responder.expect_err(&pub_violation("_INBOX.r1"));
    responder.expect_open();
    requester.expect_msg("_INBOX.r1", "1", None, b"rep1");
    requester.expect_msg("_INBOX.r1", "1", None, b"rep2");
    requester.expect_open();

    send_request(&mut requester, &mut responder);
    responder.send(b"PUB _INBOX.r1 4\r\nrep4\r\n");
    responder.expect_open();
    requester.expect_msg("_INBOX.r1", "1", None, b"rep4");
    requester.expect_open();
}

on_both!(
    allow_responses_max_two,
    allow_responses_max_two_nats_server,
    USERS,
    scenario_allow_responses_max
);

// ---- default permissions -----------------------------------------------------------------

/// `authorization.permissions` applies to `d` (no permissions of its own), not to `own`,
/// whose own permissions replace the defaults as a whole (its subscribe is unrestricted).
fn scenario_default_permissions(port: u16) {
    let mut d = login(port, "d");
    d.send(b"SUB dflt.> 1\r\nSUB other 2\r\nPUB own.x 1\r\nx\r\nPUB dflt.x 2\r\nhi\r\n");
    d.expect_err(&sub_violation("other"));
    d.expect_err(&pub_violation("own.x"));
    d.expect_msg("dflt.x", "1", None, b"hi");
    d.expect_open();
    let mut own = login(port, "own");
    own.send(b"SUB other 1\r\nSUB own.> 2\r\nPUB dflt.y 1\r\nx\r\nPUB own.y 2\r\nok\r\n");
    own.expect_err(&pub_violation("dflt.y"));
    own.expect_msg("own.y", "2", None, b"ok");
    own.expect_open();
}

on_both!(
    default_permissions_apply_to_users_without_their_own,
    default_permissions_apply_to_users_without_their_own_nats_server,
    DEFAULTS,
    scenario_default_permissions
);

// ---- steady stream from a restricted publisher -------------------------------------------

/// Messages the restricted publisher sends; every `DENIED_EVERY`-th is followed by a denied one.
const STREAM_LEN: usize = 20_000;
const DENIED_EVERY: usize = 2_000;

#[tokio::test]
async fn restricted_publisher_stream_arrives_complete_and_in_order() {
    let server = Server::start(USERS);
    let all = ConnectOptions::with_user_and_password("all".into(), "all".into());
    let subscriber = Nats::connect_with(&server, all).await;
    let ev = ConnectOptions::with_user_and_password("ev".into(), "ev".into());
    let publisher = Nats::connect_with(&server, ev).await;
    let mut events = subscriber.subscribe("events.>").await.expect("subscribe");
    let mut others = subscriber.subscribe("other.>").await.expect("subscribe");
    wait_for_route(&publisher, "events.probe", &mut events).await;

    for i in 0..STREAM_LEN {
        let subject = format!("events.{}", i % 10);
        publisher
            .publish(subject, i.to_string().into())
            .await
            .expect("publish");
        if i % DENIED_EVERY == 0 {
            publisher
                .publish("other.x", "denied".into())
                .await
                .expect("publish");
        }
    }
    publisher.flush().await.expect("flush");
    for i in 0..STREAM_LEN {
        let msg = next_msg(&mut events).await;
        assert_eq!(msg.subject.as_str(), format!("events.{}", i % 10));
        assert_eq!(
            msg.payload,
            i.to_string(),
            "message {i} out of order or lost"
        );
    }
    // Anything delivered on `other.>` would have been queued before the last event.
    assert!(
        others.next().now_or_never().is_none(),
        "a denied message was delivered"
    );
    assert_eq!(subscriber.disconnects() + publisher.disconnects(), 0);
    // Each denied publish was answered with a violation (counted as async-nats reports them).
    let denied = STREAM_LEN.div_ceil(DENIED_EVERY);
    let deadline = tokio::time::Instant::now() + common::TIMEOUT;
    loop {
        let errors = publisher.server_errors();
        let expected = pub_violation("other.x");
        let violations = errors.iter().filter(|e| e.contains(&expected)).count();
        assert_eq!(
            violations,
            errors.len(),
            "unexpected server errors: {errors:?}"
        );
        if violations == denied {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{violations} of {denied} violations reported: {errors:?}"
        );
        // async-nats reports server errors through a callback task; nothing to wait on.
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(publisher.disconnects(), 0);
}

// ---- more cases -------------------------------------------------------------------------

/// In verbose mode a refused PUB or SUB gets its `-ERR` and no `+OK`; accepted ones get
/// `+OK`. One op at a time, each answer awaited.
fn scenario_verbose(port: u16) {
    let mut a = RawConn::connect(port);
    a.send_connect(r#"{"verbose":true,"pedantic":false,"user":"a","pass":"a"}"#);
    a.expect_line(b"+OK");
    a.send(b"PUB baz 1\r\nx\r\nPING\r\n");
    a.expect_err(&pub_violation("baz"));
    a.expect_line(b"PONG");
    a.send(b"PUB foo.ok 1\r\nx\r\n");
    a.expect_line(b"+OK");
    a.send(b"SUB other 1\r\nPING\r\n");
    a.expect_err(&sub_violation("other"));
    a.expect_line(b"PONG");
    a.send(b"SUB _INBOX.y 2\r\n");
    a.expect_line(b"+OK");
    a.send(b"SUB foo.> q 3\r\nPING\r\n");
    a.expect_err(&queue_violation("foo.>", "q"));
    a.expect_line(b"PONG");
}

on_both!(
    verbose_mode_has_no_ok_for_violations,
    verbose_mode_has_no_ok_for_violations_nats_server,
    USERS,
    scenario_verbose
);

/// The same ops pipelined in one write: the answers come in the order of the ops.
fn scenario_verbose_pipelined(port: u16) {
    let mut a = RawConn::connect(port);
    a.send_connect(r#"{"verbose":true,"pedantic":false,"user":"a","pass":"a"}"#);
    a.expect_line(b"+OK");
    a.send(b"PUB baz 1\r\nx\r\nPUB foo.ok 1\r\nx\r\nSUB other 1\r\nSUB _INBOX.y 2\r\n");
    a.send(b"SUB foo.> q 3\r\n");
    a.expect_err(&pub_violation("baz"));
    a.expect_line(b"+OK");
    a.expect_err(&sub_violation("other"));
    a.expect_line(b"+OK");
    a.expect_err(&queue_violation("foo.>", "q"));
    a.expect_open();
}

#[test]
fn verbose_pipelined_answers_keep_op_order() {
    let server = Server::start(USERS);
    scenario_verbose_pipelined(server.port());
}

#[test]
fn verbose_pipelined_answers_keep_op_order_nats_server() {
    if let Some(server) = start_nats_server(USERS, &[]) {
        scenario_verbose_pipelined(server.port());
    }
}

/// Many distinct subjects (more than the per-connection permission cache holds), allowed and
/// denied interleaved: every answer stays right while the cache is pruned.
fn scenario_many_subjects(port: u16) {
    let mut watch = watcher(port);
    let mut a = login(port, "a");
    let mut ops = Vec::new();
    for round in 0..2 {
        for i in 0..300 {
            ops.extend_from_slice(format!("PUB foo.{i} 1\r\n{round}\r\n").as_bytes());
            ops.extend_from_slice(format!("PUB baz.{i} 1\r\n{round}\r\n").as_bytes());
            if i % 50 == 0 {
                ops.extend_from_slice(b"PUB foo.secret 1\r\nx\r\n");
            }
        }
    }
    a.send(&ops);
    for _round in 0..2 {
        for i in 0..300 {
            a.expect_err(&pub_violation(&format!("baz.{i}")));
            if i % 50 == 0 {
                a.expect_err(&pub_violation("foo.secret"));
            }
        }
    }
    a.expect_open();
    for round in 0..2 {
        for i in 0..300 {
            watch.expect_msg(&format!("foo.{i}"), "1", None, round.to_string().as_bytes());
        }
    }
    watch.expect_open();
}

on_both!(
    many_subjects_through_the_permission_cache,
    many_subjects_through_the_permission_cache_nats_server,
    USERS,
    scenario_many_subjects
);

/// The delivery filter of a wildcard SUB over a denied subject also holds for `>` and for
/// a wildcard queue subscription.
fn scenario_filter_full_wildcard_and_queue(port: u16) {
    let mut w = login(port, "w");
    w.send(b"SUB > 1\r\n");
    w.expect_open();
    let mut wq = login(port, "w");
    wq.send(b"SUB foo.* grp 1\r\n");
    wq.expect_open();
    let mut all = login(port, "all");
    all.send(b"PUB foo.bar 1\r\nx\r\nPUB foo.baz 1\r\n1\r\nPUB foo.bar 1\r\ny\r\n");
    all.send(b"PUB foo.qux 1\r\n2\r\n");
    all.expect_open();
    w.expect_msg("foo.baz", "1", None, b"1");
    w.expect_msg("foo.qux", "1", None, b"2");
    w.expect_open();
    wq.expect_msg("foo.baz", "1", None, b"1");
    wq.expect_msg("foo.qux", "1", None, b"2");
    wq.expect_open();
}

on_both!(
    filter_applies_to_full_wildcard_and_queue_subs,
    filter_applies_to_full_wildcard_and_queue_subs_nats_server,
    USERS,
    scenario_filter_full_wildcard_and_queue
);

/// `allow_responses` counts requests received through wildcard and queue subscriptions too,
/// and a reply may carry headers.
fn scenario_responses_via_wildcard_and_queue(port: u16) {
    let mut requester = login(port, "all");
    requester.send(b"SUB _INBOX.> 1\r\n");
    requester.expect_open();
    let mut responder = RawConn::connect(port);
    responder.send_connect(
        r#"{"verbose":false,"pedantic":false,"headers":true,"user":"r1","pass":"r1"}"#,
    );
    responder.send(b"SUB svc.* workers 7\r\n");
    responder.expect_open();
    requester.send(b"PUB svc.q _INBOX.w1 2\r\nq1\r\nPUB svc.q _INBOX.w2 2\r\nq2\r\n");
    responder.expect_msg("svc.q", "7", Some("_INBOX.w1"), b"q1");
    responder.expect_msg("svc.q", "7", Some("_INBOX.w2"), b"q2");
    responder.send(b"HPUB _INBOX.w2 12 14\r\nNATS/1.0\r\n\r\nr2\r\nPUB _INBOX.w1 2\r\nr1\r\n");
    responder.send(b"PUB _INBOX.w1 2\r\nr3\r\n");
    responder.expect_err(&pub_violation("_INBOX.w1"));
    responder.expect_open();
    let reply = requester.read_msg();
    assert_eq!(
        (reply.subject.as_str(), &reply.payload[..]),
        ("_INBOX.w2", &b"r2"[..])
    );
    requester.expect_msg("_INBOX.w1", "1", None, b"r1");
    requester.expect_open();
}

on_both!(
    allow_responses_via_wildcard_queue_sub,
    allow_responses_via_wildcard_queue_sub_nats_server,
    USERS,
    scenario_responses_via_wildcard_and_queue
);

// ---- reload --------------------------------------------------------------------------------

/// Before the reload: `gone` exists, `a` may publish only `foo.>` and subscribe `_INBOX.>`.
const RELOAD_BEFORE: &str = r#"
authorization { users = [
  {user: all, password: all}
  {user: gone, password: gone}
  {user: a, password: a, permissions: {publish: ["foo.>"], subscribe: ["_INBOX.>"]}}
]}
"#;

/// After: `gone` is removed, `a` may also publish `baz` but subscribe only `_INBOX.z`.
const RELOAD_AFTER: &str = r#"
authorization { users = [
  {user: all, password: all}
  {user: a, password: a, permissions: {publish: ["foo.>", "baz"], subscribe: ["_INBOX.z"]}}
]}
"#;

/// A broker started from `RELOAD_BEFORE` with connections `gone`, `all` and `a` (`a` holding
/// `SUB _INBOX.y 4` and `SUB _INBOX.z 5`, and a cached denial of `baz`), then reloaded with
/// `RELOAD_AFTER`. Returns (server, gone, all, a).
fn reloaded(broker: &Launch) -> (Server, RawConn, RawConn, RawConn) {
    let server = broker.config(RELOAD_BEFORE).start();
    let port = server.port();
    let gone = login(port, "gone");
    let all = login(port, "all");
    let mut a = login(port, "a");
    a.send(b"SUB _INBOX.y 4\r\nSUB _INBOX.z 5\r\nPUB baz 1\r\nx\r\n");
    a.expect_err(&pub_violation("baz"));
    a.expect_open();
    server.reload(RELOAD_AFTER, common::TIMEOUT);
    (server, gone, all, a)
}

/// `a`'s new publish permissions apply (the cached denial is forgotten), and its old ones no
/// longer do. The shards take
/// the new settings on their next loop turn, so the first tries may still be denied.
fn scenario_reload_new_permissions(broker: &Launch) {
    let (_server, _gone, _all, mut a) = reloaded(broker);
    const ATTEMPTS: usize = 100;
    for attempt in 0.. {
        a.send(b"PUB baz 1\r\nx\r\n");
        // The removal of `_INBOX.y` is another test's concern.
        let mut lines = a.ping_pong();
        lines.retain(|l| !l.starts_with(b"-ERR 'Permissions Violation for Subscription"));
        if lines.is_empty() {
            break;
        }
        assert_eq!(
            lines,
            [format!("-ERR '{}'", pub_violation("baz")).into_bytes()]
        );
        assert!(attempt < ATTEMPTS, "baz still denied after the reload");
    }
    a.send(b"PUB other 1\r\nx\r\n");
    a.expect_err(&pub_violation("other"));
}

#[test]
fn reload_applies_new_permissions() {
    scenario_reload_new_permissions(&Launch::ringnats());
}

#[test]
fn reload_applies_new_permissions_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        scenario_reload_new_permissions(&broker);
    }
}

/// A subscription the new permissions no longer allow is removed with
/// `-ERR 'Permissions Violation for Subscription to "_INBOX.y" (sid "4")'` and gets no more
/// messages; the allowed one stays.
fn scenario_reload_removes_subs(broker: &Launch) {
    let (_server, _gone, mut all, mut a) = reloaded(broker);
    a.expect_err("Permissions Violation for Subscription to \"_INBOX.y\" (sid \"4\")");
    all.send(b"PUB _INBOX.y 1\r\ny\r\nPUB _INBOX.z 1\r\nz\r\n");
    all.expect_open();
    a.expect_msg("_INBOX.z", "5", None, b"z");
    a.expect_open();
}

#[test]
fn reload_removes_subscriptions_no_longer_allowed() {
    scenario_reload_removes_subs(&Launch::ringnats());
}

#[test]
fn reload_removes_subscriptions_no_longer_allowed_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        scenario_reload_removes_subs(&broker);
    }
}

/// A connection whose user the reload removed is closed without a word.
fn scenario_reload_closes_removed_user(broker: &Launch) {
    let (_server, mut gone, _all, mut a) = reloaded(broker);
    gone.expect_closed();
    a.send(b"PUB foo.x 1\r\nx\r\n");
    a.ping_pong();
}

#[test]
fn reload_closes_removed_users_silently() {
    scenario_reload_closes_removed_user(&Launch::ringnats());
}

#[test]
fn reload_closes_removed_users_silently_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        scenario_reload_closes_removed_user(&broker);
    }
}

// ---- violation texts quote like Go's %q ---------------------------------------------------

/// nats-server formats the subject (and queue) of a violation with Go's `%q`: `"` and `\`
/// are backslash-escaped, control bytes and invalid UTF-8 become `\xNN`, printable UTF-8 is
/// kept. Each case: the op sent, then the exact `-ERR` line expected.
const QUOTED_VIOLATIONS: &[(&[u8], &[u8])] = &[
    (
        b"PUB a\"b 1\r\nx\r\n",
        b"-ERR 'Permissions Violation for Publish to \"a\\\"b\"'",
    ),
    (
        b"PUB a\\b 1\r\nx\r\n",
        b"-ERR 'Permissions Violation for Publish to \"a\\\\b\"'",
    ),
    (
        b"PUB caf\xc3 1\r\nx\r\n",
        b"-ERR 'Permissions Violation for Publish to \"caf\\xc3\"'",
    ),
    (
        b"PUB caf\xc3\xa9 1\r\nx\r\n",
        b"-ERR 'Permissions Violation for Publish to \"caf\xc3\xa9\"'",
    ),
    (
        b"SUB a\"b 1\r\n",
        b"-ERR 'Permissions Violation for Subscription to \"a\\\"b\"'",
    ),
    (
        b"SUB other g\"1 3\r\n",
        b"-ERR 'Permissions Violation for Subscription to \"other\" using queue \"g\\\"1\"'",
    ),
];

/// Subjects with control bytes: nats-server checks (and quotes) them as any subject; ringnats
/// refuses them as invalid before any permission check (issue 8 §4, `permission_bypass.rs`).
const CONTROL_BYTE_VIOLATIONS: &[(&[u8], &[u8], &[u8])] = &[
    (
        b"PUB x\x01y 1\r\nx\r\n",
        b"-ERR 'Permissions Violation for Publish to \"x\\x01y\"'",
        b"-ERR 'Invalid Publish Subject'",
    ),
    (
        b"SUB foo.\x7f 2\r\n",
        b"-ERR 'Permissions Violation for Subscription to \"foo.\\x7f\"'",
        b"-ERR 'Invalid Subject'",
    ),
];

fn scenario_quoted_violations(port: u16, is_ringnats: bool) {
    let mut a = login(port, "a");
    let control = CONTROL_BYTE_VIOLATIONS
        .iter()
        .map(|&(op, nats_server, ringnats)| (op, if is_ringnats { ringnats } else { nats_server }));
    let cases: Vec<(&[u8], &[u8])> = QUOTED_VIOLATIONS.iter().copied().chain(control).collect();
    for (op, expected) in cases {
        a.send(op);
        let lines = a.ping_pong();
        let got: Vec<String> = lines.iter().map(|l| l.escape_ascii().to_string()).collect();
        assert_eq!(
            got,
            [expected.escape_ascii().to_string()],
            "after {}",
            op.escape_ascii()
        );
    }
}

#[test]
fn violation_texts_quote_like_go() {
    let server = Server::start(USERS);
    scenario_quoted_violations(server.port(), server.is_ringnats());
}

#[test]
fn violation_texts_quote_like_go_nats_server() {
    if let Some(server) = start_nats_server(USERS, &[]) {
        scenario_quoted_violations(server.port(), false);
    }
}
