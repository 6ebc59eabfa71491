//! Start-up and the control plane: listeners, shard threads, signals, reload, shutdown.
//!
//! Cold: runs at start and on signals. The state the shards reach is `shared::Shared`; this
//! module binds the listeners, starts one `shard::Driver` per core and runs the control
//! thread's side of reload, shutdown and lame-duck mode.

use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::ServerOptions;
use crate::ids::{SHARDS_MAX, ShardId};
use crate::shard::mesh::{self, Waker};
use crate::shard::{Driver, pin};
use crate::shared::{LameDuckPhase, Security, Shared};

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
        let shared =
            Shared::new(opts, security, shard_count, listen_addr).map_err(StartError::Thread)?;
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
                    shared.request_shutdown();
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
        self.shared.request_shutdown();
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
        if !self.shared.announce_lame_duck() {
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
        self.shared.is_lame_duck_finished()
    }

    /// Whether a shard stopped on its own (an error or a panic).
    pub fn has_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// The lame-duck timeline off the shards: the grace period, then the closing phase. A server
/// with no client stops at once (nats-server `lameDuckMode`).
fn run_lame_duck(shared: &Shared, wakers: &[Arc<Waker>]) {
    if shared.connection_count() == 0 {
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
    shared.close_lame_duck_clients();
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
        shared.request_shutdown();
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
