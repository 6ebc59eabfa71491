//! The monitoring endpoints' JSON, field for field as nats-server 2.9.10 writes it (`Varz`,
//! `Connz`, `Subsz`, `Accountz`, `AccountStatz`, `HealthStatus`, and the empty `Routez`,
//! `Leafz`, `Gatewayz`, `JSInfo` of a server without those features), built from the shards'
//! reports.
//!
//! Cold: runs per monitoring request on the monitoring thread. Structs keep nats-server's field
//! order and `omitempty` rules; floats that hold whole numbers print as integers, as Go's
//! encoder prints them.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::Serialize;

use crate::auth::{ExportKind, GLOBAL_ACCOUNT};
use crate::monitor::gotime::{rfc3339_nano, rtt, uptime};
use crate::monitor::query::{
    AccountTotals, ConnFilter, ConnInfo, ShardReport, ShardTotals, SubInfo, SubsWanted,
};
use crate::shared::{COMPAT_VERSION, Shared};

/// nats-server `DefaultConnListSize` and `DefaultSubListSize`.
pub const DEFAULT_LIST_LIMIT: usize = 1024;
/// nats-server `TLS_TIMEOUT`, shown in `/varz` even without TLS.
const DEFAULT_TLS_TIMEOUT_SECS: f64 = 2.0;

/// A float as Go's `encoding/json` prints it: `2`, not `2.0`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GoFloat(pub f64);

impl Serialize for GoFloat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
            s.serialize_i64(v as i64)
        } else {
            s.serialize_f64(v)
        }
    }
}

/// Sums the shards' totals.
pub fn server_totals(reports: &[ShardReport]) -> ShardTotals {
    let mut totals = ShardTotals::default();
    for r in reports {
        totals.add(&r.totals);
    }
    totals
}

/// Sums the shards' per-account totals; index = account id.
pub fn account_totals(reports: &[ShardReport]) -> Vec<AccountTotals> {
    let mut out: Vec<AccountTotals> = Vec::new();
    for r in reports {
        if out.len() < r.accounts.len() {
            out.resize(r.accounts.len(), AccountTotals::default());
        }
        for (i, acc) in r.accounts.iter().enumerate() {
            out[i].add(acc);
        }
    }
    out
}

// ---- /varz ---------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct Varz {
    pub server_id: String,
    pub server_name: String,
    pub version: String,
    pub proto: u32,
    pub go: String,
    pub host: String,
    pub port: u16,
    #[serde(skip_serializing_if = "is_false")]
    pub auth_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_required: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tls_verify: bool,
    pub max_connections: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub max_subscriptions: usize,
    pub ping_interval: u64,
    pub ping_max: u32,
    pub http_host: String,
    pub http_port: u16,
    pub http_base_path: String,
    pub https_port: u16,
    pub auth_timeout: GoFloat,
    pub max_control_line: usize,
    pub max_payload: usize,
    pub max_pending: usize,
    pub cluster: Empty,
    pub gateway: Empty,
    pub leaf: Empty,
    pub mqtt: Empty,
    pub websocket: Empty,
    pub jetstream: Empty,
    pub tls_timeout: GoFloat,
    pub write_deadline: u64,
    pub start: String,
    pub now: String,
    pub uptime: String,
    pub mem: u64,
    pub cores: usize,
    pub gomaxprocs: usize,
    pub cpu: GoFloat,
    pub connections: u64,
    pub total_connections: u64,
    pub routes: u32,
    pub remotes: u32,
    pub leafnodes: u32,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub slow_consumers: u64,
    pub subscriptions: u64,
    pub http_req_stats: BTreeMap<String, u64>,
    pub config_load_time: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub system_account: String,
}

/// An options block of a subsystem this server does not have: `{}`.
#[derive(Serialize, Default)]
pub struct Empty {}

/// What `/varz` shows beyond the options and the shards' totals.
pub struct VarzExtras {
    pub http_host: String,
    pub http_port: u16,
    pub https_port: u16,
    pub http_base_path: String,
    pub mem: u64,
    pub cpu: f64,
    pub http_req_stats: BTreeMap<String, u64>,
}

pub fn varz(shared: &Shared, reports: &[ShardReport], extras: VarzExtras) -> Varz {
    let snapshot = shared.snapshot();
    let opts = &snapshot.opts;
    let totals = server_totals(reports);
    let now = SystemTime::now();
    let start = shared.monitor.start;
    let tls_timeout = snapshot
        .tls
        .as_ref()
        .map_or(DEFAULT_TLS_TIMEOUT_SECS, |t| t.timeout.as_secs_f64());
    Varz {
        server_id: shared.server_id.clone(),
        server_name: opts
            .server_name
            .clone()
            .unwrap_or_else(|| shared.server_id.clone()),
        version: COMPAT_VERSION.to_string(),
        proto: 1,
        go: concat!("ringnats-", env!("CARGO_PKG_VERSION")).to_string(),
        host: opts.host.clone(),
        port: shared.listen_addr.port(),
        auth_required: snapshot.auth.auth_required(),
        tls_required: snapshot.tls.is_some(),
        tls_verify: snapshot.tls.as_ref().is_some_and(|t| t.verify),
        max_connections: opts.max_connections,
        max_subscriptions: opts.max_subscriptions,
        ping_interval: nanos(opts.ping_interval),
        ping_max: opts.ping_max,
        http_host: extras.http_host,
        http_port: extras.http_port,
        http_base_path: extras.http_base_path,
        https_port: extras.https_port,
        auth_timeout: GoFloat(snapshot.auth.timeout().as_secs_f64()),
        max_control_line: opts.max_control_line,
        max_payload: opts.max_payload,
        max_pending: opts.max_pending,
        cluster: Empty {},
        gateway: Empty {},
        leaf: Empty {},
        mqtt: Empty {},
        websocket: Empty {},
        jetstream: Empty {},
        tls_timeout: GoFloat(tls_timeout),
        write_deadline: nanos(opts.write_deadline),
        start: rfc3339_nano(start),
        now: rfc3339_nano(now),
        uptime: uptime(now.duration_since(start).unwrap_or_default()),
        mem: extras.mem,
        cores: crate::shard::pin::allowed_cpus().len().max(1),
        gomaxprocs: shared.shard_count,
        cpu: GoFloat(extras.cpu),
        connections: totals.connections,
        total_connections: totals.total_connections,
        routes: 0,
        remotes: 0,
        leafnodes: 0,
        in_msgs: totals.in_msgs,
        out_msgs: totals.out_msgs,
        in_bytes: totals.in_bytes,
        out_bytes: totals.out_bytes,
        slow_consumers: totals.slow_consumers,
        subscriptions: totals.subscriptions,
        http_req_stats: extras.http_req_stats,
        config_load_time: rfc3339_nano(shared.monitor.config_load_time()),
        system_account: system_account_name(shared),
    }
}

// ---- /connz --------------------------------------------------------------------------------

#[derive(Serialize)]
pub struct Connz {
    pub server_id: String,
    pub now: String,
    pub num_connections: usize,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub connections: Vec<ConnJson>,
}

#[derive(Serialize)]
pub struct ConnJson {
    pub cid: u64,
    pub kind: &'static str,
    #[serde(rename = "type")]
    pub kind_type: &'static str,
    pub ip: String,
    pub port: u16,
    pub start: String,
    pub last_activity: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub rtt: String,
    pub uptime: String,
    pub idle: String,
    pub pending_bytes: usize,
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
    pub subscriptions: u32,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<&'static str>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub authorized_user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list_detail: Vec<SubJson>,
}

/// `/connz` options that shape the answer on this side (the shards apply the filters).
pub struct ConnzView {
    pub filter: ConnFilter,
    pub offset: usize,
    pub limit: usize,
    pub auth: bool,
}

pub fn connz(shared: &Shared, reports: Vec<ShardReport>, view: &ConnzView) -> Connz {
    let now = SystemTime::now();
    let total: usize = reports.iter().map(|r| r.conns_matched).sum();
    let mut conns: Vec<ConnInfo> = reports.into_iter().flat_map(|r| r.conns).collect();
    let sort = view.filter.sort;
    conns.sort_by(|a, b| sort.compare(a, b));
    let listed: Vec<ConnJson> = conns
        .into_iter()
        .skip(view.offset)
        .take(view.limit)
        .map(|c| conn_json(c, now, view))
        .collect();
    Connz {
        server_id: shared.server_id.clone(),
        now: rfc3339_nano(now),
        num_connections: listed.len(),
        total,
        offset: view.offset,
        limit: view.limit,
        connections: listed,
    }
}

fn conn_json(c: ConnInfo, now: SystemTime, view: &ConnzView) -> ConnJson {
    // A closed connection's uptime and idle time stop at its close (nats-server fills them then).
    let until = c.stop.unwrap_or(now);
    let (mut list, mut detail) = (Vec::new(), Vec::new());
    match view.filter.subs {
        SubsWanted::None => {}
        SubsWanted::Subjects => list = c.subs.into_iter().map(|s| s.subject).collect(),
        SubsWanted::Detail => detail = c.subs.into_iter().map(sub_json_in_conn).collect(),
    }
    let (authorized_user, account) = if view.auth {
        let account = if c.account == GLOBAL_ACCOUNT {
            String::new()
        } else {
            c.account
        };
        (c.user, account)
    } else {
        (String::new(), String::new())
    };
    ConnJson {
        cid: c.cid,
        kind: "Client",
        kind_type: "nats",
        ip: c.peer.ip().to_string(),
        port: c.peer.port(),
        start: rfc3339_nano(c.start),
        last_activity: rfc3339_nano(c.last_activity),
        stop: c.stop.map(rfc3339_nano),
        reason: c.reason,
        rtt: rtt(c.rtt),
        uptime: uptime(until.duration_since(c.start).unwrap_or_default()),
        idle: uptime(until.duration_since(c.last_activity).unwrap_or_default()),
        pending_bytes: c.pending_bytes,
        in_msgs: c.in_msgs,
        out_msgs: c.out_msgs,
        in_bytes: c.in_bytes,
        out_bytes: c.out_bytes,
        subscriptions: c.subs_count,
        name: c.name,
        lang: c.lang,
        version: c.version,
        tls_version: c.tls_version,
        authorized_user,
        account,
        subscriptions_list: list,
        subscriptions_list_detail: detail,
    }
}

// ---- /subsz --------------------------------------------------------------------------------

/// nats-server `SublistStats`.
#[derive(Serialize, Clone)]
pub struct SublistStats {
    pub num_subscriptions: u64,
    pub num_cache: u64,
    pub num_inserts: u64,
    pub num_removes: u64,
    pub num_matches: u64,
    pub cache_hit_rate: GoFloat,
    pub max_fanout: u64,
    pub avg_fanout: GoFloat,
}

#[derive(Serialize)]
pub struct SubJson {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub account: String,
    pub subject: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qgroup: Option<String>,
    pub sid: String,
    pub msgs: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
    pub cid: u64,
}

#[derive(Serialize)]
pub struct Subsz {
    pub server_id: String,
    pub now: String,
    #[serde(flatten)]
    pub stats: SublistStats,
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_list: Vec<SubJson>,
}

/// nats-server `Sublist.Stats` summed over the shards as its `SublistStats.add` sums
/// accounts: `num_matches` counts subject index lookups (ringnats has no per-client cache in
/// front of the index, so every routed publish is one), `cache_hit_rate` the share the match
/// cache answered, and the fanouts are over the cached results (each shard's cache holds its
/// own subscribers).
pub fn sublist_stats(totals: &ShardTotals) -> SublistStats {
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    SublistStats {
        num_subscriptions: totals.subscriptions,
        num_cache: totals.cache_len,
        num_inserts: totals.sub_inserts,
        num_removes: totals.sub_removes,
        num_matches: totals.matches,
        cache_hit_rate: GoFloat(ratio(totals.cache_hits, totals.matches)),
        max_fanout: totals.fanout_max,
        avg_fanout: GoFloat(ratio(totals.fanout_total, totals.cache_len)),
    }
}

/// `/subsz`: the stats alone unless subscriptions were asked for and found (as nats-server),
/// as indented JSON.
pub fn subsz(
    shared: &Shared,
    reports: Vec<ShardReport>,
    offset: usize,
    limit: usize,
) -> Result<String, String> {
    let stats = sublist_stats(&server_totals(&reports));
    let subs: Vec<SubInfo> = reports.into_iter().flat_map(|r| r.subs).collect();
    let listed: Vec<SubJson> = subs
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(sub_json)
        .collect();
    let text = if listed.is_empty() {
        serde_json::to_string_pretty(&stats)
    } else {
        let subsz = Subsz {
            server_id: shared.server_id.clone(),
            now: rfc3339_nano(SystemTime::now()),
            stats,
            total: listed.len(),
            offset,
            limit,
            subscriptions_list: listed,
        };
        serde_json::to_string_pretty(&subsz)
    };
    text.map_err(|e| e.to_string())
}

fn sub_json(s: SubInfo) -> SubJson {
    SubJson {
        account: s.account,
        subject: s.subject,
        qgroup: s.queue,
        sid: s.sid,
        msgs: s.msgs,
        max: s.max,
        cid: s.cid,
    }
}

/// Under a connection nats-server leaves the account out (`newClientSubDetail`).
fn sub_json_in_conn(s: SubInfo) -> SubJson {
    SubJson {
        account: String::new(),
        ..sub_json(s)
    }
}

// ---- /accountz, /accstatz ------------------------------------------------------------------

#[derive(Serialize)]
pub struct Accountz {
    pub server_id: String,
    pub now: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub system_account: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_detail: Option<AccountInfo>,
}

#[derive(Serialize)]
pub struct AccountInfo {
    pub account_name: String,
    pub update_time: String,
    #[serde(skip_serializing_if = "is_false")]
    pub is_system: bool,
    pub expired: bool,
    pub complete: bool,
    pub jetstream_enabled: bool,
    pub leafnode_connections: u32,
    pub client_connections: u64,
    pub subscriptions: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exports: Vec<ExportJson>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<ImportJson>,
    pub sublist_stats: SublistStats,
}

#[derive(Serialize)]
pub struct ExportJson {
    pub subject: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approved_accounts: Vec<String>,
}

#[derive(Serialize)]
pub struct ImportJson {
    pub subject: String,
    pub account: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub local_subject: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub invalid: bool,
    pub share: bool,
    pub tracking: bool,
}

/// `/accountz`, or `/accountz?acc=NAME`; `Err` carries nats-server's 400 text.
pub fn accountz(
    shared: &Shared,
    reports: &[ShardReport],
    account: Option<&str>,
) -> Result<Accountz, String> {
    let snapshot = shared.snapshot();
    let accounts = snapshot.auth.accounts();
    let mut out = Accountz {
        server_id: shared.server_id.clone(),
        now: rfc3339_nano(SystemTime::now()),
        system_account: system_account_name(shared),
        accounts: Vec::new(),
        account_detail: None,
    };
    let Some(name) = account else {
        out.accounts = accounts.iter().map(|a| a.name.clone()).collect();
        return Ok(out);
    };
    let Some(id) = snapshot.auth.account_id(name) else {
        return Err(format!("Account {name} does not exist"));
    };
    let def = &accounts[id as usize];
    let totals = account_totals(reports)
        .get(id as usize)
        .copied()
        .unwrap_or_default();
    let name_of = |id: u32| {
        accounts
            .get(id as usize)
            .map_or_else(String::new, |a| a.name.clone())
    };
    let stats = ShardTotals {
        subscriptions: totals.subscriptions,
        ..ShardTotals::default()
    };
    out.account_detail = Some(AccountInfo {
        account_name: def.name.clone(),
        update_time: rfc3339_nano(shared.monitor.config_load_time()),
        is_system: id == snapshot.auth.system_account(),
        expired: false,
        complete: true,
        jetstream_enabled: false,
        leafnode_connections: 0,
        client_connections: totals.connections,
        subscriptions: totals.subscriptions,
        exports: def
            .exports
            .iter()
            .map(|e| ExportJson {
                subject: e.subject.clone(),
                kind: kind_word(e.kind),
                approved_accounts: e.accounts.iter().flatten().map(|&a| name_of(a)).collect(),
            })
            .collect(),
        imports: def
            .imports
            .iter()
            .map(|i| ImportJson {
                subject: i.subject.clone(),
                account: name_of(i.account),
                local_subject: i.to.clone().unwrap_or_default(),
                kind: kind_word(i.kind),
                invalid: false,
                share: false,
                tracking: false,
            })
            .collect(),
        sublist_stats: sublist_stats(&stats),
    });
    Ok(out)
}

#[derive(Serialize)]
pub struct AccountStatz {
    pub server_id: String,
    pub now: String,
    pub account_statz: Vec<AccountStat>,
}

/// nats-server `AccountStat` (also the body of `$SYS.ACCOUNT.<acc>.SERVER.CONNS`).
#[derive(Serialize, Clone)]
pub struct AccountStat {
    pub acc: String,
    pub conns: u64,
    pub leafnodes: u64,
    pub total_conns: u64,
    pub sent: DataStats,
    pub received: DataStats,
    pub slow_consumers: u64,
}

#[derive(Serialize, Clone, Copy, Default)]
pub struct DataStats {
    pub msgs: u64,
    pub bytes: u64,
}

pub fn account_stat(name: &str, t: &AccountTotals) -> AccountStat {
    AccountStat {
        acc: name.to_string(),
        conns: t.connections,
        leafnodes: 0,
        total_conns: t.connections,
        sent: DataStats {
            msgs: t.out_msgs,
            bytes: t.out_bytes,
        },
        received: DataStats {
            msgs: t.in_msgs,
            bytes: t.in_bytes,
        },
        slow_consumers: t.slow_consumers,
    }
}

/// `/accstatz`: accounts with connections (all with `unused`), or those named in `accs`.
pub fn accstatz(
    shared: &Shared,
    reports: &[ShardReport],
    unused: bool,
    accs: &[String],
) -> AccountStatz {
    let snapshot = shared.snapshot();
    let totals = account_totals(reports);
    let account_statz = snapshot
        .auth
        .accounts()
        .iter()
        .enumerate()
        .filter(|(_, a)| accs.is_empty() || accs.contains(&a.name))
        .map(|(id, a)| (a, totals.get(id).copied().unwrap_or_default()))
        .filter(|(_, t)| unused || t.connections > 0)
        .map(|(a, t)| account_stat(&a.name, &t))
        .collect();
    AccountStatz {
        server_id: shared.server_id.clone(),
        now: rfc3339_nano(SystemTime::now()),
        account_statz,
    }
}

// ---- the endpoints of absent features ------------------------------------------------------

/// `/routez`, `/leafz`, `/gatewayz`, `/jsz` of a server with no cluster, leaf nodes, gateways
/// or JetStream.
pub fn absent_feature(shared: &Shared, endpoint: &str) -> AbsentFeature {
    let server_id = shared.server_id.clone();
    let now = rfc3339_nano(SystemTime::now());
    match endpoint {
        "routez" => AbsentFeature::Routez {
            server_id,
            now,
            num_routes: 0,
            routes: [],
        },
        "leafz" => AbsentFeature::Leafz {
            server_id,
            now,
            leafnodes: 0,
            leafs: None,
        },
        "gatewayz" => AbsentFeature::Gatewayz {
            server_id,
            now,
            outbound_gateways: Empty {},
            inbound_gateways: Empty {},
        },
        _ => AbsentFeature::Jsz(Box::new(Jsz {
            server_id,
            now,
            disabled: true,
            ..Jsz::default()
        })),
    }
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum AbsentFeature {
    Routez {
        server_id: String,
        now: String,
        num_routes: u32,
        routes: [u8; 0],
    },
    Leafz {
        server_id: String,
        now: String,
        leafnodes: u32,
        leafs: Option<[u8; 0]>,
    },
    Gatewayz {
        server_id: String,
        now: String,
        outbound_gateways: Empty,
        inbound_gateways: Empty,
    },
    Jsz(Box<Jsz>),
}

/// nats-server `JSInfo` of a server without JetStream.
#[derive(Serialize, Default)]
pub struct Jsz {
    pub server_id: String,
    pub now: String,
    pub disabled: bool,
    pub config: JszConfig,
    pub memory: u64,
    pub storage: u64,
    pub reserved_memory: u64,
    pub reserved_storage: u64,
    pub accounts: u64,
    pub ha_assets: u64,
    pub api: JszApi,
    pub streams: u64,
    pub consumers: u64,
    pub messages: u64,
    pub bytes: u64,
}

#[derive(Serialize, Default)]
pub struct JszConfig {
    pub max_memory: u64,
    pub max_storage: u64,
}

#[derive(Serialize, Default)]
pub struct JszApi {
    pub total: u64,
    pub errors: u64,
}

/// nats-server `HealthStatus`.
#[derive(Serialize)]
pub struct HealthStatus {
    pub status: &'static str,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

// ---- helpers of this module ----------------------------------------------------------------

fn system_account_name(shared: &Shared) -> String {
    let snapshot = shared.snapshot();
    let id = snapshot.auth.system_account();
    snapshot
        .auth
        .accounts()
        .get(id as usize)
        .map_or_else(String::new, |a| a.name.clone())
}

fn kind_word(kind: ExportKind) -> &'static str {
    match kind {
        ExportKind::Stream => "stream",
        ExportKind::Service => "service",
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}
