//! S01: the bus cookie overflows, runc blocks, daemon-reexec recovers; the
//! cookie fix prevents it; units are supervised.

use std::path::Path;
use std::process::Command;

use crate::util::{BIN, Proc, node, text, wait_for, wait_socket};

struct Node {
    dir: tempfile::TempDir,
    systemd: Proc,
}

impl Node {
    async fn start(extra: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        let mut cmd = Command::new(BIN);
        cmd.arg("systemd").arg("--run-dir").arg(&run).args(extra);
        let systemd = Proc::spawn(cmd, &dir.path().join("systemd.log"));
        wait_socket(&run.join("systemd/private")).await;
        wait_socket(&run.join("dbus/system_bus_socket")).await;
        Node { dir, systemd }
    }
    fn run_dir(&self) -> String {
        self.dir.path().join("run").display().to_string()
    }
    fn bundle(&self, id: &str) -> String {
        let b = self.dir.path().join(format!("bundle-{id}"));
        std::fs::create_dir_all(&b).unwrap();
        let spec = serde_json::json!({
            "process": {"args": ["/bin/sleep", "1000"], "env": ["A=1"], "cwd": "/"},
            "cgroupsPath": format!("kubepods-besteffort-pod{id}.slice:cri-ackemu:{id}"),
        });
        std::fs::write(b.join("config.json"), spec.to_string()).unwrap();
        b.display().to_string()
    }
    fn runc_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("runc")
            .arg("--run-dir")
            .arg(self.run_dir())
            .arg("--root")
            .arg(self.dir.path().join("runc"))
            .args(args);
        c
    }
    fn runc(&self, args: &[&str]) -> std::process::Output {
        self.runc_cmd(args).output().unwrap()
    }
    fn run_container(&self, id: &str) {
        let b = self.bundle(id);
        let out = self.runc(&["run", "--detach", "--bundle", &b, id]);
        assert!(out.status.success(), "runc run {id}: {}", text(&out));
    }
    fn ctl(&self, tool: &str, args: &[&str]) -> String {
        let mut a = vec![tool, "--run-dir"];
        let rd = self.run_dir();
        a.push(&rd);
        a.extend_from_slice(args);
        text(&node(&a))
    }
    fn cleanup(&self, ids: &[&str]) {
        for id in ids {
            let _ = self.runc(&["delete", "--force", id]);
        }
    }
}

/// Run containers one after another until one's runc blocks on the bus;
/// returns the blocked runc and the ids started.
async fn churn_until_blocked(n: &Node) -> (Proc, Vec<String>) {
    let mut ids = Vec::new();
    for i in 0..20 {
        let id = format!("c{i}");
        let b = n.bundle(&id);
        let mut p = Proc::spawn(
            n.runc_cmd(&["run", "--detach", "--bundle", &b, &id]),
            &n.dir.path().join(format!("runc-{id}.log")),
        );
        ids.push(id);
        let pid = p.pid().to_string();
        let mut blocked = false;
        wait_for("runc finishes or blocks on the bus", || {
            if !p.running() {
                return true;
            }
            let s = n.ctl("busctl", &["status"]);
            blocked = s.contains("CookieOverflow=yes") && s.contains(&pid);
            blocked
        })
        .await;
        if blocked {
            return (p, ids);
        }
        assert!(
            p.child.wait().unwrap().success(),
            "runc before the overflow: {}",
            p.log_text()
        );
    }
    panic!("20 container starts did not overflow the cookie");
}

#[tokio::test]
async fn cookie_overflow_blocks_runc_until_daemon_reexec() {
    let n = Node::start(&["--initial-cookie", "0xffffffd0"]).await;
    let (mut stuck, ids) = churn_until_blocked(&n).await;
    assert!(ids.len() > 1, "the first containers start normally");
    let status = n.ctl("busctl", &["status"]);
    assert!(status.contains("EOPNOTSUPP"), "{status}");
    assert!(status.contains("PendingCalls=1"), "{status}");
    assert!(stuck.running(), "runc must still be blocked on the bus");
    let overview = n.ctl("systemctl", &["status"]);
    assert!(overview.contains("> 0xffffffff"), "{overview}");
    assert!(
        n.systemd.log_text().contains("Failed to process message")
            || n.systemd.log_text().contains("Failed to send"),
        "systemd logs the seal failure: {}",
        n.systemd.log_text()
    );
    // Still blocked later: nothing times out.
    let again = n.ctl("busctl", &["status"]);
    assert!(
        again.contains(&stuck.pid().to_string()) && stuck.running(),
        "{again}"
    );

    // The heal: systemctl daemon-reexec over the private socket.
    let out = node(&["systemctl", "--run-dir", &n.run_dir(), "daemon-reexec"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("the blocked runc is released", || !stuck.running()).await;
    // Released either by the bus' NoReply for its unanswered call or by
    // the re-executed systemd announcing the job it could not report.
    let released = stuck.child.wait().unwrap().success() || stuck.log_text().contains("NoReply");
    assert!(released, "{}", stuck.log_text());
    let after = n.ctl("busctl", &["status"]);
    assert!(
        after.contains("CookieOverflow=no") && after.contains("Reexecs=1"),
        "{after}"
    );
    assert!(after.contains("PendingCalls=0"), "{after}");

    n.run_container("after");
    let mut all: Vec<&str> = ids.iter().map(String::as_str).collect();
    all.push("after");
    n.cleanup(&all);
}

#[tokio::test]
async fn cookie_fix_wraps_and_runc_keeps_working() {
    let n = Node::start(&["--initial-cookie", "0xffffffe0", "--cookie-fix"]).await;
    for id in ["f1", "f2", "f3"] {
        n.run_container(id);
        let out = n.runc(&["delete", "--force", id]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let s = n.ctl("busctl", &["status"]);
    assert!(s.contains("Cookie=0x800000"), "wrapped to 0x80000000: {s}");
    assert!(
        s.contains("CookieOverflow=no") && s.contains("SealFailures=0"),
        "{s}"
    );
}

#[tokio::test]
async fn failpoint_sets_the_cookie_like_gdb() {
    let n = Node::start(&["--failpoints", "systemd/bus/seal=1*return(0xfffffffe)"]).await;
    let b = n.bundle("g1");
    let mut stuck = Proc::spawn(
        n.runc_cmd(&["run", "--detach", "--bundle", &b, "g1"]),
        &n.dir.path().join("runc-g1.log"),
    );
    let pid = stuck.pid().to_string();
    wait_for("overflow after the failpoint moved the cookie", || {
        let s = n.ctl("busctl", &["status"]);
        s.contains("CookieOverflow=yes") && s.contains(&pid)
    })
    .await;
    assert!(stuck.running());
    let out = node(&["systemctl", "--run-dir", &n.run_dir(), "daemon-reexec"]);
    assert!(out.status.success(), "{}", text(&out));
    wait_for("runc released", || !stuck.running()).await;
    n.cleanup(&["g1"]);
}

fn write_unit(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), body).unwrap();
}

#[tokio::test]
async fn units_restart_and_stop() {
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    write_unit(
        &units,
        "crashy.service",
        "[Unit]\nDescription=crashes\nStartLimitBurst=3\nStartLimitIntervalSec=1h\n\
         [Service]\nExecStart=/bin/sh -c \"echo started; exit 3\"\nRestart=on-failure\nRestartSec=10ms\n\
         [Install]\nWantedBy=multi-user.target\n",
    );
    write_unit(
        &units,
        "sleeper.service",
        "[Service]\nExecStart=/bin/sleep 1000\nRestart=always\n[Install]\nWantedBy=multi-user.target\n",
    );
    let run = dir.path().join("run");
    let mut cmd = Command::new(BIN);
    cmd.arg("systemd")
        .arg("--run-dir")
        .arg(&run)
        .arg("--unit-dir")
        .arg(&units);
    let mut sd = Proc::spawn(cmd, &dir.path().join("systemd.log"));
    wait_socket(&run.join("systemd/private")).await;
    let rd = run.display().to_string();
    let status = |u: &str| text(&node(&["systemctl", "--run-dir", &rd, "status", u]));
    wait_for("crashy hits the start limit", || {
        status("crashy.service").contains("start-limit-hit")
    })
    .await;
    assert!(
        status("crashy.service").contains("Restarts: 3"),
        "{}",
        status("crashy.service")
    );
    let log = std::fs::read_to_string(run.join("journal/crashy.service.log")).unwrap();
    assert_eq!(log.matches("started").count(), 3, "{log}");

    wait_for("sleeper runs", || {
        status("sleeper.service").contains("active (running)")
    })
    .await;
    let s = status("sleeper.service");
    let pid: u32 = s
        .lines()
        .find_map(|l| l.trim().strip_prefix("Main PID: "))
        .and_then(|p| p.trim().parse().ok())
        .expect("main pid");
    let out = node(&["systemctl", "--run-dir", &rd, "stop", "sleeper.service"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(status("sleeper.service").contains("inactive"));
    wait_for("sleeper's process is gone", || {
        !ackemu_nodeagent::proc::alive(pid)
    })
    .await;
    let out = node(&["systemctl", "--run-dir", &rd, "start", "nope.service"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    sd.terminate().await;
}
