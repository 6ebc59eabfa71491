//! Log output in nats-server's shape: `[pid] 2006/01/02 15:04:05.000000 [INF] message`.
//!
//! Cold. Levels map as nats-server's: error `[ERR]`, warn `[WRN]`, info `[INF]`, debug `[DBG]`
//! (`-D`), trace `[TRC]` (`-V`). Structured fields follow the message as `key=value`.
//! Invariants: nothing secret is ever passed to a log macro (see `protocol::connect` for the
//! redacting `Debug` of CONNECT, `trace` for the redacted CONNECT trace); and every byte a client
//! chose (ops, subjects, sids, client names, CONNECT fields, `-ERR` text, parser excerpts)
//! reaches a log line only through [`escaped`] or [`quoted`], so a client can never start a
//! line of its own or send control bytes to the operator's terminal (issue 8 §5).
//! [`client`] holds the client events an operator alerts on, [`trace`] the `-V` protocol trace.

pub mod client;
pub mod trace;

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
            let file = open_log_file(path)?;
            // tracing's writer for a shared file needs a lock; logging is cold.
            #[allow(clippy::disallowed_types)]
            let log_file = LogFile {
                path: path.to_path_buf(),
                file: std::sync::Mutex::new(file),
            };
            let _ = LOG_FILE.set(log_file);
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .event_format(format)
                .with_writer(|| LogFileWriter)
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

/// The log file of `-l`/`logfile`, kept so SIGUSR1 can reopen it (nats-server
/// `ReOpenLogFile`): logrotate moves the file, then the next lines go to a new one.
static LOG_FILE: std::sync::OnceLock<LogFile> = std::sync::OnceLock::new();

struct LogFile {
    path: std::path::PathBuf,
    // Written by whichever thread logs; logging is cold.
    #[allow(clippy::disallowed_types)]
    file: std::sync::Mutex<std::fs::File>,
}

fn open_log_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Writes each formatted line to the current `LOG_FILE`.
struct LogFileWriter;

impl Write for LogFileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match LOG_FILE.get() {
            Some(log) => log
                .file
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .write(buf),
            None => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reopens the log file at its path (SIGUSR1). `None` when logging goes to standard error.
pub fn reopen_log_file() -> Option<std::io::Result<()>> {
    let log = LOG_FILE.get()?;
    Some(open_log_file(&log.path).map(|file| {
        *log.file.lock().unwrap_or_else(|e| e.into_inner()) = file;
    }))
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

/// Client-supplied bytes, safe inside one log line: see [`escaped`].
#[derive(Clone, Copy)]
pub struct Escaped<'a> {
    bytes: &'a [u8],
    quote: bool,
}

/// `bytes` as they may appear in a log line: `\n`, `\r`, `\t` and Go's other short escapes,
/// `\xNN` for the other bytes below 0x20, for 0x7f and for bytes that are not UTF-8, and
/// `\uNNNN` for C1 controls and the invisible or line-breaking characters some viewers honour
/// (U+2028, U+2029, bidi overrides). Printable text, backslashes included, is left as it is, so
/// an ordinary subject reads as the client sent it.
pub fn escaped(bytes: &[u8]) -> Escaped<'_> {
    Escaped {
        bytes,
        quote: false,
    }
}

/// `bytes` in double quotes as Go's `%q` writes them (what nats-server's log lines use for
/// subjects, users and the client name), with [`escaped`]'s guarantees: `"` and `\` are
/// escaped too, so the quoted text cannot end early.
pub fn quoted(bytes: &[u8]) -> Escaped<'_> {
    Escaped { bytes, quote: true }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quote {
            f.write_str("\"")?;
        }
        write_escaped(f, self.bytes, self.quote)?;
        if self.quote {
            f.write_str("\"")?;
        }
        Ok(())
    }
}

/// Writes `bytes` escaped (see [`escaped`]); with `quote`, `"` and `\` too. Runs of safe text
/// are written whole.
fn write_escaped(f: &mut impl fmt::Write, bytes: &[u8], quote: bool) -> fmt::Result {
    for chunk in bytes.utf8_chunks() {
        let text = chunk.valid();
        let mut safe_from = 0;
        for (at, c) in text.char_indices() {
            let Some(escape) = escape_of(c, quote) else {
                continue;
            };
            f.write_str(&text[safe_from..at])?;
            safe_from = at + c.len_utf8();
            match escape {
                Escape::Short(s) => f.write_str(s)?,
                Escape::Byte(b) => write!(f, "\\x{b:02x}")?,
                Escape::Unicode(u) => write!(f, "\\u{u:04x}")?,
            }
        }
        f.write_str(&text[safe_from..])?;
        for b in chunk.invalid() {
            write!(f, "\\x{b:02x}")?;
        }
    }
    Ok(())
}

enum Escape {
    Short(&'static str),
    Byte(u8),
    Unicode(u32),
}

/// How `c` is written in a log line, or `None` when it is written as it is.
fn escape_of(c: char, quote: bool) -> Option<Escape> {
    let escape = match c {
        '\n' => Escape::Short("\\n"),
        '\r' => Escape::Short("\\r"),
        '\t' => Escape::Short("\\t"),
        '\u{7}' => Escape::Short("\\a"),
        '\u{8}' => Escape::Short("\\b"),
        '\u{b}' => Escape::Short("\\v"),
        '\u{c}' => Escape::Short("\\f"),
        '"' if quote => Escape::Short("\\\""),
        '\\' if quote => Escape::Short("\\\\"),
        c if c.is_ascii_control() => {
            u8::try_from(c).map_or(Escape::Unicode(u32::from(c)), Escape::Byte)
        }
        c if c.is_control() || is_invisible_format(c) => Escape::Unicode(u32::from(c)),
        _ => return None,
    };
    Some(escape)
}

/// Line and paragraph separators, zero-width and bidi-control characters: not controls to
/// Rust, but some terminals and log viewers break lines at them or reorder text around them.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

/// Writes a line to standard error even before logging is set up (start-up errors).
pub fn early_error(msg: &str) {
    let _ = writeln!(std::io::stderr(), "ringnats: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_text_never_breaks_a_line() {
        let forged = b"x\n[1] 2026/01/01 00:00:00.000000 [ERR] forged\r\x0c\x1b[2J\x7f\xc3";
        let out = escaped(forged).to_string();
        assert_eq!(
            out,
            r"x\n[1] 2026/01/01 00:00:00.000000 [ERR] forged\r\f\x1b[2J\x7f\xc3"
        );
        assert!(!out.bytes().any(|b| b < 0x20 || b == 0x7f));
        let separators = escaped("a\u{2028}b\u{85}c\u{202e}d".as_bytes()).to_string();
        assert_eq!(separators, r"a\u2028b\u0085c\u202ed");
        assert_eq!(
            escaped(br"sub.\n.x").to_string(),
            r"sub.\n.x",
            "printable text kept"
        );
        assert_eq!(escaped("café.>".as_bytes()).to_string(), "café.>");
    }

    #[test]
    fn quoted_matches_go_percent_q() {
        assert_eq!(quoted(b"denied.x").to_string(), r#""denied.x""#);
        assert_eq!(quoted(b"a\"b\\c").to_string(), r#""a\"b\\c""#);
        assert_eq!(quoted(b"a\nb\x07c").to_string(), r#""a\nb\ac""#);
        assert_eq!(quoted(b"he\x0clo\x01").to_string(), r#""he\flo\x01""#);
        assert_eq!(quoted(b"caf\xc3").to_string(), r#""caf\xc3""#);
    }

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
