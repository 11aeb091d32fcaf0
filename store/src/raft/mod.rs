//! Consensus: raft-rs driven by a dedicated loop, its RocksDB storage, and
//! the peer transport.

pub mod node;
pub mod storage;
pub mod transport;
