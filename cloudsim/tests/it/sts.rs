//! In-process: STS credentials expire in cluster time (manual clock).

use std::collections::BTreeMap;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_cloudsim::auth::{self, Credentials, SignedRequest};
use ackemu_cloudsim::cloud::{Cloud, CloudConfig, Product};
use ackemu_cloudsim::store::Store;

fn signed(
    creds: &Credentials,
    product: Product,
    action: &str,
    p: &BTreeMap<String, String>,
    now_ms: i64,
) -> SignedRequest {
    let pairs = auth::sign(creds, product.ram_code(), action, p, now_ms, "n");
    let get = |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    SignedRequest {
        access_key_id: get(auth::HDR_ACCESS_KEY_ID),
        timestamp_ms: get(auth::HDR_TIMESTAMP),
        nonce: get(auth::HDR_NONCE),
        security_token: get(auth::HDR_SECURITY_TOKEN),
        signature: get(auth::HDR_SIGNATURE),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assumed_role_credentials_expire_in_cluster_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (clock, manual) = Clock::manual(1_700_000_000_000);
    let tasks = Tasks::new(clock.clone());
    let (cloud, _effects) = Cloud::open(
        Store::open(tmp.path()).unwrap(),
        clock.clone(),
        tasks,
        CloudConfig::default(),
        |s, rng| {
            let k = ackemu_cloudsim::actions::ram::new_access_key(rng, None, 0);
            s.access_keys.insert(k.id.clone(), k);
        },
    )
    .unwrap();
    let s = cloud.snapshot();
    let root = s.access_keys.values().next().unwrap();
    let root = Credentials {
        access_key_id: root.id.clone(),
        access_key_secret: root.secret.clone(),
        security_token: None,
    };
    let call = |creds: Credentials,
                product: Product,
                action: &'static str,
                p: Vec<(&'static str, String)>| {
        let cloud = cloud.clone();
        let clock = clock.clone();
        async move {
            let p: BTreeMap<String, String> =
                p.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            let req = signed(&creds, product, action, &p, clock.wall_unix_ms());
            cloud.invoke(product, action, p, &req).await.result
        }
    };
    let trust = format!(
        r#"{{"Version":"1","Statement":[{{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{{"RAM":["acs:ram::{}:root"]}}}}]}}"#,
        s.account_id
    );
    call(
        root.clone(),
        Product::Ram,
        "CreateRole",
        vec![
            ("RoleName", "ops".into()),
            ("AssumeRolePolicyDocument", trust),
        ],
    )
    .await
    .unwrap();
    call(
        root.clone(),
        Product::Ram,
        "AttachPolicyToRole",
        vec![
            ("PolicyType", "System".into()),
            ("PolicyName", "AliyunVPCFullAccess".into()),
            ("RoleName", "ops".into()),
        ],
    )
    .await
    .unwrap();
    let arn = format!("acs:ram::{}:role/ops", s.account_id);
    let v = call(
        root.clone(),
        Product::Sts,
        "AssumeRole",
        vec![
            ("RoleArn", arn),
            ("RoleSessionName", "drill".into()),
            ("DurationSeconds", "900".into()),
        ],
    )
    .await
    .unwrap();
    let c = &v["Credentials"];
    let sts = Credentials {
        access_key_id: c["AccessKeyId"].as_str().unwrap().into(),
        access_key_secret: c["AccessKeySecret"].as_str().unwrap().into(),
        security_token: Some(c["SecurityToken"].as_str().unwrap().into()),
    };
    call(sts.clone(), Product::Vpc, "DescribeVpcs", vec![])
        .await
        .unwrap();
    assert_eq!(
        call(sts.clone(), Product::Ecs, "DescribeInstances", vec![])
            .await
            .unwrap_err()
            .code,
        "Forbidden.RAM"
    );
    manual.advance(Duration::from_secs(899));
    call(sts.clone(), Product::Vpc, "DescribeVpcs", vec![])
        .await
        .unwrap();
    manual.advance(Duration::from_secs(1));
    assert_eq!(
        call(sts, Product::Vpc, "DescribeVpcs", vec![])
            .await
            .unwrap_err()
            .code,
        "InvalidSecurityToken.Expired"
    );
}
