//! The `proxy` role's loop (kube-proxy, iptables mode): informers on
//! Services and EndpointSlices; on any change (at most once per
//! `--min-sync-period`, and at least every `--sync-period`) it computes the
//! nat table with [`super::nat_rules`] from the informers' caches — never
//! from event payloads — and applies it in the node's namespace with the
//! real `iptables-restore --noflush`, then makes sure the jumps from the
//! built-in chains exist (`iptables -t nat -C`, else `-A`).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::{CommonArgs, Env};
use ackemu_kube::api::core::v1::Service;
use ackemu_kube::api::discovery::v1::EndpointSlice;
use ackemu_kube::client::informer::{self, ReflectorConfig};
use ackemu_kube::client::{Client, ClientConfig, ListParams};
use anyhow::Context as _;
use ipnet::Ipv4Net;
use tokio::io::AsyncWriteExt as _;

use super::{ProxyInput, nat_rules};

/// `ackemu-node proxy` flags (kube-proxy's).
#[derive(clap::Args, Debug, Clone)]
pub struct ProxyArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Kubeconfig with the API server and credentials.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// This node's name (endpoints with this nodeName are local).
    #[arg(long)]
    pub hostname_override: String,
    /// This node's addresses.
    #[arg(long, value_delimiter = ',')]
    pub node_ip: Vec<Ipv4Addr>,
    /// The pod network: traffic to a cluster IP from outside it is masqueraded.
    #[arg(long)]
    pub cluster_cidr: Option<Ipv4Net>,
    /// Full resync at least this often (cluster time).
    #[arg(long, default_value = "30s", value_parser = ackemu_base::clock::parse_duration)]
    pub sync_period: Duration,
    /// At most one sync per this period (cluster time).
    #[arg(long, default_value = "1s", value_parser = ackemu_base::clock::parse_duration)]
    pub min_sync_period: Duration,
}

/// Process entry.
pub fn main(args: ProxyArgs) -> anyhow::Result<()> {
    crate::daemon_runtime()?.block_on(async {
        let env = Env::init("kube-proxy", &args.common).await?;
        run(args, env).await
    })
}

/// Chains the nat table holds now.
async fn existing_chains() -> anyhow::Result<Vec<String>> {
    let out = tokio::process::Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .await
        .context("running iptables-save")?;
    if !out.status.success() {
        anyhow::bail!(
            "iptables-save -t nat: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(':'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

async fn restore(text: &str) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("iptables-restore")
        .arg("--noflush")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running iptables-restore")?;
    let mut stdin = child.stdin.take().context("iptables-restore stdin")?;
    stdin.write_all(text.as_bytes()).await?;
    drop(stdin);
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        anyhow::bail!(
            "iptables-restore: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

async fn ensure_jump(args: &[String]) -> anyhow::Result<()> {
    let check = tokio::process::Command::new("iptables")
        .args(["-w", "-t", "nat", "-C"])
        .args(args)
        .output()
        .await?;
    if check.status.success() {
        return Ok(());
    }
    let add = tokio::process::Command::new("iptables")
        .args(["-w", "-t", "nat", "-A"])
        .args(args)
        .output()
        .await?;
    if !add.status.success() {
        anyhow::bail!(
            "iptables -t nat -A {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&add.stderr).trim()
        );
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(store: &informer::Store) -> Vec<T> {
    store
        .read()
        .values()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect()
}

/// Runs until cancelled.
pub async fn run(args: ProxyArgs, env: Env) -> anyhow::Result<()> {
    let cfg = ClientConfig::from_kubeconfig(&args.kubeconfig)?;
    let client = Client::new(cfg, env.clock.clone(), env.tasks.clone())?;
    let svc_api = client.api::<Service>(None)?;
    let eps_api = client.api::<EndpointSlice>(None)?;
    let mut services = informer::start(
        svc_api.dynamic().clone(),
        ListParams::default(),
        ReflectorConfig::default(),
        env.clock.clone(),
        &env.tasks,
    );
    let mut slices = informer::start(
        eps_api.dynamic().clone(),
        ListParams::default(),
        ReflectorConfig::default(),
        env.clock.clone(),
        &env.tasks,
    );
    let token = env.tasks.token();
    for synced in [&mut services.synced, &mut slices.synced] {
        tokio::select! {
            r = synced.wait_for(|s| *s) => { r.context("informer stopped before syncing")?; }
            () = token.cancelled() => return Ok(()),
        }
    }
    env.health.set_ready(true);
    tracing::info!(
        "kube-proxy: caches synced, programming iptables for node {}",
        args.hostname_override
    );
    let mut last_error: Option<String> = None;
    loop {
        let started = env.clock.now();
        let svcs: Vec<Service> = decode(&services.store);
        let eps: Vec<EndpointSlice> = decode(&slices.store);
        let result = async {
            let chains = existing_chains().await?;
            let rules = nat_rules(&ProxyInput {
                services: &svcs,
                endpoint_slices: &eps,
                node_name: &args.hostname_override,
                node_ips: &args.node_ip,
                cluster_cidr: args.cluster_cidr,
                existing_chains: &chains,
            });
            restore(&rules.restore).await?;
            for j in &rules.jumps {
                ensure_jump(j).await?;
            }
            anyhow::Ok(())
        }
        .await;
        let elapsed = env.clock.now().saturating_duration_since(started);
        match result {
            Ok(()) => {
                ackemu_base::v!(
                    2,
                    "\"SyncProxyRules complete\" elapsed=\"{elapsed:?}\" services={} endpointslices={}",
                    svcs.len(),
                    eps.len()
                );
                last_error = None;
            }
            Err(e) => {
                let msg = format!("{e:#}");
                if last_error.as_deref() != Some(msg.as_str()) {
                    tracing::error!("\"Failed to execute iptables-restore\" err=\"{msg}\"");
                }
                last_error = Some(msg);
            }
        }
        // Wait for a change (or the resync period), then let changes
        // settle for the minimum sync period.
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            () = env.clock.sleep(args.sync_period) => {}
            n = services.notifications.recv() => if n.is_none() { anyhow::bail!("the Service informer stopped") },
            n = slices.notifications.recv() => if n.is_none() { anyhow::bail!("the EndpointSlice informer stopped") },
        }
        tokio::select! {
            () = token.cancelled() => return Ok(()),
            () = env.clock.sleep(args.min_sync_period) => {}
        }
        while services.notifications.try_recv().is_ok() || slices.notifications.try_recv().is_ok() {
        }
    }
}
