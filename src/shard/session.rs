//! Per-connection control ops on a shard: CONNECT, SUB, UNSUB, PING, and the interest
//! bookkeeping that keeps other shards' replicas of our subscriptions current.
//!
//! Cold: these run per control op, not per message, and may allocate.
//! Invariant: a shard sends `Interest { add }` to its peers exactly when its local count of
//! subscriptions for (account, filter, queue) goes 0 → 1, and `add: false` on 1 → 0.

use std::time::Duration;

use crate::conn::{CloseReason, ConnFlags};
use crate::protocol::connect::{ConnectOptions, validate};
use crate::protocol::encode;
use crate::shard::mesh::ShardMsg;
use crate::shard::{Shard, SubKey, Subscription, mark_dirty};

/// nats-server `firstClientPingInterval`: the first PING, which measures the RTT, goes out
/// this long after CONNECT (or after `ping_interval`, if shorter), plus up to a fifth more.
/// Not sooner: nats-server's `maxNoRTTPingBeforeFirstPong` (also 2 s) is how long a client
/// may still be in its handshake, where a PING it does not expect could confuse it.
const FIRST_PING_INTERVAL: Duration = Duration::from_secs(2);

impl Shard {
    pub(super) fn on_connect(&mut self, slot: u32, json: &[u8]) {
        self.start_rtt(slot);
        let conn = &mut self.conns[slot as usize];
        // A CONNECT applies on top of the connection's current options (nats-server
        // unmarshals into the existing `clientOpts`, whose defaults are verbose and pedantic on).
        let mut opts = ConnectOptions {
            verbose: conn.flags.verbose,
            pedantic: conn.flags.pedantic,
            echo: conn.flags.echo,
            headers: conn.flags.headers,
            no_responders: conn.flags.no_responders,
            ..ConnectOptions::default()
        };
        let checked = opts.apply_json(json).and_then(|()| validate(&opts));
        if let Err(err) = checked {
            tracing::debug!("{} - cid:{} - CONNECT refused: {err}", conn.peer, conn.cid);
            let reason = CloseReason::ProtocolViolation;
            match err.err_line() {
                Some(line) => {
                    if self.limits.trace {
                        crate::logging::trace::line_out(conn, line);
                    }
                    conn.out.pending_mut().extend_from_slice(line);
                    self.drain_then_close(slot, reason);
                }
                None => self.close(slot, reason),
            }
            return;
        }
        let flags = ConnFlags {
            verbose: opts.verbose,
            pedantic: opts.pedantic,
            echo: opts.echo,
            headers: opts.headers,
            no_responders: opts.no_responders,
        };
        conn.name = std::mem::take(&mut opts.name);
        conn.lang = std::mem::take(&mut opts.lang);
        conn.version = std::mem::take(&mut opts.version);
        self.authenticate(slot, opts, flags);
    }

    /// nats-server `processConnect`: accept to CONNECT is the first RTT estimate (so `/connz`
    /// shows one at once), and the keepalive timer restarts at the first-PING interval; the
    /// timer sends that PING even on a busy connection (`tasks.rs`), measuring the real RTT.
    fn start_rtt(&mut self, slot: u32) {
        let first = self.limits.ping_interval.min(FIRST_PING_INTERVAL);
        let fifth = u64::try_from((first / 5).as_nanos())
            .unwrap_or(u64::MAX)
            .max(1);
        let jitter = Duration::from_nanos(super::next_random(&mut self.rng) % fifth);
        let now = self.now;
        let conn = &mut self.conns[slot as usize];
        if conn.rtt.is_none() {
            conn.rtt = Some(super::rtt_since(now, conn.created));
        }
        conn.next_ping = now + first + jitter;
    }

    pub(super) fn on_sub(&mut self, slot: u32, filter: &[u8], queue: &[u8], sid: &[u8]) {
        if !crate::subject::is_valid_filter(filter)
            || (!queue.is_empty() && !crate::subject::is_valid_queue(queue))
        {
            self.send_err(slot, "Invalid Subject");
            return;
        }
        let conn = &mut self.conns[slot as usize];
        let mut filter_deliveries = false;
        if let (Some(perms), Some(cache)) = (&conn.perms, conn.perm_cache.as_mut()) {
            let queue_opt = (!queue.is_empty()).then_some(queue);
            if !cache.can_subscribe(perms, filter, queue_opt) {
                let text = subscribe_violation(filter, queue);
                crate::logging::client::subscription_violation(conn, filter, queue, sid);
                self.send_err(slot, &text);
                return;
            }
            filter_deliveries = perms.sub_needs_delivery_filter(filter);
        }
        // A sid whose subscription just reached its UNSUB max is free again.
        self.remove_expired();
        let conn = &mut self.conns[slot as usize];
        if conn.subs.contains_key(sid) {
            // A duplicate sid is ignored (nats-server processSub keeps the first).
            self.ok_if_verbose(slot);
            return;
        }
        let server_max =
            (self.limits.max_subscriptions > 0).then_some(self.limits.max_subscriptions);
        let max_subs = match (server_max, conn.max_subs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if max_subs.is_some_and(|max| conn.subs.len() >= max)
            || conn.account_subs.as_mut().is_some_and(|s| !s.try_add())
        {
            self.send_err(slot, "maximum subscriptions exceeded");
            return;
        }
        let account = conn.account;
        let queue = (!queue.is_empty()).then(|| Box::<[u8]>::from(queue));
        let sub = Subscription {
            conn: slot,
            account,
            sid: sid.into(),
            filter: filter.into(),
            queue: queue.clone(),
            max: None,
            delivered: 0,
            filter_deliveries,
        };
        let key = SubKey(self.subs.insert(sub) as u32);
        self.monitor.sub_inserts += 1;
        self.conns[slot as usize].subs.insert(sid.into(), key);
        self.accounts[account as usize]
            .local
            .insert(filter, queue.as_deref(), key);
        self.interest_changed(account, filter, queue.as_deref(), true);
        // The barrier that covers this SUB (`Barrier::covering_seq`).
        self.conns[slot as usize].interest_seq = self.barrier.covering_seq();
        self.ok_if_verbose(slot);
    }

    pub(super) fn on_unsub(&mut self, slot: u32, sid: &[u8], max: Option<u64>) {
        // A subscription at its max is gone: a later `UNSUB <sid> <larger max>` must not
        // revive it.
        self.remove_expired();
        let conn = &self.conns[slot as usize];
        if let Some(&key) = conn.subs.get(sid) {
            let sub = &mut self.subs[key.0 as usize];
            match max {
                Some(max) if sub.delivered < max => sub.max = Some(max),
                _ => self.remove_sub(key),
            }
        }
        self.ok_if_verbose(slot);
    }

    /// Answers PING, holding the PONG back while peers have not yet acknowledged interest
    /// changes this connection made (DESIGN.md invariant 5: flush means visible).
    pub(super) fn on_ping(&mut self, slot: u32) {
        self.send_ack(slot, encode::PONG);
    }

    /// Sends `+OK` in verbose mode, held back like a PONG (the `+OK` after a SUB also means
    /// the subscription is visible everywhere).
    pub(super) fn ok_if_verbose(&mut self, slot: u32) {
        if self.conns[slot as usize].flags.verbose {
            self.send_ack(slot, encode::OK);
        }
    }

    fn send_ack(&mut self, slot: u32, line: &'static [u8]) {
        if self.limits.trace {
            crate::logging::trace::line_out(&self.conns[slot as usize], line);
        }
        let needed = self.conns[slot as usize].interest_seq;
        let acked = self.acked_everywhere();
        let conn = &mut self.conns[slot as usize];
        if needed > acked || !conn.held_acks.is_empty() {
            let first = conn.held_acks.is_empty();
            conn.held_acks.push(line);
            if first {
                self.barrier.add_waiter(slot);
                // Later ops wait behind the held line: stop reading until it is sent.
                self.pause_recv(slot);
            }
            return;
        }
        conn.out.pending_mut().extend_from_slice(line);
        mark_dirty(&mut self.dirty, conn, slot);
    }

    /// The highest barrier every peer has acknowledged.
    fn acked_everywhere(&self) -> u64 {
        self.barrier.acked_everywhere(self.mesh.peers())
    }

    /// Sends the acknowledgements held for connections whose interest is now everywhere, then
    /// runs the ops that waited behind them.
    pub(super) fn release_pongs(&mut self) {
        if !self.barrier.has_waiters() {
            return;
        }
        let acked = self.acked_everywhere();
        let mut released = Vec::new();
        let Shard {
            barrier,
            conns,
            dirty,
            ..
        } = self;
        barrier.retain_waiters(|&slot| {
            let Some(conn) = conns.get_mut(slot as usize) else {
                return false;
            };
            if conn.held_acks.is_empty() {
                return false;
            }
            if conn.interest_seq > acked {
                return true;
            }
            for line in conn.held_acks.drain(..) {
                conn.out.pending_mut().extend_from_slice(line);
            }
            mark_dirty(dirty, conn, slot);
            released.push(slot);
            false
        });
        for slot in released {
            self.process_rbuf(slot);
            self.rearm_recv_if_drained(slot);
        }
    }

    pub(super) fn remove_sub(&mut self, key: SubKey) {
        let sub = self.subs.remove(key.0 as usize);
        self.monitor.sub_removes += 1;
        if let Some(conn) = self.conns.get_mut(sub.conn as usize) {
            conn.subs.remove(&sub.sid);
            if let Some(account_subs) = conn.account_subs.as_mut() {
                account_subs.remove();
            }
            if self.limits.trace {
                crate::logging::trace::delsub(conn, &sub.sid);
            }
        }
        let index = &mut self.accounts[sub.account as usize].local;
        index.remove(&sub.filter, sub.queue.as_deref(), key);
        self.interest_changed(sub.account, &sub.filter, sub.queue.as_deref(), false);
    }

    fn interest_changed(&mut self, account: u32, filter: &[u8], queue: Option<&[u8]>, add: bool) {
        if self.mesh.peer_count() == 0 {
            return;
        }
        let key = interest_key(account, filter, queue);
        let announce = if add {
            let count = self.local_interest.entry(key).or_insert(0);
            *count += 1;
            *count == 1
        } else {
            match self.local_interest.get_mut(&key) {
                Some(count) if *count > 1 => {
                    *count -= 1;
                    false
                }
                Some(_) => {
                    self.local_interest.remove(&key);
                    true
                }
                None => false,
            }
        };
        if !announce {
            return;
        }
        let peers: Vec<_> = self.mesh.peers().collect();
        for peer in peers {
            let msg = ShardMsg::Interest {
                account,
                filter: filter.into(),
                queue: queue.map(Into::into),
                add,
            };
            self.mesh.send(peer, msg);
        }
        self.barrier.interest_sent();
    }
}

/// nats-server's words for a refused SUB (`sendErr` in `processSub`).
fn subscribe_violation(filter: &[u8], queue: &[u8]) -> String {
    let filter = encode::go_quote(filter);
    if queue.is_empty() {
        format!("Permissions Violation for Subscription to {filter}")
    } else {
        let queue = encode::go_quote(queue);
        format!("Permissions Violation for Subscription to {filter} using queue {queue}")
    }
}

/// The key of `Shard::local_interest`: account, filter and queue in one buffer.
fn interest_key(account: u32, filter: &[u8], queue: Option<&[u8]>) -> Vec<u8> {
    let mut key = Vec::with_capacity(4 + filter.len() + 1 + queue.map_or(0, <[u8]>::len));
    key.extend_from_slice(&account.to_ne_bytes());
    key.extend_from_slice(filter);
    if let Some(q) = queue {
        key.push(b' ');
        key.extend_from_slice(q);
    }
    key
}
