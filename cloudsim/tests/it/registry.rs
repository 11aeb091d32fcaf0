use ackemu_cloudsim::cloud::Product;
use base64::Engine as _;
use serde_json::Value;

use crate::{Cloudsim, ok};

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// `curl -i` against the registry.
fn curl(url: &str, extra: &[&str]) -> Reply {
    let out = std::process::Command::new("curl")
        .args(["-sS", "-i"])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Reply {
        status,
        headers: head.to_lowercase(),
        body: body.to_owned(),
    }
}

fn token(cs: &Cloudsim, scope: &str, basic: Option<(&str, &str)>) -> String {
    let url = format!(
        "http://{}/token?service=registry.ackemu.local&scope={scope}",
        cs.registry
    );
    let mut extra = vec![];
    let auth;
    if let Some((u, p)) = basic {
        auth = format!("{u}:{p}");
        extra = vec!["-u", auth.as_str()];
    }
    let r = curl(&url, &extra);
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_token_flow_with_curl() {
    let tmp = tempfile::tempdir().unwrap();
    let cs = Cloudsim::start(tmp.path(), &[]).await;
    let c = cs.client();
    ok(
        &c,
        Product::Registry,
        "CreateNamespace",
        &[("Namespace", "kube-easy")],
    )
    .await;
    ok(
        &c,
        Product::Registry,
        "CreateRepo",
        &[
            ("RepoNamespace", "kube-easy"),
            ("RepoName", "app"),
            ("RepoType", "PRIVATE"),
        ],
    )
    .await;
    ok(
        &c,
        Product::Registry,
        "CreateRepo",
        &[
            ("RepoNamespace", "kube-easy"),
            ("RepoName", "toolbox"),
            ("RepoType", "PUBLIC"),
        ],
    )
    .await;
    let t = ok(
        &c,
        Product::Registry,
        "PutImageTag",
        &[
            ("RepoNamespace", "kube-easy"),
            ("RepoName", "app"),
            ("Tag", "v1"),
            ("Program", "app"),
        ],
    )
    .await;
    let digest = t["Digest"].as_str().unwrap().to_owned();
    ok(
        &c,
        Product::Registry,
        "PutImageTag",
        &[
            ("RepoNamespace", "kube-easy"),
            ("RepoName", "toolbox"),
            ("Tag", "latest"),
            ("Program", "toolbox"),
        ],
    )
    .await;
    let base = format!("http://{}", cs.registry);

    // Ping: 401 with the Bearer challenge and the API version header.
    let r = curl(&format!("{base}/v2/"), &[]);
    assert_eq!(r.status, 401);
    assert!(
        r.headers
            .contains("docker-distribution-api-version: registry/2.0"),
        "{}",
        r.headers
    );
    assert!(
        r.headers.contains(&format!(
            "www-authenticate: bearer realm=\"http://{}/token\",service=\"registry.ackemu.local\"",
            cs.registry
        )),
        "{}",
        r.headers
    );

    // Anonymous manifest GET of the private image: challenge with scope.
    let manifest_url = format!("{base}/v2/kube-easy/app/manifests/v1");
    let r = curl(&manifest_url, &[]);
    assert_eq!(r.status, 401);
    assert!(
        r.headers
            .contains("scope=\"repository:kube-easy/app:pull\""),
        "{}",
        r.headers
    );
    // An anonymous token grants nothing on a private repo: unauthorized: authentication required.
    let anon = token(&cs, "repository:kube-easy/app:pull", None);
    let r = curl(
        &manifest_url,
        &["-H", &format!("Authorization: Bearer {anon}")],
    );
    assert_eq!(r.status, 401);
    let v: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["errors"][0]["code"], "UNAUTHORIZED");
    assert_eq!(v["errors"][0]["message"], "authentication required");
    // ... but pulls the public one.
    let anon_pub = token(&cs, "repository:kube-easy/toolbox:pull", None);
    let r = curl(
        &format!("{base}/v2/kube-easy/toolbox/manifests/latest"),
        &["-H", &format!("Authorization: Bearer {anon_pub}")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // Wrong Basic credentials are refused at the token endpoint.
    let r = curl(
        &format!("{base}/token?scope=repository:kube-easy/app:pull"),
        &["-u", "LTAIbad:nope"],
    );
    assert_eq!(r.status, 401);

    // With the account key: token, then the manifest naming the workload program.
    let tok = token(
        &cs,
        "repository:kube-easy/app:pull",
        Some((&cs.creds.access_key_id, &cs.creds.access_key_secret)),
    );
    assert_eq!(tok.split('.').count(), 3, "a JWT");
    let r = curl(
        &manifest_url,
        &["-H", &format!("Authorization: Bearer {tok}")],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.headers
            .contains(&format!("docker-content-digest: {digest}")),
        "{}",
        r.headers
    );
    let m: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(m["annotations"]["io.ackemu.workload.program"], "app");
    // By digest, and the config blob.
    let r = curl(
        &format!("{base}/v2/kube-easy/app/manifests/{digest}"),
        &["-H", &format!("Authorization: Bearer {tok}")],
    );
    assert_eq!(r.status, 200);
    let cfg = m["config"]["digest"].as_str().unwrap();
    let r = curl(
        &format!("{base}/v2/kube-easy/app/blobs/{cfg}"),
        &["-H", &format!("Authorization: Bearer {tok}")],
    );
    assert_eq!(r.status, 200);
    assert!(
        r.body
            .contains("\"Entrypoint\":[\"/ackemu-workload\",\"app\"]"),
        "{}",
        r.body
    );
    let r = curl(
        &format!("{base}/v2/kube-easy/app/manifests/v9"),
        &["-H", &format!("Authorization: Bearer {tok}")],
    );
    assert_eq!(r.status, 404);
    assert!(r.body.contains("MANIFEST_UNKNOWN"));

    // GetAuthorizationToken: temporary credentials the credential helper uses.
    let a = ok(&c, Product::Registry, "GetAuthorizationToken", &[]).await;
    let user = a["data"]["tempUserName"].as_str().unwrap().to_owned();
    let pass = a["data"]["authorizationToken"].as_str().unwrap().to_owned();
    assert_eq!(user, "cr_temp_user");
    let tok = token(&cs, "repository:kube-easy/app:pull", Some((&user, &pass)));
    let r = curl(
        &manifest_url,
        &["-H", &format!("Authorization: Bearer {tok}")],
    );
    assert_eq!(r.status, 200);
    // docker-style dockerconfigjson auth is base64(user:pass).
    let _auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
}
