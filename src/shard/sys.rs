//! The shard's part of the system account: client connect, disconnect and authentication-error
//! advisories published into the system account, `$SYS.REQ.…` requests handed to the
//! monitoring thread, and the replies and events it hands back to be published.
//!
//! Cold: per connection event and per `$SYS` request. An advisory is built only when someone
//! in the system account subscribes (on any shard), so a connection storm with nobody
//! listening pays one interest check per connection. On the publish path the only cost is one
//! byte compare (`$`) per PUB.
//! Invariant: advisories and replies enter the broker through `route`, like any publish, so
//! they reach subscribers on every shard and only in the account they are published in.

use std::time::SystemTime;

use crate::conn::CloseReason;
use crate::monitor::endpoints::DataStats;
use crate::monitor::events::{
    CONNECT_TYPE, ClientBlock, ConnectEvent, DISCONNECT_TYPE, DisconnectEvent, event_id, nanos,
    server_block,
};
use crate::monitor::gotime::rfc3339_nano;
use crate::monitor::sys::{SysPublish, SysWork};
use crate::shard::Shard;
use crate::shard::forward::Published;

/// Requests nats-server answers in every account (its `$SYS` service imports), scoped to the
/// requester's account; everything else under `$SYS.REQ.` is answered in the system account
/// only.
const ACCOUNT_SCOPED_REQUESTS: &[&[u8]] = &[
    b"$SYS.REQ.ACCOUNT.PING.CONNZ",
    b"$SYS.REQ.SERVER.PING.CONNZ",
    b"$SYS.REQ.ACCOUNT.PING.STATZ",
    b"$SYS.REQ.USER.INFO",
];

impl Shard {
    /// A PUB whose subject starts with `$`: hands a `$SYS.REQ.` request (or a system-account
    /// claims update, which needs no reply subject) to the monitoring thread, which answers
    /// on `reply` in the requester's account. Returns whether the resolver serves it (then
    /// the publisher gets no "no responders", as nats-server's resolver subscribes there).
    // Cold and never inlined: inlined into `on_pub`, it made every PUB spill registers to a
    // larger stack frame (callgrind, pub16; see perf/results/20261207-monitoring-bar).
    #[cold]
    #[inline(never)]
    pub(super) fn sys_request(&mut self, slot: u32, account: u32, msg: &Published<'_>) -> bool {
        let system = account == self.snapshot.auth.system_account();
        let claims = system
            && self
                .snapshot
                .auth
                .operator()
                .and_then(|o| o.resolver().claims_request(msg.subject))
                .is_some();
        if !claims && (!msg.subject.starts_with(b"$SYS.REQ.") || msg.reply.is_empty()) {
            return false;
        }
        if !system && !ACCOUNT_SCOPED_REQUESTS.contains(&msg.subject) {
            return false;
        }
        let conn = &self.conns[slot as usize];
        let work = SysWork::Request {
            shard: self.id,
            account,
            system,
            user: conn.user.clone(),
            subject: String::from_utf8_lossy(msg.subject).into_owned(),
            reply: msg.reply.to_vec(),
            payload: msg.payload.to_vec(),
        };
        self.shared.monitor.sys_work(work);
        claims
    }

    /// Publishes what the monitoring thread handed back (a reply or an event).
    pub(super) fn sys_publish(&mut self, publish: &SysPublish) {
        let msg = Published {
            subject: &publish.subject,
            reply: b"",
            headers: b"",
            payload: &publish.payload,
        };
        self.route(publish.account, &msg, None);
    }

    /// Whether anyone in the system account subscribes, on this shard or another.
    fn sys_listening(&self) -> bool {
        let system = self.snapshot.auth.system_account() as usize;
        self.accounts
            .get(system)
            .is_some_and(|a| !a.local.is_empty() || !a.remote.is_empty())
    }

    /// `$SYS.ACCOUNT.<acc>.CONNECT` for a client that just authenticated, and the account's
    /// connection count.
    pub(super) fn sys_connect_event(&mut self, slot: u32) {
        if !self.sys_listening() {
            return;
        }
        let client = self.client_block(slot, None);
        let subject = format!("$SYS.ACCOUNT.{}.CONNECT", client.acc);
        let event = ConnectEvent {
            kind: CONNECT_TYPE,
            id: event_id(),
            timestamp: rfc3339_nano(SystemTime::now()),
            server: server_block(&self.shared),
            client,
        };
        self.publish_system(subject, &event);
        let account = self.conns[slot as usize].account;
        self.shared.monitor.sys_work(SysWork::AccountConns {
            shard: self.id,
            account,
        });
    }

    /// `$SYS.ACCOUNT.<acc>.DISCONNECT` for an authenticated client that is going away.
    pub(super) fn sys_disconnect_event(&mut self, slot: u32, reason: CloseReason) {
        if !self.conns[slot as usize].connected || !self.sys_listening() {
            return;
        }
        let client = self.client_block(slot, Some(SystemTime::now()));
        let subject = format!("$SYS.ACCOUNT.{}.DISCONNECT", client.acc);
        let event = self.disconnect_event(slot, client, reason);
        self.publish_system(subject, &event);
        let account = self.conns[slot as usize].account;
        self.shared.monitor.sys_work(SysWork::AccountConns {
            shard: self.id,
            account,
        });
    }

    /// `$SYS.SERVER.<id>.CLIENT.AUTH.ERR` for a refused CONNECT.
    pub(super) fn sys_auth_error_event(&mut self, slot: u32) {
        if !self.sys_listening() {
            return;
        }
        let mut client = self.client_block(slot, Some(SystemTime::now()));
        client.acc = String::new();
        let subject = format!("$SYS.SERVER.{}.CLIENT.AUTH.ERR", self.shared.server_id);
        let event = self.disconnect_event(slot, client, CloseReason::AuthenticationViolation);
        self.publish_system(subject, &event);
    }

    fn disconnect_event(
        &self,
        slot: u32,
        client: ClientBlock,
        reason: CloseReason,
    ) -> DisconnectEvent {
        let stats = self.conns[slot as usize].stats;
        DisconnectEvent {
            kind: DISCONNECT_TYPE,
            id: event_id(),
            timestamp: rfc3339_nano(SystemTime::now()),
            server: server_block(&self.shared),
            client,
            sent: DataStats {
                msgs: stats.in_msgs,
                bytes: stats.in_bytes,
            },
            received: DataStats {
                msgs: stats.out_msgs,
                bytes: stats.out_bytes,
            },
            reason: reason.describe().to_string(),
        }
    }

    /// nats-server `ClientInfo` of one connection.
    fn client_block(&self, slot: u32, stop: Option<SystemTime>) -> ClientBlock {
        let conn = &self.conns[slot as usize];
        let wall_now = SystemTime::now();
        let start = wall_now - std::time::Instant::now().saturating_duration_since(conn.created);
        let acc = self
            .snapshot
            .auth
            .accounts()
            .get(conn.account as usize)
            .map_or_else(String::new, |a| a.name.clone());
        ClientBlock {
            start: Some(rfc3339_nano(start)),
            host: conn.peer.ip().to_string(),
            id: conn.cid,
            acc,
            user: conn.user.clone(),
            name: conn.name.clone(),
            lang: conn.lang.clone(),
            ver: conn.version.clone(),
            // nats-server sets `rtt` in the disconnect and auth-error events (those with a
            // `stop`), not in the connect event.
            rtt: stop.and(conn.rtt).map_or(0, nanos),
            stop: stop.map(rfc3339_nano),
            kind: "Client".into(),
            client_type: "nats".into(),
        }
    }

    fn publish_system<T: serde::Serialize>(&mut self, subject: String, event: &T) {
        let Ok(payload) = serde_json::to_vec(event) else {
            return;
        };
        let publish = SysPublish {
            account: self.snapshot.auth.system_account(),
            subject: subject.into_bytes(),
            payload,
        };
        self.sys_publish(&publish);
    }
}
