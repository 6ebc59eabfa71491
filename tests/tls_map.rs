//! TLS certificate mapping (`tls { verify_and_map: true }`, auth.md §7), as clients see it.
//!
//! The configured users are named after what their certificates carry (a DN, an email SAN, a DNS
//! SAN, a DN with DC parts) and each may publish only under its own prefix, so a client shows which
//! user it was mapped to: publishing under its own prefix is delivered, under another user's prefix
//! it gets `-ERR 'Permissions Violation for Publish to ..'`. Checked: each certificate maps to its
//! user, alice's two RDN orders map to the same user, a URI SAN maps when such a user exists, a
//! certificate that names no user gets `-ERR 'Authorization Violation'` and is closed, a CONNECT
//! that also sends a password fails, no certificate or one from another CA fails the handshake, and
//! `map_and_verify` is an alias. Every raw scenario has a `*_nats_server` sibling running it
//! against nats-server 2.9.10 (skipped when it is not installed, a failure under CI; the alias is
//! ringnats-only). Guards `src/tls/identity.rs` and the mapping step of the CONNECT check.

#![cfg(feature = "test-pki")]

mod common;

use common::tls_client::{Admission, Pki, TlsRawConn, admission};
use common::{Nats, QUIET, Server, next_msg, start_nats_server};
use ringnats::tls::test_pki::TestCert;

/// The users of auth.md §7, each allowed to publish under its own prefix only.
const USERS: &str = r#"
authorization {
  users = [
    {user: "CN=alice,O=Company", permissions: {publish: ["alice.>"]}}
    {user: "bob@example.com", permissions: {publish: ["bob.>"]}}
    {user: "dave.example.com", permissions: {publish: ["dave.>"]}}
    {user: "CN=carol,DC=example,DC=org", permissions: {publish: ["carol.>"]}}
  ]
}
"#;

/// `USERS` plus a user for erin's URI SAN.
const USERS_WITH_URI: &str = r#"
authorization {
  users = [
    {user: "CN=alice,O=Company", permissions: {publish: ["alice.>"]}}
    {user: "nats://erin.example.com", permissions: {publish: ["erin.>"]}}
  ]
}
"#;

fn config(pki: &Pki, map_key: &str, users: &str) -> String {
    format!(
        "{}{users}",
        pki.tls_block_with_ca(&format!("{map_key}: true"))
    )
}

/// Connects with `cert`, and shows by its permissions that it is the user owning `own`:
/// `own.x` is delivered back to it, `other.x` is a publish violation.
fn assert_maps_to(port: u16, pki: &Pki, cert: &TestCert, own: &str, other: &str) {
    let mut conn = TlsRawConn::connect(port, pki.client(Some(cert))).expect("TLS handshake");
    conn.send_connect(QUIET);
    conn.send(format!("SUB > 1\r\nPUB {own}.x 2\r\nhi\r\nPUB {other}.x 2\r\nno\r\n").as_bytes());
    conn.expect_msg(&format!("{own}.x"), "1", b"hi");
    conn.expect_err(&format!(
        "Permissions Violation for Publish to \"{other}.x\""
    ));
    conn.expect_open();
}

/// Each certificate maps to its user; alice in both RDN orders maps to the same one.
fn scenario_each_cert_maps(port: u16, pki: &Pki) {
    let certs = &pki.pki;
    assert_maps_to(port, pki, &certs.alice_o_cn, "alice", "bob");
    assert_maps_to(port, pki, &certs.alice_cn_o, "alice", "carol");
    assert_maps_to(port, pki, &certs.bob_email, "bob", "alice");
    assert_maps_to(port, pki, &certs.dave_dns, "dave", "bob");
    assert_maps_to(port, pki, &certs.carol_dc, "carol", "dave");
}

#[test]
fn each_certificate_maps_to_its_user() {
    let pki = Pki::new();
    let server = Server::start(&config(&pki, "verify_and_map", USERS));
    scenario_each_cert_maps(server.port(), &pki);
}

#[test]
fn each_certificate_maps_to_its_user_nats_server() {
    let pki = Pki::new();
    let Some(server) = start_nats_server(&config(&pki, "verify_and_map", USERS), &[]) else {
        return;
    };
    scenario_each_cert_maps(server.port(), &pki);
}

#[test]
fn map_and_verify_is_an_alias() {
    let pki = Pki::new();
    let server = Server::start(&config(&pki, "map_and_verify", USERS));
    scenario_each_cert_maps(server.port(), &pki);
    scenario_refusals(server.port(), &pki);
}

#[test]
fn uri_san_maps_when_such_a_user_exists() {
    let pki = Pki::new();
    let server = Server::start(&config(&pki, "verify_and_map", USERS_WITH_URI));
    assert_maps_to(server.port(), &pki, &pki.pki.erin_uri, "erin", "alice");
    assert_maps_to(server.port(), &pki, &pki.pki.alice_o_cn, "alice", "erin");
}

#[test]
fn uri_san_maps_when_such_a_user_exists_nats_server() {
    let pki = Pki::new();
    let conf = config(&pki, "verify_and_map", USERS_WITH_URI);
    let Some(server) = start_nats_server(&conf, &[]) else {
        return;
    };
    assert_maps_to(server.port(), &pki, &pki.pki.erin_uri, "erin", "alice");
    assert_maps_to(server.port(), &pki, &pki.pki.alice_o_cn, "alice", "erin");
}

/// The INFO of a mapping server, then the ways in: a certificate naming no user gets
/// `Authorization Violation` (then EOF); a sent password fails even with a mapped
/// certificate; a sent user name alone is ignored; no certificate, or one from another CA,
/// fails the handshake.
fn scenario_refusals(port: u16, pki: &Pki) {
    let certs = &pki.pki;
    let (_stream, info) = common::tls_client::connect_read_info(port);
    let info: serde_json::Value =
        serde_json::from_slice(info.strip_prefix(b"INFO ").expect("INFO")).expect("JSON");
    assert_eq!(info["tls_required"], serde_json::json!(true), "{info}");
    assert_eq!(info["tls_verify"], serde_json::json!(true), "{info}");
    assert_eq!(info["auth_required"], serde_json::json!(true), "{info}");

    let mut erin = TlsRawConn::connect(port, pki.client(Some(&certs.erin_uri))).expect("TLS");
    let got = erin.admission(QUIET);
    assert_eq!(
        got,
        Admission::Line("-ERR 'Authorization Violation'".into())
    );
    erin.expect_closed();

    let alice = || pki.client(Some(&certs.alice_o_cn));
    let mut with_pass = TlsRawConn::connect(port, alice()).expect("TLS");
    let connect = r#"{"verbose":false,"pedantic":false,"user":"CN=alice,O=Company","pass":"x"}"#;
    let got = with_pass.admission(connect);
    assert_eq!(
        got,
        Admission::Line("-ERR 'Authorization Violation'".into())
    );
    with_pass.expect_closed();
    let pass_only = r#"{"verbose":false,"pedantic":false,"pass":"x"}"#;
    let got = admission(port, alice(), pass_only);
    assert_eq!(
        got,
        Admission::Line("-ERR 'Authorization Violation'".into())
    );

    let user_only = r#"{"verbose":false,"pedantic":false,"user":"bob@example.com"}"#;
    let mut named = TlsRawConn::connect(port, alice()).expect("TLS");
    assert_eq!(named.admission(user_only), Admission::Pong);
    // Still alice: the certificate decides, not the name sent.
    named.send(b"PUB bob.x 1\r\nx\r\n");
    named.expect_err("Permissions Violation for Publish to \"bob.x\"");

    assert_eq!(admission(port, pki.client(None), QUIET), Admission::Closed);
    let rogue = pki.client(Some(&certs.rogue_alice));
    assert_eq!(admission(port, rogue, QUIET), Admission::Closed);
    // The refusals left the mapped connection alone.
    named.expect_open();
}

#[test]
fn unmapped_certificates_and_passwords_are_refused() {
    let pki = Pki::new();
    let server = Server::start(&config(&pki, "verify_and_map", USERS));
    scenario_refusals(server.port(), &pki);
}

#[test]
fn unmapped_certificates_and_passwords_are_refused_nats_server() {
    let pki = Pki::new();
    let Some(server) = start_nats_server(&config(&pki, "verify_and_map", USERS), &[]) else {
        return;
    };
    scenario_refusals(server.port(), &pki);
}

#[tokio::test]
async fn async_nats_clients_are_mapped() {
    let pki = Pki::new();
    let server = Server::start(&config(&pki, "verify_and_map", USERS));
    let certs = &pki.pki;
    let bob = Nats::connect_with(&server, pki.nats_opts_with(&certs.bob_email)).await;
    let carol = Nats::connect_with(&server, pki.nats_opts_with(&certs.carol_dc)).await;
    let mut sub = bob.subscribe("carol.>").await.expect("subscribe");
    common::wait_for_route(&carol, "carol.probe", &mut sub).await;
    carol
        .publish("carol.news", "hello".into())
        .await
        .expect("publish");
    let msg = next_msg(&mut sub).await;
    assert_eq!(
        (msg.subject.as_str(), &msg.payload[..]),
        ("carol.news", &b"hello"[..])
    );

    let erin = Nats::try_connect_url(&server.url(), pki.nats_opts_with(&certs.erin_uri)).await;
    let err = erin
        .err()
        .expect("erin maps to no user and must be refused");
    assert_eq!(
        err.kind(),
        async_nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );
    assert_eq!(bob.disconnects() + carol.disconnects(), 0);
}
