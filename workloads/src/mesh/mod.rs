//! The service mesh set of the seed's Istio 1.x articles (S07, S08):
//! `pilot` (discovery on :15010), `sidecar` (pilot-agent + an envoy-like
//! proxy with readiness on :15020), `citadel` (the self-signed mesh CA kept
//! in secret `istio-ca-secret`) and `galley` (the `pilot.validation.istio.io`
//! validating webhook on :443 `/admitpilot`). Logs use Istio's line format.

pub mod citadel;
pub mod galley;
pub mod pilot;
pub mod sidecar;
pub mod validation;

use std::time::Duration;

/// Parse `8760h`, `90d`, `15s` (cluster time).
pub fn duration(s: &str) -> Result<Duration, String> {
    ackemu_base::clock::parse_duration(s)
}

/// Secret keys Istio uses for a CA and for workload certificates.
pub mod keys {
    /// `istio-ca-secret`: the CA certificate.
    pub const CA_CERT: &str = "ca-cert.pem";
    /// `istio-ca-secret`: the CA key.
    pub const CA_KEY: &str = "ca-key.pem";
    /// `istio.<sa>`: the workload's certificate chain.
    pub const CERT_CHAIN: &str = "cert-chain.pem";
    /// `istio.<sa>`: the workload's key.
    pub const KEY: &str = "key.pem";
    /// `istio.<sa>`: the mesh root.
    pub const ROOT_CERT: &str = "root-cert.pem";
}

/// The secret holding a service account's workload certificate.
pub fn workload_secret_name(sa: &str) -> String {
    format!("istio.{sa}")
}
