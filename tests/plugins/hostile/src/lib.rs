//! Test plugin: actors that attack the node from inside. The trust-and-resilience tests in
//! `tests/tests/faults.rs` drive them; every actor answers `msg.sender()` with plain text.
//!
//! - `hostile.Echo`: `t` → `echo: t`.
//! - `hostile.PanicOnDrop`: an echo whose `Drop` panics (when it exits or its version unloads).
//! - `hostile.Garbage`: `garbage` → hands the node's `send` malformed bytes (an undecodable
//!   address, an undecodable message, both, nothing) and answers `statuses: a,b,c,d` with the
//!   status of each; then it keeps echoing, to show it still works.
//! - `hostile.ThreadKey`: `t` → calls `std::thread::current()` and answers `thread: t`. std
//!   creates a pthread key the first time an instance of this library does that, and a key is
//!   never given back when the library is closed: one leaked key per loaded instance
//!   (dylib-unloading reference §2.5).
//! - `hostile.KeyHog`: `hog N` → creates `N` pthread keys and never deletes them (answer
//!   `hogged N`): a quick way to bring the node to its pthread-key budget. `probe` → `keys N`:
//!   the exact number of pthread keys in use in the process (1024 minus how many more can be
//!   created), to check the node's own monitor against.
//! - `hostile.Arm`: `arm panic` / `arm hang` → this loaded instance's `on_unload` will panic, or
//!   loop forever (answer `armed panic` / `armed hang`). Each load of a zip is its own instance
//!   with its own statics, so arming one version does not arm another.
//! - `hostile.Pin`: `pin` → makes this loaded instance impossible to unload (`dlopen` of its own
//!   file with `RTLD_NODELETE`) and answers `pinned <path>`: `dlclose` then leaves it mapped.

use std::sync::atomic::{AtomicU8, Ordering};
use troupe_actor_abi::prelude::*;

#[path = "../../../plugin-common/echo.rs"]
mod common;
use common::{echo, Echo};

/// What `on_unload` does: 0 nothing, 1 panic, 2 hang.
static ON_UNLOAD: AtomicU8 = AtomicU8::new(0);

/// Answers `text` to the sender.
fn answer(ctx: &mut Context, msg: &Message, text: &str) {
    if let Some(from) = msg.sender() {
        let from = from.clone();
        ctx.send_text(&from, text);
    }
}

/// `hostile.PanicOnDrop`.
struct PanicOnDrop;
impl Actor for PanicOnDrop {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(PanicOnDrop)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        echo(ctx, &msg);
        Ok(())
    }
}
impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("drop panicked on purpose");
    }
}

/// `hostile.Garbage`.
struct Garbage;
impl Actor for Garbage {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Garbage)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if msg.text() != Some("garbage") {
            echo(ctx, &msg);
            return Ok(());
        }
        let Some(from) = msg.sender().cloned() else {
            return Ok(());
        };
        let good_to = troupe_actor_abi::message::encode(&from);
        let good_msg = troupe_actor_abi::message::encode(&Payload::Text("should not arrive".into()));
        let junk: &[u8] = &[0xc1, 0xff, 0x00, 0x13, 0x37, 0xde, 0xad];
        let statuses = [
            ctx.__raw_send(junk, &good_msg),
            ctx.__raw_send(&good_to, junk),
            ctx.__raw_send(junk, junk),
            ctx.__raw_send(&[], &[]),
        ];
        let list: Vec<String> = statuses.iter().map(i32::to_string).collect();
        ctx.send_text(&from, &format!("statuses: {}", list.join(",")));
        Ok(())
    }
}

/// `hostile.ThreadKey`.
struct ThreadKey;
impl Actor for ThreadKey {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(ThreadKey)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        // The point of this actor: std's thread handle lives in a pthread-key slot of this
        // library's own std copy.
        let _ = std::thread::current();
        if let Some(t) = msg.text() {
            let t = format!("thread: {t}");
            answer(ctx, &msg, &t);
        }
        Ok(())
    }
}

/// glibc's PTHREAD_KEYS_MAX.
const KEYS_MAX: u32 = 1024;

/// Exactly how many pthread keys the process uses: create keys until glibc refuses, count them,
/// delete them. (Reading the index of one new key is not enough: glibc hands out the lowest
/// free slot, so one freed low key hides every key above it.)
fn keys_in_use() -> u32 {
    let mut made = Vec::new();
    loop {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: pthread_key_create writes the new key into `key`; each is deleted below and
        // never used, so no value or destructor is ever attached.
        if unsafe { libc::pthread_key_create(&mut key, None) } != 0 {
            break;
        }
        made.push(key);
    }
    for k in &made {
        // SAFETY: `k` was created above and is deleted exactly once.
        unsafe { libc::pthread_key_delete(*k) };
    }
    KEYS_MAX.saturating_sub(made.len() as u32)
}

/// `hostile.KeyHog`.
struct KeyHog;
impl Actor for KeyHog {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(KeyHog)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if msg.text() == Some("probe") {
            answer(ctx, &msg, &format!("keys {}", keys_in_use()));
            return Ok(());
        }
        let Some(n) =
            msg.text().and_then(|t| t.strip_prefix("hog ")).and_then(|n| n.trim().parse::<u32>().ok())
        else {
            echo(ctx, &msg);
            return Ok(());
        };
        let mut made = 0;
        for _ in 0..n {
            let mut key: libc::pthread_key_t = 0;
            // SAFETY: pthread_key_create writes the new key into `key`; the key is leaked on
            // purpose (no destructor, never used), which is exactly the attack being tested.
            if unsafe { libc::pthread_key_create(&mut key, None) } != 0 {
                break;
            }
            made += 1;
        }
        answer(ctx, &msg, &format!("hogged {made}"));
        Ok(())
    }
}

/// `hostile.Arm`.
struct Arm;
impl Actor for Arm {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Arm)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        match msg.text() {
            Some("arm panic") => {
                ON_UNLOAD.store(1, Ordering::SeqCst);
                answer(ctx, &msg, "armed panic");
            }
            Some("arm hang") => {
                ON_UNLOAD.store(2, Ordering::SeqCst);
                answer(ctx, &msg, "armed hang");
            }
            _ => echo(ctx, &msg),
        }
        Ok(())
    }
}

/// `hostile.Pin`.
struct Pin;
impl Actor for Pin {
    fn create(_ctx: &mut Context) -> ActorResult<Self> {
        Ok(Pin)
    }
    fn receive(&mut self, ctx: &mut Context, msg: Message) -> ActorResult {
        if msg.text() != Some("pin") {
            echo(ctx, &msg);
            return Ok(());
        }
        // SAFETY: dladdr on a function of this library fills `info` with the path it was
        // opened from (valid while it is loaded); dlopen with RTLD_NOLOAD only adds a reference
        // to this already loaded library, and RTLD_NODELETE keeps it mapped for good, which is
        // the point.
        let answer_text = unsafe {
            let mut info: libc::Dl_info = std::mem::zeroed();
            let here = on_unload as *const libc::c_void;
            if libc::dladdr(here, &mut info) == 0 || info.dli_fname.is_null() {
                "pin failed: dladdr".to_string()
            } else {
                let path = std::ffi::CStr::from_ptr(info.dli_fname).to_string_lossy().into_owned();
                let h =
                    libc::dlopen(info.dli_fname, libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE);
                if h.is_null() {
                    format!("pin failed: {path} is not loaded")
                } else {
                    format!("pinned {path}")
                }
            }
        };
        answer(ctx, &msg, &answer_text);
        Ok(())
    }
}

/// The plugin's `on_unload`: does what `hostile.Arm` armed.
fn on_unload() {
    match ON_UNLOAD.load(Ordering::SeqCst) {
        1 => panic!("on_unload panicked on purpose"),
        2 => loop {
            // A plain busy loop: no sleep, no thread API, nothing the node could interrupt.
            std::hint::spin_loop();
        },
        _ => {}
    }
}

troupe_actor_abi::export_plugin!(
    actors: [
        "hostile.Echo" => Echo,
        "hostile.PanicOnDrop" => PanicOnDrop,
        "hostile.Garbage" => Garbage,
        "hostile.ThreadKey" => ThreadKey,
        "hostile.KeyHog" => KeyHog,
        "hostile.Arm" => Arm,
        "hostile.Pin" => Pin,
    ],
    on_unload: on_unload,
);
