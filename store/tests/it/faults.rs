use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::cluster::{Cluster, poll, values};

#[test]
fn leader_kill_and_restart_keeps_acknowledged_writes() -> Result<()> {
    let mut c = Cluster::start(3, &[])?;
    for i in 0..20 {
        c.ok(&["put", &format!("/ack/{i:02}"), &i.to_string()])?;
    }
    let leader = c.leader()?;
    c.members[leader].kill();
    // The survivors elect a leader and take writes.
    poll(
        "a write after the leader was killed",
        Duration::from_secs(30),
        || c.ok(&["put", "/ack/20", "20"]).ok(),
    )
    .with_context(|| c.logs_tail())?;
    let new_leader = c.leader()?;
    assert_ne!(new_leader, leader);
    for i in 21..30 {
        c.ok(&["put", &format!("/ack/{i:02}"), &i.to_string()])?;
    }
    c.members[leader].start()?;
    let url = c.members[leader].endpoint();
    poll(
        "the restarted member to catch up",
        Duration::from_secs(30),
        || {
            let out = c.ctl_at(
                &url,
                &[
                    "get",
                    "/ack/",
                    "--prefix",
                    "--consistency=s",
                    "--print-value-only",
                ],
            );
            (values(&String::from_utf8_lossy(&out.stdout)).len() == 30).then_some(())
        },
    )
    .with_context(|| c.logs_tail())?;
    let all = c.ok(&["get", "/ack/", "--prefix", "--print-value-only"])?;
    let want: Vec<String> = (0..30).map(|i| i.to_string()).collect();
    assert_eq!(
        values(&all),
        want.iter().map(String::as_str).collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn lagging_follower_catches_up_through_a_snapshot() -> Result<()> {
    let mut c = Cluster::start(3, &["--snapshot-count", "20"])?;
    let leader = c.leader()?;
    let follower = (leader + 1) % 3;
    c.members[follower].kill();
    for i in 0..120 {
        c.ok(&["put", &format!("/snap/{i:03}"), &i.to_string()])?;
    }
    c.members[follower].start()?;
    let url = c.members[follower].endpoint();
    poll(
        "the follower to install a snapshot and catch up",
        Duration::from_secs(30),
        || {
            let out = c.ctl_at(
                &url,
                &[
                    "get",
                    "/snap/",
                    "--prefix",
                    "--limit=1",
                    "--consistency=s",
                    "-w",
                    "json",
                ],
            );
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (v["count"].as_i64() == Some(120)).then_some(())
        },
    )
    .with_context(|| c.logs_tail())?;
    let log = std::fs::read_to_string(&c.members[follower].log)?;
    assert!(
        log.contains("applying snapshot"),
        "the follower caught up by snapshot:\n{}",
        c.logs_tail()
    );
    Ok(())
}

#[test]
fn bad_input_gets_etcd_errors_and_corrupts_nothing() -> Result<()> {
    let c = Cluster::start(3, &["--max-request-bytes", "4096"])?;
    c.ok(&["put", "/bad/k", "v"])?;
    let big = "x".repeat(8192);
    let err = c.err(&["put", "/bad/big", &big])?;
    assert!(err.contains("etcdserver: request is too large"), "{err}");
    let err = c.err(&["put", "/bad/k", "v2", "--lease=1234"])?;
    assert!(
        err.contains("etcdserver: requested lease not found"),
        "{err}"
    );
    let out = c.ok(&["lease", "timetolive", "1234"])?;
    assert!(out.contains("already expired"), "{out}");
    let err = c.err(&["lease", "revoke", "1234"])?;
    assert!(
        err.contains("etcdserver: requested lease not found"),
        "{err}"
    );
    let err = c.err(&["compact", "100000"])?;
    assert!(
        err.contains("etcdserver: mvcc: required revision is a future revision"),
        "{err}"
    );

    // Garbage on the peer port: raw bytes, then a well-formed gRPC call
    // carrying bytes that are not raft messages.
    for m in &c.members {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", m.peer_port))?;
        let _ = s.write_all(&[0xde, 0xad, 0xbe, 0xef].repeat(1024));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let peer = c.members[0].peer_url();
    let status = rt.block_on(async move {
        let mut client =
            ackemu_proto::ackemu::store::v1::store_peer_client::StorePeerClient::connect(peer)
                .await?;
        let batch = ackemu_proto::ackemu::store::v1::RaftBatch {
            from: 42,
            messages: vec![vec![0xff; 64]],
        };
        anyhow::Ok(
            client
                .raft_snapshot(batch)
                .await
                .expect_err("garbage is refused"),
        )
    })?;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");

    c.wait_healthy()?;
    assert_eq!(
        values(&c.ok(&["get", "/bad/k", "--print-value-only"])?),
        vec!["v"]
    );
    assert_eq!(c.ok(&["put", "/bad/k", "v3"])?.trim(), "OK");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_disk_stops_the_member_and_a_restart_recovers() -> Result<()> {
    let mut c = Cluster::start(3, &[])?;
    c.ok(&["put", "/disk/a", "1"])?;
    let leader = c.leader()?;
    let victim = (leader + 1) % 3;
    c.members[victim]
        .failpoint("store/raft/append", Some("return(eio)"))
        .await?;
    // The next append on the victim fails: it stops rather than acknowledge
    // an entry it could not write. The others keep the quorum.
    let out = c.ctl_at(&c.members[leader].endpoint(), &["put", "/disk/b", "2"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll(
        "the member with the failing disk to exit",
        Duration::from_secs(20),
        || (!c.members[victim].is_running()).then_some(()),
    )?;
    c.members[victim].child = None;
    c.ok(&["put", "/disk/c", "3"])?;
    c.members[victim].start()?;
    let url = c.members[victim].endpoint();
    poll(
        "the restarted member to catch up",
        Duration::from_secs(30),
        || {
            let out = c.ctl_at(
                &url,
                &[
                    "get",
                    "/disk/",
                    "--prefix",
                    "--consistency=s",
                    "--print-value-only",
                ],
            );
            (values(&String::from_utf8_lossy(&out.stdout)) == vec!["1", "2", "3"]).then_some(())
        },
    )
    .with_context(|| c.logs_tail())?;
    let log = std::fs::read_to_string(&c.members[victim].log)?;
    assert!(
        log.contains("failpoint store/raft/append"),
        "the exit names the failpoint:\n{}",
        c.logs_tail()
    );
    Ok(())
}
