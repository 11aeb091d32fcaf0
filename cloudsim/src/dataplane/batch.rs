//! Batched UDP I/O (`recvmmsg`/`sendmmsg`) over preallocated buffers: one
//! syscall moves up to [`BATCH`] datagrams, and no memory is allocated per
//! packet or per batch.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddrV4;
use std::os::fd::RawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg};

/// Datagrams per syscall.
pub const BATCH: usize = 64;

/// [`BATCH`] receive slots of `slot` bytes each.
pub struct RecvBatch {
    bufs: Vec<u8>,
    slot: usize,
    hdrs: MultiHeaders<SockaddrIn>,
    lens: [usize; BATCH],
    from: [Option<SocketAddrV4>; BATCH],
    truncated: [bool; BATCH],
    count: usize,
}

impl RecvBatch {
    pub fn new(slot: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![0; slot * BATCH],
            slot,
            hdrs: MultiHeaders::preallocate(BATCH, None),
            lens: [0; BATCH],
            from: [None; BATCH],
            truncated: [false; BATCH],
            count: 0,
        }
    }

    /// Receives what is queued on `fd` without blocking (up to [`BATCH`]
    /// datagrams); `WouldBlock` when nothing is.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.count = 0;
        let mut chunks = self.bufs.chunks_exact_mut(self.slot);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
            [IoSliceMut::new(
                chunks.next().expect("bufs holds BATCH slots"),
            )]
        });
        let res = recvmmsg(
            fd,
            &mut self.hdrs,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        let mut n = 0;
        for m in res {
            self.lens[n] = m.bytes;
            self.from[n] = m
                .address
                .map(|a: SockaddrIn| SocketAddrV4::new(a.ip(), a.port()));
            self.truncated[n] = m.flags.contains(MsgFlags::MSG_TRUNC);
            n += 1;
        }
        self.count = n;
        Ok(n)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Datagram `i` of the last receive: bytes, sender, whether it was cut
    /// to the slot size.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddrV4>, bool) {
        let start = i * self.slot;
        (
            &self.bufs[start..start + self.lens[i]],
            self.from[i],
            self.truncated[i],
        )
    }

    /// Mutable slot `i` (for filling from another source, e.g. a TUN).
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        let start = i * self.slot;
        &mut self.bufs[start..start + self.slot]
    }

    /// Marks slot `i` as holding `len` bytes (after [`Self::slot_mut`]).
    pub fn set_len(&mut self, i: usize, len: usize) {
        self.lens[i] = len;
        self.from[i] = None;
        self.truncated[i] = false;
        self.count = self.count.max(i + 1);
    }

    pub fn clear(&mut self) {
        self.count = 0;
    }

    pub fn slot_size(&self) -> usize {
        self.slot
    }
}

/// Reusable headers for [`send`].
pub struct SendHeaders(MultiHeaders<SockaddrIn>);

impl Default for SendHeaders {
    fn default() -> Self {
        SendHeaders(MultiHeaders::preallocate(BATCH, None))
    }
}

/// Sends `packets` (at most [`BATCH`]) with one `sendmmsg`, each to its
/// address (`None` on a connected socket). Returns how many were sent; a
/// full socket buffer is `WouldBlock` when none was.
pub fn send(
    hdrs: &mut SendHeaders,
    fd: RawFd,
    packets: &[(&[u8], Option<SocketAddrV4>)],
) -> io::Result<usize> {
    let n = packets.len().min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    let mut iovs: [[IoSlice<'_>; 1]; BATCH] = [[IoSlice::new(&[])]; BATCH];
    let mut addrs: [Option<SockaddrIn>; BATCH] = [None; BATCH];
    for (k, (p, a)) in packets[..n].iter().enumerate() {
        iovs[k] = [IoSlice::new(p)];
        addrs[k] = a.map(SockaddrIn::from);
    }
    let res = sendmmsg(
        fd,
        &mut hdrs.0,
        iovs[..n].iter(),
        &addrs[..n],
        [],
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    Ok(res.count())
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd as _;

    use super::*;

    #[test]
    fn batches_round_trip_over_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(to) = b.local_addr().unwrap() else {
            panic!()
        };
        let SocketAddr::V4(from) = a.local_addr().unwrap() else {
            panic!()
        };
        let payloads: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let mut hdrs = SendHeaders::default();
        let mut sent = 0;
        while sent < payloads.len() {
            let batch: Vec<(&[u8], Option<SocketAddrV4>)> = payloads[sent..]
                .iter()
                .map(|p| (p.as_slice(), Some(to)))
                .collect();
            sent += send(&mut hdrs, a.as_raw_fd(), &batch).unwrap();
        }
        let mut rb = RecvBatch::new(32);
        let mut got = Vec::new();
        for _ in 0..100 {
            if got.len() == payloads.len() {
                break;
            }
            match rb.recv(b.as_raw_fd()) {
                Ok(n) => {
                    for i in 0..n {
                        let (p, f, t) = rb.get(i);
                        assert_eq!(f, Some(from));
                        got.push((p.to_vec(), t));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got.len(), payloads.len());
        for (i, (p, truncated)) in got.iter().enumerate() {
            let want = &payloads[i];
            assert_eq!(*truncated, want.len() > 32, "{i}");
            assert_eq!(p.as_slice(), &want[..want.len().min(32)]);
        }
        assert_eq!(
            rb.recv(b.as_raw_fd()).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }

    use std::net::SocketAddr;
}
