//! Configured limits: `max_connections`, `max_control_line`, `max_payload`, and the keepalive
//! pair `ping_interval` / `ping_max`.
//!
//! Checked, with `RawConn` against a server started with each limit in its config file: the
//! connection over the limit gets INFO, then the exact `-ERR` text, then EOF; connections within
//! the limit keep working; the limit boundary is where nats-server 2.9.10 puts it. The keepalive
//! test runs one silent client (must get `PING`, then `-ERR 'Stale Connection'` and a close) next
//! to one that answers PINGs (must stay connected). Guards the config model and the cold-path
//! timers against drift from nats-server.

mod common;

use std::time::{Duration, Instant};

use common::{Nats, QUIET, RawConn, Server};

/// Opens a connection that the server accepts as a client (PING answered by PONG). The harness's
/// readiness probe, or a connection a test just dropped, may still count for a moment.
fn accepted_conn(server: &Server) -> RawConn {
    const ATTEMPTS: usize = 100;
    for _ in 0..ATTEMPTS {
        let mut conn = RawConn::connect(server.port());
        conn.send(b"PING\r\n");
        if conn.read_line() == b"PONG" {
            return conn;
        }
        // The server has not yet reaped a closed connection; no event tells us when it has.
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no connection accepted in {ATTEMPTS} attempts");
}

#[test]
fn connection_over_max_connections_gets_info_then_err_and_close() {
    let server = Server::start("max_connections: 2");
    let mut first = accepted_conn(&server);
    let mut second = accepted_conn(&server);

    // `connect` asserts the INFO line comes first.
    let mut third = RawConn::connect(server.port());
    third.expect_err("maximum connections exceeded");
    third.expect_closed();

    first.expect_open();
    second.expect_open();
    drop(first);
    // A slot is free again once the server has seen the close.
    let mut replacement = accepted_conn(&server);
    replacement.expect_open();
    second.expect_open();
}

#[test]
fn max_control_line_bounds_the_arguments() {
    // nats-server 2.9.10 compares the argument bytes (after the op name and its blank, before
    // CRLF) with max_control_line: 256 argument bytes pass, 257 fail.
    let server = Server::start("max_control_line: 256");
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(QUIET);
    let subject = "a".repeat(254);
    conn.send(format!("SUB {subject} 1\r\nPUB {subject} 2\r\nok\r\n").as_bytes());
    conn.expect_msg(&subject, "1", None, b"ok");

    let subject = "a".repeat(255);
    conn.send(format!("SUB {subject} 1\r\n").as_bytes());
    conn.expect_err("maximum control line exceeded");
    conn.expect_closed();

    let mut publisher = RawConn::connect(server.port());
    publisher.send_connect(QUIET);
    publisher.send(format!("PUB {} 1\r\nx\r\n", "b".repeat(300)).as_bytes());
    publisher.expect_err("maximum control line exceeded");
    publisher.expect_closed();
}

#[tokio::test]
async fn configured_max_payload_is_advertised_and_enforced() {
    let server = Server::start("max_payload: 1024");
    let nats = Nats::connect(&server).await;
    assert_eq!(nats.server_info().max_payload, 1024);

    let mut conn = RawConn::connect(server.port());
    assert_eq!(conn.info()["max_payload"], 1024);
    conn.send_connect(QUIET);
    let payload = vec![b'p'; 1024];
    conn.send(b"SUB big 1\r\nPUB big 1024\r\n");
    conn.send(&payload);
    conn.send(b"\r\n");
    conn.expect_msg("big", "1", None, &payload);

    conn.send(b"PUB big 1025\r\n");
    conn.expect_err("Maximum Payload Violation");
    conn.expect_closed();
}

#[test]
fn silent_client_is_pinged_then_closed_as_stale_while_an_answering_client_stays() {
    let server = Server::start("ping_interval: \"1s\"\nping_max: 1");
    let started = Instant::now();
    let mut silent = RawConn::connect(server.port());
    silent.set_auto_pong(false);
    silent.send_connect(QUIET);
    let mut answering = RawConn::connect(server.port());
    answering.set_auto_pong(false);
    answering.send_connect(QUIET);

    silent.expect_line(b"PING");
    answering.expect_line(b"PING");
    answering.send(b"PONG\r\n");
    silent.expect_err("Stale Connection");
    silent.expect_closed();
    // With ping_max 1 the close comes on the tick after the unanswered PING (~2 s), not later.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );

    // The answering client saw the same ticks and is still connected: its PING gets a PONG,
    // possibly after another server PING, which it answers.
    answering.send(b"PING\r\n");
    loop {
        let line = answering.read_line();
        match line.as_slice() {
            b"PONG" => break,
            b"PING" => answering.send(b"PONG\r\n"),
            other => panic!("unexpected line {}", common::show(other)),
        }
    }
}
