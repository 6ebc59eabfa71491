//! Auth callout end to end (spec callout.md): an auth service written here, against the spec
//! only (async-nats, nkeys and hand-built JWTs; nothing of ringnats), subscribes to
//! `$SYS.REQ.USER.AUTH` in the callout account and answers each request according to the user
//! name the client sent: it admits users into two accounts with different permissions, rejects,
//! stays silent, or answers badly (not a JWT, wrong signer, another server or user nkey, twice,
//! late, sealed to the wrong key). Checked through raw clients: the exact `-ERR` lines, which
//! account a user lands in, that a parked client costs no one else anything, that auth users
//! bypass the callout and nobody in the callout account may publish requests, that sealed
//! (xkey) requests and responses work, and that outstanding callouts are bounded. Guards
//! issue 11.
// Test code: std Mutex in the service's shared state.
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use nkeys::{KeyPair, XKey};
use serde_json::{Value, json};

use common::{Launch, RawConn, Server, TIMEOUT};

/// The issuer account's raw seed (its public key goes into `auth_callout.issuer`).
const ISSUER_SEED: [u8; 32] = [21; 32];
/// The service's curve key (raw seed 0x02×32 of spec/callout.md).
const SERVICE_XKEY_SEED: [u8; 32] = [2; 32];

fn issuer() -> KeyPair {
    KeyPair::new_from_raw(nkeys::KeyPairType::Account, ISSUER_SEED).expect("issuer key")
}

/// The server configuration: accounts AUTH (the service), A and B, and the callout.
fn config(timeout_secs: u32, xkey: bool) -> String {
    let xkey = if xkey {
        format!(
            "xkey: {}",
            XKey::new_from_raw(SERVICE_XKEY_SEED).public_key()
        )
    } else {
        String::new()
    };
    format!(
        r#"
accounts {{
  AUTH {{ users: [ {{ user: auth, password: pwd }} ] }}
  A {{}}
  B {{}}
}}
authorization {{
  timeout: {timeout_secs}
  auth_callout {{
    issuer: {}
    account: AUTH
    auth_users: [ auth ]
    {xkey}
  }}
}}
"#,
        issuer().public_key()
    )
}

/// A JWT as nats-io/jwt v2 writes it: header, claims, Ed25519 over `header.claims`.
fn sign_jwt(claims: &Value, signer: &KeyPair) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims"));
    let signed = format!("{header}.{body}");
    let sig = signer.sign(signed.as_bytes()).expect("sign");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// What the service saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    claims: Value,
    server_xkey_header: Option<String>,
}

/// How long the service takes to answer user `slow`.
const SLOW_ANSWER: Duration = Duration::from_millis(50);

/// Whether this request is for user `slow` (the service answers it after `SLOW_ANSWER`).
fn is_slow(msg: &async_nats::Message) -> bool {
    decode_claims(&msg.payload).is_some_and(|c| c["nats"]["connect_opts"]["user"] == "slow")
}

/// A response the service held back, for the test to publish once the client has given up.
struct Late {
    reply: String,
    payload: Vec<u8>,
}

struct Service {
    client: async_nats::Client,
    seen: Arc<Mutex<Vec<Seen>>>,
    late: tokio::sync::mpsc::UnboundedReceiver<Late>,
}

impl Service {
    async fn start(server: &Server, xkey: bool) -> Service {
        let client =
            async_nats::ConnectOptions::with_user_and_password("auth".into(), "pwd".into())
                .connect(server.url())
                .await
                .expect("auth service connects (it is an auth user: no callout)");
        let mut sub = client
            .subscribe("$SYS.REQ.USER.AUTH")
            .await
            .expect("subscribe");
        client.flush().await.expect("flush");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (late_tx, late) = tokio::sync::mpsc::unbounded_channel();
        let responder = client.clone();
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let answer = answer(&msg, xkey, &log);
                let Some(reply) = msg.reply.clone() else {
                    continue;
                };
                let delayed = answer.len() == 1 && is_slow(&msg);
                if delayed {
                    // The slow user: answered after `SLOW_ANSWER`, without holding up others.
                    let (payload, _) = answer.into_iter().next().expect("one answer");
                    let responder = responder.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(SLOW_ANSWER).await;
                        let _ = responder.publish(reply, payload.into()).await;
                        let _ = responder.flush().await;
                    });
                    continue;
                }
                for (payload, hold) in answer {
                    if hold {
                        let _ = late_tx.send(Late {
                            reply: reply.to_string(),
                            payload,
                        });
                    } else {
                        let _ = responder.publish(reply.clone(), payload.into()).await;
                    }
                }
                let _ = responder.flush().await;
            }
        });
        // The subscription must be known on every shard before the tests' clients connect:
        // until it is, a CONNECT there is refused at once (no service). Log in until a client
        // was admitted on each shard (a client id modulo the shard count is its shard).
        let port = server.port();
        let shards = server.shards() as u64;
        let mut ready = vec![false; server.shards()];
        let deadline = Instant::now() + TIMEOUT;
        while ready.iter().any(|r| !r) {
            assert!(
                Instant::now() < deadline,
                "service never visible on every shard"
            );
            let (conn, line) = login(port, "alice", "secret").await;
            if line == "PONG" {
                let shard = if server.is_ringnats() {
                    conn.client_id() % shards
                } else {
                    0
                };
                ready[shard as usize] = true;
            }
        }
        seen.lock().unwrap().clear();
        Service { client, seen, late }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The service's answers to one request: (payload, hold back for later).
fn answer(msg: &async_nats::Message, xkey: bool, log: &Mutex<Vec<Seen>>) -> Vec<(Vec<u8>, bool)> {
    let server_xkey_header = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Server-Xkey"))
        .map(|v| v.to_string());
    let service_xkey = XKey::new_from_raw(SERVICE_XKEY_SEED);
    let server_xkey = server_xkey_header
        .as_deref()
        .and_then(|k| XKey::from_public_key(k).ok());
    let token = match (&server_xkey, xkey) {
        (Some(server), true) => match service_xkey.open(&msg.payload, server) {
            Ok(token) => token,
            Err(_) => return Vec::new(),
        },
        _ => msg.payload.to_vec(),
    };
    let Some(claims) = decode_claims(&token) else {
        return Vec::new();
    };
    log.lock().unwrap().push(Seen {
        claims: claims.clone(),
        server_xkey_header,
    });
    let user = claims["nats"]["connect_opts"]["user"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let user_nkey = claims["nats"]["user_nkey"].as_str().unwrap_or_default();
    let server_id = claims["iss"].as_str().unwrap_or_default();
    let pass = claims["nats"]["connect_opts"]["pass"]
        .as_str()
        .unwrap_or_default();
    let issuer = issuer();
    let seal = |token: String| -> Vec<u8> {
        match &server_xkey {
            Some(server) if xkey => service_xkey.seal(token.as_bytes(), server).expect("seal"),
            _ => token.into_bytes(),
        }
    };
    let good = |account: &str, perms: Value| {
        let user_jwt = user_jwt(user_nkey, account, &user, perms, &issuer);
        seal(response(
            user_nkey,
            server_id,
            json!({"jwt": user_jwt}),
            &issuer,
        ))
    };
    if pass != "secret" && user != "late" && user != "twice" {
        let error = json!({"error": "bad password"});
        return vec![(seal(response(user_nkey, server_id, error, &issuer)), false)];
    }
    let answers = match user.as_str() {
        "alice" => vec![good(
            "A",
            json!({"pub": {"allow": ["a.>"]}, "sub": {"allow": ["a.>"]}}),
        )],
        "bob" => vec![good("B", json!({"pub": {"allow": ["b.>", "a.>"]}}))],
        "carol" => vec![good("AUTH", json!({}))],
        "slow" => vec![good("A", json!({}))],
        "silent" => vec![],
        "notjwt" => vec![b"hello".to_vec()],
        "wrongsigner" => {
            let other = KeyPair::new_account();
            let user_jwt = user_jwt(user_nkey, "A", &user, json!({}), &other);
            vec![seal(response(
                user_nkey,
                server_id,
                json!({"jwt": user_jwt}),
                &other,
            ))]
        }
        "wrongserver" => {
            let other_server = KeyPair::new_server().public_key();
            let user_jwt = user_jwt(user_nkey, "A", &user, json!({}), &issuer);
            vec![seal(response(
                user_nkey,
                &other_server,
                json!({"jwt": user_jwt}),
                &issuer,
            ))]
        }
        "wronguser" => {
            let other_user = KeyPair::new_user().public_key();
            let user_jwt = user_jwt(&other_user, "A", &user, json!({}), &issuer);
            vec![seal(response(
                &other_user,
                server_id,
                json!({"jwt": user_jwt}),
                &issuer,
            ))]
        }
        "nosuchaccount" => vec![good("NOPE", json!({}))],
        "sealedwrong" => {
            let user_jwt = user_jwt(user_nkey, "A", &user, json!({}), &issuer);
            let token = response(user_nkey, server_id, json!({"jwt": user_jwt}), &issuer);
            let elsewhere = XKey::new();
            vec![
                service_xkey
                    .seal(token.as_bytes(), &elsewhere)
                    .expect("seal"),
            ]
        }
        "twice" => {
            let error = seal(response(
                user_nkey,
                server_id,
                json!({"error": "no"}),
                &issuer,
            ));
            vec![error, good("A", json!({}))]
        }
        _ => vec![],
    };
    let hold = user == "late";
    if hold {
        return vec![(good("A", json!({})), true)];
    }
    answers.into_iter().map(|a| (a, false)).collect()
}

fn decode_claims(token: &[u8]) -> Option<Value> {
    let token = std::str::from_utf8(token).ok()?;
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

fn user_jwt(sub: &str, account: &str, name: &str, perms: Value, signer: &KeyPair) -> String {
    let mut nats = json!({"subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2});
    for (k, v) in perms.as_object().expect("perms object") {
        nats[k] = v.clone();
    }
    let claims = json!({
        "jti": "", "iat": now_unix(), "iss": signer.public_key(), "name": name,
        "sub": sub, "aud": account, "nats": nats,
    });
    sign_jwt(&claims, signer)
}

fn response(sub: &str, aud: &str, body: Value, signer: &KeyPair) -> String {
    let mut nats = json!({"type": "authorization_response", "version": 2});
    for (k, v) in body.as_object().expect("body object") {
        nats[k] = v.clone();
    }
    let claims = json!({
        "jti": "", "iat": now_unix(), "iss": signer.public_key(), "sub": sub, "aud": aud,
        "nats": nats,
    });
    sign_jwt(&claims, signer)
}

/// Connects raw and logs in; returns the connection and the first line after CONNECT+PING.
async fn login(port: u16, user: &str, pass: &str) -> (RawConn, String) {
    let (user, pass) = (user.to_string(), pass.to_string());
    tokio::task::spawn_blocking(move || {
        let mut conn = RawConn::connect(port);
        let connect = json!({"user": user, "pass": pass, "verbose": false, "pedantic": false,
                             "name": "itest", "lang": "raw", "version": "1", "protocol": 1});
        conn.send_connect(&connect.to_string());
        conn.send(b"PING\r\n");
        let line = String::from_utf8_lossy(&conn.read_line()).into_owned();
        (conn, line)
    })
    .await
    .expect("login task")
}

/// Logs in and expects to be refused with `Authorization Violation` and closed.
async fn refused(port: u16, user: &str, pass: &str) {
    let (mut conn, line) = login(port, user, pass).await;
    assert_eq!(line, "-ERR 'Authorization Violation'", "user {user}");
    tokio::task::spawn_blocking(move || conn.expect_closed())
        .await
        .expect("close");
}

async fn admitted(port: u16, user: &str) -> RawConn {
    let (conn, line) = login(port, user, "secret").await;
    assert_eq!(line, "PONG", "user {user} admitted");
    conn
}

/// Runs blocking raw-connection work off the runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

fn start(timeout_secs: u32, xkey: bool) -> Server {
    Server::start(&config(timeout_secs, xkey))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_placed_into_accounts_with_the_permissions_of_their_jwt() {
    let server = start(2, false);
    let service = Service::start(&server, false).await;
    let port = server.port();
    let alice = admitted(port, "alice").await;
    let bob = admitted(port, "bob").await;
    let (alice, bob) = blocking(move || {
        let (mut alice, mut bob) = (alice, bob);
        // Separate accounts: bob (B) does not see alice's (A) subject.
        alice.send(b"SUB a.x 1\r\nPING\r\n");
        alice.expect_line(b"PONG");
        bob.send(b"SUB a.x 1\r\nPING\r\n");
        bob.expect_line(b"PONG");
        alice.send(b"PUB a.x 2\r\nhi\r\nPING\r\n");
        alice.expect_msg("a.x", "1", None, b"hi");
        alice.expect_line(b"PONG");
        bob.send(b"PUB a.x 2\r\nyo\r\nPING\r\n");
        bob.expect_msg("a.x", "1", None, b"yo");
        bob.expect_line(b"PONG");
        alice.expect_open();
        // alice's JWT allows only a.>.
        alice.send(b"PUB b.x 0\r\n\r\n");
        alice.expect_err("Permissions Violation for Publish to \"b.x\"");
        alice.send(b"SUB c.x 9\r\n");
        alice.expect_err("Permissions Violation for Subscription to \"c.x\"");
        (alice, bob)
    })
    .await;
    drop((alice, bob));
    // What the service was sent (spec §3).
    let requests = service.requests();
    assert_eq!(requests.len(), 2);
    let info_id = {
        let conn = blocking(move || RawConn::connect(port)).await;
        conn.info()["server_id"].as_str().unwrap().to_string()
    };
    assert!(info_id.starts_with('N') && KeyPair::from_public_key(&info_id).is_ok());
    for seen in &requests {
        let claims = &seen.claims;
        assert_eq!(
            claims["iss"],
            info_id.as_str(),
            "signed by the server's INFO id"
        );
        assert_eq!(claims["sub"], issuer().public_key());
        assert_eq!(claims["aud"], "nats-authorization-request");
        assert_eq!(claims["nats"]["type"], "authorization_request");
        assert_eq!(claims["nats"]["server_id"]["id"], info_id.as_str());
        assert_eq!(claims["nats"]["connect_opts"]["pass"], "secret");
        assert_eq!(claims["nats"]["connect_opts"]["name"], "itest");
        assert_eq!(claims["nats"]["connect_opts"]["lang"], "raw");
        assert_eq!(claims["nats"]["client_info"]["name"], "itest");
        assert_eq!(claims["nats"]["client_info"]["host"], "127.0.0.1");
        assert_eq!(claims["nats"]["client_info"]["kind"], "Client");
        assert!(claims["exp"].as_u64().unwrap() >= now_unix());
        assert!(seen.server_xkey_header.is_none());
    }
    let nkeys: Vec<&str> = requests
        .iter()
        .map(|s| s.claims["nats"]["user_nkey"].as_str().unwrap())
        .collect();
    assert_ne!(nkeys[0], nkeys[1], "a fresh user nkey per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_and_bad_responses_are_authorization_violations() {
    let server = Launch::under_test()
        .config(&config(2, false))
        .arg("-D")
        .start();
    let _service = Service::start(&server, false).await;
    let port = server.port();
    let mut bystander = admitted(port, "alice").await;
    refused(port, "alice", "wrong").await;
    for user in [
        "notjwt",
        "wrongsigner",
        "wrongserver",
        "wronguser",
        "nosuchaccount",
        "twice",
    ] {
        refused(port, user, "secret").await;
    }
    // Nothing else was affected: the bystander still works and new users get in.
    bystander = blocking(move || {
        bystander.send(b"SUB a.y 1\r\nPUB a.y 1\r\nz\r\nPING\r\n");
        bystander.expect_msg("a.y", "1", None, b"z");
        bystander.expect_line(b"PONG");
        bystander
    })
    .await;
    let _ = admitted(port, "bob").await;
    drop(bystander);
    // Each reason is in the debug log; no password, JWT or xkey is.
    let log = server.output();
    for reason in [
        "auth callout: service returned an error",
        "auth callout: response is not an authorization_response JWT",
        "auth callout: response not signed by the configured issuer",
        "auth callout: response is not for this server",
        "auth callout: response is not for the expected user",
        "auth callout: user JWT names no configured account",
    ] {
        assert!(
            log.contains(reason),
            "no \"{reason}\" in the debug log:\n{log}"
        );
    }
    for secret in ["secret", "eyJ", "xkv1"] {
        assert!(!log.contains(secret), "log shows {secret}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_service_costs_the_waiting_client_its_timeout_and_no_one_else_anything() {
    let server = start(1, false);
    let mut service = Service::start(&server, false).await;
    let port = server.port();
    // A late answer: the client is refused at its timeout, the answer then finds nothing.
    let late = tokio::spawn(login(port, "late", "secret"));
    let silent = tokio::spawn(login(port, "silent", "secret"));
    let held = tokio::time::timeout(TIMEOUT, service.late.recv())
        .await
        .expect("late request seen")
        .expect("late answer");
    // While both wait, others connect and request/reply flows.
    let mut alice = admitted(port, "alice").await;
    let responder = service.client.clone();
    let mut sub = responder.subscribe("svc.echo").await.expect("sub");
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = responder.publish(r, m.payload).await;
            }
        }
    });
    service.client.flush().await.expect("flush");
    let asker = async_nats::ConnectOptions::with_user_and_password("auth".into(), "pwd".into())
        .connect(server.url())
        .await
        .expect("second auth user");
    let reply = tokio::time::timeout(TIMEOUT, asker.request("svc.echo", "x".into()))
        .await
        .expect("request in time")
        .expect("reply");
    assert_eq!(&reply.payload[..], b"x");
    alice = blocking(move || {
        alice.expect_open();
        alice
    })
    .await;
    for task in [late, silent] {
        let (mut conn, line) = task.await.expect("login");
        assert_eq!(line, "-ERR 'Authorization Violation'");
        blocking(move || conn.expect_closed()).await;
    }
    // The late answer arrives after the client gave up: dropped, nothing else affected.
    service
        .client
        .publish(held.reply, held.payload.into())
        .await
        .expect("publish late");
    service.client.flush().await.expect("flush");
    blocking(move || alice.expect_open()).await;
    let _ = admitted(port, "bob").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_users_bypass_the_callout_and_no_one_in_its_account_may_publish_requests() {
    let server = start(2, false);
    let service = Service::start(&server, false).await;
    let port = server.port();
    // An auth user logs in locally: no request is sent for it; a wrong password is refused.
    let (mut auth, line) = login(port, "auth", "pwd").await;
    assert_eq!(line, "PONG");
    refused(port, "auth", "nope").await;
    assert!(
        service.requests().is_empty(),
        "auth users bypass the callout"
    );
    let carol = admitted(port, "carol").await;
    blocking(move || {
        auth.send(b"PUB $SYS.REQ.USER.AUTH 0\r\n\r\n");
        auth.expect_err("Permissions Violation for Publish to \"$SYS.REQ.USER.AUTH\"");
        let mut carol = carol;
        carol.send(b"PUB $SYS.REQ.USER.AUTH 0\r\n\r\n");
        carol.expect_err("Permissions Violation for Publish to \"$SYS.REQ.USER.AUTH\"");
        carol.expect_open();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xkey_sealed_requests_and_responses() {
    let server = start(2, true);
    let service = Service::start(&server, true).await;
    let port = server.port();
    let alice = admitted(port, "alice").await;
    refused(port, "sealedwrong", "secret").await;
    refused(port, "eve", "wrong").await;
    let requests = service.requests();
    assert_eq!(
        requests.len(),
        3,
        "every request opened with the service key"
    );
    let header = requests[0].server_xkey_header.clone().expect("xkey header");
    assert!(header.starts_with('X'));
    assert_eq!(
        requests[0].claims["nats"]["server_id"]["xkey"],
        header.as_str()
    );
    blocking(move || {
        let mut alice = alice;
        alice.expect_open();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outstanding_callouts_are_bounded() {
    /// `shard::callout::CALLOUT_PENDING_MAX`.
    const PENDING_MAX: usize = 1024;
    let server = Launch::under_test()
        .config(&config(10, false))
        .shards(1)
        .start();
    let service = Service::start(&server, false).await;
    let port = server.port();
    let parked = blocking(move || {
        (0..PENDING_MAX)
            .map(|_| {
                let mut conn = RawConn::connect(port);
                conn.send_connect(r#"{"user":"silent","pass":"secret","verbose":false}"#);
                conn
            })
            .collect::<Vec<_>>()
    })
    .await;
    let deadline = Instant::now() + TIMEOUT;
    while service.requests().len() < PENDING_MAX {
        assert!(
            Instant::now() < deadline,
            "{} requests",
            service.requests().len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The queue is full: the next one is refused at once, without a request.
    refused(port, "silent", "secret").await;
    assert_eq!(service.requests().len(), PENDING_MAX);
    drop(parked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_connect_at_once_through_one_service() {
    const CLIENTS: usize = 200;
    let server = start(5, false);
    let _service = Service::start(&server, false).await;
    let url = server.url();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let url = url.clone();
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        tasks.push(tokio::spawn(async move {
            async_nats::ConnectOptions::with_user_and_password(user.into(), "secret".into())
                .connect(url)
                .await
        }));
    }
    let mut clients = Vec::new();
    for task in tasks {
        clients.push(task.await.expect("task").expect("client admitted"));
    }
    let elapsed = started.elapsed();
    println!(
        "{CLIENTS} CONNECTs through one callout service in {elapsed:?}: {:.0}/s",
        CLIENTS as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(clients.len(), CLIENTS);
}

/// The figures issue 11 asks for (printed, not asserted: timing belongs in notes): the p50/p99
/// of unrelated request/reply traffic alone, and while 16 clients keep connecting through a
/// service that answers each after 50 ms. Asserted: every request is answered and every client
/// is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrelated_request_reply_while_16_clients_wait_on_a_slow_service() {
    const REQUESTS: usize = 2000;
    const CONNECTORS: usize = 16;
    let server = start(5, false);
    let service = Service::start(&server, false).await;
    let responder = service.client.clone();
    let mut sub = responder.subscribe("svc.echo").await.expect("sub");
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let _ = responder.publish(r, m.payload).await;
            }
        }
    });
    let asker = async_nats::ConnectOptions::with_user_and_password("auth".into(), "pwd".into())
        .connect(server.url())
        .await
        .expect("requester");
    // The echo responder is visible once one request is answered.
    let deadline = Instant::now() + TIMEOUT;
    while asker.request("svc.echo", "x".into()).await.is_err() {
        assert!(Instant::now() < deadline, "echo responder never visible");
    }
    let measure = |asker: async_nats::Client| async move {
        let mut micros = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            let started = Instant::now();
            let reply = tokio::time::timeout(TIMEOUT, asker.request("svc.echo", "x".into()))
                .await
                .expect("reply in time")
                .expect("reply");
            assert_eq!(&reply.payload[..], b"x");
            micros.push(started.elapsed().as_micros() as u64);
        }
        micros.sort_unstable();
        (micros[REQUESTS / 2], micros[REQUESTS * 99 / 100])
    };
    let (idle_p50, idle_p99) = measure(asker.clone()).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let admitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut connectors = Vec::new();
    for _ in 0..CONNECTORS {
        let (url, stop, admitted) = (server.url(), Arc::clone(&stop), Arc::clone(&admitted));
        connectors.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let client = async_nats::ConnectOptions::with_user_and_password(
                    "slow".into(),
                    "secret".into(),
                )
                .connect(url.clone())
                .await
                .expect("slow client admitted");
                admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                drop(client);
            }
        }));
    }
    let (busy_p50, busy_p99) = measure(asker.clone()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in connectors {
        c.await.expect("connector");
    }
    let admitted = admitted.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "request/reply over {REQUESTS}: alone p50 {idle_p50} us p99 {idle_p99} us; \
         with {CONNECTORS} clients connecting through a 50 ms service ({admitted} admitted \
         meanwhile): p50 {busy_p50} us p99 {busy_p99} us"
    );
    assert!(admitted >= CONNECTORS, "{admitted} clients admitted");
}
