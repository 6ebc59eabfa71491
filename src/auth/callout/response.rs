//! The `authorization_response` JWT (nats-io/jwt v2 `AuthorizationResponseClaims`): opening,
//! decoding, checking, and turning the user JWT inside into a [`ClientIdentity`].
//!
//! Cold: once per callout reply. Invariants (nats-server `processClientOrLeafCallout`, plus the
//! spec's response `iss` check): the response is signed by the configured issuer (operator
//! mode: the callout account or one of its signing keys), is for the request's user nkey and
//! for this server, and carries exactly one of `jwt` / `error`; the user JWT is for the same
//! user nkey and within its times. Server-config mode: it is signed by the issuer, has no
//! `issuer_account`, and its `aud` names an existing, allowed account. Operator mode: its
//! issuer and placement are checked by `auth::operator::callout`, which knows the accounts.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use nkeys::{KeyPair, XKey};
use serde::Deserialize;

use crate::auth::callout::{CALLOUT_SUBJECT, CalloutConfig, CalloutError, RESPONSE_BYTES_MAX};
use crate::auth::jwt::{self, ClaimsData, JwtError, Payload, SigningKey, UserClaims};
use crate::auth::operator;
use crate::auth::{ClientIdentity, ConnLimits};
use crate::perms::Permissions;

/// nats-server `jwtPrefix`: a response that does not start so is sealed.
const JWT_PREFIX: &[u8] = b"eyJ";
/// Ed25519 signature length.
const SIGNATURE_BYTES: usize = 64;
/// nats-io/jwt `libVersion`.
const LIB_VERSION: i64 = 2;
/// Reasons a user JWT the service sent is refused (debug log).
const CONNECTION_TYPE: &str = "connection type not allowed";
const SOURCE: &str = "client address not in src";
const TIME_WINDOW: &str = "outside the time windows";
const PERMISSIONS: &str = "permissions are not valid";

/// What the response to one request must match.
pub struct Expected<'a> {
    /// The request's fresh user nkey.
    pub user_nkey: &'a str,
    /// This server's id (the response's `aud`).
    pub server_id: &'a str,
    /// The configured issuer account key; operator mode: the callout account's key.
    pub issuer: &'a str,
    /// Operator mode: the callout account's signing keys, which may sign the response too.
    /// `None` in server-config mode.
    pub operator: Option<&'a [SigningKey]>,
    /// When the request was sealed: the server's curve key and the service's, to open a
    /// sealed response.
    pub sealed: Option<(&'a XKey, &'a XKey)>,
}

/// jwt `AuthorizationResponse`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AuthorizationResponse {
    jwt: Option<String>,
    error: Option<String>,
    issuer_account: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    version: Option<i64>,
}

/// Opens (if sealed), decodes and checks a response payload; returns the user JWT's claims.
pub fn decode_response(
    payload: &[u8],
    expected: &Expected<'_>,
    now_unix: i64,
) -> Result<(ClaimsData, UserClaims), CalloutError> {
    if payload.is_empty() {
        return Err(CalloutError::Empty);
    }
    if payload.len() > RESPONSE_BYTES_MAX {
        return Err(CalloutError::TooLarge);
    }
    let opened;
    let token = match expected.sealed {
        Some((server, service)) if !payload.starts_with(JWT_PREFIX) => {
            opened = server
                .open(payload, service)
                .map_err(|_| CalloutError::Sealed)?;
            &opened[..]
        }
        _ => payload,
    };
    let token = std::str::from_utf8(token).map_err(|_| CalloutError::Response(JwtError::Base64))?;
    let (data, response) = decode_signed(token)?;
    check_response(&data, &response, expected, now_unix)?;
    let user_jwt = response.jwt.as_deref().unwrap_or_default();
    let (user, claims) = jwt::decode_user(user_jwt).map_err(CalloutError::UserJwt)?;
    jwt::check_times(&user, now_unix).map_err(CalloutError::UserJwt)?;
    if user.sub != expected.user_nkey {
        return Err(CalloutError::UserSubject);
    }
    if expected.operator.is_some() {
        // The issuer names the account the user goes into: the caller checks it.
        return Ok((user, claims));
    }
    if !claims.issuer_account.is_empty() {
        return Err(CalloutError::IssuerAccount);
    }
    if user.iss != expected.issuer {
        return Err(CalloutError::UserIssuer);
    }
    Ok((user, claims))
}

/// The identity of a user the service admitted: placed into the account the user JWT's `aud`
/// names (`account_id` resolves a name), with the JWT's permissions, limits, expiry, time
/// windows, `src` and connection types, and `$SYS.REQ.USER.AUTH` denied in the callout account.
pub fn identity(
    config: &CalloutConfig,
    account_id: impl Fn(&str) -> Option<u32>,
    user: &ClaimsData,
    claims: &UserClaims,
    peer: Option<IpAddr>,
    now: SystemTime,
) -> Result<ClientIdentity, CalloutError> {
    let account = account_id(&user.aud).ok_or(CalloutError::UnknownAccount)?;
    if !config.may_place(account) {
        return Err(CalloutError::AccountNotAllowed);
    }
    let limits = &claims.limits;
    if !operator::allows_standard_client(&limits.allowed_connection_types) {
        return Err(CalloutError::UserRefused(CONNECTION_TYPE));
    }
    let src = limits
        .src
        .iter()
        .map(|s| operator::Cidr::parse(s))
        .collect::<Option<Vec<_>>>()
        .ok_or(CalloutError::UserRefused(SOURCE))?;
    if !src.is_empty() && !peer.is_some_and(|ip| src.iter().any(|c| c.contains(ip))) {
        return Err(CalloutError::UserRefused(SOURCE));
    }
    let outside = |_| CalloutError::UserRefused(TIME_WINDOW);
    let zone = operator::times_zone(limits).map_err(outside)?;
    let window_end = operator::time_window_end(limits, zone.as_ref(), operator::unix_seconds(now))
        .map_err(outside)?;
    let mut permissions = if limits.permissions.is_empty() {
        None
    } else {
        Some(
            operator::compile_permissions(&limits.permissions)
                .ok_or(CalloutError::UserRefused(PERMISSIONS))?,
        )
    };
    if account == config.account {
        permissions = Some(callout_deny(permissions.as_ref())?);
    }
    let deadline = [operator::expiry(user.exp), window_end]
        .into_iter()
        .flatten()
        .min();
    Ok(ClientIdentity {
        account,
        user: if user.name.is_empty() {
            user.sub.clone()
        } else {
            user.name.clone()
        },
        permissions: permissions.map(Arc::new),
        deadline,
        account_deadline: None,
        limits: ConnLimits {
            max_payload: positive(limits.payload),
            max_subs: positive(limits.subs),
        },
        account_conn: None,
        account_subs: None,
    })
}

/// `permissions` with `$SYS.REQ.USER.AUTH` added to the publish deny list: what every client
/// of the callout account gets, auth users included (nats-server `mergeDenyPermissions`).
pub fn callout_deny(permissions: Option<&Permissions>) -> Result<Permissions, CalloutError> {
    Permissions::with_publish_deny(permissions, CALLOUT_SUBJECT)
        .map_err(|_| CalloutError::UserRefused(PERMISSIONS))
}

/// Fuzz entry point (cargo-fuzz target `callout`): any bytes as a response, plain and sealed to
/// the server's xkey, end in a [`CalloutError`] or a user JWT, never in a panic. The same bytes
/// as the claims of a token signed by the expected issuer reach the claim checks; that result
/// is returned (so the seed corpus can show it gets past the signature). The fixed keys: issuer
/// account raw seed 0x07×32, server identity 0x08×32, user nkey 0x06×32 (`u1` of
/// spec/jwt.md), server xkey 0x01×32 and service xkey 0x02×32 (spec/callout.md).
pub fn fuzz_decode_response(data: &[u8]) -> Result<(ClaimsData, UserClaims), CalloutError> {
    let keys = |kind, byte| KeyPair::new_from_raw(kind, [byte; 32]);
    let (Ok(issuer), Ok(server), Ok(user)) = (
        keys(nkeys::KeyPairType::Account, 7),
        keys(nkeys::KeyPairType::Server, 8),
        keys(nkeys::KeyPairType::User, 6),
    ) else {
        return Err(CalloutError::Request);
    };
    let server_xkey = XKey::new_from_raw([1; 32]);
    let service_xkey = XKey::new_from_raw([2; 32]);
    let (issuer_key, server_id, user_nkey) =
        (issuer.public_key(), server.public_key(), user.public_key());
    let expected = Expected {
        user_nkey: &user_nkey,
        server_id: &server_id,
        issuer: &issuer_key,
        operator: None,
        sealed: Some((&server_xkey, &service_xkey)),
    };
    let plain = decode_response(data, &expected, 0);
    if let Ok(sealed) = service_xkey.seal(data, &server_xkey) {
        let opened = decode_response(&sealed, &expected, 0);
        if data.starts_with(JWT_PREFIX) {
            assert_eq!(opened, plain, "a sealed token decodes as the plain one");
        }
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(data));
    let sig = issuer
        .sign(signed.as_bytes())
        .map_err(|_| CalloutError::Request)?;
    let token = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig));
    decode_response(token.as_bytes(), &expected, 0)
}

/// Decodes a token whose claim type must be `authorization_response` and checks its signature
/// by its own issuer, an account key (nats-io/jwt `Decode` for this type).
fn decode_signed(token: &str) -> Result<(ClaimsData, AuthorizationResponse), CalloutError> {
    let err = CalloutError::Response;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(err(JwtError::NotThreeParts));
    };
    check_header(&base64url(header)?)?;
    let json = base64url(payload)?;
    let claims: Payload<AuthorizationResponse> =
        serde_json::from_slice(&json).map_err(|_| err(JwtError::Claims))?;
    if claims.nats.kind.as_deref() != Some("authorization_response") {
        return Err(err(JwtError::WrongType));
    }
    if claims.nats.version.unwrap_or(0) > LIB_VERSION {
        return Err(err(JwtError::NewerVersion));
    }
    if !jwt::is_public_key(&claims.data.iss, 'A') {
        return Err(err(JwtError::Issuer));
    }
    let sig = base64url(signature)?;
    if sig.len() != SIGNATURE_BYTES {
        return Err(err(JwtError::Signature));
    }
    let signed = &token[..header.len() + 1 + payload.len()];
    let issuer = KeyPair::from_public_key(&claims.data.iss).map_err(|_| err(JwtError::Issuer))?;
    issuer
        .verify(signed.as_bytes(), &sig)
        .map_err(|_| err(JwtError::Signature))?;
    Ok((claims.data, claims.nats))
}

/// nats-io/jwt `AuthorizationResponseClaims.Validate`, then nats-server's `sub`/`aud` checks,
/// the spec's issuer check, and the service's error.
fn check_response(
    data: &ClaimsData,
    response: &AuthorizationResponse,
    expected: &Expected<'_>,
    now_unix: i64,
) -> Result<(), CalloutError> {
    let jwt_set = response.jwt.as_deref().is_some_and(|s| !s.is_empty());
    let error_set = response.error.as_deref().is_some_and(|s| !s.is_empty());
    let issuer_account_ok = response
        .issuer_account
        .as_deref()
        .is_none_or(|k| k.is_empty() || jwt::is_public_key(k, 'A'));
    if !jwt::is_public_key(&data.sub, 'U')
        || !jwt::is_public_key(&data.aud, 'N')
        || jwt_set == error_set
        || !issuer_account_ok
    {
        return Err(CalloutError::ResponseClaims);
    }
    jwt::check_times(data, now_unix).map_err(CalloutError::Response)?;
    if data.sub != expected.user_nkey {
        return Err(CalloutError::ResponseSubject);
    }
    if data.aud != expected.server_id {
        return Err(CalloutError::ResponseAudience);
    }
    if !is_response_signer(data, response, expected) {
        return Err(CalloutError::ResponseIssuer);
    }
    if error_set {
        return Err(CalloutError::ServiceError);
    }
    Ok(())
}

/// Server-config mode: the issuer. Operator mode (spec §4, stricter than nats-server, which
/// skips the check for a sealed response and trusts any signer that names the account in
/// `issuer_account`): the callout account or one of its signing keys, with `issuer_account`
/// empty or naming the callout account.
fn is_response_signer(
    data: &ClaimsData,
    response: &AuthorizationResponse,
    expected: &Expected<'_>,
) -> bool {
    let Some(signing_keys) = expected.operator else {
        return data.iss == expected.issuer;
    };
    let issuer_account = response.issuer_account.as_deref().unwrap_or_default();
    if !issuer_account.is_empty() && issuer_account != expected.issuer {
        return false;
    }
    data.iss == expected.issuer || signing_keys.iter().any(|k| k.key() == data.iss)
}

fn base64url(part: &str) -> Result<Vec<u8>, CalloutError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| CalloutError::Response(JwtError::Base64))
}

/// nats-io/jwt `Header.Valid` (v2 tokens only: this claim type has no v1 form).
fn check_header(json: &[u8]) -> Result<(), CalloutError> {
    #[derive(Deserialize)]
    struct Header {
        #[serde(default)]
        typ: Option<String>,
        #[serde(default)]
        alg: Option<String>,
    }
    let header: Header =
        serde_json::from_slice(json).map_err(|_| CalloutError::Response(JwtError::Header))?;
    if !header.typ.unwrap_or_default().eq_ignore_ascii_case("JWT") {
        return Err(CalloutError::Response(JwtError::HeaderType));
    }
    if !header
        .alg
        .unwrap_or_default()
        .eq_ignore_ascii_case("ed25519-nkey")
    {
        return Err(CalloutError::Response(JwtError::Algorithm));
    }
    Ok(())
}

/// A JWT limit: positive is a limit; 0 (absent) and -1 (unlimited) are none.
fn positive(limit: i64) -> Option<usize> {
    usize::try_from(limit).ok().filter(|n| *n > 0)
}
