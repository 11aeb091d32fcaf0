//! `ackemu supervise`: what the kubelet is to a master's static pods (or
//! systemd's `Restart=always` to its units). The master's control-plane
//! components exit when they must — a controller manager that loses its
//! leader lease exits with `leaderelection lost`, as upstream's does — and
//! are started again with a crash-loop back-off.
//!
//! The supervisor leads the process group `ackemu up` gives it and its
//! child stays in it, so signals meant for the component (`ackemu chaos
//! process stop|cont|kill`, `ackemu down`) go to the group: stopping the
//! component stops both, killing it kills both and nothing restarts it.
//! A SIGTERM or SIGINT to the supervisor is passed on to the child, waited
//! for, and ends the supervision.

use std::process::ExitStatus;
use std::time::Duration;

use ackemu_base::clock::Clock;
use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};

/// The first restart delay; it doubles while the component keeps failing
/// fast, up to [`MAX_BACKOFF`] (the kubelet's is 10 s to 5 min; a local
/// cluster wants its control plane back sooner).
const MIN_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(16);
/// A run this long resets the back-off.
const STABLE_RUN: Duration = Duration::from_secs(30);

#[derive(clap::Args, Debug)]
pub struct SuperviseArgs {
    /// The component's name, for the log lines.
    #[arg(long)]
    pub name: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// The delay before the next restart, after `previous` (zero: none yet)
/// and a run that lasted `ran`.
pub fn backoff(previous: Duration, ran: Duration) -> Duration {
    if ran >= STABLE_RUN || previous.is_zero() {
        MIN_BACKOFF
    } else {
        (previous * 2).min(MAX_BACKOFF)
    }
}

fn describe(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}

pub async fn run(a: SuperviseArgs) -> anyhow::Result<()> {
    let (bin, args) = a.command.split_first().context("no command to supervise")?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let clock = Clock::real();
    let mut delay = Duration::ZERO;
    let mut restarts = 0u32;
    loop {
        let started = clock.now();
        let mut child = tokio::process::Command::new(bin)
            .args(args)
            .kill_on_drop(false)
            .spawn()
            .with_context(|| format!("starting {bin}"))?;
        let pid = child.id().unwrap_or(0);
        let status = tokio::select! {
            s = child.wait() => s?,
            _ = term.recv() => return stop_child(&mut child, pid, "TERM").await,
            _ = int.recv() => return stop_child(&mut child, pid, "INT").await,
        };
        let ran = clock.now().saturating_duration_since(started);
        delay = backoff(delay, ran);
        restarts += 1;
        eprintln!(
            "ackemu supervise: {} (pid {pid}) ended with {} after {:.1}s; restart {restarts} in {}s",
            a.name,
            describe(&status),
            ran.as_secs_f64(),
            delay.as_secs()
        );
        tokio::select! {
            () = clock.sleep(delay) => {}
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

async fn stop_child(child: &mut tokio::process::Child, pid: u32, sig: &str) -> anyhow::Result<()> {
    super::process::signal(pid, sig);
    child.wait().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_while_failing_fast_and_resets_after_a_stable_run() {
        let fast = Duration::from_millis(200);
        let mut d = Duration::ZERO;
        let mut seen = vec![];
        for _ in 0..7 {
            d = backoff(d, fast);
            seen.push(d.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 16, 16]);
        assert_eq!(backoff(d, STABLE_RUN), MIN_BACKOFF);
    }
}
