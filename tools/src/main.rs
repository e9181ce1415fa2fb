//! The `troupe` binary: all behaviour lives in the library (`troupe::run`).
fn main() -> std::process::ExitCode {
    troupe::run()
}
