//! Reloading the users on SIGHUP: removed users are cut off, remaining users stay, added users
//! get in.
//!
//! Each check starts the real binary as a `Server` (ringnats with `--shards 2`) and also runs as a
//! `*_nats_server` sibling against nats-server 2.9.10 (skipped when it is not installed; a failure
//! under CI). Several raw connections per user are opened so that each ringnats shard holds some.
//! After the config file loses user `gone` and gains user `added`, SIGHUP and the `Reloaded server
//! configuration` log line: every live connection of `gone` is closed (without an `-ERR` line:
//! nats-server 2.9.10 counts a removed user's clients as moved to another account and closes them
//! as `Client Closed`); every connection of `keep` still answers PING (and a plain `keep`
//! subscriber still receives); `gone` can no longer log in; `added` can. As nats-server re-checks
//! every live client with the credentials of its CONNECT, a changed password or a replaced token
//! closes the connections made with the old one (`-ERR 'Authorization Violation'`), while a reload
//! that leaves the credentials alone disturbs nobody. Every wait ends on the event or on a
//! deadline. Guards `AuthConfig::reauthorize`, `Shard::reauthorize_all` and the reload path of
//! `main.rs`.

mod common;

use common::{Launch, RawConn, Server, TIMEOUT};

/// Connections per user: with two shards, some land on each.
const CONNS_PER_USER: usize = 4;

fn users_conf(users: &[(&str, &str)]) -> String {
    let entries: Vec<String> = users
        .iter()
        .map(|(u, p)| format!("    {{user: {u}, password: {p}}}"))
        .collect();
    format!(
        "authorization {{\n  users: [\n{}\n  ]\n}}",
        entries.join("\n")
    )
}

fn login(server: &Server, user: &str, pass: &str) -> RawConn {
    RawConn::connect_as(server.port(), user, pass)
}

fn logins(server: &Server, user: &str, pass: &str) -> Vec<RawConn> {
    (0..CONNS_PER_USER)
        .map(|_| {
            let mut conn = login(server, user, pass);
            conn.expect_open();
            conn
        })
        .collect()
}

#[track_caller]
fn assert_refused(server: &Server, user: &str, pass: &str) {
    let mut conn = login(server, user, pass);
    conn.send(b"PING\r\n");
    conn.expect_err("Authorization Violation");
    conn.expect_closed();
}

fn check_removed_user_is_cut_off(broker: &Launch) {
    let before = users_conf(&[("keep", "keeppw"), ("gone", "gonepw")]);
    let server = broker.config(&before).start();
    let mut keep = logins(&server, "keep", "keeppw");
    let mut gone = logins(&server, "gone", "gonepw");
    let mut keep_sub = login(&server, "keep", "keeppw");
    keep_sub.send(b"SUB r.x 1\r\n");
    assert!(keep_sub.ping_pong().is_empty());
    assert_refused(&server, "added", "addedpw");

    server.reload(
        &users_conf(&[("keep", "keeppw"), ("added", "addedpw")]),
        TIMEOUT,
    );

    for conn in gone.iter_mut() {
        // nats-server 2.9.10 closes a removed user's connections without a word: its
        // `reloadAuthorization` counts them as "moved to another account" and closes them
        // with reason `Client Closed` before the `authViolation` pass. ringnats does the same.
        conn.expect_closed();
    }
    for conn in &mut keep {
        conn.expect_open();
    }
    keep[0].send(b"PUB r.x 4\r\nstay\r\n");
    keep_sub.expect_msg("r.x", "1", None, b"stay");

    assert_refused(&server, "gone", "gonepw");
    for _ in 0..CONNS_PER_USER {
        login(&server, "added", "addedpw").expect_open();
    }
    assert_refused(&server, "added", "wrong");
}

#[test]
fn removed_user_is_closed_remaining_stays_added_gets_in() {
    check_removed_user_is_cut_off(&Launch::ringnats());
}

#[test]
fn removed_user_is_closed_remaining_stays_added_gets_in_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_removed_user_is_cut_off(&nats);
    }
}

/// nats-server re-checks every live client against the new users with the credentials of its
/// CONNECT (`isClientAuthorized`): a changed password cuts off the connections that logged in
/// with the old one (`-ERR 'Authorization Violation'`), other users stay.
fn check_password_change(broker: &Launch) {
    let conf = users_conf(&[("pat", "oldpw"), ("keep", "keeppw")]);
    let server = broker.config(&conf).start();
    let mut live = logins(&server, "pat", "oldpw");
    let mut keep = logins(&server, "keep", "keeppw");
    server.reload(
        &users_conf(&[("pat", "newpw"), ("keep", "keeppw")]),
        TIMEOUT,
    );
    for (i, conn) in live.iter_mut().enumerate() {
        match conn.next_line_within(TIMEOUT) {
            Ok(line) => assert_eq!(
                common::show(&line),
                "-ERR 'Authorization Violation'",
                "connection {i} with the old password"
            ),
            Err(end) => panic!("connection {i} with the old password: {end:?}"),
        }
        conn.expect_closed();
    }
    for conn in &mut keep {
        conn.expect_open();
    }
    login(&server, "pat", "newpw").expect_open();
    assert_refused(&server, "pat", "oldpw");
}

#[test]
fn password_change_closes_connections_made_with_the_old_password() {
    check_password_change(&Launch::ringnats());
}

#[test]
fn password_change_closes_connections_made_with_the_old_password_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_password_change(&nats);
    }
}

fn token_login(server: &Server, token: &str) -> RawConn {
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(&format!(
        r#"{{"verbose":false,"pedantic":false,"auth_token":"{token}"}}"#
    ));
    conn
}

/// As for passwords: clients of a replaced token are cut off, new ones need the new token.
fn check_token_change(broker: &Launch) {
    let server = broker.config("authorization { token: first }").start();
    let mut live: Vec<RawConn> = (0..CONNS_PER_USER)
        .map(|_| {
            let mut conn = token_login(&server, "first");
            conn.expect_open();
            conn
        })
        .collect();
    server.reload("authorization { token: second }", TIMEOUT);
    for (i, conn) in live.iter_mut().enumerate() {
        match conn.next_line_within(TIMEOUT) {
            Ok(line) => assert_eq!(
                common::show(&line),
                "-ERR 'Authorization Violation'",
                "connection {i} with the old token"
            ),
            Err(end) => panic!("connection {i} with the old token: {end:?}"),
        }
        conn.expect_closed();
    }
    token_login(&server, "second").expect_open();
    let mut old = token_login(&server, "first");
    old.send(b"PING\r\n");
    old.expect_err("Authorization Violation");
    old.expect_closed();
}

#[test]
fn token_change_closes_connections_made_with_the_old_token() {
    check_token_change(&Launch::ringnats());
}

#[test]
fn token_change_closes_connections_made_with_the_old_token_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_token_change(&nats);
    }
}

/// A reload that leaves the credentials alone disturbs nobody.
fn check_unrelated_reload(broker: &Launch) {
    let conf = users_conf(&[("pat", "patpw")]);
    let server = broker.config(&format!("{conf}\nmax_payload: 1024")).start();
    let mut live = logins(&server, "pat", "patpw");
    server.reload(&format!("{conf}\nmax_payload: 2048"), TIMEOUT);
    login(&server, "pat", "patpw").expect_open();
    for conn in &mut live {
        conn.expect_open();
    }
}

#[test]
fn reload_without_auth_changes_keeps_everyone() {
    check_unrelated_reload(&Launch::ringnats());
}

#[test]
fn reload_without_auth_changes_keeps_everyone_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_unrelated_reload(&nats);
    }
}
