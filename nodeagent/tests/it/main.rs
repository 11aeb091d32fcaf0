//! Integration tests of `ackemu-node`: real processes, real namespaces.
//! Tests needing root or network namespaces print `skipped: …` without them.

mod attach;
mod attach_cluster;
mod cni;
mod kubelet;
mod kubelet_scenarios;
mod proxy;
mod pull;
mod runtime;
mod server;
mod server_kubectl;
mod server_mounts;
mod server_rig;
mod server_tokens;
mod systemd;
mod util;
