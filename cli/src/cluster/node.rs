//! A worker as an operator reaches it: `ackemu ssh <instance-id>` runs a
//! command inside the instance (its network namespace, the node's
//! directory, the node's binaries on `PATH`), and the node's processes'
//! admin ports (`nodes/<instance-id>/admin.json`, written by attach) for
//! `ackemu chaos --target <instance-id>/<role>`.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;

use super::{DataDirArg, load, process};

/// `ackemu ssh`.
#[derive(Args, Debug, Clone)]
pub struct SshArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// The ECS instance (a worker's instance id is its node name).
    pub instance: String,
    /// The command and its arguments (default: an interactive `/bin/sh`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// The directory of worker `node`, or an error listing the workers.
pub fn node_dir(dir: &Path, node: &str) -> anyhow::Result<PathBuf> {
    let root = dir.join("nodes").join(node);
    if node.contains('/') || node.is_empty() || !root.is_dir() {
        let mut nodes: Vec<String> = std::fs::read_dir(dir.join("nodes"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        nodes.sort();
        anyhow::bail!(
            "no node {node:?} in {}: expected one of {}",
            dir.display(),
            if nodes.is_empty() {
                "(no workers yet)".to_owned()
            } else {
                nodes.join(", ")
            }
        );
    }
    Ok(root)
}

/// The instance namespace and the admin address of `role` on `node`.
pub fn node_admin(dir: &Path, node: &str, role: &str) -> anyhow::Result<(String, String)> {
    let st = load(dir)?.with_context(|| format!("no cluster in {}", dir.display()))?;
    let root = node_dir(dir, node)?;
    let file = root.join("admin.json");
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "node {node} has no admin ports ({} is missing: it has not attached yet, or attached without --admin-ports)",
            file.display()
        )
    })?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
    let addr = map.get(role).and_then(|v| v.as_str()).with_context(|| {
        let roles: Vec<&str> = map.keys().map(String::as_str).collect();
        format!(
            "node {node} has no process {role:?}: expected one of {}",
            roles.join(", ")
        )
    })?;
    Ok((format!("{}{node}", st.netns_prefix), addr.to_owned()))
}

/// Replace this process with the command inside the instance.
pub fn ssh(args: SshArgs) -> anyhow::Result<()> {
    let dir = &args.dir.data_dir;
    let st = load(dir)?.with_context(|| format!("no cluster in {}", dir.display()))?;
    let ns = format!("{}{}", st.netns_prefix, args.instance);
    if args.instance.contains('/')
        || args.instance.is_empty()
        || !ackemu_cloudsim::dataplane::netns::exists(&ns)
    {
        let mut running: Vec<String> = ackemu_cloudsim::dataplane::netns::list()
            .into_iter()
            .filter_map(|n| n.strip_prefix(&st.netns_prefix).map(str::to_owned))
            .filter(|n| !st.netns_prefix.is_empty() && n.starts_with("i-"))
            .collect();
        running.sort();
        anyhow::bail!(
            "no running instance {:?} in this cluster: expected one of {}",
            args.instance,
            if running.is_empty() {
                "(none running)".to_owned()
            } else {
                running.join(", ")
            }
        );
    }
    let bin = process::bin_dir()?;
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["netns", "exec", &ns]);
    if args.command.is_empty() {
        cmd.arg("/bin/sh");
    } else {
        cmd.args(&args.command);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    cmd.env("PATH", format!("{}:{path}", bin.display()))
        .env("ACKEMU_INSTANCE_ID", &args.instance);
    // On a worker: its files are home, and the node's tools find its sockets.
    match std::fs::canonicalize(dir.join("nodes").join(&args.instance)) {
        Ok(root) => {
            cmd.current_dir(&root)
                .env("ACKEMU_NODE_RUN_DIR", root.join("run"))
                .env("ACKEMU_NODE_DIR", &root);
        }
        Err(_) => {
            cmd.current_dir("/");
        }
    }
    let err = cmd.exec();
    Err(anyhow::anyhow!("running ip netns exec {ns}: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(dir: &Path) {
        std::fs::write(
            dir.join("cluster.json"),
            r#"{"epoch_unix_ms":0,"time_scale":60.0,"apiserver":"127.0.0.1:1","store_endpoints":[],
                "cloud_endpoint":"127.0.0.1:2","netns_prefix":"ak1-","processes":[]}"#,
        )
        .unwrap();
    }

    #[test]
    fn node_admin_finds_a_role_in_the_instance_namespace_and_explains_misses() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        cluster(dir);
        let err = node_admin(dir, "i-1", "cnid").unwrap_err().to_string();
        assert!(err.contains("(no workers yet)"), "{err}");
        std::fs::create_dir_all(dir.join("nodes/i-1")).unwrap();
        let err = node_admin(dir, "i-1", "cnid").unwrap_err().to_string();
        assert!(err.contains("has no admin ports"), "{err}");
        std::fs::write(
            dir.join("nodes/i-1/admin.json"),
            r#"{"cnid":"127.0.0.1:10261","kubelet":"127.0.0.1:10248"}"#,
        )
        .unwrap();
        assert_eq!(
            node_admin(dir, "i-1", "cnid").unwrap(),
            ("ak1-i-1".to_owned(), "127.0.0.1:10261".to_owned())
        );
        let err = node_admin(dir, "i-1", "runc").unwrap_err().to_string();
        assert!(err.contains("expected one of cnid, kubelet"), "{err}");
        let err = node_admin(dir, "../x", "cnid").unwrap_err().to_string();
        assert!(err.contains("expected one of i-1"), "{err}");
    }
}
