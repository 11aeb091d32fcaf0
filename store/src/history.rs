//! A history checker for etcd-style stores (pure): linearizability of a
//! recorded client history against a sequential model of the key space
//! (Wing & Gong / Porcupine search with memoization), and the watch
//! guarantees (ordered, unique, atomic per revision, no gaps, matching the
//! writes, resumable).
//!
//! The model includes the store revision: every successful write moves it
//! by exactly one and every response carries it, which pins writes to a
//! total order and makes stale reads visible. Operations whose outcome is
//! unknown (timeouts, dropped connections) may have happened or not.

use std::collections::{BTreeMap, HashMap, HashSet};

/// A client operation, shaped like what the Kubernetes API server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Linearizable get of one key.
    Get { key: Vec<u8> },
    /// Linearizable range over a prefix.
    Range { prefix: Vec<u8> },
    /// Txn: `create_revision(key) == 0` → put.
    Create { key: Vec<u8>, value: Vec<u8> },
    /// Txn: `mod_revision(key) == expect` → put.
    Update {
        key: Vec<u8>,
        value: Vec<u8>,
        expect_mod: i64,
    },
    /// Delete of one key.
    Delete { key: Vec<u8> },
}

/// A key's value and mod revision as a response reported it.
pub type Kv = (Vec<u8>, Vec<u8>, i64);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The call failed or timed out: it may or may not have taken effect.
    Unknown,
    /// `rev` is the response header's revision.
    Read {
        rev: i64,
        kvs: Vec<Kv>,
    },
    Txn {
        rev: i64,
        succeeded: bool,
    },
    Delete {
        rev: i64,
        deleted: i64,
    },
}

/// One operation with its invocation and response times (any monotonic
/// unit; equal times count as concurrent).
#[derive(Clone, Debug)]
pub struct Call {
    pub op: Op,
    pub outcome: Outcome,
    pub call: u64,
    pub ret: u64,
}

/// The sequential model: the store revision and every live key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct State {
    pub rev: i64,
    pub kv: BTreeMap<Vec<u8>, (Vec<u8>, i64)>,
}

impl State {
    /// A fresh etcd store: revision 1, no keys.
    pub fn fresh() -> Self {
        State {
            rev: 1,
            kv: BTreeMap::new(),
        }
    }

    fn read(&self, op: &Op) -> Vec<Kv> {
        match op {
            Op::Get { key } => self
                .kv
                .get(key)
                .map(|(v, m)| vec![(key.clone(), v.clone(), *m)])
                .unwrap_or_default(),
            Op::Range { prefix } => self
                .kv
                .iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, (v, m))| (k.clone(), v.clone(), *m))
                .collect(),
            _ => vec![],
        }
    }

    /// Whether a write's guard holds, and the state after it if applied.
    fn apply_write(&self, op: &Op) -> (bool, State) {
        let mut next = self.clone();
        let applies = match op {
            Op::Create { key, value } => {
                let ok = !self.kv.contains_key(key);
                if ok {
                    next.rev += 1;
                    next.kv.insert(key.clone(), (value.clone(), next.rev));
                }
                ok
            }
            Op::Update {
                key,
                value,
                expect_mod,
            } => {
                let ok = self.kv.get(key).is_some_and(|(_, m)| m == expect_mod);
                if ok {
                    next.rev += 1;
                    next.kv.insert(key.clone(), (value.clone(), next.rev));
                }
                ok
            }
            Op::Delete { key } => {
                let ok = self.kv.contains_key(key);
                if ok {
                    next.rev += 1;
                    next.kv.remove(key);
                }
                ok
            }
            Op::Get { .. } | Op::Range { .. } => false,
        };
        (applies, next)
    }

    /// Every state the operation can lead to (none: not allowed here).
    pub fn step(&self, op: &Op, outcome: &Outcome) -> Vec<State> {
        match outcome {
            Outcome::Unknown => {
                let (applies, next) = self.apply_write(op);
                if applies {
                    vec![self.clone(), next]
                } else {
                    vec![self.clone()]
                }
            }
            Outcome::Read { rev, kvs } => {
                if *rev == self.rev && *kvs == self.read(op) {
                    vec![self.clone()]
                } else {
                    vec![]
                }
            }
            Outcome::Txn { rev, succeeded } => {
                let (applies, next) = self.apply_write(op);
                match (applies, *succeeded) {
                    (true, true) if *rev == next.rev => vec![next],
                    (false, false) if *rev == self.rev => vec![self.clone()],
                    _ => vec![],
                }
            }
            Outcome::Delete { rev, deleted } => {
                let (applies, next) = self.apply_write(op);
                match (applies, *deleted) {
                    (true, 1) if *rev == next.rev => vec![next],
                    (false, 0) if *rev == self.rev => vec![self.clone()],
                    _ => vec![],
                }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    #[error(
        "history is not linearizable: no order explains the {linearized} operations after {prefix:?}"
    )]
    NotLinearizable {
        linearized: usize,
        prefix: Vec<String>,
    },
    #[error("linearizability search gave up after {0} states")]
    Inconclusive(usize),
    #[error("watch: {0}")]
    Watch(String),
}

/// Searches for a linearization of `history` starting from `init`.
pub fn check_linearizable(
    history: &[Call],
    init: State,
    max_states: usize,
) -> Result<(), CheckError> {
    let mut ops: Vec<Call> = history.to_vec();
    for o in &mut ops {
        if o.outcome == Outcome::Unknown {
            // It may take effect any time after it was called.
            o.ret = u64::MAX;
        }
    }
    ops.sort_by_key(|o| (o.call, o.ret));
    let n = ops.len();
    let mut done = vec![0u64; n.div_ceil(64)];
    let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    // (operation, which of its possible outcomes, state before it)
    let mut stack: Vec<(usize, usize, State)> = Vec::new();
    let mut state = init;
    let mut longest: Vec<usize> = Vec::new();
    let mut cursor = (0usize, 0usize);
    loop {
        if stack.len() == n {
            return Ok(());
        }
        // Candidates: not yet linearized and invoked no later than the
        // earliest response among the pending operations.
        let min_ret = (0..n)
            .filter(|i| !is_done(&done, *i))
            .map(|i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        let (mut i, mut alt) = cursor;
        let mut advanced = false;
        while i < n && ops[i].call <= min_ret {
            if !is_done(&done, i) {
                // An unknown write first tries "it happened", then "it did not".
                let nexts = state.step(&ops[i].op, &ops[i].outcome);
                while alt < nexts.len() {
                    let next = &nexts[nexts.len() - 1 - alt];
                    done[i / 64] |= 1 << (i % 64);
                    if seen.insert((done.clone(), next.clone())) {
                        if seen.len() > max_states {
                            return Err(CheckError::Inconclusive(max_states));
                        }
                        stack.push((i, alt, std::mem::replace(&mut state, next.clone())));
                        advanced = true;
                        break;
                    }
                    done[i / 64] &= !(1 << (i % 64));
                    alt += 1;
                }
                if advanced {
                    break;
                }
            }
            i += 1;
            alt = 0;
        }
        if advanced {
            if stack.len() > longest.len() {
                longest = stack.iter().map(|(j, _, _)| *j).collect();
            }
            cursor = (0, 0);
            continue;
        }
        let Some((j, alt_j, prev)) = stack.pop() else {
            let prefix = longest
                .iter()
                .rev()
                .take(5)
                .rev()
                .map(|j| format!("{:?} -> {:?}", ops[*j].op, ops[*j].outcome))
                .collect();
            return Err(CheckError::NotLinearizable {
                linearized: longest.len(),
                prefix,
            });
        };
        done[j / 64] &= !(1 << (j % 64));
        state = prev;
        cursor = (j, alt_j + 1);
    }
}

/// One watch event as a client saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    pub rev: i64,
    pub key: Vec<u8>,
    /// `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// Checks a watch stream (responses in arrival order) that started at
/// `start_rev` on a prefix covering every key the history writes.
pub fn check_watch(
    responses: &[Vec<WatchEvent>],
    start_rev: i64,
    history: &[Call],
) -> Result<(), CheckError> {
    let err = |m: String| Err(CheckError::Watch(m));
    let mut last_rev = start_rev - 1;
    let mut revs_in_response: HashMap<i64, usize> = HashMap::new();
    let mut by_rev: BTreeMap<i64, Vec<&WatchEvent>> = BTreeMap::new();
    for (ri, resp) in responses.iter().enumerate() {
        for ev in resp {
            if ev.rev < last_rev {
                return err(format!(
                    "event at revision {} after revision {last_rev}",
                    ev.rev
                ));
            }
            if ev.rev < start_rev {
                return err(format!(
                    "event at revision {} before the start revision {start_rev}",
                    ev.rev
                ));
            }
            if let Some(prev) = revs_in_response.insert(ev.rev, ri)
                && prev != ri
            {
                return err(format!(
                    "revision {} split over responses {prev} and {ri}",
                    ev.rev
                ));
            }
            let same = by_rev.entry(ev.rev).or_default();
            if same.iter().any(|e| e.key == ev.key) {
                return err(format!(
                    "duplicate event for {:?} at revision {}",
                    String::from_utf8_lossy(&ev.key),
                    ev.rev
                ));
            }
            same.push(ev);
            last_rev = ev.rev;
        }
    }
    // Match revisions against the writes that produced them.
    let mut known: BTreeMap<i64, &Call> = BTreeMap::new();
    let mut unknown_writes = 0usize;
    for c in history {
        match (&c.op, &c.outcome) {
            (
                Op::Create { .. } | Op::Update { .. },
                Outcome::Txn {
                    rev,
                    succeeded: true,
                },
            ) => {
                known.insert(*rev, c);
            }
            (Op::Delete { .. }, Outcome::Delete { rev, deleted: 1 }) => {
                known.insert(*rev, c);
            }
            (Op::Create { .. } | Op::Update { .. } | Op::Delete { .. }, Outcome::Unknown) => {
                unknown_writes += 1
            }
            _ => {}
        }
    }
    let mut explained_by_unknown = 0usize;
    for (rev, evs) in &by_rev {
        match known.get(rev) {
            Some(c) => {
                let (key, value) = match &c.op {
                    Op::Create { key, value } | Op::Update { key, value, .. } => (key, Some(value)),
                    Op::Delete { key } => (key, None),
                    _ => unreachable!("only writes are indexed"),
                };
                if evs.len() != 1 || evs[0].key != *key || evs[0].value.as_ref() != value {
                    return err(format!(
                        "events at revision {rev} ({evs:?}) do not match the write {:?}",
                        c.op
                    ));
                }
            }
            None => explained_by_unknown += 1,
        }
    }
    if explained_by_unknown > unknown_writes {
        return err(format!(
            "{explained_by_unknown} revisions have events but no acknowledged write (only {unknown_writes} writes have unknown outcomes)"
        ));
    }
    for rev in known.keys().filter(|r| **r >= start_rev && **r <= last_rev) {
        if !by_rev.contains_key(rev) {
            return err(format!(
                "gap: no event for the acknowledged write at revision {rev}"
            ));
        }
    }
    Ok(())
}

/// Settles writes whose outcome the client never learned, using a
/// complete watch of the written keys (as etcd's robustness tests do):
/// every write carries a unique value, so a put that took effect shows up
/// as an event with its value, and a delete as an event no acknowledged
/// delete explains. Writes that left no trace are dropped (they had no
/// effect). A settled write may have taken effect any time after its call.
pub fn resolve_unknown_writes(history: &[Call], watched: &[Vec<WatchEvent>]) -> Vec<Call> {
    let events: Vec<&WatchEvent> = watched.iter().flatten().collect();
    let mut known_delete_revs: HashSet<i64> = HashSet::new();
    for c in history {
        if let (Op::Delete { .. }, Outcome::Delete { rev, deleted: 1 }) = (&c.op, &c.outcome) {
            known_delete_revs.insert(*rev);
        }
    }
    let mut claimed: HashSet<i64> = HashSet::new();
    let mut out = Vec::with_capacity(history.len());
    for c in history {
        if c.outcome != Outcome::Unknown {
            out.push(c.clone());
            continue;
        }
        let found = match &c.op {
            Op::Create { key, value } | Op::Update { key, value, .. } => events
                .iter()
                .find(|e| e.key == *key && e.value.as_ref() == Some(value))
                .map(|e| Outcome::Txn {
                    rev: e.rev,
                    succeeded: true,
                }),
            Op::Delete { key } => events
                .iter()
                .find(|e| {
                    e.key == *key
                        && e.value.is_none()
                        && !known_delete_revs.contains(&e.rev)
                        && !claimed.contains(&e.rev)
                })
                .map(|e| Outcome::Delete {
                    rev: e.rev,
                    deleted: 1,
                }),
            Op::Get { .. } | Op::Range { .. } => None,
        };
        if let Some(outcome) = found {
            if let Outcome::Delete { rev, .. } = outcome {
                claimed.insert(rev);
            }
            out.push(Call {
                op: c.op.clone(),
                outcome,
                call: c.call,
                ret: u64::MAX,
            });
        }
    }
    out
}

/// Two watches of the same prefix agree on every revision from `from` on
/// that both saw (a watch resumed from any uncompacted revision sees the
/// same history).
pub fn check_resumable(
    full: &[Vec<WatchEvent>],
    resumed: &[Vec<WatchEvent>],
    from: i64,
) -> Result<(), CheckError> {
    let a: Vec<&WatchEvent> = full.iter().flatten().filter(|e| e.rev >= from).collect();
    let b: Vec<&WatchEvent> = resumed.iter().flatten().collect();
    let upto = a
        .last()
        .map(|e| e.rev)
        .unwrap_or(0)
        .min(b.last().map(|e| e.rev).unwrap_or(0));
    let a: Vec<&&WatchEvent> = a.iter().filter(|e| e.rev <= upto).collect();
    let b: Vec<&&WatchEvent> = b.iter().filter(|e| e.rev <= upto).collect();
    if a != b {
        return Err(CheckError::Watch(format!(
            "a watch resumed at revision {from} saw {} events, the original {} (up to revision {upto})",
            b.len(),
            a.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    fn call(op: Op, outcome: Outcome, t: (u64, u64)) -> Call {
        Call {
            op,
            outcome,
            call: t.0,
            ret: t.1,
        }
    }

    fn create(key: &str, v: &str) -> Op {
        Op::Create {
            key: k(key),
            value: k(v),
        }
    }

    fn get(key: &str) -> Op {
        Op::Get { key: k(key) }
    }

    fn read(rev: i64, kvs: &[(&str, &str, i64)]) -> Outcome {
        Outcome::Read {
            rev,
            kvs: kvs.iter().map(|(a, b, m)| (k(a), k(b), *m)).collect(),
        }
    }

    const MAX: usize = 100_000;

    #[test]
    fn sequential_and_concurrent_histories() {
        type Case = (&'static str, Vec<Call>, bool);
        let cases: Vec<Case> = vec![
            (
                "create then read",
                vec![
                    call(
                        create("a", "1"),
                        Outcome::Txn {
                            rev: 2,
                            succeeded: true,
                        },
                        (0, 1),
                    ),
                    call(get("a"), read(2, &[("a", "1", 2)]), (2, 3)),
                ],
                true,
            ),
            (
                "stale read after the write returned",
                vec![
                    call(
                        create("a", "1"),
                        Outcome::Txn {
                            rev: 2,
                            succeeded: true,
                        },
                        (0, 1),
                    ),
                    call(get("a"), read(1, &[]), (2, 3)),
                ],
                false,
            ),
            (
                "old read concurrent with the write",
                vec![
                    call(
                        create("a", "1"),
                        Outcome::Txn {
                            rev: 2,
                            succeeded: true,
                        },
                        (0, 10),
                    ),
                    call(get("a"), read(1, &[]), (2, 3)),
                ],
                true,
            ),
            (
                "two creates cannot both succeed",
                vec![
                    call(
                        create("a", "1"),
                        Outcome::Txn {
                            rev: 2,
                            succeeded: true,
                        },
                        (0, 10),
                    ),
                    call(
                        create("a", "2"),
                        Outcome::Txn {
                            rev: 3,
                            succeeded: true,
                        },
                        (0, 10),
                    ),
                ],
                false,
            ),
            (
                "update guarded by mod revision",
                vec![
                    call(
                        create("a", "1"),
                        Outcome::Txn {
                            rev: 2,
                            succeeded: true,
                        },
                        (0, 1),
                    ),
                    call(
                        Op::Update {
                            key: k("a"),
                            value: k("2"),
                            expect_mod: 2,
                        },
                        Outcome::Txn {
                            rev: 3,
                            succeeded: true,
                        },
                        (2, 3),
                    ),
                    call(
                        Op::Update {
                            key: k("a"),
                            value: k("3"),
                            expect_mod: 2,
                        },
                        Outcome::Txn {
                            rev: 3,
                            succeeded: false,
                        },
                        (4, 5),
                    ),
                    call(
                        Op::Range { prefix: k("") },
                        read(3, &[("a", "2", 3)]),
                        (6, 7),
                    ),
                ],
                true,
            ),
            (
                "an unknown write may have happened",
                vec![
                    call(create("a", "1"), Outcome::Unknown, (0, 1)),
                    call(get("a"), read(2, &[("a", "1", 2)]), (5, 6)),
                ],
                true,
            ),
            (
                "an unknown write may not have happened",
                vec![
                    call(create("a", "1"), Outcome::Unknown, (0, 1)),
                    call(get("a"), read(1, &[]), (5, 6)),
                ],
                true,
            ),
            (
                "a lost acknowledged write",
                vec![
                    call(
                        create("a", "1"),
                        Outcome::Txn {
                            rev: 2,
                            succeeded: true,
                        },
                        (0, 1),
                    ),
                    call(
                        Op::Delete { key: k("a") },
                        Outcome::Delete { rev: 2, deleted: 0 },
                        (2, 3),
                    ),
                ],
                false,
            ),
        ];
        for (name, h, want) in cases {
            let got = check_linearizable(&h, State::fresh(), MAX);
            assert_eq!(got.is_ok(), want, "{name}: {got:?}");
        }
    }

    #[test]
    fn many_concurrent_clients_are_searched_quickly() {
        // 8 clients each create their own key, all concurrent, then read all.
        let mut h = Vec::new();
        for i in 0..8 {
            h.push(call(
                create(&format!("k{i}"), "v"),
                Outcome::Txn {
                    rev: i + 2,
                    succeeded: true,
                },
                (0, 100),
            ));
        }
        let kvs: Vec<(String, i64)> = (0..8).map(|i| (format!("k{i}"), i + 2)).collect();
        let kvs: Vec<(&str, &str, i64)> =
            kvs.iter().map(|(key, m)| (key.as_str(), "v", *m)).collect();
        h.push(call(
            Op::Range { prefix: k("k") },
            read(9, &kvs),
            (101, 102),
        ));
        assert_eq!(check_linearizable(&h, State::fresh(), MAX), Ok(()));
    }

    fn ev(rev: i64, key: &str, value: Option<&str>) -> WatchEvent {
        WatchEvent {
            rev,
            key: k(key),
            value: value.map(k),
        }
    }

    #[test]
    fn watch_properties() {
        let history = vec![
            call(
                create("a", "1"),
                Outcome::Txn {
                    rev: 2,
                    succeeded: true,
                },
                (0, 1),
            ),
            call(
                create("b", "1"),
                Outcome::Txn {
                    rev: 3,
                    succeeded: true,
                },
                (2, 3),
            ),
            call(
                Op::Delete { key: k("a") },
                Outcome::Delete { rev: 4, deleted: 1 },
                (4, 5),
            ),
        ];
        let good = vec![
            vec![ev(2, "a", Some("1"))],
            vec![ev(3, "b", Some("1")), ev(4, "a", None)],
        ];
        assert_eq!(check_watch(&good, 2, &history), Ok(()));
        let cases: Vec<(&str, Vec<Vec<WatchEvent>>)> = vec![
            (
                "gap",
                vec![vec![ev(2, "a", Some("1"))], vec![ev(4, "a", None)]],
            ),
            (
                "out of order",
                vec![vec![
                    ev(3, "b", Some("1")),
                    ev(2, "a", Some("1")),
                    ev(4, "a", None),
                ]],
            ),
            (
                "duplicate",
                vec![vec![ev(2, "a", Some("1")), ev(2, "a", Some("1"))]],
            ),
            ("wrong value", vec![vec![ev(2, "a", Some("9"))]]),
            (
                "phantom revision",
                vec![vec![ev(2, "a", Some("1")), ev(5, "z", Some("1"))]],
            ),
        ];
        for (name, stream) in cases {
            assert!(check_watch(&stream, 2, &history).is_err(), "{name}");
        }
        let split = vec![
            vec![WatchEvent {
                rev: 2,
                key: k("a"),
                value: Some(k("1")),
            }],
            vec![ev(2, "b", Some("1"))],
        ];
        assert!(
            check_watch(&split, 2, &[]).is_err(),
            "a revision split over responses"
        );
        assert_eq!(
            check_resumable(&good, &[vec![ev(3, "b", Some("1")), ev(4, "a", None)]], 3),
            Ok(())
        );
        assert!(check_resumable(&good, &[vec![ev(4, "a", None)]], 3).is_err());
    }
}
