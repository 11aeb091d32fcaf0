//! Human-readable durations and timestamps as `kubectl` prints them
//! (`k8s.io/apimachinery/pkg/util/duration`).

use jiff::Timestamp;

/// `duration.HumanDuration`: `45s`, `5m3s`, `3h10m`, `2d4h`, `3y`.
pub fn human_duration_ms(ms: i64) -> String {
    let seconds = ms / 1000;
    if seconds < -1 {
        return "<invalid>".to_owned();
    } else if seconds < 0 {
        return "0s".to_owned();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// Parses an RFC 3339 timestamp as Kubernetes writes them.
pub fn parse_timestamp(s: &str) -> Option<Timestamp> {
    s.parse().ok()
}

/// `translateTimestampSince`: the age of an RFC 3339 timestamp at `now`,
/// `<unknown>` when absent or unparsable.
pub fn since(ts: Option<&str>, now: Timestamp) -> String {
    match ts.and_then(parse_timestamp) {
        Some(t) => {
            let ms = now.as_millisecond() - t.as_millisecond();
            human_duration_ms(ms)
        }
        None => "<unknown>".to_owned(),
    }
}

/// A timestamp in Kubernetes' JSON form (`2020-09-22T12:33:24Z`, seconds precision).
pub fn format_timestamp(t: Timestamp) -> String {
    let secs = Timestamp::from_second(t.as_second()).unwrap_or(t);
    secs.to_string()
}

/// A `MicroTime` in Kubernetes' JSON form (`2020-09-22T12:33:24.123456Z`).
pub fn format_micro_timestamp(t: Timestamp) -> String {
    let micros = t.as_microsecond();
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let base = Timestamp::from_second(secs)
        .map(|t| t.to_string())
        .unwrap_or_default();
    format!("{}.{frac:06}Z", base.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        let s = 1000;
        let m = 60 * s;
        let h = 60 * m;
        let d = 24 * h;
        let cases = [
            (-3 * s, "<invalid>"),
            (-1500, "0s"),
            (0, "0s"),
            (45 * s, "45s"),
            (119 * s, "119s"),
            (2 * m, "2m"),
            (5 * m + 3 * s, "5m3s"),
            (10 * m, "10m"),
            (179 * m, "179m"),
            (3 * h, "3h"),
            (3 * h + 10 * m, "3h10m"),
            (8 * h, "8h"),
            (47 * h, "47h"),
            (2 * d, "2d"),
            (2 * d + 4 * h, "2d4h"),
            (8 * d, "8d"),
            (400 * d, "400d"),
            (730 * d, "2y"),
            (800 * d, "2y70d"),
            (9 * 365 * d, "9y"),
        ];
        for (ms, want) in cases {
            assert_eq!(human_duration_ms(ms), want, "{ms}");
        }
    }

    #[test]
    fn timestamps() {
        let now: Timestamp = "2020-09-22T12:38:24Z".parse().unwrap();
        assert_eq!(since(Some("2020-09-22T12:33:24Z"), now), "5m");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(since(Some("garbage"), now), "<unknown>");
        let t: Timestamp = "2020-09-22T12:33:24.123456789Z".parse().unwrap();
        assert_eq!(format_timestamp(t), "2020-09-22T12:33:24Z");
        assert_eq!(format_micro_timestamp(t), "2020-09-22T12:33:24.123456Z");
    }
}
