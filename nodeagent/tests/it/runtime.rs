//! The CRI-shaped runtime with systemd, cnid and runc as real processes in
//! a node namespace: a pod's lifecycle, and S01's stuck per-container lock.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ackemu_base::clock::Clock;
use ackemu_proto::ackemu::node::v1 as pb;
use pb::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::util::{
    BIN, Netns, Proc, can_netns, list_netns, netns_name, node, text, wait_for, wait_socket,
};

struct Rig {
    dir: tempfile::TempDir,
    node: Netns,
    netns_prefix: String,
    _systemd: Proc,
    _cnid: Proc,
    _runtime: Proc,
    cri: RuntimeServiceClient<Channel>,
}

impl Rig {
    async fn start(systemd_extra: &[&str]) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let node = Netns::new("node");
        let p = dir.path();
        let run = p.join("run");
        let bin = p.join("bin");
        let conf = p.join("net.d");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&conf).unwrap();
        std::os::unix::fs::symlink(BIN, bin.join("ackemu-cni")).unwrap();
        let cnid_sock = run.join("cnid.sock");
        std::fs::write(
            conf.join("10-ackemu.conf"),
            serde_json::json!({
                "cniVersion": "1.0.0", "name": "ackemu", "type": "ackemu-cni",
                "socket": cnid_sock.display().to_string(),
            })
            .to_string(),
        )
        .unwrap();

        let mut cmd = node.enter();
        cmd.arg(BIN)
            .arg("systemd")
            .arg("--run-dir")
            .arg(&run)
            .args(systemd_extra);
        let systemd = Proc::spawn(cmd, &p.join("systemd.log"));
        wait_socket(&run.join("systemd/private")).await;
        wait_socket(&run.join("dbus/system_bus_socket")).await;

        let mut cmd = node.enter();
        cmd.arg(BIN)
            .args(["cnid", "--pod-cidr", "172.16.9.0/24", "--run-dir"])
            .arg(&run)
            .arg("--data-dir")
            .arg(p.join("cnid"));
        let cnid = Proc::spawn(cmd, &p.join("cnid.log"));
        wait_socket(&cnid_sock).await;

        let netns_prefix = format!("{}-", netns_name("pod"));
        let mut cmd = node.enter();
        cmd.arg(BIN)
            .arg("runtime")
            .arg("--run-dir")
            .arg(&run)
            .arg("--root")
            .arg(p.join("runtime"))
            .arg("--cni-conf-dir")
            .arg(&conf)
            .arg("--cni-bin-dir")
            .arg(&bin)
            .args(["--netns-prefix", &netns_prefix]);
        let runtime = Proc::spawn(cmd, &p.join("runtime.log"));
        let sock = run.join("runtime.sock");
        wait_socket(&sock).await;
        let cri = RuntimeServiceClient::new(ackemu_nodeagent::uds::channel(&sock));
        Rig {
            dir,
            node,
            netns_prefix,
            _systemd: systemd,
            _cnid: cnid,
            _runtime: runtime,
            cri,
        }
    }

    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn dump(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", "--unix-socket"])
            .arg(self.run_dir().join("runtime.sock"))
            .arg("http://localhost/debug/tasks")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn busctl_status(&self) -> String {
        let rd = self.run_dir().display().to_string();
        text(&node(&["busctl", "--run-dir", &rd, "status"]))
    }

    fn sandbox_config(&self, name: &str) -> pb::PodSandboxConfig {
        pb::PodSandboxConfig {
            metadata: Some(pb::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self
                .dir
                .path()
                .join("pods")
                .join(name)
                .display()
                .to_string(),
            ..Default::default()
        }
    }

    async fn run_sandbox(&mut self, name: &str) -> String {
        self.cri
            .run_pod_sandbox(pb::RunPodSandboxRequest {
                config: Some(self.sandbox_config(name)),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}"))
            .into_inner()
            .pod_sandbox_id
    }

    async fn create_sleeper(&mut self, sandbox: &str, name: &str) -> String {
        let sandbox_config = self.sandbox_config(name);
        self.cri
            .create_container(pb::CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(pb::ContainerConfig {
                    metadata: Some(pb::ContainerMetadata {
                        name: name.into(),
                        attempt: 0,
                    }),
                    image: Some(pb::ImageSpec {
                        image: "toolbox".into(),
                        annotations: Default::default(),
                    }),
                    command: vec!["/bin/sleep".into(), "1000".into()],
                    log_path: format!("{name}/0.log"),
                    ..Default::default()
                }),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {name}: {e}"))
            .into_inner()
            .container_id
    }

    async fn status(&mut self, id: &str) -> pb::ContainerStatusResponse {
        self.cri
            .container_status(pb::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
            .into_inner()
    }

    async fn list(&mut self) -> Vec<pb::Container> {
        self.cri
            .list_containers(pb::ListContainersRequest { filter: None })
            .await
            .unwrap()
            .into_inner()
            .containers
    }

    /// veths enslaved to the node's bridge.
    fn bridge_ports(&self) -> String {
        let out = self
            .node
            .enter()
            .args(["ip", "-o", "link", "show", "master", "cni0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pod_netns_left(&self) -> Vec<String> {
        list_netns()
            .into_iter()
            .filter(|n| n.starts_with(&self.netns_prefix))
            .collect()
    }
}

fn ns_id(path: &Path) -> (u64, u64) {
    let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.dev(), m.ino())
}

fn pid_of(st: &pb::ContainerStatusResponse) -> u32 {
    st.info
        .get("pid")
        .and_then(|p| p.parse().ok())
        .expect("ContainerStatus info has the pid")
}

#[tokio::test]
async fn pod_lifecycle_runs_the_process_in_the_pod_netns_and_cleans_up() {
    if !can_netns("pod_lifecycle_runs_the_process_in_the_pod_netns_and_cleans_up") {
        return;
    }
    let mut r = Rig::start(&[]).await;
    let sb = r.run_sandbox("web").await;
    let sst = r
        .cri
        .pod_sandbox_status(pb::PodSandboxStatusRequest {
            pod_sandbox_id: sb.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(sst.state, pb::PodSandboxState::SandboxReady as i32);
    assert_eq!(sst.network.as_ref().unwrap().ip, "172.16.9.2");
    let netns = PathBuf::from(sst.linux.unwrap().namespaces.unwrap().network_path);
    assert!(
        netns
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&r.netns_prefix),
        "{}",
        netns.display()
    );

    let id = r.create_sleeper(&sb, "sleeper").await;
    let st = r.status(&id).await;
    assert_eq!(
        st.status.unwrap().state,
        pb::ContainerState::ContainerCreated as i32
    );
    r.cri
        .start_container(pb::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap_or_else(|e| {
            panic!(
                "StartContainer: {e}; runtime log: {}",
                r._runtime.log_text()
            )
        });

    let st = r.status(&id).await;
    let pid = pid_of(&st);
    assert_eq!(
        st.status.as_ref().unwrap().state,
        pb::ContainerState::ContainerRunning as i32
    );
    let proc_ns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    assert_eq!(
        ns_id(&proc_ns),
        ns_id(&netns),
        "pid {pid} is in the pod's netns"
    );
    assert_ne!(ns_id(&proc_ns), ns_id(&r.node.path()));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    assert_eq!(cmdline, b"/bin/sleep\x001000\x00");
    // The container's clock is the node's: the runtime's scale, epoch and
    // offset, for the ackemu programs images run.
    let environ =
        String::from_utf8(std::fs::read(format!("/proc/{pid}/environ")).unwrap()).unwrap();
    let env: Vec<&str> = environ.split('\0').collect();
    assert!(env.contains(&"ACKEMU_TIME_SCALE=1"), "{env:?}");
    assert!(env.contains(&"ACKEMU_CLOCK_OFFSET=0ms"), "{env:?}");
    assert!(
        env.iter().any(|kv| kv
            .strip_prefix("ACKEMU_CLUSTER_EPOCH_MS=")
            .is_some_and(|v| v.parse::<i64>().is_ok())),
        "{env:?}"
    );
    let listed = r.list().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].pod_sandbox_id, sb);
    assert_eq!(listed[0].state, pb::ContainerState::ContainerRunning as i32);
    assert!(!r.bridge_ports().is_empty(), "the pod's veth is on cni0");

    r.cri
        .stop_container(pb::StopContainerRequest {
            container_id: id.clone(),
            timeout: 10,
        })
        .await
        .unwrap();
    wait_for("the container process is gone", || {
        !Path::new(&format!("/proc/{pid}")).exists()
    })
    .await;
    let st = r.status(&id).await.status.unwrap();
    assert_eq!(st.state, pb::ContainerState::ContainerExited as i32);
    assert_eq!(st.exit_code, 128 + 15, "killed by SIGTERM");
    r.cri
        .remove_container(pb::RemoveContainerRequest {
            container_id: id.clone(),
        })
        .await
        .unwrap();
    assert!(r.list().await.is_empty());
    r.cri
        .stop_pod_sandbox(pb::StopPodSandboxRequest {
            pod_sandbox_id: sb.clone(),
        })
        .await
        .unwrap();
    assert_eq!(r.bridge_ports(), "", "the veth is gone");
    r.cri
        .remove_pod_sandbox(pb::RemovePodSandboxRequest {
            pod_sandbox_id: sb.clone(),
        })
        .await
        .unwrap();
    assert!(r.pod_netns_left().is_empty(), "{:?}", r.pod_netns_left());
    assert!(!netns.exists());
    let sandboxes = r
        .cri
        .list_pod_sandbox(pb::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(sandboxes.is_empty(), "{sandboxes:?}");
}

#[tokio::test]
async fn cookie_overflow_leaves_container_status_waiting_on_the_container_lock() {
    if !can_netns("cookie_overflow_leaves_container_status_waiting_on_the_container_lock") {
        return;
    }
    let mut r = Rig::start(&["--initial-cookie", "0xffffffd0"]).await;
    let sb = r.run_sandbox("churn").await;
    let clock = Clock::real();

    // Start containers one by one until a start blocks in runc on the bus.
    let mut stuck = None;
    for i in 0..20 {
        let id = r.create_sleeper(&sb, &format!("c{i}")).await;
        let mut cri = r.cri.clone();
        let cid = id.clone();
        let mut start = Box::pin(async move {
            cri.start_container(pb::StartContainerRequest { container_id: cid })
                .await
        });
        let want = format!("runc run {}", &id[..12]);
        let deadline = clock.now() + crate::util::DEADLINE;
        loop {
            tokio::select! {
                res = &mut start => {
                    res.unwrap_or_else(|e| panic!("start c{i} before the overflow: {e}"));
                    break;
                }
                () = clock.sleep(std::time::Duration::from_millis(50)) => {}
            }
            if r.busctl_status().contains("CookieOverflow=yes") && r.dump().contains(&want) {
                stuck = Some((id.clone(), start));
                break;
            }
            assert!(
                clock.now() < deadline,
                "start c{i} neither finished nor blocked"
            );
        }
        if stuck.is_some() {
            break;
        }
    }
    let (id, mut start) = stuck.expect("20 container starts did not overflow the cookie");

    // ContainerStatus for that container waits on its lock.
    let mut cri = r.cri.clone();
    let cid = id.clone();
    let mut status = Box::pin(async move {
        cri.container_status(pb::ContainerStatusRequest {
            container_id: cid,
            verbose: false,
        })
        .await
    });
    let waiting = format!(
        "container {} lock (ContainerStatus; held by StartContainer)",
        &id[..12]
    );
    let deadline = clock.now() + crate::util::DEADLINE;
    loop {
        tokio::select! {
            res = &mut status => panic!("ContainerStatus returned while runc is stuck: {res:?}"),
            () = clock.sleep(std::time::Duration::from_millis(50)) => {}
        }
        if r.dump().contains(&waiting) {
            break;
        }
        assert!(
            clock.now() < deadline,
            "no waiter in the dump: {}",
            r.dump()
        );
    }
    let dump = r.dump();
    assert!(dump.contains(&format!("runc run {}", &id[..12])), "{dump}");
    assert!(
        futures::poll!(&mut start).is_pending(),
        "the start is still blocked"
    );
    // The list is a lock-free snapshot and still answers.
    assert!(r.list().await.iter().any(|c| c.id == id));

    // The heal: daemon-reexec releases runc, then the lock.
    let rd = r.run_dir().display().to_string();
    let out = node(&["systemctl", "--run-dir", &rd, "daemon-reexec"]);
    assert!(out.status.success(), "{}", text(&out));
    let _ = clock
        .timeout(crate::util::DEADLINE, &mut start)
        .await
        .expect("start returns after daemon-reexec");
    let st = clock
        .timeout(crate::util::DEADLINE, &mut status)
        .await
        .expect("status returns after daemon-reexec")
        .expect("ContainerStatus");
    assert!(st.into_inner().status.is_some());

    // Everything goes away with the sandbox.
    r.cri
        .remove_pod_sandbox(pb::RemovePodSandboxRequest { pod_sandbox_id: sb })
        .await
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}; {}", r._runtime.log_text()));
    assert!(r.list().await.is_empty());
    assert!(r.pod_netns_left().is_empty());
    assert_eq!(r.bridge_ports(), "");
}
