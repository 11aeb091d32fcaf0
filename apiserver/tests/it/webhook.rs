//! Admission webhooks over HTTPS against a real webhook server in the
//! test: mutation, denial, and S08's expired webhook certificate.

use std::sync::Arc;
use std::time::Duration;

use ackemu_base::pki::{self, Ca, CertSpec, ClientAuth};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::harness::Cluster;

fn answer(review: &Value, path: &str) -> Value {
    let req = &review["request"];
    let uid = req["uid"].clone();
    let labels = &req["object"]["metadata"]["labels"];
    if path.starts_with("/mutate") {
        let patch = json!([{"op": "add", "path": "/metadata/annotations", "value": {"sidecar.istio.io/status": "injected"}}]);
        return json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": uid, "allowed": true, "patchType": "JSONPatch",
            "patch": base64::engine::general_purpose::STANDARD.encode(patch.to_string())}});
    }
    if req["operation"] == "DELETE"
        && req["oldObject"]["metadata"]["labels"]["protected"].is_string()
    {
        return json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": uid, "allowed": false, "status": {"code": 403, "message": "protected objects cannot be deleted"}}});
    }
    if labels["bad"].is_string() {
        return json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": uid, "allowed": false, "status": {"code": 400, "message": "configuration is invalid: gateway must have at least one server"}}});
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": uid, "allowed": true}})
}

/// A webhook server with a certificate from its own CA (the mesh's
/// Citadel, in S08), valid for one day.
async fn start_webhook(c: &Cluster) -> anyhow::Result<(u16, String)> {
    let mesh_ca = Ca::generate("istio-ca", &c.env.clock, Duration::from_secs(10 * 86400))?;
    let cert = mesh_ca.issue(
        &CertSpec::server(
            "istio-galley",
            &["istio-galley.istio-system.svc"],
            &[],
            Duration::from_secs(86400),
        ),
        &c.env.clock,
    )?;
    let tls = pki::server_tls_config(
        &cert.cert_pem,
        &cert.key_pem,
        None,
        ClientAuth::None,
        &c.env.clock,
        &[b"http/1.1"],
    )?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let tasks = c.env.tasks.clone();
    let inner = tasks.clone();
    tasks.spawn("test-webhook", async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            inner.spawn("test-webhook-conn", async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let review: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                        let out = answer(&review, &path);
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(out.to_string()),
                        )))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok((port, mesh_ca.cert_pem().to_owned()))
}

#[tokio::test]
async fn webhooks_mutate_deny_and_fail_on_an_expired_certificate() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let k = c.kubectl("1.33");
    let (port, ca_pem) = start_webhook(&c).await?;
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let objects = json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-galley", "namespace": "istio-system"},
         "spec": {"ports": [{"name": "https-validation", "port": 443, "targetPort": 9443}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "istio-galley", "namespace": "istio-system"},
         "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https-validation", "port": port}]}]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "istio-galley"},
         "webhooks": [{"name": "pilot.validation.istio.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                       "failurePolicy": "Fail", "timeoutSeconds": 30,
                       "clientConfig": {"service": {"name": "istio-galley", "namespace": "istio-system", "path": "/admitpilot"}, "caBundle": ca_bundle},
                       "rules": [{"operations": ["CREATE", "UPDATE", "DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
                       "namespaceSelector": {"matchLabels": {"mesh": "on"}}}]},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "metadata": {"name": "istio-sidecar-injector"},
         "webhooks": [{"name": "sidecar-injector.istio.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                       "clientConfig": {"service": {"name": "istio-galley", "namespace": "istio-system", "path": "/mutate"}, "caBundle": ca_bundle},
                       "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
                       "namespaceSelector": {"matchLabels": {"mesh": "on"}}}]}
    ]});
    k.ok_stdin(&["create", "-f", "-"], &objects.to_string())
        .await?;
    k.ok(&["create", "namespace", "mesh"]).await?;
    k.ok(&["label", "namespace", "mesh", "mesh=on"]).await?;

    // Outside the selected namespace nothing is called.
    k.ok(&["create", "configmap", "plain"]).await?;
    assert_eq!(
        k.ok(&[
            "get",
            "cm",
            "plain",
            "-o",
            "jsonpath={.metadata.annotations}"
        ])
        .await?,
        ""
    );

    // Mutation, then validation.
    let created = crate::harness::eventually("the webhooks to be called", || {
        let k = &k;
        async move {
            k.ok(&["create", "configmap", "-n", "mesh", "good"])
                .await
                .ok();
            let a = k
                .ok(&[
                    "get",
                    "cm",
                    "-n",
                    "mesh",
                    "good",
                    "-o",
                    "jsonpath={.metadata.annotations}",
                ])
                .await?;
            if a.contains("injected") {
                return Ok(Some(a));
            }
            k.ok(&["delete", "cm", "-n", "mesh", "good"]).await.ok();
            Ok(None)
        }
    })
    .await?;
    assert!(created.contains("sidecar.istio.io/status"), "{created}");
    let bad = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad", "namespace": "mesh", "labels": {"bad": "yes"}}}"#;
    let denied = k.run_stdin(&["create", "-f", "-"], Some(bad)).await?;
    assert!(
        denied.stderr.contains(
            "admission webhook \"pilot.validation.istio.io\" denied the request: configuration is invalid: gateway must have at least one server"
        ),
        "{}",
        denied.stderr
    );

    // DELETE is admitted against the old object.
    k.ok(&["label", "cm", "-n", "mesh", "good", "protected=yes"])
        .await?;
    let refused = k.fails(&["delete", "cm", "-n", "mesh", "good"]).await?;
    assert!(refused.contains("admission webhook \"pilot.validation.istio.io\" denied the request: protected objects cannot be deleted"), "{refused}");

    // A year later (by the cluster clock) the mesh's webhook certificate has expired.
    c.env.clock.set_offset_ms(2 * 86_400_000);
    let expired = k
        .run(&["create", "configmap", "-n", "mesh", "later"])
        .await?;
    assert!(!expired.ok);
    assert!(
        expired.stderr.contains(
            "Internal error occurred: failed calling webhook \"sidecar-injector.istio.io\": failed to call webhook: Post \"https://istio-galley.istio-system.svc:443/mutate?timeout=10s\": tls: failed to verify certificate: x509: certificate has expired or is not yet valid: current time"
        ),
        "{}",
        expired.stderr
    );
    // With the mutating webhook gone, the validating one fails the same way.
    k.ok(&[
        "delete",
        "mutatingwebhookconfiguration",
        "istio-sidecar-injector",
    ])
    .await?;
    let expired =
        crate::harness::eventually("the validating webhook to fail on its certificate", || {
            let k = &k;
            async move {
                let out = k
                    .run(&["create", "configmap", "-n", "mesh", "later"])
                    .await?;
                Ok(out
                    .stderr
                    .contains("pilot.validation.istio.io")
                    .then_some(out.stderr))
            }
        })
        .await?;
    assert!(
        expired.contains(
            "failed calling webhook \"pilot.validation.istio.io\": failed to call webhook: Post \"https://istio-galley.istio-system.svc:443/admitpilot?timeout=30s\": tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
        ),
        "{expired}"
    );
    Ok(())
}
