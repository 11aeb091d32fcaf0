//! Drives [`crate::namespace`]: discovery through the API server's
//! `/api` and `/apis` (every group's preferred version), content deletion
//! per resource, then the conditions and the `finalize` call.

use ackemu_kube::api::core::v1::Namespace;
use ackemu_kube::client::{Client, ClientError};
use serde_json::Value;

use super::informer::Change;
use super::rest;
use super::{Ctx, Next, Queue};
use crate::namespace::{
    ApiResource, Discovery, Gvr, GvrOutcome, Plan, Verdict, conclude, estimate_pods, gvr_outcome,
    plan,
};
use crate::util::meta;

fn message(e: &ClientError) -> String {
    match e {
        ClientError::Api { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

fn resources(list: &Value, group: &str, version: &str) -> Vec<ApiResource> {
    list["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| ApiResource {
            group: group.to_owned(),
            version: version.to_owned(),
            resource: r["name"].as_str().unwrap_or("").to_owned(),
            namespaced: r["namespaced"].as_bool().unwrap_or(false),
            verbs: r["verbs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        })
        .collect()
}

/// `ServerPreferredNamespacedResources` with per-group errors.
pub async fn discover(client: &Client) -> Result<Discovery, ClientError> {
    let mut d = Discovery::default();
    let api = client.request("GET", "/api", None).await?;
    for v in api["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
    {
        match client.request("GET", &format!("/api/{v}"), None).await {
            Ok(list) => d.resources.extend(resources(&list, "", v)),
            Err(e) => {
                d.failed.insert(v.to_owned(), message(&e));
            }
        }
    }
    let apis = client.request("GET", "/apis", None).await?;
    for g in apis["groups"].as_array().into_iter().flatten() {
        let name = g["name"].as_str().unwrap_or("");
        let Some(version) = g["preferredVersion"]["version"].as_str() else {
            continue;
        };
        match client
            .request("GET", &format!("/apis/{name}/{version}"), None)
            .await
        {
            Ok(list) => d.resources.extend(resources(&list, name, version)),
            Err(e) => {
                d.failed.insert(format!("{name}/{version}"), message(&e));
            }
        }
    }
    Ok(d)
}

fn collection(g: &Gvr, ns: &str) -> String {
    if g.group.is_empty() {
        format!("/api/{}/namespaces/{ns}/{}", g.version, g.resource)
    } else {
        format!(
            "/apis/{}/{}/namespaces/{ns}/{}",
            g.group, g.version, g.resource
        )
    }
}

async fn delete_content(
    client: &Client,
    g: &Gvr,
    ns: &str,
    deletecollection: bool,
    list: bool,
) -> GvrOutcome {
    let path = collection(g, ns);
    let mut estimate = 0;
    if g.group.is_empty() && g.resource == "pods" {
        match client.request("GET", &path, None).await {
            Ok(v) => {
                let pods: Vec<ackemu_kube::api::core::v1::Pod> = v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| serde_json::from_value(p.clone()).ok())
                    .collect();
                estimate = estimate_pods(&pods.iter().collect::<Vec<_>>());
            }
            Err(e) => return gvr_outcome(g, ns, 0, Some(message(&e)), None),
        }
    }
    let deleted = if deletecollection {
        client.request("DELETE", &path, None).await.map(|_| ())
    } else {
        match client.request("GET", &path, None).await {
            Ok(v) => {
                let mut r = Ok(());
                for item in v["items"].as_array().into_iter().flatten() {
                    let name = item["metadata"]["name"].as_str().unwrap_or("");
                    match client
                        .request("DELETE", &format!("{path}/{name}"), None)
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if e.is_not_found() => {}
                        Err(e) => r = Err(e),
                    }
                }
                r
            }
            Err(e) => Err(e),
        }
    };
    if let Err(e) = deleted {
        return gvr_outcome(g, ns, estimate, Some(message(&e)), None);
    }
    if !list {
        return gvr_outcome(g, ns, estimate, None, None);
    }
    match client.request("GET", &path, None).await {
        Ok(v) => {
            let items: Vec<Vec<String>> = v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    i["metadata"]["finalizers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|f| f.as_str().map(str::to_owned))
                        .collect()
                })
                .collect();
            gvr_outcome(g, ns, estimate, None, Some(items))
        }
        Err(e) => gvr_outcome(g, ns, estimate, Some(message(&e)), None),
    }
}

pub fn start(ctx: &Ctx, workers: usize) {
    let q = Queue::new("namespace", ctx);
    {
        let q = q.clone();
        ctx.inf.namespaces.on(move |c| match c {
            Change::Add(n) | Change::Update(_, n) => {
                if n.metadata.deletion_timestamp.is_some() {
                    q.add(meta::name(&n.metadata));
                }
            }
            Change::Delete(_) => {}
        });
    }
    let c2 = ctx.clone();
    q.run(workers, move |name| {
        let ctx = c2.clone();
        async move { sync(&ctx, &name).await }
    });
}

async fn put_status(
    ctx: &Ctx,
    name: &str,
    st: ackemu_kube::api::core::v1::NamespaceStatus,
) -> Result<(), String> {
    let api = ctx
        .client
        .api::<Namespace>(None)
        .map_err(|e| e.to_string())?;
    let mut cur = match api.get(name).await {
        Ok(n) => n,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(format!("getting namespace {name}: {e}")),
    };
    cur.status = Some(st);
    match api.replace_status(name, &cur).await {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(format!("updating status of namespace {name}: {e}")),
    }
}

async fn sync(ctx: &Ctx, name: &str) -> Result<Next, String> {
    // The latest view, not the cache: a finalized namespace must not be
    // processed twice.
    let api = ctx
        .client
        .api::<Namespace>(None)
        .map_err(|e| e.to_string())?;
    let ns = match api.get(name).await {
        Ok(n) => n,
        Err(e) if e.is_not_found() => return Ok(Next::Done),
        Err(e) => return Err(format!("getting namespace {name}: {e}")),
    };
    let discovery = discover(&ctx.client)
        .await
        .map_err(|e| format!("discovery: {e}"))?;
    let Plan::DeleteContent {
        status,
        gvrs,
        deletecollection,
        list,
    } = plan(&ns, &discovery)
    else {
        return Ok(Next::Done);
    };
    if let Some(st) = status {
        put_status(ctx, name, st).await?;
    }
    let mut outcomes = Vec::new();
    for g in &gvrs {
        outcomes.push(delete_content(&ctx.client, g, name, deletecollection[g], list[g]).await);
    }
    let latest = api
        .get(name)
        .await
        .map_err(|e| format!("getting namespace {name}: {e}"))?;
    let c = conclude(&latest, &discovery, &outcomes, ctx.now());
    if let Some(st) = c.status {
        put_status(ctx, name, st).await?;
    }
    match c.verdict {
        Verdict::Finalize { finalizers } => {
            let mut n = api
                .get(name)
                .await
                .map_err(|e| format!("getting namespace {name}: {e}"))?;
            n.spec.get_or_insert_with(Default::default).finalizers = Some(finalizers);
            let info = rest::info_of::<Namespace>(&ctx.client).map_err(|e| e.to_string())?;
            let mut body = serde_json::to_value(&n).map_err(|e| e.to_string())?;
            body["apiVersion"] = "v1".into();
            body["kind"] = "Namespace".into();
            match ctx
                .client
                .request(
                    "PUT",
                    &rest::item_path(&info, None, name, "finalize"),
                    Some(("application/json", body.to_string().into_bytes())),
                )
                .await
            {
                Ok(_) => Ok(Next::Done),
                Err(e) if e.is_not_found() => Ok(Next::Done),
                Err(e) => Err(format!("finalizing namespace {name}: {e}")),
            }
        }
        Verdict::Remaining { estimate_s } => Ok(Next::After(std::time::Duration::from_secs(
            (estimate_s / 2).max(1) as u64,
        ))),
        Verdict::Failed { error } => {
            tracing::error!("deletion of namespace {name} failed: {error}");
            Err(error)
        }
    }
}
