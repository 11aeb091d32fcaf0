//! Drives [`crate::podgc`] every 20 s.

use ackemu_kube::api::core::v1::{Node, Pod, PodCondition};
use ackemu_kube::meta::Time;
use serde_json::json;

use super::Ctx;
use super::rest;
use crate::podgc::{GC_PERIOD, PodGc};
use crate::util::pod as podutil;

pub fn start(ctx: &Ctx, threshold: usize) {
    ctx.inf.pods.require();
    ctx.inf.nodes.require();
    let c2 = ctx.clone();
    let token = ctx.tasks.token();
    ctx.tasks.spawn("pod garbage collector", async move {
        c2.inf.pods.wait_synced().await;
        c2.inf.nodes.wait_synced().await;
        let mut gc = PodGc::new(threshold);
        let mut tick = c2.clock.interval(GC_PERIOD);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = token.cancelled() => return,
            }
            let pods = c2.inf.pods.list();
            let nodes = c2.inf.nodes.list();
            let actions = gc.gc(
                &pods.iter().map(|p| p.as_ref()).collect::<Vec<_>>(),
                &nodes.iter().map(|n| n.as_ref()).collect::<Vec<_>>(),
                c2.now(),
            );
            for a in actions {
                if let Some(n) = &a.verify_node_absent
                    && let Ok(api) = c2.client.api::<Node>(None)
                    && api.get(n).await.is_ok()
                {
                    continue;
                }
                let key = a.pod.key();
                if let (Some((reason, message)), Some(p)) = (a.condition, c2.inf.pods.get(&key))
                    && !podutil::is_terminal(&p)
                {
                    let mut conds = p
                        .status
                        .as_ref()
                        .and_then(|s| s.conditions.clone())
                        .unwrap_or_default();
                    conds.push(PodCondition {
                        type_: "DisruptionTarget".into(),
                        status: "True".into(),
                        reason: Some(reason.into()),
                        message: Some(message.into()),
                        last_transition_time: Some(Time(c2.now().wall)),
                        ..Default::default()
                    });
                    let _ = rest::patch::<Pod>(
                        &c2.client,
                        Some(&a.pod.namespace),
                        &a.pod.name,
                        "status",
                        &json!({"status": {"phase": "Failed", "conditions": conds}}),
                    )
                    .await;
                }
                let Ok(info) = rest::info_of::<Pod>(&c2.client) else {
                    continue;
                };
                match rest::delete(
                    &c2.client,
                    &info,
                    Some(&a.pod.namespace),
                    &a.pod.name,
                    rest::Del {
                        uid: Some(&a.pod.uid),
                        grace_seconds: Some(0),
                        ..Default::default()
                    },
                )
                .await
                {
                    Ok(()) => tracing::info!("pod gc: deleted pod {key}"),
                    Err(e) => tracing::warn!("pod gc: deleting pod {key}: {e}"),
                }
            }
        }
    });
}
