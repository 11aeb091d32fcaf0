//! A lab for data-plane tests: cloudsim with `--hypervisor local` under a
//! per-test namespace prefix, instances booted through the API, and helpers
//! that run real tools (`ping`, `curl`, `ip`) or our own sockets inside the
//! instances' namespaces. Needs root and /dev/net/tun; tests print
//! `skipped: …` without them. Every namespace the lab creates carries the
//! prefix `ackemu-test-cs<pid>-<tag>-` and is removed on drop, even when a
//! test fails.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_cloudsim::cli::Client;
use ackemu_cloudsim::cloud::Product;
use ackemu_cloudsim::dataplane::netns;
use base64::Engine as _;
use serde_json::Value;

use crate::{Cloudsim, network, ok, poll};

pub const TRUST_ECS: &str = r#"{"Version":"1","Statement":[{"Effect":"Allow","Action":"sts:AssumeRole","Principal":{"Service":["ecs.aliyuncs.com"]}}]}"#;

/// Why the data-plane tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if let Err(e) = ackemu_cloudsim::dataplane::preflight() {
        return Some(e);
    }
    for tool in ["ping", "curl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

fn tasks() -> Tasks {
    Tasks::new(Clock::real())
}

pub struct Lab {
    pub cs: Cloudsim,
    pub c: Client,
    pub prefix: String,
    pub vpc: String,
    pub vsw: String,
    pub sg: String,
    pub rt: String,
    _tmp: tempfile::TempDir,
}

impl Lab {
    /// A cloudsim with the local hypervisor and one VPC (192.168.0.0/16,
    /// VSwitch 192.168.0.0/24, a security group); `None` (after printing
    /// `skipped:`) where the data plane cannot run.
    pub async fn start(tag: &str) -> Option<Lab> {
        Lab::start_with(tag, &[]).await
    }

    /// [`Lab::start`] with extra cloudsim flags.
    pub async fn start_with(tag: &str, extra: &[&str]) -> Option<Lab> {
        if let Some(why) = skip_reason() {
            println!("skipped: {why}");
            return None;
        }
        let prefix = format!("ackemu-test-cs{}-{tag}-", std::process::id() % 100_000);
        cleanup_prefix(&prefix);
        let tmp = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--hypervisor",
            "local",
            "--netns-prefix",
            &prefix,
            "--instance-stop-grace",
            "1s",
        ];
        if !extra.contains(&"--fabric-listen") {
            args.extend(["--fabric-listen", "127.0.0.1:0"]);
        }
        args.extend_from_slice(extra);
        let cs = Cloudsim::start(tmp.path(), &args).await;
        let c = cs.client();
        let (vpc, vsw, sg, rt) = network(&c).await;
        Some(Lab {
            cs,
            c,
            prefix,
            vpc,
            vsw,
            sg,
            rt,
            _tmp: tmp,
        })
    }

    pub fn ns(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }

    pub fn cloud_ns(&self) -> String {
        format!("{}cloud", self.prefix)
    }

    /// Runs an instance at `ip` in `groups` and waits until it is Running.
    pub async fn instance(
        &self,
        groups: &[&str],
        ip: &str,
        user_data: &str,
        role: Option<&str>,
    ) -> String {
        let ud = base64::engine::general_purpose::STANDARD.encode(user_data);
        let mut p: Vec<(&str, &str)> = vec![
            ("InstanceType", "ecs.g6.large"),
            ("VSwitchId", &self.vsw),
            ("SecurityGroupId", groups[0]),
            ("PrivateIpAddress", ip),
        ];
        let extra = serde_json::to_string(&groups[1..]).unwrap();
        if groups.len() > 1 {
            p.push(("SecurityGroupIds", &extra));
        }
        if !user_data.is_empty() {
            p.push(("UserData", &ud));
        }
        if let Some(r) = role {
            p.push(("RamRoleName", r));
        }
        let v = ok(&self.c, Product::Ecs, "RunInstances", &p).await;
        let id = v["InstanceIdSets"]["InstanceIdSet"][0]
            .as_str()
            .unwrap()
            .to_owned();
        self.wait_status(&id, "Running").await;
        id
    }

    pub async fn wait_status(&self, id: &str, want: &str) {
        poll(&format!("instance {id} to be {want}"), 60, || {
            let c = self.c.clone();
            let id = id.to_owned();
            async move {
                let v = c
                    .call_with(
                        Product::Ecs,
                        "DescribeInstances",
                        &[("InstanceIds", &format!("[\"{id}\"]"))],
                    )
                    .await
                    .ok()?;
                let i = v["Instances"]["Instance"]
                    .as_array()?
                    .iter()
                    .find(|i| i["InstanceId"] == id.as_str())?
                    .clone();
                assert!(
                    i["Status"] != "Stopped" || want == "Stopped",
                    "instance {id} stopped while waiting for {want}: {i}"
                );
                (i["Status"] == want).then_some(())
            }
        })
        .await;
    }

    /// DescribeFabricDrops with `params`.
    pub async fn drops(&self, params: &[(&str, &str)]) -> Vec<Value> {
        let v = ok(&self.c, Product::Vpc, "DescribeFabricDrops", params).await;
        v["Drops"]["Drop"].as_array().cloned().unwrap_or_default()
    }

    /// Waits until a drop record matching `params` and `pred` shows up.
    pub async fn expect_drop(
        &self,
        params: &[(&str, &str)],
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        poll("a matching drop record", 20, || {
            let fut = self.drops(params);
            let pred = &pred;
            async move { fut.await.into_iter().find(|d| pred(d)) }
        })
        .await
    }

    pub async fn route(&self, dst: &str, hop: &str) {
        ok(
            &self.c,
            Product::Vpc,
            "CreateRouteEntry",
            &[
                ("RouteTableId", &self.rt),
                ("DestinationCidrBlock", dst),
                ("NextHopId", hop),
            ],
        )
        .await;
    }

    /// Stops cloudsim with SIGTERM and starts it again on the same data
    /// directory with `extra` flags.
    pub async fn restart(&mut self, extra: &[&str]) {
        let st = self.cs.terminate().await;
        assert!(st.success(), "cloudsim exited with {st}");
        let mut args = vec![
            "--hypervisor",
            "local",
            "--netns-prefix",
            &self.prefix,
            "--instance-stop-grace",
            "1s",
        ];
        args.extend_from_slice(extra);
        self.cs = Cloudsim::start(self._tmp.path(), &args).await;
        self.c = self.cs.client();
    }

    /// The fabric's underlay address (from the listen file).
    pub fn fabric_addr(&self) -> String {
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(self.cs.dir.join("listen.json")).unwrap(),
        )
        .unwrap();
        v["fabric"].as_str().unwrap().to_owned()
    }

    /// SIGTERM (instances are powered off), then checks that nothing with
    /// the prefix is left: namespaces, processes.
    pub async fn shutdown(mut self) {
        let st = self.cs.terminate().await;
        assert!(st.success(), "cloudsim exited with {st}");
        assert_eq!(
            leftover_netns(&self.prefix),
            Vec::<String>::new(),
            "namespaces left behind"
        );
        assert_eq!(
            leftover_processes(&self.prefix),
            Vec::<String>::new(),
            "processes left behind"
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        cleanup_prefix(&self.prefix);
    }
}

pub fn leftover_netns(prefix: &str) -> Vec<String> {
    netns::list()
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// Processes whose command line names the prefix (NICs carry `--netns
/// <prefix>…`).
pub fn leftover_processes(prefix: &str) -> Vec<String> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.parse::<i32>().ok())
        .filter(|p| *p != me && netns::alive(*p))
        .map(|p| (p, netns::cmdline(p)))
        .filter(|(_, c)| c.contains(prefix))
        .map(|(p, c)| format!("{p}: {c}"))
        .collect()
}

/// Kills whatever is inside namespaces with `prefix` and deletes them.
pub fn cleanup_prefix(prefix: &str) {
    for ns in leftover_netns(prefix) {
        for p in netns::pids_in(&ns) {
            netns::signal(p, nix::sys::signal::Signal::SIGKILL);
        }
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    }
}

/// `ip netns exec <ns> sh -c <script>`.
pub fn sh(ns: &str, script: &str) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c", script])
        .stdin(Stdio::null())
        .output()
        .expect("running ip netns exec")
}

pub fn sh_ok(ns: &str, script: &str) -> String {
    let o = sh(ns, script);
    assert!(
        o.status.success(),
        "{script} in {ns}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// One ICMP echo from `ns` (optionally from address `src`).
pub fn ping(ns: &str, dst: &str, src: Option<&str>) -> bool {
    let mut args = vec!["netns", "exec", ns, "ping", "-n", "-c", "1", "-W", "2"];
    if let Some(s) = src {
        args.extend(["-I", s]);
    }
    args.push(dst);
    Command::new("ip")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Retries `ping` until it succeeds (bounded).
pub async fn ping_eventually(ns: &str, dst: &str, src: Option<&str>) {
    poll(&format!("ping {dst} from {ns}"), 20, || {
        let r = ping(ns, dst, src);
        async move { r.then_some(()) }
    })
    .await;
}

/// Runs `f` on a thread inside namespace `ns`.
pub fn in_ns<R: Send + 'static>(ns: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let ns = ns.to_owned();
    tasks()
        .spawn_thread("test/in-netns", move || {
            netns::enter(&ns).unwrap();
            f()
        })
        .join()
        .expect("netns thread panicked")
}

/// A server running inside a namespace until stopped (or dropped).
pub struct Server {
    stop: Arc<AtomicBool>,
    fd: std::os::fd::OwnedFd,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = nix::sys::socket::shutdown(
            std::os::fd::AsRawFd::as_raw_fd(&self.fd),
            nix::sys::socket::Shutdown::Both,
        );
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.halt();
    }
}

/// A TCP server in `ns` on `addr` that answers every connection with
/// `reply` and closes it.
pub fn tcp_server(ns: &str, addr: SocketAddr, reply: &str) -> Server {
    let l: TcpListener = in_ns(ns, move || {
        TcpListener::bind(addr).expect("binding the test server")
    });
    let fd = std::os::fd::OwnedFd::from(l.try_clone().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let reply = reply.to_owned();
    let thread = tasks().spawn_thread("test/tcp-server", move || {
        while !s.load(Ordering::SeqCst) {
            match l.accept() {
                Ok((mut c, _)) => {
                    let _ = c.write_all(reply.as_bytes());
                }
                Err(_) => break,
            }
        }
    });
    Server {
        stop,
        fd,
        thread: Some(thread),
    }
}

/// A UDP server in `ns` on `addr` echoing every datagram.
pub fn udp_echo(ns: &str, addr: SocketAddr) -> Server {
    let u: UdpSocket = in_ns(ns, move || {
        UdpSocket::bind(addr).expect("binding the test udp server")
    });
    let fd = std::os::fd::OwnedFd::from(u.try_clone().unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let thread = tasks().spawn_thread("test/udp-echo", move || {
        let mut buf = [0u8; 2048];
        while !s.load(Ordering::SeqCst) {
            match u.recv_from(&mut buf) {
                Ok((0, _)) => break,
                Ok((n, from)) => {
                    let _ = u.send_to(&buf[..n], from);
                }
                Err(_) => break,
            }
        }
    });
    Server {
        stop,
        fd,
        thread: Some(thread),
    }
}

/// Connects from `ns` (bound to `src` if given) to `dst` and reads until
/// the server closes. Errors (refused, timed out) come back as text.
pub fn tcp_get(
    ns: &str,
    src: Option<Ipv4Addr>,
    dst: SocketAddr,
    timeout: Duration,
) -> Result<String, String> {
    in_ns(ns, move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let sock = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
            if let Some(s) = src {
                sock.bind(SocketAddr::V4(SocketAddrV4::new(s, 0)))
                    .map_err(|e| e.to_string())?;
            }
            let clock = Clock::real();
            let stream = clock
                .timeout(timeout, sock.connect(dst))
                .await
                .map_err(|_| "connect timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let mut std_stream = stream.into_std().map_err(|e| e.to_string())?;
            std_stream
                .set_nonblocking(false)
                .map_err(|e| e.to_string())?;
            std_stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            let mut out = String::new();
            std_stream
                .read_to_string(&mut out)
                .map_err(|e| e.to_string())?;
            Ok(out)
        })
    })
}

/// Sends one datagram from `ns` (from `src` if given) to `dst` and waits
/// for the answer.
pub fn udp_ask(
    ns: &str,
    src: Option<Ipv4Addr>,
    dst: SocketAddr,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    in_ns(ns, move || {
        let u = UdpSocket::bind(SocketAddrV4::new(src.unwrap_or(Ipv4Addr::UNSPECIFIED), 0))
            .map_err(|e| e.to_string())?;
        u.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        u.send_to(b"ackemu?", dst).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2048];
        let (n, _) = u.recv_from(&mut buf).map_err(|e| e.to_string())?;
        Ok(buf[..n].to_vec())
    })
}

/// Host addresses (`ip -o addr` in the host namespace).
pub fn host_addrs() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "addr"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

pub fn host_routes() -> String {
    String::from_utf8_lossy(
        &Command::new("ip")
            .args(["route", "show", "table", "all"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}
