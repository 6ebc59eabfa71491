//! Command line: nats-server 2.9.10's server flags plus the `passwd`, `keygen` and `bench`
//! subcommands.
//!
//! Cold: parsed once at start-up. Invariant: flags override the config file and only when given
//! (an absent flag never resets a value the file set), as nats-server `ConfigureOptions` does.
//! Go's `flag` package also accepts single-dash long names (`-port 4222`); `normalize_args`
//! rewrites those to `--port` before clap sees them.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::config::model::RANDOM_PORT;
use crate::config::{ConfigError, ServerOptions, load_file};

/// ringnats: a NATS-protocol message broker.
#[derive(Debug, Parser)]
#[command(name = "ringnats", version, disable_version_flag = true)]
pub struct Cli {
    /// Configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Port to listen on for clients (-1 = random).
    #[arg(
        short = 'p',
        long = "port",
        allow_negative_numbers = true,
        value_name = "PORT"
    )]
    pub port: Option<i32>,

    /// Host address to bind to.
    #[arg(short = 'a', long = "addr", visible_alias = "net", value_name = "HOST")]
    pub addr: Option<String>,

    /// Server name.
    #[arg(
        short = 'n',
        long = "name",
        visible_alias = "server_name",
        value_name = "NAME"
    )]
    pub name: Option<String>,

    /// Enable debug output (`-DV` = debug and trace).
    #[arg(short = 'D', long = "debug", action = ArgAction::Count)]
    pub debug: u8,

    /// Enable protocol trace (`-VV` also traces the system account).
    #[arg(short = 'V', long = "trace", action = ArgAction::Count)]
    pub trace: u8,

    /// Log file.
    #[arg(
        short = 'l',
        long = "log",
        visible_alias = "log_file",
        value_name = "FILE"
    )]
    pub log: Option<PathBuf>,

    /// Timestamp log entries (`-T=false` / `--logtime=false` to disable).
    #[arg(
        short = 'T',
        long = "logtime",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub logtime: Option<bool>,

    /// HTTP port for monitoring (-1 = random).
    #[arg(
        short = 'm',
        long = "http_port",
        allow_negative_numbers = true,
        value_name = "PORT"
    )]
    pub http_port: Option<i32>,

    /// HTTPS port for monitoring, with the server's TLS settings (-1 = random).
    #[arg(
        long = "https_port",
        visible_alias = "ms",
        allow_negative_numbers = true,
        value_name = "PORT"
    )]
    pub https_port: Option<i32>,

    /// Base path of the monitoring endpoints.
    #[arg(long = "http_base_path", value_name = "PATH")]
    pub http_base_path: Option<String>,

    /// Test the configuration file and exit.
    #[arg(short = 't')]
    pub test_config: bool,

    /// Number of shards (one pinned thread each); default one per core.
    #[arg(long = "shards", value_name = "N")]
    pub shards: Option<usize>,

    /// Microseconds a shard spins for more work after a turn that moved only a few bytes
    /// (request/reply traffic) before it sleeps; 0 turns it off. Default 50.
    #[arg(long = "busy_poll", visible_alias = "busy-poll", value_name = "MICROS")]
    pub busy_poll: Option<u64>,

    /// User required for connections (with --pass).
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// Password required for connections (with --user).
    #[arg(long = "pass", value_name = "PASSWORD")]
    pub pass: Option<String>,

    /// Authorization token required for connections.
    #[arg(long = "auth", value_name = "TOKEN")]
    pub auth: Option<String>,

    /// Seconds a client has to send a valid CONNECT (ringnats extension; fractions allowed).
    #[arg(long = "auth_timeout", value_name = "SECONDS")]
    pub auth_timeout: Option<f64>,

    /// Enable TLS (needs --tlscert and --tlskey).
    #[arg(long = "tls")]
    pub tls: bool,

    /// Server certificate file (PEM).
    #[arg(long = "tlscert", value_name = "FILE")]
    pub tlscert: Option<PathBuf>,

    /// Private key of the server certificate (PEM).
    #[arg(long = "tlskey", value_name = "FILE")]
    pub tlskey: Option<PathBuf>,

    /// Client certificate CA for verification (PEM).
    #[arg(long = "tlscacert", value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,

    /// Enable TLS and require and verify client certificates.
    #[arg(long = "tlsverify")]
    pub tlsverify: bool,

    /// Generate a key pair (same as `keygen <KIND>`).
    #[arg(short = 'k', value_name = "KIND")]
    pub keygen_kind: Option<KeyKind>,

    /// Print the version.
    #[arg(short = 'v', long = "version", action = ArgAction::Version)]
    pub version: Option<bool>,

    /// File to store the process id in (`pid_file`).
    #[arg(short = 'P', long = "pid", value_name = "FILE")]
    pub pid_file: Option<PathBuf>,

    /// Send a signal to a running ringnats and exit: stop, quit, term, reopen, reload or ldm,
    /// optionally `=PID` or `=PIDFILE` (`-sl`).
    #[arg(long = "signal", visible_alias = "sl", value_name = "SIGNAL[=PID]")]
    pub signal: Option<String>,

    /// JetStream storage directory: accepted for nats-server command lines, unused (`-sd`).
    #[arg(long = "store_dir", visible_alias = "sd", value_name = "DIR")]
    pub store_dir: Option<PathBuf>,

    #[command(flatten)]
    pub unsupported: UnsupportedFlags,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// nats-server flags for features ringnats does not have. Parsed (so their values are not
/// mistaken for other flags) only to be refused with one clear line; see
/// `Cli::unsupported_flag`.
#[derive(Debug, Default, Args)]
pub struct UnsupportedFlags {
    #[arg(long = "jetstream", alias = "js", hide = true, num_args = 0..=1,
        require_equals = true, default_missing_value = "true")]
    jetstream: Option<String>,
    #[arg(long = "cluster", hide = true)]
    cluster: Option<String>,
    #[arg(long = "routes", hide = true)]
    routes: Option<String>,
    #[arg(long = "cluster_name", hide = true)]
    cluster_name: Option<String>,
    #[arg(long = "cluster_listen", hide = true)]
    cluster_listen: Option<String>,
    #[arg(long = "cluster_advertise", hide = true)]
    cluster_advertise: Option<String>,
    #[arg(long = "no_advertise", hide = true, num_args = 0..=1, require_equals = true,
        default_missing_value = "true")]
    no_advertise: Option<String>,
    #[arg(long = "connect_retries", hide = true)]
    connect_retries: Option<String>,
    #[arg(long = "client_advertise", hide = true)]
    client_advertise: Option<String>,
    #[arg(long = "ports_file_dir", hide = true)]
    ports_file_dir: Option<String>,
    #[arg(long = "profile", hide = true)]
    profile: Option<String>,
    #[arg(short = 's', long = "syslog", hide = true, num_args = 0..=1, require_equals = true,
        default_missing_value = "true")]
    syslog: Option<String>,
    #[arg(short = 'r', long = "remote_syslog", hide = true)]
    remote_syslog: Option<String>,
}

impl UnsupportedFlags {
    /// The first unsupported flag given, named as nats-server's usage names it, with the
    /// feature it belongs to.
    fn first(&self) -> Option<&'static str> {
        let flags: [(&Option<String>, &'static str); 13] = [
            (&self.jetstream, "-js/--jetstream (JetStream)"),
            (&self.cluster, "--cluster (clustering)"),
            (&self.routes, "--routes (clustering)"),
            (&self.cluster_name, "--cluster_name (clustering)"),
            (&self.cluster_listen, "--cluster_listen (clustering)"),
            (&self.cluster_advertise, "--cluster_advertise (clustering)"),
            (&self.no_advertise, "--no_advertise (clustering)"),
            (&self.connect_retries, "--connect_retries (clustering)"),
            (&self.client_advertise, "--client_advertise (clustering)"),
            (&self.ports_file_dir, "--ports_file_dir"),
            (&self.profile, "--profile (profiling port)"),
            (&self.syslog, "-s/--syslog"),
            (&self.remote_syslog, "-r/--remote_syslog"),
        ];
        flags
            .iter()
            .find(|(value, _)| value.is_some())
            .map(|(_, name)| *name)
    }
}

/// Subcommands next to running the server.
// Parsed once per process, so `Bench` being larger than the others costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Hash a password with bcrypt for use in a config file.
    Passwd(PasswdArgs),
    /// Generate an nkey pair.
    Keygen(KeygenArgs),
    /// Load-test a NATS server (ringnats or nats-server), in the shape of `nats bench`.
    Bench(BenchArgs),
    /// Make NATS JWTs (operator, account, user), `.creds` files and a resolver config block.
    Jwt(JwtArgs),
}

/// `ringnats jwt <KIND>`: seeds are read from files (never from the command line, where `ps`
/// would show them); JWTs go to standard output.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JwtArgs {
    #[command(subcommand)]
    pub command: JwtCommand,
}

/// What `ringnats jwt` makes.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
// Parsed once per run of the tool: the account variant's size costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum JwtCommand {
    /// A self-signed operator JWT.
    Operator(JwtOperatorArgs),
    /// An account JWT, signed by the operator (or one of its signing keys).
    Account(JwtAccountArgs),
    /// A user JWT, signed by the account (or one of its signing keys, with --issuer-account).
    User(JwtUserArgs),
    /// An activation JWT: the exporting account lets one account import a private export.
    Activation(JwtActivationArgs),
    /// A `.creds` file from a user JWT and the user's seed.
    Creds(JwtCredsArgs),
    /// A config block for operator mode with the memory resolver (or, with --resolver-dir,
    /// the full resolver).
    Config(JwtConfigArgs),
}

/// Options every JWT kind takes.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JwtCommon {
    /// File holding the seed of the signing key.
    #[arg(long = "signer", value_name = "SEED_FILE")]
    pub signer: PathBuf,
    /// `name` claim.
    #[arg(long = "name", default_value = "")]
    pub name: String,
    /// Expire this many seconds from now (0 = never; negative = already expired).
    #[arg(
        long = "expires-in",
        value_name = "SECONDS",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub expires_in: i64,
    /// Not valid until this many seconds from now (0 = at once).
    #[arg(
        long = "not-before-in",
        value_name = "SECONDS",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub not_before_in: i64,
}

/// `ringnats jwt operator`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JwtOperatorArgs {
    #[command(flatten)]
    pub common: JwtCommon,
    /// Operator signing keys (public `O…`), repeatable.
    #[arg(long = "signing-key", value_name = "PUBLIC_KEY")]
    pub signing_keys: Vec<String>,
    /// The system account's public key.
    #[arg(long = "system-account", value_name = "PUBLIC_KEY")]
    pub system_account: Option<String>,
}

/// `ringnats jwt account`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JwtAccountArgs {
    #[command(flatten)]
    pub common: JwtCommon,
    /// The account's public key (`A…`).
    #[arg(long = "subject", value_name = "PUBLIC_KEY")]
    pub subject: String,
    /// Account signing keys (public `A…`), repeatable.
    #[arg(long = "signing-key", value_name = "PUBLIC_KEY")]
    pub signing_keys: Vec<String>,
    /// Max connections (-1 = unlimited).
    #[arg(long = "conn", default_value_t = -1, allow_hyphen_values = true)]
    pub conn: i64,
    /// Max subscriptions (-1 = unlimited).
    #[arg(long = "subs", default_value_t = -1, allow_hyphen_values = true)]
    pub subs: i64,
    /// Max payload bytes (-1 = unlimited).
    #[arg(long = "payload", default_value_t = -1, allow_hyphen_values = true)]
    pub payload: i64,
    /// Max data bytes (-1 = unlimited).
    #[arg(long = "data", default_value_t = -1, allow_hyphen_values = true)]
    pub data: i64,
    /// Refuse wildcard exports.
    #[arg(long = "no-wildcards")]
    pub no_wildcards: bool,
    /// Refuse bearer-token users.
    #[arg(long = "disallow-bearer")]
    pub disallow_bearer: bool,
    /// Default publish allow subjects for users without permissions, repeatable.
    #[arg(long = "default-pub-allow", value_name = "SUBJECT")]
    pub default_pub_allow: Vec<String>,
    /// Default publish deny subjects, repeatable.
    #[arg(long = "default-pub-deny", value_name = "SUBJECT")]
    pub default_pub_deny: Vec<String>,
    /// Default subscribe allow subjects, repeatable.
    #[arg(long = "default-sub-allow", value_name = "SUBJECT")]
    pub default_sub_allow: Vec<String>,
    /// Default subscribe deny subjects, repeatable.
    #[arg(long = "default-sub-deny", value_name = "SUBJECT")]
    pub default_sub_deny: Vec<String>,
    /// Revoke a user's JWTs issued up to now (`U…`, or `*` for all users), repeatable.
    #[arg(long = "revoke", value_name = "PUBLIC_KEY")]
    pub revoke: Vec<String>,
    /// Export a stream anyone may import, repeatable.
    #[arg(long = "export-stream", value_name = "SUBJECT")]
    pub export_streams: Vec<String>,
    /// Export a service anyone may import, repeatable.
    #[arg(long = "export-service", value_name = "SUBJECT")]
    pub export_services: Vec<String>,
    /// Export a stream only to accounts holding an activation token (`token_req`), repeatable.
    #[arg(long = "export-private-stream", value_name = "SUBJECT")]
    pub export_private_streams: Vec<String>,
    /// Export a service only to accounts holding an activation token, repeatable.
    #[arg(long = "export-private-service", value_name = "SUBJECT")]
    pub export_private_services: Vec<String>,
    /// Import a public stream: the exporting account's key and the subject, repeatable.
    #[arg(long = "import-stream", value_name = "ACCOUNT:SUBJECT")]
    pub import_streams: Vec<String>,
    /// Import a public service: the exporting account's key and the subject, repeatable.
    #[arg(long = "import-service", value_name = "ACCOUNT:SUBJECT")]
    pub import_services: Vec<String>,
    /// Import a private export with the activation JWT in FILE (made by `ringnats jwt
    /// activation`; it names the exporter, the subject and the kind), repeatable.
    #[arg(long = "import-activation", value_name = "FILE")]
    pub import_activations: Vec<PathBuf>,
    #[command(flatten)]
    pub callout: JwtCalloutArgs,
}

/// The account's auth callout (its `authorization` claim): on when `--auth-user` is given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Args)]
pub struct JwtCalloutArgs {
    /// A user (`U…`) of this account that runs the auth service and bypasses the callout,
    /// repeatable; any one turns the callout on for the account's other users.
    #[arg(long = "auth-user", value_name = "PUBLIC_KEY")]
    pub auth_users: Vec<String>,
    /// An account (`A…`, or `*` alone for any) the service may place users into, repeatable.
    #[arg(long = "allowed-account", value_name = "PUBLIC_KEY")]
    pub allowed_accounts: Vec<String>,
    /// The service's curve key (`X…`): callout requests are sealed to it.
    #[arg(long = "callout-xkey", value_name = "PUBLIC_XKEY")]
    pub xkey: Option<String>,
}

/// `ringnats jwt user`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JwtUserArgs {
    #[command(flatten)]
    pub common: JwtCommon,
    /// The user's public key (`U…`).
    #[arg(long = "subject", value_name = "PUBLIC_KEY")]
    pub subject: String,
    /// The account's public key, when --signer is one of its signing keys.
    #[arg(long = "issuer-account", value_name = "PUBLIC_KEY")]
    pub issuer_account: Option<String>,
    /// Publish allow subjects, repeatable.
    #[arg(long = "pub-allow", value_name = "SUBJECT")]
    pub pub_allow: Vec<String>,
    /// Publish deny subjects, repeatable.
    #[arg(long = "pub-deny", value_name = "SUBJECT")]
    pub pub_deny: Vec<String>,
    /// Subscribe allow subjects, repeatable.
    #[arg(long = "sub-allow", value_name = "SUBJECT")]
    pub sub_allow: Vec<String>,
    /// Subscribe deny subjects, repeatable.
    #[arg(long = "sub-deny", value_name = "SUBJECT")]
    pub sub_deny: Vec<String>,
    /// Allow this many replies to each received request (`resp`).
    #[arg(long = "allow-responses", value_name = "MAX")]
    pub allow_responses: Option<i64>,
    /// Max subscriptions (-1 = unlimited).
    #[arg(long = "subs", default_value_t = -1, allow_hyphen_values = true)]
    pub subs: i64,
    /// Max payload bytes (-1 = unlimited).
    #[arg(long = "payload", default_value_t = -1, allow_hyphen_values = true)]
    pub payload: i64,
    /// Max data bytes (-1 = unlimited).
    #[arg(long = "data", default_value_t = -1, allow_hyphen_values = true)]
    pub data: i64,
    /// No nonce signature needed (bearer token).
    #[arg(long = "bearer")]
    pub bearer: bool,
    /// Allowed client networks (CIDR), repeatable.
    #[arg(long = "src", value_name = "CIDR")]
    pub src: Vec<String>,
    /// Scoped-key user: leave permissions and limits out (the key's template applies).
    #[arg(long = "scoped")]
    pub scoped: bool,
}

/// `ringnats jwt activation`: signed by the exporting account (or one of its signing keys, with
/// --issuer-account); --expires-in bounds how long the import works.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JwtActivationArgs {
    #[command(flatten)]
    pub common: JwtCommon,
    /// The importing account's public key (`A…`).
    #[arg(long = "subject", value_name = "PUBLIC_KEY")]
    pub subject: String,
    /// The exporting account's public key, when --signer is one of its signing keys.
    #[arg(long = "issuer-account", value_name = "PUBLIC_KEY")]
    pub issuer_account: Option<String>,
    /// The private stream export's subject (or a subject it covers).
    #[arg(
        long = "stream",
        value_name = "SUBJECT",
        conflicts_with = "service",
        required_unless_present = "service"
    )]
    pub stream: Option<String>,
    /// The private service export's subject (or a subject it covers).
    #[arg(long = "service", value_name = "SUBJECT")]
    pub service: Option<String>,
}

/// `ringnats jwt creds`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JwtCredsArgs {
    /// File holding the user JWT.
    #[arg(long = "jwt", value_name = "FILE")]
    pub jwt: PathBuf,
    /// File holding the user's seed.
    #[arg(long = "seed", value_name = "FILE")]
    pub seed: PathBuf,
}

/// `ringnats jwt config`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct JwtConfigArgs {
    /// File holding the operator JWT.
    #[arg(long = "operator", value_name = "FILE")]
    pub operator: PathBuf,
    /// Files holding account JWTs to preload, repeatable.
    #[arg(long = "account", value_name = "FILE")]
    pub accounts: Vec<PathBuf>,
    /// Print a full-resolver block storing the accounts in DIR (as `nsc generate config
    /// --nats-resolver`) instead of the memory resolver.
    #[arg(long = "resolver-dir", value_name = "DIR")]
    pub resolver_dir: Option<PathBuf>,
}

/// `ringnats bench [SUBJECT]`: publishers, subscribers, queue groups, request/reply latency
/// and connection storms, reported as `nats bench` reports them.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct BenchArgs {
    /// Subject to publish to and subscribe on.
    #[arg(default_value = "bench")]
    pub subject: String,

    /// Server URL: nats://host:port (tls://host:port forces TLS).
    #[arg(short = 's', long = "server", default_value = "nats://127.0.0.1:4222")]
    pub server: String,

    /// Publishers (default 1 when --sub is not given either; requesters with --request).
    #[arg(long = "pub", value_name = "N")]
    pub pubs: Option<usize>,

    /// Subscribers (repliers with --request and --reply; default 1 there).
    #[arg(long = "sub", value_name = "M")]
    pub subs: Option<usize>,

    /// Subscribers join this queue group (a queue group receives --msgs in total).
    #[arg(long = "queue", value_name = "NAME")]
    pub queue: Option<String>,

    /// Request/reply latency: --pub requesters, --sub in-process repliers (0: repliers run
    /// elsewhere, e.g. `ringnats bench --reply`).
    #[arg(long = "request")]
    pub request: bool,

    /// Only reply to requests on SUBJECT (for a `--request --sub 0` run elsewhere).
    #[arg(long = "reply")]
    pub reply: bool,

    /// Connection storm: connects per second (CONNECT, PING/PONG, close) by --workers.
    #[arg(long = "connect-storm")]
    pub connect_storm: bool,

    /// Connection storm workers (default 4).
    #[arg(long = "workers", value_name = "N")]
    pub workers: Option<usize>,

    /// Connection storm: log in as N users in turn, the --user name with 0..N-1 appended (a
    /// fleet of services reconnecting).
    #[arg(long = "users", value_name = "N")]
    pub users: Option<usize>,

    /// Messages to publish in total, split over publishers (default 100,000).
    #[arg(long = "msgs", value_name = "N")]
    pub msgs: Option<u64>,

    /// Message size: 16, 16b, 16kb, 1mb.
    #[arg(
        long = "size",
        value_name = "SIZE",
        default_value = "128",
        value_parser = crate::tools::bench::units::parse_size
    )]
    pub size: usize,

    /// Run for this long instead of a fixed count (5s, 500ms, 1m); with --msgs, whichever
    /// comes first.
    #[arg(
        long = "duration",
        value_name = "DURATION",
        value_parser = crate::tools::bench::units::parse_duration
    )]
    pub duration: Option<Duration>,

    /// Write the samples as CSV (nats bench columns) to FILE.
    #[arg(long = "csv", value_name = "FILE")]
    pub csv: Option<PathBuf>,

    /// Never draw the progress bar.
    #[arg(long = "no-progress")]
    pub no_progress: bool,

    /// Authentication token.
    #[arg(long = "token", value_name = "TOKEN")]
    pub token: Option<String>,

    /// User name.
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,

    /// Password.
    #[arg(long = "password", value_name = "PASSWORD")]
    pub password: Option<String>,

    /// File holding a user nkey seed (signs the server nonce).
    #[arg(long = "nkey", value_name = "SEEDFILE")]
    pub nkey: Option<PathBuf>,

    /// Credentials file: user JWT and nkey seed.
    #[arg(long = "creds", value_name = "FILE")]
    pub creds: Option<PathBuf>,

    /// CA certificate (PEM) that signed the server certificate.
    #[arg(long = "tlsca", value_name = "FILE")]
    pub tlsca: Option<PathBuf>,

    /// Client certificate (PEM).
    #[arg(long = "tlscert", value_name = "FILE")]
    pub tlscert: Option<PathBuf>,

    /// Client private key (PEM).
    #[arg(long = "tlskey", value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
}

/// `ringnats passwd`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct PasswdArgs {
    /// bcrypt cost (the `nats server passwd` default is 11).
    #[arg(long = "cost", default_value_t = 11)]
    pub cost: u32,
}

/// `ringnats keygen <KIND>`.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct KeygenArgs {
    /// What kind of key to generate.
    #[arg(value_enum)]
    pub kind: KeyKind,
}

/// nkey kinds, as `nk -gen <kind>` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KeyKind {
    User,
    Account,
    Operator,
    Server,
    Curve,
}

/// Long flag names Go's `flag` package would accept with a single dash.
const LONG_FLAGS: &[&str] = &[
    "config",
    "port",
    "addr",
    "net",
    "name",
    "server_name",
    "debug",
    "trace",
    "log",
    "log_file",
    "logtime",
    "shards",
    "busy_poll",
    "http_port",
    "https_port",
    "ms",
    "http_base_path",
    "version",
    "help",
    "pid",
    "signal",
    "sl",
    "store_dir",
    "sd",
    "jetstream",
    "js",
    "cluster",
    "routes",
    "cluster_name",
    "cluster_listen",
    "cluster_advertise",
    "no_advertise",
    "connect_retries",
    "client_advertise",
    "ports_file_dir",
    "profile",
    "syslog",
    "remote_syslog",
];

impl Cli {
    /// Parses `std::env::args_os()` after `normalize_args`; exits with usage on error.
    pub fn parse_args() -> Cli {
        Cli::parse_from(normalize_args(std::env::args_os()))
    }

    /// "`<flag>` is not supported by ringnats", for the first flag of a feature ringnats does
    /// not have (instead of clap's "unexpected argument" and a misleading tip).
    pub fn unsupported_flag(&self) -> Option<String> {
        self.unsupported
            .first()
            .map(|flag| format!("{flag} is not supported by ringnats"))
    }

    /// The subcommand to run, with `-k <kind>` mapped to `keygen <kind>`.
    pub fn effective_command(&self) -> Option<Command> {
        match (&self.command, self.keygen_kind) {
            (Some(command), _) => Some(command.clone()),
            (None, Some(kind)) => Some(Command::Keygen(KeygenArgs { kind })),
            (None, None) => None,
        }
    }
}

/// Rewrites Go-style single-dash long flags (`-port`, `-config=x`) to `--port`, `--config=x`.
pub fn normalize_args<I, T>(args: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    args.into_iter()
        .map(Into::into)
        .map(|arg| {
            let rewritten = arg.to_str().and_then(|s| {
                let body = s.strip_prefix('-').filter(|b| !b.starts_with('-'))?;
                let name = body.split('=').next().unwrap_or(body);
                LONG_FLAGS
                    .contains(&name)
                    .then(|| OsString::from(format!("-{s}")))
            });
            rewritten.unwrap_or(arg)
        })
        .collect()
}

/// `--user/--pass/--auth/--auth_timeout` and the `--tls*` flags, kept apart from the file's
/// sections; `shared::Security` lets them override the file.
fn apply_security_flags(opts: &mut ServerOptions, cli: &Cli) -> Result<(), ConfigError> {
    opts.cli_auth.user = cli.user.clone();
    opts.cli_auth.pass = cli.pass.as_deref().map(crate::auth::Secret::new);
    opts.cli_auth.token = cli.auth.as_deref().map(crate::auth::Secret::new);
    if let Some(secs) = cli.auth_timeout {
        if !secs.is_finite() || secs <= 0.0 {
            let msg = format!("must be a positive number of seconds, got {secs}");
            return Err(ConfigError::Flag {
                flag: "--auth_timeout",
                msg,
            });
        }
        opts.cli_auth.auth_timeout = Some(Duration::from_secs_f64(secs));
    }
    if cli.tls || cli.tlsverify || cli.tlscert.is_some() || cli.tlskey.is_some() {
        let (Some(cert), Some(key)) = (&cli.tlscert, &cli.tlskey) else {
            let msg = "TLS needs both --tlscert and --tlskey".to_string();
            return Err(ConfigError::Flag { flag: "--tls", msg });
        };
        opts.cli_tls = Some(crate::tls::CliTls {
            cert: cert.clone(),
            key: key.clone(),
            ca: cli.tlscacert.clone(),
            verify: cli.tlsverify,
        });
    }
    Ok(())
}

/// Loads the config file named by `-c` (if any), then applies the flags on top.
pub fn options_from_cli(cli: &Cli) -> Result<ServerOptions, ConfigError> {
    let mut opts = match &cli.config {
        Some(path) => load_file(path)?,
        None => ServerOptions::default(),
    };
    apply_flags(&mut opts, cli)?;
    Ok(opts)
}

fn apply_flags(opts: &mut ServerOptions, cli: &Cli) -> Result<(), ConfigError> {
    if let Some(port) = cli.port {
        if !(RANDOM_PORT..=65535).contains(&port) {
            let msg = format!("invalid port {port}: must be -1 (random) or 0-65535");
            return Err(ConfigError::Flag {
                flag: "--port",
                msg,
            });
        }
        opts.port = port;
    }
    if let Some(addr) = &cli.addr {
        opts.host = addr.clone();
    }
    for (flag, value, target) in [
        ("--http_port", cli.http_port, &mut opts.http_port),
        ("--https_port", cli.https_port, &mut opts.https_port),
    ] {
        if let Some(port) = value {
            if !(RANDOM_PORT..=65535).contains(&port) {
                let msg = format!("invalid port {port}: must be -1 (random) or 0-65535");
                return Err(ConfigError::Flag { flag, msg });
            }
            *target = port;
        }
    }
    if let Some(path) = &cli.http_base_path {
        opts.http_base_path = path.clone();
    }
    if let Some(name) = &cli.name {
        if name.contains(' ') {
            let msg = "server name cannot contain spaces".to_string();
            return Err(ConfigError::Flag {
                flag: "--name",
                msg,
            });
        }
        opts.server_name = Some(name.clone());
    }
    if cli.debug > 0 {
        opts.debug = true;
    }
    if cli.trace > 0 {
        opts.trace = true;
    }
    if cli.trace > 1 {
        opts.trace_verbose = true;
    }
    if let Some(log) = &cli.log {
        opts.logfile = Some(log.clone());
    }
    if let Some(pid_file) = &cli.pid_file {
        opts.pid_file = Some(pid_file.clone());
    }
    if let Some(dir) = &cli.store_dir {
        opts.warnings.push(format!(
            "--store_dir {}: JetStream is not supported by ringnats; the directory is not used",
            dir.display()
        ));
    }
    apply_security_flags(opts, cli)?;
    if let Some(logtime) = cli.logtime {
        opts.logtime = logtime;
    }
    if let Some(shards) = cli.shards {
        if shards == 0 {
            let msg = "must be at least 1".to_string();
            return Err(ConfigError::Flag {
                flag: "--shards",
                msg,
            });
        }
        opts.shards = Some(shards);
    }
    if let Some(micros) = cli.busy_poll {
        opts.busy_poll = std::time::Duration::from_micros(micros);
    }
    opts.apply_baseline();
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use clap::error::ErrorKind;

    use super::*;

    fn cli(args: &[&str]) -> Cli {
        let argv = normalize_args(std::iter::once("ringnats").chain(args.iter().copied()));
        Cli::try_parse_from(argv).unwrap()
    }

    fn temp_conf(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ringnats-cli-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.conf");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn no_flags_gives_defaults() {
        let opts = options_from_cli(&cli(&[])).unwrap();
        assert_eq!(opts, ServerOptions::default());
    }

    #[test]
    fn server_flags() {
        let c = cli(&[
            "-p",
            "-1",
            "-a",
            "127.0.0.1",
            "-n",
            "srv",
            "-l",
            "/tmp/x.log",
            "-T=false",
        ]);
        let opts = options_from_cli(&c).unwrap();
        assert_eq!(opts.port, -1);
        assert_eq!(opts.listen_port(), 0);
        assert_eq!(opts.host, "127.0.0.1");
        assert_eq!(opts.server_name.as_deref(), Some("srv"));
        assert_eq!(opts.logfile.as_deref(), Some(Path::new("/tmp/x.log")));
        assert!(!opts.logtime);
        let c = cli(&[
            "--net",
            "10.0.0.1",
            "--server_name",
            "x",
            "--logtime",
            "--shards",
            "3",
        ]);
        let opts = options_from_cli(&c).unwrap();
        assert_eq!(opts.host, "10.0.0.1");
        assert_eq!(opts.server_name.as_deref(), Some("x"));
        assert!(opts.logtime);
        assert_eq!(opts.shards, Some(3));
    }

    #[test]
    fn busy_poll_defaults_on_and_can_be_turned_off() {
        let opts = options_from_cli(&cli(&[])).unwrap();
        assert_eq!(opts.busy_poll, std::time::Duration::from_micros(50));
        let opts = options_from_cli(&cli(&["--busy_poll", "0"])).unwrap();
        assert!(opts.busy_poll.is_zero());
        let opts = options_from_cli(&cli(&["-busy_poll", "120"])).unwrap();
        assert_eq!(opts.busy_poll, std::time::Duration::from_micros(120));
    }

    #[test]
    fn debug_trace_combinations() {
        let opts = options_from_cli(&cli(&["-DV"])).unwrap();
        assert!(opts.debug && opts.trace && !opts.trace_verbose);
        let opts = options_from_cli(&cli(&["-VV"])).unwrap();
        assert!(!opts.debug && opts.trace && opts.trace_verbose);
        let opts = options_from_cli(&cli(&["-DVV"])).unwrap();
        assert!(opts.debug && opts.trace && opts.trace_verbose);
        let opts = options_from_cli(&cli(&["-D"])).unwrap();
        assert!(opts.debug && !opts.trace);
        let opts = options_from_cli(&cli(&["--trace"])).unwrap();
        assert!(!opts.debug && opts.trace);
    }

    #[test]
    fn go_style_single_dash_long_flags() {
        let c = cli(&["-port", "5000", "-config=/nonexistent", "-t"]);
        assert_eq!(c.port, Some(5000));
        assert_eq!(c.config.as_deref(), Some(Path::new("/nonexistent")));
        assert!(c.test_config);
        // Short clusters are left alone.
        assert_eq!(normalize_args(["-DV"]), vec![OsString::from("-DV")]);
        assert_eq!(normalize_args(["--port"]), vec![OsString::from("--port")]);
    }

    #[test]
    fn flags_override_the_file() {
        let path = temp_conf(
            "override",
            "port: 4333\nhost: 10.1.1.1\nserver_name: filename\ndebug: true\nlogtime: false\n",
        );
        let path_str = path.to_str().unwrap();
        let opts = options_from_cli(&cli(&["-c", path_str])).unwrap();
        assert_eq!(opts.port, 4333);
        assert_eq!(opts.config_file.as_deref(), Some(path.as_path()));
        let opts = options_from_cli(&cli(&[
            "-c", path_str, "-p", "5555", "-n", "flagname", "-V",
        ]))
        .unwrap();
        assert_eq!(opts.port, 5555);
        assert_eq!(opts.host, "10.1.1.1", "absent flag keeps the file value");
        assert_eq!(opts.server_name.as_deref(), Some("flagname"));
        assert!(opts.debug, "absent -D keeps the file's debug: true");
        assert!(opts.trace);
        assert!(!opts.logtime);
        assert_eq!(opts.ping_interval, Duration::from_secs(120));
    }

    #[test]
    fn config_errors_surface() {
        let err = options_from_cli(&cli(&["-c", "/nonexistent/ringnats.conf"])).unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/ringnats.conf: "),
            "{err}"
        );
        let path = temp_conf("bad", "port: 4222\nfoo_bar: 1\n");
        let err = options_from_cli(&cli(&["-c", path.to_str().unwrap()])).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("server.conf:2: unknown field \"foo_bar\""),
            "{err}"
        );
    }

    #[test]
    fn bad_flag_values() {
        let err = options_from_cli(&cli(&["-p", "70000"])).unwrap_err();
        assert!(err.to_string().contains("invalid port 70000"), "{err}");
        let err = options_from_cli(&cli(&["--shards", "0"])).unwrap_err();
        assert!(err.to_string().contains("--shards"), "{err}");
        let err = options_from_cli(&cli(&["-n", "a b"])).unwrap_err();
        assert!(err.to_string().contains("cannot contain spaces"), "{err}");
        assert!(Cli::try_parse_from(["ringnats", "-p", "x"]).is_err());
        assert!(Cli::try_parse_from(["ringnats", "--bogus"]).is_err());
    }

    #[test]
    fn nats_server_test_helper_flags() {
        let c = cli(&[
            "-sd", "/tmp/js", "-P", "/tmp/pid", "-p", "-1", "-l", "/tmp/log",
        ]);
        let opts = options_from_cli(&c).unwrap();
        assert_eq!(opts.pid_file.as_deref(), Some(Path::new("/tmp/pid")));
        assert_eq!(opts.port, -1);
        assert!(
            opts.warnings[0].contains("JetStream is not supported"),
            "{opts:?}"
        );
        assert_eq!(
            cli(&["--pid", "p"]).pid_file.as_deref(),
            Some(Path::new("p"))
        );
        assert_eq!(cli(&["-sl", "ldm=12"]).signal.as_deref(), Some("ldm=12"));
        assert_eq!(cli(&["--signal", "stop"]).signal.as_deref(), Some("stop"));
        assert_eq!(cli(&["--store_dir", "d"]).unsupported_flag(), None);
    }

    #[test]
    fn flags_of_missing_features_are_named() {
        for (args, flag) in [
            (&["-js"][..], "-js/--jetstream"),
            (&["--jetstream=true"], "-js/--jetstream"),
            (&["--cluster", "nats://h:6222"], "--cluster"),
            (&["--routes", "nats://h:6222"], "--routes"),
        ] {
            let refusal = cli(args).unsupported_flag().unwrap_or_default();
            assert!(refusal.starts_with(flag), "{args:?}: {refusal}");
            assert!(
                refusal.ends_with("is not supported by ringnats"),
                "{refusal}"
            );
        }
    }

    #[test]
    fn port_zero_means_default_like_nats_server() {
        assert_eq!(options_from_cli(&cli(&["-p", "0"])).unwrap().port, 4222);
    }

    #[test]
    fn version_and_help() {
        let err = Cli::try_parse_from(["ringnats", "--version"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DisplayVersion);
        assert_eq!(
            err.to_string().trim(),
            format!("ringnats {}", env!("CARGO_PKG_VERSION"))
        );
        let err = Cli::try_parse_from(["ringnats", "--help"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DisplayHelp);
        // -V is trace, -v the version (nats-server's short flags).
        assert_eq!(cli(&["-V"]).trace, 1);
        let err = Cli::try_parse_from(["ringnats", "-v"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DisplayVersion);
    }

    #[test]
    fn subcommands() {
        assert_eq!(
            cli(&["passwd"]).effective_command(),
            Some(Command::Passwd(PasswdArgs { cost: 11 }))
        );
        assert_eq!(
            cli(&["passwd", "--cost", "12"]).effective_command(),
            Some(Command::Passwd(PasswdArgs { cost: 12 }))
        );
        assert_eq!(
            cli(&["keygen", "account"]).effective_command(),
            Some(Command::Keygen(KeygenArgs {
                kind: KeyKind::Account
            }))
        );
        assert_eq!(
            cli(&["-k", "user"]).effective_command(),
            Some(Command::Keygen(KeygenArgs {
                kind: KeyKind::User
            }))
        );
        assert!(matches!(
            cli(&["bench", "--pub", "2", "--size", "16kb"]).effective_command(),
            Some(Command::Bench(BenchArgs {
                pubs: Some(2),
                size: 16384,
                ..
            }))
        ));
        assert_eq!(cli(&[]).effective_command(), None);
        assert!(Cli::try_parse_from(["ringnats", "keygen", "bogus"]).is_err());
    }
}
