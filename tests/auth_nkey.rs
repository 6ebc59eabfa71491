//! NKey users: `users: [ { nkey: U... } ]`, the INFO nonce and the signed CONNECT.
//!
//! Each check starts the real binary as a `Server` (ringnats with `--shards 2`) and also runs as a
//! `*_nats_server` sibling against nats-server 2.9.10 (skipped when it is not installed; a failure
//! under CI). Keys are made fresh with `nkeys::KeyPair::new_user()`. Over raw sockets, signing the
//! nonce ourselves: INFO carries `auth_required` and a 15-character base64url `nonce`, fresh per
//! connection; the signature of the nonce's ASCII bytes is accepted in base64url without padding
//! and in standard base64 with padding; a missing signature, a signature over another nonce or by
//! another key, and an unknown nkey get `-ERR 'Authorization Violation'` and a close. Through
//! async-nats: `ConnectOptions::with_nkey(seed)` connects and delivers, an unconfigured seed fails
//! with `AuthorizationViolation`. nkey and password users mixed in one `users` list both log in,
//! and neither's credentials open the other's door. Guards `auth::nkey`, the nonce in
//! `shard::admission` and the nkey branch of `AuthConfig::verify`. Last, against ringnats only: our
//! `connection_deadline` refuses an nkey user past it.

mod common;

use async_nats::{ConnectErrorKind, ConnectOptions};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use futures::StreamExt;
use nkeys::KeyPair;

use common::{Launch, RawConn, Server, TIMEOUT, show, try_connect};

/// A config with the given nkey users (public keys) and password users (`name`, `password`).
fn users_conf(nkeys: &[&KeyPair], passwords: &[(&str, &str)]) -> String {
    let mut entries = Vec::new();
    for kp in nkeys {
        entries.push(format!("    {{ nkey: {} }}", kp.public_key()));
    }
    for (user, pass) in passwords {
        entries.push(format!("    {{ user: {user}, password: {pass} }}"));
    }
    format!(
        "authorization {{\n  users: [\n{}\n  ]\n}}",
        entries.join("\n")
    )
}

fn nonce_of(conn: &RawConn) -> String {
    conn.info()["nonce"]
        .as_str()
        .unwrap_or_else(|| panic!("no nonce in INFO: {}", show(&conn.info_line)))
        .to_owned()
}

fn sign(kp: &KeyPair, nonce: &str) -> Vec<u8> {
    kp.sign(nonce.as_bytes()).expect("sign nonce")
}

/// Sends `CONNECT` with `nkey` and, if given, `sig`.
fn send_nkey_connect(conn: &mut RawConn, nkey: &str, sig: Option<&str>) {
    let sig = sig.map_or(String::new(), |s| format!(r#","sig":"{s}""#));
    conn.send_connect(&format!(
        r#"{{"verbose":false,"pedantic":false,"nkey":"{nkey}"{sig}}}"#
    ));
}

#[track_caller]
fn expect_refused(conn: &mut RawConn) {
    conn.send(b"PING\r\n");
    conn.expect_err("Authorization Violation");
    conn.expect_closed();
}

fn is_base64url(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

// ---- INFO nonce ------------------------------------------------------------------------------

fn check_nonce_in_info(broker: &Launch) {
    let user = KeyPair::new_user();
    let server = broker.config(&users_conf(&[&user], &[])).start();
    let first = RawConn::connect(server.port());
    let second = RawConn::connect(server.port());
    assert_eq!(first.info()["auth_required"], true);
    let (a, b) = (nonce_of(&first), nonce_of(&second));
    for nonce in [&a, &b] {
        assert_eq!(nonce.len(), 15, "nonce {nonce:?}");
        assert!(is_base64url(nonce), "nonce {nonce:?} is not base64url");
    }
    assert_ne!(a, b, "the nonce is the same on two connections");
}

#[test]
fn info_carries_a_fresh_15_char_nonce() {
    check_nonce_in_info(&Launch::ringnats());
}

#[test]
fn info_carries_a_fresh_15_char_nonce_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_nonce_in_info(&nats);
    }
}

fn check_no_nonce_without_nkeys(broker: &Launch) {
    let server = broker.config(&users_conf(&[], &[("pw", "pwpass")])).start();
    let conn = RawConn::connect(server.port());
    assert!(
        conn.info().get("nonce").is_none(),
        "nonce without nkey users: {}",
        show(&conn.info_line)
    );
}

#[test]
fn no_nonce_without_nkey_users() {
    check_no_nonce_without_nkeys(&Launch::ringnats());
}

#[test]
fn no_nonce_without_nkey_users_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_no_nonce_without_nkeys(&nats);
    }
}

// ---- raw signatures --------------------------------------------------------------------------

fn check_raw_signatures(broker: &Launch) {
    let user = KeyPair::new_user();
    let other = KeyPair::new_user();
    let server = broker.config(&users_conf(&[&user], &[])).start();
    let port = server.port();

    // base64url without padding, as clients send it.
    let mut conn = RawConn::connect(port);
    let sig = URL_SAFE_NO_PAD.encode(sign(&user, &nonce_of(&conn)));
    send_nkey_connect(&mut conn, &user.public_key(), Some(&sig));
    conn.expect_open();

    // Standard base64 with padding is accepted too.
    let mut conn = RawConn::connect(port);
    let sig = STANDARD.encode(sign(&user, &nonce_of(&conn)));
    assert!(sig.ends_with('='), "standard base64 of 64 bytes is padded");
    send_nkey_connect(&mut conn, &user.public_key(), Some(&sig));
    conn.expect_open();

    // Missing signature.
    let mut conn = RawConn::connect(port);
    send_nkey_connect(&mut conn, &user.public_key(), None);
    expect_refused(&mut conn);

    // Empty signature.
    let mut conn = RawConn::connect(port);
    send_nkey_connect(&mut conn, &user.public_key(), Some(""));
    expect_refused(&mut conn);

    // A signature over another connection's nonce.
    let stale = RawConn::connect(port);
    let mut conn = RawConn::connect(port);
    let sig = URL_SAFE_NO_PAD.encode(sign(&user, &nonce_of(&stale)));
    send_nkey_connect(&mut conn, &user.public_key(), Some(&sig));
    expect_refused(&mut conn);

    // The configured key, signed by another key.
    let mut conn = RawConn::connect(port);
    let sig = URL_SAFE_NO_PAD.encode(sign(&other, &nonce_of(&conn)));
    send_nkey_connect(&mut conn, &user.public_key(), Some(&sig));
    expect_refused(&mut conn);

    // An unknown key with its own valid signature.
    let mut conn = RawConn::connect(port);
    let sig = URL_SAFE_NO_PAD.encode(sign(&other, &nonce_of(&conn)));
    send_nkey_connect(&mut conn, &other.public_key(), Some(&sig));
    expect_refused(&mut conn);

    // Garbage in the signature.
    let mut conn = RawConn::connect(port);
    send_nkey_connect(&mut conn, &user.public_key(), Some("not*base64!"));
    expect_refused(&mut conn);

    // No credentials at all.
    let mut conn = RawConn::connect(port);
    conn.send_connect(r#"{"verbose":false,"pedantic":false}"#);
    expect_refused(&mut conn);
}

#[test]
fn signed_nonce_accepted_bad_or_missing_signature_refused() {
    check_raw_signatures(&Launch::ringnats());
}

#[test]
fn signed_nonce_accepted_bad_or_missing_signature_refused_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_raw_signatures(&nats);
    }
}

// ---- async-nats ------------------------------------------------------------------------------

fn seed_of(kp: &KeyPair) -> String {
    kp.seed().expect("seed of a generated key")
}

async fn check_client_with_nkey(broker: &Launch) {
    let user = KeyPair::new_user();
    let stranger = KeyPair::new_user();
    let server = broker.config(&users_conf(&[&user], &[])).start();
    let client = try_connect(server.port(), ConnectOptions::with_nkey(seed_of(&user)))
        .await
        .expect("connect with the nkey seed");
    let mut sub = client.subscribe("nk.demo").await.expect("subscribe");
    // Same connection: the SUB is applied before the server answers this request.
    let _ = client.request("nk.nobody", "".into()).await;
    client
        .publish("nk.demo", "signed".into())
        .await
        .expect("publish");
    let msg = tokio::time::timeout(TIMEOUT, sub.next())
        .await
        .expect("message within timeout")
        .expect("subscription open");
    assert_eq!(&msg.payload[..], b"signed");

    let err = try_connect(server.port(), ConnectOptions::with_nkey(seed_of(&stranger)))
        .await
        .expect_err("connect with an unconfigured seed");
    assert_eq!(
        err.kind(),
        ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
}

#[tokio::test]
async fn async_nats_with_nkey_connects_wrong_seed_fails() {
    check_client_with_nkey(&Launch::ringnats()).await;
}

#[tokio::test]
async fn async_nats_with_nkey_connects_wrong_seed_fails_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_client_with_nkey(&nats).await;
    }
}

// ---- nkey and password users in one list -------------------------------------------------------

fn raw_password_connect(server: &Server, user: &str, pass: &str) -> RawConn {
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(&format!(
        r#"{{"verbose":false,"pedantic":false,"user":"{user}","pass":"{pass}"}}"#
    ));
    conn
}

async fn check_mixed_users(broker: &Launch) {
    let user = KeyPair::new_user();
    let server = broker
        .config(&users_conf(&[&user], &[("pw", "pwpass")]))
        .start();

    let nkey_client = try_connect(server.port(), ConnectOptions::with_nkey(seed_of(&user)))
        .await
        .expect("nkey user connects");
    let pw_client = try_connect(
        server.port(),
        ConnectOptions::with_user_and_password("pw".into(), "pwpass".into()),
    )
    .await
    .expect("password user connects");
    // Both are in the global account: one reaches the other.
    let mut sub = nkey_client.subscribe("mix.x").await.expect("subscribe");
    let _ = nkey_client.request("mix.nobody", "".into()).await;
    common_route(&pw_client, &mut sub).await;

    let mut conn = raw_password_connect(&server, "pw", "pwpass");
    conn.expect_open();
    let mut conn = raw_password_connect(&server, "pw", "wrong");
    expect_refused(&mut conn);
    // The nkey's public key is not a user name.
    let mut conn = raw_password_connect(&server, &user.public_key(), "");
    expect_refused(&mut conn);
    // A password user's nonce signature means nothing without a matching nkey entry.
    let mut conn = RawConn::connect(server.port());
    let stranger = KeyPair::new_user();
    let sig = URL_SAFE_NO_PAD.encode(sign(&stranger, &nonce_of(&conn)));
    send_nkey_connect(&mut conn, &stranger.public_key(), Some(&sig));
    expect_refused(&mut conn);
}

/// Publishes on `mix.x` from `publisher` until `sub` receives one (bounded), proving the two
/// connections share an account; the subscription may live on another shard.
async fn common_route(publisher: &async_nats::Client, sub: &mut async_nats::Subscriber) {
    for _ in 0..100 {
        publisher
            .publish("mix.x", "hi".into())
            .await
            .expect("publish");
        if let Ok(msg) =
            tokio::time::timeout(std::time::Duration::from_millis(50), sub.next()).await
        {
            assert_eq!(&msg.expect("subscription open").payload[..], b"hi");
            return;
        }
    }
    panic!("no message from the password user reached the nkey user");
}

#[tokio::test]
async fn nkey_and_password_users_mixed() {
    check_mixed_users(&Launch::ringnats()).await;
}

#[tokio::test]
async fn nkey_and_password_users_mixed_nats_server() {
    if let Some(nats) = Launch::nats_server() {
        check_mixed_users(&nats).await;
    }
}

// ---- connection_deadline on an nkey user (ringnats only) ---------------------------------------

#[test]
fn nkey_user_whose_deadline_passed_is_refused() {
    // Our extension applies to nkey users as to password users.
    let late = KeyPair::new_user();
    let fine = KeyPair::new_user();
    let past =
        common::rfc3339_utc(std::time::SystemTime::now() - std::time::Duration::from_secs(60));
    let conf = format!(
        "authorization {{ users: [\n  {{ nkey: {}, connection_deadline: \"{past}\" }}\n  \
         {{ nkey: {} }}\n] }}",
        late.public_key(),
        fine.public_key()
    );
    let server = Launch::ringnats().config(&conf).start();
    let mut conn = RawConn::connect(server.port());
    let sig = URL_SAFE_NO_PAD.encode(sign(&late, &nonce_of(&conn)));
    send_nkey_connect(&mut conn, &late.public_key(), Some(&sig));
    expect_refused(&mut conn);
    let mut conn = RawConn::connect(server.port());
    let sig = URL_SAFE_NO_PAD.encode(sign(&fine, &nonce_of(&conn)));
    send_nkey_connect(&mut conn, &fine.public_key(), Some(&sig));
    conn.expect_open();
}
