//! Permission bypasses that nats-server 2.9.10 has and ringnats must not (issue 8 §4).
//!
//! Over raw sockets against the real binary (two shards): a subscribe allow entry admits a SUB
//! only when every subject the SUB can match is allowed (`["in.*"]` refuses `SUB in.>`,
//! `["*"]` refuses `SUB >`); a wildcard SUB that merely overlaps a subscribe deny entry gets
//! the delivery filter (deny `*.secret` filters `in.secret` out of `SUB in.>`); subjects with
//! control bytes (below 0x20, and 0x7f) are refused in PUB and HPUB with
//! `-ERR 'Invalid Publish Subject'` and in SUB with `-ERR 'Invalid Subject'`, and never
//! delivered; a `no_auth_user` whose `allowed_connection_types` exclude plain clients, or whose
//! `connection_deadline` has passed, is not the identity of a client that sends no CONNECT.
//! Each SUB check is made twice with the same subject, so the per-connection cache answers the
//! second. "Not delivered" is observed with a later allowed message from the same publisher:
//! per-publisher order means it arrives after anything sent before it.
//! Guards `perms.rs` (`check_subscribe`, `sub_needs_delivery_filter`), `subject::is_valid`,
//! `Shard::on_pub` / `on_sub` and `Shard::admit`.

mod common;

use std::time::{Duration, SystemTime};

use common::{RawConn, Server};

const USERS: &str = r#"
authorization {
  users = [
    {user: all, password: all}
    {user: one, password: one, permissions: {subscribe: ["in.*"]}}
    {user: star, password: star, permissions: {subscribe: ["*"]}}
    {user: deny, password: deny, permissions: {subscribe: {deny: ["*.secret", "a.*.c"]}}}
    {user: pubdeny, password: pubdeny, permissions: {publish: {deny: ["in.secret"]}}}
    {user: subdeny, password: subdeny, permissions: {subscribe: {deny: ["in.secret"]}}}
  ]
}
"#;

/// A raw client logged in as `user` (password = user name), headers on, past a PING/PONG.
fn login(port: u16, user: &str) -> RawConn {
    let mut conn = RawConn::connect(port);
    conn.send_connect(&format!(
        r#"{{"verbose":false,"pedantic":false,"headers":true,"user":"{user}","pass":"{user}"}}"#
    ));
    conn.expect_open();
    conn
}

fn sub_violation(subject: &str) -> String {
    format!("Permissions Violation for Subscription to \"{subject}\"")
}

/// Sends `ops` and asserts exactly `errs` come back before the PONG.
#[track_caller]
fn expect_errs(conn: &mut RawConn, ops: &[u8], errs: &[&str]) {
    conn.send(ops);
    let lines = conn.ping_pong();
    let got: Vec<String> = lines.iter().map(|l| l.escape_ascii().to_string()).collect();
    let want: Vec<String> = errs
        .iter()
        .map(|e| format!("-ERR '{e}'").as_bytes().escape_ascii().to_string())
        .collect();
    assert_eq!(got, want, "after {}", ops.escape_ascii());
}

// ---- subscribe allow is a subset test ------------------------------------------------------

#[test]
fn sub_allow_admits_only_subscriptions_inside_an_entry() {
    let server = Server::start(USERS);
    let port = server.port();
    let mut one = login(port, "one");
    // Twice each: the second answer comes from the permission cache.
    expect_errs(
        &mut one,
        b"SUB in.> 1\r\nSUB in.> 2\r\nSUB > 3\r\nSUB in.* 4\r\nSUB in.* 5\r\n",
        &[
            &sub_violation("in.>"),
            &sub_violation("in.>"),
            &sub_violation(">"),
        ],
    );
    let mut star = login(port, "star");
    expect_errs(
        &mut star,
        b"SUB > 1\r\nSUB > 2\r\nSUB *.* 3\r\nSUB * 4\r\nSUB * 5\r\n",
        &[
            &sub_violation(">"),
            &sub_violation(">"),
            &sub_violation("*.*"),
        ],
    );
    let mut all = login(port, "all");
    all.send(b"PUB in.a.b 1\r\nx\r\nPUB x.y 1\r\nx\r\nPUB in.end 3\r\nend\r\nPUB top 3\r\ntop\r\n");
    all.expect_open();
    assert_eq!(
        sorted_msgs(&mut one, 2),
        [("in.end", "4"), ("in.end", "5")].map(owned)
    );
    one.expect_nothing_more("unexpected");
    assert_eq!(
        sorted_msgs(&mut star, 2),
        [("top", "4"), ("top", "5")].map(owned)
    );
    star.expect_nothing_more("unexpected");
}

fn owned((subject, sid): (&str, &str)) -> (String, String) {
    (subject.to_owned(), sid.to_owned())
}

/// Reads `count` messages; returns their (subject, sid), sorted (subscriptions of one
/// connection on the same subject are served in no fixed order).
fn sorted_msgs(conn: &mut RawConn, count: usize) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = (0..count)
        .map(|_| {
            let m = conn.read_msg();
            (m.subject, m.sid)
        })
        .collect();
    got.sort();
    got
}

// ---- deny overlap turns the delivery filter on ---------------------------------------------

#[test]
fn wildcard_sub_overlapping_a_deny_entry_is_filtered() {
    let server = Server::start(USERS);
    let port = server.port();
    let mut deny = login(port, "deny");
    // `in.>` and `a.b.*` overlap `*.secret` and `a.*.c` without containing them; each SUB twice
    // (the second from the cache), with its own sid.
    expect_errs(
        &mut deny,
        b"SUB in.> 1\r\nSUB in.> 2\r\nSUB a.b.* 3\r\nSUB a.b.* 4\r\n",
        &[],
    );
    let mut all = login(port, "all");
    all.send(b"PUB in.secret 1\r\nx\r\nPUB a.b.c 1\r\nx\r\n");
    all.send(b"PUB in.x.y 2\r\nok\r\nPUB a.b.d 2\r\nok\r\nPUB in.end 3\r\nend\r\n");
    all.expect_open();
    // Everything from one publisher arrives in order, so a forbidden message would be among
    // the six before the second `in.end`.
    let want = [
        ("a.b.d", "3"),
        ("a.b.d", "4"),
        ("in.end", "1"),
        ("in.end", "2"),
        ("in.x.y", "1"),
        ("in.x.y", "2"),
    ];
    assert_eq!(sorted_msgs(&mut deny, 6), want.map(owned));
    deny.expect_nothing_more("unexpected");
}

// ---- control bytes in subjects ---------------------------------------------------------------

#[test]
fn subjects_with_control_bytes_are_refused() {
    let server = Server::start(USERS);
    let port = server.port();
    let mut watch = login(port, "all");
    expect_errs(&mut watch, b"SUB in.* 1\r\nSUB > 2\r\n", &[]);
    let mut subdeny = login(port, "subdeny");
    expect_errs(&mut subdeny, b"SUB in.* 1\r\n", &[]);
    let mut p = login(port, "pubdeny");
    let invalid_pub = "Invalid Publish Subject";
    expect_errs(
        &mut p,
        b"PUB in.secret\x0c 1\r\nx\r\nPUB in.secret\x00 1\r\nx\r\nPUB in.a\x7f 1\r\nx\r\n",
        &[invalid_pub, invalid_pub, invalid_pub],
    );
    expect_errs(
        &mut p,
        b"HPUB in.secret\x0c 12 13\r\nNATS/1.0\r\n\r\nx\r\nPUB in.ok 2\r\nok\r\n",
        &[invalid_pub],
    );
    // An unrestricted publisher cannot slip a subject past a subscriber's deny entry either.
    let mut all = login(port, "all");
    expect_errs(
        &mut all,
        b"PUB in.secret\x1f 1\r\nx\r\nPUB in.end 3\r\nend\r\n",
        &[invalid_pub],
    );
    for (sid, subject, payload) in [("1", "in.ok", &b"ok"[..]), ("1", "in.end", b"end")] {
        let m = subdeny.read_msg();
        assert_eq!(
            (m.sid.as_str(), m.subject.as_str(), &m.payload[..]),
            (sid, subject, payload)
        );
    }
    subdeny.expect_nothing_more("unexpected");
    let want = [
        ("in.end", "1"),
        ("in.end", "2"),
        ("in.ok", "1"),
        ("in.ok", "2"),
    ];
    assert_eq!(sorted_msgs(&mut watch, 4), want.map(owned));
    watch.expect_nothing_more("unexpected");
    // SUB: twice each, the second time through the cache of a restricted user.
    let invalid = "Invalid Subject";
    expect_errs(
        &mut subdeny,
        b"SUB in.\x01 2\r\nSUB in.\x01 3\r\nSUB in.\x7f 4\r\nSUB \x0cin.* 5\r\n",
        &[invalid, invalid, invalid, invalid],
    );
    expect_errs(&mut watch, b"SUB x.\x1b 3\r\n", &[invalid]);
    all.send(b"PUB in.\x01 1\r\nx\r\n");
    all.expect_line(format!("-ERR '{invalid_pub}'").as_bytes());
    all.expect_open();
    subdeny.expect_nothing_more("unexpected");
}

// ---- no_auth_user passes the admission checks ------------------------------------------------

/// A client that sends no CONNECT is not admitted as a `no_auth_user` that may not connect:
/// its first op is refused as if auth were required.
#[track_caller]
fn assert_default_identity_refused(conf: &str) {
    let server = Server::start(conf);
    let mut silent = RawConn::connect(server.port());
    silent.send(b"SUB > 1\r\nPING\r\n");
    silent.expect_err("Authorization Violation");
    silent.expect_closed();
    // A CONNECT without credentials is refused the same way.
    let mut bare = RawConn::connect(server.port());
    bare.send_connect(r#"{"verbose":false,"pedantic":false}"#);
    bare.send(b"PING\r\n");
    bare.expect_err("Authorization Violation");
    bare.expect_closed();
    // Other users still get in.
    let mut other = RawConn::connect(server.port());
    other.send_connect(r#"{"verbose":false,"pedantic":false,"user":"ok","pass":"okpw"}"#);
    other.expect_open();
}

#[test]
fn no_auth_user_outside_its_connection_types_is_not_a_default_identity() {
    assert_default_identity_refused(
        "authorization { users: [\n  {user: guest, password: g, \
         allowed_connection_types: [\"WEBSOCKET\"]}\n  {user: ok, password: okpw}\n] }\n\
         no_auth_user: guest",
    );
}

#[test]
fn no_auth_user_past_its_deadline_is_not_a_default_identity() {
    let past = common::rfc3339_utc(SystemTime::now() - Duration::from_secs(3600));
    assert_default_identity_refused(&format!(
        "authorization {{ users: [\n  {{user: guest, password: g, connection_deadline: \
         \"{past}\"}}\n  {{user: ok, password: okpw}}\n] }}\nno_auth_user: guest"
    ));
}
