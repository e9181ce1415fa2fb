//! The typed messages of the bench actors. `troupe-bench` compiles this same file (as a
//! `#[path]` module) to send and read them, so the two sides cannot drift apart.

use serde::{Deserialize, Serialize};
use troupe_actor_abi::prelude::{Address, Typed};

/// The measured message.
#[derive(Serialize, Deserialize)]
pub struct Tick {
    /// A sequence number (keeps the body non-empty and realistic).
    pub n: u64,
}
impl Typed for Tick {
    const TAG: &'static str = "bench/Tick";
}

/// To a Sink: answer [`Done`] to `reply_to` once `total` ticks have arrived (counting those
/// already received).
#[derive(Serialize, Deserialize)]
pub struct Expect {
    /// How many ticks in all.
    pub total: u64,
    /// Who gets the [`Done`].
    pub reply_to: Address,
}
impl Typed for Expect {
    const TAG: &'static str = "bench/Expect";
}

/// A count reached.
#[derive(Serialize, Deserialize)]
pub struct Done {
    /// The count.
    pub count: u64,
}
impl Typed for Done {
    const TAG: &'static str = "bench/Done";
}

/// To a Source: send `n` ticks to `target`.
#[derive(Serialize, Deserialize)]
pub struct Blast {
    /// How many.
    pub n: u64,
    /// To whom.
    pub target: Address,
}
impl Typed for Blast {
    const TAG: &'static str = "bench/Blast";
}

/// To a Pinger: do `n` round trips with `target`, then answer [`PingStats`] to the sender.
#[derive(Serialize, Deserialize)]
pub struct Ping {
    /// How many round trips.
    pub n: u64,
    /// The Echo.
    pub target: Address,
}
impl Typed for Ping {
    const TAG: &'static str = "bench/Ping";
}

/// Round-trip times a Pinger measured, in nanoseconds, sorted.
#[derive(Serialize, Deserialize)]
pub struct PingStats {
    /// Every round trip.
    pub rtt_ns: Vec<u64>,
}
impl Typed for PingStats {
    const TAG: &'static str = "bench/PingStats";
}

/// To a Spawner: create `n` Sinks, then answer [`Done`] to the sender.
#[derive(Serialize, Deserialize)]
pub struct Spawn {
    /// How many.
    pub n: u64,
}
impl Typed for Spawn {
    const TAG: &'static str = "bench/Spawn";
}

/// To a Spinner: keep the CPU busy for `ms` milliseconds in one handler call, then answer
/// [`Spun`] to the sender.
#[derive(Serialize, Deserialize)]
pub struct Spin {
    /// How long to spin.
    pub ms: u64,
}
impl Typed for Spin {
    const TAG: &'static str = "bench/Spin";
}

/// A [`Spin`] is over.
#[derive(Serialize, Deserialize)]
pub struct Spun {
    /// How long the Spinner spun, in milliseconds.
    pub ms: u64,
}
impl Typed for Spun {
    const TAG: &'static str = "bench/Spun";
}

/// To a Spinner: run [`Work::run`], then answer [`Worked`] to the sender.
#[derive(Serialize, Deserialize)]
pub struct Work {
    /// Rounds of the loop.
    pub iterations: u64,
}
impl Typed for Work {
    const TAG: &'static str = "bench/Work";
}

impl Work {
    /// The CPU-bound loop: `iterations` rounds of xorshift64 folded into an FNV-1a hash, each
    /// round depending on the last, so that neither the compiler nor the CPU can skip or
    /// overlap rounds. Defined here so that the benchmark can time the very same loop in its
    /// own process and choose `iterations`.
    pub fn run(&self) -> u64 {
        let (mut x, mut h) = (0x9E37_79B9_7F4A_7C15_u64, 0xCBF2_9CE4_8422_2325_u64);
        for _ in 0..std::hint::black_box(self.iterations) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            h = (h ^ (x & 0xFF)).wrapping_mul(0x0100_0000_01B3);
        }
        std::hint::black_box(h)
    }
}

/// A [`Work`] is done.
#[derive(Serialize, Deserialize)]
pub struct Worked {
    /// What the loop computed (sent back so that it is used).
    pub hash: u64,
}
impl Typed for Worked {
    const TAG: &'static str = "bench/Worked";
}

/// To a Keeper: count one more and answer [`Kept`] to the sender. `seq` is the sender's own
/// number for the message (per sender and Keeper), sent back so that the sender can check
/// that nothing was lost, doubled or reordered.
#[derive(Serialize, Deserialize)]
pub struct Keep {
    /// The sender's sequence number.
    pub seq: u64,
}
impl Typed for Keep {
    const TAG: &'static str = "bench/Keep";
}

/// A Keeper's answer to a [`Keep`].
#[derive(Serialize, Deserialize)]
pub struct Kept {
    /// The [`Keep`]'s sequence number.
    pub seq: u64,
    /// The Keeper's count after this message (every Keep it received, from anyone, across
    /// upgrades).
    pub count: u64,
    /// How many times the Keeper was imported into a new version.
    pub upgrades: u32,
}
impl Typed for Kept {
    const TAG: &'static str = "bench/Kept";
}

/// Bytes of payload a Keeper carries in its state.
pub const KEEPER_BYTES: usize = 1024;

/// What a Keeper hands over in a live upgrade: its count, its upgrades and [`KEEPER_BYTES`] of
/// data, as one msgpack binary (about 1 KiB of state, copied rather than walked byte by byte).
#[derive(Serialize, Deserialize)]
pub struct KeeperState {
    /// Keeps received.
    pub count: u64,
    /// Imports so far.
    pub upgrades: u32,
    /// The payload.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}
impl Typed for KeeperState {
    const TAG: &'static str = "bench/KeeperState.v1";
}
