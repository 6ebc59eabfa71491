//! Compiled publish/subscribe permissions and the per-connection caches that make checking them
//! nearly free.
//!
//! Cold: [`Permissions::from_value`] / [`Permissions::compile`] run at config load (or when a JWT
//! is decoded) and validate every entry. Hot: [`PermCache::can_publish`],
//! [`PermCache::can_subscribe`] and [`PermCache::can_deliver`] run per PUB, SUB and delivery; a
//! cache hit is one `ahash` lookup and allocates nothing. [`ResponseTracker`] (for
//! `allow_responses`) is kept apart from the cache on purpose: reply subjects are one-shot, and
//! caching them would churn the cache (nats-server's `pcache` is bypassed for the same reason).
//!
//! Invariants (nats-server 2.9.10 `canSubscribe`, `pubAllowedFullCheck`, `checkDenySub`): deny
//! wins; an absent allow list allows everything; entries are NATS wildcard patterns matched
//! against the checked subject token by token. A SUB is allowed only when one allow entry
//! covers every subject it can match (a subset test: `foo.*` allows `SUB foo.*` and
//! `SUB foo.bar`, not `SUB foo.>`; nats-server 2.9.10 matches the SUB subject as a literal and
//! so lets `SUB >` through `["*"]`). A deny entry refuses a SUB it matches literally; a
//! wildcard SUB that merely overlaps one (`SUB in.>` against `*.secret`) is accepted with the
//! delivery filter on. A cache never answers differently from the uncached check (a proptest
//! pins this).

use std::time::{Duration, Instant};

use ahash::AHashMap;

use crate::config::{ConfigError, Value, ValueKind};
use crate::subject::{filter_matches, is_valid_filter};

/// nats-server `DEFAULT_ALLOW_RESPONSE_MAX_MSGS`.
pub const RESPONSE_MAX_DEFAULT: u32 = 1;
/// nats-server `DEFAULT_ALLOW_RESPONSE_EXPIRATION`.
pub const RESPONSE_EXPIRES_DEFAULT: Duration = Duration::from_secs(120);
/// Entries per direction in a [`PermCache`] (nats-server `maxPermCacheSize` is 128).
pub const PERM_CACHE_CAPACITY: usize = 128;
/// Entries dropped when a full [`PermCache`] direction takes a new subject.
const PERM_CACHE_PRUNE: usize = 32;
/// Reply subjects a [`ResponseTracker`] remembers (nats-server `replyPermLimit`).
pub const RESPONSE_TRACKER_CAPACITY: usize = 4096;
/// Queue group name no client may use (nats-server `sysGroup`).
pub const SYSTEM_QUEUE: &[u8] = b"_sys_";

/// `allow_responses` / JWT `resp`: how many replies, for how long, per received request.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct ResponsePermission {
    /// Replies allowed per received reply subject; 0 = unlimited (as nats-server).
    pub max: u32,
    /// How long after delivery a reply is allowed; zero = no expiry (as nats-server).
    pub expires: Duration,
}

impl Default for ResponsePermission {
    fn default() -> Self {
        ResponsePermission {
            max: RESPONSE_MAX_DEFAULT,
            expires: RESPONSE_EXPIRES_DEFAULT,
        }
    }
}

/// Uncompiled permission lists, as written in a config or a JWT. `None` allow = allow all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermissionSpec {
    pub publish_allow: Option<Vec<String>>,
    pub publish_deny: Vec<String>,
    /// Entries may be `"subject queue"`.
    pub subscribe_allow: Option<Vec<String>>,
    pub subscribe_deny: Vec<String>,
    pub response: Option<ResponsePermission>,
}

/// A permission entry that is not a valid subject (or `subject queue`).
#[derive(Clone, Debug, Eq, PartialEq, thiserror::Error)]
#[error("subject \"{0}\" is not a valid subject")]
pub struct InvalidPermission(pub String);

/// Compiled permissions of one user; shared (`Arc`) by all of its connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    publish: Rules,
    subscribe: Rules,
    /// Subscribe deny entries without a queue: the delivery filter for wildcard subs.
    deliver_deny: Vec<Box<[u8]>>,
    response: Option<ResponsePermission>,
}

/// One direction: `allow` (`None` = everything) and `deny`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Rules {
    allow: Option<Vec<Rule>>,
    deny: Vec<Rule>,
}

/// One entry: a subject pattern, and for subscribe entries an optional queue pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    subject: Box<[u8]>,
    queue: Option<Box<[u8]>>,
}

/// What the entries of one direction say about a subject (nats-server `SublistResult`).
#[derive(Clone, Copy, Default)]
struct RuleMatch {
    /// An entry without a queue matched.
    plain: bool,
    /// Entries with a queue matched; `queue_hit` if one of them names the queue checked.
    queued: bool,
    queue_hit: bool,
}

impl Permissions {
    /// Compiles and validates `spec`. `allow_responses` without a publish allow list turns
    /// publish into deny-all-except-replies (nats-server `setPermissions`).
    pub fn compile(spec: &PermissionSpec) -> Result<Permissions, InvalidPermission> {
        let mut publish_allow = spec.publish_allow.clone();
        if spec.response.is_some() && publish_allow.is_none() {
            publish_allow = Some(Vec::new());
        }
        let publish = Rules {
            allow: publish_allow.as_deref().map(publish_rules).transpose()?,
            deny: publish_rules(&spec.publish_deny)?,
        };
        let subscribe = Rules {
            allow: spec
                .subscribe_allow
                .as_deref()
                .map(subscribe_rules)
                .transpose()?,
            deny: subscribe_rules(&spec.subscribe_deny)?,
        };
        let deliver_deny = subscribe
            .deny
            .iter()
            .filter(|r| r.queue.is_none())
            .map(|r| r.subject.clone())
            .collect();
        Ok(Permissions {
            publish,
            subscribe,
            deliver_deny,
            response: spec.response,
        })
    }

    /// Reads a config `permissions` value (map with `publish`/`subscribe`/`allow_responses`
    /// and their aliases) and compiles it. Errors are worded as nats-server's.
    pub fn from_value(value: &Value) -> Result<Permissions, ConfigError> {
        let spec = spec_from_value(value)?;
        Permissions::compile(&spec).map_err(|e| value.error("permissions", e.to_string()))
    }

    /// `base` (or no restriction) with `subject` added to the publish deny list (nats-server
    /// `mergeDenyPermissions`): the auth callout's `$SYS.REQ.USER.AUTH` for clients of the
    /// callout account.
    pub fn with_publish_deny(
        base: Option<&Permissions>,
        subject: &str,
    ) -> Result<Permissions, InvalidPermission> {
        let mut perms = base.cloned().unwrap_or_default();
        let rule = publish_rules(&[subject.to_string()])?;
        if !perms.publish.deny.contains(&rule[0]) {
            perms.publish.deny.extend(rule);
        }
        Ok(perms)
    }

    /// The `allow_responses` setting, if any.
    pub fn allow_responses(&self) -> Option<ResponsePermission> {
        self.response
    }

    /// Whether deliveries may need [`PermCache::can_deliver`]: true when there are subscribe
    /// deny entries. When false the shard can skip the delivery check entirely.
    pub fn filters_deliveries(&self) -> bool {
        !self.deliver_deny.is_empty()
    }

    /// Whether an accepted (wildcard) SUB on `filter` can match a denied subject, so messages
    /// delivered through it must pass [`PermCache::can_deliver`] (nats-server `mperms`, which
    /// turns on only when the deny entry lies inside the SUB; any overlap counts here).
    pub fn sub_needs_delivery_filter(&self, filter: &[u8]) -> bool {
        self.deliver_deny
            .iter()
            .any(|d| subjects_overlap(d, filter))
    }

    /// Uncached publish check (no `allow_responses` replies; see [`ResponseTracker`]).
    pub fn check_publish(&self, subject: &[u8]) -> bool {
        let allowed = match &self.publish.allow {
            Some(allow) => match_rules(allow, subject, None, Covers::Literal).plain,
            None => true,
        };
        allowed && !match_rules(&self.publish.deny, subject, None, Covers::Literal).plain
    }

    /// Uncached subscribe check, nats-server `canSubscribe` to the letter, including its
    /// queue-entry rules: when queue entries match, the queue name decides.
    pub fn check_subscribe(&self, subject: &[u8], queue: Option<&[u8]>) -> bool {
        if queue == Some(SYSTEM_QUEUE) {
            return false;
        }
        let mut allowed = true;
        if let Some(allow) = &self.subscribe.allow {
            let m = match_rules(allow, subject, queue, Covers::Subset);
            allowed = m.plain;
            if queue.is_some() && m.queued {
                allowed = m.queue_hit;
            }
        }
        if allowed {
            let m = match_rules(&self.subscribe.deny, subject, queue, Covers::Literal);
            allowed = !m.plain;
            if queue.is_some() && m.queued {
                // nats-server lets the queue decide here too, even over a plain deny match.
                allowed = !m.queue_hit;
            }
        }
        allowed
    }

    /// Uncached delivery check (nats-server `checkDenySub`): a message on `subject` is not
    /// delivered if it matches a plain subscribe deny entry.
    pub fn check_deliver(&self, subject: &[u8]) -> bool {
        !self.deliver_deny.iter().any(|d| filter_matches(d, subject))
    }

    fn restricts_publish(&self) -> bool {
        self.publish.allow.is_some() || !self.publish.deny.is_empty()
    }
}

/// Per-connection answers for subjects already checked. Bounded; call [`PermCache::clear`] when
/// the connection's `Permissions` change (reload).
#[derive(Debug, Default)]
pub struct PermCache {
    publish: AHashMap<Box<[u8]>, bool>,
    subscribe: AHashMap<Box<[u8]>, bool>,
    deliver: AHashMap<Box<[u8]>, bool>,
    /// `subject queue` key built here, so queue-sub lookups do not allocate once warm.
    key_scratch: Vec<u8>,
    /// The last publish subject and its answer: publishers mostly repeat a subject, and a
    /// byte compare is cheaper than hashing it (this keeps a restricted publisher's cost close
    /// to an unrestricted one's).
    last_publish: Vec<u8>,
    last_publish_allowed: bool,
}

impl PermCache {
    pub fn new() -> PermCache {
        PermCache::default()
    }

    /// Whether the connection may publish to `subject` (without `allow_responses`; on `false`
    /// consult [`ResponseTracker::allow_reply`] when `perms.allow_responses()` is set).
    pub fn can_publish(&mut self, perms: &Permissions, subject: &[u8]) -> bool {
        if !perms.restricts_publish() {
            return true;
        }
        if !self.last_publish.is_empty() && self.last_publish == subject {
            return self.last_publish_allowed;
        }
        let allowed = cached(&mut self.publish, subject, || perms.check_publish(subject));
        // Subjects are bounded by the control line, so this buffer stays small.
        self.last_publish.clear();
        self.last_publish.extend_from_slice(subject);
        self.last_publish_allowed = allowed;
        allowed
    }

    /// Whether the connection may subscribe to `subject` (with `queue`).
    pub fn can_subscribe(
        &mut self,
        perms: &Permissions,
        subject: &[u8],
        queue: Option<&[u8]>,
    ) -> bool {
        let Some(queue) = queue else {
            return cached(&mut self.subscribe, subject, || {
                perms.check_subscribe(subject, None)
            });
        };
        // A space never occurs in a subject, so `subject queue` cannot collide with a subject.
        self.key_scratch.clear();
        self.key_scratch.extend_from_slice(subject);
        self.key_scratch.push(b' ');
        self.key_scratch.extend_from_slice(queue);
        cached(&mut self.subscribe, &self.key_scratch, || {
            perms.check_subscribe(subject, Some(queue))
        })
    }

    /// Whether a message on `subject` may be delivered to this connection.
    pub fn can_deliver(&mut self, perms: &Permissions, subject: &[u8]) -> bool {
        if !perms.filters_deliveries() {
            return true;
        }
        cached(&mut self.deliver, subject, || perms.check_deliver(subject))
    }

    /// Forgets every cached answer.
    pub fn clear(&mut self) {
        self.publish.clear();
        self.subscribe.clear();
        self.deliver.clear();
        self.last_publish.clear();
    }

    /// Cached entries over all directions (for tests and stats).
    pub fn len(&self) -> usize {
        self.publish.len() + self.subscribe.len() + self.deliver.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Reply subjects this connection received and may answer under `allow_responses`
/// (nats-server `c.replies`). Bounded by [`RESPONSE_TRACKER_CAPACITY`]; never touches
/// [`PermCache`].
#[derive(Debug, Default)]
pub struct ResponseTracker {
    replies: AHashMap<Box<[u8]>, ReplyState>,
}

#[derive(Clone, Copy, Debug)]
struct ReplyState {
    delivered_at: Instant,
    sent_count: u32,
}

impl ResponseTracker {
    pub fn new() -> ResponseTracker {
        ResponseTracker::default()
    }

    /// A message carrying `reply` was delivered to this connection at `now`: allow replies to
    /// it (a repeat delivery restarts the count and the clock, as nats-server does).
    pub fn record(&mut self, resp: &ResponsePermission, reply: &[u8], now: Instant) {
        if let Some(state) = self.replies.get_mut(reply) {
            *state = ReplyState {
                delivered_at: now,
                sent_count: 0,
            };
            return;
        }
        if self.replies.len() >= RESPONSE_TRACKER_CAPACITY {
            self.sweep(resp, now);
        }
        if self.replies.len() >= RESPONSE_TRACKER_CAPACITY {
            self.evict_oldest();
        }
        let state = ReplyState {
            delivered_at: now,
            sent_count: 0,
        };
        self.replies.insert(reply.into(), state);
    }

    /// A publish to `subject` was denied by the lists: whether it is an allowed reply. Counts
    /// the reply; forgets the subject once its count or time is used up.
    pub fn allow_reply(&mut self, resp: &ResponsePermission, subject: &[u8], now: Instant) -> bool {
        let Some(state) = self.replies.get_mut(subject) else {
            return false;
        };
        state.sent_count = state.sent_count.saturating_add(1);
        let over_count = resp.max > 0 && state.sent_count > resp.max;
        if over_count || is_expired(resp, state, now) {
            self.replies.remove(subject);
            return false;
        }
        true
    }

    /// Drops reply subjects whose time or count is used up. The shard may call it from a timer.
    pub fn sweep(&mut self, resp: &ResponsePermission, now: Instant) {
        self.replies.retain(|_, state| {
            let used_up = resp.max > 0 && state.sent_count >= resp.max;
            !used_up && !is_expired(resp, state, now)
        });
    }

    pub fn len(&self) -> usize {
        self.replies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.replies.is_empty()
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .replies
            .iter()
            .min_by_key(|(_, s)| s.delivered_at)
            .map(|(k, _)| k.clone());
        if let Some(key) = oldest {
            self.replies.remove(&key);
        }
    }
}

fn is_expired(resp: &ResponsePermission, state: &ReplyState, now: Instant) -> bool {
    !resp.expires.is_zero() && now.saturating_duration_since(state.delivered_at) > resp.expires
}

/// Looks `key` up, computing and storing the answer on a miss. Full maps drop a few entries
/// first (any few: nats-server prunes arbitrary entries too).
fn cached(map: &mut AHashMap<Box<[u8]>, bool>, key: &[u8], check: impl FnOnce() -> bool) -> bool {
    if let Some(&answer) = map.get(key) {
        return answer;
    }
    let answer = check();
    if map.len() >= PERM_CACHE_CAPACITY {
        let mut dropped = 0;
        map.retain(|_, _| {
            dropped += 1;
            dropped > PERM_CACHE_PRUNE
        });
    }
    map.insert(key.into(), answer);
    answer
}

/// How an entry must relate to the checked subject to apply to it.
#[derive(Clone, Copy)]
enum Covers {
    /// The entry matches the subject taken literally (publish; subscribe deny).
    Literal,
    /// Every subject the (wildcard) subject can match is matched by the entry (subscribe
    /// allow). For a literal subject the two are the same.
    Subset,
}

fn match_rules(rules: &[Rule], subject: &[u8], queue: Option<&[u8]>, covers: Covers) -> RuleMatch {
    let mut m = RuleMatch::default();
    for rule in rules {
        let applies = match covers {
            Covers::Literal => filter_matches(&rule.subject, subject),
            Covers::Subset => is_subset_match(subject, &rule.subject),
        };
        if !applies {
            continue;
        }
        match (&rule.queue, queue) {
            (None, _) => m.plain = true,
            (Some(pattern), Some(q)) => {
                m.queued = true;
                m.queue_hit |= queue_matches(pattern, q);
            }
            (Some(_), None) => m.queued = true,
        }
    }
    m
}

/// nats-server `queueMatches`: the literal name, or a wildcard queue pattern covering it.
fn queue_matches(pattern: &[u8], queue: &[u8]) -> bool {
    pattern == queue || (has_wildcard(pattern) && is_subset_match(queue, pattern))
}

fn has_wildcard(s: &[u8]) -> bool {
    s.split(|&b| b == b'.').any(|t| t == b"*" || t == b">")
}

/// nats-server `subjectIsSubsetMatch(subject, test)`: every subject `subject` can match is also
/// matched by `test`.
pub fn is_subset_match(subject: &[u8], test: &[u8]) -> bool {
    let mut tokens = subject.split(|&b| b == b'.');
    for t2 in test.split(|&b| b == b'.') {
        let Some(t1) = tokens.next() else {
            return false;
        };
        if t2.is_empty() {
            return false;
        }
        if t2 == b">" {
            return true;
        }
        if t1.is_empty() || t1 == b">" {
            return false;
        }
        if t1 == b"*" {
            if t2 != b"*" {
                return false;
            }
            continue;
        }
        if t2 != b"*" && t1 != t2 {
            return false;
        }
    }
    tokens.next().is_none()
}

/// Whether some subject matches both filters `a` and `b` (`*` and `>` on either side).
pub fn subjects_overlap(a: &[u8], b: &[u8]) -> bool {
    let mut a_tokens = a.split(|&t| t == b'.');
    let mut b_tokens = b.split(|&t| t == b'.');
    loop {
        match (a_tokens.next(), b_tokens.next()) {
            (None, None) => return true,
            // `>` needs one token or more, and the other side has one here.
            (Some(b">"), Some(_)) | (Some(_), Some(b">")) => return true,
            (Some(ta), Some(tb)) if ta == b"*" || tb == b"*" || ta == tb => {}
            _ => return false,
        }
    }
}

fn publish_rules(entries: &[String]) -> Result<Vec<Rule>, InvalidPermission> {
    entries
        .iter()
        .map(|e| {
            if is_valid_filter(e.as_bytes()) {
                Ok(Rule {
                    subject: e.as_bytes().into(),
                    queue: None,
                })
            } else {
                Err(InvalidPermission(e.clone()))
            }
        })
        .collect()
}

/// nats-server `checkPermSubjectArray` + `newSubjectsAndQueue`: `subject` or `subject queue`.
fn subscribe_rules(entries: &[String]) -> Result<Vec<Rule>, InvalidPermission> {
    entries.iter().map(|e| subscribe_rule(e)).collect()
}

fn subscribe_rule(entry: &str) -> Result<Rule, InvalidPermission> {
    if is_valid_filter(entry.as_bytes()) {
        return Ok(Rule {
            subject: entry.as_bytes().into(),
            queue: None,
        });
    }
    let fields: Vec<&str> = entry.split_ascii_whitespace().collect();
    match fields.as_slice() {
        [subject, queue] if is_valid_filter(subject.as_bytes()) => Ok(Rule {
            subject: subject.as_bytes().into(),
            queue: Some(queue.as_bytes().into()),
        }),
        [subject, _] => Err(InvalidPermission((*subject).to_string())),
        _ => Err(InvalidPermission(entry.to_string())),
    }
}

/// nats-server `parseUserPermissions`.
fn spec_from_value(value: &Value) -> Result<PermissionSpec, ConfigError> {
    let map = value.expect_map("permissions")?;
    let mut spec = PermissionSpec::default();
    for entry in map {
        let v = &entry.value;
        match entry.key_lower().as_str() {
            "pub" | "publish" | "import" => {
                (spec.publish_allow, spec.publish_deny) = subject_permission(v)?;
            }
            "sub" | "subscribe" | "export" => {
                (spec.subscribe_allow, spec.subscribe_deny) = subject_permission(v)?;
            }
            "publish_allow_responses" | "allow_responses" => spec.response = allow_responses(v)?,
            _ => {
                return Err(entry.error(format!(
                    "Unknown field \"{}\" parsing permissions",
                    entry.key
                )));
            }
        }
    }
    Ok(spec)
}

type AllowDeny = (Option<Vec<String>>, Vec<String>);

/// `"subj"`, `["a", "b"]` (both mean allow) or `{allow: .., deny: ..}`.
fn subject_permission(value: &Value) -> Result<AllowDeny, ConfigError> {
    let Some(map) = value.as_map() else {
        return Ok((Some(subject_list(value)?), Vec::new()));
    };
    let (mut allow, mut deny) = (None, Vec::new());
    for entry in map {
        match entry.key_lower().as_str() {
            "allow" => allow = Some(subject_list(&entry.value)?),
            "deny" => deny = subject_list(&entry.value)?,
            _ => {
                return Err(entry.error(format!(
                    "Unknown field name \"{}\" parsing subject permissions, only 'allow' or \
                     'deny' are permitted",
                    entry.key
                )));
            }
        }
    }
    Ok((allow, deny))
}

fn subject_list(value: &Value) -> Result<Vec<String>, ConfigError> {
    let bad = || {
        value.error(
            "permissions",
            format!(
                "Expected subject permissions to be a subject, or array of subjects, got {}",
                value.type_name()
            ),
        )
    };
    match &value.kind {
        ValueKind::String(s) => Ok(vec![s.clone()]),
        ValueKind::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect(),
        _ => Err(bad()),
    }
}

/// `allow_responses: true | false | {max: N, expires: "2m"}`.
fn allow_responses(value: &Value) -> Result<Option<ResponsePermission>, ConfigError> {
    if let Some(enabled) = value.as_bool() {
        return Ok(enabled.then(ResponsePermission::default));
    }
    let map = value.expect_map("allow_responses")?;
    let mut resp = ResponsePermission::default();
    for entry in map {
        let v = &entry.value;
        match entry.key_lower().as_str() {
            "max" | "max_msgs" | "max_messages" | "max_responses" => {
                let n = v.expect_int(&entry.key)?;
                resp.max = u32::try_from(n)
                    .map_err(|_| v.error(&entry.key, format!("{n} is out of range")))?;
            }
            "expires" | "expiration" | "ttl" => resp.expires = response_expires(v)?,
            _ => {
                return Err(entry.error(format!(
                    "Unknown field \"{}\" parsing permissions",
                    entry.key
                )));
            }
        }
    }
    Ok(Some(resp))
}

fn response_expires(value: &Value) -> Result<Duration, ConfigError> {
    let text = value.expect_str("expires")?;
    crate::config::parse_go_duration(text)
        .map_err(|e| value.error("expires", format!("error parsing expires: {e}")))
}

#[cfg(test)]
mod tests;
