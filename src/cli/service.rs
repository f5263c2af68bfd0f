//! dejima service install | uninstall | status: run dejimad under the host's service manager
//! (a systemd unit on Linux, a launchd plist on macOS). The daemon restarts on failure, gets a
//! raised file limit, and is stopped with SIGTERM alone: islands keep running and the next
//! start adopts them.

use std::path::{Path, PathBuf};
use std::process::Command;

use argh::FromArgs;

use super::{fail, Out};

const UNIT: &str = "dejimad.service";
const LABEL: &str = "dev.dejima.dejimad";

/// run dejimad as a service (systemd on Linux, launchd on macOS)
#[derive(FromArgs)]
#[argh(subcommand, name = "service")]
pub struct ServiceCmd {
    #[argh(subcommand)]
    cmd: ServiceSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum ServiceSub {
    Install(Install),
    Uninstall(Uninstall),
    Status(Status),
}

/// write the service file, enable and start it where the service manager runs
#[derive(FromArgs)]
#[argh(subcommand, name = "install")]
struct Install {
    /// also listen on TCP (e.g. 100.84.12.7:7273 on a tailnet)
    #[argh(option)]
    tcp: Option<String>,
    /// refuse TCP callers without a token
    #[argh(switch)]
    require_token: bool,
    /// a per-user service (systemctl --user; a LaunchAgent) instead of a system one
    #[argh(switch)]
    user: bool,
    /// systemd or launchd (default: this host's)
    #[argh(option)]
    manager: Option<String>,
    /// write the file into this folder instead of the manager's own (and enable nothing)
    #[argh(option)]
    unit_dir: Option<String>,
    /// print the file and do nothing else
    #[argh(switch)]
    print: bool,
}

/// stop, disable and remove the service
#[derive(FromArgs)]
#[argh(subcommand, name = "uninstall")]
struct Uninstall {
    /// the per-user service
    #[argh(switch)]
    user: bool,
    /// systemd or launchd (default: this host's)
    #[argh(option)]
    manager: Option<String>,
    /// where install wrote the file (with --unit-dir)
    #[argh(option)]
    unit_dir: Option<String>,
}

/// whether the service is installed and running
#[derive(FromArgs)]
#[argh(subcommand, name = "status")]
struct Status {
    /// the per-user service
    #[argh(switch)]
    user: bool,
    /// systemd or launchd (default: this host's)
    #[argh(option)]
    manager: Option<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum Manager {
    Systemd,
    Launchd,
}

fn manager(m: &Option<String>) -> Result<Manager, super::Failure> {
    match m.as_deref() {
        None if cfg!(target_os = "macos") => Ok(Manager::Launchd),
        None | Some("systemd") => Ok(Manager::Systemd),
        Some("launchd") => Ok(Manager::Launchd),
        Some(o) => Err(fail(format!("--manager {o:?}: systemd or launchd"))),
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// dejimad beside this program, else on PATH.
fn dejimad() -> Result<PathBuf, super::Failure> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("dejimad")))
        .filter(|p| p.is_file());
    if let Some(p) = beside {
        return Ok(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("dejimad"))
        .find(|p| p.is_file())
        .ok_or_else(|| fail("no dejimad beside dejima or on PATH; install both"))
}

/// Where the daemon keeps its state, as the service will see it.
fn dejima_home() -> PathBuf {
    match std::env::var_os("DEJIMA_HOME") {
        Some(h) if !h.is_empty() => PathBuf::from(h),
        _ => home().join(".dejima"),
    }
}

fn args(a: &Install) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(t) = &a.tcp {
        v.push("--tcp".to_string());
        v.push(t.clone());
    }
    if a.require_token {
        v.push("--require-token".into());
    }
    v
}

/// The systemd unit.
pub fn systemd_unit(exe: &Path, args: &[String], home: &Path, user: bool) -> String {
    let exec = std::iter::once(exe.display().to_string())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let after = if user {
        "After=default.target\n".to_string()
    } else {
        "After=network-online.target docker.service containerd.service\nWants=network-online.target docker.service\n".to_string()
    };
    format!(
        "[Unit]\n\
         Description=Dejima: islands for coding agents (dejimad)\n\
         {after}\n\
         [Service]\n\
         Type=simple\n\
         ExecStart={exec}\n\
         Environment=DEJIMA_HOME={home}\n\
         Restart=on-failure\n\
         RestartSec=2\n\
         LimitNOFILE=65536\n\
         # SIGTERM to dejimad alone: it ends its own attaches; the islands keep running and\n\
         # are adopted on the next start.\n\
         KillMode=mixed\n\
         KillSignal=SIGTERM\n\
         TimeoutStopSec=30\n\
         \n\
         [Install]\n\
         WantedBy={}\n",
        if user {
            "default.target"
        } else {
            "multi-user.target"
        },
        home = home.display()
    )
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The launchd plist.
pub fn launchd_plist(exe: &Path, args: &[String], home: &Path) -> String {
    let mut argv = format!("    <string>{}</string>\n", xml(&exe.display().to_string()));
    for a in args {
        argv.push_str(&format!("    <string>{}</string>\n", xml(a)));
    }
    let log = home.join("dejimad.log");
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>Label</key>
  <string>{LABEL}</string>
  <key>ProgramArguments</key>
  <array>
{argv}  </array>
  <key>EnvironmentVariables</key>
  <dict>
    <key>DEJIMA_HOME</key>
    <string>{home}</string>
  </dict>
  <key>RunAtLoad</key>
  <true/>
  <key>KeepAlive</key>
  <dict>
    <key>SuccessfulExit</key>
    <false/>
  </dict>
  <key>SoftResourceLimits</key>
  <dict>
    <key>NumberOfFiles</key>
    <integer>65536</integer>
  </dict>
  <key>ExitTimeOut</key>
  <integer>30</integer>
  <key>StandardErrorPath</key>
  <string>{log}</string>
  <key>StandardOutPath</key>
  <string>{log}</string>
</dict>
</plist>
"#,
        home = xml(&home.display().to_string()),
        log = xml(&log.display().to_string())
    )
}

fn file_path(m: Manager, user: bool, unit_dir: &Option<String>) -> PathBuf {
    let name = match m {
        Manager::Systemd => UNIT.to_string(),
        Manager::Launchd => format!("{LABEL}.plist"),
    };
    if let Some(d) = unit_dir {
        return PathBuf::from(d).join(name);
    }
    match (m, user) {
        (Manager::Systemd, true) => home().join(".config/systemd/user").join(name),
        (Manager::Systemd, false) => PathBuf::from("/etc/systemd/system").join(name),
        (Manager::Launchd, true) => home().join("Library/LaunchAgents").join(name),
        (Manager::Launchd, false) => PathBuf::from("/Library/LaunchDaemons").join(name),
    }
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Run the manager's own command, saying what it is.
fn run(argv: &[&str]) -> Out {
    println!("running: {}", argv.join(" "));
    let st = Command::new(argv[0])
        .args(&argv[1..])
        .status()
        .map_err(|e| fail(format!("{}: {e}", argv[0])))?;
    if st.success() {
        Ok(())
    } else {
        Err(fail(format!("{} failed ({st})", argv.join(" "))))
    }
}

pub fn service(a: ServiceCmd) -> Out {
    match a.cmd {
        ServiceSub::Install(i) => install(i),
        ServiceSub::Uninstall(u) => uninstall(u),
        ServiceSub::Status(s) => status(s),
    }
}

fn install(a: Install) -> Out {
    let m = manager(&a.manager)?;
    let exe = dejimad()?;
    let home = dejima_home();
    let text = match m {
        Manager::Systemd => systemd_unit(&exe, &args(&a), &home, a.user),
        Manager::Launchd => launchd_plist(&exe, &args(&a), &home),
    };
    if a.print {
        print!("{text}");
        return Ok(());
    }
    let path = file_path(m, a.user, &a.unit_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::store::atomic_write_mode(&path, text.as_bytes(), 0o644)?;
    println!("wrote {}", path.display());
    if a.unit_dir.is_some() {
        return Ok(());
    }
    match m {
        Manager::Systemd if systemd_running() => {
            let scope: &[&str] = if a.user { &["--user"] } else { &[] };
            let mut reload = vec!["systemctl"];
            reload.extend(scope);
            reload.push("daemon-reload");
            run(&reload)?;
            let mut enable = vec!["systemctl"];
            enable.extend(scope);
            enable.extend(["enable", "--now", UNIT]);
            run(&enable)?;
            println!("dejimad is enabled and started");
        }
        Manager::Systemd => println!(
            "systemd is not running on this host: nothing enabled; start dejimad yourself, or run this again where systemd runs"
        ),
        Manager::Launchd => {
            let uid = nix::unistd::getuid().as_raw();
            let domain = if a.user {
                format!("gui/{uid}")
            } else {
                "system".into()
            };
            run(&["launchctl", "bootstrap", &domain, &path.display().to_string()])?;
            println!("dejimad is loaded ({domain})");
        }
    }
    Ok(())
}

fn uninstall(a: Uninstall) -> Out {
    let m = manager(&a.manager)?;
    let path = file_path(m, a.user, &a.unit_dir);
    if a.unit_dir.is_none() {
        match m {
            Manager::Systemd if systemd_running() => {
                let mut disable = vec!["systemctl"];
                if a.user {
                    disable.push("--user");
                }
                disable.extend(["disable", "--now", UNIT]);
                // Already stopped or never enabled: the file still goes.
                let _ = run(&disable);
            }
            Manager::Systemd => {}
            Manager::Launchd => {
                let uid = nix::unistd::getuid().as_raw();
                let domain = if a.user {
                    format!("gui/{uid}")
                } else {
                    "system".into()
                };
                let _ = run(&["launchctl", "bootout", &format!("{domain}/{LABEL}")]);
            }
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => println!("removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("{} was not installed", path.display())
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn status(a: Status) -> Out {
    let m = manager(&a.manager)?;
    let path = file_path(m, a.user, &None);
    if !path.exists() {
        println!("not installed ({} is absent)", path.display());
        return Ok(());
    }
    println!("installed: {}", path.display());
    match m {
        Manager::Systemd if systemd_running() => {
            let mut argv = vec!["systemctl"];
            if a.user {
                argv.push("--user");
            }
            argv.extend(["is-active", UNIT]);
            let out = Command::new(argv[0]).args(&argv[1..]).output()?;
            println!("state: {}", String::from_utf8_lossy(&out.stdout).trim());
        }
        Manager::Systemd => println!("state: unknown (systemd is not running on this host)"),
        Manager::Launchd => {
            let out = Command::new("launchctl").args(["list", LABEL]).output()?;
            println!(
                "state: {}",
                if out.status.success() {
                    "loaded"
                } else {
                    "not loaded"
                }
            );
        }
    }
    Ok(())
}
