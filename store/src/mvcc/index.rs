//! The in-memory key index: for every key, the revisions that changed it,
//! grouped into generations (a generation runs from a creation to a
//! deletion). Pure; the record values live in RocksDB under their revision.
//!
//! Semantics follow etcd's MVCC: `version` counts modifications within a
//! generation, a deletion (tombstone) closes the generation, and compaction
//! at revision `c` keeps, per key, every revision above `c` plus the newest
//! revision at or below `c` unless that revision is a tombstone.

use super::revision::Revision;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Generation {
    /// Modifications since creation, including ones compacted away.
    pub ver: i64,
    pub created: Revision,
    pub revs: Vec<Revision>,
}

/// What the index knows about a live key at a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyIndex {
    pub modified: Revision,
    pub generations: Vec<Generation>,
}

impl KeyIndex {
    /// Records a put at `rev`.
    pub fn put(&mut self, rev: Revision) {
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let g = self.generations.last_mut().expect("generation present");
        if g.revs.is_empty() {
            g.created = rev;
        }
        g.revs.push(rev);
        g.ver += 1;
        self.modified = rev;
    }

    /// Records the deletion of a live key at `rev`. Returns false (and
    /// changes nothing) when the key is not live.
    pub fn tombstone(&mut self, rev: Revision) -> bool {
        if !self.is_live() {
            return false;
        }
        self.put(rev);
        self.generations.push(Generation::default());
        true
    }

    /// Rebuilds the index from a stored record: the first record seen for a
    /// generation carries its creation revision and version.
    pub fn restore(&mut self, rev: Revision, created: Revision, version: i64, tombstone: bool) {
        let fresh = self.generations.last().is_none_or(|g| g.revs.is_empty());
        if fresh && !tombstone {
            if self.generations.is_empty() {
                self.generations.push(Generation::default());
            }
            let g = self.generations.last_mut().expect("generation present");
            g.created = created;
            g.ver = version;
            g.revs.push(rev);
            self.modified = rev;
        } else if tombstone {
            if fresh {
                // A tombstone whose puts were compacted away (kept because
                // it sits at the compaction revision): a closed generation
                // of its own, so the next compaction removes the record.
                if self.generations.is_empty() {
                    self.generations.push(Generation::default());
                }
                let g = self.generations.last_mut().expect("generation present");
                g.created = rev;
                g.revs.push(rev);
                self.modified = rev;
                self.generations.push(Generation::default());
                return;
            }
            self.tombstone(rev);
        } else {
            self.put(rev);
        }
    }

    pub fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|g| !g.revs.is_empty())
    }

    /// No revisions at all: the key can leave the index.
    pub fn is_empty(&self) -> bool {
        self.generations.iter().all(|g| g.revs.is_empty())
    }

    /// The live key as of main revision `at`, or `None` when it did not
    /// exist (or was deleted) then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let g = self.find_generation(at)?;
        let n = g.revs.iter().rposition(|r| r.main <= at)?;
        Some(KeyAt {
            modified: g.revs[n],
            created: g.created,
            version: g.ver - (g.revs.len() - n - 1) as i64,
        })
    }

    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (i, g) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(tail)) = (g.revs.first(), g.revs.last()) else {
                continue;
            };
            if i != last && tail.main <= at {
                // Deleted at or before `at`.
                return None;
            }
            if first.main <= at {
                return Some(g);
            }
        }
        None
    }

    /// Compacts at main revision `at`; returns the removed revisions with
    /// their tombstone flag, oldest first.
    pub fn compact(&mut self, at: i64) -> Vec<(Revision, bool)> {
        let mut removed = Vec::new();
        if self.generations.is_empty() {
            return removed;
        }
        let last = self.generations.len() - 1;
        // The first generation that is still live after `at` (its tombstone
        // comes later) or the last one.
        // A tombstone exactly at `at` is kept (as the generation's only
        // revision) so that a watch from the compaction revision still sees
        // the deletion; the next compaction removes it.
        let mut gi = 0;
        while gi < last {
            let g = &self.generations[gi];
            match g.revs.last() {
                Some(t) if t.main >= at => break,
                _ => gi += 1,
            }
        }
        for (i, g) in self.generations[..gi].iter().enumerate() {
            let n = g.revs.len();
            for (j, r) in g.revs.iter().enumerate() {
                // The last revision of every closed generation is its tombstone.
                removed.push((*r, i != last && j + 1 == n));
            }
        }
        let g = &mut self.generations[gi];
        if let Some(keep) = g.revs.iter().rposition(|r| r.main <= at) {
            for r in g.revs.drain(..keep) {
                removed.push((r, false));
            }
        }
        self.generations.drain(..gi);
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    /// put at 2, 4, 6; delete at 8; put at 10, 12; delete at 14; put at 16.
    fn sample() -> KeyIndex {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.put(r(4));
        ki.put(r(6));
        assert!(ki.tombstone(r(8)));
        ki.put(r(10));
        ki.put(r(12));
        assert!(ki.tombstone(r(14)));
        ki.put(r(16));
        ki
    }

    #[test]
    fn get_follows_generations() {
        let ki = sample();
        type Want = Option<(i64, i64, i64)>;
        let cases: &[(i64, Want)] = &[
            // at, (modified, created, version)
            (1, None),
            (2, Some((2, 2, 1))),
            (3, Some((2, 2, 1))),
            (6, Some((6, 2, 3))),
            (7, Some((6, 2, 3))),
            (8, None),
            (9, None),
            (10, Some((10, 10, 1))),
            (13, Some((12, 10, 2))),
            (14, None),
            (15, None),
            (16, Some((16, 16, 1))),
            (100, Some((16, 16, 1))),
        ];
        for &(at, want) in cases {
            let got = ki
                .get(at)
                .map(|k| (k.modified.main, k.created.main, k.version));
            assert_eq!(got, want, "get({at})");
        }
    }

    #[test]
    fn tombstone_of_dead_key_is_refused() {
        let mut ki = KeyIndex::default();
        assert!(!ki.tombstone(r(2)));
        ki.put(r(3));
        assert!(ki.tombstone(r(4)));
        assert!(!ki.tombstone(r(5)));
        assert!(!ki.is_live());
    }

    #[test]
    fn compaction_keeps_newest_visible_revision() {
        // (compact at, removed mains, then get checks (at, modified main or none))
        type Case = (i64, &'static [i64], &'static [(i64, Option<i64>)]);
        let cases: &[Case] = &[
            (1, &[], &[(2, Some(2))]),
            (2, &[], &[(2, Some(2)), (5, Some(4))]),
            (5, &[2], &[(5, Some(4)), (7, Some(6))]),
            (7, &[2, 4], &[(7, Some(6)), (8, None)]),
            // The tombstone at exactly 8 stays (watch from 8 sees it).
            (8, &[2, 4, 6], &[(8, None), (9, None), (10, Some(10))]),
            (9, &[2, 4, 6, 8], &[(10, Some(10))]),
            (13, &[2, 4, 6, 8, 10], &[(13, Some(12)), (14, None)]),
            (14, &[2, 4, 6, 8, 10, 12], &[(15, None), (16, Some(16))]),
            (15, &[2, 4, 6, 8, 10, 12, 14], &[(15, None), (16, Some(16))]),
            (20, &[2, 4, 6, 8, 10, 12, 14], &[(20, Some(16))]),
        ];
        for &(at, want_removed, gets) in cases {
            let mut ki = sample();
            let removed: Vec<i64> = ki.compact(at).iter().map(|(r, _)| r.main).collect();
            assert_eq!(removed, want_removed, "compact({at}) removed");
            for &(get_at, want) in gets {
                assert_eq!(
                    ki.get(get_at).map(|k| k.modified.main),
                    want,
                    "compact({at}) then get({get_at})"
                );
            }
            // Versions survive compaction.
            assert_eq!(ki.get(100).map(|k| k.version), Some(1));
        }
    }

    #[test]
    fn compaction_marks_tombstones() {
        let mut ki = sample();
        let removed = ki.compact(15);
        let tombs: Vec<i64> = removed
            .iter()
            .filter(|(_, t)| *t)
            .map(|(r, _)| r.main)
            .collect();
        assert_eq!(tombs, vec![8, 14]);
    }

    #[test]
    fn compaction_of_deleted_key_empties_it() {
        let mut ki = KeyIndex::default();
        ki.put(r(2));
        ki.put(r(3));
        ki.tombstone(r(4));
        assert_eq!(ki.compact(4), vec![(r(2), false), (r(3), false)]);
        assert!(
            !ki.is_empty(),
            "the tombstone at the compaction revision stays"
        );
        assert_eq!(ki.compact(5), vec![(r(4), true)]);
        assert!(ki.is_empty());
    }

    #[test]
    fn version_of_compacted_key_stays_correct() {
        let mut ki = KeyIndex::default();
        for m in 2..=6 {
            ki.put(r(m));
        }
        ki.compact(5);
        assert_eq!(ki.get(6).map(|k| k.version), Some(5));
        assert_eq!(ki.get(5).map(|k| k.version), Some(4));
        assert_eq!(ki.get(5).map(|k| k.created.main), Some(2));
    }

    #[test]
    fn restore_rebuilds_from_records() {
        // Records after a compaction at 5: put@5 (created 2, version 4), put@6 (v5),
        // tombstone@7, put@9 (created 9, v1).
        let mut ki = KeyIndex::default();
        ki.restore(r(5), r(2), 4, false);
        ki.restore(r(6), r(2), 5, false);
        ki.restore(r(7), Revision::default(), 0, true);
        ki.restore(r(9), r(9), 1, false);
        assert_eq!(ki.get(6).map(|k| (k.version, k.created.main)), Some((5, 2)));
        assert_eq!(ki.get(7), None);
        assert_eq!(ki.get(9).map(|k| (k.version, k.created.main)), Some((1, 9)));
        // A lone tombstone (its puts compacted) is not live but is still
        // known, so the next compaction removes its record.
        let mut lone = KeyIndex::default();
        lone.restore(r(3), Revision::default(), 0, true);
        assert!(!lone.is_live());
        assert_eq!(lone.get(3), None);
        assert_eq!(lone.compact(4), vec![(r(3), true)]);
        assert!(lone.is_empty());
    }
}
