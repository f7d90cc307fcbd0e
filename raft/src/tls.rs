//! TLS as etcd's flags configure it (`--cert-file`, `--key-file`, `--trusted-ca-file`,
//! `--client-cert-auth`, and their `--peer-` twins), with rustls over ring: the server side of
//! https peer URLs (and, through `etcdapi`, of https client URLs), and the client side of the
//! peer transport (the member's certificate as its identity, the trusted CA to check servers).
//!
//! The server offers ALPN `h2` and `http/1.1`, so gRPC and the plain HTTP endpoints beside it
//! (`/health`, `/metrics`) both work over TLS. Each handshake runs in its own task under a
//! deadline, so a slow or silent client never holds up the accept loop.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A handshake not finished within this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; the accept loop waits for one to end past this.
const HANDSHAKES_IN_FLIGHT_MAX: usize = 256;
/// Finished handshakes waiting for the server to take them.
const ACCEPTED_QUEUE_MAX: usize = 64;
/// Pause after a failed accept (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Connections that finished their TLS handshake, for tonic's `serve_with_incoming_shutdown`.
pub type TlsIncoming = ReceiverStream<io::Result<TlsConnection>>;

/// One accepted connection, its TLS handshake done.
pub type TlsConnection = TlsStream<TcpStream>;

/// One side's certificate, key and trusted CA, loaded and checked once at startup.
#[derive(Clone)]
pub struct TlsConfig {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    trusted_ca_pem: Option<Vec<u8>>,
    client_cert_auth: bool,
    server: Arc<ServerConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        formatter
            .debug_struct("TlsConfig")
            .field("trusted_ca", &self.trusted_ca_pem.is_some())
            .field("client_cert_auth", &self.client_cert_auth)
            .finish_non_exhaustive()
    }
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| format!("--{flag} {}: {error}", path.display()))
}

fn certificates(flag: &str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("--{flag} {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!("--{flag} {}: no PEM certificate in it", path.display()));
    }
    Ok(certificates)
}

impl TlsConfig {
    /// Loads `--cert-file`, `--key-file` and `--trusted-ca-file` (named with `prefix`, `""` or
    /// `"peer-"`, in errors). A client certificate, when presented, must be signed by the
    /// trusted CA; with `client_cert_auth` it must be presented (and the CA given).
    pub fn load(
        prefix: &str,
        cert_file: &Path,
        key_file: &Path,
        trusted_ca_file: Option<&Path>,
        client_cert_auth: bool,
    ) -> Result<TlsConfig, String> {
        let (cert_flag, key_flag, ca_flag) =
            (format!("{prefix}cert-file"), format!("{prefix}key-file"), format!("{prefix}trusted-ca-file"));
        let cert_pem = read(&cert_flag, cert_file)?;
        let key_pem = read(&key_flag, key_file)?;
        let chain = certificates(&cert_flag, cert_file, &cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|error| format!("--{key_flag} {}: {error}", key_file.display()))?;
        let trusted_ca_pem = trusted_ca_file.map(|path| read(&ca_flag, path)).transpose()?;
        let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?;
        // As etcd's Go server: with a trusted CA, a client certificate is checked against it
        // if one is presented, and required only with client-cert-auth.
        let builder = match (trusted_ca_file, &trusted_ca_pem) {
            (Some(path), Some(pem)) => {
                let mut roots = RootCertStore::empty();
                for certificate in certificates(&ca_flag, path, pem)? {
                    roots.add(certificate).map_err(|error| format!("--{ca_flag} {}: {error}", path.display()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if client_cert_auth { verifier } else { verifier.allow_unauthenticated() };
                let verifier = verifier.build().map_err(|error| format!("--{ca_flag} {}: {error}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ if client_cert_auth => return Err(format!("--{prefix}client-cert-auth needs --{ca_flag}")),
            _ => builder.with_no_client_auth(),
        };
        let mut server = builder.with_single_cert(chain, key).map_err(|error| {
            format!("--{cert_flag} {} with --{key_flag} {}: {error}", cert_file.display(), key_file.display())
        })?;
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsConfig { cert_pem, key_pem, trusted_ca_pem, client_cert_auth, server: Arc::new(server) })
    }

    /// The client side, for connections to https peers: this certificate as the identity, the
    /// trusted CA (if any) as the only root servers are checked against.
    pub(crate) fn client_config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        match &self.trusted_ca_pem {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config,
        }
    }

    /// Binds `address` and yields its connections once their TLS handshake is done.
    pub async fn bind(&self, address: SocketAddr) -> io::Result<TlsIncoming> {
        let listener = TcpListener::bind(address).await?;
        Ok(self.incoming(listener))
    }

    /// `listener`'s connections once their TLS handshake is done; a failed or timed-out
    /// handshake only closes that connection. The accept loop ends when the stream is dropped.
    pub fn incoming(&self, listener: TcpListener) -> TlsIncoming {
        let acceptor = TlsAcceptor::from(self.server.clone());
        let (sender, receiver) = tokio::sync::mpsc::channel(ACCEPTED_QUEUE_MAX);
        let handshakes = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT_MAX));
        tokio::spawn(async move {
            loop {
                let permit = tokio::select! {
                    () = sender.closed() => return,
                    permit = handshakes.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                };
                let (stream, peer) = tokio::select! {
                    () = sender.closed() => return,
                    accepted = listener.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(error) => {
                            tracing::warn!(%error, "accepting a TLS connection failed");
                            tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                            continue;
                        }
                    },
                };
                let _ = stream.set_nodelay(true);
                let (acceptor, sender) = (acceptor.clone(), sender.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(connection)) => {
                            let _ = sender.send(Ok(connection)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(receiver)
    }
}
