//! systemd's bus cookie (sd-bus `bus->cookie`) as a pure allocator.
//!
//! sd-bus seals every message it sends with `++bus->cookie`. The variable
//! is 64 bits wide (kdbus' cookies were), but the classic D-Bus wire format
//! carries 32: `sd_bus_message_seal` refuses a cookie above 0xffffffff with
//! EOPNOTSUPP. Months of transient-unit churn (runc's `UseSystemd` probe)
//! walk the counter there, and from then on systemd can send nothing on that
//! connection: no reply, no signal (S01).
//!
//! The fix (systemd-rhel PR 322, later upstream): keep cookies in 32 bits;
//! after 0xffffffff continue at 0x80000000, using the top bit to mark "has
//! wrapped", and from then on skip cookies still in use by messages awaiting
//! their replies.

/// The largest cookie classic D-Bus can carry.
pub const COOKIE_MAX: u64 = 0xffff_ffff;
/// Where the fixed allocator continues after [`COOKIE_MAX`].
pub const COOKIE_CYCLED: u64 = 0x8000_0000;

/// Why a message could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The cookie went past 32 bits (the bug).
    #[error("cookie {cookie:#x} > 0xffffffff: Operation not supported (EOPNOTSUPP)")]
    Overflow {
        /// The cookie the message would have carried.
        cookie: u64,
    },
    /// Every cookie of the wrapped range is in use (the fix's EBUSY).
    #[error("no free cookie in 0x80000000..=0xffffffff: Device or resource busy (EBUSY)")]
    Exhausted,
}

/// One connection's cookie counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieJar {
    cookie: u64,
    fix: bool,
}

impl CookieJar {
    /// A counter whose next message gets `last + 1` (sd-bus starts at 0).
    pub fn new(last: u64, fix: bool) -> CookieJar {
        CookieJar { cookie: last, fix }
    }

    /// The last cookie handed out (or attempted): what gdb's
    /// `p /x bus->cookie` shows.
    pub fn current(&self) -> u64 {
        self.cookie
    }

    /// Whether the wrap-around fix is on.
    pub fn fix(&self) -> bool {
        self.fix
    }

    /// Overwrite the counter (gdb's `set var bus->cookie = …`).
    pub fn set(&mut self, cookie: u64) {
        self.cookie = cookie;
    }

    /// The cookie for the next message. `in_use(c)` says whether cookie `c`
    /// still names a sent message awaiting its reply.
    pub fn seal(&mut self, in_use: impl Fn(u32) -> bool) -> Result<u32, SealError> {
        if !self.fix {
            // The bug: increment first, refuse afterwards — the counter keeps
            // climbing past 0xffffffff and every later message fails too.
            self.cookie = self.cookie.saturating_add(1);
            return u32::try_from(self.cookie).map_err(|_| SealError::Overflow {
                cookie: self.cookie,
            });
        }
        let mut next = cookie_inc(self.cookie);
        if next & COOKIE_CYCLED != 0 {
            // In the wrapped half, skip cookies still in use; there are at
            // most COOKIE_CYCLED candidates.
            let mut tries = 0u64;
            while in_use(next as u32) {
                tries += 1;
                if tries >= COOKIE_CYCLED {
                    return Err(SealError::Exhausted);
                }
                next = cookie_inc(next);
            }
        }
        self.cookie = next;
        Ok(next as u32)
    }
}

fn cookie_inc(cookie: u64) -> u64 {
    if cookie >= COOKIE_MAX {
        COOKIE_CYCLED
    } else {
        cookie + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_fix_the_cookie_overflows_and_stays_broken() {
        let mut jar = CookieJar::new(0xffff_fffe, false);
        assert_eq!(jar.seal(|_| false), Ok(0xffff_ffff));
        assert_eq!(
            jar.seal(|_| false),
            Err(SealError::Overflow {
                cookie: 0x1_0000_0000
            })
        );
        assert_eq!(
            jar.seal(|_| false),
            Err(SealError::Overflow {
                cookie: 0x1_0000_0001
            })
        );
        assert_eq!(jar.current(), 0x1_0000_0001, "gdb shows > 0xffffffff");
    }

    #[test]
    fn table_of_fixed_allocations() {
        // (last cookie, cookies in use, expected next)
        let cases: &[(u64, &[u32], Result<u32, SealError>)] = &[
            (0, &[], Ok(1)),
            (41, &[42], Ok(42)), // below the wrapped half, nothing is checked
            (0xffff_fffe, &[], Ok(0xffff_ffff)),
            (0xffff_ffff, &[], Ok(0x8000_0000)),
            (0xffff_ffff, &[0x8000_0000, 0x8000_0001], Ok(0x8000_0002)),
            (0x8000_0005, &[0x8000_0006], Ok(0x8000_0007)),
            (0xffff_fffe, &[0xffff_ffff], Ok(0x8000_0000)),
            (0x1_0000_0003, &[], Ok(0x8000_0000)), // a counter already past the limit recovers
        ];
        for (last, used, want) in cases {
            let mut jar = CookieJar::new(*last, true);
            let got = jar.seal(|c| used.contains(&c));
            assert_eq!(&got, want, "last {last:#x}, in use {used:x?}");
            if let Ok(c) = got {
                assert_eq!(jar.current(), u64::from(c));
            }
        }
    }

    #[test]
    fn fixed_allocator_never_leaves_32_bits() {
        let mut jar = CookieJar::new(0xffff_fff0, true);
        for _ in 0..64 {
            let c = jar.seal(|_| false).expect("sealed");
            assert!(u64::from(c) <= COOKIE_MAX);
            assert!(jar.current() <= COOKIE_MAX);
        }
        assert_eq!(jar.current(), 0x8000_0030);
    }
}
