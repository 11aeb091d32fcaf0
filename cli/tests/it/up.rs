//! `ackemu up | status | logs | down` with the real component binaries and
//! the real kubectl.

use std::process::Command;

use crate::util::{TestResult, ackemu, ackemu_ok, fail};
use libtest_mimic::Failed;

/// Why `ackemu up` cannot run here (it needs the VPC data plane).
fn skip_reason() -> Option<&'static str> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("ackemu up needs root (network namespaces, TUN)");
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("/dev/net/tun is missing");
    }
    None
}

fn netns_list() -> String {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn host_addresses() -> String {
    Command::new("ip")
        .args(["-o", "addr"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The control plane without workers: stores and cloud on the host, the
/// API server and controllers inside the master ECS namespace, kubectl
/// through the loopback forward; `down` leaves no process or namespace.
pub async fn up_serves_kubectl_and_down_leaves_nothing() -> TestResult {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let d = dir.path().join("cluster");
    let d = d.to_str().ok_or_else(|| fail("non-utf8 temp dir"))?;
    let up = ackemu_ok(&[
        "up",
        "--data-dir",
        d,
        "--apiserver-port",
        "0",
        "--time-scale",
        "10",
        "--nodes",
        "0",
    ]);
    let out = match up {
        Ok(out) => out,
        Err(e) => {
            // Leave nothing behind even when start-up fails.
            let _ = ackemu(&["down", "--data-dir", d]);
            return Err(e);
        }
    };
    if !out.contains("cluster is up") {
        let _ = ackemu(&["down", "--data-dir", d]);
        return Err(fail(format!("unexpected up output:\n{out}")));
    }
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{d}/cluster.json")).map_err(|e| fail(e.to_string()))?,
    )
    .map_err(|e| fail(e.to_string()))?;
    let prefix = state["netns_prefix"].as_str().unwrap_or("").to_owned();
    let result = check_running_cluster(d, &state).await;
    let down = ackemu(&["down", "--data-dir", d]);
    result?;
    if prefix.is_empty() || netns_list().contains(&prefix) {
        return Err(fail(format!(
            "namespaces with prefix {prefix:?} left after down:\n{}",
            netns_list()
        )));
    }
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

async fn check_running_cluster(d: &str, state: &serde_json::Value) -> TestResult {
    // The API server lives in the master instance's namespace, bound to
    // the master's ENI address; nothing emulated exists on the host.
    let master_ns = format!(
        "{}{}",
        state["netns_prefix"].as_str().unwrap_or(""),
        state["cloud"]["master_instance"].as_str().unwrap_or("")
    );
    let api = state["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p[0] == "apiserver")
        .ok_or_else(|| fail("no apiserver in cluster.json"))?;
    if api[1]["netns"] != master_ns.as_str() {
        return Err(fail(format!("apiserver not in {master_ns}: {api}")));
    }
    // The recorded pid is its supervisor (the master's "kubelet" for
    // static pods); the API server is its child, in the master's namespace.
    let pid = api[1]["pid"].as_u64().unwrap_or(0);
    let ns_of = |pid: u64| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok();
    let child = eventually("the supervised apiserver process", 30, || {
        children(pid).into_iter().next()
    })
    .await?;
    if ns_of(child).is_none() || ns_of(child) == ns_of(std::process::id() as u64) {
        return Err(fail(format!(
            "apiserver pid {child} runs in the host namespace"
        )));
    }
    // Killed, it is started again.
    std::process::Command::new("kill")
        .args(["-KILL", &child.to_string()])
        .status()
        .map_err(|e| fail(format!("kill: {e}")))?;
    let again = eventually("the apiserver to be restarted", 60, || {
        children(pid).into_iter().find(|c| *c != child)
    })
    .await?;
    let logs = ackemu_ok(&["logs", "--data-dir", d, "apiserver"])?;
    if !logs.contains(&format!(
        "ackemu supervise: apiserver (pid {child}) ended with signal 9"
    )) {
        return Err(fail(format!(
            "the apiserver log does not say it was restarted (now pid {again}):\n{logs}"
        )));
    }
    if host_addresses().contains("192.168.") {
        return Err(fail(format!(
            "an emulated address is on the host:\n{}",
            host_addresses()
        )));
    }
    // Components that lost their lease while the API server was down
    // exit and are restarted too: wait for all of them.
    let components = [
        "store-0",
        "store-1",
        "store-2",
        "cloudsim",
        "forward",
        "apiserver",
        "controller-manager",
    ];
    let not_ready = |status: &str| -> Option<String> {
        components
            .iter()
            .find_map(|c| match status.lines().find(|l| l.starts_with(c)) {
                None => Some(format!("{c} missing from status:\n{status}")),
                Some(l) if !l.contains("running") || !l.ends_with("ready") => {
                    Some(format!("{c} not running and ready: {l}"))
                }
                Some(_) => None,
            })
    };
    let mut last = String::new();
    let all_ready = eventually("every component running and ready", 90, || {
        let (ok, out, err) = ackemu(&["status", "--data-dir", d]);
        match (ok, not_ready(&out)) {
            (false, _) => last = err,
            (true, Some(why)) => last = why,
            (true, None) => return Some(()),
        }
        None
    })
    .await;
    if all_ready.is_err() {
        return Err(fail(last));
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

fn kubectl_in(d: &str, args: &[&str]) -> (bool, String) {
    let Some(kubectl) = crate::kubeconfig::kubectl() else {
        return (false, "kubectl not installed".into());
    };
    let kc = format!("{d}/kubeconfig");
    let mut all = vec!["--kubeconfig", kc.as_str(), "--request-timeout=20s"];
    all.extend_from_slice(args);
    match Command::new(&kubectl).args(&all).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// The processes whose parent is `pid`.
fn children(pid: u64) -> Vec<u64> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|st| {
                    let ppid = st.rsplit_once(')')?.1.split_whitespace().nth(1)?.to_owned();
                    ppid.parse::<u64>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// Polls `f` (bounded, real time) until it yields a value.
async fn eventually<T>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, Failed> {
    let clock = ackemu_base::clock::Clock::real();
    let deadline = clock.now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if clock.now() > deadline {
            return Err(fail(format!("{what}: not within {secs}s")));
        }
        clock.sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The README's promise: `ackemu up` brings workers that joined through
/// ESS UserData and a bootstrap token, Ready; a Deployment's pods run as
/// real processes; a pod reaches a Service by its DNS name through
/// cluster DNS and kube-proxy's rules; `kubectl logs`/`exec` cross the VPC
/// from the master to the kubelets.
pub async fn up_with_workers_runs_pods_behind_services() -> TestResult {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return Ok(());
    }
    if crate::kubeconfig::kubectl().is_none() {
        println!("skipped: kubectl not installed");
        return Ok(());
    }
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let d = dir.path().join("cluster");
    let d = d.to_str().ok_or_else(|| fail("non-utf8 temp dir"))?;
    let up = ackemu_ok(&[
        "up",
        "--data-dir",
        d,
        "--apiserver-port",
        "0",
        "--time-scale",
        "10",
        "--nodes",
        "2",
        "--ready-timeout",
        "300s",
    ]);
    let result = match up {
        Ok(_) => check_workers(d).await,
        Err(e) => Err(e),
    };
    let down = ackemu(&["down", "--data-dir", d]);
    result?;
    if !down.0 {
        return Err(fail(format!("down failed: {}", down.2)));
    }
    Ok(())
}

async fn check_workers(d: &str) -> TestResult {
    let (_, nodes) = kubectl_in(d, &["get", "nodes", "--no-headers"]);
    if nodes.lines().filter(|l| l.contains(" Ready ")).count() < 2 {
        return Err(fail(format!("want 2 Ready nodes:\n{nodes}")));
    }
    // A worker's journal, as `journalctl -u kubelet` on the node.
    let first = nodes.split_whitespace().next().unwrap_or("").to_owned();
    let journal = ackemu_ok(&["logs", "--data-dir", d, "--node", &first, "kubelet"])?;
    if !journal.contains("Starting kubelet") {
        return Err(fail(format!("{first}'s kubelet journal:\n{journal}")));
    }
    let attach = ackemu_ok(&[
        "logs",
        "--data-dir",
        d,
        "--node",
        &first,
        "attach",
        "--tail",
        "50",
    ])?;
    if !attach.contains("This node has joined the cluster") {
        return Err(fail(format!("{first}'s attach log:\n{attach}")));
    }
    let (ok, _, err) = ackemu(&["logs", "--data-dir", d, "--node", &first, "nosuch"]);
    if ok || !err.contains("has no log of \"nosuch\": expected one of") {
        return Err(fail(format!("an unknown unit: {err}")));
    }
    let (ok, _, err) = ackemu(&["logs", "--data-dir", d, "--node", "i-nosuch", "kubelet"]);
    if ok || !err.contains(&first) {
        return Err(fail(format!("an unknown node: {err}")));
    }
    let (ok, out) = kubectl_in(
        d,
        &["create", "deployment", "web", "--image=app", "--replicas=2"],
    );
    if !ok {
        return Err(fail(format!("create deployment: {out}")));
    }
    let (ok, out) = kubectl_in(
        d,
        &[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--target-port=2580",
        ],
    );
    if !ok {
        return Err(fail(format!("expose: {out}")));
    }
    let pod = eventually("two web pods Running and Ready", 240, || {
        let (_, out) = kubectl_in(d, &["get", "pods", "-l", "app=web", "--no-headers"]);
        let running: Vec<String> = out
            .lines()
            .filter(|l| l.contains(" 1/1 ") && l.contains("Running"))
            .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
            .collect();
        (running.len() == 2).then(|| running[0].clone())
    })
    .await?;
    eventually("cluster DNS Ready", 240, || {
        let (_, out) = kubectl_in(
            d,
            &[
                "-n",
                "kube-system",
                "get",
                "pods",
                "-l",
                "k8s-app=kube-dns",
                "--no-headers",
            ],
        );
        out.lines().any(|l| l.contains(" 1/1 ")).then_some(())
    })
    .await?;
    let body = eventually("wget of the Service by name from a pod", 120, || {
        let (ok, out) = kubectl_in(
            d,
            &[
                "exec",
                &pod,
                "--",
                "wget",
                "-q",
                "-O",
                "-",
                "http://web.default.svc.cluster.local/",
            ],
        );
        (ok && out.contains("This is a small app for kubernetes")).then_some(out)
    })
    .await?;
    let (ok, logs) = kubectl_in(d, &["logs", &pod]);
    if !ok || !logs.contains("2580") {
        return Err(fail(format!("kubectl logs {pod}: {logs} (after {body})")));
    }
    Ok(())
}
