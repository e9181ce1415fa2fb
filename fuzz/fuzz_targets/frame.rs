//! The admin port's input before and after the handshake: a frame body decoded as a
//! `ClientFrame` (what the server does with every frame), and the hello checked the way the
//! server checks it against a secret. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use troupe_node::protocol::{decode, ClientFrame, NONCE_BYTES};
use troupe_node::signing::Secret;

fuzz_target!(|data: &[u8]| {
    if let Ok(ClientFrame::Hello { auth: Some(a), .. }) = decode::<ClientFrame>(data) {
        let secret = Secret::from_bytes(b"fuzzing secret, 32 bytes long!!!");
        let nonce = [7u8; NONCE_BYTES];
        let _ = a.client_nonce.len() == NONCE_BYTES
            && secret.verify(&[b"client", &nonce, &a.client_nonce], &a.mac);
    }
    let _ = decode::<troupe_node::protocol::ServerFrame>(data);
});
