//! bcrypt never slows anyone else (issue 8 §2): the pool's queue is bounded and a full queue
//! refuses a CONNECT with `Authorization Violation` at once; a (user, password) pair verified
//! lately is accepted again without bcrypt, so it gets in even while the pool is saturated;
//! the cache never lets a wrong password in, and a reload that changes a user's hash makes that
//! user prove the new one.
//!
//! Against the real binary with raw sockets; every outcome asserted is a protocol answer, not a
//! timing. "Without bcrypt" is observed as "admitted while no bcrypt check could have run in
//! time": every pool slot is taken by checks that take seconds in all. Guards
//! `auth::verified`, `SlowCheck::verified_before` and `blocking::QUEUE_LEN_MAX`.

mod common;

use std::time::{Duration, Instant};

use common::{Launch, RawConn, ReadEnd, show};

/// More CONNECTs needing bcrypt than the pool holds (two running plus `QUEUE_LEN_MAX` = 256
/// queued).
const FILLERS: usize = 300;
/// Bound on any one answer.
const WITHIN: Duration = Duration::from_secs(20);

/// bcrypt cost: 300 checks at cost 12 take about 40 s on two threads, far past the timeout.
fn cost() -> u32 {
    if cfg!(debug_assertions) { 9 } else { 12 }
}

/// A users list: `u` with `u_hash`, and `f0`..`f{FILLERS}` all sharing `f_hash`.
fn users_conf(u_hash: &str, f_hash: &str) -> String {
    // A long timeout: the pool runs at idle priority, and on a loaded machine one check may
    // take seconds.
    let mut conf =
        format!("authorization {{ timeout: 10\n users: [\n  {{user: u, password: \"{u_hash}\"}}\n");
    for i in 0..FILLERS {
        conf.push_str(&format!("  {{user: f{i}, password: \"{f_hash}\"}}\n"));
    }
    conf.push_str("] }\n");
    conf
}

fn connect_line(user: &str, pass: &str) -> Vec<u8> {
    format!("CONNECT {{\"verbose\":false,\"user\":\"{user}\",\"pass\":\"{pass}\"}}\r\nPING\r\n")
        .into_bytes()
}

/// Logs in and returns the first answer (`PONG` or an `-ERR` line).
fn login(port: u16, user: &str, pass: &str) -> (RawConn, String) {
    let mut conn = RawConn::connect(port);
    conn.send(&connect_line(user, pass));
    let answer = answer(&mut conn, Instant::now() + WITHIN);
    (conn, answer)
}

fn answer(conn: &mut RawConn, deadline: Instant) -> String {
    match conn.try_read_line(deadline) {
        Ok(line) => show(&line),
        Err(ReadEnd::Timeout) => "<no answer>".to_string(),
        Err(ReadEnd::Closed(_)) => "<closed>".to_string(),
    }
}

/// Sends `FILLERS` CONNECTs with correct passwords of distinct users (none cached) and keeps
/// the connections open, so their checks are not dropped.
fn fill_pool(port: u16) -> Vec<RawConn> {
    let mut conns: Vec<RawConn> = (0..FILLERS).map(|_| RawConn::connect(port)).collect();
    for (i, conn) in conns.iter_mut().enumerate() {
        conn.send(&connect_line(&format!("f{i}"), "fpw"));
    }
    conns
}

#[test]
fn a_full_pool_refuses_with_authorization_violation() {
    let conf = users_conf(
        &common::bcrypt_2a("upw", cost()),
        &common::bcrypt_2a("fpw", cost()),
    );
    let server = Launch::ringnats().shards(1).config(&conf).start();
    let mut fillers = fill_pool(server.port());
    // The last CONNECTs found the pool full (the checks before them take far longer than it
    // took to send them all); they are refused at once, not held until the timeout.
    let last = fillers.last_mut().expect("fillers");
    assert_eq!(
        answer(last, Instant::now() + WITHIN),
        "-ERR 'Authorization Violation'",
        "CONNECT {FILLERS} was not refused although the pool holds 258 checks"
    );
    last.expect_closed();
}

#[test]
fn a_verified_credential_gets_in_while_the_pool_is_saturated() {
    let conf = users_conf(
        &common::bcrypt_2a("upw", cost()),
        &common::bcrypt_2a("fpw", cost()),
    );
    let server = Launch::ringnats().shards(1).config(&conf).start();
    let port = server.port();
    let (_first, answer) = login(port, "u", "upw");
    assert_eq!(answer, "PONG", "u logs in with bcrypt");

    let _fillers = fill_pool(port);
    // Every pool slot is taken by checks that need far longer than the auth timeout: only a
    // credential accepted without bcrypt gets `PONG` now.
    let (_again, answer) = login(port, "u", "upw");
    assert_eq!(
        answer, "PONG",
        "a pair verified a moment ago had to wait for bcrypt behind {FILLERS} checks"
    );
}

#[test]
fn a_wrong_password_is_refused_after_the_right_one_was_cached() {
    let conf = users_conf(
        &common::bcrypt_2a("upw", cost()),
        &common::bcrypt_2a("fpw", cost()),
    );
    let server = Launch::ringnats().shards(1).config(&conf).start();
    let port = server.port();
    let (_first, answer) = login(port, "u", "upw");
    assert_eq!(answer, "PONG");
    for wrong in ["upW", "upw ", "", "fpw"] {
        let (mut conn, answer) = login(port, "u", wrong);
        assert_eq!(
            answer, "-ERR 'Authorization Violation'",
            "password {wrong:?}"
        );
        conn.expect_closed();
    }
    // Another user with the same password as a cached one is checked on its own.
    let (_f, answer) = login(port, "f0", "upw");
    assert_eq!(answer, "-ERR 'Authorization Violation'");
}

#[test]
fn a_hash_changed_by_a_reload_must_be_proven_again() {
    let old = common::bcrypt_2a("old-pw", cost());
    let new = common::bcrypt_2a("new-pw", cost());
    let conf = |hash: &str| {
        format!("authorization {{ timeout: 10\n users: [ {{user: u, password: \"{hash}\"}} ] }}")
    };
    let server = Launch::ringnats().shards(1).config(&conf(&old)).start();
    let port = server.port();
    let (mut live, answer) = login(port, "u", "old-pw");
    assert_eq!(answer, "PONG");

    server.rewrite_config_extra(&conf(&new));
    server.signal("HUP");
    // The reload re-checks the live connection: the old password no longer verifies.
    assert_eq!(
        answer_or_close(&mut live),
        "-ERR 'Authorization Violation'",
        "the connection logged in with the old password is closed by the reload"
    );
    let (mut conn, answer) = login(port, "u", "old-pw");
    assert_eq!(
        answer, "-ERR 'Authorization Violation'",
        "the old password was accepted from the cache after its hash changed"
    );
    conn.expect_closed();
    let (_conn, answer) = login(port, "u", "new-pw");
    assert_eq!(answer, "PONG");
}

/// The next line, skipping nothing; `<closed>` if the server closed without one.
fn answer_or_close(conn: &mut RawConn) -> String {
    answer(conn, Instant::now() + WITHIN)
}
