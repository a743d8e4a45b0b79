//! SIP over TLS (RFC 3261 §26.2, §18): the rustls configurations built
//! once at start from the routes file's `tls:` block (or
//! [`super::Options::tls`]), and the handshakes the connection tasks of
//! [`super::tcp`] run before framing.
//!
//! - Accepting: we present `certificate` (a PEM chain) with `key`; with
//!   `verify_client` the client must present a certificate chaining to
//!   `ca`, else no client certificate is asked for.
//! - Connecting: the peer's certificate must chain to `ca` when given,
//!   else to the system's trust anchors (rustls-native-certs: what the
//!   host's administrators trust, updated with the OS), and must name the
//!   next hop: its host name when the target was a name (sent as SNI too),
//!   its IP address for an IP literal (no SNI). We present our own
//!   certificate when the server asks for one.
//!
//! The crypto is rustls' `ring` provider. The files are read at start
//! only: rotating certificates takes a restart (or a `--takeover` rollout).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// How long a TLS handshake may take by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificates are, and the handshake bounds.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain (ours, first).
    pub certificate: PathBuf,
    /// Its PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM trust anchors for peers (None: the system's roots).
    pub ca: Option<PathBuf>,
    /// Require and verify client certificates (against `ca`).
    pub verify_client: bool,
    /// A handshake not done within this is abandoned.
    pub handshake_timeout: Duration,
}

impl TlsFiles {
    /// The files of a routes file's `tls:` block.
    pub fn from_settings(s: &crate::api::TlsSettings) -> TlsFiles {
        TlsFiles {
            certificate: PathBuf::from(s.certificate),
            key: PathBuf::from(s.key),
            ca: s.ca.map(PathBuf::from),
            verify_client: s.verify_client,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }
}

/// The ready configurations.
#[derive(Clone)]
pub struct Tls {
    pub(super) acceptor: TlsAcceptor,
    pub(super) connector: TlsConnector,
    pub(super) handshake_timeout: Duration,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Read the files and build both configurations; the error names the
/// file and what is wrong with it.
pub fn load(files: &TlsFiles) -> Result<Tls, String> {
    let chain = certificates(&files.certificate, "certificate")?;
    let key = private_key(&files.key)?;
    let ca = files.ca.as_deref().map(|p| roots(p, "ca")).transpose()?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = server_config(files, &provider, chain.clone(), key.clone_key(), ca.clone())?;
    let client = client_config(&provider, chain, key, ca)?;
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        connector: TlsConnector::from(Arc::new(client)),
        handshake_timeout: files.handshake_timeout,
    })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("tls {what} {}: cannot read it: {e}", path.display()))
}

/// The certificates of a PEM file (at least one).
fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls {what} {}: not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls {what} {}: no certificate in it (expected PEM `BEGIN CERTIFICATE` blocks)",
            path.display()
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path, "key")?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        format!(
            "tls key {}: no usable private key in it (PEM PKCS#8, RSA or EC key expected): {e}",
            path.display()
        )
    })
}

fn roots(path: &Path, what: &str) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path, what)? {
        store.add(cert).map_err(|e| {
            format!(
                "tls {what} {}: not a usable CA certificate: {e}",
                path.display()
            )
        })?;
    }
    Ok(Arc::new(store))
}

/// The system's trust anchors (those it cannot parse are skipped).
fn system_roots() -> Result<Arc<RootCertStore>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "tls: no `ca` given and no system trust anchors found ({} error(s) reading them): give `ca`",
            found.errors.len()
        ));
    }
    Ok(Arc::new(store))
}

fn server_config(
    files: &TlsFiles,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: Option<Arc<RootCertStore>>,
) -> Result<ServerConfig, String> {
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?;
    let builder = if files.verify_client {
        let Some(ca) = ca else {
            return Err(
                "tls: verify_client needs `ca` (the CA client certificates chain to)".into(),
            );
        };
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(ca, Arc::clone(provider))
                .build()
                .map_err(|e| format!("tls ca: cannot verify clients with it: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder.with_single_cert(chain, key).map_err(|e| {
        format!(
            "tls key {}: does not go with certificate {}: {e}",
            files.key.display(),
            files.certificate.display()
        )
    })
}

fn client_config(
    provider: &Arc<rustls::crypto::CryptoProvider>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    ca: Option<Arc<RootCertStore>>,
) -> Result<ClientConfig, String> {
    let roots = match ca {
        Some(ca) => ca,
        None => system_roots()?,
    };
    ClientConfig::builder_with_provider(Arc::clone(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("tls: our certificate cannot be used as a client certificate: {e}"))
}

/// The name a connection to a next hop is verified against: its host
/// name when the target was one, else its IP address.
pub(super) fn server_name(host: Option<&str>, ip: IpAddr) -> ServerName<'static> {
    host.filter(|h| h.parse::<IpAddr>().is_err())
        .and_then(|h| ServerName::try_from(h.trim_end_matches('.').to_string()).ok())
        .unwrap_or(ServerName::IpAddress(ip.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> TlsFiles {
        TlsFiles {
            certificate: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            ca: None,
            verify_client: false,
            handshake_timeout: HANDSHAKE_TIMEOUT,
        }
    }

    #[test]
    fn a_missing_or_empty_file_is_named() {
        let dir = std::env::temp_dir().join(format!("sf-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let e = load(&files(&dir)).unwrap_err();
        assert!(e.contains("cert.pem") && e.contains("cannot read"), "{e}");
        std::fs::write(dir.join("cert.pem"), "not pem\n").unwrap();
        let e = load(&files(&dir)).unwrap_err();
        assert!(
            e.contains("cert.pem") && e.contains("no certificate"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_and_addresses_are_verified_as_such() {
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(matches!(server_name(None, ip), ServerName::IpAddress(_)));
        assert!(matches!(
            server_name(Some("192.0.2.1"), ip),
            ServerName::IpAddress(_)
        ));
        match server_name(Some("sip.example.com."), ip) {
            ServerName::DnsName(n) => assert_eq!(n.as_ref(), "sip.example.com"),
            other => panic!("{other:?}"),
        }
    }
}
