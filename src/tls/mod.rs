//! TLS for client connections: the compiled `tls { }` block and a sans-IO session per connection.
//!
//! Cold: `TlsSettings` is built once per config load (PEM files read, rustls `ServerConfig`
//! compiled) and shared by every shard through an `Arc`. Per connection, `TlsSession` wraps a
//! rustls `ServerConnection` and is driven with byte slices only: the reactor hands it the
//! ciphertext it received and sends whatever bytes it appends to `to_send`. Invariant: no socket,
//! no clock, no blocking call, and no input panics; any bad byte ends in a `TlsError` (and at
//! most a TLS alert in `to_send`) for that one connection.
//!
//! Like nats-server 2.9.10 the broker writes its INFO in plaintext first and then expects the
//! client to start the handshake. A client that answers with NATS text instead (`CONNECT ..`)
//! is closed without a byte sent back: Go's `crypto/tls` logs `first record does not look like
//! a TLS handshake` and nats-server closes with `TLS Handshake Failure` (see
//! [`looks_like_plaintext`]).

pub mod identity;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::{ServerConfig, ServerConnection, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, Entry, Map, Value};

pub use identity::{CertIdentity, DnMatch, parse_dn};

/// Handshake timeout when the `tls` block has no `timeout` (nats-server `TLSTimeout` default).
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// Where client CAs come from when `verify` is on and `ca_file` is not given (Go uses the system
/// pool in that case; this is where Debian keeps it).
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Keys nats-server 2.9.10 accepts in a `tls` block that ringnats parses but does not act on.
/// They are accepted with a warning. (`insecure` only matters for outgoing connections and
/// `connection_rate_limit` is not implemented.)
pub const IGNORED_KEYS: &[&str] = &[
    "verify_cert_and_check_known_urls",
    "pinned_certs",
    "cipher_suites",
    "curve_preferences",
    "insecure",
    "connection_rate_limit",
];

/// The `--tls`, `--tlscert`, `--tlskey`, `--tlscacert`, `--tlsverify` flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: Option<PathBuf>,
    pub verify: bool,
}

/// The compiled `tls` block (or `--tls*` flags).
#[derive(Clone)]
pub struct TlsSettings {
    /// A client certificate is required and verified against the CAs (`verify` or
    /// `verify_and_map`); advertised as `tls_verify` in INFO.
    pub verify: bool,
    /// The client certificate names the user (`verify_and_map`, alias `map_and_verify`).
    pub map: bool,
    /// Handshake deadline, counted by the reactor from accept.
    pub timeout: Duration,
    /// The files the settings came from, so a reload can tell whether anything changed.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    config: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("verify", &self.verify)
            .field("map", &self.map)
            .field("timeout", &self.timeout)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// The keys of a `tls` block, as read before any file is opened.
#[derive(Default)]
struct TlsKeys<'a> {
    cert_file: Option<(&'a Entry, &'a str)>,
    key_file: Option<(&'a Entry, &'a str)>,
    ca_file: Option<(&'a Entry, &'a str)>,
    verify: bool,
    map: bool,
    timeout: Option<Duration>,
}

impl TlsSettings {
    /// Compiles the raw `tls` config value (a map). Errors name the file, line and key: a
    /// missing or unreadable cert, key or CA file is fatal here, as in nats-server; unknown keys
    /// are refused like nats-server (`unknown field`), except [`IGNORED_KEYS`], which are
    /// accepted with a warning.
    pub fn from_value(v: &Value) -> Result<TlsSettings, ConfigError> {
        let map = v.expect_map("tls")?;
        let keys = read_keys(map)?;
        let Some((cert_entry, cert)) = keys.cert_file else {
            return Err(v.error("tls", "missing 'cert_file' in TLS configuration"));
        };
        let Some((key_entry, key)) = keys.key_file else {
            return Err(v.error("tls", "missing 'key_file' in TLS configuration"));
        };
        let certs = load_certs(Path::new(cert)).map_err(|e| cert_entry.error(e))?;
        let key_der = load_key(Path::new(key)).map_err(|e| key_entry.error(e))?;
        let roots = match keys.ca_file {
            Some((entry, ca)) => Some(load_roots(Path::new(ca)).map_err(|e| entry.error(e))?),
            None => None,
        };
        let verify = keys.verify || keys.map;
        let config = build_config(certs, key_der, roots, verify).map_err(|e| v.error("tls", e))?;
        Ok(TlsSettings {
            verify,
            map: keys.map,
            timeout: keys.timeout.unwrap_or(TIMEOUT_DEFAULT),
            cert_file: PathBuf::from(cert),
            key_file: PathBuf::from(key),
            ca_file: keys.ca_file.map(|(_, ca)| PathBuf::from(ca)),
            config: Arc::new(config),
        })
    }

    /// Compiles `--tlscert`, `--tlskey`, `--tlscacert` and `--tlsverify` (the CLI has no
    /// timeout flag, so the default applies). The error is one line naming the file.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        ca: Option<&Path>,
        verify: bool,
        map: bool,
    ) -> Result<TlsSettings, String> {
        let certs = load_certs(cert)?;
        let key_der = load_key(key)?;
        let roots = ca.map(load_roots).transpose()?;
        let verify = verify || map;
        let config = build_config(certs, key_der, roots, verify)?;
        Ok(TlsSettings {
            verify,
            map,
            timeout: TIMEOUT_DEFAULT,
            cert_file: cert.to_path_buf(),
            key_file: key.to_path_buf(),
            ca_file: ca.map(Path::to_path_buf),
            config: Arc::new(config),
        })
    }

    /// The config of the `https_port` monitoring listener: the same certificate, and no
    /// client certificate asked whatever `verify` says (nats-server `getMonitoringTLSConfig`
    /// sets `ClientAuth = NoClientCert`).
    pub fn monitoring_config(&self) -> Result<Arc<ServerConfig>, String> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&self.config.cert_resolver));
        config.max_early_data_size = 0;
        // Go's net/http offers HTTP/1.1 over TLS; hyper here speaks HTTP/1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A fresh server-side session for one accepted connection.
    pub fn new_session(&self) -> TlsSession {
        // `ServerConnection::new` fails only for a config without a usable protocol version,
        // which `build_config` rules out; if it ever did fail, every call on the session
        // returns that error and the connection is closed.
        let conn = ServerConnection::new(Arc::clone(&self.config)).map(|mut conn| {
            // The connection's outbuf enforces the pending-bytes limit (slow consumer), so
            // rustls must never refuse plaintext we hand it: `write_all` cannot stop short.
            conn.set_buffer_limit(None);
            conn
        });
        TlsSession {
            conn: conn.map_err(TlsError::Rustls),
            first_record_checked: false,
            peer_closed: false,
        }
    }
}

/// Why a TLS session failed. Every variant ends the connection (nats-server's close reason is
/// `TLS Handshake Failure` during the handshake).
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// The first bytes are not a TLS record (a plaintext NATS client, an HTTP request, ...).
    /// Nothing is sent back; close silently as nats-server does.
    #[error("first record does not look like a TLS handshake")]
    NotTls,
    /// rustls refused the peer's records (bad handshake, bad certificate, decrypt error ...).
    /// `to_send` may hold a fatal alert: send it, then close.
    #[error("{0}")]
    Rustls(rustls::Error),
    /// The peer sent `close_notify` and then more data, or we were used after a failure.
    #[error("TLS session is closed")]
    Closed,
}

/// One connection's TLS state, driven with bytes (see the module doc).
pub struct TlsSession {
    /// `Err` only when rustls refused to build the connection; then every call fails.
    conn: Result<ServerConnection, TlsError>,
    /// Set once the first bytes have passed [`looks_like_plaintext`].
    first_record_checked: bool,
    /// Set once the peer's `close_notify` was processed.
    peer_closed: bool,
}

impl TlsSession {
    /// Feeds ciphertext received from the socket; appends decrypted application bytes to
    /// `plaintext` and any bytes that must be sent (handshake records, alerts) to `to_send`.
    /// On `Err`, `to_send` may hold a fatal alert: send it and close the connection.
    pub fn on_receive(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut Vec<u8>,
        to_send: &mut Vec<u8>,
    ) -> Result<(), TlsError> {
        if !self.first_record_checked && !ciphertext.is_empty() {
            if looks_like_plaintext(ciphertext) {
                return Err(TlsError::NotTls);
            }
            self.first_record_checked = true;
        }
        let conn = self.conn.as_mut().map_err(|e| e.clone())?;
        let result = receive_records(conn, ciphertext, plaintext);
        drain_tls(conn, to_send);
        self.peer_closed |= result?;
        Ok(())
    }

    /// Encrypts application bytes, appending TLS records to `to_send`. Bytes given during the
    /// handshake are held and sent once it completes.
    pub fn encrypt(&mut self, plaintext: &[u8], to_send: &mut Vec<u8>) -> Result<(), TlsError> {
        let conn = self.conn.as_mut().map_err(|e| e.clone())?;
        conn.writer()
            .write_all(plaintext)
            .map_err(|_| TlsError::Closed)?;
        drain_tls(conn, to_send);
        Ok(())
    }

    /// True until the handshake has completed.
    pub fn is_handshaking(&self) -> bool {
        match &self.conn {
            Ok(conn) => conn.is_handshaking(),
            Err(_) => true,
        }
    }

    /// True once the peer sent `close_notify`.
    pub fn is_peer_closed(&self) -> bool {
        self.peer_closed
    }

    /// After the handshake: the identity in the client certificate, for `verify_and_map`.
    /// `None` if the client sent no certificate (or it cannot be parsed).
    pub fn peer_identity(&self) -> Option<CertIdentity> {
        let conn = self.conn.as_ref().ok()?;
        let leaf = conn.peer_certificates()?.first()?;
        CertIdentity::from_der(leaf.as_ref()).ok()
    }

    /// Queues a `close_notify` alert and appends it to `to_send`.
    pub fn send_close_notify(&mut self, to_send: &mut Vec<u8>) {
        if let Ok(conn) = self.conn.as_mut() {
            conn.send_close_notify();
            drain_tls(conn, to_send);
        }
    }

    /// The client's TLS state for an auth callout request: version and cipher as Go names
    /// them (`1.3`, `TLS_AES_128_GCM_SHA256`), and the certificates the client sent as PEM,
    /// as the verified chain when `verified` (rustls accepted them against the CA) or as plain
    /// `certs` otherwise. `None` before the handshake is done.
    pub fn callout_info(&self, verified: bool) -> Option<crate::auth::callout::ClientTls> {
        let conn = self.conn.as_ref().ok()?;
        if conn.is_handshaking() {
            return None;
        }
        let version = match conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => "1.3",
            rustls::ProtocolVersion::TLSv1_2 => "1.2",
            _ => "",
        };
        let cipher = conn
            .negotiated_cipher_suite()
            .and_then(|s| s.suite().as_str())
            .map(|name| name.replacen("TLS13_", "TLS_", 1))
            .unwrap_or_default();
        let pems: Vec<String> = conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|der| certificate_pem(der.as_ref()))
            .collect();
        let (certs, verified_chains) = if verified && !pems.is_empty() {
            (Vec::new(), vec![pems])
        } else {
            (pems, Vec::new())
        };
        Some(crate::auth::callout::ClientTls {
            version: version.to_string(),
            cipher,
            certs,
            verified_chains,
        })
    }

    /// The negotiated protocol version (`"TLSv1.3"`), for logs and monitoring.
    pub fn protocol_version(&self) -> Option<&'static str> {
        let version = self.conn.as_ref().ok()?.protocol_version()?;
        version.as_str()
    }
}

/// A DER certificate as PEM (Go `pem.EncodeToMemory`: base64 lines of 64 characters).
fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// True when `first_bytes` (the first bytes a client sent after our INFO) cannot start a TLS
/// handshake. Mirrors Go 1.19 `crypto/tls` `readRecordOrCCS` for the first record: the record
/// type must be handshake (22) or alert (21), and the major version byte must be below 0x10.
/// Go waits for the full 5-byte header before judging; this judges on what is there (one byte
/// is enough for `C`, `P`, `S` ...), which only makes the same silent close happen sooner.
pub fn looks_like_plaintext(first_bytes: &[u8]) -> bool {
    const RECORD_ALERT: u8 = 21;
    const RECORD_HANDSHAKE: u8 = 22;
    match first_bytes {
        [] => false,
        [kind, ..] if *kind != RECORD_HANDSHAKE && *kind != RECORD_ALERT => true,
        [_, major, ..] => *major >= 0x10,
        [_] => false,
    }
}

/// Feeds all of `ciphertext` to rustls, collecting plaintext after each chunk so rustls' own
/// received-plaintext buffer never fills. Returns whether the peer sent `close_notify`.
fn receive_records(
    conn: &mut ServerConnection,
    mut ciphertext: &[u8],
    plaintext: &mut Vec<u8>,
) -> Result<bool, TlsError> {
    let mut peer_closed = false;
    while !ciphertext.is_empty() {
        // `read_tls` fails once the peer's `close_notify` was processed (more data after it),
        // and returns 0 only for an empty source, which the loop condition rules out.
        if conn.read_tls(&mut ciphertext).map_or(true, |n| n == 0) {
            return Err(TlsError::Closed);
        }
        let state = conn.process_new_packets().map_err(TlsError::Rustls)?;
        peer_closed |= state.peer_has_closed();
        let ready = state.plaintext_bytes_to_read();
        if ready > 0 {
            let start = plaintext.len();
            plaintext.resize(start + ready, 0);
            let filled = conn.reader().read(&mut plaintext[start..]).unwrap_or(0);
            plaintext.truncate(start + filled);
        }
    }
    Ok(peer_closed)
}

/// Moves every pending TLS record into `to_send`. Writing into a `Vec` cannot fail.
fn drain_tls(conn: &mut ServerConnection, to_send: &mut Vec<u8>) {
    while conn.wants_write() {
        if conn.write_tls(to_send).is_err() {
            break;
        }
    }
}

/// Reads the keys of a `tls` block, refusing unknown ones.
fn read_keys(map: &Map) -> Result<TlsKeys<'_>, ConfigError> {
    let mut keys = TlsKeys::default();
    for entry in map {
        if entry.is_used_variable() {
            continue;
        }
        let key = entry.key_lower();
        let value = &entry.value;
        match key.as_str() {
            "cert_file" => keys.cert_file = Some((entry, file_name(entry)?)),
            "key_file" => keys.key_file = Some((entry, file_name(entry)?)),
            "ca_file" => keys.ca_file = Some((entry, file_name(entry)?)),
            "verify" => keys.verify = value.expect_bool(&entry.key)?,
            // nats-server knows only `verify_and_map`; `map_and_verify` is our alias.
            "verify_and_map" | "map_and_verify" => keys.map = value.expect_bool(&entry.key)?,
            "timeout" => keys.timeout = Some(value.expect_seconds_or_duration(&entry.key)?),
            k if IGNORED_KEYS.contains(&k) => {
                tracing::warn!(key = %entry.key, pos = %entry.pos, "tls option ignored");
            }
            _ => {
                return Err(ConfigError::UnknownField {
                    pos: entry.pos.clone(),
                    key: entry.key.clone(),
                });
            }
        }
    }
    Ok(keys)
}

/// A file-name value (nats-server: `expected 'cert_file' to be filename`).
fn file_name(entry: &Entry) -> Result<&str, ConfigError> {
    entry
        .value
        .as_str()
        .ok_or_else(|| entry.error(format!("expected '{}' to be filename", entry.key)))
}

/// All certificates of a PEM file (leaf first).
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let file = open(path)?;
    let certs = CertificateDer::pem_reader_iter(file)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(format!(
            "error parsing X509 certificate/key pair: failed to find any PEM data in \
             certificate input {}",
            path.display()
        ));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let file = open(path)?;
    PrivateKeyDer::from_pem_reader(file).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!(
            "error parsing X509 certificate/key pair: failed to find any PEM data in key input {}",
            path.display()
        ),
        e => pem_error(path, e),
    })
}

/// The CA certificates of a PEM file as trust anchors.
fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let file = open(path)?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_reader_iter(file) {
        let cert = cert.map_err(|e| pem_error(path, e))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: bad CA certificate: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "{}: failed to parse root certificate from \"{}\"",
            path.display(),
            path.display()
        ));
    }
    Ok(roots)
}

fn open(path: &Path) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| format!("open {}: {}", path.display(), io_reason(&e)))
}

/// Go-like wording for the common open failures (`no such file or directory`).
fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".to_string(),
        io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

fn pem_error(path: &Path, e: rustls_pki_types::pem::Error) -> String {
    format!("{}: bad PEM data: {e:?}", path.display())
}

/// The process-wide provider is not used: every config names ring explicitly, so nothing
/// depends on `CryptoProvider::install_default` having run.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls server config. With `verify`, the client must present a certificate that
/// chains to `roots` (or to the system bundle when no `ca_file` was given).
fn build_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    roots: Option<RootCertStore>,
    verify: bool,
) -> Result<ServerConfig, String> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let builder = if verify {
        let roots = match roots {
            Some(roots) => roots,
            None => load_roots(Path::new(SYSTEM_CA_BUNDLE))
                .map_err(|e| format!("verify without ca_file needs the system CAs: {e}"))?,
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("client certificate verifier: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("error parsing X509 certificate/key pair: {e}"))?;
    // No 0-RTT: early data could be replayed, and Go's server never accepts it.
    config.max_early_data_size = 0;
    Ok(config)
}

#[cfg(test)]
mod tests;
