//! `troupe-bench`: see the library docs and BENCHMARKS.md.

fn main() -> std::process::ExitCode {
    troupe_bench::main()
}
