//! Writes the drivers make, with the preconditions Kubernetes' controllers
//! use (uid, resourceVersion).

use ackemu_kube::client::{Client, ClientError, PatchType};
use ackemu_kube::registry::ResourceInfo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub fn collection_path(info: &ResourceInfo, ns: Option<&str>) -> String {
    let base = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    match ns {
        Some(ns) if info.namespaced() && !ns.is_empty() => {
            format!("{base}/namespaces/{ns}/{}", info.resource)
        }
        _ => format!("{base}/{}", info.resource),
    }
}

pub fn item_path(info: &ResourceInfo, ns: Option<&str>, name: &str, sub: &str) -> String {
    let c = collection_path(info, ns);
    if sub.is_empty() {
        format!("{c}/{name}")
    } else {
        format!("{c}/{name}/{sub}")
    }
}

/// `DeleteOptions`: preconditions, propagation, grace period.
#[derive(Clone, Copy, Debug, Default)]
pub struct Del<'a> {
    pub uid: Option<&'a str>,
    pub resource_version: Option<&'a str>,
    pub propagation: Option<&'a str>,
    pub grace_seconds: Option<i64>,
}

impl<'a> Del<'a> {
    /// Only if the object still has this uid.
    pub fn uid(uid: &'a str) -> Del<'a> {
        Del {
            uid: Some(uid),
            ..Default::default()
        }
    }
}

/// DELETE with options; NotFound counts as done.
pub async fn delete(
    client: &Client,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    o: Del<'_>,
) -> Result<(), ClientError> {
    let mut opts = json!({"kind": "DeleteOptions", "apiVersion": "v1"});
    let mut pre = serde_json::Map::new();
    if let Some(u) = o.uid.filter(|u| !u.is_empty()) {
        pre.insert("uid".into(), json!(u));
    }
    if let Some(rv) = o.resource_version.filter(|r| !r.is_empty()) {
        pre.insert("resourceVersion".into(), json!(rv));
    }
    if !pre.is_empty() {
        opts["preconditions"] = Value::Object(pre);
    }
    if let Some(p) = o.propagation {
        opts["propagationPolicy"] = json!(p);
    }
    if let Some(g) = o.grace_seconds {
        opts["gracePeriodSeconds"] = json!(g);
    }
    match client
        .request(
            "DELETE",
            &item_path(info, ns, name, ""),
            Some(("application/json", opts.to_string().into_bytes())),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// A JSON merge patch.
pub async fn merge_patch(
    client: &Client,
    info: &ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    patch: &Value,
) -> Result<Value, ClientError> {
    client
        .request(
            "PATCH",
            &item_path(info, ns, name, sub),
            Some((
                content_type(PatchType::Merge),
                patch.to_string().into_bytes(),
            )),
        )
        .await
}

fn content_type(p: PatchType) -> &'static str {
    match p {
        PatchType::Json => "application/json-patch+json",
        PatchType::Merge => "application/merge-patch+json",
        PatchType::Strategic => "application/strategic-merge-patch+json",
    }
}

fn with_type<K: k8s_openapi::Resource + Serialize>(obj: &K) -> Result<Value, ClientError> {
    let mut v = serde_json::to_value(obj).map_err(|e| ClientError::Decode(e.to_string()))?;
    v["apiVersion"] = json!(K::API_VERSION);
    v["kind"] = json!(K::KIND);
    Ok(v)
}

pub fn info_of<K: k8s_openapi::Resource>(client: &Client) -> Result<ResourceInfo, ClientError> {
    client
        .registry()
        .by_api_version_kind(K::API_VERSION, K::KIND)
        .cloned()
        .ok_or_else(|| ClientError::Config(format!("{} {} is not served", K::API_VERSION, K::KIND)))
}

/// POST; returns the created object.
pub async fn create<K>(client: &Client, ns: Option<&str>, obj: &K) -> Result<K, ClientError>
where
    K: k8s_openapi::Resource + Serialize + DeserializeOwned,
{
    let info = info_of::<K>(client)?;
    let v = client
        .request(
            "POST",
            &collection_path(&info, ns),
            Some(("application/json", with_type(obj)?.to_string().into_bytes())),
        )
        .await?;
    serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
}

/// PUT of the object or its `status` subresource (resourceVersion checked).
pub async fn update<K>(
    client: &Client,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    obj: &K,
) -> Result<K, ClientError>
where
    K: k8s_openapi::Resource + Serialize + DeserializeOwned,
{
    let info = info_of::<K>(client)?;
    let v = client
        .request(
            "PUT",
            &item_path(&info, ns, name, sub),
            Some(("application/json", with_type(obj)?.to_string().into_bytes())),
        )
        .await?;
    serde_json::from_value(v).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Merge-patch of a typed kind.
pub async fn patch<K>(
    client: &Client,
    ns: Option<&str>,
    name: &str,
    sub: &str,
    patch: &Value,
) -> Result<Value, ClientError>
where
    K: k8s_openapi::Resource,
{
    let info = info_of::<K>(client)?;
    merge_patch(client, &info, ns, name, sub, patch).await
}

pub fn ns_opt(ns: &str) -> Option<&str> {
    (!ns.is_empty()).then_some(ns)
}
