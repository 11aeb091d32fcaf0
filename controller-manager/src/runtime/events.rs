//! Records the Events cores ask for as `v1` Events, through a bounded
//! queue drained by one task (dropped with a log line when full).

use ackemu_kube::client::Client;
use serde_json::json;
use tokio::sync::mpsc;

use crate::util::Event;
use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<(String, Event)>,
}

impl Recorder {
    pub fn start(client: Client, clock: Clock, tasks: &Tasks, capacity: usize) -> Recorder {
        let (tx, mut rx) = mpsc::channel::<(String, Event)>(capacity.max(1));
        let token = tasks.token();
        tasks.spawn("event recorder", async move {
            let mut n: u64 = 0;
            loop {
                let (component, e) = tokio::select! {
                    m = rx.recv() => match m { Some(m) => m, None => return },
                    () = token.cancelled() => return,
                };
                n += 1;
                let ns = if e.object.namespace.is_empty() { "default".to_owned() } else { e.object.namespace.clone() };
                let now = jiff::Timestamp::from_millisecond(clock.wall_unix_ms()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
                let ts = ackemu_kube::duration::format_timestamp(now);
                let body = json!({
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": format!("{}.{:x}{:04x}", e.object.name, now.as_millisecond(), n % 0x10000), "namespace": ns},
                    "involvedObject": {
                        "apiVersion": e.object.api_version, "kind": e.object.kind, "namespace": e.object.namespace,
                        "name": e.object.name, "uid": e.object.uid,
                    },
                    "reason": e.reason,
                    "message": e.message,
                    "type": e.type_.as_str(),
                    "source": {"component": component},
                    "reportingComponent": component,
                    "firstTimestamp": ts,
                    "lastTimestamp": ts,
                    "count": 1,
                });
                let path = format!("/api/v1/namespaces/{ns}/events");
                if let Err(err) = client.request("POST", &path, Some(("application/json", body.to_string().into_bytes()))).await {
                    tracing::debug!("recording event {} {}: {err}", e.reason, e.message);
                }
            }
        });
        Recorder { tx }
    }

    pub fn record(&self, component: &str, e: Event) {
        tracing::info!(
            "event {}/{} {} {}: {}",
            e.object.kind,
            e.object.name,
            e.type_.as_str(),
            e.reason,
            e.message
        );
        if self.tx.try_send((component.to_owned(), e)).is_err() {
            tracing::warn!("event queue full: dropping an event");
        }
    }
}
