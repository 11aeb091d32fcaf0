//! IPv4 header parsing for the fabric: pure, allocation-free, and total —
//! any byte string yields a [`Packet`] or a [`Malformed`] saying why not.

use std::fmt;
use std::net::Ipv4Addr;

use crate::sg::FlowKey;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;

/// Where a packet sits in a fragmented datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    /// Not fragmented.
    Whole,
    /// Offset 0 with more fragments: carries the transport header.
    First { id: u16 },
    /// A later fragment: no transport header, ports unknown.
    Later { id: u16 },
}

/// What the fabric needs to know about one IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet {
    /// Protocol, addresses and ports; ICMP echo uses the identifier as both
    /// ports so a reply is the reversed key of its request.
    pub flow: FlowKey,
    /// The IPv4 total length (the datagram may carry trailing bytes).
    pub len: usize,
    /// TCP flags, 0 for other protocols.
    pub tcp_flags: u8,
    pub fragment: Fragment,
    /// For ICMP errors (unreachable, time exceeded, parameter problem): the
    /// flow of the packet that caused it, as that packet was sent.
    pub icmp_error_of: Option<FlowKey>,
}

/// Why a datagram is not a packet the fabric can forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Empty,
    NotIpv4 {
        version: u8,
    },
    TruncatedHeader {
        datagram: usize,
    },
    BadHeaderLength {
        ihl: u8,
    },
    BadTotalLength {
        total: u16,
        datagram: usize,
    },
    BadChecksum,
    TruncatedTransport {
        protocol: u8,
        have: usize,
    },
    /// Larger than the fabric's datagram buffers (the NIC MTU).
    TooLarge {
        limit: usize,
    },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::Empty => write!(f, "empty datagram"),
            Malformed::NotIpv4 { version } => {
                write!(f, "not an ipv4 packet: ip version {version}, expected 4")
            }
            Malformed::TruncatedHeader { datagram } => write!(
                f,
                "truncated ipv4 header: {datagram} bytes, expected at least the header length"
            ),
            Malformed::BadHeaderLength { ihl } => {
                write!(f, "bad ipv4 header length: ihl {ihl}, expected 5 to 15")
            }
            Malformed::BadTotalLength { total, datagram } => write!(
                f,
                "bad ipv4 total length {total}: the datagram has {datagram} bytes"
            ),
            Malformed::BadChecksum => write!(f, "bad ipv4 header checksum"),
            Malformed::TruncatedTransport { protocol, have } => write!(
                f,
                "truncated {} header: {have} bytes",
                protocol_name(*protocol)
            ),
            Malformed::TooLarge { limit } => {
                write!(f, "datagram larger than {limit} bytes, the fabric's mtu")
            }
        }
    }
}

pub fn protocol_name(p: u8) -> &'static str {
    match p {
        PROTO_ICMP => "icmp",
        PROTO_TCP => "tcp",
        PROTO_UDP => "udp",
        _ => "ip",
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn addr(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// Ones'-complement sum over an IPv4 header; a valid header sums to 0xffff.
fn header_checksum_ok(h: &[u8]) -> bool {
    let mut sum: u32 = 0;
    for c in h.chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

/// Ports of a transport header (`l4` starts at the transport header).
fn ports(protocol: u8, l4: &[u8]) -> Result<(u16, u16, u8), Malformed> {
    let short = || Malformed::TruncatedTransport {
        protocol,
        have: l4.len(),
    };
    match protocol {
        PROTO_TCP => {
            if l4.len() < 20 {
                return Err(short());
            }
            Ok((be16(l4, 0), be16(l4, 2), l4[13]))
        }
        PROTO_UDP => {
            if l4.len() < 8 {
                return Err(short());
            }
            Ok((be16(l4, 0), be16(l4, 2), 0))
        }
        PROTO_ICMP => {
            if l4.len() < 8 {
                return Err(short());
            }
            match l4[0] {
                // Echo reply / request: the identifier pairs them.
                0 | 8 => {
                    let id = be16(l4, 4);
                    Ok((id, id, 0))
                }
                _ => Ok((0, 0, 0)),
            }
        }
        _ => Ok((0, 0, 0)),
    }
}

/// The flow of the packet quoted inside an ICMP error, if enough of it is.
fn quoted_flow(inner: &[u8]) -> Option<FlowKey> {
    if inner.len() < 20 || inner[0] >> 4 != 4 {
        return None;
    }
    let hl = usize::from(inner[0] & 0x0f) * 4;
    if hl < 20 || inner.len() < hl + 8 {
        return None;
    }
    let protocol = inner[9];
    let (src_port, dst_port, _) = ports(protocol, &inner[hl..]).ok().or(
        // ICMP errors quote only 8 bytes of the transport header: enough
        // for ports, not for a whole TCP header.
        if protocol == PROTO_TCP {
            Some((be16(inner, hl), be16(inner, hl + 2), 0))
        } else {
            None
        },
    )?;
    Some(FlowKey {
        protocol,
        src: addr(inner, 12),
        dst: addr(inner, 16),
        src_port,
        dst_port,
    })
}

/// Parses one datagram as an IPv4 packet.
pub fn parse(datagram: &[u8]) -> Result<Packet, Malformed> {
    let Some(&first) = datagram.first() else {
        return Err(Malformed::Empty);
    };
    let version = first >> 4;
    if version != 4 {
        return Err(Malformed::NotIpv4 { version });
    }
    if datagram.len() < 20 {
        return Err(Malformed::TruncatedHeader {
            datagram: datagram.len(),
        });
    }
    let ihl = first & 0x0f;
    if ihl < 5 {
        return Err(Malformed::BadHeaderLength { ihl });
    }
    let hl = usize::from(ihl) * 4;
    if hl > datagram.len() {
        return Err(Malformed::TruncatedHeader {
            datagram: datagram.len(),
        });
    }
    let total = be16(datagram, 2);
    if usize::from(total) < hl || usize::from(total) > datagram.len() {
        return Err(Malformed::BadTotalLength {
            total,
            datagram: datagram.len(),
        });
    }
    if !header_checksum_ok(&datagram[..hl]) {
        return Err(Malformed::BadChecksum);
    }
    let id = be16(datagram, 4);
    let frag = be16(datagram, 6);
    let more = frag & 0x2000 != 0;
    let offset = frag & 0x1fff;
    let fragment = match (offset, more) {
        (0, false) => Fragment::Whole,
        (0, true) => Fragment::First { id },
        _ => Fragment::Later { id },
    };
    let protocol = datagram[9];
    let src = addr(datagram, 12);
    let dst = addr(datagram, 16);
    let payload = &datagram[hl..usize::from(total)];
    let (src_port, dst_port, tcp_flags, icmp_error_of) = match fragment {
        Fragment::Later { .. } => (0, 0, 0, None),
        _ => {
            let (sp, dp, flags) = ports(protocol, payload)?;
            let quoted = if protocol == PROTO_ICMP && matches!(payload[0], 3 | 11 | 12) {
                quoted_flow(&payload[8..])
            } else {
                None
            };
            (sp, dp, flags, quoted)
        }
    };
    Ok(Packet {
        flow: FlowKey {
            protocol,
            src,
            dst,
            src_port,
            dst_port,
        },
        len: usize::from(total),
        tcp_flags,
        fragment,
        icmp_error_of,
    })
}

/// Builds an IPv4 header (with checksum) followed by `payload` — for tests
/// and the benchmark's probes.
pub fn build(
    protocol: u8,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    id: u16,
    frag: u16,
    payload: &[u8],
) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut p = vec![0u8; total];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    p[4..6].copy_from_slice(&id.to_be_bytes());
    p[6..8].copy_from_slice(&frag.to_be_bytes());
    p[8] = 64;
    p[9] = protocol;
    p[12..16].copy_from_slice(&src.octets());
    p[16..20].copy_from_slice(&dst.octets());
    let mut sum: u32 = 0;
    for c in p[..20].chunks_exact(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..].copy_from_slice(payload);
    p
}

/// A TCP header with ports and flags (no options, checksum left zero: the
/// fabric does not verify transport checksums).
pub fn tcp_header(src_port: u16, dst_port: u16, flags: u8) -> [u8; 20] {
    let mut h = [0u8; 20];
    h[0..2].copy_from_slice(&src_port.to_be_bytes());
    h[2..4].copy_from_slice(&dst_port.to_be_bytes());
    h[12] = 5 << 4;
    h[13] = flags;
    h
}

/// A UDP header with ports and the length of `payload_len` payload bytes.
pub fn udp_header(src_port: u16, dst_port: u16, payload_len: usize) -> [u8; 8] {
    let mut h = [0u8; 8];
    h[0..2].copy_from_slice(&src_port.to_be_bytes());
    h[2..4].copy_from_slice(&dst_port.to_be_bytes());
    h[4..6].copy_from_slice(&((8 + payload_len) as u16).to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn tcp(flags: u8) -> Vec<u8> {
        build(
            PROTO_TCP,
            ip("192.168.0.1"),
            ip("192.168.0.2"),
            7,
            0x4000,
            &tcp_header(40000, 10250, flags),
        )
    }

    #[test]
    fn parses_tcp_udp_icmp() {
        let p = parse(&tcp(TCP_SYN)).unwrap();
        assert_eq!(p.flow.protocol, PROTO_TCP);
        assert_eq!((p.flow.src_port, p.flow.dst_port), (40000, 10250));
        assert_eq!(p.tcp_flags, TCP_SYN);
        assert_eq!(p.fragment, Fragment::Whole);
        assert_eq!(p.len, 40);

        let u = build(
            PROTO_UDP,
            ip("172.16.0.5"),
            ip("172.16.1.10"),
            1,
            0,
            &udp_header(5353, 53, 0),
        );
        let p = parse(&u).unwrap();
        assert_eq!((p.flow.src_port, p.flow.dst_port), (5353, 53));

        // Echo request and reply are reversed keys of each other.
        let req = build(
            PROTO_ICMP,
            ip("192.168.0.1"),
            ip("192.168.0.2"),
            1,
            0,
            &[8, 0, 0, 0, 0x12, 0x34, 0, 1],
        );
        let rep = build(
            PROTO_ICMP,
            ip("192.168.0.2"),
            ip("192.168.0.1"),
            1,
            0,
            &[0, 0, 0, 0, 0x12, 0x34, 0, 1],
        );
        let (a, b) = (parse(&req).unwrap(), parse(&rep).unwrap());
        assert_eq!(a.flow.reversed(), b.flow);
        assert_eq!(a.flow.src_port, 0x1234);
    }

    #[test]
    fn icmp_error_quotes_the_offending_flow() {
        let quoted = build(
            PROTO_UDP,
            ip("192.168.0.1"),
            ip("192.168.0.2"),
            9,
            0,
            &udp_header(40000, 53, 0),
        );
        let mut payload = vec![3, 3, 0, 0, 0, 0, 0, 0];
        payload.extend_from_slice(&quoted);
        let err = build(
            PROTO_ICMP,
            ip("192.168.0.2"),
            ip("192.168.0.1"),
            2,
            0,
            &payload,
        );
        let p = parse(&err).unwrap();
        let q = p.icmp_error_of.unwrap();
        assert_eq!(
            (q.src, q.dst, q.dst_port),
            (ip("192.168.0.1"), ip("192.168.0.2"), 53)
        );
        // A TCP quote of only 8 bytes still yields ports.
        let mut t = tcp(TCP_SYN);
        t.truncate(28);
        let mut payload = vec![11, 0, 0, 0, 0, 0, 0, 0];
        payload.extend_from_slice(&t);
        let err = build(
            PROTO_ICMP,
            ip("10.0.0.1"),
            ip("192.168.0.1"),
            2,
            0,
            &payload,
        );
        assert_eq!(parse(&err).unwrap().icmp_error_of.unwrap().dst_port, 10250);
    }

    #[test]
    fn fragments() {
        let first = build(
            PROTO_UDP,
            ip("192.168.0.1"),
            ip("192.168.0.2"),
            77,
            0x2000,
            &udp_header(1, 2, 100),
        );
        assert_eq!(parse(&first).unwrap().fragment, Fragment::First { id: 77 });
        // A later fragment has no transport header: not malformed, no ports.
        let later = build(
            PROTO_UDP,
            ip("192.168.0.1"),
            ip("192.168.0.2"),
            77,
            185,
            &[1, 2, 3],
        );
        let p = parse(&later).unwrap();
        assert_eq!(p.fragment, Fragment::Later { id: 77 });
        assert_eq!((p.flow.src_port, p.flow.dst_port), (0, 0));
    }

    #[test]
    fn malformed_table() {
        let good = tcp(TCP_SYN);
        let mut bad_len = good.clone();
        bad_len[2..4].copy_from_slice(&2000u16.to_be_bytes());
        let mut short_total = good.clone();
        short_total[2..4].copy_from_slice(&10u16.to_be_bytes());
        let mut bad_ihl = good.clone();
        bad_ihl[0] = 0x43;
        let mut big_ihl = good.clone();
        big_ihl[0] = 0x4f;
        let mut bad_sum = good.clone();
        bad_sum[8] = 1;
        let truncated_tcp = build(
            PROTO_TCP,
            ip("192.168.0.1"),
            ip("192.168.0.2"),
            7,
            0,
            &[0; 12],
        );
        let mut v6 = vec![0x60u8];
        v6.extend_from_slice(&[0; 39]);
        let cases: Vec<(&str, Vec<u8>, Malformed)> = vec![
            ("empty", vec![], Malformed::Empty),
            ("ipv6", v6, Malformed::NotIpv4 { version: 6 }),
            (
                "garbage",
                vec![0x00, 1, 2],
                Malformed::NotIpv4 { version: 0 },
            ),
            (
                "truncated header",
                good[..12].to_vec(),
                Malformed::TruncatedHeader { datagram: 12 },
            ),
            ("ihl 3", bad_ihl, Malformed::BadHeaderLength { ihl: 3 }),
            (
                "ihl beyond datagram",
                big_ihl,
                Malformed::TruncatedHeader { datagram: 40 },
            ),
            (
                "total beyond datagram",
                bad_len,
                Malformed::BadTotalLength {
                    total: 2000,
                    datagram: 40,
                },
            ),
            (
                "total below header",
                short_total,
                Malformed::BadTotalLength {
                    total: 10,
                    datagram: 40,
                },
            ),
            ("checksum", bad_sum, Malformed::BadChecksum),
            (
                "truncated tcp",
                truncated_tcp,
                Malformed::TruncatedTransport {
                    protocol: PROTO_TCP,
                    have: 12,
                },
            ),
        ];
        for (name, dg, want) in cases {
            assert_eq!(parse(&dg), Err(want), "{name}");
            assert!(!want.to_string().is_empty());
        }
        // Trailing bytes beyond the total length are tolerated and cut off.
        let mut padded = good.clone();
        padded.extend_from_slice(&[0; 6]);
        assert_eq!(parse(&padded).unwrap().len, 40);
    }

    #[test]
    fn never_panics_on_any_prefix_or_bit_flip() {
        let good = tcp(TCP_SYN | TCP_FIN);
        for n in 0..=good.len() {
            let _ = parse(&good[..n]);
        }
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut b = good.clone();
                b[i] ^= 1 << bit;
                let _ = parse(&b);
            }
        }
    }
}
