//! Network namespaces and processes, named the way iproute2 names them
//! (`/run/netns/<name>`, so `ip netns list` and `ip netns exec` see ours).
//! Namespace changes happen on dedicated threads: `setns` moves only the
//! calling thread, and sockets or TUN devices opened there stay in that
//! namespace after the thread is gone.

use std::fs::File;
use std::path::PathBuf;

use ackemu_base::tasks::Tasks;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot};

/// An error of the data plane's system work (namespaces, processes,
/// devices, sockets).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{what}: {message}")]
pub struct DataplaneError {
    pub what: String,
    pub message: String,
}

impl DataplaneError {
    pub fn new(what: impl Into<String>, message: impl ToString) -> DataplaneError {
        DataplaneError {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, DataplaneError>;

pub const NETNS_DIR: &str = "/run/netns";

pub fn path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Names of the namespaces `ip netns list` shows.
pub fn list() -> Vec<String> {
    std::fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `ip <args>`; the error carries its stderr.
pub async fn ip(args: &[&str]) -> Result<()> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| DataplaneError::new(format!("running ip {}", args.join(" ")), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(DataplaneError::new(
            format!("ip {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).trim(),
        ))
    }
}

/// Creates namespace `name` with `lo` up.
pub async fn add(name: &str) -> Result<()> {
    ip(&["netns", "add", name]).await?;
    ip(&["-n", name, "link", "set", "lo", "up"]).await
}

/// Deletes namespace `name` if it exists.
pub async fn del(name: &str) -> Result<()> {
    if !exists(name) {
        return Ok(());
    }
    ip(&["netns", "del", name]).await
}

/// Moves the calling thread into namespace `name`.
pub fn enter(name: &str) -> Result<()> {
    let f = File::open(path(name))
        .map_err(|e| DataplaneError::new(format!("opening network namespace {name}"), e))?;
    setns(f, CloneFlags::CLONE_NEWNET)
        .map_err(|e| DataplaneError::new(format!("entering network namespace {name}"), e))
}

fn ns_link_of(pid: &str) -> Option<String> {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// The `net:[inode]` identity of namespace `name`.
fn ns_identity(name: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path(name)).ok()?;
    Some(format!("net:[{}]", m.ino()))
}

fn numeric_proc_entries() -> Vec<String> {
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose (main thread's) network namespace is `name`.
pub fn pids_in(name: &str) -> Vec<i32> {
    let Some(id) = ns_identity(name) else {
        return Vec::new();
    };
    let me = std::process::id().to_string();
    numeric_proc_entries()
        .into_iter()
        .filter(|p| *p != me)
        .filter(|p| ns_link_of(p).as_deref() == Some(id.as_str()))
        .filter_map(|p| p.parse().ok())
        .filter(|p| alive(*p))
        .collect()
}

/// `(state, ppid)` from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split(' ');
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` runs (exists and is not a zombie).
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(s, _)| s != 'Z' && s != 'X')
}

/// Every live descendant of `root`.
pub fn descendants(root: i32) -> Vec<i32> {
    let parents: Vec<(i32, i32)> = numeric_proc_entries()
        .into_iter()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter_map(|p| stat(p).filter(|(s, _)| *s != 'Z').map(|(_, pp)| (p, pp)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (c, _) in parents.iter().filter(|(_, pp)| *pp == p) {
            if !out.contains(c) {
                out.push(*c);
                frontier.push(*c);
            }
        }
    }
    out
}

pub fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Sends `sig` to `pid`, ignoring processes that are already gone.
pub fn signal(pid: i32, sig: Signal) {
    let _ = kill(Pid::from_raw(pid), sig);
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread parked inside a network namespace, running jobs there (opening
/// sockets and TUN devices that belong to the namespace).
#[derive(Clone)]
pub struct NsThread {
    name: String,
    tx: mpsc::Sender<Job>,
}

impl NsThread {
    pub async fn start(tasks: &Tasks, name: &str) -> Result<NsThread> {
        let (tx, mut rx) = mpsc::channel::<Job>(64);
        let (ready_tx, ready_rx) = oneshot::channel();
        let ns = name.to_owned();
        tasks.spawn_thread(format!("netns/{name}"), move || {
            if let Err(e) = enter(&ns) {
                let _ = ready_tx.send(Err(e));
                return;
            }
            let _ = ready_tx.send(Ok(()));
            while let Some(job) = rx.blocking_recv() {
                job();
            }
        });
        ready_rx
            .await
            .map_err(|_| DataplaneError::new(format!("netns thread {name}"), "exited"))??;
        Ok(NsThread {
            name: name.to_owned(),
            tx,
        })
    }

    /// Runs `f` inside the namespace.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        let gone = || DataplaneError::new(format!("netns thread {}", self.name), "stopped");
        self.tx.send(job).await.map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}
