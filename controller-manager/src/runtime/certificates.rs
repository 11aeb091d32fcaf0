//! Drives [`crate::certificates`]: the approver asks the API server for a
//! SubjectAccessReview, the signer uses the cluster CA.

use std::sync::Arc;
use std::time::Duration;

use ackemu_base::pki::Ca;
use ackemu_kube::api::certificates::v1::CertificateSigningRequest;
use serde_json::json;

use super::informer::Change;
use super::rest;
use super::{Ctx, Next, Queue};
use crate::certificates::{SignDecision, approve, issue, recognize, sign_decision};
use crate::util::meta;

async fn allowed(
    ctx: &Ctx,
    csr: &CertificateSigningRequest,
    subresource: &str,
) -> Result<bool, String> {
    let s = &csr.spec;
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {
            "user": s.username, "groups": s.groups, "uid": s.uid, "extra": s.extra,
            "resourceAttributes": {"group": "certificates.k8s.io", "resource": "certificatesigningrequests", "verb": "create", "subresource": subresource},
        },
    });
    let v = ctx
        .client
        .request(
            "POST",
            "/apis/authorization.k8s.io/v1/subjectaccessreviews",
            Some(("application/json", review.to_string().into_bytes())),
        )
        .await
        .map_err(|e| format!("subjectaccessreview: {e}"))?;
    Ok(v["status"]["allowed"].as_bool().unwrap_or(false))
}

pub fn start(ctx: &Ctx, signer: Option<(Arc<Ca>, Duration)>) {
    let q = Queue::new("csr", ctx);
    {
        let q = q.clone();
        ctx.inf.csrs.on(move |c| match c {
            Change::Add(r) | Change::Update(_, r) => q.add(meta::name(&r.metadata)),
            Change::Delete(_) => {}
        });
    }
    let c2 = ctx.clone();
    q.run(2, move |name| {
        let (ctx, signer) = (c2.clone(), signer.clone());
        async move {
            let Some(csr) = ctx.inf.csrs.get(&name) else {
                return Ok(Next::Done);
            };
            if let Some(r) = recognize(&csr)
                && allowed(&ctx, &csr, r.subresource).await?
            {
                let mut obj = (*csr).clone();
                obj.status = Some(approve(&csr, &r, ctx.now()));
                rest::update(&ctx.client, None, &name, "approval", &obj)
                    .await
                    .map_err(|e| format!("approving csr {name}: {e}"))?;
                return Ok(Next::Done);
            }
            let Some((ca, duration)) = signer else {
                return Ok(Next::Done);
            };
            match sign_decision(&csr, duration, ctx.now()) {
                SignDecision::Skip => Ok(Next::Done),
                SignDecision::Fail(st) => {
                    let mut obj = (*csr).clone();
                    obj.status = Some(*st);
                    rest::update(&ctx.client, None, &name, "status", &obj)
                        .await
                        .map_err(|e| format!("failing csr {name}: {e}"))?;
                    Ok(Next::Done)
                }
                SignDecision::Sign { usage, validity } => {
                    let st = issue(&ca, &csr, usage, validity, &ctx.clock)
                        .map_err(|e| format!("signing csr {name}: {e}"))?;
                    let mut obj = (*csr).clone();
                    obj.status = Some(st);
                    rest::update(&ctx.client, None, &name, "status", &obj)
                        .await
                        .map_err(|e| format!("issuing csr {name}: {e}"))?;
                    Ok(Next::Done)
                }
            }
        }
    });
}
