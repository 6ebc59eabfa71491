//! Config accounts: their exports and imports, validated at load, and the compiled
//! [`ImportTable`] the shard consults at publish time.
//!
//! Cold: parsing and validation at config load. Hot: [`ImportTable::streams_for`] and
//! [`ImportTable::service_for`] run per publish in an account that exports or imports; they
//! allocate nothing when nothing matches, and once the caller's reusable buffers are warm they
//! allocate nothing at all. Invariant: every import refers to an existing account that exports
//! a subject covering the import to the importer (nats-server `checkStreamImportAuthorized`),
//! so the table never routes what the exporter did not offer.

use ahash::AHashMap;

use crate::account::{ResponseSettings, ResponseType};
use crate::config::{ConfigError, Map, Pos, Value};
use crate::perms::is_subset_match;
use crate::subject::{filter_matches, is_valid_filter};

/// One account: index in [`crate::auth::AuthConfig::accounts`] is its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountDef {
    pub name: String,
    pub exports: Vec<Export>,
    pub imports: Vec<Import>,
    /// `signing_keys` of a configured account (no operator): account public keys whose user
    /// JWTs log in to this account (see `operator::OperatorMode::hybrid`).
    pub signing_keys: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    Stream,
    Service,
}

impl ExportKind {
    fn word(self) -> &'static str {
        match self {
            ExportKind::Stream => "stream",
            ExportKind::Service => "service",
        }
    }
}

/// `{stream: "subj"}` or `{service: "subj"}`, optionally restricted to `accounts: [..]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    pub kind: ExportKind,
    pub subject: String,
    /// Account ids allowed to import; `None` = public.
    pub accounts: Option<Vec<u32>>,
    /// Services: `response_type` and `response_threshold` (ignored for streams).
    pub response: ResponseSettings,
}

/// `{stream: {account, subject}, prefix?, to?}` or `{service: {account, subject}, to?}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Import {
    pub kind: ExportKind,
    /// The exporting account's id.
    pub account: u32,
    /// The subject in the exporter's namespace.
    pub subject: String,
    /// Stream: the subject in the importer's namespace (wildcards map by position).
    /// Service: the subject the importer publishes on. `None` = same as `subject`.
    pub to: Option<String>,
    /// Stream only: delivered as `prefix.<subject>`.
    pub prefix: Option<String>,
}

impl AccountDef {
    pub fn new(name: impl Into<String>) -> AccountDef {
        AccountDef {
            name: name.into(),
            exports: Vec::new(),
            imports: Vec::new(),
            signing_keys: Vec::new(),
        }
    }
}

/// Parses an account's `exports` array. `ids` maps account names to ids.
pub(crate) fn parse_exports(
    value: &Value,
    ids: &AHashMap<String, u32>,
) -> Result<Vec<Export>, ConfigError> {
    let items = value.expect_array("exports")?;
    items.iter().map(|item| parse_export(item, ids)).collect()
}

fn parse_export(item: &Value, ids: &AHashMap<String, u32>) -> Result<Export, ConfigError> {
    let map = item.expect_map("exports")?;
    let mut kind_subject = None;
    let mut account_names = None;
    let mut response = ResponseSettings::default();
    for entry in map {
        match entry.key_lower().as_str() {
            "stream" => kind_subject = Some((ExportKind::Stream, entry)),
            "service" => kind_subject = Some((ExportKind::Service, entry)),
            "accounts" => account_names = Some(&entry.value),
            // nats-server `parseExportStreamOrService`.
            "response" | "response_type" => {
                let text = entry.value.expect_str(&entry.key)?;
                response.kind = ResponseType::from_config(text)
                    .ok_or_else(|| entry.error(format!("Unknown response type: \"{text}\"")))?;
            }
            "threshold" | "response_threshold" | "response_max_time" | "response_time" => {
                let text = entry.value.expect_str(&entry.key)?;
                response.threshold = crate::config::parse_go_duration(text)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| {
                        entry.error(format!(
                            "Expected response threshold to be a parseable time duration, \
                             got \"{text}\""
                        ))
                    })?;
            }
            // Service latency: accepted, not implemented.
            "latency" | "account_token_position" | "description" | "info_url" | "name" => {}
            _ => return Err(unknown_field(entry.pos.clone(), &entry.key)),
        }
    }
    let Some((kind, entry)) = kind_subject else {
        return Err(item.error("exports", "Expected a stream or service export"));
    };
    let subject = checked_subject(&entry.value, &entry.key)?;
    let accounts = match account_names {
        None => None,
        Some(v) => Some(account_ids(v, ids, &format!("{} export", kind.word()))?),
    };
    Ok(Export {
        kind,
        subject,
        accounts,
        response,
    })
}

/// Parses an account's `imports` array, with the position of each import for later errors.
pub(crate) fn parse_imports(
    value: &Value,
    ids: &AHashMap<String, u32>,
) -> Result<Vec<(Import, Pos)>, ConfigError> {
    let items = value.expect_array("imports")?;
    items
        .iter()
        .map(|item| Ok((parse_import(item, ids)?, item.pos.clone())))
        .collect()
}

fn parse_import(item: &Value, ids: &AHashMap<String, u32>) -> Result<Import, ConfigError> {
    let map = item.expect_map("imports")?;
    let mut source = None;
    let (mut to, mut prefix) = (None, None);
    for entry in map {
        match entry.key_lower().as_str() {
            "stream" => source = Some((ExportKind::Stream, &entry.value)),
            "service" => source = Some((ExportKind::Service, &entry.value)),
            "to" => to = Some(checked_subject(&entry.value, &entry.key)?),
            "prefix" => prefix = Some(checked_subject(&entry.value, &entry.key)?),
            "share" | "allow_trace" => {}
            _ => return Err(unknown_field(entry.pos.clone(), &entry.key)),
        }
    }
    let Some((kind, source)) = source else {
        return Err(item.error("imports", "Expected a stream or service import"));
    };
    let (account_name, subject) = import_source(source)?;
    let account = *ids.get(&account_name).ok_or_else(|| {
        source.error(
            kind.word(),
            format!(
                "\"{account_name}\" account not defined for {} import",
                kind.word()
            ),
        )
    })?;
    if let Some(to) = &to {
        check_mappable(&subject, to).map_err(|msg| item.error("to", msg))?;
    }
    Ok(Import {
        kind,
        account,
        subject,
        to,
        prefix,
    })
}

/// `{account: A, subject: "x"}`.
fn import_source(value: &Value) -> Result<(String, String), ConfigError> {
    let map: &Map = value.expect_map("import")?;
    let (mut account, mut subject) = (None, None);
    for entry in map {
        match entry.key_lower().as_str() {
            "account" => account = Some(entry.value.expect_str(&entry.key)?.to_string()),
            "subject" => subject = Some(checked_subject(&entry.value, &entry.key)?),
            _ => return Err(unknown_field(entry.pos.clone(), &entry.key)),
        }
    }
    match (account, subject) {
        (Some(a), Some(s)) => Ok((a, s)),
        _ => Err(value.error("import", "Expect an account name and a subject")),
    }
}

/// Checks every import against its exporter's exports (nats-server
/// `checkStreamImportAuthorized` / `checkServiceImportAuthorized`).
pub(crate) fn check_imports(
    accounts: &[AccountDef],
    positions: &[(u32, Pos)],
) -> Result<(), ConfigError> {
    let mut pos_iter = positions.iter();
    for (importer, account) in accounts.iter().enumerate() {
        for import in &account.imports {
            let pos = pos_iter.next().map(|(_, p)| p.clone());
            let exporter = accounts.get(import.account as usize);
            let ok = exporter.is_some_and(|e| is_authorized(e, import, importer as u32));
            if !ok {
                let kind = import.kind.word();
                return Err(ConfigError::Invalid {
                    pos: pos.unwrap_or_else(unknown_pos),
                    key: "imports".into(),
                    msg: format!(
                        "Error adding {kind} import \"{}\": {kind} import not authorized",
                        import.subject
                    ),
                });
            }
        }
    }
    Ok(())
}

fn unknown_pos() -> Pos {
    Pos {
        file: std::sync::Arc::from(std::path::Path::new("<config>")),
        line: 0,
    }
}

fn is_authorized(exporter: &AccountDef, import: &Import, importer: u32) -> bool {
    exporter
        .exports
        .iter()
        .any(|e| export_covers(e, import, importer))
}

fn export_covers(export: &Export, import: &Import, importer: u32) -> bool {
    export.kind == import.kind
        && is_subset_match(import.subject.as_bytes(), export.subject.as_bytes())
        && export
            .accounts
            .as_ref()
            .is_none_or(|ids| ids.contains(&importer))
}

fn checked_subject(value: &Value, key: &str) -> Result<String, ConfigError> {
    let s = value.expect_str(key)?;
    if !is_valid_filter(s.as_bytes()) {
        return Err(value.error(key, format!("subject \"{s}\" is not a valid subject")));
    }
    Ok(s.to_string())
}

fn account_ids(
    value: &Value,
    ids: &AHashMap<String, u32>,
    what: &str,
) -> Result<Vec<u32>, ConfigError> {
    let names = value.expect_strings("accounts")?;
    names
        .iter()
        .map(|n| {
            ids.get(*n).copied().ok_or_else(|| {
                value.error(
                    "accounts",
                    format!("\"{n}\" account not defined for {what}"),
                )
            })
        })
        .collect()
}

fn unknown_field(pos: Pos, key: &str) -> ConfigError {
    ConfigError::UnknownField {
        pos,
        key: key.to_string(),
    }
}

/// `to` must use the same wildcards as `from` so each one maps by position.
pub(crate) fn check_mappable(from: &str, to: &str) -> Result<(), String> {
    let count = |s: &str, w: &str| s.split('.').filter(|t| *t == w).count();
    let to_has_wildcards = count(to, "*") + count(to, ">") > 0;
    if to_has_wildcards
        && (count(from, "*") != count(to, "*") || count(from, ">") != count(to, ">"))
    {
        return Err(format!(
            "mapping \"{from}\" to \"{to}\": wildcards must correspond"
        ));
    }
    Ok(())
}

/// Compiled imports, indexed for the publish path.
#[derive(Clone, Debug, Default)]
pub struct ImportTable {
    /// Per exporter id: stream imports out of it.
    streams: Vec<Vec<StreamRoute>>,
    /// Per importer id: service imports it may call.
    services: Vec<Vec<ServiceRoute>>,
}

#[derive(Clone, Debug)]
struct StreamRoute {
    importer: u32,
    /// Pattern in the exporter's namespace.
    pattern: Box<[u8]>,
    target: Target,
}

#[derive(Clone, Debug)]
struct ServiceRoute {
    exporter: u32,
    /// Pattern the importer publishes on.
    local: Box<[u8]>,
    /// Pattern in the exporter's namespace.
    remote: Box<[u8]>,
    /// The export's reply rules.
    response: ResponseSettings,
}

#[derive(Clone, Debug)]
enum Target {
    Same,
    Prefix(Box<[u8]>),
    Map(Box<[u8]>),
}

/// Reusable output of [`ImportTable::streams_for`]: (importer id, subject in its namespace).
#[derive(Debug, Default)]
pub struct ImportMatches {
    bytes: Vec<u8>,
    items: Vec<(u32, usize, usize)>,
}

impl ImportMatches {
    pub fn new() -> ImportMatches {
        ImportMatches::default()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.items.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// (importer account id, subject to deliver on in that account).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8])> + '_ {
        self.items
            .iter()
            .map(|&(id, start, end)| (id, &self.bytes[start..end]))
    }
}

impl ImportTable {
    /// Builds the table from validated accounts.
    pub fn new(accounts: &[AccountDef]) -> ImportTable {
        let mut table = ImportTable {
            streams: vec![Vec::new(); accounts.len()],
            services: vec![Vec::new(); accounts.len()],
        };
        for (importer, account) in accounts.iter().enumerate() {
            for import in &account.imports {
                let exporter = accounts.get(import.account as usize);
                table.add(importer as u32, import, exporter);
            }
        }
        table
    }

    fn add(&mut self, importer: u32, import: &Import, exporter: Option<&AccountDef>) {
        let subject: Box<[u8]> = import.subject.as_bytes().into();
        match import.kind {
            ExportKind::Stream => {
                let target = match (&import.prefix, &import.to) {
                    (Some(p), _) => Target::Prefix(p.as_bytes().into()),
                    (None, Some(to)) => Target::Map(to.as_bytes().into()),
                    (None, None) => Target::Same,
                };
                if let Some(list) = self.streams.get_mut(import.account as usize) {
                    list.push(StreamRoute {
                        importer,
                        pattern: subject,
                        target,
                    });
                }
            }
            ExportKind::Service => {
                let local = import
                    .to
                    .as_deref()
                    .map_or(subject.clone(), |t| t.as_bytes().into());
                // The export that authorizes the import (the first, as `is_authorized`) sets
                // the reply rules.
                let response = exporter
                    .and_then(|e| {
                        e.exports
                            .iter()
                            .find(|x| export_covers(x, import, importer))
                    })
                    .map_or_else(ResponseSettings::default, |x| x.response);
                if let Some(list) = self.services.get_mut(importer as usize) {
                    list.push(ServiceRoute {
                        exporter: import.account,
                        local,
                        remote: subject,
                        response,
                    });
                }
            }
        }
    }

    /// Whether a publish in `account` can cross to another account at all: it exports a
    /// stream someone imports, or imports a service (lets the shard skip both lookups).
    #[inline]
    pub fn has_imports_from_or_to(&self, account: u32) -> bool {
        self.has_stream_imports(account)
            || self
                .services
                .get(account as usize)
                .is_some_and(|l| !l.is_empty())
    }

    /// Whether `exporter` has any stream importer (lets the shard skip the call).
    pub fn has_stream_imports(&self, exporter: u32) -> bool {
        self.streams
            .get(exporter as usize)
            .is_some_and(|l| !l.is_empty())
    }

    /// Appends to `out` every (importer, subject) a publish on `subject` in `exporter` reaches
    /// through a stream import. Does not clear `out`.
    pub fn streams_for(&self, exporter: u32, subject: &[u8], out: &mut ImportMatches) {
        let Some(routes) = self.streams.get(exporter as usize) else {
            return;
        };
        for route in routes {
            if !filter_matches(&route.pattern, subject) {
                continue;
            }
            let start = out.bytes.len();
            match &route.target {
                Target::Same => out.bytes.extend_from_slice(subject),
                Target::Prefix(p) => {
                    out.bytes.extend_from_slice(p);
                    out.bytes.push(b'.');
                    out.bytes.extend_from_slice(subject);
                }
                Target::Map(to) => map_subject(&route.pattern, to, subject, &mut out.bytes),
            }
            out.items.push((route.importer, start, out.bytes.len()));
        }
    }

    /// The service import a publish on `subject` in `importer` goes to: the exporter id and
    /// its reply rules, with the subject in the exporter's namespace written into `out`
    /// (cleared first).
    pub fn service_for(
        &self,
        importer: u32,
        subject: &[u8],
        out: &mut Vec<u8>,
    ) -> Option<(u32, ResponseSettings)> {
        let routes = self.services.get(importer as usize)?;
        let route = routes.iter().find(|r| filter_matches(&r.local, subject))?;
        out.clear();
        map_subject(&route.local, &route.remote, subject, out);
        Some((route.exporter, route.response))
    }
}

/// Writes `subject` (matched by `from`) rewritten by `to`: `*` tokens of `to` take the tokens
/// the `*`s of `from` matched, in order; `>` takes the tail. A literal `to` is written as is.
pub fn map_subject(from: &[u8], to: &[u8], subject: &[u8], out: &mut Vec<u8>) {
    if from == to {
        out.extend_from_slice(subject);
        return;
    }
    let from_tokens = from.split(|&b| b == b'.');
    let mut rest = subject;
    let mut captures: smallvec::SmallVec<[&[u8]; 8]> = smallvec::SmallVec::new();
    let mut tail: &[u8] = &[];
    for ft in from_tokens {
        if ft == b">" {
            tail = rest;
            break;
        }
        let (token, after) = match rest.iter().position(|&b| b == b'.') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        if ft == b"*" {
            captures.push(token);
        }
        rest = after;
    }
    let mut next_capture = captures.iter();
    for (i, tt) in to.split(|&b| b == b'.').enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        let piece: &[u8] = match tt {
            b"*" => next_capture.next().copied().unwrap_or(tt),
            b">" => tail,
            _ => tt,
        };
        out.extend_from_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(from: &str, to: &str, subject: &str) -> String {
        let mut out = Vec::new();
        map_subject(from.as_bytes(), to.as_bytes(), subject.as_bytes(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn maps_subjects_by_wildcard_position() {
        assert_eq!(mapped("a.*.c", "x.*", "a.b.c"), "x.b");
        assert_eq!(mapped("a.>", "x.>", "a.b.c"), "x.b.c");
        assert_eq!(mapped("a.*.*", "x.*.y.*", "a.1.2"), "x.1.y.2");
        assert_eq!(mapped("svc.x", "local", "svc.x"), "local");
        assert_eq!(mapped("same.>", "same.>", "same.q"), "same.q");
    }

    #[test]
    fn mapping_must_keep_wildcards() {
        assert!(check_mappable("a.*", "b.*").is_ok());
        assert!(check_mappable("a.b", "c").is_ok());
        assert!(check_mappable("a.*", "b.>").is_err());
        assert!(check_mappable("a.b", "b.*").is_err());
    }
}
