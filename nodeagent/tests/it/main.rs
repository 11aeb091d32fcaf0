//! Integration tests of `ackemu-node`: real processes, real namespaces.
//! Tests needing root or network namespaces print `skipped: …` without them.

mod cni;
mod proxy;
mod runtime;
mod systemd;
mod util;
