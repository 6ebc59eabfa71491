//! Broker processes for the integration tests: `Launch` says how to start one, `Server` is one
//! running.
//!
//! Cold, test-only. A `Launch` names the binary — the one under test (`RINGNATS_TEST_SERVER`,
//! else this build's ringnats), this build's ringnats, or nats-server 2.9.10 for a comparison
//! run —, the config file (a `listen: 127.0.0.1:<port>` line and the test's text, the test's
//! whole text, or none), flags, environment and port (picked here unless the test picks it).
//! Each builder method returns a changed copy, so one `Launch` can start several servers and a
//! check can be written once for ringnats and nats-server. A `Server` is the process: its
//! stdout and stderr go to `output.log` in its scratch directory, which a test can wait on for
//! a line; it can be signalled, reloaded, stopped and measured (RSS); it is killed on drop, and
//! its logs are printed if the test panicked.
//!
//! Comparisons: a check of nats-server's behaviour passes with a "skipped" note when
//! nats-server is not installed, except under CI (`CI` set), where `skip_or_fail` fails it:
//! CI installs nats-server (`.ci/run`), so there a missing one is a broken run, not a pass.
//! Invariant: nothing here sleeps to let time pass; every wait ends on an observable event
//! (a port answering with INFO, a line in a file, an exit) or on a deadline.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::RawConn;

/// How long the server may take to start accepting connections. Only a bound: the wait ends
/// when the port answers. Generous, because test binaries start brokers in parallel beside
/// other builds on a two-core machine, where ten seconds were seen to pass (an operator-mode
/// start in `jwt_claims.rs` at load 15).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one readiness probe waits for the INFO line of a port that accepted it.
const PROBE_INFO_MAX: Duration = Duration::from_secs(5);
/// How long a command run to its exit (`Launch::run`) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries at a free port before a start-up gives up (see `Launch::start`).
const PORT_ATTEMPTS: usize = 3;
/// What ringnats and nats-server print when their port is taken.
const PORT_TAKEN: &str = "address already in use";
/// The line ringnats and nats-server log after a successful reload.
pub const RELOADED: &str = "Reloaded server configuration";
/// Shards passed to ringnats unless a test asks otherwise: 2 so that every test also runs
/// across shards (connections are spread over both).
pub const DEFAULT_SHARDS: usize = 2;
/// The file in a server's scratch directory that holds its stdout and stderr.
const OUTPUT_LOG: &str = "output.log";
/// The config file `Launch` writes in the scratch directory.
const CONFIG_FILE: &str = "server.conf";

// ---- which binary, and the rule for a missing one ----------------------------------------

/// The binary under test: `RINGNATS_TEST_SERVER` (another build, or nats-server), else this
/// build's ringnats.
fn under_test_bin() -> PathBuf {
    std::env::var_os("RINGNATS_TEST_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(ringnats_bin)
}

/// The ringnats binary of this build (never the `RINGNATS_TEST_SERVER` stand-in).
pub fn ringnats_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringnats"))
}

/// Whether this is a CI run (`CI` set, as `.ci/run` and CI services do, and not `0`/`false`).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// The one rule for a test that cannot run here because `missing` is not installed: under CI
/// it fails (CI installs everything the tests use); elsewhere it prints `skipped: <missing>`
/// and the caller returns, passing.
#[track_caller]
pub fn skip_or_fail(missing: &str) {
    assert!(
        !is_ci(),
        "{missing}, and CI is set: CI runs every comparison (.ci/run installs what it needs)"
    );
    eprintln!("skipped: {missing}");
}

/// nats-server 2.9.10 for a comparison run: `NATS_SERVER_BIN` (only that one, if set), else
/// `/usr/sbin/nats-server`, else `nats-server` on `PATH`. When there is none, `skip_or_fail`
/// decides: `None` (the caller skips), or a failure under CI.
#[track_caller]
pub fn nats_server_bin() -> Option<PathBuf> {
    let found = match std::env::var_os("NATS_SERVER_BIN") {
        Some(bin) => Some(PathBuf::from(bin)).filter(|bin| bin.is_file()),
        None => {
            let fixed = PathBuf::from("/usr/sbin/nats-server");
            let path = std::env::var_os("PATH").unwrap_or_default();
            Some(fixed).filter(|bin| bin.is_file()).or_else(|| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("nats-server"))
                    .find(|bin| bin.is_file())
            })
        }
    };
    if found.is_none() {
        skip_or_fail("no nats-server");
    }
    found
}

// ---- how to start a broker -----------------------------------------------------------------

/// The config file a `Launch` writes.
#[derive(Clone, Debug)]
enum Config {
    /// `listen: 127.0.0.1:<port>` and then this text.
    Listen(String),
    /// Exactly this text.
    Text(String),
    /// No config file and no `-c`.
    None,
}

/// How to start a broker: binary, config, flags, environment, port and scratch directory.
/// Every method returns a changed copy.
#[derive(Clone, Debug)]
pub struct Launch {
    bin: PathBuf,
    is_ringnats: bool,
    /// A program and its arguments that run the binary (`taskset -c 0`).
    wrapper: Vec<OsString>,
    /// `--shards N`, given to ringnats only.
    shards: Option<usize>,
    config: Config,
    args: Vec<String>,
    env: Vec<(OsString, OsString)>,
    /// The client port; `None`: a free one picked at start (and another if it is taken
    /// meanwhile).
    port: Option<u16>,
    /// The scratch directory; `None`: a fresh one.
    dir: Option<PathBuf>,
}

impl Launch {
    /// The broker under test (`RINGNATS_TEST_SERVER`, else this build's ringnats with
    /// `DEFAULT_SHARDS`), with `listen` on a free port and no other config.
    pub fn under_test() -> Launch {
        Launch::binary(under_test_bin())
    }

    /// This build's ringnats with `DEFAULT_SHARDS`, whatever `RINGNATS_TEST_SERVER` says.
    pub fn ringnats() -> Launch {
        Launch::binary(ringnats_bin())
    }

    /// nats-server 2.9.10 for a comparison run; `None` (the test skips) when it is not
    /// installed, or a failure under CI (see `nats_server_bin`).
    #[track_caller]
    pub fn nats_server() -> Option<Launch> {
        nats_server_bin().map(Launch::binary)
    }

    /// Any broker binary; it counts as ringnats when its file is named so.
    pub fn binary(bin: impl Into<PathBuf>) -> Launch {
        let bin = bin.into();
        let is_ringnats = bin.file_name().is_some_and(|name| name == "ringnats");
        Launch {
            bin,
            is_ringnats,
            wrapper: Vec::new(),
            shards: is_ringnats.then_some(DEFAULT_SHARDS),
            config: Config::Listen(String::new()),
            args: Vec::new(),
            env: Vec::new(),
            port: None,
            dir: None,
        }
    }

    /// The config file: `listen: 127.0.0.1:<port>` and then `extra` (the default is no extra).
    pub fn config(&self, extra: &str) -> Launch {
        Launch {
            config: Config::Listen(extra.to_owned()),
            ..self.clone()
        }
    }

    /// The config file is exactly `text` (give `port` for `start` to wait on).
    pub fn config_text(&self, text: &str) -> Launch {
        Launch {
            config: Config::Text(text.to_owned()),
            ..self.clone()
        }
    }

    /// No config file and no `-c` (flags say everything).
    pub fn no_config(&self) -> Launch {
        Launch {
            config: Config::None,
            ..self.clone()
        }
    }

    /// `--shards n` for ringnats (nats-server has no shards: ignored there).
    pub fn shards(&self, n: usize) -> Launch {
        Launch {
            shards: self.is_ringnats.then_some(n),
            ..self.clone()
        }
    }

    /// No `--shards`: ringnats picks its shard count itself (from the CPU affinity mask).
    pub fn no_shards(&self) -> Launch {
        Launch {
            shards: None,
            ..self.clone()
        }
    }

    /// One more command-line argument, after `-c <file>` and `--shards`.
    pub fn arg(&self, arg: impl Into<String>) -> Launch {
        let mut launch = self.clone();
        launch.args.push(arg.into());
        launch
    }

    /// More command-line arguments, after `-c <file>` and `--shards`.
    pub fn args<S: AsRef<str>>(&self, args: impl IntoIterator<Item = S>) -> Launch {
        let mut launch = self.clone();
        launch
            .args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        launch
    }

    /// An environment variable for the process.
    pub fn env(&self, key: impl Into<OsString>, value: impl Into<OsString>) -> Launch {
        let mut launch = self.clone();
        launch.env.push((key.into(), value.into()));
        launch
    }

    /// The client port, picked by the test (in the `listen` line, and the port `start` waits
    /// on). A port picked here is not replaced if it turns out to be taken.
    pub fn port(&self, port: u16) -> Launch {
        Launch {
            port: Some(port),
            ..self.clone()
        }
    }

    /// Runs the binary under `wrapper` (e.g. `["taskset", "-c", "0"]`).
    pub fn wrapped_in(&self, wrapper: &[&str]) -> Launch {
        Launch {
            wrapper: wrapper.iter().map(OsString::from).collect(),
            ..self.clone()
        }
    }

    /// Uses `dir` (made by the test, e.g. with `scratch_dir`, to name files in flags) as the
    /// scratch directory; the `Server` removes it on drop like its own.
    pub fn in_dir(&self, dir: &Path) -> Launch {
        Launch {
            dir: Some(dir.to_path_buf()),
            ..self.clone()
        }
    }

    /// Whether the binary is ringnats (or a stand-in named so), not nats-server.
    pub fn is_ringnats(&self) -> bool {
        self.is_ringnats
    }

    /// The binary's file name (`ringnats`, `nats-server`): how it starts its error messages.
    pub fn name(&self) -> String {
        self.bin
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Starts the broker and waits until its port answers with INFO. If the port was picked
    /// here and a parallel test took it before the broker bound it (the broker exits with
    /// "address already in use"), starts again on another.
    #[track_caller]
    pub fn start(&self) -> Server {
        let listen = matches!(self.config, Config::Listen(_));
        assert!(
            listen || self.port.is_some(),
            "start waits on the client port: give `port` with this config, or `spawn`"
        );
        // Another try moves to another port and a fresh directory: only when both are ours.
        let retry = listen && self.port.is_none() && self.dir.is_none();
        let attempts = if retry { PORT_ATTEMPTS } else { 1 };
        for attempt in 1..=attempts {
            let mut server = self.spawn();
            if attempt < attempts && server.port_taken() {
                continue;
            }
            server.wait_ready();
            return server;
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts the process without waiting for it to listen (for start-up failures, or a
    /// port set by flags that the test reads from the log).
    pub fn spawn(&self) -> Server {
        let port = match (&self.config, self.port) {
            (_, Some(port)) => Some(port),
            (Config::Listen(_), None) => Some(free_port()),
            _ => None,
        };
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => scratch_dir(),
        };
        let mut cmd = self.command();
        let config_path = dir.join(CONFIG_FILE);
        let text = match &self.config {
            Config::Listen(extra) => Some(listen_config(port.expect("a port"), extra)),
            Config::Text(text) => Some(text.clone()),
            Config::None => None,
        };
        if let Some(text) = text {
            fs::write(&config_path, text).expect("write config");
            cmd.arg("-c").arg(&config_path);
        }
        if let Some(shards) = self.shards {
            cmd.arg("--shards").arg(shards.to_string());
        }
        cmd.args(&self.args);
        let log = File::create(dir.join(OUTPUT_LOG)).expect("create output log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        let label = format!("{cmd:?}");
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        Server {
            child,
            dir,
            port,
            label,
            is_ringnats: self.is_ringnats,
            shards: self.shards.unwrap_or(1),
        }
    }

    /// Runs the binary as a command — wrapper, binary and `args` only: no config, no
    /// `--shards` — with `stdin` as its input, to its exit (within `COMMAND_TIMEOUT`).
    pub fn run(&self, args: &[&str], stdin: &[u8]) -> Finished {
        run_to_exit(self.command().args(args), stdin, COMMAND_TIMEOUT)
    }

    /// The wrapper and binary with the environment, no arguments of the binary yet.
    fn command(&self) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(&self.bin);
                cmd
            }
            None => Command::new(&self.bin),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }
}

/// The config text `Launch::config(extra)` writes for `port`.
fn listen_config(port: u16, extra: &str) -> String {
    format!("listen: 127.0.0.1:{port}\n{extra}\n")
}

/// Starts nats-server for the comparison sibling of a test that runs against the broker under
/// test (`Server::start`): `listen` on a free port, `config_extra`, `args`. `None` (skipped)
/// when nats-server is not installed, a failure under CI (see `nats_server_bin`).
#[track_caller]
pub fn start_nats_server(config_extra: &str, args: &[&str]) -> Option<Server> {
    Some(
        Launch::nats_server()?
            .config(config_extra)
            .args(args)
            .start(),
    )
}

// ---- a running broker ----------------------------------------------------------------------

/// A broker process, killed on drop (its output and other logs printed if the test panicked).
pub struct Server {
    child: Child,
    dir: PathBuf,
    port: Option<u16>,
    /// The command line, for messages.
    label: String,
    is_ringnats: bool,
    shards: usize,
}

impl Server {
    /// Starts the broker under test (`Launch::under_test`) with `listen` on a free port and
    /// `config_extra`, and waits until it answers.
    #[track_caller]
    pub fn start(config_extra: &str) -> Server {
        Launch::under_test().config(config_extra).start()
    }

    /// The client port (panics for a server whose port was given by flags only).
    pub fn port(&self) -> u16 {
        self.port
            .expect("a server started with a known client port")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        url_of(self.port())
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port()))
    }

    /// True when the binary is ringnats (or the stand-in named so), not nats-server.
    pub fn is_ringnats(&self) -> bool {
        self.is_ringnats
    }

    /// Shard count the server was started with (1 for nats-server).
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// `Some(self)` when the server is ringnats; else `None`, with a note that `test` was
    /// skipped (for ringnats-only checks when `RINGNATS_TEST_SERVER` names nats-server: a
    /// choice of the run, not a missing install, so not a failure under CI).
    pub fn ringnats_only(self, test: &str) -> Option<Server> {
        if self.is_ringnats {
            return Some(self);
        }
        eprintln!("{test}: skipped, the server under test is not ringnats");
        None
    }

    /// The scratch directory (config file, output log); tests may put more files in it.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// The config file's text.
    pub fn config_text(&self) -> String {
        fs::read_to_string(self.config_path()).expect("read config")
    }

    /// Replaces the config file's text (for a reload).
    pub fn rewrite_config(&self, text: &str) {
        fs::write(self.config_path(), text).expect("rewrite config");
    }

    /// Replaces the config with `listen` on this server's port and `extra`, as
    /// `Launch::config` writes it (for a reload).
    pub fn rewrite_config_extra(&self, extra: &str) {
        self.rewrite_config(&listen_config(self.port(), extra));
    }

    /// Reloads with `listen` on this port and `extra`: rewrites the config, sends SIGHUP and
    /// waits for the next `Reloaded server configuration` line; returns the output.
    #[track_caller]
    pub fn reload(&self, extra: &str, within: Duration) -> String {
        let before = self.output().matches(RELOADED).count();
        self.rewrite_config_extra(extra);
        self.signal("HUP");
        self.wait_output_count(RELOADED, before + 1, within)
    }

    /// Combined stdout and stderr so far.
    pub fn output(&self) -> String {
        fs::read_to_string(self.dir.join(OUTPUT_LOG)).unwrap_or_default()
    }

    /// Waits until the output holds `count` occurrences of `needle`; returns the output.
    #[track_caller]
    pub fn wait_output_count(&self, needle: &str, count: usize, within: Duration) -> String {
        wait_file_count(&self.dir.join(OUTPUT_LOG), needle, count, within)
    }

    /// Waits until the output contains `needle`; returns the output.
    #[track_caller]
    pub fn wait_output(&self, needle: &str, within: Duration) -> String {
        self.wait_output_count(needle, 1, within)
    }

    /// Waits until a line of the output contains `needle`; returns the first such line.
    #[track_caller]
    pub fn wait_line(&self, needle: &str, within: Duration) -> String {
        let output = self.wait_output(needle, within);
        let line = output.lines().find(|line| line.contains(needle));
        line.expect("a line holds the needle").to_owned()
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`, `USR1`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits for the process to exit; panics (with its output) if it is still running.
    #[track_caller]
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        match wait_child(&mut self.child, within) {
            Some(status) => status,
            None => panic!(
                "{} still running after {within:?}:\n{}",
                self.label,
                self.output()
            ),
        }
    }

    /// Graceful stop: `signal` (`TERM`, `INT`), then waits for the exit within `within`.
    #[track_caller]
    pub fn stop(&mut self, signal: &str, within: Duration) -> ExitStatus {
        self.signal(signal);
        self.wait_exit(within)
    }

    /// Panics (with the output) if the process has exited.
    #[track_caller]
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{} exited with {status}:\n{}", self.label, self.output());
        }
    }

    /// Resident set size now (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        self.status_bytes("VmRSS")
    }

    /// Peak resident set size (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.status_bytes("VmHWM")
    }

    /// Resets the peak (`VmHWM`) to the current RSS, so that `peak_rss_bytes` covers what
    /// follows. False where that is not allowed; the caller then samples `rss_bytes`.
    pub fn reset_peak_rss(&self) -> bool {
        fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// A `kB` field of `/proc/<pid>/status`, in bytes.
    fn status_bytes(&self, field: &str) -> u64 {
        let pid = self.pid();
        let text = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
        let line = text
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .expect("a number of kB");
        kib * 1024
    }

    /// Whether the broker exited at start because its port was taken (waits until it either
    /// answers, exits, or `START_TIMEOUT` passes; `wait_ready` then reports the latter).
    fn port_taken(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("try_wait").is_some() {
                return self.output().contains(PORT_TAKEN);
            }
            if answers_with_info(self.addr()) {
                return false;
            }
            // Polling a port that is not listening yet: there is no event to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[track_caller]
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.assert_alive();
            if answers_with_info(self.addr()) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready in {START_TIMEOUT:?}:\n{}",
                self.label,
                self.output()
            );
            // Polling a port that is not listening yet: there is no event to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
            return;
        }
        eprintln!("---- output of {} ----\n{}", self.label, self.output());
        // Log files the test named in flags (`-l`), rotated ones too.
        let mut logs: Vec<PathBuf> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                name != OUTPUT_LOG && name.contains(".log")
            })
            .collect();
        logs.sort();
        for log in logs {
            let text = fs::read_to_string(&log).unwrap_or_default();
            eprintln!("---- {} ----\n{text}", log.display());
        }
    }
}

fn answers_with_info(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let mut conn = RawConn::from_stream(stream);
    let ready = conn.try_read_line(Instant::now() + PROBE_INFO_MAX);
    let _ = conn.stream.shutdown(Shutdown::Both);
    matches!(ready, Ok(line) if line.starts_with(b"INFO "))
}

// ---- ports, scratch directories, files, commands -----------------------------------------

/// `nats://127.0.0.1:<port>`.
pub fn url_of(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// A fresh 127.0.0.1 port for a test to put in a config file or a `-p` flag.
pub fn pick_port() -> u16 {
    free_port()
}

/// A fresh, empty scratch directory (removed by whoever owns it).
pub fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let seq = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("ringnats-itest-{}-{seq}", std::process::id());
    let dir = std::env::temp_dir().join(name);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Waits until the file at `path` holds `count` occurrences of `needle`; returns its text.
#[track_caller]
pub fn wait_file_count(path: &Path, needle: &str, count: usize, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        if text.matches(needle).count() >= count {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} has not {count}x {needle:?} after {within:?}:\n{text}",
            path.display()
        );
        // A log line is written by another process; polling the file is the only way to see it.
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The output of a command that was expected to exit by itself.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` with `stdin_data` on its standard input, collecting both outputs; kills it and
/// panics if it has not exited within `within`.
pub fn run_to_exit(cmd: &mut Command, stdin_data: &[u8], within: Duration) -> Finished {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    // The child may exit without reading; a broken pipe then is not the test's concern.
    let _ = stdin.write_all(stdin_data);
    drop(stdin);
    let stdout = read_in_thread(child.stdout.take().expect("stdout"));
    let stderr = read_in_thread(child.stderr.take().expect("stderr"));
    let status = wait_child(&mut child, within);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} still running after {within:?}");
    };
    Finished {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn read_in_thread(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Polls `child` until it exits or `within` passes.
fn wait_child(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        // No event to block on for a child's exit here but its status; poll briefly.
        std::thread::sleep(Duration::from_millis(10));
    }
}
