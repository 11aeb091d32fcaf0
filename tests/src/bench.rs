//! `ackemu-e2e bench`: the figures issue #9 sets targets for, measured and
//! printed, never asserted — `ackemu up` until every node is Ready (target
//! ≤ 10 s), each scenario's wall time at the chosen time scale (target
//! ≤ 60 s at 60×) and the whole suite's.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use ackemu_base::clock::Clock;

use crate::cluster::{Cluster as _, LocalCluster, UpOptions};
use crate::scenario::{Run, Scenario};

/// Target for `ackemu up` to all nodes Ready.
pub const UP_TARGET: Duration = Duration::from_secs(10);
/// Target for one scenario at 60×.
pub const SCENARIO_TARGET: Duration = Duration::from_secs(60);

/// One `ackemu up` measurement.
#[derive(Debug, Clone)]
pub struct UpSample {
    /// Real time from starting `ackemu up` to every node Ready.
    pub to_ready: Duration,
    /// Real time `ackemu down --purge` took.
    pub down: Duration,
    /// Nodes Ready at the end (as kubectl lists them).
    pub ready_nodes: usize,
}

/// Brings a fresh cluster of `nodes` up in `dir`, checks with kubectl
/// that all of them are Ready, and takes it down again.
pub async fn measure_up(
    ackemu: &Path,
    dir: &Path,
    nodes: u32,
    time_scale: f64,
) -> anyhow::Result<UpSample> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let clock = Clock::real();
    let opts = UpOptions {
        nodes,
        time_scale,
        ..UpOptions::default()
    };
    let start = clock.now();
    let c = LocalCluster::up(ackemu, dir, &opts).await?;
    let to_ready = clock.now().saturating_duration_since(start);
    let listed = c.kubectl(&["get", "nodes", "-o", "json"]).await?;
    let ready_nodes = match listed.ok("kubectl get nodes") {
        Ok(out) => {
            let v: serde_json::Value = serde_json::from_str(&out)?;
            crate::scenarios::util::items(&v)
                .filter(|n| crate::scenarios::util::condition(n, "Ready"))
                .count()
        }
        Err(_) => 0,
    };
    let t = clock.now();
    c.down(true).await?;
    Ok(UpSample {
        to_ready,
        down: clock.now().saturating_duration_since(t),
        ready_nodes,
    })
}

/// Runs every scenario of `chosen` on its own fresh cluster under
/// `work_dir`; their records.
pub async fn run_scenarios(
    ackemu: &Path,
    work_dir: &Path,
    chosen: &[&'static Scenario],
    time_scale: f64,
) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for s in chosen {
        let dir = work_dir.join(s.id.to_lowercase());
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        runs.push(crate::run_local(s, ackemu, &dir, time_scale, true).await);
    }
    Ok(runs)
}

fn ratio(d: Duration, target: Duration) -> String {
    format!("{:.2}x", d.as_secs_f64() / target.as_secs_f64())
}

/// The benchmark report.
pub fn report(
    up: &[UpSample],
    nodes: u32,
    runs: &[Run],
    suite: Duration,
    time_scale: f64,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ackemu up --nodes {nodes} --time-scale {time_scale}: to all nodes Ready (target {}s)",
        UP_TARGET.as_secs()
    );
    let _ = writeln!(
        out,
        "  {:<4} {:>9} {:>9} {:>7} {:>9}",
        "RUN", "TO READY", "OF TARGET", "READY", "DOWN"
    );
    for (i, s) in up.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {:<4} {:>8.1}s {:>9} {:>4}/{:<2} {:>8.1}s",
            i + 1,
            s.to_ready.as_secs_f64(),
            ratio(s.to_ready, UP_TARGET),
            s.ready_nodes,
            nodes,
            s.down.as_secs_f64()
        );
    }
    if !up.is_empty() {
        let mut v: Vec<Duration> = up.iter().map(|s| s.to_ready).collect();
        v.sort();
        let median = v[v.len() / 2];
        let _ = writeln!(
            out,
            "  median {:.1}s ({} of target)",
            median.as_secs_f64(),
            ratio(median, UP_TARGET)
        );
    }
    if !runs.is_empty() {
        let scaled = SCENARIO_TARGET.mul_f64(60.0 / time_scale.max(1e-9));
        let _ = writeln!(
            out,
            "\nscenarios at --time-scale {time_scale}: wall time, a fresh cluster each (target {:.0}s)",
            scaled.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "  {:<5} {:<34} {:<6} {:>8} {:>9}",
            "ID", "SCENARIO", "RESULT", "WALL", "OF TARGET"
        );
        for r in runs {
            let _ = writeln!(
                out,
                "  {:<5} {:<34} {:<6} {:>7.1}s {:>9}",
                r.id,
                r.title,
                if r.passed() { "pass" } else { "FAIL" },
                r.wall.as_secs_f64(),
                ratio(r.wall, scaled)
            );
        }
        let over = runs.iter().filter(|r| r.wall > scaled).count();
        let _ = writeln!(
            out,
            "  suite: {} scenarios in {:.1}s, {} over target, {} failed",
            runs.len(),
            suite.as_secs_f64(),
            over,
            runs.iter().filter(|r| !r.passed()).count()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_prints_ratios_against_the_targets() {
        let up = vec![
            UpSample {
                to_ready: Duration::from_secs(15),
                down: Duration::from_secs(2),
                ready_nodes: 3,
            },
            UpSample {
                to_ready: Duration::from_secs(5),
                down: Duration::from_secs(1),
                ready_nodes: 3,
            },
        ];
        let out = report(&up, 3, &[], Duration::ZERO, 60.0);
        assert!(out.contains("1.50x"), "{out}");
        assert!(out.contains("0.50x"), "{out}");
        assert!(out.contains("3/3"), "{out}");
        assert!(out.contains("median 15.0s"), "{out}");
        assert!(!out.contains("scenarios at"), "{out}");
    }
}
