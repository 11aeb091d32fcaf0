//! Flags (etcd's names and defaults) and the member/cluster identities
//! derived from them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::CommonArgs;
use sha2::{Digest, Sha256};

/// etcd's default backend quota (2 GiB) when `--quota-backend-bytes` is 0.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;

#[derive(clap::Parser, Debug, Clone)]
#[command(
    name = "ackemu-store",
    about = "Raft-replicated MVCC store speaking the etcd v3 API"
)]
pub struct Args {
    /// Human-readable name for this member.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Path to the data directory (default `<name>.etcd`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Comma-separated URLs to listen on for client traffic.
    #[arg(long, default_value = "http://localhost:2379")]
    pub listen_client_urls: String,
    /// Client URLs to advertise to the cluster (default: the listen URLs).
    #[arg(long)]
    pub advertise_client_urls: Option<String>,
    /// Comma-separated URLs to listen on for peer traffic.
    #[arg(long, default_value = "http://localhost:2380")]
    pub listen_peer_urls: String,
    /// This member's peer URLs to advertise (default: the listen URLs).
    #[arg(long)]
    pub initial_advertise_peer_urls: Option<String>,
    /// Initial cluster configuration: `name=url,name=url,...`.
    #[arg(long)]
    pub initial_cluster: Option<String>,
    /// `new` to bootstrap a cluster, `existing` to join one.
    #[arg(long, default_value = "new")]
    pub initial_cluster_state: String,
    /// Token that makes member and cluster IDs unique per cluster.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,
    /// Heartbeat interval in ms (cluster time).
    #[arg(long, default_value_t = 100)]
    pub heartbeat_interval: u64,
    /// Election timeout in ms (cluster time).
    #[arg(long, default_value_t = 1000)]
    pub election_timeout: u64,
    /// Backend size quota in bytes; 0 means etcd's default (2 GiB).
    #[arg(long, default_value_t = 0)]
    pub quota_backend_bytes: i64,
    /// Largest client request accepted, in bytes.
    #[arg(long, default_value_t = 1572864)]
    pub max_request_bytes: usize,
    /// Most operations in one transaction.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Applied entries kept in the Raft log before its head is dropped.
    #[arg(long, default_value_t = 10000)]
    pub snapshot_count: u64,
    /// Serve linearizable reads locally without ReadIndex. Breaks
    /// linearizability on purpose: for demonstrating the history checker.
    #[arg(long, hide = true)]
    pub unsafe_stale_reads: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub name: String,
    pub peer_urls: Vec<String>,
}

/// Everything `run` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub client_addrs: Vec<SocketAddr>,
    pub client_urls: Vec<String>,
    pub peer_addrs: Vec<SocketAddr>,
    pub peer_urls: Vec<String>,
    pub initial_cluster: Vec<InitialMember>,
    pub cluster_state: ClusterState,
    pub cluster_token: String,
    pub heartbeat: Duration,
    pub election: Duration,
    pub quota_bytes: i64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub unsafe_stale_reads: bool,
    /// Bounded queues: proposals and messages into the Raft loop.
    pub raft_inbox_capacity: usize,
    /// Raft messages queued per peer before they are dropped.
    pub peer_queue_capacity: usize,
    /// Revisions buffered for watchers before a slow one must catch up from disk.
    pub watch_buffer_revisions: usize,
    /// Progress notifications for watches that ask for them.
    pub watch_progress_interval: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid URL {url:?}: {why}")]
    BadUrl { url: String, why: String },
    #[error("invalid --initial-cluster entry {entry:?}: expected name=url")]
    BadClusterEntry { entry: String },
    #[error("--initial-cluster has no member named {name:?} (this member's --name)")]
    SelfMissing { name: String },
    #[error("--initial-cluster-state must be new or existing, found {0:?}")]
    BadState(String),
    #[error(
        "--election-timeout ({election_ms} ms) must be at least 5x --heartbeat-interval ({heartbeat_ms} ms)"
    )]
    BadTimeouts { election_ms: u64, heartbeat_ms: u64 },
}

fn split_urls(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// `http://host:port` → a socket address (the only scheme served).
pub fn url_addr(url: &str) -> Result<SocketAddr, ConfigError> {
    let bad = |why: &str| ConfigError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("expected http://host:port"))?;
    let hostport = rest.trim_end_matches('/');
    hostport
        .to_socket_addrs()
        .map_err(|e| bad(&e.to_string()))?
        .next()
        .ok_or_else(|| bad("host resolves to no address"))
}

pub fn parse_initial_cluster(s: &str) -> Result<Vec<InitialMember>, ConfigError> {
    let mut out: Vec<InitialMember> = Vec::new();
    for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, url) = entry
            .split_once('=')
            .ok_or_else(|| ConfigError::BadClusterEntry {
                entry: entry.to_string(),
            })?;
        if name.is_empty() || url.is_empty() {
            return Err(ConfigError::BadClusterEntry {
                entry: entry.to_string(),
            });
        }
        url_addr(url)?;
        match out.iter_mut().find(|m| m.name == name) {
            Some(m) => m.peer_urls.push(url.to_string()),
            None => out.push(InitialMember {
                name: name.to_string(),
                peer_urls: vec![url.to_string()],
            }),
        }
    }
    Ok(out)
}

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let id = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
    // 0 means "no member" to raft.
    id.max(1)
}

/// A member's ID from its peer URLs and the cluster token (etcd derives it
/// the same way, so every member of a new cluster computes the same IDs).
pub fn member_id(peer_urls: &[String], token: &str, salt: Option<i64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let joined = urls.join(",");
    let salt = salt.map(|s| s.to_be_bytes().to_vec()).unwrap_or_default();
    hash64(&[joined.as_bytes(), token.as_bytes(), &salt])
}

pub fn cluster_id(member_ids: &[u64], token: &str) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_be_bytes()).collect();
    hash64(&[&bytes, token.as_bytes()])
}

impl Config {
    pub fn from_args(a: &Args) -> Result<Config, ConfigError> {
        let client_urls_listen = split_urls(&a.listen_client_urls);
        let client_addrs = client_urls_listen
            .iter()
            .map(|u| url_addr(u))
            .collect::<Result<Vec<_>, _>>()?;
        let client_urls = a
            .advertise_client_urls
            .as_deref()
            .map(split_urls)
            .unwrap_or(client_urls_listen);
        let peer_urls_listen = split_urls(&a.listen_peer_urls);
        let peer_addrs = peer_urls_listen
            .iter()
            .map(|u| url_addr(u))
            .collect::<Result<Vec<_>, _>>()?;
        let peer_urls = a
            .initial_advertise_peer_urls
            .as_deref()
            .map(split_urls)
            .unwrap_or(peer_urls_listen);
        let initial_cluster = match &a.initial_cluster {
            Some(s) => parse_initial_cluster(s)?,
            None => vec![InitialMember {
                name: a.name.clone(),
                peer_urls: peer_urls.clone(),
            }],
        };
        if !initial_cluster.iter().any(|m| m.name == a.name) {
            return Err(ConfigError::SelfMissing {
                name: a.name.clone(),
            });
        }
        let cluster_state = match a.initial_cluster_state.as_str() {
            "new" => ClusterState::New,
            "existing" => ClusterState::Existing,
            other => return Err(ConfigError::BadState(other.to_string())),
        };
        if a.election_timeout < 5 * a.heartbeat_interval || a.heartbeat_interval == 0 {
            return Err(ConfigError::BadTimeouts {
                election_ms: a.election_timeout,
                heartbeat_ms: a.heartbeat_interval,
            });
        }
        Ok(Config {
            name: a.name.clone(),
            data_dir: a
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}.etcd", a.name))),
            client_addrs,
            client_urls,
            peer_addrs,
            peer_urls,
            initial_cluster,
            cluster_state,
            cluster_token: a.initial_cluster_token.clone(),
            heartbeat: Duration::from_millis(a.heartbeat_interval),
            election: Duration::from_millis(a.election_timeout),
            quota_bytes: if a.quota_backend_bytes <= 0 {
                DEFAULT_QUOTA_BYTES
            } else {
                a.quota_backend_bytes
            },
            max_request_bytes: a.max_request_bytes,
            max_txn_ops: a.max_txn_ops,
            snapshot_count: a.snapshot_count.max(1),
            snapshot_catchup_entries: (a.snapshot_count / 2).clamp(1, 5000),
            unsafe_stale_reads: a.unsafe_stale_reads,
            raft_inbox_capacity: 4096,
            peer_queue_capacity: 4096,
            watch_buffer_revisions: 1024,
            watch_progress_interval: Duration::from_secs(600),
        })
    }

    /// The request deadline etcd uses: 5 s plus two election timeouts. It
    /// guards real work (fsync, apply), so requests wait at least this
    /// long in real time too (`Clock::timeout_real_floor`).
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(5) + 2 * self.election
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_parse_like_etcd() {
        let a = Args::parse_from([
            "ackemu-store",
            "--name",
            "s1",
            "--listen-client-urls",
            "http://127.0.0.1:23791",
            "--listen-peer-urls",
            "http://127.0.0.1:23801",
            "--initial-cluster",
            "s1=http://127.0.0.1:23801,s2=http://127.0.0.1:23802,s3=http://127.0.0.1:23803",
            "--quota-backend-bytes",
            "65536",
        ]);
        let c = Config::from_args(&a).unwrap();
        assert_eq!(c.initial_cluster.len(), 3);
        assert_eq!(c.data_dir, PathBuf::from("s1.etcd"));
        assert_eq!(c.quota_bytes, 65536);
        assert_eq!(c.client_urls, vec!["http://127.0.0.1:23791".to_string()]);
        assert_eq!(c.request_timeout(), Duration::from_secs(7));
    }

    #[test]
    fn bad_flags_are_rejected_with_reasons() {
        let cases: &[(&[&str], &str)] = &[
            (&["--initial-cluster", "s1"], "expected name=url"),
            (
                &["--initial-cluster", "x=http://127.0.0.1:1"],
                "no member named",
            ),
            (
                &["--listen-peer-urls", "unix:///x"],
                "expected http://host:port",
            ),
            (&["--initial-cluster-state", "maybe"], "new or existing"),
            (&["--election-timeout", "200"], "at least 5x"),
        ];
        for (extra, want) in cases {
            let mut argv = vec!["ackemu-store", "--name", "s1"];
            argv.extend_from_slice(extra);
            let err = Config::from_args(&Args::parse_from(argv))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{extra:?}: {err}");
        }
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = member_id(&["http://127.0.0.1:2380".into()], "t", None);
        let b = member_id(&["http://127.0.0.1:2381".into()], "t", None);
        assert_ne!(a, b);
        assert_eq!(a, member_id(&["http://127.0.0.1:2380".into()], "t", None));
        assert_ne!(
            a,
            member_id(&["http://127.0.0.1:2380".into()], "other", None)
        );
        assert_eq!(cluster_id(&[a, b], "t"), cluster_id(&[b, a], "t"));
    }
}
