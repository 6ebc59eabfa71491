//! The process's memory and CPU use for `/varz` (`mem`, `cpu`), read from `/proc` as
//! nats-server's `pse_linux.go` does: resident set size in bytes, and CPU time over wall time
//! in percent (100 = one core busy).
//!
//! Cold: one read of `/proc/self/stat` per `/varz`.
#![allow(unsafe_code)] // sysconf through libc.

use std::time::Instant;

/// CPU use is averaged over at least this long; a `/varz` sooner than that repeats the last
/// figure (nats-server refreshes it once a second).
const CPU_SAMPLE_MIN: std::time::Duration = std::time::Duration::from_secs(1);

/// Remembers the last CPU reading, so `cpu` is the use since then.
pub struct CpuSampler {
    last: Option<(Instant, u64)>,
    percent: f64,
}

impl CpuSampler {
    /// Starts from the process's start: the first figure is the average since then.
    pub fn new() -> CpuSampler {
        CpuSampler {
            last: None,
            percent: 0.0,
        }
    }

    /// Resident memory in bytes and CPU percent, or zeros where `/proc` cannot be read.
    pub fn sample(&mut self, process_start: Instant) -> (u64, f64) {
        let Some(stat) = read_stat() else {
            return (0, self.percent);
        };
        let now = Instant::now();
        let (since, ticks_before) = self.last.unwrap_or((process_start, 0));
        let elapsed = now.saturating_duration_since(since);
        if self.last.is_none() || elapsed >= CPU_SAMPLE_MIN {
            let ticks = stat.cpu_ticks.saturating_sub(ticks_before) as f64;
            if elapsed.as_secs_f64() > 0.0 {
                let percent = ticks / clock_ticks() / elapsed.as_secs_f64() * 100.0;
                // One decimal, as nats-server rounds it.
                self.percent = (percent * 10.0).round() / 10.0;
            }
            self.last = Some((now, stat.cpu_ticks));
        }
        (stat.rss_bytes, self.percent)
    }
}

impl Default for CpuSampler {
    fn default() -> Self {
        Self::new()
    }
}

struct Stat {
    rss_bytes: u64,
    cpu_ticks: u64,
}

/// `/proc/self/stat`: utime (14) + stime (15) in clock ticks, rss (24) in pages.
fn read_stat() -> Option<Stat> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold blanks; fields after it start past the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    let cpu_ticks = field(14)? + field(15)?;
    let rss_pages = field(24)?;
    Some(Stat {
        rss_bytes: rss_pages * page_size(),
        cpu_ticks,
    })
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf takes an integer name and reads no memory of ours.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

fn page_size() -> u64 {
    // SAFETY: as above.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory() {
        let mut sampler = CpuSampler::new();
        let (mem, cpu) = sampler.sample(Instant::now());
        assert!(mem > 1024 * 1024, "rss {mem}");
        assert!(cpu >= 0.0);
    }
}
