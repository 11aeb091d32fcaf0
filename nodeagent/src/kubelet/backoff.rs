//! Crash-loop back-off (client-go's `flowcontrol.Backoff` as the kubelet
//! uses it): 10s doubling to a 5m cap per container; an entry not bumped for
//! twice the cap (10m of running) starts over. Times are cluster wall ms.

use std::collections::HashMap;
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
struct Entry {
    backoff: Duration,
    last_update_ms: i64,
}

/// Back-off per key.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Backoff {
    /// `initial` doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    fn expired(&self, e: &Entry, now_ms: i64) -> bool {
        now_ms.saturating_sub(e.last_update_ms) > (2 * self.max).as_millis() as i64
    }

    /// The current back-off of `key` (zero when none).
    pub fn get(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.backoff)
    }

    /// `IsInBackOffSince`: is `now` still within the back-off counted from
    /// `event_ms` (the container's finish time)?
    pub fn in_backoff_since(&self, key: &str, event_ms: i64, now_ms: i64) -> bool {
        match self.entries.get(key) {
            None => false,
            Some(e) if self.expired(e, now_ms) => false,
            Some(e) => now_ms.saturating_sub(event_ms) < e.backoff.as_millis() as i64,
        }
    }

    /// `IsInBackOffSinceUpdate`: when `key`'s back-off, counted from its
    /// last bump, ends — `None` when `now` is past it (or there is none).
    pub fn in_backoff_since_update(&self, key: &str, now_ms: i64) -> Option<i64> {
        let e = self.entries.get(key)?;
        let until = e.last_update_ms + e.backoff.as_millis() as i64;
        (!self.expired(e, now_ms) && now_ms < until).then_some(until)
    }

    /// When the back-off counted from `event_ms` ends.
    pub fn until_ms(&self, key: &str, event_ms: i64) -> i64 {
        event_ms + self.get(key).as_millis() as i64
    }

    /// `Next`: bump `key` at `event_ms` (start over when expired).
    pub fn next(&mut self, key: &str, event_ms: i64) {
        let fresh = match self.entries.get(key) {
            None => true,
            Some(e) => self.expired(e, event_ms),
        };
        let backoff = if fresh {
            self.initial
        } else {
            (self.get(key) * 2).min(self.max)
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                backoff,
                last_update_ms: event_ms,
            },
        );
    }

    /// Forget keys with `prefix` (a deleted pod).
    pub fn forget_prefix(&mut self, prefix: &str) {
        self.entries.retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_cap_and_resets_after_ten_minutes() {
        let s = 1000i64;
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let k = "ns/p/uid/app";
        // First exit: not in back-off; restart now and start counting.
        assert!(!b.in_backoff_since(k, 0, 0));
        b.next(k, 0);
        assert_eq!(b.get(k), Duration::from_secs(10));
        // Second exit right after: in back-off for 10s from its finish.
        let t1 = 2 * s;
        assert!(b.in_backoff_since(k, t1, t1 + 9 * s));
        assert!(!b.in_backoff_since(k, t1, t1 + 10 * s));
        b.next(k, t1 + 10 * s);
        assert_eq!(b.get(k), Duration::from_secs(20));
        let mut t = t1 + 10 * s;
        let mut want = 20;
        for _ in 0..6 {
            t += s;
            b.next(k, t);
            want = (want * 2).min(300);
            assert_eq!(b.get(k), Duration::from_secs(want));
        }
        assert_eq!(b.get(k), Duration::from_secs(300), "capped at 5m");
        // Ran for more than 10 minutes: the next exit starts over.
        let later = t + 601 * s;
        assert!(!b.in_backoff_since(k, later, later));
        b.next(k, later);
        assert_eq!(b.get(k), Duration::from_secs(10));
        assert_eq!(b.until_ms(k, later), later + 10 * s);
        b.forget_prefix("ns/p/");
        assert_eq!(b.get(k), Duration::ZERO);
    }
}
