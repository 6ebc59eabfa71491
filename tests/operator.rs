//! Signals and flags operators and client libraries script, as nats-server 2.9.10 has them.
//!
//! - A client library's test helper starts the server as `--store_dir DIR -p -1 -l LOG -P
//!   PIDFILE -c conf`, reads the port from the `Listening for client connections on` log line,
//!   connects, and stops it with `--signal ldm=<pid>`: the client gets an INFO with
//!   `"ldm":true`, new connections are refused, the client is closed after
//!   `lame_duck_grace_period`, and the process exits 0.
//! - SIGUSR1 (`--signal reopen=<pidfile>`) reopens the log file after logrotate moved it and
//!   logs `File log re-opened` in the new one.
//! - `--signal` errors, `-t` without `-c`, and `-v` read as nats-server's; flags for features
//!   ringnats lacks (JetStream, clustering) print one "… is not supported by ringnats" line and exit non-zero; `-t`
//!   prints the start-up warnings.
//!
//! Each broker check runs against ringnats and, as a `*_nats_server` sibling, against
//! nats-server (skipped when it is not installed; a failure under CI). Guards `cli.rs`,
//! `signals.rs`, `main.rs`, `logging::reopen_log_file` and `shard/lame_duck.rs`.

mod common;

use std::io::ErrorKind;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Finished, Launch, RawConn, ReadEnd, wait_file_count};

/// How long a log line, a signal's effect or an exit may take.
const WITHIN: Duration = Duration::from_secs(10);
const CLIENT_CONNECT: &str = r#"{"verbose":false,"pedantic":false,"protocol":1}"#;

/// The port in the `Listening for client connections on <host>:<port>` line of `log`.
fn listening_port(log: &Path) -> u16 {
    const LINE: &str = "Listening for client connections on ";
    let text = wait_file_count(log, LINE, 1, WITHIN);
    let rest = &text[text.find(LINE).expect("line") + LINE.len()..];
    let addr = rest.lines().next().expect("address");
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| {
            panic!("no port in {addr:?}");
        })
}

/// Whether a TCP connect to 127.0.0.1:`port` is refused.
fn is_refused(port: u16) -> bool {
    match TcpStream::connect(("127.0.0.1", port)) {
        Err(err) => err.kind() == ErrorKind::ConnectionRefused,
        Ok(_) => false,
    }
}

// ---- the client-library test helper's command line, stopped by lame-duck mode ---------------

fn check_helper_command_line_and_ldm(broker: &Launch) {
    let dir = common::scratch_dir();
    let conf = dir.join("server.conf");
    // A short grace period keeps the test short; the duration stays nats-server's minimum.
    std::fs::write(&conf, "lame_duck_grace_period: \"1s\"\n").expect("write config");
    let (log, pid_file, store) = (dir.join("server.log"), dir.join("pid"), dir.join("js"));
    let mut server = broker
        .no_config()
        .in_dir(&dir)
        .args([
            "--store_dir",
            store.to_str().expect("utf-8"),
            "-p",
            "-1",
            "-l",
            log.to_str().expect("utf-8"),
            "-P",
            pid_file.to_str().expect("utf-8"),
            "-c",
            conf.to_str().expect("utf-8"),
        ])
        .spawn();
    let port = listening_port(&log);
    assert_ne!(port, 0, "the log names the port the kernel picked");
    let pid = server.pid().to_string();
    wait_file_count(&pid_file, &pid, 1, WITHIN);
    assert_eq!(std::fs::read_to_string(&pid_file).expect("pid file"), pid);

    let mut client = RawConn::connect(port);
    client.send_connect(CLIENT_CONNECT);
    client.expect_open();

    let sent = broker.run(&["--signal", &format!("ldm={pid}")], b"");
    assert!(sent.status.success(), "--signal ldm: {sent:?}");
    let info = client.read_line();
    let info = String::from_utf8_lossy(&info).into_owned();
    assert!(
        info.starts_with("INFO ") && info.contains(r#""ldm":true"#),
        "expected the lame-duck INFO, got {info:?}"
    );
    // Every listener stops accepting (each shard within a tick).
    let deadline = Instant::now() + WITHIN;
    while !is_refused(port) {
        assert!(
            Instant::now() < deadline,
            "still accepting in lame-duck mode"
        );
        // A listener shut down by another process: nothing to wait on but trying again.
        std::thread::sleep(Duration::from_millis(20));
    }
    // After the grace period the client is closed, then the server exits.
    match client.next_line_within(WITHIN) {
        Err(ReadEnd::Closed(_)) => {}
        other => panic!("expected the close, got {other:?}"),
    }
    let status = server.wait_exit(WITHIN);
    assert!(
        status.success(),
        "exit status after lame-duck mode: {status}"
    );
    let text = std::fs::read_to_string(&log).expect("log");
    for line in [
        "Entering lame duck mode, stop accepting new clients",
        "Closing existing clients",
        "Server Exiting..",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}

#[test]
fn client_test_helper_command_line_runs_and_ldm_signal_stops_it() {
    check_helper_command_line_and_ldm(&Launch::ringnats());
}

#[test]
fn client_test_helper_command_line_runs_and_ldm_signal_stops_it_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_helper_command_line_and_ldm(&broker);
    }
}

#[test]
fn lame_duck_mode_without_clients_exits_at_once() {
    let broker = Launch::ringnats();
    let dir = common::scratch_dir();
    let log = dir.join("server.log");
    let mut server = broker
        .no_config()
        .in_dir(&dir)
        .args(["-p", "-1", "-l", log.to_str().expect("utf-8")])
        .spawn();
    listening_port(&log);
    wait_file_count(&log, "Server is ready", 1, WITHIN);
    let sent = broker.run(&["-sl", &format!("ldm={}", server.pid())], b"");
    assert!(sent.status.success(), "-sl ldm: {sent:?}");
    // Well under the 10 s default grace period: nobody to wait for.
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}");
}

// ---- SIGUSR1: log file reopen ---------------------------------------------------------------

fn check_log_reopen(broker: &Launch) {
    let dir = common::scratch_dir();
    let (log, pid_file) = (dir.join("server.log"), dir.join("pid"));
    let mut server = broker
        .no_config()
        .in_dir(&dir)
        .args([
            "-p",
            "-1",
            "-l",
            log.to_str().expect("utf-8"),
            "-P",
            pid_file.to_str().expect("utf-8"),
        ])
        .spawn();
    wait_file_count(&log, "Server is ready", 1, WITHIN);
    wait_file_count(&pid_file, &server.pid().to_string(), 1, WITHIN);
    // logrotate's recipe: move the file, then signal.
    std::fs::rename(&log, dir.join("server.log.1")).expect("rotate");
    let sent = broker.run(
        &["--signal", &format!("reopen={}", pid_file.display())],
        b"",
    );
    assert!(sent.status.success(), "--signal reopen: {sent:?}");
    let text = wait_file_count(&log, "File log re-opened", 1, WITHIN);
    assert!(text.contains("[INF]"), "{text}");
    let old = std::fs::read_to_string(dir.join("server.log.1")).expect("old log");
    assert!(!old.contains("File log re-opened"), "{old}");
    // Still running after SIGUSR1.
    server.assert_alive();
}

#[test]
fn sigusr1_reopens_the_log_file() {
    check_log_reopen(&Launch::ringnats());
}

#[test]
fn sigusr1_reopens_the_log_file_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_log_reopen(&broker);
    }
}

// ---- command-line words -----------------------------------------------------------------------

/// Standard error without the leading `<program>: `.
fn message(out: &Finished, name: &str) -> String {
    let text = out.stderr.trim_end();
    text.strip_prefix(&format!("{name}: "))
        .unwrap_or_else(|| panic!("no {name}: prefix in {out:?}"))
        .to_string()
}

#[test]
fn signal_errors_and_test_without_config_read_as_nats_server() {
    // A pid that no longer runs: a child that has exited and been reaped.
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let gone_pid = gone.id();
    gone.wait().expect("wait true");
    let cases: Vec<Vec<String>> = vec![
        vec!["--signal".into(), "bogus=1".into()],
        vec!["--signal".into(), "ldm=abc".into()],
        vec!["-sl".into(), format!("quit={gone_pid}")],
        vec!["-t".into()],
    ];
    let mut brokers = vec![Launch::ringnats()];
    brokers.extend(Launch::nats_server());
    let mut seen: Vec<Vec<String>> = Vec::new();
    for broker in &brokers {
        let mut messages = Vec::new();
        for args in &cases {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = broker.run(&args, b"");
            assert!(!out.status.success(), "{} {args:?}: {out:?}", broker.name());
            messages.push(message(&out, &broker.name()));
        }
        seen.push(messages);
    }
    assert_eq!(
        seen[0],
        [
            "unknown signal \"bogus\"",
            "invalid pid: abc",
            "no such process",
            "must specify [-c, --config] option to check configuration file syntax",
        ]
    );
    if let Some(nats_server) = seen.get(1) {
        assert_eq!(&seen[0], nats_server, "ringnats vs nats-server");
    }
}

#[test]
fn short_v_prints_the_version() {
    let out = Launch::ringnats().run(&["-v"], b"");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("ringnats {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn flags_of_missing_features_get_one_clear_line() {
    for args in [
        &["-js"][..],
        &["--jetstream"],
        &["--cluster", "nats://127.0.0.1:6222"],
        &["--routes", "nats://127.0.0.1:6222"],
        &["--cluster_name", "c"],
    ] {
        let out = Launch::ringnats().run(args, b"");
        assert!(!out.status.success(), "{args:?}: {out:?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{args:?}: {out:?}");
        assert!(
            lines[0].starts_with("ringnats: ")
                && lines[0].ends_with("is not supported by ringnats"),
            "{args:?}: {lines:?}"
        );
    }
}

#[test]
fn test_flag_prints_startup_warnings() {
    let dir = common::scratch_dir();
    let conf = dir.join("server.conf");
    std::fs::write(
        &conf,
        "cluster { port: 6222 }\n\
         accounts { SYS { users [{user: s, password: s}] } }\n\
         system_account: SYS\n",
    )
    .expect("write config");
    let out = Launch::ringnats().run(&["-t", "-c", conf.to_str().expect("utf-8")], b"");
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("[WRN]")
            && out
                .stderr
                .contains("\"cluster\" is not supported by ringnats and is ignored"),
        "{out:?}"
    );
    assert!(
        !out.stderr.contains("system_account"),
        "the system account has its events and requests now: {out:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
