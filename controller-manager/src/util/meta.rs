//! Object metadata helpers: keys, finalizers, owner references and the
//! adopt/release rules of `controller_ref_manager.go` (`ClaimObject`).

use std::collections::BTreeMap;

use ackemu_kube::LabelSelector;
use ackemu_kube::meta::{ObjectMeta, OwnerReference};

pub fn name(meta: &ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

pub fn namespace(meta: &ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

pub fn uid(meta: &ObjectMeta) -> &str {
    meta.uid.as_deref().unwrap_or("")
}

/// The workqueue key: `namespace/name`, or `name` for cluster objects.
pub fn key(meta: &ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", name(meta)),
        _ => name(meta).to_owned(),
    }
}

pub fn is_deleting(meta: &ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

pub fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// The finalizers without `finalizer`.
pub fn without_finalizer(meta: &ObjectMeta, finalizer: &str) -> Vec<String> {
    meta.finalizers
        .iter()
        .flatten()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect()
}

static EMPTY_LABELS: BTreeMap<String, String> = BTreeMap::new();

pub fn labels(meta: &ObjectMeta) -> &BTreeMap<String, String> {
    meta.labels.as_ref().unwrap_or(&EMPTY_LABELS)
}

pub fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// A controller reference to `owner` (`metav1.NewControllerRef`).
pub fn controller_ref(owner: &ObjectMeta, api_version: &str, kind: &str) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_owned(),
        kind: kind.to_owned(),
        name: name(owner).to_owned(),
        uid: uid(owner).to_owned(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What a controller does with an object its selector may cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Ours and matching.
    Owned,
    /// Orphan that matches: patch our controller reference in.
    Adopt,
    /// Ours but no longer matching: patch our reference out.
    Release,
    /// Someone else's, or not ours to touch.
    Ignore,
}

/// The owner as [`claim`] needs it.
#[derive(Clone, Copy, Debug)]
pub struct Claimant<'a> {
    pub uid: &'a str,
    pub deleting: bool,
    pub selector: &'a LabelSelector,
}

/// `BaseControllerRefManager.ClaimObject`.
pub fn claim(owner: Claimant<'_>, obj: &ObjectMeta) -> Claim {
    let matches = owner.selector.matches(labels(obj));
    match controller_of(obj) {
        Some(r) if r.uid != owner.uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        // Ours but no longer selected. An owner being deleted leaves it.
        Some(_) if owner.deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner.deleting || !matches || is_deleting(obj) => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// The owner references of `obj` with a controller reference added
/// (the adoption patch's content).
pub fn with_owner(obj: &ObjectMeta, r: OwnerReference) -> Vec<OwnerReference> {
    let mut refs: Vec<OwnerReference> = obj
        .owner_references
        .iter()
        .flatten()
        .filter(|x| x.uid != r.uid)
        .cloned()
        .collect();
    refs.push(r);
    refs
}

/// The owner references of `obj` without the one to `owner_uid`.
pub fn without_owner(obj: &ObjectMeta, owner_uid: &str) -> Vec<OwnerReference> {
    obj.owner_references
        .iter()
        .flatten()
        .filter(|x| x.uid != owner_uid)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(labels: &[(&str, &str)], owner: Option<&str>, deleting: bool) -> ObjectMeta {
        ObjectMeta {
            name: Some("p".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            owner_references: owner.map(|u| {
                vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "rs".into(),
                    uid: u.into(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]
            }),
            deletion_timestamp: deleting.then(|| crate::util::Now::at_secs(0).time()),
            ..Default::default()
        }
    }

    #[test]
    fn claim_table() {
        let sel = LabelSelector::parse("app=web").unwrap();
        let us = |deleting| Claimant {
            uid: "u1",
            deleting,
            selector: &sel,
        };
        let cases = [
            (
                "ours matching",
                us(false),
                meta(&[("app", "web")], Some("u1"), false),
                Claim::Owned,
            ),
            (
                "ours not matching",
                us(false),
                meta(&[("app", "x")], Some("u1"), false),
                Claim::Release,
            ),
            (
                "ours not matching, owner deleting",
                us(true),
                meta(&[("app", "x")], Some("u1"), false),
                Claim::Ignore,
            ),
            (
                "someone else's",
                us(false),
                meta(&[("app", "web")], Some("u2"), false),
                Claim::Ignore,
            ),
            (
                "orphan matching",
                us(false),
                meta(&[("app", "web")], None, false),
                Claim::Adopt,
            ),
            (
                "orphan matching, owner deleting",
                us(true),
                meta(&[("app", "web")], None, false),
                Claim::Ignore,
            ),
            (
                "orphan being deleted",
                us(false),
                meta(&[("app", "web")], None, true),
                Claim::Ignore,
            ),
            (
                "orphan not matching",
                us(false),
                meta(&[("app", "x")], None, false),
                Claim::Ignore,
            ),
        ];
        for (name, owner, obj, want) in cases {
            assert_eq!(claim(owner, &obj), want, "{name}");
        }
    }

    #[test]
    fn keys() {
        let mut m = ObjectMeta {
            name: Some("a".into()),
            ..Default::default()
        };
        assert_eq!(key(&m), "a");
        m.namespace = Some("ns".into());
        assert_eq!(key(&m), "ns/a");
    }
}
