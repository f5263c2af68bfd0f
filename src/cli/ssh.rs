//! dejima ssh | ssh-proxy | ssh-key: real OpenSSH into islands. `ssh-proxy` is the
//! ProxyCommand (it opens `GET /v1/islands/<name>/ssh` as a raw byte stream and pipes stdin
//! and stdout through it); `ssh` runs the system's `ssh` with it; `ssh enroll` sets a laptop
//! up once (a key, the account key, a managed block in ~/.ssh/config).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use argh::FromArgs;
use serde_json::{json, Value};

use super::{fail, print_json, table, Failure, Out};
use crate::client::{seg, Client, Target};

/// Host names `<island>.dejima` (the suffix ssh-proxy strips).
const SUFFIX: &str = ".dejima";
const BEGIN: &str = "# >>> dejima (managed by `dejima ssh enroll`; edits inside are replaced) >>>";
const END: &str = "# <<< dejima <<<";

/// the ProxyCommand: join stdin and stdout to an island's sshd through dejimad
#[derive(FromArgs)]
#[argh(subcommand, name = "ssh-proxy")]
pub struct SshProxy {
    /// the island (`<island>.dejima` also works, as ssh's %h gives it)
    #[argh(positional)]
    island: String,
}

/// ssh into an island with the system's ssh (`dejima ssh enroll` sets a laptop up once)
#[derive(FromArgs)]
#[argh(subcommand, name = "ssh")]
pub struct SshCmd {
    /// with `enroll`: the key to enroll (default ~/.ssh/id_ed25519, made when missing)
    #[argh(option)]
    key: Option<String>,
    /// the island and the command to run there (none: a shell); or `enroll`
    #[argh(positional, greedy)]
    args: Vec<String>,
}

/// SSH keys let into islands: account keys (every island, owner only) or one island's
#[derive(FromArgs)]
#[argh(subcommand, name = "ssh-key")]
pub struct SshKeyCmd {
    #[argh(subcommand)]
    cmd: KeySub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum KeySub {
    Add(KeyAdd),
    Ls(KeyLs),
    Rm(KeyRm),
}

/// let a public key in (a .pub file, or the key text)
#[derive(FromArgs)]
#[argh(subcommand, name = "add")]
struct KeyAdd {
    /// a .pub file or an `ssh-ed25519 AAAA…` line
    #[argh(positional)]
    key: String,
    /// this island only (default: an account key, every island)
    #[argh(option)]
    island: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// list the keys let in
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct KeyLs {
    /// this island's own keys (default: the account keys)
    #[argh(option)]
    island: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// stop letting a key in (by its SHA256: fingerprint)
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
struct KeyRm {
    #[argh(positional)]
    fingerprint: String,
    /// this island's key (default: an account key)
    #[argh(option)]
    island: Option<String>,
}

fn keys_path(island: &Option<String>) -> String {
    match island {
        Some(i) => format!("/v1/islands/{}/ssh/keys", seg(i)),
        None => "/v1/ssh/account-keys".into(),
    }
}

pub fn ssh_key(c: &Client, a: SshKeyCmd) -> Out {
    match a.cmd {
        KeySub::Add(k) => {
            let text = if Path::new(&k.key).is_file() {
                std::fs::read_to_string(&k.key)?
            } else {
                k.key.clone()
            };
            let v: Value = c.send_json(
                "POST",
                &keys_path(&k.island),
                &json!({"public_key": text.trim()}),
            )?;
            if k.json {
                print_json(&v);
            } else {
                println!(
                    "let in {} {} ({})",
                    v["type"].as_str().unwrap_or(""),
                    v["fingerprint"].as_str().unwrap_or(""),
                    k.island.as_deref().unwrap_or("every island")
                );
            }
        }
        KeySub::Ls(k) => {
            let v: Value = c.get_json(&keys_path(&k.island))?;
            if k.json {
                print_json(&v);
            } else {
                let rows: Vec<Vec<String>> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|k| {
                        ["fingerprint", "type", "comment", "added_at"]
                            .iter()
                            .map(|f| k[*f].as_str().unwrap_or("-").to_string())
                            .collect()
                    })
                    .collect();
                table(&["FINGERPRINT", "TYPE", "COMMENT", "ADDED"], &rows);
            }
        }
        KeySub::Rm(k) => {
            let path = format!("{}/{}", keys_path(&k.island), seg(&k.fingerprint));
            c.call("DELETE", &path, crate::client::Body::None)?;
            println!("removed {}", k.fingerprint);
        }
    }
    Ok(())
}

/// The daemon connection, raw.
enum Stream {
    Unix(UnixStream),
    Tcp(std::net::TcpStream),
}

impl Stream {
    fn open(t: &Target) -> Result<Stream, Failure> {
        match t {
            Target::Unix(p) => UnixStream::connect(p)
                .map(Stream::Unix)
                .map_err(|e| fail(format!("cannot reach dejimad at {}: {e}", p.display()))),
            Target::Tcp(a) => {
                let s = std::net::TcpStream::connect(a)
                    .map_err(|e| fail(format!("cannot reach dejimad at {a}: {e}")))?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
        }
    }
    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
        })
    }
    fn shutdown_write(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(b),
            Stream::Tcp(s) => s.read(b),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(b),
            Stream::Tcp(s) => s.write(b),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The island a host name names: `web.dejima` → `web`.
fn island_of(host: &str) -> &str {
    host.strip_suffix(SUFFIX).unwrap_or(host)
}

pub fn ssh_proxy(c: &Client, a: SshProxy) -> Out {
    let island = island_of(&a.island);
    let mut s = Stream::open(&c.target)?;
    let mut req = format!(
        "GET /v1/islands/{}/ssh HTTP/1.1\r\nHost: dejimad\r\nConnection: Upgrade\r\nUpgrade: dejima-ssh\r\n",
        seg(island)
    );
    if let Some(t) = &c.token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    // The answer's head, byte by byte: whatever follows it is already the island's sshd.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 << 10 || s.read(&mut b)? == 0 {
            return Err(fail("dejimad closed the connection before answering"));
        }
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 101 {
        let len: usize = text
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len.min(64 << 10)];
        let _ = s.read_exact(&mut body);
        let msg = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        // ssh shows the ProxyCommand's stderr and exits 255.
        return Err(Failure {
            message: format!("ssh to {island}: {msg} ({status})"),
            code: 255,
        });
    }
    let mut up = s.try_clone()?;
    let t = std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let _ = std::io::copy(&mut stdin, &mut up);
        up.shutdown_write();
    });
    // Each read goes out at once: stdout is line-buffered, and SSH is not made of lines.
    let mut stdout = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if stdout
                    .write_all(&buf[..n])
                    .and_then(|_| stdout.flush())
                    .is_err()
                {
                    break;
                }
            }
        }
    }
    drop(t);
    Ok(())
}

fn home() -> Result<PathBuf, Failure> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| fail("HOME is not set"))
}

/// This program's own path, for the ProxyCommand.
fn me() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.to_str().map(str::to_string))
        .unwrap_or_else(|| "dejima".into())
}

pub fn ssh(c: &Client, a: SshCmd) -> Out {
    match a.args.first().map(String::as_str) {
        None => Err(fail(
            "name an island (dejima ssh <island> [command...]) or `enroll`",
        )),
        Some("enroll") => enroll(c, a.key.as_deref()),
        Some(island) => {
            use std::os::unix::process::CommandExt;
            let island = island_of(island).to_string();
            let mut cmd = std::process::Command::new("ssh");
            // The config `ssh enroll` wrote is $HOME's (ssh itself reads the passwd home's).
            if let Ok(config) = home().map(|h| h.join(".ssh").join("config")) {
                if std::fs::read_to_string(&config).is_ok_and(|c| c.contains(BEGIN)) {
                    cmd.arg("-F").arg(&config);
                }
            }
            let err = cmd
                .arg("-o")
                .arg(format!("ProxyCommand={} ssh-proxy %h", me()))
                .args(["-o", "User=agent"])
                .arg(format!("{island}{SUFFIX}"))
                .args(&a.args[1..])
                .exec();
            Err(fail(format!(
                "cannot run ssh: {err} (install openssh-client)"
            )))
        }
    }
}

/// The managed block of ~/.ssh/config.
fn block(key: &Path, known_hosts: &Path) -> String {
    let mut proxy = format!("{} ssh-proxy %h", me());
    // A remote daemon is named in the block (never its token: that stays in the environment).
    if let Ok(h) = std::env::var("DEJIMA_HOST") {
        if !h.is_empty() && !h.contains(char::is_whitespace) {
            proxy = format!("env DEJIMA_HOST={h} {proxy}");
        }
    }
    format!(
        "{BEGIN}\nHost *{SUFFIX}\n    ProxyCommand {proxy}\n    User agent\n    IdentityFile {}\n    IdentitiesOnly yes\n    UserKnownHostsFile {}\n    StrictHostKeyChecking accept-new\n{END}\n",
        key.display(),
        known_hosts.display()
    )
}

/// Put `block` into `config` in place of an earlier one, or at its end; the rest is kept.
pub fn with_block(config: &str, block: &str) -> String {
    if let (Some(b), Some(e)) = (config.find(BEGIN), config.find(END)) {
        if b < e {
            let after = &config[e + END.len()..];
            let after = after.strip_prefix('\n').unwrap_or(after);
            return format!("{}{block}{after}", &config[..b]);
        }
    }
    let mut out = config.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(block);
    out
}

fn enroll(c: &Client, key: Option<&str>) -> Out {
    let ssh_dir = home()?.join(".ssh");
    std::fs::create_dir_all(&ssh_dir)?;
    let private = match key {
        Some(k) => PathBuf::from(k.strip_suffix(".pub").unwrap_or(k)),
        None => ssh_dir.join("id_ed25519"),
    };
    let public = PathBuf::from(format!("{}.pub", private.display()));
    if !public.exists() {
        if private.exists() {
            return Err(fail(format!(
                "{} has no {}; make it with ssh-keygen -y",
                private.display(),
                public.display()
            )));
        }
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "dejima", "-f"])
            .arg(&private)
            .status()
            .map_err(|e| {
                fail(format!(
                    "cannot run ssh-keygen: {e} (install openssh-client)"
                ))
            })?;
        if !st.success() {
            return Err(fail("ssh-keygen failed"));
        }
        println!("made {}", private.display());
    }
    let text = std::fs::read_to_string(&public)?;
    let v: Value = c.send_json(
        "POST",
        "/v1/ssh/account-keys",
        &json!({"public_key": text.trim()}),
    )?;
    println!(
        "enrolled {} as an account key",
        v["fingerprint"].as_str().unwrap_or("")
    );
    let config = ssh_dir.join("config");
    let old = match std::fs::read_to_string(&config) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e.into()),
    };
    let new = with_block(&old, &block(&private, &ssh_dir.join("known_hosts")));
    if new != old {
        crate::store::atomic_write_mode(&config, new.as_bytes(), 0o600)?;
        println!("{}: Host *{SUFFIX} set up", config.display());
    }
    println!("now: ssh <island>{SUFFIX}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_managed_block_replaces_itself_and_keeps_the_rest() {
        let b1 = block(Path::new("/k1"), Path::new("/kh"));
        let b2 = block(Path::new("/k2"), Path::new("/kh"));
        let mine = "Host work\n    User me\n";
        let once = with_block(mine, &b1);
        assert!(once.starts_with(mine) && once.contains("/k1"));
        assert_eq!(with_block(&once, &b1), once, "idempotent");
        let twice = with_block(&format!("{once}Host later\n"), &b2);
        assert!(twice.contains("/k2") && !twice.contains("/k1"));
        assert!(twice.starts_with(mine) && twice.ends_with("Host later\n"));
        assert_eq!(with_block("", &b1), b1);
        assert_eq!(island_of("web.dejima"), "web");
        assert_eq!(island_of("web"), "web");
    }
}
