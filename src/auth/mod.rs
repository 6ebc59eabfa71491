//! Who may connect, into which account, with which permissions.
//!
//! Cold: [`AuthConfig::from_options`] runs at config load; [`AuthConfig::verify`] once per
//! CONNECT. No I/O and no clock here: the shard passes the nonce, the certificate identity and
//! `now`, and runs any [`SlowCheck`] (bcrypt) on its blocking pool. Every method ends in the same
//! [`ClientIdentity`]; only this module builds one from credentials.
//!
//! Invariants: the decision order is nats-server 2.9.10's (`processClientOrLeafAuthentication`):
//! nkey user (when nkeys exist and CONNECT has `nkey`), then the users list (TLS mapping or
//! `user` lookup, `no_auth_user` when CONNECT has no credentials), then token, then the single
//! user. No secret reaches a `Debug`, `Display`, log or error: secrets are [`Secret`]s and
//! [`AuthFailure`] carries none.

pub mod accounts;
pub mod callout;
pub mod jwt;
mod load;
pub mod nkey;
pub mod operator;
pub mod resolver;
pub mod tls_map;
pub mod token;
pub mod user_pass;
pub mod verified;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use ahash::AHashMap;

use crate::config::{ConfigError, ServerOptions};
use crate::perms::Permissions;
use crate::protocol::ConnectOptions;

pub use accounts::{AccountDef, Export, ExportKind, Import, ImportMatches, ImportTable};
pub use user_pass::Secret;
pub use verified::VerifiedCache;

/// The global account `$G`: id 0.
pub const GLOBAL_ACCOUNT_ID: u32 = 0;
/// nats-server `globalAccountName`.
pub const GLOBAL_ACCOUNT: &str = "$G";
/// nats-server `DEFAULT_SYSTEM_ACCOUNT`.
pub const DEFAULT_SYSTEM_ACCOUNT: &str = "$SYS";
/// nats-server `AUTH_TIMEOUT`.
pub const AUTH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// Command-line credentials (`--user`, `--pass`, `--auth`, `--auth_timeout`); they override the
/// config file's `authorization` values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CliAuth {
    pub user: Option<String>,
    pub pass: Option<Secret>,
    pub token: Option<Secret>,
    pub auth_timeout: Option<Duration>,
}

/// The compiled authentication and account configuration.
#[derive(Debug)]
pub struct AuthConfig {
    token: Option<Arc<Secret>>,
    single_user: Option<(String, Arc<Secret>)>,
    /// Password (and TLS-mapped) users by name.
    users: AHashMap<String, Arc<User>>,
    /// NKey users by public key.
    nkeys: AHashMap<String, Arc<User>>,
    no_auth_user: Option<Arc<User>>,
    timeout: Duration,
    accounts: Vec<AccountDef>,
    account_ids: AHashMap<String, u32>,
    imports: ImportTable,
    system_account: u32,
    verify_and_map: bool,
    warnings: Vec<String>,
    /// JWT operator mode (`operator` / `trusted_keys` with a resolver): every CONNECT needs a
    /// user JWT, and no other method is configured.
    operator: Option<operator::OperatorMode>,
    /// Configured accounts with `signing_keys` (no operator): a CONNECT with a user JWT issued
    /// by one of them joins that account.
    hybrid: Option<operator::OperatorMode>,
    /// `authorization { auth_callout { … } }` (server-config mode).
    callout: Option<Arc<callout::CalloutConfig>>,
}

/// One configured user (password, TLS-mapped or nkey).
#[derive(Debug)]
pub(crate) struct User {
    /// User name, or the public key of an nkey user.
    name: String,
    /// `None` = no password configured (compared as the empty string, like nats-server).
    password: Option<Arc<Secret>>,
    account: u32,
    permissions: Option<Arc<Permissions>>,
    deadline: Option<SystemTime>,
    /// `allowed_connection_types` is absent or includes `STANDARD`.
    allows_client: bool,
    /// An nkey user's public key, decoded once at load (decoding is a third of a
    /// verification's cost).
    nkey: Option<nkey::PublicNkey>,
}

/// The outcome of [`AuthConfig::verify`].
#[derive(Debug)]
pub enum Verdict {
    /// Decided on the spot.
    Done(Result<ClientIdentity, AuthFailure>),
    /// Needs a bcrypt comparison: run [`SlowCheck::run`] on a blocking thread.
    Slow(SlowCheck),
}

/// A bcrypt comparison to run off the shard. Owns everything it needs (`Send + 'static`).
pub struct SlowCheck {
    hash: Arc<Secret>,
    offered: Secret,
    identity: ClientIdentity,
    failure: AuthFailure,
    /// Set by `verified_before`, so `run` does not compute it again.
    pair: Option<verified::Fingerprint>,
}

impl SlowCheck {
    /// The identity to accept at once when this user and password passed against this same
    /// hash within the cache's time to live; `None` when the check must run.
    pub fn verified_before(
        &mut self,
        cache: &VerifiedCache,
        now: Instant,
    ) -> Option<ClientIdentity> {
        let pair = cache.pair(&self.identity.user, &self.offered, &self.hash);
        if cache.is_verified(&pair, now) {
            return Some(self.identity.clone());
        }
        self.pair = Some(pair);
        None
    }

    /// Runs the comparison (tens of milliseconds at cost 11); a match is recorded in `cache`
    /// as of `now()`.
    pub fn run(
        self,
        cache: &VerifiedCache,
        now: impl FnOnce() -> Instant,
    ) -> Result<ClientIdentity, AuthFailure> {
        if !user_pass::bcrypt_matches(&self.hash, &self.offered) {
            return Err(self.failure);
        }
        let pair = self
            .pair
            .unwrap_or_else(|| cache.pair(&self.identity.user, &self.offered, &self.hash));
        cache.record(pair, cache.hash(&self.hash), now());
        Ok(self.identity)
    }
}

impl SlowCheck {
    /// The account the user would be bound to if the check passes.
    pub fn account(&self) -> u32 {
        self.identity.account
    }
}

impl fmt::Debug for SlowCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlowCheck")
            .field("user", &self.identity.user)
            .finish_non_exhaustive()
    }
}

/// Who a connection is, once authenticated.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientIdentity {
    /// Account id (index into [`AuthConfig::accounts`]).
    pub account: u32,
    /// User name for logs, or the nkey public key; empty for token and anonymous clients.
    pub user: String,
    /// `None` = no restrictions.
    pub permissions: Option<Arc<Permissions>>,
    /// `connection_deadline`, a user JWT's `exp` or the end of its time window: close the
    /// connection with `User Authentication Expired` then.
    pub deadline: Option<SystemTime>,
    /// The account JWT's `exp`: close the connection with `Account Authentication Expired`
    /// then (nats-server `Account.expiredTimeout`).
    pub account_deadline: Option<SystemTime>,
    /// Per-connection limits from a user or account JWT (none for the other methods).
    pub limits: ConnLimits,
    /// This connection's place in its JWT account's `limits.conn`; the connection keeps it
    /// until it is gone.
    pub account_conn: Option<Arc<operator::AccountConnGuard>>,
    /// The JWT account's `limits.subs`, counted over all its connections on all shards.
    pub account_subs: Option<operator::AccountSubsLimit>,
}

/// Limits a JWT puts on one connection, already the smaller of the user's and the account's
/// (nats-server `applyAccountLimits`). `None` = no limit beyond the server's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnLimits {
    /// Largest payload; lowers the server's `max_payload` (a new INFO says so).
    pub max_payload: Option<usize>,
    /// Most subscriptions; lowers the server's `max_subscriptions`.
    pub max_subs: Option<usize>,
}

/// Why a CONNECT was refused: for the DEBUG log only. The client always gets
/// `-ERR 'Authorization Violation'`. Carries no secret.
#[derive(Clone, Copy, Debug, Eq, PartialEq, thiserror::Error)]
pub enum AuthFailure {
    #[error("no credentials")]
    MissingCredentials,
    #[error("unknown user")]
    UnknownUser,
    #[error("bad password")]
    BadPassword,
    #[error("bad token")]
    BadToken,
    #[error("unknown nkey")]
    UnknownNkey,
    #[error("missing signature")]
    MissingSignature,
    #[error("bad signature")]
    BadSignature,
    #[error("deadline passed")]
    DeadlinePassed,
    #[error("connection type not allowed")]
    ConnectionTypeNotAllowed,
    #[error("no client certificate")]
    MissingCertificate,
    #[error("certificate maps to no user")]
    CertificateNotMapped,
    #[error("legacy account field in CONNECT")]
    LegacyAccount,
    #[error("user JWT refused: {0}")]
    Jwt(jwt::JwtError),
    #[error("user JWT names an unknown account")]
    UnknownAccount,
    #[error("account JWT expired or not yet valid")]
    AccountExpired,
    #[error("account JWT fails validation")]
    AccountInvalid,
    #[error("user JWT issuer is not the account or one of its signing keys")]
    UnknownIssuer,
    #[error("user JWT signed by a scoped key sets its own permissions or limits")]
    ScopedUserHasLimits,
    #[error("user JWT permissions are not valid")]
    InvalidPermissions,
    #[error("user JWT revoked")]
    Revoked,
    #[error("client address not in the user JWT's src")]
    SourceNotAllowed,
    #[error("outside the user JWT's time windows")]
    OutsideTimeWindow,
    #[error("bearer token not allowed by the account")]
    BearerNotAllowed,
    #[error("maximum account active connections exceeded")]
    AccountConnectionsExceeded,
    #[error("{0}")]
    Callout(callout::CalloutError),
}

/// Identity material from a verified client certificate (the TLS layer fills it).
pub use crate::tls::CertIdentity;

impl AuthConfig {
    /// Compiles the `authorization`, `accounts`, `no_auth_user` and `system_account` sections.
    pub fn from_options(opts: &ServerOptions) -> Result<AuthConfig, ConfigError> {
        load::build(opts, &CliAuth::default())
    }

    /// As [`AuthConfig::from_options`], with command-line credentials overriding the file.
    pub fn from_options_with_cli(
        opts: &ServerOptions,
        cli: &CliAuth,
    ) -> Result<AuthConfig, ConfigError> {
        load::build(opts, cli)
    }

    /// Set from `tls { verify_and_map: true }` (or our alias `map_and_verify`).
    pub fn set_verify_and_map(&mut self, on: bool) {
        self.verify_and_map = on;
    }

    pub fn verify_and_map(&self) -> bool {
        self.verify_and_map
    }

    /// Every bcrypt hash configured (token, single user, users list), for
    /// [`VerifiedCache::retain_hashes`] after a reload.
    pub fn bcrypt_hashes(&self) -> impl Iterator<Item = &Secret> {
        let token = self.token.as_deref();
        let single = self.single_user.as_ref().map(|(_, p)| &**p);
        let users = self.users.values().filter_map(|u| u.password.as_deref());
        token
            .into_iter()
            .chain(single)
            .chain(users)
            .filter(|s| s.is_bcrypt())
    }

    /// Start-up warnings (never containing a secret).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    fn has_auth(&self) -> bool {
        self.token.is_some()
            || self.single_user.is_some()
            || !self.users.is_empty()
            || !self.nkeys.is_empty()
            || self.operator.is_some()
            || self.hybrid.is_some()
    }

    /// The auth callout, when configured (server-config mode).
    pub fn callout(&self) -> Option<&Arc<callout::CalloutConfig>> {
        self.callout.as_ref()
    }

    /// Operator mode, when configured.
    pub fn operator(&self) -> Option<&operator::OperatorMode> {
        self.operator.as_ref()
    }

    /// INFO `auth_required`: some method is configured and there is no `no_auth_user`.
    pub fn auth_required(&self) -> bool {
        self.has_auth() && self.no_auth_user.is_none()
    }

    /// Whether the first op must be CONNECT (else `Authorization Violation`) and the auth timer
    /// runs: as nats-server, exactly when `auth_required` is advertised.
    pub fn connect_required(&self) -> bool {
        self.auth_required()
    }

    /// Whether INFO carries a nonce (nkey users exist).
    pub fn nonce_required(&self) -> bool {
        !self.nkeys.is_empty() || self.operator.is_some() || self.hybrid.is_some()
    }

    /// `authorization.timeout`, default 2 s.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Index 0 is `$G`; the system account is included.
    pub fn accounts(&self) -> &[AccountDef] {
        &self.accounts
    }

    pub fn account_id(&self, name: &str) -> Option<u32> {
        self.account_ids.get(name).copied()
    }

    /// The system account's id (`system_account`, default `$SYS`).
    pub fn system_account(&self) -> u32 {
        self.system_account
    }

    /// Cross-account routes for the publish path.
    pub fn imports(&self) -> &ImportTable {
        &self.imports
    }

    /// The identity of a client that never needs to authenticate (auth not required): the
    /// `no_auth_user`'s, or anonymous in `$G`. `None` when auth is required, or when the
    /// `no_auth_user` fails the checks a login as that user gets at `now` (connection types,
    /// `connection_deadline`): such a client must then log in with a CONNECT.
    pub fn default_identity(&self, now: SystemTime) -> Option<ClientIdentity> {
        if let Some(user) = &self.no_auth_user {
            return user.check_admission(now).ok().map(|()| user.identity());
        }
        (!self.has_auth()).then(anonymous)
    }

    /// Checks one CONNECT. `nonce` is the string sent in INFO, `cert` the verified client
    /// certificate, `now` the wall clock (for `connection_deadline`).
    pub fn verify(
        &self,
        connect: &ConnectOptions,
        nonce: Option<&str>,
        cert: Option<&CertIdentity>,
        now: SystemTime,
    ) -> Verdict {
        self.verify_from(connect, nonce, cert, None, now)
    }

    /// [`AuthConfig::verify`] knowing the client's address (for a user JWT's `src`).
    pub fn verify_from(
        &self,
        connect: &ConnectOptions,
        nonce: Option<&str>,
        cert: Option<&CertIdentity>,
        peer: Option<std::net::IpAddr>,
        now: SystemTime,
    ) -> Verdict {
        // nats-server `processConnect`: the legacy `account`/`new_account` fields are refused.
        if connect.account.is_some() || connect.new_account {
            return Verdict::Done(Err(AuthFailure::LegacyAccount));
        }
        if let Some(operator) = &self.operator {
            return Verdict::Done(operator.verify(connect, nonce, peer, now));
        }
        if !self.has_auth() {
            return Verdict::Done(Ok(anonymous()));
        }
        if let (Some(hybrid), Some(_)) = (&self.hybrid, &connect.jwt) {
            return Verdict::Done(hybrid.verify(connect, nonce, peer, now));
        }
        if let Some(key) = connect.nkey.as_deref().filter(|_| !self.nkeys.is_empty()) {
            return Verdict::Done(self.verify_nkey(key, connect, nonce, now));
        }
        if !self.users.is_empty() || !self.nkeys.is_empty() {
            return self.verify_users(connect, cert, now);
        }
        if let Some(token) = &self.token {
            return token::verify(token, connect);
        }
        if let Some((name, password)) = &self.single_user {
            return verify_single_user(name, password, connect);
        }
        Verdict::Done(Err(AuthFailure::MissingCredentials))
    }

    fn verify_nkey(
        &self,
        key: &str,
        connect: &ConnectOptions,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> Result<ClientIdentity, AuthFailure> {
        let user = self.nkeys.get(key).ok_or(AuthFailure::UnknownNkey)?;
        user.check_admission(now)?;
        match &user.nkey {
            Some(public) => public.verify(nonce, connect.sig.as_deref())?,
            None => nkey::verify_signature(key, nonce, connect.sig.as_deref())?,
        }
        Ok(user.identity())
    }

    fn verify_users(
        &self,
        connect: &ConnectOptions,
        cert: Option<&CertIdentity>,
        now: SystemTime,
    ) -> Verdict {
        let user = if self.verify_and_map {
            self.mapped_user(cert)
        } else {
            match self.named_user(connect) {
                Named::User(user) => Ok(user),
                Named::NoAuthUser(user) => {
                    // The no_auth_user is admitted without a password check.
                    let admitted = user.check_admission(now).map(|()| user.identity());
                    return Verdict::Done(admitted);
                }
                Named::Failure(f) => Err(f),
            }
        };
        let user = match user.and_then(|u| u.check_admission(now).map(|()| u)) {
            Ok(user) => user,
            Err(failure) => return Verdict::Done(Err(failure)),
        };
        let empty = Arc::new(Secret::default());
        let password = user.password.as_ref().unwrap_or(&empty);
        user_pass::compare(
            password,
            connect.pass.as_deref(),
            user.identity(),
            AuthFailure::BadPassword,
        )
    }

    fn named_user(&self, connect: &ConnectOptions) -> Named<'_> {
        let no_credentials =
            is_blank(&connect.user) && is_blank(&connect.pass) && is_blank(&connect.auth_token);
        if let (true, Some(user)) = (no_credentials, &self.no_auth_user) {
            return Named::NoAuthUser(user);
        }
        let Some(name) = connect.user.as_deref().filter(|n| !n.is_empty()) else {
            return Named::Failure(AuthFailure::MissingCredentials);
        };
        match self.users.get(name) {
            Some(user) => Named::User(user),
            None => Named::Failure(AuthFailure::UnknownUser),
        }
    }

    fn mapped_user(&self, cert: Option<&CertIdentity>) -> Result<&Arc<User>, AuthFailure> {
        let cert = cert.ok_or(AuthFailure::MissingCertificate)?;
        let allowed = |name: &str| self.users.get(name).is_some_and(|u| u.allows_client);
        let names = self
            .users
            .iter()
            .filter(|(_, u)| u.allows_client)
            .map(|(n, _)| n.as_str());
        let name = tls_map::map_certificate(cert, names, allowed)
            .ok_or(AuthFailure::CertificateNotMapped)?;
        self.users
            .get(&name)
            .ok_or(AuthFailure::CertificateNotMapped)
    }
}

enum Named<'a> {
    User(&'a Arc<User>),
    NoAuthUser(&'a Arc<User>),
    Failure(AuthFailure),
}

impl User {
    fn identity(&self) -> ClientIdentity {
        ClientIdentity {
            account: self.account,
            user: self.name.clone(),
            permissions: self.permissions.clone(),
            deadline: self.deadline,
            account_deadline: None,
            limits: ConnLimits::default(),
            account_conn: None,
            account_subs: None,
        }
    }

    /// Connection type and `connection_deadline` (at or after the deadline is refused).
    fn check_admission(&self, now: SystemTime) -> Result<(), AuthFailure> {
        if !self.allows_client {
            return Err(AuthFailure::ConnectionTypeNotAllowed);
        }
        match self.deadline {
            Some(deadline) if now >= deadline => Err(AuthFailure::DeadlinePassed),
            _ => Ok(()),
        }
    }
}

fn is_blank(field: &Option<String>) -> bool {
    field.as_deref().is_none_or(str::is_empty)
}

fn anonymous() -> ClientIdentity {
    ClientIdentity {
        account: GLOBAL_ACCOUNT_ID,
        user: String::new(),
        permissions: None,
        deadline: None,
        account_deadline: None,
        limits: ConnLimits::default(),
        account_conn: None,
        account_subs: None,
    }
}

/// nats-server: the user name must match exactly, then the password.
fn verify_single_user(name: &str, password: &Arc<Secret>, connect: &ConnectOptions) -> Verdict {
    if connect.user.as_deref() != Some(name) {
        let failure = if is_blank(&connect.user) {
            AuthFailure::MissingCredentials
        } else {
            AuthFailure::UnknownUser
        };
        return Verdict::Done(Err(failure));
    }
    let identity = ClientIdentity {
        user: name.to_string(),
        ..anonymous()
    };
    user_pass::compare(
        password,
        connect.pass.as_deref(),
        identity,
        AuthFailure::BadPassword,
    )
}

#[cfg(test)]
mod tests;
