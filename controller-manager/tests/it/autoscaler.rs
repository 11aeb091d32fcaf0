//! S09 with the autoscaler binary against the real API server and
//! cloudsim's ESS: pods whose *requests* fit no node grow the scaling
//! group; once they are gone the empty nodes are drained and their
//! instances removed. The test plays the scheduler (marks pods
//! Unschedulable, binds them) and the kubelets (registers a Node per new
//! instance).

use std::process::{Command, Stdio};

use ackemu_controller_manager::cloudapi::{Product, items};
use ackemu_kube::api::core::v1::{ConfigMap, Node, Pod};
use anyhow::Context as _;
use base64::Engine as _;
use serde_json::json;

use crate::cloud::{Cloudsim, clock_flags, cluster_clock, network, node, register};
use crate::harness::{Cluster, Proc, eventually};

fn pending_pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                "uid": "6c2ad5a8-0c47-4a38-9d59-000000000001", "controller": true}]},
        "spec": {"containers": [{"name": "app", "image": "app",
            "resources": {"requests": {"cpu": "1500m", "memory": "1Gi"}}}]},
    }))
    .expect("pod")
}

async fn group_capacity(cs: &Cloudsim, gid: &str) -> (u64, Vec<String>) {
    let ids = serde_json::to_string(&[gid]).unwrap();
    let v = cs
        .ok(
            Product::Ess,
            "DescribeScalingGroups",
            &[("ScalingGroupIds", &ids)],
        )
        .await;
    let total = items(&v, "ScalingGroups", "ScalingGroup")[0]["TotalCapacity"]
        .as_u64()
        .unwrap();
    let i = cs
        .ok(
            Product::Ess,
            "DescribeScalingInstances",
            &[("ScalingGroupId", gid)],
        )
        .await;
    let ids = items(&i, "ScalingInstances", "ScalingInstance")
        .iter()
        .map(|x| x["InstanceId"].as_str().unwrap().to_owned())
        .collect();
    (total, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s09_scale_up_by_reservation_and_back_down() -> anyhow::Result<()> {
    let clock = cluster_clock();
    let c = Cluster::start(&["serviceaccount"]).await?;
    let cs = Cloudsim::start(c.dir(), &clock).await?;
    let net = network(&cs).await;
    // The autoscaler's own RAM user and AccessKey (the AccessKey mode).
    cs.ok(
        Product::Ram,
        "CreateUser",
        &[("UserName", "cluster-autoscaler")],
    )
    .await;
    cs.ok(
        Product::Ram,
        "AttachPolicyToUser",
        &[
            ("UserName", "cluster-autoscaler"),
            ("PolicyName", "k8sMasterRolePolicy"),
            ("PolicyType", "Custom"),
        ],
    )
    .await;
    let key = cs
        .ok(
            Product::Ram,
            "CreateAccessKey",
            &[("UserName", "cluster-autoscaler")],
        )
        .await;
    let ak = key["AccessKey"]["AccessKeyId"].as_str().unwrap().to_owned();
    let sk = key["AccessKey"]["AccessKeySecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let g = cs
        .ok(
            Product::Ess,
            "CreateScalingGroup",
            &[
                ("MinSize", "0"),
                ("MaxSize", "3"),
                ("VSwitchId", &net.vswitch),
                ("ScalingGroupName", "workers"),
            ],
        )
        .await;
    let gid = g["ScalingGroupId"].as_str().unwrap().to_owned();
    let ud = base64::engine::general_purpose::STANDARD.encode(
        "#!/bin/sh\nattach_node.sh --ess true --labels k8s.io/cluster-autoscaler=true,workload_type=cpu\n",
    );
    cs.ok(
        Product::Ess,
        "CreateScalingConfiguration",
        &[
            ("ScalingGroupId", &gid),
            ("InstanceType", "ecs.g6.large"),
            ("SecurityGroupId", &net.sg),
            ("UserData", &ud),
        ],
    )
    .await;
    cs.ok(
        Product::Ess,
        "EnableScalingGroup",
        &[("ScalingGroupId", &gid)],
    )
    .await;

    let log = c.dir().join("autoscaler.log");
    let _ca = Proc(
        Command::new(env!("CARGO_BIN_EXE_ackemu-cluster-autoscaler"))
            .arg(format!("--kubeconfig={}", c.kubeconfig().display()))
            .arg(format!("--nodes=0:3:{gid}"))
            .arg(format!("--cloud-endpoint={}", cs.grpc))
            .args([
                "--scan-interval=10s",
                "--scale-down-unneeded-time=1m",
                "--scale-down-delay-after-add=1m",
                "--leader-elect=true",
            ])
            .args(clock_flags(&clock))
            .env("ACKEMU_ACCESS_KEY_ID", &ak)
            .env("ACKEMU_ACCESS_KEY_SECRET", &sk)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting ackemu-cluster-autoscaler")?,
    );

    // Two pods reserving 1.5 CPU each: no node has room, a 2-CPU template
    // node holds one of them.
    let pods = c.client.api::<Pod>(Some("default"))?;
    for name in ["web-a", "web-b"] {
        // Admission needs the default ServiceAccount the controller makes.
        let p = eventually("the pod created", || async {
            Ok(pods.create(&pending_pod(name)).await.ok())
        })
        .await?;
        let mut s = p.clone();
        s.status = Some(serde_json::from_value(
            json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/0 nodes are available: no nodes available to schedule pods."}]}),
        )?);
        pods.replace_status(name, &s).await?;
    }
    let instances = eventually("the scaling group grown to 2", || async {
        let (total, ids) = group_capacity(&cs, &gid).await;
        Ok((total == 2 && ids.len() == 2).then_some(ids))
    })
    .await?;
    // One pass may see only the first pod (0->1, then 1->2): each pod
    // names the group in its own event.
    eventually("a TriggeredScaleUp event on each pod", || async {
        let v = c
            .client
            .request("GET", "/api/v1/namespaces/default/events", None)
            .await?;
        let pods: std::collections::BTreeSet<String> = v["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|e| {
                e["reason"] == "TriggeredScaleUp"
                    && e["message"]
                        .as_str()
                        .unwrap_or_default()
                        .starts_with(&format!("pod triggered scale-up: [{{{gid} "))
            })
            .filter_map(|e| e["involvedObject"]["name"].as_str().map(str::to_owned))
            .collect();
        Ok((pods.len() == 2).then_some(()))
    })
    .await?;

    // The new instances join (the test is their kubelet) and the pods run.
    let mut names = Vec::new();
    for (i, id) in instances.iter().enumerate() {
        let inst = crate::cloud::describe(&cs, id).await.context("instance")?;
        let ip = inst["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]
            .as_str()
            .unwrap()
            .to_owned();
        let name = format!("{}.{ip}", net.region);
        let mut n = node(
            &name,
            &ip,
            None,
            Some(format!("{}.{id}", net.region)),
            &clock,
        );
        n.spec.as_mut().unwrap().taints = None;
        register(&c, &n).await?;
        let pod = ["web-a", "web-b"][i];
        let binding = json!({"apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": pod, "namespace": "default"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": name}});
        c.client
            .request(
                "POST",
                &format!("/api/v1/namespaces/default/pods/{pod}/binding"),
                Some(("application/json", binding.to_string().into_bytes())),
            )
            .await?;
        names.push(name);
    }
    let cms = c.client.api::<ConfigMap>(Some("kube-system"))?;
    eventually("the cluster-autoscaler-status ConfigMap", || async {
        Ok(cms
            .get("cluster-autoscaler-status")
            .await
            .ok()
            .and_then(|cm| cm.data)
            .and_then(|d| d.get("status").cloned())
            .filter(|s| s.contains(&format!("Name:        {gid}")))
            .map(|_| ()))
    })
    .await?;

    // The load goes: the empty nodes are unneeded, then removed.
    for p in ["web-a", "web-b"] {
        c.client
            .request(
                "DELETE",
                &format!("/api/v1/namespaces/default/pods/{p}"),
                Some((
                    "application/json",
                    json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
                        .to_string()
                        .into_bytes(),
                )),
            )
            .await?;
    }
    eventually("the scaling group shrunk to 0", || async {
        let (total, ids) = group_capacity(&cs, &gid).await;
        Ok((total == 0 && ids.is_empty()).then_some(()))
    })
    .await?;
    let nodes = c.client.api::<Node>(None)?;
    for name in &names {
        let n = nodes.get(name).await?;
        assert!(
            n.spec
                .and_then(|s| s.taints)
                .unwrap_or_default()
                .iter()
                .any(|t| t.key == "ToBeDeletedByClusterAutoscaler" && t.effect == "NoSchedule"),
            "node {name} must be tainted before its instance goes"
        );
    }
    let text = std::fs::read_to_string(&log)?;
    assert!(
        text.contains(&format!("Scale-up: setting group {gid} size to 2")),
        "{text}"
    );
    assert!(text.contains("Scale-down: removing empty node"), "{text}");
    Ok(())
}
