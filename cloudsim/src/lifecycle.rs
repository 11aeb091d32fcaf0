//! Instance lifecycle: performs the effects actions queue (boot, stop,
//! delete) against the hypervisor backend and commits the resulting state
//! transitions (Pending → Starting → Running, Stopping → Stopped). Work on
//! one instance runs in the order it was queued (each step waits for the
//! previous one); different instances proceed concurrently up to a bound.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::actions::ess::settle_activities;
use crate::cloud::{Cloud, Effect, EffectReceiver};
use crate::hypervisor::{HypervisorBackend, InstanceSpec};
use crate::model::{InstanceStatus, State};

/// Builds the backend's view of an instance.
pub fn spec_of(s: &State, id: &str) -> Option<InstanceSpec> {
    let i = s.instances.get(id)?;
    let t = s.instance_types.get(&i.instance_type);
    let vsw = s.vswitches.get(&i.vswitch_id)?;
    let gateway = std::net::Ipv4Addr::from(u32::from(vsw.cidr.broadcast()).saturating_sub(2));
    Some(InstanceSpec {
        instance_id: i.id.clone(),
        host_name: i.host_name.clone(),
        instance_type: i.instance_type.clone(),
        cpu_core_count: t.map(|t| t.cpu_core_count).unwrap_or(1),
        memory_size_gib: t.map(|t| t.memory_size_gib).unwrap_or(1.0),
        vpc_id: i.vpc_id.clone(),
        vswitch_id: i.vswitch_id.clone(),
        private_ip: i.private_ip,
        prefix_len: vsw.cidr.prefix_len(),
        gateway,
        user_data: i.user_data.clone(),
        ram_role: i.ram_role.clone(),
    })
}

#[derive(Clone)]
struct Worker {
    cloud: Cloud,
    backend: Arc<dyn HypervisorBackend>,
}

fn instance_of(e: &Effect) -> &str {
    match e {
        Effect::Boot(i) | Effect::Stop(i) | Effect::Delete(i) => i,
    }
}

impl Worker {
    async fn apply(&self, e: Effect) {
        let id = instance_of(&e).to_owned();
        let res = match e {
            Effect::Boot(_) => self.boot(&id).await,
            Effect::Stop(_) => self.stop(&id).await,
            Effect::Delete(_) => self.delete(&id).await,
        };
        if let Err(err) = res {
            tracing::error!("instance {id}: lifecycle step failed: {err}");
        }
    }

    async fn boot(&self, id: &str) -> Result<(), crate::error::CloudError> {
        let spec = self
            .cloud
            .mutate(|s, _| {
                let Some(i) = s.instances.get_mut(id) else {
                    return Ok((false, None));
                };
                if !matches!(i.status, InstanceStatus::Pending | InstanceStatus::Starting) {
                    return Ok((false, None));
                }
                let changed = i.status != InstanceStatus::Starting;
                i.status = InstanceStatus::Starting;
                Ok((changed, spec_of(s, id)))
            })
            .await?;
        let Some(spec) = spec else { return Ok(()) };
        let delay = self.cloud.config().instance_start_delay;
        if !delay.is_zero() {
            self.cloud.clock().sleep(delay).await;
        }
        let booted =
            ackemu_base::tasks::wait_on(format!("hypervisor boot {id}"), self.backend.boot(spec))
                .await;
        let now = self.cloud.clock().wall_unix_ms();
        self.cloud
            .mutate(|s, _| {
                let Some(i) = s.instances.get_mut(id) else {
                    return Ok((false, ()));
                };
                if i.status != InstanceStatus::Starting {
                    return Ok((false, ()));
                }
                match &booted {
                    Ok(()) => {
                        i.status = InstanceStatus::Running;
                        i.last_error = None;
                    }
                    Err(e) => {
                        i.status = InstanceStatus::Stopped;
                        i.last_error = Some(e.to_string());
                    }
                }
                settle_activities(s, now);
                Ok((true, ()))
            })
            .await?;
        if let Err(e) = booted {
            tracing::warn!("{e}");
        }
        Ok(())
    }

    async fn stop(&self, id: &str) -> Result<(), crate::error::CloudError> {
        let stopped = ackemu_base::tasks::wait_on(
            format!("hypervisor stop {id}"),
            self.backend.stop(id.to_owned()),
        )
        .await;
        if let Err(e) = &stopped {
            tracing::warn!("{e}");
        }
        self.cloud
            .mutate(|s, _| {
                let Some(i) = s.instances.get_mut(id) else {
                    return Ok((false, ()));
                };
                if i.status != InstanceStatus::Stopping {
                    return Ok((false, ()));
                }
                match &stopped {
                    Ok(()) => i.status = InstanceStatus::Stopped,
                    Err(e) => {
                        i.status = InstanceStatus::Running;
                        i.last_error = Some(e.to_string());
                    }
                }
                Ok((true, ()))
            })
            .await
    }

    async fn delete(&self, id: &str) -> Result<(), crate::error::CloudError> {
        if let Err(e) = ackemu_base::tasks::wait_on(
            format!("hypervisor delete {id}"),
            self.backend.delete(id.to_owned()),
        )
        .await
        {
            tracing::warn!("{e}");
        }
        let now = self.cloud.clock().wall_unix_ms();
        self.cloud
            .mutate(|s, _| Ok((settle_activities(s, now), ())))
            .await
    }
}

/// Re-queues the work a restart interrupted.
pub async fn recover(cloud: &Cloud) {
    let s = cloud.snapshot();
    for i in s.instances.values() {
        match i.status {
            InstanceStatus::Pending | InstanceStatus::Starting => {
                cloud.enqueue(Effect::Boot(i.id.clone())).await
            }
            InstanceStatus::Stopping => cloud.enqueue(Effect::Stop(i.id.clone())).await,
            InstanceStatus::Running | InstanceStatus::Stopped => {}
        }
    }
}

/// After a restart: asks the backend to re-attach (or boot again) every
/// instance the state says is Running; one that cannot come back is marked
/// Stopped with the reason.
pub async fn resume_running(cloud: &Cloud, backend: Arc<dyn HypervisorBackend>) {
    let s = cloud.snapshot();
    let specs: Vec<InstanceSpec> = s
        .instances
        .values()
        .filter(|i| i.status == InstanceStatus::Running)
        .filter_map(|i| spec_of(&s, &i.id))
        .collect();
    let jobs = specs.into_iter().map(|spec| {
        let backend = backend.clone();
        async move {
            let id = spec.instance_id.clone();
            let res = ackemu_base::tasks::wait_on(
                format!("hypervisor resume {id}"),
                backend.resume(spec),
            )
            .await;
            if let Err(e) = res {
                tracing::warn!("{e}");
                let msg = e.to_string();
                let r = cloud
                    .mutate(|s, _| {
                        let Some(i) = s.instances.get_mut(&id) else {
                            return Ok((false, ()));
                        };
                        if i.status != InstanceStatus::Running {
                            return Ok((false, ()));
                        }
                        i.status = InstanceStatus::Stopped;
                        i.last_error = Some(msg);
                        Ok((true, ()))
                    })
                    .await;
                if let Err(e) = r {
                    tracing::error!("instance {id}: recording a failed resume: {e}");
                }
            }
        }
    });
    futures::future::join_all(jobs).await;
}

/// Runs the lifecycle until the cloud's task token is cancelled.
pub async fn run(
    cloud: Cloud,
    backend: Arc<dyn HypervisorBackend>,
    mut rx: EffectReceiver,
    max_concurrent: usize,
) {
    let worker = Worker {
        cloud: cloud.clone(),
        backend,
    };
    let sem = Arc::new(Semaphore::new(max_concurrent.max(1)));
    let chains: Mutex<HashMap<String, tokio::task::JoinHandle<()>>> = Mutex::new(HashMap::new());
    let token = cloud.tasks().token();
    loop {
        let e = tokio::select! {
            () = token.cancelled() => return,
            e = rx.0.recv() => match e { Some(e) => e, None => return },
        };
        let Ok(permit) = sem.clone().acquire_owned().await else {
            return;
        };
        let w = worker.clone();
        let id = instance_of(&e).to_owned();
        let name = format!("cloud/lifecycle/{e:?}");
        let prev = chains.lock().remove(&id);
        let h = cloud.tasks().spawn(name, async move {
            if let Some(p) = prev {
                let _ = p.await;
            }
            w.apply(e).await;
            drop(permit);
        });
        let mut c = chains.lock();
        c.retain(|_, h| !h.is_finished());
        c.insert(id, h);
    }
}
