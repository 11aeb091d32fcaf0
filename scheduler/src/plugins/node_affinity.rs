//! `NodeAffinity`: `nodeSelector` and required node affinity as a filter,
//! preferred node affinity (sum of matching terms' weights) as a score.

use std::collections::BTreeMap;
use std::sync::Arc;

use ackemu_kube::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Pod};

use crate::framework::{
    Code, CycleState, FilterPlugin, MAX_NODE_SCORE, ScorePlugin, Status, default_normalize_score,
};
use crate::plugins::names;
use crate::snapshot::{NodeInfo, PodInfo, Snapshot};
use crate::trace::Trace;

pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";

const PRE_FILTER_KEY: &str = "PreFilterNodeAffinity";
const PRE_SCORE_KEY: &str = "PreScoreNodeAffinity";

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt(i64),
    Lt(i64),
}

#[derive(Clone, Debug)]
struct Req {
    key: String,
    op: Op,
    values: Vec<String>,
}

impl Req {
    /// Validates like `nodeSelectorRequirementsAsSelector`; `None` when invalid.
    fn parse(r: &NodeSelectorRequirement, field: bool) -> Option<Req> {
        let values = r.values.clone().unwrap_or_default();
        let op = match r.operator.as_str() {
            "In" if !values.is_empty() => Op::In,
            "NotIn" if !values.is_empty() => Op::NotIn,
            "Exists" if values.is_empty() && !field => Op::Exists,
            "DoesNotExist" if values.is_empty() && !field => Op::DoesNotExist,
            "Gt" if values.len() == 1 && !field => Op::Gt(values[0].parse().ok()?),
            "Lt" if values.len() == 1 && !field => Op::Lt(values[0].parse().ok()?),
            _ => return None,
        };
        if field && (r.key != "metadata.name" || values.len() != 1) {
            return None;
        }
        Some(Req {
            key: r.key.clone(),
            op,
            values,
        })
    }

    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::In, Some(v)) => self.values.iter().any(|x| x == v),
            (Op::In, None) => false,
            (Op::NotIn, Some(v)) => !self.values.iter().any(|x| x == v),
            (Op::NotIn, None) => true,
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::Gt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x > *n),
            (Op::Lt(n), Some(v)) => v.parse::<i64>().is_ok_and(|x| x < *n),
            (Op::Gt(_) | Op::Lt(_), None) => false,
        }
    }
}

/// A parsed `NodeSelectorTerm`: its label requirements and its field
/// (`metadata.name`) requirements, all of which must hold.
#[derive(Clone, Debug)]
pub struct Term {
    labels: Vec<Req>,
    fields: Vec<Req>,
}

impl Term {
    /// `None` for an invalid term (it matches nothing, as in Kubernetes).
    pub fn parse(t: &NodeSelectorTerm) -> Option<Term> {
        let labels = t
            .match_expressions
            .iter()
            .flatten()
            .map(|r| Req::parse(r, false))
            .collect::<Option<Vec<_>>>()?;
        let fields = t
            .match_fields
            .iter()
            .flatten()
            .map(|r| Req::parse(r, true))
            .collect::<Option<Vec<_>>>()?;
        Some(Term { labels, fields })
    }

    /// An empty term matches no node.
    pub fn matches(&self, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.labels
            .iter()
            .all(|r| r.matches(labels.get(&r.key).map(String::as_str)))
            && self.fields.iter().all(|r| r.matches(Some(node_name)))
    }
}

/// `nodeSelector` AND (any of the required terms).
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    node_selector: Option<BTreeMap<String, String>>,
    /// `Some` when the pod has required terms; invalid terms are dropped.
    terms: Option<Vec<Term>>,
}

impl RequiredNodeAffinity {
    /// `GetRequiredNodeAffinity`.
    pub fn of(pod: &Pod) -> RequiredNodeAffinity {
        let spec = pod.spec.as_ref();
        let node_selector = spec
            .and_then(|s| s.node_selector.clone())
            .filter(|m| !m.is_empty());
        let terms = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .map(|ns| {
                ns.node_selector_terms
                    .iter()
                    .filter_map(Term::parse)
                    .collect()
            });
        RequiredNodeAffinity {
            node_selector,
            terms,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.node_selector.is_none() && self.terms.is_none()
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        if let Some(sel) = &self.node_selector
            && !sel.iter().all(|(k, v)| node.labels.get(k) == Some(v))
        {
            return false;
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(&node.labels, &node.name)),
        }
    }
}

/// The weighted preferred terms (`PreferredSchedulingTerms`).
#[derive(Clone, Debug, Default)]
pub struct PreferredTerms(Vec<(i64, Term)>);

impl PreferredTerms {
    pub fn of(pod: &Pod) -> PreferredTerms {
        let terms = pod
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .filter_map(|t| Term::parse(&t.preference).map(|p| (i64::from(t.weight), p)))
            .collect();
        PreferredTerms(terms)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The sum of the weights of the terms the node matches.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        self.0
            .iter()
            .filter(|(_, t)| t.matches(&node.labels, &node.name))
            .map(|(w, _)| w)
            .sum()
    }
}

#[derive(Clone, Debug)]
pub struct NodeAffinity {
    /// 100 for the plugin; 10 for the 1.11 `NodeAffinityPriority`.
    pub max_score: i64,
    pub name: &'static str,
}

impl Default for NodeAffinity {
    fn default() -> Self {
        NodeAffinity {
            max_score: MAX_NODE_SCORE,
            name: names::NODE_AFFINITY,
        }
    }
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        self.name
    }

    fn pre_filter(&self, state: &mut CycleState, pod: &PodInfo, _snapshot: &Snapshot) -> Status {
        let req = RequiredNodeAffinity::of(&pod.pod);
        if req.is_empty() {
            return Status::skip();
        }
        state.write(PRE_FILTER_KEY, req);
        Status::success()
    }

    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let computed;
        let req = match state.read::<RequiredNodeAffinity>(PRE_FILTER_KEY) {
            Some(r) => r,
            None => {
                computed = RequiredNodeAffinity::of(&pod.pod);
                &computed
            }
        };
        if req.matches(node) {
            Status::success()
        } else {
            Status::new(Code::UnschedulableAndUnresolvable, ERR_REASON_POD)
        }
    }
}

impl ScorePlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        self.name
    }

    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
        _nodes: &[Arc<NodeInfo>],
    ) -> Status {
        let pref = PreferredTerms::of(&pod.pod);
        if pref.is_empty() {
            return Status::skip();
        }
        state.write(PRE_SCORE_KEY, pref);
        Status::success()
    }

    fn score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
        _trace: &mut Trace,
    ) -> Result<i64, Status> {
        Ok(match state.read::<PreferredTerms>(PRE_SCORE_KEY) {
            Some(p) => p.score(node),
            None => PreferredTerms::of(&pod.pod).score(node),
        })
    }

    fn normalize(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _nodes: &[Arc<NodeInfo>],
        scores: &mut [i64],
        _trace: &mut Trace,
    ) -> Status {
        default_normalize_score(self.max_score, false, scores);
        Status::success()
    }

    fn max_score(&self) -> i64 {
        self.max_score
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{NodeBuilder, PodBuilder, field_term, term};
    use crate::plugins::run_filter;
    use crate::snapshot::Workloads;

    fn zone_node() -> NodeBuilder {
        NodeBuilder::new("n1")
            .label("topology.kubernetes.io/zone", "cn-hangzhou-h")
            .label("gpu", "true")
            .label("cores", "8")
    }

    #[test]
    fn node_affinity_filter_table() {
        let cases = [
            ("nothing required", PodBuilder::new("d", "p"), true),
            (
                "nodeSelector matches",
                PodBuilder::new("d", "p").node_selector("gpu", "true"),
                true,
            ),
            (
                "nodeSelector differs",
                PodBuilder::new("d", "p").node_selector("gpu", "false"),
                false,
            ),
            (
                "nodeSelector key absent",
                PodBuilder::new("d", "p").node_selector("ssd", "true"),
                false,
            ),
            (
                "In",
                PodBuilder::new("d", "p").required_term(term(&[(
                    "topology.kubernetes.io/zone",
                    "In",
                    &["cn-hangzhou-h", "x"],
                )])),
                true,
            ),
            (
                "NotIn",
                PodBuilder::new("d", "p").required_term(term(&[(
                    "topology.kubernetes.io/zone",
                    "NotIn",
                    &["cn-hangzhou-h"],
                )])),
                false,
            ),
            (
                "Exists",
                PodBuilder::new("d", "p").required_term(term(&[("gpu", "Exists", &[])])),
                true,
            ),
            (
                "DoesNotExist",
                PodBuilder::new("d", "p").required_term(term(&[("gpu", "DoesNotExist", &[])])),
                false,
            ),
            (
                "Gt",
                PodBuilder::new("d", "p").required_term(term(&[("cores", "Gt", &["4"])])),
                true,
            ),
            (
                "Lt",
                PodBuilder::new("d", "p").required_term(term(&[("cores", "Lt", &["4"])])),
                false,
            ),
            (
                "terms are ORed",
                PodBuilder::new("d", "p")
                    .required_term(term(&[("gpu", "In", &["false"])]))
                    .required_term(term(&[("cores", "In", &["8"])])),
                true,
            ),
            (
                "expressions in a term are ANDed",
                PodBuilder::new("d", "p")
                    .required_term(term(&[("gpu", "In", &["true"]), ("cores", "In", &["4"])])),
                false,
            ),
            (
                "matchFields on the node name",
                PodBuilder::new("d", "p").required_term(field_term(&[(
                    "metadata.name",
                    "In",
                    &["n1"],
                )])),
                true,
            ),
            (
                "matchFields on another name",
                PodBuilder::new("d", "p").required_term(field_term(&[(
                    "metadata.name",
                    "In",
                    &["n2"],
                )])),
                false,
            ),
            (
                "empty term matches nothing",
                PodBuilder::new("d", "p").required_term(term(&[])),
                false,
            ),
            (
                "invalid term matches nothing",
                PodBuilder::new("d", "p").required_term(term(&[("gpu", "In", &[])])),
                false,
            ),
            (
                "nodeSelector and affinity must both hold",
                PodBuilder::new("d", "p")
                    .node_selector("gpu", "false")
                    .required_term(term(&[("gpu", "Exists", &[])])),
                false,
            ),
        ];
        for (name, pod, fits) in cases {
            let s = run_filter(
                &NodeAffinity::default(),
                pod.build(),
                zone_node().build(),
                vec![],
            );
            assert_eq!(s.is_success(), fits, "{name}");
            if !fits {
                assert_eq!(s.reasons, [ERR_REASON_POD], "{name}");
                assert_eq!(s.code, Code::UnschedulableAndUnresolvable, "{name}");
            }
        }
    }

    #[test]
    fn node_affinity_score_table() {
        let nodes = vec![
            NodeBuilder::new("a")
                .label("zone", "a")
                .label("ssd", "true")
                .build(),
            NodeBuilder::new("b").label("zone", "b").build(),
            NodeBuilder::new("c")
                .label("zone", "c")
                .label("ssd", "true")
                .build(),
        ];
        let snap = Snapshot::from_objects(nodes, vec![], Workloads::default());
        let order: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|n| snap.get(n).cloned().unwrap())
            .collect();
        let cases = [
            (
                "one term",
                PodBuilder::new("d", "p").preferred_term(10, term(&[("zone", "In", &["a"])])),
                Some(vec![100, 0, 0]),
            ),
            (
                "weights add up and normalize by the best node",
                PodBuilder::new("d", "p")
                    .preferred_term(20, term(&[("zone", "In", &["a"])]))
                    .preferred_term(60, term(&[("ssd", "Exists", &[])])),
                Some(vec![100, 0, 75]),
            ),
            (
                "no node matches",
                PodBuilder::new("d", "p").preferred_term(5, term(&[("zone", "In", &["z"])])),
                Some(vec![0, 0, 0]),
            ),
            (
                "no preferred terms: skipped",
                PodBuilder::new("d", "p"),
                None,
            ),
        ];
        for (name, pod, want) in cases {
            let pod = PodInfo::new(pod.build());
            let pl = NodeAffinity::default();
            let mut state = CycleState::new();
            let pre = pl.pre_score(&mut state, &pod, &snap, &order);
            let Some(want) = want else {
                assert!(pre.is_skip(), "{name}");
                continue;
            };
            let mut scores: Vec<i64> = order
                .iter()
                .map(|n| {
                    pl.score(&state, &pod, n, &snap, &mut Trace::disabled())
                        .unwrap()
                })
                .collect();
            pl.normalize(&state, &pod, &order, &mut scores, &mut Trace::disabled());
            assert_eq!(scores, want, "{name}");
        }
    }
}
