//! The client wire protocol, byte for byte.
//!
//! Checked, over a plain TCP socket (`RawConn`) against a server started per test: the INFO
//! line (fields, key order, trailing space), `+OK` in verbose mode, PING/PONG, case-insensitive
//! operations and tab separators, every `-ERR` text of spec/protocol.md §6 that a single
//! connection can trigger and whether the connection stays open afterwards, the HMSG and
//! no-responders byte vectors, duplicate sids, `UNSUB` with a maximum, and literal delivery of
//! wildcard publish subjects. Expected bytes are what nats-server 2.9.10 sends; where it departs
//! from the spec text, the test says so. "Nothing else arrived" is checked with a PING: the
//! server answers a connection's ops in order, so anything owed before the PONG arrives first.
//! Guards the parser, the encoder and the per-connection state machine against drift from
//! nats-server.

mod common;

use common::{RawConn, Server, show};

/// CONNECT with verbose and pedantic off (nats-server defaults both to on, see below).
const QUIET_HEADERS: &str = r#"{"verbose":false,"pedantic":false,"headers":true}"#;

#[test]
fn info_has_the_nats_server_fields_in_order_and_a_trailing_space() {
    let server = Server::start("");
    let conn = RawConn::connect(server.port());
    let line = &conn.info_line;
    // 2.9.10 writes "INFO", the JSON and "\r\n" joined by spaces: `INFO {...} \r\n`.
    assert!(line.starts_with(b"INFO {"), "{}", show(line));
    assert!(
        line.ends_with(b"} "),
        "no trailing space before CRLF: {}",
        show(line)
    );

    let info = conn.info();
    let server_id = info["server_id"].as_str().expect("server_id");
    assert_eq!(server_id.len(), 56, "server_id is a server nkey");
    assert!(
        server_id.starts_with('N'),
        "server nkey prefix: {server_id}"
    );
    assert!(info["server_name"].is_string());
    assert!(info["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert!(info["go"].is_string());
    assert_eq!(info["proto"], 1);
    assert_eq!(info["host"], "127.0.0.1");
    assert_eq!(info["port"], server.port());
    assert_eq!(info["headers"], true);
    assert_eq!(info["max_payload"], 1_048_576);
    assert!(info["client_id"].is_u64());
    assert_eq!(info["client_ip"], "127.0.0.1");
    // omitempty fields stay out when there is no auth, TLS, cluster or nkey users.
    for absent in [
        "auth_required",
        "tls_required",
        "nonce",
        "connect_urls",
        "ldm",
    ] {
        assert!(
            info.get(absent).is_none(),
            "{absent} present: {}",
            show(line)
        );
    }

    let keys = [
        "server_id",
        "server_name",
        "version",
        "proto",
        "go",
        "host",
        "port",
        "headers",
        "max_payload",
        "client_id",
        "client_ip",
    ];
    let text = String::from_utf8_lossy(line);
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| {
            text.find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} missing"))
        })
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "key order differs: {text}"
    );
}

#[test]
fn each_connection_gets_its_own_client_id() {
    let server = Server::start("");
    let ids: Vec<u64> = (0..4)
        .map(|_| RawConn::connect(server.port()).client_id())
        .collect();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "client ids repeat: {ids:?}");
}

#[test]
fn verbose_acknowledges_connect_sub_pub_unsub() {
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send(b"CONNECT {\"verbose\":true,\"headers\":true}\r\n");
    conn.expect_line(b"+OK");
    conn.send(b"SUB foo 1\r\n");
    conn.expect_line(b"+OK");
    conn.send(b"PUB foo 5\r\nhello\r\n");
    conn.expect_line(b"+OK");
    conn.expect_msg("foo", "1", None, b"hello");
    conn.send(b"PUB nobody 1\r\nx\r\n");
    conn.expect_line(b"+OK");
    conn.send(b"UNSUB 1\r\n");
    conn.expect_line(b"+OK");
    conn.send(b"PING\r\n");
    conn.expect_line(b"PONG");
}

#[test]
fn before_connect_and_with_empty_connect_the_connection_is_verbose_and_pedantic() {
    // nats-server 2.9.10 starts each client with verbose and pedantic on, and CONNECT only
    // overrides the fields it names. The spec (§3) lists both as default false; that is the
    // default of the clients, which always send them.
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send(b"SUB v 1\r\n");
    conn.expect_line(b"+OK");
    conn.send(b"PUB v.* 1\r\nx\r\n");
    conn.expect_err("Invalid Publish Subject");
    conn.expect_line(b"+OK");

    let mut conn = RawConn::connect(server.port());
    conn.send(b"CONNECT {}\r\n");
    conn.expect_line(b"+OK");
}

#[test]
fn ping_pong_and_case_insensitive_ops() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"PING\r\nping\r\nPiNg\r\n");
    conn.expect_line(b"PONG");
    conn.expect_line(b"PONG");
    conn.expect_line(b"PONG");
    conn.send(b"sub lower 1\r\npub lower 2\r\nhi\r\nSuB mixed 2\r\npUb mixed 2\r\nho\r\n");
    conn.expect_msg("lower", "1", None, b"hi");
    conn.expect_msg("mixed", "2", None, b"ho");
}

#[test]
fn tabs_and_repeated_blanks_separate_arguments() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB\tbar\t2\r\nPUB\tbar\trep.x\t2\r\nhi\r\n");
    conn.expect_msg("bar", "2", Some("rep.x"), b"hi");
    conn.send(b"SUB  q \t 3 \r\nPUB   q    2 \r\nok\r\n");
    conn.expect_msg("q", "3", None, b"ok");
}

#[test]
fn zero_length_payload_and_reply_subject() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB e 9\r\nPUB e 0\r\n\r\nPUB e inbox.1 3\r\nabc\r\n");
    conn.expect_msg("e", "9", None, b"");
    conn.expect_msg("e", "9", Some("inbox.1"), b"abc");
}

#[test]
fn ops_split_into_single_bytes_still_parse() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    for byte in b"SUB split 1\r\nPUB split r 5\r\nhello\r\nPING\r\n" {
        conn.send(std::slice::from_ref(byte));
    }
    conn.expect_msg("split", "1", Some("r"), b"hello");
    conn.expect_line(b"PONG");
}

/// Writes that cut ops anywhere (inside the PUB line, inside the payload, between the `\r` and
/// `\n`) and carry whole ops after the cut: the broker completes the cut op from the next read
/// and parses the rest of that read in place.
#[test]
fn ops_cut_at_every_kind_of_boundary_arrive_whole_and_in_order() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB cut.* 1\r\n");
    conn.ping_pong();
    let mut stream = Vec::new();
    // `None` stands for a PONG, in the order the replies must come back.
    let mut expected: Vec<Option<(String, Vec<u8>)>> = Vec::new();
    for i in 0..300usize {
        let payload: Vec<u8> = (0..(i * 37) % 700)
            .map(|j| b'a' + ((i + j) % 26) as u8)
            .collect();
        let subject = format!("cut.{}", i % 7);
        stream.extend_from_slice(format!("PUB {subject} {}\r\n", payload.len()).as_bytes());
        stream.extend_from_slice(&payload);
        stream.extend_from_slice(b"\r\n");
        expected.push(Some((subject, payload)));
        if i % 50 == 0 {
            stream.extend_from_slice(b"PING\r\n");
            expected.push(None);
        }
    }
    // Chunk lengths that drift against the op lengths, so every offset within an op is a cut.
    let mut at = 0;
    for step in (1..).map(|k| 1 + (k * 131) % 997) {
        if at >= stream.len() {
            break;
        }
        let end = (at + step).min(stream.len());
        conn.send(&stream[at..end]);
        std::thread::sleep(std::time::Duration::from_micros(200));
        at = end;
    }
    for item in &expected {
        match item {
            Some((subject, payload)) => conn.expect_msg(subject, "1", None, payload),
            None => conn.expect_line(b"PONG"),
        }
    }
}

#[test]
fn unknown_operation_is_an_error_and_closes() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"FOO bar\r\n");
    conn.expect_err("Unknown Protocol Operation");
    conn.expect_closed();
}

#[test]
fn pub_without_arguments_is_unknown_operation_and_closes() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"PUB\r\n");
    conn.expect_err("Unknown Protocol Operation");
    conn.expect_closed();
}

#[test]
fn control_line_over_4096_is_an_error_and_closes() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    let line = format!("SUB {} 1\r\n", "a".repeat(5000));
    conn.send(line.as_bytes());
    conn.expect_err("maximum control line exceeded");
    conn.expect_closed();
}

#[test]
fn payload_over_max_payload_is_refused_from_the_pub_line_and_closes() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    // Only the PUB line is sent: the size is checked before any payload byte arrives.
    conn.send(b"PUB foo 1048577\r\n");
    conn.expect_err("Maximum Payload Violation");
    conn.expect_closed();
}

#[test]
fn hpub_total_size_counts_against_max_payload() {
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(QUIET_HEADERS);
    conn.send(b"HPUB foo 12 1048577\r\n");
    conn.expect_err("Maximum Payload Violation");
    conn.expect_closed();
}

#[test]
fn invalid_sub_subjects_are_errors_and_the_connection_stays_open() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    for subject in ["foo..bar", ".foo", "foo.", "foo.>.bar"] {
        conn.send(format!("SUB {subject} 1\r\n").as_bytes());
        conn.expect_err("Invalid Subject");
        conn.expect_open();
    }
    // `foo*` is a literal token, not a wildcard, and is accepted.
    conn.send(b"SUB foo* 2\r\nPUB foo* 1\r\nx\r\n");
    conn.expect_msg("foo*", "2", None, b"x");
}

#[test]
fn verbose_sends_no_ok_after_an_invalid_sub() {
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send(b"CONNECT {\"verbose\":true}\r\n");
    conn.expect_line(b"+OK");
    conn.send(b"SUB foo..bar 1\r\nPING\r\n");
    conn.expect_err("Invalid Subject");
    conn.expect_line(b"PONG");
}

#[test]
fn pedantic_publish_to_wildcard_is_an_error_but_still_delivered() {
    // nats-server 2.9.10 `processPub` sends the error and then routes the message anyway, and a
    // verbose connection also gets `+OK` for it. spec/protocol.md §3 says the message is
    // dropped; the server does not drop it.
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send(b"CONNECT {\"verbose\":true,\"pedantic\":true}\r\n");
    conn.expect_line(b"+OK");
    conn.send(b"SUB foo.* 1\r\n");
    conn.expect_line(b"+OK");
    conn.send(b"PUB foo.* 1\r\nx\r\n");
    conn.expect_err("Invalid Publish Subject");
    conn.expect_line(b"+OK");
    conn.expect_msg("foo.*", "1", None, b"x");
    conn.expect_open();

    let mut quiet = RawConn::connect(server.port());
    quiet.send(b"CONNECT {\"verbose\":false,\"pedantic\":true}\r\nSUB ok 1\r\n");
    quiet.send(b"PUB bad..subject 1\r\nx\r\nPUB ok 1\r\ny\r\n");
    quiet.expect_err("Invalid Publish Subject");
    quiet.expect_msg("ok", "1", None, b"y");
}

#[test]
fn non_pedantic_publish_to_wildcard_is_delivered_literally() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB foo.* 1\r\nSUB foo.bar 2\r\nSUB foo.> 3\r\nSUB other 4\r\n");
    conn.send(b"PUB foo.* 1\r\nx\r\n");
    // The literal `*` token matches the `*` and `>` subscriptions, not `foo.bar`.
    // (nats-server delivers `>` subscriptions first here; the order is not a promise.)
    let mut got = [conn.read_msg(), conn.read_msg()];
    got.sort_by(|a, b| a.sid.cmp(&b.sid));
    assert_eq!(
        (got[0].sid.as_str(), got[0].subject.as_str()),
        ("1", "foo.*")
    );
    assert_eq!(
        (got[1].sid.as_str(), got[1].subject.as_str()),
        ("3", "foo.*")
    );
    conn.expect_open();
}

#[test]
fn invalid_client_protocol_closes() {
    let server = Server::start("");
    for protocol in ["2", "-1"] {
        let mut conn = RawConn::connect(server.port());
        conn.send(format!("CONNECT {{\"verbose\":false,\"protocol\":{protocol}}}\r\n").as_bytes());
        conn.expect_err("invalid client protocol");
        conn.expect_closed();
    }
}

#[test]
fn no_responders_without_headers_closes() {
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send(b"CONNECT {\"verbose\":false,\"no_responders\":true}\r\n");
    conn.expect_err("no responders requires headers support");
    conn.expect_closed();
}

#[test]
fn malformed_connect_json_closes_without_err() {
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send(b"CONNECT {bad\r\n");
    conn.expect_closed();
}

#[test]
fn pub_with_wrong_argument_count_closes_without_err() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"PUB foo\r\n");
    conn.expect_closed();
}

#[test]
fn sub_with_too_many_arguments_closes_without_err() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB x q 1 2\r\n");
    conn.expect_closed();
}

#[test]
fn hpub_without_headers_support_closes_without_err() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"HPUB foo 12 14\r\nNATS/1.0\r\n\r\nhi\r\n");
    conn.expect_closed();
}

#[test]
fn bad_payload_terminator_is_unknown_operation_and_closes() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB foo 1\r\nPUB foo 3\r\nhi\r\n");
    conn.expect_err("Unknown Protocol Operation");
    conn.expect_closed();
}

#[test]
fn hmsg_carries_headers_and_payload_verbatim() {
    // spec/protocol.md's vector says `HPUB h r 22 24` with `NATS/1.0\r\nA: b\r\n\r\nhi`, but
    // that header block is 18 bytes; this block is 22.
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(QUIET_HEADERS);
    conn.send(b"SUB h 7\r\nHPUB h r 22 24\r\nNATS/1.0\r\nAbc: def\r\n\r\nhi\r\n");
    conn.expect_line(b"HMSG h 7 r 22 24");
    conn.expect_line(b"NATS/1.0");
    conn.expect_line(b"Abc: def");
    conn.expect_line(b"");
    conn.expect_line(b"hi");

    // Header bytes are not validated: no blank line, still forwarded as is.
    conn.send(b"HPUB h 8 8\r\nNATS/1.0\r\n");
    let msg = conn.read_msg();
    assert_eq!(msg.headers.as_deref(), Some(&b"NATS/1.0"[..]));
    assert_eq!(msg.payload, b"");
}

#[test]
fn headers_are_stripped_for_a_subscriber_without_headers_support() {
    let server = Server::start("");
    let mut plain = RawConn::connect_quiet(server.port());
    plain.send(b"SUB h 1\r\n");
    plain.expect_open();
    let mut publisher = RawConn::connect(server.port());
    publisher.send_connect(QUIET_HEADERS);
    publisher.send(b"HPUB h 22 24\r\nNATS/1.0\r\nAbc: def\r\n\r\nhi\r\n");
    publisher.expect_open();
    plain.expect_msg("h", "1", None, b"hi");
}

#[test]
fn no_responders_reply_is_a_503_hmsg() {
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true}"#);
    conn.send(b"SUB inbox 1\r\nPUB nobody inbox 2\r\nhi\r\n");
    conn.expect_line(b"HMSG inbox 1 16 16");
    conn.expect_line(b"NATS/1.0 503");
    conn.expect_line(b"");
    conn.expect_line(b"");
    conn.expect_open();
}

#[test]
fn no_503_without_a_reply_subject_or_without_no_responders() {
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(r#"{"verbose":false,"pedantic":false,"headers":true,"no_responders":true}"#);
    conn.send(b"SUB inbox 1\r\nPUB nobody 2\r\nhi\r\n");
    conn.expect_open();
    let mut plain = RawConn::connect(server.port());
    plain.send_connect(QUIET_HEADERS);
    plain.send(b"SUB inbox 1\r\nPUB nobody inbox 2\r\nhi\r\n");
    plain.expect_open();
}

#[test]
fn duplicate_sid_delivers_once() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB d 1\r\nSUB d 1\r\nPUB d 1\r\nx\r\n");
    conn.expect_msg("d", "1", None, b"x");
    conn.expect_open();
}

#[test]
fn unsub_max_counts_messages_already_delivered() {
    // spec/protocol.md §3: SUB, 1 msg, `UNSUB 1 2`, 3 publishes -> exactly 1 more delivered.
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB u 1\r\nPUB u 1\r\na\r\nUNSUB 1 2\r\n");
    conn.send(b"PUB u 1\r\nb\r\nPUB u 1\r\nc\r\nPUB u 1\r\nd\r\n");
    conn.expect_msg("u", "1", None, b"a");
    conn.expect_msg("u", "1", None, b"b");
    conn.expect_open();
}

#[test]
fn unsub_max_already_reached_removes_at_once() {
    let server = Server::start("");
    let mut conn = RawConn::connect_quiet(server.port());
    conn.send(b"SUB u 1\r\nPUB u 1\r\na\r\nPUB u 1\r\nb\r\nUNSUB 1 1\r\nPUB u 1\r\nc\r\n");
    conn.expect_msg("u", "1", None, b"a");
    conn.expect_msg("u", "1", None, b"b");
    conn.expect_open();
}

#[test]
fn unsub_removes_and_unknown_sid_is_ignored() {
    let server = Server::start("");
    let mut conn = RawConn::connect(server.port());
    conn.send(b"CONNECT {\"verbose\":true}\r\n");
    conn.expect_line(b"+OK");
    conn.send(b"UNSUB 99\r\n");
    conn.expect_line(b"+OK");
    conn.send(b"SUB r 1\r\nUNSUB 1\r\nPUB r 1\r\nx\r\n");
    conn.expect_line(b"+OK");
    conn.expect_line(b"+OK");
    conn.expect_line(b"+OK");
    conn.expect_open();
}

#[test]
fn echo_false_suppresses_own_messages_only() {
    let server = Server::start("");
    let mut quiet = RawConn::connect(server.port());
    quiet.send_connect(r#"{"verbose":false,"pedantic":false,"echo":false}"#);
    quiet.send(b"SUB e 1\r\n");
    quiet.expect_open();
    let mut other = RawConn::connect_quiet(server.port());
    other.send(b"SUB e 2\r\n");
    other.expect_open();

    quiet.send(b"PUB e 4\r\nmine\r\n");
    quiet.expect_open();
    other.expect_msg("e", "2", None, b"mine");
    other.send(b"PUB e 6\r\ntheirs\r\n");
    quiet.expect_msg("e", "1", None, b"theirs");
}
