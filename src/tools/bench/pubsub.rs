//! Publishers and subscribers: `--pub N`, `--sub M`, `--queue NAME`.
//!
//! Hot: a publisher writes one pre-built block of identical PUB frames (about 64 KB, so
//! thousands of small messages per write syscall) again and again, and looks at the clock and
//! the abort flag once per block; a subscriber counts MSG frames as `scan` finds them and
//! touches shared counters once per read. Invariants, as `nats bench`: `--msgs` is the total
//! published, split over publishers; each plain subscriber must receive all of it, a queue
//! group all of it once between its members; publishers start only after every subscriber's
//! SUB was answered by PONG; a publisher's end time follows its final PONG.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::client::{Conn, HANDSHAKE_TIMEOUT};
use super::progress::{Counters, Goal, Progress};
use super::report::{Benchmark, Sample, SampleGroup, msgs_per_client};
use super::{BenchError, Plan, join_all, spawn};

/// Target size of one block of PUB frames (one write).
pub const PUB_BLOCK_BYTES: usize = 64 * 1024;
/// How long the final PING/PONG of a publisher may take (the server may have a backlog).
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);
/// Once publishers are done, a subscriber that receives nothing for this long fails the run.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);

/// State the subscribers share with the run.
#[derive(Debug)]
struct SubShared {
    /// Messages each plain subscriber (or the whole queue group) must receive; `u64::MAX`
    /// until known.
    target: AtomicU64,
    /// Messages received by the queue group so far (queue mode only).
    group_received: AtomicU64,
    pubs_done: AtomicBool,
    abort: AtomicBool,
}

/// Runs publishers and subscribers and returns their samples.
pub fn run(plan: &Plan, pubs: usize, subs: usize) -> Result<Benchmark, BenchError> {
    let sub_conns = connect_subscribers(plan, subs)?;
    let pub_conns = (0..pubs)
        .map(|_| Conn::connect(&plan.connect))
        .collect::<Result<Vec<_>, _>>()?;
    check_payload(plan, pub_conns.first().or(sub_conns.first()))?;
    let shared = Arc::new(SubShared {
        target: AtomicU64::new(initial_target(plan, pubs)),
        group_received: AtomicU64::new(0),
        pubs_done: AtomicBool::new(false),
        abort: AtomicBool::new(false),
    });
    let counters = Arc::new(Counters::default());
    let progress = Progress::start(plan.progress, goal(plan, pubs, subs), Arc::clone(&counters));
    let sub_handles = spawn_subscribers(plan, sub_conns, pubs == 0, &shared, &counters)?;
    let pub_result = run_publishers(plan, pub_conns, &shared, &counters);
    if let Ok(samples) = &pub_result {
        let published: u64 = samples.iter().map(|s| s.job_msg_count).sum();
        if plan.bound.duration.is_some() {
            shared.target.store(published, Ordering::Relaxed);
        }
    } else {
        shared.abort.store(true, Ordering::Relaxed);
    }
    shared.pubs_done.store(true, Ordering::Relaxed);
    let sub_result = join_all(sub_handles);
    progress.finish();
    let (pub_samples, sub_samples) = (pub_result?, sub_result?);
    Ok(Benchmark {
        name: "NATS".to_string(),
        run_id: plan.run_id.clone(),
        pubs: SampleGroup::new(pub_samples),
        subs: SampleGroup::new(sub_samples),
    })
}

/// The PUB frame for `subject` with a `size`-byte payload, repeated to fill about
/// `PUB_BLOCK_BYTES`; returns the block and one frame's length.
pub fn pub_block(subject: &str, reply: Option<&str>, size: usize) -> (Vec<u8>, usize) {
    let mut frame = match reply {
        Some(reply) => format!("PUB {subject} {reply} {size}\r\n").into_bytes(),
        None => format!("PUB {subject} {size}\r\n").into_bytes(),
    };
    frame.extend((0..size).map(|i| b'a' + (i % 26) as u8));
    frame.extend_from_slice(b"\r\n");
    let copies = (PUB_BLOCK_BYTES / frame.len()).max(1);
    (frame.repeat(copies), frame.len())
}

fn connect_subscribers(plan: &Plan, subs: usize) -> Result<Vec<Conn>, BenchError> {
    let mut conns = Vec::with_capacity(subs);
    for _ in 0..subs {
        let mut conn = Conn::connect(&plan.connect)?;
        conn.subscribe(&plan.subject, plan.queue.as_deref(), 1)?;
        conn.round_trip(HANDSHAKE_TIMEOUT, &mut |_, _| {})?;
        conns.push(conn);
    }
    Ok(conns)
}

/// A payload over the server's `max_payload` would only earn `-ERR` mid-run: say so first.
pub fn check_payload(plan: &Plan, conn: Option<&Conn>) -> Result<(), BenchError> {
    let Some(conn) = conn else {
        return Ok(());
    };
    let max = conn.info.max_payload;
    if max > 0 && plan.size as u64 > max as u64 {
        return Err(BenchError::Usage(format!(
            "--size {} is over the server's max_payload of {max} bytes",
            plan.size
        )));
    }
    Ok(())
}

fn initial_target(plan: &Plan, pubs: usize) -> u64 {
    match (plan.bound.msgs, plan.bound.duration) {
        (Some(msgs), None) => msgs,
        // Only subscribers here: stop at --msgs if given, else at the end of --duration.
        (Some(msgs), Some(_)) if pubs == 0 => msgs,
        _ => u64::MAX,
    }
}

fn goal(plan: &Plan, pubs: usize, subs: usize) -> Goal {
    match (plan.bound.msgs, plan.bound.duration) {
        (Some(msgs), None) => {
            let received = if plan.queue.is_some() {
                msgs
            } else {
                msgs * subs as u64
            };
            let sent = if pubs > 0 { msgs } else { 0 };
            Goal::Count(sent + received)
        }
        (_, duration) => Goal::Time(duration.unwrap_or_default()),
    }
}

fn spawn_subscribers(
    plan: &Plan,
    conns: Vec<Conn>,
    alone: bool,
    shared: &Arc<SubShared>,
    counters: &Arc<Counters>,
) -> Result<Vec<std::thread::JoinHandle<Result<Sample, BenchError>>>, BenchError> {
    let deadline = plan
        .bound
        .duration
        .filter(|_| alone)
        .map(|d| Instant::now() + d);
    let mut handles = Vec::with_capacity(conns.len());
    for (i, conn) in conns.into_iter().enumerate() {
        let shared = Arc::clone(shared);
        let counters = Arc::clone(counters);
        let job = Subscriber {
            index: i + 1,
            queue: plan.queue.is_some(),
            size: plan.size,
            deadline,
        };
        handles.push(spawn(format!("bench-sub-{i}"), move || {
            let result = job.run(conn, &shared, &counters);
            if result.is_err() {
                shared.abort.store(true, Ordering::Relaxed);
            }
            result
        })?);
    }
    Ok(handles)
}

fn run_publishers(
    plan: &Plan,
    conns: Vec<Conn>,
    shared: &Arc<SubShared>,
    counters: &Arc<Counters>,
) -> Result<Vec<Sample>, BenchError> {
    let (block, frame_len) = pub_block(&plan.subject, None, plan.size);
    let block = Arc::new(block);
    let shares = match plan.bound.msgs {
        Some(msgs) => msgs_per_client(msgs, conns.len())
            .into_iter()
            .map(Some)
            .collect(),
        None => vec![None; conns.len()],
    };
    let mut handles = Vec::with_capacity(conns.len());
    for (i, (conn, share)) in conns.into_iter().zip(shares).enumerate() {
        let job = Publisher {
            block: Arc::clone(&block),
            frame_len,
            size: plan.size,
            share,
            run_for: plan.bound.duration,
        };
        let shared = Arc::clone(shared);
        let counters = Arc::clone(counters);
        handles.push(spawn(format!("bench-pub-{i}"), move || {
            let result = job.run(conn, &shared.abort, &counters);
            if result.is_err() {
                shared.abort.store(true, Ordering::Relaxed);
            }
            result
        })?);
    }
    join_all(handles)
}

struct Publisher {
    block: Arc<Vec<u8>>,
    frame_len: usize,
    size: usize,
    /// This publisher's share of `--msgs`.
    share: Option<u64>,
    run_for: Option<Duration>,
}

impl Publisher {
    fn run(
        self,
        mut conn: Conn,
        abort: &AtomicBool,
        counters: &Counters,
    ) -> Result<Sample, BenchError> {
        let per_block = (self.block.len() / self.frame_len) as u64;
        let start = Instant::now();
        let deadline = self.run_for.map(|d| start + d);
        let mut sent = 0u64;
        loop {
            let batch = self
                .share
                .map_or(per_block, |share| (share - sent).min(per_block));
            if batch == 0 || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if abort.load(Ordering::Relaxed) {
                return Err(BenchError::Aborted);
            }
            // `batch <= per_block`, so the slice is within the block.
            conn.write_direct(&self.block[..batch as usize * self.frame_len])?;
            sent += batch;
            counters.add_sent(batch);
        }
        conn.round_trip(FLUSH_TIMEOUT, &mut |_, _| {})?;
        Ok(Sample::new(sent, self.size, start, Instant::now()))
    }
}

struct Subscriber {
    index: usize,
    queue: bool,
    size: usize,
    /// Only subscribers, with `--duration`: stop here.
    deadline: Option<Instant>,
}

impl Subscriber {
    fn run(
        self,
        mut conn: Conn,
        shared: &SubShared,
        counters: &Counters,
    ) -> Result<Sample, BenchError> {
        let mut count = 0u64;
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        let mut last_progress = last;
        let mut saw_pubs_done = false;
        loop {
            let before = count;
            conn.pump(&mut |_, _| count += 1)?;
            let now = Instant::now();
            if count > before {
                first.get_or_insert(now);
                (last, last_progress) = (now, now);
                counters.add_received(count - before);
                if self.queue {
                    shared
                        .group_received
                        .fetch_add(count - before, Ordering::Relaxed);
                }
            }
            let got = if self.queue {
                shared.group_received.load(Ordering::Relaxed)
            } else {
                count
            };
            let target = shared.target.load(Ordering::Relaxed);
            if got >= target || self.deadline.is_some_and(|d| now >= d) {
                break;
            }
            if shared.abort.load(Ordering::Relaxed) {
                return Err(BenchError::Aborted);
            }
            if !saw_pubs_done && shared.pubs_done.load(Ordering::Relaxed) {
                (saw_pubs_done, last_progress) = (true, last_progress.max(now));
            }
            if saw_pubs_done && now.duration_since(last_progress) > STALL_TIMEOUT {
                return Err(self.stalled(conn.url(), got, target));
            }
        }
        Ok(Sample::new(count, self.size, first.unwrap_or(last), last))
    }

    fn stalled(&self, url: &str, got: u64, target: u64) -> BenchError {
        let whose = if self.queue {
            "queue subscriber"
        } else {
            "subscriber"
        };
        BenchError::Stalled(format!(
            "{url}: {whose} {} received {got} of {target} messages, then nothing for {}s \
             (dropped as a slow consumer?)",
            self.index,
            STALL_TIMEOUT.as_secs()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_holds_whole_frames() {
        let (block, frame_len) = pub_block("foo", None, 16);
        assert_eq!(frame_len, "PUB foo 16\r\n".len() + 16 + 2);
        assert_eq!(block.len() % frame_len, 0);
        assert!(block.len() <= PUB_BLOCK_BYTES);
        assert!(block.len() > PUB_BLOCK_BYTES - frame_len);
        assert!(block.starts_with(b"PUB foo 16\r\nabcdefghijklmnop\r\nPUB foo 16\r\n"));
    }

    #[test]
    fn big_payloads_get_one_frame_per_block() {
        let (block, frame_len) = pub_block("foo", Some("r"), 100_000);
        assert_eq!(block.len(), frame_len);
        assert!(block.starts_with(b"PUB foo r 100000\r\n"));
        assert!(block.ends_with(b"\r\n"));
    }
}
