//! `wget [-q] [-O FILE|-] [-T SECS] URL` with busybox wget's messages.
//! Host names are resolved through the pod's resolv.conf (cluster DNS).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use ackemu_base::clock::Clock;
use bytes::Bytes;
use hickory_proto::rr::{RData, RecordType};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::nslookup::{Outcome, query};
use super::telnet::os_message;
use super::{opt, parse_opts, resolv, secs_opt};

/// Resolve `host` the way a pod's libc would: literal IP, or A records via
/// the resolv.conf search list.
pub async fn resolve(host: &str) -> Option<IpAddr> {
    if let Ok(ip) = host.parse() {
        return Some(ip);
    }
    let rc = resolv::parse(&std::fs::read_to_string(resolv::path()).ok()?);
    let server = *rc.nameservers.first()?;
    for name in resolv::candidates(&rc, host) {
        match query(
            server,
            &name,
            RecordType::A,
            Duration::from_secs(rc.timeout_secs.max(1)),
            rc.attempts,
        )
        .await
        {
            Ok(Outcome::Response(m)) => {
                for r in &m.answers {
                    if let RData::A(a) = &r.data {
                        return Some(IpAddr::V4(a.0));
                    }
                }
            }
            Ok(Outcome::TimedOut) | Err(_) => return None,
        }
    }
    None
}

/// Fetch `url`; Ok(body) or Err(busybox-style message).
pub async fn fetch(url: &str, timeout: Duration) -> Result<(u16, Bytes), String> {
    let uri: http::Uri = url.parse().map_err(|_| format!("bad address '{url}'"))?;
    if uri.scheme_str().unwrap_or("http") != "http" {
        return Err(format!(
            "unsupported scheme in '{url}': only http:// is supported"
        ));
    }
    let host = uri
        .host()
        .ok_or_else(|| format!("bad address '{url}'"))?
        .to_string();
    let port = uri.port_u16().unwrap_or(80);
    let ip = resolve(&host)
        .await
        .ok_or_else(|| format!("bad address '{host}'"))?;
    let addr = SocketAddr::new(ip, port);
    let clock = Clock::real();
    let work = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("can't connect to remote host ({ip}): {}", os_message(&e)))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        let req = http::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(
                http::header::HOST,
                if port == 80 {
                    host.clone()
                } else {
                    format!("{host}:{port}")
                },
            )
            .header(http::header::USER_AGENT, "Wget")
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let fetch = async {
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        // Drive the connection only as long as the request needs it; the
        // connection may finish (Connection: close) before the body is read.
        let conn = async move { conn.await.map_err(|e| e.to_string()) };
        tokio::pin!(fetch);
        tokio::pin!(conn);
        let mut conn_done = false;
        let (status, body) = loop {
            tokio::select! {
                biased;
                r = &mut fetch => break r?,
                r = &mut conn, if !conn_done => {
                    conn_done = true;
                    r?;
                }
            }
        };
        if !status.is_success() {
            return Err(format!(
                "server returned error: HTTP/1.1 {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ));
        }
        Ok((status.as_u16(), body))
    };
    match clock.timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err("download timed out".into()),
    }
}

/// The command.
pub async fn main(args: &[String]) -> Result<ExitCode, String> {
    let (opts, pos) = parse_opts(args, &["O", "T"])?;
    let [url] = pos.as_slice() else {
        return Err("usage: wget [-q] [-O FILE|-] [-T SECS] URL".into());
    };
    let quiet = opt(&opts, "q").is_some();
    let timeout = secs_opt(&opts, "T", 900.0)?;
    if !quiet {
        eprintln!("Connecting to {url}");
    }
    let (_, body) = fetch(url, timeout).await?;
    match opt(&opts, "O") {
        Some("-") => {
            use std::io::Write;
            let mut out = std::io::stdout();
            out.write_all(&body).map_err(|e| e.to_string())?;
            out.flush().map_err(|e| e.to_string())?;
        }
        other => {
            let file = other.unwrap_or("index.html");
            std::fs::write(file, &body).map_err(|e| format!("can't open '{file}': {e}"))?;
            if !quiet {
                eprintln!("saving to '{file}'");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
