use std::io::Write as _;
use std::process::{Command, Stdio};

use anyhow::Result;

use crate::cluster::{Cluster, values};

fn txn(c: &Cluster, script: &str) -> Result<String> {
    let mut child = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &c.endpoints(), "txn"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "txn failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn etcdctl_put_get_delete_prefixes_revisions_and_txn() -> Result<()> {
    let c = Cluster::start(3, &[])?;
    assert_eq!(c.ok(&["put", "/registry/pods/a", "1"])?.trim(), "OK");
    c.ok(&["put", "/registry/pods/b", "2"])?;
    c.ok(&["put", "/registry/svc/x", "3"])?;
    c.ok(&["put", "/registry/pods/a", "4"])?;

    let out = c.ok(&["get", "--prefix", "/registry/pods/", "--print-value-only"])?;
    assert_eq!(values(&out), vec!["4", "2"]);
    // A fresh store starts at revision 1, so the first put is revision 2.
    let out = c.ok(&["get", "/registry/pods/a", "--rev=2", "--print-value-only"])?;
    assert_eq!(values(&out), vec!["1"]);
    let out = c.ok(&["get", "/registry/pods/a", "-w", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let kv = &v["kvs"][0];
    assert_eq!(
        (
            kv["create_revision"].as_i64(),
            kv["mod_revision"].as_i64(),
            kv["version"].as_i64()
        ),
        (Some(2), Some(5), Some(2))
    );
    assert_eq!(v["header"]["revision"].as_i64(), Some(5));
    let out = c.ok(&["get", "/registry/", "--prefix", "--keys-only"])?;
    assert_eq!(
        values(&out),
        vec!["/registry/pods/a", "/registry/pods/b", "/registry/svc/x"]
    );
    // etcdctl 3.4 has no --count-only; a limited range still reports the full count.
    let out = c.ok(&["get", "/registry/", "--prefix", "--limit=1", "-w", "json"])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(
        (
            v["count"].as_i64(),
            v["more"].as_bool(),
            v["kvs"].as_array().map(Vec::len)
        ),
        (Some(3), Some(true), Some(1))
    );
    let out = c.ok(&[
        "get",
        "/registry/",
        "--prefix",
        "--limit=1",
        "--sort-by=MODIFY",
        "--order=DESCEND",
        "--print-value-only",
    ])?;
    assert_eq!(values(&out), vec!["4"]);
    let out = c.ok(&["get", "/registry/pods/b", "--from-key", "--keys-only"])?;
    assert_eq!(values(&out), vec!["/registry/pods/b", "/registry/svc/x"]);
    // Serializable reads are served by any member.
    let out = c.ok(&[
        "get",
        "/registry/svc/x",
        "--consistency=s",
        "--print-value-only",
    ])?;
    assert_eq!(values(&out), vec!["3"]);

    // Compare-and-swap both ways.
    let out = txn(
        &c,
        "value(\"/registry/svc/x\") = \"3\"\n\nput /registry/svc/x 30\n\nput /registry/svc/x failed\n\n",
    )?;
    assert!(out.starts_with("SUCCESS"), "{out}");
    let out = txn(
        &c,
        "mod(\"/registry/svc/x\") = \"1\"\n\nput /registry/svc/x no\n\nget /registry/svc/x\n\n",
    )?;
    assert!(out.starts_with("FAILURE") && out.contains("30"), "{out}");
    // Create-if-absent, the API server's create.
    let out = txn(
        &c,
        "create(\"/registry/new\") = \"0\"\n\nput /registry/new v\n\n\n",
    )?;
    assert!(out.starts_with("SUCCESS"), "{out}");

    assert_eq!(c.ok(&["del", "--prefix", "/registry/pods/"])?.trim(), "2");
    assert_eq!(c.ok(&["del", "/registry/pods/a"])?.trim(), "0");
    let out = c.ok(&["get", "--prefix", "/registry/pods/"])?;
    assert!(out.trim().is_empty(), "{out}");
    // History stays readable until compaction.
    let out = c.ok(&["get", "/registry/pods/b", "--rev=3", "--print-value-only"])?;
    assert_eq!(values(&out), vec!["2"]);
    let err = c.err(&["get", "/registry/pods/b", "--rev=1000"])?;
    assert!(
        err.contains("etcdserver: mvcc: required revision is a future revision"),
        "{err}"
    );
    Ok(())
}
