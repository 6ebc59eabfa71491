//! A connection's outbound bytes: encoders append, the reactor sends.
//!
//! Hot: every delivered MSG is appended here. Two halves: `pending` takes appends while
//! `inflight` belongs to the kernel until its send completes; on completion the halves swap, so
//! one send carries everything encoded since the last one (DESIGN.md invariant 8).
//! Invariant: `inflight` is neither written nor reallocated while a send is in flight.

use std::time::Instant;

/// Capacity kept by an idle half after a burst; larger buffers are shrunk back to this.
const IDLE_CAPACITY_MAX: usize = 64 * 1024;
/// Largest single send; a bigger `inflight` half is sent in several parts.
const SEND_LEN_MAX: usize = 4 * 1024 * 1024;
// `region` narrows a send's length to the SQE's `u32`.
const _: () = assert!(SEND_LEN_MAX <= u32::MAX as usize);

#[derive(Default)]
pub struct OutBuf {
    pending: Vec<u8>,
    /// TLS connections only: records ready for the socket (handshake, and `pending` once
    /// encrypted by `seal`). When `sealed_mode` is on, sends take from here, not `pending`.
    sealed: Vec<u8>,
    sealed_mode: bool,
    inflight: Vec<u8>,
    /// Bytes of `inflight` the kernel has accepted so far.
    sent: usize,
    /// When the send in flight was submitted; `None` when no send is in flight.
    send_started: Option<Instant>,
    /// Bytes the kernel has accepted over the connection's life: whether a subscriber drains
    /// at all (see `shard/stall.rs`).
    written: u64,
}

/// A region the reactor must send; valid until the send's completion is handled.
#[derive(Clone, Copy, Debug)]
pub struct SendRegion {
    pub ptr: *const u8,
    pub len: u32,
}

impl OutBuf {
    /// The buffer encoders append to.
    #[inline]
    pub fn pending_mut(&mut self) -> &mut Vec<u8> {
        &mut self.pending
    }

    /// Bytes accepted for this connection and not yet written to the socket.
    #[inline]
    pub fn pending_bytes(&self) -> usize {
        self.pending.len() + self.sealed.len() + (self.inflight.len() - self.sent)
    }

    /// Switches to TLS: from now on sends take sealed records, and `pending` is plaintext.
    pub fn use_sealed(&mut self) {
        self.sealed_mode = true;
    }

    /// Bytes that go to the socket as they are (TLS records, or INFO before the handshake).
    pub fn sealed_mut(&mut self) -> &mut Vec<u8> {
        &mut self.sealed
    }

    /// Encrypts everything pending into sealed records with `encrypt(plaintext, out)`.
    pub fn seal<E>(
        &mut self,
        encrypt: impl FnOnce(&[u8], &mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = encrypt(&self.pending, &mut self.sealed);
        self.pending.clear();
        result
    }

    pub fn is_sending(&self) -> bool {
        self.send_started.is_some()
    }

    pub fn is_empty(&self) -> bool {
        self.pending_bytes() == 0
    }

    /// Bytes the kernel has accepted from this buffer so far, in total.
    #[inline]
    pub fn written(&self) -> u64 {
        self.written
    }

    /// When the send in flight started, if one is.
    pub fn send_started(&self) -> Option<Instant> {
        self.send_started
    }

    /// Starts a send of everything pending, if no send is in flight and there is something.
    pub fn start_send(&mut self, now: Instant) -> Option<SendRegion> {
        let source = if self.sealed_mode {
            &mut self.sealed
        } else {
            &mut self.pending
        };
        if self.send_started.is_some() || source.is_empty() {
            return None;
        }
        debug_assert!(self.inflight.is_empty());
        std::mem::swap(source, &mut self.inflight);
        self.sent = 0;
        self.send_started = Some(now);
        Some(self.region())
    }

    /// Records that the kernel accepted `n` bytes of the send in flight. Returns the next region
    /// to send (the rest of this half, or everything pending since), if any.
    pub fn complete(&mut self, n: usize, now: Instant) -> Option<SendRegion> {
        debug_assert!(self.send_started.is_some());
        let accepted = n.min(self.inflight.len() - self.sent);
        self.written += accepted as u64;
        self.sent += accepted;
        if self.sent < self.inflight.len() {
            self.send_started = Some(now);
            return Some(self.region());
        }
        // Capacity is kept while traffic flows (the halves swap, so both reach a steady size);
        // `shrink_if_idle` gives it back later. Shrinking here made every busy send free and
        // regrow megabytes, and the allocator's retained pages tripled peak RSS.
        self.inflight.clear();
        self.sent = 0;
        self.send_started = None;
        self.start_send(now)
    }

    /// Forgets the send in flight and everything pending: its completion has arrived (with an
    /// error, or on a closing connection), so the kernel no longer reads the buffers.
    pub fn abort_send(&mut self) {
        self.send_started = None;
        self.pending.clear();
        self.sealed.clear();
        self.inflight.clear();
        self.sent = 0;
    }

    /// Returns capacity beyond `IDLE_CAPACITY_MAX` when nothing is queued (called from the
    /// shard's timer, so a burst's buffers do not stay with an idle connection).
    pub fn shrink_if_idle(&mut self) {
        if self.send_started.is_some() || self.pending_bytes() > 0 {
            return;
        }
        for buf in [&mut self.pending, &mut self.sealed, &mut self.inflight] {
            if buf.capacity() > IDLE_CAPACITY_MAX {
                buf.shrink_to(IDLE_CAPACITY_MAX);
            }
        }
    }

    /// Frees everything once the connection is gone and no send is in flight.
    pub fn release(&mut self) {
        debug_assert!(self.send_started.is_none());
        self.pending = Vec::new();
        self.sealed = Vec::new();
        self.inflight = Vec::new();
        self.sent = 0;
    }

    /// The bytes of the send in flight that the kernel has not accepted yet, as far as the
    /// region `start_send` or `complete` last returned reaches (empty when none is in flight).
    pub fn in_flight(&self) -> &[u8] {
        if self.send_started.is_none() {
            return &[];
        }
        let rest = &self.inflight[self.sent..];
        &rest[..rest.len().min(SEND_LEN_MAX)]
    }

    fn region(&self) -> SendRegion {
        let rest = &self.inflight[self.sent..];
        let len = rest.len().min(SEND_LEN_MAX);
        SendRegion {
            ptr: rest.as_ptr(),
            len: len as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_mode_sends_only_sealed_records() {
        let now = Instant::now();
        let mut out = OutBuf::default();
        out.use_sealed();
        out.sealed_mut().extend_from_slice(b"INFO");
        out.pending_mut().extend_from_slice(b"plain");
        let region = out.start_send(now).expect("the sealed bytes");
        assert_eq!(region.len, 4, "plaintext must not go out unsealed");
        out.seal(|plain, sealed| {
            sealed.extend(plain.iter().map(|b| b ^ 0xff));
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(out.pending_bytes(), 4 + 5, "4 in flight, 5 sealed");
        let region = out.complete(4, now).expect("the sealed plaintext");
        assert_eq!(region.len, 5);
    }

    #[test]
    fn appends_during_a_send_go_out_in_the_next_one() {
        let now = Instant::now();
        let mut out = OutBuf::default();
        out.pending_mut().extend_from_slice(b"first");
        let region = out.start_send(now).expect("something to send");
        assert_eq!(region.len, 5);
        assert!(
            out.start_send(now).is_none(),
            "only one send may be in flight"
        );
        out.pending_mut().extend_from_slice(b"second");
        assert_eq!(out.pending_bytes(), 11);
        let region = out.complete(5, now).expect("pending bytes follow");
        assert_eq!(region.len, 6);
        assert!(out.complete(6, now).is_none());
        assert!(out.is_empty());
        assert!(!out.is_sending());
    }

    #[test]
    fn a_partial_send_resumes_where_it_stopped() {
        let now = Instant::now();
        let mut out = OutBuf::default();
        out.pending_mut().extend_from_slice(b"0123456789");
        let first = out.start_send(now).unwrap();
        let second = out.complete(4, now).expect("the rest of the half");
        assert_eq!(second.len, 6);
        // SAFETY-free check: the second region starts 4 bytes into the first.
        assert_eq!(second.ptr as usize - first.ptr as usize, 4);
        assert_eq!(out.pending_bytes(), 6);
        assert_eq!(out.written(), 4);
        assert!(out.complete(6, now).is_none());
        assert_eq!(out.written(), 10, "every accepted byte counts once");
    }
}
