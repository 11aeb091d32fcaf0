//! A work queue for level-triggered controllers (client-go's
//! `workqueue`): keys are deduplicated while waiting, a key being
//! processed is never handed out twice (a re-add while processing runs it
//! again after `done`), and failures are retried with per-key exponential
//! backoff on the cluster clock. Bounded: `add` refuses keys past capacity.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Limits and backoff of a queue.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Keys waiting or delayed at most.
    pub capacity: usize,
    /// First retry delay; doubles per failure (cluster time).
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(1000),
        }
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    dirty: HashSet<String>,
    processing: HashSet<String>,
    delayed: HashSet<String>,
    failures: HashMap<String, u32>,
    shut_down: bool,
}

#[derive(Clone)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
    cfg: QueueConfig,
    clock: Clock,
    tasks: Tasks,
}

impl WorkQueue {
    pub fn new(cfg: QueueConfig, clock: Clock, tasks: Tasks) -> Self {
        Self {
            state: Arc::new(Mutex::new(State::default())),
            notify: Arc::new(Notify::new()),
            cfg,
            clock,
            tasks,
        }
    }

    /// Queues a key; `false` if the queue is full or shut down.
    pub fn add(&self, key: &str) -> bool {
        let mut s = self.state.lock();
        if s.shut_down {
            return false;
        }
        if s.dirty.contains(key) {
            return true;
        }
        if s.dirty.len() + s.delayed.len() >= self.cfg.capacity {
            return false;
        }
        s.dirty.insert(key.to_owned());
        if !s.processing.contains(key) {
            s.queue.push_back(key.to_owned());
            drop(s);
            self.notify.notify_one();
        }
        true
    }

    /// The next key to process; `None` once shut down and drained.
    pub async fn get(&self) -> Option<String> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock();
                if let Some(k) = s.queue.pop_front() {
                    s.dirty.remove(&k);
                    s.processing.insert(k.clone());
                    if !s.queue.is_empty() {
                        self.notify.notify_one();
                    }
                    return Some(k);
                }
                if s.shut_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks a key processed; re-queues it if it was added meanwhile.
    pub fn done(&self, key: &str) {
        let mut s = self.state.lock();
        s.processing.remove(key);
        if s.dirty.contains(key) {
            s.queue.push_back(key.to_owned());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Clears a key's failure count (after a success).
    pub fn forget(&self, key: &str) {
        self.state.lock().failures.remove(key);
    }

    pub fn failures(&self, key: &str) -> u32 {
        self.state.lock().failures.get(key).copied().unwrap_or(0)
    }

    /// The backoff before the n-th retry (n ≥ 1).
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(31));
        self.cfg
            .base_delay
            .saturating_mul(factor)
            .min(self.cfg.max_delay)
    }

    /// Re-adds a key after its backoff; `false` if full or shut down.
    pub fn add_rate_limited(&self, key: &str) -> bool {
        let delay = {
            let mut s = self.state.lock();
            if s.shut_down || s.dirty.len() + s.delayed.len() >= self.cfg.capacity {
                return false;
            }
            let n = {
                let f = s.failures.entry(key.to_owned()).or_insert(0);
                *f += 1;
                *f
            };
            if !s.delayed.insert(key.to_owned()) {
                return true;
            }
            self.backoff(n)
        };
        let q = self.clone();
        let key = key.to_owned();
        let token = self.tasks.token();
        self.tasks
            .spawn(format!("workqueue retry {key}"), async move {
                tokio::select! {
                    () = q.clock.sleep(delay) => {}
                    () = token.cancelled() => return,
                }
                q.state.lock().delayed.remove(&key);
                q.add(&key);
            });
        true
    }

    /// Waiting keys (not counting delayed or in-process ones).
    pub fn len(&self) -> usize {
        self.state.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out keys once the queue is drained.
    pub fn shut_down(&self) {
        self.state.lock().shut_down = true;
        self.notify.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(cap: usize) -> WorkQueue {
        let clock = Clock::real();
        let tasks = Tasks::new(clock.clone());
        WorkQueue::new(
            QueueConfig {
                capacity: cap,
                base_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(1),
            },
            clock,
            tasks,
        )
    }

    #[tokio::test(start_paused = true)]
    async fn deduplicates_and_never_hands_out_a_key_twice() {
        let q = queue(10);
        assert!(q.add("default/a"));
        assert!(q.add("default/a"));
        assert!(q.add("default/b"));
        assert_eq!(q.len(), 2);
        let a = q.get().await.unwrap();
        assert_eq!(a, "default/a");
        // Re-added while processing: not handed out until done.
        assert!(q.add("default/a"));
        assert_eq!(q.get().await.unwrap(), "default/b");
        assert!(q.is_empty());
        q.done("default/a");
        assert_eq!(q.get().await.unwrap(), "default/a");
        q.done("default/a");
        q.done("default/b");
        q.shut_down();
        assert_eq!(q.get().await, None);
        assert!(!q.add("x"));
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_is_bounded() {
        let q = queue(2);
        assert!(q.add("a"));
        assert!(q.add("b"));
        assert!(!q.add("c"));
        assert!(q.add("a"), "a queued key is accepted again");
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially() {
        let q = queue(10);
        assert_eq!(q.backoff(1), Duration::from_millis(100));
        assert_eq!(q.backoff(3), Duration::from_millis(400));
        assert_eq!(q.backoff(30), Duration::from_secs(1));
        let clock = Clock::real();
        let start = clock.now();
        assert!(q.add_rate_limited("k"));
        assert!(
            q.add_rate_limited("k"),
            "a delayed key is not scheduled twice"
        );
        assert_eq!(q.failures("k"), 2);
        assert_eq!(q.get().await.unwrap(), "k");
        assert!(clock.now().duration_since(start) >= Duration::from_millis(100));
        q.done("k");
        q.forget("k");
        assert_eq!(q.failures("k"), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_getter_is_woken() {
        let q = queue(10);
        let q2 = q.clone();
        let tasks = Tasks::new(Clock::real());
        let h = tasks.spawn("getter", async move { q2.get().await });
        tokio::task::yield_now().await;
        q.add("late");
        assert_eq!(h.await.unwrap().as_deref(), Some("late"));
    }
}
