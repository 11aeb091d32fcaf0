//! Named tasks on a tracker with a cancellation token, and a registry of what
//! every task (and every explicit waiter) is waiting on.
//!
//! The registry is what `/debug/tasks` and `FaultService.DumpTasks` print —
//! the equivalent of a goroutine dump: each task's name, what it waits on and
//! for how long, the oldest waiter first (S02 is found this way).
#![allow(clippy::disallowed_methods)] // the sanctioned home of spawn

use std::cell::Cell;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::{Clock, ClusterInstant};
use crate::clock_global::process_clock;

/// What kind of entry a registry row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An async task.
    Task,
    /// An OS thread.
    Thread,
    /// A wait registered with [`waiter`] outside any named task.
    Waiter,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Task => "task",
            Kind::Thread => "thread",
            Kind::Waiter => "waiter",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: Kind,
    started: ClusterInstant,
    waiting: Option<(String, ClusterInstant)>,
}

/// One row of a task dump.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    /// Registry id.
    pub id: u64,
    /// Task name.
    pub name: String,
    /// Task, thread or waiter.
    pub kind: &'static str,
    /// What it waits on, if anything.
    pub waiting_on: Option<String>,
    /// How long it has waited (cluster time).
    pub waiting: Duration,
    /// How long it has existed (cluster time).
    pub age: Duration,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static REGISTRY: LazyLock<Mutex<BTreeMap<u64, Entry>>> =
    LazyLock::new(|| Mutex::new(BTreeMap::new()));

tokio::task_local! {
    static TASK_ID: u64;
}
thread_local! {
    static THREAD_TASK_ID: Cell<Option<u64>> = const { Cell::new(None) };
}

fn now() -> ClusterInstant {
    process_clock().now()
}

fn insert(name: String, kind: Kind) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    REGISTRY.lock().insert(
        id,
        Entry {
            name,
            kind,
            started: now(),
            waiting: None,
        },
    );
    id
}

struct Deregister(u64);
impl Drop for Deregister {
    fn drop(&mut self) {
        REGISTRY.lock().remove(&self.0);
    }
}

fn current_id() -> Option<u64> {
    TASK_ID
        .try_with(|id| *id)
        .ok()
        .or_else(|| THREAD_TASK_ID.with(Cell::get))
}

/// Every task, thread and waiter, the longest-waiting first, then by age.
pub fn dump() -> Vec<TaskInfo> {
    let now = now();
    let mut rows: Vec<TaskInfo> = REGISTRY
        .lock()
        .iter()
        .map(|(id, e)| TaskInfo {
            id: *id,
            name: e.name.clone(),
            kind: e.kind.as_str(),
            waiting_on: e.waiting.as_ref().map(|(w, _)| w.clone()),
            waiting: e.waiting.as_ref().map_or(Duration::ZERO, |(_, since)| {
                now.saturating_duration_since(*since)
            }),
            age: now.saturating_duration_since(e.started),
        })
        .collect();
    rows.sort_by(|a, b| {
        b.waiting_on
            .is_some()
            .cmp(&a.waiting_on.is_some())
            .then(b.waiting.cmp(&a.waiting))
            .then(b.age.cmp(&a.age))
            .then(a.id.cmp(&b.id))
    });
    rows
}

/// Render [`dump`] as the text `/debug/tasks` serves.
pub fn render_dump() -> String {
    let rows = dump();
    let mut out = format!("{} tasks/threads/waiters, longest wait first\n", rows.len());
    for r in rows {
        match &r.waiting_on {
            Some(w) => out.push_str(&format!(
                "#{:<6} {:<7} {:<40} waiting {:>12} on {}  (age {})\n",
                r.id,
                r.kind,
                r.name,
                fmt_dur(r.waiting),
                w,
                fmt_dur(r.age)
            )),
            None => out.push_str(&format!(
                "#{:<6} {:<7} {:<40} running/idle            (age {})\n",
                r.id,
                r.kind,
                r.name,
                fmt_dur(r.age)
            )),
        }
    }
    out
}

/// Human duration like Go's: `3m0.1s`, `250ms`.
pub fn fmt_dur(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = d.as_secs_f64();
    let h = (secs / 3600.0).floor();
    let m = ((secs - h * 3600.0) / 60.0).floor();
    let s = secs - h * 3600.0 - m * 60.0;
    let s = format!("{s:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if h > 0.0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0.0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

/// Marks the current task/thread (or a fresh waiter row) as waiting on
/// something until dropped.
pub struct WaitGuard {
    id: u64,
    previous: Option<Option<(String, ClusterInstant)>>,
}

impl Drop for WaitGuard {
    fn drop(&mut self) {
        let mut reg = REGISTRY.lock();
        match self.previous.take() {
            // We borrowed an existing task's row: restore its previous wait.
            Some(prev) => {
                if let Some(e) = reg.get_mut(&self.id) {
                    e.waiting = prev;
                }
            }
            // A row of our own.
            None => {
                reg.remove(&self.id);
            }
        }
    }
}

/// Record that the current task/thread waits on `what` until the guard drops.
/// Outside a named task it registers its own row (kind `waiter`).
pub fn waiter(what: impl Into<String>) -> WaitGuard {
    let what = what.into();
    let at = now();
    if let Some(id) = current_id() {
        let mut reg = REGISTRY.lock();
        if let Some(e) = reg.get_mut(&id) {
            // A wait inside a wait reads like a stack: the outer call, then
            // what it is stuck on now (`netlink recvfrom … > failpoint …`).
            let label = match &e.waiting {
                Some((outer, _)) => format!("{outer} > {what}"),
                None => what,
            };
            let previous = e.waiting.replace((label, at));
            return WaitGuard {
                id,
                previous: Some(previous),
            };
        }
    }
    let id = insert(what.clone(), Kind::Waiter);
    if let Some(e) = REGISTRY.lock().get_mut(&id) {
        e.waiting = Some((what, at));
    }
    WaitGuard { id, previous: None }
}

/// Await `fut`, recorded as waiting on `what` meanwhile.
pub async fn wait_on<F: Future>(what: impl Into<String>, fut: F) -> F::Output {
    let _g = waiter(what);
    fut.await
}

/// A named-task spawner: tracker + cancellation token + the registry.
#[derive(Clone)]
pub struct Tasks {
    tracker: TaskTracker,
    token: CancellationToken,
    clock: Clock,
}

impl std::fmt::Debug for Tasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tasks")
            .field("tasks", &self.tracker.len())
            .field("cancelled", &self.token.is_cancelled())
            .finish()
    }
}

impl Tasks {
    /// A fresh root.
    pub fn new(clock: Clock) -> Tasks {
        Tasks {
            tracker: TaskTracker::new(),
            token: CancellationToken::new(),
            clock,
        }
    }

    /// The clock the tasks run on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Spawn `fut` as a named task. It shows in the task dump while it runs.
    pub fn spawn<F>(&self, name: impl Into<String>, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let id = insert(name.into(), Kind::Task);
        self.tracker.spawn(TASK_ID.scope(id, async move {
            let _d = Deregister(id);
            fut.await
        }))
    }

    /// Run blocking `f` on tokio's blocking pool as a named entry.
    pub fn spawn_blocking<F, R>(&self, name: impl Into<String>, f: F) -> tokio::task::JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let id = insert(name.into(), Kind::Thread);
        self.tracker.spawn_blocking(move || {
            let _d = Deregister(id);
            THREAD_TASK_ID.with(|c| c.set(Some(id)));
            let r = f();
            THREAD_TASK_ID.with(|c| c.set(None));
            r
        })
    }

    /// Start a named OS thread (not tracked for shutdown: it must watch the token).
    pub fn spawn_thread<F, R>(&self, name: impl Into<String>, f: F) -> std::thread::JoinHandle<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let name = name.into();
        let id = insert(name.clone(), Kind::Thread);
        let mut thread_name = name;
        thread_name.truncate(15);
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let _d = Deregister(id);
                THREAD_TASK_ID.with(|c| c.set(Some(id)));
                f()
            })
            .expect("spawning an OS thread")
    }

    /// Cancelled on SIGTERM/SIGINT or [`Tasks::shutdown`].
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Resolves when shutdown starts.
    pub async fn cancelled(&self) {
        self.token.cancelled().await;
    }

    /// A child scope: its own token (cancelled with ours, or alone), same tracker.
    pub fn child(&self) -> Tasks {
        Tasks {
            tracker: self.tracker.clone(),
            token: self.token.child_token(),
            clock: self.clock.clone(),
        }
    }

    /// Number of live tracked tasks.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no tracked task is alive.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Cancel the token and wait for every tracked task to finish.
    pub async fn shutdown(&self) {
        self.token.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot install SIGTERM handler: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM, shutting down"),
        r = tokio::signal::ctrl_c() => {
            if r.is_ok() { tracing::info!("received SIGINT, shutting down") }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dump_shows_named_task_and_its_wait() {
        let tasks = Tasks::new(Clock::real());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let h = tasks.spawn("unit/dump-test", async move {
            wait_on("the test's oneshot", async move {
                started_tx.send(()).ok();
                rx.await.ok();
            })
            .await;
        });
        started_rx.await.unwrap();
        let rows = dump();
        let row = rows
            .iter()
            .find(|r| r.name == "unit/dump-test")
            .expect("listed");
        assert_eq!(row.kind, "task");
        assert_eq!(row.waiting_on.as_deref(), Some("the test's oneshot"));
        assert!(render_dump().contains("unit/dump-test"));
        tx.send(()).unwrap();
        h.await.unwrap();
        assert!(
            !dump().iter().any(|r| r.name == "unit/dump-test"),
            "deregistered on exit"
        );
    }

    #[tokio::test]
    async fn a_wait_inside_a_wait_shows_both_and_unwinds() {
        let tasks = Tasks::new(Clock::real());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let h = tasks.spawn("unit/nested-test", async move {
            wait_on("netlink recvfrom: RTM_DELLINK", async move {
                wait_on("failpoint x (hang)", async move {
                    started_tx.send(()).ok();
                    rx.await.ok();
                })
                .await;
                assert_eq!(
                    waiting_of("unit/nested-test").as_deref(),
                    Some("netlink recvfrom: RTM_DELLINK"),
                    "the outer wait is back once the inner one ends"
                );
            })
            .await;
        });
        started_rx.await.unwrap();
        assert_eq!(
            waiting_of("unit/nested-test").as_deref(),
            Some("netlink recvfrom: RTM_DELLINK > failpoint x (hang)")
        );
        tx.send(()).unwrap();
        h.await.unwrap();
    }

    fn waiting_of(name: &str) -> Option<String> {
        dump()
            .into_iter()
            .find(|r| r.name == name)
            .and_then(|r| r.waiting_on)
    }

    #[tokio::test]
    async fn standalone_waiter_gets_its_own_row() {
        let g = waiter("unit/standalone lock");
        assert!(
            dump()
                .iter()
                .any(|r| r.kind == "waiter" && r.name == "unit/standalone lock")
        );
        drop(g);
        assert!(!dump().iter().any(|r| r.name == "unit/standalone lock"));
    }

    #[tokio::test]
    async fn shutdown_cancels_and_waits() {
        let tasks = Tasks::new(Clock::real());
        let t = tasks.child();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tasks.spawn("unit/until-cancelled", async move {
            t.cancelled().await;
            done_tx.send(()).ok();
        });
        tasks.shutdown().await;
        done_rx
            .await
            .expect("task saw cancellation before shutdown returned");
        assert!(tasks.is_empty());
    }

    #[test]
    fn formats_durations_like_go() {
        assert_eq!(fmt_dur(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_dur(Duration::from_millis(180_100)), "3m0.1s");
        assert_eq!(fmt_dur(Duration::from_secs(3)), "3s");
        assert_eq!(fmt_dur(Duration::from_secs(3723)), "1h2m3s");
    }
}
