//! Bearer tokens: service-account JWTs (ES256, signed with the cluster's
//! service-account key, both the bound-token claims of TokenRequest and the
//! legacy secret-based claims), and bootstrap tokens (`<id>.<secret>`
//! backed by `bootstrap-token-<id>` Secrets in kube-system). Expiry is
//! checked against the cluster clock.

use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::rbac::UserInfo;

/// The issuer of bound tokens.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The issuer of legacy secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct KubeClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<ObjectRef>,
}

/// The claims of a bound service-account token.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub aud: Vec<String>,
    #[serde(default)]
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
    #[serde(default)]
    pub nbf: i64,
    pub iss: String,
    pub sub: String,
    #[serde(default)]
    pub jti: String,
    #[serde(
        rename = "kubernetes.io",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub kube: Option<KubeClaims>,
}

/// Who a verified service-account token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountRef {
    pub namespace: String,
    pub name: String,
    /// Empty when the token does not carry one.
    pub uid: String,
}

impl ServiceAccountRef {
    pub fn user(&self) -> UserInfo {
        UserInfo::authenticated(
            &format!("system:serviceaccount:{}:{}", self.namespace, self.name),
            &[
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{}", self.namespace),
            ],
        )
    }
}

/// Signs and verifies service-account tokens.
pub struct TokenSigner {
    enc: EncodingKey,
    dec: DecodingKey,
    /// PEM of the public key (what other verifiers need).
    pub public_pem: String,
}

impl TokenSigner {
    /// Loads `sa.key` (PKCS#8 EC P-256) from `dir`, or creates it with `sa.pub`.
    pub fn load_or_create(dir: &Path) -> anyhow::Result<Self> {
        let key_path = dir.join("sa.key");
        let key = if key_path.exists() {
            let pem = std::fs::read_to_string(&key_path)
                .with_context(|| format!("reading {}", key_path.display()))?;
            rcgen::KeyPair::from_pem(&pem).context("parsing the service-account key")?
        } else {
            let key = rcgen::KeyPair::generate().context("generating the service-account key")?;
            ackemu_base::pki::write_private(&key_path, &key.serialize_pem())?;
            ackemu_base::pki::write_private(&dir.join("sa.pub"), &key.public_key_pem())?;
            key
        };
        let public_pem = key.public_key_pem();
        Ok(Self {
            enc: EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())
                .context("service-account signing key")?,
            dec: DecodingKey::from_ec_pem(public_pem.as_bytes())
                .context("service-account verification key")?,
            public_pem,
        })
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            claims,
            &self.enc,
        )?)
    }

    /// Verifies signature, issuer, audience and validity at `now_unix`.
    pub fn verify(
        &self,
        token: &str,
        now_unix: i64,
        audiences: &[&str],
    ) -> Result<ServiceAccountRef, String> {
        let mut v = Validation::new(Algorithm::ES256);
        v.validate_exp = false;
        v.validate_nbf = false;
        v.validate_aud = false;
        v.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<Value>(token, &self.dec, &v)
            .map_err(|e| format!("invalid token: {e}"))?;
        let c = data.claims;
        match c["iss"].as_str() {
            Some(ISSUER) => {
                let claims: Claims =
                    serde_json::from_value(c).map_err(|e| format!("invalid claims: {e}"))?;
                if claims.exp != 0 && now_unix >= claims.exp {
                    return Err("token has expired".to_owned());
                }
                if claims.nbf != 0 && now_unix < claims.nbf {
                    return Err("token is not valid yet".to_owned());
                }
                if !claims.aud.iter().any(|a| audiences.contains(&a.as_str())) {
                    return Err("token audiences do not match the server's".to_owned());
                }
                let kube = claims.kube.ok_or("token lacks kubernetes.io claims")?;
                Ok(ServiceAccountRef {
                    namespace: kube.namespace,
                    name: kube.serviceaccount.name,
                    uid: kube.serviceaccount.uid,
                })
            }
            Some(LEGACY_ISSUER) => {
                let s = |k: &str| c[k].as_str().unwrap_or("").to_owned();
                Ok(ServiceAccountRef {
                    namespace: s("kubernetes.io/serviceaccount/namespace"),
                    name: s("kubernetes.io/serviceaccount/service-account.name"),
                    uid: s("kubernetes.io/serviceaccount/service-account.uid"),
                })
            }
            other => Err(format!("token issuer {other:?} is not trusted")),
        }
    }
}

/// Splits a bootstrap token `<6 chars>.<16 chars>` into (id, secret).
pub fn parse_bootstrap_token(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.split_once('.')?;
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    (ok(id, 6) && ok(secret, 16)).then_some((id, secret))
}

fn secret_field(secret: &Value, key: &str) -> Option<String> {
    let raw = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(raw).ok()?;
    String::from_utf8(bytes).ok()
}

/// Authenticates a bootstrap token against its Secret (`system:bootstrap:<id>`,
/// `system:bootstrappers` plus the Secret's extra groups).
pub fn bootstrap_user(
    secret: &Value,
    id: &str,
    token_secret: &str,
    now_unix: i64,
) -> Result<UserInfo, String> {
    if secret["type"].as_str() != Some("bootstrap.kubernetes.io/token") {
        return Err("secret is not a bootstrap token".to_owned());
    }
    if secret_field(secret, "token-id").as_deref() != Some(id)
        || secret_field(secret, "token-secret").as_deref() != Some(token_secret)
    {
        return Err("bootstrap token does not match".to_owned());
    }
    if secret_field(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err("bootstrap token is not usable for authentication".to_owned());
    }
    if let Some(exp) = secret_field(secret, "expiration") {
        let t: jiff::Timestamp = exp
            .parse()
            .map_err(|_| "bootstrap token has an invalid expiration".to_owned())?;
        if now_unix >= t.as_second() {
            return Err("bootstrap token has expired".to_owned());
        }
    }
    let mut groups = vec!["system:bootstrappers".to_owned()];
    if let Some(extra) = secret_field(secret, "auth-extra-groups") {
        groups.extend(
            extra
                .split(',')
                .map(str::trim)
                .filter(|g| g.starts_with("system:bootstrappers:"))
                .map(str::to_owned),
        );
    }
    Ok(UserInfo::authenticated(
        &format!("system:bootstrap:{id}"),
        &groups,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(exp: i64, aud: &str) -> Claims {
        Claims {
            aud: vec![aud.to_owned()],
            exp,
            iat: 1000,
            nbf: 1000,
            iss: ISSUER.to_owned(),
            sub: "system:serviceaccount:default:app".to_owned(),
            jti: "j".to_owned(),
            kube: Some(KubeClaims {
                namespace: "default".to_owned(),
                serviceaccount: ObjectRef {
                    name: "app".to_owned(),
                    uid: "u1".to_owned(),
                },
                pod: None,
                node: None,
            }),
        }
    }

    #[test]
    fn service_account_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let s = TokenSigner::load_or_create(dir.path()).unwrap();
        let t = s.sign(&claims(5000, ISSUER)).unwrap();
        let sa = s.verify(&t, 2000, &[ISSUER]).unwrap();
        assert_eq!(
            sa,
            ServiceAccountRef {
                namespace: "default".into(),
                name: "app".into(),
                uid: "u1".into()
            }
        );
        assert_eq!(sa.user().name, "system:serviceaccount:default:app");
        assert!(
            sa.user()
                .groups
                .contains(&"system:serviceaccounts:default".to_owned())
        );
        assert_eq!(
            s.verify(&t, 5000, &[ISSUER]).unwrap_err(),
            "token has expired"
        );
        assert_eq!(
            s.verify(&t, 10, &[ISSUER]).unwrap_err(),
            "token is not valid yet"
        );
        assert!(s.verify(&t, 2000, &["other"]).is_err());
        // The same key reloads from disk; a different key rejects.
        let again = TokenSigner::load_or_create(dir.path()).unwrap();
        assert!(again.verify(&t, 2000, &[ISSUER]).is_ok());
        let other = TokenSigner::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(other.verify(&t, 2000, &[ISSUER]).is_err());
        assert!(s.verify("not.a.jwt", 2000, &[ISSUER]).is_err());
        let legacy = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &json!({"iss": LEGACY_ISSUER, "sub": "system:serviceaccount:kube-system:default",
                    "kubernetes.io/serviceaccount/namespace": "kube-system",
                    "kubernetes.io/serviceaccount/service-account.name": "default",
                    "kubernetes.io/serviceaccount/service-account.uid": "u2"}),
            &s.enc,
        )
        .unwrap();
        assert_eq!(
            s.verify(&legacy, 2000, &[ISSUER]).unwrap().namespace,
            "kube-system"
        );
    }

    #[test]
    fn bootstrap_tokens() {
        assert_eq!(
            parse_bootstrap_token("abcdef.0123456789abcdef"),
            Some(("abcdef", "0123456789abcdef"))
        );
        for bad in [
            "abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
        ] {
            assert_eq!(parse_bootstrap_token(bad), None, "{bad}");
        }
        let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = json!({"type": "bootstrap.kubernetes.io/token", "data": {
            "token-id": b("abcdef"), "token-secret": b("0123456789abcdef"),
            "usage-bootstrap-authentication": b("true"), "expiration": b("2020-09-22T12:33:24Z"),
            "auth-extra-groups": b("system:bootstrappers:kubeadm:default-node-token")}});
        let u = bootstrap_user(&secret, "abcdef", "0123456789abcdef", 1_600_000_000).unwrap();
        assert_eq!(u.name, "system:bootstrap:abcdef");
        assert!(u.groups.contains(&"system:bootstrappers".to_owned()));
        assert!(
            u.groups
                .contains(&"system:bootstrappers:kubeadm:default-node-token".to_owned())
        );
        assert_eq!(
            bootstrap_user(&secret, "abcdef", "0123456789abcdee", 1_600_000_000).unwrap_err(),
            "bootstrap token does not match"
        );
        assert_eq!(
            bootstrap_user(&secret, "abcdef", "0123456789abcdef", 1_700_000_000).unwrap_err(),
            "bootstrap token has expired"
        );
    }
}
