//! Object storage on the etcd v3 API with kube-apiserver's semantics:
//! resourceVersion = the store's `mod_revision`, creates that fail with
//! AlreadyExists, updates guarded by resourceVersion (409 Conflict), paged
//! lists at a fixed revision with `continue` tokens, and a watch cache per
//! resource for LIST and WATCH.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::{FieldSelector, KeyLayout, LabelSelector, ResourceInfo};
use base64::Engine as _;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::cache::{CacheConfig, WatchCache, decode};
use crate::etcd::{Etcd, EtcdError, TxnOutcome, range_end};
use crate::status::ApiError;

/// An object as stored, with its resourceVersion.
#[derive(Clone, Debug)]
pub struct Stored {
    pub obj: Value,
    pub rv: i64,
}

/// What a LIST asks for.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: i64,
    pub continue_token: Option<String>,
    /// `resourceVersion`: `None` = consistent read, `Some(0)` = any.
    pub resource_version: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct ListResult {
    pub items: Vec<Value>,
    pub rv: i64,
    pub continue_token: Option<String>,
}

fn map_etcd(e: EtcdError) -> ApiError {
    match e {
        EtcdError::Compacted(_) => ApiError::gone(
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        ),
        EtcdError::Unavailable(m) => ApiError::unavailable(format!("etcdserver: {m}")),
        EtcdError::Failed(m) => ApiError::internal(m),
    }
}

/// The stored form: resourceVersion is never written (it is the revision).
fn encode(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&obj).unwrap_or_default()
}

fn set_rv(obj: &mut Value, rv: i64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".to_owned(), Value::String(rv.to_string()));
    }
}

/// The resourceVersion in an object's metadata (0 when absent or empty).
pub fn object_rv(obj: &Value) -> Result<i64, ApiError> {
    match obj["metadata"]["resourceVersion"].as_str() {
        None | Some("") => Ok(0),
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s}"))),
    }
}

/// Matches an object against the list/watch selectors.
pub fn selected(info: &ResourceInfo, opts: &ListOptions, obj: &Value) -> bool {
    opts.labels.matches_object(obj) && opts.fields.matches_object(info, obj)
}

pub struct Storage {
    etcd: Etcd,
    keys: KeyLayout,
    caches: Mutex<HashMap<String, Arc<WatchCache>>>,
    tasks: Tasks,
    clock: Clock,
    cache_cfg: CacheConfig,
    /// How long a consistent read waits for the cache to catch up.
    pub cache_wait: Duration,
}

impl Storage {
    pub fn new(
        etcd: Etcd,
        keys: KeyLayout,
        tasks: Tasks,
        clock: Clock,
        cache_cfg: CacheConfig,
    ) -> Self {
        Self {
            etcd,
            keys,
            caches: Mutex::new(HashMap::new()),
            tasks,
            clock,
            cache_cfg,
            cache_wait: Duration::from_secs(3),
        }
    }

    pub fn etcd(&self) -> &Etcd {
        &self.etcd
    }

    pub fn keys(&self) -> &KeyLayout {
        &self.keys
    }

    fn key(&self, info: &ResourceInfo, ns: &str, name: &str) -> Result<String, ApiError> {
        self.keys.object_key(info, ns, name).ok_or_else(|| {
            ApiError::method_not_allowed(format!("{} cannot be stored", info.resource))
        })
    }

    /// The watch cache of a resource, started on first use.
    pub fn cache(&self, info: &ResourceInfo) -> Result<Arc<WatchCache>, ApiError> {
        let prefix = self.keys.resource_prefix(info).ok_or_else(|| {
            ApiError::method_not_allowed(format!("{} cannot be listed", info.resource))
        })?;
        let mut caches = self.caches.lock();
        Ok(caches
            .entry(prefix.clone())
            .or_insert_with(|| {
                WatchCache::start(
                    prefix,
                    self.etcd.clone(),
                    &self.tasks,
                    self.clock.clone(),
                    self.cache_cfg.clone(),
                )
            })
            .clone())
    }

    pub async fn get(&self, info: &ResourceInfo, ns: &str, name: &str) -> Result<Stored, ApiError> {
        let key = self.key(info, ns, name)?;
        let (kv, _) = self.etcd.get(&key).await.map_err(map_etcd)?;
        let kv = kv.ok_or_else(|| ApiError::not_found(&info.group_resource(), name))?;
        let obj = decode(&kv)
            .ok_or_else(|| ApiError::internal(format!("undecodable object at {key}")))?;
        Ok(Stored {
            obj,
            rv: kv.mod_revision,
        })
    }

    pub async fn create(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        mut obj: Value,
    ) -> Result<Stored, ApiError> {
        let key = self.key(info, ns, name)?;
        match self
            .etcd
            .create(&key, encode(&obj))
            .await
            .map_err(map_etcd)?
        {
            TxnOutcome::Written(rv) => {
                set_rv(&mut obj, rv);
                Ok(Stored { obj, rv })
            }
            TxnOutcome::Failed(_) => Err(ApiError::already_exists(&info.group_resource(), name)),
        }
    }

    /// Replaces the object if its stored resourceVersion is `expected_rv`.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        mut obj: Value,
        expected_rv: i64,
    ) -> Result<Stored, ApiError> {
        let key = self.key(info, ns, name)?;
        match self
            .etcd
            .update(&key, encode(&obj), expected_rv)
            .await
            .map_err(map_etcd)?
        {
            TxnOutcome::Written(rv) => {
                set_rv(&mut obj, rv);
                Ok(Stored { obj, rv })
            }
            TxnOutcome::Failed(None) => Err(ApiError::not_found(&info.group_resource(), name)),
            TxnOutcome::Failed(Some(_)) => Err(ApiError::stale(&info.group_resource(), name)),
        }
    }

    /// Deletes the object if its stored resourceVersion is `expected_rv`;
    /// returns the last state with the deletion's resourceVersion.
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        current: &Stored,
    ) -> Result<Stored, ApiError> {
        let key = self.key(info, ns, name)?;
        match self.etcd.delete(&key, current.rv).await.map_err(map_etcd)? {
            TxnOutcome::Written(rv) => {
                let mut obj = current.obj.clone();
                set_rv(&mut obj, rv);
                Ok(Stored { obj, rv })
            }
            TxnOutcome::Failed(None) => Err(ApiError::not_found(&info.group_resource(), name)),
            TxnOutcome::Failed(Some(_)) => Err(ApiError::stale(&info.group_resource(), name)),
        }
    }

    /// Read-modify-write retried on conflicts: `f` gets the current object
    /// and returns the new one, or `None` to leave it unchanged.
    pub async fn guaranteed_update<F>(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
        mut f: F,
    ) -> Result<Stored, ApiError>
    where
        F: FnMut(&Stored) -> Result<Option<Value>, ApiError>,
    {
        for _ in 0..16 {
            let cur = self.get(info, ns, name).await?;
            let Some(new) = f(&cur)? else { return Ok(cur) };
            match self.update(info, ns, name, new, cur.rv).await {
                Err(e) if e.reason == "Conflict" => continue,
                other => return other,
            }
        }
        Err(ApiError::stale(&info.group_resource(), name))
    }

    /// LIST with selectors; paged from the store when `limit`/`continue`
    /// are given, otherwise served from the watch cache (after it caught up
    /// with the store for a consistent read).
    pub async fn list(
        &self,
        info: &ResourceInfo,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let prefix = self.keys.list_prefix(info, ns).ok_or_else(|| {
            ApiError::method_not_allowed(format!("{} cannot be listed", info.resource))
        })?;
        if opts.limit > 0 || opts.continue_token.is_some() {
            return self.list_paged(info, &prefix, opts).await;
        }
        let cache = self.cache(info)?;
        let want = match opts.resource_version {
            None => self.etcd.current_revision().await.map_err(map_etcd)?,
            Some(rv) => rv,
        };
        match cache
            .wait_for(want.max(1), &self.clock, self.cache_wait)
            .await
        {
            Ok(()) => {}
            // A store without progress notifications: read it directly.
            Err(e) if e.code == 504 && opts.resource_version.is_none() => {
                return self.list_paged(info, &prefix, opts).await;
            }
            Err(e) => return Err(e),
        }
        let (objs, rv) = cache.snapshot(&prefix);
        let items = objs
            .iter()
            .filter(|o| selected(info, opts, o))
            .map(|o| (**o).clone())
            .collect();
        Ok(ListResult {
            items,
            rv,
            continue_token: None,
        })
    }

    async fn list_paged(
        &self,
        info: &ResourceInfo,
        prefix: &str,
        opts: &ListOptions,
    ) -> Result<ListResult, ApiError> {
        let end = range_end(prefix.as_bytes());
        let (mut start, mut rev) = match &opts.continue_token {
            Some(tok) => {
                let (rv, start) = decode_continue(tok)?;
                (format!("{prefix}{start}").into_bytes(), rv)
            }
            None => (prefix.as_bytes().to_vec(), 0),
        };
        if rev == 0
            && opts.continue_token.is_none()
            && let Some(rv) = opts.resource_version.filter(|rv| *rv > 0)
        {
            rev = rv;
        }
        let limit = if opts.limit > 0 { opts.limit } else { i64::MAX };
        let mut items = Vec::new();
        let mut next: Option<Vec<u8>> = None;
        loop {
            let want = (limit - items.len() as i64).clamp(1, 10_000);
            let page = self
                .etcd
                .range(&start, &end, rev, want)
                .await
                .map_err(map_etcd)?;
            rev = page.revision.max(rev);
            if rev == 0 {
                rev = page.revision;
            }
            let mut last_key: Option<Vec<u8>> = None;
            for kv in &page.kvs {
                last_key = Some(kv.key.clone());
                if let Some(obj) = decode(kv)
                    && selected(info, opts, &obj)
                {
                    items.push(obj);
                    if items.len() as i64 == limit {
                        break;
                    }
                }
            }
            let more_in_page = last_key
                .as_ref()
                .is_some_and(|k| Some(k) != page.kvs.last().map(|l| &l.key));
            if items.len() as i64 == limit {
                if page.more || more_in_page {
                    let mut k = last_key.unwrap_or_default();
                    k.push(0);
                    next = Some(k);
                }
                break;
            }
            match (page.more, last_key) {
                (true, Some(mut k)) => {
                    k.push(0);
                    start = k;
                }
                _ => break,
            }
        }
        let continue_token = next.map(|k| {
            let rest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            encode_continue(rev, &rest)
        });
        Ok(ListResult {
            items,
            rv: rev,
            continue_token,
        })
    }
}

/// kube-apiserver's continue token: base64 of `{"v","rv","start"}`.
pub fn encode_continue(rv: i64, start: &str) -> String {
    let v = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start});
    base64::engine::general_purpose::URL_SAFE.encode(v.to_string())
}

pub fn decode_continue(tok: &str) -> Result<(i64, String), ApiError> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(tok)
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(tok))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    if v["v"] != "meta.k8s.io/v1" {
        return Err(bad());
    }
    let rv = v["rv"].as_i64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_owned();
    if start.contains("..") || start.starts_with('/') {
        return Err(bad());
    }
    Ok((rv, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip() {
        let t = encode_continue(42, "default/app\u{0}");
        assert_eq!(
            decode_continue(&t).unwrap(),
            (42, "default/app\u{0}".to_owned())
        );
        assert!(decode_continue("garbage!").is_err());
        let evil = base64::engine::general_purpose::URL_SAFE
            .encode(json!({"v": "meta.k8s.io/v1", "rv": 1, "start": "../secrets/"}).to_string());
        assert!(decode_continue(&evil).is_err());
    }

    #[test]
    fn stored_form_has_no_resource_version() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let bytes = encode(&obj);
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["metadata"].get("resourceVersion").is_none());
        assert_eq!(object_rv(&obj).unwrap(), 7);
        assert_eq!(object_rv(&json!({"metadata": {}})).unwrap(), 0);
        assert!(object_rv(&json!({"metadata": {"resourceVersion": "x"}})).is_err());
    }
}
