//! Actor ids: how a node allocates them, and the cheap hasher of the maps keyed by them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Hands out actor ids. Ids are unique across the convention in practice: a random-looking
/// 32-bit prefix per process start (clock and pid mixed) above a 32-bit counter, so a restarted
/// node never reuses an address a peer may still hold.
pub(crate) struct IdAllocator {
    next: AtomicU64,
}

impl IdAllocator {
    /// A fresh allocator for this process start.
    pub(crate) fn new() -> IdAllocator {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
            ^ ((std::process::id() as u64) << 17);
        let prefix = splitmix(seed) & 0x7fff_ffff;
        IdAllocator { next: AtomicU64::new((prefix.max(1) << 32) + 1) }
    }

    /// Whether `id` was allocated by this allocator (its prefix is this process start's): an id
    /// with another prefix was allocated by another node, for a create it sends here.
    pub(crate) fn is_ours(&self, id: u64) -> bool {
        id >> 32 == self.next.load(Ordering::Relaxed) >> 32
    }

    /// The next id.
    pub(crate) fn allocate(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hasher of maps keyed by actor id. Ids are small sequential integers chosen by the node,
/// never by a peer, so SipHash's protection is not needed; one multiplication spreads them over
/// the hash's high bits, which the table uses.
pub(crate) type IdHash = std::hash::BuildHasherDefault<IdHasher>;

/// See [`IdHash`].
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys use this hasher; any other write still hashes, just slowly.
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_sequential_above_a_nonzero_prefix() {
        let a = IdAllocator::new();
        let first = a.allocate();
        assert!(first >> 32 > 0, "the prefix is never 0 (id 0 is the admin endpoint)");
        assert_eq!(a.allocate(), first + 1);
    }
}
