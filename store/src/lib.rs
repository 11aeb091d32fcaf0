//! ackemu-store: the cluster's database — a Raft-replicated (raft-rs) MVCC
//! key-value store on RocksDB that speaks etcd's v3 gRPC API, so `etcdctl`,
//! etcd client libraries and the API server use it as they would etcd.
//!
//! Owns: the etcd wire API on the client port (`grpc`), consensus and the
//! peer protocol (`raft`), the replicated state machine (`apply`, `mvcc`),
//! lease expiry (`lessor`), its RocksDB layout (`db`) and its flags
//! (`config`).
//!
//! Must not know: Kubernetes (keys are opaque bytes), the cloud, or any
//! other ackemu component. Pure decision cores (`mvcc::index`, `lessor`,
//! the state machine's apply) take no time or randomness from outside;
//! the Raft loop and gRPC handlers are the IO edge.

pub mod apply;
pub mod config;
pub mod db;
pub mod errors;
pub mod grpc;
pub mod history;
pub mod lessor;
pub mod mvcc;
pub mod raft;
pub mod server;

use std::net::SocketAddr;
use std::sync::Arc;

use ackemu_base::Env;
use ackemu_proto::ackemu::store::v1::store_peer_server::StorePeerServer;
use ackemu_proto::ackemu::store::v1::{MemberInfo, MembersRequest};
use ackemu_proto::etcdserverpb::cluster_server::ClusterServer;
use ackemu_proto::etcdserverpb::kv_server::KvServer;
use ackemu_proto::etcdserverpb::lease_server::LeaseServer;
use ackemu_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use ackemu_proto::etcdserverpb::watch_server::WatchServer;
use parking_lot::RwLock;
use prost::Message as _;
use rocksdb::WriteBatch;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tonic::transport::server::TcpIncoming;

use crate::apply::StateMachine;
use crate::config::{ClusterState, Config, cluster_id, member_id};
use crate::db::{CF_META, Db};
use crate::raft::node::{Node, bootstrap_entries};
use crate::raft::storage::RaftStorage;
use crate::raft::transport::{PEER_MAX_MESSAGE_BYTES, Transport, peer_client};
use crate::server::{Shared, SharedParts};

pub use config::Args;

const LOCAL_MEMBER_ID: &[u8] = b"local/member_id";
/// How long open client and peer streams may take to finish at shutdown.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
const LOCAL_CLUSTER_ID: &[u8] = b"local/cluster_id";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("creating data dir {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Db(#[from] db::DbError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("joining the cluster: {0}")]
    Join(String),
    #[error("starting raft: {0}")]
    Raft(#[from] raft::node::NodeError),
    #[error("the raft loop stopped unexpectedly")]
    RaftThread,
    #[error("serving gRPC: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// Member identity: (member ID, cluster ID) and, for a joining member, the
/// peers it learned about.
struct Identity {
    member_id: u64,
    cluster_id: u64,
    seed: Vec<(u64, Vec<String>)>,
}

fn read_u64(db: &Db, key: &[u8]) -> Result<Option<u64>, db::DbError> {
    db.get(CF_META, key)?
        .map(|v| db::u64_be(&v, CF_META))
        .transpose()
}

async fn identity(cfg: &Config, db: &Db, storage: &mut RaftStorage) -> Result<Identity, RunError> {
    if let (Some(member_id), Some(cluster_id)) = (
        read_u64(db, LOCAL_MEMBER_ID)?,
        read_u64(db, LOCAL_CLUSTER_ID)?,
    ) {
        tracing::info!("restarting member {member_id:x} of cluster {cluster_id:x}");
        return Ok(Identity {
            member_id,
            cluster_id,
            seed: vec![],
        });
    }
    let id = match cfg.cluster_state {
        ClusterState::New => {
            let ids: Vec<(u64, &config::InitialMember)> = cfg
                .initial_cluster
                .iter()
                .map(|m| (member_id(&m.peer_urls, &cfg.cluster_token, None), m))
                .collect();
            let me = ids
                .iter()
                .find(|(_, m)| m.name == cfg.name)
                .map(|(id, _)| *id)
                .expect("validated in config");
            let cid = cluster_id(
                &ids.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                &cfg.cluster_token,
            );
            let mut members: Vec<(u64, Vec<u8>)> = ids
                .iter()
                .map(|(id, m)| {
                    let info = MemberInfo {
                        id: *id,
                        peer_urls: m.peer_urls.clone(),
                        ..Default::default()
                    };
                    (*id, info.encode_to_vec())
                })
                .collect();
            members.sort_by_key(|(id, _)| *id);
            let entries = bootstrap_entries(&members);
            let mut batch = WriteBatch::default();
            storage.append(&mut batch, &entries)?;
            let hs = ::raft::eraftpb::HardState {
                term: 1,
                commit: entries.len() as u64,
                ..Default::default()
            };
            storage.set_hard_state(&mut batch, hs)?;
            db.write(batch, true)?;
            tracing::info!(
                "bootstrapping member {me:x} of new cluster {cid:x} with {} members",
                members.len()
            );
            Identity {
                member_id: me,
                cluster_id: cid,
                seed: vec![],
            }
        }
        ClusterState::Existing => join(cfg).await?,
    };
    let mut batch = WriteBatch::default();
    batch.put_cf(db.cf(CF_META), LOCAL_MEMBER_ID, id.member_id.to_be_bytes());
    batch.put_cf(
        db.cf(CF_META),
        LOCAL_CLUSTER_ID,
        id.cluster_id.to_be_bytes(),
    );
    db.write(batch, true)?;
    Ok(id)
}

/// Asks the other members who this member is (it must have been added
/// with MemberAdd first, as with etcd).
async fn join(cfg: &Config) -> Result<Identity, RunError> {
    let mut last_err = String::from("no other member in --initial-cluster");
    for m in cfg.initial_cluster.iter().filter(|m| m.name != cfg.name) {
        for url in &m.peer_urls {
            let Ok(ep) = tonic::transport::Endpoint::from_shared(url.clone()) else {
                continue;
            };
            let channel = match ep
                .connect_timeout(std::time::Duration::from_secs(2))
                .connect()
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    last_err = format!("{url}: {e}");
                    continue;
                }
            };
            let resp = match peer_client(channel).members(MembersRequest {}).await {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    last_err = format!("{url}: {}", e.message());
                    continue;
                }
            };
            let me = resp
                .members
                .iter()
                .find(|x| x.peer_urls.iter().any(|u| cfg.peer_urls.contains(u)));
            let Some(me) = me else {
                return Err(RunError::Join(format!(
                    "no member with peer URLs {:?} in the cluster; add it with `member add` first",
                    cfg.peer_urls
                )));
            };
            let seed = resp
                .members
                .iter()
                .map(|x| (x.id, x.peer_urls.clone()))
                .collect();
            tracing::info!(
                "joining cluster {:x} as member {:x}",
                resp.cluster_id,
                me.id
            );
            return Ok(Identity {
                member_id: me.id,
                cluster_id: resp.cluster_id,
                seed,
            });
        }
    }
    Err(RunError::Join(last_err))
}

/// Accepted connections with Nagle off: small gRPC frames must not wait
/// for delayed ACKs.
fn incoming(l: TcpListener) -> TcpIncoming {
    TcpIncoming::from(l).with_nodelay(Some(true))
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })
}

/// Runs a member until the process is told to stop (or the member is
/// removed from the cluster).
pub async fn run(cfg: Config, env: Env) -> Result<(), RunError> {
    std::fs::create_dir_all(&cfg.data_dir).map_err(|source| RunError::DataDir {
        path: cfg.data_dir.display().to_string(),
        source,
    })?;
    // Listen first: peers and clients may connect as soon as we exist.
    let mut client_listeners = Vec::new();
    for a in &cfg.client_addrs {
        client_listeners.push(bind(*a).await?);
    }
    let mut peer_listeners = Vec::new();
    for a in &cfg.peer_addrs {
        peer_listeners.push(bind(*a).await?);
    }

    let db = Db::open(&cfg.data_dir.join("db"))?;
    let sm = Arc::new(RwLock::new(StateMachine::open(db.clone())?));
    let mut storage = RaftStorage::open(db.clone(), sm.clone())?;
    let id = identity(&cfg, &db, &mut storage).await?;
    drop(storage);
    let storage = RaftStorage::open(db.clone(), sm.clone())?;

    let (inbox_tx, inbox_rx) = mpsc::channel(cfg.raft_inbox_capacity);
    let transport = Transport::new(
        id.member_id,
        env.tasks.clone(),
        env.clock.clone(),
        inbox_tx.clone(),
        cfg.peer_queue_capacity,
    );
    let shared = Shared::new(SharedParts {
        cfg: cfg.clone(),
        clock: env.clock.clone(),
        tasks: env.tasks.clone(),
        db,
        member_id: id.member_id,
        cluster_id: id.cluster_id,
        sm,
        transport,
        inbox: inbox_tx,
    });
    shared.seed_peers(id.seed);

    let node = Node::new(shared.clone(), storage, inbox_rx)?;
    let handle = tokio::runtime::Handle::current();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    env.tasks.spawn_thread("store/raft", move || {
        let r = handle.block_on(node.run());
        let _ = done_tx.send(r);
    });

    let api = grpc::Api {
        shared: shared.clone(),
    };
    let max_client = cfg.max_request_bytes + grpc::GRPC_OVERHEAD_BYTES;
    let token = env.tasks.token();
    let mut servers = Vec::new();
    for l in client_listeners {
        let router = tonic::transport::Server::builder()
            .add_service(KvServer::new(api.clone()).max_decoding_message_size(max_client))
            .add_service(WatchServer::new(api.clone()).max_decoding_message_size(max_client))
            .add_service(LeaseServer::new(api.clone()).max_decoding_message_size(max_client))
            .add_service(ClusterServer::new(api.clone()).max_decoding_message_size(max_client))
            .add_service(MaintenanceServer::new(api.clone()).max_decoding_message_size(max_client));
        let stop = token.clone();
        tracing::info!(
            "serving client requests on {}",
            l.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        servers.push(env.tasks.spawn("store/grpc/client", async move {
            router
                .serve_with_incoming_shutdown(
                    tokio_stream::StreamExt::map(incoming(l), |c| {
                        c.map(grpc::authority::AuthorityFix::new)
                    }),
                    stop.cancelled_owned(),
                )
                .await
        }));
    }
    for l in peer_listeners {
        let router = tonic::transport::Server::builder().add_service(
            StorePeerServer::new(api.clone())
                .max_decoding_message_size(PEER_MAX_MESSAGE_BYTES)
                .max_encoding_message_size(PEER_MAX_MESSAGE_BYTES),
        );
        let stop = token.clone();
        tracing::info!(
            "serving peers on {}",
            l.local_addr().map(|a| a.to_string()).unwrap_or_default()
        );
        servers.push(env.tasks.spawn("store/grpc/peer", async move {
            router
                .serve_with_incoming_shutdown(incoming(l), stop.cancelled_owned())
                .await
        }));
    }
    env.health.set_healthy(true);
    // Ready (for /readyz) while this member knows a leader, as etcd's
    // /health reports.
    let (health, mut view, stop) = (env.health.clone(), shared.raft.subscribe(), token.clone());
    env.tasks.spawn("store/readiness", async move {
        loop {
            health.set_ready(view.borrow_and_update().leader != 0);
            tokio::select! {
                () = stop.cancelled() => return,
                changed = view.changed() => if changed.is_err() { return },
            }
        }
    });

    let result = match done_rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!("raft loop failed, stopping this member: {e}");
            Err(RunError::Raft(e))
        }
        Err(_) => Err(RunError::RaftThread),
    };
    token.cancel();
    // Graceful shutdown waits for open streams (peers, watches); bound it.
    let drain = async {
        for s in servers {
            if let Ok(Err(e)) = s.await {
                tracing::warn!("gRPC server ended with an error: {e}");
            }
        }
    };
    if env.clock.timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::info!("closing connections still open after {SHUTDOWN_GRACE:?}");
    }
    result
}
