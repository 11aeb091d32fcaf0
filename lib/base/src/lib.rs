//! `ackemu-base`: the edges every ackemu process shares.
//!
//! Owns: cluster time ([`clock`]), named tasks and the wait registry
//! ([`tasks`]), klog-style logging ([`logging`]), failpoints ([`failpoint`])
//! and the admin port with the fault service ([`admin`]), the cluster PKI
//! ([`pki`]) and the process environment ([`env`]).
//!
//! Must not know: Kubernetes, the cloud, the store. Nothing here depends on
//! a component crate; every component depends on this.

pub mod admin;
pub mod clock;
pub mod clock_global;
pub mod env;
pub mod failpoint;
pub mod logging;
pub mod pki;
pub mod tasks;

pub use env::{CommonArgs, Env};
