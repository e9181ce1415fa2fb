//! Plugin tooling: `troupe new` makes a crate that builds, whose own test passes, and whose
//! actor loads into a real node and answers through `troupe ask`; `troupe create`, `tell` and
//! `ask` drive actors by hand with text and JSON; `troupe completions` prints scripts.

use std::path::{Path, PathBuf};
use std::process::Command;

use troupe_tests::*;

/// The SDK crate of this checkout (what a generated plugin depends on by path).
fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../actor-abi").canonicalize().expect("actor-abi exists")
}

/// `troupe new ARGS` with the SDK named explicitly (the target dir may live outside the
/// checkout, where `troupe` could not find the SDK from its own location).
fn troupe_new(args: &[&str]) -> Cli {
    let out = Command::new(troupe_bin())
        .arg("new")
        .args(args)
        .env("TROUPE_SDK_PATH", sdk_dir())
        .output()
        .expect("cannot run troupe new");
    Cli {
        command: format!("troupe new {}", args.join(" ")),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        code: out.status.code().unwrap_or(-1),
    }
}

/// `PATH` without any directory that holds a `troupe`: a newcomer's shell before they installed
/// the CLI.
fn path_without_troupe() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).filter(|d| !d.join("troupe").exists());
    std::env::join_paths(dirs).expect("PATH entries join again")
}

/// Where generated crates are built: a directory of the target dir kept between runs, so that
/// only the first run compiles their dependencies.
fn generated_target_dir() -> PathBuf {
    profile_dir().parent().expect("the profile dir is inside the target dir").join("troupe-new")
}

#[test]
fn a_new_plugin_crate_builds_passes_its_own_test_and_answers_through_ask() {
    let dir = TestDir::new();
    let krate = dir.join("greetings");
    let out = troupe_new(&["greetings", "--path", &krate.display().to_string()]);
    out.assert_ok();
    assert!(out.stdout.contains("greetings.Greeter"), "{out}");
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).expect("Cargo.toml written");
    assert!(manifest.contains("crate-type = [\"cdylib\"]"), "{manifest}");
    assert!(manifest.contains("\n[workspace]\n"), "the crate is its own workspace:\n{manifest}");
    assert!(manifest.contains(&format!("path = \"{}\"", sdk_dir().display())), "{manifest}");
    for f in ["src/lib.rs", "tests/loads.rs", "tests/in_process.rs", ".gitignore"] {
        assert!(krate.join(f).is_file(), "{f} missing");
    }

    // Its own test: builds the cdylib, packs it, starts a node, loads it, asks the Greeter. With
    // neither TROUPE_BIN nor troupe on PATH (issue 21 point 8: "put troupe on PATH"), it runs
    // the troupe that made it, which `troupe new` wrote into .cargo/config.toml.
    let config =
        std::fs::read_to_string(krate.join(".cargo/config.toml")).expect(".cargo/config.toml written");
    let made_by = troupe_bin().canonicalize().expect("the troupe binary");
    assert!(config.contains(&format!("TROUPE_NEW_BIN = {:?}", made_by.display().to_string())), "{config}");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = generated_target_dir();
    let test = Command::new(&cargo)
        .args(["test", "--offline"])
        // In the crate, as its `next:` lines say: cargo reads .cargo/config.toml from there.
        .current_dir(&krate)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("TROUPE_BIN")
        .env("PATH", path_without_troupe())
        .output()
        .expect("cannot run cargo test");
    let test_out =
        format!("{}\n{}", String::from_utf8_lossy(&test.stdout), String::from_utf8_lossy(&test.stderr));
    assert!(test.status.success(), "cargo test of the generated crate failed:\n{test_out}");
    assert!(
        test_out.contains("test greeter_loads_into_a_node_and_answers ... ok"),
        "the generated test did not run:\n{test_out}"
    );

    // And by hand, as the README shows: pack, load, create, ask (text and JSON), tell.
    let lib = target.join("debug/libgreetings.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    let zip = dir.pack("greetings.zip", &[lib]);
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&zip);
    let created = node.run("create", &[&hash, "greetings.Greeter"]);
    created.assert_ok();
    let address = created.stdout.trim().to_string();
    assert!(address.starts_with(&format!("{}#", node.addr())), "create printed {address:?}");

    let asked = node.run("ask", &[&address, "world"]);
    asked.assert_ok();
    assert_eq!(asked.stdout, "hello, world\n");
    let typed = r#"{"tag": "greetings/Greet", "body": {"name": "Ada"}}"#;
    let asked = node.run("ask", &[&address, "--json", typed]);
    asked.assert_ok();
    assert_eq!(asked.stdout, "{\"tag\":\"greetings/Greeting\",\"body\":{\"text\":\"hello, Ada\"}}\n");
    node.run("tell", &[&address, "fire and forget"]).assert_ok();
    // Still serving after the tell (whose reply went to a connection that had closed).
    assert_eq!(node.run("ask", &[&address, "again"]).stdout, "hello, again\n");
}

#[test]
fn new_refuses_an_existing_directory_and_names_that_cannot_be_crates() {
    let dir = TestDir::new();
    let existing = dir.join("taken");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep.txt"), "mine").unwrap();
    let out = troupe_new(&["taken", "--path", &existing.display().to_string()]);
    out.assert_code(2).assert_stderr_has(&["already exists", "--path"]);
    assert_eq!(std::fs::read_to_string(existing.join("keep.txt")).unwrap(), "mine");
    assert_eq!(files_under(&existing).len(), 1, "nothing was written into the existing directory");

    let out = troupe_new(&["2 bad", "--path", &dir.join("bad").display().to_string()]);
    out.assert_code(2).assert_stderr_has(&["cannot name a crate", "troupe new hello"]);
    assert!(!dir.join("bad").exists());

    let out = Command::new(troupe_bin())
        .args(["new", "x", "--path"])
        .arg(dir.join("x"))
        .env("TROUPE_SDK_PATH", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TROUPE_SDK_PATH"));
}

#[test]
fn create_tell_and_ask_drive_the_faulty_echo() {
    let dir = TestDir::new();
    let node = NodeProc::start(&dir, "");
    let hash = node.load(&dir.faulty_zip());

    let created = node.run("create", &[&hash[..12], "faulty.Echo", "--name", "echo-1"]);
    created.assert_ok();
    let echo = created.stdout.trim().to_string();
    assert!(echo.starts_with(&format!("{}#", node.addr())), "{created}");
    // The same global name gives the same actor back, and says so.
    let again = node.run("create", &[&hash, "faulty.Echo", "--name", "echo-1"]);
    again.assert_ok().assert_stderr_has(&["alive already"]);
    assert_eq!(again.stdout.trim(), echo);

    let asked = node.run("ask", &[&echo, "hi there"]);
    asked.assert_ok();
    assert_eq!(asked.stdout, "echo: hi there\n");
    // `#id` means an actor of the node given as PORT.
    let id = echo.rsplit_once('#').unwrap().1;
    assert_eq!(node.run("ask", &[&format!("#{id}"), "short"]).stdout, "echo: short\n");
    // A JSON string is text.
    assert_eq!(node.run("ask", &[&echo, "--json", "\"quoted\""]).stdout, "echo: quoted\n");
    let told = node.run("tell", &[&echo, "hello"]);
    told.assert_ok();
    assert_eq!(told.stdout, "");

    // Echo ignores typed messages: the ask times out, naming the address.
    let typed = r#"{"tag": "faulty/Nothing", "body": [1, "two", {"three": 3.5}]}"#;
    let out = node.run("ask", &[&echo, "--json", typed, "--timeout", "300ms"]);
    out.assert_code(1).assert_stderr_has(&["no reply from", &echo, "within 300ms"]);
    assert_eq!(out.stdout, "");

    // A handler that panics: the message comes back as a PoisonMessage, on stderr, exit 1.
    let panicky = node.run("create", &[&hash, "faulty.PanicOnMessage"]);
    panicky.assert_ok();
    let out = node.run("ask", &[panicky.stdout.trim(), "panic"]);
    out.assert_code(1).assert_stderr_has(&["PoisonMessage", "asked to panic"]);
    assert_eq!(out.stdout, "");

    // Errors say what to do next.
    node.run("ask", &[&echo, "--json", "{not json"]).assert_code(2).assert_stderr_has(&["--json takes"]);
    node.run("ask", &["nonsense", "x"]).assert_code(2).assert_stderr_has(&["troupe create printed"]);
    node.run("create", &[&hash, "faulty.Nope"]).assert_code(1).assert_stderr_has(&["faulty.Echo"]);
    node.run("create", &[&hash, "faulty.Picky"]).assert_code(1).assert_stderr_has(&["picky"]);
    node.run("create", &[&hash, "faulty.Echo", "--require", "gpu"])
        .assert_code(1)
        .assert_stderr_has(&["gpu"]);
    let port = free_port().to_string();
    troupe(&["ask", &port, &format!("127.0.0.1:{port}#1"), "hi"], None)
        .assert_code(3)
        .assert_stderr_has(&["troupe start"]);
}

#[test]
fn completions_are_printed_for_bash_zsh_and_fish() {
    for (shell, marker) in [("bash", "_troupe()"), ("zsh", "#compdef troupe"), ("fish", "complete -c troupe")]
    {
        let out = troupe(&["completions", shell], None);
        out.assert_ok();
        assert!(out.stdout.contains(marker), "{shell} script lacks {marker:?}");
        for sub in ["ask", "deploy", "completions"] {
            assert!(out.stdout.contains(sub), "{shell} script lacks {sub}");
        }
    }
    troupe(&["completions", "tcsh"], None).assert_code(2);
}

#[test]
fn pack_strips_libraries_and_compresses_them_with_zstd_unless_told_not_to_strip() {
    let dir = TestDir::new();
    let lib = plugin_lib("troupe_encoders");
    let built = std::fs::read(&lib).expect("read the library");
    let entry = |zip: &std::path::Path| {
        let mut archive =
            zip::ZipArchive::new(std::io::Cursor::new(std::fs::read(zip).expect("read zip"))).expect("a zip");
        let mut f = archive.by_name("libtroupe_encoders.so").expect("the library entry");
        let method = f.compression();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut bytes).expect("inflate");
        (method, bytes)
    };

    let stripped_zip = dir.pack("stripped.zip", std::slice::from_ref(&lib));
    let (method, stripped) = entry(&stripped_zip);
    assert_eq!(method, zip::CompressionMethod::Zstd);
    assert!(
        stripped.len() * 2 < built.len(),
        "a debug build of {} bytes was packed as {} bytes: not stripped",
        built.len(),
        stripped.len()
    );
    let manifest = troupe_node::archive::Manifest::parse(&manifest_of(&stripped_zip)).expect("manifest");
    assert_eq!(manifest.cdylibs[0].sha256, troupe_node::archive::sha256_hex(&stripped));

    let full_zip = dir.pack_with("full.zip", &[lib], &["--no-strip"]);
    assert_eq!(entry(&full_zip).1, built, "--no-strip must pack the library byte for byte");

    // Both load, and the stripped one answers like the original.
    let node = NodeProc::start(&dir, ALL_CAPS);
    let full = node.load(&full_zip);
    let hash = node.load(&stripped_zip);
    let unstripped_answer = node.app(&full, "hello\n");
    unstripped_answer.assert_ok();
    let answer = node.app(&hash, "hello\n");
    answer.assert_ok();
    assert_eq!(answer.stdout, unstripped_answer.stdout);
    assert!(answer.stdout.contains("hello"), "{answer}");
}
