//! `troupe new`: a plugin crate from the templates in `tools/templates/`, depending on this
//! checkout's SDK and testkit by path when there is one (else by version), and knowing the
//! `troupe` CLI that made it (`.cargo/config.toml`), so its own `cargo test` finds it.

use std::path::{Path, PathBuf};

use anyhow::anyhow;

use super::NewArgs;
use crate::{refused, usage, Failure, EXIT_OK};

const CARGO_TOML: &str = include_str!("../../templates/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("../../templates/lib.rs.tmpl");
const LOADS_RS: &str = include_str!("../../templates/loads.rs.tmpl");
const IN_PROCESS_RS: &str = include_str!("../../templates/in_process.rs.tmpl");
const GITIGNORE: &str = include_str!("../../templates/gitignore.tmpl");

/// The SDK crate's package name, as a generated plugin depends on it.
const SDK_PACKAGE: &str = "troupe-actor-abi";

/// The testkit's package name (a dev-dependency of a generated plugin).
const TESTKIT_PACKAGE: &str = "troupe-testkit";

/// Whether `name` can name a crate (and, with `-` as `_`, the module part of `module.Type`).
fn valid_crate_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether `dir` holds the SDK crate (its Cargo.toml names the package `troupe-actor-abi`).
fn is_sdk_crate(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|t| t.lines().any(|l| l.replace(' ', "") == format!("name=\"{SDK_PACKAGE}\"")))
}

/// The SDK crate inside `dir`: `dir` itself, or `dir/actor-abi` in a Troupe checkout.
fn sdk_in(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join("actor-abi")].into_iter().find(|d| is_sdk_crate(d))
}

/// Where the SDK is: `TROUPE_SDK_PATH` (the SDK crate or a checkout), else the checkout this
/// `troupe` was built in (`<repo>/target/<profile>/troupe`), else none (use a version).
fn find_sdk(env: Option<&Path>, exe: Option<&Path>) -> Result<Option<PathBuf>, Failure> {
    if let Some(dir) = env {
        return match sdk_in(dir) {
            Some(d) => Ok(Some(d.canonicalize().unwrap_or(d))),
            None => Err(usage(anyhow!(
                "TROUPE_SDK_PATH={} is neither the {SDK_PACKAGE} crate nor a Troupe checkout — point it at <checkout>/actor-abi, or unset it to depend on the published version",
                dir.display()
            ))),
        };
    }
    let found = exe.and_then(|e| e.ancestors().skip(1).find_map(sdk_in));
    Ok(found.map(|d| d.canonicalize().unwrap_or(d)))
}

/// The `troupe-actor-abi = …` line of the generated Cargo.toml.
fn sdk_dependency(sdk: Option<&Path>) -> String {
    match sdk {
        // A JSON string is a valid TOML basic string: quotes and backslashes escaped alike.
        Some(p) => format!(
            "{SDK_PACKAGE} = {{ path = {} }}",
            serde_json::to_string(&p.display().to_string()).unwrap_or_default()
        ),
        None => {
            // The SDK is versioned with the CLI: same major.minor.
            let v: Vec<&str> = env!("CARGO_PKG_VERSION").split('.').take(2).collect();
            format!("{SDK_PACKAGE} = \"{}\"", v.join("."))
        }
    }
}

/// The checkout the SDK at `sdk` is part of (`<checkout>/actor-abi`), if it holds the testkit
/// too.
fn checkout_of(sdk: &Path) -> Option<PathBuf> {
    let repo = sdk.parent()?;
    let toml = std::fs::read_to_string(repo.join("testkit/Cargo.toml")).ok()?;
    toml.lines()
        .any(|l| l.replace(' ', "") == format!("name=\"{TESTKIT_PACKAGE}\""))
        .then(|| repo.to_path_buf())
}

/// The `troupe-testkit = …` line of the generated Cargo.toml: by path beside a checkout's SDK,
/// else by the same version as the SDK.
fn testkit_dependency(sdk: Option<&Path>) -> String {
    match sdk.and_then(checkout_of) {
        Some(repo) => format!(
            "{TESTKIT_PACKAGE} = {{ path = {} }}",
            serde_json::to_string(&repo.join("testkit").display().to_string()).unwrap_or_default()
        ),
        None => {
            let v: Vec<&str> = env!("CARGO_PKG_VERSION").split('.').take(2).collect();
            format!("{TESTKIT_PACKAGE} = \"{}\"", v.join("."))
        }
    }
}

/// `.cargo/config.toml` of a new crate: `TROUPE_NEW_BIN`, the `troupe` that made it, for
/// `tests/loads.rs` when neither `TROUPE_BIN` nor `PATH` names one. Cargo passes `[env]` to
/// the tests it runs; an environment variable of the same name wins (`force` is off).
fn cargo_config(troupe: &Path) -> String {
    // A JSON string is a valid TOML basic string: quotes and backslashes escaped alike.
    let path = serde_json::to_string(&troupe.display().to_string()).unwrap_or_default();
    format!(
        "# Written by `troupe new`: the troupe CLI that made this crate, which tests/loads.rs runs
         # when neither TROUPE_BIN nor PATH names one. Machine-specific, so .gitignore lists it.
         [env]
TROUPE_NEW_BIN = {path}
"
    )
}

/// The files of a new plugin crate, as (relative path, contents).
fn render(name: &str, sdk: Option<&Path>) -> Vec<(&'static str, String)> {
    let module = name.replace('-', "_");
    let dep = sdk_dependency(sdk);
    let testkit = testkit_dependency(sdk);
    let fill = |t: &str| {
        t.replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{sdk_dependency}}", &dep)
            .replace("{{testkit_dependency}}", &testkit)
    };
    vec![
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        ("tests/loads.rs", fill(LOADS_RS)),
        ("tests/in_process.rs", fill(IN_PROCESS_RS)),
        (".gitignore", fill(GITIGNORE)),
    ]
}

/// `troupe new NAME [--path DIR]`.
pub(crate) fn new(args: NewArgs) -> Result<u8, Failure> {
    let NewArgs { name, path } = args;
    if !valid_crate_name(&name) {
        return Err(usage(anyhow!(
            "{name:?} cannot name a crate — use ASCII letters, digits, `-` and `_`, starting with a letter (e.g. troupe new hello)"
        )));
    }
    let dir = path.unwrap_or_else(|| PathBuf::from(&name));
    if dir.exists() || dir.symlink_metadata().is_ok() {
        return Err(usage(anyhow!(
            "{} already exists and is left as it is — choose another directory with --path DIR, or remove it first",
            dir.display()
        )));
    }
    let env = std::env::var_os("TROUPE_SDK_PATH").filter(|p| !p.is_empty()).map(PathBuf::from);
    let exe = std::env::current_exe().ok().map(|e| e.canonicalize().unwrap_or(e));
    let sdk = find_sdk(env.as_deref(), exe.as_deref())?;
    let mut files = render(&name, sdk.as_deref());
    if let Some(exe) = &exe {
        files.push((".cargo/config.toml", cargo_config(exe)));
    }

    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| refused(anyhow!("cannot create {}: {e} — check the --path", parent.display())))?;
    }
    // create_dir (not create_dir_all): fails if the directory appeared meanwhile.
    std::fs::create_dir(&dir).map_err(|e| {
        refused(anyhow!("cannot create {}: {e} — choose another directory with --path DIR", dir.display()))
    })?;
    for (rel, text) in &files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| refused(anyhow!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&p, text).map_err(|e| refused(anyhow!("cannot write {}: {e}", p.display())))?;
    }

    // In a checkout, the crate starts from the checkout's lock file: the same versions of
    // every dependency, already downloaded (it builds offline) and often already compiled.
    if let Some(lock) =
        sdk.as_deref().and_then(checkout_of).map(|r| r.join("Cargo.lock")).filter(|l| l.is_file())
    {
        let to = dir.join("Cargo.lock");
        std::fs::copy(&lock, &to).map_err(|e| refused(anyhow!("cannot write {}: {e}", to.display())))?;
    }

    let module = name.replace('-', "_");
    let shown = dir.display();
    let sdk_line = match &sdk {
        Some(p) => format!("by path, {}", p.display()),
        None => format!("by version ({})", sdk_dependency(None)),
    };
    println!("created plugin crate {name} in {shown} (actor type {module}.Greeter; SDK {sdk_line})");
    if sdk.is_none() {
        eprintln!(
            "note: this troupe was not built in a Troupe checkout, so the crate depends on {SDK_PACKAGE} by version; to use a local SDK instead, edit its Cargo.toml or run again with TROUPE_SDK_PATH=<checkout>/actor-abi"
        );
    }
    println!(
        "\nnext:\n  cargo build --manifest-path {shown}/Cargo.toml\n  cd {shown} && cargo test   # in-process (troupe-testkit), then in a node process\n\nby hand:\n  troupe start 1900\n  troupe pack -o {name}.zip --build {shown}\n  HASH=$(troupe load 1900 {name}.zip)\n  ADDR=$(troupe create 1900 $HASH {module}.Greeter)\n  troupe ask 1900 $ADDR world\n\nguide: docs/writing-plugins.md in the Troupe repository"
    );
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crate_names_are_checked() {
        assert!(valid_crate_name("hello") && valid_crate_name("my-actors_2"));
        for bad in ["", "2fast", "-x", "a b", "a.b", "é"] {
            assert!(!valid_crate_name(bad), "{bad}");
        }
    }

    #[test]
    fn templates_are_filled_completely() {
        let sdk = Path::new("/opt/troupe \"x\"/actor-abi");
        for (rel, text) in render("my-actors", Some(sdk)) {
            assert!(!text.contains("{{"), "{rel} keeps a placeholder");
        }
        let files = render("my-actors", Some(sdk));
        let cargo = &files[0].1;
        assert!(cargo.contains(r#"troupe-actor-abi = { path = "/opt/troupe \"x\"/actor-abi" }"#), "{cargo}");
        assert!(cargo.contains("crate-type = [\"cdylib\"]") && cargo.contains("\n[workspace]\n"), "{cargo}");
        assert!(files[1].1.contains("\"my_actors.Greeter\" => Greeter"));
        assert!(cargo.contains("[dev-dependencies]\n# tests/in_process.rs"), "{cargo}");
        assert!(files[3].1.contains("node.create(\"my_actors.Greeter\")"), "{}", files[3].1);
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tools/ is in the repo");
        let in_repo = render("x", Some(&repo.join("actor-abi")));
        let testkit = serde_json::to_string(&repo.join("testkit").display().to_string()).unwrap();
        assert!(
            in_repo[0].1.contains(&format!("troupe-testkit = {{ path = {testkit} }}")),
            "{}",
            in_repo[0].1
        );
        let config = cargo_config(Path::new("/opt/troupe \"x\"/troupe"));
        assert!(config.contains("[env]\nTROUPE_NEW_BIN = \"/opt/troupe \\\"x\\\"/troupe\"\n"), "{config}");
        let by_version = render("x", None);
        assert!(by_version[0].1.contains("troupe-actor-abi = \"0."), "{}", by_version[0].1);
        assert!(by_version[0].1.contains("troupe-testkit = \"0."), "{}", by_version[0].1);
    }

    #[test]
    fn the_sdk_is_found_from_the_binary_in_a_checkout() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tools/ is in the repo");
        let exe = repo.join("target/debug/troupe");
        let found = find_sdk(None, Some(&exe)).ok().flatten();
        assert_eq!(found, repo.join("actor-abi").canonicalize().ok());
        assert_eq!(find_sdk(Some(repo), None).ok().flatten(), repo.join("actor-abi").canonicalize().ok());
        assert!(find_sdk(None, Some(Path::new("/usr/bin/troupe"))).is_ok_and(|f| f.is_none()));
        assert!(find_sdk(Some(Path::new("/")), None).is_err());
    }
}
