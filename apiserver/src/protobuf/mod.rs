//! Decoding of Kubernetes' protobuf request bodies into the JSON the rest
//! of the server works on. kubectl 1.33's typed clients (`create
//! configmap`, `certificate approve`, `auth can-i`, …) send
//! `application/vnd.kubernetes.protobuf`: the `k8s\0` magic, a
//! `runtime.Unknown` envelope with apiVersion/kind, and the object in the
//! Kubernetes protobuf schema. Responses are always JSON, which every
//! client accepts.
//!
//! The field tables in [`schema`] are generated (`gen_schema.py`) from the
//! published `generated.proto` files; Kubernetes' special types (Time,
//! MicroTime, Quantity, IntOrString, RawExtension, FieldsV1, Duration) are
//! mapped to their JSON forms here.

mod schema;

use base64::Engine as _;
use serde_json::{Map, Value, json};

/// The value kind of a field.
#[derive(Debug)]
pub enum Kind {
    Str,
    Int,
    SInt,
    Bool,
    Bytes,
    Double,
    Float,
    Fixed32,
    Fixed64,
    Time,
    MicroTime,
    Quantity,
    IntOrString,
    Raw,
    Duration,
    /// A message, by index into [`schema::MESSAGES`].
    Msg(usize),
    /// `map<K, V>`: repeated entries with key = 1, value = 2.
    Map(&'static Kind, &'static Kind),
}

/// (field number, JSON name, kind, repeated)
#[derive(Debug)]
pub struct Field(pub u32, pub &'static str, pub Kind, pub bool);

#[derive(Debug)]
pub struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

/// The protobuf envelope magic.
pub const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtoError(pub String);

fn err<T>(m: impl Into<String>) -> Result<T, ProtoError> {
    Err(ProtoError(m.into()))
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtoError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&byte) = self.b.get(self.pos) else {
                return err("truncated varint");
            };
            self.pos += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        err("varint too long")
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let len =
            usize::try_from(self.varint()?).map_err(|_| ProtoError("length overflow".into()))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| ProtoError("truncated field".into()))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn fixed(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or_else(|| ProtoError("truncated fixed field".into()))?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn done(&self) -> bool {
        self.pos >= self.b.len()
    }
}

/// One raw field value from the wire.
enum Wire<'a> {
    Varint(u64),
    Fixed64(&'a [u8]),
    Len(&'a [u8]),
    Fixed32(&'a [u8]),
}

fn read_field<'a>(r: &mut Reader<'a>) -> Result<(u32, Wire<'a>), ProtoError> {
    let tag = r.varint()?;
    let num = u32::try_from(tag >> 3).map_err(|_| ProtoError("field number overflow".into()))?;
    let w = match tag & 7 {
        0 => Wire::Varint(r.varint()?),
        1 => Wire::Fixed64(r.fixed(8)?),
        2 => Wire::Len(r.bytes()?),
        5 => Wire::Fixed32(r.fixed(4)?),
        t => return err(format!("unsupported wire type {t} for field {num}")),
    };
    Ok((num, w))
}

fn message_index(name: &str) -> Option<usize> {
    schema::MESSAGES.binary_search_by(|m| m.name.cmp(name)).ok()
}

fn rfc3339(seconds: i64, nanos: i64, micro: bool) -> String {
    let t = jiff::Timestamp::new(seconds, nanos.clamp(0, 999_999_999) as i32)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    if micro {
        let base = jiff::Timestamp::from_second(seconds)
            .map(|t| t.to_string())
            .unwrap_or_default();
        format!(
            "{}.{:06}Z",
            base.trim_end_matches('Z'),
            t.subsec_microsecond()
        )
    } else {
        jiff::Timestamp::from_second(seconds)
            .map(|t| t.to_string())
            .unwrap_or_default()
    }
}

fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_owned();
    }
    let neg = ns < 0;
    let mut rest = ns.unsigned_abs();
    let h = rest / 3_600_000_000_000;
    rest %= 3_600_000_000_000;
    let m = rest / 60_000_000_000;
    rest %= 60_000_000_000;
    let s = rest as f64 / 1e9;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{s}s"));
    out
}

/// Decodes a small helper message into (field → wire) pairs.
fn fields_of(b: &[u8]) -> Result<Vec<(u32, Wire<'_>)>, ProtoError> {
    let mut r = Reader { b, pos: 0 };
    let mut out = Vec::new();
    while !r.done() {
        out.push(read_field(&mut r)?);
    }
    Ok(out)
}

fn scalar(kind: &Kind, w: &Wire<'_>, ctx: &str) -> Result<Value, ProtoError> {
    Ok(match (kind, w) {
        (Kind::Str, Wire::Len(b)) => json!(String::from_utf8_lossy(b)),
        (Kind::Int, Wire::Varint(v)) => json!(*v as i64),
        (Kind::SInt, Wire::Varint(v)) => json!(((*v >> 1) as i64) ^ -((*v & 1) as i64)),
        (Kind::Bool, Wire::Varint(v)) => json!(*v != 0),
        (Kind::Bytes, Wire::Len(b)) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        (Kind::Double, Wire::Fixed64(b)) => {
            json!(f64::from_le_bytes((*b).try_into().unwrap_or([0; 8])))
        }
        (Kind::Fixed64, Wire::Fixed64(b)) => {
            json!(u64::from_le_bytes((*b).try_into().unwrap_or([0; 8])))
        }
        (Kind::Float, Wire::Fixed32(b)) => {
            json!(f32::from_le_bytes((*b).try_into().unwrap_or([0; 4])))
        }
        (Kind::Fixed32, Wire::Fixed32(b)) => {
            json!(u32::from_le_bytes((*b).try_into().unwrap_or([0; 4])))
        }
        (Kind::Time | Kind::MicroTime, Wire::Len(b)) => {
            let (mut secs, mut nanos) = (0i64, 0i64);
            for (n, w) in fields_of(b)? {
                match (n, w) {
                    (1, Wire::Varint(v)) => secs = v as i64,
                    (2, Wire::Varint(v)) => nanos = v as i64,
                    _ => {}
                }
            }
            json!(rfc3339(secs, nanos, matches!(kind, Kind::MicroTime)))
        }
        (Kind::Quantity, Wire::Len(b)) => {
            let mut s = String::new();
            for (n, w) in fields_of(b)? {
                if let (1, Wire::Len(v)) = (n, w) {
                    s = String::from_utf8_lossy(v).into_owned();
                }
            }
            json!(s)
        }
        (Kind::IntOrString, Wire::Len(b)) => {
            let (mut t, mut i, mut s) = (0u64, 0i64, String::new());
            for (n, w) in fields_of(b)? {
                match (n, w) {
                    (1, Wire::Varint(v)) => t = v,
                    (2, Wire::Varint(v)) => i = v as i32 as i64,
                    (3, Wire::Len(v)) => s = String::from_utf8_lossy(v).into_owned(),
                    _ => {}
                }
            }
            if t == 1 { json!(s) } else { json!(i) }
        }
        (Kind::Raw, Wire::Len(b)) => {
            let mut raw: &[u8] = &[];
            for (n, w) in fields_of(b)? {
                if let (1, Wire::Len(v)) = (n, w) {
                    raw = v;
                }
            }
            if raw.is_empty() {
                Value::Null
            } else {
                match serde_json::from_slice::<Value>(raw) {
                    Ok(v) => v,
                    Err(_) => match decode(raw) {
                        Ok(v) => v,
                        Err(_) => json!(base64::engine::general_purpose::STANDARD.encode(raw)),
                    },
                }
            }
        }
        (Kind::Duration, Wire::Len(b)) => {
            let mut ns = 0i64;
            for (n, w) in fields_of(b)? {
                if let (1, Wire::Varint(v)) = (n, w) {
                    ns = v as i64;
                }
            }
            json!(go_duration(ns))
        }
        (Kind::Msg(i), Wire::Len(b)) => decode_message(*i, b)?,
        _ => return err(format!("wrong wire type for {ctx}")),
    })
}

fn map_entry(k: &Kind, v: &Kind, b: &[u8], ctx: &str) -> Result<(String, Value), ProtoError> {
    let mut key = String::new();
    let mut val = match v {
        Kind::Str | Kind::Bytes | Kind::Quantity => json!(""),
        Kind::Int => json!(0),
        _ => Value::Null,
    };
    for (n, w) in fields_of(b)? {
        match n {
            1 => {
                key = match scalar(k, &w, ctx)? {
                    Value::String(s) => s,
                    other => other.to_string(),
                }
            }
            2 => val = scalar(v, &w, ctx)?,
            _ => {}
        }
    }
    Ok((key, val))
}

fn decode_message(idx: usize, b: &[u8]) -> Result<Value, ProtoError> {
    let msg = schema::MESSAGES
        .get(idx)
        .ok_or_else(|| ProtoError(format!("unknown message index {idx}")))?;
    let mut out = Map::new();
    let mut r = Reader { b, pos: 0 };
    while !r.done() {
        let (num, w) = read_field(&mut r)?;
        let Some(Field(_, name, kind, repeated)) = msg.fields.iter().find(|f| f.0 == num) else {
            return err(format!("unknown field {num} in {}", msg.name));
        };
        let ctx = format!("{}.{name}", msg.name);
        if let Kind::Map(k, v) = kind {
            let Wire::Len(entry) = w else {
                return err(format!("wrong wire type for {ctx}"));
            };
            let (key, val) = map_entry(k, v, entry, &ctx)?;
            let m = out
                .entry((*name).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(m) = m.as_object_mut() {
                m.insert(key, val);
            }
            continue;
        }
        if *repeated {
            let arr = out
                .entry((*name).to_owned())
                .or_insert_with(|| Value::Array(Vec::new()));
            let Some(arr) = arr.as_array_mut() else {
                continue;
            };
            // Packed scalars arrive as one length-delimited run.
            match (kind, &w) {
                (Kind::Int | Kind::SInt | Kind::Bool, Wire::Len(run)) => {
                    let mut rr = Reader { b: run, pos: 0 };
                    while !rr.done() {
                        let v = rr.varint()?;
                        arr.push(scalar(kind, &Wire::Varint(v), &ctx)?);
                    }
                }
                _ => arr.push(scalar(kind, &w, &ctx)?),
            }
        } else {
            out.insert((*name).to_owned(), scalar(kind, &w, &ctx)?);
        }
    }
    Ok(Value::Object(out))
}

/// The protobuf message for a Kubernetes `apiVersion` and `kind`.
fn message_for(api_version: &str, kind: &str) -> Option<usize> {
    let (group, version) = ackemu_kube::registry::split_api_version(api_version);
    let pkg = match group {
        "" => format!("k8s.io.api.core.{version}"),
        "meta.k8s.io" => format!("k8s.io.apimachinery.pkg.apis.meta.{version}"),
        g => {
            let short = g.split('.').next().unwrap_or(g);
            format!("k8s.io.api.{short}.{version}")
        }
    };
    message_index(&format!("{pkg}.{kind}"))
}

/// Decodes a `k8s\0` protobuf body into its JSON form (with apiVersion and kind).
pub fn decode(body: &[u8]) -> Result<Value, ProtoError> {
    let Some(rest) = body.strip_prefix(MAGIC) else {
        return err("protobuf body lacks the k8s magic prefix");
    };
    let unknown = message_index("k8s.io.apimachinery.pkg.runtime.Unknown")
        .ok_or_else(|| ProtoError("runtime.Unknown missing".into()))?;
    let env = decode_message(unknown, rest)?;
    let api_version = env["typeMeta"]["apiVersion"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let kind = env["typeMeta"]["kind"].as_str().unwrap_or("").to_owned();
    let raw = env["raw"].as_str().unwrap_or("");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(raw)
        .map_err(|e| ProtoError(format!("envelope raw: {e}")))?;
    let idx = message_for(&api_version, &kind)
        .ok_or_else(|| ProtoError(format!("no protobuf schema for {api_version} {kind}")))?;
    let mut v = decode_message(idx, &raw)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".to_owned(), json!(api_version));
        m.insert("kind".to_owned(), json!(kind));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn len_field(num: u32, data: &[u8], out: &mut Vec<u8>) {
        varint(u64::from(num << 3 | 2), out);
        varint(data.len() as u64, out);
        out.extend_from_slice(data);
    }

    fn int_field(num: u32, v: u64, out: &mut Vec<u8>) {
        varint(u64::from(num << 3), out);
        varint(v, out);
    }

    #[test]
    fn schema_is_sorted_and_indexes_resolve() {
        assert!(schema::MESSAGES.windows(2).all(|w| w[0].name < w[1].name));
        for m in schema::MESSAGES {
            for f in m.fields {
                if let Kind::Msg(i) = f.2 {
                    assert!(i < schema::MESSAGES.len(), "{}.{}", m.name, f.1);
                }
            }
        }
        assert!(message_for("v1", "ConfigMap").is_some());
        assert!(message_for("apps/v1", "Deployment").is_some());
        assert!(message_for("certificates.k8s.io/v1", "CertificateSigningRequest").is_some());
        assert!(message_for("authorization.k8s.io/v1", "SelfSubjectAccessReview").is_some());
        assert!(message_for("rbac.authorization.k8s.io/v1", "RoleBinding").is_some());
        assert!(message_for("v1", "NoSuchKind").is_none());
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        // ObjectMeta{name: "x", namespace: "default", labels: {a: b}, creationTimestamp: {seconds}}
        let mut meta = Vec::new();
        len_field(1, b"x", &mut meta);
        len_field(3, b"default", &mut meta);
        let mut ts = Vec::new();
        int_field(1, 1_600_000_000, &mut ts);
        len_field(8, &ts, &mut meta);
        let mut label = Vec::new();
        len_field(1, b"a", &mut label);
        len_field(2, b"b", &mut label);
        len_field(11, &label, &mut meta);
        let mut cm = Vec::new();
        len_field(1, &meta, &mut cm);
        let mut d = Vec::new();
        len_field(1, b"k", &mut d);
        len_field(2, b"v", &mut d);
        len_field(2, &d, &mut cm);
        int_field(4, 1, &mut cm);
        let mut tm = Vec::new();
        len_field(1, b"v1", &mut tm);
        len_field(2, b"ConfigMap", &mut tm);
        let mut env = MAGIC.to_vec();
        let mut unknown = Vec::new();
        len_field(1, &tm, &mut unknown);
        len_field(2, &cm, &mut unknown);
        len_field(3, b"", &mut unknown);
        len_field(4, b"", &mut unknown);
        env.extend_from_slice(&unknown);
        let v = decode(&env).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "immutable": true, "data": {"k": "v"},
                   "metadata": {"name": "x", "namespace": "default", "labels": {"a": "b"}, "creationTimestamp": "2020-09-13T12:26:40Z"}})
        );
    }

    #[test]
    fn special_types() {
        let mut ios = Vec::new();
        int_field(1, 1, &mut ios);
        len_field(3, b"http", &mut ios);
        assert_eq!(
            scalar(&Kind::IntOrString, &Wire::Len(&ios), "t").unwrap(),
            json!("http")
        );
        let mut ios = Vec::new();
        int_field(2, 8080, &mut ios);
        assert_eq!(
            scalar(&Kind::IntOrString, &Wire::Len(&ios), "t").unwrap(),
            json!(8080)
        );
        let mut q = Vec::new();
        len_field(1, b"100m", &mut q);
        assert_eq!(
            scalar(&Kind::Quantity, &Wire::Len(&q), "t").unwrap(),
            json!("100m")
        );
        let mut raw = Vec::new();
        len_field(1, br#"{"a":1}"#, &mut raw);
        assert_eq!(
            scalar(&Kind::Raw, &Wire::Len(&raw), "t").unwrap(),
            json!({"a": 1})
        );
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(3_600_000_000_000), "1h0m0s");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: Vec<Vec<u8>> = vec![
            b"k8s".to_vec(),
            b"k8s\0\x0a".to_vec(),
            b"k8s\0\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
            b"k8s\0\x0f".to_vec(),
            b"k8s\0\x12\x05ab".to_vec(),
            b"{\"json\": true}".to_vec(),
        ];
        for c in cases {
            assert!(decode(&c).is_err(), "{c:?}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes after the magic never panic the decoder.
        #[test]
        fn protobuf_decoder_never_panics(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut input = super::MAGIC.to_vec();
            input.extend_from_slice(&body);
            let _ = super::decode(&input);
            let _ = super::decode(&body);
        }
    }
}
