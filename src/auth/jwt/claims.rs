//! The claims of NATS JWT v2 (operator, account, user) as serde types, shaped like the nats-io/jwt
//! v2 Go structs so that decoding accepts and refuses what Go's `json.Unmarshal` does.
//!
//! Cold: decoded once per JWT seen (then cached by the verifier), encoded by `ringnats jwt`.
//! Invariants: an absent or `null` field takes Go's zero value (so an absent `subs` is 0, not
//! "unlimited", as in nats-server); a field of the wrong JSON type is an error; unknown fields
//! are ignored. Serialisation leaves out what Go's `omitempty` leaves out, in Go's field order.

use std::collections::BTreeMap;

use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};

/// nats-io/jwt `NoLimit`.
pub const NO_LIMIT: i64 = -1;

/// `{"allow": [..], "deny": [..]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Permission {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allow: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub deny: Vec<String>,
}

impl Permission {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }
}

/// `resp`: allow_responses. `ttl` is in nanoseconds (Go `time.Duration`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ResponsePermission {
    #[serde(default, deserialize_with = "null_default")]
    pub max: i64,
    #[serde(default, deserialize_with = "null_default")]
    pub ttl: i64,
}

/// `{"start": "HH:MM:SS", "end": "HH:MM:SS"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct TimeRange {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub start: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub end: String,
}

/// `pub`, `sub`, `resp`: the user permissions (also an account's `default_permissions`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PermissionClaims {
    #[serde(rename = "pub", default, deserialize_with = "null_default")]
    pub publish: Permission,
    #[serde(rename = "sub", default, deserialize_with = "null_default")]
    pub subscribe: Permission,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resp: Option<ResponsePermission>,
}

impl PermissionClaims {
    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.subscribe.is_empty() && self.resp.is_none()
    }
}

/// nats-io/jwt `UserPermissionLimits`: what a user JWT carries and a scoped signing key's
/// template replaces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct UserPermissionLimits {
    #[serde(flatten)]
    pub permissions: PermissionClaims,
    /// CIDRs; older tokens wrote a comma-separated string.
    #[serde(
        default,
        deserialize_with = "cidr_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub src: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub times: Vec<TimeRange>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub times_location: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub subs: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub data: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub payload: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub bearer_token: bool,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allowed_connection_types: Vec<String>,
}

impl UserPermissionLimits {
    /// nats-io/jwt `HasEmptyPermissions`: what a user signed by a scoped key must look like.
    pub fn is_empty(&self) -> bool {
        *self == UserPermissionLimits::default()
    }

    /// Unlimited limits, as nats-io/jwt `NewUserClaims` and `NewUserScope` start.
    pub fn unlimited() -> UserPermissionLimits {
        UserPermissionLimits {
            subs: NO_LIMIT,
            data: NO_LIMIT,
            payload: NO_LIMIT,
            ..UserPermissionLimits::default()
        }
    }
}

/// `nats` of a user JWT.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct UserClaims {
    #[serde(flatten)]
    pub limits: UserPermissionLimits,
    /// Set when `iss` is one of the account's signing keys.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub issuer_account: String,
    #[serde(flatten)]
    pub generic: GenericFields,
}

/// `tags`, `type`, `version`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct GenericFields {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tags: Vec<String>,
    #[serde(
        rename = "type",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub kind: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub version: i64,
}

/// `nats.limits` of an account JWT (JetStream limits are read and ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct AccountLimits {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub subs: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub data: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub payload: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub imports: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub exports: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub wildcards: bool,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub disallow_bearer: bool,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub conn: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub leaf: i64,
}

impl AccountLimits {
    /// As nats-io/jwt `NewAccountClaims` starts: everything unlimited, wildcard exports allowed.
    pub fn unlimited() -> AccountLimits {
        AccountLimits {
            subs: NO_LIMIT,
            data: NO_LIMIT,
            payload: NO_LIMIT,
            imports: NO_LIMIT,
            exports: NO_LIMIT,
            wildcards: true,
            disallow_bearer: false,
            conn: NO_LIMIT,
            leaf: NO_LIMIT,
        }
    }
}

/// One entry of an account's `signing_keys`: a key, or a scoped key with a user template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigningKey {
    Plain(String),
    Scoped(Box<UserScope>),
}

impl SigningKey {
    pub fn key(&self) -> &str {
        match self {
            SigningKey::Plain(k) => k,
            SigningKey::Scoped(s) => &s.key,
        }
    }
}

/// nats-io/jwt `UserScope` (`kind: "user_scope"`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct UserScope {
    pub kind: String,
    pub key: String,
    #[serde(default, deserialize_with = "null_default")]
    pub role: String,
    #[serde(default, deserialize_with = "null_default")]
    pub template: UserPermissionLimits,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
}

/// nats-io/jwt `UserScopeType`.
pub const USER_SCOPE_KIND: &str = "user_scope";

impl<'de> Deserialize<'de> for SigningKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(String),
            Scoped(serde_json::Map<String, serde_json::Value>),
        }
        match Raw::deserialize(d)? {
            Raw::Plain(k) => Ok(SigningKey::Plain(k)),
            Raw::Scoped(map) => {
                if map.get("kind").and_then(|k| k.as_str()) != Some(USER_SCOPE_KIND) {
                    return Err(de::Error::custom("unknown signing key scope"));
                }
                let scope: UserScope = serde_json::from_value(serde_json::Value::Object(map))
                    .map_err(de::Error::custom)?;
                Ok(SigningKey::Scoped(Box::new(scope)))
            }
        }
    }
}

impl Serialize for SigningKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            SigningKey::Plain(k) => s.serialize_str(k),
            SigningKey::Scoped(scope) => scope.serialize(s),
        }
    }
}

/// nats-io/jwt `ExportType`: `"stream"` or `"service"`; any other string is an error, and an
/// absent type (Go's `Unknown`) makes the export or import invalid (it is skipped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportType {
    Stream,
    Service,
}

/// nats-io/jwt `Export`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Export {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub subject: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ExportType>,
    /// Importers need an activation token signed by this account.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub token_req: bool,
    /// Importing account public key (or `*`) -> Unix time: activations issued at or before it
    /// are revoked.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub revocations: BTreeMap<String, i64>,
    /// `Singleton` (default), `Stream` or `Chunked`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub response_type: String,
    /// Nanoseconds (Go `time.Duration`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub response_threshold: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_latency: Option<serde_json::Value>,
    /// When set, the import subject's token at this position (1-based) must be the importing
    /// account's public key.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero_u64"
    )]
    pub account_token_position: u64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub advertise: bool,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub info_url: String,
}

/// nats-io/jwt `Import`. `subject` is the publisher's view: the exporter's subject for a
/// stream, the importer's for a service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Import {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub subject: String,
    /// The exporting account's public key.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub account: String,
    /// Activation JWT, for exports with `token_req`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub token: String,
    /// Deprecated: a stream's prefix; a service's subject in the exporter.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub to: String,
    /// The subject in the importer: subscribed to (stream) or published on (service).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub local_subject: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ExportType>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub share: bool,
}

/// `nats` of an activation JWT: an exporter lets the account in `sub` import `subject`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ActivationClaims {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub subject: String,
    #[serde(rename = "kind", default, skip_serializing_if = "Option::is_none")]
    pub import_type: Option<ExportType>,
    /// Set when `iss` is one of the exporter's signing keys.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub issuer_account: String,
    #[serde(flatten)]
    pub generic: GenericFields,
}

/// `nats` of an account JWT.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct AccountClaims {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub imports: Vec<Import>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub exports: Vec<Export>,
    #[serde(default, deserialize_with = "null_default")]
    pub limits: AccountLimits,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub signing_keys: Vec<SigningKey>,
    /// User public key (or `*`) -> Unix time; users issued at or before it are revoked.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub revocations: BTreeMap<String, i64>,
    #[serde(default, deserialize_with = "null_default")]
    pub default_permissions: PermissionClaims,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mappings: Option<serde_json::Value>,
    /// Auth callout for this account's users (operator mode); off while `auth_users` is empty.
    #[serde(default, deserialize_with = "null_default")]
    pub authorization: ExternalAuthorization,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub description: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub info_url: String,
    #[serde(flatten)]
    pub generic: GenericFields,
}

/// nats-io/jwt `ExternalAuthorization`: the account JWT's `authorization`. The callout is on
/// when `auth_users` is not empty (`IsEnabled`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ExternalAuthorization {
    /// Users (public `U…` keys) of this account that bypass the callout: the auth service.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub auth_users: Vec<String>,
    /// Accounts (public `A…` keys, or [`ANY_ACCOUNT`] alone) the service may place users into
    /// besides this one.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allowed_accounts: Vec<String>,
    /// The service's curve key (`X…`): requests are sealed to it.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub xkey: String,
}

/// nats-io/jwt `AnyAccount`: as the only `allowed_accounts` entry, every account.
pub const ANY_ACCOUNT: &str = "*";

impl ExternalAuthorization {
    /// nats-io/jwt `IsEnabled`.
    pub fn is_enabled(&self) -> bool {
        !self.auth_users.is_empty()
    }
}

/// `nats` of an operator JWT.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct OperatorClaims {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub signing_keys: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub account_server_url: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub operator_service_urls: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub system_account: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub assert_server_version: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub strict_signing_key_usage: bool,
    #[serde(flatten)]
    pub generic: GenericFields,
}

/// nats-io/jwt `ClaimsData` (field order as Go marshals it; `jti` is a hash over this alone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ClaimsData {
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub aud: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub exp: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub jti: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub iat: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub iss: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub name: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub nbf: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub sub: String,
}

/// A whole payload: the common claims and the `nats` part of type `T`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct Payload<T> {
    #[serde(flatten)]
    pub data: ClaimsData,
    #[serde(default)]
    pub nats: T,
}

/// The top-level fields of a v1 token that v2 moved under `nats` (nats-io/jwt
/// `v1ClaimsDataDeletedFields`): a non-empty top-level `type` marks a v1 token.
#[derive(Debug, Default, Deserialize)]
pub(super) struct V1Fields {
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub tags: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub issuer_account: String,
    #[serde(default, deserialize_with = "null_default")]
    pub nats: NatsGeneric,
}

/// Just `nats.type` and `nats.version`, to pick the claim type (nats-io/jwt `identifier`).
#[derive(Debug, Default, Deserialize)]
pub(super) struct NatsGeneric {
    #[serde(rename = "type", default, deserialize_with = "null_default")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub version: i64,
}

/// Go's `json.Unmarshal` leaves a field at its zero value for `null`.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// nats-io/jwt `CIDRList.UnmarshalJSON`: an array of strings, or one comma-separated string
/// (lower-cased, trimmed, empty entries dropped).
fn cidr_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None => Vec::new(),
        Some(Raw::List(list)) => list,
        Some(Raw::Text(text)) => {
            let mut out: Vec<String> = Vec::new();
            for part in text.to_lowercase().split(',') {
                let part = part.trim();
                if !part.is_empty() && !out.iter().any(|p| p == part) {
                    out.push(part.to_string());
                }
            }
            out
        }
    })
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u64(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}
