//! Deterministic simulation of the shard core (issue 13): N shards (1–8) and M clients in one
//! thread, every choice made by one seeded PRNG, checked against a reference model.
//!
//! What runs: the real `Shard` of each shard (routing, delivery, forwarding, the interest
//! barrier, stalls, held peers, admission, reload) wired by the real mesh rings, driven through
//! the core's event/action boundary by a simulated kernel instead of io_uring. The PRNG decides
//! what comes next: a client op (CONNECT with the users of `CONFIG`, SUB/UNSUB with queue
//! groups and wildcards, PUB/HPUB up to `max_payload`, PING), a shard's turn (which of its
//! completions arrive, partial and merged reads, short writes, multishot recvs that end,
//! cancellations racing data, which peers' mesh batches it takes: batches between different
//! pairs are delayed and reordered, never within a pair), a client that stops reading, a
//! reload, time passing.
//!
//! What is checked, against a model that is a plain broker over the same ops:
//! - after every step (safety): every MSG a client reads was published (payload, subject,
//!   reply and headers intact) by a client allowed to publish it, in the subscriber's own
//!   account, on a subject the subscription's filter matches and its permissions allow, never
//!   echoed to a client that turned echo off; each subscription sees each publisher's messages
//!   in order (queue subscriptions: no duplicates, see invariant 6's exception); a queue group
//!   never gets a message twice; a connection's buffers stay within bounds; the simulated
//!   kernel never sees a second recv or send armed on a socket, a descriptor closed with an
//!   operation outstanding, or an in-flight send buffer changed;
//! - at quiescent points (every `CHECK_EVERY` steps and at the end, once every client reads and
//!   everything has drained), liveness: every PING got its PONG; flush means visible: a
//!   message published after its subscriber's PONG for a PING sent after the SUB reached that
//!   subscription, and a queue group with such a member got it exactly once, unless a member
//!   or the publisher went away meanwhile; every `-ERR` was one the model expected;
//! - slow consumers are closed only per invariant 8: a client closed as one had stopped
//!   reading (or stopped within the last two stall windows); no other close happens unasked.
//!
//! Scripted scenarios (`SCENARIOS`) run first: each pins down one race a random run found,
//! with the kernel and the mesh ordered by hand.
//!
//! Replay: a failing seed prints itself; `cargo test --release --test sim -- --seed N` runs it
//! alone (or `RINGNATS_SIM_SEED=N`). CI runs seeds 1..=`CI_SEEDS`; `--seeds N`
//! (`RINGNATS_SIM_SEEDS`) runs more, `--steps N` makes each run longer.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringnats::conn::CloseReason;
use ringnats::ids::ShardId;
use ringnats::shard::mesh::{self, Waker};
use ringnats::shard::{Action, Shard};
use ringnats::shared::{Security, Shared};

/// Seeds CI runs (about a minute in CI's build, with assertions on).
const CI_SEEDS: u64 = 25;
/// Steps of one run.
const STEPS: u64 = 6_000;
/// Steps between quiescent checks.
const CHECK_EVERY: u64 = 1_500;

const MAX_PAYLOAD: usize = 64 * 1024;
const MAX_PENDING: usize = 4 * 1024 * 1024;
/// A simulated recv reads at most one provided buffer.
const RECV_LEN_MAX: usize = 64 * 1024;
/// The server's stall window (shard/stall.rs), for the slow-consumer rule.
const STALL_WINDOW: Duration = Duration::from_millis(100);
/// An active reader reads at least this often (virtual time), so it always drains within a
/// stall window.
const READ_EVERY_MAX: Duration = Duration::from_millis(40);

const ECANCELED: i32 = 125;
const ENOBUFS: i32 = 105;
const EPIPE: i32 = 32;

const CONFIG: &str = r#"
max_payload: 65536
max_pending: 4194304
write_deadline: "2s"
ping_interval: "1h"
accounts {
  A {
    users = [
      {user: a1, password: pa}
      {user: a2, password: pa, permissions: {publish: {deny: ["s.y.>"]}, subscribe: {deny: ["s.z.*"]}}}
    ]
  }
  B {
    users = [ {user: b1, password: pb} ]
  }
}
"#;

/// The users of `CONFIG`: name, password, account.
const USERS: [(&str, &str, u8); 3] = [("a1", "pa", 0), ("a2", "pa", 0), ("b1", "pb", 1)];

/// Published subjects, and subscription filters (the subjects and wildcards over them).
const SUBJECTS: [&str; 12] = [
    "s.x", "s.y", "s.z", "s.x.x", "s.x.y", "s.x.z", "s.y.x", "s.y.y", "s.y.z", "s.z.x", "s.z.y",
    "s.z.z",
];
const WILDCARDS: [&str; 9] = [
    "s.*", "s.>", "s.*.x", "s.x.*", "s.y.*", "s.z.*", "s.x.>", ">", "*.*",
];

fn main() {
    let opts = Options::from_args();
    // A failure is reported once, with its seed, by `run_or_report`.
    std::panic::set_hook(Box::new(|info| {
        if let Some(at) = info.location() {
            eprintln!("sim: panicked at {at}");
        }
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
    if std::env::var_os("RINGNATS_SIM_LOG").is_some() {
        // The broker's own debug log, interleaved with the simulator's events.
        tracing_subscriber::fmt()
            .with_env_filter("ringnats=debug")
            .with_writer(std::io::stderr)
            .init();
    }
    run_scenarios();
    if let Some(seed) = opts.seed {
        run_or_report(seed, opts.steps);
        println!("sim: seed {seed} passed ({} steps)", opts.steps);
        return;
    }
    let started = Instant::now();
    for seed in 1..=opts.seeds {
        run_or_report(seed, opts.steps);
    }
    println!(
        "sim: {} seeds passed ({} steps each) in {:.1?}",
        opts.seeds,
        opts.steps,
        started.elapsed()
    );
}

struct Options {
    seed: Option<u64>,
    seeds: u64,
    steps: u64,
}

impl Options {
    fn from_args() -> Options {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        let mut opts = Options {
            seed: env("RINGNATS_SIM_SEED"),
            seeds: env("RINGNATS_SIM_SEEDS").unwrap_or(CI_SEEDS),
            steps: env("RINGNATS_SIM_STEPS").unwrap_or(STEPS),
        };
        let args: Vec<String> = std::env::args().collect();
        let value = |i: usize| -> u64 {
            args.get(i + 1)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{} needs a number", args[i]))
        };
        // libtest's own flags (--nocapture, --test-threads, ...) are ignored.
        for (i, arg) in args.iter().enumerate() {
            match arg.as_str() {
                "--seed" => opts.seed = Some(value(i)),
                "--seeds" => opts.seeds = value(i),
                "--steps" => opts.steps = value(i),
                _ => {}
            }
        }
        opts
    }
}

fn run_or_report(seed: u64, steps: u64) {
    let result = std::panic::catch_unwind(|| Sim::new(seed).run(steps));
    if let Err(panic) = result {
        let text = panic_text(&*panic);
        eprintln!(
            "sim: seed {seed} FAILED: {text}\n  replay: cargo test --release --test sim -- --seed {seed}"
        );
        std::process::exit(1);
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(panic)")
}

// ---- scripted scenarios --------------------------------------------------------------------

/// A scripted run, by name; it takes a seed.
type Scenario = (&'static str, fn(u64));

/// Scenarios that pin down one race the random runs found; they run before the seeds.
const SCENARIOS: [Scenario; 2] = [
    ("member leaves", scenario_member_leaves),
    ("member unsubscribes", scenario_member_unsubscribes),
];

fn run_scenarios() {
    for (name, scenario) in SCENARIOS {
        for seed in 1..=4 {
            if let Err(panic) = std::panic::catch_unwind(|| scenario(seed)) {
                eprintln!(
                    "sim: scenario {name:?} seed {seed} FAILED: {}",
                    panic_text(&*panic)
                );
                std::process::exit(1);
            }
        }
    }
}

/// A queue group's member closes its socket, and messages are published before its shard has
/// read the end of that stream. For the server it is still a member (nats-server alike: a
/// member is a registered subscription, not a reader), so some of the messages go to it and
/// are lost with it. The model must not call that a loss (it did, as seed 7 showed, when it
/// counted the group whole again from the moment the client closed).
fn scenario_member_leaves(seed: u64) {
    let mut rng = Rng(seed);
    ringnats::subject::seed::set_thread_seed(Some(rng.next()));
    let mut sim = Sim::with_shards(seed, rng, 1);
    let leaving = sim.connect_as(None, 0, 0, false, true);
    let staying = sim.connect_as(None, 0, 0, false, true);
    let publisher = sim.connect_as(None, 0, 0, false, true);
    for c in [leaving, staying] {
        sim.sub_with(c, "s.x", Some("q_leaves".to_string()));
        sim.ping(c);
    }
    sim.quiesce_and_check();
    sim.step += 1;
    sim.disconnect(leaving);
    // The kernel holds the leaving client's EOF back while the publisher's ops are routed.
    sim.held_sock = Some(sim.clients[leaving].sock);
    sim.step += 1;
    const SENT: usize = 16;
    for _ in 0..SENT {
        sim.publish_on(publisher, "s.x");
    }
    for _ in 0..4 {
        sim.turn(0, true);
    }
    sim.held_sock = None;
    sim.quiesce();
    let to_staying = sim
        .messages
        .values()
        .filter(|m| m.got.contains(&(staying, 1)))
        .count();
    assert!(
        to_staying < SENT,
        "the race did not happen: all {SENT} messages reached the staying member"
    );
    sim.check_liveness();
}

/// A queue group has a member on shard 0 and one on shard 1; the one on shard 1 unsubscribes,
/// and shard 0 routes messages before it has heard so. Those it hands to shard 1, where
/// nothing matches any more, must go on to a shard with a member (back to shard 0), not be
/// dropped: the group still has a member (seed 136 found them dropped).
fn scenario_member_unsubscribes(seed: u64) {
    let mut rng = Rng(seed);
    ringnats::subject::seed::set_thread_seed(Some(rng.next()));
    let mut sim = Sim::with_shards(seed, rng, 2);
    let staying = sim.connect_as(None, 0, 0, false, true);
    let leaving = sim.connect_as(None, 1, 0, false, true);
    let publisher = sim.connect_as(None, 0, 0, false, true);
    for c in [staying, leaving] {
        sim.sub_with(c, "s.x", Some("q_unsub".to_string()));
        sim.ping(c);
    }
    sim.quiesce_and_check();
    sim.step += 1;
    sim.unsubscribe(leaving);
    // Shard 1 applies the UNSUB and queues the interest change for shard 0.
    sim.turn(1, true);
    sim.step += 1;
    for _ in 0..16 {
        sim.publish_on(publisher, "s.x");
    }
    // Shard 0 routes them (its socket events come before its mesh input in a turn).
    sim.turn(0, true);
    sim.quiesce_and_check();
}

// ---- the PRNG ------------------------------------------------------------------------------

/// splitmix64: every choice of a run comes from here.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `num / den`.
    fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next() % den < num
    }
}

// ---- the simulated kernel ------------------------------------------------------------------

/// One accepted connection as the kernel sees it.
struct Sock {
    shard: usize,
    fd: i32,
    slot: Option<u32>,
    /// Bytes the client wrote that the server has not read.
    to_server: VecDeque<u8>,
    /// The client closed its end.
    client_eof: bool,
    recv: Option<RecvOp>,
    poll: bool,
    /// The send in flight: a copy of its bytes when it was submitted.
    send: Option<Vec<u8>>,
    /// Bytes the server wrote that the client has not read (the socket's send queue).
    to_client: VecDeque<u8>,
    capacity: usize,
    /// The server shut the socket down.
    shut: bool,
    closed: bool,
    reason: Option<CloseReason>,
    /// Queue groups of a client that closed this socket before the server shut it: the
    /// server still counts it a member until then (see `client_gone`).
    leaving_groups: Vec<(u8, String)>,
}

#[derive(Clone, Copy)]
struct RecvOp {
    once: bool,
    cancelled: bool,
}

// ---- the model -----------------------------------------------------------------------------

struct Client {
    user: usize,
    /// Logs in with a wrong password: must be refused.
    bad_password: bool,
    echo: bool,
    sock: usize,
    open: bool,
    /// Whether the client reads what the server sends.
    reading: bool,
    stopped_at: Option<Duration>,
    resumed_at: Option<Duration>,
    last_read: Duration,
    /// Server bytes not parsed yet.
    inbuf: Vec<u8>,
    next_sid: u64,
    next_seq: u64,
    subs: BTreeMap<u64, SubModel>,
    /// Per PING in flight: the subscriptions its PONG confirms.
    pings: VecDeque<Vec<u64>>,
    /// Subscriptions made since the last PING.
    unpinged: Vec<u64>,
    errs_expected: u64,
    errs_seen: u64,
    closed_at: Option<u64>,
    connected_at: u64,
    /// Step of the first PONG (the end of its admission).
    admitted_at: Option<u64>,
}

struct SubModel {
    filter: &'static str,
    queue: Option<String>,
    /// Refused by permissions (`-ERR` expected; must receive nothing).
    refused: bool,
    /// Step at which the client read the PONG confirming it.
    confirmed: Option<u64>,
    unsub_at: Option<u64>,
    /// Last sequence seen per publishing connection (plain subscriptions: order; a client
    /// that reconnects is a new publisher).
    last_seq: BTreeMap<usize, u64>,
}

struct Message {
    publisher: usize,
    /// The publisher's connection (a client reconnects on a new one).
    sock: usize,
    account: u8,
    subject: &'static str,
    reply: String,
    headers: Vec<u8>,
    size: usize,
    step: u64,
    allowed: bool,
    /// Deliveries: (client, sid).
    got: Vec<(usize, u64)>,
}

// ---- the simulator -------------------------------------------------------------------------

struct Sim {
    seed: u64,
    rng: Rng,
    shards: Vec<Shard>,
    shared: Arc<Shared>,
    start: Instant,
    elapsed: Duration,
    step: u64,
    socks: Vec<Sock>,
    /// fd - FD_BASE -> unacknowledged bytes (SIOCOUTQ), shared with the shards' probes.
    outq: Rc<RefCell<Vec<u64>>>,
    /// Per shard: slot -> sock.
    slots: Vec<BTreeMap<u32, usize>>,
    /// Per shard: socks accepted but not yet handed to the shard.
    accepts: Vec<Vec<usize>>,
    clients: Vec<Client>,
    messages: BTreeMap<(usize, u64), Message>,
    /// Steps at which the configuration was reloaded.
    reloads: Vec<u64>,
    /// Per shard: steps of the turns that applied a reload.
    reloads_applied: Vec<Vec<u64>>,
    /// Queue group (account, name) -> step of the last time a member went away.
    group_disrupted: BTreeMap<(u8, String), u64>,
    /// `RINGNATS_SIM_LOG` is set: `log` prints.
    verbose: bool,
    /// A sock whose completions the kernel holds back (a scripted scenario's race).
    held_sock: Option<usize>,
}

const FD_BASE: i32 = 1000;

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = Rng(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x5eed);
        // The shards' maps (subject index, sids) iterate in an order their hash keys decide:
        // keys from the seed make the run replay exactly.
        ringnats::subject::seed::set_thread_seed(Some(rng.next()));
        let shard_count = rng.range(1, 8);
        let client_count = rng.range(2, 16);
        let mut sim = Sim::with_shards(seed, rng, shard_count);
        for _ in 0..client_count {
            sim.connect_client(None);
        }
        sim
    }

    /// `shard_count` shards and no client yet (a scripted scenario connects its own).
    fn with_shards(seed: u64, mut rng: Rng, shard_count: usize) -> Sim {
        let (opts, security) = load_config();
        let addr: SocketAddr = "127.0.0.1:4222".parse().unwrap();
        let shared = Shared::new(opts, security, shard_count, addr).expect("shared state");
        let wakers: Vec<Arc<Waker>> = (0..shard_count).map(|_| Waker::inert()).collect();
        let meshes = mesh::build(&wakers);
        let start = Instant::now();
        let outq = Rc::new(RefCell::new(Vec::new()));
        let shards = meshes
            .into_iter()
            .enumerate()
            .map(|(i, mesh)| {
                let outq = Rc::clone(&outq);
                let probe = Box::new(move |fd: i32| {
                    let i = usize::try_from(fd - FD_BASE).unwrap_or(usize::MAX);
                    outq.borrow().get(i).copied().unwrap_or(0)
                });
                Shard::new(
                    ShardId(i as u16),
                    shared.clone(),
                    mesh,
                    wakers[i].clone(),
                    probe,
                    start,
                    rng.next(),
                )
            })
            .collect();
        Sim {
            seed,
            rng,
            shards,
            shared,
            start,
            elapsed: Duration::ZERO,
            step: 0,
            socks: Vec::new(),
            outq,
            slots: vec![BTreeMap::new(); shard_count],
            accepts: vec![Vec::new(); shard_count],
            clients: Vec::new(),
            messages: BTreeMap::new(),
            group_disrupted: BTreeMap::new(),
            reloads: Vec::new(),
            reloads_applied: vec![Vec::new(); shard_count],
            verbose: std::env::var_os("RINGNATS_SIM_LOG").is_some(),
            held_sock: None,
        }
    }

    /// With `RINGNATS_SIM_LOG` set, prints one simulator event.
    fn log(&self, what: std::fmt::Arguments<'_>) {
        if self.verbose {
            eprintln!("sim step {} t={:?}: {what}", self.step, self.elapsed);
        }
    }

    fn now(&self) -> Instant {
        self.start + self.elapsed
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "seed {} step {} ({} shards, {} clients): {what}",
            self.seed,
            self.step,
            self.shards.len(),
            self.clients.len()
        )
    }

    fn run(mut self, steps: u64) {
        for _ in 0..steps {
            self.step += 1;
            self.one_step();
            self.check_bounds();
            if self.step % CHECK_EVERY == 0 {
                self.quiesce_and_check();
            }
        }
        self.quiesce_and_check();
    }

    fn one_step(&mut self) {
        let roll = self.rng.below(100);
        match roll {
            0..=34 => {
                let c = self.rng.below(self.clients.len());
                self.client_op(c);
            }
            35..=64 => {
                let s = self.rng.below(self.shards.len());
                self.turn(s, false);
            }
            65..=84 => {
                let c = self.rng.below(self.clients.len());
                if self.clients[c].reading {
                    self.client_read(c, false);
                }
            }
            85..=93 => {
                let ms = self.rng.range(0, 15) as u64;
                self.elapsed += Duration::from_millis(ms);
            }
            94..=96 => {
                let c = self.rng.below(self.clients.len());
                self.toggle_reading(c);
            }
            97 => {
                if self.rng.chance(1, 4) {
                    self.reload();
                }
            }
            _ => {
                let c = self.rng.below(self.clients.len());
                if self.rng.chance(1, 3) {
                    self.disconnect(c);
                }
            }
        }
        // Readers that read keep draining at least once per `READ_EVERY_MAX`.
        for c in 0..self.clients.len() {
            let client = &self.clients[c];
            if client.open && client.reading && self.elapsed - client.last_read >= READ_EVERY_MAX {
                self.client_read(c, false);
            }
        }
    }

    // ---- clients ---------------------------------------------------------------------------

    fn connect_client(&mut self, replacing: Option<usize>) {
        let shard = self.rng.below(self.shards.len());
        let user = self.rng.below(USERS.len());
        let bad_password = self.rng.chance(1, 40);
        let echo = !self.rng.chance(1, 4);
        self.connect_as(replacing, shard, user, bad_password, echo);
    }

    /// Connects client `replacing` (or a new one) to `shard` as `USERS[user]`.
    fn connect_as(
        &mut self,
        replacing: Option<usize>,
        shard: usize,
        user: usize,
        bad_password: bool,
        echo: bool,
    ) -> usize {
        let c = replacing.unwrap_or(self.clients.len());
        // Message numbers go on across reconnections: a message is named by (client, seq).
        let next_seq = replacing.map_or(1, |c| self.clients[c].next_seq);
        // So do sids: a delivery is named by (client, sid).
        let next_sid = replacing.map_or(1, |c| self.clients[c].next_sid);
        let fd = FD_BASE + self.socks.len() as i32;
        self.socks.push(Sock {
            shard,
            fd,
            slot: None,
            to_server: VecDeque::new(),
            client_eof: false,
            recv: None,
            poll: false,
            send: None,
            to_client: VecDeque::new(),
            capacity: self.rng.range(16 * 1024, 512 * 1024),
            shut: false,
            closed: false,
            reason: None,
            leaving_groups: Vec::new(),
        });
        self.outq.borrow_mut().push(0);
        let sock = self.socks.len() - 1;
        self.accepts[shard].push(sock);
        let client = Client {
            user,
            bad_password,
            echo,
            sock,
            open: true,
            reading: true,
            stopped_at: None,
            resumed_at: None,
            last_read: self.elapsed,
            inbuf: Vec::new(),
            next_sid,
            next_seq,
            subs: BTreeMap::new(),
            pings: VecDeque::new(),
            unpinged: Vec::new(),
            errs_expected: 0,
            errs_seen: 0,
            closed_at: None,
            connected_at: self.step,
            admitted_at: None,
        };
        self.log(format_args!(
            "client {c} connects to shard {shard} as {} (bad password {bad_password}, echo {echo}, sock {sock})",
            USERS[user].0
        ));
        match replacing {
            Some(c) => self.clients[c] = client,
            None => self.clients.push(client),
        }
        let (name, pass, _) = USERS[user];
        let pass = if bad_password { "wrong" } else { pass };
        let connect = format!(
            "CONNECT {{\"verbose\":false,\"pedantic\":false,\"user\":\"{name}\",\"pass\":\"{pass}\",\"echo\":{echo},\"headers\":true,\"protocol\":1}}\r\n"
        );
        self.write(c, connect.as_bytes());
        self.ping(c);
        c
    }

    fn account_of(&self, c: usize) -> u8 {
        USERS[self.clients[c].user].2
    }

    fn write(&mut self, c: usize, bytes: &[u8]) {
        let sock = self.clients[c].sock;
        self.socks[sock].to_server.extend(bytes);
    }

    fn ping(&mut self, c: usize) {
        let client = &mut self.clients[c];
        let confirms = std::mem::take(&mut client.unpinged);
        client.pings.push_back(confirms);
        self.write(c, b"PING\r\n");
    }

    fn client_op(&mut self, c: usize) {
        if !self.clients[c].open {
            if self.clients[c].closed_at.is_some() && self.rng.chance(1, 8) {
                self.connect_client(Some(c));
            }
            return;
        }
        if self.clients[c].bad_password {
            return;
        }
        match self.rng.below(100) {
            0..=14 => self.subscribe(c),
            15..=19 => self.unsubscribe(c),
            20..=79 => {
                let count = if self.rng.chance(1, 4) {
                    self.rng.range(2, 20)
                } else {
                    1
                };
                for _ in 0..count {
                    self.publish(c);
                }
            }
            80..=97 => self.ping(c),
            _ => self.queue_burst(c),
        }
    }

    fn subscribe(&mut self, c: usize) {
        let (filter, fi) = if self.rng.chance(1, 2) {
            let i = self.rng.below(SUBJECTS.len());
            (SUBJECTS[i], i)
        } else {
            let i = self.rng.below(WILDCARDS.len());
            (WILDCARDS[i], SUBJECTS.len() + i)
        };
        // A queue name belongs to one filter, so a group is the same in the model and the
        // broker (which groups members by name).
        let queue = self
            .rng
            .chance(1, 3)
            .then(|| format!("q{fi}_{}", self.rng.below(3)));
        self.sub_with(c, filter, queue);
    }

    /// Many queue groups on one filter at once: a message then names hundreds of groups in
    /// one forwarded record (the `u8` queue count this once corrupted).
    fn queue_burst(&mut self, c: usize) {
        let fi = self.rng.below(SUBJECTS.len());
        let count = self.rng.range(250, 320);
        for k in 0..count {
            self.sub_with(c, SUBJECTS[fi], Some(format!("q{fi}_{k}")));
        }
        self.ping(c);
    }

    fn sub_with(&mut self, c: usize, filter: &'static str, queue: Option<String>) {
        let refused = self.clients[c].user == 1 && subset_of_z_star(filter);
        let client = &mut self.clients[c];
        let sid = client.next_sid;
        client.next_sid += 1;
        if refused {
            client.errs_expected += 1;
        }
        let line = match &queue {
            Some(q) => format!("SUB {filter} {q} {sid}\r\n"),
            None => format!("SUB {filter} {sid}\r\n"),
        };
        client.subs.insert(
            sid,
            SubModel {
                filter,
                queue,
                refused,
                confirmed: None,
                unsub_at: None,
                last_seq: BTreeMap::new(),
            },
        );
        client.unpinged.push(sid);
        self.log(format_args!("client {c}: {}", line.trim_end()));
        self.write(c, line.as_bytes());
    }

    fn unsubscribe(&mut self, c: usize) {
        let live: Vec<u64> = self.clients[c]
            .subs
            .iter()
            .filter(|(_, s)| s.unsub_at.is_none())
            .map(|(sid, _)| *sid)
            .collect();
        if live.is_empty() {
            return;
        }
        let sid = live[self.rng.below(live.len())];
        let account = self.account_of(c);
        let step = self.step;
        let sub = self.clients[c].subs.get_mut(&sid).unwrap();
        sub.unsub_at = Some(step);
        if let Some(q) = &sub.queue {
            self.group_disrupted.insert((account, q.clone()), step);
        }
        self.log(format_args!("client {c}: UNSUB {sid}"));
        self.write(c, format!("UNSUB {sid}\r\n").as_bytes());
    }

    fn publish(&mut self, c: usize) {
        let subject = SUBJECTS[self.rng.below(SUBJECTS.len())];
        self.publish_on(c, subject);
    }

    fn publish_on(&mut self, c: usize, subject: &'static str) {
        let size = match self.rng.below(100) {
            0..=59 => self.rng.range(16, 64),
            60..=89 => self.rng.range(16, 2048),
            90..=97 => self.rng.range(16, 16 * 1024),
            _ => self.rng.range(16, MAX_PAYLOAD),
        };
        let headers: Vec<u8> = if self.rng.chance(1, 5) {
            format!("NATS/1.0\r\nK: {}\r\n\r\n", self.rng.below(1000)).into_bytes()
        } else {
            Vec::new()
        };
        let size = size.min(MAX_PAYLOAD - headers.len());
        let reply = if self.rng.chance(1, 4) {
            format!("r.{c}")
        } else {
            String::new()
        };
        let seq = self.clients[c].next_seq;
        self.clients[c].next_seq += 1;
        let allowed = !(self.clients[c].user == 1 && subject.starts_with("s.y."));
        if !allowed {
            self.clients[c].errs_expected += 1;
        }
        let payload = payload_of(c, seq, size);
        let mut bytes = Vec::with_capacity(size + 64);
        let reply_part = if reply.is_empty() {
            String::new()
        } else {
            format!(" {reply}")
        };
        if headers.is_empty() {
            bytes.extend_from_slice(format!("PUB {subject}{reply_part} {size}\r\n").as_bytes());
        } else {
            let total = headers.len() + size;
            bytes.extend_from_slice(
                format!("HPUB {subject}{reply_part} {} {total}\r\n", headers.len()).as_bytes(),
            );
            bytes.extend_from_slice(&headers);
        }
        bytes.extend_from_slice(&payload);
        bytes.extend_from_slice(b"\r\n");
        self.log(format_args!("client {c}: publishes {c}.{seq} on {subject}"));
        self.messages.insert(
            (c, seq),
            Message {
                publisher: c,
                sock: self.clients[c].sock,
                account: self.account_of(c),
                subject,
                reply,
                headers,
                size,
                step: self.step,
                allowed,
                got: Vec::new(),
            },
        );
        self.write(c, &bytes);
    }

    fn toggle_reading(&mut self, c: usize) {
        self.log(format_args!(
            "client {c} reading: {}",
            !self.clients[c].reading
        ));
        let client = &mut self.clients[c];
        client.reading = !client.reading;
        if client.reading {
            client.resumed_at = Some(self.elapsed);
            client.last_read = self.elapsed;
        } else {
            client.stopped_at = Some(self.elapsed);
        }
    }

    /// The client closes its connection.
    fn disconnect(&mut self, c: usize) {
        if !self.clients[c].open {
            return;
        }
        let sock = self.clients[c].sock;
        self.log(format_args!("client {c} disconnects"));
        self.socks[sock].client_eof = true;
        self.client_gone(c);
    }

    /// The client's connection is over (it closed, or the server did): its subscriptions are
    /// gone and its groups disrupted.
    ///
    /// A client that closes its socket is still a member of its queue groups, for the
    /// server, until the server reads the end of the stream: a queue message the server
    /// routes to it meanwhile goes into a socket nobody reads, and is lost (nats-server
    /// alike: a group member is a registered subscription, not a reader). Its groups stay
    /// disrupted until the server shuts the socket (`apply_actions`).
    fn client_gone(&mut self, c: usize) {
        let account = self.account_of(c);
        let step = self.step;
        let sock = self.clients[c].sock;
        let client = &mut self.clients[c];
        client.open = false;
        client.closed_at = Some(step);
        for sub in client.subs.values() {
            if let Some(q) = &sub.queue {
                self.group_disrupted.insert((account, q.clone()), step);
                if !self.socks[sock].shut {
                    self.socks[sock].leaving_groups.push((account, q.clone()));
                }
            }
        }
    }

    /// The client reads what its socket holds (`all`: everything, else a random part).
    fn client_read(&mut self, c: usize, all: bool) {
        if !self.clients[c].open {
            // It closed its socket: what the server still sends there is lost.
            return;
        }
        let sock = self.clients[c].sock;
        self.clients[c].last_read = self.elapsed;
        let available = self.socks[sock].to_client.len();
        if available > 0 {
            let n = if all {
                available
            } else {
                self.rng.range(1, available)
            };
            let bytes: Vec<u8> = self.socks[sock].to_client.drain(..n).collect();
            self.outq.borrow_mut()[(self.socks[sock].fd - FD_BASE) as usize] =
                self.socks[sock].to_client.len() as u64;
            self.clients[c].inbuf.extend_from_slice(&bytes);
            self.parse_client_input(c);
        }
        let s = &self.socks[sock];
        if s.shut && s.to_client.is_empty() && self.clients[c].open {
            self.server_closed(c);
        }
    }

    /// The server closed the client's connection and the client has read all it sent.
    fn server_closed(&mut self, c: usize) {
        let sock = self.clients[c].sock;
        let reason = self.socks[sock].reason;
        self.log(format_args!("client {c} closed by the server: {reason:?}"));
        let client = &self.clients[c];
        match reason {
            Some(CloseReason::AuthenticationViolation) if client.bad_password => {}
            // A reload re-checks every connection, and one whose CONNECT has not been run yet
            // has no credentials to pass (nats-server `reloadAuthorization` closes it too).
            Some(CloseReason::AuthenticationViolation)
                if self.reloads_applied[self.socks[sock].shard]
                    .iter()
                    .any(|&r| {
                        r >= client.connected_at && client.admitted_at.is_none_or(|a| a > r)
                    }) => {}
            Some(
                CloseReason::SlowConsumerPendingBytes | CloseReason::SlowConsumerWriteDeadline,
            ) => {
                // A member of a queue burst gets a copy per group (hundreds per message): one
                // read of a publisher may take it past any limit before a stall can act
                // (nats-server's stall too acts after the read).
                let burst = client.subs.values().filter(|s| s.queue.is_some()).count() >= 250;
                let recently_stopped = burst
                    || client.stopped_at.is_some()
                        && (!client.reading
                            || client
                                .resumed_at
                                .is_some_and(|at| self.elapsed - at < STALL_WINDOW * 2));
                if !recently_stopped {
                    self.fail(format!(
                        "client {c} closed as a slow consumer ({reason:?}) while it was reading"
                    ));
                }
            }
            other => self.fail(format!("client {c} closed by the server: {other:?}")),
        }
        self.client_gone(c);
    }

    fn parse_client_input(&mut self, c: usize) {
        loop {
            let buf = &self.clients[c].inbuf;
            let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let line = String::from_utf8_lossy(&buf[..eol]).into_owned();
            let mut words = line.split(' ');
            let op = words.next().unwrap_or("");
            let used = match op {
                "MSG" | "HMSG" => {
                    let args: Vec<&str> = words.collect();
                    let total: usize = args
                        .last()
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| self.fail(format!("bad line {line:?}")));
                    if buf.len() < eol + 2 + total + 2 {
                        return;
                    }
                    let body = buf[eol + 2..eol + 2 + total].to_vec();
                    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
                    self.on_msg(c, op == "HMSG", &args, body);
                    eol + 2 + total + 2
                }
                "PING" => {
                    self.write(c, b"PONG\r\n");
                    eol + 2
                }
                "PONG" => {
                    self.on_pong(c);
                    eol + 2
                }
                "-ERR" => {
                    self.on_err(c, &line);
                    eol + 2
                }
                "INFO" | "+OK" => eol + 2,
                _ => self.fail(format!("client {c} read an unknown line {line:?}")),
            };
            self.clients[c].inbuf.drain(..used);
        }
    }

    fn on_pong(&mut self, c: usize) {
        let step = self.step;
        let client = &mut self.clients[c];
        client.admitted_at.get_or_insert(step);
        let Some(confirms) = client.pings.pop_front() else {
            self.fail(format!("client {c} got a PONG for no PING"));
        };
        for sid in confirms {
            if let Some(sub) = client.subs.get_mut(&sid) {
                sub.confirmed.get_or_insert(step);
            }
        }
    }

    fn on_err(&mut self, c: usize, line: &str) {
        let client = &mut self.clients[c];
        client.errs_seen += 1;
        let expected = line.contains("Permissions Violation")
            || (client.bad_password && line.contains("Authorization Violation"));
        if !expected {
            self.fail(format!("client {c} got an unexpected {line:?}"));
        }
        if client.bad_password {
            client.errs_expected = client.errs_seen;
        }
    }

    fn on_msg(&mut self, c: usize, headers: bool, args: &[String], body: Vec<u8>) {
        let (subject, sid, reply, hdr_len) = match (headers, args.len()) {
            (false, 3) => (&args[0], &args[1], "", 0),
            (false, 4) => (&args[0], &args[1], args[2].as_str(), 0),
            (true, 4) => (
                &args[0],
                &args[1],
                "",
                args[2].parse().unwrap_or(usize::MAX),
            ),
            (true, 5) => (
                &args[0],
                &args[1],
                args[2].as_str(),
                args[3].parse().unwrap_or(usize::MAX),
            ),
            _ => self.fail(format!("client {c}: bad MSG arguments {args:?}")),
        };
        if hdr_len > body.len() {
            self.fail(format!(
                "client {c}: header length past the message {args:?}"
            ));
        }
        let (hdr, payload) = body.split_at(hdr_len);
        let Some((publisher, seq)) = parse_payload(payload) else {
            self.fail(format!(
                "client {c} sid {sid}: a payload nobody published: {:?}",
                String::from_utf8_lossy(&payload[..payload.len().min(80)])
            ));
        };
        let sid: u64 = sid.parse().unwrap_or(0);
        let account = self.account_of(c);
        let receiver_user = self.clients[c].user;
        let echo = self.clients[c].echo;
        let Some(msg) = self.messages.get(&(publisher, seq)) else {
            self.fail(format!(
                "client {c}: message {publisher}.{seq} unknown or delivered after its check"
            ));
        };
        let what = format!("client {c} sid {sid} got {publisher}.{seq} on {subject}");
        if msg.subject != subject.as_str() {
            self.fail(format!("{what}: published on {}", msg.subject));
        }
        if msg.reply != reply {
            self.fail(format!(
                "{what}: reply {reply:?}, published with {:?}",
                msg.reply
            ));
        }
        if payload != payload_of(publisher, seq, msg.size).as_slice() {
            self.fail(format!(
                "{what}: payload corrupted ({} bytes, {} published)",
                payload.len(),
                msg.size
            ));
        }
        if hdr != msg.headers.as_slice() {
            self.fail(format!(
                "{what}: headers {:?} differ",
                String::from_utf8_lossy(hdr)
            ));
        }
        if !msg.allowed {
            self.fail(format!("{what}: its publisher may not publish there"));
        }
        if msg.account != account {
            self.fail(format!(
                "{what}: published in account {}, read in {account}",
                msg.account
            ));
        }
        if receiver_user == 1 && matches_filter("s.z.*", subject) {
            self.fail(format!("{what}: its permissions deny receiving it"));
        }
        let Some(sub) = self.clients[c].subs.get(&sid) else {
            self.fail(format!("{what}: no such subscription"));
        };
        if msg.sock == self.clients[c].sock && !echo {
            self.fail(format!(
                "{what}: echoed to a client with echo off (queue {:?})",
                sub.queue
            ));
        }
        if sub.refused {
            self.fail(format!("{what}: the subscription was refused"));
        }
        if !matches_filter(sub.filter, subject) {
            self.fail(format!("{what}: filter {} does not match", sub.filter));
        }
        let queue = sub.queue.clone();
        let publisher_sock = msg.sock;
        let last = sub.last_seq.get(&publisher_sock).copied().unwrap_or(0);
        let msg = self.messages.get_mut(&(publisher, seq)).unwrap();
        match &queue {
            None if seq <= last => self.fail(format!(
                "{what}: after {publisher}.{last} (order or duplicate)"
            )),
            Some(q) => {
                let twice = msg.got.iter().any(|&(rc, rsid)| {
                    self.clients[rc]
                        .subs
                        .get(&rsid)
                        .and_then(|s| s.queue.as_ref())
                        == Some(q)
                });
                if twice {
                    self.fail(format!("{what}: queue group {q} got it twice"));
                }
            }
            None => {}
        }
        msg.got.push((c, sid));
        self.log(format_args!("client {c} sid {sid} reads {publisher}.{seq}"));
        let sub = self.clients[c].subs.get_mut(&sid).unwrap();
        sub.last_seq.insert(publisher_sock, seq.max(last));
    }

    // ---- the shards and the kernel ---------------------------------------------------------

    /// One loop turn of shard `s`: some of its completions (all when `all`), then the rest of
    /// the turn with some peers' mesh input held back (none when `all`), then its actions.
    fn turn(&mut self, s: usize, all: bool) -> bool {
        let now = self.now();
        self.shards[s].begin_turn(now);
        let mut progress = false;
        for sock in std::mem::take(&mut self.accepts[s]) {
            let fd = self.socks[sock].fd;
            let peer: SocketAddr = format!("127.0.0.1:{}", 10_000 + sock).parse().unwrap();
            self.shards[s].on_accept(fd, peer);
            progress = true;
        }
        let socks: Vec<usize> = self.slots[s].values().copied().collect();
        for sock in socks {
            if self.held_sock == Some(sock) || !all && self.rng.chance(1, 3) {
                continue;
            }
            progress |= self.complete_ops(sock, all);
        }
        let gate = if all || self.rng.chance(2, 3) {
            u64::MAX
        } else {
            self.rng.next()
        };
        self.shards[s].set_mesh_gate(gate);
        self.shards[s].end_turn();
        let last = self.reloads_applied[s].last().copied().unwrap_or(0);
        if self.reloads.last().is_some_and(|&r| r >= last && r > 0) {
            self.reloads_applied[s].push(self.step.max(1));
        }
        progress |= self.apply_actions(s);
        progress
    }

    /// Completes what the kernel can of sock's operations; returns whether anything moved.
    fn complete_ops(&mut self, sock: usize, all: bool) -> bool {
        let mut progress = false;
        let shard = self.socks[sock].shard;
        let Some(slot) = self.socks[sock].slot else {
            return false;
        };
        // Sends first or recvs first: either order reaches the shard in one turn.
        let sends_first = self.rng.chance(1, 2);
        if sends_first {
            progress |= self.complete_send(sock, shard, slot, all);
        }
        let reads = if all { 64 } else { self.rng.range(1, 3) };
        for _ in 0..reads {
            if !self.complete_recv(sock, shard, slot, all) {
                break;
            }
            progress = true;
        }
        if !sends_first {
            progress |= self.complete_send(sock, shard, slot, all);
        }
        let s = &mut self.socks[sock];
        if s.poll && (s.client_eof || s.shut) {
            s.poll = false;
            let result = if s.shut { -ECANCELED } else { 1 };
            self.shards[shard].on_hangup_poll(slot, result);
            progress = true;
        }
        progress
    }

    fn complete_recv(&mut self, sock: usize, shard: usize, slot: u32, all: bool) -> bool {
        let s = &mut self.socks[sock];
        let Some(op) = s.recv else {
            return false;
        };
        // A cancelled recv may still deliver a read that was on its way.
        if op.cancelled && (all || s.to_server.is_empty() || !self.rng.chance(1, 4)) {
            s.recv = None;
            self.shards[shard].on_recv(slot, -ECANCELED, false, &[]);
            return true;
        }
        if s.shut {
            s.recv = None;
            let result = if self.rng.chance(1, 2) { 0 } else { -ECANCELED };
            self.shards[shard].on_recv(slot, result, false, &[]);
            return true;
        }
        if s.to_server.is_empty() {
            if s.client_eof {
                s.recv = None;
                self.shards[shard].on_recv(slot, 0, false, &[]);
                return true;
            }
            return false;
        }
        if !op.once && !all && self.rng.chance(1, 40) {
            // The multishot recv ran out of provided buffers.
            s.recv = None;
            self.shards[shard].on_recv(slot, -ENOBUFS, false, &[]);
            return true;
        }
        let len = s.to_server.len().min(RECV_LEN_MAX);
        let n = if all || self.rng.chance(1, 2) {
            len
        } else {
            self.rng.range(1, len)
        };
        let data: Vec<u8> = s.to_server.drain(..n).collect();
        let more = !op.once;
        if op.once {
            s.recv = None;
        }
        self.shards[shard].on_recv(slot, n as i32, more, &data);
        true
    }

    fn complete_send(&mut self, sock: usize, shard: usize, slot: u32, all: bool) -> bool {
        let Some(submitted) = self.socks[sock].send.as_ref() else {
            return false;
        };
        let in_flight = self.shards[shard].in_flight(slot);
        if in_flight != submitted.as_slice() {
            self.fail(format!(
                "sock {sock}: a send buffer changed while the kernel owned it ({} bytes, {} submitted)",
                in_flight.len(),
                submitted.len()
            ));
        }
        let s = &mut self.socks[sock];
        let submitted = s.send.as_ref().expect("checked above");
        if s.shut {
            s.send = None;
            self.shards[shard].on_send(slot, -EPIPE);
            return true;
        }
        let room = s.capacity.saturating_sub(s.to_client.len());
        if room == 0 {
            return false;
        }
        let len = submitted.len().min(room);
        let n = if all || self.rng.chance(1, 2) {
            len
        } else {
            self.rng.range(1, len)
        };
        s.to_client.extend(&submitted[..n]);
        self.outq.borrow_mut()[(s.fd - FD_BASE) as usize] = s.to_client.len() as u64;
        s.send = None;
        self.shards[shard].on_send(slot, n as i32);
        true
    }

    /// Carries out shard `s`'s actions as a kernel would; returns whether there were any.
    fn apply_actions(&mut self, s: usize) -> bool {
        let actions: Vec<Action> = self.shards[s].take_actions().collect();
        let any = !actions.is_empty();
        for action in actions {
            match action {
                Action::Recv { slot, fd, once } => {
                    let sock = self.sock_of_fd(fd);
                    self.socks[sock].slot = Some(slot);
                    self.slots[s].insert(slot, sock);
                    if self.socks[sock].recv.is_some() {
                        self.fail(format!("sock {sock}: a second recv armed"));
                    }
                    self.socks[sock].recv = Some(RecvOp {
                        once,
                        cancelled: false,
                    });
                }
                Action::CancelRecv { slot } => {
                    let sock = self.slots[s][&slot];
                    if let Some(op) = self.socks[sock].recv.as_mut() {
                        op.cancelled = true;
                    }
                }
                Action::PollHangup { fd, .. } => {
                    let sock = self.sock_of_fd(fd);
                    if self.socks[sock].poll {
                        self.fail(format!("sock {sock}: a second hang-up poll armed"));
                    }
                    self.socks[sock].poll = true;
                }
                Action::Send { slot, fd, region } => {
                    let sock = self.sock_of_fd(fd);
                    if self.socks[sock].send.is_some() {
                        self.fail(format!("sock {sock}: a second send in flight"));
                    }
                    let bytes = self.shards[s].in_flight(slot).to_vec();
                    if bytes.len() != region.len as usize {
                        self.fail(format!(
                            "sock {sock}: send region and in-flight bytes differ"
                        ));
                    }
                    self.socks[sock].send = Some(bytes);
                }
                Action::Shutdown {
                    slot, fd, reason, ..
                } => {
                    let sock = self.sock_of_fd(fd);
                    self.socks[sock].shut = true;
                    self.socks[sock].reason = reason;
                    for group in std::mem::take(&mut self.socks[sock].leaving_groups) {
                        self.group_disrupted.insert(group, self.step);
                    }
                    self.log(format_args!(
                        "shard {s} shuts sock {sock} (slot {slot}) down: {:?}",
                        self.socks[sock].reason
                    ));
                    if let Some(op) = self.socks[sock].recv.as_mut() {
                        op.cancelled = true;
                    }
                }
                Action::Close { fd } => {
                    let sock = self.sock_of_fd(fd);
                    let k = &self.socks[sock];
                    if k.recv.is_some() || k.poll || k.send.is_some() {
                        self.fail(format!(
                            "sock {sock}: closed with an operation outstanding (recv {}, poll {}, send {})",
                            k.recv.is_some(),
                            k.poll,
                            k.send.is_some()
                        ));
                    }
                    let slot = k.slot;
                    self.socks[sock].closed = true;
                    if let Some(slot) = slot {
                        self.slots[s].remove(&slot);
                    }
                }
                Action::StopAccepting { .. } | Action::TrimHeap => {}
            }
        }
        any
    }

    fn sock_of_fd(&self, fd: i32) -> usize {
        usize::try_from(fd - FD_BASE).unwrap_or_else(|_| self.fail(format!("unknown fd {fd}")))
    }

    fn reload(&mut self) {
        self.log(format_args!("reload"));
        self.reloads.push(self.step);
        let (opts, security) = load_config();
        self.shared.replace_snapshot(opts, security);
    }

    // ---- checks ----------------------------------------------------------------------------

    /// Every live connection's buffers stay within what its limits allow.
    fn check_bounds(&self) {
        let rbuf_max = 4 * (MAX_PAYLOAD + 4096 + 2 * RECV_LEN_MAX);
        let pending_max = MAX_PENDING + MAX_PAYLOAD + 64 * 1024;
        for (s, slots) in self.slots.iter().enumerate() {
            for (&slot, &sock) in slots {
                let Some((rbuf, pending)) = self.shards[s].conn_buffered(slot) else {
                    continue;
                };
                if self.socks[sock].shut {
                    continue;
                }
                if rbuf > rbuf_max {
                    self.fail(format!("sock {sock}: read buffer of {rbuf} bytes"));
                }
                if pending > pending_max {
                    self.fail(format!("sock {sock}: {pending} bytes pending"));
                }
            }
        }
    }

    /// Lets everything drain, then checks what must have arrived.
    fn quiesce_and_check(&mut self) {
        self.quiesce();
        self.check_liveness();
    }

    /// Lets everything drain: every client reading, every completion arriving, every peer's
    /// batches taken, time passing.
    fn quiesce(&mut self) {
        for c in 0..self.clients.len() {
            if self.clients[c].open && !self.clients[c].reading {
                self.toggle_reading(c);
            }
        }
        let mut idle_rounds = 0;
        let mut rounds = 0;
        // Quiet for longer than the longest stall (a publisher waits for a peer shard at most
        // a second), so nothing still waits to run.
        while idle_rounds < 60 {
            rounds += 1;
            if rounds > 20_000 {
                self.fail("the broker never went quiet".to_string());
            }
            let mut progress = false;
            for s in 0..self.shards.len() {
                progress |= self.turn(s, true);
            }
            for c in 0..self.clients.len() {
                let sock = self.clients[c].sock;
                let before = self.socks[sock].to_client.len();
                self.client_read(c, true);
                progress |= self.socks[sock].to_client.len() != before;
            }
            self.elapsed += Duration::from_millis(20);
            idle_rounds = if progress { 0 } else { idle_rounds + 1 };
        }
    }

    fn check_liveness(&mut self) {
        for (c, client) in self.clients.iter().enumerate() {
            if !client.open {
                continue;
            }
            if !client.pings.is_empty() {
                self.fail(format!(
                    "client {c}: {} PINGs never answered",
                    client.pings.len()
                ));
            }
            if client.errs_seen != client.errs_expected {
                self.fail(format!(
                    "client {c}: {} -ERR lines, {} expected",
                    client.errs_seen, client.errs_expected
                ));
            }
        }
        for msg in self.messages.values() {
            // A publisher that went away may have left ops unread.
            let gone = self.socks[msg.sock].client_eof || self.socks[msg.sock].shut;
            if !msg.allowed || gone {
                continue;
            }
            self.check_message(msg);
        }
        // Everything published so far has been checked: later reads of it would be late.
        self.messages.clear();
    }

    fn check_message(&self, msg: &Message) {
        let mut groups: BTreeMap<&str, (bool, usize)> = BTreeMap::new();
        for (c, client) in self.clients.iter().enumerate() {
            if USERS[client.user].2 != msg.account || client.bad_password {
                continue;
            }
            let eligible_client = (client.sock != msg.sock || client.echo)
                && !(client.user == 1 && matches_filter("s.z.*", msg.subject));
            for (&sid, sub) in &client.subs {
                if sub.refused || !matches_filter(sub.filter, msg.subject) {
                    continue;
                }
                let got = msg
                    .got
                    .iter()
                    .filter(|&&(rc, rs)| rc == c && rs == sid)
                    .count();
                let stable = client.open
                    && sub.unsub_at.is_none()
                    && sub.confirmed.is_some_and(|at| at < msg.step)
                    && eligible_client;
                match &sub.queue {
                    None => {
                        if stable && got == 0 {
                            self.fail(format!(
                                "message {}.{} on {} never reached client {c} sid {sid} ({}), confirmed at step {:?}",
                                msg.publisher, self.seq_of(msg), msg.subject, sub.filter, sub.confirmed
                            ));
                        }
                    }
                    Some(q) => {
                        let entry = groups.entry(q.as_str()).or_insert((false, 0));
                        entry.0 |= stable;
                        entry.1 += got;
                    }
                }
            }
        }
        for (q, (has_stable_member, got)) in groups {
            let disrupted = self
                .group_disrupted
                .get(&(msg.account, q.to_string()))
                .is_some_and(|&at| at >= msg.step);
            if has_stable_member && !disrupted && got != 1 {
                let members: Vec<String> = self
                    .clients
                    .iter()
                    .enumerate()
                    .flat_map(|(c, client)| {
                        client
                            .subs
                            .iter()
                            .filter(|(_, sub)| sub.queue.as_deref() == Some(q))
                            .map(move |(sid, sub)| {
                                format!(
                                    "client {c} sid {sid} sock {} shard {} open {} echo {} confirmed {:?} unsub {:?}",
                                    client.sock,
                                    self.socks[client.sock].shard,
                                    client.open,
                                    client.echo,
                                    sub.confirmed,
                                    sub.unsub_at
                                )
                            })
                    })
                    .collect();
                self.fail(format!(
                    "message {}.{} on {} (sock {}, shard {}, step {}): queue group {q} got it {got} times; members: {members:#?}",
                    msg.publisher,
                    self.seq_of(msg),
                    msg.subject,
                    msg.sock,
                    self.socks[msg.sock].shard,
                    msg.step
                ));
            }
        }
    }

    fn seq_of(&self, msg: &Message) -> u64 {
        self.messages
            .iter()
            .find(|(_, m)| std::ptr::eq(*m, msg))
            .map_or(0, |((_, seq), _)| *seq)
    }
}

fn load_config() -> (ringnats::config::ServerOptions, Security) {
    let opts = ringnats::config::load_str(CONFIG, std::path::Path::new("sim.conf"))
        .expect("the simulator's config loads");
    let security = Security::from_options(&opts).expect("the simulator's config compiles");
    (opts, security)
}

/// The payload of message `seq` of client `c`: its name, then filler that depends on both.
fn payload_of(c: usize, seq: u64, size: usize) -> Vec<u8> {
    let mut p = format!("{c}.{seq}.").into_bytes();
    let fill = (c as u64 * 31 + seq) as u8;
    while p.len() < size {
        p.push(b'a' + (fill.wrapping_add(p.len() as u8)) % 26);
    }
    p.truncate(size.max(p.len().min(size)));
    p
}

fn parse_payload(payload: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(payload.get(..payload.len().min(40))?).ok()?;
    let mut parts = text.split('.');
    let c = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    Some((c, seq))
}

/// Whether subject filter `filter` (with `*` and `>`) matches literal `subject`.
fn matches_filter(filter: &str, subject: &str) -> bool {
    let f: Vec<&str> = filter.split('.').collect();
    let s: Vec<&str> = subject.split('.').collect();
    for (i, token) in f.iter().enumerate() {
        if *token == ">" {
            return s.len() > i;
        }
        match s.get(i) {
            Some(t) if *token == "*" || token == t => {}
            _ => return false,
        }
    }
    f.len() == s.len()
}

/// Whether every subject `filter` matches is also matched by `s.z.*` (a2's subscribe deny).
fn subset_of_z_star(filter: &str) -> bool {
    matches!(filter, "s.z.x" | "s.z.y" | "s.z.z" | "s.z.*")
}
