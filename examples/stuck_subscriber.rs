//! How much a subscriber that stops reading costs another subscriber of the same subject.
//!
//! `stuck_subscriber PORT [--shards N] [--payload BYTES] [--secs S]
//! [--healthy-rate BYTES_PER_S] [--with-publisher none|healthy|stuck]` connects to a broker on
//! 127.0.0.1:PORT: one publisher writing sequenced messages as fast as its socket takes them,
//! and two subscribers of that subject, both reading as fast as they can. After a warm-up,
//! the healthy subscriber's rate is measured for S seconds (default 2) with both reading, then
//! the other subscriber stops reading (keeps its socket open, reads nothing) and the healthy
//! one's rate is measured again for S seconds. Prints both rates, their ratio, and whether the
//! healthy subscriber lost a message, saw one out of order, or was disconnected, and whether
//! the stuck one was disconnected. With `--shards N` (N > 1, ringnats' `client_id % N` is the
//! shard) the publisher is put on another shard than the subscribers. Bounded: it ends after
//! the two phases (about 2 S + 1 seconds) whatever the broker does.
//!
//! Used for issue 9 §2 (the healthy subscriber keeps >= 0.8x its rate). Not a test: the
//! figures depend on the machine.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SUBJECT: &str = "stuck.bench";
const WARM_UP: Duration = Duration::from_millis(500);
/// How long the stuck subscriber's socket is held after the run to see whether it was closed.
const CLOSE_CHECK: Duration = Duration::from_millis(500);

struct Args {
    port: u16,
    shards: u64,
    payload: usize,
    secs: f64,
    /// Bytes/s the healthy subscriber reads at most (0: as fast as it can).
    healthy_rate: u64,
    /// Which subscriber shares the publisher's shard when there are several: `none`, `healthy`
    /// or `stuck`.
    with_publisher: String,
}

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let usage = "usage: stuck_subscriber PORT [--shards N] [--payload BYTES] [--secs S] [--healthy-rate BYTES_PER_S] [--with-publisher none|healthy|stuck]";
    let port = args.next().and_then(|p| p.parse().ok()).expect(usage);
    let mut parsed = Args {
        port,
        shards: 1,
        payload: 16,
        secs: 2.0,
        healthy_rate: 0,
        with_publisher: "none".to_string(),
    };
    while let Some(flag) = args.next() {
        let value = args.next().expect(usage);
        match flag.as_str() {
            "--shards" => parsed.shards = value.parse().expect(usage),
            "--payload" => parsed.payload = value.parse().expect(usage),
            "--secs" => parsed.secs = value.parse().expect(usage),
            "--healthy-rate" => parsed.healthy_rate = value.parse().expect(usage),
            "--with-publisher" => parsed.with_publisher = value,
            _ => panic!("{usage}"),
        }
    }
    parsed.payload = parsed.payload.max(16);
    parsed
}

/// Connects, reads INFO, sends CONNECT; returns the stream and the client id from INFO.
fn connect(port: u16) -> (TcpStream, u64, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let line_end = loop {
        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).expect("read INFO");
        assert!(n > 0, "closed before INFO");
        buf.extend_from_slice(&chunk[..n]);
    };
    let info = String::from_utf8_lossy(&buf[..line_end]).into_owned();
    let cid = info
        .split("\"client_id\":")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .unwrap_or(0);
    buf.drain(..line_end + 2);
    stream
        .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")
        .expect("CONNECT");
    (stream, cid, buf)
}

/// Connects until the connection is on `shard` (of `shards`).
fn connect_on(port: u16, shards: u64, shard: u64) -> (TcpStream, Vec<u8>) {
    for _ in 0..64 {
        let (stream, cid, rest) = connect(port);
        if cid % shards == shard {
            return (stream, rest);
        }
    }
    panic!("no connection landed on shard {shard}");
}

/// Reads until `PONG`, keeping what follows it.
fn await_pong(stream: &mut TcpStream, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(at) = buf.windows(6).position(|w| w == b"PONG\r\n") {
            buf.drain(..at + 6);
            return;
        }
        let n = stream.read(&mut chunk).expect("read PONG");
        assert!(n > 0, "closed before PONG");
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[derive(Default)]
struct Healthy {
    received: AtomicU64,
    lost_or_reordered: AtomicU64,
    closed: AtomicBool,
}

/// Reads MSGs, checks their sequence numbers (16 hex digits at the start of each payload).
fn read_healthy(
    mut stream: TcpStream,
    mut buf: Vec<u8>,
    stats: &Healthy,
    stop: &AtomicBool,
    rate: u64,
) {
    let start = Instant::now();
    let mut read_total = 0u64;
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let mut chunk = vec![0u8; 64 * 1024];
    let mut next = 0u64;
    let mut at = 0;
    while !stop.load(Ordering::Relaxed) {
        // Parse every complete MSG in buf[at..].
        while let Some(eol) = memchr::memmem::find(&buf[at..], b"\r\n") {
            let line = &buf[at..at + eol];
            if line == b"PING" {
                let _ = stream.write_all(b"PONG\r\n");
                at += eol + 2;
                continue;
            }
            let len: usize = line
                .rsplit(|&b| b == b' ')
                .next()
                .and_then(|l| std::str::from_utf8(l).ok())
                .and_then(|l| l.parse().ok())
                .unwrap_or(0);
            let body = at + eol + 2;
            if buf.len() < body + len + 2 {
                break;
            }
            let seq = std::str::from_utf8(&buf[body..body + 16])
                .ok()
                .and_then(|s| u64::from_str_radix(s, 16).ok())
                .unwrap_or(u64::MAX);
            if seq != next {
                stats.lost_or_reordered.fetch_add(1, Ordering::Relaxed);
            }
            next = seq.wrapping_add(1);
            stats.received.fetch_add(1, Ordering::Relaxed);
            at = body + len + 2;
        }
        if at > 0 {
            buf.drain(..at);
            at = 0;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                stats.closed.store(true, Ordering::Relaxed);
                return;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                read_total += n as u64;
                if rate > 0 {
                    // A reader slower than the publisher: wait until the rate allows more.
                    let due = Duration::from_secs_f64(read_total as f64 / rate as f64);
                    if let Some(ahead) = due.checked_sub(start.elapsed()) {
                        std::thread::sleep(ahead);
                    }
                }
            }
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                stats.closed.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

/// Reads and discards until `stuck` is set, then reads nothing; returns whether the server
/// closed the socket (checked at the end).
fn read_then_stop(mut stream: TcpStream, stuck: &AtomicBool, stop: &AtomicBool) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("timeout");
    let mut chunk = vec![0u8; 256 * 1024];
    while !stuck.load(Ordering::Relaxed) {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
    // Whether it was closed: drain what is buffered and look for the end.
    let end = Instant::now() + CLOSE_CHECK;
    while Instant::now() < end {
        match stream.read(&mut chunk) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

fn publish(mut stream: TcpStream, payload: usize, stop: &AtomicBool) {
    let mut batch = Vec::with_capacity(128 * 1024);
    let filler = vec![b'x'; payload - 16];
    let head = format!("PUB {SUBJECT} {payload}\r\n");
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        batch.clear();
        while batch.len() < 64 * 1024 {
            batch.extend_from_slice(head.as_bytes());
            batch.extend_from_slice(format!("{seq:016x}").as_bytes());
            batch.extend_from_slice(&filler);
            batch.extend_from_slice(b"\r\n");
            seq += 1;
        }
        if stream.write_all(&batch).is_err() {
            return;
        }
    }
}

fn main() {
    let args = parse_args();
    let sub_shard = 0;
    let pub_shard = (args.shards - 1).min(1);
    let sub_line = format!("SUB {SUBJECT} 1\r\nPING\r\n");
    let (stuck_shard, healthy_shard) = match args.with_publisher.as_str() {
        "healthy" => (sub_shard, pub_shard),
        "stuck" => (pub_shard, sub_shard),
        _ => (sub_shard, sub_shard),
    };
    let (mut stuck, mut stuck_buf) = connect_on(args.port, args.shards, stuck_shard);
    stuck.write_all(sub_line.as_bytes()).expect("SUB");
    await_pong(&mut stuck, &mut stuck_buf);
    let (mut healthy, mut healthy_buf) = connect_on(args.port, args.shards, healthy_shard);
    healthy.write_all(sub_line.as_bytes()).expect("SUB");
    await_pong(&mut healthy, &mut healthy_buf);
    let (mut publisher, mut pub_buf) = connect_on(args.port, args.shards, pub_shard);
    publisher.write_all(b"PING\r\n").expect("PING");
    await_pong(&mut publisher, &mut pub_buf);

    let stats = Arc::new(Healthy::default());
    let stop = Arc::new(AtomicBool::new(false));
    let stuck_now = Arc::new(AtomicBool::new(false));
    let reader = {
        let (stats, stop) = (Arc::clone(&stats), Arc::clone(&stop));
        let rate = args.healthy_rate;
        std::thread::spawn(move || read_healthy(healthy, healthy_buf, &stats, &stop, rate))
    };
    let stuck_reader = {
        let (stuck_now, stop) = (Arc::clone(&stuck_now), Arc::clone(&stop));
        std::thread::spawn(move || read_then_stop(stuck, &stuck_now, &stop))
    };
    let writer = {
        let stop = Arc::clone(&stop);
        let payload = args.payload;
        std::thread::spawn(move || publish(publisher, payload, &stop))
    };
    let phase = Duration::from_secs_f64(args.secs);
    std::thread::sleep(WARM_UP);
    let (before, before_steps) = count_for(&stats.received, phase);
    stuck_now.store(true, Ordering::Relaxed);
    let (after, after_steps) = count_for(&stats.received, phase);
    let lost = stats.lost_or_reordered.load(Ordering::Relaxed);
    let healthy_closed = stats.closed.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let stuck_closed = stuck_reader.join().expect("stuck reader");
    let _ = reader.join();
    // The publisher may be blocked in a write the broker does not read: leave it.
    drop(writer);
    let rate = |n: u64| n as f64 / args.secs;
    println!(
        "payload {} B, shards {}: healthy subscriber {:.0} msgs/s with both reading, {:.0} msgs/s \
         while the other is stuck: {:.2}x; healthy lost or reordered {}, healthy closed {}, \
         stuck closed {}",
        args.payload,
        args.shards,
        rate(before),
        rate(after),
        rate(after) / rate(before).max(1.0),
        lost,
        healthy_closed,
        stuck_closed
    );
    if std::env::var_os("STUCK_TIMELINE").is_some() {
        println!("per {STEP:?}, both reading: {before_steps:?}");
        println!("per {STEP:?}, one stuck:    {after_steps:?}");
    }
}

/// Sampling step of the timeline printed with `STUCK_TIMELINE=1`.
const STEP: Duration = Duration::from_millis(100);

/// Messages counted by `counter` over `phase`, in total and per `STEP`.
fn count_for(counter: &AtomicU64, phase: Duration) -> (u64, Vec<u64>) {
    let start = Instant::now();
    let first = counter.load(Ordering::Relaxed);
    let mut last = first;
    let mut steps = Vec::new();
    while start.elapsed() < phase {
        std::thread::sleep(STEP.min(phase.saturating_sub(start.elapsed())));
        let now = counter.load(Ordering::Relaxed);
        steps.push(now - last);
        last = now;
    }
    (last - first, steps)
}
