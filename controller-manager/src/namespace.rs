//! Namespace deletion (`pkg/controller/namespace/deletion`): when a
//! namespace has a deletionTimestamp, list every namespaced, deletable
//! resource that discovery reports, delete the namespace's content of each,
//! count what remains, record the five deletion conditions, and remove the
//! `kubernetes` finalizer only once nothing remains and nothing failed.
//!
//! Discovery errors are not fatal — the controller still deletes what it
//! can see — but they keep the namespace Terminating: a failed group means
//! content may remain that the controller cannot see. That is the seed
//! article's stuck namespace: with the `metrics.k8s.io/v1beta1` APIService
//! unavailable the namespace carries `NamespaceDeletionDiscoveryFailure`
//! with "unable to retrieve the complete list of server APIs:
//! metrics.k8s.io/v1beta1: the server is currently unable to handle the
//! request" until the aggregated API answers again.
//!
//! The work is split in three pure steps around the driver's IO:
//! [`plan`] (what to delete), [`gvr_outcome`] (what one resource's
//! deletion left behind) and [`conclude`] (conditions and the verdict).

use std::collections::BTreeMap;

use ackemu_kube::api::core::v1::{Namespace, NamespaceCondition, NamespaceStatus, Pod};
use ackemu_kube::meta::Time;

use crate::util::Now;

pub const FINALIZER_KUBERNETES: &str = "kubernetes";
/// `finalizerEstimateSeconds`: the wait when content has finalizers.
pub const FINALIZER_ESTIMATE_S: i64 = 15;

pub const COND_DISCOVERY: &str = "NamespaceDeletionDiscoveryFailure";
pub const COND_GV_PARSING: &str = "NamespaceDeletionGroupVersionParsingFailure";
pub const COND_CONTENT_FAILURE: &str = "NamespaceDeletionContentFailure";
pub const COND_CONTENT_REMAINING: &str = "NamespaceContentRemaining";
pub const COND_FINALIZERS_REMAINING: &str = "NamespaceFinalizersRemaining";

const CONDITION_TYPES: [(&str, &str, &str); 5] = [
    (
        COND_DISCOVERY,
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        COND_GV_PARSING,
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        COND_CONTENT_FAILURE,
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        COND_CONTENT_REMAINING,
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        COND_FINALIZERS_REMAINING,
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// A resource discovery reported.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiResource {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespaced: bool,
    pub verbs: Vec<String>,
}

impl ApiResource {
    pub fn gvr(&self) -> Gvr {
        Gvr {
            group: self.group.clone(),
            version: self.version.clone(),
            resource: self.resource.clone(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl std::fmt::Display for Gvr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "/{}, Resource={}", self.version, self.resource)
        } else {
            write!(
                f,
                "{}/{}, Resource={}",
                self.group, self.version, self.resource
            )
        }
    }
}

/// What discovery returned: the preferred versions' resources of every
/// group that answered, and the groups that did not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Discovery {
    pub resources: Vec<ApiResource>,
    /// `group/version` → error text.
    pub failed: BTreeMap<String, String>,
}

impl Discovery {
    /// `ErrGroupDiscoveryFailed.Error()`.
    pub fn error_text(&self) -> Option<String> {
        if self.failed.is_empty() {
            return None;
        }
        let mut groups: Vec<String> = self
            .failed
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        groups.sort();
        Some(format!(
            "unable to retrieve the complete list of server APIs: {}",
            groups.join(", ")
        ))
    }
}

/// The first step's verdict.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Not being deleted, or already finalized: nothing to do.
    Nothing,
    /// Delete the content of these resources (in any order), then call
    /// [`conclude`]. `status` is set when the phase must first be written
    /// as Terminating.
    DeleteContent {
        status: Option<NamespaceStatus>,
        gvrs: Vec<Gvr>,
        /// Whether each resource supports `deletecollection` (else list +
        /// delete each) and `list` (else nothing can be counted).
        deletecollection: BTreeMap<Gvr, bool>,
        list: BTreeMap<Gvr, bool>,
    },
}

fn finalized(ns: &Namespace) -> bool {
    ns.spec
        .as_ref()
        .and_then(|s| s.finalizers.as_ref())
        .is_none_or(|f| !f.iter().any(|x| x == FINALIZER_KUBERNETES))
}

/// `Delete` up to `deleteAllContent`.
pub fn plan(ns: &Namespace, discovery: &Discovery) -> Plan {
    if ns.metadata.deletion_timestamp.is_none() || finalized(ns) {
        return Plan::Nothing;
    }
    let phase = ns.status.as_ref().and_then(|s| s.phase.as_deref());
    let status = (phase != Some("Terminating")).then(|| {
        let mut st = ns.status.clone().unwrap_or_default();
        st.phase = Some("Terminating".into());
        st
    });
    let mut gvrs = Vec::new();
    let mut deletecollection = BTreeMap::new();
    let mut list = BTreeMap::new();
    for r in &discovery.resources {
        if !r.namespaced || !r.verbs.iter().any(|v| v == "delete") || r.resource.contains('/') {
            continue;
        }
        let g = r.gvr();
        if gvrs.contains(&g) {
            continue;
        }
        deletecollection.insert(g.clone(), r.verbs.iter().any(|v| v == "deletecollection"));
        list.insert(g.clone(), r.verbs.iter().any(|v| v == "list"));
        gvrs.push(g);
    }
    gvrs.sort();
    Plan::DeleteContent {
        status,
        gvrs,
        deletecollection,
        list,
    }
}

/// `estimateGracefulTerminationForPods`: the longest grace period of the
/// pods still running.
pub fn estimate_pods(pods: &[&Pod]) -> i64 {
    pods.iter()
        .filter(|p| !crate::util::pod::is_terminal(p))
        .filter_map(|p| p.spec.as_ref()?.termination_grace_period_seconds)
        .max()
        .unwrap_or(0)
        .max(0)
}

/// What deleting one resource's content left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GvrOutcome {
    pub gvr: Option<Gvr>,
    pub estimate_s: i64,
    pub remaining: usize,
    pub finalizers: BTreeMap<String, usize>,
    pub error: Option<String>,
}

/// `deleteAllContentForGroupVersionResource` after its IO: `estimate_s`
/// (pods' grace), the error of the delete calls, and the finalizers of each
/// item a list after deletion returned (`None` when list is unsupported or
/// the delete failed before listing).
pub fn gvr_outcome(
    gvr: &Gvr,
    namespace: &str,
    estimate_s: i64,
    delete_error: Option<String>,
    remaining: Option<Vec<Vec<String>>>,
) -> GvrOutcome {
    let mut o = GvrOutcome {
        gvr: Some(gvr.clone()),
        estimate_s,
        ..Default::default()
    };
    if let Some(e) = delete_error {
        o.error = Some(e);
        return o;
    }
    let Some(items) = remaining else { return o };
    for item in &items {
        for f in item {
            *o.finalizers.entry(f.clone()).or_default() += 1;
        }
    }
    o.remaining = items.len();
    if items.is_empty() || estimate_s != 0 {
        return o;
    }
    if !o.finalizers.is_empty() {
        o.estimate_s = FINALIZER_ESTIMATE_S;
        return o;
    }
    o.error = Some(format!(
        "unexpected items still remain in namespace: {namespace} for gvr: {gvr}"
    ));
    o
}

/// The verdict after all content was handled.
#[derive(Clone, Debug, PartialEq)]
pub struct Conclusion {
    /// `UpdateStatus` with these conditions (only when they changed).
    pub status: Option<NamespaceStatus>,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Remove `kubernetes` from `spec.finalizers` (`PUT …/finalize` with
    /// these finalizers); the API server then deletes the namespace.
    Finalize { finalizers: Vec<String> },
    /// Content is still going away: requeue after this many seconds.
    Remaining { estimate_s: i64 },
    /// Requeue with backoff; the text is what Kubernetes logs
    /// (`deletion of namespace <name> failed: <error>`).
    Failed { error: String },
}

/// `utilerrors.NewAggregate(...).Error()`.
fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn condition(type_: &str, status: &str, reason: &str, message: String) -> NamespaceCondition {
    NamespaceCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_transition_time: None,
    }
}

/// The rest of `deleteAllContent` and `Delete`.
pub fn conclude(
    ns: &Namespace,
    discovery: &Discovery,
    outcomes: &[GvrOutcome],
    now: Now,
) -> Conclusion {
    let mut errs: Vec<String> = Vec::new();
    let mut new: Vec<NamespaceCondition> = Vec::new();
    if let Some(e) = discovery.error_text() {
        errs.push(e.clone());
        new.push(condition(
            COND_DISCOVERY,
            "True",
            "DiscoveryFailed",
            format!(
                "Discovery failed for some groups, {} failing: {e}",
                discovery.failed.len()
            ),
        ));
    }
    let mut estimate = 0;
    let mut remaining: BTreeMap<String, usize> = BTreeMap::new();
    let mut finalizers: BTreeMap<String, usize> = BTreeMap::new();
    let mut delete_errs: Vec<String> = Vec::new();
    for o in outcomes {
        if let Some(e) = &o.error {
            errs.push(e.clone());
            delete_errs.push(e.clone());
        }
        estimate = estimate.max(o.estimate_s);
        if o.remaining > 0
            && let Some(g) = &o.gvr
        {
            remaining.insert(format!("{}.{}", g.resource, g.group), o.remaining);
            for (f, n) in &o.finalizers {
                if *n > 0 {
                    *finalizers.entry(f.clone()).or_default() += n;
                }
            }
        }
    }
    if !remaining.is_empty() {
        let parts: Vec<String> = remaining
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        new.push(condition(
            COND_CONTENT_REMAINING,
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", parts.join(", ")),
        ));
    }
    if !finalizers.is_empty() {
        let parts: Vec<String> = finalizers
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        new.push(condition(
            COND_FINALIZERS_REMAINING,
            "True",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                parts.join(", ")
            ),
        ));
    }
    if !delete_errs.is_empty() {
        new.push(condition(
            COND_CONTENT_FAILURE,
            "True",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                delete_errs.len(),
                aggregate(&delete_errs)
            ),
        ));
    }
    for (t, reason, msg) in CONDITION_TYPES {
        if !new.iter().any(|c| c.type_ == t) {
            new.push(condition(t, "False", reason, msg.into()));
        }
    }
    // Keep the order of CONDITION_TYPES, and old transition times.
    new.sort_by_key(|c| CONDITION_TYPES.iter().position(|x| x.0 == c.type_));
    let old = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut changed = false;
    for c in &mut new {
        match old.iter().find(|o| o.type_ == c.type_) {
            Some(o) if o.status == c.status && o.reason == c.reason && o.message == c.message => {
                c.last_transition_time = o.last_transition_time.clone();
            }
            _ => {
                changed = true;
                c.last_transition_time = Some(Time(now.wall));
            }
        }
    }
    let status = changed.then(|| {
        let mut st = ns.status.clone().unwrap_or_default();
        st.phase = Some("Terminating".into());
        let mut conds: Vec<NamespaceCondition> = old
            .into_iter()
            .filter(|o| !CONDITION_TYPES.iter().any(|x| x.0 == o.type_))
            .collect();
        conds.extend(new);
        st.conditions = Some(conds);
        st
    });
    let verdict = if !errs.is_empty() {
        Verdict::Failed {
            error: aggregate(&errs),
        }
    } else if estimate > 0 {
        Verdict::Remaining {
            estimate_s: estimate,
        }
    } else {
        Verdict::Finalize {
            finalizers: ns
                .spec
                .as_ref()
                .and_then(|s| s.finalizers.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != FINALIZER_KUBERNETES)
                .collect(),
        }
    };
    Conclusion { status, verdict }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::meta;
    use ackemu_kube::api::core::v1::NamespaceSpec;

    fn ns(deleting: bool) -> Namespace {
        Namespace {
            metadata: ackemu_kube::meta::ObjectMeta {
                deletion_timestamp: deleting.then(|| Time(crate::util::time::wall_at_secs(0))),
                ..meta("", "tobedeletedb")
            },
            spec: Some(NamespaceSpec {
                finalizers: Some(vec![FINALIZER_KUBERNETES.into()]),
            }),
            status: Some(NamespaceStatus {
                phase: Some("Active".into()),
                conditions: None,
            }),
        }
    }

    fn res(group: &str, version: &str, resource: &str, verbs: &[&str]) -> ApiResource {
        ApiResource {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
            namespaced: true,
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn discovery(metrics_down: bool) -> Discovery {
        let all = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let mut d = Discovery {
            resources: vec![
                res("", "v1", "pods", &all),
                res("", "v1", "configmaps", &all),
                res("apps", "v1", "deployments", &all),
                res(
                    "authorization.k8s.io",
                    "v1",
                    "localsubjectaccessreviews",
                    &["create"],
                ),
                res("", "v1", "pods/log", &["get"]),
            ],
            failed: BTreeMap::new(),
        };
        if metrics_down {
            d.failed.insert(
                "metrics.k8s.io/v1beta1".into(),
                "the server is currently unable to handle the request".into(),
            );
        } else {
            d.resources
                .push(res("metrics.k8s.io", "v1beta1", "pods", &["get", "list"]));
        }
        d
    }

    fn cond<'a>(st: &'a NamespaceStatus, t: &str) -> &'a NamespaceCondition {
        st.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .unwrap()
    }

    #[test]
    fn active_or_finalized_namespaces_are_left_alone() {
        assert_eq!(plan(&ns(false), &discovery(false)), Plan::Nothing);
        let mut done = ns(true);
        done.spec.as_mut().unwrap().finalizers = Some(vec![]);
        assert_eq!(plan(&done, &discovery(false)), Plan::Nothing);
    }

    #[test]
    fn plan_lists_deletable_namespaced_resources() {
        let Plan::DeleteContent {
            status,
            gvrs,
            deletecollection,
            ..
        } = plan(&ns(true), &discovery(false))
        else {
            panic!()
        };
        assert_eq!(status.unwrap().phase.as_deref(), Some("Terminating"));
        let names: Vec<String> = gvrs
            .iter()
            .map(|g| format!("{}/{}", g.group, g.resource))
            .collect();
        assert_eq!(
            names,
            vec!["/configmaps", "/pods", "apps/deployments"],
            "no create-only, read-only or subresources"
        );
        assert!(deletecollection.values().all(|v| *v));
    }

    #[test]
    fn s03_discovery_failure_keeps_the_namespace_terminating() {
        let n = ns(true);
        let d = discovery(true);
        let Plan::DeleteContent { gvrs, .. } = plan(&n, &d) else {
            panic!()
        };
        // Everything discovery could see was deleted.
        let outcomes: Vec<GvrOutcome> = gvrs
            .iter()
            .map(|g| gvr_outcome(g, "tobedeletedb", 0, None, Some(vec![])))
            .collect();
        let c = conclude(&n, &d, &outcomes, Now::at_secs(10));
        let want = "unable to retrieve the complete list of server APIs: metrics.k8s.io/v1beta1: the server is currently unable to handle the request";
        assert_eq!(c.verdict, Verdict::Failed { error: want.into() });
        let st = c.status.unwrap();
        assert_eq!(st.phase.as_deref(), Some("Terminating"));
        let dc = cond(&st, COND_DISCOVERY);
        assert_eq!(
            (dc.status.as_str(), dc.reason.as_deref()),
            ("True", Some("DiscoveryFailed"))
        );
        assert_eq!(
            dc.message.as_deref(),
            Some(format!("Discovery failed for some groups, 1 failing: {want}").as_str())
        );
        assert_eq!(
            cond(&st, COND_CONTENT_REMAINING).reason.as_deref(),
            Some("ContentRemoved")
        );

        // The APIService recovers: the same namespace is finalized.
        let mut n2 = n.clone();
        n2.status = Some(st);
        let d2 = discovery(false);
        let Plan::DeleteContent { gvrs, .. } = plan(&n2, &d2) else {
            panic!()
        };
        let outcomes: Vec<GvrOutcome> = gvrs
            .iter()
            .map(|g| gvr_outcome(g, "tobedeletedb", 0, None, Some(vec![])))
            .collect();
        let c = conclude(&n2, &d2, &outcomes, Now::at_secs(20));
        assert_eq!(c.verdict, Verdict::Finalize { finalizers: vec![] });
        let st = c.status.unwrap();
        let dc = cond(&st, COND_DISCOVERY);
        assert_eq!(
            (
                dc.status.as_str(),
                dc.reason.as_deref(),
                dc.message.as_deref()
            ),
            (
                "False",
                Some("ResourcesDiscovered"),
                Some("All resources successfully discovered")
            )
        );
    }

    #[test]
    fn remaining_content_and_finalizers() {
        let n = ns(true);
        let d = discovery(false);
        let pods = Gvr {
            group: "".into(),
            version: "v1".into(),
            resource: "pods".into(),
        };
        let cms = Gvr {
            group: "".into(),
            version: "v1".into(),
            resource: "configmaps".into(),
        };
        let deps = Gvr {
            group: "apps".into(),
            version: "v1".into(),
            resource: "deployments".into(),
        };
        let outcomes = vec![
            // Pods terminating with a 30 s grace period.
            gvr_outcome(&pods, "tobedeletedb", 30, None, Some(vec![vec![], vec![]])),
            // A ConfigMap held by a finalizer.
            gvr_outcome(
                &cms,
                "tobedeletedb",
                0,
                None,
                Some(vec![vec!["example.com/hold".into()]]),
            ),
            gvr_outcome(&deps, "tobedeletedb", 0, None, Some(vec![])),
        ];
        let c = conclude(&n, &d, &outcomes, Now::at_secs(1));
        assert_eq!(c.verdict, Verdict::Remaining { estimate_s: 30 });
        let st = c.status.unwrap();
        assert_eq!(
            cond(&st, COND_CONTENT_REMAINING).message.as_deref(),
            Some(
                "Some resources are remaining: configmaps. has 1 resource instances, pods. has 2 resource instances"
            )
        );
        assert_eq!(
            cond(&st, COND_FINALIZERS_REMAINING).message.as_deref(),
            Some(
                "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
            )
        );

        // Unchanged conditions are not rewritten.
        let mut n2 = n.clone();
        n2.status = Some(st);
        assert!(
            conclude(&n2, &d, &outcomes, Now::at_secs(2))
                .status
                .is_none()
        );

        // Items with no finalizer and no grace left are an error.
        let o = gvr_outcome(&deps, "tobedeletedb", 0, None, Some(vec![vec![]]));
        assert_eq!(
            o.error.as_deref(),
            Some(
                "unexpected items still remain in namespace: tobedeletedb for gvr: apps/v1, Resource=deployments"
            )
        );
        let c = conclude(
            &n,
            &d,
            &[
                o,
                gvr_outcome(&cms, "x", 0, Some("configmaps is forbidden".into()), None),
            ],
            Now::at_secs(3),
        );
        let st = c.status.unwrap();
        assert_eq!(
            cond(&st, COND_CONTENT_FAILURE).message.as_deref(),
            Some(
                "Failed to delete all resource types, 2 remaining: [unexpected items still remain in namespace: tobedeletedb for gvr: apps/v1, Resource=deployments, configmaps is forbidden]"
            )
        );
    }
}
