//! Cross-shard batches: the messages this turn forwards to each peer, the rest of a batch from
//! a peer whose delivery stopped when that peer was put on hold, and which peers the shard
//! takes from at all (a simulator's gate).
//!
//! Hot: `outgoing_mut` and `for_peer` run per forwarded message (an index). Cold: the rest
//! runs once per turn or per hold.
//! Invariant: each peer has one outgoing batch, handed to the mesh whole (at the end of a turn,
//! or mid-turn once it passes `FORWARD_BATCH_BYTES_MAX`), and records are appended in the order
//! the messages were published, so a peer decodes them in that order (invariant 6, per
//! publisher order). A peer's held rest is delivered before anything newer from that peer
//! (`drain_mesh` takes it first).

use super::ShardId;

/// Outgoing batches, held rests and the gate, indexed by shard id (this shard's own entries
/// stay empty).
pub(super) struct Batches {
    /// Batches being built this turn, one per shard.
    outgoing: Vec<Vec<u8>>,
    /// Per shard: the rest of a batch whose delivery stopped when that peer was put on hold,
    /// and where in it to go on.
    held: Vec<Option<(Vec<u8>, usize)>>,
    /// Peers `drain_mesh` takes from, a bit each (all by default; see `Shard::set_mesh_gate`).
    gate: u64,
}

impl Batches {
    /// Empty batches among `shards` shards, every peer open.
    pub(super) fn new(shards: usize) -> Batches {
        Batches {
            outgoing: vec![Vec::new(); shards],
            held: vec![None; shards],
            gate: u64::MAX,
        }
    }

    /// The outgoing batches, indexed by shard id.
    #[inline]
    pub(super) fn outgoing_mut(&mut self) -> &mut [Vec<u8>] {
        &mut self.outgoing
    }

    /// Peer `peer`'s outgoing batch.
    #[inline]
    pub(super) fn for_peer(&mut self, peer: ShardId) -> &mut Vec<u8> {
        &mut self.outgoing[usize::from(peer.0)]
    }

    /// Bytes waiting in `peer`'s outgoing batch.
    pub(super) fn outgoing_len(&self, peer: ShardId) -> usize {
        self.outgoing[usize::from(peer.0)].len()
    }

    /// Whether `id` names a shard of this server.
    pub(super) fn has_shard(&self, id: ShardId) -> bool {
        usize::from(id.0) < self.outgoing.len()
    }

    /// Keeps `batch[at..]` from `peer` for when its hold ends.
    pub(super) fn hold_rest(&mut self, peer: ShardId, batch: Vec<u8>, at: usize) {
        let held = &mut self.held[usize::from(peer.0)];
        debug_assert!(held.is_none(), "a peer's held rest replaced");
        *held = Some((batch, at));
    }

    /// The rest of `peer`'s batch kept by `hold_rest`, if any.
    pub(super) fn take_held(&mut self, peer: ShardId) -> Option<(Vec<u8>, usize)> {
        self.held[usize::from(peer.0)].take()
    }

    /// Takes from the peers whose bit is set only.
    pub(super) fn set_gate(&mut self, peers: u64) {
        self.gate = peers;
    }

    /// Whether `drain_mesh` takes from `peer`.
    pub(super) fn is_open(&self, peer: ShardId) -> bool {
        self.gate & (1 << peer.0) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_rest_comes_back_once() {
        let mut batches = Batches::new(2);
        assert!(batches.take_held(ShardId(1)).is_none());
        batches.hold_rest(ShardId(1), vec![1, 2, 3], 1);
        assert_eq!(batches.take_held(ShardId(1)), Some((vec![1, 2, 3], 1)));
        assert!(batches.take_held(ShardId(1)).is_none());
    }

    #[test]
    fn the_gate_opens_per_peer() {
        let mut batches = Batches::new(3);
        assert!(batches.is_open(ShardId(2)));
        batches.set_gate(1 << 1);
        assert!(batches.is_open(ShardId(1)));
        assert!(!batches.is_open(ShardId(2)));
        assert!(batches.has_shard(ShardId(2)));
        assert!(!batches.has_shard(ShardId(3)));
    }
}
