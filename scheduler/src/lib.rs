//! `ackemu-scheduler`: kube-scheduler for ackemu.
//!
//! This crate owns the scheduling decision, as a pure core shaped like
//! Kubernetes' scheduling framework (`pkg/scheduler/framework/interface.go`):
//!
//! - [`snapshot`]: per-pod and per-node summaries built from `k8s-openapi`
//!   objects (requests with the init-container and overhead rules, host
//!   ports, allocatable), the mutable cache with assumed pods, and the
//!   immutable snapshot a cycle reads;
//! - [`framework`] and [`plugins`]: Filter and Score plugins with
//!   Kubernetes' reasons, formulas, normalization and default weights;
//!   [`legacy`]: the 0–10 priority functions of 1.11 that the seed article's
//!   logs show;
//! - [`cycle`]: one scheduling cycle — filter, the `0/N nodes are
//!   available: …` error, score, pick among the best with a seeded RNG —
//!   and its `--v=10` [`trace`];
//! - [`queue`]: activeQ / backoffQ / unschedulable pods with backoff in
//!   cluster time and requeueing on cluster events;
//! - [`preemption`]: PostFilter (DefaultPreemption): victims on one node,
//!   or the `preemption: …` text when evicting cannot help;
//! - [`engine`]: the state machine a driver feeds with watch events and
//!   time, performing the bindings and events it returns.
//!
//! Those modules must not know about transports, the API server's client,
//! processes or the real clock: time comes in as
//! [`ackemu_base::clock::ClusterInstant`], randomness as an `RngCore`, and
//! every function is deterministic given those. [`runtime`] is the process
//! around them (the `ackemu-scheduler` binary): informers, the scheduling
//! loop, `pods/binding`, Events, the `PodScheduled` condition, preemption's
//! deletions, leader election and metrics; only it does IO.

pub mod cycle;
pub mod engine;
pub mod fixtures;
pub mod framework;
pub mod legacy;
pub mod plugins;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod runtime;
pub mod snapshot;
pub mod trace;

pub use cycle::{Algorithm, FitError, Profile, ScheduleError, ScheduleResult};
pub use engine::{CycleOutcome, SchedulerCore};
pub use queue::{QueueConfig, SchedulingQueue};
pub use snapshot::{Cache, NodeInfo, PodInfo, Snapshot, Workloads};
pub use trace::Trace;
