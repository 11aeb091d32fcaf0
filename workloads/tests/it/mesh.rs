//! The mesh programs against the real API server: S08 (the mesh CA expires:
//! the webhook call fails through the real kubectl, a restarted Citadel
//! refuses the expired root) and S07 (sidecars cannot resolve Pilot: 503
//! with Istio's text, then 200 once the DNS address answers again).

use std::time::Duration;

use serde_json::json;

use crate::harness::{Cluster, Proc, eventually, free_port, http_get, log_line, spawn_program};

const CRD: &str = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "virtualservices.networking.istio.io"},
  "spec": {"group": "networking.istio.io", "scope": "Namespaced",
           "names": {"plural": "virtualservices", "singular": "virtualservice", "kind": "VirtualService", "shortNames": ["vs"]},
           "versions": [{"name": "v1alpha3", "served": true, "storage": true,
                         "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}"#;

fn vs(name: &str, hosts: &[&str]) -> String {
    json!({"apiVersion": "networking.istio.io/v1alpha3", "kind": "VirtualService",
           "metadata": {"name": name, "namespace": "default"},
           "spec": {"hosts": hosts, "http": [{"route": [{"destination": {"host": "reviews"}}]}]}})
    .to_string()
}

fn apply(c: &Cluster, dir: &std::path::Path, manifest: &str) -> (bool, String) {
    let f = dir.join(format!("m-{}.json", free_port()));
    std::fs::write(&f, manifest).unwrap();
    let o = c.kubectl(&["apply", "-f", f.to_str().unwrap()]);
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s08_mesh_ca_expiry_breaks_the_webhook_and_citadel() -> anyhow::Result<()> {
    let c = Cluster::start().await?;
    let dir = c.dir.path().to_path_buf();
    c.create(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
    )
    .await?;
    // Citadel runs in-cluster with its service account and RBAC.
    c.create("/apis/rbac.authorization.k8s.io/v1/clusterroles", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "istio-citadel-istio-system"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "list", "watch", "update", "delete"]},
                  {"apiGroups": [""], "resources": ["serviceaccounts", "services", "namespaces"], "verbs": ["get", "list", "watch"]}]}))
        .await?;
    c.create("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "istio-citadel-istio-system"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "istio-citadel-istio-system"},
        "subjects": [{"kind": "ServiceAccount", "name": "istio-citadel-service-account", "namespace": "istio-system"}]}))
        .await?;
    let sa = c
        .service_account("istio-system", "istio-citadel-service-account")
        .await?;
    c.create("/api/v1/namespaces/istio-system/serviceaccounts", json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "istio-galley-service-account"}}))
        .await?;
    let citadel_log = dir.join("citadel.log");
    // A short-lived root keeps the test's clock offset below the API
    // server's own one-year client certificates.
    let citadel_args = [
        "citadel",
        "--self-signed-ca-cert-ttl",
        "720h",
        "--workload-cert-check-interval",
        "1s",
    ];
    let citadel = spawn_program(&citadel_args, &sa.env(), &citadel_log)?;
    log_line(&citadel_log, "Citadel has started").await?;
    let first = std::fs::read_to_string(&citadel_log)?;
    assert!(first.contains("\twarn\tNeither --kubeconfig nor --master was specified.  Using the inClusterConfig.  This might not work."), "{first}");
    assert!(
        first.contains("\tinfo\tUse self-signed certificate as the CA certificate"),
        "{first}"
    );
    let ca = c
        .client
        .request(
            "GET",
            "/api/v1/namespaces/istio-system/secrets/istio-ca-secret",
            None,
        )
        .await?;
    assert!(ca["data"]["ca-cert.pem"].is_string() && ca["data"]["ca-key.pem"].is_string());

    // Galley with its Citadel-issued certificate, behind Service istio-galley.
    let gport = free_port();
    c.create("/api/v1/namespaces/istio-system/services", json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istio-galley"}, "spec": {"ports": [{"name": "https-validation", "port": 443, "targetPort": gport}]}}))
        .await?;
    c.create("/api/v1/namespaces/istio-system/endpoints", json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "istio-galley"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https-validation", "port": gport}]}]}))
        .await?;
    let galley_log = dir.join("galley.log");
    let kc = c.kubeconfig.display().to_string();
    let _galley = spawn_program(
        &[
            "galley",
            "--kubeconfig",
            &kc,
            "--bind-address",
            "127.0.0.1",
            "--validation-port",
            &gport.to_string(),
            "--refresh-interval",
            "1s",
        ],
        &[],
        &galley_log,
    )?;
    log_line(&galley_log, "galley validation webhook serving on").await?;
    eventually("the istio-galley webhook configuration", || async {
        Ok(c.client
            .request("GET", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/istio-galley", None)
            .await
            .ok()
            .filter(|v| v["webhooks"][0]["name"] == "pilot.validation.istio.io"))
    })
    .await?;
    c.create(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        serde_json::from_str(CRD)?,
    )
    .await?;

    // The webhook admits valid configuration and denies invalid one.
    let (ok, out) = eventually("a VirtualService to be admitted", || async {
        let (ok, out) = apply(&c, &dir, &vs("reviews", &["reviews"]));
        Ok(ok.then_some((ok, out)))
    })
    .await?;
    assert!(ok, "{out}");
    let (ok, out) = apply(&c, &dir, &vs("bad", &[]));
    assert!(!ok);
    assert!(
        out.contains("admission webhook \"pilot.validation.istio.io\" denied the request: configuration is invalid: virtual service must have at least one host"),
        "{out}"
    );

    // A little over the root's lifetime later (the API server's clock).
    c.set_clock_offset(Duration::from_secs(40 * 86400).as_millis() as i64)
        .await?;
    let (ok, out) = apply(&c, &dir, &vs("ratings", &["ratings"]));
    assert!(!ok);
    // Kubernetes 1.33's wording ("failed calling webhook"; the article's
    // 1.1x API server said "failed calling admission webhook").
    assert!(
        out.contains("failed calling webhook \"pilot.validation.istio.io\""),
        "{out}"
    );
    assert!(
        out.contains("https://istio-galley.istio-system.svc:443/admitpilot?timeout=30s"),
        "{out}"
    );
    assert!(
        out.contains("x509: certificate has expired or is not yet valid"),
        "{out}"
    );

    // Citadel restarted a year later re-reads the expired root and fails.
    drop(citadel);
    let restart_log = dir.join("citadel-restart.log");
    let mut args: Vec<&str> = citadel_args.to_vec();
    args.push("--clock-offset=40d");
    let mut p = spawn_program(&args, &sa.env(), &restart_log)?;
    let st = eventually("the restarted citadel to exit", || {
        let r = p.0.try_wait();
        async move { Ok(r?) }
    })
    .await?;
    assert_eq!(st.code(), Some(255));
    let text = std::fs::read_to_string(&restart_log)?;
    assert!(
        text.contains("\terror\tFailed to create a self-signed Citadel (error: [failed to create CA KeyCertBundle (cannot verify the cert with the provided root chain and cert pool)])"),
        "{text}"
    );

    // The article's heal: delete the secret, restart: a fresh root.
    c.client
        .request(
            "DELETE",
            "/api/v1/namespaces/istio-system/secrets/istio-ca-secret",
            None,
        )
        .await?;
    let healed_log = dir.join("citadel-healed.log");
    let _healed: Proc = spawn_program(&args, &sa.env(), &healed_log)?;
    log_line(&healed_log, "Citadel has started").await?;
    let fresh = c
        .client
        .request(
            "GET",
            "/api/v1/namespaces/istio-system/secrets/istio-ca-secret",
            None,
        )
        .await?;
    assert_ne!(fresh["data"]["ca-cert.pem"], ca["data"]["ca-cert.pem"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s07_sidecar_not_ready_until_pilot_resolves() -> anyhow::Result<()> {
    if std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout != b"0\n")
        .unwrap_or(true)
    {
        println!("skipped: binding a DNS server on port 53 of a loopback address needs root");
        return Ok(());
    }
    let c = Cluster::start().await?;
    let dir = c.dir.path().to_path_buf();
    let kc = c.kubeconfig.display().to_string();
    c.create(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
    )
    .await?;
    // Pilot on loopback, published as a headless Service so its name
    // resolves to an address this host can reach.
    let pport = free_port();
    c.create("/api/v1/namespaces/istio-system/services", json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "istio-pilot"}, "spec": {"clusterIP": "None", "ports": [{"name": "grpc-xds", "port": pport}]}}))
        .await?;
    c.create("/api/v1/namespaces/istio-system/endpoints", json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "istio-pilot"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "grpc-xds", "port": pport}]}]}))
        .await?;
    let pilot_log = dir.join("pilot.log");
    let (dport, mport) = (free_port(), free_port());
    let _pilot = spawn_program(
        &[
            "pilot",
            "--kubeconfig",
            &kc,
            "--grpcAddr",
            &format!("127.0.0.1:{pport}"),
            "--httpAddr",
            &format!("127.0.0.1:{dport}"),
            "--monitoringAddr",
            &format!("127.0.0.1:{mport}"),
            "--long-poll",
            "2s",
        ],
        &[],
        &pilot_log,
    )?;
    log_line(&pilot_log, "pilot discovery on").await?;

    // The pod's resolv.conf names a DNS address nothing serves (kube-dns
    // was recreated with another IP).
    let dns_ip = "127.0.0.77";
    let rc = dir.join("resolv.conf");
    std::fs::write(
        &rc,
        format!(
            "nameserver {dns_ip}\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:1\n"
        ),
    )?;
    let sport = free_port();
    let sidecar_log = dir.join("sidecar.log");
    let env = vec![
        ("ACKEMU_RESOLV_CONF".to_string(), rc.display().to_string()),
        (
            "POD_NAME".to_string(),
            "details-v1-68868454f5-94hzd".to_string(),
        ),
        ("POD_NAMESPACE".to_string(), "default".to_string()),
    ];
    let _sidecar = spawn_program(
        &[
            "sidecar",
            "--discoveryAddress",
            &format!("istio-pilot.istio-system:{pport}"),
            "--statusPort",
            &sport.to_string(),
            "--status-bind-address",
            "127.0.0.1",
            "--admin-address",
            &format!("127.0.0.1:{}", free_port()),
            "--dns-refresh-rate",
            "1s",
        ],
        &env,
        &sidecar_log,
    )?;
    log_line(&sidecar_log, "sidecar status on").await?;
    let url = format!("http://127.0.0.1:{sport}/healthz/ready");
    let want = "Envoy proxy is NOT ready: config not received from Pilot (is Pilot running?): cds updates: 0 successful, 0 rejected; lds updates: 0 successful, 0 rejected";
    let (code, body) = http_get(&url).await?;
    assert_eq!((code, body.as_str()), (503, want));
    log_line(&sidecar_log, &format!("\twarn\t{want}")).await?;

    // The heal: the address in resolv.conf answers again.
    let dns_log = dir.join("dns.log");
    let _dns = spawn_program(
        &[
            "dns",
            "--kubeconfig",
            &kc,
            "--listen",
            &format!("{dns_ip}:53"),
            "--ready-listen",
            "",
            "--health-listen",
            "",
        ],
        &[],
        &dns_log,
    )?;
    log_line(&dns_log, "serving DNS").await?;
    eventually("the sidecar to become ready", || async {
        let (code, _) = http_get(&url).await?;
        Ok((code == 200).then_some(()))
    })
    .await?;
    // Pilot counted what it pushed.
    let (_, m) = http_get(&format!("http://127.0.0.1:{mport}/metrics")).await?;
    assert!(
        m.contains("pilot_xds_pushes{type=\"cds\"} ")
            && !m.contains("pilot_xds_pushes{type=\"cds\"} 0"),
        "{m}"
    );
    let (_, adsz) = http_get(&format!("http://127.0.0.1:{dport}/debug/adsz")).await?;
    assert!(
        adsz.contains(
            "sidecar~127.0.0.1~details-v1-68868454f5-94hzd.default~default.svc.cluster.local"
        ),
        "{adsz}"
    );
    Ok(())
}
