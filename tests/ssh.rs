//! SSH into islands with the real OpenSSH client (`ssh`, `scp`, `sftp`) through the real
//! ProxyCommand (`dejima ssh-proxy`), against the real daemon, engine and the island's sshd.

mod support;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

const T: Duration = Duration::from_secs(30);

/// A laptop: its own key and known_hosts, and ssh options that read nothing else.
struct Laptop {
    dir: tempfile::TempDir,
    home: PathBuf,
}

impl Laptop {
    fn new(d: &Daemon) -> Laptop {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("id");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "laptop", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen (openssh-client)");
        assert!(st.success());
        Laptop {
            dir,
            home: d.home.clone(),
        }
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("id")
    }
    fn public(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("id.pub"))
            .unwrap()
            .trim()
            .to_string()
    }
    fn fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .args(["-l", "-E", "sha256", "-f"])
            .arg(self.dir.path().join("id.pub"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    }
    /// The options every ssh/scp/sftp here runs with.
    fn opts(&self, strict: &str) -> Vec<String> {
        let known = self.dir.path().join("known_hosts");
        [
            "-F".to_string(),
            "/dev/null".into(),
            "-i".into(),
            self.key().display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", known.display()),
            "-o".into(),
            format!("StrictHostKeyChecking={strict}"),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("ProxyCommand={} ssh-proxy %h", env!("CARGO_BIN_EXE_dejima")),
            "-o".into(),
            "User=agent".into(),
        ]
        .to_vec()
    }
    fn cmd(&self, program: &str, strict: &str) -> Command {
        let mut c = Command::new(program);
        c.args(self.opts(strict))
            .env("DEJIMA_HOME", &self.home)
            .env_remove("DEJIMA_HOST")
            .env_remove("DEJIMA_TOKEN")
            .stdin(Stdio::null());
        c
    }
    fn ssh(&self, island: &str, cmd: &[&str]) -> Output {
        self.cmd("ssh", "accept-new")
            .arg(format!("{island}.dejima"))
            .args(cmd)
            .output()
            .unwrap()
    }
}

fn sha(p: &Path) -> String {
    dejima::util::hex(&Sha256::digest(std::fs::read(p).unwrap()))
}

fn sshd_count(d: &Daemon, island: &str) -> usize {
    let (out, _) = d.exec(island, &["sh", "-c", "pgrep -c -x sshd || true"]);
    out.trim().parse().unwrap_or(0)
}

#[test]
fn openssh_reaches_islands_through_the_proxy_command() {
    let d = Daemon::start();
    let a = d.create("ssh-a");
    let b = d.create("ssh-b");
    let laptop = Laptop::new(&d);
    // Not let in yet.
    let o = laptop.ssh(&a.name, &["true"]);
    assert_eq!(
        o.status.code(),
        Some(255),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("Permission denied"));
    let v = d.ok(
        "POST",
        "/v1/ssh/account-keys",
        Some(json!({"public_key": laptop.public()})),
    );
    assert_eq!(v["fingerprint"], laptop.fingerprint());
    assert_eq!(
        d.ok("GET", "/v1/ssh/account-keys", None)
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Commands: exit codes, stdout and stderr as ssh passes them.
    let o = laptop.ssh(&a.name, &["echo out; echo err >&2; whoami; pwd; exit 3"]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("out\nagent\n"), "{out}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("err"));
    // The connection is ledgered with the key it came in with.
    let entries = ledger(&d, "ssh.connect", &a.name);
    assert!(
        entries
            .iter()
            .any(|e| e["detail"]["fingerprint"] == laptop.fingerprint()),
        "{entries:?}"
    );

    // A terminal: the window size the laptop's terminal has.
    let pty = nix::pty::openpty(
        Some(&nix::pty::Winsize {
            ws_row: 33,
            ws_col: 101,
            ws_xpixel: 0,
            ws_ypixel: 0,
        }),
        None,
    )
    .unwrap();
    let slave = std::fs::File::from(pty.slave);
    let mut child = laptop
        .cmd("ssh", "accept-new")
        .arg("-tt")
        .arg(format!("{}.dejima", a.name))
        .arg("stty size; tty; exit 0")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    let mut seen = String::new();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if seen.contains("/dev/pts") {
                break;
            }
        }
        seen
    });
    let st = wait_for(T, "the ssh terminal session to end", || {
        child.try_wait().unwrap()
    });
    assert!(st.success());
    let seen = reader.join().unwrap();
    assert!(seen.contains("33 101"), "{seen:?}");
    assert!(seen.contains("/dev/pts/"), "{seen:?}");

    // scp and sftp, both ways, a binary file.
    let t = tempfile::tempdir().unwrap();
    let blob: Vec<u8> = (0..3_000_000u32).map(|k| (k * 31 % 253) as u8).collect();
    let up = t.path().join("up.bin");
    std::fs::write(&up, &blob).unwrap();
    let st = laptop
        .cmd("scp", "accept-new")
        .arg(&up)
        .arg(format!("{}.dejima:/workspace/up.bin", a.name))
        .status()
        .unwrap();
    assert!(st.success());
    let (remote, _) = d.exec(&a.name, &["sha256sum", "/workspace/up.bin"]);
    assert!(remote.starts_with(&sha(&up)), "{remote}");
    let down = t.path().join("down.bin");
    let st = laptop
        .cmd("scp", "accept-new")
        .arg(format!("{}.dejima:/workspace/up.bin", a.name))
        .arg(&down)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(sha(&down), sha(&up));
    let batch = t.path().join("batch");
    let back = t.path().join("back.bin");
    std::fs::write(
        &batch,
        format!(
            "put {} /workspace/s.bin\nget /workspace/s.bin {}\n",
            up.display(),
            back.display()
        ),
    )
    .unwrap();
    let o = laptop
        .cmd("sftp", "accept-new")
        .arg("-b")
        .arg(&batch)
        .arg(format!("{}.dejima", a.name))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(sha(&back), sha(&up));

    // -L to a server on the island's own loopback (what editors' remote servers need).
    d.exec(
        &a.name,
        &[
            "sh",
            "-c",
            "setsid perl -MIO::Socket::INET -e '$s=IO::Socket::INET->new(LocalAddr=>\"127.0.0.1:8099\",Listen=>5,ReuseAddr=>1) or die; while($c=$s->accept){print $c \"hello-from-island\\n\"; close $c}' >/dev/null 2>&1 < /dev/null &",
        ],
    );
    let port = free_port();
    let mut fwd = laptop
        .cmd("ssh", "accept-new")
        .args(["-N", "-L", &format!("127.0.0.1:{port}:127.0.0.1:8099")])
        .arg(format!("{}.dejima", a.name))
        .spawn()
        .unwrap();
    let got = wait_for(T, "the forwarded port to answer", || {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        text.contains("hello-from-island").then_some(text)
    });
    assert!(got.starts_with("hello-from-island"));
    let _ = fwd.kill();
    let _ = fwd.wait();

    // An island key lets in one island only.
    let other = Laptop::new(&d);
    d.ok(
        "POST",
        &format!("/v1/islands/{}/ssh/keys", b.name),
        Some(json!({"public_key": other.public()})),
    );
    assert_eq!(other.ssh(&b.name, &["true"]).status.code(), Some(0));
    let o = other.ssh(&a.name, &["true"]);
    assert_eq!(o.status.code(), Some(255), "island B's key is refused by A");
    wait_for(T, "the refusal in the ledger", || {
        ledger(&d, "ssh.refused", &a.name)
            .iter()
            .any(|e| e["decision"] == "denied")
            .then_some(())
    });

    // The host key stays across an upgrade (known_hosts stays valid).
    d.ok("POST", &format!("/v1/islands/{}/upgrade", a.name), None);
    let o = laptop
        .cmd("ssh", "yes")
        .arg(format!("{}.dejima", a.name))
        .arg("true")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // 20 at once, and nothing left running in the island afterwards.
    let runs: Vec<_> = (0..20)
        .map(|k| {
            laptop
                .cmd("ssh", "yes")
                .arg(format!("{}.dejima", a.name))
                .arg(format!("echo ok-$((1+{k}))"))
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (k, c) in runs.into_iter().enumerate() {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "session {k}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("ok-{}", k + 1)
        );
    }
    wait_for(T, "every sshd in the island to end", || {
        (sshd_count(&d, &a.name) == 0).then_some(())
    });

    // A removed key is refused at its next connection, no restart.
    let fp = laptop.fingerprint();
    d.ok(
        "DELETE",
        &format!("/v1/ssh/account-keys/{}", dejima::client::seg(&fp)),
        None,
    );
    assert_eq!(laptop.ssh(&a.name, &["true"]).status.code(), Some(255));
    assert!(ledger_verifies(&d));
}

#[test]
fn ssh_proxy_reaches_a_remote_daemon_over_tcp_with_a_token() {
    let addr = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(&["--tcp", &addr, "--require-token"], &[]);
    let i = d.create("ssh-tcp");
    let laptop = Laptop::new(&d);
    d.ok(
        "POST",
        &format!("/v1/islands/{}/ssh/keys", i.name),
        Some(json!({"public_key": laptop.public()})),
    );
    let token = |role: &str| {
        d.ok("POST", "/v1/tokens", Some(json!({"role": role})))["secret"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let run = |tok: &str| {
        laptop
            .cmd("ssh", "accept-new")
            .env("DEJIMA_HOST", &addr)
            .env("DEJIMA_TOKEN", tok)
            .env_remove("DEJIMA_HOME")
            .arg(format!("{}.dejima", i.name))
            .arg("echo over-tcp")
            .output()
            .unwrap()
    };
    let o = run(&token("operator"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "over-tcp");
    // A viewer may not open a shell: the proxy says so and ssh gives up.
    let o = run(&token("viewer"));
    assert_eq!(o.status.code(), Some(255));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("(403)"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn ssh_keys_refuse_bad_input_and_a_clone_gets_its_own_host_key() {
    let d = Daemon::start();
    let a = d.create("ssh-keys");
    for bad in [
        json!({"public_key": "not a key"}),
        json!({"public_key": "ssh-ed25519 AAAA"}),
        json!({"public_key": "command=\"/bin/sh\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"}),
        json!({"public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl x\nssh-ed25519 AAAA"}),
        json!({"key": "x"}),
    ] {
        let (st, v) = d.req(
            "POST",
            &format!("/v1/islands/{}/ssh/keys", a.name),
            Some(bad.clone()),
        );
        assert!(st == 400 || st == 422, "{bad}: {st} {v}");
    }
    let laptop = Laptop::new(&d);
    let (st, v) = d.req(
        "POST",
        &format!("/v1/islands/{}/ssh/keys", a.name),
        Some(json!({"public_key": laptop.public()})),
    );
    assert_eq!(st, 201, "{v}");
    let (st, _) = d.req(
        "POST",
        &format!("/v1/islands/{}/ssh/keys", a.name),
        Some(json!({"public_key": laptop.public()})),
    );
    assert_eq!(st, 200, "the same key again is the same key");
    let keys: Value = d.ok("GET", &format!("/v1/islands/{}/ssh/keys", a.name), None);
    assert_eq!(keys.as_array().unwrap().len(), 1);
    let host_key = |n: &str| {
        std::fs::read_to_string(
            d.home
                .join("islands")
                .join(n)
                .join("secrets/ssh/host_ed25519_key.pub"),
        )
        .unwrap()
    };
    let before = host_key(&a.name);
    d.ok("POST", &format!("/v1/islands/{}/reset", a.name), None);
    assert_eq!(host_key(&a.name), before, "kept across a reset");
    let clone = unique("ssh-clone");
    d.ok(
        "POST",
        &format!("/v1/islands/{}/clone", a.name),
        Some(json!({"name": clone})),
    );
    let _c = Island {
        d: &d,
        name: clone.clone(),
    };
    assert_ne!(host_key(&clone), before, "a clone has its own host key");
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{clone}/ssh/keys"), None),
        json!([]),
        "and lets in account keys only"
    );
    // The island cannot read its host key's secret half as the agent.
    let (_, code) = d.exec(
        &a.name,
        &["cat", "/run/secrets/dejima/ssh/host_ed25519_key"],
    );
    assert_ne!(code, 0);
    // Without the upgrade headers: a clear 400.
    let (st, v) = d.req("GET", &format!("/v1/islands/{}/ssh", a.name), None);
    assert_eq!(st, 400, "{v}");
    assert!(err_text(&v).contains("Upgrade"));
    let fp = laptop.fingerprint();
    d.ok(
        "DELETE",
        &format!(
            "/v1/islands/{}/ssh/keys/{}",
            a.name,
            dejima::client::seg(&fp)
        ),
        None,
    );
    let _ = Write::flush(&mut std::io::stdout());
}
