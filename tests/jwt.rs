//! JWT operator mode end to end: an operator, accounts and users made at test time with
//! `ringnats jwt`, a memory-resolver config, and clients with `.creds` files.
//!
//! Checked: a valid chain connects (async-nats with a `.creds` file) and gets its JWT's
//! permissions; a user issued by an account signing key and one issued by a scoped signing key
//! connect; a wrong nonce signature, an unknown account, an unknown issuer, an expired or
//! not-yet-valid user, a revoked user and a wrong `src` each get `-ERR 'Authorization
//! Violation'` and a close; account and user limits (payload advertised by a new INFO, subs);
//! a user whose JWT expires is closed with `User Authentication Expired`; the JWTs of
//! `spec/vectors.json` are accepted. Every test runs the same config and creds against
//! nats-server 2.9.10 with `RINGNATS_TEST_SERVER=/usr/sbin/nats-server`, which is how the
//! expected behaviour was checked. Guards issue 10 (operator mode).

mod common;

use std::path::{Path, PathBuf};

use common::{Launch, Nats, RawConn, Server, TIMEOUT, scratch_dir};
use nkeys::KeyPair;

/// Runs `ringnats <args>` and returns its standard output, trimmed.
fn ringnats(args: &[&str]) -> String {
    let out = Launch::ringnats().run(args, b"");
    assert!(out.status.success(), "ringnats {args:?}: {}", out.stderr);
    out.stdout.trim().to_string()
}

/// The seed in `ringnats keygen` output (`… private key: S…`).
fn seed_of(keygen_output: &str) -> &str {
    keygen_output
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .find(|w| w.starts_with('S'))
        .expect("a seed in keygen output")
}

/// A key pair whose seed is in a file (as `ringnats jwt --signer` reads it).
struct Key {
    pair: KeyPair,
    seed_file: PathBuf,
}

impl Key {
    fn public(&self) -> String {
        self.pair.public_key()
    }

    fn path(&self) -> &str {
        self.seed_file.to_str().expect("utf-8 path")
    }
}

/// One operator with a system account and account A (with a signing key), in a directory.
struct Setup {
    dir: PathBuf,
    operator: Key,
    account: Key,
    account_signer: Key,
    account_jwt: String,
    system_jwt: String,
    operator_jwt: String,
}

impl Setup {
    /// Account A gets `account_flags` (limits, revocations).
    fn new(account_flags: &[&str]) -> Setup {
        let dir = scratch_dir();
        let key = |kind: &str, name: &str| {
            let text = ringnats(&["keygen", kind]);
            let seed_file = dir.join(name);
            std::fs::write(&seed_file, &text).expect("write seed");
            let seed = seed_of(&text);
            Key {
                pair: KeyPair::from_seed(seed).expect("seed"),
                seed_file,
            }
        };
        let operator = key("operator", "op.nk");
        let system = key("account", "sys.nk");
        let account = key("account", "a.nk");
        let account_signer = key("account", "a_sk.nk");
        let operator_jwt = ringnats(&[
            "jwt",
            "operator",
            "--signer",
            operator.path(),
            "--name",
            "OP",
            "--system-account",
            &system.pair.public_key(),
        ]);
        let system_jwt = ringnats(&[
            "jwt",
            "account",
            "--signer",
            operator.path(),
            "--name",
            "SYS",
            "--subject",
            &system.pair.public_key(),
        ]);
        let sk = account_signer.public();
        let subject = account.public();
        let mut args = vec![
            "jwt",
            "account",
            "--signer",
            operator.path(),
            "--name",
            "A",
            "--subject",
            &subject,
            "--signing-key",
            &sk,
        ];
        args.extend_from_slice(account_flags);
        let account_jwt = ringnats(&args);
        Setup {
            dir,
            operator,
            account,
            account_signer,
            account_jwt,
            system_jwt,
            operator_jwt,
        }
    }

    /// The memory-resolver config block, written by `ringnats jwt config`.
    fn config(&self) -> String {
        let write = |name: &str, text: &str| {
            let path = self.dir.join(name);
            std::fs::write(&path, text).expect("write jwt");
            path.to_str().expect("utf-8").to_string()
        };
        let op = write("op.jwt", &self.operator_jwt);
        let sys = write("sys.jwt", &self.system_jwt);
        let acc = write("a.jwt", &self.account_jwt);
        ringnats(&[
            "jwt",
            "config",
            "--operator",
            &op,
            "--account",
            &sys,
            "--account",
            &acc,
        ])
    }

    fn start(&self) -> Server {
        Server::start(&self.config())
    }

    /// A new user key and its JWT signed by `signer` with `flags`; returns (key, jwt).
    fn user(&self, signer: &Key, flags: &[&str]) -> (Key, String) {
        let text = ringnats(&["keygen", "user"]);
        let seed = seed_of(&text).to_string();
        let pair = KeyPair::from_seed(&seed).expect("seed");
        let seed_file = self.dir.join(format!("{}.nk", pair.public_key()));
        std::fs::write(&seed_file, &text).expect("write seed");
        let subject = pair.public_key();
        let mut args = vec![
            "jwt",
            "user",
            "--signer",
            signer.path(),
            "--name",
            "u",
            "--subject",
            &subject,
        ];
        args.extend_from_slice(flags);
        let jwt = ringnats(&args);
        (Key { pair, seed_file }, jwt)
    }

    /// A `.creds` file for `user` and `jwt`, written by `ringnats jwt creds`.
    fn creds(&self, user: &Key, jwt: &str) -> PathBuf {
        let jwt_file = self.dir.join(format!("{}.jwt", user.public()));
        std::fs::write(&jwt_file, jwt).expect("write jwt");
        let text = ringnats(&[
            "jwt",
            "creds",
            "--jwt",
            jwt_file.to_str().expect("utf-8"),
            "--seed",
            user.path(),
        ]);
        let path = self.dir.join(format!("{}.creds", user.public()));
        std::fs::write(&path, text + "\n").expect("write creds");
        path
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[track_caller]
fn assert_refused(server: &Server, jwt: &str, signer: &KeyPair) {
    RawConn::connect_jwt(server.port(), jwt, signer).expect_refused();
}

async fn connect_creds(server: &Server, creds: &Path) -> Nats {
    let opts = async_nats::ConnectOptions::with_credentials_file(creds)
        .await
        .expect("read creds");
    Nats::connect_with(server, opts).await
}

#[tokio::test]
async fn valid_chain_connects_with_a_creds_file_and_gets_its_permissions() {
    let setup = Setup::new(&[]);
    let server = setup.start();
    // `_itest.>` for the harness's round trips.
    let (user, jwt) = setup.user(
        &setup.account,
        &[
            "--pub-allow",
            "a.>",
            "--pub-allow",
            "_INBOX.>",
            "--pub-allow",
            "_itest.>",
        ],
    );
    let creds = setup.creds(&user, &jwt);
    let nats = connect_creds(&server, &creds).await;
    nats.round_trip().await;
    nats.publish("b.denied", "x".into()).await.expect("publish");
    nats.round_trip().await;
    let errors = nats.server_errors();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("Permissions Violation for Publish to \"b.denied\"")),
        "{errors:?}"
    );
    assert_eq!(nats.disconnects(), 0);
}

#[tokio::test]
async fn account_signing_key_user_connects() {
    let setup = Setup::new(&[]);
    let server = setup.start();
    let acc = setup.account.public();
    let (user, jwt) = setup.user(&setup.account_signer, &["--issuer-account", &acc]);
    let creds = setup.creds(&user, &jwt);
    let nats = connect_creds(&server, &creds).await;
    nats.round_trip().await;
    // Without issuer_account the same signer names no known account.
    let (user, jwt) = setup.user(&setup.account_signer, &[]);
    assert_refused(&server, &jwt, &user.pair);
}

#[test]
fn scoped_signing_key_applies_its_template() {
    use ringnats::auth::jwt::claims::Permission;
    use ringnats::auth::jwt::{self, SigningKey, UserPermissionLimits, UserScope, encode};
    let mut setup = Setup::new(&[]);
    // Re-sign account A with a scoped key (the CLI writes plain keys only).
    let (mut data, mut claims) = jwt::decode_account(&setup.account_jwt).expect("account");
    let mut template = UserPermissionLimits::unlimited();
    template.permissions.publish = Permission {
        allow: vec!["scoped.{{name()}}".into()],
        deny: vec![],
    };
    claims.signing_keys = vec![SigningKey::Scoped(Box::new(UserScope {
        kind: "user_scope".into(),
        key: setup.account_signer.public(),
        role: "r".into(),
        template,
        description: String::new(),
    }))];
    data.iat = 0;
    setup.account_jwt = encode::account(data, claims, &setup.operator.pair).expect("encode");
    let server = setup.start();
    let acc = setup.account.public();
    let (user, token) = setup.user(
        &setup.account_signer,
        &["--issuer-account", &acc, "--scoped"],
    );
    let mut conn = RawConn::connect_jwt(server.port(), &token, &user.pair);
    conn.send(b"PUB scoped.u 1\r\nx\r\nPUB other 1\r\nx\r\nPING\r\n");
    conn.expect_err("Permissions Violation for Publish to \"other\"");
    conn.expect_line(b"PONG");
    // A user of a scoped key may not carry its own permissions.
    let (user, token) = setup.user(
        &setup.account_signer,
        &["--issuer-account", &acc, "--pub-allow", "x"],
    );
    assert_refused(&server, &token, &user.pair);
}

#[test]
fn bad_chains_get_authorization_violation() {
    let setup = Setup::new(&[]);
    let server = setup.start();
    // Wrong nonce signature.
    let (_, jwt) = setup.user(&setup.account, &[]);
    assert_refused(&server, &jwt, &KeyPair::new_user());
    // Unknown account: signed by an account the resolver does not have.
    let stranger = Key {
        pair: KeyPair::new_account(),
        seed_file: setup.dir.join("stranger.nk"),
    };
    std::fs::write(&stranger.seed_file, stranger.pair.seed().expect("seed")).expect("write");
    let (user, jwt) = setup.user(&stranger, &[]);
    assert_refused(&server, &jwt, &user.pair);
    // Unknown issuer: claims account A but is signed by a key A does not list.
    let acc = setup.account.public();
    let (user, jwt) = setup.user(&stranger, &["--issuer-account", &acc]);
    assert_refused(&server, &jwt, &user.pair);
    // Expired, not yet valid, wrong src.
    let (user, jwt) = setup.user(&setup.account, &["--expires-in", "-10"]);
    assert_refused(&server, &jwt, &user.pair);
    let (user, jwt) = setup.user(&setup.account, &["--not-before-in", "3600"]);
    assert_refused(&server, &jwt, &user.pair);
    let (user, jwt) = setup.user(&setup.account, &["--src", "10.9.9.0/24"]);
    assert_refused(&server, &jwt, &user.pair);
    // Garbage and a JWT of the wrong type.
    assert_refused(&server, "eyJ0eXAi.garbage.x", &KeyPair::new_user());
    assert_refused(&server, &setup.account_jwt, &setup.account.pair);
    // No JWT at all.
    let mut conn = RawConn::connect(server.port());
    conn.send(b"CONNECT {\"verbose\":false}\r\nPING\r\n");
    conn.expect_err("Authorization Violation");
    // The src that matches is fine.
    let (user, jwt) = setup.user(&setup.account, &["--src", "127.0.0.0/8"]);
    RawConn::connect_jwt(server.port(), &jwt, &user.pair).expect_logged_in();
}

#[test]
fn revoked_users_are_refused() {
    // The account revokes every user issued up to its own creation (`*`).
    let setup = Setup::new(&["--revoke", "*"]);
    let (user, jwt) = setup.user(&setup.account, &[]);
    let server = setup.start();
    // Issued in the same second as the revocation (iat <= revoked-at): revoked.
    let revoked_at = ringnats::auth::jwt::decode_account(&setup.account_jwt)
        .expect("account")
        .1
        .revocations["*"];
    let iat = ringnats::auth::jwt::decode_user(&jwt).expect("user").0.iat;
    if iat <= revoked_at {
        assert_refused(&server, &jwt, &user.pair);
    } else {
        // The user was issued a second later: not revoked, so it must log in.
        RawConn::connect_jwt(server.port(), &jwt, &user.pair).expect_logged_in();
    }
    // A user issued well before the revocation is always revoked.
    let (data, claims) = ringnats::auth::jwt::decode_user(&jwt).expect("user");
    let old = ringnats::auth::jwt::encode::user(
        ringnats::auth::jwt::ClaimsData {
            iat: revoked_at - 100,
            ..data
        },
        claims,
        &setup.account.pair,
    )
    .expect("encode");
    assert_refused(&server, &old, &user.pair);
}

#[test]
fn account_payload_and_user_subs_limits() {
    let setup = Setup::new(&["--payload", "100"]);
    let server = setup.start();
    let (user, jwt) = setup.user(&setup.account, &["--subs", "1"]);
    let mut conn = RawConn::connect_jwt(server.port(), &jwt, &user.pair);
    // A new INFO advertises the account's payload limit.
    let lines = conn.ping_pong();
    let lines = if lines.is_empty() {
        vec![conn.read_line()]
    } else {
        lines
    };
    let info = lines
        .iter()
        .find(|l| l.starts_with(b"INFO "))
        .unwrap_or_else(|| panic!("no INFO: {lines:?}"));
    let info: serde_json::Value = serde_json::from_slice(&info[5..]).expect("INFO JSON");
    assert_eq!(info["max_payload"], 100);
    conn.send(b"SUB a 1\r\nSUB b 2\r\nPING\r\n");
    conn.expect_err("maximum subscriptions exceeded");
    conn.expect_line(b"PONG");
    conn.send(format!("PUB a 101\r\n{}\r\n", "x".repeat(101)).as_bytes());
    conn.expect_err("Maximum Payload Violation");
    conn.expect_closed();
}

#[test]
fn expiry_closes_a_live_connection() {
    let setup = Setup::new(&[]);
    let server = setup.start();
    let (user, jwt) = setup.user(&setup.account, &["--expires-in", "2"]);
    let mut conn = RawConn::connect_jwt(server.port(), &jwt, &user.pair).expect_logged_in();
    // Closed within the harness deadline (5 s) of a 2 s expiry.
    conn.expect_err("User Authentication Expired");
    conn.expect_closed();
}

#[test]
fn vector_jwts_are_accepted() {
    let v: serde_json::Value =
        serde_json::from_str(include_str!("../src/auth/jwt/testdata/vectors.json")).expect("json");
    let s = |k: &str| v[k].as_str().expect("vector").to_string();
    let config = format!(
        "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{}\"\n  {}: \"{}\"\n}}\n",
        s("op_jwt"),
        s("sys_pub"),
        s("sys_pub"),
        s("sys_jwt"),
        s("acc_pub"),
        s("acc_jwt")
    );
    let server = Server::start(&config);
    let u1 = KeyPair::from_seed(&s("u1_seed")).expect("seed");
    let mut conn = RawConn::connect_jwt(server.port(), &s("u1_jwt"), &u1);
    conn.send(b"PUB a.ok 0\r\n\r\nPUB b.no 0\r\n\r\n");
    let lines = conn.ping_pong();
    assert!(
        lines
            .iter()
            .any(|l| l == b"-ERR 'Permissions Violation for Publish to \"b.no\"'"),
        "{lines:?}"
    );
    let u2 = KeyPair::from_seed(&s("u2_seed")).expect("seed");
    RawConn::connect_jwt(server.port(), &s("u2_jwt"), &u2).expect_logged_in();
    assert_refused(&server, &s("u2_noissuer_jwt"), &u2);
    // u3 expired in 2026-11 (its exp is the vectors' iat).
    let u3 = KeyPair::from_seed(&s("u3_seed")).expect("seed");
    if ringnats::auth::jwt::encode::now_unix() > 1796078447 {
        assert_refused(&server, &s("u3_jwt"), &u3);
    }
    // Bearer: no signature needed.
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(&format!(
        r#"{{"verbose":false,"protocol":1,"jwt":"{}"}}"#,
        s("u5_jwt")
    ));
    conn.expect_logged_in();
}

#[test]
fn account_connection_limit() {
    let setup = Setup::new(&["--conn", "1"]);
    let server = setup.start();
    let (user, jwt) = setup.user(&setup.account, &[]);
    let first = RawConn::connect_jwt(server.port(), &jwt, &user.pair).expect_logged_in();
    let mut second = RawConn::connect_jwt(server.port(), &jwt, &user.pair);
    second.send(b"PING\r\n");
    second.expect_err("maximum account active connections exceeded");
    second.expect_closed();
    // Once the first is gone its slot is free again (the server notices the close a moment
    // later: retry until a login works, bounded by the harness deadline).
    drop(first);
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let mut conn = RawConn::connect_jwt(server.port(), &jwt, &user.pair);
        conn.send(b"PING\r\n");
        let logged_in = loop {
            match conn.try_read_line(deadline) {
                Ok(line) if line == b"PONG" => break true,
                Ok(line) if line.starts_with(b"-ERR") => break false,
                Ok(_) => continue,
                Err(end) => panic!("no answer to PING: {end:?}"),
            }
        };
        if logged_in {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
    }
}
