//! Integration tests: a real 3-member `ackemu-store` cluster on loopback,
//! driven by the real `etcdctl` 3.4 (Debian `etcd-client`).

mod cluster;
mod faults;
mod grpc;
mod history;
mod kv;
mod lease;
mod maintenance;
mod membership;
mod watch;
