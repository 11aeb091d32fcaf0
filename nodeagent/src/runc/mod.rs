//! `ackemu-node runc`: one short-lived process per container operation.
//!
//! Like libcontainer with the systemd cgroup driver, every operation first
//! runs `UseSystemd`: it creates and removes a test slice
//! (`libcontainer_<pid>_systemd_test_default.slice`) over the bus — the
//! churn that walks systemd's cookie up (S01). `run` then starts the
//! container's process inside the pod's network namespace (setns) and asks
//! systemd for the container's scope. Bus calls have no timeout: when
//! systemd cannot seal its reply, runc blocks forever, which is the bug.
//!
//! The container process outlives runc; the runtime (a child subreaper)
//! inherits and reaps it, as containerd-shim does.

pub mod ns;
pub mod spec;

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use ackemu_base::tasks::Tasks;
use ackemu_base::{CommonArgs, Env};
use ackemu_proto::ackemu::node::v1 as pb;
use anyhow::Context as _;
use nix::sys::signal::Signal;

use crate::paths::NodePaths;
use crate::systemd::client::{BusClient, BusError};
use crate::systemd::names;
use spec::{Spec, State};

/// `ackemu-node runc` flags.
#[derive(clap::Args, Debug)]
pub struct RuncArgs {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    paths: NodePaths,
    /// Where container state lives (`<root>/<id>/state.json`).
    #[arg(long, default_value = "/run/ackemu/runc")]
    root: PathBuf,
    /// The system bus socket (default `<run-dir>/dbus/system_bus_socket`).
    #[arg(long)]
    bus_socket: Option<PathBuf>,
    /// Manage cgroups through systemd (scopes over the bus), running the
    /// `UseSystemd` probe on every operation.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    systemd_cgroup: bool,
    #[command(subcommand)]
    cmd: RuncCmd,
}

/// Container operations.
#[derive(clap::Subcommand, Debug)]
pub enum RuncCmd {
    /// Create and start a container from a bundle.
    Run {
        /// Bundle directory holding `config.json`.
        #[arg(long)]
        bundle: PathBuf,
        /// Write the container process' pid here.
        #[arg(long)]
        pid_file: Option<PathBuf>,
        /// Return once the process started (the only mode).
        #[arg(long, short = 'd')]
        detach: bool,
        /// Container id.
        id: String,
    },
    /// Send a signal to the container's process.
    Kill {
        /// Container id.
        id: String,
        /// Signal name or number (default SIGTERM).
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Remove a container's scope and state.
    Delete {
        /// Kill a still-running process first.
        #[arg(long)]
        force: bool,
        /// Container id.
        id: String,
    },
    /// Run a command in a container's namespaces and wait for it.
    Exec {
        /// Container id.
        id: String,
        /// Command and arguments.
        #[arg(last = true, required = true)]
        args: Vec<String>,
    },
    /// Print a container's state as JSON.
    State {
        /// Container id.
        id: String,
    },
}

/// runc failures.
#[derive(Debug, thiserror::Error)]
pub enum RuncError {
    /// A bus call failed.
    #[error("systemd")]
    Bus(#[from] BusError),
    /// Local IO.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// Bad input or state.
    #[error("{0}")]
    Invalid(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RuncError {
    let what = what.into();
    move |source| RuncError::Io { what, source }
}

/// Process entry for the `runc` role; returns the exit code.
pub fn main(args: RuncArgs) -> anyhow::Result<i32> {
    crate::client_runtime()?.block_on(async move {
        let env = Env::init("runc", &args.common).await?;
        let bus_socket = args
            .bus_socket
            .clone()
            .unwrap_or_else(|| args.paths.bus_socket());
        let r = Runc {
            root: args.root.clone(),
            bus_socket,
            systemd: args.systemd_cgroup,
            tasks: env.tasks.clone(),
        };
        let code = r.exec(args.cmd).await.context("runc")?;
        Ok(code)
    })
}

struct Runc {
    root: PathBuf,
    bus_socket: PathBuf,
    systemd: bool,
    tasks: Tasks,
}

impl Runc {
    async fn exec(&self, cmd: RuncCmd) -> Result<i32, RuncError> {
        match cmd {
            RuncCmd::Run {
                bundle,
                pid_file,
                id,
                detach: _,
            } => self.run(&bundle, pid_file.as_deref(), &id).await.map(|_| 0),
            RuncCmd::Kill { id, signal } => self.kill(&id, &signal).await.map(|_| 0),
            RuncCmd::Delete { force, id } => self.delete(&id, force).await.map(|_| 0),
            RuncCmd::Exec { id, args } => self.exec_in(&id, &args).await,
            RuncCmd::State { id } => {
                let st = self.load(&id)?;
                let out = serde_json::json!({
                    "id": st.id,
                    "pid": st.pid,
                    "status": if crate::proc::alive(st.pid) { "running" } else { "stopped" },
                    "bundle": st.bundle,
                    "scope": st.scope,
                    "netns": st.netns,
                });
                println!("{out:#}");
                Ok(0)
            }
        }
    }

    fn state_dir(&self, id: &str) -> Result<PathBuf, RuncError> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(RuncError::Invalid(format!(
                "invalid container id {id:?}: expected a name without '/'"
            )));
        }
        Ok(self.root.join(id))
    }

    fn load(&self, id: &str) -> Result<State, RuncError> {
        let p = self.state_dir(id)?.join("state.json");
        let text = std::fs::read_to_string(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                RuncError::Invalid(format!("container {id} does not exist"))
            } else {
                RuncError::Io {
                    what: format!("reading {}", p.display()),
                    source: e,
                }
            }
        })?;
        serde_json::from_str(&text)
            .map_err(|e| RuncError::Invalid(format!("corrupt state {}: {e}", p.display())))
    }

    /// Connect and run libcontainer's `UseSystemd` probe: create and delete
    /// a test slice.
    async fn use_systemd(&self) -> Result<Option<BusClient>, RuncError> {
        if !self.systemd {
            return Ok(None);
        }
        let bus = BusClient::connect(&self.bus_socket, "runc", &self.tasks).await?;
        bus.add_match().await?;
        let slice = format!(
            "libcontainer_{}_systemd_test_default.slice",
            std::process::id()
        );
        match bus
            .start_transient_unit(
                &slice,
                "replace",
                pb::UnitProperties {
                    delegate: true,
                    ..Default::default()
                },
            )
            .await
        {
            Ok(_) => {}
            Err(e) if e.remote_name() == Some(names::ERR_UNIT_EXISTS) => {}
            Err(e) => return Err(e.into()),
        }
        match bus.stop_unit(&slice).await {
            Ok(_) => {}
            Err(e) if e.remote_name() == Some(names::ERR_NO_SUCH_UNIT) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Some(bus))
    }

    async fn run(&self, bundle: &Path, pid_file: Option<&Path>, id: &str) -> Result<(), RuncError> {
        let dir = self.state_dir(id)?;
        if dir.join("state.json").exists() {
            return Err(RuncError::Invalid(format!("container with id {id} exists")));
        }
        let spec_path = bundle.join("config.json");
        let spec: Spec = serde_json::from_str(
            &std::fs::read_to_string(&spec_path)
                .map_err(io(format!("reading {}", spec_path.display())))?,
        )
        .map_err(|e| RuncError::Invalid(format!("invalid {}: {e}", spec_path.display())))?;
        if spec.process.args.is_empty() {
            return Err(RuncError::Invalid(format!(
                "{}: process.args is empty: expected the program to run",
                spec_path.display()
            )));
        }
        let bus = self.use_systemd().await?;
        let (slice, scope) = spec.scope(id);
        let pid = self.start_process(&spec).await?;
        if let Some(bus) = &bus {
            let props = pb::UnitProperties {
                description: format!("libcontainer container {id}"),
                slice: slice.clone(),
                pids: vec![pid],
                delegate: true,
                default_dependencies: Some(false),
            };
            if let Err(e) = bus.start_transient_unit(&scope, "replace", props).await {
                let _ = crate::proc::signal(pid, Signal::SIGKILL);
                return Err(e.into());
            }
        }
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let state = State {
            id: id.to_string(),
            pid,
            bundle: bundle.display().to_string(),
            netns: spec.netns.clone(),
            scope: if bus.is_some() { scope } else { String::new() },
            env: spec.process.env.clone(),
            cwd: spec.process.cwd.clone(),
            mount_ns: true,
        };
        write_atomic(
            &dir.join("state.json"),
            serde_json::to_vec_pretty(&state)
                .unwrap_or_default()
                .as_slice(),
        )?;
        if let Some(p) = pid_file {
            write_atomic(p, pid.to_string().as_bytes())?;
        }
        Ok(())
    }

    /// Spawn the container's process from a thread that joined the pod's
    /// network namespace, so the child is born inside it.
    async fn start_process(&self, spec: &Spec) -> Result<u32, RuncError> {
        let out = open_stdio(spec.stdout.as_deref())?;
        let err = open_stdio(spec.stderr.as_deref())?;
        let mut cmd = std::process::Command::new(&spec.process.args[0]);
        cmd.args(&spec.process.args[1..])
            .env_clear()
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for kv in &spec.process.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        if !spec.process.cwd.is_empty() {
            cmd.current_dir(&spec.process.cwd);
        }
        let target = ns::Target {
            netns: spec.netns.as_deref().map(PathBuf::from),
            new_mounts: Some(spec.mounts.clone()),
            join_mnt: None,
        };
        let program = spec.process.args[0].clone();
        let child = spawn_in(&self.tasks, &target, cmd).await?;
        let child = child.map_err(io(format!("starting container process {program}")))?;
        Ok(child.id())
    }

    async fn kill(&self, id: &str, signal: &str) -> Result<(), RuncError> {
        let st = self.load(id)?;
        let sig = parse_signal(signal)?;
        let _bus = self.use_systemd().await?;
        if crate::proc::alive(st.pid) {
            crate::proc::signal(st.pid, sig)
                .map_err(|e| RuncError::Invalid(format!("kill {} {sig}: {e}", st.pid)))?;
        }
        Ok(())
    }

    async fn delete(&self, id: &str, force: bool) -> Result<(), RuncError> {
        let st = self.load(id)?;
        let bus = self.use_systemd().await?;
        if crate::proc::alive(st.pid) {
            if !force {
                return Err(RuncError::Invalid(format!(
                    "cannot delete container {id} that is not stopped: pid {} is running",
                    st.pid
                )));
            }
            let _ = crate::proc::signal(st.pid, Signal::SIGKILL);
        }
        if let Some(bus) = &bus
            && !st.scope.is_empty()
        {
            match bus.stop_unit(&st.scope).await {
                Ok(_) => {}
                Err(e) if e.remote_name() == Some(names::ERR_NO_SUCH_UNIT) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let dir = self.state_dir(id)?;
        std::fs::remove_dir_all(&dir).map_err(io(format!("removing {}", dir.display())))?;
        Ok(())
    }

    async fn exec_in(&self, id: &str, args: &[String]) -> Result<i32, RuncError> {
        let st = self.load(id)?;
        let _bus = self.use_systemd().await?;
        if !crate::proc::alive(st.pid) {
            return Err(RuncError::Invalid(format!(
                "cannot exec in a stopped container {id}"
            )));
        }
        let mut cmd = std::process::Command::new(&args[0]);
        cmd.args(&args[1..]).env_clear();
        for kv in &st.env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        if !st.cwd.is_empty() {
            cmd.current_dir(&st.cwd);
        }
        // Join the namespaces the container's process lives in.
        let target = ns::Target {
            netns: Some(PathBuf::from(format!("/proc/{}/ns/net", st.pid))),
            new_mounts: None,
            join_mnt: st
                .mount_ns
                .then(|| PathBuf::from(format!("/proc/{}/ns/mnt", st.pid))),
        };
        let mut child = spawn_in(&self.tasks, &target, cmd)
            .await?
            .map_err(io(format!("exec {}", args[0])))?;
        let status = self
            .tasks
            .spawn_blocking("runc/exec wait", move || child.wait())
            .await
            .map_err(|e| RuncError::Invalid(format!("waiting for exec: {e}")))?
            .map_err(io("waiting for exec"))?;
        use std::os::unix::process::ExitStatusExt as _;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }
}

fn open_stdio(path: Option<&str>) -> Result<Stdio, RuncError> {
    match path {
        None | Some("") => Ok(Stdio::null()),
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .append(true)
                .open(p)
                .map_err(io(format!("opening {p}")))?;
            Ok(Stdio::from(f))
        }
    }
}

/// Spawn `cmd` from a fresh thread that first enters `target`'s
/// namespaces, so the child is born inside them.
async fn spawn_in(
    tasks: &Tasks,
    target: &ns::Target,
    mut cmd: std::process::Command,
) -> Result<std::io::Result<std::process::Child>, RuncError> {
    let opened = target.open().map_err(|e| RuncError::Io {
        what: "opening the container's namespaces".into(),
        source: e,
    })?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tasks.spawn_thread("runc/setns-spawn", move || {
        let r = opened.enter().and_then(|()| cmd.spawn());
        let _ = tx.send(r);
    });
    rx.await
        .map_err(|_| RuncError::Invalid("the spawning thread died".into()))
}

fn parse_signal(s: &str) -> Result<Signal, RuncError> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| RuncError::Invalid(format!("unknown signal {s}")));
    }
    let name = if s.starts_with("SIG") {
        s.to_string()
    } else {
        format!("SIG{s}")
    };
    name.parse::<Signal>()
        .map_err(|_| RuncError::Invalid(format!("unknown signal {s}")))
}

/// Write `data` to a temporary file, fsync it, rename it over `path`.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RuncError> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(format!("creating {}", tmp.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_by_name_and_number() {
        assert_eq!(parse_signal("TERM").unwrap(), Signal::SIGTERM);
        assert_eq!(parse_signal("SIGKILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse_signal("9").unwrap(), Signal::SIGKILL);
        assert!(parse_signal("SIGBOGUS").is_err());
    }
}
