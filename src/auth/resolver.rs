//! Account resolvers of operator mode and the account updates they take without a restart:
//! `resolver: MEMORY` (accounts from `resolver_preload`) and `resolver: { type: full, dir, … }`
//! (one `<ACCOUNT_PUBLIC_KEY>.jwt` file per account, nats-server `DirAccResolver`).
//!
//! Cold: the directory is read at config load and on each poll (`interval`); an update (a
//! `$SYS` claims request, or a changed file) is checked here once and then applied by building
//! a new [`AuthConfig`] that the shards pick up as they pick up a reload (every live connection
//! is re-checked against it). Invariants: an update is checked in full (signature, trusted
//! issuer, subject, not older than the stored JWT) before anything is written or applied, and a
//! refused one changes nothing; account ids never move (accounts new to a build are appended
//! after the known ones, and a deleted account keeps its id without a JWT), so a live connection
//! keeps its subject index; no JWT text reaches a log line or an error message.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ahash::AHashMap;

use crate::auth::AuthConfig;
use crate::auth::jwt::{self, JwtError};
use crate::auth::operator::OperatorMode;
use crate::config::{ConfigError, Map, Pos, ServerOptions, Value, ValueKind};

/// nats-server `DEFAULT_ACCOUNT_FETCH_TIMEOUT` (`timeout`). There are no other servers to
/// fetch an account from here; the value is kept for the config's sake.
pub const FETCH_TIMEOUT_DEFAULT: Duration = Duration::from_millis(1900);
/// nats-server `NewDirAccResolver`: an `interval` of zero or less is one minute.
pub const INTERVAL_DEFAULT: Duration = Duration::from_secs(60);
/// The shortest directory poll we run, whatever `interval` says (a typo such as `"1ms"` would
/// otherwise read the directory in a loop).
pub const INTERVAL_MIN: Duration = Duration::from_millis(100);
/// nats-server `fileExtension`.
pub const FILE_EXTENSION: &str = ".jwt";
/// The suffix a deleted account's file is renamed to (nats-server `RenameDeleted`).
pub const DELETED_SUFFIX: &str = ".deleted";
/// nats-server `DirJWTStore` file permissions.
const FILE_MODE: u32 = 0o640;

/// Which resolver operator mode uses.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolver {
    /// `resolver: MEMORY`: the accounts of `resolver_preload`, updated in memory only.
    Memory,
    /// `resolver: { type: full, … }`.
    Full(FullResolver),
    /// No resolver: user JWTs signed by configured accounts' signing keys, without an
    /// operator (`OperatorMode::hybrid`); no claims request is answered.
    None,
}

/// `resolver: { type: full, dir, allow_delete, interval, timeout, limit }`.
#[derive(Clone, Debug, PartialEq)]
pub struct FullResolver {
    /// Where the `<ACCOUNT_PUBLIC_KEY>.jwt` files are (as given: relative to the working
    /// directory, as nats-server reads it).
    pub dir: PathBuf,
    /// `$SYS.REQ.CLAIMS.DELETE` is honoured.
    pub allow_delete: bool,
    /// How often the directory is read for files changed by hand (nats-server: the cluster
    /// sync period).
    pub interval: Duration,
    pub timeout: Duration,
    /// Most accounts stored (`limit`; 0 or less in the config = no limit).
    pub limit: usize,
}

/// What a claims request answers: nats-server `respondToUpdate`'s `account`, `message` and
/// error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimsOutcome {
    /// Empty = no `account` field.
    pub account: String,
    pub message: String,
    /// `Some` = the reply is an error (`code` 500, `description` "<message> - <error>").
    pub error: Option<String>,
}

impl ClaimsOutcome {
    fn ok(account: &str, message: &str) -> ClaimsOutcome {
        ClaimsOutcome {
            account: account.to_string(),
            message: message.to_string(),
            error: None,
        }
    }

    fn failed(account: &str, message: &str, error: impl Into<String>) -> ClaimsOutcome {
        ClaimsOutcome {
            account: account.to_string(),
            message: message.to_string(),
            error: Some(error.into()),
        }
    }

    /// nats-server's `description` of an error reply.
    pub fn description(&self) -> Option<String> {
        self.error
            .as_ref()
            .map(|e| format!("{} - {e}", self.message))
    }
}

/// An account JWT that passed every check of an update, to store and apply.
#[derive(Debug)]
pub struct CheckedUpdate {
    pub key: String,
    pub jwt: String,
    /// The stored JWT is this one already: nothing to write or apply.
    pub unchanged: bool,
}

/// The JWT of each account, by public key. Its `Debug` shows the keys only: a JWT never
/// reaches a log line.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AccountJwts(pub(crate) AHashMap<String, String>);

impl std::fmt::Debug for AccountJwts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl std::ops::Deref for AccountJwts {
    type Target = AHashMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for AccountJwts {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// Where the previous build's accounts were, so a new build keeps their ids.
#[derive(Debug, Default)]
pub(crate) struct Previous {
    /// Account names after `$G`, in id order: public keys, or the `$SYS` placeholder.
    pub order: Vec<String>,
    /// The JWT of each account that has one.
    pub jwts: AccountJwts,
    /// Read `resolver_preload` and the directory again, a newer JWT there winning (a reload);
    /// else the JWTs above are the whole truth (an update).
    pub reread: bool,
}

impl Previous {
    /// The account order and JWTs of `auth`, when it is in operator mode.
    pub(crate) fn of(auth: &AuthConfig, reread: bool) -> Option<Previous> {
        let operator = auth.operator()?;
        Some(Previous {
            order: auth
                .accounts()
                .iter()
                .skip(1)
                .map(|a| a.name.clone())
                .collect(),
            jwts: operator.jwts().clone(),
            reread,
        })
    }
}

impl AuthConfig {
    /// A new configuration for `opts` that keeps this one's account ids (for a reload).
    pub fn from_options_after(
        opts: &ServerOptions,
        previous: &AuthConfig,
    ) -> Result<AuthConfig, ConfigError> {
        super::load::build_with(opts, &opts.cli_auth, Previous::of(previous, true))
    }

    /// This configuration with account JWTs replaced, added (`Some`) or removed (`None`):
    /// what an update applies. Account ids stay as they are.
    pub fn with_account_jwts(
        &self,
        opts: &ServerOptions,
        changes: &[(String, Option<String>)],
    ) -> Result<AuthConfig, ConfigError> {
        let mut previous = Previous::of(self, false).unwrap_or_default();
        for (key, jwt) in changes {
            match jwt {
                Some(jwt) => previous.jwts.insert(key.clone(), jwt.clone()),
                None => previous.jwts.remove(key),
            };
        }
        super::load::build_with(opts, &opts.cli_auth, Some(previous))
    }
}

/// A claims request of the system account, by subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimsRequest {
    /// `$SYS.REQ.CLAIMS.UPDATE` (`None`), `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` and the older
    /// `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`.
    Update(Option<String>),
    /// `$SYS.REQ.ACCOUNT.<key>.CLAIMS.LOOKUP`: the reply is the raw JWT.
    Lookup(String),
    /// `$SYS.REQ.CLAIMS.LIST`: every stored account key.
    List,
    /// `$SYS.REQ.CLAIMS.DELETE` (with `allow_delete`).
    Delete,
}

impl Resolver {
    /// The claims request `subject` is, when this resolver answers it: nats-server's full
    /// resolver subscribes to all of them, its memory resolver to the per-account updates only
    /// (other subjects get no responders there).
    pub fn claims_request(&self, subject: &[u8]) -> Option<ClaimsRequest> {
        if *self == Resolver::None {
            return None;
        }
        let subject = std::str::from_utf8(subject).ok()?;
        let full = matches!(self, Resolver::Full(_));
        let tokens: Vec<&str> = subject.split('.').collect();
        match tokens.as_slice() {
            ["$SYS", "REQ", "CLAIMS", "UPDATE"] if full => Some(ClaimsRequest::Update(None)),
            ["$SYS", "REQ", "ACCOUNT", key, "CLAIMS", "UPDATE"]
            | ["$SYS", "ACCOUNT", key, "CLAIMS", "UPDATE"] => {
                Some(ClaimsRequest::Update(Some((*key).to_string())))
            }
            ["$SYS", "REQ", "ACCOUNT", key, "CLAIMS", "LOOKUP"] if full => {
                Some(ClaimsRequest::Lookup((*key).to_string()))
            }
            ["$SYS", "REQ", "CLAIMS", "LIST"] if full => Some(ClaimsRequest::List),
            ["$SYS", "REQ", "CLAIMS", "DELETE"] if full => Some(ClaimsRequest::Delete),
            _ => None,
        }
    }
}

// ---- config ---------------------------------------------------------------------------------

/// Reads `resolver` (nats-server `parseAccountResolver`). `pos` is where operator mode was
/// configured, for the error when there is no resolver.
pub(crate) fn parse(opts: &ServerOptions, pos: &Pos) -> Result<Resolver, ConfigError> {
    let Some(value) = opts.auth_section("resolver") else {
        return Err(ConfigError::Invalid {
            pos: pos.clone(),
            key: "operator".into(),
            msg: "operators require an account resolver to be configured".into(),
        });
    };
    match &value.kind {
        ValueKind::String(s) => {
            let upper = s.trim().to_ascii_uppercase();
            if upper == "MEM" || upper == "MEMORY" {
                Ok(Resolver::Memory)
            } else if upper.starts_with("URL") {
                Err(value.error(
                    "resolver",
                    "the URL resolver is not supported by this ringnats build; use \
                     `resolver: MEMORY` with `resolver_preload`, or `resolver: { type: full, \
                     dir: … }`",
                ))
            } else {
                Err(unknown_resolver(value))
            }
        }
        ValueKind::Map(map) => parse_dir(value, map),
        _ => Err(value.error(
            "resolver",
            format!(
                "error parsing operator resolver, wrong type {}",
                value.type_name()
            ),
        )),
    }
}

fn unknown_resolver(value: &Value) -> ConfigError {
    value.error(
        "resolver",
        "error parsing account resolver, should be MEM or URL(\"url\") or a map containing dir \
         and type state=[FULL|CACHE])",
    )
}

/// `{ type: full|cache, dir, allow_delete, limit, ttl, interval, timeout }`; other keys are
/// ignored, as nats-server ignores them.
fn parse_dir(value: &Value, map: &Map) -> Result<Resolver, ConfigError> {
    let mut kind = String::new();
    let mut dir = String::new();
    let mut allow_delete = false;
    let mut limit = 0i64;
    let (mut ttl, mut interval, mut timeout) = (None, None, None);
    for entry in map.iter() {
        let v = &entry.value;
        match entry.key_lower().as_str() {
            "type" => kind = v.expect_str("type")?.to_ascii_uppercase(),
            "dir" => dir = v.expect_str("dir")?.to_string(),
            "allow_delete" => allow_delete = v.expect_bool("allow_delete")?,
            "limit" => limit = v.expect_int("limit")?,
            "ttl" => ttl = Some(v.expect_duration("ttl")?),
            "interval" => interval = Some(v.expect_duration("interval")?),
            "timeout" => timeout = Some(v.expect_duration("timeout")?),
            _ => {}
        }
    }
    if dir.is_empty() {
        return Err(value.error(
            "resolver",
            "dir has no value and needs to point to a directory",
        ));
    }
    if std::fs::metadata(&dir).is_ok_and(|m| !m.is_dir()) {
        return Err(value.error("resolver", "dir needs to point to an accessible directory"));
    }
    if timeout.is_some_and(|t| t.is_zero()) {
        return Err(value.error("resolver", "Fetch timeout 0s is too small"));
    }
    match kind.as_str() {
        "FULL" => {
            if ttl.is_some() {
                return Err(value.error("resolver", "FULL does not accept ttl"));
            }
            Ok(Resolver::Full(FullResolver {
                dir: PathBuf::from(dir),
                allow_delete,
                interval: interval
                    .filter(|i| !i.is_zero())
                    .unwrap_or(INTERVAL_DEFAULT),
                timeout: timeout.unwrap_or(FETCH_TIMEOUT_DEFAULT),
                limit: usize::try_from(limit)
                    .ok()
                    .filter(|l| *l > 0)
                    .unwrap_or(usize::MAX),
            }))
        }
        // nats-server's cache resolver (`CacheDirAccResolver`) fetches the accounts it lacks
        // from the other servers of its cluster over `$SYS.REQ.ACCOUNT.*.CLAIMS.LOOKUP`.
        // Standalone, none answer: what is left is a full resolver whose files go away after
        // `ttl` or past `limit` (LRU) while the accounts stay loaded until a restart loses
        // them, and that skips pushes for accounts not loaded yet. Running that would only
        // lose accounts a full resolver keeps, so it is refused with the way out.
        "CACHE" => Err(value.error(
            "resolver",
            "`resolver: { type: cache }` is not supported by this ringnats build: a cache \
             resolver fetches the accounts it lacks from the other servers of a cluster, which a \
             standalone ringnats does not have; use `type: full` with the same dir (it keeps \
             every account there, pushed or preloaded)",
        )),
        _ => Err(unknown_resolver(value)),
    }
}

// ---- the directory --------------------------------------------------------------------------

impl FullResolver {
    /// Creates the directory if needed, writes each preloaded JWT unless the directory holds a
    /// newer one (nats-server `saveIfNewer`), and returns every account file's JWT by key.
    pub(crate) fn load(
        &self,
        preload: &[(String, String)],
    ) -> Result<Vec<(String, String)>, String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        for (key, token) in preload {
            let stored = self.read(key);
            if stored.as_deref().is_some_and(|s| !is_newer(token, s)) {
                continue;
            }
            self.store(key, token)
                .map_err(|e| format!("cannot store the preloaded account {key}: {e}"))?;
        }
        Ok(self.scan())
    }

    /// Every `<ACCOUNT_PUBLIC_KEY>.jwt` in the directory (trimmed), sorted by key. Files that
    /// cannot be read, are too long or are not named by an account key are left out.
    pub fn scan(&self) -> Vec<(String, String)> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                let key = name.strip_suffix(FILE_EXTENSION)?;
                if !jwt::is_public_key(key, 'A') {
                    return None;
                }
                Some((key.to_string(), self.read(key)?))
            })
            .collect();
        out.sort();
        out
    }

    /// The stored JWT of `key`, trimmed.
    pub fn read(&self, key: &str) -> Option<String> {
        let path = self.path(key);
        let len = std::fs::metadata(&path).ok()?.len();
        if usize::try_from(len).map_or(true, |n| n > jwt::JWT_BYTES_MAX) {
            return None;
        }
        std::fs::read_to_string(path)
            .ok()
            .map(|s| s.trim().to_string())
    }

    /// Writes `key`'s JWT: a temporary file renamed over the old one, so a reader (or the
    /// poll) never sees half a JWT.
    pub fn store(&self, key: &str, token: &str) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{key}{FILE_EXTENSION}.tmp"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        file.write_all(token.as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, self.path(key))
    }

    /// Renames `key`'s file to `<key>.jwt.deleted` (nats-server `RenameDeleted`); a missing file
    /// is fine.
    pub fn delete(&self, key: &str) -> std::io::Result<()> {
        let path = self.path(key);
        let mut deleted = path.clone().into_os_string();
        deleted.push(DELETED_SUFFIX);
        match std::fs::rename(&path, deleted) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}{FILE_EXTENSION}"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// nats-server `saveIfNewer`: `new` replaces `stored` unless both decode and they are the same
/// JWT (`jti`) or `stored` was issued later. A stored JWT that does not decode is replaced.
pub(crate) fn is_newer(new: &str, stored: &str) -> bool {
    let (Ok(new), Ok(stored)) = (jwt::decode(new), jwt::decode(stored)) else {
        return true;
    };
    new.data.jti != stored.data.jti && stored.data.iat <= new.data.iat
}

// ---- updates --------------------------------------------------------------------------------

/// nats-server's messages for an update (`respondToUpdate` callers).
const UPDATE_ERROR: &str = "jwt update resulted in error";
const UPDATED: &str = "jwt updated";

impl OperatorMode {
    /// Checks an account JWT pushed on `$SYS.REQ.CLAIMS.UPDATE` (`subject_key` `None`) or
    /// `$SYS.REQ.ACCOUNT.<key>.CLAIMS.UPDATE` (and the older `$SYS.ACCOUNT.<key>.CLAIMS.UPDATE`),
    /// or read from a changed file. `Err` is the refusal to answer; nothing has changed then.
    pub fn check_update(
        &self,
        subject_key: Option<&str>,
        payload: &[u8],
    ) -> Result<CheckedUpdate, ClaimsOutcome> {
        let memory = matches!(self.resolver(), Resolver::Memory);
        let named = subject_key.unwrap_or("n/a");
        let token = std::str::from_utf8(payload).unwrap_or("").trim();
        if memory && token.is_empty() {
            return Err(ClaimsOutcome::failed(
                named,
                "jwt update error",
                "request body is empty",
            ));
        }
        // nats-server answers a JWT that does not decode with "n/a" in the full resolver and
        // with the subject's key in the memory one.
        let decode_account = if memory { named } else { "n/a" };
        let (data, _) = jwt::decode_account(token)
            .map_err(|e| ClaimsOutcome::failed(decode_account, UPDATE_ERROR, decode_text(e)))?;
        // nats-server's `claimValidate` leaves time checks out: an expired account is stored,
        // and its users are then refused.
        let key = data.sub.clone();
        if subject_key.is_some_and(|k| k != key) {
            return Err(ClaimsOutcome::failed(
                named,
                UPDATE_ERROR,
                "subject does not match jwt content",
            ));
        }
        if self.is_strict_identity(&data.iss) {
            return Err(ClaimsOutcome::failed(
                &key,
                UPDATE_ERROR,
                "operator requires issuer to be a signing key",
            ));
        }
        // nats-server saves a full resolver's update before it finds an untrusted issuer (and
        // then only logs it); we refuse it first, with the error its memory resolver answers.
        if !self.is_trusted_key(&data.iss) {
            return Err(ClaimsOutcome::failed(
                &key,
                UPDATE_ERROR,
                "account validation failed",
            ));
        }
        let stored = self.jwts().get(&key);
        if memory && stored.is_none() && self.account(&key).is_none() {
            // nats-server's memory resolver only updates accounts it has.
            return Err(ClaimsOutcome::ok(&key, "jwt update skipped"));
        }
        if let Some(stored) = stored {
            if stored == token {
                return Ok(CheckedUpdate {
                    key,
                    jwt: token.to_string(),
                    unchanged: true,
                });
            }
            if jwt::decode(stored).is_ok_and(|s| s.data.iat > data.iat) {
                return Err(ClaimsOutcome::failed(
                    &key,
                    UPDATE_ERROR,
                    "jwt is older than the stored one",
                ));
            }
        } else if let Resolver::Full(full) = self.resolver()
            && self.jwts().len() >= full.limit
        {
            return Err(ClaimsOutcome::failed(
                &key,
                UPDATE_ERROR,
                "jwt store is full",
            ));
        }
        Ok(CheckedUpdate {
            key,
            jwt: token.to_string(),
            unchanged: false,
        })
    }

    /// nats-server `handleDeleteRequest`: `payload` is a generic JWT the operator (or one of its
    /// signing keys) signed for itself, whose `nats.accounts` lists the accounts to delete.
    pub fn check_delete(
        &self,
        payload: &[u8],
        system_key: &str,
    ) -> Result<Vec<String>, ClaimsOutcome> {
        let token = std::str::from_utf8(payload).unwrap_or("").trim();
        let (data, nats) = jwt::decode_generic(token).map_err(|e| {
            ClaimsOutcome::failed("", "delete accounts request by  failed", decode_text(e))
        })?;
        let failed = |error: &str| {
            ClaimsOutcome::failed(
                "",
                &format!("delete accounts request by {} failed", data.sub),
                error,
            )
        };
        let allow_delete = matches!(self.resolver(), Resolver::Full(f) if f.allow_delete);
        if !allow_delete {
            return Err(failed("delete must be enabled in server config"));
        }
        if data.sub != data.iss {
            return Err(failed("not self signed"));
        }
        if !self.is_operator_key(&data.iss) {
            return Err(failed("not trusted"));
        }
        let Some(list) = nats.get("accounts").and_then(serde_json::Value::as_array) else {
            return Err(failed("malformed request"));
        };
        let mut keys = Vec::with_capacity(list.len());
        for entry in list {
            match entry.as_str() {
                Some(key) if jwt::is_public_key(key, 'A') => {
                    if key == system_key {
                        return Err(failed("not allowed to delete system account"));
                    }
                    keys.push(key.to_string());
                }
                _ => return Err(failed("malformed request")),
            }
        }
        Ok(keys)
    }
}

/// A [`CheckedUpdate`] applied: the reply nats-server gives.
pub fn updated(key: &str) -> ClaimsOutcome {
    ClaimsOutcome::ok(key, UPDATED)
}

/// nats-server `claimValidate`'s refusal: the claims do not pass nats-io/jwt validation.
pub fn validation_failed(key: &str, why: &str) -> ClaimsOutcome {
    ClaimsOutcome::failed(
        key,
        "jwt validation failed",
        format!("validation errors: [{why}]"),
    )
}

/// A checked update that could not be stored or applied.
pub fn update_failed(key: &str, error: impl Into<String>) -> ClaimsOutcome {
    ClaimsOutcome::failed(key, UPDATE_ERROR, error)
}

/// `deleted N accounts` (nats-server `handleDeleteRequest`).
pub fn deleted(count: usize, errors: &[String]) -> ClaimsOutcome {
    if errors.is_empty() {
        ClaimsOutcome::ok("", &format!("deleted {count} accounts"))
    } else {
        ClaimsOutcome::failed(
            "",
            &format!("deleted {count} accounts, failed for {}", errors.len()),
            errors.join("\n"),
        )
    }
}

/// nats-io/jwt's words for the decode failures a client is most likely to cause.
fn decode_text(e: JwtError) -> String {
    match e {
        JwtError::NotThreeParts => "expected 3 chunks".into(),
        JwtError::Signature => "claim failed V2 signature verification".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
