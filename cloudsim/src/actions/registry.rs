//! Container Registry (ACR-like): namespaces, repositories, tags → manifest
//! digests → the built-in workload program an image runs, and temporary
//! login credentials (GetAuthorizationToken) for the credential helper.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::arn;
use crate::auth::hmac_sha256;
use crate::cloud::{ActionDef, Ctx, Handler, Principal, iso8601, nested};
use crate::error::{CloudError, CloudResult};
use crate::model::{Image, RegistryNamespace, Repo, State};
use crate::params::Params;

pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        name: "CreateNamespace",
        handler: Handler::Write(create_namespace),
    },
    ActionDef {
        name: "ListNamespace",
        handler: Handler::Read(list_namespace),
    },
    ActionDef {
        name: "DeleteNamespace",
        handler: Handler::Write(delete_namespace),
    },
    ActionDef {
        name: "CreateRepo",
        handler: Handler::Write(create_repo),
    },
    ActionDef {
        name: "GetRepo",
        handler: Handler::Read(get_repo),
    },
    ActionDef {
        name: "ListRepo",
        handler: Handler::Read(list_repo),
    },
    ActionDef {
        name: "UpdateRepo",
        handler: Handler::Write(update_repo),
    },
    ActionDef {
        name: "DeleteRepo",
        handler: Handler::Write(delete_repo),
    },
    ActionDef {
        name: "PutImageTag",
        handler: Handler::Write(put_image_tag),
    },
    ActionDef {
        name: "ListRepoTag",
        handler: Handler::Read(list_repo_tag),
    },
    ActionDef {
        name: "DeleteImageTag",
        handler: Handler::Write(delete_image_tag),
    },
    ActionDef {
        name: "GetAuthorizationToken",
        handler: Handler::Read(get_authorization_token),
    },
];

/// User name that goes with a GetAuthorizationToken password.
pub const TEMP_USER: &str = "cr_temp_user";
/// Lifetime of a temporary registry password (cluster time).
pub const TEMP_TOKEN_TTL_MS: i64 = 3600 * 1000;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// Manifest annotation naming the workload program.
pub const PROGRAM_ANNOTATION: &str = "io.ackemu.workload.program";

fn valid_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn check(param: &str, v: &str) -> CloudResult<()> {
    if valid_name(v) {
        Ok(())
    } else {
        Err(CloudError::new(
            format!("Invalid{param}"),
            format!(
                "The {param} {v:?} is not valid: 2 to 64 lowercase letters, digits, '-', '_' or '.'."
            ),
            400,
        ))
    }
}

fn repo_arn(s: &State, ns: &str, name: &str) -> String {
    arn(s, "cr", &format!("repository/{ns}/{name}"))
}

/// The image config blob for `program args…`.
pub fn config_blob(program: &str, args: &[String]) -> Vec<u8> {
    let mut entry = vec!["/ackemu-workload".to_owned(), program.to_owned()];
    entry.extend(args.iter().cloned());
    serde_json::to_vec(
        &json!({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": entry}}),
    )
    .expect("json")
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The manifest for `program args…` (deterministic, so its digest names it).
pub fn manifest(program: &str, args: &[String]) -> Vec<u8> {
    let config = config_blob(program, args);
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": sha256_digest(&config), "size": config.len()},
        "layers": [],
        "annotations": {PROGRAM_ANNOTATION: program},
    }))
    .expect("json")
}

/// Known workload programs (what `ackemu-workload <image>` runs).
pub const PROGRAMS: &[&str] = &[
    "pause",
    "app",
    "dns",
    "metrics-server",
    "mesh-sidecar",
    "mesh-pilot",
    "mesh-ca",
    "mesh-webhook",
    "toolbox",
];

fn create_namespace(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let ns = p.req("Namespace")?.to_owned();
    ctx.authorize(&[arn(s, "cr", &format!("namespace/{ns}"))])?;
    check("Namespace", &ns)?;
    if s.registry.namespaces.contains_key(&ns) {
        return Err(CloudError::already_exists(
            "NAMESPACE_ALREADY_EXIST",
            format!("The namespace {ns} already exists."),
        ));
    }
    let public = p
        .opt("DefaultVisibility")
        .is_some_and(|v| v.eq_ignore_ascii_case("PUBLIC"));
    s.registry.namespaces.insert(
        ns.clone(),
        RegistryNamespace {
            name: ns.clone(),
            default_public: public,
            creation_unix_ms: ctx.now_ms,
        },
    );
    Ok(json!({"Namespace": ns}))
}

fn list_namespace(ctx: &mut Ctx<'_>, s: &State, _p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[arn(s, "cr", "namespace/*")])?;
    let items = s
        .registry
        .namespaces
        .values()
        .map(|n| json!({"Namespace": n.name, "DefaultVisibility": if n.default_public {"PUBLIC"} else {"PRIVATE"}}))
        .collect();
    Ok(nested("Namespaces", "Namespace", items))
}

fn delete_namespace(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let ns = p.req("Namespace")?.to_owned();
    ctx.authorize(&[arn(s, "cr", &format!("namespace/{ns}"))])?;
    if s.registry.namespaces.remove(&ns).is_none() {
        return Err(CloudError::new(
            "NAMESPACE_NOT_EXIST",
            format!("The namespace {ns} does not exist."),
            404,
        ));
    }
    s.registry.repos.retain(|_, r| r.namespace != ns);
    Ok(json!({}))
}

fn repo_key(p: &Params) -> CloudResult<(String, String)> {
    Ok((
        p.req("RepoNamespace")?.to_owned(),
        p.req("RepoName")?.to_owned(),
    ))
}

fn repo<'a>(s: &'a State, ns: &str, name: &str) -> CloudResult<&'a Repo> {
    s.registry
        .repos
        .get(&format!("{ns}/{name}"))
        .ok_or_else(|| {
            CloudError::new(
                "REPO_NOT_EXIST",
                format!("The repository {ns}/{name} does not exist."),
                404,
            )
        })
}

fn visibility(p: &Params, default_public: bool) -> CloudResult<bool> {
    match p.opt("RepoType") {
        None => Ok(default_public),
        Some(t) if t.eq_ignore_ascii_case("PUBLIC") => Ok(true),
        Some(t) if t.eq_ignore_ascii_case("PRIVATE") => Ok(false),
        Some(t) => Err(CloudError::invalid_param(format!(
            "The RepoType {t:?} is not PUBLIC or PRIVATE."
        ))),
    }
}

fn repo_json(r: &Repo) -> Value {
    json!({"RepoNamespace": r.namespace, "RepoName": r.name, "RepoType": if r.public {"PUBLIC"} else {"PRIVATE"},
           "Summary": r.summary, "GmtCreate": iso8601(r.creation_unix_ms)})
}

fn create_repo(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (ns, name) = repo_key(p)?;
    ctx.authorize(&[repo_arn(s, &ns, &name)])?;
    check("RepoName", &name)?;
    let n = s.registry.namespaces.get(&ns).ok_or_else(|| {
        CloudError::new(
            "NAMESPACE_NOT_EXIST",
            format!("The namespace {ns} does not exist."),
            404,
        )
    })?;
    let public = visibility(p, n.default_public)?;
    let key = format!("{ns}/{name}");
    if s.registry.repos.contains_key(&key) {
        return Err(CloudError::already_exists(
            "REPO_ALREADY_EXIST",
            format!("The repository {key} already exists."),
        ));
    }
    let r = Repo {
        namespace: ns,
        name,
        public,
        summary: p.opt("Summary").unwrap_or("").to_owned(),
        tags: BTreeMap::new(),
        creation_unix_ms: ctx.now_ms,
    };
    let out = repo_json(&r);
    s.registry.repos.insert(key, r);
    Ok(json!({"Repo": out}))
}

fn get_repo(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let (ns, name) = repo_key(p)?;
    ctx.authorize(&[repo_arn(s, &ns, &name)])?;
    Ok(json!({"Repo": repo_json(repo(s, &ns, &name)?)}))
}

fn list_repo(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[arn(s, "cr", "repository/*")])?;
    let items = s
        .registry
        .repos
        .values()
        .filter(|r| p.opt("RepoNamespace").is_none_or(|n| n == r.namespace))
        .map(repo_json)
        .collect();
    Ok(nested("Repos", "Repo", items))
}

fn update_repo(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (ns, name) = repo_key(p)?;
    ctx.authorize(&[repo_arn(s, &ns, &name)])?;
    let public = visibility(p, repo(s, &ns, &name)?.public)?;
    let r = s
        .registry
        .repos
        .get_mut(&format!("{ns}/{name}"))
        .expect("checked");
    r.public = public;
    if let Some(sum) = p.opt("Summary") {
        r.summary = sum.to_owned();
    }
    Ok(json!({}))
}

fn delete_repo(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (ns, name) = repo_key(p)?;
    ctx.authorize(&[repo_arn(s, &ns, &name)])?;
    repo(s, &ns, &name)?;
    s.registry.repos.remove(&format!("{ns}/{name}"));
    Ok(json!({}))
}

/// ackemu's stand-in for `docker push`: points a tag at a workload program.
fn put_image_tag(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (ns, name) = repo_key(p)?;
    ctx.authorize(&[repo_arn(s, &ns, &name)])?;
    let tag = p.req("Tag")?.to_owned();
    if tag.is_empty()
        || tag.len() > 128
        || !tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        return Err(CloudError::new(
            "INVALID_TAG",
            format!("The tag {tag:?} is not valid: up to 128 of [A-Za-z0-9_.-]."),
            400,
        ));
    }
    let program = p.req("Program")?.to_owned();
    if !PROGRAMS.contains(&program.as_str()) {
        return Err(CloudError::invalid_param(format!(
            "The Program {program:?} is not a built-in workload: one of {}.",
            PROGRAMS.join(", ")
        )));
    }
    let args = p.list("Args", "Arg")?;
    repo(s, &ns, &name)?;
    let digest = sha256_digest(&manifest(&program, &args));
    let r = s
        .registry
        .repos
        .get_mut(&format!("{ns}/{name}"))
        .expect("checked");
    r.tags.insert(
        tag.clone(),
        Image {
            program,
            args,
            digest: digest.clone(),
            update_unix_ms: ctx.now_ms,
        },
    );
    Ok(json!({"Tag": tag, "Digest": digest}))
}

fn list_repo_tag(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let (ns, name) = repo_key(p)?;
    ctx.authorize(&[repo_arn(s, &ns, &name)])?;
    let items = repo(s, &ns, &name)?
        .tags
        .iter()
        .map(|(t, i)| json!({"Tag": t, "Digest": i.digest, "Program": i.program, "Args": i.args, "ImageUpdate": iso8601(i.update_unix_ms)}))
        .collect();
    Ok(nested("Images", "Image", items))
}

fn delete_image_tag(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let (ns, name) = repo_key(p)?;
    ctx.authorize(&[repo_arn(s, &ns, &name)])?;
    let tag = p.req("Tag")?.to_owned();
    repo(s, &ns, &name)?;
    if s.registry
        .repos
        .get_mut(&format!("{ns}/{name}"))
        .expect("checked")
        .tags
        .remove(&tag)
        .is_none()
    {
        return Err(CloudError::new(
            "TAG_NOT_EXIST",
            format!("The tag {tag} of {ns}/{name} does not exist."),
            404,
        ));
    }
    Ok(json!({}))
}

/// Claims of a temporary registry password.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TempLogin {
    pub identity: String,
    pub expires_unix_ms: i64,
}

pub fn encode_temp_password(t: &TempLogin, key: &str) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(t).expect("json"));
    let sig = URL_SAFE_NO_PAD.encode(hmac_sha256(
        format!("cr:{key}").as_bytes(),
        payload.as_bytes(),
    ));
    format!("{payload}.{sig}")
}

pub fn decode_temp_password(pw: &str, key: &str, now_ms: i64) -> Option<TempLogin> {
    let (payload, sig) = pw.split_once('.')?;
    let want = URL_SAFE_NO_PAD.encode(hmac_sha256(
        format!("cr:{key}").as_bytes(),
        payload.as_bytes(),
    ));
    if want != sig {
        return None;
    }
    let t: TempLogin = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (now_ms < t.expires_unix_ms).then_some(t)
}

fn get_authorization_token(ctx: &mut Ctx<'_>, s: &State, _p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[arn(s, "cr", "*")])?;
    let identity = match &ctx.caller.principal {
        Principal::Root => "root".to_owned(),
        Principal::User(u) => format!("user/{u}"),
        Principal::AssumedRole { role, session } => format!("assumed-role/{role}/{session}"),
        Principal::System => "system".to_owned(),
    };
    let t = TempLogin {
        identity,
        expires_unix_ms: ctx.now_ms + TEMP_TOKEN_TTL_MS,
    };
    Ok(json!({"data": {
        "authorizationToken": encode_temp_password(&t, &s.signing_key),
        "tempUserName": TEMP_USER,
        "expireDate": t.expires_unix_ms,
    }}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_digest_is_stable_and_distinct() {
        let a = sha256_digest(&manifest("app", &[]));
        assert_eq!(a, sha256_digest(&manifest("app", &[])));
        assert_ne!(a, sha256_digest(&manifest("toolbox", &[])));
        assert_ne!(a, sha256_digest(&manifest("app", &["--port=1".into()])));
        let m: Value = serde_json::from_slice(&manifest("app", &[])).unwrap();
        assert_eq!(m["annotations"][PROGRAM_ANNOTATION], "app");
        assert_eq!(
            m["config"]["digest"],
            sha256_digest(&config_blob("app", &[]))
        );
    }

    #[test]
    fn temp_password_round_trip() {
        let t = TempLogin {
            identity: "root".into(),
            expires_unix_ms: 100,
        };
        let pw = encode_temp_password(&t, "k");
        assert_eq!(decode_temp_password(&pw, "k", 99), Some(t));
        assert_eq!(decode_temp_password(&pw, "k", 100), None);
        assert_eq!(decode_temp_password(&pw, "other", 0), None);
        assert_eq!(decode_temp_password("x.y", "k", 0), None);
    }
}
