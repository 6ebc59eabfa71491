//! The full account resolver (`resolver: { type: full, dir, … }`), the memory resolver's
//! updates, and account updates without a restart.
//!
//! Checked, each against ringnats and (as the same script) nats-server 2.9.10 where nats-server
//! has the behaviour: the resolver directory is loaded at start and the preloaded accounts are
//! written into it; an account pushed on `$SYS.REQ.CLAIMS.UPDATE`, on
//! `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` or on the older `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE` is
//! answered with nats-server's JSON, stored in the directory, applied to live connections
//! (they keep their subscriptions; a lowered payload limit applies to them; a lowered `conn`
//! limit closes the extra ones; a revoked user is closed) and to new ones; lookup, list and
//! delete requests; refused pushes (garbage, a JWT over `max_control_line`, claims of the
//! wrong types, another account's subject, claims nats-io/jwt validation refuses) get the error JSON and change nothing; the memory resolver updates the
//! accounts it has and refuses a JWT signed by an unknown key. ringnats only (nats-server does
//! neither): an update older than the stored JWT and one signed by an unknown key are refused
//! by the full resolver too, and an edited `.jwt` file is noticed at `interval`. The last test
//! is issue 10's "Done when": a config of the shape `nsc generate config --nats-resolver`
//! writes, with `.creds` files, gives the same outcomes on both servers. Guards
//! `auth/resolver.rs`, `monitor/claims.rs` and the re-check of live connections.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Launch, RawConn, ReadEnd, Server, TIMEOUT, scratch_dir, show};
use nkeys::KeyPair;
use ringnats::auth::jwt::claims::{Export, ExportType, NO_LIMIT, Permission};
use ringnats::auth::jwt::{
    AccountClaims, AccountLimits, ClaimsData, OperatorClaims, UserClaims, creds, encode,
};
use serde_json::Value;

/// The brokers a test runs against: ringnats, and nats-server 2.9.10 when installed.
fn brokers() -> Vec<Launch> {
    let mut out = vec![Launch::ringnats()];
    out.extend(Launch::nats_server());
    out
}

/// An operator with a system account and account A, made at test time.
struct Fixture {
    dir: PathBuf,
    op: KeyPair,
    sys: KeyPair,
    a: KeyPair,
    op_jwt: String,
    sys_jwt: String,
    /// `iat` of the first account JWTs; updates count up from here.
    base: i64,
}

impl Fixture {
    fn new() -> Fixture {
        let (op, sys, a) = (
            KeyPair::new_operator(),
            KeyPair::new_account(),
            KeyPair::new_account(),
        );
        let base = encode::now_unix() - 1000;
        let op_jwt = encode::operator(
            ClaimsData {
                sub: op.public_key(),
                name: "OP".into(),
                iat: base,
                ..ClaimsData::default()
            },
            OperatorClaims {
                system_account: sys.public_key(),
                ..OperatorClaims::default()
            },
            &op,
        )
        .expect("operator jwt");
        let mut fixture = Fixture {
            dir: scratch_dir(),
            op,
            sys,
            a,
            op_jwt,
            sys_jwt: String::new(),
            base,
        };
        fixture.sys_jwt = fixture.account(&fixture.sys, "SYS", 0, |_| {});
        fixture
    }

    /// An account JWT for `key` signed by the operator, issued `step` seconds after `base`.
    fn account(
        &self,
        key: &KeyPair,
        name: &str,
        step: i64,
        edit: impl FnOnce(&mut AccountClaims),
    ) -> String {
        self.account_signed_by(&self.op, key, name, step, edit)
    }

    fn account_signed_by(
        &self,
        signer: &KeyPair,
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
        encode::account(data, claims, signer).expect("account jwt")
    }

    /// A new user of `account` (signed by its identity key); returns its key and JWT.
    fn user(&self, account: &KeyPair, edit: impl FnOnce(&mut UserClaims)) -> (KeyPair, String) {
        let user = KeyPair::new_user();
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
        let token = encode::user(data, claims, account).expect("user jwt");
        (user, token)
    }

    /// A `.creds` file for `user` with `token`.
    fn creds(&self, user: &KeyPair, token: &str) -> PathBuf {
        let path = self.dir.join(format!("{}.creds", user.public_key()));
        let text = creds::format(token, &user.seed().expect("seed"));
        std::fs::write(&path, text).expect("write creds");
        path
    }

    /// A fresh resolver directory (not created: the server creates it).
    fn jwt_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A full-resolver config with the system account preloaded.
    fn full_config(&self, dir: &Path, extra: &str) -> String {
        format!(
            "operator: {}\nsystem_account: {}\nresolver: {{\n  type: full\n  dir: \"{}\"\n  \
             timeout: \"300ms\"\n{extra}}}\nresolver_preload: {{\n  {}: {}\n}}\n",
            self.op_jwt,
            self.sys.public_key(),
            dir.display(),
            self.sys.public_key(),
            self.sys_jwt,
        )
    }

    /// A memory-resolver config preloading the system account and `accounts`.
    fn memory_config(&self, accounts: &[(&KeyPair, &str)]) -> String {
        let mut out = format!(
            "operator: {}\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: {}\n",
            self.op_jwt,
            self.sys.public_key(),
            self.sys.public_key(),
            self.sys_jwt
        );
        for (key, token) in accounts {
            out.push_str(&format!("  {}: {token}\n", key.public_key()));
        }
        out.push_str("}\n");
        out
    }

    /// A logged-in raw connection of the system account.
    fn sys_conn(&self, port: u16) -> RawConn {
        let (user, token) = self.user(&self.sys, |_| {});
        login(port, &token, &user)
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Connects raw, signs the nonce and sends CONNECT with `token`; asserts the login worked.
fn login(port: u16, token: &str, user: &KeyPair) -> RawConn {
    let mut conn = connect_jwt(port, token, user);
    let lines = conn.ping_pong();
    assert!(
        lines.iter().all(|l| l.starts_with(b"INFO ")),
        "login refused: {:?}",
        lines.iter().map(|l| show(l)).collect::<Vec<_>>()
    );
    conn
}

fn connect_jwt(port: u16, token: &str, user: &KeyPair) -> RawConn {
    let mut conn = RawConn::connect(port);
    let nonce = conn.info()["nonce"].as_str().expect("nonce").to_string();
    let sig = URL_SAFE_NO_PAD.encode(user.sign(nonce.as_bytes()).expect("sign"));
    conn.send_connect(&format!(
        r#"{{"verbose":false,"pedantic":false,"protocol":1,"jwt":"{token}","sig":"{sig}"}}"#
    ));
    conn
}

/// Asserts a login with `token` is refused with `Authorization Violation`.
#[track_caller]
fn assert_refused(port: u16, token: &str, user: &KeyPair) {
    let mut conn = connect_jwt(port, token, user);
    conn.send(b"PING\r\n");
    let line = next_non_info(&mut conn);
    assert_eq!(show(&line), "-ERR 'Authorization Violation'");
}

/// The `max_payload` a fresh login with `token` is given (the INFO sent after CONNECT).
/// nats-server sends that INFO just after the PONG, ringnats just before it; with no INFO the
/// answer is `None` after a short wait.
fn login_max_payload(port: u16, token: &str, user: &KeyPair) -> Option<i64> {
    let mut conn = connect_jwt(port, token, user);
    let mut lines = conn.ping_pong();
    if !lines.iter().any(|l| l.starts_with(b"INFO ")) {
        lines.extend(conn.next_line_within(Duration::from_millis(500)));
    }
    lines
        .iter()
        .rev()
        .filter_map(|l| l.strip_prefix(b"INFO "))
        .filter_map(|json| serde_json::from_slice::<Value>(json).ok())
        .find_map(|info| info["max_payload"].as_i64())
}

/// The next line that is not an INFO.
fn next_non_info(conn: &mut RawConn) -> Vec<u8> {
    loop {
        let line = conn.read_line();
        if !line.starts_with(b"INFO ") {
            return line;
        }
    }
}

/// Sends a request on `subject` and returns the reply's payload.
fn request(conn: &mut RawConn, subject: &str, payload: &[u8]) -> Vec<u8> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(100);
    let sid = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut bytes = format!(
        "SUB _resolver_test.reply.{sid} {sid}\r\nPUB {subject} _resolver_test.reply.{sid} {}\r\n",
        payload.len()
    )
    .into_bytes();
    bytes.extend_from_slice(payload);
    bytes.extend_from_slice(format!("\r\nUNSUB {sid} 1\r\n").as_bytes());
    conn.send(&bytes);
    loop {
        let line = conn.read_line();
        if line.starts_with(b"MSG ") {
            let len: usize = show(&line)
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .expect("MSG length");
            let mut body = Vec::new();
            while body.len() < len + 2 {
                body.extend(conn.read_line());
                body.extend_from_slice(b"\r\n");
            }
            body.truncate(len);
            return body;
        }
        assert!(line.starts_with(b"INFO "), "unexpected {}", show(&line));
    }
}

/// [`request`], the reply parsed as JSON.
fn request_json(conn: &mut RawConn, subject: &str, payload: &[u8]) -> Value {
    let body = request(conn, subject, payload);
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{e}: {}", show(&body)))
}

/// Asserts `reply` is nats-server's success for `account`.
#[track_caller]
fn assert_updated(reply: &Value, account: &str) {
    assert_eq!(reply["data"]["account"], account, "{reply}");
    assert_eq!(reply["data"]["code"], 200, "{reply}");
    assert_eq!(reply["data"]["message"], "jwt updated", "{reply}");
    assert!(reply["server"]["id"].is_string(), "{reply}");
}

/// Asserts `reply` is an error for `account` whose description starts with `prefix`.
#[track_caller]
fn assert_error(reply: &Value, account: &str, prefix: &str) {
    assert_eq!(reply["error"]["account"], account, "{reply}");
    assert_eq!(reply["error"]["code"], 500, "{reply}");
    let description = reply["error"]["description"].as_str().unwrap_or("");
    assert!(description.starts_with(prefix), "{reply}");
    assert!(reply.get("data").is_none(), "{reply}");
}

/// Reads lines until the server closes; returns the `-ERR` texts seen (INFO, MSG skipped).
fn errors_until_closed(conn: &mut RawConn) -> Vec<String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut errors = Vec::new();
    loop {
        match conn.try_read_line(deadline) {
            Ok(line) if line.starts_with(b"-ERR ") => errors.push(show(&line)),
            Ok(_) => {}
            Err(ReadEnd::Closed(_)) => return errors,
            Err(ReadEnd::Timeout) => panic!("still open; errors so far {errors:?}"),
        }
    }
}

/// Whether the connection is still open: a PING gets a PONG (INFO and MSG lines before it are
/// skipped), or the server closes it (an `-ERR` first is fine).
fn is_open(conn: &mut RawConn) -> bool {
    probe(conn).0
}

/// [`is_open`], with the `-ERR` texts read on the way.
fn probe(conn: &mut RawConn) -> (bool, Vec<String>) {
    let mut errors = Vec::new();
    if conn.send_lossy(b"PING\r\n").is_err() {
        return (false, errors);
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match conn.try_read_line(deadline) {
            Ok(line) if line == b"PONG" => return (true, errors),
            Ok(line) if line.starts_with(b"-ERR ") => errors.push(show(&line)),
            Ok(_) => {}
            Err(ReadEnd::Closed(_)) => return (false, errors),
            Err(ReadEnd::Timeout) => panic!("neither PONG nor close; errors {errors:?}"),
        }
    }
}

fn start(broker: &Launch, config: &str) -> Server {
    broker.config(config).start()
}

fn stored(dir: &Path, key: &KeyPair) -> Option<String> {
    std::fs::read_to_string(dir.join(format!("{}.jwt", key.public_key())))
        .ok()
        .map(|s| s.trim().to_string())
}

#[test]
fn full_resolver_loads_its_directory_and_stores_the_preloads() {
    for broker in brokers() {
        let fx = Fixture::new();
        let dir = fx.jwt_dir("jwt");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let a_jwt = fx.account(&fx.a, "A", 0, |_| {});
        std::fs::write(dir.join(format!("{}.jwt", fx.a.public_key())), &a_jwt).expect("write");
        let server = start(&broker, &fx.full_config(&dir, ""));
        let (user, token) = fx.user(&fx.a, |_| {});
        login(server.port(), &token, &user);
        assert_eq!(stored(&dir, &fx.sys).as_deref(), Some(fx.sys_jwt.as_str()));
        // An account that has no file is unknown.
        let b = KeyPair::new_account();
        let (user, token) = fx.user(&b, |_| {});
        assert_refused(server.port(), &token, &user);
        // The directory is created when missing.
        let fresh = fx.jwt_dir("created");
        let _second = start(&broker, &fx.full_config(&fresh, ""));
        assert_eq!(
            stored(&fresh, &fx.sys).as_deref(),
            Some(fx.sys_jwt.as_str())
        );
    }
}

#[test]
fn pushed_updates_apply_to_live_and_new_connections() {
    for broker in brokers() {
        let fx = Fixture::new();
        let dir = fx.jwt_dir("jwt");
        let server = start(&broker, &fx.full_config(&dir, ""));
        let port = server.port();
        let mut sys = fx.sys_conn(port);
        let a1 = fx.account(&fx.a, "A", 1, |c| c.limits.payload = 100);
        let reply = request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", a1.as_bytes());
        assert_updated(&reply, &fx.a.public_key());
        assert_eq!(stored(&dir, &fx.a).as_deref(), Some(a1.as_str()));
        let (user, token) = fx.user(&fx.a, |_| {});
        let mut live = login(port, &token, &user);
        live.send(b"SUB s.> 1\r\n");
        assert!(is_open(&mut live));
        assert_eq!(login_max_payload(port, &token, &user), Some(100));
        // A connection still to send its CONNECT when an update lands is not closed by it.
        let mut pending = RawConn::connect(port);
        let nonce = pending.info()["nonce"].as_str().expect("nonce").to_string();
        // Lower the payload limit through the per-account subject.
        let a2 = fx.account(&fx.a, "A", 2, |c| c.limits.payload = 50);
        let subject = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", fx.a.public_key());
        assert_updated(
            &request_json(&mut sys, &subject, a2.as_bytes()),
            &fx.a.public_key(),
        );
        assert_eq!(stored(&dir, &fx.a).as_deref(), Some(a2.as_str()));
        let sig = URL_SAFE_NO_PAD.encode(user.sign(nonce.as_bytes()).expect("sign"));
        pending.send_connect(&format!(
            r#"{{"verbose":false,"pedantic":false,"protocol":1,"jwt":"{token}","sig":"{sig}"}}"#
        ));
        assert_eq!(probe(&mut pending), (true, vec![]));
        // The live connection keeps its subscription.
        let (other_user, other_token) = fx.user(&fx.a, |_| {});
        let mut publisher = login(port, &other_token, &other_user);
        assert_eq!(login_max_payload(port, &other_token, &other_user), Some(50));
        publisher.send(b"PUB s.x 2\r\nhi\r\nPING\r\n");
        assert_eq!(show(&next_non_info(&mut publisher)), "PONG");
        let msg = loop {
            let line = live.read_line();
            if line.starts_with(b"MSG ") {
                break line;
            }
        };
        assert_eq!(show(&msg), "MSG s.x 1 2");
        assert_eq!(live.read_line(), b"hi");
        // The older subject works too, and the new limit applies to the live connection.
        let a3 = fx.account(&fx.a, "A", 3, |c| c.limits.payload = 40);
        let subject = format!("$SYS.ACCOUNT.{}.CLAIMS.UPDATE", fx.a.public_key());
        assert_updated(
            &request_json(&mut sys, &subject, a3.as_bytes()),
            &fx.a.public_key(),
        );
        live.send(format!("PUB s.y 45\r\n{}\r\n", "x".repeat(45)).as_bytes());
        assert_eq!(
            errors_until_closed(&mut live),
            vec!["-ERR 'Maximum Payload Violation'"]
        );
        // Lookup and list.
        let lookup = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.LOOKUP", fx.a.public_key());
        assert_eq!(request(&mut sys, &lookup, b""), a3.as_bytes());
        let list = request_json(&mut sys, "$SYS.REQ.CLAIMS.LIST", b"");
        let mut keys: Vec<String> = list["data"]
            .as_array()
            .expect("list data")
            .iter()
            .map(|k| k.as_str().expect("key").to_string())
            .collect();
        keys.sort();
        let mut want = vec![fx.a.public_key(), fx.sys.public_key()];
        want.sort();
        assert_eq!(keys, want, "{list}");
    }
}

#[test]
fn refused_pushes_get_the_error_json_and_change_nothing() {
    for broker in brokers() {
        let fx = Fixture::new();
        let dir = fx.jwt_dir("jwt");
        let server = start(&broker, &fx.full_config(&dir, ""));
        let port = server.port();
        let mut sys = fx.sys_conn(port);
        let a1 = fx.account(&fx.a, "A", 1, |c| c.limits.payload = 2000);
        assert_updated(
            &request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", a1.as_bytes()),
            &fx.a.public_key(),
        );
        let (user, token) = fx.user(&fx.a, |_| {});
        let mut live = login(port, &token, &user);
        // Garbage, and garbage longer than max_control_line.
        for garbage in [b"not a jwt".to_vec(), vec![b'e'; 5000]] {
            let reply = request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", &garbage);
            assert_error(&reply, "n/a", "jwt update resulted in error - ");
        }
        // Claims with wrong types, correctly signed.
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
        let body = URL_SAFE_NO_PAD.encode(
            format!(
                r#"{{"iss":"{}","sub":"{}","iat":"soon","nats":{{"type":"account","version":2,"limits":{{"conn":"many"}}}}}}"#,
                fx.op.public_key(),
                fx.a.public_key()
            )
            .as_bytes(),
        );
        let signed = format!("{header}.{body}");
        let sig = URL_SAFE_NO_PAD.encode(fx.op.sign(signed.as_bytes()).expect("sign"));
        let reply = request_json(
            &mut sys,
            "$SYS.REQ.CLAIMS.UPDATE",
            format!("{signed}.{sig}").as_bytes(),
        );
        assert_error(&reply, "n/a", "jwt update resulted in error - ");
        // A valid JWT on another account's subject.
        let other = KeyPair::new_account();
        let a2 = fx.account(&fx.a, "A", 2, |c| c.limits.payload = 10);
        let subject = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", other.public_key());
        let reply = request_json(&mut sys, &subject, a2.as_bytes());
        assert_error(
            &reply,
            &other.public_key(),
            "jwt update resulted in error - subject does not match jwt content",
        );
        // Claims nats-io/jwt validation refuses: more exports than the limit allows.
        let invalid = fx.account(&fx.a, "A", 3, |c| {
            c.limits.exports = 0;
            c.exports = vec![Export {
                subject: "svc.x".into(),
                kind: Some(ExportType::Service),
                ..Export::default()
            }];
        });
        let reply = request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", invalid.as_bytes());
        assert_error(
            &reply,
            &fx.a.public_key(),
            "jwt validation failed - validation errors",
        );
        // A user of account A pushing gets nothing and changes nothing.
        let mut pusher = login(port, &token, &user);
        pusher.send(format!("PUB $SYS.REQ.CLAIMS.UPDATE _x {}\r\n{a2}\r\n", a2.len()).as_bytes());
        assert_eq!(probe(&mut pusher), (true, vec![]));
        // Nothing changed.
        assert_eq!(stored(&dir, &fx.a).as_deref(), Some(a1.as_str()));
        assert_eq!(login_max_payload(port, &token, &user), Some(2000));
        assert!(is_open(&mut live));
        let log = server.output();
        assert!(!log.contains(&a1[40..80]), "a JWT in the log:\n{log}");
    }
}

#[test]
fn older_and_untrusted_pushes_are_refused_by_ringnats() {
    // nats-server 2.9.10's full resolver stores both and answers "jwt updated" (an untrusted
    // one then fails to apply, only logged): ringnats refuses them before anything changes.
    let broker = Launch::ringnats();
    let fx = Fixture::new();
    let dir = fx.jwt_dir("jwt");
    let server = start(&broker, &fx.full_config(&dir, ""));
    let mut sys = fx.sys_conn(server.port());
    let a5 = fx.account(&fx.a, "A", 5, |c| c.limits.payload = 100);
    assert_updated(
        &request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", a5.as_bytes()),
        &fx.a.public_key(),
    );
    // The same JWT again is fine and changes nothing.
    assert_updated(
        &request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", a5.as_bytes()),
        &fx.a.public_key(),
    );
    let older = fx.account(&fx.a, "A", 4, |c| c.limits.payload = 10);
    let reply = request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", older.as_bytes());
    assert_error(
        &reply,
        &fx.a.public_key(),
        "jwt update resulted in error - jwt is older than the stored one",
    );
    let stranger = KeyPair::new_operator();
    let untrusted = fx.account_signed_by(&stranger, &fx.a, "A", 6, |c| c.limits.payload = 10);
    let reply = request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", untrusted.as_bytes());
    assert_error(
        &reply,
        &fx.a.public_key(),
        "jwt update resulted in error - account validation failed",
    );
    assert_eq!(stored(&dir, &fx.a).as_deref(), Some(a5.as_str()));
    let (user, token) = fx.user(&fx.a, |_| {});
    assert_eq!(login_max_payload(server.port(), &token, &user), Some(100));
}

#[test]
fn memory_resolver_updates_the_accounts_it_has() {
    for broker in brokers() {
        let fx = Fixture::new();
        let a0 = fx.account(&fx.a, "A", 0, |c| c.limits.payload = 100);
        let server = start(&broker, &fx.memory_config(&[(&fx.a, &a0)]));
        let port = server.port();
        // A user of A is connected, so nats-server has loaded the account.
        let (user, token) = fx.user(&fx.a, |_| {});
        let mut live = login(port, &token, &user);
        let mut sys = fx.sys_conn(port);
        let a1 = fx.account(&fx.a, "A", 1, |c| c.limits.payload = 50);
        let subject = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", fx.a.public_key());
        assert_updated(
            &request_json(&mut sys, &subject, a1.as_bytes()),
            &fx.a.public_key(),
        );
        assert_eq!(login_max_payload(port, &token, &user), Some(50));
        assert!(is_open(&mut live));
        // Signed by a key the server does not trust.
        let stranger = KeyPair::new_operator();
        let untrusted = fx.account_signed_by(&stranger, &fx.a, "A", 2, |_| {});
        let reply = request_json(&mut sys, &subject, untrusted.as_bytes());
        assert_error(
            &reply,
            &fx.a.public_key(),
            "jwt update resulted in error - account validation failed",
        );
        assert_eq!(login_max_payload(port, &token, &user), Some(50));
        // An account the server does not have is skipped.
        let b = KeyPair::new_account();
        let b_jwt = fx.account(&b, "B", 1, |_| {});
        let subject = format!("$SYS.REQ.ACCOUNT.{}.CLAIMS.UPDATE", b.public_key());
        let reply = request_json(&mut sys, &subject, b_jwt.as_bytes());
        assert_eq!(reply["data"]["message"], "jwt update skipped", "{reply}");
        assert_eq!(reply["data"]["code"], 200, "{reply}");
        let (user, token) = fx.user(&b, |_| {});
        assert_refused(port, &token, &user);
    }
}

#[test]
fn a_lowered_connection_limit_closes_the_extra_connections() {
    for broker in brokers() {
        let fx = Fixture::new();
        let dir = fx.jwt_dir("jwt");
        let server = start(&broker, &fx.full_config(&dir, ""));
        let port = server.port();
        let mut sys = fx.sys_conn(port);
        let a1 = fx.account(&fx.a, "A", 1, |c| c.limits.conn = 3);
        assert_updated(
            &request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", a1.as_bytes()),
            &fx.a.public_key(),
        );
        let (user, token) = fx.user(&fx.a, |_| {});
        let mut live: Vec<RawConn> = (0..3).map(|_| login(port, &token, &user)).collect();
        let a2 = fx.account(&fx.a, "A", 2, |c| c.limits.conn = 1);
        assert_updated(
            &request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", a2.as_bytes()),
            &fx.a.public_key(),
        );
        let mut open = 0;
        for conn in &mut live {
            match probe(conn) {
                (true, errors) => {
                    assert!(errors.is_empty(), "{errors:?}");
                    open += 1;
                }
                (false, errors) => assert_eq!(
                    errors,
                    vec!["-ERR 'maximum account active connections exceeded'"]
                ),
            }
        }
        assert_eq!(open, 1, "{}", broker.name());
        let mut extra = connect_jwt(port, &token, &user);
        extra.send(b"PING\r\n");
        assert_eq!(
            show(&next_non_info(&mut extra)),
            "-ERR 'maximum account active connections exceeded'"
        );
    }
}

#[test]
fn a_revocation_pushed_closes_the_revoked_user() {
    for broker in brokers() {
        let fx = Fixture::new();
        let dir = fx.jwt_dir("jwt");
        let server = start(&broker, &fx.full_config(&dir, ""));
        let port = server.port();
        let mut sys = fx.sys_conn(port);
        let a1 = fx.account(&fx.a, "A", 1, |_| {});
        assert_updated(
            &request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", a1.as_bytes()),
            &fx.a.public_key(),
        );
        let (revoked, revoked_token) = fx.user(&fx.a, |_| {});
        let (kept, kept_token) = fx.user(&fx.a, |_| {});
        let mut revoked_conn = login(port, &revoked_token, &revoked);
        let mut kept_conn = login(port, &kept_token, &kept);
        let at = encode::now_unix() + 5;
        let a2 = fx.account(&fx.a, "A", 2, |c| {
            c.revocations.insert(revoked.public_key(), at);
        });
        assert_updated(
            &request_json(&mut sys, "$SYS.REQ.CLAIMS.UPDATE", a2.as_bytes()),
            &fx.a.public_key(),
        );
        assert_eq!(
            errors_until_closed(&mut revoked_conn),
            vec!["-ERR 'User Authentication Revoked'"]
        );
        assert!(is_open(&mut kept_conn));
        assert_refused(port, &revoked_token, &revoked);
    }
}

#[test]
fn delete_requests_need_allow_delete_and_the_operator() {
    for broker in brokers() {
        let fx = Fixture::new();
        let dir = fx.jwt_dir("jwt");
        let a1 = fx.account(&fx.a, "A", 1, |_| {});
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join(format!("{}.jwt", fx.a.public_key())), &a1).expect("write");
        let delete = |signer: &KeyPair, accounts: &[String]| {
            let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
            let body = serde_json::json!({
                "iat": encode::now_unix(),
                "iss": signer.public_key(),
                "sub": signer.public_key(),
                "nats": {"accounts": accounts},
            });
            let body = URL_SAFE_NO_PAD.encode(body.to_string().as_bytes());
            let signed = format!("{header}.{body}");
            let sig = URL_SAFE_NO_PAD.encode(signer.sign(signed.as_bytes()).expect("sign"));
            format!("{signed}.{sig}")
        };
        let accounts = vec![fx.a.public_key()];
        // Without allow_delete.
        {
            let server = start(&broker, &fx.full_config(&dir, ""));
            let mut sys = fx.sys_conn(server.port());
            let reply = request_json(
                &mut sys,
                "$SYS.REQ.CLAIMS.DELETE",
                delete(&fx.op, &accounts).as_bytes(),
            );
            assert_eq!(
                reply["error"]["description"],
                format!(
                    "delete accounts request by {} failed - delete must be enabled in server config",
                    fx.op.public_key()
                ),
                "{reply}"
            );
            assert_eq!(reply["error"]["code"], 500, "{reply}");
            assert!(stored(&dir, &fx.a).is_some());
        }
        let server = start(&broker, &fx.full_config(&dir, "  allow_delete: true\n"));
        let port = server.port();
        let (user, token) = fx.user(&fx.a, |_| {});
        let mut live = login(port, &token, &user);
        let mut sys = fx.sys_conn(port);
        // Signed by someone else than the operator.
        let stranger = KeyPair::new_operator();
        let reply = request_json(
            &mut sys,
            "$SYS.REQ.CLAIMS.DELETE",
            delete(&stranger, &accounts).as_bytes(),
        );
        assert!(
            reply["error"]["description"]
                .as_str()
                .is_some_and(|d| d.ends_with("failed - not trusted")),
            "{reply}"
        );
        // The system account may not be deleted.
        let reply = request_json(
            &mut sys,
            "$SYS.REQ.CLAIMS.DELETE",
            delete(&fx.op, &[fx.sys.public_key()]).as_bytes(),
        );
        assert!(
            reply["error"]["description"]
                .as_str()
                .is_some_and(|d| d.ends_with("failed - not allowed to delete system account")),
            "{reply}"
        );
        let reply = request_json(
            &mut sys,
            "$SYS.REQ.CLAIMS.DELETE",
            delete(&fx.op, &accounts).as_bytes(),
        );
        assert_eq!(reply["data"]["code"], 200, "{reply}");
        assert_eq!(reply["data"]["message"], "deleted 1 accounts", "{reply}");
        assert!(stored(&dir, &fx.a).is_none());
        assert!(
            dir.join(format!("{}.jwt.deleted", fx.a.public_key()))
                .is_file()
        );
        assert_eq!(
            errors_until_closed(&mut live),
            vec!["-ERR 'Account Authentication Expired'"]
        );
        assert_refused(port, &token, &user);
    }
}

#[test]
fn an_edited_jwt_file_is_noticed_by_ringnats() {
    // nats-server 2.9.10 does not notice file changes (spec jwt.md §8): ringnats only.
    let broker = Launch::ringnats();
    let fx = Fixture::new();
    let dir = fx.jwt_dir("jwt");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let a1 = fx.account(&fx.a, "A", 1, |c| c.limits.payload = 100);
    let file = dir.join(format!("{}.jwt", fx.a.public_key()));
    std::fs::write(&file, &a1).expect("write");
    let server = start(&broker, &fx.full_config(&dir, "  interval: \"200ms\"\n"));
    let port = server.port();
    let (user, token) = fx.user(&fx.a, |_| {});
    let mut live = login(port, &token, &user);
    live.send(b"SUB s.> 1\r\n");
    assert!(is_open(&mut live));
    // An editor's newline is fine.
    let a2 = fx.account(&fx.a, "A", 2, |c| c.limits.payload = 50);
    std::fs::write(&file, format!("{a2}\n")).expect("rewrite");
    let deadline = Instant::now() + TIMEOUT;
    while login_max_payload(port, &token, &user) != Some(50) {
        assert!(Instant::now() < deadline, "the edited file was not applied");
        // The poll runs on the server's clock; there is no event to wait on from here.
        std::thread::sleep(Duration::from_millis(50));
    }
    // The live connection kept its session and has the new limit.
    let mut publisher = login(port, &token, &user);
    publisher.send(b"PUB s.x 2\r\nhi\r\nPING\r\n");
    assert_eq!(show(&next_non_info(&mut publisher)), "PONG");
    let msg = loop {
        let line = live.read_line();
        if line.starts_with(b"MSG ") {
            break line;
        }
    };
    assert_eq!(show(&msg), "MSG s.x 1 2");
    // A file of a new account is picked up; a garbage file is refused and logged once.
    let b = KeyPair::new_account();
    std::fs::write(
        dir.join(format!("{}.jwt", b.public_key())),
        fx.account(&b, "B", 1, |_| {}),
    )
    .expect("write b");
    let c = KeyPair::new_account();
    std::fs::write(dir.join(format!("{}.jwt", c.public_key())), "garbage").expect("write c");
    let (b_user, b_token) = fx.user(&b, |_| {});
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let mut conn = connect_jwt(port, &b_token, &b_user);
        if is_open(&mut conn) && {
            conn.send(b"PING\r\n");
            next_non_info(&mut conn) == b"PONG"
        } {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new account file was not applied"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    server.wait_output(&format!("{}.jwt not applied", c.public_key()), TIMEOUT);
    // An older JWT written to the file is refused.
    std::fs::write(&file, fx.account(&fx.a, "A", 0, |c| c.limits.payload = 10)).expect("older");
    server.wait_output(&format!("{}.jwt not applied", fx.a.public_key()), TIMEOUT);
    assert_eq!(login_max_payload(port, &token, &user), Some(50));
}

/// What one broker did with the "Done when" files.
#[derive(Debug, PartialEq)]
struct DoneWhen {
    push: Value,
    received: Vec<u8>,
    denied: Vec<String>,
    wrong_creds: bool,
    unknown_account: bool,
}

#[tokio::test]
async fn nsc_shaped_config_and_creds_work_as_on_nats_server() {
    let fx = Fixture::new();
    let a_jwt = fx.account(&fx.a, "A", 1, |c| {
        c.default_permissions.publish = Permission {
            allow: vec![],
            deny: vec!["forbidden.>".into()],
        };
    });
    let (user, token) = fx.user(&fx.a, |c| {
        c.limits.permissions.publish = Permission {
            allow: vec!["app.>".into(), "_INBOX.>".into()],
            deny: vec![],
        };
    });
    let user_creds = fx.creds(&user, &token);
    let (sys_user, sys_token) = fx.user(&fx.sys, |_| {});
    let sys_creds = fx.creds(&sys_user, &sys_token);
    // The user's JWT with another user's seed.
    let wrong_creds = fx.creds(&KeyPair::new_user(), &token);
    std::fs::write(
        &wrong_creds,
        creds::format(&token, &KeyPair::new_user().seed().expect("seed")),
    )
    .expect("write");
    let b = KeyPair::new_account();
    let (b_user, b_token) = fx.user(&b, |_| {});
    let b_creds = fx.creds(&b_user, &b_token);
    let mut outcomes = Vec::new();
    for broker in brokers() {
        let dir = fx.jwt_dir(&format!("jwt-{}", outcomes.len()));
        // `nsc generate config --nats-resolver`, with an absolute `dir`.
        let config = format!(
            "# Operator named OP\noperator: {op}\n# System Account named SYS\nsystem_account: {sys}\n\n\
             # configuration of the nats based resolver\nresolver {{\n    type: full\n    \
             # Directory in which the account jwt will be stored\n    dir: '{dir}'\n    \
             # In order to support jwt deletion, set to true\n    allow_delete: false\n    \
             # Interval at which a nats-server with a nats based account resolver will compare\n    \
             interval: \"2m\"\n    # Timeout for lookup requests in case an account does not exist locally.\n    \
             timeout: \"1.9s\"\n}}\n\n\
             # Preload the nats based resolver with the system account jwt.\n\
             resolver_preload: {{\n\t{sys}: {sys_jwt},\n}}\n",
            op = fx.op_jwt,
            sys = fx.sys.public_key(),
            dir = dir.display(),
            sys_jwt = fx.sys_jwt,
        );
        let server = start(&broker, &config);
        let url = common::url_of(server.port());
        // `nsc push`: a request on $SYS.REQ.CLAIMS.UPDATE with the system user's creds.
        let sys_opts = async_nats::ConnectOptions::with_credentials_file(&sys_creds)
            .await
            .expect("sys creds");
        let sys = common::try_connect_url(&url, sys_opts)
            .await
            .expect("sys connects");
        let reply = tokio::time::timeout(
            TIMEOUT,
            sys.request("$SYS.REQ.CLAIMS.UPDATE", a_jwt.clone().into()),
        )
        .await
        .expect("push answered in time")
        .expect("push answered");
        let mut push: Value = serde_json::from_slice(&reply.payload).expect("push reply");
        push["server"] = Value::Null;
        let opts = async_nats::ConnectOptions::with_credentials_file(&user_creds)
            .await
            .expect("creds");
        let nats = common::Nats::try_connect_url(&url, opts)
            .await
            .expect("connects");
        let mut sub = nats.subscribe("app.>").await.expect("subscribe");
        nats.flush().await.expect("flush");
        nats.publish("app.x", "hello".into())
            .await
            .expect("publish");
        let received = common::next_msg(&mut sub).await.payload.to_vec();
        nats.publish("other.x", "no".into()).await.expect("publish");
        nats.publish("forbidden.x", "no".into())
            .await
            .expect("publish");
        let deadline = Instant::now() + TIMEOUT;
        while nats.server_errors().len() < 2 {
            assert!(Instant::now() < deadline, "{:?}", nats.server_errors());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let wrong = async_nats::ConnectOptions::with_credentials_file(&wrong_creds)
            .await
            .expect("creds")
            .max_reconnects(Some(0));
        let wrong_creds = common::try_connect_url(&url, wrong).await.is_err();
        let unknown = async_nats::ConnectOptions::with_credentials_file(&b_creds)
            .await
            .expect("creds")
            .max_reconnects(Some(0));
        let unknown_account = common::try_connect_url(&url, unknown).await.is_err();
        outcomes.push(DoneWhen {
            push,
            received,
            denied: nats.server_errors(),
            wrong_creds,
            unknown_account,
        });
        assert_eq!(stored(&dir, &fx.a).as_deref(), Some(a_jwt.as_str()));
    }
    let ours = &outcomes[0];
    assert_eq!(
        ours.push,
        serde_json::json!({"data": {"account": fx.a.public_key(), "code": 200,
            "message": "jwt updated"}, "server": null})
    );
    assert_eq!(ours.received, b"hello");
    assert_eq!(ours.denied.len(), 2, "{:?}", ours.denied);
    assert!(
        ours.denied[0].contains("Permissions Violation for Publish to \"other.x\""),
        "{:?}",
        ours.denied
    );
    assert!(
        ours.denied[1].contains("Permissions Violation for Publish to \"forbidden.x\""),
        "{:?}",
        ours.denied
    );
    assert!(ours.wrong_creds);
    assert!(ours.unknown_account);
    if let Some(theirs) = outcomes.get(1) {
        assert_eq!(ours, theirs, "ringnats and nats-server differ");
    }
}
