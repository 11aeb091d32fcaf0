//! The API server's side of the kubelet API (`:10250`), as kube-apiserver
//! has it: which address and port of a Node to dial
//! (`status.addresses` in `--kubelet-preferred-address-types` order,
//! `status.daemonEndpoints.kubeletEndpoint.Port`), the kubelet paths and
//! query strings for `pods/log`, `pods/exec`, `pods/attach` and
//! `pods/portforward`, TLS with the apiserver's kubelet client certificate
//! (the kubelet's serving certificate is checked only against
//! `--kubelet-certificate-authority`), and errors worded the way Go's
//! `net/http` and apimachinery word them, so a blocked kubelet reads
//! `dial tcp 192.168.0.12:10250: i/o timeout` (S05).
//!
//! Pure functions first; [`Kubelets::connect`] is the only IO.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::status::ApiError;

/// The kubelet port when a Node does not report one.
pub const DEFAULT_PORT: u16 = 10250;

/// How the API server reaches kubelets.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// Client certificate presented to kubelets (PEM).
    pub client_cert_pem: String,
    /// Its private key (PEM).
    pub client_key_pem: String,
    /// CA that kubelet serving certificates must chain to; `None` skips
    /// verification (kube-apiserver's default without
    /// `--kubelet-certificate-authority`).
    pub ca_pem: Option<String>,
    /// Node address types in order of preference.
    pub preferred_address_types: Vec<String>,
    /// Port used when a Node reports none.
    pub default_port: u16,
    /// Connect timeout (cluster time): Go's default dialer, 30s.
    pub dial_timeout: Duration,
    /// TLS handshake timeout (cluster time): Go's default transport, 10s.
    pub tls_handshake_timeout: Duration,
}

/// `--kubelet-preferred-address-types` as kubeadm and managed clusters set
/// it (node host names do not resolve from the API server).
pub const DEFAULT_ADDRESS_TYPES: &[&str] = &["InternalIP", "ExternalIP", "Hostname"];

impl KubeletConfig {
    pub fn new(client_cert_pem: String, client_key_pem: String) -> Self {
        Self {
            client_cert_pem,
            client_key_pem,
            ca_pem: None,
            preferred_address_types: DEFAULT_ADDRESS_TYPES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            default_port: DEFAULT_PORT,
            dial_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the kubelet client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("kubelet client tls configuration: {0}")]
    Tls(String),
}

/// Where one kubelet request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// `https`, or `http` for a node proxy to another port.
    pub scheme: String,
    pub host: String,
    pub port: u16,
    /// Path starting with `/`.
    pub path: String,
    /// Encoded query without `?` (may be empty).
    pub query: String,
}

impl Location {
    /// `host:port` as Go's `net.JoinHostPort` writes it.
    pub fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }

    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            self.host_port(),
            self.path_and_query()
        )
    }
}

// ---- query strings

/// Query parameters with every value kept (`command` repeats).
#[derive(Clone, Debug, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Self {
        Params(
            query
                .split('&')
                .filter(|s| !s.is_empty())
                .map(|kv| {
                    let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                    (crate::api::percent_decode(k), crate::api::percent_decode(v))
                })
                .collect(),
        )
    }

    /// The first value (Go's `url.Values.Get`).
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// apimachinery's query-to-bool conversion: absent is false, `0` and
    /// `false` (any case) are false, anything else — even empty — true.
    pub fn flag(&self, k: &str) -> bool {
        match self.get(k) {
            None => false,
            Some(v) => !(v == "0" || v.eq_ignore_ascii_case("false")),
        }
    }

    /// An optional int64 (`strconv.ParseInt` wording on failure).
    pub fn int(&self, k: &str) -> Result<Option<i64>, ApiError> {
        match self.get(k) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
            }),
        }
    }
}

/// Go's `url.QueryEscape`.
pub fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Go's `url.Values.Encode`: keys sorted, each key's values in order.
fn encode(values: &BTreeMap<&str, Vec<String>>) -> String {
    let mut parts = Vec::new();
    for (k, vs) in values {
        for v in vs {
            parts.push(format!("{}={}", query_escape(k), query_escape(v)));
        }
    }
    parts.join("&")
}

// ---- nodes

/// The address to dial: the first address of the first preferred type
/// (a Hostname falls back to the `kubernetes.io/hostname` label), as
/// `nodeutil.GetPreferredNodeAddress`.
pub fn preferred_address(node: &Value, types: &[String]) -> Result<String, String> {
    let addresses = node["status"]["addresses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for t in types {
        if let Some(a) = addresses
            .iter()
            .find(|a| a["type"].as_str() == Some(t.as_str()))
            .and_then(|a| a["address"].as_str())
        {
            return Ok(a.to_owned());
        }
        if t == "Hostname"
            && let Some(h) = node["metadata"]["labels"]["kubernetes.io/hostname"].as_str()
            && !h.is_empty()
        {
            return Ok(h.to_owned());
        }
    }
    let known: Vec<String> = addresses
        .iter()
        .map(|a| {
            format!(
                "{{{} {}}}",
                a["type"].as_str().unwrap_or(""),
                a["address"].as_str().unwrap_or("")
            )
        })
        .collect();
    Err(format!(
        "no preferred addresses found; known addresses: [{}]",
        known.join(" ")
    ))
}

/// `status.daemonEndpoints.kubeletEndpoint.Port` (capital P in the JSON),
/// or the default.
pub fn kubelet_port(node: &Value, default: u16) -> u16 {
    node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_i64()
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(default)
}

/// `scheme:name:port`, `name:port` or `name` (utilnet.SplitSchemeNamePort).
pub fn split_scheme_name_port(id: &str) -> Option<(String, String, String)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    if name.is_empty() || !(scheme.is_empty() || scheme == "http" || scheme == "https") {
        return None;
    }
    Some((scheme.to_owned(), name.to_owned(), port.to_owned()))
}

// ---- pods

/// The names of a pod's init, regular and ephemeral containers, in
/// `podutil.VisitContainers` order.
fn container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod["spec"][*k].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// The container a request is for: the named one (it must exist), or the
/// only one; kube-apiserver's `validateContainer` texts otherwise.
pub fn validate_container(pod: &Value, requested: &str) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    if requested.is_empty() {
        let containers = pod["spec"]["containers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        return match containers.len() {
            1 => Ok(containers[0]["name"].as_str().unwrap_or("").to_owned()),
            0 => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}"
            ))),
            _ => Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                container_names(pod).join(" ")
            ))),
        };
    }
    if container_names(pod).iter().any(|c| c == requested) {
        Ok(requested.to_owned())
    } else {
        Err(ApiError::bad_request(format!(
            "container {requested} is not valid for pod {name}"
        )))
    }
}

/// `PodLogOptions` from a `pods/log` query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub container: String,
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub since_seconds: Option<i64>,
    pub since_time: Option<String>,
    pub tail_lines: Option<i64>,
    pub limit_bytes: Option<i64>,
    pub insecure_skip_tls_verify_backend: bool,
}

impl LogOptions {
    /// Decodes and validates (`ValidatePodLogOptions`: 422 Invalid).
    pub fn parse(params: &Params, pod_name: &str) -> Result<LogOptions, ApiError> {
        let since_time = match params.get("sinceTime") {
            None | Some("") => None,
            Some(t) => {
                let ts: jiff::Timestamp = t.parse().map_err(|_| {
                    ApiError::bad_request(format!(
                        "parsing time {t:?} as \"2006-01-02T15:04:05Z07:00\": cannot parse {t:?} as \"2006\""
                    ))
                })?;
                Some(
                    jiff::Timestamp::from_second(ts.as_second())
                        .unwrap_or(ts)
                        .to_string(),
                )
            }
        };
        let opts = LogOptions {
            container: params.get("container").unwrap_or("").to_owned(),
            follow: params.flag("follow"),
            previous: params.flag("previous"),
            timestamps: params.flag("timestamps"),
            since_seconds: params.int("sinceSeconds")?,
            since_time,
            tail_lines: params.int("tailLines")?,
            limit_bytes: params.int("limitBytes")?,
            insecure_skip_tls_verify_backend: params.flag("insecureSkipTLSVerifyBackend"),
        };
        let mut causes = Vec::new();
        if let Some(t) = opts.tail_lines.filter(|t| *t < 0) {
            causes.push((
                "FieldValueInvalid".to_owned(),
                "tailLines".to_owned(),
                format!("Invalid value: {t}: must be greater than or equal to 0"),
            ));
        }
        if let Some(l) = opts.limit_bytes.filter(|l| *l < 1) {
            causes.push((
                "FieldValueInvalid".to_owned(),
                "limitBytes".to_owned(),
                format!("Invalid value: {l}: must be greater than 0"),
            ));
        }
        match (opts.since_seconds, &opts.since_time) {
            (Some(_), Some(_)) => causes.push((
                "FieldValueForbidden".to_owned(),
                String::new(),
                "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
                    .to_owned(),
            )),
            (Some(s), None) if s < 1 => causes.push((
                "FieldValueInvalid".to_owned(),
                "sinceSeconds".to_owned(),
                format!("Invalid value: {s}: must be greater than 0"),
            )),
            _ => {}
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                "PodLogOptions",
                &ackemu_kube::GroupResource::new("", "pods"),
                pod_name,
                causes,
            ));
        }
        Ok(opts)
    }

    /// The kubelet's query string (LogLocation's parameters, encoded).
    pub fn kubelet_query(&self) -> String {
        let mut v: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        if self.follow {
            v.insert("follow", vec!["true".into()]);
        }
        if self.previous {
            v.insert("previous", vec!["true".into()]);
        }
        if self.timestamps {
            v.insert("timestamps", vec!["true".into()]);
        }
        if let Some(s) = self.since_seconds {
            v.insert("sinceSeconds", vec![s.to_string()]);
        }
        if let Some(t) = &self.since_time {
            v.insert("sinceTime", vec![t.clone()]);
        }
        if let Some(t) = self.tail_lines {
            v.insert("tailLines", vec![t.to_string()]);
        }
        if let Some(l) = self.limit_bytes {
            v.insert("limitBytes", vec![l.to_string()]);
        }
        encode(&v)
    }
}

/// The streaming subresources proxied with an upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Exec,
    Attach,
    PortForward,
}

impl Stream {
    pub fn from_subresource(s: &str) -> Option<Stream> {
        match s {
            "exec" => Some(Stream::Exec),
            "attach" => Some(Stream::Attach),
            "portforward" => Some(Stream::PortForward),
            _ => None,
        }
    }

    /// The kubelet path for a pod (and container, except port-forward).
    pub fn kubelet_path(self, ns: &str, pod: &str, container: &str) -> String {
        match self {
            Stream::Exec => format!("/exec/{ns}/{pod}/{container}"),
            Stream::Attach => format!("/attach/{ns}/{pod}/{container}"),
            Stream::PortForward => format!("/portForward/{ns}/{pod}"),
        }
    }

    /// The kubelet query (`streamParams`): `command` repeated, the stream
    /// flags as kube-apiserver sends them (`input`, `output`, `error`,
    /// `tty` = `1`) plus the same flags under their request names
    /// (`stdin`, `stdout`, `stderr`), and `port` for port-forward.
    pub fn kubelet_query(self, params: &Params) -> Result<String, ApiError> {
        let mut v: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        match self {
            Stream::Exec | Stream::Attach => {
                for (flag, kubelet_name) in [
                    ("stdin", "input"),
                    ("stdout", "output"),
                    ("stderr", "error"),
                    ("tty", "tty"),
                ] {
                    if params.flag(flag) {
                        v.insert(kubelet_name, vec!["1".into()]);
                        v.insert(flag, vec!["1".into()]);
                    }
                }
                if self == Stream::Exec {
                    let command: Vec<String> = params
                        .all("command")
                        .into_iter()
                        .map(str::to_owned)
                        .collect();
                    if !command.is_empty() {
                        v.insert("command", command);
                    }
                }
            }
            Stream::PortForward => {
                let mut ports = Vec::new();
                for p in params.all("ports") {
                    for one in p.split(',').filter(|s| !s.is_empty()) {
                        let n: u16 = one.trim().parse().map_err(|_| {
                            ApiError::bad_request(format!(
                                "strconv.ParseInt: parsing {one:?}: invalid syntax"
                            ))
                        })?;
                        ports.push(n.to_string());
                    }
                }
                if !ports.is_empty() {
                    v.insert("port", vec![ports.join(",")]);
                }
            }
        }
        Ok(encode(&v))
    }
}

/// What a non-2xx kubelet answer becomes (apimachinery's
/// `GenericHttpResponseChecker` for `pods/log`).
pub fn check_response(code: u16, body: &str, resource: &str, name: &str) -> Result<(), ApiError> {
    if (200..=206).contains(&code) {
        return Ok(());
    }
    let body = body.trim_end_matches('\n');
    let suffix = format!(" ( {resource} {name})");
    Err(match code {
        500 => ApiError::internal(body),
        400 => ApiError::bad_request(body),
        404 => ApiError::with_reason(
            404,
            "NotFound",
            format!("the server could not find the requested resource{suffix}"),
        ),
        403 => ApiError::with_reason(403, "Forbidden", format!("{body}{suffix}")),
        401 => ApiError::with_reason(
            401,
            "Unauthorized",
            format!("the server has asked for the client to provide credentials{suffix}"),
        ),
        c => ApiError::with_reason(
            c,
            "",
            format!(
                "the server responded with the status code {c} but did not return more information{suffix}"
            ),
        ),
    })
}

/// Go's wording of a failed TCP connect (`dial tcp <addr>: connect: ...`).
pub fn dial_error(host_port: &str, e: &std::io::Error) -> String {
    let why = match e.raw_os_error() {
        Some(111) => "connect: connection refused".to_owned(),
        Some(113) => "connect: no route to host".to_owned(),
        Some(101) => "connect: network is unreachable".to_owned(),
        Some(110) => "connect: connection timed out".to_owned(),
        Some(104) => "read: connection reset by peer".to_owned(),
        _ => {
            let s = e.to_string();
            let s = s.split(" (os error").next().unwrap_or(&s).to_owned();
            format!("connect: {}", s.to_lowercase())
        }
    };
    format!("dial tcp {host_port}: {why}")
}

// ---- IO

/// A connection to a kubelet (TLS, or plain TCP for a node proxy to an
/// `http` port).
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Conn for T {}

/// The kubelet client: two TLS configurations (verified against
/// `--kubelet-certificate-authority`, and not verified) sharing the client
/// certificate.
pub struct Kubelets {
    pub cfg: KubeletConfig,
    verified: Arc<rustls::ClientConfig>,
    insecure: Arc<rustls::ClientConfig>,
    plain_insecure: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for Kubelets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubelets")
            .field("verify", &self.cfg.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn insecure_config(client: Option<(&str, &str)>) -> Result<rustls::ClientConfig, KubeletError> {
    let tls = |e: String| KubeletError::Tls(e);
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls(e.to_string()))?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(crate::aggregator::NoVerify));
    let mut cfg = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                ackemu_base::pki::certs_from_pem(cert).map_err(|e| tls(e.to_string()))?,
                ackemu_base::pki::key_from_pem(key).map_err(|e| tls(e.to_string()))?,
            )
            .map_err(|e| tls(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

impl Kubelets {
    pub fn new(cfg: KubeletConfig, clock: &Clock) -> Result<Kubelets, KubeletError> {
        let client = Some((cfg.client_cert_pem.as_str(), cfg.client_key_pem.as_str()));
        let insecure = Arc::new(insecure_config(client)?);
        let verified = match &cfg.ca_pem {
            Some(ca) => Arc::new(
                ackemu_base::pki::client_tls_config(ca, client, clock, &[b"http/1.1"])
                    .map_err(|e| KubeletError::Tls(e.to_string()))?,
            ),
            None => insecure.clone(),
        };
        let plain_insecure = Arc::new(insecure_config(None)?);
        Ok(Kubelets {
            cfg,
            verified,
            insecure,
            plain_insecure,
        })
    }

    /// Where a node's kubelet is (`NodeConnectionInfoGetter`).
    pub fn node_location(
        &self,
        node: &Value,
        path: String,
        query: String,
    ) -> Result<Location, String> {
        let host = preferred_address(node, &self.cfg.preferred_address_types)?;
        Ok(Location {
            scheme: "https".to_owned(),
            host,
            port: kubelet_port(node, self.cfg.default_port),
            path,
            query,
        })
    }

    /// Dials and (for https) completes the TLS handshake. The error is Go's
    /// text without the `Get "<url>": ` prefix callers add.
    ///
    /// `kubelet_credentials`: present the client certificate (every call
    /// to the kubelet port; not for a node proxy to another port).
    pub async fn connect(
        &self,
        loc: &Location,
        insecure: bool,
        kubelet_credentials: bool,
        clock: &Clock,
    ) -> Result<Box<dyn Conn>, String> {
        let hp = loc.host_port();
        let dial = async {
            let addrs: Vec<std::net::SocketAddr> =
                tokio::net::lookup_host((loc.host.as_str(), loc.port))
                    .await
                    .map_err(|_| format!("dial tcp: lookup {}: no such host", loc.host))?
                    .collect();
            let mut last = format!("dial tcp: lookup {}: no such host", loc.host);
            for a in addrs {
                match tokio::net::TcpStream::connect(a).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = dial_error(&hp, &e),
                }
            }
            Err(last)
        };
        let tcp = match clock.timeout(self.cfg.dial_timeout, dial).await {
            Ok(r) => r?,
            Err(_) => return Err(format!("dial tcp {hp}: i/o timeout")),
        };
        let _ = tcp.set_nodelay(true);
        if loc.scheme == "http" {
            return Ok(Box::new(tcp));
        }
        let cfg = match (kubelet_credentials, insecure) {
            (false, _) => self.plain_insecure.clone(),
            (true, true) => self.insecure.clone(),
            (true, false) => self.verified.clone(),
        };
        let name = rustls::pki_types::ServerName::try_from(loc.host.clone())
            .map_err(|e| format!("tls: invalid server name {:?}: {e}", loc.host))?;
        let handshake = tokio_rustls::TlsConnector::from(cfg).connect(name, tcp);
        match clock
            .timeout(self.cfg.tls_handshake_timeout, handshake)
            .await
        {
            Ok(Ok(tls)) => Ok(Box::new(tls)),
            Ok(Err(e)) => Err(e
                .get_ref()
                .map(|inner| crate::webhook::describe_error(inner))
                .unwrap_or_else(|| e.to_string())),
            Err(_) => Err("net/http: TLS handshake timeout".to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Value {
        json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "host-1"}},
               "status": {"addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.0.12"}],
                          "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}})
    }

    #[test]
    fn node_address_and_port() {
        let types: Vec<String> = DEFAULT_ADDRESS_TYPES
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(preferred_address(&node(), &types).unwrap(), "192.168.0.12");
        let hostname_first = vec!["Hostname".to_owned(), "InternalIP".to_owned()];
        assert_eq!(preferred_address(&node(), &hostname_first).unwrap(), "n1");
        let mut no_host = node();
        no_host["status"]["addresses"] = json!([{"type": "ExternalDNS", "address": "x.example"}]);
        assert_eq!(
            preferred_address(&no_host, &hostname_first).unwrap(),
            "host-1",
            "a Hostname falls back to the label"
        );
        no_host["metadata"]["labels"] = json!({});
        assert_eq!(
            preferred_address(&no_host, &hostname_first).unwrap_err(),
            "no preferred addresses found; known addresses: [{ExternalDNS x.example}]"
        );
        assert_eq!(kubelet_port(&node(), 1), 10250);
        assert_eq!(kubelet_port(&json!({}), 10250), 10250);
        let mut other = node();
        other["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = json!(12345);
        assert_eq!(kubelet_port(&other, 10250), 12345);
    }

    #[test]
    fn containers_are_validated_like_kube_apiserver() {
        let one = json!({"metadata": {"name": "web"}, "spec": {"containers": [{"name": "app"}]}});
        assert_eq!(validate_container(&one, "").unwrap(), "app");
        assert_eq!(validate_container(&one, "app").unwrap(), "app");
        assert_eq!(
            validate_container(&one, "x").unwrap_err().message,
            "container x is not valid for pod web"
        );
        let two = json!({"metadata": {"name": "web"}, "spec": {
            "initContainers": [{"name": "init"}], "containers": [{"name": "a"}, {"name": "b"}]}});
        let e = validate_container(&two, "").unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "a container name must be specified for pod web, choose one of: [init a b]"
        );
        assert_eq!(validate_container(&two, "init").unwrap(), "init");
        let none = json!({"metadata": {"name": "web"}, "spec": {"containers": []}});
        assert_eq!(
            validate_container(&none, "").unwrap_err().message,
            "a container name must be specified for pod web"
        );
    }

    #[test]
    fn log_options_to_the_kubelet_query() {
        let p = Params::parse(
            "container=app&follow=true&tailLines=10&timestamps=1&sinceSeconds=30&limitBytes=5",
        );
        let o = LogOptions::parse(&p, "web").unwrap();
        assert_eq!(o.container, "app");
        assert_eq!(
            o.kubelet_query(),
            "follow=true&limitBytes=5&sinceSeconds=30&tailLines=10&timestamps=true"
        );
        assert_eq!(
            LogOptions::parse(&Params::parse(""), "web")
                .unwrap()
                .kubelet_query(),
            ""
        );
        let e = LogOptions::parse(&Params::parse("tailLines=-1"), "web").unwrap_err();
        assert_eq!((e.code, e.reason), (422, "Invalid"));
        assert_eq!(
            e.message,
            "PodLogOptions \"web\" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0"
        );
        let e = LogOptions::parse(
            &Params::parse("sinceSeconds=5&sinceTime=2026-01-01T00:00:00Z"),
            "web",
        )
        .unwrap_err();
        assert_eq!(
            e.message,
            "PodLogOptions \"web\" is invalid: : Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
        );
        let e = LogOptions::parse(&Params::parse("tailLines=ten"), "web").unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "strconv.ParseInt: parsing \"ten\": invalid syntax"
        );
        assert!(Params::parse("follow").flag("follow"));
        assert!(!Params::parse("follow=false").flag("follow"));
        assert!(!Params::parse("follow=0").flag("follow"));
    }

    #[test]
    fn stream_queries() {
        let p = Params::parse(
            "command=sh&command=-c&command=echo%20hi%3B%20ls&container=app&stdin=true&stdout=true&stderr=true&tty=false",
        );
        assert_eq!(
            Stream::Exec.kubelet_query(&p).unwrap(),
            "command=sh&command=-c&command=echo+hi%3B+ls&error=1&input=1&output=1&stderr=1&stdin=1&stdout=1"
        );
        assert_eq!(
            Stream::Attach
                .kubelet_query(&Params::parse("stdout=1&tty=1"))
                .unwrap(),
            "output=1&stdout=1&tty=1"
        );
        assert_eq!(
            Stream::PortForward
                .kubelet_query(&Params::parse("ports=8080&ports=9090"))
                .unwrap(),
            "port=8080%2C9090"
        );
        assert_eq!(
            Stream::Exec.kubelet_path("default", "web", "app"),
            "/exec/default/web/app"
        );
        assert_eq!(
            Stream::PortForward.kubelet_path("default", "web", ""),
            "/portForward/default/web"
        );
    }

    #[test]
    fn kubelet_answers_become_statuses() {
        assert!(check_response(200, "", "pods/log", "web").is_ok());
        let e = check_response(
            400,
            "container \"app\" in pod \"web\" is waiting to start: ContainerCreating\n",
            "pods/log",
            "web",
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert_eq!(
            e.message,
            "container \"app\" in pod \"web\" is waiting to start: ContainerCreating"
        );
        let e = check_response(404, "nope", "pods/log", "web").unwrap_err();
        assert_eq!(
            e.message,
            "the server could not find the requested resource ( pods/log web)"
        );
        let e = check_response(500, "boom", "pods/log", "web").unwrap_err();
        assert_eq!(e.message, "Internal error occurred: boom");
    }

    #[test]
    fn dial_errors_read_like_go() {
        let refused = std::io::Error::from_raw_os_error(111);
        assert_eq!(
            dial_error("127.0.0.1:1", &refused),
            "dial tcp 127.0.0.1:1: connect: connection refused"
        );
        let unreachable = std::io::Error::from_raw_os_error(113);
        assert_eq!(
            dial_error("192.168.0.12:10250", &unreachable),
            "dial tcp 192.168.0.12:10250: connect: no route to host"
        );
        let loc = Location {
            scheme: "https".into(),
            host: "fd00::1".into(),
            port: 10250,
            path: "/containerLogs/default/web/app".into(),
            query: "follow=true".into(),
        };
        assert_eq!(
            loc.url(),
            "https://[fd00::1]:10250/containerLogs/default/web/app?follow=true"
        );
        assert_eq!(
            split_scheme_name_port("https:n1:10255"),
            Some(("https".into(), "n1".into(), "10255".into()))
        );
        assert_eq!(
            split_scheme_name_port("n1"),
            Some((String::new(), "n1".into(), String::new()))
        );
        assert_eq!(split_scheme_name_port("ftp:n1:1"), None);
    }
}
