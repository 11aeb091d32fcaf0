//! The report: a summary table for people, JUnit XML for CI.

use std::fmt::Write as _;

use crate::scenario::Run;

/// The summary table: one line per scenario, then each failed step.
pub fn table(runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<5} {:<34} {:<7} {:<6} {:>6} {:>9}",
        "ID", "SCENARIO", "BACKEND", "RESULT", "STEPS", "WALL"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<5} {:<34} {:<7} {:<6} {:>6} {:>8.1}s",
            r.id,
            r.title,
            r.backend,
            if r.passed() { "pass" } else { "FAIL" },
            r.steps.len(),
            r.wall.as_secs_f64()
        );
    }
    for r in runs.iter().filter(|r| !r.passed()) {
        let _ = writeln!(out, "\n{} {}:", r.id, r.title);
        for s in r.steps.iter().filter(|s| !s.ok) {
            let _ = writeln!(out, "  {} {}: {}", s.phase.as_str(), s.what, s.detail);
        }
        if let Some(e) = &r.error {
            let _ = writeln!(out, "  error: {e}");
        }
    }
    out
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: a testsuite of scenarios, each testcase's system-out listing
/// the steps with the cluster time they were seen at.
pub fn junit(runs: &[Run]) -> String {
    let failures = runs.iter().filter(|r| !r.passed()).count();
    let total: f64 = runs.iter().map(|r| r.wall.as_secs_f64()).sum();
    let mut out = String::new();
    let _ = writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    let _ = writeln!(
        out,
        r#"<testsuite name="ackemu-e2e" tests="{}" failures="{failures}" time="{total:.3}">"#,
        runs.len()
    );
    for r in runs {
        let _ = writeln!(
            out,
            r#"  <testcase classname="{}" name="{} {}" time="{:.3}">"#,
            r.backend,
            r.id,
            xml(r.title),
            r.wall.as_secs_f64()
        );
        if !r.passed() {
            let msg = r
                .error
                .clone()
                .or_else(|| r.steps.iter().find(|s| !s.ok).map(|s| s.what.clone()))
                .unwrap_or_default();
            let _ = writeln!(out, r#"    <failure message="{}"/>"#, xml(&msg));
        }
        let steps: String = r
            .steps
            .iter()
            .map(|s| {
                format!(
                    "[{:.1}s {}] {} {}: {}\n",
                    s.at.as_secs_f64(),
                    s.phase.as_str(),
                    if s.ok { "seen" } else { "NOT SEEN" },
                    s.what,
                    s.detail
                )
            })
            .collect();
        let _ = writeln!(out, "    <system-out>{}</system-out>", xml(&steps));
        let _ = writeln!(out, "  </testcase>");
    }
    let _ = writeln!(out, "</testsuite>");
    out
}
