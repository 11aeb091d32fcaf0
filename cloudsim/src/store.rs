//! Persistence: the whole [`State`] as one JSON snapshot, rewritten after
//! every committed mutation — written to `state.json.tmp`, fsync'd, renamed
//! over `state.json`, then the directory fsync'd. A crash leaves either the
//! old or the new snapshot, never a mix. The audit trail is a separate
//! append-only `audit.jsonl` (one record a line, fsync'd per record).

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::model::State;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("decoding snapshot {path}: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("encoding snapshot: {0}")]
    Encode(serde_json::Error),
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(io("creating data dir", dir))?;
        Ok(Store {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn snapshot_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn audit_path(&self) -> PathBuf {
        self.dir.join("audit.jsonl")
    }

    /// The last committed snapshot, if any.
    pub fn load(&self) -> Result<Option<State>, StoreError> {
        let path = self.snapshot_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Decode { path, source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::Io {
                op: "reading",
                path,
                source: e,
            }),
        }
    }

    /// Durably replaces the snapshot with `state`.
    pub fn save(&self, state: &State) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(state).map_err(StoreError::Encode)?;
        let tmp = self.dir.join("state.json.tmp");
        {
            let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
            f.write_all(&bytes).map_err(io("writing", &tmp))?;
            f.sync_all().map_err(io("fsyncing", &tmp))?;
        }
        let dst = self.snapshot_path();
        fs::rename(&tmp, &dst).map_err(io("renaming into", &dst))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsyncing dir", &self.dir))?;
        Ok(())
    }

    /// Appends one audit record (a JSON line).
    pub fn append_audit(&self, line: &str) -> Result<(), StoreError> {
        let path = self.audit_path();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        f.write_all(line.as_bytes())
            .map_err(io("appending to", &path))?;
        f.write_all(b"\n").map_err(io("appending to", &path))?;
        f.sync_data().map_err(io("fsyncing", &path))?;
        Ok(())
    }

    /// The last `limit` audit lines (skipping any torn last line).
    pub fn load_audit(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let path = self.audit_path();
        let f = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(StoreError::Io {
                    op: "opening",
                    path,
                    source: e,
                });
            }
        };
        let mut lines = std::collections::VecDeque::with_capacity(limit.min(4096));
        for line in BufReader::new(f).lines() {
            let line = line.map_err(io("reading", &path))?;
            if serde_json::from_str::<serde_json::Value>(&line).is_err() {
                continue;
            }
            if lines.len() == limit {
                lines.pop_front();
            }
            lines.push_back(line);
        }
        Ok(lines.into_iter().collect())
    }
}
