//! The Raft loop: one dedicated thread drives raft-rs's `RawNode` through
//! its Ready cycle — send, persist (one fsync per Ready, before any message
//! that depends on it), apply, advance — and owns every mutation of the
//! state machine. Everything else talks to it through a bounded inbox.
//!
//! Proposals arriving while a Ready is handled are batched into the next
//! one; raft-rs pipelines appends (`max_inflight_msgs`). Linearizable reads
//! are batched into one ReadIndex round per loop iteration.

use std::collections::HashMap;
use std::sync::Arc;

use ackemu_base::clock::ClusterInstant;
use ackemu_proto::ackemu::store::v1::{InternalRequest, MemberAttributes, internal_request};
use ackemu_proto::etcdserverpb::LeaseRevokeRequest;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, ReadOnlyOption, StateRole};
use rocksdb::WriteBatch;
use tokio::sync::{mpsc, oneshot};

use super::storage::RaftStorage;
use crate::apply::{Response, StateMachine};
use crate::errors::{EtcdError, EtcdResult};
use crate::server::{RevisionEvents, Shared};

/// Inputs to the Raft loop.
pub enum Input {
    /// A message from a peer.
    Message(Message),
    /// A client write; answered through `Shared::waiters` on apply.
    Propose {
        id: u64,
        data: Vec<u8>,
    },
    /// A membership change; answered through `Shared::waiters` on apply.
    ConfChange(ConfChange),
    /// A linearizable read wants the current commit index.
    ReadIndex(oneshot::Sender<EtcdResult<u64>>),
    Unreachable(u64),
    SnapshotStatus(u64, bool),
    /// Hand leadership to this member (etcd's MoveLeader).
    TransferLeader(u64),
    /// A peer refused us as a removed member.
    Removed,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("raft failed: {0}")]
    Raft(#[from] raft::Error),
    #[error("storage failed: {0}")]
    Db(#[from] crate::db::DbError),
    #[error("{0}")]
    Failpoint(#[from] ackemu_base::failpoint::FailpointError),
}

type ReadWaiter = oneshot::Sender<EtcdResult<u64>>;

/// Inputs handled per loop iteration before the Ready is processed.
const INBOX_BATCH: usize = 1024;
/// Reads not answered within this many ticks are re-issued (a new leader
/// drops ReadIndex requests until it commits in its term).
const READ_RETRY_TICKS: u64 = 5;
/// Leases revoked per tick at most.
const MAX_EXPIRED_PER_TICK: usize = 64;

pub struct Node {
    raw: RawNode<RaftStorage>,
    shared: Arc<Shared>,
    inbox: mpsc::Receiver<Input>,
    pending_reads: Vec<ReadWaiter>,
    /// ReadIndex context → (waiting reads, tick issued).
    inflight_reads: HashMap<u64, (Vec<ReadWaiter>, u64)>,
    read_ctx: u64,
    ticks: u64,
    leader: u64,
    role: StateRole,
    next_attr_publish_tick: u64,
    removed: bool,
}

fn slog_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

/// Forwards raft-rs's slog records to `tracing`.
struct TracingDrain;

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;
    fn log(
        &self,
        record: &slog::Record<'_>,
        _values: &slog::OwnedKVList,
    ) -> Result<(), slog::Never> {
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "raft", "{}", record.msg())
            }
            slog::Level::Warning => tracing::warn!(target: "raft", "{}", record.msg()),
            slog::Level::Info => tracing::info!(target: "raft", "{}", record.msg()),
            _ => tracing::debug!(target: "raft", "{}", record.msg()),
        }
        Ok(())
    }
}

impl Node {
    pub fn new(
        shared: Arc<Shared>,
        storage: RaftStorage,
        inbox: mpsc::Receiver<Input>,
    ) -> Result<Node, NodeError> {
        let cfg = &shared.cfg;
        let election_ticks = (cfg.election.as_millis() / cfg.heartbeat.as_millis()).max(2) as usize;
        let applied = shared.sm.read().applied_index;
        let rc = raft::Config {
            id: shared.member_id,
            election_tick: election_ticks,
            heartbeat_tick: 1,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            read_only_option: ReadOnlyOption::Safe,
            ..Default::default()
        };
        rc.validate()?;
        let raw = RawNode::new(&rc, storage, &slog_logger())?;
        Ok(Node {
            raw,
            shared,
            inbox,
            pending_reads: Vec::new(),
            inflight_reads: HashMap::new(),
            read_ctx: 0,
            ticks: 0,
            leader: 0,
            role: StateRole::Follower,
            next_attr_publish_tick: 0,
            removed: false,
        })
    }

    fn now_ms(&self) -> u64 {
        self.shared.clock.now().as_millis() as u64
    }

    /// Runs until cancelled, removed from the cluster, or a fatal error.
    pub async fn run(mut self) -> Result<(), NodeError> {
        let token = self.shared.tasks.token();
        let tick = self.shared.cfg.heartbeat;
        let mut next_tick: ClusterInstant = self.shared.clock.now() + tick;
        loop {
            tokio::select! {
                biased;
                () = token.cancelled() => break,
                () = self.shared.clock.sleep_until(next_tick) => {
                    self.raw.tick();
                    self.ticks += 1;
                    next_tick = next_tick + tick;
                    let now = self.shared.clock.now();
                    if next_tick < now {
                        // Fell behind (a stall): do not burst ticks.
                        next_tick = now + tick;
                    }
                    self.on_tick();
                }
                input = self.inbox.recv() => {
                    let Some(input) = input else { break };
                    self.handle(input);
                    for _ in 0..INBOX_BATCH {
                        match self.inbox.try_recv() {
                            Ok(i) => self.handle(i),
                            Err(_) => break,
                        }
                    }
                }
            }
            self.issue_reads();
            if self.raw.has_ready() {
                self.on_ready()?;
            }
            if self.removed {
                tracing::warn!("this member was removed from the cluster; stopping");
                token.cancel();
                break;
            }
        }
        self.fail_reads(EtcdError::Stopped);
        Ok(())
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Message(m) => {
                if let Err(e) = self.raw.step(m) {
                    tracing::debug!("raft step: {e}");
                }
            }
            Input::Propose { id, data } => {
                if let Err(e) = self.raw.propose(vec![], data) {
                    tracing::debug!("proposal dropped: {e}");
                    self.answer(id, Err(EtcdError::NoLeader));
                }
            }
            Input::ConfChange(cc) => {
                let id = cc.id;
                if let Err(e) = self.raw.propose_conf_change(vec![], cc) {
                    tracing::debug!("conf change dropped: {e}");
                    self.answer(id, Err(EtcdError::NoLeader));
                }
            }
            Input::ReadIndex(tx) => self.pending_reads.push(tx),
            Input::Unreachable(id) => self.raw.report_unreachable(id),
            Input::TransferLeader(id) => self.raw.transfer_leader(id),
            Input::Removed => self.removed = true,
            Input::SnapshotStatus(id, ok) => {
                let status = if ok {
                    raft::SnapshotStatus::Finish
                } else {
                    raft::SnapshotStatus::Failure
                };
                self.raw.report_snapshot(id, status);
            }
        }
    }

    fn answer(&self, id: u64, result: EtcdResult<Response>) {
        if let Some(tx) = self.shared.waiters.lock().remove(&id) {
            let _ = tx.send(result);
        }
    }

    fn propose_internal(&mut self, request: internal_request::Request) {
        let id = self.shared.next_request_id();
        let data = InternalRequest {
            id,
            request: Some(request),
        }
        .encode_to_vec();
        if let Err(e) = self.raw.propose(vec![], data) {
            tracing::debug!("internal proposal dropped: {e}");
        }
    }

    fn on_tick(&mut self) {
        // Re-issue reads that got no answer (dropped by a leader that has not
        // yet committed in its term, or lost with a message).
        let stale: Vec<u64> = self
            .inflight_reads
            .iter()
            .filter(|(_, (_, at))| self.ticks.saturating_sub(*at) >= READ_RETRY_TICKS)
            .map(|(ctx, _)| *ctx)
            .collect();
        for ctx in stale {
            if let Some((txs, _)) = self.inflight_reads.remove(&ctx) {
                self.pending_reads.extend(txs);
            }
        }
        if self.role == StateRole::Leader {
            let now = self.now_ms();
            let expired = self
                .shared
                .lessor
                .lock()
                .take_expired(now, MAX_EXPIRED_PER_TICK);
            for id in expired {
                tracing::info!("lease {id:x} expired; revoking");
                self.propose_internal(internal_request::Request::LeaseRevoke(LeaseRevokeRequest {
                    id,
                }));
            }
        }
        if self.leader != 0 && self.ticks >= self.next_attr_publish_tick {
            self.next_attr_publish_tick = self.ticks + 10;
            let me = self.shared.member_id;
            let stale = {
                let sm = self.shared.sm.read();
                sm.members.get(&me).is_some_and(|m| {
                    m.name != self.shared.cfg.name || m.client_urls != self.shared.cfg.client_urls
                })
            };
            if stale {
                self.propose_internal(internal_request::Request::MemberAttributes(
                    MemberAttributes {
                        id: me,
                        name: self.shared.cfg.name.clone(),
                        client_urls: self.shared.cfg.client_urls.clone(),
                    },
                ));
            }
        }
    }

    fn issue_reads(&mut self) {
        if self.pending_reads.is_empty() {
            return;
        }
        if self.leader == 0 {
            let txs = std::mem::take(&mut self.pending_reads);
            for tx in txs {
                let _ = tx.send(Err(EtcdError::NoLeader));
            }
            return;
        }
        if self.role == StateRole::Leader && !self.raw.raft.commit_to_current_term() {
            // raft-rs would drop the request; wait for the term's first commit.
            return;
        }
        self.read_ctx += 1;
        let ctx = self.read_ctx;
        self.raw.read_index(ctx.to_be_bytes().to_vec());
        let txs = std::mem::take(&mut self.pending_reads);
        self.inflight_reads.insert(ctx, (txs, self.ticks));
    }

    fn fail_reads(&mut self, err: EtcdError) {
        for (_, (txs, _)) in self.inflight_reads.drain() {
            for tx in txs {
                let _ = tx.send(Err(err.clone()));
            }
        }
        for tx in self.pending_reads.drain(..) {
            let _ = tx.send(Err(err.clone()));
        }
    }

    fn send(&mut self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        for id in self.shared.transport.send(msgs) {
            self.raw.report_unreachable(id);
        }
    }

    fn on_soft_state(&mut self, leader: u64, role: StateRole) {
        if leader != self.leader {
            tracing::info!("leader is now {leader:x} (term {})", self.raw.raft.term);
            metrics::counter!("ackemu_store_leader_changes_total").increment(1);
            self.leader = leader;
            // Reads waiting on the old leader cannot be answered safely.
            for (_, (txs, _)) in self.inflight_reads.drain() {
                for tx in txs {
                    let _ = tx.send(Err(EtcdError::LeaderChanged));
                }
            }
        }
        if role != self.role {
            let now = self.now_ms();
            let mut lessor = self.shared.lessor.lock();
            if role == StateRole::Leader {
                lessor.promote(now);
            } else if self.role == StateRole::Leader {
                lessor.demote();
            }
            self.role = role;
        }
        self.shared
            .set_leader(leader, self.raw.raft.term, role == StateRole::Leader);
    }

    fn on_ready(&mut self) -> Result<(), NodeError> {
        let mut rd = self.raw.ready();
        if let Some(ss) = rd.ss() {
            let (leader, role) = (ss.leader_id, ss.raft_state);
            self.on_soft_state(leader, role);
        }
        self.send(rd.take_messages());
        if !rd.snapshot().is_empty() {
            let snap = rd.snapshot().clone();
            self.apply_snapshot(&snap)?;
        }
        for rs in rd.take_read_states() {
            let Ok(ctx) = <[u8; 8]>::try_from(rs.request_ctx.as_slice()) else {
                continue;
            };
            if let Some((txs, _)) = self.inflight_reads.remove(&u64::from_be_bytes(ctx)) {
                for tx in txs {
                    let _ = tx.send(Ok(rs.index));
                }
            }
        }
        self.apply_entries(rd.take_committed_entries())?;

        let mut batch = WriteBatch::default();
        if !rd.entries().is_empty() {
            ackemu_base::failpoint_sync!("store/raft/append")?;
            self.raw.mut_store().append(&mut batch, rd.entries())?;
        }
        if let Some(hs) = rd.hs() {
            self.raw
                .mut_store()
                .set_hard_state(&mut batch, hs.clone())?;
        }
        if !batch.is_empty() {
            let sync = rd.must_sync();
            if sync {
                ackemu_base::failpoint_sync!("store/raft/fsync")?;
            }
            self.shared.db.write(batch, sync)?;
            ackemu_base::failpoint_sync!("store/raft/appended")?;
        }
        self.send(rd.take_persisted_messages());
        let mut light = self.raw.advance(rd);
        if let Some(commit) = light.commit_index() {
            let mut b = WriteBatch::default();
            self.raw.mut_store().set_commit(&mut b, commit)?;
            self.shared.db.write(b, false)?;
        }
        self.send(light.take_messages());
        self.apply_entries(light.take_committed_entries())?;
        self.raw.advance_apply();
        self.maybe_compact_log()?;
        let st = &self.raw.raft;
        self.shared.set_progress(st.term, st.raft_log.committed);
        Ok(())
    }

    fn apply_snapshot(&mut self, snap: &Snapshot) -> Result<(), NodeError> {
        ackemu_base::failpoint_sync!("store/snapshot/save")?;
        let meta = snap.get_metadata();
        tracing::info!(
            "applying snapshot at index {} term {}",
            meta.index,
            meta.term
        );
        let sm = StateMachine::restore(
            self.shared.db.clone(),
            &snap.data,
            meta.index,
            meta.term,
            meta.get_conf_state(),
        )?;
        let mut batch = WriteBatch::default();
        self.raw
            .mut_store()
            .apply_snapshot_meta(&mut batch, meta.index, meta.term)?;
        self.shared.db.write(batch, true)?;
        let rev = sm.mvcc.current_rev();
        *self.shared.sm.write() = sm;
        self.shared.after_state_replaced();
        let _ = self.shared.watch_tx.send(Arc::new(RevisionEvents {
            revision: rev,
            events: vec![],
            resync: true,
        }));
        self.shared.applied_tx.send_replace(meta.index);
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<Entry>) -> Result<(), NodeError> {
        for e in entries {
            if e.index <= self.shared.sm.read().applied_index {
                continue;
            }
            ackemu_base::failpoint_sync!("store/apply")?;
            match e.get_entry_type() {
                EntryType::EntryNormal if e.data.is_empty() => {
                    self.shared.sm.write().apply_noop(e.index, e.term)?
                }
                EntryType::EntryNormal => self.apply_normal(&e)?,
                EntryType::EntryConfChange => self.apply_conf_change(&e)?,
                EntryType::EntryConfChangeV2 => {
                    self.shared.sm.write().apply_noop(e.index, e.term)?
                }
            }
            self.shared.applied_tx.send_replace(e.index);
        }
        Ok(())
    }

    fn apply_normal(&mut self, e: &Entry) -> Result<(), NodeError> {
        let applied = self
            .shared
            .sm
            .write()
            .apply_normal(e.index, e.term, &e.data)?;
        if let Some((id, ttl)) = applied.lease_granted {
            let now = self.now_ms();
            self.shared.lessor.lock().grant(id, ttl, now);
        }
        if let Some(id) = applied.lease_revoked {
            self.shared.lessor.lock().revoke(id);
        }
        if !applied.events.is_empty() {
            metrics::counter!("ackemu_store_events_total").increment(applied.events.len() as u64);
            let _ = self.shared.watch_tx.send(Arc::new(RevisionEvents {
                revision: applied.revision,
                events: applied.events,
                resync: false,
            }));
        }
        self.answer(applied.request_id, applied.result);
        Ok(())
    }

    fn apply_conf_change(&mut self, e: &Entry) -> Result<(), NodeError> {
        let cc = match ConfChange::parse_from_bytes(&e.data) {
            Ok(cc) => cc,
            Err(err) => {
                tracing::error!("malformed conf change at index {}: {err}", e.index);
                self.shared.sm.write().apply_noop(e.index, e.term)?;
                return Ok(());
            }
        };
        let cs = match self.raw.apply_conf_change(&cc) {
            Ok(cs) => cs,
            Err(err) => {
                tracing::warn!("conf change at index {} refused: {err}", e.index);
                self.shared.sm.write().apply_noop(e.index, e.term)?;
                self.answer(cc.id, Err(EtcdError::Malformed(err.to_string())));
                return Ok(());
            }
        };
        self.shared
            .sm
            .write()
            .apply_conf_change(e.index, e.term, &cc, cs)?;
        self.shared.refresh_peers();
        if cc.get_change_type() == ConfChangeType::RemoveNode && cc.node_id == self.shared.member_id
        {
            self.removed = true;
        }
        self.answer(cc.id, Ok(Response::Empty));
        Ok(())
    }

    fn maybe_compact_log(&mut self) -> Result<(), NodeError> {
        let applied = self.shared.sm.read().applied_index;
        let store = self.raw.store();
        let cfg = &self.shared.cfg;
        if applied.saturating_sub(store.first()) > cfg.snapshot_count + cfg.snapshot_catchup_entries
        {
            let to = applied - cfg.snapshot_catchup_entries;
            tracing::info!("compacting raft log up to index {to}");
            self.raw.mut_store().compact(to)?;
        }
        Ok(())
    }
}

/// Log entries 1..=n adding every initial member, committed at term 1
/// (what etcd's raft.StartNode writes for a new cluster).
pub fn bootstrap_entries(members: &[(u64, Vec<u8>)]) -> Vec<Entry> {
    members
        .iter()
        .enumerate()
        .map(|(i, (id, ctx))| {
            let mut cc = ConfChange::default();
            cc.set_change_type(ConfChangeType::AddNode);
            cc.node_id = *id;
            cc.context = ctx.clone().into();
            let mut e = Entry::default();
            e.set_entry_type(EntryType::EntryConfChange);
            e.term = 1;
            e.index = i as u64 + 1;
            e.data = cc.write_to_bytes().expect("conf change encodes").into();
            e
        })
        .collect()
}
