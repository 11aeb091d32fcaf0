//! Shared, typed informers: one reflector (lib/kube) per resource, a typed
//! cache kept by a dispatcher task, and handlers that turn changes into
//! queue keys. Handlers run on the dispatcher task and must be quick (add
//! a key, observe an expectation); controllers read the cache, never the
//! event payload.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ackemu_kube::client::informer::{self, Notification, ReflectorConfig};
use ackemu_kube::client::{Client, ListParams};
use ackemu_kube::registry::ResourceInfo;
use parking_lot::{Mutex, RwLock};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::watch;

use super::Ctx;

/// A change the dispatcher saw.
pub enum Change<'a, K> {
    Add(&'a K),
    Update(&'a K, &'a K),
    Delete(&'a K),
}

type Handler<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;

/// The typed cache and handlers of one resource.
pub struct Informer<K> {
    pub info: ResourceInfo,
    store: RwLock<BTreeMap<String, Arc<K>>>,
    handlers: Mutex<Vec<Handler<K>>>,
    synced_tx: watch::Sender<bool>,
    synced: watch::Receiver<bool>,
    wanted: AtomicBool,
}

impl<K> Informer<K>
where
    K: DeserializeOwned + Send + Sync + 'static,
{
    pub fn new(info: ResourceInfo) -> Arc<Informer<K>> {
        let (synced_tx, synced) = watch::channel(false);
        Arc::new(Informer {
            info,
            store: RwLock::new(BTreeMap::new()),
            handlers: Mutex::new(Vec::new()),
            synced_tx,
            synced,
            wanted: AtomicBool::new(false),
        })
    }

    /// Registers a handler; call before [`Informer::start`].
    pub fn on(&self, f: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.require();
        self.handlers.lock().push(Box::new(f));
    }

    /// Marks the informer as used, so it is started.
    pub fn require(&self) {
        self.wanted.store(true, Ordering::Relaxed);
    }

    pub fn wanted(&self) -> bool {
        self.wanted.load(Ordering::Relaxed)
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.store.read().get(key).cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.store.read().values().cloned().collect()
    }

    /// Objects of one namespace (keys `ns/name`).
    pub fn list_ns(&self, ns: &str) -> Vec<Arc<K>> {
        let prefix = format!("{ns}/");
        self.store
            .read()
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(_, v)| v.clone())
            .collect()
    }

    pub fn keys(&self) -> Vec<String> {
        self.store.read().keys().cloned().collect()
    }

    pub async fn wait_synced(&self) {
        let mut rx = self.synced.clone();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }

    fn apply(&self, n: Notification) {
        let (key, obj, delete) = match n {
            Notification::Upsert(v) => (informer::key_of(&v), v, false),
            Notification::Delete(v) => (informer::key_of(&v), v, true),
        };
        let typed: K = match serde_json::from_value::<K>(strip_type(obj)) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!("informer {}: cannot decode {key}: {e}", self.info.resource);
                return;
            }
        };
        let typed = Arc::new(typed);
        let old = if delete {
            self.store.write().remove(&key)
        } else {
            self.store.write().insert(key, typed.clone())
        };
        let handlers = self.handlers.lock();
        let change = match (&old, delete) {
            (_, true) => Change::Delete(old.as_deref().unwrap_or(typed.as_ref())),
            (Some(o), false) => Change::Update(o.as_ref(), typed.as_ref()),
            (None, false) => Change::Add(typed.as_ref()),
        };
        for h in handlers.iter() {
            h(&change);
        }
    }

    /// Starts the reflector and the dispatcher.
    pub fn start(self: &Arc<Self>, client: &Client, ctx: &Ctx) {
        let api = client.resource(&self.info, None);
        let mut r = informer::start(
            api,
            ListParams::default(),
            ReflectorConfig::default(),
            ctx.clock.clone(),
            &ctx.tasks,
        );
        let me = self.clone();
        let token = ctx.tasks.token();
        ctx.tasks
            .spawn(format!("informer {}", self.info.resource), async move {
                loop {
                    tokio::select! {
                        n = r.notifications.recv() => match n {
                            Some(n) => me.apply(n),
                            None => return,
                        },
                        res = r.synced.changed() => if res.is_err() { return },
                        () = token.cancelled() => return,
                    }
                    if !*me.synced.borrow() && *r.synced.borrow() && r.notifications.is_empty() {
                        me.synced_tx.send_replace(true);
                    }
                }
            });
    }
}

/// `apiVersion` and `kind` are not fields of k8s-openapi structs' serde
/// forms only for some types; drop them so every kind decodes.
fn strip_type(mut v: Value) -> Value {
    if let Some(o) = v.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
    }
    v
}
