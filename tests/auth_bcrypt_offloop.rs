//! bcrypt checks run off the shard's event loop: a shard verifying 50 bcrypt CONNECTs keeps
//! delivering messages to its other connections meanwhile (the requirement of issue
//! "Authentication I").
//!
//! One test, against ringnats with `--shards 1` so that every connection shares the one loop.
//! The config has a bcrypt user `slow` and a plaintext user `fast`. Two `fast` raw connections
//! form a publish/receive pair; then 50 `slow` connections send CONNECT + PING at once and a
//! reader thread waits for their PONGs. While those checks are pending, the pair publishes and
//! receives one message at a time (paced, so as not to starve the bcrypt workers of CPU).
//! Asserted: all 50 bcrypt CONNECTs succeed; the pair completes at least `MIN_ROUND_TRIPS`
//! deliveries before the last bcrypt CONNECT completes (with bcrypt on the loop, each round trip
//! needs a loop turn and each turn spent on a CONNECT blocks for one whole check, so about one
//! round trip per check could fit, 50 in all); and the longest gap between two deliveries stays
//! well below the time the 50 checks take together. The cost is 11 (the `passwd` default) in a
//! release build; a debug build's bcrypt is about ten times slower, so there the hash has cost 7
//! (16 times less work), which keeps the file well under 10 s. Guards
//! `shard::admission::authenticate` (the `Verdict::Slow` path), `blocking.rs` and
//! `drain_auth_results`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Launch, RawConn, ReadEnd, show};

/// bcrypt CONNECTs in flight at once.
const BCRYPT_CONNECTS: usize = 50;
/// Deliveries the pub/sub pair must complete while the checks are pending.
const MIN_ROUND_TRIPS: usize = 200;
/// Pause between round trips. The machine may have two cores: a busy-looping pair would take
/// one of them from the bcrypt workers and double the test's time. This shapes the load; no
/// test outcome waits on it.
const PACE: Duration = Duration::from_micros(500);
/// Bound on the whole exercise.
const WITHIN: Duration = Duration::from_secs(30);

/// bcrypt cost of the `slow` user (see the module doc).
fn cost() -> u32 {
    if cfg!(debug_assertions) { 7 } else { 11 }
}

fn login(port: u16, user: &str, pass: &str) -> RawConn {
    RawConn::connect_as(port, user, pass)
}

/// Waits for the PONG of every connection; returns when the last one arrived.
fn await_pongs(mut conns: Vec<RawConn>, done: &AtomicBool) -> Instant {
    let deadline = Instant::now() + WITHIN;
    for (i, conn) in conns.iter_mut().enumerate() {
        match conn.try_read_line(deadline) {
            Ok(line) => assert_eq!(show(&line), "PONG", "bcrypt connect {i}"),
            Err(ReadEnd::Timeout) => panic!("bcrypt connect {i}: no answer within {WITHIN:?}"),
            Err(ReadEnd::Closed(e)) => panic!("bcrypt connect {i} refused: closed ({e:?})"),
        }
    }
    let last = Instant::now();
    done.store(true, Ordering::SeqCst);
    last
}

/// Delivery statistics of the pub/sub pair while the checks were pending.
struct Flow {
    round_trips: usize,
    max_gap: Duration,
}

/// Publishes and receives one message at a time until `done`.
fn run_flow(publisher: &mut RawConn, subscriber: &mut RawConn, done: &AtomicBool) -> Flow {
    let deadline = Instant::now() + WITHIN;
    let mut last = Instant::now();
    let mut flow = Flow {
        round_trips: 0,
        max_gap: Duration::ZERO,
    };
    while !done.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "bcrypt connects still pending after {WITHIN:?}"
        );
        publisher.send(b"PUB flow 4\r\ntick\r\n");
        subscriber.expect_msg("flow", "1", None, b"tick");
        let now = Instant::now();
        if !done.load(Ordering::SeqCst) {
            flow.round_trips += 1;
            flow.max_gap = flow.max_gap.max(now - last);
        }
        last = now;
        thread::sleep(PACE);
    }
    flow
}

#[test]
fn shard_keeps_delivering_while_bcrypt_connects_are_checked() {
    let hash = common::bcrypt_2a("slowpass", cost());
    // The timeout bounds the whole admission, queued checks included: 50 checks on two
    // idle-priority threads need more than the default two seconds.
    let conf = format!(
        "authorization {{ timeout: 30, users: [\n  {{user: slow, password: \"{hash}\"}}\n  \
         {{user: fast, password: fastpw}}\n] }}"
    );
    let server = Launch::ringnats().shards(1).config(&conf).start();
    let port = server.port();

    let mut subscriber = login(port, "fast", "fastpw");
    subscriber.send(b"SUB flow 1\r\n");
    assert!(subscriber.ping_pong().is_empty());
    let mut publisher = login(port, "fast", "fastpw");
    publisher.expect_open();

    let mut slow: Vec<RawConn> = (0..BCRYPT_CONNECTS)
        .map(|_| RawConn::connect(port))
        .collect();
    let start = Instant::now();
    for conn in &mut slow {
        conn.send(
            b"CONNECT {\"verbose\":false,\"user\":\"slow\",\"pass\":\"slowpass\"}\r\nPING\r\n",
        );
    }
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        thread::spawn(move || await_pongs(slow, &done))
    };
    let flow = run_flow(&mut publisher, &mut subscriber, &done);
    let last_bcrypt = reader.join().expect("all bcrypt connects succeed");
    let total = last_bcrypt - start;

    eprintln!(
        "{BCRYPT_CONNECTS} bcrypt connects (cost {}) took {total:?}; {} round trips meanwhile, \
         longest gap {:?}",
        cost(),
        flow.round_trips,
        flow.max_gap
    );
    assert!(
        flow.round_trips >= MIN_ROUND_TRIPS,
        "only {} round trips while {BCRYPT_CONNECTS} bcrypt connects were pending ({total:?}): \
         the loop stalls on bcrypt",
        flow.round_trips
    );
    assert!(
        flow.max_gap * 4 < total,
        "a delivery waited {:?} while the bcrypt checks took {total:?} in all",
        flow.max_gap
    );
    // The pair still works and the slow user can still log in afterwards.
    publisher.expect_open();
    let mut again = login(port, "slow", "slowpass");
    again.expect_open();
}
