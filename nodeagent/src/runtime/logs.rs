//! Container logs in the CRI format the kubelet reads:
//! `<RFC3339Nano time> <stream> <P|F> <content>\n`, one line per output
//! line; a line longer than [`MAX_LINE`] is split into partial (`P`) lines
//! ending with a full (`F`) one.

use std::path::PathBuf;

use ackemu_base::clock::Clock;
use tokio::io::AsyncWriteExt as _;
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

/// Longest content of one log line.
pub const MAX_LINE: usize = 16 * 1024;

/// Feed `chunk` into `pending` and return the complete CRI lines it
/// finishes. `ts` stamps them.
pub fn cri_lines(stream: &str, pending: &mut Vec<u8>, chunk: &[u8], ts: &str) -> Vec<String> {
    let mut out = Vec::new();
    for &b in chunk {
        if b == b'\n' {
            out.push(format!(
                "{ts} {stream} F {}\n",
                String::from_utf8_lossy(pending)
            ));
            pending.clear();
        } else {
            pending.push(b);
            if pending.len() == MAX_LINE {
                out.push(format!(
                    "{ts} {stream} P {}\n",
                    String::from_utf8_lossy(pending)
                ));
                pending.clear();
            }
        }
    }
    out
}

/// The final line for output that ended without a newline.
pub fn flush_line(stream: &str, pending: &mut Vec<u8>, ts: &str) -> Option<String> {
    if pending.is_empty() {
        return None;
    }
    let l = format!("{ts} {stream} F {}\n", String::from_utf8_lossy(pending));
    pending.clear();
    Some(l)
}

/// RFC 3339 with nanoseconds, cluster wall time.
pub fn timestamp(clock: &Clock) -> String {
    clock
        .wall_chrono()
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Copy a FIFO into the CRI log file until `exited` fires, then drain it.
pub async fn copy(
    fifo: pipe::Receiver,
    stream: &'static str,
    log: PathBuf,
    clock: Clock,
    exited: CancellationToken,
) {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .await;
    let mut file = match file {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!("runtime: opening log {}: {e}", log.display());
            return;
        }
    };
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let mut draining = false;
    loop {
        if draining {
            match fifo.try_read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let lines = cri_lines(stream, &mut pending, &buf[..n], &timestamp(&clock));
                    write_lines(&mut file, &lines).await;
                }
                Err(_) => break,
            }
            continue;
        }
        tokio::select! {
            () = exited.cancelled() => draining = true,
            r = fifo.readable() => {
                if r.is_err() {
                    break;
                }
                match fifo.try_read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let lines = cri_lines(stream, &mut pending, &buf[..n], &timestamp(&clock));
                        write_lines(&mut file, &lines).await;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
        }
    }
    if let Some(l) = flush_line(stream, &mut pending, &timestamp(&clock)) {
        write_lines(&mut file, &[l]).await;
    }
    let _ = file.flush().await;
}

async fn write_lines(file: &mut tokio::fs::File, lines: &[String]) {
    for l in lines {
        if file.write_all(l.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_partials() {
        let ts = "2026-01-02T03:04:05.000000000Z";
        let mut p = Vec::new();
        assert_eq!(
            cri_lines("stdout", &mut p, b"hello\nwor", ts),
            vec![format!("{ts} stdout F hello\n")]
        );
        assert_eq!(
            cri_lines("stdout", &mut p, b"ld\n", ts),
            vec![format!("{ts} stdout F world\n")]
        );
        let long = vec![b'x'; MAX_LINE + 3];
        let lines = cri_lines("stderr", &mut p, &long, ts);
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with(&format!("{ts} stderr P xxx")));
        assert_eq!(
            flush_line("stderr", &mut p, ts),
            Some(format!("{ts} stderr F xxx\n"))
        );
        assert_eq!(flush_line("stderr", &mut p, ts), None);
    }
}
