//! Time as a controller core sees it: the monotonic cluster instant (for
//! what the controller itself remembers, immune to wall-clock faults) and
//! the cluster wall time (for timestamps it writes into objects and compares
//! with timestamps others wrote).

use std::time::Duration;

use ackemu_base::clock::{Clock, ClusterInstant};
use ackemu_kube::meta::Time;
use jiff::Timestamp;

/// One reading of the cluster clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub mono: ClusterInstant,
    pub wall: Timestamp,
}

/// The wall time [`Now::at_secs`] starts from: 2025-01-01T00:00:00Z.
pub const TEST_EPOCH_UNIX_S: i64 = 1_735_689_600;

impl Now {
    pub fn from_clock(clock: &Clock) -> Now {
        Now {
            mono: clock.now(),
            wall: Timestamp::from_millisecond(clock.wall_unix_ms())
                .unwrap_or(Timestamp::UNIX_EPOCH),
        }
    }

    /// `secs` after the test epoch, monotonic and wall alike (fixtures).
    pub fn at_secs(secs: u64) -> Now {
        Now {
            mono: ClusterInstant::from_epoch(Duration::from_secs(secs)),
            wall: wall_at_secs(secs),
        }
    }

    /// This reading `d` later.
    pub fn plus(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall: add(self.wall, d),
        }
    }

    pub fn time(&self) -> Time {
        Time(self.wall)
    }
}

/// The wall time `secs` after the test epoch.
pub fn wall_at_secs(secs: u64) -> Timestamp {
    Timestamp::from_second(TEST_EPOCH_UNIX_S + secs as i64).expect("test epoch in range")
}

/// `t + d`, saturating at the end of representable time.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    let sd = jiff::SignedDuration::try_from(d).unwrap_or(jiff::SignedDuration::MAX);
    t.checked_add(sd).unwrap_or(Timestamp::MAX)
}

/// `later - earlier`, zero when `earlier` is later.
pub fn since(later: Timestamp, earlier: Timestamp) -> Duration {
    let d = later.duration_since(earlier);
    Duration::try_from(d).unwrap_or(Duration::ZERO)
}
