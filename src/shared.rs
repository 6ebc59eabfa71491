//! The state every shard and the control plane can reach: `Shared`, the options `Snapshot` of the
//! current generation and the `Security` compiled from it, the `Limits` a shard reads per
//! message, and where lame-duck mode is.
//!
//! Cold: written on start, reload, account updates and signals; shards read it per connection
//! or when `opts_generation` changes (at most once per turn). Nothing in it is read per message.
//! Each field of `Shared` says which threads touch it. It depends on no shard code, so `shard`,
//! `monitor` and `server` all build on it without depending on each other through it.
// The options snapshot sits behind a std Mutex: written on reload, read by shards at most once
// per loop turn when its generation changes; never on the message path.
#![allow(clippy::disallowed_types)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::AuthConfig;
use crate::blocking::BlockingPool;
use crate::config::{ConfigError, ServerOptions};
use crate::ids::ShardId;
use crate::protocol::connect::ServerInfo;
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

/// The option values the shard reads per connection or per message.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_payload: usize,
    pub max_control_line: usize,
    pub max_pending: usize,
    pub max_connections: usize,
    pub max_subscriptions: usize,
    pub ping_interval: Duration,
    pub ping_max: u32,
    pub write_deadline: Duration,
    pub trace: bool,
    /// See `Options::busy_poll`.
    pub busy_poll: Duration,
}

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
    ) -> std::io::Result<Arc<Shared>> {
        let keys = crate::auth::callout::ServerKeys::generate();
        let server_id = keys.id().to_string();
        let pool = BlockingPool::new(BLOCKING_THREADS)?;
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

    /// Lame-duck mode has no client left: marks it finished and wakes the control thread.
    pub fn finish_lame_duck(&self) {
        self.lame_duck_finished.store(true, Ordering::Release);
        crate::signals::notify_control();
    }

    /// Moves lame-duck mode from `Off` to `Announced`; false if it had started already.
    pub fn announce_lame_duck(&self) -> bool {
        self.lame_duck
            .compare_exchange(
                LameDuckPhase::Off as u8,
                LameDuckPhase::Announced as u8,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    /// The grace period is over: shards close their clients (`LameDuckPhase::Closing`).
    pub fn close_lame_duck_clients(&self) {
        self.lame_duck
            .store(LameDuckPhase::Closing as u8, Ordering::Release);
    }

    pub fn is_lame_duck_finished(&self) -> bool {
        self.lame_duck_finished.load(Ordering::Acquire)
    }

    /// Asks every shard to stop (they read it every tick); set by the control thread, or by a
    /// shard thread that failed.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }

    /// Open client connections, all shards.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
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
