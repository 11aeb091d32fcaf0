//! `telnet HOST PORT` as a connectivity check: prints what telnet prints
//! and exits (0 when connected).

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use ackemu_base::clock::Clock;

use super::{parse_opts, secs_opt};

/// `telnet [-w SECS] HOST PORT`.
pub async fn main(args: &[String]) -> Result<ExitCode, String> {
    let (opts, pos) = parse_opts(args, &["w"])?;
    let [host, port] = pos.as_slice() else {
        return Err("usage: telnet [-w SECS] HOST PORT".into());
    };
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("could not resolve {host}/{port}: Name or service not known"))?;
    let port: u16 = port.parse().map_err(|_| format!("bad port '{port}'"))?;
    let wait = secs_opt(&opts, "w", 10.0)?;
    println!("Trying {ip}...");
    let addr = SocketAddr::new(ip, port);
    match Clock::real()
        .timeout(wait, tokio::net::TcpStream::connect(addr))
        .await
    {
        Ok(Ok(_)) => {
            println!("Connected to {host}.\nEscape character is '^]'.");
            Ok(ExitCode::SUCCESS)
        }
        Ok(Err(e)) => {
            println!(
                "telnet: Unable to connect to remote host: {}",
                os_message(&e)
            );
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            println!("telnet: Unable to connect to remote host: Connection timed out");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The strerror text without Rust's " (os error N)" suffix.
pub fn os_message(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
