//! etcd's Lease service. Grants and revocations go through Raft; keep-alives
//! and TTL queries are answered by the leader (forwarded by followers).

use ackemu_proto::ackemu::store::v1::internal_request::Request as Internal;
use ackemu_proto::etcdserverpb::lease_server::Lease;
use ackemu_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Api, status};
use crate::apply::Response as Applied;
use crate::errors::EtcdError;
use crate::lessor::MAX_LEASE_TTL_S;

#[tonic::async_trait]
impl Lease for Api {
    async fn lease_grant(
        &self,
        req: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut g = req.into_inner();
        if g.ttl > MAX_LEASE_TTL_S {
            return Err(status(EtcdError::LeaseTtlTooLarge));
        }
        g.ttl = self.shared.lessor.lock().effective_ttl(g.ttl);
        if g.id == 0 {
            g.id = (self.shared.next_request_id() & (i64::MAX as u64)) as i64;
        }
        match self
            .shared
            .propose(Internal::LeaseGrant(g))
            .await
            .map_err(status)?
        {
            Applied::LeaseGrant(mut r) => {
                r.header = Some(self.shared.header());
                Ok(Response::new(r))
            }
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    async fn lease_revoke(
        &self,
        req: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        match self
            .shared
            .propose(Internal::LeaseRevoke(req.into_inner()))
            .await
            .map_err(status)?
        {
            Applied::LeaseRevoke(mut r) => {
                r.header = Some(self.shared.header());
                Ok(Response::new(r))
            }
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        req: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let shared = self.shared.clone();
        let token = shared.tasks.token();
        self.shared
            .tasks
            .spawn("store/lease/keepalive", async move {
                loop {
                    let msg = tokio::select! {
                        () = token.cancelled() => return,
                        m = inbound.message() => m,
                    };
                    let Ok(Some(ka)) = msg else { return };
                    let resp = match shared.lease_renew(ka.id).await {
                        Ok(ttl) => Ok(LeaseKeepAliveResponse {
                            header: Some(shared.header()),
                            id: ka.id,
                            ttl,
                        }),
                        // etcd answers an unknown lease with TTL 0, not an error.
                        Err(EtcdError::LeaseNotFound) => Ok(LeaseKeepAliveResponse {
                            header: Some(shared.header()),
                            id: ka.id,
                            ttl: 0,
                        }),
                        Err(e) => Err(status(e)),
                    };
                    let fatal = resp.is_err();
                    if tx.send(resp).await.is_err() || fatal {
                        return;
                    }
                }
            });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn lease_time_to_live(
        &self,
        req: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        self.shared
            .lease_ttl(req.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn lease_leases(
        &self,
        _req: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        let leases = self
            .shared
            .sm
            .read()
            .mvcc
            .leases()
            .keys()
            .map(|id| LeaseStatus { id: *id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.shared.header()),
            leases,
        }))
    }
}
