//! `ringnats bench`: a NATS load generator shaped like `nats bench` (same flags where they
//! exist, same report lines and CSV columns), with its own blocking client.
//!
//! Cold as a whole: it runs once and exits, one OS thread per client. The per-message paths
//! (`pubsub` publishers writing blocks of PUB frames, `scan` counting MSG frames) are hot and
//! say so in their own module docs. Invariants: publishers start only after every subscriber
//! has subscribed and seen its PONG; a publisher's time ends after a final PING/PONG, so it
//! counts only what the server took; every wait is bounded (a stalled run fails with counts,
//! it does not hang); no secret reaches an error or the output.
//!
//! Modes: `--pub N` / `--sub M` (either or both: publishers only, subscribers only, fan-out,
//! fan-in; `--queue NAME` for a queue group), `--request` (requesters and in-process
//! repliers, latency percentiles from an HDR histogram), `--reply` (repliers only, for a
//! requester elsewhere), `--connect-storm` (connects per second).

pub mod client;
pub mod credentials;
pub mod latency;
pub mod progress;
pub mod pubsub;
pub mod report;
pub mod scan;
pub mod storm;
pub mod tls;
pub mod units;

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use self::client::{ConnectOptions, ServerAddr};
use self::credentials::{CredentialFlags, Credentials};
use self::report::Benchmark;
use self::tls::TlsFlags;
use self::units::{comma, human_bytes};
use crate::cli::BenchArgs;

/// `--msgs` when neither `--msgs` nor `--duration` is given (as `nats bench`).
pub const DEFAULT_MSGS: u64 = 100_000;
/// A connection storm without `--msgs` or `--duration` runs this long.
pub const DEFAULT_STORM_DURATION: Duration = Duration::from_secs(5);
/// Connection storm workers without `--workers`.
pub const DEFAULT_STORM_WORKERS: usize = 4;

/// Why a bench run failed; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Usage(String),
    #[error("connect to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: server error: {message}")]
    Server { url: String, message: String },
    #[error("{url}: connection closed by the server")]
    Closed { url: String },
    #[error("{url}: {context}: {source}")]
    Io {
        url: String,
        context: &'static str,
        source: io::Error,
    },
    #[error("{url}: protocol error: {what}")]
    Protocol { url: String, what: &'static str },
    #[error("{url}: timed out {what}")]
    Timeout { url: String, what: &'static str },
    /// A client stopped making progress; the text says how far it got.
    #[error("{0}")]
    Stalled(String),
    /// This client stopped because another one failed (never the error reported).
    #[error("stopped because another client failed")]
    Aborted,
    #[error("cannot start a client thread: {0}")]
    Thread(io::Error),
    #[error("{path}: {source}")]
    Csv { path: String, source: io::Error },
}

/// What a run does, from the mode flags.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Mode {
    PubSub { pubs: usize, subs: usize },
    Request { requesters: usize, repliers: usize },
    Reply { repliers: usize },
    ConnectStorm { workers: usize },
}

/// When a run (or each client's share of it) ends.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub struct Bound {
    /// Total messages (requests, connects), split over the clients; `None` with a duration.
    pub msgs: Option<u64>,
    pub duration: Option<Duration>,
}

/// A validated run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub mode: Mode,
    pub subject: String,
    pub queue: Option<String>,
    pub bound: Bound,
    pub size: usize,
    pub csv: Option<PathBuf>,
    pub progress: bool,
    pub connect: ConnectOptions,
    /// Connection storm: log in as this many users in turn (`--users`).
    pub storm_users: Option<usize>,
    pub run_id: String,
}

/// Runs `ringnats bench`; the error is one line for standard error.
pub fn run(args: &BenchArgs) -> Result<(), String> {
    let plan = Plan::from_args(args).map_err(|e| format!("bench: {e}"))?;
    println!("{}", plan.header());
    let bench = run_plan(&plan).map_err(|e| format!("bench: {e}"))?;
    if let Some(path) = &plan.csv {
        std::fs::write(path, bench.csv()).map_err(|source| {
            let path = path.display().to_string();
            format!("bench: {}", BenchError::Csv { path, source })
        })?;
        println!("Saved metric data in csv file {}", path.display());
    }
    Ok(())
}

/// Runs the plan, prints its report to standard output, and returns it for the CSV.
fn run_plan(plan: &Plan) -> Result<Benchmark, BenchError> {
    match plan.mode {
        Mode::PubSub { pubs, subs } => {
            let bench = pubsub::run(plan, pubs, subs)?;
            print!("\n{}", bench.report());
            Ok(bench)
        }
        Mode::Request {
            requesters,
            repliers,
        } => {
            let run = latency::run_requests(plan, requesters, repliers)?;
            print!("\n{}", run.report());
            Ok(run.bench)
        }
        Mode::Reply { repliers } => {
            let bench = latency::run_repliers(plan, repliers)?;
            print!("\n{}", bench.report());
            Ok(bench)
        }
        Mode::ConnectStorm { workers } => {
            let run = storm::run(plan, workers)?;
            print!("\n{}", run.report());
            Ok(run.bench)
        }
    }
}

impl Plan {
    /// Checks the flags and loads credential and TLS files.
    pub fn from_args(args: &BenchArgs) -> Result<Plan, BenchError> {
        let usage = |msg: &str| BenchError::Usage(msg.to_string());
        let mode = mode_from_args(args)?;
        if args.subject.is_empty() || args.subject.contains(char::is_whitespace) {
            return Err(usage("the subject must be non-empty and hold no spaces"));
        }
        if args.msgs == Some(0) {
            return Err(usage("--msgs must be at least 1"));
        }
        let bound = Bound {
            msgs: match (args.msgs, args.duration, mode) {
                (None, None, Mode::ConnectStorm { .. } | Mode::Reply { .. }) => None,
                (None, None, _) => Some(DEFAULT_MSGS),
                (msgs, _, _) => msgs,
            },
            duration: match (args.msgs, args.duration, mode) {
                (None, None, Mode::ConnectStorm { .. }) => Some(DEFAULT_STORM_DURATION),
                (_, duration, _) => duration,
            },
        };
        let connect = connect_options(args)?;
        let storm_users = match args.users {
            None => None,
            Some(0) => return Err(usage("--users must be at least 1")),
            Some(_) if !matches!(mode, Mode::ConnectStorm { .. }) => {
                return Err(usage("--users is for --connect-storm"));
            }
            Some(_) if !matches!(connect.credentials, Credentials::UserPassword { .. }) => {
                return Err(usage("--users needs --user and --password"));
            }
            users => users,
        };
        Ok(Plan {
            mode,
            subject: args.subject.clone(),
            queue: args.queue.clone(),
            bound,
            size: args.size,
            csv: args.csv.clone(),
            progress: !args.no_progress,
            connect,
            storm_users,
            run_id: report::new_run_id(),
        })
    }

    /// The first output line: `Starting benchmark [...]`, as `nats bench` opens its runs.
    pub fn header(&self) -> String {
        let mut fields = Vec::new();
        if !matches!(self.mode, Mode::ConnectStorm { .. }) {
            fields.push(format!("subject={}", self.subject));
        }
        if let Some(msgs) = self.bound.msgs {
            fields.push(format!(
                "msgs={}",
                comma(i64::try_from(msgs).unwrap_or(i64::MAX))
            ));
        }
        if let Some(duration) = self.bound.duration {
            fields.push(format!("duration={duration:?}"));
        }
        let (kind, clients) = match self.mode {
            Mode::PubSub { pubs, subs } => ("", format!("pubs={pubs}, subs={subs}")),
            Mode::Request {
                requesters,
                repliers,
            } => (
                "request/reply ",
                format!("requesters={requesters}, repliers={repliers}"),
            ),
            Mode::Reply { repliers } => ("reply ", format!("repliers={repliers}")),
            Mode::ConnectStorm { workers } => ("connect storm ", format!("workers={workers}")),
        };
        if !matches!(self.mode, Mode::ConnectStorm { .. }) {
            fields.push(format!("msgsize={}", size_text(self.size)));
        }
        fields.push(clients);
        if let Some(queue) = &self.queue {
            fields.push(format!("queue={queue}"));
        }
        format!("Starting {kind}benchmark [{}]", fields.join(", "))
    }
}

fn size_text(size: usize) -> String {
    if size < 1024 {
        format!("{size} B")
    } else {
        human_bytes(size as f64)
    }
}

fn mode_from_args(args: &BenchArgs) -> Result<Mode, BenchError> {
    let usage = |msg: &str| Err(BenchError::Usage(msg.to_string()));
    let exclusive = [args.request, args.reply, args.connect_storm];
    if exclusive.iter().filter(|&&on| on).count() > 1 {
        return usage("give only one of --request, --reply and --connect-storm");
    }
    let mode = if args.connect_storm {
        Mode::ConnectStorm {
            workers: args.workers.unwrap_or(DEFAULT_STORM_WORKERS),
        }
    } else if args.request {
        Mode::Request {
            requesters: args.pubs.unwrap_or(1),
            repliers: args.subs.unwrap_or(1),
        }
    } else if args.reply {
        Mode::Reply {
            repliers: args.subs.unwrap_or(1),
        }
    } else {
        let (pubs, subs) = match (args.pubs, args.subs) {
            (None, None) => (1, 0),
            (pubs, subs) => (pubs.unwrap_or(0), subs.unwrap_or(0)),
        };
        Mode::PubSub { pubs, subs }
    };
    match mode {
        Mode::PubSub { pubs: 0, subs: 0 } => usage("nothing to do: give --pub N and/or --sub M"),
        Mode::PubSub { subs: 0, .. } if args.queue.is_some() => usage("--queue needs --sub M"),
        Mode::Request { requesters: 0, .. } => usage("--request needs at least one --pub"),
        Mode::Reply { repliers: 0 } => usage("--reply needs at least one --sub"),
        Mode::ConnectStorm { workers: 0 } => usage("--workers must be at least 1"),
        _ if args.workers.is_some() && !args.connect_storm => {
            usage("--workers is for --connect-storm")
        }
        mode => Ok(mode),
    }
}

fn connect_options(args: &BenchArgs) -> Result<ConnectOptions, BenchError> {
    let addr = ServerAddr::parse(&args.server).map_err(BenchError::Usage)?;
    let credentials = Credentials::from_flags(CredentialFlags {
        token: args.token.as_deref(),
        user: args.user.as_deref(),
        password: args.password.as_deref(),
        nkey: args.nkey.as_deref(),
        creds: args.creds.as_deref(),
    })
    .map_err(BenchError::Usage)?;
    let tls = tls::client_config(TlsFlags {
        ca: args.tlsca.as_deref(),
        cert: args.tlscert.as_deref(),
        key: args.tlskey.as_deref(),
    })
    .map_err(BenchError::Usage)?;
    Ok(ConnectOptions {
        addr,
        credentials,
        tls,
        name: "ringnats-bench".to_string(),
    })
}

/// Spawns a named client thread.
fn spawn<T, F>(name: String, body: F) -> Result<std::thread::JoinHandle<T>, BenchError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    std::thread::Builder::new()
        .name(name)
        .spawn(body)
        .map_err(BenchError::Thread)
}

/// Joins client threads; the first real error wins over `Aborted` (its echo in the others).
fn join_all<T>(
    handles: Vec<std::thread::JoinHandle<Result<T, BenchError>>>,
) -> Result<Vec<T>, BenchError> {
    let mut results = Vec::with_capacity(handles.len());
    let mut first_error: Option<BenchError> = None;
    for handle in handles {
        let outcome = handle
            .join()
            .unwrap_or_else(|_| Err(BenchError::Stalled("a client thread panicked".into())));
        match outcome {
            Ok(value) => results.push(value),
            Err(BenchError::Aborted) => {
                first_error.get_or_insert(BenchError::Aborted);
            }
            Err(e) => {
                if first_error
                    .as_ref()
                    .is_none_or(|f| matches!(f, BenchError::Aborted))
                {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(results),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn plan(args: &[&str]) -> Result<Plan, BenchError> {
        let argv = std::iter::once("ringnats")
            .chain(std::iter::once("bench"))
            .chain(args.iter().copied());
        let cli = Cli::try_parse_from(argv).unwrap();
        let Some(Command::Bench(bench)) = cli.command else {
            panic!("not bench");
        };
        Plan::from_args(&bench)
    }

    #[test]
    fn defaults_are_one_publisher_and_100k_msgs() {
        let plan = plan(&[]).unwrap();
        assert_eq!(plan.mode, Mode::PubSub { pubs: 1, subs: 0 });
        assert_eq!(plan.bound.msgs, Some(DEFAULT_MSGS));
        assert_eq!(plan.bound.duration, None);
        assert_eq!(plan.size, 128);
        assert_eq!(plan.connect.addr.port, 4222);
    }

    #[test]
    fn modes_from_flags() {
        let p = plan(&["--sub", "2", "--queue", "q", "--msgs", "10"]).unwrap();
        assert_eq!(p.mode, Mode::PubSub { pubs: 0, subs: 2 });
        let p = plan(&["--request"]).unwrap();
        assert_eq!(
            p.mode,
            Mode::Request {
                requesters: 1,
                repliers: 1
            }
        );
        let p = plan(&["--connect-storm", "--workers", "3"]).unwrap();
        assert_eq!(p.mode, Mode::ConnectStorm { workers: 3 });
        assert_eq!(p.bound.duration, Some(DEFAULT_STORM_DURATION));
        assert_eq!(p.bound.msgs, None);
        let p = plan(&["--pub", "2", "--duration", "2s", "--size", "1kb"]).unwrap();
        assert_eq!(
            p.bound,
            Bound {
                msgs: None,
                duration: Some(Duration::from_secs(2))
            }
        );
        assert_eq!(p.size, 1024);
        assert_eq!(
            p.header(),
            "Starting benchmark [subject=bench, duration=2s, msgsize=1.00 KB, pubs=2, subs=0]"
        );
    }

    #[test]
    fn bad_combinations_are_usage_errors() {
        for args in [
            &["--pub", "0", "--sub", "0"][..],
            &["--queue", "q"],
            &["--request", "--reply"],
            &["--msgs", "0"],
            &["--workers", "2"],
            &["--connect-storm", "--workers", "0"],
            &["--token", "t", "--user", "u"],
            &["-s", "http://x"],
            &["a b"],
        ] {
            assert!(matches!(plan(args), Err(BenchError::Usage(_))), "{args:?}");
        }
    }
}
