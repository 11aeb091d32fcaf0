//! The watch cache: one per stored resource. It lists the resource from the
//! store, then follows a store watch, keeping the current objects and a
//! bounded window of recent events, so LIST and WATCH do not hit the store
//! for every client. A watch from a resourceVersion older than the window
//! gets 410 `too old resource version`, as with kube-apiserver's cache.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_proto::mvccpb::{KeyValue, event::EventType};
use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::etcd::{Etcd, EtcdError, ProgressRequester, range_end};
use crate::status::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, with the object after it (for deletions, the last state with
/// the deletion's resourceVersion) and before it.
#[derive(Clone, Debug)]
pub struct CacheEvent {
    pub kind: EventKind,
    pub key: Arc<str>,
    pub obj: Arc<Value>,
    pub prev: Option<Arc<Value>>,
    pub rv: i64,
}

/// Sizes and timings of a cache.
#[derive(Clone, Debug)]
pub struct CacheConfig {
    /// Events kept for watches from an older resourceVersion.
    pub window_events: usize,
    /// Buffered events per watcher before it is closed as too slow.
    pub watcher_buffer: usize,
    /// Real time to wait before re-listing after a store failure.
    pub retry_backoff: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            window_events: 1000,
            watcher_buffer: 1000,
            retry_backoff: Duration::from_secs(1),
        }
    }
}

struct Inner {
    objects: BTreeMap<Arc<str>, Arc<Value>>,
    /// The revision the cache reflects.
    rev: i64,
    /// Events with rv in (oldest, rev] are in `events`.
    oldest: i64,
    events: VecDeque<CacheEvent>,
    watchers: Vec<mpsc::Sender<CacheEvent>>,
    ready: bool,
}

pub struct WatchCache {
    prefix: String,
    inner: Mutex<Inner>,
    progress: tokio::sync::watch::Sender<i64>,
    progress_req: Mutex<Option<ProgressRequester>>,
    cfg: CacheConfig,
}

/// Decodes a stored value and stamps its resourceVersion.
pub fn decode(kv: &KeyValue) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(&kv.value).ok()?;
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "resourceVersion".to_owned(),
            Value::String(kv.mod_revision.to_string()),
        );
    }
    Some(v)
}

fn with_rv(v: &Value, rv: i64) -> Value {
    let mut v = v.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".to_owned(), Value::String(rv.to_string()));
    }
    v
}

impl WatchCache {
    /// Starts a cache for every key under `prefix`.
    pub fn start(
        prefix: String,
        etcd: Etcd,
        tasks: &Tasks,
        clock: Clock,
        cfg: CacheConfig,
    ) -> Arc<Self> {
        let (progress, _) = tokio::sync::watch::channel(0);
        let cache = Arc::new(WatchCache {
            prefix: prefix.clone(),
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                rev: 0,
                oldest: 0,
                events: VecDeque::new(),
                watchers: Vec::new(),
                ready: false,
            }),
            progress,
            progress_req: Mutex::new(None),
            cfg,
        });
        let c = cache.clone();
        let token = tasks.token();
        tasks.spawn(format!("watch-cache {prefix}"), async move {
            tokio::select! {
                () = c.run(etcd, clock) => {}
                () = token.cancelled() => {}
            }
        });
        cache
    }

    async fn run(&self, etcd: Etcd, clock: Clock) {
        // Whether the cache holds a listing its watch can continue from.
        let mut listed = false;
        loop {
            if !listed {
                match self.relist(&etcd).await {
                    Ok(()) => listed = true,
                    Err(e) => tracing::warn!("watch cache {}: listing: {e}", self.prefix),
                }
            }
            if listed {
                let from = self.inner.lock().rev + 1;
                match self.watch_from(&etcd, from).await {
                    // History from `from` is gone: only a fresh listing can
                    // tell what the cache missed.
                    Err(EtcdError::Compacted(at)) => {
                        tracing::warn!(
                            "watch cache {}: revision {from} compacted (at {at}); re-listing",
                            self.prefix
                        );
                        listed = false;
                    }
                    // A store member went away or the stream broke: watch
                    // again from the next revision through any member, so
                    // watchers see no gap (etcd clients do the same).
                    Err(e) => tracing::warn!(
                        "watch cache {}: {e}; resuming the watch from revision {from}",
                        self.prefix
                    ),
                    Ok(()) => {}
                }
            }
            clock.sleep(clock.to_cluster(self.cfg.retry_backoff)).await;
        }
    }

    /// Lists every object under the prefix and makes that the cache's
    /// state, closing the watchers (they cannot be told what changed).
    async fn relist(&self, etcd: &Etcd) -> Result<(), EtcdError> {
        let end = range_end(self.prefix.as_bytes());
        let mut start = self.prefix.as_bytes().to_vec();
        let mut objects = BTreeMap::new();
        let mut rev = 0;
        loop {
            let page = etcd.range(&start, &end, rev, 1000).await?;
            rev = page.revision;
            for kv in &page.kvs {
                if let (Ok(k), Some(v)) = (std::str::from_utf8(&kv.key), decode(kv)) {
                    objects.insert(Arc::from(k), Arc::new(v));
                }
            }
            match (page.more, page.kvs.last()) {
                (true, Some(last)) => {
                    start = last.key.clone();
                    start.push(0);
                }
                _ => break,
            }
        }
        {
            let mut inner = self.inner.lock();
            inner.objects = objects;
            inner.rev = rev;
            inner.oldest = rev;
            inner.events.clear();
            // Watchers cannot be told what changed while we were away: close
            // them so their clients re-list, as kube-apiserver does.
            inner.watchers.clear();
            inner.ready = true;
        }
        self.progress.send_replace(rev);
        Ok(())
    }

    /// Applies the store's events from revision `from` on until the watch
    /// fails.
    async fn watch_from(&self, etcd: &Etcd, from: i64) -> Result<(), EtcdError> {
        let handle = etcd.watch_prefix(&self.prefix, from).await?;
        *self.progress_req.lock() = Some(handle.progress_requester());
        let mut rx = handle.rx;
        while let Some(batch) = rx.recv().await {
            let batch = batch?;
            let mut inner = self.inner.lock();
            for ev in batch.events {
                let Ok(key) = std::str::from_utf8(&ev.kv.key) else {
                    continue;
                };
                let key: Arc<str> = Arc::from(key);
                let rv = ev.kv.mod_revision;
                let prev = inner.objects.get(&key).cloned();
                let event = match ev.kind {
                    EventType::Put => {
                        let Some(obj) = decode(&ev.kv) else { continue };
                        let obj = Arc::new(obj);
                        inner.objects.insert(key.clone(), obj.clone());
                        let kind = if prev.is_some() {
                            EventKind::Modified
                        } else {
                            EventKind::Added
                        };
                        CacheEvent {
                            kind,
                            key,
                            obj,
                            prev,
                            rv,
                        }
                    }
                    EventType::Delete => {
                        inner.objects.remove(&key);
                        let last = match (&prev, &ev.prev_kv) {
                            (Some(p), _) => with_rv(p, rv),
                            (None, Some(pkv)) => {
                                decode(pkv).map(|v| with_rv(&v, rv)).unwrap_or(Value::Null)
                            }
                            (None, None) => Value::Null,
                        };
                        CacheEvent {
                            kind: EventKind::Deleted,
                            key,
                            obj: Arc::new(last),
                            prev,
                            rv,
                        }
                    }
                };
                inner.events.push_back(event.clone());
                while inner.events.len() > self.cfg.window_events {
                    if let Some(old) = inner.events.pop_front() {
                        inner.oldest = old.rv;
                    }
                }
                inner.watchers.retain(|w| w.try_send(event.clone()).is_ok());
                inner.rev = inner.rev.max(rv);
            }
            inner.rev = inner.rev.max(batch.revision);
            let rev = inner.rev;
            drop(inner);
            self.progress.send_replace(rev);
        }
        Err(EtcdError::Unavailable("store watch ended".to_owned()))
    }

    /// The revision the cache reflects.
    pub fn revision(&self) -> i64 {
        *self.progress.borrow()
    }

    /// A receiver that sees the cache's revision advance.
    pub fn progress(&self) -> tokio::sync::watch::Receiver<i64> {
        self.progress.subscribe()
    }

    /// Waits until the cache reflects at least `rev` (bounded by `timeout`,
    /// measured on the tokio clock of the caller's runtime via `clock`).
    pub async fn wait_for(
        &self,
        rev: i64,
        clock: &Clock,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let mut rx = self.progress.subscribe();
        let ready = |r: &i64| *r >= rev && *r > 0;
        if !ready(&rx.borrow()) {
            // The store's revision moves with writes to every resource; ask
            // the watch for a progress notification to learn we are current.
            if let Some(req) = self.progress_req.lock().clone() {
                req.request();
            }
        }
        // `timeout` is real time (how long a client may wait), whatever the scale.
        match clock
            .timeout(clock.to_cluster(timeout), rx.wait_for(ready))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(ApiError::unavailable("watch cache stopped")),
            Err(_) => Err(ApiError::timeout(format!(
                "Too large resource version: {rev}, current: {}",
                self.revision()
            ))),
        }
    }

    /// The current objects with keys starting with `prefix`, and the
    /// revision they reflect.
    pub fn snapshot(&self, prefix: &str) -> (Vec<Arc<Value>>, i64) {
        let inner = self.inner.lock();
        let items = inner
            .objects
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rev)
    }

    /// Registers a watcher from `from_rv` (0: synthetic ADDED events for
    /// every current object first). Returns the events to send before the
    /// live ones, and the live channel.
    pub fn watch(
        &self,
        from_rv: i64,
    ) -> Result<(Vec<CacheEvent>, mpsc::Receiver<CacheEvent>), ApiError> {
        let mut inner = self.inner.lock();
        if !inner.ready {
            return Err(ApiError::unavailable("watch cache is not ready"));
        }
        let initial: Vec<CacheEvent> = if from_rv == 0 {
            let rv = inner.rev;
            inner
                .objects
                .iter()
                .map(|(k, v)| CacheEvent {
                    kind: EventKind::Added,
                    key: k.clone(),
                    obj: v.clone(),
                    prev: None,
                    rv,
                })
                .collect()
        } else if from_rv < inner.oldest {
            return Err(ApiError::too_old(from_rv, inner.oldest + 1));
        } else {
            inner
                .events
                .iter()
                .filter(|e| e.rv > from_rv)
                .cloned()
                .collect()
        };
        let (tx, rx) = mpsc::channel(self.cfg.watcher_buffer);
        inner.watchers.push(tx);
        Ok((initial, rx))
    }
}
