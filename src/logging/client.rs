//! The client events an operator alerts on, logged at the default level in nats-server's words
//! and with its client prefix (`127.0.0.1:54012 - cid:5 - "v2.16.0:python3:name" - `):
//! authentication errors, publish and subscription violations, parser errors, oversized
//! payloads, slow consumers and a client's own `-ERR`.
//!
//! Cold: each runs once per such event, never per delivered message. Invariants: every line of
//! one kind passes one rate limit ([`LINES_PER_KIND_MAX`] per [`WINDOW`], process-wide, the
//! rest counted and reported in one line), so one hostile client cannot flood the log; every
//! client-chosen byte goes through [`escaped`](super::escaped) or [`quoted`](super::quoted);
//! no secret is ever read here (the user name and nkey public key are not secrets; passwords,
//! tokens and signatures are never touched).

use std::fmt;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::conn::Conn;
use crate::logging::{escaped, quoted, write_escaped};
use crate::protocol::{ParserLimits, ProtocolError};

/// Lines of one kind logged per [`WINDOW`]; the rest are counted and reported in one line
/// when the window ends. nats-server rate-limits some client lines by statement
/// (`RateLimitWarnf`, one per second); a limit per kind also holds when every line differs
/// (a client publishing to a new denied subject each time).
pub const LINES_PER_KIND_MAX: u32 = 10;

/// The rate-limit window (nats-server sweeps its rate-limited statements every second).
pub const WINDOW: Duration = Duration::from_secs(1);

/// The kinds of client event, each with its own rate limit.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Event {
    AuthError,
    PublishViolation,
    SubscriptionViolation,
    ParserError,
    MaxPayload,
    SlowConsumer,
    ClientError,
}

impl Event {
    const ALL: [Event; 7] = [
        Event::AuthError,
        Event::PublishViolation,
        Event::SubscriptionViolation,
        Event::ParserError,
        Event::MaxPayload,
        Event::SlowConsumer,
        Event::ClientError,
    ];

    /// The words that start this kind's lines (after the client prefix).
    pub fn words(self) -> &'static str {
        match self {
            Event::AuthError => "authentication error",
            Event::PublishViolation => "Publish Violation",
            Event::SubscriptionViolation => "Subscription Violation",
            Event::ParserError => "Client parser ERROR",
            Event::MaxPayload => "maximum payload exceeded",
            Event::SlowConsumer => "Slow Consumer Detected",
            Event::ClientError => "Client Error",
        }
    }

    fn limit(self) -> &'static RateLimit {
        &LIMITS[self as usize]
    }
}

static LIMITS: [RateLimit; Event::ALL.len()] = [const { RateLimit::new() }; Event::ALL.len()];

/// The prefix nats-server puts before a client's log lines: `<addr> - cid:<id>`, then
/// ` - "<version>:<lang>:<name>"` (the parts the client sent, `%q`-quoted) once CONNECT named it.
pub struct ClientLabel<'a> {
    peer: SocketAddr,
    cid: u64,
    version: &'a str,
    lang: &'a str,
    name: &'a str,
}

impl<'a> ClientLabel<'a> {
    pub fn of(conn: &'a Conn) -> ClientLabel<'a> {
        ClientLabel {
            peer: conn.peer,
            cid: conn.cid,
            version: &conn.version,
            lang: &conn.lang,
            name: &conn.name,
        }
    }
}

impl fmt::Display for ClientLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} - cid:{}", self.peer, self.cid)?;
        // nats-server processConnect: "v<version>", then ":<lang>", then ":<name>", each only
        // when set, the whole quoted with %q.
        let parts = [("v", self.version), ("", self.lang), ("", self.name)];
        let mut first = true;
        for (lead, part) in parts {
            if part.is_empty() {
                continue;
            }
            f.write_str(if first { " - \"" } else { ":" })?;
            first = false;
            f.write_str(lead)?;
            write_escaped(f, part.as_bytes(), true)?;
        }
        if !first {
            f.write_str("\"")?;
        }
        Ok(())
    }
}

/// Who a client is in a violation line, as nats-server's `getAuthUser`: `Nkey "U…"`,
/// `User "name"`, or `User "N/A"`.
pub struct AuthUser<'a>(&'a Conn);

impl fmt::Display for AuthUser<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let connect = self.0.credentials.as_deref();
        if let Some(nkey) = connect
            .and_then(|c| c.nkey.as_deref())
            .filter(|k| !k.is_empty())
        {
            return write!(f, "Nkey {}", quoted(nkey.as_bytes()));
        }
        let user = match connect.and_then(|c| c.user.as_deref()) {
            Some(user) if !user.is_empty() => user,
            // A user the server chose (no_auth_user, a certificate's identity).
            _ if !self.0.user.is_empty() => &self.0.user,
            _ => "N/A",
        };
        write!(f, "User {}", quoted(user.as_bytes()))
    }
}

/// A CONNECT whose credentials did not verify (nats-server `authViolation`): the user name or
/// nkey the client claimed, never what it offered as proof.
pub fn auth_error(conn: &Conn) {
    let Some(suppressed) = admit(Event::AuthError) else {
        return;
    };
    report(Event::AuthError, suppressed);
    let connect = conn.credentials.as_deref();
    let label = ClientLabel::of(conn);
    if let Some(nkey) = connect.and_then(|c| c.nkey.as_deref()) {
        tracing::error!(
            "{label} - authentication error - Nkey {}",
            quoted(nkey.as_bytes())
        );
    } else if let Some(user) = connect.and_then(|c| c.user.as_deref()) {
        tracing::error!(
            "{label} - authentication error - User {}",
            quoted(user.as_bytes())
        );
    } else {
        tracing::error!("{label} - authentication error");
    }
}

/// A PUB to a subject the client may not publish to (nats-server `pubPermissionViolation`).
pub fn publish_violation(conn: &Conn, subject: &[u8]) {
    let Some(suppressed) = admit(Event::PublishViolation) else {
        return;
    };
    report(Event::PublishViolation, suppressed);
    tracing::error!(
        "{} - Publish Violation - {}, Subject {}",
        ClientLabel::of(conn),
        AuthUser(conn),
        quoted(subject)
    );
}

/// A PUB whose reply subject the client may not use (nats-server `replySubjectViolation`).
pub fn reply_violation(conn: &Conn, reply: &[u8]) {
    let Some(suppressed) = admit(Event::PublishViolation) else {
        return;
    };
    report(Event::PublishViolation, suppressed);
    tracing::error!(
        "{} - Publish Violation - {}, Reply {}",
        ClientLabel::of(conn),
        AuthUser(conn),
        quoted(reply)
    );
}

/// A SUB the client may not make (nats-server `subPermissionViolation`).
pub fn subscription_violation(conn: &Conn, subject: &[u8], queue: &[u8], sid: &[u8]) {
    let Some(suppressed) = admit(Event::SubscriptionViolation) else {
        return;
    };
    report(Event::SubscriptionViolation, suppressed);
    let (label, user) = (ClientLabel::of(conn), AuthUser(conn));
    if queue.is_empty() {
        tracing::error!(
            "{label} - Subscription Violation - {user}, Subject {}, SID {}",
            quoted(subject),
            escaped(sid)
        );
    } else {
        tracing::error!(
            "{label} - Subscription Violation - {user}, Subject {}, Queue: {}, SID {}",
            quoted(subject),
            quoted(queue),
            escaped(sid)
        );
    }
}

/// How many bytes of the offending input a parser-error line shows (nats-server
/// `PROTO_SNIPPET_SIZE`).
pub const PROTO_SNIPPET_LEN: usize = 32;

/// Input the parser refused, in nats-server's words for each case: `Client parser ERROR`
/// (`parseError`), `maximum payload exceeded: <size> vs <max>` (`maxPayloadViolation`),
/// `maximum control line exceeded`, `message headers not supported`, or the authentication
/// error of an op sent before CONNECT. ringnats finds errors at the start of an op (nats-server's
/// state 0, `OP_START`): `offset` is where that op starts in the bytes parsed, `rest` the input
/// from there.
pub fn protocol_error(
    conn: &Conn,
    err: ProtocolError,
    offset: usize,
    rest: &[u8],
    limits: ParserLimits,
) {
    let event = match err {
        ProtocolError::AuthorizationViolation => return auth_error(conn),
        ProtocolError::PayloadTooLarge => Event::MaxPayload,
        _ => Event::ParserError,
    };
    let Some(suppressed) = admit(event) else {
        return;
    };
    report(event, suppressed);
    let label = ClientLabel::of(conn);
    let snippet = quoted(&rest[..rest.len().min(PROTO_SNIPPET_LEN)]);
    match err {
        ProtocolError::PayloadTooLarge => {
            let max = limits.max_payload;
            match announced_size(rest) {
                Some(size) => {
                    tracing::error!("{label} - maximum payload exceeded: {size} vs {max}")
                }
                None => tracing::error!("{label} - maximum payload exceeded: ? vs {max}"),
            }
        }
        ProtocolError::ControlLineTooLong => tracing::error!(
            "{label} - maximum control line exceeded: max_control_line {} (snip: {snippet}...)",
            limits.max_control_line
        ),
        ProtocolError::HeadersNotSupported => {
            tracing::error!("{label} - message headers not supported")
        }
        _ => tracing::error!(
            "{label} - Client parser ERROR, state=0, i={offset}: proto='{snippet}...'"
        ),
    }
}

/// The size a PUB/HPUB line announces: its last argument, up to the line end.
fn announced_size(control_line: &[u8]) -> Option<u64> {
    let end = memchr::memchr(b'\n', control_line).unwrap_or(control_line.len());
    let line = &control_line[..end];
    let last = line
        .split(|b| b.is_ascii_whitespace())
        .rfind(|arg| !arg.is_empty())?;
    std::str::from_utf8(last).ok()?.parse().ok()
}

/// A subscriber closed because its pending bytes passed `max_pending` (nats-server
/// `queueOutbound`, a notice).
pub fn slow_consumer_pending(conn: &Conn, max_pending: usize) {
    let Some(suppressed) = admit(Event::SlowConsumer) else {
        return;
    };
    report(Event::SlowConsumer, suppressed);
    tracing::info!(
        "{} - Slow Consumer Detected: MaxPending of {max_pending} Exceeded",
        ClientLabel::of(conn)
    );
}

/// A subscriber closed because a write did not finish within `write_deadline` (nats-server
/// `handleWriteTimeout`, a notice).
pub fn slow_consumer_deadline(conn: &Conn, write_deadline: Duration, pending_bytes: usize) {
    let Some(suppressed) = admit(Event::SlowConsumer) else {
        return;
    };
    report(Event::SlowConsumer, suppressed);
    tracing::info!(
        "{} - Slow Consumer Detected: WriteDeadline of {} exceeded with {pending_bytes} total bytes.",
        ClientLabel::of(conn),
        GoDuration(write_deadline)
    );
}

/// A client sent `-ERR` (nats-server `processErr`: logged, then the connection is closed).
pub fn client_error(conn: &Conn, text: &[u8]) {
    let Some(suppressed) = admit(Event::ClientError) else {
        return;
    };
    report(Event::ClientError, suppressed);
    tracing::error!("{} - Client Error {}", ClientLabel::of(conn), escaped(text));
}

/// Reports the lines each kind suppressed in a window that has ended, if no new line of that
/// kind did already. Called from the shards' housekeeping tick, so a burst that stops is still
/// counted in the log.
pub fn report_suppressed() {
    let now = now_ms();
    for event in Event::ALL {
        if let Some(count) = event.limit().roll_over(now) {
            report(event, count);
        }
    }
}

/// Takes one line of `event` through its rate limit: `Some(n)` to log it, after reporting
/// `n` lines suppressed in the window that just ended; `None` to drop it.
fn admit(event: Event) -> Option<u32> {
    event.limit().admit(now_ms())
}

fn report(event: Event, suppressed: u32) {
    if suppressed == 0 {
        return;
    }
    let (words, limit) = (event.words(), LINES_PER_KIND_MAX);
    let window = GoDuration(WINDOW);
    tracing::warn!(
        "{suppressed} \"{words}\" lines suppressed (at most {limit} per {window} are logged)"
    );
}

/// Milliseconds since the first event (a process-wide monotonic clock for the limits).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// One kind's budget of lines in the current window. Shared by every shard thread, hence
/// atomics; a race at a window edge may let a line or two more through, never unboundedly.
struct RateLimit {
    /// When the current window started (`now_ms`), or `u64::MAX` before the first line.
    window_start_ms: AtomicU64,
    logged: AtomicU32,
    suppressed: AtomicU32,
}

impl RateLimit {
    const fn new() -> RateLimit {
        RateLimit {
            window_start_ms: AtomicU64::new(u64::MAX),
            logged: AtomicU32::new(0),
            suppressed: AtomicU32::new(0),
        }
    }

    fn admit(&self, now_ms: u64) -> Option<u32> {
        let reported = self.start_window_if_over(now_ms).unwrap_or(0);
        if self.logged.fetch_add(1, Ordering::Relaxed) < LINES_PER_KIND_MAX {
            return Some(reported);
        }
        // Over the limit: keep what was to be reported for the next report.
        self.suppressed
            .fetch_add(reported.saturating_add(1), Ordering::Relaxed);
        None
    }

    /// Starts a new window when the current one has ended and lines were suppressed in it:
    /// returns their count (only to the one caller that started the window).
    fn roll_over(&self, now_ms: u64) -> Option<u32> {
        if self.suppressed.load(Ordering::Relaxed) == 0 {
            return None;
        }
        self.start_window_if_over(now_ms).filter(|&n| n > 0)
    }

    /// Starts a new window if the current one has ended; the caller that does gets the count
    /// of lines suppressed in the old one.
    fn start_window_if_over(&self, now_ms: u64) -> Option<u32> {
        let start = self.window_start_ms.load(Ordering::Relaxed);
        let window_ms = u64::try_from(WINDOW.as_millis()).unwrap_or(u64::MAX);
        let over = start == u64::MAX || now_ms.saturating_sub(start) >= window_ms;
        if !over {
            return None;
        }
        self.window_start_ms
            .compare_exchange(start, now_ms, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        self.logged.store(0, Ordering::Relaxed);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// A duration as Go's `time.Duration.String` writes it for whole milliseconds and seconds
/// (`2s`, `500ms`, `1m30s`, `1.5s`), as nats-server's log lines show `write_deadline`.
struct GoDuration(Duration);

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0s");
        }
        if d < Duration::from_secs(1) {
            return write!(f, "{}ms", d.as_millis());
        }
        let secs = d.as_secs();
        let (hours, minutes, secs) = (secs / 3600, (secs / 60) % 60, secs % 60);
        if hours > 0 {
            write!(f, "{hours}h{minutes}m")?;
        } else if minutes > 0 {
            write!(f, "{minutes}m")?;
        }
        let millis = d.subsec_millis();
        if millis == 0 {
            write!(f, "{secs}s")
        } else {
            let frac = format!("{millis:03}");
            write!(f, "{secs}.{}s", frac.trim_end_matches('0'))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_logs_at_most_the_limit_then_reports_the_rest() {
        let limit = RateLimit::new();
        let logged = (0..100).filter(|_| limit.admit(1_000).is_some()).count();
        assert_eq!(logged, usize::try_from(LINES_PER_KIND_MAX).unwrap());
        assert_eq!(limit.admit(1_500), None, "same window");
        assert_eq!(
            limit.admit(2_000),
            Some(91),
            "next window reports 90 + 1 dropped"
        );
        assert_eq!(limit.admit(2_001), Some(0));
    }

    #[test]
    fn the_tick_reports_a_burst_that_stopped() {
        let limit = RateLimit::new();
        for _ in 0..15 {
            limit.admit(0);
        }
        assert_eq!(limit.roll_over(500), None, "window not over");
        assert_eq!(limit.roll_over(1_000), Some(5));
        assert_eq!(limit.roll_over(5_000), None, "reported once");
        assert_eq!(limit.admit(5_001), Some(0));
    }

    #[test]
    fn sizes_are_read_from_the_control_line() {
        assert_eq!(announced_size(b"PUB x 500\r\n"), Some(500));
        assert_eq!(announced_size(b"HPUB x r 12 500\r\nNATS"), Some(500));
        assert_eq!(announced_size(b"PUB x\t 7"), Some(7));
        assert_eq!(announced_size(b"PUB x y\r\n"), None);
    }

    #[test]
    fn durations_read_as_go_writes_them() {
        let cases = [
            (Duration::from_secs(2), "2s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
        ];
        for (d, go) in cases {
            assert_eq!(GoDuration(d).to_string(), go);
        }
    }
}
