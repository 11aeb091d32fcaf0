//! The Kubernetes object model shared by every ackemu component.
//!
//! This crate owns: the API types (re-exported from `k8s-openapi`, API
//! version fixed once for the workspace), the resource registry (what the API
//! server serves and how discovery, RBAC and `kubectl` name it), the storage
//! key layout kube-apiserver uses in etcd, label and field selectors with
//! Kubernetes' syntax and error texts, resource quantities, and the
//! server-side Table printers behind `kubectl get`.
//!
//! It also owns the [`client`] every component uses to talk to the API
//! server (HTTPS, typed and dynamic access, watches, a reflector and a work
//! queue); the IO lives only there. Everything outside `client` is pure
//! (time is passed in), so the API server can share it without a client.
//!
//! It must not know about storage engines, process layout or the cloud.

pub use k8s_openapi;
pub use k8s_openapi::api;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

pub mod client;
pub mod duration;
pub mod fields;
pub mod keys;
pub mod labels;
pub mod printers;
pub mod quantity;
pub mod registry;
pub mod strict;
pub mod validation;

pub use fields::FieldSelector;
pub use keys::KeyLayout;
pub use labels::LabelSelector;
pub use quantity::Quantity;
pub use registry::{Column, GroupResource, GroupVersionKind, Registry, ResourceInfo, Scope};
