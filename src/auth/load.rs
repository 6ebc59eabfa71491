//! Builds an [`AuthConfig`] from the raw `authorization`, `accounts`, `no_auth_user` and
//! `system_account` sections.
//!
//! Cold: config load only. Invariant: whatever nats-server 2.9.10 refuses (at `-t` or at start)
//! is refused here with its wording, prefixed with file:line and key; nothing is half-applied.

use std::sync::Arc;
use std::time::SystemTime;

use ahash::AHashMap;

use crate::auth::accounts::{self, AccountDef, ImportTable};
use crate::auth::resolver::Previous;
use crate::auth::user_pass::{Secret, is_bcrypt};
use crate::auth::{
    AUTH_TIMEOUT_DEFAULT, AuthConfig, CliAuth, DEFAULT_SYSTEM_ACCOUNT, GLOBAL_ACCOUNT,
    GLOBAL_ACCOUNT_ID, User, callout, nkey, operator,
};
use crate::config::{ConfigError, Entry, Pos, ServerOptions, Value};
use crate::perms::Permissions;

/// nats-server's warning for non-bcrypt passwords.
pub const PLAINTEXT_WARNING: &str = "Plaintext passwords detected, use nkeys or bcrypt";
/// `allowed_connection_types` values nats-server 2.9.10 knows.
const CONNECTION_TYPES: &[&str] = &["STANDARD", "WEBSOCKET", "LEAFNODE", "MQTT"];

/// Users read from one `users` array, before they are registered.
struct ParsedUser {
    user: User,
    is_nkey: bool,
    pos: Pos,
}

pub(crate) fn build(opts: &ServerOptions, cli: &CliAuth) -> Result<AuthConfig, ConfigError> {
    build_with(opts, cli, None)
}

/// [`build`], keeping the account ids (and, in operator mode, the account JWTs) of `previous`.
pub(crate) fn build_with(
    opts: &ServerOptions,
    cli: &CliAuth,
    previous: Option<Previous>,
) -> Result<AuthConfig, ConfigError> {
    let mut cfg = AuthConfig {
        token: None,
        single_user: None,
        users: AHashMap::new(),
        nkeys: AHashMap::new(),
        no_auth_user: None,
        timeout: AUTH_TIMEOUT_DEFAULT,
        accounts: vec![AccountDef::new(GLOBAL_ACCOUNT)],
        account_ids: AHashMap::new(),
        imports: ImportTable::default(),
        system_account: 0,
        verify_and_map: false,
        warnings: Vec::new(),
        operator: None,
        hybrid: None,
        callout: None,
    };
    cfg.account_ids
        .insert(GLOBAL_ACCOUNT.into(), GLOBAL_ACCOUNT_ID);
    let operator_settings = operator::parse_settings(opts)?;
    let mut parsed = Vec::new();
    if let Some(value) = opts.auth_section("accounts") {
        parsed.extend(load_accounts(&mut cfg, value)?);
    }
    let mut raw_callout = None;
    if let Some(value) = opts.auth_section("authorization") {
        let (users, callout) = load_authorization(&mut cfg, value)?;
        parsed.extend(users);
        raw_callout = callout;
    }
    apply_cli(&mut cfg, cli)?;
    register_users(&mut cfg, parsed)?;
    if let Some(settings) = operator_settings {
        if let (Some(_), Some(v)) = (&raw_callout, opts.auth_section("authorization")) {
            // nats-server `validateTrustedOperators`.
            return Err(v.error(
                "auth_callout",
                "operators do not allow authorization callouts to be configured directly",
            ));
        }
        check_operator_exclusive(&cfg, opts, cli)?;
        let (mut mode, system) =
            operator::build(settings, &mut cfg.accounts, &mut cfg.account_ids, previous)?;
        cfg.warnings.extend(mode.take_warnings());
        cfg.operator = Some(mode);
        cfg.system_account = system;
        cfg.imports = ImportTable::new(&cfg.accounts);
        return Ok(cfg);
    }
    resolve_system_account(&mut cfg, opts)?;
    resolve_no_auth_user(&mut cfg, opts)?;
    if let Some(raw) = raw_callout {
        cfg.callout = Some(Arc::new(resolve_callout(&cfg, raw)?));
    }
    warn_plaintext(&mut cfg);
    cfg.hybrid = operator::OperatorMode::hybrid(&cfg.accounts);
    cfg.imports = ImportTable::new(&cfg.accounts);
    Ok(cfg)
}

/// `accounts { A: { users: [..], exports: [..], imports: [..] } }`.
fn load_accounts(cfg: &mut AuthConfig, value: &Value) -> Result<Vec<ParsedUser>, ConfigError> {
    let map = value.expect_map("accounts")?;
    for entry in map {
        if cfg.account_ids.contains_key(&entry.key) {
            return Err(entry.error(format!("Duplicate Account Entry: {}", entry.key)));
        }
        let id = cfg.accounts.len() as u32;
        cfg.account_ids.insert(entry.key.clone(), id);
        cfg.accounts.push(AccountDef::new(entry.key.clone()));
    }
    let mut users = Vec::new();
    let mut import_positions = Vec::new();
    for entry in map {
        let id = cfg.account_ids[&entry.key];
        users.extend(load_account(cfg, id, entry, &mut import_positions)?);
    }
    accounts::check_imports(&cfg.accounts, &import_positions)?;
    Ok(users)
}

fn load_account(
    cfg: &mut AuthConfig,
    id: u32,
    account: &Entry,
    import_positions: &mut Vec<(u32, Pos)>,
) -> Result<Vec<ParsedUser>, ConfigError> {
    let map = account.value.expect_map(&account.key)?;
    let mut users = Vec::new();
    for entry in map {
        let v = &entry.value;
        match entry.key_lower().as_str() {
            "users" => users = parse_users(v, id, None)?,
            "exports" => {
                cfg.accounts[id as usize].exports = accounts::parse_exports(v, &cfg.account_ids)?
            }
            "imports" => {
                for (import, pos) in accounts::parse_imports(v, &cfg.account_ids)? {
                    cfg.accounts[id as usize].imports.push(import);
                    import_positions.push((id, pos));
                }
            }
            "signing_keys" => {
                let keys = parse_signing_keys(cfg, v, &entry.key)?;
                cfg.accounts[id as usize].signing_keys = keys;
            }
            "jetstream" | "mappings" | "maps" | "limits" | "default_permissions" => {
                cfg.warnings.push(format!(
                    "{}: \"{}\" in account \"{}\" is not supported by ringnats and is ignored",
                    entry.pos, entry.key, account.key
                ));
            }
            _ if entry.is_used_variable() => {}
            _ => return Err(unknown_field(entry)),
        }
    }
    Ok(users)
}

/// An account's `signing_keys` (our extension without an operator): public account nkeys, each
/// in one account only.
fn parse_signing_keys(
    cfg: &AuthConfig,
    value: &Value,
    key: &str,
) -> Result<Vec<String>, ConfigError> {
    let mut keys: Vec<String> = Vec::new();
    for k in value.expect_strings(key)? {
        if !crate::auth::jwt::is_public_key(k, 'A') {
            return Err(value.error(
                key,
                format!("signing key \"{k}\" is not a valid public account nkey (A…)"),
            ));
        }
        let elsewhere = cfg
            .accounts
            .iter()
            .find(|a| a.signing_keys.iter().any(|s| s == k));
        if let Some(other) = elsewhere {
            return Err(value.error(
                key,
                format!(
                    "signing key \"{k}\" is already a signing key of account \"{}\"",
                    other.name
                ),
            ));
        }
        if keys.iter().any(|s| s == k) {
            return Err(value.error(key, format!("duplicate signing key \"{k}\"")));
        }
        keys.push(k.to_string());
    }
    Ok(keys)
}

/// `authorization { .. }` (nats-server `parseAuthorization`).
fn load_authorization(
    cfg: &mut AuthConfig,
    value: &Value,
) -> Result<(Vec<ParsedUser>, Option<callout::RawCallout>), ConfigError> {
    let map = value.expect_map("authorization")?;
    let (mut user, mut pass, mut token) = (None, None, None);
    let mut callout = None;
    let mut users_value = None;
    let mut default_perms = None;
    for entry in map {
        let v = &entry.value;
        match entry.key_lower().as_str() {
            "user" | "username" => user = Some(string_value(v, &entry.key)?),
            "pass" | "password" => pass = Some(Secret::new(string_value(v, &entry.key)?)),
            "token" => token = Some(Secret::new(string_value(v, &entry.key)?)),
            "timeout" => cfg.timeout = v.expect_seconds_or_duration(&entry.key)?,
            "users" => users_value = Some(v),
            "default_permission" | "default_permissions" | "permissions" | "permission" => {
                default_perms = Some(Arc::new(Permissions::from_value(v)?));
            }
            "auth_callout" | "auth_hook" => callout = Some(callout::parse_config(v)?),
            _ if entry.is_used_variable() => {}
            _ => return Err(unknown_field(entry)),
        }
    }
    let users = match users_value {
        Some(v) => parse_users(v, GLOBAL_ACCOUNT_ID, default_perms)?,
        None => Vec::new(),
    };
    if token.is_some() && (user.is_some() || pass.is_some()) {
        return Err(value.error("authorization", "Cannot have a user/pass and token"));
    }
    if token.is_some() && users_value.is_some() {
        return Err(value.error("authorization", "Can not have a token and a users array"));
    }
    if user.is_some() && users_value.is_some() {
        return Err(value.error(
            "authorization",
            "Can not have a single user/pass and a users array",
        ));
    }
    cfg.token = token.map(Arc::new);
    if let Some(name) = user {
        cfg.single_user = Some((name, Arc::new(pass.unwrap_or_default())));
    }
    Ok((users, callout))
}

/// A string, or an integer/float written unquoted (nats-server stringifies these too).
fn string_value(value: &Value, key: &str) -> Result<String, ConfigError> {
    if let Some(n) = value.as_int() {
        return Ok(n.to_string());
    }
    Ok(value.expect_str(key)?.to_string())
}

/// nats-server `parseUsers`: `[{user, password, permissions, ..} | {nkey, permissions, ..}]`.
fn parse_users(
    value: &Value,
    account: u32,
    default_perms: Option<Arc<Permissions>>,
) -> Result<Vec<ParsedUser>, ConfigError> {
    let items = value.expect_array("users")?;
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let mut parsed = parse_user(item, account)?;
        if parsed.user.permissions.is_none() {
            parsed.user.permissions = default_perms.clone();
        }
        out.push(parsed);
    }
    Ok(out)
}

fn parse_user(item: &Value, account: u32) -> Result<ParsedUser, ConfigError> {
    let map = item.expect_map("users")?;
    let mut user = User {
        name: String::new(),
        password: None,
        account,
        permissions: None,
        deadline: None,
        allows_client: true,
        nkey: None,
    };
    let (mut name, mut nkey_value) = (None, None);
    for entry in map {
        let v = &entry.value;
        match entry.key_lower().as_str() {
            "user" | "username" => name = Some(string_value(v, &entry.key)?),
            "pass" | "password" => {
                user.password = Some(Arc::new(Secret::new(string_value(v, &entry.key)?)))
            }
            "nkey" => nkey_value = Some((string_value(v, &entry.key)?, v)),
            "permission" | "permissions" => {
                user.permissions = Some(Arc::new(Permissions::from_value(v)?))
            }
            "allowed_connection_types" | "connection_types" | "clients" => {
                user.allows_client = allows_client(v, &entry.key)?
            }
            "connection_deadline" => user.deadline = Some(deadline(v, &entry.key)?),
            _ if entry.is_used_variable() => {}
            _ => return Err(unknown_field(entry)),
        }
    }
    let is_nkey = nkey_value.is_some();
    match (name, nkey_value) {
        (Some(_), Some((_, v))) => {
            return Err(v.error("nkey", "Nkey users do not take usernames or passwords"));
        }
        (None, Some((_, v))) if user.password.is_some() => {
            return Err(v.error("nkey", "Nkey users do not take usernames or passwords"));
        }
        (None, Some((key, v))) => {
            if !nkey::is_valid_user_key(&key) {
                return Err(v.error("nkey", "Not a valid public nkey for a user"));
            }
            user.nkey = nkey::PublicNkey::parse(&key);
            user.name = key;
        }
        (Some(n), None) => user.name = n,
        (None, None) => return Err(item.error("users", "User entry requires a user")),
    }
    Ok(ParsedUser {
        user,
        is_nkey,
        pos: item.pos.clone(),
    })
}

fn allows_client(value: &Value, key: &str) -> Result<bool, ConfigError> {
    let types = value.expect_strings(key)?;
    if let Some(bad) = types
        .iter()
        .find(|t| !CONNECTION_TYPES.iter().any(|k| k.eq_ignore_ascii_case(t)))
    {
        return Err(value.error(key, format!("invalid connection types [\"{bad}\"]")));
    }
    Ok(types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case("STANDARD")))
}

/// Our `connection_deadline` extension: RFC 3339 string or unquoted datetime.
fn deadline(value: &Value, key: &str) -> Result<SystemTime, ConfigError> {
    value
        .as_datetime()
        .map(|d| d.to_system_time())
        .ok_or_else(|| {
            value.error(
                key,
                "expected an RFC 3339 timestamp with offset, e.g. \"2026-01-01T00:00:00Z\"",
            )
        })
}

fn register_users(cfg: &mut AuthConfig, parsed: Vec<ParsedUser>) -> Result<(), ConfigError> {
    for p in parsed {
        let name = p.user.name.clone();
        let (map, what) = if p.is_nkey {
            (&mut cfg.nkeys, "nkey")
        } else {
            (&mut cfg.users, "user")
        };
        if map.contains_key(&name) {
            return Err(ConfigError::Invalid {
                pos: p.pos,
                key: "users".into(),
                msg: format!("Duplicate {what} \"{name}\" detected"),
            });
        }
        map.insert(name, Arc::new(p.user));
    }
    Ok(())
}

/// `--user`/`--pass`/`--auth`/`--auth_timeout` override the file (nats-server `MergeOptions`).
fn apply_cli(cfg: &mut AuthConfig, cli: &CliAuth) -> Result<(), ConfigError> {
    if let Some(t) = cli.auth_timeout {
        cfg.timeout = t;
    }
    if let Some(token) = &cli.token {
        cfg.token = Some(Arc::new(token.clone()));
    }
    if let Some(user) = &cli.user {
        let pass = cli.pass.clone().unwrap_or_default();
        cfg.single_user = Some((user.clone(), Arc::new(pass)));
    }
    if cfg.token.is_some() && cfg.single_user.is_some() {
        return Err(ConfigError::Flag {
            flag: "--auth",
            msg: "Cannot have a user/pass and token".into(),
        });
    }
    Ok(())
}

/// `system_account` (alias `system`): must name a configured account, or `$SYS`, which is
/// created when absent.
fn resolve_system_account(cfg: &mut AuthConfig, opts: &ServerOptions) -> Result<(), ConfigError> {
    let named = opts
        .auth_section("system_account")
        .or_else(|| opts.auth_section("system"));
    let name = match named {
        Some(v) => v.expect_str("system_account")?.to_string(),
        None => DEFAULT_SYSTEM_ACCOUNT.to_string(),
    };
    if let Some(id) = cfg.account_ids.get(&name) {
        cfg.system_account = *id;
        return Ok(());
    }
    if let Some(v) = named.filter(|_| name != DEFAULT_SYSTEM_ACCOUNT) {
        return Err(v.error(
            "system_account",
            "error resolving system account: account missing",
        ));
    }
    let id = cfg.accounts.len() as u32;
    cfg.accounts.push(AccountDef::new(DEFAULT_SYSTEM_ACCOUNT));
    cfg.account_ids.insert(DEFAULT_SYSTEM_ACCOUNT.into(), id);
    cfg.system_account = id;
    Ok(())
}

/// nats-server `validateNoAuthUser`.
fn resolve_no_auth_user(cfg: &mut AuthConfig, opts: &ServerOptions) -> Result<(), ConfigError> {
    let Some(value) = opts.auth_section("no_auth_user") else {
        return Ok(());
    };
    let name = value.expect_str("no_auth_user")?;
    if name.is_empty() {
        return Ok(());
    }
    if cfg.users.is_empty() && cfg.nkeys.is_empty() {
        return Err(value.error(
            "no_auth_user",
            format!("no_auth_user: \"{name}\" present, but users are not defined"),
        ));
    }
    let user = cfg.users.get(name).ok_or_else(|| {
        value.error(
            "no_auth_user",
            format!(
                "no_auth_user: \"{name}\" not present as user in authorization block or \
                 account configuration"
            ),
        )
    })?;
    cfg.no_auth_user = Some(Arc::clone(user));
    Ok(())
}

/// nats-server `checkAuthforWarnings`: single user or `users` passwords that are not bcrypt.
fn warn_plaintext(cfg: &mut AuthConfig) {
    let single = cfg
        .single_user
        .as_ref()
        .is_some_and(|(_, p)| !p.is_empty() && !p.is_bcrypt());
    let listed = cfg.users.values().any(|u| {
        u.password
            .as_ref()
            .is_some_and(|p| !p.is_empty() && !is_bcrypt(p.expose()))
    });
    if single || listed {
        cfg.warnings.push(PLAINTEXT_WARNING.to_string());
    }
}

/// In operator mode no other method may be configured (nats-server `validateTrustedOperators`
/// and `validateNoAuthUser` wording; nats-server ignores a token or single user there, we refuse
/// them so a config never believes it is protected by one).
fn check_operator_exclusive(
    cfg: &AuthConfig,
    opts: &ServerOptions,
    cli: &CliAuth,
) -> Result<(), ConfigError> {
    if let Some(v) = opts.auth_section("accounts") {
        return Err(v.error(
            "accounts",
            "operators do not allow Accounts to be configured directly",
        ));
    }
    let authorization = opts.auth_section("authorization");
    let refuse = |msg: &str| match authorization {
        Some(v) => v.error("authorization", msg),
        None => ConfigError::Flag {
            flag: "--user/--auth",
            msg: msg.to_string(),
        },
    };
    if !cfg.users.is_empty() || !cfg.nkeys.is_empty() {
        return Err(refuse(
            "operators do not allow users to be configured directly",
        ));
    }
    if cfg.token.is_some() || cfg.single_user.is_some() || cli.user.is_some() {
        return Err(refuse(
            "operators do not allow a token or user/password to be configured directly",
        ));
    }
    if let Some(v) = opts.auth_section("no_auth_user")
        && v.as_str().is_some_and(|s| !s.is_empty())
    {
        return Err(v.error(
            "no_auth_user",
            "no_auth_user not compatible with Trusted Operator",
        ));
    }
    Ok(())
}

/// Resolves the `auth_callout` names: the account must exist (nats-server logs "Authorization
/// callout account … not valid"; we refuse to start), every `auth_users` entry must be a
/// configured user or nkey (likewise), and every `allowed_accounts` entry a configured account.
fn resolve_callout(
    cfg: &AuthConfig,
    raw: callout::RawCallout,
) -> Result<callout::CalloutConfig, ConfigError> {
    let (name, at) = &raw.account;
    let account = cfg.account_id(name).ok_or_else(|| {
        at.error(
            "account",
            format!("Authorization callout account \"{name}\" not valid"),
        )
    })?;
    let (users, at) = &raw.auth_users;
    if let Some(missing) = users
        .iter()
        .find(|u| !cfg.users.contains_key(*u) && !cfg.nkeys.contains_key(*u))
    {
        return Err(at.error(
            "auth_users",
            format!("Authorization callout user \"{missing}\" not valid: not a configured user"),
        ));
    }
    let mut allowed_accounts = Vec::new();
    for (name, at) in &raw.allowed_accounts {
        let id = cfg.account_id(name).ok_or_else(|| {
            at.error(
                "allowed_accounts",
                format!("auth_callout allowed account \"{name}\" not found in configured accounts"),
            )
        })?;
        allowed_accounts.push(id);
    }
    Ok(callout::CalloutConfig {
        issuer: raw.issuer,
        account,
        auth_users: raw.auth_users.0,
        xkey: raw.xkey.map(Arc::new),
        allowed_accounts,
    })
}

fn unknown_field(entry: &Entry) -> ConfigError {
    ConfigError::UnknownField {
        pos: entry.pos.clone(),
        key: entry.key.clone(),
    }
}
