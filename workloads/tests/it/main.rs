//! The workload programs as real processes, checked with real tools where
//! they exist (`dig` against our DNS server).

mod cluster_dns;
mod harness;
mod mesh;
mod metrics_server;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_ackemu-workload");

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a long-running program and return it with the first line it
/// printed on `stream` that contains `marker`.
fn start(args: &[&str], marker: &str, from_stderr: bool) -> (Proc, String) {
    let mut c = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stream: Box<dyn std::io::Read + Send> = if from_stderr {
        Box::new(c.stderr.take().unwrap())
    } else {
        Box::new(c.stdout.take().unwrap())
    };
    let mut lines = BufReader::new(stream).lines();
    let line = loop {
        let l = lines
            .next()
            .expect("program exited before announcing itself")
            .unwrap();
        if l.contains(marker) {
            break l;
        }
    };
    (Proc(c), line)
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| stdout(&o).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn app_answers_the_seed_text_and_wget_reports_errors_like_busybox() {
    let (_app, line) = start(&["app", "--listen", "127.0.0.1:0"], "listening on", true);
    let addr = line.rsplit(' ').next().unwrap().to_string();
    let o = run(&["wget", "-q", "-O", "-", &format!("http://{addr}/")], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "This is a small app for kubernetes...\n");

    let o = run(
        &["wget", "-q", "-O", "-", &format!("http://{addr}/missing")],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("server returned error: HTTP/1.1 404 Not Found"),
        "{}",
        stderr(&o)
    );

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let o = run(
        &["wget", "-q", "-O", "-", &format!("http://{closed}/")],
        &[],
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("can't connect to remote host (127.0.0.1): Connection refused"),
        "{}",
        stderr(&o)
    );
    let o = run(&["wget", "-O", "-", "https://127.0.0.1/"], &[]);
    assert!(stderr(&o).contains("unsupported scheme"), "{}", stderr(&o));
}

fn zone_file(dir: &std::path::Path) -> String {
    let zone = serde_json::json!({
        "services": [
            {"metadata": {"name": "kube-dns", "namespace": "kube-system"},
             "spec": {"clusterIP": "172.19.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}},
            {"metadata": {"name": "istio-pilot", "namespace": "istio-system"},
             "spec": {"clusterIP": "172.19.3.4", "ports": [{"name": "grpc", "port": 15010}]}}
        ],
        "endpoints": []
    });
    let p = dir.join("zone.json");
    std::fs::write(&p, zone.to_string()).unwrap();
    p.display().to_string()
}

#[test]
fn dns_server_answers_dig_and_our_nslookup() {
    let dir = tempfile::tempdir().unwrap();
    let zf = zone_file(dir.path());
    let (_dns, line) = start(
        &[
            "dns",
            "--listen",
            "127.0.0.1:0",
            "--static-zone",
            &zf,
            // Not CoreDNS's fixed 8181/8080: other tests run beside this one.
            "--ready-listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
        ],
        "serving DNS",
        false,
    );
    let addr: std::net::SocketAddr = line.rsplit(' ').next().unwrap().parse().unwrap();
    let port = addr.port().to_string();

    // Real peer: dig, over UDP and TCP.
    if Command::new("dig").arg("-v").output().is_ok() {
        for proto in ["+notcp", "+tcp"] {
            let o = Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &port,
                    proto,
                    "+short",
                    "istio-pilot.istio-system.svc.cluster.local",
                ])
                .output()
                .unwrap();
            assert_eq!(
                stdout(&o).trim(),
                "172.19.3.4",
                "dig {proto}: {}",
                stderr(&o)
            );
        }
        let o = Command::new("dig")
            .args(["@127.0.0.1", "-p", &port, "nope.default.svc.cluster.local"])
            .output()
            .unwrap();
        assert!(stdout(&o).contains("status: NXDOMAIN"), "{}", stdout(&o));
        let o = Command::new("dig")
            .args([
                "@127.0.0.1",
                "-p",
                &port,
                "+short",
                "SRV",
                "_dns._udp.kube-dns.kube-system.svc.cluster.local",
            ])
            .output()
            .unwrap();
        assert_eq!(
            stdout(&o).trim(),
            "0 100 53 kube-dns.kube-system.svc.cluster.local."
        );
    } else {
        println!("skipped: dig not installed (dnsutils)");
    }

    // Our nslookup with a pod's resolv.conf: the search list finds the
    // short name.
    let rc = dir.path().join("resolv.conf");
    std::fs::write(
        &rc,
        "nameserver 127.0.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n",
    )
    .unwrap();
    let env = [("ACKEMU_RESOLV_CONF", rc.to_str().unwrap())];
    let o = run(
        &[
            "nslookup",
            &format!("-port={port}"),
            "istio-pilot.istio-system",
        ],
        &env,
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "Server:\t\t127.0.0.1\nAddress:\t127.0.0.1#{port}\n\nName:\tistio-pilot.istio-system.svc.cluster.local\nAddress: 172.19.3.4\n\n"
        )
    );
    let o = run(
        &[
            "nslookup",
            &format!("-port={port}"),
            "nope.default.svc.cluster.local.",
        ],
        &env,
    );
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("** server can't find nope.default.svc.cluster.local.: NXDOMAIN"),
        "{}",
        stdout(&o)
    );
    // Outside the cluster domain with no upstream: SERVFAIL.
    let o = run(
        &["nslookup", &format!("-port={port}"), "www.aliyun.com."],
        &env,
    );
    assert!(
        stdout(&o).contains("** server can't find www.aliyun.com.: SERVFAIL"),
        "{}",
        stdout(&o)
    );
    // Reverse lookup of the DNS service IP.
    let o = run(&["nslookup", &format!("-port={port}"), "172.19.0.10"], &env);
    assert!(
        stdout(&o)
            .contains("10.0.19.172.in-addr.arpa\tname = kube-dns.kube-system.svc.cluster.local."),
        "{}",
        stdout(&o)
    );
}

#[test]
fn nslookup_times_out_when_the_server_never_answers() {
    // A socket that receives and never replies: the S04 symptom's shape.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let o = run(
        &[
            "nslookup",
            "-timeout=1",
            "-retry=0",
            &format!("-port={port}"),
            "kube-dns.kube-system.svc.cluster.local.",
            "127.0.0.1",
        ],
        &[],
    );
    assert!(!o.status.success());
    assert_eq!(
        stdout(&o),
        ";; connection timed out; no servers could be reached\n\n"
    );
}

#[test]
fn telnet_reports_connected_and_refused() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port().to_string();
    let o = run(&["telnet", "127.0.0.1", &port], &[]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("Connected to 127.0.0.1."));
    drop(l);
    let o = run(&["telnet", "127.0.0.1", &port], &[]);
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("telnet: Unable to connect to remote host: Connection refused"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn ping_prints_iputils_statistics() {
    if !is_root() {
        println!("skipped: ping needs root (raw ICMP socket)");
        return;
    }
    let o = run(&["ping", "-c", "2", "-i", "0.2", "127.0.0.1"], &[]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with("PING 127.0.0.1 (127.0.0.1) 56(84) bytes of data.\n"),
        "{out}"
    );
    assert!(
        out.contains("64 bytes from 127.0.0.1: icmp_seq=1 ttl=64 time="),
        "{out}"
    );
    assert!(
        out.contains("2 packets transmitted, 2 received, 0% packet loss"),
        "{out}"
    );

    // In a namespace with only loopback, a remote address is unreachable
    // (nothing leaves the namespace).
    let ns = format!("ackemu-test-wl-{}", std::process::id());
    if Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    {
        let o = Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                BIN,
                "ping",
                "-c",
                "1",
                "-W",
                "0.2",
                "172.16.9.9",
            ])
            .output()
            .unwrap();
        let _ = Command::new("ip").args(["netns", "del", &ns]).status();
        assert!(!o.status.success());
        let out = stdout(&o);
        assert!(
            out.contains("ping: sendmsg: Network is unreachable"),
            "{out}"
        );
        assert!(
            out.contains("0 packets transmitted, 0 received, 100% packet loss"),
            "{out}"
        );
    } else {
        println!("skipped: cannot create a network namespace");
    }
}

#[test]
fn sleep_pause_and_bad_input() {
    let o = run(&["sleep", "0.05"], &[]);
    assert!(o.status.success());
    let o = run(&["sleep", "soon"], &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("invalid time interval 'soon'"));
    let o = run(&["frobnicate"], &[]);
    assert!(stderr(&o).contains("unknown program \"frobnicate\""));
    let o = Command::new(BIN).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("usage: ackemu-workload"));

    // pause holds until SIGTERM, then exits cleanly.
    let mut c = Command::new(BIN).arg("pause").spawn().unwrap();
    let pid = c.id().to_string();
    // SIGTERM ends it: cleanly once its handler is installed, by the signal
    // if it arrives earlier.
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let st = c.wait().unwrap();
    assert!(st.success() || std::os::unix::process::ExitStatusExt::signal(&st) == Some(15));
}
