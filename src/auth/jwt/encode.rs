//! Writing NATS JWT v2 tokens: what `ringnats jwt` prints and the tests build fixtures with.
//!
//! Cold: a tool runs it once. Invariant: the output is what nats-io/jwt v2 `ClaimsData.encode`
//! writes (header `{"typ":"JWT","alg":"ed25519-nkey"}`, base64url without padding, `jti` the
//! base32 SHA-512/256 of the common claims with `jti` empty, `nats.version` 2, Ed25519 by the
//! issuer over `header.payload`), so nats-server 2.9.10 accepts it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::KeyPair;
use serde::Serialize;
use sha2::{Digest, Sha512_256};

use crate::auth::jwt::claims::{
    AccountClaims, ActivationClaims, ClaimsData, GenericFields, OperatorClaims, Payload, UserClaims,
};

/// The v2 header, as Go marshals it.
const HEADER_JSON: &[u8] = br#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// Why a token could not be written.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the signing key has no seed")]
    NoSeed,
    #[error("signing failed")]
    Sign,
    #[error("claims do not serialise: {0}")]
    Json(#[from] serde_json::Error),
}

/// Signs an operator JWT (`data.sub` must be set; `iss` and `jti` are filled in).
pub fn operator(
    mut data: ClaimsData,
    mut nats: OperatorClaims,
    signer: &KeyPair,
) -> Result<String, EncodeError> {
    set_generic(&mut nats.generic, "operator");
    sign(&mut data, &nats, signer)
}

/// Signs an account JWT.
pub fn account(
    mut data: ClaimsData,
    mut nats: AccountClaims,
    signer: &KeyPair,
) -> Result<String, EncodeError> {
    set_generic(&mut nats.generic, "account");
    sign(&mut data, &nats, signer)
}

/// Signs a user JWT.
pub fn user(
    mut data: ClaimsData,
    mut nats: UserClaims,
    signer: &KeyPair,
) -> Result<String, EncodeError> {
    set_generic(&mut nats.generic, "user");
    sign(&mut data, &nats, signer)
}

/// Signs an activation JWT (`data.sub` is the importing account).
pub fn activation(
    mut data: ClaimsData,
    mut nats: ActivationClaims,
    signer: &KeyPair,
) -> Result<String, EncodeError> {
    set_generic(&mut nats.generic, "activation");
    sign(&mut data, &nats, signer)
}

/// Signs a token of another claim type (the auth callout's `authorization_request`): `nats`
/// must already carry its `type` and `version`.
pub fn claims<T: Serialize>(
    mut data: ClaimsData,
    nats: &T,
    signer: &KeyPair,
) -> Result<String, EncodeError> {
    sign(&mut data, nats, signer)
}

/// Unix seconds now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn set_generic(generic: &mut GenericFields, kind: &str) {
    generic.kind = kind.to_string();
    generic.version = 2;
}

/// nats-io/jwt `doEncode`.
fn sign<T: Serialize>(
    data: &mut ClaimsData,
    nats: &T,
    signer: &KeyPair,
) -> Result<String, EncodeError> {
    data.iss = signer.public_key();
    if data.iat == 0 {
        data.iat = now_unix();
    }
    data.jti = String::new();
    data.jti = jti(data)?;
    let payload = Payload {
        data: data.clone(),
        nats,
    };
    let header = URL_SAFE_NO_PAD.encode(HEADER_JSON);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload)?);
    let signed = format!("{header}.{body}");
    if signer.seed().is_err() {
        return Err(EncodeError::NoSeed);
    }
    let sig = signer
        .sign(signed.as_bytes())
        .map_err(|_| EncodeError::Sign)?;
    Ok(format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig)))
}

/// nats-io/jwt `ClaimsData.hash`.
fn jti(data: &ClaimsData) -> Result<String, EncodeError> {
    let json = serde_json::to_vec(data)?;
    let digest = Sha512_256::digest(&json);
    Ok(data_encoding::BASE32_NOPAD.encode(&digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::{decode_operator, decode_user};

    #[test]
    fn jti_matches_the_go_library_on_a_vector() {
        // The operator JWT of spec/vectors.json: its jti is Go's hash of these claims.
        let data = ClaimsData {
            iat: 1796078447,
            iss: "OCFIRY65OQE7DFP5KLNS2PF2LVZMUZYJX4OZIEQ36N2IQANUB5XVYOCS".into(),
            name: "OP".into(),
            sub: "OCFIRY65OQE7DFP5KLNS2PF2LVZMUZYJX4OZIEQ36N2IQANUB5XVYOCS".into(),
            ..ClaimsData::default()
        };
        assert_eq!(
            jti(&data).unwrap(),
            "BDL7E6FHPYSTRENSEE6JPMVC3URQJYVJDBV5PAPCTQUDLI3IB5DA"
        );
    }

    #[test]
    fn encoded_tokens_decode() {
        let op = KeyPair::new_operator();
        let data = ClaimsData {
            sub: op.public_key(),
            name: "OP".into(),
            ..ClaimsData::default()
        };
        let token = operator(data, OperatorClaims::default(), &op).unwrap();
        let (data, _) = decode_operator(&token).unwrap();
        assert_eq!(data.iss, op.public_key());
        let account = KeyPair::new_account();
        let user_key = KeyPair::new_user();
        let data = ClaimsData {
            sub: user_key.public_key(),
            ..ClaimsData::default()
        };
        let token = user(data, UserClaims::default(), &account).unwrap();
        let (data, nats) = decode_user(&token).unwrap();
        assert_eq!(data.iss, account.public_key());
        assert_eq!(nats.generic.version, 2);
        // A public-only key cannot sign.
        let public = KeyPair::from_public_key(&account.public_key()).unwrap();
        assert!(matches!(
            user(ClaimsData::default(), UserClaims::default(), &public),
            Err(EncodeError::NoSeed)
        ));
    }
}
