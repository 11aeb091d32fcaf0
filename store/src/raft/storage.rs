//! The Raft log, hard state and snapshot bookkeeping on RocksDB, as
//! raft-rs's [`raft::Storage`].
//!
//! Log entries live in `raft_log` keyed by big-endian index. Mutations are
//! staged into a caller's `WriteBatch` so the node writes appended entries
//! and the hard state with one fsync. Snapshots are made on demand from the
//! applied state machine (its applied index is the snapshot index), the
//! way TiKV generates them, rather than kept as files.

use std::sync::Arc;

use parking_lot::RwLock;
use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};
use rocksdb::{IteratorMode, WriteBatch};

use crate::apply::StateMachine;
use crate::db::{CF_RAFT_LOG, CF_RAFT_STATE, Db, DbError, DbResult, rocks};

const HARD_STATE: &[u8] = b"hard_state";
/// Index and term of the last entry removed from the log's head.
const TRUNCATED: &[u8] = b"truncated";

fn index_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

fn other(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string().into()))
}

pub struct RaftStorage {
    db: Db,
    sm: Arc<RwLock<StateMachine>>,
    hard_state: HardState,
    truncated_index: u64,
    truncated_term: u64,
    last_index: u64,
}

impl RaftStorage {
    pub fn open(db: Db, sm: Arc<RwLock<StateMachine>>) -> DbResult<RaftStorage> {
        let hard_state = match db.get(CF_RAFT_STATE, HARD_STATE)? {
            Some(v) => HardState::parse_from_bytes(&v).map_err(|e| DbError::Corrupt {
                cf: CF_RAFT_STATE,
                what: e.to_string(),
            })?,
            None => HardState::default(),
        };
        let (truncated_index, truncated_term) = match db.get(CF_RAFT_STATE, TRUNCATED)? {
            Some(v) if v.len() == 16 => (
                crate::db::u64_be(&v[..8], CF_RAFT_STATE)?,
                crate::db::u64_be(&v[8..], CF_RAFT_STATE)?,
            ),
            Some(_) => {
                return Err(DbError::Corrupt {
                    cf: CF_RAFT_STATE,
                    what: "truncated state".into(),
                });
            }
            None => (0, 0),
        };
        let last_index = match db
            .raw()
            .iterator_cf(db.cf(CF_RAFT_LOG), IteratorMode::End)
            .next()
        {
            Some(item) => {
                let (k, _) = item.map_err(rocks("seek last log entry"))?;
                crate::db::u64_be(&k, CF_RAFT_LOG)?
            }
            None => truncated_index,
        };
        Ok(RaftStorage {
            db,
            sm,
            hard_state,
            truncated_index,
            truncated_term,
            last_index: last_index.max(truncated_index),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.last_index == 0 && self.hard_state == HardState::default()
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn first(&self) -> u64 {
        self.truncated_index + 1
    }

    pub fn last(&self) -> u64 {
        self.last_index
    }

    /// Stages entries (replacing any conflicting tail).
    pub fn append(&mut self, batch: &mut WriteBatch, entries: &[Entry]) -> DbResult<()> {
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(());
        };
        let cf = self.db.cf(CF_RAFT_LOG);
        for e in entries {
            let bytes = e.write_to_bytes().map_err(|err| DbError::Corrupt {
                cf: CF_RAFT_LOG,
                what: err.to_string(),
            })?;
            batch.put_cf(cf, index_key(e.index), bytes);
        }
        if last.index < self.last_index {
            batch.delete_range_cf(
                cf,
                index_key(last.index + 1),
                index_key(self.last_index + 1),
            );
        }
        debug_assert!(first.index <= self.last_index + 1, "log gap");
        self.last_index = last.index;
        Ok(())
    }

    pub fn set_hard_state(&mut self, batch: &mut WriteBatch, hs: HardState) -> DbResult<()> {
        let bytes = hs.write_to_bytes().map_err(|e| DbError::Corrupt {
            cf: CF_RAFT_STATE,
            what: e.to_string(),
        })?;
        batch.put_cf(self.db.cf(CF_RAFT_STATE), HARD_STATE, bytes);
        self.hard_state = hs;
        Ok(())
    }

    pub fn set_commit(&mut self, batch: &mut WriteBatch, commit: u64) -> DbResult<()> {
        let mut hs = self.hard_state.clone();
        hs.commit = commit;
        self.set_hard_state(batch, hs)
    }

    fn stage_truncated(&mut self, batch: &mut WriteBatch, index: u64, term: u64) {
        let mut v = Vec::with_capacity(16);
        v.extend_from_slice(&index.to_be_bytes());
        v.extend_from_slice(&term.to_be_bytes());
        batch.put_cf(self.db.cf(CF_RAFT_STATE), TRUNCATED, v);
        self.truncated_index = index;
        self.truncated_term = term;
    }

    /// A received snapshot replaced the state machine: the log restarts
    /// after it.
    pub fn apply_snapshot_meta(
        &mut self,
        batch: &mut WriteBatch,
        index: u64,
        term: u64,
    ) -> DbResult<()> {
        let cf = self.db.cf(CF_RAFT_LOG);
        batch.delete_range_cf(cf, index_key(0), index_key(u64::MAX));
        self.stage_truncated(batch, index, term);
        self.last_index = index;
        let mut hs = self.hard_state.clone();
        hs.commit = hs.commit.max(index);
        hs.term = hs.term.max(term);
        self.set_hard_state(batch, hs)
    }

    /// Drops the log up to and including `index` (already applied).
    pub fn compact(&mut self, index: u64) -> DbResult<()> {
        if index <= self.truncated_index || index > self.last_index {
            return Ok(());
        }
        let term = self.term_of(index)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(self.db.cf(CF_RAFT_LOG), index_key(0), index_key(index + 1));
        self.stage_truncated(&mut batch, index, term);
        self.db.write(batch, false)
    }

    fn read_entry(&self, index: u64) -> DbResult<Entry> {
        let raw = self
            .db
            .get(CF_RAFT_LOG, &index_key(index))?
            .ok_or_else(|| DbError::Corrupt {
                cf: CF_RAFT_LOG,
                what: format!("entry {index} is missing"),
            })?;
        Entry::parse_from_bytes(&raw).map_err(|e| DbError::Corrupt {
            cf: CF_RAFT_LOG,
            what: e.to_string(),
        })
    }

    fn term_of(&self, index: u64) -> DbResult<u64> {
        if index == self.truncated_index {
            return Ok(self.truncated_term);
        }
        Ok(self.read_entry(index)?.term)
    }
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let conf_state: ConfState = self.sm.read().conf_state.clone();
        Ok(RaftState {
            hard_state: self.hard_state.clone(),
            conf_state,
        })
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last_index + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let max_size = max_size.into().unwrap_or(u64::MAX);
        let mut out = Vec::with_capacity((high - low).min(1024) as usize);
        let mut size = 0u64;
        let cf = self.db.cf(CF_RAFT_LOG);
        let start = index_key(low);
        let iter = self
            .db
            .raw()
            .iterator_cf(cf, IteratorMode::From(&start, rocksdb::Direction::Forward));
        for item in iter {
            let (k, v) = item.map_err(other)?;
            let idx = crate::db::u64_be(&k, CF_RAFT_LOG).map_err(other)?;
            if idx >= high {
                break;
            }
            let e = Entry::parse_from_bytes(&v).map_err(other)?;
            size += v.len() as u64;
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(e);
        }
        if out.first().map(|e| e.index) != Some(low) {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index {
            return Ok(self.truncated_term);
        }
        if idx < self.truncated_index {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if idx > self.last_index {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        self.term_of(idx).map_err(other)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.truncated_index + 1)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index)
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        let sm = self.sm.read();
        if sm.applied_index < request_index || sm.applied_index == 0 {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        let data = sm.export().map_err(other)?;
        let mut snap = Snapshot {
            data: data.into(),
            ..Default::default()
        };
        let meta = snap.mut_metadata();
        meta.index = sm.applied_index;
        meta.term = sm.applied_term;
        meta.set_conf_state(sm.conf_state.clone());
        Ok(snap)
    }
}

#[cfg(test)]
mod tests {
    use raft::Storage as _;

    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8; 3].into(),
            ..Default::default()
        }
    }

    fn open(dir: &std::path::Path) -> RaftStorage {
        let db = Db::open(dir).unwrap();
        let sm = Arc::new(RwLock::new(StateMachine::open(db.clone()).unwrap()));
        RaftStorage::open(db, sm).unwrap()
    }

    #[test]
    fn append_truncate_compact_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(dir.path());
        assert!(s.is_empty());
        let mut b = WriteBatch::default();
        s.append(&mut b, &(1..=5).map(|i| entry(i, 1)).collect::<Vec<_>>())
            .unwrap();
        let hs = HardState {
            term: 2,
            commit: 3,
            ..Default::default()
        };
        s.set_hard_state(&mut b, hs.clone()).unwrap();
        s.db.write(b, true).unwrap();
        // A new leader overwrites the uncommitted tail 4..5 with 4 at term 2.
        let mut b = WriteBatch::default();
        s.append(&mut b, &[entry(4, 2)]).unwrap();
        s.db.write(b, true).unwrap();
        assert_eq!((s.first_index().unwrap(), s.last_index().unwrap()), (1, 4));
        assert_eq!(s.term(4).unwrap(), 2);
        assert!(matches!(
            s.term(5),
            Err(raft::Error::Store(StorageError::Unavailable))
        ));

        let got: Vec<u64> = s
            .entries(2, 5, None, GetEntriesContext::empty(false))
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(got, vec![2, 3, 4]);
        let one = s.entries(2, 5, 1, GetEntriesContext::empty(false)).unwrap();
        assert_eq!(one.len(), 1, "max_size still returns at least one entry");

        s.compact(2).unwrap();
        assert_eq!(s.first_index().unwrap(), 3);
        assert_eq!(s.term(2).unwrap(), 1, "the truncated entry's term is kept");
        assert!(matches!(
            s.term(1),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            s.entries(2, 4, None, GetEntriesContext::empty(false)),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        drop(s);
        let s = open(dir.path());
        assert_eq!((s.first(), s.last()), (3, 4));
        assert_eq!(s.hard_state(), &hs);
        assert_eq!(s.term(2).unwrap(), 1);
    }

    #[test]
    fn snapshot_waits_for_the_applied_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        assert!(matches!(
            s.snapshot(1, 2),
            Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        s.sm.write().apply_noop(7, 3).unwrap();
        let snap = s.snapshot(5, 2).unwrap();
        assert_eq!(
            (snap.get_metadata().index, snap.get_metadata().term),
            (7, 3)
        );
    }
}
