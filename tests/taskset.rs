//! Shard count from the CPU affinity mask: `taskset -c 0 ringnats` runs one shard, and
//! `--shards 2` overrides the mask (two shards on the one allowed CPU).
//!
//! Each test starts the real binary under `taskset` (skipped when `taskset` is not installed or
//! the machine lets it set no mask) on a fresh 127.0.0.1 port and reads the start-up line
//! `Shards:   N`; clients are checked to work, and with two shards the INFO `client_id`s of a
//! few connections must cover both shards (`client_id % 2`). Guards `pin::allowed_cpus` and the
//! `--shards` default.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{Daemon, Launch, RawConn, ringnats_bin};

const WITHIN: Duration = Duration::from_secs(5);

/// `taskset` if it is installed and can run a command pinned to CPU 0.
fn taskset() -> Option<PathBuf> {
    let works = Command::new("taskset")
        .args(["-c", "0", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !works {
        eprintln!("skipped: taskset missing or unable to pin to CPU 0");
        return None;
    }
    Some(PathBuf::from("taskset"))
}

/// Starts `taskset -c 0 ringnats -c <conf> args...`.
fn start_on_cpu0(taskset: PathBuf, args: &[&str]) -> Daemon {
    let mut launch = Launch::listen(&ringnats_bin(), "", args);
    launch.program = vec![
        taskset.into_os_string(),
        "-c".into(),
        "0".into(),
        ringnats_bin().into_os_string(),
    ];
    Daemon::start(launch)
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
    let Some(taskset) = taskset() else { return };
    let server = start_on_cpu0(taskset, &[]);
    let output = server.wait_output("Server is ready", WITHIN);
    assert!(output.contains("[INF]   Shards:   1\n"), "{output}");
    assert_eq!(client_ids(server.port(), 4).len(), 4);
}

#[test]
fn shards_flag_overrides_the_affinity_mask() {
    let Some(taskset) = taskset() else { return };
    let server = start_on_cpu0(taskset, &["--shards", "2"]);
    let output = server.wait_output("Server is ready", WITHIN);
    assert!(output.contains("[INF]   Shards:   2\n"), "{output}");
    // Connections spread over both shards; bounded attempts since the kernel picks.
    const ATTEMPTS: usize = 64;
    let ids = client_ids(server.port(), ATTEMPTS);
    let on_0 = ids.iter().any(|id| id % 2 == 0);
    let on_1 = ids.iter().any(|id| id % 2 == 1);
    assert!(on_0 && on_1, "client ids {ids:?} all on one shard");
}
