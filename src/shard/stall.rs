//! Fast producers, slower subscribers (nats-server's `stalledWait`): a publisher whose op
//! pushed a subscriber past half its `max_pending` stops reading for a while, so TCP pushes back
//! on it instead of the subscriber being closed as a slow consumer.
//!
//! Warm: `stall_producer` and `stall_on_busy_peer` run after an op that filled a subscriber or
//! forwarded to a peer shard; `resume_stalled` and `release_peer_holds` run once a turn while
//! anything is stalled or held.
//! Across shards the push-back is indirect: the subscriber's shard stops taking from the
//! publisher's shard (`hold_peer`), whose queue for it then grows, and the publishing shard
//! stalls every publisher that forwards into that queue (`stall_on_busy_peer`).

use std::time::{Duration, Instant};

use slab::Slab;

use crate::conn::{Conn, Stall, StallOn};
use crate::shard::{Shard, ShardId};

/// Pending bytes past which a subscriber's publishers wait: half of `max_pending`, as
/// nats-server, but at most `STALL_PENDING_MAX`. A few MiB keep a socket busy; more only holds
/// memory (64 MiB `max_pending` would let every subscriber hold 32 MiB before any pushback).
pub(super) fn stall_threshold(max_pending: usize) -> usize {
    (max_pending / 2).min(STALL_PENDING_MAX)
}

/// See `stall_threshold`.
const STALL_PENDING_MAX: usize = 4 * 1024 * 1024;

/// The longest a publisher waits for a peer shard that is behind. The peer's own holds are
/// bounded by `stall_duration`, so it catches up well before this unless it is overloaded.
const PEER_STALL_MAX: Duration = Duration::from_secs(1);

/// Reads a publisher arms one at a time after a stall before it goes back to multishot recv.
const SINGLE_READS_AFTER_STALL: u8 = 64;

/// Whether the subscriber a stall or hold waits on is below `half` pending, or gone.
fn subscriber_drained(conns: &Slab<Conn>, on: StallOn, half: usize) -> bool {
    let StallOn::Subscriber { slot, cid } = on else {
        return true;
    };
    match conns.get(slot as usize) {
        Some(c) => c.cid != cid || !c.is_open() || c.out.pending_bytes() <= half,
        None => true,
    }
}

/// How long a publisher waits (nats-server `stallDuration`): 100 µs at the threshold, growing
/// by 100 µs per tenth of the threshold above it, and 1 s at `max_pending`.
pub(super) fn stall_duration(pending: usize, max_pending: usize) -> Duration {
    const MIN: Duration = Duration::from_micros(100);
    const MAX: Duration = Duration::from_secs(1);
    let threshold = stall_threshold(max_pending);
    if pending >= max_pending {
        return MAX;
    }
    if pending <= threshold || threshold < 10 {
        return MIN;
    }
    let steps = ((pending - threshold) / (threshold / 10)) as u32;
    (MIN + MIN * steps).min(MAX)
}

impl Shard {
    /// The op just run pushed a subscriber past half its `max_pending`: this publisher stops
    /// reading (its recv is cancelled, so TCP pushes back on it) until that subscriber drains
    /// below half, or for `stall_duration` at most. A publisher is never stalled on itself.
    /// The rest of the read that caused the stall still runs, in place; reads that arrive
    /// after it wait in the read buffer until the stall ends. For a while after a stall the
    /// publisher's reads are armed one at a time, so that little arrives after the next one.
    pub(super) fn stall_producer(&mut self, slot: u32) {
        if self.conns[slot as usize].stall.is_some() {
            self.over_half.clear();
            return;
        }
        let Some((consumer, pending)) = self.fullest_over_half(Some(slot)) else {
            return;
        };
        let cid = self.conns[consumer as usize].cid;
        let until = self.now + stall_duration(pending, self.limits.max_pending);
        self.stall(
            slot,
            StallOn::Subscriber {
                slot: consumer,
                cid,
            },
            until,
        );
    }

    /// Takes `over_half` and returns the subscriber in it (other than `except`) with the most
    /// bytes pending, and how many.
    fn fullest_over_half(&mut self, except: Option<u32>) -> Option<(u32, usize)> {
        let over_half = std::mem::take(&mut self.over_half);
        let fullest = over_half
            .iter()
            .copied()
            .filter(|&c| Some(c) != except)
            .filter_map(|c| Some((c, self.conns.get(c as usize)?.out.pending_bytes())))
            .max_by_key(|&(_, pending)| pending);
        self.over_half = over_half;
        self.over_half.clear();
        fullest
    }

    /// The op just run forwarded to the peers in `mask`: if one of them is behind by more than
    /// the stall threshold (it stopped taking because a subscriber there is full), this
    /// publisher stops reading until that peer catches up, as for a subscriber on this shard.
    pub(super) fn stall_on_busy_peer(&mut self, slot: u32, mask: u64) {
        if self.conns[slot as usize].stall.is_some() {
            return;
        }
        let threshold = stall_threshold(self.limits.max_pending);
        let mut peers = mask;
        while peers != 0 {
            let peer = ShardId(peers.trailing_zeros() as u16);
            peers &= peers - 1;
            if self.peer_queued_bytes(peer) > threshold {
                self.stall(slot, StallOn::Peer(peer), self.now + PEER_STALL_MAX);
                return;
            }
        }
    }

    /// Bytes this shard has for `peer` that it has not taken: this turn's batch, our backlog,
    /// and its ring.
    fn peer_queued_bytes(&self, peer: ShardId) -> usize {
        self.forward[usize::from(peer.0)].len() + self.mesh.queued_bytes(peer)
    }

    fn stall(&mut self, slot: u32, on: StallOn, until: Instant) {
        let conn = &mut self.conns[slot as usize];
        if conn.stall.is_some() || !conn.is_open() {
            return;
        }
        conn.stall = Some(Stall { on, until });
        conn.single_reads_left = SINGLE_READS_AFTER_STALL;
        self.pause_recv(slot);
        self.stalled.push(slot);
    }

    /// A forwarded message from `from` pushed a subscriber here past half its limit: stop
    /// taking from `from` until that subscriber drains (or `stall_duration`). The peer then
    /// falls behind and stalls the publishers that feed us (`stall_on_busy_peer`).
    pub(super) fn hold_peer(&mut self, from: ShardId) {
        let Some((consumer, pending)) = self.fullest_over_half(None) else {
            return;
        };
        let hold = &mut self.peer_holds[usize::from(from.0)];
        if hold.is_none() {
            *hold = Some(Stall {
                on: StallOn::Subscriber {
                    slot: consumer,
                    cid: self.conns[consumer as usize].cid,
                },
                until: self.now + stall_duration(pending, self.limits.max_pending),
            });
            self.held_peers |= 1 << from.0;
        }
    }

    /// Ends the holds on peers whose subscriber drained, left, or whose time ran out, and
    /// leaves the others' bits in `held_peers`.
    pub(super) fn release_peer_holds(&mut self) {
        let half = stall_threshold(self.limits.max_pending);
        let mut held = 0;
        for (peer, hold) in self.peer_holds.iter_mut().enumerate() {
            let Some(stall) = hold else { continue };
            let over = self.shutting_down.is_none()
                && self.now < stall.until
                && !subscriber_drained(&self.conns, stall.on, half);
            if over {
                held |= 1 << peer;
            } else {
                *hold = None;
            }
        }
        self.held_peers = held;
    }

    /// Re-arms the recv a pause (`pause_recv`: stall, held acknowledgement, CONNECT check)
    /// cancelled, if running the buffered input did not pause the connection again:
    /// re-arming before that would let a new burst pile up behind every op a resume runs.
    pub(super) fn rearm_recv_if_drained(&mut self, slot: u32) {
        let Some(conn) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if conn.is_open() && !conn.recv_armed && !conn.input_waits() {
            self.arm_recv(slot);
        }
    }

    /// Lets stalled publishers go once their subscriber drained, left, or the stall ran out.
    pub(super) fn resume_stalled(&mut self) {
        let now = std::time::Instant::now();
        let mut stalled = std::mem::take(&mut self.stalled);
        let half = stall_threshold(self.limits.max_pending);
        let mut resumed = Vec::new();
        stalled.retain(|&slot| {
            let Some(conn) = self.conns.get(slot as usize) else {
                return false;
            };
            let Some(stall) = conn.stall else {
                return false;
            };
            let drained = match stall.on {
                StallOn::Subscriber { .. } => subscriber_drained(&self.conns, stall.on, half),
                StallOn::Peer(peer) => self.peer_queued_bytes(peer) <= half / 2,
            };
            if drained || now >= stall.until || !conn.is_open() {
                resumed.push(slot);
                return false;
            }
            true
        });
        self.stalled = stalled;
        for slot in resumed {
            let Some(conn) = self.conns.get_mut(slot as usize) else {
                continue;
            };
            conn.stall = None;
            // Reads that arrived during the stall run first; reading resumes once they are
            // used up without stalling again.
            self.process_rbuf(slot);
            self.rearm_recv_if_drained(slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_grows_from_the_threshold_to_the_limit() {
        let max = 8 * 1024 * 1024;
        assert_eq!(stall_threshold(max), max / 2);
        assert_eq!(stall_threshold(64 * 1024 * 1024), STALL_PENDING_MAX);
        assert_eq!(stall_duration(max / 4, max), Duration::from_micros(100));
        assert_eq!(stall_duration(max / 2 + 1, max), Duration::from_micros(100));
        // Halfway between threshold and limit: five tenths of the threshold above it.
        assert_eq!(
            stall_duration(max / 2 + max / 4, max),
            Duration::from_micros(600)
        );
        assert_eq!(stall_duration(max, max), Duration::from_secs(1));
        let big = 64 * 1024 * 1024;
        // 60 MiB over a 4 MiB threshold: 150 tenths, so 151 × 100 µs.
        let over = big - 4 * 1024 * 1024 / 10;
        assert_eq!(stall_duration(over, big), Duration::from_micros(15_000));
        assert_eq!(
            stall_duration(7, 8),
            Duration::from_micros(100),
            "tiny limits do not divide by 0"
        );
    }
}
