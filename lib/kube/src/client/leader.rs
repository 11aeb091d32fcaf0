//! Lease-based leader election (coordination.k8s.io/v1 Lease), as
//! client-go's `leaderelection` does it: the holder renews `renewTime`
//! every retry period; another candidate takes over only after
//! `leaseDurationSeconds` without a renewal; writes are guarded by
//! resourceVersion, so two candidates never both win. Durations are
//! cluster time (defaults 15 s / 10 s / 2 s).

use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{Client, ClientError};
use crate::duration::format_micro_timestamp;

#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    /// This candidate (e.g. `master-1_<uuid>`).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaderConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What a candidate does with the lease it sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// No lease yet: create it.
    Create,
    /// We hold it: renew.
    Renew,
    /// Its holder stopped renewing: take it over.
    Takeover,
    /// Someone else holds it: wait.
    Wait,
}

fn micro_ms(v: &Value) -> Option<i64> {
    v.as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// The decision, from the lease (JSON) and cluster wall time.
pub fn step(lease: Option<&Value>, identity: &str, now_ms: i64) -> Step {
    let Some(lease) = lease else {
        return Step::Create;
    };
    let spec = &lease["spec"];
    let holder = spec["holderIdentity"].as_str().unwrap_or("");
    if holder == identity {
        return Step::Renew;
    }
    if holder.is_empty() {
        return Step::Takeover;
    }
    let duration_ms = spec["leaseDurationSeconds"].as_i64().unwrap_or(15) * 1000;
    match micro_ms(&spec["renewTime"]).or_else(|| micro_ms(&spec["acquireTime"])) {
        Some(renewed) if renewed + duration_ms > now_ms => Step::Wait,
        _ => Step::Takeover,
    }
}

fn now_micro(clock: &Clock) -> String {
    let t = jiff::Timestamp::from_millisecond(clock.wall_unix_ms())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    format_micro_timestamp(t)
}

/// Runs the election until the tasks stop; `is_leader` follows the outcome.
pub fn start(
    client: Client,
    cfg: LeaderConfig,
    clock: Clock,
    tasks: &Tasks,
) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let token = tasks.token();
    tasks.spawn(format!("leader-election {}/{}", cfg.namespace, cfg.name), async move {
        let info = match client.registry().preferred("coordination.k8s.io", "leases") {
            Some(i) => i.clone(),
            None => return,
        };
        let api = client.resource(&info, Some(&cfg.namespace));
        let mut last_renew = clock.now();
        loop {
            let attempt = try_once(&api, &cfg, &clock).await;
            match attempt {
                Ok(true) => {
                    last_renew = clock.now();
                    tx.send_replace(true);
                }
                Ok(false) => {
                    tx.send_replace(false);
                }
                Err(e) => {
                    tracing::info!("leader election {}/{}: {e}", cfg.namespace, cfg.name);
                    if *tx.borrow() && clock.now().saturating_duration_since(last_renew) > cfg.renew_deadline {
                        tracing::warn!("leader election {}/{}: failed to renew within the deadline; stepping down", cfg.namespace, cfg.name);
                        tx.send_replace(false);
                    }
                }
            }
            tokio::select! {
                () = clock.sleep(cfg.retry_period) => {}
                () = token.cancelled() => {
                    tx.send_replace(false);
                    return;
                }
            }
        }
    });
    rx
}

/// One acquire-or-renew round; `Ok(true)` when we hold the lease after it.
async fn try_once(
    api: &super::DynamicApi,
    cfg: &LeaderConfig,
    clock: &Clock,
) -> Result<bool, ClientError> {
    let current = match api.get(&cfg.name).await {
        Ok(v) => Some(v),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    let now = now_micro(clock);
    let secs = cfg.lease_duration.as_secs() as i64;
    match step(current.as_ref(), &cfg.identity, clock.wall_unix_ms()) {
        Step::Wait => Ok(false),
        Step::Create => {
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": secs, "acquireTime": now, "renewTime": now, "leaseTransitions": 0}});
            match api.create(&lease).await {
                Ok(_) => Ok(true),
                Err(e) if e.is_conflict() => Ok(false),
                Err(e) => Err(e),
            }
        }
        step @ (Step::Renew | Step::Takeover) => {
            let mut lease = current.unwrap_or(Value::Null);
            if step == Step::Takeover {
                let t = lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) + 1;
                lease["spec"]["leaseTransitions"] = json!(t);
                lease["spec"]["acquireTime"] = json!(now);
                lease["spec"]["holderIdentity"] = json!(cfg.identity);
            }
            lease["spec"]["renewTime"] = json!(now);
            lease["spec"]["leaseDurationSeconds"] = json!(secs);
            match api.replace(&cfg.name, "", &lease).await {
                Ok(_) => Ok(true),
                Err(e) if e.is_conflict() => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let lease = |holder: &str, renew: &str| json!({"spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "renewTime": renew}});
        let now: i64 = "2020-09-22T12:33:24Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond();
        let cases = [
            (None, Step::Create),
            (
                Some(lease("me", "2020-09-22T12:33:20.000000Z")),
                Step::Renew,
            ),
            (
                Some(lease("other", "2020-09-22T12:33:20.000000Z")),
                Step::Wait,
            ),
            (
                Some(lease("other", "2020-09-22T12:33:09.000000Z")),
                Step::Takeover,
            ),
            (
                Some(lease("", "2020-09-22T12:33:20.000000Z")),
                Step::Takeover,
            ),
            (Some(lease("other", "garbage")), Step::Takeover),
        ];
        for (l, want) in cases {
            assert_eq!(step(l.as_ref(), "me", now), want, "{l:?}");
        }
    }
}
