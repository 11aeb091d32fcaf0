//! The cluster PKI: one CA (rcgen) issuing serving certificates (SANs) and
//! client certificates (CN = user, O = groups), with validity measured in
//! *cluster* wall time; rustls configurations whose certificate checks read
//! the cluster clock (so moving the clock offset past `not_after` makes real
//! handshakes fail with an expiry error); tonic over those configurations;
//! kubeconfig files that kubectl reads.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::clock::Clock;

/// PKI failures.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused a configuration.
    #[error("tls configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// A client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// PEM input did not parse.
    #[error("invalid PEM {what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A request this PKI cannot express.
    #[error("{0}")]
    Unsupported(String),
    /// Filesystem.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Error.
        source: std::io::Error,
    },
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server (serverAuth).
    Server,
    /// TLS client (clientAuth).
    Client,
    /// Both.
    ServerAndClient,
}

/// What to put in a certificate.
#[derive(Debug, Clone)]
pub struct CertSpec {
    /// Subject CN (the user name for client certs).
    pub common_name: String,
    /// Subject O values (the groups for client certs).
    pub organizations: Vec<String>,
    /// DNS SANs.
    pub dns_names: Vec<String>,
    /// IP SANs.
    pub ip_addresses: Vec<IpAddr>,
    /// Lifetime from now, cluster time.
    pub validity: Duration,
    /// Key usage.
    pub usage: Usage,
}

impl CertSpec {
    /// A client certificate for `user` in `groups`.
    pub fn client(user: &str, groups: &[&str], validity: Duration) -> CertSpec {
        CertSpec {
            common_name: user.to_string(),
            organizations: groups.iter().map(|g| g.to_string()).collect(),
            dns_names: vec![],
            ip_addresses: vec![],
            validity,
            usage: Usage::Client,
        }
    }
    /// A serving certificate for the given names and addresses.
    pub fn server(cn: &str, dns: &[&str], ips: &[IpAddr], validity: Duration) -> CertSpec {
        CertSpec {
            common_name: cn.to_string(),
            organizations: vec![],
            dns_names: dns.iter().map(|d| d.to_string()).collect(),
            ip_addresses: ips.to_vec(),
            validity,
            usage: Usage::Server,
        }
    }
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Certificate PEM.
    pub cert_pem: String,
    /// PKCS#8 private key PEM.
    pub key_pem: String,
}

/// Backdating of `not_before`, like Kubernetes' signers, to tolerate small skew.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

fn odt(t: SystemTime) -> time::OffsetDateTime {
    time::OffsetDateTime::from(t)
}

fn apply_validity(params: &mut CertificateParams, clock: &Clock, validity: Duration) {
    let now = clock.wall();
    params.not_before = odt(now.checked_sub(BACKDATE).unwrap_or(now));
    params.not_after = odt(now + validity);
}

fn apply_usage(params: &mut CertificateParams, usage: Usage) {
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = match usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
}

/// The cluster certificate authority.
pub struct Ca {
    cert_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
    /// The CA's own `not_before`: the leaves [`Ca::issue`] makes start there.
    not_before: time::OffsetDateTime,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new self-signed CA valid for `validity` of cluster time from now.
    pub fn generate(common_name: &str, clock: &Clock, validity: Duration) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        apply_validity(&mut params, clock, validity);
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();
        Ok(Ca {
            not_before: params.not_before,
            issuer: Issuer::new(params, key),
            cert_pem,
            key_pem,
        })
    }

    /// Load a CA from its PEM certificate and key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| PkiError::Pem {
            what: "CA key",
            reason: e.to_string(),
        })?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(|e| PkiError::Pem {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        let der = certs_from_pem(cert_pem)?
            .into_iter()
            .next()
            .ok_or_else(|| PkiError::Pem {
                what: "CA certificate",
                reason: "no certificate in the PEM".into(),
            })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).map_err(|e| PkiError::Pem {
            what: "CA certificate",
            reason: e.to_string(),
        })?;
        let not_before = parsed.validity().not_before.to_datetime();
        Ok(Ca {
            not_before,
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            issuer,
        })
    }

    /// Load from `dir/ca.crt` and `dir/ca.key`, or create and write them.
    pub fn load_or_create(
        dir: &Path,
        common_name: &str,
        clock: &Clock,
        validity: Duration,
    ) -> Result<Ca, PkiError> {
        let crt = dir.join("ca.crt");
        let key = dir.join("ca.key");
        if crt.exists() && key.exists() {
            let c = read(&crt)?;
            let k = read(&key)?;
            return Ca::from_pem(&c, &k);
        }
        let ca = Ca::generate(common_name, clock, validity)?;
        write_private(&crt, ca.cert_pem())?;
        write_private(&key, &ca.key_pem)?;
        Ok(ca)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issue a certificate with a fresh key.
    ///
    /// At most one organization (group) per certificate: rcgen keeps one
    /// value per attribute type, and silently dropping groups would be worse
    /// than refusing.
    pub fn issue(&self, spec: &CertSpec, clock: &Clock) -> Result<IssuedCert, PkiError> {
        if spec.organizations.len() > 1 {
            return Err(PkiError::Unsupported(format!(
                "certificate for {:?} names {} organizations; at most one group per certificate is supported",
                spec.common_name,
                spec.organizations.len()
            )));
        }
        let key = KeyPair::generate()?;
        let mut sans: Vec<SanType> = Vec::new();
        for d in &spec.dns_names {
            sans.push(SanType::DnsName(d.clone().try_into()?));
        }
        for ip in &spec.ip_addresses {
            sans.push(SanType::IpAddress(*ip));
        }
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let mut dn = DistinguishedName::new();
        for o in &spec.organizations {
            dn.push(DnType::OrganizationName, o.as_str());
        }
        dn.push(DnType::CommonName, spec.common_name.as_str());
        params.distinguished_name = dn;
        apply_usage(&mut params, spec.usage);
        apply_validity(&mut params, clock, spec.validity);
        // kubeadm's rule: a leaf is valid from its CA's start, so a host
        // whose clock lags the cluster's (kubectl beside a time-scaled
        // cluster, a restarted API server's fresh serving certificate)
        // accepts it as soon as it accepts the CA.
        params.not_before = self.not_before.min(params.not_before);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Sign a PEM certificate signing request, keeping its subject and SANs
    /// (what the Kubernetes CSR signer does for approved requests).
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        usage: Usage,
        validity: Duration,
        clock: &Clock,
    ) -> Result<String, PkiError> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| PkiError::Pem {
                what: "certificate signing request",
                reason: e.to_string(),
            })?;
        apply_usage(&mut csr.params, usage);
        csr.params.is_ca = IsCa::NoCa;
        apply_validity(&mut csr.params, clock, validity);
        Ok(csr.signed_by(&self.issuer)?.pem())
    }
}

/// Make a key and a PEM CSR for `cn` in `orgs` (what `openssl req` does in
/// the seed's user flow). Returns `(csr_pem, key_pem)`.
pub fn make_csr(cn: &str, orgs: &[&str]) -> Result<(String, String), PkiError> {
    if orgs.len() > 1 {
        return Err(PkiError::Unsupported(format!(
            "csr for {cn:?} names {} organizations; at most one is supported",
            orgs.len()
        )));
    }
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((csr.pem().map_err(PkiError::Generate)?, key.serialize_pem()))
}

/// Subject identity of a certificate: CN and O values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// CN.
    pub common_name: String,
    /// O values.
    pub organizations: Vec<String>,
    /// `not_after`, unix seconds.
    pub not_after_unix: i64,
}

/// Read the subject of a DER certificate.
pub fn identity_of(der: &[u8]) -> Result<Identity, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::Pem {
        what: "certificate",
        reason: e.to_string(),
    })?;
    let subject = cert.subject();
    let common_name = subject
        .iter_common_name()
        .filter_map(|a| a.as_str().ok())
        .next()
        .unwrap_or_default()
        .to_string();
    let organizations = subject
        .iter_organization()
        .filter_map(|a| a.as_str().ok().map(str::to_string))
        .collect();
    Ok(Identity {
        common_name,
        organizations,
        not_after_unix: cert.validity().not_after.timestamp(),
    })
}

fn read(p: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(p).map_err(|source| PkiError::Io {
        path: p.display().to_string(),
        source,
    })
}

/// Write `contents` to `path` with mode 0600, creating parent directories.
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Parse every certificate in a PEM bundle.
pub fn certs_from_pem(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| PkiError::Pem {
            what: "certificate",
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what: "certificate",
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certs)
}

/// Parse a PEM private key.
pub fn key_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Pem {
        what: "private key",
        reason: e.to_string(),
    })
}

/// A root store holding the certificates of a PEM bundle.
pub fn roots_from_pem(ca_pem: &str) -> Result<RootCertStore, PkiError> {
    let mut roots = RootCertStore::empty();
    for c in certs_from_pem(ca_pem)? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// rustls time source reading the cluster clock.
#[derive(Debug)]
pub struct ClusterTime(pub Clock);

impl rustls::time_provider::TimeProvider for ClusterTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(
            self.0
                .wall()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        ))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Whether a server asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never.
    None,
    /// Ask; accept connections without one (other authenticators decide).
    Optional,
    /// Require a certificate from the CA.
    Required,
}

/// A rustls server configuration checking client certificates (if asked)
/// against `client_ca_pem` at *cluster* time.
pub fn server_tls_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: Option<&str>,
    client_auth: ClientAuth,
    clock: &Clock,
    alpn: &[&[u8]],
) -> Result<ServerConfig, PkiError> {
    let provider = provider();
    let builder =
        ServerConfig::builder_with_details(provider.clone(), Arc::new(ClusterTime(clock.clone())))
            .with_safe_default_protocol_versions()?;
    let builder = match (client_auth, client_ca_pem) {
        (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
        (mode, Some(ca)) => {
            let roots = Arc::new(roots_from_pem(ca)?);
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let v = if mode == ClientAuth::Optional {
                v.allow_unauthenticated().build()?
            } else {
                v.build()?
            };
            builder.with_client_cert_verifier(v)
        }
    };
    let mut cfg = builder.with_single_cert(certs_from_pem(cert_pem)?, key_from_pem(key_pem)?)?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// A rustls client configuration trusting `ca_pem` at *cluster* time,
/// presenting `client` (cert, key) if given.
pub fn client_tls_config(
    ca_pem: &str,
    client: Option<(&str, &str)>,
    clock: &Clock,
    alpn: &[&[u8]],
) -> Result<ClientConfig, PkiError> {
    let builder =
        ClientConfig::builder_with_details(provider(), Arc::new(ClusterTime(clock.clone())))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots_from_pem(ca_pem)?);
    let mut cfg = match client {
        Some((c, k)) => builder.with_client_auth_cert(certs_from_pem(c)?, key_from_pem(k)?)?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// tonic over the rustls configurations above (tonic's own TLS builder has
/// no hook for the cluster clock).
pub mod grpc {
    use super::*;
    use futures::Stream;
    use hyper_util::rt::TokioIo;
    use tokio::net::{TcpListener, TcpStream};
    use tokio_rustls::{TlsAcceptor, TlsConnector};
    use tonic::transport::{Channel, Endpoint, Uri};

    /// Accepted TLS connections from `listener`; failed handshakes are
    /// logged and skipped (they never reach tonic).
    pub fn incoming(
        listener: TcpListener,
        config: ServerConfig,
    ) -> impl Stream<Item = Result<tokio_rustls::server::TlsStream<TcpStream>, std::io::Error>>
    {
        let acceptor = TlsAcceptor::from(Arc::new(config));
        futures::stream::unfold((listener, acceptor), |(listener, acceptor)| async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => return Some((Err(e), (listener, acceptor))),
                };
                match acceptor.accept(tcp).await {
                    Ok(tls) => return Some((Ok(tls), (listener, acceptor))),
                    Err(e) => tracing::warn!("tls handshake from {peer} failed: {e}"),
                }
            }
        })
    }

    /// A lazily connecting channel to `https://{addr}` verifying the server
    /// as `server_name`.
    pub fn channel(
        addr: SocketAddr,
        server_name: &str,
        config: ClientConfig,
    ) -> Result<Channel, PkiError> {
        let name = ServerName::try_from(server_name.to_string()).map_err(|e| PkiError::Pem {
            what: "server name",
            reason: e.to_string(),
        })?;
        let connector = TlsConnector::from(Arc::new(config));
        let endpoint =
            Endpoint::from_shared(format!("http://{addr}")).map_err(|e| PkiError::Pem {
                what: "endpoint",
                reason: e.to_string(),
            })?;
        Ok(
            endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let connector = connector.clone();
                let name = name.clone();
                async move {
                    let tcp = TcpStream::connect(addr).await?;
                    let tls = connector.connect(name, tcp).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(tls))
                }
            })),
        )
    }
}

/// Kubeconfig files.
pub mod kubeconfig {
    use super::*;
    use serde::Serialize;

    /// One user's access to one cluster.
    #[derive(Debug, Clone)]
    pub struct Spec {
        /// Cluster entry name.
        pub cluster_name: String,
        /// `https://host:port`.
        pub server: String,
        /// CA bundle PEM.
        pub ca_pem: String,
        /// User entry name.
        pub user_name: String,
        /// Client certificate and key PEM, if the user authenticates by cert.
        pub client_cert: Option<IssuedCert>,
        /// Bearer token, if the user authenticates by token.
        pub token: Option<String>,
        /// Default namespace.
        pub namespace: Option<String>,
    }

    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Doc {
        api_version: &'static str,
        kind: &'static str,
        clusters: Vec<Named<ClusterE>>,
        users: Vec<Named<UserE>>,
        contexts: Vec<Named<ContextE>>,
        current_context: String,
        preferences: serde_json::Value,
    }
    #[derive(Serialize)]
    struct Named<T> {
        name: String,
        #[serde(flatten)]
        inner: T,
    }
    #[derive(Serialize)]
    struct ClusterE {
        cluster: ClusterBody,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct ClusterBody {
        server: String,
        certificate_authority_data: String,
    }
    #[derive(Serialize)]
    struct UserE {
        user: UserBody,
    }
    #[derive(Serialize, Default)]
    #[serde(rename_all = "kebab-case")]
    struct UserBody {
        #[serde(skip_serializing_if = "Option::is_none")]
        client_certificate_data: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_key_data: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    }
    #[derive(Serialize)]
    struct ContextE {
        context: ContextBody,
    }
    #[derive(Serialize)]
    struct ContextBody {
        cluster: String,
        user: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        namespace: Option<String>,
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    }

    /// The kubeconfig YAML for `spec`.
    pub fn render(spec: &Spec) -> String {
        let context = format!("{}@{}", spec.user_name, spec.cluster_name);
        let doc = Doc {
            api_version: "v1",
            kind: "Config",
            clusters: vec![Named {
                name: spec.cluster_name.clone(),
                inner: ClusterE {
                    cluster: ClusterBody {
                        server: spec.server.clone(),
                        certificate_authority_data: b64(&spec.ca_pem),
                    },
                },
            }],
            users: vec![Named {
                name: spec.user_name.clone(),
                inner: UserE {
                    user: UserBody {
                        client_certificate_data: spec
                            .client_cert
                            .as_ref()
                            .map(|c| b64(&c.cert_pem)),
                        client_key_data: spec.client_cert.as_ref().map(|c| b64(&c.key_pem)),
                        token: spec.token.clone(),
                    },
                },
            }],
            contexts: vec![Named {
                name: context.clone(),
                inner: ContextE {
                    context: ContextBody {
                        cluster: spec.cluster_name.clone(),
                        user: spec.user_name.clone(),
                        namespace: spec.namespace.clone(),
                    },
                },
            }],
            current_context: context,
            preferences: serde_json::json!({}),
        };
        serde_yaml::to_string(&doc).expect("kubeconfig serializes")
    }

    /// Write the kubeconfig for `spec` to `path` (mode 0600).
    pub fn write(path: &Path, spec: &Spec) -> Result<(), PkiError> {
        write_private(path, &render(spec))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_before_unix(pem: &str) -> i64 {
        let der = certs_from_pem(pem).unwrap().remove(0);
        let (_, c) = x509_parser::parse_x509_certificate(&der).unwrap();
        c.validity().not_before.timestamp()
    }

    #[test]
    fn leaves_start_when_their_ca_does_even_from_a_reloaded_ca() {
        let (clock, manual) = Clock::manual(1_700_000_000_000);
        let ca = Ca::generate("ackemu-ca", &clock, Duration::from_secs(10 * 365 * 86400)).unwrap();
        let ca_start = not_before_unix(ca.cert_pem());
        assert_eq!(ca_start, 1_700_000_000 - BACKDATE.as_secs() as i64);
        // Cluster time ran a day ahead (a time-scaled cluster whose API
        // server restarts): its fresh serving certificate still starts at
        // the CA's start, not a day after the host's clock.
        manual.advance(Duration::from_secs(86400));
        let spec = CertSpec::server(
            "kube-apiserver",
            &["localhost"],
            &[],
            Duration::from_secs(3600),
        );
        for ca in [&ca, &Ca::from_pem(ca.cert_pem(), ca.key_pem()).unwrap()] {
            let leaf = ca.issue(&spec, &clock).unwrap();
            assert_eq!(not_before_unix(&leaf.cert_pem), ca_start);
            let der = certs_from_pem(&leaf.cert_pem).unwrap().remove(0);
            assert_eq!(
                identity_of(&der).unwrap().not_after_unix,
                1_700_000_000 + 86400 + 3600,
                "validity still runs from issuance"
            );
        }
    }

    #[test]
    fn issues_client_certs_with_user_and_groups() {
        let (clock, _) = Clock::manual(1_700_000_000_000);
        let ca = Ca::generate("ackemu-ca", &clock, Duration::from_secs(10 * 365 * 86400)).unwrap();
        let c = ca
            .issue(
                &CertSpec::client("jiang", &["dev"], Duration::from_secs(86400)),
                &clock,
            )
            .unwrap();
        assert!(matches!(
            ca.issue(
                &CertSpec::client("x", &["a", "b"], Duration::from_secs(1)),
                &clock
            ),
            Err(PkiError::Unsupported(_))
        ));
        let der = certs_from_pem(&c.cert_pem).unwrap().remove(0);
        let id = identity_of(&der).unwrap();
        assert_eq!(id.common_name, "jiang");
        assert_eq!(id.organizations, vec!["dev"]);
        assert_eq!(id.not_after_unix, 1_700_000_000 + 86400);
        // Round-trip the CA through PEM and sign a CSR with it.
        let ca2 = Ca::from_pem(ca.cert_pem(), ca.key_pem()).unwrap();
        let (csr, _key) = make_csr("system:node:node-1", &["system:nodes"]).unwrap();
        let signed = ca2
            .sign_csr(&csr, Usage::Client, Duration::from_secs(3600), &clock)
            .unwrap();
        let id = identity_of(&certs_from_pem(&signed).unwrap()[0]).unwrap();
        assert_eq!(id.common_name, "system:node:node-1");
        assert_eq!(id.organizations, vec!["system:nodes"]);
        assert!(matches!(
            ca2.sign_csr("garbage", Usage::Client, Duration::from_secs(1), &clock),
            Err(PkiError::Pem { .. })
        ));
    }
}
