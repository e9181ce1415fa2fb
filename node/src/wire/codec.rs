//! [`FrameCodec`]: the admin port's framing (a 4-byte big-endian length, then the body), with
//! a buffer that grows with the bytes that arrive.
//!
//! `tokio-util`'s `LengthDelimitedCodec` reads the same format, but reserves the whole length a
//! frame announces as soon as it has read the 4-byte head: a connection that announces a
//! 300 MiB frame and sends 10 bytes made the node reserve 300 MiB, and thousands of them could
//! exhaust its memory. This decoder reserves at most [`READ_AHEAD`] bytes beyond what it holds
//! per read, so a buffer is never much bigger than what actually arrived.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The most a decoder reserves ahead of the bytes it holds, per read.
pub const READ_AHEAD: usize = 64 * 1024;

/// The room a decoder keeps for the next read once bytes have arrived: without it the reader
/// grows the buffer one byte at a time and a burst of small frames costs a read each (B5 fell
/// from 0.36–0.52 M to 0.2 M msg/s). Small enough that a thousand connections hold 8 MiB.
const MIN_READ: usize = 8 * 1024;

/// Length of a frame's head.
const HEAD: usize = 4;

/// Length-delimited frames (4-byte big-endian length) of at most `max` bytes.
#[derive(Debug, Clone)]
pub struct FrameCodec {
    max: usize,
    /// The announced length of the frame being read, once its head is consumed.
    pending: Option<usize>,
    /// Where the count of bytes received is published (see [`FrameCodec::progress`]).
    progress: Option<Arc<AtomicUsize>>,
    /// Bytes left in the buffer after the last decode: what arrived since is the rest.
    held: usize,
}

impl FrameCodec {
    /// A codec accepting frames of at most `max` bytes.
    pub fn new(max: usize) -> FrameCodec {
        FrameCodec { max, pending: None, progress: None, held: 0 }
    }

    /// Publishes how many bytes have arrived so far, counted as each read is decoded: a count
    /// that only grows, and grows while a long frame is arriving, so that a reader waiting for a
    /// frame can tell a slow upload from silence. (It used to publish the bytes held of the
    /// frame being read, which falls back when a frame completes: a reader that compared it
    /// across a wait saw a change without any byte arriving, and waited the idle timeout
    /// twice, issue 21.)
    pub fn progress(mut self, counter: Arc<AtomicUsize>) -> FrameCodec {
        self.count_into(counter);
        self
    }

    /// As [`FrameCodec::progress`], on a codec already in use: bytes count from the next read
    /// on (a peer link counts what follows its handshake).
    pub fn count_into(&mut self, counter: Arc<AtomicUsize>) {
        self.progress = Some(counter);
    }

    /// The largest frame accepted.
    pub fn max_frame_length(&self) -> usize {
        self.max
    }

    /// Changes the largest frame accepted (after the handshake).
    pub fn set_max_frame_length(&mut self, max: usize) {
        self.max = max;
    }

    fn too_big(&self, len: usize) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame size too big: {len} bytes announced, the limit is {} bytes", self.max),
        )
    }
}

/// Makes sure `src` has room for `want` more bytes.
fn room(src: &mut BytesMut, want: usize) {
    if src.capacity() - src.len() < want {
        src.reserve(want);
    }
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        if let Some(p) = &self.progress {
            // Only this decoder takes bytes out of `src`: beyond what it left, they are new.
            p.fetch_add(src.len().saturating_sub(self.held), Ordering::Relaxed);
        }
        let frame = self.next_frame(src);
        self.held = src.len();
        frame
    }
}

impl FrameCodec {
    /// The next whole frame in `src`, if it holds one.
    fn next_frame(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, std::io::Error> {
        let len = match self.pending {
            Some(len) => len,
            None => {
                if src.len() < HEAD {
                    if !src.is_empty() {
                        room(src, MIN_READ);
                    }
                    return Ok(None);
                }
                let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
                if len > self.max {
                    return Err(self.too_big(len));
                }
                src.advance(HEAD);
                self.pending = Some(len);
                len
            }
        };
        if src.len() >= len {
            self.pending = None;
            return Ok(Some(src.split_to(len)));
        }
        // Room for what may come next, never for what is merely announced.
        room(src, (len - src.len()).clamp(MIN_READ, READ_AHEAD));
        Ok(None)
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = std::io::Error;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        if body.len() > self.max || body.len() > u32::MAX as usize {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("frame size too big: {} bytes, the limit is {} bytes", body.len(), self.max),
            ));
        }
        dst.reserve(HEAD + body.len());
        dst.put_u32(body.len() as u32);
        dst.extend_from_slice(&body);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(len: u32) -> BytesMut {
        BytesMut::from(&len.to_be_bytes()[..])
    }

    #[test]
    fn a_huge_announcement_reserves_only_what_may_arrive_next() {
        let mut codec = FrameCodec::new(300 * 1024 * 1024);
        let mut buf = head(300 * 1024 * 1024);
        buf.extend_from_slice(&[7u8; 10]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert!(buf.capacity() <= 2 * (READ_AHEAD + 16), "capacity {}", buf.capacity());
        // More bytes trickling in do not change that.
        for _ in 0..100 {
            buf.extend_from_slice(&[7u8; 10]);
            assert!(codec.decode(&mut buf).unwrap().is_none());
        }
        assert!(buf.capacity() <= 2 * (READ_AHEAD + 2048), "capacity {}", buf.capacity());
    }

    #[test]
    fn a_frame_split_across_many_reads_decodes_and_the_next_follows() {
        let mut codec = FrameCodec::new(1 << 20);
        let body: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut wire = BytesMut::new();
        codec.encode(Bytes::from(body.clone()), &mut wire).unwrap();
        codec.encode(Bytes::from_static(b"next"), &mut wire).unwrap();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in wire.chunks(1000) {
            buf.extend_from_slice(chunk);
            while let Some(f) = codec.decode(&mut buf).unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(&frames[0][..], &body[..]);
        assert_eq!(&frames[1][..], b"next");
        assert!(buf.is_empty());
    }

    #[test]
    fn progress_moves_while_a_frame_arrives() {
        let counter = Arc::new(AtomicUsize::new(0));
        let mut codec = FrameCodec::new(1 << 20).progress(counter.clone());
        let mut buf = head(1000);
        buf.extend_from_slice(&[0u8; 10]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(counter.load(Ordering::Relaxed), 14);
        buf.extend_from_slice(&[0u8; 30]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(counter.load(Ordering::Relaxed), 44);
        // The frame completes, and a decode with nothing new leaves the count where it was.
        buf.extend_from_slice(&[0u8; 960]);
        assert_eq!(codec.decode(&mut buf).unwrap().map(|f| f.len()), Some(1000));
        assert!(codec.decode(&mut buf).unwrap().is_none());
        assert_eq!(counter.load(Ordering::Relaxed), 1004, "every byte counted once, the head too");
    }

    #[test]
    fn oversize_is_refused_before_anything_is_reserved() {
        let mut codec = FrameCodec::new(16 * 1024);
        let mut buf = head(16 * 1024 + 1);
        let err = codec.decode(&mut buf).unwrap_err();
        assert!(err.to_string().contains("frame size too big"), "{err}");
        assert!(codec.encode(Bytes::from(vec![0u8; 16 * 1024 + 1]), &mut BytesMut::new()).is_err());
        // The largest allowed frame and an empty one decode.
        let mut wire = BytesMut::new();
        codec.encode(Bytes::from(vec![1u8; 16 * 1024]), &mut wire).unwrap();
        codec.encode(Bytes::new(), &mut wire).unwrap();
        assert_eq!(codec.decode(&mut wire).unwrap().map(|f| f.len()), Some(16 * 1024));
        assert_eq!(codec.decode(&mut wire).unwrap().map(|f| f.len()), Some(0));
    }

    #[test]
    fn the_wire_format_is_tokio_utils_length_delimited() {
        let mut ours = BytesMut::new();
        FrameCodec::new(1024).encode(Bytes::from_static(b"hello"), &mut ours).unwrap();
        let mut theirs = BytesMut::new();
        tokio_util::codec::LengthDelimitedCodec::new()
            .encode(Bytes::from_static(b"hello"), &mut theirs)
            .unwrap();
        assert_eq!(ours, theirs);
    }
}
