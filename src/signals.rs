//! Signal handling on the control thread, as nats-server's `handleSignal`: SIGINT/SIGTERM stop,
//! SIGHUP reloads, SIGUSR1 reopens the log file, SIGUSR2 enters lame-duck mode; and
//! `--signal`, which sends one of them to a running ringnats (nats-server `ProcessSignal`).
//!
//! Cold. Shards never see signals; the control thread turns them into `Server` calls. Shards
//! wake the control thread with `CHECK_SIGNAL`, a real-time signal no operator tool sends, so
//! every signal an operator sends keeps nats-server's meaning.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook::iterator::Signals;

/// What the control thread should do next.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Control {
    Stop(&'static str),
    Reload,
    /// SIGUSR1: reopen the log file (logrotate's recipe).
    ReopenLog,
    /// SIGUSR2: lame-duck mode.
    LameDuck,
    /// A shard failed, or lame-duck mode closed its last client: look at the server's state.
    Check,
}

/// The signal behind `Control::Check` (raised by `notify_control`).
fn check_signal() -> libc::c_int {
    libc::SIGRTMIN() + 3
}

pub struct SignalWaiter {
    signals: Signals,
}

impl SignalWaiter {
    pub fn new() -> std::io::Result<SignalWaiter> {
        Ok(SignalWaiter {
            signals: Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, check_signal()])?,
        })
    }

    /// Blocks until the next signal that matters.
    pub fn wait(&mut self) -> Control {
        loop {
            for sig in self.signals.wait() {
                return match sig {
                    SIGINT => Control::Stop("interrupt"),
                    SIGTERM => Control::Stop("terminated"),
                    SIGHUP => Control::Reload,
                    SIGUSR1 => Control::ReopenLog,
                    SIGUSR2 => Control::LameDuck,
                    s if s == check_signal() => Control::Check,
                    _ => continue,
                };
            }
        }
    }
}

/// Wakes the control thread to look at the server's state (a shard failed, lame-duck mode is
/// done).
pub fn notify_control() {
    let _ = signal_hook::low_level::raise(check_signal());
}

/// `--signal` commands and the signal each sends (nats-server `CommandToSignal`).
const COMMANDS: &[(&str, libc::c_int)] = &[
    ("stop", libc::SIGKILL),
    ("quit", libc::SIGINT),
    ("reopen", libc::SIGUSR1),
    ("reload", libc::SIGHUP),
    ("ldm", libc::SIGUSR2),
    ("term", libc::SIGTERM),
];

/// `--signal <command>[=<pid or pid file>]`: sends the command's signal to that process, or to
/// the one running ringnats when no pid is given. Errors are worded as nats-server's.
pub fn send_command(arg: &str) -> Result<(), String> {
    let mut parts = arg.split('=');
    let command = parts.next().unwrap_or_default();
    let pid = parts.next();
    let rest: Vec<&str> = parts.collect();
    if !rest.is_empty() {
        // Go's `%v` of a string slice: `[a b]`.
        return Err(format!("invalid signal parameters: [{}]", rest.join(" ")));
    }
    let pid = match pid.map(maybe_read_pid_file) {
        Some(text) => text
            .trim()
            .parse::<libc::pid_t>()
            .map_err(|_| format!("invalid pid: {text}"))?,
        None => the_running_ringnats()?,
    };
    let Some(&(_, signal)) = COMMANDS.iter().find(|(name, _)| *name == command) else {
        return Err(format!("unknown signal {command:?}"));
    };
    // SAFETY: kill(2) with plain integers has no memory effects in this process.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::kill(pid, signal) };
    if rc != 0 {
        return Err(go_errno_text(&std::io::Error::last_os_error()));
    }
    Ok(())
}

/// nats-server `maybeReadPidFile`: the file's contents if `pid` names a readable file.
fn maybe_read_pid_file(pid: &str) -> String {
    std::fs::read_to_string(pid).unwrap_or_else(|_| pid.to_string())
}

/// The pid of the one other process named `ringnats` (nats-server `resolvePids`).
fn the_running_ringnats() -> Result<libc::pid_t, String> {
    let me = std::process::id();
    let mut pids = Vec::new();
    let entries =
        std::fs::read_dir("/proc").map_err(|_| "unable to resolve pid, try providing one")?;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if pid != me && comm.trim_end() == "ringnats" {
            pids.push(pid);
        }
    }
    match pids.as_slice() {
        [] => Err("no ringnats processes running".to_string()),
        [pid] => libc::pid_t::try_from(*pid).map_err(|_| format!("invalid pid: {pid}")),
        many => {
            let list: Vec<String> = many.iter().map(u32::to_string).collect();
            Err(format!(
                "multiple ringnats processes running:\n{}",
                list.join("\n")
            ))
        }
    }
}

/// An OS error as Go prints it (`no such process`, not `No such process (os error 3)`).
pub fn go_errno_text(err: &std::io::Error) -> String {
    let text = err.to_string();
    let text = match text.rfind(" (os error ") {
        Some(at) => &text[..at],
        None => &text,
    };
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_signal_arguments_are_refused_as_nats_server_words_them() {
        assert_eq!(
            send_command("bogus=1").unwrap_err(),
            "unknown signal \"bogus\""
        );
        assert_eq!(send_command("ldm=abc").unwrap_err(), "invalid pid: abc");
        assert_eq!(
            send_command("ldm=1=2").unwrap_err(),
            "invalid signal parameters: [2]"
        );
    }

    #[test]
    fn os_errors_read_as_go_prints_them() {
        let err = std::io::Error::from_raw_os_error(libc::ESRCH);
        assert_eq!(go_errno_text(&err), "no such process");
        let err = std::io::Error::from_raw_os_error(libc::EADDRINUSE);
        assert_eq!(go_errno_text(&err), "address already in use");
    }
}
