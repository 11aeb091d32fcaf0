//! PLEG, the pod lifecycle event generator: relist the runtime every
//! second, diff against the previous listing, turn the differences into
//! events for the pod workers, and refresh the status of each changed pod
//! (`GetPodStatus`, which waits on the runtime's locks). Health is the time
//! since the last relist that got its listing, against a threshold (3m):
//! a relist stuck in `GetPodStatus` stays stuck — that is what makes the
//! node NotReady in S01 and S02.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::{Clock, ClusterInstant};
use parking_lot::Mutex;
use tokio::sync::mpsc;

use super::cri::{Cri, Entry, ListedPod, PodRuntimeStatus};
use super::goduration::go_duration;

/// The kinds of pod lifecycle events (Kubernetes' `PodLifeCycleEventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A container started running.
    ContainerStarted,
    /// A container exited.
    ContainerDied,
    /// A container disappeared from the listing.
    ContainerRemoved,
    /// A container moved to an unknown state.
    ContainerChanged,
}

/// One event for a pod's worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodLifecycleEvent {
    /// Pod uid.
    pub uid: String,
    /// What happened.
    pub kind: EventType,
    /// The container or sandbox id.
    pub id: String,
}

/// Per-pod states of the previous relist: uid → id → state.
pub type Records = BTreeMap<String, BTreeMap<String, Entry>>;

/// The records of a listing.
pub fn records(pods: &[ListedPod]) -> Records {
    pods.iter()
        .map(|p| (p.uid.clone(), p.entries.iter().cloned().collect()))
        .collect()
}

fn transition(
    uid: &str,
    id: &str,
    old: Option<Entry>,
    new: Option<Entry>,
) -> Vec<PodLifecycleEvent> {
    if old == new {
        return Vec::new();
    }
    let ev = |kind| PodLifecycleEvent {
        uid: uid.into(),
        kind,
        id: id.into(),
    };
    match new {
        Some(Entry::Running) => vec![ev(EventType::ContainerStarted)],
        Some(Entry::Exited) => vec![ev(EventType::ContainerDied)],
        Some(Entry::Unknown) => vec![ev(EventType::ContainerChanged)],
        None => match old {
            Some(Entry::Exited) => vec![ev(EventType::ContainerRemoved)],
            _ => vec![
                ev(EventType::ContainerDied),
                ev(EventType::ContainerRemoved),
            ],
        },
    }
}

/// The events between two relists (`generateEvents` over every pod and
/// container seen in either).
pub fn events(old: &Records, new: &Records) -> Vec<PodLifecycleEvent> {
    let uids: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut out = Vec::new();
    for uid in uids {
        let empty = BTreeMap::new();
        let o = old.get(uid).unwrap_or(&empty);
        let n = new.get(uid).unwrap_or(&empty);
        let ids: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
        for id in ids {
            out.extend(transition(uid, id, o.get(id).copied(), n.get(id).copied()));
        }
    }
    out
}

/// PLEG's health: `elapsed` since the last relist that got its listing
/// (`None` before the first) against `threshold`.
pub fn health(elapsed: Option<Duration>, threshold: Duration) -> Result<(), String> {
    match elapsed {
        None => Err("pleg has yet to be successful".into()),
        Some(e) if e > threshold => Err(format!(
            "pleg was last seen active {} ago; threshold is {}",
            go_duration(e),
            go_duration(threshold)
        )),
        Some(_) => Ok(()),
    }
}

/// The last relist time, shared with the health check.
#[derive(Clone, Default)]
pub struct RelistClock {
    last: Arc<Mutex<Option<ClusterInstant>>>,
}

impl RelistClock {
    /// Record a relist that got its listing at `t`.
    pub fn set(&self, t: ClusterInstant) {
        *self.last.lock() = Some(t);
    }
    /// `Healthy()`.
    pub fn healthy(&self, now: ClusterInstant, threshold: Duration) -> Result<(), String> {
        let last = *self.last.lock();
        health(last.map(|t| now.saturating_duration_since(t)), threshold)
    }
}

/// Status of each pod as PLEG last refreshed it.
pub type Cache = Arc<Mutex<BTreeMap<String, PodRuntimeStatus>>>;

/// The generic PLEG.
pub struct Pleg {
    /// Runtime.
    pub cri: Cri,
    /// Cluster time.
    pub clock: Clock,
    /// Relist period (1s).
    pub period: Duration,
    /// Last relist time.
    pub relist: RelistClock,
    /// Status cache.
    pub cache: Cache,
    /// Events to the sync loop (bounded; a full channel drops, as Kubernetes
    /// does, with a log line — workers resync periodically anyway).
    pub events: mpsc::Sender<PodLifecycleEvent>,
}

impl Pleg {
    /// Relist forever: one relist, then `period`, like `wait.Until`.
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        let mut records: Records = Records::new();
        let mut reinspect: HashSet<String> = HashSet::new();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.relist(&mut records, &mut reinspect) => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.clock.sleep(self.period) => {}
            }
        }
    }

    async fn relist(&self, prev: &mut Records, reinspect: &mut HashSet<String>) {
        let timestamp = self.clock.now();
        let pods = match self.cri.get_pods().await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("GenericPLEG: Unable to retrieve pods: {e}");
                return;
            }
        };
        self.relist.set(timestamp);
        let new = records(&pods);
        let evs = events(prev, &new);
        let names: BTreeMap<&str, &str> = pods
            .iter()
            .map(|p| (p.uid.as_str(), p.name.as_str()))
            .collect();
        let mut changed: Vec<String> = evs.iter().map(|e| e.uid.clone()).collect();
        changed.extend(reinspect.drain());
        changed.sort();
        changed.dedup();
        for uid in changed {
            let (ns, name) = names
                .get(uid.as_str())
                .and_then(|n| n.split_once('/'))
                .unwrap_or(("", ""));
            if !new.contains_key(&uid) {
                self.cache.lock().remove(&uid);
                continue;
            }
            match self.cri.get_pod_status(&uid, name, ns).await {
                Ok(st) => {
                    self.cache.lock().insert(uid.clone(), st);
                }
                Err(e) => {
                    tracing::error!(
                        "PLEG: Ignoring events for pod {name}/{ns}: failed to get status: {e}"
                    );
                    reinspect.insert(uid.clone());
                }
            }
        }
        for ev in evs {
            if self.events.try_send(ev).is_err() {
                tracing::error!("event channel is full, discard this relist() cycle event");
            }
        }
        *prev = new;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recs(v: &[(&str, &[(&str, Entry)])]) -> Records {
        v.iter()
            .map(|(uid, es)| {
                (
                    uid.to_string(),
                    es.iter().map(|(id, e)| (id.to_string(), *e)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn events_follow_kubernetes_generate_events() {
        use Entry::*;
        use EventType::*;
        type Case<'a> = (Records, Records, Vec<(&'a str, EventType, &'a str)>);
        let cases: Vec<Case<'_>> = vec![
            (recs(&[]), recs(&[]), vec![]),
            (
                recs(&[]),
                recs(&[("p", &[("s", Running), ("c", Running)])]),
                vec![("p", ContainerStarted, "c"), ("p", ContainerStarted, "s")],
            ),
            (
                recs(&[("p", &[("c", Running)])]),
                recs(&[("p", &[("c", Running)])]),
                vec![],
            ),
            (
                recs(&[("p", &[("c", Running)])]),
                recs(&[("p", &[("c", Exited)])]),
                vec![("p", ContainerDied, "c")],
            ),
            (
                recs(&[("p", &[("c", Exited)])]),
                recs(&[("p", &[])]),
                vec![("p", ContainerRemoved, "c")],
            ),
            (
                recs(&[("p", &[("c", Running)])]),
                recs(&[]),
                vec![("p", ContainerDied, "c"), ("p", ContainerRemoved, "c")],
            ),
            (
                recs(&[("p", &[("c", Running)])]),
                recs(&[("p", &[("c", Unknown)])]),
                vec![("p", ContainerChanged, "c")],
            ),
        ];
        for (old, new, want) in cases {
            let got: Vec<(String, EventType, String)> = events(&old, &new)
                .into_iter()
                .map(|e| (e.uid, e.kind, e.id))
                .collect();
            let want: Vec<(String, EventType, String)> = want
                .into_iter()
                .map(|(u, k, i)| (u.to_string(), k, i.to_string()))
                .collect();
            assert_eq!(got, want, "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn health_compares_the_last_relist_with_the_threshold() {
        let t = Duration::from_secs(180);
        assert_eq!(health(None, t), Err("pleg has yet to be successful".into()));
        assert_eq!(health(Some(Duration::from_secs(1)), t), Ok(()));
        assert_eq!(health(Some(t), t), Ok(()));
        assert_eq!(
            health(Some(Duration::from_millis(180_100)), t),
            Err("pleg was last seen active 3m0.1s ago; threshold is 3m0s".into())
        );
    }
}
