//! The process-wide clock, for the few places that cannot be handed one
//! (failpoint delays, log timestamps, the task registry). `Env::init` sets it;
//! until then it is a real clock with scale 1.

use std::sync::LazyLock;

use parking_lot::RwLock;

use crate::clock::Clock;

static PROCESS_CLOCK: LazyLock<RwLock<Option<Clock>>> = LazyLock::new(|| RwLock::new(None));

/// The process clock.
pub fn process_clock() -> Clock {
    if let Some(c) = PROCESS_CLOCK.read().as_ref() {
        return c.clone();
    }
    PROCESS_CLOCK
        .write()
        .get_or_insert_with(Clock::real)
        .clone()
}

/// Make `clock` the process clock.
pub fn set_process_clock(clock: Clock) {
    *PROCESS_CLOCK.write() = Some(clock);
}
