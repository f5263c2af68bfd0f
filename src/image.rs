//! The island image: its build context is compiled into the binary, so an installed `dejimad`
//! can build (or rebuild) `dejima/island:latest` with no checkout around.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::runtime::{Engine, Runtime};

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
    ("sshd_config", include_bytes!("../image/sshd_config"), 0o644),
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
    (
        "dejima-git-credential",
        include_bytes!("../image/dejima-git-credential"),
        0o755,
    ),
    ("profile.sh", include_bytes!("../image/profile.sh"), 0o644),
    (
        "dejima-agent-prep",
        include_bytes!("../image/dejima-agent-prep"),
        0o755,
    ),
];

/// The pinned agent CLIs (image/agent-clis.json): the one place their versions live.
const CLIS_JSON: &str = include_str!("../image/agent-clis.json");

#[derive(Debug, Clone, Deserialize)]
struct CliPins {
    registry: String,
    clis: Vec<CliPin>,
}

/// One npm package of native binaries for one architecture.
#[derive(Debug, Clone, Deserialize)]
pub struct CliPin {
    pub agent: String,
    pub package: String,
    pub version: String,
    pub arch: String,
    pub integrity: String,
    /// command name -> path in the package
    pub bin: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub keep: Vec<String>,
}

impl CliPin {
    /// The registry's tarball address (`{registry}/{package}/-/{basename}-{version}.tgz`).
    fn tarball_url(&self, registry: &str) -> String {
        let base = self.package.rsplit('/').next().unwrap_or(&self.package);
        format!(
            "{}/{}/-/{base}-{}.tgz",
            registry.trim_end_matches('/'),
            self.package,
            self.version
        )
    }

    fn file_name(&self) -> String {
        format!(
            "{}-{}.tgz",
            self.package.trim_start_matches('@').replace('/', "-"),
            self.version
        )
    }

    /// The directory under /opt/dejima/clis the package lands in.
    fn dir(&self) -> &str {
        &self.agent
    }
}

/// The CLIs pinned for this host's architecture (the engine runs what the host runs).
pub fn pinned_clis() -> Vec<CliPin> {
    let pins: CliPins = serde_json::from_str(CLIS_JSON).expect("image/agent-clis.json parses");
    pins.clis
        .into_iter()
        .filter(|c| c.arch == std::env::consts::ARCH)
        .collect()
}

fn registry() -> String {
    std::env::var("DEJIMA_NPM_REGISTRY")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| {
            serde_json::from_str::<CliPins>(CLIS_JSON)
                .map(|p| p.registry)
                .unwrap_or_default()
        })
}

/// Check bytes against an npm `sha512-<base64>` integrity string.
fn integrity_ok(integrity: &str, digest: &[u8]) -> bool {
    use base64::Engine as _;
    integrity
        .strip_prefix("sha512-")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .is_some_and(|want| want.as_slice() == digest)
}

/// The package's tarball in the cache, fetched (on the host, which trusts what the host
/// trusts) and checked against its pinned integrity first when missing. A tarball that does
/// not match is never used.
fn fetch_cli(pin: &CliPin, cache: &Path, out: &mut dyn FnMut(&[u8]) -> bool) -> Result<PathBuf> {
    use sha2::Sha512;
    let path = cache.join(pin.file_name());
    if let Ok(mut f) = fs::File::open(&path) {
        let mut h = Sha512::new();
        io::copy(&mut f, &mut h)?;
        if integrity_ok(&pin.integrity, &h.finalize()) {
            return Ok(path);
        }
        let _ = fs::remove_file(&path);
    }
    fs::create_dir_all(cache)?;
    let url = pin.tarball_url(&registry());
    out(format!("fetching {}@{} from {url}\n", pin.package, pin.version).as_bytes());
    let resp = ureq::AgentBuilder::new()
        .timeout_connect(std::time::Duration::from_secs(30))
        .timeout_read(std::time::Duration::from_secs(120))
        .build()
        .get(&url)
        .call()
        .map_err(|e| {
            Error::Unprocessable(format!(
                "cannot fetch {}@{} from {url}: {e}; check the host's network (or set \
                 DEJIMA_NPM_REGISTRY to a mirror), or build a slim image without agent CLIs",
                pin.package, pin.version
            ))
        })?;
    let tmp = cache.join(format!(".{}.part", pin.file_name()));
    let mut f = fs::File::create(&tmp)?;
    let mut h = Sha512::new();
    let mut r = resp.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(Error::Unprocessable(format!(
                    "fetching {}@{} broke off: {e}",
                    pin.package, pin.version
                )));
            }
        };
        h.update(&buf[..n]);
        io::Write::write_all(&mut f, &buf[..n])?;
    }
    f.sync_all()?;
    if !integrity_ok(&pin.integrity, &h.finalize()) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::Unprocessable(format!(
            "{}@{} from {url} does not match its pinned integrity; refusing it",
            pin.package, pin.version
        )));
    }
    fs::rename(&tmp, &path)?;
    Ok(path)
}

/// The build stage's install script: unpack each package's kept files under
/// /out/opt/dejima/clis/<agent>/ and link its commands from /out/usr/local/bin.
fn install_script(pins: &[(CliPin, String)]) -> String {
    let q = crate::session::tmux::sh_quote;
    let mut s = String::from("#!/bin/sh\n# Written by dejimad: unpacks the pinned agent CLIs.\nset -eu\nmkdir -p /out/usr/local/bin /out/opt/dejima/clis\n");
    for (pin, file) in pins {
        let dir = format!("/out/opt/dejima/clis/{}", pin.dir());
        let keep: Vec<String> = if pin.keep.is_empty() {
            vec![q("package")]
        } else {
            pin.keep
                .iter()
                .map(|k| q(&format!("package/{k}")))
                .collect()
        };
        s.push_str(&format!(
            "mkdir -p {d}\ntar -xzf /tmp/clis/{f} -C {d} --strip-components=1 --no-same-owner {k}\n",
            d = q(&dir),
            f = q(file),
            k = keep.join(" ")
        ));
        for (name, path) in &pin.bin {
            s.push_str(&format!(
                "chmod 0755 {p}\nln -sf {t} /out/usr/local/bin/{n}\n",
                p = q(&format!("{dir}/{path}")),
                t = q(&format!("/opt/dejima/clis/{}/{path}", pin.dir())),
                n = q(name)
            ));
        }
    }
    s
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildOpts {
    pub tag: String,
    /// Empty: the bootstrap base if present, else the registry base (callers fill in the
    /// daemon's configured base first).
    pub base: String,
    /// Rebuild even when the image was built from this exact context.
    pub force: bool,
    /// Leave the agent CLIs out (a slim image: custom and headless agents only).
    pub slim: bool,
}

impl Default for BuildOpts {
    fn default() -> Self {
        BuildOpts {
            tag: DEFAULT_IMAGE.into(),
            base: String::new(),
            force: false,
            slim: false,
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

/// Hash of the embedded context plus the build inputs that change the result (the base and
/// the pinned CLIs, named by their integrity).
pub fn context_hash(base: &str, clis: &[CliPin]) -> String {
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
    for c in clis {
        h.update(c.integrity.as_bytes());
        h.update([0]);
        for k in &c.keep {
            h.update(k.as_bytes());
            h.update([0]);
        }
        for (n, p) in &c.bin {
            h.update(n.as_bytes());
            h.update([0]);
            h.update(p.as_bytes());
            h.update([0]);
        }
    }
    format!("sha256:{}", crate::util::hex(&h.finalize()))
}

/// Write the embedded context into `dir` (fresh each time), with the CLI tarballs
/// (hard-linked from the cache where it can) and their install script under `clis/`.
fn write_context(dir: &Path, clis: &[(CliPin, PathBuf)]) -> io::Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("clis"))?;
    for (name, bytes, mode) in FILES {
        let p = dir.join(name);
        fs::write(&p, bytes)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(*mode))?;
    }
    let mut named = Vec::new();
    for (pin, src) in clis {
        let file = pin.file_name();
        let dst = dir.join("clis").join(&file);
        if fs::hard_link(src, &dst).is_err() {
            fs::copy(src, &dst)?;
        }
        named.push((pin.clone(), file));
    }
    let p = dir.join("clis").join("install.sh");
    fs::write(&p, install_script(&named))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
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
    let pins = if opts.slim { Vec::new() } else { pinned_clis() };
    let hash = context_hash(&base, &pins);
    if !opts.force && engine.image_label(&opts.tag, CONTEXT_LABEL)? == hash {
        out(format!("{} is up to date ({hash})\n", opts.tag).as_bytes());
        return Ok(false);
    }
    let ctx: PathBuf = work_dir.join(format!(
        "context-{}-{}",
        std::process::id(),
        crate::util::random_hex(4)
    ));
    let cache = work_dir.join("cache").join("npm");
    let mut clis = Vec::new();
    for pin in &pins {
        clis.push((pin.clone(), fetch_cli(pin, &cache, out)?));
    }
    write_context(&ctx, &clis)?;
    out(format!("building {} on {base} ({hash})\n", opts.tag).as_bytes());
    let args = vec![("BASE".to_string(), base.clone())];
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

/// Whether an image is there, and built from this binary's context.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Freshness {
    Current,
    Stale,
    Missing,
}

/// How `tag` compares with what this binary would build (full or slim).
pub fn freshness(engine: &Engine, tag: &str, base: &str) -> Result<Freshness> {
    if !engine.image_present(tag)? {
        return Ok(Freshness::Missing);
    }
    let label = engine.image_label(tag, CONTEXT_LABEL)?;
    let base = resolve_base(engine, "", base)?;
    Ok(
        if label == context_hash(&base, &pinned_clis()) || label == context_hash(&base, &[]) {
            Freshness::Current
        } else {
            Freshness::Stale
        },
    )
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
        let a = context_hash("x", &[]);
        assert_eq!(a, context_hash("x", &[]));
        assert_ne!(a, context_hash("y", &[]));
        assert_ne!(a, context_hash("x", &pinned_clis()));
        assert!(a.starts_with("sha256:"));
    }

    #[test]
    fn pins_parse_and_check() {
        let pins = pinned_clis();
        assert!(pins.iter().any(|p| p.agent == "claude-code"));
        assert!(pins.iter().any(|p| p.agent == "codex"));
        let c = &pins[0];
        assert!(c
            .tarball_url("https://r.example/")
            .starts_with("https://r.example/@"));
        assert!(c.tarball_url("https://r.example").ends_with(".tgz"));
        use sha2::Sha512;
        let d = Sha512::digest(b"x");
        use base64::Engine as _;
        let good = format!(
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(d)
        );
        assert!(integrity_ok(&good, &d));
        assert!(!integrity_ok(&good, &Sha512::digest(b"y")));
        assert!(!integrity_ok("sha1-abc", &d));
        let s = install_script(&[(c.clone(), c.file_name())]);
        assert!(s.contains("tar -xzf"), "{s}");
    }
}
