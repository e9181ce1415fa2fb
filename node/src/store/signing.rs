//! Signed sources and shared secrets.
//!
//! **Signatures.** A source may carry `troupe.sig` (see [`crate::store::archive::SIGNATURE_NAME`]): an
//! ed25519 signature over the manifest's exact bytes. The manifest lists every cdylib's sha256,
//! and the archive reader checks those before anything else, so one signature covers the whole
//! source. A node started with `--authority ed25519 --trusted-keys DIR` accepts a source only if
//! it is signed by one of the public keys in `DIR` (several at once, for key rotation), checked
//! with `verify_strict` (no malleable or small-order signatures).
//!
//! Key files are one line of text: `troupe-ed25519-secret <64 hex>` (`NAME.key`, mode 0600) and
//! `troupe-ed25519-public <64 hex>` (`NAME.pub`). The signature entry is TOML:
//! `key = "<public key hex>"` and `signature = "<128 hex>"`.
//!
//! **Shared secrets.** [`Secret`] holds the convention's shared secret for the HMAC-SHA256
//! challenge every connection answers before anything else is read (see [`crate::admin::server`]).

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::store::archive::Source;

const SECRET_TAG: &str = "troupe-ed25519-secret";
const PUBLIC_TAG: &str = "troupe-ed25519-public";

/// Why a source's signature was not accepted. Each reason is distinct so a user knows what to fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// No `troupe.sig` in the zip.
    #[error("the source is not signed — pack it with `troupe pack --sign KEY`")]
    Unsigned,
    /// `troupe.sig` is not a signature file.
    #[error("the signature entry is malformed: {0}")]
    Malformed(String),
    /// Signed, but by a key not in the trusted set.
    #[error("signed by key {key}, which is not one of the trusted keys — add its .pub file to the trusted-keys directory if you trust it")]
    UntrustedKey {
        /// The signer's public key (hex).
        key: String,
    },
    /// The signature does not verify: the manifest or the signature was altered.
    #[error("the signature by trusted key {key} does not match the manifest: the source was altered after signing")]
    BadSignature {
        /// The key name (file stem) it claims.
        key: String,
    },
}

impl SignatureError {
    /// A stable name per reason.
    pub fn kind(&self) -> &'static str {
        match self {
            SignatureError::Unsigned => "unsigned",
            SignatureError::Malformed(_) => "malformed_signature",
            SignatureError::UntrustedKey { .. } => "untrusted_key",
            SignatureError::BadSignature { .. } => "bad_signature",
        }
    }
}

/// Problems with key files.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// I/O.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not a key file of the expected kind.
    #[error("{path} is not a troupe {kind} key file (expected one line: `{tag} <64 hex digits>`)")]
    Format {
        /// The file.
        path: String,
        /// `secret` or `public`.
        kind: &'static str,
        /// The expected tag.
        tag: &'static str,
    },
    /// No public keys at all.
    #[error("no trusted keys (*.pub) in {0} — create a key pair with `troupe keygen -o NAME` and copy NAME.pub there")]
    NoKeys(String),
    /// No randomness.
    #[error("cannot get random bytes: {0}")]
    Random(String),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    key: String,
    signature: String,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.display().to_string(), source }
}

fn read_hex32(path: &Path, kind: &'static str, tag: &'static str) -> Result<[u8; 32], KeyError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let bad = || KeyError::Format { path: path.display().to_string(), kind, tag };
    let mut parts = text.split_whitespace();
    if parts.next() != Some(tag) {
        return Err(bad());
    }
    let hex = parts.next().ok_or_else(bad)?;
    let bytes = hex::decode(hex).map_err(|_| bad())?;
    bytes.try_into().map_err(|_| bad())
}

/// Fills `buf` from the operating system's random source.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(buf).map_err(|e| KeyError::Random(e.to_string()))
}

/// Creates a key pair: `<base>.key` (secret, mode 0600) and `<base>.pub`. Refuses to overwrite.
pub fn keygen(base: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
    let mut seed = [0u8; 32];
    random_bytes(&mut seed)?;
    let signing = SigningKey::from_bytes(&seed);
    let secret_path = base.with_extension("key");
    let public_path = base.with_extension("pub");
    for p in [&secret_path, &public_path] {
        if p.exists() {
            return Err(KeyError::Io {
                path: p.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; not overwriting a key",
                ),
            });
        }
    }
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&secret_path)
            .map_err(io(&secret_path))?;
        writeln!(f, "{SECRET_TAG} {}", hex::encode(seed)).map_err(io(&secret_path))?;
    }
    std::fs::write(
        &public_path,
        format!("{PUBLIC_TAG} {}\n", hex::encode(signing.verifying_key().to_bytes())),
    )
    .map_err(io(&public_path))?;
    Ok((secret_path, public_path))
}

/// A secret key read from a `.key` file.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// Reads a `.key` file.
    pub fn load(path: &Path) -> Result<SecretKey, KeyError> {
        Ok(SecretKey(SigningKey::from_bytes(&read_hex32(path, "secret", SECRET_TAG)?)))
    }

    /// The signature entry for `manifest` (its exact bytes).
    pub fn sign_manifest(&self, manifest: &[u8]) -> Vec<u8> {
        let sig: Signature = self.0.sign(manifest);
        let file = SignatureFile {
            key: hex::encode(self.0.verifying_key().to_bytes()),
            signature: hex::encode(sig.to_bytes()),
        };
        toml::to_string(&file).unwrap_or_default().into_bytes()
    }
}

/// The public keys a node trusts, by name (file stem).
#[derive(Clone, Debug)]
pub struct TrustedKeys {
    keys: Vec<(String, VerifyingKey)>,
}

impl TrustedKeys {
    /// Reads every `*.pub` file in `dir`.
    pub fn load(dir: &Path) -> Result<TrustedKeys, KeyError> {
        let mut keys = Vec::new();
        let entries = std::fs::read_dir(dir).map_err(io(dir))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.extension().and_then(|e| e.to_str()) != Some("pub") {
                continue;
            }
            let bytes = read_hex32(&path, "public", PUBLIC_TAG)?;
            let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Format {
                path: path.display().to_string(),
                kind: "public",
                tag: PUBLIC_TAG,
            })?;
            let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("key").to_string();
            keys.push((name, key));
        }
        if keys.is_empty() {
            return Err(KeyError::NoKeys(dir.display().to_string()));
        }
        Ok(TrustedKeys { keys })
    }

    /// The trusted keys' names.
    pub fn names(&self) -> Vec<String> {
        self.keys.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Checks a source's signature; returns the name of the key that signed it.
    pub fn verify(&self, source: &Source) -> Result<String, SignatureError> {
        let Some(sig) = &source.signature else { return Err(SignatureError::Unsigned) };
        let text = std::str::from_utf8(sig).map_err(|_| SignatureError::Malformed("not UTF-8".into()))?;
        let file: SignatureFile =
            toml::from_str(text).map_err(|e| SignatureError::Malformed(e.message().to_string()))?;
        let key_bytes: [u8; 32] = hex::decode(&file.key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SignatureError::Malformed("key is not 64 hex digits".into()))?;
        let sig_bytes: [u8; 64] = hex::decode(&file.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SignatureError::Malformed("signature is not 128 hex digits".into()))?;
        let Some((name, key)) = self.keys.iter().find(|(_, k)| k.to_bytes() == key_bytes) else {
            return Err(SignatureError::UntrustedKey { key: file.key });
        };
        let signature = Signature::from_bytes(&sig_bytes);
        key.verify_strict(&source.manifest_bytes, &signature)
            .map_err(|_| SignatureError::BadSignature { key: name.clone() })?;
        Ok(name.clone())
    }
}

/// The convention's shared secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// A shared secret shorter than this is too easy to guess.
const MIN_SECRET_BYTES: usize = 16;

impl Secret {
    /// Reads a secret file (its bytes, surrounding whitespace trimmed).
    pub fn load(path: &Path) -> Result<Secret, KeyError> {
        let bytes = std::fs::read(path).map_err(io(path))?;
        let text = String::from_utf8_lossy(&bytes);
        let trimmed = text.trim().as_bytes().to_vec();
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(KeyError::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("a shared secret must be at least {MIN_SECRET_BYTES} bytes (try: head -c 32 /dev/urandom | base64 > FILE)"),
                ),
            });
        }
        Ok(Secret(trimmed))
    }

    /// A secret from bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> Secret {
        Secret(bytes.to_vec())
    }

    /// HMAC-SHA256 of `parts` (concatenated, each length-prefixed so parts cannot be shifted).
    pub fn mac(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.mac_state(parts).finalize().into_bytes().to_vec()
    }

    fn mac_state(&self, parts: &[&[u8]]) -> hmac::Hmac<sha2::Sha256> {
        // HMAC accepts keys of any length; this cannot fail.
        let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        for p in parts {
            m.update(&(p.len() as u64).to_be_bytes());
            m.update(p);
        }
        m
    }

    /// Checks a MAC in constant time.
    pub fn verify(&self, parts: &[&[u8]], mac: &[u8]) -> bool {
        self.mac_state(parts).verify_slice(mac).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_verify_only_with_the_same_secret_and_parts() {
        let a = Secret::from_bytes(b"0123456789abcdef-secret");
        let b = Secret::from_bytes(b"0123456789abcdef-other!");
        let mac = a.mac(&[b"nonce", b"client"]);
        assert!(a.verify(&[b"nonce", b"client"], &mac));
        assert!(!b.verify(&[b"nonce", b"client"], &mac));
        assert!(!a.verify(&[b"nonceclient"], &mac), "parts are length-prefixed");
        assert!(!a.verify(&[b"other", b"client"], &mac));
    }

    #[test]
    fn keygen_sign_verify_and_every_rejection_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (secret, public) = keygen(&dir.path().join("alice")).unwrap();
        assert!(keygen(&dir.path().join("alice")).is_err(), "never overwrites a key");
        let trusted_dir = dir.path().join("trusted");
        std::fs::create_dir(&trusted_dir).unwrap();
        std::fs::copy(&public, trusted_dir.join("alice.pub")).unwrap();
        let trusted = TrustedKeys::load(&trusted_dir).unwrap();
        let key = SecretKey::load(&secret).unwrap();
        let manifest = b"[package]\nname = \"x\"\n".to_vec();
        let source = |sig: Option<Vec<u8>>, manifest: &[u8]| Source {
            hash: String::new(),
            manifest: crate::store::archive::Manifest {
                package: crate::store::archive::PackageInfo {
                    name: "x".into(),
                    version: "1".into(),
                    abi_version: 1,
                    msg_schema: 1,
                    target: "t".into(),
                },
                cdylibs: Vec::new(),
            },
            manifest_bytes: manifest.to_vec(),
            signature: sig,
            files: Vec::new(),
        };
        let sig = key.sign_manifest(&manifest);
        assert_eq!(trusted.verify(&source(Some(sig.clone()), &manifest)), Ok("alice".into()));
        assert_eq!(trusted.verify(&source(None, &manifest)), Err(SignatureError::Unsigned));
        let mut altered = manifest.clone();
        altered[0] = b'#';
        assert_eq!(trusted.verify(&source(Some(sig.clone()), &altered)).unwrap_err().kind(), "bad_signature");
        let (other, _) = keygen(&dir.path().join("mallory")).unwrap();
        let other_sig = SecretKey::load(&other).unwrap().sign_manifest(&manifest);
        assert_eq!(trusted.verify(&source(Some(other_sig), &manifest)).unwrap_err().kind(), "untrusted_key");
        assert_eq!(
            trusted.verify(&source(Some(b"garbage".to_vec()), &manifest)).unwrap_err().kind(),
            "malformed_signature"
        );
    }
}
