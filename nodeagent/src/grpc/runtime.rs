//! The CRI-shaped `RuntimeService` over [`crate::runtime::Runtime`].

use ackemu_proto::ackemu::node::v1 as pb;
use ackemu_proto::ackemu::node::v1::runtime_service_server::{
    RuntimeService, RuntimeServiceServer,
};
use futures::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

use super::status;
use crate::runtime::Runtime;

/// The service over `rt`.
pub fn server(rt: Runtime) -> RuntimeServiceServer<Svc> {
    RuntimeServiceServer::new(Svc(rt))
}

/// Adapter.
pub struct Svc(Runtime);

type R<T> = Result<Response<T>, Status>;

/// The output of one `Exec` call.
pub type ExecStream = tokio_stream::wrappers::ReceiverStream<Result<pb::ExecResponse, Status>>;

#[tonic::async_trait]
impl RuntimeService for Svc {
    async fn version(&self, _: Request<pb::VersionRequest>) -> R<pb::VersionResponse> {
        Ok(Response::new(pb::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "ackemu".into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: "v1".into(),
        }))
    }

    async fn status(&self, _: Request<pb::StatusRequest>) -> R<pb::StatusResponse> {
        let cond = |t: &str| pb::RuntimeCondition {
            r#type: t.into(),
            status: true,
            ..Default::default()
        };
        Ok(Response::new(pb::StatusResponse {
            status: Some(pb::RuntimeStatus {
                conditions: vec![cond("RuntimeReady"), cond("NetworkReady")],
            }),
            info: Default::default(),
        }))
    }

    async fn run_pod_sandbox(
        &self,
        req: Request<pb::RunPodSandboxRequest>,
    ) -> R<pb::RunPodSandboxResponse> {
        let rt = self.0.clone();
        let r = req.into_inner();
        let id = self
            .0
            .detached("runtime/RunPodSandbox".into(), async move {
                rt.run_pod_sandbox(r).await
            })
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(pb::RunPodSandboxResponse {
            pod_sandbox_id: id,
        }))
    }

    async fn stop_pod_sandbox(
        &self,
        req: Request<pb::StopPodSandboxRequest>,
    ) -> R<pb::StopPodSandboxResponse> {
        let rt = self.0.clone();
        let id = req.into_inner().pod_sandbox_id;
        self.0
            .detached(format!("runtime/StopPodSandbox {id}"), async move {
                rt.stop_pod_sandbox(&id).await
            })
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(pb::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        req: Request<pb::RemovePodSandboxRequest>,
    ) -> R<pb::RemovePodSandboxResponse> {
        let rt = self.0.clone();
        let id = req.into_inner().pod_sandbox_id;
        self.0
            .detached(format!("runtime/RemovePodSandbox {id}"), async move {
                rt.remove_pod_sandbox(&id).await
            })
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(pb::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        req: Request<pb::PodSandboxStatusRequest>,
    ) -> R<pb::PodSandboxStatusResponse> {
        let r = self
            .0
            .pod_sandbox_status(&req.into_inner().pod_sandbox_id)
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(r))
    }

    async fn list_pod_sandbox(
        &self,
        req: Request<pb::ListPodSandboxRequest>,
    ) -> R<pb::ListPodSandboxResponse> {
        Ok(Response::new(pb::ListPodSandboxResponse {
            items: self.0.list_pod_sandbox(req.into_inner().filter),
        }))
    }

    async fn create_container(
        &self,
        req: Request<pb::CreateContainerRequest>,
    ) -> R<pb::CreateContainerResponse> {
        let id = self
            .0
            .create_container(req.into_inner())
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(pb::CreateContainerResponse {
            container_id: id,
        }))
    }

    async fn start_container(
        &self,
        req: Request<pb::StartContainerRequest>,
    ) -> R<pb::StartContainerResponse> {
        let rt = self.0.clone();
        let id = req.into_inner().container_id;
        self.0
            .detached(format!("runtime/StartContainer {id}"), async move {
                rt.start_container(&id).await
            })
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(pb::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        req: Request<pb::StopContainerRequest>,
    ) -> R<pb::StopContainerResponse> {
        let r = req.into_inner();
        let rt = self.0.clone();
        self.0
            .detached(
                format!("runtime/StopContainer {}", r.container_id),
                async move { rt.stop_container(&r.container_id, r.timeout).await },
            )
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(pb::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        req: Request<pb::RemoveContainerRequest>,
    ) -> R<pb::RemoveContainerResponse> {
        let rt = self.0.clone();
        let id = req.into_inner().container_id;
        self.0
            .detached(format!("runtime/RemoveContainer {id}"), async move {
                rt.remove_container(&id).await
            })
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(pb::RemoveContainerResponse {}))
    }

    async fn container_status(
        &self,
        req: Request<pb::ContainerStatusRequest>,
    ) -> R<pb::ContainerStatusResponse> {
        let r = self
            .0
            .container_status(&req.into_inner().container_id)
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(r))
    }

    async fn list_containers(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> R<pb::ListContainersResponse> {
        Ok(Response::new(pb::ListContainersResponse {
            containers: self.0.list_containers(req.into_inner().filter),
        }))
    }

    async fn exec_sync(&self, req: Request<pb::ExecSyncRequest>) -> R<pb::ExecSyncResponse> {
        let r = self
            .0
            .exec_sync(req.into_inner())
            .await
            .map_err(status::runtime)?;
        Ok(Response::new(r))
    }

    type ExecStream = ExecStream;

    async fn exec(&self, req: Request<Streaming<pb::ExecRequest>>) -> R<Self::ExecStream> {
        use crate::runtime::exec::Input;
        use pb::exec_request::Msg;
        let mut input = req.into_inner();
        let start = match input.message().await? {
            Some(pb::ExecRequest {
                msg: Some(Msg::Start(s)),
            }) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "the first Exec message must be start",
                ));
            }
        };
        let rest = input.filter_map(|m| async move {
            match m.ok()?.msg? {
                Msg::Stdin(b) => Some(Input::Stdin(b)),
                Msg::CloseStdin(_) => Some(Input::CloseStdin),
                Msg::Resize(r) => Some(Input::Resize(r.width, r.height)),
                Msg::Start(_) => None,
            }
        });
        let mut out = self
            .0
            .exec_stream(start, Box::pin(rest))
            .await
            .map_err(status::runtime)?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        self.0.tasks().spawn("runtime/exec forward", async move {
            while let Some(m) = out.recv().await {
                if tx.send(Ok(m)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}
