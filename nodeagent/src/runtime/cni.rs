//! Calling the CNI plugin the way libcni does: the first configuration in
//! the conf dir names the plugin `type`, the binary of that name in the bin
//! dir runs with `CNI_*` variables and the configuration on stdin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ackemu_base::tasks::wait_on;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

use crate::cni::types::{CniError, CniResult, code};

/// A loaded network configuration.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// The file it came from.
    pub path: PathBuf,
    /// The single plugin's configuration (with `name`/`cniVersion`).
    pub plugin: serde_json::Value,
    /// The plugin binary.
    pub binary: PathBuf,
}

/// Read the first `*.conf`/`*.conflist` of `conf_dir` (sorted by name).
pub fn load(conf_dir: &Path, bin_dir: &Path) -> Result<NetConfig, CniError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conf_dir)
        .map_err(|e| {
            CniError::new(
                code::INVALID_NETCONF,
                format!("no networks found in {}: {e}", conf_dir.display()),
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "conf" || x == "conflist")
        })
        .collect();
    files.sort();
    let path = files.into_iter().next().ok_or_else(|| {
        CniError::new(
            code::INVALID_NETCONF,
            format!("no networks found in {}", conf_dir.display()),
        )
    })?;
    let text = std::fs::read(&path)
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("reading {}: {e}", path.display())))?;
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
        CniError::new(
            code::DECODE_FAILURE,
            format!("decoding {}: {e}", path.display()),
        )
    })?;
    let plugin = match v.get("plugins").and_then(|p| p.as_array()) {
        Some(list) => {
            let mut first = list.first().cloned().ok_or_else(|| {
                CniError::new(
                    code::INVALID_NETCONF,
                    format!("{}: empty plugins list", path.display()),
                )
            })?;
            if let Some(o) = first.as_object_mut() {
                o.insert("name".into(), v.get("name").cloned().unwrap_or_default());
                o.insert(
                    "cniVersion".into(),
                    v.get("cniVersion").cloned().unwrap_or_default(),
                );
            }
            first
        }
        None => v,
    };
    let ty = plugin.get("type").and_then(|t| t.as_str()).ok_or_else(|| {
        CniError::new(
            code::INVALID_NETCONF,
            format!("{}: plugin has no type", path.display()),
        )
    })?;
    Ok(NetConfig {
        binary: bin_dir.join(ty),
        path,
        plugin,
    })
}

/// One plugin call.
pub struct Call<'a> {
    /// ADD, DEL or CHECK.
    pub command: &'static str,
    /// The sandbox id.
    pub container_id: &'a str,
    /// The netns path.
    pub netns: &'a str,
    /// CNI_ARGS pairs.
    pub args: BTreeMap<String, String>,
}

/// Run the plugin and wait for it, however long it takes (as libcni does).
/// Returns the result JSON for ADD.
pub async fn exec(
    conf: &NetConfig,
    bin_dir: &Path,
    call: Call<'_>,
) -> Result<Option<CniResult>, CniError> {
    let args: Vec<String> = call.args.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut child = Command::new(&conf.binary)
        .env("CNI_COMMAND", call.command)
        .env("CNI_CONTAINERID", call.container_id)
        .env("CNI_NETNS", call.netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", args.join(";"))
        .env("CNI_PATH", bin_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| {
            CniError::new(
                code::IO_FAILURE,
                format!("running CNI plugin {}: {e}", conf.binary.display()),
            )
        })?;
    let pid = child.id().unwrap_or(0);
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin
            .write_all(
                serde_json::to_vec(&conf.plugin)
                    .unwrap_or_default()
                    .as_slice(),
            )
            .await;
    }
    let what = format!(
        "cni {} {} (plugin {} pid {pid})",
        call.command,
        call.container_id.chars().take(12).collect::<String>(),
        conf.binary.display()
    );
    let out = wait_on(what, child.wait_with_output())
        .await
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("waiting for the CNI plugin: {e}")))?;
    if !out.status.success() {
        return Err(
            serde_json::from_slice::<CniError>(&out.stdout).unwrap_or_else(|_| {
                CniError::new(
                    code::IO_FAILURE,
                    format!(
                        "CNI plugin {} failed ({}): {}",
                        conf.binary.display(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                )
            }),
        );
    }
    if call.command != "ADD" {
        return Ok(None);
    }
    serde_json::from_slice(&out.stdout).map(Some).map_err(|e| {
        CniError::new(
            code::DECODE_FAILURE,
            format!("decoding the CNI plugin's result: {e}"),
        )
    })
}
