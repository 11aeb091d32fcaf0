//! `ping [-c N] [-W SECS] [-i SECS] HOST` over a raw ICMP socket, printing
//! what iputils' ping prints.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use ackemu_base::clock::Clock;
use socket2::{Domain, Protocol, Socket, Type};

use super::{opt, parse_opts, secs_opt};

const PAYLOAD: usize = 56;

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request.
pub fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut p = vec![0u8; 8 + PAYLOAD];
    p[0] = 8; // echo request
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[8..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// Parse an echo reply (raw socket: with IPv4 header; dgram: without).
/// Returns (from, ttl, id, seq).
pub fn parse_reply(buf: &[u8], raw: bool) -> Option<(Ipv4Addr, u8, u16, u16)> {
    let (icmp, from, ttl) = if raw {
        let ihl = usize::from(buf.first()? & 0x0f) * 4;
        if buf.len() < ihl + 8 || buf[9] != 1 {
            return None;
        }
        (
            &buf[ihl..],
            Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]),
            buf[8],
        )
    } else {
        (buf, Ipv4Addr::UNSPECIFIED, 64)
    };
    if icmp.len() < 8 || icmp[0] != 0 {
        return None;
    }
    Some((
        from,
        ttl,
        u16::from_be_bytes([icmp[4], icmp[5]]),
        u16::from_be_bytes([icmp[6], icmp[7]]),
    ))
}

fn open() -> Result<(Socket, bool), String> {
    match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(s) => Ok((s, true)),
        Err(_) => Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4))
            .map(|s| (s, false))
            .map_err(|e| {
                format!("socket: {e} (ping needs CAP_NET_RAW or net.ipv4.ping_group_range)")
            }),
    }
}

/// The command. Blocking by design: a one-shot program.
pub async fn main(args: &[String]) -> Result<ExitCode, String> {
    let (opts, pos) = parse_opts(args, &["c", "W", "i"])?;
    let [host] = pos.as_slice() else {
        return Err("usage: ping [-c COUNT] [-W SECS] [-i SECS] HOST".into());
    };
    let ip: Ipv4Addr = match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4,
        _ => match super::wget::resolve(host).await {
            Some(IpAddr::V4(v4)) => v4,
            _ => return Err(format!("{host}: Name or service not known")),
        },
    };
    let count: u32 = match opt(&opts, "c") {
        Some(c) => c.parse().map_err(|_| format!("invalid argument: '{c}'"))?,
        None => 4,
    };
    let wait = secs_opt(&opts, "W", 1.0)?;
    let interval = secs_opt(&opts, "i", 1.0)?;
    let (mut sock, raw) = open()?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let dest = SocketAddr::new(IpAddr::V4(ip), 0);
    let id = (std::process::id() & 0xffff) as u16;
    let clock = Clock::real();
    let start = clock.now();
    let (mut sent, mut received) = (0u32, 0u32);
    let mut rtts = Vec::new();
    println!(
        "PING {host} ({ip}) {PAYLOAD}({}) bytes of data.",
        PAYLOAD + 28
    );
    for seq in 1..=count {
        let seq16 = seq as u16;
        let t0 = clock.now();
        if let Err(e) = sock.send_to(&echo_request(id, seq16), &dest.into()) {
            println!("ping: sendmsg: {e}");
        } else {
            sent += 1;
        }
        let deadline = t0 + wait;
        let mut buf = [0u8; 1500];
        while clock.now() < deadline {
            let n = match sock.read(&mut buf) {
                Ok(n) => n,
                Err(_) => continue,
            };
            let Some((from, ttl, rid, rseq)) = parse_reply(&buf[..n], raw) else {
                continue;
            };
            // Dgram ICMP sockets rewrite the id; accept by sequence then.
            if (raw && rid != id) || rseq != seq16 {
                continue;
            }
            let rtt = clock.now() - t0;
            rtts.push(rtt.as_secs_f64() * 1000.0);
            received += 1;
            let from = if raw { from } else { ip };
            println!(
                "{} bytes from {from}: icmp_seq={seq} ttl={ttl} time={:.3} ms",
                PAYLOAD + 8,
                rtt.as_secs_f64() * 1000.0
            );
            break;
        }
        if seq < count {
            let next = t0 + interval;
            let now = clock.now();
            if next > now {
                std::thread::sleep(next - now);
            }
        }
    }
    let total_ms = (clock.now() - start).as_millis();
    let loss = ((sent - received) * 100).checked_div(sent).unwrap_or(100);
    println!("\n--- {host} ping statistics ---");
    println!(
        "{sent} packets transmitted, {received} received, {loss}% packet loss, time {total_ms}ms"
    );
    if !rtts.is_empty() {
        let min = rtts.iter().copied().fold(f64::MAX, f64::min);
        let max = rtts.iter().copied().fold(0.0, f64::max);
        let avg = rtts.iter().sum::<f64>() / rtts.len() as f64;
        let mdev = (rtts.iter().map(|r| (r - avg).powi(2)).sum::<f64>() / rtts.len() as f64).sqrt();
        println!("rtt min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms");
    }
    Ok(if received > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero() {
        let p = echo_request(0x1234, 7);
        assert_eq!(checksum(&p), 0);
        assert_eq!(p[0], 8);
        assert_eq!(&p[4..8], &[0x12, 0x34, 0, 7]);
    }

    #[test]
    fn parses_raw_echo_reply() {
        let mut icmp = echo_request(9, 3);
        icmp[0] = 0;
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 63, 1, 0, 0, 172, 16, 1, 2, 172, 16, 2, 3,
        ];
        ip.extend_from_slice(&icmp);
        assert_eq!(
            parse_reply(&ip, true),
            Some((Ipv4Addr::new(172, 16, 1, 2), 63, 9, 3))
        );
        assert_eq!(parse_reply(&ip[..10], true), None);
        assert_eq!(parse_reply(&icmp, false).map(|r| r.3), Some(3));
    }
}
