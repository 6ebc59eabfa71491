//! The progress bar of a bench run: drawn on standard error by its own thread, only when
//! standard error is a terminal and only once the run has lasted a second.
//!
//! Cold: the drawing thread wakes ten times a second. Workers only bump relaxed atomic
//! counters (once per write or read batch, not per message). Invariant: the bar is cleared
//! before `Progress::finish` returns, so it never mixes with the report on standard output.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::units::comma;

/// Runs shorter than this never show a bar.
const SHOW_AFTER: Duration = Duration::from_secs(1);
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// What the bar measures.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// Messages sent plus messages received, out of this total.
    Count(u64),
    /// Time, out of this run length.
    Time(Duration),
}

/// Counters the workers bump; read by the drawing thread and by the run itself.
#[derive(Debug, Default)]
pub struct Counters {
    /// Messages (requests, connects) sent so far, all clients together.
    pub sent: AtomicU64,
    /// Messages received so far, all clients together.
    pub received: AtomicU64,
    done: AtomicBool,
}

impl Counters {
    pub fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    fn total(&self) -> u64 {
        self.sent.load(Ordering::Relaxed) + self.received.load(Ordering::Relaxed)
    }
}

/// The drawing thread, if any.
pub struct Progress {
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts drawing (when `enabled` and standard error is a terminal).
    pub fn start(enabled: bool, goal: Goal, counters: Arc<Counters>) -> Progress {
        let thread = (enabled && std::io::stderr().is_terminal()).then(|| {
            let counters = Arc::clone(&counters);
            std::thread::Builder::new()
                .name("bench-progress".into())
                .spawn(move || draw(goal, &counters))
                .ok()
        });
        Progress {
            counters,
            thread: thread.flatten(),
        }
    }

    /// Stops and clears the bar.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.counters.done.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            // A panic in the drawing thread only loses the bar.
            let _ = thread.join();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop();
    }
}

fn draw(goal: Goal, counters: &Counters) {
    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    while !counters.done.load(Ordering::Relaxed) {
        std::thread::sleep(REDRAW_EVERY);
        if started.elapsed() < SHOW_AFTER {
            continue;
        }
        let bar = bar.get_or_insert_with(|| new_bar(goal));
        let elapsed = started.elapsed();
        let total = counters.total();
        let rate = total as f64 / elapsed.as_secs_f64().max(1e-3);
        let (position, message) = match goal {
            Goal::Count(len) => (total, format!("{}/{} msgs", count(total), count(len))),
            Goal::Time(run) => {
                let secs = (elapsed.as_secs_f64(), run.as_secs_f64());
                let text = format!("{:.1}s/{:.1}s, {} msgs", secs.0, secs.1, count(total));
                (elapsed.as_millis() as u64, text)
            }
        };
        bar.set_position(position);
        bar.set_message(format!("{message}, {} msgs/s", count(rate as u64)));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

fn new_bar(goal: Goal) -> ProgressBar {
    let len = match goal {
        Goal::Count(total) => total,
        Goal::Time(run) => run.as_millis() as u64,
    };
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {msg}") {
        bar.set_style(style);
    }
    bar
}

fn count(n: u64) -> String {
    comma(i64::try_from(n).unwrap_or(i64::MAX))
}
