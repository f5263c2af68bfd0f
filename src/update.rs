//! Self-update: find out whether a newer dejimad exists, and put it in place of the running
//! binaries, atomically, then have the daemon re-execute itself (islands keep running and are
//! adopted by the new process).
//!
//! Two modes. `release`: a release index (JSON at `--update-index`) names the version and,
//! per platform, an archive URL with its SHA-256 and an ed25519 signature of the archive;
//! both are checked (a checksum served beside an archive proves nothing about who made it)
//! against `--update-key` before anything is unpacked. `source`: the daemon runs from a git
//! checkout (`--update-source`, or the checkout its binary was built in): fetch, fast-forward
//! only, `cargo build --release`, then the built binaries. Whatever fails leaves the old
//! binaries in place and says why.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::process::Run;

/// The binaries an update replaces, side by side in the install folder.
pub const BINARIES: [&str; 2] = ["dejimad", "dejima"];
/// Archives larger than this are refused.
const MAX_ARCHIVE: u64 = 512 << 20;

/// How this daemon updates.
#[derive(Debug, Clone)]
pub enum Mode {
    Release { index: String, key: [u8; 32] },
    Source { checkout: PathBuf },
    None,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    /// Where the running binaries are (replaced in place).
    pub install_dir: PathBuf,
}

/// What POST /v1/admin/update answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Plan {
    pub current: String,
    pub latest: String,
    pub mode: String,
    pub update_available: bool,
    pub applying: bool,
    /// Why it is not applying (attached clients, nothing newer, a dry run).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The clients an apply waits for (without force).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attached: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Index {
    version: String,
    #[serde(default)]
    archives: std::collections::BTreeMap<String, Archive>,
}

#[derive(Debug, Clone, Deserialize)]
struct Archive {
    url: String,
    sha256: String,
    /// base64 ed25519 signature of the archive's bytes.
    signature: String,
}

/// This platform's key in a release index, e.g. `x86_64-linux`.
pub fn platform() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// Parse a base64 ed25519 public key (32 bytes).
pub fn parse_key(b64: &str) -> std::result::Result<[u8; 32], String> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| "the update key is not base64".to_string())?;
    raw.try_into()
        .map_err(|_| "the update key must be 32 bytes (an ed25519 public key)".to_string())
}

/// Dotted versions compared as numbers (1.10.0 > 1.9.3); anything else as text.
fn newer(latest: &str, current: &str) -> bool {
    let parse = |v: &str| -> Option<Vec<u64>> {
        v.trim_start_matches('v')
            .split('.')
            .map(|p| p.parse().ok())
            .collect()
    };
    match (parse(latest), parse(current)) {
        (Some(a), Some(b)) => a > b,
        _ => latest != current,
    }
}

fn git(checkout: &Path, args: &[&str]) -> Result<String> {
    let mut argv = vec!["git", "-C", checkout.to_str().unwrap_or(".")];
    argv.extend(args);
    let out = Run::new(&argv)
        .timeout(Duration::from_secs(120))
        .run()
        .map_err(|e| Error::Unavailable(format!("git: {e}")))?;
    if !out.ok() {
        return Err(Error::Conflict(format!(
            "git {}: {}",
            args.join(" "),
            out.stderr_str().trim()
        )));
    }
    Ok(out.stdout_str().trim().to_string())
}

impl Config {
    /// What an update would do now (fetching the index or the upstream).
    pub fn plan(&self) -> Result<Plan> {
        let current = env!("CARGO_PKG_VERSION").to_string();
        match &self.mode {
            Mode::None => Err(Error::Conflict(
                "this daemon has no update source: start it with --update-index URL --update-key KEY, or run it from a git checkout"
                    .into(),
            )),
            Mode::Release { index, .. } => {
                let idx = fetch_index(index)?;
                Ok(Plan {
                    update_available: newer(&idx.version, &current),
                    latest: idx.version,
                    current,
                    mode: "release".into(),
                    ..Default::default()
                })
            }
            Mode::Source { checkout } => {
                git(checkout, &["fetch", "--quiet"])?;
                let head = git(checkout, &["rev-parse", "--short", "HEAD"])?;
                let upstream = git(checkout, &["rev-parse", "--short", "@{u}"])?;
                let behind: u64 = git(checkout, &["rev-list", "--count", "HEAD..@{u}"])?
                    .parse()
                    .unwrap_or(0);
                Ok(Plan {
                    current: format!("{current} ({head})"),
                    latest: upstream,
                    mode: "source".into(),
                    update_available: behind > 0,
                    ..Default::default()
                })
            }
        }
    }

    /// Put the new binaries in place (the running process is replaced by the caller).
    pub fn apply(&self) -> Result<()> {
        let staged = match &self.mode {
            Mode::None => return Err(Error::Conflict("no update source".into())),
            Mode::Release { index, key } => stage_release(index, key, &self.install_dir)?,
            Mode::Source { checkout } => stage_source(checkout, &self.install_dir)?,
        };
        // Each binary: the new file beside the old, then a rename over it (atomic per file);
        // the old one is kept as `.old` until the next update.
        for (name, new) in staged {
            let dst = self.install_dir.join(name);
            let old = self.install_dir.join(format!(".{name}.old"));
            let _ = std::fs::remove_file(&old);
            if dst.exists() {
                std::fs::hard_link(&dst, &old)
                    .map_err(|e| Error::Internal(format!("cannot keep {}: {e}", dst.display())))?;
            }
            std::fs::rename(&new, &dst)
                .map_err(|e| Error::Internal(format!("cannot install {}: {e}", dst.display())))?;
        }
        Ok(())
    }
}

fn fetch_index(url: &str) -> Result<Index> {
    let r = ureq::get(url)
        .timeout(Duration::from_secs(30))
        .call()
        .map_err(|e| Error::BadGateway(format!("the release index {url}: {e}")))?;
    let mut text = String::new();
    r.into_reader()
        .take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| Error::BadGateway(format!("the release index: {e}")))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::BadGateway(format!("the release index is not valid: {e}")))
}

/// Download, check the SHA-256 and the signature, unpack the binaries beside the old ones.
fn stage_release(index: &str, key: &[u8; 32], dir: &Path) -> Result<Vec<(&'static str, PathBuf)>> {
    let idx = fetch_index(index)?;
    let a = idx.archives.get(&platform()).cloned().ok_or_else(|| {
        Error::BadGateway(format!(
            "release {} has no archive for {}",
            idx.version,
            platform()
        ))
    })?;
    let base =
        url::Url::parse(index).map_err(|e| Error::BadGateway(format!("the index URL: {e}")))?;
    let url = base
        .join(&a.url)
        .map_err(|e| Error::BadGateway(format!("the archive URL: {e}")))?;
    let r = ureq::get(url.as_str())
        .timeout(Duration::from_secs(600))
        .call()
        .map_err(|e| Error::BadGateway(format!("the archive {url}: {e}")))?;
    let mut bytes = Vec::new();
    r.into_reader()
        .take(MAX_ARCHIVE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::BadGateway(format!("the archive: {e}")))?;
    if bytes.len() as u64 > MAX_ARCHIVE {
        return Err(Error::BadGateway("the archive is over 512 MiB".into()));
    }
    let sha = crate::util::hex(&Sha256::digest(&bytes));
    if !sha.eq_ignore_ascii_case(a.sha256.trim()) {
        return Err(Error::BadGateway(format!(
            "the archive's SHA-256 is {sha}, the index says {}; nothing was changed",
            a.sha256
        )));
    }
    let sig = base64::engine::general_purpose::STANDARD
        .decode(a.signature.trim())
        .ok()
        .and_then(|s| <[u8; 64]>::try_from(s).ok())
        .ok_or_else(|| {
            Error::BadGateway("the archive's signature is not 64 base64 bytes".into())
        })?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(key)
        .map_err(|e| Error::Internal(format!("the update key: {e}")))?;
    vk.verify_strict(&bytes, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| {
            Error::BadGateway(
                "the archive's signature does not verify with this daemon's update key; nothing was changed"
                    .into(),
            )
        })?;
    // Verified: only now is it unpacked, binaries only, into new files beside the old.
    let mut staged = Vec::new();
    let gz = flate2::read::GzDecoder::new(&bytes[..]);
    let mut ar = tar::Archive::new(gz);
    let entries = ar
        .entries()
        .map_err(|e| Error::BadGateway(format!("the archive: {e}")))?;
    for e in entries {
        let mut e = e.map_err(|e| Error::BadGateway(format!("the archive: {e}")))?;
        let path = e
            .path()
            .map_err(|e| Error::BadGateway(e.to_string()))?
            .into_owned();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| BINARIES.iter().find(|b| **b == n))
        else {
            continue;
        };
        if e.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let tmp = dir.join(format!(".{name}.new-{}", crate::util::random_hex(4)));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::Internal(format!("{}: {e}", tmp.display())))?;
        std::io::copy(&mut e, &mut f).map_err(|e| Error::Internal(e.to_string()))?;
        f.sync_all().map_err(|e| Error::Internal(e.to_string()))?;
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(|e| Error::Internal(e.to_string()))?;
        staged.push((*name, tmp));
    }
    if !staged.iter().any(|(n, _)| *n == "dejimad") {
        for (_, p) in &staged {
            let _ = std::fs::remove_file(p);
        }
        return Err(Error::BadGateway("the archive holds no dejimad".into()));
    }
    Ok(staged)
}

/// Fast-forward the checkout, build it, and stage what it built.
fn stage_source(checkout: &Path, dir: &Path) -> Result<Vec<(&'static str, PathBuf)>> {
    git(checkout, &["fetch", "--quiet"])?;
    git(checkout, &["merge", "--ff-only", "--quiet", "@{u}"])?;
    let target = checkout.join("target");
    let out = Run::new(&["cargo", "build", "--release", "--quiet"])
        .env("CARGO_TARGET_DIR", target.to_str().unwrap_or("target"))
        .timeout(Duration::from_secs(3600))
        .dir(checkout)
        .run()
        .map_err(|e| Error::Unavailable(format!("cargo: {e}")))?;
    if !out.ok() {
        let err = out.stderr_str();
        let tail: Vec<&str> = err.trim().lines().rev().take(8).collect();
        return Err(Error::Conflict(format!(
            "the build failed; the old binaries stay: {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )));
    }
    let mut staged = Vec::new();
    for name in BINARIES {
        let built = checkout.join("target/release").join(name);
        if !built.is_file() {
            continue;
        }
        let tmp = dir.join(format!(".{name}.new-{}", crate::util::random_hex(4)));
        std::fs::copy(&built, &tmp).map_err(|e| Error::Internal(e.to_string()))?;
        staged.push((name, tmp));
    }
    if staged.is_empty() {
        return Err(Error::Conflict("the build made no dejimad".into()));
    }
    Ok(staged)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert!(newer("0.10.0", "0.9.9"));
        assert!(!newer("0.1.0", "0.1.0"));
        assert!(!newer("0.1.0", "0.2.0"));
        assert!(newer("v1.0.0", "0.9.0"));
        assert!(parse_key("AAAA").is_err());
    }
}
