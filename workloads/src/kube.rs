//! What the cluster programs share: reaching the API server the way a pod
//! does (in-cluster service-account credentials, or `--kubeconfig`), typed
//! reflectors, and Istio's log line format for the mesh programs.

use std::path::Path;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::client::informer::{self, Reflector, ReflectorConfig, Store};
use ackemu_kube::client::{Client, ClientConfig, ListParams};
use serde::de::DeserializeOwned;

/// A client from `--kubeconfig`, or from the pod's service account.
pub fn connect(kubeconfig: Option<&Path>, clock: &Clock, tasks: &Tasks) -> anyhow::Result<Client> {
    Ok(match kubeconfig {
        Some(p) => Client::new(
            ClientConfig::from_kubeconfig(p)?,
            clock.clone(),
            tasks.clone(),
        )?,
        None => Client::in_cluster(clock.clone(), tasks.clone())?,
    })
}

/// The service-account mount: `$ACKEMU_SERVICEACCOUNT_DIR` or the
/// standard path.
pub fn service_account_dir() -> std::path::PathBuf {
    std::env::var_os("ACKEMU_SERVICEACCOUNT_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| ackemu_kube::client::SERVICE_ACCOUNT_DIR.into())
}

/// The namespace this program runs in: `--namespace`, else the service
/// account's, else `fallback`.
pub fn own_namespace(flag: Option<&str>, fallback: &str) -> String {
    flag.map(str::to_owned)
        .or_else(|| ClientConfig::in_cluster_namespace().ok())
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| fallback.to_owned())
}

/// Start a reflector for kind `K` across all namespaces.
pub fn reflect<K: k8s_openapi::Resource + serde::Serialize + DeserializeOwned>(
    client: &Client,
    namespace: Option<&str>,
    params: ListParams,
    tasks: &Tasks,
) -> anyhow::Result<Reflector> {
    let api = client.api::<K>(namespace)?;
    Ok(informer::start(
        api.dynamic().clone(),
        params,
        ReflectorConfig::default(),
        tasks.clock().clone(),
        tasks,
    ))
}

/// The objects of a reflector's store that decode as `K`.
pub fn typed<K: DeserializeOwned>(store: &Store) -> Vec<K> {
    store
        .read()
        .values()
        .filter_map(|v| serde_json::from_value(v.clone()).ok())
        .collect()
}

/// Istio's log line: `2019-11-22T02:40:34.814547Z\t<level>\t<message>`,
/// stamped with cluster wall time, on stderr (the container log).
pub fn istio_log(clock: &Clock, level: &str, msg: &str) {
    let ts = clock
        .wall_chrono()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    eprintln!("{ts}\t{level}\t{msg}");
}
