//! etcd's Cluster service: membership changes go through Raft as
//! configuration changes carrying the member's record.

use ackemu_proto::ackemu::store::v1::MemberInfo;
use ackemu_proto::etcdserverpb::cluster_server::Cluster;
use ackemu_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use raft::eraftpb::ConfChangeType;
use tonic::{Request, Response, Status};

use super::{Api, status};
use crate::config::{member_id, url_addr};
use crate::errors::EtcdError;
use crate::server::to_member;

#[tonic::async_trait]
impl Cluster for Api {
    async fn member_add(
        &self,
        req: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let r = req.into_inner();
        if r.peer_ur_ls.is_empty() || r.peer_ur_ls.iter().any(|u| url_addr(u).is_err()) {
            return Err(status(EtcdError::MemberBadUrls));
        }
        let taken = self
            .shared
            .sm
            .read()
            .members
            .values()
            .any(|m| m.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u)));
        if taken {
            return Err(status(EtcdError::PeerUrlExist));
        }
        let id = member_id(
            &r.peer_ur_ls,
            &self.shared.cfg.cluster_token,
            Some(self.shared.clock.wall_unix_ms()),
        );
        let info = MemberInfo {
            id,
            peer_urls: r.peer_ur_ls.clone(),
            is_learner: r.is_learner,
            ..Default::default()
        };
        let kind = if r.is_learner {
            ConfChangeType::AddLearnerNode
        } else {
            ConfChangeType::AddNode
        };
        self.shared
            .conf_change(kind, id, Some(info.clone()))
            .await
            .map_err(status)?;
        Ok(Response::new(MemberAddResponse {
            header: Some(self.shared.header()),
            member: Some(to_member(&info)),
            members: self.shared.members(),
        }))
    }

    async fn member_remove(
        &self,
        req: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let id = req.into_inner().id;
        if !self.shared.sm.read().members.contains_key(&id) {
            return Err(status(EtcdError::MemberNotFound));
        }
        self.shared
            .conf_change(ConfChangeType::RemoveNode, id, None)
            .await
            .map_err(status)?;
        Ok(Response::new(MemberRemoveResponse {
            header: Some(self.shared.header()),
            members: self.shared.members(),
        }))
    }

    async fn member_update(
        &self,
        _req: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Status::unimplemented(
            "etcdserver: changing a member's peer URLs is not supported by ackemu-store",
        ))
    }

    async fn member_list(
        &self,
        _req: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse {
            header: Some(self.shared.header()),
            members: self.shared.members(),
        }))
    }

    async fn member_promote(
        &self,
        req: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let id = req.into_inner().id;
        let info = self.shared.sm.read().members.get(&id).cloned();
        let Some(mut info) = info else {
            return Err(status(EtcdError::MemberNotFound));
        };
        info.is_learner = false;
        self.shared
            .conf_change(ConfChangeType::AddNode, id, Some(info))
            .await
            .map_err(status)?;
        Ok(Response::new(MemberPromoteResponse {
            header: Some(self.shared.header()),
            members: self.shared.members(),
        }))
    }
}
