//! `galley`: the mesh's validating admission webhook. It serves
//! AdmissionReview v1 on HTTPS `--validation-port` (443) at `/admitpilot`
//! (and `/admitmixer`), with the certificate Citadel keeps in secret
//! `istio.istio-galley-service-account` (re-read as Citadel rotates it, or
//! files given by flags), and keeps the ValidatingWebhookConfiguration
//! `istio-galley` (webhook `pilot.validation.istio.io`, failurePolicy Fail,
//! caBundle = the mesh root) registered, as Galley 1.x did.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::{CommonArgs, Env};
use ackemu_kube::client::Client;
use axum::Json;
use axum::Router;
use axum::routing::{get, post};
use base64::Engine as _;
use clap::Parser;
use serde_json::{Value, json};

use super::{inject, keys, validation, workload_secret_name};
use crate::https::{self, ServingCert};
use crate::kube::istio_log;

/// `galley` flags.
#[derive(Parser, Debug, Clone)]
#[command(name = "galley")]
pub struct Args {
    /// Use this kubeconfig instead of the in-cluster configuration.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The webhook's HTTPS port.
    #[arg(long, default_value_t = 443)]
    pub validation_port: u16,
    /// The address to serve on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: String,
    /// Certificate files (default: Citadel's secret through the API).
    #[arg(long = "tlsCertFile", alias = "tls-cert-file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long = "tlsKeyFile", alias = "tls-key-file")]
    pub tls_key_file: Option<PathBuf>,
    #[arg(long = "caCertFile", alias = "ca-cert-file")]
    pub ca_cert_file: Option<PathBuf>,
    /// Namespace Galley runs in (its Service and secret live there).
    #[arg(long, default_value = "istio-system")]
    pub deployment_namespace: String,
    /// The Service fronting the webhook.
    #[arg(long, default_value = "istio-galley")]
    pub webhook_service: String,
    /// The ValidatingWebhookConfiguration to keep.
    #[arg(long, default_value = "istio-galley")]
    pub webhook_name: String,
    /// The MutatingWebhookConfiguration of the sidecar injector this
    /// process also serves at `/inject` (empty: no injection).
    #[arg(long, default_value = "istio-sidecar-injector")]
    pub injector_webhook_name: String,
    /// The image of the injected `istio-proxy` container.
    #[arg(long, default_value = "mesh-sidecar")]
    pub sidecar_image: String,
    /// Pilot's discovery address the injected proxies use.
    #[arg(long, default_value = "istio-pilot.istio-system:15010")]
    pub discovery_address: String,
    /// The service account whose Citadel secret holds the certificate.
    #[arg(long, default_value = "istio-galley-service-account")]
    pub service_account: String,
    /// How often the certificate and the webhook configuration are checked.
    #[arg(long, default_value = "10s", value_parser = super::duration)]
    pub refresh_interval: Duration,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// (cert chain, key, root), PEM.
type Material = (String, String, String);

async fn material(client: &Client, args: &Args) -> anyhow::Result<Material> {
    if let (Some(c), Some(k), Some(r)) =
        (&args.tls_cert_file, &args.tls_key_file, &args.ca_cert_file)
    {
        return Ok((
            std::fs::read_to_string(c)?,
            std::fs::read_to_string(k)?,
            std::fs::read_to_string(r)?,
        ));
    }
    let ns = &args.deployment_namespace;
    let name = workload_secret_name(&args.service_account);
    let s = client
        .request(
            "GET",
            &format!("/api/v1/namespaces/{ns}/secrets/{name}"),
            None,
        )
        .await?;
    let get = |k: &str| -> anyhow::Result<String> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(s["data"][k].as_str().unwrap_or(""))?;
        Ok(String::from_utf8(raw)?)
    };
    Ok((
        get(keys::CERT_CHAIN)?,
        get(keys::KEY)?,
        get(keys::ROOT_CERT)?,
    ))
}

/// The ValidatingWebhookConfiguration Galley registers.
pub fn webhook_configuration(args: &Args, root_pem: &str) -> Value {
    let ca = base64::engine::general_purpose::STANDARD.encode(root_pem);
    let hook = |name: &str, path: &str, groups: Value| {
        json!({
            "name": name,
            "clientConfig": {"service": {"name": args.webhook_service, "namespace": args.deployment_namespace, "path": path, "port": 443},
                             "caBundle": ca},
            "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": groups, "apiVersions": ["*"], "resources": ["*"]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "timeoutSeconds": 30,
            "admissionReviewVersions": ["v1", "v1beta1"],
        })
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": args.webhook_name, "labels": {"app": "galley", "istio": "galley"}},
        "webhooks": [
            hook("pilot.validation.istio.io", "/admitpilot",
                 json!(["config.istio.io", "networking.istio.io", "rbac.istio.io", "authentication.istio.io", "security.istio.io"])),
        ],
    })
}

async fn register(client: &Client, args: &Args, root_pem: &str) -> anyhow::Result<()> {
    keep(
        client,
        "validatingwebhookconfigurations",
        &args.webhook_name,
        webhook_configuration(args, root_pem),
    )
    .await?;
    if !args.injector_webhook_name.is_empty() {
        let want = inject::webhook_configuration(
            &args.injector_webhook_name,
            &args.webhook_service,
            &args.deployment_namespace,
            root_pem,
        );
        keep(
            client,
            "mutatingwebhookconfigurations",
            &args.injector_webhook_name,
            want,
        )
        .await?;
    }
    Ok(())
}

/// Create the webhook configuration `name`, or bring its webhooks to `want`.
async fn keep(client: &Client, resource: &str, name: &str, want: Value) -> anyhow::Result<()> {
    let base = format!("/apis/admissionregistration.k8s.io/v1/{resource}");
    let path = format!("{base}/{name}");
    match client.request("GET", &path, None).await {
        Ok(mut cur) => {
            if cur["webhooks"] != want["webhooks"] {
                cur["webhooks"] = want["webhooks"].clone();
                client
                    .request(
                        "PUT",
                        &path,
                        Some(("application/json", cur.to_string().into_bytes())),
                    )
                    .await?;
            }
        }
        Err(e) if e.is_not_found() => {
            client
                .request(
                    "POST",
                    &base,
                    Some(("application/json", want.to_string().into_bytes())),
                )
                .await?;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Answer one AdmissionReview.
pub fn review(req: &Value) -> Value {
    let uid = req["request"]["uid"].clone();
    let obj = &req["request"]["object"];
    let response = match validation::validate(obj) {
        Ok(()) => json!({"uid": uid, "allowed": true}),
        Err(why) => json!({"uid": uid, "allowed": false,
            "status": {"status": "Failure", "code": 400, "reason": "BadRequest", "message": format!("configuration is invalid: {why}")}}),
    };
    json!({"apiVersion": req["apiVersion"].as_str().unwrap_or("admission.k8s.io/v1"), "kind": "AdmissionReview", "response": response})
}

/// The injected proxy: the flags' image and Pilot address, and this
/// process's cluster clock (`ACKEMU_TIME_SCALE`, `ACKEMU_CLUSTER_EPOCH_MS`)
/// so the proxies keep the same time as the mesh.
fn injector_template(args: &Args) -> inject::Template {
    let env = ["ACKEMU_TIME_SCALE", "ACKEMU_CLUSTER_EPOCH_MS"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_owned(), v)))
        .collect();
    inject::Template {
        image: args.sidecar_image.clone(),
        discovery_address: args.discovery_address.clone(),
        env,
        ..inject::Template::default()
    }
}

/// `galley [flags]`.
pub async fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let args =
        Args::try_parse_from(std::iter::once("galley".to_string()).chain(args.iter().cloned()))?;
    let env = Env::init("galley", &args.common).await?;
    let clock: Clock = env.clock.clone();
    let client = crate::kube::connect(args.kubeconfig.as_deref(), &clock, &env.tasks)?;
    // Wait for Citadel's certificate.
    let mut tick = clock.interval(args.refresh_interval.min(Duration::from_secs(2)));
    let (mut cur, serving) = loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = env.tasks.cancelled() => return Ok(ExitCode::SUCCESS),
        }
        match material(&client, &args).await {
            Ok(m) => match ServingCert::new(&m.0, &m.1, None, &clock) {
                Ok(s) => break (m, s),
                Err(e) => istio_log(&clock, "error", &format!("invalid certificate: {e}")),
            },
            Err(e) => istio_log(
                &clock,
                "info",
                &format!("waiting for the validation certificate: {e:#}"),
            ),
        }
    };
    let template = injector_template(&args);
    let app = Router::new()
        .route(
            "/admitpilot",
            post(|Json(r): Json<Value>| async move { Json(review(&r)) }),
        )
        .route(
            "/admitmixer",
            post(|Json(r): Json<Value>| async move {
                Json(
                    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                        "response": {"uid": r["request"]["uid"], "allowed": true}}),
                )
            }),
        )
        .route(
            "/inject",
            post(move |Json(r): Json<Value>| {
                let t = template.clone();
                async move { Json(inject::review(&r, &t)) }
            }),
        )
        .route("/ready", get(|| async { "ok" }));
    let (l, bound) =
        https::bind(&format!("{}:{}", args.bind_address, args.validation_port)).await?;
    https::serve(l, serving.clone(), app, &env.tasks, "galley");
    istio_log(
        &clock,
        "info",
        &format!("Galley validation webhook serving on {bound}"),
    );
    println!("galley validation webhook serving on {bound}");
    if let Err(e) = register(&client, &args, &cur.2).await {
        istio_log(
            &clock,
            "error",
            &format!("failed to register the validating webhook configuration: {e:#}"),
        );
    }
    env.health.set_ready(true);
    let mut tick = clock.interval(args.refresh_interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = env.tasks.cancelled() => break,
        }
        match material(&client, &args).await {
            Ok(m) if m != cur => match serving.set(&m.0, &m.1, None, &clock) {
                Ok(()) => {
                    istio_log(&clock, "info", "reloaded the validation certificate");
                    cur = m;
                }
                Err(e) => istio_log(&clock, "error", &format!("invalid certificate: {e}")),
            },
            Ok(_) => {}
            Err(e) => istio_log(
                &clock,
                "warn",
                &format!("reading the validation certificate: {e:#}"),
            ),
        }
        if let Err(e) = register(&client, &args, &cur.2).await {
            istio_log(
                &clock,
                "error",
                &format!("failed to register the validating webhook configuration: {e:#}"),
            );
        }
    }
    env.tasks.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reviews_answer_with_istios_words() {
        let r = review(
            &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "object": {"kind": "VirtualService", "spec": {"http": []}}}}),
        );
        assert_eq!(r["response"]["uid"], "u1");
        assert_eq!(r["response"]["allowed"], false);
        assert!(
            r["response"]["status"]["message"]
                .as_str()
                .unwrap()
                .starts_with(
                    "configuration is invalid: virtual service must have at least one host"
                )
        );
    }
}
