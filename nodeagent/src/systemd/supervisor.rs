//! One task per `.service` unit: start its main process, watch it, apply
//! `Restart=`/`RestartSec=`/the start limit, stop it with SIGTERM then
//! SIGKILL after `TimeoutStopSec=`. Decisions come from [`super::unitfile`].

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ackemu_base::clock::Clock;
use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::manager::Event;
use super::unitfile::{self, Exit, ServiceUnit};

/// What the manager asks a supervisor to do (`job` is reported back done).
#[derive(Debug, Clone, Copy)]
pub enum SvcCmd {
    /// StartUnit.
    Start {
        /// Job to complete.
        job: Option<u32>,
    },
    /// StopUnit.
    Stop {
        /// Job to complete.
        job: Option<u32>,
    },
    /// RestartUnit.
    Restart {
        /// Job to complete.
        job: Option<u32>,
    },
}

/// A supervisor's state change.
#[derive(Debug, Clone)]
pub struct UnitReport {
    /// Unit name.
    pub name: String,
    /// ActiveState.
    pub active_state: &'static str,
    /// SubState.
    pub sub_state: &'static str,
    /// Main PID (0 when none).
    pub main_pid: u32,
    /// NRestarts.
    pub restarts: u32,
    /// Result.
    pub result: &'static str,
    /// Last exit code (or signal number).
    pub exit_code: i32,
    /// A job this change completes, with its result.
    pub job_done: Option<(u32, &'static str)>,
    /// The supervisor task is exiting (shutdown).
    pub exited_supervisor: bool,
}

/// Read every `*.service` in `dir`.
pub fn load_units(dir: &Path) -> anyhow::Result<Vec<ServiceUnit>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "service"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&p)?;
        out.push(unitfile::parse_service(&name, &text)?);
    }
    Ok(out)
}

struct Sup {
    unit: ServiceUnit,
    events: mpsc::Sender<Event>,
    clock: Clock,
    log_dir: PathBuf,
    restarts: u32,
    history: VecDeque<ackemu_base::clock::ClusterInstant>,
}

impl Sup {
    async fn report(
        &self,
        active: &'static str,
        sub: &'static str,
        pid: u32,
        result: &'static str,
        exit_code: i32,
        job_done: Option<(u32, &'static str)>,
    ) {
        let _ = self
            .events
            .send(Event::Unit(UnitReport {
                name: self.unit.name.clone(),
                active_state: active,
                sub_state: sub,
                main_pid: pid,
                restarts: self.restarts,
                result,
                exit_code,
                job_done,
                exited_supervisor: false,
            }))
            .await;
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_dir.join(format!("{}.log", self.unit.name)))?;
        let mut cmd = Command::new(&self.unit.exec_start[0]);
        cmd.args(&self.unit.exec_start[1..])
            .envs(self.unit.environment.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .process_group(0);
        if let Some(d) = &self.unit.working_directory {
            cmd.current_dir(d);
        }
        cmd.spawn()
    }

    /// SIGTERM the unit's process group, SIGKILL after `TimeoutStopSec=`.
    async fn stop_child(&self, child: &mut Child) -> Exit {
        let pid = child.id().unwrap_or(0);
        if pid != 0 {
            let _ = crate::proc::signal_group(pid, Signal::SIGTERM);
        }
        let waited = self
            .clock
            .timeout(self.unit.timeout_stop, child.wait())
            .await;
        let status = match waited {
            Ok(s) => s,
            Err(_) => {
                tracing::warn!(
                    "systemd: {}: State 'stop-sigterm' timed out. Killing.",
                    self.unit.name
                );
                if pid != 0 {
                    let _ = crate::proc::signal_group(pid, Signal::SIGKILL);
                }
                child.wait().await
            }
        };
        exit_of(status)
    }
}

fn exit_of(status: std::io::Result<std::process::ExitStatus>) -> Exit {
    use std::os::unix::process::ExitStatusExt as _;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(sig)) => Exit::Signal(sig),
            (None, None) => Exit::Code(-1),
        },
        Err(_) => Exit::Code(-1),
    }
}

fn exit_code(e: Exit) -> i32 {
    match e {
        Exit::Code(c) | Exit::Signal(c) => c,
    }
}

/// Supervise `unit` until `token` is cancelled.
pub async fn supervise(
    unit: ServiceUnit,
    mut cmds: mpsc::Receiver<SvcCmd>,
    events: mpsc::Sender<Event>,
    clock: Clock,
    log_dir: PathBuf,
    token: CancellationToken,
) {
    let mut s = Sup {
        unit,
        events,
        clock,
        log_dir,
        restarts: 0,
        history: VecDeque::new(),
    };
    'inactive: loop {
        let mut job = tokio::select! {
            () = token.cancelled() => break 'inactive,
            cmd = cmds.recv() => match cmd {
                None => break 'inactive,
                Some(SvcCmd::Stop { job }) => {
                    s.report("inactive", "dead", 0, "success", 0, job.map(|j| (j, "done"))).await;
                    continue 'inactive;
                }
                Some(SvcCmd::Start { job } | SvcCmd::Restart { job }) => job,
            },
        };
        'running: loop {
            let now = s.clock.now();
            if !unitfile::start_allowed(
                &mut s.history,
                now,
                s.unit.start_limit_interval,
                s.unit.start_limit_burst,
            ) {
                tracing::warn!(
                    "systemd: {}: Start request repeated too quickly.",
                    s.unit.name
                );
                s.report(
                    "failed",
                    "failed",
                    0,
                    "start-limit-hit",
                    0,
                    job.take().map(|j| (j, "failed")),
                )
                .await;
                continue 'inactive;
            }
            let mut child = match s.spawn() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(
                        "systemd: {}: Failed to execute {}: {e}",
                        s.unit.name,
                        s.unit.exec_start[0]
                    );
                    s.report(
                        "failed",
                        "failed",
                        0,
                        "resources",
                        0,
                        job.take().map(|j| (j, "failed")),
                    )
                    .await;
                    continue 'inactive;
                }
            };
            let pid = child.id().unwrap_or(0);
            tracing::info!("systemd: Started {} (pid {pid}).", s.unit.name);
            s.report(
                "active",
                "running",
                pid,
                "success",
                0,
                job.take().map(|j| (j, "done")),
            )
            .await;
            loop {
                tokio::select! {
                    () = token.cancelled() => {
                        let e = s.stop_child(&mut child).await;
                        s.report("inactive", "dead", 0, "success", exit_code(e), None).await;
                        break 'inactive;
                    }
                    status = child.wait() => {
                        let e = exit_of(status);
                        if unitfile::should_restart(s.unit.restart, e) {
                            tracing::info!(
                                "systemd: {}: Main process exited, code={e:?}; scheduling restart.",
                                s.unit.name
                            );
                            s.report("activating", "auto-restart", 0, e.result(), exit_code(e), None).await;
                            tokio::select! {
                                () = token.cancelled() => break 'inactive,
                                () = s.clock.sleep(s.unit.restart_sec) => {}
                                cmd = cmds.recv() => match cmd {
                                    None => break 'inactive,
                                    Some(SvcCmd::Stop { job }) => {
                                        s.report("inactive", "dead", 0, e.result(), exit_code(e), job.map(|j| (j, "done"))).await;
                                        continue 'inactive;
                                    }
                                    Some(SvcCmd::Start { job: j } | SvcCmd::Restart { job: j }) => job = j,
                                },
                            }
                            s.restarts += 1;
                            continue 'running;
                        }
                        tracing::info!("systemd: {}: Main process exited, code={e:?}.", s.unit.name);
                        let (active, sub) = if e == Exit::Code(0) {
                            ("inactive", "dead")
                        } else {
                            ("failed", "failed")
                        };
                        s.report(active, sub, 0, e.result(), exit_code(e), None).await;
                        continue 'inactive;
                    }
                    cmd = cmds.recv() => match cmd {
                        None => {
                            s.stop_child(&mut child).await;
                            break 'inactive;
                        }
                        Some(SvcCmd::Start { job: j }) => {
                            if let Some(j) = j {
                                s.report("active", "running", pid, "success", 0, Some((j, "done"))).await;
                            }
                        }
                        Some(SvcCmd::Stop { job: j }) => {
                            tracing::info!("systemd: Stopping {}...", s.unit.name);
                            let e = s.stop_child(&mut child).await;
                            s.report("inactive", "dead", 0, "success", exit_code(e), j.map(|j| (j, "done"))).await;
                            continue 'inactive;
                        }
                        Some(SvcCmd::Restart { job: j }) => {
                            s.stop_child(&mut child).await;
                            s.restarts += 1;
                            job = j;
                            continue 'running;
                        }
                    },
                }
            }
        }
    }
    let _ = s
        .events
        .send(Event::Unit(UnitReport {
            name: s.unit.name.clone(),
            active_state: "inactive",
            sub_state: "dead",
            main_pid: 0,
            restarts: s.restarts,
            result: "success",
            exit_code: 0,
            job_done: None,
            exited_supervisor: true,
        }))
        .await;
}
