//! S02: the CNI plugin binary against cnid in a node namespace.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::util::{BIN, Netns, Proc, can_netns, list_netns, netns_name, wait_for, wait_socket};

struct Cnid {
    dir: tempfile::TempDir,
    node: Netns,
    proc: Option<Proc>,
}

impl Cnid {
    async fn start(extra: &[&str], failpoints: &str) -> Cnid {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(BIN, dir.path().join("ackemu-cni")).unwrap();
        let node = Netns::new("node");
        let mut c = Cnid {
            dir,
            node,
            proc: None,
        };
        c.restart(extra, failpoints).await;
        c
    }
    fn socket(&self) -> String {
        self.dir.path().join("cnid.sock").display().to_string()
    }
    async fn restart(&mut self, extra: &[&str], failpoints: &str) {
        self.proc = None;
        let mut cmd = self.node.enter();
        cmd.arg(BIN)
            .args([
                "cnid",
                "--pod-cidr",
                "172.16.9.0/24",
                "--socket",
                &self.socket(),
            ])
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .env("ACKEMU_FAILPOINTS", failpoints)
            .args(extra);
        self.proc = Some(Proc::spawn(cmd, &self.dir.path().join("cnid.log")));
        wait_socket(std::path::Path::new(&self.socket())).await;
    }
    fn plugin(&self, command: &str, id: &str, netns: &str) -> Command {
        let mut c = Command::new(self.dir.path().join("ackemu-cni"));
        c.env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", format!("/run/netns/{netns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", self.dir.path());
        c
    }
    fn conf(&self) -> String {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"ackemu","type":"ackemu-cni","socket":"{}"}}"#,
            self.socket()
        )
    }
    fn spawn_plugin(&self, command: &str, id: &str, netns: &str) -> std::process::Child {
        let mut child = self
            .plugin(command, id, netns)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(self.conf().as_bytes())
            .unwrap();
        child
    }
    fn call(&self, command: &str, id: &str, netns: &str) -> (bool, serde_json::Value) {
        let out = self
            .spawn_plugin(command, id, netns)
            .wait_with_output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.success(), v)
    }
    fn dump(&self) -> String {
        let out = Command::new("curl")
            .args([
                "-s",
                "--unix-socket",
                &self.socket(),
                "http://localhost/debug/tasks",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

#[tokio::test]
async fn add_and_del_through_the_plugin_binary() {
    if !can_netns("add_and_del_through_the_plugin_binary") {
        return;
    }
    let c = Cnid::start(&[], "").await;
    let pod = netns_name("pod");
    let (ok, r) = c.call("ADD", "ctr-a", &pod);
    assert!(ok, "{r}");
    assert_eq!(r["ips"][0]["address"], "172.16.9.2/24", "{r}");
    let addr = Command::new("ip")
        .args([
            "netns", "exec", &pod, "ip", "-o", "-4", "addr", "show", "eth0",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&addr.stdout).contains("172.16.9.2/24"));
    let host = r["interfaces"][0]["name"].as_str().unwrap().to_string();
    let enslaved = c.node.ip(&["-o", "link", "show", "master", "cni0"]);
    assert!(enslaved.contains(&host), "{enslaved}");
    assert!(
        c.node
            .ip(&["-o", "-4", "addr", "show", "cni0"])
            .contains("172.16.9.1/24")
    );
    let (ok, r) = c.call("CHECK", "ctr-a", &pod);
    assert!(ok, "{r}");

    let (ok, r) = c.call("DEL", "ctr-a", &pod);
    assert!(ok, "{r}");
    assert!(!list_netns().contains(&pod), "the pod namespace is gone");
    assert!(
        !c.node.ip(&["-o", "link"]).contains(&host),
        "the veth is gone"
    );
    let ipam = std::fs::read_to_string(c.dir.path().join("data/ipam.json")).unwrap();
    assert!(ipam.contains("\"allocations\": {}"), "{ipam}");
    let (ok, r) = c.call("DEL", "ctr-a", &pod);
    assert!(ok, "DEL is idempotent: {r}");
}

#[tokio::test]
async fn hung_netlink_piles_up_callers_behind_the_lock() {
    if !can_netns("hung_netlink_piles_up_callers_behind_the_lock") {
        return;
    }
    let mut c = Cnid::start(&[], "cnid/netlink/recv=hang").await;
    let pods: Vec<String> = (0..3).map(|i| netns_name(&format!("pod{i}"))).collect();
    let mut plugins = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        plugins.push(c.spawn_plugin("ADD", &format!("ctr-{i}"), pod));
        let want = format!("cnid ADD ctr-{i}");
        // The first request must be parked in netlink (holding the lock)
        // before the others queue, so its wait is the oldest.
        let on = if i == 0 {
            "cnid/netlink/recv"
        } else {
            "the daemon lock"
        };
        wait_for("the request shows in the dump", || {
            c.dump()
                .lines()
                .any(|l| l.contains(&want) && l.contains(on))
        })
        .await;
    }
    let dump = c.dump();
    let rows: Vec<&str> = dump.lines().filter(|l| l.contains("cnid ADD")).collect();
    assert_eq!(rows.len(), 3, "{dump}");
    assert!(
        rows[0].contains("ctr-0") && rows[0].contains("cnid/netlink/recv"),
        "oldest holds the lock: {dump}"
    );
    assert!(
        rows[1].contains("the daemon lock") && rows[2].contains("the daemon lock"),
        "{dump}"
    );
    for p in plugins.iter_mut() {
        assert!(p.try_wait().unwrap().is_none(), "plugins pile up");
    }
    // The heal: restart the daemon; waiting plugins fail, retries work.
    c.restart(&[], "").await;
    for p in plugins {
        let out = p.wait_with_output().unwrap();
        assert!(!out.status.success());
    }
    for (i, pod) in pods.iter().enumerate() {
        let (ok, r) = c.call("ADD", &format!("ctr-{i}"), pod);
        assert!(ok, "{r}");
        let (ok, r) = c.call("DEL", &format!("ctr-{i}"), pod);
        assert!(ok, "{r}");
        assert!(!list_netns().contains(pod));
    }
}

#[tokio::test]
async fn netlink_timeout_releases_the_lock() {
    if !can_netns("netlink_timeout_releases_the_lock") {
        return;
    }
    let c = Cnid::start(&["--netlink-timeout", "300ms"], "cnid/netlink/recv=1*hang").await;
    let (p0, p1) = (netns_name("pod0"), netns_name("pod1"));
    let (ok, r) = c.call("ADD", "ctr-0", &p0);
    assert!(!ok, "{r}");
    assert_eq!(r["code"], 11, "{r}");
    assert!(
        r["msg"].as_str().unwrap().contains("--netlink-timeout"),
        "{r}"
    );
    let (ok, r) = c.call("ADD", "ctr-1", &p1);
    assert!(ok, "the lock was released: {r}");
    for (id, p) in [("ctr-0", &p0), ("ctr-1", &p1)] {
        let (ok, r) = c.call("DEL", id, p);
        assert!(ok, "{r}");
        assert!(!list_netns().contains(p));
    }
}
