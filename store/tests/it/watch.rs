use std::time::Duration;

use anyhow::Result;

use crate::cluster::{Cluster, WatchProc};

#[test]
fn etcdctl_watch_live_from_revision_and_after_compaction() -> Result<()> {
    let c = Cluster::start(3, &[])?;
    for (k, v) in [("/w/a", "1"), ("/w/b", "2"), ("/w/a", "3")] {
        c.ok(&["put", k, v])?; // revisions 2, 3, 4
    }
    // History replay from a revision, then live events.
    let mut w = WatchProc::start(&c, &["--prefix", "/w/", "--rev=3"])?;
    w.expect(
        &["PUT", "/w/b", "2", "PUT", "/w/a", "3"],
        Duration::from_secs(10),
    )?;
    c.ok(&["del", "/w/a"])?; // 5
    c.ok(&["put", "/w/c", "5"])?; // 6
    w.expect(
        &["DELETE", "/w/a", "PUT", "/w/c", "5"],
        Duration::from_secs(10),
    )?;
    assert!(
        !w.seen().iter().any(|l| l == "1"),
        "revision 2 is before --rev: {:?}",
        w.seen()
    );

    // Live watch on a single key with previous values.
    let mut single = WatchProc::start(&c, &["/w/c", "--prev-kv"])?;
    // The watch is registered once etcdctl connected; poll by writing until it reports.
    crate::cluster::poll(
        "the single-key watch to see a put",
        Duration::from_secs(10),
        || {
            c.ok(&["put", "/w/c", "6"]).ok()?;
            single
                .expect(&["PUT", "/w/c", "6"], Duration::from_millis(300))
                .ok()
        },
    )?;

    assert!(c.ok(&["compact", "5"])?.contains("compacted revision 5"));
    let err = c.err(&["get", "/w/a", "--rev=4"])?;
    assert!(
        err.contains("etcdserver: mvcc: required revision has been compacted"),
        "{err}"
    );
    let mut old = WatchProc::start(&c, &["--prefix", "/w/", "--rev=2"])?;
    old.expect(
        &["watch was canceled (etcdserver: mvcc: required revision has been compacted)"],
        Duration::from_secs(10),
    )?;
    // Watching from the compaction revision itself still works and sees the delete at 5.
    let mut at = WatchProc::start(&c, &["--prefix", "/w/", "--rev=5"])?;
    at.expect(
        &["DELETE", "/w/a", "PUT", "/w/c", "5"],
        Duration::from_secs(10),
    )?;
    Ok(())
}
