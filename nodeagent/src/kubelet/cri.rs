//! The kubelet's view of the runtime (kuberuntime's `GetPods` and
//! `GetPodStatus` over the CRI-shaped gRPC API). Calls wait as long as the
//! runtime takes: a runtime stuck on a lock stalls its caller, which is what
//! PLEG's health check is there to notice.

use std::collections::HashMap;
use std::path::Path;

use ackemu_base::tasks::wait_on;
use ackemu_proto::ackemu::node::v1 as pb;
use pb::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

/// Sandbox/container label: the pod's name.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// Sandbox/container label: the pod's namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Sandbox/container label: the pod's uid.
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
/// Container label: the container's name in the pod spec.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// Container annotation: the termination grace period it was created with.
pub const ANNOTATION_GRACE: &str = "io.kubernetes.pod.terminationGracePeriod";

/// A failed runtime call, with the gRPC status as kubelet prints it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("rpc error: code = {code:?} desc = {message}")]
pub struct CriError {
    /// gRPC code.
    pub code: tonic::Code,
    /// Its message.
    pub message: String,
}

impl CriError {
    /// NotFound from the runtime (the object went away meanwhile).
    pub fn is_not_found(&self) -> bool {
        self.code == tonic::Code::NotFound
    }
}

impl From<tonic::Status> for CriError {
    fn from(s: tonic::Status) -> Self {
        CriError {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

/// One sandbox of a pod as `GetPodStatus` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxStatus {
    /// Runtime id.
    pub id: String,
    /// Creation attempt.
    pub attempt: u32,
    /// `SANDBOX_READY`.
    pub ready: bool,
    /// Pod IP (empty when the network is down).
    pub ip: String,
    /// Path of the pod's network namespace.
    pub netns: String,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
}

/// One container of a pod as `GetPodStatus` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStatus {
    /// Runtime id.
    pub id: String,
    /// The sandbox it runs in.
    pub sandbox_id: String,
    /// Name in the pod spec.
    pub name: String,
    /// Attempt = restart count.
    pub attempt: u32,
    /// Runtime state.
    pub state: pb::ContainerState,
    /// Nanoseconds since the epoch; 0 when not reached.
    pub created_at: i64,
    /// Start time (ns).
    pub started_at: i64,
    /// Exit time (ns).
    pub finished_at: i64,
    /// Exit code.
    pub exit_code: i32,
    /// Runtime's reason (`Completed`, `Error`, `StartError`).
    pub reason: String,
    /// Runtime's message.
    pub message: String,
    /// Image as requested.
    pub image: String,
    /// Image reference the runtime resolved.
    pub image_ref: String,
    /// Termination grace period it was created with (seconds).
    pub grace_period_s: Option<i64>,
}

/// Everything the runtime knows about one pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodRuntimeStatus {
    /// Pod uid.
    pub uid: String,
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Sandboxes, newest first.
    pub sandboxes: Vec<SandboxStatus>,
    /// Containers, newest first.
    pub containers: Vec<ContainerStatus>,
}

impl PodRuntimeStatus {
    /// The newest sandbox.
    pub fn sandbox(&self) -> Option<&SandboxStatus> {
        self.sandboxes.first()
    }
    /// The newest container with `name`.
    pub fn latest(&self, name: &str) -> Option<&ContainerStatus> {
        self.containers.iter().find(|c| c.name == name)
    }
    /// All containers with `name`, newest first.
    pub fn all_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ContainerStatus> {
        self.containers.iter().filter(move |c| c.name == name)
    }
}

/// A pod as the lock-free listings show it (what PLEG diffs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListedPod {
    /// Pod uid.
    pub uid: String,
    /// `namespace/name`.
    pub name: String,
    /// (id, state) of its sandboxes and containers.
    pub entries: Vec<(String, Entry)>,
}

/// State of a listed sandbox or container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Running (or a ready sandbox).
    Running,
    /// Exited (or a not-ready sandbox).
    Exited,
    /// Created, not started; or unknown.
    Unknown,
}

/// A client of the node's runtime.
#[derive(Clone)]
pub struct Cri {
    client: RuntimeServiceClient<Channel>,
    images: pb::image_service_client::ImageServiceClient<Channel>,
}

fn ns_to_sort(v: i64) -> std::cmp::Reverse<i64> {
    std::cmp::Reverse(v)
}

impl Cri {
    /// A client over the unix socket at `path` (connects lazily).
    pub fn new(path: &Path) -> Cri {
        let channel = crate::uds::channel(path);
        Cri {
            client: RuntimeServiceClient::new(channel.clone()),
            images: pb::image_service_client::ImageServiceClient::new(channel),
        }
    }

    fn c(&self) -> RuntimeServiceClient<Channel> {
        self.client.clone()
    }

    /// ImageStatus: the image, if the node has it.
    pub async fn image_status(&self, image: &str) -> Result<Option<pb::Image>, CriError> {
        Ok(self
            .images
            .clone()
            .image_status(pb::ImageStatusRequest {
                image: Some(pb::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                verbose: false,
            })
            .await?
            .into_inner()
            .image)
    }

    /// PullImage with optional credentials; the image reference.
    pub async fn pull_image(
        &self,
        image: &str,
        auth: Option<pb::AuthConfig>,
        sandbox_config: pb::PodSandboxConfig,
    ) -> Result<String, CriError> {
        Ok(self
            .images
            .clone()
            .pull_image(pb::PullImageRequest {
                image: Some(pb::ImageSpec {
                    image: image.into(),
                    ..Default::default()
                }),
                auth,
                sandbox_config: Some(sandbox_config),
            })
            .await?
            .into_inner()
            .image_ref)
    }

    /// Version.
    pub async fn version(&self) -> Result<pb::VersionResponse, CriError> {
        Ok(self
            .c()
            .version(pb::VersionRequest {
                version: "v1".into(),
            })
            .await?
            .into_inner())
    }

    /// ListPodSandbox and ListContainers (lock-free snapshots).
    pub fn lists(
        &self,
    ) -> impl std::future::Future<
        Output = Result<(Vec<pb::PodSandbox>, Vec<pb::Container>), CriError>,
    > + Send
    + 'static {
        let mut c = self.c();
        async move {
            let sandboxes = wait_on(
                "runtime ListPodSandbox",
                c.list_pod_sandbox(pb::ListPodSandboxRequest { filter: None }),
            )
            .await?
            .into_inner()
            .items;
            let containers = wait_on(
                "runtime ListContainers",
                c.list_containers(pb::ListContainersRequest { filter: None }),
            )
            .await?
            .into_inner()
            .containers;
            Ok((sandboxes, containers))
        }
    }

    /// `GetPods`: the listings grouped by pod uid (lock-free in the runtime).
    pub async fn get_pods(&self) -> Result<Vec<ListedPod>, CriError> {
        let (sandboxes, containers) = self.lists().await?;
        Ok(group(&sandboxes, &containers))
    }

    /// `GetPodStatus`: PodSandboxStatus of each of the pod's sandboxes and
    /// ContainerStatus of each of its containers — the calls that wait on
    /// the runtime's locks.
    pub async fn get_pod_status(
        &self,
        uid: &str,
        name: &str,
        namespace: &str,
    ) -> Result<PodRuntimeStatus, CriError> {
        let mut c = self.c();
        let by_uid = HashMap::from([(LABEL_POD_UID.to_string(), uid.to_string())]);
        let mut items = wait_on(
            format!("runtime ListPodSandbox (pod {namespace}/{name})"),
            c.list_pod_sandbox(pb::ListPodSandboxRequest {
                filter: Some(pb::PodSandboxFilter {
                    label_selector: by_uid.clone(),
                    ..Default::default()
                }),
            }),
        )
        .await?
        .into_inner()
        .items;
        items.sort_by_key(|s| ns_to_sort(s.created_at));
        let mut out = PodRuntimeStatus {
            uid: uid.into(),
            name: name.into(),
            namespace: namespace.into(),
            ..Default::default()
        };
        for sb in &items {
            let st = wait_on(
                format!(
                    "runtime PodSandboxStatus {} (pod {namespace}/{name})",
                    short(&sb.id)
                ),
                c.pod_sandbox_status(pb::PodSandboxStatusRequest {
                    pod_sandbox_id: sb.id.clone(),
                    verbose: false,
                }),
            )
            .await;
            let st = match st {
                Ok(r) => r.into_inner().status.unwrap_or_default(),
                Err(e) if e.code() == tonic::Code::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            out.sandboxes.push(SandboxStatus {
                id: st.id.clone(),
                attempt: st.metadata.as_ref().map_or(0, |m| m.attempt),
                ready: st.state == pb::PodSandboxState::SandboxReady as i32,
                ip: st
                    .network
                    .as_ref()
                    .map(|n| n.ip.clone())
                    .unwrap_or_default(),
                netns: st
                    .linux
                    .and_then(|l| l.namespaces)
                    .map(|n| n.network_path)
                    .unwrap_or_default(),
                created_at: st.created_at,
            });
        }
        let mut listed = wait_on(
            format!("runtime ListContainers (pod {namespace}/{name})"),
            c.list_containers(pb::ListContainersRequest {
                filter: Some(pb::ContainerFilter {
                    label_selector: by_uid,
                    ..Default::default()
                }),
            }),
        )
        .await?
        .into_inner()
        .containers;
        listed.sort_by_key(|c| ns_to_sort(c.created_at));
        for ct in &listed {
            let st = wait_on(
                format!(
                    "runtime ContainerStatus {} (pod {namespace}/{name})",
                    short(&ct.id)
                ),
                c.container_status(pb::ContainerStatusRequest {
                    container_id: ct.id.clone(),
                    verbose: false,
                }),
            )
            .await;
            let st = match st {
                Ok(r) => r.into_inner().status.unwrap_or_default(),
                Err(e) if e.code() == tonic::Code::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let meta = st.metadata.clone().unwrap_or_default();
            out.containers.push(ContainerStatus {
                id: st.id.clone(),
                sandbox_id: ct.pod_sandbox_id.clone(),
                name: st
                    .labels
                    .get(LABEL_CONTAINER_NAME)
                    .cloned()
                    .unwrap_or(meta.name),
                attempt: meta.attempt,
                state: pb::ContainerState::try_from(st.state)
                    .unwrap_or(pb::ContainerState::ContainerUnknown),
                created_at: st.created_at,
                started_at: st.started_at,
                finished_at: st.finished_at,
                exit_code: st.exit_code,
                reason: st.reason.clone(),
                message: st.message.clone(),
                image: st.image.map(|i| i.image).unwrap_or_default(),
                image_ref: st.image_ref.clone(),
                grace_period_s: st
                    .annotations
                    .get(ANNOTATION_GRACE)
                    .and_then(|g| g.parse().ok()),
            });
        }
        Ok(out)
    }

    /// RunPodSandbox.
    pub async fn run_pod_sandbox(&self, config: pb::PodSandboxConfig) -> Result<String, CriError> {
        let what = format!(
            "runtime RunPodSandbox (pod {})",
            config
                .metadata
                .as_ref()
                .map(|m| format!("{}/{}", m.namespace, m.name))
                .unwrap_or_default()
        );
        Ok(wait_on(
            what,
            self.c().run_pod_sandbox(pb::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            }),
        )
        .await?
        .into_inner()
        .pod_sandbox_id)
    }

    /// StopPodSandbox.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        wait_on(
            format!("runtime StopPodSandbox {}", short(id)),
            self.c().stop_pod_sandbox(pb::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            }),
        )
        .await?;
        Ok(())
    }

    /// RemovePodSandbox.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        wait_on(
            format!("runtime RemovePodSandbox {}", short(id)),
            self.c().remove_pod_sandbox(pb::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            }),
        )
        .await?;
        Ok(())
    }

    /// CreateContainer.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: pb::ContainerConfig,
        sandbox_config: pb::PodSandboxConfig,
    ) -> Result<String, CriError> {
        Ok(wait_on(
            format!("runtime CreateContainer in {}", short(sandbox_id)),
            self.c().create_container(pb::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            }),
        )
        .await?
        .into_inner()
        .container_id)
    }

    /// StartContainer.
    pub async fn start_container(&self, id: &str) -> Result<(), CriError> {
        wait_on(
            format!("runtime StartContainer {}", short(id)),
            self.c().start_container(pb::StartContainerRequest {
                container_id: id.into(),
            }),
        )
        .await?;
        Ok(())
    }

    /// StopContainer with a grace period in seconds.
    pub async fn stop_container(&self, id: &str, timeout_s: i64) -> Result<(), CriError> {
        wait_on(
            format!("runtime StopContainer {}", short(id)),
            self.c().stop_container(pb::StopContainerRequest {
                container_id: id.into(),
                timeout: timeout_s,
            }),
        )
        .await?;
        Ok(())
    }

    /// RemoveContainer.
    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        wait_on(
            format!("runtime RemoveContainer {}", short(id)),
            self.c().remove_container(pb::RemoveContainerRequest {
                container_id: id.into(),
            }),
        )
        .await?;
        Ok(())
    }

    /// ExecSync with a timeout in seconds.
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout_s: i64,
    ) -> Result<pb::ExecSyncResponse, CriError> {
        Ok(wait_on(
            format!("runtime ExecSync {}", short(id)),
            self.c().exec_sync(pb::ExecSyncRequest {
                container_id: id.into(),
                cmd,
                timeout: timeout_s,
            }),
        )
        .await?
        .into_inner())
    }
}

/// The first 12 characters of a runtime id.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Group listings by pod uid (sandboxes carry the uid in their metadata,
/// containers through their sandbox or their labels).
pub fn group(sandboxes: &[pb::PodSandbox], containers: &[pb::Container]) -> Vec<ListedPod> {
    let mut pods: std::collections::BTreeMap<String, ListedPod> = Default::default();
    let mut sb_uid: HashMap<&str, String> = HashMap::new();
    for sb in sandboxes {
        let meta = sb.metadata.clone().unwrap_or_default();
        let uid = sb
            .labels
            .get(LABEL_POD_UID)
            .cloned()
            .unwrap_or(meta.uid.clone());
        sb_uid.insert(&sb.id, uid.clone());
        let p = pods.entry(uid.clone()).or_insert_with(|| ListedPod {
            uid,
            name: format!("{}/{}", meta.namespace, meta.name),
            entries: Vec::new(),
        });
        let st = if sb.state == pb::PodSandboxState::SandboxReady as i32 {
            Entry::Running
        } else {
            Entry::Exited
        };
        p.entries.push((sb.id.clone(), st));
    }
    for c in containers {
        let uid = c
            .labels
            .get(LABEL_POD_UID)
            .cloned()
            .or_else(|| sb_uid.get(c.pod_sandbox_id.as_str()).cloned());
        let Some(uid) = uid else { continue };
        let p = pods.entry(uid.clone()).or_insert_with(|| ListedPod {
            uid,
            ..Default::default()
        });
        let st = match pb::ContainerState::try_from(c.state) {
            Ok(pb::ContainerState::ContainerRunning) => Entry::Running,
            Ok(pb::ContainerState::ContainerExited) => Entry::Exited,
            _ => Entry::Unknown,
        };
        p.entries.push((c.id.clone(), st));
    }
    pods.into_values().collect()
}
