//! tools/natsbench, the Go load generator behind `scripts/compare.sh` and `perf/record.sh`,
//! end to end: built by its own script (`tools/natsbench/build.sh --no-install`: Go and
//! nats.go come from Debian's packages, which `.ci/run` installs) and run against the real
//! broker (`Server::start`, 2 shards) with small counts.
//!
//! Checked: pub/sub 1→2 completes with every message counted and a rate reported (the JSON
//! keys `scripts/compare.py` reads); a queue group receives `-n` in total; request/reply
//! reports latency percentiles; a token storm with the right token connects, with a wrong
//! one fails, says so and never prints the token. Every run is bounded by natsbench's own
//! `-timeout` and killed after `RUN_TIMEOUT`.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use common::Server;
use serde_json::Value;

/// Longest one natsbench run may take (its own -timeout is 20 s).
const RUN_TIMEOUT: Duration = Duration::from_secs(40);
/// natsbench's exit status for a run that ended but did not get everything.
const EXIT_INCOMPLETE: i32 = 3;

/// Builds natsbench once per test binary, into target/tmp.
fn natsbench() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("natsbench");
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/natsbench/build.sh");
        let out = Command::new(&script)
            .args(["--no-install", "--quiet"])
            .env("NATSBENCH_DIR", &dir)
            .stdin(Stdio::null())
            .output()
            .expect("run tools/natsbench/build.sh");
        assert!(
            out.status.success(),
            "tools/natsbench/build.sh failed ({:?}; status 3: install golang-go and \
             golang-github-nats-io-go-nats-dev, as .ci/run does):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        dir.join("natsbench")
    })
}

/// Runs natsbench against `server` with `args` (split at spaces), returns (exit code, JSON
/// line, stderr).
fn run(server: &Server, args: &str) -> (i32, Value, String) {
    let mut child = Command::new(natsbench())
        .args(["-s", &server.url(), "-timeout", "20s"])
        .args(args.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn natsbench");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    // stdout closes when natsbench exits: that is the event waited for.
    let Ok(out) = rx.recv_timeout(RUN_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("natsbench {args:?} still running after {RUN_TIMEOUT:?}");
    };
    let status = child.wait().expect("wait natsbench");
    let err = err_reader.join().expect("stderr reader");
    let line = out.lines().last().unwrap_or_default();
    let json: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("natsbench printed no JSON line ({e}): {out:?}\n{err}"));
    (status.code().unwrap_or(-1), json, err)
}

fn number(json: &Value, key: &str) -> f64 {
    json.pointer(key)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {key} in {json}"))
}

#[test]
fn pubsub_counts_every_message_and_reports_rates() {
    let server = Server::start("");
    let (code, json, err) = run(&server, "-np 1 -ns 2 -n 20000 -ms 64");
    assert_eq!(code, 0, "{json}\n{err}");
    assert_eq!(json["complete"], true, "{json}");
    assert_eq!(json["sub_received"], 40_000, "{json}");
    assert_eq!(json["sub_expected"], 40_000, "{json}");
    assert!(number(&json, "/pub_msgs_per_sec") > 0.0, "{json}");
    assert!(number(&json, "/sub_msgs_per_sec") > 0.0, "{json}");
    assert!(
        err.contains("Pub stats:") && err.contains("Sub stats:"),
        "{err}"
    );
}

#[test]
fn a_queue_group_receives_n_in_total() {
    let server = Server::start("");
    let (code, json, _) = run(&server, "-np 1 -ns 3 -q workers -n 9000 -quiet");
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["complete"], true, "{json}");
    assert_eq!(json["sub_received"], 9000, "{json}");
}

#[test]
fn reqrep_reports_latency_percentiles() {
    let server = Server::start("");
    let (code, json, _) = run(&server, "-mode reqrep -n 300 -ms 16 -quiet");
    assert_eq!(code, 0, "{json}");
    assert_eq!(json["requests_ok"], 300, "{json}");
    let (p50, p99) = (number(&json, "/lat_us/p50"), number(&json, "/lat_us/p99"));
    assert!(p50 > 0.0 && p50 <= p99, "{json}");
}

#[test]
fn token_storm_connects_and_a_wrong_token_fails_without_echoing_it() {
    let server = Server::start("authorization { token: \"s3cret-bench-token\" }");
    let (code, json, _) = run(
        &server,
        "-mode connect -c 2 -n 40 -token s3cret-bench-token -quiet",
    );
    assert_eq!(code, 0, "{json}");
    assert!(number(&json, "/connects_ok") >= 40.0, "{json}");
    assert_eq!(json["auth"], "token", "{json}");
    assert!(!json.to_string().contains("s3cret"), "{json}");

    let (code, json, err) = run(
        &server,
        "-mode connect -c 1 -duration 300ms -token wrong-token-value",
    );
    assert_eq!(code, EXIT_INCOMPLETE, "{json}");
    assert_eq!(json["complete"], false, "{json}");
    assert_eq!(json["connects_ok"], 0, "{json}");
    let failure = json["first_failure"].as_str().unwrap_or_default();
    assert!(failure.contains("Authorization Violation"), "{json}");
    assert!(!json.to_string().contains("wrong-token-value"), "{json}");
    assert!(!err.contains("wrong-token-value"), "{err}");
}
