//! Making and checking source zips: `troupe pack` (with `--build`, which runs cargo, and
//! stripping), `troupe keygen` and `troupe verify`. Nothing here talks to a node.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::anyhow;
use troupe_node::archive::PackInput;
use troupe_node::plugin::PluginInfo;

use crate::{refused, usage, Failure, EXIT_OK};

/// Builds the plugin crate in `dir` with cargo (release) and returns its cdylib files, as cargo
/// reports them (so workspace target dirs and renamed libraries just work).
pub(crate) fn build_cdylibs(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
    build_cdylibs_timed(dir).map(|(libs, _)| libs)
}

/// [`build_cdylibs`], and the moment cargo exited (what `troupe watch` times from). Cargo's
/// diagnostics go to our stderr as cargo writes them.
pub(crate) fn build_cdylibs_timed(dir: &Path) -> Result<(Vec<PathBuf>, Instant), Failure> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(usage(anyhow!(
            "{} has no Cargo.toml — give the directory of a plugin crate",
            dir.display()
        )));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["build", "--release", "--message-format=json-render-diagnostics", "--manifest-path"])
        .arg(&manifest)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| refused(anyhow!("cannot run cargo: {e}")))?;
    let exited = Instant::now();
    if !out.status.success() {
        return Err(refused(anyhow!("cargo build of {} failed", dir.display())));
    }
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    let libs = cdylibs_built(&String::from_utf8_lossy(&out.stdout), &manifest);
    if libs.is_empty() {
        return Err(usage(anyhow!(
            "{} builds no cdylib — set crate-type = [\"cdylib\"] in its [lib]",
            dir.display()
        )));
    }
    Ok((libs, exited))
}

/// The `.so` files of the cdylib targets of the package at `manifest`, from cargo's JSON
/// messages.
fn cdylibs_built(messages: &str, manifest: &Path) -> Vec<PathBuf> {
    let mut libs = Vec::new();
    for line in messages.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let is_ours = msg["manifest_path"].as_str().map(Path::new).is_some_and(|p| p == manifest);
        let is_cdylib = msg["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if is_ours && is_cdylib {
            for f in msg["filenames"].as_array().into_iter().flatten() {
                if let Some(f) = f.as_str().filter(|f| f.ends_with(".so")) {
                    libs.push(PathBuf::from(f));
                }
            }
        }
    }
    libs
}

/// `troupe keygen -o NAME`.
pub(crate) fn keygen(output: &Path) -> Result<u8, Failure> {
    let (secret, public) = troupe_node::signing::keygen(output).map_err(|e| refused(anyhow!(e)))?;
    println!(
        "secret key: {} (keep it private)\npublic key: {} (copy it into a --trusted-keys directory)",
        secret.display(),
        public.display()
    );
    Ok(EXIT_OK)
}

/// `troupe verify ZIP --trusted-keys DIR`.
pub(crate) fn verify(zip: &Path, trusted: &Path) -> Result<u8, Failure> {
    let bytes = super::load::read_zip(zip, "give the path of a zip written by `troupe pack`")?;
    let keys = troupe_node::signing::TrustedKeys::load(trusted).map_err(|e| usage(anyhow!(e)))?;
    let source = troupe_node::archive::open(&bytes, &troupe_node::archive::ArchiveLimits::default())
        .map_err(|e| refused(anyhow!("{}: {e}", zip.display())))?;
    let signer = keys.verify(&source).map_err(|e| refused(anyhow!("{}: {e}", zip.display())))?;
    check_roots(&source).map_err(|e| refused(e.context(format!("{}", zip.display()))))?;
    println!(
        "{}: signed by {signer}; {} {}, {} librar{}, hash {}",
        zip.display(),
        source.manifest.package.name,
        source.manifest.package.version,
        source.files.len(),
        if source.files.len() == 1 { "y" } else { "ies" },
        source.hash
    );
    Ok(EXIT_OK)
}

/// Each library's plugin root, read from its bytes (never loaded), declares the actor types
/// and requirements the manifest lists for it.
fn check_roots(source: &troupe_node::archive::Source) -> anyhow::Result<()> {
    for entry in &source.manifest.cdylibs {
        let Some(file) = source.files.iter().find(|f| f.name == entry.file) else {
            return Err(anyhow!("the manifest lists {}, which the zip does not hold", entry.file));
        };
        let root = troupe_node::store::root::read(&file.name, &file.bytes)?;
        let declared: Vec<(&str, &[String])> =
            root.info.actor_types.iter().map(|t| (t.name.as_str(), t.requirements.as_slice())).collect();
        let listed: Vec<(&str, &[String])> =
            entry.actors.iter().map(|a| (a.type_name.as_str(), a.requires.as_slice())).collect();
        if declared != listed {
            return Err(anyhow!(
                "the manifest lists for {} the types {listed:?}, its plugin root declares {declared:?}",
                file.name
            ));
        }
    }
    Ok(())
}

/// How `troupe pack` makes a zip, besides the libraries.
#[derive(Debug, Default)]
pub(crate) struct PackOptions {
    /// Package name (default: the first library's crate name).
    pub name: Option<String>,
    /// Package version (default: the first library's crate version).
    pub version: Option<String>,
    /// Sign the manifest with this secret key.
    pub sign: Option<PathBuf>,
    /// Pack the libraries as they are, with symbols and debug info.
    pub no_strip: bool,
    /// `--rename OLD=NEW`: type NEW `replaces` OLD (its actors in a live upgrade).
    pub renames: Vec<(String, String)>,
    /// Compress for speed rather than size (`troupe watch`).
    pub fast: bool,
}

/// `troupe pack -o ZIP CDYLIB...`: writes the zip of [`pack_zip`] and says what it holds.
pub(crate) fn pack(output: &Path, options: &PackOptions, cdylibs: &[PathBuf]) -> Result<u8, Failure> {
    let (zip, libraries) = pack_zip(options, cdylibs)?;
    std::fs::write(output, &zip).map_err(|e| refused(anyhow!("cannot write {}: {e}", output.display())))?;
    eprintln!(
        "packed {} ({} bytes, {libraries} librar{}): {}",
        output.display(),
        zip.len(),
        if libraries == 1 { "y" } else { "ies" },
        troupe_node::archive::sha256_hex(&zip)
    );
    Ok(EXIT_OK)
}

/// The zip of `cdylibs` (each stripped unless told not to, and inspected for its actor types,
/// the renames applied, the manifest signed if asked) and how many libraries it holds.
pub(crate) fn pack_zip(options: &PackOptions, cdylibs: &[PathBuf]) -> Result<(Vec<u8>, usize), Failure> {
    let key = match &options.sign {
        Some(k) => Some(troupe_node::signing::SecretKey::load(k).map_err(|e| usage(anyhow!(e)))?),
        None => None,
    };
    let mut inputs = Vec::new();
    let mut first: Option<PluginInfo> = None;
    for path in cdylibs {
        let (input, info) = pack_input(path, !options.no_strip)?;
        inputs.push(input);
        first.get_or_insert(info);
    }
    let Some(first) = first else {
        return Err(usage(anyhow!("no cdylib given")));
    };
    apply_renames(&mut inputs, &options.renames)?;
    let package = troupe_node::archive::PackageInfo {
        name: options.name.clone().unwrap_or(first.name),
        version: options.version.clone().unwrap_or(first.version),
        abi_version: troupe_actor_abi::abi::ABI_VERSION,
        msg_schema: troupe_actor_abi::abi::MSG_SCHEMA,
        target: troupe_node::TARGET.to_string(),
    };
    let signer = key.as_ref().map(|k| |manifest: &[u8]| k.sign_manifest(manifest));
    let compression = if options.fast {
        troupe_node::archive::Compression::Fast
    } else {
        troupe_node::archive::Compression::Small
    };
    let zip = troupe_node::archive::pack_signed_at(&package, &inputs, signer, compression)
        .map_err(|e| refused(anyhow!(e)))?;
    Ok((zip, inputs.len()))
}

/// `--rename OLD=NEW`: adds OLD to the `replaces` of type NEW, which the libraries must export.
fn apply_renames(inputs: &mut [PackInput], renames: &[(String, String)]) -> Result<(), Failure> {
    for (i, (old, new)) in renames.iter().enumerate() {
        if old == new {
            return Err(usage(anyhow!(
                "--rename {old}={new} renames nothing: a type always takes over its own name"
            )));
        }
        if let Some((_, other)) = renames[..i].iter().find(|(o, _)| o == old) {
            return Err(usage(anyhow!(
                "--rename gives {old} twice ({other} and {new}): its actors can become only one type"
            )));
        }
        let entry = inputs.iter_mut().flat_map(|i| i.actors.iter_mut()).find(|a| a.type_name == *new);
        let Some(entry) = entry else {
            let exported: Vec<&str> =
                inputs.iter().flat_map(|i| i.actors.iter()).map(|a| a.type_name.as_str()).collect();
            return Err(usage(anyhow!(
                "--rename {old}={new}: the libraries export no type {new} (they export {})",
                if exported.is_empty() { "none".to_string() } else { exported.join(", ") }
            )));
        };
        entry.replaces.push(old.clone());
    }
    Ok(())
}

/// One library as it goes into the zip (stripped if `strip` and `strip` works), with what
/// its plugin root says about it.
fn pack_input(path: &Path, strip: bool) -> Result<(PackInput, PluginInfo), Failure> {
    let mut bytes = std::fs::read(path).map_err(|e| usage(anyhow!("cannot read {}: {e}", path.display())))?;
    if strip {
        match stripped(path) {
            Ok(b) => bytes = b,
            Err(e) => {
                eprintln!("troupe: packing {} unstripped: {e} (--no-strip silences this)", path.display())
            }
        }
    }
    if troupe_node::store::elf::sets_nodelete(&bytes) {
        eprintln!(
            "troupe: warning: {} sets DF_1_NODELETE (linked with -z nodelete); nodes clear it in their \
             copy at load so that the library can be unloaded",
            path.display()
        );
    }
    // Read from the bytes that are packed, never by loading them: the library's constructors
    // do not run here, with the signing key at hand.
    let info = troupe_node::store::root::read(&path.display().to_string(), &bytes)
        .map_err(|e| refused(anyhow!(e).context(format!("{} is not a loadable plugin", path.display()))))?
        .info;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| usage(anyhow!("{} has no usable file name", path.display())))?
        .to_string();
    let actors = info.manifest_entries();
    Ok((PackInput { file_name, bytes, actors }, info))
}

/// The bytes of `path` without symbols or debug info, as `strip` (or `$STRIP`) writes them.
fn stripped(path: &Path) -> Result<Vec<u8>, String> {
    let program = std::env::var_os("STRIP").unwrap_or_else(|| "strip".into());
    let dir = tempfile::tempdir().map_err(|e| format!("cannot make a temporary directory: {e}"))?;
    let out = dir.path().join("stripped.so");
    let result = std::process::Command::new(&program)
        .arg("-o")
        .arg(&out)
        .arg(path)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.to_string_lossy()))?;
    if !result.status.success() {
        return Err(format!(
            "{} failed: {}",
            program.to_string_lossy(),
            String::from_utf8_lossy(&result.stderr).trim()
        ));
    }
    std::fs::read(&out).map_err(|e| format!("cannot read the stripped library: {e}"))
}
