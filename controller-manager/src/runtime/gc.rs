//! Drives [`crate::gc`]: one monitor (informer) per deletable resource
//! feeds the graph; the attempt-to-delete and attempt-to-orphan queues are
//! keyed by uid; the collector's questions (the latest object, its owners)
//! are answered with live GETs, as Kubernetes does.

use std::collections::BTreeMap;
use std::sync::Arc;

use ackemu_kube::client::ClientError;
use ackemu_kube::meta::{ObjectMeta, OwnerReference};
use ackemu_kube::registry::ResourceInfo;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::informer::{Change, Informer};
use super::rest::{self, ns_opt};
use super::{Ctx, Next, Queue};
use crate::gc::{
    FINALIZER_FOREGROUND, GarbageCollector, GcAction, GraphEvent, Identity, Latest, Observed,
    OwnerState, Work,
};

const COMPONENT: &str = "garbage-collector-controller";

/// Resources never monitored (as Kubernetes ignores events).
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

fn observed(info: &ResourceInfo, v: &Value) -> Option<Observed> {
    let meta: ObjectMeta = serde_json::from_value(v.get("metadata")?.clone()).ok()?;
    Some(Observed::of(&info.api_version(), &info.kind, &meta))
}

/// The resources the collector watches: stored, listable, watchable,
/// deletable kinds at their preferred version.
pub fn monitored(ctx: &Ctx) -> Vec<ResourceInfo> {
    let reg = ctx.client.registry();
    let mut seen = std::collections::BTreeSet::new();
    reg.iter()
        .filter(|i| {
            i.storage_prefix.is_some() && ["list", "watch", "delete"].iter().all(|v| i.has_verb(v))
        })
        .filter(|i| !IGNORED.contains(&(i.group.as_str(), i.resource.as_str())))
        .filter_map(|i| reg.preferred(&i.group, &i.resource).cloned())
        .filter(|i| seen.insert((i.group.clone(), i.resource.clone())))
        .collect()
}

struct Gc {
    core: Mutex<GarbageCollector>,
    deletes: Queue,
    orphans: Queue,
}

impl Gc {
    fn enqueue(&self, w: Vec<Work>) {
        for w in w {
            match w {
                Work::AttemptToDelete(uid) => self.deletes.add(&uid),
                Work::AttemptToOrphan(uid) => self.orphans.add(&uid),
            }
        }
    }
}

pub fn start(ctx: &Ctx, workers: usize) -> Vec<Arc<Informer<Value>>> {
    let gc = Arc::new(Gc {
        core: Mutex::new(GarbageCollector::new()),
        deletes: Queue::new("garbagecollector-delete", ctx),
        orphans: Queue::new("garbagecollector-orphan", ctx),
    });
    let mut monitors = Vec::new();
    for info in monitored(ctx) {
        let inf: Arc<Informer<Value>> = Informer::new(info.clone());
        let g = gc.clone();
        inf.on(move |c| {
            let ev = match c {
                Change::Add(v) => {
                    observed(&info, v).map(|new| GraphEvent::Upsert { old: None, new })
                }
                Change::Update(o, v) => observed(&info, v).map(|new| GraphEvent::Upsert {
                    old: observed(&info, o),
                    new,
                }),
                Change::Delete(v) => observed(&info, v).map(GraphEvent::Delete),
            };
            if let Some(ev) = ev {
                let w = g.core.lock().observe(&ev);
                g.enqueue(w);
            }
        });
        monitors.push(inf);
    }
    let (c2, g2) = (ctx.clone(), gc.clone());
    gc.deletes.run(workers, move |uid| {
        let (ctx, gc) = (c2.clone(), g2.clone());
        async move { attempt_to_delete(&ctx, &gc, &uid).await }
    });
    let (c3, g3) = (ctx.clone(), gc.clone());
    gc.orphans.run(workers, move |uid| {
        let (ctx, gc) = (c3.clone(), g3.clone());
        async move {
            let actions = gc.core.lock().attempt_to_orphan(&uid);
            perform(&ctx, &gc, actions).await?;
            Ok(Next::Done)
        }
    });
    monitors
}

fn info_for(ctx: &Ctx, api_version: &str, kind: &str) -> Result<ResourceInfo, String> {
    ctx.client
        .registry()
        .by_api_version_kind(api_version, kind)
        .cloned()
        .ok_or_else(|| format!("unable to get REST mapping for {api_version}/{kind}"))
}

async fn get(ctx: &Ctx, id: &Identity) -> Result<Option<Value>, String> {
    let info = info_for(ctx, &id.api_version, &id.kind)?;
    match ctx
        .client
        .request(
            "GET",
            &rest::item_path(&info, ns_opt(&id.namespace), &id.name, ""),
            None,
        )
        .await
    {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(format!("getting {id}: {e}")),
    }
}

async fn owner_state(ctx: &Ctx, r: &OwnerReference, item_ns: &str) -> Result<OwnerState, String> {
    let info = info_for(ctx, &r.api_version, &r.kind)?;
    if info.namespaced() && item_ns.is_empty() {
        return Ok(OwnerState::InvalidNamespacedOwner);
    }
    let ns = if info.namespaced() {
        ns_opt(item_ns)
    } else {
        None
    };
    match ctx
        .client
        .request("GET", &rest::item_path(&info, ns, &r.name, ""), None)
        .await
    {
        Ok(v) => {
            let m = &v["metadata"];
            Ok(OwnerState::Present {
                uid: m["uid"].as_str().unwrap_or("").to_owned(),
                deleting: m["deletionTimestamp"].is_string(),
                foreground: m["finalizers"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == FINALIZER_FOREGROUND)),
            })
        }
        Err(e) if e.is_not_found() => Ok(OwnerState::NotFound),
        Err(e) => Err(format!(
            "getting owner {}/{} {}: {e}",
            r.api_version, r.kind, r.name
        )),
    }
}

async fn attempt_to_delete(ctx: &Ctx, gc: &Gc, uid: &str) -> Result<Next, String> {
    let mut latest: Option<Latest> = None;
    let mut owners: BTreeMap<String, OwnerState> = BTreeMap::new();
    let actions = loop {
        let a = gc
            .core
            .lock()
            .attempt_to_delete(uid, latest.as_ref(), &owners);
        match a.as_slice() {
            [GcAction::FetchItem(id)] => {
                let info = info_for(ctx, &id.api_version, &id.kind)?;
                latest = Some(match get(ctx, id).await? {
                    Some(v) => {
                        Latest::Found(observed(&info, &v).ok_or("decoding the latest object")?)
                    }
                    None => Latest::NotFound,
                });
            }
            [GcAction::FetchOwners(refs)] => {
                let ns = match &latest {
                    Some(Latest::Found(o)) => o.identity.namespace.clone(),
                    _ => String::new(),
                };
                for r in refs {
                    owners.insert(r.uid.clone(), owner_state(ctx, r, &ns).await?);
                }
            }
            _ => break a,
        }
    };
    perform(ctx, gc, actions).await?;
    Ok(Next::Done)
}

async fn patch_meta(ctx: &Ctx, id: &Identity, f: impl Fn(&Value) -> Value) -> Result<(), String> {
    let Some(cur) = get(ctx, id).await? else {
        return Ok(());
    };
    if cur["metadata"]["uid"].as_str() != Some(id.uid.as_str()) {
        return Ok(());
    }
    let info = info_for(ctx, &id.api_version, &id.kind)?;
    let mut patch = json!({"metadata": f(&cur["metadata"])});
    patch["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"].clone();
    match rest::merge_patch(
        &ctx.client,
        &info,
        ns_opt(&id.namespace),
        &id.name,
        "",
        &patch,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(format!("patching {id}: {e}")),
    }
}

async fn perform(ctx: &Ctx, gc: &Gc, actions: Vec<GcAction>) -> Result<(), String> {
    for a in actions {
        match a {
            GcAction::FetchItem(_) | GcAction::FetchOwners(_) => {}
            GcAction::RemoveOwnerRefs { item, owner_uids } => {
                patch_meta(ctx, &item, |m| {
                    let refs: Vec<Value> = m["ownerReferences"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|r| !owner_uids.iter().any(|u| r["uid"] == u.as_str()))
                        .cloned()
                        .collect();
                    json!({"ownerReferences": refs})
                })
                .await?;
            }
            GcAction::UnblockOwnerRefs {
                item,
                owner_references,
            } => {
                patch_meta(ctx, &item, |_| json!({"ownerReferences": owner_references})).await?;
            }
            GcAction::RemoveFinalizer { item, finalizer } => {
                patch_meta(ctx, &item, |m| {
                    let f: Vec<Value> = m["finalizers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter(|x| **x != finalizer.as_str())
                        .cloned()
                        .collect();
                    json!({"finalizers": f})
                })
                .await?;
            }
            GcAction::Delete {
                item,
                resource_version,
                propagation,
            } => {
                let info = info_for(ctx, &item.api_version, &item.kind)?;
                tracing::info!(
                    "garbage collector: deleting {item} with propagation {}",
                    propagation.as_str()
                );
                rest::delete(
                    &ctx.client,
                    &info,
                    ns_opt(&item.namespace),
                    &item.name,
                    rest::Del {
                        uid: Some(&item.uid),
                        resource_version: Some(&resource_version),
                        propagation: Some(propagation.as_str()),
                        grace_seconds: None,
                    },
                )
                .await
                .map_err(|e: ClientError| format!("deleting {item}: {e}"))?;
            }
            GcAction::Enqueue(w) => gc.enqueue(w),
            GcAction::Event(e) => ctx.event(COMPONENT, e),
        }
    }
    Ok(())
}
