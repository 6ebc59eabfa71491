//! Start-up and the control plane: listeners, shard threads, signals, reload, shutdown.
//!
//! Cold: runs at start, on signals and when shards ask for shared state per connection.
//! `Shared` is the only state every shard can reach; each field says which threads touch it.
//! Nothing in it is read per message.
// The options snapshot sits behind a std Mutex: written on reload, read by shards at most once
// per loop turn when its generation changes; never on the message path.
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::AuthConfig;
use crate::blocking::BlockingPool;
use crate::config::{ConfigError, ServerOptions};
use crate::protocol::connect::ServerInfo;
use crate::shard::mesh::{self, Waker};
use crate::shard::{Driver, Limits, SHARDS_MAX, ShardId, pin};
use crate::tls::TlsSettings;

/// The version we report in INFO: the nats-server protocol level we implement. Clients gate
/// features (headers, no responders) on it.
pub const COMPAT_VERSION: &str = "2.9.10";

/// Everything a connection's authentication depends on, compiled from the options.
pub struct Security {
    pub auth: AuthConfig,
    pub tls: Option<TlsSettings>,
}

impl Security {
    /// Compiles `authorization`, `accounts`, `tls` and the matching flags (flags win).
    pub fn from_options(opts: &ServerOptions) -> Result<Security, ConfigError> {
        Security::build(opts, None)
    }

    /// [`Security::from_options`] for a reload: account ids stay those of `previous`, and in
    /// operator mode the account JWTs it holds stay unless the config or the resolver
    /// directory has newer ones.
    pub fn from_options_after(
        opts: &ServerOptions,
        previous: &AuthConfig,
    ) -> Result<Security, ConfigError> {
        Security::build(opts, Some(previous))
    }

    fn build(opts: &ServerOptions, previous: Option<&AuthConfig>) -> Result<Security, ConfigError> {
        let mut auth = match previous {
            Some(previous) => AuthConfig::from_options_after(opts, previous)?,
            None => AuthConfig::from_options_with_cli(opts, &opts.cli_auth)?,
        };
        let tls = match (&opts.cli_tls, opts.auth_section("tls")) {
            (Some(cli), _) => {
                let settings = TlsSettings::from_files(
                    &cli.cert,
                    &cli.key,
                    cli.ca.as_deref(),
                    cli.verify,
                    false,
                )
                .map_err(|msg| ConfigError::Flag { flag: "--tls", msg })?;
                Some(settings)
            }
            (None, Some(value)) => Some(TlsSettings::from_value(value)?),
            (None, None) => None,
        };
        if let Some(tls) = &tls {
            auth.set_verify_and_map(tls.map);
        }
        Ok(Security { auth, tls })
    }
}

/// One consistent generation of the options and what was compiled from them.
pub struct Snapshot {
    pub opts: Arc<ServerOptions>,
    pub auth: Arc<AuthConfig>,
    pub tls: Option<Arc<TlsSettings>>,
}

/// Threads of the blocking pool (bcrypt checks): few, since bcrypt is CPU-bound and the
/// shards must keep their cores.
const BLOCKING_THREADS: usize = 2;

/// State shared by all shards and the control thread.
pub struct Shared {
    pub shard_count: usize,
    /// The public key of `keys` (INFO `server_id`).
    pub server_id: String,
    /// The server's identity and curve keys (auth callout requests are signed and sealed
    /// with them).
    pub keys: crate::auth::callout::ServerKeys,
    /// Current options and security. Written by the control thread on reload; read by shards
    /// when `opts_generation` changes (at most once per tick).
    snapshot: Mutex<Arc<Snapshot>>,
    opts_generation: AtomicU64,
    /// Held while a new authentication configuration is computed and installed (a reload on
    /// the control thread, an account update on the monitoring thread), so neither loses the
    /// other's change.
    auth_update: Mutex<()>,
    /// Open client connections, all shards. Incremented on accept, decremented on close.
    connections: AtomicUsize,
    /// Set once by the control thread; read by shards every tick.
    shutdown: AtomicBool,
    /// The listening address actually bound (port 0/-1 resolved).
    pub listen_addr: SocketAddr,
    /// Where shards send slow authentication checks.
    pub pool: Arc<BlockingPool>,
    /// Credentials that passed a bcrypt check lately (see `auth::verified`).
    pub verified: Arc<crate::auth::VerifiedCache>,
    /// Rewrites service-import replies; the same key on every shard.
    pub replies: crate::account::ReplyMapper,
    /// Monitoring: the channels to the shards and when the server started (`monitor/`).
    pub monitor: crate::monitor::Monitoring,
    /// `LameDuckPhase` as a number: written by the lame-duck thread, read by shards every tick.
    lame_duck: AtomicU8,
    /// Shards that closed their last client in lame-duck mode (each adds one, once).
    lame_duck_shards_done: AtomicUsize,
    /// Lame-duck mode has no client left: the control thread stops the server.
    lame_duck_finished: AtomicBool,
}

/// Where lame-duck mode (SIGUSR2) is.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum LameDuckPhase {
    Off = 0,
    /// Shards stop accepting and send their clients the INFO with `"ldm":true`.
    Announced = 1,
    /// The grace period is over: shards close their clients, spread over the rest of
    /// `lame_duck_duration`.
    Closing = 2,
}

impl Shared {
    /// The state shared by `shard_count` shards serving `opts` on `listen_addr` (which the
    /// caller has bound; a simulator passes any address).
    pub fn new(
        opts: ServerOptions,
        security: Security,
        shard_count: usize,
        listen_addr: SocketAddr,
    ) -> Result<Arc<Shared>, StartError> {
        let keys = crate::auth::callout::ServerKeys::generate();
        let server_id = keys.id().to_string();
        let pool = BlockingPool::new(BLOCKING_THREADS).map_err(StartError::Thread)?;
        let snapshot = Snapshot {
            opts: Arc::new(opts),
            auth: Arc::new(security.auth),
            tls: security.tls.map(Arc::new),
        };
        Ok(Arc::new(Shared {
            shard_count,
            server_id,
            keys,
            pool,
            verified: Arc::new(crate::auth::VerifiedCache::new()),
            replies: crate::account::ReplyMapper::default(),
            monitor: crate::monitor::Monitoring::new(shard_count),
            snapshot: Mutex::new(Arc::new(snapshot)),
            opts_generation: AtomicU64::new(0),
            auth_update: Mutex::new(()),
            connections: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            listen_addr,
            lame_duck: AtomicU8::new(LameDuckPhase::Off as u8),
            lame_duck_shards_done: AtomicUsize::new(0),
            lame_duck_finished: AtomicBool::new(false),
        }))
    }

    /// Replaces the options and what was compiled from them (a reload); shards pick the new
    /// generation up on their next turn.
    pub fn replace_snapshot(&self, opts: ServerOptions, security: Security) {
        // A user whose bcrypt hash changed (or went) proves the new one with bcrypt again.
        self.verified.retain_hashes(security.auth.bcrypt_hashes());
        let snapshot = Snapshot {
            opts: Arc::new(opts),
            auth: Arc::new(security.auth),
            tls: security.tls.map(Arc::new),
        };
        let mut guard = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new(snapshot);
        drop(guard);
        self.opts_generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        // A poisoned lock means a shard panicked, which stops the process anyway; use the
        // last value either way.
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serialises computing and installing a new authentication configuration (see
    /// `auth_update`); hold it from reading the current snapshot to installing the new one.
    pub fn lock_auth_update(&self) -> std::sync::MutexGuard<'_, ()> {
        self.auth_update.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Installs `auth` with the current options and TLS (an account update): the shards pick it
    /// up on their next turn and re-check every live connection against it, as after a reload.
    pub fn install_auth(&self, auth: AuthConfig) {
        let mut guard = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = Snapshot {
            opts: guard.opts.clone(),
            auth: Arc::new(auth),
            tls: guard.tls.clone(),
        };
        *guard = Arc::new(snapshot);
        drop(guard);
        self.opts_generation.fetch_add(1, Ordering::AcqRel);
        self.monitor.wake_shards();
    }

    pub fn options(&self) -> Arc<ServerOptions> {
        self.snapshot().opts.clone()
    }

    pub fn opts_generation(&self) -> u64 {
        self.opts_generation.load(Ordering::Acquire)
    }

    pub fn limits(&self) -> (Limits, u64) {
        let generation = self.opts_generation();
        let o = self.options();
        let limits = Limits {
            max_payload: o.max_payload,
            max_control_line: o.max_control_line,
            max_pending: o.max_pending,
            max_connections: o.max_connections,
            max_subscriptions: o.max_subscriptions,
            ping_interval: o.ping_interval,
            ping_max: o.ping_max,
            write_deadline: o.write_deadline,
            trace: o.trace,
            busy_poll: o.busy_poll,
        };
        (limits, generation)
    }

    /// Counts a new connection unless that would pass `max`.
    pub fn try_add_connection(&self, max: usize) -> bool {
        let prev = self.connections.fetch_add(1, Ordering::Relaxed);
        if prev >= max {
            self.connections.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn remove_connection(&self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// Shard `id`'s end of the monitoring queries; taken once, by the shard, at start.
    pub fn take_monitor_queries(
        &self,
        id: ShardId,
    ) -> Option<std::sync::mpsc::Receiver<crate::monitor::query::ShardQuery>> {
        self.monitor.take_receiver(id)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }

    pub fn lame_duck_phase(&self) -> LameDuckPhase {
        match self.lame_duck.load(Ordering::Acquire) {
            0 => LameDuckPhase::Off,
            1 => LameDuckPhase::Announced,
            _ => LameDuckPhase::Closing,
        }
    }

    /// A shard closed its last client in lame-duck mode; the last one wakes the control thread.
    pub fn lame_duck_shard_done(&self) {
        let done = self.lame_duck_shards_done.fetch_add(1, Ordering::AcqRel) + 1;
        if done == self.shard_count {
            self.finish_lame_duck();
        }
    }

    fn finish_lame_duck(&self) {
        self.lame_duck_finished.store(true, Ordering::Release);
        crate::signals::notify_control();
    }

    /// The INFO a client gets when lame-duck mode starts (nats-server `sendLDMToClients`).
    pub fn lame_duck_info_json(
        &self,
        snapshot: &Snapshot,
        client_id: u64,
        peer: &SocketAddr,
    ) -> Vec<u8> {
        let mut info = self.server_info(snapshot, client_id, peer, None);
        info.ldm = true;
        info.to_json()
    }

    /// The INFO JSON for a new connection.
    pub fn info_json(
        &self,
        snapshot: &Snapshot,
        client_id: u64,
        peer: &SocketAddr,
        nonce: Option<&str>,
    ) -> Vec<u8> {
        self.server_info(snapshot, client_id, peer, nonce).to_json()
    }

    /// [`Shared::info_json`] advertising `max_payload` when a JWT lowered it for this client.
    pub fn info_json_with_max_payload(
        &self,
        snapshot: &Snapshot,
        client_id: u64,
        peer: &SocketAddr,
        nonce: Option<&str>,
        max_payload: Option<usize>,
    ) -> Vec<u8> {
        let mut info = self.server_info(snapshot, client_id, peer, nonce);
        if let Some(max) = max_payload {
            info.max_payload = i64::try_from(max).unwrap_or(i64::MAX);
        }
        info.to_json()
    }

    fn server_info(
        &self,
        snapshot: &Snapshot,
        client_id: u64,
        peer: &SocketAddr,
        nonce: Option<&str>,
    ) -> ServerInfo {
        let opts = &snapshot.opts;
        let max_payload = opts.max_payload;
        ServerInfo {
            server_id: self.server_id.clone(),
            server_name: opts
                .server_name
                .clone()
                .unwrap_or_else(|| self.server_id.clone()),
            version: COMPAT_VERSION.to_string(),
            proto: 1,
            go: concat!("ringnats-", env!("CARGO_PKG_VERSION")).to_string(),
            host: opts.host.clone(),
            port: self.listen_addr.port(),
            headers: true,
            max_payload: max_payload as i64,
            client_id,
            client_ip: peer.ip().to_string(),
            auth_required: snapshot.auth.auth_required(),
            tls_required: snapshot.tls.is_some(),
            tls_verify: snapshot.tls.as_ref().is_some_and(|t| t.verify),
            nonce: nonce.map(str::to_string).unwrap_or_default(),
            ..ServerInfo::default()
        }
    }
}

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Worded as nats-server's fatal `Error listening on port: <host:port>, "<Go error>"`.
    #[error(
        "Error listening on port: {addr}, \"listen tcp {addr}: bind: {}\"",
        crate::signals::go_errno_text(source)
    )]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Uring(String),
    #[error("cannot start shard thread: {0}")]
    Thread(std::io::Error),
    #[error("--shards must be between 1 and {SHARDS_MAX}, got {0}")]
    ShardCount(usize),
}

impl StartError {
    /// Whether nats-server would log this at `[FTL]` (it cannot listen).
    pub fn is_fatal(&self) -> bool {
        matches!(self, StartError::Listen { .. })
    }
}

/// A running server: the shard threads and the handle to stop them.
pub struct Server {
    shared: Arc<Shared>,
    wakers: Vec<Arc<Waker>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    failed: Arc<AtomicBool>,
}

impl Server {
    /// Binds the listeners, starts one pinned shard per CPU (or `opts.shards`), and returns
    /// once every shard's ring is up.
    pub fn start(opts: ServerOptions, security: Security) -> Result<Server, StartError> {
        Self::start_then(opts, security, |_| {})
    }

    /// As [`Server::start`], and hands the server's shared state to `before_clients` before
    /// any shard runs, so whatever it sets up (the monitoring endpoints) is ready by the time
    /// a client gets its INFO, as nats-server starts monitoring before it accepts clients.
    pub fn start_then(
        opts: ServerOptions,
        security: Security,
        before_clients: impl FnOnce(&Arc<Shared>),
    ) -> Result<Server, StartError> {
        let cpus = pin::allowed_cpus();
        let shard_count = opts.shards.unwrap_or(cpus.len().max(1));
        if shard_count == 0 || shard_count > SHARDS_MAX {
            return Err(StartError::ShardCount(shard_count));
        }
        let listeners = bind_listeners(&opts, shard_count)?;
        let listen_addr = local_addr(listeners[0]).map_err(|source| StartError::Listen {
            addr: format!("{}:{}", opts.host, opts.port),
            source,
        })?;
        let shared = Shared::new(opts, security, shard_count, listen_addr)?;
        let wakers: Vec<Arc<Waker>> = (0..shard_count)
            .map(|_| Waker::new())
            .collect::<Result<_, _>>()
            .map_err(|e| StartError::Uring(format!("eventfd: {e}")))?;
        shared.monitor.set_wakers(wakers.clone());
        before_clients(&shared);
        let meshes = mesh::build(&wakers);
        let failed = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let mut threads = Vec::new();
        for ((i, mesh), listener) in meshes.into_iter().enumerate().zip(listeners) {
            let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let shared = shared.clone();
            let waker = wakers[i].clone();
            let ready = ready_tx.clone();
            let failed = failed.clone();
            let all_wakers = wakers.clone();
            let handle = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || {
                    run_shard(
                        ShardId(i as u16),
                        cpu,
                        shared,
                        mesh,
                        waker,
                        listener,
                        ready,
                        failed,
                        all_wakers,
                    )
                })
                .map_err(StartError::Thread)?;
            threads.push(handle);
        }
        drop(ready_tx);
        for _ in 0..shard_count {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(msg)) => {
                    shared.shutdown.store(true, Ordering::SeqCst);
                    wakers.iter().for_each(|w| w.wake_always());
                    return Err(StartError::Uring(msg));
                }
                Err(_) => {
                    return Err(StartError::Uring(
                        "a shard thread exited during start-up".into(),
                    ));
                }
            }
        }
        Ok(Server {
            shared,
            wakers,
            threads,
            failed,
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.shared.listen_addr
    }

    /// Replaces the options (SIGHUP); shards pick them up on their next tick.
    pub fn reload(&self, opts: ServerOptions, security: Security) {
        self.shared.replace_snapshot(opts, security);
        // Shards check the generation every turn; wake them so it applies at once.
        for w in &self.wakers {
            w.wake_always();
        }
    }

    /// Asks every shard to flush and close its connections, then waits for the threads.
    /// Returns false if a shard failed.
    pub fn shutdown(self) -> bool {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for w in &self.wakers {
            w.wake_always();
        }
        for t in self.threads {
            let _ = t.join();
        }
        !self.failed.load(Ordering::SeqCst)
    }

    /// Starts lame-duck mode (SIGUSR2), unless it already runs: shards stop accepting and
    /// announce it; after `lame_duck_grace_period` they close their clients. Returns at once;
    /// `is_lame_duck_finished` turns true (and the control thread is woken) when no client is
    /// left.
    pub fn enter_lame_duck(&self) -> bool {
        let was = self.shared.lame_duck.compare_exchange(
            LameDuckPhase::Off as u8,
            LameDuckPhase::Announced as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        if was.is_err() {
            return false;
        }
        for w in &self.wakers {
            w.wake_always();
        }
        let shared = self.shared.clone();
        let wakers = self.wakers.clone();
        let spawned = std::thread::Builder::new()
            .name("lame-duck".into())
            .spawn(move || run_lame_duck(&shared, &wakers));
        if let Err(err) = spawned {
            tracing::error!("cannot start the lame-duck thread: {err}; stopping now");
            self.shared.finish_lame_duck();
        }
        true
    }

    pub fn is_lame_duck(&self) -> bool {
        self.shared.lame_duck_phase() != LameDuckPhase::Off
    }

    pub fn is_lame_duck_finished(&self) -> bool {
        self.shared.lame_duck_finished.load(Ordering::Acquire)
    }

    /// Whether a shard stopped on its own (an error or a panic).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// The lame-duck timeline off the shards: the grace period, then the closing phase. A server
/// with no client stops at once (nats-server `lameDuckMode`).
fn run_lame_duck(shared: &Shared, wakers: &[Arc<Waker>]) {
    if shared.connections.load(Ordering::Relaxed) == 0 {
        shared.finish_lame_duck();
        return;
    }
    // Clients reconnecting elsewhere get this long before the first close, so servers put
    // into lame-duck mode together do not hand clients to each other.
    std::thread::sleep(shared.options().lame_duck_grace_period);
    if shared.is_shutting_down() {
        return;
    }
    tracing::info!("Closing existing clients");
    shared
        .lame_duck
        .store(LameDuckPhase::Closing as u8, Ordering::Release);
    for w in wakers {
        w.wake_always();
    }
}

#[allow(clippy::too_many_arguments)]
fn run_shard(
    id: ShardId,
    cpu: Option<core_affinity::CoreId>,
    shared: Arc<Shared>,
    mesh: mesh::Mesh,
    waker: Arc<Waker>,
    listener: RawFd,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    failed: Arc<AtomicBool>,
    all_wakers: Vec<Arc<Waker>>,
) {
    if let Some(cpu) = cpu {
        pin::pin_current(cpu, id.0);
    }
    let slice = pin::request_short_slice();
    if slice != pin::SliceRequest::Set {
        tracing::debug!(
            shard = id.0,
            ?slice,
            "shard keeps the kernel's default time slice"
        );
    }
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut shard = match Driver::new(id, shared.clone(), mesh, waker, listener) {
            Ok(shard) => shard,
            Err(err) => {
                let _ = ready.send(Err(crate::shard::reactor::explain_setup_error(&err)));
                return Err(());
            }
        };
        let _ = ready.send(Ok(()));
        shard.run().map_err(|err| {
            tracing::error!(shard = id.0, %err, "shard event loop failed");
        })
    }));
    // SAFETY-free: closing our listener after the ring (inside the shard) is gone.
    let _ = nix_close(listener);
    let ok = matches!(result, Ok(Ok(())));
    if !ok {
        if result.is_err() {
            tracing::error!(shard = id.0, "shard thread panicked; stopping the server");
        }
        failed.store(true, Ordering::SeqCst);
        shared.shutdown.store(true, Ordering::SeqCst);
        // Wake the control thread's wait and the other shards.
        for w in &all_wakers {
            w.wake_always();
        }
        crate::signals::notify_control();
    }
}

fn nix_close(fd: RawFd) -> std::io::Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: the shard thread owns its listener descriptor and closes it exactly once here.
    #[allow(unsafe_code)]
    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// One `SO_REUSEPORT` listener per shard on the same address; the kernel spreads connections.
///
/// Reuseport alone would let a second broker join the group and take half the clients, so a
/// fixed port is first bound without it (`probe_exclusive`), as nats-server binds: a port
/// someone already listens on is refused with "address already in use". The probe and the
/// group's binds run under `BindLock`, so two ringnats starting at once cannot both pass the
/// probe before either listens. With port 0 the kernel picks a port nobody listens on.
fn bind_listeners(opts: &ServerOptions, count: usize) -> Result<Vec<RawFd>, StartError> {
    let host = if opts.host.is_empty() {
        "0.0.0.0"
    } else {
        opts.host.as_str()
    };
    let port = opts.listen_port();
    let addr: SocketAddr = resolve(host, port).map_err(|source| StartError::Listen {
        addr: format!("{host}:{port}"),
        source,
    })?;
    let listen_error = |addr: SocketAddr| {
        move |source| StartError::Listen {
            addr: addr.to_string(),
            source,
        }
    };
    let _lock = if port == 0 {
        None
    } else {
        let lock = BindLock::acquire(port).map_err(listen_error(addr))?;
        probe_exclusive(addr).map_err(listen_error(addr))?;
        Some(lock)
    };
    let mut fds = Vec::with_capacity(count);
    let mut bound = addr;
    for _ in 0..count {
        let sock = listener_socket(bound).map_err(listen_error(bound))?;
        // With port 0 the first bind picks the port; the others join it.
        if bound.port() == 0 {
            if let Some(a) = sock.local_addr().ok().and_then(|a| a.as_socket()) {
                bound = a;
            }
        }
        fds.push(sock.into_raw_fd());
    }
    Ok(fds)
}

/// Binds `addr` the way nats-server does (`SO_REUSEADDR`, no `SO_REUSEPORT`) and lets it go:
/// fails with `EADDRINUSE` when any socket listens there, ours or another broker's group.
fn probe_exclusive(addr: SocketAddr) -> std::io::Result<()> {
    bind_tcp(addr, false).map(drop)
}

/// A bound TCP socket with `SO_REUSEADDR` (as nats-server binds) and, when `reuse_port`, in a
/// `SO_REUSEPORT` group; the one place the client, probe and monitoring listeners are made.
pub(crate) fn bind_tcp(addr: SocketAddr, reuse_port: bool) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// How long start-up waits for another ringnats to finish binding the same port.
const BIND_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How often it tries again meanwhile.
const BIND_LOCK_RETRY: Duration = Duration::from_millis(5);

/// A per-port lock held while binding: an abstract Unix socket `ringnats-bind-<port>`. Like a
/// port it lives in the network namespace, and the kernel releases it when the holder exits,
/// however it exits.
struct BindLock {
    _socket: std::os::unix::net::UnixListener,
}

impl BindLock {
    fn acquire(port: u16) -> std::io::Result<BindLock> {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ringnats-bind-{port}");
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        let deadline = std::time::Instant::now() + BIND_LOCK_WAIT;
        loop {
            match std::os::unix::net::UnixListener::bind_addr(&addr) {
                Ok(socket) => return Ok(BindLock { _socket: socket }),
                Err(err)
                    if err.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    // Another ringnats is between its probe and its listen: a few ms.
                    std::thread::sleep(BIND_LOCK_RETRY);
                }
                Err(err) => return Err(err),
            }
        }
    }
}

fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no address for host"))
}

fn listener_socket(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let sock = bind_tcp(addr, true)?;
    sock.listen(4096)?;
    Ok(sock)
}

fn local_addr(fd: RawFd) -> std::io::Result<SocketAddr> {
    let fd = BorrowedListener(fd);
    let sock = socket2::SockRef::from(&fd);
    sock.local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an inet socket"))
}

struct BorrowedListener(RawFd);

impl std::os::fd::AsFd for BorrowedListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the listener stays open while the shard threads have not started.
        #[allow(unsafe_code)]
        unsafe {
            std::os::fd::BorrowedFd::borrow_raw(self.0)
        }
    }
}

/// Turns transparent huge pages off for this process. The allocator commits its arena
/// eagerly; with THP every thread's first small allocation there faulted in a whole 2 MiB page,
/// which made an idle broker hold 8 MiB more than it uses. Called first thing in `main`, before
/// any shard thread touches memory.
pub fn disable_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integer arguments and changes only this
    // process's fault policy.
    #[allow(unsafe_code)]
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// How long the control thread waits between checks of the failure flag.
pub const CONTROL_POLL: Duration = Duration::from_millis(200);
