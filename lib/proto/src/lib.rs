//! Wire types: the Rust code generated from every `.proto` under `proto/`.
//!
//! This crate owns no logic. Modules follow protobuf packages: `etcdserverpb`
//! and `mvccpb` are etcd's v3 API (wire-compatible, so `etcdctl` works),
//! `ackemu::<service>::v1` are ackemu's own services.
#![allow(
    clippy::all,
    clippy::pedantic,
    rust_2018_idioms,
    unreachable_pub,
    missing_docs
)]

include!(concat!(env!("OUT_DIR"), "/_all.rs"));
