//! Signal handling on the control thread: SIGINT/SIGTERM stop, SIGHUP reloads.
//!
//! Cold. Shards never see signals; the control thread turns them into `Server` calls.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
use signal_hook::iterator::Signals;

/// What the control thread should do next.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Control {
    Stop(&'static str),
    Reload,
    /// A shard failed (it raised SIGUSR2 through `notify_failure`).
    ShardFailed,
}

pub struct SignalWaiter {
    signals: Signals,
}

impl SignalWaiter {
    pub fn new() -> std::io::Result<SignalWaiter> {
        Ok(SignalWaiter {
            signals: Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR2])?,
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
                    SIGUSR2 => Control::ShardFailed,
                    _ => continue,
                };
            }
        }
    }
}

/// Wakes the control thread after a shard failure.
pub fn notify_failure() {
    let _ = signal_hook::low_level::raise(SIGUSR2);
}
