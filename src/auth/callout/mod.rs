//! Auth callout (ADR-26 as nats-server 2.10+ implements it, spec callout.md): an external
//! service decides who may connect. The server sends an `authorization_request` JWT, signed by
//! its own nkey, on `$SYS.REQ.USER.AUTH` in the callout account; the service answers on the
//! request's reply subject with an `authorization_response` JWT carrying a user JWT or an
//! error. With an `xkey` both may be sealed (`xkv1`, curve25519 + XSalsa20-Poly1305).
//!
//! Cold: [`CalloutConfig`] is built at config load; [`build_request`] and [`decode_response`]
//! run once per callout CONNECT. No I/O and no clock here (the shard passes `now`), so the
//! response decoder can be fuzzed ([`fuzz_decode_response`]).
//! Invariants: a response is accepted only when it is signed by the configured issuer, its
//! `sub` is the fresh user nkey of this very request and its `aud` this server; the user JWT
//! inside must be issued by the issuer for that same user nkey and placed into an existing
//! (and allowed) account. Every failure is a [`CalloutError`] for the debug log, which never
//! carries a request, response, user JWT, seed or any claim value.

mod request;
mod response;

use std::fmt;
use std::sync::Arc;

use nkeys::{KeyPair, XKey};

use crate::config::{ConfigError, Value};

pub use request::{ClientInfo, ClientTls, Request, ServerInfo, build_request};
pub use response::{Expected, callout_deny, decode_response, fuzz_decode_response, identity};

/// nats-server `AuthCalloutSubject`.
pub const CALLOUT_SUBJECT: &str = "$SYS.REQ.USER.AUTH";
/// nats-server `AuthRequestXKeyHeader`: carries the server's public xkey on a sealed request.
pub const XKEY_HEADER: &str = "Nats-Server-Xkey";
/// `aud` of every request (nats-server `AuthRequestSubject`).
pub const REQUEST_AUDIENCE: &str = "nats-authorization-request";
/// Largest response payload we look at; a user JWT with its permissions fits many times over.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// The server's own keys: its identity nkey (`N…`, INFO `server_id`, signs requests) and its
/// curve key (`X…`, seals requests and opens sealed responses). Generated at start-up; the
/// seeds never leave this value (its `Debug` prints the public keys only).
pub struct ServerKeys {
    identity: KeyPair,
    xkey: XKey,
    /// Cached public keys.
    id: String,
    xkey_public: String,
}

impl ServerKeys {
    /// Fresh random keys.
    pub fn generate() -> ServerKeys {
        ServerKeys::from_keys(KeyPair::new_server(), XKey::new())
    }

    /// Keys from given pairs (tests use fixed seeds).
    pub fn from_keys(identity: KeyPair, xkey: XKey) -> ServerKeys {
        let id = identity.public_key();
        let xkey_public = xkey.public_key();
        ServerKeys {
            identity,
            xkey,
            id,
            xkey_public,
        }
    }

    /// The server id: the public identity key (`N…`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The curve key pair (opens sealed responses).
    pub(crate) fn xkey(&self) -> &XKey {
        &self.xkey
    }

    /// The public curve key (`X…`).
    pub fn xkey_public(&self) -> &str {
        &self.xkey_public
    }
}

impl fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerKeys")
            .field("id", &self.id)
            .field("xkey", &self.xkey_public)
            .finish_non_exhaustive()
    }
}

/// `authorization { auth_callout { … } }`, compiled (server-config mode).
#[derive(Debug)]
pub struct CalloutConfig {
    /// Account public key that signs responses and user JWTs.
    pub issuer: String,
    /// The account the service runs in (requests are published there); default `$G`.
    pub account: u32,
    /// Users (names or nkeys) that authenticate normally and bypass the callout.
    pub auth_users: Vec<String>,
    /// The service's curve key: requests are sealed to it.
    pub xkey: Option<Arc<XKey>>,
    /// Accounts the service may place users into (and whose locally authenticated users are
    /// delegated to it); empty = any.
    pub allowed_accounts: Vec<u32>,
}

impl CalloutConfig {
    /// Whether `user` (a user name or an nkey) bypasses the callout.
    pub fn is_auth_user(&self, user: &str) -> bool {
        !user.is_empty() && self.auth_users.iter().any(|u| u == user)
    }

    /// nats-server (`processClientOrLeafAuthentication`): a client that logged in locally into
    /// an account other than `$G` is delegated only if `allowed_accounts` is empty or names it.
    pub fn delegates(&self, local_account: Option<u32>) -> bool {
        match local_account {
            None | Some(crate::auth::GLOBAL_ACCOUNT_ID) => true,
            Some(id) => self.allowed_accounts.is_empty() || self.allowed_accounts.contains(&id),
        }
    }

    /// Whether the service may place a user into `account`.
    pub fn may_place(&self, account: u32) -> bool {
        self.allowed_accounts.is_empty() || self.allowed_accounts.contains(&account)
    }
}

/// The `auth_callout` block as read, before its names are resolved to accounts and users.
#[derive(Debug)]
pub(crate) struct RawCallout {
    pub issuer: String,
    pub account: (String, Value),
    pub auth_users: (Vec<String>, Value),
    pub xkey: Option<XKey>,
    pub allowed_accounts: Vec<(String, Value)>,
}

/// nats-server `parseAuthCallout`: keys `issuer`, `account`|`acc`, `auth_users`|`users`,
/// `xkey`|`key`, `allowed_accounts`; anything else is an unknown field.
pub(crate) fn parse_config(value: &Value) -> Result<RawCallout, ConfigError> {
    let map = value.expect_map("auth_callout")?;
    let mut issuer = None;
    let mut account = None;
    let mut auth_users = None;
    let mut xkey = None;
    let mut allowed_accounts = Vec::new();
    for entry in map {
        let v = &entry.value;
        match entry.key_lower().as_str() {
            "issuer" => {
                let key = v.expect_str(&entry.key)?;
                if !crate::auth::jwt::is_public_key(key, 'A') {
                    return Err(entry.error(format!(
                        "Expected callout user to be a valid public account nkey, got \"{key}\""
                    )));
                }
                issuer = Some(key.to_string());
            }
            "account" | "acc" => account = Some((v.expect_str(&entry.key)?.to_string(), v.clone())),
            "auth_users" | "users" => {
                let users = v.expect_strings(&entry.key)?;
                let users: Vec<String> = users.into_iter().map(str::to_string).collect();
                auth_users = Some((users, v.clone()));
            }
            "xkey" | "key" => {
                let key = v.expect_str(&entry.key)?;
                let parsed = key
                    .starts_with('X')
                    .then(|| XKey::from_public_key(key).ok())
                    .flatten()
                    .ok_or_else(|| {
                        entry.error(format!(
                            "Expected callout xkey to be a valid public xkey, got \"{key}\""
                        ))
                    })?;
                xkey = Some(parsed);
            }
            "allowed_accounts" => {
                let items = v.expect_array(&entry.key)?;
                for item in items {
                    let name = item.expect_str(&entry.key)?;
                    allowed_accounts.push((name.to_string(), item.clone()));
                }
            }
            _ if entry.is_used_variable() => {}
            _ => {
                return Err(ConfigError::UnknownField {
                    pos: entry.pos.clone(),
                    key: entry.key.clone(),
                });
            }
        }
    }
    let issuer = issuer.ok_or_else(|| {
        value.error(
            "auth_callout",
            "Authorization callouts require an issuer to be specified",
        )
    })?;
    let auth_users = auth_users
        .filter(|(users, _)| !users.is_empty())
        .ok_or_else(|| {
            value.error(
                "auth_callout",
                "Authorization callouts require authorized users to be specified",
            )
        })?;
    let account = account.unwrap_or_else(|| (crate::auth::GLOBAL_ACCOUNT.into(), value.clone()));
    Ok(RawCallout {
        issuer,
        account,
        auth_users,
        xkey,
        allowed_accounts,
    })
}

/// Why a callout did not admit the client: for the debug log only (the client always gets
/// `Authorization Violation`). Carries no token, claim value or key material.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum CalloutError {
    #[error("auth callout: empty response (not authorized)")]
    Empty,
    #[error("auth callout: response too large")]
    TooLarge,
    #[error("auth callout: sealed response does not open with the server's xkey")]
    Sealed,
    #[error("auth callout: response is not an authorization_response JWT: {0}")]
    Response(crate::auth::jwt::JwtError),
    #[error("auth callout: response claims are not valid")]
    ResponseClaims,
    #[error("auth callout: response not signed by the configured issuer")]
    ResponseIssuer,
    #[error("auth callout: response is not for the expected user")]
    ResponseSubject,
    #[error("auth callout: response is not for this server")]
    ResponseAudience,
    #[error("auth callout: service returned an error")]
    ServiceError,
    #[error("auth callout: user JWT refused: {0}")]
    UserJwt(crate::auth::jwt::JwtError),
    #[error("auth callout: user JWT is not for the expected user")]
    UserSubject,
    #[error("auth callout: user JWT not issued by the configured issuer")]
    UserIssuer,
    #[error("auth callout: issuer_account is not allowed outside operator mode")]
    IssuerAccount,
    #[error("auth callout: user JWT names no configured account")]
    UnknownAccount,
    #[error("auth callout: account not allowed for the callout")]
    AccountNotAllowed,
    #[error("auth callout: user refused: {0}")]
    UserRefused(&'static str),
    #[error("auth callout: no response in time")]
    Timeout,
    #[error("auth callout: too many callouts outstanding")]
    QueueFull,
    #[error("auth callout: request could not be built")]
    Request,
    #[error("auth callout: no auth service subscribed")]
    NoService,
    #[error("auth callout: the callout was removed while the client waited")]
    Withdrawn,
}

#[cfg(test)]
mod tests;
