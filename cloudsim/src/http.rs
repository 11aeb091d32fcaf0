//! The cloud's HTTP endpoints: the instance metadata service
//! (`100.100.100.200` on the wire) and the container registry's Docker
//! Registry v2 protocol with its Bearer token server.
//!
//! The metadata service identifies the asking instance by the peer address
//! (its ENI address once the data plane delivers packets). When the peer is
//! loopback and `trust_forwarded_for` is set, `X-Forwarded-For` names the
//! instance address instead (the fabric's proxy and tests use this).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State as AxState};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use crate::actions::registry::{self as reg, TEMP_USER};
use crate::actions::sts::{self, TrustPrincipal};
use crate::auth::hmac_sha256;
use crate::cloud::{Cloud, iso8601};
use crate::model::{Instance, State};
use crate::ram;

#[derive(Clone)]
pub struct MetadataState {
    pub cloud: Cloud,
    pub trust_forwarded_for: bool,
}

pub fn metadata_router(state: MetadataState) -> Router {
    Router::new()
        .route("/latest/user-data", get(user_data))
        .route("/latest/meta-data", get(meta_index))
        .route("/latest/meta-data/", get(meta_index))
        .route("/latest/meta-data/{*path}", get(meta))
        .with_state(state)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain")], body.into()).into_response()
}

fn caller_instance(
    st: &MetadataState,
    s: &State,
    peer: SocketAddr,
    headers: &HeaderMap,
) -> Option<Instance> {
    let mut ip = match peer.ip() {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => v6.to_ipv4_mapped()?,
    };
    if st.trust_forwarded_for
        && ip.is_loopback()
        && let Some(fwd) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok())
        && let Ok(f) = fwd
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .parse::<Ipv4Addr>()
    {
        ip = f;
    }
    s.instance_by_ip(ip).cloned()
}

async fn user_data(
    AxState(st): AxState<MetadataState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let s = st.cloud.snapshot();
    match caller_instance(&st, &s, peer, &headers) {
        Some(i) => text(StatusCode::OK, i.user_data),
        None => text(
            StatusCode::NOT_FOUND,
            format!("no instance has the address {}", peer.ip()),
        ),
    }
}

async fn meta_index() -> Response {
    text(
        StatusCode::OK,
        "hostname\ninstance-id\ninstance/\nprivate-ipv4\nram/\nregion-id\nvpc-id\nvswitch-id\nzone-id\n",
    )
}

async fn meta(
    AxState(st): AxState<MetadataState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(path): Path<String>,
) -> Response {
    let s = st.cloud.snapshot();
    let Some(i) = caller_instance(&st, &s, peer, &headers) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("no instance has the address {}", peer.ip()),
        );
    };
    let path = path.trim_end_matches('/');
    match path {
        "instance-id" => text(StatusCode::OK, i.id),
        "hostname" => text(StatusCode::OK, i.host_name),
        "private-ipv4" => text(StatusCode::OK, i.private_ip.to_string()),
        "region-id" => text(StatusCode::OK, s.region.clone()),
        "zone-id" => text(StatusCode::OK, i.zone_id),
        "vpc-id" => text(StatusCode::OK, i.vpc_id),
        "vswitch-id" => text(StatusCode::OK, i.vswitch_id),
        "instance" => text(StatusCode::OK, "instance-type\n"),
        "instance/instance-type" => text(StatusCode::OK, i.instance_type),
        "ram" => text(StatusCode::OK, "security-credentials/\n"),
        "ram/security-credentials" => text(StatusCode::OK, i.ram_role.unwrap_or_default()),
        p => match p.strip_prefix("ram/security-credentials/") {
            Some(role) => role_credentials(&st, &s, &i, role).await,
            None => text(StatusCode::NOT_FOUND, format!("no metadata item {p:?}")),
        },
    }
}

async fn role_credentials(st: &MetadataState, s: &State, i: &Instance, role: &str) -> Response {
    if i.ram_role.as_deref() != Some(role) {
        return text(
            StatusCode::NOT_FOUND,
            format!("the instance {} has no RAM role {role:?}", i.id),
        );
    }
    let Some(r) = s.roles.get(role) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("the RAM role {role} does not exist"),
        );
    };
    if !sts::trusts(
        &r.trust_policy,
        &s.account_id,
        &TrustPrincipal::Service("ecs.aliyuncs.com"),
    ) {
        let body = json!({"Code": "Forbidden", "Message": format!("the trust policy of role {role} does not allow ecs.aliyuncs.com to assume it")});
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    let now = st.cloud.clock().wall_unix_ms();
    let duration_s = st
        .cloud
        .config()
        .sts_default_duration
        .as_secs()
        .clamp(900, r.max_session_duration_s);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
    let (claims, token) = sts::issue(s, &mut rng, role, &i.id, duration_s, now);
    axum::Json(json!({
        "AccessKeyId": claims.access_key_id, "AccessKeySecret": claims.access_key_secret,
        "SecurityToken": token, "Expiration": iso8601(claims.expires_unix_ms),
        "LastUpdated": iso8601(now), "Code": "Success",
    }))
    .into_response()
}

// ---------------------------------------------------------------- registry

#[derive(Clone)]
pub struct RegistryState {
    pub cloud: Cloud,
    /// The `service` in challenges and tokens.
    pub service: String,
    /// Token lifetime, seconds of cluster time.
    pub token_ttl_s: i64,
}

pub fn registry_router(state: RegistryState) -> Router {
    Router::new()
        .route("/v2/", get(v2_ping))
        .route("/v2", get(v2_ping))
        .route("/token", get(token))
        .route(
            "/v2/{ns}/{name}/manifests/{reference}",
            get(manifest).head(manifest),
        )
        .route("/v2/{ns}/{name}/blobs/{digest}", get(blob).head(blob))
        .layer(axum::middleware::map_response(
            |mut r: Response| async move {
                r.headers_mut().insert(
                    "Docker-Distribution-Api-Version",
                    HeaderValue::from_static("registry/2.0"),
                );
                r
            },
        ))
        .with_state(state)
}

fn registry_error(
    status: StatusCode,
    code: &str,
    message: &str,
    challenge: Option<String>,
) -> Response {
    let body = json!({"errors": [{"code": code, "message": message, "detail": null}]});
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(c) = challenge
        && let Ok(v) = HeaderValue::from_str(&c)
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

fn realm(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}/token")
}

fn challenge(st: &RegistryState, headers: &HeaderMap, scope: Option<&str>) -> String {
    let mut c = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        realm(headers),
        st.service
    );
    if let Some(s) = scope {
        c.push_str(&format!(",scope=\"{s}\""));
    }
    c
}

/// Repositories and actions a token grants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub access: Vec<Access>,
}

/// HS256 JWT with the account's signing key.
pub fn jwt_encode(claims: &TokenClaims, key: &str) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("json"));
    let signing_input = format!("{header}.{payload}");
    let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(
        format!("registry:{key}").as_bytes(),
        signing_input.as_bytes(),
    ));
    format!("{signing_input}.{sig}")
}

/// Verifies signature and expiry (cluster time, seconds).
pub fn jwt_decode(token: &str, key: &str, now_s: i64) -> Option<TokenClaims> {
    let mut parts = token.split('.');
    let (h, p, sig) = (parts.next()?, parts.next()?, parts.next()?);
    let want = URL_SAFE_NO_PAD.encode(hmac_sha256(
        format!("registry:{key}").as_bytes(),
        format!("{h}.{p}").as_bytes(),
    ));
    if want != sig {
        return None;
    }
    let c: TokenClaims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).ok()?).ok()?;
    (now_s < c.exp).then_some(c)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

async fn v2_ping(AxState(st): AxState<RegistryState>, headers: HeaderMap) -> Response {
    let s = st.cloud.snapshot();
    let now_s = st.cloud.clock().wall_unix_ms() / 1000;
    if bearer(&headers)
        .and_then(|t| jwt_decode(t, &s.signing_key, now_s))
        .is_some()
    {
        return (StatusCode::OK, axum::Json(json!({}))).into_response();
    }
    registry_error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "authentication required",
        Some(challenge(&st, &headers, None)),
    )
}

/// Who presented Basic credentials: `None` for anonymous, `Err` for bad ones.
enum Login {
    Anonymous,
    /// May pull every repository of the account.
    Account(String),
    /// A RAM user: pulls are checked against its policies.
    User(String),
}

fn login(s: &State, headers: &HeaderMap, now_ms: i64) -> Result<Login, ()> {
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Ok(Login::Anonymous);
    };
    let basic = auth
        .to_str()
        .map_err(|_| ())?
        .strip_prefix("Basic ")
        .ok_or(())?;
    let decoded =
        String::from_utf8(STANDARD.decode(basic.trim()).map_err(|_| ())?).map_err(|_| ())?;
    let (user, pass) = decoded.split_once(':').ok_or(())?;
    if user == TEMP_USER {
        let t = reg::decode_temp_password(pass, &s.signing_key, now_ms).ok_or(())?;
        return Ok(Login::Account(t.identity));
    }
    let key = s
        .access_keys
        .get(user)
        .filter(|k| k.active && k.secret == pass)
        .ok_or(())?;
    Ok(match &key.user {
        None => Login::Account("root".into()),
        Some(u) => Login::User(u.clone()),
    })
}

#[derive(serde::Deserialize)]
struct TokenQuery {
    service: Option<String>,
    scope: Option<String>,
}

fn may_pull(s: &State, who: &Login, repo_key: &str) -> bool {
    let Some(repo) = s.registry.repos.get(repo_key) else {
        return false;
    };
    if repo.public {
        return true;
    }
    match who {
        Login::Anonymous => false,
        Login::Account(_) => true,
        Login::User(u) => {
            let policies: Vec<(String, ram::PolicyDocument)> = s
                .users
                .get(u)
                .map(|u| {
                    u.attached_policies
                        .iter()
                        .filter_map(|n| s.policies.get(n).map(|p| (n.clone(), p.document.clone())))
                        .collect()
                })
                .unwrap_or_default();
            let res = ram::arn(
                "cr",
                &s.region,
                &s.account_id,
                &format!("repository/{repo_key}"),
            );
            ram::evaluate(
                policies.iter().map(|(n, d)| (n.as_str(), d)),
                "cr:PullRepository",
                &[res],
            )
            .is_allowed()
        }
    }
}

async fn token(
    AxState(st): AxState<RegistryState>,
    headers: HeaderMap,
    Query(q): Query<TokenQuery>,
) -> Response {
    let s = st.cloud.snapshot();
    let now_ms = st.cloud.clock().wall_unix_ms();
    let Ok(who) = login(&s, &headers, now_ms) else {
        return registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
            None,
        );
    };
    let mut access = Vec::new();
    if let Some(scope) = &q.scope {
        for sc in scope.split(' ') {
            let mut parts = sc.splitn(3, ':');
            let (Some("repository"), Some(name), Some(actions)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let granted: Vec<String> = actions
                .split(',')
                .filter(|a| *a == "pull" && may_pull(&s, &who, name))
                .map(str::to_owned)
                .collect();
            access.push(Access {
                kind: "repository".into(),
                name: name.to_owned(),
                actions: granted,
            });
        }
    }
    let sub = match &who {
        Login::Anonymous => String::new(),
        Login::Account(i) => i.clone(),
        Login::User(u) => format!("user/{u}"),
    };
    let now_s = now_ms / 1000;
    let claims = TokenClaims {
        iss: "ackemu-registry".into(),
        sub,
        aud: q.service.unwrap_or_else(|| st.service.clone()),
        exp: now_s + st.token_ttl_s,
        nbf: now_s - 1,
        iat: now_s,
        access,
    };
    let t = jwt_encode(&claims, &s.signing_key);
    axum::Json(json!({"token": t, "access_token": t, "expires_in": st.token_ttl_s, "issued_at": iso8601(now_ms)})).into_response()
}

/// Checks the Bearer token for pull on `ns/name`; the 401 otherwise.
fn authorize_pull(
    st: &RegistryState,
    s: &State,
    headers: &HeaderMap,
    repo_key: &str,
) -> Result<(), Response> {
    let scope = format!("repository:{repo_key}:pull");
    let now_s = st.cloud.clock().wall_unix_ms() / 1000;
    let ok = bearer(headers)
        .and_then(|t| jwt_decode(t, &s.signing_key, now_s))
        .is_some_and(|c| {
            c.access
                .iter()
                .any(|a| a.name == repo_key && a.actions.iter().any(|x| x == "pull"))
        });
    if ok {
        Ok(())
    } else {
        Err(registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
            Some(challenge(st, headers, Some(&scope))),
        ))
    }
}

fn body_response(method: &Method, content_type: &str, digest: &str, bytes: Vec<u8>) -> Response {
    let len = bytes.len();
    let body = if *method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("ascii"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        "Docker-Content-Digest",
        HeaderValue::from_str(digest).expect("ascii"),
    );
    r
}

async fn manifest(
    AxState(st): AxState<RegistryState>,
    method: Method,
    headers: HeaderMap,
    Path((ns, name, reference)): Path<(String, String, String)>,
) -> Response {
    let s = st.cloud.snapshot();
    let key = format!("{ns}/{name}");
    if let Err(r) = authorize_pull(&st, &s, &headers, &key) {
        return r;
    }
    let Some(repo) = s.registry.repos.get(&key) else {
        return registry_error(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            "repository name not known to registry",
            None,
        );
    };
    let image = if reference.starts_with("sha256:") {
        repo.tags.values().find(|i| i.digest == reference)
    } else {
        repo.tags.get(&reference)
    };
    let Some(image) = image else {
        return registry_error(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            "manifest unknown",
            None,
        );
    };
    body_response(
        &method,
        reg::MANIFEST_MEDIA_TYPE,
        &image.digest,
        reg::manifest(&image.program, &image.args),
    )
}

async fn blob(
    AxState(st): AxState<RegistryState>,
    method: Method,
    headers: HeaderMap,
    Path((ns, name, digest)): Path<(String, String, String)>,
) -> Response {
    let s = st.cloud.snapshot();
    let key = format!("{ns}/{name}");
    if let Err(r) = authorize_pull(&st, &s, &headers, &key) {
        return r;
    }
    let configs: BTreeMap<String, Vec<u8>> = s
        .registry
        .repos
        .get(&key)
        .map(|r| {
            r.tags
                .values()
                .map(|i| {
                    let b = reg::config_blob(&i.program, &i.args);
                    (reg::sha256_digest(&b), b)
                })
                .collect()
        })
        .unwrap_or_default();
    match configs.get(&digest) {
        Some(b) => body_response(&method, reg::CONFIG_MEDIA_TYPE, &digest, b.clone()),
        None => registry_error(
            StatusCode::NOT_FOUND,
            "BLOB_UNKNOWN",
            "blob unknown to registry",
            None,
        ),
    }
}
