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
//! Invariant (DESIGN.md 8): a publisher waits for a subscriber only while that subscriber
//! drains. A stall lasts until the subscriber is below half its limit; it is checked once per
//! `STALL_WINDOW`, and a subscriber that drained nothing during a whole window is stuck
//! (`Conn::is_stuck`): it stalls no one until it drains again, so it fills to `max_pending` (or
//! passes the write deadline) and is closed as a slow consumer, and its publishers go on at
//! the pace of their other subscribers. A stall never ends on time alone while its subscriber
//! drains: letting the publisher through then would fill a healthy subscriber past its limit.

use std::os::fd::RawFd;
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

/// How long a subscriber may drain nothing while it stalls publishers before it is taken for
/// stuck. Long enough that a reader the scheduler leaves aside for a moment is not (before,
/// a stall ran out after 100 us to 1 ms and let the publisher fill such a reader past its
/// limit within milliseconds); short, since the publishers of a stuck one (and their other
/// subscribers) wait this long once: 250 ms took the healthy subscriber of
/// `examples/stuck_subscriber.rs` from 0.86x to 0.46x of its rate.
const STALL_WINDOW: Duration = Duration::from_millis(100);

/// The longest a publisher waits for a peer shard that is behind. The peer's holds end once
/// their subscribers drain, or after one `STALL_WINDOW` for a stuck one, so it catches up well
/// before this unless it is overloaded.
const PEER_STALL_MAX: Duration = Duration::from_secs(1);

/// Reads a publisher arms one at a time after a stall before it goes back to multishot recv.
const SINGLE_READS_AFTER_STALL: u8 = 64;

/// Bytes of `conn`'s output its peer has received: what the kernel took from us, less what
/// waits in the socket's send queue. A send completes only once the socket has room for a
/// good part of its buffer again, which behind megabytes of socket buffer can take a slow
/// reader longer than a window; the send queue shrinks as soon as it reads.
fn delivered(conn: &Conn, queued: &dyn Fn(RawFd) -> u64) -> u64 {
    conn.out.written().saturating_sub(queued(conn.fd))
}

/// The stall or hold on `StallOn::Subscriber` a subscriber starts now.
fn stall_on_subscriber(
    conns: &Slab<Conn>,
    slot: u32,
    now: Instant,
    queued: &dyn Fn(RawFd) -> u64,
) -> Stall {
    let conn = &conns[slot as usize];
    Stall {
        on: StallOn::Subscriber {
            slot,
            cid: conn.cid,
            delivered: delivered(conn, queued),
        },
        until: now + STALL_WINDOW,
    }
}

/// Whether a stall or hold on a subscriber is over at `now`: the subscriber is at or below
/// `half` pending, gone, or stuck. At the end of a window, one that drained something starts
/// the next window (the stall goes on); one that drained nothing is marked stuck.
fn subscriber_stall_over(
    conns: &mut Slab<Conn>,
    stall: &mut Stall,
    half: usize,
    now: Instant,
    queued: &dyn Fn(RawFd) -> u64,
) -> bool {
    let StallOn::Subscriber {
        slot,
        cid,
        delivered: mark,
    } = &mut stall.on
    else {
        return true;
    };
    let Some(conn) = conns.get_mut(*slot as usize) else {
        return true;
    };
    if conn.cid != *cid || !conn.is_open() || conn.out.pending_bytes() <= half || conn.is_stuck() {
        return true;
    }
    if now < stall.until {
        return false;
    }
    let drained_to = delivered(conn, queued);
    if drained_to == *mark {
        conn.stuck_at = Some(conn.out.written());
        tracing::debug!(
            "{} - drained nothing for {:?} with {} bytes pending: stalls no one",
            crate::logging::client::ClientLabel::of(conn),
            STALL_WINDOW,
            conn.out.pending_bytes()
        );
        return true;
    }
    *mark = drained_to;
    stall.until = now + STALL_WINDOW;
    false
}

/// Who waits for whom on this shard: the publishers it stalled, and the peers it takes nothing
/// from while a subscriber here that their messages fill is past half its limit.
/// Invariant: bit `p` of `held` is set exactly when `peer_holds[p]` holds a stall (only `hold`
/// and `release_holds` write either), so the per-turn checks read one word.
pub(super) struct FlowControl {
    /// Publishers waiting for a subscriber or a peer to drain.
    stalled: Vec<u32>,
    /// Per peer: while set, this shard takes nothing from that peer (see `hold_peer`).
    peer_holds: Vec<Option<Stall>>,
    /// Peers on hold, a bit each.
    held: u64,
}

impl FlowControl {
    /// Nothing stalled or held among `shards` shards.
    pub(super) fn new(shards: usize) -> FlowControl {
        FlowControl {
            stalled: Vec::new(),
            peer_holds: vec![None; shards],
            held: 0,
        }
    }

    #[inline]
    pub(super) fn has_stalled(&self) -> bool {
        !self.stalled.is_empty()
    }

    /// The peers on hold, a bit each.
    #[inline]
    pub(super) fn held_peers(&self) -> u64 {
        self.held
    }

    #[inline]
    pub(super) fn is_held(&self, peer: ShardId) -> bool {
        self.held & (1 << peer.0) != 0
    }

    /// Publisher `slot` stalled (its connection's `stall` was just set, so it is not listed).
    fn add_stalled(&mut self, slot: u32) {
        self.stalled.push(slot);
    }

    /// Takes the stalled publishers out to check them; `put_stalled` gives back those still
    /// waiting.
    fn take_stalled(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.stalled)
    }

    fn put_stalled(&mut self, stalled: Vec<u32>) {
        debug_assert!(self.stalled.is_empty(), "stalled while the list was out");
        self.stalled = stalled;
    }

    /// Puts peer `peer` on hold until `stall` is over.
    fn hold(&mut self, peer: ShardId, stall: Stall) {
        self.peer_holds[usize::from(peer.0)] = Some(stall);
        self.held |= 1 << peer.0;
    }

    /// Ends the holds for which `over` is true (it may move a hold's window on).
    fn release_holds(&mut self, mut over: impl FnMut(&mut Stall) -> bool) {
        let mut held = 0;
        for (peer, hold) in self.peer_holds.iter_mut().enumerate() {
            let Some(stall) = hold else { continue };
            if over(stall) {
                *hold = None;
            } else {
                held |= 1 << peer;
            }
        }
        self.held = held;
    }

    /// Gives back the stalled list's spare capacity (after a mass disconnect).
    pub(super) fn shrink_to_fit(&mut self) {
        self.stalled.shrink_to_fit();
    }
}

impl Shard {
    /// The op just run pushed a subscriber past half its `max_pending`: this publisher stops
    /// reading (its recv is cancelled, so TCP pushes back on it) until that subscriber drains
    /// below half, or is found stuck. A publisher is never stalled on itself, nor on a stuck
    /// subscriber.
    /// The rest of the read that caused the stall still runs, in place; reads that arrive
    /// after it wait in the read buffer until the stall ends. For a while after a stall the
    /// publisher's reads are armed one at a time, so that little arrives after the next one.
    pub(super) fn stall_producer(&mut self, slot: u32) {
        if self.conns[slot as usize].stall.is_some() {
            self.over_half.clear();
            return;
        }
        let Some(consumer) = self.fullest_over_half(Some(slot)) else {
            return;
        };
        let stall = stall_on_subscriber(&self.conns, consumer, self.now, &*self.send_queue_len);
        self.stall(slot, stall.on, stall.until);
    }

    /// Takes `over_half` and returns the subscriber in it (other than `except`, and not stuck)
    /// with the most bytes pending.
    fn fullest_over_half(&mut self, except: Option<u32>) -> Option<u32> {
        let over_half = std::mem::take(&mut self.over_half);
        let fullest = over_half
            .iter()
            .copied()
            .filter(|&c| Some(c) != except)
            .filter_map(|c| {
                let conn = self.conns.get(c as usize)?;
                let waits_for = conn.is_open() && !conn.is_stuck();
                waits_for.then(|| (c, conn.out.pending_bytes()))
            })
            .max_by_key(|&(_, pending)| pending)
            .map(|(c, _)| c);
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
        self.batches.outgoing_len(peer) + self.mesh.queued_bytes(peer)
    }

    fn stall(&mut self, slot: u32, on: StallOn, until: Instant) {
        let conn = &mut self.conns[slot as usize];
        if conn.stall.is_some() || !conn.is_open() {
            return;
        }
        conn.stall = Some(Stall { on, until });
        conn.single_reads_left = SINGLE_READS_AFTER_STALL;
        self.pause_recv(slot);
        self.flow.add_stalled(slot);
    }

    /// A forwarded message from `from` pushed a subscriber here past half its limit: stop
    /// taking from `from` until that subscriber drains below half or is found stuck (the same
    /// rule as a stall). The peer then falls behind and stalls the publishers that feed us
    /// (`stall_on_busy_peer`). Returns whether `from` is on hold (not when every subscriber
    /// past half is stuck).
    pub(super) fn hold_peer(&mut self, from: ShardId) -> bool {
        let fullest = self.fullest_over_half(None);
        if self.flow.is_held(from) {
            return true;
        }
        let Some(consumer) = fullest else {
            return false;
        };
        let stall = stall_on_subscriber(&self.conns, consumer, self.now, &*self.send_queue_len);
        self.flow.hold(from, stall);
        true
    }

    /// Ends the holds on peers whose subscriber drained, left, or is stuck; the others stay
    /// on hold.
    pub(super) fn release_peer_holds(&mut self) {
        let half = stall_threshold(self.limits.max_pending);
        let Shard {
            flow,
            conns,
            shutting_down,
            now,
            send_queue_len,
            ..
        } = self;
        flow.release_holds(|stall| {
            shutting_down.is_some()
                || subscriber_stall_over(conns, stall, half, *now, &**send_queue_len)
        });
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

    /// Lets stalled publishers go once their subscriber drained, left or is stuck, or their
    /// peer caught up (or `PEER_STALL_MAX` passed).
    pub(super) fn resume_stalled(&mut self) {
        let now = self.now;
        let mut stalled = self.flow.take_stalled();
        let half = stall_threshold(self.limits.max_pending);
        let mut resumed = Vec::new();
        stalled.retain(|&slot| {
            let Some(conn) = self.conns.get(slot as usize) else {
                return false;
            };
            let Some(mut stall) = conn.stall else {
                return false;
            };
            let over = !conn.is_open()
                || match stall.on {
                    StallOn::Subscriber { .. } => subscriber_stall_over(
                        &mut self.conns,
                        &mut stall,
                        half,
                        now,
                        &*self.send_queue_len,
                    ),
                    StallOn::Peer(peer) => {
                        now >= stall.until || self.peer_queued_bytes(peer) <= half / 2
                    }
                };
            if over {
                resumed.push(slot);
                return false;
            }
            // A new window may have begun.
            self.conns[slot as usize].stall = Some(stall);
            true
        });
        self.flow.put_stalled(stalled);
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
    use crate::protocol::ParserLimits;

    /// The test sockets hold nothing unacknowledged.
    const NONE_QUEUED: fn(RawFd) -> u64 = |_| 0;

    fn subscriber(conns: &mut Slab<Conn>, now: Instant, pending: usize) -> u32 {
        let limits = ParserLimits {
            max_control_line: 4096,
            max_payload: 1 << 20,
        };
        let peer = "127.0.0.1:1".parse().unwrap();
        let slot = conns.insert(Conn::new(-1, 7, peer, limits, now, STALL_WINDOW * 100));
        conns[slot].out.pending_mut().resize(pending, b'x');
        slot as u32
    }

    /// The kernel accepts `n` bytes of the subscriber's output.
    fn drain(conns: &mut Slab<Conn>, slot: u32, n: usize, now: Instant) {
        let out = &mut conns[slot as usize].out;
        if !out.is_sending() {
            out.start_send(now);
        }
        out.complete(n, now);
    }

    #[test]
    fn a_peer_is_held_exactly_while_its_hold_lasts() {
        let now = Instant::now();
        let mut conns = Slab::new();
        let sub = subscriber(&mut conns, now, 10);
        let mut flow = FlowControl::new(3);
        assert_eq!(flow.held_peers(), 0);
        flow.hold(
            ShardId(2),
            stall_on_subscriber(&conns, sub, now, &NONE_QUEUED),
        );
        assert!(flow.is_held(ShardId(2)));
        assert!(!flow.is_held(ShardId(1)));
        assert_eq!(flow.held_peers(), 1 << 2);
        flow.release_holds(|_| false);
        assert_eq!(flow.held_peers(), 1 << 2, "a hold that is not over stays");
        flow.release_holds(|_| true);
        assert_eq!(flow.held_peers(), 0);
        assert!(flow.peer_holds.iter().all(Option::is_none));
    }

    #[test]
    fn threshold_is_half_the_limit_up_to_a_cap() {
        let max = 8 * 1024 * 1024;
        assert_eq!(stall_threshold(max), max / 2);
        assert_eq!(stall_threshold(64 * 1024 * 1024), STALL_PENDING_MAX);
    }

    #[test]
    fn a_stall_lasts_while_the_subscriber_drains_and_ends_when_it_does_not() {
        let start = Instant::now();
        let half = 1000;
        let mut conns = Slab::new();
        let sub = subscriber(&mut conns, start, 3000);
        let mut stall = stall_on_subscriber(&conns, sub, start, &NONE_QUEUED);
        assert!(!subscriber_stall_over(
            &mut conns,
            &mut stall,
            half,
            start,
            &NONE_QUEUED
        ));
        // Drains a little each window, still over half: the publisher keeps waiting.
        let mut now = start;
        for _ in 0..3 {
            drain(&mut conns, sub, 100, now);
            now += STALL_WINDOW;
            assert!(
                !subscriber_stall_over(&mut conns, &mut stall, half, now, &NONE_QUEUED),
                "a draining subscriber is waited for"
            );
            assert_eq!(stall.until, now + STALL_WINDOW, "a new window began");
        }
        assert!(!conns[sub as usize].is_stuck());
        // A whole window without a byte drained: stuck, the stall ends.
        now += STALL_WINDOW;
        assert!(subscriber_stall_over(
            &mut conns,
            &mut stall,
            half,
            now,
            &NONE_QUEUED
        ));
        assert!(conns[sub as usize].is_stuck());
        // It stalls no one now, even a stall begun later.
        let mut later = stall_on_subscriber(&conns, sub, now, &NONE_QUEUED);
        assert!(subscriber_stall_over(
            &mut conns,
            &mut later,
            half,
            now,
            &NONE_QUEUED
        ));
        // Until it drains again.
        drain(&mut conns, sub, 100, now);
        assert!(!conns[sub as usize].is_stuck());
        let mut again = stall_on_subscriber(&conns, sub, now, &NONE_QUEUED);
        assert!(!subscriber_stall_over(
            &mut conns,
            &mut again,
            half,
            now,
            &NONE_QUEUED
        ));
    }

    #[test]
    fn a_stall_ends_when_the_subscriber_drains_below_half_or_leaves() {
        let now = Instant::now();
        let half = 1000;
        let mut conns = Slab::new();
        let sub = subscriber(&mut conns, now, 1500);
        let mut stall = stall_on_subscriber(&conns, sub, now, &NONE_QUEUED);
        drain(&mut conns, sub, 600, now);
        assert!(subscriber_stall_over(
            &mut conns,
            &mut stall,
            half,
            now,
            &NONE_QUEUED
        ));
        let other = subscriber(&mut conns, now, 1500);
        let mut stall = stall_on_subscriber(&conns, other, now, &NONE_QUEUED);
        conns.remove(other as usize);
        assert!(subscriber_stall_over(
            &mut conns,
            &mut stall,
            half,
            now,
            &NONE_QUEUED
        ));
    }
}
