//! HTTPS for the cluster programs: serving an axum router over rustls
//! (certificates checked at cluster time; the verified client certificate's
//! subject handed to handlers), and one-shot HTTPS requests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::pki;
use ackemu_base::tasks::Tasks;
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// The subject of a verified client certificate, if the client sent one.
#[derive(Clone, Debug, Default)]
pub struct PeerCert(pub Option<pki::Identity>);

/// A serving certificate and key (PEM) that can be swapped while serving
/// (a rotated certificate applies to new connections).
#[derive(Clone)]
pub struct ServingCert(Arc<parking_lot::RwLock<Arc<rustls::ServerConfig>>>);

impl ServingCert {
    /// A serving configuration from PEM, with optional client-certificate
    /// verification against `client_ca_pem`.
    pub fn new(
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: Option<&str>,
        clock: &Clock,
    ) -> Result<ServingCert, pki::PkiError> {
        Ok(ServingCert(Arc::new(parking_lot::RwLock::new(Arc::new(
            config(cert_pem, key_pem, client_ca_pem, clock)?,
        )))))
    }

    /// Replace the certificate.
    pub fn set(
        &self,
        cert_pem: &str,
        key_pem: &str,
        client_ca_pem: Option<&str>,
        clock: &Clock,
    ) -> Result<(), pki::PkiError> {
        *self.0.write() = Arc::new(config(cert_pem, key_pem, client_ca_pem, clock)?);
        Ok(())
    }

    fn get(&self) -> Arc<rustls::ServerConfig> {
        self.0.read().clone()
    }
}

fn config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
    clock: &Clock,
) -> Result<rustls::ServerConfig, pki::PkiError> {
    pki::server_tls_config(
        cert_pem,
        key_pem,
        client_ca_pem,
        pki::ClientAuth::Optional,
        clock,
        &[b"http/1.1"],
    )
}

/// A self-signed serving certificate for `names` (DNS names or IPs), valid
/// a year of cluster time — what servers generate when given no
/// certificate files.
pub fn self_signed(
    common_name: &str,
    names: &[String],
    clock: &Clock,
) -> Result<pki::IssuedCert, pki::PkiError> {
    let ca = pki::Ca::generate(&format!("{common_name}-ca"), clock, YEAR)?;
    let (ips, dns): (Vec<_>, Vec<_>) = names
        .iter()
        .partition(|n| n.parse::<std::net::IpAddr>().is_ok());
    let ips: Vec<std::net::IpAddr> = ips.iter().filter_map(|i| i.parse().ok()).collect();
    let dns: Vec<&str> = dns.iter().map(|s| s.as_str()).collect();
    let mut leaf = ca.issue(&pki::CertSpec::server(common_name, &dns, &ips, YEAR), clock)?;
    // Serve the chain so clients that pin the CA can verify.
    leaf.cert_pem.push_str(ca.cert_pem());
    Ok(leaf)
}

/// One year.
pub const YEAR: Duration = Duration::from_secs(365 * 86400);

/// Bind `addr`; returns the listener and the bound address.
pub async fn bind(addr: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let l = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("listen tcp {addr}: {e}"))?;
    let a = l.local_addr()?;
    Ok((l, a))
}

/// Serve `router` over TLS on `listener` until the tasks are cancelled.
/// Handlers get the client's [`PeerCert`] as an extension.
pub fn serve(listener: TcpListener, cert: ServingCert, router: Router, tasks: &Tasks, name: &str) {
    let t = tasks.clone();
    let token = tasks.token();
    let name = name.to_owned();
    let clock = tasks.clock().clone();
    tasks.spawn(format!("{name}/https"), async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => { tracing::warn!("{name}: accept: {e}"); continue; }
                },
                () = token.cancelled() => return,
            };
            let acceptor = tokio_rustls::TlsAcceptor::from(cert.get());
            let router = router.clone();
            let (name, clock) = (name.clone(), clock.clone());
            t.spawn(format!("{name}/conn {peer}"), async move {
                let tls = match clock
                    .timeout(
                        clock.to_cluster(Duration::from_secs(10)),
                        acceptor.accept(tcp),
                    )
                    .await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!("{name}: http: TLS handshake error from {peer}: {e}");
                        return;
                    }
                    Err(_) => return,
                };
                let id = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| pki::identity_of(c).ok());
                let svc = router.layer(axum::Extension(PeerCert(id)));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
}

/// A TLS client configuration: verify against `ca_pem`, or not at all.
pub fn client_config(
    ca_pem: Option<&str>,
    client: Option<(&str, &str)>,
    clock: &Clock,
) -> anyhow::Result<rustls::ClientConfig> {
    if let Some(ca) = ca_pem {
        return Ok(pki::client_tls_config(ca, client, clock, &[b"http/1.1"])?);
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(NoVerify));
    let mut cfg = match client {
        Some((c, k)) => b.with_client_auth_cert(pki::certs_from_pem(c)?, pki::key_from_pem(k)?)?,
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// A response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// One HTTPS request to `addr` (TLS name `server_name`).
#[allow(clippy::too_many_arguments)]
pub async fn request(
    tls: Arc<rustls::ClientConfig>,
    addr: &str,
    server_name: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Bytes,
    clock: &Clock,
    tasks: &Tasks,
    timeout: Duration,
) -> anyhow::Result<Response> {
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| anyhow::anyhow!("dial tcp {addr}: {e}"))?;
        let name = rustls::pki_types::ServerName::try_from(server_name.to_owned())?;
        let stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .map_err(|e| anyhow::anyhow!("tls handshake with {addr}: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tasks.spawn(format!("https-client {addr}"), async move {
            let _ = conn.await;
        });
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", addr);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = sender.send_request(req.body(Full::new(body))?).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Response { status, body })
    };
    match clock.timeout(clock.to_cluster(timeout), work).await {
        Ok(r) => r,
        Err(_) => anyhow::bail!("{method} https://{addr}{path}: i/o timeout"),
    }
}

/// Accepts any server certificate (`--kubelet-insecure-tls`).
#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
