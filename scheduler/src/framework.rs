//! The plugin framework (Kubernetes `pkg/scheduler/framework/interface.go`):
//! plugin statuses, the per-cycle state plugins share between their
//! extension points, and the Filter and Score plugin interfaces.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::trace::Trace;

/// The highest score a plugin gives a node after normalization.
pub const MAX_NODE_SCORE: i64 = 100;
pub const MIN_NODE_SCORE: i64 = 0;

/// What a plugin decided (`framework.Code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Success,
    /// An internal error: the cycle fails and the pod is retried after backoff.
    Error,
    /// The node does not fit now; preemption might help.
    Unschedulable,
    /// The node does not fit and preemption cannot help.
    UnschedulableAndUnresolvable,
    /// The plugin has nothing to say about this pod; its later extension
    /// points are skipped for this cycle.
    Skip,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Success => "Success",
            Code::Error => "Error",
            Code::Unschedulable => "Unschedulable",
            Code::UnschedulableAndUnresolvable => "UnschedulableAndUnresolvable",
            Code::Skip => "Skip",
        }
    }
}

/// A plugin's result with its reasons (`framework.Status`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub code: Code,
    pub reasons: Vec<String>,
    /// The plugin that produced it (set by the framework).
    pub plugin: &'static str,
}

impl Status {
    pub fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    pub fn skip() -> Status {
        Status {
            code: Code::Skip,
            ..Status::success()
        }
    }

    pub fn new(code: Code, reason: impl Into<String>) -> Status {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    pub fn with_reasons(code: Code, reasons: Vec<String>) -> Status {
        Status {
            code,
            reasons,
            plugin: "",
        }
    }

    pub fn error(message: impl Into<String>) -> Status {
        Status::new(Code::Error, message)
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }

    /// Unschedulable or UnschedulableAndUnresolvable.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    /// The reasons joined with ", " (`Status.Message`).
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

/// Data plugins compute at PreFilter/PreScore and read at Filter/Score,
/// private to one scheduling cycle (`framework.CycleState`).
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    pub fn new() -> CycleState {
        CycleState::default()
    }

    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    pub fn read<T: Any + Send + Sync>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key).and_then(|b| b.downcast_ref::<T>())
    }
}

/// Decides whether a pod can run on a node.
pub trait FilterPlugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Runs once per cycle before any Filter. `Skip` disables this plugin's
    /// Filter for the cycle; a rejection fails the pod on every node.
    fn pre_filter(&self, _state: &mut CycleState, _pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        Status::success()
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Ranks the nodes that passed every filter.
pub trait ScorePlugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Runs once per cycle with the feasible nodes. `Skip` leaves this plugin
    /// out of the cycle's scores (and out of the trace).
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _snapshot: &Snapshot,
        _nodes: &[Arc<NodeInfo>],
    ) -> Status {
        Status::success()
    }

    fn score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
        trace: &mut Trace,
    ) -> Result<i64, Status>;

    /// Rescales the raw scores of all feasible nodes (`ScoreExtensions`),
    /// in the same order as `nodes`.
    fn normalize(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        _scores: &mut [i64],
        _trace: &mut Trace,
    ) -> Status {
        Status::success()
    }

    /// The largest valid normalized score (100; 10 for the pre-1.14
    /// priority functions).
    fn max_score(&self) -> i64 {
        MAX_NODE_SCORE
    }
}

/// `helper.DefaultNormalizeScore`: scales to `0..=max` by the largest score;
/// with `reverse`, higher raw scores become lower ones (all zeros become
/// `max`).
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [i64]) {
    let max_count = scores.iter().copied().max().unwrap_or(0).max(0);
    if max_count == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max);
        }
        return;
    }
    for s in scores.iter_mut() {
        let mut v = max * *s / max_count;
        if reverse {
            v = max - v;
        }
        *s = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_normalize_table() {
        let cases: [(&[i64], bool, &[i64]); 5] = [
            (&[0, 0, 0], false, &[0, 0, 0]),
            (&[0, 0, 0], true, &[100, 100, 100]),
            (&[1, 2, 4], false, &[25, 50, 100]),
            (&[1, 2, 4], true, &[75, 50, 0]),
            (&[3, 0, 3], true, &[0, 100, 0]),
        ];
        for (input, reverse, want) in cases {
            let mut s = input.to_vec();
            default_normalize_score(100, reverse, &mut s);
            assert_eq!(s, want, "{input:?} reverse={reverse}");
        }
    }

    #[test]
    fn status_message_and_state() {
        let s = Status::with_reasons(
            Code::Unschedulable,
            vec!["Insufficient cpu".into(), "Insufficient memory".into()],
        );
        assert!(s.is_rejected());
        assert_eq!(s.message(), "Insufficient cpu, Insufficient memory");
        let mut st = CycleState::new();
        st.write("k", 7_u32);
        assert_eq!(st.read::<u32>("k"), Some(&7));
        assert_eq!(st.read::<i64>("k"), None);
    }
}
