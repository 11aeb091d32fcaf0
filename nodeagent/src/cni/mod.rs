//! `ackemu-cni`: the CNI plugin binary (like terway's plugin next to
//! terwayd). It follows the CNI spec — `CNI_*` variables, the network
//! configuration on stdin, the result or an error JSON on stdout — and
//! forwards ADD/DEL/CHECK to `cnid` over its unix socket, waiting as long as
//! the daemon takes: when the daemon is stuck, plugin processes pile up.

pub mod types;

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

use ackemu_proto::ackemu::node::v1 as pb;
use ackemu_proto::ackemu::node::v1::cni_daemon_client::CniDaemonClient;
use types::{CniError, Command, code};

use crate::paths::NodePaths;

/// `ackemu-node cni` flags (normally none: CNI passes everything in env).
#[derive(clap::Args, Debug, Default)]
pub struct CniArgs {
    /// The daemon's socket; overrides the configuration's `socket` and
    /// `ACKEMU_CNID_SOCKET`.
    #[arg(long)]
    socket: Option<PathBuf>,
}

/// Run the plugin; prints the result or error JSON, returns the exit code.
pub fn main(args: CniArgs) -> i32 {
    let mut stdin = Vec::new();
    let outcome = std::io::stdin()
        .read_to_end(&mut stdin)
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("reading stdin: {e}")))
        .and_then(|_| plugin(&args, &stdin));
    let mut out = std::io::stdout();
    match outcome {
        Ok(text) => {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            0
        }
        Err(e) => {
            let _ = out.write_all(serde_json::to_string(&e).unwrap_or_default().as_bytes());
            let _ = out.flush();
            1
        }
    }
}

fn plugin(args: &CniArgs, stdin: &[u8]) -> Result<String, CniError> {
    let inv = types::parse_env(|k| std::env::var(k).ok())?;
    if inv.command == Command::Version {
        return Ok(types::version_json());
    }
    let conf = types::parse_netconf(stdin)?;
    let socket = args
        .socket
        .clone()
        .or_else(|| conf.socket.clone().map(PathBuf::from))
        .or_else(|| std::env::var_os("ACKEMU_CNID_SOCKET").map(PathBuf::from))
        .unwrap_or_else(|| NodePaths::default().cnid_socket());
    let req = pb::CniRequest {
        container_id: inv.container_id.clone(),
        netns: inv.netns.clone(),
        ifname: inv.ifname.clone(),
        args: inv.args.clone().into_iter().collect(),
        netconf_json: stdin.to_vec(),
        plugin_pid: std::process::id(),
    };
    let version = conf.cni_version.clone();
    let rt = crate::client_runtime()
        .map_err(|e| CniError::new(code::IO_FAILURE, format!("starting the plugin: {e}")))?;
    let reply = rt.block_on(async move {
        let mut client = CniDaemonClient::new(crate::uds::channel(&socket));
        let r = match inv.command {
            Command::Add => client.add(req).await,
            Command::Del => client.del(req).await,
            Command::Check => client.check(req).await,
            Command::Version => Ok(tonic::Response::new(pb::CniReply {
                outcome: Some(pb::cni_reply::Outcome::ResultJson(types::version_json())),
            })),
        };
        r.map(tonic::Response::into_inner).map_err(|s| {
            CniError::new(
                code::DAEMON_UNAVAILABLE,
                format!("calling cnid at {}: {}", socket.display(), s.message()),
            )
        })
    })?;
    match reply.outcome {
        Some(pb::cni_reply::Outcome::ResultJson(j)) => Ok(j),
        Some(pb::cni_reply::Outcome::Error(e)) => Err(CniError {
            cni_version: version,
            code: e.code,
            msg: e.msg,
            details: e.details,
        }),
        None => Err(CniError::new(
            code::DAEMON_UNAVAILABLE,
            "cnid answered neither a result nor an error",
        )),
    }
}
