//! Token authentication: `authorization { token: ... }` (plain and bcrypt) and `--auth TOKEN`.
//!
//! Each check starts the real binary as a `Server` (ringnats with `--shards 2`) and runs against it
//! twice: once here and once as a `*_nats_server` sibling against nats-server 2.9.10 (skipped when
//! it is not installed; a failure under CI), since the bytes must match. Over raw sockets: INFO
//! carries `auth_required:true` and no `nonce`; the right `auth_token` gets PONG; a wrong or
//! missing one, or any op other than CONNECT first, gets `-ERR 'Authorization Violation'` and a
//! close; extra `user`/`pass` fields next to a token are ignored; a bcrypt token is compared as
//! bcrypt (the hash itself is not a valid token). Through async-nats: `.token()` connects and
//! delivers, a wrong or missing token fails the connect with `AuthorizationViolation`, and a token
//! in the URL (`nats://s3cret@host:port`, read as nats.go reads it: async-nats 0.46 does not send
//! URL credentials) connects. Guards `auth::token`, the CONNECT gate in `shard::admission` and the
//! `--auth` flag in `cli.rs`.

mod common;

use async_nats::{ConnectErrorKind, ConnectOptions};
use futures::StreamExt;

use common::{Launch, RawConn, Server, TIMEOUT, show, try_connect, try_connect_url};

const TOKEN_CONF: &str = "authorization { token: s3cret }";

/// Opens a raw connection, sends `CONNECT` with `fields` (JSON members) and returns it.
fn raw_connect(server: &Server, fields: &str) -> RawConn {
    let mut conn = RawConn::connect(server.port());
    let sep = if fields.is_empty() { "" } else { "," };
    conn.send_connect(&format!(
        r#"{{"verbose":false,"pedantic":false{sep}{fields}}}"#
    ));
    conn
}

#[track_caller]
fn assert_refused(server: &Server, fields: &str) {
    let mut conn = raw_connect(server, fields);
    conn.send(b"PING\r\n");
    conn.expect_err("Authorization Violation");
    conn.expect_closed();
}

#[track_caller]
fn assert_admitted(server: &Server, fields: &str) {
    let mut conn = raw_connect(server, fields);
    conn.expect_open();
}

// ---- raw protocol --------------------------------------------------------------------------

fn check_info_advertises_auth(broker: &Launch) {
    let server = broker.config(TOKEN_CONF).start();
    let conn = RawConn::connect(server.port());
    let info = conn.info();
    assert_eq!(info["auth_required"], true, "{}", show(&conn.info_line));
    assert!(
        info.get("nonce").is_none(),
        "no nonce without nkey users: {}",
        show(&conn.info_line)
    );
}

#[test]
fn info_advertises_auth_required() {
    check_info_advertises_auth(&Launch::ringnats());
}

#[test]
fn info_advertises_auth_required_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_info_advertises_auth(&nats);
    }
}

fn check_token_is_checked(broker: &Launch) {
    let server = broker.config(TOKEN_CONF).start();
    assert_admitted(&server, r#""auth_token":"s3cret""#);
    // A token server ignores user and password next to the right token.
    assert_admitted(
        &server,
        r#""auth_token":"s3cret","user":"nobody","pass":"nothing""#,
    );
    assert_refused(&server, r#""auth_token":"wrong""#);
    assert_refused(&server, r#""auth_token":"s3cret2""#);
    assert_refused(&server, r#""auth_token":"""#);
    assert_refused(&server, "");
    assert_refused(&server, r#""user":"s3cret","pass":"s3cret""#);
}

#[test]
fn right_token_admitted_wrong_or_missing_refused_and_closed() {
    check_token_is_checked(&Launch::ringnats());
}

#[test]
fn right_token_admitted_wrong_or_missing_refused_and_closed_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_token_is_checked(&nats);
    }
}

fn check_first_op_must_be_connect(broker: &Launch) {
    let server = broker.config(TOKEN_CONF).start();
    for first in [&b"PING\r\n"[..], b"SUB foo 1\r\n", b"PUB foo 2\r\nhi\r\n"] {
        let mut conn = RawConn::connect(server.port());
        conn.send(first);
        match conn.next_line_within(TIMEOUT) {
            Ok(line) => assert_eq!(
                show(&line),
                "-ERR 'Authorization Violation'",
                "after first op {}",
                show(first)
            ),
            Err(end) => panic!("no -ERR after first op {}: {end:?}", show(first)),
        }
        conn.expect_closed();
    }
}

#[test]
fn non_connect_first_op_is_an_authorization_violation() {
    check_first_op_must_be_connect(&Launch::ringnats());
}

#[test]
fn non_connect_first_op_is_an_authorization_violation_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_first_op_must_be_connect(&nats);
    }
}

fn check_bcrypt_token(broker: &Launch) {
    let hash = common::bcrypt_2a("s3cret", 4);
    let server = broker
        .config(&format!("authorization {{ token: \"{hash}\" }}"))
        .start();
    assert_admitted(&server, r#""auth_token":"s3cret""#);
    assert_refused(&server, r#""auth_token":"S3cret""#);
    // The stored hash is not itself a token.
    assert_refused(&server, &format!(r#""auth_token":"{hash}""#));
    assert_refused(&server, "");
}

#[test]
fn bcrypt_token_is_compared_as_bcrypt() {
    check_bcrypt_token(&Launch::ringnats());
}

#[test]
fn bcrypt_token_is_compared_as_bcrypt_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_bcrypt_token(&nats);
    }
}

fn check_auth_flag(broker: &Launch) {
    let server = broker.args(["--auth", "fl4g"]).start();
    assert_eq!(
        RawConn::connect(server.port()).info()["auth_required"],
        true
    );
    assert_admitted(&server, r#""auth_token":"fl4g""#);
    assert_refused(&server, r#""auth_token":"s3cret""#);
    assert_refused(&server, "");
}

#[test]
fn auth_flag_sets_the_token() {
    check_auth_flag(&Launch::ringnats());
}

#[test]
fn auth_flag_sets_the_token_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_auth_flag(&nats);
    }
}

fn check_auth_flag_overrides_file(broker: &Launch) {
    let server = broker.config(TOKEN_CONF).args(["--auth", "fl4g"]).start();
    assert_admitted(&server, r#""auth_token":"fl4g""#);
    assert_refused(&server, r#""auth_token":"s3cret""#);
}

#[test]
fn auth_flag_overrides_the_file_token() {
    check_auth_flag_overrides_file(&Launch::ringnats());
}

#[test]
fn auth_flag_overrides_the_file_token_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_auth_flag_overrides_file(&nats);
    }
}

// ---- async-nats ----------------------------------------------------------------------------

async fn check_client_with_token(broker: &Launch) {
    let server = broker.config(TOKEN_CONF).start();
    let opts = ConnectOptions::new().token("s3cret".into());
    let client = try_connect(server.port(), opts)
        .await
        .expect("connect with the token");
    let mut sub = client.subscribe("tok.demo").await.expect("subscribe");
    client.flush().await.expect("flush");
    // The subscription is on the same connection: it is in place once the server answered
    // a request sent after it.
    let _ = client.request("tok.nobody", "".into()).await;
    client
        .publish("tok.demo", "hello".into())
        .await
        .expect("publish");
    let msg = tokio::time::timeout(TIMEOUT, sub.next())
        .await
        .expect("message within timeout")
        .expect("subscription open");
    assert_eq!(&msg.payload[..], b"hello");

    for opts in [
        ConnectOptions::new().token("wrong".into()),
        ConnectOptions::new(),
    ] {
        let err = try_connect(server.port(), opts)
            .await
            .expect_err("connect without the right token");
        assert_eq!(
            err.kind(),
            ConnectErrorKind::AuthorizationViolation,
            "{err}"
        );
    }
}

#[tokio::test]
async fn async_nats_with_token_connects_wrong_or_missing_fails() {
    check_client_with_token(&Launch::ringnats()).await;
}

#[tokio::test]
async fn async_nats_with_token_connects_wrong_or_missing_fails_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_client_with_token(&nats).await;
    }
}

/// Options for a `nats://` URL with credentials, as nats.go reads them: `token@` alone is a
/// token, `user:pass@` a user and password. async-nats 0.46 parses them (`ServerAddr`) but never
/// sends them: a bare `connect("nats://s3cret@...")` is refused by nats-server 2.9.10 too.
fn options_from_url(url: &str) -> ConnectOptions {
    let addr: async_nats::ServerAddr = url.parse().expect("server URL");
    match (addr.username(), addr.password()) {
        (Some(user), Some(pass)) => {
            ConnectOptions::new().user_and_password(user.into(), pass.into())
        }
        (Some(token), None) => ConnectOptions::new().token(token.into()),
        _ => ConnectOptions::new(),
    }
}

async fn check_token_in_url(broker: &Launch) {
    let server = broker.config(TOKEN_CONF).start();
    let url = format!("nats://s3cret@127.0.0.1:{}", server.port());
    let client = try_connect_url(&url, options_from_url(&url))
        .await
        .expect("connect with the token in the URL");
    client
        .publish("tok.url", "x".into())
        .await
        .expect("publish");
    let wrong = format!("nats://wrong@127.0.0.1:{}", server.port());
    let err = try_connect_url(&wrong, options_from_url(&wrong))
        .await
        .expect_err("connect with a wrong token in the URL");
    assert_eq!(
        err.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
}

#[tokio::test]
async fn token_in_url_connects() {
    check_token_in_url(&Launch::ringnats()).await;
}

#[tokio::test]
async fn token_in_url_connects_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_token_in_url(&nats).await;
    }
}
