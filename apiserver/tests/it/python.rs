//! The official `kubernetes` Python client (PyPI) lists, watches with
//! bookmarks, creates, patches and deletes.

use std::time::Duration;

use crate::harness::Cluster;

const SCRIPT: &str = r#"
import json, sys
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
ns = "default"
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py", labels={"app": "py"}), data={"a": "1"})
v1.create_namespaced_config_map(ns, cm)
lst = v1.list_namespaced_config_map(ns, label_selector="app=py")
assert [i.metadata.name for i in lst.items] == ["py"], lst
rv = lst.metadata.resource_version
events = []
w = watch.Watch()
patched = False
for ev in w.stream(v1.list_namespaced_config_map, ns, label_selector="app=py", resource_version=rv,
                   allow_watch_bookmarks=True, timeout_seconds=20):
    events.append(ev["type"])
    if not patched:
        patched = True
        v1.patch_namespaced_config_map("py", ns, {"data": {"a": "2"}})
    elif ev["type"] == "MODIFIED":
        assert ev["object"].data["a"] == "2", ev["object"]
        v1.delete_namespaced_config_map("py", ns)
    elif "DELETED" in events and "BOOKMARK" in events:
        w.stop()
try:
    v1.read_namespaced_config_map("py", ns)
    raise SystemExit("still there")
except client.exceptions.ApiException as e:
    assert e.status == 404, e
print(json.dumps(events))
"#;

#[tokio::test]
async fn python_client_lists_watches_with_bookmarks_and_writes() -> anyhow::Result<()> {
    let c =
        Cluster::start_with(|cfg| cfg.api.bookmark_interval = Duration::from_millis(200)).await?;
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(c.kubeconfig())
        .output()
        .await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<String> = serde_json::from_str(stdout.trim())?;
    assert!(events.contains(&"MODIFIED".to_owned()), "{events:?}");
    assert!(events.contains(&"DELETED".to_owned()), "{events:?}");
    assert!(events.contains(&"BOOKMARK".to_owned()), "{events:?}");
    Ok(())
}
