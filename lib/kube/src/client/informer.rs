//! A reflector: lists a resource, then watches it from the list's
//! resourceVersion (with bookmarks), keeping a local store and telling the
//! owner about every change. A 410 (the watch window passed) or a broken
//! watch leads to a fresh list, and objects that vanished meanwhile are
//! reported as deleted — level-triggered, like client-go's reflector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use parking_lot::RwLock;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

use super::{ClientError, DynamicApi, ListParams};

/// The store key of an object: `namespace/name`, or `name`.
pub fn key_of(obj: &Value) -> String {
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    match obj["metadata"]["namespace"].as_str() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_owned(),
    }
}

/// A change the reflector saw.
#[derive(Clone, Debug)]
pub enum Notification {
    /// Added or modified (the new object).
    Upsert(Value),
    /// Deleted (the last known object).
    Delete(Value),
}

/// Objects by key.
pub type Store = Arc<RwLock<BTreeMap<String, Value>>>;

pub struct Reflector {
    pub store: Store,
    /// Becomes true after the first complete list.
    pub synced: watch::Receiver<bool>,
    pub notifications: mpsc::Receiver<Notification>,
}

/// Tunables of a reflector.
#[derive(Clone, Debug)]
pub struct ReflectorConfig {
    pub list_page: i64,
    /// Notifications buffered before the reflector waits for its owner.
    pub buffer: usize,
    /// Real time between attempts after a failure.
    pub backoff: Duration,
    /// Server-side watch timeout, after which the watch is renewed.
    pub watch_timeout_seconds: u64,
}

impl Default for ReflectorConfig {
    fn default() -> Self {
        Self {
            list_page: 500,
            buffer: 1024,
            backoff: Duration::from_secs(1),
            watch_timeout_seconds: 300,
        }
    }
}

/// Starts a reflector for `api` (optionally narrowed by selectors in `params`).
pub fn start(
    api: DynamicApi,
    params: ListParams,
    cfg: ReflectorConfig,
    clock: Clock,
    tasks: &Tasks,
) -> Reflector {
    let store: Store = Arc::new(RwLock::new(BTreeMap::new()));
    let (synced_tx, synced) = watch::channel(false);
    let (tx, notifications) = mpsc::channel(cfg.buffer.max(1));
    let s = store.clone();
    let token = tasks.token();
    tasks.spawn(format!("reflector {}", api.info.resource), async move {
        tokio::select! {
            () = run(api, params, cfg, clock, s, synced_tx, tx) => {}
            () = token.cancelled() => {}
        }
    });
    Reflector {
        store,
        synced,
        notifications,
    }
}

async fn list_all(
    api: &DynamicApi,
    params: &ListParams,
    page: i64,
) -> Result<(Vec<Value>, String), ClientError> {
    let mut p = ListParams {
        limit: Some(page),
        resource_version: None,
        continue_token: None,
        ..params.clone()
    };
    let mut items = Vec::new();
    loop {
        let v = api.list(&p).await?;
        items.extend(v["items"].as_array().cloned().unwrap_or_default());
        match v["metadata"]["continue"].as_str().filter(|c| !c.is_empty()) {
            Some(c) => p.continue_token = Some(c.to_owned()),
            None => {
                return Ok((
                    items,
                    v["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                ));
            }
        }
    }
}

async fn run(
    api: DynamicApi,
    params: ListParams,
    cfg: ReflectorConfig,
    clock: Clock,
    store: Store,
    synced: watch::Sender<bool>,
    tx: mpsc::Sender<Notification>,
) {
    loop {
        // List, then reconcile the store with it.
        let (items, mut rv) = match list_all(&api, &params, cfg.list_page).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("reflector {}: list failed: {e}", api.info.resource);
                clock.sleep(clock.to_cluster(cfg.backoff)).await;
                continue;
            }
        };
        let fresh: BTreeMap<String, Value> = items.into_iter().map(|o| (key_of(&o), o)).collect();
        let gone: Vec<Value> = {
            let mut s = store.write();
            let gone = s
                .iter()
                .filter(|(k, _)| !fresh.contains_key(*k))
                .map(|(_, v)| v.clone())
                .collect();
            *s = fresh.clone();
            gone
        };
        for g in gone {
            if tx.send(Notification::Delete(g)).await.is_err() {
                return;
            }
        }
        for o in fresh.into_values() {
            if tx.send(Notification::Upsert(o)).await.is_err() {
                return;
            }
        }
        synced.send_replace(true);
        // Watch until the window passes (410) or the watch breaks.
        loop {
            let wp = ListParams {
                resource_version: Some(rv.clone()),
                timeout_seconds: Some(cfg.watch_timeout_seconds),
                bookmarks: true,
                limit: None,
                continue_token: None,
                ..params.clone()
            };
            let mut events = match api.watch(&wp, cfg.buffer).await {
                Ok(e) => e,
                Err(e) if e.is_gone() => break,
                Err(e) => {
                    tracing::warn!("reflector {}: watch failed: {e}", api.info.resource);
                    clock.sleep(clock.to_cluster(cfg.backoff)).await;
                    break;
                }
            };
            let mut relist = false;
            while let Some(ev) = events.recv().await {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(e) => {
                        relist = e.is_gone();
                        break;
                    }
                };
                if let Some(r) = ev.object["metadata"]["resourceVersion"].as_str() {
                    rv = r.to_owned();
                }
                let n = match ev.kind.as_str() {
                    "ADDED" | "MODIFIED" => {
                        store.write().insert(key_of(&ev.object), ev.object.clone());
                        Notification::Upsert(ev.object)
                    }
                    "DELETED" => {
                        store.write().remove(&key_of(&ev.object));
                        Notification::Delete(ev.object)
                    }
                    _ => continue,
                };
                if tx.send(n).await.is_err() {
                    return;
                }
            }
            if relist {
                break;
            }
        }
    }
}
