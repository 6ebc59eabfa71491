//! Lame-duck mode on one shard (SIGUSR2; nats-server `lameDuckMode`): stop accepting, tell the
//! clients (an INFO with `"ldm":true`, so they reconnect elsewhere), then, once the control
//! side says the grace period is over, close them spread over the rest of
//! `lame_duck_duration`. The last shard to close its last client wakes the control thread,
//! which then stops the server.
//!
//! Cold: `check_lame_duck` runs on the tick (every 100 ms) and does nothing until lame-duck
//! mode starts. Invariant: once announced, the shard never accepts again; it closes every
//! connection it holds, at least one per `CLOSE_INTERVAL_MAX` (as nats-server, which never
//! sleeps more than a second between two closes).

use std::time::{Duration, Instant};

use crate::conn::CloseReason;
use crate::protocol::encode;
use crate::shard::{Shard, mark_dirty};
use crate::shared::LameDuckPhase;

/// Longest wait between two closes (nats-server sleeps at most a second between clients).
const CLOSE_INTERVAL_MAX: Duration = Duration::from_secs(1);
/// Shortest closing span (nats-server: a duration minus grace period under 1 s becomes 1 s).
const CLOSE_SPAN_MIN: Duration = Duration::from_secs(1);

/// This shard's progress through lame-duck mode.
#[derive(Debug)]
pub(super) struct LameDuck {
    /// Set when closing starts: the time, the pace and how many were closed so far.
    closing: Option<Closing>,
    /// Whether this shard has reported that it holds no more clients.
    done: bool,
}

#[derive(Debug)]
struct Closing {
    start: Instant,
    interval: Duration,
    closed: u64,
}

impl Shard {
    /// Follows the control side's lame-duck phase (called on the tick).
    pub(super) fn check_lame_duck(&mut self) {
        let phase = self.shared.lame_duck_phase();
        if phase == LameDuckPhase::Off {
            return;
        }
        if self.lame_duck.is_none() {
            self.enter_lame_duck();
        }
        if phase == LameDuckPhase::Closing {
            self.close_lame_duck_clients();
        }
    }

    /// Stops accepting on this shard's listener and sends every client the lame-duck INFO.
    fn enter_lame_duck(&mut self) {
        self.lame_duck = Some(LameDuck {
            closing: None,
            done: false,
        });
        self.accepting = false;
        // Shutting the listening socket down takes it out of the port's reuseport group, so
        // new clients are refused (as nats-server closes its listener) instead of waiting in
        // a backlog nobody accepts from; the armed accept ends with an error.
        self.actions
            .push(crate::shard::Action::StopAccepting { leave_group: true });
        let snapshot = self.snapshot.clone();
        let slots: Vec<u32> = self.conns.iter().map(|(slot, _)| slot as u32).collect();
        for slot in slots {
            let conn = &mut self.conns[slot as usize];
            // nats-server sends the async INFO only to clients past CONNECT.
            if !conn.is_open() || !conn.connected {
                continue;
            }
            let info = self
                .shared
                .lame_duck_info_json(&snapshot, conn.cid, &conn.peer);
            encode::info(conn.out.pending_mut(), &info);
            mark_dirty(&mut self.dirty, conn, slot);
        }
    }

    /// Closes the clients that are due, one per interval, then reports when none is left.
    fn close_lame_duck_clients(&mut self) {
        let now = self.now;
        let open = self.conns.iter().filter(|(_, c)| c.is_open()).count();
        let Some(ldm) = self.lame_duck.as_mut() else {
            return;
        };
        let closing = ldm.closing.get_or_insert_with(|| {
            let opts = &self.snapshot.opts;
            let span = opts
                .lame_duck_duration
                .saturating_sub(opts.lame_duck_grace_period)
                .max(CLOSE_SPAN_MIN);
            let clients = u32::try_from(open.max(1)).unwrap_or(u32::MAX);
            Closing {
                start: now,
                interval: (span / clients).min(CLOSE_INTERVAL_MAX),
                closed: 0,
            }
        });
        let elapsed = now.saturating_duration_since(closing.start);
        let due = 1 + elapsed.as_nanos() / closing.interval.as_nanos().max(1);
        let due = u64::try_from(due).unwrap_or(u64::MAX);
        let count = due.saturating_sub(closing.closed);
        closing.closed = closing.closed.saturating_add(count);
        let victims: Vec<u32> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_open())
            .map(|(slot, _)| slot as u32)
            .take(usize::try_from(count).unwrap_or(usize::MAX))
            .collect();
        for slot in victims {
            self.drain_then_close(slot, CloseReason::ServerShutdown);
        }
        let done_now = self.conns.is_empty();
        if let Some(ldm) = self.lame_duck.as_mut() {
            if done_now && !ldm.done {
                ldm.done = true;
                self.shared.lame_duck_shard_done();
            }
        }
    }
}
