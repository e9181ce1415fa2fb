//! Sealed links: what travels once a connection's Noise handshake ([`super::noise`]) is done.
//!
//! The frames themselves do not change (a 4-byte big-endian length, then the msgpack body,
//! read by [`FrameCodec`]); with keys, that byte stream is cut into **chunks** of at most
//! [`CHUNK_PLAIN`] bytes, and each chunk travels as a 2-byte big-endian length and the chunk
//! sealed with ChaCha20-Poly1305 (a 16-byte tag: at most 65 535 bytes, a Noise transport
//! message). A frame of any size up to [`super::MAX_FRAME_BYTES`] spans as many chunks as it
//! needs; several small frames sealed together share one chunk (the peer links seal a corked
//! batch at once). Each direction numbers its chunks from 0 and the nonce is that number, so a
//! chunk that is altered, dropped, replayed or moved fails to open, and the connection ends.
//! Nothing is opened or handed on before its tag verified, and a reader never buffers more
//! than one chunk of unauthenticated bytes.
//!
//! [`Sealer`] and [`Opener`] each keep their own counter over one shared
//! [`snow::StatelessTransportState`], so the writing and the reading half of a link can live on
//! different tasks (the peer links seal in the outbox, under its mutex, so buffer order is
//! nonce order). [`SealedCodec`] puts both around a [`FrameCodec`] for `Framed` connections;
//! without keys it is the plain codec.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use snow::StatelessTransportState;
use tokio_util::codec::{Decoder, Encoder};

use super::codec::FrameCodec;

/// The AEAD tag on every chunk.
pub const TAG_BYTES: usize = 16;
/// The largest Noise transport message.
pub const MAX_CHUNK: usize = 65_535;
/// The most plaintext one chunk carries.
pub const CHUNK_PLAIN: usize = MAX_CHUNK - TAG_BYTES;
/// The length in front of every chunk.
const HEAD: usize = 2;

/// Why a chunk could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The tag did not verify: altered, replayed, reordered, or another key.
    #[error("a sealed chunk did not verify (altered, replayed or out of order): the link is closed")]
    Forged,
    /// A chunk shorter than its tag.
    #[error("a sealed chunk of {0} bytes is shorter than its tag")]
    Short(usize),
    /// 2^64 chunks on one connection.
    #[error("the link used up its nonces")]
    Exhausted,
}

impl From<SealError> for std::io::Error {
    fn from(e: SealError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// Buffers chunks are sealed into (`Vec<u8>` in the outbox, `BytesMut` in codecs).
pub trait SealBuf: std::ops::DerefMut<Target = [u8]> {
    /// Grows by `n` zeroed bytes; returns where they start.
    fn grow(&mut self, n: usize) -> usize;
    /// Truncates to `len` bytes.
    fn cut(&mut self, len: usize);
}

impl SealBuf for Vec<u8> {
    fn grow(&mut self, n: usize) -> usize {
        let at = self.len();
        self.resize(at + n, 0);
        at
    }
    fn cut(&mut self, len: usize) {
        self.truncate(len);
    }
}

impl SealBuf for BytesMut {
    fn grow(&mut self, n: usize) -> usize {
        let at = self.len();
        self.resize(at + n, 0);
        at
    }
    fn cut(&mut self, len: usize) {
        self.truncate(len);
    }
}

/// The keys of one connection, from its handshake: the two halves share them.
pub fn halves(state: StatelessTransportState) -> (Sealer, Opener) {
    let keys = Arc::new(state);
    (Sealer { keys: keys.clone(), nonce: 0 }, Opener { keys, nonce: 0 })
}

/// The writing half: seals bytes as chunks, numbering them.
pub struct Sealer {
    keys: Arc<StatelessTransportState>,
    nonce: u64,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealer(chunk {})", self.nonce)
    }
}

impl Sealer {
    /// Seals `plain` as chunks at the end of `out`.
    pub fn seal<B: SealBuf>(&mut self, plain: &[u8], out: &mut B) -> Result<(), SealError> {
        for chunk in plain.chunks(CHUNK_PLAIN) {
            let n = chunk.len() + TAG_BYTES;
            let start = out.len();
            let at = out.grow(HEAD + n);
            out[at..at + HEAD].copy_from_slice(&(n as u16).to_be_bytes());
            let sealed = (self.nonce != u64::MAX)
                .then(|| self.keys.write_message(self.nonce, chunk, &mut out[at + HEAD..]))
                .and_then(|r| r.ok());
            if sealed != Some(n) {
                out.cut(start);
                return Err(SealError::Exhausted);
            }
            self.nonce += 1;
        }
        Ok(())
    }
}

/// The reading half: opens chunks in order.
pub struct Opener {
    keys: Arc<StatelessTransportState>,
    nonce: u64,
}

impl std::fmt::Debug for Opener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opener(chunk {})", self.nonce)
    }
}

impl Opener {
    /// Opens every whole chunk at the front of `wire` (consuming it) onto the end of `plain`;
    /// a partial chunk stays in `wire`. Nothing of a chunk that does not verify is kept.
    pub fn open(&mut self, wire: &mut BytesMut, plain: &mut BytesMut) -> Result<(), SealError> {
        while wire.len() >= HEAD {
            let n = u16::from_be_bytes([wire[0], wire[1]]) as usize;
            if n < TAG_BYTES {
                return Err(SealError::Short(n));
            }
            if wire.len() < HEAD + n {
                wire.reserve(HEAD + n - wire.len());
                break;
            }
            let at = plain.grow(n - TAG_BYTES);
            let opened = self.keys.read_message(self.nonce, &wire[HEAD..HEAD + n], &mut plain[at..]);
            if opened.is_err() || self.nonce == u64::MAX {
                plain.truncate(at);
                return Err(SealError::Forged);
            }
            self.nonce += 1;
            wire.advance(HEAD + n);
        }
        Ok(())
    }
}

/// [`FrameCodec`], sealed once [`SealedCodec::start`] got the keys.
#[derive(Debug)]
pub struct SealedCodec {
    inner: FrameCodec,
    sealer: Option<Sealer>,
    opener: Option<Opener>,
    /// Opened bytes not yet decoded into frames.
    plain: BytesMut,
    /// A frame being encoded, before it is sealed.
    scratch: BytesMut,
}

impl SealedCodec {
    /// The plain codec: no keys yet.
    pub fn new(inner: FrameCodec) -> SealedCodec {
        SealedCodec { inner, sealer: None, opener: None, plain: BytesMut::new(), scratch: BytesMut::new() }
    }

    /// Everything from now on is sealed and opened.
    pub fn start(&mut self, state: StatelessTransportState) {
        let (sealer, opener) = halves(state);
        self.sealer = Some(sealer);
        self.opener = Some(opener);
    }

    /// Whether the link is sealed.
    pub fn is_sealed(&self) -> bool {
        self.opener.is_some()
    }

    /// The writing half, for a writer of its own (the peer links' outbox); this codec keeps
    /// reading.
    pub fn take_sealer(&mut self) -> Option<Sealer> {
        self.sealer.take()
    }

    /// The largest frame accepted.
    pub fn max_frame_length(&self) -> usize {
        self.inner.max_frame_length()
    }

    /// Changes the largest frame accepted (after the handshake).
    pub fn set_max_frame_length(&mut self, max: usize) {
        self.inner.set_max_frame_length(max);
    }

    /// Publishes the bytes received from now on (see [`FrameCodec::count_into`]).
    pub fn count_into(&mut self, counter: std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        self.inner.count_into(counter);
    }
}

impl Decoder for SealedCodec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        let Some(opener) = &mut self.opener else {
            return self.inner.decode(src);
        };
        opener.open(src, &mut self.plain)?;
        self.inner.decode(&mut self.plain)
    }
}

impl Encoder<Bytes> for SealedCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        let Some(sealer) = &mut self.sealer else {
            return self.inner.encode(item, dst);
        };
        self.scratch.clear();
        self.inner.encode(item, &mut self.scratch)?;
        sealer.seal(&self.scratch, dst)?;
        if self.scratch.capacity() > 1 << 20 {
            self.scratch = BytesMut::new();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
