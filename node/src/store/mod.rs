//! What the node keeps of sources, below the code that runs them:
//!
//! - [`archive`]: reading and writing source zips (manifest, limits, hashes);
//! - [`signing`]: signed sources (ed25519) and the convention's shared secret (HMAC);
//! - [`libcopy`]: each loaded version's private copies of its libraries.

pub mod archive;
pub(crate) mod libcopy;
pub mod signing;
