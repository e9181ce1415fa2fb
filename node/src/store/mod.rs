//! What the node keeps of sources, below the code that runs them:
//!
//! - [`archive`]: reading and writing source zips (manifest, limits, hashes);
//! - [`signing`]: signed sources (ed25519) and the convention's shared secret (HMAC);
//! - [`libcopy`]: each loaded version's private copies of its libraries;
//! - [`elf`]: the `DF_1_NODELETE` guard those copies get (the flag cleared, or the load refused);
//! - [`root`]: a plugin's root read from the library file, without loading it (`troupe pack`,
//!   and the node before `dlopen`).

pub mod archive;
pub mod elf;
pub(crate) mod libcopy;
pub mod root;
pub mod signing;
