//! Everything shards say to each other: the `ShardMsg` enum, the SPSC rings (one per ordered pair
//! of shards) that carry it, and the eventfd wake-up.
//!
//! Hot: `Mesh::send` and `Mesh::drain` run every loop turn that has cross-shard traffic. Messages
//! travel in batches (`ShardMsg::Messages`, many published messages in one buffer), so a turn
//! pushes at most one entry per peer for message traffic.
//! Invariant: one ring per ordered pair keeps everything one shard sends another in order, which
//! gives per-publisher order across shards (DESIGN.md invariant 6) and lets an `InterestBarrier`
//! acknowledge every interest change sent before it (invariant 5).
//! The only atomics are the ring indices (inside `rtrb`) and each shard's `sleeping` flag.
//!
//! Beside each pair's ring runs a small return ring the other way, which says nothing: it
//! hands the buffers of delivered `Messages` batches back to the shard that filled them, so a
//! warm sender builds its next batch in a buffer that already has room (no allocation per turn,
//! no buffer freed on another thread than the one that allocated it). At most `SPARES` buffers
//! of at most `SPARE_BYTES_MAX` wait per pair; others are freed.
#![allow(unsafe_code)] // eventfd read/write through libc.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::ids::ShardId;

/// Capacity of each SPSC ring in entries. A full ring makes the sender keep entries in its
/// local backlog and retry on the next turn.
pub const RING_CAPACITY: usize = 4096;
/// Bytes of queued cross-shard traffic a shard holds for one peer before it drops messages
/// (and logs it). Reached only if the peer stops draining its ring.
pub const BACKLOG_BYTES_MAX: usize = 256 * 1024 * 1024;

/// Emptied batch buffers waiting to go back to their sender, per ordered pair.
pub const SPARES: usize = 4;
/// A batch buffer with more capacity than this is freed rather than handed back.
pub const SPARE_BYTES_MAX: usize = 1024 * 1024;

/// A message from one shard to another.
#[derive(Debug)]
pub enum ShardMsg {
    /// The sender's first local subscription for (account, filter, queue) appeared (`add`) or its
    /// last one went away.
    Interest {
        account: u32,
        filter: Box<[u8]>,
        queue: Option<Box<[u8]>>,
        add: bool,
    },
    /// Reply with `InterestAck { seq }` once everything received before this is applied.
    InterestBarrier { seq: u64 },
    /// Everything up to barrier `seq` is applied on the sender of this ack.
    InterestAck { seq: u64 },
    /// A batch of published messages encoded by `forward::encode` (see `shard/forward.rs`).
    Messages(Vec<u8>),
    /// One published message (a `forward::encode` record) on a service-import reply token the
    /// receiving shard owns: the owner alone decides whether it is delivered (`account.rs`).
    Response(Vec<u8>),
    /// The sender is shutting down and will forward nothing more.
    Quiesced,
    /// A reply published in `account` to auth callout `seq`, which the receiver owns
    /// (`shard/callout.rs`).
    CalloutReply {
        account: u32,
        seq: u64,
        payload: Vec<u8>,
    },
}

impl ShardMsg {
    fn weight(&self) -> usize {
        match self {
            ShardMsg::Messages(b) | ShardMsg::Response(b) => b.len(),
            ShardMsg::Interest { filter, .. } => filter.len() + 32,
            ShardMsg::CalloutReply { payload, .. } => payload.len() + 16,
            _ => 16,
        }
    }
}

/// How another shard wakes this one when it is blocked in `io_uring_enter`.
pub struct Waker {
    /// Set by the owner just before it may block; cleared when it wakes.
    sleeping: AtomicBool,
    eventfd: RawFd,
}

impl Waker {
    pub fn new() -> std::io::Result<Arc<Waker>> {
        // SAFETY: plain syscall; the fd is owned by the Waker and closed on drop.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Arc::new(Waker {
            sleeping: AtomicBool::new(false),
            eventfd: fd,
        }))
    }

    /// A waker with no eventfd, for shards driven in one thread by a simulator, which never
    /// sleep: waking it does nothing.
    pub fn inert() -> Arc<Waker> {
        Arc::new(Waker {
            sleeping: AtomicBool::new(false),
            eventfd: -1,
        })
    }

    pub fn eventfd(&self) -> RawFd {
        self.eventfd
    }

    /// Wakes the owner if it said it may sleep.
    pub fn wake(&self) {
        if self.sleeping.swap(false, Ordering::SeqCst) {
            self.wake_always();
        }
    }

    /// Wakes the owner unconditionally (shutdown, reload).
    pub fn wake_always(&self) {
        if self.eventfd < 0 {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        unsafe { libc::write(self.eventfd, (&one as *const u64).cast(), 8) };
    }

    /// Called by the owner before blocking. Returns false if it must not block after all.
    pub fn prepare_sleep(&self) {
        self.sleeping.store(true, Ordering::SeqCst);
    }

    pub fn awake(&self) {
        self.sleeping.store(false, Ordering::SeqCst);
    }
}

impl Drop for Waker {
    fn drop(&mut self) {
        if self.eventfd < 0 {
            return;
        }
        // SAFETY: we own the fd.
        unsafe { libc::close(self.eventfd) };
    }
}

/// One shard's ends of the mesh: a producer to every peer and a consumer from every peer.
pub struct Mesh {
    pub me: ShardId,
    outgoing: Vec<Option<Outgoing>>,
    incoming: Vec<Option<Incoming>>,
    wakers: Vec<Arc<Waker>>,
}

struct Incoming {
    consumer: rtrb::Consumer<ShardMsg>,
    /// Shared with the peer's `Outgoing::in_ring`.
    in_ring: Arc<AtomicUsize>,
    /// Delivered batch buffers going back to the peer (see the module doc).
    spares: rtrb::Producer<Vec<u8>>,
}

struct Outgoing {
    producer: rtrb::Producer<ShardMsg>,
    /// Weight of the entries in the ring that the peer has not popped yet: with the backlog,
    /// how far behind the peer is (it stops popping while one of its subscribers is full).
    in_ring: Arc<AtomicUsize>,
    /// Entries that did not fit in the ring, in order; always drained before new ones.
    backlog: VecDeque<ShardMsg>,
    backlog_bytes: usize,
    /// Whether anything was pushed this turn (wake the peer at the end of the turn).
    pushed: bool,
    /// Batch buffers the peer delivered and handed back, for the next batches.
    spares: rtrb::Consumer<Vec<u8>>,
}

/// Builds the full mesh for `n` shards: element i is shard i's `Mesh`.
pub fn build(wakers: &[Arc<Waker>]) -> Vec<Mesh> {
    let n = wakers.len();
    let mut meshes: Vec<Mesh> = (0..n)
        .map(|i| Mesh {
            me: ShardId(i as u16),
            outgoing: (0..n).map(|_| None).collect(),
            incoming: (0..n).map(|_| None).collect(),
            wakers: wakers.to_vec(),
        })
        .collect();
    for from in 0..n {
        for to in 0..n {
            if from == to {
                continue;
            }
            let (producer, consumer) = rtrb::RingBuffer::new(RING_CAPACITY);
            let (spares_back, spares) = rtrb::RingBuffer::new(SPARES);
            let in_ring = Arc::new(AtomicUsize::new(0));
            meshes[from].outgoing[to] = Some(Outgoing {
                producer,
                in_ring: Arc::clone(&in_ring),
                backlog: VecDeque::new(),
                backlog_bytes: 0,
                pushed: false,
                spares,
            });
            meshes[to].incoming[from] = Some(Incoming {
                consumer,
                in_ring,
                spares: spares_back,
            });
        }
    }
    meshes
}

impl Mesh {
    /// Ids of every other shard.
    pub fn peers(&self) -> impl Iterator<Item = ShardId> + '_ {
        let me = self.me;
        (0..self.outgoing.len() as u16)
            .map(ShardId)
            .filter(move |p| *p != me)
    }

    pub fn peer_count(&self) -> usize {
        self.outgoing.len().saturating_sub(1)
    }

    /// Queues `msg` for `to`. Returns false if the backlog for `to` is over its limit and the
    /// message was dropped.
    pub fn send(&mut self, to: ShardId, msg: ShardMsg) -> bool {
        let Some(out) = self
            .outgoing
            .get_mut(usize::from(to.0))
            .and_then(Option::as_mut)
        else {
            return false;
        };
        if out.backlog.is_empty() {
            let weight = msg.weight();
            match out.producer.push(msg) {
                Ok(()) => {
                    out.in_ring.fetch_add(weight, Ordering::Relaxed);
                    out.pushed = true;
                    return true;
                }
                Err(rtrb::PushError::Full(m)) => return push_backlog(out, m),
            }
        }
        push_backlog(out, msg)
    }

    /// Moves backlogged entries into the rings and wakes peers that got something.
    /// Returns whether any backlog remains (the caller then polls instead of sleeping long).
    pub fn flush(&mut self) -> bool {
        let mut remaining = false;
        for (peer, out) in self.outgoing.iter_mut().enumerate() {
            let Some(out) = out else { continue };
            while let Some(msg) = out.backlog.pop_front() {
                let weight = msg.weight();
                match out.producer.push(msg) {
                    Ok(()) => {
                        out.backlog_bytes -= weight;
                        out.in_ring.fetch_add(weight, Ordering::Relaxed);
                        out.pushed = true;
                    }
                    Err(rtrb::PushError::Full(m)) => {
                        out.backlog.push_front(m);
                        break;
                    }
                }
            }
            remaining |= !out.backlog.is_empty();
            if out.pushed {
                out.pushed = false;
                self.wakers[peer].wake();
            }
        }
        remaining
    }

    /// Bytes queued for `to` that it has not taken yet (in its ring, or in our backlog).
    pub fn queued_bytes(&self, to: ShardId) -> usize {
        self.outgoing
            .get(usize::from(to.0))
            .and_then(Option::as_ref)
            .map_or(0, |out| {
                out.in_ring.load(Ordering::Relaxed) + out.backlog_bytes
            })
    }

    /// Takes the next entry `from` sent, if any.
    pub fn pop(&mut self, from: ShardId) -> Option<ShardMsg> {
        let incoming = self.incoming.get_mut(usize::from(from.0))?.as_mut()?;
        let msg = incoming.consumer.pop().ok()?;
        incoming.in_ring.fetch_sub(msg.weight(), Ordering::Relaxed);
        Some(msg)
    }

    /// Hands the buffer of a `Messages` batch from `from`, delivered, back to `from` for its
    /// next batches; frees it instead when it is large or `from` has `SPARES` waiting.
    pub fn recycle(&mut self, from: ShardId, mut buf: Vec<u8>) {
        if buf.capacity() > SPARE_BYTES_MAX {
            return;
        }
        if let Some(incoming) = self
            .incoming
            .get_mut(usize::from(from.0))
            .and_then(Option::as_mut)
        {
            buf.clear();
            // A full return ring frees the buffer here.
            let _ = incoming.spares.push(buf);
        }
    }

    /// An empty buffer for the next batch to `to`: one `to` handed back, or a new one (which
    /// allocates only when written to).
    pub fn spare(&mut self, to: ShardId) -> Vec<u8> {
        self.outgoing
            .get_mut(usize::from(to.0))
            .and_then(Option::as_mut)
            .and_then(|out| out.spares.pop().ok())
            .unwrap_or_default()
    }

    /// Whether a peer outside `skip` (a bit per shard) has something queued for us.
    pub fn has_incoming(&self, skip: u64) -> bool {
        self.incoming.iter().enumerate().any(|(peer, c)| {
            skip & (1 << peer) == 0 && c.as_ref().is_some_and(|c| !c.consumer.is_empty())
        })
    }
}

fn push_backlog(out: &mut Outgoing, msg: ShardMsg) -> bool {
    let weight = msg.weight();
    if out.backlog_bytes + weight > BACKLOG_BYTES_MAX && matches!(msg, ShardMsg::Messages(_)) {
        return false;
    }
    out.backlog_bytes += weight;
    out.backlog.push_back(msg);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_kept_through_the_backlog() {
        let wakers: Vec<_> = (0..2).map(|_| Waker::new().unwrap()).collect();
        let mut meshes = build(&wakers);
        let total = RING_CAPACITY * 2 + 10;
        for i in 0..total {
            assert!(meshes[0].send(ShardId(1), ShardMsg::InterestAck { seq: i as u64 }));
        }
        let mut seen = Vec::new();
        for _ in 0..4 {
            meshes[0].flush();
            while let Some(msg) = meshes[1].pop(ShardId(0)) {
                if let ShardMsg::InterestAck { seq } = msg {
                    seen.push(seq);
                }
            }
        }
        assert_eq!(
            meshes[0].queued_bytes(ShardId(1)),
            0,
            "everything was taken"
        );
        assert_eq!(seen.len(), total);
        assert!(
            seen.windows(2).all(|w| w[0] + 1 == w[1]),
            "entries arrived out of order"
        );
    }

    #[test]
    fn delivered_batch_buffers_go_back_to_their_sender_within_bounds() {
        let wakers: Vec<_> = (0..3).map(|_| Waker::new().unwrap()).collect();
        let mut meshes = build(&wakers);
        assert_eq!(
            meshes[0].spare(ShardId(1)).capacity(),
            0,
            "none handed back yet"
        );
        for i in 0..SPARES + 2 {
            let mut buf = Vec::with_capacity(1000 + i);
            buf.extend_from_slice(b"delivered");
            meshes[1].recycle(ShardId(0), buf);
        }
        meshes[1].recycle(ShardId(0), Vec::with_capacity(SPARE_BYTES_MAX + 1));
        assert_eq!(
            meshes[2].spare(ShardId(1)).capacity(),
            0,
            "another pair's spares are its own"
        );
        for i in 0..SPARES {
            let spare = meshes[0].spare(ShardId(1));
            assert!(spare.is_empty(), "handed back empty");
            assert_eq!(spare.capacity(), 1000 + i, "in the order handed back");
        }
        assert_eq!(
            meshes[0].spare(ShardId(1)).capacity(),
            0,
            "at most SPARES wait; the rest and the large one were freed"
        );
    }

    #[test]
    fn queued_bytes_count_ring_and_backlog_until_the_peer_takes_them() {
        let wakers: Vec<_> = (0..2).map(|_| Waker::new().unwrap()).collect();
        let mut meshes = build(&wakers);
        let batch = 1000;
        for _ in 0..RING_CAPACITY + 3 {
            assert!(meshes[0].send(ShardId(1), ShardMsg::Messages(vec![0; batch])));
        }
        let total = (RING_CAPACITY + 3) * batch;
        assert_eq!(
            meshes[0].queued_bytes(ShardId(1)),
            total,
            "ring plus backlog"
        );
        assert_eq!(
            meshes[1].queued_bytes(ShardId(0)),
            0,
            "the other direction is empty"
        );
        for taken in 1..=10 {
            assert!(meshes[1].pop(ShardId(0)).is_some());
            assert_eq!(meshes[0].queued_bytes(ShardId(1)), total - taken * batch);
        }
        assert!(
            !meshes[1].has_incoming(0b01),
            "a peer on hold (bit 0) does not count as incoming"
        );
        assert!(meshes[1].has_incoming(0));
    }
}
