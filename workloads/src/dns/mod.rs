//! Cluster DNS: the zone (pure) and the UDP/TCP server that serves it.

pub mod server;
pub mod zone;
