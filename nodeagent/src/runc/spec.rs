//! The bundle's `config.json` (an OCI runtime spec subset) and runc's
//! per-container state.

use serde::{Deserialize, Serialize};

/// `process` of the spec.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Process {
    /// argv; `args[0]` is the program.
    #[serde(default)]
    pub args: Vec<String>,
    /// `KEY=value` entries.
    #[serde(default)]
    pub env: Vec<String>,
    /// Working directory.
    #[serde(default)]
    pub cwd: String,
}

/// The bundle's `config.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// What to run.
    pub process: Process,
    /// Network namespace to join (`linux.namespaces[network].path`).
    #[serde(default)]
    pub netns: Option<String>,
    /// systemd cgroup path, `slice:prefix:name`.
    #[serde(default)]
    pub cgroups_path: String,
    /// Where the process' stdout goes (a FIFO the runtime reads).
    #[serde(default)]
    pub stdout: Option<String>,
    /// Where the process' stderr goes.
    #[serde(default)]
    pub stderr: Option<String>,
    /// Bind mounts made in the container's private mount namespace.
    #[serde(default)]
    pub mounts: Vec<Mount>,
}

/// One bind mount (`mounts[]` of the OCI spec, type `bind`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Mount {
    /// Path inside the container.
    pub destination: String,
    /// Host path.
    pub source: String,
    /// Mounted read-only (`ro` in the OCI options).
    #[serde(default)]
    pub readonly: bool,
}

impl Spec {
    /// (parent slice, scope unit) from `cgroupsPath` as runc's systemd
    /// driver reads it: `kubepods-pod1.slice:cri-ackemu:abc` → slice
    /// `kubepods-pod1.slice`, scope `cri-ackemu-abc.scope`.
    pub fn scope(&self, id: &str) -> (String, String) {
        let parts: Vec<&str> = self.cgroups_path.split(':').collect();
        match parts.as_slice() {
            [slice, prefix, name] => {
                let slice = if slice.is_empty() {
                    "system.slice"
                } else {
                    slice
                };
                (slice.to_string(), format!("{prefix}-{name}.scope"))
            }
            _ => ("system.slice".into(), format!("runc-{id}.scope")),
        }
    }
}

/// `<root>/<id>/state.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct State {
    /// Container id.
    pub id: String,
    /// The container process.
    pub pid: u32,
    /// Bundle directory.
    pub bundle: String,
    /// Network namespace path.
    pub netns: Option<String>,
    /// The scope unit ("" without systemd).
    pub scope: String,
    /// The process environment (for exec).
    pub env: Vec<String>,
    /// Working directory (for exec).
    pub cwd: String,
    /// Whether the process has its own mount namespace (exec joins it).
    #[serde(default)]
    pub mount_ns: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroups_path_to_scope() {
        let cases = [
            (
                "kubepods-besteffort-pod1.slice:cri-ackemu:abc",
                "kubepods-besteffort-pod1.slice",
                "cri-ackemu-abc.scope",
            ),
            (":cri-ackemu:abc", "system.slice", "cri-ackemu-abc.scope"),
            ("", "system.slice", "runc-c1.scope"),
        ];
        for (path, slice, scope) in cases {
            let s = Spec {
                cgroups_path: path.into(),
                ..Default::default()
            };
            assert_eq!(
                s.scope("c1"),
                (slice.to_string(), scope.to_string()),
                "{path}"
            );
        }
    }
}
