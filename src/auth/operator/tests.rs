use std::net::{IpAddr, Ipv4Addr};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;

use super::*;
use crate::auth::jwt::claims::{Permission, ResponsePermission as JwtResp, TimeRange};
use crate::auth::jwt::encode;
use crate::auth::{AuthConfig, Verdict};
use crate::config::load_str;

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../jwt/testdata/vectors.json")).unwrap()
}

fn v(name: &str) -> String {
    vectors()[name].as_str().unwrap().to_string()
}

fn kp(seed_name: &str) -> KeyPair {
    KeyPair::from_seed(&v(seed_name)).unwrap()
}

/// The spec's accepted config: operator, system account and account A preloaded.
fn vector_config(extra: &str) -> String {
    format!(
        "operator: \"{}\"\nsystem_account: {}\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{}\"\n  {}: \"{}\"\n}}\n{extra}",
        v("op_jwt"),
        v("sys_pub"),
        v("sys_pub"),
        v("sys_jwt"),
        v("acc_pub"),
        v("acc_jwt"),
    )
}

fn auth(text: &str) -> Result<AuthConfig, String> {
    let opts = load_str(text, Path::new("server.conf")).map_err(|e| e.to_string())?;
    AuthConfig::from_options(&opts).map_err(|e| e.to_string())
}

const NONCE: &str = "XHJzqXOFQGGxAnI";
const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn connect(jwt: &str, seed: Option<&KeyPair>) -> ConnectOptions {
    ConnectOptions {
        jwt: Some(jwt.to_string()),
        sig: seed.map(|k| URL_SAFE_NO_PAD.encode(k.sign(NONCE.as_bytes()).unwrap())),
        ..ConnectOptions::default()
    }
}

fn check(
    cfg: &AuthConfig,
    c: &ConnectOptions,
    now: SystemTime,
) -> Result<ClientIdentity, AuthFailure> {
    match cfg.verify_from(c, Some(NONCE), None, Some(LOCAL), now) {
        Verdict::Done(r) => r,
        Verdict::Slow(_) => panic!("JWT checks are never slow"),
    }
}

fn now() -> SystemTime {
    SystemTime::now()
}

/// A user JWT for account A (vectors), signed by `signer`, after `edit`.
fn user_jwt(
    user: &KeyPair,
    signer: &KeyPair,
    edit: impl FnOnce(&mut ClaimsData, &mut UserClaims),
) -> String {
    let mut data = ClaimsData {
        sub: user.public_key(),
        name: "u".into(),
        ..ClaimsData::default()
    };
    let mut claims = UserClaims {
        limits: UserPermissionLimits::unlimited(),
        ..UserClaims::default()
    };
    edit(&mut data, &mut claims);
    encode::user(data, claims, signer).unwrap()
}

#[test]
fn vector_chain_is_accepted() {
    let cfg = auth(&vector_config("")).unwrap();
    assert!(cfg.auth_required());
    assert!(cfg.nonce_required());
    assert!(cfg.default_identity(now()).is_none());
    let id = check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now()).unwrap();
    assert_eq!(id.user, v("u1_pub"));
    assert_eq!(Some(id.account), cfg.account_id(&v("acc_pub")));
    let perms = id.permissions.unwrap();
    assert!(perms.check_publish(b"a.x"));
    assert!(!perms.check_publish(b"b.x"));
    // Account payload 100 and subs 3 are the connection's limits (the user's are -1).
    assert_eq!(id.limits.max_payload, Some(100));
    assert_eq!(id.limits.max_subs, Some(3));
    assert_eq!(cfg.system_account(), cfg.account_id(&v("sys_pub")).unwrap());
    // Cached: a second CONNECT with the same JWT verifies the same way.
    let again = check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now()).unwrap();
    assert_eq!(again.user, v("u1_pub"));
}

#[test]
fn signing_key_users_need_issuer_account() {
    let cfg = auth(&vector_config("")).unwrap();
    let u2 = kp("u2_seed");
    let id = check(&cfg, &connect(&v("u2_jwt"), Some(&u2)), now()).unwrap();
    assert_eq!(Some(id.account), cfg.account_id(&v("acc_pub")));
    // Account default_permissions apply to a user without its own.
    let perms = id.permissions.unwrap();
    assert!(!perms.check_publish(b"forbidden.x"));
    assert!(perms.check_publish(b"ok"));
    assert_eq!(
        check(&cfg, &connect(&v("u2_noissuer_jwt"), Some(&u2)), now()).err(),
        Some(AuthFailure::UnknownAccount)
    );
}

#[test]
fn nonce_signature_and_bearer() {
    let cfg = auth(&vector_config("")).unwrap();
    let wrong = KeyPair::new_user();
    assert_eq!(
        check(&cfg, &connect(&v("u1_jwt"), Some(&wrong)), now()).err(),
        Some(AuthFailure::BadSignature)
    );
    assert_eq!(
        check(&cfg, &connect(&v("u1_jwt"), None), now()).err(),
        Some(AuthFailure::MissingSignature)
    );
    let id = check(&cfg, &connect(&v("u5_jwt"), None), now()).unwrap();
    assert_eq!(id.limits.max_payload, Some(10));
    assert_eq!(id.limits.max_subs, Some(1));
    assert_eq!(
        check(&cfg, &ConnectOptions::default(), now()).err(),
        Some(AuthFailure::MissingCredentials)
    );
}

#[test]
fn expiry_and_not_before() {
    let cfg = auth(&vector_config("")).unwrap();
    let u3 = kp("u3_seed");
    let exp = UNIX_EPOCH + Duration::from_secs(1796078447);
    let id = check(&cfg, &connect(&v("u3_jwt"), Some(&u3)), exp).unwrap();
    assert_eq!(id.deadline, Some(exp), "the connection is closed at exp");
    assert_eq!(
        check(
            &cfg,
            &connect(&v("u3_jwt"), Some(&u3)),
            exp + Duration::from_secs(1)
        )
        .err(),
        Some(AuthFailure::Jwt(JwtError::Expired))
    );
    let user = KeyPair::new_user();
    let later = encode::now_unix() + 3600;
    let token = user_jwt(&user, &kp("acc_seed"), |d, _| d.nbf = later);
    assert_eq!(
        check(&cfg, &connect(&token, Some(&user)), now()).err(),
        Some(AuthFailure::Jwt(JwtError::NotYetValid))
    );
}

#[test]
fn unknown_issuers_and_accounts_are_refused() {
    let cfg = auth(&vector_config("")).unwrap();
    let user = KeyPair::new_user();
    // Signed by an account that is not in the resolver.
    let stranger = KeyPair::new_account();
    let token = user_jwt(&user, &stranger, |_, _| {});
    assert_eq!(
        check(&cfg, &connect(&token, Some(&user)), now()).err(),
        Some(AuthFailure::UnknownAccount)
    );
    // Claims to be issued for A by a key that is not one of A's signing keys.
    let token = user_jwt(&user, &stranger, |_, c| c.issuer_account = v("acc_pub"));
    assert_eq!(
        check(&cfg, &connect(&token, Some(&user)), now()).err(),
        Some(AuthFailure::UnknownIssuer)
    );
    // Garbage.
    assert!(matches!(
        check(&cfg, &connect("garbage", Some(&user)), now()).err(),
        Some(AuthFailure::Jwt(_))
    ));
}

/// Config with account A re-signed with `edit` (by the operator signing key).
fn config_with_account(edit: impl FnOnce(&mut AccountClaims)) -> String {
    let (mut data, mut claims) = jwt::decode_account(&v("acc_jwt")).unwrap();
    edit(&mut claims);
    data.iat = 0;
    let token = encode::account(data, claims, &kp("opSK_seed")).unwrap();
    vector_config("").replace(&v("acc_jwt"), &token)
}

#[test]
fn revocations_are_enforced() {
    let u1_iat = jwt::decode(&v("u1_jwt")).unwrap().data.iat;
    let cfg = auth(&config_with_account(|a| {
        a.revocations.insert(v("u1_pub"), u1_iat);
    }))
    .unwrap();
    assert_eq!(
        check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now()).err(),
        Some(AuthFailure::Revoked)
    );
    // Revoked before the JWT was issued: still valid. `*` revokes everyone.
    let cfg = auth(&config_with_account(|a| {
        a.revocations.insert(v("u1_pub"), u1_iat - 1);
    }))
    .unwrap();
    assert!(check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now()).is_ok());
    let cfg = auth(&config_with_account(|a| {
        a.revocations.insert("*".into(), u1_iat);
    }))
    .unwrap();
    assert_eq!(
        check(&cfg, &connect(&v("u2_jwt"), Some(&kp("u2_seed"))), now()).err(),
        Some(AuthFailure::Revoked)
    );
}

#[test]
fn src_times_and_connection_types() {
    let cfg = auth(&vector_config("")).unwrap();
    let user = KeyPair::new_user();
    let acc = kp("acc_seed");
    let ok = user_jwt(&user, &acc, |_, c| {
        c.limits.src = vec!["127.0.0.0/8".into()]
    });
    assert!(check(&cfg, &connect(&ok, Some(&user)), now()).is_ok());
    let other = user_jwt(&user, &acc, |_, c| c.limits.src = vec!["10.0.0.0/8".into()]);
    assert_eq!(
        check(&cfg, &connect(&other, Some(&user)), now()).err(),
        Some(AuthFailure::SourceNotAllowed)
    );
    let ws_only = user_jwt(&user, &acc, |_, c| {
        c.limits.allowed_connection_types = vec!["WEBSOCKET".into()]
    });
    assert_eq!(
        check(&cfg, &connect(&ws_only, Some(&user)), now()).err(),
        Some(AuthFailure::ConnectionTypeNotAllowed)
    );
    // 10:00-12:00 UTC: inside at 11:00, closed at 12:00; outside at 13:00.
    let day = 1796078447 - 1796078447 % 86_400;
    let at = |h: u64| UNIX_EPOCH + Duration::from_secs(day + h * 3600);
    let window = user_jwt(&user, &acc, |_, c| {
        c.limits.times = vec![TimeRange {
            start: "10:00:00".into(),
            end: "12:00:00".into(),
        }];
        c.limits.times_location = "UTC".into();
    });
    let id = check(&cfg, &connect(&window, Some(&user)), at(11)).unwrap();
    assert_eq!(id.deadline, Some(at(12)));
    assert_eq!(
        check(&cfg, &connect(&window, Some(&user)), at(13)).err(),
        Some(AuthFailure::OutsideTimeWindow)
    );
    // A window across midnight.
    let night = user_jwt(&user, &acc, |_, c| {
        c.limits.times = vec![TimeRange {
            start: "22:00:00".into(),
            end: "02:00:00".into(),
        }];
        c.limits.times_location = "Etc/UTC".into();
    });
    assert!(check(&cfg, &connect(&night, Some(&user)), at(23)).is_ok());
    // The same 10:00-12:00 read in New York (UTC-5 in winter; `day` is in December): open
    // from 15:00 to 17:00 UTC.
    let new_york = user_jwt(&user, &acc, |_, c| {
        c.limits.times = vec![TimeRange {
            start: "10:00:00".into(),
            end: "12:00:00".into(),
        }];
        c.limits.times_location = "America/New_York".into();
    });
    assert_eq!(
        check(&cfg, &connect(&new_york, Some(&user)), at(11)).err(),
        Some(AuthFailure::OutsideTimeWindow)
    );
    let id = check(&cfg, &connect(&new_york, Some(&user)), at(16)).unwrap();
    assert_eq!(id.deadline, Some(at(17)));
    let nowhere = user_jwt(&user, &acc, |_, c| {
        c.limits.times = vec![TimeRange {
            start: "00:00:00".into(),
            end: "23:59:59".into(),
        }];
        c.limits.times_location = "Nowhere/Land".into();
    });
    assert_eq!(
        check(&cfg, &connect(&nowhere, Some(&user)), at(11)).err(),
        Some(AuthFailure::OutsideTimeWindow)
    );
}

#[test]
fn account_expiry_is_its_own_deadline() {
    let exp = 1796078447 + 3600;
    let (mut data, claims) = jwt::decode_account(&v("acc_jwt")).unwrap();
    data.iat = 0;
    data.exp = exp;
    let token = encode::account(data, claims, &kp("opSK_seed")).unwrap();
    let cfg = auth(&vector_config("").replace(&v("acc_jwt"), &token)).unwrap();
    let at = UNIX_EPOCH + Duration::from_secs(1796078447);
    let id = check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), at).unwrap();
    let exp_at = UNIX_EPOCH + Duration::from_secs(u64::try_from(exp).unwrap());
    assert_eq!(id.account_deadline, Some(exp_at));
    assert_eq!(id.deadline, None, "the user JWT itself does not expire");
}

#[test]
fn account_subs_are_counted_across_connections() {
    let cfg = auth(&config_with_account(|a| a.limits.subs = 2)).unwrap();
    let login = || check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now()).unwrap();
    let (first, second) = (login(), login());
    let mut a = AccountSubs::new(first.account_subs.clone().unwrap(), 0);
    let mut b = AccountSubs::new(second.account_subs.clone().unwrap(), 0);
    assert!(a.try_add());
    assert!(b.try_add());
    assert!(!a.try_add(), "the account holds 2");
    let op = cfg.operator().unwrap();
    assert_eq!(op.account_subscriptions(&v("acc_pub")), Some(2));
    b.remove();
    assert!(a.try_add());
    // A connection that goes gives back what it held.
    drop(a);
    assert_eq!(op.account_subscriptions(&v("acc_pub")), Some(0));
    assert!(b.is_for(&second.account_subs.clone().unwrap()));
    // No limit: nothing to count.
    let cfg = auth(&config_with_account(|a| a.limits.subs = -1)).unwrap();
    let id = check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now()).unwrap();
    assert!(id.account_subs.is_none());
}

#[test]
fn account_jwt_validation_marks_the_account_invalid() {
    use crate::auth::jwt::claims::{Export, ExportType};
    fn stream(subject: &str) -> Export {
        Export {
            subject: subject.into(),
            kind: Some(ExportType::Stream),
            ..Export::default()
        }
    }
    type Edit = Box<dyn Fn(&mut AccountClaims)>;
    let cases: Vec<(Edit, bool)> = vec![
        (Box::new(|a| a.exports = vec![stream("a.>")]), true),
        (
            Box::new(|a| {
                a.limits.exports = 3;
                a.limits.wildcards = false;
                a.exports = vec![stream("a.>")];
            }),
            false,
        ),
        (
            Box::new(|a| a.exports = vec![stream("a.>"), stream("a.b")]),
            false,
        ),
        (
            Box::new(|a| {
                a.exports = vec![Export {
                    kind: None,
                    ..stream("x")
                }]
            }),
            false,
        ),
    ];
    for (i, (edit, valid)) in cases.into_iter().enumerate() {
        let cfg = auth(&config_with_account(edit)).unwrap();
        let got = check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now());
        if valid {
            assert!(got.is_ok(), "case {i}: {got:?}");
        } else {
            assert_eq!(got.err(), Some(AuthFailure::AccountInvalid), "case {i}");
            assert!(
                cfg.warnings()
                    .iter()
                    .any(|w| w.contains("validation issues")),
                "case {i}: {:?}",
                cfg.warnings()
            );
        }
    }
}

#[test]
fn configured_account_signing_keys_admit_their_users() {
    let signer = KeyPair::new_account();
    let cfg = auth(&format!(
        "accounts {{ PROD: {{ signing_keys: [\"{}\"] }} }}\n",
        signer.public_key()
    ))
    .unwrap();
    assert!(cfg.nonce_required() && cfg.auth_required());
    let prod = cfg.account_id("PROD").unwrap();
    let user = KeyPair::new_user();
    let mut data = ClaimsData {
        sub: user.public_key(),
        ..ClaimsData::default()
    };
    let mut claims = UserClaims {
        limits: UserPermissionLimits::unlimited(),
        ..UserClaims::default()
    };
    claims.limits.payload = 64;
    let token = encode::user(data.clone(), claims.clone(), &signer).unwrap();
    let id = check(&cfg, &connect(&token, Some(&user)), now()).unwrap();
    assert_eq!(id.account, prod);
    assert_eq!(id.limits.max_payload, Some(64));
    // Bearer-less users must sign the nonce; other issuers are unknown.
    assert_eq!(
        check(&cfg, &connect(&token, None), now()).err(),
        Some(AuthFailure::MissingSignature)
    );
    let stranger = KeyPair::new_account();
    let token = encode::user(data.clone(), claims.clone(), &stranger).unwrap();
    assert_eq!(
        check(&cfg, &connect(&token, Some(&user)), now()).err(),
        Some(AuthFailure::UnknownAccount)
    );
    data.exp = 1;
    let token = encode::user(data, claims, &signer).unwrap();
    assert!(matches!(
        check(&cfg, &connect(&token, Some(&user)), now()).err(),
        Some(AuthFailure::Jwt(JwtError::Expired))
    ));
}

#[test]
fn scoped_signing_keys_apply_their_template() {
    let scoped = KeyPair::new_account();
    let scope = UserScope {
        kind: "user_scope".into(),
        key: scoped.public_key(),
        role: "dev".into(),
        template: UserPermissionLimits {
            permissions: PermissionClaims {
                publish: Permission {
                    allow: vec!["dev.{{name()}}.>".into()],
                    deny: vec![],
                },
                subscribe: Permission::default(),
                resp: Some(JwtResp { max: 0, ttl: 0 }),
            },
            subs: 7,
            payload: -1,
            data: -1,
            ..UserPermissionLimits::default()
        },
        description: String::new(),
    };
    let cfg = auth(&config_with_account(|a| {
        a.signing_keys.push(SigningKey::Scoped(Box::new(scope)));
    }))
    .unwrap();
    let user = KeyPair::new_user();
    let token = encode::user(
        ClaimsData {
            sub: user.public_key(),
            name: "bob".into(),
            ..ClaimsData::default()
        },
        UserClaims {
            issuer_account: v("acc_pub"),
            ..UserClaims::default()
        },
        &scoped,
    )
    .unwrap();
    let id = check(&cfg, &connect(&token, Some(&user)), now()).unwrap();
    let perms = id.permissions.unwrap();
    assert!(perms.check_publish(b"dev.bob.x"));
    assert!(!perms.check_publish(b"dev.alice.x"));
    assert!(perms.allow_responses().is_some());
    assert_eq!(id.limits.max_subs, Some(3), "account subs 3 < template 7");
    // A scoped user that sets its own limits is refused.
    let own = user_jwt(&user, &scoped, |_, c| c.issuer_account = v("acc_pub"));
    assert_eq!(
        check(&cfg, &connect(&own, Some(&user)), now()).err(),
        Some(AuthFailure::ScopedUserHasLimits)
    );
}

#[test]
fn bearer_is_refused_when_the_account_disallows_it() {
    let cfg = auth(&config_with_account(|a| a.limits.disallow_bearer = true)).unwrap();
    assert_eq!(
        check(&cfg, &connect(&v("u5_jwt"), None), now()).err(),
        Some(AuthFailure::BearerNotAllowed)
    );
}

#[test]
fn config_errors_use_nats_server_wording() {
    let err = |extra: &str| auth(&vector_config(extra)).unwrap_err();
    assert!(
        err("authorization { users: [{user: a, password: b}] }")
            .contains("operators do not allow users to be configured directly")
    );
    assert!(
        err("accounts { X: {} }")
            .contains("operators do not allow Accounts to be configured directly")
    );
    assert!(err("authorization { token: abc }").contains("operators do not allow a token"));
    assert!(err("no_auth_user: foo").contains("no_auth_user not compatible with Trusted Operator"));
    assert!(
        err(&format!("trusted_keys: [\"{}\"]", v("op_pub")))
            .contains("conflicting options for 'TrustedKeys' and 'TrustedOperators'")
    );
    let text = vector_config("").replace(
        &format!("system_account: {}", v("sys_pub")),
        &format!("system_account: {}", v("acc_pub")),
    );
    assert!(
        auth(&text)
            .unwrap_err()
            .contains("system_account in config and operator JWT must be identical")
    );
    let text = vector_config("").replace("resolver: MEMORY", "resolver: { type: cache, dir: jwt }");
    assert!(
        auth(&text).unwrap_err().contains("not supported"),
        "{}",
        auth(&text).unwrap_err()
    );
    let text = vector_config("").replace("resolver: MEMORY\n", "");
    assert!(
        auth(&text)
            .unwrap_err()
            .contains("operators require an account resolver to be configured")
    );
    let text = vector_config("").replace(&v("acc_jwt"), &v("u1_jwt"));
    assert!(auth(&text).unwrap_err().contains("preload account error"));
    let err = auth("operator: \"/nonexistent/op.jwt\"\nresolver: MEMORY\n").unwrap_err();
    assert!(
        err.contains("error parsing operator JWT: open /nonexistent/op.jwt"),
        "{err}"
    );
    let err = auth("trusted_keys: [\"XYZ\"]\nresolver: MEMORY\n").unwrap_err();
    assert!(
        err.contains("trust key \"XYZ\" required to be a valid public operator nkey"),
        "{err}"
    );
    // Errors never quote a JWT.
    let err = auth("operator: \"eyJxx.yy.zz\"\nresolver: MEMORY\n").unwrap_err();
    assert!(
        err.contains("error parsing operator JWT") && !err.contains("eyJxx"),
        "{err}"
    );
}

#[test]
fn trusted_keys_alone_trust_accounts_they_sign() {
    // trusted_keys names the operator signing key that signed account A.
    let text = format!(
        "trusted_keys: [\"{}\"]\nresolver: MEMORY\nresolver_preload: {{ {}: \"{}\" }}\n",
        v("opSK_pub"),
        v("acc_pub"),
        v("acc_jwt")
    );
    let cfg = auth(&text).unwrap();
    assert!(check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now()).is_ok());
    // Trusting only the identity key: A (signed by the signing key) is not trusted.
    let text = text.replace(&v("opSK_pub"), &v("op_pub"));
    assert!(
        auth(&text)
            .unwrap_err()
            .contains("not signed by a trusted operator key")
    );
}

#[test]
fn operator_from_a_file_decorated_or_not() {
    let dir = std::env::temp_dir().join(format!("ringnats-op-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("op.jwt");
    std::fs::write(&plain, v("op_jwt")).unwrap();
    let decorated = dir.join("op_decorated.jwt");
    std::fs::write(
        &decorated,
        format!(
            "-----BEGIN NATS OPERATOR JWT-----\n{}\n------END NATS OPERATOR JWT------\n",
            v("op_jwt")
        ),
    )
    .unwrap();
    for path in [&plain, &decorated] {
        let text = vector_config("").replace(
            &format!("operator: \"{}\"", v("op_jwt")),
            &format!("operator: \"{}\"", path.display()),
        );
        let cfg = auth(&text).unwrap();
        assert!(check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now()).is_ok());
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cidrs() {
    let c = Cidr::parse("10.1.0.0/16").unwrap();
    assert!(c.contains("10.1.2.3".parse().unwrap()));
    assert!(!c.contains("10.2.0.1".parse().unwrap()));
    assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
    let all = Cidr::parse("0.0.0.0/0").unwrap();
    assert!(all.contains("1.2.3.4".parse().unwrap()));
    let v6 = Cidr::parse("fe80::/10").unwrap();
    assert!(v6.contains("fe80::1".parse().unwrap()));
    assert!(!v6.contains("10.0.0.1".parse().unwrap()));
    assert_eq!(Cidr::parse("10.0.0.1"), None);
    assert_eq!(Cidr::parse("10.0.0.1/33"), None);
}

#[test]
fn min_limits() {
    assert_eq!(min_limit(-1, -1), None);
    assert_eq!(min_limit(5, -1), Some(5));
    assert_eq!(min_limit(-1, 7), Some(7));
    assert_eq!(min_limit(9, 7), Some(7));
    assert_eq!(min_limit(0, -1), Some(0));
}

#[test]
fn account_connection_limit_counts_live_identities() {
    let cfg = auth(&config_with_account(|a| a.limits.conn = 1)).unwrap();
    let login = || check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now());
    let first = login().unwrap();
    assert_eq!(login().err(), Some(AuthFailure::AccountConnectionsExceeded));
    let op = cfg.operator().unwrap();
    assert_eq!(op.account_connections(&v("acc_pub")), Some(1));
    // A refused CONNECT holds nothing; dropping the identity (the connection is gone) frees
    // the slot.
    drop(first);
    assert_eq!(op.account_connections(&v("acc_pub")), Some(0));
    let again = login().unwrap();
    assert!(again.account_conn.is_some());
    // No limit (-1): nothing is counted.
    let cfg = auth(&config_with_account(|a| a.limits.conn = -1)).unwrap();
    let id = check(&cfg, &connect(&v("u1_jwt"), Some(&kp("u1_seed"))), now()).unwrap();
    assert!(id.account_conn.is_none());
}

#[test]
fn account_jwt_imports_map_subjects_like_nats_server() {
    use crate::auth::jwt::claims::{Export, ExportType, Import};
    let exporter = kp("acc_seed");
    let importer = KeyPair::new_account();
    let export = |kind, subject: &str, token_req| Export {
        subject: subject.into(),
        kind: Some(kind),
        token_req,
        ..Export::default()
    };
    let exporter_jwt = {
        let (mut data, mut claims) = jwt::decode_account(&v("acc_jwt")).unwrap();
        data.iat = 0;
        claims.exports = vec![
            export(ExportType::Stream, "feed.>", false),
            export(ExportType::Service, "svc.*", false),
            export(ExportType::Service, "tok.svc", true),
        ];
        encode::account(data, claims, &kp("opSK_seed")).unwrap()
    };
    let import = |kind, subject: &str| Import {
        subject: subject.into(),
        account: exporter.public_key(),
        kind: Some(kind),
        ..Import::default()
    };
    let activation_token = {
        let data = ClaimsData {
            sub: importer.public_key(),
            ..ClaimsData::default()
        };
        let act = crate::auth::jwt::ActivationClaims {
            subject: "tok.svc".into(),
            import_type: Some(ExportType::Service),
            ..Default::default()
        };
        encode::activation(data, act, &exporter).unwrap()
    };
    let importer_jwt = {
        let data = ClaimsData {
            sub: importer.public_key(),
            name: "IMP".into(),
            ..ClaimsData::default()
        };
        let mut claims = AccountClaims {
            limits: jwt::AccountLimits::unlimited(),
            ..AccountClaims::default()
        };
        claims.imports = vec![
            // Stream with the deprecated `to` as a prefix.
            Import {
                to: "in".into(),
                ..import(ExportType::Stream, "feed.a.>")
            },
            // Service published locally as `ask.*`, in the exporter `svc.*`.
            Import {
                local_subject: "ask.*".into(),
                ..import(ExportType::Service, "svc.*")
            },
            // Service through `to` (deprecated): published as `q`, in the exporter `svc.q`.
            Import {
                to: "svc.q".into(),
                ..import(ExportType::Service, "q")
            },
            // Not exported at all: skipped.
            import(ExportType::Stream, "other.>"),
        ];
        let mut tok = import(ExportType::Service, "tok.svc");
        tok.token = activation_token;
        claims.imports.push(tok);
        encode::account(data, claims, &kp("opSK_seed")).unwrap()
    };
    let config = vector_config("")
        .replace(&v("acc_jwt"), &exporter_jwt)
        .replace(
            "resolver_preload: {",
            &format!(
                "resolver_preload: {{\n  {}: \"{importer_jwt}\"",
                importer.public_key()
            ),
        );
    let cfg = auth(&config).unwrap();
    let exp_id = cfg.account_id(&exporter.public_key()).unwrap();
    let imp_id = cfg.account_id(&importer.public_key()).unwrap();
    let table = cfg.imports();
    let mut out = crate::auth::ImportMatches::new();
    table.streams_for(exp_id, b"feed.a.b", &mut out);
    let got: Vec<(u32, Vec<u8>)> = out.iter().map(|(id, s)| (id, s.to_vec())).collect();
    assert_eq!(got, vec![(imp_id, b"in.feed.a.b".to_vec())]);
    out.clear();
    table.streams_for(exp_id, b"feed.z", &mut out);
    assert!(out.is_empty(), "only feed.a.> was imported");
    let mut buf = Vec::new();
    let (to, _) = table.service_for(imp_id, b"ask.x", &mut buf).unwrap();
    assert_eq!((to, buf.as_slice()), (exp_id, &b"svc.x"[..]));
    let (to, _) = table.service_for(imp_id, b"q", &mut buf).unwrap();
    assert_eq!((to, buf.as_slice()), (exp_id, &b"svc.q"[..]));
    // The token-protected service is imported with a valid token.
    assert!(table.service_for(imp_id, b"tok.svc", &mut buf).is_some());
    assert!(
        cfg.warnings()
            .iter()
            .any(|w| w.contains("other.>") && w.contains("skipped")),
        "{:?}",
        cfg.warnings()
    );
}
