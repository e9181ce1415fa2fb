//! # troupe-bench-plugin
//!
//! The actors `troupe-bench` drives for the message figures (B4, B5), the memory figures (B7),
//! the thread figures (B9) and the live upgrade figures (B10). Every control message is
//! typed; the payload of the measured traffic is [`Tick`], a small typed message (a tag and a
//! 1-field body), so that the figures count what a real plugin-to-plugin message costs: an
//! address and a payload encoded by the SDK, copied by the node, queued, decoded and handed to
//! the receiver.
//!
//! - `bench.Sink` counts [`Tick`]s; after an [`Expect`] it answers [`Done`] to the asker once
//!   the count reaches the expected total.
//! - `bench.Source` answers a [`Blast`] by sending `n` ticks to the target, [`CHUNK`] per
//!   handler call (it sends itself a continuation between chunks, so other actors and the node
//!   get their turn and the effects of one call stay small).
//! - `bench.Echo` sends every message back to its sender.
//! - `bench.Pinger` answers a [`Ping`] by doing `n` sequential round trips with the target
//!   (an Echo) and replying [`PingStats`] with the round-trip times it measured itself.
//! - `bench.Spawner` answers a [`Spawn`] by creating `n` Sinks as its children, [`CHUNK`] per
//!   call, then replying [`Done`].
//! - `bench.Spinner` holds the thread it runs on, on purpose: a [`Spin`] busy-loops for that
//!   many milliseconds before answering [`Spun`], a [`Work`] runs [`Work::run`] before
//!   answering [`Worked`], and text is echoed back to its sender.
//! - `bench.Keeper` (live upgrade, B10) holds [`KEEPER_BYTES`] of data and a count: a [`Keep`]
//!   counts one more and is answered [`Kept`]; it exports its state as a [`KeeperState`] and
//!   is built from one in the next version (the same library under another hash will do).
//!
//! Plugin rules hold: no threads, no printing, nothing kept across the boundary.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use troupe_actor_abi::prelude::*;

/// Ticks sent (or children created) per handler call: large enough that the continuation
/// message costs nothing, small enough that one call's effects stay a few hundred KB.
pub const CHUNK: u64 = 1000;

pub mod msgs;
pub use msgs::*;

/// A Source's continuation to itself: `left` ticks still to send.
#[derive(Serialize, Deserialize)]
struct More {
    left: u64,
}
impl Typed for More {
    const TAG: &'static str = "bench/More";
}

/// `bench.Sink`.
pub struct Sink {
    count: u64,
    waiting: Option<(u64, Address)>,
}

impl Sink {
    fn check(&mut self, ctx: &mut Context) {
        if let Some((total, to)) = &self.waiting {
            if self.count >= *total {
                ctx.send(to, &Done { count: self.count });
                self.waiting = None;
            }
        }
    }
}

impl Actor for Sink {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Sink { count: 0, waiting: None })
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if msg.is::<Tick>() {
            // Counting without decoding the body: the receiver's share of the cost is the
            // node's, which is what the figure is about.
            self.count += 1;
            if self.waiting.is_some() {
                self.check(ctx);
            }
        } else if let Some(e) = msg.decode::<Expect>() {
            let e = e?;
            self.waiting = Some((e.total, e.reply_to));
            self.check(ctx);
        } else if msg.text() == Some("report") {
            if let Some(from) = msg.sender() {
                let from = from.clone();
                ctx.send(&from, &Done { count: self.count });
            }
        }
        Ok(())
    }
}

/// `bench.Source`.
pub struct Source {
    target: Option<Address>,
    next: u64,
}

impl Source {
    fn send_chunk(&mut self, ctx: &mut Context, left: u64) {
        let Some(target) = self.target.clone() else { return };
        let now = left.min(CHUNK);
        for _ in 0..now {
            ctx.send(&target, &Tick { n: self.next });
            self.next += 1;
        }
        if left > now {
            let me = ctx.my_address();
            ctx.send(&me, &More { left: left - now });
        }
    }
}

impl Actor for Source {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Source { target: None, next: 0 })
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let Some(b) = msg.decode::<Blast>() {
            let b = b?;
            self.target = Some(b.target);
            self.send_chunk(ctx, b.n);
        } else if let Some(m) = msg.decode::<More>() {
            let m = m?;
            self.send_chunk(ctx, m.left);
        }
        Ok(())
    }
}

/// `bench.Echo`.
pub struct Echo;

impl Actor for Echo {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Echo)
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if msg.system().is_none() {
            if let Some(from) = msg.sender() {
                let from = from.clone();
                ctx.send(&from, msg.payload().clone());
            }
        }
        Ok(())
    }
}

/// `bench.Pinger`.
pub struct Pinger {
    target: Option<Address>,
    asker: Option<Address>,
    left: u64,
    sent_at: Option<Instant>,
    rtt_ns: Vec<u64>,
}

impl Pinger {
    fn ping(&mut self, ctx: &mut Context) {
        if let Some(t) = &self.target {
            self.sent_at = Some(Instant::now());
            ctx.send(t, &Tick { n: self.left });
        }
    }
}

impl Actor for Pinger {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Pinger { target: None, asker: None, left: 0, sent_at: None, rtt_ns: Vec::new() })
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let Some(p) = msg.decode::<Ping>() {
            let p = p?;
            self.target = Some(p.target);
            self.asker = msg.sender().cloned();
            self.left = p.n;
            self.rtt_ns = Vec::with_capacity(p.n as usize);
            self.ping(ctx);
        } else if msg.is::<Tick>() {
            if let Some(t) = self.sent_at.take() {
                self.rtt_ns.push(t.elapsed().as_nanos() as u64);
            }
            self.left = self.left.saturating_sub(1);
            if self.left > 0 {
                self.ping(ctx);
            } else if let Some(asker) = self.asker.take() {
                let mut rtt_ns = std::mem::take(&mut self.rtt_ns);
                rtt_ns.sort_unstable();
                ctx.send(&asker, &PingStats { rtt_ns });
            }
        }
        Ok(())
    }
}

/// `bench.Spawner`.
pub struct Spawner {
    asker: Option<Address>,
    made: u64,
    total: u64,
}

impl Spawner {
    fn spawn_chunk(&mut self, ctx: &mut Context) -> ActorResult {
        let now = (self.total - self.made).min(CHUNK);
        for _ in 0..now {
            ctx.create("bench.Sink")?;
        }
        self.made += now;
        if self.made < self.total {
            let me = ctx.my_address();
            ctx.send(&me, &More { left: self.total - self.made });
        } else if let Some(a) = self.asker.take() {
            ctx.send(&a, &Done { count: self.made });
        }
        Ok(())
    }
}

impl Actor for Spawner {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Spawner { asker: None, made: 0, total: 0 })
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let Some(s) = msg.decode::<Spawn>() {
            let s = s?;
            self.asker = msg.sender().cloned();
            self.total = self.made + s.n;
            self.spawn_chunk(ctx)?;
        } else if msg.is::<More>() {
            self.spawn_chunk(ctx)?;
        }
        Ok(())
    }
}

/// `bench.Spinner`.
pub struct Spinner;

impl Actor for Spinner {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Spinner)
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        let Some(from) = msg.sender().cloned() else { return Ok(()) };
        if let Some(s) = msg.decode::<Spin>() {
            let s = s?;
            // Busy, not asleep: the handler holds its thread as a CPU-bound one would.
            let (t, d) = (Instant::now(), Duration::from_millis(s.ms));
            while t.elapsed() < d {
                std::hint::spin_loop();
            }
            ctx.send(&from, &Spun { ms: s.ms });
        } else if let Some(w) = msg.decode::<Work>() {
            let hash = w?.run();
            ctx.send(&from, &Worked { hash });
        } else if msg.text().is_some() {
            ctx.send(&from, msg.payload().clone());
        }
        Ok(())
    }
}

/// `bench.Keeper`.
pub struct Keeper {
    state: KeeperState,
}

impl Actor for Keeper {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        let data = (0..KEEPER_BYTES).map(|i| (i % 128) as u8).collect();
        Ok(Keeper { state: KeeperState { count: 0, upgrades: 0, data } })
    }

    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if let Some(k) = msg.decode::<Keep>() {
            let seq = k?.seq;
            self.state.count += 1;
            if let Some(from) = msg.sender().cloned() {
                ctx.send(&from, &Kept { seq, count: self.state.count, upgrades: self.state.upgrades });
            }
        }
        Ok(())
    }

    fn export_state(&self) -> Option<ActorResult<State>> {
        Some(Ok(State::of(&self.state)))
    }

    fn import_state(_ctx: &mut Context, from: Upgrade) -> ActorResult<Self> {
        let Some(state) = from.decode::<KeeperState>() else {
            return Err(ActorError::msg(format!("unknown state shape {}", from.state().tag())));
        };
        let mut state = state?;
        if state.data.len() != KEEPER_BYTES {
            return Err(ActorError::msg(format!("{} bytes of data, not {KEEPER_BYTES}", state.data.len())));
        }
        state.upgrades += 1;
        Ok(Keeper { state })
    }
}

troupe_actor_abi::export_plugin!(actors: [
    "bench.Sink" => Sink,
    "bench.Source" => Source,
    "bench.Echo" => Echo,
    "bench.Pinger" => Pinger,
    "bench.Spawner" => Spawner,
    "bench.Spinner" => Spinner,
    "bench.Keeper" => Keeper,
]);
