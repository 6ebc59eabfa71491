//! Exports and imports of account JWTs, turned into the same [`AccountDef`] exports and imports
//! that configured accounts have, so one [`crate::auth::ImportTable`] routes both.
//!
//! Cold: runs when accounts are loaded. Invariants (nats-server 2.9.10
//! `updateAccountClaimsWithRefresh`, nats-io/jwt v2.3.0 `AccountClaims.Validate`): an account
//! whose exports or imports break a blocking validation rule is invalid as a whole (its users
//! are refused); an import that is well formed but not authorized (no covering export, a
//! missing or revoked activation, an unknown exporter) is skipped and the rest of the account
//! works; nothing is routed that the exporter did not offer to this importer.

use std::sync::Arc;
use std::time::Duration;

use ahash::AHashMap;

use crate::account::{ResponseSettings, ResponseType};
use crate::auth::accounts::{self, AccountDef, ExportKind};
use crate::auth::jwt::claims::{AccountClaims, Export, Import};
use crate::auth::jwt::{self, ExportType};
use crate::perms::is_subset_match;
use crate::subject::is_valid_filter;

use super::JwtAccount;

/// nats-io/jwt `ResponseType` values.
const RESPONSE_TYPES: &[&str] = &["", "Singleton", "Stream", "Chunked"];

/// The blocking validation errors of an account's limits, exports and imports (nats-io/jwt
/// v2.3.0 `Account.Validate`, `Exports.Validate`, `Imports.Validate`);
/// `key` is the account's public key. The message is for the log and names no secret.
pub(crate) fn validate(key: &str, claims: &AccountClaims) -> Result<(), String> {
    for export in &claims.exports {
        validate_export(export)?;
    }
    let limits = &claims.limits;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    if limits.imports != jwt::claims::NO_LIMIT && count(claims.imports.len()) > limits.imports {
        return Err("the account contains more imports than allowed by the operator".into());
    }
    if limits.exports != jwt::claims::NO_LIMIT {
        if count(claims.exports.len()) > limits.exports {
            return Err("the account contains more exports than allowed by the operator".into());
        }
        // `limits.wildcards` is nats-io/jwt `WildcardExports`: with it off (and the exports
        // limited, as nats-io/jwt checks it only then), an export subject may not hold
        // wildcards. It says nothing about subscriptions.
        if !limits.wildcards && claims.exports.iter().any(|e| has_wildcards(&e.subject)) {
            return Err(
                "the account contains wildcard exports that are not allowed by the operator".into(),
            );
        }
    }
    for kind in [ExportType::Stream, ExportType::Service] {
        let subjects: Vec<&str> = claims
            .exports
            .iter()
            .filter(|e| e.kind == Some(kind))
            .map(|e| e.subject.as_str())
            .collect();
        for (i, a) in subjects.iter().enumerate() {
            for b in &subjects[i + 1..] {
                if is_subset_match(a.as_bytes(), b.as_bytes())
                    || is_subset_match(b.as_bytes(), a.as_bytes())
                {
                    return Err(format!("export subject {a:?} overlaps {b:?}"));
                }
            }
        }
    }
    let mut service_locals: Vec<&str> = Vec::new();
    for import in &claims.imports {
        validate_import(key, import)?;
        if import.kind == Some(ExportType::Service) {
            let local = service_local(import);
            if service_locals.iter().any(|other| {
                is_subset_match(local.as_bytes(), other.as_bytes())
                    || is_subset_match(other.as_bytes(), local.as_bytes())
            }) {
                return Err(format!("overlapping subject namespace for {local:?}"));
            }
            service_locals.push(local);
        }
    }
    Ok(())
}

fn validate_export(export: &Export) -> Result<(), String> {
    let Some(kind) = export.kind else {
        return Err("invalid export type".into());
    };
    if !is_valid_filter(export.subject.as_bytes()) {
        return Err(format!("export subject {:?} is not valid", export.subject));
    }
    match kind {
        ExportType::Service if !RESPONSE_TYPES.contains(&export.response_type.as_str()) => {
            return Err(format!(
                "invalid response type for service: {:?}",
                export.response_type
            ));
        }
        ExportType::Stream if !export.response_type.is_empty() => {
            return Err("invalid response type for stream".into());
        }
        ExportType::Stream
            if export.response_threshold != 0 || export.service_latency.is_some() =>
        {
            return Err("response threshold and latency only valid for services".into());
        }
        _ => {}
    }
    if export.response_threshold < 0 {
        return Err("negative response threshold is invalid".into());
    }
    if export.account_token_position > 0 {
        let tokens: Vec<&str> = export.subject.split('.').collect();
        let at = usize::try_from(export.account_token_position - 1).unwrap_or(usize::MAX);
        if tokens.get(at) != Some(&"*") {
            return Err(format!(
                "Account Token Position {} must match a * in: {}",
                export.account_token_position, export.subject
            ));
        }
    }
    Ok(())
}

fn validate_import(key: &str, import: &Import) -> Result<(), String> {
    let Some(kind) = import.kind else {
        return Err("invalid import type".into());
    };
    if import.account.is_empty() {
        return Err("account to import from is not specified".into());
    }
    if !is_valid_filter(import.subject.as_bytes()) {
        return Err(format!("import subject {:?} is not valid", import.subject));
    }
    if !import.local_subject.is_empty() {
        if !import.to.is_empty() {
            return Err("Local Subject replaces To".into());
        }
        if !is_valid_filter(import.local_subject.as_bytes()) {
            return Err(format!(
                "import local subject {:?} is not valid",
                import.local_subject
            ));
        }
    }
    if import.share && kind != ExportType::Service {
        return Err("sharing information is only valid for services".into());
    }
    if import.token.is_empty() {
        return Ok(());
    }
    // nats-io/jwt `Import.Validate`: a token that does not decode or does not match this import
    // makes the importing account invalid; whether it is still in force is checked later.
    let (data, act) = jwt::decode_activation(&import.token)
        .map_err(|e| format!("import {:?}: invalid activation token: {e}", import.subject))?;
    if data.iss != import.account && act.issuer_account != import.account {
        return Err(format!(
            "activation token doesn't match account for import {:?}",
            import.subject
        ));
    }
    if data.sub != key {
        return Err(format!(
            "activation token doesn't match account it is being included in, {:?}",
            import.subject
        ));
    }
    if act.import_type != Some(kind) {
        return Err("mismatch between token import type and type of import".into());
    }
    let subject = if kind == ExportType::Service && !import.to.is_empty() {
        &import.to
    } else {
        &import.subject
    };
    if !is_subset_match(subject.as_bytes(), act.subject.as_bytes()) {
        return Err(format!(
            "activation token import subject {:?} doesn't match import {:?}",
            act.subject, import.subject
        ));
    }
    Ok(())
}

/// The subject a service import is published on in the importer.
fn service_local(import: &Import) -> &str {
    if import.local_subject.is_empty() {
        &import.subject
    } else {
        &import.local_subject
    }
}

fn has_wildcards(subject: &str) -> bool {
    subject.split('.').any(|t| t == "*" || t == ">")
}

/// What [`apply`] did besides filling the account definitions.
#[derive(Debug, Default)]
pub(crate) struct Applied {
    /// One line per skipped import, for the debug log.
    pub skipped: Vec<String>,
    /// The earliest `exp` (Unix seconds) of an activation token that lets an applied import
    /// through: at that moment the imports must be applied again, without it (nats-server
    /// arms a timer per activation, `checkActivation` with `expTimer`).
    pub next_expiry: Option<i64>,
}

/// Fills `defs` (indexed by account id) with the exports and imports of every valid account
/// in `accounts`, as they stand at `now_unix`.
pub(crate) fn apply(
    accounts: &AHashMap<String, Arc<JwtAccount>>,
    defs: &mut [AccountDef],
    now_unix: i64,
) -> Applied {
    let valid = || accounts.values().filter(|a| a.invalid.is_none());
    for account in valid() {
        let Some(def) = defs.get_mut(account.id as usize) else {
            continue;
        };
        def.exports = account.claims.exports.iter().map(def_export).collect();
    }
    let mut applied = Applied::default();
    for importer in valid() {
        for import in &importer.claims.imports {
            match def_import(import, importer, accounts, defs, now_unix) {
                Ok((def, expiry)) => {
                    if let Some(d) = defs.get_mut(importer.id as usize) {
                        d.imports.push(def);
                    }
                    applied.next_expiry = [applied.next_expiry, expiry].into_iter().flatten().min();
                }
                Err(why) => applied.skipped.push(format!(
                    "account {}: {} import {:?} from {} skipped: {why}",
                    importer.key,
                    kind_word(import.kind),
                    import.subject,
                    import.account
                )),
            }
        }
    }
    applied
}

fn kind_word(kind: Option<ExportType>) -> &'static str {
    match kind {
        Some(ExportType::Stream) => "stream",
        Some(ExportType::Service) => "service",
        None => "unknown",
    }
}

/// A JWT export as a configured one: public, or (token required, account token position)
/// open only to the importers [`def_import`] authorizes.
fn def_export(export: &Export) -> accounts::Export {
    let kind = match export.kind {
        Some(ExportType::Service) => ExportKind::Service,
        _ => ExportKind::Stream,
    };
    let restricted = export.token_req || export.account_token_position > 0;
    let threshold = u64::try_from(export.response_threshold)
        .ok()
        .filter(|n| *n > 0)
        .map(Duration::from_nanos);
    let defaults = ResponseSettings::default();
    accounts::Export {
        kind,
        subject: export.subject.clone(),
        accounts: restricted.then(Vec::new),
        response: ResponseSettings {
            kind: ResponseType::from_config(&export.response_type).unwrap_or(defaults.kind),
            threshold: threshold.unwrap_or(defaults.threshold),
        },
    }
}

/// One import of `importer`, authorized against its exporter (nats-server `checkAuth`,
/// `checkActivation`); an export that needs it is opened to this importer in `defs`. With it,
/// the `exp` of the activation token that authorizes it, if it has one.
fn def_import(
    import: &Import,
    importer: &JwtAccount,
    accounts: &AHashMap<String, Arc<JwtAccount>>,
    defs: &mut [AccountDef],
    now_unix: i64,
) -> Result<(accounts::Import, Option<i64>), String> {
    let exporter = accounts
        .get(&import.account)
        .filter(|a| a.invalid.is_none())
        .ok_or("exporting account not found or not valid")?;
    let (kind, kind_type) = match import.kind {
        Some(ExportType::Service) => (ExportKind::Service, ExportType::Service),
        _ => (ExportKind::Stream, ExportType::Stream),
    };
    // (subject in the exporter, subject in the importer or prefix)
    let def = match kind {
        ExportKind::Stream => {
            let (to, prefix) = if !import.local_subject.is_empty() {
                (Some(import.local_subject.clone()), None)
            } else if !import.to.is_empty() {
                (None, Some(import.to.trim_end_matches('.').to_string()))
            } else {
                (None, None)
            };
            accounts::Import {
                kind,
                account: exporter.id,
                subject: import.subject.clone(),
                to,
                prefix,
            }
        }
        ExportKind::Service => {
            let (local, remote) = if !import.local_subject.is_empty() {
                (import.local_subject.clone(), import.subject.clone())
            } else if !import.to.is_empty() {
                (import.subject.clone(), import.to.clone())
            } else {
                (import.subject.clone(), import.subject.clone())
            };
            accounts::Import {
                kind,
                account: exporter.id,
                to: (local != remote).then_some(local),
                subject: remote,
                prefix: None,
            }
        }
    };
    if let Some(to) = &def.to {
        // nats-io/jwt `RenamingSubject` may name wildcards as `$1`..; only the positional
        // form (`*` for `*`, `>` for `>`) is mapped here, so anything else is not imported.
        if to.split('.').any(|t| t.starts_with('$')) {
            return Err("local_subject with $N references is not supported".into());
        }
        accounts::check_mappable(&def.subject, to)?;
    }
    if def.prefix.as_deref().is_some_and(has_wildcards) {
        // nats-server `ErrStreamImportBadPrefix`.
        return Err("stream import prefix must be a literal subject".into());
    }
    let (index, export) = exporter
        .claims
        .exports
        .iter()
        .enumerate()
        .find(|(_, e)| {
            e.kind == Some(kind_type)
                && is_subset_match(def.subject.as_bytes(), e.subject.as_bytes())
        })
        .ok_or("no export covers it")?;
    let mut expiry = None;
    if export.account_token_position > 0 {
        let at = usize::try_from(export.account_token_position - 1).unwrap_or(usize::MAX);
        if def.subject.split('.').nth(at) != Some(importer.key.as_str()) {
            return Err("the account token position does not name the importer".into());
        }
    } else if export.token_req {
        expiry = check_activation(import, exporter, export, now_unix)?;
    }
    if export.token_req || export.account_token_position > 0 {
        let opened = defs
            .get_mut(exporter.id as usize)
            .and_then(|d| d.exports.get_mut(index))
            .and_then(|e| e.accounts.as_mut());
        if let Some(ids) = opened
            && !ids.contains(&importer.id)
        {
            ids.push(importer.id);
        }
    }
    Ok((def, expiry))
}

/// nats-server `checkActivation`: the token is signed by the exporter or one of its signing
/// keys (then naming it in `issuer_account`), in force now, and not revoked by the export.
/// Returns the token's `exp`, if it has one.
fn check_activation(
    import: &Import,
    exporter: &JwtAccount,
    export: &Export,
    now_unix: i64,
) -> Result<Option<i64>, String> {
    if import.token.is_empty() {
        return Err("the export requires an activation token".into());
    }
    let (data, act) =
        jwt::decode_activation(&import.token).map_err(|e| format!("activation token: {e}"))?;
    let trusted = if act.issuer_account.is_empty() {
        data.iss == exporter.key
    } else {
        act.issuer_account == exporter.key
            && exporter
                .claims
                .signing_keys
                .iter()
                .any(|k| k.key() == data.iss)
    };
    if !trusted {
        return Err("activation token not issued by the exporter".into());
    }
    // nats-server: expired at `exp` itself (`act.Expires <= now`).
    if data.exp > 0 && data.exp <= now_unix {
        return Err("activation token expired".into());
    }
    jwt::check_times(&data, now_unix).map_err(|e| format!("activation token: {e}"))?;
    let revoked = [data.sub.as_str(), "*"]
        .iter()
        .filter_map(|k| export.revocations.get(*k))
        .any(|&at| data.iat <= at);
    if revoked {
        return Err("activation token revoked".into());
    }
    Ok((data.exp > 0).then_some(data.exp))
}
