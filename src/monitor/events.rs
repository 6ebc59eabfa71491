//! The system account's messages as nats-server 2.9.10 shapes them (`events.go`): the server
//! block every event and reply carries, client connect and disconnect advisories, account
//! connection counts, server stats, and the `{"server":…,"data":…}` reply envelope.
//!
//! Cold: built per connection event (only when someone in the system account listens) or per
//! `$SYS` request.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::monitor::endpoints::{AccountStat, DataStats, GoFloat};
use crate::monitor::gotime::rfc3339_nano;
use crate::shared::{COMPAT_VERSION, Shared};

pub const CONNECT_TYPE: &str = "io.nats.server.advisory.v1.client_connect";
pub const DISCONNECT_TYPE: &str = "io.nats.server.advisory.v1.client_disconnect";
pub const ACCOUNT_CONNS_TYPE: &str = "io.nats.server.advisory.v1.account_connections";

/// nats-server `ServerInfo` (the `server` block).
#[derive(Serialize, Clone)]
pub struct ServerBlock {
    pub name: String,
    pub host: String,
    pub id: String,
    pub ver: &'static str,
    pub seq: u64,
    pub jetstream: bool,
    pub time: String,
}

/// The server block with the next event sequence number.
pub fn server_block(shared: &Shared) -> ServerBlock {
    let opts = shared.options();
    ServerBlock {
        name: opts
            .server_name
            .clone()
            .unwrap_or_else(|| shared.server_id.clone()),
        host: opts.host.clone(),
        id: shared.server_id.clone(),
        ver: COMPAT_VERSION,
        seq: shared.monitor.event_seq.fetch_add(1, Ordering::Relaxed) + 1,
        jetstream: false,
        time: rfc3339_nano(SystemTime::now()),
    }
}

/// nats-server `ClientInfo`.
#[derive(Serialize, Clone, Default)]
pub struct ClientBlock {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub id: u64,
    pub acc: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub lang: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ver: String,
    /// Nanoseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub rtt: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub client_type: String,
}

#[derive(Serialize)]
pub struct ConnectEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub server: ServerBlock,
    pub client: ClientBlock,
}

#[derive(Serialize)]
pub struct DisconnectEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub server: ServerBlock,
    pub client: ClientBlock,
    /// What the client sent (its messages in).
    pub sent: DataStats,
    /// What the client received.
    pub received: DataStats,
    pub reason: String,
}

/// nats-server `AccountNumConns`.
#[derive(Serialize)]
pub struct AccountConnsEvent {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
    pub timestamp: String,
    pub server: ServerBlock,
    #[serde(flatten)]
    pub stat: AccountStat,
}

/// nats-server `ServerStats`.
#[derive(Serialize)]
pub struct Statsz {
    pub start: String,
    pub mem: u64,
    pub cores: usize,
    pub cpu: GoFloat,
    pub connections: u64,
    pub total_connections: u64,
    pub active_accounts: usize,
    pub subscriptions: u64,
    pub sent: DataStats,
    pub received: DataStats,
    pub slow_consumers: u64,
    pub active_servers: u32,
}

/// `{"server":…,"statsz":…}`: the answer to `$SYS.REQ.SERVER.PING` and the periodic event.
#[derive(Serialize)]
pub struct StatszMsg {
    pub server: ServerBlock,
    pub statsz: Statsz,
}

/// nats-server `ServerAPIResponse`.
#[derive(Serialize)]
pub struct ApiResponse<T: Serialize> {
    pub server: ServerBlock,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<T>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

#[derive(Serialize)]
pub struct ApiError {
    pub code: u16,
    pub description: String,
}

/// A nuid-like event id: 22 base-62 characters.
pub fn event_id() -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..22)
        .map(|_| char::from(DIGITS[rand::random::<usize>() % DIGITS.len()]))
        .collect()
}

/// Nanoseconds, saturating.
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
