//! A shard server without a kernel, for tests and measurements that drive the real `Shard`
//! core through its event/action boundary (as `tests/sim.rs` does, with none of its
//! randomness): `World` holds the shards, wired by the real mesh rings, and a minimal kernel
//! that hands each shard what its clients wrote (`on_recv`), copies out and completes in full
//! what it sends (`Action::Send`, then `on_send` on its next turn), and ends cancelled recvs.
//! Turns run in a fixed order, so a run is the same every time. Once set up, the harness
//! itself does not allocate (its buffers are reserved up front), so `alloc_hot_path.rs` can
//! count the shards' allocations alone.
//! Included with `#[path]` by the code that wants it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringnats::ids::ShardId;
use ringnats::shard::mesh::{self, Waker};
use ringnats::shard::{Action, Shard};
use ringnats::shared::{Security, Shared};

/// Room for a round's input and output in the test's own buffers, reserved up front so the
/// harness never allocates while counting.
pub const SOCK_BUF: usize = 1 << 20;
/// Turns a settle may take before the test calls the shards stuck.
pub const SETTLE_TURNS_MAX: usize = 1000;
pub const FD_BASE: i32 = 1000;
pub const ECANCELED: i32 = 125;

pub const CONFIG: &str = r#"
max_payload: 65536
ping_interval: "1h"
write_deadline: "10s"
accounts {
  A {
    users = [
      {user: plain, password: p}
      {user: checked, password: p, permissions: {
        publish: {allow: ["events.>", "jobs", "far.>", "hdr"]}
        subscribe: {allow: [">"], deny: ["events.secret"]}
      }}
    ]
  }
}
"#;

pub const PAYLOAD: &[u8] = b"0123456789abcdef0123456789abcdef";
pub const HEADERS: &[u8] = b"NATS/1.0\r\nK: v\r\n\r\n";

/// One client connection as the test's kernel sees it.
pub struct Sock {
    pub shard: usize,
    pub slot: Option<u32>,
    /// An armed recv: `Some(once)`.
    pub recv: Option<bool>,
    /// The shard cancelled the armed recv (its input waits): it ends on the next turn.
    pub cancelled: bool,
    /// Bytes the client wrote that the shard has not read yet.
    pub to_server: Vec<u8>,
    /// A send the kernel took in full, to complete on the shard's next turn.
    pub sent: Option<u32>,
    /// Everything the shard sent the client since the last `clear_output`.
    pub got: Vec<u8>,
}

pub struct World {
    pub shards: Vec<Shard>,
    pub socks: Vec<Sock>,
    /// Accepted sockets not yet handed to their shard.
    pub accepts: Vec<usize>,
    pub now: Instant,
    pub actions: Vec<Action>,
}

impl World {
    pub fn new(shard_count: usize) -> World {
        // Fixed hash keys: queue member order, and so each run, is the same every time.
        ringnats::subject::seed::set_thread_seed(Some(0x5eed));
        let opts = ringnats::config::load_str(CONFIG, std::path::Path::new("alloc.conf"))
            .expect("the test's config loads");
        let security = Security::from_options(&opts).expect("the test's config compiles");
        let addr: SocketAddr = "127.0.0.1:4222".parse().unwrap();
        let shared = Shared::new(opts, security, shard_count, addr).expect("shared state");
        let wakers: Vec<Arc<Waker>> = (0..shard_count).map(|_| Waker::inert()).collect();
        let now = Instant::now();
        let shards = mesh::build(&wakers)
            .into_iter()
            .enumerate()
            .map(|(i, mesh)| {
                Shard::new(
                    ShardId(i as u16),
                    shared.clone(),
                    mesh,
                    wakers[i].clone(),
                    Box::new(|_| 0),
                    now,
                    0x5eed + i as u64,
                )
            })
            .collect();
        World {
            shards,
            socks: Vec::new(),
            accepts: Vec::new(),
            now,
            actions: Vec::with_capacity(4096),
        }
    }

    /// A client on `shard` logged in as `user`; returns its socket. Settles.
    pub fn connect(&mut self, shard: usize, user: &str, headers: bool) -> usize {
        self.socks.push(Sock {
            shard,
            slot: None,
            recv: None,
            cancelled: false,
            to_server: Vec::with_capacity(SOCK_BUF),
            sent: None,
            got: Vec::with_capacity(SOCK_BUF),
        });
        let sock = self.socks.len() - 1;
        self.accepts.push(sock);
        self.write(
            sock,
            format!(
                "CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"{user}\",\"pass\":\"p\",\"headers\":{headers},\"protocol\":1}}\r\nPING\r\n"
            )
            .as_bytes(),
        );
        self.settle();
        let got = &self.socks[sock].got;
        assert!(
            got.starts_with(b"INFO ") && got.ends_with(b"PONG\r\n"),
            "{user} logged in: {:?}",
            String::from_utf8_lossy(got)
        );
        self.clear_output();
        sock
    }

    /// Subscribes `sock` and waits for the interest to reach every shard (PING/PONG).
    pub fn subscribe(&mut self, sock: usize, line: &str) {
        self.write(sock, format!("{line}\r\nPING\r\n").as_bytes());
        self.settle();
        assert_eq!(
            self.socks[sock].got, b"PONG\r\n",
            "{line}: no error, and the PONG after the interest barrier"
        );
        self.clear_output();
    }

    pub fn write(&mut self, sock: usize, bytes: &[u8]) {
        self.socks[sock].to_server.extend_from_slice(bytes);
    }

    pub fn clear_output(&mut self) {
        for sock in &mut self.socks {
            sock.got.clear();
        }
    }

    /// One loop turn of shard `s`: its completions (sends taken in full, then what its clients
    /// wrote), the rest of the turn (mesh, flush), then its actions. Returns whether anything
    /// happened.
    pub fn turn(&mut self, s: usize) -> bool {
        self.now += Duration::from_micros(1);
        let mesh_input = self.shards[s].has_mesh_input();
        let shard = &mut self.shards[s];
        shard.begin_turn(self.now);
        let mut progress = mesh_input;
        let mut i = 0;
        while i < self.accepts.len() {
            let sock = self.accepts[i];
            if self.socks[sock].shard == s {
                self.accepts.swap_remove(i);
                let peer: SocketAddr = format!("127.0.0.1:{}", 10_000 + sock).parse().unwrap();
                shard.on_accept(FD_BASE + sock as i32, peer);
                progress = true;
            } else {
                i += 1;
            }
        }
        for sock in self.socks.iter_mut().filter(|k| k.shard == s) {
            let Some(slot) = sock.slot else { continue };
            if let Some(n) = sock.sent.take() {
                shard.on_send(slot, n as i32);
                progress = true;
            }
            if sock.cancelled {
                sock.cancelled = false;
                sock.recv = None;
                shard.on_recv(slot, -ECANCELED, false, &[]);
                progress = true;
            }
            if let Some(once) = sock.recv.filter(|_| !sock.to_server.is_empty()) {
                if once {
                    sock.recv = None;
                }
                let n = i32::try_from(sock.to_server.len()).expect("test input fits a read");
                shard.on_recv(slot, n, !once, &sock.to_server);
                sock.to_server.clear();
                progress = true;
            }
        }
        shard.end_turn();
        self.actions.clear();
        self.actions.extend(shard.take_actions());
        for &action in &self.actions {
            progress = true;
            match action {
                Action::Recv { slot, fd, once } => {
                    let sock = &mut self.socks[(fd - FD_BASE) as usize];
                    assert!(sock.recv.is_none(), "a second recv armed");
                    sock.slot = Some(slot);
                    sock.recv = Some(once);
                }
                Action::Send { slot, fd, region } => {
                    let sock = &mut self.socks[(fd - FD_BASE) as usize];
                    assert!(sock.sent.is_none(), "a second send in flight");
                    let bytes = shard.in_flight(slot);
                    assert_eq!(bytes.len(), region.len as usize, "send region");
                    assert!(
                        sock.got.len() + bytes.len() <= sock.got.capacity(),
                        "the test's output buffer is too small for a round"
                    );
                    sock.got.extend_from_slice(bytes);
                    sock.sent = Some(region.len);
                }
                Action::CancelRecv { slot } => {
                    let sock = self
                        .socks
                        .iter_mut()
                        .find(|k| k.shard == s && k.slot == Some(slot));
                    let sock = sock.expect("a cancel for a known connection");
                    assert!(sock.recv.is_some(), "a cancel without a recv");
                    sock.cancelled = true;
                }
                other => panic!("unexpected action {other:?}"),
            }
        }
        progress
    }

    /// Runs turns on every shard until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..SETTLE_TURNS_MAX {
            let mut progress = false;
            for s in 0..self.shards.len() {
                progress |= self.turn(s);
            }
            if !progress {
                return;
            }
        }
        panic!("the shards did not settle in {SETTLE_TURNS_MAX} turns");
    }

    /// One round: `publisher` sends `bursts` of `message`, each burst read in one turn of its
    /// shard; then every shard runs until delivery, forwarding and sends are done.
    pub fn round(&mut self, publisher: usize, message: &[u8], bursts: &[usize]) {
        for &burst in bursts {
            for _ in 0..burst {
                self.write(publisher, message);
            }
            let shard = self.socks[publisher].shard;
            self.turn(shard);
        }
        self.settle();
    }
}

/// How many times `needle` occurs in `hay` (no allocation).
pub fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

/// `PUB subject 32` with the payload.
pub fn pub_op(subject: &str) -> Vec<u8> {
    let mut op = format!("PUB {subject} {}\r\n", PAYLOAD.len()).into_bytes();
    op.extend_from_slice(PAYLOAD);
    op.extend_from_slice(b"\r\n");
    op
}
