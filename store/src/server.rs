//! The member's shared state and the request paths the gRPC handlers use:
//! proposing writes and waiting for their application, ReadIndex for
//! linearizable reads, the space quota, lease keep-alives (forwarded to the
//! leader, which alone decides expiry) and membership changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_proto::ackemu::store::v1::{
    InternalRequest, LeaseRenewRequest, MemberInfo, internal_request,
};
use ackemu_proto::etcdserverpb::{
    AlarmRequest, AlarmType, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, Member, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, alarm_request, request_op,
};
use ackemu_proto::mvccpb::Event;
use parking_lot::{Mutex, RwLock};
use prost::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::apply::{Response, StateMachine};
use crate::config::Config;
use crate::db::Db;
use crate::errors::{EtcdError, EtcdResult};
use crate::lessor::Lessor;
use crate::raft::node::Input;
use crate::raft::transport::Transport;

/// The changes of one applied revision, as watchers receive them.
#[derive(Debug)]
pub struct RevisionEvents {
    pub revision: i64,
    pub events: Vec<Event>,
    /// The state was replaced (snapshot): watchers re-read from disk.
    pub resync: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RaftView {
    pub leader: u64,
    pub term: u64,
    pub commit: u64,
    pub is_leader: bool,
}

pub struct Shared {
    pub cfg: Config,
    pub clock: Clock,
    pub tasks: Tasks,
    pub db: Db,
    pub member_id: u64,
    pub cluster_id: u64,
    pub sm: Arc<RwLock<StateMachine>>,
    pub waiters: Mutex<HashMap<u64, oneshot::Sender<EtcdResult<Response>>>>,
    pub lessor: Mutex<Lessor>,
    pub watch_tx: broadcast::Sender<Arc<RevisionEvents>>,
    pub applied_tx: watch::Sender<u64>,
    pub raft: watch::Sender<RaftView>,
    pub transport: Arc<Transport>,
    pub inbox: mpsc::Sender<Input>,
    next_id: AtomicU64,
    /// Peers a joining member learned before its log names them.
    seed: Mutex<Vec<(u64, Vec<String>)>>,
}

/// Bytes a request adds to the backend at most, beyond its encoding.
const QUOTA_OVERHEAD_BYTES: usize = 512;

fn writes_in(ops: &[RequestOp]) -> usize {
    ops.iter()
        .map(|op| match &op.request {
            Some(request_op::Request::RequestPut(p)) => p.key.len() + p.value.len(),
            Some(request_op::Request::RequestTxn(t)) => {
                writes_in(&t.success).max(writes_in(&t.failure))
            }
            _ => 0,
        })
        .sum()
}

pub struct SharedParts {
    pub cfg: Config,
    pub clock: Clock,
    pub tasks: Tasks,
    pub db: Db,
    pub member_id: u64,
    pub cluster_id: u64,
    pub sm: Arc<RwLock<StateMachine>>,
    pub transport: Arc<Transport>,
    pub inbox: mpsc::Sender<Input>,
}

impl Shared {
    pub fn new(p: SharedParts) -> Arc<Shared> {
        let min_ttl_s = ((p.cfg.election.as_millis() * 3 / 2).div_ceil(1000)) as i64;
        let applied = p.sm.read().applied_index;
        let (watch_tx, _) = broadcast::channel(p.cfg.watch_buffer_revisions);
        let wall_ms = p.clock.wall_unix_ms() as u64;
        let id_base = ((p.member_id & 0xffff) << 48) | ((wall_ms & 0xff_ffff_ffff) << 8);
        let shared = Arc::new(Shared {
            lessor: Mutex::new(Lessor::new(min_ttl_s, 3_000)),
            watch_tx,
            applied_tx: watch::Sender::new(applied),
            raft: watch::Sender::new(RaftView::default()),
            waiters: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(id_base),
            seed: Mutex::new(Vec::new()),
            cfg: p.cfg,
            clock: p.clock,
            tasks: p.tasks,
            db: p.db,
            member_id: p.member_id,
            cluster_id: p.cluster_id,
            sm: p.sm,
            transport: p.transport,
            inbox: p.inbox,
        });
        shared.after_state_replaced();
        shared
    }

    pub fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn set_leader(&self, leader: u64, term: u64, is_leader: bool) {
        self.raft.send_modify(|v| {
            v.leader = leader;
            v.term = term;
            v.is_leader = is_leader;
        });
    }

    pub fn set_progress(&self, term: u64, commit: u64) {
        self.raft.send_if_modified(|v| {
            let changed = v.term != term || v.commit != commit;
            v.term = term;
            v.commit = commit;
            changed
        });
    }

    pub fn view(&self) -> RaftView {
        *self.raft.borrow()
    }

    /// Peers and leases follow the state machine after it was loaded or
    /// replaced by a snapshot.
    pub fn after_state_replaced(&self) {
        let now = self.clock.now().as_millis() as u64;
        {
            let sm = self.sm.read();
            let mut lessor = self.lessor.lock();
            let primary = lessor.is_primary();
            *lessor = Lessor::new(lessor.effective_ttl(0), 3_000);
            for (id, l) in sm.mvcc.leases() {
                lessor.grant(*id, l.ttl, now);
            }
            if primary {
                lessor.promote(now);
            }
        }
        self.refresh_peers();
    }

    pub fn refresh_peers(&self) {
        let (mut members, know_self): (Vec<(u64, Vec<String>)>, bool) = {
            let sm = self.sm.read();
            (
                sm.members
                    .values()
                    .map(|m| (m.id, m.peer_urls.clone()))
                    .collect(),
                sm.members.contains_key(&self.member_id),
            )
        };
        let mut seed = self.seed.lock();
        if know_self {
            seed.clear();
        }
        for (id, urls) in seed.iter() {
            if !members.iter().any(|(m, _)| m == id) {
                members.push((*id, urls.clone()));
            }
        }
        drop(seed);
        self.transport.set_peers(&members);
    }

    pub fn seed_peers(&self, peers: Vec<(u64, Vec<String>)>) {
        *self.seed.lock() = peers;
        self.refresh_peers();
    }

    pub fn header(&self) -> ResponseHeader {
        let revision = self.sm.read().mvcc.current_rev();
        self.header_at(revision)
    }

    pub fn header_at(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.member_id,
            revision,
            raft_term: self.view().term,
        }
    }

    fn timeout_error(&self) -> EtcdError {
        if self.view().leader == 0 {
            EtcdError::TimeoutDueToLeaderFail
        } else {
            EtcdError::Timeout
        }
    }

    /// The space a write would add, or 0 for requests that free space.
    fn write_cost(req: &internal_request::Request) -> usize {
        use internal_request::Request as R;
        match req {
            R::Put(p) => p.key.len() + p.value.len() + QUOTA_OVERHEAD_BYTES,
            R::Txn(t) => {
                let w = writes_in(&t.success).max(writes_in(&t.failure));
                if w == 0 { 0 } else { w + QUOTA_OVERHEAD_BYTES }
            }
            R::LeaseGrant(_) => QUOTA_OVERHEAD_BYTES,
            _ => 0,
        }
    }

    /// etcd's quota: a write that would push the backend past the quota
    /// raises the NOSPACE alarm and fails.
    fn check_quota(self: &Arc<Self>, req: &internal_request::Request) -> EtcdResult<()> {
        let cost = Self::write_cost(req) as i64;
        if cost == 0 {
            return Ok(());
        }
        let (nospace, physical) = {
            let sm = self.sm.read();
            (sm.nospace(), sm.mvcc.physical_bytes())
        };
        if nospace {
            return Err(EtcdError::NoSpace);
        }
        if physical + cost > self.cfg.quota_bytes {
            tracing::warn!(
                "backend size {physical} + request {cost} exceeds the quota {}; raising NOSPACE",
                self.cfg.quota_bytes
            );
            let me = self.clone();
            self.tasks.spawn("store/alarm/nospace", async move {
                let alarm = AlarmRequest {
                    action: alarm_request::AlarmAction::Activate as i32,
                    member_id: me.member_id,
                    alarm: AlarmType::Nospace as i32,
                };
                if let Err(e) = me
                    .propose_unchecked(internal_request::Request::Alarm(alarm))
                    .await
                {
                    tracing::warn!("raising the NOSPACE alarm failed: {e}");
                }
            });
            return Err(EtcdError::NoSpace);
        }
        Ok(())
    }

    /// Proposes a write and waits until this member applied it.
    pub async fn propose(self: &Arc<Self>, req: internal_request::Request) -> EtcdResult<Response> {
        self.check_quota(&req)?;
        self.propose_unchecked(req).await
    }

    async fn propose_unchecked(&self, req: internal_request::Request) -> EtcdResult<Response> {
        let id = self.next_request_id();
        let data = InternalRequest {
            id,
            request: Some(req),
        }
        .encode_to_vec();
        if data.len() > self.cfg.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(id, tx);
        metrics::counter!("ackemu_store_proposals_total").increment(1);
        let result = self.wait_applied(Input::Propose { id, data }, rx).await;
        if result.is_err() {
            self.waiters.lock().remove(&id);
        }
        result
    }

    async fn wait_applied(
        &self,
        input: Input,
        rx: oneshot::Receiver<EtcdResult<Response>>,
    ) -> EtcdResult<Response> {
        let timeout = self.cfg.request_timeout();
        let fut = async {
            self.inbox
                .send(input)
                .await
                .map_err(|_| EtcdError::Stopped)?;
            rx.await.map_err(|_| EtcdError::Stopped)?
        };
        match self
            .clock
            .timeout_real_floor(timeout, ackemu_base::tasks::wait_on("store/propose", fut))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error()),
        }
    }

    /// Waits until this member has applied everything committed when the
    /// call started, as confirmed by the leader (ReadIndex).
    pub async fn linearizable_barrier(&self) -> EtcdResult<()> {
        if self.cfg.unsafe_stale_reads {
            return Ok(());
        }
        let timeout = self.cfg.request_timeout();
        let fut = async {
            let (tx, rx) = oneshot::channel();
            self.inbox
                .send(Input::ReadIndex(tx))
                .await
                .map_err(|_| EtcdError::Stopped)?;
            let index = rx.await.map_err(|_| EtcdError::Stopped)??;
            let mut applied = self.applied_tx.subscribe();
            applied
                .wait_for(|a| *a >= index)
                .await
                .map_err(|_| EtcdError::Stopped)?;
            Ok(())
        };
        match self
            .clock
            .timeout_real_floor(
                timeout,
                ackemu_base::tasks::wait_on("store/read-index", fut),
            )
            .await
        {
            Ok(r) => r,
            Err(_) => Err(self.timeout_error()),
        }
    }

    pub async fn range(&self, req: &RangeRequest) -> EtcdResult<RangeResponse> {
        if !req.serializable {
            self.linearizable_barrier().await?;
        }
        let mut resp = self.sm.read().mvcc.range(req)?;
        let rev = resp.header.as_ref().map(|h| h.revision).unwrap_or_default();
        resp.header = Some(self.header_at(rev));
        Ok(resp)
    }

    /// A keep-alive: the leader renews, followers forward to it.
    pub async fn lease_renew(&self, id: i64) -> EtcdResult<i64> {
        let view = self.view();
        if view.is_leader {
            let now = self.clock.now().as_millis() as u64;
            return self
                .lessor
                .lock()
                .renew(id, now)
                .ok_or(EtcdError::LeaseNotFound);
        }
        let mut client = self.leader_client(view)?;
        let fut = client.lease_renew(LeaseRenewRequest { id });
        match self
            .clock
            .timeout_real_floor(self.cfg.request_timeout(), fut)
            .await
        {
            Ok(Ok(r)) if r.get_ref().ttl >= 0 => Ok(r.get_ref().ttl),
            Ok(Ok(_)) => Err(EtcdError::LeaseNotFound),
            Ok(Err(_)) | Err(_) => Err(self.timeout_error()),
        }
    }

    fn leader_client(
        &self,
        view: RaftView,
    ) -> EtcdResult<
        ackemu_proto::ackemu::store::v1::store_peer_client::StorePeerClient<
            tonic::transport::Channel,
        >,
    > {
        if view.leader == 0 {
            return Err(EtcdError::NoLeader);
        }
        self.transport
            .client(view.leader)
            .ok_or(EtcdError::NoLeader)
    }

    /// Lease time-to-live as the leader sees it; TTL -1 for unknown leases.
    pub async fn lease_ttl(
        &self,
        req: LeaseTimeToLiveRequest,
    ) -> EtcdResult<LeaseTimeToLiveResponse> {
        let view = self.view();
        if view.is_leader {
            return Ok(self.lease_ttl_local(&req));
        }
        let mut client = self.leader_client(view)?;
        match self
            .clock
            .timeout_real_floor(self.cfg.request_timeout(), client.lease_time_to_live(req))
            .await
        {
            Ok(Ok(r)) => {
                let mut r = r.into_inner();
                r.header = Some(self.header());
                Ok(r)
            }
            Ok(Err(_)) | Err(_) => Err(self.timeout_error()),
        }
    }

    pub fn lease_ttl_local(&self, req: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let now = self.clock.now().as_millis() as u64;
        let (ttl, granted) = self
            .lessor
            .lock()
            .time_to_live(req.id, now)
            .unwrap_or((-1, 0));
        let keys = if req.keys && ttl >= 0 {
            self.sm
                .read()
                .mvcc
                .leases()
                .get(&req.id)
                .map(|l| l.keys.iter().cloned().collect())
                .unwrap_or_default()
        } else {
            vec![]
        };
        LeaseTimeToLiveResponse {
            header: Some(self.header()),
            id: req.id,
            ttl,
            granted_ttl: granted,
            keys,
        }
    }

    pub fn members(&self) -> Vec<Member> {
        self.sm.read().members.values().map(to_member).collect()
    }

    /// Proposes a membership change and waits for it to be applied here.
    pub async fn conf_change(
        &self,
        kind: ConfChangeType,
        node_id: u64,
        context: Option<MemberInfo>,
    ) -> EtcdResult<()> {
        let id = self.next_request_id();
        let mut cc = ConfChange::default();
        cc.set_change_type(kind);
        cc.node_id = node_id;
        cc.id = id;
        if let Some(ctx) = context {
            cc.context = ctx.encode_to_vec().into();
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().insert(id, tx);
        let result = self.wait_applied(Input::ConfChange(cc), rx).await;
        if result.is_err() {
            self.waiters.lock().remove(&id);
        }
        result.map(|_| ())
    }
}

pub fn to_member(m: &MemberInfo) -> Member {
    Member {
        id: m.id,
        name: m.name.clone(),
        peer_ur_ls: m.peer_urls.clone(),
        client_ur_ls: m.client_urls.clone(),
        is_learner: m.is_learner,
    }
}
