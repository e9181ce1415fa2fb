//! The manifest parser (`troupe.toml`) and its validation. Nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = troupe_node::archive::Manifest::parse(text) {
            let _ = m.validate();
            let _ = m.to_toml();
        }
    }
});
