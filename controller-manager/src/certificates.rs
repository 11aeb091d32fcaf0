//! CSR approving and signing (`pkg/controller/certificates/approver`,
//! `.../signer`): node client certificates requested during bootstrap
//! (`system:bootstrap:<id>` asking for `system:node:<name>` in
//! `system:nodes`) or by a node renewing its own are approved after a
//! SubjectAccessReview for `certificatesigningrequests/nodeclient` or
//! `/selfnodeclient`; approved requests for the built-in signers are
//! signed by the cluster CA for at most the signing duration.

use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::pki::{Ca, Usage};
use ackemu_kube::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition, CertificateSigningRequestStatus,
};
use ackemu_kube::meta::Time;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use crate::util::Now;

pub const SIGNER_KUBELET_CLIENT: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const SIGNER_KUBELET_SERVING: &str = "kubernetes.io/kubelet-serving";
pub const SIGNER_APISERVER_CLIENT: &str = "kubernetes.io/kube-apiserver-client";
/// `--cluster-signing-duration` default: one year.
pub const DEFAULT_SIGNING_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// The shortest certificate a signer issues (`expirationSeconds` floor).
pub const MIN_DURATION: Duration = Duration::from_secs(600);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error("PEM block type must be CERTIFICATE REQUEST")]
    NotPem,
    #[error("unable to parse certificate request: {0}")]
    Parse(String),
    #[error("{0}")]
    Invalid(String),
}

/// The subject and names of a parsed request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<String>,
    pub emails: Vec<String>,
    pub uris: Vec<String>,
}

/// Parses the PEM `CERTIFICATE REQUEST` of a CSR.
pub fn parse_request(pem: &[u8]) -> Result<Request, CsrError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| CsrError::NotPem)?;
    if p.label != "CERTIFICATE REQUEST" && p.label != "NEW CERTIFICATE REQUEST" {
        return Err(CsrError::NotPem);
    }
    let (_, cr) = X509CertificationRequest::from_der(&p.contents)
        .map_err(|e| CsrError::Parse(e.to_string()))?;
    let subject = &cr.certification_request_info.subject;
    let mut r = Request {
        common_name: subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .next()
            .unwrap_or_default()
            .to_owned(),
        organizations: subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect(),
        ..Default::default()
    };
    for ext in cr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for n in &san.general_names {
                match n {
                    GeneralName::DNSName(d) => r.dns_names.push(d.to_string()),
                    GeneralName::RFC822Name(e) => r.emails.push(e.to_string()),
                    GeneralName::URI(u) => r.uris.push(u.to_string()),
                    GeneralName::IPAddress(ip) => r.ip_addresses.push(format!("{ip:?}")),
                    _ => {}
                }
            }
        }
    }
    Ok(r)
}

fn usages(csr: &CertificateSigningRequest) -> Vec<String> {
    csr.spec.usages.clone().unwrap_or_default()
}

fn has_condition(csr: &CertificateSigningRequest, t: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == t && c.status == "True"))
}

pub fn is_approved(csr: &CertificateSigningRequest) -> bool {
    has_condition(csr, "Approved")
}

pub fn is_decided(csr: &CertificateSigningRequest) -> bool {
    has_condition(csr, "Approved") || has_condition(csr, "Denied")
}

fn usage_set(u: &[String]) -> std::collections::BTreeSet<&str> {
    u.iter().map(String::as_str).collect()
}

/// `ValidateKubeletClientCSR`.
pub fn validate_kubelet_client(req: &Request, u: &[String]) -> Result<(), CsrError> {
    if req.organizations != ["system:nodes"] {
        return Err(CsrError::Invalid(
            "subject organization is not system:nodes".into(),
        ));
    }
    if !req.common_name.starts_with("system:node:") {
        return Err(CsrError::Invalid(
            "subject common name does not begin with system:node:".into(),
        ));
    }
    if !req.dns_names.is_empty()
        || !req.emails.is_empty()
        || !req.ip_addresses.is_empty()
        || !req.uris.is_empty()
    {
        return Err(CsrError::Invalid(
            "DNS, email, IP or URI subjectAltNames are not allowed".into(),
        ));
    }
    let got = usage_set(u);
    let required: std::collections::BTreeSet<&str> = ["digital signature", "client auth"].into();
    let legacy: std::collections::BTreeSet<&str> =
        ["key encipherment", "digital signature", "client auth"].into();
    if got != required && got != legacy {
        return Err(CsrError::Invalid(format!(
            "usages did not match {:?}",
            required.iter().collect::<Vec<_>>()
        )));
    }
    Ok(())
}

/// `ValidateKubeletServingCSR`.
pub fn validate_kubelet_serving(req: &Request, u: &[String]) -> Result<(), CsrError> {
    if req.organizations != ["system:nodes"] {
        return Err(CsrError::Invalid(
            "subject organization is not system:nodes".into(),
        ));
    }
    if !req.common_name.starts_with("system:node:") {
        return Err(CsrError::Invalid(
            "subject common name does not begin with system:node:".into(),
        ));
    }
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err(CsrError::Invalid(
            "DNS or IP subjectAltName is required".into(),
        ));
    }
    if !req.emails.is_empty() || !req.uris.is_empty() {
        return Err(CsrError::Invalid(
            "email and URI subjectAltNames are not allowed".into(),
        ));
    }
    let got = usage_set(u);
    let ok = [
        vec!["digital signature", "server auth"],
        vec!["key encipherment", "digital signature", "server auth"],
    ]
    .iter()
    .any(|v| got == v.iter().copied().collect());
    if !ok {
        return Err(CsrError::Invalid(
            "usages did not match [digital signature server auth]".into(),
        ));
    }
    Ok(())
}

/// Which SubjectAccessReview a recognized request needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recognized {
    /// `nodeclient` or `selfnodeclient`.
    pub subresource: &'static str,
    pub message: &'static str,
}

/// The approver's recognizers: `None` when the request is not a node
/// client certificate (or is decided already).
pub fn recognize(csr: &CertificateSigningRequest) -> Option<Recognized> {
    if is_decided(csr) || csr.spec.signer_name != SIGNER_KUBELET_CLIENT {
        return None;
    }
    let req = parse_request(&csr.spec.request.0).ok()?;
    validate_kubelet_client(&req, &usages(csr)).ok()?;
    if csr.spec.username.as_deref() == Some(req.common_name.as_str()) {
        Some(Recognized {
            subresource: "selfnodeclient",
            message: "Auto approving self kubelet client certificate after SubjectAccessReview.",
        })
    } else {
        Some(Recognized {
            subresource: "nodeclient",
            message: "Auto approving kubelet client certificate after SubjectAccessReview.",
        })
    }
}

/// The status to write with `UpdateApproval` once the review allowed it.
pub fn approve(
    csr: &CertificateSigningRequest,
    r: &Recognized,
    now: Now,
) -> CertificateSigningRequestStatus {
    let mut st = csr.status.clone().unwrap_or_default();
    st.conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some("AutoApproved".into()),
            message: Some(r.message.into()),
            last_update_time: Some(Time(now.wall)),
            last_transition_time: Some(Time(now.wall)),
        });
    st
}

/// A signer's request validation.
type Validator = fn(&Request, &[String]) -> Result<(), CsrError>;

/// What the signer does with a request.
#[derive(Clone, Debug, PartialEq)]
pub enum SignDecision {
    /// Not ours, not approved, or already issued/failed.
    Skip,
    Sign {
        usage: Usage,
        validity: Duration,
    },
    /// Mark Failed (`SignerValidationFailure`) with this status.
    Fail(Box<CertificateSigningRequestStatus>),
}

/// The signer's decision for one request.
pub fn sign_decision(
    csr: &CertificateSigningRequest,
    signing_duration: Duration,
    now: Now,
) -> SignDecision {
    let st = csr.status.as_ref();
    let issued = st
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if !is_approved(csr) || has_condition(csr, "Failed") || issued {
        return SignDecision::Skip;
    }
    let (validate, usage): (Validator, Usage) = match csr.spec.signer_name.as_str() {
        SIGNER_KUBELET_CLIENT => (validate_kubelet_client, Usage::Client),
        SIGNER_KUBELET_SERVING => (validate_kubelet_serving, Usage::Server),
        SIGNER_APISERVER_CLIENT => (
            |_, u| {
                if u.iter().any(|x| x == "client auth") {
                    Ok(())
                } else {
                    Err(CsrError::Invalid("usages must include client auth".into()))
                }
            },
            Usage::Client,
        ),
        _ => return SignDecision::Skip,
    };
    let checked = parse_request(&csr.spec.request.0).and_then(|r| validate(&r, &usages(csr)));
    if let Err(e) = checked {
        let mut st = csr.status.clone().unwrap_or_default();
        st.conditions
            .get_or_insert_with(Vec::new)
            .push(CertificateSigningRequestCondition {
                type_: "Failed".into(),
                status: "True".into(),
                reason: Some("SignerValidationFailure".into()),
                message: Some(e.to_string()),
                last_update_time: Some(Time(now.wall)),
                last_transition_time: Some(Time(now.wall)),
            });
        return SignDecision::Fail(Box::new(st));
    }
    let mut validity = signing_duration;
    if let Some(s) = csr.spec.expiration_seconds {
        validity = validity
            .min(Duration::from_secs(s.max(0) as u64))
            .max(MIN_DURATION);
    }
    SignDecision::Sign { usage, validity }
}

/// Performs a `Sign` decision with the cluster CA: the status carrying the
/// certificate.
pub fn issue(
    ca: &Ca,
    csr: &CertificateSigningRequest,
    usage: Usage,
    validity: Duration,
    clock: &Clock,
) -> Result<CertificateSigningRequestStatus, ackemu_base::pki::PkiError> {
    let pem = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let cert = ca.sign_csr(&pem, usage, validity, clock)?;
    let mut st = csr.status.clone().unwrap_or_default();
    st.certificate = Some(k8s_openapi::ByteString(cert.into_bytes()));
    Ok(st)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ackemu_kube::api::certificates::v1::CertificateSigningRequestSpec;

    fn csr(
        cn: &str,
        org: &str,
        username: &str,
        signer: &str,
        u: &[&str],
    ) -> CertificateSigningRequest {
        let (pem, _key) = ackemu_base::pki::make_csr(cn, &[org]).unwrap();
        CertificateSigningRequest {
            metadata: crate::fixtures::meta("", "node-csr-abc"),
            spec: CertificateSigningRequestSpec {
                request: k8s_openapi::ByteString(pem.into_bytes()),
                signer_name: signer.into(),
                usages: Some(u.iter().map(|s| s.to_string()).collect()),
                username: Some(username.into()),
                groups: Some(vec!["system:bootstrappers".into()]),
                ..Default::default()
            },
            status: None,
        }
    }

    const CLIENT: &[&str] = &["digital signature", "key encipherment", "client auth"];

    #[test]
    fn recognizer_table() {
        let cases = [
            (
                "bootstrap",
                csr(
                    "system:node:n1",
                    "system:nodes",
                    "system:bootstrap:abcdef",
                    SIGNER_KUBELET_CLIENT,
                    CLIENT,
                ),
                Some("nodeclient"),
            ),
            (
                "renewal",
                csr(
                    "system:node:n1",
                    "system:nodes",
                    "system:node:n1",
                    SIGNER_KUBELET_CLIENT,
                    CLIENT,
                ),
                Some("selfnodeclient"),
            ),
            (
                "wrong org",
                csr(
                    "system:node:n1",
                    "system:masters",
                    "system:bootstrap:abcdef",
                    SIGNER_KUBELET_CLIENT,
                    CLIENT,
                ),
                None,
            ),
            (
                "wrong cn",
                csr(
                    "admin",
                    "system:nodes",
                    "system:bootstrap:abcdef",
                    SIGNER_KUBELET_CLIENT,
                    CLIENT,
                ),
                None,
            ),
            (
                "server usage",
                csr(
                    "system:node:n1",
                    "system:nodes",
                    "system:bootstrap:abcdef",
                    SIGNER_KUBELET_CLIENT,
                    &["digital signature", "server auth"],
                ),
                None,
            ),
            (
                "other signer",
                csr(
                    "system:node:n1",
                    "system:nodes",
                    "system:bootstrap:abcdef",
                    SIGNER_APISERVER_CLIENT,
                    CLIENT,
                ),
                None,
            ),
        ];
        for (name, c, want) in cases {
            assert_eq!(recognize(&c).map(|r| r.subresource), want, "{name}");
        }
    }

    #[test]
    fn approve_then_sign() {
        let c = csr(
            "system:node:n1",
            "system:nodes",
            "system:bootstrap:abcdef",
            SIGNER_KUBELET_CLIENT,
            CLIENT,
        );
        assert_eq!(
            sign_decision(&c, DEFAULT_SIGNING_DURATION, Now::at_secs(0)),
            SignDecision::Skip,
            "not approved yet"
        );
        let r = recognize(&c).unwrap();
        let mut approved = c.clone();
        approved.status = Some(approve(&c, &r, Now::at_secs(1)));
        let cond = &approved
            .status
            .as_ref()
            .unwrap()
            .conditions
            .as_ref()
            .unwrap()[0];
        assert_eq!(
            (cond.reason.as_deref(), cond.message.as_deref()),
            (
                Some("AutoApproved"),
                Some("Auto approving kubelet client certificate after SubjectAccessReview.")
            )
        );
        assert!(
            recognize(&approved).is_none(),
            "decided requests are left alone"
        );
        let mut short = approved.clone();
        short.spec.expiration_seconds = Some(60);
        assert_eq!(
            sign_decision(&short, DEFAULT_SIGNING_DURATION, Now::at_secs(1)),
            SignDecision::Sign {
                usage: Usage::Client,
                validity: MIN_DURATION
            }
        );
        let SignDecision::Sign { usage, validity } =
            sign_decision(&approved, DEFAULT_SIGNING_DURATION, Now::at_secs(1))
        else {
            panic!()
        };
        assert_eq!(validity, DEFAULT_SIGNING_DURATION);
        let (clock, _m) = Clock::manual(crate::util::time::TEST_EPOCH_UNIX_S * 1000);
        let ca = Ca::generate(
            "kubernetes",
            &clock,
            Duration::from_secs(10 * 365 * 24 * 3600),
        )
        .unwrap();
        let st = issue(&ca, &approved, usage, validity, &clock).unwrap();
        let pem = st.certificate.unwrap().0;
        let der = ackemu_base::pki::certs_from_pem(std::str::from_utf8(&pem).unwrap()).unwrap();
        let id = ackemu_base::pki::identity_of(&der[0]).unwrap();
        assert_eq!(
            (id.common_name.as_str(), id.organizations.as_slice()),
            ("system:node:n1", &["system:nodes".to_string()][..])
        );
    }

    #[test]
    fn invalid_approved_request_fails() {
        let mut c = csr(
            "system:node:n1",
            "system:masters",
            "system:bootstrap:abcdef",
            SIGNER_KUBELET_CLIENT,
            CLIENT,
        );
        c.status = Some(CertificateSigningRequestStatus {
            conditions: Some(vec![CertificateSigningRequestCondition {
                type_: "Approved".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let SignDecision::Fail(st) = sign_decision(&c, DEFAULT_SIGNING_DURATION, Now::at_secs(0))
        else {
            panic!()
        };
        let f = st
            .conditions
            .unwrap()
            .into_iter()
            .find(|c| c.type_ == "Failed")
            .unwrap();
        assert_eq!(
            (f.reason.as_deref(), f.message.as_deref()),
            (
                Some("SignerValidationFailure"),
                Some("subject organization is not system:nodes")
            )
        );
    }
}
