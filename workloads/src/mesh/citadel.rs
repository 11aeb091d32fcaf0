//! `citadel`: the mesh CA. On start it reads secret `istio-ca-secret`
//! (`ca-cert.pem`, `ca-key.pem`); absent, it creates a self-signed root
//! valid `--self-signed-ca-cert-ttl` (one year) of cluster time; present but
//! no longer valid at cluster time, it fails as Istio 1.x did, so the pod
//! crash-loops. Then it keeps an `istio.<serviceaccount>` secret
//! (`cert-chain.pem`, `key.pem`, `root-cert.pem`) for every service account,
//! re-issued before expiry; leaf certificates never outlive the root.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::pki::{self, Ca, CertSpec};
use ackemu_base::{CommonArgs, Env};
use ackemu_kube::client::{Client, ListParams};
use base64::Engine as _;
use clap::Parser;
use k8s_openapi::api::core::v1::ServiceAccount;
use serde_json::{Value, json};

use super::{keys, workload_secret_name};
use crate::kube::istio_log;

/// `citadel` flags (Istio 1.x names).
#[derive(Parser, Debug, Clone)]
#[command(name = "citadel")]
pub struct Args {
    /// Use this kubeconfig instead of the in-cluster configuration.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Generate a self-signed CA (the only mode here).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub self_signed_ca: bool,
    /// Lifetime of the self-signed root.
    #[arg(long, default_value = "8760h", value_parser = super::duration)]
    pub self_signed_ca_cert_ttl: Duration,
    /// Lifetime of workload certificates.
    #[arg(long, default_value = "2160h", value_parser = super::duration)]
    pub workload_cert_ttl: Duration,
    /// Re-issue when less than this share of the lifetime remains.
    #[arg(long, default_value_t = 0.5)]
    pub workload_cert_grace_period_ratio: f64,
    /// Namespace of `istio-ca-secret`.
    #[arg(long, default_value = "istio-system")]
    pub citadel_storage_namespace: String,
    /// How often workload secrets are checked (cluster time).
    #[arg(long, default_value = "1m", value_parser = super::duration)]
    pub workload_cert_check_interval: Duration,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// The CA secret's name.
pub const CA_SECRET: &str = "istio-ca-secret";

/// DNS names Citadel 1.x put into certificates of control-plane service
/// accounts, so their webhooks can be called by Service name.
fn dns_names(sa: &str, ns: &str) -> Vec<String> {
    match sa {
        "istio-galley-service-account" => vec![
            format!("istio-galley.{ns}.svc"),
            format!("istio-galley.{ns}"),
        ],
        "istio-sidecar-injector-service-account" => vec![
            format!("istio-sidecar-injector.{ns}.svc"),
            format!("istio-sidecar-injector.{ns}"),
        ],
        "istio-pilot-service-account" => {
            vec![format!("istio-pilot.{ns}.svc"), format!("istio-pilot.{ns}")]
        }
        _ => vec![],
    }
}

/// Validity of a PEM certificate: (not_before, not_after) unix seconds.
pub fn validity(cert_pem: &str) -> Result<(i64, i64), String> {
    let der = pki::certs_from_pem(cert_pem).map_err(|e| e.to_string())?;
    let first = der.first().ok_or("no certificate")?;
    let (_, c) = x509_parser::parse_x509_certificate(first).map_err(|e| e.to_string())?;
    Ok((
        c.validity().not_before.timestamp(),
        c.validity().not_after.timestamp(),
    ))
}

/// Istio's check of a CA bundle: the certificate must verify against the
/// root chain at the current (cluster) time.
pub fn verify_ca(cert_pem: &str, key_pem: &str, now_unix: i64) -> Result<Ca, String> {
    let why = "failed to create CA KeyCertBundle (cannot verify the cert with the provided root chain and cert pool)";
    let (nb, na) = validity(cert_pem).map_err(|_| why.to_string())?;
    if now_unix < nb || now_unix > na {
        return Err(why.into());
    }
    Ca::from_pem(cert_pem, key_pem).map_err(|_| why.to_string())
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn unb64(v: &Value) -> Option<String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()?;
    String::from_utf8(raw).ok()
}

/// `citadel [flags]`.
pub async fn main(args: &[String]) -> anyhow::Result<ExitCode> {
    let args =
        Args::try_parse_from(std::iter::once("citadel".to_string()).chain(args.iter().cloned()))?;
    let env = Env::init("citadel", &args.common).await?;
    let clock = env.clock.clone();
    if args.kubeconfig.is_none() {
        istio_log(
            &clock,
            "warn",
            "Neither --kubeconfig nor --master was specified.  Using the inClusterConfig.  This might not work.",
        );
    }
    let client = crate::kube::connect(args.kubeconfig.as_deref(), &clock, &env.tasks)?;
    istio_log(
        &clock,
        "info",
        "Use self-signed certificate as the CA certificate",
    );
    let ca = match load_or_create(&client, &args, &clock).await {
        Ok(ca) => ca,
        Err(e) => {
            istio_log(
                &clock,
                "error",
                &format!("Failed to create a self-signed Citadel (error: [{e}])"),
            );
            // Go's os.Exit(-1).
            return Ok(ExitCode::from(255));
        }
    };
    let (_, ca_not_after) = validity(ca.cert_pem()).map_err(|e| anyhow::anyhow!(e))?;
    istio_log(&clock, "info", "Citadel has started");
    env.health.set_ready(true);
    let sas =
        crate::kube::reflect::<ServiceAccount>(&client, None, ListParams::default(), &env.tasks)?;
    let mut tick = clock.interval(args.workload_cert_check_interval);
    let mut notes = sas.notifications;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            n = notes.recv() => if n.is_none() { break },
            () = env.tasks.cancelled() => break,
        }
        while notes.try_recv().is_ok() {}
        if !*sas.synced.borrow() {
            continue;
        }
        for sa in crate::kube::typed::<ServiceAccount>(&sas.store) {
            let (Some(ns), Some(name)) = (sa.metadata.namespace, sa.metadata.name) else {
                continue;
            };
            if let Err(e) =
                ensure_workload_secret(&client, &ca, ca_not_after, &args, &clock, &ns, &name).await
            {
                istio_log(
                    &clock,
                    "error",
                    &format!("failed to create secret for service account {ns}/{name}: {e}"),
                );
            }
        }
    }
    env.tasks.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn load_or_create(client: &Client, args: &Args, clock: &Clock) -> Result<Ca, String> {
    let ns = &args.citadel_storage_namespace;
    let path = format!("/api/v1/namespaces/{ns}/secrets/{CA_SECRET}");
    match client.request("GET", &path, None).await {
        Ok(s) => {
            let cert = unb64(&s["data"][keys::CA_CERT]).unwrap_or_default();
            let key = unb64(&s["data"][keys::CA_KEY]).unwrap_or_default();
            verify_ca(&cert, &key, clock.wall_unix_ms() / 1000)
        }
        Err(e) if e.is_not_found() => {
            let ca = Ca::generate("cluster.local", clock, args.self_signed_ca_cert_ttl)
                .map_err(|e| format!("failed to create a self-signed CA: {e}"))?;
            let secret = json!({"apiVersion": "v1", "kind": "Secret", "type": "istio.io/ca-root",
                "metadata": {"name": CA_SECRET, "namespace": ns},
                "data": {keys::CA_CERT: b64(ca.cert_pem()), keys::CA_KEY: b64(ca.key_pem())}});
            match client
                .request(
                    "POST",
                    &format!("/api/v1/namespaces/{ns}/secrets"),
                    Some(("application/json", secret.to_string().into_bytes())),
                )
                .await
            {
                Ok(_) => Ok(ca),
                // Another replica won: use its root.
                Err(e) if e.is_conflict() => Box::pin(load_or_create(client, args, clock)).await,
                Err(e) => Err(format!("failed to write secret {ns}/{CA_SECRET}: {e}")),
            }
        }
        Err(e) => Err(format!("failed to read secret {ns}/{CA_SECRET}: {e}")),
    }
}

async fn ensure_workload_secret(
    client: &Client,
    ca: &Ca,
    ca_not_after: i64,
    args: &Args,
    clock: &Clock,
    ns: &str,
    sa: &str,
) -> anyhow::Result<()> {
    let name = workload_secret_name(sa);
    let path = format!("/api/v1/namespaces/{ns}/secrets/{name}");
    let existing = match client.request("GET", &path, None).await {
        Ok(s) => Some(s),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let now = clock.wall_unix_ms() / 1000;
    if let Some(s) = &existing {
        let root = unb64(&s["data"][keys::ROOT_CERT]).unwrap_or_default();
        let chain = unb64(&s["data"][keys::CERT_CHAIN]).unwrap_or_default();
        if root == ca.cert_pem()
            && let Ok((nb, na)) = validity(&chain)
        {
            let life = (na - nb).max(1) as f64;
            if (na - now) as f64 > life * args.workload_cert_grace_period_ratio {
                return Ok(());
            }
        }
    }
    // Never past the root's own expiry.
    let remaining = Duration::from_secs(u64::try_from(ca_not_after - now).unwrap_or(0));
    let ttl = args.workload_cert_ttl.min(remaining);
    if ttl.is_zero() {
        anyhow::bail!("the CA certificate has expired");
    }
    let dns = dns_names(sa, ns);
    let dns_refs: Vec<&str> = dns.iter().map(String::as_str).collect();
    let mut spec = CertSpec::server(&format!("{sa}.{ns}"), &dns_refs, &[], ttl);
    spec.usage = pki::Usage::ServerAndClient;
    let leaf = ca.issue(&spec, clock)?;
    let data = json!({keys::CERT_CHAIN: b64(&leaf.cert_pem), keys::KEY: b64(&leaf.key_pem), keys::ROOT_CERT: b64(ca.cert_pem())});
    let body = match existing {
        Some(mut s) => {
            s["data"] = data;
            client
                .request(
                    "PUT",
                    &path,
                    Some(("application/json", s.to_string().into_bytes())),
                )
                .await?
        }
        None => {
            let s = json!({"apiVersion": "v1", "kind": "Secret", "type": "istio.io/key-and-cert",
                "metadata": {"name": name, "namespace": ns, "annotations": {"istio.io/service-account.name": sa}},
                "data": data});
            client
                .request(
                    "POST",
                    &format!("/api/v1/namespaces/{ns}/secrets"),
                    Some(("application/json", s.to_string().into_bytes())),
                )
                .await?
        }
    };
    let _ = body;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_root_fails_with_istios_words() {
        let (clock, manual) = Clock::manual(1_700_000_000_000);
        let ca = Ca::generate("cluster.local", &clock, Duration::from_secs(365 * 86400)).unwrap();
        let now = clock.wall_unix_ms() / 1000;
        assert!(verify_ca(ca.cert_pem(), ca.key_pem(), now).is_ok());
        manual.advance(Duration::from_secs(400 * 86400));
        let later = clock.wall_unix_ms() / 1000;
        assert_eq!(
            verify_ca(ca.cert_pem(), ca.key_pem(), later).unwrap_err(),
            "failed to create CA KeyCertBundle (cannot verify the cert with the provided root chain and cert pool)"
        );
        assert_eq!(
            dns_names("istio-galley-service-account", "istio-system")[0],
            "istio-galley.istio-system.svc"
        );
    }
}
