//! What the testkit's own tests share: the repository's test plugin `faulty`, built by cargo
//! through the testkit as a plugin author's crate would be.

use std::path::{Path, PathBuf};

/// `tests/plugins/faulty` of this repository.
pub fn faulty_crate() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/plugins/faulty")
}
