//! A minimal blocking NATS client for `ringnats bench`: one TCP (or rustls) stream per
//! connection, driven by one thread.
//!
//! Cold: `Conn::connect` (INFO, optional TLS, CONNECT, PING/PONG) runs once per connection.
//! Hot: `Conn::write_direct` (publishers hand it whole blocks of PUB frames, thousands per
//! write syscall, as the official clients batch) and `Conn::pump` (one read of up to 256 KB, then
//! every whole frame in it handed to the caller, PINGs answered, replies queued by the caller
//! written once per read). Invariant: a `Conn` exists only after the server answered the
//! CONNECT's PING with PONG, so every `Conn` is authenticated; every server `-ERR` ends the run
//! with its text; every wait has a deadline, so a silent server fails a run instead of hanging.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::ServerName;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::BenchError;
use super::credentials::Credentials;
use super::scan::{CONTROL_LINE_MAX, Frame, Msg, Scan, scan};
use super::units::SIZE_MAX;

/// Queued control bytes are written once they pass this many bytes (or on `flush`).
pub const WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// The read buffer's starting size; it grows only to hold one frame larger than this.
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// A new connection's read buffer; it grows to `READ_BUFFER_BYTES` at the first read that fills
/// it. Zeroing 256 KiB per connection was a tenth of a connect storm's client CPU.
const READ_BUFFER_START: usize = 16 * 1024;
/// Socket read timeout: how often a blocked reader wakes to look at the clock and stop flags.
pub const TICK: Duration = Duration::from_millis(100);
/// How long connecting (TCP, INFO, TLS, CONNECT, PONG) may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to connect: parsed from `-s nats://[user:pass@|token@]host[:port]` (`tls://` forces TLS).
#[derive(Clone, Debug, Eq, PartialEq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub user: Option<String>,
    pub pass: Option<String>,
}

impl ServerAddr {
    /// Parses one server URL; the scheme is optional, the port defaults to 4222.
    pub fn parse(url: &str) -> Result<ServerAddr, String> {
        let bad = |why: &str| format!("invalid server URL {url:?}: {why}");
        let (tls, rest) = match url.split_once("://") {
            Some(("nats", rest)) => (false, rest),
            Some(("tls", rest)) => (true, rest),
            Some((scheme, _)) => return Err(bad(&format!("unknown scheme {scheme:?}"))),
            None => (false, url),
        };
        if rest.contains(',') {
            return Err(bad("give one server"));
        }
        let rest = rest.trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((info, hostport)) => (Some(info), hostport),
            None => (None, rest),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| bad("bad host or port"))?;
        let (user, pass) = match userinfo.map(|info| info.split_once(':')) {
            Some(Some((user, pass))) => (Some(user.to_string()), Some(pass.to_string())),
            Some(None) => (userinfo.map(str::to_string), None),
            None => (None, None),
        };
        Ok(ServerAddr {
            host,
            port,
            tls,
            user,
            pass,
        })
    }

    /// The URL without credentials, for messages.
    pub fn display(&self) -> String {
        let scheme = if self.tls { "tls" } else { "nats" };
        if self.host.contains(':') {
            format!("{scheme}://[{}]:{}", self.host, self.port)
        } else {
            format!("{scheme}://{}:{}", self.host, self.port)
        }
    }
}

fn split_host_port(hostport: &str) -> Option<(String, u16)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => port.parse().ok()?,
            None if after.is_empty() => 4222,
            None => return None,
        };
        return Some((host.to_string(), port));
    }
    let (host, port) = match hostport.split_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (hostport, 4222),
    };
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Everything needed to open one connection; cloned into every worker thread.
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    pub addr: ServerAddr,
    pub credentials: Credentials,
    pub tls: Option<Arc<ClientConfig>>,
    /// The `name` sent in CONNECT (shows in the server's monitoring).
    pub name: String,
}

/// The INFO fields the bench uses.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ServerInfo {
    pub max_payload: i64,
    pub tls_required: bool,
    pub nonce: Option<String>,
}

/// What one `pump` call saw.
#[derive(Clone, Copy, Debug, Eq, PartialEq)]
pub enum Pumped {
    Data,
    /// The read timed out after `TICK` with nothing received.
    Idle,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.read(buf),
            Stream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(tcp) => tcp.write(buf),
            Stream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(tcp) => tcp.flush(),
            Stream::Tls(tls) => tls.flush(),
        }
    }
}

/// One connected, authenticated client connection.
pub struct Conn {
    stream: Stream,
    rbuf: Vec<u8>,
    /// Unconsumed bytes are `rbuf[rstart..rend]`.
    rstart: usize,
    rend: usize,
    out: Vec<u8>,
    pongs: u64,
    url: String,
    pub info: ServerInfo,
}

impl Conn {
    /// Connects, authenticates and waits for the server's PONG.
    pub fn connect(opts: &ConnectOptions) -> Result<Conn, BenchError> {
        let url = opts.addr.display();
        let deadline = Instant::now() + HANDSHAKE_TIMEOUT;
        let tcp = connect_tcp(&opts.addr).map_err(|e| connect_error(&url, e.to_string()))?;
        let mut conn = Conn {
            stream: Stream::Plain(tcp),
            rbuf: vec![0; READ_BUFFER_START],
            rstart: 0,
            rend: 0,
            out: Vec::with_capacity(WRITE_BUFFER_BYTES),
            pongs: 0,
            url,
            info: ServerInfo::default(),
        };
        conn.read_info(deadline)?;
        conn.start_tls(opts)?;
        conn.send_connect(opts)?;
        conn.wait_pongs(1, deadline, &mut |_, _| {})
            .map_err(during_connect)?;
        Ok(conn)
    }

    /// The server URL, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queues `SUB subject [queue] sid`.
    pub fn subscribe(
        &mut self,
        subject: &str,
        queue: Option<&str>,
        sid: u64,
    ) -> Result<(), BenchError> {
        let line = match queue {
            Some(queue) => format!("SUB {subject} {queue} {sid}\r\n"),
            None => format!("SUB {subject} {sid}\r\n"),
        };
        self.queue(line.as_bytes())
    }

    /// Appends bytes to the write buffer, writing it out once it passes `WRITE_BUFFER_BYTES`.
    pub fn queue(&mut self, bytes: &[u8]) -> Result<(), BenchError> {
        self.out.extend_from_slice(bytes);
        if self.out.len() >= WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes out everything queued.
    pub fn flush(&mut self) -> Result<(), BenchError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self
            .stream
            .write_all(&self.out)
            .and_then(|()| self.stream.flush());
        self.out.clear();
        result.map_err(|e| self.io_error("write", e))
    }

    /// Writes `bytes` (a block of whole frames) with as few syscalls as the kernel allows,
    /// after anything queued.
    pub fn write_direct(&mut self, bytes: &[u8]) -> Result<(), BenchError> {
        self.flush()?;
        let result = self
            .stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush());
        result.map_err(|e| self.io_error("write", e))
    }

    /// Sends PING and reads until its PONG, handing any message on to `on_msg`.
    pub fn round_trip<F>(&mut self, timeout: Duration, on_msg: &mut F) -> Result<(), BenchError>
    where
        F: FnMut(Msg<'_>, &mut Vec<u8>),
    {
        let target = self.pongs + 1;
        self.queue(b"PING\r\n")?;
        self.flush()?;
        self.wait_pongs(target, Instant::now() + timeout, on_msg)
    }

    /// One read (waiting at most `TICK`), then every whole frame in the buffer: messages go to
    /// `on_msg` (which may queue bytes to send, such as a reply), PINGs get PONGs, and what
    /// was queued is written before returning.
    pub fn pump<F>(&mut self, on_msg: &mut F) -> Result<Pumped, BenchError>
    where
        F: FnMut(Msg<'_>, &mut Vec<u8>),
    {
        if self.fill()? == 0 {
            return Ok(Pumped::Idle);
        }
        self.dispatch(on_msg)?;
        self.flush()?;
        Ok(Pumped::Data)
    }

    /// Closes with an RST (SO_LINGER 0), so a connection storm leaves no TIME_WAIT sockets to
    /// run the ephemeral port range dry.
    pub fn close_abortive(self) {
        // Best effort: the socket is dropped either way.
        let _ = socket2::SockRef::from(self.stream.tcp()).set_linger(Some(Duration::ZERO));
    }

    fn read_info(&mut self, deadline: Instant) -> Result<(), BenchError> {
        loop {
            match scan(&self.rbuf[self.rstart..self.rend]) {
                Ok(Scan::Frame(Frame::Info(json), len)) => {
                    let info = serde_json::from_slice(json)
                        .map_err(|e| connect_error(&self.url, format!("bad INFO: {e}")))?;
                    self.info = info;
                    self.rstart += len;
                    return Ok(());
                }
                Ok(Scan::Incomplete(_)) => {}
                Ok(Scan::Frame(..)) | Err(_) => {
                    return Err(connect_error(
                        &self.url,
                        "not a NATS server (no INFO)".into(),
                    ));
                }
            }
            if Instant::now() >= deadline {
                return Err(connect_error(&self.url, "no INFO in time".into()));
            }
            self.fill()?;
        }
    }

    fn start_tls(&mut self, opts: &ConnectOptions) -> Result<(), BenchError> {
        let wanted = opts.tls.is_some() || opts.addr.tls;
        if !wanted && !self.info.tls_required {
            return Ok(());
        }
        let Some(config) = opts.tls.clone() else {
            let why = "the server requires TLS: give --tlsca (and --tlscert/--tlskey if it \
                       verifies clients)";
            return Err(connect_error(&self.url, why.into()));
        };
        if !self.info.tls_required {
            return Err(connect_error(
                &self.url,
                "the server does not offer TLS".into(),
            ));
        }
        if self.rstart != self.rend {
            return Err(connect_error(&self.url, "plaintext after INFO".into()));
        }
        let name = ServerName::try_from(opts.addr.host.clone())
            .map_err(|_| connect_error(&self.url, "host is not a valid TLS server name".into()))?;
        let session = ClientConnection::new(config, name)
            .map_err(|e| connect_error(&self.url, format!("TLS: {e}")))?;
        let Stream::Plain(tcp) = &self.stream else {
            return Ok(());
        };
        let tcp = tcp.try_clone().map_err(|e| self.io_error("socket", e))?;
        let mut tls = StreamOwned::new(session, tcp);
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                return Err(connect_error(&self.url, format!("TLS handshake: {e}")));
            }
        }
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    fn send_connect(&mut self, opts: &ConnectOptions) -> Result<(), BenchError> {
        let mut fields = Map::new();
        fields.insert("verbose".into(), false.into());
        fields.insert("pedantic".into(), false.into());
        fields.insert(
            "tls_required".into(),
            matches!(self.stream, Stream::Tls(_)).into(),
        );
        fields.insert("name".into(), opts.name.as_str().into());
        fields.insert("lang".into(), "rust".into());
        fields.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        fields.insert("protocol".into(), 1.into());
        fields.insert("echo".into(), true.into());
        add_url_credentials(&opts.addr, &opts.credentials, &mut fields);
        opts.credentials
            .add_connect_fields(self.info.nonce.as_deref(), &mut fields)
            .map_err(|e| connect_error(&self.url, e))?;
        let line = format!("CONNECT {}\r\nPING\r\n", Value::Object(fields));
        self.queue(line.as_bytes())?;
        self.flush()
    }

    fn wait_pongs<F>(
        &mut self,
        target: u64,
        deadline: Instant,
        on_msg: &mut F,
    ) -> Result<(), BenchError>
    where
        F: FnMut(Msg<'_>, &mut Vec<u8>),
    {
        while self.pongs < target {
            if Instant::now() >= deadline {
                return Err(BenchError::Timeout {
                    url: self.url.clone(),
                    what: "waiting for PONG",
                });
            }
            self.pump(on_msg)?;
        }
        Ok(())
    }

    /// One socket read into the buffer; 0 on timeout.
    fn fill(&mut self) -> Result<usize, BenchError> {
        if self.rend == self.rbuf.len() {
            self.make_room(self.rbuf.len() + 1)?;
        }
        match self.stream.read(&mut self.rbuf[self.rend..]) {
            Ok(0) => Err(BenchError::Closed {
                url: self.url.clone(),
            }),
            Ok(n) => {
                self.rend += n;
                if self.rend == self.rbuf.len() && self.rbuf.len() < READ_BUFFER_BYTES {
                    self.rbuf.resize(READ_BUFFER_BYTES, 0);
                }
                Ok(n)
            }
            Err(e) if is_timeout(&e) => Ok(0),
            Err(e) => Err(self.io_error("read", e)),
        }
    }

    fn dispatch<F>(&mut self, on_msg: &mut F) -> Result<(), BenchError>
    where
        F: FnMut(Msg<'_>, &mut Vec<u8>),
    {
        let buf = &self.rbuf[..self.rend];
        let step = dispatch_frames(buf, self.rstart, &mut self.out, &mut self.pongs, on_msg);
        match step {
            Ok((consumed_to, need)) => {
                self.rstart = consumed_to;
                self.make_room(need.unwrap_or(0))
            }
            Err(DispatchEnd::ServerError(text)) => Err(BenchError::Server {
                url: self.url.clone(),
                message: text,
            }),
            Err(DispatchEnd::Scan(what)) => Err(BenchError::Protocol {
                url: self.url.clone(),
                what,
            }),
        }
    }

    /// Moves the unconsumed bytes to the front and grows the buffer to hold `frame_len` bytes.
    fn make_room(&mut self, frame_len: usize) -> Result<(), BenchError> {
        if self.rstart > 0 {
            self.rbuf.copy_within(self.rstart..self.rend, 0);
            self.rend -= self.rstart;
            self.rstart = 0;
        }
        if frame_len > self.rbuf.len() {
            if frame_len > SIZE_MAX + CONTROL_LINE_MAX + 2 {
                let what = "frame larger than any payload a server may send";
                return Err(BenchError::Protocol {
                    url: self.url.clone(),
                    what,
                });
            }
            self.rbuf.resize(frame_len, 0);
        }
        Ok(())
    }

    fn io_error(&self, context: &'static str, source: io::Error) -> BenchError {
        if matches!(
            source.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::UnexpectedEof
        ) {
            return BenchError::Closed {
                url: self.url.clone(),
            };
        }
        BenchError::Io {
            url: self.url.clone(),
            context,
            source,
        }
    }
}

enum DispatchEnd {
    ServerError(String),
    Scan(&'static str),
}

/// Hands every whole frame in `buf[start..]` on; returns where the unconsumed bytes start and,
/// if known, the length of the incomplete frame there.
fn dispatch_frames<F>(
    buf: &[u8],
    mut start: usize,
    out: &mut Vec<u8>,
    pongs: &mut u64,
    on_msg: &mut F,
) -> Result<(usize, Option<usize>), DispatchEnd>
where
    F: FnMut(Msg<'_>, &mut Vec<u8>),
{
    loop {
        let (frame, len) = match scan(&buf[start..]) {
            Ok(Scan::Frame(frame, len)) => (frame, len),
            Ok(Scan::Incomplete(need)) => return Ok((start, need)),
            Err(e) => return Err(DispatchEnd::Scan(e.as_str())),
        };
        match frame {
            Frame::Msg(msg) => on_msg(msg, out),
            Frame::Ping => out.extend_from_slice(b"PONG\r\n"),
            Frame::Pong => *pongs += 1,
            Frame::Ok | Frame::Info(_) => {}
            Frame::Err(text) => {
                let text = String::from_utf8_lossy(text);
                return Err(DispatchEnd::ServerError(
                    text.trim_matches('\'').to_string(),
                ));
            }
        }
        start += len;
    }
}

fn connect_tcp(addr: &ServerAddr) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no address");
    for sock_addr in (addr.host.as_str(), addr.port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&sock_addr, HANDSHAKE_TIMEOUT) {
            Ok(tcp) => {
                tcp.set_nodelay(true)?;
                tcp.set_read_timeout(Some(TICK))?;
                return Ok(tcp);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// nats.go sends URL credentials (`user:pass@`, `token@`) when no option gives any.
fn add_url_credentials(
    addr: &ServerAddr,
    credentials: &Credentials,
    fields: &mut Map<String, Value>,
) {
    if !matches!(credentials, Credentials::Anonymous) {
        return;
    }
    match (&addr.user, &addr.pass) {
        (Some(user), Some(pass)) => {
            fields.insert("user".into(), user.as_str().into());
            fields.insert("pass".into(), pass.as_str().into());
        }
        (Some(token), None) => {
            fields.insert("auth_token".into(), token.as_str().into());
        }
        _ => {}
    }
}

/// Errors while waiting for the CONNECT's PONG, worded as failures to connect.
fn during_connect(e: BenchError) -> BenchError {
    match e {
        BenchError::Timeout { url, .. } => connect_error(&url, "no PONG in time".into()),
        BenchError::Server { url, message } => {
            connect_error(&url, format!("refused by the server: {message}"))
        }
        BenchError::Closed { url } => connect_error(
            &url,
            "the server closed the connection after CONNECT".into(),
        ),
        other => other,
    }
}

fn connect_error(url: &str, reason: String) -> BenchError {
    BenchError::Connect {
        url: url.to_string(),
        reason,
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let addr = ServerAddr::parse("nats://127.0.0.1:4333").unwrap();
        assert_eq!(
            (addr.host.as_str(), addr.port, addr.tls),
            ("127.0.0.1", 4333, false)
        );
        assert_eq!(addr.display(), "nats://127.0.0.1:4333");
        let addr = ServerAddr::parse("localhost").unwrap();
        assert_eq!((addr.host.as_str(), addr.port), ("localhost", 4222));
        let addr = ServerAddr::parse("tls://u:p@h:1").unwrap();
        assert!(addr.tls);
        assert_eq!(
            (addr.user.as_deref(), addr.pass.as_deref()),
            (Some("u"), Some("p"))
        );
        assert_eq!(addr.display(), "tls://h:1", "no credentials in messages");
        let addr = ServerAddr::parse("nats://tok@[::1]:5000").unwrap();
        assert_eq!((addr.host.as_str(), addr.port), ("::1", 5000));
        assert_eq!(addr.user.as_deref(), Some("tok"));
        assert_eq!(addr.display(), "nats://[::1]:5000");
        for bad in [
            "http://h:1",
            "nats://h:x",
            "nats://:1",
            "a:1,b:2",
            "nats://h:99999",
        ] {
            assert!(ServerAddr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dispatch_answers_pings_counts_pongs_and_keeps_partial_frames() {
        let buf = b"PING\r\nMSG a 1 _INBOX.1 2\r\nhi\r\nPONG\r\nMSG a 1 5\r\nab";
        let (mut out, mut pongs, mut seen) = (Vec::new(), 0, Vec::new());
        let mut on_msg = |msg: Msg<'_>, out: &mut Vec<u8>| {
            seen.push(msg.payload.to_vec());
            out.extend_from_slice(msg.reply().unwrap_or_default());
        };
        let (start, need) = dispatch_frames(buf, 0, &mut out, &mut pongs, &mut on_msg)
            .ok()
            .unwrap();
        assert_eq!(seen, vec![b"hi".to_vec()]);
        assert_eq!(out, b"PONG\r\n_INBOX.1");
        assert_eq!(pongs, 1);
        assert_eq!(&buf[start..], b"MSG a 1 5\r\nab");
        assert_eq!(need, Some(18));
    }

    #[test]
    fn dispatch_stops_at_a_server_error() {
        let buf = b"-ERR 'Authorization Violation'\r\n";
        let (mut out, mut pongs) = (Vec::new(), 0);
        let end = dispatch_frames(buf, 0, &mut out, &mut pongs, &mut |_, _| {});
        assert!(matches!(end, Err(DispatchEnd::ServerError(t)) if t == "Authorization Violation"));
    }
}
