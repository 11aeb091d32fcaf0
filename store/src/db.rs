//! The one RocksDB instance a member owns, and its column families.
//!
//! `raft_log` and `raft_state` hold the Raft log, hard state and snapshot
//! metadata; `kv`, `lease` and `meta` hold the applied state machine. The
//! state machine's `meta` carries the applied index, written in the same
//! batch as the change it describes, so after a crash the member replays
//! the (fsync'd) log from exactly where the state machine stopped.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch, WriteOptions};

pub const CF_RAFT_LOG: &str = "raft_log";
pub const CF_RAFT_STATE: &str = "raft_state";
pub const CF_KV: &str = "kv";
pub const CF_LEASE: &str = "lease";
pub const CF_META: &str = "meta";
const ALL_CFS: [&str; 5] = [CF_RAFT_LOG, CF_RAFT_STATE, CF_KV, CF_LEASE, CF_META];

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("rocksdb {op} failed: {source}")]
    Rocks {
        op: &'static str,
        #[source]
        source: rocksdb::Error,
    },
    #[error("corrupt record in {cf}: {what}")]
    Corrupt { cf: &'static str, what: String },
}

pub type DbResult<T> = Result<T, DbError>;

pub fn rocks(op: &'static str) -> impl FnOnce(rocksdb::Error) -> DbError {
    move |source| DbError::Rocks { op, source }
}

/// Shared handle to the member's database.
#[derive(Clone)]
pub struct Db {
    inner: Arc<DB>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.inner.path())
            .finish()
    }
}

impl Db {
    pub fn open(path: &Path) -> DbResult<Db> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // The Raft log is small and hot; the state machine is read by
        // revision ranges. Defaults are fine for both at this scale.
        let cfs = ALL_CFS
            .iter()
            .map(|n| ColumnFamilyDescriptor::new(*n, Options::default()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(rocks("open"))?;
        Ok(Db {
            inner: Arc::new(db),
        })
    }

    pub fn raw(&self) -> &DB {
        &self.inner
    }

    pub fn cf(&self, name: &'static str) -> &ColumnFamily {
        // Every family in ALL_CFS is created at open.
        self.inner
            .cf_handle(name)
            .expect("column family created at open")
    }

    pub fn get(&self, cf: &'static str, key: &[u8]) -> DbResult<Option<Vec<u8>>> {
        self.inner.get_cf(self.cf(cf), key).map_err(rocks("get"))
    }

    /// Writes a batch; `sync` makes it durable (WAL fsync) before returning.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> DbResult<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.inner.write_opt(batch, &wo).map_err(rocks("write"))
    }

    /// Forces the write-ahead log to disk.
    pub fn sync_wal(&self) -> DbResult<()> {
        self.inner.flush_wal(true).map_err(rocks("flush wal"))
    }

    /// Rewrites the state machine's files without garbage (after compaction).
    pub fn compact_all(&self) {
        for cf in [CF_KV, CF_LEASE, CF_META, CF_RAFT_LOG] {
            self.inner
                .compact_range_cf(self.cf(cf), None::<&[u8]>, None::<&[u8]>);
        }
    }

    /// Bytes RocksDB has on disk for the state machine (SST files plus memtables).
    pub fn disk_bytes(&self) -> u64 {
        let mut total = 0;
        for cf in [CF_KV, CF_LEASE, CF_META] {
            for prop in [
                "rocksdb.total-sst-files-size",
                "rocksdb.cur-size-all-mem-tables",
            ] {
                if let Ok(Some(v)) = self.inner.property_int_value_cf(self.cf(cf), prop) {
                    total += v;
                }
            }
        }
        total
    }
}

pub fn u64_be(v: &[u8], cf: &'static str) -> DbResult<u64> {
    let arr: [u8; 8] = v.try_into().map_err(|_| DbError::Corrupt {
        cf,
        what: format!("expected 8 bytes, found {}", v.len()),
    })?;
    Ok(u64::from_be_bytes(arr))
}
