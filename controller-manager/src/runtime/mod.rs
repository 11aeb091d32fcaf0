//! The controller-manager process: shared informers feed keyed,
//! rate-limited work queues whose workers run the pure cores of this crate
//! and perform the writes they return. Each controller's driver lives in
//! its own module here; the cores know nothing of this.

pub mod autoscaler;
pub mod bootstrap;
pub mod ccm;
pub mod certificates;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod events;
pub mod gc;
pub mod informer;
pub mod namespace;
pub mod nodes;
pub mod podgc;
pub mod replicaset;
pub mod rest;
pub mod serviceaccount;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use ackemu_base::Env;
use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use ackemu_kube::api::certificates::v1::CertificateSigningRequest;
use ackemu_kube::api::coordination::v1::Lease;
use ackemu_kube::api::core::v1::{
    ConfigMap, Endpoints, Namespace, Node, Pod, Secret, Service, ServiceAccount,
};
use ackemu_kube::api::discovery::v1::EndpointSlice;
use ackemu_kube::client::{Client, ClientConfig, ClientError};
use serde::de::DeserializeOwned;

pub use informer::{Change, Informer};
pub use worker::{Next, Queue};

use crate::util::Now;

/// How long `run` waits for its tasks after the stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Every controller this binary runs (`--controllers`).
pub const ALL_CONTROLLERS: &[&str] = &[
    "replicaset",
    "deployment",
    "serviceaccount",
    "root-ca-cert-publisher",
    "serviceaccount-token",
    "garbagecollector",
    "namespace",
    "nodeipam",
    "nodelifecycle",
    "daemonset",
    "endpoint",
    "endpointslice",
    "podgc",
    "bootstrapsigner",
    "tokencleaner",
    "csrapproving",
];

#[derive(Clone, Debug)]
pub struct Config {
    pub client: ClientConfig,
    /// Controllers to run; `*` for all.
    pub controllers: Vec<String>,
    /// Workers per controller (`--concurrent-*-syncs`).
    pub workers: usize,
    /// Capacity of each work queue.
    pub queue_capacity: usize,
    /// Capacity of the event recorder's queue.
    pub event_queue: usize,
    /// The CA bundle published as `kube-root-ca.crt` (default: the CA the
    /// client trusts).
    pub root_ca_pem: Option<String>,
    /// `--service-account-private-key-file` contents (PKCS#8 EC): enables
    /// the tokens controller.
    pub sa_key_pem: Option<String>,
    /// Node IPAM (`--allocate-node-cidrs` with `--cluster-cidr`).
    pub ipam: Option<crate::nodeipam::IpamConfig>,
    pub lifecycle: crate::nodelifecycle::LifecycleConfig,
    /// `--cluster-signing-cert-file` / `-key-file` contents.
    pub signing: Option<(String, String)>,
    /// `--cluster-signing-duration`.
    pub signing_duration: Duration,
    /// `--terminated-pod-gc-threshold`.
    pub terminated_pod_gc_threshold: usize,
    /// Hold the `kube-system/kube-controller-manager` Lease before running.
    pub leader_elect: bool,
    /// How long `start` waits for the informers to sync (cluster time).
    pub sync_timeout: Duration,
}

impl Config {
    pub fn new(client: ClientConfig) -> Config {
        Config {
            client,
            controllers: vec!["*".into()],
            workers: 5,
            queue_capacity: 10_000,
            event_queue: 1000,
            root_ca_pem: None,
            sa_key_pem: None,
            ipam: None,
            lifecycle: Default::default(),
            signing: None,
            signing_duration: crate::certificates::DEFAULT_SIGNING_DURATION,
            terminated_pod_gc_threshold: crate::podgc::DEFAULT_TERMINATED_THRESHOLD,
            leader_elect: false,
            sync_timeout: Duration::from_secs(60),
        }
    }

    pub fn enabled(&self, name: &str) -> bool {
        self.controllers.iter().any(|c| c == "*" || c == name)
            && !self.controllers.iter().any(|c| c == &format!("-{name}"))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("connecting to the API server: {0}")]
    Client(#[from] ClientError),
    #[error("unknown controller {0:?}: expected one of {ALL_CONTROLLERS:?}")]
    UnknownController(String),
    #[error("loading the cluster signing CA: {0}")]
    SigningCa(String),
}

/// The shared informers.
pub struct Informers {
    pub pods: Arc<Informer<Pod>>,
    pub nodes: Arc<Informer<Node>>,
    pub namespaces: Arc<Informer<Namespace>>,
    pub replicasets: Arc<Informer<ReplicaSet>>,
    pub deployments: Arc<Informer<Deployment>>,
    pub daemonsets: Arc<Informer<DaemonSet>>,
    pub serviceaccounts: Arc<Informer<ServiceAccount>>,
    pub secrets: Arc<Informer<Secret>>,
    pub configmaps: Arc<Informer<ConfigMap>>,
    pub leases: Arc<Informer<Lease>>,
    pub services: Arc<Informer<Service>>,
    pub endpoints: Arc<Informer<Endpoints>>,
    pub endpointslices: Arc<Informer<EndpointSlice>>,
    pub csrs: Arc<Informer<CertificateSigningRequest>>,
}

fn typed<K: k8s_openapi::Resource + DeserializeOwned + Send + Sync + 'static>(
    client: &Client,
) -> Result<Arc<Informer<K>>, ClientError> {
    Ok(Informer::new(rest::info_of::<K>(client)?))
}

impl Informers {
    fn new(client: &Client) -> Result<Informers, ClientError> {
        Ok(Informers {
            pods: typed(client)?,
            nodes: typed(client)?,
            namespaces: typed(client)?,
            replicasets: typed(client)?,
            deployments: typed(client)?,
            daemonsets: typed(client)?,
            serviceaccounts: typed(client)?,
            secrets: typed(client)?,
            configmaps: typed(client)?,
            leases: typed(client)?,
            services: typed(client)?,
            endpoints: typed(client)?,
            endpointslices: typed(client)?,
            csrs: typed(client)?,
        })
    }

    fn start(&self, client: &Client, ctx: &Ctx) {
        macro_rules! go {
            ($($f:ident),*) => {$( if self.$f.wanted() { self.$f.start(client, ctx); } )*};
        }
        go!(
            pods,
            nodes,
            namespaces,
            replicasets,
            deployments,
            daemonsets,
            serviceaccounts,
            secrets,
            configmaps,
            leases,
            services,
            endpoints,
            endpointslices,
            csrs
        );
    }

    /// Waits until every started informer has synced.
    pub async fn wait_synced(&self) {
        macro_rules! wait {
            ($($f:ident),*) => {$( if self.$f.wanted() { self.$f.wait_synced().await; } )*};
        }
        wait!(
            pods,
            nodes,
            namespaces,
            replicasets,
            deployments,
            daemonsets,
            serviceaccounts,
            secrets,
            configmaps,
            leases,
            services,
            endpoints,
            endpointslices,
            csrs
        );
    }
}

/// What every driver shares.
#[derive(Clone)]
pub struct Ctx {
    pub clock: Clock,
    pub tasks: Tasks,
    pub client: Client,
    pub inf: Arc<Informers>,
    pub recorder: events::Recorder,
    pub queue_capacity: usize,
}

impl Ctx {
    pub fn now(&self) -> Now {
        Now::from_clock(&self.clock)
    }

    pub fn event(&self, component: &str, e: crate::util::Event) {
        self.recorder.record(component, e);
    }
}

/// A running controller-manager (for tests and the launcher).
pub struct Handle {
    pub ctx: Ctx,
    /// The garbage collector's monitors.
    pub monitors: Vec<Arc<Informer<serde_json::Value>>>,
}

/// The shared pieces (client, informers, event recorder) for a process
/// that starts its own drivers on them: the cloud-controller-manager and
/// the autoscaler. Start the informers with [`start_informers`] once the
/// drivers have registered their handlers.
pub fn context(
    client: &ClientConfig,
    env: &Env,
    queue_capacity: usize,
) -> Result<Ctx, ClientError> {
    let client = Client::new(client.clone(), env.clock.clone(), env.tasks.clone())?;
    let inf = Arc::new(Informers::new(&client)?);
    Ok(Ctx {
        clock: env.clock.clone(),
        tasks: env.tasks.clone(),
        client: client.clone(),
        inf,
        recorder: events::Recorder::start(client, env.clock.clone(), &env.tasks, 1000),
        queue_capacity,
    })
}

/// Starts the informers drivers asked for and waits (bounded) for them to
/// sync.
pub async fn start_informers(ctx: &Ctx, timeout: Duration) {
    ctx.inf.start(&ctx.client, ctx);
    if ctx
        .clock
        .timeout(timeout, ctx.inf.wait_synced())
        .await
        .is_err()
    {
        tracing::warn!(
            "some informers have not synced after {timeout:?}; controllers start anyway"
        );
    }
}

/// Leader election on `kube-system/<lease>`: returns `true` once this
/// process leads (and cancels the process's tasks if it later loses the
/// lease), `false` if the process was told to stop first.
pub async fn elect(client: &ClientConfig, env: &Env, lease: &str) -> Result<bool, ClientError> {
    let client = Client::new(client.clone(), env.clock.clone(), env.tasks.clone())?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let identity = format!("{}_{}", host.trim(), std::process::id());
    let lcfg = ackemu_kube::client::leader::LeaderConfig::new("kube-system", lease, &identity);
    let mut leader =
        ackemu_kube::client::leader::start(client, lcfg, env.clock.clone(), &env.tasks);
    tracing::info!("attempting to acquire leader lease kube-system/{lease} as {identity}");
    let stop = env.tasks.token();
    tokio::select! {
        r = leader.wait_for(|l| *l) => { if r.is_err() { return Ok(false); } }
        () = stop.cancelled() => return Ok(false),
    }
    tracing::info!("successfully acquired lease kube-system/{lease}");
    let token = env.tasks.token();
    env.tasks.spawn("leader watch", async move {
        if leader.wait_for(|l| !*l).await.is_ok() && !token.is_cancelled() {
            tracing::error!("leaderelection lost");
            token.cancel();
        }
    });
    Ok(true)
}

/// Serves until the process is told to stop, then waits (bounded) for
/// its tasks.
pub async fn serve_until_stopped(env: &Env) {
    env.tasks.token().cancelled().await;
    // Bounded: an open API connection's task ends only when the server
    // closes it.
    if env
        .clock
        .timeout(SHUTDOWN_GRACE, env.tasks.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("tasks still running after {SHUTDOWN_GRACE:?}; exiting anyway");
    }
}

/// Builds the client and informers, starts the enabled controllers and
/// returns once the caches have synced.
pub async fn start(config: Config, env: &Env) -> Result<Handle, RunError> {
    for c in &config.controllers {
        let name = c.trim_start_matches('-');
        if name != "*" && !ALL_CONTROLLERS.contains(&name) {
            return Err(RunError::UnknownController(c.clone()));
        }
    }
    let client = Client::new(config.client.clone(), env.clock.clone(), env.tasks.clone())?;
    let inf = Arc::new(Informers::new(&client)?);
    let ctx = Ctx {
        clock: env.clock.clone(),
        tasks: env.tasks.clone(),
        client: client.clone(),
        inf: inf.clone(),
        recorder: events::Recorder::start(
            client.clone(),
            env.clock.clone(),
            &env.tasks,
            config.event_queue,
        ),
        queue_capacity: config.queue_capacity,
    };
    if config.enabled("replicaset") {
        replicaset::start(&ctx, config.workers);
    }
    if config.enabled("deployment") {
        deployment::start(&ctx, config.workers);
    }
    let ca = config
        .root_ca_pem
        .clone()
        .unwrap_or_else(|| config.client.ca_pem.clone());
    if config.enabled("serviceaccount") {
        serviceaccount::start_accounts(&ctx, config.workers);
    }
    if config.enabled("root-ca-cert-publisher") {
        serviceaccount::start_root_ca(&ctx, config.workers, ca.clone());
    }
    if config.enabled("serviceaccount-token")
        && let Some(k) = config.sa_key_pem.clone()
    {
        serviceaccount::start_tokens(&ctx, config.workers, k, ca.clone());
    }
    if config.enabled("namespace") {
        namespace::start(&ctx, config.workers);
    }
    if config.enabled("nodeipam")
        && let Some(ipam) = config.ipam.clone()
    {
        nodes::start_ipam(&ctx, 1, ipam);
    }
    if config.enabled("nodelifecycle") {
        nodes::start_lifecycle(&ctx, config.lifecycle.clone());
    }
    if config.enabled("daemonset") {
        daemonset::start(&ctx, config.workers);
    }
    if config.enabled("endpoint") {
        endpoints::start_endpoints(&ctx, config.workers);
    }
    if config.enabled("endpointslice") {
        endpoints::start_slices(&ctx, config.workers);
    }
    if config.enabled("podgc") {
        podgc::start(&ctx, config.terminated_pod_gc_threshold);
    }
    if config.enabled("bootstrapsigner") {
        bootstrap::start_signer(&ctx);
    }
    if config.enabled("tokencleaner") {
        bootstrap::start_cleaner(&ctx);
    }
    if config.enabled("csrapproving") {
        let signer = match &config.signing {
            Some((cert, key)) => Some((
                Arc::new(
                    ackemu_base::pki::Ca::from_pem(cert, key)
                        .map_err(|e| RunError::SigningCa(e.to_string()))?,
                ),
                config.signing_duration,
            )),
            None => None,
        };
        certificates::start(&ctx, signer);
    }
    let monitors = if config.enabled("garbagecollector") {
        gc::start(&ctx, config.workers)
    } else {
        Vec::new()
    };
    inf.start(&client, &ctx);
    for m in &monitors {
        m.start(&client, &ctx);
    }
    let synced = async {
        inf.wait_synced().await;
        for m in &monitors {
            m.wait_synced().await;
        }
    };
    if env
        .clock
        .timeout(config.sync_timeout, synced)
        .await
        .is_err()
    {
        tracing::warn!(
            "some informers have not synced after {:?}; controllers start anyway",
            config.sync_timeout
        );
    }
    env.health.set_ready(true);
    Ok(Handle { ctx, monitors })
}

/// `run(config, env)`: win the election (when asked to), start, then serve
/// until the process is told to stop or loses the lease.
pub async fn run(config: Config, env: Env) -> Result<(), RunError> {
    if config.leader_elect && !elect(&config.client, &env, "kube-controller-manager").await? {
        return Ok(());
    }
    let _h = start(config, &env).await?;
    serve_until_stopped(&env).await;
    Ok(())
}
