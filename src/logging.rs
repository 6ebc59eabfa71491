//! Log output in nats-server's shape: `[pid] 2006/01/02 15:04:05.000000 [INF] message`.
//!
//! Cold. Levels map as nats-server's: error `[ERR]`, warn `[WRN]`, info `[INF]`, debug `[DBG]`
//! (`-D`), trace `[TRC]` (`-V`). Structured fields follow the message as `key=value`.
//! Invariant: nothing secret is ever passed to a log macro (see `protocol::connect` for the
//! redacting `Debug` of CONNECT).

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

/// Bit 0: `debug`, bit 1: `trace`. Read by the log filter for each debug/trace event (cold:
/// those are per connection or behind a per-read trace flag); written on start and reload.
static LEVELS: AtomicU8 = AtomicU8::new(0);
const DEBUG_BIT: u8 = 1;
const TRACE_BIT: u8 = 2;

/// The target of errors the server stops on, printed `[FTL]` as nats-server's `Fatalf`:
/// `tracing::error!(target: FATAL_TARGET, ...)`.
pub const FATAL_TARGET: &str = "ringnats::fatal";

/// Sets which of `[DBG]` and `[TRC]` are shown. As in nats-server they are independent: `-V`
/// alone shows protocol traces without debug lines.
pub fn set_levels(debug: bool, trace: bool) {
    let bits = if debug { DEBUG_BIT } else { 0 } | if trace { TRACE_BIT } else { 0 };
    LEVELS.store(bits, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
}

fn is_shown(level: &Level) -> bool {
    let bits = LEVELS.load(Ordering::Relaxed);
    match *level {
        Level::TRACE => bits & TRACE_BIT != 0,
        Level::DEBUG => bits & DEBUG_BIT != 0,
        _ => true,
    }
}

/// Installs the global subscriber. Logs go to `logfile` (appended) or standard error.
pub fn init(
    debug: bool,
    trace: bool,
    logtime: bool,
    logfile: Option<&Path>,
) -> std::io::Result<()> {
    set_levels(debug, trace);
    // Dynamic: the answer changes on reload, so it must not be cached per call site.
    let filter = tracing_subscriber::filter::dynamic_filter_fn(|meta, _| is_shown(meta.level()));
    let format = NatsFormat {
        logtime,
        pid: std::process::id(),
    };
    let registry = tracing_subscriber::registry();
    match logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            // tracing's writer for a shared file needs a lock; logging is cold.
            #[allow(clippy::disallowed_types)]
            let writer = std::sync::Mutex::new(file);
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .event_format(format)
                .with_writer(writer)
                .with_filter(filter);
            let _ = registry.with(layer).try_init();
        }
        None => {
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .event_format(format)
                .with_writer(std::io::stderr)
                .with_filter(filter);
            let _ = registry.with(layer).try_init();
        }
    }
    Ok(())
}

struct NatsFormat {
    logtime: bool,
    pid: u32,
}

impl<S, N> FormatEvent<S, N> for NatsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(w, "[{}] ", self.pid)?;
        if self.logtime {
            write!(w, "{} ", Timestamp::now())?;
        }
        let tag = match *event.metadata().level() {
            Level::ERROR if event.metadata().target() == FATAL_TARGET => "[FTL]",
            Level::ERROR => "[ERR]",
            Level::WARN => "[WRN]",
            Level::INFO => "[INF]",
            Level::DEBUG => "[DBG]",
            Level::TRACE => "[TRC]",
        };
        write!(w, "{tag} ")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// UTC wall-clock time as `2006/01/02 15:04:05.000000`.
struct Timestamp {
    secs: u64,
    micros: u32,
}

impl Timestamp {
    fn now() -> Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            secs: d.as_secs(),
            micros: d.subsec_micros(),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = (self.secs / 86_400) as i64;
        let rem = self.secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}.{:06}",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60,
            self.micros
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Writes a line to standard error even before logging is set up (start-up errors).
pub fn early_error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "ringnats: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        let t = Timestamp {
            secs: 1_700_000_000,
            micros: 42,
        };
        assert_eq!(t.to_string(), "2023/11/14 22:13:20.000042");
    }
}
