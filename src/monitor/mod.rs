//! Monitoring: nats-server's HTTP endpoints (`/varz`, `/connz`, `/subsz`, `/accountz`,
//! `/accstatz`, `/healthz`, and the empty `/routez`, `/leafz`, `/gatewayz`, `/jsz`), served on a
//! thread of their own, never on a shard.
//!
//! Cold: everything here runs per monitoring request. The data comes from the shards, which
//! answer a `ShardQuery` between two loop turns with a copy of their counters and connections
//! (`shard/monitor.rs`); the hot path only bumps a connection's own counters.
//! Invariant: the monitoring thread never blocks a shard and a shard never waits for it. Queries
//! go through one channel per shard (plus an eventfd wake-up), answers come back through an
//! unbounded channel, and a shard that does not answer within `QUERY_TIMEOUT` is left out of
//! that answer rather than waited for.
// The receivers sit behind a std Mutex taken once per shard at start; the config load time
// behind one written on reload and read per request. Neither is touched per message.
#![allow(clippy::disallowed_types)]

pub mod claims;
pub mod endpoints;
pub mod events;
pub mod gotime;
pub mod http;
pub mod process;
pub mod query;
pub mod sys;

use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use crate::ids::ShardId;
use crate::shard::mesh::Waker;
use query::{QueryKind, ShardQuery, ShardReport};

/// How long a request waits for the shards' answers.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The monitoring side's links to the shards, kept in `shared::Shared`.
pub struct Monitoring {
    /// One per shard; used by the monitoring thread (and a shard asking on a client's behalf).
    senders: Vec<Sender<ShardQuery>>,
    /// Each shard takes its receiver once, at start.
    receivers: Mutex<Vec<Option<Receiver<ShardQuery>>>>,
    /// Set once at start, before any shard runs.
    wakers: OnceLock<Vec<Arc<Waker>>>,
    /// When the server started (`/varz` `start`).
    pub start: SystemTime,
    /// When the configuration was last loaded (`config_load_time`); written on reload.
    config_load_time: Mutex<SystemTime>,
    /// Why `/healthz` fails, when something outside the shards says so (lame-duck mode).
    health_error: Mutex<Option<String>>,
    /// `$SYS` work from the shards to the monitoring thread, and that thread's end (taken once).
    sys_tx: tokio::sync::mpsc::UnboundedSender<sys::SysWork>,
    sys_rx: Mutex<Option<tokio::sync::mpsc::UnboundedReceiver<sys::SysWork>>>,
    /// nats-server's per-server event sequence (`server.seq` of every `$SYS` message).
    pub event_seq: AtomicU64,
}

impl Monitoring {
    pub fn new(shards: usize) -> Monitoring {
        let (senders, receivers): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| {
                let (tx, rx) = std::sync::mpsc::channel();
                (tx, Some(rx))
            })
            .unzip();
        let now = SystemTime::now();
        let (sys_tx, sys_rx) = tokio::sync::mpsc::unbounded_channel();
        Monitoring {
            sys_tx,
            sys_rx: Mutex::new(Some(sys_rx)),
            event_seq: AtomicU64::new(0),
            senders,
            receivers: Mutex::new(receivers),
            wakers: OnceLock::new(),
            start: now,
            config_load_time: Mutex::new(now),
            health_error: Mutex::new(None),
        }
    }

    pub fn set_wakers(&self, wakers: Vec<Arc<Waker>>) {
        let _ = self.wakers.set(wakers);
    }

    pub fn take_receiver(&self, id: ShardId) -> Option<Receiver<ShardQuery>> {
        let mut receivers = self.receivers.lock().unwrap_or_else(|e| e.into_inner());
        receivers.get_mut(usize::from(id.0)).and_then(Option::take)
    }

    pub fn config_load_time(&self) -> SystemTime {
        *self
            .config_load_time
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Called after a reload was applied.
    pub fn set_config_load_time(&self, t: SystemTime) {
        *self
            .config_load_time
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// Hands `$SYS` work to the monitoring thread; never blocks (a shard calls this).
    pub fn sys_work(&self, work: sys::SysWork) {
        let _ = self.sys_tx.send(work);
    }

    /// The monitoring thread's end of `sys_work`; taken once.
    pub fn take_sys_receiver(&self) -> Option<tokio::sync::mpsc::UnboundedReceiver<sys::SysWork>> {
        self.sys_rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// Asks `shard` to publish a `$SYS` reply or event.
    pub fn publish(&self, shard: ShardId, publish: sys::SysPublish) {
        let i = usize::from(shard.0);
        let Some(sender) = self.senders.get(i) else {
            return;
        };
        let query = ShardQuery {
            what: QueryKind::Publish(Arc::new(publish)),
            reply: None,
        };
        if sender.send(query).is_ok() {
            if let Some(waker) = self.wakers.get().and_then(|w| w.get(i)) {
                waker.wake_always();
            }
        }
    }

    /// Wakes every shard (a new snapshot is there to pick up).
    pub fn wake_shards(&self) {
        for waker in self.wakers.get().into_iter().flatten() {
            waker.wake_always();
        }
    }

    /// Makes `/healthz` answer 503 with `error` (lame-duck mode), or ok again with `None`.
    pub fn set_health_error(&self, error: Option<String>) {
        *self.health_error.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    pub fn health_error(&self) -> Option<String> {
        self.health_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Asks every shard and waits (at most `QUERY_TIMEOUT`) for their reports.
    pub async fn collect(&self, what: QueryKind) -> Vec<ShardReport> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut asked = 0;
        for (i, sender) in self.senders.iter().enumerate() {
            let query = ShardQuery {
                what: what.clone(),
                reply: Some(tx.clone()),
            };
            if sender.send(query).is_err() {
                continue;
            }
            asked += 1;
            // Always write the eventfd: a shard between its query check and its sleep would
            // otherwise sleep until its next tick.
            if let Some(waker) = self.wakers.get().and_then(|w| w.get(i)) {
                waker.wake_always();
            }
        }
        drop(tx);
        let deadline = tokio::time::Instant::now() + QUERY_TIMEOUT;
        let mut reports = Vec::with_capacity(asked);
        while reports.len() < asked {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(report)) => reports.push(report),
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(
                        answered = reports.len(),
                        asked,
                        "monitoring: shards did not answer in time"
                    );
                    break;
                }
            }
        }
        reports
    }
}
