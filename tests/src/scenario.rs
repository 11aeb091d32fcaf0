//! A scenario is setup → inject → observe → heal → recover (SCENARIOS.md);
//! each phase records steps ("symptom seen", with the cluster time it took)
//! into a [`Run`], which becomes a line of the report.

use std::time::Duration;

use ackemu_base::clock::Clock;

use crate::cluster::Cluster;

/// The phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Setup,
    Inject,
    Observe,
    Heal,
    Recover,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Setup => "setup",
            Phase::Inject => "inject",
            Phase::Observe => "observe",
            Phase::Heal => "heal",
            Phase::Recover => "recover",
        }
    }
}

/// One recorded step.
#[derive(Debug, Clone)]
pub struct Step {
    pub phase: Phase,
    pub what: String,
    /// Cluster time since the scenario started.
    pub at: Duration,
    pub ok: bool,
    pub detail: String,
}

/// The record of one scenario run.
#[derive(Debug)]
pub struct Run {
    pub id: &'static str,
    pub title: &'static str,
    pub backend: &'static str,
    pub steps: Vec<Step>,
    pub error: Option<String>,
    /// Real time the whole run took.
    pub wall: Duration,
    clock: Clock,
    start: ackemu_base::clock::ClusterInstant,
    scale: f64,
    phase: Phase,
}

impl Run {
    pub fn new(id: &'static str, title: &'static str, c: &impl Cluster) -> Run {
        let clock = Clock::real();
        Run {
            start: clock.now(),
            id,
            title,
            backend: c.backend(),
            steps: Vec::new(),
            error: None,
            wall: Duration::ZERO,
            clock,
            scale: c.time_scale(),
            phase: Phase::Setup,
        }
    }

    /// The record of a scenario whose cluster never started.
    pub fn failed_start(s: &Scenario) -> Run {
        let clock = Clock::real();
        Run {
            start: clock.now(),
            id: s.id,
            title: s.title,
            backend: "local",
            steps: Vec::new(),
            error: None,
            wall: Duration::ZERO,
            clock,
            scale: 1.0,
            phase: Phase::Setup,
        }
    }

    /// Whether every step passed and nothing failed.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.steps.iter().all(|s| s.ok)
    }

    /// Enters `phase`.
    pub fn phase(&mut self, phase: Phase) {
        self.phase = phase;
        println!("  -- {}", phase.as_str());
    }

    /// Cluster time since the start.
    pub fn elapsed(&self) -> Duration {
        self.clock
            .now()
            .saturating_duration_since(self.start)
            .mul_f64(self.scale)
    }

    /// Records a step that happened.
    pub fn step(&mut self, what: impl Into<String>, detail: impl Into<String>) {
        self.record(what.into(), detail.into(), true);
    }

    fn record(&mut self, what: String, detail: String, ok: bool) {
        let s = Step {
            phase: self.phase,
            what,
            at: self.elapsed(),
            ok,
            detail,
        };
        println!(
            "     [{:>7.1}s] {}{}: {}",
            s.at.as_secs_f64(),
            if ok { "" } else { "FAILED " },
            s.what,
            s.detail
        );
        self.steps.push(s);
    }

    /// Polls `check` until it yields a value or `deadline` of cluster
    /// time passes; records the step either way.
    pub async fn eventually<T, F, Fut>(
        &mut self,
        what: &str,
        deadline: Duration,
        mut check: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<(T, String)>>>,
    {
        let real = deadline.div_f64(self.scale.max(1e-9));
        let end = self.clock.now() + real;
        let mut last = String::new();
        loop {
            match check().await {
                Ok(Some((v, detail))) => {
                    self.step(what, detail);
                    return Ok(v);
                }
                Ok(None) => {}
                Err(e) => last = format!("{e:#}"),
            }
            if self.clock.now() > end {
                let detail = format!("not seen within {deadline:?} of cluster time {last}");
                self.record(what.to_owned(), detail, false);
                anyhow::bail!("{what}: not seen within {deadline:?} of cluster time {last}");
            }
            self.clock.sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A scenario of SCENARIOS.md.
#[derive(Debug)]
pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    /// Worker nodes it needs.
    pub nodes: u32,
    /// Store quota it needs (0: default).
    pub store_quota_bytes: u64,
    /// Further `ackemu up` flags it needs.
    pub up_args: &'static [&'static str],
}
