//! The account resolver's `$SYS` requests (update, lookup, list, delete), the poll of the
//! full resolver's directory and the expiry of activation tokens, worked on the monitoring
//! thread.
//!
//! Cold: per request, per `interval` and per activation expiry. An accepted update builds a new authentication
//! configuration (`AuthConfig::with_account_jwts`), writes the account's file (full resolver)
//! and installs it; the shards then re-check every live connection as after a reload (new
//! limits and permissions, a lowered `conn` limit and revocations closing connections).
//! Invariants: the whole check-store-install runs under `Shared::lock_auth_update`, so a
//! reload or another update never loses this one; a refused request changes nothing and is
//! answered with nats-server's error JSON; logs name the account, never the JWT.

use ahash::AHashMap;

use crate::auth::AuthConfig;
use crate::auth::resolver::{self, ClaimsOutcome, ClaimsRequest, Resolver};
use crate::config::ConfigError;
use crate::monitor::events::server_block;
use crate::monitor::query::QueryKind;
use crate::shared::Shared;

/// Answers one claims request of the system account; `None` = no reply (nats-server sends
/// none either: a lookup of an account it does not have, a resolver that does not answer).
pub async fn answer(shared: &Shared, request: &ClaimsRequest, payload: &[u8]) -> Option<Vec<u8>> {
    match request {
        ClaimsRequest::Update(key) => {
            let (outcome, applied) = update(shared, key.as_deref(), payload);
            if applied {
                applied_everywhere(shared).await;
            }
            Some(outcome_reply(shared, &outcome))
        }
        ClaimsRequest::Lookup(key) => {
            let snapshot = shared.snapshot();
            let operator = snapshot.auth.operator()?;
            let jwt = operator.jwts().get(key);
            if jwt.is_none() {
                tracing::debug!("claims lookup: no JWT stored for account {key}");
            }
            jwt.map(|j| j.clone().into_bytes())
        }
        ClaimsRequest::List => {
            let snapshot = shared.snapshot();
            let operator = snapshot.auth.operator()?;
            let mut keys: Vec<&String> = operator.jwts().keys().collect();
            keys.sort();
            tracing::debug!("list request responded with {} account ids", keys.len());
            let body = serde_json::json!({"data": keys, "server": server_block(shared)});
            serde_json::to_vec(&body).ok()
        }
        ClaimsRequest::Delete => {
            let (outcome, applied) = delete(shared, payload);
            if applied {
                applied_everywhere(shared).await;
            }
            Some(outcome_reply(shared, &outcome))
        }
    }
}

/// Returns once every shard has run a loop turn since the new configuration was installed,
/// and so has re-checked its connections against it: a client acting on the reply meets the
/// new claims on any shard (nats-server applies an update before it answers, too).
async fn applied_everywhere(shared: &Shared) {
    shared.monitor.collect(QueryKind::Totals).await;
}

/// `$SYS.REQ.CLAIMS.UPDATE` and the per-account update subjects.
/// Returns the answer and whether a new configuration was installed.
fn update(shared: &Shared, subject_key: Option<&str>, payload: &[u8]) -> (ClaimsOutcome, bool) {
    let _guard = shared.lock_auth_update();
    let snapshot = shared.snapshot();
    let Some(operator) = snapshot.auth.operator() else {
        return (resolver::update_failed("n/a", "no account resolver"), false);
    };
    let checked = match operator.check_update(subject_key, payload) {
        Ok(checked) => checked,
        Err(outcome) => return (logged(outcome), false),
    };
    if checked.unchanged {
        return (logged(resolver::updated(&checked.key)), false);
    }
    let changes = [(checked.key.clone(), Some(checked.jwt))];
    let auth = match build(shared, &changes) {
        Ok(auth) => auth,
        Err(err) => return (logged(resolver::update_failed(&checked.key, err)), false),
    };
    // nats-server `claimValidate`: claims nats-io/jwt finds invalid are not stored.
    let invalid = auth
        .operator()
        .and_then(|o| o.account(&checked.key))
        .and_then(|a| a.invalid.clone());
    if let Some(why) = invalid {
        return (
            logged(resolver::validation_failed(&checked.key, &why)),
            false,
        );
    }
    if let Err(err) = commit(shared, auth, &changes, true) {
        return (logged(resolver::update_failed(&checked.key, err)), false);
    }
    (logged(resolver::updated(&checked.key)), true)
}

/// `$SYS.REQ.CLAIMS.DELETE`: each listed account's file is renamed away and the account loses
/// its JWT (its clients are closed; its id stays, without a JWT, so nobody joins it).
fn delete(shared: &Shared, payload: &[u8]) -> (ClaimsOutcome, bool) {
    let _guard = shared.lock_auth_update();
    let snapshot = shared.snapshot();
    let Some(operator) = snapshot.auth.operator() else {
        return (resolver::update_failed("", "no account resolver"), false);
    };
    let system_key = snapshot
        .auth
        .accounts()
        .get(snapshot.auth.system_account() as usize)
        .map_or("", |a| a.name.as_str());
    let keys = match operator.check_delete(payload, system_key) {
        Ok(keys) => keys,
        Err(outcome) => return (logged(outcome), false),
    };
    let changes: Vec<(String, Option<String>)> = keys
        .iter()
        .filter(|k| operator.jwts().contains_key(*k))
        .map(|k| (k.clone(), None))
        .collect();
    let errors = match apply(shared, &changes, true) {
        Ok(()) => Vec::new(),
        Err(err) => vec![err],
    };
    let passed = if errors.is_empty() { keys.len() } else { 0 };
    (
        logged(resolver::deleted(passed, &errors)),
        errors.is_empty(),
    )
}

/// Builds the configuration with `changes`, writes them to the directory (full resolver, when
/// `store`), and installs it. Nothing is written or installed when the build fails.
fn apply(shared: &Shared, changes: &[(String, Option<String>)], store: bool) -> Result<(), String> {
    let auth = build(shared, changes)?;
    commit(shared, auth, changes, store)
}

/// The current configuration with `changes` (nothing is written or installed).
fn build(shared: &Shared, changes: &[(String, Option<String>)]) -> Result<AuthConfig, String> {
    let snapshot = shared.snapshot();
    snapshot
        .auth
        .with_account_jwts(&snapshot.opts, changes)
        .map_err(|err| match err {
            ConfigError::Invalid { msg, .. } => msg,
            other => other.to_string(),
        })
}

/// Writes `changes` to the directory (full resolver, when `store`) and installs `auth`.
fn commit(
    shared: &Shared,
    auth: AuthConfig,
    changes: &[(String, Option<String>)],
    store: bool,
) -> Result<(), String> {
    let snapshot = shared.snapshot();
    if let (true, Some(Resolver::Full(full))) =
        (store, snapshot.auth.operator().map(|o| o.resolver()))
    {
        for (key, jwt) in changes {
            let written = match jwt {
                Some(jwt) => full.store(key, jwt),
                None => full.delete(key),
            };
            written.map_err(|e| format!("cannot write {}: {e}", full.dir().display()))?;
        }
    }
    shared.install_auth(auth);
    Ok(())
}

/// How long until the first activation token behind an import of the current configuration
/// expires (zero when it has), or `None` when no import has an expiring activation.
pub fn activation_expiry_in(shared: &Shared) -> Option<std::time::Duration> {
    let at = shared.snapshot().auth.operator()?.activation_expiry()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// An activation token's `exp` has passed: builds the configuration again from the same JWTs,
/// which leaves the imports it allowed out, and installs it (nats-server
/// `activationExpired`). Connections stay; the import stops routing for all of them.
pub fn expire_activations(shared: &Shared) {
    let _guard = shared.lock_auth_update();
    if activation_expiry_in(shared).is_none_or(|left| !left.is_zero()) {
        // An update or reload built again meanwhile.
        return;
    }
    match apply(shared, &[], false) {
        Ok(()) => tracing::debug!("activation token expired: imports applied again"),
        Err(err) => tracing::error!("activation token expired, imports not applied again: {err}"),
    }
}

/// Logs an outcome as nats-server `respondToUpdate` does (success at debug, failure at error),
/// and returns it.
fn logged(outcome: ClaimsOutcome) -> ClaimsOutcome {
    let account = &outcome.account;
    match (outcome.description(), account.is_empty()) {
        (None, true) => tracing::debug!("{}", outcome.message),
        (None, false) => tracing::debug!("{} - {account}", outcome.message),
        (Some(description), true) => tracing::error!("{description}"),
        (Some(description), false) => tracing::error!("{account} - {description}"),
    }
    outcome
}

/// nats-server's reply: `{"data":{"account","code":200,"message"}}` or
/// `{"error":{"account","code":500,"description"}}`, with the server block.
fn outcome_reply(shared: &Shared, outcome: &ClaimsOutcome) -> Vec<u8> {
    let mut body = serde_json::Map::new();
    if !outcome.account.is_empty() {
        body.insert("account".into(), outcome.account.clone().into());
    }
    let key = match outcome.description() {
        None => {
            body.insert("code".into(), 200.into());
            body.insert("message".into(), outcome.message.clone().into());
            "data"
        }
        Some(description) => {
            body.insert("code".into(), 500.into());
            body.insert("description".into(), description.into());
            "error"
        }
    };
    let mut reply = serde_json::Map::new();
    reply.insert(key.into(), body.into());
    reply.insert(
        "server".into(),
        serde_json::to_value(server_block(shared)).unwrap_or_default(),
    );
    serde_json::to_vec(&reply).unwrap_or_default()
}

/// The full resolver's directory, read every `interval` for files changed by hand (which
/// nats-server does not notice): a changed or new `<key>.jwt` is applied as an update would be.
#[derive(Default)]
pub struct DirectoryPoll {
    /// Files refused last time, by key, with their text: logged once, not at every poll.
    refused: AHashMap<String, String>,
}

impl DirectoryPoll {
    /// How often to poll, when the resolver has a directory.
    pub fn interval(shared: &Shared) -> Option<std::time::Duration> {
        let snapshot = shared.snapshot();
        match snapshot.auth.operator()?.resolver() {
            Resolver::Full(full) => Some(full.interval.max(resolver::INTERVAL_MIN)),
            Resolver::Memory | Resolver::None => None,
        }
    }

    /// One poll: applies every changed file that passes an update's checks.
    pub fn poll(&mut self, shared: &Shared) {
        let _guard = shared.lock_auth_update();
        let snapshot = shared.snapshot();
        let Some(operator) = snapshot.auth.operator() else {
            return;
        };
        let Resolver::Full(full) = operator.resolver() else {
            return;
        };
        let mut changes = Vec::new();
        for (key, token) in full.scan() {
            if operator.jwts().get(&key) == Some(&token) || self.refused.get(&key) == Some(&token) {
                continue;
            }
            match operator.check_update(Some(&key), token.as_bytes()) {
                Ok(checked) if checked.unchanged => {}
                Ok(_) => {
                    self.refused.remove(&key);
                    changes.push((key, Some(token)));
                }
                Err(outcome) => {
                    tracing::error!(
                        "resolver directory: {key}{} not applied: {}",
                        resolver::FILE_EXTENSION,
                        outcome.description().unwrap_or(outcome.message)
                    );
                    self.refused.insert(key, token);
                }
            }
        }
        if changes.is_empty() {
            return;
        }
        // One build for all changed files; if one of them spoils it, each on its own.
        let batches: Vec<Vec<(String, Option<String>)>> = if apply(shared, &changes, false).is_ok()
        {
            Vec::new()
        } else {
            changes.iter().map(|c| vec![c.clone()]).collect()
        };
        for batch in &batches {
            if let Err(err) = apply(shared, batch, false) {
                tracing::error!("resolver directory: {} not applied: {err}", batch[0].0);
                if let Some(token) = &batch[0].1 {
                    self.refused.insert(batch[0].0.clone(), token.clone());
                }
                continue;
            }
        }
        for (key, _) in &changes {
            if !self.refused.contains_key(key) {
                tracing::info!("resolver directory: account {key} updated from its file");
            }
        }
    }
}
