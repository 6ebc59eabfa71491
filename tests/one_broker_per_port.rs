//! One broker per port: a second broker started on a port another one listens on refuses to
//! start, as nats-server does (`[FTL] Error listening on port: 127.0.0.1:P, "listen tcp
//! 127.0.0.1:P: bind: address already in use"`, exit status non-zero), and the first keeps
//! serving every client.
//!
//! ringnats binds one `SO_REUSEPORT` listener per shard; without an exclusive first bind a
//! second ringnats joined the group and the kernel split clients between two brokers that
//! share nothing (a client saw 5 of 10 messages). Each check runs against ringnats (first
//! broker ringnats, and first broker nats-server) and, as a `*_nats_server` sibling, against
//! nats-server 2.9.10. Guards `server::bind_listeners`.

mod common;

use std::time::Duration;

use common::{Launch, QUIET, RawConn};

/// How long the refused start may take.
const WITHIN: Duration = Duration::from_secs(10);
/// Clients that must all reach the first broker.
const CLIENTS: usize = 10;

/// Starts `second` on the port `first` listens on; it must exit non-zero with nats-server's
/// fatal line, and `first` must still serve every client.
fn check_second_broker_is_refused(first: &Launch, second: &Launch) {
    let mut server = first.start();
    let port = server.port().to_string();
    let mut refused = second
        .no_config()
        .args(["-a", "127.0.0.1", "-p", &port])
        .spawn();
    let status = refused.wait_exit(WITHIN);
    let output = refused.output();
    assert!(!status.success(), "second broker: {status}\n{output}");
    let expected = format!(
        "[FTL] Error listening on port: 127.0.0.1:{port}, \
         \"listen tcp 127.0.0.1:{port}: bind: address already in use\""
    );
    assert!(output.contains(&expected), "no {expected:?} in:\n{output}");

    server.assert_alive();
    for i in 0..CLIENTS {
        let mut client = RawConn::connect(server.port());
        client.send_connect(QUIET);
        client.send(format!("SUB own.{i} 1\r\nPUB own.{i} 2\r\nhi\r\n").as_bytes());
        client.expect_msg(&format!("own.{i}"), "1", None, b"hi");
    }
}

#[test]
fn a_second_ringnats_on_the_same_port_is_refused() {
    let ringnats = Launch::ringnats();
    check_second_broker_is_refused(&ringnats, &ringnats);
}

#[test]
fn ringnats_on_a_nats_server_port_is_refused() {
    let Some(nats_server) = Launch::nats_server() else {
        return;
    };
    check_second_broker_is_refused(&nats_server, &Launch::ringnats());
}

#[test]
fn a_second_nats_server_on_the_same_port_is_refused_nats_server() {
    let Some(nats_server) = Launch::nats_server() else {
        return;
    };
    check_second_broker_is_refused(&nats_server, &nats_server);
}
