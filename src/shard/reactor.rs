//! The shard's io_uring: set-up, the provided-buffer ring, and the operations we submit.
//!
//! Hot: `push_*` run per socket event and `reclaim` per received buffer. Every submission made
//! during one loop turn goes to the kernel with the single `io_uring_enter` of `submit_and_wait`.
//! Invariant: a buffer handed to the kernel (a provided buffer, a send buffer, the eventfd
//! counter) is not touched or freed until the completion that returns it has been reaped; the
//! owner of each buffer (the buffer ring, `OutBuf`, `Shard::wake_buf`) keeps it alive until then.
#![allow(unsafe_code)] // io_uring submissions hand raw pointers to the kernel; each is documented.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::types::{BufRingEntry, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

/// What a completion belongs to; packed in the top byte of `user_data`.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
#[repr(u8)]
pub enum OpKind {
    Accept = 1,
    Recv = 2,
    Send = 3,
    Wake = 4,
    Cancel = 5,
    Poll = 6,
}

/// Packs an operation kind and a connection slot into a completion's `user_data`.
pub fn user_data(kind: OpKind, slot: u32) -> u64 {
    ((kind as u64) << 56) | u64::from(slot)
}

/// Splits `user_data` back into kind and slot; unknown kinds come back as `None`.
pub fn split_user_data(data: u64) -> Option<(OpKind, u32)> {
    let slot = (data & 0xffff_ffff) as u32;
    let kind = match (data >> 56) as u8 {
        1 => OpKind::Accept,
        2 => OpKind::Recv,
        3 => OpKind::Send,
        4 => OpKind::Wake,
        5 => OpKind::Cancel,
        6 => OpKind::Poll,
        _ => return None,
    };
    Some((kind, slot))
}

/// Number of submission entries; one loop turn queues at most this many before it submits early.
const SQ_ENTRIES: u32 = 4096;
/// Completion queue size: large, since multishot recv can post many completions per turn.
const CQ_ENTRIES: u32 = 16384;
/// Buffer group id of the provided-buffer ring (one ring per shard).
const BUF_GROUP: u16 = 0;

/// A shard's ring and its provided-buffer pool.
pub struct Reactor {
    ring: IoUring,
    bufs: BufRing,
}

/// One completion, copied out of the completion queue.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    pub kind: OpKind,
    pub slot: u32,
    pub result: i32,
    pub flags: u32,
}

impl Completion {
    /// The provided buffer this completion filled, if any.
    pub fn buffer_id(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }

    /// Whether a multishot operation stays armed after this completion.
    pub fn has_more(&self) -> bool {
        cqueue::more(self.flags)
    }
}

/// Why the kernel refused io_uring, worded to say what to do about it.
pub fn explain_setup_error(err: &io::Error) -> String {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok());
    let hint = match (err.raw_os_error(), disabled) {
        (_, Some(2)) => {
            "io_uring is disabled system-wide: set `sysctl kernel.io_uring_disabled=0`".to_string()
        }
        (Some(libc::EPERM), Some(1)) => "io_uring is limited to the group in \
             kernel.io_uring_group: add this user to it or set `sysctl kernel.io_uring_disabled=0`"
            .to_string(),
        (Some(libc::EPERM), _) | (Some(libc::ENOSYS), _) => "the io_uring system calls are \
             blocked, most likely by a seccomp profile (containers: run with a profile that \
             allows io_uring_setup, io_uring_enter and io_uring_register)"
            .to_string(),
        (Some(libc::ENOMEM), _) => "the locked-memory limit is too low for the rings: raise \
             `ulimit -l` (RLIMIT_MEMLOCK) or run on a kernel >= 5.12"
            .to_string(),
        (Some(libc::EINVAL), _) => "the kernel lacks a required io_uring feature \
             (single issuer, deferred task running, provided-buffer rings): use Linux 6.1 or \
             newer"
            .to_string(),
        _ => "check that the kernel supports io_uring (Linux 6.1 or newer)".to_string(),
    };
    format!("io_uring set-up failed: {err}; {hint}")
}

impl Reactor {
    /// Builds the ring (single issuer, deferred task running) and registers `buf_count`
    /// provided buffers of `buf_len` bytes each.
    pub fn new(buf_count: u16, buf_len: usize) -> io::Result<Reactor> {
        let ring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .setup_cqsize(CQ_ENTRIES)
            .setup_submit_all()
            .build(SQ_ENTRIES)?;
        let bufs = BufRing::new(&ring, buf_count, buf_len)?;
        Ok(Reactor { ring, bufs })
    }

    /// Queues an entry; submits first when the submission queue is full.
    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // SAFETY: every entry built in this module points only at memory whose owner keeps
            // it alive until the matching completion is reaped (module invariant).
            let pushed = unsafe { self.ring.submission().push(&entry).is_ok() };
            if pushed {
                return;
            }
            // The queue is full: hand what we have to the kernel and retry.
            if let Err(err) = self.ring.submit() {
                tracing::error!(%err, "io_uring submit failed while the submission queue was full");
                return;
            }
        }
    }

    /// Arms multishot accept on the listening socket.
    pub fn push_accept(&mut self, listener: RawFd) {
        let entry = opcode::AcceptMulti::new(Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(OpKind::Accept, 0));
        self.push(entry);
    }

    /// Arms multishot recv with provided buffers on a connection.
    pub fn push_recv(&mut self, fd: RawFd, slot: u32) {
        let entry = opcode::RecvMulti::new(Fd(fd), BUF_GROUP)
            .build()
            .user_data(user_data(OpKind::Recv, slot));
        self.push(entry);
    }

    /// Arms one recv (not multishot) with a provided buffer: at most one buffer of data
    /// arrives before the connection decides again whether to read.
    pub fn push_recv_once(&mut self, fd: RawFd, slot: u32) {
        let entry = opcode::Recv::new(Fd(fd), std::ptr::null_mut(), self.bufs.buf_len as u32)
            .buf_group(BUF_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data(OpKind::Recv, slot));
        self.push(entry);
    }

    /// Sends `len` bytes at `ptr`.
    ///
    /// # Safety
    /// The memory at `ptr..ptr+len` must stay valid and unchanged until the send's completion
    /// is reaped (the caller's `OutBuf` keeps its in-flight half frozen until then).
    pub unsafe fn push_send(&mut self, fd: RawFd, slot: u32, ptr: *const u8, len: u32) {
        let entry = opcode::Send::new(Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(OpKind::Send, slot));
        self.push(entry);
    }

    /// Reads the shard's wake-up eventfd into `buf`.
    ///
    /// # Safety
    /// `buf` must stay valid until the read completes.
    pub unsafe fn push_wake_read(&mut self, eventfd: RawFd, buf: *mut u64) {
        let entry = opcode::Read::new(Fd(eventfd), buf.cast::<u8>(), 8)
            .build()
            .user_data(user_data(OpKind::Wake, 0));
        self.push(entry);
    }

    /// Cancels every operation on `fd` (used when closing a connection).
    pub fn push_cancel_fd(&mut self, fd: RawFd, slot: u32) {
        let entry = opcode::AsyncCancel2::new(io_uring::types::CancelBuilder::fd(Fd(fd)).all())
            .build()
            .user_data(user_data(OpKind::Cancel, slot));
        self.push(entry);
    }

    /// Waits (once) for the peer of connection `slot` to hang up or the socket to fail, without
    /// reading anything: for a connection whose reading is paused.
    pub fn push_poll_hangup(&mut self, fd: RawFd, slot: u32) {
        let mask = libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR;
        let entry = opcode::PollAdd::new(Fd(fd), mask as u32)
            .build()
            .user_data(user_data(OpKind::Poll, slot));
        self.push(entry);
    }

    /// Cancels the multishot recv of connection `slot` (its completion comes back with
    /// `ECANCELED`); sends in flight are left alone.
    pub fn push_cancel_recv(&mut self, slot: u32) {
        let entry = opcode::AsyncCancel::new(user_data(OpKind::Recv, slot))
            .build()
            .user_data(user_data(OpKind::Cancel, slot));
        self.push(entry);
    }

    /// Submits everything queued and waits for at least one completion or `timeout`.
    /// This is the turn's single `io_uring_enter`.
    pub fn submit_and_wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let result = match timeout {
            Some(t) if t.is_zero() => return self.submit_nowait(),
            Some(t) => {
                let ts = Timespec::new().sec(t.as_secs()).nsec(t.subsec_nanos());
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submitter().submit_and_wait(1),
        };
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether completions wait in the completion queue.
    pub fn has_completions(&mut self) -> bool {
        !self.ring.completion().is_empty()
    }

    /// Spins for at most `budget`, without a syscall, until the kernel has deferred work or a
    /// completion for us, or `elsewhere` reports work; returns whether there is some. (With
    /// deferred task running, a completion is queued as task work, which the kernel flags in
    /// the submission ring.)
    pub fn spin_for_work(&mut self, budget: Duration, mut elsewhere: impl FnMut() -> bool) -> bool {
        let start = std::time::Instant::now();
        loop {
            if self.ring.submission().taskrun() || self.has_completions() || elsewhere() {
                return true;
            }
            if start.elapsed() >= budget {
                return false;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }

    /// Submits queued entries and runs deferred task work without waiting.
    pub fn submit_nowait(&mut self) -> io::Result<()> {
        // SAFETY: no argument pointer is passed; GETEVENTS with min_complete 0 only flushes
        // the deferred completions into the completion queue.
        let res = unsafe {
            let sub = self.ring.submitter();
            let n = self.ring.submission_shared().len() as u32;
            sub.enter::<libc::sigset_t>(n, 0, io_uring::EnterFlags::GETEVENTS.bits(), None)
        };
        match res {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EBUSY)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Moves completed events into `out` (cleared first).
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        for cqe in self.ring.completion() {
            let Some((kind, slot)) = split_user_data(cqe.user_data()) else {
                continue;
            };
            out.push(Completion {
                kind,
                slot,
                result: cqe.result(),
                flags: cqe.flags(),
            });
        }
    }

    /// The bytes a recv completion wrote into provided buffer `id`.
    pub fn buffer(&self, id: u16, len: usize) -> &[u8] {
        self.bufs.slice(id, len)
    }

    /// The bytes a recv completion wrote into provided buffer `id`, not tied to `&self`.
    ///
    /// # Safety
    /// The caller must stop using the slice before it calls `reclaim(id)`.
    pub unsafe fn buffer_detached<'a>(&self, id: u16, len: usize) -> &'a [u8] {
        let s = self.bufs.slice(id, len);
        // SAFETY: the buffer memory lives as long as the reactor and is not written by the
        // kernel until the buffer is given back with `reclaim` (caller's contract).
        unsafe { std::slice::from_raw_parts(s.as_ptr(), s.len()) }
    }

    /// Gives provided buffer `id` back to the kernel.
    pub fn reclaim(&mut self, id: u16) {
        self.bufs.recycle(id);
    }

    /// Makes recycled buffers visible to the kernel (once per turn).
    pub fn publish_buffers(&mut self) {
        self.bufs.publish();
    }
}

/// A registered ring of provided buffers (`IORING_REGISTER_PBUF_RING`).
struct BufRing {
    /// Page-aligned ring of `entries` descriptors shared with the kernel.
    ring: *mut BufRingEntry,
    ring_layout: std::alloc::Layout,
    entries: u16,
    /// Our copy of the tail; published to the kernel by `publish`.
    tail: u16,
    /// Backing memory for all buffers, `entries * buf_len` bytes, mapped straight from the
    /// kernel so untouched buffers cost no resident memory (an allocator may zero a large
    /// calloc by hand, making all of it resident at start-up).
    memory: *mut u8,
    memory_len: usize,
    buf_len: usize,
}

impl BufRing {
    fn new(ring: &IoUring, entries: u16, buf_len: usize) -> io::Result<BufRing> {
        assert!(
            entries.is_power_of_two(),
            "provided-buffer count must be a power of two"
        );
        let layout =
            std::alloc::Layout::from_size_align(usize::from(entries) * 16, 4096).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "provided-buffer ring layout")
            })?;
        // SAFETY: layout has a non-zero size (entries >= 1); zeroed memory is a valid ring.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<BufRingEntry>();
        if ptr.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "provided-buffer ring",
            ));
        }
        let memory_len = usize::from(entries) * buf_len;
        // SAFETY: an anonymous private mapping with no address hint; checked for failure.
        let memory = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                memory_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if memory == libc::MAP_FAILED {
            // SAFETY: allocated above with this layout and not yet shared with the kernel.
            unsafe { std::alloc::dealloc(ptr.cast::<u8>(), layout) };
            return Err(io::Error::last_os_error());
        }
        let memory = memory.cast::<u8>();
        let mut bufs = BufRing {
            ring: ptr,
            ring_layout: layout,
            entries,
            tail: 0,
            memory,
            memory_len,
            buf_len,
        };
        // SAFETY: the ring memory lives as long as `bufs`, which the Reactor drops after the
        // IoUring (field order), so the kernel never sees freed ring memory.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(ptr as u64, entries, BUF_GROUP, 0)?;
        }
        for id in 0..entries {
            bufs.recycle(id);
        }
        bufs.publish();
        Ok(bufs)
    }

    fn slice(&self, id: u16, len: usize) -> &[u8] {
        let start = usize::from(id) * self.buf_len;
        let len = len.min(self.buf_len);
        // SAFETY: start + len <= memory_len (id < entries, len <= buf_len); the mapping lives
        // as long as `self`; the kernel writes a buffer only while it is in the ring, and the
        // caller reads only buffers a completion handed back.
        unsafe { std::slice::from_raw_parts(self.memory.add(start), len) }
    }

    fn recycle(&mut self, id: u16) {
        debug_assert!(id < self.entries);
        let index = usize::from(self.tail & (self.entries - 1));
        let addr = self.memory as u64 + (usize::from(id) * self.buf_len) as u64;
        // SAFETY: index < entries, so the entry is inside the ring allocation; the kernel only
        // reads entries between its head and our published tail, and this one is past it.
        unsafe {
            let entry = &mut *self.ring.add(index);
            entry.set_addr(addr);
            entry.set_len(self.buf_len as u32);
            entry.set_bid(id);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&mut self) {
        // SAFETY: the tail field lives in the first ring entry, which is valid for our lifetime;
        // the release store orders the entry writes above before the kernel sees the new tail.
        unsafe {
            let tail = BufRingEntry::tail(self.ring).cast_mut();
            let atomic = &*(tail as *const std::sync::atomic::AtomicU16);
            atomic.store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the ring was torn down before (field
        // order in Reactor drops `ring` first).
        unsafe { std::alloc::dealloc(self.ring.cast::<u8>(), self.ring_layout) };
        // SAFETY: mapped in `new` with this length; the ring is gone, so no buffer is in use.
        unsafe { libc::munmap(self.memory.cast(), self.memory_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        for kind in [
            OpKind::Accept,
            OpKind::Recv,
            OpKind::Send,
            OpKind::Wake,
            OpKind::Cancel,
            OpKind::Poll,
        ] {
            for slot in [0u32, 1, 77, u32::MAX] {
                assert_eq!(split_user_data(user_data(kind, slot)), Some((kind, slot)));
            }
        }
        assert_eq!(split_user_data(0), None);
    }
}
