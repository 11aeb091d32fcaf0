//! The zone's feed: reflectors on Services, Endpoints and (for `pods
//! verified`) Pods; every change rebuilds the zone snapshot, as CoreDNS's
//! `kubernetes` plugin answers from its informers' caches.

use std::net::Ipv4Addr;

use ackemu_base::tasks::Tasks;
use ackemu_kube::client::informer::Reflector;
use ackemu_kube::client::{Client, ListParams};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use tokio::sync::watch;

use super::server::ZoneHandle;
use super::zone::{PodsMode, Zone};
use crate::kube::{reflect, typed};

/// What the feed builds.
#[derive(Clone, Debug)]
pub struct Config {
    /// The cluster domain.
    pub domain: String,
    /// Pod records.
    pub pods: PodsMode,
}

/// Start the reflectors and the rebuild loop. The returned receiver turns
/// true once every reflector has listed (CoreDNS `ready`).
pub fn start(
    client: &Client,
    cfg: Config,
    zone: ZoneHandle,
    tasks: &Tasks,
) -> anyhow::Result<watch::Receiver<bool>> {
    let mut svcs = reflect::<Service>(client, None, ListParams::default(), tasks)?;
    let mut eps = reflect::<Endpoints>(client, None, ListParams::default(), tasks)?;
    let mut pods = match cfg.pods {
        PodsMode::Verified => Some(reflect::<Pod>(
            client,
            None,
            ListParams {
                field_selector: Some("status.phase=Running".into()),
                ..Default::default()
            },
            tasks,
        )?),
        _ => None,
    };
    let (ready_tx, ready_rx) = watch::channel(false);
    let token = tasks.token();
    tasks.spawn("dns/feed", async move {
        loop {
            let synced = *svcs.synced.borrow()
                && *eps.synced.borrow()
                && pods.as_ref().is_none_or(|p| *p.synced.borrow());
            if synced {
                zone.set(build(&cfg, &svcs, &eps, pods.as_ref()));
                if !*ready_tx.borrow() {
                    tracing::info!("dns: caches synced, serving {}", cfg.domain);
                    ready_tx.send_replace(true);
                }
            }
            // Wait for any change, then take everything queued so one
            // rebuild covers a burst.
            let pod_next = async {
                match pods.as_mut() {
                    Some(p) => p.notifications.recv().await,
                    None => std::future::pending().await,
                }
            };
            let got = tokio::select! {
                biased;
                () = token.cancelled() => return,
                n = svcs.notifications.recv() => n.is_some(),
                n = eps.notifications.recv() => n.is_some(),
                n = pod_next => n.is_some(),
                _ = svcs.synced.changed() => true,
                _ = eps.synced.changed() => true,
            };
            if !got {
                return;
            }
            while svcs.notifications.try_recv().is_ok() || eps.notifications.try_recv().is_ok() {}
            if let Some(p) = pods.as_mut() {
                while p.notifications.try_recv().is_ok() {}
            }
        }
    });
    Ok(ready_rx)
}

fn build(cfg: &Config, svcs: &Reflector, eps: &Reflector, pods: Option<&Reflector>) -> Zone {
    let services: Vec<Service> = typed(&svcs.store);
    let endpoints: Vec<Endpoints> = typed(&eps.store);
    let pod_ips = pods
        .map(|p| typed::<Pod>(&p.store))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let ns = p.metadata.namespace?;
            let ip: Ipv4Addr = p.status?.pod_ip?.parse().ok()?;
            Some((ns, ip))
        });
    Zone::build(&cfg.domain, &services, &endpoints).with_pods(cfg.pods, pod_ips)
}
