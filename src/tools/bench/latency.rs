//! Request/reply latency: `--request` (requesters, each with one request in flight, plus
//! in-process repliers) and `--reply` (repliers only, answering a requester elsewhere).
//!
//! Hot: a requester writes one pre-built PUB frame with its reply inbox, then reads until the
//! reply arrives and records the round trip in its own HDR histogram (no lock, no allocation);
//! a replier answers every message of one read with one write. Invariants: `--msgs` is the
//! total number of requests, split over requesters; repliers form a queue group, so each
//! request gets exactly one reply; a request without a reply in `REPLY_TIMEOUT` fails the run.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::{Conn, HANDSHAKE_TIMEOUT};
use super::progress::{Counters, Goal, Progress};
use super::pubsub::{check_payload, pub_block};
use super::report::{Benchmark, Sample, SampleGroup, msgs_per_client};
use super::units::latency;
use super::{BenchError, Plan, join_all, spawn};

/// How long a requester waits for one reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// The queue group repliers join unless `--queue` names another.
pub const REPLY_QUEUE: &str = "ringnats-bench-reply";
/// Largest latency the histogram tells apart (larger ones are recorded as this).
const LATENCY_MAX: Duration = Duration::from_secs(60);

/// A finished `--request` run.
pub struct RequestRun {
    pub bench: Benchmark,
    pub histogram: Histogram<u64>,
}

impl RequestRun {
    /// The requesters' `Pub stats` lines, then the latency line.
    pub fn report(&self) -> String {
        let mut out = self.bench.report();
        let _ = writeln!(out, "{}", percentile_line("Latency", &self.histogram));
        out
    }
}

/// A histogram of nanoseconds from 1 ns to `LATENCY_MAX` with 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    let high = LATENCY_MAX.as_nanos() as u64;
    // Constant bounds that satisfy `new_with_bounds` (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, high, 3).expect("valid constant histogram bounds")
}

/// `Latency: min 30.21us | avg ... | p50 ... | p90 ... | p99 ... | p99.9 ... | max 1.21ms`.
pub fn percentile_line(label: &str, h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return format!("{label}: no samples");
    }
    format!(
        "{label}: min {} | avg {} | p50 {} | p90 {} | p99 {} | p99.9 {} | max {} ({} samples)",
        latency(h.min()),
        latency(h.mean() as u64),
        latency(h.value_at_quantile(0.50)),
        latency(h.value_at_quantile(0.90)),
        latency(h.value_at_quantile(0.99)),
        latency(h.value_at_quantile(0.999)),
        latency(h.max()),
        h.len()
    )
}

/// Records `elapsed` (saturating at `LATENCY_MAX`).
pub fn record(h: &mut Histogram<u64>, elapsed: Duration) {
    h.saturating_record(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1));
}

/// `--request`: requesters plus `repliers` in-process repliers (none: answered elsewhere).
pub fn run_requests(
    plan: &Plan,
    requesters: usize,
    repliers: usize,
) -> Result<RequestRun, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let reply_conns = connect_repliers(plan, repliers)?;
    let mut req_conns = Vec::with_capacity(requesters);
    for i in 0..requesters {
        let mut conn = Conn::connect(&plan.connect)?;
        conn.subscribe(&inbox(plan, i), None, 1)?;
        conn.round_trip(HANDSHAKE_TIMEOUT, &mut |_, _| {})?;
        req_conns.push(conn);
    }
    check_payload(plan, req_conns.first())?;
    let reply_handles = spawn_repliers(reply_conns, &stop, &answered)?;
    let counters = Arc::new(Counters::default());
    let goal = match plan.bound.msgs {
        Some(msgs) if plan.bound.duration.is_none() => Goal::Count(msgs),
        _ => Goal::Time(plan.bound.duration.unwrap_or_default()),
    };
    let progress = Progress::start(plan.progress, goal, Arc::clone(&counters));
    let result = run_requesters(plan, req_conns, &counters);
    stop.store(true, Ordering::Relaxed);
    let replied = join_all(reply_handles);
    progress.finish();
    let (samples, histograms): (Vec<Sample>, Vec<Histogram<u64>>) = result?.into_iter().unzip();
    replied?;
    let mut histogram = new_histogram();
    for h in &histograms {
        // Same bounds everywhere, so adding cannot fail; a failure would only drop samples.
        let _ = histogram.add(h);
    }
    let bench = Benchmark {
        name: "NATS".to_string(),
        run_id: plan.run_id.clone(),
        pubs: SampleGroup::new(samples),
        subs: SampleGroup::default(),
    };
    Ok(RequestRun { bench, histogram })
}

/// `--reply`: repliers only, until `--msgs` requests were answered or `--duration` ends (or,
/// with neither, until interrupted).
pub fn run_repliers(plan: &Plan, repliers: usize) -> Result<Benchmark, BenchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let conns = connect_repliers(plan, repliers)?;
    println!(
        "Listening on {} in queue group {}",
        plan.subject,
        reply_queue(plan)
    );
    let handles = spawn_repliers(conns, &stop, &answered)?;
    let deadline = plan.bound.duration.map(|d| Instant::now() + d);
    let limit = plan.bound.msgs.unwrap_or(u64::MAX);
    while answered.load(Ordering::Relaxed) < limit && deadline.is_none_or(|d| Instant::now() < d) {
        if handles.iter().any(|h| h.is_finished()) {
            break;
        }
        std::thread::sleep(super::client::TICK);
    }
    stop.store(true, Ordering::Relaxed);
    let samples = join_all(handles)?;
    Ok(Benchmark {
        name: "NATS".to_string(),
        run_id: plan.run_id.clone(),
        pubs: SampleGroup::default(),
        subs: SampleGroup::new(samples.into_iter().map(|(sample, _)| sample).collect()),
    })
}

fn inbox(plan: &Plan, index: usize) -> String {
    format!("_INBOX.{}.{index}", plan.run_id)
}

fn reply_queue(plan: &Plan) -> &str {
    plan.queue.as_deref().unwrap_or(REPLY_QUEUE)
}

fn connect_repliers(plan: &Plan, repliers: usize) -> Result<Vec<(Conn, usize)>, BenchError> {
    let mut conns = Vec::with_capacity(repliers);
    for _ in 0..repliers {
        let mut conn = Conn::connect(&plan.connect)?;
        conn.subscribe(&plan.subject, Some(reply_queue(plan)), 1)?;
        conn.round_trip(HANDSHAKE_TIMEOUT, &mut |_, _| {})?;
        conns.push((conn, plan.size));
    }
    Ok(conns)
}

type ReplierHandle = std::thread::JoinHandle<Result<(Sample, u64), BenchError>>;

fn spawn_repliers(
    conns: Vec<(Conn, usize)>,
    stop: &Arc<AtomicBool>,
    answered: &Arc<AtomicU64>,
) -> Result<Vec<ReplierHandle>, BenchError> {
    let mut handles = Vec::with_capacity(conns.len());
    for (i, (conn, size)) in conns.into_iter().enumerate() {
        let (stop, answered) = (Arc::clone(stop), Arc::clone(answered));
        handles.push(spawn(format!("bench-reply-{i}"), move || {
            reply_loop(conn, size, &stop, &answered)
        })?);
    }
    Ok(handles)
}

/// Answers every request with its own payload until `stop`.
fn reply_loop(
    mut conn: Conn,
    size: usize,
    stop: &AtomicBool,
    answered: &AtomicU64,
) -> Result<(Sample, u64), BenchError> {
    let mut count = 0u64;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let before = count;
        conn.pump(&mut |msg, out| {
            let Some(reply) = msg.reply() else {
                return;
            };
            out.extend_from_slice(b"PUB ");
            out.extend_from_slice(reply);
            out.push(b' ');
            out.extend_from_slice(itoa::Buffer::new().format(msg.payload.len()).as_bytes());
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(msg.payload);
            out.extend_from_slice(b"\r\n");
            count += 1;
        })?;
        if count > before {
            let now = Instant::now();
            first.get_or_insert(now);
            last = now;
            answered.fetch_add(count - before, Ordering::Relaxed);
        }
    }
    Ok((Sample::new(count, size, first.unwrap_or(last), last), count))
}

fn run_requesters(
    plan: &Plan,
    conns: Vec<Conn>,
    counters: &Arc<Counters>,
) -> Result<Vec<(Sample, Histogram<u64>)>, BenchError> {
    let abort = Arc::new(AtomicBool::new(false));
    let shares: Vec<Option<u64>> = match plan.bound.msgs {
        Some(msgs) => msgs_per_client(msgs, conns.len())
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; conns.len()],
    };
    let mut handles = Vec::with_capacity(conns.len());
    for (i, (conn, share)) in conns.into_iter().zip(shares).enumerate() {
        let (block, frame_len) = pub_block(&plan.subject, Some(&inbox(plan, i)), plan.size);
        let job = Requester {
            frame: block[..frame_len].to_vec(),
            size: plan.size,
            share,
            run_for: plan.bound.duration,
        };
        let (abort, counters) = (Arc::clone(&abort), Arc::clone(counters));
        handles.push(spawn(format!("bench-req-{i}"), move || {
            let result = job.run(conn, &abort, &counters);
            if result.is_err() {
                abort.store(true, Ordering::Relaxed);
            }
            result
        })?);
    }
    join_all(handles)
}

struct Requester {
    /// One PUB frame with this requester's inbox as reply subject.
    frame: Vec<u8>,
    size: usize,
    share: Option<u64>,
    run_for: Option<Duration>,
}

impl Requester {
    fn run(
        self,
        mut conn: Conn,
        abort: &AtomicBool,
        counters: &Counters,
    ) -> Result<(Sample, Histogram<u64>), BenchError> {
        let mut histogram = new_histogram();
        let start = Instant::now();
        let deadline = self.run_for.map(|d| start + d);
        let mut sent = 0u64;
        while self.share.is_none_or(|share| sent < share) {
            let sent_at = Instant::now();
            if deadline.is_some_and(|d| sent_at >= d) {
                break;
            }
            if abort.load(Ordering::Relaxed) {
                return Err(BenchError::Aborted);
            }
            conn.write_direct(&self.frame)?;
            self.wait_reply(&mut conn, sent_at, sent)?;
            record(&mut histogram, sent_at.elapsed());
            sent += 1;
            counters.add_sent(1);
        }
        Ok((
            Sample::new(sent, self.size, start, Instant::now()),
            histogram,
        ))
    }

    fn wait_reply(&self, conn: &mut Conn, sent_at: Instant, index: u64) -> Result<(), BenchError> {
        let mut replies = 0u32;
        while replies == 0 {
            conn.pump(&mut |_, _| replies += 1)?;
            if replies == 0 && sent_at.elapsed() > REPLY_TIMEOUT {
                return Err(BenchError::Stalled(format!(
                    "{}: no reply to request {} within {}s (is a replier running?)",
                    conn.url(),
                    index + 1,
                    REPLY_TIMEOUT.as_secs()
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_order() {
        let mut h = new_histogram();
        for micros in 1..=1000u64 {
            record(&mut h, Duration::from_micros(micros));
        }
        let line = percentile_line("Latency", &h);
        assert!(line.starts_with("Latency: min 1.00us | avg 500."), "{line}");
        assert!(line.contains("| p50 500."), "{line}");
        assert!(line.contains("| p99.9 999."), "{line}");
        assert!(line.ends_with("(1000 samples)"), "{line}");
        assert_eq!(percentile_line("X", &new_histogram()), "X: no samples");
        record(&mut h, Duration::from_secs(3600));
        assert!(h.max() >= LATENCY_MAX.as_nanos() as u64 - LATENCY_MAX.as_nanos() as u64 / 1000);
    }
}
