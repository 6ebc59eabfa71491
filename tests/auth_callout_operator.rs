//! Auth callout in operator mode (spec callout.md §1-§4): the account JWT's `authorization`
//! claim (`auth_users`, `allowed_accounts`, `xkey`) turns the callout on for the users of that
//! account. An auth service written here against the spec only (async-nats, nkeys and
//! hand-built response and user JWTs) runs as an `auth_users` user of the callout account AUTH;
//! clients log in as the account's sentinel (a bearer user JWT) plus a user name and password,
//! as the nats.go callout examples do. The service admits users into AUTH (user JWT signed by
//! AUTH or, with `issuer_account`, by one of AUTH's signing keys), places them into the allowed
//! account B (signed by B or by B's signing key), and refuses: a service error, a user JWT of
//! account C (not allowed), a response signed by a key that is not AUTH's. Checked: who lands
//! in which account with which permissions, the request's claims, that auth users and users of
//! other accounts bypass the callout, the sealed (xkey) variant, and that resolver updates that
//! add or remove the claim apply to the next CONNECT. Guards issue 11 (operator mode),
//! `auth/operator/callout.rs` and `shard/callout.rs`.
// Test code: std Mutex in the service's shared state.
#![allow(clippy::disallowed_types)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::ConnectErrorKind;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use nkeys::{KeyPair, XKey};
use ringnats::auth::jwt::claims::{ExternalAuthorization, NO_LIMIT, Permission};
use ringnats::auth::jwt::{
    AccountClaims, AccountLimits, ClaimsData, OperatorClaims, SigningKey, UserClaims, creds, encode,
};
use serde_json::{Value, json};

use common::{Launch, RawConn, Server, TIMEOUT, show};

/// How long `reaches` waits for one message before publishing again.
const RETRY: Duration = Duration::from_millis(50);
/// The service's curve key (raw seed 0x02×32 of spec/callout.md).
const SERVICE_XKEY_SEED: [u8; 32] = [2; 32];

/// An operator with a system account, the callout account AUTH (with a signing key), the
/// allowed account B (with a signing key), and C, which AUTH's service may not place users in.
struct Fixture {
    op: KeyPair,
    sys: KeyPair,
    auth: KeyPair,
    auth_signer: KeyPair,
    b: KeyPair,
    b_signer: KeyPair,
    c: KeyPair,
    /// The service's user (an `auth_users` entry of AUTH).
    service: KeyPair,
    /// The sentinel every client logs in with: a bearer user of AUTH that may do nothing.
    sentinel: KeyPair,
    sentinel_jwt: String,
    /// `iat` of the first account JWTs; updates count up from here.
    base: i64,
}

impl Fixture {
    fn new() -> Fixture {
        let base = encode::now_unix() - 1000;
        let mut fx = Fixture {
            op: KeyPair::new_operator(),
            sys: KeyPair::new_account(),
            auth: KeyPair::new_account(),
            auth_signer: KeyPair::new_account(),
            b: KeyPair::new_account(),
            b_signer: KeyPair::new_account(),
            c: KeyPair::new_account(),
            service: KeyPair::new_user(),
            sentinel: KeyPair::new_user(),
            sentinel_jwt: String::new(),
            base,
        };
        let deny_all = Permission {
            allow: vec![],
            deny: vec![">".into()],
        };
        fx.sentinel_jwt = fx.user_jwt(&fx.sentinel, &fx.auth, |c| {
            c.limits.bearer_token = true;
            c.limits.permissions.publish = deny_all.clone();
            c.limits.permissions.subscribe = deny_all.clone();
        });
        fx
    }

    /// AUTH's `authorization` claim: the service user, B allowed, and the xkey if asked.
    fn authorization(&self, xkey: bool) -> ExternalAuthorization {
        ExternalAuthorization {
            auth_users: vec![self.service.public_key()],
            allowed_accounts: vec![self.b.public_key()],
            xkey: if xkey {
                XKey::new_from_raw(SERVICE_XKEY_SEED).public_key()
            } else {
                String::new()
            },
        }
    }

    /// An account JWT for `key`, issued `step` seconds after `base`.
    fn account(
        &self,
        key: &KeyPair,
        name: &str,
        step: i64,
        edit: impl FnOnce(&mut AccountClaims),
    ) -> String {
        let mut claims = AccountClaims {
            limits: AccountLimits::unlimited(),
            ..AccountClaims::default()
        };
        edit(&mut claims);
        let data = ClaimsData {
            sub: key.public_key(),
            name: name.into(),
            iat: self.base + step,
            ..ClaimsData::default()
        };
        encode::account(data, claims, &self.op).expect("account jwt")
    }

    /// AUTH's JWT, with the callout claim when `callout` is set.
    fn auth_account(&self, step: i64, callout: Option<ExternalAuthorization>) -> String {
        let signer = SigningKey::Plain(self.auth_signer.public_key());
        self.account(&self.auth, "AUTH", step, |c| {
            c.signing_keys = vec![signer];
            if let Some(claim) = callout {
                c.authorization = claim;
            }
        })
    }

    /// A user JWT for `user` signed by `account`'s identity key.
    fn user_jwt(
        &self,
        user: &KeyPair,
        account: &KeyPair,
        edit: impl FnOnce(&mut UserClaims),
    ) -> String {
        let mut claims = UserClaims::default();
        claims.limits.subs = NO_LIMIT;
        claims.limits.data = NO_LIMIT;
        claims.limits.payload = NO_LIMIT;
        edit(&mut claims);
        let data = ClaimsData {
            sub: user.public_key(),
            name: "u".into(),
            ..ClaimsData::default()
        };
        encode::user(data, claims, account).expect("user jwt")
    }

    /// A memory-resolver config with SYS, AUTH (as `auth_jwt`), B and C preloaded.
    fn config(&self, auth_jwt: &str, timeout_secs: u32) -> String {
        let op_jwt = encode::operator(
            ClaimsData {
                sub: self.op.public_key(),
                name: "OP".into(),
                iat: self.base,
                ..ClaimsData::default()
            },
            OperatorClaims {
                system_account: self.sys.public_key(),
                ..OperatorClaims::default()
            },
            &self.op,
        )
        .expect("operator jwt");
        let b_signer = SigningKey::Plain(self.b_signer.public_key());
        let accounts = [
            (&self.sys, self.account(&self.sys, "SYS", 0, |_| {})),
            (&self.auth, auth_jwt.to_string()),
            (
                &self.b,
                self.account(&self.b, "B", 0, |c| c.signing_keys = vec![b_signer]),
            ),
            (&self.c, self.account(&self.c, "C", 0, |_| {})),
        ];
        let mut out = format!(
            "authorization {{ timeout: {timeout_secs} }}\noperator: {op_jwt}\nsystem_account: {}\n\
             resolver: MEMORY\nresolver_preload: {{\n",
            self.sys.public_key()
        );
        for (key, token) in accounts {
            out.push_str(&format!("  {}: {token}\n", key.public_key()));
        }
        out.push_str("}\n");
        out
    }

    fn creds(&self, user: &KeyPair, token: &str) -> String {
        creds::format(token, &user.seed().expect("seed"))
    }

    /// The service's keys, as the service holds them (it signs with these, nothing else).
    fn service_keys(&self, xkey: bool) -> ServiceKeys {
        let seed = |k: &KeyPair| k.seed().expect("seed");
        ServiceKeys {
            auth: KeyPair::from_seed(&seed(&self.auth)).expect("auth"),
            auth_signer: KeyPair::from_seed(&seed(&self.auth_signer)).expect("auth signer"),
            b: KeyPair::from_seed(&seed(&self.b)).expect("b"),
            b_signer: KeyPair::from_seed(&seed(&self.b_signer)).expect("b signer"),
            c: KeyPair::from_seed(&seed(&self.c)).expect("c"),
            xkey: xkey.then(|| XKey::new_from_raw(SERVICE_XKEY_SEED)),
        }
    }
}

/// What the auth service signs with.
struct ServiceKeys {
    auth: KeyPair,
    auth_signer: KeyPair,
    b: KeyPair,
    b_signer: KeyPair,
    c: KeyPair,
    /// Set when requests are sealed to the service.
    xkey: Option<XKey>,
}

/// A JWT as nats-io/jwt v2 writes it: header, claims, Ed25519 over `header.claims`.
fn sign_jwt(claims: &Value, signer: &KeyPair) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims"));
    let signed = format!("{header}.{body}");
    let sig = signer.sign(signed.as_bytes()).expect("sign");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn decode_claims(token: &[u8]) -> Option<Value> {
    let token = std::str::from_utf8(token).ok()?;
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

fn now_unix() -> i64 {
    encode::now_unix()
}

/// The user JWT the service issues: `sub` the request's user nkey, signed by `signer`, with
/// `issuer_account` when `signer` is a signing key.
fn issued_user(
    sub: &str,
    name: &str,
    perms: Value,
    signer: &KeyPair,
    issuer_account: Option<&str>,
) -> String {
    let mut nats = json!({"subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2});
    for (k, v) in perms.as_object().expect("perms object") {
        nats[k] = v.clone();
    }
    if let Some(account) = issuer_account {
        nats["issuer_account"] = json!(account);
    }
    let claims = json!({
        "jti": "", "iat": now_unix(), "iss": signer.public_key(), "name": name, "sub": sub,
        "nats": nats,
    });
    sign_jwt(&claims, signer)
}

/// The `authorization_response`, signed by `signer` (with `issuer_account` when set).
fn response(
    sub: &str,
    aud: &str,
    body: Value,
    signer: &KeyPair,
    issuer_account: Option<&str>,
) -> String {
    let mut nats = json!({"type": "authorization_response", "version": 2});
    for (k, v) in body.as_object().expect("body object") {
        nats[k] = v.clone();
    }
    if let Some(account) = issuer_account {
        nats["issuer_account"] = json!(account);
    }
    let claims = json!({
        "jti": "", "iat": now_unix(), "iss": signer.public_key(), "sub": sub, "aud": aud,
        "nats": nats,
    });
    sign_jwt(&claims, signer)
}

/// What the service saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    claims: Value,
    server_xkey_header: Option<String>,
}

/// The service's answer to one request, by the user name in its CONNECT; `None`: no answer
/// (a sealed request it could not open).
fn answer(
    msg: &async_nats::Message,
    keys: &ServiceKeys,
    log: &Mutex<Vec<Seen>>,
) -> Option<Vec<u8>> {
    let server_xkey_header = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Server-Xkey"))
        .map(|v| v.to_string());
    let server_xkey = server_xkey_header
        .as_deref()
        .and_then(|k| XKey::from_public_key(k).ok());
    let token = match (&keys.xkey, &server_xkey) {
        (Some(own), Some(server)) => own.open(&msg.payload, server).ok()?,
        _ => msg.payload.to_vec(),
    };
    let claims = decode_claims(&token)?;
    log.lock().unwrap().push(Seen {
        claims: claims.clone(),
        server_xkey_header,
    });
    let user = claims["nats"]["connect_opts"]["user"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let pass = claims["nats"]["connect_opts"]["pass"]
        .as_str()
        .unwrap_or_default();
    let user_nkey = claims["nats"]["user_nkey"].as_str().unwrap_or_default();
    let server_id = claims["iss"].as_str().unwrap_or_default();
    let auth_key = keys.auth.public_key();
    let b_key = keys.b.public_key();
    // The response: signed by AUTH, unless the case says otherwise.
    let respond = |body: Value, signer: &KeyPair, issuer_account: Option<&str>| {
        let token = response(user_nkey, server_id, body, signer, issuer_account);
        match (&keys.xkey, &server_xkey) {
            (Some(own), Some(server)) => own.seal(token.as_bytes(), server).expect("seal"),
            _ => token.into_bytes(),
        }
    };
    let admit = |perms: Value, signer: &KeyPair, issuer_account: Option<&str>| {
        let jwt = issued_user(user_nkey, &user, perms, signer, issuer_account);
        respond(json!({"jwt": jwt}), &keys.auth, None)
    };
    if pass != "secret" {
        return Some(respond(json!({"error": "bad password"}), &keys.auth, None));
    }
    let a_perms = json!({"pub": {"allow": ["a.>"]}, "sub": {"allow": ["a.>"]}});
    Some(match user.as_str() {
        // Into AUTH, signed by AUTH.
        "alice" => admit(a_perms, &keys.auth, None),
        // Into AUTH, user JWT and response signed by AUTH's signing key.
        "dave" => {
            let jwt = issued_user(
                user_nkey,
                &user,
                json!({}),
                &keys.auth_signer,
                Some(&auth_key),
            );
            respond(json!({"jwt": jwt}), &keys.auth_signer, Some(&auth_key))
        }
        // Into B, signed by B's signing key.
        "bob" => admit(
            json!({"pub": {"allow": ["b.>"]}, "sub": {"allow": ["b.>"]}}),
            &keys.b_signer,
            Some(&b_key),
        ),
        // Into B, signed by B.
        "carl" => admit(json!({}), &keys.b, None),
        // Into C: not allowed.
        "mallory" => admit(json!({}), &keys.c, None),
        // The response signed by an account key that is not AUTH's.
        "wrongsigner" => {
            let jwt = issued_user(user_nkey, &user, json!({}), &keys.auth, None);
            respond(json!({"jwt": jwt}), &keys.c, None)
        }
        // A user JWT of B's signing key without `issuer_account`: no such account.
        "noissuer" => admit(json!({}), &keys.b_signer, None),
        _ => respond(json!({"error": "who?"}), &keys.auth, None),
    })
}

struct Service {
    client: async_nats::Client,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Service {
    /// Connects as AUTH's auth user and answers `$SYS.REQ.USER.AUTH`; returns once a client
    /// was admitted through it on every shard (the subscription is visible everywhere).
    async fn start(server: &Server, fx: &Fixture, xkey: bool) -> Service {
        let service_jwt = fx.user_jwt(&fx.service, &fx.auth, |_| {});
        let client =
            async_nats::ConnectOptions::with_credentials(&fx.creds(&fx.service, &service_jwt))
                .expect("service creds")
                .connect(server.url())
                .await
                .expect("the service connects (an auth user: no callout)");
        let mut sub = client
            .subscribe("$SYS.REQ.USER.AUTH")
            .await
            .expect("subscribe");
        client.flush().await.expect("flush");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (responder, log, keys) = (client.clone(), Arc::clone(&seen), fx.service_keys(xkey));
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let (Some(reply), Some(payload)) = (msg.reply.clone(), answer(&msg, &keys, &log))
                else {
                    continue;
                };
                let _ = responder.publish(reply, payload.into()).await;
                let _ = responder.flush().await;
            }
        });
        let shards = server.shards() as u64;
        let mut ready = vec![false; server.shards()];
        let deadline = Instant::now() + TIMEOUT;
        while ready.iter().any(|r| !r) {
            assert!(
                Instant::now() < deadline,
                "service never visible on every shard"
            );
            let (conn, line) = login(server.port(), fx, "alice", "secret").await;
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
        Service { client, seen }
    }

    fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Logs in raw as the sentinel with `user`/`pass`; returns the connection and the first line
/// after CONNECT+PING.
async fn login(port: u16, fx: &Fixture, user: &str, pass: &str) -> (RawConn, String) {
    let connect = json!({"jwt": fx.sentinel_jwt, "user": user, "pass": pass, "verbose": false,
                         "pedantic": false, "name": "itest", "lang": "raw", "protocol": 1});
    blocking(move || {
        let mut conn = RawConn::connect(port);
        conn.send_connect(&connect.to_string());
        conn.send(b"PING\r\n");
        let line = loop {
            let line = conn.read_line();
            if !line.starts_with(b"INFO ") {
                break show(&line);
            }
        };
        (conn, line)
    })
    .await
}

/// The sentinel's credentials plus `user`/`pass`, as a nats.go callout client connects.
async fn connect(server: &Server, fx: &Fixture, user: &str, pass: &str) -> async_nats::Client {
    try_connect(server, fx, user, pass)
        .await
        .unwrap_or_else(|e| panic!("{user} admitted: {e}"))
}

async fn try_connect(
    server: &Server,
    fx: &Fixture,
    user: &str,
    pass: &str,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    async_nats::ConnectOptions::with_credentials(&fx.creds(&fx.sentinel, &fx.sentinel_jwt))
        .expect("sentinel creds")
        .user_and_password(user.into(), pass.into())
        .connect(server.url())
        .await
}

/// Asserts the login of `user` is refused with `Authorization Violation` and closed.
async fn refused(port: u16, fx: &Fixture, user: &str, pass: &str) {
    let (mut conn, line) = login(port, fx, user, pass).await;
    assert_eq!(line, "-ERR 'Authorization Violation'", "user {user}");
    blocking(move || conn.expect_closed()).await;
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task")
}

/// Whether `sender` publishing on `subject` reaches `receiver` (async-nats has no PING round
/// trip to wait for a subscription to be visible, so this publishes until one arrives).
async fn reaches(
    sender: &async_nats::Client,
    receiver: &async_nats::Client,
    subject: &str,
) -> bool {
    let mut sub = receiver.subscribe(subject.to_string()).await.expect("sub");
    receiver.flush().await.expect("flush");
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        sender
            .publish(subject.to_string(), "x".into())
            .await
            .expect("publish");
        sender.flush().await.expect("flush");
        if tokio::time::timeout(RETRY, sub.next()).await.is_ok() {
            return true;
        }
    }
    false
}

/// Asserts that `sender` publishing on `subject` does not reach `receiver`. `probe_from` is
/// in `receiver`'s account: its probe, published after `sender`'s message was flushed, arrives
/// after anything of `sender`'s that was going to (so this can only miss a late leak, never
/// fail a correct broker).
async fn isolated(
    sender: &async_nats::Client,
    receiver: &async_nats::Client,
    probe_from: &async_nats::Client,
    subject: &str,
) {
    let mut sub = receiver.subscribe(subject.to_string()).await.expect("sub");
    let probe = format!("{subject}.probe");
    let mut probe_sub = receiver.subscribe(probe.clone()).await.expect("probe sub");
    receiver.flush().await.expect("flush");
    // Publish probes until one arrives: both subscriptions are in place.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(
            Instant::now() < deadline,
            "probe on {subject} not delivered"
        );
        probe_from
            .publish(probe.clone(), "early".into())
            .await
            .expect("probe");
        probe_from.flush().await.expect("flush");
        if tokio::time::timeout(RETRY, probe_sub.next()).await.is_ok() {
            break;
        }
    }
    sender
        .publish(subject.to_string(), "x".into())
        .await
        .expect("publish");
    sender.flush().await.expect("flush");
    probe_from
        .publish(probe, "last".into())
        .await
        .expect("probe");
    probe_from.flush().await.expect("flush");
    loop {
        let got = tokio::time::timeout_at(deadline.into(), probe_sub.next()).await;
        let msg = got.expect("last probe in time").expect("probe");
        if msg.payload == "last" {
            break;
        }
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(1), sub.next())
            .await
            .is_err(),
        "{subject} leaked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accounts_service_admits_refuses_and_places_users() {
    let fx = Fixture::new();
    let server = Launch::under_test()
        .config(&fx.config(&fx.auth_account(0, Some(fx.authorization(false))), 2))
        .arg("-D")
        .start();
    let service = Service::start(&server, &fx, false).await;
    let port = server.port();

    // Admitted into AUTH (signed by AUTH) with the permissions of the issued JWT.
    let alice = connect(&server, &fx, "alice", "secret").await;
    let alice2 = connect(&server, &fx, "alice", "secret").await;
    assert!(reaches(&alice, &alice2, "a.x").await);
    // Admitted into AUTH by AUTH's signing key; no permissions: AUTH's users' defaults.
    let dave = connect(&server, &fx, "dave", "secret").await;
    assert!(
        reaches(&dave, &alice, "a.y").await,
        "dave and alice share AUTH"
    );
    // Placed into B, by B's signing key and by B itself: they share B, not AUTH.
    let bob = connect(&server, &fx, "bob", "secret").await;
    let carl = connect(&server, &fx, "carl", "secret").await;
    assert!(reaches(&carl, &bob, "b.x").await, "bob and carl share B");
    isolated(&dave, &bob, &carl, "b.z").await;
    isolated(&carl, &dave, &alice, "a.z").await;

    let requests = service.requests();
    let info_id = blocking(move || RawConn::connect(port).info()["server_id"].clone()).await;
    assert_eq!(requests.len(), 5, "one request per callout login");
    for seen in &requests {
        let claims = &seen.claims;
        assert_eq!(claims["iss"], info_id, "signed by the server's INFO id");
        assert_eq!(
            claims["sub"],
            fx.auth.public_key(),
            "sub: the callout account"
        );
        assert_eq!(claims["aud"], "nats-authorization-request");
        assert_eq!(claims["nats"]["type"], "authorization_request");
        assert_eq!(
            claims["nats"]["connect_opts"]["jwt"],
            fx.sentinel_jwt.as_str()
        );
        assert_eq!(claims["nats"]["connect_opts"]["pass"], "secret");
        assert_eq!(
            claims["nats"]["client_info"]["user"], claims["nats"]["connect_opts"]["user"],
            "the raw auth user: the user name before the JWT's key"
        );
        assert!(seen.server_xkey_header.is_none());
    }

    // alice's JWT allows only a.>; she may not publish requests in the callout account.
    let (mut raw_alice, line) = login(port, &fx, "alice", "secret").await;
    assert_eq!(line, "PONG");
    blocking(move || {
        raw_alice.send(b"PUB b.x 0\r\n\r\n");
        raw_alice.expect_err("Permissions Violation for Publish to \"b.x\"");
        raw_alice.send(b"PUB $SYS.REQ.USER.AUTH 0\r\n\r\n");
        raw_alice.expect_err("Permissions Violation for Publish to \"$SYS.REQ.USER.AUTH\"");
        raw_alice.expect_open();
    })
    .await;

    // Refused: a service error, an account the claim does not allow, a response not signed by
    // AUTH or its signing keys, a signing key's user without `issuer_account`.
    refused(port, &fx, "alice", "wrong").await;
    for user in ["mallory", "wrongsigner", "noissuer"] {
        refused(port, &fx, user, "secret").await;
    }
    let err = try_connect(&server, &fx, "mallory", "secret")
        .await
        .expect_err("mallory refused");
    assert_eq!(err.kind(), ConnectErrorKind::AuthorizationViolation);
    let log = server.output();
    for reason in [
        "auth callout: service returned an error",
        "auth callout: account not allowed for the callout",
        "auth callout: response not signed by the configured issuer",
    ] {
        assert!(log.contains(reason), "no \"{reason}\" in the debug log");
    }
    for secret in ["secret", "eyJ"] {
        assert!(!log.contains(secret), "log shows {secret}");
    }
    // Nothing else was affected.
    assert!(reaches(&carl, &bob, "b.w").await);
    drop((alice, alice2, dave, bob, carl));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_users_and_other_accounts_bypass_the_callout() {
    let fx = Fixture::new();
    let server = Server::start(&fx.config(&fx.auth_account(0, Some(fx.authorization(false))), 2));
    let service = Service::start(&server, &fx, false).await;
    // A user of B (no claim) logs in with its own JWT: no request.
    let b_user = KeyPair::new_user();
    let b_jwt = fx.user_jwt(&b_user, &fx.b, |_| {});
    let b_client = async_nats::ConnectOptions::with_credentials(&fx.creds(&b_user, &b_jwt))
        .expect("creds")
        .connect(server.url())
        .await
        .expect("B user admitted without the callout");
    // The auth user logs in again: no request either; it may not publish requests.
    let service_jwt = fx.user_jwt(&fx.service, &fx.auth, |_| {});
    let (mut raw, line) = {
        let connect_jwt = service_jwt.clone();
        let seed = fx.service.seed().expect("seed");
        let port = server.port();
        blocking(move || {
            let user = KeyPair::from_seed(&seed).expect("seed");
            let mut conn = RawConn::connect(port);
            let nonce = conn.info()["nonce"].as_str().expect("nonce").to_string();
            let sig = URL_SAFE_NO_PAD.encode(user.sign(nonce.as_bytes()).expect("sign"));
            conn.send_connect(&format!(
                r#"{{"verbose":false,"pedantic":false,"protocol":1,"jwt":"{connect_jwt}","sig":"{sig}"}}"#
            ));
            conn.send(b"PING\r\n");
            let line = show(&conn.read_line());
            (conn, line)
        })
        .await
    };
    assert_eq!(line, "PONG");
    blocking(move || {
        raw.send(b"PUB $SYS.REQ.USER.AUTH 0\r\n\r\n");
        raw.expect_err("Permissions Violation for Publish to \"$SYS.REQ.USER.AUTH\"");
    })
    .await;
    assert!(service.requests().is_empty(), "{:?}", service.requests());
    drop((b_client, service.client));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xkey_sealed_requests_and_responses_in_operator_mode() {
    let fx = Fixture::new();
    let server = Server::start(&fx.config(&fx.auth_account(0, Some(fx.authorization(true))), 2));
    let service = Service::start(&server, &fx, true).await;
    let alice = connect(&server, &fx, "alice", "secret").await;
    let bob = connect(&server, &fx, "bob", "secret").await;
    let bob2 = connect(&server, &fx, "bob", "secret").await;
    assert!(reaches(&bob, &bob2, "b.x").await);
    refused(server.port(), &fx, "mallory", "secret").await;
    let requests = service.requests();
    assert_eq!(
        requests.len(),
        4,
        "every request opened with the service key"
    );
    for seen in &requests {
        let header = seen.server_xkey_header.clone().expect("xkey header");
        assert!(header.starts_with('X'));
        assert_eq!(seen.claims["nats"]["server_id"]["xkey"], header.as_str());
    }
    drop(alice);
}

/// Pushes `token` as an update of account `key` through the system account and waits for
/// the reply.
async fn push_update(port: u16, fx: &Fixture, key: &KeyPair, token: &str) {
    let sys_user = KeyPair::new_user();
    let sys_jwt = fx.user_jwt(&sys_user, &fx.sys, |_| {});
    let subject = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", key.public_key());
    let token = token.to_string();
    blocking(move || {
        let mut conn = RawConn::connect(port);
        let nonce = conn.info()["nonce"].as_str().expect("nonce").to_string();
        let sig = URL_SAFE_NO_PAD.encode(sys_user.sign(nonce.as_bytes()).expect("sign"));
        conn.send_connect(&format!(
            r#"{{"verbose":false,"pedantic":false,"protocol":1,"jwt":"{sys_jwt}","sig":"{sig}"}}"#
        ));
        conn.send(
            format!(
                "SUB _update.reply 1\r\nPUB {subject} _update.reply {}\r\n{token}\r\n",
                token.len()
            )
            .as_bytes(),
        );
        loop {
            let line = conn.read_line();
            if line.starts_with(b"MSG ") {
                let body = conn.read_line();
                let reply: Value = serde_json::from_slice(&body).expect("reply json");
                assert_eq!(reply["data"]["code"], 200, "{reply}");
                return;
            }
            assert!(line.starts_with(b"INFO "), "unexpected {}", show(&line));
        }
    })
    .await;
}

/// Logs in as the sentinel with user `alice` until `want(line, requests seen)` holds.
async fn login_until(
    server: &Server,
    fx: &Fixture,
    service: &Service,
    want: impl Fn(&str, usize) -> bool,
) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let before = service.requests().len();
        let (_conn, line) = login(server.port(), fx, "alice", "secret").await;
        let asked = service.requests().len() - before;
        if want(&line, asked) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "last login: {line}, {asked} requests"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_updates_turn_the_callout_on_and_off_for_new_connections() {
    let fx = Fixture::new();
    let server = Server::start(&fx.config(&fx.auth_account(0, None), 2));
    let port = server.port();
    // No claim yet: the service is an ordinary user; the sentinel logs in as itself.
    let service = {
        let service_jwt = fx.user_jwt(&fx.service, &fx.auth, |_| {});
        let client =
            async_nats::ConnectOptions::with_credentials(&fx.creds(&fx.service, &service_jwt))
                .expect("creds")
                .connect(server.url())
                .await
                .expect("service connects");
        let mut sub = client.subscribe("$SYS.REQ.USER.AUTH").await.expect("sub");
        client.flush().await.expect("flush");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (responder, log, keys) = (client.clone(), Arc::clone(&seen), fx.service_keys(false));
        tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                if let (Some(reply), Some(payload)) = (msg.reply.clone(), answer(&msg, &keys, &log))
                {
                    let _ = responder.publish(reply, payload.into()).await;
                    let _ = responder.flush().await;
                }
            }
        });
        Service { client, seen }
    };
    let (mut sentinel, line) = login(port, &fx, "alice", "secret").await;
    assert_eq!(line, "PONG", "no callout: the sentinel itself is admitted");
    assert!(service.requests().is_empty());
    // The sentinel's own permissions apply: it may publish nothing.
    sentinel = blocking(move || {
        sentinel.send(b"PUB a.x 0\r\n\r\n");
        sentinel.expect_err("Permissions Violation for Publish to \"a.x\"");
        sentinel
    })
    .await;

    // The claim arrives: the next logins go through the service (refused by it, admitted by it).
    let with_claim = fx.auth_account(1, Some(fx.authorization(false)));
    push_update(port, &fx, &fx.auth, &with_claim).await;
    login_until(&server, &fx, &service, |line, asked| {
        line == "PONG" && asked == 1
    })
    .await;
    refused(port, &fx, "alice", "wrong").await;
    let alice = connect(&server, &fx, "alice", "secret").await;
    let alice2 = connect(&server, &fx, "alice", "secret").await;
    assert!(
        reaches(&alice, &alice2, "a.x").await,
        "the issued permissions apply"
    );
    // A live connection admitted before the update stays as it was.
    blocking(move || sentinel.expect_open()).await;

    // The claim goes: the sentinel is admitted as itself again, without a request.
    let without = fx.auth_account(2, None);
    push_update(port, &fx, &fx.auth, &without).await;
    login_until(&server, &fx, &service, |line, asked| {
        line == "PONG" && asked == 0
    })
    .await;
    let (_conn, line) = login(port, &fx, "alice", "wrong").await;
    assert_eq!(
        line, "PONG",
        "the password is nobody's business without the callout"
    );
}
