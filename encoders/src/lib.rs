//! # troupe-encoders
//!
//! The demo actors every user runs first (`DESIGN.md` §1), imitating act 6 of Thespian's
//! multi-system tutorial (`reference/thespian-behaviour.md` §7) — minus its bugs.
//!
//! - **`app.Acceptor`** — the front door. A client sends it plain text; it answers the
//!   sender with [`Expect`] (the encoder names about to be used), then sends [`EncodeThis`] to
//!   each of its four encoders. It keeps one `app.Analyzer` and one slot per encoder: an empty
//!   slot is (re-)created on the next request; the Analyzer is supervised (created with a
//!   restart policy, [`ANALYZER_RESTARTS`]), so the runtime re-creates it when it fails and
//!   the Acceptor only follows its address. A message
//!   to an encoder that could not be created (or whose handler failed twice) comes back as a
//!   `PoisonMessage`; the Acceptor turns it into [`Failed`] for the client who asked.
//! - **`app.Analyzer`** — receives [`Encoded`] from the encoders and sends the requester one
//!   line per encoder, `"<EncoderName> [density=<d>]  <encoded>"` (see [`result_line`]).
//! - **`encoder.Encoder`** — the identity ([`encode_identity`]); in the `v2` build, the text
//!   reversed, so that two loaded versions are visibly different.
//! - **`encoder.Base64Encoder`** (requires `64bit encoder`) — standard padded base64 of the
//!   UTF-8 bytes ([`encode_base64`]).
//! - **`encoder.Rot13Encoder`** (requires `Caesar cipher`) — ROT13 of ASCII letters
//!   ([`encode_rot13`]).
//! - **`morse.MorseEncoder`** (requires `morse`) — international Morse ([`encode_morse`]).
//!
//! The node places each encoder on a node that has the capabilities its type declares. The
//! CLI (`troupe app`) mirrors the two `app/…` message types; keep their tags and field names.
//!
//! This source is also built as `troupe-encoders-v2` (`tests/plugins/encoders-v2`), with the
//! `v2` feature on, to test two versions side by side.

use serde::{Deserialize, Serialize};
use std::time::Duration;
use troupe_actor_abi::prelude::*;

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------

/// Acceptor → requester, before any work is dispatched: the encoders whose results to expect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expect {
    /// Encoder names, in [`ENCODERS`] order.
    pub encoders: Vec<String>,
}
impl Typed for Expect {
    const TAG: &'static str = "app/Expect";
}

/// Acceptor → requester: one encoder could not do its work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Failed {
    /// The encoder's name, e.g. `Base64Encoder`.
    pub encoder: String,
    /// Why, as the node explained it (e.g. `NoCompatibleSystemForActor: …`).
    pub reason: String,
}
impl Typed for Failed {
    const TAG: &'static str = "app/Failed";
}

/// Acceptor → encoder: one piece of work.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncodeThis {
    /// The text to encode.
    pub raw: String,
    /// The name of the encoder it is meant for, so that a poisoned copy says whose it was.
    pub encoder: String,
    /// Who gets the result line.
    pub requester: Address,
    /// Where the encoder sends its [`Encoded`].
    pub analyzer: Address,
}
impl Typed for EncodeThis {
    const TAG: &'static str = "encoders/EncodeThis";
}

/// Encoder → analyzer: one result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Encoded {
    /// The text that was encoded.
    pub raw: String,
    /// The encoder's name.
    pub encoder: String,
    /// The encoding.
    pub encoded: String,
    /// Who gets the result line.
    pub requester: Address,
}
impl Typed for Encoded {
    const TAG: &'static str = "encoders/Encoded";
}

// ---------------------------------------------------------------------------------------------
// Pure encoders
// ---------------------------------------------------------------------------------------------

/// The encoders the Acceptor uses, as `(name, module.Type)`, in the order of [`Expect`].
pub const ENCODERS: [(&str, &str); 4] = [
    ("Encoder", "encoder.Encoder"),
    ("Base64Encoder", "encoder.Base64Encoder"),
    ("MorseEncoder", "morse.MorseEncoder"),
    ("Rot13Encoder", "encoder.Rot13Encoder"),
];

/// `Encoder`: the identity (v1), or the text reversed by chars (v2).
pub fn encode_identity(raw: &str) -> String {
    if cfg!(feature = "v2") {
        raw.chars().rev().collect()
    } else {
        raw.to_string()
    }
}

/// `Base64Encoder`: standard, padded base64 of the UTF-8 bytes, as text.
pub fn encode_base64(raw: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(raw.as_bytes())
}

/// `Rot13Encoder`: rotates ASCII letters by 13; everything else is kept.
pub fn encode_rot13(raw: &str) -> String {
    raw.chars()
        .map(|c| match c {
            'a'..='z' => rotate(c, b'a'),
            'A'..='Z' => rotate(c, b'A'),
            _ => c,
        })
        .collect()
}

fn rotate(c: char, base: u8) -> char {
    // `c` is an ASCII letter at or above `base`, so the arithmetic stays within u8.
    char::from((c as u8 - base + 13) % 26 + base)
}

/// What a space becomes in Morse: four spaces, so that words end up six spaces apart once
/// tokens are joined with single spaces (Thespian's output, kept for familiarity).
const MORSE_WORD_GAP: &str = "    ";

/// International Morse for an upper-case ASCII letter or digit.
fn morse_symbol(c: char) -> Option<&'static str> {
    Some(match c {
        'A' => ".-",
        'B' => "-...",
        'C' => "-.-.",
        'D' => "-..",
        'E' => ".",
        'F' => "..-.",
        'G' => "--.",
        'H' => "....",
        'I' => "..",
        'J' => ".---",
        // Thespian's table says `-.-.` (a copy of C); this is the real one.
        'K' => "-.-",
        'L' => ".-..",
        'M' => "--",
        'N' => "-.",
        'O' => "---",
        'P' => ".--.",
        'Q' => "--.-",
        'R' => ".-.",
        'S' => "...",
        'T' => "-",
        'U' => "..-",
        'V' => "...-",
        'W' => ".--",
        'X' => "-..-",
        'Y' => "-.--",
        'Z' => "--..",
        '0' => "-----",
        '1' => ".----",
        '2' => "..---",
        '3' => "...--",
        '4' => "....-",
        '5' => ".....",
        '6' => "-....",
        '7' => "--...",
        '8' => "---..",
        '9' => "----.",
        ' ' => MORSE_WORD_GAP,
        _ => return None,
    })
}

/// `MorseEncoder`: upper-cases ASCII, maps A–Z and 0–9 with the international table and a space
/// to a four-space token, drops anything else, and joins the tokens with single spaces.
pub fn encode_morse(raw: &str) -> String {
    raw.chars().filter_map(|c| morse_symbol(c.to_ascii_uppercase())).collect::<Vec<_>>().join(" ")
}

/// The line the Analyzer sends: `"<encoder> [density=<d>]  <encoded>"` with two spaces before
/// the encoded text, `d` = chars(raw) / chars(encoded) with three decimals, or `inf` when the
/// encoding is empty.
pub fn result_line(encoder: &str, raw: &str, encoded: &str) -> String {
    let (n_raw, n_enc) = (raw.chars().count(), encoded.chars().count());
    let density = if n_enc == 0 { "inf".to_string() } else { format!("{:.3}", n_raw as f64 / n_enc as f64) };
    format!("{encoder} [density={density}]  {encoded}")
}

// ---------------------------------------------------------------------------------------------
// Actors
// ---------------------------------------------------------------------------------------------

/// `app.Acceptor`: see the crate docs.
pub struct Acceptor {
    analyzer: Option<Address>,
    /// One slot per entry of [`ENCODERS`], same order.
    encoders: [Option<Address>; 4],
    /// Per encoder slot, the requesters it was recently given work for. If the encoder is lost
    /// (its node died), they are told at once instead of waiting for their timeout. Whoever
    /// already got the line ignores the late notice.
    recent: [std::collections::VecDeque<Address>; 4],
}

/// How many recent requesters per encoder are remembered for loss notices: enough for every
/// request in flight at once in the demo and the tests, small enough to cost nothing.
const RECENT_REQUESTERS: usize = 64;

/// How the runtime restarts the Analyzer when it fails (its handler fails twice on one
/// message, its constructor fails, or its node is lost): up to 5 times a minute, after 50 ms,
/// then twice as long each time, at most 2 s. An Analyzer given up on, or stopped on purpose,
/// is created again on the next request.
pub const ANALYZER_RESTARTS: (u32, Duration, Duration, Duration) =
    (5, Duration::from_secs(60), Duration::from_millis(50), Duration::from_secs(2));

impl Acceptor {
    fn analyzer(&mut self, ctx: &mut Context) -> ActorResult<Address> {
        if let Some(a) = &self.analyzer {
            return Ok(a.clone());
        }
        let (max, within, first, longest) = ANALYZER_RESTARTS;
        let policy = RestartPolicy::on_failure(max, within).backoff(first, longest);
        let spec = CreateSpec { type_name: "app.Analyzer".into(), ..CreateSpec::default() };
        let a = ctx.create_supervised(spec, policy)?;
        self.analyzer = Some(a.clone());
        Ok(a)
    }

    fn on_request(&mut self, ctx: &mut Context, requester: Address, raw: &str) -> ActorResult {
        let analyzer = self.analyzer(ctx)?;
        let mut targets = Vec::with_capacity(ENCODERS.len());
        for (slot, (name, type_name)) in self.encoders.iter_mut().zip(ENCODERS) {
            let addr = match slot {
                Some(a) => a.clone(),
                None => match ctx.create(type_name) {
                    Ok(a) => slot.insert(a).clone(),
                    // The node refused at once (it usually answers later, by ChildActorExited).
                    Err(e) => {
                        targets.push((name, Err(e.message().to_string())));
                        continue;
                    }
                },
            };
            targets.push((name, Ok(addr)));
        }
        let expect = Expect { encoders: ENCODERS.iter().map(|(n, _)| n.to_string()).collect() };
        ctx.send(&requester, &expect);
        for (name, target) in targets {
            match target {
                Ok(addr) => {
                    if let Some(i) = ENCODERS.iter().position(|(n, _)| *n == name) {
                        let recent = &mut self.recent[i];
                        recent.retain(|r| *r != requester);
                        recent.push_back(requester.clone());
                        while recent.len() > RECENT_REQUESTERS {
                            recent.pop_front();
                        }
                    }
                    let work = EncodeThis {
                        raw: raw.to_string(),
                        encoder: name.to_string(),
                        requester: requester.clone(),
                        analyzer: analyzer.clone(),
                    };
                    ctx.send(&addr, &work);
                }
                Err(reason) => {
                    ctx.send(&requester, &Failed { encoder: name.to_string(), reason });
                }
            }
        }
        Ok(())
    }

    fn on_child_exited(&mut self, ctx: &mut Context, child: &Address, reason: &ExitReason) -> ActorResult {
        if self.analyzer.as_ref() == Some(child) {
            // The runtime restarted it as long as its policy allowed (see `ANALYZER_RESTARTS`);
            // this is the end of it: the next request creates a new one.
            self.analyzer = None;
            ctx.log(
                log_level::WARN,
                &format!("Analyzer {child} {reason}; created again on the next request"),
            );
            return Ok(());
        }
        for (i, (slot, (name, _))) in self.encoders.iter_mut().zip(ENCODERS).enumerate() {
            if slot.as_ref() == Some(child) {
                *slot = None;
                ctx.log(log_level::WARN, &format!("{name} {child} {reason}; re-created on the next request"));
                if let ExitReason::NodeLost { .. } = reason {
                    // Work sent to it may be lost with its node: tell who was waiting.
                    for requester in std::mem::take(&mut self.recent[i]) {
                        let failed = Failed { encoder: name.to_string(), reason: format!("{name} {reason}") };
                        ctx.send(&requester, &failed);
                    }
                } else {
                    self.recent[i].clear();
                }
            }
        }
        Ok(())
    }
}

impl Actor for Acceptor {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Acceptor { analyzer: None, encoders: Default::default(), recent: Default::default() })
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let Some(raw) = msg.text() {
            // A text without a sender has nobody to answer to.
            if let Some(requester) = msg.sender() {
                return self.on_request(ctx, requester.clone(), raw);
            }
            return Ok(());
        }
        match msg.system() {
            Some(SystemMessage::ChildActorExited { child, reason }) => {
                self.on_child_exited(ctx, child, reason)
            }
            Some(SystemMessage::ChildActorRestarted { child, previous, reason, restarts }) => {
                // The supervised Analyzer, created again by the runtime: follow its address.
                if self.analyzer.as_ref() == Some(previous) {
                    self.analyzer = Some(child.clone());
                }
                ctx.log(
                    log_level::WARN,
                    &format!("Analyzer {previous} {reason}; restarted as {child} ({restarts})"),
                );
                Ok(())
            }
            Some(SystemMessage::PoisonMessage { message, target, details }) => {
                match decode_payload::<EncodeThis>(message) {
                    Some(Ok(work)) => {
                        ctx.log(log_level::WARN, &format!("{} ({target}) failed: {details}", work.encoder));
                        let failed = Failed { encoder: work.encoder, reason: details.clone() };
                        ctx.send(&work.requester, &failed);
                    }
                    _ => ctx.log(log_level::WARN, &format!("a message to {target} came back: {details}")),
                }
                Ok(())
            }
            // An exit request needs nothing: the node stops our children with us, and a
            // requested exit is never restarted.
            _ => Ok(()),
        }
    }
}

/// `app.Analyzer`: turns each [`Encoded`] into a [`result_line`] for its requester.
pub struct Analyzer;

impl Actor for Analyzer {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Analyzer)
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let Some(done) = msg.decode::<Encoded>() {
            let done = done?;
            ctx.send_text(&done.requester, &result_line(&done.encoder, &done.raw, &done.encoded));
        }
        Ok(())
    }
}

/// Does one encoder's job: answers an [`EncodeThis`] with an [`Encoded`] to the analyzer.
fn encode_request(ctx: &mut Context, msg: &Message, name: &str, encode: fn(&str) -> String) -> ActorResult {
    if let Some(work) = msg.decode::<EncodeThis>() {
        let work = work?;
        let done = Encoded {
            encoded: encode(&work.raw),
            raw: work.raw,
            encoder: name.to_string(),
            requester: work.requester,
        };
        ctx.send(&work.analyzer, &done);
    }
    Ok(())
}

/// Declares an encoder actor type: a unit struct that applies `$encode` under the name `$name`.
macro_rules! encoder_actor {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $encode:path) => {
        $(#[$doc])*
        pub struct $ty;

        impl Actor for $ty {
            fn create(_ctx: &mut Context) -> ActorResult<Self> {
                Ok($ty)
            }

            fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
                encode_request(ctx, &msg, $name, $encode)
            }
        }
    };
}

encoder_actor!(
    /// `encoder.Encoder`: see [`encode_identity`].
    Encoder,
    "Encoder",
    encode_identity
);
encoder_actor!(
    /// `encoder.Base64Encoder`: see [`encode_base64`].
    Base64Encoder,
    "Base64Encoder",
    encode_base64
);
encoder_actor!(
    /// `encoder.Rot13Encoder`: see [`encode_rot13`].
    Rot13Encoder,
    "Rot13Encoder",
    encode_rot13
);
encoder_actor!(
    /// `morse.MorseEncoder`: see [`encode_morse`].
    MorseEncoder,
    "MorseEncoder",
    encode_morse
);

troupe_actor_abi::export_plugin!(actors: [
    "app.Acceptor" => Acceptor,
    "app.Analyzer" => Analyzer,
    "encoder.Encoder" => Encoder,
    "encoder.Base64Encoder" => Base64Encoder requires ["64bit encoder"],
    "encoder.Rot13Encoder" => Rot13Encoder requires ["Caesar cipher"],
    "morse.MorseEncoder" => MorseEncoder requires ["morse"],
]);

#[cfg(test)]
mod tests {
    use super::*;

    /// The four lines for `raw`, in [`ENCODERS`] order.
    fn lines(raw: &str) -> Vec<String> {
        vec![
            result_line("Encoder", raw, &encode_identity(raw)),
            result_line("Base64Encoder", raw, &encode_base64(raw)),
            result_line("MorseEncoder", raw, &encode_morse(raw)),
            result_line("Rot13Encoder", raw, &encode_rot13(raw)),
        ]
    }

    #[cfg(not(feature = "v2"))]
    #[test]
    fn hello_prints_the_demo_lines() {
        assert_eq!(
            lines("hello"),
            [
                "Encoder [density=1.000]  hello",
                "Base64Encoder [density=0.625]  aGVsbG8=",
                "MorseEncoder [density=0.250]  .... . .-.. .-.. ---",
                "Rot13Encoder [density=1.000]  uryyb",
            ]
        );
    }

    #[cfg(feature = "v2")]
    #[test]
    fn v2_encoder_reverses() {
        assert_eq!(encode_identity("hello"), "olleh");
        assert_eq!(encode_identity("añb"), "bña");
        assert_eq!(lines("hello")[0], "Encoder [density=1.000]  olleh");
    }

    #[test]
    fn punctuation_and_real_k() {
        let raw = "Hello, World! K k";
        assert_eq!(encode_morse(raw), ".... . .-.. .-.. ---      .-- --- .-. .-.. -..      -.-      -.-");
        assert_eq!(encode_rot13(raw), "Uryyb, Jbeyq! X x");
        assert_eq!(encode_base64(raw), "SGVsbG8sIFdvcmxkISBLIGs=");
        assert_eq!(lines(raw)[1], "Base64Encoder [density=0.708]  SGVsbG8sIFdvcmxkISBLIGs=");
        // 17 chars over 64 chars of Morse.
        assert_eq!(lines(raw)[2], format!("MorseEncoder [density=0.266]  {}", encode_morse(raw)));
    }

    #[test]
    fn test_and_sos() {
        assert_eq!(encode_morse("test"), "- . ... -");
        assert_eq!(encode_base64("test"), "dGVzdA==");
        assert_eq!(encode_rot13("test"), "grfg");
        let l = lines("test");
        assert_eq!(l[1], "Base64Encoder [density=0.500]  dGVzdA==");
        assert_eq!(l[2], "MorseEncoder [density=0.444]  - . ... -");

        assert_eq!(encode_morse("sos"), "... --- ...");
        assert_eq!(encode_base64("sos"), "c29z");
        assert_eq!(encode_rot13("sos"), "fbf");
        let l = lines("sos");
        assert_eq!(l[1], "Base64Encoder [density=0.750]  c29z");
        assert_eq!(l[2], "MorseEncoder [density=0.273]  ... --- ...");
    }

    #[test]
    fn digits() {
        assert_eq!(encode_morse("0123456789"), "----- .---- ..--- ...-- ....- ..... -.... --... ---.. ----.");
        assert_eq!(encode_rot13("a1z9"), "n1m9");
        assert_eq!(encode_base64("2024"), "MjAyNA==");
    }

    #[test]
    fn the_whole_alphabet() {
        assert_eq!(
            encode_morse("abcdefghijklmnopqrstuvwxyz"),
            ".- -... -.-. -.. . ..-. --. .... .. .--- -.- .-.. -- -. --- .--. --.- .-. ... - ..- ...- .-- -..- -.-- --.."
        );
        assert_eq!(
            encode_rot13("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
            "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM"
        );
    }

    #[test]
    fn several_spaces() {
        // Each space is its own four-space token: two spaces give 1 + 4 + 1 + 4 + 1 = 11.
        assert_eq!(encode_morse("a  b"), format!(".-{}-...", " ".repeat(11)));
        assert_eq!(encode_morse(" e "), "     .     ");
        assert_eq!(encode_rot13("a  b"), "n  o");
        assert_eq!(encode_base64("  "), "ICA=");
    }

    #[test]
    fn non_ascii() {
        // Dropped by Morse (no table entry; `ß` does not turn into `SS`), kept by ROT13, encoded
        // as UTF-8 by base64.
        assert_eq!(encode_morse("éße"), ".");
        assert_eq!(encode_rot13("héllo"), "uéyyb");
        assert_eq!(encode_base64("é"), "w6k=");
        assert_eq!(result_line("Encoder", "é", "é"), "Encoder [density=1.000]  é");
    }

    #[test]
    fn empty_string() {
        assert_eq!(encode_identity(""), "");
        assert_eq!(encode_base64(""), "");
        assert_eq!(encode_morse(""), "");
        assert_eq!(encode_rot13(""), "");
        assert!(lines("").iter().all(|l| l.contains("[density=inf]  ")), "{:?}", lines(""));
        assert_eq!(result_line("MorseEncoder", "!?", ""), "MorseEncoder [density=inf]  ");
    }

    #[test]
    fn messages_round_trip_with_their_tags() {
        let a = Address { node: "127.0.0.1:1900".into(), id: 3 };
        let work = EncodeThis {
            raw: "hi".into(),
            encoder: "Base64Encoder".into(),
            requester: a.clone(),
            analyzer: a,
        };
        let p = work.to_payload();
        assert!(matches!(&p, Payload::Typed { tag, .. } if tag == "encoders/EncodeThis"));
        assert_eq!(decode_payload::<EncodeThis>(&p).map(|r| r.ok()), Some(Some(work)));
        assert!(decode_payload::<Encoded>(&p).is_none());
        assert_eq!(Expect::TAG, "app/Expect");
        assert_eq!(Failed::TAG, "app/Failed");
    }
}
