//! Thin gRPC adapters: decode, call the role's core, map errors through one
//! table per surface ([`status`]).

pub mod bus;
pub mod cnid;
pub mod image;
pub mod runtime;
pub mod status;
