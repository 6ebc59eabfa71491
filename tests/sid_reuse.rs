//! A sid used again after its subscription ended.
//!
//! Checked, over raw sockets against the real binary: a `SUB` that reuses a sid whose previous
//! subscription ended — by `UNSUB <sid> <max>` once its last message was delivered, or by a
//! plain `UNSUB` — is a new subscription that receives what is published after it. The first
//! tests run against nats-server 2.9.10 too (`RINGNATS_TEST_SERVER`), which behaves so; the
//! cross-shard ones (ringnats only) place the publisher on the other shard, so the last message
//! arrives through the mesh, and cover queue subscriptions and a reuse sent in the same write as
//! the `UNSUB`, while the other shard still holds the old interest. Guards the per-connection
//! sid map against keeping an ended subscription (a reused sid was dropped as a duplicate, then
//! the old subscription's removal deleted it: the trace showed a `DELSUB`).

mod common;

use common::{Launch, RawConn, Server};

const SHARDS: usize = 2;
/// Connections opened at most while looking for one on each shard.
const ATTEMPTS_MAX: usize = 64;

#[test]
fn sub_reusing_a_sid_after_its_unsub_max_was_reached_on_the_same_connection() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB u 1\r\nUNSUB 1 1\r\nPUB u 1\r\na\r\n");
    conn.expect_msg("u", "1", None, b"a");
    conn.send(b"SUB u 1\r\nPUB u 1\r\nb\r\n");
    conn.expect_msg("u", "1", None, b"b");
    conn.expect_nothing_more("after the second message");
}

#[test]
fn sub_reusing_a_sid_in_the_write_that_reached_its_unsub_max() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB u 1\r\nUNSUB 1 1\r\nPUB u 1\r\na\r\nSUB u 1\r\nPUB u 1\r\nb\r\n");
    conn.expect_msg("u", "1", None, b"a");
    conn.expect_msg("u", "1", None, b"b");
    conn.expect_nothing_more("after the second message");
}

#[test]
fn sub_reusing_a_sid_after_its_unsub_max_was_reached_by_another_publisher() {
    let server = Server::start("");
    let mut sub = RawConn::connect_quiet(server.port());
    let mut publisher = RawConn::connect_quiet(server.port());
    sub.send(b"SUB u 1\r\nUNSUB 1 1\r\n");
    sub.expect_open();
    publisher.send(b"PUB u 1\r\na\r\n");
    sub.expect_msg("u", "1", None, b"a");
    sub.subscribe_synced("u", "1");
    publisher.send(b"PUB u 1\r\nb\r\n");
    sub.expect_msg("u", "1", None, b"b");
    sub.expect_nothing_more("after the second message");
}

#[test]
fn sub_reusing_a_sid_after_a_plain_unsub() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB u 1\r\nPUB u 1\r\na\r\nUNSUB 1\r\nSUB u 1\r\nPUB u 1\r\nb\r\n");
    conn.expect_msg("u", "1", None, b"a");
    conn.expect_msg("u", "1", None, b"b");
    conn.expect_nothing_more("after the second message");
}

#[test]
fn queue_sub_reusing_a_sid_after_its_unsub_max_was_reached() {
    let server = Server::start("");
    let mut sub = RawConn::connect_quiet(server.port());
    let mut publisher = RawConn::connect_quiet(server.port());
    sub.send(b"SUB u q 1\r\nUNSUB 1 1\r\n");
    sub.expect_open();
    publisher.send(b"PUB u 1\r\na\r\n");
    sub.expect_msg("u", "1", None, b"a");
    sub.send(b"SUB u q 1\r\n");
    sub.expect_open();
    publisher.send(b"PUB u 1\r\nb\r\n");
    sub.expect_msg("u", "1", None, b"b");
    sub.expect_nothing_more("after the second message");
}

// ---- messages the server publishes itself ------------------------------------------------

/// A system account `SYS` and an application account `A`, password users `sys` and `a`.
const SYS_CONFIG: &str = r#"
accounts {
  SYS: { users: [ {user: sys, password: pw} ] }
  A: { users: [ {user: a, password: pw} ] }
}
system_account: SYS
"#;

/// One shard, so that a server-made message and the client's next op meet on the same shard
/// (the mesh path is covered above).
fn start_with_system_account() -> Server {
    Launch::under_test().shards(1).config(SYS_CONFIG).start()
}

fn logged_in(port: u16, user: &str) -> RawConn {
    RawConn::connect_as(port, user, "pw").expect_logged_in()
}

/// `SUB <inbox> 1`, `UNSUB 1 1`, a `$SYS` request with that inbox; reads the one reply, which
/// the server publishes itself (not in answer to an op of a client).
#[track_caller]
fn request_once_on_sid_1(sys: &mut RawConn) {
    sys.send(b"SUB _INBOX.r 1\r\nUNSUB 1 1\r\nPUB $SYS.REQ.SERVER.PING _INBOX.r 0\r\n\r\n");
    let reply = sys.read_msg();
    assert_eq!(reply.subject, "_INBOX.r");
    assert_eq!(reply.sid, "1");
}

#[test]
fn sub_reusing_a_sid_after_its_unsub_max_was_reached_by_a_system_request_reply() {
    let server = start_with_system_account();
    let mut sys = logged_in(server.port(), "sys");
    request_once_on_sid_1(&mut sys);
    sys.send(b"SUB u 1\r\nPUB u 1\r\nb\r\n");
    sys.expect_msg("u", "1", None, b"b");
    sys.expect_nothing_more("after the message");
}

#[test]
fn unsub_with_a_larger_max_does_not_revive_a_subscription_that_reached_its_max() {
    let server = start_with_system_account();
    let mut sys = logged_in(server.port(), "sys");
    request_once_on_sid_1(&mut sys);
    sys.send(b"UNSUB 1 5\r\nPUB _INBOX.r 1\r\nx\r\n");
    sys.expect_nothing_more("the subscription ended at its max");
}

#[test]
fn sub_reusing_a_sid_after_its_unsub_max_was_reached_by_a_disconnect_event() {
    let server = start_with_system_account();
    let mut sys = logged_in(server.port(), "sys");
    sys.send(b"SUB $SYS.ACCOUNT.A.DISCONNECT 1\r\nUNSUB 1 1\r\n");
    sys.expect_open();
    let mut app = logged_in(server.port(), "a");
    app.shutdown_write();
    let event = sys.read_msg();
    assert_eq!(event.subject, "$SYS.ACCOUNT.A.DISCONNECT");
    sys.send(b"SUB u 1\r\nPUB u 1\r\nb\r\n");
    sys.expect_msg("u", "1", None, b"b");
    sys.expect_nothing_more("after the message");
}

// ---- across shards (ringnats only) ---------------------------------------------------------

/// A subscriber on one shard and a publisher on the other, or `None` against nats-server.
fn cross_shard_pair() -> Option<(Server, RawConn, RawConn)> {
    let server = Launch::under_test()
        .shards(SHARDS)
        .start()
        .ringnats_only("sid_reuse.rs cross-shard")?;
    let sub = RawConn::connect_quiet(server.port());
    let sub_shard = sub.client_id() % SHARDS as u64;
    for _ in 0..ATTEMPTS_MAX {
        let publisher = RawConn::connect_quiet(server.port());
        if publisher.client_id() % SHARDS as u64 != sub_shard {
            return Some((server, sub, publisher));
        }
    }
    panic!("no connection on another shard than {sub_shard} in {ATTEMPTS_MAX} attempts");
}

#[test]
fn sub_reusing_a_sid_after_its_unsub_max_was_reached_through_the_mesh() {
    let Some((_server, mut sub, mut publisher)) = cross_shard_pair() else {
        return;
    };
    for (round, queue) in [(0, ""), (1, " q"), (2, ""), (3, " q")] {
        sub.send(format!("SUB u{queue} 1\r\nUNSUB 1 1\r\n").as_bytes());
        sub.expect_open();
        let payload = format!("m{round}");
        publisher.send(format!("PUB u {}\r\n{payload}\r\n", payload.len()).as_bytes());
        sub.expect_msg("u", "1", None, payload.as_bytes());
    }
    // The last subscription ended; a reused sid is a new one, seen by the other shard.
    sub.subscribe_synced("u", "1");
    publisher.send(b"PUB u 4\r\nlast\r\n");
    sub.expect_msg("u", "1", None, b"last");
    sub.expect_nothing_more("after the last message");
}

#[test]
fn sub_reusing_a_sid_while_the_other_shard_still_has_the_old_interest() {
    let Some((_server, mut sub, mut publisher)) = cross_shard_pair() else {
        return;
    };
    sub.subscribe_synced("u", "1");
    sub.subscribe_synced("v", "2");
    // The removal and the new SUB leave in one write: the other shard gets both interest
    // changes in one batch or two, in order.
    sub.send(b"UNSUB 1\r\nSUB u 1\r\nUNSUB 2 1\r\nPUB v 1\r\nv\r\nSUB v 2\r\n");
    sub.expect_msg("v", "2", None, b"v");
    sub.expect_open();
    publisher.send(b"PUB u 1\r\na\r\nPUB v 1\r\nb\r\n");
    sub.expect_msg("u", "1", None, b"a");
    sub.expect_msg("v", "2", None, b"b");
    sub.expect_nothing_more("after both messages");
}
