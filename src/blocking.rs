//! A small pool of threads for work that must not run on a shard's event loop: bcrypt
//! comparisons (tens of milliseconds at cost 11) and, later, resolver and callout waits.
//!
//! Cold. Jobs go in through one bounded channel; each job sends its own result back to the
//! shard that asked (through that shard's inbox plus its waker), so the pool knows nothing of
//! shards. Threads: the pool's workers take jobs; any thread may submit.
//! Invariant: the workers run at the lowest CPU priority (`SCHED_IDLE`, else nice 19), so a
//! shard that has work always wins the core from a bcrypt check; a full queue refuses the job
//! at once instead of making the caller wait.
// The workers share one receiver behind a std Mutex, held only to take a job.
#![allow(clippy::disallowed_types)]
// Setting the workers' scheduling policy takes two libc calls; each names its SAFETY argument.
#![allow(unsafe_code)]

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Jobs waiting for a worker before `submit` refuses more (the caller then refuses the CONNECT
/// with `Authorization Violation`). At about 80 ms a bcrypt check at cost 11, two workers get
/// through 256 jobs in some ten seconds, well past the two-second `authorization.timeout`:
/// a longer queue would only hold CONNECTs that time out anyway.
pub const QUEUE_LEN_MAX: usize = 256;

/// The priority a worker thread runs at.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum WorkerPriority {
    /// `SCHED_IDLE`: runs only on a core nothing else wants.
    Idle,
    /// `SCHED_IDLE` was refused: the normal policy at nice 19.
    Nice19,
    /// Both were refused: the default priority (logged once per worker).
    Default,
}

pub type Job = Box<dyn FnOnce() + Send + 'static>;

pub struct BlockingPool {
    sender: SyncSender<Job>,
}

impl BlockingPool {
    /// Starts `threads` workers named `blocking-N`.
    pub fn new(threads: usize) -> std::io::Result<Arc<BlockingPool>> {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Job>(QUEUE_LEN_MAX);
        // Why a std Mutex: the workers share one receiver; the lock is held only to take a job.
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("blocking-{i}"))
                .spawn(move || worker(&receiver))?;
        }
        Ok(Arc::new(BlockingPool { sender }))
    }

    /// Queues a job; returns it back if the queue is full or the pool is gone.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        match self.sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => Err(job),
        }
    }
}

/// Lowers the calling thread to the least CPU priority Linux offers.
pub fn lower_priority() -> WorkerPriority {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid sched_param for SCHED_IDLE
    // (priority 0) that lives across the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
        return WorkerPriority::Idle;
    }
    // SAFETY: plain syscalls; on Linux the nice value is per thread, and `gettid` names this one.
    let tid = unsafe { libc::gettid() };
    let who = libc::id_t::try_from(tid).unwrap_or(0);
    // SAFETY: as above.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, who, 19) } == 0 {
        return WorkerPriority::Nice19;
    }
    WorkerPriority::Default
}

fn worker(receiver: &Mutex<Receiver<Job>>) {
    if lower_priority() == WorkerPriority::Default {
        tracing::warn!("blocking pool thread runs at normal priority: SCHED_IDLE and nice refused");
    }
    loop {
        let job = {
            let guard = receiver.lock().unwrap_or_else(|e| e.into_inner());
            guard.recv()
        };
        match job {
            Ok(job) => {
                // A panicking job must not take the worker down with it.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_off_the_calling_thread_and_report_back() {
        let pool = BlockingPool::new(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..8 {
            let tx = tx.clone();
            let job: Job = Box::new(move || {
                let name = std::thread::current().name().map(str::to_string);
                let _ = tx.send((i, name));
            });
            assert!(pool.submit(job).is_ok());
        }
        let mut seen: Vec<_> = (0..8).map(|_| rx.recv().unwrap()).collect();
        seen.sort();
        assert_eq!(seen.len(), 8);
        assert!(
            seen.iter()
                .all(|(_, name)| name.as_deref().is_some_and(|n| n.starts_with("blocking-")))
        );
    }

    #[test]
    fn workers_run_at_the_lowest_priority() {
        let pool = BlockingPool::new(1).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let job: Job = Box::new(move || {
            // SAFETY: plain queries about the calling thread.
            let policy = unsafe { libc::sched_getscheduler(0) };
            // SAFETY: as above; `gettid` names this thread.
            let nice =
                unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
            let _ = tx.send((policy, nice));
        });
        assert!(pool.submit(job).is_ok());
        let (policy, nice) = rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        assert!(
            policy == libc::SCHED_IDLE || nice == 19,
            "worker policy {policy}, nice {nice}: neither SCHED_IDLE nor nice 19"
        );
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let pool = BlockingPool::new(1).unwrap();
        let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        // The one worker waits on `hold` until the queue has been filled.
        let blocker: Job = Box::new(move || {
            let _ = started_tx.send(());
            let _ = hold_rx.recv();
        });
        assert!(pool.submit(blocker).is_ok());
        started_rx.recv().unwrap();
        for i in 0..QUEUE_LEN_MAX {
            assert!(pool.submit(Box::new(|| {})).is_ok(), "job {i} fits");
        }
        assert!(pool.submit(Box::new(|| {})).is_err(), "the queue is full");
        drop(hold_tx);
    }

    #[test]
    fn a_panicking_job_does_not_kill_the_worker() {
        let pool = BlockingPool::new(1).unwrap();
        // `resume_unwind` unwinds like `panic!` but skips the panic hook: with `RUST_BACKTRACE`
        // set, the hook's backtrace costs the worker, at idle priority beside busy test
        // threads, more CPU than it gets in the deadline below.
        let job: Job = Box::new(|| std::panic::resume_unwind(Box::new("job failed")));
        assert!(pool.submit(job).is_ok());
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(pool.submit(Box::new(move || tx.send(7).unwrap())).is_ok());
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap(),
            7
        );
    }
}
