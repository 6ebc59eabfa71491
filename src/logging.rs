//! Log output in nats-server's shape: `[pid] 2006/01/02 15:04:05.000000 [INF] message`.
//!
//! Cold. Levels map as nats-server's: error `[ERR]`, warn `[WRN]`, info `[INF]`, debug `[DBG]`
//! (`-D`), trace `[TRC]` (`-V`). Structured fields follow the message as `key=value`.
//! Invariant: nothing secret is ever passed to a log macro (see `protocol::connect` for the
//! redacting `Debug` of CONNECT).

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::reload;

type ReloadHandle = reload::Handle<LevelFilter, tracing_subscriber::Registry>;
static LEVEL: OnceLock<ReloadHandle> = OnceLock::new();

/// The level the `debug`/`trace` options ask for.
pub fn level_for(debug: bool, trace: bool) -> LevelFilter {
    if trace {
        LevelFilter::TRACE
    } else if debug {
        LevelFilter::DEBUG
    } else {
        LevelFilter::INFO
    }
}

/// Installs the global subscriber. Logs go to `logfile` (appended) or standard error.
pub fn init(level: LevelFilter, logtime: bool, logfile: Option<&Path>) -> std::io::Result<()> {
    let (filter, handle) = reload::Layer::new(level);
    let format = NatsFormat {
        logtime,
        pid: std::process::id(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    match logfile {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            let writer = std::sync::Mutex::new(file);
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .event_format(format)
                .with_writer(writer);
            let _ = registry.with(layer).try_init();
        }
        None => {
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .event_format(format)
                .with_writer(std::io::stderr);
            let _ = registry.with(layer).try_init();
        }
    }
    let _ = LEVEL.set(handle);
    Ok(())
}

/// Changes the level at run time (reload of `debug`/`trace`).
pub fn set_level(level: LevelFilter) {
    if let Some(handle) = LEVEL.get() {
        let _ = handle.modify(|l| *l = level);
    }
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
