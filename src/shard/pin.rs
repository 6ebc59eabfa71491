//! Core affinity, thread naming and the scheduler time slice for shards.
//!
//! Cold: runs once per shard at start-up.
//! Invariant: shard i runs on the i-th CPU of the process's affinity mask (modulo its size), so
//! `taskset -c 0 ringnats` gives one shard on CPU 0; a shard thread under the normal (fair)
//! policy asks for a [`SHARD_SLICE`] time slice, and keeps its policy and nice value.
// sched_getattr/sched_setattr have no wrapper in libc; each call names its SAFETY argument.
#![allow(unsafe_code)]

use std::time::Duration;

/// The CPUs this process may run on, in ascending order.
pub fn allowed_cpus() -> Vec<core_affinity::CoreId> {
    let mut cores = core_affinity::get_core_ids().unwrap_or_default();
    cores.sort_by_key(|c| c.id);
    cores
}

/// Pins the calling thread to `cpu`; logs and carries on if the kernel refuses.
pub fn pin_current(cpu: core_affinity::CoreId, shard: u16) {
    if !core_affinity::set_for_current(cpu) {
        tracing::warn!(shard, cpu = cpu.id, "could not pin shard thread to its CPU");
    }
}

/// The CPU time slice a shard thread asks the scheduler for (`sched_setattr` `sched_runtime`,
/// EEVDF's custom slice, Linux 6.12 and later; older kernels ignore it).
///
/// Why: a shard sleeps in `io_uring_enter` between turns, and EEVDF lets a task that wakes wait
/// until the running task has used its slice (1.4 ms on the 2-core test box) unless the woken
/// task asks for a shorter one. On a box shared with batch work every wake-up of a shard (an
/// accept, a CONNECT, a request) then waited a slice: a `.creds` connect storm with 4 workers
/// made 4,900 connects/s at the default slice and 9,700/s at 100 µs, at load 16 on 2 cores
/// (schedstat: the shard waited 1 ms per wake-up). A short slice changes when the shard runs,
/// not how much: over time it still gets only its fair share of the core.
pub const SHARD_SLICE: Duration = Duration::from_micros(100);

/// Whether [`request_short_slice`] changed the calling thread's slice.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum SliceRequest {
    /// The kernel took [`SHARD_SLICE`] (it may still ignore it, before Linux 6.12).
    Set,
    /// The thread runs under a real-time or other non-fair policy: left alone.
    NotFair,
    /// `sched_getattr`/`sched_setattr` failed (seccomp, an old kernel).
    Refused,
}

/// Asks for a [`SHARD_SLICE`] time slice for the calling thread, keeping its policy and nice
/// value.
pub fn request_short_slice() -> SliceRequest {
    let mut attr = sched_attr_zeroed();
    let size = u32::try_from(std::mem::size_of::<libc::sched_attr>()).unwrap_or(u32::MAX);
    // SAFETY: pid 0 names the calling thread; `attr` is a writable `sched_attr` of `size` bytes
    // that lives across the call, and flags must be 0.
    let got = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &mut attr, size, 0) };
    if got != 0 {
        return SliceRequest::Refused;
    }
    let policy = i32::try_from(attr.sched_policy).unwrap_or(-1);
    if policy != libc::SCHED_OTHER && policy != libc::SCHED_BATCH {
        return SliceRequest::NotFair;
    }
    attr.size = size;
    attr.sched_flags = 0;
    attr.sched_runtime = u64::try_from(SHARD_SLICE.as_nanos()).unwrap_or(u64::MAX);
    // SAFETY: pid 0 names the calling thread; `attr` is a valid `sched_attr` for the fair
    // policy it already runs under (same nice), living across the call; flags must be 0.
    let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr, 0) };
    if set == 0 {
        SliceRequest::Set
    } else {
        SliceRequest::Refused
    }
}

fn sched_attr_zeroed() -> libc::sched_attr {
    libc::sched_attr {
        size: 0,
        sched_policy: 0,
        sched_flags: 0,
        sched_nice: 0,
        sched_priority: 0,
        sched_runtime: 0,
        sched_deadline: 0,
        sched_period: 0,
    }
}
