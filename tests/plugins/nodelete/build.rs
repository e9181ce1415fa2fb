//! Links the plugin with `-z nodelete`: its dynamic section gets `DF_1_NODELETE` in
//! `DT_FLAGS_1`, as rust-lang/rust pull request 158402 proposes for every GNU/Linux Rust object.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    println!("cargo:rerun-if-changed=build.rs");
}
