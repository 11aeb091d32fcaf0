//! etcd's Watch service: one session task per stream.
//!
//! A session subscribes to the applied-revision broadcast *before* it reads
//! anything from disk, so a watcher catching up from RocksDB and then
//! following the broadcast sees every revision exactly once and in order.
//! A watcher that falls behind the bounded broadcast catches up from disk;
//! one whose next revision was compacted is cancelled with the compaction
//! revision, as etcd does.

use std::collections::BTreeMap;
use std::sync::Arc;

use ackemu_proto::etcdserverpb::watch_server::Watch;
use ackemu_proto::etcdserverpb::{
    WatchCreateRequest, WatchRequest, WatchResponse, watch_create_request, watch_request,
};
use ackemu_proto::mvccpb::{Event, event::EventType};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{Api, status};
use crate::errors::EtcdResult;
use crate::mvcc::KeyRange;
use crate::server::{RevisionEvents, Shared};

/// Revisions read from disk per catch-up step.
const CATCHUP_REVISIONS: usize = 256;
/// Responses queued per stream.
const STREAM_QUEUE: usize = 64;

/// Election timeouts without a leader after which streams that asked for
/// one (`hasleader` metadata) are ended, as etcd's leader monitor does.
const MAX_NO_LEADER_ELECTIONS: u32 = 3;

struct Watcher {
    key: Vec<u8>,
    end: Vec<u8>,
    next_rev: i64,
    prev_kv: bool,
    no_put: bool,
    no_delete: bool,
    progress_notify: bool,
    sent_since_progress: bool,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else { return false };
        if (ev.r#type == EventType::Put as i32 && self.no_put)
            || (ev.r#type == EventType::Delete as i32 && self.no_delete)
        {
            return false;
        }
        KeyRange::new(&self.key, &self.end).contains(&kv.key)
    }
}

struct Session {
    shared: Arc<Shared>,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    next_id: i64,
    /// End the stream when this member has had no leader for
    /// [`MAX_NO_LEADER_ELECTIONS`] election timeouts.
    require_leader: bool,
}

enum Flow {
    Continue,
    Closed,
}

impl Session {
    fn response(&self, watch_id: i64, revision: i64) -> WatchResponse {
        WatchResponse {
            header: Some(self.shared.header_at(revision)),
            watch_id,
            ..Default::default()
        }
    }

    fn current_rev(&self) -> i64 {
        self.shared.sm.read().mvcc.current_rev()
    }

    async fn send(&self, r: WatchResponse) -> Flow {
        if self.out.send(Ok(r)).await.is_err() {
            Flow::Closed
        } else {
            Flow::Continue
        }
    }

    fn with_prev(&self, w: &Watcher, mut evs: Vec<Event>) -> EtcdResult<Vec<Event>> {
        if w.prev_kv {
            let sm = self.shared.sm.read();
            for ev in &mut evs {
                if let Some(kv) = &ev.kv {
                    ev.prev_kv = sm.mvcc.get_at(&kv.key, kv.mod_revision - 1)?;
                }
            }
        }
        Ok(evs)
    }

    /// Brings one watcher up to the newest applied revision from disk.
    async fn catch_up(&mut self, id: i64) -> EtcdResult<Flow> {
        loop {
            let Some(w) = self.watchers.get(&id) else {
                return Ok(Flow::Continue);
            };
            let (cur, compact, evs, upto) = {
                let sm = self.shared.sm.read();
                let (cur, compact) = (sm.mvcc.current_rev(), sm.mvcc.compact_rev());
                if w.next_rev < compact || w.next_rev > cur {
                    (cur, compact, Vec::new(), cur)
                } else {
                    let (evs, upto) = sm.mvcc.events(w.next_rev, cur, CATCHUP_REVISIONS)?;
                    (cur, compact, evs, upto)
                }
            };
            if w.next_rev < compact {
                let mut r = self.response(id, cur);
                r.canceled = true;
                r.compact_revision = compact;
                self.watchers.remove(&id);
                return Ok(self.send(r).await);
            }
            if w.next_rev > cur {
                return Ok(Flow::Continue);
            }
            let done = upto >= cur;
            let wanted: Vec<Event> = evs.into_iter().filter(|e| w.wants(e)).collect();
            let wanted = self.with_prev(w, wanted)?;
            if let Some(w) = self.watchers.get_mut(&id) {
                w.next_rev = upto + 1;
                if !wanted.is_empty() {
                    w.sent_since_progress = true;
                }
            }
            if !wanted.is_empty() {
                let mut r = self.response(id, cur);
                r.events = wanted;
                if let Flow::Closed = self.send(r).await {
                    return Ok(Flow::Closed);
                }
            }
            if done {
                return Ok(Flow::Continue);
            }
        }
    }

    async fn catch_up_all(&mut self) -> EtcdResult<Flow> {
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            if let Flow::Closed = self.catch_up(id).await? {
                return Ok(Flow::Closed);
            }
        }
        Ok(Flow::Continue)
    }

    async fn on_revision(&mut self, batch: &RevisionEvents) -> EtcdResult<Flow> {
        if batch.resync {
            return self.catch_up_all().await;
        }
        let ids: Vec<i64> = self.watchers.keys().copied().collect();
        for id in ids {
            let Some(w) = self.watchers.get(&id) else {
                continue;
            };
            if w.next_rev > batch.revision {
                continue;
            }
            if w.next_rev < batch.revision {
                // A gap (this watcher was behind): read it from disk.
                if let Flow::Closed = self.catch_up(id).await? {
                    return Ok(Flow::Closed);
                }
                continue;
            }
            let wanted: Vec<Event> = batch
                .events
                .iter()
                .filter(|e| w.wants(e))
                .cloned()
                .collect();
            let wanted = self.with_prev(w, wanted)?;
            if let Some(w) = self.watchers.get_mut(&id) {
                w.next_rev = batch.revision + 1;
                if !wanted.is_empty() {
                    w.sent_since_progress = true;
                }
            }
            if !wanted.is_empty() {
                let mut r = self.response(id, batch.revision);
                r.events = wanted;
                if let Flow::Closed = self.send(r).await {
                    return Ok(Flow::Closed);
                }
            }
        }
        Ok(Flow::Continue)
    }

    async fn create(&mut self, c: WatchCreateRequest) -> EtcdResult<Flow> {
        let cur = self.current_rev();
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            self.next_id
        };
        if self.watchers.contains_key(&id) || id < 0 {
            let mut r = self.response(-1, cur);
            r.created = true;
            r.canceled = true;
            r.cancel_reason = "mvcc: duplicate watch ID provided on the WatchStream".into();
            return Ok(self.send(r).await);
        }
        if c.watch_id == 0 {
            self.next_id += 1;
        }
        let filters: Vec<i32> = c.filters.clone();
        let w = Watcher {
            key: c.key,
            end: c.range_end,
            next_rev: if c.start_revision > 0 {
                c.start_revision
            } else {
                cur + 1
            },
            prev_kv: c.prev_kv,
            no_put: filters.contains(&(watch_create_request::FilterType::Noput as i32)),
            no_delete: filters.contains(&(watch_create_request::FilterType::Nodelete as i32)),
            progress_notify: c.progress_notify,
            sent_since_progress: false,
        };
        self.watchers.insert(id, w);
        let mut r = self.response(id, cur);
        r.created = true;
        if let Flow::Closed = self.send(r).await {
            return Ok(Flow::Closed);
        }
        self.catch_up(id).await
    }

    async fn on_request(&mut self, req: WatchRequest) -> EtcdResult<Flow> {
        match req.request_union {
            Some(watch_request::RequestUnion::CreateRequest(c)) => self.create(c).await,
            Some(watch_request::RequestUnion::CancelRequest(c)) => {
                if self.watchers.remove(&c.watch_id).is_some() {
                    let mut r = self.response(c.watch_id, self.current_rev());
                    r.canceled = true;
                    return Ok(self.send(r).await);
                }
                Ok(Flow::Continue)
            }
            Some(watch_request::RequestUnion::ProgressRequest(_)) => {
                // Everything up to `cur` is delivered before the notification.
                let cur = self.current_rev();
                if let Flow::Closed = self.catch_up_all().await? {
                    return Ok(Flow::Closed);
                }
                Ok(self.send(self.response(-1, cur)).await)
            }
            None => Ok(Flow::Continue),
        }
    }

    async fn on_progress_tick(&mut self) -> EtcdResult<Flow> {
        let cur = self.current_rev();
        let ids: Vec<i64> = self
            .watchers
            .iter()
            .filter(|(_, w)| w.progress_notify && !w.sent_since_progress && w.next_rev > cur)
            .map(|(id, _)| *id)
            .collect();
        for w in self.watchers.values_mut() {
            w.sent_since_progress = false;
        }
        for id in ids {
            if let Flow::Closed = self.send(self.response(id, cur)).await {
                return Ok(Flow::Closed);
            }
        }
        Ok(Flow::Continue)
    }

    async fn run(
        mut self,
        mut inbound: Streaming<WatchRequest>,
        mut revisions: broadcast::Receiver<Arc<RevisionEvents>>,
    ) {
        let token = self.shared.tasks.token();
        let mut progress = self
            .shared
            .clock
            .interval(self.shared.cfg.watch_progress_interval);
        let mut leader_check = self.shared.clock.interval(self.shared.cfg.election);
        let mut no_leader = 0u32;
        loop {
            let step = tokio::select! {
                () = token.cancelled() => return,
                _ = leader_check.tick(), if self.require_leader => {
                    if self.shared.raft.borrow().leader == 0 {
                        no_leader += 1;
                    } else {
                        no_leader = 0;
                    }
                    if no_leader >= MAX_NO_LEADER_ELECTIONS {
                        // The client wants a watch that sees new writes; a
                        // member cut off from its leader cannot give it one.
                        let _ = self
                            .out
                            .send(Err(Status::unavailable("etcdserver: no leader")))
                            .await;
                        return;
                    }
                    Ok(Flow::Continue)
                }
                () = self.out.closed() => return,
                req = inbound.message() => match req {
                    Ok(Some(req)) => self.on_request(req).await,
                    Ok(None) | Err(_) => return,
                },
                rev = revisions.recv() => match rev {
                    Ok(batch) => self.on_revision(&batch).await,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!("watch stream lagged by {n} revisions; catching up from disk");
                        self.catch_up_all().await
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = progress.tick() => self.on_progress_tick().await,
            };
            match step {
                Ok(Flow::Continue) => {}
                Ok(Flow::Closed) => return,
                Err(e) => {
                    let _ = self.out.send(Err(status(e))).await;
                    return;
                }
            }
        }
    }
}

#[tonic::async_trait]
impl Watch for Api {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        // clientv3.WithRequireLeader, which kube-apiserver uses for watches.
        let require_leader = req
            .metadata()
            .get("hasleader")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == "true");
        let inbound = req.into_inner();
        // Subscribe before anything is read so no revision falls in between.
        let revisions = self.shared.watch_tx.subscribe();
        let (tx, rx) = mpsc::channel(STREAM_QUEUE);
        let session = Session {
            shared: self.shared.clone(),
            out: tx,
            watchers: BTreeMap::new(),
            next_id: 0,
            require_leader,
        };
        self.shared
            .tasks
            .spawn("store/watch/session", session.run(inbound, revisions));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
