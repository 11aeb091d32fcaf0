//! RAM: users, AccessKeys, roles (with trust policies) and policies.

use std::collections::{BTreeMap, BTreeSet};

use rand::Rng;
use serde_json::{Value, json};

use super::{check_name, ram_arn};
use crate::cloud::{ActionDef, Ctx, Handler, iso8601, nested};
use crate::error::{CloudError, CloudResult};
use crate::model::{AccessKey, RamPolicy, RamRole, RamUser, State};
use crate::params::Params;
use crate::ram::PolicyDocument;

pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        name: "CreateUser",
        handler: Handler::Write(create_user),
    },
    ActionDef {
        name: "GetUser",
        handler: Handler::Read(get_user),
    },
    ActionDef {
        name: "ListUsers",
        handler: Handler::Read(list_users),
    },
    ActionDef {
        name: "DeleteUser",
        handler: Handler::Write(delete_user),
    },
    ActionDef {
        name: "CreateAccessKey",
        handler: Handler::Write(create_access_key),
    },
    ActionDef {
        name: "ListAccessKeys",
        handler: Handler::Read(list_access_keys),
    },
    ActionDef {
        name: "UpdateAccessKey",
        handler: Handler::Write(update_access_key),
    },
    ActionDef {
        name: "DeleteAccessKey",
        handler: Handler::Write(delete_access_key),
    },
    ActionDef {
        name: "CreateRole",
        handler: Handler::Write(create_role),
    },
    ActionDef {
        name: "GetRole",
        handler: Handler::Read(get_role),
    },
    ActionDef {
        name: "ListRoles",
        handler: Handler::Read(list_roles),
    },
    ActionDef {
        name: "UpdateRole",
        handler: Handler::Write(update_role),
    },
    ActionDef {
        name: "DeleteRole",
        handler: Handler::Write(delete_role),
    },
    ActionDef {
        name: "CreatePolicy",
        handler: Handler::Write(create_policy),
    },
    ActionDef {
        name: "GetPolicy",
        handler: Handler::Read(get_policy),
    },
    ActionDef {
        name: "ListPolicies",
        handler: Handler::Read(list_policies),
    },
    ActionDef {
        name: "CreatePolicyVersion",
        handler: Handler::Write(create_policy_version),
    },
    ActionDef {
        name: "DeletePolicy",
        handler: Handler::Write(delete_policy),
    },
    ActionDef {
        name: "AttachPolicyToUser",
        handler: Handler::Write(attach_to_user),
    },
    ActionDef {
        name: "DetachPolicyFromUser",
        handler: Handler::Write(detach_from_user),
    },
    ActionDef {
        name: "AttachPolicyToRole",
        handler: Handler::Write(attach_to_role),
    },
    ActionDef {
        name: "DetachPolicyFromRole",
        handler: Handler::Write(detach_from_role),
    },
    ActionDef {
        name: "ListPoliciesForUser",
        handler: Handler::Read(list_policies_for_user),
    },
    ActionDef {
        name: "ListPoliciesForRole",
        handler: Handler::Read(list_policies_for_role),
    },
];

fn not_exist(kind: &str, name: &str) -> CloudError {
    CloudError::new(
        format!("EntityNotExist.{kind}"),
        format!("The {} does not exist: {name}.", kind.to_lowercase()),
        404,
    )
}

fn already(kind: &str, name: &str) -> CloudError {
    CloudError::already_exists(
        &format!("EntityAlreadyExists.{kind}"),
        format!("The {} already exists: {name}.", kind.to_lowercase()),
    )
}

fn digits(ctx: &mut Ctx<'_>, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'0' + ctx.rng.random_range(0..10u8)))
        .collect()
}

/// A new AccessKey pair (`LTAI…` id, 30-character secret).
pub fn new_access_key(rng: &mut impl Rng, user: Option<String>, now_ms: i64) -> AccessKey {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
            .collect()
    };
    AccessKey {
        id: format!("LTAI{}", pick(20)),
        secret: pick(30),
        user,
        active: true,
        creation_unix_ms: now_ms,
    }
}

fn user_json(u: &RamUser) -> Value {
    json!({"UserName": u.name, "UserId": u.id, "CreateDate": iso8601(u.creation_unix_ms)})
}

fn create_user(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let name = p.req("UserName")?.to_owned();
    ctx.authorize(&[ram_arn(s, &format!("user/{name}"))])?;
    check_name("UserName", &name)?;
    if s.users.contains_key(&name) {
        return Err(already("User", &name));
    }
    let u = RamUser {
        name: name.clone(),
        id: digits(ctx, 16),
        attached_policies: BTreeSet::new(),
        creation_unix_ms: ctx.now_ms,
    };
    let out = user_json(&u);
    s.users.insert(name, u);
    Ok(json!({"User": out}))
}

fn user<'a>(s: &'a State, name: &str) -> CloudResult<&'a RamUser> {
    s.users.get(name).ok_or_else(|| not_exist("User", name))
}

fn get_user(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let name = p.req("UserName")?;
    ctx.authorize(&[ram_arn(s, &format!("user/{name}"))])?;
    Ok(json!({"User": user_json(user(s, name)?)}))
}

fn list_users(ctx: &mut Ctx<'_>, s: &State, _p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[ram_arn(s, "user/*")])?;
    Ok(nested(
        "Users",
        "User",
        s.users.values().map(user_json).collect(),
    ))
}

fn delete_user(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let name = p.req("UserName")?.to_owned();
    ctx.authorize(&[ram_arn(s, &format!("user/{name}"))])?;
    let u = user(s, &name)?;
    if !u.attached_policies.is_empty()
        || s.access_keys
            .values()
            .any(|k| k.user.as_deref() == Some(&name))
    {
        return Err(CloudError::new(
            "DeleteConflict.User.Policy",
            format!(
                "The user {name} still has attached policies or AccessKeys; detach and delete them first."
            ),
            409,
        ));
    }
    s.users.remove(&name);
    Ok(json!({}))
}

fn key_owner(ctx: &Ctx<'_>, p: &Params) -> CloudResult<Option<String>> {
    Ok(match p.opt("UserName") {
        Some(u) => Some(u.to_owned()),
        None => match &ctx.caller.principal {
            crate::cloud::Principal::User(u) => Some(u.clone()),
            _ => None,
        },
    })
}

fn create_access_key(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let owner = key_owner(ctx, p)?;
    ctx.authorize(&[ram_arn(
        s,
        &format!("user/{}", owner.as_deref().unwrap_or("*")),
    )])?;
    let Some(owner) = owner else {
        return Err(CloudError::missing_param("UserName"));
    };
    user(s, &owner)?;
    if s.access_keys
        .values()
        .filter(|k| k.user.as_deref() == Some(&owner))
        .count()
        >= 2
    {
        return Err(CloudError::quota(
            "LimitExceeded.User.AccessKey",
            format!("The user {owner} already has 2 AccessKeys."),
        ));
    }
    let key = new_access_key(ctx.rng, Some(owner), ctx.now_ms);
    let out = json!({"AccessKeyId": key.id, "AccessKeySecret": key.secret, "Status": "Active", "CreateDate": iso8601(key.creation_unix_ms)});
    s.access_keys.insert(key.id.clone(), key);
    Ok(json!({"AccessKey": out}))
}

fn list_access_keys(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let owner = key_owner(ctx, p)?;
    ctx.authorize(&[ram_arn(
        s,
        &format!("user/{}", owner.as_deref().unwrap_or("*")),
    )])?;
    let items = s
        .access_keys
        .values()
        .filter(|k| k.user == owner)
        .map(|k| json!({"AccessKeyId": k.id, "Status": if k.active {"Active"} else {"Inactive"}, "CreateDate": iso8601(k.creation_unix_ms)}))
        .collect();
    Ok(nested("AccessKeys", "AccessKey", items))
}

fn owned_key<'a>(
    s: &'a mut State,
    id: &str,
    owner: &Option<String>,
) -> CloudResult<&'a mut AccessKey> {
    match s.access_keys.get_mut(id) {
        Some(k) if k.user == *owner => Ok(k),
        _ => Err(not_exist("User.AccessKey", id)),
    }
}

fn update_access_key(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let owner = key_owner(ctx, p)?;
    ctx.authorize(&[ram_arn(
        s,
        &format!("user/{}", owner.as_deref().unwrap_or("*")),
    )])?;
    let id = p.req("UserAccessKeyId")?.to_owned();
    let active = match p.req("Status")? {
        "Active" => true,
        "Inactive" => false,
        other => {
            return Err(CloudError::invalid_param(format!(
                "The specified Status {other:?} is not Active or Inactive."
            )));
        }
    };
    owned_key(s, &id, &owner)?.active = active;
    Ok(json!({}))
}

fn delete_access_key(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let owner = key_owner(ctx, p)?;
    ctx.authorize(&[ram_arn(
        s,
        &format!("user/{}", owner.as_deref().unwrap_or("*")),
    )])?;
    let id = p.req("UserAccessKeyId")?.to_owned();
    owned_key(s, &id, &owner)?;
    s.access_keys.remove(&id);
    Ok(json!({}))
}

fn role_json(s: &State, r: &RamRole) -> Value {
    json!({
        "RoleName": r.name, "RoleId": r.id, "Arn": ram_arn(s, &format!("role/{}", r.name.to_lowercase())),
        "AssumeRolePolicyDocument": r.trust_policy, "MaxSessionDuration": r.max_session_duration_s,
        "CreateDate": iso8601(r.creation_unix_ms),
    })
}

fn role<'a>(s: &'a State, name: &str) -> CloudResult<&'a RamRole> {
    s.roles.get(name).ok_or_else(|| not_exist("Role", name))
}

fn max_session(p: &Params) -> CloudResult<u64> {
    let v = p.opt_u64("MaxSessionDuration")?.unwrap_or(3600);
    if !(3600..=43200).contains(&v) {
        return Err(CloudError::invalid_param(format!(
            "The specified MaxSessionDuration {v} is not between 3600 and 43200 seconds."
        )));
    }
    Ok(v)
}

fn create_role(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let name = p.req("RoleName")?.to_owned();
    ctx.authorize(&[ram_arn(s, &format!("role/{}", name.to_lowercase()))])?;
    check_name("RoleName", &name)?;
    let trust = p.req("AssumeRolePolicyDocument")?.to_owned();
    PolicyDocument::parse(&trust)?;
    if s.roles.contains_key(&name) {
        return Err(already("Role", &name));
    }
    let r = RamRole {
        name: name.clone(),
        id: digits(ctx, 19),
        trust_policy: trust,
        attached_policies: BTreeSet::new(),
        max_session_duration_s: max_session(p)?,
        creation_unix_ms: ctx.now_ms,
    };
    let out = role_json(s, &r);
    s.roles.insert(name, r);
    Ok(json!({"Role": out}))
}

fn get_role(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let name = p.req("RoleName")?;
    ctx.authorize(&[ram_arn(s, &format!("role/{}", name.to_lowercase()))])?;
    Ok(json!({"Role": role_json(s, role(s, name)?)}))
}

fn list_roles(ctx: &mut Ctx<'_>, s: &State, _p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[ram_arn(s, "role/*")])?;
    Ok(nested(
        "Roles",
        "Role",
        s.roles.values().map(|r| role_json(s, r)).collect(),
    ))
}

fn update_role(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let name = p.req("RoleName")?.to_owned();
    ctx.authorize(&[ram_arn(s, &format!("role/{}", name.to_lowercase()))])?;
    role(s, &name)?;
    let trust = p.opt("NewAssumeRolePolicyDocument").map(str::to_owned);
    if let Some(t) = &trust {
        PolicyDocument::parse(t)?;
    }
    let max = p
        .opt("NewMaxSessionDuration")
        .map(|_| {
            max_session(&Params::new(BTreeMap::from([(
                "MaxSessionDuration".into(),
                p.opt("NewMaxSessionDuration")
                    .unwrap_or_default()
                    .to_owned(),
            )])))
        })
        .transpose()?;
    let r = s.roles.get_mut(&name).expect("checked above");
    if let Some(t) = trust {
        r.trust_policy = t;
    }
    if let Some(m) = max {
        r.max_session_duration_s = m;
    }
    let r = r.clone();
    Ok(json!({"Role": role_json(s, &r)}))
}

fn delete_role(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let name = p.req("RoleName")?.to_owned();
    ctx.authorize(&[ram_arn(s, &format!("role/{}", name.to_lowercase()))])?;
    let r = role(s, &name)?;
    if !r.attached_policies.is_empty() {
        return Err(CloudError::new(
            "DeleteConflict.Role.Policy",
            format!("The role {name} still has attached policies."),
            409,
        ));
    }
    if let Some(i) = s
        .instances
        .values()
        .find(|i| i.ram_role.as_deref() == Some(&name))
    {
        return Err(CloudError::new(
            "DeleteConflict.Role.Instance",
            format!("The role {name} is attached to instance {}.", i.id),
            409,
        ));
    }
    s.roles.remove(&name);
    Ok(json!({}))
}

fn policy_json(p: &RamPolicy) -> Value {
    json!({
        "PolicyName": p.name, "PolicyType": if p.system { "System" } else { "Custom" }, "Description": p.description,
        "DefaultVersion": p.default_version, "CreateDate": iso8601(p.creation_unix_ms),
    })
}

fn policy_arn(s: &State, name: &str) -> String {
    ram_arn(s, &format!("policy/{name}"))
}

fn policy<'a>(s: &'a State, name: &str, p: &Params) -> CloudResult<&'a RamPolicy> {
    let pol = s
        .policies
        .get(name)
        .ok_or_else(|| not_exist("Policy", name))?;
    if let Some(t) = p.opt("PolicyType")
        && (t == "System") != pol.system
    {
        return Err(not_exist("Policy", &format!("{name} of type {t}")));
    }
    Ok(pol)
}

fn create_policy(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let name = p.req("PolicyName")?.to_owned();
    ctx.authorize(&[policy_arn(s, &name)])?;
    check_name("PolicyName", &name)?;
    let text = p.req("PolicyDocument")?.to_owned();
    let document = PolicyDocument::parse(&text)?;
    if s.policies.contains_key(&name) {
        return Err(already("Policy", &name));
    }
    let pol = RamPolicy {
        name: name.clone(),
        system: false,
        description: p.opt("Description").unwrap_or("").to_owned(),
        versions: BTreeMap::from([("v1".to_owned(), text)]),
        default_version: "v1".into(),
        next_version: 2,
        document,
        creation_unix_ms: ctx.now_ms,
    };
    let out = policy_json(&pol);
    s.policies.insert(name, pol);
    Ok(json!({"Policy": out}))
}

fn get_policy(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let name = p.req("PolicyName")?;
    ctx.authorize(&[policy_arn(s, name)])?;
    let pol = policy(s, name, p)?;
    Ok(json!({
        "Policy": policy_json(pol),
        "DefaultPolicyVersion": {"VersionId": pol.default_version, "IsDefaultVersion": true, "PolicyDocument": pol.versions[&pol.default_version]},
    }))
}

fn list_policies(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    ctx.authorize(&[policy_arn(s, "*")])?;
    let items = s
        .policies
        .values()
        .filter(|x| {
            p.opt("PolicyType")
                .is_none_or(|t| (t == "System") == x.system)
        })
        .map(policy_json)
        .collect();
    Ok(nested("Policies", "Policy", items))
}

/// How an operator edits a policy: a new version, usually made default.
fn create_policy_version(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let name = p.req("PolicyName")?.to_owned();
    ctx.authorize(&[policy_arn(s, &name)])?;
    let text = p.req("PolicyDocument")?.to_owned();
    let document = PolicyDocument::parse(&text)?;
    let set_default = p.opt_bool("SetAsDefault")?.unwrap_or(false);
    let pol = policy(s, &name, p)?;
    if pol.system {
        return Err(CloudError::new(
            "NoPermission.Policy",
            format!("The system policy {name} cannot be changed."),
            403,
        ));
    }
    let pol = s.policies.get_mut(&name).expect("checked above");
    if pol.versions.len() >= 5 {
        let oldest = pol
            .versions
            .keys()
            .find(|v| **v != pol.default_version)
            .cloned();
        match oldest {
            Some(v)
                if p.opt("RotateStrategy")
                    == Some("DeleteOldestNonDefaultVersionWhenLimitExceeded") =>
            {
                pol.versions.remove(&v);
            }
            _ => {
                return Err(CloudError::quota(
                    "LimitExceeded.Policy.Version",
                    format!("The policy {name} already has 5 versions."),
                ));
            }
        }
    }
    let vid = format!("v{}", pol.next_version);
    pol.next_version += 1;
    pol.versions.insert(vid.clone(), text.clone());
    if set_default {
        pol.default_version = vid.clone();
        pol.document = document;
    }
    Ok(
        json!({"PolicyVersion": {"VersionId": vid, "IsDefaultVersion": set_default, "PolicyDocument": text}}),
    )
}

fn delete_policy(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let name = p.req("PolicyName")?.to_owned();
    ctx.authorize(&[policy_arn(s, &name)])?;
    let pol = policy(s, &name, p)?;
    if pol.system {
        return Err(CloudError::new(
            "NoPermission.Policy",
            format!("The system policy {name} cannot be deleted."),
            403,
        ));
    }
    let attached = s
        .users
        .values()
        .any(|u| u.attached_policies.contains(&name))
        || s.roles
            .values()
            .any(|r| r.attached_policies.contains(&name));
    if attached {
        return Err(CloudError::new(
            "DeleteConflict.Policy.User",
            format!("The policy {name} is still attached."),
            409,
        ));
    }
    s.policies.remove(&name);
    Ok(json!({}))
}

fn attach_common(ctx: &mut Ctx<'_>, s: &State, p: &Params, target: &str) -> CloudResult<String> {
    let name = p.req("PolicyName")?.to_owned();
    ctx.authorize(&[policy_arn(s, &name), target.to_owned()])?;
    p.req("PolicyType")?;
    policy(s, &name, p)?;
    Ok(name)
}

fn attach_to_user(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let u = p.req("UserName")?.to_owned();
    let name = attach_common(ctx, s, p, &ram_arn(s, &format!("user/{u}")))?;
    user(s, &u)?;
    if !s
        .users
        .get_mut(&u)
        .expect("checked")
        .attached_policies
        .insert(name.clone())
    {
        return Err(already("User.Policy", &format!("{name} on {u}")));
    }
    Ok(json!({}))
}

fn detach_from_user(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let u = p.req("UserName")?.to_owned();
    let name = attach_common(ctx, s, p, &ram_arn(s, &format!("user/{u}")))?;
    user(s, &u)?;
    if !s
        .users
        .get_mut(&u)
        .expect("checked")
        .attached_policies
        .remove(&name)
    {
        return Err(not_exist("User.Policy", &format!("{name} on {u}")));
    }
    Ok(json!({}))
}

fn attach_to_role(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let r = p.req("RoleName")?.to_owned();
    let name = attach_common(
        ctx,
        s,
        p,
        &ram_arn(s, &format!("role/{}", r.to_lowercase())),
    )?;
    role(s, &r)?;
    if !s
        .roles
        .get_mut(&r)
        .expect("checked")
        .attached_policies
        .insert(name.clone())
    {
        return Err(already("Role.Policy", &format!("{name} on {r}")));
    }
    Ok(json!({}))
}

fn detach_from_role(ctx: &mut Ctx<'_>, s: &mut State, p: &Params) -> CloudResult<Value> {
    let r = p.req("RoleName")?.to_owned();
    let name = attach_common(
        ctx,
        s,
        p,
        &ram_arn(s, &format!("role/{}", r.to_lowercase())),
    )?;
    role(s, &r)?;
    if !s
        .roles
        .get_mut(&r)
        .expect("checked")
        .attached_policies
        .remove(&name)
    {
        return Err(not_exist("Role.Policy", &format!("{name} on {r}")));
    }
    Ok(json!({}))
}

fn attached_json(s: &State, names: &BTreeSet<String>) -> Value {
    nested(
        "Policies",
        "Policy",
        names
            .iter()
            .filter_map(|n| s.policies.get(n))
            .map(policy_json)
            .collect(),
    )
}

fn list_policies_for_user(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let u = p.req("UserName")?;
    ctx.authorize(&[ram_arn(s, &format!("user/{u}"))])?;
    Ok(attached_json(s, &user(s, u)?.attached_policies))
}

fn list_policies_for_role(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let r = p.req("RoleName")?;
    ctx.authorize(&[ram_arn(s, &format!("role/{}", r.to_lowercase()))])?;
    Ok(attached_json(s, &role(s, r)?.attached_policies))
}
