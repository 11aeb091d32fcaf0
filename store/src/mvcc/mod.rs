//! The multi-version key-value store: etcd's MVCC semantics on RocksDB.
//!
//! Every change writes a record keyed by its revision into the `kv` column
//! family (tombstones for deletions); the in-memory [`index::KeyIndex`] maps
//! keys to revisions. The store is deterministic: every member applying the
//! same Raft entries reaches byte-identical records, which `hash_kv` checks.
//!
//! Writes go into a [`WriteTxn`] whose RocksDB batch the caller commits
//! together with the applied Raft index (see `apply`).

pub mod index;
pub mod revision;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use ackemu_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse, compare,
    range_request, request_op, response_op,
};
use ackemu_proto::mvccpb::{Event, KeyValue, event::EventType};
use prost::Message;
use rocksdb::{Direction, IteratorMode, WriteBatch};

use crate::db::{CF_KV, CF_LEASE, CF_META, Db, DbError, DbResult, rocks};
use crate::errors::{EtcdError, EtcdResult};
use index::{KeyAt, KeyIndex};
use revision::Revision;

const META_CURRENT_REV: &[u8] = b"current_rev";
const META_COMPACT_REV: &[u8] = b"compact_rev";
const META_LOGICAL_BYTES: &[u8] = b"logical_bytes";
/// Local (not replicated): the high-water mark of the backend size since the
/// last defragmentation.
pub const META_PHYSICAL_BYTES: &[u8] = b"local/physical_bytes";

/// Fixed per-record overhead counted in the space accounting (revision key,
/// encoding, index entry), so tiny values still consume quota.
const RECORD_OVERHEAD_BYTES: i64 = 64;

/// A lease as the replicated state knows it (expiry is the leader's business).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseState {
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

/// The key range a request names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyRange<'a> {
    Single(&'a [u8]),
    /// `[start, end)`; `end = None` means unbounded.
    Span(&'a [u8], Option<&'a [u8]>),
}

impl<'a> KeyRange<'a> {
    /// etcd's encoding: empty `end` is the key alone, `"\0"` is "every key
    /// from `key` on".
    pub fn new(key: &'a [u8], end: &'a [u8]) -> Self {
        match end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::Span(key, None),
            e => KeyRange::Span(key, Some(e)),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeyRange::Single(s) => s == k,
            KeyRange::Span(s, None) => k >= s,
            KeyRange::Span(s, Some(e)) => k >= s && k < e,
        }
    }
}

pub struct Mvcc {
    db: Db,
    index: BTreeMap<Vec<u8>, KeyIndex>,
    current_rev: i64,
    compact_rev: i64,
    logical_bytes: i64,
    physical_bytes: i64,
    leases: BTreeMap<i64, LeaseState>,
    key_lease: HashMap<Vec<u8>, i64>,
}

/// The changes of one write transaction (one main revision).
pub struct WriteTxn {
    rev: i64,
    sub: i64,
    pub batch: WriteBatch,
    overlay: HashMap<Revision, KeyValue>,
    pub events: Vec<Event>,
}

impl WriteTxn {
    pub fn changed(&self) -> bool {
        self.sub > 0
    }
}

fn encode_i64(v: i64) -> [u8; 8] {
    v.to_be_bytes()
}

fn decode_i64(v: &[u8], cf: &'static str) -> DbResult<i64> {
    Ok(crate::db::u64_be(v, cf)? as i64)
}

fn record_cost(key_len: usize, val_len: usize) -> i64 {
    (key_len + val_len) as i64 + RECORD_OVERHEAD_BYTES
}

impl Mvcc {
    /// Loads the state machine's view from the database (startup, or after a
    /// snapshot replaced the records).
    pub fn open(db: Db) -> DbResult<Mvcc> {
        let meta_i64 = |k: &[u8], default: i64| -> DbResult<i64> {
            match db.get(CF_META, k)? {
                Some(v) => decode_i64(&v, CF_META),
                None => Ok(default),
            }
        };
        let current_rev = meta_i64(META_CURRENT_REV, 1)?;
        let compact_rev = meta_i64(META_COMPACT_REV, 0)?;
        let logical_bytes = meta_i64(META_LOGICAL_BYTES, 0)?;
        let physical_bytes = meta_i64(META_PHYSICAL_BYTES, logical_bytes)?.max(logical_bytes);

        let mut index: BTreeMap<Vec<u8>, KeyIndex> = BTreeMap::new();
        let mut latest_lease: HashMap<Vec<u8>, i64> = HashMap::new();
        for item in db.raw().iterator_cf(db.cf(CF_KV), IteratorMode::Start) {
            let (k, v) = item.map_err(rocks("iterate kv"))?;
            let (rev, tomb) = Revision::from_key(&k).ok_or_else(|| DbError::Corrupt {
                cf: CF_KV,
                what: "bad revision key".into(),
            })?;
            let kv = KeyValue::decode(&*v).map_err(|e| DbError::Corrupt {
                cf: CF_KV,
                what: e.to_string(),
            })?;
            index.entry(kv.key.clone()).or_default().restore(
                rev,
                Revision::new(kv.create_revision, 0),
                kv.version,
                tomb,
            );
            if tomb || kv.lease == 0 {
                latest_lease.remove(&kv.key);
            } else {
                latest_lease.insert(kv.key, kv.lease);
            }
        }
        let mut leases = BTreeMap::new();
        for item in db.raw().iterator_cf(db.cf(CF_LEASE), IteratorMode::Start) {
            let (k, v) = item.map_err(rocks("iterate lease"))?;
            let id = decode_i64(&k, CF_LEASE)?;
            let ttl = decode_i64(&v, CF_LEASE)?;
            leases.insert(
                id,
                LeaseState {
                    ttl,
                    keys: BTreeSet::new(),
                },
            );
        }
        let mut key_lease = HashMap::new();
        for (key, id) in latest_lease {
            if let Some(l) = leases.get_mut(&id) {
                l.keys.insert(key.clone());
                key_lease.insert(key, id);
            }
        }
        Ok(Mvcc {
            db,
            index,
            current_rev,
            compact_rev,
            logical_bytes,
            physical_bytes,
            leases,
            key_lease,
        })
    }

    pub fn current_rev(&self) -> i64 {
        self.current_rev
    }

    pub fn compact_rev(&self) -> i64 {
        self.compact_rev
    }

    /// Bytes the replicated records use.
    pub fn logical_bytes(&self) -> i64 {
        self.logical_bytes
    }

    /// The backend's allocated size: like bbolt's file it only shrinks on
    /// defragmentation, so a compaction alone does not lower it.
    pub fn physical_bytes(&self) -> i64 {
        self.physical_bytes
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn leases(&self) -> &BTreeMap<i64, LeaseState> {
        &self.leases
    }

    /// Starts a write transaction at the next revision.
    pub fn begin(&self) -> WriteTxn {
        WriteTxn {
            rev: self.current_rev + 1,
            sub: 0,
            batch: WriteBatch::default(),
            overlay: HashMap::new(),
            events: Vec::new(),
        }
    }

    /// Closes a write transaction: bumps the revision if it changed anything
    /// and records the store's counters in the same batch.
    pub fn finish(&mut self, txn: &mut WriteTxn) {
        if txn.changed() {
            self.current_rev = txn.rev;
        }
        self.physical_bytes = self.physical_bytes.max(self.logical_bytes);
        let meta = self.db.cf(CF_META);
        txn.batch
            .put_cf(meta, META_CURRENT_REV, encode_i64(self.current_rev));
        txn.batch
            .put_cf(meta, META_LOGICAL_BYTES, encode_i64(self.logical_bytes));
        txn.batch
            .put_cf(meta, META_PHYSICAL_BYTES, encode_i64(self.physical_bytes));
        txn.batch
            .put_cf(meta, META_COMPACT_REV, encode_i64(self.compact_rev));
    }

    /// Defragmentation: rewrite the files and let the allocated size fall
    /// back to what is in use.
    pub fn defragment(&mut self) -> DbResult<()> {
        self.db.compact_all();
        self.physical_bytes = self.logical_bytes;
        let mut b = WriteBatch::default();
        b.put_cf(
            self.db.cf(CF_META),
            META_PHYSICAL_BYTES,
            encode_i64(self.physical_bytes),
        );
        self.db.write(b, true)
    }

    fn header(&self) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            revision: self.current_rev,
            ..Default::default()
        })
    }

    fn load(
        &self,
        rev: Revision,
        overlay: Option<&HashMap<Revision, KeyValue>>,
    ) -> EtcdResult<KeyValue> {
        if let Some(kv) = overlay.and_then(|o| o.get(&rev)) {
            return Ok(kv.clone());
        }
        let raw = self.db.get(CF_KV, &rev.to_key(false))?.ok_or_else(|| {
            EtcdError::Storage(format!(
                "kv record for revision {}/{} is missing",
                rev.main, rev.sub
            ))
        })?;
        KeyValue::decode(&*raw).map_err(|e| EtcdError::Storage(format!("decoding kv record: {e}")))
    }

    /// Live keys in `range` as of main revision `at`, in key order.
    fn keys_at(&self, range: &KeyRange<'_>, at: i64) -> Vec<(&[u8], KeyAt)> {
        let mut out = Vec::new();
        match *range {
            KeyRange::Single(k) => {
                if let Some((key, ki)) = self.index.get_key_value(k)
                    && let Some(ka) = ki.get(at)
                {
                    out.push((key.as_slice(), ka));
                }
            }
            KeyRange::Span(s, e) => {
                if let Some(e) = e
                    && e <= s
                {
                    return out;
                }
                let hi = match e {
                    Some(e) => Bound::Excluded(e),
                    None => Bound::Unbounded,
                };
                for (k, ki) in self.index.range::<[u8], _>((Bound::Included(s), hi)) {
                    if let Some(ka) = ki.get(at) {
                        out.push((k.as_slice(), ka));
                    }
                }
            }
        }
        out
    }

    /// The live value of `key` at `at` (for prev_kv).
    pub fn get_at(&self, key: &[u8], at: i64) -> EtcdResult<Option<KeyValue>> {
        if at < self.compact_rev {
            return Ok(None);
        }
        match self.index.get(key).and_then(|ki| ki.get(at)) {
            Some(ka) => self.load(ka.modified, None).map(Some),
            None => Ok(None),
        }
    }

    /// A Range request outside any write transaction.
    pub fn range(&self, req: &RangeRequest) -> EtcdResult<RangeResponse> {
        self.range_in(req, self.current_rev, None)
    }

    fn range_in(
        &self,
        req: &RangeRequest,
        newest: i64,
        overlay: Option<&HashMap<Revision, KeyValue>>,
    ) -> EtcdResult<RangeResponse> {
        let at = if req.revision <= 0 {
            newest
        } else {
            req.revision
        };
        if at > newest {
            return Err(EtcdError::FutureRev);
        }
        if at < self.compact_rev {
            return Err(EtcdError::Compacted);
        }
        let range = KeyRange::new(&req.key, &req.range_end);
        let mut metas = self.keys_at(&range, at);
        let count = metas.len() as i64;
        let header = Some(ResponseHeader {
            revision: newest,
            ..Default::default()
        });
        if req.count_only {
            return Ok(RangeResponse {
                header,
                kvs: vec![],
                more: false,
                count,
            });
        }
        metas.retain(|(_, ka)| {
            (req.min_mod_revision == 0 || ka.modified.main >= req.min_mod_revision)
                && (req.max_mod_revision == 0 || ka.modified.main <= req.max_mod_revision)
                && (req.min_create_revision == 0 || ka.created.main >= req.min_create_revision)
                && (req.max_create_revision == 0 || ka.created.main <= req.max_create_revision)
        });
        let order = range_request::SortOrder::try_from(req.sort_order).unwrap_or_default();
        let target = range_request::SortTarget::try_from(req.sort_target).unwrap_or_default();
        use range_request::{SortOrder as O, SortTarget as T};
        let order = if order == O::None && target != T::Key {
            O::Ascend
        } else {
            order
        };
        let limit = if req.limit > 0 {
            req.limit as usize
        } else {
            usize::MAX
        };
        let mut kvs;
        let more;
        if target == T::Value && order != O::None {
            kvs = metas
                .iter()
                .map(|(_, ka)| self.load(ka.modified, overlay))
                .collect::<EtcdResult<Vec<_>>>()?;
            kvs.sort_by(|a, b| a.value.cmp(&b.value).then_with(|| a.key.cmp(&b.key)));
            if order == O::Descend {
                kvs.reverse();
            }
            more = kvs.len() > limit;
            kvs.truncate(limit);
        } else {
            match (target, order) {
                (_, O::None) | (T::Key, O::Ascend) => {}
                (T::Key, O::Descend) => metas.reverse(),
                (t, o) => {
                    let field = |ka: &KeyAt| match t {
                        T::Version => ka.version,
                        T::Create => ka.created.main,
                        _ => ka.modified.main,
                    };
                    metas.sort_by(|a, b| field(&a.1).cmp(&field(&b.1)).then_with(|| a.0.cmp(b.0)));
                    if o == O::Descend {
                        metas.reverse();
                    }
                }
            }
            more = metas.len() > limit;
            metas.truncate(limit);
            kvs = metas
                .iter()
                .map(|(_, ka)| self.load(ka.modified, overlay))
                .collect::<EtcdResult<Vec<_>>>()?;
        }
        if req.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse {
            header,
            kvs,
            more,
            count,
        })
    }

    fn next_rev(txn: &mut WriteTxn) -> Revision {
        let r = Revision::new(txn.rev, txn.sub);
        txn.sub += 1;
        r
    }

    /// The revision reads inside `txn` see: its own changes once it has any.
    fn txn_read_rev(&self, txn: &WriteTxn) -> i64 {
        if txn.changed() {
            txn.rev
        } else {
            self.current_rev
        }
    }

    fn check_put(&self, req: &PutRequest, at: i64) -> EtcdResult<()> {
        if req.lease != 0 && !self.leases.contains_key(&req.lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        if (req.ignore_value || req.ignore_lease)
            && self.index.get(&req.key).and_then(|ki| ki.get(at)).is_none()
        {
            return Err(EtcdError::KeyNotFound);
        }
        Ok(())
    }

    pub fn put(&mut self, txn: &mut WriteTxn, req: &PutRequest) -> EtcdResult<PutResponse> {
        let at = self.txn_read_rev(txn);
        self.check_put(req, at)?;
        let existing = self.index.get(&req.key).and_then(|ki| ki.get(at));
        let prev = match existing {
            Some(ka) if req.prev_kv || req.ignore_value || req.ignore_lease => {
                Some(self.load(ka.modified, Some(&txn.overlay))?)
            }
            _ => None,
        };
        let rev = Self::next_rev(txn);
        let (created, version) = match existing {
            Some(ka) => (ka.created.main, ka.version + 1),
            None => (rev.main, 1),
        };
        let value = match (&prev, req.ignore_value) {
            (Some(p), true) => p.value.clone(),
            _ => req.value.clone(),
        };
        let lease = match (&prev, req.ignore_lease) {
            (Some(p), true) => p.lease,
            _ => req.lease,
        };
        let kv = KeyValue {
            key: req.key.clone(),
            create_revision: created,
            mod_revision: rev.main,
            version,
            value,
            lease,
        };
        let enc = kv.encode_to_vec();
        self.logical_bytes += record_cost(revision::REV_BYTES, enc.len());
        txn.batch.put_cf(self.db.cf(CF_KV), rev.to_key(false), &enc);
        self.index.entry(req.key.clone()).or_default().put(rev);
        self.attach(&req.key, lease);
        txn.overlay.insert(rev, kv.clone());
        txn.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: None,
        });
        Ok(PutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    fn attach(&mut self, key: &[u8], lease: i64) {
        let old = if lease == 0 {
            self.key_lease.remove(key)
        } else {
            self.key_lease.insert(key.to_vec(), lease)
        };
        if let Some(old) = old
            && old != lease
            && let Some(l) = self.leases.get_mut(&old)
        {
            l.keys.remove(key);
        }
        if lease != 0
            && let Some(l) = self.leases.get_mut(&lease)
        {
            l.keys.insert(key.to_vec());
        }
    }

    pub fn delete_range(
        &mut self,
        txn: &mut WriteTxn,
        req: &DeleteRangeRequest,
    ) -> EtcdResult<DeleteRangeResponse> {
        let at = self.txn_read_rev(txn);
        let range = KeyRange::new(&req.key, &req.range_end);
        let victims: Vec<(Vec<u8>, KeyAt)> = self
            .keys_at(&range, at)
            .into_iter()
            .map(|(k, ka)| (k.to_vec(), ka))
            .collect();
        let mut prev_kvs = Vec::new();
        for (key, ka) in &victims {
            if req.prev_kv {
                prev_kvs.push(self.load(ka.modified, Some(&txn.overlay))?);
            }
            self.tombstone(txn, key);
        }
        Ok(DeleteRangeResponse {
            header: None,
            deleted: victims.len() as i64,
            prev_kvs,
        })
    }

    fn tombstone(&mut self, txn: &mut WriteTxn, key: &[u8]) {
        let rev = Self::next_rev(txn);
        let kv = KeyValue {
            key: key.to_vec(),
            mod_revision: rev.main,
            ..Default::default()
        };
        let enc = kv.encode_to_vec();
        self.logical_bytes += record_cost(revision::REV_BYTES + 1, enc.len());
        txn.batch.put_cf(self.db.cf(CF_KV), rev.to_key(true), &enc);
        if let Some(ki) = self.index.get_mut(key) {
            ki.tombstone(rev);
        }
        self.attach(key, 0);
        txn.events.push(Event {
            r#type: EventType::Delete as i32,
            kv: Some(kv),
            prev_kv: None,
        });
    }

    fn compare_holds(
        &self,
        c: &Compare,
        at: i64,
        overlay: &HashMap<Revision, KeyValue>,
    ) -> EtcdResult<bool> {
        use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
        let target = T::try_from(c.target).unwrap_or(T::Version);
        let result = R::try_from(c.result).unwrap_or(R::Equal);
        let range = KeyRange::new(&c.key, &c.range_end);
        let metas = self.keys_at(&range, at);
        let holds = |ord: std::cmp::Ordering| match result {
            R::Equal => ord.is_eq(),
            R::NotEqual => !ord.is_eq(),
            R::Greater => ord.is_gt(),
            R::Less => ord.is_lt(),
        };
        let int_of = |kv: &KeyValue| match target {
            T::Version => kv.version,
            T::Create => kv.create_revision,
            T::Mod => kv.mod_revision,
            T::Lease => kv.lease,
            T::Value => 0,
        };
        let want_int = match &c.target_union {
            Some(U::Version(v))
            | Some(U::CreateRevision(v))
            | Some(U::ModRevision(v))
            | Some(U::Lease(v)) => *v,
            _ => 0,
        };
        let want_value: &[u8] = match &c.target_union {
            Some(U::Value(v)) => v,
            _ => &[],
        };
        let check = |kv: &KeyValue| {
            if target == T::Value {
                holds(kv.value.as_slice().cmp(want_value))
            } else {
                holds(int_of(kv).cmp(&want_int))
            }
        };
        if metas.is_empty() {
            // A missing key has version/revisions/lease 0; comparing the
            // value of a missing key always fails.
            return Ok(target != T::Value && check(&KeyValue::default()));
        }
        for (_, ka) in metas {
            let kv = if target == T::Value || target == T::Lease {
                self.load(ka.modified, Some(overlay))?
            } else {
                KeyValue {
                    create_revision: ka.created.main,
                    mod_revision: ka.modified.main,
                    version: ka.version,
                    ..Default::default()
                }
            };
            if !check(&kv) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn check_ops(
        &self,
        ops: &[RequestOp],
        at: i64,
        overlay: &HashMap<Revision, KeyValue>,
    ) -> EtcdResult<()> {
        for op in ops {
            match &op.request {
                Some(request_op::Request::RequestPut(p)) => self.check_put(p, at)?,
                Some(request_op::Request::RequestTxn(t)) => {
                    let ok = self.compares_hold(&t.compare, at, overlay)?;
                    self.check_ops(if ok { &t.success } else { &t.failure }, at, overlay)?;
                }
                Some(request_op::Request::RequestRange(r)) => {
                    if r.revision > 0 && r.revision < self.compact_rev {
                        return Err(EtcdError::Compacted);
                    }
                    if r.revision > at + 1 {
                        return Err(EtcdError::FutureRev);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn compares_hold(
        &self,
        cs: &[Compare],
        at: i64,
        overlay: &HashMap<Revision, KeyValue>,
    ) -> EtcdResult<bool> {
        for c in cs {
            if !self.compare_holds(c, at, overlay)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A transaction. All checks run before the first change, so a failing
    /// transaction changes nothing.
    pub fn txn(&mut self, txn: &mut WriteTxn, req: &TxnRequest) -> EtcdResult<TxnResponse> {
        let at = self.txn_read_rev(txn);
        let succeeded = self.compares_hold(&req.compare, at, &txn.overlay)?;
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        self.check_ops(ops, at, &txn.overlay)?;
        let responses = self.txn_ops(txn, ops)?;
        Ok(TxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    fn txn_ops(&mut self, txn: &mut WriteTxn, ops: &[RequestOp]) -> EtcdResult<Vec<ResponseOp>> {
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            let resp = match &op.request {
                Some(request_op::Request::RequestRange(r)) => {
                    let newest = self.txn_read_rev(txn);
                    response_op::Response::ResponseRange(self.range_in(
                        r,
                        newest,
                        Some(&txn.overlay),
                    )?)
                }
                Some(request_op::Request::RequestPut(p)) => {
                    response_op::Response::ResponsePut(self.put(txn, p)?)
                }
                Some(request_op::Request::RequestDeleteRange(d)) => {
                    response_op::Response::ResponseDeleteRange(self.delete_range(txn, d)?)
                }
                Some(request_op::Request::RequestTxn(t)) => {
                    let at = self.txn_read_rev(txn);
                    let ok = self.compares_hold(&t.compare, at, &txn.overlay)?;
                    let responses = self.txn_ops(txn, if ok { &t.success } else { &t.failure })?;
                    response_op::Response::ResponseTxn(TxnResponse {
                        header: None,
                        succeeded: ok,
                        responses,
                    })
                }
                None => {
                    return Err(EtcdError::Malformed(
                        "txn operation without a request".into(),
                    ));
                }
            };
            out.push(ResponseOp {
                response: Some(resp),
            });
        }
        Ok(out)
    }

    /// Fills the revision into every header of a finished write's response.
    pub fn stamp_txn(&self, resp: &mut TxnResponse) {
        resp.header = self.header();
        for r in &mut resp.responses {
            match &mut r.response {
                Some(response_op::Response::ResponseRange(x)) => x.header = self.header(),
                Some(response_op::Response::ResponsePut(x)) => x.header = self.header(),
                Some(response_op::Response::ResponseDeleteRange(x)) => x.header = self.header(),
                Some(response_op::Response::ResponseTxn(x)) => self.stamp_txn(x),
                None => {}
            }
        }
    }

    pub fn response_header(&self) -> ResponseHeader {
        ResponseHeader {
            revision: self.current_rev,
            ..Default::default()
        }
    }

    /// Compaction at `rev`: drops every revision superseded at or before it.
    pub fn compact(&mut self, txn: &mut WriteTxn, rev: i64) -> EtcdResult<()> {
        if rev <= self.compact_rev {
            return Err(EtcdError::Compacted);
        }
        if rev > self.current_rev {
            return Err(EtcdError::FutureRev);
        }
        let mut removed = Vec::new();
        for ki in self.index.values_mut() {
            removed.extend(ki.compact(rev));
        }
        self.index.retain(|_, ki| !ki.is_empty());
        let mut freed = 0i64;
        for (r, tomb) in removed {
            let k = r.to_key(tomb);
            if let Some(v) = self.db.get(CF_KV, &k)? {
                freed += record_cost(k.len(), v.len());
            }
            txn.batch.delete_cf(self.db.cf(CF_KV), k);
        }
        self.logical_bytes = (self.logical_bytes - freed).max(0);
        self.compact_rev = rev;
        Ok(())
    }

    /// Creates a lease record.
    pub fn lease_grant(&mut self, txn: &mut WriteTxn, id: i64, ttl: i64) -> EtcdResult<()> {
        if self.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExist);
        }
        txn.batch
            .put_cf(self.db.cf(CF_LEASE), encode_i64(id), encode_i64(ttl));
        self.logical_bytes += record_cost(8, 8);
        self.leases.insert(
            id,
            LeaseState {
                ttl,
                keys: BTreeSet::new(),
            },
        );
        Ok(())
    }

    /// Removes a lease and deletes every key attached to it, all in `txn`'s
    /// revision.
    pub fn lease_revoke(&mut self, txn: &mut WriteTxn, id: i64) -> EtcdResult<()> {
        let Some(lease) = self.leases.get(&id) else {
            return Err(EtcdError::LeaseNotFound);
        };
        let keys: Vec<Vec<u8>> = lease.keys.iter().cloned().collect();
        for k in keys {
            self.tombstone(txn, &k);
        }
        txn.batch.delete_cf(self.db.cf(CF_LEASE), encode_i64(id));
        self.logical_bytes = (self.logical_bytes - record_cost(8, 8)).max(0);
        self.leases.remove(&id);
        Ok(())
    }

    /// crc32 over the key records up to `rev` (0 = newest): equal on every
    /// member that applied the same log.
    pub fn hash_kv(&self, rev: i64) -> EtcdResult<(u32, i64, i64)> {
        let rev = if rev <= 0 { self.current_rev } else { rev };
        if rev > self.current_rev {
            return Err(EtcdError::FutureRev);
        }
        if rev < self.compact_rev {
            return Err(EtcdError::Compacted);
        }
        let mut h = crc32fast::Hasher::new();
        let upper = Revision::new(rev + 1, 0).to_key(false);
        for item in self
            .db
            .raw()
            .iterator_cf(self.db.cf(CF_KV), IteratorMode::Start)
        {
            let (k, v) = item.map_err(rocks("iterate kv"))?;
            if *k >= *upper {
                break;
            }
            h.update(&k);
            h.update(&v);
        }
        h.update(&encode_i64(self.compact_rev));
        Ok((h.finalize(), self.compact_rev, rev))
    }

    /// Events with revisions in `[from, to]`, oldest first, covering at most
    /// `max_revs` revisions; also returns the last revision covered (`to`
    /// when the range was read to its end). The caller checks compaction.
    pub fn events(&self, from: i64, to: i64, max_revs: usize) -> EtcdResult<(Vec<Event>, i64)> {
        let mut out = Vec::new();
        if from > to {
            return Ok((out, to));
        }
        let start = Revision::new(from, 0).to_key(false);
        let mut revs_seen = 0usize;
        let mut last_main = -1;
        let iter = self.db.raw().iterator_cf(
            self.db.cf(CF_KV),
            IteratorMode::From(&start, Direction::Forward),
        );
        for item in iter {
            let (k, v) = item.map_err(rocks("iterate kv"))?;
            let Some((rev, tomb)) = Revision::from_key(&k) else {
                return Err(EtcdError::Storage("bad revision key in kv".into()));
            };
            if rev.main > to {
                break;
            }
            if rev.main != last_main {
                if revs_seen == max_revs {
                    return Ok((out, last_main));
                }
                revs_seen += 1;
                last_main = rev.main;
            }
            let mut kv = KeyValue::decode(&*v)
                .map_err(|e| EtcdError::Storage(format!("decoding kv record: {e}")))?;
            let ty = if tomb {
                kv.mod_revision = rev.main;
                EventType::Delete
            } else {
                EventType::Put
            };
            out.push(Event {
                r#type: ty as i32,
                kv: Some(kv),
                prev_kv: None,
            });
        }
        Ok((out, to))
    }

    /// Every replicated record, for a Raft snapshot.
    pub fn export(&self, cf: &'static str) -> DbResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = Vec::new();
        for item in self
            .db
            .raw()
            .iterator_cf(self.db.cf(cf), IteratorMode::Start)
        {
            let (k, v) = item.map_err(rocks("export"))?;
            if cf == CF_META && k.starts_with(b"local/") {
                continue;
            }
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
