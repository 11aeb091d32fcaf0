//! klog-style logging on `tracing-subscriber`.
//!
//! Lines look like Kubernetes components' (`I1123 04:11:00.123456    1234
//! file.rs:42] message`), timestamps are *cluster* wall time (so a clock
//! offset fault shows in logs, as it would on a skewed host), and verbosity
//! follows klog's `--v=N`: `v!(4, ...)` logs only when `--v` is at least 4.
//! `--log-json` switches to one JSON object per line.

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::clock_global::process_clock;

static VERBOSITY: AtomicU8 = AtomicU8::new(0);

/// The configured `--v`.
pub fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// Whether `v!(level, …)` lines are emitted.
#[inline]
pub fn v_enabled(level: u8) -> bool {
    VERBOSITY.load(Ordering::Relaxed) >= level
}

/// Set `--v` (also done by [`init`]).
pub fn set_verbosity(v: u8) {
    VERBOSITY.store(v, Ordering::Relaxed);
}

/// klog's `V(n).Info(...)`: an info line emitted only at `--v >= n`.
#[macro_export]
macro_rules! v {
    ($level:expr, $($arg:tt)+) => {
        if $crate::logging::v_enabled($level) {
            ::tracing::info!($($arg)+);
        }
    };
}

/// The klog line format.
#[derive(Debug, Clone, Default)]
pub struct Klog;

impl<S, N> FormatEvent<S, N> for Klog
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let letter = match *meta.level() {
            Level::ERROR => 'E',
            Level::WARN => 'W',
            _ => 'I',
        };
        let t = process_clock().wall_chrono();
        let file = meta
            .file()
            .map(|f| f.rsplit('/').next().unwrap_or(f))
            .unwrap_or("?");
        write!(
            writer,
            "{letter}{} {:>7} {}:{}] ",
            t.format("%m%d %H:%M:%S%.6f"),
            std::process::id(),
            file,
            meta.line().unwrap_or(0)
        )?;
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Logging options.
#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    /// klog verbosity.
    pub v: u8,
    /// JSON lines instead of klog text.
    pub json: bool,
}

fn filter(v: u8) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_env("RUST_LOG") {
        return f;
    }
    let ours = match v {
        0..=3 => "info",
        4..=5 => "debug",
        _ => "trace",
    };
    // Third-party transport crates stay quiet unless RUST_LOG asks.
    EnvFilter::new(format!(
        "{ours},h2=warn,hyper=warn,hyper_util=warn,tonic=warn,tower=warn,rustls=warn,raft=warn"
    ))
}

/// Install the global subscriber writing to stderr. Safe to call twice (the
/// second call only updates verbosity).
pub fn init(cfg: &LogConfig) {
    init_with_writer(cfg, io::stderr);
}

/// Install the global subscriber with a custom writer.
pub fn init_with_writer<W>(cfg: &LogConfig, writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    set_verbosity(cfg.v);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(cfg.v))
        .with_writer(writer);
    let _ = if cfg.json {
        builder.json().try_init()
    } else {
        builder.event_format(Klog).try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_klog_shaped_and_v_gated() {
        let buf = Buf::default();
        let b2 = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_env_filter(EnvFilter::new("info"))
            .with_writer(move || b2.clone())
            .event_format(Klog)
            .finish();
        set_verbosity(2);
        tracing::subscriber::with_default(sub, || {
            tracing::info!("hello {}", 42);
            tracing::warn!("careful");
            crate::v!(2, "shown at v2");
            crate::v!(10, "hidden at v2");
        });
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        // I1123 04:11:00.123456    1234 logging.rs:42] hello 42
        let l = lines[0];
        assert!(l.starts_with('I'), "{l}");
        let b = l.as_bytes();
        assert!(b[1..5].iter().all(u8::is_ascii_digit), "{l}");
        assert_eq!(b[5], b' ');
        assert_eq!(&l[8..9], ":");
        assert_eq!(&l[14..15], ".");
        assert!(l.contains(" logging.rs:"), "{l}");
        assert!(l.ends_with("] hello 42"), "{l}");
        assert!(lines[1].starts_with('W') && lines[1].ends_with("] careful"));
        assert!(lines[2].ends_with("] shown at v2"));
        set_verbosity(0);
    }
}
