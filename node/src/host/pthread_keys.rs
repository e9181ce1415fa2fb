//! The process's pthread keys: a budget every loaded version may spend from (std leaks one
//! per loaded instance of a plugin that calls `thread::current`, `reference/dylib-unloading.md`
//! §2.5), counted so that a load can be refused before the node itself runs out.

/// glibc's PTHREAD_KEYS_MAX: a process has this many pthread keys, ever (§2.5 of the unloading
/// reference: std leaks one per loaded instance of a plugin that calls `thread::current`).
pub const PTHREAD_KEYS_MAX: u32 = 1024;
/// Loads are refused from this many keys in use: what is left keeps the node itself (tokio,
/// std) working until it is restarted.
pub const PTHREAD_KEYS_REFUSE_AT: u32 = 896;

/// How many pthread keys the process uses, counted exactly: create keys until glibc refuses,
/// then delete them all. (Reading the index of one new key undercounts: glibc hands out the
/// lowest free slot, so one freed low key hides every key above it.) About a thousand cheap
/// libc calls, only when status asks (a load only counts the free keys up to its threshold).
pub fn pthread_keys_in_use() -> u32 {
    PTHREAD_KEYS_MAX.saturating_sub(pthread_keys_free(PTHREAD_KEYS_MAX))
}

/// How many more pthread keys the process could create, counting no further than `limit`.
pub(crate) fn pthread_keys_free(limit: u32) -> u32 {
    let limit = limit.min(PTHREAD_KEYS_MAX) as usize;
    let mut keys = Vec::with_capacity(limit);
    while keys.len() < limit {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: pthread_key_create writes a new key into `key`; no destructor is attached and
        // no value is ever set; every key created here is deleted below.
        if unsafe { libc::pthread_key_create(&mut key, None) } != 0 {
            break;
        }
        keys.push(key);
    }
    let free = keys.len() as u32;
    for k in keys {
        // SAFETY: `k` was created above and is deleted once.
        unsafe { libc::pthread_key_delete(k) };
    }
    free
}
