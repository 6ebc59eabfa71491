//! One client connection's state: its parser, buffers, options, subscriptions and timers.
//!
//! Hot: the fields read per op (`parser`, `out`, `flags`). The socket itself is the shard's
//! business (`shard/`); nothing here does I/O or reads the clock: callers pass `now`.
//! Invariant: a connection lives its whole life on one shard (DESIGN.md invariant 2).

pub mod outbuf;

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::auth::CertIdentity;
use crate::ids::SubKey;
use crate::perms::{PermCache, Permissions, ResponseTracker};
use crate::protocol::{Parser, ParserLimits};
use crate::tls::TlsSession;

pub use outbuf::OutBuf;

/// Why a connection was closed, logged once; the names follow nats-server's `ClosedState`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum CloseReason {
    ClientClosed,
    ReadError,
    WriteError,
    ParseError,
    SlowConsumerPendingBytes,
    SlowConsumerWriteDeadline,
    StaleConnection,
    ProtocolViolation,
    MaxConnectionsExceeded,
    ServerShutdown,
    AuthenticationViolation,
    AuthenticationTimeout,
    AuthenticationExpired,
    TlsHandshakeError,
}

impl CloseReason {
    /// The words nats-server logs for this reason.
    pub fn describe(self) -> &'static str {
        match self {
            CloseReason::ClientClosed => "Client Closed",
            CloseReason::ReadError => "Read Error",
            CloseReason::WriteError => "Write Error",
            CloseReason::ParseError => "Parse Error",
            CloseReason::SlowConsumerPendingBytes => "Slow Consumer (Pending Bytes)",
            CloseReason::SlowConsumerWriteDeadline => "Slow Consumer (Write Deadline)",
            CloseReason::StaleConnection => "Stale Connection",
            CloseReason::ProtocolViolation => "Protocol Violation",
            CloseReason::MaxConnectionsExceeded => "Maximum Connections Exceeded",
            CloseReason::ServerShutdown => "Server Shutdown",
            CloseReason::AuthenticationViolation => "Authentication Failure",
            CloseReason::AuthenticationTimeout => "Authentication Timeout",
            CloseReason::AuthenticationExpired => "Authentication Expired",
            CloseReason::TlsHandshakeError => "TLS Handshake Failure",
        }
    }
}

/// A connection's traffic as nats-server counts it: messages and their header-plus-payload
/// bytes, received from the client (`in`) and delivered to it (`out`).
///
/// Laid out so that no two fields bumped together (`in_msgs` and `in_bytes` per PUB, `out_msgs`
/// and `out_bytes` per delivery) are neighbours: side by side, LLVM merged each pair into a
/// vector load, add and store of a dozen instructions where two scalar adds do (callgrind,
/// pub16: 18 instructions per message for the counters before this, see perf/results).
#[derive(Clone, Copy, Debug, Default, Eq, PartialEq)]
#[repr(C)]
pub struct ConnStats {
    pub in_msgs: u64,
    pub out_msgs: u64,
    pub in_bytes: u64,
    pub out_bytes: u64,
}

/// Options the client chose in CONNECT, as the hot path reads them.
#[derive(Clone, Copy, Debug)]
pub struct ConnFlags {
    pub verbose: bool,
    pub pedantic: bool,
    pub echo: bool,
    pub headers: bool,
    pub no_responders: bool,
}

impl Default for ConnFlags {
    fn default() -> Self {
        // nats-server `defaultOpts`: a client is verbose, pedantic and echoing until its CONNECT
        // says otherwise (a SUB before CONNECT gets `+OK`).
        ConnFlags {
            verbose: true,
            pedantic: true,
            echo: true,
            headers: false,
            no_responders: false,
        }
    }
}

/// A publisher held back because a subscriber it feeds is past half its `max_pending`
/// (nats-server `stalledWait`): its recv stays cancelled, so TCP pushes back on it.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    pub on: StallOn,
    /// When the current stall window ends (see `shard/stall.rs`).
    pub until: Instant,
}

/// What a stalled publisher waits for.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum StallOn {
    /// A subscriber on this shard (its slot and client id) to drain below half its limit;
    /// `delivered` is how many bytes its peer had received when the current stall window
    /// began.
    Subscriber { slot: u32, cid: u64, delivered: u64 },
    /// Another shard to take most of what this shard queued for it: that shard stops taking
    /// while a subscriber there is past half its limit.
    Peer(crate::ids::ShardId),
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum ConnState {
    Open,
    /// Input is ignored; the socket is shut down once `out` is empty or at `deadline`.
    Draining {
        deadline: Instant,
    },
    /// The socket is shut down; waiting for the kernel to return our buffers.
    Closing,
}

pub struct Conn {
    pub fd: RawFd,
    pub cid: u64,
    pub peer: SocketAddr,
    pub state: ConnState,
    pub parser: Parser,
    /// Received bytes; those before `rbuf_pos` are consumed. Consumed bytes are dropped in
    /// bulk (see `Shard::process_rbuf`), not after every op.
    pub rbuf: Vec<u8>,
    pub rbuf_pos: usize,
    pub out: OutBuf,
    /// Whether the connection is in the shard's list of connections to flush this turn.
    pub dirty: bool,
    pub flags: ConnFlags,
    /// Whether CONNECT was received.
    pub connected: bool,
    pub account: u32,
    /// sid -> subscription.
    pub subs: crate::subject::seed::SeededMap<Box<[u8]>, SubKey>,
    pub name: String,
    pub lang: String,
    pub version: String,
    pub created: Instant,
    pub last_activity: Instant,
    pub next_ping: Instant,
    pub pings_out: u32,
    /// Interest barrier this connection's subscriptions depend on (see `Shard::on_ping`).
    pub interest_seq: u64,
    /// `PONG` and `+OK` lines held back, in order, until peers acknowledge `interest_seq`.
    pub held_acks: Vec<&'static [u8]>,
    pub recv_armed: bool,
    /// A poll for the client hanging up is armed (while reading is paused for a CONNECT check;
    /// see `Shard::pause_recv`).
    pub hangup_poll_armed: bool,
    /// Reads left to arm one at a time (not multishot) since this publisher was last stalled,
    /// so what arrives while a stall is decided stays within one buffer.
    pub single_reads_left: u8,
    pub close_reason: Option<CloseReason>,
    /// Traffic counters for monitoring; written only by the owning shard, plain adds.
    pub stats: ConnStats,
    /// Round-trip time: first estimated as accept to CONNECT, then measured by each server
    /// PING's PONG (nats-server `rtt`).
    pub rtt: Option<Duration>,
    /// When the last server PING was sent (nats-server `rttStart`); a PONG measures `rtt` from
    /// it, and the keepalive timer tells from it whether the RTT needs measuring.
    pub rtt_start: Option<Instant>,
    /// The TLS session, when the server requires TLS.
    pub tls: Option<Box<TlsSession>>,
    /// The TLS handshake must finish by then.
    pub tls_deadline: Option<Instant>,
    /// The verified client certificate, for `verify_and_map`.
    pub cert: Option<CertIdentity>,
    /// A valid CONNECT must arrive by then (`authorization.timeout`).
    pub auth_deadline: Option<Instant>,
    /// The nonce sent in INFO, for nkey signatures.
    pub nonce: Option<String>,
    /// A slow (bcrypt) check of this connection's CONNECT is queued or running: input waits.
    pub auth_pending: bool,
    /// Shared with the slow check queued for this connection: cleared when the connection
    /// goes, so the check is dropped instead of run.
    pub check_wanted: Option<Arc<AtomicBool>>,
    /// The options of the CONNECT being checked, applied when the check succeeds.
    pub pending_flags: ConnFlags,
    /// The authenticated user (name or nkey), for logs and reloads.
    pub user: String,
    pub perms: Option<std::sync::Arc<Permissions>>,
    pub perm_cache: Option<Box<PermCache>>,
    pub responses: Option<Box<ResponseTracker>>,
    /// `connection_deadline` or a user JWT's expiry: the connection is closed then with
    /// `User Authentication Expired`.
    pub expires: Option<Instant>,
    /// The account JWT's expiry: the connection is closed then with `Account Authentication
    /// Expired`.
    pub account_expires: Option<Instant>,
    /// A JWT's subscription limit for this connection (the server's `max_subscriptions` still
    /// applies when lower).
    pub max_subs: Option<usize>,
    /// Held while connected: counts this connection in its JWT account's `limits.conn`.
    pub account_conn: Option<std::sync::Arc<crate::auth::operator::AccountConnGuard>>,
    /// Held while connected: this connection's subscriptions in its JWT account's
    /// account-wide `limits.subs`.
    pub account_subs: Option<crate::auth::operator::AccountSubs>,
    /// This publisher waits for a subscriber to drain (fast-producer stall).
    pub stall: Option<Stall>,
    /// As a subscriber: `out.written()` when it was found to have drained nothing during a
    /// whole stall window. Until a send of it completes again, it stalls no one (`is_stuck`).
    pub stuck_at: Option<u64>,
    /// The last CONNECT's options, to re-check the credentials after a reload.
    pub credentials: Option<Box<crate::protocol::ConnectOptions>>,
    /// Admitted by the auth callout: a reload does not re-check it locally.
    pub admitted_by_callout: bool,
}

impl Conn {
    pub fn new(
        fd: RawFd,
        cid: u64,
        peer: SocketAddr,
        limits: ParserLimits,
        now: Instant,
        ping_interval: Duration,
    ) -> Conn {
        Conn {
            fd,
            cid,
            peer,
            state: ConnState::Open,
            parser: Parser::new(limits),
            rbuf: Vec::new(),
            rbuf_pos: 0,
            out: OutBuf::default(),
            dirty: false,
            flags: ConnFlags::default(),
            connected: false,
            account: 0,
            subs: crate::subject::seed::map(),
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            created: now,
            last_activity: now,
            next_ping: now + ping_interval,
            pings_out: 0,
            interest_seq: 0,
            held_acks: Vec::new(),
            recv_armed: false,
            hangup_poll_armed: false,
            single_reads_left: 0,
            close_reason: None,
            stats: ConnStats::default(),
            rtt: None,
            rtt_start: None,
            tls: None,
            tls_deadline: None,
            cert: None,
            auth_deadline: None,
            nonce: None,
            auth_pending: false,
            check_wanted: None,
            pending_flags: ConnFlags::default(),
            user: String::new(),
            perms: None,
            perm_cache: None,
            responses: None,
            expires: None,
            account_expires: None,
            max_subs: None,
            account_conn: None,
            account_subs: None,
            credentials: None,
            admitted_by_callout: false,
            stall: None,
            stuck_at: None,
        }
    }

    #[inline]
    pub fn is_open(&self) -> bool {
        self.state == ConnState::Open
    }

    /// Whether received bytes wait for the parser (a partial op, or input held back).
    #[inline]
    pub fn has_buffered_input(&self) -> bool {
        self.rbuf.len() > self.rbuf_pos
    }

    /// Gives back read-buffer capacity a burst left behind, once little is buffered (from the
    /// shard's timer: shrinking on the data path made a stalled publisher's buffer shrink and
    /// regrow, and each regrowth copied it).
    pub fn shrink_rbuf_if_idle(&mut self) {
        const IDLE_CAPACITY_MAX: usize = 64 * 1024;
        if self.rbuf.capacity() <= IDLE_CAPACITY_MAX
            || self.rbuf.len() - self.rbuf_pos > IDLE_CAPACITY_MAX / 2
        {
            return;
        }
        self.rbuf.drain(..self.rbuf_pos);
        self.rbuf_pos = 0;
        self.rbuf.shrink_to(IDLE_CAPACITY_MAX);
    }

    /// Whether this connection's ops wait: a slow CONNECT check is running, or a PONG/+OK is
    /// held for other shards' acknowledgement (later ops would answer out of order). A stall
    /// (`stall`) is apart: it lets the current read finish and holds back later ones.
    #[inline]
    pub fn is_input_paused(&self) -> bool {
        self.auth_pending || !self.held_acks.is_empty()
    }

    /// Whether input that arrives now must wait in the read buffer: ops are paused, or the
    /// connection is stalled (a read that arrives after the stall began). This is the one
    /// rule for "reading is paused": while it holds, the shard keeps no recv armed on the
    /// socket, so TCP pushes back on the client.
    #[inline]
    pub fn input_waits(&self) -> bool {
        self.is_input_paused() || self.stall.is_some()
    }

    /// Whether the connection still has to prove who it is (a CONNECT is required and none
    /// was accepted yet). It is read one buffer at a time meanwhile, so what a client that has
    /// not logged in can make the server hold is one read past its pending op.
    #[inline]
    pub fn is_admitting(&self) -> bool {
        !self.connected && self.parser.is_connect_required()
    }

    /// Tells the slow check queued for this connection, if any, that its verdict is no longer
    /// wanted (the connection is going).
    pub fn drop_check(&mut self) {
        if let Some(wanted) = self.check_wanted.take() {
            wanted.store(false, Ordering::Relaxed);
        }
    }

    /// Whether this subscriber drained nothing during a whole stall window and has not
    /// drained since: publishers that fill it are not stalled for it.
    #[inline]
    pub fn is_stuck(&self) -> bool {
        self.stuck_at == Some(self.out.written())
    }

    /// Number of kernel operations that may still touch this connection's buffers.
    pub fn outstanding_ops(&self) -> u32 {
        u32::from(self.recv_armed)
            + u32::from(self.hangup_poll_armed)
            + u32::from(self.out.is_sending())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_connection_owns_no_kernel_operations() {
        let now = Instant::now();
        let limits = ParserLimits {
            max_control_line: 4096,
            max_payload: 1 << 20,
        };
        let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut conn = Conn::new(-1, 1, peer, limits, now, Duration::from_secs(120));
        assert_eq!(conn.outstanding_ops(), 0);
        conn.recv_armed = true;
        assert_eq!(conn.outstanding_ops(), 1);
        assert!(conn.flags.echo, "echo defaults to on");
        assert!(
            conn.flags.verbose && conn.flags.pedantic,
            "nats-server defaultOpts"
        );
    }
}
