//! A real etcd and a real `ackemu-apiserver` process on free loopback
//! ports, and `ackemu-scheduler` processes started against them. Nodes are
//! plain Node objects (no kubelet): the test sets their allocatable and
//! Ready condition itself.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use ackemu_base::Env;
use ackemu_base::clock::Clock;
use ackemu_kube::api::core::v1::{Event, Node, Pod};
use ackemu_kube::client::{Client, ListParams};
use ackemu_testkit::{ApiServer, Etcd};
use anyhow::Context;
use serde_json::{Value, json};

pub use ackemu_testkit::Proc;

/// Polls `f` until it yields a value; the deadline only bounds failure.
pub async fn eventually<F, Fut, T>(what: &str, f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    ackemu_testkit::eventually_within(what, Duration::from_secs(60), f).await
}

/// A running `ackemu-scheduler`.
pub struct Scheduler {
    pub proc: Proc,
    pub log: PathBuf,
}

impl Scheduler {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str) -> anyhow::Result<()> {
        eventually(&format!("{:?} in {}", needle, self.log.display()), || {
            let found = self.log_text().contains(needle);
            async move { Ok(found.then_some(())) }
        })
        .await
    }

    pub fn kill(&mut self) {
        let _ = self.proc.0.kill();
        let _ = self.proc.0.wait();
    }
}

/// etcd + API server, and an admin client.
pub struct Cluster {
    _apiserver: ApiServer,
    _etcd: Etcd,
    pub dir: tempfile::TempDir,
    pub env: Env,
    pub client: Client,
    pub kubeconfig: PathBuf,
    schedulers: usize,
}

impl Cluster {
    pub async fn start() -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let etcd = Etcd::start(dir.path()).await?;
        let env = Env::for_test(Clock::real());
        let apiserver = ApiServer::start(dir.path(), &etcd.endpoint, &[], &env.tasks).await?;
        let client = apiserver.client.clone();
        let kubeconfig = apiserver.kubeconfig.clone();
        // The ServiceAccount admission plugin needs the default account
        // (the controller-manager is not running here).
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": "default", "namespace": "default"}});
        client
            .request(
                "POST",
                "/api/v1/namespaces/default/serviceaccounts",
                Some(("application/json", sa.to_string().into_bytes())),
            )
            .await?;
        Ok(Cluster {
            _apiserver: apiserver,
            _etcd: etcd,
            dir,
            env,
            client,
            kubeconfig,
            schedulers: 0,
        })
    }

    /// Starts an `ackemu-scheduler` with `args` (after `--kubeconfig`).
    pub fn scheduler(&mut self, args: &[&str]) -> anyhow::Result<Scheduler> {
        self.schedulers += 1;
        let log = self
            .dir
            .path()
            .join(format!("scheduler-{}.log", self.schedulers));
        let f = std::fs::File::create(&log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_ackemu-scheduler"))
            .arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .args(args)
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .context("starting ackemu-scheduler")?;
        Ok(Scheduler {
            proc: Proc(child),
            log,
        })
    }

    /// Creates a Ready node with `cpu`/`memory` allocatable, labels and
    /// taints (`key=value:Effect`).
    pub async fn node(
        &self,
        name: &str,
        cpu: &str,
        memory: &str,
        labels: &[(&str, &str)],
        taints: &[(&str, &str, &str)],
    ) -> anyhow::Result<()> {
        let mut l: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        l.insert("kubernetes.io/hostname".into(), json!(name));
        let taints: Vec<Value> = taints
            .iter()
            .map(|(k, v, e)| json!({"key": k, "value": v, "effect": e}))
            .collect();
        let status = json!({
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                "message": "kubelet is posting ready status"}],
        });
        let node = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": l},
            "spec": {"taints": taints},
            "status": status});
        let api = self.client.api::<Node>(None)?;
        let created = api.dynamic().create(&node).await?;
        if created["status"]["allocatable"]["cpu"] != json!(cpu) {
            let mut n = created;
            n["status"] = status;
            api.dynamic().replace(name, "status", &n).await?;
        }
        Ok(())
    }

    /// Creates a pod in `default`; `spec` is merged over one container
    /// requesting `cpu`.
    pub async fn pod(&self, name: &str, cpu: &str, spec: Value) -> anyhow::Result<()> {
        let mut s = json!({"containers": [{"name": "app", "image": "registry.local/app:1",
            "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
        if let (Some(o), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                o.insert(k.clone(), v.clone());
            }
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"}, "spec": s});
        self.client
            .api::<Pod>(Some("default"))?
            .dynamic()
            .create(&pod)
            .await?;
        Ok(())
    }

    pub async fn get_pod(&self, name: &str) -> anyhow::Result<Pod> {
        Ok(self.client.api::<Pod>(Some("default"))?.get(name).await?)
    }

    /// Waits until the pod is bound; returns its node.
    pub async fn bound_node(&self, name: &str) -> anyhow::Result<String> {
        eventually(&format!("pod {name} to be bound"), || async {
            let p = self.get_pod(name).await?;
            Ok(p.spec.and_then(|s| s.node_name).filter(|n| !n.is_empty()))
        })
        .await
    }

    /// Events about one pod in `default`.
    pub async fn pod_events(&self, name: &str) -> anyhow::Result<Vec<Event>> {
        let (events, _) = self
            .client
            .api::<Event>(Some("default"))?
            .list(&ListParams::default())
            .await?;
        Ok(events
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect())
    }

    /// Waits for an event about `pod` with `reason`; returns its message.
    pub async fn event(&self, pod: &str, reason: &str) -> anyhow::Result<Event> {
        eventually(&format!("a {reason} event for pod {pod}"), || async {
            Ok(self
                .pod_events(pod)
                .await?
                .into_iter()
                .find(|e| e.reason.as_deref() == Some(reason)))
        })
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.env.tasks.token().cancel();
        // ACKEMU_TEST_LOGS=1 prints the processes' logs (nextest shows
        // them for failed tests).
        if std::env::var_os("ACKEMU_TEST_LOGS").is_some()
            && let Ok(entries) = std::fs::read_dir(self.dir.path())
        {
            for e in entries.flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "log") {
                    let text = std::fs::read_to_string(&p).unwrap_or_default();
                    let tail: Vec<&str> = text.lines().rev().take(80).collect();
                    eprintln!("==== {} (last 80 lines)", p.display());
                    for l in tail.into_iter().rev() {
                        eprintln!("{l}");
                    }
                }
            }
        }
    }
}

/// The pod's `PodScheduled` condition (status, reason, message).
pub fn pod_scheduled(p: &Pod) -> Option<(String, String, String)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}
