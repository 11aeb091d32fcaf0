//! Thin gRPC adapters: etcd's v3 services on the client port and the
//! member-to-member service on the peer port. Validation that etcd does at
//! its API layer lives here; everything else is in `server`. Errors become
//! gRPC statuses through the one table in [`status`].

pub mod authority;
pub mod cluster;
pub mod kv;
pub mod lease;
pub mod maintenance;
pub mod peer;
pub mod watch;

use std::sync::Arc;

use tonic::{Code, Status};

use crate::errors::EtcdError;
use crate::server::Shared;

/// etcd's gRPC code for each error (etcd `api/v3rpc/rpctypes/error.go`).
pub fn status(e: EtcdError) -> Status {
    use EtcdError as E;
    let code = match &e {
        E::EmptyKey
        | E::KeyNotFound
        | E::ValueProvided
        | E::LeaseProvided
        | E::TooManyOps
        | E::DuplicateKey
        | E::MemberBadUrls
        | E::RequestTooLarge
        | E::Malformed(_) => Code::InvalidArgument,
        E::Compacted | E::FutureRev | E::LeaseTtlTooLarge => Code::OutOfRange,
        E::NoSpace | E::TooManyRequests => Code::ResourceExhausted,
        E::LeaseNotFound | E::MemberNotFound => Code::NotFound,
        E::LeaseExist
        | E::MemberExist
        | E::PeerUrlExist
        | E::MemberNotEnoughStarted
        | E::NotLeader => Code::FailedPrecondition,
        E::NoLeader
        | E::LeaderChanged
        | E::Stopped
        | E::Timeout
        | E::TimeoutDueToLeaderFail
        | E::Unhealthy
        | E::NotCapable => Code::Unavailable,
        E::Storage(_) => Code::Internal,
    };
    Status::new(code, e.to_string())
}

/// Shared handle every service holds.
#[derive(Clone)]
pub struct Api {
    pub shared: Arc<Shared>,
}

/// gRPC messages etcd accepts beyond `--max-request-bytes` before its own
/// size check answers (etcd's `grpcOverheadBytes`).
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;
