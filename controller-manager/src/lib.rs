//! `ackemu-controller-manager`: the cluster's controllers.
//!
//! This crate owns the decisions of kube-controller-manager, the
//! cloud-controller-manager and the cluster autoscaler. Each controller is a
//! pure, level-triggered core: a function of the observed state (objects
//! from informer caches, cloud descriptions) and [`util::Now`] that returns
//! the actions that move the world toward the desired state — create this
//! pod, patch that node, delete this route. Where Kubernetes' controllers
//! keep memory between reconciles (expectations against stale caches,
//! probe timestamps, eviction timers, how long a node has been unneeded),
//! that memory is an explicit value the driver passes in and keeps.
//!
//! - [`nodeipam`]: podCIDRs from the cluster CIDR;
//! - [`nodelifecycle`]: node health, condition and taint management,
//!   taint-based eviction;
//! - [`replicaset`], [`deployment`], [`daemonset`]: workload controllers;
//! - [`endpoints`], [`endpointslice`]: Service backends;
//! - [`namespace`]: discovery-driven namespace deletion;
//! - [`gc`]: the ownerReference graph and cascading deletion;
//! - [`certificates`], [`bootstrap`], [`podgc`], [`serviceaccount`];
//! - [`cloud`]: route, service (SLB) and cloud node controllers;
//! - [`autoscaler`]: cluster-autoscaler scale-up and scale-down.
//!
//! [`runtime`] is the process around the cores: shared informers, keyed
//! rate-limited work queues, one driver per controller performing the
//! writes a core returns, the event recorder and leader election; its
//! [`runtime::ccm`] and [`runtime::autoscaler`] drive the cloud cores
//! through [`cloudapi`], the signed cloud client (AccessKey or the
//! instance's RAM role from the metadata service). Three binaries:
//! `ackemu-controller-manager`, `ackemu-cloud-controller-manager`,
//! `ackemu-cluster-autoscaler`.
//!
//! The cores must not know about transports, the API server's client, the
//! cloud's client, processes or the real clock: only [`runtime`] and
//! [`cloudapi`] do IO,
//! and every core is deterministic given its inputs. The crate must not
//! depend on other component crates (the scheduler's fit check is
//! re-implemented in [`util::fit`]).

pub mod autoscaler;
pub mod bootstrap;
pub mod certificates;
pub mod cloud;
pub mod cloudapi;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod fixtures;
pub mod gc;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod podgc;
pub mod replicaset;
pub mod runtime;
pub mod serviceaccount;
pub mod util;
