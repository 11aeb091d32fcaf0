//! Unit files and the supervisor's decisions, without IO.
//!
//! The subset of systemd.service(5) the node needs: `Description`,
//! `ExecStart`, `Environment`, `WorkingDirectory`, `Restart`, `RestartSec`,
//! `TimeoutStopSec`, `StartLimitIntervalSec`, `StartLimitBurst`, and
//! `[Install] WantedBy` (a unit with it is enabled: started at boot).

use std::collections::VecDeque;
use std::time::Duration;

use ackemu_base::clock::ClusterInstant;

/// `Restart=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// `no`
    No,
    /// `always`
    Always,
    /// `on-success`
    OnSuccess,
    /// `on-failure`
    OnFailure,
    /// `on-abnormal`
    OnAbnormal,
}

/// How a main process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl Exit {
    /// systemd's `Result=` for this exit.
    pub fn result(self) -> &'static str {
        match self {
            Exit::Code(0) => "success",
            Exit::Code(_) => "exit-code",
            Exit::Signal(_) => "signal",
        }
    }
}

/// A parsed `.service` file.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceUnit {
    /// Unit name (`kubelet.service`).
    pub name: String,
    /// `Description=`.
    pub description: String,
    /// `ExecStart=`, split into argv.
    pub exec_start: Vec<String>,
    /// `Environment=` pairs.
    pub environment: Vec<(String, String)>,
    /// `WorkingDirectory=`.
    pub working_directory: Option<String>,
    /// `Restart=`.
    pub restart: RestartPolicy,
    /// `RestartSec=` (cluster time).
    pub restart_sec: Duration,
    /// `TimeoutStopSec=` (cluster time).
    pub timeout_stop: Duration,
    /// `StartLimitIntervalSec=`.
    pub start_limit_interval: Duration,
    /// `StartLimitBurst=`.
    pub start_limit_burst: u32,
    /// Enabled (has `WantedBy=`).
    pub enabled: bool,
}

/// A unit file that did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unit {unit}: line {line}: {reason}")]
pub struct UnitFileError {
    /// The unit's name.
    pub unit: String,
    /// 1-based line number (0 for whole-file problems).
    pub line: usize,
    /// What was expected.
    pub reason: String,
}

/// Parse a systemd-style duration: `100ms`, `5s`, `2min`, `1h`, bare seconds.
pub fn parse_time_span(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "infinity" {
        return Some(Duration::MAX);
    }
    if let Ok(secs) = s.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "us" | "usec" => n / 1e6,
        "ms" | "msec" => n / 1e3,
        "s" | "sec" | "second" | "seconds" => n,
        "m" | "min" | "minute" | "minutes" => n * 60.0,
        "h" | "hr" | "hour" | "hours" => n * 3600.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(secs))
}

/// Split a command line like systemd does for `ExecStart=` (whitespace,
/// double or single quotes, backslash escapes).
pub fn split_command(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\\') => {
                let n = chars.next().ok_or("trailing backslash")?;
                cur.push(n);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// Parse the text of `name` (a `.service` file).
pub fn parse_service(name: &str, text: &str) -> Result<ServiceUnit, UnitFileError> {
    let err = |line: usize, reason: String| UnitFileError {
        unit: name.to_string(),
        line,
        reason,
    };
    let mut unit = ServiceUnit {
        name: name.to_string(),
        description: String::new(),
        exec_start: Vec::new(),
        environment: Vec::new(),
        working_directory: None,
        restart: RestartPolicy::No,
        restart_sec: Duration::from_millis(100),
        timeout_stop: Duration::from_secs(90),
        start_limit_interval: Duration::from_secs(10),
        start_limit_burst: 5,
        enabled: false,
    };
    let mut section = String::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = s.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| err(n, format!("expected key=value, got {line:?}")))?;
        let (key, value) = (key.trim(), value.trim());
        let span = |v: &str| {
            parse_time_span(v).ok_or_else(|| err(n, format!("invalid time span {v:?} for {key}")))
        };
        match (section.as_str(), key) {
            ("Unit", "Description") => unit.description = value.to_string(),
            ("Unit", "StartLimitIntervalSec") => unit.start_limit_interval = span(value)?,
            ("Unit", "StartLimitBurst") => {
                unit.start_limit_burst = value
                    .parse()
                    .map_err(|_| err(n, format!("invalid StartLimitBurst {value:?}")))?
            }
            ("Unit", _) => {}
            ("Service", "ExecStart") => {
                unit.exec_start = split_command(value).map_err(|e| err(n, e))?;
            }
            ("Service", "Environment") => {
                for kv in split_command(value).map_err(|e| err(n, e))? {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| err(n, format!("expected VAR=value, got {kv:?}")))?;
                    unit.environment.push((k.to_string(), v.to_string()));
                }
            }
            ("Service", "WorkingDirectory") => unit.working_directory = Some(value.to_string()),
            ("Service", "Restart") => {
                unit.restart = match value {
                    "no" => RestartPolicy::No,
                    "always" => RestartPolicy::Always,
                    "on-success" => RestartPolicy::OnSuccess,
                    "on-failure" => RestartPolicy::OnFailure,
                    "on-abnormal" => RestartPolicy::OnAbnormal,
                    v => {
                        return Err(err(
                            n,
                            format!(
                                "invalid Restart={v}: expected no, always, on-success, on-failure or on-abnormal"
                            ),
                        ));
                    }
                }
            }
            ("Service", "RestartSec") => unit.restart_sec = span(value)?,
            ("Service", "TimeoutStopSec") => unit.timeout_stop = span(value)?,
            ("Service", "Type") => {
                if value != "simple" {
                    return Err(err(n, format!("unsupported Type={value}: only simple")));
                }
            }
            ("Service", _) => {}
            ("Install", "WantedBy") => unit.enabled = !value.is_empty(),
            ("Install", _) => {}
            (s, _) => return Err(err(n, format!("unknown section [{s}]"))),
        }
    }
    if unit.exec_start.is_empty() {
        return Err(err(0, "missing ExecStart=".into()));
    }
    Ok(unit)
}

/// Whether a main process that ended with `exit` is started again.
pub fn should_restart(policy: RestartPolicy, exit: Exit) -> bool {
    let clean = exit == Exit::Code(0);
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always => true,
        RestartPolicy::OnSuccess => clean,
        RestartPolicy::OnFailure => !clean,
        RestartPolicy::OnAbnormal => matches!(exit, Exit::Signal(_)),
    }
}

/// `StartLimitIntervalSec=`/`StartLimitBurst=`: record a start at `now` and
/// say whether it is allowed (more than `burst` starts within `interval`
/// hits the limit).
pub fn start_allowed(
    history: &mut VecDeque<ClusterInstant>,
    now: ClusterInstant,
    interval: Duration,
    burst: u32,
) -> bool {
    if burst == 0 || interval.is_zero() {
        return true;
    }
    while let Some(first) = history.front() {
        if now.saturating_duration_since(*first) >= interval {
            history.pop_front();
        } else {
            break;
        }
    }
    if history.len() >= burst as usize {
        return false;
    }
    history.push_back(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_table() {
        use Exit::*;
        use RestartPolicy::*;
        let cases = [
            (No, Code(1), false),
            (Always, Code(0), true),
            (Always, Signal(9), true),
            (OnSuccess, Code(0), true),
            (OnSuccess, Code(2), false),
            (OnFailure, Code(0), false),
            (OnFailure, Code(2), true),
            (OnFailure, Signal(15), true),
            (OnAbnormal, Code(1), false),
            (OnAbnormal, Signal(11), true),
        ];
        for (p, e, want) in cases {
            assert_eq!(should_restart(p, e), want, "{p:?} {e:?}");
        }
    }

    #[test]
    fn parses_a_service() {
        let text = "# the node's kubelet\n[Unit]\nDescription=ackemu kubelet\nStartLimitBurst=3\n\
                    [Service]\nExecStart=/usr/bin/ackemu-node kubelet --node-name \"node a\"\n\
                    Environment=A=1 \"B=two words\"\nRestart=always\nRestartSec=5s\n\
                    [Install]\nWantedBy=multi-user.target\n";
        let u = parse_service("kubelet.service", text).unwrap();
        assert_eq!(u.description, "ackemu kubelet");
        assert_eq!(
            u.exec_start,
            ["/usr/bin/ackemu-node", "kubelet", "--node-name", "node a"]
        );
        assert_eq!(
            u.environment,
            [("A".into(), "1".into()), ("B".into(), "two words".into())]
        );
        assert_eq!(u.restart, RestartPolicy::Always);
        assert_eq!(u.restart_sec, Duration::from_secs(5));
        assert_eq!(u.start_limit_burst, 3);
        assert!(u.enabled);
    }

    #[test]
    fn rejects_bad_files_with_the_line() {
        let cases = [
            ("[Service]\nRestart=sometimes\nExecStart=/bin/true\n", 2),
            ("[Service]\nExecStart=/bin/true\nRestartSec=soon\n", 3),
            ("[Service]\nExecStart=\"/bin/true\n", 2),
            ("[Unit]\nDescription=x\n", 0),
            ("[Bogus]\nA=b\n", 2),
        ];
        for (text, line) in cases {
            let e = parse_service("x.service", text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn time_spans() {
        assert_eq!(parse_time_span("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_time_span("2min"), Some(Duration::from_secs(120)));
        assert_eq!(parse_time_span("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_time_span("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_time_span("soon"), None);
    }

    #[test]
    fn start_limit_hits_after_burst() {
        let (clock, manual) = ackemu_base::clock::Clock::manual(0);
        let mut h = VecDeque::new();
        let i = Duration::from_secs(10);
        for _ in 0..3 {
            assert!(start_allowed(&mut h, clock.now(), i, 3));
            manual.advance(Duration::from_secs(1));
        }
        assert!(
            !start_allowed(&mut h, clock.now(), i, 3),
            "4th start within 10s"
        );
        manual.advance(Duration::from_secs(10));
        assert!(start_allowed(&mut h, clock.now(), i, 3), "window passed");
    }
}
