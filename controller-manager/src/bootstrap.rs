//! The bootstrap signer and token cleaner (`pkg/controller/bootstrap`).
//!
//! The signer keeps one JWS detached signature per usable bootstrap token
//! in the `cluster-info` ConfigMap of `kube-public`: key
//! `jws-kubeconfig-<token-id>`, value `<header>..<signature>` where the
//! header is `{"alg":"HS256","kid":"<token-id>"}`, the payload the
//! ConfigMap's `kubeconfig` and the HMAC key the whole token
//! `<token-id>.<token-secret>` (kubeadm's `ComputeDetachedSignature`). A
//! joining node recomputes it with the token it was given before trusting
//! the CA inside. The cleaner deletes token Secrets past their
//! `expiration`.

use std::collections::BTreeMap;
use std::time::Duration;

use ackemu_kube::api::core::v1::{ConfigMap, Secret};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use sha2::Sha256;

use crate::util::{Now, meta, time};

pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const TOKEN_SECRET_PREFIX: &str = "bootstrap-token-";
pub const JWS_KEY_PREFIX: &str = "jws-kubeconfig-";
pub const CLUSTER_INFO: &str = "cluster-info";
pub const KUBECONFIG_KEY: &str = "kubeconfig";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `jws.ComputeDetachedSignature`.
pub fn detached_signature(content: &str, token_id: &str, token_secret: &str) -> String {
    let header = format!(r#"{{"alg":"HS256","kid":"{token_id}"}}"#);
    let signing_input = format!(
        "{}.{}",
        B64.encode(header.as_bytes()),
        B64.encode(content.as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(format!("{token_id}.{token_secret}").as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(signing_input.as_bytes());
    let sig = B64.encode(mac.finalize().into_bytes());
    format!("{}..{sig}", B64.encode(header.as_bytes()))
}

/// Verifies a detached signature the way a joining node does.
pub fn verify_detached(content: &str, token_id: &str, token_secret: &str, detached: &str) -> bool {
    use subtle_eq::ct_eq;
    ct_eq(
        detached.as_bytes(),
        detached_signature(content, token_id, token_secret).as_bytes(),
    )
}

mod subtle_eq {
    /// Constant-time comparison.
    pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

fn field(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
        return Some(v.clone());
    }
    let v = secret.data.as_ref()?.get(key)?;
    String::from_utf8(v.0.clone()).ok()
}

/// A valid bootstrap token Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub id: String,
    pub secret: String,
    pub expiration: Option<Timestamp>,
    pub signing: bool,
}

fn token_part_ok(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Reads a bootstrap token Secret; `None` when it is not a well-formed one.
pub fn parse_token(secret: &Secret) -> Option<Token> {
    if secret.type_.as_deref() != Some(TOKEN_SECRET_TYPE)
        || meta::namespace(&secret.metadata) != "kube-system"
    {
        return None;
    }
    let id = field(secret, "token-id")?;
    let s = field(secret, "token-secret")?;
    if !token_part_ok(&id, 6) || !token_part_ok(&s, 16) {
        return None;
    }
    if meta::name(&secret.metadata) != format!("{TOKEN_SECRET_PREFIX}{id}") {
        return None;
    }
    let expiration = match field(secret, "expiration") {
        Some(e) => Some(e.parse().ok()?),
        None => None,
    };
    Some(Token {
        id,
        secret: s,
        expiration,
        signing: field(secret, "usage-bootstrap-signing").as_deref() == Some("true"),
    })
}

/// `signConfigMap`: the ConfigMap's data after re-signing, or `None` when
/// nothing changed.
pub fn sign_cluster_info(
    cm: &ConfigMap,
    secrets: &[&Secret],
    now: Now,
) -> Option<BTreeMap<String, String>> {
    let data = cm.data.as_ref()?;
    let content = data.get(KUBECONFIG_KEY)?;
    let mut out: BTreeMap<String, String> = data
        .iter()
        .filter(|(k, _)| !k.starts_with(JWS_KEY_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for t in secrets.iter().filter_map(|s| parse_token(s)) {
        if !t.signing || t.expiration.is_some_and(|e| e <= now.wall) {
            continue;
        }
        out.insert(
            format!("{JWS_KEY_PREFIX}{}", t.id),
            detached_signature(content, &t.id, &t.secret),
        );
    }
    (&out != data).then_some(out)
}

/// The token cleaner's verdict for one Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanDecision {
    Keep,
    /// Delete (uid precondition).
    Delete {
        uid: String,
    },
    /// Look again when it expires.
    RequeueAfter(Duration),
}

/// `evalSecret`.
pub fn clean(secret: &Secret, now: Now) -> CleanDecision {
    if secret.type_.as_deref() != Some(TOKEN_SECRET_TYPE) {
        return CleanDecision::Keep;
    }
    let Some(exp) = field(secret, "expiration").and_then(|e| e.parse::<Timestamp>().ok()) else {
        return CleanDecision::Keep;
    };
    if exp <= now.wall {
        CleanDecision::Delete {
            uid: meta::uid(&secret.metadata).to_owned(),
        }
    } else {
        CleanDecision::RequeueAfter(time::since(exp, now.wall))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::meta as fmeta;
    use k8s_openapi::ByteString;

    fn token(id: &str, secret: &str, signing: bool, expires_s: Option<u64>) -> Secret {
        let mut d = BTreeMap::from([
            ("token-id".to_string(), ByteString(id.as_bytes().to_vec())),
            (
                "token-secret".to_string(),
                ByteString(secret.as_bytes().to_vec()),
            ),
            (
                "usage-bootstrap-authentication".to_string(),
                ByteString(b"true".to_vec()),
            ),
        ]);
        if signing {
            d.insert(
                "usage-bootstrap-signing".into(),
                ByteString(b"true".to_vec()),
            );
        }
        if let Some(e) = expires_s {
            d.insert(
                "expiration".into(),
                ByteString(time::wall_at_secs(e).to_string().into_bytes()),
            );
        }
        Secret {
            metadata: fmeta("kube-system", &format!("{TOKEN_SECRET_PREFIX}{id}")),
            type_: Some(TOKEN_SECRET_TYPE.into()),
            data: Some(d),
            ..Default::default()
        }
    }

    fn cluster_info(extra: &[(&str, &str)]) -> ConfigMap {
        let mut data = BTreeMap::from([(
            KUBECONFIG_KEY.to_string(),
            "apiVersion: v1\nclusters: []\n".to_string(),
        )]);
        for (k, v) in extra {
            data.insert(k.to_string(), v.to_string());
        }
        ConfigMap {
            metadata: fmeta("kube-public", CLUSTER_INFO),
            data: Some(data),
            ..Default::default()
        }
    }

    #[test]
    fn jws_matches_a_known_vector() {
        // Computed independently with
        // `openssl dgst -sha256 -hmac abcdef.0123456789abcdef` over
        // "<base64url header>.<base64url "hello">".
        let sig = detached_signature("hello", "abcdef", "0123456789abcdef");
        assert_eq!(
            sig,
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..1YKZyvDPfBemGGAy4I6fY-EuFZM-D15UJNRd-3NRdho"
        );
        assert!(verify_detached("hello", "abcdef", "0123456789abcdef", &sig));
        assert!(
            !verify_detached("hello!", "abcdef", "0123456789abcdef", &sig),
            "forged content"
        );
        assert!(
            !verify_detached("hello", "abcdef", "0123456789abcdeg", &sig),
            "wrong token"
        );
    }

    #[test]
    fn signer_table() {
        let good = token("abcdef", "0123456789abcdef", true, Some(1000));
        let no_sign = token("bbbbbb", "0123456789abcdef", false, None);
        let expired = token("cccccc", "0123456789abcdef", true, Some(10));
        let cm = cluster_info(&[("jws-kubeconfig-zzzzzz", "stale")]);
        let data = sign_cluster_info(&cm, &[&good, &no_sign, &expired], Now::at_secs(100)).unwrap();
        let keys: Vec<&str> = data.keys().map(String::as_str).collect();
        assert_eq!(keys, vec!["jws-kubeconfig-abcdef", KUBECONFIG_KEY]);
        let content = &data[KUBECONFIG_KEY];
        assert!(verify_detached(
            content,
            "abcdef",
            "0123456789abcdef",
            &data["jws-kubeconfig-abcdef"]
        ));
        // Signed already: no update.
        let signed = ConfigMap {
            data: Some(data),
            ..cm
        };
        assert_eq!(
            sign_cluster_info(&signed, &[&good], Now::at_secs(100)),
            None
        );
        // Malformed names and ids are ignored.
        let mut bad = token("abcdef", "0123456789abcdef", true, None);
        bad.metadata.name = Some("bootstrap-token-other".into());
        assert_eq!(parse_token(&bad), None);
    }

    #[test]
    fn cleaner_table() {
        assert_eq!(
            clean(
                &token("abcdef", "0123456789abcdef", true, Some(100)),
                Now::at_secs(100)
            ),
            CleanDecision::Delete {
                uid: "uid-bootstrap-token-abcdef".into()
            }
        );
        assert_eq!(
            clean(
                &token("abcdef", "0123456789abcdef", true, Some(100)),
                Now::at_secs(40)
            ),
            CleanDecision::RequeueAfter(Duration::from_secs(60))
        );
        assert_eq!(
            clean(
                &token("abcdef", "0123456789abcdef", true, None),
                Now::at_secs(40)
            ),
            CleanDecision::Keep
        );
    }
}
