use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use nkeys::KeyPair;

use super::*;
use crate::config::{options_from_map, parse_str};

const NONCE: &str = "XHJzqXOFQGGxAnI";

fn opts(text: &str) -> ServerOptions {
    let map = parse_str(text, Path::new("t.conf")).expect("config parses");
    options_from_map(&map, Path::new("t.conf")).expect("options build")
}

fn load(text: &str) -> AuthConfig {
    AuthConfig::from_options(&opts(text)).expect("auth config loads")
}

fn load_err(text: &str) -> String {
    AuthConfig::from_options(&opts(text))
        .expect_err("auth config must fail")
        .to_string()
}

fn connect(user: Option<&str>, pass: Option<&str>) -> ConnectOptions {
    ConnectOptions {
        user: user.map(str::to_string),
        pass: pass.map(str::to_string),
        ..ConnectOptions::default()
    }
}

fn token_connect(token: &str) -> ConnectOptions {
    ConnectOptions {
        auth_token: Some(token.to_string()),
        ..ConnectOptions::default()
    }
}

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Runs a verdict to completion, slow checks included.
fn finish(verdict: Verdict) -> Result<ClientIdentity, AuthFailure> {
    match verdict {
        Verdict::Done(r) => r,
        Verdict::Slow(job) => job.run(&crate::auth::VerifiedCache::new(), std::time::Instant::now),
    }
}

fn check(cfg: &AuthConfig, c: &ConnectOptions) -> Result<ClientIdentity, AuthFailure> {
    finish(cfg.verify(c, Some(NONCE), None, now()))
}

fn hash(password: &str, version: bcrypt::Version) -> String {
    bcrypt::hash_with_result(password, 4)
        .expect("bcrypt hashes")
        .format_for_version(version)
}

// ---- config forms and errors ----

#[test]
fn no_auth_configured_accepts_anyone() {
    let cfg = load("port: 4222");
    assert!(!cfg.auth_required());
    assert!(!cfg.connect_required());
    assert!(!cfg.nonce_required());
    assert_eq!(cfg.timeout(), Duration::from_secs(2));
    let id = check(&cfg, &connect(Some("x"), Some("y"))).unwrap();
    assert_eq!(id.account, GLOBAL_ACCOUNT_ID);
    assert!(id.permissions.is_none());
    assert_eq!(cfg.default_identity(SystemTime::now()).unwrap().account, 0);
    assert_eq!(cfg.accounts()[0].name, "$G");
    assert_eq!(cfg.account_id("$SYS"), Some(cfg.system_account()));
    assert_eq!(cfg.accounts().len(), 2);
}

#[test]
fn token_and_user_conflict() {
    let e = load_err("authorization { token: abc, user: a, password: b }");
    assert_eq!(
        e,
        "t.conf:1: authorization: Cannot have a user/pass and token"
    );
}

#[test]
fn token_and_users_conflict() {
    let e = load_err("authorization {\n token: abc\n users: [{user: a, password: b}] }");
    assert!(e.starts_with("t.conf:1:"), "{e}");
    assert!(e.ends_with("Can not have a token and a users array"), "{e}");
}

#[test]
fn single_user_and_users_conflict() {
    let e = load_err("authorization { user: a, password: b, users: [{user: c, password: d}] }");
    assert!(
        e.ends_with("Can not have a single user/pass and a users array"),
        "{e}"
    );
}

#[test]
fn bad_nkey_is_refused_with_its_line() {
    let e = load_err("authorization {\n users: [\n {nkey: UABAD}\n ] }");
    assert_eq!(e, "t.conf:3: nkey: Not a valid public nkey for a user");
    let seed = "SUAAAAICAMCAKBQHBAEQUCYMBUHA6EARCIJRIFIWC4MBSGQ3DQOR4H776Y";
    let e = load_err(&format!("authorization {{ users: [{{nkey: {seed}}}] }}"));
    assert!(e.ends_with("Not a valid public nkey for a user"), "{e}");
}

#[test]
fn nkey_users_take_no_password() {
    let key = KeyPair::new_user().public_key();
    let e = load_err(&format!(
        "authorization {{ users: [{{nkey: {key}, password: x}}] }}"
    ));
    assert!(
        e.ends_with("Nkey users do not take usernames or passwords"),
        "{e}"
    );
}

#[test]
fn duplicate_users_are_refused() {
    let e =
        load_err("authorization { users: [\n{user: a, password: b},\n{user: a, password: c}] }");
    assert_eq!(e, "t.conf:3: users: Duplicate user \"a\" detected");
    let e = load_err(
        "accounts { A: { users: [{user: a, password: a}] } }\n\
         authorization { users: [{user: a, password: c}] }",
    );
    assert!(e.ends_with("Duplicate user \"a\" detected"), "{e}");
    let key = KeyPair::new_user().public_key();
    let e = load_err(&format!(
        "authorization {{ users: [{{nkey: {key}}}, {{nkey: {key}}}] }}"
    ));
    assert!(
        e.ends_with(&format!("Duplicate nkey \"{key}\" detected")),
        "{e}"
    );
}

#[test]
fn no_auth_user_must_exist() {
    let e = load_err("no_auth_user: bob\nauthorization { users: [{user: a, password: b}] }");
    assert_eq!(
        e,
        "t.conf:1: no_auth_user: no_auth_user: \"bob\" not present as user in authorization \
         block or account configuration"
    );
    let e = load_err("no_auth_user: bob");
    assert!(
        e.ends_with("no_auth_user: \"bob\" present, but users are not defined"),
        "{e}"
    );
}

#[test]
fn unknown_fields_are_refused() {
    assert_eq!(
        load_err("authorization {\n foo: 1 }"),
        "t.conf:2: unknown field \"foo\""
    );
    let e = load_err("authorization { users: [{user: a, password: b, foo: 1}] }");
    assert_eq!(e, "t.conf:1: unknown field \"foo\"");
    let e = load_err("accounts { A: { foo: 1 } }");
    assert_eq!(e, "t.conf:1: unknown field \"foo\"");
}

#[test]
fn timeout_forms() {
    let cfg = load("authorization { user: a, password: b, timeout: 0.5 }");
    assert_eq!(cfg.timeout(), Duration::from_millis(500));
    let cfg = load("authorization { user: a, password: b, timeout: 3 }");
    assert_eq!(cfg.timeout(), Duration::from_secs(3));
    let cfg = load("authorization { user: a, password: b, timeout: \"1s\" }");
    assert_eq!(cfg.timeout(), Duration::from_secs(1));
    let e = load_err("authorization { user: a, password: b, timeout: \"3x\" }");
    assert!(e.contains("unknown unit \"x\""), "{e}");
}

#[test]
fn bad_connection_deadline_is_refused() {
    let e = load_err(
        "authorization { users: [{user: a, password: b, connection_deadline: \"soon\"}] }",
    );
    assert!(
        e.starts_with("t.conf:1: connection_deadline: expected an RFC 3339"),
        "{e}"
    );
    let e = load_err("authorization { users: [{user: a, password: b, connection_deadline: 5}] }");
    assert!(e.contains("connection_deadline"), "{e}");
}

#[test]
fn bad_permissions_are_refused() {
    let e = load_err(
        "authorization { users: [{user: a, password: b, permissions: {publish: \"foo..bar\"}}] }",
    );
    assert!(
        e.ends_with("subject \"foo..bar\" is not a valid subject"),
        "{e}"
    );
    let e = load_err(
        "authorization { users: [{user: a, password: b, permissions: {publishx: \"foo\"}}] }",
    );
    assert!(
        e.ends_with("Unknown field \"publishx\" parsing permissions"),
        "{e}"
    );
    let e = load_err("authorization { permissions: {publish: {allow: 1}}, users: [{user: a}] }");
    assert!(
        e.contains("Expected subject permissions to be a subject, or array of subjects"),
        "{e}"
    );
}

#[test]
fn system_account_resolution() {
    let cfg = load("accounts { SYS: {} , A: {} }\nsystem_account: SYS");
    assert_eq!(cfg.system_account(), cfg.account_id("SYS").unwrap());
    assert_eq!(cfg.account_id("$SYS"), None);
    let e = load_err("system_account: NOPE\naccounts { A: {} }");
    assert_eq!(
        e,
        "t.conf:1: system_account: error resolving system account: account missing"
    );
}

#[test]
fn plaintext_warning_never_has_a_secret() {
    let cfg = load("authorization { users: [{user: a, password: hunter2}] }");
    assert_eq!(cfg.warnings(), vec![load::PLAINTEXT_WARNING.to_string()]);
    assert!(!format!("{cfg:?}").contains("hunter2"));
    let h = hash("x", bcrypt::Version::TwoB);
    let cfg = load(&format!(
        "authorization {{ users: [{{user: a, password: \"{h}\"}}, {{user: tls}}] }}"
    ));
    assert!(cfg.warnings().is_empty());
    let cfg = load("authorization { token: plain }");
    assert!(cfg.warnings().is_empty(), "2.9.10 does not check the token");
}

// ---- token ----

#[test]
fn token_plain() {
    let cfg = load("authorization { token: s3cr3t }");
    assert!(cfg.auth_required());
    assert!(cfg.connect_required());
    assert!(cfg.default_identity(SystemTime::now()).is_none());
    assert!(check(&cfg, &token_connect("s3cr3t")).is_ok());
    assert_eq!(
        check(&cfg, &token_connect("nope")),
        Err(AuthFailure::BadToken)
    );
    assert_eq!(
        check(&cfg, &connect(None, None)),
        Err(AuthFailure::MissingCredentials)
    );
    // user/pass next to a good token are ignored.
    let mut c = token_connect("s3cr3t");
    c.user = Some("x".into());
    c.pass = Some("y".into());
    assert!(check(&cfg, &c).is_ok());
}

#[test]
fn token_bcrypt_is_slow() {
    let h = hash("tok", bcrypt::Version::TwoA);
    let cfg = load(&format!("authorization {{ token: \"{h}\" }}"));
    let verdict = cfg.verify(&token_connect("tok"), None, None, now());
    assert!(matches!(verdict, Verdict::Slow(_)));
    assert!(!format!("{verdict:?}").contains("tok\""));
    assert!(finish(verdict).is_ok());
    assert_eq!(
        check(&cfg, &token_connect("tok2")),
        Err(AuthFailure::BadToken)
    );
}

#[test]
fn cli_token_and_user() {
    let cli = CliAuth {
        token: Some(Secret::new("t")),
        ..CliAuth::default()
    };
    let cfg = AuthConfig::from_options_with_cli(&opts(""), &cli).unwrap();
    assert!(check(&cfg, &token_connect("t")).is_ok());
    let cli = CliAuth {
        user: Some("u".into()),
        pass: Some(Secret::new("p")),
        auth_timeout: Some(Duration::from_millis(1500)),
        ..CliAuth::default()
    };
    let cfg = AuthConfig::from_options_with_cli(&opts(""), &cli).unwrap();
    assert_eq!(cfg.timeout(), Duration::from_millis(1500));
    assert!(check(&cfg, &connect(Some("u"), Some("p"))).is_ok());
    assert_eq!(
        check(&cfg, &connect(Some("u"), Some("x"))),
        Err(AuthFailure::BadPassword)
    );
}

// ---- single user ----

#[test]
fn single_user() {
    let cfg = load("authorization { user: alice, password: pw }");
    assert_eq!(cfg.warnings().len(), 1);
    let id = check(&cfg, &connect(Some("alice"), Some("pw"))).unwrap();
    assert_eq!(id.user, "alice");
    assert_eq!(id.account, GLOBAL_ACCOUNT_ID);
    assert_eq!(
        check(&cfg, &connect(Some("alice"), Some("px"))),
        Err(AuthFailure::BadPassword)
    );
    assert_eq!(
        check(&cfg, &connect(Some("Alice"), Some("pw"))),
        Err(AuthFailure::UnknownUser)
    );
    assert_eq!(
        check(&cfg, &connect(Some("alice"), None)),
        Err(AuthFailure::BadPassword)
    );
    assert_eq!(
        check(&cfg, &connect(None, None)),
        Err(AuthFailure::MissingCredentials)
    );
}

#[test]
fn single_user_bcrypt_spec_vector() {
    // Unquoted $2a$ hashes are literals, not variables.
    let cfg = load(
        "authorization { user: a, password: $2a$11$ksSaLy72tt9X23jfACFCz.0nmfV7uhMpcSfDHEG/kw/1R9WJiY7KO }",
    );
    assert!(cfg.warnings().is_empty());
    assert!(check(&cfg, &connect(Some("a"), Some("s3cr3t"))).is_ok());
}

// ---- users list ----

#[test]
fn users_list_bcrypt_variants_and_plaintext() {
    let a = hash("pa", bcrypt::Version::TwoA);
    let b = hash("pb", bcrypt::Version::TwoB);
    let y = hash("py", bcrypt::Version::TwoY);
    let cfg = load(&format!(
        "authorization {{ users: [\n{{user: a, password: \"{a}\"}}\n{{user: b, password: \"{b}\"}}\n\
         {{user: y, password: \"{y}\"}}\n{{user: p, password: plain}}] }}"
    ));
    assert_eq!(cfg.warnings().len(), 1);
    for (user, pass) in [("a", "pa"), ("b", "pb"), ("y", "py")] {
        let verdict = cfg.verify(&connect(Some(user), Some(pass)), None, None, now());
        assert!(matches!(verdict, Verdict::Slow(_)), "{user} must be slow");
        assert_eq!(finish(verdict).unwrap().user, user);
        let bad = check(&cfg, &connect(Some(user), Some("wrong")));
        assert_eq!(bad, Err(AuthFailure::BadPassword));
    }
    let verdict = cfg.verify(&connect(Some("p"), Some("plain")), None, None, now());
    assert!(matches!(verdict, Verdict::Done(Ok(_))));
    assert_eq!(
        check(&cfg, &connect(Some("p"), Some("x"))),
        Err(AuthFailure::BadPassword)
    );
    assert_eq!(
        check(&cfg, &connect(Some("q"), Some("x"))),
        Err(AuthFailure::UnknownUser)
    );
    assert_eq!(
        check(&cfg, &connect(None, None)),
        Err(AuthFailure::MissingCredentials)
    );
}

#[test]
fn slow_check_is_send_and_static() {
    fn assert_send_static<T: Send + 'static>() {}
    assert_send_static::<SlowCheck>();
    assert_send_static::<Verdict>();
}

#[test]
fn users_get_default_permissions_unless_they_have_their_own() {
    let cfg = load(
        "authorization {\n permissions: { publish: \"foo\" }\n users: [\n\
         {user: a, password: a}\n{user: b, password: b, permissions: {publish: \"bar\"}}] }",
    );
    let a = check(&cfg, &connect(Some("a"), Some("a"))).unwrap();
    let b = check(&cfg, &connect(Some("b"), Some("b"))).unwrap();
    let (pa, pb) = (a.permissions.unwrap(), b.permissions.unwrap());
    assert!(pa.check_publish(b"foo"));
    assert!(!pa.check_publish(b"bar"));
    assert!(pb.check_publish(b"bar"));
    assert!(!pb.check_publish(b"foo"));
}

#[test]
fn allowed_connection_types() {
    let cfg = load(
        "authorization { users: [{user: a, password: a, allowed_connection_types: [\"WEBSOCKET\"]},\n\
         {user: b, password: b, allowed_connection_types: [\"STANDARD\", \"LEAFNODE\"]}] }",
    );
    assert_eq!(
        check(&cfg, &connect(Some("a"), Some("a"))),
        Err(AuthFailure::ConnectionTypeNotAllowed)
    );
    assert!(check(&cfg, &connect(Some("b"), Some("b"))).is_ok());
    let e = load_err("authorization { users: [{user: a, allowed_connection_types: [\"BOGUS\"]}] }");
    assert!(e.contains("invalid connection types"), "{e}");
}

// ---- nkey ----

fn nkey_connect(kp: &KeyPair, nonce: &str, encode: impl Fn(&[u8]) -> String) -> ConnectOptions {
    let sig = kp.sign(nonce.as_bytes()).unwrap();
    ConnectOptions {
        nkey: Some(kp.public_key()),
        sig: Some(encode(&sig)),
        ..ConnectOptions::default()
    }
}

#[test]
fn nkey_users() {
    let kp = KeyPair::new_user();
    let cfg = load(&format!(
        "authorization {{ users: [{{nkey: {}, permissions: {{publish: \"x\"}}}}, {{user: p, password: q}}] }}",
        kp.public_key()
    ));
    assert!(cfg.nonce_required());
    assert!(cfg.auth_required());
    let url = nkey_connect(&kp, NONCE, |s| URL_SAFE_NO_PAD.encode(s));
    let id = check(&cfg, &url).unwrap();
    assert_eq!(id.user, kp.public_key());
    assert!(id.permissions.unwrap().check_publish(b"x"));
    let std = nkey_connect(&kp, NONCE, |s| STANDARD.encode(s));
    assert!(check(&cfg, &std).is_ok());
    // Signed another nonce.
    let other = nkey_connect(&kp, "AAAAAAAAAAAAAAA", |s| URL_SAFE_NO_PAD.encode(s));
    assert_eq!(check(&cfg, &other), Err(AuthFailure::BadSignature));
    // No signature.
    let mut nosig = url.clone();
    nosig.sig = None;
    assert_eq!(check(&cfg, &nosig), Err(AuthFailure::MissingSignature));
    // Unknown key.
    let stranger = nkey_connect(&KeyPair::new_user(), NONCE, |s| URL_SAFE_NO_PAD.encode(s));
    assert_eq!(check(&cfg, &stranger), Err(AuthFailure::UnknownNkey));
    // Password users in the same array still work.
    assert!(check(&cfg, &connect(Some("p"), Some("q"))).is_ok());
}

// ---- no_auth_user ----

/// Issue 8 §4: the default identity passes the checks a login as that user gets.
#[test]
fn no_auth_user_default_identity_passes_admission_checks() {
    let cfg = load(
        "no_auth_user: guest\nauthorization { users: [{user: guest, password: g, \
         allowed_connection_types: [\"WEBSOCKET\"]}] }",
    );
    assert!(cfg.default_identity(SystemTime::now()).is_none());
    let cfg = load(
        "no_auth_user: guest\nauthorization { users: [{user: guest, password: g, \
         connection_deadline: \"2020-01-01T00:00:00Z\"}] }",
    );
    assert!(cfg.default_identity(SystemTime::now()).is_none());
    let before = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    assert_eq!(cfg.default_identity(before).unwrap().user, "guest");
}

#[test]
fn no_auth_user_fills_missing_credentials() {
    let cfg = load(
        "no_auth_user: guest\naccounts { A: { users: [{user: guest, password: \"$2a$04$abcdefghijklmnopqrstuu5Ml5zwRqMyqXzT8Z8IElnU6U5zEHCTu\"}, {user: x, password: y}] } }",
    );
    assert!(!cfg.auth_required(), "no_auth_user turns auth_required off");
    assert!(!cfg.connect_required());
    let a = cfg.account_id("A").unwrap();
    let id = check(&cfg, &ConnectOptions::default()).unwrap();
    assert_eq!((id.user.as_str(), id.account), ("guest", a));
    assert_eq!(
        cfg.default_identity(SystemTime::now()).unwrap().user,
        "guest"
    );
    // Credentials given: normal check, no fallback.
    assert!(check(&cfg, &connect(Some("x"), Some("y"))).is_ok());
    assert_eq!(
        check(&cfg, &connect(Some("x"), Some("z"))),
        Err(AuthFailure::BadPassword)
    );
    assert_eq!(
        check(&cfg, &token_connect("t")),
        Err(AuthFailure::MissingCredentials)
    );
}

// ---- connection_deadline ----

#[test]
fn connection_deadline_before_and_after() {
    let kp = KeyPair::new_user();
    let cfg = load(&format!(
        "authorization {{ users: [\n{{user: a, password: a, connection_deadline: \"2023-11-14T22:13:21Z\"}}\n\
         {{user: b, password: b, connection_deadline: 2023-11-14T22:13:20Z}}\n\
         {{nkey: {}, connection_deadline: \"2023-11-14T23:13:20+01:00\"}}] }}",
        kp.public_key()
    ));
    // now() is 2023-11-14T22:13:20Z.
    let id = check(&cfg, &connect(Some("a"), Some("a"))).unwrap();
    assert_eq!(id.deadline, Some(now() + Duration::from_secs(1)));
    assert_eq!(
        check(&cfg, &connect(Some("b"), Some("b"))),
        Err(AuthFailure::DeadlinePassed)
    );
    let nk = nkey_connect(&kp, NONCE, |s| URL_SAFE_NO_PAD.encode(s));
    assert_eq!(check(&cfg, &nk), Err(AuthFailure::DeadlinePassed));
    let earlier = now() - Duration::from_secs(1);
    assert!(finish(cfg.verify(&nk, Some(NONCE), None, earlier)).is_ok());
    let later = now() + Duration::from_secs(1);
    let late = cfg.verify(&connect(Some("a"), Some("a")), None, None, later);
    assert_eq!(finish(late), Err(AuthFailure::DeadlinePassed));
}

// ---- legacy CONNECT fields ----

#[test]
fn legacy_account_field_fails() {
    let cfg = load("port: 1");
    let c = ConnectOptions {
        account: Some("A".into()),
        ..ConnectOptions::default()
    };
    assert_eq!(check(&cfg, &c), Err(AuthFailure::LegacyAccount));
}

// ---- TLS mapping ----

fn cert(subject: &[(&str, &str)]) -> CertIdentity {
    CertIdentity {
        subject_rdns: subject
            .iter()
            .map(|(t, v)| vec![(t.to_string(), v.to_string())])
            .collect(),
        ..CertIdentity::default()
    }
}

fn tls_cfg() -> AuthConfig {
    let mut cfg = load(
        "authorization { users: [\n{user: \"CN=alice,O=Company\"}\n{user: \"bob@example.com\"}\n\
         {user: \"dave.example.com\"}\n{user: \"CN=carol,DC=example,DC=org\"}\n\
         {user: \"CN=erin,DC=org,DC=example\"}\n{user: \"spiffe://x/y\"}\n{user: \"CN=frank\"}] }",
    );
    cfg.set_verify_and_map(true);
    cfg
}

fn map(cfg: &AuthConfig, c: &CertIdentity, pass: Option<&str>) -> Result<String, AuthFailure> {
    finish(cfg.verify(&connect(None, pass), None, Some(c), now())).map(|id| id.user)
}

#[test]
fn tls_map_subject_in_either_order() {
    let cfg = tls_cfg();
    assert!(cfg.verify_and_map());
    let want = Ok("CN=alice,O=Company".to_string());
    assert_eq!(
        map(&cfg, &cert(&[("O", "Company"), ("CN", "alice")]), None),
        want
    );
    assert_eq!(
        map(&cfg, &cert(&[("CN", "alice"), ("O", "Company")]), None),
        want
    );
    assert_eq!(
        map(&cfg, &cert(&[("O", "Other"), ("CN", "alice")]), None),
        Err(AuthFailure::CertificateNotMapped)
    );
    assert_eq!(
        map(&cfg, &cert(&[("cn", "frank")]), None),
        Ok("CN=frank".into())
    );
}

#[test]
fn tls_map_sans_come_first() {
    let cfg = tls_cfg();
    let mut c = cert(&[("CN", "alice"), ("O", "Company")]);
    c.emails = vec!["nobody@x".into(), "bob@example.com".into()];
    c.dns = vec!["dave.example.com".into()];
    assert_eq!(map(&cfg, &c, None), Ok("bob@example.com".into()));
    c.emails.clear();
    assert_eq!(map(&cfg, &c, None), Ok("dave.example.com".into()));
    c.dns.clear();
    c.uris = vec!["spiffe://x/y".into()];
    assert_eq!(map(&cfg, &c, None), Ok("spiffe://x/y".into()));
}

#[test]
fn tls_map_dc_components() {
    let cfg = tls_cfg();
    let carol = cert(&[("DC", "org"), ("DC", "example"), ("CN", "carol")]);
    assert_eq!(
        map(&cfg, &carol, None),
        Ok("CN=carol,DC=example,DC=org".into())
    );
    // The DC-appended string form (DCs in certificate order) also maps.
    let erin = cert(&[("CN", "erin"), ("DC", "org"), ("DC", "example")]);
    assert_eq!(
        map(&cfg, &erin, None),
        Ok("CN=erin,DC=org,DC=example".into())
    );
}

#[test]
fn tls_map_failures() {
    let cfg = tls_cfg();
    let alice = cert(&[("O", "Company"), ("CN", "alice")]);
    // The mapped user has no password, so sending one fails (as nats-server).
    assert_eq!(map(&cfg, &alice, Some("x")), Err(AuthFailure::BadPassword));
    let no_cert = cfg.verify(&connect(None, None), None, None, now());
    assert_eq!(finish(no_cert), Err(AuthFailure::MissingCertificate));
    assert_eq!(
        map(&cfg, &CertIdentity::default(), None),
        Err(AuthFailure::CertificateNotMapped)
    );
}

// ---- accounts, exports, imports ----

const ACCOUNTS: &str = "accounts {\n\
    A: { users: [{user: a, password: a}], exports: [{stream: \"pub.>\"}, {service: \"svc.>\"}, {stream: \"priv.*\", accounts: [C]}] }\n\
    B: { users: [{user: b, password: b}], imports: [\n\
      {stream: {account: A, subject: \"pub.>\"}}\n\
      {stream: {account: A, subject: \"pub.x\"}, prefix: \"from\"}\n\
      {service: {account: A, subject: \"svc.x\"}, to: \"local\"}\n\
      {service: {account: A, subject: \"svc.*\"}}\n\
    ] }\n\
    C: { imports: [{stream: {account: A, subject: \"priv.*\"}, to: \"mine.*\"}] }\n\
}";

#[test]
fn accounts_and_users() {
    let cfg = load(ACCOUNTS);
    let (a, b) = (cfg.account_id("A").unwrap(), cfg.account_id("B").unwrap());
    assert_eq!(cfg.accounts()[a as usize].exports.len(), 3);
    assert_eq!(cfg.accounts()[b as usize].imports[0].account, a);
    assert_eq!(
        check(&cfg, &connect(Some("a"), Some("a"))).unwrap().account,
        a
    );
    assert_eq!(
        check(&cfg, &connect(Some("b"), Some("b"))).unwrap().account,
        b
    );
    assert_eq!(cfg.accounts()[cfg.system_account() as usize].name, "$SYS");
}

#[test]
fn stream_imports_route_with_prefix_and_mapping() {
    let cfg = load(ACCOUNTS);
    let (a, b, c) = (
        cfg.account_id("A").unwrap(),
        cfg.account_id("B").unwrap(),
        cfg.account_id("C").unwrap(),
    );
    let table = cfg.imports();
    assert!(table.has_stream_imports(a));
    assert!(!table.has_stream_imports(b));
    let mut out = ImportMatches::new();
    table.streams_for(a, b"pub.x", &mut out);
    let got: Vec<(u32, &[u8])> = out.iter().collect();
    assert_eq!(got, vec![(b, &b"pub.x"[..]), (b, &b"from.pub.x"[..])]);
    out.clear();
    table.streams_for(a, b"foo", &mut out);
    assert!(out.is_empty());
    table.streams_for(a, b"priv.k", &mut out);
    assert_eq!(out.iter().collect::<Vec<_>>(), vec![(c, &b"mine.k"[..])]);
    out.clear();
    table.streams_for(b, b"pub.x", &mut out);
    assert!(out.is_empty(), "B exports nothing");
}

#[test]
fn service_imports_route() {
    let cfg = load(ACCOUNTS);
    let (a, b) = (cfg.account_id("A").unwrap(), cfg.account_id("B").unwrap());
    let table = cfg.imports();
    let mut buf = Vec::new();
    assert_eq!(
        table.service_for(b, b"local", &mut buf).map(|(e, _)| e),
        Some(a)
    );
    assert_eq!(buf, b"svc.x");
    assert_eq!(
        table.service_for(b, b"svc.y", &mut buf).map(|(e, _)| e),
        Some(a)
    );
    assert_eq!(buf, b"svc.y");
    assert_eq!(
        table.service_for(b, b"other", &mut buf).map(|(e, _)| e),
        None
    );
    assert_eq!(
        table.service_for(a, b"svc.y", &mut buf).map(|(e, _)| e),
        None
    );
}

#[test]
fn service_imports_carry_the_export_response_rules() {
    use crate::account::{RESPONSE_THRESHOLD_DEFAULT, ResponseType};
    let cfg = load(
        "accounts {\n\
         A: { exports: [{service: \"one.>\"}, {service: \"st.>\", response_type: Stream, \
         response_threshold: \"5s\"}, {service: \"ch\", response: chunk}] }\n\
         B: { imports: [{service: {account: A, subject: \"one.x\"}}, \
         {service: {account: A, subject: \"st.*\"}}, {service: {account: A, subject: \"ch\"}}] }\n}",
    );
    let b = cfg.account_id("B").unwrap();
    let mut buf = Vec::new();
    let (_, one) = cfg.imports().service_for(b, b"one.x", &mut buf).unwrap();
    assert_eq!(one.kind, ResponseType::Singleton);
    assert_eq!(one.threshold, RESPONSE_THRESHOLD_DEFAULT);
    let (_, st) = cfg.imports().service_for(b, b"st.q", &mut buf).unwrap();
    assert_eq!(st.kind, ResponseType::Stream);
    assert_eq!(st.threshold, std::time::Duration::from_secs(5));
    let (_, ch) = cfg.imports().service_for(b, b"ch", &mut buf).unwrap();
    assert_eq!(ch.kind, ResponseType::Chunked);
    let e = load_err("accounts { A: { exports: [{service: \"x\", response_type: many}] } }");
    assert!(e.contains("Unknown response type: \"many\""), "{e}");
    let e = load_err("accounts { A: { exports: [{service: \"x\", threshold: \"soon\"}] } }");
    assert!(e.contains("response threshold"), "{e}");
}

#[test]
fn imports_must_be_exported() {
    let e = load_err(
        "accounts { A: { exports: [{stream: \"pub.>\"}] }\n\
         B: { imports: [\n{stream: {account: A, subject: \"foo\"}}] } }",
    );
    assert_eq!(
        e,
        "t.conf:3: imports: Error adding stream import \"foo\": stream import not authorized"
    );
    let e = load_err(
        "accounts { A: { exports: [{service: \"svc.>\"}] }\n\
         B: { imports: [{service: {account: A, subject: \"other\"}}] } }",
    );
    assert!(e.ends_with("Error adding service import \"other\": service import not authorized"));
    let e = load_err(
        "accounts { A: { exports: [{stream: \"pub.>\"}] }\n\
         B: { imports: [{service: {account: A, subject: \"pub.x\"}}] } }",
    );
    assert!(
        e.ends_with("service import not authorized"),
        "kinds must agree: {e}"
    );
    let e = load_err(
        "accounts { A: { exports: [{stream: \"pub.>\", accounts: [B]}] }, B: {}\n\
         C: { imports: [{stream: {account: A, subject: \"pub.>\"}}] } }",
    );
    assert!(e.ends_with("Error adding stream import \"pub.>\": stream import not authorized"));
    let e = load_err("accounts { B: { imports: [{stream: {account: C, subject: \"foo\"}}] } }");
    assert!(
        e.ends_with("\"C\" account not defined for stream import"),
        "{e}"
    );
    let e = load_err("accounts { A: { exports: [{stream: \"pub..x\"}] } }");
    assert!(
        e.ends_with("subject \"pub..x\" is not a valid subject"),
        "{e}"
    );
}

#[test]
fn identity_debug_has_no_secret() {
    let cfg = load("authorization { users: [{user: a, password: topsecret}] }");
    let verdict = cfg.verify(&connect(Some("a"), Some("topsecret")), None, None, now());
    assert!(!format!("{verdict:?}").contains("topsecret"));
    assert!(!format!("{cfg:?}").contains("topsecret"));
    let failure = finish(cfg.verify(&connect(Some("a"), Some("guess")), None, None, now()));
    assert!(!format!("{failure:?}").contains("guess"));
}
