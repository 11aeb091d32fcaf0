//! etcd's Maintenance service.

use ackemu_proto::ackemu::store::v1::internal_request::Request as Internal;
use ackemu_proto::etcdserverpb::maintenance_server::Maintenance;
use ackemu_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest, SnapshotResponse, StatusRequest,
    StatusResponse, alarm_request,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::{Api, status};
use crate::apply::Response as Applied;
use crate::db::{CF_KV, CF_LEASE, CF_META};
use crate::errors::EtcdError;
use crate::raft::node::Input;

/// The etcd API version this store speaks.
pub const ETCD_VERSION: &str = "3.4.23";

#[tonic::async_trait]
impl Maintenance for Api {
    async fn alarm(&self, req: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let a = req.into_inner();
        if a.action == alarm_request::AlarmAction::Get as i32 {
            let alarms = self
                .shared
                .sm
                .read()
                .alarms
                .iter()
                .filter(|(m, t)| {
                    (a.member_id == 0 || *m == a.member_id) && (a.alarm == 0 || *t == a.alarm)
                })
                .map(|(m, t)| AlarmMember {
                    member_id: *m,
                    alarm: *t,
                })
                .collect();
            return Ok(Response::new(AlarmResponse {
                header: Some(self.shared.header()),
                alarms,
            }));
        }
        match self
            .shared
            .propose(Internal::Alarm(a))
            .await
            .map_err(status)?
        {
            Applied::Alarm(mut r) => {
                r.header = Some(self.shared.header());
                Ok(Response::new(r))
            }
            other => Err(Status::internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }

    async fn status(
        &self,
        _req: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let view = self.shared.view();
        let sm = self.shared.sm.read();
        let errors = sm
            .alarms
            .iter()
            .map(|(m, t)| {
                let name = AlarmType::try_from(*t)
                    .map(|a| a.as_str_name())
                    .unwrap_or("UNKNOWN");
                format!("memberID:{m} alarm:{name} ")
            })
            .collect();
        let is_learner = sm
            .members
            .get(&self.shared.member_id)
            .is_some_and(|m| m.is_learner);
        let resp = StatusResponse {
            header: Some(self.shared.header_at(sm.mvcc.current_rev())),
            version: ETCD_VERSION.into(),
            db_size: sm.mvcc.physical_bytes(),
            leader: view.leader,
            raft_index: view.commit,
            raft_term: view.term,
            raft_applied_index: sm.applied_index,
            errors,
            db_size_in_use: sm.mvcc.logical_bytes(),
            is_learner,
            storage_version: String::new(),
            db_size_quota: self.shared.cfg.quota_bytes,
            downgrade_info: None,
        };
        Ok(Response::new(resp))
    }

    async fn defragment(
        &self,
        _req: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        let shared = self.shared.clone();
        let res = self
            .shared
            .tasks
            .spawn_blocking("store/defragment", move || {
                shared.sm.write().mvcc.defragment()
            })
            .await
            .map_err(|e| Status::internal(format!("defragmentation task failed: {e}")))?;
        res.map_err(|e| status(EtcdError::from(e)))?;
        Ok(Response::new(DefragmentResponse {
            header: Some(self.shared.header()),
        }))
    }

    async fn hash(&self, _req: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        let sm = self.shared.sm.read();
        let mut h = crc32fast::Hasher::new();
        for cf in [CF_KV, CF_LEASE, CF_META] {
            for (k, v) in sm.mvcc.export(cf).map_err(|e| status(EtcdError::from(e)))? {
                // Per-member bookkeeping would make equal stores hash differently.
                if cf == CF_META && (k.starts_with(b"applied_") || k.starts_with(b"alarm/")) {
                    continue;
                }
                h.update(&k);
                h.update(&v);
            }
        }
        let header = self.shared.header_at(sm.mvcc.current_rev());
        Ok(Response::new(HashResponse {
            header: Some(header),
            hash: h.finalize(),
        }))
    }

    async fn hash_kv(
        &self,
        req: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let sm = self.shared.sm.read();
        let (hash, compact_revision, hash_revision) =
            sm.mvcc.hash_kv(req.into_inner().revision).map_err(status)?;
        let header = self.shared.header_at(sm.mvcc.current_rev());
        Ok(Response::new(HashKvResponse {
            header: Some(header),
            hash,
            compact_revision,
            hash_revision,
        }))
    }

    type SnapshotStream = ReceiverStream<Result<SnapshotResponse, Status>>;

    async fn snapshot(
        &self,
        _req: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(Status::unimplemented(
            "etcdserver: snapshot download is not supported by ackemu-store (its backend is not a bbolt file)",
        ))
    }

    async fn move_leader(
        &self,
        req: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = req.into_inner().target_id;
        if !self.shared.view().is_leader {
            return Err(status(EtcdError::NotLeader));
        }
        if !self.shared.sm.read().members.contains_key(&target) {
            return Err(status(EtcdError::MemberNotFound));
        }
        self.shared
            .inbox
            .send(Input::TransferLeader(target))
            .await
            .map_err(|_| status(EtcdError::Stopped))?;
        let mut view = self.shared.raft.subscribe();
        let moved = self.shared.clock.timeout(
            self.shared.cfg.request_timeout(),
            view.wait_for(|v| v.leader == target),
        );
        match moved.await {
            Ok(Ok(_)) => Ok(Response::new(MoveLeaderResponse {
                header: Some(self.shared.header()),
            })),
            _ => Err(status(EtcdError::Timeout)),
        }
    }

    async fn downgrade(
        &self,
        _req: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(Status::unimplemented(
            "etcdserver: downgrade is not supported by ackemu-store",
        ))
    }
}
