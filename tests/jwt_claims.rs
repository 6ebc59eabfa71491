//! Account and user JWT claims enforced while connected, and user JWTs issued by the signing
//! keys of configured accounts (no operator).
//!
//! Checked, each against ringnats and (with `RINGNATS_TEST_SERVER=/usr/sbin/nats-server`)
//! nats-server 2.9.10 unless noted: an account JWT whose `exp` passes closes its live
//! connections with `Account Authentication Expired`; an account's `subs` bounds each
//! connection (both) and, in ringnats only, the account's total across connections and shards
//! (nats-server counts per connection: the test asserts that difference); `disallow_bearer`
//! refuses bearer users; `wildcards: false` refuses an account with wildcard exports (and
//! leaves wildcard subscriptions alone); `times` are read in `times_location`; exports and
//! imports of account JWTs (stream, service, activation token) route between accounts and
//! nothing else crosses. Hybrid signing keys (`accounts { PROD: { signing_keys: [..] } }`) are
//! ringnats only: nats-server has no such mode. JWTs are made in-process with
//! `ringnats::auth::jwt::encode`. Guards issue 10 (claims enforced).

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Launch, Nats, RawConn, Server, TIMEOUT, scratch_dir};
use nkeys::KeyPair;
use ringnats::auth::jwt::claims::{Export, ExportType, Import, Permission, TimeRange};
use ringnats::auth::jwt::{
    AccountClaims, AccountLimits, ActivationClaims, ClaimsData, OperatorClaims, UserClaims,
    UserPermissionLimits, encode,
};

/// An operator with a system account, and the accounts of one test.
struct Trust {
    operator: KeyPair,
    operator_jwt: String,
    system: KeyPair,
    /// (public key, account JWT) to preload.
    accounts: Vec<(String, String)>,
}

impl Trust {
    fn new() -> Trust {
        let operator = KeyPair::new_operator();
        let system = KeyPair::new_account();
        let operator_jwt = encode::operator(
            ClaimsData {
                sub: operator.public_key(),
                name: "OP".into(),
                ..ClaimsData::default()
            },
            OperatorClaims {
                system_account: system.public_key(),
                ..OperatorClaims::default()
            },
            &operator,
        )
        .expect("operator jwt");
        let mut trust = Trust {
            operator,
            operator_jwt,
            system,
            accounts: Vec::new(),
        };
        let system_key = trust.system.public_key();
        trust.add_account_key(&system_key, "SYS", |_, _| {});
        trust
    }

    /// Adds an account with unlimited limits, then `edit`; returns its key pair.
    fn account(
        &mut self,
        name: &str,
        edit: impl FnOnce(&mut ClaimsData, &mut AccountClaims),
    ) -> KeyPair {
        let pair = KeyPair::new_account();
        self.add_account_key(&pair.public_key(), name, edit);
        pair
    }

    fn add_account_key(
        &mut self,
        key: &str,
        name: &str,
        edit: impl FnOnce(&mut ClaimsData, &mut AccountClaims),
    ) {
        let mut data = ClaimsData {
            sub: key.to_string(),
            name: name.into(),
            ..ClaimsData::default()
        };
        let mut claims = AccountClaims {
            limits: AccountLimits::unlimited(),
            ..AccountClaims::default()
        };
        edit(&mut data, &mut claims);
        let token = encode::account(data, claims, &self.operator).expect("account jwt");
        self.accounts.push((key.to_string(), token));
    }

    fn config(&self) -> String {
        let mut text = format!(
            "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n",
            self.operator_jwt,
            self.system.public_key()
        );
        for (key, token) in &self.accounts {
            text.push_str(&format!("  {key}: \"{token}\"\n"));
        }
        text.push_str("}\n");
        text
    }

    fn start(&self) -> Server {
        Server::start(&self.config())
    }
}

/// A new user and its JWT, issued by `signer` with unlimited limits and then `edit`.
fn user(
    signer: &KeyPair,
    edit: impl FnOnce(&mut ClaimsData, &mut UserClaims),
) -> (KeyPair, String) {
    let pair = KeyPair::new_user();
    let mut data = ClaimsData {
        sub: pair.public_key(),
        name: "u".into(),
        ..ClaimsData::default()
    };
    let mut claims = UserClaims {
        limits: UserPermissionLimits::unlimited(),
        ..UserClaims::default()
    };
    edit(&mut data, &mut claims);
    let token = encode::user(data, claims, signer).expect("user jwt");
    (pair, token)
}

/// Logs in and asserts it worked.
#[track_caller]
fn login(port: u16, jwt: &str, signer: &KeyPair) -> RawConn {
    RawConn::connect_jwt(port, jwt, signer).expect_logged_in()
}

#[track_caller]
fn assert_refused(port: u16, jwt: &str, signer: &KeyPair) {
    RawConn::connect_jwt(port, jwt, signer).expect_refused();
}

fn now_unix() -> i64 {
    encode::now_unix()
}

// ---- account expiry ----------------------------------------------------------------------------

#[test]
fn account_expiry_closes_live_connections_with_account_authentication_expired() {
    let mut trust = Trust::new();
    // Expires 3 s after it is made: time to start the server and log in.
    let acc = trust.account("A", |d, _| d.exp = now_unix() + 3);
    let server = trust.start();
    // The user's own JWT does not expire: the account's expiry is what closes them. Several
    // connections, so that both shards hold some (the kernel spreads them).
    let (u, token) = user(&acc, |_, _| {});
    let mut conns: Vec<RawConn> = (0..4).map(|_| login(server.port(), &token, &u)).collect();
    for conn in &mut conns {
        // Within the harness's read deadline (5 s) of a 3 s expiry.
        conn.expect_err("Account Authentication Expired");
        conn.expect_closed();
    }
    // A user JWT that expires before the account still says so itself.
    let mut trust = Trust::new();
    let acc = trust.account("A", |d, _| d.exp = now_unix() + 60);
    let server = trust.start();
    let (u, token) = user(&acc, |d, _| d.exp = now_unix() + 2);
    let mut conn = login(server.port(), &token, &u);
    conn.expect_err("User Authentication Expired");
    conn.expect_closed();
}

// ---- bad input ----------------------------------------------------------------------------------

/// A token signed by `signer` over a hand-written `payload` (for claims of the wrong types).
fn signed_raw(payload: &serde_json::Value, signer: &KeyPair) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = URL_SAFE_NO_PAD.encode(payload.to_string());
    let signed = format!("{header}.{body}");
    let sig = URL_SAFE_NO_PAD.encode(signer.sign(signed.as_bytes()).expect("sign"));
    format!("{signed}.{sig}")
}

#[test]
fn claims_of_the_wrong_type_get_authorization_violation_and_a_debug_reason() {
    let mut trust = Trust::new();
    let acc = trust.account("A", |_, _| {});
    let server = Launch::under_test()
        .config(&format!("debug: true\n{}", trust.config()))
        .start();
    let u = KeyPair::new_user();
    let claims = |nats: serde_json::Value| {
        serde_json::json!({
            "iat": now_unix(), "iss": acc.public_key(), "sub": u.public_key(), "nats": nats
        })
    };
    let bad = [
        serde_json::json!({"type": "user", "version": 2, "subs": "ten"}),
        serde_json::json!({"type": "user", "version": 2, "times_location": 5,
                           "times": [{"start": "00:00:00", "end": "23:59:59"}]}),
        serde_json::json!({"type": "user", "version": 2, "pub": {"allow": "a.>"}}),
        serde_json::json!({"type": "user", "version": 2, "src": 7}),
    ];
    for nats in bad {
        let token = signed_raw(&claims(nats), &acc);
        assert_refused(server.port(), &token, &u);
        if server.is_ringnats() {
            let line = server.wait_line("wrong types", TIMEOUT);
            assert!(line.contains("authentication failed"), "{line}");
        }
        let output = server.output();
        assert!(!output.contains(&token[..40]), "a JWT reached the log");
    }
    // The same claims with the right types log in.
    let token = signed_raw(
        &claims(serde_json::json!({"type": "user", "version": 2, "subs": 10})),
        &acc,
    );
    login(server.port(), &token, &u);
}

// ---- account limits ------------------------------------------------------------------------------

#[test]
fn account_subs_limit_per_connection_and_across_connections() {
    let mut trust = Trust::new();
    let acc = trust.account("A", |_, c| c.limits.subs = 3);
    let server = trust.start();
    let (u, token) = user(&acc, |_, _| {});
    // One connection: the 4th subscription is refused and the connection stays (both).
    let mut first = login(server.port(), &token, &u);
    first.send(b"SUB a 1\r\nSUB b 2\r\nSUB c 3\r\nSUB d 4\r\n");
    first.expect_err("maximum subscriptions exceeded");
    first.expect_open();
    // Unsubscribing gives one back.
    first.send(b"UNSUB 3\r\nSUB d 4\r\n");
    first.expect_open();
    // A second connection of the same account: ringnats counts the account's total (3 held
    // already), nats-server 2.9.10 only each connection's own.
    let mut second = login(server.port(), &token, &u);
    second.send(b"SUB e 1\r\n");
    if server.is_ringnats() {
        second.expect_err("maximum subscriptions exceeded");
        second.expect_open();
        // Once the first connection is gone its subscriptions are given back (the server
        // notices the close a moment later: retry, bounded).
        drop(first);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            second.send(b"SUB e 1\r\n");
            let lines = second.ping_pong();
            if lines.is_empty() {
                break;
            }
            let lines: Vec<String> = lines.iter().map(|l| common::show(l)).collect();
            assert_eq!(lines, ["-ERR 'maximum subscriptions exceeded'"]);
            assert!(
                Instant::now() < deadline,
                "the subscriptions never came back"
            );
        }
        second.send(b"SUB f 2\r\nSUB g 3\r\nSUB h 4\r\n");
        second.expect_err("maximum subscriptions exceeded");
        second.expect_open();
    } else {
        second.expect_open();
    }
}

#[test]
fn disallow_bearer_refuses_bearer_users() {
    let mut trust = Trust::new();
    let strict = trust.account("STRICT", |_, c| c.limits.disallow_bearer = true);
    let open = trust.account("OPEN", |_, _| {});
    let server = trust.start();
    let (_, bearer) = user(&strict, |_, c| c.limits.bearer_token = true);
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(&format!(
        r#"{{"verbose":false,"protocol":1,"jwt":"{bearer}"}}"#
    ));
    conn.send(b"PING\r\n");
    conn.expect_err("Authorization Violation");
    conn.expect_closed();
    // A signed-in user of the same account is fine; a bearer of another account too.
    let (u, token) = user(&strict, |_, _| {});
    login(server.port(), &token, &u);
    let (_, bearer) = user(&open, |_, c| c.limits.bearer_token = true);
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(&format!(
        r#"{{"verbose":false,"protocol":1,"jwt":"{bearer}"}}"#
    ));
    conn.expect_open();
}

#[test]
fn wildcards_false_refuses_wildcard_exports_not_wildcard_subscriptions() {
    let mut trust = Trust::new();
    let export = |subject: &str| Export {
        subject: subject.into(),
        kind: Some(ExportType::Stream),
        ..Export::default()
    };
    // nats-io/jwt checks `wildcards` (and the export count) only when exports are limited.
    let bad = trust.account("BAD", |_, c| {
        c.limits.exports = 5;
        c.limits.wildcards = false;
        c.exports = vec![export("feed.>")];
    });
    let too_many = trust.account("MANY", |_, c| {
        c.limits.exports = 1;
        c.exports = vec![export("feed.one"), export("feed.two")];
    });
    let good = trust.account("GOOD", |_, c| {
        c.limits.exports = 5;
        c.limits.wildcards = false;
        c.exports = vec![export("feed.one")];
    });
    let unlimited = trust.account("UNLIMITED", |_, c| {
        c.limits.wildcards = false;
        c.exports = vec![export("feed.>")];
    });
    let server = trust.start();
    for account in [&bad, &too_many] {
        let (u, token) = user(account, |_, _| {});
        assert_refused(server.port(), &token, &u);
    }
    for account in [&good, &unlimited] {
        let (u, token) = user(account, |_, _| {});
        let mut conn = login(server.port(), &token, &u);
        conn.send(b"SUB x.* 1\r\nSUB y.> 2\r\n");
        conn.expect_open();
    }
}

// ---- times_location -------------------------------------------------------------------------------

/// The current hour (0-23) in `zone`.
fn hour_in(zone: &str) -> i8 {
    let tz = jiff::tz::TimeZone::get(zone).expect("zone");
    jiff::Timestamp::now().to_zoned(tz).hour()
}

fn window(hour: i8) -> Vec<TimeRange> {
    // From the hour's start to half a minute into the next (an end before the start runs
    // past midnight).
    vec![TimeRange {
        start: format!("{hour:02}:00:00"),
        end: format!("{:02}:00:30", (hour + 1) % 24),
    }]
}

#[test]
fn times_are_read_in_times_location() {
    // Not at the very start of an hour, where "now" and the window's start may share a second.
    while jiff::Timestamp::now().as_second() % 3600 < 2 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut trust = Trust::new();
    let acc = trust.account("A", |_, _| {});
    let server = trust.start();
    // Kolkata is UTC+5:30 all year: its current hour is never UTC's.
    let zone = "Asia/Kolkata";
    let (u, token) = user(&acc, |_, c| {
        c.limits.times = window(hour_in(zone));
        c.limits.times_location = zone.into();
    });
    login(server.port(), &token, &u);
    let (u, token) = user(&acc, |_, c| {
        c.limits.times = window(hour_in("UTC"));
        c.limits.times_location = zone.into();
    });
    assert_refused(server.port(), &token, &u);
    // The same UTC window read in UTC is open.
    let (u, token) = user(&acc, |_, c| {
        c.limits.times = window(hour_in("UTC"));
        c.limits.times_location = "UTC".into();
    });
    login(server.port(), &token, &u);
    // An unknown zone name is refused.
    let (u, token) = user(&acc, |_, c| {
        c.limits.times = window(hour_in("UTC"));
        c.limits.times_location = "Mars/Olympus_Mons".into();
    });
    assert_refused(server.port(), &token, &u);
}

// ---- exports and imports ------------------------------------------------------------------------

fn export(kind: ExportType, subject: &str, token_req: bool) -> Export {
    Export {
        subject: subject.into(),
        kind: Some(kind),
        token_req,
        ..Export::default()
    }
}

fn import(kind: ExportType, from: &KeyPair, subject: &str) -> Import {
    Import {
        subject: subject.into(),
        account: from.public_key(),
        kind: Some(kind),
        ..Import::default()
    }
}

/// An activation token from `exporter` letting `importer` import `subject`.
fn activation(exporter: &KeyPair, importer: &KeyPair, kind: ExportType, subject: &str) -> String {
    encode::activation(
        ClaimsData {
            sub: importer.public_key(),
            ..ClaimsData::default()
        },
        ActivationClaims {
            subject: subject.into(),
            import_type: Some(kind),
            ..ActivationClaims::default()
        },
        exporter,
    )
    .expect("activation jwt")
}

async fn connect_user(server: &Server, dir: &std::path::Path, signer: &KeyPair) -> Nats {
    let (u, token) = user(signer, |_, _| {});
    let seed = u.seed().expect("seed");
    let path: PathBuf = dir.join(format!("{}.creds", u.public_key()));
    std::fs::write(&path, ringnats::auth::jwt::creds::format(&token, &seed)).expect("creds");
    let opts = async_nats::ConnectOptions::with_credentials_file(&path)
        .await
        .expect("read creds");
    Nats::connect_with(server, opts).await
}

/// Sends requests until one is answered, bounded by the harness deadline. The responder's
/// interest reaches the requester a moment after its SUB; until then nats-server drops a
/// request through a service import without a no-responders status, so each try waits only
/// briefly.
async fn request_until_answered(nats: &Nats, subject: &str) -> async_nats::Message {
    const TRY: Duration = Duration::from_millis(250);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let sent = nats.request(subject.to_string(), "ping".into());
        match tokio::time::timeout(TRY, sent).await {
            Ok(Ok(msg)) => return msg,
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::TimedOut => {}
            Err(_elapsed) => {}
            Ok(Err(e)) => panic!("request to {subject}: {e}"),
        }
        assert!(Instant::now() < deadline, "{subject}: never answered");
    }
}

#[tokio::test]
async fn account_jwt_exports_and_imports_route_between_accounts() {
    use futures::StreamExt;
    let mut trust = Trust::new();
    let exporter_pair = KeyPair::new_account();
    let importer_pair = KeyPair::new_account();
    let outsider_pair = KeyPair::new_account();
    let exporter_key = exporter_pair.public_key();
    trust.add_account_key(&exporter_key, "EXP", |_, c| {
        c.exports = vec![
            export(ExportType::Stream, "news.>", false),
            export(ExportType::Service, "svc.echo", false),
            export(ExportType::Service, "priv.svc", true),
        ];
    });
    let token = activation(
        &exporter_pair,
        &importer_pair,
        ExportType::Service,
        "priv.svc",
    );
    trust.add_account_key(&importer_pair.public_key(), "IMP", |_, c| {
        let mut private = import(ExportType::Service, &exporter_pair, "priv.svc");
        private.token = token;
        c.imports = vec![
            import(ExportType::Stream, &exporter_pair, "news.>"),
            import(ExportType::Service, &exporter_pair, "svc.echo"),
            private,
        ];
    });
    // Imports the private service without a token: skipped.
    trust.add_account_key(&outsider_pair.public_key(), "OUT", |_, c| {
        c.imports = vec![import(ExportType::Service, &exporter_pair, "priv.svc")];
    });
    let server = trust.start();
    let dir = scratch_dir();
    let exporter = connect_user(&server, &dir, &exporter_pair).await;
    let importer = connect_user(&server, &dir, &importer_pair).await;
    let outsider = connect_user(&server, &dir, &outsider_pair).await;

    // Stream: a publish in the exporter reaches the importer's subscription; a subject that
    // is not imported does not cross.
    let mut news = importer.subscribe("news.>").await.expect("sub");
    let mut other = importer.subscribe("other.>").await.expect("sub");
    common::wait_for_route(&exporter, "news.probe", &mut news).await;
    exporter.publish("other.x", "no".into()).await.expect("pub");
    exporter.publish("news.x", "yes".into()).await.expect("pub");
    let msg = common::next_msg(&mut news).await;
    assert_eq!(
        (msg.subject.as_str(), &msg.payload[..]),
        ("news.x", &b"yes"[..])
    );
    // Published before news.x by the same connection: it would have arrived first.
    let leaked = tokio::time::timeout(Duration::from_millis(100), other.next()).await;
    assert!(leaked.is_err(), "other.x crossed: {leaked:?}");

    // Services: request/reply from the importer to the exporter's responders.
    for subject in ["svc.echo", "priv.svc"] {
        let mut requests = exporter.subscribe(subject.to_string()).await.expect("sub");
        let exporter_client = exporter.client.clone();
        // Answers every request (a retried request may follow one that arrived late).
        let responder = tokio::spawn(async move {
            while let Some(req) = requests.next().await {
                if let Some(reply) = req.reply {
                    let mut body = b"re:".to_vec();
                    body.extend_from_slice(&req.payload);
                    exporter_client
                        .publish(reply, body.into())
                        .await
                        .expect("reply");
                    exporter_client.flush().await.expect("flush");
                }
            }
        });
        let answer = request_until_answered(&importer, subject).await;
        assert_eq!(&answer.payload[..], b"re:ping", "{subject}");
        responder.abort();
    }
    // Without the activation token the private service is not imported.
    let refused = outsider.request("priv.svc", "ping".into()).await;
    assert_eq!(
        refused.expect_err("no import").kind(),
        async_nats::RequestErrorKind::NoResponders
    );
    // The exporter's own subject space is not reachable from the importer either.
    let refused = importer.request("svc.other", "ping".into()).await;
    assert_eq!(
        refused.expect_err("not imported").kind(),
        async_nats::RequestErrorKind::NoResponders
    );
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- signing keys of configured accounts (ringnats only) ---------------------------------------

#[test]
fn configured_account_signing_key_issues_users() {
    let signer = KeyPair::new_account();
    let stranger = KeyPair::new_account();
    let config = format!(
        "accounts {{\n  PROD: {{ signing_keys: [\"{}\"] }}\n  DEV: {{ users: [{{user: dev, password: dev}}] }}\n}}\n",
        signer.public_key()
    );
    // Always ringnats itself, also when the suite runs against nats-server, which has no such
    // mode.
    let server = Launch::ringnats().config(&config).start();
    let (u, token) = user(&signer, |_, c| {
        c.limits.permissions.publish = Permission {
            allow: vec!["prod.>".into()],
            deny: vec![],
        };
        c.limits.subs = 1;
    });
    let mut prod = login(server.port(), &token, &u);
    // The JWT's permissions and limits apply.
    prod.send(b"SUB prod.in 1\r\nSUB prod.other 2\r\nPUB dev.x 0\r\n\r\n");
    prod.expect_err("maximum subscriptions exceeded");
    prod.expect_err("Permissions Violation for Publish to \"dev.x\"");
    prod.expect_open();
    // A second PROD user (with issuer_account, as nsc writes it) shares the account.
    let identity = KeyPair::new_account();
    let (u2, token2) = user(&signer, |_, c| c.issuer_account = identity.public_key());
    let mut peer = login(server.port(), &token2, &u2);
    // PROD is its own account: a DEV user does not see PROD's messages.
    let mut dev = RawConn::connect(server.port());
    dev.send_connect(r#"{"verbose":false,"pedantic":false,"user":"dev","pass":"dev"}"#);
    dev.send(b"SUB prod.in 9\r\n");
    dev.expect_open();
    peer.send(b"PUB prod.in 2\r\nhi\r\n");
    peer.expect_open();
    let msg = prod.read_msg();
    assert_eq!(
        (msg.subject.as_str(), &msg.payload[..]),
        ("prod.in", &b"hi"[..])
    );
    dev.send(b"PING\r\n");
    dev.expect_line(b"PONG");
    // A user signed by a key no account lists, a wrong nonce signature, an expired user.
    let (u, token) = user(&stranger, |_, _| {});
    assert_refused(server.port(), &token, &u);
    let (_, token) = user(&signer, |_, _| {});
    assert_refused(server.port(), &token, &KeyPair::new_user());
    let (u, token) = user(&signer, |d, _| d.exp = now_unix() - 10);
    assert_refused(server.port(), &token, &u);
}

#[test]
fn configured_account_signing_keys_are_validated_with_file_line_and_key() {
    let dir = scratch_dir();
    let conf = dir.join("bad.conf");
    let key = KeyPair::new_account().public_key();
    for (body, words) in [
        (
            "accounts {\n  PROD: {\n    signing_keys: [\"UBAD\"]\n  }\n}\n".to_string(),
            vec![
                "bad.conf:3",
                "signing_keys",
                "not a valid public account nkey",
            ],
        ),
        (
            format!(
                "accounts {{\n  A: {{ signing_keys: [\"{key}\"] }}\n  B: {{ signing_keys: [\"{key}\"] }}\n}}\n"
            ),
            vec![
                "bad.conf:3",
                "signing_keys",
                "already a signing key of account \"A\"",
            ],
        ),
    ] {
        std::fs::write(&conf, body).expect("write");
        let out = Launch::ringnats().run(&["-t", "-c", conf.to_str().expect("utf-8")], b"");
        assert!(!out.status.success(), "{out:?}");
        for word in words {
            assert!(out.stderr.contains(word), "no {word:?} in {out:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
