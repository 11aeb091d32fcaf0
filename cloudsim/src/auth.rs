//! Request signing and STS security tokens.
//!
//! **Signature scheme** (documented for clients in other crates): a request
//! for `<product>/<Action>` with parameters `P` carries, as gRPC metadata,
//!
//! | key | value |
//! |---|---|
//! | `x-acs-access-key-id` | the AccessKeyId (`STS.…` for STS credentials) |
//! | `x-acs-timestamp` | cluster wall time, unix milliseconds |
//! | `x-acs-signature-nonce` | any unique string |
//! | `x-acs-security-token` | the STS SecurityToken, only with STS credentials |
//! | `x-acs-signature` | lowercase hex HMAC-SHA256(AccessKeySecret, string-to-sign) |
//!
//! string-to-sign = `ACS3-HMAC-SHA256\n<product>\n<Action>\n<timestamp>\n<nonce>\n<json(P)>`,
//! where `json(P)` is the parameters as a JSON object with keys sorted
//! (serde_json of a `BTreeMap<String,String>`). Timestamps more than 15
//! minutes (cluster time) from the server's clock are refused.
//!
//! **STS security token**: `base64url(json(StsClaims)) "." base64url(HMAC-SHA256(signing key, first part))`.
//! It carries the temporary secret, so the server needs no session table and
//! a restart keeps issued credentials valid until they expire.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::CloudError;

type HmacSha256 = Hmac<Sha256>;

pub const HDR_ACCESS_KEY_ID: &str = "x-acs-access-key-id";
pub const HDR_TIMESTAMP: &str = "x-acs-timestamp";
pub const HDR_NONCE: &str = "x-acs-signature-nonce";
pub const HDR_SECURITY_TOKEN: &str = "x-acs-security-token";
pub const HDR_SIGNATURE: &str = "x-acs-signature";

/// Maximum clock difference between client and server.
pub const MAX_SKEW_MS: i64 = 15 * 60 * 1000;

/// What a client signs with.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_token: Option<String>,
}

/// The authentication part of a request, as received.
#[derive(Debug, Clone, Default)]
pub struct SignedRequest {
    pub access_key_id: Option<String>,
    pub timestamp_ms: Option<String>,
    pub nonce: Option<String>,
    pub security_token: Option<String>,
    pub signature: Option<String>,
}

pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = HmacSha256::new_from_slice(key).expect("hmac accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

pub fn string_to_sign(
    product: &str,
    action: &str,
    timestamp_ms: &str,
    nonce: &str,
    params: &BTreeMap<String, String>,
) -> String {
    let json = serde_json::to_string(params).expect("string map serialises");
    format!("ACS3-HMAC-SHA256\n{product}\n{action}\n{timestamp_ms}\n{nonce}\n{json}")
}

/// Signs a request: returns the metadata pairs to attach.
pub fn sign(
    creds: &Credentials,
    product: &str,
    action: &str,
    params: &BTreeMap<String, String>,
    timestamp_ms: i64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let ts = timestamp_ms.to_string();
    let sts = string_to_sign(product, action, &ts, nonce, params);
    let sig = hex::encode(hmac_sha256(
        creds.access_key_secret.as_bytes(),
        sts.as_bytes(),
    ));
    let mut out = vec![
        (HDR_ACCESS_KEY_ID, creds.access_key_id.clone()),
        (HDR_TIMESTAMP, ts),
        (HDR_NONCE, nonce.to_owned()),
        (HDR_SIGNATURE, sig),
    ];
    if let Some(t) = &creds.security_token {
        out.push((HDR_SECURITY_TOKEN, t.clone()));
    }
    out
}

/// Checks the signature with `secret`; timestamps are cluster wall ms.
pub fn verify_signature(
    req: &SignedRequest,
    secret: &str,
    product: &str,
    action: &str,
    params: &BTreeMap<String, String>,
    now_ms: i64,
) -> Result<(), CloudError> {
    let ts = req
        .timestamp_ms
        .as_deref()
        .ok_or_else(|| CloudError::missing_param("Timestamp"))?;
    let ts_ms: i64 = ts.parse().map_err(|_| {
        CloudError::new(
            "InvalidTimeStamp.Format",
            format!("Specified time stamp {ts:?} is not unix milliseconds."),
            400,
        )
    })?;
    if (now_ms - ts_ms).abs() > MAX_SKEW_MS {
        return Err(CloudError::new(
            "InvalidTimeStamp.Expired",
            format!(
                "Specified time stamp or date value is expired: request at {ts_ms} ms, server at {now_ms} ms."
            ),
            400,
        ));
    }
    let nonce = req
        .nonce
        .as_deref()
        .ok_or_else(|| CloudError::missing_param("SignatureNonce"))?;
    let sig = req
        .signature
        .as_deref()
        .ok_or_else(|| CloudError::missing_param("Signature"))?;
    let sts = string_to_sign(product, action, ts, nonce, params);
    let want = hmac_sha256(secret.as_bytes(), sts.as_bytes());
    let got = hex::decode(sig).unwrap_or_default();
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("hmac key");
    mac.update(sts.as_bytes());
    if got.len() != want.len() || mac.verify_slice(&got).is_err() {
        return Err(CloudError::new(
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation.",
            400,
        ));
    }
    Ok(())
}

/// What an STS security token asserts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StsClaims {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub account_id: String,
    pub role_name: String,
    pub session_name: String,
    pub issued_unix_ms: i64,
    pub expires_unix_ms: i64,
}

pub fn encode_token(claims: &StsClaims, signing_key: &str) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(signing_key.as_bytes(), payload.as_bytes()));
    format!("{payload}.{sig}")
}

/// Decodes and checks a security token (signature, then expiry).
pub fn decode_token(token: &str, signing_key: &str, now_ms: i64) -> Result<StsClaims, CloudError> {
    let malformed = || {
        CloudError::new(
            "InvalidSecurityToken.Malformed",
            "Specified SecurityToken is malformed.",
            400,
        )
    };
    let (payload, sig) = token.split_once('.').ok_or_else(malformed)?;
    let sig = URL_SAFE_NO_PAD.decode(sig).map_err(|_| malformed())?;
    let mut mac = HmacSha256::new_from_slice(signing_key.as_bytes()).expect("hmac key");
    mac.update(payload.as_bytes());
    mac.verify_slice(&sig).map_err(|_| malformed())?;
    let claims: StsClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).map_err(|_| malformed())?)
            .map_err(|_| malformed())?;
    if now_ms >= claims.expires_unix_ms {
        return Err(CloudError::new(
            "InvalidSecurityToken.Expired",
            "Specified SecurityToken is expired.",
            400,
        ));
    }
    Ok(claims)
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    fn params() -> BTreeMap<String, String> {
        BTreeMap::from([
            ("VpcId".to_owned(), "vpc-1".to_owned()),
            ("A".to_owned(), "x=y&z".to_owned()),
        ])
    }

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "LTAI1".into(),
            access_key_secret: "s3cret".into(),
            security_token: None,
        }
    }

    fn req_from(pairs: Vec<(&'static str, String)>) -> SignedRequest {
        let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        SignedRequest {
            access_key_id: get(HDR_ACCESS_KEY_ID),
            timestamp_ms: get(HDR_TIMESTAMP),
            nonce: get(HDR_NONCE),
            security_token: get(HDR_SECURITY_TOKEN),
            signature: get(HDR_SIGNATURE),
        }
    }

    #[test]
    fn signature_table() {
        let good = req_from(sign(
            &creds(),
            "vpc",
            "DescribeVpcs",
            &params(),
            1_000_000,
            "n1",
        ));
        verify_signature(&good, "s3cret", "vpc", "DescribeVpcs", &params(), 1_000_000).unwrap();
        let cases: Vec<(&str, String, &str, BTreeMap<String, String>, i64, &str)> = vec![
            (
                "wrong secret",
                "other".into(),
                "DescribeVpcs",
                params(),
                1_000_000,
                "SignatureDoesNotMatch",
            ),
            (
                "other action",
                "s3cret".into(),
                "DeleteVpc",
                params(),
                1_000_000,
                "SignatureDoesNotMatch",
            ),
            (
                "tampered params",
                "s3cret".into(),
                "DescribeVpcs",
                BTreeMap::new(),
                1_000_000,
                "SignatureDoesNotMatch",
            ),
            (
                "clock skew",
                "s3cret".into(),
                "DescribeVpcs",
                params(),
                1_000_000 + MAX_SKEW_MS + 1,
                "InvalidTimeStamp.Expired",
            ),
        ];
        for (name, secret, action, p, now, code) in cases {
            assert_eq!(
                verify_signature(&good, &secret, "vpc", action, &p, now)
                    .unwrap_err()
                    .code,
                code,
                "{name}"
            );
        }
        let mut missing = good.clone();
        missing.signature = None;
        assert_eq!(
            verify_signature(
                &missing,
                "s3cret",
                "vpc",
                "DescribeVpcs",
                &params(),
                1_000_000
            )
            .unwrap_err()
            .code,
            "MissingSignature"
        );
    }

    #[test]
    fn sts_token_round_trip_and_expiry() {
        let claims = StsClaims {
            access_key_id: "STS.abc".into(),
            access_key_secret: "tmp".into(),
            account_id: "1".into(),
            role_name: "KubernetesWorkerRole".into(),
            session_name: "s".into(),
            issued_unix_ms: 0,
            expires_unix_ms: 3_600_000,
        };
        let t = encode_token(&claims, "key");
        assert_eq!(decode_token(&t, "key", 3_599_999).unwrap(), claims);
        assert_eq!(
            decode_token(&t, "key", 3_600_000).unwrap_err().code,
            "InvalidSecurityToken.Expired"
        );
        assert_eq!(
            decode_token(&t, "other", 0).unwrap_err().code,
            "InvalidSecurityToken.Malformed"
        );
        assert_eq!(
            decode_token("garbage", "key", 0).unwrap_err().code,
            "InvalidSecurityToken.Malformed"
        );
    }
}
