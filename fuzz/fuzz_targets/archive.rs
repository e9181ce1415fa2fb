//! The archive reader with the node's default limits: any bytes a client sends to `load`.
//! Nothing may panic, and nothing may allocate past the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use troupe_node::archive::{open, ArchiveLimits};

fuzz_target!(|data: &[u8]| {
    let _ = open(data, &ArchiveLimits::default());
});
