//! Liveness, readiness and startup probes. The thresholds are pure
//! ([`Tracker`]); the checks run from inside the pod's network namespace
//! (a thread joins it and makes the connection there), exec probes through
//! the runtime's `ExecSync`.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use ackemu_kube::api::core::v1::{Container, Probe};
use ackemu_kube::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::cri::Cri;

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    /// Restart when failing.
    Liveness,
    /// READY when passing.
    Readiness,
    /// Gate the other two until it passes once.
    Startup,
}

impl ProbeKind {
    /// `Liveness` etc., as in events.
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
    /// The probe of `c` of this kind.
    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
            ProbeKind::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// Consecutive-result thresholds (`successThreshold`, `failureThreshold`).
#[derive(Debug, Clone)]
pub struct Tracker {
    success_threshold: u32,
    failure_threshold: u32,
    /// The published result.
    pub result: bool,
    ok_run: u32,
    fail_run: u32,
}

impl Tracker {
    /// Initial results as Kubernetes has them: readiness and startup start
    /// failed, liveness successful.
    pub fn new(kind: ProbeKind, p: &Probe) -> Tracker {
        Tracker {
            success_threshold: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: p.failure_threshold.unwrap_or(3).max(1) as u32,
            result: kind == ProbeKind::Liveness,
            ok_run: 0,
            fail_run: 0,
        }
    }

    /// Has the failure threshold been reached by the current run of failures?
    pub fn failed(&self) -> bool {
        self.fail_run >= self.failure_threshold
    }

    /// Observe one check; returns true when the published result changed.
    pub fn observe(&mut self, ok: bool) -> bool {
        if ok {
            self.ok_run += 1;
            self.fail_run = 0;
        } else {
            self.fail_run += 1;
            self.ok_run = 0;
        }
        let next = if ok && self.ok_run >= self.success_threshold {
            true
        } else if !ok && self.fail_run >= self.failure_threshold {
            false
        } else {
            self.result
        };
        let changed = next != self.result;
        self.result = next;
        changed
    }
}

/// Where a probe runs.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pod's IP (default host of HTTP and TCP probes).
    pub pod_ip: String,
    /// The pod's network namespace.
    pub netns: PathBuf,
    /// The container (exec probes).
    pub container_id: String,
}

fn port_of(port: &IntOrString, c: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port number: {p}")),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", c.name))
        }
    }
}

fn dial_error(addr: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => {
            format!("dial tcp {addr}: connect: connection refused")
        }
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
            format!("dial tcp {addr}: i/o timeout")
        }
        _ => format!("dial tcp {addr}: connect: {e}"),
    }
}

/// Connect to `addr` from inside `netns` (a thread joins it for the call).
async fn in_netns<T: Send + 'static>(
    tasks: &Tasks,
    netns: PathBuf,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    tasks.spawn_thread("kubelet/probe-netns", move || {
        let r = std::fs::File::open(&netns)
            .map_err(|e| format!("opening {}: {e}", netns.display()))
            .and_then(|ns| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("entering {}: {e}", netns.display()))
            })
            .and_then(|()| f());
        let _ = tx.send(r);
    });
    rx.await.map_err(|_| "the probe thread died".to_string())?
}

/// Run one check: `Ok(())` passes, `Err(output)` fails with the message the
/// Unhealthy event carries.
pub async fn check(
    p: &Probe,
    c: &Container,
    t: &Target,
    cri: &Cri,
    tasks: &Tasks,
    clock: &Clock,
) -> Result<(), String> {
    let timeout_s = p.timeout_seconds.unwrap_or(1).max(1) as i64;
    let timeout = clock.to_real(Duration::from_secs(timeout_s as u64));
    if let Some(h) = &p.http_get {
        let port = port_of(&h.port, c)?;
        let host = h
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or(t.pod_ip.clone());
        let scheme = h.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let path = h
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or("/".into());
        let addr = format!("{host}:{port}");
        let url = format!("{scheme}://{addr}{path}");
        if scheme != "http" {
            return Err(format!(
                "Get \"{url}\": the kubelet probes HTTP only; scheme {scheme} is not available"
            ));
        }
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|hh| (hh.name.clone(), hh.value.clone()))
            .collect();
        let sock: SocketAddr = addr
            .parse()
            .map_err(|e| format!("Get \"{url}\": invalid address {addr}: {e}"))?;
        return in_netns(tasks, t.netns.clone(), move || {
            let mut s = TcpStream::connect_timeout(&sock, timeout)
                .map_err(|e| format!("Get \"{url}\": {}", dial_error(&addr, &e)))?;
            let _ = s.set_read_timeout(Some(timeout));
            let _ = s.set_write_timeout(Some(timeout));
            let mut req = format!(
                "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
            );
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            req.push_str("\r\n");
            s.write_all(req.as_bytes()).map_err(|e| format!("Get \"{url}\": write: {e}"))?;
            let mut buf = [0u8; 512];
            let mut got = Vec::new();
            while !got.windows(2).any(|w| w == b"\r\n") {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => {
                        return Err(format!(
                            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
                        ));
                    }
                }
            }
            let line = String::from_utf8_lossy(&got);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response {:?}", line.lines().next().unwrap_or("")))?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("HTTP probe failed with statuscode: {code}"))
            }
        })
        .await;
    }
    if let Some(tcp) = &p.tcp_socket {
        let port = port_of(&tcp.port, c)?;
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or(t.pod_ip.clone());
        let addr = format!("{host}:{port}");
        let sock: SocketAddr = addr
            .parse()
            .map_err(|e| format!("invalid address {addr}: {e}"))?;
        return in_netns(tasks, t.netns.clone(), move || {
            TcpStream::connect_timeout(&sock, timeout)
                .map(|_| ())
                .map_err(|e| dial_error(&addr, &e))
        })
        .await;
    }
    if let Some(e) = &p.exec {
        let cmd = e.command.clone().unwrap_or_default();
        let r = cri
            .exec_sync(&t.container_id, cmd.clone(), timeout_s)
            .await
            .map_err(|e| e.to_string())?;
        if r.exit_code == 0 {
            return Ok(());
        }
        let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
        out.push_str(&String::from_utf8_lossy(&r.stderr));
        let out = out.trim().to_string();
        return Err(if out.is_empty() {
            format!("command {cmd:?} exited with {}", r.exit_code)
        } else {
            out
        });
    }
    Err("probe has no handler: expected exec, httpGet or tcpSocket".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        let p = Probe {
            success_threshold: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        };
        let mut r = Tracker::new(ProbeKind::Readiness, &p);
        assert!(!r.result);
        assert!(!r.observe(true));
        assert!(r.observe(true), "second success flips readiness");
        assert!(r.result);
        assert!(!r.observe(false));
        assert!(!r.observe(false));
        assert!(r.observe(false), "third failure flips it back");
        assert!(!r.result);
        let mut l = Tracker::new(ProbeKind::Liveness, &Probe::default());
        assert!(l.result, "liveness starts healthy");
        assert!(!l.observe(false));
        assert!(!l.observe(false));
        assert!(l.observe(false));
        assert!(!l.result);
    }

    #[test]
    fn named_ports_resolve() {
        let c = Container {
            name: "app".into(),
            ports: Some(vec![ackemu_kube::api::core::v1::ContainerPort {
                name: Some("http".into()),
                container_port: 2580,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(port_of(&IntOrString::String("http".into()), &c), Ok(2580));
        assert_eq!(port_of(&IntOrString::Int(80), &c), Ok(80));
        assert!(port_of(&IntOrString::String("grpc".into()), &c).is_err());
    }
}
