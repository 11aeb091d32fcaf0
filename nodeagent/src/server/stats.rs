//! `/stats/summary` (the kubelet Summary API, `stats/v1alpha1`) from real
//! processes: a container is its process group (runc starts the process
//! as a group leader), CPU is `utime + stime` of `/proc/<pid>/stat` summed
//! over the group, memory the group's resident set (`/proc/<pid>/statm`).
//! The node is the host's `/proc/stat` and `/proc/meminfo`.
//! `usageNanoCores` is the CPU time used between two samples divided by
//! the real time between them; a sampler refreshes the samples every 10 s
//! (cadvisor's housekeeping), and every request is a sample too.

use std::collections::HashMap;
use std::time::Duration;

use ackemu_base::clock::{Clock, ClusterInstant};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Clock ticks per second of `/proc` (`USER_HZ`, 100 on Linux).
const USER_HZ: u64 = 100;
const PAGE_SIZE: u64 = 4096;

/// CPU and memory of one process group.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Cumulative CPU time, ns.
    pub cpu_ns: u64,
    /// Resident set, bytes.
    pub rss_bytes: u64,
}

/// Fields of `/proc/<pid>/stat` after the command name: (pgid, utime+stime ticks).
pub fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] = state (field 3); pgrp is field 5, utime 14, stime 15.
    let pgid = f.get(2)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((pgid, utime + stime))
}

/// Usage of every process whose process group is `pgid`.
pub fn group_usage(pgid: u32) -> Usage {
    let mut u = Usage::default();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return u;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((pg, ticks)) = parse_stat(&stat) else {
            continue;
        };
        if pg != pgid {
            continue;
        }
        u.cpu_ns += ticks * (1_000_000_000 / USER_HZ);
        if let Ok(statm) = std::fs::read_to_string(format!("/proc/{pid}/statm"))
            && let Some(res) = statm
                .split_whitespace()
                .nth(1)
                .and_then(|r| r.parse::<u64>().ok())
        {
            u.rss_bytes += res * PAGE_SIZE;
        }
    }
    u
}

/// The node: CPU from `/proc/stat`, memory from `/proc/meminfo`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeUsage {
    /// Cumulative non-idle CPU time, ns.
    pub cpu_ns: u64,
    /// MemTotal.
    pub total: u64,
    /// MemAvailable.
    pub available: u64,
    /// MemTotal - MemFree.
    pub usage: u64,
    /// usage - Inactive(file).
    pub working_set: u64,
    /// AnonPages.
    pub rss: u64,
}

/// Parse `/proc/stat` and `/proc/meminfo`.
pub fn parse_node(stat: &str, meminfo: &str) -> NodeUsage {
    let mut n = NodeUsage::default();
    if let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) {
        let v: Vec<u64> = cpu
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let busy: u64 = [0usize, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|i| v.get(*i))
            .sum();
        n.cpu_ns = busy * (1_000_000_000 / USER_HZ);
    }
    let kb = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    n.total = kb("MemTotal");
    n.available = kb("MemAvailable");
    n.usage = n.total.saturating_sub(kb("MemFree"));
    n.working_set = n.usage.saturating_sub(kb("Inactive(file)"));
    n.rss = kb("AnonPages");
    n
}

/// Read the node's usage.
pub fn node_usage() -> NodeUsage {
    parse_node(
        &std::fs::read_to_string("/proc/stat").unwrap_or_default(),
        &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
    )
}

/// Previous CPU samples, keyed by container id (or `""` for the node).
#[derive(Default)]
pub struct Samples {
    last: Mutex<HashMap<String, (ClusterInstant, u64)>>,
}

impl Samples {
    /// Record `cpu_ns` for `key` at `now`; the rate since the previous
    /// sample in nanocores, if there was one.
    pub fn rate(&self, clock: &Clock, key: &str, now: ClusterInstant, cpu_ns: u64) -> Option<u64> {
        let mut m = self.last.lock();
        let prev = m.insert(key.to_string(), (now, cpu_ns));
        let (t0, c0) = prev?;
        let real = clock.to_real(now.saturating_duration_since(t0));
        if real < Duration::from_millis(1) {
            // Too close to say; keep the older sample.
            m.insert(key.to_string(), (t0, c0));
            return None;
        }
        let used = cpu_ns.saturating_sub(c0) as f64;
        Some((used / real.as_secs_f64()) as u64)
    }

    /// Forget keys not in `keep` (containers that went away).
    pub fn retain(&self, keep: &[String]) {
        self.last
            .lock()
            .retain(|k, _| k.is_empty() || keep.iter().any(|x| x == k));
    }
}

/// The `cpu` object.
pub fn cpu_json(time: &str, cpu_ns: u64, nano_cores: Option<u64>) -> Value {
    let mut v = json!({"time": time, "usageCoreNanoSeconds": cpu_ns});
    if let Some(n) = nano_cores {
        v["usageNanoCores"] = json!(n);
    }
    v
}

/// The `memory` object of a process group.
pub fn memory_json(time: &str, rss: u64, available: Option<u64>) -> Value {
    let mut v = json!({
        "time": time,
        "usageBytes": rss,
        "workingSetBytes": rss,
        "rssBytes": rss,
        "pageFaults": 0,
        "majorPageFaults": 0,
    });
    if let Some(a) = available {
        v["availableBytes"] = json!(a);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat =
            "4242 (sleep (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 5 1000 200";
        assert_eq!(parse_stat(stat), Some((4242, 10)));
        let n = parse_node(
            "cpu  100 5 50 1000 7 1 2 3 0 0\ncpu0 1 1 1 1\n",
            "MemTotal:       1000 kB\nMemFree:         200 kB\nMemAvailable:    600 kB\nInactive(file):  100 kB\nAnonPages:       300 kB\n",
        );
        assert_eq!(n.cpu_ns, (100 + 5 + 50 + 1 + 2 + 3) * 10_000_000);
        assert_eq!(n.total, 1_024_000);
        assert_eq!(n.available, 600 * 1024);
        assert_eq!(n.usage, 800 * 1024);
        assert_eq!(n.working_set, 700 * 1024);
        assert_eq!(n.rss, 300 * 1024);
    }

    #[test]
    fn rates_come_from_deltas() {
        let (clock, manual) = Clock::manual(1_700_000_000_000);
        let s = Samples::default();
        let t0 = clock.now();
        assert_eq!(s.rate(&clock, "c", t0, 1_000), None);
        manual.advance(Duration::from_secs(2));
        // 1 s of CPU in 2 s: half a core.
        assert_eq!(
            s.rate(&clock, "c", clock.now(), 1_000 + 1_000_000_000),
            Some(500_000_000)
        );
        s.retain(&[]);
        assert_eq!(s.rate(&clock, "c", clock.now(), 5), None);
    }
}
