//! Architecture Invariant: component crates never depend on each other, and
//! `lib/` crates never depend on component crates (ARCHITECTURE.md).

use std::collections::BTreeSet;
use std::process::Command;

use crate::util::{TestResult, fail};

const COMPONENTS: &[&str] = &[
    "ackemu-store",
    "ackemu-apiserver",
    "ackemu-scheduler",
    "ackemu-controller-manager",
    "ackemu-nodeagent",
    "ackemu-cloudsim",
    "ackemu-workloads",
];
const LIBS: &[&str] = &["ackemu-base", "ackemu-proto", "ackemu-kube"];

/// Violations of the dependency rules in a `cargo metadata` document.
pub fn violations(meta: &serde_json::Value) -> Vec<String> {
    let components: BTreeSet<&str> = COMPONENTS.iter().copied().collect();
    let mut out = Vec::new();
    for pkg in meta["packages"].as_array().into_iter().flatten() {
        let name = pkg["name"].as_str().unwrap_or_default();
        let is_component = components.contains(name);
        let is_lib = LIBS.contains(&name);
        if !is_component && !is_lib {
            continue;
        }
        for dep in pkg["dependencies"].as_array().into_iter().flatten() {
            let dep_name = dep["name"].as_str().unwrap_or_default();
            if components.contains(dep_name) && dep_name != name {
                let what = if is_lib { "library" } else { "component" };
                out.push(format!(
                    "{what} crate {name} depends on component crate {dep_name}"
                ));
            }
        }
    }
    out
}

pub fn component_crates_do_not_depend_on_each_other() -> TestResult {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
            manifest,
        ])
        .output()
        .map_err(|e| fail(format!("cargo metadata: {e}")))?;
    if !out.status.success() {
        return Err(fail(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| fail(e.to_string()))?;
    let v = violations(&meta);
    if !v.is_empty() {
        return Err(fail(v.join("\n")));
    }
    // The check itself must be able to fail: a synthetic workspace where the
    // scheduler depends on the store is rejected.
    let bad = serde_json::json!({"packages": [
        {"name": "ackemu-scheduler", "dependencies": [{"name": "ackemu-store"}]},
        {"name": "ackemu-kube", "dependencies": [{"name": "ackemu-apiserver"}]},
        {"name": "ackemu", "dependencies": [{"name": "ackemu-store"}]}
    ]});
    let v = violations(&bad);
    if v.len() != 2 {
        return Err(fail(format!("checker missed violations: {v:?}")));
    }
    Ok(())
}
