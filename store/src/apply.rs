//! The replicated state machine: applies committed Raft entries to the MVCC
//! store, the member list and the alarm list, and records the applied index
//! in the same RocksDB batch as each change (so a replay after a crash
//! starts exactly after the last applied entry).
//!
//! Deterministic: the outcome of an entry depends only on the state and the
//! entry, never on time or on which member applies it.

use std::collections::{BTreeMap, BTreeSet};

use ackemu_proto::ackemu::store::v1::{
    InternalRequest, MemberAttributes, MemberInfo, Record, SnapshotData, internal_request,
};
use ackemu_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, CompactionResponse, DeleteRangeResponse,
    LeaseGrantResponse, LeaseRevokeResponse, PutResponse, RequestOp, TxnResponse, alarm_request,
    request_op,
};
use ackemu_proto::mvccpb::Event;
use prost::Message as _;
use protobuf::Message as _;
use raft::eraftpb::{ConfChange, ConfChangeType, ConfState};
use rocksdb::WriteBatch;

use crate::db::{CF_KV, CF_LEASE, CF_META, CF_RAFT_STATE, Db, DbError, DbResult, rocks};
use crate::errors::{EtcdError, EtcdResult};
use crate::mvcc::{META_PHYSICAL_BYTES, Mvcc, WriteTxn};

const META_APPLIED_INDEX: &[u8] = b"applied_index";
const META_APPLIED_TERM: &[u8] = b"applied_term";
const MEMBER_PREFIX: &[u8] = b"member/";
const REMOVED_PREFIX: &[u8] = b"removed/";
const ALARM_PREFIX: &[u8] = b"alarm/";
pub const RAFT_CONF_STATE: &[u8] = b"conf_state";

/// The answer to an applied request, before the server adds its header.
#[derive(Clone, Debug)]
pub enum Response {
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(TxnResponse),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    Alarm(AlarmResponse),
    Empty,
}

/// What applying one normal entry produced.
#[derive(Debug)]
pub struct Applied {
    pub request_id: u64,
    pub result: EtcdResult<Response>,
    /// Changes of the new revision, for watchers.
    pub events: Vec<Event>,
    pub revision: i64,
    pub lease_granted: Option<(i64, i64)>,
    pub lease_revoked: Option<i64>,
}

pub struct StateMachine {
    pub mvcc: Mvcc,
    pub applied_index: u64,
    pub applied_term: u64,
    pub conf_state: ConfState,
    pub members: BTreeMap<u64, MemberInfo>,
    pub removed: BTreeSet<u64>,
    pub alarms: BTreeSet<(u64, i32)>,
}

fn id_key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&id.to_be_bytes());
    k
}

fn alarm_key(member: u64, alarm: i32) -> Vec<u8> {
    let mut k = id_key(ALARM_PREFIX, member);
    k.extend_from_slice(&alarm.to_be_bytes());
    k
}

fn txn_writes(ops: &[RequestOp]) -> bool {
    ops.iter().any(|op| match &op.request {
        Some(request_op::Request::RequestPut(_)) => true,
        Some(request_op::Request::RequestTxn(t)) => {
            txn_writes(&t.success) || txn_writes(&t.failure)
        }
        _ => false,
    })
}

fn corrupt(cf: &'static str, what: impl Into<String>) -> DbError {
    DbError::Corrupt {
        cf,
        what: what.into(),
    }
}

impl StateMachine {
    pub fn open(db: Db) -> DbResult<StateMachine> {
        let mvcc = Mvcc::open(db.clone())?;
        let u64_meta = |k: &[u8]| -> DbResult<u64> {
            Ok(match db.get(CF_META, k)? {
                Some(v) => crate::db::u64_be(&v, CF_META)?,
                None => 0,
            })
        };
        let applied_index = u64_meta(META_APPLIED_INDEX)?;
        let applied_term = u64_meta(META_APPLIED_TERM)?;
        let conf_state = match db.get(CF_RAFT_STATE, RAFT_CONF_STATE)? {
            Some(v) => ConfState::parse_from_bytes(&v)
                .map_err(|e| corrupt(CF_RAFT_STATE, e.to_string()))?,
            None => ConfState::default(),
        };
        let mut members = BTreeMap::new();
        let mut removed = BTreeSet::new();
        let mut alarms = BTreeSet::new();
        for item in db.raw().prefix_iterator_cf(db.cf(CF_META), b"") {
            let (k, v) = item.map_err(rocks("iterate meta"))?;
            if k.starts_with(MEMBER_PREFIX) {
                let m = MemberInfo::decode(&*v).map_err(|e| corrupt(CF_META, e.to_string()))?;
                members.insert(m.id, m);
            } else if let Some(rest) = k.strip_prefix(REMOVED_PREFIX) {
                removed.insert(crate::db::u64_be(rest, CF_META)?);
            } else if let Some(rest) = k.strip_prefix(ALARM_PREFIX) {
                if rest.len() != 12 {
                    return Err(corrupt(CF_META, "alarm key"));
                }
                let member = crate::db::u64_be(&rest[..8], CF_META)?;
                let alarm = i32::from_be_bytes(
                    rest[8..12]
                        .try_into()
                        .map_err(|_| corrupt(CF_META, "alarm key"))?,
                );
                alarms.insert((member, alarm));
            }
        }
        Ok(StateMachine {
            mvcc,
            applied_index,
            applied_term,
            conf_state,
            members,
            removed,
            alarms,
        })
    }

    pub fn db(&self) -> &Db {
        self.mvcc.db()
    }

    pub fn nospace(&self) -> bool {
        self.alarms
            .iter()
            .any(|(_, a)| *a == AlarmType::Nospace as i32)
    }

    fn stamp_applied(&mut self, batch: &mut WriteBatch, index: u64, term: u64) {
        self.applied_index = index;
        self.applied_term = term;
        let db = self.db().clone();
        let meta = db.cf(CF_META);
        batch.put_cf(meta, META_APPLIED_INDEX, index.to_be_bytes());
        batch.put_cf(meta, META_APPLIED_TERM, term.to_be_bytes());
    }

    /// An entry that changes nothing (the leader's empty entry, or a
    /// malformed one): only the applied index moves.
    pub fn apply_noop(&mut self, index: u64, term: u64) -> DbResult<()> {
        let mut b = WriteBatch::default();
        self.stamp_applied(&mut b, index, term);
        self.db().write(b, false)
    }

    /// Applies one normal entry's payload.
    pub fn apply_normal(&mut self, index: u64, term: u64, data: &[u8]) -> DbResult<Applied> {
        let req = match InternalRequest::decode(data) {
            Ok(r) => r,
            Err(e) => {
                self.apply_noop(index, term)?;
                return Ok(Applied {
                    request_id: 0,
                    result: Err(EtcdError::Malformed(e.to_string())),
                    events: vec![],
                    revision: self.mvcc.current_rev(),
                    lease_granted: None,
                    lease_revoked: None,
                });
            }
        };
        let mut txn = self.mvcc.begin();
        let mut lease_granted = None;
        let mut lease_revoked = None;
        let result = self.execute(
            &mut txn,
            req.request,
            &mut lease_granted,
            &mut lease_revoked,
        );
        if result.is_err() {
            // Nothing was changed (every check runs before the first
            // change), but the batch may hold staged writes of a partial
            // request: start over with an empty one.
            txn = self.mvcc.begin();
            lease_granted = None;
            lease_revoked = None;
        }
        self.mvcc.finish(&mut txn);
        let mut batch = std::mem::take(&mut txn.batch);
        self.stamp_applied(&mut batch, index, term);
        self.db().write(batch, false)?;
        let header = self.mvcc.response_header();
        let result = result.map(|r| match r {
            Response::Put(mut x) => {
                x.header = Some(header);
                Response::Put(x)
            }
            Response::DeleteRange(mut x) => {
                x.header = Some(header);
                Response::DeleteRange(x)
            }
            Response::Txn(mut x) => {
                self.mvcc.stamp_txn(&mut x);
                Response::Txn(x)
            }
            Response::Compaction(mut x) => {
                x.header = Some(header);
                Response::Compaction(x)
            }
            Response::LeaseGrant(mut x) => {
                x.header = Some(header);
                Response::LeaseGrant(x)
            }
            Response::LeaseRevoke(mut x) => {
                x.header = Some(header);
                Response::LeaseRevoke(x)
            }
            Response::Alarm(mut x) => {
                x.header = Some(header);
                Response::Alarm(x)
            }
            Response::Empty => Response::Empty,
        });
        Ok(Applied {
            request_id: req.id,
            result,
            events: std::mem::take(&mut txn.events),
            revision: self.mvcc.current_rev(),
            lease_granted,
            lease_revoked,
        })
    }

    fn execute(
        &mut self,
        txn: &mut WriteTxn,
        req: Option<internal_request::Request>,
        lease_granted: &mut Option<(i64, i64)>,
        lease_revoked: &mut Option<i64>,
    ) -> EtcdResult<Response> {
        use internal_request::Request as R;
        let nospace = self.nospace();
        match req {
            Some(R::Put(p)) => {
                if nospace {
                    return Err(EtcdError::NoSpace);
                }
                self.mvcc.put(txn, &p).map(Response::Put)
            }
            Some(R::DeleteRange(d)) => self.mvcc.delete_range(txn, &d).map(Response::DeleteRange),
            Some(R::Txn(t)) => {
                if nospace && (txn_writes(&t.success) || txn_writes(&t.failure)) {
                    return Err(EtcdError::NoSpace);
                }
                self.mvcc.txn(txn, &t).map(Response::Txn)
            }
            Some(R::Compaction(c)) => {
                self.mvcc.compact(txn, c.revision)?;
                Ok(Response::Compaction(CompactionResponse::default()))
            }
            Some(R::LeaseGrant(g)) => {
                if nospace {
                    return Err(EtcdError::NoSpace);
                }
                self.mvcc.lease_grant(txn, g.id, g.ttl)?;
                *lease_granted = Some((g.id, g.ttl));
                Ok(Response::LeaseGrant(LeaseGrantResponse {
                    header: None,
                    id: g.id,
                    ttl: g.ttl,
                    error: String::new(),
                }))
            }
            Some(R::LeaseRevoke(r)) => {
                self.mvcc.lease_revoke(txn, r.id)?;
                *lease_revoked = Some(r.id);
                Ok(Response::LeaseRevoke(LeaseRevokeResponse::default()))
            }
            Some(R::Alarm(a)) => Ok(Response::Alarm(self.apply_alarm(txn, &a))),
            Some(R::MemberAttributes(m)) => {
                self.apply_attributes(txn, &m);
                Ok(Response::Empty)
            }
            None => Err(EtcdError::Malformed(
                "internal request without a body".into(),
            )),
        }
    }

    fn apply_alarm(&mut self, txn: &mut WriteTxn, a: &AlarmRequest) -> AlarmResponse {
        let db = self.db().clone();
        let meta = db.cf(CF_META);
        let mut out = AlarmResponse::default();
        match alarm_request::AlarmAction::try_from(a.action) {
            Ok(alarm_request::AlarmAction::Activate) if a.alarm != AlarmType::None as i32 => {
                txn.batch.put_cf(meta, alarm_key(a.member_id, a.alarm), b"");
                self.alarms.insert((a.member_id, a.alarm));
                out.alarms.push(AlarmMember {
                    member_id: a.member_id,
                    alarm: a.alarm,
                });
            }
            Ok(alarm_request::AlarmAction::Deactivate) => {
                let matching: Vec<(u64, i32)> = self
                    .alarms
                    .iter()
                    .filter(|(m, t)| {
                        (a.member_id == 0 || *m == a.member_id) && (a.alarm == 0 || *t == a.alarm)
                    })
                    .copied()
                    .collect();
                for (m, t) in matching {
                    txn.batch.delete_cf(meta, alarm_key(m, t));
                    self.alarms.remove(&(m, t));
                    out.alarms.push(AlarmMember {
                        member_id: m,
                        alarm: t,
                    });
                }
            }
            _ => {}
        }
        out
    }

    fn apply_attributes(&mut self, txn: &mut WriteTxn, a: &MemberAttributes) {
        if let Some(m) = self.members.get_mut(&a.id) {
            m.name = a.name.clone();
            m.client_urls = a.client_urls.clone();
            txn.batch.put_cf(
                self.mvcc.db().cf(CF_META),
                id_key(MEMBER_PREFIX, a.id),
                m.encode_to_vec(),
            );
        }
    }

    /// Applies a membership change; `conf_state` is what raft-rs returned
    /// for it.
    pub fn apply_conf_change(
        &mut self,
        index: u64,
        term: u64,
        cc: &ConfChange,
        conf_state: ConfState,
    ) -> DbResult<()> {
        let mut b = WriteBatch::default();
        let db = self.db().clone();
        let meta = db.cf(CF_META);
        match cc.get_change_type() {
            ConfChangeType::AddNode | ConfChangeType::AddLearnerNode => {
                let mut m = MemberInfo::decode(cc.get_context()).unwrap_or_default();
                m.id = cc.node_id;
                m.is_learner = cc.get_change_type() == ConfChangeType::AddLearnerNode;
                if let Some(old) = self.members.get(&m.id) {
                    // Re-adding keeps what the member published.
                    m.name = old.name.clone();
                    m.client_urls = old.client_urls.clone();
                }
                b.put_cf(meta, id_key(MEMBER_PREFIX, m.id), m.encode_to_vec());
                self.members.insert(m.id, m);
            }
            ConfChangeType::RemoveNode => {
                b.delete_cf(meta, id_key(MEMBER_PREFIX, cc.node_id));
                b.put_cf(meta, id_key(REMOVED_PREFIX, cc.node_id), b"");
                self.members.remove(&cc.node_id);
                self.removed.insert(cc.node_id);
            }
        }
        b.put_cf(
            db.cf(CF_RAFT_STATE),
            RAFT_CONF_STATE,
            conf_state.write_to_bytes().unwrap_or_default(),
        );
        self.conf_state = conf_state;
        self.stamp_applied(&mut b, index, term);
        self.db().write(b, false)
    }

    /// Every replicated record, encoded as a Raft snapshot payload.
    pub fn export(&self) -> DbResult<Vec<u8>> {
        let rec = |v: Vec<(Vec<u8>, Vec<u8>)>| {
            v.into_iter()
                .map(|(key, value)| Record { key, value })
                .collect()
        };
        let data = SnapshotData {
            kv: rec(self.mvcc.export(CF_KV)?),
            lease: rec(self.mvcc.export(CF_LEASE)?),
            meta: rec(self.mvcc.export(CF_META)?),
        };
        Ok(data.encode_to_vec())
    }

    /// Replaces the whole state with a snapshot's (durably), then reloads.
    pub fn restore(
        db: Db,
        data: &[u8],
        index: u64,
        term: u64,
        conf_state: &ConfState,
    ) -> DbResult<StateMachine> {
        let snap = SnapshotData::decode(data)
            .map_err(|e| corrupt(CF_META, format!("snapshot payload: {e}")))?;
        let mut b = WriteBatch::default();
        for cf in [CF_KV, CF_LEASE] {
            b.delete_range_cf(db.cf(cf), Vec::<u8>::new(), vec![0xffu8; 32]);
        }
        // Keep local keys (they live under "local/"), drop the rest of meta.
        b.delete_range_cf(db.cf(CF_META), Vec::<u8>::new(), b"local/".to_vec());
        b.delete_range_cf(db.cf(CF_META), b"local0".to_vec(), vec![0xffu8; 32]);
        b.delete_cf(db.cf(CF_META), META_PHYSICAL_BYTES);
        for (cf, recs) in [
            (CF_KV, &snap.kv),
            (CF_LEASE, &snap.lease),
            (CF_META, &snap.meta),
        ] {
            for r in recs.iter() {
                b.put_cf(db.cf(cf), &r.key, &r.value);
            }
        }
        b.put_cf(db.cf(CF_META), META_APPLIED_INDEX, index.to_be_bytes());
        b.put_cf(db.cf(CF_META), META_APPLIED_TERM, term.to_be_bytes());
        b.put_cf(
            db.cf(CF_RAFT_STATE),
            RAFT_CONF_STATE,
            conf_state.write_to_bytes().unwrap_or_default(),
        );
        db.write(b, true)?;
        StateMachine::open(db)
    }
}

#[cfg(test)]
mod tests {
    use ackemu_proto::etcdserverpb::{LeaseGrantRequest, PutRequest, TxnRequest};

    use super::*;

    fn req(id: u64, r: internal_request::Request) -> Vec<u8> {
        InternalRequest {
            id,
            request: Some(r),
        }
        .encode_to_vec()
    }

    fn put(k: &str) -> internal_request::Request {
        internal_request::Request::Put(PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    }

    fn alarm(action: alarm_request::AlarmAction) -> internal_request::Request {
        internal_request::Request::Alarm(AlarmRequest {
            action: action as i32,
            member_id: 5,
            alarm: AlarmType::Nospace as i32,
        })
    }

    #[test]
    fn nospace_alarm_caps_writes_until_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(Db::open(dir.path()).unwrap()).unwrap();
        use alarm_request::AlarmAction::{Activate, Deactivate};
        let delete = internal_request::Request::DeleteRange(Default::default());
        let write_txn = internal_request::Request::Txn(TxnRequest {
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"t".to_vec(),
                    ..Default::default()
                })),
            }],
            ..Default::default()
        });
        let read_txn = internal_request::Request::Txn(TxnRequest::default());
        let grant = internal_request::Request::LeaseGrant(LeaseGrantRequest { ttl: 5, id: 1 });
        // (entry, expected error)
        let steps: Vec<(internal_request::Request, Option<EtcdError>)> = vec![
            (put("a"), None),
            (alarm(Activate), None),
            (put("b"), Some(EtcdError::NoSpace)),
            (write_txn.clone(), Some(EtcdError::NoSpace)),
            (grant.clone(), Some(EtcdError::NoSpace)),
            (read_txn, None),
            (delete, None),
            (alarm(Deactivate), None),
            (put("b"), None),
            (write_txn, None),
            (grant, None),
        ];
        for (i, (r, want)) in steps.into_iter().enumerate() {
            let index = i as u64 + 1;
            let out = sm.apply_normal(index, 1, &req(index, r.clone())).unwrap();
            assert_eq!(out.request_id, index);
            assert_eq!(out.result.err(), want, "step {i}: {r:?}");
            assert_eq!(sm.applied_index, index);
        }
        // Reopen: applied index and alarms are durable.
        drop(sm);
        let sm = StateMachine::open(Db::open(dir.path()).unwrap()).unwrap();
        assert_eq!(sm.applied_index, 11);
        assert!(!sm.nospace());
    }

    #[test]
    fn garbage_entries_only_advance_the_applied_index() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(Db::open(dir.path()).unwrap()).unwrap();
        let out = sm.apply_normal(1, 1, &[0xff, 0xff, 0xff]).unwrap();
        assert!(matches!(out.result, Err(EtcdError::Malformed(_))));
        assert_eq!((sm.applied_index, sm.mvcc.current_rev()), (1, 1));
    }

    #[test]
    fn snapshot_round_trip_reproduces_state() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut a = StateMachine::open(Db::open(d1.path()).unwrap()).unwrap();
        for (i, k) in ["x", "y", "z"].iter().enumerate() {
            a.apply_normal(i as u64 + 1, 1, &req(1, put(k))).unwrap();
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::AddNode);
        cc.node_id = 9;
        cc.context = MemberInfo {
            id: 9,
            name: "n9".into(),
            peer_urls: vec!["http://p".into()],
            ..Default::default()
        }
        .encode_to_vec()
        .into();
        let cs = ConfState {
            voters: vec![9],
            ..Default::default()
        };
        a.apply_conf_change(4, 2, &cc, cs.clone()).unwrap();
        let data = a.export().unwrap();
        let b = StateMachine::restore(Db::open(d2.path()).unwrap(), &data, 4, 2, &cs).unwrap();
        assert_eq!(b.mvcc.hash_kv(0).unwrap(), a.mvcc.hash_kv(0).unwrap());
        assert_eq!((b.applied_index, b.applied_term), (4, 2));
        assert_eq!(b.members, a.members);
        assert_eq!(b.conf_state.voters, vec![9]);
        assert_eq!(b.mvcc.current_rev(), 4);
    }
}
