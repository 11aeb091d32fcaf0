//! RAM policy documents and their evaluation — a pure core.
//!
//! A request is a (action, resources) pair such as
//! (`vpc:DescribeVpcs`, [`acs:vpc:cn-hangzhou:1234:vpc/*`]). It is allowed
//! when, over every statement of every policy the caller holds, some `Allow`
//! statement matches the action and each resource, and no `Deny` statement
//! matches the action and any resource: an explicit Deny wins, the default is
//! deny. Actions match case-insensitively with `*`/`?` wildcards
//! (`vpc:*`, `ecs:Describe*`); resources match case-sensitively.

use serde_json::Value;

use crate::error::CloudError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement of a policy document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Statement {
    pub effect: Effect,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// A parsed, validated policy document.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyDocument {
    pub version: String,
    pub statements: Vec<Statement>,
}

/// Outcome of evaluating a request against a set of policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No statement allowed the request.
    ImplicitDeny,
    /// A `Deny` statement matched: (policy name, statement index).
    ExplicitDeny {
        policy: String,
        statement: usize,
    },
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

fn string_or_list(v: &Value, what: &str) -> Result<Vec<String>, CloudError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_owned).ok_or_else(|| {
                    CloudError::malformed_policy(format!("{what} must hold strings"))
                })
            })
            .collect(),
        Value::Array(_) => Err(CloudError::malformed_policy(format!(
            "{what} must not be empty"
        ))),
        _ => Err(CloudError::malformed_policy(format!(
            "{what} must be a string or a list of strings"
        ))),
    }
}

fn validate_action(a: &str) -> Result<(), CloudError> {
    if a == "*" {
        return Ok(());
    }
    match a.split_once(':') {
        Some((svc, name)) if !svc.is_empty() && !name.is_empty() && !name.contains(':') => Ok(()),
        _ => Err(CloudError::malformed_policy(format!(
            "action {a:?} is not of the form <service>:<action>"
        ))),
    }
}

fn validate_resource(r: &str) -> Result<(), CloudError> {
    if r == "*" {
        return Ok(());
    }
    let parts: Vec<&str> = r.splitn(5, ':').collect();
    if parts.len() == 5 && parts[0] == "acs" && !parts[1].is_empty() {
        Ok(())
    } else {
        Err(CloudError::malformed_policy(format!(
            "resource {r:?} is not \"*\" or an ARN acs:<service>:<region>:<account>:<resource>"
        )))
    }
}

impl PolicyDocument {
    /// Parses and validates a policy document; every defect is
    /// `MalformedPolicyDocument` naming what is wrong.
    pub fn parse(text: &str) -> Result<PolicyDocument, CloudError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| CloudError::malformed_policy(format!("invalid json: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| CloudError::malformed_policy("document must be a json object"))?;
        for key in obj.keys() {
            if key != "Version" && key != "Statement" {
                return Err(CloudError::malformed_policy(format!(
                    "unknown element {key:?}"
                )));
            }
        }
        let version = match obj.get("Version") {
            Some(Value::String(s)) if s == "1" => s.clone(),
            Some(other) => {
                return Err(CloudError::malformed_policy(format!(
                    "Version must be \"1\", got {other}"
                )));
            }
            None => return Err(CloudError::malformed_policy("missing Version")),
        };
        let raw_statements = match obj.get("Statement") {
            Some(Value::Array(a)) => a.clone(),
            Some(o @ Value::Object(_)) => vec![o.clone()],
            Some(_) => return Err(CloudError::malformed_policy("Statement must be a list")),
            None => return Err(CloudError::malformed_policy("missing Statement")),
        };
        let mut statements = Vec::with_capacity(raw_statements.len());
        for (i, s) in raw_statements.iter().enumerate() {
            let so = s.as_object().ok_or_else(|| {
                CloudError::malformed_policy(format!("statement {i} must be an object"))
            })?;
            for key in so.keys() {
                if !matches!(key.as_str(), "Effect" | "Action" | "Resource" | "Principal") {
                    return Err(CloudError::malformed_policy(format!(
                        "statement {i}: unsupported element {key:?}"
                    )));
                }
            }
            let effect = match so.get("Effect").and_then(Value::as_str) {
                Some("Allow") => Effect::Allow,
                Some("Deny") => Effect::Deny,
                Some(other) => {
                    return Err(CloudError::malformed_policy(format!(
                        "statement {i}: Effect must be Allow or Deny, got {other:?}"
                    )));
                }
                None => {
                    return Err(CloudError::malformed_policy(format!(
                        "statement {i}: missing Effect"
                    )));
                }
            };
            let actions = string_or_list(
                so.get("Action").ok_or_else(|| {
                    CloudError::malformed_policy(format!("statement {i}: missing Action"))
                })?,
                "Action",
            )?;
            for a in &actions {
                validate_action(a)?;
            }
            // Trust policies carry Principal instead of Resource.
            let resources = match so.get("Resource") {
                Some(r) => string_or_list(r, "Resource")?,
                None if so.contains_key("Principal") => vec!["*".to_owned()],
                None => {
                    return Err(CloudError::malformed_policy(format!(
                        "statement {i}: missing Resource"
                    )));
                }
            };
            for r in &resources {
                validate_resource(r)?;
            }
            statements.push(Statement {
                effect,
                actions,
                resources,
            });
        }
        Ok(PolicyDocument {
            version,
            statements,
        })
    }
}

/// Glob match with `*` (any run) and `?` (one char).
pub fn glob_match(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    let norm = |s: &str| -> Vec<char> {
        if case_insensitive {
            s.to_lowercase().chars().collect()
        } else {
            s.chars().collect()
        }
    };
    let p = norm(pattern);
    let t = norm(text);
    // Iterative wildcard matching with single backtrack point.
    let (mut pi, mut ti) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn statement_matches_action(s: &Statement, action: &str) -> bool {
    s.actions.iter().any(|a| glob_match(a, action, true))
}

fn statement_matches_resource(s: &Statement, resource: &str) -> bool {
    s.resources.iter().any(|r| glob_match(r, resource, false))
}

/// Evaluates `action` on `resources` against named policies.
pub fn evaluate<'a>(
    policies: impl IntoIterator<Item = (&'a str, &'a PolicyDocument)>,
    action: &str,
    resources: &[String],
) -> Decision {
    let mut allowed = vec![false; resources.len()];
    for (name, doc) in policies {
        for (si, s) in doc.statements.iter().enumerate() {
            if !statement_matches_action(s, action) {
                continue;
            }
            match s.effect {
                Effect::Deny => {
                    if resources.iter().any(|r| statement_matches_resource(s, r)) {
                        return Decision::ExplicitDeny {
                            policy: name.to_owned(),
                            statement: si,
                        };
                    }
                }
                Effect::Allow => {
                    for (i, r) in resources.iter().enumerate() {
                        if statement_matches_resource(s, r) {
                            allowed[i] = true;
                        }
                    }
                }
            }
        }
    }
    if !resources.is_empty() && allowed.iter().all(|a| *a) {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    }
}

/// Builds a resource ARN `acs:<service>:<region>:<account>:<relative>`.
pub fn arn(service: &str, region: &str, account: &str, relative: &str) -> String {
    format!("acs:{service}:{region}:{account}:{relative}")
}

/// The system policy `AdministratorAccess`.
pub const ADMINISTRATOR_ACCESS: &str =
    r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}"#;

/// The policy the seed's worker role carries for VPC (its `Effect` is what
/// an operator edits in S03).
pub fn worker_vpc_policy(effect: Effect) -> String {
    let e = match effect {
        Effect::Allow => "Allow",
        Effect::Deny => "Deny",
    };
    format!(
        r#"{{"Version":"1","Statement":[{{"Effect":"{e}","Action":["vpc:*"],"Resource":["*"]}}]}}"#
    )
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    fn doc(s: &str) -> PolicyDocument {
        PolicyDocument::parse(s).expect("valid policy")
    }

    #[test]
    fn glob_table() {
        let cases = [
            ("vpc:*", "vpc:DescribeVpcs", true, true),
            ("vpc:*", "ecs:DescribeInstances", true, false),
            ("ecs:Describe*", "ecs:DescribeInstances", true, true),
            ("ecs:Describe*", "ecs:describeinstances", true, true),
            ("ecs:Describe*", "ecs:RunInstances", true, false),
            ("*", "anything", true, true),
            ("ecs:?tartInstance", "ecs:StartInstance", true, true),
            (
                "acs:vpc:*:*:vpc/vpc-abc",
                "acs:vpc:cn-hangzhou:1:vpc/vpc-abc",
                false,
                true,
            ),
            (
                "acs:vpc:*:*:vpc/vpc-abc",
                "acs:vpc:cn-hangzhou:1:vpc/vpc-ABC",
                false,
                false,
            ),
            ("acs:vpc:*:*:vpc/*", "acs:vpc:r:1:vpc/vpc-x", false, true),
            (
                "acs:vpc:*:*:vpc/*",
                "acs:vpc:r:1:vswitch/vsw-x",
                false,
                false,
            ),
            ("a*b*c", "axxbyyc", false, true),
            ("a*b*c", "axxbyy", false, false),
            ("", "", false, true),
        ];
        for (p, t, ci, want) in cases {
            assert_eq!(glob_match(p, t, ci), want, "{p} vs {t}");
        }
    }

    #[test]
    fn malformed_documents_table() {
        let cases = [
            ("not json", "invalid json"),
            (r#"[]"#, "json object"),
            (r#"{"Statement":[]}"#, "missing Version"),
            (r#"{"Version":"2","Statement":[]}"#, "Version must be"),
            (r#"{"Version":"1"}"#, "missing Statement"),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Maybe","Action":"*","Resource":"*"}]}"#,
                "Effect must be",
            ),
            (
                r#"{"Version":"1","Statement":[{"Action":"*","Resource":"*"}]}"#,
                "missing Effect",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Resource":"*"}]}"#,
                "missing Action",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*"}]}"#,
                "missing Resource",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"vpc","Resource":"*"}]}"#,
                "<service>:<action>",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":[],"Resource":"*"}]}"#,
                "must not be empty",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"arn:x"}]}"#,
                "ARN",
            ),
            (
                r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"*","Resource":"*","Condition":{}}]}"#,
                "unsupported element",
            ),
            (
                r#"{"Version":"1","Statement":[],"Extra":1}"#,
                "unknown element",
            ),
        ];
        for (text, want) in cases {
            let err = PolicyDocument::parse(text).expect_err(text);
            assert_eq!(err.code, "MalformedPolicyDocument", "{text}");
            assert!(err.message.contains(want), "{text}: {}", err.message);
        }
    }

    #[test]
    fn parses_single_statement_object_and_principal() {
        let d = doc(
            r#"{"Version":"1","Statement":{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"Service":["ecs.aliyuncs.com"]}}}"#,
        );
        assert_eq!(d.statements.len(), 1);
        assert_eq!(d.statements[0].resources, vec!["*"]);
    }

    #[test]
    fn evaluation_table() {
        let allow_ecs_describe = doc(
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"ecs:Describe*","Resource":"*"}]}"#,
        );
        let deny_one_vpc = doc(
            r#"{"Version":"1","Statement":[{"Effect":"Deny","Action":"vpc:*","Resource":"acs:vpc:*:*:vpc/vpc-secret"},{"Effect":"Allow","Action":"vpc:*","Resource":"*"}]}"#,
        );
        let allow_one_vpc = doc(
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"vpc:DescribeVpcs","Resource":"acs:vpc:*:*:vpc/vpc-a"}]}"#,
        );
        let vpc = |id: &str| vec![arn("vpc", "cn-hangzhou", "1", &format!("vpc/{id}"))];
        let cases: Vec<(&str, Vec<(&str, &PolicyDocument)>, &str, Vec<String>, bool)> = vec![
            (
                "no policies: default deny",
                vec![],
                "ecs:DescribeInstances",
                vec!["*".into()],
                false,
            ),
            (
                "wildcard allow",
                vec![("p", &allow_ecs_describe)],
                "ecs:DescribeInstances",
                vec!["acs:ecs:r:1:instance/i-1".into()],
                true,
            ),
            (
                "wildcard allow other verb",
                vec![("p", &allow_ecs_describe)],
                "ecs:RunInstances",
                vec!["*".into()],
                false,
            ),
            (
                "deny specific vpc",
                vec![("p", &deny_one_vpc)],
                "vpc:DescribeVpcs",
                vpc("vpc-secret"),
                false,
            ),
            (
                "allow other vpc",
                vec![("p", &deny_one_vpc)],
                "vpc:DescribeVpcs",
                vpc("vpc-other"),
                true,
            ),
            (
                "resource-scoped allow hit",
                vec![("p", &allow_one_vpc)],
                "vpc:DescribeVpcs",
                vpc("vpc-a"),
                true,
            ),
            (
                "resource-scoped allow miss",
                vec![("p", &allow_one_vpc)],
                "vpc:DescribeVpcs",
                vpc("vpc-b"),
                false,
            ),
            (
                "all resources must be allowed",
                vec![("p", &allow_one_vpc)],
                "vpc:DescribeVpcs",
                [vpc("vpc-a"), vpc("vpc-b")].concat(),
                false,
            ),
            (
                "no resources is never allowed",
                vec![("p", &allow_ecs_describe)],
                "ecs:DescribeInstances",
                vec![],
                false,
            ),
        ];
        for (name, policies, action, resources, want) in cases {
            let d = evaluate(policies.iter().map(|(n, d)| (*n, *d)), action, &resources);
            assert_eq!(d.is_allowed(), want, "{name}: {d:?}");
        }
    }

    #[test]
    fn explicit_deny_wins_over_any_allow() {
        let admin = doc(ADMINISTRATOR_ACCESS);
        let deny = doc(&worker_vpc_policy(Effect::Deny));
        let d = evaluate(
            [
                ("AdministratorAccess", &admin),
                ("k8sWorkerRolePolicy", &deny),
            ],
            "vpc:DescribeVpcs",
            &["*".into()],
        );
        assert_eq!(
            d,
            Decision::ExplicitDeny {
                policy: "k8sWorkerRolePolicy".into(),
                statement: 0
            }
        );
    }

    /// The seed (S03): the worker role's policy with `vpc:*` set to Deny makes
    /// DescribeVpcs and route-entry actions fail while ECS actions still work;
    /// flipping Effect to Allow restores them at once.
    #[test]
    fn seed_worker_role_vpc_deny_then_allow() {
        let ecs = doc(
            r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["ecs:*"],"Resource":["*"]}]}"#,
        );
        let route_table = vec![arn("vpc", "cn-hangzhou", "1", "routetable/vtb-1")];
        let vpc_actions = [
            "vpc:DescribeVpcs",
            "vpc:DescribeRouteTables",
            "vpc:CreateRouteEntry",
            "vpc:DeleteRouteEntry",
        ];
        let ecs_actions = ["ecs:DescribeInstances", "ecs:DescribeInstanceAttribute"];
        for (effect, vpc_allowed) in [(Effect::Deny, false), (Effect::Allow, true)] {
            let vpc = doc(&worker_vpc_policy(effect));
            let held = [
                ("k8sWorkerRolePolicy-ecs", &ecs),
                ("k8sWorkerRolePolicy-vpc", &vpc),
            ];
            for a in vpc_actions {
                assert_eq!(
                    evaluate(held, a, &route_table).is_allowed(),
                    vpc_allowed,
                    "{a} with {effect:?}"
                );
            }
            for a in ecs_actions {
                assert!(
                    evaluate(held, a, &["acs:ecs:cn-hangzhou:1:instance/i-1".into()]).is_allowed(),
                    "{a}"
                );
            }
        }
    }
}
