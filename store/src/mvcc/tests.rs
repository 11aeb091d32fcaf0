use ackemu_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest, compare,
    range_request, request_op, response_op,
};
use ackemu_proto::mvccpb::event::EventType;

use super::*;

struct Fixture {
    _dir: tempfile::TempDir,
    m: Mvcc,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Db::open(dir.path()).expect("open db");
    let m = Mvcc::open(db).expect("open mvcc");
    Fixture { _dir: dir, m }
}

impl Fixture {
    fn write<R>(
        &mut self,
        f: impl FnOnce(&mut Mvcc, &mut WriteTxn) -> EtcdResult<R>,
    ) -> EtcdResult<(R, Vec<Event>)> {
        let mut txn = self.m.begin();
        let r = f(&mut self.m, &mut txn)?;
        self.m.finish(&mut txn);
        let events = std::mem::take(&mut txn.events);
        self.m.db().write(txn.batch, false).expect("write");
        Ok((r, events))
    }

    fn put(&mut self, k: &str, v: &str) -> i64 {
        self.put_lease(k, v, 0).expect("put")
    }

    fn put_lease(&mut self, k: &str, v: &str, lease: i64) -> EtcdResult<i64> {
        let req = PutRequest {
            key: k.into(),
            value: v.into(),
            lease,
            ..Default::default()
        };
        self.write(|m, t| m.put(t, &req))?;
        Ok(self.m.current_rev())
    }

    fn del(&mut self, k: &str, end: &str) -> i64 {
        let req = DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            ..Default::default()
        };
        let (r, _) = self.write(|m, t| m.delete_range(t, &req)).expect("delete");
        r.deleted
    }

    fn get(&self, k: &str, rev: i64) -> EtcdResult<Option<KeyValue>> {
        let req = RangeRequest {
            key: k.into(),
            revision: rev,
            ..Default::default()
        };
        Ok(self.m.range(&req)?.kvs.into_iter().next())
    }

    fn keys(&self, req: RangeRequest) -> Vec<String> {
        let resp = self.m.range(&req).expect("range");
        resp.kvs
            .iter()
            .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
            .collect()
    }
}

#[test]
fn revisions_versions_and_generations_follow_etcd() {
    let mut f = fixture();
    assert_eq!(f.m.current_rev(), 1, "an empty store is at revision 1");
    assert_eq!(f.put("a", "1"), 2);
    assert_eq!(f.put("a", "2"), 3);
    assert_eq!(f.put("b", "x"), 4);
    assert_eq!(f.del("a", ""), 1);
    assert_eq!(f.m.current_rev(), 5);
    // Deleting a missing key changes nothing, not even the revision.
    assert_eq!(f.del("a", ""), 0);
    assert_eq!(f.m.current_rev(), 5);
    assert_eq!(f.put("a", "3"), 6);

    // (key, at revision, expected (value, create, mod, version))
    type Want = Option<(&'static str, i64, i64, i64)>;
    let cases: &[(&str, i64, Want)] = &[
        ("a", 1, None),
        ("a", 2, Some(("1", 2, 2, 1))),
        ("a", 3, Some(("2", 2, 3, 2))),
        ("a", 4, Some(("2", 2, 3, 2))),
        ("a", 5, None),
        ("a", 6, Some(("3", 6, 6, 1))),
        ("a", 0, Some(("3", 6, 6, 1))),
        ("b", 3, None),
        ("b", 0, Some(("x", 4, 4, 1))),
    ];
    for &(k, at, want) in cases {
        let got = f.get(k, at).expect("get");
        let got = got.map(|kv| {
            (
                String::from_utf8(kv.value).unwrap(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            )
        });
        let want = want.map(|(v, c, m, ver)| (v.to_string(), c, m, ver));
        assert_eq!(got, want, "get {k} at {at}");
    }
    assert_eq!(f.get("a", 7), Err(EtcdError::FutureRev));
}

#[test]
fn range_options_match_etcd() {
    let mut f = fixture();
    f.put("foo", "3"); // rev 2
    f.put("foo/a", "1"); // 3
    f.put("foo/b", "2"); // 4
    f.put("fop", "0"); // 5
    f.put("foo/a", "9"); // 6: foo/a version 2
    use range_request::{SortOrder as O, SortTarget as T};
    let base = |k: &str, end: &[u8]| RangeRequest {
        key: k.into(),
        range_end: end.to_vec(),
        ..Default::default()
    };
    let cases: Vec<(&str, RangeRequest, Vec<&str>)> = vec![
        ("single key", base("foo", b""), vec!["foo"]),
        ("prefix", base("foo/", b"foo0"), vec!["foo/a", "foo/b"]),
        ("from key", base("foo/b", b"\0"), vec!["foo/b", "fop"]),
        (
            "all keys",
            base("\0", b"\0"),
            vec!["foo", "foo/a", "foo/b", "fop"],
        ),
        ("end before start", base("z", b"a"), vec![]),
        (
            "limit",
            RangeRequest {
                limit: 2,
                ..base("\0", b"\0")
            },
            vec!["foo", "foo/a"],
        ),
        (
            "at revision",
            RangeRequest {
                revision: 3,
                ..base("\0", b"\0")
            },
            vec!["foo", "foo/a"],
        ),
        (
            "descend by key",
            RangeRequest {
                sort_order: O::Descend as i32,
                ..base("\0", b"\0")
            },
            vec!["fop", "foo/b", "foo/a", "foo"],
        ),
        (
            "by value ascending",
            RangeRequest {
                sort_order: O::Ascend as i32,
                sort_target: T::Value as i32,
                ..base("\0", b"\0")
            },
            vec!["fop", "foo/b", "foo", "foo/a"],
        ),
        (
            "target without order sorts ascending",
            RangeRequest {
                sort_target: T::Mod as i32,
                ..base("\0", b"\0")
            },
            vec!["foo", "foo/b", "fop", "foo/a"],
        ),
        (
            "by version descending, limit 1",
            RangeRequest {
                sort_order: O::Descend as i32,
                sort_target: T::Version as i32,
                limit: 1,
                ..base("\0", b"\0")
            },
            vec!["foo/a"],
        ),
        (
            "by create descending",
            RangeRequest {
                sort_order: O::Descend as i32,
                sort_target: T::Create as i32,
                ..base("\0", b"\0")
            },
            vec!["fop", "foo/b", "foo/a", "foo"],
        ),
        (
            "min mod revision",
            RangeRequest {
                min_mod_revision: 5,
                ..base("\0", b"\0")
            },
            vec!["foo/a", "fop"],
        ),
        (
            "max create revision",
            RangeRequest {
                max_create_revision: 3,
                ..base("\0", b"\0")
            },
            vec!["foo", "foo/a"],
        ),
    ];
    for (name, req, want) in cases {
        assert_eq!(f.keys(req), want, "{name}");
    }

    let r =
        f.m.range(&RangeRequest {
            limit: 1,
            ..base("foo/", b"foo0")
        })
        .unwrap();
    assert_eq!(
        (r.count, r.more, r.kvs.len()),
        (2, true, 1),
        "limit keeps the full count and sets more"
    );
    let r =
        f.m.range(&RangeRequest {
            count_only: true,
            ..base("\0", b"\0")
        })
        .unwrap();
    assert_eq!((r.count, r.kvs.len()), (4, 0), "count_only");
    let r =
        f.m.range(&RangeRequest {
            keys_only: true,
            ..base("foo", b"")
        })
        .unwrap();
    assert!(
        r.kvs[0].value.is_empty() && r.kvs[0].mod_revision == 2,
        "keys_only keeps metadata"
    );
    let r =
        f.m.range(&RangeRequest {
            revision: 3,
            ..base("foo", b"")
        })
        .unwrap();
    assert_eq!(
        r.header.unwrap().revision,
        6,
        "header carries the current revision"
    );
}

fn cmp(
    key: &str,
    target: compare::CompareTarget,
    result: compare::CompareResult,
    u: compare::TargetUnion,
) -> Compare {
    Compare {
        key: key.into(),
        target: target as i32,
        result: result as i32,
        target_union: Some(u),
        ..Default::default()
    }
}

fn put_op(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestPut(PutRequest {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        })),
    }
}

fn get_op(k: &str) -> RequestOp {
    RequestOp {
        request: Some(request_op::Request::RequestRange(RangeRequest {
            key: k.into(),
            ..Default::default()
        })),
    }
}

#[test]
fn txn_compares_choose_the_branch() {
    use compare::{CompareResult as R, CompareTarget as T, TargetUnion as U};
    let mut f = fixture();
    f.put("k", "v1"); // rev 2
    f.put("k", "v2"); // rev 3, version 2
    let cases: Vec<(&str, Compare, bool)> = vec![
        (
            "version equal",
            cmp("k", T::Version, R::Equal, U::Version(2)),
            true,
        ),
        (
            "version greater",
            cmp("k", T::Version, R::Greater, U::Version(2)),
            false,
        ),
        (
            "create less",
            cmp("k", T::Create, R::Less, U::CreateRevision(3)),
            true,
        ),
        (
            "mod equal",
            cmp("k", T::Mod, R::Equal, U::ModRevision(3)),
            true,
        ),
        (
            "mod not equal",
            cmp("k", T::Mod, R::NotEqual, U::ModRevision(3)),
            false,
        ),
        (
            "value equal",
            cmp("k", T::Value, R::Equal, U::Value(b"v2".to_vec())),
            true,
        ),
        (
            "value greater",
            cmp("k", T::Value, R::Greater, U::Value(b"v1".to_vec())),
            true,
        ),
        (
            "lease equal zero",
            cmp("k", T::Lease, R::Equal, U::Lease(0)),
            true,
        ),
        // Kubernetes' create-if-absent: mod_revision of a missing key is 0.
        (
            "missing key mod is 0",
            cmp("absent", T::Mod, R::Equal, U::ModRevision(0)),
            true,
        ),
        (
            "missing key version is 0",
            cmp("absent", T::Version, R::Equal, U::Version(0)),
            true,
        ),
        (
            "missing key value never equal",
            cmp("absent", T::Value, R::Equal, U::Value(vec![])),
            false,
        ),
        (
            "missing key value never not-equal",
            cmp("absent", T::Value, R::NotEqual, U::Value(b"x".to_vec())),
            false,
        ),
    ];
    for (name, c, want) in cases {
        let req = TxnRequest {
            compare: vec![c],
            success: vec![get_op("k")],
            failure: vec![],
        };
        let (resp, _) = f.write(|m, t| m.txn(t, &req)).unwrap();
        assert_eq!(resp.succeeded, want, "{name}");
        assert_eq!(
            resp.responses.len(),
            usize::from(want),
            "{name}: responses from the chosen branch"
        );
    }
    assert_eq!(
        f.m.current_rev(),
        3,
        "read-only transactions do not bump the revision"
    );
}

#[test]
fn txn_writes_share_one_revision_and_see_their_own_writes() {
    let mut f = fixture();
    f.put("a", "0"); // rev 2
    let req = TxnRequest {
        compare: vec![],
        success: vec![put_op("a", "1"), put_op("b", "2"), get_op("a")],
        failure: vec![],
    };
    let (mut resp, events) = f.write(|m, t| m.txn(t, &req)).unwrap();
    f.m.stamp_txn(&mut resp);
    assert_eq!(f.m.current_rev(), 3);
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .all(|e| e.kv.as_ref().unwrap().mod_revision == 3)
    );
    let Some(response_op::Response::ResponseRange(r)) = &resp.responses[2].response else {
        panic!("range response")
    };
    assert_eq!(
        r.kvs[0].value, b"1",
        "the range inside the txn sees the put before it"
    );
    assert_eq!(resp.header.unwrap().revision, 3);
    // Events of one revision carry increasing sub-revisions in the store.
    let (evs, upto) = f.m.events(3, 3, 10).unwrap();
    assert_eq!((evs.len(), upto), (2, 3));
}

#[test]
fn failing_txn_changes_nothing() {
    let mut f = fixture();
    f.put("a", "0");
    let req = TxnRequest {
        compare: vec![],
        success: vec![
            put_op("a", "1"),
            RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"b".to_vec(),
                    lease: 42,
                    ..Default::default()
                })),
            },
        ],
        failure: vec![],
    };
    assert_eq!(
        f.write(|m, t| m.txn(t, &req)).err(),
        Some(EtcdError::LeaseNotFound)
    );
    assert_eq!(f.m.current_rev(), 2);
    assert_eq!(f.get("a", 0).unwrap().unwrap().value, b"0");
}

#[test]
fn put_variants_and_errors() {
    let mut f = fixture();
    assert_eq!(f.put_lease("a", "v", 7), Err(EtcdError::LeaseNotFound));
    let ignore = PutRequest {
        key: b"a".to_vec(),
        ignore_value: true,
        ..Default::default()
    };
    assert_eq!(
        f.write(|m, t| m.put(t, &ignore)).err(),
        Some(EtcdError::KeyNotFound)
    );
    f.put("a", "keep");
    let (resp, _) = f
        .write(|m, t| {
            m.put(
                t,
                &PutRequest {
                    key: b"a".to_vec(),
                    ignore_value: true,
                    prev_kv: true,
                    ..Default::default()
                },
            )
        })
        .unwrap();
    assert_eq!(resp.prev_kv.unwrap().value, b"keep");
    assert_eq!(
        f.get("a", 0).unwrap().unwrap().value,
        b"keep",
        "ignore_value keeps the value"
    );
}

#[test]
fn compaction_drops_history_but_keeps_the_present() {
    let mut f = fixture();
    f.put("a", "1"); // 2
    f.put("a", "2"); // 3
    f.put("b", "1"); // 4
    f.del("b", ""); // 5
    f.put("c", "1"); // 6
    let before = f.m.logical_bytes();
    let physical_before = f.m.physical_bytes();
    assert_eq!(physical_before, before);
    f.write(|m, t| m.compact(t, 5)).unwrap();
    assert!(
        f.m.logical_bytes() < before,
        "compaction frees logical space"
    );
    assert_eq!(
        f.m.physical_bytes(),
        physical_before,
        "but not the allocated size"
    );
    assert_eq!(f.get("a", 4), Err(EtcdError::Compacted));
    assert_eq!(
        f.get("a", 5).unwrap().unwrap().value,
        b"2",
        "reading at the compaction revision works"
    );
    assert_eq!(f.get("b", 5).unwrap(), None);
    assert_eq!(f.get("a", 0).unwrap().unwrap().version, 2);
    assert_eq!(
        f.write(|m, t| m.compact(t, 5)).err(),
        Some(EtcdError::Compacted)
    );
    assert_eq!(
        f.write(|m, t| m.compact(t, 7)).err(),
        Some(EtcdError::FutureRev)
    );
    // The tombstone at the compaction revision is still an event.
    let (evs, _) = f.m.events(5, 6, 10).unwrap();
    assert_eq!(
        evs.iter().map(|e| e.r#type).collect::<Vec<_>>(),
        vec![EventType::Delete as i32, EventType::Put as i32]
    );
    assert_eq!(evs[0].kv.as_ref().unwrap().mod_revision, 5);
    f.m.defragment().unwrap();
    assert_eq!(
        f.m.physical_bytes(),
        f.m.logical_bytes(),
        "defragmentation releases the space"
    );
}

#[test]
fn same_operations_give_the_same_hash() {
    let ops = |f: &mut Fixture| {
        f.put("x", "1");
        f.put("y", "2");
        f.del("x", "");
        f.write(|m, t| m.compact(t, 3)).unwrap();
        f.put("z", "3");
    };
    let (mut a, mut b) = (fixture(), fixture());
    ops(&mut a);
    ops(&mut b);
    assert_eq!(a.m.hash_kv(0).unwrap(), b.m.hash_kv(0).unwrap());
    b.put("w", "4");
    assert_ne!(a.m.hash_kv(0).unwrap().0, b.m.hash_kv(0).unwrap().0);
    assert_eq!(
        a.m.hash_kv(0).unwrap().0,
        b.m.hash_kv(a.m.current_rev()).unwrap().0,
        "hash at a past revision"
    );
}

#[test]
fn leases_attach_detach_and_revoke_in_one_revision() {
    let mut f = fixture();
    f.write(|m, t| m.lease_grant(t, 7, 10)).unwrap();
    assert_eq!(
        f.write(|m, t| m.lease_grant(t, 7, 10)).err(),
        Some(EtcdError::LeaseExist)
    );
    f.put_lease("a", "1", 7).unwrap();
    f.put_lease("b", "1", 7).unwrap();
    f.put_lease("c", "1", 7).unwrap();
    f.put("c", "2"); // detaches c
    assert_eq!(f.m.leases()[&7].keys.len(), 2);
    let rev = f.m.current_rev();
    let (_, events) = f.write(|m, t| m.lease_revoke(t, 7)).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(f.m.current_rev(), rev + 1, "all deletions in one revision");
    assert_eq!(f.get("a", 0).unwrap(), None);
    assert!(f.get("c", 0).unwrap().is_some());
    assert_eq!(
        f.write(|m, t| m.lease_revoke(t, 7)).err(),
        Some(EtcdError::LeaseNotFound)
    );
}

#[test]
fn reopen_restores_index_leases_and_counters() {
    let dir = tempfile::tempdir().unwrap();
    let hash;
    {
        let mut f = Fixture {
            m: Mvcc::open(Db::open(dir.path()).unwrap()).unwrap(),
            _dir: tempfile::tempdir().unwrap(),
        };
        f.write(|m, t| m.lease_grant(t, 9, 30)).unwrap();
        f.put("a", "1");
        f.put("a", "2");
        f.put_lease("l", "x", 9).unwrap();
        f.del("a", "");
        f.put("a", "3");
        f.write(|m, t| m.compact(t, 4)).unwrap();
        hash = f.m.hash_kv(0).unwrap();
    }
    let f = Fixture {
        m: Mvcc::open(Db::open(dir.path()).unwrap()).unwrap(),
        _dir: tempfile::tempdir().unwrap(),
    };
    assert_eq!(f.m.current_rev(), 6);
    assert_eq!(f.m.compact_rev(), 4);
    assert_eq!(f.m.hash_kv(0).unwrap(), hash);
    let a = f.get("a", 0).unwrap().unwrap();
    assert_eq!((a.create_revision, a.version), (6, 1));
    assert_eq!(
        f.get("a", 4).unwrap().map(|kv| kv.version),
        Some(2),
        "version survives compaction and reopen"
    );
    assert_eq!(f.get("a", 5).unwrap(), None);
    assert_eq!(
        f.m.leases()[&9].keys.iter().collect::<Vec<_>>(),
        vec![&b"l".to_vec()]
    );
}

#[test]
fn events_are_grouped_by_revision_and_bounded() {
    let mut f = fixture();
    for i in 0..5 {
        f.put(&format!("k{i}"), "v");
    }
    let (evs, upto) = f.m.events(3, 100, 2).unwrap();
    assert_eq!(
        evs.iter()
            .map(|e| e.kv.as_ref().unwrap().mod_revision)
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(upto, 4, "stopped at the revision limit");
    let (evs, upto) = f.m.events(5, 100, 10).unwrap();
    assert_eq!((evs.len(), upto), (2, 100), "read to the end");
    assert!(f.m.events(5, 4, 10).unwrap().0.is_empty());
}
