//! The service mesh set of the seed's Istio 1.x articles (S07, S08):
//! `pilot` (discovery on :15010), `sidecar` (pilot-agent + an envoy-like
//! proxy with readiness on :15020), `citadel` (the self-signed mesh CA kept
//! in secret `istio-ca-secret`) and `galley` (the `pilot.validation.istio.io`
//! validating webhook on :443 `/admitpilot`, and the sidecar injector's
//! `sidecar-injector.istio.io` mutating webhook at `/inject`, see
//! [`inject`]). Logs use Istio's line format.
//!
//! The registry's images name them `mesh-pilot`, `mesh-sidecar`, `mesh-ca`
//! and `mesh-webhook` ([`image_program`]).

pub mod citadel;
pub mod galley;
pub mod inject;
pub mod pilot;
pub mod sidecar;
pub mod validation;

use std::time::Duration;

/// The registry's image names for the mesh programs (cloudsim's built-in
/// `mesh-*` images) → the program each runs.
pub const IMAGES: &[(&str, &str)] = &[
    ("mesh-pilot", "pilot"),
    ("mesh-sidecar", "sidecar"),
    ("mesh-ca", "citadel"),
    ("mesh-webhook", "galley"),
];

/// The program a mesh image name runs, if it is one.
pub fn image_program(image: &str) -> Option<&'static str> {
    IMAGES.iter().find(|(i, _)| *i == image).map(|(_, p)| *p)
}

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
