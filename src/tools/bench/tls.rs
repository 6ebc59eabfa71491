//! The bench client's TLS settings: a rustls client config (ring provider) from `--tlsca`,
//! `--tlscert` and `--tlskey` PEM files.
//!
//! Cold: built once per run and shared by every connection. Invariant: the server certificate
//! is always verified against `--tlsca`; there is no "insecure" mode, so a number measured over
//! TLS is a number for a real handshake.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS flags as given.
#[derive(Clone, Copy, Debug, Default)]
pub struct TlsFlags<'a> {
    pub ca: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

impl TlsFlags<'_> {
    pub fn is_any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// Builds the client config, or `None` when no TLS flag was given.
pub fn client_config(flags: TlsFlags<'_>) -> Result<Option<Arc<ClientConfig>>, String> {
    if !flags.is_any() {
        return Ok(None);
    }
    let ca = flags
        .ca
        .ok_or("TLS needs --tlsca, the CA that signed the server certificate")?;
    let roots = load_roots(ca)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots);
    let config = match (flags.cert, flags.key) {
        (Some(cert), Some(key)) => {
            let chain = load_certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("{}: no usable private key: {e:?}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate and key: {e}"))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err("--tlscert and --tlskey go together".to_string()),
    };
    Ok(Some(Arc::new(config)))
}

fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("{}: bad CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e:?}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM data: {e:?}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_no_tls() {
        assert!(client_config(TlsFlags::default()).unwrap().is_none());
    }

    #[test]
    fn cert_without_ca_or_key_is_refused() {
        let cert_only = TlsFlags {
            cert: Some(Path::new("/x.pem")),
            ..Default::default()
        };
        let err = client_config(cert_only).unwrap_err();
        assert!(err.contains("--tlsca"), "{err}");
        let missing = TlsFlags {
            ca: Some(Path::new("/nonexistent/ca.pem")),
            ..Default::default()
        };
        let err = client_config(missing).unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    }
}
