//! Memory comes back after a mass disconnect (issue 9 §3): a broker that held thousands of idle
//! connections returns, once they are gone, at least half of what they made it grow, within
//! 20 s. Its resident memory (VmRSS) is read from /proc before, while held and after.
//! Guards `Shard::give_back_after_disconnects` (slabs shrunk, allocator pages purged).
#![allow(unsafe_code)] // setrlimit, to hold thousands of sockets.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

const CONNS: usize = 5_000;
/// How long RSS may take to come back (a resource bound, polled; not a timing assert).
const GIVE_BACK_WITHIN: Duration = Duration::from_secs(20);

/// Raises the soft open-file limit to the hard one (the server inherits it).
fn raise_fd_limit(needed: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= needed,
        "the open-file hard limit {} is below the {needed} this test needs",
        lim.rlim_cur
    );
}

fn read_until(stream: &mut TcpStream, marker: &[u8]) {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while !seen.windows(marker.len()).any(|w| w == marker) {
        let n = stream.read(&mut chunk).expect("read");
        assert!(n > 0, "the server closed an idle connection");
        seen.extend_from_slice(&chunk[..n]);
    }
}

/// Opens `n` connections, each CONNECT + PING answered by PONG, in chunks.
fn open_idle(port: u16, n: usize) -> Vec<TcpStream> {
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n {
        let batch: Vec<TcpStream> = (0..(n - conns.len()).min(500))
            .map(|_| {
                let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
                s.set_read_timeout(Some(common::TIMEOUT)).expect("timeout");
                s
            })
            .collect();
        for mut s in batch {
            read_until(&mut s, b"\r\n");
            s.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n")
                .expect("CONNECT");
            conns.push(s);
        }
        let start = conns.len().saturating_sub(500);
        for s in &mut conns[start..] {
            read_until(s, b"PONG\r\n");
        }
    }
    conns
}

#[test]
fn memory_comes_back_after_a_mass_disconnect() {
    raise_fd_limit(2 * CONNS as u64 + 200);
    let server = Server::start("");
    // Settle: the first connections of a fresh server allocate once-only structures too.
    drop(open_idle(server.port(), 200));
    std::thread::sleep(Duration::from_millis(500));
    let before = server.rss_bytes() / 1024;
    let conns = open_idle(server.port(), CONNS);
    let held = server.rss_bytes() / 1024;
    let growth = held.saturating_sub(before);
    assert!(
        growth > 1024,
        "{CONNS} connections grew RSS by only {growth} KiB"
    );
    drop(conns);
    let deadline = Instant::now() + GIVE_BACK_WITHIN;
    let mut now_kib = server.rss_bytes() / 1024;
    while now_kib > before + growth / 2 && Instant::now() < deadline {
        // Polling a resource bound: there is no event to wait on.
        std::thread::sleep(Duration::from_millis(250));
        now_kib = server.rss_bytes() / 1024;
    }
    assert!(
        now_kib <= before + growth / 2,
        "RSS {before} KiB before, {held} KiB with {CONNS} connections, still {now_kib} KiB \
         {GIVE_BACK_WITHIN:?} after they closed (must be back within half of the growth)"
    );
}
