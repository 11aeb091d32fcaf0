//! The kubelet's image manager (`pkg/kubelet/images`), the pure part:
//! whether a container's image must be pulled (its `imagePullPolicy`,
//! defaulted as the API server does), which credentials of the pod's
//! `imagePullSecrets` apply to its registry, and the texts of the events
//! and waiting reasons the kubelet reports.
//!
//! Images named without a registry (`app`, `coredns`) are the node's
//! preloaded images — the system disk ships them, as ACK's node images
//! ship the add-ons' — and are never pulled; images that name a registry
//! (`registry.cn-hangzhou.aliyuncs.com/ns/app:1`) go through the runtime's
//! PullImage with the pod's credentials.

use ackemu_proto::ackemu::node::v1 as pb;
use base64::Engine as _;
use serde_json::Value;

/// `imagePullPolicy`, defaulted as the API server does: `Always` for a
/// `:latest` or untagged image, `IfNotPresent` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn of(policy: Option<&str>, image: &str) -> PullPolicy {
        match policy {
            Some("Always") => PullPolicy::Always,
            Some("IfNotPresent") => PullPolicy::IfNotPresent,
            Some("Never") => PullPolicy::Never,
            _ => match tag(image) {
                None | Some("latest") => PullPolicy::Always,
                Some(_) => PullPolicy::IfNotPresent,
            },
        }
    }
}

/// The tag of `image`, if it has one (a digest counts as one).
fn tag(image: &str) -> Option<&str> {
    if let Some((_, d)) = image.split_once('@') {
        return Some(d);
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    last.split_once(':').map(|(_, t)| t)
}

/// The registry `image` names (Docker's rule: a first component with a
/// `.` or `:`, or `localhost`), or `None` for a short name.
pub fn registry(image: &str) -> Option<&str> {
    let (first, rest) = image.split_once('/')?;
    (!rest.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost"))
        .then_some(first)
}

/// Whether the node has `image` without pulling it.
pub fn preloaded(image: &str) -> bool {
    registry(image).is_none()
}

/// What the image manager does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The image is there: `Container image "…" already present on machine`.
    Present,
    /// Pull it.
    Pull,
    /// Policy Never and it is not there: `ErrImageNeverPull`.
    NeverPull,
}

pub fn decide(policy: PullPolicy, present: bool) -> Decision {
    match (policy, present) {
        (PullPolicy::Always, _) => Decision::Pull,
        (_, true) => Decision::Present,
        (PullPolicy::IfNotPresent, false) => Decision::Pull,
        (PullPolicy::Never, false) => Decision::NeverPull,
    }
}

/// The credentials for `registry` in `kubernetes.io/dockerconfigjson` (or
/// legacy `.dockercfg`) secrets, in the order the pod names them: the
/// kubelet tries each until a pull succeeds.
pub fn credentials(secrets: &[Value], registry: &str) -> Vec<pb::AuthConfig> {
    let mut out = Vec::new();
    for s in secrets {
        let data = &s["data"];
        let doc = [".dockerconfigjson", ".dockercfg"].iter().find_map(|k| {
            let b = data[*k].as_str()?;
            let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
            serde_json::from_slice::<Value>(&raw).ok()
        });
        let Some(doc) = doc else { continue };
        let auths = if doc["auths"].is_object() {
            &doc["auths"]
        } else {
            &doc
        };
        for (server, entry) in auths.as_object().into_iter().flatten() {
            if host_of(server) != registry {
                continue;
            }
            let text = |k: &str| entry[k].as_str().unwrap_or("").to_owned();
            out.push(pb::AuthConfig {
                username: text("username"),
                password: text("password"),
                auth: text("auth"),
                server_address: server.clone(),
                identity_token: text("identitytoken"),
                registry_token: text("registrytoken"),
            });
        }
    }
    out
}

/// `https://host[:port]/v1/` → `host[:port]`.
fn host_of(server: &str) -> &str {
    let s = server
        .strip_prefix("https://")
        .or_else(|| server.strip_prefix("http://"))
        .unwrap_or(server);
    s.split('/').next().unwrap_or(s)
}

pub fn pulling(image: &str) -> String {
    format!("Pulling image {image:?}")
}

pub fn pulled(image: &str, secs: f64, size: u64) -> String {
    format!(
        "Successfully pulled image {image:?} in {secs:.3}s ({secs:.3}s including waiting). Image size: {size} bytes."
    )
}

pub fn already_present(image: &str) -> String {
    format!("Container image {image:?} already present on machine")
}

pub fn failed(image: &str, err: &str) -> String {
    format!("Failed to pull image {image:?}: {err}")
}

pub fn back_off(image: &str) -> String {
    format!("Back-off pulling image {image:?}")
}

pub fn never_pull(image: &str) -> String {
    format!("Container image {image:?} is not present with pull policy of Never")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn policy_defaults_like_the_api_server() {
        assert_eq!(PullPolicy::of(None, "app"), PullPolicy::Always);
        assert_eq!(
            PullPolicy::of(None, "r.io/ns/app:latest"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::of(None, "r.io/ns/app:1.0"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::of(None, "localhost:5000/app"),
            PullPolicy::Always
        );
        assert_eq!(
            PullPolicy::of(None, "r.io/app@sha256:abc"),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            PullPolicy::of(Some("Never"), "r.io/ns/app:1"),
            PullPolicy::Never
        );
        assert_eq!(decide(PullPolicy::Always, true), Decision::Pull);
        assert_eq!(decide(PullPolicy::IfNotPresent, true), Decision::Present);
        assert_eq!(decide(PullPolicy::IfNotPresent, false), Decision::Pull);
        assert_eq!(decide(PullPolicy::Never, false), Decision::NeverPull);
    }

    #[test]
    fn registries_and_preloaded_short_names() {
        assert_eq!(registry("app"), None);
        assert_eq!(registry("library/app"), None);
        assert_eq!(
            registry("registry.cn-hangzhou.aliyuncs.com/ns/app:1"),
            Some("registry.cn-hangzhou.aliyuncs.com")
        );
        assert_eq!(registry("100.100.0.20/ns/app"), Some("100.100.0.20"));
        assert_eq!(registry("localhost:5000/app"), Some("localhost:5000"));
        assert!(preloaded("coredns") && !preloaded("r.io/ns/app"));
    }

    #[test]
    fn credentials_for_the_registry_in_pod_order() {
        let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.encode(v.to_string());
        let a = json!({"type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": b64(&json!(
            {"auths": {"https://r.io/v1/": {"username": "u", "password": "p"},
                       "other.io": {"auth": "eDp5"}}}))}});
        let legacy = json!({"type": "kubernetes.io/dockercfg", "data": {".dockercfg": b64(&json!(
            {"r.io": {"auth": "dTI6cDI="}}))}});
        let junk = json!({"data": {".dockerconfigjson": "%%%"}});
        let got = credentials(&[junk, a, legacy], "r.io");
        assert_eq!(got.len(), 2);
        assert_eq!(
            (got[0].username.as_str(), got[0].password.as_str()),
            ("u", "p")
        );
        assert_eq!(got[1].auth, "dTI6cDI=");
        assert!(credentials(&[], "r.io").is_empty());
    }
}
