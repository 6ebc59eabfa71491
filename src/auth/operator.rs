//! JWT operator mode: trusted operators, the memory resolver, and the chain check of a CONNECT
//! that carries a user JWT (spec jwt.md §6).
//!
//! Cold: [`load`] runs at config load (decodes every operator and preloaded account JWT once);
//! [`OperatorMode::verify`] once per CONNECT. A user JWT's chain (decode, issuer, scope,
//! permissions) is checked the first time its exact bytes are seen and cached (bounded, see
//! [`VERIFIED_USERS_MAX`]); each CONNECT then costs the nonce signature plus the time,
//! revocation, `src` and `times` checks, which depend on the moment and the peer.
//! Invariants: only keys of a configured operator (identity or signing key) or `trusted_keys`
//! are trusted to sign accounts; a user is signed by its account's identity key or one of the
//! account's signing keys (then with `issuer_account`); any failure is an [`AuthFailure`] for
//! the debug log, never carrying a JWT, seed or signature.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ahash::AHashMap;
use jiff::tz::TimeZone;

use crate::auth::jwt::{
    self, AccountClaims, ClaimsData, JwtError, OperatorClaims, PermissionClaims, SigningKey,
    UserClaims, UserPermissionLimits, UserScope,
};
use crate::auth::nkey::PublicNkey;
use crate::auth::resolver::{self, Previous, Resolver};
use crate::auth::{AccountDef, AuthFailure, ClientIdentity, ConnLimits};
use crate::config::{ConfigError, Pos, ServerOptions, Value};
use crate::perms::{PermissionSpec, Permissions, ResponsePermission};
use crate::protocol::ConnectOptions;

/// Verified user JWTs kept (by exact bytes). At the bound the cache is emptied: a reconnect
/// storm of more distinct users than this pays one user-JWT signature check per CONNECT.
pub const VERIFIED_USERS_MAX: usize = 16 * 1024;
/// Config keys that configure operators (nats-server `operators`, `operator`, ...).
const OPERATOR_KEYS: &[&str] = &[
    "operator",
    "operators",
    "root_operators",
    "trusted_operators",
];
/// Config keys for trusted operator public keys.
const TRUSTED_KEYS: &[&str] = &["trusted", "trusted_keys"];
/// nats-server `jwtPrefix`: a value that is not a readable file but starts so is an inline JWT.
const INLINE_JWT_PREFIX: &str = "eyJ";

/// Operator mode, compiled.
#[derive(Debug)]
pub struct OperatorMode {
    /// Keys that may sign account JWTs: each operator's identity and signing keys, or
    /// `trusted_keys`.
    trusted_keys: Vec<String>,
    /// Operators whose `strict_signing_key_usage` forbids signing accounts with the identity key.
    strict_identities: Vec<String>,
    /// Accounts by public key.
    accounts: AHashMap<String, Arc<JwtAccount>>,
    /// Start-up warnings (accounts with validation issues, limits not enforced).
    warnings: Vec<String>,
    /// Signing keys of configured accounts, no operator ([`OperatorMode::hybrid`]): accounts
    /// are keyed by signing key and a user's account is the one its issuer signs for.
    hybrid: bool,
    /// The JWT each account in `accounts` was built from, by public key (for updates, lookups
    /// and the next build).
    jwts: resolver::AccountJwts,
    /// Where the accounts come from and how updates are kept.
    resolver: Resolver,
    /// Verified user JWTs by their exact text. A std mutex: taken briefly once per JWT CONNECT
    /// by whichever shard runs it; never on the message path.
    #[allow(clippy::disallowed_types)]
    verified: std::sync::Mutex<AHashMap<Box<str>, Arc<VerifiedUser>>>,
    /// The earliest `exp` (Unix seconds) of an activation token behind an import of this
    /// build; the control plane builds again then, without that import (see
    /// [`OperatorMode::activation_expiry`]).
    activation_expiry: Option<i64>,
}

/// An account from the resolver, with what CONNECT needs precompiled.
#[derive(Debug)]
pub struct JwtAccount {
    /// Account id in [`crate::auth::AuthConfig::accounts`].
    pub id: u32,
    pub key: String,
    pub data: ClaimsData,
    pub claims: AccountClaims,
    default_permissions: Option<Arc<Permissions>>,
    /// Why the account JWT fails nats-io/jwt validation, if it does (see
    /// `imports::validate`): its users are refused, as nats-server refuses to fetch it.
    pub invalid: Option<String>,
    /// Live connections of this account on all shards, for `limits.conn`.
    connections: Arc<ConnCounter>,
    /// Subscriptions of this account on all shards, for `limits.subs`.
    subscriptions: Arc<SubCounter>,
}

/// Connections of one account across all shards. An atomic of the control plane: touched
/// once at CONNECT and once at close by whichever shard owns the connection. A reload builds
/// new counters, and re-checking a live connection moves it onto the new one.
#[derive(Debug, Default)]
pub struct ConnCounter(AtomicUsize);

/// One counted connection; dropping it (when the connection is gone) uncounts it.
#[derive(Debug)]
pub struct AccountConnGuard(Arc<ConnCounter>);

impl ConnCounter {
    /// Counts one more connection unless `limit` are already counted.
    fn try_acquire(self: &Arc<Self>, limit: usize) -> Option<AccountConnGuard> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| AccountConnGuard(Arc::clone(self)))
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

impl Drop for AccountConnGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PartialEq for AccountConnGuard {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// Subscriptions of one account across all shards (`limits.subs` is account-wide here; see
/// [`AccountSubs`]). An atomic of the control plane: touched on SUB and on the removal of a
/// subscription by whichever shard owns it, never per message.
#[derive(Debug, Default)]
pub struct SubCounter(AtomicUsize);

impl SubCounter {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// An account's `limits.subs` as a connection of it carries it from CONNECT to its shard.
#[derive(Clone, Debug)]
pub struct AccountSubsLimit {
    counter: Arc<SubCounter>,
    max: usize,
}

impl PartialEq for AccountSubsLimit {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.counter, &other.counter) && self.max == other.max
    }
}

/// The subscriptions one connection holds in its account's count. nats-server 2.9.10 applies
/// an account's `subs` per connection only; ringnats also bounds the account's total, so a
/// tenant cannot multiply its limit by opening more connections. Dropped with the connection,
/// it gives back what it still holds.
#[derive(Debug)]
pub struct AccountSubs {
    limit: AccountSubsLimit,
    held: usize,
}

impl AccountSubs {
    /// Starts holding `existing` subscriptions (a live connection moved onto a new count after
    /// a reload keeps the subscriptions it has, even over the limit, as nats-server keeps them).
    pub fn new(limit: AccountSubsLimit, existing: usize) -> AccountSubs {
        limit.counter.0.fetch_add(existing, Ordering::AcqRel);
        AccountSubs {
            limit,
            held: existing,
        }
    }

    /// Counts one more subscription unless the account has `max` already.
    pub fn try_add(&mut self) -> bool {
        let max = self.limit.max;
        let added = self
            .limit
            .counter
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if added {
            self.held += 1;
        }
        added
    }

    /// Gives one subscription back.
    pub fn remove(&mut self) {
        if self.held > 0 {
            self.held -= 1;
            self.limit.counter.0.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Whether this counts against `limit` (same account count and maximum).
    pub fn is_for(&self, limit: &AccountSubsLimit) -> bool {
        self.limit == *limit
    }
}

impl Drop for AccountSubs {
    fn drop(&mut self) {
        self.limit.counter.0.fetch_sub(self.held, Ordering::AcqRel);
    }
}

/// The parts of a user JWT that do not change between CONNECTs.
#[derive(Debug)]
struct VerifiedUser {
    data: ClaimsData,
    account: Arc<JwtAccount>,
    /// After a scoped signing key's template replaced the JWT's own.
    limits: UserPermissionLimits,
    nkey: PublicNkey,
    permissions: Option<Arc<Permissions>>,
    src: Vec<Cidr>,
    /// The zone of `times` (`None` without `times`).
    zone: Option<TimeZone>,
    conn_limits: ConnLimits,
}

/// Raw operator-mode settings read from the config.
pub(crate) struct OperatorSettings {
    operators: Vec<(ClaimsData, OperatorClaims)>,
    trusted_keys: Vec<String>,
    preload: Vec<(String, String, Pos)>,
    resolver: Resolver,
    system_account: Option<(String, Pos)>,
    /// Where `trusted_keys` or the first operator was configured, for errors.
    pos: Pos,
}

impl OperatorMode {
    pub fn account(&self, key: &str) -> Option<&Arc<JwtAccount>> {
        self.accounts.get(key)
    }

    /// The `signing_keys` of configured accounts (no operator), as a verifier of user JWTs:
    /// a user issued by one of an account's signing keys (whose JWT need not carry
    /// `issuer_account`) joins that account with its JWT's permissions and limits, after the
    /// nonce signature, `exp`/`nbf`, `src`, `times` and connection-type checks of operator
    /// mode. nats-server has no such mode. `None` when no account has signing keys.
    pub(crate) fn hybrid(accounts: &[AccountDef]) -> Option<OperatorMode> {
        let mut by_key = AHashMap::new();
        for (id, def) in accounts.iter().enumerate() {
            let Ok(id) = u32::try_from(id) else { continue };
            for key in &def.signing_keys {
                let account = JwtAccount {
                    id,
                    key: key.clone(),
                    data: ClaimsData {
                        name: def.name.clone(),
                        sub: key.clone(),
                        ..ClaimsData::default()
                    },
                    claims: AccountClaims {
                        limits: jwt::AccountLimits::unlimited(),
                        ..AccountClaims::default()
                    },
                    default_permissions: None,
                    invalid: None,
                    connections: Arc::default(),
                    subscriptions: Arc::default(),
                };
                by_key.insert(key.clone(), Arc::new(account));
            }
        }
        (!by_key.is_empty()).then(|| OperatorMode {
            trusted_keys: Vec::new(),
            strict_identities: Vec::new(),
            accounts: by_key,
            warnings: Vec::new(),
            hybrid: true,
            jwts: resolver::AccountJwts::default(),
            resolver: Resolver::None,
            verified: Default::default(),
            activation_expiry: None,
        })
    }

    /// When the first activation token behind an import of this configuration expires: from
    /// then on that import must not route, so the control plane builds the configuration
    /// again (`monitor::claims::expire_activations`), which leaves it out. The import table
    /// itself holds no times, so the publish path checks none.
    pub fn activation_expiry(&self) -> Option<SystemTime> {
        self.activation_expiry.and_then(expiry)
    }

    /// Start-up warnings, taken once (the config loader reports them).
    pub(crate) fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// The JWT of each account, by public key.
    pub fn jwts(&self) -> &resolver::AccountJwts {
        &self.jwts
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// Whether `key` may sign account JWTs (an operator's identity or signing key, or a
    /// `trusted_keys` entry).
    pub fn is_trusted_key(&self, key: &str) -> bool {
        self.trusted_keys.iter().any(|k| k == key)
    }

    /// Whether `key` is the identity of an operator whose `strict_signing_key_usage` forbids
    /// signing accounts with it.
    pub fn is_strict_identity(&self, key: &str) -> bool {
        self.strict_identities.iter().any(|k| k == key)
    }

    /// Whether `key` may sign operator requests such as a delete (nats-server
    /// `getOperatorKeys`: the identity unless strict, and the signing keys).
    pub fn is_operator_key(&self, key: &str) -> bool {
        self.is_trusted_key(key) && !self.is_strict_identity(key)
    }

    /// Live connections counted against `key`'s `limits.conn`.
    pub fn account_connections(&self, key: &str) -> Option<usize> {
        self.accounts.get(key).map(|a| a.connections.count())
    }

    /// Subscriptions counted against `key`'s `limits.subs`.
    pub fn account_subscriptions(&self, key: &str) -> Option<usize> {
        self.accounts.get(key).map(|a| a.subscriptions.count())
    }

    /// Checks a CONNECT in operator mode. `peer` is the client's address (for `src`).
    pub fn verify(
        &self,
        connect: &ConnectOptions,
        nonce: Option<&str>,
        peer: Option<IpAddr>,
        now: SystemTime,
    ) -> Result<ClientIdentity, AuthFailure> {
        let token = connect
            .jwt
            .as_deref()
            .ok_or(AuthFailure::MissingCredentials)?;
        let now_unix = unix_seconds(now);
        let user = self.verified_user(token)?;
        check_standing(&user, now_unix)?;
        if user.limits.bearer_token {
            if user.account.claims.limits.disallow_bearer {
                return Err(AuthFailure::BearerNotAllowed);
            }
        } else {
            user.nkey.verify(nonce, connect.sig.as_deref())?;
        }
        admit(&user, peer, now_unix)
    }

    /// The cached chain check of `token`, or a fresh one.
    fn verified_user(&self, token: &str) -> Result<Arc<VerifiedUser>, AuthFailure> {
        if let Some(user) = self.cache().get(token) {
            return Ok(Arc::clone(user));
        }
        let user = Arc::new(self.check_chain(token)?);
        let mut cache = self.cache();
        if cache.len() >= VERIFIED_USERS_MAX {
            cache.clear();
        }
        cache.insert(token.into(), Arc::clone(&user));
        Ok(user)
    }

    #[allow(clippy::disallowed_types)]
    fn cache(&self) -> std::sync::MutexGuard<'_, AHashMap<Box<str>, Arc<VerifiedUser>>> {
        // A poisoned lock only means a panic elsewhere while holding it; the map is still a
        // valid cache.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spec §6 steps 1-4: decode, account lookup, issuer, scope, permissions.
    fn check_chain(&self, token: &str) -> Result<VerifiedUser, AuthFailure> {
        let (data, claims) = jwt::decode_user(token).map_err(AuthFailure::Jwt)?;
        // Hybrid: the issuer alone names the account; `issuer_account` (the account's identity
        // key, which a config account does not have) is not needed and not trusted.
        let account_key = if claims.issuer_account.is_empty() || self.hybrid {
            &data.iss
        } else {
            &claims.issuer_account
        };
        let account = self
            .accounts
            .get(account_key)
            .ok_or(AuthFailure::UnknownAccount)?;
        user_of_account(data, &claims, account)
    }
}

/// Spec §6 step 4 for a decoded user JWT of `account`: issuer and scope, then what the checks
/// of each CONNECT need, precompiled.
fn user_of_account(
    data: ClaimsData,
    claims: &UserClaims,
    account: &Arc<JwtAccount>,
) -> Result<VerifiedUser, AuthFailure> {
    let limits = effective_limits(&data, claims, account)?;
    let nkey = PublicNkey::parse(&data.sub).ok_or(AuthFailure::Jwt(JwtError::Subject))?;
    let permissions = if limits.permissions.is_empty() {
        account.default_permissions.clone()
    } else {
        Some(Arc::new(
            compile_permissions(&limits.permissions).ok_or(AuthFailure::InvalidPermissions)?,
        ))
    };
    let src = limits
        .src
        .iter()
        .map(|s| Cidr::parse(s))
        .collect::<Option<Vec<_>>>()
        .ok_or(AuthFailure::SourceNotAllowed)?;
    let zone = times_zone(&limits)?;
    let conn_limits = ConnLimits {
        max_payload: min_limit(limits.payload, account.claims.limits.payload),
        max_subs: min_limit(limits.subs, account.claims.limits.subs),
    };
    Ok(VerifiedUser {
        data,
        account: Arc::clone(account),
        limits,
        nkey,
        permissions,
        src,
        zone,
        conn_limits,
    })
}

/// The checks of a verified user that depend on the moment, before its credential: the user's
/// and its account's times, and the account's validity.
fn check_standing(user: &VerifiedUser, now_unix: i64) -> Result<(), AuthFailure> {
    jwt::check_times(&user.data, now_unix).map_err(AuthFailure::Jwt)?;
    let account = &user.account;
    if account.invalid.is_some() {
        return Err(AuthFailure::AccountInvalid);
    }
    jwt::check_times(&account.data, now_unix).map_err(|_| AuthFailure::AccountExpired)
}

/// The checks of a verified user after its credential (revocation, `src`, connection types,
/// `times`, the account's `limits.conn`), then its identity.
fn admit(
    user: &VerifiedUser,
    peer: Option<IpAddr>,
    now_unix: i64,
) -> Result<ClientIdentity, AuthFailure> {
    let account = &user.account;
    if is_revoked(&account.claims, &user.data) {
        return Err(AuthFailure::Revoked);
    }
    if !user.src.is_empty() && !peer.is_some_and(|ip| user.src.iter().any(|c| c.contains(ip))) {
        return Err(AuthFailure::SourceNotAllowed);
    }
    if !allows_standard_client(&user.limits.allowed_connection_types) {
        return Err(AuthFailure::ConnectionTypeNotAllowed);
    }
    let window_end = time_window_end(&user.limits, user.zone.as_ref(), now_unix)?;
    // Last, so a refused CONNECT never holds a slot (nats-server checks it at register).
    let account_conn = match usize::try_from(account.claims.limits.conn) {
        Ok(limit) => Some(Arc::new(
            account
                .connections
                .try_acquire(limit)
                .ok_or(AuthFailure::AccountConnectionsExceeded)?,
        )),
        Err(_) => None,
    };
    let deadline = [expiry(user.data.exp), window_end]
        .into_iter()
        .flatten()
        .min();
    let account_subs =
        usize::try_from(account.claims.limits.subs)
            .ok()
            .map(|max| AccountSubsLimit {
                counter: Arc::clone(&account.subscriptions),
                max,
            });
    Ok(ClientIdentity {
        account: account.id,
        user: user.data.sub.clone(),
        permissions: user.permissions.clone(),
        deadline,
        account_deadline: expiry(account.data.exp),
        limits: user.conn_limits,
        account_conn,
        account_subs,
    })
}

/// The user's permissions and limits: its own, or (signed by a scoped key) the scope's template
/// with its `{{…}}` tags filled in (nats-server `processUserPermissionsTemplate`).
fn effective_limits(
    data: &ClaimsData,
    claims: &UserClaims,
    account: &JwtAccount,
) -> Result<UserPermissionLimits, AuthFailure> {
    if data.iss == account.key {
        return Ok(claims.limits.clone());
    }
    // Signed by a signing key: only with `issuer_account` naming this account.
    if claims.issuer_account != account.key {
        return Err(AuthFailure::UnknownIssuer);
    }
    let key = account
        .claims
        .signing_keys
        .iter()
        .find(|k| k.key() == data.iss)
        .ok_or(AuthFailure::UnknownIssuer)?;
    match key {
        SigningKey::Plain(_) => Ok(claims.limits.clone()),
        SigningKey::Scoped(scope) => {
            if !claims.limits.is_empty() {
                // nats-io/jwt `ValidateScopedSigner`.
                return Err(AuthFailure::ScopedUserHasLimits);
            }
            apply_template(scope, data, claims, account)
        }
    }
}

fn apply_template(
    scope: &UserScope,
    data: &ClaimsData,
    claims: &UserClaims,
    account: &JwtAccount,
) -> Result<UserPermissionLimits, AuthFailure> {
    let mut limits = scope.template.clone();
    let fill = |list: &mut Vec<String>| -> Result<(), AuthFailure> {
        let mut out = Vec::with_capacity(list.len());
        for entry in list.iter() {
            out.extend(fill_template(entry, data, claims, account)?);
        }
        *list = out;
        Ok(())
    };
    let perms = &mut limits.permissions;
    fill(&mut perms.publish.allow)?;
    fill(&mut perms.publish.deny)?;
    fill(&mut perms.subscribe.allow)?;
    fill(&mut perms.subscribe.deny)?;
    Ok(limits)
}

/// Expands `{{name()}}`, `{{subject()}}`, `{{account-name()}}`, `{{account-subject()}}`,
/// `{{tag(k)}}` and `{{account-tag(k)}}` in one permission entry; a tag with several values gives
/// several entries, a missing tag fails the user (as nats-server).
fn fill_template(
    entry: &str,
    data: &ClaimsData,
    claims: &UserClaims,
    account: &JwtAccount,
) -> Result<Vec<String>, AuthFailure> {
    let Some(start) = entry.find("{{") else {
        return Ok(vec![entry.to_string()]);
    };
    let end = entry[start..]
        .find("}}")
        .map(|e| start + e)
        .ok_or(AuthFailure::InvalidPermissions)?;
    let op = entry[start + 2..end].trim();
    let values: Vec<String> = match op {
        "name()" => vec![data.name.clone()],
        "subject()" => vec![data.sub.clone()],
        "account-name()" => vec![account.data.name.clone()],
        "account-subject()" => vec![account.key.clone()],
        _ => {
            let (tags, key) = if let Some(k) = strip_call(op, "account-tag(") {
                (&account.claims.generic.tags, k)
            } else if let Some(k) = strip_call(op, "tag(") {
                (&claims.generic.tags, k)
            } else {
                return Err(AuthFailure::InvalidPermissions);
            };
            let prefix = format!("{}:", key.to_lowercase());
            let found: Vec<String> = tags
                .iter()
                .filter_map(|t| t.strip_prefix(&prefix).map(str::to_string))
                .collect();
            if found.is_empty() {
                return Err(AuthFailure::InvalidPermissions);
            }
            found
        }
    };
    let (head, tail) = (&entry[..start], &entry[end + 2..]);
    let mut out = Vec::new();
    for value in values {
        for rest in fill_template(tail, data, claims, account)? {
            out.push(format!("{head}{value}{rest}"));
        }
    }
    Ok(out)
}

fn strip_call<'a>(op: &'a str, name: &str) -> Option<&'a str> {
    op.strip_prefix(name)?.strip_suffix(')').map(str::trim)
}

/// JWT permission claims as a compiled [`Permissions`]; an empty allow list means "allow all",
/// as in nats-io/jwt. `resp` with `max`/`ttl` of 0 takes nats-server's defaults.
pub fn compile_permissions(claims: &PermissionClaims) -> Option<Permissions> {
    let allow = |list: &Vec<String>| (!list.is_empty()).then(|| list.clone());
    let response = claims.resp.map(|resp| {
        let defaults = ResponsePermission::default();
        ResponsePermission {
            max: u32::try_from(resp.max)
                .ok()
                .filter(|m| *m > 0)
                .unwrap_or(defaults.max),
            expires: u64::try_from(resp.ttl)
                .ok()
                .filter(|t| *t > 0)
                .map_or(defaults.expires, Duration::from_nanos),
        }
    });
    let spec = PermissionSpec {
        publish_allow: allow(&claims.publish.allow),
        publish_deny: claims.publish.deny.clone(),
        subscribe_allow: allow(&claims.subscribe.allow),
        subscribe_deny: claims.subscribe.deny.clone(),
        response,
    };
    Permissions::compile(&spec).ok()
}

/// nats-server `applyAccountLimits` `minLimit`: -1 is no limit; otherwise the smaller value.
pub(crate) fn min_limit(user: i64, account: i64) -> Option<usize> {
    let limit = match (user, account) {
        (jwt::claims::NO_LIMIT, a) => a,
        (u, jwt::claims::NO_LIMIT) => u,
        (u, a) => u.min(a),
    };
    (limit != jwt::claims::NO_LIMIT).then(|| usize::try_from(limit.max(0)).unwrap_or(0))
}

/// Revoked when the account's `revocations` has the user's key (or `*`) at or after its `iat`.
fn is_revoked(account: &AccountClaims, user: &ClaimsData) -> bool {
    [user.sub.as_str(), "*"]
        .iter()
        .filter_map(|k| account.revocations.get(*k))
        .any(|&at| user.iat <= at)
}

pub(crate) fn allows_standard_client(types: &[String]) -> bool {
    types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case("STANDARD"))
}

pub(crate) fn expiry(exp: i64) -> Option<SystemTime> {
    let secs = u64::try_from(exp).ok().filter(|s| *s > 0)?;
    // nats-server arms the timer at `exp`; a connection at `now == exp` is accepted and then
    // expires at once.
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

pub(crate) fn unix_seconds(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The zone a user's `times` are read in: `times_location` (an IANA name, nats-server
/// `time.LoadLocation`), else the server's local zone, as nats-server. An unknown name fails
/// the user (nats-io/jwt refuses such a JWT at validation).
pub(crate) fn times_zone(limits: &UserPermissionLimits) -> Result<Option<TimeZone>, AuthFailure> {
    if limits.times.is_empty() {
        return Ok(None);
    }
    let loc = limits.times_location.as_str();
    if loc.is_empty() || loc == "Local" {
        return Ok(Some(TimeZone::system()));
    }
    TimeZone::get(loc)
        .map(Some)
        .map_err(|_| AuthFailure::OutsideTimeWindow)
}

/// nats-server `validateTimes`: with `times`, now must fall inside one window (`HH:MM:SS` in
/// `zone`; an end before the start runs past midnight) that started today; the connection is
/// closed at the window's end.
pub(crate) fn time_window_end(
    limits: &UserPermissionLimits,
    zone: Option<&TimeZone>,
    now_unix: i64,
) -> Result<Option<SystemTime>, AuthFailure> {
    let Some(zone) = zone.filter(|_| !limits.times.is_empty()) else {
        return Ok(None);
    };
    let outside = |_| AuthFailure::OutsideTimeWindow;
    let now = jiff::Timestamp::from_second(now_unix).map_err(outside)?;
    let today = now.to_zoned(zone.clone()).date();
    // Wall-clock times that a zone change skips or repeats resolve as Go's `time.Date` does
    // (jiff's "compatible" rule: the later instant for a gap, the earlier for a fold).
    let at = |date: jiff::civil::Date, secs: i64| -> Result<jiff::Timestamp, AuthFailure> {
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let time = jiff::civil::Time::new(
            i8::try_from(h).map_err(|_| AuthFailure::OutsideTimeWindow)?,
            i8::try_from(m).map_err(|_| AuthFailure::OutsideTimeWindow)?,
            i8::try_from(s).map_err(|_| AuthFailure::OutsideTimeWindow)?,
            0,
        )
        .map_err(outside)?;
        Ok(date
            .to_datetime(time)
            .to_zoned(zone.clone())
            .map_err(outside)?
            .timestamp())
    };
    for range in &limits.times {
        let (Some(start), Some(end)) = (clock_seconds(&range.start), clock_seconds(&range.end))
        else {
            return Err(AuthFailure::OutsideTimeWindow);
        };
        let end_day = if start > end {
            today.tomorrow().map_err(outside)?
        } else {
            today
        };
        let (start_at, end_at) = (at(today, start)?, at(end_day, end)?);
        if start_at < now && end_at > now {
            let secs =
                u64::try_from(end_at.as_second()).map_err(|_| AuthFailure::OutsideTimeWindow)?;
            return Ok(UNIX_EPOCH.checked_add(Duration::from_secs(secs)));
        }
    }
    Err(AuthFailure::OutsideTimeWindow)
}

/// `HH:MM:SS` (Go layout `15:04:05`) as seconds into the day.
fn clock_seconds(text: &str) -> Option<i64> {
    let mut parts = text.split(':');
    let mut field = |max: i64| -> Option<i64> {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        p.parse::<i64>().ok().filter(|v| (0..max).contains(v))
    };
    let (h, m, s) = (field(24)?, field(60)?, field(60)?);
    parts.next().is_none().then_some(h * 3600 + m * 60 + s)
}

/// A CIDR of a user's `src` (Go `net.ParseCIDR`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, bits) = text.trim().split_once('/')?;
        let net: IpAddr = addr.parse().ok()?;
        let bits: u8 = bits.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        (bits <= max).then_some(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

// ---- config ---------------------------------------------------------------------------------

/// Reads `operator`, `trusted_keys`, `resolver`, `resolver_preload` and (in operator mode)
/// `system_account`. `None` when neither operators nor trusted keys are configured.
pub(crate) fn parse_settings(
    opts: &ServerOptions,
) -> Result<Option<OperatorSettings>, ConfigError> {
    let operator_value = OPERATOR_KEYS.iter().find_map(|k| opts.auth_section(k));
    let trusted_value = TRUSTED_KEYS.iter().find_map(|k| opts.auth_section(k));
    let (pos, operators) = match operator_value {
        Some(v) => (
            v.pos.clone(),
            read_operators(v, opts.config_file.as_deref())?,
        ),
        None => match trusted_value {
            Some(v) => (v.pos.clone(), Vec::new()),
            None => return Ok(None),
        },
    };
    let mut trusted_keys = Vec::new();
    if let Some(v) = trusted_value {
        if operator_value.is_some() {
            return Err(v.error(
                "trusted_keys",
                "conflicting options for 'TrustedKeys' and 'TrustedOperators'",
            ));
        }
        for key in v.expect_strings("trusted_keys")? {
            if !jwt::is_public_key(key, 'O') {
                return Err(v.error(
                    "trusted_keys",
                    format!("trust key \"{key}\" required to be a valid public operator nkey"),
                ));
            }
            trusted_keys.push(key.to_string());
        }
    }
    let resolver = resolver::parse(opts, &pos)?;
    let preload = read_preload(opts)?;
    let system_account = match opts
        .auth_section("system_account")
        .or(opts.auth_section("system"))
    {
        Some(v) => Some((v.expect_str("system_account")?.to_string(), v.pos.clone())),
        None => None,
    };
    Ok(Some(OperatorSettings {
        operators,
        trusted_keys,
        preload,
        resolver,
        system_account,
        pos,
    }))
}

/// nats-server `readOperatorJWT` for each path or inline JWT.
fn read_operators(
    value: &Value,
    config_file: Option<&Path>,
) -> Result<Vec<(ClaimsData, OperatorClaims)>, ConfigError> {
    let mut out = Vec::new();
    for item in value.expect_strings("operator")? {
        let bad =
            |msg: String| value.error("operator", format!("error parsing operator JWT: {msg}"));
        let text = match read_relative(item, config_file) {
            Ok(contents) => decorated_jwt(&contents).to_string(),
            Err(_) if item.starts_with(INLINE_JWT_PREFIX) => item.trim().to_string(),
            Err(e) => return Err(bad(format!("open {item}: {e}"))),
        };
        let decoded = jwt::decode_operator(&text).map_err(|e| bad(e.to_string()))?;
        out.push(decoded);
    }
    Ok(out)
}

/// Reads `path` as given (nats-server reads relative to its working directory), else relative
/// to the config file's directory.
fn read_relative(path: &str, config_file: Option<&Path>) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) => {
            let base = config_file
                .and_then(Path::parent)
                .filter(|_| Path::new(path).is_relative());
            match base {
                Some(dir) => std::fs::read_to_string(PathBuf::from(dir).join(path)),
                None => Err(e),
            }
        }
    }
}

/// The JWT inside a decorated file (`-----BEGIN … JWT-----` lines), or the whole text trimmed.
fn decorated_jwt(text: &str) -> &str {
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line.starts_with("---") && line.ends_with("---") {
            if let Some(next) = lines.next() {
                return next;
            }
        }
    }
    text.trim()
}

fn read_preload(opts: &ServerOptions) -> Result<Vec<(String, String, Pos)>, ConfigError> {
    let Some(value) = opts.auth_section("resolver_preload") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in value.expect_map("resolver_preload")? {
        let token = entry.value.expect_str(&entry.key)?;
        out.push((
            entry.key.clone(),
            token.trim().to_string(),
            entry.pos.clone(),
        ));
    }
    Ok(out)
}

/// Decodes the preloaded accounts, registers them as accounts (named by public key) and picks
/// the system account. `accounts` is the account list to extend.
pub(crate) fn build(
    settings: OperatorSettings,
    accounts: &mut Vec<AccountDef>,
    account_ids: &mut AHashMap<String, u32>,
    previous: Option<Previous>,
) -> Result<(OperatorMode, u32), ConfigError> {
    let mut trusted_keys = settings.trusted_keys.clone();
    let mut strict_identities = Vec::new();
    let mut operator_system = None;
    for (data, claims) in &settings.operators {
        trusted_keys.push(data.sub.clone());
        trusted_keys.extend(claims.signing_keys.iter().cloned());
        if claims.strict_signing_key_usage {
            strict_identities.push(data.sub.clone());
        }
        if !claims.system_account.is_empty() {
            operator_system = Some(claims.system_account.clone());
        }
    }
    let system_key = match (&settings.system_account, operator_system) {
        (Some((config, pos)), Some(op)) if *config != op => {
            return Err(ConfigError::Invalid {
                pos: pos.clone(),
                key: "system_account".into(),
                msg: "system_account in config and operator JWT must be identical".into(),
            });
        }
        (Some((config, _)), _) => Some(config.clone()),
        (None, op) => op,
    };
    let mut mode = OperatorMode {
        trusted_keys,
        strict_identities,
        accounts: AHashMap::new(),
        warnings: Vec::new(),
        hybrid: false,
        jwts: resolver::AccountJwts::default(),
        resolver: settings.resolver.clone(),
        verified: Default::default(),
        activation_expiry: None,
    };
    for (name, source) in account_sources(&settings, previous)? {
        let id = accounts.len();
        if let Some((token, origin)) = source {
            let pos = match &origin {
                Origin::Preload(pos) => pos,
                Origin::Directory | Origin::Update => &settings.pos,
            };
            match mode.preload_account(&name, &token, pos, id) {
                Ok(account) => {
                    if let Some(why) = &account.invalid {
                        // nats-server `checkResolvePreloads` warns; its users are then refused.
                        mode.warnings.push(format!(
                            "{pos}: Account [{name}] has validation issues: {why}"
                        ));
                    }
                    if account.claims.limits.data > 0 {
                        mode.warnings.push(format!(
                            "{pos}: limits.data of account [{name}] is not enforced (nor by \
                             nats-server)"
                        ));
                    }
                    mode.jwts.insert(name.clone(), token);
                    mode.accounts.insert(name.clone(), Arc::new(account));
                }
                // A bad file in the directory only leaves its account out (nats-server finds
                // out at the account's first lookup); a bad preload or update is refused.
                Err(err) if origin == Origin::Directory => {
                    tracing::warn!("resolver directory: account {name} not loaded: {err}");
                }
                Err(err) => return Err(err),
            }
        }
        account_ids.insert(name.clone(), u32::try_from(id).unwrap_or(u32::MAX));
        accounts.push(AccountDef::new(name));
    }
    let applied = imports::apply(&mode.accounts, accounts, jwt::encode::now_unix());
    mode.warnings.extend(applied.skipped);
    mode.activation_expiry = applied.next_expiry;
    // Without a JWT the system account still exists for `$SYS`, but no user can join it.
    let system_name = system_key.unwrap_or_else(|| crate::auth::DEFAULT_SYSTEM_ACCOUNT.into());
    let system = match account_ids.get(&system_name) {
        Some(id) => *id,
        None => {
            let id = u32::try_from(accounts.len()).unwrap_or(u32::MAX);
            account_ids.insert(system_name.clone(), id);
            accounts.push(AccountDef::new(system_name));
            id
        }
    };
    Ok((mode, system))
}

/// Where an account JWT of a build came from (which decides what a bad one does).
#[derive(Clone, Debug, PartialEq)]
enum Origin {
    Preload(Pos),
    Directory,
    Update,
}

/// The accounts of a build in id order: the previous build's first (a name without a JWT keeps
/// its id as a placeholder), then new ones (preloads in config order, then by key).
#[allow(clippy::type_complexity)]
fn account_sources(
    settings: &OperatorSettings,
    previous: Option<Previous>,
) -> Result<Vec<(String, Option<(String, Origin)>)>, ConfigError> {
    let fresh = match &previous {
        Some(p) if !p.reread => Vec::new(),
        _ => fresh_sources(settings)?,
    };
    let Previous {
        order,
        jwts,
        reread,
    } = previous.unwrap_or_default();
    // On a reload a JWT that no longer passes (other operator keys) only leaves its account out.
    let kept = if reread {
        Origin::Directory
    } else {
        Origin::Update
    };
    let mut merged: AHashMap<String, (String, Origin)> = jwts
        .0
        .into_iter()
        .map(|(key, token)| (key, (token, kept.clone())))
        .collect();
    let mut new_names = Vec::new();
    for (key, token, origin) in fresh {
        match merged.get(&key) {
            Some((stored, _)) if !resolver::is_newer(&token, stored) => continue,
            Some(_) => {}
            None if !order.contains(&key) => new_names.push(key.clone()),
            None => {}
        }
        merged.insert(key, (token, origin));
    }
    let mut updated: Vec<String> = merged
        .keys()
        .filter(|k| !order.contains(k) && !new_names.contains(k))
        .cloned()
        .collect();
    updated.sort();
    Ok(order
        .into_iter()
        .chain(new_names)
        .chain(updated)
        .map(|name| {
            let source = merged.remove(&name);
            (name, source)
        })
        .collect())
}

/// `resolver_preload` and (full resolver) the directory, the preloads written into it first
/// unless it holds newer ones; preloads in config order, then the other files by key.
fn fresh_sources(
    settings: &OperatorSettings,
) -> Result<Vec<(String, String, Origin)>, ConfigError> {
    let preload: Vec<(String, String, Origin)> = settings
        .preload
        .iter()
        .map(|(key, token, pos)| (key.clone(), token.clone(), Origin::Preload(pos.clone())))
        .collect();
    let Resolver::Full(full) = &settings.resolver else {
        return Ok(preload);
    };
    let pairs: Vec<(String, String)> = preload
        .iter()
        .map(|(key, token, _)| (key.clone(), token.clone()))
        .collect();
    let stored = full.load(&pairs).map_err(|msg| ConfigError::Invalid {
        pos: settings.pos.clone(),
        key: "resolver".into(),
        msg,
    })?;
    let mut out: Vec<(String, String, Origin)> = preload
        .into_iter()
        .map(|(key, token, origin)| {
            // The directory's copy is the newer one when it kept its own.
            match stored.iter().find(|(k, _)| *k == key) {
                Some((_, text)) if *text != token => (key, text.clone(), Origin::Directory),
                _ => (key, token, origin),
            }
        })
        .collect();
    for (key, token) in stored {
        if !out.iter().any(|(k, _, _)| *k == key) {
            out.push((key, token, Origin::Directory));
        }
    }
    Ok(out)
}

impl OperatorMode {
    /// One `resolver_preload` entry: a valid account JWT for that key, signed by a trusted key.
    fn preload_account(
        &self,
        key: &str,
        token: &str,
        pos: &Pos,
        id: usize,
    ) -> Result<JwtAccount, ConfigError> {
        let fail = |msg: String| ConfigError::Invalid {
            pos: pos.clone(),
            key: "resolver_preload".into(),
            msg: format!("preload account error for \"{key}\": {msg}"),
        };
        let (data, claims) = jwt::decode_account(token).map_err(|e| fail(e.to_string()))?;
        if data.sub != key {
            return Err(fail("the key is not the JWT's subject".into()));
        }
        self.check_account_issuer(&data)
            .map_err(|e| fail(e.into()))?;
        let default_permissions = if claims.default_permissions.is_empty() {
            None
        } else {
            let compiled = compile_permissions(&claims.default_permissions)
                .ok_or_else(|| fail("invalid default_permissions".into()))?;
            Some(Arc::new(compiled))
        };
        let invalid = imports::validate(key, &claims)
            .and_then(|()| callout::validate(&claims.authorization))
            .err();
        Ok(JwtAccount {
            id: u32::try_from(id).map_err(|_| fail("too many accounts".into()))?,
            key: key.to_string(),
            data,
            claims,
            default_permissions,
            invalid,
            connections: Arc::default(),
            subscriptions: Arc::default(),
        })
    }

    /// Spec §6 step 3: an account is signed by a trusted operator key.
    fn check_account_issuer(&self, data: &ClaimsData) -> Result<(), &'static str> {
        if !self.trusted_keys.contains(&data.iss) {
            return Err("account JWT is not signed by a trusted operator key");
        }
        if self.strict_identities.contains(&data.iss) {
            return Err("the operator requires accounts signed by a signing key");
        }
        Ok(())
    }
}

pub mod callout;
mod imports;
#[cfg(test)]
mod tests;
