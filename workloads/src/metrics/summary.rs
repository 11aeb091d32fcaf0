//! The kubelet Summary API (`/stats/summary`) and what metrics-server makes
//! of it: NodeMetrics and PodMetrics (`metrics.k8s.io/v1beta1`), CPU in
//! nanocores (`123456n`) and memory (working set) in `Ki`. Pure.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

/// CPU stats of a node or container.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Cpu {
    pub time: Option<String>,
    pub usage_nano_cores: Option<u64>,
    pub usage_core_nano_seconds: Option<u64>,
}

/// Memory stats.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Memory {
    pub time: Option<String>,
    pub working_set_bytes: Option<u64>,
}

/// The node part of a summary.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    pub node_name: String,
    #[serde(default)]
    pub cpu: Option<Cpu>,
    #[serde(default)]
    pub memory: Option<Memory>,
}

/// A pod's reference.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
}

/// A container's stats.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ContainerStats {
    pub name: String,
    #[serde(default)]
    pub cpu: Option<Cpu>,
    #[serde(default)]
    pub memory: Option<Memory>,
}

/// A pod's stats.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    pub pod_ref: PodRef,
    #[serde(default)]
    pub containers: Vec<ContainerStats>,
}

/// `/stats/summary`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Summary {
    pub node: NodeStats,
    #[serde(default)]
    pub pods: Vec<PodStats>,
}

/// One usage sample: (timestamp, cpu nanocores, memory bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub timestamp: String,
    pub cpu_nanocores: u64,
    pub memory_bytes: u64,
}

fn usage(cpu: &Option<Cpu>, mem: &Option<Memory>) -> Option<Usage> {
    let cpu = cpu.as_ref()?;
    let mem = mem.as_ref()?;
    Some(Usage {
        timestamp: cpu.time.clone().or_else(|| mem.time.clone())?,
        cpu_nanocores: cpu.usage_nano_cores?,
        memory_bytes: mem.working_set_bytes?,
    })
}

/// What one scrape of one node yields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeScrape {
    pub node: Option<Usage>,
    /// (namespace, pod) → containers (name, usage), in summary order.
    pub pods: BTreeMap<(String, String), Vec<(String, Usage)>>,
}

/// Decode a summary into usages. Nodes and containers missing CPU or
/// memory figures are skipped (metrics-server drops incomplete points);
/// a pod is kept only if every container has both.
pub fn decode(summary: &Summary) -> NodeScrape {
    let mut out = NodeScrape {
        node: usage(&summary.node.cpu, &summary.node.memory),
        ..Default::default()
    };
    for p in &summary.pods {
        let cs: Option<Vec<(String, Usage)>> = p
            .containers
            .iter()
            .map(|c| usage(&c.cpu, &c.memory).map(|u| (c.name.clone(), u)))
            .collect();
        if let Some(cs) = cs.filter(|c| !c.is_empty()) {
            out.pods
                .insert((p.pod_ref.namespace.clone(), p.pod_ref.name.clone()), cs);
        }
    }
    out
}

/// CPU as metrics-server prints it: nanocores with the `n` suffix.
pub fn cpu_quantity(nanocores: u64) -> String {
    format!("{nanocores}n")
}

/// Memory in `Ki` (working set bytes / 1024, rounded down).
pub fn memory_quantity(bytes: u64) -> String {
    format!("{}Ki", bytes / 1024)
}

fn usage_json(u: &Usage) -> Value {
    json!({"cpu": cpu_quantity(u.cpu_nanocores), "memory": memory_quantity(u.memory_bytes)})
}

/// A NodeMetrics object.
pub fn node_metrics(name: &str, labels: &Value, u: &Usage, window: &str, created: &str) -> Value {
    json!({
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": name, "creationTimestamp": created, "labels": labels},
        "timestamp": u.timestamp,
        "window": window,
        "usage": usage_json(u),
    })
}

/// A PodMetrics object.
pub fn pod_metrics(
    ns: &str,
    name: &str,
    labels: &Value,
    containers: &[(String, Usage)],
    window: &str,
    created: &str,
) -> Value {
    let ts = containers
        .iter()
        .map(|(_, u)| u.timestamp.clone())
        .max()
        .unwrap_or_default();
    json!({
        "kind": "PodMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created, "labels": labels},
        "timestamp": ts,
        "window": window,
        "containers": containers.iter().map(|(n, u)| json!({"name": n, "usage": usage_json(u)})).collect::<Vec<_>>(),
    })
}

/// `15s`, `1m0s`: a window as Go's `time.Duration` prints it.
pub fn go_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let ms = d.subsec_millis();
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    let frac = if ms > 0 {
        format!(".{ms:03}").trim_end_matches('0').to_owned()
    } else {
        String::new()
    };
    if h > 0 {
        format!("{h}h{m}m{sec}{frac}s")
    } else if m > 0 {
        format!("{m}m{sec}{frac}s")
    } else {
        format!("{sec}{frac}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = r#"{
      "node": {"nodeName": "cn-hangzhou.192.168.0.10",
               "cpu": {"time": "2026-12-02T06:00:00Z", "usageNanoCores": 123456789, "usageCoreNanoSeconds": 99},
               "memory": {"time": "2026-12-02T06:00:00Z", "workingSetBytes": 1073741824}},
      "pods": [
        {"podRef": {"name": "web-0", "namespace": "default", "uid": "u"},
         "containers": [{"name": "app", "cpu": {"time": "2026-12-02T06:00:01Z", "usageNanoCores": 2500000},
                                        "memory": {"time": "2026-12-02T06:00:01Z", "workingSetBytes": 10485760}},
                        {"name": "istio-proxy", "cpu": {"time": "2026-12-02T06:00:02Z", "usageNanoCores": 1000000},
                                        "memory": {"time": "2026-12-02T06:00:02Z", "workingSetBytes": 4194304}}]},
        {"podRef": {"name": "starting", "namespace": "default"},
         "containers": [{"name": "c", "cpu": {"time": "2026-12-02T06:00:01Z"}}]}
      ]}"#;

    #[test]
    fn summary_becomes_metrics_in_kubectl_top_units() {
        let s: Summary = serde_json::from_str(SUMMARY).unwrap();
        let d = decode(&s);
        let node = d.node.clone().unwrap();
        assert_eq!(node.cpu_nanocores, 123456789);
        let nm = node_metrics(
            "n1",
            &json!({"a": "b"}),
            &node,
            "15s",
            "2026-12-02T06:00:05Z",
        );
        assert_eq!(
            nm["usage"],
            json!({"cpu": "123456789n", "memory": "1048576Ki"})
        );
        assert_eq!(nm["timestamp"], "2026-12-02T06:00:00Z");
        assert_eq!(nm["window"], "15s");
        // The pod with an incomplete container is dropped.
        assert_eq!(d.pods.len(), 1);
        let cs = &d.pods[&("default".to_string(), "web-0".to_string())];
        let pm = pod_metrics("default", "web-0", &json!({}), cs, "15s", "t");
        assert_eq!(
            pm["containers"],
            json!([{"name": "app", "usage": {"cpu": "2500000n", "memory": "10240Ki"}},
                   {"name": "istio-proxy", "usage": {"cpu": "1000000n", "memory": "4096Ki"}}])
        );
        assert_eq!(pm["timestamp"], "2026-12-02T06:00:02Z");
    }

    #[test]
    fn windows_print_like_go() {
        use std::time::Duration;
        assert_eq!(go_duration(Duration::from_secs(15)), "15s");
        assert_eq!(go_duration(Duration::from_secs(60)), "1m0s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(3725)), "1h2m5s");
    }
}
