//! Helpers every controller core shares: cluster time as the cores see it,
//! object metadata and owner references, pod readiness, the scheduling
//! predicates controllers re-evaluate (taints, affinity, resource fit),
//! expectations against stale caches, hashing and events.

pub mod defaults;
pub mod events;
pub mod expectations;
pub mod fit;
pub mod hash;
pub mod intstr;
pub mod meta;
pub mod pod;
pub mod time;

pub use events::{Event, EventType, ObjectRef};
pub use time::Now;
