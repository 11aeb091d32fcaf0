//! The scenarios, end to end, each on a fresh local cluster built from
//! this workspace's binaries (root: the cluster runs on the VPC data plane).

use std::path::PathBuf;

fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().unwrap_or(deps).to_path_buf()
}

fn skip_reason() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("scenarios need root (network namespaces, TUN)".into());
    }
    for b in [
        "ackemu",
        "ackemu-store",
        "ackemu-cloudsim",
        "ackemu-apiserver",
    ] {
        if !bin_dir().join(b).exists() {
            return Some(format!("{b} is not built (cargo build --workspace)"));
        }
    }
    None
}

async fn scenario(id: &str) {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let s = ackemu_tests::find(id).expect("scenario exists");
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = ackemu_tests::run_local(
        s,
        &bin_dir().join("ackemu"),
        &tmp.path().join("c"),
        60.0,
        true,
    )
    .await;
    let report = ackemu_tests::report::table(std::slice::from_ref(&run));
    println!("{report}");
    if !run.passed() {
        // Keep the cluster's logs and state for whoever reads the failure.
        let kept = tmp.keep();
        panic!(
            "{report}\nthe cluster's files are kept in {}",
            kept.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s01_node_notready_systemd_cookie() {
    scenario("S01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s02_node_notready_cni_netlink_hang() {
    scenario("S02").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s03_namespace_stuck_terminating() {
    scenario("S03").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s04_sg_pod_cidr_rule_removed() {
    scenario("S04").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s05_sg_node_moved_out() {
    scenario("S05").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s06_sg_egress_blocks_cloud() {
    scenario("S06").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s07_dns_service_ip_changed() {
    scenario("S07").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s08_mesh_ca_expired() {
    scenario("S08").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s09_autoscale_by_reservation() {
    scenario("S09").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_node_join_trust() {
    scenario("S10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_private_image_pull() {
    scenario("S11").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_node_released_out_of_band() {
    scenario("S12").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s13_store_leader_loss() {
    scenario("S13").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s14_store_space_quota() {
    scenario("S14").await;
}

/// The generic chaos mode, bounded: six seeded faults (one of each kind) under load, then the
/// invariants after a fault-free phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_random_faults_under_load_keep_the_invariants() {
    if let Some(why) = skip_reason() {
        println!("skipped: {why}");
        return;
    }
    let o = ackemu_tests::chaos::ChaosOptions {
        seed: 20261203,
        faults: 6,
        nodes: 2,
        fault_duration: std::time::Duration::from_secs(180),
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let run = ackemu_tests::chaos_local(
        &o,
        &bin_dir().join("ackemu"),
        &tmp.path().join("c"),
        60.0,
        true,
    )
    .await;
    let report = ackemu_tests::report::table(std::slice::from_ref(&run));
    println!("{report}");
    if !run.passed() {
        let kept = tmp.keep();
        panic!(
            "{report}\nthe cluster's files are kept in {}",
            kept.display()
        );
    }
}

/// A scenario on a fresh docker-compose cluster (the image built from this
/// workspace's binaries when missing or older); skipped without Docker.
async fn compose_scenario(id: &str) {
    if let Err(why) = ackemu_tests::compose::available().await {
        println!("skipped: {why}");
        return;
    }
    for b in ["ackemu", "ackemu-hostd", "ackemu-vnic", "ackemu-store"] {
        if !bin_dir().join(b).exists() {
            println!("skipped: {b} is not built (cargo build --workspace)");
            return;
        }
    }
    let s = ackemu_tests::find(id).expect("scenario exists");
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = ackemu_tests::compose::ComposeOptions::new(
        ackemu_tests::compose::workspace_root(),
        tmp.path().join("c"),
        &format!("ackemu-it-{}", id.to_lowercase()),
        "10.213.9",
        60.0,
    );
    let run = ackemu_tests::run_compose(s, &bin_dir().join("ackemu"), &base, true).await;
    let report = ackemu_tests::report::table(std::slice::from_ref(&run));
    println!("{report}");
    if !run.passed() {
        let kept = tmp.keep();
        panic!(
            "{report}\nthe cluster's files are kept in {}",
            kept.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_s03_namespace_stuck_terminating() {
    compose_scenario("S03").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_s04_sg_pod_cidr_rule_removed() {
    compose_scenario("S04").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_s07_dns_service_ip_changed() {
    compose_scenario("S07").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compose_s13_store_leader_loss() {
    compose_scenario("S13").await;
}

#[test]
fn junit_names_each_scenario_and_marks_failures() {
    let s = ackemu_tests::find("s14").unwrap();
    let mut failed = ackemu_tests::scenario::Run::failed_start(s);
    failed.error = Some("starting the cluster: <boom> & \"more\"".into());
    let x = ackemu_tests::report::junit(std::slice::from_ref(&failed));
    assert!(x.contains(r#"tests="1" failures="1""#), "{x}");
    assert!(x.contains(r#"name="S14 store-space-quota""#), "{x}");
    assert!(x.contains("&lt;boom&gt; &amp; &quot;more&quot;"), "{x}");
    let t = ackemu_tests::report::table(std::slice::from_ref(&failed));
    assert!(
        t.contains("FAIL") && t.contains("error: starting the cluster"),
        "{t}"
    );
    let err = ackemu_tests::find("nope").unwrap_err().to_string();
    let ids: Vec<&str> = ackemu_tests::scenarios::ALL.iter().map(|s| s.id).collect();
    assert!(err.contains(&ids.join(", ")), "{err}");
    assert!(ids.contains(&"S14"), "{ids:?}");
}
