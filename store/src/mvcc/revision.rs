//! Revisions: `main` is the store revision a write transaction produced,
//! `sub` orders the changes inside it. On disk a revision is 16 big-endian
//! bytes (so RocksDB orders records by revision), plus a trailing `t` when
//! the record is a tombstone.

/// A (main, sub) revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Length of an encoded revision without the tombstone marker.
pub const REV_BYTES: usize = 16;
const TOMBSTONE_MARK: u8 = b't';

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }

    /// The record key for this revision.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut k = Vec::with_capacity(REV_BYTES + 1);
        k.extend_from_slice(&(self.main as u64).to_be_bytes());
        k.extend_from_slice(&(self.sub as u64).to_be_bytes());
        if tombstone {
            k.push(TOMBSTONE_MARK);
        }
        k
    }

    /// Decodes a record key into the revision and whether it is a tombstone.
    pub fn from_key(k: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match k.len() {
            REV_BYTES => false,
            n if n == REV_BYTES + 1 && k[REV_BYTES] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        let main = u64::from_be_bytes(k[0..8].try_into().ok()?) as i64;
        let sub = u64::from_be_bytes(k[8..16].try_into().ok()?) as i64;
        Some((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_revision() {
        let cases = [
            (Revision::new(1, 0), false),
            (Revision::new(1, 1), true),
            (Revision::new(2, 0), false),
            (Revision::new(256, 3), true),
            (Revision::new(i64::MAX, 0), false),
        ];
        let mut prev: Option<Vec<u8>> = None;
        for (rev, tomb) in cases {
            let k = rev.to_key(tomb);
            assert_eq!(Revision::from_key(&k), Some((rev, tomb)));
            if let Some(p) = prev {
                assert!(p < k, "{rev:?} sorts after the previous revision");
            }
            prev = Some(k);
        }
        assert_eq!(Revision::from_key(b"short"), None);
        assert_eq!(Revision::from_key(&[0u8; 17]), None);
    }
}
