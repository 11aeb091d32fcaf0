//! Field selectors (`?fieldSelector=spec.nodeName=n1,status.phase!=Failed`):
//! parsing with Kubernetes' escaping rules and error texts
//! (`k8s.io/apimachinery/pkg/fields`), and the field values an object
//! exposes for selection (`metadata.name`, `metadata.namespace` and the
//! registry's selectable fields).

use std::collections::BTreeMap;
use std::fmt;

use crate::labels::SelectorError;
use crate::registry::ResourceInfo;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldTerm {
    /// `field=value` or `field==value`.
    Equals(String, String),
    /// `field!=value`.
    NotEquals(String, String),
}

impl FieldTerm {
    pub fn field(&self) -> &str {
        match self {
            Self::Equals(f, _) | Self::NotEquals(f, _) => f,
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Self::Equals(_, v) | Self::NotEquals(_, v) => v,
        }
    }
}

/// A parsed field selector: all terms must hold. Empty selects everything.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    pub fn everything() -> Self {
        Self::default()
    }

    /// `fields.ParseSelector`.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(selector);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts {
            if part.is_empty() {
                continue;
            }
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            let value = unescape_value(rhs)?;
            terms.push(match op {
                "!=" => FieldTerm::NotEquals(lhs.to_owned(), value),
                _ => FieldTerm::Equals(lhs.to_owned(), value),
            });
        }
        Ok(Self { terms })
    }

    /// `field=value` for each entry (`fields.SelectorFromSet`).
    pub fn from_set(set: &BTreeMap<String, String>) -> Self {
        Self {
            terms: set
                .iter()
                .map(|(k, v)| FieldTerm::Equals(k.clone(), v.clone()))
                .collect(),
        }
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    pub fn is_everything(&self) -> bool {
        self.terms.is_empty()
    }

    /// Rejects fields the resource does not support, with the API server's
    /// text (`field label not supported: spec.foo`).
    pub fn check_supported(&self, info: &ResourceInfo) -> Result<(), SelectorError> {
        for t in &self.terms {
            if !info.field_selectable(t.field()) {
                return Err(SelectorError(format!(
                    "field label not supported: {}",
                    t.field()
                )));
            }
        }
        Ok(())
    }

    /// Whether a set of field values satisfies every term; a missing field
    /// has the empty value.
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|t| {
            let have = fields.get(t.field()).map(String::as_str).unwrap_or("");
            match t {
                FieldTerm::Equals(_, v) => have == v,
                FieldTerm::NotEquals(_, v) => have != v,
            }
        })
    }

    /// Matches an object given as JSON, computing its field set.
    pub fn matches_object(&self, info: &ResourceInfo, obj: &serde_json::Value) -> bool {
        self.is_everything() || self.matches(&field_set(info, obj))
    }

    /// The value a `=`/`==` term pins `field` to (used to index `spec.nodeName`).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms.iter().find_map(|t| match t {
            FieldTerm::Equals(f, v) if f == field => Some(v.as_str()),
            _ => None,
        })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| match t {
                FieldTerm::Equals(k, v) => format!("{k}={}", escape_value(v)),
                FieldTerm::NotEquals(k, v) => format!("{k}!={}", escape_value(v)),
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Splits on commas not escaped by a backslash (escapes are kept).
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in s.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// Splits at the first `!=`, `==` or `=`.
fn split_term(term: &str) -> Option<(&str, &'static str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

/// Escapes `\`, `,` and `=` in a value (`fields.EscapeValue`).
pub fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '\\' | ',' | '=') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `fields.UnescapeValue`.
pub fn unescape_value(v: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(v.len());
    let mut in_slash = false;
    for c in v.chars() {
        if in_slash {
            if matches!(c, '\\' | ',' | '=') {
                out.push(c);
            } else {
                return Err(SelectorError(format!(
                    "invalid field selector: invalid escape sequence: \\{c}"
                )));
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            ',' | '=' => {
                // Go formats the rune with %v, i.e. as its code point.
                return Err(SelectorError(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            _ => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError(
            "invalid field selector: invalid escape sequence: \\".to_owned(),
        ));
    }
    Ok(out)
}

/// The selectable field values of an object: `metadata.name`,
/// `metadata.namespace` (namespaced resources) and the resource's
/// selectable fields, read from the JSON by dotted path. Booleans print as
/// `true`/`false`; `spec.hostNetwork` defaults to `false`; event `source`
/// is `source.component`.
pub fn field_set(info: &ResourceInfo, obj: &serde_json::Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let str_at = |path: &str| -> String {
        let mut v = obj;
        for part in path.split('.') {
            v = &v[part];
        }
        match v {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => String::new(),
        }
    };
    out.insert("metadata.name".to_owned(), str_at("metadata.name"));
    if info.namespaced() {
        out.insert(
            "metadata.namespace".to_owned(),
            str_at("metadata.namespace"),
        );
    }
    for f in &info.selectable_fields {
        let value = match f.as_str() {
            "source" => str_at("source.component"),
            "spec.hostNetwork" | "spec.unschedulable" => {
                let v = str_at(f);
                if v.is_empty() { "false".to_owned() } else { v }
            }
            _ => str_at(f),
        };
        out.insert(f.clone(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn parse_table() {
        let cases = [
            ("", ""),
            ("metadata.name=a", "metadata.name=a"),
            ("metadata.name==a", "metadata.name=a"),
            (
                "spec.nodeName!=n1,metadata.name=a",
                "metadata.name=a,spec.nodeName!=n1",
            ),
            ("spec.nodeName=", "spec.nodeName="),
            ("metadata.name=a\\,b", "metadata.name=a\\,b"),
            ("metadata.name=a\\=b", "metadata.name=a\\=b"),
            (",metadata.name=a,", "metadata.name=a"),
        ];
        for (input, want) in cases {
            let s = FieldSelector::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(s.to_string(), want, "{input}");
        }
        let s = FieldSelector::parse("metadata.name=a\\,b").unwrap();
        assert_eq!(s.terms()[0].value(), "a,b");
    }

    #[test]
    fn parse_errors() {
        let cases = [
            (
                "metadata.name",
                "invalid selector: 'metadata.name'; can't understand 'metadata.name'",
            ),
            ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
            (
                "a=b=c",
                "invalid field selector: unescaped character in value: 61",
            ),
            (
                "a=b\\x",
                "invalid field selector: invalid escape sequence: \\x",
            ),
            (
                "a=b\\",
                "invalid field selector: invalid escape sequence: \\",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(FieldSelector::parse(input).unwrap_err().0, want, "{input}");
        }
    }

    #[test]
    fn pod_fields_and_matching() {
        let r = Registry::builtin();
        let pods = r.preferred("", "pods").unwrap();
        let pod = serde_json::json!({
            "metadata": {"name": "app", "namespace": "default"},
            "spec": {"nodeName": "n1", "restartPolicy": "Always"},
            "status": {"phase": "Running", "podIP": "172.16.0.5"}
        });
        let set = field_set(pods, &pod);
        assert_eq!(set["spec.hostNetwork"], "false");
        assert_eq!(set["status.nominatedNodeName"], "");
        let cases = [
            ("metadata.name=app", true),
            ("metadata.namespace=default", true),
            ("metadata.namespace=kube-system", false),
            ("spec.nodeName=n1", true),
            ("spec.nodeName!=n1", false),
            ("spec.nodeName=", false),
            ("status.phase!=Failed,status.phase!=Succeeded", true),
            ("status.podIP=172.16.0.5", true),
            ("spec.hostNetwork=false", true),
        ];
        for (sel, want) in cases {
            let s = FieldSelector::parse(sel).unwrap();
            s.check_supported(pods).unwrap();
            assert_eq!(s.matches_object(pods, &pod), want, "{sel}");
        }
        let unscheduled =
            serde_json::json!({"metadata": {"name": "p", "namespace": "d"}, "spec": {}});
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches_object(pods, &unscheduled)
        );
        let s = FieldSelector::parse("spec.containers=x").unwrap();
        assert_eq!(
            s.check_supported(pods).unwrap_err().0,
            "field label not supported: spec.containers"
        );
        let nodes = r.preferred("", "nodes").unwrap();
        let s = FieldSelector::parse("metadata.namespace=x").unwrap();
        assert!(s.check_supported(nodes).is_err());
        assert_eq!(
            FieldSelector::parse("spec.nodeName=n1")
                .unwrap()
                .requires_exact_match("spec.nodeName"),
            Some("n1")
        );
    }

    #[test]
    fn event_fields() {
        let r = Registry::builtin();
        let events = r.preferred("", "events").unwrap();
        let ev = serde_json::json!({
            "metadata": {"name": "app.1", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "app", "namespace": "default"},
            "reason": "FailedScheduling", "type": "Warning", "source": {"component": "default-scheduler"}
        });
        let s = FieldSelector::parse(
            "involvedObject.kind=Pod,involvedObject.name=app,source=default-scheduler,type=Warning",
        )
        .unwrap();
        s.check_supported(events).unwrap();
        assert!(s.matches_object(events, &ev));
    }
}
