//! Integration tests: start the real `ackemu-cloudsim` binary and drive it
//! through the gRPC API, the CLI module and `curl`.

mod api;
mod dataplane;
mod netlab;
mod registry;
mod sts;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_cloudsim::auth::Credentials;
use ackemu_cloudsim::cli::{Client, ProfileFile};
use ackemu_cloudsim::cloud::Product;
use serde_json::Value;

pub struct Cloudsim {
    child: Child,
    pub dir: PathBuf,
    pub grpc: String,
    pub metadata: String,
    pub registry: String,
    pub profile_file: PathBuf,
    pub creds: Credentials,
}

/// Polls `f` until it returns `Some`, for at most `secs` seconds.
pub async fn poll<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let clock = Clock::real();
    let deadline = clock.now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(clock.now() < deadline, "timed out waiting for {what}");
        clock.sleep(Duration::from_millis(50)).await;
    }
}

impl Cloudsim {
    pub async fn start(dir: &Path, extra: &[&str]) -> Cloudsim {
        let listen_file = dir.join("listen.json");
        let _ = std::fs::remove_file(&listen_file);
        let profile_file = dir.join("profile.json");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ackemu-cloudsim"));
        cmd.arg("--data-dir")
            .arg(dir.join("data"))
            .args([
                "--grpc-listen",
                "127.0.0.1:0",
                "--metadata-listen",
                "127.0.0.1:0",
                "--registry-listen",
                "127.0.0.1:0",
            ])
            .arg("--listen-file")
            .arg(&listen_file)
            .arg("--admin-profile-file")
            .arg(&profile_file)
            .arg("--hypervisor-log")
            .arg(dir.join("hypervisor.jsonl"))
            .args([
                "--instance-start-delay",
                "0s",
                "--metadata-trust-forwarded-for",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let child = cmd.spawn().expect("starting ackemu-cloudsim");
        let listen: Value = poll("cloudsim listen file", 60, || {
            let f = listen_file.clone();
            async move {
                std::fs::read_to_string(&f)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
            }
        })
        .await;
        let profile: ProfileFile =
            serde_json::from_str(&std::fs::read_to_string(&profile_file).unwrap()).unwrap();
        let p = &profile.profiles[0];
        Cloudsim {
            child,
            dir: dir.to_owned(),
            grpc: format!("http://{}", listen["grpc"].as_str().unwrap()),
            metadata: listen["metadata"].as_str().unwrap().to_owned(),
            registry: listen["registry"].as_str().unwrap().to_owned(),
            profile_file,
            creds: Credentials {
                access_key_id: p.access_key_id.clone(),
                access_key_secret: p.access_key_secret.clone(),
                security_token: None,
            },
        }
    }

    pub fn client(&self) -> Client {
        Client::new(&self.grpc, self.creds.clone(), Clock::real()).unwrap()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the process to exit (graceful shutdown).
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        poll("cloudsim to exit after SIGTERM", 60, || {
            let st = self.child.try_wait().ok().flatten();
            async move { st }
        })
        .await
    }

    /// Hypervisor events recorded so far.
    pub fn hypervisor_events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("hypervisor.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Cloudsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Calls and unwraps.
pub async fn ok(c: &Client, p: Product, action: &str, params: &[(&str, &str)]) -> Value {
    match c.call_with(p, action, params).await {
        Ok(v) => v,
        Err(e) => panic!("{action} failed: {e}"),
    }
}

/// Calls, expects an error, returns its code.
pub async fn err_code(c: &Client, p: Product, action: &str, params: &[(&str, &str)]) -> String {
    match c.call_with(p, action, params).await {
        Ok(v) => panic!("{action} unexpectedly succeeded: {v}"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("{action}: not an API error: {e}"))
            .to_owned(),
    }
}

pub fn params(p: &[(&str, &str)]) -> BTreeMap<String, String> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A VPC with one VSwitch and one security group; returns their ids.
pub async fn network(c: &Client) -> (String, String, String, String) {
    let v = ok(
        c,
        Product::Vpc,
        "CreateVpc",
        &[("CidrBlock", "192.168.0.0/16"), ("VpcName", "ackvpc")],
    )
    .await;
    let vpc = v["VpcId"].as_str().unwrap().to_owned();
    let rt = v["RouteTableId"].as_str().unwrap().to_owned();
    let w = ok(
        c,
        Product::Vpc,
        "CreateVSwitch",
        &[
            ("VpcId", &vpc),
            ("ZoneId", "cn-hangzhou-b"),
            ("CidrBlock", "192.168.0.0/24"),
        ],
    )
    .await;
    let vsw = w["VSwitchId"].as_str().unwrap().to_owned();
    let g = ok(
        c,
        Product::Ecs,
        "CreateSecurityGroup",
        &[("VpcId", &vpc), ("SecurityGroupName", "k8s-sg")],
    )
    .await;
    (
        vpc,
        vsw,
        g["SecurityGroupId"].as_str().unwrap().to_owned(),
        rt,
    )
}
