//! CNI spec types: the plugin's environment, network configuration on
//! stdin, the result and error JSON on stdout. Pure, table-tested.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// CNI versions this plugin speaks.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

/// CNI well-known error codes.
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content.
    pub const DECODE_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_NETCONF: u32 = 7;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// ackemu: the daemon could not be reached or did not answer.
    pub const DAEMON_UNAVAILABLE: u32 = 100;
    /// ackemu: a netlink operation failed or timed out.
    pub const NETLINK: u32 = 101;
    /// ackemu: no free address in the node's pod CIDR.
    pub const IPAM_EXHAUSTED: u32 = 102;
    /// ackemu: CHECK found the network not as configured.
    pub const CHECK_FAILED: u32 = 103;
}

/// `CNI_COMMAND`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// ADD
    Add,
    /// DEL
    Del,
    /// CHECK
    Check,
    /// VERSION
    Version,
}

impl Command {
    /// The spec's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
        }
    }
}

/// The plugin's invocation, from `CNI_*` variables.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// CNI_COMMAND.
    pub command: Command,
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS.
    pub netns: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// CNI_ARGS, parsed.
    pub args: BTreeMap<String, String>,
}

/// A CNI error (`{"cniVersion", "code", "msg", "details"}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{msg}")]
pub struct CniError {
    /// The version of the configuration (or the plugin's latest).
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Error code.
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer explanation.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

impl CniError {
    /// An error with `code` and `msg`.
    pub fn new(code: u32, msg: impl Into<String>) -> CniError {
        CniError {
            cni_version: "1.0.0".into(),
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// With details.
    pub fn details(mut self, d: impl Into<String>) -> CniError {
        self.details = d.into();
        self
    }
}

/// Parse the `CNI_*` environment (`get` looks a variable up).
pub fn parse_env(get: impl Fn(&str) -> Option<String>) -> Result<Invocation, CniError> {
    let command = match get("CNI_COMMAND").as_deref() {
        Some("ADD") => Command::Add,
        Some("DEL") => Command::Del,
        Some("CHECK") => Command::Check,
        Some("VERSION") => Command::Version,
        Some(other) => {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!("unknown CNI_COMMAND {other:?}: expected ADD, DEL, CHECK or VERSION"),
            ));
        }
        None => {
            return Err(CniError::new(
                code::INVALID_ENV,
                "CNI_COMMAND is not set: this is a CNI plugin, run by a container runtime",
            ));
        }
    };
    let var = |k: &str| get(k).unwrap_or_default();
    let inv = Invocation {
        command,
        container_id: var("CNI_CONTAINERID"),
        netns: var("CNI_NETNS"),
        ifname: var("CNI_IFNAME"),
        args: parse_args(&var("CNI_ARGS"))?,
    };
    let required: &[(&str, &str)] = match command {
        Command::Version => &[],
        Command::Add | Command::Check => &[
            ("CNI_CONTAINERID", &inv.container_id),
            ("CNI_NETNS", &inv.netns),
            ("CNI_IFNAME", &inv.ifname),
        ],
        Command::Del => &[
            ("CNI_CONTAINERID", &inv.container_id),
            ("CNI_IFNAME", &inv.ifname),
        ],
    };
    let missing: Vec<&str> = required
        .iter()
        .filter(|(_, v)| v.is_empty())
        .map(|(k, _)| *k)
        .collect();
    if !missing.is_empty() {
        return Err(CniError::new(
            code::INVALID_ENV,
            format!("required env variables [{}] missing", missing.join(",")),
        ));
    }
    Ok(inv)
}

/// `CNI_ARGS`: `K=V;K2=V2`.
pub fn parse_args(s: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for kv in s.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = kv.split_once('=').ok_or_else(|| {
            CniError::new(
                code::INVALID_ENV,
                format!("invalid CNI_ARGS pair {kv:?}: expected KEY=VALUE"),
            )
        })?;
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// The network configuration on stdin (the fields this plugin reads).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct NetConf {
    /// cniVersion.
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Network name.
    pub name: String,
    /// Plugin type (the binary's name).
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// The daemon's socket.
    #[serde(default)]
    pub socket: Option<String>,
}

/// Parse and check a network configuration.
pub fn parse_netconf(bytes: &[u8]) -> Result<NetConf, CniError> {
    let conf: NetConf = serde_json::from_slice(bytes).map_err(|e| {
        CniError::new(
            code::DECODE_FAILURE,
            format!("decoding the network configuration: {e}"),
        )
    })?;
    if !SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()) {
        let mut e = CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "incompatible CNI versions: config is {:?}, plugin supports [{}]",
                conf.cni_version,
                SUPPORTED_VERSIONS.join(" ")
            ),
        );
        e.cni_version = "1.0.0".into();
        return Err(e);
    }
    Ok(conf)
}

/// An interface in a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// MAC address.
    pub mac: String,
    /// Netns path for interfaces in the sandbox.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

/// An address in a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// CIDR notation, `172.16.1.5/24`.
    pub address: String,
    /// Gateway.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// Index into `interfaces`.
    pub interface: usize,
}

/// A route in a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Destination.
    pub dst: String,
    /// Gateway.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gw: String,
}

/// The ADD result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    /// Version (that of the configuration).
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    /// Interfaces created.
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    pub ips: Vec<IpConfig>,
    /// Routes added.
    pub routes: Vec<Route>,
    /// DNS (empty: the runtime writes resolv.conf).
    pub dns: serde_json::Value,
}

/// The VERSION output.
pub fn version_json() -> String {
    serde_json::json!({
        "cniVersion": "1.0.0",
        "supportedVersions": SUPPORTED_VERSIONS,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn env_table() {
        let full = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "abc"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"),
        ];
        let inv = parse_env(env(&full)).unwrap();
        assert_eq!(inv.command, Command::Add);
        assert_eq!(inv.args["K8S_POD_NAME"], "web");

        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (&[("CNI_COMMAND", "VERSION")], None),
            (
                &[
                    ("CNI_COMMAND", "DEL"),
                    ("CNI_CONTAINERID", "a"),
                    ("CNI_IFNAME", "eth0"),
                ],
                None,
            ),
            (
                &[("CNI_COMMAND", "ADD"), ("CNI_CONTAINERID", "a")],
                Some("[CNI_NETNS,CNI_IFNAME]"),
            ),
            (&[("CNI_COMMAND", "FROB")], Some("unknown CNI_COMMAND")),
            (&[], Some("CNI_COMMAND is not set")),
            (
                &[("CNI_COMMAND", "VERSION"), ("CNI_ARGS", "oops")],
                Some("KEY=VALUE"),
            ),
        ];
        for (vars, want_err) in cases {
            match (parse_env(env(vars)), want_err) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => {
                    assert!(e.msg.contains(w), "{vars:?}: {}", e.msg);
                    assert_eq!(e.code, code::INVALID_ENV);
                }
                (r, w) => panic!("{vars:?}: got {r:?}, want error {w:?}"),
            }
        }
    }

    #[test]
    fn netconf_versions() {
        let ok =
            br#"{"cniVersion":"1.0.0","name":"ackemu","type":"ackemu-cni","socket":"/run/x.sock"}"#;
        assert_eq!(
            parse_netconf(ok).unwrap().socket.as_deref(),
            Some("/run/x.sock")
        );
        let old = br#"{"cniVersion":"0.2.0","name":"n","type":"t"}"#;
        assert_eq!(
            parse_netconf(old).unwrap_err().code,
            code::INCOMPATIBLE_VERSION
        );
        assert_eq!(parse_netconf(b"{").unwrap_err().code, code::DECODE_FAILURE);
    }

    #[test]
    fn error_json_shape() {
        let e = CniError::new(code::TRY_AGAIN_LATER, "busy").details("the daemon lock is held");
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["code"], 11);
        assert_eq!(v["msg"], "busy");
        assert_eq!(v["details"], "the daemon lock is held");
    }
}
