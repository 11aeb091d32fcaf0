//! The scheduler without IO: informer events go in, decisions come out.
//! [`SchedulerCore`] owns the cache, the snapshot, the algorithm and the
//! queue; a driver feeds it watch events and cluster time, calls
//! [`SchedulerCore::schedule_next`] and performs what it returns (POST a
//! `pods/binding`, record an Event, patch the `PodScheduled` condition),
//! then reports the binding's outcome back.

use std::sync::Arc;

use ackemu_base::clock::ClusterInstant;
use ackemu_kube::api::core::v1::{Node, Pod};
use rand::RngCore;

use crate::cycle::{Algorithm, Profile, ScheduleError, ScheduleResult};
use crate::preemption::{Candidate, PostFilter, post_filter};
use crate::queue::{
    ClusterEvent, Failure, QueueConfig, QueueError, SchedulingQueue, node_update_event,
};
use crate::snapshot::{Cache, CacheError, PodInfo, Snapshot, Workloads, pod_key};
use crate::trace::Trace;

/// `PodScheduled=False` reasons.
pub const REASON_UNSCHEDULABLE: &str = "Unschedulable";
pub const REASON_SCHEDULER_ERROR: &str = "SchedulerError";

/// What the driver must do after a cycle.
#[derive(Clone, Debug)]
pub enum CycleOutcome {
    /// The pod is assumed on `node`: bind it (`pods/binding`), then call
    /// [`SchedulerCore::binding_succeeded`] or
    /// [`SchedulerCore::binding_failed`]. On success record a `Scheduled`
    /// event with [`scheduled_message`].
    Bind {
        pod: Arc<PodInfo>,
        node: String,
        result: ScheduleResult,
    },
    /// No node: record a `FailedScheduling` Warning event with `message` and
    /// set `PodScheduled=False` with `reason` and `message`. The pod is
    /// already back in the queue. With `preempt`, also nominate its node
    /// (`status.nominatedNodeName`) and delete the victims, recording a
    /// `Preempted` event on each ([`preempted_message`]).
    Failed {
        pod: Arc<PodInfo>,
        reason: &'static str,
        message: String,
        preempt: Option<Candidate>,
    },
}

/// The `Scheduled` event's message.
pub fn scheduled_message(pod: &PodInfo, node: &str) -> String {
    format!(
        "Successfully assigned {}/{} to {node}",
        pod.namespace, pod.name
    )
}

/// The `Preempted` event's message on a victim.
pub fn preempted_message(preemptor: &PodInfo, node: &str) -> String {
    format!("Preempted by pod {} on node {node}", preemptor.uid)
}

/// The scheduler's state machine.
#[derive(Clone, Debug)]
pub struct SchedulerCore {
    cache: Cache,
    snapshot: Snapshot,
    algorithm: Algorithm,
    queue: SchedulingQueue,
}

fn scheduler_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduler_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or(crate::cycle::DEFAULT_SCHEDULER_NAME)
}

fn assigned(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty())
}

impl SchedulerCore {
    pub fn new(profile: Profile, queue: QueueConfig) -> SchedulerCore {
        SchedulerCore {
            cache: Cache::new(),
            snapshot: Snapshot::default(),
            algorithm: Algorithm::new(profile),
            queue: SchedulingQueue::new(queue),
        }
    }

    fn responsible(&self, pod: &Pod) -> bool {
        scheduler_name(pod) == self.algorithm.profile().scheduler_name
    }

    pub fn on_node_add(&mut self, node: Node, now: ClusterInstant) {
        self.cache.add_node(node);
        self.queue
            .move_all_to_active_or_backoff(ClusterEvent::NodeAdd, now);
    }

    pub fn on_node_update(&mut self, old: &Node, new: Node, now: ClusterInstant) {
        let event = node_update_event(old, &new);
        self.cache.update_node(new);
        if let Some(e) = event {
            self.queue.move_all_to_active_or_backoff(e, now);
        }
    }

    pub fn on_node_delete(&mut self, name: &str) {
        self.cache.remove_node(name);
    }

    /// A pod appeared. Assigned pods enter the cache; pending pods for this
    /// scheduler enter the queue.
    pub fn on_pod_add(&mut self, pod: Pod, now: ClusterInstant) -> Result<(), QueueError> {
        if assigned(&pod) {
            self.cache.add_pod(pod);
            self.queue
                .move_all_to_active_or_backoff(ClusterEvent::AssignedPodAdd, now);
            return Ok(());
        }
        if !self.responsible(&pod) || PodInfo::is_terminal(&pod) {
            return Ok(());
        }
        self.queue.add(Arc::new(PodInfo::new(pod)), now)
    }

    /// A pod changed (the informer's update).
    pub fn on_pod_update(
        &mut self,
        old: &Pod,
        new: Pod,
        now: ClusterInstant,
    ) -> Result<(), QueueError> {
        if assigned(&new) {
            let key = pod_key(&new);
            // Bound (by us, confirming an assumption, or by someone else).
            self.queue.delete(&key);
            let freed = PodInfo::is_terminal(&new)
                || (assigned(old) && {
                    let (o, n) = (
                        crate::resources::pod_requests(old, false),
                        crate::resources::pod_requests(&new, false),
                    );
                    n.milli_cpu < o.milli_cpu || n.memory < o.memory
                });
            self.cache.update_pod(new);
            if freed {
                self.queue
                    .move_all_to_active_or_backoff(ClusterEvent::AssignedPodDelete, now);
            } else if assigned(old) {
                self.queue
                    .move_all_to_active_or_backoff(ClusterEvent::AssignedPodUpdate, now);
            }
            return Ok(());
        }
        if !self.responsible(&new) || PodInfo::is_terminal(&new) {
            self.queue.delete(&pod_key(&new));
            return Ok(());
        }
        let info = Arc::new(PodInfo::new(new));
        if self.queue.contains(&info.key) {
            self.queue.update(info, now);
            Ok(())
        } else {
            self.queue.add(info, now)
        }
    }

    pub fn on_pod_delete(&mut self, pod: &Pod, now: ClusterInstant) {
        let key = pod_key(pod);
        self.queue.delete(&key);
        if self.cache.pod_node(&key).is_some() {
            self.cache.remove_pod(&key);
            self.queue
                .move_all_to_active_or_backoff(ClusterEvent::AssignedPodDelete, now);
        }
    }

    /// Services, ReplicaSets, … for spreading.
    pub fn workloads_mut(&mut self) -> &mut Workloads {
        self.cache.workloads_mut()
    }

    /// Periodic queue maintenance (kube-scheduler runs these every 1 s and
    /// 30 s).
    pub fn tick(&mut self, now: ClusterInstant) {
        self.queue.flush_backoff_completed(now);
        self.queue.flush_unschedulable_leftover(now);
    }

    /// When a backing-off pod becomes ready (for the driver's sleep).
    pub fn next_wakeup(&self) -> Option<ClusterInstant> {
        self.queue.next_backoff_expiry()
    }

    pub fn queue(&self) -> &SchedulingQueue {
        &self.queue
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Runs one scheduling cycle for the next pod, if any is ready.
    pub fn schedule_next(
        &mut self,
        now: ClusterInstant,
        rng: &mut dyn RngCore,
        trace: &mut Trace,
    ) -> Option<CycleOutcome> {
        loop {
            let q = self.queue.pop(now)?;
            let pod = q.pod;
            if pod.terminating || self.cache.is_assumed(&pod.key) {
                self.queue.done(&pod.key);
                continue;
            }
            self.cache.update_snapshot(&mut self.snapshot);
            let mut preempt = None;
            let failure = match self
                .algorithm
                .schedule_pod(&self.snapshot, &pod, rng, trace)
            {
                Ok(result) => match self.assume(&pod, &result.suggested_host) {
                    Ok(assumed) => {
                        return Some(CycleOutcome::Bind {
                            node: result.suggested_host.clone(),
                            pod: assumed,
                            result,
                        });
                    }
                    Err(e) => (Failure::Error, REASON_SCHEDULER_ERROR, e.to_string()),
                },
                Err(ScheduleError::Fit(mut fe)) => {
                    match post_filter(&self.algorithm, &self.snapshot, &pod, &fe) {
                        PostFilter::Preempt(c) => preempt = Some(c),
                        PostFilter::NotPossible(msg) => fe.post_filter_msg = Some(msg),
                    }
                    (
                        Failure::Unschedulable(fe.unschedulable_plugins.clone()),
                        REASON_UNSCHEDULABLE,
                        fe.to_string(),
                    )
                }
                Err(e @ ScheduleError::NoNodesAvailable) => (
                    Failure::Unschedulable(Default::default()),
                    REASON_UNSCHEDULABLE,
                    e.to_string(),
                ),
                Err(e @ ScheduleError::Plugin { .. }) => {
                    (Failure::Error, REASON_SCHEDULER_ERROR, e.to_string())
                }
            };
            let (failure, reason, message) = failure;
            // The pod is in flight, so this cannot fail.
            let _ = self
                .queue
                .add_unschedulable_if_not_present(&pod.key, failure, now);
            return Some(CycleOutcome::Failed {
                pod,
                reason,
                message,
                preempt,
            });
        }
    }

    fn assume(&mut self, pod: &PodInfo, node: &str) -> Result<Arc<PodInfo>, CacheError> {
        let mut p = (*pod.pod).clone();
        p.spec.get_or_insert_with(Default::default).node_name = Some(node.to_string());
        let info = Arc::new(PodInfo::new(p));
        self.cache.assume_pod(info.clone())?;
        Ok(info)
    }

    /// The binding was accepted.
    pub fn binding_succeeded(&mut self, key: &str) {
        self.queue.done(key);
    }

    /// The binding failed: release the assumed resources and retry the pod
    /// after backoff.
    pub fn binding_failed(&mut self, key: &str, node: &str, now: ClusterInstant) {
        // The assumption may already be gone (the pod was deleted).
        let _ = self.cache.forget_pod(key, node);
        let _ = self
            .queue
            .add_unschedulable_if_not_present(key, Failure::Error, now);
        self.queue
            .move_all_to_active_or_backoff(ClusterEvent::AssignedPodDelete, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::time::Duration;

    fn t(s: u64) -> ClusterInstant {
        ClusterInstant::from_epoch(Duration::from_secs(s))
    }

    fn core() -> SchedulerCore {
        SchedulerCore::new(Profile::default_profile(), QueueConfig::default())
    }

    fn next(c: &mut SchedulerCore, now: ClusterInstant) -> Option<CycleOutcome> {
        c.schedule_next(
            now,
            &mut ChaCha8Rng::seed_from_u64(7),
            &mut Trace::disabled(),
        )
    }

    #[test]
    fn pending_pods_fill_nodes_by_reservation_then_wait() {
        let mut c = core();
        for n in ["n1", "n2", "n3"] {
            c.on_node_add(NodeBuilder::new(n).cpu("2").memory("4Gi").build(), t(0));
        }
        for i in 0..4 {
            c.on_pod_add(
                PodBuilder::new("default", &format!("p{i}"))
                    .container_requests(&[("cpu", "1500m")])
                    .build(),
                t(0),
            )
            .unwrap();
        }
        let mut bound = Vec::new();
        let mut failed = Vec::new();
        while let Some(o) = next(&mut c, t(1)) {
            match o {
                CycleOutcome::Bind { pod, node, .. } => {
                    c.binding_succeeded(&pod.key);
                    bound.push(node);
                }
                CycleOutcome::Failed {
                    message, reason, ..
                } => {
                    failed.push((reason, message));
                    break;
                }
            }
        }
        bound.sort();
        assert_eq!(
            bound,
            ["n1", "n2", "n3"],
            "one per node: requests, not usage"
        );
        assert_eq!(
            failed,
            [(
                REASON_UNSCHEDULABLE,
                "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.".to_string()
            )]
        );
        assert_eq!(c.queue().lens().unschedulable, 1);

        // A new node (the autoscaler's) brings the parked pod back.
        c.on_node_add(NodeBuilder::new("n4").cpu("2").memory("4Gi").build(), t(30));
        match next(&mut c, t(30)) {
            Some(CycleOutcome::Bind { node, .. }) => assert_eq!(node, "n4"),
            other => panic!("expected a binding, got {other:?}"),
        }
    }

    #[test]
    fn informer_confirms_and_frees() {
        let mut c = core();
        c.on_node_add(NodeBuilder::new("n1").cpu("2").build(), t(0));
        let p = PodBuilder::new("default", "a").container_requests(&[("cpu", "2")]);
        c.on_pod_add(p.clone().build(), t(0)).unwrap();
        let Some(CycleOutcome::Bind { pod, node, .. }) = next(&mut c, t(0)) else {
            panic!("expected a binding");
        };
        c.binding_succeeded(&pod.key);
        assert!(c.cache().is_assumed("default/a"));
        // The watch shows the bound pod.
        c.on_pod_update(&p.clone().build(), p.clone().node_name(&node).build(), t(1))
            .unwrap();
        assert!(!c.cache().is_assumed("default/a"));

        let b = PodBuilder::new("default", "b").container_requests(&[("cpu", "1")]);
        c.on_pod_add(b.build(), t(1)).unwrap();
        assert!(matches!(
            next(&mut c, t(1)),
            Some(CycleOutcome::Failed { .. })
        ));
        // a finishes: its requests are freed and b is retried.
        c.on_pod_update(
            &p.clone().node_name("n1").build(),
            p.clone().node_name("n1").phase("Succeeded").build(),
            t(2),
        )
        .unwrap();
        assert!(matches!(
            next(&mut c, t(3)),
            Some(CycleOutcome::Bind { .. })
        ));
    }

    #[test]
    fn failed_binding_releases_the_node() {
        let mut c = core();
        c.on_node_add(NodeBuilder::new("n1").cpu("2").build(), t(0));
        c.on_pod_add(
            PodBuilder::new("default", "a")
                .container_requests(&[("cpu", "2")])
                .build(),
            t(0),
        )
        .unwrap();
        let Some(CycleOutcome::Bind { pod, node, .. }) = next(&mut c, t(0)) else {
            panic!("expected a binding");
        };
        c.binding_failed(&pod.key, &node, t(0));
        assert!(!c.cache().is_assumed("default/a"));
        assert_eq!(c.next_wakeup(), Some(t(1)));
        // Retried (after its backoff) and fits again.
        assert!(matches!(
            next(&mut c, t(1)),
            Some(CycleOutcome::Bind { .. })
        ));
    }

    #[test]
    fn other_schedulers_pods_and_no_nodes() {
        let mut c = core();
        let mut other = PodBuilder::new("default", "o").build();
        if let Some(s) = other.spec.as_mut() {
            s.scheduler_name = Some("my-scheduler".into());
        }
        c.on_pod_add(other, t(0)).unwrap();
        assert!(next(&mut c, t(0)).is_none());

        c.on_pod_add(PodBuilder::new("default", "p").build(), t(0))
            .unwrap();
        match next(&mut c, t(0)) {
            Some(CycleOutcome::Failed { message, .. }) => {
                assert_eq!(message, "no nodes available to schedule pods")
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        c.on_node_add(NodeBuilder::new("n1").build(), t(5));
        assert!(matches!(
            next(&mut c, t(5)),
            Some(CycleOutcome::Bind { .. })
        ));
    }
}
