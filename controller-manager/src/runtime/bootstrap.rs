//! Drives [`crate::bootstrap`]: the signer of `kube-public/cluster-info`
//! and the bootstrap token cleaner.

use std::sync::Arc;

use ackemu_kube::api::core::v1::{ConfigMap, Secret};

use super::informer::Change;
use super::rest;
use super::{Ctx, Next, Queue};
use crate::bootstrap::{CLUSTER_INFO, CleanDecision, TOKEN_SECRET_TYPE, clean, sign_cluster_info};
use crate::util::meta;

const KEY: &str = "kube-public/cluster-info";

pub fn start_signer(ctx: &Ctx) {
    let q = Queue::new("bootstrapsigner", ctx);
    {
        let q = q.clone();
        ctx.inf.configmaps.on(move |c| {
            let cm = match c {
                Change::Add(c) | Change::Update(_, c) | Change::Delete(c) => c,
            };
            if meta::key(&cm.metadata) == KEY {
                q.add(KEY);
            }
        });
    }
    {
        let q = q.clone();
        ctx.inf.secrets.on(move |c| {
            let s = match c {
                Change::Add(s) | Change::Update(_, s) | Change::Delete(s) => s,
            };
            if s.type_.as_deref() == Some(TOKEN_SECRET_TYPE) {
                q.add(KEY);
            }
        });
    }
    let c2 = ctx.clone();
    q.run(1, move |_| {
        let ctx = c2.clone();
        async move {
            let Some(cm) = ctx.inf.configmaps.get(KEY) else {
                return Ok(Next::Done);
            };
            let secrets = ctx.inf.secrets.list_ns("kube-system");
            let refs: Vec<&Secret> = secrets.iter().map(Arc::as_ref).collect();
            let Some(data) = sign_cluster_info(&cm, &refs, ctx.now()) else {
                return Ok(Next::Done);
            };
            let mut new: ConfigMap = (*cm).clone();
            new.data = Some(data);
            rest::update(&ctx.client, Some("kube-public"), CLUSTER_INFO, "", &new)
                .await
                .map_err(|e| format!("signing {KEY}: {e}"))?;
            Ok(Next::Done)
        }
    });
}

pub fn start_cleaner(ctx: &Ctx) {
    let q = Queue::new("tokencleaner", ctx);
    {
        let q = q.clone();
        ctx.inf.secrets.on(move |c| match c {
            Change::Add(s) | Change::Update(_, s) => {
                if s.type_.as_deref() == Some(TOKEN_SECRET_TYPE) {
                    q.add(&meta::key(&s.metadata));
                }
            }
            Change::Delete(_) => {}
        });
    }
    let c2 = ctx.clone();
    q.run(1, move |key| {
        let ctx = c2.clone();
        async move {
            let Some(s) = ctx.inf.secrets.get(&key) else {
                return Ok(Next::Done);
            };
            match clean(&s, ctx.now()) {
                CleanDecision::Keep => Ok(Next::Done),
                CleanDecision::RequeueAfter(d) => Ok(Next::After(d)),
                CleanDecision::Delete { uid } => {
                    let info = rest::info_of::<Secret>(&ctx.client).map_err(|e| e.to_string())?;
                    tracing::info!("token cleaner: deleting expired bootstrap token {key}");
                    rest::delete(
                        &ctx.client,
                        &info,
                        Some(meta::namespace(&s.metadata)),
                        meta::name(&s.metadata),
                        rest::Del {
                            uid: Some(&uid),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| format!("deleting {key}: {e}"))?;
                    Ok(Next::Done)
                }
            }
        }
    });
}
