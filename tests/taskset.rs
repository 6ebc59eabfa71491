//! Shard count from the CPU affinity mask: `taskset -c <cpu> ringnats` runs one shard, and
//! `--shards 2` overrides the mask (two shards on the one allowed CPU).
//!
//! Each test starts the real binary under `taskset`, pinned to the first CPU this process may
//! use (skipped when `taskset` is not installed or cannot pin; a failure under CI) on a fresh
//! 127.0.0.1 port and reads the start-up line `Shards:   N`; clients are checked to work, and
//! with two shards the INFO `client_id`s of a few connections must cover both shards
//! (`client_id % 2`). Guards `pin::allowed_cpus` and the `--shards` default.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Launch, RawConn};

const WITHIN: Duration = Duration::from_secs(5);

/// The first CPU this process may run on (a container need not allow CPU 0).
fn first_allowed_cpu() -> String {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list");
    let first = list.trim().split([',', '-']).next().unwrap_or_default();
    assert!(!first.is_empty(), "no allowed CPU in {list:?}");
    first.to_owned()
}

/// ringnats under `taskset -c <one allowed CPU>` (with `shards` if given, else the CPU mask
/// decides), or `None` when `taskset` is missing or cannot pin (`skip_or_fail`: a failure
/// under CI).
fn on_one_cpu(shards: Option<usize>) -> Option<Launch> {
    let cpu = first_allowed_cpu();
    let works = Command::new("taskset")
        .args(["-c", &cpu, "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        common::skip_or_fail(&format!("taskset missing or unable to pin to CPU {cpu}"));
        return None;
    }
    let launch = Launch::ringnats()
        .no_shards()
        .wrapped_in(&["taskset", "-c", &cpu]);
    Some(match shards {
        Some(n) => launch.shards(n),
        None => launch,
    })
}

/// The client ids of `count` fresh connections that work.
fn client_ids(port: u16, count: usize) -> Vec<u64> {
    (0..count)
        .map(|_| {
            let mut conn = RawConn::connect(port);
            conn.expect_open();
            conn.client_id()
        })
        .collect()
}

#[test]
fn one_allowed_cpu_means_one_shard() {
    let Some(launch) = on_one_cpu(None) else {
        return;
    };
    let server = launch.start();
    let output = server.wait_output("Server is ready", WITHIN);
    assert!(output.contains("[INF]   Shards:   1\n"), "{output}");
    assert_eq!(client_ids(server.port(), 4).len(), 4);
}

#[test]
fn shards_flag_overrides_the_affinity_mask() {
    let Some(launch) = on_one_cpu(Some(2)) else {
        return;
    };
    let server = launch.start();
    let output = server.wait_output("Server is ready", WITHIN);
    assert!(output.contains("[INF]   Shards:   2\n"), "{output}");
    // Connections spread over both shards; bounded attempts since the kernel picks.
    const ATTEMPTS: usize = 64;
    let ids = client_ids(server.port(), ATTEMPTS);
    let on_0 = ids.iter().any(|id| id % 2 == 0);
    let on_1 = ids.iter().any(|id| id % 2 == 1);
    assert!(on_0 && on_1, "client ids {ids:?} all on one shard");
}
