//! The real kubectl (oldest and newest installed versions) against the API
//! server on a real etcd.

use std::time::Duration;

use ackemu_base::pki::{self, Ca};
use anyhow::Context as _;
use base64::Engine as _;
use tokio::io::AsyncBufReadExt as _;

use crate::harness::{Backend, Cluster, eventually, kubectl_bin};

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: registry.cn-hangzhou.aliyuncs.com/kube-easy/app:latest
        command: [app]
        ports:
        - containerPort: 2580
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  clusterIP: 172.19.0.20
  ports:
  - port: 80
    targetPort: 2580
"#;

async fn basics(version: &str, backend: Backend) -> anyhow::Result<()> {
    let c = Cluster::start_on(backend, |_| {}).await?;
    let k = c.kubectl(version);

    let v = k.ok(&["version", "-o", "json"]).await?;
    let v: serde_json::Value = serde_json::from_str(&v)?;
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.33.1");

    let versions = k.ok(&["api-versions"]).await?;
    for gv in [
        "v1",
        "apps/v1",
        "rbac.authorization.k8s.io/v1",
        "coordination.k8s.io/v1",
        "apiregistration.k8s.io/v1",
    ] {
        assert!(
            versions.lines().any(|l| l == gv),
            "{gv} missing from {versions}"
        );
    }
    let resources = k.ok(&["api-resources"]).await?;
    let deploy = resources
        .lines()
        .find(|l| l.starts_with("deployments"))
        .context("deployments listed")?;
    assert!(
        deploy.split_whitespace().collect::<Vec<_>>()
            == ["deployments", "deploy", "apps/v1", "true", "Deployment"],
        "{deploy}"
    );

    let applied = k.ok_stdin(&["apply", "-f", "-"], MANIFEST).await?;
    assert!(applied.contains("deployment.apps/web created"), "{applied}");
    assert!(applied.contains("service/web created"), "{applied}");
    let keys = c.etcd.keys("/registry/")?;
    assert!(
        keys.contains(&"/registry/deployments/default/web".to_owned()),
        "{keys:?}"
    );
    assert!(
        keys.contains(&"/registry/services/specs/default/web".to_owned()),
        "{keys:?}"
    );
    // Apply again: unchanged.
    let again = k.ok_stdin(&["apply", "-f", "-"], MANIFEST).await?;
    assert!(again.contains("deployment.apps/web unchanged"), "{again}");
    // Apply a change: a three-way strategic merge patch.
    let changed = k
        .ok_stdin(
            &["apply", "-f", "-"],
            &MANIFEST.replace("replicas: 2", "replicas: 4"),
        )
        .await?;
    assert!(
        changed.contains("deployment.apps/web configured"),
        "{changed}"
    );
    let replicas = k
        .ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
        .await?;
    assert_eq!(replicas, "4");

    let plain = k.ok(&["get", "deploy"]).await?;
    let header: Vec<&str> = plain
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    assert!(
        plain.lines().nth(1).unwrap_or("").starts_with("web "),
        "{plain}"
    );
    let wide = k.ok(&["get", "deploy", "-o", "wide"]).await?;
    assert!(
        wide.lines().next().unwrap_or("").contains("SELECTOR"),
        "{wide}"
    );
    assert!(wide.contains("app=web"), "{wide}");
    let svc = k.ok(&["get", "svc", "web"]).await?;
    assert!(
        svc.contains("172.19.0.20") && svc.contains("80/TCP"),
        "{svc}"
    );
    let kube = k
        .ok(&[
            "get",
            "svc",
            "kubernetes",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .await?;
    assert_eq!(kube, "172.19.0.1");
    k.ok(&["create", "service", "nodeport", "np", "--tcp=80:2580"])
        .await?;
    let np = k
        .ok(&[
            "get",
            "svc",
            "np",
            "-o",
            "jsonpath={.spec.clusterIP} {.spec.ports[0].nodePort}",
        ])
        .await?;
    let (ip, port) = np.split_once(' ').context("ip and port")?;
    assert!(
        ip.starts_with("172.19.") && ip != "172.19.0.1" && ip != "172.19.0.20",
        "{np}"
    );
    let port: u16 = port.parse()?;
    assert!((30000..=32767).contains(&port), "{np}");
    let dup = k
        .fails(&[
            "create",
            "service",
            "clusterip",
            "dup",
            "--tcp=80:80",
            "--clusterip=172.19.0.20",
        ])
        .await?;
    assert!(
        dup.contains("failed to allocate IP 172.19.0.20: provided IP is already allocated"),
        "{dup}"
    );
    let yaml = k.ok(&["get", "deploy", "web", "-o", "yaml"]).await?;
    assert!(
        yaml.contains("kind: Deployment")
            && yaml.contains("resourceVersion:")
            && yaml.contains("uid:"),
        "{yaml}"
    );
    let raw = k
        .ok(&["get", "--raw", "/api/v1/namespaces/default/services/web"])
        .await?;
    let raw: serde_json::Value = serde_json::from_str(&raw)?;
    assert_eq!(raw["spec"]["ports"][0]["targetPort"], 2580);
    let describe = k.ok(&["describe", "deploy", "web"]).await?;
    assert!(
        describe.contains("Name:") && describe.contains("web") && describe.contains("Replicas:"),
        "{describe}"
    );

    let scaled = k.ok(&["scale", "deploy", "web", "--replicas=3"]).await?;
    assert!(scaled.contains("deployment.apps/web scaled"), "{scaled}");
    assert_eq!(
        k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"])
            .await?,
        "3"
    );
    assert_eq!(
        k.ok(&[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.metadata.generation}"
        ])
        .await?,
        "3"
    );

    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"metadata":{"labels":{"tier":"fe"}}}"#,
    ])
    .await?;
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"paused":true}}"#,
    ])
    .await?;
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":1}]"#,
    ])
    .await?;
    let got = k.ok(&["get", "deploy", "web", "-o", "json"]).await?;
    let got: serde_json::Value = serde_json::from_str(&got)?;
    assert_eq!(got["metadata"]["labels"]["tier"], "fe");
    assert_eq!(got["spec"]["paused"], true);
    assert_eq!(got["spec"]["replicas"], 1);
    let selected = k
        .ok(&["get", "deploy", "-l", "tier=fe", "-o", "name"])
        .await?;
    assert_eq!(selected.trim(), "deployment.apps/web");
    let none = k
        .ok(&["get", "deploy", "-l", "tier in (be)", "-o", "name"])
        .await?;
    assert_eq!(none.trim(), "");

    assert_eq!(
        k.ok(&["auth", "can-i", "create", "pods"]).await?.trim(),
        "yes"
    );

    // Deletion with each propagation policy (no garbage collector runs
    // here, so Orphan/Foreground leave the finalizer for it).
    k.ok(&["create", "deployment", "orphaned", "--image=app"])
        .await?;
    k.ok(&["create", "deployment", "fg", "--image=app"]).await?;
    k.ok(&[
        "delete",
        "deploy",
        "orphaned",
        "--cascade=orphan",
        "--wait=false",
    ])
    .await?;
    k.ok(&[
        "delete",
        "deploy",
        "fg",
        "--cascade=foreground",
        "--wait=false",
    ])
    .await?;
    let fins = k
        .ok(&[
            "get",
            "deploy",
            "orphaned",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ])
        .await?;
    assert!(fins.contains("orphan"), "{fins}");
    let fins = k
        .ok(&[
            "get",
            "deploy",
            "fg",
            "-o",
            "jsonpath={.metadata.finalizers} {.metadata.deletionTimestamp}",
        ])
        .await?;
    assert!(
        fins.contains("foregroundDeletion") && fins.contains('T'),
        "{fins}"
    );
    // The garbage collector's part, done by hand: the object goes when the finalizer does.
    k.ok(&[
        "patch",
        "deploy",
        "fg",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ])
    .await?;
    let gone = k.fails(&["get", "deploy", "fg"]).await?;
    assert!(gone.contains("deployments.apps \"fg\" not found"), "{gone}");
    let deleted = k.ok(&["delete", "deploy", "web"]).await?;
    assert!(
        deleted.contains("deployment.apps \"web\" deleted"),
        "{deleted}"
    );
    let gone = k.fails(&["get", "deploy", "web"]).await?;
    assert!(
        gone.contains("Error from server (NotFound): deployments.apps \"web\" not found"),
        "{gone}"
    );

    // Namespace lifecycle: Terminating until the namespace controller finalizes.
    k.ok(&["create", "namespace", "tobedeletedb"]).await?;
    k.ok(&["delete", "namespace", "tobedeletedb", "--wait=false"])
        .await?;
    let ns = k.ok(&["get", "ns", "tobedeletedb"]).await?;
    assert!(ns.contains("Terminating"), "{ns}");
    let refused = k
        .fails(&["create", "configmap", "x", "-n", "tobedeletedb"])
        .await?;
    assert!(
        refused.contains(
            "unable to create new content in namespace tobedeletedb because it is being terminated"
        ),
        "{refused}"
    );
    // The namespace controller's last step: PUT /finalize with no finalizers.
    let ns_json = k.ok(&["get", "ns", "tobedeletedb", "-o", "json"]).await?;
    let mut ns_obj: serde_json::Value = serde_json::from_str(&ns_json)?;
    ns_obj["spec"]["finalizers"] = serde_json::json!([]);
    let path = c.dir.path().join("finalize.json");
    std::fs::write(&path, ns_obj.to_string())?;
    let path = path.to_str().context("path")?.to_owned();
    k.ok(&[
        "replace",
        "--raw",
        "/api/v1/namespaces/tobedeletedb/finalize",
        "-f",
        &path,
    ])
    .await?;
    let gone = k.fails(&["get", "ns", "tobedeletedb"]).await?;
    assert!(
        gone.contains("namespaces \"tobedeletedb\" not found"),
        "{gone}"
    );
    Ok(())
}

#[tokio::test]
async fn kubectl_1_33_basics() -> anyhow::Result<()> {
    basics("1.33", Backend::Etcd).await
}

#[tokio::test]
async fn kubectl_1_27_basics() -> anyhow::Result<()> {
    basics("1.27", Backend::Etcd).await
}

#[tokio::test]
async fn kubectl_1_33_basics_on_ackemu_store() -> anyhow::Result<()> {
    basics("1.33", Backend::Store).await
}

#[tokio::test]
async fn kubectl_watch_sees_changes() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let k = c.kubectl("1.33");
    k.ok(&["create", "configmap", "before"]).await?;
    let mut child = tokio::process::Command::new(kubectl_bin("1.33"))
        .arg("--kubeconfig")
        .arg(c.kubeconfig())
        .args(["get", "configmaps", "-w"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().context("stdout")?).lines();
    let first = lines.next_line().await?.unwrap_or_default();
    assert!(first.starts_with("NAME"), "{first}");
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("before")) {
        seen.push(lines.next_line().await?.context("watch ended")?);
    }
    k.ok(&["create", "configmap", "after", "--from-literal=a=b"])
        .await?;
    let line = c
        .env
        .clock
        .timeout(Duration::from_secs(30), async {
            loop {
                match lines.next_line().await {
                    Ok(Some(l)) if l.starts_with("after") => return Some(l),
                    Ok(Some(_)) => continue,
                    _ => return None,
                }
            }
        })
        .await?
        .context("watch line for the new configmap")?;
    assert!(line.split_whitespace().nth(1) == Some("1"), "{line}");
    Ok(())
}

/// The seed's user flow: a key and CSR for user `jiang` in group `dev`, a
/// CertificateSigningRequest approved with kubectl, a kubeconfig context,
/// and a Role allowing get/watch/list of pods in `default`.
#[tokio::test]
async fn seed_user_flow_jiang() -> anyhow::Result<()> {
    seed_user_flow(Backend::Etcd).await
}

#[tokio::test]
async fn seed_user_flow_jiang_on_ackemu_store() -> anyhow::Result<()> {
    seed_user_flow(Backend::Store).await
}

async fn seed_user_flow(backend: Backend) -> anyhow::Result<()> {
    let c = Cluster::start_on(backend, |_| {}).await?;
    let admin = c.kubectl("1.33");
    let (csr_pem, key_pem) = pki::make_csr("jiang", &["dev"])?;
    let csr = serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "jiang"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(csr_pem.as_bytes()),
            "signerName": "kubernetes.io/kube-apiserver-client",
            "expirationSeconds": 86400,
            "usages": ["client auth"]
        }
    });
    admin
        .ok_stdin(&["create", "-f", "-"], &csr.to_string())
        .await?;
    let pending = admin.ok(&["get", "csr", "jiang"]).await?;
    assert!(
        pending.contains("Pending") && pending.contains("kubernetes-admin"),
        "{pending}"
    );
    let approved = admin.ok(&["certificate", "approve", "jiang"]).await?;
    assert!(
        approved.contains("certificatesigningrequest.certificates.k8s.io/jiang approved"),
        "{approved}"
    );
    // The signer's part (a controller-manager job): sign with the cluster CA
    // and write status.certificate through /status.
    let ca = Ca::from_pem(
        &std::fs::read_to_string(c.dir.path().join("pki/ca.crt"))?,
        &std::fs::read_to_string(c.dir.path().join("pki/ca.key"))?,
    )?;
    let cert = ca.sign_csr(
        &csr_pem,
        pki::Usage::Client,
        Duration::from_secs(86400),
        &c.env.clock,
    )?;
    let status = serde_json::json!({"status": {"certificate": base64::engine::general_purpose::STANDARD.encode(cert.as_bytes())}});
    admin
        .ok(&[
            "patch",
            "csr",
            "jiang",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ])
        .await?;
    let issued = admin.ok(&["get", "csr", "jiang"]).await?;
    assert!(issued.contains("Approved,Issued"), "{issued}");
    let b64cert = admin
        .ok(&[
            "get",
            "csr",
            "jiang",
            "-o",
            "jsonpath={.status.certificate}",
        ])
        .await?;
    let cert_pem =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64cert.trim())?)?;

    let jiang_cfg = c.dir.path().join("jiang.kubeconfig");
    ackemu_apiserver::write_kubeconfig(
        &jiang_cfg,
        &format!("https://{}", c.server.addr),
        &c.server.ca_pem,
        "jiang",
        pki::IssuedCert { cert_pem, key_pem },
    )?;
    let jiang = admin.with_kubeconfig(&jiang_cfg);
    let denied = jiang.fails(&["get", "pods"]).await?;
    assert!(
        denied.contains("pods is forbidden: User \"jiang\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""),
        "{denied}"
    );
    let role = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pod-reader
  namespace: default
rules:
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "watch", "list"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: read-pods
  namespace: default
subjects:
- kind: User
  name: jiang
  apiGroup: rbac.authorization.k8s.io
roleRef:
  kind: Role
  name: pod-reader
  apiGroup: rbac.authorization.k8s.io
"#;
    admin.ok_stdin(&["apply", "-f", "-"], role).await?;
    let pods = eventually("jiang may list pods", || {
        let jiang = &jiang;
        async move {
            let out = jiang.run(&["get", "pods"]).await?;
            Ok(out.ok.then_some(out.stdout + &out.stderr))
        }
    })
    .await?;
    assert!(
        pods.contains("No resources found in default namespace."),
        "{pods}"
    );
    let denied = jiang.fails(&["get", "pods", "-n", "kube-system"]).await?;
    assert!(
        denied.contains("Error from server (Forbidden): pods is forbidden: User \"jiang\" cannot list resource \"pods\" in API group \"\" in the namespace \"kube-system\""),
        "{denied}"
    );
    let denied = jiang.fails(&["get", "services"]).await?;
    assert!(
        denied.contains("services is forbidden: User \"jiang\" cannot list resource \"services\""),
        "{denied}"
    );
    let denied = jiang.fails(&["create", "configmap", "x"]).await?;
    assert!(
        denied.contains(
            "configmaps is forbidden: User \"jiang\" cannot create resource \"configmaps\""
        ),
        "{denied}"
    );
    assert_eq!(
        jiang.ok(&["auth", "can-i", "list", "pods"]).await?.trim(),
        "yes"
    );
    let no = jiang.run(&["auth", "can-i", "delete", "pods"]).await?;
    assert_eq!(no.stdout.trim(), "no");
    let whoami = jiang
        .ok(&["auth", "whoami", "-o", "jsonpath={.status.userInfo.groups}"])
        .await?;
    assert!(
        whoami.contains("dev") && whoami.contains("system:authenticated"),
        "{whoami}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_statuses() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let k = c.kubectl("1.33");
    let bad_name = k.fails(&["create", "configmap", "Bad_Name"]).await?;
    assert!(
        bad_name.contains(
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""
        ),
        "{bad_name}"
    );
    let raw404 = k
        .fails(&["get", "--raw", "/apis/nosuch.group/v1/things"])
        .await?;
    assert!(
        raw404.contains("the server could not find the requested resource"),
        "{raw404}"
    );
    let sel = k
        .fails(&["get", "pods", "--field-selector", "spec.containers=x"])
        .await?;
    assert!(
        sel.contains("field label not supported: spec.containers"),
        "{sel}"
    );
    let sel = k.fails(&["get", "pods", "-l", "a in b"]).await?;
    assert!(sel.contains("unable to parse requirement"), "{sel}");
    k.ok(&["create", "configmap", "c", "--from-literal=a=1"])
        .await?;
    let cm = k.ok(&["get", "configmap", "c", "-o", "json"]).await?;
    k.ok_stdin(
        &["replace", "-f", "-"],
        &cm.replace("\"a\": \"1\"", "\"a\": \"2\""),
    )
    .await?;
    let stale = k
        .run_stdin(
            &["replace", "-f", "-"],
            Some(&cm.replace("\"a\": \"1\"", "\"a\": \"3\"")),
        )
        .await?;
    assert!(!stale.ok);
    assert!(
        stale.stderr.contains("Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"),
        "{}",
        stale.stderr
    );
    let typo = k
        .run_stdin(
            &["apply", "-f", "-"],
            Some(&MANIFEST.replace("replicas: 2", "replcas: 2")),
        )
        .await?;
    assert!(!typo.ok);
    assert!(
        typo.stderr.contains("Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replcas\""),
        "{}",
        typo.stderr
    );
    let malformed = k
        .run_stdin(
            &["create", "-f", "-"],
            Some("{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": "),
        )
        .await?;
    assert!(!malformed.ok);
    Ok(())
}

fn token_kubeconfig(c: &Cluster, name: &str, token: &str) -> anyhow::Result<std::path::PathBuf> {
    let path = c.dir.path().join(format!("{name}.kubeconfig"));
    let spec = pki::kubeconfig::Spec {
        cluster_name: "ackemu".to_owned(),
        server: format!("https://{}", c.server.addr),
        ca_pem: c.server.ca_pem.clone(),
        user_name: name.to_owned(),
        client_cert: None,
        token: Some(token.to_owned()),
        namespace: None,
    };
    pki::kubeconfig::write(&path, &spec)?;
    Ok(path)
}

#[tokio::test]
async fn service_account_and_bootstrap_tokens() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let admin = c.kubectl("1.33");
    admin.ok(&["create", "serviceaccount", "app"]).await?;
    let token = admin
        .ok(&["create", "token", "app", "--duration=1h"])
        .await?;
    let sa = admin.with_kubeconfig(&token_kubeconfig(&c, "app", token.trim())?);
    let who = sa
        .ok(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .await?;
    assert_eq!(who, "system:serviceaccount:default:app");
    let denied = sa.fails(&["get", "pods"]).await?;
    assert!(
        denied.contains("User \"system:serviceaccount:default:app\" cannot list resource \"pods\""),
        "{denied}"
    );
    admin
        .ok(&[
            "create",
            "rolebinding",
            "app-view",
            "--clusterrole=cluster-admin",
            "--serviceaccount=default:app",
        ])
        .await?;
    eventually("the service account may list pods", || {
        let sa = &sa;
        async move { Ok(sa.run(&["get", "pods"]).await?.ok.then_some(())) }
    })
    .await?;
    // Deleting the ServiceAccount invalidates its tokens.
    admin.ok(&["delete", "serviceaccount", "app"]).await?;
    let gone = sa.fails(&["get", "pods"]).await?;
    assert!(gone.contains("Unauthorized"), "{gone}");

    // A bootstrap token backed by its Secret.
    let secret = r#"{"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": "bootstrap-token-abcdef", "namespace": "kube-system"},
        "stringData": {}, "data": {
            "token-id": "YWJjZGVm", "token-secret": "MDEyMzQ1Njc4OWFiY2RlZg==",
            "usage-bootstrap-authentication": "dHJ1ZQ=="}}"#;
    admin.ok_stdin(&["create", "-f", "-"], secret).await?;
    let boot = admin.with_kubeconfig(&token_kubeconfig(&c, "boot", "abcdef.0123456789abcdef")?);
    let who = boot
        .ok(&[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ])
        .await?;
    assert!(
        who.starts_with("system:bootstrap:abcdef") && who.contains("system:bootstrappers"),
        "{who}"
    );
    let bad = admin.with_kubeconfig(&token_kubeconfig(&c, "bad", "abcdef.0123456789abcdee")?);
    let err = bad.fails(&["get", "pods"]).await?;
    assert!(err.contains("Unauthorized"), "{err}");
    Ok(())
}

#[tokio::test]
async fn custom_resources_are_served_from_their_definition() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let k = c.kubectl("1.33");
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gateways.networking.istio.io
spec:
  group: networking.istio.io
  scope: Namespaced
  names: {plural: gateways, singular: gateway, kind: Gateway, shortNames: [gw], categories: [istio-io]}
  versions:
  - name: v1alpha3
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    additionalPrinterColumns:
    - {name: Selector, type: string, jsonPath: .spec.selector.istio}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
"#;
    k.ok_stdin(&["apply", "-f", "-"], crd).await?;
    let gw = r#"
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: ingress, namespace: default}
spec:
  selector: {istio: ingressgateway}
"#;
    eventually("the CRD's resource to be served", || {
        let k = &k;
        async move {
            Ok(k.run_stdin(&["apply", "-f", "-"], Some(gw))
                .await?
                .ok
                .then_some(()))
        }
    })
    .await?;
    let table = k.ok(&["get", "gw"]).await?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "SELECTOR", "AGE"]);
    assert!(
        table.contains("ingress") && table.contains("ingressgateway"),
        "{table}"
    );
    let keys = c.etcd.keys("/registry/networking.istio.io/")?;
    assert_eq!(
        keys,
        ["/registry/networking.istio.io/gateways/default/ingress"]
    );
    // Custom resources take merge patches, not strategic ones.
    k.ok(&[
        "patch",
        "gw",
        "ingress",
        "--type=merge",
        "-p",
        r#"{"spec":{"servers":[]}}"#,
    ])
    .await?;
    let smp = k
        .fails(&["patch", "gw", "ingress", "-p", r#"{"spec":{"servers":[]}}"#])
        .await?;
    assert!(
        smp.contains("UnsupportedMediaType")
            || smp.contains("415")
            || smp.contains("unknown format"),
        "{smp}"
    );
    k.ok(&["delete", "crd", "gateways.networking.istio.io"])
        .await?;
    let gone = k
        .fails(&[
            "get",
            "--raw",
            "/apis/networking.istio.io/v1alpha3/namespaces/default/gateways",
        ])
        .await?;
    assert!(
        gone.contains("NotFound") || gone.contains("could not find"),
        "{gone}"
    );
    Ok(())
}

#[tokio::test]
async fn pod_admission_and_the_node_authorizer() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let admin = c.kubectl("1.33");
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app"},
        "spec": {"containers": [{"name": "app", "image": "registry.cn-hangzhou.aliyuncs.com/kube-easy/app:latest"}]}}"#;
    // No default ServiceAccount yet (the serviceaccount controller makes it).
    let refused = admin.run_stdin(&["create", "-f", "-"], Some(pod)).await?;
    assert!(
        refused.stderr.contains("pods \"app\" is forbidden: error looking up service account default/default: serviceaccount \"default\" not found"),
        "{}",
        refused.stderr
    );
    let sa = r#"{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}, "imagePullSecrets": [{"name": "acr-credential"}]}"#;
    admin.ok_stdin(&["create", "-f", "-"], sa).await?;
    admin.ok_stdin(&["create", "-f", "-"], pod).await?;
    let got: serde_json::Value =
        serde_json::from_str(&admin.ok(&["get", "pod", "app", "-o", "json"]).await?)?;
    assert_eq!(got["spec"]["serviceAccountName"], "default");
    assert_eq!(got["spec"]["imagePullSecrets"][0]["name"], "acr-credential");
    assert_eq!(
        got["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    let tolerations = got["spec"]["tolerations"].to_string();
    assert!(
        tolerations.contains("node.kubernetes.io/not-ready") && tolerations.contains("300"),
        "{tolerations}"
    );
    let table = admin.ok(&["get", "pods"]).await?;
    assert!(
        table
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()[..3]
            == ["app", "0/1", "Pending"],
        "{table}"
    );

    // A kubelet identity: the Node authorizer and NodeRestriction.
    let ca = Ca::from_pem(
        &std::fs::read_to_string(c.dir.path().join("pki/ca.crt"))?,
        &std::fs::read_to_string(c.dir.path().join("pki/ca.key"))?,
    )?;
    let cert = ca.issue(
        &pki::CertSpec::client(
            "system:node:n1",
            &["system:nodes"],
            Duration::from_secs(3600),
        ),
        &c.env.clock,
    )?;
    let cfg = c.dir.path().join("n1.kubeconfig");
    ackemu_apiserver::write_kubeconfig(
        &cfg,
        &format!("https://{}", c.server.addr),
        &c.server.ca_pem,
        "system:node:n1",
        cert,
    )?;
    let kubelet = admin.with_kubeconfig(&cfg);
    let node = r#"{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}"#;
    kubelet.ok_stdin(&["create", "-f", "-"], node).await?;
    let other = kubelet
        .run_stdin(&["create", "-f", "-"], Some(&node.replace("n1", "n2")))
        .await?;
    assert!(
        other
            .stderr
            .contains("node \"n1\" is not allowed to modify node \"n2\""),
        "{}",
        other.stderr
    );
    kubelet.ok(&["get", "pods", "-A"]).await?;
    let secrets = kubelet.fails(&["get", "secrets", "-n", "default"]).await?;
    assert!(
        secrets.contains("User \"system:node:n1\" cannot list resource \"secrets\""),
        "{secrets}"
    );
    // Bind the pod to n1; its status now belongs to n1's kubelet.
    let binding = r#"{"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "app"}, "target": {"kind": "Node", "name": "n1"}}"#;
    let status_path = c.dir.path().join("binding.json");
    std::fs::write(&status_path, binding)?;
    admin
        .ok(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/app/binding",
            "-f",
            status_path.to_str().context("path")?,
        ])
        .await?;
    let rebind = admin
        .fails(&[
            "create",
            "--raw",
            "/api/v1/namespaces/default/pods/app/binding",
            "-f",
            status_path.to_str().context("path")?,
        ])
        .await?;
    assert!(
        rebind.contains("pod app is already assigned to node \"n1\""),
        "{rebind}"
    );
    kubelet
        .ok(&[
            "patch",
            "pod",
            "app",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","podIP":"172.16.0.5"}}"#,
        ])
        .await?;
    let wide = admin.ok(&["get", "pod", "app", "-o", "wide"]).await?;
    assert!(
        wide.contains("Running") && wide.contains("172.16.0.5") && wide.contains("n1"),
        "{wide}"
    );
    // Graceful deletion: a scheduled pod is Terminating until its kubelet
    // confirms with a zero grace period.
    admin.ok(&["delete", "pod", "app", "--wait=false"]).await?;
    let terminating = admin.ok(&["get", "pod", "app"]).await?;
    assert!(terminating.contains("Terminating"), "{terminating}");
    let grace = admin
        .ok(&[
            "get",
            "pod",
            "app",
            "-o",
            "jsonpath={.metadata.deletionGracePeriodSeconds}",
        ])
        .await?;
    assert_eq!(grace, "30");
    kubelet
        .ok(&["delete", "pod", "app", "--grace-period=0", "--force"])
        .await?;
    let gone = admin.fails(&["get", "pod", "app"]).await?;
    assert!(gone.contains("pods \"app\" not found"), "{gone}");
    Ok(())
}
