//! A raw TLS client for integration tests: reads the plaintext INFO a 2.9.x server sends first,
//! then runs a rustls handshake and speaks protocol bytes over it.
//!
//! Cold, test-only. `TlsRawConn` mirrors `RawConn` (every read bounded by a deadline, so a test
//! waiting for something that never comes fails instead of hanging) for servers that require
//! TLS. Invariant: it never reads past the INFO line before the handshake starts, so no TLS
//! byte is ever consumed as plaintext. `Admission` tells the three answers to `CONNECT` +
//! `PING` apart: `PONG`, another line (an `-ERR`), or an end without a line (a failed
//! handshake, an alert, EOF). `Pki` (feature `test-pki`) makes certificates per test.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

use super::{ReadEnd, TIMEOUT, show};

/// A client certificate and its PKCS#8 key, both DER.
#[derive(Clone, Copy, Debug)]
pub struct ClientCert<'a> {
    pub cert_der: &'a [u8],
    pub key_der: &'a [u8],
}

/// A rustls client config trusting `ca_der`, presenting `client` if given.
pub fn client_config(ca_der: &[u8], client: Option<ClientCert<'_>>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca_der.to_vec()))
        .expect("add CA to root store");
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some(c) => {
            let chain = vec![CertificateDer::from(c.cert_der.to_vec())];
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.to_vec()));
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate and key")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Connects to 127.0.0.1:`port` over plain TCP and reads the plaintext INFO line (without
/// reading a byte past it). Returns the stream and the line without `\r\n`.
pub fn connect_read_info(port: u16) -> (TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("set_read_timeout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("reading INFO: {other:?} after {}", show(&line)),
        }
    }
    line.truncate(line.len() - 2);
    assert!(line.starts_with(b"INFO "), "not INFO: {}", show(&line));
    (stream, line)
}

/// A TLS client connection speaking raw protocol bytes.
pub struct TlsRawConn {
    tls: StreamOwned<ClientConnection, TcpStream>,
    buf: Vec<u8>,
    /// The plaintext INFO line, without `\r\n`.
    pub info_line: Vec<u8>,
    /// Whether server PINGs are answered and skipped by the read functions (default on).
    auto_pong: bool,
}

impl TlsRawConn {
    /// Connects, reads INFO and completes the handshake. `Err` carries the handshake error.
    /// With TLS 1.3 a server that refuses the client certificate is only heard from after
    /// the client's side of the handshake is done: use [`TlsRawConn::is_refused`] for that.
    pub fn connect(port: u16, config: Arc<ClientConfig>) -> Result<TlsRawConn, io::Error> {
        let (mut stream, info_line) = connect_read_info(port);
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut stream)?;
        }
        Ok(TlsRawConn {
            tls: StreamOwned::new(conn, stream),
            buf: Vec::new(),
            info_line,
            auto_pong: true,
        })
    }

    /// Like [`TlsRawConn::connect`], with `early` plaintext handed to rustls before the
    /// handshake: it leaves in the same write as the client's `Finished`, so the server gets
    /// the end of the handshake and the first protocol bytes in one read.
    pub fn connect_early(
        port: u16,
        config: Arc<ClientConfig>,
        early: &[u8],
    ) -> Result<TlsRawConn, io::Error> {
        let (mut stream, info_line) = connect_read_info(port);
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        conn.writer().write_all(early)?;
        while conn.is_handshaking() || conn.wants_write() {
            conn.complete_io(&mut stream)?;
        }
        Ok(TlsRawConn {
            tls: StreamOwned::new(conn, stream),
            buf: Vec::new(),
            info_line,
            auto_pong: true,
        })
    }

    /// Like [`TlsRawConn::connect`], but every handshake byte the client sends goes out in
    /// its own write of at most `chunk` bytes.
    pub fn connect_trickle(
        port: u16,
        config: Arc<ClientConfig>,
        chunk: usize,
    ) -> Result<TlsRawConn, io::Error> {
        let (mut stream, info_line) = connect_read_info(port);
        let name = ServerName::try_from("127.0.0.1").expect("server name");
        let mut conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut Trickle {
                stream: &mut stream,
                chunk,
            })?;
        }
        Ok(TlsRawConn {
            tls: StreamOwned::new(conn, stream),
            buf: Vec::new(),
            info_line,
            auto_pong: true,
        })
    }

    /// Sends a TLS `close_notify` alert (the client's orderly end of the session).
    pub fn send_close_notify(&mut self) {
        self.tls.conn.send_close_notify();
        self.tls.flush().expect("flush close_notify");
    }

    /// When on (the default), a server `PING` is answered with `PONG` and skipped.
    pub fn set_auto_pong(&mut self, on: bool) {
        self.auto_pong = on;
    }

    /// Reads and discards everything until the server ends the connection; returns the
    /// plaintext bytes discarded. Panics if it is still open after `within`.
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

    /// The INFO JSON object.
    pub fn info(&self) -> serde_json::Value {
        let json = self.info_line.strip_prefix(b"INFO ").expect("INFO prefix");
        serde_json::from_slice(json).expect("INFO JSON")
    }

    /// Writes all bytes (encrypted); panics if the connection is broken.
    pub fn send(&mut self, bytes: &[u8]) {
        self.tls.write_all(bytes).expect("send over TLS");
        self.tls.flush().expect("flush TLS");
    }

    /// Writes all bytes (encrypted), each write giving up after `within` without progress;
    /// `Err` once the server closed, reset or stopped taking bytes.
    pub fn try_send(&mut self, bytes: &[u8], within: Duration) -> io::Result<()> {
        self.tls.sock.set_write_timeout(Some(within))?;
        self.tls.write_all(bytes)?;
        self.tls.flush()
    }

    /// Writes raw bytes on the TCP socket underneath TLS (to corrupt the record stream).
    pub fn send_raw_tcp(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tls.sock.write_all(bytes)
    }

    /// Sends `CONNECT <json>\r\n`.
    pub fn send_connect(&mut self, json: &str) {
        self.send(format!("CONNECT {json}\r\n").as_bytes());
    }

    /// One line (without `\r\n`) before `deadline`. Server PINGs are answered and skipped.
    pub fn try_read_line(&mut self, deadline: Instant) -> Result<Vec<u8>, ReadEnd> {
        loop {
            if let Some(pos) = memchr::memmem::find(&self.buf, b"\r\n") {
                let line = self.buf[..pos].to_vec();
                self.buf.drain(..pos + 2);
                if self.auto_pong && line == b"PING" {
                    self.send(b"PONG\r\n");
                    continue;
                }
                return Ok(line);
            }
            self.fill(deadline)?;
        }
    }

    /// One line or panic.
    pub fn read_line(&mut self) -> Vec<u8> {
        match self.try_read_line(Instant::now() + TIMEOUT) {
            Ok(line) => line,
            Err(end) => panic!("expected a line, got {end:?}; buffered {}", show(&self.buf)),
        }
    }

    #[track_caller]
    pub fn expect_line(&mut self, expected: &[u8]) {
        let line = self.read_line();
        assert_eq!(show(&line), show(expected), "unexpected line");
    }

    #[track_caller]
    pub fn expect_err(&mut self, text: &str) {
        self.expect_line(format!("-ERR '{text}'").as_bytes());
    }

    /// `PING` answered by `PONG` as the next line.
    #[track_caller]
    pub fn expect_open(&mut self) {
        self.send(b"PING\r\n");
        self.expect_line(b"PONG");
    }

    /// Reads one `MSG` and its payload; asserts subject and payload.
    #[track_caller]
    pub fn expect_msg(&mut self, subject: &str, sid: &str, payload: &[u8]) {
        let line = self.read_line();
        let expected = format!("MSG {subject} {sid} {}", payload.len());
        assert_eq!(show(&line), expected, "unexpected line");
        let deadline = Instant::now() + TIMEOUT;
        while self.buf.len() < payload.len() + 2 {
            if let Err(end) = self.fill(deadline) {
                panic!("payload of {expected}: {end:?}");
            }
        }
        let body: Vec<u8> = self.buf.drain(..payload.len() + 2).collect();
        assert_eq!(show(&body[..payload.len()]), show(payload), "payload");
        assert_eq!(&body[payload.len()..], b"\r\n");
    }

    /// Asserts the server ends the connection (EOF, reset or TLS alert) with no line sent.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            assert!(
                self.buf.is_empty(),
                "expected close, got {}",
                show(&self.buf)
            );
            match self.fill(deadline) {
                Ok(_) => continue,
                Err(ReadEnd::Closed(_)) => return,
                Err(ReadEnd::Timeout) => panic!("connection still open after {TIMEOUT:?}"),
            }
        }
    }

    /// Sends `CONNECT <json>` and `PING` and reports what the server did.
    pub fn admission(&mut self, connect_json: &str) -> Admission {
        let sent = self
            .tls
            .write_all(format!("CONNECT {connect_json}\r\nPING\r\n").as_bytes())
            .and_then(|()| self.tls.flush());
        if sent.is_err() {
            return Admission::Closed;
        }
        match self.try_read_line(Instant::now() + TIMEOUT) {
            Ok(line) if line == b"PONG" => Admission::Pong,
            Ok(line) => Admission::Line(String::from_utf8_lossy(&line).into_owned()),
            Err(ReadEnd::Closed(_)) => Admission::Closed,
            Err(ReadEnd::Timeout) => panic!("neither a line nor a close within {TIMEOUT:?}"),
        }
    }

    fn fill(&mut self, deadline: Instant) -> Result<usize, ReadEnd> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadEnd::Timeout);
        }
        self.tls
            .sock
            .set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .expect("set_read_timeout");
        let mut chunk = [0u8; 64 * 1024];
        match self.tls.read(&mut chunk) {
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
}

/// A socket that writes at most `chunk` bytes per call, each in its own `send`.
struct Trickle<'a> {
    stream: &'a mut TcpStream,
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for Trickle<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(self.chunk);
        self.stream.write_all(&buf[..n])?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// What the server did with a TLS client that sent `CONNECT` and `PING`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Answered `PONG`: the client is in.
    Pong,
    /// Answered another line first (an `-ERR`).
    Line(String),
    /// Ended the connection without a line: failed handshake, alert, EOF or reset.
    Closed,
}

/// Connects with `config` and reports what the server does with `CONNECT` + `PING`.
pub fn admission(port: u16, config: Arc<ClientConfig>, connect_json: &str) -> Admission {
    match TlsRawConn::connect(port, config) {
        Err(_) => Admission::Closed,
        Ok(mut conn) => conn.admission(connect_json),
    }
}

/// A fresh test PKI in its own scratch directory, removed on drop (kept if the test panicked).
#[cfg(feature = "test-pki")]
pub struct Pki {
    pub dir: std::path::PathBuf,
    pub pki: ringnats::tls::test_pki::TestPki,
}

#[cfg(feature = "test-pki")]
impl Pki {
    pub fn new() -> Pki {
        let dir = super::scratch_dir();
        let pki = ringnats::tls::test_pki::write_test_pki(&dir);
        Pki { dir, pki }
    }

    /// `tls { cert_file, key_file, <extra> }` with the server certificate.
    pub fn tls_block(&self, extra: &str) -> String {
        format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  {extra}\n}}\n",
            self.pki.server.cert.display(),
            self.pki.server.key.display()
        )
    }

    /// The same with `ca_file` set to the test CA.
    pub fn tls_block_with_ca(&self, extra: &str) -> String {
        self.tls_block(&format!(
            "ca_file: \"{}\"\n  {extra}",
            self.pki.ca_cert.display()
        ))
    }

    /// A rustls client config trusting the test CA, presenting `client` if given.
    pub fn client(&self, client: Option<&ringnats::tls::test_pki::TestCert>) -> Arc<ClientConfig> {
        let cert = client.map(|c| ClientCert {
            cert_der: &c.cert_der,
            key_der: &c.key_der,
        });
        client_config(&self.pki.ca_der, cert)
    }

    /// async-nats options that require TLS and trust the test CA.
    pub fn nats_opts(&self) -> async_nats::ConnectOptions {
        async_nats::ConnectOptions::new()
            .require_tls(true)
            .add_root_certificates(self.pki.ca_cert.clone())
    }

    /// The same, presenting `cert`.
    pub fn nats_opts_with(
        &self,
        cert: &ringnats::tls::test_pki::TestCert,
    ) -> async_nats::ConnectOptions {
        self.nats_opts()
            .add_client_certificate(cert.cert.clone(), cert.key.clone())
    }
}

#[cfg(feature = "test-pki")]
impl Drop for Pki {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
