//! `ackemu cloud` against a real cloudsim, switched by `ackemu chaos`.

use crate::util::{ChildProc, TestResult, ackemu, ackemu_ok, fail};

pub async fn failpoint_on_a_cloud_action_through_ackemu_cloud() -> TestResult {
    let dir = tempfile::tempdir().map_err(|e| fail(e.to_string()))?;
    let d = dir.path().display().to_string();
    let child = ChildProc::start(&[
        (crate::child::ENV, "cloudsim".to_string()),
        ("ACKEMU_IT_DATA_DIR", d.clone()),
    ])?;
    let line = child.next_line()?;
    let grpc = line
        .strip_prefix("cloud ")
        .ok_or_else(|| fail(format!("expected the cloud address, got {line:?}")))?;
    let profile = format!("{d}/profile.json");
    let endpoint = format!("http://{grpc}");
    let call = |args: &[&str]| {
        let mut full = vec!["cloud", "--profile-file", &profile, "--endpoint", &endpoint];
        full.extend_from_slice(args);
        ackemu(&full)
    };

    let (ok, out, err) = call(&[
        "vpc",
        "CreateVpc",
        "--RegionId",
        "cn-hangzhou",
        "--CidrBlock",
        "192.168.0.0/16",
    ]);
    if !ok {
        return Err(fail(format!("CreateVpc failed: {err}")));
    }
    if !out.contains("vpc-") {
        return Err(fail(format!("CreateVpc answered {out}")));
    }
    let (ok, out, err) = call(&["vpc", "DescribeVpcs", "--RegionId", "cn-hangzhou"]);
    if !ok || !out.contains("192.168.0.0/16") {
        return Err(fail(format!("DescribeVpcs: {out} {err}")));
    }

    // The cloud misbehaves on one action only.
    ackemu_ok(&[
        "chaos",
        "failpoint",
        "set",
        "--target",
        &child.admin,
        "cloud/vpc/DescribeVpcs",
        "return(Throttling.User)",
    ])?;
    let (ok, _, err) = call(&["vpc", "DescribeVpcs", "--RegionId", "cn-hangzhou"]);
    if ok || !err.contains("Throttling.User") {
        return Err(fail(format!("expected Throttling.User, got ok={ok} {err}")));
    }
    let (ok, _, err) = call(&["ecs", "DescribeInstances", "--RegionId", "cn-hangzhou"]);
    if !ok {
        return Err(fail(format!("other actions must keep working: {err}")));
    }
    ackemu_ok(&[
        "chaos",
        "failpoint",
        "clear",
        "--target",
        &child.admin,
        "cloud/vpc/DescribeVpcs",
    ])?;
    let (ok, _, err) = call(&["vpc", "DescribeVpcs", "--RegionId", "cn-hangzhou"]);
    if !ok {
        return Err(fail(format!("DescribeVpcs after clear: {err}")));
    }
    // Bad input: an unknown action gets the cloud's error code.
    let (ok, _, err) = call(&["vpc", "DescribeNothing"]);
    if ok || !err.to_ascii_lowercase().contains("invalidaction") {
        return Err(fail(format!("unknown action: ok={ok} {err}")));
    }
    Ok(())
}
