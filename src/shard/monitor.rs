//! The shard's side of monitoring: answers `ShardQuery`s from the monitoring thread with a copy
//! of its counters, connections and subscriptions, and keeps the ring of recently closed
//! connections that `/connz?state=closed` lists.
//!
//! Cold: queries are answered between loop turns (`answer_monitor_queries`, one channel poll
//! per turn when none waits); a close adds one record. A `/connz` poll walks no connections
//! for its default page (open connections by client id, kept in a list rebuilt only when a
//! connection comes or goes) and copies out only that page; other sorts rank each connection by
//! one number before copying the page. The hot path's part is a few plain increments of the
//! connection's own counters (`Conn::stats`): no atomic, no lock, no shared cache line. Server
//! and account totals are sums over connections, taken when asked, plus what closed
//! connections left behind.
//! Invariant: nothing here blocks; a reply goes into an unbounded channel and a query whose
//! asker has gone is answered into the void. A query reads the shard and never writes to a
//! connection (the RTT `/connz` shows is kept by CONNECT and the keepalive PINGs).

use std::collections::VecDeque;
use std::time::{Instant, SystemTime};

use crate::conn::{CloseReason, Conn};
use crate::monitor::query::{
    AccountTotals, ConnFilter, ConnInfo, QueryKind, ShardQuery, ShardReport, ShardTotals, SortKey,
    StateFilter, SubFilter, SubInfo, SubsWanted,
};
use crate::shard::Shard;

/// Closed connections remembered by the whole server (nats-server `MaxClosedClients`); each
/// shard keeps its share.
pub const CLOSED_CONNS_MAX: usize = 10_000;

/// Monitoring state of one shard.
pub struct ShardMonitor {
    queries: Option<std::sync::mpsc::Receiver<ShardQuery>>,
    closed: VecDeque<ClosedConn>,
    closed_max: usize,
    /// Traffic of closed connections, per account id, so totals stay cumulative.
    closed_traffic: Vec<AccountTotals>,
    total_connections: u64,
    slow_consumers: u64,
    pub(super) sub_inserts: u64,
    pub(super) sub_removes: u64,
    /// Scratch for `/connz` over open connections: one small entry per connection, kept
    /// between queries so a poll allocates nothing here (bounded by the connection count).
    ranked: Vec<Ranked>,
    /// Connections closed since start (each passes `record_close` once).
    closes: u64,
    /// The open connections by client id, as of `by_cid_at`: the default `/connz` order, kept
    /// while no connection came or went, so a poll need not walk every connection.
    by_cid: Vec<(u64, u32)>,
    /// `(total_connections, closes)` when `by_cid` was built. A connection opens only through
    /// `on_accept` and stops being open only through `record_close` (or is refused inside its
    /// own accept, before any query sees it), so an unchanged pair means unchanged members.
    by_cid_at: Option<(u64, u64)>,
}

/// An open connection as `/connz`'s sort sees it: its place under the query's sort key
/// (`rank`, then `cid`) and where it lives. Only the entries the sort keeps are copied out in
/// full.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Ord, PartialOrd)]
struct Ranked {
    rank: u64,
    cid: u64,
    slot: u32,
}

/// A closed connection as `/connz?state=closed` shows it.
struct ClosedConn {
    info: ConnInfo,
    account_id: u32,
}

impl ShardMonitor {
    pub fn new(queries: Option<std::sync::mpsc::Receiver<ShardQuery>>, shards: usize) -> Self {
        ShardMonitor {
            queries,
            closed: VecDeque::new(),
            closed_max: (CLOSED_CONNS_MAX / shards.max(1)).max(1),
            closed_traffic: Vec::new(),
            total_connections: 0,
            slow_consumers: 0,
            sub_inserts: 0,
            sub_removes: 0,
            ranked: Vec::new(),
            closes: 0,
            by_cid: Vec::new(),
            by_cid_at: None,
        }
    }

    pub(super) fn on_accept(&mut self) {
        self.total_connections += 1;
    }
}

impl Shard {
    /// Answers the monitoring thread's queries; called once per loop turn.
    pub(super) fn answer_monitor_queries(&mut self) {
        loop {
            let Some(Ok(query)) = self.monitor.queries.as_ref().map(|rx| rx.try_recv()) else {
                return;
            };
            if let QueryKind::Publish(publish) = &query.what {
                self.sys_publish(publish);
                continue;
            }
            let report = self.monitor_report(&query.what);
            if let Some(reply) = query.reply {
                let _ = reply.send(report);
            }
        }
    }

    /// Records a connection that is going away: its traffic joins the closed totals, and it
    /// joins the closed ring (the oldest record leaves when the ring is full).
    pub(super) fn record_close(&mut self, slot: u32, reason: CloseReason) {
        self.sys_disconnect_event(slot, reason);
        self.monitor.closes += 1;
        let clock = Clock::now();
        let conn = &self.conns[slot as usize];
        if matches!(
            reason,
            CloseReason::SlowConsumerPendingBytes | CloseReason::SlowConsumerWriteDeadline
        ) {
            self.monitor.slow_consumers += 1;
            let account = conn.account as usize;
            grow(&mut self.monitor.closed_traffic, account);
            self.monitor.closed_traffic[account].slow_consumers += 1;
        }
        let account = conn.account as usize;
        grow(&mut self.monitor.closed_traffic, account);
        let traffic = &mut self.monitor.closed_traffic[account];
        traffic.in_msgs += conn.stats.in_msgs;
        traffic.in_bytes += conn.stats.in_bytes;
        traffic.out_msgs += conn.stats.out_msgs;
        traffic.out_bytes += conn.stats.out_bytes;
        let mut info = self.conn_info(conn, &clock, SubsWanted::Detail);
        info.stop = Some(clock.wall);
        info.reason = Some(reason.describe());
        if self.monitor.closed.len() >= self.monitor.closed_max {
            self.monitor.closed.pop_front();
        }
        self.monitor.closed.push_back(ClosedConn {
            info,
            account_id: conn.account,
        });
    }

    fn monitor_report(&mut self, what: &QueryKind) -> ShardReport {
        let mut report = ShardReport {
            shard: Some(self.id),
            ..ShardReport::default()
        };
        match what {
            QueryKind::Totals | QueryKind::Publish(_) => self.fill_totals(&mut report),
            // `/connz` shows no totals: the connections alone.
            QueryKind::Conns(filter) => self.fill_conns(filter, &mut report),
            QueryKind::Subs(filter) => {
                self.fill_totals(&mut report);
                self.fill_fanout(&mut report.totals);
                self.fill_subs(filter, &mut report);
            }
        }
        report
    }

    fn fill_totals(&self, report: &mut ShardReport) {
        let mut totals = ShardTotals {
            slow_consumers: self.monitor.slow_consumers,
            total_connections: self.monitor.total_connections,
            subscriptions: self.subs.len() as u64,
            sub_inserts: self.monitor.sub_inserts,
            sub_removes: self.monitor.sub_removes,
            ..ShardTotals::default()
        };
        let mut accounts = self.monitor.closed_traffic.clone();
        for (_, conn) in self.conns.iter().filter(|(_, c)| c.is_open()) {
            totals.connections += 1;
            let account = conn.account as usize;
            grow(&mut accounts, account);
            let acc = &mut accounts[account];
            acc.connections += 1;
            acc.total_connections += 1;
            acc.in_msgs += conn.stats.in_msgs;
            acc.in_bytes += conn.stats.in_bytes;
            acc.out_msgs += conn.stats.out_msgs;
            acc.out_bytes += conn.stats.out_bytes;
        }
        for (_, sub) in self.subs.iter() {
            let account = sub.account as usize;
            grow(&mut accounts, account);
            accounts[account].subscriptions += 1;
        }
        for acc in &accounts {
            totals.in_msgs += acc.in_msgs;
            totals.in_bytes += acc.in_bytes;
            totals.out_msgs += acc.out_msgs;
            totals.out_bytes += acc.out_bytes;
        }
        for index in &self.accounts {
            let (lookups, misses) = index.local.lookups();
            totals.cache_len += index.local.cache_len() as u64;
            totals.matches += lookups;
            totals.cache_hits += lookups.wrapping_sub(misses);
        }
        report.totals = totals;
        report.accounts = accounts;
    }

    /// nats-server `Sublist.Stats` fanout: over the cached match results of every account's
    /// local index (this walks the caches, so only `/subsz` asks for it).
    fn fill_fanout(&self, totals: &mut ShardTotals) {
        for index in &self.accounts {
            let stats = index.local.stats();
            totals.fanout_max = totals.fanout_max.max(stats.fanout_max);
            totals.fanout_total += stats.fanout_total;
        }
    }

    fn fill_conns(&mut self, filter: &ConnFilter, report: &mut ShardReport) {
        let clock = Clock::now();
        let account_id = match &filter.account {
            Some(name) => match self.snapshot.auth.account_id(name) {
                Some(id) => Some(id),
                None => return,
            },
            None => None,
        };
        if filter.state == StateFilter::Open {
            self.fill_open_conns(filter, account_id, &clock, report);
            return;
        }
        // The open connections' numbers (no strings, nothing allocated per connection) and the
        // closed ones by reference are what the sort chooses from; only the `keep` chosen are
        // copied out in full.
        let mut open: Vec<(ConnInfo, u32)> = Vec::new();
        if filter.state != StateFilter::Closed {
            open.reserve(self.conns.len());
            for (slot, conn) in self.conns.iter().filter(|(_, c)| c.is_open()) {
                if filter.cid.is_some_and(|cid| cid != conn.cid)
                    || account_id.is_some_and(|id| id != conn.account)
                    || filter.user.as_ref().is_some_and(|u| *u != conn.user)
                {
                    continue;
                }
                open.push((self.conn_info_numbers(conn, &clock), slot as u32));
            }
        }
        let mut rows: Vec<(&ConnInfo, Option<u32>)> = open
            .iter()
            .map(|(info, slot)| (info, Some(*slot)))
            .collect();
        if filter.state != StateFilter::Open {
            for closed in &self.monitor.closed {
                if filter.cid.is_some_and(|cid| cid != closed.info.cid)
                    || account_id.is_some_and(|id| id != closed.account_id)
                    || filter.user.as_ref().is_some_and(|u| *u != closed.info.user)
                {
                    continue;
                }
                rows.push((&closed.info, None));
            }
        }
        report.conns_matched = rows.len();
        if rows.len() > filter.keep {
            let sort = filter.sort;
            rows.select_nth_unstable_by(filter.keep, |a, b| sort.compare(a.0, b.0));
            rows.truncate(filter.keep);
        }
        report.conns.reserve(rows.len());
        for (info, open_slot) in rows {
            let info = match open_slot {
                Some(slot) => self.conn_info(&self.conns[slot as usize], &clock, filter.subs),
                None => {
                    let mut info = info.clone();
                    if filter.subs == SubsWanted::None {
                        info.subs.clear();
                    }
                    info
                }
            };
            report.conns.push(info);
        }
    }

    /// `/connz` over open connections only (the default, and what a poll asks): one pass that
    /// ranks each matching connection by a number (no strings, nothing allocated: the ranks go
    /// into the kept scratch vector), then full copies of the `keep` best only.
    fn fill_open_conns(
        &mut self,
        filter: &ConnFilter,
        account_id: Option<u32>,
        clock: &Clock,
        report: &mut ShardReport,
    ) {
        let unfiltered = filter.cid.is_none() && account_id.is_none() && filter.user.is_none();
        if unfiltered && filter.sort == SortKey::Cid && self.fill_open_by_cid(filter, clock, report)
        {
            return;
        }
        let mut ranked = std::mem::take(&mut self.monitor.ranked);
        ranked.clear();
        for (slot, conn) in self.conns.iter().filter(|(_, c)| c.is_open()) {
            if filter.cid.is_some_and(|cid| cid != conn.cid)
                || account_id.is_some_and(|id| id != conn.account)
                || filter.user.as_ref().is_some_and(|u| *u != conn.user)
            {
                continue;
            }
            ranked.push(Ranked {
                rank: rank(filter.sort, conn, clock.now),
                cid: conn.cid,
                slot: slot as u32,
            });
        }
        report.conns_matched = ranked.len();
        if ranked.len() > filter.keep {
            ranked.select_nth_unstable(filter.keep);
            ranked.truncate(filter.keep);
        }
        report.conns.reserve(ranked.len());
        for entry in &ranked {
            let conn = &self.conns[entry.slot as usize];
            report.conns.push(self.conn_info(conn, clock, filter.subs));
        }
        ranked.clear();
        self.monitor.ranked = ranked;
    }

    /// The default `/connz` (every open connection, by client id) from the kept `by_cid`
    /// list, rebuilt only when a connection came or went: a poll copies out its page and walks
    /// nothing else. False (and the list dropped) if an entry of the page is not the open
    /// connection it names, which the membership count rules out; the caller then walks.
    fn fill_open_by_cid(
        &mut self,
        filter: &ConnFilter,
        clock: &Clock,
        report: &mut ShardReport,
    ) -> bool {
        let members = (self.monitor.total_connections, self.monitor.closes);
        if self.monitor.by_cid_at != Some(members) {
            let by_cid = &mut self.monitor.by_cid;
            by_cid.clear();
            let open = self.conns.iter().filter(|(_, c)| c.is_open());
            by_cid.extend(open.map(|(slot, c)| (c.cid, slot as u32)));
            by_cid.sort_unstable();
            self.monitor.by_cid_at = Some(members);
        }
        let page = &self.monitor.by_cid[..filter.keep.min(self.monitor.by_cid.len())];
        let named = |&(cid, slot): &(u64, u32)| {
            self.conns
                .get(slot as usize)
                .is_some_and(|c| c.cid == cid && c.is_open())
        };
        let page_is_open = page.iter().all(named);
        debug_assert!(
            page_is_open,
            "/connz: the kept list names a closed connection"
        );
        if !page_is_open {
            self.monitor.by_cid_at = None;
            return false;
        }
        report.conns_matched = self.monitor.by_cid.len();
        report.conns.reserve(page.len());
        for &(_, slot) in page {
            let conn = &self.conns[slot as usize];
            report.conns.push(self.conn_info(conn, clock, filter.subs));
        }
        true
    }

    fn fill_subs(&self, filter: &SubFilter, report: &mut ShardReport) {
        let account_id = match &filter.account {
            Some(name) => match self.snapshot.auth.account_id(name) {
                Some(id) => Some(id),
                None => return,
            },
            None => None,
        };
        let accounts = self.snapshot.auth.accounts();
        for (_, sub) in self.subs.iter() {
            if account_id.is_some_and(|id| id != sub.account) {
                continue;
            }
            if let Some(test) = &filter.test {
                if !crate::subject::filter_matches(&sub.filter, test.as_bytes()) {
                    continue;
                }
            }
            report.subs_matched += 1;
            if !filter.detail {
                continue;
            }
            let cid = self.conns.get(sub.conn as usize).map_or(0, |c| c.cid);
            let account = accounts
                .get(sub.account as usize)
                .map_or_else(String::new, |a| a.name.clone());
            report.subs.push(SubInfo {
                account,
                subject: lossy(&sub.filter),
                queue: sub.queue.as_deref().map(lossy),
                sid: lossy(&sub.sid),
                msgs: sub.delivered,
                max: sub.max,
                cid,
            });
        }
    }

    /// The numbers of a connection (no strings, no subscriptions): enough to sort by.
    fn conn_info_numbers(&self, conn: &Conn, clock: &Clock) -> ConnInfo {
        ConnInfo {
            cid: conn.cid,
            peer: conn.peer,
            start: clock.wall_of(conn.created),
            last_activity: clock.wall_of(conn.last_activity),
            stop: None,
            reason: None,
            rtt: conn.rtt.unwrap_or_default(),
            pending_bytes: conn.out.pending_bytes(),
            in_msgs: conn.stats.in_msgs,
            out_msgs: conn.stats.out_msgs,
            in_bytes: conn.stats.in_bytes,
            out_bytes: conn.stats.out_bytes,
            subs_count: u32::try_from(conn.subs.len()).unwrap_or(u32::MAX),
            name: String::new(),
            lang: String::new(),
            version: String::new(),
            user: String::new(),
            account: String::new(),
            tls_version: None,
            subs: Vec::new(),
        }
    }

    /// Everything `/connz` shows of an open connection.
    fn conn_info(&self, conn: &Conn, clock: &Clock, subs: SubsWanted) -> ConnInfo {
        let mut info = self.conn_info_numbers(conn, clock);
        info.name.clone_from(&conn.name);
        info.lang.clone_from(&conn.lang);
        info.version.clone_from(&conn.version);
        info.user.clone_from(&conn.user);
        let accounts = self.snapshot.auth.accounts();
        if let Some(account) = accounts.get(conn.account as usize) {
            info.account.clone_from(&account.name);
        }
        info.tls_version = conn
            .tls
            .as_ref()
            .filter(|t| !t.is_handshaking())
            .and_then(|t| t.protocol_version());
        let subs_of_conn = conn
            .subs
            .values()
            .filter_map(|key| self.subs.get(key.0 as usize));
        info.subs = match subs {
            SubsWanted::None => Vec::new(),
            // `subs=1` lists subjects alone: nothing else is copied.
            SubsWanted::Subjects => subs_of_conn
                .map(|sub| SubInfo {
                    account: String::new(),
                    subject: lossy(&sub.filter),
                    queue: None,
                    sid: String::new(),
                    msgs: sub.delivered,
                    max: sub.max,
                    cid: conn.cid,
                })
                .collect(),
            SubsWanted::Detail => subs_of_conn
                .map(|sub| SubInfo {
                    account: info.account.clone(),
                    subject: lossy(&sub.filter),
                    queue: sub.queue.as_deref().map(lossy),
                    sid: lossy(&sub.sid),
                    msgs: sub.delivered,
                    max: sub.max,
                    cid: conn.cid,
                })
                .collect(),
        };
        info
    }
}

/// Where an open connection goes under `sort`: ascending `rank`, ties by client id, lists
/// them in the order `SortKey::compare` does (descending keys are turned around; times are
/// ages from `now`, so a later time is a smaller age). Open connections have no `stop` or
/// `reason`: under those keys they all tie.
fn rank(sort: SortKey, conn: &Conn, now: Instant) -> u64 {
    let down = |n: u64| u64::MAX - n;
    let age =
        |t: Instant| u64::try_from(now.saturating_duration_since(t).as_nanos()).unwrap_or(u64::MAX);
    match sort {
        SortKey::Cid | SortKey::Stop | SortKey::Reason => 0,
        SortKey::Subs => down(conn.subs.len() as u64),
        SortKey::Pending => down(conn.out.pending_bytes() as u64),
        SortKey::OutMsgs => down(conn.stats.out_msgs),
        SortKey::InMsgs => down(conn.stats.in_msgs),
        SortKey::OutBytes => down(conn.stats.out_bytes),
        SortKey::InBytes => down(conn.stats.in_bytes),
        // Most recent activity first: the smallest age.
        SortKey::Last => age(conn.last_activity),
        // Longest idle first: the largest age.
        SortKey::Idle => down(age(conn.last_activity)),
        // nats-server `byUptime`: the youngest connection first.
        SortKey::Uptime => age(conn.created),
    }
}

/// The wall clock and the monotonic clock read together, to turn a connection's `Instant`s
/// into the times `/connz` prints.
struct Clock {
    wall: SystemTime,
    now: Instant,
}

impl Clock {
    fn now() -> Clock {
        Clock {
            wall: SystemTime::now(),
            now: Instant::now(),
        }
    }

    fn wall_of(&self, t: Instant) -> SystemTime {
        self.wall - self.now.saturating_duration_since(t)
    }
}

fn grow<T: Default + Clone>(list: &mut Vec<T>, index: usize) {
    if list.len() <= index {
        list.resize(index + 1, T::default());
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
