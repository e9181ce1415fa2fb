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
