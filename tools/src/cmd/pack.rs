//! Making and checking source zips: `troupe pack` (with `--build`, which runs cargo, and
//! stripping), `troupe keygen` and `troupe verify`. Nothing here talks to a node.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use troupe_node::archive::{ActorTypeEntry, PackInput};
use troupe_node::plugin::PluginInfo;

use crate::{refused, usage, Failure, EXIT_OK};

/// Builds the plugin crate in `dir` with cargo (release) and returns its cdylib files, as cargo
/// reports them (so workspace target dirs and renamed libraries just work).
pub(crate) fn build_cdylibs(dir: &Path) -> Result<Vec<PathBuf>, Failure> {
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
    if !out.status.success() {
        return Err(refused(anyhow!("cargo build of {} failed", dir.display())));
    }
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    let mut libs = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
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
    if libs.is_empty() {
        return Err(usage(anyhow!(
            "{} builds no cdylib — set crate-type = [\"cdylib\"] in its [lib]",
            dir.display()
        )));
    }
    Ok(libs)
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
    let bytes = std::fs::read(zip).map_err(|e| usage(anyhow!("cannot read {}: {e}", zip.display())))?;
    let keys = troupe_node::signing::TrustedKeys::load(trusted).map_err(|e| usage(anyhow!(e)))?;
    let source = troupe_node::archive::open(&bytes, &troupe_node::archive::ArchiveLimits::default())
        .map_err(|e| refused(anyhow!("{}: {e}", zip.display())))?;
    let signer = keys.verify(&source).map_err(|e| refused(anyhow!("{}: {e}", zip.display())))?;
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

/// `troupe pack -o ZIP CDYLIB...`: each library stripped (unless `strip` is false) and
/// inspected for its actor types, the manifest signed with `sign` if given.
pub(crate) fn pack(
    output: &Path,
    name: Option<String>,
    version: Option<String>,
    sign: Option<&Path>,
    strip: bool,
    cdylibs: &[PathBuf],
) -> Result<u8, Failure> {
    let key = match sign {
        Some(k) => Some(troupe_node::signing::SecretKey::load(k).map_err(|e| usage(anyhow!(e)))?),
        None => None,
    };
    let mut inputs = Vec::new();
    let mut first: Option<PluginInfo> = None;
    for path in cdylibs {
        let (input, info) = pack_input(path, strip)?;
        inputs.push(input);
        first.get_or_insert(info);
    }
    let Some(first) = first else {
        return Err(usage(anyhow!("no cdylib given")));
    };
    let package = troupe_node::archive::PackageInfo {
        name: name.unwrap_or(first.name),
        version: version.unwrap_or(first.version),
        abi_version: troupe_actor_abi::abi::ABI_VERSION,
        msg_schema: troupe_actor_abi::abi::MSG_SCHEMA,
        target: troupe_node::TARGET.to_string(),
    };
    let signer = key.as_ref().map(|k| |manifest: &[u8]| k.sign_manifest(manifest));
    let zip =
        troupe_node::archive::pack_signed(&package, &inputs, signer).map_err(|e| refused(anyhow!(e)))?;
    std::fs::write(output, &zip).map_err(|e| refused(anyhow!("cannot write {}: {e}", output.display())))?;
    eprintln!(
        "packed {} ({} bytes, {} librar{}): {}",
        output.display(),
        zip.len(),
        inputs.len(),
        if inputs.len() == 1 { "y" } else { "ies" },
        troupe_node::archive::sha256_hex(&zip)
    );
    Ok(EXIT_OK)
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
    let info = troupe_node::plugin::inspect(path)
        .map_err(|e| refused(anyhow!(e).context(format!("{} is not a loadable plugin", path.display()))))?;
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| usage(anyhow!("{} has no usable file name", path.display())))?
        .to_string();
    let actors = info
        .actor_types
        .iter()
        .map(|t| ActorTypeEntry { type_name: t.name.clone(), requires: t.requirements.clone(), replaces: vec![] })
        .collect();
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
