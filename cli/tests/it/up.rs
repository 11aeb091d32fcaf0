//! `ackemu up | status | logs | down` with the real component binaries and
//! the real kubectl.

use std::process::Command;

use crate::util::{TestResult, ackemu, ackemu_ok, fail};

pub async fn up_serves_kubectl_and_down_leaves_nothing() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let d = dir.path().join("cluster");
    let d = d.to_str().ok_or_else(|| fail("non-utf8 temp dir"))?;
    let out = ackemu_ok(&[
        "up",
        "--data-dir",
        d,
        "--apiserver-port",
        "0",
        "--time-scale",
        "10",
    ])?;
    if !out.contains("cluster is up") {
        return Err(fail(format!("unexpected up output:\n{out}")));
    }
    let result = check_running_cluster(d).await;
    let down = ackemu(&["down", "--data-dir", d]);
    result?;
    if !down.0 {
        return Err(fail(format!("down failed: {}", down.2)));
    }
    // Nothing left: every recorded pid is gone.
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{d}/cluster.json")).map_err(|e| fail(e.to_string()))?,
    )
    .map_err(|e| fail(e.to_string()))?;
    for p in state["processes"].as_array().into_iter().flatten() {
        if !p[1]["pid"].is_null() {
            return Err(fail(format!("pid still recorded after down: {p}")));
        }
    }
    let status = ackemu_ok(&["status", "--data-dir", d])?;
    if status.contains("running") {
        return Err(fail(format!(
            "processes still running after down:\n{status}"
        )));
    }
    Ok(())
}

async fn check_running_cluster(d: &str) -> TestResult {
    let status = ackemu_ok(&["status", "--data-dir", d])?;
    for c in ["store-0", "store-1", "store-2", "cloudsim", "apiserver"] {
        let line = status
            .lines()
            .find(|l| l.starts_with(c))
            .ok_or_else(|| fail(format!("{c} missing from status:\n{status}")))?;
        if !line.contains("running") || !line.ends_with("ready") {
            return Err(fail(format!("{c} not running and ready: {line}")));
        }
    }
    let logs = ackemu_ok(&["logs", "--data-dir", d, "apiserver"])?;
    if !logs.contains("serving the Kubernetes API") {
        return Err(fail(format!("apiserver log lacks its start line:\n{logs}")));
    }
    let (ok, _, err) = ackemu(&["logs", "--data-dir", d, "nosuch"]);
    if ok || !err.contains("no component \"nosuch\"") {
        return Err(fail(format!("logs of an unknown component: {err}")));
    }
    let Some(kubectl) = crate::kubeconfig::kubectl() else {
        println!("skipped: kubectl checks (kubectl not installed)");
        return Ok(());
    };
    let out = Command::new(&kubectl)
        .args([
            "--kubeconfig",
            &format!("{d}/kubeconfig"),
            "get",
            "namespaces",
            "-o",
            "name",
        ])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("namespace/kube-system") {
        return Err(fail(format!(
            "kubectl get namespaces: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}
