//! etcd clients name the server by its endpoint URL: etcdctl 3.4's
//! per-endpoint clients (`endpoint status|hashkv`, `alarm`, `defrag`) dial
//! grpc-go's `passthrough:///http://127.0.0.1:2379`, and grpc-go sends
//! `http://127.0.0.1:2379` as the HTTP/2 `:authority`. etcd's Go server
//! ignores the authority; h2 rejects it as malformed and resets the stream
//! with PROTOCOL_ERROR, so those commands failed against the store.
//!
//! [`AuthorityFix`] sits between the client port's socket and tonic. It reads
//! the connection's first request header block: when its `:authority` is a
//! valid authority (every client but these), the connection passes through
//! untouched from then on. When it is not, every header block of the
//! connection is decoded and encoded again (HPACK, one table pair per
//! connection) with the authority cut down to `host:port`, or left out when
//! nothing valid remains.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf as _, BufMut as _, BytesMut};
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The frame size every HTTP/2 peer accepts (SETTINGS_MAX_FRAME_SIZE's
/// initial value): re-encoded blocks are split at it.
const MAX_FRAME: usize = 16_384;
/// A header block larger than this closes the connection (h2's own limit
/// for header lists is 16 KiB; this is generous).
const MAX_BLOCK: usize = 1 << 20;

enum Mode {
    /// Waiting for the client preface.
    Preface,
    /// Frames until the first header block ends; the decoder tracks the
    /// client's table in case the connection needs rewriting.
    Undecided(Box<Codec>),
    /// Every header block is re-encoded.
    Rewrite(Box<Codec>),
    /// Bytes go through as they come.
    Passthrough,
}

struct Codec {
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

/// A header block being collected (HEADERS + CONTINUATION frames).
struct Block {
    stream_id: u32,
    end_stream: bool,
    fragment: Vec<u8>,
    /// The frames as received, for passing the block on unchanged.
    frames: Vec<u8>,
}

/// A client connection whose request authorities h2 accepts.
pub struct AuthorityFix<IO> {
    io: IO,
    /// Read from the socket, not yet looked at.
    raw: BytesMut,
    /// Ready for tonic.
    out: BytesMut,
    mode: Mode,
    block: Option<Block>,
}

impl<IO> AuthorityFix<IO> {
    pub fn new(io: IO) -> AuthorityFix<IO> {
        AuthorityFix {
            io,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            mode: Mode::Preface,
            block: None,
        }
    }

    /// Hands everything collected so far on unchanged and stops looking.
    fn pass_through(&mut self) {
        if let Some(b) = self.block.take() {
            self.out.extend_from_slice(&b.frames);
        }
        self.out.extend_from_slice(&self.raw.split());
        self.mode = Mode::Passthrough;
    }

    /// Moves whole frames from `raw` to `out`, rewriting header blocks.
    fn process(&mut self) -> io::Result<()> {
        loop {
            match self.mode {
                Mode::Passthrough => {
                    self.pass_through();
                    return Ok(());
                }
                Mode::Preface => {
                    if self.raw.len() < PREFACE.len() {
                        if !PREFACE.starts_with(&self.raw) {
                            self.pass_through();
                        }
                        return Ok(());
                    }
                    if &self.raw[..PREFACE.len()] != PREFACE {
                        // Not HTTP/2 with prior knowledge: h2 answers it.
                        self.pass_through();
                        return Ok(());
                    }
                    self.out
                        .extend_from_slice(&self.raw.split_to(PREFACE.len()));
                    self.mode = Mode::Undecided(Box::new(Codec {
                        decoder: Decoder::new(),
                        encoder: Encoder::new(),
                    }));
                }
                Mode::Undecided(_) | Mode::Rewrite(_) => {
                    if self.raw.len() < FRAME_HEADER {
                        return Ok(());
                    }
                    let len = (usize::from(self.raw[0]) << 16)
                        | (usize::from(self.raw[1]) << 8)
                        | usize::from(self.raw[2]);
                    if self.raw.len() < FRAME_HEADER + len {
                        return Ok(());
                    }
                    let frame = self.raw.split_to(FRAME_HEADER + len);
                    self.frame(&frame)?;
                }
            }
        }
    }

    fn frame(&mut self, frame: &[u8]) -> io::Result<()> {
        let (kind, flags) = (frame[3], frame[4]);
        let stream_id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[FRAME_HEADER..];
        if let Some(b) = self.block.as_mut() {
            if kind != CONTINUATION || stream_id != b.stream_id {
                // A protocol error of the client's: h2 reports it.
                self.out.extend_from_slice(&b.frames);
                self.block = None;
                self.out.extend_from_slice(frame);
                self.pass_through();
                return Ok(());
            }
            b.fragment.extend_from_slice(payload);
            b.frames.extend_from_slice(frame);
            if b.fragment.len() > MAX_BLOCK {
                return Err(invalid("header block larger than 1 MiB"));
            }
            if flags & END_HEADERS != 0 {
                return self.finish();
            }
            return Ok(());
        }
        if kind != HEADERS {
            self.out.extend_from_slice(frame);
            return Ok(());
        }
        let Some(fragment) = header_fragment(payload, flags) else {
            self.out.extend_from_slice(frame);
            self.pass_through();
            return Ok(());
        };
        self.block = Some(Block {
            stream_id,
            end_stream: flags & END_STREAM != 0,
            fragment: fragment.to_vec(),
            frames: frame.to_vec(),
        });
        if flags & END_HEADERS != 0 {
            return self.finish();
        }
        Ok(())
    }

    /// A whole header block has arrived.
    fn finish(&mut self) -> io::Result<()> {
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        let mode = std::mem::replace(&mut self.mode, Mode::Passthrough);
        let (mut codec, deciding) = match mode {
            Mode::Undecided(c) => (c, true),
            Mode::Rewrite(c) => (c, false),
            other => {
                self.mode = other;
                self.out.extend_from_slice(&block.frames);
                return Ok(());
            }
        };
        let headers = match codec.decoder.decode(&block.fragment) {
            Ok(h) => h,
            Err(e) if deciding => {
                // h2 will find the same fault and answer it.
                tracing::debug!("undecodable first header block: {e}");
                self.out.extend_from_slice(&block.frames);
                self.pass_through();
                return Ok(());
            }
            Err(e) => return Err(invalid(&format!("undecodable header block: {e}"))),
        };
        let authority = headers
            .iter()
            .find(|(n, _)| n.as_slice() == b":authority")
            .map(|(_, v)| v.as_slice());
        if deciding && authority.is_none_or(valid_authority) {
            self.out.extend_from_slice(&block.frames);
            self.pass_through();
            return Ok(());
        }
        if deciding {
            tracing::debug!(
                "client sends :authority {:?}: rewriting its header blocks",
                String::from_utf8_lossy(authority.unwrap_or_default())
            );
        }
        let fixed: Vec<(Vec<u8>, Vec<u8>)> = headers
            .into_iter()
            .filter_map(|(n, v)| {
                if n.as_slice() == b":authority" {
                    fixed_authority(&v).map(|v| (n, v))
                } else {
                    Some((n, v))
                }
            })
            .collect();
        let encoded = codec
            .encoder
            .encode(fixed.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        emit_block(&mut self.out, block.stream_id, block.end_stream, &encoded);
        self.mode = Mode::Rewrite(codec);
        Ok(())
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// A HEADERS frame's header block fragment (padding and priority removed);
/// `None` when the frame is malformed.
fn header_fragment(payload: &[u8], flags: u8) -> Option<&[u8]> {
    let mut p = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        pad = usize::from(*p.first()?);
        p = &p[1..];
    }
    if flags & PRIORITY != 0 {
        p = p.get(5..)?;
    }
    p.get(..p.len().checked_sub(pad)?)
}

/// HEADERS, then CONTINUATION frames as needed, carrying `block`.
fn emit_block(out: &mut BytesMut, stream_id: u32, end_stream: bool, block: &[u8]) {
    let mut chunks = block.chunks(MAX_FRAME).peekable();
    let mut first = true;
    if block.is_empty() {
        frame_header(
            out,
            0,
            HEADERS,
            END_HEADERS | u8::from(end_stream),
            stream_id,
        );
        return;
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        let (kind, mut flags) = if first {
            (HEADERS, if end_stream { END_STREAM } else { 0 })
        } else {
            (CONTINUATION, 0)
        };
        if last {
            flags |= END_HEADERS;
        }
        frame_header(out, chunk.len(), kind, flags, stream_id);
        out.extend_from_slice(chunk);
        first = false;
    }
}

fn frame_header(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream_id: u32) {
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream_id & 0x7fff_ffff);
}

fn valid_authority(v: &[u8]) -> bool {
    http::uri::Authority::try_from(v).is_ok()
}

/// The authority `v` means: itself when valid, else the `host:port` of a
/// URL (`http://127.0.0.1:2379` → `127.0.0.1:2379`); `None` when nothing
/// valid is left (a unix socket path).
fn fixed_authority(v: &[u8]) -> Option<Vec<u8>> {
    if valid_authority(v) {
        return Some(v.to_vec());
    }
    let s = std::str::from_utf8(v).ok()?;
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or("");
    (!host.is_empty() && valid_authority(host.as_bytes())).then(|| host.as_bytes().to_vec())
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFix<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.out.is_empty() {
                let n = buf.remaining().min(this.out.len());
                buf.put_slice(&this.out[..n]);
                this.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if matches!(this.mode, Mode::Passthrough) && this.raw.is_empty() {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
            if rb.filled().is_empty() {
                // End of stream: what is left goes on as it came, then EOF.
                if this.raw.is_empty() && this.block.is_none() {
                    return Poll::Ready(Ok(()));
                }
                this.pass_through();
                continue;
            }
            this.raw.extend_from_slice(rb.filled());
            this.process()?;
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFix<IO>
{
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    fn request(enc: &mut Encoder<'static>, stream_id: u32, authority: &[u8]) -> Vec<u8> {
        let block = enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.Maintenance/Status"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ]);
        let mut out = BytesMut::new();
        emit_block(&mut out, stream_id, false, &block);
        // A DATA frame after it passes unchanged.
        frame_header(&mut out, 5, 0x0, END_STREAM, stream_id);
        out.extend_from_slice(&[0, 0, 0, 0, 0]);
        out.to_vec()
    }

    fn settings() -> Vec<u8> {
        let mut out = BytesMut::new();
        frame_header(&mut out, 0, 0x4, 0, 0);
        out.to_vec()
    }

    /// What comes out of an [`AuthorityFix`] fed `input` in `chunk`-sized
    /// writes.
    async fn through(input: &[u8], chunk: usize) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut fix = AuthorityFix::new(server);
        for c in input.chunks(chunk) {
            client.write_all(c).await.unwrap();
        }
        drop(client);
        let mut out = Vec::new();
        fix.read_to_end(&mut out).await.unwrap();
        out
    }

    /// The header blocks of `bytes` (after the preface), decoded, and the
    /// other frames' types.
    type HeaderList = Vec<(Vec<u8>, Vec<u8>)>;

    fn frames(bytes: &[u8]) -> (Vec<HeaderList>, Vec<u8>) {
        assert!(bytes.starts_with(PREFACE));
        let mut rest = &bytes[PREFACE.len()..];
        let mut dec = Decoder::new();
        let (mut blocks, mut others, mut frag) = (Vec::new(), Vec::new(), Vec::new());
        while !rest.is_empty() {
            let len =
                (usize::from(rest[0]) << 16) | (usize::from(rest[1]) << 8) | usize::from(rest[2]);
            let (kind, flags) = (rest[3], rest[4]);
            let payload = &rest[FRAME_HEADER..FRAME_HEADER + len];
            match kind {
                HEADERS | CONTINUATION => {
                    frag.extend_from_slice(
                        header_fragment(payload, if kind == HEADERS { flags } else { 0 }).unwrap(),
                    );
                    if flags & END_HEADERS != 0 {
                        blocks.push(dec.decode(&frag).unwrap());
                        frag.clear();
                    }
                }
                k => others.push(k),
            }
            rest = &rest[FRAME_HEADER + len..];
        }
        (blocks, others)
    }

    fn authority(block: &[(Vec<u8>, Vec<u8>)]) -> Option<String> {
        block
            .iter()
            .find(|(n, _)| n == b":authority")
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    }

    #[tokio::test]
    async fn a_url_authority_becomes_host_and_port_on_every_request() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(settings());
        for id in [1, 3, 5] {
            // Later requests reference the client's table for the authority.
            input.extend(request(&mut enc, id, b"http://127.0.0.1:2379"));
        }
        for chunk in [1, 7, 1 << 16] {
            let out = through(&input, chunk).await;
            let (blocks, others) = frames(&out);
            assert_eq!(blocks.len(), 3, "chunk {chunk}");
            for b in &blocks {
                assert_eq!(authority(b).as_deref(), Some("127.0.0.1:2379"));
                assert_eq!(b[2].1, b"/etcdserverpb.Maintenance/Status");
            }
            assert_eq!(others, vec![0x4, 0x0, 0x0, 0x0], "SETTINGS and DATA pass");
        }
    }

    #[tokio::test]
    async fn a_valid_authority_passes_byte_for_byte() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(settings());
        input.extend(request(&mut enc, 1, b"127.0.0.1:2379"));
        input.extend(request(&mut enc, 3, b"127.0.0.1:2379"));
        assert_eq!(through(&input, 5).await, input);
        // Not HTTP/2 at all: passed on for h2 to refuse.
        assert_eq!(
            through(b"GET / HTTP/1.1\r\n\r\n", 3).await,
            b"GET / HTTP/1.1\r\n\r\n"
        );
    }

    #[tokio::test]
    async fn a_block_split_over_continuations_is_rewritten_and_split_again() {
        let mut enc = Encoder::new();
        let long = "x".repeat(40_000);
        let block = enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":authority", b"http://localhost:2379/"),
            (b"x-long", long.as_bytes()),
        ]);
        let mut input = PREFACE.to_vec();
        let mut framed = BytesMut::new();
        emit_block(&mut framed, 1, true, &block);
        input.extend_from_slice(&framed);
        let out = through(&input, 4096).await;
        let (blocks, _) = frames(&out);
        assert_eq!(blocks.len(), 1);
        assert_eq!(authority(&blocks[0]).as_deref(), Some("localhost:2379"));
        assert_eq!(blocks[0][2].1.len(), 40_000);
    }

    #[test]
    fn authorities() {
        assert_eq!(
            fixed_authority(b"127.0.0.1:2379").unwrap(),
            b"127.0.0.1:2379"
        );
        assert_eq!(
            fixed_authority(b"https://etcd-0:2379").unwrap(),
            b"etcd-0:2379"
        );
        assert_eq!(fixed_authority(b"/var/run/etcd.sock"), None);
        assert!(!valid_authority(b"http://127.0.0.1:2379"));
        assert_eq!(header_fragment(&[2, 9, 9, 0, 0], PADDED), Some(&[9, 9][..]));
        assert_eq!(header_fragment(&[9, 0], PADDED), None);
    }
}
