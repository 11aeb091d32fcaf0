//! `ackemu-nodeagent`: what runs on every node, one role per process of the
//! `ackemu-node` binary.
//!
//! Owns the node-local mechanisms of the two NotReady post-mortems (S01,
//! S02): [`systemd`] (units, transient slices/scopes, and the message bus
//! whose 32-bit cookie overflows), [`runc`] (one short-lived process per
//! container operation, with libcontainer's `UseSystemd` probe), [`cni`] and
//! [`cnid`] (the CNI plugin and its daemon with one netlink lock),
//! [`runtime`] (the CRI-shaped gRPC server with per-container locks and the
//! network plugin manager's per-pod locks), [`kubelet`] (node status and
//! Lease, PLEG with its health threshold, pod workers on the runtime), and
//! [`proxy`] (kube-proxy's iptables-mode nat rules as a pure function).
//!
//! Must not know: the cloud, other component crates. The API server is
//! reached only through `lib/kube`'s client (the kubelet, attach, the
//! kubelet API's reviews), as the real node agents reach it. The roles talk
//! to each other only over unix sockets (gRPC from `lib/proto`) and by
//! executing each other as processes, as their real counterparts do.

pub mod attach;
pub mod cni;
pub mod cnid;
pub mod grpc;
pub mod kubelet;
pub mod paths;
pub mod proc;
pub mod proxy;
pub mod runc;
pub mod runtime;
pub mod server;
pub mod systemd;
pub mod uds;

use clap::{Parser, Subcommand};

/// `ackemu-node` command line.
#[derive(Parser, Debug)]
#[command(
    name = "ackemu-node",
    about = "ackemu node agents, one role per process"
)]
pub struct Cli {
    /// The role this process plays.
    #[command(subcommand)]
    pub role: Role,
}

impl Cli {
    /// The command line of a CNI plugin invocation (no arguments; CNI_* env).
    pub fn cni_plugin() -> Cli {
        Cli {
            role: Role::Cni(cni::CniArgs::default()),
        }
    }
}

/// One process role.
#[derive(Subcommand, Debug)]
pub enum Role {
    /// The node's service manager and its message bus.
    Systemd(systemd::SystemdArgs),
    /// Talk to systemd: status, start/stop/restart units, daemon-reexec.
    Systemctl(systemd::ctl::SystemctlArgs),
    /// Inspect the bus: cookie, pending callers, connections.
    Busctl(systemd::ctl::BusctlArgs),
    /// One container operation (run, kill, delete, exec, state).
    Runc(runc::RuncArgs),
    /// The CNI plugin (normally invoked through an `ackemu-cni` link).
    Cni(cni::CniArgs),
    /// The CNI daemon: one lock around the node's netlink work.
    Cnid(cnid::CnidArgs),
    /// The CRI-shaped container runtime.
    Runtime(runtime::RuntimeArgs),
    /// Join the cluster with a bootstrap token (discovery, TLS bootstrap,
    /// the node's units).
    Attach(attach::AttachArgs),
    /// The kubelet: node registration and status, PLEG, pod workers.
    Kubelet(kubelet::KubeletArgs),
    /// kube-proxy (iptables mode): Services and EndpointSlices → the nat table.
    Proxy(proxy::run::ProxyArgs),
}

/// Run `cli` to completion and return the process exit code.
pub fn main(cli: Cli) -> i32 {
    match cli.role {
        Role::Systemd(a) => daemon(|| systemd::main(a)),
        Role::Cnid(a) => daemon(|| cnid::main(a)),
        Role::Runtime(a) => daemon(|| runtime::main(a)),
        Role::Kubelet(a) => daemon(|| kubelet::main(a)),
        Role::Proxy(a) => daemon(|| proxy::run::main(a)),
        Role::Systemctl(a) => client(|| systemd::ctl::systemctl(a)),
        Role::Busctl(a) => client(|| systemd::ctl::busctl(a)),
        Role::Runc(a) => client(|| runc::main(a)),
        Role::Attach(a) => client(|| attach::main(a)),
        Role::Cni(a) => cni::main(a),
    }
}

fn daemon(f: impl FnOnce() -> anyhow::Result<()>) -> i32 {
    match f() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

fn client(f: impl FnOnce() -> anyhow::Result<i32>) -> i32 {
    match f() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// A multi-threaded runtime for a daemon role.
pub(crate) fn daemon_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// A single-threaded runtime for a short-lived client role.
pub(crate) fn client_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
