//! `ackemu cloud <product> <Action> --Param value …` — an aliyun-CLI-like
//! client, plus the signed gRPC [`Client`] it is built on.
//!
//! Credentials come from the environment (`ACKEMU_ACCESS_KEY_ID`,
//! `ACKEMU_ACCESS_KEY_SECRET`, optional `ACKEMU_SECURITY_TOKEN`, endpoint
//! `ACKEMU_CLOUD_ENDPOINT`; the `ALIBABA_CLOUD_*` names work too) or from a
//! profile file shaped like the aliyun CLI's `config.json`
//! (`{"current": "default", "profiles": [{"name", "mode": "AK"|"StsToken",
//! "access_key_id", "access_key_secret", "sts_token", "region_id",
//! "endpoint"}]}`), by default `~/.ackemu/cloud.json`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ackemu_proto::ackemu::cloud::v1 as pb;
use anyhow::Context as _;
use rand::Rng;
use serde_json::Value;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::auth::{self, Credentials};
use crate::cloud::Product;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Profile {
    pub name: String,
    #[serde(default = "default_mode")]
    pub mode: String,
    pub access_key_id: String,
    pub access_key_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sts_token: Option<String>,
    #[serde(default)]
    pub region_id: String,
    pub endpoint: String,
}

fn default_mode() -> String {
    "AK".into()
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProfileFile {
    pub current: String,
    pub profiles: Vec<Profile>,
}

impl ProfileFile {
    pub fn single(p: Profile) -> ProfileFile {
        ProfileFile {
            current: p.name.clone(),
            profiles: vec![p],
        }
    }
}

/// Arguments of `ackemu cloud`.
#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Profile file (aliyun CLI config.json shape).
    #[arg(long, env = "ACKEMU_CLOUD_PROFILE_FILE")]
    pub profile_file: Option<PathBuf>,
    /// Profile name in the file (default: its `current`).
    #[arg(long)]
    pub profile: Option<String>,
    /// gRPC endpoint, e.g. http://127.0.0.1:18600 (overrides the profile).
    #[arg(long, env = "ACKEMU_CLOUD_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Sign with this cluster clock's scale (with --cluster-epoch-ms;
    /// overrides the clock the caller passes).
    #[arg(long, env = "ACKEMU_TIME_SCALE")]
    pub time_scale: Option<f64>,
    /// The cluster clock's epoch (with --time-scale).
    #[arg(long, env = "ACKEMU_CLUSTER_EPOCH_MS")]
    pub cluster_epoch_ms: Option<i64>,
    /// ecs, vpc, slb, ess, ram, sts, registry (or cr), trail.
    pub product: String,
    /// The OpenAPI action, e.g. DescribeVpcs.
    pub action: String,
    /// `--Name value` or `--Name=value` pairs.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub params: Vec<String>,
}

/// A cloud error as the client sees it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{code}: {message} (RequestId {request_id})")]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub request_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("calling the cloud at {endpoint}: {source}")]
    Transport {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("unknown product {0:?}: expected ecs, vpc, slb, ess, ram, sts, registry or trail")]
    UnknownProduct(String),
    #[error("decoding response: {0}")]
    Decode(String),
}

impl ClientError {
    /// The cloud error code, if the cloud answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api(e) => Some(&e.code),
            _ => None,
        }
    }
}

/// Signed gRPC client for every product.
#[derive(Clone)]
pub struct Client {
    channel: Channel,
    creds: Credentials,
    clock: ackemu_base::clock::Clock,
}

fn api_error(st: tonic::Status) -> ApiError {
    let code = crate::grpc::error_code_of(&st).unwrap_or_else(|| format!("{:?}", st.code()));
    let request_id = st
        .metadata()
        .get("x-acs-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let message = st
        .message()
        .strip_prefix(&format!("{code}: "))
        .unwrap_or(st.message())
        .to_owned();
    ApiError {
        code,
        message,
        request_id,
    }
}

impl Client {
    /// Connects lazily to `endpoint` (`http://host:port`); `clock` supplies
    /// the signature timestamps (cluster wall time).
    pub fn new(
        endpoint: &str,
        creds: Credentials,
        clock: ackemu_base::clock::Clock,
    ) -> Result<Client, ClientError> {
        let channel = Channel::from_shared(endpoint.to_owned())
            .map_err(|e| ClientError::Decode(format!("endpoint {endpoint:?}: {e}")))?
            .connect_lazy();
        Ok(Client {
            channel,
            creds,
            clock,
        })
    }

    pub fn with_credentials(&self, creds: Credentials) -> Client {
        Client {
            channel: self.channel.clone(),
            creds,
            clock: self.clock.clone(),
        }
    }

    fn signed<T>(
        &self,
        product_code: &str,
        action: &str,
        params: &BTreeMap<String, String>,
        msg: T,
    ) -> tonic::Request<T> {
        let nonce: u128 = rand::rng().random();
        let mut req = tonic::Request::new(msg);
        for (k, v) in auth::sign(
            &self.creds,
            product_code,
            action,
            params,
            self.clock.wall_unix_ms(),
            &format!("{nonce:032x}"),
        ) {
            if let Ok(v) = MetadataValue::try_from(v.as_str()) {
                req.metadata_mut().insert(k, v);
            }
        }
        req
    }

    /// Calls `<product>/<Action>` and returns the JSON body.
    pub async fn call(
        &self,
        product: Product,
        action: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<Value, ClientError> {
        let msg = pb::ActionRequest {
            action: action.to_owned(),
            params: params.clone().into_iter().collect(),
        };
        let req = self.signed(product.ram_code(), action, params, msg);
        let ch = self.channel.clone();
        let res = match product {
            Product::Ecs => pb::ecs_client::EcsClient::new(ch).invoke(req).await,
            Product::Vpc => pb::vpc_client::VpcClient::new(ch).invoke(req).await,
            Product::Slb => pb::slb_client::SlbClient::new(ch).invoke(req).await,
            Product::Ess => pb::ess_client::EssClient::new(ch).invoke(req).await,
            Product::Ram => pb::ram_client::RamClient::new(ch).invoke(req).await,
            Product::Sts => pb::sts_client::StsClient::new(ch).invoke(req).await,
            Product::Registry => {
                pb::registry_client::RegistryClient::new(ch)
                    .invoke(req)
                    .await
            }
        };
        let r = res.map_err(api_error)?.into_inner();
        serde_json::from_str(&r.json).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Convenience: parameters as pairs.
    pub async fn call_with(
        &self,
        product: Product,
        action: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, ClientError> {
        let p = params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.call(product, action, &p).await
    }

    pub async fn lookup_events(
        &self,
        r: pb::LookupEventsRequest,
    ) -> Result<Vec<pb::AuditEvent>, ClientError> {
        let params = crate::grpc::lookup_params(&r);
        let req = self.signed("actiontrail", "LookupEvents", &params, r);
        let res = pb::trail_client::TrailClient::new(self.channel.clone())
            .lookup_events(req)
            .await
            .map_err(api_error)?;
        Ok(res.into_inner().events)
    }
}

/// Parses `--Name value` / `--Name=value` pairs.
pub fn parse_params(raw: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut it = raw.iter();
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .with_context(|| format!("expected --Name value, got {a:?}"))?;
        let (k, v) = match name.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (
                name.to_owned(),
                it.next()
                    .with_context(|| format!("parameter --{name} has no value"))?
                    .clone(),
            ),
        };
        if k.is_empty() {
            anyhow::bail!("empty parameter name in {a:?}");
        }
        out.insert(k, v);
    }
    Ok(out)
}

fn env_any(names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|n| std::env::var(n).ok().filter(|v| !v.is_empty()))
}

/// Credentials and endpoint from the flags, the environment or the profile.
pub fn resolve(args: &Args) -> anyhow::Result<(String, Credentials)> {
    let env_ak = env_any(&["ACKEMU_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_ID"]);
    let env_sk = env_any(&[
        "ACKEMU_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
    ]);
    let env_token = env_any(&["ACKEMU_SECURITY_TOKEN", "ALIBABA_CLOUD_SECURITY_TOKEN"]);
    if let (Some(ak), Some(sk)) = (env_ak, env_sk) {
        let endpoint = args.endpoint.clone().context(
            "with credentials from the environment, set --endpoint or ACKEMU_CLOUD_ENDPOINT",
        )?;
        return Ok((
            endpoint,
            Credentials {
                access_key_id: ak,
                access_key_secret: sk,
                security_token: env_token,
            },
        ));
    }
    let path = match &args.profile_file {
        Some(p) => p.clone(),
        None => PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| ".".into()))
            .join(".ackemu/cloud.json"),
    };
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no credentials: set ACKEMU_ACCESS_KEY_ID/SECRET or write a profile file at {}",
            path.display()
        )
    })?;
    let file: ProfileFile = serde_json::from_str(&text)
        .with_context(|| format!("parsing profile file {}", path.display()))?;
    let name = args.profile.clone().unwrap_or(file.current.clone());
    let p = file
        .profiles
        .into_iter()
        .find(|p| p.name == name)
        .with_context(|| format!("profile {name:?} not found in {}", path.display()))?;
    let endpoint = args.endpoint.clone().unwrap_or(p.endpoint);
    Ok((
        endpoint,
        Credentials {
            access_key_id: p.access_key_id,
            access_key_secret: p.access_key_secret,
            security_token: p.sts_token,
        },
    ))
}

/// Runs one `ackemu cloud` command: prints the JSON answer, or fails with
/// the cloud's error code and message.
pub async fn run(args: Args) -> anyhow::Result<()> {
    run_with_clock(args, ackemu_base::clock::Clock::real()).await
}

/// [`run`] with request timestamps from `clock` (a time-scaled cluster's
/// clock: the cloud refuses signatures too far from its own time).
pub async fn run_with_clock(args: Args, clock: ackemu_base::clock::Clock) -> anyhow::Result<()> {
    let (endpoint, creds) = resolve(&args)?;
    let params = parse_params(&args.params)?;
    let clock = match (args.time_scale, args.cluster_epoch_ms) {
        (Some(scale), Some(epoch)) => {
            if !(scale.is_finite() && scale > 0.0) {
                anyhow::bail!("invalid --time-scale {scale}: expected a positive number");
            }
            ackemu_base::clock::Clock::new(ackemu_base::clock::ClockConfig {
                time_scale: scale,
                epoch_unix_ms: epoch,
                offset_ms: 0,
            })
        }
        _ => clock,
    };
    let client = Client::new(&endpoint, creds, clock)?;
    let out = if args.product.eq_ignore_ascii_case("trail")
        || args.product.eq_ignore_ascii_case("actiontrail")
    {
        if args.action != "LookupEvents" {
            anyhow::bail!(
                "InvalidAction.NotFound: the trail has only LookupEvents, not {:?}",
                args.action
            );
        }
        let get = |k: &str| params.get(k).cloned().unwrap_or_default();
        let req = pb::LookupEventsRequest {
            after_seq: get("AfterSeq").parse().unwrap_or(0),
            event_name: get("EventName"),
            caller: get("Caller"),
            limit: get("Limit").parse().unwrap_or(0),
        };
        let events = client.lookup_events(req).await?;
        let items: Vec<Value> = events
            .into_iter()
            .map(|e| {
                serde_json::json!({"Seq": e.seq, "Time": crate::cloud::iso8601(e.time_unix_ms), "RequestId": e.request_id,
                    "Caller": e.caller, "AccessKeyId": e.access_key_id, "Product": e.product, "EventName": e.action,
                    "Params": e.params.into_iter().collect::<BTreeMap<_, _>>(), "Success": e.success,
                    "ErrorCode": e.error_code, "ErrorMessage": e.error_message, "Detail": e.detail})
            })
            .collect();
        serde_json::json!({"Events": items})
    } else {
        let product = Product::parse(&args.product)
            .ok_or_else(|| ClientError::UnknownProduct(args.product.clone()))?;
        client.call(product, &args.action, &params).await?
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_table() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let p = parse_params(&s(&[
            "--VpcId",
            "vpc-1",
            "--CidrBlock=10.0.0.0/8",
            "--Priority",
            "-1",
        ]))
        .unwrap();
        assert_eq!(p["VpcId"], "vpc-1");
        assert_eq!(p["CidrBlock"], "10.0.0.0/8");
        assert_eq!(p["Priority"], "-1");
        assert!(parse_params(&s(&["VpcId", "x"])).is_err());
        assert!(parse_params(&s(&["--VpcId"])).is_err());
        assert!(parse_params(&s(&["--=x"])).is_err());
    }
}
