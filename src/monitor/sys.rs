//! The system account's requests and periodic events, worked on the monitoring thread:
//! `$SYS.REQ.SERVER.PING[.<KIND>]`, `$SYS.REQ.SERVER.<id>.<KIND>`,
//! `$SYS.REQ.ACCOUNT.<acc>.<KIND>`, `$SYS.REQ.ACCOUNT.PING.<CONNZ|STATZ>`, `$SYS.REQ.USER.INFO`,
//! the account connection counts after a connect or disconnect, and the `STATSZ` heartbeat.
//!
//! Cold: per request or event. A shard hands the request over (`SysWork`) and goes on; this
//! thread asks every shard for what the answer needs, as the HTTP endpoints do, builds nats-
//! server's `{"server":…,"data":…}` reply, and hands it to the requester's shard to publish
//! (`QueryKind::Publish`). Invariant: no shard waits for an answer here.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::ids::ShardId;
use crate::monitor::endpoints::{self, ConnzView, DEFAULT_LIST_LIMIT, DataStats, GoFloat};
use crate::monitor::events::{
    ACCOUNT_CONNS_TYPE, AccountConnsEvent, ApiError, ApiResponse, Statsz, StatszMsg, event_id,
    server_block,
};
use crate::monitor::gotime::rfc3339_nano;
use crate::monitor::process::CpuSampler;
use crate::monitor::query::{
    ConnFilter, QueryKind, ShardReport, SortKey, StateFilter, SubFilter, SubsWanted,
};
use crate::shared::Shared;

/// How often `$SYS.SERVER.<id>.STATSZ` is published while someone could listen.
pub const STATSZ_INTERVAL: Duration = Duration::from_secs(10);
/// The least time between two rebuilds for an expired activation token, so a rebuild that
/// fails (and leaves the expired token in place) is retried, not spun on.
const ACTIVATION_RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest single wait for an activation expiry: a later `exp` (a JWT may say year
/// 292277026596) is waited for in steps, so no deadline overflows a clock or a timer wheel.
const ACTIVATION_WAIT_MAX: Duration = Duration::from_secs(3600);

/// Work a shard hands to the monitoring thread.
pub enum SysWork {
    /// A `$SYS.REQ.` publish with a reply subject.
    Request {
        shard: ShardId,
        /// The requester's account; replies are published there.
        account: u32,
        /// Whether that is the system account (else only account-scoped requests arrive).
        system: bool,
        user: String,
        subject: String,
        reply: Vec<u8>,
        payload: Vec<u8>,
    },
    /// A client of `account` connected or disconnected: publish the account's count.
    AccountConns { shard: ShardId, account: u32 },
}

/// A message for a shard to publish: a reply or an event.
pub struct SysPublish {
    pub account: u32,
    pub subject: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Works system-account requests until the channel closes; publishes `STATSZ` periodically.
pub async fn run(shared: Arc<Shared>, mut work: tokio::sync::mpsc::UnboundedReceiver<SysWork>) {
    let mut cpu = CpuSampler::new();
    let process_start = std::time::Instant::now();
    let mut heartbeat = tokio::time::interval(STATSZ_INTERVAL);
    heartbeat.tick().await;
    // The full resolver's directory poll (read once: `resolver` cannot change on a reload).
    let mut directory = super::claims::DirectoryPoll::default();
    let mut poll = super::claims::DirectoryPoll::interval(&shared).map(|every| {
        let mut poll = tokio::time::interval(every);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll
    });
    let mut activation_floor = tokio::time::Instant::now();
    loop {
        // Read again each turn: an update or reload may have moved it.
        let activation_tick = async {
            match super::claims::activation_expiry_in(&shared) {
                Some(left) => {
                    let at = tokio::time::Instant::now() + left.min(ACTIVATION_WAIT_MAX);
                    tokio::time::sleep_until(at.max(activation_floor)).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let poll_tick = async {
            match poll.as_mut() {
                Some(poll) => {
                    poll.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = activation_tick => {
                activation_floor = tokio::time::Instant::now() + ACTIVATION_RETRY_MIN;
                if !shared.is_shutting_down() {
                    super::claims::expire_activations(&shared);
                }
            }
            _ = poll_tick => {
                if !shared.is_shutting_down() {
                    directory.poll(&shared);
                }
            }
            item = work.recv() => {
                let Some(item) = item else { return };
                handle(&shared, item, &mut cpu, process_start).await;
            }
            _ = heartbeat.tick() => {
                if shared.is_shutting_down() {
                    continue;
                }
                let subject = format!("$SYS.SERVER.{}.STATSZ", shared.server_id);
                let msg = statsz_msg(&shared, &mut cpu, process_start).await;
                publish_system(&shared, ShardId(0), subject, &msg);
            }
        }
    }
}

async fn handle(
    shared: &Arc<Shared>,
    work: SysWork,
    cpu: &mut CpuSampler,
    start: std::time::Instant,
) {
    match work {
        SysWork::AccountConns { shard, account } => {
            let reports = shared.monitor.collect(QueryKind::Totals).await;
            let totals = endpoints::account_totals(&reports);
            let snapshot = shared.snapshot();
            let Some(def) = snapshot.auth.accounts().get(account as usize) else {
                return;
            };
            let stat = endpoints::account_stat(
                &def.name,
                &totals.get(account as usize).copied().unwrap_or_default(),
            );
            let id = event_id();
            let timestamp = rfc3339_nano(SystemTime::now());
            for subject in [
                format!("$SYS.SERVER.ACCOUNT.{}.CONNS", def.name),
                format!("$SYS.ACCOUNT.{}.SERVER.CONNS", def.name),
            ] {
                let event = AccountConnsEvent {
                    kind: ACCOUNT_CONNS_TYPE,
                    id: id.clone(),
                    timestamp: timestamp.clone(),
                    server: server_block(shared),
                    stat: stat.clone(),
                };
                publish_system(shared, shard, subject, &event);
            }
        }
        SysWork::Request {
            shard,
            account,
            system,
            user,
            subject,
            reply,
            payload,
        } => {
            if system {
                let claims = shared
                    .snapshot()
                    .auth
                    .operator()
                    .and_then(|o| o.resolver().claims_request(subject.as_bytes()));
                if let Some(claims) = claims {
                    let body = super::claims::answer(shared, &claims, &payload).await;
                    if let (Some(body), false) = (body, reply.is_empty()) {
                        let publish = SysPublish {
                            account,
                            subject: reply,
                            payload: body,
                        };
                        shared.monitor.publish(shard, publish);
                    }
                    return;
                }
            }
            let request = Request {
                account,
                system,
                user,
                subject,
                payload,
            };
            if let Some(body) = answer(shared, &request, cpu, start).await {
                let publish = SysPublish {
                    account,
                    subject: reply,
                    payload: body,
                };
                shared.monitor.publish(shard, publish);
            }
        }
    }
}

struct Request {
    account: u32,
    system: bool,
    user: String,
    subject: String,
    payload: Vec<u8>,
}

/// The options a request may carry (nats-server `ConnzEventOptions` and friends, with
/// `EventFilterOptions`); unknown fields are ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RequestOptions {
    server_name: String,
    host: String,
    // connz
    sort: String,
    auth: bool,
    subscriptions: bool,
    subscriptions_detail: bool,
    offset: i64,
    limit: i64,
    cid: u64,
    state: i64,
    user: String,
    acc: String,
    // subsz
    test: String,
    // accountz
    account: String,
    accounts: Vec<String>,
    include_unused: bool,
}

/// The reply to one request, or `None` when this server is filtered out or the request is
/// not one we answer.
async fn answer(
    shared: &Arc<Shared>,
    req: &Request,
    cpu: &mut CpuSampler,
    start: std::time::Instant,
) -> Option<Vec<u8>> {
    let opts: RequestOptions = if req.payload.iter().all(u8::is_ascii_whitespace) {
        RequestOptions::default()
    } else {
        match serde_json::from_slice(&req.payload) {
            Ok(opts) => opts,
            Err(err) => return Some(error_reply(shared, 400, &err.to_string())),
        }
    };
    if !filters_match(shared, &opts) {
        return None;
    }
    let snapshot = shared.snapshot();
    let account_name = |id: u32| {
        snapshot
            .auth
            .accounts()
            .get(id as usize)
            .map_or_else(String::new, |a| a.name.clone())
    };
    let requester = account_name(req.account);
    let tokens: Vec<&str> = req.subject.split('.').collect();
    // $SYS.REQ.<SERVER|ACCOUNT|USER>.<…>
    let (scope, target, kind) = match tokens.as_slice() {
        ["$SYS", "REQ", "SERVER", "PING"] => ("SERVER", "PING", "STATSZ_PING"),
        ["$SYS", "REQ", "SERVER", target, kind] => ("SERVER", *target, *kind),
        ["$SYS", "REQ", "ACCOUNT", target, kind] => ("ACCOUNT", *target, *kind),
        ["$SYS", "REQ", "USER", "INFO"] => ("USER", "", "INFO"),
        _ => return None,
    };
    if scope == "SERVER" && target != "PING" && target != shared.server_id {
        return None;
    }
    // Outside the system account a request is about the requester's own account.
    let scoped_account = if !req.system {
        Some(requester.clone())
    } else if scope == "ACCOUNT" && target != "PING" {
        Some(target.to_string())
    } else if scope == "ACCOUNT" {
        Some(requester.clone())
    } else {
        None
    };
    let body = match (scope, kind) {
        (_, "STATSZ_PING") | ("SERVER", "STATSZ") => {
            return serde_json::to_vec(&statsz_msg(shared, cpu, start).await).ok();
        }
        ("USER", _) => {
            let data = serde_json::json!({"user": req.user, "account": requester});
            data_reply(shared, data)
        }
        (_, "CONNZ") => {
            let view = connz_view(&opts, scoped_account)?;
            let filter = Arc::new(view.filter.clone());
            let reports = shared.monitor.collect(QueryKind::Conns(filter)).await;
            data_reply(shared, endpoints::connz(shared, reports, &view))
        }
        (_, "SUBSZ") => {
            let filter = SubFilter {
                detail: opts.subscriptions,
                test: (!opts.test.is_empty()).then(|| opts.test.clone()),
                account: scoped_account.or_else(|| non_empty(&opts.account)),
            };
            let offset = opts.offset.max(0) as usize;
            let limit = positive_or(opts.limit, DEFAULT_LIST_LIMIT);
            let reports = shared
                .monitor
                .collect(QueryKind::Subs(Arc::new(filter)))
                .await;
            let text = endpoints::subsz(shared, reports, offset, limit).ok()?;
            let data: serde_json::Value = serde_json::from_str(&text).ok()?;
            data_reply(shared, data)
        }
        ("SERVER", "VARZ") => {
            let reports = shared.monitor.collect(QueryKind::Totals).await;
            let (mem, cpu_percent) = cpu.sample(start);
            let extras = endpoints::VarzExtras {
                http_host: shared.options().host.clone(),
                http_port: 0,
                https_port: 0,
                http_base_path: String::new(),
                mem,
                cpu: cpu_percent,
                http_req_stats: Default::default(),
            };
            data_reply(shared, endpoints::varz(shared, &reports, extras))
        }
        ("SERVER", "ACCOUNTZ") | ("ACCOUNT", "INFO") => {
            let reports = shared.monitor.collect(QueryKind::Totals).await;
            let acc = if kind == "INFO" {
                scoped_account
            } else {
                non_empty(&opts.account)
            };
            match endpoints::accountz(shared, &reports, acc.as_deref()) {
                Ok(accountz) if kind == "INFO" => data_reply(shared, accountz.account_detail),
                Ok(accountz) => data_reply(shared, accountz),
                Err(text) => error_reply(shared, 400, &text),
            }
        }
        ("ACCOUNT", "CONNS") | ("ACCOUNT", "STATZ") => {
            let reports = shared.monitor.collect(QueryKind::Totals).await;
            let accs: Vec<String> = scoped_account.into_iter().collect();
            let statz = endpoints::accstatz(shared, &reports, true, &accs);
            if kind == "CONNS" {
                let stat = statz.account_statz.into_iter().next()?;
                let event = AccountConnsEvent {
                    kind: ACCOUNT_CONNS_TYPE,
                    id: event_id(),
                    timestamp: rfc3339_nano(SystemTime::now()),
                    server: server_block(shared),
                    stat,
                };
                return serde_json::to_vec(&event).ok();
            }
            data_reply(shared, statz)
        }
        ("SERVER", "HEALTHZ") => {
            let ok = !shared.is_shutting_down()
                && shared.monitor.health_error().is_none()
                && shared.lame_duck_phase() == crate::shared::LameDuckPhase::Off;
            let data = if ok {
                serde_json::json!({"status": "ok"})
            } else {
                serde_json::json!({"status": "unavailable"})
            };
            data_reply(shared, data)
        }
        ("SERVER", kind @ ("ROUTEZ" | "LEAFZ" | "GATEWAYZ" | "JSZ")) => {
            let endpoint = kind.to_ascii_lowercase();
            data_reply(shared, endpoints::absent_feature(shared, &endpoint))
        }
        _ => return None,
    };
    Some(body)
}

/// nats-server `EventFilterOptions`: a request naming another server is not for us.
fn filters_match(shared: &Shared, opts: &RequestOptions) -> bool {
    let options = shared.options();
    let name = options.server_name.as_deref().unwrap_or(&shared.server_id);
    (opts.server_name.is_empty() || name.contains(opts.server_name.as_str()))
        && (opts.host.is_empty() || options.host.contains(opts.host.as_str()))
}

fn connz_view(opts: &RequestOptions, account: Option<String>) -> Option<ConnzView> {
    let sort = SortKey::parse(&opts.sort)?;
    let subs = if opts.subscriptions_detail {
        SubsWanted::Detail
    } else if opts.subscriptions {
        SubsWanted::Subjects
    } else {
        SubsWanted::None
    };
    let state = match opts.state {
        1 => StateFilter::Closed,
        2 => StateFilter::All,
        _ => StateFilter::Open,
    };
    let offset = opts.offset.max(0) as usize;
    let cid = (opts.cid > 0).then_some(opts.cid);
    let limit = if cid.is_some() {
        1
    } else {
        positive_or(opts.limit, DEFAULT_LIST_LIMIT)
    };
    let filter = ConnFilter {
        state,
        cid,
        account: account.or_else(|| non_empty(&opts.acc)),
        user: non_empty(&opts.user),
        subs,
        sort,
        keep: offset.saturating_add(limit),
    };
    Some(ConnzView {
        filter,
        offset,
        limit,
        auth: opts.auth,
    })
}

async fn statsz_msg(
    shared: &Arc<Shared>,
    cpu: &mut CpuSampler,
    start: std::time::Instant,
) -> StatszMsg {
    let reports: Vec<ShardReport> = shared.monitor.collect(QueryKind::Totals).await;
    let totals = endpoints::server_totals(&reports);
    let accounts = endpoints::account_totals(&reports);
    let (mem, cpu_percent) = cpu.sample(start);
    StatszMsg {
        server: server_block(shared),
        statsz: Statsz {
            start: rfc3339_nano(shared.monitor.start),
            mem,
            cores: crate::shard::pin::allowed_cpus().len().max(1),
            cpu: GoFloat(cpu_percent),
            connections: totals.connections,
            total_connections: totals.total_connections,
            active_accounts: accounts.iter().filter(|a| a.connections > 0).count(),
            subscriptions: totals.subscriptions,
            sent: DataStats {
                msgs: totals.out_msgs,
                bytes: totals.out_bytes,
            },
            received: DataStats {
                msgs: totals.in_msgs,
                bytes: totals.in_bytes,
            },
            slow_consumers: totals.slow_consumers,
            active_servers: 1,
        },
    }
}

fn data_reply<T: serde::Serialize>(shared: &Shared, data: T) -> Vec<u8> {
    let response = ApiResponse {
        server: server_block(shared),
        data: Some(data),
        error: None,
    };
    serde_json::to_vec(&response).unwrap_or_default()
}

fn error_reply(shared: &Shared, code: u16, description: &str) -> Vec<u8> {
    let response: ApiResponse<()> = ApiResponse {
        server: server_block(shared),
        data: None,
        error: Some(ApiError {
            code,
            description: description.to_string(),
        }),
    };
    serde_json::to_vec(&response).unwrap_or_default()
}

/// Publishes an event into the system account through `shard`.
fn publish_system<T: serde::Serialize>(
    shared: &Shared,
    shard: ShardId,
    subject: String,
    event: &T,
) {
    let Ok(payload) = serde_json::to_vec(event) else {
        return;
    };
    let publish = SysPublish {
        account: shared.snapshot().auth.system_account(),
        subject: subject.into_bytes(),
        payload,
    };
    shared.monitor.publish(shard, publish);
}

/// `$SYS.SERVER.<id>.SHUTDOWN`, published through shard 0 before the shards stop.
pub fn publish_shutdown(shared: &Shared) {
    let subject = format!("$SYS.SERVER.{}.SHUTDOWN", shared.server_id);
    publish_system(shared, ShardId(0), subject, &server_block(shared));
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

fn positive_or(n: i64, default: usize) -> usize {
    if n <= 0 {
        default
    } else {
        usize::try_from(n).unwrap_or(default)
    }
}
