//! The broker's life as an operator sees it: log lines, log levels and file, signals, reload.
//!
//! Each test starts the real binary as a `Server` on 127.0.0.1 (ringnats with `--shards 2`) and
//! watches its output file and raw client sockets: the start-up lines have nats-server's `[pid]
//! YYYY/MM/DD HH:MM:SS.uuuuuu [INF] msg` shape; `-D` logs client connections, `-V` traces ops
//! without ever printing a password or token; `-l` sends the log to a file; SIGTERM and SIGINT
//! deliver every message the server accepted, close clients with a clean EOF and exit 0 within a
//! deadline; SIGHUP applies a changed `max_payload` or `debug` and refuses a changed `port` or an
//! invalid file while it keeps running on the old settings. Every behaviour that must match
//! nats-server 2.9.10 has a `*_nats_server` sibling running the same check against it (skipped when
//! it is not installed; a failure under CI); nats-server 2.9.10 exits 1 after SIGTERM, so that
//! sibling does not check the exit status. Guards `main.rs`, `logging.rs`, `signals.rs`, the reload
//! path and the shards' graceful shutdown.

mod common;

use std::time::{Duration, Instant};

use common::{Launch, QUIET, RawConn, ReadEnd, Server, show};

/// How long one expected log line, reload or exit may take.
const WITHIN: Duration = Duration::from_secs(5);

// ---- log line shape --------------------------------------------------------------------

/// One log line split into nats-server's parts.
#[derive(Debug)]
struct LogLine<'a> {
    pid: u32,
    level: &'a str,
    msg: &'a str,
}

/// `[pid] 2006/01/02 15:04:05.000000 [LVL] msg`, or `None` if the line has another shape.
fn parse_log_line(line: &str) -> Option<LogLine<'_>> {
    let (pid, rest) = line.strip_prefix('[')?.split_once("] ")?;
    let pid = pid.parse().ok()?;
    let time = rest.get(..26)?;
    if !is_timestamp(time) {
        return None;
    }
    let rest = rest[26..].strip_prefix(' ')?;
    let level = rest.get(..5)?;
    if !["[INF]", "[DBG]", "[TRC]", "[WRN]", "[ERR]", "[FTL]"].contains(&level) {
        return None;
    }
    let msg = rest[5..].strip_prefix(' ')?;
    Some(LogLine { pid, level, msg })
}

/// `YYYY/MM/DD HH:MM:SS.uuuuuu`.
fn is_timestamp(text: &str) -> bool {
    const SHAPE: &[u8] = b"dddd/dd/dd dd:dd:dd.dddddd";
    text.len() == SHAPE.len()
        && text.bytes().zip(SHAPE).all(|(c, &s)| match s {
            b'd' => c.is_ascii_digit(),
            other => c == other,
        })
}

/// Every line of `output`, each asserted to have the shape and the process id `pid`.
fn log_lines(output: &str, pid: u32) -> Vec<LogLine<'_>> {
    output
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            let parsed = parse_log_line(line)
                .unwrap_or_else(|| panic!("not a nats-server log line: {line:?}\n{output}"));
            assert_eq!(parsed.pid, pid, "pid of {line:?}");
            parsed
        })
        .collect()
}

/// Index of the first line with `level` whose message satisfies `pred`.
fn find_line(lines: &[LogLine<'_>], level: &str, pred: impl Fn(&str) -> bool) -> Option<usize> {
    lines.iter().position(|l| l.level == level && pred(l.msg))
}

/// A raw client past CONNECT (verbose off) whose PING was answered.
fn quiet_client(port: u16) -> RawConn {
    let mut conn = RawConn::connect_quiet(port);
    conn.expect_open();
    conn
}

fn check_startup_log_shape(broker: &Launch) {
    let server = broker.start();
    let output = server.wait_output("Server is ready", WITHIN);
    let lines = log_lines(&output, server.pid());
    let listening = format!(
        "Listening for client connections on 127.0.0.1:{}",
        server.port()
    );
    let listen_at = find_line(&lines, "[INF]", |m| m == listening)
        .unwrap_or_else(|| panic!("no [INF] {listening:?}:\n{output}"));
    let ready_at = find_line(&lines, "[INF]", |m| m == "Server is ready")
        .unwrap_or_else(|| panic!("no [INF] Server is ready:\n{output}"));
    assert!(listen_at < ready_at, "ready before listening:\n{output}");
    assert!(
        find_line(&lines, "[INF]", |m| m.starts_with("Starting ")).is_some(),
        "no Starting line:\n{output}"
    );
    // A client at the default level leaves no debug or trace line.
    let mut client = quiet_client(server.port());
    client.send(b"SUB foo 1\r\nPUB foo 2\r\nhi\r\n");
    client.expect_msg("foo", "1", None, b"hi");
    client.expect_open();
    let output = server.output();
    assert!(
        !output.contains("[DBG]") && !output.contains("[TRC]"),
        "debug/trace lines without -D/-V:\n{output}"
    );
}

#[test]
fn startup_log_has_nats_server_shape() {
    check_startup_log_shape(&Launch::ringnats());
}

#[test]
fn startup_log_has_nats_server_shape_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_startup_log_shape(&broker);
    }
}

fn check_debug_logs_connections(broker: &Launch) {
    let server = broker.arg("-D").start();
    let client = quiet_client(server.port());
    let cid = client.client_id();
    let needle = format!(" - cid:{cid} - Client connection created");
    let output = server.wait_output(&needle, WITHIN);
    let lines = log_lines(&output, server.pid());
    let at = find_line(&lines, "[DBG]", |m| m.contains(&needle))
        .unwrap_or_else(|| panic!("no [DBG] line with {needle:?}:\n{output}"));
    let msg = lines[at].msg;
    let peer = msg.split(" - ").next().unwrap_or_default();
    let (ip, port) = peer.rsplit_once(':').unwrap_or_default();
    assert_eq!(ip, "127.0.0.1", "peer of {msg:?}");
    assert!(port.parse::<u16>().is_ok(), "peer port of {msg:?}");
}

#[test]
fn debug_flag_logs_client_connection_created() {
    check_debug_logs_connections(&Launch::ringnats());
}

#[test]
fn debug_flag_logs_client_connection_created_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_debug_logs_connections(&broker);
    }
}

/// nats-server's exact words: `<ip>:<port> - cid:<id> - Client connection created`, nothing
/// after them.
fn check_debug_words(broker: &Launch) {
    let server = broker.arg("-D").start();
    let client = quiet_client(server.port());
    let needle = format!(" - cid:{} - Client connection created", client.client_id());
    let output = server.wait_output(&needle, WITHIN);
    let lines = log_lines(&output, server.pid());
    assert!(
        find_line(&lines, "[DBG]", |m| m.ends_with(&needle)).is_some(),
        "no [DBG] line ending {needle:?}:\n{output}"
    );
}

#[test]
fn debug_words_match_nats_server() {
    check_debug_words(&Launch::ringnats());
}

#[test]
fn debug_words_match_nats_server_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_debug_words(&broker);
    }
}

/// True if `word` occurs in `text` with no letter, digit or `_` on either side.
fn has_word(text: &str, word: &str) -> bool {
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !is_word(before) && !is_word(after)
    })
}

/// Runs CONNECT (with secrets), SUB, PUB, PING under `-V`; returns the output and the cid.
fn traced_session(broker: &Launch) -> (Server, String, u64) {
    let server = broker.arg("-V").start();
    let mut client = RawConn::connect(server.port());
    let cid = client.client_id();
    client.send_connect(
        r#"{"verbose":false,"pedantic":false,"user":"bob","pass":"hunter2","auth_token":"tok"}"#,
    );
    client.send(b"SUB foo 1\r\nPUB foo 2\r\nhi\r\n");
    client.expect_msg("foo", "1", None, b"hi");
    client.expect_open();
    let needle = format!("cid:{cid} - <<- [PING]");
    let output = server.wait_output(&needle, WITHIN);
    (server, output, cid)
}

#[test]
fn trace_flag_traces_ops_and_never_secrets() {
    let (server, output, cid) = traced_session(&Launch::ringnats());
    let lines = log_lines(&output, server.pid());
    let prefix = format!(" - cid:{cid} - <<- [");
    for op in ["CONNECT", "SUB foo", "PUB foo", "PING"] {
        let needle = format!("{prefix}{op}");
        assert!(
            find_line(&lines, "[TRC]", |m| m.contains(&needle)).is_some(),
            "no [TRC] line with {needle:?}:\n{output}"
        );
    }
    assert!(
        !output.contains("hunter2"),
        "password in the log:\n{output}"
    );
    assert!(
        !has_word(&output, "tok"),
        "auth token in the log:\n{output}"
    );
}

#[test]
fn trace_flag_traces_ops_and_never_secrets_nats_server() {
    let Some(broker) = Launch::nats_server() else {
        return;
    };
    let (server, output, cid) = traced_session(&broker);
    let lines = log_lines(&output, server.pid());
    let needle = format!(" - cid:{cid} - <<- [CONNECT");
    assert!(
        find_line(&lines, "[TRC]", |m| m.contains(&needle)).is_some(),
        "{output}"
    );
    // nats-server 2.9.10 redacts only the password (it traces auth_token as sent).
    assert!(
        !output.contains("hunter2"),
        "password in the log:\n{output}"
    );
}

/// The exact trace text nats-server 2.9.10 prints for the ops of `traced_session`.
fn check_trace_words(broker: &Launch) {
    let (server, output, cid) = traced_session(broker);
    let lines = log_lines(&output, server.pid());
    for op in ["SUB foo 1", "PUB foo 2", "PING"] {
        let expected = format!(" - cid:{cid} - <<- [{op}]");
        assert!(
            find_line(&lines, "[TRC]", |m| m.ends_with(&expected)).is_some(),
            "no [TRC] line ending {expected:?}:\n{output}"
        );
    }
}

#[test]
fn trace_words_match_nats_server() {
    check_trace_words(&Launch::ringnats());
}

#[test]
fn trace_words_match_nats_server_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_trace_words(&broker);
    }
}

fn check_trace_alone_has_no_debug(broker: &Launch) {
    let (_server, output, _cid) = traced_session(broker);
    assert!(
        !output.contains("[DBG]"),
        "-V without -D logged debug lines:\n{output}"
    );
}

#[test]
fn trace_flag_alone_logs_no_debug_lines() {
    check_trace_alone_has_no_debug(&Launch::ringnats());
}

#[test]
fn trace_flag_alone_logs_no_debug_lines_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_trace_alone_has_no_debug(&broker);
    }
}

fn check_log_file_flag(broker: &Launch) {
    let log_dir = common::scratch_dir();
    let log_path = log_dir.join("broker.log");
    let log_arg = log_path.to_str().expect("utf-8 temp path");
    let server = broker.args(["-l", log_arg]).start();
    let text = common::wait_file_count(&log_path, "Server is ready", 1, WITHIN);
    log_lines(&text, server.pid());
    let listening = format!(
        "Listening for client connections on 127.0.0.1:{}",
        server.port()
    );
    assert!(text.contains(&listening), "{text}");
    let output = server.output();
    assert!(
        !output.contains("Server is ready"),
        "the log also went to stdout/stderr:\n{output}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&log_dir);
}

#[test]
fn log_file_flag_writes_the_log_to_the_file() {
    check_log_file_flag(&Launch::ringnats());
}

#[test]
fn log_file_flag_writes_the_log_to_the_file_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_log_file_flag(&broker);
    }
}

// ---- stop signals ------------------------------------------------------------------------

/// Messages published before the stop signal.
const STOP_MSGS: usize = 10_000;
/// Messages published before the stop signal when they cross shards.
const CROSS_SHARD_STOP_MSGS: usize = 100_000;
/// How long a subscriber may read before the server must have closed it.
const DRAIN_WITHIN: Duration = Duration::from_secs(20);

/// Reads `MSG foo 1 <len>` + payload pairs until the connection ends; returns the payloads and
/// how the connection ended.
fn read_until_end(mut conn: RawConn) -> (Vec<Vec<u8>>, ReadEnd) {
    let deadline = Instant::now() + DRAIN_WITHIN;
    let mut payloads = Vec::new();
    loop {
        match conn.try_read_line(deadline) {
            Ok(line) if line.starts_with(b"MSG foo 1 ") => match conn.try_read_line(deadline) {
                Ok(payload) => payloads.push(payload),
                Err(end) => return (payloads, end),
            },
            Ok(line) => panic!("subscriber got {}", show(&line)),
            Err(end) => return (payloads, end),
        }
    }
}

/// Where the publisher's connection sits relative to the subscriber's shard (ringnats puts
/// the shard in `client_id % shards`, 2 here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placement {
    Any,
    SameShard,
    OtherShard,
}

/// A publisher connection placed as asked relative to `sub` (bounded attempts).
fn publisher(port: u16, sub: &RawConn, placement: Placement) -> RawConn {
    const ATTEMPTS: usize = 64;
    let sub_shard = sub.client_id() % 2;
    for _ in 0..ATTEMPTS {
        let conn = RawConn::connect(port);
        let same = conn.client_id() % 2 == sub_shard;
        match placement {
            Placement::SameShard if !same => continue,
            Placement::OtherShard if same => continue,
            _ => return conn,
        }
    }
    panic!("no connection placed {placement:?} in {ATTEMPTS} attempts");
}

/// How the process must exit after the stop signal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exit {
    Zero,
    /// nats-server 2.9.10 exits 1 after SIGTERM (and 0 after SIGINT); ringnats exits 0.
    Any,
}

/// Subscribes, publishes `STOP_MSGS` (all accepted: the publisher's PING is answered), sends
/// `signal`, and checks: every message reached the subscriber in order, then a clean EOF, and
/// the process exited (with 0 for `Exit::Zero`) within `WITHIN`.
fn check_graceful_stop(broker: &Launch, signal: &str, placement: Placement, exit: Exit) {
    let count = match placement {
        // Enough that the forwarding path to the other shard is still busy at the PONG.
        Placement::OtherShard => CROSS_SHARD_STOP_MSGS,
        _ => STOP_MSGS,
    };
    let mut server = broker.start();
    let mut sub = quiet_client(server.port());
    sub.send(b"SUB foo 1\r\n");
    // The PONG after SUB means every shard knows the subscription.
    sub.expect_open();
    let mut publ = publisher(server.port(), &sub, placement);
    let reader = std::thread::spawn(move || read_until_end(sub));
    publ.send_connect(QUIET);
    let mut batch = Vec::new();
    for i in 0..count {
        let payload = format!("m{i:06}");
        batch.extend_from_slice(format!("PUB foo {}\r\n{payload}\r\n", payload.len()).as_bytes());
    }
    batch.extend_from_slice(b"PING\r\n");
    publ.send(&batch);
    publ.expect_line(b"PONG");

    let signalled = Instant::now();
    let status = server.stop(signal, WITHIN);
    let took = signalled.elapsed();
    let (payloads, end) = reader.join().expect("subscriber thread");
    let output = server.output();
    if exit == Exit::Zero {
        assert!(
            status.success(),
            "exit status {status} after SIG{signal}:\n{output}"
        );
    }
    assert!(took < WITHIN, "exit took {took:?}");
    let first_gap = payloads
        .iter()
        .enumerate()
        .position(|(i, payload)| show(payload) != format!("m{i:06}"));
    assert_eq!(
        (payloads.len(), first_gap),
        (count, None),
        "(messages delivered, first one missing or out of order) before the close; last \
         delivered {:?}; ended by {end:?}",
        payloads.last().map(|p| show(p))
    );
    assert!(
        matches!(end, ReadEnd::Closed(None)),
        "subscriber connection ended by {end:?}, not a clean EOF"
    );
    // The publisher is closed as well.
    publ.expect_closed();
}

#[test]
fn sigterm_delivers_accepted_messages_closes_clients_and_exits_0_same_shard() {
    check_graceful_stop(
        &Launch::ringnats(),
        "TERM",
        Placement::SameShard,
        Exit::Zero,
    );
}

#[test]
fn sigint_delivers_accepted_messages_closes_clients_and_exits_0_same_shard() {
    check_graceful_stop(&Launch::ringnats(), "INT", Placement::SameShard, Exit::Zero);
}

#[test]
fn sigterm_delivers_accepted_messages_across_shards() {
    check_graceful_stop(
        &Launch::ringnats(),
        "TERM",
        Placement::OtherShard,
        Exit::Zero,
    );
}

#[test]
fn sigint_delivers_accepted_messages_across_shards_and_exits_0() {
    check_graceful_stop(
        &Launch::ringnats(),
        "INT",
        Placement::OtherShard,
        Exit::Zero,
    );
}

#[test]
fn sigterm_graceful_stop_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_graceful_stop(&broker, "TERM", Placement::Any, Exit::Any);
    }
}

#[test]
fn sigint_graceful_stop_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_graceful_stop(&broker, "INT", Placement::Any, Exit::Zero);
    }
}

#[test]
fn stop_signal_logs_shutdown_lines() {
    let mut server = Launch::ringnats().start();
    let status = server.stop("TERM", WITHIN);
    assert!(status.success(), "{status}");
    let output = server.output();
    let lines = log_lines(&output, server.pid());
    for msg in ["Initiating Shutdown...", "Server Exiting.."] {
        assert!(
            find_line(&lines, "[INF]", |m| m == msg).is_some(),
            "no [INF] {msg:?}:\n{output}"
        );
    }
}

// ---- SIGHUP reload -----------------------------------------------------------------------

const RELOAD_FAILED: &str = "[ERR] Failed to reload server configuration: ";

/// Sends SIGHUP after the config file was rewritten and waits for the `count`-th refusal.
fn refused_reload(server: &Server, count: usize) -> String {
    server.signal("HUP");
    server.wait_output_count(RELOAD_FAILED, count, WITHIN)
}

fn max_payload_of_new_conn(server: &Server) -> u64 {
    common::info_of(server.port())["max_payload"]
        .as_u64()
        .expect("max_payload in INFO")
}

/// Several new connections, so that each shard of ringnats accepts some.
const NEW_CONNS: usize = 8;

fn check_reload_max_payload_applies_at_once(broker: &Launch) {
    let server = broker.config("max_payload: 1024").start();
    assert_eq!(max_payload_of_new_conn(&server), 1024);
    let output = server.reload("max_payload: 2048", WITHIN);
    assert!(
        output.contains("[INF] Reloaded: max_payload = 2048"),
        "{output}"
    );
    // Once the reload is reported done, every new connection has the new value.
    for _ in 0..NEW_CONNS {
        assert_eq!(max_payload_of_new_conn(&server), 2048);
    }
}

#[test]
fn sighup_reload_applies_max_payload_at_once() {
    check_reload_max_payload_applies_at_once(&Launch::ringnats());
}

#[test]
fn sighup_reload_applies_max_payload_at_once_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_reload_max_payload_applies_at_once(&broker);
    }
}

#[test]
fn sighup_reload_applies_max_payload_to_new_connections() {
    let server = Launch::ringnats().config("max_payload: 1024").start();
    let output = server.reload("max_payload: 2048", WITHIN);
    assert!(
        output.contains("[INF] Reloaded: max_payload = 2048"),
        "{output}"
    );
    // Allow the shards a bounded number of tries to pick the reload up.
    let deadline = Instant::now() + WITHIN;
    let mut seen = 0;
    while seen < NEW_CONNS {
        let mut conn = RawConn::connect(server.port());
        let max = conn.info()["max_payload"].as_u64();
        if max == Some(2048) {
            seen += 1;
            // The new limit is enforced, not just announced: 2048 bytes pass.
            conn.send_connect(QUIET);
            let payload = vec![b'x'; 2048];
            conn.send(b"PUB big 2048\r\n");
            conn.send(&payload);
            conn.send(b"\r\n");
            conn.expect_open();
            continue;
        }
        assert_eq!(max, Some(1024), "{}", show(&conn.info_line));
        assert!(
            Instant::now() < deadline,
            "no INFO with the new max_payload"
        );
        // The shard picks the options up on its next tick; nothing else to wait on.
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn check_reload_refuses_port_change(broker: &Launch) {
    let mut server = broker.config("max_payload: 1024").start();
    let other_port = common::pick_port();
    server.rewrite_config(&format!(
        "listen: 127.0.0.1:{other_port}\nmax_payload: 2048\n"
    ));
    let output = refused_reload(&server, 1);
    let line = output
        .lines()
        .find(|l| l.contains(RELOAD_FAILED))
        .unwrap_or_default();
    assert!(
        line.contains("config reload not supported for") && line.to_lowercase().contains("port"),
        "{line}"
    );
    assert!(!output.contains(common::RELOADED), "{output}");
    server.assert_alive();
    // Still on the old port with the old settings; nothing of the refused file applied.
    assert_eq!(max_payload_of_new_conn(&server), 1024);
    quiet_client(server.port()).expect_open();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", other_port)).is_err(),
        "listening on the refused port"
    );
}

#[test]
fn sighup_reload_refuses_a_port_change_and_keeps_running() {
    check_reload_refuses_port_change(&Launch::ringnats());
}

#[test]
fn sighup_reload_refuses_a_port_change_and_keeps_running_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_reload_refuses_port_change(&broker);
    }
}

fn check_reload_of_invalid_file(broker: &Launch) {
    let mut server = broker.config("max_payload: 1024").start();
    server.rewrite_config_extra("max_payload: 2048\nfoo_bar: 1");
    let output = refused_reload(&server, 1);
    assert!(output.contains("foo_bar"), "{output}");
    server.rewrite_config_extra("max_payload: 2048\nport = = {");
    let output = refused_reload(&server, 2);
    assert!(!output.contains(common::RELOADED), "{output}");
    server.assert_alive();
    assert_eq!(max_payload_of_new_conn(&server), 1024);
    quiet_client(server.port()).expect_open();
    // A good file afterwards still reloads.
    let output = server.reload("max_payload: 4096", WITHIN);
    assert!(output.contains("Reloaded: max_payload = 4096"), "{output}");
}

#[test]
fn sighup_reload_of_an_invalid_file_logs_an_error_and_keeps_running() {
    check_reload_of_invalid_file(&Launch::ringnats());
}

#[test]
fn sighup_reload_of_an_invalid_file_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_reload_of_invalid_file(&broker);
    }
}

fn check_reload_turns_debug_on(broker: &Launch) {
    let server = broker.start();
    let before = quiet_client(server.port());
    let output = server.output();
    assert!(
        !output.contains("[DBG]"),
        "debug lines before reload:\n{output}"
    );
    let output = server.reload("debug: true", WITHIN);
    assert!(output.contains("[INF] Reloaded: debug = true"), "{output}");
    let after = quiet_client(server.port());
    let needle = format!(" - cid:{} - Client connection created", after.client_id());
    let output = server.wait_output(&needle, WITHIN);
    let lines = log_lines(&output, server.pid());
    assert!(
        find_line(&lines, "[DBG]", |m| m.contains(&needle)).is_some(),
        "{output}"
    );
    let old = format!(" - cid:{} - Client connection created", before.client_id());
    assert!(
        !output.contains(&old),
        "debug line from before the reload:\n{output}"
    );
}

#[test]
fn sighup_reload_of_debug_true_turns_on_debug_lines() {
    check_reload_turns_debug_on(&Launch::ringnats());
}

#[test]
fn sighup_reload_of_debug_true_nats_server() {
    if let Some(broker) = Launch::nats_server() {
        check_reload_turns_debug_on(&broker);
    }
}
