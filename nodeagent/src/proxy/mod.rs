//! The `proxy` role's core (kube-proxy, iptables mode): a pure function from
//! Services and EndpointSlices to the `iptables-restore` text of the nat
//! table, with kube-proxy's chain structure and names, so `iptables -t nat
//! -nL KUBE-SERVICES` inside a node reads like the seed articles.
//!
//! Must not know: the API server or how the objects arrive (the watch loop
//! feeding [`rules::nat_rules`] lives elsewhere), nor how the text is
//! applied.

pub mod rules;

pub use rules::{NatRules, ProxyInput, nat_rules, slices_from_endpoints};
