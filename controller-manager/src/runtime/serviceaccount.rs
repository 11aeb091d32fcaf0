//! Drives [`crate::serviceaccount`]: the `default` ServiceAccount and the
//! `kube-root-ca.crt` ConfigMap of every namespace, and legacy token
//! Secrets.

use std::sync::Arc;

use ackemu_kube::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use serde_json::json;

use super::informer::Change;
use super::rest;
use super::{Ctx, Next, Queue};
use crate::serviceaccount::{
    ROOT_CA_CONFIGMAP, RootCaAction, TokenAction, missing_accounts, populated_data, root_ca,
    token_secret,
};
use crate::util::meta;

/// The ServiceAccounts controller (per namespace).
pub fn start_accounts(ctx: &Ctx, workers: usize) {
    let q = Queue::new("serviceaccount", ctx);
    {
        let q = q.clone();
        ctx.inf.namespaces.on(move |c| match c {
            Change::Add(n) | Change::Update(_, n) => q.add(meta::name(&n.metadata)),
            Change::Delete(_) => {}
        });
    }
    {
        let q = q.clone();
        ctx.inf.serviceaccounts.on(move |c| {
            if let Change::Delete(sa) = c {
                q.add(meta::namespace(&sa.metadata));
            }
        });
    }
    let c2 = ctx.clone();
    q.run(workers, move |ns| {
        let ctx = c2.clone();
        async move {
            let Some(n) = ctx.inf.namespaces.get(&ns) else {
                return Ok(Next::Done);
            };
            let accounts = ctx.inf.serviceaccounts.list_ns(&ns);
            let refs: Vec<&ServiceAccount> = accounts.iter().map(Arc::as_ref).collect();
            for sa in missing_accounts(&n, &refs) {
                match rest::create(&ctx.client, Some(&ns), &sa).await {
                    Ok(_) => {}
                    Err(e) if e.code() == Some(409) => {}
                    // A namespace being deleted refuses new objects.
                    Err(e) if e.code() == Some(403) => return Ok(Next::Done),
                    Err(e) => {
                        return Err(format!(
                            "creating serviceaccount {ns}/{}: {e}",
                            meta::name(&sa.metadata)
                        ));
                    }
                }
            }
            Ok(Next::Done)
        }
    });
}

/// The root CA publisher (per namespace).
pub fn start_root_ca(ctx: &Ctx, workers: usize, ca_pem: String) {
    let q = Queue::new("root-ca-cert-publisher", ctx);
    {
        let q = q.clone();
        ctx.inf.namespaces.on(move |c| match c {
            Change::Add(n) | Change::Update(_, n) => q.add(meta::name(&n.metadata)),
            Change::Delete(_) => {}
        });
    }
    {
        let q = q.clone();
        ctx.inf.configmaps.on(move |c| {
            let cm = match c {
                Change::Add(cm) | Change::Update(_, cm) | Change::Delete(cm) => cm,
            };
            if meta::name(&cm.metadata) == ROOT_CA_CONFIGMAP {
                q.add(meta::namespace(&cm.metadata));
            }
        });
    }
    let c2 = ctx.clone();
    let ca = Arc::new(ca_pem);
    q.run(workers, move |ns| {
        let ctx = c2.clone();
        let ca = ca.clone();
        async move {
            let Some(n) = ctx.inf.namespaces.get(&ns) else {
                return Ok(Next::Done);
            };
            let cur = ctx.inf.configmaps.get(&format!("{ns}/{ROOT_CA_CONFIGMAP}"));
            let r = match root_ca(&n, cur.as_deref(), &ca) {
                None => return Ok(Next::Done),
                Some(RootCaAction::Create(cm)) => {
                    rest::create::<ConfigMap>(&ctx.client, Some(&ns), &cm)
                        .await
                        .map(|_| ())
                }
                Some(RootCaAction::Update(cm)) => {
                    rest::update::<ConfigMap>(&ctx.client, Some(&ns), ROOT_CA_CONFIGMAP, "", &cm)
                        .await
                        .map(|_| ())
                }
            };
            match r {
                Ok(()) => Ok(Next::Done),
                Err(e) if e.code() == Some(409) || e.code() == Some(403) => Ok(Next::Done),
                Err(e) => Err(format!("publishing {ns}/{ROOT_CA_CONFIGMAP}: {e}")),
            }
        }
    });
}

/// The tokens controller (per Secret), when a signing key is configured.
pub fn start_tokens(ctx: &Ctx, workers: usize, sa_key_pem: String, ca_pem: String) {
    let q = Queue::new("serviceaccount-token", ctx);
    {
        let q = q.clone();
        ctx.inf.secrets.on(move |c| match c {
            Change::Add(s) | Change::Update(_, s) => {
                if s.type_.as_deref() == Some(crate::serviceaccount::TOKEN_SECRET_TYPE) {
                    q.add(&meta::key(&s.metadata));
                }
            }
            Change::Delete(_) => {}
        });
    }
    {
        let q = q.clone();
        let c2 = ctx.clone();
        ctx.inf.serviceaccounts.on(move |c| {
            if let Change::Delete(sa) = c {
                for s in c2.inf.secrets.list_ns(meta::namespace(&sa.metadata)) {
                    if meta::annotation(&s.metadata, crate::serviceaccount::SA_NAME_ANNOTATION)
                        == Some(meta::name(&sa.metadata))
                    {
                        q.add(&meta::key(&s.metadata));
                    }
                }
            }
        });
    }
    ctx.inf.serviceaccounts.require();
    let c2 = ctx.clone();
    let key_pem = Arc::new(sa_key_pem);
    let ca = Arc::new(ca_pem);
    q.run(workers, move |key| {
        let ctx = c2.clone();
        let key_pem = key_pem.clone();
        let ca = ca.clone();
        async move {
            let Some(s) = ctx.inf.secrets.get(&key) else {
                return Ok(Next::Done);
            };
            let ns = meta::namespace(&s.metadata).to_owned();
            let accounts = ctx.inf.serviceaccounts.list_ns(&ns);
            let refs: Vec<&ServiceAccount> = accounts.iter().map(Arc::as_ref).collect();
            match token_secret(&s, &refs) {
                TokenAction::Keep => Ok(Next::Done),
                TokenAction::Delete { uid } => {
                    let info = rest::info_of::<Secret>(&ctx.client).map_err(|e| e.to_string())?;
                    rest::delete(
                        &ctx.client,
                        &info,
                        Some(&ns),
                        meta::name(&s.metadata),
                        rest::Del {
                            uid: Some(&uid),
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| format!("deleting token secret {key}: {e}"))?;
                    Ok(Next::Done)
                }
                TokenAction::Populate { claims } => {
                    let data = populated_data(&s, &claims, &key_pem, &ca)
                        .map_err(|e| format!("signing a token for {key}: {e}"))?;
                    let patch = json!({"data": data});
                    rest::patch::<Secret>(
                        &ctx.client,
                        Some(&ns),
                        meta::name(&s.metadata),
                        "",
                        &patch,
                    )
                    .await
                    .map_err(|e| format!("populating token secret {key}: {e}"))?;
                    Ok(Next::Done)
                }
            }
        }
    });
}
