//! Kubernetes-shaped traffic from concurrent clients while one fault is
//! injected, then a fault-free phase; the recorded history must be
//! linearizable and the watch stream must keep etcd's guarantees. A store
//! that serves reads from a lagging follower without ReadIndex must fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use ackemu_base::clock::{Clock, ClusterInstant};
use ackemu_proto::etcdserverpb::kv_client::KvClient;
use ackemu_proto::etcdserverpb::watch_client::WatchClient;
use ackemu_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest, compare, request_op, watch_request,
};
use ackemu_proto::mvccpb::event::EventType;
use ackemu_store::history::{
    Call, Op, Outcome, State, WatchEvent, check_linearizable, check_resumable, check_watch,
};
use anyhow::{Context as _, Result};
use parking_lot::Mutex;
use rand::{Rng as _, SeedableRng as _};
use tonic::transport::Channel;

use crate::cluster::{Cluster, poll};

const PREFIX: &str = "/h/";
const KEYS: usize = 4;
const CLIENTS: usize = 6;
const OP_TIMEOUT: Duration = Duration::from_secs(3);

struct Recorder {
    clock: Clock,
    start: ClusterInstant,
    calls: Mutex<Vec<Call>>,
    ops: AtomicUsize,
    stop: AtomicBool,
}

impl Recorder {
    fn now(&self) -> u64 {
        self.clock
            .now()
            .saturating_duration_since(self.start)
            .as_nanos() as u64
    }
}

fn key(i: usize) -> Vec<u8> {
    format!("{PREFIX}k{i}").into_bytes()
}

async fn connect(endpoint: &str) -> Option<KvClient<Channel>> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{endpoint}"))
        .ok()?
        .connect_lazy();
    Some(KvClient::new(ch))
}

/// One operation; `None` when a read failed (nothing learned).
async fn run_op(kv: &mut KvClient<Channel>, op: &Op) -> Outcome {
    match op {
        Op::Get { key } | Op::Range { prefix: key } => {
            let range_end = if matches!(op, Op::Range { .. }) {
                prefix_end(key)
            } else {
                vec![]
            };
            match kv
                .range(RangeRequest {
                    key: key.clone(),
                    range_end,
                    ..Default::default()
                })
                .await
            {
                Ok(r) => {
                    let r = r.into_inner();
                    Outcome::Read {
                        rev: r.header.map(|h| h.revision).unwrap_or_default(),
                        kvs: r
                            .kvs
                            .into_iter()
                            .map(|kv| (kv.key, kv.value, kv.mod_revision))
                            .collect(),
                    }
                }
                Err(_) => Outcome::Unknown,
            }
        }
        Op::Create { key, value } | Op::Update { key, value, .. } => {
            let (target, target_union) = match op {
                Op::Update { expect_mod, .. } => (
                    compare::CompareTarget::Mod,
                    compare::TargetUnion::ModRevision(*expect_mod),
                ),
                _ => (
                    compare::CompareTarget::Create,
                    compare::TargetUnion::CreateRevision(0),
                ),
            };
            let txn = TxnRequest {
                compare: vec![Compare {
                    key: key.clone(),
                    target: target as i32,
                    result: compare::CompareResult::Equal as i32,
                    target_union: Some(target_union),
                    ..Default::default()
                }],
                success: vec![RequestOp {
                    request: Some(request_op::Request::RequestPut(PutRequest {
                        key: key.clone(),
                        value: value.clone(),
                        ..Default::default()
                    })),
                }],
                failure: vec![],
            };
            match kv.txn(txn).await {
                Ok(r) => {
                    let r = r.into_inner();
                    Outcome::Txn {
                        rev: r.header.map(|h| h.revision).unwrap_or_default(),
                        succeeded: r.succeeded,
                    }
                }
                Err(_) => Outcome::Unknown,
            }
        }
        Op::Delete { key } => match kv
            .delete_range(DeleteRangeRequest {
                key: key.clone(),
                ..Default::default()
            })
            .await
        {
            Ok(r) => {
                let r = r.into_inner();
                Outcome::Delete {
                    rev: r.header.map(|h| h.revision).unwrap_or_default(),
                    deleted: r.deleted,
                }
            }
            Err(_) => Outcome::Unknown,
        },
    }
}

fn prefix_end(p: &[u8]) -> Vec<u8> {
    let mut e = p.to_vec();
    while let Some(last) = e.pop() {
        if last < 0xff {
            e.push(last + 1);
            return e;
        }
    }
    vec![0]
}

async fn client(rec: Arc<Recorder>, endpoints: Vec<String>, id: usize, seed: u64) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (id as u64) << 32);
    let mut ep = id % endpoints.len();
    let Some(mut kv) = connect(&endpoints[ep]).await else {
        return;
    };
    let mut last_mod = [0i64; KEYS];
    let mut counter = 0u64;
    while !rec.stop.load(Ordering::Relaxed) {
        let k = rng.random_range(0..KEYS);
        counter += 1;
        let value = format!("c{id}-{counter}").into_bytes();
        let op = match rng.random_range(0..100) {
            0..30 => Op::Get { key: key(k) },
            30..40 => Op::Range {
                prefix: PREFIX.as_bytes().to_vec(),
            },
            40..60 => Op::Create { key: key(k), value },
            60..85 if last_mod[k] > 0 => Op::Update {
                key: key(k),
                value,
                expect_mod: last_mod[k],
            },
            60..85 => Op::Get { key: key(k) },
            _ => Op::Delete { key: key(k) },
        };
        let call = rec.now();
        let outcome = match rec.clock.timeout(OP_TIMEOUT, run_op(&mut kv, &op)).await {
            Ok(o) => o,
            Err(_) => Outcome::Unknown,
        };
        let ret = rec.now();
        if let Outcome::Read { kvs, .. } = &outcome {
            for (kk, _, m) in kvs {
                if let Some(i) = (0..KEYS).find(|i| key(*i) == *kk) {
                    last_mod[i] = *m;
                }
            }
        }
        let failed = outcome == Outcome::Unknown;
        if !(failed && matches!(op, Op::Get { .. } | Op::Range { .. })) {
            rec.calls.lock().push(Call {
                op,
                outcome,
                call,
                ret,
            });
        }
        rec.ops.fetch_add(1, Ordering::Relaxed);
        if failed {
            // Try another member next time.
            ep = (ep + 1) % endpoints.len();
            if let Some(c) = connect(&endpoints[ep]).await {
                kv = c;
            }
        }
    }
}

type Responses = Arc<Mutex<Vec<Vec<WatchEvent>>>>;

/// Watches the prefix from `start_rev`, resuming on another member after
/// errors, until `stop`.
async fn watcher(
    endpoints: Vec<String>,
    start_rev: i64,
    out: Responses,
    stop: Arc<AtomicBool>,
    clock: Clock,
) {
    let mut next = start_rev;
    let mut ep = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(endpoint) =
            tonic::transport::Endpoint::from_shared(format!("http://{}", endpoints[ep]))
        else {
            return;
        };
        ep = (ep + 1) % endpoints.len();
        let mut client = WatchClient::new(endpoint.connect_lazy());
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: PREFIX.as_bytes().to_vec(),
                    range_end: prefix_end(PREFIX.as_bytes()),
                    start_revision: next,
                    ..Default::default()
                },
            )),
        };
        if tx.send(create).await.is_err() {
            return;
        }
        let Ok(Ok(resp)) = clock
            .timeout(
                OP_TIMEOUT,
                client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)),
            )
            .await
        else {
            continue;
        };
        let mut stream = resp.into_inner();
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                () = clock.sleep(Duration::from_millis(200)) => {
                    if stop.load(Ordering::Relaxed) { return }
                    continue;
                }
            };
            let Ok(Some(r)) = msg else { break };
            if r.canceled {
                break;
            }
            if r.events.is_empty() {
                continue;
            }
            let evs: Vec<WatchEvent> = r
                .events
                .into_iter()
                .filter_map(|e| {
                    let kv = e.kv?;
                    let value = (e.r#type == EventType::Put as i32).then_some(kv.value);
                    Some(WatchEvent {
                        rev: kv.mod_revision,
                        key: kv.key,
                        value,
                    })
                })
                .collect();
            if let Some(last) = evs.last() {
                next = last.rev + 1;
            }
            out.lock().push(evs);
        }
        drop(tx);
    }
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    KillLeader,
    KillFollower,
    StopLeader,
    PartitionLeader,
    FsyncStallLeader,
}

struct Outcomes {
    calls: Vec<Call>,
    watched: Vec<Vec<WatchEvent>>,
    resumed: Vec<Vec<WatchEvent>>,
    resumed_from: i64,
}

fn wait_ops(rec: &Recorder, n: usize) -> Result<()> {
    poll(&format!("{n} operations"), Duration::from_secs(60), || {
        (rec.ops.load(Ordering::Relaxed) >= n).then_some(())
    })
}

/// Runs the workload around one fault and returns what was recorded.
async fn run(c: &mut Cluster, fault: Fault, seed: u64) -> Result<Outcomes> {
    let clock = Clock::real();
    let rec = Arc::new(Recorder {
        start: clock.now(),
        clock: clock.clone(),
        calls: Mutex::new(Vec::new()),
        ops: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let endpoints: Vec<String> = c.members.iter().map(|m| m.endpoint()).collect();
    let tasks = ackemu_base::tasks::Tasks::new(clock.clone());
    let watched: Responses = Arc::new(Mutex::new(Vec::new()));
    let watch_stop = Arc::new(AtomicBool::new(false));
    let w = tasks.spawn(
        "history/watch",
        watcher(
            endpoints.clone(),
            2,
            watched.clone(),
            watch_stop.clone(),
            clock.clone(),
        ),
    );
    let mut clients = Vec::new();
    for id in 0..CLIENTS {
        clients.push(tasks.spawn(
            "history/client",
            client(rec.clone(), endpoints.clone(), id, seed),
        ));
    }

    let blocking =
        |f: Box<dyn FnOnce() -> Result<()> + Send>| tasks.spawn_blocking("history/wait", f);
    let r2 = rec.clone();
    blocking(Box::new(move || wait_ops(&r2, 60))).await??;
    let leader = c.leader()?;
    let follower = (leader + 1) % c.members.len();
    match fault {
        Fault::KillLeader => c.members[leader].kill(),
        Fault::KillFollower => c.members[follower].kill(),
        Fault::StopLeader => c.members[leader].signal("STOP")?,
        Fault::PartitionLeader => {
            c.members[leader]
                .failpoint("store/peer/send", Some("return(partitioned)"))
                .await?;
            c.members[leader]
                .failpoint("store/peer/recv", Some("return(partitioned)"))
                .await?;
        }
        Fault::FsyncStallLeader => {
            c.members[leader]
                .failpoint("store/raft/fsync", Some("delay(300ms)"))
                .await?
        }
    }
    let r2 = rec.clone();
    let under_fault = rec.ops.load(Ordering::Relaxed) + 150;
    blocking(Box::new(move || wait_ops(&r2, under_fault))).await??;
    match fault {
        Fault::KillLeader => c.members[leader].start()?,
        Fault::KillFollower => c.members[follower].start()?,
        Fault::StopLeader => c.members[leader].signal("CONT")?,
        Fault::PartitionLeader => {
            c.members[leader].failpoint("store/peer/send", None).await?;
            c.members[leader].failpoint("store/peer/recv", None).await?;
        }
        Fault::FsyncStallLeader => {
            c.members[leader]
                .failpoint("store/raft/fsync", None)
                .await?
        }
    }
    // Fault-free phase: the cluster must recover and keep serving.
    let r2 = rec.clone();
    let after = rec.ops.load(Ordering::Relaxed) + 150;
    blocking(Box::new(move || wait_ops(&r2, after))).await??;
    rec.stop.store(true, Ordering::Relaxed);
    for cl in clients {
        cl.await?;
    }
    let calls = rec.calls.lock().clone();
    let last_write = calls
        .iter()
        .filter_map(|c| match c.outcome {
            Outcome::Txn {
                rev,
                succeeded: true,
            } => Some(rev),
            Outcome::Delete { rev, deleted: 1 } => Some(rev),
            _ => None,
        })
        .max()
        .unwrap_or(1);
    let seen_upto = || {
        watched
            .lock()
            .iter()
            .flatten()
            .map(|e| e.rev)
            .max()
            .unwrap_or(0)
    };
    poll(
        "the watch to reach the last write",
        Duration::from_secs(30),
        || (seen_upto() >= last_write).then_some(()),
    )?;
    watch_stop.store(true, Ordering::Relaxed);
    w.await?;

    // Resume a second watch from the middle of the history.
    let resumed_from = (last_write / 2).max(2);
    let resumed: Responses = Arc::new(Mutex::new(Vec::new()));
    let stop2 = Arc::new(AtomicBool::new(false));
    let w2 = tasks.spawn(
        "history/watch2",
        watcher(
            endpoints,
            resumed_from,
            resumed.clone(),
            stop2.clone(),
            clock,
        ),
    );
    let seen2 = || {
        resumed
            .lock()
            .iter()
            .flatten()
            .map(|e| e.rev)
            .max()
            .unwrap_or(0)
    };
    poll(
        "the resumed watch to reach the last write",
        Duration::from_secs(30),
        || (seen2() >= last_write).then_some(()),
    )?;
    stop2.store(true, Ordering::Relaxed);
    w2.await?;
    let watched = watched.lock().clone();
    let resumed = resumed.lock().clone();
    Ok(Outcomes {
        calls,
        watched,
        resumed,
        resumed_from,
    })
}

fn check(o: &Outcomes) -> Result<()> {
    anyhow::ensure!(
        o.calls.len() >= 300,
        "too few operations recorded: {}",
        o.calls.len()
    );
    check_linearizable(&o.calls, State::fresh(), 5_000_000).context("linearizability")?;
    check_watch(&o.watched, 2, &o.calls).context("watch")?;
    check_resumable(&o.watched, &o.resumed, o.resumed_from).context("resumed watch")?;
    Ok(())
}

async fn fault_run(fault: Fault, seed: u64) -> Result<()> {
    let mut c = Cluster::start(3, &[])?;
    let o = run(&mut c, fault, seed)
        .await
        .with_context(|| c.logs_tail())?;
    check(&o).with_context(|| format!("{fault:?}, seed {seed}, {} calls", o.calls.len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_linearizable_across_leader_kill() -> Result<()> {
    fault_run(Fault::KillLeader, 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_linearizable_across_follower_kill() -> Result<()> {
    fault_run(Fault::KillFollower, 2).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_linearizable_across_leader_sigstop() -> Result<()> {
    fault_run(Fault::StopLeader, 3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_linearizable_across_leader_partition() -> Result<()> {
    fault_run(Fault::PartitionLeader, 4).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_linearizable_across_fsync_stall() -> Result<()> {
    fault_run(Fault::FsyncStallLeader, 5).await
}

/// Writes through the leader, each followed at once by a read through a
/// follower whose apply is slowed by a failpoint.
async fn write_then_read_elsewhere(c: &Cluster, pairs: usize) -> Result<Vec<Call>> {
    let leader = c.leader()?;
    let follower = (leader + 1) % c.members.len();
    c.members[follower]
        .failpoint("store/apply", Some("delay(50ms)"))
        .await?;
    let clock = Clock::real();
    let start = clock.now();
    let now = || clock.now().saturating_duration_since(start).as_nanos() as u64;
    let mut w = connect(&c.members[leader].endpoint())
        .await
        .context("client")?;
    let mut r = connect(&c.members[follower].endpoint())
        .await
        .context("client")?;
    let mut calls = Vec::new();
    for i in 0..pairs {
        let op = Op::Create {
            key: key(i % KEYS),
            value: format!("v{i}").into_bytes(),
        };
        let op = if i >= KEYS {
            Op::Delete { key: key(i % KEYS) }
        } else {
            op
        };
        let t0 = now();
        let outcome = clock
            .timeout(OP_TIMEOUT, run_op(&mut w, &op))
            .await
            .unwrap_or(Outcome::Unknown);
        calls.push(Call {
            op,
            outcome,
            call: t0,
            ret: now(),
        });
        let op = Op::Get { key: key(i % KEYS) };
        let t0 = now();
        let outcome = clock
            .timeout(OP_TIMEOUT, run_op(&mut r, &op))
            .await
            .unwrap_or(Outcome::Unknown);
        if outcome != Outcome::Unknown {
            calls.push(Call {
                op,
                outcome,
                call: t0,
                ret: now(),
            });
        }
    }
    Ok(calls)
}

/// The checker must catch a store that answers reads from a lagging
/// follower without ReadIndex (`--unsafe-stale-reads`); the same lag with
/// ReadIndex passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checker_catches_stale_follower_reads_and_passes_with_read_index() -> Result<()> {
    for broken in [true, false] {
        let flags: &[&str] = if broken {
            &["--unsafe-stale-reads"]
        } else {
            &[]
        };
        let c = Cluster::start(3, flags)?;
        let calls = write_then_read_elsewhere(&c, 12)
            .await
            .with_context(|| c.logs_tail())?;
        let verdict = check_linearizable(&calls, State::fresh(), 1_000_000);
        if broken {
            anyhow::ensure!(
                verdict.is_err(),
                "stale follower reads went unnoticed: {calls:?}"
            );
        } else {
            verdict.with_context(|| format!("lagging follower with ReadIndex: {calls:?}"))?;
        }
    }
    Ok(())
}
