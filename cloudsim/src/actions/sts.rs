//! STS: AssumeRole (temporary credentials expiring in cluster time) and
//! GetCallerIdentity. The metadata service issues instance-role credentials
//! through [`issue`].

use rand::Rng;
use serde_json::{Value, json};

use super::ram_arn;
use crate::auth::{self, StsClaims};
use crate::cloud::{ActionDef, Ctx, Handler, Principal, iso8601};
use crate::error::{CloudError, CloudResult};
use crate::model::State;
use crate::params::Params;
use crate::ram::glob_match;

pub const ACTIONS: &[ActionDef] = &[
    ActionDef {
        name: "AssumeRole",
        handler: Handler::Read(assume_role),
    },
    ActionDef {
        name: "GetCallerIdentity",
        handler: Handler::Read(get_caller_identity),
    },
];

/// Who asks to assume a role, as trust policies name principals.
pub enum TrustPrincipal<'a> {
    /// `acs:ram::<account>:root` or `acs:ram::<account>:user/<name>`.
    Ram(String),
    /// A cloud service such as `ecs.aliyuncs.com`.
    Service(&'a str),
}

fn as_list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether the role's trust policy lets `who` assume it.
pub fn trusts(trust_policy: &str, account: &str, who: &TrustPrincipal<'_>) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(trust_policy) else {
        return false;
    };
    let statements = match v.get("Statement") {
        Some(Value::Array(a)) => a.clone(),
        Some(o @ Value::Object(_)) => vec![o.clone()],
        _ => return false,
    };
    let mut allowed = false;
    for st in statements {
        let actions = as_list(st.get("Action"));
        if !actions
            .iter()
            .any(|a| glob_match(a, "sts:AssumeRole", true))
        {
            continue;
        }
        let principal = st.get("Principal");
        let hit =
            match who {
                TrustPrincipal::Ram(arn) => as_list(principal.and_then(|p| p.get("RAM")))
                    .iter()
                    .any(|p| {
                        p == "*"
                            || p == arn
                            || (p == &format!("acs:ram::{account}:root")
                                && arn.starts_with(&format!("acs:ram::{account}:")))
                    }),
                TrustPrincipal::Service(svc) => as_list(principal.and_then(|p| p.get("Service")))
                    .iter()
                    .any(|p| p == svc),
            };
        if hit {
            match st.get("Effect").and_then(Value::as_str) {
                Some("Deny") => return false,
                Some("Allow") => allowed = true,
                _ => {}
            }
        }
    }
    allowed
}

/// Issues temporary credentials for `role` valid for `duration_s` from
/// `now_ms` (cluster wall time).
pub fn issue(
    s: &State,
    rng: &mut impl Rng,
    role: &str,
    session: &str,
    duration_s: u64,
    now_ms: i64,
) -> (StsClaims, String) {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
            .collect()
    };
    let claims = StsClaims {
        access_key_id: format!("STS.{}", pick(24)),
        access_key_secret: pick(40),
        account_id: s.account_id.clone(),
        role_name: role.to_owned(),
        session_name: session.to_owned(),
        issued_unix_ms: now_ms,
        expires_unix_ms: now_ms + (duration_s as i64) * 1000,
    };
    let token = auth::encode_token(&claims, &s.signing_key);
    (claims, token)
}

pub fn credentials_json(claims: &StsClaims, token: &str) -> Value {
    json!({
        "AccessKeyId": claims.access_key_id, "AccessKeySecret": claims.access_key_secret,
        "SecurityToken": token, "Expiration": iso8601(claims.expires_unix_ms),
    })
}

/// `acs:ram::<account>:role/<name>` → role name.
fn role_from_arn<'a>(s: &State, arn: &'a str) -> CloudResult<&'a str> {
    let prefix = format!("acs:ram::{}:role/", s.account_id);
    arn.strip_prefix(&prefix)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            CloudError::new(
                "InvalidParameter.RoleArn",
                format!("The parameter RoleArn {arn:?} is not {prefix}<role name>."),
                400,
            )
        })
}

fn assume_role(ctx: &mut Ctx<'_>, s: &State, p: &Params) -> CloudResult<Value> {
    let arn = p.req("RoleArn")?.to_owned();
    ctx.authorize(std::slice::from_ref(&arn))?;
    let role_lower = role_from_arn(s, &arn)?.to_lowercase();
    let role = s
        .roles
        .values()
        .find(|r| r.name.to_lowercase() == role_lower)
        .ok_or_else(|| {
            CloudError::new(
                "EntityNotExist.Role",
                format!("The role does not exist: {arn}."),
                404,
            )
        })?;
    let session = p.req("RoleSessionName")?.to_owned();
    if !(2..=64).contains(&session.len())
        || !session
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
    {
        return Err(CloudError::new(
            "InvalidParameter.RoleSessionName",
            format!(
                "The parameter RoleSessionName {session:?} must be 2 to 64 characters of letters, digits and ._@-."
            ),
            400,
        ));
    }
    let duration = p.opt_u64("DurationSeconds")?.unwrap_or(3600);
    if !(900..=role.max_session_duration_s).contains(&duration) {
        return Err(CloudError::new(
            "InvalidParameter.DurationSeconds",
            format!(
                "The parameter DurationSeconds {duration} is not between 900 and {} seconds.",
                role.max_session_duration_s
            ),
            400,
        ));
    }
    let who = match &ctx.caller.principal {
        Principal::Root => format!("acs:ram::{}:root", s.account_id),
        Principal::User(u) => format!("acs:ram::{}:user/{u}", s.account_id),
        Principal::AssumedRole { role, session } => {
            format!("acs:ram::{}:assumed-role/{role}/{session}", s.account_id)
        }
        Principal::System => String::new(),
    };
    if !trusts(
        &role.trust_policy,
        &s.account_id,
        &TrustPrincipal::Ram(who.clone()),
    ) {
        return Err(CloudError::new(
            "NoPermission",
            format!(
                "You are not authorized to assume role {arn}: its trust policy does not name {who}."
            ),
            403,
        ));
    }
    let (claims, token) = issue(s, ctx.rng, &role.name, &session, duration, ctx.now_ms);
    Ok(json!({
        "Credentials": credentials_json(&claims, &token),
        "AssumedRoleUser": {
            "Arn": format!("acs:ram::{}:assumed-role/{}/{}", s.account_id, role.name.to_lowercase(), session),
            "AssumedRoleId": format!("{}:{}", role.id, session),
        },
    }))
}

fn get_caller_identity(ctx: &mut Ctx<'_>, s: &State, _p: &Params) -> CloudResult<Value> {
    // Everyone may ask who they are.
    ctx.mark_public();
    let (kind, arn) = match &ctx.caller.principal {
        Principal::Root => ("Account", format!("acs:ram::{}:root", s.account_id)),
        Principal::User(u) => ("RAMUser", ram_arn(s, &format!("user/{u}"))),
        Principal::AssumedRole { role, session } => (
            "AssumedRoleUser",
            format!(
                "acs:ram::{}:assumed-role/{}/{}",
                s.account_id,
                role.to_lowercase(),
                session
            ),
        ),
        Principal::System => ("System", "system".to_owned()),
    };
    Ok(
        json!({"AccountId": s.account_id, "IdentityType": kind, "Arn": arn, "AccessKeyId": ctx.caller.access_key_id}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trust_policy_table() {
        let ecs = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"Service":["ecs.aliyuncs.com"]}}]}"#;
        let account = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":["acs:ram::123:root"]}}]}"#;
        let one_user = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"RAM":"acs:ram::123:user/alice"}}]}"#;
        let cases = [
            (ecs, TrustPrincipal::Service("ecs.aliyuncs.com"), true),
            (ecs, TrustPrincipal::Service("fc.aliyuncs.com"), false),
            (ecs, TrustPrincipal::Ram("acs:ram::123:root".into()), false),
            (
                account,
                TrustPrincipal::Ram("acs:ram::123:user/bob".into()),
                true,
            ),
            (
                account,
                TrustPrincipal::Ram("acs:ram::999:user/bob".into()),
                false,
            ),
            (
                one_user,
                TrustPrincipal::Ram("acs:ram::123:user/alice".into()),
                true,
            ),
            (
                one_user,
                TrustPrincipal::Ram("acs:ram::123:user/bob".into()),
                false,
            ),
            (
                "not json",
                TrustPrincipal::Service("ecs.aliyuncs.com"),
                false,
            ),
        ];
        for (i, (doc, who, want)) in cases.into_iter().enumerate() {
            assert_eq!(trusts(doc, "123", &who), want, "case {i}");
        }
    }
}
