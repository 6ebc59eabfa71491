//! Connection storm (`--connect-storm`): workers that connect, send CONNECT and PING, wait for
//! PONG and close, over and over, for `--duration` (or until `--msgs` connects in total); with
//! `--users N`, as N users in turn (a fleet of services reconnecting).
//!
//! Cold per connect, but the loop is the load: each worker keeps its own counts and HDR
//! histogram of connect times (TCP connect to PONG) and shares nothing while it runs.
//! Invariants: one connect is made (and must succeed) before the workers start, so a refused
//! login fails the run at once with the server's words instead of being counted thousands of
//! times; every connection is closed with an RST so the run leaves no TIME_WAIT sockets.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::{Conn, ConnectOptions};
use super::credentials::Credentials;
use super::latency::{new_histogram, percentile_line, record};
use super::progress::{Counters, Goal, Progress};
use super::report::{Benchmark, Sample, SampleGroup, msgs_per_client};
use super::units::comma;
use super::{BenchError, Plan, join_all, spawn};

/// A finished connection storm.
pub struct StormRun {
    /// One sample per worker (connects as messages, no bytes); for the CSV.
    pub bench: Benchmark,
    pub histogram: Histogram<u64>,
    pub failures: u64,
    pub first_failure: Option<String>,
}

impl StormRun {
    /// `Connect stats: 12,345 connects/sec`, per-worker lines, the spread, the latency line.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let workers = &self.bench.pubs;
        let Some(total) = workers.aggregate() else {
            return "No workers. Nothing to report.\n".to_string();
        };
        let _ = writeln!(out, "Connect stats: {} connects/sec", comma(total.rate()));
        if workers.samples.len() > 1 {
            for (i, s) in workers.samples.iter().enumerate() {
                let (rate, count) = (comma(s.rate()), s.job_msg_count);
                let _ = writeln!(out, " [{}] {rate} connects/sec ({count} connects)", i + 1);
            }
            let _ = writeln!(out, " {}", workers.statistics("connects"));
        }
        let _ = writeln!(
            out,
            "{}",
            percentile_line("Connect latency", &self.histogram)
        );
        if self.failures > 0 {
            let first = self.first_failure.as_deref().unwrap_or("");
            let _ = writeln!(out, "Failed connects: {} (first: {first})", self.failures);
        }
        out
    }
}

/// Runs the storm with `workers` threads.
pub fn run(plan: &Plan, workers: usize) -> Result<StormRun, BenchError> {
    Conn::connect(&login_as(&plan.connect, plan.storm_users.map(|_| 0)))?.close_abortive();
    let counters = Arc::new(Counters::default());
    let goal = match (plan.bound.msgs, plan.bound.duration) {
        (Some(msgs), None) => Goal::Count(msgs),
        (_, duration) => Goal::Time(duration.unwrap_or_default()),
    };
    let progress = Progress::start(plan.progress, goal, Arc::clone(&counters));
    let shares: Vec<Option<u64>> = match plan.bound.msgs {
        Some(msgs) => msgs_per_client(msgs, workers)
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; workers],
    };
    let mut handles = Vec::with_capacity(workers);
    for (i, share) in shares.into_iter().enumerate() {
        let opts = plan.connect.clone();
        let run_for = plan.bound.duration;
        let counters = Arc::clone(&counters);
        let users = plan.storm_users.map(|count| Users {
            count,
            first: i,
            step: workers,
        });
        handles.push(spawn(format!("bench-storm-{i}"), move || {
            Ok(storm_worker(&opts, users, share, run_for, &counters))
        })?);
    }
    let results = join_all(handles);
    progress.finish();
    let mut histogram = new_histogram();
    let (mut samples, mut failures, mut first_failure) = (Vec::new(), 0, None);
    for worker in results? {
        // Same bounds everywhere, so adding cannot fail; a failure would only drop samples.
        let _ = histogram.add(&worker.histogram);
        samples.push(worker.sample);
        failures += worker.failures;
        first_failure = first_failure.or(worker.first_failure);
    }
    let bench = Benchmark {
        name: "NATS".to_string(),
        run_id: plan.run_id.clone(),
        pubs: SampleGroup::new(samples),
        subs: SampleGroup::default(),
    };
    Ok(StormRun {
        bench,
        histogram,
        failures,
        first_failure,
    })
}

struct WorkerResult {
    sample: Sample,
    histogram: Histogram<u64>,
    failures: u64,
    first_failure: Option<String>,
}

/// The users one worker logs in as (`--users`): `first`, `first + step`, ... modulo `count`,
/// so the workers together go through every user in turn.
#[derive(Clone, Copy)]
struct Users {
    count: usize,
    first: usize,
    step: usize,
}

/// `opts` with the user name numbered `index` (`--user` with the index appended), or `opts`
/// itself when there is no index.
fn login_as(opts: &ConnectOptions, index: Option<usize>) -> ConnectOptions {
    let mut opts = opts.clone();
    if let (Some(index), Credentials::UserPassword { user, .. }) = (index, &mut opts.credentials) {
        user.push_str(&index.to_string());
    }
    opts
}

fn storm_worker(
    opts: &ConnectOptions,
    users: Option<Users>,
    share: Option<u64>,
    run_for: Option<Duration>,
    counters: &Counters,
) -> WorkerResult {
    let mut histogram = new_histogram();
    let start = Instant::now();
    let deadline = run_for.map(|d| start + d);
    let (mut connects, mut failures, mut first_failure) = (0u64, 0u64, None);
    while share.is_none_or(|share| connects + failures < share) {
        let began = Instant::now();
        if deadline.is_some_and(|d| began >= d) {
            break;
        }
        let attempt = usize::try_from(connects + failures).unwrap_or(usize::MAX);
        let user = users.map(|u| (u.first + attempt.wrapping_mul(u.step)) % u.count);
        let result = match user {
            Some(_) => Conn::connect(&login_as(opts, user)),
            None => Conn::connect(opts),
        };
        match result {
            Ok(conn) => {
                record(&mut histogram, began.elapsed());
                conn.close_abortive();
                connects += 1;
                counters.add_sent(1);
            }
            Err(e) => {
                failures += 1;
                first_failure.get_or_insert_with(|| e.to_string());
            }
        }
    }
    WorkerResult {
        sample: Sample::new(connects, 0, start, Instant::now()),
        histogram,
        failures,
        first_failure,
    }
}
