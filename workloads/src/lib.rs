//! `ackemu-workloads`: the programs that ackemu's container images run.
//!
//! An "image" in the emulated registry names one of these programs; the
//! node's runc starts `ackemu-workload <program> [args]` inside the pod's
//! network namespace. Owns: `pause`, `app` (the seed's HTTP app on :2580), a
//! toolbox (`nslookup`, `wget`, `ping`, `telnet`, `sleep`) with the output
//! shapes of the real tools, and cluster DNS (`dns`).
//!
//! Must not know: the node agent, the cloud, the API server's internals.
//! Programs read what a container would (argv, env, `resolv.conf`).

pub mod app;
pub mod dns;
pub mod toolbox;

use std::process::ExitCode;

/// Programs this binary can run.
pub const PROGRAMS: &[&str] = &[
    "pause", "app", "dns", "nslookup", "wget", "ping", "telnet", "sleep",
];

/// Run `program` with `args`; what a container's entrypoint would do.
pub async fn run(program: &str, args: &[String]) -> ExitCode {
    let result = match program {
        "pause" => toolbox::pause().await,
        "app" => app::main(args).await,
        "dns" => dns_main(args).await,
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

/// `dns --listen ADDR --domain D --static-zone FILE [--upstream ADDR]`.
async fn dns_main(args: &[String]) -> Result<ExitCode, String> {
    use ackemu_base::clock::Clock;
    use ackemu_base::tasks::{Tasks, shutdown_signal};
    let mut listen = "0.0.0.0:53".to_string();
    let mut domain = "cluster.local".to_string();
    let mut zone_file = None;
    let mut cfg = dns::server::Config::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |flag: &str| it.next().cloned().ok_or(format!("{flag} needs a value"));
        match a.as_str() {
            "--listen" => listen = val("--listen")?,
            "--domain" => domain = val("--domain")?,
            "--static-zone" => zone_file = Some(val("--static-zone")?),
            "--upstream" => cfg.upstreams.push(
                val("--upstream")?
                    .parse()
                    .map_err(|e| format!("--upstream: {e}"))?,
            ),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    let zone = match zone_file {
        Some(f) => {
            let text = std::fs::read_to_string(&f).map_err(|e| format!("{f}: {e}"))?;
            let z: StaticZone = serde_json::from_str(&text).map_err(|e| format!("{f}: {e}"))?;
            dns::zone::Zone::build(&domain, &z.services, &z.endpoints)
        }
        None => return Err("a zone source is required: --static-zone FILE".into()),
    };
    let addr = listen
        .parse()
        .map_err(|e| format!("--listen {listen:?}: {e}"))?;
    let tasks = Tasks::new(Clock::real());
    let bound = dns::server::serve(addr, dns::server::ZoneHandle::new(zone), cfg, &tasks)
        .await
        .map_err(|e| format!("listening on {listen}: {e}"))?;
    println!("serving DNS for {domain} on {bound}");
    shutdown_signal().await;
    tasks.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

/// A zone file for `dns --static-zone`.
#[derive(serde::Deserialize)]
struct StaticZone {
    #[serde(default)]
    services: Vec<k8s_openapi::api::core::v1::Service>,
    #[serde(default)]
    endpoints: Vec<k8s_openapi::api::core::v1::Endpoints>,
}
