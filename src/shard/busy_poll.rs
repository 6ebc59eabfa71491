//! Busy-poll: whether a turn ends awake, spinning for the next message, instead of sleeping
//! (`Limits::busy_poll`).
//!
//! Hot: `on_recv` runs per read (one add). Cold: the rest runs once per turn.
//! Invariant: a spin starts only at the end of a light turn, one that received some bytes but
//! at most `LIGHT_TURN_BYTES` (a request, a reply, a CONNECT), and lasts `busy_poll` from that
//! turn's end; bulk traffic, whose turns read kilobytes, never starts one.

use std::time::{Duration, Instant};

/// A turn that received at most this much is request/reply-like: the shard spins for the next
/// message before sleeping. Bulk publishers' turns read far more.
const LIGHT_TURN_BYTES: usize = 2048;

/// This turn's received bytes and the end of the current spin.
pub(super) struct BusyPoll {
    /// Bytes received this turn.
    turn_recv_bytes: usize,
    /// Turns end without sleeping until then.
    spin_until: Instant,
}

impl BusyPoll {
    pub(super) fn new(now: Instant) -> BusyPoll {
        BusyPoll {
            turn_recv_bytes: 0,
            spin_until: now,
        }
    }

    /// A turn starts: nothing received yet.
    #[inline]
    pub(super) fn begin_turn(&mut self) {
        self.turn_recv_bytes = 0;
    }

    /// A read of `bytes` completed this turn.
    #[inline]
    pub(super) fn on_recv(&mut self, bytes: usize) {
        self.turn_recv_bytes += bytes;
    }

    /// Whether the turn that ended at `turn_end` ends awake (see the module doc); `timeout`:
    /// how long the driver would sleep (`Some(ZERO)`: it will not sleep anyway).
    pub(super) fn keep_spinning(
        &mut self,
        turn_end: Instant,
        timeout: Option<Duration>,
        busy_poll: Duration,
    ) -> bool {
        if busy_poll.is_zero() || timeout == Some(Duration::ZERO) {
            return false;
        }
        if self.turn_recv_bytes > 0 && self.turn_recv_bytes <= LIGHT_TURN_BYTES {
            self.spin_until = turn_end + busy_poll;
        }
        turn_end < self.spin_until
    }

    /// How much of the current spin is left after `turn_end`.
    pub(super) fn spin_left(&self, turn_end: Instant) -> Duration {
        self.spin_until.saturating_duration_since(turn_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPIN: Duration = Duration::from_micros(50);

    #[test]
    fn a_light_turn_starts_a_spin_and_a_bulk_turn_does_not() {
        let t0 = Instant::now();
        let mut busy = BusyPoll::new(t0);
        busy.begin_turn();
        busy.on_recv(LIGHT_TURN_BYTES + 1);
        assert!(!busy.keep_spinning(t0, None, SPIN));
        busy.begin_turn();
        busy.on_recv(100);
        assert!(busy.keep_spinning(t0, None, SPIN));
        assert_eq!(busy.spin_left(t0), SPIN);
        // An idle turn inside the spin stays awake; one past its end sleeps.
        busy.begin_turn();
        assert!(busy.keep_spinning(t0 + SPIN / 2, None, SPIN));
        assert!(!busy.keep_spinning(t0 + SPIN, None, SPIN));
    }

    #[test]
    fn no_spin_when_off_or_when_the_driver_will_not_sleep() {
        let t0 = Instant::now();
        let mut busy = BusyPoll::new(t0);
        busy.on_recv(10);
        assert!(!busy.keep_spinning(t0, None, Duration::ZERO));
        assert!(!busy.keep_spinning(t0, Some(Duration::ZERO), SPIN));
    }
}
