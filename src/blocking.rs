//! A small pool of threads for work that must not run on a shard's event loop: bcrypt
//! comparisons (tens of milliseconds at cost 11) and, later, resolver and callout waits.
//!
//! Cold. Jobs go in through one bounded channel; each job sends its own result back to the
//! shard that asked (through that shard's inbox plus its waker), so the pool knows nothing of
//! shards. Threads: the pool's workers take jobs; any thread may submit.
// The workers share one receiver behind a std Mutex, held only to take a job.
#![allow(clippy::disallowed_types)]

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Jobs waiting for a worker before `submit` refuses more (the caller then fails the request,
/// as an overloaded nats-server would time it out).
pub const QUEUE_LEN_MAX: usize = 4096;

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

fn worker(receiver: &Mutex<Receiver<Job>>) {
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
    fn a_panicking_job_does_not_kill_the_worker() {
        let pool = BlockingPool::new(1).unwrap();
        assert!(pool.submit(Box::new(|| panic!("job failed"))).is_ok());
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(pool.submit(Box::new(move || tx.send(7).unwrap())).is_ok());
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap(),
            7
        );
    }
}
