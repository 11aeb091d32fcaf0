//! Cluster DNS fed from the real API server: records appear and disappear
//! as Services and Endpoints do, checked with the real `dig`.

use serde_json::json;

use crate::harness::{Cluster, dig, eventually, free_port, http_get, log_line, spawn_program};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_answers_from_services_and_endpoints_in_the_api() -> anyhow::Result<()> {
    if std::process::Command::new("dig")
        .arg("-v")
        .output()
        .is_err()
    {
        println!("skipped: dig not installed (dnsutils)");
        return Ok(());
    }
    let c = Cluster::start().await?;
    let (dns_port, ready_port, health_port) = (free_port(), free_port(), free_port());
    let log = c.dir.path().join("dns.log");
    let kc = c.kubeconfig.display().to_string();
    let _dns = spawn_program(
        &[
            "dns",
            "--kubeconfig",
            &kc,
            "--listen",
            &format!("127.0.0.1:{dns_port}"),
            "--ready-listen",
            &format!("127.0.0.1:{ready_port}"),
            "--health-listen",
            &format!("127.0.0.1:{health_port}"),
            "--cluster-domain",
            "cluster.local",
        ],
        &[],
        &log,
    )?;
    log_line(&log, "serving DNS for cluster.local").await?;
    let (code, body) = http_get(&format!("http://127.0.0.1:{health_port}/health")).await?;
    assert_eq!((code, body.as_str()), (200, "OK"));
    eventually("dns /ready", || async {
        let (code, body) = http_get(&format!("http://127.0.0.1:{ready_port}/ready")).await?;
        Ok((code == 200 && body == "OK").then_some(()))
    })
    .await?;

    // The API server's own Service is there from the start.
    let kubernetes = c
        .client
        .request(
            "GET",
            "/api/v1/namespaces/default/services/kubernetes",
            None,
        )
        .await?;
    let kip = kubernetes["spec"]["clusterIP"].as_str().unwrap().to_owned();
    let out = dig(
        dns_port,
        &["+short", "kubernetes.default.svc.cluster.local"],
    )
    .await?;
    assert_eq!(out.trim(), kip);

    c.create(
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "istio-system"}}),
    )
    .await?;
    let svc = c
        .create(
            "/api/v1/namespaces/istio-system/services",
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "istio-pilot"},
                   "spec": {"ports": [{"name": "grpc-xds", "port": 15010, "protocol": "TCP"}]}}),
        )
        .await?;
    let pilot_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_owned();
    let name = "istio-pilot.istio-system.svc.cluster.local";
    let out = eventually("the new Service's A record", || async {
        let out = dig(dns_port, &["+short", name]).await?;
        Ok((!out.trim().is_empty()).then_some(out))
    })
    .await?;
    assert_eq!(out.trim(), pilot_ip);
    // Over TCP too.
    assert_eq!(
        dig(dns_port, &["+tcp", "+short", name]).await?.trim(),
        pilot_ip
    );
    // SRV for the named port, PTR for the ClusterIP.
    assert_eq!(
        dig(
            dns_port,
            &["+short", "SRV", &format!("_grpc-xds._tcp.{name}")]
        )
        .await?
        .trim(),
        format!("0 100 15010 {name}.")
    );
    assert_eq!(
        dig(dns_port, &["+short", "-x", &pilot_ip]).await?.trim(),
        format!("{name}.")
    );

    // A headless Service answers with its endpoints' addresses.
    c.create(
        "/api/v1/namespaces/default/services",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"},
               "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}}),
    )
    .await?;
    c.create(
        "/api/v1/namespaces/default/endpoints",
        json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "db"},
               "subsets": [{"addresses": [{"ip": "172.16.1.5", "hostname": "db-0"}, {"ip": "172.16.2.7"}],
                            "ports": [{"name": "pg", "port": 5432}]}]}),
    )
    .await?;
    let out = eventually("the headless Service's endpoints", || async {
        let out = dig(dns_port, &["+short", "db.default.svc.cluster.local"]).await?;
        Ok((out.lines().count() == 2).then_some(out))
    })
    .await?;
    let mut ips: Vec<&str> = out.lines().collect();
    ips.sort();
    assert_eq!(ips, vec!["172.16.1.5", "172.16.2.7"]);
    assert_eq!(
        dig(dns_port, &["+short", "db-0.db.default.svc.cluster.local"])
            .await?
            .trim(),
        "172.16.1.5"
    );

    // Deleting the Service: NXDOMAIN.
    c.client
        .request(
            "DELETE",
            "/api/v1/namespaces/istio-system/services/istio-pilot",
            None,
        )
        .await?;
    eventually("NXDOMAIN after the delete", || async {
        let out = dig(dns_port, &[name]).await?;
        Ok(out.contains("status: NXDOMAIN").then_some(()))
    })
    .await?;
    Ok(())
}
