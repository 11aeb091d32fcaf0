//! The cloud client the cloud-controller-manager and the autoscaler use:
//! cloudsim's gRPC API (`ackemu.cloud.v1`, one `Invoke(action, params) →
//! JSON` per product) with requests signed as cloudsim's `auth.rs`
//! documents, and credentials the way ACK components get them — a fixed
//! AccessKey (flags or `ACKEMU_ACCESS_KEY_ID` / `ACKEMU_ACCESS_KEY_SECRET` /
//! `ACKEMU_SECURITY_TOKEN`), or the instance's RAM role from the metadata
//! service (`/latest/meta-data/ram/security-credentials/<role>`), refreshed
//! before `Expiration`.
//!
//! This crate does not depend on cloudsim (components never depend on each
//! other): the signature is re-implemented here from the documented scheme.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_proto::ackemu::cloud::v1 as pb;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Empty};
use parking_lot::Mutex;
use rand::Rng;
use serde_json::Value;
use sha2::Sha256;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

pub const ENV_ACCESS_KEY_ID: &str = "ACKEMU_ACCESS_KEY_ID";
pub const ENV_ACCESS_KEY_SECRET: &str = "ACKEMU_ACCESS_KEY_SECRET";
pub const ENV_SECURITY_TOKEN: &str = "ACKEMU_SECURITY_TOKEN";
pub const ENV_CLOUD_ENDPOINT: &str = "ACKEMU_CLOUD_ENDPOINT";
/// The metadata service on the VPC.
pub const METADATA_ENDPOINT: &str = "http://100.100.100.200";
/// Credentials are refreshed this long (cluster time) before they expire.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Bound on one metadata request.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// A cloud call's deadline once connected (the SDKs' read timeout).
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A product of the cloud API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Product {
    Ecs,
    Vpc,
    Slb,
    Ess,
    /// RAM (operators' tools and tests; the controllers never call it).
    Ram,
}

impl Product {
    /// The RAM service code, which is also what requests are signed with.
    pub fn code(self) -> &'static str {
        match self {
            Product::Ecs => "ecs",
            Product::Vpc => "vpc",
            Product::Slb => "slb",
            Product::Ess => "ess",
            Product::Ram => "ram",
        }
    }
}

/// What requests are signed with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub access_key_id: String,
    pub access_key_secret: String,
    pub security_token: Option<String>,
}

/// Where credentials come from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// A fixed AccessKey (optionally with an STS token).
    Static(Credentials),
    /// The instance's RAM role through the metadata service.
    RamRole {
        /// `http://100.100.100.200` on the VPC.
        endpoint: String,
        /// The role; empty: ask the metadata service which role it is.
        role: String,
        /// Sent as `X-Forwarded-For` (host-side processes that stand for
        /// an instance, against a metadata service that trusts it).
        forwarded_for: Option<String>,
    },
}

impl CredentialSource {
    /// `ACKEMU_ACCESS_KEY_ID` / `_SECRET` / `ACKEMU_SECURITY_TOKEN`, if set.
    pub fn from_env() -> Option<CredentialSource> {
        let get = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
        Some(CredentialSource::Static(Credentials {
            access_key_id: get(ENV_ACCESS_KEY_ID)?,
            access_key_secret: get(ENV_ACCESS_KEY_SECRET)?,
            security_token: get(ENV_SECURITY_TOKEN),
        }))
    }
}

/// A failed cloud call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CloudError {
    /// The cloud answered with an error code.
    #[error("SDK.ServerError ErrorCode: {code} Message: {message} RequestId: {request_id}")]
    Api {
        code: String,
        message: String,
        request_id: String,
    },
    /// No credentials (the metadata service failed or refused).
    #[error("refresh Ecs sts token err: {0}")]
    Credentials(String),
    #[error("calling the cloud API at {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    #[error("decoding the cloud's answer to {action}: {message}")]
    Decode { action: String, message: String },
}

impl CloudError {
    pub fn code(&self) -> Option<&str> {
        match self {
            CloudError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code().is_some_and(|c| c.ends_with(".NotFound"))
    }
}

/// The signature headers of a request (cloudsim `auth.rs`):
/// `ACS3-HMAC-SHA256\n<product>\n<Action>\n<ts>\n<nonce>\n<json(params)>`.
pub fn sign(
    creds: &Credentials,
    product: &str,
    action: &str,
    params: &BTreeMap<String, String>,
    timestamp_ms: i64,
    nonce: &str,
) -> Vec<(&'static str, String)> {
    let json = serde_json::to_string(params).unwrap_or_default();
    let text = format!("ACS3-HMAC-SHA256\n{product}\n{action}\n{timestamp_ms}\n{nonce}\n{json}");
    let mut mac = Hmac::<Sha256>::new_from_slice(creds.access_key_secret.as_bytes())
        .expect("hmac accepts any key length");
    mac.update(text.as_bytes());
    let sig: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut out = vec![
        ("x-acs-access-key-id", creds.access_key_id.clone()),
        ("x-acs-timestamp", timestamp_ms.to_string()),
        ("x-acs-signature-nonce", nonce.to_owned()),
        ("x-acs-signature", sig),
    ];
    if let Some(t) = &creds.security_token {
        out.push(("x-acs-security-token", t.clone()));
    }
    out
}

struct Cached {
    creds: Credentials,
    /// Cluster wall ms after which they must be refreshed.
    refresh_at_ms: i64,
}

/// The signed client.
#[derive(Clone)]
pub struct CloudClient {
    endpoint: String,
    channel: Channel,
    source: CredentialSource,
    cached: Arc<Mutex<Option<Cached>>>,
    clock: Clock,
    tasks: Tasks,
}

fn status_error(st: tonic::Status, endpoint: &str) -> CloudError {
    let md = |k: &str| {
        st.metadata()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    match md("x-acs-error-code") {
        Some(code) => CloudError::Api {
            message: st
                .message()
                .strip_prefix(&format!("{code}: "))
                .unwrap_or(st.message())
                .to_owned(),
            code,
            request_id: md("x-acs-request-id").unwrap_or_default(),
        },
        None => CloudError::Transport {
            endpoint: endpoint.to_owned(),
            message: format!("{:?}: {}", st.code(), st.message()),
        },
    }
}

impl CloudClient {
    /// Connects lazily to `endpoint` (`http://host:port`).
    pub fn new(
        endpoint: &str,
        source: CredentialSource,
        clock: Clock,
        tasks: Tasks,
    ) -> Result<CloudClient, CloudError> {
        let channel = Channel::from_shared(endpoint.to_owned())
            .map_err(|e| CloudError::Transport {
                endpoint: endpoint.to_owned(),
                message: format!("invalid endpoint: {e}"),
            })?
            .connect_timeout(Duration::from_secs(5))
            // A connection the network stopped carrying (a security group
            // rule, a dropped flow) is noticed and replaced, as the SDKs'
            // HTTP clients drop a connection whose read timed out.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy();
        Ok(CloudClient {
            endpoint: endpoint.to_owned(),
            channel,
            source,
            cached: Arc::new(Mutex::new(None)),
            clock,
            tasks,
        })
    }

    /// The credentials to sign with now, refreshing role credentials from
    /// the metadata service when they are close to expiry.
    pub async fn credentials(&self) -> Result<Credentials, CloudError> {
        let (endpoint, role, fwd) = match &self.source {
            CredentialSource::Static(c) => return Ok(c.clone()),
            CredentialSource::RamRole {
                endpoint,
                role,
                forwarded_for,
            } => (endpoint, role, forwarded_for),
        };
        let now = self.clock.wall_unix_ms();
        if let Some(c) = self.cached.lock().as_ref()
            && now < c.refresh_at_ms
        {
            return Ok(c.creds.clone());
        }
        let role = if role.is_empty() {
            let r = self
                .metadata_get(endpoint, "/latest/meta-data/ram/security-credentials/", fwd)
                .await?;
            let r = r.trim().to_owned();
            if r.is_empty() {
                return Err(CloudError::Credentials(
                    "the instance has no RAM role attached".into(),
                ));
            }
            r
        } else {
            role.clone()
        };
        let body = self
            .metadata_get(
                endpoint,
                &format!("/latest/meta-data/ram/security-credentials/{role}"),
                fwd,
            )
            .await?;
        let v: Value = serde_json::from_str(&body).map_err(|e| {
            CloudError::Credentials(format!("decoding the metadata service's answer: {e}"))
        })?;
        if v["Code"] != "Success" {
            return Err(CloudError::Credentials(format!(
                "Code is {}, not Success",
                v["Code"]
            )));
        }
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        let creds = Credentials {
            access_key_id: s("AccessKeyId"),
            access_key_secret: s("AccessKeySecret"),
            security_token: Some(s("SecurityToken")),
        };
        let expires_ms = s("Expiration")
            .parse::<jiff::Timestamp>()
            .map(|t| t.as_millisecond())
            .map_err(|e| {
                CloudError::Credentials(format!("Expiration {:?}: {e}", s("Expiration")))
            })?;
        let refresh_at_ms = (expires_ms - REFRESH_BEFORE_EXPIRY.as_millis() as i64)
            .max(now + (expires_ms - now) / 2);
        tracing::info!(
            "cloud credentials: got STS credentials {} of RAM role {role}, expiring {}",
            creds.access_key_id,
            s("Expiration")
        );
        *self.cached.lock() = Some(Cached {
            creds: creds.clone(),
            refresh_at_ms,
        });
        Ok(creds)
    }

    /// One GET to the metadata service (HTTP/1.1, one connection).
    async fn metadata_get(
        &self,
        endpoint: &str,
        path: &str,
        forwarded_for: &Option<String>,
    ) -> Result<String, CloudError> {
        let fail = |m: String| CloudError::Credentials(m);
        let url: hyper::Uri = format!("{}{path}", endpoint.trim_end_matches('/'))
            .parse()
            .map_err(|e| fail(format!("metadata URL: {e}")))?;
        let host = url.host().unwrap_or("100.100.100.200").to_owned();
        let port = url.port_u16().unwrap_or(80);
        let work = async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| fail(format!("Get \"{url}\": dial tcp {host}:{port}: {e}")))?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                    .await
                    .map_err(|e| fail(format!("Get \"{url}\": {e}")))?;
            let token = self.tasks.token();
            self.tasks.spawn("metadata connection", async move {
                tokio::select! {
                    _ = conn => {}
                    () = token.cancelled() => {}
                }
            });
            let mut req =
                hyper::Request::get(path).header(hyper::header::HOST, format!("{host}:{port}"));
            if let Some(f) = forwarded_for {
                req = req.header("x-forwarded-for", f.as_str());
            }
            let req = req
                .body(Empty::<bytes::Bytes>::new())
                .map_err(|e| fail(format!("metadata request: {e}")))?;
            let res = sender
                .send_request(req)
                .await
                .map_err(|e| fail(format!("Get \"{url}\": {e}")))?;
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .map_err(|e| fail(format!("Get \"{url}\": reading the body: {e}")))?
                .to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
            if !status.is_success() {
                return Err(CloudError::Credentials(format!(
                    "httpStatus: {}, message = {}",
                    status.as_u16(),
                    text.trim()
                )));
            }
            Ok(text)
        };
        match self.clock.timeout(METADATA_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(fail(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ))),
        }
    }

    /// Calls `<product>/<Action>` and returns the JSON body.
    pub async fn call(
        &self,
        product: Product,
        action: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<Value, CloudError> {
        let creds = self.credentials().await?;
        let nonce: u128 = rand::rng().random();
        let mut req = tonic::Request::new(pb::ActionRequest {
            action: action.to_owned(),
            params: params.clone().into_iter().collect(),
        });
        for (k, v) in sign(
            &creds,
            product.code(),
            action,
            params,
            self.clock.wall_unix_ms(),
            &format!("{nonce:032x}"),
        ) {
            if let Ok(v) = MetadataValue::try_from(v.as_str()) {
                req.metadata_mut().insert(k, v);
            }
        }
        // The Alibaba Cloud SDKs' read timeout.
        req.set_timeout(READ_TIMEOUT);
        let ch = self.channel.clone();
        let res = match product {
            Product::Ecs => pb::ecs_client::EcsClient::new(ch).invoke(req).await,
            Product::Vpc => pb::vpc_client::VpcClient::new(ch).invoke(req).await,
            Product::Slb => pb::slb_client::SlbClient::new(ch).invoke(req).await,
            Product::Ess => pb::ess_client::EssClient::new(ch).invoke(req).await,
            Product::Ram => pb::ram_client::RamClient::new(ch).invoke(req).await,
        };
        let r = res
            .map_err(|st| status_error(st, &self.endpoint))?
            .into_inner();
        serde_json::from_str(&r.json).map_err(|e| CloudError::Decode {
            action: action.to_owned(),
            message: e.to_string(),
        })
    }

    /// [`CloudClient::call`] with parameters as pairs.
    pub async fn call_with(
        &self,
        product: Product,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, CloudError> {
        let p = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.call(product, action, &p).await
    }
}

/// The cloud API on the VPC (cloudsim's gRPC API in the cloud-services
/// namespace).
pub const CLOUD_ENDPOINT: &str = "http://100.100.0.10:80";

/// Cloud flags shared by the cloud-controller-manager and the autoscaler.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CloudArgs {
    /// ACK's cloud config (JSON `{"Global": {"accessKeyID", "accessKeySecret"
    /// (base64), "region", "vpcid", "vswitchid", "routeTableIDs"}}`); without
    /// an AccessKey in it, in the flags or the environment, the instance's
    /// RAM role is used.
    #[arg(long)]
    pub cloud_config: Option<std::path::PathBuf>,
    /// The cloud API (gRPC).
    #[arg(long, env = ENV_CLOUD_ENDPOINT)]
    pub cloud_endpoint: Option<String>,
    #[arg(long)]
    pub region: Option<String>,
    #[arg(long, env = ENV_ACCESS_KEY_ID, hide_env_values = true)]
    pub access_key_id: Option<String>,
    #[arg(long, env = ENV_ACCESS_KEY_SECRET, hide_env_values = true)]
    pub access_key_secret: Option<String>,
    #[arg(long, env = ENV_SECURITY_TOKEN, hide_env_values = true)]
    pub security_token: Option<String>,
    /// The RAM role whose STS credentials the metadata service hands out
    /// (default: the role attached to this instance).
    #[arg(long)]
    pub ram_role_name: Option<String>,
    /// The instance metadata service.
    #[arg(long, default_value = METADATA_ENDPOINT)]
    pub metadata_endpoint: String,
    /// Ask the metadata service as this instance address (`X-Forwarded-For`;
    /// only for processes on the host standing in for an instance, against
    /// a cloudsim started with `--metadata-trust-forwarded-for`).
    #[arg(long)]
    pub metadata_forwarded_for: Option<String>,
}

/// What [`CloudArgs`] resolve to.
#[derive(Clone, Debug)]
pub struct CloudSettings {
    pub endpoint: String,
    pub source: CredentialSource,
    pub region: String,
    pub vpc_id: String,
    pub vswitch_id: String,
    pub route_table_ids: Vec<String>,
}

fn b64_or_plain(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_else(|| s.to_owned())
}

impl CloudArgs {
    pub fn resolve(&self) -> Result<CloudSettings, String> {
        let file: Value = match &self.cloud_config {
            Some(p) => {
                let t = std::fs::read_to_string(p)
                    .map_err(|e| format!("reading --cloud-config {}: {e}", p.display()))?;
                serde_json::from_str(&t)
                    .map_err(|e| format!("parsing --cloud-config {}: {e}", p.display()))?
            }
            None => Value::Null,
        };
        let g = |k: &str| {
            file["Global"][k]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
        };
        let nonempty = |o: &Option<String>| o.clone().filter(|v| !v.is_empty());
        let ak =
            nonempty(&self.access_key_id).or_else(|| g("accessKeyID").map(|v| b64_or_plain(&v)));
        let sk = nonempty(&self.access_key_secret)
            .or_else(|| g("accessKeySecret").map(|v| b64_or_plain(&v)));
        let source = match (ak, sk) {
            (Some(a), Some(s)) => CredentialSource::Static(Credentials {
                access_key_id: a,
                access_key_secret: s,
                security_token: nonempty(&self.security_token),
            }),
            (Some(_), None) | (None, Some(_)) => {
                return Err("an AccessKey needs both its id and its secret".into());
            }
            (None, None) => CredentialSource::RamRole {
                endpoint: self.metadata_endpoint.clone(),
                role: nonempty(&self.ram_role_name).unwrap_or_default(),
                forwarded_for: nonempty(&self.metadata_forwarded_for),
            },
        };
        Ok(CloudSettings {
            endpoint: nonempty(&self.cloud_endpoint)
                .or_else(|| g("endpoint"))
                .unwrap_or_else(|| CLOUD_ENDPOINT.to_owned()),
            source,
            region: nonempty(&self.region)
                .or_else(|| g("region"))
                .unwrap_or_default(),
            vpc_id: g("vpcid").unwrap_or_default(),
            vswitch_id: g("vswitchid").unwrap_or_default(),
            route_table_ids: g("routeTableIDs")
                .map(|v| {
                    v.split(',')
                        .map(|x| x.trim().to_owned())
                        .filter(|x| !x.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// The items of an OpenAPI list (`{"Vpcs": {"Vpc": [...]}}`).
pub fn items<'a>(v: &'a Value, outer: &str, inner: &str) -> &'a [Value] {
    v[outer][inner].as_array().map(Vec::as_slice).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_scheme() {
        let creds = Credentials {
            access_key_id: "LTAI1".into(),
            access_key_secret: "secret".into(),
            security_token: Some("tok".into()),
        };
        let params = BTreeMap::from([("VpcId".to_string(), "vpc-1".to_string())]);
        let h = sign(&creds, "vpc", "DescribeVpcs", &params, 1000, "n1");
        let text = "ACS3-HMAC-SHA256\nvpc\nDescribeVpcs\n1000\nn1\n{\"VpcId\":\"vpc-1\"}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(text.as_bytes());
        let want: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get("x-acs-signature"), Some(want));
        assert_eq!(get("x-acs-security-token").as_deref(), Some("tok"));
        assert_eq!(get("x-acs-timestamp").as_deref(), Some("1000"));
    }

    /// A metadata service on loopback answering `answer(path, n)` with
    /// (status, body); returns its address and the paths asked.
    async fn fake_metadata(
        tasks: &Tasks,
        answer: fn(&str, usize) -> (u16, String),
    ) -> (String, Arc<Mutex<Vec<(String, Option<String>)>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        tasks.spawn("fake metadata", async move {
            while let Ok((mut c, _)) = l.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&buf).into_owned();
                let path = req.split_whitespace().nth(1).unwrap_or("").to_owned();
                let fwd = req
                    .lines()
                    .find_map(|l| l.strip_prefix("x-forwarded-for: "))
                    .map(str::to_owned);
                let n = {
                    let mut g = s2.lock();
                    g.push((path.clone(), fwd));
                    g.len()
                };
                let (status, body) = answer(&path, n);
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = c.write_all(resp.as_bytes()).await;
            }
        });
        (addr, seen)
    }

    fn creds_body(n: usize) -> String {
        // Expires one hour after the manual clock's epoch (2025-01-01).
        json_creds(&format!("STS.{n}"), "2025-01-01T01:00:00Z")
    }

    fn json_creds(id: &str, exp: &str) -> String {
        serde_json::json!({"AccessKeyId": id, "AccessKeySecret": "s", "SecurityToken": "t",
            "Expiration": exp, "Code": "Success"})
        .to_string()
    }

    #[tokio::test]
    async fn role_credentials_are_cached_and_refreshed_before_expiry() {
        let (clock, manual) = Clock::manual(1_735_689_600_000);
        let tasks = Tasks::new(clock.clone());
        let (addr, seen) = fake_metadata(&tasks, |path, n| match path {
            "/latest/meta-data/ram/security-credentials/" => (200, "KubernetesMasterRole".into()),
            _ => (200, creds_body(n)),
        })
        .await;
        let c = CloudClient::new(
            "http://127.0.0.1:1",
            CredentialSource::RamRole {
                endpoint: addr,
                role: String::new(),
                forwarded_for: Some("192.168.0.10".into()),
            },
            clock,
            tasks.clone(),
        )
        .unwrap();
        let a = c.credentials().await.unwrap();
        assert_eq!(a.access_key_id, "STS.2");
        assert_eq!(a.security_token.as_deref(), Some("t"));
        // Cached until five minutes before Expiration.
        manual.advance(Duration::from_secs(54 * 60));
        assert_eq!(c.credentials().await.unwrap().access_key_id, "STS.2");
        manual.advance(Duration::from_secs(2 * 60));
        assert_eq!(c.credentials().await.unwrap().access_key_id, "STS.4");
        let seen = seen.lock().clone();
        assert_eq!(seen.len(), 4);
        assert_eq!(
            seen[1].0,
            "/latest/meta-data/ram/security-credentials/KubernetesMasterRole"
        );
        assert!(
            seen.iter()
                .all(|(_, f)| f.as_deref() == Some("192.168.0.10"))
        );
        tasks.token().cancel();
    }

    #[tokio::test]
    async fn metadata_refusals_are_token_errors() {
        let (clock, _manual) = Clock::manual(1_735_689_600_000);
        let tasks = Tasks::new(clock.clone());
        let (addr, _) = fake_metadata(&tasks, |_, _| {
            (404, "the instance i-1 has no RAM role \"X\"".into())
        })
        .await;
        let c = CloudClient::new(
            "http://127.0.0.1:1",
            CredentialSource::RamRole {
                endpoint: addr,
                role: "X".into(),
                forwarded_for: None,
            },
            clock,
            tasks.clone(),
        )
        .unwrap();
        let e = c
            .call_with(Product::Vpc, "DescribeVpcs", &[])
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "refresh Ecs sts token err: httpStatus: 404, message = the instance i-1 has no RAM role \"X\""
        );
        tasks.token().cancel();
    }

    #[test]
    fn cloud_config_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cloud-config.json");
        std::fs::write(
            &p,
            r#"{"Global": {"accessKeyID": "TFRBSTE=", "accessKeySecret": "c2VjcmV0", "region": "cn-hangzhou", "vpcid": "vpc-1", "vswitchid": "vsw-1", "routeTableIDs": "vtb-1, vtb-2"}}"#,
        )
        .unwrap();
        let args = CloudArgs {
            cloud_config: Some(p),
            ..Default::default()
        };
        let s = args.resolve().unwrap();
        assert!(matches!(&s.source, CredentialSource::Static(c)
            if c.access_key_id == "LTAI1" && c.access_key_secret == "secret"));
        assert_eq!(
            (s.vpc_id.as_str(), s.region.as_str()),
            ("vpc-1", "cn-hangzhou")
        );
        assert_eq!(s.route_table_ids, vec!["vtb-1", "vtb-2"]);
        assert_eq!(s.endpoint, CLOUD_ENDPOINT);
        // No AccessKey anywhere: the instance's RAM role.
        let s = CloudArgs {
            metadata_endpoint: METADATA_ENDPOINT.into(),
            ..Default::default()
        }
        .resolve()
        .unwrap();
        assert!(
            matches!(&s.source, CredentialSource::RamRole { endpoint, role, .. }
            if endpoint == METADATA_ENDPOINT && role.is_empty())
        );
        let half = CloudArgs {
            access_key_id: Some("LTAI1".into()),
            ..Default::default()
        };
        assert!(half.resolve().is_err());
    }

    #[test]
    fn errors_read_like_the_sdk() {
        let e = CloudError::Api {
            code: "Forbidden.RAM".into(),
            message: "User not authorized to operate on the specified resource.".into(),
            request_id: "R1".into(),
        };
        assert_eq!(
            e.to_string(),
            "SDK.ServerError ErrorCode: Forbidden.RAM Message: User not authorized to operate on the specified resource. RequestId: R1"
        );
        assert!(
            CloudError::Credentials("x".into())
                .to_string()
                .starts_with("refresh Ecs sts token err: ")
        );
    }
}
