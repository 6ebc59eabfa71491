//! The monitoring HTTP server: hyper on a current-thread tokio runtime, on a thread of its own.
//!
//! Cold: per monitoring request. Why hyper: it is the most used and best kept Rust HTTP
//! implementation, and one async thread serves any number of slow or idle clients (a header
//! read timeout drops the stuck ones) without a thread per connection.
//! Invariant: nothing here runs on a shard or holds anything a shard waits for; at most
//! `HTTP_CONNS_MAX` connections are served at once, the others are closed on accept.
//!
//! `https_port` serves the same endpoints over TLS with the server's `tls {}` certificate
//! (tokio-rustls), asking no client certificate, as nats-server's `getMonitoringTLSConfig`.
//! Each handshake takes the certificate of the current configuration, so a reload that
//! changes it applies to the next monitoring connection, and must end within
//! `HEADER_READ_TIMEOUT`.
//!
//! The thread runs at nice `MONITOR_NICE`: on a core it shares with a busy shard it gets a
//! small share. The heavy answers (`/connz` and `/subsz`: over 10,000 connections a page of
//! `/connz?subs=1` is half a megabyte of JSON) are built on a second thread, `monitor-render`,
//! under `SCHED_IDLE`: a shard that wants its core back takes it at once, and on a core the
//! shards keep busy a poll takes its time instead of theirs (the scheduler still gives an idle
//! thread a sliver, so it is slowed, not stopped). `/healthz` and the small endpoints never
//! wait for it: a liveness probe is answered at nice 19 whatever a poll is doing. At most
//! `RENDERS_MAX` heavy requests are in progress at once (a request waits for its turn before it
//! asks the shards), which bounds what waiting renders hold.
// Lowering the thread's priority takes two libc calls; each names its SAFETY argument.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};

use crate::config::ServerOptions;
use crate::monitor::endpoints::{self, ConnzView, DEFAULT_LIST_LIMIT, HealthStatus, VarzExtras};
use crate::monitor::process::CpuSampler;
use crate::monitor::query::{ConnFilter, QueryKind, SortKey, StateFilter, SubFilter, SubsWanted};
use crate::shared::Shared;
use crate::tls::TlsSettings;

/// The monitoring thread's nice value. Not `SCHED_IDLE` (as the blocking pool): that starves
/// the thread outright on a saturated core, and a liveness probe on `/healthz` must still get
/// its answer.
const MONITOR_NICE: libc::c_int = 19;

/// Monitoring connections served at once; more are closed on accept.
const HTTP_CONNS_MAX: usize = 256;
/// Heavy requests (`/connz`, `/subsz`) between asking the shards and sending the answer at
/// once; the others wait for a turn (each holds up to a page of connections per shard).
const RENDERS_MAX: usize = 4;
/// A client must send a request's headers within this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The bound monitoring listener, before its thread starts.
pub struct MonitorListener {
    listener: std::net::TcpListener,
    pub addr: SocketAddr,
    base_path: String,
    http_host: String,
    /// The ports `/varz` reports.
    http_port: u16,
    https_port: u16,
    /// With `https_port`: the TLS config of the start-up configuration (used until the
    /// server runs, and if a reload removes the `tls` block).
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// Errors that keep the monitoring server from starting.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("can't listen on the monitor port: listen tcp {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    /// nats-server's words (`StartMonitoring`).
    #[error("TLS cert and key required for HTTPS")]
    NoTls,
    #[error("can't specify both HTTP ({http}) and HTTPs ({https}) ports")]
    BothPorts { http: i32, https: i32 },
    #[error("monitoring TLS: {0}")]
    Tls(String),
    #[error("cannot start the monitoring thread: {0}")]
    Thread(std::io::Error),
}

/// Binds the monitoring port if the options ask for one (`http_port`, or `https_port` with
/// the server's `tls` settings); an error if it is taken or the options conflict.
pub fn bind(
    opts: &ServerOptions,
    tls: Option<&TlsSettings>,
) -> Result<Option<MonitorListener>, MonitorError> {
    if opts.http_port != 0 && opts.https_port != 0 {
        return Err(MonitorError::BothPorts {
            http: opts.http_port,
            https: opts.https_port,
        });
    }
    let (wanted, tls) = match (opts.http_port, opts.https_port) {
        (0, 0) => return Ok(None),
        (http, 0) => (http, None),
        (_, https) => {
            let tls = tls.ok_or(MonitorError::NoTls)?;
            (
                https,
                Some(tls.monitoring_config().map_err(MonitorError::Tls)?),
            )
        }
    };
    let host = opts.http_host.clone().unwrap_or_else(|| opts.host.clone());
    // -1 (random) and anything out of range bind a free port, as nats-server does for -1.
    let port = u16::try_from(wanted).unwrap_or(0);
    let addr_text = format!("{host}:{port}");
    let listen_err = |source| MonitorError::Listen {
        addr: addr_text.clone(),
        source,
    };
    let addr = resolve(&host, port).map_err(listen_err)?;
    let listener = listener_socket(addr).map_err(listen_err)?;
    let addr = listener.local_addr().map_err(listen_err)?;
    let (http_port, https_port) = match tls {
        None => (addr.port(), 0),
        Some(_) => (0, addr.port()),
    };
    Ok(Some(MonitorListener {
        listener,
        addr,
        base_path: normalize_base_path(&opts.http_base_path),
        http_host: host,
        http_port,
        https_port,
        tls,
    }))
}

impl MonitorListener {
    /// `"https"` or `"http"`, for the start-up line.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }
}

/// Filled in once the shards are up; until then `/healthz` answers 503.
pub type SharedSlot = Arc<OnceLock<Arc<Shared>>>;

/// Starts the monitoring thread: the HTTP endpoints (with a listener) and the system
/// account's requests and events (once `started` delivers the running server). `shared` is
/// set by the caller once the server has started.
pub fn spawn(
    listener: Option<MonitorListener>,
    shared: SharedSlot,
    started: tokio::sync::oneshot::Receiver<Arc<Shared>>,
) -> Result<std::thread::JoinHandle<()>, MonitorError> {
    std::thread::Builder::new()
        .name("monitor".into())
        .spawn(move || {
            lower_priority();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    tracing::error!("monitoring: cannot start its runtime: {err}");
                    return;
                }
            };
            runtime.block_on(async move {
                let sys = async move {
                    let Ok(shared) = started.await else {
                        return;
                    };
                    if let Some(work) = shared.monitor.take_sys_receiver() {
                        crate::monitor::sys::run(shared, work).await;
                    }
                };
                match listener {
                    Some(listener) => {
                        tokio::join!(serve(listener, shared), sys);
                    }
                    None => sys.await,
                }
            });
        })
        .map_err(MonitorError::Thread)
}

/// Sets this thread's nice value to `MONITOR_NICE` (refused: it keeps the default).
fn lower_priority() {
    // SAFETY: a plain syscall; on Linux the nice value is per thread, and `gettid` names this one.
    let tid = unsafe { libc::gettid() };
    let who = libc::id_t::try_from(tid).unwrap_or(0);
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, MONITOR_NICE) } != 0 {
        tracing::debug!("monitoring thread keeps the default priority: setpriority refused");
    }
}

/// Starts the `monitor-render` thread: it runs the heavy answers' jobs one after another under
/// `SCHED_IDLE` (refused: at nice `MONITOR_NICE`, as the monitoring thread). `None` if the
/// thread cannot start.
fn spawn_renderer() -> Option<std::sync::mpsc::Sender<RenderJob>> {
    let (tx, rx) = std::sync::mpsc::channel::<RenderJob>();
    let spawned = std::thread::Builder::new()
        .name("monitor-render".into())
        .spawn(move || {
            idle_priority();
            while let Ok(job) = rx.recv() {
                job();
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(err) => {
            tracing::warn!("monitoring: heavy answers stay on the monitoring thread: {err}");
            None
        }
    }
}

/// Puts this thread under `SCHED_IDLE`; if refused, lowers it to `MONITOR_NICE`.
fn idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain syscall on this thread (pid 0), with a parameter that lives across it.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        tracing::debug!("monitoring render thread: SCHED_IDLE refused");
        lower_priority();
    }
}

/// State of the monitoring thread shared by its connections.
struct State {
    shared: SharedSlot,
    base_path: String,
    http_host: String,
    http_port: u16,
    https_port: u16,
    /// nats-server `httpReqStats`: requests per endpoint path.
    req_stats: Mutex<BTreeMap<String, u64>>,
    cpu: Mutex<CpuSampler>,
    process_start: Instant,
    conns: AtomicUsize,
    /// `https_port`: the start-up TLS config (see `MonitorListener::tls`); `None` for http.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// The `monitor-render` thread's queue; `None` if it could not start (then heavy answers
    /// are built here).
    renderer: Option<std::sync::mpsc::Sender<RenderJob>>,
    /// Turns for heavy requests (`RENDERS_MAX`).
    renders: tokio::sync::Semaphore,
}

/// Work for the `monitor-render` thread.
type RenderJob = Box<dyn FnOnce() + Send>;

async fn serve(listener: MonitorListener, shared: SharedSlot) {
    if let Err(err) = listener.listener.set_nonblocking(true) {
        tracing::error!("monitoring: {err}");
        return;
    }
    let tcp = match tokio::net::TcpListener::from_std(listener.listener) {
        Ok(l) => l,
        Err(err) => {
            tracing::error!("monitoring: {err}");
            return;
        }
    };
    let state = Arc::new(State {
        shared,
        base_path: listener.base_path,
        http_host: listener.http_host,
        http_port: listener.http_port,
        https_port: listener.https_port,
        req_stats: Mutex::new(BTreeMap::new()),
        cpu: Mutex::new(CpuSampler::new()),
        process_start: Instant::now(),
        conns: AtomicUsize::new(0),
        tls: listener.tls,
        renderer: spawn_renderer(),
        renders: tokio::sync::Semaphore::new(RENDERS_MAX),
    });
    loop {
        let (stream, _) = match tcp.accept().await {
            Ok(s) => s,
            Err(err) => {
                tracing::debug!("monitoring: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if state.conns.fetch_add(1, Ordering::Relaxed) >= HTTP_CONNS_MAX {
            state.conns.fetch_sub(1, Ordering::Relaxed);
            drop(stream);
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move {
            match state.tls_config() {
                None => serve_connection(&state, stream).await,
                Some(config) => {
                    let acceptor = tokio_rustls::TlsAcceptor::from(config);
                    let handshake =
                        tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls)) => serve_connection(&state, tls).await,
                        Ok(Err(err)) => tracing::debug!("monitoring: TLS handshake failed: {err}"),
                        Err(_) => tracing::debug!("monitoring: TLS handshake timed out"),
                    }
                }
            }
            state.conns.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Serves HTTP/1 requests on one accepted connection (plain or TLS) until it closes.
async fn serve_connection<S>(state: &Arc<State>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let service_state = state.clone();
    let service = hyper::service::service_fn(move |req| {
        let state = service_state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(io, service)
        .await;
}

/// The endpoints, by path below the base path.
const ENDPOINTS: &[&str] = &[
    "varz",
    "connz",
    "subsz",
    "subscriptionsz",
    "accountz",
    "accstatz",
    "healthz",
    "routez",
    "leafz",
    "gatewayz",
    "jsz",
];

async fn handle<B>(state: &State, req: Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let query = Query::parse(req.uri().query().unwrap_or(""));
    let Some(rest) = path.strip_prefix(&state.base_path) else {
        return not_found();
    };
    let endpoint = rest.trim_start_matches('/');
    if !rest.is_empty() && !rest.starts_with('/') {
        return not_found();
    }
    if endpoint.is_empty() {
        return respond(StatusCode::OK, "text/html; charset=utf-8", root_page(state));
    }
    if !ENDPOINTS.contains(&endpoint) {
        return not_found();
    }
    state.count(&format!("/{endpoint}"));
    let Some(shared) = state.shared.get().cloned() else {
        let status = HealthStatus {
            status: "error",
            error: "server is not ready for connections yet".into(),
        };
        let text = serde_json::to_string(&status).unwrap_or_default();
        return json_text(StatusCode::SERVICE_UNAVAILABLE, &query, text);
    };
    match run_endpoint(state, &shared, endpoint, &query).await {
        Ok((status, body)) => json_text(status, &query, body),
        Err(text) => respond(StatusCode::BAD_REQUEST, "text/plain; charset=utf-8", text),
    }
}

/// Runs one endpoint: (status, JSON text), or a 400 text.
async fn run_endpoint(
    state: &State,
    shared: &Arc<Shared>,
    endpoint: &str,
    query: &Query,
) -> Result<(StatusCode, String), String> {
    let monitoring = &shared.monitor;
    let value = match endpoint {
        "varz" => {
            let reports = monitoring.collect(QueryKind::Totals).await;
            let (mem, cpu) = state
                .cpu
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .sample(state.process_start);
            let extras = VarzExtras {
                http_host: state.http_host.clone(),
                http_port: state.http_port,
                https_port: state.https_port,
                http_base_path: state.base_path.clone(),
                mem,
                cpu,
                http_req_stats: state
                    .req_stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            };
            indented(&endpoints::varz(shared, &reports, extras))
        }
        "connz" => {
            let view = connz_view(query)?;
            let _turn = state.renders.acquire().await;
            let filter = Arc::new(view.filter.clone());
            let reports = monitoring.collect(QueryKind::Conns(filter)).await;
            let shared = shared.clone();
            state
                .render(move || indented(&endpoints::connz(&shared, reports, &view)))
                .await
                .unwrap_or_default()
        }
        "subsz" | "subscriptionsz" => {
            let detail = query.bool("subs")?;
            let offset = query.int("offset")?.max(0) as usize;
            let limit = positive_or(query.int("limit")?, DEFAULT_LIST_LIMIT);
            let test = query.get("test").map(str::to_string);
            if let Some(test) = &test {
                if !crate::subject::is_valid_literal(test.as_bytes()) {
                    return Err(format!(
                        "invalid test subject, must be valid publish subject: {test}"
                    ));
                }
            }
            let filter = SubFilter {
                detail,
                test,
                account: query.get("acc").map(str::to_string),
            };
            let _turn = state.renders.acquire().await;
            let reports = monitoring.collect(QueryKind::Subs(Arc::new(filter))).await;
            let shared = shared.clone();
            state
                .render(move || endpoints::subsz(&shared, reports, offset, limit))
                .await
                .unwrap_or_else(|| Ok(String::new()))?
        }
        "accountz" => {
            let reports = monitoring.collect(QueryKind::Totals).await;
            let acc = query.get("acc").filter(|a| !a.is_empty());
            indented(&endpoints::accountz(shared, &reports, acc)?)
        }
        "accstatz" => {
            let unused = query.bool("unused")?;
            let reports = monitoring.collect(QueryKind::Totals).await;
            let accs: Vec<String> = query
                .get("accs")
                .map(|a| a.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            indented(&endpoints::accstatz(shared, &reports, unused, &accs))
        }
        "healthz" => {
            let (status, health) = healthz(shared).await;
            // nats-server writes this one compact (`json.Marshal`).
            let text = serde_json::to_string(&health).unwrap_or_default();
            return Ok((status, text));
        }
        other => indented(&endpoints::absent_feature(shared, other)),
    };
    Ok((StatusCode::OK, value))
}

/// `/healthz`: ok while the server runs and every shard answers.
async fn healthz(shared: &Arc<Shared>) -> (StatusCode, HealthStatus) {
    let error = if let Some(reason) = shared.monitor.health_error() {
        reason
    } else if shared.lame_duck_phase() != crate::shared::LameDuckPhase::Off {
        "lame duck mode".to_string()
    } else if shared.is_shutting_down() {
        "server is shutting down".to_string()
    } else {
        let reports = shared.monitor.collect(QueryKind::Totals).await;
        if reports.len() < shared.shard_count {
            "a shard did not answer".to_string()
        } else {
            String::new()
        }
    };
    if error.is_empty() {
        let ok = HealthStatus {
            status: "ok",
            error,
        };
        return (StatusCode::OK, ok);
    }
    tracing::warn!("Healthcheck failed: {error:?}");
    let failed = HealthStatus {
        status: "error",
        error,
    };
    (StatusCode::SERVICE_UNAVAILABLE, failed)
}

fn connz_view(query: &Query) -> Result<ConnzView, String> {
    let sort_text = query.get("sort").unwrap_or("");
    let sort =
        SortKey::parse(sort_text).ok_or_else(|| format!("invalid sorting option: {sort_text}"))?;
    let auth = query.bool("auth")?;
    let subs = match query.get("subs") {
        Some(s) if s.eq_ignore_ascii_case("detail") => SubsWanted::Detail,
        _ if query.bool("subs")? => SubsWanted::Subjects,
        _ => SubsWanted::None,
    };
    let offset = query.int("offset")?.max(0) as usize;
    let mut limit = positive_or(query.int("limit")?, DEFAULT_LIST_LIMIT);
    let cid = query.uint("cid")?;
    let state = match query.get("state").map(str::to_ascii_lowercase).as_deref() {
        None | Some("") | Some("open") => StateFilter::Open,
        Some("closed") => StateFilter::Closed,
        Some("any") | Some("all") => StateFilter::All,
        Some(_) => {
            return Err(format!(
                "Error decoding state for {}",
                query.get("state").unwrap_or("")
            ));
        }
    };
    if matches!(sort, SortKey::Stop) && state != StateFilter::Closed {
        return Err("sort by stop only valid on closed connections".into());
    }
    if matches!(sort, SortKey::Reason) && state != StateFilter::Closed {
        return Err("sort by reason only valid on closed connections".into());
    }
    let cid = (cid > 0).then_some(cid);
    if cid.is_some() {
        limit = 1;
    }
    let filter = ConnFilter {
        state,
        cid,
        account: query
            .get("acc")
            .filter(|a| !a.is_empty())
            .map(str::to_string),
        user: query
            .get("user")
            .filter(|u| !u.is_empty())
            .map(str::to_string),
        subs,
        sort,
        keep: offset.saturating_add(limit),
    };
    Ok(ConnzView {
        filter,
        offset,
        limit,
        auth,
    })
}

impl State {
    /// The TLS config for the next `https_port` handshake: the running configuration's
    /// certificate (reloads included), else the start-up one; `None` on `http_port`.
    fn tls_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        let initial = self.tls.as_ref()?;
        let current = self
            .shared
            .get()
            .and_then(|shared| shared.snapshot().tls.clone())
            .and_then(|tls| tls.monitoring_config().ok());
        Some(current.unwrap_or_else(|| Arc::clone(initial)))
    }

    /// Runs `build` on the `monitor-render` thread and waits for its answer (here, if that
    /// thread is not there); `None` if `build` panicked.
    async fn render<T, F>(&self, build: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: RenderJob = Box::new(move || {
            let _ = tx.send(build());
        });
        match &self.renderer {
            Some(renderer) => {
                if let Err(std::sync::mpsc::SendError(job)) = renderer.send(job) {
                    job();
                }
            }
            None => job(),
        }
        rx.await.ok()
    }

    fn count(&self, path: &str) {
        let mut stats = self.req_stats.lock().unwrap_or_else(|e| e.into_inner());
        *stats.entry(path.to_string()).or_insert(0) += 1;
    }
}

/// A request's query string, percent-decoded; the first value of a name wins (Go's
/// `Query().Get`).
struct Query(Vec<(String, String)>);

impl Query {
    fn parse(text: &str) -> Query {
        let pairs = text
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        Query(pairs)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Go `strconv.ParseBool`; absent or empty is false.
    fn bool(&self, name: &str) -> Result<bool, String> {
        match self.get(name).unwrap_or("") {
            "" => Ok(false),
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            other => Err(format!(
                "Error decoding boolean for '{name}': strconv.ParseBool: parsing \"{other}\": invalid syntax"
            )),
        }
    }

    fn int(&self, name: &str) -> Result<i64, String> {
        match self.get(name).unwrap_or("") {
            "" => Ok(0),
            text => text.parse().map_err(|_| {
                format!("Error decoding int for '{name}': strconv.Atoi: parsing \"{text}\": invalid syntax")
            }),
        }
    }

    fn uint(&self, name: &str) -> Result<u64, String> {
        match self.get(name).unwrap_or("") {
            "" => Ok(0),
            text => text.parse().map_err(|_| {
                format!("Error decoding uint64 for '{name}': strconv.ParseUint: parsing \"{text}\": invalid syntax")
            }),
        }
    }
}

fn positive_or(n: i64, default: usize) -> usize {
    if n <= 0 {
        default
    } else {
        usize::try_from(n).unwrap_or(default)
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// nats-server's `json.MarshalIndent(v, "", "  ")`, fields in declaration order, written into
/// one buffer sized like the previous answer (a poll's answers are alike: a `/connz` of 1,024
/// connections is half a megabyte, which growing by doubling would copy once more).
fn indented<T: serde::Serialize>(value: &T) -> String {
    let hint = BODY_LEN_HINT.load(Ordering::Relaxed).min(BODY_LEN_HINT_MAX);
    let mut out = Vec::with_capacity(hint);
    if serde_json::to_writer_pretty(&mut out, value).is_err() {
        return String::new();
    }
    BODY_LEN_HINT.store(out.len(), Ordering::Relaxed);
    // serde_json writes UTF-8 only; the check is one fast pass.
    String::from_utf8(out).unwrap_or_default()
}

/// The length of the last indented answer (see `indented`); touched only by the monitoring
/// thread.
static BODY_LEN_HINT: AtomicUsize = AtomicUsize::new(0);
/// The most `indented` reserves up front, whatever the last answer was.
const BODY_LEN_HINT_MAX: usize = 4 << 20;

/// Sends JSON as nats-server does: `<`, `>` and `&` escaped as Go's encoder escapes them (they
/// only occur inside strings), and JSONP with `callback=`. Text without them (nearly all) is
/// sent as it is, not copied.
fn json_text(status: StatusCode, query: &Query, text: String) -> Response<Full<Bytes>> {
    let text = if memchr::memchr3(b'<', b'>', b'&', text.as_bytes()).is_some() {
        text.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    } else {
        text
    };
    match query.get("callback").filter(|c| !c.is_empty()) {
        Some(callback) => respond(
            status,
            "application/javascript",
            format!("{callback}({text})"),
        ),
        None => respond(status, "application/json", text),
    }
}

fn respond(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

/// Go's `http.NotFound`.
fn not_found() -> Response<Full<Bytes>> {
    respond(
        StatusCode::NOT_FOUND,
        "text/plain; charset=utf-8",
        "404 page not found\n".into(),
    )
}

fn root_page(state: &State) -> String {
    let base = state.base_path.trim_end_matches('/');
    let links: String = [
        "varz", "connz", "routez", "gatewayz", "leafz", "subsz", "accountz", "accstatz", "jsz",
        "healthz",
    ]
    .iter()
    .map(|e| format!("    <a href=\"{base}/{e}\">{e}</a><br/>\n"))
    .collect();
    format!(
        "<html lang=\"en\">\n  <head><title>ringnats monitoring</title></head>\n  <body>\n{links}  </body>\n</html>\n"
    )
}

/// nats-server `basePath`: a leading `/`, no trailing one (the root stays `/`).
fn normalize_base_path(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address for host"))
}

/// A plain listener without `SO_REUSEPORT`, so a port another process holds is refused.
fn listener_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let sock = crate::server::bind_tcp(addr, false)?;
    sock.listen(1024)?;
    Ok(sock.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_as_go() {
        let q = Query::parse("subs=1&test=foo%2Ebar&acc=A+B&subs=0");
        assert_eq!(q.get("subs"), Some("1"), "the first value wins");
        assert_eq!(q.get("test"), Some("foo.bar"));
        assert_eq!(q.get("acc"), Some("A B"));
        assert_eq!(q.bool("subs"), Ok(true));
        assert!(Query::parse("auth=yes").bool("auth").is_err());
        assert_eq!(Query::parse("x=%zz").get("x"), Some("%zz"));
        assert_eq!(Query::parse("x=%4").get("x"), Some("%4"));
    }

    #[test]
    fn base_paths_normalize() {
        assert_eq!(normalize_base_path(""), "");
        assert_eq!(normalize_base_path("/"), "");
        assert_eq!(normalize_base_path("nats/"), "/nats");
    }
}
