//! Events the kubelet records (`source.component: kubelet`, `source.host:
//! <node>`), posted by one task from a bounded queue; a full queue drops
//! the event with a log line, as client-go's broadcaster does.

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::client::Client;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `Normal`.
    Normal,
    /// `Warning`.
    Warning,
}

/// What an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    /// `Pod` or `Node`.
    pub kind: String,
    /// Namespace (empty for nodes).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Uid (the node name for nodes, as the kubelet does).
    pub uid: String,
    /// `spec.containers{app}` or empty.
    pub field_path: String,
}

impl ObjectRef {
    /// The node itself.
    pub fn node(name: &str) -> ObjectRef {
        ObjectRef {
            kind: "Node".into(),
            namespace: String::new(),
            name: name.into(),
            uid: name.into(),
            field_path: String::new(),
        }
    }
}

/// The Event object (core/v1) for `r`, at cluster wall time `now_ms`.
pub fn event_object(
    r: &ObjectRef,
    kind: Kind,
    reason: &str,
    message: &str,
    node: &str,
    now_ms: i64,
) -> Value {
    let ts = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let secs = ts.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let ns = if r.namespace.is_empty() {
        "default".to_string()
    } else {
        r.namespace.clone()
    };
    let nanos = ts.timestamp_nanos_opt().unwrap_or(0);
    let mut involved = json!({
        "kind": r.kind, "name": r.name, "uid": r.uid, "apiVersion": "v1",
    });
    if !r.namespace.is_empty() {
        involved["namespace"] = json!(r.namespace);
    }
    if !r.field_path.is_empty() {
        involved["fieldPath"] = json!(r.field_path);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{}.{:x}", r.name, nanos), "namespace": ns},
        "involvedObject": involved,
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": node},
        "firstTimestamp": secs,
        "lastTimestamp": secs,
        "eventTime": Value::Null,
        "count": 1,
        "type": match kind { Kind::Normal => "Normal", Kind::Warning => "Warning" },
        "reportingComponent": "kubelet",
        "reportingInstance": node,
    })
}

/// Records events through a bounded queue.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Value>,
    node: String,
    clock: Clock,
}

impl Recorder {
    /// Start the posting task.
    pub fn start(
        client: Client,
        node: &str,
        clock: Clock,
        tasks: &Tasks,
        queue: usize,
    ) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<Value>(queue.max(1));
        let token = tasks.token();
        tasks.spawn("kubelet/events", async move {
            loop {
                let ev = tokio::select! {
                    () = token.cancelled() => return,
                    ev = rx.recv() => match ev { Some(e) => e, None => return },
                };
                let ns = ev["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or("default")
                    .to_string();
                let path = format!("/api/v1/namespaces/{ns}/events");
                if let Err(e) = client
                    .request(
                        "POST",
                        &path,
                        Some(("application/json", ev.to_string().into_bytes())),
                    )
                    .await
                {
                    tracing::warn!(
                        "Server rejected event (will not retry!): reason {}: {e}",
                        ev["reason"].as_str().unwrap_or("")
                    );
                }
            }
        });
        Recorder {
            tx,
            node: node.into(),
            clock,
        }
    }

    /// Record one event.
    pub fn record(&self, r: &ObjectRef, kind: Kind, reason: &str, message: &str) {
        let ev = event_object(
            r,
            kind,
            reason,
            message,
            &self.node,
            self.clock.wall_unix_ms(),
        );
        let level = match kind {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        };
        tracing::info!(
            "Event occurred object=\"{}{}\" kind=\"{}\" type=\"{level}\" reason=\"{reason}\" message=\"{message}\"",
            if r.namespace.is_empty() {
                String::new()
            } else {
                format!("{}/", r.namespace)
            },
            r.name,
            r.kind
        );
        if self.tx.try_send(ev).is_err() {
            tracing::warn!(
                "event queue is full: dropping event {reason} for {}",
                r.name
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_kubelet_source_and_the_container_field_path() {
        let r = ObjectRef {
            kind: "Pod".into(),
            namespace: "default".into(),
            name: "web".into(),
            uid: "u1".into(),
            field_path: "spec.containers{app}".into(),
        };
        let ev = event_object(
            &r,
            Kind::Normal,
            "Started",
            "Started container app",
            "n1",
            1_700_000_000_123,
        );
        assert_eq!(ev["source"], json!({"component": "kubelet", "host": "n1"}));
        assert_eq!(ev["involvedObject"]["fieldPath"], "spec.containers{app}");
        assert_eq!(ev["involvedObject"]["namespace"], "default");
        assert_eq!(ev["metadata"]["namespace"], "default");
        assert_eq!(ev["type"], "Normal");
        assert_eq!(ev["firstTimestamp"], "2023-11-14T22:13:20Z");
        assert!(ev["metadata"]["name"].as_str().unwrap().starts_with("web."));
        let n = event_object(
            &ObjectRef::node("n1"),
            Kind::Warning,
            "NodeNotReady",
            "m",
            "n1",
            0,
        );
        assert_eq!(n["involvedObject"]["uid"], "n1");
        assert_eq!(n["metadata"]["namespace"], "default");
        assert!(n["involvedObject"].get("namespace").is_none());
    }
}
