//! `ackemu-workloads`: the programs that ackemu's container images run.
//!
//! An "image" in the emulated registry names one of these programs; the
//! node's runc starts `ackemu-workload <program> [args]` inside the pod's
//! network namespace. Owns: `pause`, `app` (the seed's HTTP app on :2580), a
//! toolbox (`nslookup`, `wget`, `ping`, `telnet`, `sleep`) with the output
//! shapes of the real tools, cluster DNS (`dns`), `metrics-server`, and the
//! mesh (`pilot`, `sidecar`, `citadel`, `galley`).
//!
//! Must not know: the node agent, the cloud, the API server's internals.
//! Programs read what a container would (argv, env, `resolv.conf`).

pub mod app;
pub mod dns;
pub mod https;
pub mod kube;
pub mod mesh;
pub mod metrics;
pub mod toolbox;

use std::process::ExitCode;

/// Programs this binary can run.
pub const PROGRAMS: &[&str] = &[
    "pause",
    "app",
    "dns",
    "metrics-server",
    "pilot",
    "sidecar",
    "citadel",
    "galley",
    "mesh-pilot",
    "mesh-sidecar",
    "mesh-ca",
    "mesh-webhook",
    "nslookup",
    "wget",
    "ping",
    "telnet",
    "sleep",
];

/// Run `program` with `args`; what a container's entrypoint would do.
pub async fn run(program: &str, args: &[String]) -> ExitCode {
    // The registry's image names for the mesh (`mesh-ca`, …).
    let program = mesh::image_program(program).unwrap_or(program);
    let result = match program {
        "pause" => toolbox::pause().await,
        "app" => app::main(args).await,
        "dns" => dns::main(args).await.map_err(|e| format!("{e:#}")),
        "metrics-server" => metrics::main(args).await.map_err(|e| format!("{e:#}")),
        "pilot" => mesh::pilot::main(args).await.map_err(|e| format!("{e:#}")),
        "sidecar" => mesh::sidecar::main(args)
            .await
            .map_err(|e| format!("{e:#}")),
        "citadel" => mesh::citadel::main(args)
            .await
            .map_err(|e| format!("{e:#}")),
        "galley" => mesh::galley::main(args).await.map_err(|e| format!("{e:#}")),
        "nslookup" => toolbox::nslookup::main(args).await,
        "wget" => toolbox::wget::main(args).await,
        "ping" => toolbox::ping::main(args).await,
        "telnet" => toolbox::telnet::main(args).await,
        "sleep" => toolbox::sleep(args).await,
        other => Err(format!(
            "unknown program {other:?}: expected one of {}",
            PROGRAMS.join(", ")
        )),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("{program}: {msg}");
            ExitCode::FAILURE
        }
    }
}
