//! The island image: its build context is compiled into the binary, so an installed `dejimad`
//! can build (or rebuild) `dejima/island:latest` with no checkout around.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::runtime::Engine;

/// The default island image tag.
pub const DEFAULT_IMAGE: &str = "dejima/island:latest";
/// The label that records which context (and base) an image was built from.
pub const CONTEXT_LABEL: &str = "dejima.context";
/// The base `scripts/bootstrap-base-image` makes where no registry is reachable.
pub const BOOTSTRAP_BASE: &str = "dejima/base:bookworm";
/// Longest an image build may take (an apt mirror that stalls must not hold a request forever).
const BUILD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(45 * 60);
/// The base used where a registry is reachable.
pub const REGISTRY_BASE: &str = "debian:bookworm-slim";

/// (path in the context, bytes, mode)
const FILES: &[(&str, &[u8], u32)] = &[
    ("Dockerfile", include_bytes!("../image/Dockerfile"), 0o644),
    (
        "entrypoint.sh",
        include_bytes!("../image/entrypoint.sh"),
        0o755,
    ),
    ("tmux.conf", include_bytes!("../image/tmux.conf"), 0o644),
    (
        "dejima-supervise",
        include_bytes!("../image/dejima-supervise"),
        0o755,
    ),
    (
        "dejima-notify",
        include_bytes!("../image/dejima-notify"),
        0o755,
    ),
    (
        "claude-settings.json",
        include_bytes!("../image/claude-settings.json"),
        0o644,
    ),
];

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOpts {
    pub tag: String,
    /// Empty: the bootstrap base if present, else the registry base (callers fill in the
    /// daemon's configured base first).
    pub base: String,
    /// Rebuild even when the image was built from this exact context.
    pub force: bool,
    /// npm packages for real agent CLIs (opt-in; empty in tests).
    pub agent_clis: String,
}

impl Default for BuildOpts {
    fn default() -> Self {
        BuildOpts {
            tag: DEFAULT_IMAGE.into(),
            base: String::new(),
            force: false,
            agent_clis: String::new(),
        }
    }
}

/// Refuse build options that could reach docker as flags or be nonsense.
pub fn validate_opts(o: &BuildOpts) -> Result<()> {
    let bad =
        |s: &str| s.starts_with('-') || s.chars().any(|c| c.is_whitespace() || c.is_control());
    if o.tag.is_empty() || bad(&o.tag) {
        return Err(Error::bad(format!("invalid image tag {:?}", o.tag)));
    }
    if bad(&o.base) {
        return Err(Error::bad(format!("invalid base image {:?}", o.base)));
    }
    if o.agent_clis.split_whitespace().any(|p| p.starts_with('-'))
        || o.agent_clis.chars().any(|c| c.is_control())
    {
        return Err(Error::bad(
            "agent_clis must be npm package names separated by spaces",
        ));
    }
    Ok(())
}

/// Which base to build on: the one asked for, else the daemon's configured one
/// (`$DEJIMA_BASE_IMAGE`), else the bootstrap base if present, else the registry's.
pub fn resolve_base(engine: &Engine, requested: &str, configured: &str) -> Result<String> {
    for b in [requested, configured] {
        if !b.is_empty() {
            return Ok(b.to_string());
        }
    }
    Ok(if engine.image_present(BOOTSTRAP_BASE)? {
        BOOTSTRAP_BASE.into()
    } else {
        REGISTRY_BASE.into()
    })
}

/// One image build at a time: two would race on the tag and share the engine's build cache
/// locks for nothing. Held by its owner (a streaming response carries it) until dropped.
pub struct BuildSlot(());

static BUILDING: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

impl BuildSlot {
    /// The build slot, or a 409 while another build runs.
    pub fn try_claim() -> Result<BuildSlot> {
        let mut b = crate::util::lock(&BUILDING);
        if *b {
            return Err(Error::Conflict(
                "an image build is already running; wait for it to finish, then build again".into(),
            ));
        }
        *b = true;
        Ok(BuildSlot(()))
    }
}

impl Drop for BuildSlot {
    fn drop(&mut self) {
        *crate::util::lock(&BUILDING) = false;
    }
}

/// Hash of the embedded context plus the build inputs that change the result.
pub fn context_hash(base: &str, agent_clis: &str) -> String {
    let mut h = Sha256::new();
    for (name, bytes, mode) in FILES {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(mode.to_be_bytes());
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    }
    h.update(base.as_bytes());
    h.update([0]);
    h.update(agent_clis.as_bytes());
    format!("sha256:{}", crate::util::hex(&h.finalize()))
}

/// Write the embedded context into `dir` (fresh each time).
fn write_context(dir: &Path) -> io::Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    for (name, bytes, mode) in FILES {
        let p = dir.join(name);
        fs::write(&p, bytes)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

/// Build the image, streaming progress text to `out` (which returns false to give up, e.g.
/// when the listener went away). Returns Ok(true) when built, Ok(false) when already current.
pub fn build(
    engine: &Engine,
    work_dir: &Path,
    opts: &BuildOpts,
    _slot: &BuildSlot,
    out: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<bool> {
    let base = resolve_base(engine, &opts.base, "")?;
    let hash = context_hash(&base, &opts.agent_clis);
    if !opts.force && engine.image_label(&opts.tag, CONTEXT_LABEL)? == hash {
        out(format!("{} is up to date ({hash})\n", opts.tag).as_bytes());
        return Ok(false);
    }
    let ctx: PathBuf = work_dir.join(format!(
        "context-{}-{}",
        std::process::id(),
        crate::util::random_hex(4)
    ));
    write_context(&ctx)?;
    out(format!("building {} on {base} ({hash})\n", opts.tag).as_bytes());
    let mut args = vec![("BASE".to_string(), base.clone())];
    if !opts.agent_clis.is_empty() {
        args.push(("AGENT_CLIS".into(), opts.agent_clis.clone()));
    }
    let labels = [(CONTEXT_LABEL.to_string(), hash)];
    let result = (|| {
        let mut child = engine.build_image(&ctx, &opts.tag, &args, &labels)?;
        let _watchdog = crate::process::Watchdog::new(child.pid(), BUILD_TIMEOUT, "docker build")?;
        let mut stdout = child.stdout.take().expect("piped");
        let mut buf = [0u8; 8192];
        loop {
            match stdout.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if !out(&buf[..n]) {
                        return Err(Error::Conflict(
                            "image build abandoned by its caller".into(),
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        match child.wait() {
            Some(0) => Ok(true),
            code => Err(Error::Unprocessable(format!(
                "image build failed (docker build exit {code:?}); see the build output"
            ))),
        }
    })();
    let _ = fs::remove_dir_all(&ctx);
    result
}

/// Make sure `image` exists, building it from the embedded context when it is ours.
pub fn ensure(engine: &Engine, work_dir: &Path, image: &str, base: &str) -> Result<()> {
    if engine.image_present(image)? {
        return Ok(());
    }
    if image != DEFAULT_IMAGE {
        return Err(Error::Unprocessable(format!(
            "image {image:?} is not present on the engine and is not one dejimad can build"
        )));
    }
    log::info!("island image {image} missing; building it");
    let opts = BuildOpts {
        tag: image.to_string(),
        base: base.to_string(),
        ..BuildOpts::default()
    };
    // Never waits behind another build (which may run for many minutes while this caller
    // holds an island's busy mark): try again when it is done.
    let slot = BuildSlot::try_claim()?;
    build(engine, work_dir, &opts, &slot, &mut |chunk| {
        log::debug!("build: {}", String::from_utf8_lossy(chunk).trim_end());
        true
    })
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_depends_on_inputs() {
        let a = context_hash("x", "");
        assert_eq!(a, context_hash("x", ""));
        assert_ne!(a, context_hash("y", ""));
        assert_ne!(a, context_hash("x", "@openai/codex"));
        assert!(a.starts_with("sha256:"));
    }
}
