//! API aggregation: APIService objects that name a Service have their
//! group/version proxied to that Service's endpoints (dialed from the API
//! server's own network namespace), an availability check keeps their
//! `Available` condition, and requests for an unavailable group version
//! get 503 `the server is currently unable to handle the request` — the
//! error that leaves namespaces Terminating in S03.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

/// An aggregated group version served by a Service.
#[derive(Clone, Debug)]
pub struct Remote {
    pub name: String,
    pub group: String,
    pub version: String,
    pub service_namespace: String,
    pub service_name: String,
    pub port: i64,
    pub ca_pem: Option<String>,
    pub insecure: bool,
    pub available: bool,
}

/// The remote APIServices among APIService objects.
pub fn remotes(apiservices: &[Arc<Value>]) -> Vec<Remote> {
    apiservices
        .iter()
        .filter(|a| a["spec"]["service"].is_object())
        .map(|a| {
            let spec = &a["spec"];
            let ca = spec["caBundle"]
                .as_str()
                .and_then(|b| {
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b).ok()
                })
                .and_then(|b| String::from_utf8(b).ok())
                .filter(|s| !s.is_empty());
            let available = a["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Available" && c["status"] == "True");
            Remote {
                name: a["metadata"]["name"].as_str().unwrap_or("").to_owned(),
                group: spec["group"].as_str().unwrap_or("").to_owned(),
                version: spec["version"].as_str().unwrap_or("").to_owned(),
                service_namespace: spec["service"]["namespace"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned(),
                service_name: spec["service"]["name"].as_str().unwrap_or("").to_owned(),
                port: spec["service"]["port"].as_i64().unwrap_or(443),
                ca_pem: ca,
                insecure: spec["insecureSkipTLSVerify"].as_bool().unwrap_or(false),
                available,
            }
        })
        .collect()
}

/// The `Available` condition to record (status, reason, message).
pub fn condition(status: bool, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": "Available", "status": if status { "True" } else { "False" }, "reason": reason, "message": message, "lastTransitionTime": now})
}

/// Replaces the Available condition, keeping `lastTransitionTime` when the
/// status does not change. Returns whether anything changed.
pub fn set_condition(obj: &mut Value, new: Value) -> bool {
    let mut conds: Vec<Value> = obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut new = new;
    if let Some(old) = conds.iter().find(|c| c["type"] == "Available") {
        if old["status"] == new["status"]
            && old["reason"] == new["reason"]
            && old["message"] == new["message"]
        {
            return false;
        }
        if old["status"] == new["status"] {
            new["lastTransitionTime"] = old["lastTransitionTime"].clone();
        }
    }
    conds.retain(|c| c["type"] != "Available");
    conds.push(new);
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    obj["status"]["conditions"] = Value::Array(conds);
    true
}

/// A TLS client for a backend: its caBundle, or no verification when the
/// APIService says `insecureSkipTLSVerify`.
fn client_config(remote: &Remote, clock: &Clock) -> Result<rustls::ClientConfig, String> {
    if let Some(ca) = &remote.ca_pem
        && !remote.insecure
    {
        return ackemu_base::pki::client_tls_config(ca, None, clock, &[b"http/1.1"])
            .map_err(|e| e.to_string());
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(NoVerify))
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// `insecureSkipTLSVerify`: accepts any server certificate.
#[derive(Debug)]
pub(crate) struct NoVerify;

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

/// A proxied response.
pub struct Proxied {
    pub status: u16,
    pub content_type: String,
    pub body: Bytes,
}

/// Sends one request to a backend endpoint, as `user` (front-proxy headers).
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    remote: &Remote,
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, String)],
    body: Bytes,
    clock: &Clock,
    tasks: &Tasks,
    timeout: Duration,
) -> Result<Proxied, String> {
    let url = format!("https://{addr}{path_and_query}");
    let fail = |why: String| format!("{method} {url:?}: {why}");
    let cfg = client_config(remote, clock).map_err(&fail)?;
    let server_name = format!("{}.{}.svc", remote.service_name, remote.service_namespace);
    let name =
        rustls::pki_types::ServerName::try_from(server_name).map_err(|e| fail(e.to_string()))?;
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| fail(format!("dial tcp {addr}: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| fail(e.to_string()))?;
        tasks.spawn("aggregator-conn", async move {
            let _ = conn.await;
        });
        let mut req = http::Request::builder()
            .method(method)
            .uri(path_and_query)
            .header("host", addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| fail(e.to_string()))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_owned();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| fail(e.to_string()))?
            .to_bytes();
        Ok(Proxied {
            status,
            content_type,
            body,
        })
    };
    match clock.timeout(clock.to_cluster(timeout), work).await {
        Ok(r) => r,
        Err(_) => Err(fail("i/o timeout".to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_and_conditions() {
        let objs = vec![
            Arc::new(
                json!({"metadata": {"name": "v1.apps"}, "spec": {"group": "apps", "version": "v1"}}),
            ),
            Arc::new(json!({"metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {"group": "metrics.k8s.io", "version": "v1beta1", "insecureSkipTLSVerify": true,
                         "service": {"namespace": "kube-system", "name": "metrics-server"}},
                "status": {"conditions": [{"type": "Available", "status": "True"}]}})),
        ];
        let r = remotes(&objs);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (
                r[0].group.as_str(),
                r[0].port,
                r[0].available,
                r[0].insecure
            ),
            ("metrics.k8s.io", 443, true, true)
        );

        let mut obj = (*objs[1]).clone();
        let down = condition(
            false,
            "FailedDiscoveryCheck",
            "failing or missing response from https://172.16.1.5:443/apis/metrics.k8s.io/v1beta1",
            "t2",
        );
        assert!(set_condition(&mut obj, down.clone()));
        assert!(!set_condition(&mut obj, down));
        assert_eq!(obj["status"]["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(obj["status"]["conditions"][0]["status"], "False");
        assert_eq!(obj["status"]["conditions"][0]["lastTransitionTime"], "t2");
    }
}
