//! A node for the kubelet-API and mount tests: systemd, cnid and the
//! runtime as real processes in a node namespace, and helpers to run pods.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ackemu_proto::ackemu::node::v1 as pb;
use pb::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::util::{BIN, Netns, Proc, netns_name, wait_socket};

pub struct Node {
    pub dir: tempfile::TempDir,
    pub node: Netns,
    pub runtime: Proc,
    _systemd: Proc,
    _cnid: Proc,
    pub cri: RuntimeServiceClient<Channel>,
}

/// A container to create.
pub struct Ctr<'a> {
    pub name: &'a str,
    pub image: &'a str,
    pub command: Vec<String>,
    pub mounts: Vec<pb::Mount>,
    pub attempt: u32,
}

impl Node {
    pub async fn start(pod_cidr: &str) -> Node {
        Node::start_with(pod_cidr, &[]).await
    }

    /// With extra `runtime` flags.
    pub async fn start_with(pod_cidr: &str, runtime_args: &[&str]) -> Node {
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
        cmd.arg(BIN).arg("systemd").arg("--run-dir").arg(&run);
        let systemd = Proc::spawn(cmd, &p.join("systemd.log"));
        wait_socket(&run.join("dbus/system_bus_socket")).await;
        let mut cmd = node.enter();
        cmd.arg(BIN)
            .args(["cnid", "--pod-cidr", pod_cidr, "--run-dir"])
            .arg(&run)
            .arg("--data-dir")
            .arg(p.join("cnid"));
        let cnid = Proc::spawn(cmd, &p.join("cnid.log"));
        wait_socket(&cnid_sock).await;
        let prefix = format!("{}-", netns_name("pod"));
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
            .args(["--netns-prefix", &prefix])
            .args(runtime_args);
        let runtime = Proc::spawn(cmd, &p.join("runtime.log"));
        let sock = run.join("runtime.sock");
        wait_socket(&sock).await;
        let cri = RuntimeServiceClient::new(ackemu_nodeagent::uds::channel(&sock));
        Node {
            dir,
            node,
            runtime,
            _systemd: systemd,
            _cnid: cnid,
            cri,
        }
    }

    pub fn runtime_socket(&self) -> PathBuf {
        self.dir.path().join("run/runtime.sock")
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn sandbox_config(&self, ns: &str, name: &str) -> pb::PodSandboxConfig {
        pb::PodSandboxConfig {
            metadata: Some(pb::PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: ns.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: self
                .path(&format!("pods/{ns}_{name}_uid-{name}"))
                .display()
                .to_string(),
            labels: [
                ("io.kubernetes.pod.namespace".to_string(), ns.to_string()),
                ("io.kubernetes.pod.name".to_string(), name.to_string()),
                ("io.kubernetes.pod.uid".to_string(), format!("uid-{name}")),
            ]
            .into(),
            ..Default::default()
        }
    }

    pub async fn run_sandbox(&mut self, ns: &str, name: &str) -> String {
        self.cri
            .run_pod_sandbox(pb::RunPodSandboxRequest {
                config: Some(self.sandbox_config(ns, name)),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox {name}: {e}"))
            .into_inner()
            .pod_sandbox_id
    }

    /// Create and start a container labelled as the kubelet labels them.
    pub async fn run_container(
        &mut self,
        sandbox: &str,
        ns: &str,
        pod: &str,
        c: Ctr<'_>,
    ) -> String {
        let labels = [
            ("io.kubernetes.pod.namespace".to_string(), ns.to_string()),
            ("io.kubernetes.pod.name".to_string(), pod.to_string()),
            ("io.kubernetes.pod.uid".to_string(), format!("uid-{pod}")),
            (
                "io.kubernetes.container.name".to_string(),
                c.name.to_string(),
            ),
        ]
        .into();
        let id = self
            .cri
            .create_container(pb::CreateContainerRequest {
                pod_sandbox_id: sandbox.into(),
                config: Some(pb::ContainerConfig {
                    metadata: Some(pb::ContainerMetadata {
                        name: c.name.into(),
                        attempt: c.attempt,
                    }),
                    image: Some(pb::ImageSpec {
                        image: c.image.into(),
                        annotations: Default::default(),
                    }),
                    command: c.command,
                    mounts: c.mounts,
                    labels,
                    log_path: format!("{}/{}.log", c.name, c.attempt),
                    ..Default::default()
                }),
                sandbox_config: Some(self.sandbox_config(ns, pod)),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer {}: {e}", c.name))
            .into_inner()
            .container_id;
        self.cri
            .start_container(pb::StartContainerRequest {
                container_id: id.clone(),
            })
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "StartContainer {}: {e}; runtime log: {}",
                    c.name,
                    self.runtime.log_text()
                )
            });
        id
    }

    pub async fn status(&mut self, id: &str) -> pb::ContainerStatusResponse {
        self.cri
            .container_status(pb::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
            .into_inner()
    }

    pub async fn pid(&mut self, id: &str) -> u32 {
        self.status(id)
            .await
            .info
            .get("pid")
            .and_then(|p| p.parse().ok())
            .expect("ContainerStatus info has the pid")
    }

    pub async fn log_path(&mut self, id: &str) -> PathBuf {
        PathBuf::from(self.status(id).await.status.unwrap().log_path)
    }
}

pub fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

pub fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
