//! TLS on client connections (`tls { }` block and `--tls*` flags), as clients see it.
//!
//! Every test makes a fresh PKI (`ringnats::tls::test_pki`) and starts the real binary. Checked:
//! the INFO goes out in plaintext with `tls_required` (and `tls_verify` under `verify`), its keys
//! in nats-server's order; async-nats with `require_tls` does pub/sub and request/reply with
//! payloads up to 64 KB across shards; a plaintext client that sends CONNECT is closed without a
//! byte; under `verify` a client certificate from the CA is required (none, or one from another CA,
//! is refused); the `--tls --tlscert --tlskey` (and `--tlsverify --tlscacert`) flags work; garbage
//! instead of (or inside) the TLS stream closes that one connection while other TLS clients keep
//! working; a client silent after INFO is closed at the handshake timeout; the end of the handshake
//! and the first protocol bytes in one segment, a handshake trickled one byte per write, and a PUB
//! right before `close_notify` all work; closing errors (auth timeout, max payload, bad password)
//! and keepalive PINGs arrive encrypted; a backlog of megabytes to a paused reader arrives whole; a
//! TLS slow consumer is closed alone. Each raw scenario that must match nats-server 2.9.10 has a
//! `*_nats_server` sibling running it unchanged (skipped when nats-server is not installed; a
//! failure under CI). Guards `src/tls/` and the reactor's TLS path (`shard/admission.rs`,
//! `conn/outbuf.rs` sealed output).

#![cfg(feature = "test-pki")]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::tls_client::{Admission, Pki, TlsRawConn, admission, connect_read_info};
use common::{Launch, Nats, QUIET, RawConn, Server, next_msg, start_nats_server, wait_for_route};
use futures::StreamExt;

fn info_json(line: &[u8]) -> serde_json::Value {
    serde_json::from_slice(line.strip_prefix(b"INFO ").expect("INFO prefix")).expect("INFO JSON")
}

// ---- INFO --------------------------------------------------------------------------------

/// The INFO arrives in plaintext before any handshake and announces TLS (and, with
/// `verify`, a required client certificate).
fn scenario_info_announces_tls(port: u16, verify: bool) {
    let (_stream, line) = connect_read_info(port);
    let info = info_json(&line);
    assert_eq!(info["tls_required"], serde_json::json!(true), "{info}");
    if verify {
        assert_eq!(info["tls_verify"], serde_json::json!(true), "{info}");
    } else {
        assert!(info.get("tls_verify").is_none(), "{info}");
    }
    assert!(info.get("tls_available").is_none(), "{info}");
}

#[test]
fn info_announces_tls_in_plaintext() {
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block(""));
    scenario_info_announces_tls(server.port(), false);
    let server = Server::start(&pki.tls_block_with_ca("verify: true"));
    scenario_info_announces_tls(server.port(), true);
}

#[test]
fn info_announces_tls_in_plaintext_nats_server() {
    let pki = Pki::new();
    let Some(server) = start_nats_server(&pki.tls_block(""), &[]) else {
        return;
    };
    scenario_info_announces_tls(server.port(), false);
    let Some(server) = start_nats_server(&pki.tls_block_with_ca("verify: true"), &[]) else {
        return;
    };
    scenario_info_announces_tls(server.port(), true);
}

// ---- async-nats over TLS -----------------------------------------------------------------

/// A payload of `len` bytes that differs per message `seq`.
fn payload(len: usize, seq: usize) -> Bytes {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ seq.wrapping_mul(7)) as u8)
        .collect::<Vec<u8>>()
        .into()
}

const SIZES: &[usize] = &[
    0,
    1,
    100,
    4096,
    16 * 1024 - 1,
    16 * 1024 + 7,
    40_000,
    64 * 1024,
];

#[tokio::test]
async fn async_nats_pub_sub_over_tls_up_to_64k() {
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block(""));
    let subscriber = Nats::connect_with(&server, pki.nats_opts()).await;
    let publisher = Nats::connect_with(&server, pki.nats_opts()).await;
    let mut sub = subscriber.subscribe("tls.data").await.expect("subscribe");
    wait_for_route(&publisher, "tls.data", &mut sub).await;

    let mut sent = Vec::new();
    for round in 0..20 {
        for (k, &len) in SIZES.iter().enumerate() {
            let body = payload(len, round * SIZES.len() + k);
            publisher
                .publish("tls.data", body.clone())
                .await
                .expect("publish");
            sent.push(body);
        }
    }
    publisher.flush().await.expect("flush");
    for (i, body) in sent.iter().enumerate() {
        let msg = next_msg(&mut sub).await;
        assert_eq!(msg.payload.len(), body.len(), "length of message {i}");
        assert!(msg.payload == *body, "payload of message {i} differs");
    }
    assert_eq!(subscriber.disconnects() + publisher.disconnects(), 0);
}

#[tokio::test]
async fn async_nats_request_reply_over_tls_up_to_64k() {
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block(""));
    let responder = Nats::connect_with(&server, pki.nats_opts()).await;
    let requester = Nats::connect_with(&server, pki.nats_opts()).await;
    let mut service = responder.subscribe("tls.svc").await.expect("subscribe");
    wait_for_route(&requester, "tls.svc", &mut service).await;
    let client = responder.client.clone();
    let task = tokio::spawn(async move {
        while let Some(msg) = service.next().await {
            // Route probes carry no reply subject.
            let Some(reply) = msg.reply else { continue };
            let mut answer = msg.payload.to_vec();
            answer.reverse();
            client.publish(reply, answer.into()).await.expect("reply");
        }
    });
    for (k, &len) in SIZES.iter().enumerate() {
        let body = payload(len, k);
        let request = requester.request("tls.svc", body.clone());
        let reply = tokio::time::timeout(common::TIMEOUT, request)
            .await
            .expect("request timed out")
            .expect("request");
        let mut expected = body.to_vec();
        expected.reverse();
        assert!(reply.payload == expected, "reply to a {len}-byte request");
    }
    assert_eq!(responder.disconnects() + requester.disconnects(), 0);
    task.abort();
}

// ---- plaintext clients -------------------------------------------------------------------

/// A client that answers the INFO with NATS text is closed without a byte sent back.
fn scenario_plaintext_client_closed_silently(port: u16) {
    let mut conn = RawConn::connect(port);
    conn.send_connect(QUIET);
    conn.send(b"PING\r\n");
    conn.expect_closed();
    let mut conn = RawConn::connect(port);
    conn.send(b"PING\r\n");
    conn.expect_closed();
}

#[test]
fn plaintext_client_is_closed_silently() {
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block(""));
    scenario_plaintext_client_closed_silently(server.port());
    let mut survivor = TlsRawConn::connect(server.port(), pki.client(None)).expect("TLS");
    survivor.send_connect(QUIET);
    survivor.expect_open();
}

#[test]
fn plaintext_client_is_closed_silently_nats_server() {
    let pki = Pki::new();
    let Some(server) = start_nats_server(&pki.tls_block(""), &[]) else {
        return;
    };
    scenario_plaintext_client_closed_silently(server.port());
}

// ---- client certificates (`verify`) ------------------------------------------------------

/// Under `verify` + `ca_file`: a certificate from the CA gets in, none or a rogue CA's does
/// not (the TLS handshake fails, so no protocol line is ever sent).
fn scenario_verify(port: u16, pki: &Pki) {
    let certs = &pki.pki;
    let mut good = TlsRawConn::connect(port, pki.client(Some(&certs.alice_o_cn))).expect("TLS");
    assert_eq!(good.admission(QUIET), Admission::Pong);
    good.send(b"SUB v 1\r\nPUB v 2\r\nok\r\n");
    good.expect_msg("v", "1", b"ok");
    assert_eq!(admission(port, pki.client(None), QUIET), Admission::Closed);
    let rogue = pki.client(Some(&certs.rogue_alice));
    assert_eq!(admission(port, rogue, QUIET), Admission::Closed);
    good.expect_open();
}

#[test]
fn verify_requires_a_certificate_from_the_ca() {
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block_with_ca("verify: true"));
    scenario_verify(server.port(), &pki);
}

#[test]
fn verify_requires_a_certificate_from_the_ca_nats_server() {
    let pki = Pki::new();
    let Some(server) = start_nats_server(&pki.tls_block_with_ca("verify: true"), &[]) else {
        return;
    };
    scenario_verify(server.port(), &pki);
}

#[tokio::test]
async fn verify_with_async_nats() {
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block_with_ca("verify: true"));
    let certs = &pki.pki;
    let alice = Nats::connect_with(&server, pki.nats_opts_with(&certs.alice_o_cn)).await;
    let dave = Nats::connect_with(&server, pki.nats_opts_with(&certs.dave_dns)).await;
    let mut sub = alice.subscribe("verified").await.expect("subscribe");
    wait_for_route(&dave, "verified", &mut sub).await;
    dave.publish("verified", "hi".into())
        .await
        .expect("publish");
    assert_eq!(next_msg(&mut sub).await.payload, "hi");

    let refused = Nats::try_connect_url(&server.url(), pki.nats_opts()).await;
    assert!(refused.is_err(), "a client without a certificate got in");
    let rogue = pki.nats_opts_with(&certs.rogue_alice);
    let refused = Nats::try_connect_url(&server.url(), rogue).await;
    assert!(refused.is_err(), "a certificate from another CA got in");
    assert_eq!(alice.disconnects() + dave.disconnects(), 0);
}

// ---- command-line flags ------------------------------------------------------------------

fn tls_flags(pki: &Pki) -> Vec<String> {
    let server = &pki.pki.server;
    vec![
        "--tls".into(),
        "--tlscert".into(),
        server.cert.display().to_string(),
        "--tlskey".into(),
        server.key.display().to_string(),
    ]
}

#[tokio::test]
async fn tls_flags_enable_tls() {
    let pki = Pki::new();
    let server = Launch::under_test().args(tls_flags(&pki)).start();
    scenario_info_announces_tls(server.port(), false);
    scenario_plaintext_client_closed_silently(server.port());
    let subscriber = Nats::connect_with(&server, pki.nats_opts()).await;
    let publisher = Nats::connect_with(&server, pki.nats_opts()).await;
    let mut sub = subscriber.subscribe("flags").await.expect("subscribe");
    wait_for_route(&publisher, "flags", &mut sub).await;
    publisher
        .publish("flags", payload(64 * 1024, 1))
        .await
        .expect("publish");
    assert!(next_msg(&mut sub).await.payload == payload(64 * 1024, 1));
}

fn verify_flags(pki: &Pki) -> Vec<String> {
    let mut args = tls_flags(pki);
    args.extend([
        "--tlsverify".into(),
        "--tlscacert".into(),
        pki.pki.ca_cert.display().to_string(),
    ]);
    args
}

#[test]
fn tlsverify_flags_require_a_client_certificate() {
    let pki = Pki::new();
    let server = Launch::under_test().args(verify_flags(&pki)).start();
    scenario_info_announces_tls(server.port(), true);
    scenario_verify(server.port(), &pki);
}

#[test]
fn tlsverify_flags_require_a_client_certificate_nats_server() {
    let pki = Pki::new();
    let args = verify_flags(&pki);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let Some(server) = start_nats_server("", &args) else {
        return;
    };
    scenario_info_announces_tls(server.port(), true);
    scenario_verify(server.port(), &pki);
}

// ---- garbage and timeouts ----------------------------------------------------------------

/// Byte strings that are not a valid TLS stream, sent right after INFO.
const GARBAGE_AFTER_INFO: &[&[u8]] = &[
    // Not a TLS record at all.
    b"\xff\xfe\x00garbage\r\n",
    // A handshake record header followed by a body that is no ClientHello.
    b"\x16\x03\x01\x00\x10\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa\xaa",
    // A handshake record header announcing more than a record may hold.
    b"\x16\x03\x01\xff\xff\x01\x02\x03\x04\x05\x06\x07\x08",
    // An alert record with a nonsense alert.
    b"\x15\x03\x03\x00\x02\x02\xff",
];

/// Each garbage sender is closed (after at most an alert); a TLS client connected before
/// keeps working, and so does one that corrupts the record stream after its handshake ends
/// only itself.
fn scenario_garbage(port: u16, pki: &Pki) {
    let mut survivor = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    survivor.send_connect(QUIET);
    survivor.send(b"SUB g 1\r\n");
    survivor.expect_open();
    for garbage in GARBAGE_AFTER_INFO {
        let mut conn = RawConn::connect(port);
        // The server may close before all of it is written.
        let _ = conn.send_lossy(garbage);
        conn.drain_until_closed(common::TIMEOUT);
    }
    let mut corrupt = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    corrupt.send_connect(QUIET);
    corrupt.expect_open();
    // An application-data record that cannot decrypt.
    let mut record = b"\x17\x03\x03\x00\x20".to_vec();
    record.extend_from_slice(&[0x5a; 0x20]);
    let _ = corrupt.send_raw_tcp(&record);
    corrupt.expect_closed();

    survivor.send(b"PUB g 5\r\nalive\r\n");
    survivor.expect_msg("g", "1", b"alive");
    survivor.expect_open();
}

#[test]
fn garbage_closes_only_that_connection() {
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block(""));
    scenario_garbage(server.port(), &pki);
}

#[test]
fn garbage_closes_only_that_connection_nats_server() {
    let pki = Pki::new();
    let Some(server) = start_nats_server(&pki.tls_block(""), &[]) else {
        return;
    };
    scenario_garbage(server.port(), &pki);
}

#[tokio::test]
async fn garbage_leaves_async_nats_clients_connected() {
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block(""));
    let subscriber = Nats::connect_with(&server, pki.nats_opts()).await;
    let publisher = Nats::connect_with(&server, pki.nats_opts()).await;
    let mut sub = subscriber
        .subscribe("after.garbage")
        .await
        .expect("subscribe");
    wait_for_route(&publisher, "after.garbage", &mut sub).await;
    let port = server.port();
    tokio::task::spawn_blocking(move || {
        for garbage in GARBAGE_AFTER_INFO {
            let mut conn = RawConn::connect(port);
            let _ = conn.send_lossy(garbage);
            conn.drain_until_closed(common::TIMEOUT);
        }
    })
    .await
    .expect("garbage senders");
    publisher
        .publish("after.garbage", "still here".into())
        .await
        .expect("publish");
    assert_eq!(next_msg(&mut sub).await.payload, "still here");
    assert_eq!(subscriber.disconnects() + publisher.disconnects(), 0);
}

/// With `timeout: 0.5`, a client that never starts (or never finishes) its handshake is
/// closed after about half a second; a client that finished its handshake before is not.
fn scenario_handshake_timeout(port: u16, pki: &Pki) {
    let mut done = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    done.send_connect(QUIET);
    done.expect_open();
    let started = Instant::now();
    let mut silent = RawConn::connect(port);
    let mut partial = RawConn::connect(port);
    partial.send(b"\x16\x03\x01");
    silent.drain_until_closed(common::TIMEOUT);
    let waited = started.elapsed();
    partial.drain_until_closed(common::TIMEOUT);
    assert!(
        waited >= Duration::from_millis(400),
        "closed after {waited:?}, before the 0.5 s handshake timeout"
    );
    // Its own handshake deadline has long passed; it must still be served.
    done.expect_open();
}

#[test]
fn handshake_timeout_closes_a_silent_client() {
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block("timeout: 0.5"));
    scenario_handshake_timeout(server.port(), &pki);
}

#[test]
fn handshake_timeout_closes_a_silent_client_nats_server() {
    let pki = Pki::new();
    let Some(server) = start_nats_server(&pki.tls_block("timeout: 0.5"), &[]) else {
        return;
    };
    scenario_handshake_timeout(server.port(), &pki);
}

// ---- record boundaries and orderly ends ----------------------------------------------------

/// The client's `Finished` and its first protocol bytes in one segment; a handshake sent one
/// byte per write; a PUB followed at once by `close_notify` is delivered before the close.
fn scenario_record_boundaries(port: u16, pki: &Pki) {
    let early = format!("CONNECT {QUIET}\r\nSUB b 1\r\nPING\r\n");
    let mut sub = TlsRawConn::connect_early(port, pki.client(None), early.as_bytes()).expect("TLS");
    sub.expect_line(b"PONG");
    let mut slow = TlsRawConn::connect_trickle(port, pki.client(None), 1).expect("TLS");
    slow.send_connect(QUIET);
    slow.send(b"PUB b 4\r\nslow\r\n");
    slow.expect_open();
    sub.expect_msg("b", "1", b"slow");

    let mut last = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    last.send_connect(QUIET);
    last.expect_open();
    last.send(b"PUB b 4\r\nlast\r\n");
    last.send_close_notify();
    last.expect_closed();
    sub.expect_msg("b", "1", b"last");
    sub.expect_open();
}

#[test]
fn record_boundaries_and_close_notify() {
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block(""));
    scenario_record_boundaries(server.port(), &pki);
}

#[test]
fn record_boundaries_and_close_notify_nats_server() {
    let pki = Pki::new();
    let Some(server) = start_nats_server(&pki.tls_block(""), &[]) else {
        return;
    };
    scenario_record_boundaries(server.port(), &pki);
}

// ---- errors over TLS -----------------------------------------------------------------------

/// Errors that close the connection arrive encrypted before the close: the auth timer runs
/// from the end of the handshake (`Authentication Timeout`), and a too-large PUB gets
/// `Maximum Payload Violation`.
fn scenario_errors_over_tls(port: u16, pki: &Pki) {
    let mut idle = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    idle.expect_err("Authentication Timeout");
    idle.expect_closed();

    let mut big = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    big.send_connect(r#"{"verbose":false,"pedantic":false,"user":"u","pass":"p"}"#);
    big.expect_open();
    big.send(b"PUB big 2048\r\n");
    big.expect_err("Maximum Payload Violation");
    big.expect_closed();

    let mut wrong = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    let got = wrong.admission(r#"{"verbose":false,"pedantic":false,"user":"u","pass":"x"}"#);
    assert_eq!(
        got,
        Admission::Line("-ERR 'Authorization Violation'".into())
    );
    wrong.expect_closed();
}

fn errors_config(pki: &Pki) -> String {
    format!(
        "{}max_payload: 1024\nauthorization {{ user: u, password: p, timeout: 0.5 }}\n",
        pki.tls_block("timeout: 2")
    )
}

#[test]
fn closing_errors_arrive_encrypted() {
    let pki = Pki::new();
    let server = Server::start(&errors_config(&pki));
    scenario_errors_over_tls(server.port(), &pki);
}

#[test]
fn closing_errors_arrive_encrypted_nats_server() {
    let pki = Pki::new();
    let Some(server) = start_nats_server(&errors_config(&pki), &[]) else {
        return;
    };
    scenario_errors_over_tls(server.port(), &pki);
}

// ---- a backlog of encrypted output ---------------------------------------------------------

/// A TLS subscriber that stops reading while megabytes are published to it gets every byte,
/// in order, once it reads again.
#[tokio::test]
async fn backlog_to_a_paused_tls_reader_arrives_whole() {
    const COUNT: usize = 600;
    const LEN: usize = 16 * 1024;
    let pki = Pki::new();
    let server = Server::start(&pki.tls_block(""));
    let port = server.port();
    let client = pki.client(None);
    let mut reader = tokio::task::spawn_blocking(move || {
        let mut conn = TlsRawConn::connect(port, client).expect("TLS");
        conn.send_connect(QUIET);
        conn.send(b"SUB backlog 1\r\n");
        conn.expect_open();
        conn
    })
    .await
    .expect("subscriber");
    let publisher = Nats::connect_with(&server, pki.nats_opts()).await;
    // The subscriber's PONG came after its SUB was visible on every shard.
    for seq in 0..COUNT {
        publisher
            .publish("backlog", payload(LEN, seq))
            .await
            .expect("publish");
    }
    publisher.flush().await.expect("flush");
    tokio::task::spawn_blocking(move || {
        for seq in 0..COUNT {
            reader.expect_msg("backlog", "1", &payload(LEN, seq));
        }
        reader.expect_open();
    })
    .await
    .expect("reader");
    assert_eq!(publisher.disconnects(), 0);
}

// ---- INFO field order ----------------------------------------------------------------------

/// The top-level keys of a JSON object, in the order written.
fn json_keys(json: &[u8]) -> Vec<String> {
    let mut keys = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut key_start = None;
    let mut expect_key = false;
    for (i, &b) in json.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => {
                    in_string = false;
                    if let Some(start) = key_start.take() {
                        keys.push(String::from_utf8_lossy(&json[start..i]).into_owned());
                    }
                }
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                if depth == 1 && expect_key {
                    key_start = Some(i + 1);
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                expect_key = depth == 1;
            }
            b'}' | b']' => depth -= 1,
            b',' if depth == 1 => expect_key = true,
            _ => {}
        }
    }
    keys
}

fn info_keys(port: u16) -> Vec<String> {
    let (_stream, line) = connect_read_info(port);
    json_keys(line.strip_prefix(b"INFO ").expect("INFO"))
}

/// With TLS, client verification and auth, INFO has nats-server's keys in its order.
#[test]
fn info_keys_match_nats_server_with_tls() {
    let pki = Pki::new();
    let config = format!(
        "{}authorization {{ users = [ {{user: \"CN=alice,O=Company\"}} ] }}\n",
        pki.tls_block_with_ca("verify_and_map: true")
    );
    let ours = Server::start(&config);
    let keys = info_keys(ours.port());
    for key in ["auth_required", "tls_required", "tls_verify", "client_id"] {
        assert!(keys.iter().any(|k| k == key), "{key} missing: {keys:?}");
    }
    let Some(theirs) = start_nats_server(&config, &[]) else {
        return;
    };
    assert_eq!(keys, info_keys(theirs.port()));
}

// ---- keepalive and slow consumers over TLS -------------------------------------------------

/// With `ping_interval: "200ms"` and `ping_max: 1`, a TLS client that never answers gets an
/// encrypted `PING`, then `-ERR 'Stale Connection'` and the close; one that answers stays.
fn scenario_keepalive(port: u16, pki: &Pki) {
    let mut answering = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    answering.send_connect(QUIET);
    answering.expect_open();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let reader = std::thread::spawn(move || {
        // Reading answers the server's PINGs; nothing else may arrive.
        while done_rx.try_recv().is_err() {
            let deadline = Instant::now() + Duration::from_millis(20);
            if let Ok(line) = answering.try_read_line(deadline) {
                panic!("unexpected line {}", common::show(&line));
            }
        }
        answering.expect_open();
    });
    let mut silent = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    silent.set_auto_pong(false);
    silent.send_connect(QUIET);
    silent.send(b"PING\r\n");
    silent.expect_line(b"PONG");
    silent.expect_line(b"PING");
    silent.expect_err("Stale Connection");
    silent.drain_until_closed(common::TIMEOUT);
    done_tx.send(()).expect("reader alive");
    reader.join().expect("the answering client stays connected");
}

fn keepalive_config(pki: &Pki) -> String {
    format!(
        "{}ping_interval: \"200ms\"\nping_max: 1\n",
        pki.tls_block("")
    )
}

#[test]
fn keepalive_over_tls() {
    let pki = Pki::new();
    let server = Server::start(&keepalive_config(&pki));
    scenario_keepalive(server.port(), &pki);
}

#[test]
fn keepalive_over_tls_nats_server() {
    let pki = Pki::new();
    let Some(server) = start_nats_server(&keepalive_config(&pki), &[]) else {
        return;
    };
    scenario_keepalive(server.port(), &pki);
}

/// A TLS subscriber that stops reading while more than `max_pending` is published to it is
/// closed as a slow consumer; the publisher and another subscriber are not.
fn scenario_tls_slow_consumer(port: u16, pki: &Pki) {
    let mut stalled = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    stalled.send_connect(QUIET);
    stalled.send(b"SUB flood 1\r\n");
    stalled.expect_open();
    let mut other = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    other.send_connect(QUIET);
    other.send(b"SUB calm 1\r\n");
    other.expect_open();
    let mut publisher = TlsRawConn::connect(port, pki.client(None)).expect("TLS");
    publisher.send_connect(QUIET);
    publisher.expect_open();

    let body = vec![b'f'; 32 * 1024];
    let mut op = format!("PUB flood {}\r\n", body.len()).into_bytes();
    op.extend_from_slice(&body);
    op.extend_from_slice(b"\r\n");
    // 12.8 MB: far more than max_pending plus what the kernel buffers hold.
    for _ in 0..400 {
        publisher.send(&op);
    }
    publisher.expect_open();
    let drained = stalled.drain_until_closed(common::TIMEOUT);
    assert!(
        drained < 400 * body.len(),
        "all {drained} bytes arrived: not closed"
    );
    publisher.send(b"PUB calm 2\r\nok\r\n");
    publisher.expect_open();
    other.expect_msg("calm", "1", b"ok");
}

fn slow_consumer_config(pki: &Pki) -> String {
    format!(
        "{}max_payload: 65536\nmax_pending: 524288\n",
        pki.tls_block("")
    )
}

#[test]
fn slow_tls_consumer_is_closed_alone() {
    let pki = Pki::new();
    let server = Server::start(&slow_consumer_config(&pki));
    scenario_tls_slow_consumer(server.port(), &pki);
}

#[test]
fn slow_tls_consumer_is_closed_alone_nats_server() {
    let pki = Pki::new();
    // nats-server 2.9.10 closed this reader only at its write deadline (default 10 s).
    let config = format!("{}write_deadline: \"1s\"\n", slow_consumer_config(&pki));
    let Some(server) = start_nats_server(&config, &[]) else {
        return;
    };
    scenario_tls_slow_consumer(server.port(), &pki);
}
