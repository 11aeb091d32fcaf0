//! The `--v=10` trace of one scheduling cycle: the lines kube-scheduler
//! logs, rendered the way klog prints structured logs
//! (`"message" key="string" key=number`), without the klog header (the
//! process's logger adds `I0102 15:04:05.000000 …]`).
//!
//! Kubernetes 1.33 lines reproduced verbatim: `Plugin scored node for pod`,
//! `Calculated node's final score for pod`, `Listed internal info for
//! allocatable resources, requested resources and score`. kube-scheduler
//! logs no per-node filter outcome at any level; ackemu adds one line per
//! filter plugin run on each node, `Filter plugin result for pod`, in the
//! same style, so a trace shows why every node was kept or dropped. The
//! pre-1.14 priority functions (`crate::legacy`) log their own printf-style
//! lines, as the seed article's kube-scheduler did.

use std::fmt::Write as _;

/// One log line at a klog verbosity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceLine {
    pub v: u8,
    pub text: String,
}

/// Collects trace lines when enabled; a disabled trace costs one branch.
#[derive(Clone, Debug, Default)]
pub struct Trace {
    enabled: bool,
    lines: Vec<TraceLine>,
}

impl Trace {
    /// A trace that records lines.
    pub fn enabled() -> Trace {
        Trace {
            enabled: true,
            lines: Vec::new(),
        }
    }

    /// A trace that records nothing.
    pub fn disabled() -> Trace {
        Trace::default()
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    pub fn push(&mut self, v: u8, text: String) {
        if self.enabled {
            self.lines.push(TraceLine { v, text });
        }
    }

    pub fn lines(&self) -> &[TraceLine] {
        &self.lines
    }

    pub fn take(&mut self) -> Vec<TraceLine> {
        std::mem::take(&mut self.lines)
    }

    /// The texts of the lines, for tests and dumps.
    pub fn texts(&self) -> Vec<&str> {
        self.lines.iter().map(|l| l.text.as_str()).collect()
    }
}

/// Go's `strconv.Quote` for the strings the scheduler logs.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds one structured klog line.
pub struct Line(String);

impl Line {
    pub fn msg(message: &str) -> Line {
        Line(quote(message))
    }

    /// A string value (quoted).
    pub fn s(mut self, key: &str, value: &str) -> Line {
        let _ = write!(self.0, " {key}={}", quote(value));
        self
    }

    /// A value printed with `%+v` (numbers, slices) — unquoted.
    pub fn v(mut self, key: &str, value: impl std::fmt::Display) -> Line {
        let _ = write!(self.0, " {key}={value}");
        self
    }

    /// A Go slice of integers, `[1 2 3]`.
    pub fn ints(self, key: &str, values: &[i64]) -> Line {
        let joined: Vec<String> = values.iter().map(i64::to_string).collect();
        self.v(key, format!("[{}]", joined.join(" ")))
    }

    pub fn build(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn klog_structured_format() {
        let l = Line::msg("Plugin scored node for pod")
            .s("pod", "default/app")
            .s("plugin", "TaintToleration")
            .s("node", "n1")
            .v("score", 300)
            .ints("allocatableResource", &[4000, 8388608000])
            .build();
        assert_eq!(
            l,
            r#""Plugin scored node for pod" pod="default/app" plugin="TaintToleration" node="n1" score=300 allocatableResource=[4000 8388608000]"#
        );
        assert_eq!(quote("a\"b\\\u{0}"), r#""a\"b\\\x00""#);
        let mut t = Trace::disabled();
        t.push(10, "x".into());
        assert!(t.lines().is_empty());
        let mut t = Trace::enabled();
        t.push(10, "x".into());
        assert_eq!(t.texts(), ["x"]);
    }
}
