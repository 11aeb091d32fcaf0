//! The `proxy` role's core (kube-proxy, iptables mode): a pure function from
//! Services and EndpointSlices to the `iptables-restore` text of the nat
//! table, with kube-proxy's chain structure and names, so `iptables -t nat
//! -nL KUBE-SERVICES` inside a node reads like the seed articles.
//!
//! [`rules`] must not know the API server or how the objects arrive, nor
//! how the text is applied; [`run`] is the watch loop that feeds it and
//! applies its output with the real `iptables-restore`.

pub mod rules;
pub mod run;

pub use rules::{NatRules, ProxyInput, nat_rules, slices_from_endpoints};
