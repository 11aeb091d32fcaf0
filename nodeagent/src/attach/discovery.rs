//! Token discovery (kubeadm's `discovery/token`): `cluster-info` fetched
//! without trusting the server, its detached JWS verified with the
//! bootstrap token before the CA inside is believed, and the CA optionally
//! pinned by the SHA-256 of its SubjectPublicKeyInfo.

use base64::Engine as _;
use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A bootstrap token `<id>.<secret>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// 6 characters `[a-z0-9]`.
    pub id: String,
    /// 16 characters `[a-z0-9]`.
    pub secret: String,
}

impl Token {
    /// Parse, with kubeadm's error text.
    pub fn parse(s: &str) -> Result<Token, String> {
        let ok = |p: &str, n: usize| {
            p.len() == n
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        match s.split_once('.') {
            Some((id, secret)) if ok(id, 6) && ok(secret, 16) => Ok(Token {
                id: id.into(),
                secret: secret.into(),
            }),
            _ => Err(format!(
                "the bootstrap token {s:?} was not of the form \"^([a-z0-9]{{6}})\\.([a-z0-9]{{16}})$\""
            )),
        }
    }

    /// `<id>.<secret>`.
    pub fn full(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Verify a detached JWS (`<header>..<signature>`) over `content`: the
/// header must be HS256 with `kid` = the token id, the HMAC-SHA256 key is
/// the whole token, the payload the content (base64url, not carried).
pub fn verify_jws(detached: &str, content: &str, token: &Token) -> Result<(), String> {
    let bad = || {
        "failed to verify JWS signature of received cluster info object, can't trust this API Server".to_string()
    };
    let mut parts = detached.split('.');
    let (Some(h), Some(""), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let header: serde_json::Value = B64URL
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(bad)?;
    if header["alg"] != "HS256" || header["kid"] != token.id.as_str() {
        return Err(bad());
    }
    let signing_input = format!("{h}.{}", B64URL.encode(content.as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(token.full().as_bytes()).map_err(|_| bad())?;
    mac.update(signing_input.as_bytes());
    let want = B64URL.encode(mac.finalize().into_bytes());
    if ct_eq(want.as_bytes(), sig.as_bytes()) {
        Ok(())
    } else {
        Err(bad())
    }
}

/// What a verified `cluster-info` kubeconfig says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// `clusters[0].cluster.server`.
    pub server: String,
    /// The CA (PEM).
    pub ca_pem: String,
}

/// Read the first cluster of a kubeconfig.
pub fn parse_kubeconfig(text: &str) -> Result<ClusterInfo, String> {
    let doc: serde_json::Value =
        serde_yaml::from_str(text).map_err(|e| format!("cluster-info kubeconfig: {e}"))?;
    let c = &doc["clusters"][0]["cluster"];
    let server = c["server"]
        .as_str()
        .ok_or("cluster-info kubeconfig has no clusters[0].cluster.server")?
        .to_string();
    let ca = c["certificate-authority-data"]
        .as_str()
        .ok_or("cluster-info kubeconfig has no certificate-authority-data")?;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .map_err(|e| format!("cluster-info certificate-authority-data: {e}"))?;
    let ca_pem = String::from_utf8(ca)
        .map_err(|_| "cluster-info certificate-authority-data is not PEM".to_string())?;
    Ok(ClusterInfo { server, ca_pem })
}

/// `sha256:<hex>` of the SubjectPublicKeyInfo of every certificate in `ca_pem`.
pub fn ca_hashes(ca_pem: &str) -> Result<Vec<String>, String> {
    let certs = ackemu_base::pki::certs_from_pem(ca_pem).map_err(|e| e.to_string())?;
    certs
        .iter()
        .map(|der| {
            let (_, c) = x509_parser::parse_x509_certificate(der)
                .map_err(|e| format!("parsing the cluster CA: {e}"))?;
            Ok(format!(
                "sha256:{}",
                hex::encode(Sha256::digest(c.tbs_certificate.subject_pki.raw))
            ))
        })
        .collect()
}

/// Check `--discovery-token-ca-cert-hash` pins (none: nothing to check).
pub fn check_pins(ca_pem: &str, pins: &[String]) -> Result<(), String> {
    if pins.is_empty() {
        return Ok(());
    }
    for p in pins {
        if !p.starts_with("sha256:") || p.len() != 7 + 64 {
            return Err(format!(
                "invalid hash {p:?}, expected \"format:value\" with format sha256 and 64 hex digits"
            ));
        }
    }
    let got = ca_hashes(ca_pem)?;
    if got
        .iter()
        .any(|h| pins.iter().any(|p| p.eq_ignore_ascii_case(h)))
    {
        Ok(())
    } else {
        Err(format!(
            "cluster CA found in cluster-info ConfigMap is not trusted: public key {} not pinned",
            got.first().cloned().unwrap_or_default()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_like_kubeadm() {
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(
            (t.id.as_str(), t.secret.as_str()),
            ("abcdef", "0123456789abcdef")
        );
        for bad in [
            "abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123",
        ] {
            let e = Token::parse(bad).unwrap_err();
            assert!(e.contains("was not of the form"), "{e}");
        }
    }

    #[test]
    fn jws_agrees_with_the_bootstrap_signer() {
        // The vector of controller-manager's bootstrap signer (computed
        // with `openssl dgst -sha256 -hmac abcdef.0123456789abcdef`).
        let sig =
            "eyJhbGciOiJIUzI1NiIsImtpZCI6ImFiY2RlZiJ9..1YKZyvDPfBemGGAy4I6fY-EuFZM-D15UJNRd-3NRdho";
        let t = Token::parse("abcdef.0123456789abcdef").unwrap();
        assert_eq!(verify_jws(sig, "hello", &t), Ok(()));
        let e = verify_jws(sig, "hello!", &t).unwrap_err();
        assert_eq!(
            e,
            "failed to verify JWS signature of received cluster info object, can't trust this API Server"
        );
        let wrong = Token::parse("abcdef.0123456789abcdeg").unwrap();
        assert!(verify_jws(sig, "hello", &wrong).is_err());
        let other_id = Token::parse("bbbbbb.0123456789abcdef").unwrap();
        assert!(
            verify_jws(sig, "hello", &other_id).is_err(),
            "kid must match"
        );
        assert!(verify_jws("garbage", "hello", &t).is_err());
    }

    #[test]
    fn pins_match_the_ca_public_key() {
        let (clock, _) = ackemu_base::clock::Clock::manual(1_700_000_000_000);
        let ca = ackemu_base::pki::Ca::generate(
            "kubernetes",
            &clock,
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let h = ca_hashes(ca.cert_pem()).unwrap();
        assert_eq!(h.len(), 1);
        assert!(check_pins(ca.cert_pem(), &[]).is_ok());
        assert!(check_pins(ca.cert_pem(), &h).is_ok());
        let other = format!("sha256:{}", "0".repeat(64));
        let e = check_pins(ca.cert_pem(), &[other]).unwrap_err();
        assert!(e.contains("not pinned"), "{e}");
        assert!(check_pins(ca.cert_pem(), &["md5:00".into()]).is_err());
    }
}
