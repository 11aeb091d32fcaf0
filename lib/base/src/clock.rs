//! Cluster time.
//!
//! Every duration in ackemu's configuration is *cluster time*. A process runs
//! with a time scale `N`: sleeping a configured duration `D` takes `D / N` of
//! real time, and cluster time advances `N` times faster than wall time.
//!
//! All processes of one cluster agree on cluster time because they share two
//! numbers passed on their command lines: the cluster **epoch** (a unix time
//! in milliseconds, chosen once by whoever starts the cluster) and the
//! **scale**. Cluster time since the epoch is `(real_now - epoch) * N`, so two
//! processes started at different moments compute the same value (up to the
//! accuracy of the host clock, which is one host here).
//!
//! Two flavours are derived from it:
//! - [`Clock::now`] — monotonic cluster time ([`ClusterInstant`]); offsets do
//!   not move it, so timers and leases are never confused by skew;
//! - [`Clock::wall`] — cluster wall time: `epoch + now + offset`. The offset
//!   is the "clock skew" / "a year later" fault; certificates are checked
//!   against this.
//!
//! The real clock reads tokio's clock, so `#[tokio::test(start_paused = true)]`
//! drives it deterministically. [`Clock::manual`] gives a clock that moves only
//! when told to.
#![allow(clippy::disallowed_methods)] // the one place that reads the host clocks

use std::future::Future;
use std::ops::{Add, Sub};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

/// How a process's clock relates to the cluster's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockConfig {
    /// Cluster time runs this many times faster than real time. Must be > 0.
    pub time_scale: f64,
    /// The cluster epoch, unix milliseconds. Shared by every process of a
    /// cluster.
    pub epoch_unix_ms: i64,
    /// Initial offset added to cluster wall time, milliseconds (may be negative).
    pub offset_ms: i64,
}

impl ClockConfig {
    /// Scale 1, epoch now, no offset.
    pub fn real_now() -> Self {
        ClockConfig {
            time_scale: 1.0,
            epoch_unix_ms: unix_ms(SystemTime::now()),
            offset_ms: 0,
        }
    }
}

/// A point in monotonic cluster time: the cluster time elapsed since the
/// cluster epoch. Unaffected by the wall-clock offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ClusterInstant(Duration);

impl ClusterInstant {
    /// The instant `d` after the epoch.
    pub const fn from_epoch(d: Duration) -> Self {
        ClusterInstant(d)
    }
    /// Cluster time since the epoch.
    pub const fn since_epoch(self) -> Duration {
        self.0
    }
    /// Milliseconds since the epoch.
    pub fn as_millis(self) -> u128 {
        self.0.as_millis()
    }
    /// `self - earlier`; panics-free: zero when `earlier` is later.
    pub fn saturating_duration_since(self, earlier: ClusterInstant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
    /// `self - earlier`, or `None` when `earlier` is later.
    pub fn checked_duration_since(self, earlier: ClusterInstant) -> Option<Duration> {
        self.0.checked_sub(earlier.0)
    }
    /// Same as [`Self::saturating_duration_since`] (std's name).
    pub fn duration_since(self, earlier: ClusterInstant) -> Duration {
        self.saturating_duration_since(earlier)
    }
    /// `self + d`, or `None` on overflow.
    pub fn checked_add(self, d: Duration) -> Option<ClusterInstant> {
        self.0.checked_add(d).map(ClusterInstant)
    }
}

impl Add<Duration> for ClusterInstant {
    type Output = ClusterInstant;
    fn add(self, rhs: Duration) -> ClusterInstant {
        ClusterInstant(self.0.saturating_add(rhs))
    }
}

impl Sub<Duration> for ClusterInstant {
    type Output = ClusterInstant;
    fn sub(self, rhs: Duration) -> ClusterInstant {
        ClusterInstant(self.0.saturating_sub(rhs))
    }
}

impl Sub for ClusterInstant {
    type Output = Duration;
    fn sub(self, rhs: ClusterInstant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

/// A timeout elapsed before the future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed after {0:?} of cluster time")]
pub struct Elapsed(pub Duration);

enum Source {
    Real {
        /// tokio instant at construction.
        start_mono: tokio::time::Instant,
        /// Cluster time since the epoch at construction.
        start_cluster: Duration,
    },
    Manual(watch::Sender<Duration>),
}

struct Inner {
    scale: f64,
    epoch_unix_ms: i64,
    offset_ms: AtomicI64,
    source: Source,
}

/// The process's view of cluster time. Cheap to clone; clones share the
/// offset.
#[derive(Clone)]
pub struct Clock {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clock")
            .field("scale", &self.inner.scale)
            .field("epoch_unix_ms", &self.inner.epoch_unix_ms)
            .field("offset_ms", &self.offset_ms())
            .field("manual", &matches!(self.inner.source, Source::Manual(_)))
            .finish()
    }
}

/// Moves a manual clock.
#[derive(Clone)]
pub struct ManualClock {
    clock: Clock,
}

impl ManualClock {
    /// Advance cluster time by `d`, waking every sleeper whose deadline passed.
    pub fn advance(&self, d: Duration) {
        if let Source::Manual(tx) = &self.clock.inner.source {
            tx.send_modify(|now| *now += d);
        }
    }
    /// The clock this handle moves.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

impl Clock {
    /// A scaled real clock. A non-positive or non-finite scale is treated as 1.
    pub fn new(cfg: ClockConfig) -> Clock {
        Clock::new_at(cfg, unix_ms(SystemTime::now()))
    }

    /// A scaled real clock whose host wall time at construction is
    /// `real_now_unix_ms` (what [`Clock::new`] reads from the host).
    pub fn new_at(cfg: ClockConfig, real_now_unix_ms: i64) -> Clock {
        let scale = if cfg.time_scale.is_finite() && cfg.time_scale > 0.0 {
            cfg.time_scale
        } else {
            1.0
        };
        let real_since_epoch_ms = (real_now_unix_ms - cfg.epoch_unix_ms).max(0);
        let start_cluster = Duration::from_millis(real_since_epoch_ms as u64).mul_f64(scale);
        Clock {
            inner: Arc::new(Inner {
                scale,
                epoch_unix_ms: cfg.epoch_unix_ms,
                offset_ms: AtomicI64::new(cfg.offset_ms),
                source: Source::Real {
                    start_mono: tokio::time::Instant::now(),
                    start_cluster,
                },
            }),
        }
    }

    /// Scale 1, epoch = now.
    pub fn real() -> Clock {
        Clock::new(ClockConfig::real_now())
    }

    /// A clock that stands still until [`ManualClock::advance`] moves it.
    /// Cluster time starts at zero; the epoch (wall time at zero) is
    /// `start_wall_unix_ms`.
    pub fn manual(start_wall_unix_ms: i64) -> (Clock, ManualClock) {
        let (tx, _rx) = watch::channel(Duration::ZERO);
        let clock = Clock {
            inner: Arc::new(Inner {
                scale: 1.0,
                epoch_unix_ms: start_wall_unix_ms,
                offset_ms: AtomicI64::new(0),
                source: Source::Manual(tx),
            }),
        };
        (clock.clone(), ManualClock { clock })
    }

    /// Monotonic cluster time.
    pub fn now(&self) -> ClusterInstant {
        match &self.inner.source {
            Source::Real {
                start_mono,
                start_cluster,
            } => {
                let real = tokio::time::Instant::now().saturating_duration_since(*start_mono);
                ClusterInstant(*start_cluster + real.mul_f64(self.inner.scale))
            }
            Source::Manual(tx) => ClusterInstant(*tx.borrow()),
        }
    }

    /// Cluster wall time in unix milliseconds, offset included.
    pub fn wall_unix_ms(&self) -> i64 {
        self.inner.epoch_unix_ms + self.now().0.as_millis() as i64 + self.offset_ms()
    }

    /// Cluster wall time, offset included.
    pub fn wall(&self) -> SystemTime {
        let ms = self.wall_unix_ms();
        if ms >= 0 {
            UNIX_EPOCH + Duration::from_millis(ms as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
        }
    }

    /// Cluster wall time as a chrono timestamp (for Kubernetes objects).
    pub fn wall_chrono(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::<chrono::Utc>::from(self.wall())
    }

    /// The configured scale.
    pub fn time_scale(&self) -> f64 {
        self.inner.scale
    }

    /// The cluster epoch, unix milliseconds.
    pub fn epoch_unix_ms(&self) -> i64 {
        self.inner.epoch_unix_ms
    }

    /// The real duration that `d` of cluster time takes.
    pub fn to_real(&self, d: Duration) -> Duration {
        d.div_f64(self.inner.scale)
    }

    /// The cluster duration that `d` of real time is.
    pub fn to_cluster(&self, d: Duration) -> Duration {
        d.mul_f64(self.inner.scale)
    }

    /// Current wall-clock offset, milliseconds.
    pub fn offset_ms(&self) -> i64 {
        self.inner.offset_ms.load(Ordering::Relaxed)
    }

    /// Move cluster wall time (not monotonic time) by `ms` from true.
    pub fn set_offset_ms(&self, ms: i64) {
        self.inner.offset_ms.store(ms, Ordering::Relaxed);
    }

    /// Sleep for `d` of cluster time.
    pub fn sleep(&self, d: Duration) -> impl Future<Output = ()> + Send + 'static {
        let deadline = self.now() + d;
        self.sleep_until(deadline)
    }

    /// Sleep until monotonic cluster time reaches `t`.
    pub fn sleep_until(&self, t: ClusterInstant) -> impl Future<Output = ()> + Send + 'static {
        let this = self.clone();
        async move {
            match &this.inner.source {
                Source::Real {
                    start_mono,
                    start_cluster,
                } => {
                    let cluster_from_start = t.0.saturating_sub(*start_cluster);
                    let real_deadline = *start_mono + cluster_from_start.div_f64(this.inner.scale);
                    tokio::time::sleep_until(real_deadline).await;
                }
                Source::Manual(tx) => {
                    let mut rx = tx.subscribe();
                    loop {
                        if *rx.borrow_and_update() >= t.0 {
                            return;
                        }
                        if rx.changed().await.is_err() {
                            // The clock is gone; nothing will ever wake us.
                            std::future::pending::<()>().await;
                        }
                    }
                }
            }
        }
    }

    /// Run `f` for at most `d` of cluster time.
    /// [`Clock::timeout`] for deadlines that guard real work (disk, CPU,
    /// the network) rather than a protocol's timing: on a sped-up clock
    /// it also waits until `d` of real time has passed, because hardware
    /// does not get faster with `--time-scale`. A manual clock is left to
    /// the test driving it.
    pub async fn timeout_real_floor<F: Future>(
        &self,
        d: Duration,
        f: F,
    ) -> Result<F::Output, Elapsed> {
        if !matches!(self.inner.source, Source::Real { .. }) || self.inner.scale <= 1.0 {
            return self.timeout(d, f).await;
        }
        let both = async {
            tokio::join!(self.sleep(d), tokio::time::sleep(d));
        };
        tokio::select! {
            biased;
            out = f => Ok(out),
            () = both => Err(Elapsed(d)),
        }
    }

    pub async fn timeout<F: Future>(&self, d: Duration, f: F) -> Result<F::Output, Elapsed> {
        let sleep = self.sleep(d);
        tokio::select! {
            biased;
            out = f => Ok(out),
            () = sleep => Err(Elapsed(d)),
        }
    }

    /// A ticker every `period` of cluster time. The first tick is immediate;
    /// missed ticks are skipped (not bursted).
    pub fn interval(&self, period: Duration) -> Interval {
        Interval {
            clock: self.clone(),
            next: self.now(),
            period: period.max(Duration::from_nanos(1)),
        }
    }
}

/// See [`Clock::interval`].
pub struct Interval {
    clock: Clock,
    next: ClusterInstant,
    period: Duration,
}

impl Interval {
    /// Wait for the next tick; returns the tick's scheduled instant.
    pub async fn tick(&mut self) -> ClusterInstant {
        let at = self.next;
        self.clock.sleep_until(at).await;
        let now = self.clock.now();
        self.next = at + self.period;
        if self.next <= now {
            // We fell behind by at least a period: restart the grid from now.
            self.next = now + self.period;
        }
        at
    }
    /// Push the next tick one full period from now.
    pub fn reset(&mut self) {
        self.next = self.clock.now() + self.period;
    }
    /// The period.
    pub fn period(&self) -> Duration {
        self.period
    }
}

/// Parse a signed duration such as `400d`, `-5m`, `1h30m`, `250ms`, `0`
/// into milliseconds.
pub fn parse_signed_duration_ms(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    let d = humantime::parse_duration(rest)
        .map_err(|e| format!("invalid duration {s:?}: {e} (expected e.g. 400d, -5m, 1h30m)"))?;
    let ms = i64::try_from(d.as_millis()).map_err(|_| format!("duration {s:?} is too large"))?;
    Ok(if neg { -ms } else { ms })
}

/// Parse an unsigned cluster duration (`10s`, `3m`, `100ms`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (expected e.g. 10s, 3m, 100ms)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn scaled_sleep_takes_a_fraction_of_real_time() {
        let clock = Clock::new(ClockConfig {
            time_scale: 60.0,
            epoch_unix_ms: unix_ms(SystemTime::now()),
            offset_ms: 0,
        });
        let real_start = tokio::time::Instant::now();
        let c0 = clock.now();
        clock.sleep(Duration::from_secs(180)).await;
        let real = tokio::time::Instant::now() - real_start;
        // 3 minutes of cluster time at 60x is 3 real seconds (paused time is exact).
        assert_eq!(real, Duration::from_secs(3));
        assert!(clock.now() - c0 >= Duration::from_secs(180));
        assert!(clock.now() - c0 < Duration::from_secs(181));
    }

    #[tokio::test(start_paused = true)]
    async fn now_advances_scale_times_faster() {
        let clock = Clock::new(ClockConfig {
            time_scale: 10.0,
            epoch_unix_ms: unix_ms(SystemTime::now()),
            offset_ms: 0,
        });
        let a = clock.now();
        let w = clock.wall_unix_ms();
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(clock.now() - a, Duration::from_secs(20));
        assert_eq!(clock.wall_unix_ms() - w, 20_000);
    }

    #[tokio::test(start_paused = true)]
    async fn offset_moves_wall_not_monotonic() {
        let clock = Clock::real();
        let mono = clock.now();
        let wall = clock.wall_unix_ms();
        clock.set_offset_ms(400 * 86_400_000);
        assert_eq!(clock.now(), mono);
        assert_eq!(clock.wall_unix_ms() - wall, 400 * 86_400_000);
        let clone = clock.clone();
        clone.set_offset_ms(-5_000);
        assert_eq!(clock.offset_ms(), -5_000);
    }

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_on_advance() {
        let (clock, ctl) = Clock::manual(1_000_000);
        assert_eq!(clock.wall_unix_ms(), 1_000_000);
        let c = clock.clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let jh = {
            #[allow(clippy::disallowed_methods)]
            tokio::spawn(async move {
                c.sleep(Duration::from_secs(10)).await;
                tx.send(()).await.ok();
            })
        };
        tokio::task::yield_now().await;
        ctl.advance(Duration::from_secs(9));
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "woke before its deadline");
        ctl.advance(Duration::from_secs(1));
        rx.recv().await.expect("sleeper woke");
        jh.await.unwrap();
        assert_eq!(clock.wall_unix_ms(), 1_010_000);
    }

    #[tokio::test]
    async fn manual_timeout_elapses_only_when_advanced() {
        let (clock, ctl) = Clock::manual(0);
        let c = clock.clone();
        let fut = async move {
            c.timeout(Duration::from_secs(5), std::future::pending::<()>())
                .await
        };
        #[allow(clippy::disallowed_methods)]
        let jh = tokio::spawn(fut);
        tokio::task::yield_now().await;
        assert!(!jh.is_finished());
        ctl.advance(Duration::from_secs(5));
        assert_eq!(jh.await.unwrap(), Err(Elapsed(Duration::from_secs(5))));
    }

    #[tokio::test(start_paused = true)]
    async fn interval_ticks_on_the_cluster_grid() {
        let clock = Clock::new(ClockConfig {
            time_scale: 100.0,
            epoch_unix_ms: unix_ms(SystemTime::now()),
            offset_ms: 0,
        });
        let mut iv = clock.interval(Duration::from_secs(10));
        let t0 = iv.tick().await;
        let t1 = iv.tick().await;
        let t2 = iv.tick().await;
        assert_eq!(t1 - t0, Duration::from_secs(10));
        assert_eq!(t2 - t1, Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn processes_sharing_epoch_and_scale_agree() {
        // Two processes start 5 real seconds apart with the same epoch and
        // scale: they compute the same cluster time from then on.
        let epoch = 1_700_000_000_000;
        let cfg = ClockConfig {
            time_scale: 60.0,
            epoch_unix_ms: epoch,
            offset_ms: 0,
        };
        let host_now = epoch + 3_600_000; // an hour after the epoch
        let a = Clock::new_at(cfg, host_now);
        tokio::time::advance(Duration::from_secs(5)).await;
        let b = Clock::new_at(cfg, host_now + 5_000);
        assert_eq!(a.now(), b.now());
        assert_eq!(a.wall_unix_ms(), b.wall_unix_ms());
        // an hour and 5 s of real time at 60x
        assert_eq!(a.now().since_epoch(), Duration::from_secs(60 * 3605));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(a.now(), b.now());
    }

    #[test]
    fn parses_signed_durations() {
        assert_eq!(parse_signed_duration_ms("400d"), Ok(400 * 86_400_000));
        assert_eq!(parse_signed_duration_ms("-5m"), Ok(-300_000));
        assert_eq!(parse_signed_duration_ms("+1h30m"), Ok(5_400_000));
        assert_eq!(parse_signed_duration_ms("0"), Ok(0));
        assert!(
            parse_signed_duration_ms("soon")
                .unwrap_err()
                .contains("invalid duration")
        );
    }
}
