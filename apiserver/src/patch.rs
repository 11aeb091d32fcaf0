//! The three patch formats kubectl and clients send: JSON patch (RFC 6902),
//! JSON merge patch (RFC 7386) and Kubernetes' strategic merge patch
//! (lists merged by their merge key, `$patch`, `$setElementOrder`,
//! `$deleteFromPrimitiveList`, `$retainKeys` directives), as pure functions.

use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

// ---- JSON merge patch

pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Some(p) = patch.as_object() else {
        return patch.clone();
    };
    let mut out = match target {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let cur = out.get(k).cloned().unwrap_or(Value::Null);
            out.insert(k.clone(), merge_patch(&cur, v));
        }
    }
    Value::Object(out)
}

// ---- JSON patch

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(path: &str) -> Result<Vec<String>, PatchError> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(PatchError(format!(
            "invalid JSON pointer {path:?}: must start with '/'"
        )));
    };
    Ok(rest.split('/').map(unescape).collect())
}

fn index(arr: &[Value], tok: &str, allow_end: bool) -> Result<usize, PatchError> {
    if allow_end && tok == "-" {
        return Ok(arr.len());
    }
    let i: usize = tok
        .parse()
        .map_err(|_| PatchError(format!("invalid array index {tok:?}")))?;
    let max = if allow_end {
        arr.len()
    } else {
        arr.len().saturating_sub(1)
    };
    if i > max || (!allow_end && arr.is_empty()) {
        return Err(PatchError(format!("array index {i} out of bounds")));
    }
    Ok(i)
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, PatchError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| PatchError(format!("path component {t:?} not found")))?,
            Value::Array(a) => {
                let i = index(a, t, false)?;
                &mut a[i]
            }
            _ => {
                return Err(PatchError(format!(
                    "path component {t:?} is not a container"
                )));
            }
        };
    }
    Ok(cur)
}

fn get<'a>(doc: &'a Value, path: &str) -> Result<&'a Value, PatchError> {
    let mut cur = doc;
    for t in tokens(path)? {
        cur = match cur {
            Value::Object(m) => m
                .get(&t)
                .ok_or_else(|| PatchError(format!("path {path:?} not found")))?,
            Value::Array(a) => &a[index(a, &t, false)?],
            _ => return Err(PatchError(format!("path {path:?} not found"))),
        };
    }
    Ok(cur)
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), PatchError> {
    let toks = tokens(path)?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = index(a, last, true)?;
            a.insert(i, value);
        }
        _ => {
            return Err(PatchError(format!(
                "cannot add at {path:?}: parent is not a container"
            )));
        }
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, PatchError> {
    let toks = tokens(path)?;
    let Some((last, parents)) = toks.split_last() else {
        return Err(PatchError("cannot remove the document root".to_owned()));
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| PatchError(format!("path {path:?} not found"))),
        Value::Array(a) => {
            let i = index(a, last, false)?;
            Ok(a.remove(i))
        }
        _ => Err(PatchError(format!("path {path:?} not found"))),
    }
}

/// Applies an RFC 6902 patch.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError("json patch must be an array of operations".to_owned()))?;
    let mut doc = doc.clone();
    for op in ops {
        let path = op["path"]
            .as_str()
            .ok_or_else(|| PatchError("operation is missing \"path\"".to_owned()))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError(format!("operation on {path:?} is missing \"value\"")))
        };
        let from = || {
            op["from"]
                .as_str()
                .ok_or_else(|| PatchError(format!("operation on {path:?} is missing \"from\"")))
        };
        match op["op"].as_str().unwrap_or("") {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                remove(&mut doc, path)?;
                add(&mut doc, path, value()?)?;
            }
            "move" => {
                let v = remove(&mut doc, from()?)?;
                add(&mut doc, path, v)?;
            }
            "copy" => {
                let v = get(&doc, from()?)?.clone();
                add(&mut doc, path, v)?;
            }
            "test" => {
                if get(&doc, path)? != &value()? {
                    return Err(PatchError(format!("testing value {path} failed")));
                }
            }
            other => return Err(PatchError(format!("Unexpected kind: {other}"))),
        }
    }
    Ok(doc)
}

// ---- strategic merge patch

/// The merge key of a list field, by field name (and, for `ports`, by shape).
fn merge_key(field: &str, sample: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "secrets"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "taints" => "key",
        "readinessGates" => "conditionType",
        "topologySpreadConstraints" => "topologyKey",
        "ports" => {
            if sample.iter().any(|p| p.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

/// Primitive lists merged as sets.
fn merges_primitives(field: &str) -> bool {
    matches!(field, "finalizers")
}

fn directive(v: &Value) -> Option<&str> {
    v.get("$patch").and_then(Value::as_str)
}

/// Applies a strategic merge patch to `original`.
pub fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Some(p) = patch.as_object() else {
        return Err(PatchError(
            "strategic merge patch must be a JSON object".to_owned(),
        ));
    };
    merge_map(original.as_object().cloned().unwrap_or_default(), p)
        .map(|m| m.map(Value::Object).unwrap_or(Value::Null))
}

/// Returns `None` when the map is deleted by `$patch: delete`.
fn merge_map(
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match directive(&Value::Object(patch.clone())) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut m = patch.clone();
            m.remove("$patch");
            return Ok(Some(m));
        }
        Some(other) if other != "merge" => {
            return Err(PatchError(format!("Unknown patch type: {other}")));
        }
        _ => {}
    }
    if let Some(keep) = patch.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in patch {
        if k == "$patch" || k == "$retainKeys" {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Some(del)) = (orig.get_mut(field), v.as_array()) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with("$setElementOrder/") {
            continue;
        }
        if v.is_null() {
            orig.remove(k);
            continue;
        }
        let cur = orig.remove(k).unwrap_or(Value::Null);
        let merged = match (cur, v) {
            (Value::Object(c), Value::Object(pm)) => match merge_map(c, pm)? {
                Some(m) => Value::Object(m),
                None => continue,
            },
            (Value::Null, Value::Object(pm)) => match merge_map(Map::new(), pm)? {
                Some(m) => Value::Object(m),
                None => continue,
            },
            (Value::Array(c), Value::Array(pl)) => merge_list(k, c, pl)?,
            (Value::Null, Value::Array(pl)) => merge_list(k, Vec::new(), pl)?,
            (_, other) => other.clone(),
        };
        orig.insert(k.clone(), merged);
    }
    // Reorder lists as `$setElementOrder/<field>` asks.
    for (k, order) in patch {
        let Some(field) = k.strip_prefix("$setElementOrder/") else {
            continue;
        };
        let (Some(Value::Array(list)), Some(order)) = (orig.get(field), order.as_array()) else {
            continue;
        };
        let key = merge_key(field, list);
        let pos = |item: &Value| -> usize {
            order
                .iter()
                .position(|o| match key {
                    Some(k) => o.get(k) == item.get(k),
                    None => o == item,
                })
                .unwrap_or(usize::MAX)
        };
        let mut sorted = list.clone();
        sorted.sort_by_key(|a| pos(a));
        orig.insert(field.to_owned(), Value::Array(sorted));
    }
    Ok(Some(orig))
}

fn merge_list(field: &str, mut orig: Vec<Value>, patch: &[Value]) -> Result<Value, PatchError> {
    if patch.iter().any(|p| directive(p) == Some("replace")) {
        return Ok(Value::Array(
            patch
                .iter()
                .filter(|p| directive(p).is_none())
                .cloned()
                .collect(),
        ));
    }
    if merges_primitives(field) {
        for p in patch {
            if !orig.contains(p) {
                orig.push(p.clone());
            }
        }
        return Ok(Value::Array(orig));
    }
    let Some(key) = merge_key(field, patch) else {
        return Ok(Value::Array(patch.to_vec()));
    };
    for p in patch {
        let Some(pm) = p.as_object() else {
            return Err(PatchError(format!(
                "list {field:?} with merge key {key:?} contains a non-object element"
            )));
        };
        let kv = pm.get(key).cloned().unwrap_or(Value::Null);
        let pos = orig.iter().position(|o| o.get(key) == Some(&kv));
        if directive(p) == Some("delete") {
            if let Some(i) = pos {
                orig.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => {
                let cur = orig[i].as_object().cloned().unwrap_or_default();
                match merge_map(cur, pm)? {
                    Some(m) => orig[i] = Value::Object(m),
                    None => {
                        orig.remove(i);
                    }
                }
            }
            None => {
                if let Some(m) = merge_map(Map::new(), pm)? {
                    orig.push(Value::Object(m));
                }
            }
        }
    }
    Ok(Value::Array(orig))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (json!({"a": [1, 2]}), json!({"a": [3]}), json!({"a": [3]})),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (t, p, want) in cases {
            assert_eq!(merge_patch(&t, &p), want, "{p}");
        }
    }

    #[test]
    fn json_patch_ops() {
        let doc = json!({"spec": {"replicas": 1, "list": ["a", "b"]}, "metadata": {"labels": {"x/y": "1"}}});
        let patch = json!([
            {"op": "replace", "path": "/spec/replicas", "value": 3},
            {"op": "add", "path": "/spec/list/-", "value": "c"},
            {"op": "add", "path": "/spec/list/0", "value": "z"},
            {"op": "remove", "path": "/metadata/labels/x~1y"},
            {"op": "copy", "from": "/spec/replicas", "path": "/spec/copy"},
            {"op": "move", "from": "/spec/copy", "path": "/spec/moved"},
            {"op": "test", "path": "/spec/moved", "value": 3}
        ]);
        let out = json_patch(&doc, &patch).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"replicas": 3, "list": ["z", "a", "b", "c"], "moved": 3}, "metadata": {"labels": {}}})
        );
        let bad = [
            json!({"op": "add"}),
            json!([{"op": "remove", "path": "/nope"}]),
            json!([{"op": "test", "path": "/spec/replicas", "value": 2}]),
            json!([{"op": "replace", "path": "/spec/list/9", "value": 1}]),
            json!([{"op": "frob", "path": "/spec"}]),
            json!([{"op": "add", "path": "spec", "value": 1}]),
        ];
        for p in bad {
            assert!(json_patch(&doc, &p).is_err(), "{p}");
        }
    }

    #[test]
    fn strategic_merge_lists_by_key() {
        let pod = json!({"spec": {"containers": [
            {"name": "app", "image": "app:v1", "env": [{"name": "A", "value": "1"}], "ports": [{"containerPort": 2580}]},
            {"name": "side", "image": "envoy"}]},
            "metadata": {"finalizers": ["a"], "labels": {"x": "1"}}});
        let patch = json!({
            "metadata": {"finalizers": ["b"], "labels": {"x": null, "y": "2"}},
            "spec": {
                "$setElementOrder/containers": [{"name": "side"}, {"name": "app"}, {"name": "new"}],
                "containers": [
                    {"name": "app", "image": "app:v2", "env": [{"name": "B", "value": "2"}]},
                    {"name": "new", "image": "busybox"}
                ]}
        });
        let out = strategic_merge(&pod, &patch).unwrap();
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        assert_eq!(out["metadata"]["labels"], json!({"y": "2"}));
        let names: Vec<_> = out["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["side", "app", "new"]);
        assert_eq!(out["spec"]["containers"][1]["image"], "app:v2");
        assert_eq!(
            out["spec"]["containers"][1]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(
            out["spec"]["containers"][1]["ports"],
            json!([{"containerPort": 2580}])
        );

        let del = json!({"spec": {"containers": [{"name": "side", "$patch": "delete"}]},
                         "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}});
        let out = strategic_merge(&pod, &del).unwrap();
        assert_eq!(out["spec"]["containers"].as_array().unwrap().len(), 1);
        assert_eq!(out["metadata"]["finalizers"], json!([]));

        let replace = json!({"spec": {"containers": [{"name": "only"}, {"$patch": "replace"}]}});
        let out = strategic_merge(&pod, &replace).unwrap();
        assert_eq!(out["spec"]["containers"], json!([{"name": "only"}]));

        let map_replace = json!({"metadata": {"labels": {"z": "9", "$patch": "replace"}}});
        assert_eq!(
            strategic_merge(&pod, &map_replace).unwrap()["metadata"]["labels"],
            json!({"z": "9"})
        );

        // Lists without a merge key are replaced.
        let args = json!({"spec": {"containers": [{"name": "app", "args": ["x"]}]}});
        let with_args = strategic_merge(&pod, &args).unwrap();
        let again = strategic_merge(
            &with_args,
            &json!({"spec": {"containers": [{"name": "app", "args": ["y"]}]}}),
        )
        .unwrap();
        assert_eq!(again["spec"]["containers"][0]["args"], json!(["y"]));

        // Service ports merge by port.
        let svc = json!({"spec": {"ports": [{"port": 80, "targetPort": 2580}]}});
        let out = strategic_merge(
            &svc,
            &json!({"spec": {"ports": [{"port": 80, "nodePort": 30080}, {"port": 443}]}}),
        )
        .unwrap();
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "targetPort": 2580, "nodePort": 30080}, {"port": 443}])
        );

        assert!(strategic_merge(&pod, &json!([1])).is_err());
        assert!(strategic_merge(&pod, &json!({"spec": {"$patch": "frob"}})).is_err());
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;
    use serde_json::Value;

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[a-z$/~0-9]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z$/]{1,4}|\\$patch|\\$setElementOrder/[a-z]{1,3}|containers|name|op|path|value|from", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// No patch document, however malformed, panics any of the three
        /// patch engines.
        #[test]
        fn patches_never_panic(doc in json_value(), patch in json_value()) {
            let _ = super::json_patch(&doc, &patch);
            let _ = super::merge_patch(&doc, &patch);
            let _ = super::strategic_merge(&doc, &patch);
        }
    }
}
