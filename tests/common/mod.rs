//! Integration-test harness: start the broker, talk to it byte for byte or through async-nats.
//!
//! Cold, test-only. `Server` starts the binary under test (`RINGNATS_TEST_SERVER`, else this
//! crate's `ringnats`) on a free 127.0.0.1 port with a generated config file, waits until it
//! answers on that port, and kills it on drop (printing its log if the test panicked).
//! `RawConn` speaks the wire protocol with a deadline on every read, so a test waiting for
//! something that never comes fails instead of hanging. `Nats` wraps an async-nats client and
//! counts disconnects, so a test can tell "received everything" from "received everything after
//! a silent reconnect". Invariant: nothing here sleeps to let time pass; every wait ends on an
//! observable event or on a deadline.
// Test harness: threads and maps here are not on any hot path.
#![allow(clippy::disallowed_types)]
#![allow(dead_code)] // each test file uses a different subset of the harness

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single expected event may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to start accepting connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries at a free port before a start-up gives up (see `Server::start_with`).
const PORT_ATTEMPTS: usize = 3;
/// What ringnats and nats-server print when their port is taken.
const PORT_TAKEN: &str = "address already in use";
/// Shards passed to ringnats unless a test asks otherwise: 2 so that every test also runs
/// across shards (connections are spread over both).
pub const DEFAULT_SHARDS: usize = 2;

/// The broker binary under test.
pub fn server_bin() -> PathBuf {
    std::env::var_os("RINGNATS_TEST_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_ringnats")))
}

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerOpts {
    /// Appended to the generated config after the `listen` line.
    pub config_extra: String,
    /// `--shards N`, passed only when the binary is ringnats.
    pub shards: usize,
    /// Extra command-line arguments after `-c <file>`.
    pub args: Vec<String>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            config_extra: String::new(),
            shards: DEFAULT_SHARDS,
            args: Vec::new(),
        }
    }
}

/// A running broker process, killed on drop.
pub struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
    is_ringnats: bool,
    shards: usize,
}

impl Server {
    /// Starts the broker with `listen: 127.0.0.1:<free port>` plus `config_extra`.
    pub fn start(config_extra: &str) -> Server {
        Server::start_with(ServerOpts {
            config_extra: config_extra.to_owned(),
            ..Default::default()
        })
    }

    /// Starts the broker with the given options and waits until it answers.
    pub fn start_with(opts: ServerOpts) -> Server {
        // A port found free can be taken by a parallel test before the broker binds it; the
        // broker then refuses to start ("address already in use") and we try another.
        for _ in 1..PORT_ATTEMPTS {
            if let Some(server) = Server::try_start_with(&opts) {
                return server;
            }
        }
        Server::try_start_with(&opts).expect("a free port")
    }

    /// Starts and waits; `None` if the port was taken meanwhile (any other failure panics).
    fn try_start_with(opts: &ServerOpts) -> Option<Server> {
        let bin = server_bin();
        let is_ringnats = bin.file_name().is_some_and(|name| name == "ringnats");
        let port = free_port();
        let dir = unique_dir(port);
        let conf = dir.join("server.conf");
        fs::write(
            &conf,
            format!("listen: 127.0.0.1:{port}\n{}\n", opts.config_extra),
        )
        .expect("write config");
        let log = File::create(dir.join("server.log")).expect("create log");
        let mut cmd = Command::new(&bin);
        cmd.arg("-c").arg(&conf).args(&opts.args);
        if is_ringnats {
            cmd.arg("--shards").arg(opts.shards.to_string());
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let shards = if is_ringnats { opts.shards } else { 1 };
        let mut server = Server {
            child,
            port,
            dir,
            is_ringnats,
            shards,
        };
        if server.port_taken() {
            return None;
        }
        server.wait_ready();
        Some(server)
    }

    /// Whether the broker exited at start because its port was taken (waits until it either
    /// answers, exits, or `START_TIMEOUT` passes; `wait_ready` then reports the latter).
    fn port_taken(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().expect("try_wait").is_some() {
                return self.log().contains(PORT_TAKEN);
            }
            if self.answers_with_info() {
                return false;
            }
            // Polling a port that is not listening yet: there is no event to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// True when the binary under test is ringnats (or the stand-in named so), not nats-server.
    pub fn is_ringnats(&self) -> bool {
        self.is_ringnats
    }

    /// Shard count the server was started with (1 for nats-server).
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// The server's combined stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Panics (with the server log) if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("server exited with {status}; log:\n{}", self.log());
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            self.assert_alive();
            if self.answers_with_info() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not ready in {START_TIMEOUT:?}:\n{}",
                self.log()
            );
            // Polling a port that is not listening yet: there is no event to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers_with_info(&self) -> bool {
        let Ok(stream) = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(500))
        else {
            return false;
        };
        let mut conn = RawConn::from_stream(stream);
        let ready = conn.try_read_line(Instant::now() + Duration::from_secs(1));
        let _ = conn.stream.shutdown(Shutdown::Both);
        matches!(ready, Ok(line) if line.starts_with(b"INFO "))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- server log ({}) ----\n{}",
                self.dir.display(),
                self.log()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

fn unique_dir(port: u16) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let seq = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = format!("ringnats-itest-{}-{seq}-{port}", std::process::id());
    let dir = std::env::temp_dir().join(name);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

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

// ---- Processes started by hand: lifecycle, command-line and comparison tests --------------

/// The ringnats binary of this build (never the `RINGNATS_TEST_SERVER` stand-in).
pub fn ringnats_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringnats"))
}

/// nats-server 2.9.10 for comparison runs: `NATS_SERVER_BIN`, else `/usr/sbin/nats-server`,
/// else `nats-server` on `PATH`; `None` (the comparison is skipped) when there is none.
pub fn nats_server_bin() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        return Some(PathBuf::from(bin));
    }
    let fixed = PathBuf::from("/usr/sbin/nats-server");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|bin| bin.is_file())
}

/// A fresh 127.0.0.1 port for a test to put in a config file or a `-p` flag.
pub fn pick_port() -> u16 {
    free_port()
}

/// A fresh, empty scratch directory (removed by whoever owns it).
pub fn scratch_dir() -> PathBuf {
    unique_dir(free_port())
}

/// The output of a command that was expected to exit by itself.
#[derive(Debug)]
pub struct Finished {
    pub status: std::process::ExitStatus,
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
fn wait_child(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
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

/// A broker process started from an explicit command line and config text, with its
/// combined stdout/stderr in `output.log`; killed on drop (its output printed if the test
/// panicked). Unlike `Server`, the test controls every argument, can rewrite the config file,
/// send signals and wait for the exit.
pub struct Daemon {
    child: Child,
    dir: PathBuf,
    port: u16,
    label: String,
}

/// How to start a `Daemon`.
#[derive(Clone, Debug)]
pub struct Launch {
    /// Program and the arguments before `-c <config>` (e.g. `taskset -c 0 <ringnats>`).
    pub program: Vec<std::ffi::OsString>,
    /// The whole config file text.
    pub config: String,
    /// Arguments after `-c <config>`.
    pub args: Vec<String>,
    /// The 127.0.0.1 port that must answer with INFO before `start` returns.
    pub port: u16,
}

impl Launch {
    /// `bin -c <file> args` with `listen: 127.0.0.1:<fresh port>` and `config_extra`.
    pub fn listen(bin: &std::path::Path, config_extra: &str, args: &[&str]) -> Launch {
        let port = free_port();
        Launch {
            program: vec![bin.as_os_str().to_owned()],
            config: format!("listen: 127.0.0.1:{port}\n{config_extra}\n"),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            port,
        }
    }

    /// The same launch on another free port (the config's and arguments' `127.0.0.1:<port>`).
    fn on_fresh_port(self) -> Launch {
        let port = free_port();
        let (old, new) = (
            format!("127.0.0.1:{}", self.port),
            format!("127.0.0.1:{port}"),
        );
        Launch {
            config: self.config.replace(&old, &new),
            args: self.args.iter().map(|a| a.replace(&old, &new)).collect(),
            port,
            ..self
        }
    }
}

impl Daemon {
    /// Starts the process and waits until `launch.port` answers with INFO.
    pub fn start(launch: Launch) -> Daemon {
        // A port found free can be taken by a parallel test before the broker binds it; the
        // broker then refuses to start ("address already in use") and we move to another.
        let mut launch = launch;
        for _ in 1..PORT_ATTEMPTS {
            let mut daemon = Daemon::spawn(launch.clone());
            if !daemon.port_taken() {
                daemon.wait_ready();
                return daemon;
            }
            launch = launch.on_fresh_port();
        }
        let mut daemon = Daemon::spawn(launch);
        daemon.wait_ready();
        daemon
    }

    /// Whether the process exited at start because its port was taken (waits until it
    /// answers, exits, or `START_TIMEOUT` passes; `wait_ready` then reports the latter).
    fn port_taken(&mut self) -> bool {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        while Instant::now() < deadline {
            if self.child.try_wait().expect("try_wait").is_some() {
                return self.output().contains(PORT_TAKEN);
            }
            if answers_with_info(addr) {
                return false;
            }
            // Polling a port that is not listening yet: there is no event to wait on.
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Starts the process without waiting for it to listen (for start-up failures).
    pub fn spawn(launch: Launch) -> Daemon {
        let dir = unique_dir(launch.port);
        let conf = dir.join("server.conf");
        fs::write(&conf, &launch.config).expect("write config");
        let log = File::create(dir.join("output.log")).expect("create output log");
        let (program, prefix) = launch.program.split_first().expect("a program");
        let mut cmd = Command::new(program);
        cmd.args(prefix).arg("-c").arg(&conf).args(&launch.args);
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log);
        let label = format!("{cmd:?}");
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        Daemon {
            child,
            dir,
            port: launch.port,
            label,
        }
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("{} exited with {status}:\n{}", self.label, self.output());
            }
            if answers_with_info(addr) {
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The scratch directory (config file, output log); tests may put more files in it.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("server.conf")
    }

    /// Replaces the config file's text (for a reload).
    pub fn rewrite_config(&self, text: &str) {
        fs::write(self.config_path(), text).expect("rewrite config");
    }

    /// Combined stdout and stderr so far.
    pub fn output(&self) -> String {
        fs::read_to_string(self.dir.join("output.log")).unwrap_or_default()
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Waits for the process to exit; panics (with its output) if it is still running.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        match wait_child(&mut self.child, within) {
            Some(status) => status,
            None => panic!(
                "{} still running after {within:?}:\n{}",
                self.label,
                self.output()
            ),
        }
    }

    /// Panics (with the output) if the process has exited.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("{} exited with {status}:\n{}", self.label, self.output());
        }
    }

    /// Waits until the output holds `count` occurrences of `needle`; returns the output.
    pub fn wait_output_count(&self, needle: &str, count: usize, within: Duration) -> String {
        wait_file_count(&self.dir.join("output.log"), needle, count, within)
    }

    /// Waits until the output contains `needle`; returns the output.
    pub fn wait_output(&self, needle: &str, within: Duration) -> String {
        self.wait_output_count(needle, 1, within)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- output of {} ----\n{}", self.label, self.output());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Waits until the file at `path` holds `count` occurrences of `needle`; returns its text.
pub fn wait_file_count(
    path: &std::path::Path,
    needle: &str,
    count: usize,
    within: Duration,
) -> String {
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

fn answers_with_info(addr: SocketAddr) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let mut conn = RawConn::from_stream(stream);
    let ready = conn.try_read_line(Instant::now() + Duration::from_secs(1));
    let _ = conn.stream.shutdown(Shutdown::Both);
    matches!(ready, Ok(line) if line.starts_with(b"INFO "))
}

/// A raw connection's INFO JSON, to a 127.0.0.1 port.
pub fn info_of(port: u16) -> serde_json::Value {
    RawConn::connect(port).info()
}

// ---- Authentication tests: one check, run against ringnats and against nats-server ---------

/// A broker binary and the arguments it always gets, for checks that run against ringnats and
/// (as a `*_nats_server` sibling) against nats-server 2.9.10.
#[derive(Clone, Debug)]
pub struct BrokerBin {
    pub bin: PathBuf,
    pub args: Vec<String>,
    pub is_ringnats: bool,
}

impl BrokerBin {
    /// This build's ringnats with `--shards N`.
    pub fn ringnats(shards: usize) -> BrokerBin {
        BrokerBin {
            bin: ringnats_bin(),
            args: vec!["--shards".to_owned(), shards.to_string()],
            is_ringnats: true,
        }
    }

    /// nats-server for a comparison run, or `None` (with a note) to skip it.
    pub fn nats_server() -> Option<BrokerBin> {
        let Some(bin) = nats_server_bin() else {
            eprintln!("skipped: no nats-server");
            return None;
        };
        Some(BrokerBin {
            bin,
            args: Vec::new(),
            is_ringnats: false,
        })
    }

    /// Starts on a fresh 127.0.0.1 port with `config_extra`, the fixed arguments and `args`.
    pub fn start(&self, config_extra: &str, args: &[&str]) -> Daemon {
        Daemon::start(self.launch(config_extra, args))
    }

    /// The launch `start` would use (to change it before starting).
    pub fn launch(&self, config_extra: &str, args: &[&str]) -> Launch {
        let mut all: Vec<&str> = self.args.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        Launch::listen(&self.bin, config_extra, &all)
    }
}

/// `nats://127.0.0.1:<port>`.
pub fn url_of(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
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

// ---- TLS and refusals ----------------------------------------------------------------------

/// A raw TLS client (plaintext INFO, then a rustls handshake).
pub mod tls_client;

impl Nats {
    /// Connects to `url` (any broker, e.g. a `Daemon`), returning the error instead of
    /// panicking, for tests that expect a refusal. Bounded by `TIMEOUT`.
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

/// Starts nats-server 2.9.10 (for a comparison run) on a fresh port with `config_extra` and
/// `args`, or returns `None` (with a note) when it is not installed.
pub fn start_nats_server(config_extra: &str, args: &[&str]) -> Option<Daemon> {
    let Some(bin) = nats_server_bin() else {
        eprintln!("skipped: no nats-server");
        return None;
    };
    Some(Daemon::start(Launch::listen(&bin, config_extra, args)))
}
