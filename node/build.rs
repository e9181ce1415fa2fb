//! Records the target triple, which the node compares with every source's manifest.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=TROUPE_TARGET={target}");
}
