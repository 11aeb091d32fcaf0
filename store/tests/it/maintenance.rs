use anyhow::Result;

use crate::cluster::{Cluster, values};

#[test]
fn etcdctl_quota_alarm_compact_defrag_disarm() -> Result<()> {
    let c = Cluster::start(3, &["--quota-backend-bytes", "65536"])?;
    let status = c.ok(&["endpoint", "status", "-w", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&status)?;
    assert_eq!(v.as_array().map(Vec::len), Some(3));
    assert!(
        v[0]["Status"]["leader"].as_u64().unwrap_or(0) != 0,
        "{status}"
    );
    assert_eq!(v[0]["Status"]["version"].as_str(), Some("3.4.23"));

    // Overwrite one key until the backend passes the quota.
    let value = "x".repeat(1024);
    let mut nospace = None;
    for _ in 0..200 {
        let out = c.ctl(&["put", "/quota/k", &value]);
        if !out.status.success() {
            nospace = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let err = nospace.expect("the quota is reached within 200 KiB of writes");
    assert!(
        err.contains("etcdserver: mvcc: database space exceeded"),
        "{err}"
    );
    // As in etcd, the failing write raises the alarm through Raft
    // asynchronously: poll (bounded) until the member we ask has applied it.
    let mut alarms = String::new();
    for _ in 0..200 {
        alarms = c.ok(&["alarm", "list"])?;
        if alarms.contains("alarm:NOSPACE") {
            break;
        }
    }
    assert!(alarms.contains("alarm:NOSPACE"), "{alarms}");
    // Every write fails, reads still work.
    let err = c.err(&["put", "/quota/other", "v"])?;
    assert!(
        err.contains("etcdserver: mvcc: database space exceeded"),
        "{err}"
    );
    assert_eq!(
        values(&c.ok(&["get", "/quota/k", "--print-value-only"])?),
        vec![value.as_str()]
    );
    let status = c.ok(&["endpoint", "status", "-w", "json"])?;
    assert!(status.contains("NOSPACE"), "{status}");

    // The documented recovery: compact, defragment, disarm.
    let rev: serde_json::Value = serde_json::from_str(&c.ok(&["get", "/quota/k", "-w", "json"])?)?;
    let rev = rev["header"]["revision"]
        .as_i64()
        .expect("revision")
        .to_string();
    c.ok(&["compact", &rev])?;
    let err = c.err(&["put", "/quota/other", "v"])?;
    assert!(
        err.contains("database space exceeded"),
        "compaction alone does not disarm: {err}"
    );
    let defrag = c.ok(&["defrag"])?;
    assert_eq!(
        defrag.matches("Finished defragmenting etcd member").count(),
        3,
        "{defrag}"
    );
    c.ok(&["alarm", "disarm"])?;
    assert!(c.ok(&["alarm", "list"])?.trim().is_empty());
    assert_eq!(c.ok(&["put", "/quota/other", "v"])?.trim(), "OK");

    // Every member applied the same history.
    let hashes = c.ok(&["endpoint", "hashkv", "-w", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&hashes)?;
    let hs: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["HashKV"]["hash"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        hs.len() == 3 && hs.iter().all(|h| *h == hs[0] && *h != 0),
        "{hashes}"
    );
    Ok(())
}

/// etcdctl 3.4's per-endpoint calls (status, hashkv, health, alarm,
/// defrag) with `http://` endpoints send the URL as the HTTP/2
/// `:authority`; they work as against etcd.
#[test]
fn etcdctl_takes_endpoint_urls() -> Result<()> {
    let c = Cluster::start(1, &[])?;
    let url = c.members[0].client_url();
    for ep in [url.clone(), format!("{url}/")] {
        let run = |args: &[&str]| -> Result<String> {
            let out = c.ctl_at(&ep, args);
            anyhow::ensure!(
                out.status.success(),
                "etcdctl --endpoints {ep} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        };
        assert_eq!(run(&["put", "k", "v"])?.trim(), "OK");
        let status: serde_json::Value =
            serde_json::from_str(&run(&["endpoint", "status", "-w", "json"])?)?;
        assert_eq!(status[0]["Endpoint"].as_str(), Some(ep.as_str()));
        assert_eq!(status[0]["Status"]["version"].as_str(), Some("3.4.23"));
        let hash: serde_json::Value =
            serde_json::from_str(&run(&["endpoint", "hashkv", "-w", "json"])?)?;
        assert!(
            hash[0]["HashKV"]["hash"].as_u64().unwrap_or(0) != 0,
            "{hash}"
        );
        // etcdctl prints health to stderr.
        let health = c.ctl_at(&ep, &["endpoint", "health"]);
        let text = String::from_utf8_lossy(&health.stderr);
        assert!(
            health.status.success() && text.contains("is healthy"),
            "{text}"
        );
        assert!(run(&["alarm", "list"])?.trim().is_empty());
        assert!(run(&["defrag"])?.contains("Finished defragmenting etcd member"));
    }
    Ok(())
}
