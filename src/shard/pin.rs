//! Core affinity and thread naming for shards.
//!
//! Cold: runs once per shard at start-up.
//! Invariant: shard i runs on the i-th CPU of the process's affinity mask (modulo its size), so
//! `taskset -c 0 ringnats` gives one shard on CPU 0.

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
