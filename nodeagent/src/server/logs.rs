//! `/containerLogs`: the runtime's CRI-format log files
//! (`<RFC3339Nano> <stream> <P|F> <content>`) read back the way the
//! kubelet's `kuberuntime/logs` reads them: only the content is printed
//! (a partial `P` line without its newline), prefixed with the timestamp
//! when `timestamps=true`; `tailLines` counts log lines from the end,
//! `sinceSeconds`/`sinceTime` skip older lines, `limitBytes` cuts the
//! output, `follow` keeps reading until the container has exited.

use chrono::{DateTime, Utc};

/// Query options of `/containerLogs` (`v1.PodLogOptions`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming.
    pub follow: bool,
    /// Only the last n lines.
    pub tail_lines: Option<u64>,
    /// Prefix lines with their time.
    pub timestamps: bool,
    /// Only lines newer than this many seconds.
    pub since_seconds: Option<u64>,
    /// Only lines at or after this time.
    pub since_time: Option<DateTime<Utc>>,
    /// Stop after this many bytes.
    pub limit_bytes: Option<u64>,
    /// The previous instance of the container.
    pub previous: bool,
}

fn flag(v: &str) -> Result<bool, String> {
    match v {
        "" | "1" | "true" | "True" | "TRUE" | "t" | "T" => Ok(true),
        "0" | "false" | "False" | "FALSE" | "f" | "F" => Ok(false),
        _ => Err(format!("invalid boolean value {v:?}")),
    }
}

fn positive(name: &str, v: &str) -> Result<u64, String> {
    let n: i64 = v
        .parse()
        .map_err(|_| format!("{name}: invalid value {v:?}: expected an integer"))?;
    if n < 0 {
        return Err(format!(
            "{name}: Invalid value: {n}: must be greater than or equal to 0"
        ));
    }
    Ok(n as u64)
}

impl LogOptions {
    /// From the query pairs.
    pub fn parse(query: &[(String, String)]) -> Result<LogOptions, String> {
        let mut o = LogOptions::default();
        for (k, v) in query {
            match k.as_str() {
                "follow" => o.follow = flag(v)?,
                "timestamps" => o.timestamps = flag(v)?,
                "previous" => o.previous = flag(v)?,
                "tailLines" => o.tail_lines = Some(positive("tailLines", v)?),
                "limitBytes" => {
                    let n = positive("limitBytes", v)?;
                    if n == 0 {
                        return Err("limitBytes: Invalid value: 0: must be greater than 0".into());
                    }
                    o.limit_bytes = Some(n);
                }
                "sinceSeconds" => {
                    let n = positive("sinceSeconds", v)?;
                    if n == 0 {
                        return Err("sinceSeconds: Invalid value: 0: must be greater than 0".into());
                    }
                    o.since_seconds = Some(n);
                }
                "sinceTime" => {
                    o.since_time = Some(
                        DateTime::parse_from_rfc3339(v)
                            .map_err(|e| format!("sinceTime: invalid time {v:?}: {e}"))?
                            .with_timezone(&Utc),
                    )
                }
                _ => {}
            }
        }
        if o.since_seconds.is_some() && o.since_time.is_some() {
            return Err("at most one of sinceTime or sinceSeconds may be specified".into());
        }
        Ok(o)
    }

    /// The earliest time printed, given the current time.
    pub fn since(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match (self.since_seconds, self.since_time) {
            (Some(s), _) => Some(now - chrono::Duration::seconds(s as i64)),
            (None, Some(t)) => Some(t),
            (None, None) => None,
        }
    }
}

/// One parsed CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLine<'a> {
    /// The timestamp text as written.
    pub ts_text: &'a str,
    /// The timestamp.
    pub ts: DateTime<Utc>,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// A `P` (partial) line.
    pub partial: bool,
    /// The content, without the newline.
    pub content: &'a str,
}

/// Parse one line (without its `\n`).
pub fn parse_line(line: &str) -> Option<CriLine<'_>> {
    let mut it = line.splitn(4, ' ');
    let ts_text = it.next()?;
    let stream = it.next()?;
    let tag = it.next()?;
    let content = it.next().unwrap_or("");
    let ts = DateTime::parse_from_rfc3339(ts_text)
        .ok()?
        .with_timezone(&Utc);
    Some(CriLine {
        ts_text,
        ts,
        stream,
        partial: tag.split(':').next() == Some("P"),
        content,
    })
}

/// Turns CRI lines into output, counting bytes against `limitBytes`.
#[derive(Debug)]
pub struct Writer {
    timestamps: bool,
    since: Option<DateTime<Utc>>,
    remaining: Option<u64>,
}

impl Writer {
    /// A writer for `opts` at `now`.
    pub fn new(opts: &LogOptions, now: DateTime<Utc>) -> Writer {
        Writer {
            timestamps: opts.timestamps,
            since: opts.since(now),
            remaining: opts.limit_bytes,
        }
    }

    /// Whether `limitBytes` is used up.
    pub fn done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// The output for one raw line; empty when it is skipped.
    pub fn line(&mut self, raw: &str) -> Vec<u8> {
        let Some(l) = parse_line(raw) else {
            return Vec::new();
        };
        if self.since.is_some_and(|s| l.ts < s) {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(l.content.len() + 40);
        if self.timestamps {
            out.extend_from_slice(
                l.ts.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            out.push(b' ');
        }
        out.extend_from_slice(l.content.as_bytes());
        if !l.partial {
            out.push(b'\n');
        }
        if let Some(rem) = &mut self.remaining {
            let n = (*rem).min(out.len() as u64);
            out.truncate(n as usize);
            *rem -= n;
        }
        out
    }
}

/// The byte offset where the last `n` lines of `data` start.
pub fn tail_offset(data: &[u8], n: u64) -> usize {
    if n == 0 {
        return data.len();
    }
    let mut seen = 0;
    // A trailing newline ends the last line; it does not start one.
    let end = if data.last() == Some(&b'\n') {
        data.len() - 1
    } else {
        data.len()
    };
    for i in (0..end).rev() {
        if data[i] == b'\n' {
            seen += 1;
            if seen == n {
                return i + 1;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn options_parse_and_validate() {
        let o = LogOptions::parse(&q(&[
            ("follow", "true"),
            ("tailLines", "2"),
            ("timestamps", "1"),
            ("limitBytes", "10"),
            ("previous", "false"),
        ]))
        .unwrap();
        assert!(o.follow && o.timestamps && !o.previous);
        assert_eq!((o.tail_lines, o.limit_bytes), (Some(2), Some(10)));
        assert!(LogOptions::parse(&q(&[("tailLines", "-1")])).is_err());
        assert!(LogOptions::parse(&q(&[("limitBytes", "0")])).is_err());
        assert!(LogOptions::parse(&q(&[("follow", "maybe")])).is_err());
        assert!(
            LogOptions::parse(&q(&[
                ("sinceSeconds", "5"),
                ("sinceTime", "2026-01-01T00:00:00Z")
            ]))
            .is_err()
        );
    }

    #[test]
    fn lines_print_content_with_optional_timestamps_since_and_limit() {
        let now = DateTime::parse_from_rfc3339("2026-01-02T03:04:10Z")
            .unwrap()
            .with_timezone(&Utc);
        let lines = [
            "2026-01-02T03:04:00.000000000Z stdout F old",
            "2026-01-02T03:04:08.123456789Z stderr P part",
            "2026-01-02T03:04:08.200000000Z stderr F ial",
            "2026-01-02T03:04:09.000000000Z stdout F new line",
        ];
        let mut w = Writer::new(&LogOptions::default(), now);
        let all: Vec<u8> = lines.iter().flat_map(|l| w.line(l)).collect();
        assert_eq!(String::from_utf8(all).unwrap(), "old\npartial\nnew line\n");

        let o = LogOptions {
            since_seconds: Some(5),
            timestamps: true,
            ..Default::default()
        };
        let mut w = Writer::new(&o, now);
        let out: Vec<u8> = lines.iter().flat_map(|l| w.line(l)).collect();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-01-02T03:04:08.123456789Z part2026-01-02T03:04:08.200000000Z ial\n\
             2026-01-02T03:04:09.000000000Z new line\n"
        );

        let o = LogOptions {
            limit_bytes: Some(6),
            ..Default::default()
        };
        let mut w = Writer::new(&o, now);
        let out: Vec<u8> = lines.iter().flat_map(|l| w.line(l)).collect();
        assert_eq!(out, b"old\npa");
        assert!(w.done());
        assert_eq!(w.line("garbage"), b"");
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        let d = b"a\nb\nc\n";
        assert_eq!(&d[tail_offset(d, 1)..], b"c\n");
        assert_eq!(&d[tail_offset(d, 2)..], b"b\nc\n");
        assert_eq!(&d[tail_offset(d, 9)..], b"a\nb\nc\n");
        assert_eq!(&d[tail_offset(d, 0)..], b"");
        let d = b"a\nb";
        assert_eq!(&d[tail_offset(d, 1)..], b"b");
    }
}
