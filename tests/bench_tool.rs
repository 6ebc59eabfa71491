//! `ringnats bench` end to end: the real broker binary (`Server::start`, 2 shards) and the real
//! `ringnats bench` as a subprocess against it, with small counts.
//!
//! Checked: pub/sub 1→2 completes and every subscriber reports all `--msgs`; a queue group
//! receives `--msgs` in total; `--duration` runs deliver to a subscriber exactly what was
//! published; `--request` prints the latency percentiles; `--csv` writes nats bench's header
//! and one row per client; token auth works and a wrong token fails with the server's words
//! (and without echoing the token); `--connect-storm` reports connects; `--size` units parse.
//! Every run is bounded: the bench has its own deadlines, and `run_bench` kills it after
//! `BENCH_TIMEOUT`. Guards `src/tools/bench/`.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::Server;
use ringnats::tools::bench::units::parse_size;

/// Longest any bench subprocess may run.
const BENCH_TIMEOUT: Duration = Duration::from_secs(60);

fn bench_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringnats"))
}

/// Runs `ringnats bench -s <url> --no-progress <args>` and returns its output.
fn run_bench(server: &Server, args: &[&str]) -> Output {
    let mut child = Command::new(bench_bin())
        .arg("bench")
        .args(["-s", &server.url(), "--no-progress"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringnats bench");
    let (tx, rx) = mpsc::channel();
    for (name, mut pipe) in [
        (
            "stdout",
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn Read + Send>,
        ),
        ("stderr", Box::new(child.stderr.take().expect("stderr"))),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send((name, bytes));
        });
    }
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        // Both pipes close when the bench exits: that is the event waited for.
        let Ok((name, bytes)) = rx.recv_timeout(BENCH_TIMEOUT) else {
            let _ = child.kill();
            panic!("ringnats bench {args:?} still running after {BENCH_TIMEOUT:?}");
        };
        if name == "stdout" {
            stdout = bytes
        } else {
            stderr = bytes
        }
    }
    let status = child.wait().expect("wait for bench");
    Output {
        status,
        stdout,
        stderr,
    }
}

fn stdout_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn assert_success(out: &Output) -> String {
    let stdout = stdout_of(out);
    assert!(
        out.status.success(),
        "bench failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The `(N msgs)` counts of the per-client lines under `<side> stats:`.
fn client_counts(report: &str, side: &str) -> Vec<u64> {
    let header = format!("{side} stats:");
    let mut lines = report
        .lines()
        .skip_while(|l| !l.trim_start().starts_with(&header));
    lines.next();
    lines
        .take_while(|l| l.trim_start().starts_with('['))
        .map(|l| {
            let inner = l.rsplit_once('(').expect("(N msgs)").1;
            inner.trim_end_matches(" msgs)").parse().expect("count")
        })
        .collect()
}

#[test]
fn pub_sub_one_to_two_delivers_every_message_to_each_subscriber() {
    let server = Server::start("");
    let out = run_bench(
        &server,
        &["--pub", "1", "--sub", "2", "--msgs", "2000", "--size", "16"],
    );
    let report = assert_success(&out);
    assert!(
        report.starts_with(
            "Starting benchmark [subject=bench, msgs=2,000, msgsize=16 B, pubs=1, subs=2]"
        ),
        "{report}"
    );
    assert!(report.contains("\nNATS Pub/Sub stats: "), "{report}");
    assert!(report.contains("\n Pub stats: "), "{report}");
    assert!(report.contains(" msgs/sec ~ "), "{report}");
    assert_eq!(client_counts(&report, "Sub"), vec![2000, 2000], "{report}");
    assert!(report.contains("  min "), "statistics line: {report}");
    assert!(report.contains(" | stddev "), "statistics line: {report}");
}

#[test]
fn queue_group_receives_msgs_in_total() {
    let server = Server::start("");
    let args = [
        "--pub", "2", "--sub", "3", "--queue", "workers", "--msgs", "3000", "--size", "8",
    ];
    let report = assert_success(&run_bench(&server, &args));
    assert_eq!(client_counts(&report, "Pub"), vec![1500, 1500], "{report}");
    let subs = client_counts(&report, "Sub");
    assert_eq!(subs.len(), 3, "{report}");
    assert_eq!(subs.iter().sum::<u64>(), 3000, "{report}");
}

#[test]
fn duration_run_delivers_what_was_published() {
    let server = Server::start("");
    let args = [
        "--pub",
        "1",
        "--sub",
        "2",
        "--duration",
        "300ms",
        "--size",
        "16",
    ];
    let report = assert_success(&run_bench(&server, &args));
    let subs = client_counts(&report, "Sub");
    assert_eq!(subs.len(), 2, "{report}");
    assert!(subs[0] > 0, "{report}");
    assert_eq!(
        subs[0], subs[1],
        "each subscriber gets every message: {report}"
    );
}

#[test]
fn request_reply_prints_percentiles() {
    let server = Server::start("");
    let report = assert_success(&run_bench(
        &server,
        &["--request", "--msgs", "200", "--size", "32"],
    ));
    assert!(
        report.contains("Starting request/reply benchmark ["),
        "{report}"
    );
    let line = report
        .lines()
        .find(|l| l.starts_with("Latency: "))
        .unwrap_or_else(|| panic!("no latency line: {report}"));
    for field in [
        "min ", "| avg ", "| p50 ", "| p90 ", "| p99 ", "| p99.9 ", "| max ",
    ] {
        assert!(line.contains(field), "{field:?} missing: {line}");
    }
    assert!(line.ends_with("(200 samples)"), "{line}");
    assert!(report.contains("\nPub stats: "), "{report}");
}

#[test]
fn csv_has_nats_bench_header_and_one_row_per_client() {
    let server = Server::start("");
    let path = std::env::temp_dir().join(format!("ringnats-bench-{}.csv", std::process::id()));
    let path_str = path.to_str().expect("utf-8 temp path");
    let args = [
        "--pub", "2", "--sub", "1", "--msgs", "1000", "--size", "16", "--csv", path_str,
    ];
    let report = assert_success(&run_bench(&server, &args));
    assert!(
        report.contains("Saved metric data in csv file "),
        "{report}"
    );
    let csv = std::fs::read_to_string(&path).expect("csv written");
    let _ = std::fs::remove_file(&path);
    let rows: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "#RunID",
            "ClientID",
            "MsgCount",
            "MsgBytes",
            "MsgsPerSec",
            "BytesPerSec",
            "DurationSecs"
        ]
    );
    let ids: Vec<&str> = rows[1..].iter().map(|r| r[1]).collect();
    assert_eq!(ids, ["S0", "P0", "P1"], "{csv}");
    assert_eq!(rows[1][2], "1000", "{csv}");
    assert_eq!(rows[1][3], "16000", "{csv}");
    assert_eq!(rows[2][2], "500", "{csv}");
    assert!(
        rows[1..].iter().all(|r| r.len() == 7 && r[0] == rows[1][0]),
        "{csv}"
    );
}

#[test]
fn token_auth_works_and_a_wrong_token_fails_clearly() {
    let server = Server::start("authorization { token: t0ken }");
    let args = [
        "--token", "t0ken", "--pub", "1", "--sub", "1", "--msgs", "500",
    ];
    let report = assert_success(&run_bench(&server, &args));
    assert_eq!(
        client_counts(&report, "Sub"),
        Vec::<u64>::new(),
        "one sub: no client lines"
    );
    assert!(report.contains(" Sub stats: "), "{report}");

    let out = run_bench(&server, &["--token", "wr0ng", "--pub", "1", "--msgs", "10"]);
    assert!(!out.status.success(), "a wrong token must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Authorization Violation"), "{stderr}");
    assert!(
        stderr.contains(&format!("connect to {}", server.url())),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wr0ng"),
        "the token must not be echoed: {stderr}"
    );
    let out = run_bench(&server, &["--pub", "1", "--msgs", "10"]);
    assert!(!out.status.success(), "no token must fail");
}

#[test]
fn connect_storm_reports_connects() {
    let server = Server::start("");
    let args = ["--connect-storm", "--workers", "2", "--duration", "300ms"];
    let report = assert_success(&run_bench(&server, &args));
    assert!(report.contains("\nConnect stats: "), "{report}");
    assert!(report.contains("Connect latency: min "), "{report}");
    assert!(!report.contains("Failed connects"), "{report}");
}

#[test]
fn size_units() {
    assert_eq!(parse_size("16"), Ok(16));
    assert_eq!(parse_size("16b"), Ok(16));
    assert_eq!(parse_size("16kb"), Ok(16 * 1024));
    assert_eq!(parse_size("1mb"), Ok(1024 * 1024));
    assert_eq!(parse_size("1MB"), Ok(1024 * 1024));
    assert!(parse_size("16xb").is_err());
    assert!(parse_size("").is_err());
    assert!(parse_size("1gb").is_err());
}

#[test]
fn size_flag_rejects_unknown_units_before_connecting() {
    let out = Command::new(bench_bin())
        .args(["bench", "-s", "nats://127.0.0.1:1", "--size", "16xb"])
        .output()
        .expect("run bench");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid size"), "{stderr}");
}

#[test]
fn user_password_auth_works() {
    let server = Server::start("authorization { user: bench, password: s3cret }");
    let args = [
        "--user",
        "bench",
        "--password",
        "s3cret",
        "--pub",
        "1",
        "--msgs",
        "100",
    ];
    assert_success(&run_bench(&server, &args));
    let out = run_bench(
        &server,
        &["--user", "bench", "--password", "nope", "--msgs", "10"],
    );
    assert!(!out.status.success(), "a wrong password must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Authorization Violation"), "{stderr}");
}

#[test]
fn nkey_seed_file_signs_the_nonce() {
    let user = nkeys::KeyPair::new_user();
    let conf = format!(
        "authorization {{ users: [ {{ nkey: {} }} ] }}",
        user.public_key()
    );
    let server = Server::start(&conf);
    let dir = std::env::temp_dir().join(format!("ringnats-bench-nkey-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let seed_file = dir.join("user.nk");
    std::fs::write(&seed_file, user.seed().expect("seed")).expect("write seed");
    let other_file = dir.join("other.nk");
    let other = nkeys::KeyPair::new_user().seed().expect("seed");
    std::fs::write(&other_file, other).expect("write seed");
    let seed_arg = seed_file.to_str().expect("utf-8 path");
    let args = [
        "--nkey", seed_arg, "--pub", "1", "--sub", "1", "--msgs", "200",
    ];
    let report = assert_success(&run_bench(&server, &args));
    assert!(report.contains(" Sub stats: "), "{report}");
    let other_arg = other_file.to_str().expect("utf-8 path");
    let out = run_bench(&server, &["--nkey", other_arg, "--msgs", "10"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success(), "an unknown nkey must fail");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Authorization Violation"), "{stderr}");
}

/// Mutual TLS: needs `ringnats::tls::test_pki` (feature `test-pki`) for certificates.
#[cfg(feature = "test-pki")]
#[test]
fn mutual_tls_with_ca_cert_and_key() {
    let dir = std::env::temp_dir().join(format!("ringnats-bench-pki-{}", std::process::id()));
    let pki = ringnats::tls::test_pki::write_test_pki(&dir);
    let conf = format!(
        "tls {{ cert_file: \"{}\", key_file: \"{}\", ca_file: \"{}\", verify: true }}",
        pki.server.cert.display(),
        pki.server.key.display(),
        pki.ca_cert.display()
    );
    let server = Server::start(&conf);
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_string();
    let (ca, cert, key) = (
        path(&pki.ca_cert),
        path(&pki.alice_o_cn.cert),
        path(&pki.alice_o_cn.key),
    );
    let args = [
        "--tlsca",
        &ca,
        "--tlscert",
        &cert,
        "--tlskey",
        &key,
        "--pub",
        "1",
        "--sub",
        "1",
        "--msgs",
        "500",
    ];
    let report = assert_success(&run_bench(&server, &args));
    assert!(report.contains(" Sub stats: "), "{report}");
    let out = run_bench(&server, &["--msgs", "10"]);
    assert!(!out.status.success(), "TLS is required");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("requires TLS"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
