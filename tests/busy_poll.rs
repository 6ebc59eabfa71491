//! Busy-poll (`--busy_poll`): a shard spins for a while after a turn that read only a few bytes,
//! and then sleeps again. An idle server must not keep spinning: after a burst of
//! request/reply-like traffic (PING/PONG round trips, each a light turn) the server's CPU time
//! over a quiet second stays near zero. A spin that never ran out would burn a whole core.

mod common;

use std::time::Duration;

use common::{Launch, RawConn, Server};

/// CPU time (user + system) of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the command name, which is in parentheses: state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').expect("comm").1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = fields[11].parse().expect("utime");
    let stime: u64 = fields[12].parse().expect("stime");
    utime + stime
}

/// `/proc` reports CPU times in USER_HZ, which is 100 on every architecture Linux exposes it
/// with a different kernel HZ (it is fixed for user space).
fn ticks_per_second() -> u64 {
    100
}

fn light_traffic_then_quiet_second(server: &Server) -> u64 {
    let mut conn = RawConn::connect(server.port());
    conn.send_connect(r#"{"verbose":false,"pedantic":false}"#);
    for _ in 0..500 {
        conn.ping_pong();
    }
    // Let any spin started by the last round trip run out (50 µs by default).
    std::thread::sleep(Duration::from_millis(50));
    let before = cpu_ticks(server.pid());
    std::thread::sleep(Duration::from_secs(1));
    let after = cpu_ticks(server.pid());
    conn.ping_pong();
    after - before
}

#[test]
fn an_idle_server_stops_spinning() {
    let server = Server::start("");
    let used = light_traffic_then_quiet_second(&server);
    let limit = ticks_per_second() / 5;
    assert!(
        used <= limit,
        "the server used {used} ticks of CPU in an idle second (limit {limit}): a shard kept spinning"
    );
}

#[test]
fn a_long_busy_poll_still_ends() {
    // 200 ms spins: the quiet second still has most of its time asleep.
    let server = Launch::under_test().args(["--busy_poll", "200000"]).start();
    let used = light_traffic_then_quiet_second(&server);
    let limit = ticks_per_second() * 6 / 10;
    assert!(
        used <= limit,
        "the server used {used} ticks of CPU in an idle second (limit {limit}) with 200 ms spins"
    );
}
