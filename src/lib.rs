//! ringnats: a NATS-protocol message broker for Linux on io_uring, one pinned shard per core.
//!
//! The design, its numbered invariants and the path of one PUB are in `docs/ARCHITECTURE.md`
//! ("invariant 5" in a comment refers to that list). The map:
//! - [`config`] and [`cli`] turn a nats-server configuration file and nats-server's flags into
//!   [`config::ServerOptions`] (cold).
//! - [`protocol`] turns client bytes into ops and ops into bytes, with no sockets and no clock
//!   (hot).
//! - [`subject`] validates subjects and finds the subscriptions a published subject reaches:
//!   a token trie per account with `*` and `>` nodes and a bounded match cache (hot).
//! - [`shard`] is one thread per core (hot). [`shard::Shard`] is its logic without I/O: its
//!   connections and subscriptions, routing, delivery, forwarding, stalls and the interest
//!   barrier; it takes events (bytes read, a send completed, a turn at `now`) and returns
//!   [`shard::Action`]s. [`shard::Driver`] runs it on io_uring (`shard/driver.rs` and
//!   `shard/reactor.rs` hold the shard's only `unsafe`); `tests/sim.rs` runs it in a
//!   simulator. The mesh of SPSC rings joins the shards.
//! - [`conn`] is one client connection's state and its batched output buffer.
//! - [`auth`] turns a CONNECT (token, user/password, nkey, certificate, a user JWT in operator
//!   mode) into a `ClientIdentity`; [`perms`] is the compiled permissions and their per-connection cache
//!   (hot); [`tls`] drives rustls over byte buffers inside the reactor; [`account`] routes
//!   service-import replies between accounts; [`blocking`] runs bcrypt off the shards (cold).
//! - [`shared`] is the state every shard and the control plane reach (`Shared`, the options
//!   `Snapshot`, `Limits`, lame-duck mode); [`ids`] holds the ids several modules name
//!   (`ShardId`, `SubKey`). Both are leaves below `shard`, `conn` and `monitor`.
//! - [`server`] starts the shards and is the control plane (signals, reload, shutdown);
//!   [`logging`] prints nats-server's log shape; [`monitor`] serves the HTTP endpoints and
//!   `$SYS` from a thread of its own.
//! - [`tools`] holds the `ringnats` subcommands.
//!
//! Dependencies point down: `server` → `shard` → `conn` → `protocol`, `subject`, `perms`;
//! `server`, `shard` and `monitor` → `shared`; and all of them → `ids`, which names nothing.
//! `conn` never names `shard`, and `shard` never names `server` (`docs/ARCHITECTURE.md`,
//! "Module layers", draws them and lists the cycles that remain).

pub mod account;
pub mod auth;
pub mod blocking;
pub mod cli;
pub mod config;
pub mod conn;
pub mod ids;
pub mod logging;
pub mod monitor;
pub mod perms;
pub mod protocol;
pub mod server;
pub mod shard;
pub mod shared;
pub mod signals;
pub mod subject;
pub mod tls;
pub mod tools;
