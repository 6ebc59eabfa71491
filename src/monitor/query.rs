//! What the monitoring thread asks a shard, and what the shard answers: plain data, copied out
//! of the shard on its own thread, so the monitoring side never touches shard state.
//!
//! Cold: one query per shard per monitoring request. A shard answers between two loop turns;
//! the work is a walk over its connections (or subscriptions) plus copies of at most
//! `offset + limit` entries, so a large poll costs a bounded amount however many clients there
//! are. Invariant: a shard never waits on the monitoring thread (replies go into an unbounded
//! channel; a query nobody waits for any more is answered into the void).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::ids::ShardId;

/// One request to one shard; the answer goes to `reply`.
pub struct ShardQuery {
    pub what: QueryKind,
    /// Where the report goes; `None` for work that reports nothing (`Publish`).
    pub reply: Option<tokio::sync::mpsc::UnboundedSender<ShardReport>>,
}

/// What to copy out besides the totals, which every report carries.
#[derive(Clone)]
pub enum QueryKind {
    /// Totals only (`/varz`, `/healthz`).
    Totals,
    /// Connections for `/connz`.
    Conns(Arc<ConnFilter>),
    /// Subscriptions for `/subsz` (and the subscription count per account for `/accountz`).
    Subs(Arc<SubFilter>),
    /// Not a question: publish this `$SYS` reply or event (no report).
    Publish(Arc<crate::monitor::sys::SysPublish>),
}

/// Which connections `/connz` wants, and how many from each shard.
#[derive(Clone, Debug)]
pub struct ConnFilter {
    pub state: StateFilter,
    /// Only this client id (`cid=`).
    pub cid: Option<u64>,
    /// Only this account (`acc=`), by name.
    pub account: Option<String>,
    /// Only this user (`user=`).
    pub user: Option<String>,
    pub subs: SubsWanted,
    pub sort: SortKey,
    /// Each shard returns at most this many, the first by `sort` (`offset + limit`).
    pub keep: usize,
}

/// `state=open|closed|all`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StateFilter {
    Open,
    Closed,
    All,
}

/// `subs=1` (subjects) or `subs=detail`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SubsWanted {
    None,
    Subjects,
    Detail,
}

/// `/connz?sort=`: nats-server's `SortOpt` values. Only `cid`/`start` and `uptime` (and
/// `reason`) ascend; the others descend.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SortKey {
    Cid,
    Subs,
    Pending,
    OutMsgs,
    InMsgs,
    OutBytes,
    InBytes,
    Last,
    Idle,
    Uptime,
    Stop,
    Reason,
}

impl SortKey {
    /// nats-server's names (`monitor_sort_opts.go`).
    pub fn parse(text: &str) -> Option<SortKey> {
        Some(match text {
            "" | "cid" | "start" => SortKey::Cid,
            "subs" => SortKey::Subs,
            "pending" => SortKey::Pending,
            "msgs_to" => SortKey::OutMsgs,
            "msgs_from" => SortKey::InMsgs,
            "bytes_to" => SortKey::OutBytes,
            "bytes_from" => SortKey::InBytes,
            "last" => SortKey::Last,
            "idle" => SortKey::Idle,
            "uptime" => SortKey::Uptime,
            "stop" => SortKey::Stop,
            "reason" => SortKey::Reason,
            _ => return None,
        })
    }

    /// Orders two connections as `/connz` lists them; ties go by client id.
    pub fn compare(self, a: &ConnInfo, b: &ConnInfo) -> std::cmp::Ordering {
        let primary = match self {
            SortKey::Cid => a.cid.cmp(&b.cid),
            SortKey::Subs => b.subs_count.cmp(&a.subs_count),
            SortKey::Pending => b.pending_bytes.cmp(&a.pending_bytes),
            SortKey::OutMsgs => b.out_msgs.cmp(&a.out_msgs),
            SortKey::InMsgs => b.in_msgs.cmp(&a.in_msgs),
            SortKey::OutBytes => b.out_bytes.cmp(&a.out_bytes),
            SortKey::InBytes => b.in_bytes.cmp(&a.in_bytes),
            SortKey::Last => b.last_activity.cmp(&a.last_activity),
            // Longest idle first: the oldest last activity.
            SortKey::Idle => a.last_activity.cmp(&b.last_activity),
            // nats-server `byUptime` ascends: the youngest connection first.
            SortKey::Uptime => b.start.cmp(&a.start),
            SortKey::Stop => b.stop.cmp(&a.stop),
            SortKey::Reason => a.reason.cmp(&b.reason),
        };
        primary.then(a.cid.cmp(&b.cid))
    }
}

/// Which subscriptions `/subsz` wants.
#[derive(Clone, Debug)]
pub struct SubFilter {
    /// Copy the subscriptions out (`subs=1`); otherwise only counts.
    pub detail: bool,
    /// Only subscriptions a publish on this literal subject would reach (`test=`).
    pub test: Option<String>,
    /// Only this account (`acc=`).
    pub account: Option<String>,
}

/// One shard's answer.
#[derive(Default)]
pub struct ShardReport {
    pub shard: Option<ShardId>,
    pub totals: ShardTotals,
    /// Per account id: connections and traffic of this shard in that account.
    pub accounts: Vec<AccountTotals>,
    /// Connections matching the query, before `keep` cut them.
    pub conns_matched: usize,
    /// At most `keep` of them, in no particular order.
    pub conns: Vec<ConnInfo>,
    /// Subscriptions (with `SubFilter::detail`), in no particular order.
    pub subs: Vec<SubInfo>,
    /// Subscriptions matching a `SubFilter`, counted even without detail.
    pub subs_matched: usize,
}

/// A shard's counters: cumulative traffic (open and closed connections) and current gauges.
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct ShardTotals {
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    /// Open client connections now.
    pub connections: u64,
    /// Connections accepted since start.
    pub total_connections: u64,
    /// Local subscriptions now.
    pub subscriptions: u64,
    /// Subjects in the match caches.
    pub cache_len: u64,
    pub sub_inserts: u64,
    pub sub_removes: u64,
    /// Subject index lookups and those the match cache answered (all accounts).
    pub matches: u64,
    pub cache_hits: u64,
    /// The largest and the summed fanout of the cached match results (`/subsz` queries only;
    /// 0 in the others).
    pub fanout_max: u64,
    pub fanout_total: u64,
}

impl ShardTotals {
    pub fn add(&mut self, other: &ShardTotals) {
        self.in_msgs += other.in_msgs;
        self.in_bytes += other.in_bytes;
        self.out_msgs += other.out_msgs;
        self.out_bytes += other.out_bytes;
        self.slow_consumers += other.slow_consumers;
        self.connections += other.connections;
        self.total_connections += other.total_connections;
        self.subscriptions += other.subscriptions;
        self.cache_len += other.cache_len;
        self.sub_inserts += other.sub_inserts;
        self.sub_removes += other.sub_removes;
        self.matches += other.matches;
        self.cache_hits += other.cache_hits;
        self.fanout_max = self.fanout_max.max(other.fanout_max);
        self.fanout_total += other.fanout_total;
    }
}

/// One account on one shard: nats-server's `AccountStat` fields, from the account's clients'
/// point of view (`received` = what they published).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
pub struct AccountTotals {
    pub connections: u64,
    pub total_connections: u64,
    pub subscriptions: u64,
    pub in_msgs: u64,
    pub in_bytes: u64,
    pub out_msgs: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
}

impl AccountTotals {
    pub fn add(&mut self, other: &AccountTotals) {
        self.connections += other.connections;
        self.total_connections += other.total_connections;
        self.subscriptions += other.subscriptions;
        self.in_msgs += other.in_msgs;
        self.in_bytes += other.in_bytes;
        self.out_msgs += other.out_msgs;
        self.out_bytes += other.out_bytes;
        self.slow_consumers += other.slow_consumers;
    }
}

/// One connection as `/connz` shows it, open or closed.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub cid: u64,
    pub peer: SocketAddr,
    pub start: SystemTime,
    pub last_activity: SystemTime,
    /// Closed connections: when, and why.
    pub stop: Option<SystemTime>,
    pub reason: Option<&'static str>,
    pub rtt: Duration,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subs_count: u32,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub user: String,
    pub account: String,
    pub tls_version: Option<&'static str>,
    /// Filled when the query asked for subscriptions.
    pub subs: Vec<SubInfo>,
}

/// One subscription (nats-server `SubDetail`).
#[derive(Clone, Debug)]
pub struct SubInfo {
    pub account: String,
    pub subject: String,
    pub queue: Option<String>,
    pub sid: String,
    pub msgs: u64,
    pub max: Option<u64>,
    pub cid: u64,
}
