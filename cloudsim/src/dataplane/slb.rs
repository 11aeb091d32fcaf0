//! The SLB data plane: for every running TCP listener a proxy listens on
//! `VIP:port` inside the cloud-services namespace and forwards each
//! connection to a healthy backend chosen by smooth weighted round robin,
//! connecting from the SLB source address through the fabric (so the
//! backend's security group applies). Health checks are real TCP connects
//! on the same path, every `HealthCheckInterval`; results pass the
//! healthy/unhealthy thresholds ([`HealthState`]) and changes are reported
//! with `actions::slb::report_health`, which DescribeHealthStatus and
//! DescribeLoadBalancers show.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::tasks::Tasks;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::services::{CloudServices, SLB_SOURCE_ADDR};
use crate::actions::slb::{backend_health, report_health};
use crate::cloud::Cloud;
use crate::model::BackendHealth;

/// A backend's health as the checks see it (pure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub status: BackendHealth,
    ok_streak: u32,
    fail_streak: u32,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            status: BackendHealth::Unavailable,
            ok_streak: 0,
            fail_streak: 0,
        }
    }
}

impl HealthState {
    /// Feeds one check result; returns the new status when it changes
    /// (`healthy` successes in a row make a backend normal, `unhealthy`
    /// failures in a row abnormal).
    pub fn observe(&mut self, ok: bool, healthy: u32, unhealthy: u32) -> Option<BackendHealth> {
        if ok {
            self.ok_streak += 1;
            self.fail_streak = 0;
        } else {
            self.fail_streak += 1;
            self.ok_streak = 0;
        }
        let next = if self.ok_streak >= healthy.max(1) {
            BackendHealth::Normal
        } else if self.fail_streak >= unhealthy.max(1) {
            BackendHealth::Abnormal
        } else {
            return None;
        };
        (next != self.status).then(|| {
            self.status = next;
            next
        })
    }
}

/// Smooth weighted round robin (nginx's): every pick adds each
/// candidate's weight to its score, takes the highest, and subtracts the
/// total from the winner — weights 5,1,1 give a a b a c a a.
#[derive(Debug, Default)]
pub struct Wrr {
    score: HashMap<String, i64>,
}

impl Wrr {
    pub fn pick<'a>(&mut self, candidates: &[(&'a str, u32)]) -> Option<&'a str> {
        let total: i64 = candidates.iter().map(|(_, w)| i64::from(*w)).sum();
        if total == 0 {
            return None;
        }
        self.score
            .retain(|k, _| candidates.iter().any(|(c, _)| c == k));
        let mut best: Option<(&'a str, i64)> = None;
        for &(c, w) in candidates {
            let s = self.score.entry(c.to_owned()).or_insert(0);
            *s += i64::from(w);
            if best.is_none_or(|(_, b)| *s > b) {
                best = Some((c, *s));
            }
        }
        let (winner, _) = best?;
        if let Some(s) = self.score.get_mut(winner) {
            *s -= total;
        }
        Some(winner)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ListenerKey {
    lb: String,
    port: u16,
}

#[derive(Debug, Clone, PartialEq)]
struct CheckSpec {
    ip: Ipv4Addr,
    port: u16,
    interval: Duration,
    timeout: Duration,
    healthy: u32,
    unhealthy: u32,
}

/// Concurrent proxied connections per listener.
const MAX_CONNS_PER_LISTENER: usize = 1024;

struct Plane {
    cloud: Cloud,
    services: CloudServices,
    tasks: Tasks,
    wrr: Arc<Mutex<HashMap<ListenerKey, Wrr>>>,
    vips: HashSet<Ipv4Addr>,
    listeners: HashMap<ListenerKey, (Ipv4Addr, CancellationToken)>,
    checks: HashMap<(ListenerKey, String), (CheckSpec, CancellationToken)>,
}

/// Runs the SLB data plane until the tasks' token is cancelled.
pub async fn run(cloud: Cloud, services: CloudServices, tasks: Tasks) {
    let mut rev = cloud.subscribe();
    let token = tasks.token();
    let mut p = Plane {
        cloud,
        services,
        tasks,
        wrr: Arc::default(),
        vips: HashSet::new(),
        listeners: HashMap::new(),
        checks: HashMap::new(),
    };
    loop {
        p.reconcile().await;
        tokio::select! {
            () = token.cancelled() => break,
            r = rev.changed() => if r.is_err() { break },
        }
    }
    for (_, (_, t)) in p.listeners.drain() {
        t.cancel();
    }
    for (_, (_, t)) in p.checks.drain() {
        t.cancel();
    }
}

impl Plane {
    async fn reconcile(&mut self) {
        let s = self.cloud.snapshot();
        let want_vips: HashSet<Ipv4Addr> = s.load_balancers.values().map(|lb| lb.address).collect();
        for v in want_vips.difference(&self.vips.clone()) {
            match self.services.add_addr(*v).await {
                Ok(()) => {
                    self.vips.insert(*v);
                }
                Err(e) => tracing::warn!("slb: adding vip {v}: {e}"),
            }
        }
        for v in self.vips.clone().difference(&want_vips) {
            if let Err(e) = self.services.del_addr(*v).await {
                tracing::warn!("slb: removing vip {v}: {e}");
            }
            self.vips.remove(v);
        }

        let mut want_listeners = HashMap::new();
        let mut want_checks = HashMap::new();
        for lb in s.load_balancers.values() {
            for l in lb.listeners.values().filter(|l| l.running) {
                let key = ListenerKey {
                    lb: lb.id.clone(),
                    port: l.port,
                };
                want_listeners.insert(key.clone(), lb.address);
                let hc = &l.health_check;
                for b in &lb.backends {
                    let Some(inst) = s.instances.get(&b.server_id) else {
                        continue;
                    };
                    want_checks.insert(
                        (key.clone(), b.server_id.clone()),
                        CheckSpec {
                            ip: inst.private_ip,
                            port: hc.connect_port.unwrap_or(l.backend_port),
                            interval: Duration::from_secs(u64::from(hc.interval_s.max(1))),
                            timeout: Duration::from_secs(u64::from(hc.connect_timeout_s.max(1))),
                            healthy: hc.healthy_threshold,
                            unhealthy: hc.unhealthy_threshold,
                        },
                    );
                }
            }
        }
        self.listeners.retain(|k, (vip, t)| {
            let keep = want_listeners.get(k) == Some(vip);
            if !keep {
                t.cancel();
            }
            keep
        });
        for (k, vip) in want_listeners {
            if self.listeners.contains_key(&k) {
                continue;
            }
            let t = self.tasks.token().child_token();
            self.listeners.insert(k.clone(), (vip, t.clone()));
            let (cloud, services, tasks, wrr) = (
                self.cloud.clone(),
                self.services.clone(),
                self.tasks.clone(),
                self.wrr.clone(),
            );
            self.tasks.spawn(
                format!("slb/{}:{}/listen", k.lb, k.port),
                serve_listener(cloud, services, tasks, wrr, k, vip, t),
            );
        }
        self.checks.retain(|k, (spec, t)| {
            let keep = want_checks.get(k) == Some(spec);
            if !keep {
                t.cancel();
            }
            keep
        });
        for (k, spec) in want_checks {
            if self.checks.contains_key(&k) {
                continue;
            }
            let t = self.tasks.token().child_token();
            self.checks.insert(k.clone(), (spec.clone(), t.clone()));
            let (cloud, services) = (self.cloud.clone(), self.services.clone());
            self.tasks.spawn(
                format!("slb/{}:{}/check/{}", k.0.lb, k.0.port, k.1),
                check_loop(cloud, services, k.0, k.1, spec, t),
            );
        }
    }
}

async fn serve_listener(
    cloud: Cloud,
    services: CloudServices,
    tasks: Tasks,
    wrr: Arc<Mutex<HashMap<ListenerKey, Wrr>>>,
    key: ListenerKey,
    vip: Ipv4Addr,
    token: CancellationToken,
) {
    let l = match services.listen(SocketAddrV4::new(vip, key.port)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("slb {}: listener {}: {e}", key.lb, key.port);
            return;
        }
    };
    tracing::info!("slb {}: listening on {vip}:{}", key.lb, key.port);
    let sem = Arc::new(Semaphore::new(MAX_CONNS_PER_LISTENER));
    loop {
        let (client, _) = tokio::select! {
            () = token.cancelled() => return,
            a = l.accept() => match a {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("slb {}: accepting on {}: {e}", key.lb, key.port);
                    continue;
                }
            },
        };
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            continue;
        };
        let (cloud, services, wrr, key2, t) = (
            cloud.clone(),
            services.clone(),
            wrr.clone(),
            key.clone(),
            token.clone(),
        );
        tasks.spawn(format!("slb/{}:{}/conn", key.lb, key.port), async move {
            proxy(cloud, services, wrr, key2, client, t).await;
            drop(permit);
        });
    }
}

/// Picks a healthy backend for a new connection: `(server id, address,
/// port)`.
fn choose(
    cloud: &Cloud,
    wrr: &Mutex<HashMap<ListenerKey, Wrr>>,
    key: &ListenerKey,
) -> Option<(String, SocketAddrV4)> {
    let s = cloud.snapshot();
    let lb = s.load_balancers.get(&key.lb)?;
    let l = lb.listeners.get(&key.port)?;
    let candidates: Vec<(&str, u32)> = lb
        .backends
        .iter()
        .filter(|b| b.weight > 0 && backend_health(l, b) == BackendHealth::Normal)
        .filter(|b| s.instances.contains_key(&b.server_id))
        .map(|b| (b.server_id.as_str(), b.weight))
        .collect();
    let server = wrr
        .lock()
        .entry(key.clone())
        .or_default()
        .pick(&candidates)?;
    let ip = s.instances.get(server)?.private_ip;
    Some((server.to_owned(), SocketAddrV4::new(ip, l.backend_port)))
}

async fn proxy(
    cloud: Cloud,
    services: CloudServices,
    wrr: Arc<Mutex<HashMap<ListenerKey, Wrr>>>,
    key: ListenerKey,
    mut client: tokio::net::TcpStream,
    token: CancellationToken,
) {
    let Some((server, to)) = choose(&cloud, &wrr, &key) else {
        // No healthy backend: refuse (RST).
        reset_on_close(&client);
        return;
    };
    let sock = match services.socket(SocketAddrV4::new(SLB_SOURCE_ADDR, 0)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("slb {}: {e}", key.lb);
            return;
        }
    };
    let mut upstream = match cloud
        .clock()
        .timeout(Duration::from_secs(5), sock.connect(to.into()))
        .await
    {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            tracing::info!("slb {}: backend {server} ({to}): {e}", key.lb);
            reset_on_close(&client);
            return;
        }
        Err(_) => {
            tracing::info!("slb {}: backend {server} ({to}): connect timed out", key.lb);
            reset_on_close(&client);
            return;
        }
    };
    tokio::select! {
        () = token.cancelled() => {}
        r = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = r {
                tracing::debug!("slb {}: connection to {server}: {e}", key.lb);
            }
        }
    }
}

/// Closing will send RST instead of FIN (SO_LINGER 0): a refused
/// connection, as a load balancer without a backend answers.
fn reset_on_close(s: &tokio::net::TcpStream) {
    use nix::sys::socket::{setsockopt, sockopt};
    let l = nix::libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let _ = setsockopt(s, sockopt::Linger, &l);
}

async fn probe(cloud: &Cloud, services: &CloudServices, spec: &CheckSpec) -> bool {
    let Ok(sock) = services.socket(SocketAddrV4::new(SLB_SOURCE_ADDR, 0)).await else {
        return false;
    };
    let to = SocketAddrV4::new(spec.ip, spec.port);
    matches!(
        cloud
            .clock()
            .timeout(spec.timeout, sock.connect(to.into()))
            .await,
        Ok(Ok(_))
    )
}

async fn check_loop(
    cloud: Cloud,
    services: CloudServices,
    key: ListenerKey,
    server: String,
    spec: CheckSpec,
    token: CancellationToken,
) {
    let mut h = HealthState::default();
    let mut tick = cloud.clock().interval(spec.interval);
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ok = tokio::select! {
            () = token.cancelled() => return,
            ok = probe(&cloud, &services, &spec) => ok,
        };
        if let Some(next) = h.observe(ok, spec.healthy, spec.unhealthy) {
            tracing::info!(
                "slb {}: backend {server} on listener {} is {}",
                key.lb,
                key.port,
                next.as_str()
            );
            let (lb, port, srv) = (key.lb.clone(), key.port, server.clone());
            let r = cloud
                .mutate(move |s, _| report_health(s, &lb, port, &srv, next).map(|c| (c, ())))
                .await;
            if let Err(e) = r {
                tracing::warn!("slb {}: reporting health of {server}: {e}", key.lb);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smooth_weighted_round_robin() {
        let mut w = Wrr::default();
        let c = [("a", 5), ("b", 1), ("c", 1)];
        let got: Vec<&str> = (0..7).map(|_| w.pick(&c).unwrap()).collect();
        assert_eq!(got, ["a", "a", "b", "a", "c", "a", "a"]);
        // Equal weights alternate; a backend that leaves is skipped at once.
        let mut w = Wrr::default();
        let c = [("a", 100), ("b", 100)];
        let got: Vec<&str> = (0..4).map(|_| w.pick(&c).unwrap()).collect();
        assert_eq!(got, ["a", "b", "a", "b"]);
        assert_eq!(w.pick(&[("b", 100)]), Some("b"));
        assert_eq!(w.pick(&[("b", 100)]), Some("b"));
        assert_eq!(w.pick(&[]), None);
        assert_eq!(w.pick(&[("z", 0)]), None);
    }

    #[test]
    fn health_thresholds() {
        let mut h = HealthState::default();
        // healthy 2, unhealthy 3
        let steps = [
            (true, None),
            (true, Some(BackendHealth::Normal)),
            (true, None),
            (false, None),
            (false, None),
            (true, None),
            (false, None),
            (false, None),
            (false, Some(BackendHealth::Abnormal)),
            (false, None),
            (true, None),
            (true, Some(BackendHealth::Normal)),
        ];
        for (i, (ok, want)) in steps.into_iter().enumerate() {
            assert_eq!(h.observe(ok, 2, 3), want, "step {i}");
        }
        // From unknown, failures make it abnormal.
        let mut h = HealthState::default();
        assert_eq!(h.observe(false, 2, 2), None);
        assert_eq!(h.observe(false, 2, 2), Some(BackendHealth::Abnormal));
    }
}
