//! Integration-test harness: start a broker, talk to it byte for byte or through async-nats.
//!
//! Cold, test-only. `broker` starts processes: `Launch` (which binary — the one under test,
//! ringnats, or nats-server for a comparison —, config, flags, environment, port) and `Server`
//! (the running process: output log, signals, reload, stop, RSS; killed on drop), and holds the
//! rule for a comparison whose nats-server is missing (`skip_or_fail`: a failure under CI).
//! `RawConn` speaks the wire protocol with a deadline on every read, so a test waiting for
//! something that never comes fails instead of hanging. `Nats` wraps an async-nats client and
//! counts disconnects, so a test can tell "received everything" from "received everything after
//! a silent reconnect". Invariant: nothing here sleeps to let time pass; every wait ends on an
//! observable event or on a deadline.
// Test harness: threads and maps here are not on any hot path.
#![allow(clippy::disallowed_types)]
#![allow(dead_code)] // each test file uses a different subset of the harness

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Broker processes: `Launch`, `Server`, and the comparison rule.
mod broker;
pub use broker::*;

/// How long any single expected event may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a read ended without the expected data.
#[derive(Debug)]
pub enum ReadEnd {
    Timeout,
    Closed(Option<io::Error>),
}

/// One MSG or HMSG as received.
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct RawMsg {
    pub subject: String,
    pub sid: String,
    pub reply: Option<String>,
    /// Header bytes of an HMSG, `None` for a MSG.
    pub headers: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// A plain TCP client connection speaking raw protocol bytes.
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The INFO line as received, without `\r\n` (empty if not read).
    pub info_line: Vec<u8>,
    auto_pong: bool,
}

impl RawConn {
    /// Connects and reads the INFO line. Server PINGs are answered automatically.
    pub fn connect(port: u16) -> RawConn {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        RawConn::with_info(stream)
    }

    /// Like `connect`, with a small kernel receive buffer so that a reader that stops
    /// reading makes the server's outbound queue grow quickly.
    pub fn connect_small_rcvbuf(port: u16, rcvbuf_bytes: usize) -> RawConn {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .expect("socket");
        socket
            .set_recv_buffer_size(rcvbuf_bytes)
            .expect("SO_RCVBUF");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        socket.connect(&addr.into()).expect("connect");
        RawConn::with_info(socket.into())
    }

    fn with_info(stream: TcpStream) -> RawConn {
        let mut conn = RawConn::from_stream(stream);
        let line = conn.read_line();
        assert!(
            line.starts_with(b"INFO "),
            "first line is not INFO: {}",
            show(&line)
        );
        conn.info_line = line;
        conn
    }

    fn from_stream(stream: TcpStream) -> RawConn {
        stream.set_nodelay(true).expect("nodelay");
        RawConn {
            stream,
            buf: Vec::new(),
            info_line: Vec::new(),
            auto_pong: true,
        }
    }

    /// When on (the default), a `PING` from the server is answered with `PONG` and skipped by
    /// the read functions. nats-server sends an RTT PING about 2 s after CONNECT.
    pub fn set_auto_pong(&mut self, on: bool) {
        self.auto_pong = on;
    }

    /// The INFO JSON object.
    pub fn info(&self) -> serde_json::Value {
        let json = self.info_line.strip_prefix(b"INFO ").expect("INFO prefix");
        serde_json::from_slice(json).expect("INFO JSON")
    }

    /// This end's address, as the server shows it in its log lines (`127.0.0.1:54012`).
    pub fn local_addr(&self) -> SocketAddr {
        self.stream.local_addr().expect("local_addr")
    }

    /// Appends to `out` what is buffered, or else the next read: for readers that parse bulk
    /// traffic themselves. Panics on close or timeout.
    pub fn read_chunk(&mut self, out: &mut Vec<u8>) {
        if self.buf.is_empty() {
            if let Err(end) = self.fill(Instant::now() + TIMEOUT) {
                panic!("expected data, got {end:?}");
            }
        }
        out.append(&mut self.buf);
    }

    /// `client_id` from INFO.
    pub fn client_id(&self) -> u64 {
        self.info()["client_id"]
            .as_u64()
            .expect("client_id in INFO")
    }

    /// Writes all bytes; panics if the connection is broken.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Writes all bytes, returning the error (for input the server may cut off).
    pub fn send_lossy(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Closes the write half, as a client that has nothing more to say.
    pub fn shutdown_write(&mut self) {
        // The server may already have closed; then there is nothing left to shut.
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Sends `CONNECT <json>\r\n`.
    pub fn send_connect(&mut self, json: &str) {
        self.send(format!("CONNECT {json}\r\n").as_bytes());
    }

    /// Reads one line (without `\r\n`) or panics on timeout or close.
    pub fn read_line(&mut self) -> Vec<u8> {
        let deadline = Instant::now() + TIMEOUT;
        match self.try_read_line(deadline) {
            Ok(line) => line,
            Err(end) => panic!(
                "expected a line, got {end:?}; buffered: {}",
                show(&self.buf)
            ),
        }
    }

    /// Reads one line (without `\r\n`) before `deadline`.
    pub fn try_read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadEnd> {
        loop {
            let line = self.read_raw_line(deadline)?;
            if self.auto_pong && line == b"PING" {
                self.send(b"PONG\r\n");
                continue;
            }
            return Ok(line);
        }
    }

    fn read_raw_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadEnd> {
        loop {
            if let Some(pos) = memchr::memmem::find(&self.buf, b"\r\n") {
                let line = self.buf[..pos].to_vec();
                self.buf.drain(..pos + 2);
                return Ok(line);
            }
            self.fill(deadline)?;
        }
    }

    /// Reads exactly `n` bytes.
    fn read_exact_bytes(&mut self, n: usize, deadline: Instant) -> Result<Vec<u8>, ReadEnd> {
        while self.buf.len() < n {
            self.fill(deadline)?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// One socket read into the buffer, bounded by `deadline`.
    fn fill(&mut self, deadline: Instant) -> Result<usize, ReadEnd> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadEnd::Timeout);
        }
        self.stream
            .set_read_timeout(Some(left))
            .expect("set_read_timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(ReadEnd::Closed(None)),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Err(ReadEnd::Timeout)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
            Err(e) => Err(ReadEnd::Closed(Some(e))),
        }
    }

    /// Reads one line and asserts it equals `expected` (without `\r\n`).
    #[track_caller]
    pub fn expect_line(&mut self, expected: &[u8]) {
        let line = self.read_line();
        assert_eq!(show(&line), show(expected), "unexpected line");
    }

    /// Reads one line and asserts it is `-ERR '<text>'`.
    #[track_caller]
    pub fn expect_err(&mut self, text: &str) {
        self.expect_line(format!("-ERR '{text}'").as_bytes());
    }

    /// Asserts the server closes the connection (EOF or reset) with nothing more sent.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if !self.buf.is_empty() {
                let line = self.try_read_line(deadline);
                panic!("expected close, got data {line:?}: {}", show(&self.buf));
            }
            match self.fill(deadline) {
                Ok(_) => continue,
                Err(ReadEnd::Closed(_)) => return,
                Err(ReadEnd::Timeout) => panic!("connection still open after {TIMEOUT:?}"),
            }
        }
    }

    /// Reads and discards everything until the server closes; returns the bytes discarded.
    /// Panics if the connection is still open at `deadline`.
    pub fn drain_until_closed(&mut self, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        let mut total = std::mem::take(&mut self.buf).len();
        loop {
            match self.fill(deadline) {
                Ok(n) => {
                    total += n;
                    self.buf.clear();
                }
                Err(ReadEnd::Closed(_)) => return total,
                Err(ReadEnd::Timeout) => panic!("still open after draining {total} bytes"),
            }
        }
    }

    /// Asserts the connection still works: `PING` is answered by `PONG` as the next line.
    #[track_caller]
    pub fn expect_open(&mut self) {
        self.send(b"PING\r\n");
        self.expect_line(b"PONG");
    }

    /// Sends `PING` and reads up to the `PONG`, returning the lines read before it.
    pub fn ping_pong(&mut self) -> Vec<Vec<u8>> {
        self.send(b"PING\r\n");
        let mut before = Vec::new();
        loop {
            let line = self.read_line();
            if line == b"PONG" {
                return before;
            }
            before.push(line);
        }
    }

    /// Reads one MSG or HMSG with its payload.
    pub fn read_msg(&mut self) -> RawMsg {
        let line = self.read_line();
        match parse_msg_line(&line) {
            Some((mut msg, header_len, total_len)) => {
                let deadline = Instant::now() + TIMEOUT;
                let body = self.read_exact_bytes(total_len + 2, deadline);
                let mut body = body.unwrap_or_else(|e| panic!("payload of {}: {e:?}", show(&line)));
                let tail = body.split_off(total_len);
                assert_eq!(
                    tail,
                    b"\r\n",
                    "payload of {} not followed by CRLF",
                    show(&line)
                );
                if let Some(header_len) = header_len {
                    msg.payload = body.split_off(header_len);
                    msg.headers = Some(body);
                } else {
                    msg.payload = body;
                }
                msg
            }
            None => panic!("expected MSG or HMSG, got {}", show(&line)),
        }
    }

    /// Reads one MSG and asserts every field.
    #[track_caller]
    pub fn expect_msg(&mut self, subject: &str, sid: &str, reply: Option<&str>, payload: &[u8]) {
        let msg = self.read_msg();
        let expected = RawMsg {
            subject: subject.to_owned(),
            sid: sid.to_owned(),
            reply: reply.map(str::to_owned),
            headers: None,
            payload: payload.to_vec(),
        };
        assert_eq!(msg, expected);
    }
}

/// Parses `MSG subj sid [reply] len` or `HMSG subj sid [reply] hlen len`.
/// Returns the message skeleton, the header length (HMSG) and the total length.
fn parse_msg_line(line: &[u8]) -> Option<(RawMsg, Option<usize>, usize)> {
    let text = std::str::from_utf8(line).ok()?;
    let parts: Vec<&str> = text.split(' ').collect();
    let (is_hmsg, args) = match parts.split_first()? {
        (&"MSG", args) => (false, args),
        (&"HMSG", args) => (true, args),
        _ => return None,
    };
    let lens = if is_hmsg { 2 } else { 1 };
    if args.len() != 2 + lens && args.len() != 3 + lens {
        return None;
    }
    let (names, sizes) = args.split_at(args.len() - lens);
    let total: usize = sizes.last()?.parse().ok()?;
    let header_len = if is_hmsg {
        Some(sizes[0].parse().ok()?)
    } else {
        None
    };
    let msg = RawMsg {
        subject: names[0].to_owned(),
        sid: names[1].to_owned(),
        reply: names.get(2).map(|s| (*s).to_owned()),
        headers: None,
        payload: Vec::new(),
    };
    Some((msg, header_len, total))
}

/// Printable form of protocol bytes for assertion messages.
pub fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(300)];
    let mut text = String::from_utf8_lossy(cut)
        .replace('\r', "\\r")
        .replace('\n', "\\n");
    if bytes.len() > cut.len() {
        text.push_str(&format!("...({} bytes)", bytes.len()));
    }
    text
}

/// An async-nats client that remembers whether it was ever disconnected.
pub struct Nats {
    pub client: async_nats::Client,
    disconnects: Arc<AtomicUsize>,
    server_errors: Arc<Mutex<Vec<String>>>,
}

impl std::ops::Deref for Nats {
    type Target = async_nats::Client;
    fn deref(&self) -> &async_nats::Client {
        &self.client
    }
}

impl Nats {
    /// Connects with default options.
    pub async fn connect(server: &Server) -> Nats {
        Nats::connect_with(server, async_nats::ConnectOptions::new()).await
    }

    /// Connects with the given options (an event callback is added).
    pub async fn connect_with(server: &Server, opts: async_nats::ConnectOptions) -> Nats {
        let (opts, disconnects, server_errors) = with_event_counters(opts);
        let connect = opts.connect(server.url());
        let client = tokio::time::timeout(TIMEOUT, connect)
            .await
            .expect("async-nats connect timed out")
            .expect("async-nats connect");
        Nats {
            client,
            disconnects,
            server_errors,
        }
    }

    /// How many times the connection was lost so far.
    pub fn disconnects(&self) -> usize {
        self.disconnects.load(Ordering::SeqCst)
    }

    /// `-ERR` texts the server sent so far.
    pub fn server_errors(&self) -> Vec<String> {
        self.server_errors.lock().expect("lock").clone()
    }

    /// Waits until the server has processed everything this client sent before.
    ///
    /// async-nats 0.46 `flush` only writes the socket buffer; it does not send PING. So this
    /// sends a request to a subject nobody subscribes to and waits for the server's no-responders
    /// reply, which the server sends after the ops before it. It says nothing about other
    /// shards; use `wait_for_route` when another connection must see a subscription.
    pub async fn round_trip(&self) {
        let subject = format!("_itest.round_trip.{}", self.client.new_inbox());
        let request = self.client.request(subject, bytes::Bytes::new());
        let result = tokio::time::timeout(TIMEOUT, request)
            .await
            .expect("round trip timed out");
        let err = result.expect_err("round-trip subject has a responder");
        assert_eq!(
            err.kind(),
            async_nats::RequestErrorKind::NoResponders,
            "round trip: {err}"
        );
    }
}

/// Payload prefix of route probes; `next_msg` skips such messages.
pub const PROBE: &[u8] = b"__itest_probe";

/// True for messages sent by `wait_for_route`.
pub fn is_probe(msg: &async_nats::Message) -> bool {
    msg.payload.starts_with(PROBE)
}

/// Waits until messages `publisher` publishes on `subject` reach `sub` (a subscription of any
/// connection matching `subject`), then returns with no probe left in flight to `sub`.
///
/// It publishes probes until one arrives (bounded), then a closing probe and reads up to it:
/// one publisher's messages arrive in order, so nothing of this call is left afterwards. Other
/// subscribers on `subject` may receive probes; `next_msg` skips them.
pub async fn wait_for_route(publisher: &Nats, subject: &str, sub: &mut async_nats::Subscriber) {
    use futures::StreamExt;
    const ATTEMPTS: usize = 100;
    let mut arrived = false;
    for _ in 0..ATTEMPTS {
        publish_probe(publisher, subject, b"").await;
        let wait = tokio::time::timeout(Duration::from_millis(50), sub.next()).await;
        if let Ok(msg) = wait {
            let msg = msg.expect("subscription ended");
            assert!(is_probe(&msg), "message before the route was up: {msg:?}");
            arrived = true;
            break;
        }
    }
    assert!(
        arrived,
        "no probe on {subject} arrived in {ATTEMPTS} attempts"
    );
    publish_probe(publisher, subject, b".end").await;
    loop {
        let msg = tokio::time::timeout(TIMEOUT, sub.next())
            .await
            .expect("closing probe");
        let msg = msg.expect("subscription ended");
        assert!(is_probe(&msg), "unexpected message while probing: {msg:?}");
        if msg.payload.ends_with(b".end") {
            return;
        }
    }
}

async fn publish_probe(publisher: &Nats, subject: &str, suffix: &[u8]) {
    let payload = bytes::Bytes::from([PROBE, suffix].concat());
    publisher
        .publish(subject.to_owned(), payload)
        .await
        .expect("publish probe");
}

/// Next message of a subscription within `TIMEOUT`, skipping route probes, or panic.
pub async fn next_msg(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    use futures::StreamExt;
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let msg = tokio::time::timeout_at(deadline, sub.next())
            .await
            .expect("no message within timeout")
            .expect("subscription ended");
        if !is_probe(&msg) {
            return msg;
        }
    }
}

/// A raw connection's INFO JSON, to a 127.0.0.1 port.
pub fn info_of(port: u16) -> serde_json::Value {
    RawConn::connect(port).info()
}

/// Connects an async-nats client to `url` with `opts` (no reconnect attempts on the initial
/// connect); the error is returned, a connect that takes longer than `TIMEOUT` panics.
pub async fn try_connect_url(
    url: &str,
    opts: async_nats::ConnectOptions,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let connect = opts.connection_timeout(TIMEOUT).connect(url);
    tokio::time::timeout(TIMEOUT + Duration::from_secs(1), connect)
        .await
        .unwrap_or_else(|_| panic!("async-nats connect to {url} did not end in time"))
}

/// [`try_connect_url`] to 127.0.0.1:`port`.
pub async fn try_connect(
    port: u16,
    opts: async_nats::ConnectOptions,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    try_connect_url(&url_of(port), opts).await
}

/// A `$2a$` bcrypt hash of `password` at `cost` (4 keeps tests fast).
pub fn bcrypt_2a(password: &str, cost: u32) -> String {
    bcrypt::hash_with_result(password, cost)
        .expect("bcrypt hash")
        .format_for_version(bcrypt::Version::TwoA)
}

/// `t` as an RFC 3339 UTC timestamp with whole seconds (`2026-01-01T00:00:00Z`), rounded up.
pub fn rfc3339_utc(t: std::time::SystemTime) -> String {
    let since = t
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time after 1970");
    let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0);
    let days = i64::try_from(secs / 86_400).expect("days fit");
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl RawConn {
    /// Reads the next line within `within`, or the reason there was none.
    pub fn next_line_within(&mut self, within: Duration) -> Result<Vec<u8>, ReadEnd> {
        self.try_read_line(Instant::now() + within)
    }

    /// Asserts the server sends `-ERR '<text>'` and then closes, within `within` (for errors
    /// that arrive on a timer: auth timeout, expiry).
    #[track_caller]
    pub fn expect_err_then_close_within(&mut self, text: &str, within: Duration) {
        match self.next_line_within(within) {
            Ok(line) => assert_eq!(show(&line), format!("-ERR '{text}'"), "unexpected line"),
            Err(end) => panic!("expected -ERR '{text}' within {within:?}, got {end:?}"),
        }
        self.expect_closed();
    }
}

// ---- Clients past CONNECT: the setup most tests share --------------------------------------

/// The CONNECT fields of a quiet client: no `+OK` after each op, no pedantic checks.
pub const QUIET: &str = r#"{"verbose":false,"pedantic":false}"#;

impl RawConn {
    /// Connects and sends a quiet `CONNECT` (nothing awaited: the caller's next op follows).
    pub fn connect_quiet(port: u16) -> RawConn {
        let mut conn = RawConn::connect(port);
        conn.send_connect(QUIET);
        conn
    }

    /// Connects and sends a quiet `CONNECT` as `user` with `pass`; nothing is awaited, so the
    /// caller reads the answer (`expect_open` for one that must get in).
    pub fn connect_as(port: u16, user: &str, pass: &str) -> RawConn {
        let mut conn = RawConn::connect(port);
        conn.send_connect(&format!(
            r#"{{"verbose":false,"pedantic":false,"user":"{user}","pass":"{pass}"}}"#
        ));
        conn
    }

    /// `SUB subject sid`, then a PING: returns once the server has applied it (on every
    /// shard), asserting nothing arrived before the PONG.
    #[track_caller]
    pub fn subscribe_synced(&mut self, subject: &str, sid: &str) {
        self.send(format!("SUB {subject} {sid}\r\n").as_bytes());
        let early = self.ping_pong();
        assert!(early.is_empty(), "lines before PONG: {early:?}");
    }

    /// Connects, signs the INFO nonce with `signer` (base64url, no padding) and sends a quiet
    /// `CONNECT` with `jwt` and the signature; nothing is awaited.
    pub fn connect_jwt(port: u16, jwt: &str, signer: &nkeys::KeyPair) -> RawConn {
        use base64::Engine;
        let mut conn = RawConn::connect(port);
        let nonce = conn.info()["nonce"]
            .as_str()
            .expect("nonce in INFO")
            .to_string();
        let sig = signer.sign(nonce.as_bytes()).expect("sign the nonce");
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
        conn.send_connect(&format!(
            r#"{{"verbose":false,"pedantic":false,"protocol":1,"jwt":"{jwt}","sig":"{sig}"}}"#
        ));
        conn
    }

    /// Asserts the login worked: a PING gets its PONG, with at most INFO lines (a lowered
    /// `max_payload`) before it. Returns the connection.
    #[track_caller]
    pub fn expect_logged_in(mut self) -> RawConn {
        let lines = self.ping_pong();
        let shown: Vec<String> = lines.iter().map(|l| show(l)).collect();
        assert!(lines.iter().all(|l| l.starts_with(b"INFO ")), "{shown:?}");
        self
    }

    /// Asserts the login was refused: a PING gets `-ERR 'Authorization Violation'`, then the
    /// server closes.
    #[track_caller]
    pub fn expect_refused(&mut self) {
        self.send(b"PING\r\n");
        self.expect_err("Authorization Violation");
        self.expect_closed();
    }

    /// Asserts nothing is queued for this client: the line after a PING is the PONG.
    #[track_caller]
    pub fn expect_nothing_more(&mut self, what: &str) {
        let lines = self.ping_pong();
        let shown: Vec<String> = lines.iter().map(|l| show(l)).collect();
        assert!(lines.is_empty(), "{what}: {shown:?}");
    }
}

// ---- TLS and refusals ----------------------------------------------------------------------

/// A raw TLS client (plaintext INFO, then a rustls handshake).
pub mod tls_client;

impl Nats {
    /// Connects to `url` (any broker), returning the error instead of panicking, for tests
    /// that expect a refusal. Bounded by `TIMEOUT`.
    pub async fn try_connect_url(
        url: &str,
        opts: async_nats::ConnectOptions,
    ) -> Result<Nats, async_nats::ConnectError> {
        let (opts, disconnects, server_errors) = with_event_counters(opts);
        let client = tokio::time::timeout(TIMEOUT, opts.connect(url))
            .await
            .expect("async-nats connect neither succeeded nor failed in time")?;
        Ok(Nats {
            client,
            disconnects,
            server_errors,
        })
    }
}

/// Adds the connect timeout and an event callback that counts disconnects and records the
/// server's `-ERR` texts, returning the counters `Nats` keeps.
fn with_event_counters(
    opts: async_nats::ConnectOptions,
) -> (
    async_nats::ConnectOptions,
    Arc<AtomicUsize>,
    Arc<Mutex<Vec<String>>>,
) {
    let disconnects = Arc::new(AtomicUsize::new(0));
    let server_errors = Arc::new(Mutex::new(Vec::new()));
    let (d, e) = (disconnects.clone(), server_errors.clone());
    let opts = opts
        .connection_timeout(TIMEOUT)
        .event_callback(move |event| {
            let (d, e) = (d.clone(), e.clone());
            async move {
                match event {
                    async_nats::Event::Disconnected => {
                        d.fetch_add(1, Ordering::SeqCst);
                    }
                    async_nats::Event::ServerError(err) => {
                        e.lock().expect("lock").push(err.to_string());
                    }
                    _ => {}
                }
            }
        });
    (opts, disconnects, server_errors)
}
