//! # troupe-tests
//!
//! The harness of the end-to-end tests in `tests/tests/`: every test gets its own temporary
//! directory ([`TestDir`]) and its own node process ([`NodeProc`], `troupe start --foreground`
//! on a loopback port chosen at run time), drives it with the real `troupe` CLI ([`troupe`],
//! [`Cli`]) or with the client library ([`troupe_node::client::Client`]) where a test must act
//! as an actor-facing client, and looks at what a user (or an operator) would see: CLI output
//! and exit codes, `status --json`, `/proc/<pid>/maps`, the store directory.
//!
//! [`ensure_built`] builds the CLI and the plugins once per test process, so `cargo test`
//! alone is enough.
//!
//! The modules, by job:
//! - `build`: cargo builds of the CLI and the plugins, and where they are;
//! - `cli`: running `troupe` and reading what it printed;
//! - `files`: the test's directory and packing, store files and mappings;
//! - `zips`: zip variants, hand-made zips, manifests;
//! - `argv`: a node's `troupe start` arguments, built by [`troupe_node::launch::NodeArgs`];
//! - `node`: starting, stopping and killing a node process;
//! - `inspect`: the CLI, the status and `/proc` of a running node;
//! - `convention`: a leader and its members, and waiting for them to agree;
//! - `client`: acting as an actor-facing client;
//! - `wait`: polling with a deadline;
//! - `demo`: the capabilities and answers of the encoders demo;
//! - `browser`: `troupe dashboard` and headless Chromium through WebDriver.
//!
//! Every public item is re-exported here: the tests use `troupe_tests::NAME`.

mod argv;
mod browser;
mod build;
mod cli;
mod client;
mod convention;
mod demo;
mod files;
mod inspect;
mod node;
mod wait;
mod zips;

pub use browser::{http, Browser, DashboardProc, PAGE_TIMEOUT};
pub use build::{
    abort_lib, ensure_built, ensure_built_packages, hostile_lib, plugin_lib, profile_dir, troupe_bin,
};
pub use cli::{troupe, troupe_with_secret, Cli};
pub use client::{
    ask, create, create_spec, next_message, next_text, send_text, status_of, text_matching,
    wait_long_handler, REPLY_TIMEOUT,
};
pub use convention::{wait_conv, Convention, CONVENTION_TIMEOUT, FAST_HEARTBEAT};
pub use demo::{hello_lines, ALL_CAPS, BASE64, MORSE_CAESAR};
pub use files::{files_under, mapping_owner, store_file_owner, TestDir};
pub use node::{free_port, port_listening, NodeProc};
pub use wait::wait_for;
pub use zips::{manifest_of, zip_of, ZipVariants};
