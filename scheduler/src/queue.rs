//! The scheduling queue (Kubernetes `backend/queue/scheduling_queue.go`),
//! pure and driven by cluster time passed in as `now`:
//!
//! - **activeQ**: pods ready to be tried, highest priority first, then the
//!   one waiting longest;
//! - **backoffQ**: pods that failed and wait out an exponential backoff
//!   (1 s doubling to 10 s by attempt) before they are tried again;
//! - **unschedulable pods**: pods no node fits; they stay parked until a
//!   cluster event that could help one of the plugins that rejected them
//!   (a node added, a node's labels or taints or allocatable changed, an
//!   assigned pod deleted), or until they have waited 5 minutes.
//!
//! A pod popped for a cycle is *in flight* until the caller reports the
//! outcome: [`SchedulingQueue::done`] after binding, or
//! [`SchedulingQueue::add_unschedulable_if_not_present`] after a failure.
//! If a relevant event arrived while it was in flight, the failure sends it
//! to backoffQ instead of parking it, so the event is not lost.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::ClusterInstant;
use ackemu_kube::api::core::v1::Node;

use crate::plugins::names;
use crate::snapshot::PodInfo;

/// Queue settings; the defaults are kube-scheduler's.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// How long a pod may stay parked without an event (`podMaxInUnschedulablePodsDuration`).
    pub max_in_unschedulable: Duration,
    /// The most pods the queue holds (all sub-queues and in-flight pods).
    pub capacity: usize,
    /// Pop the earliest backoff pod when activeQ is empty (1.33's
    /// `SchedulerPopFromBackoffQ`, on by default).
    pub pop_from_backoff: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_in_unschedulable: Duration::from_secs(300),
            capacity: 100_000,
            pop_from_backoff: true,
        }
    }
}

/// What changed on a node, for requeueing (`nodeSchedulingPropertiesChange`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeChange {
    pub allocatable: bool,
    pub labels: bool,
    /// Taints or `spec.unschedulable`.
    pub taints: bool,
    pub conditions: bool,
    pub annotations: bool,
}

/// A cluster change that may make parked pods schedulable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate(NodeChange),
    NodeDelete,
    AssignedPodAdd,
    AssignedPodUpdate,
    AssignedPodDelete,
    /// Pods parked longer than `max_in_unschedulable`.
    UnschedulableTimeout,
}

impl ClusterEvent {
    /// The label Kubernetes logs and counts the event under.
    pub fn label(&self) -> &'static str {
        match self {
            ClusterEvent::NodeAdd => "NodeAdd",
            ClusterEvent::NodeUpdate(c) if c.allocatable => "NodeAllocatableChange",
            ClusterEvent::NodeUpdate(c) if c.labels => "NodeLabelChange",
            ClusterEvent::NodeUpdate(c) if c.taints => "NodeTaintChange",
            ClusterEvent::NodeUpdate(c) if c.conditions => "NodeConditionChange",
            ClusterEvent::NodeUpdate(_) => "NodeAnnotationChange",
            ClusterEvent::NodeDelete => "NodeDelete",
            ClusterEvent::AssignedPodAdd => "AssignedPodAdd",
            ClusterEvent::AssignedPodUpdate => "AssignedPodUpdate",
            ClusterEvent::AssignedPodDelete => "AssignedPodDelete",
            ClusterEvent::UnschedulableTimeout => "UnschedulableTimeout",
        }
    }
}

/// The event a node update is, or `None` when nothing the scheduler looks
/// at changed (a heartbeat).
pub fn node_update_event(old: &Node, new: &Node) -> Option<ClusterEvent> {
    let alloc = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    let taints = |n: &Node| {
        let s = n.spec.as_ref();
        (
            s.and_then(|s| s.taints.clone()).unwrap_or_default(),
            s.and_then(|s| s.unschedulable).unwrap_or(false),
        )
    };
    let conditions = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| (c.type_.clone(), c.status.clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let change = NodeChange {
        allocatable: alloc(old) != alloc(new),
        labels: old.metadata.labels != new.metadata.labels,
        taints: taints(old) != taints(new),
        conditions: conditions(old) != conditions(new),
        annotations: old.metadata.annotations != new.metadata.annotations,
    };
    (change != NodeChange::default()).then_some(ClusterEvent::NodeUpdate(change))
}

/// Whether an event can help a pod a plugin rejected (the plugins'
/// `EventsToRegister`). Unknown plugins are interested in everything.
pub fn plugin_interested(plugin: &str, event: &ClusterEvent) -> bool {
    use ClusterEvent::*;
    match event {
        UnschedulableTimeout => return true,
        NodeAdd => return true,
        _ => {}
    }
    let node_update = |f: fn(&NodeChange) -> bool| matches!(event, NodeUpdate(c) if f(c));
    match plugin {
        names::NODE_RESOURCES_FIT => {
            node_update(|c| c.allocatable) || matches!(event, AssignedPodDelete | AssignedPodUpdate)
        }
        names::NODE_PORTS => matches!(event, AssignedPodDelete),
        names::NODE_NAME => false,
        names::NODE_UNSCHEDULABLE | names::TAINT_TOLERATION => node_update(|c| c.taints),
        names::NODE_AFFINITY => node_update(|c| c.labels),
        _ => true,
    }
}

/// A pod in the queue with its scheduling history.
#[derive(Clone, Debug)]
pub struct QueuedPodInfo {
    pub pod: Arc<PodInfo>,
    /// When the pod last entered a queue.
    pub timestamp: ClusterInstant,
    /// When it was first popped.
    pub initial_attempt: Option<ClusterInstant>,
    pub attempts: u32,
    /// The plugins that rejected it in its last attempt.
    pub unschedulable_plugins: BTreeSet<&'static str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Location {
    Active,
    Backoff,
    Unschedulable,
    InFlight,
}

#[derive(Clone, Debug)]
struct Entry {
    info: QueuedPodInfo,
    location: Location,
    /// Identifies the live heap item (older ones are stale).
    seq: u64,
    /// The scheduling cycle that popped it.
    popped_cycle: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ActiveItem {
    priority: i32,
    timestamp: ClusterInstant,
    seq: u64,
    key: String,
}

impl Ord for ActiveItem {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority, then earlier timestamp, then earlier seq.
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.timestamp.cmp(&self.timestamp))
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// How an attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No node fits; these plugins rejected nodes.
    Unschedulable(BTreeSet<&'static str>),
    /// A plugin or the cache failed.
    Error,
}

/// The queue refused a pod.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("scheduling queue is full ({capacity} pods), cannot add {key}")]
    Full { capacity: usize, key: String },
    #[error("pod {0} is not in flight, so its attempt cannot be reported")]
    NotInFlight(String),
}

/// Sizes of the sub-queues (the `scheduler_pending_pods` gauge).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueLens {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
    pub in_flight: usize,
}

#[derive(Clone, Debug, Default)]
pub struct SchedulingQueue {
    config: QueueConfig,
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveItem>,
    backoff: BinaryHeap<Reverse<(ClusterInstant, u64, String)>>,
    seq: u64,
    scheduling_cycle: u64,
    move_request_cycle: u64,
}

impl SchedulingQueue {
    pub fn new(config: QueueConfig) -> SchedulingQueue {
        SchedulingQueue {
            config,
            ..SchedulingQueue::default()
        }
    }

    fn backoff_duration(&self, attempts: u32) -> Duration {
        if attempts == 0 {
            return Duration::ZERO;
        }
        let mut d = self.config.initial_backoff;
        for _ in 1..attempts {
            if d > self.config.max_backoff.saturating_sub(d) {
                return self.config.max_backoff;
            }
            d += d;
        }
        d.min(self.config.max_backoff)
    }

    /// When a pod's backoff ends.
    pub fn backoff_expiry(&self, info: &QueuedPodInfo) -> ClusterInstant {
        info.timestamp + self.backoff_duration(info.attempts)
    }

    fn push_active(&mut self, key: &str) {
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.entries.get_mut(key) else {
            return;
        };
        e.location = Location::Active;
        e.seq = seq;
        self.active.push(ActiveItem {
            priority: e.info.pod.priority,
            timestamp: e.info.timestamp,
            seq,
            key: key.to_string(),
        });
    }

    fn push_backoff(&mut self, key: &str) {
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.entries.get(key) else {
            return;
        };
        let expiry = self.backoff_expiry(&e.info);
        if let Some(e) = self.entries.get_mut(key) {
            e.location = Location::Backoff;
            e.seq = seq;
        }
        self.backoff.push(Reverse((expiry, seq, key.to_string())));
    }

    /// Active if its backoff is over, else backoffQ.
    fn requeue(&mut self, key: &str, now: ClusterInstant) {
        let backing_off = self
            .entries
            .get(key)
            .is_some_and(|e| now < self.backoff_expiry(&e.info));
        if backing_off {
            self.push_backoff(key);
        } else {
            self.push_active(key);
        }
    }

    /// A new pending pod (the informer's add); an update when known.
    pub fn add(&mut self, pod: Arc<PodInfo>, now: ClusterInstant) -> Result<(), QueueError> {
        if self.entries.contains_key(&pod.key) {
            self.update(pod, now);
            return Ok(());
        }
        if self.entries.len() >= self.config.capacity {
            return Err(QueueError::Full {
                capacity: self.config.capacity,
                key: pod.key.clone(),
            });
        }
        let key = pod.key.clone();
        self.entries.insert(
            key.clone(),
            Entry {
                info: QueuedPodInfo {
                    pod,
                    timestamp: now,
                    initial_attempt: None,
                    attempts: 0,
                    unschedulable_plugins: BTreeSet::new(),
                },
                location: Location::Active,
                seq: 0,
                popped_cycle: 0,
            },
        );
        self.push_active(&key);
        Ok(())
    }

    /// A pending pod changed. A parked pod is given another chance (after
    /// its backoff); elsewhere only the object is replaced.
    pub fn update(&mut self, pod: Arc<PodInfo>, now: ClusterInstant) {
        let key = pod.key.clone();
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        let priority_changed = e.info.pod.priority != pod.priority;
        e.info.pod = pod;
        match e.location {
            Location::Unschedulable => self.requeue(&key, now),
            Location::Active if priority_changed => self.push_active(&key),
            _ => {}
        }
    }

    /// The pod was deleted, or bound by someone else.
    pub fn delete(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Moves every pod whose backoff has ended to activeQ.
    pub fn flush_backoff_completed(&mut self, now: ClusterInstant) {
        while let Some(Reverse((expiry, seq, key))) = self.backoff.peek().cloned() {
            if !self.is_live(&key, seq, Location::Backoff) {
                self.backoff.pop();
                continue;
            }
            if expiry > now {
                break;
            }
            self.backoff.pop();
            self.push_active(&key);
        }
    }

    /// Gives pods parked longer than `max_in_unschedulable` another try.
    pub fn flush_unschedulable_leftover(&mut self, now: ClusterInstant) {
        let max = self.config.max_in_unschedulable;
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.location == Location::Unschedulable
                    && now.saturating_duration_since(e.info.timestamp) > max
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.requeue(&k, now);
        }
    }

    fn is_live(&self, key: &str, seq: u64, loc: Location) -> bool {
        self.entries
            .get(key)
            .is_some_and(|e| e.seq == seq && e.location == loc)
    }

    /// The next pod to schedule, now in flight; `None` when nothing is ready.
    pub fn pop(&mut self, now: ClusterInstant) -> Option<QueuedPodInfo> {
        self.flush_backoff_completed(now);
        let key = loop {
            match self.active.pop() {
                Some(item) if self.is_live(&item.key, item.seq, Location::Active) => {
                    break Some(item.key);
                }
                Some(_) => continue,
                None => break None,
            }
        };
        let key = match key {
            Some(k) => k,
            None if self.config.pop_from_backoff => loop {
                match self.backoff.pop() {
                    Some(Reverse((_, seq, k))) if self.is_live(&k, seq, Location::Backoff) => {
                        break k;
                    }
                    Some(_) => continue,
                    None => return None,
                }
            },
            None => return None,
        };
        self.scheduling_cycle += 1;
        let cycle = self.scheduling_cycle;
        let e = self.entries.get_mut(&key)?;
        e.location = Location::InFlight;
        e.popped_cycle = cycle;
        e.info.attempts += 1;
        e.info.initial_attempt.get_or_insert(now);
        Some(e.info.clone())
    }

    /// The pod was scheduled and bound: forget it.
    pub fn done(&mut self, key: &str) {
        if self
            .entries
            .get(key)
            .is_some_and(|e| e.location == Location::InFlight)
        {
            self.entries.remove(key);
        }
    }

    /// The attempt failed. An error backs off. A rejection parks the pod
    /// until an event can help one of the rejecting plugins (any event when
    /// none is named), unless such an event arrived while it was in flight.
    pub fn add_unschedulable_if_not_present(
        &mut self,
        key: &str,
        failure: Failure,
        now: ClusterInstant,
    ) -> Result<(), QueueError> {
        let move_cycle = self.move_request_cycle;
        let e = self
            .entries
            .get_mut(key)
            .filter(|e| e.location == Location::InFlight)
            .ok_or_else(|| QueueError::NotInFlight(key.to_string()))?;
        e.info.timestamp = now;
        let (error, plugins) = match failure {
            Failure::Error => (true, BTreeSet::new()),
            Failure::Unschedulable(p) => (false, p),
        };
        e.info.unschedulable_plugins = plugins;
        if error || move_cycle >= e.popped_cycle {
            self.push_backoff(key);
        } else {
            e.location = Location::Unschedulable;
        }
        Ok(())
    }

    /// A cluster event: parked pods it could help go to activeQ (or
    /// backoffQ while they still back off).
    pub fn move_all_to_active_or_backoff(&mut self, event: ClusterEvent, now: ClusterInstant) {
        self.move_request_cycle = self.scheduling_cycle;
        let movable: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.location == Location::Unschedulable
                    && (e.info.unschedulable_plugins.is_empty()
                        || e.info
                            .unschedulable_plugins
                            .iter()
                            .any(|p| plugin_interested(p, &event)))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in movable {
            self.requeue(&k, now);
        }
    }

    /// When the earliest backoff ends (for the driver's sleep).
    pub fn next_backoff_expiry(&self) -> Option<ClusterInstant> {
        self.backoff
            .iter()
            .filter(|Reverse((_, seq, k))| self.is_live(k, *seq, Location::Backoff))
            .map(|Reverse((t, _, _))| *t)
            .min()
    }

    pub fn lens(&self) -> QueueLens {
        let mut l = QueueLens::default();
        for e in self.entries.values() {
            match e.location {
                Location::Active => l.active += 1,
                Location::Backoff => l.backoff += 1,
                Location::Unschedulable => l.unschedulable += 1,
                Location::InFlight => l.in_flight += 1,
            }
        }
        l
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};

    fn t(ms: u64) -> ClusterInstant {
        ClusterInstant::from_epoch(Duration::from_millis(ms))
    }

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(
            PodBuilder::new("default", name).priority(priority).build(),
        ))
    }

    fn names(q: &mut SchedulingQueue, now: ClusterInstant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now).map(|p| p.pod.name.clone())).collect()
    }

    fn no_backoff_pop() -> QueueConfig {
        QueueConfig {
            pop_from_backoff: false,
            ..QueueConfig::default()
        }
    }

    #[test]
    fn active_queue_orders_by_priority_then_age() {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("low-old", 0), t(0)).unwrap();
        q.add(pod("high", 100), t(5)).unwrap();
        q.add(pod("low-new", 0), t(10)).unwrap();
        q.add(pod("mid", 10), t(20)).unwrap();
        assert_eq!(names(&mut q, t(30)), ["high", "mid", "low-old", "low-new"]);
    }

    #[test]
    fn backoff_doubles_from_one_to_ten_seconds() {
        let q = SchedulingQueue::new(QueueConfig::default());
        let secs: Vec<u64> = (0..7).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(secs, [0, 1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pod_waits_for_a_relevant_event() {
        let mut q = SchedulingQueue::new(no_backoff_pop());
        q.add(pod("p", 0), t(0)).unwrap();
        let p = q.pop(t(0)).unwrap();
        assert_eq!(p.attempts, 1);
        q.add_unschedulable_if_not_present(
            "default/p",
            Failure::Unschedulable(["NodeResourcesFit"].into()),
            t(100),
        )
        .unwrap();
        assert_eq!(q.lens().unschedulable, 1);
        assert!(
            q.pop(t(60_000)).is_none(),
            "parked pods are not retried on their own"
        );

        // A node label change cannot help a pod that lacked cpu.
        let labels = NodeChange {
            labels: true,
            ..NodeChange::default()
        };
        q.move_all_to_active_or_backoff(ClusterEvent::NodeUpdate(labels), t(60_000));
        assert_eq!(q.lens().unschedulable, 1);

        // Deleting a pod frees requests.
        q.move_all_to_active_or_backoff(ClusterEvent::AssignedPodDelete, t(60_000));
        assert_eq!(q.lens().active, 1);
        let p = q.pop(t(60_000)).unwrap();
        assert_eq!(p.attempts, 2);
        assert_eq!(p.initial_attempt, Some(t(0)));
        q.done("default/p");
        assert_eq!(q.lens(), QueueLens::default());
    }

    #[test]
    fn event_during_backoff_goes_through_backoff_queue() {
        let mut q = SchedulingQueue::new(no_backoff_pop());
        q.add(pod("p", 0), t(0)).unwrap();
        q.pop(t(0)).unwrap();
        q.add_unschedulable_if_not_present(
            "default/p",
            Failure::Unschedulable(["NodeAffinity"].into()),
            t(1000),
        )
        .unwrap();
        // Attempt 1: backoff 1s from t=1000.
        q.move_all_to_active_or_backoff(ClusterEvent::NodeAdd, t(1500));
        assert_eq!(q.lens().backoff, 1);
        assert_eq!(q.next_backoff_expiry(), Some(t(2000)));
        assert!(q.pop(t(1999)).is_none());
        let p = q.pop(t(2000)).unwrap();
        assert_eq!(p.attempts, 2);
        // Attempt 2 failed: backoff 2s.
        q.add_unschedulable_if_not_present(
            "default/p",
            Failure::Unschedulable(["NodeAffinity"].into()),
            t(3000),
        )
        .unwrap();
        q.move_all_to_active_or_backoff(ClusterEvent::NodeAdd, t(3000));
        assert_eq!(q.next_backoff_expiry(), Some(t(5000)));
    }

    #[test]
    fn event_while_in_flight_is_not_lost() {
        let mut q = SchedulingQueue::new(no_backoff_pop());
        q.add(pod("p", 0), t(0)).unwrap();
        q.pop(t(0)).unwrap();
        // A node arrives while the cycle runs on the old snapshot.
        q.move_all_to_active_or_backoff(ClusterEvent::NodeAdd, t(10));
        q.add_unschedulable_if_not_present(
            "default/p",
            Failure::Unschedulable(["NodeResourcesFit"].into()),
            t(20),
        )
        .unwrap();
        assert_eq!(
            q.lens().backoff,
            1,
            "retried after backoff instead of parked"
        );
        assert_eq!(names(&mut q, t(1020)), ["p"]);
    }

    #[test]
    fn errors_back_off_and_parked_pods_time_out() {
        let mut q = SchedulingQueue::new(no_backoff_pop());
        q.add(pod("err", 0), t(0)).unwrap();
        q.add(pod("stuck", 0), t(1)).unwrap();
        q.pop(t(2)).unwrap();
        q.pop(t(2)).unwrap();
        q.add_unschedulable_if_not_present("default/err", Failure::Error, t(2))
            .unwrap();
        q.add_unschedulable_if_not_present(
            "default/stuck",
            Failure::Unschedulable(["NodeName"].into()),
            t(3),
        )
        .unwrap();
        assert_eq!(q.lens().backoff, 1);
        assert_eq!(q.lens().unschedulable, 1);
        q.flush_unschedulable_leftover(t(3 + 300_000));
        assert_eq!(
            q.lens().unschedulable,
            1,
            "exactly five minutes is not more than five"
        );
        q.flush_unschedulable_leftover(t(3 + 300_001));
        assert_eq!(names(&mut q, t(400_000)), ["err", "stuck"]);
    }

    #[test]
    fn pop_from_backoff_when_idle() {
        let mut q = SchedulingQueue::new(QueueConfig::default());
        q.add(pod("p", 0), t(0)).unwrap();
        q.pop(t(0)).unwrap();
        q.add_unschedulable_if_not_present("default/p", Failure::Error, t(0))
            .unwrap();
        assert_eq!(
            names(&mut q, t(1)),
            ["p"],
            "activeQ empty: backoff is skipped"
        );
    }

    #[test]
    fn update_delete_and_capacity() {
        let mut q = SchedulingQueue::new(QueueConfig {
            capacity: 2,
            ..no_backoff_pop()
        });
        q.add(pod("a", 0), t(0)).unwrap();
        q.add(pod("b", 0), t(1)).unwrap();
        assert_eq!(
            q.add(pod("c", 0), t(2)),
            Err(QueueError::Full {
                capacity: 2,
                key: "default/c".into()
            })
        );
        // Raising b's priority reorders it.
        q.update(pod("b", 50), t(3));
        q.delete("default/a");
        q.add(pod("c", 0), t(4)).unwrap();
        assert_eq!(names(&mut q, t(5)), ["b", "c"]);
        assert_eq!(
            q.add_unschedulable_if_not_present("default/zz", Failure::Error, t(5)),
            Err(QueueError::NotInFlight("default/zz".into()))
        );
        // An update of a parked pod gives it another try.
        q.add_unschedulable_if_not_present(
            "default/b",
            Failure::Unschedulable(["NodeAffinity"].into()),
            t(6),
        )
        .unwrap();
        q.update(pod("b", 50), t(10_000));
        assert_eq!(names(&mut q, t(10_000)), ["b"]);
    }

    #[test]
    fn node_updates_are_classified() {
        let base = NodeBuilder::new("n1").cpu("4").build();
        assert_eq!(node_update_event(&base, &base), None, "a heartbeat");
        let relabeled = NodeBuilder::new("n1").cpu("4").label("gpu", "true").build();
        assert_eq!(
            node_update_event(&base, &relabeled),
            Some(ClusterEvent::NodeUpdate(NodeChange {
                labels: true,
                ..NodeChange::default()
            }))
        );
        let cordoned = NodeBuilder::new("n1").cpu("4").unschedulable().build();
        let ev = node_update_event(&base, &cordoned).unwrap();
        assert_eq!(ev.label(), "NodeTaintChange");
        assert!(plugin_interested("NodeUnschedulable", &ev));
        assert!(!plugin_interested("NodeResourcesFit", &ev));
        let bigger = NodeBuilder::new("n1").cpu("8").build();
        let ev = node_update_event(&base, &bigger).unwrap();
        assert!(plugin_interested("NodeResourcesFit", &ev));
        assert!(!plugin_interested("NodeAffinity", &ev));
        assert!(plugin_interested("SomeOutOfTreePlugin", &ev));
    }
}
