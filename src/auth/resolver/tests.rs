use std::path::Path;

use super::*;
use crate::config::load_str;

fn resolver_of(text: &str) -> Result<Resolver, ConfigError> {
    let opts = load_str(text, Path::new("t.conf")).expect("config parses");
    let pos = Pos {
        file: Path::new("t.conf").into(),
        line: 1,
    };
    parse(&opts, &pos)
}

#[test]
fn full_resolver_keys_and_defaults() {
    let dir = std::env::temp_dir().join(format!("ringnats-resolver-{}", std::process::id()));
    let text = format!(
        "resolver: {{ type: FULL, dir: \"{}\", allow_delete: true, interval: \"2m\", \
         timeout: \"1.9s\", limit: 5, unknown_key: 1 }}",
        dir.display()
    );
    let Resolver::Full(full) = resolver_of(&text).expect("full") else {
        panic!("not full");
    };
    assert_eq!(full.dir, dir);
    assert!(full.allow_delete);
    assert_eq!(full.interval, Duration::from_secs(120));
    assert_eq!(full.timeout, Duration::from_millis(1900));
    assert_eq!(full.limit, 5);
    let text = format!("resolver: {{ type: full, dir: \"{}\" }}", dir.display());
    let Resolver::Full(full) = resolver_of(&text).expect("full") else {
        panic!("not full");
    };
    assert_eq!(
        (full.allow_delete, full.interval, full.timeout, full.limit),
        (false, INTERVAL_DEFAULT, FETCH_TIMEOUT_DEFAULT, usize::MAX)
    );
    assert_eq!(resolver_of("resolver: MEMORY").ok(), Some(Resolver::Memory));
    assert_eq!(resolver_of("resolver: mem").ok(), Some(Resolver::Memory));
}

#[test]
fn bad_resolvers_are_refused_with_a_reason() {
    let refused = |text: &str, want: &str| {
        let err = resolver_of(text).expect_err(text).to_string();
        assert!(err.contains(want), "{text}: {err}");
    };
    refused("resolver: { type: full }", "dir has no value");
    refused(
        "resolver: { type: full, dir: \"/etc/hostname\" }",
        "accessible directory",
    );
    refused(
        "resolver: { type: full, dir: \"/tmp\", ttl: \"1h\" }",
        "FULL does not accept ttl",
    );
    refused("resolver: { type: cache, dir: \"/tmp\" }", "not supported");
    refused("resolver: { type: other, dir: \"/tmp\" }", "should be MEM");
    refused("resolver: \"URL(http://x/)\"", "not supported");
    refused(
        "resolver: { type: full, dir: \"/tmp\", allow_delete: 3 }",
        "allow_delete",
    );
    refused(
        "resolver: { type: full, dir: \"/tmp\", timeout: \"0s\" }",
        "too small",
    );
}

#[test]
fn claims_subjects_by_resolver() {
    let full = Resolver::Full(FullResolver {
        dir: "/tmp".into(),
        allow_delete: false,
        interval: INTERVAL_DEFAULT,
        timeout: FETCH_TIMEOUT_DEFAULT,
        limit: usize::MAX,
    });
    let key = "ADWUSKGGFDI4FRXK5EBTRECZSVQSSWJHHJOGH6JWG3AUMFFMQ435D6HD";
    let update = Some(ClaimsRequest::Update(Some(key.to_string())));
    for resolver in [&full, &Resolver::Memory] {
        let by = |s: String| resolver.claims_request(s.as_bytes());
        assert_eq!(by(format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.UPDATE")), update);
        assert_eq!(by(format!("$SYS.ACCOUNT.{key}.CLAIMS.UPDATE")), update);
        assert_eq!(by(format!("$SYS.REQ.ACCOUNT.{key}.CONNZ")), None);
        assert_eq!(by("$SYS.REQ.CLAIMS.PACK".into()), None);
    }
    let by = |s: &str| full.claims_request(s.as_bytes());
    assert_eq!(
        by("$SYS.REQ.CLAIMS.UPDATE"),
        Some(ClaimsRequest::Update(None))
    );
    assert_eq!(by("$SYS.REQ.CLAIMS.LIST"), Some(ClaimsRequest::List));
    assert_eq!(by("$SYS.REQ.CLAIMS.DELETE"), Some(ClaimsRequest::Delete));
    assert_eq!(
        by(&format!("$SYS.REQ.ACCOUNT.{key}.CLAIMS.LOOKUP")),
        Some(ClaimsRequest::Lookup(key.to_string()))
    );
    // The memory resolver answers the per-account updates only.
    assert_eq!(
        Resolver::Memory.claims_request(b"$SYS.REQ.CLAIMS.UPDATE"),
        None
    );
    assert_eq!(
        Resolver::Memory.claims_request(b"$SYS.REQ.CLAIMS.LIST"),
        None
    );
}

#[test]
fn newer_means_a_later_or_equal_iat_and_another_jti() {
    use crate::auth::jwt::{AccountClaims, ClaimsData, encode};
    let (op, acc) = (
        nkeys::KeyPair::new_operator(),
        nkeys::KeyPair::new_account(),
    );
    let at = |iat: i64, name: &str| {
        let data = ClaimsData {
            sub: acc.public_key(),
            name: name.into(),
            iat,
            ..ClaimsData::default()
        };
        encode::account(data, AccountClaims::default(), &op).expect("encode")
    };
    let (old, new, same_second) = (at(100, "a"), at(200, "b"), at(200, "c"));
    assert!(is_newer(&new, &old));
    assert!(!is_newer(&old, &new));
    assert!(is_newer(&same_second, &new));
    assert!(!is_newer(&new, &new));
    assert!(is_newer(&new, "garbage"));
}
