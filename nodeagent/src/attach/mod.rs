//! `ackemu-node attach`: what an ECS's UserData runs to join the cluster,
//! like ACK's `attach_node.sh` / `kubeadm join`:
//!
//! 1. Discovery: `GET /api/v1/namespaces/kube-public/configmaps/cluster-info`
//!    anonymously over TLS *without* trusting the server; verify the
//!    detached JWS `jws-kubeconfig-<token-id>` over `kubeconfig` with the
//!    bootstrap token; only then trust the CA inside (optionally pinned with
//!    `--discovery-token-ca-cert-hash`), and fetch it again over the now
//!    trusted connection.
//! 2. TLS bootstrap: as the bootstrap token (`system:bootstrap:<id>`, group
//!    `system:bootstrappers`) create a CSR for `system:node:<name>` / O
//!    `system:nodes` with signer `kubernetes.io/kube-apiserver-client-kubelet`,
//!    wait (bounded) for the controller-manager to approve and issue it,
//!    and write the node's kubeconfig and the cluster CA.
//! 3. Start the node's units through the node's systemd, or say how.
//!
//! A forged cluster-info (signature mismatch), an unknown token and a token
//! the API server rejects (401) are refused with the reason; nothing is
//! registered.

pub mod discovery;
pub mod units;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::pki;
use ackemu_base::tasks::Tasks;
use ackemu_base::{CommonArgs, Env};
use ackemu_kube::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use ackemu_kube::client::{Client, ClientConfig, ClientError, ListParams};
use ackemu_kube::meta::ObjectMeta;
use anyhow::{Context as _, bail};
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::paths::NodePaths;
use discovery::Token;

/// The signer of kubelet client certificates.
pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
const CLUSTER_INFO: &str = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

/// `ackemu-node attach` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct AttachArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    paths: NodePaths,
    /// The API server, `https://IP:6443`.
    #[arg(long)]
    pub apiserver: String,
    /// The bootstrap token `<id>.<secret>`.
    #[arg(long)]
    pub token: String,
    /// This node's name.
    #[arg(long)]
    pub node_name: String,
    /// The node's root: `kubelet.conf` and `pki/ca.crt` are written here.
    #[arg(long, default_value = "/var/lib/ackemu/node")]
    pub data_dir: PathBuf,
    /// Pin the cluster CA: `sha256:<hex of its SubjectPublicKeyInfo>`.
    #[arg(long)]
    pub discovery_token_ca_cert_hash: Vec<String>,
    /// How long to wait for the certificate (cluster time).
    #[arg(long, default_value = "5m", value_parser = ackemu_base::clock::parse_duration)]
    pub bootstrap_timeout: Duration,
    /// Units started once the kubeconfig is written, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cnid.service,runtime.service,kubelet.service,proxy.service"
    )]
    pub units: Vec<String>,
    /// Directory of `ackemu-node` and `ackemu-workload`: when given, attach
    /// lays down the node's unit files and CNI configuration under
    /// `--data-dir` and starts the node's systemd if it is not running.
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// The node's InternalIP (passed to the kubelet).
    #[arg(long)]
    pub node_ip: Option<String>,
    /// Cluster DNS servers (passed to the kubelet).
    #[arg(long, value_delimiter = ',')]
    pub cluster_dns: Vec<String>,
    /// The node's `spec.providerID` (ACK: `<region>.<instance-id>`), set
    /// when attach registers the Node; the cloud controllers find the
    /// node's instance by it.
    #[arg(long)]
    pub provider_id: Option<String>,
    /// The node's pod CIDR; without it attach registers the Node and waits
    /// for node IPAM to assign `spec.podCIDR`.
    #[arg(long)]
    pub pod_cidr: Option<String>,
    /// Give the node's systemd and every unit an admin port on the node's
    /// loopback (`FaultService`, `/metrics`, `/debug/tasks`; the ports of
    /// `units::ADMIN_PORTS`, recorded in `<data-dir>/admin.json`). Only for
    /// a node with its own network namespace: nodes sharing one would
    /// collide.
    #[arg(long)]
    pub admin_ports: bool,
}

impl AttachArgs {
    /// The node's run directory: `--run-dir`, or `<data-dir>/run` when it
    /// is left at the host-wide default (several nodes share one host).
    pub fn run_dir(&self) -> PathBuf {
        if self.paths.run_dir == std::path::Path::new("/run/ackemu") {
            self.data_dir.join("run")
        } else {
            self.paths.run_dir.clone()
        }
    }
}

/// What a successful attach wrote.
#[derive(Debug, Clone)]
pub struct Attached {
    /// The node's kubeconfig.
    pub kubeconfig: PathBuf,
    /// The cluster CA.
    pub ca_file: PathBuf,
    /// The CSR's name.
    pub csr: String,
}

/// Process entry for the `attach` role; returns the exit code.
pub fn main(args: AttachArgs) -> anyhow::Result<i32> {
    crate::client_runtime()?.block_on(async move {
        let env = Env::init("attach", &args.common).await?;
        let attached = match attach(&args, &env.clock, &env.tasks).await {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error execution phase: {e:#}");
                return Ok(1);
            }
        };
        println!(
            "This node has joined the cluster:\n* Certificate signing request {} was sent to apiserver and a response was received.\n* The kubeconfig is {}.",
            attached.csr,
            attached.kubeconfig.display()
        );
        if args.bin_dir.is_some() {
            match node_units(&args, &env.clock, &env.tasks, &attached).await {
                Ok(code) => Ok(code),
                Err(e) => {
                    eprintln!("error execution phase kubelet-start: {e:#}");
                    Ok(1)
                }
            }
        } else {
            start_units(&args, &env.tasks).await
        }
    })
}

/// The node's pod CIDR: `--pod-cidr`, or the Node's `spec.podCIDR` once
/// node IPAM assigned it (the Node is registered first if absent).
async fn pod_cidr(
    args: &AttachArgs,
    clock: &Clock,
    tasks: &Tasks,
    attached: &Attached,
) -> anyhow::Result<String> {
    use ackemu_kube::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus};
    if let Some(c) = &args.pod_cidr {
        return Ok(c.clone());
    }
    let client = Client::new(
        ClientConfig::from_kubeconfig(&attached.kubeconfig)?,
        clock.clone(),
        tasks.clone(),
    )?;
    let nodes = client.api::<Node>(None)?;
    let name = &args.node_name;
    match nodes.get(name).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {
            let mut addresses = vec![NodeAddress {
                type_: "Hostname".into(),
                address: name.clone(),
            }];
            if let Some(ip) = &args.node_ip {
                addresses.insert(
                    0,
                    NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.clone(),
                    },
                );
            }
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(
                        [
                            ("kubernetes.io/hostname".to_string(), name.clone()),
                            ("kubernetes.io/os".to_string(), "linux".to_string()),
                            ("kubernetes.io/arch".to_string(), "amd64".to_string()),
                        ]
                        .into(),
                    ),
                    ..Default::default()
                },
                spec: args.provider_id.clone().map(|p| NodeSpec {
                    provider_id: Some(p),
                    ..Default::default()
                }),
                status: Some(NodeStatus {
                    addresses: Some(addresses),
                    ..Default::default()
                }),
            };
            match nodes.create(&node).await {
                Ok(_) => println!("[kubelet-start] Registered node {name}"),
                Err(e) if e.is_conflict() => {}
                Err(e) => {
                    return Err(anyhow::Error::new(e).context(format!("registering node {name}")));
                }
            }
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("reading node {name}"))),
    }
    let wait = async {
        loop {
            if let Ok(n) = nodes.get(name).await
                && let Some(c) = n.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty())
            {
                return c;
            }
            clock.sleep(Duration::from_secs(1)).await;
        }
    };
    clock.timeout(args.bootstrap_timeout, wait).await.map_err(|_| {
        anyhow::anyhow!(
            "node {name} got no spec.podCIDR within {:?}: is the controller-manager's node IPAM running (--allocate-node-cidrs)?",
            args.bootstrap_timeout
        )
    })
}

/// Lay down the node's units and start them through its systemd,
/// starting systemd itself when it is not running.
async fn node_units(
    args: &AttachArgs,
    clock: &Clock,
    tasks: &Tasks,
    attached: &Attached,
) -> anyhow::Result<i32> {
    let bin_dir = args.bin_dir.clone().context("--bin-dir")?;
    let cidr = pod_cidr(args, clock, tasks, attached).await?;
    println!(
        "[kubelet-start] Node {} has pod CIDR {cidr}",
        args.node_name
    );
    let run_dir = args.run_dir();
    let layout = units::NodeLayout {
        bin_dir: bin_dir.clone(),
        data_dir: args.data_dir.clone(),
        run_dir: run_dir.clone(),
        node_name: args.node_name.clone(),
        node_ip: args.node_ip.clone(),
        cluster_dns: args.cluster_dns.clone(),
        pod_cidr: cidr,
        clock_flags: CommonArgs::clock_flags(clock),
        admin_ports: args.admin_ports,
    };
    let names = units::write(&layout)
        .with_context(|| format!("writing the node's units under {}", args.data_dir.display()))?;
    let private = run_dir.join("systemd/private");
    if !private.exists() {
        let log = std::fs::File::create(args.data_dir.join("systemd.log"))
            .context("creating systemd.log")?;
        let child = std::process::Command::new(bin_dir.join("ackemu-node"))
            .arg("systemd")
            .arg("--run-dir")
            .arg(&run_dir)
            .arg("--unit-dir")
            .arg(layout.unit_dir())
            .arg("--log-dir")
            .arg(args.data_dir.join("journal"))
            .args(CommonArgs::clock_flags(clock))
            .args(layout.admin_flag("systemd"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().context("systemd.log")?)
            .stderr(log)
            .spawn()
            .context("starting the node's systemd")?;
        std::fs::write(args.data_dir.join("systemd.pid"), child.id().to_string())
            .context("writing systemd.pid")?;
        println!("[kubelet-start] Started systemd (pid {})", child.id());
        let up = async {
            while std::os::unix::net::UnixStream::connect(&private).is_err() {
                clock
                    .sleep(clock.to_cluster(Duration::from_millis(50)))
                    .await;
            }
        };
        clock
            .timeout(clock.to_cluster(Duration::from_secs(30)), up)
            .await
            .map_err(|_| {
                anyhow::anyhow!("systemd did not open {} within 30s", private.display())
            })?;
    }
    let bus = crate::systemd::client::BusClient::connect(&private, "attach", tasks).await?;
    for u in &names {
        match bus.start_unit(u).await {
            Ok(r) if r == "done" => println!("[kubelet-start] Started {u}"),
            Ok(r) => {
                eprintln!("Job for {u} failed (start: {r}).");
                return Ok(1);
            }
            Err(e) => {
                eprintln!("Failed to start {u}: {e}");
                return Ok(1);
            }
        }
    }
    Ok(0)
}

/// Discovery and TLS bootstrap; writes the kubeconfig and CA.
pub async fn attach(args: &AttachArgs, clock: &Clock, tasks: &Tasks) -> anyhow::Result<Attached> {
    let token = Token::parse(&args.token).map_err(anyhow::Error::msg)?;
    let (authority, host) = authority(&args.apiserver)?;
    println!("[preflight] Running discovery against {}", args.apiserver);

    // 1. Untrusted fetch, signature check, then trust.
    let cm = fetch_untrusted(&authority, &host, clock)
        .await
        .with_context(|| {
            format!(
                "failed to request the cluster-info ConfigMap from {}",
                args.apiserver
            )
        })?;
    let data = &cm["data"];
    let kubeconfig = data["kubeconfig"]
        .as_str()
        .context("there is no kubeconfig in the cluster-info ConfigMap")?;
    let Some(detached) = data[format!("jws-kubeconfig-{}", token.id)].as_str() else {
        bail!(
            "token id {:?} is invalid for this cluster or it has expired. Use \"kubeadm token create\" on the control-plane node to create a new valid token",
            token.id
        );
    };
    discovery::verify_jws(detached, kubeconfig, &token).map_err(anyhow::Error::msg)?;
    let info = discovery::parse_kubeconfig(kubeconfig).map_err(anyhow::Error::msg)?;
    discovery::check_pins(&info.ca_pem, &args.discovery_token_ca_cert_hash)
        .map_err(anyhow::Error::msg)?;
    if args.discovery_token_ca_cert_hash.is_empty() {
        println!(
            "[discovery] Cluster info signature and contents are valid and no TLS pinning was specified, will use API Server {:?}",
            args.apiserver
        );
    } else {
        println!(
            "[discovery] Cluster info signature and contents are valid and TLS certificate validates against pinned roots, will use API Server {:?}",
            args.apiserver
        );
    }
    let anon = Client::new(
        ClientConfig {
            server: args.apiserver.clone(),
            ca_pem: info.ca_pem.clone(),
            client_cert: None,
            token: None,
            timeout: Duration::from_secs(30),
        },
        clock.clone(),
        tasks.clone(),
    )?;
    let again = anon
        .request("GET", CLUSTER_INFO, None)
        .await
        .context("failed to securely fetch cluster-info with the cluster CA")?;
    if again["data"]["kubeconfig"].as_str() != Some(kubeconfig) {
        bail!("the cluster-info fetched over the trusted connection differs from the verified one");
    }

    // 2. TLS bootstrap as the token.
    let boot = Client::new(
        ClientConfig {
            server: args.apiserver.clone(),
            ca_pem: info.ca_pem.clone(),
            client_cert: None,
            token: Some(token.full()),
            timeout: Duration::from_secs(30),
        },
        clock.clone(),
        tasks.clone(),
    )?;
    let user = format!("system:node:{}", args.node_name);
    let (csr_pem, key_pem) = pki::make_csr(&user, &["system:nodes"])?;
    let name = format!("node-csr-{}", &hex::encode(sha2_of(&key_pem))[..16]);
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ackemu_kube::k8s_openapi::ByteString(csr_pem.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec![
                "digital signature".into(),
                "key encipherment".into(),
                "client auth".into(),
            ]),
            ..Default::default()
        },
        status: None,
    };
    let api = boot.api::<CertificateSigningRequest>(None)?;
    match api.create(&csr).await {
        Ok(_) => {}
        Err(e) if e.code() == Some(401) => bail!(
            "the API server rejected the bootstrap token {:?} (401 Unauthorized): it is wrong, expired or not allowed to authenticate",
            token.id
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e).context("cannot create certificate signing request"));
        }
    }
    println!(
        "[kubelet-start] Waiting for the kubelet to perform the TLS Bootstrap (certificate signing request {name})"
    );
    let cert = clock
        .timeout(args.bootstrap_timeout, wait_issued(&api, &name))
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "timed out waiting {:?} for the certificate signing request {name} to be approved and issued",
                args.bootstrap_timeout
            )
        })??;

    // 3. Write the node's kubeconfig and the CA.
    let kubeconfig_path = args.data_dir.join("kubelet.conf");
    let ca_file = args.data_dir.join("pki/ca.crt");
    pki::kubeconfig::write(
        &kubeconfig_path,
        &pki::kubeconfig::Spec {
            cluster_name: "kubernetes".into(),
            server: args.apiserver.clone(),
            ca_pem: info.ca_pem.clone(),
            user_name: user.clone(),
            client_cert: Some(pki::IssuedCert {
                cert_pem: cert,
                key_pem,
            }),
            token: None,
            namespace: None,
        },
    )?;
    pki::write_private(&ca_file, &info.ca_pem)?;
    Ok(Attached {
        kubeconfig: kubeconfig_path,
        ca_file,
        csr: name,
    })
}

fn sha2_of(s: &str) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(s.as_bytes()).to_vec()
}

/// The issued certificate (PEM) once the CSR is approved and signed.
async fn wait_issued(
    api: &ackemu_kube::client::Api<CertificateSigningRequest>,
    name: &str,
) -> anyhow::Result<String> {
    loop {
        let csr = api
            .get(name)
            .await
            .context("reading the certificate signing request")?;
        let st = csr.status.unwrap_or_default();
        for c in st.conditions.iter().flatten() {
            if (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True" {
                bail!(
                    "certificate signing request {name} is {}: {} {}",
                    c.type_.to_lowercase(),
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default()
                );
            }
        }
        if let Some(cert) = st.certificate.filter(|c| !c.0.is_empty()) {
            return String::from_utf8(cert.0).context("the issued certificate is not PEM");
        }
        let rv = csr.metadata.resource_version.clone();
        let p = ListParams {
            field_selector: Some(format!("metadata.name={name}")),
            resource_version: rv,
            timeout_seconds: Some(60),
            ..Default::default()
        };
        match api.dynamic().watch(&p, 16).await {
            Ok(mut events) => {
                // Any change is re-read from the top.
                let _ = events.recv().await;
            }
            Err(e) if retryable(&e) => {}
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context("watching the certificate signing request")
                );
            }
        }
    }
}

fn retryable(e: &ClientError) -> bool {
    matches!(e, ClientError::Transport(_)) || e.is_gone()
}

/// `host:port` and host of an `https://` URL.
fn authority(url: &str) -> anyhow::Result<(String, String)> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("invalid --apiserver {url:?}: expected https://host:port"))?;
    if uri.scheme_str() != Some("https") {
        bail!("invalid --apiserver {url:?}: expected https://host:port");
    }
    let host = uri
        .host()
        .context("--apiserver has no host")?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((format!("{host}:{}", uri.port_u16().unwrap_or(443)), host))
}

/// Accepts any server certificate (the first discovery request cannot
/// know the CA); handshake signatures are still checked.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
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
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// GET cluster-info anonymously without verifying the server.
async fn fetch_untrusted(authority: &str, host: &str, clock: &Clock) -> anyhow::Result<Value> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let work = async {
        let tcp = tokio::net::TcpStream::connect(authority)
            .await
            .with_context(|| format!("dial tcp {authority}"))?;
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| anyhow::anyhow!("server name {host:?}: {e}"))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .with_context(|| format!("tls handshake with {authority}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        // Drive the connection while the request runs (it never ends on
        // its own: keep-alive).
        let driver = async move {
            let _ = conn.await;
            std::future::pending::<()>().await
        };
        let req = http::Request::get(CLUSTER_INFO)
            .header("host", authority)
            .header("accept", "application/json")
            .body(http_body_util::Empty::<bytes::Bytes>::new())?;
        let request = async {
            let r = send.send_request(req).await?;
            let code = r.status().as_u16();
            let body = r.into_body().collect().await?.to_bytes();
            anyhow::Ok((code, body))
        };
        let (code, body) = tokio::select! {
            r = request => r?,
            () = driver => unreachable!("the driver never completes"),
        };
        if code != 200 {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            bail!(
                "the server answered {code}: {}",
                v["message"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
            );
        }
        serde_json::from_slice(&body).context("decoding cluster-info")
    };
    clock
        .timeout(clock.to_cluster(Duration::from_secs(30)), work)
        .await
        .map_err(|_| anyhow::anyhow!("timed out fetching cluster-info from {authority}"))?
}

/// Start the node's units through its systemd, or print how.
async fn start_units(args: &AttachArgs, tasks: &Tasks) -> anyhow::Result<i32> {
    let sock = args.run_dir().join("systemd/private");
    if !sock.exists() {
        println!(
            "[kubelet-start] systemd is not running on this node ({} is missing); start the node's units with:\n  ackemu-node systemctl --run-dir {} start {}",
            sock.display(),
            args.run_dir().display(),
            args.units.join(" ")
        );
        return Ok(0);
    }
    let bus = crate::systemd::client::BusClient::connect(&sock, "attach", tasks).await?;
    for u in &args.units {
        match bus.start_unit(u).await {
            Ok(r) if r == "done" => println!("[kubelet-start] Started {u}"),
            Ok(r) => {
                eprintln!("Job for {u} failed (start: {r}).");
                return Ok(1);
            }
            Err(e) => {
                eprintln!("Failed to start {u}: {e}");
                return Ok(1);
            }
        }
    }
    Ok(0)
}
