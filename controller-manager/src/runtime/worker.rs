//! The keyed, deduplicating, rate-limited work queue (lib/kube) and the
//! workers that drain it into a controller's `sync(key)`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ackemu_kube::client::workqueue::{QueueConfig, WorkQueue};

use super::Ctx;

/// What a sync asks for next.
#[derive(Debug)]
pub enum Next {
    Done,
    /// Sync this key again after this long (cluster time).
    After(Duration),
}

/// A named queue.
#[derive(Clone)]
pub struct Queue {
    pub name: &'static str,
    pub q: WorkQueue,
    ctx: Ctx,
}

impl Queue {
    pub fn new(name: &'static str, ctx: &Ctx) -> Queue {
        Queue {
            name,
            q: WorkQueue::new(
                QueueConfig {
                    capacity: ctx.queue_capacity,
                    base_delay: Duration::from_millis(5),
                    max_delay: Duration::from_secs(1000),
                },
                ctx.clock.clone(),
                ctx.tasks.clone(),
            ),
            ctx: ctx.clone(),
        }
    }

    pub fn add(&self, key: &str) {
        if !self.q.add(key) {
            tracing::warn!(
                "{} queue is full: dropping {key} until the next resync",
                self.name
            );
        }
    }

    /// `AddAfter`: the key is added once `d` of cluster time has passed.
    pub fn add_after(&self, key: &str, d: Duration) {
        if d.is_zero() {
            return self.add(key);
        }
        let me = self.clone();
        let key = key.to_owned();
        let token = self.ctx.tasks.token();
        let clock = self.ctx.clock.clone();
        self.ctx
            .tasks
            .spawn(format!("{} requeue {key}", self.name), async move {
                tokio::select! {
                    () = clock.sleep(d) => me.add(&key),
                    () = token.cancelled() => {}
                }
            });
    }

    /// Starts `workers` tasks calling `sync` for each key.
    pub fn run<F, Fut>(&self, workers: usize, sync: F)
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Next, String>> + Send + 'static,
    {
        let sync = Arc::new(sync);
        for i in 0..workers.max(1) {
            let me = self.clone();
            let sync = sync.clone();
            let token = self.ctx.tasks.token();
            self.ctx
                .tasks
                .spawn(format!("{} worker {i}", self.name), async move {
                    loop {
                        let key = tokio::select! {
                            k = me.q.get() => match k { Some(k) => k, None => return },
                            () = token.cancelled() => return,
                        };
                        match sync(key.clone()).await {
                            Ok(Next::Done) => me.q.forget(&key),
                            Ok(Next::After(d)) => {
                                me.q.forget(&key);
                                me.add_after(&key, d);
                            }
                            Err(e) => {
                                tracing::warn!(
                                    "{}: error syncing {key:?}: {e}, requeuing",
                                    me.name
                                );
                                me.q.add_rate_limited(&key);
                            }
                        }
                        me.q.done(&key);
                    }
                });
        }
    }
}
