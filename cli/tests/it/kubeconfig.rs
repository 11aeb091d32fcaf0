use std::process::Command;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::pki::{Ca, CertSpec, kubeconfig};

use crate::util::{TestResult, fail};

/// The newest versioned kubectl beside the dispatcher, else `kubectl`.
pub fn kubectl() -> Option<String> {
    let which = Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&which.stdout).trim().to_string();
    if path.is_empty() {
        return None;
    }
    let dir = std::path::Path::new(&path).parent()?.to_path_buf();
    let real = std::fs::canonicalize(&path).ok()?;
    for d in [dir, real.parent()?.to_path_buf()] {
        let v = d.join("kubectl.1.33");
        if v.exists() {
            return Some(v.display().to_string());
        }
    }
    Some(path)
}

pub async fn real_kubectl_reads_our_kubeconfig() -> TestResult {
    let Some(kubectl) = kubectl() else {
        println!("skipped: kubectl is not installed");
        return Ok(());
    };
    let clock = Clock::real();
    let ca = Ca::generate("ackemu-ca", &clock, Duration::from_secs(86400))
        .map_err(|e| fail(e.to_string()))?;
    let admin = ca
        .issue(
            &CertSpec::client(
                "kubernetes-admin",
                &["system:masters"],
                Duration::from_secs(3600),
            ),
            &clock,
        )
        .map_err(|e| fail(e.to_string()))?;
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let path = dir.path().join("kubeconfig");
    kubeconfig::write(
        &path,
        &kubeconfig::Spec {
            cluster_name: "ackemu".into(),
            server: "https://127.0.0.1:6443".into(),
            ca_pem: ca.cert_pem().to_string(),
            user_name: "kubernetes-admin".into(),
            client_cert: Some(admin.clone()),
            token: None,
            namespace: Some("default".into()),
        },
    )
    .map_err(|e| fail(e.to_string()))?;
    let out = Command::new(&kubectl)
        .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
        .arg(&path)
        .output()
        .map_err(|e| fail(format!("running {kubectl}: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "kubectl config view failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()))?;
    let eq = |got: &serde_json::Value, want: &str| -> TestResult {
        if got.as_str() == Some(want) {
            Ok(())
        } else {
            Err(fail(format!("expected {want:?}, got {got} in {v}")))
        }
    };
    eq(&v["current-context"], "kubernetes-admin@ackemu")?;
    eq(
        &v["clusters"][0]["cluster"]["server"],
        "https://127.0.0.1:6443",
    )?;
    eq(&v["contexts"][0]["context"]["user"], "kubernetes-admin")?;
    eq(&v["contexts"][0]["context"]["namespace"], "default")?;
    use base64::Engine as _;
    let cert = base64::engine::general_purpose::STANDARD
        .decode(
            v["users"][0]["user"]["client-certificate-data"]
                .as_str()
                .unwrap_or_default(),
        )
        .map_err(|e| fail(e.to_string()))?;
    if cert != admin.cert_pem.as_bytes() {
        return Err(fail(
            "client certificate did not round-trip through kubectl",
        ));
    }
    // kubectl's own view of the minified current context.
    let out = Command::new(&kubectl)
        .args(["config", "current-context", "--kubeconfig"])
        .arg(&path)
        .output()
        .map_err(|e| fail(e.to_string()))?;
    if String::from_utf8_lossy(&out.stdout).trim() != "kubernetes-admin@ackemu" {
        return Err(fail(format!(
            "current-context: {}",
            String::from_utf8_lossy(&out.stdout)
        )));
    }
    Ok(())
}
