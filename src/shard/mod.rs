//! A shard: one thread pinned to one core. `Shard` is its logic without I/O (connections,
//! subscriptions, subject indexes, forwarding, stalls, the interest barrier); `Driver`
//! (`driver.rs`) owns the io_uring, the listener and the sockets.
//!
//! The boundary: the driver turns completions into events (`on_accept`, `on_recv`, `on_send`,
//! `on_hangup_poll`, then `end_turn` at `now`, which takes mesh batches, slow-check verdicts
//! and timers), and the shard answers with `Action`s (arm or cancel a recv, send a region of
//! a connection's out buffer, shut a socket down, close it) that the driver submits. The shard
//! owns no ring and makes no system call on a socket, so a simulator can drive it
//! (`tests/sim.rs`).
//!
//! Hot: `on_recv` → `process_input` → `on_pub` → `deliver` → `flush_dirty` runs per message.
//! Cold: accept, CONNECT, SUB/UNSUB bookkeeping, timers, reload.
//! Invariants: nothing here is shared with another thread except through `mesh` (DESIGN.md 1
//! and 3); every connection is owned by exactly one shard (2); a PING after a SUB is answered
//! only once every peer has acknowledged the interest change (5).
//!
//! Parts of the state with an invariant of their own live in their own module, behind methods
//! that keep it: `barrier::Barrier` (the interest barrier), `stall::FlowControl` (stalled
//! publishers, peers on hold), `batches::Batches` (cross-shard batches, held rests, the gate),
//! `busy_poll::BusyPoll` (spinning after light turns). The connections, subscriptions and
//! indexes are still `Shard`'s own fields: delivery borrows them apart (`Delivery`).

mod admission;
mod barrier;
mod batches;
mod busy_poll;
mod callout;
pub mod driver;
pub mod forward;
mod lame_duck;
pub mod mesh;
mod monitor;
pub mod pin;
pub mod reactor;
mod session;
mod stall;
mod sys;
mod tasks;

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use slab::Slab;

use crate::conn::{CloseReason, Conn, ConnState};
use crate::ids::{ShardId, SubKey};
use crate::protocol::{Op, ParserLimits, encode};
use crate::shared::{Limits, Shared};
use crate::subject::index::{Matches, SubjectIndex};
pub use driver::Driver;
use forward::Published;
use mesh::{Mesh, ShardMsg, Waker};

/// A cross-shard batch is handed to the mesh once it reaches this size, even mid-turn.
const FORWARD_BATCH_BYTES_MAX: usize = 256 * 1024;
/// Period of the timer sweep (keepalive, deadlines, reload checks).
const TICK: Duration = Duration::from_millis(100);
/// How long a connection closing with an error line may take to flush it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How often stalled publishers are re-checked when nothing else wakes the loop.
const STALL_POLL: Duration = Duration::from_micros(200);
/// Consumed bytes at the front of a read buffer are dropped once they pass this and half the
/// buffer.
const RBUF_COMPACT_MIN: usize = 64 * 1024;
/// A loop turn longer than this is logged: it delays every connection of the shard.
const TURN_BUDGET: Duration = Duration::from_millis(50);
/// At most one over-budget warning per shard per this interval.
const STALL_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Entries taken from each peer ring per turn, so a busy peer cannot starve our sockets.
const MESH_DRAIN_MAX: usize = 1024;

/// What the shard asks its driver to do; drained once per turn (`Shard::take_actions`).
#[derive(Clone, Copy, Debug)]
pub enum Action {
    /// Arm a recv on connection `slot`: multishot, or `once` (one buffer at most).
    Recv { slot: u32, fd: RawFd, once: bool },
    /// Cancel the connection's recv (reading is paused); its completion comes back cancelled.
    CancelRecv { slot: u32 },
    /// Watch (once) for the client hanging up while reading is paused.
    PollHangup { slot: u32, fd: RawFd },
    /// Send the connection's in-flight region (`Shard::send_region`); its out buffer keeps
    /// those bytes unchanged until `on_send` reports the completion.
    Send {
        slot: u32,
        fd: RawFd,
        region: crate::conn::outbuf::SendRegion,
    },
    /// Shut the socket down (its armed recv ends), and cancel what is armed on it when
    /// `cancel`; `reason`: why the connection closed (`None` only for one that never opened).
    Shutdown {
        slot: u32,
        fd: RawFd,
        cancel: bool,
        reason: Option<CloseReason>,
    },
    /// Close the descriptor: the kernel holds nothing of the connection any more.
    Close { fd: RawFd },
    /// Stop accepting: cancel the armed accept (graceful stop), or also shut the listener
    /// down (`leave_group`: lame-duck mode leaves the port's reuseport group).
    StopAccepting { leave_group: bool },
    /// Have the allocator give this thread's free pages back to the system (after a mass
    /// disconnect).
    TrimHeap,
}

/// Bytes in a socket's send queue that its peer has not acknowledged (the driver's
/// `SIOCOUTQ`; a simulator's model of the socket).
pub type SendQueueProbe = Box<dyn Fn(RawFd) -> u64>;

/// A subscription on this shard.
pub struct Subscription {
    pub conn: u32,
    pub account: u32,
    pub sid: Box<[u8]>,
    pub filter: Box<[u8]>,
    pub queue: Option<Box<[u8]>>,
    /// Auto-unsubscribe after this many deliveries in total (UNSUB with max).
    pub max: Option<u64>,
    pub delivered: u64,
    /// The subscriber may not receive some subjects this filter covers (a wildcard SUB over a
    /// subscribe-deny entry): check each delivery.
    pub filter_deliveries: bool,
}

impl Subscription {
    /// Whether it reached its UNSUB max: it takes no more messages and awaits removal.
    pub fn is_at_max(&self) -> bool {
        self.max.is_some_and(|max| self.delivered >= max)
    }
}

/// The indexes of one account on this shard (DESIGN.md invariant 9: one per account).
pub struct AccountIndex {
    /// Subscriptions of this shard's connections.
    pub local: SubjectIndex<SubKey>,
    /// Interest of other shards, replicated through the mesh (invariant 4).
    pub remote: SubjectIndex<ShardId>,
}

impl AccountIndex {
    fn new() -> AccountIndex {
        AccountIndex {
            local: SubjectIndex::new(),
            remote: SubjectIndex::new(),
        }
    }
}

/// The shard's logic: everything but the ring and the sockets (see the module doc).
pub struct Shard {
    pub id: ShardId,
    shared: Arc<Shared>,
    mesh: Mesh,
    waker: Arc<Waker>,
    /// I/O decided this turn, for the driver.
    actions: Vec<Action>,
    send_queue_len: SendQueueProbe,
    conns: Slab<Conn>,
    subs: Slab<Subscription>,
    accounts: Vec<AccountIndex>,
    /// Local subscription count per (account, filter, queue), to send interest on 0↔1.
    local_interest: AHashMap<Vec<u8>, u32>,
    /// Connections with output to flush this turn.
    dirty: Vec<u32>,
    /// Connections to close at the end of the current op (slow consumers found mid-delivery).
    to_close: Vec<(u32, CloseReason)>,
    /// Subscribers the current op pushed past half their `max_pending`.
    over_half: Vec<u32>,
    /// Stalled publishers and peers on hold (`stall.rs`).
    flow: stall::FlowControl,
    /// Peers the current op forwarded to, a bit each (see `stall_on_busy_peer`).
    forwarded_to: u64,
    /// Whether a turn ends awake (`busy_poll.rs`).
    busy_poll: busy_poll::BusyPoll,
    /// Subscriptions that reached their UNSUB max during delivery.
    expired: Vec<SubKey>,
    /// Cross-shard batches: this turn's, per peer, and the rests held back (`batches.rs`).
    batches: batches::Batches,
    /// The interest barrier and the acknowledgements held for it (`barrier.rs`).
    barrier: barrier::Barrier,
    /// Options and security of the current generation, refreshed on reload.
    snapshot: Arc<crate::shared::Snapshot>,
    limits: Limits,
    /// Verdicts of slow authentication checks, from the blocking pool.
    auth_results_tx: std::sync::mpsc::Sender<admission::AuthResult>,
    auth_results_rx: std::sync::mpsc::Receiver<admission::AuthResult>,
    /// Reused buffers for stream and service import matches.
    import_matches: crate::auth::ImportMatches,
    import_subject: Vec<u8>,
    import_reply: Vec<u8>,
    /// Service-import replies awaited for requests this shard routed (it owns their tokens).
    responses: crate::account::ResponseMaps,
    /// Per account: whether a publish there can reach another account (imports), so the
    /// common case skips the import tables with one load.
    crosses_accounts: Vec<bool>,
    opts_generation: u64,
    next_cid: u64,
    rng: u64,
    now: Instant,
    next_tick: Instant,
    next_stall_log: Instant,
    shutting_down: Option<Instant>,
    /// Lame-duck mode (SIGUSR2), once this shard has seen it start.
    lame_duck: Option<lame_duck::LameDuck>,
    /// Most connections held since memory was last given back (see
    /// `give_back_after_disconnects`).
    conns_peak: usize,
    /// Peers that announced `Quiesced` during a graceful stop.
    quiesced_peers: usize,
    accepting: bool,
    /// Counters, closed connections and queries of the monitoring thread (`monitor.rs`).
    monitor: monitor::ShardMonitor,
    /// Outstanding auth callouts (`callout.rs`).
    callouts: callout::Callouts,
}

impl Shard {
    /// Builds the shard's state at `now`; `seed` starts its queue-member choice. Runs on the
    /// shard's thread (or a simulator's).
    pub fn new(
        id: ShardId,
        shared: Arc<Shared>,
        mesh: Mesh,
        waker: Arc<Waker>,
        send_queue_len: SendQueueProbe,
        now: Instant,
        seed: u64,
    ) -> Shard {
        let (limits, opts_generation) = shared.limits();
        let snapshot = shared.snapshot();
        let (auth_results_tx, auth_results_rx) = std::sync::mpsc::channel();
        let peers = shared.shard_count;
        let mut shard = Shard {
            id,
            shared,
            mesh,
            waker,
            actions: Vec::with_capacity(1024),
            send_queue_len,
            conns: Slab::new(),
            subs: Slab::new(),
            accounts: vec![AccountIndex::new()],
            local_interest: AHashMap::new(),
            dirty: Vec::new(),
            to_close: Vec::new(),
            over_half: Vec::new(),
            flow: stall::FlowControl::new(peers),
            forwarded_to: 0,
            busy_poll: busy_poll::BusyPoll::new(now),
            expired: Vec::new(),
            batches: batches::Batches::new(peers),
            barrier: barrier::Barrier::new(peers),
            snapshot,
            limits,
            auth_results_tx,
            auth_results_rx,
            import_matches: crate::auth::ImportMatches::new(),
            import_subject: Vec::new(),
            import_reply: Vec::new(),
            responses: crate::account::ResponseMaps::new(),
            crosses_accounts: Vec::new(),
            opts_generation,
            next_cid: 1,
            rng: seed | 1,
            now,
            next_tick: now + TICK,
            next_stall_log: now,
            shutting_down: None,
            lame_duck: None,
            conns_peak: 0,
            quiesced_peers: 0,
            accepting: true,
            monitor: monitor::ShardMonitor::new(None, peers),
            callouts: callout::Callouts::default(),
        };
        shard.monitor = monitor::ShardMonitor::new(shard.shared.take_monitor_queries(id), peers);
        shard.crosses_accounts = crosses_accounts(&shard.snapshot);
        shard
    }

    /// The I/O decided since the last call, in order, for the driver to carry out.
    pub fn take_actions(&mut self) -> std::vec::Drain<'_, Action> {
        self.actions.drain(..)
    }

    /// Starts a turn at `now`: the clock every event of this turn reads.
    pub fn begin_turn(&mut self, now: Instant) {
        self.now = now;
        self.busy_poll.begin_turn();
    }

    /// The rest of a turn, after the socket events: takes what peers sent and the slow-check
    /// verdicts, answers monitoring, applies a reload, resumes stalled publishers, runs the
    /// timers when due, starts the sends of every connection with output and hands the batches
    /// to the mesh. Returns whether a mesh backlog remains (the driver then polls soon).
    pub fn end_turn(&mut self) -> bool {
        self.drain_mesh();
        self.drain_auth_results();
        self.answer_monitor_queries();
        self.check_reload();
        if self.flow.has_stalled() {
            self.resume_stalled();
        }
        if self.now >= self.next_tick {
            self.next_tick = self.now + TICK;
            self.expire_callouts();
            self.on_tick();
            self.check_lame_duck();
        }
        // What the server published itself this turn (auth results, monitoring replies, events
        // of closes) had no op to follow it.
        self.after_op();
        self.flush_dirty();
        self.flush_mesh()
    }

    /// How long the driver may sleep after a turn that ended at `turn_end` (`backlog`: what
    /// `end_turn` returned).
    pub fn sleep_timeout(&self, turn_end: Instant, backlog: bool) -> Duration {
        if backlog {
            Duration::from_micros(50)
        } else if self.flow.has_stalled() || self.flow.held_peers() != 0 {
            STALL_POLL
        } else {
            self.next_tick.saturating_duration_since(turn_end)
        }
    }

    /// Whether a peer this shard takes from (not on hold) has something queued for it.
    pub fn has_mesh_input(&self) -> bool {
        self.mesh.has_incoming(self.flow.held_peers())
    }

    /// The bytes of connection `slot`'s send in flight (what an `Action::Send` for it
    /// covers, less what was already written); empty when none is in flight or the slot is
    /// free. A driver without a kernel (a simulator) copies the sent bytes from here.
    pub fn in_flight(&self, slot: u32) -> &[u8] {
        self.conns
            .get(slot as usize)
            .map_or(&[], |c| c.out.in_flight())
    }

    /// Bytes connection `slot` holds in its buffers (read buffer capacity and output not yet
    /// written), for bounds checks.
    pub fn conn_buffered(&self, slot: u32) -> Option<(usize, usize)> {
        let conn = self.conns.get(slot as usize)?;
        Some((conn.rbuf.capacity(), conn.out.pending_bytes()))
    }

    /// Lets `end_turn` take mesh input only from the peers whose bit is set (all by default);
    /// a simulator delays and reorders batches between different peers with it (those from
    /// one peer stay in order).
    pub fn set_mesh_gate(&mut self, peers: u64) {
        self.batches.set_gate(peers);
    }

    /// Whether this shard still accepts connections (it stops on shutdown and in lame-duck
    /// mode).
    pub fn is_accepting(&self) -> bool {
        self.accepting
    }

    /// Whether this turn ended without sleeping (`busy_poll.rs`). A turn that received a
    /// little (a request, a reply, a CONNECT) starts a spin of `busy_poll`; turns go on
    /// without sleeping until it runs out.
    fn keep_spinning(&mut self, turn_end: Instant, timeout: Option<Duration>) -> bool {
        self.busy_poll
            .keep_spinning(turn_end, timeout, self.limits.busy_poll)
    }

    /// How long the current spin lasts after `turn_end`.
    fn spin_left(&self, turn_end: Instant) -> Duration {
        self.busy_poll.spin_left(turn_end)
    }

    /// Logs (at most every `STALL_LOG_INTERVAL`) a turn that took longer than `TURN_BUDGET`:
    /// every connection of this shard waited that long.
    fn check_turn_budget(&mut self, turn_end: Instant) {
        let took = turn_end.saturating_duration_since(self.now);
        if took > TURN_BUDGET && turn_end >= self.next_stall_log {
            self.next_stall_log = turn_end + STALL_LOG_INTERVAL;
            tracing::warn!(shard = self.id.0, ?took, "event loop turn over budget");
        }
    }

    // ---- accept ------------------------------------------------------------------------

    /// A client connected on socket `fd` from `peer`.
    pub fn on_accept(&mut self, fd: RawFd, peer: SocketAddr) {
        if self.shutting_down.is_some() {
            self.actions.push(Action::Close { fd });
            return;
        }
        self.accept_conn(fd, peer);
    }

    fn accept_conn(&mut self, fd: RawFd, peer: SocketAddr) {
        let cid = self.next_cid * self.shared.shard_count as u64 + u64::from(self.id.0);
        self.next_cid += 1;
        let limits = ParserLimits {
            max_control_line: self.limits.max_control_line,
            max_payload: self.limits.max_payload,
        };
        let conn = Conn::new(fd, cid, peer, limits, self.now, self.limits.ping_interval);
        let slot = self.conns.insert(conn) as u32;
        self.monitor.on_accept();
        let over_limit = !self.shared.try_add_connection(self.limits.max_connections);
        self.admit(slot);
        self.arm_recv(slot);
        if over_limit {
            // nats-server sends INFO first, then the error (createClient / maxConnExceeded).
            tracing::warn!("{} - cid:{} - maximum connections exceeded", peer, cid);
            self.conns[slot as usize].close_reason = Some(CloseReason::MaxConnectionsExceeded);
            // The connection was never counted, so `detach` must not uncount it.
            self.close_with_error(
                slot,
                "maximum connections exceeded",
                CloseReason::MaxConnectionsExceeded,
            );
            return;
        }
        tracing::debug!("{} - cid:{} - Client connection created", peer, cid);
    }

    // ---- receive -----------------------------------------------------------------------

    /// A recv on connection `slot` completed with `result` (bytes read, 0 at end of stream, or
    /// a negative errno); `data` holds the bytes; `more`: a multishot recv stays armed.
    pub fn on_recv(&mut self, slot: u32, result: i32, more: bool, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if !more {
            conn.recv_armed = false;
        }
        if result > 0 {
            self.busy_poll.on_recv(result as usize);
            if !data.is_empty() {
                self.on_data(slot, data);
            }
        }
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        let draining = matches!(conn.state, ConnState::Draining { .. });
        match result {
            // A draining connection still owes its error line; the send decides its end.
            r if r <= 0 && draining && r != -libc::ENOBUFS => {}
            0 => self.close(slot, CloseReason::ClientClosed),
            r if r < 0 && r != -libc::ENOBUFS && r != -libc::ECANCELED => {
                self.close(slot, CloseReason::ReadError)
            }
            _ => {
                if !more && conn.state != ConnState::Closing && !conn.input_waits() {
                    // A single read, or a multishot recv that ended (out of buffers, or the
                    // kernel's choice): re-arm, unless reading is paused.
                    self.arm_recv(slot);
                }
            }
        }
        self.maybe_release(slot);
    }

    /// Arms the connection's recv: multishot, or one read at a time for a while after a stall
    /// (a multishot recv pulls the socket's whole backlog, megabytes, before a stall can act)
    /// and until the client has logged in (so a CONNECT that needs a slow check stops reading
    /// within the read that carried it).
    fn arm_recv(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        conn.recv_armed = true;
        let once = if conn.single_reads_left > 0 {
            conn.single_reads_left -= 1;
            true
        } else {
            conn.is_admitting()
        };
        self.actions.push(Action::Recv {
            slot,
            fd: conn.fd,
            once,
        });
    }

    /// Stops reading a connection whose input now waits (`Conn::input_waits`: a CONNECT
    /// under a slow check, acknowledgements held for an interest barrier, a stall): its recv
    /// is cancelled, so TCP pushes back on the client and the read buffer holds at most the
    /// pending op plus the reads already completed. Reading resumes through
    /// `rearm_recv_if_drained` once the input runs again. While a CONNECT is checked, a poll
    /// watches for the client hanging up, so that its check is dropped rather than run.
    fn pause_recv(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        debug_assert!(conn.input_waits(), "pausing a connection whose input runs");
        if conn.recv_armed {
            self.actions.push(Action::CancelRecv { slot });
        }
        if conn.auth_pending && !conn.hangup_poll_armed && conn.is_open() {
            conn.hangup_poll_armed = true;
            self.actions.push(Action::PollHangup { slot, fd: conn.fd });
        }
    }

    /// The client of a paused connection hung up (or its socket failed). A connection whose
    /// CONNECT is still being checked is closed now, which drops its check; any other is left
    /// to its recv, which sees the end once reading resumes (its buffered ops still run).
    pub fn on_hangup_poll(&mut self, slot: u32, result: i32) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        conn.hangup_poll_armed = false;
        if result > 0 && conn.is_open() && conn.auth_pending {
            self.close(slot, CloseReason::ClientClosed);
        }
        self.maybe_release(slot);
    }

    fn on_data(&mut self, slot: u32, data: &[u8]) {
        let conn = &mut self.conns[slot as usize];
        if !conn.is_open() {
            return;
        }
        conn.last_activity = self.now;
        if self.shutting_down.is_some() {
            // Stopping: no new ops; what was accepted before is still delivered.
            return;
        }
        if conn.tls.is_some() {
            self.on_tls_data(slot, data);
            return;
        }
        let mut data = data;
        // An op split across reads: copy only the bytes that complete it, so the rest of this
        // read is parsed in place. Copying whole reads behind every split op cost a fan-in run
        // a fifth of its CPU in memmove.
        loop {
            let Some(conn) = self.conns.get_mut(slot as usize).filter(|c| c.is_open()) else {
                return;
            };
            if !conn.has_buffered_input() {
                conn.rbuf.clear();
                conn.rbuf_pos = 0;
                break;
            }
            if conn.input_waits() || data.is_empty() {
                conn.rbuf.extend_from_slice(data);
                return;
            }
            let take = completing_len(conn, data);
            conn.rbuf.extend_from_slice(&data[..take]);
            data = &data[take..];
            self.process_rbuf(slot);
        }
        // Fast path: parse straight out of the kernel's buffer, keep only the tail. A read
        // that arrives while the connection is stalled waits (the recv was cancelled when the
        // stall began; this was already on its way); the read that caused the stall runs to
        // its end, so only what follows it is copied aside.
        let conn = &self.conns[slot as usize];
        let used = if conn.input_waits() {
            0
        } else {
            self.process_input(slot, data, false)
        };
        if let Some(conn) = self.conns.get_mut(slot as usize).filter(|c| c.is_open()) {
            conn.rbuf.extend_from_slice(&data[used..]);
            reserve_for_pending_op(conn);
        }
    }

    /// Runs the ops buffered in the connection's read buffer (TLS plaintext, partial ops, or
    /// input that waited for an authentication check).
    fn process_rbuf(&mut self, slot: u32) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if !conn.has_buffered_input() || conn.input_waits() {
            return;
        }
        let mut buf = std::mem::take(&mut conn.rbuf);
        let mut pos = conn.rbuf_pos;
        pos += self.process_input(slot, &buf[pos..], true);
        // Drop consumed bytes when all are consumed, or in bulk once they are most of the
        // buffer: a publisher resumed after a stall runs a few ops at a time, and moving the
        // rest of a large buffer after each of them cost 70% of a fan-out run's CPU.
        if pos == buf.len() {
            buf.clear();
            pos = 0;
        } else if pos >= RBUF_COMPACT_MIN && pos * 2 >= buf.len() {
            buf.drain(..pos);
            pos = 0;
        }
        if let Some(conn) = self.conns.get_mut(slot as usize) {
            conn.rbuf = buf;
            conn.rbuf_pos = pos;
            reserve_for_pending_op(conn);
        }
    }

    /// Parses and runs every complete op in `data`; returns the bytes consumed. Stops early when
    /// the connection's input is paused, or at a stall when `stop_at_stall`.
    fn process_input(&mut self, slot: u32, data: &[u8], stop_at_stall: bool) -> usize {
        let mut used = 0;
        loop {
            // The op may have closed its own connection (its echo made it a slow consumer)
            // with nothing of it left in the kernel: then the slot is free.
            let Some(conn) = self.conns.get_mut(slot as usize) else {
                return used;
            };
            if !conn.is_open() || conn.is_input_paused() || (stop_at_stall && conn.stall.is_some())
            {
                return used;
            }
            match conn.parser.parse(&data[used..]) {
                Ok(Some((op, n))) => {
                    used += n;
                    if self.limits.trace {
                        crate::logging::trace::op_in(&self.conns[slot as usize], &op);
                    }
                    self.forwarded_to = 0;
                    self.on_op(slot, op);
                    self.after_op();
                    if self.over_half.is_empty() && self.forwarded_to == 0 {
                        // The common case: one test per op (the next turn of the loop checks
                        // the slot anyway).
                        continue;
                    }
                    if !self.conns.contains(slot as usize) {
                        self.over_half.clear();
                        return used;
                    }
                    if !self.over_half.is_empty() {
                        self.stall_producer(slot);
                    }
                    if self.forwarded_to != 0 {
                        self.stall_on_busy_peer(slot, self.forwarded_to);
                    }
                }
                Ok(None) => return used,
                Err(err) => {
                    let conn = &self.conns[slot as usize];
                    tracing::debug!(
                        "{} - cid:{} - Client parser ERROR: {:?}",
                        conn.peer,
                        conn.cid,
                        err
                    );
                    let limits = ParserLimits {
                        max_control_line: self.limits.max_control_line,
                        max_payload: self.limits.max_payload,
                    };
                    crate::logging::client::protocol_error(conn, err, used, &data[used..], limits);
                    match err.err_line() {
                        Some(line) => {
                            let conn = &mut self.conns[slot as usize];
                            if self.limits.trace {
                                crate::logging::trace::line_out(conn, line);
                            }
                            conn.out.pending_mut().extend_from_slice(line);
                            self.drain_then_close(slot, CloseReason::ParseError);
                        }
                        None => self.close(slot, CloseReason::ParseError),
                    }
                    return used;
                }
            }
        }
    }

    /// Work deferred out of the delivery loop: slow consumers and expired subscriptions. Runs
    /// after every op and every forwarded message, and once a turn for what the server
    /// published itself (replies to `$SYS` requests, events); a close can publish an event, so
    /// it loops until both lists are empty.
    fn after_op(&mut self) {
        loop {
            self.remove_expired();
            let Some((slot, reason)) = self.to_close.pop() else {
                return;
            };
            self.close(slot, reason);
        }
    }

    /// Removes the subscriptions that reached their UNSUB max during delivery. Also run before
    /// a SUB or UNSUB, so that a sid whose subscription ended is free (nats-server removes
    /// such a subscription as it delivers the last message). A key whose subscription is gone,
    /// or whose slot holds a newer subscription, is skipped.
    fn remove_expired(&mut self) {
        while let Some(key) = self.expired.pop() {
            if self
                .subs
                .get(key.0 as usize)
                .is_some_and(Subscription::is_at_max)
            {
                self.remove_sub(key);
            }
        }
    }

    fn on_op(&mut self, slot: u32, op: Op<'_>) {
        match op {
            Op::Pub {
                subject,
                reply,
                payload,
            } => self.on_pub(
                slot,
                Published {
                    subject,
                    reply,
                    headers: &[],
                    payload,
                },
            ),
            Op::Hpub {
                subject,
                reply,
                headers,
                payload,
            } => {
                if !self.conns[slot as usize].flags.headers {
                    // nats-server closes without -ERR (processHeaderPub).
                    self.close(slot, CloseReason::ProtocolViolation);
                    return;
                }
                self.on_pub(
                    slot,
                    Published {
                        subject,
                        reply,
                        headers,
                        payload,
                    },
                )
            }
            Op::Sub {
                subject,
                queue,
                sid,
            } => self.on_sub(slot, subject, queue, sid),
            Op::Unsub { sid, max } => self.on_unsub(slot, sid, max),
            Op::Ping => self.on_ping(slot),
            Op::Pong => {
                let conn = &mut self.conns[slot as usize];
                conn.pings_out = 0;
                if let Some(sent) = conn.rtt_start {
                    conn.rtt = Some(rtt_since(self.now, sent));
                }
            }
            Op::Connect { json } => self.on_connect(slot, json),
            Op::Ok => {}
            Op::Info { json } => {
                // Ignored when it is a JSON object or null; anything else closes silently.
                if crate::protocol::check_client_info(json).is_err() {
                    self.close(slot, CloseReason::ProtocolViolation);
                }
            }
            // nats-server logs a client's -ERR and closes the connection.
            Op::Err { text } => {
                crate::logging::client::client_error(&self.conns[slot as usize], text);
                self.close(slot, CloseReason::ClientClosed)
            }
        }
    }

    // ---- publish (hot) -------------------------------------------------------------------

    fn on_pub(&mut self, slot: u32, msg: Published<'_>) {
        if crate::subject::has_control_byte(msg.subject) {
            // Refused whatever `pedantic` says: a client that drops the byte would show a
            // subject the permissions deny (issue 8 §4).
            self.send_err(slot, "Invalid Publish Subject");
            return;
        }
        let conn = &mut self.conns[slot as usize];
        conn.stats.in_msgs += 1;
        conn.stats.in_bytes += (msg.headers.len() + msg.payload.len()) as u64;
        let flags = conn.flags;
        if flags.pedantic && !crate::subject::is_valid_literal(msg.subject) {
            // nats-server 2.9.10 sends the error and still delivers the message.
            self.send_err(slot, "Invalid Publish Subject");
        }
        if !self.may_publish(slot, msg.subject) {
            return;
        }
        if !msg.reply.is_empty() && crate::account::is_reserved_reply(msg.reply) {
            crate::logging::client::reply_violation(&self.conns[slot as usize], msg.reply);
            let reply = encode::go_quote(msg.reply);
            let text = format!("Permissions Violation for Publish with Reply of {reply}");
            self.send_err(slot, &text);
            return;
        }
        self.ok_if_verbose(slot);
        let account = self.conns[slot as usize].account;
        let system_subject = msg.subject.first() == Some(&b'$');
        if system_subject && msg.subject.starts_with(callout::CALLOUT_INBOX_PREFIX) {
            self.on_callout_reply(account, &msg);
            return;
        }
        let served = system_subject && self.sys_request(slot, account, &msg);
        let echo_skip = if flags.echo {
            None
        } else {
            Some(self.conns[slot as usize].cid)
        };
        if msg.subject.starts_with(crate::account::REPLY_PREFIX) {
            let token = self.shared.replies.decode(msg.subject);
            // A reply to a request that came in through a service import.
            if token.is_some_and(|t| self.on_reply_token(t, account, &msg)) {
                return;
            }
        }
        let mut has_interest = self.route(account, &msg, echo_skip) | served;
        if self
            .crosses_accounts
            .get(account as usize)
            .copied()
            .unwrap_or(false)
        {
            has_interest |= self.route_imports(account, &msg);
        }
        if !has_interest && flags.no_responders && !msg.reply.is_empty() {
            self.send_no_responders(slot, msg.reply);
        }
    }

    /// The publish permission check: one cache lookup for a repeated subject; replies allowed
    /// by `allow_responses` are looked up apart, without touching the cache.
    #[inline]
    fn may_publish(&mut self, slot: u32, subject: &[u8]) -> bool {
        let conn = &mut self.conns[slot as usize];
        let (Some(perms), Some(cache)) = (&conn.perms, conn.perm_cache.as_mut()) else {
            return true;
        };
        if cache.can_publish(perms, subject) {
            return true;
        }
        let replied = match (perms.allow_responses(), conn.responses.as_mut()) {
            (Some(resp), Some(tracker)) => tracker.allow_reply(&resp, subject, self.now),
            _ => false,
        };
        if replied {
            return true;
        }
        crate::logging::client::publish_violation(conn, subject);
        let subject = encode::go_quote(subject);
        self.send_err(
            slot,
            &format!("Permissions Violation for Publish to {subject}"),
        );
        false
    }

    /// Delivers `msg` to the stream importers of `account` (with their mapped subjects) and,
    /// for a service import of `account`, to the exporting account. Returns whether anyone
    /// was interested.
    fn route_imports(&mut self, account: u32, msg: &Published<'_>) -> bool {
        let snapshot = self.snapshot.clone();
        let imports = snapshot.auth.imports();
        let mut matches = std::mem::take(&mut self.import_matches);
        matches.clear();
        imports.streams_for(account, msg.subject, &mut matches);
        let mut has_interest = false;
        for (importer, subject) in matches.iter() {
            let mapped = Published { subject, ..*msg };
            has_interest |= self.route(importer, &mapped, None);
        }
        self.import_matches = matches;
        let mut subject = std::mem::take(&mut self.import_subject);
        let mut reply = std::mem::take(&mut self.import_reply);
        subject.clear();
        reply.clear();
        if let Some((exporter, response)) = imports.service_for(account, msg.subject, &mut subject)
        {
            // The responder answers on a fresh token this shard resolves back into `account`.
            let seq = (!msg.reply.is_empty()).then(|| {
                let seq = self
                    .responses
                    .insert(account, exporter, msg.reply, response, self.now);
                let token = crate::account::ReplyToken {
                    shard: self.id,
                    seq,
                };
                self.shared.replies.encode(token, &mut reply);
                seq
            });
            let mapped = Published {
                subject: &subject,
                reply: &reply,
                ..*msg
            };
            let delivered = self.route(exporter, &mapped, None);
            if let (false, Some(seq)) = (delivered, seq) {
                // No responder: nothing will answer (nats-server drops the response import).
                self.responses.forget(seq);
            }
            has_interest |= delivered;
        }
        self.import_subject = subject;
        self.import_reply = reply;
        has_interest
    }

    /// A publish in `account` on a genuine reply token: the shard that owns the token decides
    /// (`account.rs`). Returns whether the message was taken care of; `false` means it is an
    /// ordinary publish (this shard owns the token and refused it).
    fn on_reply_token(
        &mut self,
        token: crate::account::ReplyToken,
        account: u32,
        msg: &Published<'_>,
    ) -> bool {
        if token.shard == self.id {
            return self.deliver_response(token.seq, account, msg);
        }
        let owner = token.shard;
        if !self.batches.has_shard(owner) || !forward::fits(msg) {
            return false;
        }
        // What this publisher forwarded before goes first, so its order holds.
        self.flush_forward_batches(1);
        let mut record = Vec::new();
        forward::encode(&mut record, account, msg, true, &[], 0, 0);
        if !self.mesh.send(owner, ShardMsg::Response(record)) {
            tracing::warn!(
                shard = self.id.0,
                peer = owner.0,
                "cross-shard backlog full; messages dropped"
            );
        }
        true
    }

    /// Delivers a reply on a token this shard owns, if its entry accepts a publish from
    /// `account`; returns whether it did.
    fn deliver_response(&mut self, seq: u64, account: u32, msg: &Published<'_>) -> bool {
        let mut reply = std::mem::take(&mut self.import_reply);
        let route = self.responses.route(seq, account, self.now, &mut reply);
        let handled = match route {
            crate::account::ResponseRoute::Ordinary => false,
            crate::account::ResponseRoute::Deliver { importer } => {
                let mapped = Published {
                    subject: &reply,
                    ..*msg
                };
                let delivered = self.route(importer, &mapped, None);
                let ended = msg.headers.is_empty() && msg.payload.is_empty();
                self.responses.settle(seq, delivered, ended, self.now);
                true
            }
        };
        self.import_reply = reply;
        handled
    }

    /// A reply published on shard `from` on a token this shard owns.
    fn on_forwarded_response(&mut self, from: ShardId, record: &[u8]) {
        let Some(fwd) = forward::Decoder::new(record).next() else {
            return;
        };
        let token = self.shared.replies.decode(fwd.msg.subject);
        let handled = token.is_some_and(|t| {
            t.shard == self.id && self.deliver_response(t.seq, fwd.account, &fwd.msg)
        });
        if !handled {
            self.route(fwd.account, &fwd.msg, None);
        }
        if !self.over_half.is_empty() {
            self.hold_peer(from);
        }
        self.after_op();
    }

    /// Delivers `msg` in `account`: to this shard's subscribers and, once per shard, to the
    /// shards with interest. Returns whether any subscription matched anywhere.
    /// `echo_skip`: the client id of a publisher with echo off, whose own subscriptions the
    /// message skips.
    fn route(&mut self, account: u32, msg: &Published<'_>, echo_skip: Option<u64>) -> bool {
        self.ensure_account(account);
        let msg = *msg;
        let Shard {
            accounts,
            subs,
            conns,
            dirty,
            to_close,
            over_half,
            expired,
            ..
        } = self;
        let index = &mut accounts[account as usize];
        if index.local.is_empty() && index.remote.is_empty() {
            // Nobody in this account subscribes anywhere: nothing to match.
            return false;
        }
        let local = index.local.matches(msg.subject);
        let has_peers = self.mesh.peer_count() > 0;
        let remote = if has_peers {
            Some(index.remote.matches(msg.subject))
        } else {
            None
        };
        let has_interest = !local.is_empty() || remote.is_some_and(|r| !r.is_empty());
        let mut out = Delivery {
            conns,
            subs,
            dirty,
            to_close,
            over_half,
            expired,
            limits: &self.limits,
            now: self.now,
        };
        for &key in &local.plain {
            out.deliver_one(key, &msg, echo_skip);
        }
        let mut picks = QueuePicks::new();
        let mut tried: u64 = 0;
        for group in &local.queues {
            let remote_members = remote
                .and_then(|r| r.queues.iter().find(|g| g.name == group.name))
                .map_or(&[][..], |g| &g.members[..]);
            // One draw over local members and remote shards, so a group spread over shards
            // is served by all of them (a remote shard counts as one candidate).
            let choice = (next_random(&mut self.rng)
                % (group.members.len() + remote_members.len()) as u64)
                as usize;
            match choice.checked_sub(group.members.len()) {
                None => {
                    let delivered = out.deliver_queue(&group.members, choice, &msg, echo_skip);
                    if !delivered && !remote_members.is_empty() {
                        // No local member could take it (echo off, permissions): another
                        // shard's members may.
                        tried |= 1 << self.id.0;
                        let r = (next_random(&mut self.rng) % remote_members.len() as u64) as usize;
                        picks.push((remote_members[r], &group.name));
                    }
                }
                Some(r) => picks.push((remote_members[r], &group.name)),
            }
        }
        if let Some(remote) = remote.filter(|r| !r.is_empty()) {
            for group in &remote.queues {
                if local.queues.iter().any(|g| g.name == group.name) {
                    continue;
                }
                let choice = (next_random(&mut self.rng) % group.members.len() as u64) as usize;
                picks.push((group.members[choice], &group.name));
            }
            self.forwarded_to |= forward_to_peers(
                &remote.plain,
                &picks,
                self.batches.outgoing_mut(),
                account,
                &msg,
                tried,
                echo_skip.unwrap_or(0),
            );
        }
        drop(picks);
        if has_peers {
            self.flush_forward_batches(FORWARD_BATCH_BYTES_MAX);
        }
        has_interest
    }

    /// Sends the 503 status message to the publisher's own subscription on its reply subject
    /// (nats-server `sendNoResponders`... via processInboundClientMsg).
    fn send_no_responders(&mut self, slot: u32, reply: &[u8]) {
        let Shard {
            accounts,
            subs,
            conns,
            dirty,
            ..
        } = self;
        let account = conns[slot as usize].account;
        let matches = accounts[account as usize].local.matches(reply);
        let conn = &mut conns[slot as usize];
        for key in matches
            .plain
            .iter()
            .chain(matches.queues.iter().flat_map(|q| q.members.iter()))
        {
            let sub = &subs[key.0 as usize];
            if sub.conn != slot {
                continue;
            }
            encode::hmsg(
                conn.out.pending_mut(),
                reply,
                &sub.sid,
                b"",
                encode::NO_RESPONDERS_HEADER,
                b"",
            );
            mark_dirty(dirty, conn, slot);
            return;
        }
    }

    // ---- mesh ----------------------------------------------------------------------------

    /// Takes what peers sent, except from peers on hold; stops taking from a peer as soon as
    /// one of its messages puts it on hold.
    fn drain_mesh(&mut self) {
        if self.mesh.peer_count() == 0 {
            return;
        }
        if self.flow.held_peers() != 0 {
            self.release_peer_holds();
        }
        let peers: smallvec::SmallVec<[ShardId; 8]> = self.mesh.peers().collect();
        for peer in peers {
            if !self.batches.is_open(peer) {
                continue;
            }
            if !self.flow.is_held(peer) {
                if let Some((batch, at)) = self.batches.take_held(peer) {
                    self.run_batch(peer, batch, at);
                }
            }
            for _ in 0..MESH_DRAIN_MAX {
                if self.flow.is_held(peer) {
                    break;
                }
                let Some(msg) = self.mesh.pop(peer) else {
                    break;
                };
                self.on_shard_msg(peer, msg);
            }
        }
    }

    fn on_shard_msg(&mut self, from: ShardId, msg: ShardMsg) {
        match msg {
            ShardMsg::Messages(batch) => self.run_batch(from, batch, 0),
            ShardMsg::Response(record) => self.on_forwarded_response(from, &record),
            ShardMsg::Interest {
                account,
                filter,
                queue,
                add,
            } => {
                self.ensure_account(account);
                let remote = &mut self.accounts[account as usize].remote;
                if add {
                    remote.insert(&filter, queue.as_deref(), from);
                } else {
                    remote.remove(&filter, queue.as_deref(), from);
                }
            }
            ShardMsg::InterestBarrier { seq } => {
                self.mesh.send(from, ShardMsg::InterestAck { seq });
            }
            ShardMsg::Quiesced => self.on_peer_quiesced(),
            ShardMsg::CalloutReply {
                account,
                seq,
                payload,
            } => self.settle_callout(account, seq, &payload),
            ShardMsg::InterestAck { seq } => {
                self.barrier.on_ack(from, seq);
                self.release_pongs();
            }
        }
    }

    /// Delivers `batch[at..]`; if a message in it puts `from` on hold, keeps the rest for when
    /// the hold ends.
    fn run_batch(&mut self, from: ShardId, batch: Vec<u8>, at: usize) {
        let done = at + self.on_forwarded(from, &batch[at..]);
        if done < batch.len() {
            self.batches.hold_rest(from, batch, done);
        } else {
            self.mesh.recycle(from, batch);
        }
    }

    /// Delivers forwarded messages until one puts `from` on hold; returns the bytes used.
    fn on_forwarded(&mut self, from: ShardId, batch: &[u8]) -> usize {
        let mut decoder = forward::Decoder::new(batch);
        for fwd in decoder.by_ref() {
            let Some(index) = self.accounts.get_mut(fwd.account as usize) else {
                continue;
            };
            let local = index.local.matches(fwd.msg.subject);
            if local.is_empty() {
                // Nothing here matches any more (the last member left while the message was
                // on its way): its queue groups go on to a shard that still has members.
                let failed: smallvec::SmallVec<[&[u8]; 2]> = fwd.queues().collect();
                if !failed.is_empty() {
                    self.pass_queue_on(&fwd, &failed);
                }
                continue;
            }
            let mut out = Delivery {
                conns: &mut self.conns,
                subs: &mut self.subs,
                dirty: &mut self.dirty,
                to_close: &mut self.to_close,
                over_half: &mut self.over_half,
                expired: &mut self.expired,
                limits: &self.limits,
                now: self.now,
            };
            let failed = out.deliver_forwarded(local, &fwd, &mut self.rng);
            let held = !self.over_half.is_empty() && self.hold_peer(from);
            if !failed.is_empty() {
                self.pass_queue_on(&fwd, &failed);
            }
            self.after_op();
            if held {
                break;
            }
        }
        batch.len() - decoder.remaining()
    }

    /// None of this shard's members of these queue groups could take the message: hand it to
    /// a shard with members that has not tried yet, or drop it when none is left.
    fn pass_queue_on(&mut self, fwd: &forward::Forwarded<'_>, failed: &[&[u8]]) {
        let tried = fwd.tried | (1 << self.id.0);
        let remote = &mut self.accounts[fwd.account as usize].remote;
        let matches = remote.matches(fwd.msg.subject);
        for &name in failed {
            let Some(group) = matches.queues.iter().find(|g| &*g.name == name) else {
                continue;
            };
            let untried: smallvec::SmallVec<[ShardId; 8]> = group
                .members
                .iter()
                .copied()
                .filter(|s| tried & (1 << s.0) == 0)
                .collect();
            if untried.is_empty() {
                continue;
            }
            let pick = untried[(next_random(&mut self.rng) % untried.len() as u64) as usize];
            let batch = self.batches.for_peer(pick);
            forward::encode(
                batch,
                fwd.account,
                &fwd.msg,
                false,
                &[name],
                tried,
                fwd.no_echo,
            );
        }
    }

    /// Hands this turn's batches and barrier to the mesh; returns whether a backlog remains.
    fn flush_mesh(&mut self) -> bool {
        if self.mesh.peer_count() == 0 {
            return false;
        }
        self.flush_forward_batches(1);
        if let Some(seq) = self.barrier.take_due() {
            let peers: Vec<ShardId> = self.mesh.peers().collect();
            for peer in peers {
                self.mesh.send(peer, ShardMsg::InterestBarrier { seq });
            }
        }
        self.mesh.flush()
    }

    /// Hands every cross-shard batch of at least `len_min` bytes to the mesh (1 at the end of
    /// a turn; `FORWARD_BATCH_BYTES_MAX` mid-turn, so one turn's batch stays bounded).
    fn flush_forward_batches(&mut self, len_min: usize) {
        for (peer, batch) in self.batches.outgoing_mut().iter_mut().enumerate() {
            if batch.is_empty() || batch.len() < len_min {
                continue;
            }
            // The next batch goes into a buffer the peer handed back (see `mesh`).
            let full = std::mem::replace(batch, self.mesh.spare(ShardId(peer as u16)));
            if !self
                .mesh
                .send(ShardId(peer as u16), ShardMsg::Messages(full))
            {
                tracing::warn!(
                    shard = self.id.0,
                    peer,
                    "cross-shard backlog full; messages dropped"
                );
            }
        }
    }

    fn ensure_account(&mut self, account: u32) {
        while self.accounts.len() <= account as usize {
            self.accounts.push(AccountIndex::new());
        }
    }

    // ---- output --------------------------------------------------------------------------

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &slot in &dirty {
            let Some(conn) = self.conns.get_mut(slot as usize) else {
                continue;
            };
            conn.dirty = false;
            if conn.state == ConnState::Closing {
                continue;
            }
            if let Some(tls) = conn.tls.as_mut() {
                if conn
                    .out
                    .seal(|plain, sealed| tls.encrypt(plain, sealed))
                    .is_err()
                {
                    self.to_close.push((slot, CloseReason::WriteError));
                    continue;
                }
            }
            if let Some(region) = conn.out.start_send(self.now) {
                // The region is the connection's in-flight half, which `OutBuf` keeps
                // unchanged until `on_send` handles the completion.
                self.actions.push(Action::Send {
                    slot,
                    fd: conn.fd,
                    region,
                });
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        // Keep the allocation; anything marked dirty during the loop above is kept too.
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// A send on connection `slot` completed: `result` bytes written, or a negative errno.
    pub fn on_send(&mut self, slot: u32, result: i32) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if result < 0 || conn.state == ConnState::Closing {
            conn.out.abort_send();
            if result < 0 {
                self.close(slot, CloseReason::WriteError);
            }
            self.maybe_release(slot);
            return;
        }
        if let Some(tls) = conn.tls.as_mut() {
            // Plaintext queued while the send was in flight goes out sealed with the next one.
            let _ = conn.out.seal(|plain, sealed| tls.encrypt(plain, sealed));
        }
        if let Some(region) = conn.out.complete(result as usize, self.now) {
            // As in `flush_dirty`.
            self.actions.push(Action::Send {
                slot,
                fd: conn.fd,
                region,
            });
        } else if let ConnState::Draining { .. } = conn.state {
            self.shutdown_socket(slot);
        }
    }

    // ---- closing ---------------------------------------------------------------------------

    /// Sends `-ERR '<text>'` and keeps the connection open.
    fn send_err(&mut self, slot: u32, text: &str) {
        let conn = &mut self.conns[slot as usize];
        if self.limits.trace {
            crate::logging::trace::err_out(conn, text);
        }
        encode::err(conn.out.pending_mut(), text);
        mark_dirty(&mut self.dirty, conn, slot);
    }

    /// Sends `-ERR '<text>'`, then closes once it is written.
    fn close_with_error(&mut self, slot: u32, text: &str, reason: CloseReason) {
        let conn = &mut self.conns[slot as usize];
        if self.limits.trace {
            crate::logging::trace::err_out(conn, text);
        }
        encode::err(conn.out.pending_mut(), text);
        self.drain_then_close(slot, reason);
    }

    fn drain_then_close(&mut self, slot: u32, reason: CloseReason) {
        let conn = &mut self.conns[slot as usize];
        if !conn.is_open() {
            return;
        }
        self.detach(slot, reason);
        let conn = &mut self.conns[slot as usize];
        conn.state = ConnState::Draining {
            deadline: self.now + DRAIN_TIMEOUT,
        };
        if conn.out.is_empty() {
            self.shutdown_socket(slot);
        } else {
            mark_dirty(&mut self.dirty, conn, slot);
        }
    }

    /// Closes now, dropping unsent output (slow consumers, read errors, client EOF).
    fn close(&mut self, slot: u32, reason: CloseReason) {
        let Some(conn) = self.conns.get(slot as usize) else {
            return;
        };
        if conn.state == ConnState::Closing {
            return;
        }
        if conn.is_open() {
            self.detach(slot, reason);
        }
        self.shutdown_socket(slot);
    }

    /// Removes the connection from every index and logs why it goes.
    fn detach(&mut self, slot: u32, reason: CloseReason) {
        let conn = &mut self.conns[slot as usize];
        let counted = conn.close_reason != Some(CloseReason::MaxConnectionsExceeded);
        conn.close_reason = Some(reason);
        conn.drop_check();
        tasks::log_close(conn, reason, &self.limits);
        if counted {
            self.record_close(slot, reason);
        }
        let conn = &mut self.conns[slot as usize];
        let keys: Vec<SubKey> = conn.subs.values().copied().collect();
        conn.held_acks = Vec::new();
        for key in keys {
            self.remove_sub(key);
        }
        if counted {
            self.shared.remove_connection();
        }
    }

    fn shutdown_socket(&mut self, slot: u32) {
        let conn = &mut self.conns[slot as usize];
        if conn.state == ConnState::Closing {
            return;
        }
        conn.state = ConnState::Closing;
        // Ends the armed recv with EOF.
        self.actions.push(Action::Shutdown {
            slot,
            fd: conn.fd,
            cancel: conn.recv_armed || conn.hangup_poll_armed,
            reason: conn.close_reason,
        });
        self.maybe_release(slot);
    }

    /// Frees the slot once the kernel holds nothing of it.
    fn maybe_release(&mut self, slot: u32) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if conn.state != ConnState::Closing || conn.outstanding_ops() > 0 {
            return;
        }
        self.actions.push(Action::Close { fd: conn.fd });
        conn.out.release();
        self.conns.remove(slot as usize);
    }

    /// Whether a graceful stop is complete (every connection gone, or its grace ran out).
    pub fn is_finished(&self) -> bool {
        match self.shutting_down {
            Some(deadline) => self.conns.is_empty() || self.now >= deadline,
            None => false,
        }
    }
}

/// Everything delivery writes to, borrowed apart from the indexes it reads.
struct Delivery<'a> {
    conns: &'a mut Slab<Conn>,
    subs: &'a mut Slab<Subscription>,
    dirty: &'a mut Vec<u32>,
    to_close: &'a mut Vec<(u32, CloseReason)>,
    /// Subscribers past their stall threshold: the publisher waits for them.
    over_half: &'a mut Vec<u32>,
    expired: &'a mut Vec<SubKey>,
    limits: &'a Limits,
    now: Instant,
}

impl Delivery<'_> {
    /// Delivers a message forwarded by another shard; returns the queue groups none of whose
    /// members here could take it.
    fn deliver_forwarded<'m>(
        &mut self,
        matches: &Matches<SubKey>,
        fwd: &forward::Forwarded<'m>,
        rng: &mut u64,
    ) -> smallvec::SmallVec<[&'m [u8]; 2]> {
        let echo_skip = (fwd.no_echo != 0).then_some(fwd.no_echo);
        if fwd.plain {
            for &key in &matches.plain {
                self.deliver_one(key, &fwd.msg, echo_skip);
            }
        }
        let mut failed = smallvec::SmallVec::new();
        for name in fwd.queues() {
            let delivered = match matches.queues.iter().find(|g| &*g.name == name) {
                Some(group) => {
                    let start = (next_random(rng) % group.members.len() as u64) as usize;
                    self.deliver_queue(&group.members, start, &fwd.msg, echo_skip)
                }
                None => false,
            };
            if !delivered {
                failed.push(name);
            }
        }
        failed
    }

    /// Delivers to one member of a queue group, starting at `start` and moving on past
    /// members that cannot take the message (echo off, closing, at their UNSUB max).
    fn deliver_queue(
        &mut self,
        members: &[SubKey],
        start: usize,
        msg: &Published<'_>,
        echo_skip: Option<u64>,
    ) -> bool {
        for i in 0..members.len() {
            let key = members[(start + i) % members.len()];
            if self.deliver_one(key, msg, echo_skip) {
                return true;
            }
        }
        false
    }

    #[inline]
    fn deliver_one(&mut self, key: SubKey, msg: &Published<'_>, echo_skip: Option<u64>) -> bool {
        let Some(sub) = self.subs.get_mut(key.0 as usize) else {
            return false;
        };
        if let Some(max) = sub.max {
            if sub.delivered >= max {
                return false;
            }
        }
        let slot = sub.conn;
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return false;
        };
        if !conn.is_open() || Some(conn.cid) == echo_skip {
            return false;
        }
        if (sub.filter_deliveries || conn.responses.is_some())
            && !may_deliver(conn, msg, sub.filter_deliveries, self.now)
        {
            return false;
        }
        if self.limits.trace {
            trace_msg_out(conn, &sub.sid, msg);
        }
        let out = conn.out.pending_mut();
        if msg.headers.is_empty() {
            encode::msg(out, msg.subject, &sub.sid, msg.reply, msg.payload);
        } else if conn.flags.headers {
            encode::hmsg(
                out,
                msg.subject,
                &sub.sid,
                msg.reply,
                msg.headers,
                msg.payload,
            );
        } else {
            // A client without header support gets the payload alone (nats-server strips).
            encode::msg(out, msg.subject, &sub.sid, msg.reply, msg.payload);
        }
        sub.delivered += 1;
        conn.stats.out_msgs += 1;
        conn.stats.out_bytes += (msg.headers.len() + msg.payload.len()) as u64;
        if sub.max.is_some_and(|max| sub.delivered >= max) {
            self.expired.push(key);
        }
        let pending = conn.out.pending_bytes();
        if pending > stall::stall_threshold(self.limits.max_pending) {
            if pending > self.limits.max_pending {
                self.to_close
                    .push((slot, CloseReason::SlowConsumerPendingBytes));
            } else {
                self.over_half.push(slot);
            }
        }
        mark_dirty(self.dirty, conn, slot);
        true
    }
}

/// `->> [MSG …]` or `->> [HMSG …]` for one delivery, as `deliver_one` encodes it.
#[cold]
fn trace_msg_out(conn: &Conn, sid: &[u8], msg: &Published<'_>) {
    let headers_len = (!msg.headers.is_empty() && conn.flags.headers).then_some(msg.headers.len());
    let total = headers_len.unwrap_or(0) + msg.payload.len();
    crate::logging::trace::msg_out(conn, msg.subject, sid, msg.reply, headers_len, total);
}

/// Queue groups assigned to remote shards for one message: (shard, queue name).
type QueuePicks<'a> = smallvec::SmallVec<[(ShardId, &'a std::rc::Rc<[u8]>); 4]>;

/// Adds this message once to the batch of every peer shard that has plain interest or was
/// picked for a queue group.
fn forward_to_peers(
    plain: &[ShardId],
    picks: &QueuePicks<'_>,
    batches: &mut [Vec<u8>],
    account: u32,
    msg: &Published<'_>,
    tried: u64,
    no_echo: u64,
) -> u64 {
    if !forward::fits(msg) || !forward::queues_fit(picks.iter().map(|(_, name)| &***name)) {
        // Unreachable within the protocol's int32 limits (see `forward`); never corrupt a batch.
        tracing::warn!("message with a field over 4 GiB not forwarded to other shards");
        return 0;
    }
    let mut plain_mask: u64 = 0;
    for shard in plain {
        plain_mask |= 1 << shard.0;
    }
    let mut targets = plain_mask;
    for (shard, _) in picks {
        targets |= 1 << shard.0;
    }
    let all_targets = targets;
    let mut names: smallvec::SmallVec<[&[u8]; 4]> = smallvec::SmallVec::new();
    while targets != 0 {
        let shard = targets.trailing_zeros() as u16;
        targets &= targets - 1;
        names.clear();
        names.extend(
            picks
                .iter()
                .filter(|(s, _)| s.0 == shard)
                .map(|(_, n)| &***n),
        );
        let plain = plain_mask & (1 << shard) != 0;
        forward::encode(
            &mut batches[usize::from(shard)],
            account,
            msg,
            plain,
            &names,
            tried,
            no_echo,
        );
    }
    all_targets
}

/// The subscriber side of permissions: subjects its wildcard SUB covers but it may not
/// receive are dropped, and reply subjects are remembered for `allow_responses`.
fn may_deliver(conn: &mut Conn, msg: &Published<'_>, filter: bool, now: Instant) -> bool {
    let Some(perms) = conn.perms.as_ref() else {
        return true;
    };
    if filter {
        if let Some(cache) = conn.perm_cache.as_mut() {
            if !cache.can_deliver(perms, msg.subject) {
                return false;
            }
        }
    }
    if !msg.reply.is_empty() {
        if let (Some(resp), Some(tracker)) = (perms.allow_responses(), conn.responses.as_mut()) {
            tracker.record(&resp, msg.reply, now);
        }
    }
    true
}

/// Which accounts can send a publish into another one (see `Shard::crosses_accounts`).
fn crosses_accounts(snapshot: &crate::shared::Snapshot) -> Vec<bool> {
    let imports = snapshot.auth.imports();
    (0..snapshot.auth.accounts().len() as u32)
        .map(|a| imports.has_imports_from_or_to(a))
        .collect()
}

#[inline]
fn mark_dirty(dirty: &mut Vec<u32>, conn: &mut Conn, slot: u32) {
    if !conn.dirty {
        conn.dirty = true;
        dirty.push(slot);
    }
}

/// xorshift64: queue member choice needs spread, not cryptographic strength.
#[inline]
/// nats-server `computeRTT`: the time since `start`, at least a nanosecond (0 means "none").
fn rtt_since(now: Instant, start: Instant) -> Duration {
    now.saturating_duration_since(start)
        .max(Duration::from_nanos(1))
}

fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *state = x;
    x
}

/// How many bytes of `data` to append to the connection's partial op so it can complete: the
/// rest of an awaited payload, or the rest of a control line. All of `data` when that is less.
fn completing_len(conn: &Conn, data: &[u8]) -> usize {
    let buffered = conn.rbuf.len() - conn.rbuf_pos;
    let take = match conn.parser.bytes_needed() {
        Some(total) => total.saturating_sub(buffered),
        None => memchr::memchr(b'\n', data).map_or(data.len(), |i| i + 1),
    };
    if take == 0 {
        data.len()
    } else {
        take.min(data.len())
    }
}

/// Grows the read buffer once for a large payload instead of doubling repeatedly.
fn reserve_for_pending_op(conn: &mut Conn) {
    if let Some(needed) = conn.parser.bytes_needed() {
        // `needed` counts from the first unconsumed byte.
        let total = conn.rbuf_pos + needed;
        if total > conn.rbuf.capacity() {
            let extra = total - conn.rbuf.len();
            conn.rbuf.reserve_exact(extra);
        }
    }
}
