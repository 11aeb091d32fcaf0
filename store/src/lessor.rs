//! Lease expiry, decided by the leader alone in cluster time (pure).
//!
//! Grants and revocations are replicated through Raft; *when* a lease
//! expires is not: only the leader tracks deadlines, followers forward
//! keep-alives to it, and a new leader restarts every lease's full TTL (as
//! etcd's lessor promotion does) so a leader change never expires a lease
//! early. Times are cluster milliseconds from the member's clock.

use std::collections::BTreeMap;

/// The largest TTL etcd accepts (seconds).
pub const MAX_LEASE_TTL_S: i64 = 9_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LeaseTimer {
    ttl_s: i64,
    /// Deadline in cluster ms; only meaningful while primary.
    expiry_ms: u64,
    /// Expired and a revocation was proposed.
    revoking: bool,
}

#[derive(Debug)]
pub struct Lessor {
    leases: BTreeMap<i64, LeaseTimer>,
    primary: bool,
    min_ttl_s: i64,
    /// After proposing a revocation, wait this long before proposing again.
    revoke_retry_ms: u64,
}

impl Lessor {
    pub fn new(min_ttl_s: i64, revoke_retry_ms: u64) -> Self {
        Lessor {
            leases: BTreeMap::new(),
            primary: false,
            min_ttl_s,
            revoke_retry_ms,
        }
    }

    /// The TTL a grant request really gets: at least the minimum (which
    /// keeps a lease from expiring during a leader election).
    pub fn effective_ttl(&self, requested_s: i64) -> i64 {
        requested_s.max(self.min_ttl_s)
    }

    pub fn is_primary(&self) -> bool {
        self.primary
    }

    /// A grant was applied.
    pub fn grant(&mut self, id: i64, ttl_s: i64, now_ms: u64) {
        let expiry_ms = now_ms + ttl_ms(ttl_s);
        self.leases.insert(
            id,
            LeaseTimer {
                ttl_s,
                expiry_ms,
                revoking: false,
            },
        );
    }

    /// A revocation was applied.
    pub fn revoke(&mut self, id: i64) {
        self.leases.remove(&id);
    }

    /// This member became leader: every lease gets its full TTL from now.
    pub fn promote(&mut self, now_ms: u64) {
        self.primary = true;
        for t in self.leases.values_mut() {
            t.expiry_ms = now_ms + ttl_ms(t.ttl_s);
            t.revoking = false;
        }
    }

    pub fn demote(&mut self) {
        self.primary = false;
    }

    /// A keep-alive on the leader; returns the TTL, `None` for an unknown
    /// or already expired lease.
    pub fn renew(&mut self, id: i64, now_ms: u64) -> Option<i64> {
        let t = self.leases.get_mut(&id)?;
        if t.revoking || t.expiry_ms <= now_ms {
            return None;
        }
        t.expiry_ms = now_ms + ttl_ms(t.ttl_s);
        Some(t.ttl_s)
    }

    /// (remaining seconds, granted seconds); remaining is -1 once expired.
    pub fn time_to_live(&self, id: i64, now_ms: u64) -> Option<(i64, i64)> {
        let t = self.leases.get(&id)?;
        let remaining = if t.revoking || t.expiry_ms <= now_ms {
            -1
        } else {
            ((t.expiry_ms - now_ms) / 1000) as i64
        };
        Some((remaining, t.ttl_s))
    }

    /// Leases whose deadline passed, at most `max` of them, oldest deadline
    /// first. Each is given `revoke_retry_ms` before it is reported again.
    pub fn take_expired(&mut self, now_ms: u64, max: usize) -> Vec<i64> {
        if !self.primary {
            return Vec::new();
        }
        let mut due: Vec<(u64, i64)> = self
            .leases
            .iter()
            .filter(|(_, t)| t.expiry_ms <= now_ms)
            .map(|(id, t)| (t.expiry_ms, *id))
            .collect();
        due.sort_unstable();
        due.truncate(max);
        for (_, id) in &due {
            if let Some(t) = self.leases.get_mut(id) {
                t.expiry_ms = now_ms + self.revoke_retry_ms;
                t.revoking = true;
            }
        }
        due.into_iter().map(|(_, id)| id).collect()
    }
}

fn ttl_ms(ttl_s: i64) -> u64 {
    (ttl_s.max(0) as u64).saturating_mul(1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_primary_expires_leases() {
        let mut l = Lessor::new(2, 3_000);
        l.grant(1, 5, 0);
        assert_eq!(
            l.take_expired(10_000, 10),
            Vec::<i64>::new(),
            "followers never expire"
        );
        l.promote(10_000);
        assert_eq!(
            l.take_expired(14_999, 10),
            Vec::<i64>::new(),
            "promotion restarts the TTL"
        );
        assert_eq!(l.take_expired(15_000, 10), vec![1]);
        assert_eq!(
            l.take_expired(15_001, 10),
            Vec::<i64>::new(),
            "not proposed twice in a row"
        );
        assert_eq!(
            l.take_expired(18_000, 10),
            vec![1],
            "retried when the revocation did not land"
        );
        l.revoke(1);
        assert_eq!(l.take_expired(100_000, 10), Vec::<i64>::new());
    }

    #[test]
    fn keepalive_extends_and_ttl_reports() {
        let mut l = Lessor::new(2, 3_000);
        l.promote(0);
        l.grant(7, 10, 0);
        // (now, action, expected)
        assert_eq!(l.time_to_live(7, 2_500), Some((7, 10)));
        assert_eq!(l.renew(7, 9_000), Some(10));
        assert_eq!(l.time_to_live(7, 9_000), Some((10, 10)));
        assert_eq!(l.take_expired(18_999, 10), Vec::<i64>::new());
        assert_eq!(l.take_expired(19_000, 10), vec![7]);
        assert_eq!(
            l.renew(7, 19_000),
            None,
            "an expired lease cannot be renewed"
        );
        assert_eq!(
            l.time_to_live(7, 19_000),
            Some((-1, 10)),
            "expired, revocation pending"
        );
        assert_eq!(l.renew(99, 0), None);
        assert_eq!(l.effective_ttl(1), 2);
        assert_eq!(l.effective_ttl(60), 60);
    }

    #[test]
    fn expiry_is_bounded_and_ordered() {
        let mut l = Lessor::new(1, 1_000);
        l.promote(0);
        for (id, ttl) in [(1, 3), (2, 1), (3, 2)] {
            l.grant(id, ttl, 0);
        }
        assert_eq!(l.take_expired(5_000, 2), vec![2, 3]);
        assert_eq!(l.take_expired(5_000, 2), vec![1]);
    }
}
