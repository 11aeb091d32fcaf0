//! The kubelet against a real etcd and the real `ackemu-apiserver`, with
//! systemd, cnid and the runtime as real processes in a node namespace:
//! node registration, a pod to READY, crash-loop back-off, deletion.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ackemu_base::Env;
use ackemu_base::clock::{Clock, ClockConfig};
use ackemu_kube::client::{Client, ClientConfig};
use ackemu_proto::ackemu::node::v1 as pb;
use anyhow::{Context as _, bail};
use pb::runtime_service_client::RuntimeServiceClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::util::{BIN, Netns, Proc, can_netns, list_netns, netns_name, wait_socket};

pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Polls `f` until it yields a value; the deadline only bounds failure.
pub async fn eventually<F, Fut, T>(what: &str, deadline: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let clock = Clock::real();
    let end = clock.now() + deadline;
    let mut last_err = None;
    loop {
        match f().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if clock.now() > end {
            bail!("timed out waiting for {what}; last error: {last_err:?}");
        }
        // Pacing between polls, not a synchronisation point.
        clock.sleep(Duration::from_millis(100)).await;
    }
}

fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

/// A binary of another package, built on demand when this crate's tests run alone.
fn binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    let path = target_dir().join(bin);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
        let target = target_dir().parent().context("target dir")?.to_path_buf();
        let st = Command::new(cargo)
            .args([
                "build",
                "-p",
                package,
                "--bin",
                bin,
                "--manifest-path",
                manifest,
            ])
            .env("CARGO_TARGET_DIR", target)
            .status()
            .with_context(|| format!("building {bin}"))?;
        if !st.success() {
            bail!("building {bin} failed");
        }
    }
    Ok(path)
}

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub node: Netns,
    pub netns_prefix: String,
    pub node_name: String,
    pub time_scale: f64,
    pub epoch_ms: i64,
    _etcd: Proc,
    _apiserver: Proc,
    pub systemd: Option<Proc>,
    pub cnid: Option<Proc>,
    pub runtime: Option<Proc>,
    pub kubelet: Option<Proc>,
    pub env: Env,
    pub client: Client,
    pub cri: RuntimeServiceClient<Channel>,
    kubelet_port: u16,
}

impl Rig {
    pub async fn start(time_scale: f64, systemd_extra: &[&str]) -> anyhow::Result<Rig> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().to_path_buf();
        let (client_port, peer) = (free_port(), free_port());
        let endpoint = format!("127.0.0.1:{client_port}");
        let mut etcd_cmd = Command::new("etcd");
        etcd_cmd
            .arg("--data-dir")
            .arg(p.join("etcd"))
            .args(["--listen-client-urls", &format!("http://{endpoint}")])
            .args(["--advertise-client-urls", &format!("http://{endpoint}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args([
                "--initial-cluster",
                &format!("default=http://127.0.0.1:{peer}"),
            ])
            .args(["--log-level", "error"]);
        let etcd = Proc::spawn(etcd_cmd, &p.join("etcd.log"));
        let ep = endpoint.clone();
        eventually("etcd to serve", Duration::from_secs(60), || {
            let ep = ep.clone();
            async move {
                let out = tokio::process::Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", &ep, "endpoint", "health"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await?;
                Ok(out.success().then_some(()))
            }
        })
        .await?;
        let api_port = free_port();
        let kubeconfig = p.join("admin.kubeconfig");
        let mut api_cmd = Command::new(binary("ackemu-apiserver", "ackemu-apiserver")?);
        api_cmd
            .arg(format!("--secure-listen=127.0.0.1:{api_port}"))
            .arg(format!("--store-endpoints={endpoint}"))
            .arg(format!("--pki-dir={}", p.join("pki").display()))
            .arg(format!("--admin-kubeconfig={}", kubeconfig.display()));
        let apiserver = Proc::spawn(api_cmd, &p.join("apiserver.log"));
        let env = Env::for_test(Clock::real());
        let kc = kubeconfig.clone();
        let cfg = eventually("the admin kubeconfig", Duration::from_secs(60), || {
            let kc = kc.clone();
            async move {
                Ok(kc
                    .exists()
                    .then(|| ClientConfig::from_kubeconfig(&kc))
                    .transpose()?)
            }
        })
        .await?;
        let client = Client::new(cfg.clone(), env.clock.clone(), env.tasks.clone())?;
        let c2 = client.clone();
        eventually("the API server to answer", Duration::from_secs(60), || {
            let c = c2.clone();
            async move {
                Ok(
                    c.request("GET", "/api/v1/namespaces/default/serviceaccounts", None)
                        .await
                        .ok()
                        .map(|_| ()),
                )
            }
        })
        .await?;
        // What the controller-manager would create: the default account and the root CA.
        let _ = client
            .request(
                "POST",
                "/api/v1/namespaces/default/serviceaccounts",
                Some((
                    "application/json",
                    json!({"metadata": {"name": "default"}})
                        .to_string()
                        .into_bytes(),
                )),
            )
            .await;
        let cm = json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": cfg.ca_pem}});
        let _ = client
            .request(
                "POST",
                "/api/v1/namespaces/default/configmaps",
                Some(("application/json", cm.to_string().into_bytes())),
            )
            .await;

        let node = Netns::new("knode");
        let run = p.join("run");
        let bin = p.join("bin");
        let conf = p.join("net.d");
        std::fs::create_dir_all(&bin)?;
        std::fs::create_dir_all(&conf)?;
        std::os::unix::fs::symlink(BIN, bin.join("ackemu-cni"))?;
        std::fs::write(
            conf.join("10-ackemu.conf"),
            json!({"cniVersion": "1.0.0", "name": "ackemu", "type": "ackemu-cni",
                   "socket": run.join("cnid.sock").display().to_string()})
            .to_string(),
        )?;
        std::fs::write(p.join("host-resolv.conf"), "nameserver 100.100.2.136\n")?;
        let epoch_ms = ClockConfig::real_now().epoch_unix_ms;
        let mut rig = Rig {
            netns_prefix: format!("{}-", netns_name("kpod")),
            node_name: format!("node-{}", std::process::id()),
            time_scale,
            epoch_ms,
            dir,
            node,
            _etcd: etcd,
            _apiserver: apiserver,
            systemd: None,
            cnid: None,
            runtime: None,
            kubelet: None,
            env,
            client,
            cri: RuntimeServiceClient::new(ackemu_nodeagent::uds::channel(
                &run.join("runtime.sock"),
            )),
            kubelet_port: free_port(),
        };
        let mut cmd = rig.node_cmd("systemd");
        cmd.args(systemd_extra);
        rig.systemd = Some(Proc::spawn(cmd, &p.join("systemd.log")));
        wait_socket(&run.join("systemd/private")).await;
        wait_socket(&run.join("dbus/system_bus_socket")).await;
        rig.start_cnid(&[], "").await;
        let mut cmd = rig.node_cmd("runtime");
        cmd.arg("--root")
            .arg(p.join("runtime"))
            .arg("--cni-conf-dir")
            .arg(&conf)
            .arg("--cni-bin-dir")
            .arg(&bin)
            .args(["--netns-prefix", &rig.netns_prefix])
            .arg("--workload-binary")
            .arg(binary("ackemu-workloads", "ackemu-workload")?);
        rig.runtime = Some(Proc::spawn(cmd, &p.join("runtime.log")));
        wait_socket(&run.join("runtime.sock")).await;
        rig.start_kubelet();
        Ok(rig)
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn run_dir(&self) -> PathBuf {
        self.path().join("run")
    }

    fn clock_args(&self) -> Vec<String> {
        vec![
            format!("--time-scale={}", self.time_scale),
            format!("--cluster-epoch-ms={}", self.epoch_ms),
        ]
    }

    /// `ackemu-node <role> --run-dir … <clock>` inside the node namespace.
    fn node_cmd(&self, role: &str) -> Command {
        let mut cmd = self.node.enter();
        cmd.arg(BIN)
            .arg(role)
            .arg("--run-dir")
            .arg(self.run_dir())
            .args(self.clock_args());
        cmd
    }

    /// (Re)start cnid with extra flags and failpoints.
    pub async fn start_cnid(&mut self, extra: &[&str], failpoints: &str) {
        self.cnid = None;
        let mut cmd = self.node_cmd("cnid");
        cmd.args(["--pod-cidr", "172.16.77.0/24", "--data-dir"])
            .arg(self.path().join("cnid"))
            .args(extra)
            .env("ACKEMU_FAILPOINTS", failpoints);
        let log = self
            .path()
            .join(format!("cnid-{}.log", Clock::real().wall_unix_ms()));
        let _ = std::fs::remove_file(self.run_dir().join("cnid.sock"));
        self.cnid = Some(Proc::spawn(cmd, &log));
        wait_socket(&self.run_dir().join("cnid.sock")).await;
    }

    /// (Re)start the kubelet in the host namespace (it reaches the API
    /// server on loopback and the runtime over its socket).
    pub fn start_kubelet(&mut self) {
        self.kubelet = None;
        let p = self.path();
        let mut cmd = Command::new(BIN);
        cmd.arg("kubelet")
            .args(self.clock_args())
            .arg("--kubeconfig")
            .arg(p.join("admin.kubeconfig"))
            .args([
                "--hostname-override",
                &self.node_name,
                "--node-ip",
                "192.168.77.10",
            ])
            .arg("--container-runtime-endpoint")
            .arg(format!(
                "unix://{}",
                self.run_dir().join("runtime.sock").display()
            ))
            .arg("--root-dir")
            .arg(p.join("kubelet"))
            .arg("--pod-logs-dir")
            .arg(p.join("pods"))
            .arg("--resolv-conf")
            .arg(p.join("host-resolv.conf"))
            .args([
                "--address",
                "127.0.0.1",
                "--port",
                &self.kubelet_port.to_string(),
            ])
            .args([
                "--node-labels",
                "node.kubernetes.io/instance-type=ecs.g6.large",
            ]);
        let n = std::fs::read_dir(&p).map(|d| d.count()).unwrap_or(0);
        self.kubelet = Some(Proc::spawn(cmd, &p.join(format!("kubelet-{n}.log"))));
    }

    pub fn kubelet_log(&self) -> String {
        let mut out = String::new();
        let mut names: Vec<_> = std::fs::read_dir(self.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("kubelet-"))
            })
            .collect();
        names.sort();
        for n in names {
            out.push_str(&std::fs::read_to_string(n).unwrap_or_default());
        }
        out
    }

    /// Logs for a failure message.
    pub fn logs(&self) -> String {
        let tail = |name: &str| {
            let t = std::fs::read_to_string(self.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = t.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        let k = self.kubelet_log();
        let kl: Vec<&str> = k.lines().collect();
        format!(
            "--- kubelet\n{}\n--- runtime\n{}\n",
            kl[kl.len().saturating_sub(60)..].join("\n"),
            tail("runtime.log")
        )
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        Ok(self.client.request("GET", path, None).await?)
    }

    pub async fn node_obj(&self) -> anyhow::Result<Value> {
        self.get(&format!("/api/v1/nodes/{}", self.node_name)).await
    }

    /// The node's Ready condition.
    pub async fn ready(&self) -> anyhow::Result<Option<Value>> {
        let n = match self.node_obj().await {
            Ok(n) => n,
            Err(_) => return Ok(None),
        };
        Ok(n["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned()))
    }

    pub async fn wait_ready(&self, want: &str, deadline: Duration) -> anyhow::Result<Value> {
        eventually(&format!("node Ready={want}"), deadline, || async {
            Ok(self.ready().await?.filter(|c| c["status"] == want))
        })
        .await
    }

    pub async fn create_pod(&self, pod: Value) -> anyhow::Result<Value> {
        let ns = pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        Ok(self
            .client
            .request(
                "POST",
                &format!("/api/v1/namespaces/{ns}/pods"),
                Some(("application/json", pod.to_string().into_bytes())),
            )
            .await?)
    }

    pub async fn pod(&self, name: &str) -> anyhow::Result<Value> {
        self.get(&format!("/api/v1/namespaces/default/pods/{name}"))
            .await
    }

    pub async fn delete_pod(&self, name: &str) -> anyhow::Result<()> {
        self.client
            .request(
                "DELETE",
                &format!("/api/v1/namespaces/default/pods/{name}"),
                None,
            )
            .await?;
        Ok(())
    }

    pub async fn events_for(&self, name: &str) -> anyhow::Result<Vec<Value>> {
        let v = self.get("/api/v1/namespaces/default/events").await?;
        Ok(v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["involvedObject"]["name"] == name)
            .collect())
    }

    pub fn pod_netns(&self) -> Vec<String> {
        list_netns()
            .into_iter()
            .filter(|n| n.starts_with(&self.netns_prefix))
            .collect()
    }

    pub fn busctl_status(&self) -> String {
        let rd = self.run_dir().display().to_string();
        crate::util::text(&crate::util::node(&["busctl", "--run-dir", &rd, "status"]))
    }

    /// The pid of the running container named `name`.
    pub async fn container_pid(&self, name: &str) -> anyhow::Result<Option<u32>> {
        let mut cri = self.cri.clone();
        let list = cri
            .list_containers(pb::ListContainersRequest { filter: None })
            .await?
            .into_inner()
            .containers;
        for c in list {
            if c.metadata.as_ref().is_some_and(|m| m.name == name)
                && c.state == pb::ContainerState::ContainerRunning as i32
            {
                let st = cri
                    .container_status(pb::ContainerStatusRequest {
                        container_id: c.id.clone(),
                        verbose: false,
                    })
                    .await?
                    .into_inner();
                return Ok(st.info.get("pid").and_then(|p| p.parse().ok()));
            }
        }
        Ok(None)
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        // The kubelet first, so it does not act on a half-stopped node.
        self.kubelet = None;
        self.runtime = None;
        self.cnid = None;
        self.systemd = None;
        for ns in self.pod_netns() {
            let _ = Command::new("ip").args(["netns", "del", &ns]).output();
        }
        self.env.tasks.token().cancel();
    }
}

pub fn app_pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {
            "nodeName": format!("node-{}", std::process::id()),
            "terminationGracePeriodSeconds": 5,
            "containers": [{
                "name": "app", "image": "app",
                "ports": [{"name": "http", "containerPort": 2580}],
                "env": [{"name": "MY_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 2},
            }],
        },
    })
}

fn ready_count(pod: &Value) -> (usize, usize) {
    let cs = pod["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (cs.iter().filter(|c| c["ready"] == true).count(), cs.len())
}

#[tokio::test]
async fn node_registers_ready_and_a_pod_runs_to_ready_then_deletion_cleans_up() {
    if !can_netns("node_registers_ready_and_a_pod_runs_to_ready_then_deletion_cleans_up") {
        return;
    }
    let rig = Rig::start(10.0, &[]).await.expect("rig");
    let ready = rig
        .wait_ready("True", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    assert_eq!(ready["reason"], "KubeletReady");
    let node = rig.node_obj().await.unwrap();
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/hostname"], rig.node_name.as_str());
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert_eq!(labels["kubernetes.io/arch"], "amd64");
    assert_eq!(labels["node.kubernetes.io/instance-type"], "ecs.g6.large");
    let st = &node["status"];
    assert_eq!(
        st["daemonEndpoints"]["kubeletEndpoint"]["Port"],
        rig.kubelet_port
    );
    assert!(
        st["nodeInfo"]["kubeletVersion"]
            .as_str()
            .unwrap()
            .starts_with("v1.33.")
    );
    assert!(
        st["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("ackemu://")
    );
    assert_eq!(
        st["addresses"][0],
        json!({"type": "InternalIP", "address": "192.168.77.10"})
    );
    assert_eq!(st["capacity"]["pods"], "110");
    let types: Vec<&str> = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
    );
    let lease = eventually("the node lease", Duration::from_secs(30), || async {
        Ok(rig
            .get(&format!(
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{}",
                rig.node_name
            ))
            .await
            .ok())
    })
    .await
    .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], rig.node_name.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    // Heartbeats move.
    let hb = ready["lastHeartbeatTime"].clone();
    eventually("a newer heartbeat", Duration::from_secs(30), || async {
        Ok(rig.ready().await?.filter(|c| c["lastHeartbeatTime"] != hb))
    })
    .await
    .unwrap();

    rig.create_pod(app_pod("web")).await.unwrap();
    let pod = eventually(
        "web Running and READY 1/1",
        Duration::from_secs(60),
        || async {
            let p = rig.pod("web").await?;
            Ok((p["status"]["phase"] == "Running" && ready_count(&p) == (1, 1)).then_some(p))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    let ip = pod["status"]["podIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("172.16.77."), "{ip}");
    assert_eq!(pod["status"]["hostIP"], "192.168.77.10");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(cs["started"], true);
    assert!(cs["state"]["running"]["startedAt"].is_string());
    assert!(cs["containerID"].as_str().unwrap().starts_with("ackemu://"));
    let conds: Vec<(String, String)> = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["type"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for t in ["PodScheduled", "Initialized", "ContainersReady", "Ready"] {
        assert!(
            conds.contains(&(t.to_string(), "True".to_string())),
            "{t} in {conds:?}"
        );
    }
    // The process: in the pod's namespace, with the pod's environment.
    let pid = rig.container_pid("app").await.unwrap().expect("app runs");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    let vars: Vec<&str> = environ.split('\0').collect();
    assert!(vars.contains(&"MY_POD_NAME=web"), "{vars:?}");
    assert!(
        vars.iter()
            .any(|v| v.starts_with("KUBERNETES_SERVICE_HOST=")),
        "{vars:?}"
    );
    assert!(vars.contains(&"KUBERNETES_SERVICE_PORT=443"), "{vars:?}");
    assert!(
        vars.iter()
            .any(|v| v.starts_with("KUBERNETES_PORT_443_TCP=tcp://")),
        "{vars:?}"
    );
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let kdir = rig.path().join("kubelet/pods").join(uid);
    assert_eq!(
        std::fs::read_to_string(kdir.join("resolv.conf")).unwrap(),
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 172.19.0.10\noptions ndots:5\n"
    );
    let vol = pod["spec"]["volumes"][0]["name"].as_str().unwrap();
    let sa = kdir.join("volumes/kubernetes.io~projected").join(vol);
    let token = std::fs::read_to_string(sa.join("token")).unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert_eq!(
        std::fs::read_to_string(sa.join("namespace")).unwrap(),
        "default"
    );
    assert!(
        std::fs::read_to_string(sa.join("ca.crt"))
            .unwrap()
            .contains("BEGIN CERTIFICATE")
    );
    let events = rig.events_for("web").await.unwrap();
    let reasons: Vec<&str> = events.iter().filter_map(|e| e["reason"].as_str()).collect();
    assert!(
        reasons.contains(&"Created") && reasons.contains(&"Started"),
        "{reasons:?}"
    );
    let started = events.iter().find(|e| e["reason"] == "Started").unwrap();
    assert_eq!(started["message"], "Started container app");
    assert_eq!(
        started["source"],
        json!({"component": "kubelet", "host": rig.node_name})
    );
    assert_eq!(
        started["involvedObject"]["fieldPath"],
        "spec.containers{app}"
    );
    assert_eq!(rig.pod_netns().len(), 1);
    // The kubelet API serves on its port and wants a client certificate.
    let out = Command::new("curl")
        .args([
            "-sk",
            &format!("https://127.0.0.1:{}/pods", rig.kubelet_port),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Unauthorized\n");

    // Deletion: the process stops, the pod object goes, the namespace too.
    rig.delete_pod("web").await.unwrap();
    eventually("web gone from the API", Duration::from_secs(60), || async {
        Ok(rig.pod("web").await.is_err().then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    eventually("the app process gone", Duration::from_secs(30), || async {
        Ok((!Path::new(&format!("/proc/{pid}")).exists()).then_some(()))
    })
    .await
    .unwrap();
    eventually("the pod netns gone", Duration::from_secs(30), || async {
        Ok(rig.pod_netns().is_empty().then_some(()))
    })
    .await
    .unwrap();
    let events = rig.events_for("web").await.unwrap();
    let killing = events
        .iter()
        .find(|e| e["reason"] == "Killing")
        .expect("a Killing event");
    assert_eq!(killing["message"], "Stopping container app");
}

#[tokio::test]
async fn a_crashing_container_backs_off() {
    if !can_netns("a_crashing_container_backs_off") {
        return;
    }
    let rig = Rig::start(20.0, &[]).await.expect("rig");
    rig.wait_ready("True", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    let mut pod = app_pod("crash");
    pod["spec"]["containers"][0]["command"] = json!(["/bin/sh", "-c", "echo boom; exit 3"]);
    pod["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("readinessProbe");
    rig.create_pod(pod).await.unwrap();
    let p = eventually(
        "crash in CrashLoopBackOff after restarts",
        Duration::from_secs(90),
        || async {
            let p = rig.pod("crash").await?;
            let c = &p["status"]["containerStatuses"][0];
            Ok((c["restartCount"].as_u64().unwrap_or(0) >= 2
                && c["state"]["waiting"]["reason"] == "CrashLoopBackOff")
                .then_some(p))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    let c = &p["status"]["containerStatuses"][0];
    assert_eq!(c["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(c["lastState"]["terminated"]["reason"], "Error");
    assert_eq!(c["ready"], false);
    let msg = c["state"]["waiting"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("back-off ")
            && msg.contains("restarting failed container=app pod=crash_default("),
        "{msg}"
    );
    assert_eq!(p["status"]["phase"], "Running");
    let events = rig.events_for("crash").await.unwrap();
    let backoff = events
        .iter()
        .find(|e| e["reason"] == "BackOff")
        .expect("a BackOff event");
    assert_eq!(backoff["type"], "Warning");
    assert!(
        backoff["message"]
            .as_str()
            .unwrap()
            .starts_with("Back-off restarting failed container app in pod crash_default(")
    );
    // The back-off grows: 10s, then 20s.
    eventually("a 20s back-off", Duration::from_secs(90), || async {
        let p = rig.pod("crash").await?;
        let m = p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        Ok(m.starts_with("back-off 20s").then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
}

/// An image from a registry nobody answers: the kubelet pulls through
/// the runtime, reports ErrImagePull with the runtime's error, then backs
/// off (ImagePullBackOff, "Back-off pulling image"); a preloaded short
/// name is "already present"; policy Never on an absent image is
/// ErrImageNeverPull.
#[tokio::test]
async fn image_pulls_fail_back_off_and_respect_the_pull_policy() {
    if !can_netns("image_pulls_fail_back_off_and_respect_the_pull_policy") {
        return;
    }
    let rig = Rig::start(20.0, &[]).await.expect("rig");
    rig.wait_ready("True", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    // Port 1 on loopback: connection refused.
    let image = "127.0.0.1:1/ackemu/app:1.0";
    let mut pod = app_pod("nopull");
    pod["spec"]["containers"][0]["image"] = json!(image);
    rig.create_pod(pod).await.unwrap();
    let mut never = app_pod("never");
    never["spec"]["containers"][0]["image"] = json!("127.0.0.1:1/ackemu/absent:2");
    never["spec"]["containers"][0]["imagePullPolicy"] = json!("Never");
    rig.create_pod(never).await.unwrap();
    let waiting = |p: &Value| {
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        (
            w["reason"].as_str().unwrap_or("").to_owned(),
            w["message"].as_str().unwrap_or("").to_owned(),
        )
    };
    let (_, err) = eventually(
        "nopull in ErrImagePull",
        Duration::from_secs(60),
        || async {
            let w = waiting(&rig.pod("nopull").await?);
            Ok((w.0 == "ErrImagePull").then_some(w))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    assert!(err.contains(image), "{err}");
    eventually(
        "nopull in ImagePullBackOff",
        Duration::from_secs(60),
        || async {
            let w = waiting(&rig.pod("nopull").await?);
            Ok(
                (w.0 == "ImagePullBackOff" && w.1 == format!("Back-off pulling image {image:?}"))
                    .then_some(()),
            )
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    let events = rig.events_for("nopull").await.unwrap();
    let has = |reason: &str, prefix: &str| {
        events.iter().any(|e| {
            e["reason"] == reason && e["message"].as_str().unwrap_or("").starts_with(prefix)
        })
    };
    assert!(
        has("Pulling", &format!("Pulling image {image:?}")),
        "{events:?}"
    );
    assert!(
        has("Failed", &format!("Failed to pull image {image:?}: ")),
        "{events:?}"
    );
    assert!(has("Failed", "Error: ErrImagePull"), "{events:?}");
    assert!(
        has("BackOff", &format!("Back-off pulling image {image:?}")),
        "{events:?}"
    );
    let (reason, msg) = eventually(
        "never in ErrImageNeverPull",
        Duration::from_secs(60),
        || async {
            let w = waiting(&rig.pod("never").await?);
            Ok((w.0 == "ErrImageNeverPull").then_some(w))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    assert_eq!(reason, "ErrImageNeverPull");
    assert_eq!(
        msg,
        "Container image \"127.0.0.1:1/ackemu/absent:2\" is not present with pull policy of Never"
    );
    // The preloaded image of the other tests needs no pull.
    rig.create_pod(app_pod("local")).await.unwrap();
    eventually("local to run", Duration::from_secs(60), || async {
        let p = rig.pod("local").await?;
        Ok(p["status"]["containerStatuses"][0]["state"]["running"]
            .is_object()
            .then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    let events = rig.events_for("local").await.unwrap();
    assert!(
        events.iter().any(|e| e["reason"] == "Pulled"
            && e["message"] == "Container image \"app\" already present on machine"),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_container() {
    if !can_netns("a_failing_liveness_probe_restarts_the_container") {
        return;
    }
    let rig = Rig::start(20.0, &[]).await.expect("rig");
    rig.wait_ready("True", Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    let mut pod = app_pod("sick");
    let c = &mut pod["spec"]["containers"][0];
    c.as_object_mut().unwrap().remove("readinessProbe");
    // Nothing listens on 9999: the probe fails, the container is restarted.
    c["livenessProbe"] =
        json!({"tcpSocket": {"port": 9999}, "periodSeconds": 2, "failureThreshold": 2});
    rig.create_pod(pod).await.unwrap();
    eventually(
        "sick restarted by its liveness probe",
        Duration::from_secs(90),
        || async {
            let p = rig.pod("sick").await?;
            Ok((p["status"]["containerStatuses"][0]["restartCount"]
                .as_u64()
                .unwrap_or(0)
                >= 1)
                .then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", rig.logs()));
    let events = rig.events_for("sick").await.unwrap();
    let unhealthy = events
        .iter()
        .find(|e| e["reason"] == "Unhealthy")
        .expect("an Unhealthy event");
    let msg = unhealthy["message"].as_str().unwrap();
    assert!(
        msg.starts_with("Liveness probe failed: dial tcp 172.16.77.")
            && msg.ends_with(":9999: connect: connection refused"),
        "{msg}"
    );
    assert!(
        events.iter().any(|e| e["reason"] == "Killing"
            && e["message"] == "Container app failed liveness probe, will be restarted"),
        "{events:?}"
    );
}
