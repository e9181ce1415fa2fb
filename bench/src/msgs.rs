//! The typed messages of `troupe-bench-plugin` as the benchmark sends and reads them (same
//! tags and fields: typed messages are matched by tag, never by Rust type).

use serde::{Deserialize, Serialize};
use troupe_actor_abi::message::{self, Address, Payload};

/// A tagged value.
pub trait Tagged: Serialize {
    /// The tag.
    const TAG: &'static str;
    /// As a payload.
    fn payload(&self) -> Payload {
        Payload::Typed { tag: Self::TAG.into(), body: message::encode(self) }
    }
}

/// Decodes `p` as `T` if its tag says so.
pub fn decode<T: Tagged + for<'de> Deserialize<'de>>(p: &Payload) -> Option<T> {
    match p {
        Payload::Typed { tag, body } if tag == T::TAG => message::decode(body).ok(),
        _ => None,
    }
}

/// The measured message.
#[derive(Serialize, Deserialize)]
pub struct Tick {
    /// Sequence number.
    pub n: u64,
}
impl Tagged for Tick {
    const TAG: &'static str = "bench/Tick";
}

/// To a Sink.
#[derive(Serialize, Deserialize)]
pub struct Expect {
    /// Total ticks.
    pub total: u64,
    /// Who gets `Done`.
    pub reply_to: Address,
}
impl Tagged for Expect {
    const TAG: &'static str = "bench/Expect";
}

/// A count reached.
#[derive(Serialize, Deserialize)]
pub struct Done {
    /// The count.
    pub count: u64,
}
impl Tagged for Done {
    const TAG: &'static str = "bench/Done";
}

/// To a Source.
#[derive(Serialize, Deserialize)]
pub struct Blast {
    /// How many.
    pub n: u64,
    /// To whom.
    pub target: Address,
}
impl Tagged for Blast {
    const TAG: &'static str = "bench/Blast";
}

/// To a Pinger.
#[derive(Serialize, Deserialize)]
pub struct Ping {
    /// Round trips.
    pub n: u64,
    /// The Echo.
    pub target: Address,
}
impl Tagged for Ping {
    const TAG: &'static str = "bench/Ping";
}

/// From a Pinger.
#[derive(Serialize, Deserialize)]
pub struct PingStats {
    /// Sorted round-trip times.
    pub rtt_ns: Vec<u64>,
}
impl Tagged for PingStats {
    const TAG: &'static str = "bench/PingStats";
}

/// To a Spawner.
#[derive(Serialize, Deserialize)]
pub struct Spawn {
    /// How many Sinks.
    pub n: u64,
}
impl Tagged for Spawn {
    const TAG: &'static str = "bench/Spawn";
}
