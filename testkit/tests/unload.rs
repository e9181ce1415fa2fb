//! Dropping a TestNode unloads for real: the plugin's library copy is mapped in this process
//! while the node runs and gone after `shutdown` (its threads joined, `dlclose`d). Alone in
//! its test binary, so no other test's node maps the same library meanwhile.

use troupe_testkit::TestNode;

mod common;

fn mappings_of(hash: &str) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
    maps.lines().filter(|l| l.contains(&format!("memfd:troupe:{hash}"))).count()
}

#[test]
fn shutdown_joins_the_version_threads_and_closes_the_library() {
    let mut node = TestNode::start().unwrap();
    let hash = node.load_crate(&common::faulty_crate()).unwrap();
    let echo = node.create("faulty.Echo").unwrap();
    assert_eq!(node.ask_text(&echo, "hi").unwrap(), "echo: hi");
    assert!(mappings_of(&hash) > 0, "the library is mapped while the node runs");
    let threads_before = std::fs::read_dir("/proc/self/task").unwrap().count();
    node.shutdown().expect("every version unloaded");
    assert_eq!(mappings_of(&hash), 0, "the library is still mapped after shutdown");
    let threads_after = std::fs::read_dir("/proc/self/task").unwrap().count();
    assert!(threads_after < threads_before, "threads {threads_before} → {threads_after}");
}
