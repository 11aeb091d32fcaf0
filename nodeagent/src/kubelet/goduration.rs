//! Go's `time.Duration.String()`, which the kubelet's messages use
//! (`3m0.1s`, `3m0s`, `100ms`, `1h0m0s`).

use std::time::Duration;

/// Format `d` exactly as Go's `Duration.String()` does.
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        let (unit, div, digits) = if ns < 1_000 {
            ("ns", 1, 0)
        } else if ns < 1_000_000 {
            ("µs", 1_000, 3)
        } else {
            ("ms", 1_000_000, 6)
        };
        return format!("{}{unit}", fraction(ns / div, ns % div, digits));
    }
    let secs = ns / 1_000_000_000;
    let frac = ns % 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&fraction(s, frac, 9));
    out.push('s');
    out
}

/// `whole.frac` with `frac` written in `digits` digits, trailing zeros
/// (and a bare dot) removed.
fn fraction(whole: u128, frac: u128, digits: usize) -> String {
    if frac == 0 || digits == 0 {
        return whole.to_string();
    }
    let f = format!("{frac:0digits$}");
    format!("{whole}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        let ms = Duration::from_millis;
        for (d, want) in [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (ms(100), "100ms"),
            (Duration::from_micros(1_250), "1.25ms"),
            (ms(1_000), "1s"),
            (ms(180_000), "3m0s"),
            (ms(180_100), "3m0.1s"),
            (Duration::from_nanos(180_000_091_019), "3m0.000091019s"),
            (Duration::from_nanos(186_301_098_811), "3m6.301098811s"),
            (ms(3_600_000), "1h0m0s"),
            (ms(3_723_500), "1h2m3.5s"),
            (ms(10_000), "10s"),
            (ms(300_000), "5m0s"),
        ] {
            assert_eq!(go_duration(d), want, "{d:?}");
        }
    }
}
