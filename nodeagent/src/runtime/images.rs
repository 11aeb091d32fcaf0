//! Image pulls from a Docker Registry v2 (the cloud's container registry),
//! as containerd's resolver does them: `GET /v2/<repo>/manifests/<ref>`;
//! on `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` ask
//! the realm for a token — anonymously, or with Basic credentials from the
//! pull secret — and retry with it; then the config blob, whose entrypoint
//! (`/ackemu-workload <program> …`) is what containers of the image run.
//! Failures read like containerd's (`failed to pull and unpack image …`).

use std::collections::BTreeMap;

use ackemu_proto::ackemu::node::v1 as pb;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Digest as _;

use ackemu_base::clock::Clock;

use super::{Runtime, RuntimeError};

const MANIFEST_TYPES: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";
const PROGRAM_ANNOTATION: &str = "io.ackemu.workload.program";

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`.
    pub registry: String,
    /// `ns/name`.
    pub repository: String,
    /// Tag or `sha256:` digest.
    pub reference: String,
}

impl Reference {
    /// Parse with Docker's normalisation (`app` → `docker.io/library/app:latest`).
    pub fn parse(image: &str) -> Result<Reference, String> {
        if image.is_empty() || image.contains(char::is_whitespace) {
            return Err(format!("invalid reference format: {image:?}"));
        }
        let (name, reference) = if let Some((n, d)) = image.split_once('@') {
            (n, d.to_string())
        } else {
            match image.rsplit_once(':') {
                Some((n, t)) if !t.contains('/') => (n, t.to_string()),
                _ => (image, "latest".to_string()),
            }
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            Some(_) => ("docker.io".to_string(), name.to_string()),
            None => ("docker.io".to_string(), format!("library/{name}")),
        };
        if repository.is_empty() || reference.is_empty() {
            return Err(format!("invalid reference format: {image:?}"));
        }
        Ok(Reference {
            registry,
            repository,
            reference,
        })
    }

    /// `registry/repository:tag` (or `@digest`).
    pub fn normalized(&self) -> String {
        if self.reference.starts_with("sha256:") {
            format!("{}/{}@{}", self.registry, self.repository, self.reference)
        } else {
            format!("{}/{}:{}", self.registry, self.repository, self.reference)
        }
    }
}

/// A pulled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// Config digest (the image id).
    pub id: String,
    /// `registry/repo:tag`.
    pub tag: String,
    /// `registry/repo@sha256:…` of the manifest.
    pub digest_ref: String,
    /// Bytes fetched.
    pub size: u64,
    /// The workload program and its arguments.
    pub program: String,
    /// Arguments after the program.
    pub args: Vec<String>,
}

impl Pulled {
    fn to_pb(&self) -> pb::Image {
        pb::Image {
            id: self.id.clone(),
            repo_tags: vec![self.tag.clone()],
            repo_digests: vec![self.digest_ref.clone()],
            size: self.size,
            spec: Some(pb::ImageSpec {
                image: self.tag.clone(),
                annotations: Default::default(),
            }),
        }
    }
}

/// Parse `Bearer realm="…",service="…",scope="…"`.
pub fn parse_challenge(h: &str) -> Option<BTreeMap<String, String>> {
    let rest = h.strip_prefix("Bearer ")?;
    let mut out = BTreeMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let (k, v) = s.split_once('=')?;
        let v = v.trim_start();
        let (val, tail) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"')?;
            (q[..end].to_string(), &q[end + 1..])
        } else {
            match v.find(',') {
                Some(i) => (v[..i].to_string(), &v[i..]),
                None => (v.to_string(), ""),
            }
        };
        out.insert(k.trim().to_string(), val);
        s = tail.trim_start_matches(',').trim();
    }
    Some(out)
}

/// Basic credentials of an `AuthConfig` (username/password or `auth`).
pub fn basic_auth(a: &pb::AuthConfig) -> Option<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    if !a.username.is_empty() {
        return Some(b64.encode(format!("{}:{}", a.username, a.password)));
    }
    if !a.auth.is_empty() {
        return Some(a.auth.clone());
    }
    None
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: bytes::Bytes,
}

fn percent(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// containerd's resolver dials with Go's default 30 s dialer timeout.
const DIAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

async fn get(url: &str, headers: &[(&str, String)], clock: &Clock) -> Result<Reply, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("invalid url {url}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("no host in {url}"))?;
    let addr = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    let tcp = match clock
        .timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            return Err(format!(
                "failed to do request: Get \"{url}\": dial tcp {addr}: {e}"
            ));
        }
        Err(_) => {
            return Err(format!(
                "failed to do request: Get \"{url}\": dial tcp {addr}: i/o timeout"
            ));
        }
    };
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("failed to do request: Get \"{url}\": {e}"))?;
    let driver = async move {
        let _ = conn.await;
        std::future::pending::<()>().await
    };
    let mut req = http::Request::get(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header("host", uri.authority().map(|a| a.as_str()).unwrap_or(host));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let work = async {
        let r = send
            .send_request(req)
            .await
            .map_err(|e| format!("failed to do request: Get \"{url}\": {e}"))?;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?
            .to_bytes();
        Ok(Reply {
            status,
            headers,
            body,
        })
    };
    tokio::select! {
        r = work => r,
        () = driver => Err(format!("connection to {addr} ended")),
    }
}

fn server_message(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    match v["errors"][0].as_object() {
        Some(e) => format!(
            "{}: {}",
            e.get("code")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_lowercase(),
            e.get("message").and_then(Value::as_str).unwrap_or("")
        ),
        None => String::from_utf8_lossy(body).trim().to_string(),
    }
}

/// One resolver session: the token it obtained is reused for blobs.
struct Session<'a> {
    clock: &'a Clock,
    base: String,
    basic: Option<String>,
    token: Option<String>,
    image: &'a str,
}

impl Session<'_> {
    fn fail(&self, why: String) -> String {
        format!(
            "failed to pull and unpack image \"{}\": failed to resolve reference \"{}\": {why}",
            self.image, self.image
        )
    }

    async fn fetch(&mut self, path: &str, accept: &str) -> Result<Reply, String> {
        let url = format!("{}{path}", self.base);
        for attempt in 0..2 {
            let mut h = vec![("accept", accept.to_string())];
            if let Some(t) = &self.token {
                h.push(("authorization", format!("Bearer {t}")));
            }
            let r = get(&url, &h, self.clock).await.map_err(|e| self.fail(e))?;
            if r.status != 401 {
                return Ok(r);
            }
            let challenge = r
                .headers
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let (Some(c), 0) = (challenge, attempt) else {
                return Err(self.fail(format!(
                    "pull access denied, repository does not exist or may require authorization: server message: {}",
                    server_message(&r.body)
                )));
            };
            self.token = Some(self.token_for(&c).await?);
        }
        Err(self.fail("authorization failed".into()))
    }

    async fn token_for(&self, c: &BTreeMap<String, String>) -> Result<String, String> {
        let realm = c
            .get("realm")
            .ok_or_else(|| self.fail("failed to authorize: the challenge has no realm".into()))?;
        let mut q = Vec::new();
        if let Some(s) = c.get("service") {
            q.push(format!("service={}", percent(s)));
        }
        if let Some(s) = c.get("scope") {
            q.push(format!("scope={}", percent(s)));
        }
        let url = format!("{realm}?{}", q.join("&"));
        let mut h = vec![];
        if let Some(b) = &self.basic {
            h.push(("authorization", format!("Basic {b}")));
        }
        let r = get(&url, &h, self.clock)
            .await
            .map_err(|e| self.fail(format!("failed to authorize: {e}")))?;
        if r.status != 200 {
            let kind = if self.basic.is_some() {
                "failed to fetch oauth token"
            } else {
                "failed to fetch anonymous token"
            };
            return Err(self.fail(format!(
                "failed to authorize: {kind}: unexpected status from GET request to {realm}: {} {}",
                r.status,
                http::StatusCode::from_u16(r.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("")
            )));
        }
        let v: Value = serde_json::from_slice(&r.body)
            .map_err(|e| self.fail(format!("failed to authorize: decoding the token: {e}")))?;
        v["token"]
            .as_str()
            .or(v["access_token"].as_str())
            .map(str::to_string)
            .ok_or_else(|| self.fail("failed to authorize: no token in the response".into()))
    }
}

/// Pull `image` from its registry with `auth`.
pub async fn pull(
    image: &str,
    auth: Option<&pb::AuthConfig>,
    clock: &Clock,
) -> Result<Pulled, String> {
    let r = Reference::parse(image)?;
    let mut s = Session {
        clock,
        base: format!("http://{}", r.registry),
        basic: auth.and_then(basic_auth),
        token: None,
        image,
    };
    let m = s
        .fetch(
            &format!("/v2/{}/manifests/{}", r.repository, r.reference),
            MANIFEST_TYPES,
        )
        .await?;
    if m.status == 404 {
        return Err(s.fail(format!("{image}: not found")));
    }
    if m.status != 200 {
        return Err(s.fail(format!(
            "unexpected status {} fetching the manifest: {}",
            m.status,
            server_message(&m.body)
        )));
    }
    let manifest_digest = m
        .headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| format!("sha256:{}", hex::encode(sha2::Sha256::digest(&m.body))));
    let mv: Value = serde_json::from_slice(&m.body)
        .map_err(|e| s.fail(format!("decoding the manifest: {e}")))?;
    let config_digest = mv["config"]["digest"]
        .as_str()
        .ok_or_else(|| s.fail("the manifest has no config".into()))?
        .to_string();
    let c = s
        .fetch(
            &format!("/v2/{}/blobs/{config_digest}", r.repository),
            "application/vnd.oci.image.config.v1+json, */*",
        )
        .await?;
    if c.status != 200 {
        return Err(s.fail(format!(
            "failed to fetch config {config_digest}: {}",
            server_message(&c.body)
        )));
    }
    let cv: Value = serde_json::from_slice(&c.body)
        .map_err(|e| s.fail(format!("decoding the image config: {e}")))?;
    let entry: Vec<String> = cv["config"]["Entrypoint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_string))
        .collect();
    // `/ackemu-workload <program> args…`; the manifest annotation names it too.
    let program = entry
        .get(1)
        .cloned()
        .or_else(|| {
            mv["annotations"][PROGRAM_ANNOTATION]
                .as_str()
                .map(str::to_string)
        })
        .ok_or_else(|| s.fail("the image names no workload program".into()))?;
    Ok(Pulled {
        id: config_digest,
        tag: r.normalized(),
        digest_ref: format!("{}/{}@{manifest_digest}", r.registry, r.repository),
        size: (m.body.len() + c.body.len()) as u64,
        program,
        args: entry.into_iter().skip(2).collect(),
    })
}

impl Runtime {
    /// PullImage: fetch and remember the image.
    pub async fn pull_image(&self, req: pb::PullImageRequest) -> Result<String, RuntimeError> {
        let image = req.image.unwrap_or_default().image;
        let p = pull(&image, req.auth.as_ref(), &self.clock)
            .await
            .map_err(RuntimeError::Internal)?;
        tracing::info!(
            "runtime: pulled image {} ({}, program {})",
            p.tag,
            p.id,
            p.program
        );
        let id = p.id.clone();
        let mut imgs = self.images.lock();
        imgs.insert(p.tag.clone(), p.clone());
        Ok(id)
    }

    /// The pulled image `image` names (a reference or an id).
    pub fn find_image(&self, image: &str) -> Option<Pulled> {
        let imgs = self.images.lock();
        if let Some(p) = imgs
            .values()
            .find(|p| p.id == image || p.digest_ref == image)
        {
            return Some(p.clone());
        }
        let r = Reference::parse(image).ok()?;
        imgs.get(&r.normalized()).cloned()
    }

    /// ImageStatus.
    pub fn image_status(&self, image: &str) -> Option<pb::Image> {
        self.find_image(image).map(|p| p.to_pb())
    }

    /// ListImages.
    pub fn list_images(&self, filter: Option<&str>) -> Vec<pb::Image> {
        match filter.filter(|f| !f.is_empty()) {
            Some(f) => self.image_status(f).into_iter().collect(),
            None => self.images.lock().values().map(Pulled::to_pb).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_docker() {
        let r = Reference::parse("127.0.0.1:5000/kube-easy/app:v1").unwrap();
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.reference.as_str()
            ),
            ("127.0.0.1:5000", "kube-easy/app", "v1")
        );
        assert_eq!(r.normalized(), "127.0.0.1:5000/kube-easy/app:v1");
        let r = Reference::parse("registry-vpc.cn-hangzhou.aliyuncs.com/ns/app").unwrap();
        assert_eq!(r.reference, "latest");
        assert_eq!(
            Reference::parse("app").unwrap().normalized(),
            "docker.io/library/app:latest"
        );
        assert_eq!(
            Reference::parse("ns/app:1").unwrap().normalized(),
            "docker.io/ns/app:1"
        );
        let r = Reference::parse("h.io/ns/app@sha256:abc").unwrap();
        assert_eq!(r.reference, "sha256:abc");
        assert!(Reference::parse("").is_err());
        assert!(Reference::parse("a b").is_err());
    }

    #[test]
    fn challenges_and_credentials_parse() {
        let c = parse_challenge(
            r#"Bearer realm="http://100.100.0.20/token",service="registry.ackemu.local",scope="repository:ns/app:pull""#,
        )
        .unwrap();
        assert_eq!(c["realm"], "http://100.100.0.20/token");
        assert_eq!(c["service"], "registry.ackemu.local");
        assert_eq!(c["scope"], "repository:ns/app:pull");
        assert!(parse_challenge("Basic realm=x").is_none());
        let a = pb::AuthConfig {
            username: "u".into(),
            password: "p".into(),
            ..Default::default()
        };
        assert_eq!(basic_auth(&a).as_deref(), Some("dTpw"));
        let a = pb::AuthConfig {
            auth: "dTpw".into(),
            ..Default::default()
        };
        assert_eq!(basic_auth(&a).as_deref(), Some("dTpw"));
        assert_eq!(basic_auth(&pb::AuthConfig::default()), None);
    }
}
