//! The writes kube-scheduler makes: `pods/binding`, the `PodScheduled`
//! condition and `nominatedNodeName` through `pods/status`, Events, and the
//! deletion of preemption victims. The JSON shapes are pure functions so
//! they are table-tested; [`Writer`] sends them.

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::api::core::v1::Pod;
use ackemu_kube::client::{Client, ClientError};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::snapshot::PodInfo;

/// Event types.
pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// The body of `POST /api/v1/namespaces/{ns}/pods/{name}/binding`.
pub fn binding_body(pod: &PodInfo, node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    })
}

/// The `pods/status` strategic merge patch setting `PodScheduled=False`
/// (and the nominated node), or `None` when the pod already says so
/// (`updatePod` skips unchanged conditions). `now` is an RFC 3339 time.
pub fn unschedulable_patch(
    current: &Pod,
    reason: &str,
    message: &str,
    nominated_node: Option<&str>,
    now: &str,
) -> Option<Value> {
    let status = current.status.as_ref();
    let old = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let same_condition = old.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(reason)
            && c.message.as_deref() == Some(message)
    });
    let old_nominated = status
        .and_then(|s| s.nominated_node_name.as_deref())
        .unwrap_or("");
    let nominated_changes = nominated_node.is_some_and(|n| n != old_nominated);
    if same_condition && !nominated_changes {
        return None;
    }
    // The transition time moves only when the status flips.
    let transition = match old {
        Some(c) if c.status == "False" => c
            .last_transition_time
            .as_ref()
            .map(|t| ackemu_kube::duration::format_timestamp(t.0))
            .unwrap_or_else(|| now.to_string()),
        _ => now.to_string(),
    };
    let mut patch = json!({"status": {"conditions": [{
        "type": "PodScheduled",
        "status": "False",
        "reason": reason,
        "message": message,
        "lastProbeTime": null,
        "lastTransitionTime": transition,
    }]}});
    if let Some(n) = nominated_node.filter(|_| nominated_changes) {
        patch["status"]["nominatedNodeName"] = json!(n);
    }
    Some(patch)
}

/// An Event about a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEvent {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub type_: &'static str,
    pub reason: &'static str,
    /// `Scheduling`, `Binding`, `Preempting`.
    pub action: &'static str,
    pub message: String,
}

impl PodEvent {
    pub fn about(
        pod: &PodInfo,
        type_: &'static str,
        reason: &'static str,
        action: &'static str,
        message: String,
    ) -> PodEvent {
        PodEvent {
            namespace: pod.namespace.clone(),
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            type_,
            reason,
            action,
            message,
        }
    }
}

/// The `v1` Event kube-scheduler's recorder writes (reporting controller
/// `default-scheduler`, also as `source.component`, so `kubectl describe`
/// shows `From: default-scheduler`).
pub fn event_body(e: &PodEvent, component: &str, instance: &str, now_ms: i64, seq: u64) -> Value {
    let t = jiff::Timestamp::from_millisecond(now_ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let ts = ackemu_kube::duration::format_timestamp(t);
    // The events library names them `<object>.<unix nanos in hex>`; the
    // sequence keeps names of events recorded in the same millisecond apart.
    let nanos = (now_ms as i128) * 1_000_000 + (seq % 1_000_000) as i128;
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{:x}", e.name, nanos), "namespace": e.namespace},
        "involvedObject": {
            "apiVersion": "v1", "kind": "Pod", "namespace": e.namespace,
            "name": e.name, "uid": e.uid,
        },
        "reason": e.reason,
        "message": e.message,
        "type": e.type_,
        "action": e.action,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": instance,
        "eventTime": ackemu_kube::duration::format_micro_timestamp(t),
        "firstTimestamp": ts,
        "lastTimestamp": ts,
        "count": 1,
    })
}

fn pod_path(ns: &str, name: &str) -> String {
    format!("/api/v1/namespaces/{ns}/pods/{name}")
}

/// Posts the binding.
pub async fn bind(client: &Client, pod: &PodInfo, node: &str) -> Result<(), ClientError> {
    let body = binding_body(pod, node);
    client
        .request(
            "POST",
            &format!("{}/binding", pod_path(&pod.namespace, &pod.name)),
            Some(("application/json", body.to_string().into_bytes())),
        )
        .await
        .map(|_| ())
}

/// A write the scheduling loop hands to the writer task.
#[derive(Clone, Debug)]
pub enum Write {
    /// Patch `pods/status`.
    PodStatus {
        namespace: String,
        name: String,
        patch: Value,
    },
    /// Delete a preemption victim.
    DeletePod {
        namespace: String,
        name: String,
        uid: String,
    },
    Event(PodEvent),
}

/// Performs [`Write`]s in order on one task, through a bounded queue.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Write>,
}

impl Writer {
    pub fn start(
        client: Client,
        clock: Clock,
        tasks: &Tasks,
        capacity: usize,
        component: String,
        instance: String,
    ) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Write>(capacity.max(1));
        let token = tasks.token();
        tasks.spawn("scheduler writer", async move {
            let mut seq: u64 = 0;
            loop {
                let w = tokio::select! {
                    w = rx.recv() => match w { Some(w) => w, None => return },
                    () = token.cancelled() => return,
                };
                match w {
                    Write::PodStatus {
                        namespace,
                        name,
                        patch,
                    } => {
                        let path = format!("{}/status", pod_path(&namespace, &name));
                        let body = patch.to_string().into_bytes();
                        let ct = strategic_content_type();
                        if let Err(e) = client.request("PATCH", &path, Some((ct, body))).await
                            && !e.is_not_found()
                        {
                            tracing::warn!("updating the status of pod {namespace}/{name}: {e}");
                        }
                    }
                    Write::DeletePod {
                        namespace,
                        name,
                        uid,
                    } => {
                        let body = json!({"kind": "DeleteOptions", "apiVersion": "v1",
                            "preconditions": {"uid": uid}});
                        if let Err(e) = client
                            .request(
                                "DELETE",
                                &pod_path(&namespace, &name),
                                Some(("application/json", body.to_string().into_bytes())),
                            )
                            .await
                            && !e.is_not_found()
                        {
                            tracing::warn!("deleting preemption victim {namespace}/{name}: {e}");
                        }
                    }
                    Write::Event(e) => {
                        seq += 1;
                        let body = event_body(&e, &component, &instance, clock.wall_unix_ms(), seq);
                        let path = format!("/api/v1/namespaces/{}/events", e.namespace);
                        if let Err(err) = client
                            .request(
                                "POST",
                                &path,
                                Some(("application/json", body.to_string().into_bytes())),
                            )
                            .await
                        {
                            tracing::debug!("recording event {} {}: {err}", e.reason, e.message);
                        }
                    }
                }
            }
        });
        Writer { tx }
    }

    /// Queues a status patch or a deletion, waiting while the queue is full.
    pub async fn send(&self, w: Write) {
        let _ = self.tx.send(w).await;
    }

    /// Queues an event; dropped (with a log line) when the queue is full,
    /// as client-go's broadcaster drops them.
    pub fn event(&self, e: PodEvent) {
        tracing::info!(
            "event pod/{}/{} {} {}: {}",
            e.namespace,
            e.name,
            e.type_,
            e.reason,
            e.message
        );
        if self.tx.try_send(Write::Event(e)).is_err() {
            tracing::warn!("event queue full: dropping an event");
        }
    }
}

fn strategic_content_type() -> &'static str {
    "application/strategic-merge-patch+json"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::PodBuilder;

    #[test]
    fn binding_is_a_v1_binding_to_the_node() {
        let mut p = PodBuilder::new("web", "app-1").build();
        p.metadata.uid = Some("u-1".into());
        let b = binding_body(&PodInfo::new(p), "n2");
        assert_eq!(
            b,
            json!({"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": "app-1", "namespace": "web", "uid": "u-1"},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "n2"}})
        );
    }

    #[test]
    fn condition_patch_only_when_it_changes() {
        let now = "2026-12-02T06:00:00Z";
        let fresh = PodBuilder::new("default", "p").build();
        let patch = unschedulable_patch(
            &fresh,
            "Unschedulable",
            "0/1 nodes are available: 1 Insufficient cpu.",
            None,
            now,
        )
        .expect("a patch");
        assert_eq!(
            patch,
            json!({"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu.",
                "lastProbeTime": null, "lastTransitionTime": now}]}})
        );
        // The pod as the API server returns it after the patch.
        let mut v = serde_json::to_value(&fresh).unwrap();
        v["status"] = patch["status"].clone();
        let patched: Pod = serde_json::from_value(v).unwrap();
        assert_eq!(
            unschedulable_patch(
                &patched,
                "Unschedulable",
                "0/1 nodes are available: 1 Insufficient cpu.",
                None,
                "2026-12-02T06:01:00Z"
            ),
            None
        );
        // A new message keeps the transition time; a nomination is added.
        let p2 = unschedulable_patch(
            &patched,
            "Unschedulable",
            "0/2 nodes are available: 2 Insufficient cpu.",
            Some("n1"),
            "2026-12-02T06:01:00Z",
        )
        .unwrap();
        assert_eq!(p2["status"]["conditions"][0]["lastTransitionTime"], now);
        assert_eq!(p2["status"]["nominatedNodeName"], "n1");
    }

    #[test]
    fn events_look_like_the_schedulers() {
        let mut p = PodBuilder::new("default", "app").build();
        p.metadata.uid = Some("u".into());
        let e = PodEvent::about(
            &PodInfo::new(p),
            NORMAL,
            "Scheduled",
            "Binding",
            "Successfully assigned default/app to n1".into(),
        );
        let b = event_body(
            &e,
            "default-scheduler",
            "default-scheduler-h1",
            1_764_655_200_000,
            1,
        );
        assert_eq!(b["involvedObject"]["kind"], "Pod");
        assert_eq!(b["reason"], "Scheduled");
        assert_eq!(b["type"], "Normal");
        assert_eq!(b["source"]["component"], "default-scheduler");
        assert_eq!(b["reportingComponent"], "default-scheduler");
        assert!(b["metadata"]["name"].as_str().unwrap().starts_with("app."));
        assert_eq!(b["eventTime"], "2025-12-02T06:00:00.000000Z");
    }
}
