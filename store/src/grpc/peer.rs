//! The member-to-member service on the peer port.

use ackemu_proto::ackemu::store::v1::store_peer_server::StorePeer;
use ackemu_proto::ackemu::store::v1::{
    LeaseRenewRequest, LeaseRenewResponse, MembersRequest, MembersResponse, RaftAck, RaftBatch,
};
use ackemu_proto::etcdserverpb::{LeaseTimeToLiveRequest, LeaseTimeToLiveResponse};
use protobuf::Message as _;
use raft::eraftpb::Message;
use tonic::{Request, Response, Status, Streaming};

use super::Api;
use crate::raft::node::Input;

impl Api {
    /// Decodes a batch and hands it to the Raft loop. A malformed message
    /// fails the whole batch before anything reaches raft.
    async fn deliver(&self, batch: RaftBatch) -> Result<(), Status> {
        if self.shared.sm.read().removed.contains(&batch.from) {
            return Err(Status::permission_denied(
                "the member has been permanently removed from the cluster",
            ));
        }
        let mut msgs = Vec::with_capacity(batch.messages.len());
        for bytes in &batch.messages {
            let m = Message::parse_from_bytes(bytes)
                .map_err(|e| Status::invalid_argument(format!("malformed raft message: {e}")))?;
            if m.to != self.shared.member_id {
                return Err(Status::invalid_argument(format!(
                    "raft message for member {:x} arrived at member {:x}",
                    m.to, self.shared.member_id
                )));
            }
            msgs.push(m);
        }
        for m in msgs {
            self.shared
                .inbox
                .send(Input::Message(m))
                .await
                .map_err(|_| Status::unavailable("etcdserver: server stopped"))?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl StorePeer for Api {
    async fn raft(&self, req: Request<Streaming<RaftBatch>>) -> Result<Response<RaftAck>, Status> {
        let mut inbound = req.into_inner();
        while let Some(batch) = inbound.message().await? {
            if let Err(e) = ackemu_base::failpoint!("store/peer/recv") {
                tracing::debug!(
                    "dropping {} incoming raft messages: {e}",
                    batch.messages.len()
                );
                continue;
            }
            self.deliver(batch).await?;
        }
        Ok(Response::new(RaftAck {}))
    }

    async fn raft_snapshot(&self, req: Request<RaftBatch>) -> Result<Response<RaftAck>, Status> {
        ackemu_base::failpoint!("store/peer/recv")
            .map_err(|e| Status::unavailable(e.to_string()))?;
        self.deliver(req.into_inner()).await?;
        Ok(Response::new(RaftAck {}))
    }

    async fn lease_renew(
        &self,
        req: Request<LeaseRenewRequest>,
    ) -> Result<Response<LeaseRenewResponse>, Status> {
        if !self.shared.view().is_leader {
            return Err(Status::unavailable("etcdserver: not leader"));
        }
        let now = self.shared.clock.now().as_millis() as u64;
        let ttl = self
            .shared
            .lessor
            .lock()
            .renew(req.into_inner().id, now)
            .unwrap_or(-1);
        Ok(Response::new(LeaseRenewResponse { ttl }))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        if !self.shared.view().is_leader {
            return Err(Status::unavailable("etcdserver: not leader"));
        }
        Ok(Response::new(self.shared.lease_ttl_local(req.get_ref())))
    }

    async fn members(
        &self,
        _req: Request<MembersRequest>,
    ) -> Result<Response<MembersResponse>, Status> {
        let members = self.shared.sm.read().members.values().cloned().collect();
        Ok(Response::new(MembersResponse {
            cluster_id: self.shared.cluster_id,
            members,
        }))
    }
}
