//! The shard's timers and housekeeping: keepalive PINGs, stale connections, write deadlines,
//! draining closes, option reloads and graceful shutdown; plus the close log lines.
//!
//! Cold: `on_tick` runs every `TICK` and walks the connections once; nothing here runs per
//! message. Deadlines are checked against the turn's `now`, never by cancelling a read.

use std::time::Duration;

use crate::conn::{CloseReason, Conn, ConnState};
use crate::logging::client::ClientLabel;
use crate::protocol::encode;
use crate::shard::{Limits, Shard, mark_dirty};

/// How long a graceful shutdown waits for output to drain before closing anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// nats-server `DEFAULT_RTT_MEASUREMENT_INTERVAL`: a connection whose last server PING is
/// older than this (or that never had one) gets its next timer PING even while it is busy.
const RTT_MEASUREMENT_INTERVAL: Duration = Duration::from_secs(3600);

/// Connections a shard must have held for a later fall to a quarter of them to count as a
/// mass disconnect (see `give_back_after_disconnects`).
const MASS_DISCONNECT_MIN: usize = 1024;

impl Shard {
    pub(super) fn on_tick(&mut self) {
        crate::logging::client::report_suppressed();
        self.give_back_after_disconnects();
        if self.shared.is_shutting_down() && self.shutting_down.is_none() {
            self.begin_shutdown();
        }
        let now = self.now;
        let mut stale = Vec::new();
        let mut slow = Vec::new();
        let mut expired_drains = Vec::new();
        let mut pings = Vec::new();
        let mut errors: Vec<(u32, &'static str, CloseReason)> = Vec::new();
        for (slot, conn) in self.conns.iter_mut() {
            let slot = slot as u32;
            match conn.state {
                ConnState::Draining { deadline } if now >= deadline => {
                    expired_drains.push(slot);
                    continue;
                }
                ConnState::Open => {}
                _ => continue,
            }
            if let Some(error) = deadline_passed(conn, now) {
                errors.push((slot, error.0, error.1));
                continue;
            }
            conn.out.shrink_if_idle();
            conn.shrink_rbuf_if_idle();
            if let Some(started) = conn.out.send_started() {
                if now.duration_since(started) > self.limits.write_deadline {
                    slow.push(slot);
                    continue;
                }
            }
            if now < conn.next_ping {
                continue;
            }
            conn.next_ping = now + self.limits.ping_interval;
            // nats-server processPingTimer: recent inbound activity makes the PING unneeded,
            // unless the RTT needs measuring.
            let needs_rtt = conn
                .rtt_start
                .is_none_or(|sent| now.duration_since(sent) > RTT_MEASUREMENT_INTERVAL);
            if !needs_rtt && now.duration_since(conn.last_activity) < self.limits.ping_interval {
                continue;
            }
            if conn.pings_out + 1 > self.limits.ping_max {
                stale.push(slot);
            } else {
                conn.pings_out += 1;
                pings.push(slot);
            }
        }
        for slot in pings {
            let conn = &mut self.conns[slot as usize];
            if self.limits.trace {
                crate::logging::trace::line_out(conn, encode::PING);
            }
            conn.out.pending_mut().extend_from_slice(encode::PING);
            conn.rtt_start = Some(self.now);
            mark_dirty(&mut self.dirty, conn, slot);
        }
        for slot in stale {
            self.close_with_error(slot, "Stale Connection", CloseReason::StaleConnection);
        }
        for (slot, text, reason) in errors {
            if text.is_empty() {
                self.close(slot, reason);
            } else {
                self.close_with_error(slot, text, reason);
            }
        }
        for slot in slow {
            self.close(slot, CloseReason::SlowConsumerWriteDeadline);
        }
        for slot in expired_drains {
            self.shutdown_socket(slot);
        }
    }

    /// After a mass disconnect (down to a quarter of the connections held since the last
    /// time, at least `MASS_DISCONNECT_MIN` of them), gives back what the departed left
    /// behind: the connection and subscription slabs past their last live slot, the per-turn
    /// vectors, and the pages the allocator keeps for this thread (freed connections' buffers).
    /// An idle shard does not allocate, so without this the allocator never purges them.
    fn give_back_after_disconnects(&mut self) {
        let live = self.conns.len();
        self.conns_peak = self.conns_peak.max(live);
        if self.conns_peak < MASS_DISCONNECT_MIN || live > self.conns_peak / 4 {
            return;
        }
        self.conns_peak = live;
        self.conns.shrink_to_fit();
        self.subs.shrink_to_fit();
        for list in [&mut self.dirty, &mut self.over_half] {
            list.shrink_to_fit();
        }
        self.to_close.shrink_to_fit();
        self.barrier.shrink_to_fit();
        self.flow.shrink_to_fit();
        self.local_interest.shrink_to_fit();
        self.actions.push(crate::shard::Action::TrimHeap);
        tracing::debug!(
            shard = self.id.0,
            live,
            slots = self.conns.capacity(),
            "mass disconnect: memory given back"
        );
    }

    /// Picks up options changed by a reload (SIGHUP); they apply to new connections, and the
    /// limits read per message (max_pending, trace) apply at once.
    pub(super) fn check_reload(&mut self) {
        let generation = self.shared.opts_generation();
        if generation == self.opts_generation {
            return;
        }
        let (limits, generation) = self.shared.limits();
        self.limits = limits;
        self.opts_generation = generation;
        let snapshot = self.shared.snapshot();
        let auth_changed = !std::sync::Arc::ptr_eq(&snapshot.auth, &self.snapshot.auth);
        let old = std::mem::replace(&mut self.snapshot, snapshot);
        self.crosses_accounts = super::crosses_accounts(&self.snapshot);
        if auth_changed {
            // Pending service-import replies keep their accounts, by name.
            let (old, new) = (&old.auth, &self.snapshot.auth);
            self.responses
                .remap_accounts(|id| new.account_id(&old.accounts().get(id as usize)?.name));
            self.reauthorize_all();
        }
    }

    /// Graceful stop, phase 1: stop accepting and stop reading client ops, hand what this
    /// shard has forwarded to the mesh, and tell every peer nothing more will come
    /// (`Quiesced`, after the last batch on the same ring). Phase 2 (`on_peer_quiesced`)
    /// closes the clients once every peer said so, so messages in flight between shards still
    /// reach their subscribers.
    fn begin_shutdown(&mut self) {
        self.shutting_down = Some(self.now + SHUTDOWN_GRACE);
        self.accepting = false;
        self.actions
            .push(crate::shard::Action::StopAccepting { leave_group: false });
        self.flush_forward_batches(1);
        let peers: Vec<_> = self.mesh.peers().collect();
        for peer in peers {
            self.mesh.send(peer, crate::shard::mesh::ShardMsg::Quiesced);
        }
        if self.quiesced_peers >= self.mesh.peer_count() {
            self.close_all_for_shutdown();
        }
    }

    /// A peer will send no more messages; once all have said so, close every client.
    pub(super) fn on_peer_quiesced(&mut self) {
        self.quiesced_peers += 1;
        if self.shutting_down.is_some() && self.quiesced_peers >= self.mesh.peer_count() {
            self.close_all_for_shutdown();
        }
    }

    fn close_all_for_shutdown(&mut self) {
        let slots: Vec<u32> = self.conns.iter().map(|(slot, _)| slot as u32).collect();
        for slot in slots {
            self.drain_then_close(slot, CloseReason::ServerShutdown);
        }
    }
}

const USER_EXPIRED: (&str, CloseReason) = (
    "User Authentication Expired",
    CloseReason::AuthenticationExpired,
);

/// The error line and reason for a connection past one of its deadlines: TLS handshake
/// (closed without a word, as nats-server), authentication (not admitted in time, a CONNECT
/// whose slow check is still queued or running included: the timeout bounds the whole
/// admission), `connection_deadline` or a user JWT's expiry, the account JWT's expiry.
fn deadline_passed(conn: &Conn, now: std::time::Instant) -> Option<(&'static str, CloseReason)> {
    if conn.tls_deadline.is_some_and(|d| now >= d) {
        return Some(("", CloseReason::TlsHandshakeError));
    }
    if !conn.connected && conn.auth_deadline.is_some_and(|d| now >= d) {
        return Some(("Authentication Timeout", CloseReason::AuthenticationTimeout));
    }
    // Both passed within one tick: the one that passed first speaks.
    let user = conn.expires.filter(|d| now >= *d);
    let account = conn.account_expires.filter(|d| now >= *d);
    match (user, account) {
        (Some(u), Some(a)) if u < a => Some(USER_EXPIRED),
        (_, Some(_)) => Some((
            "Account Authentication Expired",
            CloseReason::AuthenticationExpired,
        )),
        (Some(_), None) => Some(USER_EXPIRED),
        (None, None) => None,
    }
}

/// Logs a close in nats-server's words (debug for ordinary closes, as nats-server does;
/// slow consumers and stale connections at info/warn since operators look for them).
pub(super) fn log_close(conn: &Conn, reason: CloseReason, limits: &Limits) {
    match reason {
        CloseReason::SlowConsumerPendingBytes => {
            crate::logging::client::slow_consumer_pending(conn, limits.max_pending)
        }
        CloseReason::SlowConsumerWriteDeadline => {
            let pending = conn.out.pending_bytes();
            crate::logging::client::slow_consumer_deadline(conn, limits.write_deadline, pending)
        }
        CloseReason::StaleConnection => {
            tracing::debug!(
                "{} - Stale Client Connection - Closing",
                ClientLabel::of(conn)
            )
        }
        _ => {}
    }
    tracing::debug!(
        "{} - Client connection closed: {}",
        ClientLabel::of(conn),
        reason.describe()
    );
}
