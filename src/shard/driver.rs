//! The shard's io_uring driver: the loop that turns completions into the shard's events and
//! its `Action`s into submissions and system calls.
//!
//! Hot: one turn per wake-up; per message only the recv and send completions and the sends
//! it submits pass through here. The shard's logic (`Shard`) knows no ring and no socket; this
//! is the only part of a shard that touches the kernel, and the only `unsafe` one.
//! Invariant: a buffer handed to the kernel (a provided buffer, a connection's in-flight
//! output, the eventfd counter) stays valid and unchanged until its completion is reaped;
//! the shard releases a connection (and its out buffer) only once no operation on it is left,
//! and a recv buffer goes back to the ring only after `Shard::on_recv` has used it.
#![allow(unsafe_code)] // kernel-owned buffers and socket system calls: each names its SAFETY.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shard::mesh::{Mesh, Waker};
use crate::shard::reactor::{Completion, OpKind, Reactor};
use crate::shard::{Action, Shard, ShardId};
use crate::shared::Shared;

// The allocator is mimalloc (main.rs); naming the crate links it wherever this library is.
extern crate mimalloc as _;

unsafe extern "C" {
    /// mimalloc: frees what this thread's heap keeps for reuse and returns empty pages to the
    /// operating system (`force`: now, not after the purge delay).
    fn mi_collect(force: bool);
}

/// Number of provided receive buffers per shard, and their size.
const RECV_BUFFERS: u16 = 256;
const RECV_BUFFER_LEN: usize = 64 * 1024;

/// A shard's thread: its ring, its listener and wake-up, and the shard's logic it drives.
pub struct Driver {
    shard: Shard,
    reactor: Reactor,
    waker: Arc<Waker>,
    /// The eventfd read target; the kernel writes here while a wake read is armed.
    wake_buf: Box<u64>,
    listener: RawFd,
    completions: Vec<Completion>,
}

impl Driver {
    /// Builds the shard's ring and state and arms its listener and wake-up. Runs on the
    /// shard's thread.
    pub fn new(
        id: ShardId,
        shared: Arc<Shared>,
        mesh: Mesh,
        waker: Arc<Waker>,
        listener: RawFd,
    ) -> std::io::Result<Driver> {
        let reactor = Reactor::new(RECV_BUFFERS, RECV_BUFFER_LEN)?;
        let now = Instant::now();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(id.0) << 32)
            ^ 0x9e37_79b9_7f4a_7c15;
        let shard = Shard::new(
            id,
            shared,
            mesh,
            waker.clone(),
            Box::new(send_queue_len),
            now,
            seed,
        );
        let mut driver = Driver {
            shard,
            reactor,
            waker,
            wake_buf: Box::new(0),
            listener,
            completions: Vec::with_capacity(1024),
        };
        driver.reactor.push_accept(listener);
        driver.arm_wake();
        Ok(driver)
    }

    /// The event loop: one turn = reap completions, let the shard take the mesh, timers and
    /// output, submit what it decided, then one `io_uring_enter` that submits and waits.
    pub fn run(&mut self) -> std::io::Result<()> {
        loop {
            self.shard.begin_turn(Instant::now());
            self.reactor.reap(&mut self.completions);
            let completions = std::mem::take(&mut self.completions);
            for c in &completions {
                self.on_completion(*c);
            }
            self.completions = completions;
            self.reactor.publish_buffers();
            let backlog = self.shard.end_turn();
            self.apply_actions();
            if self.shard.is_finished() {
                return Ok(());
            }
            let turn_end = Instant::now();
            self.shard.check_turn_budget(turn_end);
            let timeout = Some(self.shard.sleep_timeout(turn_end, backlog));
            if self.shard.keep_spinning(turn_end, timeout) {
                // Send this turn's output now and look for the next message awake: waking a
                // sleeping thread costs more than a request/reply hop on loopback.
                self.reactor.submit_nowait()?;
                // Peers do not wake a shard that is not asleep: their rings are watched too.
                let shard = &self.shard;
                let budget = shard.spin_left(turn_end);
                if !self.reactor.has_completions()
                    && self
                        .reactor
                        .spin_for_work(budget, || shard.has_mesh_input())
                {
                    self.reactor.submit_nowait()?;
                }
                continue;
            }
            self.waker.prepare_sleep();
            let timeout = if self.shard.has_mesh_input() {
                Some(Duration::ZERO)
            } else {
                timeout
            };
            self.reactor.submit_and_wait(timeout)?;
            self.waker.awake();
        }
    }

    fn on_completion(&mut self, c: Completion) {
        match c.kind {
            OpKind::Accept => self.on_accept(c),
            OpKind::Recv => self.on_recv(c),
            OpKind::Send => self.shard.on_send(c.slot, c.result),
            OpKind::Wake => self.arm_wake(),
            OpKind::Cancel => {}
            OpKind::Poll => self.shard.on_hangup_poll(c.slot, c.result),
        }
    }

    fn on_accept(&mut self, c: Completion) {
        if !c.has_more() && self.shard.is_accepting() {
            self.reactor.push_accept(self.listener);
        }
        if c.result < 0 {
            let err = std::io::Error::from_raw_os_error(-c.result);
            // A listener shut down for lame-duck mode ends its accept with an error too.
            if c.result != -libc::ECANCELED && self.shard.is_accepting() {
                tracing::warn!(shard = self.shard.id.0, %err, "accept failed");
            }
            return;
        }
        let fd = c.result;
        set_nodelay(fd);
        let peer = peer_addr(fd).unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        self.shard.on_accept(fd, peer);
    }

    fn on_recv(&mut self, c: Completion) {
        let buffer = c.buffer_id();
        let data = match buffer {
            // SAFETY: the buffer is ours until `reclaim` below; nothing reclaims it earlier,
            // and the shard does not keep the slice past `on_recv`.
            Some(id) if c.result > 0 => unsafe {
                self.reactor.buffer_detached(id, c.result as usize)
            },
            _ => &[],
        };
        self.shard.on_recv(c.slot, c.result, c.has_more(), data);
        if let Some(id) = buffer {
            self.reactor.reclaim(id);
        }
    }

    /// Carries out what the shard decided this turn, in order.
    fn apply_actions(&mut self) {
        let Driver {
            shard,
            reactor,
            listener,
            ..
        } = self;
        for action in shard.take_actions() {
            match action {
                Action::Recv { slot, fd, once } => {
                    if once {
                        reactor.push_recv_once(fd, slot);
                    } else {
                        reactor.push_recv(fd, slot);
                    }
                }
                Action::CancelRecv { slot } => reactor.push_cancel_recv(slot),
                Action::PollHangup { slot, fd } => reactor.push_poll_hangup(fd, slot),
                // SAFETY: the region is the connection's in-flight half, which its `OutBuf`
                // keeps unchanged (and the shard keeps alive) until `on_send` handles the
                // completion.
                Action::Send { slot, fd, region } => unsafe {
                    reactor.push_send(fd, slot, region.ptr, region.len)
                },
                Action::Shutdown {
                    slot, fd, cancel, ..
                } => {
                    shutdown_fd(fd);
                    if cancel {
                        reactor.push_cancel_fd(fd, slot);
                    }
                }
                Action::Close { fd } => close_fd(fd),
                // SAFETY: a plain call into the global allocator, on the thread whose heap it
                // trims.
                Action::TrimHeap => unsafe { mi_collect(true) },
                Action::StopAccepting { leave_group } => {
                    if leave_group {
                        shutdown_fd(*listener);
                    } else {
                        reactor.push_cancel_fd(*listener, 0);
                    }
                }
            }
        }
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        // SAFETY: `wake_buf` is boxed and lives as long as the driver, whose ring is dropped
        // with it; only the kernel writes it while the read is armed.
        unsafe { self.reactor.push_wake_read(self.waker.eventfd(), buf) };
    }
}

fn set_nodelay(fd: RawFd) {
    let fd = BorrowedFdRef(fd);
    let sock = socket2::SockRef::from(&fd);
    let _ = sock.set_nodelay(true);
}

fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    let fd = BorrowedFdRef(fd);
    let sock = socket2::SockRef::from(&fd);
    sock.peer_addr().ok().and_then(|a| a.as_socket())
}

/// Lets socket2 borrow a raw descriptor the shard owns.
struct BorrowedFdRef(RawFd);

impl std::os::fd::AsFd for BorrowedFdRef {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the shard keeps the descriptor open for as long as the reference is used
        // (the borrow ends within the calling function, before any close).
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) }
    }
}

/// Bytes in the socket's send queue that its peer has not acknowledged (`SIOCOUTQ`); 0 when
/// the descriptor is not a connected socket.
fn send_queue_len(fd: RawFd) -> u64 {
    let mut queued: libc::c_int = 0;
    // SAFETY: plain ioctl on a descriptor the shard owns, writing one int we own.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    if rc == 0 {
        u64::try_from(queued).unwrap_or(0)
    } else {
        0
    }
}

fn shutdown_fd(fd: RawFd) {
    // SAFETY: plain syscall on a descriptor the shard owns.
    unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
}

fn close_fd(fd: RawFd) {
    // SAFETY: the shard owns the descriptor and no kernel operation refers to it any more.
    unsafe { libc::close(fd) };
}
