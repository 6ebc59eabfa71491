//! `ServerOptions`: the options ringnats reads from a parsed config, with nats-server's defaults
//! and key names.
//!
//! Cold: config load only. Invariants: every top-level key is either applied, kept raw for
//! `auth/` (`SECURITY_KEYS`), ignored with a warning (`IGNORED_KEYS`, nats-server subsystems
//! ringnats does not have), skipped because it is a used variable, or refused as
//! `unknown field`, as nats-server 2.9.10 `processConfigFileLine` does. Values are range-checked
//! here, so code that receives a `ServerOptions` does not check again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::ConfigError;
use crate::config::parser::parse_file;
use crate::config::parser::parse_str;
use crate::config::value::{Entry, Map, Pos, Value, ValueKind};

/// nats-server `DEFAULT_HOST`.
pub const DEFAULT_HOST: &str = "0.0.0.0";
/// nats-server `DEFAULT_PORT`.
pub const DEFAULT_PORT: i32 = 4222;
/// `port: -1` asks for a random port (nats-server `RANDOM_PORT`).
pub const RANDOM_PORT: i32 = -1;
/// nats-server `MAX_PAYLOAD_SIZE`.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// nats-server `MAX_PENDING_SIZE`.
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;
/// nats-server `MAX_CONTROL_LINE_SIZE`.
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
/// nats-server `DEFAULT_MAX_CONNECTIONS`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64 * 1024;
/// nats-server `DEFAULT_PING_INTERVAL`.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(120);
/// nats-server `DEFAULT_PING_MAX_OUT`.
pub const DEFAULT_PING_MAX: u32 = 2;
/// nats-server `DEFAULT_FLUSH_DEADLINE`.
pub const DEFAULT_WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// nats-server `DEFAULT_LAME_DUCK_DURATION`: lame-duck mode spreads client closes over this.
pub const DEFAULT_LAME_DUCK_DURATION: Duration = Duration::from_secs(120);
/// nats-server `DEFAULT_LAME_DUCK_GRACE_PERIOD`: lame-duck mode waits this long before the
/// first close.
pub const DEFAULT_LAME_DUCK_GRACE_PERIOD: Duration = Duration::from_secs(10);
/// nats-server refuses a shorter `lame_duck_duration`.
const LAME_DUCK_DURATION_MIN: Duration = Duration::from_secs(30);
/// Above this nats-server warns about `max_payload` (`MAX_PAYLOAD_MAX_SIZE`).
pub const MAX_PAYLOAD_WARN_BYTES: usize = 8 * 1024 * 1024;
/// nats-server stores `max_payload` and `max_control_line` as int32.
const INT32_MAX: usize = i32::MAX as usize;

/// Security keys `auth/` implements, kept raw in `ServerOptions::auth_sections` (lower case);
/// the operator-mode ones are in `UNSUPPORTED_SECURITY_KEYS` (see `is_security_key`).
pub const SECURITY_KEYS: &[&str] = &[
    "authorization",
    "accounts",
    "no_auth_user",
    "system_account",
    "system",
    "tls",
    "operator",
    "operators",
    "root_operators",
    "trusted_operators",
    "trusted",
    "trusted_keys",
    "resolver",
    "resolver_preload",
];

/// nats-server 2.9.10 keys for subsystems ringnats does not have: accepted, warned, ignored.
pub const IGNORED_KEYS: &[&str] = &[
    "client_advertise",
    "mappings",
    "maps",
    "disable_sublist_cache",
    "no_sublist_cache",
    "cluster",
    "gateway",
    "leaf",
    "leafnodes",
    "store_dir",
    "storedir",
    "jetstream",
    "syslog",
    "remote_syslog",
    "ports_file_dir",
    "prof_port",
    "max_traced_msg_len",
    "max_sub_tokens",
    "max_subscription_tokens",
    "no_system_account",
    "no_system",
    "no_sys_acc",
    "no_header_support",
    "websocket",
    "ws",
    "mqtt",
    "server_tags",
    "default_js_domain",
    "ocsp",
    "allow_non_tls",
    "connect_error_reports",
    "reconnect_error_reports",
    "logfile_size_limit",
    "log_size_limit",
];

/// Default `--busy_poll`: long enough to catch the next request of a client in a request/reply
/// loop on loopback (20-40 µs), short enough to cost little on a quiet server.
pub const BUSY_POLL_DEFAULT: std::time::Duration = std::time::Duration::from_micros(50);

/// Server options, keyed and defaulted as nats-server 2.9.10.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerOptions {
    /// The config file these options were loaded from, if any.
    pub config_file: Option<PathBuf>,
    /// `host`, `net` or the host part of `listen`.
    pub host: String,
    /// `port` or the port part of `listen`: -1 = random; a 0 becomes 4222 as in nats-server
    /// (`setBaselineOptions`). Always in -1..=65535.
    pub port: i32,
    pub server_name: Option<String>,
    pub max_payload: usize,
    pub max_pending: usize,
    pub max_control_line: usize,
    /// `max_connections` / `max_conn`.
    pub max_connections: usize,
    /// `max_subscriptions` / `max_subs`, per connection; 0 = unlimited.
    pub max_subscriptions: usize,
    pub ping_interval: Duration,
    pub ping_max: u32,
    pub write_deadline: Duration,
    pub debug: bool,
    pub trace: bool,
    /// `trace_verbose` or `-VV` (also trace the system account).
    pub trace_verbose: bool,
    pub logtime: bool,
    /// `logfile` / `log_file` / `-l`.
    pub logfile: Option<PathBuf>,
    /// `pid_file` / `pidfile` / `-P`: where to write the process id once listening.
    pub pid_file: Option<PathBuf>,
    /// `lame_duck_duration`: SIGUSR2 closes clients spread over this (minus the grace period).
    pub lame_duck_duration: Duration,
    /// `lame_duck_grace_period`: SIGUSR2 waits this long before closing the first client.
    pub lame_duck_grace_period: Duration,
    /// `--shards` (command line only); `None` = one per core.
    pub shards: Option<usize>,
    /// Monitoring: `http` / `https` host part, else `host` (nats-server `HTTPHost`).
    pub http_host: Option<String>,
    /// `http_port` / `monitor_port` / `http` / `-m`: 0 = off, -1 = random.
    pub http_port: i32,
    /// `https_port` / `https` / `-ms`: monitoring over the server's TLS settings.
    pub https_port: i32,
    /// `http_base_path`: prefix of every monitoring path.
    pub http_base_path: String,
    /// `--busy_poll` (command line only): how long a shard spins for more work after a turn
    /// that moved only a few bytes, before it sleeps. 0 turns spinning off.
    pub busy_poll: std::time::Duration,
    /// Security sections (lower-case key, raw value) for `auth/` to interpret.
    pub auth_sections: Vec<(String, Value)>,
    /// Non-fatal findings to log at start-up.
    pub warnings: Vec<String>,
    /// `--user`, `--pass`, `--auth`, `--auth_timeout` (override `authorization`).
    pub cli_auth: crate::auth::CliAuth,
    /// `--tls*` flags (override the `tls` block).
    pub cli_tls: Option<crate::tls::CliTls>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            config_file: None,
            host: DEFAULT_HOST.to_string(),
            port: DEFAULT_PORT,
            server_name: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            max_pending: DEFAULT_MAX_PENDING,
            max_control_line: DEFAULT_MAX_CONTROL_LINE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_subscriptions: 0,
            ping_interval: DEFAULT_PING_INTERVAL,
            ping_max: DEFAULT_PING_MAX,
            write_deadline: DEFAULT_WRITE_DEADLINE,
            debug: false,
            trace: false,
            trace_verbose: false,
            logtime: true,
            logfile: None,
            pid_file: None,
            lame_duck_duration: DEFAULT_LAME_DUCK_DURATION,
            lame_duck_grace_period: DEFAULT_LAME_DUCK_GRACE_PERIOD,
            shards: None,
            http_host: None,
            http_port: 0,
            https_port: 0,
            http_base_path: String::new(),
            busy_poll: BUSY_POLL_DEFAULT,
            auth_sections: Vec::new(),
            warnings: Vec::new(),
            cli_auth: Default::default(),
            cli_tls: None,
        }
    }
}

impl ServerOptions {
    /// The port to bind: 0 (kernel picks) for `-1`.
    pub fn listen_port(&self) -> u16 {
        u16::try_from(self.port).unwrap_or(0)
    }

    /// The raw value of a security section, if the config has it (lower-case key).
    pub fn auth_section(&self, key: &str) -> Option<&Value> {
        self.auth_sections
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// nats-server `setBaselineOptions`: port 0 means the default port, empty host the
    /// default host.
    pub(crate) fn apply_baseline(&mut self) {
        if self.port == 0 {
            self.port = DEFAULT_PORT;
        }
        if self.host.is_empty() {
            self.host = DEFAULT_HOST.to_string();
        }
    }
}

/// Loads a config file. Fails on the security sections this build cannot enforce.
pub fn load_file(path: &Path) -> Result<ServerOptions, ConfigError> {
    let map = parse_file(path)?;
    let opts = options_from_map(&map, path)?;
    check_supported(&opts)?;
    Ok(opts)
}

/// Loads config text; `origin` names it in errors and anchors relative includes.
pub fn load_str(text: &str, origin: &Path) -> Result<ServerOptions, ConfigError> {
    let map = parse_str(text, origin)?;
    let opts = options_from_map(&map, origin)?;
    check_supported(&opts)?;
    Ok(opts)
}

/// Security keys this build does not implement yet: refused, so a file that asks for them
/// never runs open. (`resolver: { type: full }` is refused by `auth::operator`.)
pub const UNSUPPORTED_SECURITY_KEYS: &[&str] =
    &["account_resolver", "accounts_resolver", "resolver_tls"];

/// Whether `key` (lower case) belongs to authentication: kept raw for `auth/`, or refused.
pub fn is_security_key(key: &str) -> bool {
    SECURITY_KEYS.contains(&key) || UNSUPPORTED_SECURITY_KEYS.contains(&key)
}

/// Refuses options this build cannot enforce (`UNSUPPORTED_SECURITY_KEYS`).
pub fn check_supported(opts: &ServerOptions) -> Result<(), ConfigError> {
    let unsupported = opts
        .auth_sections
        .iter()
        .find(|(key, _)| UNSUPPORTED_SECURITY_KEYS.contains(&key.as_str()));
    match unsupported {
        Some((key, value)) => Err(ConfigError::NotSupported {
            pos: value.pos.clone(),
            key: key.clone(),
        }),
        None => Ok(()),
    }
}

/// Builds options from a parsed top-level map (no `check_supported`).
pub fn options_from_map(map: &Map, config_file: &Path) -> Result<ServerOptions, ConfigError> {
    let mut opts = ServerOptions {
        config_file: Some(config_file.to_path_buf()),
        ..ServerOptions::default()
    };
    let mut limits = LimitPositions::default();
    for entry in map {
        apply_entry(&mut opts, &mut limits, entry)?;
    }
    opts.apply_baseline();
    check_limits(&mut opts, &limits)?;
    Ok(opts)
}

/// Where `max_payload` / `max_pending` were set, for the cross-check error.
#[derive(Default)]
struct LimitPositions {
    max_payload: Option<Pos>,
    max_pending: Option<Pos>,
}

fn apply_entry(
    opts: &mut ServerOptions,
    limits: &mut LimitPositions,
    entry: &Entry,
) -> Result<(), ConfigError> {
    let key = entry.key_lower();
    let value = &entry.value;
    let name = entry.key.as_str();
    match key.as_str() {
        "listen" => apply_listen(opts, entry)?,
        "port" => opts.port = port_number(entry, value.expect_int(name)?)?,
        "host" | "net" => opts.host = value.expect_str(name)?.to_string(),
        "server_name" => opts.server_name = Some(server_name(entry)?),
        "max_payload" => {
            opts.max_payload = int32_size(entry)?;
            limits.max_payload = Some(entry.pos.clone());
        }
        "max_pending" => {
            opts.max_pending = value.expect_usize(name)?;
            limits.max_pending = Some(entry.pos.clone());
        }
        "max_control_line" => opts.max_control_line = int32_size(entry)?,
        "max_connections" | "max_conn" => opts.max_connections = value.expect_usize(name)?,
        "max_subscriptions" | "max_subs" => opts.max_subscriptions = value.expect_usize(name)?,
        "ping_interval" => opts.ping_interval = duration_or_seconds(opts, entry)?,
        "ping_max" => opts.ping_max = ping_max(entry)?,
        "write_deadline" => opts.write_deadline = duration_or_seconds(opts, entry)?,
        "debug" => opts.debug = value.expect_bool(name)?,
        "trace" => opts.trace = value.expect_bool(name)?,
        "trace_verbose" => {
            opts.trace_verbose = value.expect_bool(name)?;
            opts.trace = opts.trace_verbose;
        }
        "http_port" | "monitor_port" => {
            opts.http_port = port_number(entry, value.expect_int(name)?)?
        }
        "https_port" => opts.https_port = port_number(entry, value.expect_int(name)?)?,
        "http" => apply_monitor_listen(entry, &mut opts.http_host, &mut opts.http_port)?,
        "https" => apply_monitor_listen(entry, &mut opts.http_host, &mut opts.https_port)?,
        "http_base_path" => opts.http_base_path = value.expect_str(name)?.to_string(),
        "logtime" => opts.logtime = value.expect_bool(name)?,
        "logfile" | "log_file" => opts.logfile = Some(PathBuf::from(value.expect_str(name)?)),
        "pidfile" | "pid_file" => opts.pid_file = Some(PathBuf::from(value.expect_str(name)?)),
        "lame_duck_duration" => opts.lame_duck_duration = lame_duck_duration(entry)?,
        "lame_duck_grace_period" => {
            opts.lame_duck_grace_period = entry.value.expect_duration(name)?;
        }
        k if is_security_key(k) => opts.auth_sections.push((key.clone(), value.clone())),
        k if IGNORED_KEYS.contains(&k) => opts.warnings.push(format!(
            "{}: \"{name}\" is not supported by ringnats and is ignored",
            entry.pos
        )),
        _ if entry.is_used_variable() => {}
        _ => {
            return Err(ConfigError::UnknownField {
                pos: entry.pos.clone(),
                key: name.into(),
            });
        }
    }
    Ok(())
}

/// `listen: 4222`, `listen: "host:port"`, `listen: "[::1]:4222"`, `listen: ":4222"`.
fn apply_listen(opts: &mut ServerOptions, entry: &Entry) -> Result<(), ConfigError> {
    let value = &entry.value;
    match &value.kind {
        ValueKind::Integer(port) => opts.port = port_number(entry, *port)?,
        ValueKind::String(text) => {
            let bad = || entry.error(format!("could not parse address string \"{text}\""));
            let (host, port) = split_host_port(text).ok_or_else(bad)?;
            let port: i64 = port.parse().map_err(|_| bad())?;
            opts.port = port_number(entry, port)?;
            opts.host = host.to_string();
        }
        _ => return Err(value.error(&entry.key, "expected a port or \"host:port\"")),
    }
    Ok(())
}

/// `http: 8222` or `http: "host:port"` (and `https`), as nats-server's `parseListen`.
fn apply_monitor_listen(
    entry: &Entry,
    host: &mut Option<String>,
    port: &mut i32,
) -> Result<(), ConfigError> {
    let value = &entry.value;
    match &value.kind {
        ValueKind::Integer(p) => *port = port_number(entry, *p)?,
        ValueKind::String(text) => {
            let bad = || entry.error(format!("could not parse address string \"{text}\""));
            let (h, p) = split_host_port(text).ok_or_else(bad)?;
            let p: i64 = p.parse().map_err(|_| bad())?;
            *port = port_number(entry, p)?;
            *host = Some(h.to_string());
        }
        _ => return Err(value.error(&entry.key, "expected a port or \"host:port\"")),
    }
    Ok(())
}

/// Go `net.SplitHostPort`, for the forms a listen address takes.
fn split_host_port(text: &str) -> Option<(&str, &str)> {
    if let Some(bracketed) = text.strip_prefix('[') {
        let (host, rest) = bracketed.split_once(']')?;
        return Some((host, rest.strip_prefix(':')?));
    }
    let (host, port) = text.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

fn port_number(entry: &Entry, port: i64) -> Result<i32, ConfigError> {
    match i32::try_from(port) {
        Ok(p) if (RANDOM_PORT..=65535).contains(&p) => Ok(p),
        _ => Err(entry.error(format!(
            "invalid port {port}: must be -1 (random) or 0-65535"
        ))),
    }
}

fn server_name(entry: &Entry) -> Result<String, ConfigError> {
    let name = entry.value.expect_str(&entry.key)?;
    // nats-server `validateOptions`.
    if name.contains(' ') {
        return Err(entry.error("server name cannot contain spaces"));
    }
    Ok(name.to_string())
}

/// `lame_duck_duration`: a duration of at least 30 s (nats-server `processConfigFileLine`).
fn lame_duck_duration(entry: &Entry) -> Result<Duration, ConfigError> {
    let duration = entry.value.expect_duration(&entry.key)?;
    if duration < LAME_DUCK_DURATION_MIN {
        return Err(entry.error(format!(
            "invalid lame_duck_duration of {duration:?}, minimum is 30 seconds"
        )));
    }
    Ok(duration)
}

/// `max_payload` / `max_control_line`: a non-negative size that fits nats-server's int32.
fn int32_size(entry: &Entry) -> Result<usize, ConfigError> {
    let size = entry.value.expect_usize(&entry.key)?;
    if size > INT32_MAX {
        return Err(entry.error(format!("{} value is too big", entry.key_lower())));
    }
    Ok(size)
}

fn ping_max(entry: &Entry) -> Result<u32, ConfigError> {
    let n = entry.value.expect_int(&entry.key)?;
    u32::try_from(n).map_err(|_| entry.error(format!("{n} is out of range (0-{})", u32::MAX)))
}

/// nats-server `parseDuration`: a duration string, or (old style, with a warning) an integer
/// number of seconds.
fn duration_or_seconds(opts: &mut ServerOptions, entry: &Entry) -> Result<Duration, ConfigError> {
    let value = &entry.value;
    let ValueKind::Integer(secs) = value.kind else {
        return value.expect_duration(&entry.key);
    };
    let secs = u64::try_from(secs).map_err(|_| entry.error("must not be negative"))?;
    let key = entry.key_lower();
    opts.warnings.push(format!(
        "{}: invalid use of field \"{key}\": {key} should be converted to a duration",
        entry.pos
    ));
    Ok(Duration::from_secs(secs))
}

fn check_limits(opts: &mut ServerOptions, limits: &LimitPositions) -> Result<(), ConfigError> {
    // nats-server `validateOptions`.
    if opts.lame_duck_grace_period >= opts.lame_duck_duration {
        return Err(ConfigError::Flag {
            flag: "lame_duck_grace_period",
            msg: format!(
                "lame duck grace period ({:?}) should be strictly lower than lame duck \
                 duration ({:?})",
                opts.lame_duck_grace_period, opts.lame_duck_duration
            ),
        });
    }
    if opts.max_payload > opts.max_pending {
        let pos = limits
            .max_payload
            .clone()
            .or_else(|| limits.max_pending.clone());
        let msg = format!(
            "max_payload ({}) cannot be higher than max_pending ({})",
            opts.max_payload, opts.max_pending
        );
        return Err(match pos {
            Some(pos) => ConfigError::Invalid {
                pos,
                key: "max_payload".into(),
                msg,
            },
            None => ConfigError::Flag {
                flag: "max_payload",
                msg,
            },
        });
    }
    if opts.max_payload > MAX_PAYLOAD_WARN_BYTES {
        opts.warnings.push(
            "Maximum payloads over 8.00 MB are generally discouraged and could lead to poor \
             performance"
                .to_string(),
        );
    }
    Ok(())
}
