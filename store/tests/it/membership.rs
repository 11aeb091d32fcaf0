use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::cluster::{Cluster, Member, free_ports, poll, values};

#[test]
fn etcdctl_member_list_add_remove() -> Result<()> {
    let mut c = Cluster::start(3, &[])?;
    // Members publish their name and client URLs through raft after start.
    let list = poll(
        "every member to publish itself",
        Duration::from_secs(10),
        || {
            let list = c.ok(&["member", "list"]).ok()?;
            (list.matches(", started, ").count() == 3).then_some(list)
        },
    )?;
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    for m in &c.members {
        let line = format!(
            ", started, {}, {}, {}, false",
            m.name,
            m.peer_url(),
            m.client_url()
        );
        assert!(
            lines.iter().any(|l| l.ends_with(&line)),
            "{line} missing from {list}"
        );
    }
    c.ok(&["put", "/m/before", "1"])?;

    // Add a fourth member, then start it against the existing cluster.
    let ports = free_ports(3);
    let mut s4 = Member {
        name: "s4".into(),
        client_port: ports[0],
        peer_port: ports[1],
        admin_port: ports[2],
        data_dir: c.dir.path().join("s4"),
        log: c.dir.path().join("s4.log"),
        child: None,
        extra: vec![],
        state: "existing",
        initial_cluster: String::new(),
    };
    let added = c.ok(&[
        "member",
        "add",
        "s4",
        &format!("--peer-urls={}", s4.peer_url()),
    ])?;
    assert!(added.contains("added to cluster"), "{added}");
    let new_id = added
        .split_whitespace()
        .nth(1)
        .context("member id")?
        .to_string();
    let list = c.ok(&["member", "list"])?;
    assert!(list.contains(&format!("{new_id}, unstarted, ")), "{list}");
    let mut initial: Vec<String> = c
        .members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url()))
        .collect();
    initial.push(format!("s4={}", s4.peer_url()));
    s4.initial_cluster = initial.join(",");
    s4.start()?;
    c.members.push(s4);
    let s4_url = c.members[3].endpoint();
    poll(
        "the new member to catch up and publish itself",
        Duration::from_secs(30),
        || {
            let out = c.ctl_at(
                &s4_url,
                &["get", "/m/before", "--consistency=s", "--print-value-only"],
            );
            let caught_up = values(&String::from_utf8_lossy(&out.stdout)) == vec!["1"];
            let list = c.ok(&["member", "list"]).ok()?;
            (caught_up && list.contains(", started, s4, ")).then_some(())
        },
    )
    .with_context(|| c.logs_tail())?;
    c.ok(&["put", "/m/after", "2"])?;
    let out = c.ctl_at(&s4_url, &["get", "/m/after", "--print-value-only"]);
    assert_eq!(
        values(&String::from_utf8_lossy(&out.stdout)),
        vec!["2"],
        "linearizable read through the new member"
    );

    // Remove it again: the member stops and the list shrinks.
    // Ask an original member (the one being removed may not learn the commit).
    let out = c.ctl_at(&c.members[0].endpoint(), &["member", "remove", &new_id]);
    let removed = String::from_utf8_lossy(&out.stdout);
    assert!(
        removed.contains("removed from cluster"),
        "{removed} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    poll(
        "the removed member to exit",
        Duration::from_secs(20),
        || (!c.members[3].is_running()).then_some(()),
    )?;
    c.members[3].child = None;
    let list = c.ok(&["member", "list"])?;
    assert_eq!(list.lines().count(), 3, "{list}");
    let err = c.err(&["member", "remove", &new_id])?;
    assert!(err.contains("etcdserver: member not found"), "{err}");
    c.ok(&["put", "/m/end", "3"])?;
    Ok(())
}
