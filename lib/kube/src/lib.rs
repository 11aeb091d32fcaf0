//! The Kubernetes object model shared by every ackemu component.
//!
//! This crate owns: the API types (re-exported from `k8s-openapi`, API
//! version fixed once for the workspace), the resource registry (what the API
//! server serves and how discovery, RBAC and `kubectl` name it), the storage
//! key layout kube-apiserver uses in etcd, label and field selectors with
//! Kubernetes' syntax and error texts, resource quantities, and the
//! server-side Table printers behind `kubectl get`.
//!
//! It must not know about processes, transports or storage engines: every
//! function here is pure (time is passed in), so the API server, controllers,
//! the scheduler and tests can share it without pulling in IO.

pub use k8s_openapi;
pub use k8s_openapi::api;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

pub mod duration;
pub mod fields;
pub mod keys;
pub mod labels;
pub mod printers;
pub mod quantity;
pub mod registry;
pub mod validation;

pub use fields::FieldSelector;
pub use keys::KeyLayout;
pub use labels::LabelSelector;
pub use quantity::Quantity;
pub use registry::{Column, GroupResource, GroupVersionKind, Registry, ResourceInfo, Scope};
