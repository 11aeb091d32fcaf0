//! `ackemu-tests`: the end-to-end scenario runner (SCENARIOS.md).
//!
//! Each scenario runs on a freshly started cluster as setup → inject (the
//! cause, the way it happens in real life) → observe (every symptom,
//! through the interfaces a user has, within deadlines of cluster time) →
//! heal → recover. Scenarios are written once against
//! [`cluster::Cluster`]; the clusters are driven only through the user's
//! tools (`kubectl`, `etcdctl`, `ackemu chaos|cloud|logs|ssh`), never through
//! component internals.
//!
//! Must not know: any component crate. It depends on `lib/base` only.

pub mod bench;
pub mod chaos;
pub mod cluster;
pub mod compose;
pub mod report;
pub mod scenario;
pub mod scenarios;

use std::path::Path;

use ackemu_base::clock::Clock;
use cluster::{LocalCluster, UpOptions};
use scenario::{Run, Scenario};

/// Runs scenario `s` against `c`.
pub async fn run_on(s: &Scenario, c: &impl cluster::Cluster) -> Run {
    let clock = Clock::real();
    let start = clock.now();
    let mut r = Run::new(s.id, s.title, c);
    println!("== {} {} ({})", s.id, s.title, c.backend());
    let result = match s.id {
        scenarios::s01::ID => scenarios::s01::run(c, &mut r).await,
        scenarios::s02::ID => scenarios::s02::run(c, &mut r).await,
        scenarios::s03::ID => scenarios::s03::run(c, &mut r).await,
        scenarios::s04::ID => scenarios::s04::run(c, &mut r).await,
        scenarios::s05::ID => scenarios::s05::run(c, &mut r).await,
        scenarios::s06::ID => scenarios::s06::run(c, &mut r).await,
        scenarios::s07::ID => scenarios::s07::run(c, &mut r).await,
        scenarios::s08::ID => scenarios::s08::run(c, &mut r).await,
        scenarios::s09::ID => scenarios::s09::run(c, &mut r).await,
        scenarios::s10::ID => scenarios::s10::run(c, &mut r).await,
        scenarios::s11::ID => scenarios::s11::run(c, &mut r).await,
        scenarios::s12::ID => scenarios::s12::run(c, &mut r).await,
        scenarios::s13::ID => scenarios::s13::run(c, &mut r).await,
        scenarios::s14::ID => scenarios::s14::run(c, &mut r).await,
        other => Err(anyhow::anyhow!("scenario {other} has no implementation")),
    };
    if let Err(e) = result {
        println!("   failed: {e:#}");
        r.error = Some(format!("{e:#}"));
    }
    r.wall = clock.now().saturating_duration_since(start);
    r
}

/// Starts a fresh local cluster for `s` in `dir`, runs it, stops the
/// cluster (keeping its data and logs unless `purge`).
pub async fn run_local(
    s: &Scenario,
    ackemu: &Path,
    dir: &Path,
    time_scale: f64,
    purge: bool,
) -> Run {
    on_local(s, ackemu, dir, time_scale, purge, async |c| {
        run_on(s, c).await
    })
    .await
}

/// A chaos run ([`chaos`]) on a fresh local cluster in `dir`, stopped
/// afterwards as [`run_local`] stops it.
pub async fn chaos_local(
    o: &chaos::ChaosOptions,
    ackemu: &Path,
    dir: &Path,
    time_scale: f64,
    purge: bool,
) -> Run {
    let s = o.scenario();
    on_local(&s, ackemu, dir, time_scale, purge, async |c| {
        chaos::run_on(c, o).await
    })
    .await
}

/// Starts the cluster `s` needs in `dir`, runs `body` on it, stops it.
async fn on_local(
    s: &Scenario,
    ackemu: &Path,
    dir: &Path,
    time_scale: f64,
    purge: bool,
    body: impl AsyncFnOnce(&LocalCluster) -> Run,
) -> Run {
    let opts = UpOptions {
        nodes: s.nodes,
        time_scale,
        store_quota_bytes: s.store_quota_bytes,
        extra_args: s.up_args.iter().map(|a| a.to_string()).collect(),
        ..UpOptions::default()
    };
    let clock = Clock::real();
    let start = clock.now();
    match LocalCluster::up(ackemu, dir, &opts).await {
        Ok(c) => {
            let mut r = body(&c).await;
            if let Err(e) = c.down(purge && r.passed()).await {
                r.error.get_or_insert(format!("ackemu down: {e:#}"));
            }
            r.wall = clock.now().saturating_duration_since(start);
            r
        }
        Err(e) => {
            let mut r = Run::failed_start(s);
            r.error = Some(format!("starting the cluster: {e:#}"));
            r.wall = clock.now().saturating_duration_since(start);
            r
        }
    }
}

/// Starts a fresh docker-compose cluster for `s` (`base` with the
/// scenario's nodes, quota and add-ons; the image rebuilt first from the
/// binaries next to `ackemu` when they are newer), runs it, takes the
/// cluster down (deleting its data directory if it passed and `purge`).
pub async fn run_compose(
    s: &Scenario,
    ackemu: &Path,
    base: &compose::ComposeOptions,
    purge: bool,
) -> Run {
    let clock = Clock::real();
    let start = clock.now();
    let up = async {
        let bin_dir = ackemu.parent().unwrap_or(Path::new("."));
        compose::ensure_image(&base.root, bin_dir, compose::IMAGE).await?;
        let opts = compose::ComposeOptions {
            nodes: s.nodes,
            store_quota_bytes: s.store_quota_bytes,
            ..base.clone()
        }
        .with_up_args(s.up_args)?;
        compose::ComposeCluster::up(ackemu, &opts).await
    };
    let mut r = match up.await {
        Ok(c) => {
            let mut r = run_on(s, &c).await;
            if let Err(e) = c.down(purge && r.passed()).await {
                r.error.get_or_insert(format!("docker compose down: {e:#}"));
            }
            r
        }
        Err(e) => {
            let mut r = Run::failed_start(s);
            r.error = Some(format!("starting the compose cluster: {e:#}"));
            r
        }
    };
    r.wall = clock.now().saturating_duration_since(start);
    r
}

/// The scenario with id `id` (case-insensitive), or an error listing them.
pub fn find(id: &str) -> anyhow::Result<&'static Scenario> {
    scenarios::ALL
        .iter()
        .find(|s| s.id.eq_ignore_ascii_case(id) || s.title == id)
        .ok_or_else(|| {
            let ids: Vec<&str> = scenarios::ALL.iter().map(|s| s.id).collect();
            anyhow::anyhow!("no scenario {id:?}: expected one of {}", ids.join(", "))
        })
}
