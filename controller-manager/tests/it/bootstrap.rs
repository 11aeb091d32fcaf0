//! Node join trust (S10's cluster side): `cluster-info` signed per
//! bootstrap token, expired tokens cleaned, a node client CSR approved
//! after a SubjectAccessReview and signed by the cluster CA.

use std::collections::BTreeMap;

use ackemu_controller_manager::bootstrap::{
    JWS_KEY_PREFIX, KUBECONFIG_KEY, TOKEN_SECRET_TYPE, verify_detached,
};
use ackemu_controller_manager::certificates::SIGNER_KUBELET_CLIENT;
use ackemu_kube::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use ackemu_kube::api::core::v1::{ConfigMap, Namespace, Secret};
use ackemu_kube::meta::ObjectMeta;

use crate::harness::{Cluster, eventually};

fn token(id: &str, expiration: Option<String>) -> Secret {
    let mut d: BTreeMap<String, String> = [
        ("token-id".to_string(), id.to_string()),
        ("token-secret".to_string(), "0123456789abcdef".to_string()),
        (
            "usage-bootstrap-authentication".to_string(),
            "true".to_string(),
        ),
        ("usage-bootstrap-signing".to_string(), "true".to_string()),
    ]
    .into();
    if let Some(e) = expiration {
        d.insert("expiration".into(), e);
    }
    Secret {
        metadata: ObjectMeta {
            name: Some(format!("bootstrap-token-{id}")),
            namespace: Some("kube-system".into()),
            ..Default::default()
        },
        type_: Some(TOKEN_SECRET_TYPE.into()),
        string_data: Some(d),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_info_signing_token_cleaning_and_csr() -> anyhow::Result<()> {
    let c = Cluster::start_with(
        &[
            "bootstrapsigner",
            "tokencleaner",
            "csrapproving",
            "serviceaccount",
        ],
        |cfg, pki| {
            let read = |f: &str| std::fs::read_to_string(pki.join(f)).expect("the API server's CA");
            cfg.signing = Some((read("ca.crt"), read("ca.key")));
        },
    )
    .await?;
    let nss = c.client.api::<Namespace>(None)?;
    if nss.get("kube-public").await.is_err() {
        nss.create(&Namespace {
            metadata: ObjectMeta {
                name: Some("kube-public".into()),
                ..Default::default()
            },
            ..Default::default()
        })
        .await?;
    }
    let kubeconfig = "apiVersion: v1\nkind: Config\nclusters:\n- name: ''\n  cluster:\n    server: https://192.168.0.41:6443\n";
    let cm = ConfigMap {
        metadata: ObjectMeta {
            name: Some("cluster-info".into()),
            namespace: Some("kube-public".into()),
            ..Default::default()
        },
        data: Some([(KUBECONFIG_KEY.to_string(), kubeconfig.to_string())].into()),
        ..Default::default()
    };
    let cl = c.client.clone();
    let cm2 = cm.clone();
    eventually("cluster-info created", || {
        let (cl, cm) = (cl.clone(), cm2.clone());
        async move {
            Ok(cl
                .api::<ConfigMap>(Some("kube-public"))?
                .create(&cm)
                .await
                .ok()
                .map(|_| ()))
        }
    })
    .await?;
    let secrets = c.client.api::<Secret>(Some("kube-system"))?;
    secrets.create(&token("abcdef", None)).await?;
    secrets
        .create(&token("zzzzzz", Some("2000-01-01T00:00:00Z".into())))
        .await?;

    let sig = eventually("cluster-info signed", || {
        let cl = cl.clone();
        async move {
            let cm = cl
                .api::<ConfigMap>(Some("kube-public"))?
                .get("cluster-info")
                .await?;
            Ok(cm
                .data
                .and_then(|d| d.get(&format!("{JWS_KEY_PREFIX}abcdef")).cloned()))
        }
    })
    .await?;
    assert!(
        verify_detached(kubeconfig, "abcdef", "0123456789abcdef", &sig),
        "a joining node verifies it with its token"
    );
    assert!(
        !verify_detached(kubeconfig, "abcdef", "ffffffffffffffff", &sig),
        "and rejects a wrong token"
    );
    eventually("the expired token cleaned", || {
        let cl = cl.clone();
        async move {
            Ok(cl
                .api::<Secret>(Some("kube-system"))?
                .get("bootstrap-token-zzzzzz")
                .await
                .err()
                .filter(|e| e.is_not_found())
                .map(|_| ()))
        }
    })
    .await?;

    // A node client CSR (the admin asks here; the review allows it).
    let (pem, _key) = ackemu_base::pki::make_csr("system:node:n1", &["system:nodes"])?;
    let csr = CertificateSigningRequest {
        metadata: ObjectMeta {
            name: Some("node-csr-n1".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: k8s_openapi::ByteString(pem.into_bytes()),
            signer_name: SIGNER_KUBELET_CLIENT.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    c.client
        .api::<CertificateSigningRequest>(None)?
        .create(&csr)
        .await?;
    let cert = eventually("the csr approved and signed", || {
        let cl = cl.clone();
        async move {
            let r = cl
                .api::<CertificateSigningRequest>(None)?
                .get("node-csr-n1")
                .await?;
            let st = r.status.unwrap_or_default();
            let approved = st
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Approved" && c.reason.as_deref() == Some("AutoApproved"));
            Ok(st.certificate.filter(|c| approved && !c.0.is_empty()))
        }
    })
    .await?;
    let der = ackemu_base::pki::certs_from_pem(std::str::from_utf8(&cert.0)?)?;
    let id = ackemu_base::pki::identity_of(&der[0])?;
    assert_eq!(
        (id.common_name.as_str(), id.organizations.as_slice()),
        ("system:node:n1", &["system:nodes".to_string()][..])
    );
    Ok(())
}
