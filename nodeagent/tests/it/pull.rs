//! PullImage against a real `ackemu-cloudsim` registry: the Bearer token
//! flow anonymously and with pull-secret credentials, containerd's error
//! texts for a private repository without credentials and for bad ones,
//! and a container of the pulled image running the image's program.

use std::path::{Path, PathBuf};
use std::process::Command;

use ackemu_proto::ackemu::node::v1 as pb;
use pb::image_service_client::ImageServiceClient;
use serde_json::Value;

use crate::attach_cluster::{bin, eventually};
use crate::server_rig::{Ctr, Node, read};
use crate::util::{Netns, Proc, can_netns, text, wait_for};

/// cloudsim runs inside the node's namespace, so the runtime reaches the
/// registry on that namespace's loopback (on a real node it is
/// 100.100.0.20 through the VPC).
struct Cloud {
    _proc: Proc,
    netns: PathBuf,
    grpc: String,
    registry: String,
    profile: PathBuf,
    ak: (String, String),
    ackemu: PathBuf,
}

impl Cloud {
    async fn start(dir: &Path, netns: &Netns) -> anyhow::Result<Cloud> {
        let listen = dir.join("listen.json");
        let profile = dir.join("profile.json");
        let mut cmd = netns.enter();
        cmd.arg(bin("ackemu-cloudsim", "ackemu-cloudsim")?)
            .arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--metadata-listen",
                "127.0.0.1:0",
            ])
            .args(["--registry-listen", "127.0.0.1:0"])
            .arg("--listen-file")
            .arg(&listen)
            .arg("--admin-profile-file")
            .arg(&profile)
            .arg("--hypervisor-log")
            .arg(dir.join("hypervisor.jsonl"));
        let p = Proc::spawn(cmd, &dir.join("cloudsim.log"));
        let l = listen.clone();
        let v: Value = eventually("the cloudsim listen file", || {
            let l = l.clone();
            async move {
                Ok(std::fs::read_to_string(&l)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok()))
            }
        })
        .await?;
        let pf: Value = serde_json::from_str(&std::fs::read_to_string(&profile)?)?;
        let pr = &pf["profiles"][0];
        Ok(Cloud {
            _proc: p,
            netns: netns.path(),
            grpc: format!("http://{}", v["grpc"].as_str().unwrap_or("")),
            registry: v["registry"].as_str().unwrap_or("").to_string(),
            profile,
            ak: (
                pr["access_key_id"].as_str().unwrap_or("").to_string(),
                pr["access_key_secret"].as_str().unwrap_or("").to_string(),
            ),
            ackemu: bin("ackemu", "ackemu")?,
        })
    }

    fn call(&self, action: &str, params: &[(&str, &str)]) {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.netns.display()))
            .arg(&self.ackemu)
            .arg("cloud")
            .arg("--profile-file")
            .arg(&self.profile)
            .args(["--endpoint", &self.grpc, "registry", action]);
        for (k, v) in params {
            c.arg(format!("--{k}={v}"));
        }
        let out = c.output().expect("run ackemu cloud");
        assert!(out.status.success(), "{action}: {}", text(&out));
    }
}

fn pull_req(image: &str, auth: Option<pb::AuthConfig>) -> pb::PullImageRequest {
    pb::PullImageRequest {
        image: Some(pb::ImageSpec {
            image: image.into(),
            annotations: Default::default(),
        }),
        auth,
        sandbox_config: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_image_follows_the_bearer_flow_with_pull_secret_credentials() -> anyhow::Result<()> {
    if !can_netns("pull_image_follows_the_bearer_flow_with_pull_secret_credentials") {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    // `/bin/echo` stands in for ackemu-workload: a container prints the
    // program its image names.
    let mut n = Node::start_with("172.16.13.0/24", &["--workload-binary", "/bin/echo"]).await;
    let cloud = Cloud::start(tmp.path(), &n.node).await?;
    cloud.call("CreateNamespace", &[("Namespace", "kube-easy")]);
    for (repo, kind) in [("app", "PRIVATE"), ("toolbox", "PUBLIC")] {
        cloud.call(
            "CreateRepo",
            &[
                ("RepoNamespace", "kube-easy"),
                ("RepoName", repo),
                ("RepoType", kind),
            ],
        );
    }
    for (repo, tag) in [("app", "v1"), ("toolbox", "latest")] {
        cloud.call(
            "PutImageTag",
            &[
                ("RepoNamespace", "kube-easy"),
                ("RepoName", repo),
                ("Tag", tag),
                ("Program", repo),
            ],
        );
    }
    let mut images = ImageServiceClient::new(ackemu_nodeagent::uds::channel(&n.runtime_socket()));
    let reg = &cloud.registry;

    // A public repository: an anonymous token is enough.
    let toolbox = format!("{reg}/kube-easy/toolbox:latest");
    let r = images
        .pull_image(pull_req(&toolbox, None))
        .await?
        .into_inner();
    assert!(r.image_ref.starts_with("sha256:"), "{}", r.image_ref);
    let st = images
        .image_status(pb::ImageStatusRequest {
            image: Some(pb::ImageSpec {
                image: toolbox.clone(),
                annotations: Default::default(),
            }),
            verbose: false,
        })
        .await?
        .into_inner();
    let img = st.image.expect("the pulled image is present");
    assert_eq!(img.id, r.image_ref);
    assert_eq!(img.repo_tags, vec![toolbox.clone()]);
    assert!(img.repo_digests[0].starts_with(&format!("{reg}/kube-easy/toolbox@sha256:")));

    // A private one without credentials: containerd's refusal.
    let app = format!("{reg}/kube-easy/app:v1");
    let e = images.pull_image(pull_req(&app, None)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unknown);
    assert!(
        e.message()
            .starts_with(&format!("failed to pull and unpack image \"{app}\": ")),
        "{}",
        e.message()
    );
    assert!(
        e.message()
            .contains("unauthorized: authentication required"),
        "{}",
        e.message()
    );
    // Wrong credentials: the token server says 401.
    let bad = pb::AuthConfig {
        username: cloud.ak.0.clone(),
        password: "wrong".into(),
        ..Default::default()
    };
    let e = images
        .pull_image(pull_req(&app, Some(bad)))
        .await
        .unwrap_err();
    assert!(
        e.message()
            .contains("failed to fetch oauth token: unexpected status from GET request to")
            && e.message().contains("401 Unauthorized"),
        "{}",
        e.message()
    );
    // The pull secret's dockerconfigjson `auth`.
    use base64::Engine as _;
    let good = pb::AuthConfig {
        auth: base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", cloud.ak.0, cloud.ak.1)),
        ..Default::default()
    };
    images.pull_image(pull_req(&app, Some(good))).await?;
    let listed = images
        .list_images(pb::ListImagesRequest { filter: None })
        .await?
        .into_inner()
        .images;
    assert_eq!(listed.len(), 2, "{listed:?}");
    // An unknown tag.
    let e = images
        .pull_image(pull_req(&format!("{reg}/kube-easy/toolbox:nope"), None))
        .await
        .unwrap_err();
    assert!(e.message().ends_with(": not found"), "{}", e.message());

    // A container of the pulled image runs its program.
    let sb = n.run_sandbox("default", "web").await;
    let id = n
        .run_container(
            &sb,
            "default",
            "web",
            Ctr {
                name: "app",
                image: &app,
                command: vec![],
                mounts: vec![],
                attempt: 0,
            },
        )
        .await;
    let log = n.log_path(&id).await;
    wait_for("the container printed its program", || {
        read(&log).contains("stdout F app")
    })
    .await;
    Ok(())
}
