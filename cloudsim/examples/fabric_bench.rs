//! Benchmark of the VPC data plane (a command, not a test):
//!
//! ```text
//! cargo build --release -p ackemu-cloudsim --bins --examples
//! sudo target/release/examples/fabric_bench [--seconds 5] [--mtu 1500]
//! ```
//!
//! In one run it measures, with `iperf3` and `ping` inside the namespaces,
//! a single-stream TCP transfer, 64-byte UDP packets per second and the
//! ping RTT between two ECS instances through the fabric (TUN → vnic →
//! fabric → vnic → TUN), then the same over a direct veth pair between two
//! namespaces (the ceiling), and prints the ratios. Namespaces are named
//! `ackemu-bench-<pid>-…` and removed at the end; nothing is configured in
//! the host namespace.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_cloudsim::auth::Credentials;
use ackemu_cloudsim::cli::{Client, ProfileFile};
use ackemu_cloudsim::cloud::Product;
use anyhow::{Context as _, bail};
use clap::Parser as _;
use serde_json::Value;

#[derive(clap::Parser, Debug)]
#[command(about = "TCP, 64-byte UDP and ping through the VPC fabric vs a veth pair")]
struct Args {
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// The ENI MTU cloudsim gives instances (Alibaba: 1500; jumbo 8500).
    #[arg(long, default_value_t = 1500)]
    mtu: usize,
    /// Echo requests per RTT measurement.
    #[arg(long, default_value_t = 200)]
    pings: u32,
    /// Passed as cloudsim's --dataplane-spin-polls (0 disables spinning).
    #[arg(long, default_value_t = 16)]
    spin_polls: usize,
    /// The cloudsim binary (default: next to this example's directory).
    #[arg(long)]
    cloudsim_binary: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Result3 {
    tcp_gbps: f64,
    udp_pps: f64,
    rtt_us: f64,
    rtt_min_us: f64,
}

fn run(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {args:?} in {ns}"))?;
    if !out.status.success() {
        bail!(
            "{args:?} in {ns} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new("ip").args(args).status()?;
    if !st.success() {
        bail!("ip {args:?} failed");
    }
    Ok(())
}

struct Iperf(Child);

impl Drop for Iperf {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn iperf_server(ns: &str) -> anyhow::Result<Iperf> {
    let c = Command::new("ip")
        .args(["netns", "exec", ns, "iperf3", "-s", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(Iperf(c))
}

async fn measure(
    client_ns: &str,
    server_ns: &str,
    server_ip: &str,
    a: &Args,
) -> anyhow::Result<Result3> {
    let _srv = iperf_server(server_ns)?;
    let clock = Clock::real();
    // Wait for the server socket.
    let mut up = false;
    for _ in 0..100 {
        if run(server_ns, &["sh", "-c", "ss -ltn | grep -q :5201"]).is_ok() {
            up = true;
            break;
        }
        clock.sleep(Duration::from_millis(50)).await;
    }
    if !up {
        bail!("iperf3 server in {server_ns} did not come up");
    }
    let ping = run(
        client_ns,
        &[
            "ping",
            "-n",
            "-q",
            "-c",
            &a.pings.to_string(),
            "-i",
            "0.005",
            server_ip,
        ],
    )?;
    let rtt: Vec<f64> = ping
        .lines()
        .find(|l| l.starts_with("rtt") || l.starts_with("round-trip"))
        .and_then(|l| l.split('=').nth(1))
        .map(|v| {
            v.trim()
                .trim_end_matches(" ms")
                .split('/')
                .filter_map(|x| x.parse().ok())
                .collect()
        })
        .context("parsing ping's rtt line")?;
    let (min_ms, avg_ms) = (
        rtt.first().copied().unwrap_or(0.0),
        rtt.get(1).copied().unwrap_or(0.0),
    );
    let secs = a.seconds.to_string();
    let tcp: Value = serde_json::from_str(&run(
        client_ns,
        &["iperf3", "-c", server_ip, "-p", "5201", "-t", &secs, "-J"],
    )?)?;
    let tcp_bps = tcp["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .context("iperf3 tcp result")?;
    let udp: Value = serde_json::from_str(&run(
        client_ns,
        &[
            "iperf3", "-c", server_ip, "-p", "5201", "-u", "-l", "64", "-b", "0", "-t", &secs, "-J",
        ],
    )?)?;
    let sum = &udp["end"]["sum"];
    let packets = sum["packets"].as_f64().context("iperf3 udp packets")?;
    let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
    let seconds = sum["seconds"].as_f64().unwrap_or(f64::from(a.seconds));
    Ok(Result3 {
        tcp_gbps: tcp_bps / 1e9,
        udp_pps: (packets - lost) / seconds,
        rtt_us: avg_ms * 1000.0,
        rtt_min_us: min_ms * 1000.0,
    })
}

struct Cleanup {
    namespaces: Vec<String>,
    cloudsim: Option<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(c) = &mut self.cloudsim {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

async fn wait_running(c: &Client, id: &str) -> anyhow::Result<()> {
    let clock = Clock::real();
    for _ in 0..600 {
        let v = c
            .call_with(
                Product::Ecs,
                "DescribeInstances",
                &[("InstanceIds", &format!("[\"{id}\"]"))],
            )
            .await?;
        match v["Instances"]["Instance"][0]["Status"].as_str() {
            Some("Running") => return Ok(()),
            Some("Stopped") => bail!("instance {id} failed to boot: {v}"),
            _ => clock.sleep(Duration::from_millis(50)).await,
        }
    }
    bail!("instance {id} did not boot")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if let Err(why) = ackemu_cloudsim::dataplane::preflight() {
        println!("skipped: {why}");
        return Ok(());
    }
    let cloudsim = match &a.cloudsim_binary {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .and_then(|d| d.parent())
            .context("locating the target directory")?
            .join("ackemu-cloudsim"),
    };
    let tag = format!("ackemu-bench-{}-", std::process::id());
    let dir = tempfile::tempdir()?;
    let mut cleanup = Cleanup {
        namespaces: vec![format!("{tag}va"), format!("{tag}vb")],
        cloudsim: None,
    };
    let listen = dir.path().join("listen.json");
    let profile = dir.path().join("profile.json");
    let child = Command::new(&cloudsim)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--grpc-listen",
            "127.0.0.1:0",
            "--metadata-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--registry-listen",
            "127.0.0.1:0",
            "--fabric-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--hypervisor",
            "local",
            "--netns-prefix",
            &tag,
            "--instance-start-delay",
            "0s",
        ])
        .args(["--eni-mtu", &a.mtu.to_string(), "--throttle-qps", "0"])
        .args(["--dataplane-spin-polls", &a.spin_polls.to_string()])
        .arg("--listen-file")
        .arg(&listen)
        .arg("--admin-profile-file")
        .arg(&profile)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", cloudsim.display()))?;
    cleanup.cloudsim = Some(child);
    let clock = Clock::real();
    let mut grpc = None;
    for _ in 0..200 {
        if let Ok(t) = std::fs::read_to_string(&listen)
            && let Ok(v) = serde_json::from_str::<Value>(&t)
        {
            grpc = v["grpc"].as_str().map(str::to_owned);
            break;
        }
        clock.sleep(Duration::from_millis(50)).await;
    }
    let grpc = grpc.context("cloudsim did not start")?;
    let pf: ProfileFile = serde_json::from_str(&std::fs::read_to_string(&profile)?)?;
    let p = &pf.profiles[0];
    let c = Client::new(
        &format!("http://{grpc}"),
        Credentials {
            access_key_id: p.access_key_id.clone(),
            access_key_secret: p.access_key_secret.clone(),
            security_token: None,
        },
        Clock::real(),
    )?;
    let vpc = c
        .call_with(
            Product::Vpc,
            "CreateVpc",
            &[("CidrBlock", "192.168.0.0/16")],
        )
        .await?;
    let vpc_id = vpc["VpcId"].as_str().context("VpcId")?.to_owned();
    let vsw = c
        .call_with(
            Product::Vpc,
            "CreateVSwitch",
            &[
                ("VpcId", &vpc_id),
                ("ZoneId", "cn-hangzhou-b"),
                ("CidrBlock", "192.168.0.0/24"),
            ],
        )
        .await?["VSwitchId"]
        .as_str()
        .context("VSwitchId")?
        .to_owned();
    let sg = c
        .call_with(Product::Ecs, "CreateSecurityGroup", &[("VpcId", &vpc_id)])
        .await?["SecurityGroupId"]
        .as_str()
        .context("SecurityGroupId")?
        .to_owned();
    let mut ids = Vec::new();
    for ipaddr in ["192.168.0.1", "192.168.0.2"] {
        let v = c
            .call_with(
                Product::Ecs,
                "RunInstances",
                &[
                    ("InstanceType", "ecs.g6.large"),
                    ("VSwitchId", &vsw),
                    ("SecurityGroupId", &sg),
                    ("PrivateIpAddress", ipaddr),
                ],
            )
            .await?;
        let id = v["InstanceIdSets"]["InstanceIdSet"][0]
            .as_str()
            .context("instance id")?
            .to_owned();
        wait_running(&c, &id).await?;
        ids.push(id);
    }
    let (na, nb) = (format!("{tag}{}", ids[0]), format!("{tag}{}", ids[1]));
    println!(
        "fabric: {} → {} (eni mtu {}, spin polls {})",
        ids[0], ids[1], a.mtu, a.spin_polls
    );
    let fab = measure(&na, &nb, "192.168.0.2", &a).await?;

    // The ceiling: a veth pair between two namespaces, created inside them.
    let (va, vb) = (
        &cleanup.namespaces[0].clone(),
        &cleanup.namespaces[1].clone(),
    );
    ip(&["netns", "add", va])?;
    ip(&["netns", "add", vb])?;
    ip(&[
        "-n", va, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1", "netns", vb,
    ])?;
    for (ns, dev, addr) in [
        (va, "veth0", "192.168.0.1/24"),
        (vb, "veth1", "192.168.0.2/24"),
    ] {
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
        ip(&[
            "-n",
            ns,
            "link",
            "set",
            dev,
            "mtu",
            &a.mtu.to_string(),
            "up",
        ])?;
    }
    println!("veth pair: {va} → {vb} (mtu {}, offloads on)", a.mtu);
    let veth = measure(va, vb, "192.168.0.2", &a).await?;

    println!();
    println!("{:<28}{:>14}{:>14}{:>10}", "", "fabric", "veth", "ratio");
    println!(
        "{:<28}{:>14.2}{:>14.2}{:>10.3}",
        "tcp single stream (Gbit/s)",
        fab.tcp_gbps,
        veth.tcp_gbps,
        fab.tcp_gbps / veth.tcp_gbps
    );
    println!(
        "{:<28}{:>14.0}{:>14.0}{:>10.3}",
        "udp 64-byte (packets/s)",
        fab.udp_pps,
        veth.udp_pps,
        fab.udp_pps / veth.udp_pps
    );
    println!(
        "{:<28}{:>14.1}{:>14.1}{:>10.2}",
        "ping rtt (µs)",
        fab.rtt_us,
        veth.rtt_us,
        fab.rtt_us / veth.rtt_us
    );
    println!(
        "{:<28}{:>14.1}{:>14.1}{:>10.2}",
        "ping rtt min (µs)",
        fab.rtt_min_us,
        veth.rtt_min_us,
        fab.rtt_min_us / veth.rtt_min_us
    );
    println!(
        "added rtt through the fabric: {:.1} µs average, {:.1} µs minimum",
        fab.rtt_us - veth.rtt_us,
        fab.rtt_min_us - veth.rtt_min_us
    );
    let counters = c
        .call_with(Product::Vpc, "DescribeFabricCounters", &[])
        .await?;
    println!(
        "fabric: forwarded {} packets, dropped {} ({})",
        counters["ForwardedPackets"], counters["DroppedTotal"], counters["DropCounts"]
    );
    drop(cleanup);
    Ok(())
}
