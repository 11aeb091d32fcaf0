//! A thin client of the etcd v3 gRPC API (KV and Watch) with the
//! operations the storage layer needs: point reads, paged range reads at a
//! revision, create-if-absent, compare-and-swap on `mod_revision`, guarded
//! delete, and prefix watches. Works against `ackemu-store` and a real etcd.

use std::time::Duration;

use ackemu_base::tasks::Tasks;
use ackemu_proto::etcdserverpb::{
    self as pb, compare, kv_client::KvClient, request_op, response_op, watch_client::WatchClient,
    watch_request,
};
use ackemu_proto::mvccpb::{self, KeyValue};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

/// Failures of a store call, already classified for the API layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EtcdError {
    /// The requested revision has been compacted away.
    #[error("etcdserver: mvcc: required revision has been compacted (compacted at {0})")]
    Compacted(i64),
    /// Any other failure, with the store's message.
    #[error("{0}")]
    Failed(String),
    /// The store could not be reached.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl From<tonic::Status> for EtcdError {
    fn from(s: tonic::Status) -> Self {
        let msg = s.message().to_owned();
        if msg.contains("required revision has been compacted") {
            return EtcdError::Compacted(0);
        }
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                EtcdError::Unavailable(msg)
            }
            _ => EtcdError::Failed(msg),
        }
    }
}

/// Tries of a unary call whose transport fails.
const TRANSPORT_ATTEMPTS: u32 = 3;

/// Whether `s` is the transport's failure rather than the store's answer
/// (every store error text starts with `etcdserver:` or `mvcc:`).
fn transport_failure(s: &tonic::Status) -> bool {
    let m = s.message();
    matches!(s.code(), tonic::Code::Unknown | tonic::Code::Unavailable)
        && !m.starts_with("etcdserver:")
        && !m.starts_with("mvcc:")
}

/// Result of a conditional write.
#[derive(Debug, Clone)]
pub enum TxnOutcome {
    /// Written at this revision.
    Written(i64),
    /// The condition failed; the current pair, if the key exists.
    Failed(Option<KeyValue>),
}

/// One page of a range read.
#[derive(Debug, Clone)]
pub struct RangePage {
    pub kvs: Vec<KeyValue>,
    pub more: bool,
    /// The revision the page was read at.
    pub revision: i64,
}

/// One change seen by a watch.
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: mvccpb::event::EventType,
    pub kv: KeyValue,
    pub prev_kv: Option<KeyValue>,
}

/// A batch from a watch stream (one `WatchResponse`).
#[derive(Debug, Clone)]
pub struct WatchBatch {
    /// The store's revision when the batch was sent (progress marker).
    pub revision: i64,
    pub events: Vec<WatchEvent>,
}

/// A running prefix watch: its batches, and a way to ask the store for a
/// progress notification (the current revision, when nothing changed).
pub struct WatchHandle {
    pub rx: tokio::sync::mpsc::Receiver<Result<WatchBatch, EtcdError>>,
    progress: tokio::sync::mpsc::Sender<pb::WatchRequest>,
}

impl WatchHandle {
    /// A requester of progress notifications, usable while the watch runs.
    pub fn progress_requester(&self) -> ProgressRequester {
        ProgressRequester(self.progress.clone())
    }
}

/// Asks a watch for a progress notification.
#[derive(Clone)]
pub struct ProgressRequester(tokio::sync::mpsc::Sender<pb::WatchRequest>);

impl ProgressRequester {
    /// Best effort: a full request queue means one is already pending.
    pub fn request(&self) {
        let _ = self.0.try_send(pb::WatchRequest {
            request_union: Some(watch_request::RequestUnion::ProgressRequest(
                pb::WatchProgressRequest {},
            )),
        });
    }
}

#[derive(Clone)]
pub struct Etcd {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
    timeout: Duration,
    tasks: Tasks,
}

/// The smallest key after every key with `prefix`.
/// A watch request that the store ends when its member loses the leader
/// (etcd's `hasleader` metadata, clientv3.WithRequireLeader), so the watch
/// moves to a member that still sees new writes.
fn require_leader<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(
        "hasleader",
        tonic::metadata::MetadataValue::from_static("true"),
    );
    r
}

pub fn range_end(prefix: &[u8]) -> Vec<u8> {
    ackemu_kube::keys::prefix_range_end(prefix)
}

impl Etcd {
    /// A lazily connecting client balanced over `endpoints` (`host:port` or URLs).
    pub fn connect(
        endpoints: &[String],
        timeout: Duration,
        tasks: Tasks,
    ) -> Result<Etcd, EtcdError> {
        let mut eps = Vec::new();
        for e in endpoints {
            let url = if e.contains("://") {
                e.clone()
            } else {
                format!("http://{e}")
            };
            let ep = Endpoint::from_shared(url.clone())
                .map_err(|err| EtcdError::Failed(format!("invalid store endpoint {url:?}: {err}")))?
                .connect_timeout(timeout)
                // A member that stops answering (stopped, partitioned away)
                // must fail its streams so watches move to another member.
                .http2_keep_alive_interval(timeout)
                .keep_alive_timeout(timeout)
                .keep_alive_while_idle(true)
                .tcp_nodelay(true);
            eps.push(ep);
        }
        if eps.is_empty() {
            return Err(EtcdError::Failed(
                "no store endpoints configured".to_owned(),
            ));
        }
        let channel = Channel::balance_list(eps.into_iter());
        Ok(Etcd {
            kv: KvClient::new(channel.clone())
                .max_decoding_message_size(256 << 20)
                .max_encoding_message_size(64 << 20),
            watch: WatchClient::new(channel).max_decoding_message_size(256 << 20),
            timeout,
            tasks,
        })
    }

    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.timeout);
        r
    }

    /// A Range, retried on another member when the transport failed (the
    /// balancer picked a member whose connection had just broken), as
    /// etcd's clientv3 retries. The store's own refusals are not retried.
    async fn range_rpc(&self, msg: pb::RangeRequest) -> Result<pb::RangeResponse, tonic::Status> {
        let mut attempt = 1;
        loop {
            match self.kv.clone().range(self.req(msg.clone())).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if attempt < TRANSPORT_ATTEMPTS && transport_failure(&s) => {
                    tracing::debug!("store range failed in transport, retrying: {s}");
                    attempt += 1;
                }
                Err(s) => return Err(s),
            }
        }
    }

    /// A Txn, retried as [`Etcd::range_rpc`] is: every write of the API
    /// server is conditional (create-if-absent, guarded by mod_revision), so
    /// a retry of one that had landed fails its compare instead of writing
    /// twice.
    async fn txn_rpc(&self, msg: pb::TxnRequest) -> Result<pb::TxnResponse, tonic::Status> {
        let mut attempt = 1;
        loop {
            match self.kv.clone().txn(self.req(msg.clone())).await {
                Ok(r) => return Ok(r.into_inner()),
                Err(s) if attempt < TRANSPORT_ATTEMPTS && transport_failure(&s) => {
                    tracing::debug!("store txn failed in transport, retrying: {s}");
                    attempt += 1;
                }
                Err(s) => return Err(s),
            }
        }
    }

    /// The pair at `key`, and the store revision of the read.
    pub async fn get(&self, key: &str) -> Result<(Option<KeyValue>, i64), EtcdError> {
        let resp = self
            .range_rpc(pb::RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await?;
        let rev = resp.header.map(|h| h.revision).unwrap_or(0);
        Ok((resp.kvs.into_iter().next(), rev))
    }

    /// The store's current revision.
    pub async fn current_revision(&self) -> Result<i64, EtcdError> {
        let resp = self
            .range_rpc(pb::RangeRequest {
                key: b"\0".to_vec(),
                count_only: true,
                limit: 1,
                ..Default::default()
            })
            .await?;
        Ok(resp.header.map(|h| h.revision).unwrap_or(0))
    }

    /// Keys in `[start, end)` at `revision` (0 = newest), at most `limit` (0 = all).
    pub async fn range(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
        limit: i64,
    ) -> Result<RangePage, EtcdError> {
        let resp = self
            .range_rpc(pb::RangeRequest {
                key: start.to_vec(),
                range_end: end.to_vec(),
                revision,
                limit,
                ..Default::default()
            })
            .await
            .map_err(|s| {
                let e = EtcdError::from(s);
                match e {
                    EtcdError::Compacted(_) => EtcdError::Compacted(revision),
                    other => other,
                }
            })?;
        Ok(RangePage {
            kvs: resp.kvs,
            more: resp.more,
            revision: resp.header.map(|h| h.revision).unwrap_or(0),
        })
    }

    async fn txn(
        &self,
        compare: pb::Compare,
        success: request_op::Request,
        key: &str,
    ) -> Result<TxnOutcome, EtcdError> {
        let get = request_op::Request::RequestRange(pb::RangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        });
        let resp = self
            .txn_rpc(pb::TxnRequest {
                compare: vec![compare],
                success: vec![pb::RequestOp {
                    request: Some(success),
                }],
                failure: vec![pb::RequestOp { request: Some(get) }],
            })
            .await?;
        let rev = resp.header.map(|h| h.revision).unwrap_or(0);
        if resp.succeeded {
            return Ok(TxnOutcome::Written(rev));
        }
        let current = resp.responses.into_iter().find_map(|r| match r.response {
            Some(response_op::Response::ResponseRange(rr)) => rr.kvs.into_iter().next(),
            _ => None,
        });
        Ok(TxnOutcome::Failed(current))
    }

    fn put_op(key: &str, value: Vec<u8>) -> request_op::Request {
        request_op::Request::RequestPut(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value,
            ..Default::default()
        })
    }

    /// Writes `value` at `key` only if the key does not exist.
    pub async fn create(&self, key: &str, value: Vec<u8>) -> Result<TxnOutcome, EtcdError> {
        let cmp = pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Create as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(compare::TargetUnion::CreateRevision(0)),
            range_end: Vec::new(),
        };
        self.txn(cmp, Self::put_op(key, value), key).await
    }

    /// Writes `value` at `key` only if its `mod_revision` is `expected`.
    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        expected: i64,
    ) -> Result<TxnOutcome, EtcdError> {
        let cmp = pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(expected)),
            range_end: Vec::new(),
        };
        self.txn(cmp, Self::put_op(key, value), key).await
    }

    /// Deletes `key` only if its `mod_revision` is `expected`.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<TxnOutcome, EtcdError> {
        let cmp = pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: key.as_bytes().to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(expected)),
            range_end: Vec::new(),
        };
        let del = request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
            key: key.as_bytes().to_vec(),
            ..Default::default()
        });
        self.txn(cmp, del, key).await
    }

    /// Compacts the store's history up to `revision` (tests and maintenance).
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        self.kv
            .clone()
            .compact(self.req(pb::CompactionRequest {
                revision,
                physical: true,
            }))
            .await?;
        Ok(())
    }

    /// Watches every key with `prefix` from `start_revision` (inclusive),
    /// with previous values and progress notifications. The stream ends
    /// with `Err(Compacted)` if the start revision is gone.
    pub async fn watch_prefix(
        &self,
        prefix: &str,
        start_revision: i64,
    ) -> Result<WatchHandle, EtcdError> {
        let (req_tx, req_rx) = tokio::sync::mpsc::channel::<pb::WatchRequest>(4);
        let create = pb::WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: range_end(prefix.as_bytes()),
                    start_revision,
                    progress_notify: true,
                    prev_kv: true,
                    ..Default::default()
                },
            )),
        };
        req_tx
            .send(create)
            .await
            .map_err(|_| EtcdError::Failed("watch request channel closed".to_owned()))?;
        let mut stream = self
            .watch
            .clone()
            .watch(require_leader(ReceiverStream::new(req_rx)))
            .await?
            .into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let progress = req_tx.clone();
        // Holding `req_tx` keeps the watch open on the server; the pump ends
        // when the receiver is dropped or the stream fails.
        let pump = async move {
            let _keep = req_tx;
            loop {
                let next = tokio::select! {
                    m = stream.message() => m,
                    () = tx.closed() => return,
                };
                let msg = match next {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        let _ = tx
                            .send(Err(EtcdError::Unavailable("watch stream ended".to_owned())))
                            .await;
                        return;
                    }
                    Err(s) => {
                        let _ = tx.send(Err(EtcdError::from(s))).await;
                        return;
                    }
                };
                if msg.compact_revision > 0 {
                    let _ = tx
                        .send(Err(EtcdError::Compacted(msg.compact_revision)))
                        .await;
                    return;
                }
                if msg.canceled {
                    let _ = tx
                        .send(Err(EtcdError::Failed(format!(
                            "watch canceled: {}",
                            msg.cancel_reason
                        ))))
                        .await;
                    return;
                }
                if msg.created && msg.events.is_empty() {
                    // The creation answer's header names the member's current
                    // revision, not a point the events have reached.
                    continue;
                }
                let revision = msg.header.map(|h| h.revision).unwrap_or(0);
                let events = msg
                    .events
                    .into_iter()
                    .filter_map(|e| {
                        let kind = mvccpb::event::EventType::try_from(e.r#type).ok()?;
                        Some(WatchEvent {
                            kind,
                            kv: e.kv?,
                            prev_kv: e.prev_kv,
                        })
                    })
                    .collect();
                if tx.send(Ok(WatchBatch { revision, events })).await.is_err() {
                    return;
                }
            }
        };
        self.tasks.spawn(format!("etcd-watch {prefix}"), pump);
        Ok(WatchHandle { rx, progress })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transport_failures_are_retried() {
        let t = |code, msg: &str| transport_failure(&tonic::Status::new(code, msg));
        assert!(t(tonic::Code::Unknown, "transport error"));
        assert!(t(tonic::Code::Unavailable, "tcp connect error"));
        assert!(!t(tonic::Code::Unavailable, "etcdserver: leader changed"));
        assert!(!t(
            tonic::Code::Unavailable,
            "etcdserver: request timed out"
        ));
        assert!(!t(
            tonic::Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded"
        ));
        assert!(!t(
            tonic::Code::OutOfRange,
            "mvcc: required revision has been compacted"
        ));
        assert!(!t(tonic::Code::DeadlineExceeded, "timeout expired"));
    }
}
