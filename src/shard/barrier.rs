//! The interest barrier (ARCHITECTURE.md invariant 5, flush means visible): the sequence of
//! barriers this shard sends its peers after interest changes, what each peer acknowledged,
//! and the connections whose PONG or `+OK` waits for an acknowledgement.
//!
//! Cold: runs per SUB/UNSUB, per PING and once per turn; never per message.
//! Invariant: barriers are numbered 1, 2, … in the order they are sent, each to every peer;
//! `next` is the number the next one gets, and `acked[p] < next` for every peer `p` (a peer
//! acknowledges only what it was sent). A barrier goes out at the end of a turn in which an
//! interest change was sent (`pending`), so it follows every such change on each ring (a
//! FIFO per pair): once a peer acknowledges barrier `n`, every change sent before it is
//! applied there.

use super::ShardId;

/// The barrier sequence and the connections waiting on it.
pub(super) struct Barrier {
    /// The number of the next barrier sent; those below it have been sent.
    next: u64,
    /// An interest change was sent since the last barrier: one goes out this turn.
    pending: bool,
    /// Per shard (indexed by id; this shard's own entry unused): the highest barrier it
    /// acknowledged.
    acked: Vec<u64>,
    /// Connections holding a PONG or `+OK` back until their interest is acknowledged
    /// everywhere (each at most once: it is added when its first line is held).
    waiters: Vec<u32>,
}

impl Barrier {
    /// No barrier sent yet among `shards` shards.
    pub(super) fn new(shards: usize) -> Barrier {
        Barrier {
            next: 1,
            pending: false,
            acked: vec![0; shards],
            waiters: Vec::new(),
        }
    }

    /// An interest change went to the peers: a barrier follows it this turn.
    pub(super) fn interest_sent(&mut self) {
        self.pending = true;
    }

    /// The barrier that covers an interest change made now: the one this turn will send, or
    /// the last one sent (an earlier change of the same key may still be unacknowledged).
    pub(super) fn covering_seq(&self) -> u64 {
        if self.pending {
            self.next
        } else {
            self.next - 1
        }
    }

    /// At the end of a turn: the number of the barrier to send to every peer, if one is due.
    pub(super) fn take_due(&mut self) -> Option<u64> {
        if !self.pending {
            return None;
        }
        self.pending = false;
        let seq = self.next;
        self.next += 1;
        Some(seq)
    }

    /// Peer `from` acknowledged barrier `seq` (and so every one before it).
    pub(super) fn on_ack(&mut self, from: ShardId, seq: u64) {
        debug_assert!(seq < self.next, "ack of a barrier never sent");
        let acked = &mut self.acked[usize::from(from.0)];
        *acked = (*acked).max(seq);
    }

    /// The highest barrier every one of `peers` has acknowledged (`u64::MAX` with none).
    pub(super) fn acked_everywhere(&self, peers: impl Iterator<Item = ShardId>) -> u64 {
        let mut min = u64::MAX;
        for peer in peers {
            min = min.min(self.acked[usize::from(peer.0)]);
        }
        min
    }

    /// Connection `slot` holds its first line back.
    pub(super) fn add_waiter(&mut self, slot: u32) {
        self.waiters.push(slot);
    }

    pub(super) fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    /// Keeps the waiters for which `keep` is true.
    pub(super) fn retain_waiters(&mut self, keep: impl FnMut(&u32) -> bool) {
        self.waiters.retain(keep);
    }

    /// Gives back the waiter list's spare capacity (after a mass disconnect).
    pub(super) fn shrink_to_fit(&mut self) {
        self.waiters.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_covered_by_the_barrier_sent_after_it() {
        let mut barrier = Barrier::new(2);
        assert_eq!(barrier.take_due(), None);
        barrier.interest_sent();
        let covering = barrier.covering_seq();
        assert_eq!(barrier.take_due(), Some(covering));
        assert_eq!(barrier.take_due(), None);
        // A later change with nothing pending is covered by the last barrier sent.
        assert_eq!(barrier.covering_seq(), covering);
        let peers = || [ShardId(1)].into_iter();
        assert!(barrier.acked_everywhere(peers()) < covering);
        barrier.on_ack(ShardId(1), covering);
        assert_eq!(barrier.acked_everywhere(peers()), covering);
    }

    #[test]
    fn acked_everywhere_is_the_lowest_peer_and_acks_never_go_back() {
        let mut barrier = Barrier::new(3);
        for _ in 0..3 {
            barrier.interest_sent();
            barrier.take_due();
        }
        barrier.on_ack(ShardId(1), 3);
        barrier.on_ack(ShardId(2), 2);
        barrier.on_ack(ShardId(1), 1);
        let peers = || [ShardId(1), ShardId(2)].into_iter();
        assert_eq!(barrier.acked_everywhere(peers()), 2);
        assert_eq!(barrier.acked_everywhere(std::iter::empty()), u64::MAX);
    }
}
