//! The demo every user runs first (DESIGN §1), through the real CLI: result lines, missing
//! capabilities, no node, stop.

use std::time::Duration;
use troupe_tests::{files_under, troupe, wait_for, NodeProc, TestDir, ALL_CAPS};

fn sorted(lines: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

#[test]
fn hello_gives_the_four_lines_of_the_design() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, ALL_CAPS);
    let hash = node.load(&dir.encoders_zip());

    let out = node.app(&hash, "hello\n");
    out.assert_ok();
    assert_eq!(
        out.sorted_lines(),
        sorted(&[
            "Encoder [density=1.000]  hello",
            "Base64Encoder [density=0.625]  aGVsbG8=",
            "MorseEncoder [density=0.250]  .... . .-.. .-.. ---",
            "Rot13Encoder [density=1.000]  uryyb",
        ]),
        "{out}"
    );
}

#[test]
fn mixed_case_digits_punctuation_and_spaces_are_encoded_per_the_spec() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, ALL_CAPS);
    let hash = node.load(&dir.encoders_zip());

    // Surrounding whitespace is trimmed; inner runs of spaces are kept.
    let out = node.app(&hash, "  Hello,   World 42!  \n");
    out.assert_ok();
    // Morse: upper-cased; `,` and `!` dropped; each space is a four-space token; tokens joined
    // by single spaces. 18 chars in, 73 out.
    let morse = ".... . .-.. .-.. --- ".to_string()
        + "    "
        + " "
        + "    "
        + " "
        + "    "
        + " .-- --- .-. .-.. -.. "
        + "    "
        + " ....- ..---";
    assert_eq!(morse.len(), 73);
    let morse_line = format!("MorseEncoder [density=0.247]  {morse}");
    assert_eq!(
        out.sorted_lines(),
        sorted(&[
            "Encoder [density=1.000]  Hello,   World 42!",
            "Base64Encoder [density=0.750]  SGVsbG8sICAgV29ybGQgNDIh",
            &morse_line,
            "Rot13Encoder [density=1.000]  Uryyb,   Jbeyq 42!",
        ]),
        "{out}"
    );
}

#[test]
fn empty_input_is_refused_with_a_hint() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, ALL_CAPS);
    let hash = node.load(&dir.encoders_zip());
    let out = node.app(&hash, "   \n");
    assert_ne!(out.code, 0, "{out}");
    out.assert_stderr_has(&["nothing to encode", "echo hello | troupe app"]);
    assert!(out.stdout.is_empty(), "{out}");
}

#[test]
fn without_capabilities_only_the_encoder_answers_and_the_others_are_named() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&dir.encoders_zip());

    let out = node.app(&hash, "hello\n");
    out.assert_code(1);
    assert_eq!(out.lines(), vec!["Encoder [density=1.000]  hello".to_string()], "{out}");
    for (encoder, capability) in
        [("Base64Encoder", "64bit encoder"), ("MorseEncoder", "morse"), ("Rot13Encoder", "Caesar cipher")]
    {
        let line = out
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("{encoder}:")))
            .unwrap_or_else(|| panic!("stderr does not name {encoder}:\n{out}"));
        assert!(line.contains("NoCompatibleSystemForActor") && line.contains(capability), "{line}");
    }
    // The node is still serving.
    node.status();
}

#[test]
fn app_with_no_node_listening_says_how_to_start_one() {
    let _dir = TestDir::new();
    // A port nobody listens on: bound a moment ago by us, now released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let out = troupe(&["app", "0123456789abcdef", "--port", &port], Some("hello\n"));
    out.assert_code(3);
    out.assert_stderr_has(&[
        &format!("no node is listening on 127.0.0.1:{port}"),
        &format!("troupe start {port}"),
    ]);
    // status and load say the same.
    let out = troupe(&["status", &port], None);
    out.assert_code(3);
    out.assert_stderr_has(&[&format!("troupe start {port}")]);
}

#[test]
fn stop_ends_the_process_and_deletes_the_store() {
    let dir = TestDir::new();
    let mut node = NodeProc::start(&dir, ALL_CAPS);
    let hash = node.load(&dir.encoders_zip());
    node.app(&hash, "hello\n").assert_ok(); // live actors and a loaded version
                                            // The zip is written into the store (for peers that fetch it) once the load is answered.
    wait_for("the zip in the store", Duration::from_secs(30), || {
        (!files_under(&node.store()).is_empty()).then_some(())
    });

    let out = node.run("stop", &[]);
    out.assert_ok();
    assert!(out.stdout.contains(&format!("stopped 127.0.0.1:{}", node.port())), "{out}");
    let status = node.wait_exit(Duration::from_secs(20)).expect("the node process did not exit after stop");
    assert!(status.success(), "node exited with {status}:\n{}", node.log_text());
    assert!(!node.store().exists(), "the store {} is still there", node.store().display());
    // And nothing answers there any more.
    node.run("status", &[]).assert_code(3);
}
