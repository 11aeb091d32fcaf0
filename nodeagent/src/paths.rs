//! Where a node's sockets live. Every role derives its default socket paths
//! from one run directory, so several emulated nodes on one host (each with
//! its own `--run-dir`) never share a socket.

use std::path::PathBuf;

/// The node's run directory (`/run/ackemu` unless told otherwise).
#[derive(clap::Args, Debug, Clone)]
pub struct NodePaths {
    /// Directory holding the node's sockets.
    #[arg(long, env = "ACKEMU_NODE_RUN_DIR", default_value = "/run/ackemu")]
    pub run_dir: PathBuf,
}

impl Default for NodePaths {
    fn default() -> Self {
        NodePaths {
            run_dir: PathBuf::from("/run/ackemu"),
        }
    }
}

impl NodePaths {
    /// The system bus socket (D-Bus' `/run/dbus/system_bus_socket`).
    pub fn bus_socket(&self) -> PathBuf {
        self.run_dir.join("dbus/system_bus_socket")
    }
    /// systemd's private socket (`/run/systemd/private`): one connection
    /// per client, each with its own cookie.
    pub fn private_socket(&self) -> PathBuf {
        self.run_dir.join("systemd/private")
    }
    /// The CNI daemon's socket.
    pub fn cnid_socket(&self) -> PathBuf {
        self.run_dir.join("cnid.sock")
    }
    /// The runtime's CRI socket.
    pub fn runtime_socket(&self) -> PathBuf {
        self.run_dir.join("runtime.sock")
    }
}
