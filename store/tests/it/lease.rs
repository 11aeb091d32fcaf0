use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::cluster::{Cluster, poll, values};

fn lease_id(granted: &str) -> Result<String> {
    // "lease 694d77aa9e38260f granted with TTL(2s)"
    granted
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
        .context("lease id in etcdctl output")
}

#[test]
fn etcdctl_lease_grant_keepalive_and_expiry() -> Result<()> {
    let c = Cluster::start(3, &[])?;
    let granted = c.ok(&["lease", "grant", "3"])?;
    assert!(granted.contains("granted with TTL(3s)"), "{granted}");
    let id = lease_id(&granted)?;
    c.ok(&["put", "/lease/k", "v", &format!("--lease={id}")])?;
    let out = c.ok(&["lease", "timetolive", &id, "--keys"])?;
    assert!(out.contains("attached keys([/lease/k])"), "{out}");
    let list = c.ok(&["lease", "list"])?;
    assert!(list.contains(&id), "{list}");

    // Keep-alives from every member (followers forward to the leader).
    for m in &c.members {
        let out = c.ctl_at(&m.endpoint(), &["lease", "keep-alive", "--once", &id]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("keepalived with TTL(3)"),
            "{text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Without keep-alives the leader expires the lease and its key goes.
    poll(
        "the leased key to be deleted by expiry",
        Duration::from_secs(20),
        || {
            let out = c.ok(&["get", "/lease/k", "--print-value-only"]).ok()?;
            values(&out).is_empty().then_some(())
        },
    )?;
    let out = c.ok(&["lease", "timetolive", &id])?;
    assert!(out.contains("already expired"), "{out}");

    // A short TTL is raised to the minimum, not refused.
    let short = c.ok(&["lease", "grant", "1"])?;
    assert!(short.contains("granted with TTL(2s)"), "{short}");
    let short_id = lease_id(&short)?;
    assert!(c.ok(&["lease", "revoke", &short_id])?.contains("revoked"));
    Ok(())
}
