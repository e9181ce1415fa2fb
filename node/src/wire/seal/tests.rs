use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::*;
use crate::store::signing::Secret;
use crate::wire::noise::handshake_state;
use crate::wire::{codec, MAX_FRAME_BYTES};

const CHALLENGE: &[u8] = &[9; 32];

/// Both ends of a handshake done in memory: (client, node) transport states.
fn pair(
    client: &Secret,
    node: &Secret,
) -> Result<(StatelessTransportState, StatelessTransportState), String> {
    let mut i = handshake_state(client, CHALLENGE, true)?;
    let mut r = handshake_state(node, CHALLENGE, false)?;
    let (mut m1, mut m2, mut scratch) = ([0u8; 256], [0u8; 256], [0u8; 256]);
    let n1 = i.write_message(&[], &mut m1).map_err(|e| e.to_string())?;
    r.read_message(&m1[..n1], &mut scratch).map_err(|e| format!("node: {e}"))?;
    let n2 = r.write_message(&[], &mut m2).map_err(|e| e.to_string())?;
    i.read_message(&m2[..n2], &mut scratch).map_err(|e| format!("client: {e}"))?;
    Ok((i.into_stateless_transport_mode().unwrap(), r.into_stateless_transport_mode().unwrap()))
}

fn secret() -> Secret {
    Secret::from_bytes(b"a shared secret of the convention")
}

/// A client codec and a node codec, keyed by one handshake.
fn codecs() -> (SealedCodec, SealedCodec) {
    let (c, n) = pair(&secret(), &secret()).unwrap();
    let (mut a, mut b) = (SealedCodec::new(codec()), SealedCodec::new(codec()));
    a.set_max_frame_length(MAX_FRAME_BYTES);
    b.set_max_frame_length(MAX_FRAME_BYTES);
    a.start(c);
    b.start(n);
    (a, b)
}

fn body(len: usize) -> Bytes {
    Bytes::from((0..len).map(|i| (i * 31 + 7) as u8).collect::<Vec<u8>>())
}

#[test]
fn frames_of_every_size_round_trip_in_chunks_of_at_most_65535_bytes() {
    let (mut client, mut node) = codecs();
    for len in [0, 1, CHUNK_PLAIN - 4, CHUNK_PLAIN, CHUNK_PLAIN + 1, 65_519, 65_520, 3 * 1024 * 1024] {
        let mut wire = BytesMut::new();
        client.encode(body(len), &mut wire).unwrap();
        // Length prefix (4) in plaintext, then chunks: 2-byte head and 16-byte tag each.
        let chunks = (len + 4).div_ceil(CHUNK_PLAIN);
        assert_eq!(wire.len(), len + 4 + chunks * (HEAD + TAG_BYTES), "{len} bytes");
        if len >= 64 {
            let head = body(64);
            assert!(!wire.windows(64).any(|w| w == &head[..]), "plaintext on the wire");
        }
        // Fed a byte at a time for the small ones, whole for the rest.
        let got = if len < 100 {
            let mut got = None;
            let mut buf = BytesMut::new();
            for b in wire.iter() {
                buf.extend_from_slice(&[*b]);
                if let Some(f) = node.decode(&mut buf).unwrap() {
                    got = Some(f);
                }
            }
            got
        } else {
            node.decode(&mut wire).unwrap()
        };
        assert_eq!(got.expect("no frame").as_ref(), &body(len)[..], "{len} bytes");
    }
}

#[test]
fn a_flipped_byte_anywhere_fails_and_nothing_of_it_is_handed_on() {
    for at in [0, 1, 2, 10, 40] {
        let (mut client, mut node) = codecs();
        let mut wire = BytesMut::new();
        client.encode(body(30), &mut wire).unwrap();
        wire[at] ^= 0x01;
        let r = node.decode(&mut wire);
        assert!(r.is_err() || matches!(r, Ok(None)), "byte {at}: {r:?}");
        assert!(!matches!(r, Ok(Some(_))), "byte {at}: a forged frame was handed on");
    }
}

#[test]
fn a_replayed_or_reordered_chunk_fails() {
    let (mut client, mut node) = codecs();
    let (mut first, mut second) = (BytesMut::new(), BytesMut::new());
    client.encode(body(10), &mut first).unwrap();
    client.encode(body(20), &mut second).unwrap();
    // Out of order: the second chunk first.
    let mut wire = second.clone();
    assert!(node.decode(&mut wire).is_err(), "a chunk out of order opened");

    let (mut client, mut node) = codecs();
    let mut one = BytesMut::new();
    client.encode(body(10), &mut one).unwrap();
    let mut wire = one.clone();
    assert_eq!(node.decode(&mut wire).unwrap().unwrap().as_ref(), &body(10)[..]);
    let mut again = one.clone();
    assert!(node.decode(&mut again).is_err(), "a replayed chunk opened");
}

#[test]
fn another_secret_or_another_challenge_fails_the_handshake() {
    let other = Secret::from_bytes(b"another secret, not the convention's");
    assert!(pair(&secret(), &other).unwrap_err().starts_with("node:"));
    let mut i = handshake_state(&secret(), CHALLENGE, true).unwrap();
    let mut r = handshake_state(&secret(), &[8; 32], false).unwrap();
    let (mut m, mut scratch) = ([0u8; 256], [0u8; 256]);
    let n = i.write_message(&[], &mut m).unwrap();
    assert!(r.read_message(&m[..n], &mut scratch).is_err(), "a first message for another challenge verified");
}

#[test]
fn without_keys_the_codec_is_the_plain_frame_codec() {
    let mut plain = SealedCodec::new(codec());
    let mut wire = BytesMut::new();
    plain.encode(body(5), &mut wire).unwrap();
    assert_eq!(&wire[..], &[&[0, 0, 0, 5][..], &body(5)[..]].concat()[..]);
    assert!(!plain.is_sealed());
}

#[test]
fn the_outbox_way_seals_a_batch_that_the_codec_reads_frame_by_frame() {
    let (c, n) = pair(&secret(), &secret()).unwrap();
    let (mut sealer, _) = halves(c);
    let mut node = SealedCodec::new(codec());
    node.set_max_frame_length(MAX_FRAME_BYTES);
    node.start(n);
    let mut batch = Vec::new();
    for len in [3, 70_000, 0, 12] {
        batch.extend_from_slice(&(len as u32).to_be_bytes());
        batch.extend_from_slice(&body(len));
    }
    let mut wire = Vec::new();
    sealer.seal(&batch, &mut wire).unwrap();
    let mut wire = BytesMut::from(&wire[..]);
    for len in [3, 70_000, 0, 12] {
        assert_eq!(node.decode(&mut wire).unwrap().unwrap().len(), len);
    }
    assert!(node.decode(&mut wire).unwrap().is_none());
}
