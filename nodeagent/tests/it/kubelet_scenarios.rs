//! S01 and S02 through the kubelet: a stuck runtime call blocks PLEG's
//! relist, and after the threshold the node goes NotReady with Kubernetes'
//! message and log line. Run at a high `--time-scale` so 3m passes in
//! seconds; every wait is on a condition with a deadline.

use std::time::Duration;

use serde_json::{Value, json};

use crate::kubelet::{Rig, app_pod, eventually};
use crate::util::{can_netns, node, text};

fn pleg_message_ok(m: &str) -> bool {
    // `PLEG is not healthy: pleg was last seen active 3m0.1s ago; threshold is 3m0s`
    let Some(rest) = m.strip_prefix("PLEG is not healthy: pleg was last seen active 3m") else {
        return false;
    };
    let Some((secs, tail)) = rest.split_once("s ago") else {
        return false;
    };
    !secs.is_empty()
        && secs.chars().all(|c| c.is_ascii_digit() || c == '.')
        && tail == "; threshold is 3m0s"
}

fn log_has_skipping_line(log: &str) -> bool {
    log.lines().any(|l| {
        l.split_once("skipping pod synchronization - [")
            .and_then(|(_, r)| r.strip_suffix(']'))
            .is_some_and(pleg_message_ok)
    })
}

async fn wait_pleg_not_ready(rig: &Rig) -> Value {
    eventually(
        "node Ready=False with the PLEG message",
        Duration::from_secs(120),
        || async {
            Ok(rig.ready().await?.filter(|c| {
                c["status"] == "False"
                    && c["reason"] == "KubeletNotReady"
                    && c["message"].as_str().is_some_and(pleg_message_ok)
            }))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()))
}

fn quick_pod(name: &str) -> Value {
    let mut p = app_pod(name);
    p["spec"]["terminationGracePeriodSeconds"] = json!(1);
    p["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("readinessProbe");
    p
}

#[test]
fn the_pleg_message_matcher_accepts_kubernetes_texts_only() {
    assert!(pleg_message_ok(
        "PLEG is not healthy: pleg was last seen active 3m0.1s ago; threshold is 3m0s"
    ));
    assert!(pleg_message_ok(
        "PLEG is not healthy: pleg was last seen active 3m26.301826001s ago; threshold is 3m0s"
    ));
    assert!(!pleg_message_ok(
        "PLEG is not healthy: pleg was last seen active 2m59s ago; threshold is 3m0s"
    ));
    assert!(!pleg_message_ok(
        "PLEG is not healthy: pleg has yet to be successful"
    ));
    assert!(log_has_skipping_line(
        "I1202 kubelet.go] skipping pod synchronization - [PLEG is not healthy: pleg was last seen active 3m0.000091019s ago; threshold is 3m0s]"
    ));
}

#[tokio::test]
async fn s01_cookie_overflow_blocks_pleg_and_the_node_goes_not_ready() {
    if !can_netns("s01_cookie_overflow_blocks_pleg_and_the_node_goes_not_ready") {
        return;
    }
    let rig = Rig::start(60.0, &["--initial-cookie", "0xffffff60"])
        .await
        .expect("rig");
    rig.wait_ready("True", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    // Normal pod churn: create a pod, wait for it, delete the previous one.
    let mut overflowed = false;
    for i in 0..40 {
        let name = format!("churn-{i}");
        rig.create_pod(quick_pod(&name)).await.unwrap();
        let state = eventually(
            &format!("{name} Running or the bus overflowed"),
            Duration::from_secs(60),
            || async {
                if rig.busctl_status().contains("CookieOverflow=yes") {
                    return Ok(Some(true));
                }
                let p = rig.pod(&name).await?;
                Ok((p["status"]["phase"] == "Running").then_some(false))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
        if state {
            overflowed = true;
            break;
        }
        if i > 0 {
            rig.delete_pod(&format!("churn-{}", i - 1)).await.unwrap();
        }
    }
    assert!(
        overflowed,
        "40 pods did not overflow the cookie: {}",
        rig.busctl_status()
    );
    let ready = wait_pleg_not_ready(&rig).await;
    assert_eq!(ready["reason"], "KubeletNotReady");
    let log = rig.kubelet_log();
    assert!(
        log_has_skipping_line(&log),
        "no skipping line in:\n{}",
        rig.logs()
    );
    // New pods stay ContainerCreating / Pending meanwhile.
    rig.create_pod(quick_pod("after")).await.unwrap();
    let p = rig.pod("after").await.unwrap();
    assert_ne!(p["status"]["phase"], "Running");
    // The heal: daemon-reexec releases the stuck runc, PLEG relists again.
    let rd = rig.run_dir().display().to_string();
    let out = node(&["systemctl", "--run-dir", &rd, "daemon-reexec"]);
    assert!(out.status.success(), "{}", text(&out));
    rig.wait_ready("True", Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
}

#[tokio::test]
async fn s02_hung_netlink_blocks_pleg_and_a_restarted_kubelet_is_ready_then_not_ready() {
    if !can_netns("s02_hung_netlink_blocks_pleg_and_a_restarted_kubelet_is_ready_then_not_ready") {
        return;
    }
    let mut rig = Rig::start(60.0, &[]).await.expect("rig");
    rig.wait_ready("True", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    rig.create_pod(quick_pod("victim")).await.unwrap();
    eventually("victim Running", Duration::from_secs(60), || async {
        Ok((rig.pod("victim").await?["status"]["phase"] == "Running").then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    // A netlink call that never returns, inside the daemon's lock.
    rig.start_cnid(&[], "cnid/netlink/recv=hang").await;
    rig.delete_pod("victim").await.unwrap();
    wait_pleg_not_ready(&rig).await;
    // Restarting the kubelet: Ready again, until its first relist is 3m old.
    rig.start_kubelet();
    rig.wait_ready("True", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    wait_pleg_not_ready(&rig).await;
    assert!(log_has_skipping_line(&rig.kubelet_log()), "{}", rig.logs());
    // The heal: restart the CNI daemon; the stuck call fails, the lock goes.
    rig.start_cnid(&[], "").await;
    rig.wait_ready("True", Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    eventually("victim gone", Duration::from_secs(60), || async {
        Ok(rig.pod("victim").await.is_err().then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
}
