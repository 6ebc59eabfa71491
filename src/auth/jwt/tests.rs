use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;

use super::*;

/// `spec/vectors.json`: keys and JWTs that nats-server 2.9.10 accepted.
pub(crate) fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("testdata/vectors.json")).unwrap()
}

fn vector(name: &str) -> String {
    vectors()[name].as_str().unwrap().to_string()
}

/// Re-encodes the payload of `token` after `edit` and signs it with `signer`.
fn resigned(token: &str, signer: &KeyPair, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut parts = token.split('.');
    let header = parts.next().unwrap();
    let payload = URL_SAFE_NO_PAD.decode(parts.next().unwrap()).unwrap();
    let mut json: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    edit(&mut json);
    json["iss"] = signer.public_key().into();
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap());
    let signed = format!("{header}.{body}");
    let sig = URL_SAFE_NO_PAD.encode(signer.sign(signed.as_bytes()).unwrap());
    format!("{signed}.{sig}")
}

fn account_seed() -> KeyPair {
    KeyPair::from_seed(&vector("acc_seed")).unwrap()
}

#[test]
fn every_vector_jwt_is_accepted() {
    let v = vectors();
    let mut seen = 0;
    for (name, value) in v.as_object().unwrap() {
        if !name.ends_with("_jwt") {
            continue;
        }
        let token = value.as_str().unwrap();
        let jwt = decode(token).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(jwt.version, 2, "{name}");
        seen += 1;
    }
    assert_eq!(seen, 10);
}

#[test]
fn vector_claims_are_read() {
    let (data, op) = decode_operator(&vector("op_jwt")).unwrap();
    assert_eq!(data.sub, vector("op_pub"));
    assert_eq!(data.iss, data.sub);
    assert_eq!(op.signing_keys, vec![vector("opSK_pub")]);
    assert_eq!(op.system_account, vector("sys_pub"));

    let (data, acc) = decode_account(&vector("acc_jwt")).unwrap();
    assert_eq!(data.iss, vector("opSK_pub"));
    assert_eq!(data.sub, vector("acc_pub"));
    assert_eq!(
        (acc.limits.conn, acc.limits.subs, acc.limits.payload),
        (3, 3, 100)
    );
    assert!(acc.limits.wildcards);
    assert_eq!(acc.signing_keys[0].key(), vector("accSK_pub"));
    assert_eq!(acc.default_permissions.publish.deny, vec!["forbidden.>"]);

    let (data, u1) = decode_user(&vector("u1_jwt")).unwrap();
    assert_eq!(data.sub, vector("u1_pub"));
    assert_eq!(u1.limits.permissions.publish.allow, vec!["a.>", "_INBOX.>"]);
    assert_eq!(u1.limits.subs, -1);
    assert!(u1.issuer_account.is_empty());

    let (_, u2) = decode_user(&vector("u2_jwt")).unwrap();
    assert_eq!(u2.issuer_account, vector("acc_pub"));
    let (data, _) = decode_user(&vector("u3_jwt")).unwrap();
    assert_eq!(data.exp, 1796078447);
    let (_, u5) = decode_user(&vector("u5_jwt")).unwrap();
    assert!(u5.limits.bearer_token);
    assert_eq!((u5.limits.subs, u5.limits.payload), (1, 10));
}

#[test]
fn the_creds_vector_parses() {
    let creds = creds::parse(&vector("u1_creds")).unwrap();
    assert_eq!(creds.jwt(), vector("u1_jwt"));
    assert_eq!(creds.seed(), vector("u1_seed"));
    assert_eq!(
        creds::format(&vector("u1_jwt"), &vector("u1_seed")),
        vector("u1_creds")
    );
}

#[test]
fn padding_is_tolerated() {
    let token = vector("u1_jwt");
    let padded: Vec<String> = token
        .split('.')
        .map(|p| format!("{p}{}", "=".repeat((4 - p.len() % 4) % 4)))
        .collect();
    let padded_token = padded.join(".");
    assert_ne!(padded_token, token);
    // The signature covers the bytes as sent, so only the signature part may be padded freely.
    let sig_padded = format!(
        "{}.{}.{}",
        token.split('.').next().unwrap(),
        token.split('.').nth(1).unwrap(),
        padded[2]
    );
    assert!(decode(&sig_padded).is_ok());
}

#[test]
fn times_are_checked() {
    let jwt = decode(&vector("u3_jwt")).unwrap();
    assert_eq!(
        jwt.check_times(1796078447),
        Ok(()),
        "now == exp is still valid"
    );
    assert_eq!(jwt.check_times(1796078448), Err(JwtError::Expired));
    let nbf = resigned(&vector("u1_jwt"), &account_seed(), |j| {
        j["nbf"] = 2000.into()
    });
    let jwt = decode(&nbf).unwrap();
    assert_eq!(jwt.check_times(1999), Err(JwtError::NotYetValid));
    assert_eq!(jwt.check_times(2000), Ok(()));
}

#[test]
fn garbage_is_refused_with_a_typed_error() {
    let token = vector("u1_jwt");
    let cases: Vec<(String, JwtError)> = vec![
        (String::new(), JwtError::NotThreeParts),
        ("garbage".into(), JwtError::NotThreeParts),
        ("a.b.c.d".into(), JwtError::NotThreeParts),
        ("!!.b.c".into(), JwtError::Base64),
        (token[..token.len() / 2].into(), JwtError::NotThreeParts),
        (token[..token.len() - 10].into(), JwtError::Signature),
        (format!("{token}!"), JwtError::Base64),
        ("x".repeat(JWT_BYTES_MAX + 1), JwtError::TooLong),
    ];
    for (input, want) in cases {
        let got = decode(&input).err();
        assert_eq!(got, Some(want), "input of {} bytes", input.len());
    }
}

#[test]
fn wrong_header_is_refused() {
    let token = vector("u1_jwt");
    let rest = token.split_once('.').unwrap().1;
    let with_header = |h: &str| format!("{}.{rest}", URL_SAFE_NO_PAD.encode(h));
    assert_eq!(
        decode(&with_header(r#"{"typ":"JWT","alg":"HS256"}"#)).err(),
        Some(JwtError::Algorithm)
    );
    assert_eq!(
        decode(&with_header(r#"{"typ":"JWT","alg":"ed25519-nkeyx"}"#)).err(),
        Some(JwtError::Algorithm)
    );
    assert_eq!(
        decode(&with_header(r#"{"typ":"JWS","alg":"ed25519-nkey"}"#)).err(),
        Some(JwtError::HeaderType)
    );
    assert_eq!(
        decode(&with_header("not json")).err(),
        Some(JwtError::Header)
    );
    // Case-insensitive, like nats-io/jwt; the signature still covers the original header.
    assert_eq!(
        decode(&with_header(r#"{"typ":"jwt","alg":"ED25519-NKEY"}"#)).err(),
        Some(JwtError::Signature)
    );
}

#[test]
fn wrong_claim_types_are_refused() {
    let kp = account_seed();
    let u1 = vector("u1_jwt");
    let bad = |edit: fn(&mut serde_json::Value)| decode(&resigned(&u1, &kp, edit)).err();
    assert_eq!(
        bad(|j| j["nats"]["subs"] = "many".into()),
        Some(JwtError::Claims)
    );
    assert_eq!(bad(|j| j["iat"] = "now".into()), Some(JwtError::Claims));
    assert_eq!(bad(|j| j["nats"]["pub"] = 5.into()), Some(JwtError::Claims));
    assert_eq!(
        bad(|j| j["nats"]["bearer_token"] = "yes".into()),
        Some(JwtError::Claims)
    );
    assert_eq!(
        bad(|j| j["nats"]["version"] = 3.into()),
        Some(JwtError::NewerVersion)
    );
    assert_eq!(
        bad(|j| j["nats"]["type"] = "cluster".into()),
        Some(JwtError::UnsupportedType)
    );
    assert_eq!(bad(|j| j["sub"] = "ADFJHL".into()), Some(JwtError::Subject));
    // nulls take Go's zero values.
    assert_eq!(bad(|j| j["nats"]["subs"] = serde_json::Value::Null), None);
}

#[test]
fn wrong_signer_kind_and_signature_are_refused() {
    let u1 = vector("u1_jwt");
    // A user JWT signed by an operator key: nats-io/jwt "unable to validate expected prefixes".
    let op = KeyPair::from_seed(&vector("op_seed")).unwrap();
    assert_eq!(
        decode(&resigned(&u1, &op, |_| {})).err(),
        Some(JwtError::Issuer)
    );
    // Claims changed after signing.
    let (head, _) = u1.rsplit_once('.').unwrap();
    let other_sig = vector("u2_jwt").rsplit_once('.').unwrap().1.to_string();
    assert_eq!(
        decode(&format!("{head}.{other_sig}")).err(),
        Some(JwtError::Signature)
    );
    // An issuer that is not a valid key.
    let mut json: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(u1.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    json["iss"] = "AXXXX".into();
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&json).unwrap());
    let forged = format!("{}.{body}.{other_sig}", u1.split('.').next().unwrap());
    assert_eq!(decode(&forged).err(), Some(JwtError::Issuer));
}

#[test]
fn typed_decoders_check_the_type() {
    assert_eq!(
        decode_user(&vector("acc_jwt")).err(),
        Some(JwtError::WrongType)
    );
    assert_eq!(
        decode_account(&vector("u1_jwt")).err(),
        Some(JwtError::WrongType)
    );
    assert_eq!(
        decode_operator(&vector("acc_jwt")).err(),
        Some(JwtError::WrongType)
    );
}

#[test]
fn v1_tokens_are_read_and_signed_over_the_payload() {
    let kp = account_seed();
    let user = KeyPair::new_user();
    let payload = serde_json::json!({
        "jti": "X", "iat": 1, "iss": kp.public_key(), "sub": user.public_key(), "name": "v1",
        "type": "user", "issuer_account": "", "tags": ["a"],
        "nats": {"pub": {"allow": ["v1.>"]}, "sub": {}, "subs": -1},
    });
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    let sig = URL_SAFE_NO_PAD.encode(kp.sign(body.as_bytes()).unwrap());
    let jwt = decode(&format!("{header}.{body}.{sig}")).unwrap();
    assert_eq!(jwt.version, 1);
    let u = jwt.as_user().unwrap();
    assert_eq!(u.limits.permissions.publish.allow, vec!["v1.>"]);
    assert_eq!(u.generic.kind, "user");
    // Signed v2-style (over header.payload), a v1 token does not verify.
    let sig2 = URL_SAFE_NO_PAD.encode(kp.sign(format!("{header}.{body}").as_bytes()).unwrap());
    assert_eq!(
        decode(&format!("{header}.{body}.{sig2}")).err(),
        Some(JwtError::Signature)
    );
}

#[test]
fn errors_never_show_the_token() {
    let token = vector("u1_jwt");
    let broken = format!("{token}x");
    let err = decode(&broken).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("eyJ"), "{shown}");
}

#[test]
fn scoped_signing_keys_and_src_strings_are_read() {
    let op = KeyPair::from_seed(&vector("opSK_seed")).unwrap();
    let token = resigned(&vector("acc_jwt"), &op, |j| {
        j["nats"]["signing_keys"] = serde_json::json!([
            "ABXHUHG5FGYLPD6RHL2MKWMP572O6KUXCZXDZJXS4T57ZTMAKBN7DAQI",
            {"kind": "user_scope", "key": "ADFJHLAXAUMHA4OWPOB4P7YO72AQR2HMIUYFOXLXE2DZGM633K7HZVXK",
             "role": "r", "template": {"pub": {"allow": ["x"]}, "subs": 5}}
        ]);
    });
    let (_, acc) = decode_account(&token).unwrap();
    match &acc.signing_keys[1] {
        SigningKey::Scoped(s) => {
            assert_eq!(s.role, "r");
            assert_eq!(s.template.subs, 5);
            assert_eq!(s.template.permissions.publish.allow, vec!["x"]);
        }
        other => panic!("{other:?}"),
    }
    let bad_scope = resigned(&vector("acc_jwt"), &op, |j| {
        j["nats"]["signing_keys"] = serde_json::json!([{"kind": "other", "key": "A"}]);
    });
    assert_eq!(decode(&bad_scope).err(), Some(JwtError::Claims));
    let src = resigned(&vector("u1_jwt"), &account_seed(), |j| {
        j["nats"]["src"] = " 10.0.0.0/8, 127.0.0.1/32 ,".into();
    });
    let (_, u) = decode_user(&src).unwrap();
    assert_eq!(u.limits.src, vec!["10.0.0.0/8", "127.0.0.1/32"]);
}

#[test]
fn fuzz_decode_survives_vectors_and_mutations() {
    let v = vectors();
    for (_, value) in v.as_object().unwrap() {
        let text = value.as_str().unwrap();
        fuzz_decode(text.as_bytes());
        let bytes = text.as_bytes();
        for cut in (0..bytes.len()).step_by(7) {
            fuzz_decode(&bytes[..cut]);
            let mut flipped = bytes.to_vec();
            flipped[cut] ^= 0x41;
            fuzz_decode(&flipped);
        }
    }
    for payload in [
        &b"{}"[..],
        b"null",
        b"[]",
        br#"{"nats":{"type":"user","version":2}}"#,
    ] {
        fuzz_decode(payload);
    }
}
