//! Failpoints: named places in the code where a fault can be switched on at
//! run time (`failpoint!("systemd/bus/seal")`).
//!
//! A point costs one atomic load when it is off. Actions:
//!
//! | spec | effect |
//! |---|---|
//! | `off` | nothing |
//! | `return` / `return(msg)` | the point evaluates to `Err(FailpointError)` |
//! | `delay(100ms)` | waits that long in cluster time, then continues |
//! | `hang` | waits until the point is cleared or changed |
//! | `panic` / `panic(msg)` | panics |
//!
//! Prefixes: `25%<action>` fires with probability 0.25 (seeded, see
//! [`set_seed`]); `3*<action>` fires on the next three evaluations only, then
//! the point turns itself off; both combine as `25%3*return(eio)`.
//!
//! Points are configured at start-up from `ACKEMU_FAILPOINTS` or
//! `--failpoints` (`name=spec;name=spec`) and at run time through the
//! `FaultService` on the admin port ([`crate::admin`]).
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::watch;

pub use inventory;

/// Where a `failpoint!` appears in the source; collected at link time so
/// `list` shows every point the binary has, hit or not.
#[derive(Debug)]
pub struct Site {
    /// The point's name.
    pub name: &'static str,
    /// Source file.
    pub file: &'static str,
    /// Source line.
    pub line: u32,
}
inventory::collect!(Site);

/// The error an injected `return` action produces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failpoint {name}: {message}")]
pub struct FailpointError {
    /// The failpoint's name.
    pub name: String,
    /// The message from `return(msg)`, or "injected error".
    pub message: String,
}

/// A parsed action.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Do nothing.
    Off,
    /// Evaluate to an error.
    Return(String),
    /// Wait this long (cluster time).
    Delay(Duration),
    /// Wait until cleared or changed.
    Hang,
    /// Panic with the message.
    Panic(String),
}

/// An action with its guards.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    /// Probability in `(0, 1]` that an evaluation fires.
    pub probability: Option<f64>,
    /// Fire this many more times, then turn off.
    pub remaining: Option<u64>,
    /// What to do.
    pub action: Action,
    /// The text it was parsed from.
    pub text: String,
}

/// A spec that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid failpoint spec {spec:?}: {reason}")]
pub struct SpecError {
    /// The offending text.
    pub spec: String,
    /// What was expected.
    pub reason: String,
}

fn arg<'a>(s: &'a str, name: &str) -> Option<Option<&'a str>> {
    if s == name {
        return Some(None);
    }
    let rest = s.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')?;
    Some(Some(rest))
}

impl Spec {
    /// Parse `[p%][n*]action`.
    pub fn parse(text: &str) -> Result<Spec, SpecError> {
        let err = |reason: &str| SpecError {
            spec: text.to_string(),
            reason: reason.to_string(),
        };
        let mut s = text.trim();
        let mut probability = None;
        if let Some((p, rest)) = s.split_once('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| err("expected a percentage before '%', e.g. 25%return"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(err("percentage must be in (0, 100]"));
            }
            probability = Some(p / 100.0);
            s = rest;
        }
        let mut remaining = None;
        if let Some((n, rest)) = s.split_once('*')
            && let Ok(n) = n.trim().parse::<u64>()
        {
            if n == 0 {
                return Err(err("count before '*' must be at least 1"));
            }
            remaining = Some(n);
            s = rest;
        }
        let s = s.trim();
        let action = if s == "off" {
            Action::Off
        } else if let Some(a) = arg(s, "return") {
            Action::Return(a.unwrap_or("injected error").to_string())
        } else if let Some(a) = arg(s, "delay").or_else(|| arg(s, "sleep")) {
            let a = a.ok_or_else(|| err("delay needs a duration, e.g. delay(100ms)"))?;
            let d = match a.parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => humantime::parse_duration(a)
                    .map_err(|e| err(&format!("bad delay duration: {e}")))?,
            };
            Action::Delay(d)
        } else if s == "hang" || s == "pause" {
            Action::Hang
        } else if let Some(a) = arg(s, "panic") {
            Action::Panic(a.unwrap_or("injected panic").to_string())
        } else {
            return Err(err(
                "expected off, return[(msg)], delay(d), hang or panic[(msg)], optionally prefixed by p% and n*",
            ));
        };
        Ok(Spec {
            probability,
            remaining,
            action,
            text: text.trim().to_string(),
        })
    }
}

struct Config {
    spec: Spec,
    rng: ChaCha8Rng,
}

/// One named failpoint.
pub struct Failpoint {
    name: String,
    active: AtomicBool,
    config: Mutex<Option<Config>>,
    changed: Condvar,
    generation: watch::Sender<u64>,
    hits: AtomicU64,
    fired: AtomicU64,
    parked: AtomicU32,
}

/// A snapshot of a failpoint for listings.
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Name.
    pub name: String,
    /// Current spec text (`off` when inactive).
    pub action: String,
    /// Evaluations while active.
    pub hits: u64,
    /// Evaluations that fired an action.
    pub fired: u64,
    /// Callers currently parked in a hang or delay.
    pub parked: u32,
}

struct Registry {
    points: RwLock<BTreeMap<String, Arc<Failpoint>>>,
    seed: AtomicU64,
}

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry {
    points: RwLock::new(BTreeMap::new()),
    seed: AtomicU64::new(0x5eed),
});

/// Look up or create the point called `name`.
pub fn register(name: &str) -> Arc<Failpoint> {
    if let Some(fp) = REGISTRY.points.read().get(name) {
        return fp.clone();
    }
    REGISTRY
        .points
        .write()
        .entry(name.to_string())
        .or_insert_with(|| {
            Arc::new(Failpoint {
                name: name.to_string(),
                active: AtomicBool::new(false),
                config: Mutex::new(None),
                changed: Condvar::new(),
                generation: watch::channel(0).0,
                hits: AtomicU64::new(0),
                fired: AtomicU64::new(0),
                parked: AtomicU32::new(0),
            })
        })
        .clone()
}

/// Seed for probabilistic actions configured from now on (each point mixes
/// in its name, so points draw independent, reproducible sequences).
pub fn set_seed(seed: u64) {
    REGISTRY.seed.store(seed, Ordering::Relaxed);
}

fn name_hash(name: &str) -> u64 {
    // FNV-1a: stable across runs and platforms.
    name.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    })
}

/// Configure `name` with `spec` (`off` clears it). Parked callers re-check.
pub fn set(name: &str, spec: &str) -> Result<Status, SpecError> {
    if name.trim().is_empty() {
        return Err(SpecError {
            spec: spec.to_string(),
            reason: "failpoint name is empty".into(),
        });
    }
    let parsed = Spec::parse(spec)?;
    let fp = register(name.trim());
    fp.configure(if parsed.action == Action::Off {
        None
    } else {
        Some(parsed)
    });
    Ok(fp.status())
}

/// Turn `name` off, releasing anything parked on it. Returns whether it was on.
pub fn clear(name: &str) -> bool {
    let fp = REGISTRY.points.read().get(name).cloned();
    match fp {
        Some(fp) => {
            let was = fp.active.load(Ordering::Acquire);
            fp.configure(None);
            was
        }
        None => false,
    }
}

/// Turn every point off.
pub fn clear_all() {
    let all: Vec<_> = REGISTRY.points.read().values().cloned().collect();
    for fp in all {
        fp.configure(None);
    }
}

/// Every known point: configured ones and every site compiled into the binary.
pub fn list() -> Vec<Status> {
    for site in inventory::iter::<Site> {
        register(site.name);
    }
    REGISTRY
        .points
        .read()
        .values()
        .map(|fp| fp.status())
        .collect()
}

/// Apply `a=spec;b=spec` (the `ACKEMU_FAILPOINTS` / `--failpoints` syntax).
pub fn configure_from_str(list: &str) -> Result<(), SpecError> {
    let mut parsed = Vec::new();
    for item in list.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, spec) = item.split_once('=').ok_or_else(|| SpecError {
            spec: item.to_string(),
            reason: "expected name=spec".into(),
        })?;
        Spec::parse(spec)?;
        parsed.push((name.trim().to_string(), spec.trim().to_string()));
    }
    for (name, spec) in parsed {
        set(&name, &spec)?;
    }
    Ok(())
}

/// Counts a caller parked at a point; uncounted on drop, so a caller whose
/// future is cancelled mid-wait (a timeout around it) is not left counted.
struct Parked<'a>(&'a AtomicU32);

impl<'a> Parked<'a> {
    fn new(c: &'a AtomicU32) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        Parked(c)
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

enum Decision {
    Pass,
    Fire(Action),
}

impl Failpoint {
    /// The point's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether an action is configured (the fast-path check).
    #[inline]
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn configure(&self, spec: Option<Spec>) {
        let mut cfg = self.config.lock();
        *cfg = spec.map(|spec| Config {
            rng: ChaCha8Rng::seed_from_u64(
                REGISTRY.seed.load(Ordering::Relaxed) ^ name_hash(&self.name),
            ),
            spec,
        });
        self.active.store(cfg.is_some(), Ordering::Release);
        self.hits.store(0, Ordering::Relaxed);
        self.fired.store(0, Ordering::Relaxed);
        self.generation.send_modify(|g| *g += 1);
        self.changed.notify_all();
    }

    /// A snapshot for listings.
    pub fn status(&self) -> Status {
        let cfg = self.config.lock();
        Status {
            name: self.name.clone(),
            action: cfg
                .as_ref()
                .map_or_else(|| "off".to_string(), |c| c.spec.text.clone()),
            hits: self.hits.load(Ordering::Relaxed),
            fired: self.fired.load(Ordering::Relaxed),
            parked: self.parked.load(Ordering::Relaxed),
        }
    }

    fn decide(&self) -> Decision {
        let mut guard = self.config.lock();
        let Some(cfg) = guard.as_mut() else {
            return Decision::Pass;
        };
        self.hits.fetch_add(1, Ordering::Relaxed);
        if cfg.spec.remaining == Some(0) {
            // An exhausted `n*hang` stays configured only to hold its parked callers.
            return Decision::Pass;
        }
        if let Some(p) = cfg.spec.probability
            && cfg.rng.random::<f64>() >= p
        {
            return Decision::Pass;
        }
        let action = cfg.spec.action.clone();
        if let Some(n) = cfg.spec.remaining.as_mut() {
            *n -= 1;
            if *n == 0 && action != Action::Hang {
                // Last shot: the point turns itself off.
                *guard = None;
                self.active.store(false, Ordering::Release);
            }
        }
        self.fired.fetch_add(1, Ordering::Relaxed);
        Decision::Fire(action)
    }

    fn still_hanging(&self) -> bool {
        self.config
            .lock()
            .as_ref()
            .is_some_and(|c| c.spec.action == Action::Hang)
    }

    fn error(&self, message: String) -> FailpointError {
        FailpointError {
            name: self.name.clone(),
            message,
        }
    }

    /// Evaluate the point from async code.
    pub async fn eval(&self) -> Result<(), FailpointError> {
        match self.decide() {
            Decision::Pass | Decision::Fire(Action::Off) => Ok(()),
            Decision::Fire(Action::Return(m)) => Err(self.error(m)),
            Decision::Fire(Action::Panic(m)) => panic!("failpoint {}: {m}", self.name),
            Decision::Fire(Action::Delay(d)) => {
                let _parked = Parked::new(&self.parked);
                let clock = crate::clock_global::process_clock();
                crate::tasks::wait_on(
                    format!("failpoint {} (delay {d:?})", self.name),
                    clock.sleep(d),
                )
                .await;
                Ok(())
            }
            Decision::Fire(Action::Hang) => {
                let _parked = Parked::new(&self.parked);
                let mut rx = self.generation.subscribe();
                let what = format!("failpoint {} (hang)", self.name);
                crate::tasks::wait_on(what, async {
                    rx.borrow_and_update();
                    while self.still_hanging() {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    }
                })
                .await;
                Ok(())
            }
        }
    }

    /// Evaluate the point from a blocking thread.
    pub fn eval_blocking(&self) -> Result<(), FailpointError> {
        match self.decide() {
            Decision::Pass | Decision::Fire(Action::Off) => Ok(()),
            Decision::Fire(Action::Return(m)) => Err(self.error(m)),
            Decision::Fire(Action::Panic(m)) => panic!("failpoint {}: {m}", self.name),
            Decision::Fire(Action::Delay(d)) => {
                let _parked = Parked::new(&self.parked);
                let _w = crate::tasks::waiter(format!("failpoint {} (delay {d:?})", self.name));
                let clock = crate::clock_global::process_clock();
                std::thread::sleep(clock.to_real(d));
                Ok(())
            }
            Decision::Fire(Action::Hang) => {
                let _parked = Parked::new(&self.parked);
                let _w = crate::tasks::waiter(format!("failpoint {} (hang)", self.name));
                let mut cfg = self.config.lock();
                while cfg.as_ref().is_some_and(|c| c.spec.action == Action::Hang) {
                    self.changed.wait(&mut cfg);
                }
                drop(cfg);
                Ok(())
            }
        }
    }
}

/// Evaluate a named failpoint in async code. Evaluates to
/// `Result<(), FailpointError>`.
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {{
        static FP: ::std::sync::OnceLock<::std::sync::Arc<$crate::failpoint::Failpoint>> =
            ::std::sync::OnceLock::new();
        $crate::failpoint::inventory::submit! {
            $crate::failpoint::Site { name: $name, file: file!(), line: line!() }
        }
        let fp = FP.get_or_init(|| $crate::failpoint::register($name));
        if fp.is_active() {
            fp.eval().await
        } else {
            ::std::result::Result::<(), $crate::failpoint::FailpointError>::Ok(())
        }
    }};
}

/// Evaluate a named failpoint in blocking code. Evaluates to
/// `Result<(), FailpointError>`.
#[macro_export]
macro_rules! failpoint_sync {
    ($name:literal) => {{
        static FP: ::std::sync::OnceLock<::std::sync::Arc<$crate::failpoint::Failpoint>> =
            ::std::sync::OnceLock::new();
        $crate::failpoint::inventory::submit! {
            $crate::failpoint::Site { name: $name, file: file!(), line: line!() }
        }
        let fp = FP.get_or_init(|| $crate::failpoint::register($name));
        if fp.is_active() {
            fp.eval_blocking()
        } else {
            ::std::result::Result::<(), $crate::failpoint::FailpointError>::Ok(())
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let s = Spec::parse("25%3*return(eio)").unwrap();
        assert_eq!(s.probability, Some(0.25));
        assert_eq!(s.remaining, Some(3));
        assert_eq!(s.action, Action::Return("eio".into()));
        assert_eq!(
            Spec::parse("delay(100ms)").unwrap().action,
            Action::Delay(Duration::from_millis(100))
        );
        assert_eq!(
            Spec::parse("delay(250)").unwrap().action,
            Action::Delay(Duration::from_millis(250))
        );
        assert_eq!(Spec::parse("hang").unwrap().action, Action::Hang);
        assert_eq!(
            Spec::parse("panic").unwrap().action,
            Action::Panic("injected panic".into())
        );
        assert_eq!(Spec::parse("off").unwrap().action, Action::Off);
        for bad in [
            "explode",
            "150%return",
            "0*return",
            "delay",
            "delay(soon)",
            "x%return",
        ] {
            let e = Spec::parse(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("invalid failpoint spec"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn configure_from_str_is_all_or_nothing() {
        let e = configure_from_str("unit/cfg/a=return;unit/cfg/b=bogus").unwrap_err();
        assert_eq!(e.spec, "bogus");
        assert!(
            list()
                .iter()
                .all(|s| s.name != "unit/cfg/a" || s.action == "off")
        );
        configure_from_str("unit/cfg/a=return(x); unit/cfg/b=2*delay(1ms)").unwrap();
        let l = list();
        assert!(
            l.iter()
                .any(|s| s.name == "unit/cfg/a" && s.action == "return(x)")
        );
        assert!(
            l.iter()
                .any(|s| s.name == "unit/cfg/b" && s.action == "2*delay(1ms)")
        );
        clear("unit/cfg/a");
        clear("unit/cfg/b");
    }
}
