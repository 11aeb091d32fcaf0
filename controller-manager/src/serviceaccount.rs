//! ServiceAccounts (`pkg/controller/serviceaccount`): the `default`
//! ServiceAccount in every active namespace; the tokens controller's
//! legacy `kubernetes.io/service-account-token` Secrets (filled with a
//! signed token, `ca.crt` and `namespace`, deleted when their account is
//! gone); and the root CA publisher's `kube-root-ca.crt` ConfigMap in every
//! namespace (`pkg/controller/certificates/rootcacertpublisher`).

use std::collections::BTreeMap;

use ackemu_kube::api::core::v1::{ConfigMap, Namespace, Secret, ServiceAccount};
use ackemu_kube::meta::ObjectMeta;
use k8s_openapi::ByteString;

use crate::util::meta;

pub const DEFAULT_SA: &str = "default";
pub const TOKEN_SECRET_TYPE: &str = "kubernetes.io/service-account-token";
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
pub const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";
/// The issuer of legacy secret-based tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

fn active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("Active")
            == "Active"
}

/// The ServiceAccounts controller: accounts to create in `ns`.
pub fn missing_accounts(ns: &Namespace, accounts: &[&ServiceAccount]) -> Vec<ServiceAccount> {
    if !active(ns) {
        return Vec::new();
    }
    let name = meta::name(&ns.metadata);
    if accounts
        .iter()
        .any(|a| meta::name(&a.metadata) == DEFAULT_SA && meta::namespace(&a.metadata) == name)
    {
        return Vec::new();
    }
    vec![ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SA.into()),
            namespace: Some(name.to_owned()),
            ..Default::default()
        },
        ..Default::default()
    }]
}

/// The root CA publisher: the ConfigMap to create or update in `ns`.
#[derive(Clone, Debug, PartialEq)]
pub enum RootCaAction {
    Create(Box<ConfigMap>),
    Update(Box<ConfigMap>),
}

pub fn root_ca(ns: &Namespace, current: Option<&ConfigMap>, ca_pem: &str) -> Option<RootCaAction> {
    if ns.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let data = BTreeMap::from([("ca.crt".to_string(), ca_pem.to_string())]);
    let ann = BTreeMap::from([(
        "kubernetes.io/description".to_string(),
        ROOT_CA_DESCRIPTION.to_string(),
    )]);
    match current {
        None => Some(RootCaAction::Create(Box::new(ConfigMap {
            metadata: ObjectMeta {
                name: Some(ROOT_CA_CONFIGMAP.into()),
                namespace: ns.metadata.name.clone(),
                annotations: Some(ann),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        }))),
        Some(cm) => {
            let has_ann = meta::annotation(&cm.metadata, "kubernetes.io/description")
                == Some(ROOT_CA_DESCRIPTION);
            if cm.data.as_ref() == Some(&data) && has_ann {
                return None;
            }
            let mut cm = cm.clone();
            cm.data = Some(data);
            cm.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(ann);
            Some(RootCaAction::Update(Box::new(cm)))
        }
    }
}

/// The tokens controller's verdict for one token Secret.
#[derive(Clone, Debug, PartialEq)]
pub enum TokenAction {
    Keep,
    /// The account is gone or was recreated: delete (uid precondition).
    Delete {
        uid: String,
    },
    /// Fill in `token`, `ca.crt` and `namespace` with these claims signed.
    Populate {
        claims: serde_json::Value,
    },
}

/// The claims of a legacy token for `secret` of `sa`.
pub fn legacy_claims(sa: &ServiceAccount, secret: &Secret) -> serde_json::Value {
    let ns = meta::namespace(&sa.metadata);
    let name = meta::name(&sa.metadata);
    serde_json::json!({
        "iss": LEGACY_ISSUER,
        "kubernetes.io/serviceaccount/namespace": ns,
        "kubernetes.io/serviceaccount/secret.name": meta::name(&secret.metadata),
        "kubernetes.io/serviceaccount/service-account.name": name,
        "kubernetes.io/serviceaccount/service-account.uid": meta::uid(&sa.metadata),
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    })
}

/// `syncSecret` of the tokens controller.
pub fn token_secret(secret: &Secret, accounts: &[&ServiceAccount]) -> TokenAction {
    if secret.type_.as_deref() != Some(TOKEN_SECRET_TYPE) {
        return TokenAction::Keep;
    }
    let Some(sa_name) = meta::annotation(&secret.metadata, SA_NAME_ANNOTATION) else {
        return TokenAction::Keep;
    };
    let want_uid = meta::annotation(&secret.metadata, SA_UID_ANNOTATION);
    let sa = accounts.iter().find(|a| {
        meta::name(&a.metadata) == sa_name
            && meta::namespace(&a.metadata) == meta::namespace(&secret.metadata)
    });
    match sa {
        None => TokenAction::Delete {
            uid: meta::uid(&secret.metadata).to_owned(),
        },
        Some(sa) if want_uid.is_some_and(|u| !u.is_empty() && u != meta::uid(&sa.metadata)) => {
            TokenAction::Delete {
                uid: meta::uid(&secret.metadata).to_owned(),
            }
        }
        Some(sa) => {
            let d = secret.data.as_ref();
            let filled = ["token", "ca.crt", "namespace"]
                .iter()
                .all(|k| d.is_some_and(|d| d.get(*k).is_some_and(|v| !v.0.is_empty())));
            if filled {
                TokenAction::Keep
            } else {
                TokenAction::Populate {
                    claims: legacy_claims(sa, secret),
                }
            }
        }
    }
}

/// Signs `claims` with the service-account key (PKCS#8 EC P-256, ES256 —
/// what the API server verifies) and returns the Secret's new data.
pub fn populated_data(
    secret: &Secret,
    claims: &serde_json::Value,
    sa_key_pem: &str,
    ca_pem: &str,
) -> Result<BTreeMap<String, ByteString>, jsonwebtoken::errors::Error> {
    let key = jsonwebtoken::EncodingKey::from_ec_pem(sa_key_pem.as_bytes())?;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        claims,
        &key,
    )?;
    let mut d = secret.data.clone().unwrap_or_default();
    d.insert("token".into(), ByteString(token.into_bytes()));
    d.insert("ca.crt".into(), ByteString(ca_pem.as_bytes().to_vec()));
    d.insert(
        "namespace".into(),
        ByteString(meta::namespace(&secret.metadata).as_bytes().to_vec()),
    );
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::meta as fmeta;
    use ackemu_kube::api::core::v1::NamespaceStatus;

    fn ns(name: &str, phase: &str) -> Namespace {
        Namespace {
            metadata: fmeta("", name),
            spec: None,
            status: Some(NamespaceStatus {
                phase: Some(phase.into()),
                conditions: None,
            }),
        }
    }

    fn sa(ns: &str, name: &str) -> ServiceAccount {
        ServiceAccount {
            metadata: fmeta(ns, name),
            ..Default::default()
        }
    }

    #[test]
    fn default_account_in_active_namespaces() {
        assert_eq!(missing_accounts(&ns("a", "Active"), &[]).len(), 1);
        assert!(missing_accounts(&ns("a", "Active"), &[&sa("a", "default")]).is_empty());
        assert!(missing_accounts(&ns("a", "Terminating"), &[]).is_empty());
        assert_eq!(
            missing_accounts(&ns("a", "Active"), &[&sa("b", "default")]).len(),
            1,
            "another namespace's default does not count"
        );
    }

    #[test]
    fn root_ca_configmap() {
        let n = ns("a", "Active");
        let Some(RootCaAction::Create(cm)) = root_ca(&n, None, "PEM") else {
            panic!()
        };
        assert_eq!(meta::name(&cm.metadata), ROOT_CA_CONFIGMAP);
        assert_eq!(root_ca(&n, Some(&cm), "PEM"), None);
        assert!(matches!(
            root_ca(&n, Some(&cm), "NEW"),
            Some(RootCaAction::Update(_))
        ));
    }

    #[test]
    fn token_secrets() {
        let mut s = Secret {
            metadata: fmeta("a", "default-token-x"),
            type_: Some(TOKEN_SECRET_TYPE.into()),
            ..Default::default()
        };
        s.metadata.annotations = Some(BTreeMap::from([(
            SA_NAME_ANNOTATION.to_string(),
            "default".to_string(),
        )]));
        let account = sa("a", "default");
        let TokenAction::Populate { claims } = token_secret(&s, &[&account]) else {
            panic!()
        };
        assert_eq!(claims["sub"], "system:serviceaccount:a:default");
        assert_eq!(
            claims["kubernetes.io/serviceaccount/service-account.uid"],
            "uid-default"
        );
        assert_eq!(
            token_secret(&s, &[]),
            TokenAction::Delete {
                uid: "uid-default-token-x".into()
            }
        );
        s.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(SA_UID_ANNOTATION.into(), "old".into());
        assert!(
            matches!(token_secret(&s, &[&account]), TokenAction::Delete { .. }),
            "recreated account"
        );
        // Signing with an EC key yields a three-part JWT.
        let key = rcgen::KeyPair::generate().unwrap();
        let d = populated_data(&s, &claims, &key.serialize_pem(), "CA").unwrap();
        assert_eq!(
            String::from_utf8(d["token"].0.clone())
                .unwrap()
                .split('.')
                .count(),
            3
        );
        assert_eq!(d["namespace"].0, b"a");
    }
}
