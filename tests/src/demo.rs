//! The demo of DESIGN §1 as the tests expect it: which capabilities the encoders need on which
//! node, and what `troupe app` answers for `hello`.

/// The demo's capabilities per node (DESIGN §1): leader none, then morse+Caesar, then base64.
pub const MORSE_CAESAR: &str = "morse,Caesar cipher";
/// The base64 node's capability.
pub const BASE64: &str = "64bit encoder";
/// Every capability the encoders need: one node with these hosts all six actors.
pub const ALL_CAPS: &str = "morse,Caesar cipher,64bit encoder";

/// The four result lines of `troupe app` for `hello`, sorted.
pub fn hello_lines() -> Vec<String> {
    let mut v: Vec<String> = [
        "Encoder [density=1.000]  hello",
        "Base64Encoder [density=0.625]  aGVsbG8=",
        "MorseEncoder [density=0.250]  .... . .-.. .-.. ---",
        "Rot13Encoder [density=1.000]  uryyb",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.sort();
    v
}
