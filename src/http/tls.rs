//! TLS for the `tls://` listeners: the certificate and key read from PEM
//! files, TLS 1.2 and 1.3 only (rustls, ring), ALPN offering HTTP/2 then
//! HTTP/1.1, and the files reloaded without a restart.
//!
//! The acceptor asks [`Certificates`] for the key on every handshake, so a
//! reload is one pointer swap: handshakes after it get the new certificate,
//! connections already open keep the one they started with. A file that
//! fails to load (half written, a key that does not match) leaves the
//! previous certificate in service and is logged; the next change is tried
//! again.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::TlsFiles;

/// ALPN protocol ids, in the server's order of preference.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{0} holds no PEM certificate")]
    NoCertificate(PathBuf),
    #[error("{path}: not a usable private key: {message}")]
    BadKey { path: PathBuf, message: String },
    #[error("the key in {key} does not match the certificate in {cert}")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// The certificate in service, reloadable from its files.
#[derive(Debug)]
pub struct Certificates {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    /// What the files looked like when last read, to notice a change.
    seen: Mutex<Stamp>,
}

/// Modification time and length of the certificate and key files.
type Stamp = [Option<(SystemTime, u64)>; 2];

impl Certificates {
    /// Loads `files`; an error here stops the server from starting.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let seen = stamp(&files);
        let key = certified_key(&files)?;
        Ok(Arc::new(Self {
            files,
            current: RwLock::new(Arc::new(key)),
            seen: Mutex::new(seen),
        }))
    }

    /// Reads the files again if they changed since last read (`force`: even
    /// if not). Returns whether a new certificate is in service.
    pub fn reload(&self, force: bool) -> Result<bool, TlsError> {
        let now = stamp(&self.files);
        {
            let mut seen = self.seen.lock();
            if !force && *seen == now {
                return Ok(false);
            }
            // Remembered even when the load fails, so a bad file is logged
            // once rather than every poll; its next change is tried again.
            *seen = now;
        }
        let key = certified_key(&self.files)?;
        *self.current.write() = Arc::new(key);
        Ok(true)
    }

    /// The certificate chain in service (first: the leaf).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current.read().cert.clone()
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

fn stamp(files: &TlsFiles) -> Stamp {
    [&files.cert, &files.key].map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    })
}

fn read_error(path: &Path, error: impl std::fmt::Display) -> TlsError {
    TlsError::Read {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

/// Reads and checks the certificate chain and the key.
fn certified_key(files: &TlsFiles) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| read_error(&files.cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| read_error(&files.cert, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::BadKey {
        path: files.key.clone(),
        message: e.to_string(),
    })?;
    let signing =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| TlsError::BadKey {
            path: files.key.clone(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    // A certificate replaced before its key (or the other way round) is a
    // mismatched pair for a moment: never serve it.
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(_) => Err(TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
    }
}

/// The acceptor of every `tls://` listener: TLS 1.2+, ALPN h2 and http/1.1.
pub fn acceptor(certificates: Arc<Certificates>) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(certificates);
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    TlsAcceptor::from(Arc::new(config))
}

/// Reloads the certificate when its files change (checked every
/// `interval`) and at once on SIGHUP, until `shutdown`.
pub async fn watch(
    certificates: Arc<Certificates>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; certificates reload on change only");
            None
        }
    };
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let forced = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => false,
            Some(()) = async {
                match hangup.as_mut() {
                    Some(hangup) => hangup.recv().await,
                    None => std::future::pending().await,
                }
            } => true,
        };
        match certificates.reload(forced) {
            Ok(false) => {}
            Ok(true) => {
                crate::telemetry::certificate_reload(true);
                tracing::info!(cert = %certificates.files.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                crate::telemetry::certificate_reload(false);
                tracing::warn!(%error, "TLS certificate not reloaded; the previous one stays in service");
            }
        }
    }
}
