//! `nslookup NAME [SERVER]`, printing what BIND's nslookup prints.
//!
//! The S04 signature: with the pod-CIDR security-group rule removed, queries
//! to the cluster DNS on another node time out (`;; connection timed out;
//! no servers could be reached`) while `ping` of the same address works.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use ackemu_base::clock::Clock;
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::net::UdpSocket;

use super::resolv;
use super::{opt, parse_opts};

/// Outcome of one query.
#[derive(Debug)]
pub enum Outcome {
    /// A response arrived.
    Response(Message),
    /// Every attempt timed out.
    TimedOut,
}

/// Send one query for `name`/`rtype` to `server`, `attempts` times at most.
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    timeout: Duration,
    attempts: u32,
) -> Result<Outcome, String> {
    let fqdn = Name::from_ascii(format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("'{name}' is not a legal name ({e})"))?;
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .expect("literal address");
    let sock = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
    sock.connect(server)
        .await
        .map_err(|e| format!("connect {server}: {e}"))?;
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(fqdn, rtype));
    let id = msg.metadata.id;
    let bytes = msg.to_vec().map_err(|e| e.to_string())?;
    let clock = Clock::real();
    for _ in 0..attempts.max(1) {
        // A send error (e.g. no route) counts as a lost datagram, as with BIND.
        let _ = sock.send(&bytes).await;
        let mut buf = vec![0u8; 4096];
        let wait = async {
            loop {
                match sock.recv(&mut buf).await {
                    Ok(n) => match Message::from_vec(&buf[..n]) {
                        Ok(m) if m.metadata.id == id => return Some(m),
                        _ => continue,
                    },
                    // ICMP errors surface as recv errors on a connected socket.
                    Err(_) => return None,
                }
            }
        };
        match clock.timeout(timeout, wait).await {
            Ok(Some(m)) => return Ok(Outcome::Response(m)),
            Ok(None) | Err(_) => continue,
        }
    }
    Ok(Outcome::TimedOut)
}

fn reverse_name(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0]))
        }
        IpAddr::V6(_) => None,
    }
}

/// `nslookup [-timeout=N] [-retry=N] [-port=N] [-type=A|SRV|PTR] NAME [SERVER]`.
pub async fn main(args: &[String]) -> Result<ExitCode, String> {
    let (opts, pos) = parse_opts(args, &[])?;
    let Some(name) = pos.first() else {
        return Err(
            "usage: nslookup [-timeout=N] [-retry=N] [-port=N] [-type=T] NAME [SERVER]".into(),
        );
    };
    let rc = match std::fs::read_to_string(resolv::path()) {
        Ok(t) => resolv::parse(&t),
        Err(_) => resolv::ResolvConf::default(),
    };
    let port: u16 = match opt(&opts, "port") {
        Some(p) => p.parse().map_err(|_| format!("invalid port '{p}'"))?,
        None => 53,
    };
    let server = match pos.get(1) {
        Some(s) => {
            let ip: IpAddr = s
                .parse()
                .map_err(|_| format!("couldn't get address for '{s}': not found"))?;
            SocketAddr::new(ip, port)
        }
        None => match rc.nameservers.first() {
            Some(ns) => SocketAddr::new(ns.ip(), port),
            None => return Err("no nameserver in resolv.conf".into()),
        },
    };
    let timeout = match opt(&opts, "timeout") {
        Some(t) => Duration::from_secs(t.parse().map_err(|_| format!("invalid timeout '{t}'"))?),
        None => Duration::from_secs(rc.timeout_secs.max(1)),
    };
    let attempts = match opt(&opts, "retry") {
        Some(r) => {
            r.parse::<u32>()
                .map_err(|_| format!("invalid retry '{r}'"))?
                + 1
        }
        None => rc.attempts.max(1),
    };
    let (rtype, names) = if let Ok(ip) = name.parse::<IpAddr>() {
        let rev = reverse_name(ip).ok_or("IPv6 reverse lookups are not supported")?;
        (RecordType::PTR, vec![rev])
    } else {
        let t = match opt(&opts, "type").or_else(|| opt(&opts, "query")) {
            None => RecordType::A,
            Some(t) => t
                .to_ascii_uppercase()
                .parse()
                .map_err(|_| format!("invalid type '{t}'"))?,
        };
        (t, resolv::candidates(&rc, name))
    };

    let mut header_printed = false;
    let mut print_header = || {
        if !header_printed {
            println!("Server:\t\t{}", server.ip());
            println!("Address:\t{}#{}\n", server.ip(), server.port());
            header_printed = true;
        }
    };
    for candidate in &names {
        match query(server, candidate, rtype, timeout, attempts).await? {
            Outcome::TimedOut => {
                println!(";; connection timed out; no servers could be reached\n");
                return Ok(ExitCode::FAILURE);
            }
            Outcome::Response(m) => {
                print_header();
                match m.metadata.response_code {
                    ResponseCode::NXDomain => continue,
                    ResponseCode::NoError if !m.answers.is_empty() => {
                        print_answers(&m);
                        return Ok(ExitCode::SUCCESS);
                    }
                    ResponseCode::NoError => continue,
                    other => {
                        println!("** server can't find {name}: {}", rcode_name(other));
                        return Ok(ExitCode::FAILURE);
                    }
                }
            }
        }
    }
    print_header();
    println!("** server can't find {name}: NXDOMAIN\n");
    Ok(ExitCode::FAILURE)
}

fn rcode_name(rc: ResponseCode) -> String {
    match rc {
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        other => format!("{other:?}").to_ascii_uppercase(),
    }
}

fn print_answers(m: &Message) {
    for r in &m.answers {
        let owner = r.name.to_ascii();
        let owner = owner.trim_end_matches('.');
        match &r.data {
            RData::A(a) => println!("Name:\t{owner}\nAddress: {}", a.0),
            RData::AAAA(a) => println!("Name:\t{owner}\nAddress: {}", a.0),
            RData::CNAME(c) => println!("{owner}\tcanonical name = {}", c.0.to_ascii()),
            RData::PTR(p) => println!("{owner}\tname = {}", p.0.to_ascii()),
            RData::SRV(s) => println!(
                "{owner}\tservice = {} {} {} {}",
                s.priority,
                s.weight,
                s.port,
                s.target.to_ascii()
            ),
            other => println!("{owner}\t{other}"),
        }
    }
    println!();
}
