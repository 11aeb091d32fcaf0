//! The DNS server: UDP and TCP on one address, answering from a [`Zone`]
//! snapshot that a feeder swaps in as Services and Endpoints change.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ackemu_base::clock::Clock;
use ackemu_base::tasks::Tasks;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, PTR, SRV};
use hickory_proto::rr::{Name, RData, Record as HRecord, RecordType};
use parking_lot::RwLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::zone::{Answer, QType, Record, TTL, Zone};

/// Shared, swappable zone snapshot.
#[derive(Clone)]
pub struct ZoneHandle(Arc<RwLock<Arc<Zone>>>);

impl ZoneHandle {
    /// A handle holding `zone`.
    pub fn new(zone: Zone) -> Self {
        ZoneHandle(Arc::new(RwLock::new(Arc::new(zone))))
    }
    /// Replace the snapshot.
    pub fn set(&self, zone: Zone) {
        *self.0.write() = Arc::new(zone);
    }
    /// The current snapshot.
    pub fn get(&self) -> Arc<Zone> {
        self.0.read().clone()
    }
}

/// Server options.
#[derive(Clone, Debug)]
pub struct Config {
    /// Resolvers for names outside the cluster domain (none in the VPC).
    pub upstreams: Vec<SocketAddr>,
    /// How long to wait for an upstream.
    pub upstream_timeout: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            upstreams: vec![],
            upstream_timeout: Duration::from_secs(2),
        }
    }
}

fn qtype(t: RecordType) -> QType {
    match t {
        RecordType::A => QType::A,
        RecordType::AAAA => QType::Aaaa,
        RecordType::SRV => QType::Srv,
        RecordType::PTR => QType::Ptr,
        RecordType::CNAME => QType::Cname,
        _ => QType::Other,
    }
}

fn to_record(owner: &Name, r: &Record) -> Option<HRecord> {
    let rdata = match r {
        Record::A(ip) => RData::A(A(*ip)),
        Record::Cname(t) => RData::CNAME(CNAME(Name::from_ascii(format!("{t}.")).ok()?)),
        Record::Srv(port, t) => RData::SRV(SRV::new(
            0,
            100,
            *port,
            Name::from_ascii(format!("{t}.")).ok()?,
        )),
        Record::Ptr(t) => RData::PTR(PTR(Name::from_ascii(format!("{t}.")).ok()?)),
    };
    Some(HRecord::from_rdata(owner.clone(), TTL, rdata))
}

fn formerr(query: &[u8]) -> Vec<u8> {
    let id = if query.len() >= 2 {
        u16::from_be_bytes([query[0], query[1]])
    } else {
        0
    };
    Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .unwrap_or_default()
}

/// Answer one DNS message (pure apart from upstream forwarding).
pub async fn handle(zone: &Zone, cfg: &Config, clock: &Clock, query: &[u8]) -> Vec<u8> {
    let Ok(req) = Message::from_vec(query) else {
        return formerr(query);
    };
    if req.metadata.message_type != MessageType::Query || req.queries.len() != 1 {
        return formerr(query);
    }
    let q = &req.queries[0];
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(q.clone());
    match zone.resolve(&q.name().to_ascii(), qtype(q.query_type())) {
        Answer::Records(recs) => {
            resp.metadata.authoritative = true;
            for r in &recs {
                if let Some(rec) = to_record(q.name(), r) {
                    resp.add_answer(rec);
                }
            }
        }
        Answer::NxDomain => {
            resp.metadata.authoritative = true;
            resp.metadata.response_code = ResponseCode::NXDomain;
        }
        Answer::NotAuthoritative => match forward(cfg, clock, query).await {
            Some(bytes) => return bytes,
            None => resp.metadata.response_code = ResponseCode::ServFail,
        },
    }
    resp.to_vec().unwrap_or_else(|_| formerr(query))
}

async fn forward(cfg: &Config, clock: &Clock, query: &[u8]) -> Option<Vec<u8>> {
    for up in &cfg.upstreams {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).await.ok()?;
        if sock.send_to(query, up).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) = clock
            .timeout(cfg.upstream_timeout, sock.recv_from(&mut buf))
            .await
        {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}

/// Serve DNS on `addr` (UDP and TCP) until the tasks are cancelled.
/// Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    zone: ZoneHandle,
    cfg: Config,
    tasks: &Tasks,
) -> std::io::Result<SocketAddr> {
    let udp = UdpSocket::bind(addr).await?;
    let bound = udp.local_addr()?;
    let tcp = TcpListener::bind(bound).await?;
    let clock = tasks.clock().clone();
    let token = tasks.token();
    {
        let (zone, cfg, clock, token) = (zone.clone(), cfg.clone(), clock.clone(), token.clone());
        tasks.spawn("dns/udp", async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let (n, peer) = tokio::select! {
                    r = udp.recv_from(&mut buf) => match r {
                        Ok(x) => x,
                        Err(e) => { tracing::warn!("dns udp recv: {e}"); continue; }
                    },
                    () = token.cancelled() => return,
                };
                let out = handle(&zone.get(), &cfg, &clock, &buf[..n]).await;
                if let Err(e) = udp.send_to(&out, peer).await {
                    tracing::warn!("dns udp send to {peer}: {e}");
                }
            }
        });
    }
    let t2 = tasks.clone();
    tasks.spawn("dns/tcp", async move {
        loop {
            let (mut conn, _) = tokio::select! {
                r = tcp.accept() => match r {
                    Ok(x) => x,
                    Err(e) => { tracing::warn!("dns tcp accept: {e}"); continue; }
                },
                () = token.cancelled() => return,
            };
            let (zone, cfg, clock) = (zone.clone(), cfg.clone(), clock.clone());
            t2.spawn("dns/tcp-conn", async move {
                loop {
                    let mut len = [0u8; 2];
                    if conn.read_exact(&mut len).await.is_err() {
                        return;
                    }
                    let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                    if conn.read_exact(&mut q).await.is_err() {
                        return;
                    }
                    let out = handle(&zone.get(), &cfg, &clock, &q).await;
                    let Ok(n) = u16::try_from(out.len()) else {
                        return;
                    };
                    if conn.write_all(&n.to_be_bytes()).await.is_err()
                        || conn.write_all(&out).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Ok(bound)
}
