//! `dejima doctor`: what this host needs for islands to work, checked from the daemon's side
//! (the engine, the image, the socket, disk, memory, the file limit, the panic switch, the
//! clock), each with what is wrong and what would fix it; `fix` does only what is safe
//! (build the image, tighten the socket, raise the file limit) and says what it changed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::island::Islands;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub name: String,
    pub status: Level,
    pub detail: String,
    /// What `fix` would do about it (none: a person has to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// What to do by hand, when fix cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
    /// What a fix run changed.
    #[serde(default)]
    pub fixed: Vec<String>,
}

const GIB: u64 = 1 << 30;
/// The file limit below which the daemon warns (each session holds a few descriptors).
const NOFILE_WANT: u64 = 8192;

fn check(name: &str, status: Level, detail: String) -> Check {
    Check {
        name: name.into(),
        status,
        detail,
        fix: None,
        hint: None,
    }
}

fn meminfo() -> (u64, u64, u64) {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (get("MemTotal"), get("MemAvailable"), get("SwapTotal"))
}

fn gib(b: u64) -> String {
    format!("{:.1} GiB", b as f64 / GIB as f64)
}

/// Every check, in order.
pub fn run(islands: &Islands, socket: &Path) -> Report {
    let mut checks = Vec::new();
    let engine = &islands.images;
    let info = engine.info();
    match &info {
        Ok(i) => checks.push(check(
            "engine",
            Level::Ok,
            format!("docker {} answers (root {})", i.version, i.root_dir),
        )),
        Err(e) => {
            let mut c = check(
                "engine",
                Level::Fail,
                format!("the engine does not answer: {e}"),
            );
            c.hint = Some("start it (scripts/up, or systemctl start docker)".into());
            checks.push(c);
        }
    }
    let image = islands.config.default_image.clone();
    if info.is_ok() {
        match crate::image::freshness(engine, &image, &islands.config.base_image) {
            Ok(crate::image::Freshness::Current) => {
                checks.push(check("image", Level::Ok, format!("{image} is current")))
            }
            Ok(crate::image::Freshness::Stale) => {
                let mut c = check(
                    "image",
                    Level::Warn,
                    format!("{image} was built from another version of its build context"),
                );
                c.fix = Some("build it again".into());
                checks.push(c);
            }
            Ok(crate::image::Freshness::Missing) => {
                let mut c = check("image", Level::Fail, format!("{image} is not built"));
                c.fix = Some("build it".into());
                checks.push(c);
            }
            Err(e) => checks.push(check("image", Level::Warn, format!("cannot tell: {e}"))),
        }
        match engine.image_run(&image, &["tmux", "-V"]) {
            Ok(v) => checks.push(check(
                "tmux",
                Level::Ok,
                format!("{} in the image", v.trim()),
            )),
            Err(e) => checks.push(check(
                "tmux",
                Level::Fail,
                format!("tmux does not run in {image}: {e}"),
            )),
        }
    }
    match std::fs::metadata(socket) {
        Ok(m) if m.permissions().mode() & 0o077 == 0 => checks.push(check(
            "socket",
            Level::Ok,
            format!("{} is the daemon user's alone", socket.display()),
        )),
        Ok(m) => {
            let mut c = check(
                "socket",
                Level::Warn,
                format!(
                    "{} is mode {:o}: others may drive the daemon as its owner",
                    socket.display(),
                    m.permissions().mode() & 0o777
                ),
            );
            c.fix = Some("chmod 600".into());
            checks.push(c);
        }
        Err(e) => checks.push(check(
            "socket",
            Level::Fail,
            format!("{}: {e}", socket.display()),
        )),
    }
    if let Ok(i) = &info {
        match nix::sys::statvfs::statvfs(Path::new(&i.root_dir)) {
            Ok(v) => {
                let free = v.blocks_available() as u64 * v.fragment_size() as u64;
                let level = if free < GIB {
                    Level::Fail
                } else if free < 5 * GIB {
                    Level::Warn
                } else {
                    Level::Ok
                };
                let mut c = check(
                    "disk",
                    level,
                    format!("{} free for images and volumes ({})", gib(free), i.root_dir),
                );
                if level != Level::Ok {
                    c.hint = Some("free space (docker system prune; purge old islands)".into());
                }
                checks.push(c);
            }
            Err(e) => checks.push(check("disk", Level::Warn, format!("{}: {e}", i.root_dir))),
        }
    }
    let (total, available, swap) = meminfo();
    let level = if available < GIB / 2 {
        Level::Fail
    } else if available < GIB {
        Level::Warn
    } else {
        Level::Ok
    };
    checks.push(check(
        "memory",
        level,
        format!(
            "{} total, {} available, {} swap",
            gib(total),
            gib(available),
            gib(swap)
        ),
    ));
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft >= NOFILE_WANT => checks.push(check(
            "open files",
            Level::Ok,
            format!("the daemon may hold {soft} (hard {hard})"),
        )),
        Ok((soft, hard)) => {
            let mut c = check(
                "open files",
                Level::Warn,
                format!("the daemon may hold only {soft} open files (hard {hard})"),
            );
            if hard > soft {
                c.fix = Some(format!("raise it to {}", hard.min(65536)));
            } else {
                c.hint = Some("raise LimitNOFILE (dejima service install sets 65536)".into());
            }
            checks.push(c);
        }
        Err(e) => checks.push(check("open files", Level::Warn, e.to_string())),
    }
    let p = islands.panic_status();
    checks.push(if p.panicked {
        let mut c = check(
            "panic switch",
            Level::Warn,
            format!(
                "engaged{}: nothing starts",
                p.reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
        );
        c.hint = Some("dejima panic clear, once it is safe".into());
        c
    } else {
        check("panic switch", Level::Ok, "not engaged".into())
    });
    if let Ok(i) = &info {
        if let Some(t) = crate::util::parse_rfc3339(&i.system_time) {
            let skew = (crate::util::unix_now() as i64 - t as i64).unsigned_abs();
            checks.push(if skew > 5 {
                let mut c = check(
                    "clock",
                    Level::Warn,
                    format!("the engine's clock is {skew} s off this host's"),
                );
                c.hint = Some("sync the clocks (NTP)".into());
                c
            } else {
                check(
                    "clock",
                    Level::Ok,
                    format!("in step with the engine (±{skew} s)"),
                )
            });
        }
    }
    let ok = checks.iter().all(|c| c.status != Level::Fail);
    Report {
        ok,
        checks,
        fixed: Vec::new(),
    }
}

/// Do what is safe about what `run` found, then check again.
pub fn fix(islands: &Arc<Islands>, socket: &Path) -> Report {
    let before = run(islands, socket);
    let mut fixed = Vec::new();
    for c in before.checks.iter().filter(|c| c.fix.is_some()) {
        match c.name.as_str() {
            "image" => {
                let opts = crate::image::BuildOpts {
                    tag: islands.config.default_image.clone(),
                    base: islands.config.base_image.clone(),
                    ..Default::default()
                };
                let r = crate::image::BuildSlot::try_claim().and_then(|slot| {
                    crate::image::build(
                        &islands.images,
                        &islands.home.image_dir(),
                        &opts,
                        &slot,
                        &mut |_| true,
                    )
                });
                match r {
                    Ok(_) => fixed.push(format!("built {}", opts.tag)),
                    Err(e) => fixed.push(format!("could not build {}: {e}", opts.tag)),
                }
            }
            "socket" => {
                match std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)) {
                    Ok(()) => fixed.push(format!("{} is mode 600 now", socket.display())),
                    Err(e) => fixed.push(format!("could not chmod {}: {e}", socket.display())),
                }
            }
            "open files" => {
                use nix::sys::resource::{getrlimit, setrlimit, Resource};
                if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
                    let want = hard.min(65536);
                    match setrlimit(Resource::RLIMIT_NOFILE, want, hard) {
                        Ok(()) => fixed.push(format!("the daemon may hold {want} open files now")),
                        Err(e) => fixed.push(format!("could not raise the file limit: {e}")),
                    }
                }
            }
            _ => {}
        }
    }
    Report {
        fixed,
        ..run(islands, socket)
    }
}
