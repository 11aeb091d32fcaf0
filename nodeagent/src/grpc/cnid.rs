//! The CNI daemon's socket: decode, hand to [`crate::cnid::Daemon`]. CNI
//! errors travel inside the reply (the plugin prints them), so no gRPC
//! status is ever produced here.

use ackemu_proto::ackemu::node::v1 as pb;
use ackemu_proto::ackemu::node::v1::cni_daemon_server::{CniDaemon, CniDaemonServer};
use tonic::{Request, Response, Status};

use crate::cnid::{Daemon, Op};

/// The service over `daemon`.
pub fn server(daemon: Daemon) -> CniDaemonServer<Svc> {
    CniDaemonServer::new(Svc(daemon))
}

/// Adapter.
pub struct Svc(Daemon);

#[tonic::async_trait]
impl CniDaemon for Svc {
    async fn add(&self, req: Request<pb::CniRequest>) -> Result<Response<pb::CniReply>, Status> {
        Ok(Response::new(
            self.0.handle(Op::Add, req.into_inner()).await,
        ))
    }
    async fn del(&self, req: Request<pb::CniRequest>) -> Result<Response<pb::CniReply>, Status> {
        Ok(Response::new(
            self.0.handle(Op::Del, req.into_inner()).await,
        ))
    }
    async fn check(&self, req: Request<pb::CniRequest>) -> Result<Response<pb::CniReply>, Status> {
        Ok(Response::new(
            self.0.handle(Op::Check, req.into_inner()).await,
        ))
    }
}
