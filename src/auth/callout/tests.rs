use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::{KeyPair, KeyPairType, XKey};
use serde_json::json;

use super::*;
use crate::auth::AuthConfig;
use crate::auth::jwt::{ClaimsData, UserClaims, UserPermissionLimits, encode};
use crate::config::{ConfigError, load_str};
use crate::protocol::ConnectOptions;

// spec/callout.md test vectors.
const SERVER_XKEY_SEED: &str = "SXAACAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAN4QM";
const SERVER_XKEY: &str = "XCSOBEUSWZI4E6FZO4WFNH27VG5RHWIGWRVLNDE57HOCWRAJ7CRATSUK";
const SERVICE_XKEY_SEED: &str = "SXAAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAQCAIBAEAT5QQ";
const SERVICE_XKEY: &str = "XDHI2OWRZS3DH3D3ODAXQFFFY5XM2AUWQUCQ2NCHIW5ALBYOLB6VSWAL";
const SEALED_HELLO: &str = "786b7631000102030405060708090a0b0c0d0e0f10111213141516\
                            1737d76036f61cdf16bf6f00a89f9d986b8aaaefaff5";

/// Yields 0, 1, 2, … : the spec's nonce bytes 0x00..0x17.
struct CountingRng(u8);

impl rand::RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for b in dest {
            *b = self.0;
            self.0 = self.0.wrapping_add(1);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand::CryptoRng for CountingRng {}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn xkeys_match_the_spec_vectors() {
    let server = XKey::from_seed(SERVER_XKEY_SEED).unwrap();
    let service = XKey::from_seed(SERVICE_XKEY_SEED).unwrap();
    assert_eq!(server.public_key(), SERVER_XKEY);
    assert_eq!(service.public_key(), SERVICE_XKEY);
    assert_eq!(XKey::new_from_raw([1; 32]).public_key(), SERVER_XKEY);
    let sealed = server
        .seal_with_rand(b"hello", &service, CountingRng(0))
        .unwrap();
    assert_eq!(sealed.len(), 49);
    assert_eq!(hex(&sealed), SEALED_HELLO.replace(' ', ""));
    let opened = service.open(&sealed, &server).unwrap();
    assert_eq!(opened, b"hello");
    // The wrong recipient cannot open it.
    let other = XKey::new();
    assert!(other.open(&sealed, &server).is_err());
}

/// The issuer account of these tests, and a second key that is not it.
fn issuer() -> KeyPair {
    KeyPair::new_from_raw(KeyPairType::Account, [4; 32]).unwrap()
}

fn server_keys() -> ServerKeys {
    ServerKeys::from_keys(
        KeyPair::new_from_raw(KeyPairType::Server, [9; 32]).unwrap(),
        XKey::from_seed(SERVER_XKEY_SEED).unwrap(),
    )
}

/// Decodes a token's payload without checking it (the test reads what the server wrote).
fn payload_json(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn connect_opts() -> ConnectOptions {
    let mut connect = ConnectOptions::parse(
        br#"{"user":"alice","pass":"pw","name":"app","lang":"rust","version":"0.46","protocol":1}"#,
    )
    .unwrap();
    connect.sig = Some("c2ln".into());
    connect
}

#[test]
fn request_is_signed_by_the_server_and_carries_the_client() {
    let keys = server_keys();
    let server = ServerInfo {
        name: "srv".into(),
        host: "127.0.0.1".into(),
        version: "2.10.0".into(),
        ..ServerInfo::default()
    };
    let client = ClientInfo {
        host: "10.0.0.1".into(),
        id: 7,
        kind: "Client".into(),
        client_type: "nats".into(),
        nonce: "abc".into(),
        ..ClientInfo::default()
    };
    let issuer = issuer().public_key();
    let request = build_request(
        &keys,
        &issuer,
        None,
        &server,
        &client,
        &connect_opts(),
        None,
        1_900_000_000,
    )
    .unwrap();
    assert!(request.headers.is_empty());
    assert!(crate::auth::nkey::is_valid_user_key(&request.user_nkey));
    let token = std::str::from_utf8(&request.payload).unwrap();
    // Signed by the server's identity key over header.payload.
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let public = KeyPair::from_public_key(keys.id()).unwrap();
    public.verify(signed.as_bytes(), &sig).unwrap();
    let claims = payload_json(token);
    assert_eq!(claims["iss"], keys.id());
    assert_eq!(claims["sub"], issuer);
    assert_eq!(claims["aud"], REQUEST_AUDIENCE);
    assert_eq!(claims["exp"], 1_900_000_000);
    let nats = &claims["nats"];
    assert_eq!(nats["type"], "authorization_request");
    assert_eq!(nats["version"], 2);
    assert_eq!(nats["user_nkey"], request.user_nkey.as_str());
    assert_eq!(nats["server_id"]["id"], keys.id());
    assert_eq!(nats["server_id"]["name"], "srv");
    assert!(nats["server_id"].get("xkey").is_none());
    assert_eq!(
        nats["client_info"],
        json!({"host":"10.0.0.1","id":7,"kind":"Client","type":"nats","nonce":"abc"})
    );
    assert_eq!(
        nats["connect_opts"],
        json!({"sig":"c2ln","user":"alice","pass":"pw","name":"app","lang":"rust",
               "version":"0.46","protocol":1})
    );
    assert!(nats.get("client_tls").is_none());
    // A fresh user nkey per request.
    let again = build_request(
        &keys,
        &issuer,
        None,
        &server,
        &client,
        &connect_opts(),
        None,
        0,
    )
    .unwrap();
    assert_ne!(again.user_nkey, request.user_nkey);
}

#[test]
fn sealed_request_opens_with_the_service_key_and_names_the_server_xkey() {
    let keys = server_keys();
    let service = XKey::from_seed(SERVICE_XKEY_SEED).unwrap();
    let service_public = XKey::from_public_key(SERVICE_XKEY).unwrap();
    let tls = ClientTls {
        version: "1.3".into(),
        certs: vec!["-----BEGIN CERTIFICATE-----\n…".into()],
        ..ClientTls::default()
    };
    let request = build_request(
        &keys,
        &issuer().public_key(),
        Some(&service_public),
        &ServerInfo::default(),
        &ClientInfo::default(),
        &connect_opts(),
        Some(&tls),
        0,
    )
    .unwrap();
    assert_eq!(
        std::str::from_utf8(&request.headers).unwrap(),
        format!("NATS/1.0\r\nNats-Server-Xkey: {SERVER_XKEY}\r\n\r\n")
    );
    assert!(request.payload.starts_with(b"xkv1"));
    let server_public = XKey::from_public_key(SERVER_XKEY).unwrap();
    let opened = service.open(&request.payload, &server_public).unwrap();
    let claims = payload_json(std::str::from_utf8(&opened).unwrap());
    assert_eq!(claims["nats"]["server_id"]["xkey"], SERVER_XKEY);
    assert_eq!(claims["nats"]["client_tls"]["version"], "1.3");
    assert_eq!(
        claims["nats"]["client_tls"]["certs"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// Builds a response the way an auth service does (nats-io/jwt `AuthorizationResponseClaims`).
struct Response {
    sub: String,
    aud: String,
    jwt: Option<String>,
    error: Option<String>,
    issuer_account: Option<String>,
    signer: KeyPair,
}

impl Response {
    fn encode(&self) -> String {
        let mut nats = json!({"type": "authorization_response", "version": 2});
        if let Some(jwt) = &self.jwt {
            nats["jwt"] = json!(jwt);
        }
        if let Some(error) = &self.error {
            nats["error"] = json!(error);
        }
        if let Some(acc) = &self.issuer_account {
            nats["issuer_account"] = json!(acc);
        }
        let data = ClaimsData {
            sub: self.sub.clone(),
            aud: self.aud.clone(),
            ..ClaimsData::default()
        };
        encode::claims(data, &nats, &self.signer).unwrap()
    }
}

fn user_jwt(sub: &str, aud: &str, signer: &KeyPair, limits: UserPermissionLimits) -> String {
    let data = ClaimsData {
        sub: sub.into(),
        aud: aud.into(),
        name: "bob".into(),
        ..ClaimsData::default()
    };
    let claims = UserClaims {
        limits,
        ..UserClaims::default()
    };
    encode::user(data, claims, signer).unwrap()
}

struct Fixture {
    keys: ServerKeys,
    user_nkey: String,
    issuer: KeyPair,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            keys: server_keys(),
            user_nkey: KeyPair::new_user().public_key(),
            issuer: issuer(),
        }
    }

    fn good(&self) -> Response {
        Response {
            sub: self.user_nkey.clone(),
            aud: self.keys.id().to_string(),
            jwt: Some(user_jwt(
                &self.user_nkey,
                "A",
                &self.issuer,
                UserPermissionLimits::unlimited(),
            )),
            error: None,
            issuer_account: None,
            signer: issuer(),
        }
    }

    fn decode(&self, payload: &[u8]) -> Result<(ClaimsData, UserClaims), CalloutError> {
        let issuer = self.issuer.public_key();
        let expected = Expected {
            user_nkey: &self.user_nkey,
            server_id: self.keys.id(),
            issuer: &issuer,
            operator: None,
            sealed: None,
        };
        decode_response(payload, &expected, crate::auth::jwt::encode::now_unix())
    }
}

#[test]
fn a_good_response_yields_the_user_jwt() {
    let f = Fixture::new();
    let (user, _) = f.decode(f.good().encode().as_bytes()).unwrap();
    assert_eq!(user.sub, f.user_nkey);
    assert_eq!(user.aud, "A");
}

#[test]
fn bad_responses_are_refused_with_their_reason() {
    let f = Fixture::new();
    assert_eq!(f.decode(b""), Err(CalloutError::Empty));
    assert!(matches!(
        f.decode(b"not a jwt"),
        Err(CalloutError::Response(_))
    ));
    // Signed by another account key.
    let mut r = f.good();
    r.signer = KeyPair::new_account();
    assert_eq!(
        f.decode(r.encode().as_bytes()),
        Err(CalloutError::ResponseIssuer)
    );
    // Another user nkey (a replayed response).
    let mut r = f.good();
    r.sub = KeyPair::new_user().public_key();
    assert_eq!(
        f.decode(r.encode().as_bytes()),
        Err(CalloutError::ResponseSubject)
    );
    // Another server.
    let mut r = f.good();
    r.aud = KeyPair::new_server().public_key();
    assert_eq!(
        f.decode(r.encode().as_bytes()),
        Err(CalloutError::ResponseAudience)
    );
    // The service said no.
    let mut r = f.good();
    r.jwt = None;
    r.error = Some("denied".into());
    assert_eq!(
        f.decode(r.encode().as_bytes()),
        Err(CalloutError::ServiceError)
    );
    // Both, or neither.
    let mut r = f.good();
    r.error = Some("denied".into());
    assert_eq!(
        f.decode(r.encode().as_bytes()),
        Err(CalloutError::ResponseClaims)
    );
    // A tampered signature.
    let token = f.good().encode();
    // Change one character in the middle of the signature.
    let mut tampered = token.into_bytes();
    let at = tampered.len() - 20;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert!(matches!(
        f.decode(tampered.as_bytes()),
        Err(CalloutError::Response(_))
    ));
    // The user JWT for another user, by another issuer, or with issuer_account.
    let mut r = f.good();
    let other = KeyPair::new_user().public_key();
    r.jwt = Some(user_jwt(
        &other,
        "A",
        &f.issuer,
        UserPermissionLimits::unlimited(),
    ));
    assert_eq!(
        f.decode(r.encode().as_bytes()),
        Err(CalloutError::UserSubject)
    );
    let mut r = f.good();
    let stranger = KeyPair::new_account();
    r.jwt = Some(user_jwt(
        &f.user_nkey,
        "A",
        &stranger,
        UserPermissionLimits::unlimited(),
    ));
    assert_eq!(
        f.decode(r.encode().as_bytes()),
        Err(CalloutError::UserIssuer)
    );
    let mut r = f.good();
    r.jwt = Some("garbage".into());
    assert!(matches!(
        f.decode(r.encode().as_bytes()),
        Err(CalloutError::UserJwt(_))
    ));
}

#[test]
fn sealed_responses_open_only_with_the_right_keys() {
    let f = Fixture::new();
    let service = XKey::from_seed(SERVICE_XKEY_SEED).unwrap();
    let server_public = XKey::from_public_key(SERVER_XKEY).unwrap();
    let token = f.good().encode();
    let issuer = f.issuer.public_key();
    let expected = Expected {
        user_nkey: &f.user_nkey,
        server_id: f.keys.id(),
        issuer: &issuer,
        operator: None,
        sealed: Some((&f.keys.xkey, &service)),
    };
    let now = crate::auth::jwt::encode::now_unix();
    let sealed = service.seal(token.as_bytes(), &server_public).unwrap();
    assert!(decode_response(&sealed, &expected, now).is_ok());
    // A plain JWT is accepted too (nats-server: only a payload not starting `eyJ` is opened).
    assert!(decode_response(token.as_bytes(), &expected, now).is_ok());
    // Sealed to another key.
    let elsewhere = XKey::new();
    let wrong = service.seal(token.as_bytes(), &elsewhere).unwrap();
    assert_eq!(
        decode_response(&wrong, &expected, now),
        Err(CalloutError::Sealed)
    );
}

fn load(text: &str) -> Result<AuthConfig, ConfigError> {
    let opts = load_str(text, std::path::Path::new("test.conf"))?;
    AuthConfig::from_options(&opts)
}

const ISSUER: &str = "ADFJHLAXAUMHA4OWPOB4P7YO72AQR2HMIUYFOXLXE2DZGM633K7HZVXK";

#[test]
fn config_reads_the_block_and_its_aliases() {
    let cfg = load(&format!(
        r#"
        accounts {{
          AUTH {{ users: [ {{ user: auth, password: pwd }} ] }}
          A {{}}
          B {{}}
        }}
        authorization {{
          auth_callout {{
            issuer: {ISSUER}
            acc: AUTH
            users: [ auth ]
            key: {SERVICE_XKEY}
            allowed_accounts: [ A, B ]
          }}
        }}
        "#
    ))
    .unwrap();
    let callout = cfg.callout().unwrap();
    assert_eq!(callout.issuer, ISSUER);
    assert_eq!(Some(callout.account), cfg.account_id("AUTH"));
    assert_eq!(callout.auth_users, vec!["auth".to_string()]);
    assert_eq!(callout.xkey.as_ref().unwrap().public_key(), SERVICE_XKEY);
    assert_eq!(
        callout.allowed_accounts,
        vec![cfg.account_id("A").unwrap(), cfg.account_id("B").unwrap()]
    );
    assert!(cfg.auth_required());
    // `auth_hook` is nats-server's other name; the account defaults to $G.
    let cfg = load(&format!(
        "authorization {{ users: [{{user: auth, password: pwd}}]\n auth_hook {{ issuer: {ISSUER}, auth_users: [auth] }} }}"
    ))
    .unwrap();
    assert_eq!(
        cfg.callout().unwrap().account,
        crate::auth::GLOBAL_ACCOUNT_ID
    );
}

#[test]
fn config_errors_name_the_key_and_line() {
    let users = "users: [{user: auth, password: pwd}]";
    let cases = [
        (
            format!(
                "authorization {{ {users}\n auth_callout {{\n issuer: UNOTAKEY\n auth_users: [auth] }} }}"
            ),
            "test.conf:3: issuer: Expected callout user to be a valid public account nkey",
        ),
        (
            format!("authorization {{ {users}\n auth_callout {{\n auth_users: [auth] }} }}"),
            "Authorization callouts require an issuer to be specified",
        ),
        (
            format!(
                "authorization {{ {users}\n auth_callout {{ issuer: {ISSUER}\n auth_users: [] }} }}"
            ),
            "Authorization callouts require authorized users to be specified",
        ),
        (
            format!(
                "authorization {{ {users}\n auth_callout {{ issuer: {ISSUER}, auth_users: [auth]\n xkey: {ISSUER} }} }}"
            ),
            "test.conf:3: xkey: Expected callout xkey to be a valid public xkey",
        ),
        (
            format!(
                "authorization {{ {users}\n auth_callout {{ issuer: {ISSUER}, auth_users: [auth]\n colour: red }} }}"
            ),
            "colour",
        ),
        (
            format!(
                "authorization {{ {users}\n auth_callout {{ issuer: {ISSUER}, auth_users: [auth]\n account: NOPE }} }}"
            ),
            "test.conf:3: account: Authorization callout account \"NOPE\" not valid",
        ),
        (
            format!(
                "authorization {{ {users}\n auth_callout {{ issuer: {ISSUER}\n auth_users: [ghost] }} }}"
            ),
            "test.conf:3: auth_users: Authorization callout user \"ghost\" not valid",
        ),
        (
            format!(
                "authorization {{ {users}\n auth_callout {{ issuer: {ISSUER}, auth_users: [auth]\n allowed_accounts: [NOPE] }} }}"
            ),
            "test.conf:3: allowed_accounts: auth_callout allowed account \"NOPE\" not found",
        ),
    ];
    for (text, wanted) in cases {
        let err = load(&text).map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(wanted), "{text}\n→ {err}\nwanted {wanted}");
    }
}

fn callout_config(account: u32, allowed: Vec<u32>) -> CalloutConfig {
    CalloutConfig {
        issuer: issuer().public_key(),
        account,
        auth_users: vec!["auth".into()],
        xkey: None,
        allowed_accounts: allowed,
    }
}

#[test]
fn identity_places_the_user_and_applies_the_jwt() {
    let f = Fixture::new();
    let accounts = |name: &str| match name {
        "AUTH" => Some(1),
        "A" => Some(2),
        "B" => Some(3),
        _ => None,
    };
    let mut limits = UserPermissionLimits::unlimited();
    limits.permissions.publish.allow = vec!["a.>".into()];
    limits.payload = 100;
    let token = user_jwt(&f.user_nkey, "A", &f.issuer, limits);
    let (mut user, claims) = crate::auth::jwt::decode_user(&token).unwrap();
    user.exp = crate::auth::jwt::encode::now_unix() + 60;
    let now = SystemTime::now();
    let id = identity(
        &callout_config(1, vec![]),
        accounts,
        &user,
        &claims,
        None,
        now,
    )
    .unwrap();
    assert_eq!(id.account, 2);
    assert_eq!(id.user, "bob");
    assert_eq!(id.limits.max_payload, Some(100));
    assert_eq!(id.limits.max_subs, None);
    let perms = id.permissions.unwrap();
    assert!(perms.check_publish(b"a.b"));
    assert!(!perms.check_publish(b"c"));
    assert!(id.deadline.unwrap() > now + Duration::from_secs(50));
    // Not an allowed account; an unknown one.
    assert_eq!(
        identity(
            &callout_config(1, vec![3]),
            accounts,
            &user,
            &claims,
            None,
            now
        ),
        Err(CalloutError::AccountNotAllowed)
    );
    user.aud = "Z".into();
    assert_eq!(
        identity(
            &callout_config(1, vec![]),
            accounts,
            &user,
            &claims,
            None,
            now
        ),
        Err(CalloutError::UnknownAccount)
    );
    // Placed into the callout account itself: it may not publish callout requests.
    user.aud = "AUTH".into();
    let id = identity(
        &callout_config(1, vec![]),
        accounts,
        &user,
        &claims,
        None,
        now,
    )
    .unwrap();
    let perms = id.permissions.unwrap();
    assert!(!perms.check_publish(CALLOUT_SUBJECT.as_bytes()));
    assert!(perms.check_publish(b"a.b"));
    // Connection types without STANDARD.
    let mut claims = claims;
    claims.limits.allowed_connection_types = vec!["MQTT".into()];
    assert_eq!(
        identity(
            &callout_config(1, vec![]),
            accounts,
            &user,
            &claims,
            None,
            now
        ),
        Err(CalloutError::UserRefused("connection type not allowed"))
    );
}

#[test]
fn fuzz_entry_point_survives_odd_input() {
    for data in [
        &b""[..],
        b"eyJ",
        b"xkv1",
        b"{\"nats\":{\"type\":\"authorization_response\"}}",
        b"{\"sub\":\"x\",\"aud\":1}",
        &[0xff; 64],
    ] {
        let _ = fuzz_decode_response(data);
    }
}
