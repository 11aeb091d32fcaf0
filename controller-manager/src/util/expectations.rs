//! Expectations against stale caches (`controller_utils.go`
//! `ControllerExpectations`, `UIDTrackingControllerExpectations`).
//!
//! After a controller creates or deletes pods it must not act again on the
//! same owner until its informer has shown it those creations and
//! deletions; otherwise a reconcile over a cache that has not caught up
//! creates (or deletes) the same pods twice. Expectations expire after
//! [`EXPECTATIONS_TIMEOUT`] so a lost watch event cannot wedge an owner.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use ackemu_base::clock::ClusterInstant;

/// `ExpectationsTimeout`.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Clone, Debug, Default)]
struct Entry {
    add: i64,
    del: i64,
    at: ClusterInstant,
    /// Keys of pods whose deletion we wait to observe.
    deleting: BTreeSet<String>,
}

/// Outstanding creations and deletions per owner key.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    entries: HashMap<String, Entry>,
}

impl Expectations {
    pub fn new() -> Expectations {
        Expectations::default()
    }

    /// `SatisfiedExpectations`: true when nothing is outstanding, the owner
    /// was never seen, or the expectations have expired.
    pub fn satisfied(&self, key: &str, now: ClusterInstant) -> bool {
        match self.entries.get(key) {
            None => true,
            Some(e) if e.add <= 0 && e.del <= 0 => true,
            Some(e) => now.saturating_duration_since(e.at) > EXPECTATIONS_TIMEOUT,
        }
    }

    /// `ExpectCreations`.
    pub fn expect_creations(&mut self, key: &str, count: usize, now: ClusterInstant) {
        self.entries.insert(
            key.to_owned(),
            Entry {
                add: count as i64,
                del: 0,
                at: now,
                deleting: BTreeSet::new(),
            },
        );
    }

    /// `ExpectDeletions` with the pods' keys tracked
    /// (`UIDTrackingControllerExpectations`).
    pub fn expect_deletions(&mut self, key: &str, pod_keys: &[String], now: ClusterInstant) {
        self.entries.insert(
            key.to_owned(),
            Entry {
                add: 0,
                del: pod_keys.len() as i64,
                at: now,
                deleting: pod_keys.iter().cloned().collect(),
            },
        );
    }

    /// `SetExpectations`: creations and tracked deletions at once.
    pub fn expect(
        &mut self,
        key: &str,
        creations: usize,
        pod_keys: &[String],
        now: ClusterInstant,
    ) {
        self.entries.insert(
            key.to_owned(),
            Entry {
                add: creations as i64,
                del: pod_keys.len() as i64,
                at: now,
                deleting: pod_keys.iter().cloned().collect(),
            },
        );
    }

    /// An informer showed one of our pods appear (or a create failed or
    /// was skipped: the driver lowers the count the same way).
    pub fn creation_observed(&mut self, key: &str) {
        if let Some(e) = self.entries.get_mut(key) {
            e.add -= 1;
        }
    }

    /// An informer showed a pod disappear (or start terminating), or a
    /// delete failed.
    pub fn deletion_observed(&mut self, key: &str, pod_key: &str) {
        if let Some(e) = self.entries.get_mut(key)
            && e.deleting.remove(pod_key)
        {
            e.del -= 1;
        }
    }

    /// The owner is gone.
    pub fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Outstanding `(creations, deletions)`, for logs and tests.
    pub fn pending(&self, key: &str) -> Option<(i64, i64)> {
        self.entries.get(key).map(|e| (e.add, e.del))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> ClusterInstant {
        ClusterInstant::from_epoch(Duration::from_secs(s))
    }

    #[test]
    fn lifecycle() {
        let mut e = Expectations::new();
        assert!(e.satisfied("ns/rs", at(0)), "unknown owner");
        e.expect_creations("ns/rs", 2, at(0));
        assert!(!e.satisfied("ns/rs", at(1)));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs", at(1)));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs", at(1)));

        e.expect_deletions("ns/rs", &["ns/a".into(), "ns/b".into()], at(2));
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/a");
        e.deletion_observed("ns/rs", "ns/zzz");
        assert_eq!(e.pending("ns/rs"), Some((0, 1)), "each pod counts once");
        assert!(!e.satisfied("ns/rs", at(3)));
        assert!(e.satisfied("ns/rs", at(2 + 301)), "expired after 5 minutes");
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs", at(3)));
        e.forget("ns/rs");
        assert_eq!(e.pending("ns/rs"), None);
    }
}
