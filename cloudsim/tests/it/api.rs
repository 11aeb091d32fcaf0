#![allow(clippy::type_complexity)]

use ackemu_cloudsim::auth::Credentials;
use ackemu_cloudsim::cli;
use ackemu_cloudsim::cloud::Product;
use ackemu_proto::ackemu::cloud::v1::LookupEventsRequest;
use base64::Engine as _;
use serde_json::Value;

use crate::{Cloudsim, err_code, network, ok, poll};

const TRUST_ECS: &str = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"Service":["ecs.aliyuncs.com"]}}]}"#;

fn instance_status(v: &Value, id: &str) -> Option<String> {
    v["Instances"]["Instance"]
        .as_array()?
        .iter()
        .find(|i| i["InstanceId"] == id)
        .map(|i| i["Status"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ess_scale_out_boots_user_data_and_scale_in_releases() {
    let tmp = tempfile::tempdir().unwrap();
    let cs = Cloudsim::start(tmp.path(), &[]).await;
    let c = cs.client();
    let (_vpc, vsw, sg, _rt) = network(&c).await;
    ok(
        &c,
        Product::Ram,
        "CreateRole",
        &[
            ("RoleName", "KubernetesWorkerRole"),
            ("AssumeRolePolicyDocument", TRUST_ECS),
        ],
    )
    .await;
    let g = ok(
        &c,
        Product::Ess,
        "CreateScalingGroup",
        &[
            ("MinSize", "0"),
            ("MaxSize", "3"),
            ("VSwitchId", &vsw),
            ("ScalingGroupName", "workers"),
        ],
    )
    .await;
    let gid = g["ScalingGroupId"].as_str().unwrap().to_owned();
    let script = "#!/bin/sh\nattach_node.sh --ess true --labels k8s.io/cluster-autoscaler=true\n";
    let ud = base64::engine::general_purpose::STANDARD.encode(script);
    let conf = ok(
        &c,
        Product::Ess,
        "CreateScalingConfiguration",
        &[
            ("ScalingGroupId", &gid),
            ("InstanceType", "ecs.g6.large"),
            ("SecurityGroupId", &sg),
            ("UserData", &ud),
            ("RamRoleName", "KubernetesWorkerRole"),
        ],
    )
    .await;
    ok(
        &c,
        Product::Ess,
        "EnableScalingGroup",
        &[("ScalingGroupId", &gid)],
    )
    .await;
    let r = ok(
        &c,
        Product::Ess,
        "CreateScalingRule",
        &[
            ("ScalingGroupId", &gid),
            ("AdjustmentType", "QuantityChangeInCapacity"),
            ("AdjustmentValue", "2"),
        ],
    )
    .await;
    let ari = r["ScalingRuleAri"].as_str().unwrap().to_owned();
    let a = ok(
        &c,
        Product::Ess,
        "ExecuteScalingRule",
        &[("ScalingRuleAri", &ari)],
    )
    .await;
    let activity = a["ScalingActivityId"].as_str().unwrap().to_owned();

    let acts = poll("scale-out activity to succeed", 30, || {
        let c = c.clone();
        let gid = gid.clone();
        let activity = activity.clone();
        async move {
            let v = c
                .call_with(
                    Product::Ess,
                    "DescribeScalingActivities",
                    &[("ScalingGroupId", &gid)],
                )
                .await
                .ok()?;
            let a = v["ScalingActivities"]["ScalingActivity"]
                .as_array()?
                .iter()
                .find(|a| a["ScalingActivityId"] == activity.as_str())?
                .clone();
            (a["StatusCode"] == "Successful").then_some(a)
        }
    })
    .await;
    assert!(
        acts["Cause"]
            .as_str()
            .unwrap()
            .contains("changing the Total Capacity from \"0\" to \"2\""),
        "{acts}"
    );
    let ids: Vec<String> = acts["InstanceIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2);

    // The UserData reached the hypervisor backend, with the ENI address.
    let boots: Vec<Value> = cs
        .hypervisor_events()
        .into_iter()
        .filter(|e| e["op"] == "boot")
        .collect();
    assert_eq!(boots.len(), 2);
    for b in &boots {
        assert_eq!(b["spec"]["user_data"], script);
        assert_eq!(b["spec"]["ram_role"], "KubernetesWorkerRole");
        assert!(
            b["spec"]["private_ip"]
                .as_str()
                .unwrap()
                .starts_with("192.168.0.")
        );
        assert_eq!(b["spec"]["gateway"], "192.168.0.253");
        assert_eq!(b["spec"]["cpu_core_count"], 2);
    }
    let d = ok(
        &c,
        Product::Ecs,
        "DescribeInstances",
        &[("InstanceIds", &serde_json::to_string(&ids).unwrap())],
    )
    .await;
    for id in &ids {
        assert_eq!(instance_status(&d, id).as_deref(), Some("Running"));
    }

    // Scale-in: remove one instance; it is released and the backend deletes it.
    ok(
        &c,
        Product::Ess,
        "RemoveInstances",
        &[("ScalingGroupId", &gid), ("InstanceId.1", &ids[0])],
    )
    .await;
    assert_eq!(
        err_code(
            &c,
            Product::Ecs,
            "DescribeInstanceAttribute",
            &[("InstanceId", &ids[0])]
        )
        .await,
        "InvalidInstanceId.NotFound"
    );
    poll("backend delete", 30, || {
        let ev = cs.hypervisor_events();
        let id = ids[0].clone();
        async move {
            ev.iter()
                .any(|e| e["op"] == "delete" && e["instance_id"] == id.as_str())
                .then_some(())
        }
    })
    .await;
    let v = ok(
        &c,
        Product::Ess,
        "DescribeScalingActivities",
        &[("ScalingGroupId", &gid)],
    )
    .await;
    let newest = &v["ScalingActivities"]["ScalingActivity"][0];
    assert_eq!(newest["StatusCode"], "Successful");
    assert!(
        newest["Cause"]
            .as_str()
            .unwrap()
            .contains("from \"2\" to \"1\""),
        "{newest}"
    );
    // Below MinSize is refused.
    ok(
        &c,
        Product::Ess,
        "ModifyScalingGroup",
        &[("ScalingGroupId", &gid), ("MinSize", "1")],
    )
    .await;
    assert_eq!(
        err_code(
            &c,
            Product::Ess,
            "RemoveInstances",
            &[("ScalingGroupId", &gid), ("InstanceId.1", &ids[1])]
        )
        .await,
        "InvalidParameter.Conflict"
    );
    // Console output: an unknown instance is refused; a known one whose
    // backend keeps no console answers an empty one.
    assert_eq!(
        err_code(
            &c,
            Product::Ecs,
            "GetInstanceConsoleOutput",
            &[("InstanceId", "i-nosuch")]
        )
        .await,
        "InvalidInstanceId.NotFound"
    );
    let out = ok(
        &c,
        Product::Ecs,
        "GetInstanceConsoleOutput",
        &[("InstanceId", &ids[1])],
    )
    .await;
    assert_eq!(out["InstanceId"], ids[1].as_str());
    assert_eq!(out["ConsoleOutput"], "");
    // A modified configuration: instances created from now on get its
    // UserData; a bad one changes nothing.
    let conf_id = conf["ScalingConfigurationId"].as_str().unwrap().to_owned();
    let script2 = "#!/bin/sh\nattach_node.sh --token abcdef.0123456789abcdef\n";
    assert_eq!(
        err_code(
            &c,
            Product::Ess,
            "ModifyScalingConfiguration",
            &[
                ("ScalingConfigurationId", &conf_id),
                ("UserData", "%%%"),
                ("InstanceType", "ecs.g6.xlarge")
            ]
        )
        .await,
        "InvalidUserData.Base64FormatInvalid"
    );
    assert_eq!(
        err_code(
            &c,
            Product::Ess,
            "ModifyScalingConfiguration",
            &[("ScalingConfigurationId", "asc-nope")]
        )
        .await,
        "InvalidScalingConfigurationId.NotFound"
    );
    let v = ok(
        &c,
        Product::Ess,
        "DescribeScalingConfigurations",
        &[("ScalingGroupId", &gid)],
    )
    .await;
    let listed = &v["ScalingConfigurations"]["ScalingConfiguration"][0];
    assert_eq!(listed["InstanceType"], "ecs.g6.large", "{listed}");
    assert_eq!(listed["UserData"], ud.as_str());
    ok(
        &c,
        Product::Ess,
        "ModifyScalingConfiguration",
        &[
            ("ScalingConfigurationId", &conf_id),
            (
                "UserData",
                &base64::engine::general_purpose::STANDARD.encode(script2),
            ),
        ],
    )
    .await;
    ok(
        &c,
        Product::Ess,
        "ModifyScalingGroup",
        &[("ScalingGroupId", &gid), ("DesiredCapacity", "2")],
    )
    .await;
    poll(
        "the replacement instance to boot with the new UserData",
        30,
        || {
            let ev = cs.hypervisor_events();
            async move {
                ev.iter()
                    .any(|e| e["op"] == "boot" && e["spec"]["user_data"] == script2)
                    .then_some(())
            }
        },
    )
    .await;
    // Removing an instance without decreasing the desired capacity
    // replaces it.
    ok(
        &c,
        Product::Ess,
        "RemoveInstances",
        &[
            ("ScalingGroupId", &gid),
            ("InstanceId.1", &ids[1]),
            ("DecreaseDesiredCapacity", "false"),
        ],
    )
    .await;
    poll("a replacement for the removed instance", 30, || {
        let ev = cs.hypervisor_events();
        async move {
            (ev.iter()
                .filter(|e| e["op"] == "boot" && e["spec"]["user_data"] == script2)
                .count()
                == 2)
                .then_some(())
        }
    })
    .await;
    let v = ok(
        &c,
        Product::Ess,
        "DescribeScalingGroups",
        &[("ScalingGroupIds", &serde_json::to_string(&[&gid]).unwrap())],
    )
    .await;
    assert_eq!(v["ScalingGroups"]["ScalingGroup"][0]["DesiredCapacity"], 2);
}

/// The seed's S03 cause through the real API: the worker role's vpc policy
/// flipped to Deny blocks DescribeVpcs and route entries for the node's STS
/// credentials (from the metadata service), ECS keeps working, flipping it
/// back restores at once; the audit trail shows the refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_role_vpc_deny_through_metadata_credentials() {
    let tmp = tempfile::tempdir().unwrap();
    let cs = Cloudsim::start(
        tmp.path(),
        &[
            "--failpoints",
            "cloud/ecs/DescribeInstanceTypes=return(Throttling.User)",
        ],
    )
    .await;
    let c = cs.client();
    let (vpc, vsw, sg, rt) = network(&c).await;
    ok(
        &c,
        Product::Ram,
        "CreateRole",
        &[
            ("RoleName", "KubernetesWorkerRole"),
            ("AssumeRolePolicyDocument", TRUST_ECS),
        ],
    )
    .await;
    let ecs_policy =
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["ecs:*"],"Resource":["*"]}]}"#;
    let deny =
        r#"{"Version":"1","Statement":[{"Effect":"Deny","Action":["vpc:*"],"Resource":["*"]}]}"#;
    let allow =
        r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":["vpc:*"],"Resource":["*"]}]}"#;
    ok(
        &c,
        Product::Ram,
        "CreatePolicy",
        &[
            ("PolicyName", "k8sWorkerEcs"),
            ("PolicyDocument", ecs_policy),
        ],
    )
    .await;
    ok(
        &c,
        Product::Ram,
        "CreatePolicy",
        &[("PolicyName", "k8sWorkerVpc"), ("PolicyDocument", allow)],
    )
    .await;
    for p in ["k8sWorkerEcs", "k8sWorkerVpc"] {
        ok(
            &c,
            Product::Ram,
            "AttachPolicyToRole",
            &[
                ("PolicyType", "Custom"),
                ("PolicyName", p),
                ("RoleName", "KubernetesWorkerRole"),
            ],
        )
        .await;
    }
    let run = ok(
        &c,
        Product::Ecs,
        "RunInstances",
        &[
            ("InstanceType", "ecs.g6.large"),
            ("VSwitchId", &vsw),
            ("SecurityGroupId", &sg),
            ("RamRoleName", "KubernetesWorkerRole"),
        ],
    )
    .await;
    let iid = run["InstanceIdSets"]["InstanceIdSet"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let d = ok(
        &c,
        Product::Ecs,
        "DescribeInstanceAttribute",
        &[("InstanceId", &iid)],
    )
    .await;
    let ip = d["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]
        .as_str()
        .unwrap()
        .to_owned();

    // The node asks the metadata service (curl, as a node would).
    let curl = |path: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-H",
                &format!("X-Forwarded-For: {ip}"),
                &format!("http://{}{path}", cs.metadata),
            ])
            .output()
            .expect("curl");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(curl("/latest/meta-data/instance-id"), iid);
    assert_eq!(
        curl("/latest/meta-data/ram/security-credentials/"),
        "KubernetesWorkerRole"
    );
    let creds: Value = serde_json::from_str(&curl(
        "/latest/meta-data/ram/security-credentials/KubernetesWorkerRole",
    ))
    .unwrap();
    assert_eq!(creds["Code"], "Success");
    let node = c.with_credentials(Credentials {
        access_key_id: creds["AccessKeyId"].as_str().unwrap().into(),
        access_key_secret: creds["AccessKeySecret"].as_str().unwrap().into(),
        security_token: Some(creds["SecurityToken"].as_str().unwrap().into()),
    });
    let who = ok(&node, Product::Sts, "GetCallerIdentity", &[]).await;
    assert_eq!(who["IdentityType"], "AssumedRoleUser");
    ok(&node, Product::Vpc, "DescribeVpcs", &[("VpcId", &vpc)]).await;

    // An operator edits the policy: vpc:* becomes Deny.
    ok(
        &c,
        Product::Ram,
        "CreatePolicyVersion",
        &[
            ("PolicyName", "k8sWorkerVpc"),
            ("PolicyDocument", deny),
            ("SetAsDefault", "true"),
        ],
    )
    .await;
    assert_eq!(
        err_code(&node, Product::Vpc, "DescribeVpcs", &[("VpcId", &vpc)]).await,
        "Forbidden.RAM"
    );
    let e = node
        .call_with(
            Product::Vpc,
            "CreateRouteEntry",
            &[
                ("RouteTableId", &rt),
                ("DestinationCidrBlock", "172.16.1.0/24"),
                ("NextHopId", &iid),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string().split(" (RequestId").next().unwrap(),
        "Forbidden.RAM: User not authorized to operate on the specified resource, or this API doesn't support RAM."
    );
    ok(&node, Product::Ecs, "DescribeInstances", &[]).await;
    // Flip back: works at once, and nothing was half-applied by the refusal.
    ok(
        &c,
        Product::Ram,
        "CreatePolicyVersion",
        &[
            ("PolicyName", "k8sWorkerVpc"),
            ("PolicyDocument", allow),
            ("SetAsDefault", "true"),
        ],
    )
    .await;
    ok(
        &node,
        Product::Vpc,
        "CreateRouteEntry",
        &[
            ("RouteTableId", &rt),
            ("DestinationCidrBlock", "172.16.1.0/24"),
            ("NextHopId", &iid),
        ],
    )
    .await;
    let entries = ok(
        &node,
        Product::Vpc,
        "DescribeRouteEntryList",
        &[("RouteTableId", &rt)],
    )
    .await;
    let custom = entries["RouteEntrys"]["RouteEntry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["Type"] == "Custom")
        .count();
    assert_eq!(custom, 1);

    // The trail names the refused call and why.
    let events = c
        .lookup_events(LookupEventsRequest {
            event_name: "DescribeVpcs".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let refused = events
        .iter()
        .find(|e| e.error_code == "Forbidden.RAM")
        .expect("a refused DescribeVpcs in the trail");
    assert!(
        refused.caller.contains("assumed-role/KubernetesWorkerRole"),
        "{refused:?}"
    );
    assert!(refused.detail.contains("k8sWorkerVpc"), "{refused:?}");
    // Node credentials cannot read the trail; an unknown key is refused.
    assert_eq!(
        node.lookup_events(LookupEventsRequest::default())
            .await
            .unwrap_err()
            .code(),
        Some("Forbidden.RAM")
    );
    let stranger = c.with_credentials(Credentials {
        access_key_id: "LTAInope".into(),
        access_key_secret: "x".into(),
        security_token: None,
    });
    assert_eq!(
        err_code(&stranger, Product::Vpc, "DescribeVpcs", &[]).await,
        "InvalidAccessKeyId.NotFound"
    );
    let forged = c.with_credentials(Credentials {
        access_key_secret: "wrong".into(),
        ..cs.creds.clone()
    });
    assert_eq!(
        err_code(&forged, Product::Vpc, "DescribeVpcs", &[]).await,
        "SignatureDoesNotMatch"
    );
    // Failpoint on an action: the cloud misbehaves with the named code.
    assert_eq!(
        err_code(&c, Product::Ecs, "DescribeInstanceTypes", &[]).await,
        "Throttling.User"
    );
}

/// Bad input gets the cloud's code and changes nothing; everything survives
/// a restart; the CLI module drives the products.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_whole_and_state_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let cs = Cloudsim::start(tmp.path(), &["--route-entry-quota", "1"]).await;
    let c = cs.client();
    let (vpc, vsw, sg, rt) = network(&c).await;
    let run = ok(
        &c,
        Product::Ecs,
        "RunInstances",
        &[
            ("InstanceType", "ecs.g6.large"),
            ("VSwitchId", &vsw),
            ("SecurityGroupId", &sg),
        ],
    )
    .await;
    let iid = run["InstanceIdSets"]["InstanceIdSet"][0]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        &c,
        Product::Vpc,
        "CreateRouteEntry",
        &[
            ("RouteTableId", &rt),
            ("DestinationCidrBlock", "172.16.0.0/24"),
            ("NextHopId", &iid),
        ],
    )
    .await;
    ok(
        &c,
        Product::Ecs,
        "AuthorizeSecurityGroup",
        &[
            ("SecurityGroupId", &sg),
            ("IpProtocol", "all"),
            ("PortRange", "-1/-1"),
            ("SourceCidrIp", "172.16.0.0/16"),
            ("Priority", "1"),
        ],
    )
    .await;

    let before = ok(&c, Product::Vpc, "DescribeVSwitches", &[("VpcId", &vpc)]).await;
    let cases: Vec<(Product, &str, Vec<(&str, &str)>, &str)> = vec![
        (
            Product::Vpc,
            "CreateVSwitch",
            vec![
                ("VpcId", &vpc),
                ("ZoneId", "cn-hangzhou-b"),
                ("CidrBlock", "192.168.0.128/25"),
            ],
            "InvalidCidrBlock.Overlapped",
        ),
        (
            Product::Vpc,
            "CreateVSwitch",
            vec![
                ("VpcId", &vpc),
                ("ZoneId", "cn-hangzhou-b"),
                ("CidrBlock", "192.168.1.7/24"),
            ],
            "InvalidCidrBlock.Malformed",
        ),
        (
            Product::Vpc,
            "CreateVSwitch",
            vec![
                ("VpcId", "vpc-nope"),
                ("ZoneId", "cn-hangzhou-b"),
                ("CidrBlock", "192.168.1.0/24"),
            ],
            "InvalidVpcId.NotFound",
        ),
        (
            Product::Vpc,
            "CreateVpc",
            vec![("CidrBlock", "8.8.0.0/16")],
            "InvalidCidrBlock.Malformed",
        ),
        (
            Product::Vpc,
            "CreateRouteEntry",
            vec![
                ("RouteTableId", &rt),
                ("DestinationCidrBlock", "172.16.1.0/24"),
                ("NextHopId", &iid),
            ],
            "QuotaExceeded.RouteEntry",
        ),
        (
            Product::Vpc,
            "DescribeRouteEntryList",
            vec![("RouteTableId", "vtb-nope")],
            "InvalidRouteTableId.NotFound",
        ),
        (
            Product::Ecs,
            "AuthorizeSecurityGroup",
            vec![
                ("SecurityGroupId", &sg),
                ("IpProtocol", "tcp"),
                ("PortRange", "0/80"),
                ("SourceCidrIp", "10.0.0.0/8"),
            ],
            "InvalidIpPortRange.Malformed",
        ),
        (
            Product::Ecs,
            "AuthorizeSecurityGroup",
            vec![
                ("SecurityGroupId", &sg),
                ("IpProtocol", "tcp"),
                ("PortRange", "1/65535"),
                ("SourceCidrIp", "10.0.0.0/8"),
                ("Priority", "101"),
            ],
            "InvalidPriority.Malformed",
        ),
        (
            Product::Ram,
            "CreatePolicy",
            vec![
                ("PolicyName", "broken"),
                (
                    "PolicyDocument",
                    "{\"Version\":\"1\",\"Statement\":[{\"Effect\":\"Allow\"",
                ),
            ],
            "MalformedPolicyDocument",
        ),
        (
            Product::Ecs,
            "RunInstances",
            vec![
                ("InstanceType", "ecs.g6.large"),
                ("VSwitchId", &vsw),
                ("SecurityGroupId", &sg),
                ("Amount", "2"),
                ("UserData", "%%%"),
            ],
            "InvalidUserData.Base64FormatInvalid",
        ),
        (
            Product::Ecs,
            "RunInstances",
            vec![
                ("InstanceType", "ecs.huge"),
                ("VSwitchId", &vsw),
                ("SecurityGroupId", &sg),
            ],
            "InvalidInstanceType.ValueNotSupported",
        ),
        (
            Product::Ecs,
            "StopInstance",
            vec![("InstanceId", "i-nope")],
            "InvalidInstanceId.NotFound",
        ),
        (
            Product::Vpc,
            "FlyToTheMoon",
            vec![],
            "InvalidAction.NotFound",
        ),
        (
            Product::Vpc,
            "DeleteVpc",
            vec![("VpcId", &vpc)],
            "DependencyViolation",
        ),
    ];
    for (p, action, params, code) in &cases {
        assert_eq!(
            err_code(&c, *p, action, params).await,
            *code,
            "{action} {params:?}"
        );
    }
    let after = ok(&c, Product::Vpc, "DescribeVSwitches", &[("VpcId", &vpc)]).await;
    assert_eq!(
        before["VSwitches"], after["VSwitches"],
        "failed calls changed nothing"
    );
    let all = ok(&c, Product::Ecs, "DescribeInstances", &[]).await;
    assert_eq!(
        all["TotalCount"], 1,
        "the failed RunInstances created no instance"
    );

    // The CLI module, with the profile file the server wrote.
    let args = |product: &str, action: &str, rest: &[&str]| cli::Args {
        profile_file: Some(cs.profile_file.clone()),
        profile: None,
        endpoint: None,
        time_scale: None,
        cluster_epoch_ms: None,
        product: product.into(),
        action: action.into(),
        params: rest.iter().map(|s| s.to_string()).collect(),
    };
    cli::run(args("vpc", "DescribeVpcs", &["--VpcId", &vpc]))
        .await
        .unwrap();
    cli::run(args(
        "ecs",
        "AuthorizeSecurityGroupEgress",
        &[
            "--SecurityGroupId",
            &sg,
            "--IpProtocol",
            "all",
            "--PortRange=-1/-1",
            "--DestCidrIp",
            "100.64.0.0/10",
            "--Policy",
            "drop",
            "--Priority",
            "1",
        ],
    ))
    .await
    .unwrap();
    let e = cli::run(args("vpc", "DeleteVpc", &["--VpcId", "vpc-nope"]))
        .await
        .unwrap_err();
    assert!(e.to_string().starts_with("InvalidVpcId.NotFound: "), "{e}");
    cli::run(args("trail", "LookupEvents", &["--EventName", "DeleteVpc"]))
        .await
        .unwrap();
    assert!(cli::run(args("nosuch", "X", &[])).await.is_err());
    for p in ["ecs", "vpc", "slb", "ess", "ram", "registry"] {
        let action = match p {
            "ecs" => "DescribeInstances",
            "vpc" => "DescribeVpcs",
            "slb" => "DescribeLoadBalancers",
            "ess" => "DescribeScalingGroups",
            "ram" => "ListRoles",
            _ => "ListRepo",
        };
        cli::run(args(p, action, &[]))
            .await
            .unwrap_or_else(|e| panic!("{p} {action}: {e}"));
    }
    cli::run(args("sts", "GetCallerIdentity", &[]))
        .await
        .unwrap();

    // SLB state too.
    let lb = ok(
        &c,
        Product::Slb,
        "CreateLoadBalancer",
        &[("VSwitchId", &vsw), ("LoadBalancerName", "apiserver")],
    )
    .await;
    let lbid = lb["LoadBalancerId"].as_str().unwrap().to_owned();
    ok(
        &c,
        Product::Slb,
        "CreateLoadBalancerTCPListener",
        &[
            ("LoadBalancerId", &lbid),
            ("ListenerPort", "6443"),
            ("BackendServerPort", "6443"),
            ("HealthyThreshold", "3"),
        ],
    )
    .await;
    ok(
        &c,
        Product::Slb,
        "AddBackendServers",
        &[
            ("LoadBalancerId", &lbid),
            (
                "BackendServers",
                &format!("[{{\"ServerId\":\"{iid}\",\"Weight\":\"100\"}}]"),
            ),
        ],
    )
    .await;

    // Restart: everything is still there.
    let dir = cs.dir.clone();
    let creds = cs.creds.clone();
    cs.stop();
    let cs = Cloudsim::start(&dir, &["--route-entry-quota", "1"]).await;
    assert_eq!(cs.creds, creds, "the root key survives");
    let c = cs.client();
    let v = ok(&c, Product::Vpc, "DescribeVpcs", &[("VpcId", &vpc)]).await;
    assert_eq!(v["TotalCount"], 1);
    assert_eq!(
        err_code(
            &c,
            Product::Vpc,
            "CreateRouteEntry",
            &[
                ("RouteTableId", &rt),
                ("DestinationCidrBlock", "172.16.1.0/24"),
                ("NextHopId", &iid)
            ]
        )
        .await,
        "QuotaExceeded.RouteEntry"
    );
    let g = ok(
        &c,
        Product::Ecs,
        "DescribeSecurityGroupAttribute",
        &[("SecurityGroupId", &sg)],
    )
    .await;
    let perms = g["Permissions"]["Permission"].as_array().unwrap();
    assert_eq!(perms.len(), 2, "{g}");
    assert!(perms.iter().any(|p| p["Direction"] == "egress"
        && p["Policy"] == "Drop"
        && p["DestCidrIp"] == "100.64.0.0/10"));
    poll("instance running after restart", 30, || {
        let c = c.clone();
        let iid = iid.clone();
        async move {
            let i = c
                .call_with(
                    Product::Ecs,
                    "DescribeInstanceAttribute",
                    &[("InstanceId", &iid)],
                )
                .await
                .ok()?;
            (i["Status"] == "Running").then_some(())
        }
    })
    .await;
    let h = ok(
        &c,
        Product::Slb,
        "DescribeHealthStatus",
        &[("LoadBalancerId", &lbid)],
    )
    .await;
    assert_eq!(
        h["BackendServers"]["BackendServer"][0]["ServerHealthStatus"],
        "unavailable"
    );
    let events = c
        .lookup_events(LookupEventsRequest {
            event_name: "CreateVSwitch".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.error_code == "InvalidCidrBlock.Overlapped"),
        "the audit trail survives the restart"
    );
}
