//! The `dejima` CLI against a real daemon.

mod support;

use std::process::{Command, Output};

use support::*;

fn dejima(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dejima"))
        .args(args)
        .env("DEJIMA_HOME", &d.home)
        .env_remove("DEJIMA_HOST")
        .output()
        .unwrap()
}

fn ok(d: &Daemon, args: &[&str]) -> String {
    let o = dejima(d, args);
    assert!(
        o.status.success(),
        "dejima {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cli_drives_the_whole_lifecycle() {
    let d = Daemon::start();
    let name = unique("cli");
    let _sweep = Sweep(name.clone());
    let out = ok(
        &d,
        &[
            "create",
            "--no-repo",
            "--name",
            &name,
            "--agent",
            "custom",
            "--cmd",
            "bash",
        ],
    );
    assert!(out.contains(&name) && out.contains("running"), "{out}");
    let _g = Island {
        d: &d,
        name: name.clone(),
    };

    let list: serde_json::Value = serde_json::from_str(&ok(&d, &["ls", "--json"])).unwrap();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == name.as_str()));
    assert!(ok(&d, &["ls"]).starts_with("NAME"));

    // exec: output through, exit code propagated.
    assert_eq!(
        ok(&d, &["exec", &name, "--", "sh", "-c", "echo hi"]),
        "hi\n"
    );
    let o = dejima(&d, &["exec", &name, "--", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3));

    // cp both ways.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("up.txt");
    std::fs::write(&src, "payload\n").unwrap();
    ok(
        &d,
        &[
            "cp",
            src.to_str().unwrap(),
            &format!("{name}:/workspace/dir/up.txt"),
        ],
    );
    let back = tmp.path().join("down.txt");
    ok(
        &d,
        &[
            "cp",
            &format!("{name}:/workspace/dir/up.txt"),
            back.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "payload\n");
    ok(
        &d,
        &["cp", src.to_str().unwrap(), &format!("{name}:/workspace/")],
    );
    assert_eq!(d.exec(&name, &["cat", "/workspace/up.txt"]).0, "payload\n");

    let st: serde_json::Value =
        serde_json::from_str(&ok(&d, &["status", &name, "--json"])).unwrap();
    assert_eq!(st["git"]["branch"], "main");
    assert!(ok(&d, &["status", &name]).contains("container  running"));
    assert!(ok(&d, &["logs", &name]).contains("up"));
    assert!(ok(&d, &["overview"]).contains("islands    1"));

    let h: serde_json::Value =
        serde_json::from_str(&ok(&d, &["hibernate", &name, "--json"])).unwrap();
    assert_eq!(h["state"], "hibernated");
    ok(&d, &["wake", &name]);
    ok(&d, &["title", &name, "Nice"]);
    assert_eq!(d.island(&name).title, "Nice");

    // Refusals: non-zero exit, the daemon's message on stderr.
    let o = dejima(&d, &["purge", &name]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("uncommitted"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = dejima(&d, &["status", "nosuch"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found (404)"));
    ok(&d, &["purge", "--force", &name]);
    assert_eq!(d.req("GET", &format!("/v1/islands/{name}"), None).0, 404);
}

#[test]
fn cli_reports_an_absent_daemon_and_usage_errors() {
    let home = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_dejima"))
        .arg("ls")
        .env("DEJIMA_HOME", home.path())
        .env_remove("DEJIMA_HOST")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach dejimad"));
    let o = Command::new(env!("CARGO_BIN_EXE_dejima"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let o = Command::new(env!("CARGO_BIN_EXE_dejima"))
        .arg("--help")
        .output()
        .unwrap();
    // Which commands it lists, and that each has a man entry, is tests/contract.rs's job.
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("Commands:"));
}

#[test]
fn cli_attach_on_a_real_terminal_types_sees_and_detaches() {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};
    let d = Daemon::start();
    let i = d.create("tty");
    let ws = nix::pty::Winsize {
        ws_row: 30,
        ws_col: 100,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = nix::pty::openpty(Some(&ws), None).unwrap();
    let slave = pty.slave;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dejima"))
        .args(["attach", &i.name, "--label", "pty-test"])
        .env("DEJIMA_HOME", &d.home)
        .env_remove("DEJIMA_HOST")
        .stdin(std::process::Stdio::from(slave.try_clone().unwrap()))
        .stdout(std::process::Stdio::from(slave.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(slave))
        .spawn()
        .unwrap();
    let mut master = std::fs::File::from(pty.master);
    // Non-blocking reads so the test can keep a deadline.
    let fd = master.as_raw_fd();
    let fl = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFL(
            nix::fcntl::OFlag::from_bits_truncate(fl) | nix::fcntl::OFlag::O_NONBLOCK,
        ),
    )
    .unwrap();
    let mut seen = Vec::new();
    let read_until = |master: &mut std::fs::File, needle: &str, seen: &mut Vec<u8>| {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(seen).contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in {:?}",
                String::from_utf8_lossy(seen)
            );
            match master.read(&mut buf) {
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    };
    // Presence shows the CLI's label once it is attached.
    wait_for(Duration::from_secs(20), "the CLI to attach", || {
        (d.island(&i.name)
            .attached
            .iter()
            .any(|p| p.label == "pty-test"))
        .then_some(())
    });
    master.write_all(b"echo cli-$((6*7))\r").unwrap();
    read_until(&mut master, "cli-42", &mut seen);
    // tmux sized the window from the local terminal.
    let out = window(&d, &i.name, "a1");
    assert_eq!(out.trim(), "100x30");
    master.write_all(&[0x1d]).unwrap();
    let st = wait_for(Duration::from_secs(10), "dejima attach to detach", || {
        child.try_wait().unwrap()
    });
    assert!(st.success(), "{st}");
    wait_for(Duration::from_secs(10), "presence to clear", || {
        d.island(&i.name).attached.is_empty().then_some(())
    });
}

#[test]
fn cli_webhooks_events_agents_and_clients() {
    let d = Daemon::start();
    let i = d.create("cliev");
    let rx = Receiver::start();
    let out = ok(
        &d,
        &[
            "webhook",
            "subscribe",
            "--url",
            &rx.url,
            "--event",
            "island.hibernated",
            "--json",
        ],
    );
    let sub: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = sub["id"].as_str().unwrap().to_string();
    assert!(ok(&d, &["webhook", "ls"]).contains(&id));
    ok(&d, &["hibernate", &i.name]);
    rx.wait_event(
        "island.hibernated",
        &i.name,
        std::time::Duration::from_secs(30),
    );
    let ev = ok(&d, &["events", &i.name]);
    assert!(
        ev.contains("island.hibernated") && ev.contains("island.created"),
        "{ev}"
    );
    ok(&d, &["webhook", "rm", &id]);
    assert!(!ok(&d, &["webhook", "ls"]).contains(&id));
    ok(&d, &["wake", &i.name]);
    // Agents from the CLI.
    let a: serde_json::Value = serde_json::from_str(&ok(
        &d,
        &[
            "agent", "add", &i.name, "--type", "custom", "--label", "helper", "--json",
        ],
    ))
    .unwrap();
    assert_eq!(a["id"], "a2");
    assert!(ok(&d, &["agent", "ls", &i.name]).contains("helper"));
    ok(&d, &["agent", "rename", &i.name, "a2", "renamed"]);
    assert!(ok(&d, &["agent", "ls", &i.name]).contains("renamed"));
    ok(&d, &["agent", "rm", &i.name, "a2"]);
    assert!(!ok(&d, &["agent", "ls", &i.name]).contains("renamed"));
    // Presence history and revocation.
    let mut w = d.attach(&format!("/v1/islands/{}/session?label=cli-watch", i.name));
    w.hello();
    assert!(ok(&d, &["clients"]).contains("cli-watch"));
    assert!(ok(&d, &["logout-all"]).contains("revoked 1"));
    w.expect_close(std::time::Duration::from_secs(20));
}

/// `dejima` with `input` on its standard input.
fn ok_stdin(d: &Daemon, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_dejima"))
        .args(args)
        .env("DEJIMA_HOME", &d.home)
        .env_remove("DEJIMA_HOST")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "dejima {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn cli_manages_credentials_without_secrets_on_its_command_line() {
    let d = Daemon::start();
    let key = "sk-ant-CLI-0123456789abcdef";
    // Keys come on standard input or from a file, never as arguments.
    let out = ok_stdin(
        &d,
        &["creds", "provider", "set", "anthropic", "--default"],
        &format!("{key}\n"),
    );
    assert!(
        out.contains("ANTHROPIC_API_KEY") && out.contains("sk-a…cdef"),
        "{out}"
    );
    assert!(!out.contains(key));
    let ls = ok(&d, &["creds", "provider", "ls"]);
    assert!(
        ls.starts_with("NAME") && ls.contains("anthropic") && !ls.contains(key),
        "{ls}"
    );
    let f = d.home.join("gh-token");
    std::fs::write(&f, "ghp_CLI0123456789abcdef\n").unwrap();
    let out = ok(
        &d,
        &[
            "creds",
            "github",
            "add",
            "work",
            "--login",
            "octo",
            "--token-file",
            f.to_str().unwrap(),
            "--id",
            "9",
        ],
    );
    assert!(out.contains("octo on github.com"), "{out}");
    let ls: serde_json::Value =
        serde_json::from_str(&ok(&d, &["creds", "github", "ls", "--json"])).unwrap();
    assert_eq!(ls[0]["login"], "octo");
    assert!(!ls.to_string().contains("ghp_CLI"));
    let cf = d.home.join("claude.json");
    std::fs::write(&cf, r#"{"claudeAiOauth":{"accessToken":"x"}}"#).unwrap();
    ok(
        &d,
        &["creds", "claude", "set", "--file", cf.to_str().unwrap()],
    );
    assert!(ok(&d, &["creds", "claude", "status"]).starts_with("present"));
    // An island's agent gets the default provider; config changes it and says when it applies.
    let name = unique("clicreds");
    ok(
        &d,
        &[
            "create",
            "--no-repo",
            "--name",
            &name,
            "--agent",
            "custom",
            "--cmd",
            "bash",
        ],
    );
    let _g = Island {
        d: &d,
        name: name.clone(),
    };
    let out = ok(
        &d,
        &[
            "agent",
            "add",
            &name,
            "--type",
            "claude-code",
            "--model",
            "m1",
            "--json",
        ],
    );
    let a: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["provider"], "anthropic");
    assert_eq!(a["model"], "m1");
    let out = ok(
        &d,
        &[
            "agent",
            "config",
            &name,
            "a2",
            "--model",
            "m2",
            "--restart",
            "--json",
        ],
    );
    let a: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(a["model"], "m2");
    assert!(ok(&d, &["agent", "ls", &name]).contains("PROVIDER"));
    let out = ok(&d, &["creds", "provider", "rm", "anthropic"]);
    assert!(
        out.contains("still named by") && out.contains(&name),
        "{out}"
    );
    assert!(ok(&d, &["agent", "types"]).contains("ANTHROPIC_API_KEY"));
    // Bad input is a clear refusal.
    let o = dejima(&d, &["creds", "github", "repos", "work", "--create", "x"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--private or --public"));
}

#[test]
fn cli_drives_the_brokers() {
    let d = Daemon::start();
    let i = d.create("cli-brk");
    let n = i.name.as_str();
    let t = tempfile::tempdir().unwrap();
    let docs = t.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("a.txt"), "alpha").unwrap();
    let out = ok(
        &d,
        &["port", "grant", n, docs.to_str().unwrap(), "--mode", "rw"],
    );
    assert!(out.contains("docs"), "{out}");
    assert!(ok(&d, &["port", "ls", n]).contains(docs.to_str().unwrap()));
    let out = ok(&d, &["port", "intake", n, "docs", "a.txt"]);
    assert!(out.contains("1 file"), "{out}");
    assert_eq!(
        d.exec(n, &["cat", "/home/agent/intake/docs/a.txt"]).0,
        "alpha"
    );
    d.exec(n, &["sh", "-c", "printf beta > /workspace/b.txt"]);
    ok(
        &d,
        &["port", "write", n, "docs", "/workspace/b.txt", "sub/b.txt"],
    );
    assert_eq!(
        std::fs::read_to_string(docs.join("sub/b.txt")).unwrap(),
        "beta"
    );
    let out = ok(&d, &["port", "export", n, "/workspace/b.txt", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        std::fs::read_to_string(v["host_path"].as_str().unwrap()).unwrap(),
        "beta"
    );
    ok(&d, &["port", "revoke", n, "docs"]);
    let o = dejima(&d, &["port", "intake", n, "docs"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("scope"));

    let caps = d.home.join("capabilities");
    std::fs::create_dir_all(&caps).unwrap();
    std::fs::write(caps.join("greet"), "#!/bin/sh\ncat\necho\nexit 4\n").unwrap();
    std::fs::set_permissions(
        caps.join("greet"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    assert!(ok(&d, &["cap", "ls"]).contains("greet"));
    ok(&d, &["cap", "grant", n, "greet"]);
    assert!(ok(&d, &["cap", "ls", n]).contains("greet"));
    let o = dejima(&d, &["cap", "run", n, "greet", "who=world"]);
    assert_eq!(o.status.code(), Some(4), "the capability's own exit code");
    assert!(String::from_utf8_lossy(&o.stdout).contains(r#"{"who":"world"}"#));
    ok(&d, &["cap", "revoke", n, "greet"]);

    std::fs::create_dir_all(d.home.join("mcp")).unwrap();
    let python = String::from_utf8(
        Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let crash = format!("{}/tests/standins/mcp_crash.py", env!("CARGO_MANIFEST_DIR"));
    std::fs::write(
        d.home.join("mcp/servers.json"),
        serde_json::json!({"servers": {"tiny": {"command": python.trim(), "args": [crash]}}})
            .to_string(),
    )
    .unwrap();
    assert!(ok(&d, &["mcp", "servers"]).contains("tiny"));
    ok(&d, &["mcp", "grant", n, "tiny"]);
    assert!(ok(&d, &["mcp", "ls", n]).contains("tiny"));
    let out = ok(&d, &["mcp", "call", n, "tiny", "tools/list"]);
    assert!(out.contains("echo"), "{out}");
    let o = dejima(&d, &["mcp", "call", n, "tiny", "sampling/createMessage"]);
    assert!(!o.status.success());
    ok(&d, &["mcp", "revoke", n, "tiny"]);

    ok(
        &d,
        &["spawn", "grant", n, "--max-children", "2", "--memory", "1g"],
    );
    let out = ok(&d, &["spawn", "show", n]);
    assert!(out.contains('2') && out.contains("1g"), "{out}");
    ok(&d, &["spawn", "revoke", n]);
    assert!(ok(&d, &["spawn", "show", n]).contains("may not create islands"));
}

#[test]
fn cli_enrolls_a_laptop_and_reaches_islands_over_ssh() {
    let d = Daemon::start();
    let i = d.create("cli-ssh");
    let n = i.name.as_str();
    let home = tempfile::tempdir().unwrap();
    let with_home = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dejima"))
            .args(args)
            .env("DEJIMA_HOME", &d.home)
            .env("HOME", home.path())
            .env_remove("DEJIMA_HOST")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let ssh_dir = home.path().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    std::fs::write(ssh_dir.join("config"), "Host mine\n    User me\n").unwrap();
    for round in 0..2 {
        let o = with_home(&["ssh", "enroll"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let config = std::fs::read_to_string(ssh_dir.join("config")).unwrap();
        assert!(config.starts_with("Host mine\n    User me\n"), "{config}");
        assert_eq!(
            config.matches("Host *.dejima").count(),
            1,
            "round {round}: {config}"
        );
    }
    assert!(ssh_dir.join("id_ed25519").exists());
    let keys = ok(&d, &["ssh-key", "ls"]);
    assert_eq!(keys.lines().count(), 2, "one account key:\n{keys}");
    // `dejima ssh` runs the real ssh with what enroll set up.
    let o = with_home(&["ssh", n, "echo", "hi-$((20+22))"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "hi-42");
    let o = with_home(&["ssh", n, "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    // The proxy says why when the daemon refuses, and exits 255 as ssh expects.
    let o = with_home(&["ssh-proxy", "no-such-island.dejima"]);
    assert_eq!(o.status.code(), Some(255));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
    // Keys of one island, then none.
    let pubkey = ssh_dir.join("id_ed25519.pub");
    let out = ok(
        &d,
        &[
            "ssh-key",
            "add",
            pubkey.to_str().unwrap(),
            "--island",
            n,
            "--json",
        ],
    );
    let fp = serde_json::from_str::<serde_json::Value>(&out).unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ok(&d, &["ssh-key", "ls", "--island", n]).contains(&fp));
    ok(&d, &["ssh-key", "rm", &fp, "--island", n]);
    ok(&d, &["ssh-key", "rm", &fp]);
    let o = with_home(&["ssh", n, "true"]);
    assert_eq!(o.status.code(), Some(255), "no key lets it in now");
}

#[test]
fn service_files_pass_their_managers_own_checks() {
    let d = Daemon::start();
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("dejimad.service");
    for extra in [
        vec!["--user"],
        vec!["--tcp", "127.0.0.1:7273", "--require-token"],
    ] {
        let mut args = vec![
            "service",
            "install",
            "--unit-dir",
            dir.path().to_str().unwrap(),
        ];
        args.extend(extra.iter().copied());
        ok(&d, &args);
        let text = std::fs::read_to_string(&unit).unwrap();
        assert!(
            text.contains("Restart=on-failure") && text.contains("LimitNOFILE="),
            "{text}"
        );
        assert!(text.contains("KillSignal=SIGTERM"), "{text}");
        let o = Command::new("systemd-analyze")
            .args(["verify"])
            .arg(&unit)
            .output()
            .expect("systemd-analyze");
        assert!(
            o.status.success(),
            "systemd-analyze verify: {}{}\n{text}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        if extra.contains(&"--tcp") {
            assert!(
                text.contains("--tcp 127.0.0.1:7273 --require-token"),
                "{text}"
            );
        }
    }
    // The same checker refuses a broken unit: the check above can fail.
    std::fs::write(&unit, "[Service]\nExecStart=relative/path\n").unwrap();
    assert!(!Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap()
        .status
        .success());
    ok(
        &d,
        &[
            "service",
            "uninstall",
            "--unit-dir",
            dir.path().to_str().unwrap(),
        ],
    );
    assert!(!unit.exists());
    // launchd's plist, read by a plist parser.
    let plist = ok(
        &d,
        &[
            "service",
            "install",
            "--manager",
            "launchd",
            "--print",
            "--tcp",
            "0.0.0.0:1",
        ],
    );
    let mut py = Command::new("python3")
        .args([
            "-c",
            "import plistlib,sys,json; d=plistlib.loads(sys.stdin.buffer.read()); print(json.dumps(d))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut py.stdin.take().unwrap(), plist.as_bytes()).unwrap();
    let o = py.wait_with_output().unwrap();
    assert!(o.status.success(), "{plist}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["Label"], "dev.dejima.dejimad");
    assert!(v["ProgramArguments"][0]
        .as_str()
        .unwrap()
        .ends_with("dejimad"));
    assert_eq!(v["ProgramArguments"][1], "--tcp");
    assert_eq!(v["KeepAlive"]["SuccessfulExit"], false);
    assert_eq!(v["SoftResourceLimits"]["NumberOfFiles"], 65536);
}

#[test]
fn cli_prompts_reads_the_screen_uploads_and_records() {
    const T: std::time::Duration = std::time::Duration::from_secs(60);
    let d = Daemon::start();
    let name = unique("clilive");
    let _sweep = Sweep(name.clone());
    ok(
        &d,
        &[
            "create",
            "--no-repo",
            "--name",
            &name,
            "--agent",
            "custom",
            "--cmd",
            "bash",
            "--record",
        ],
    );
    let out = ok(&d, &["prompt", &name, "echo cli-prompt-$((6*7))"]);
    assert!(out.contains("delivered and submitted"), "{out}");
    wait_for(T, "the answer on the screen", || {
        ok(&d, &["screen", &name])
            .contains("cli-prompt-42")
            .then_some(())
    });
    let json: serde_json::Value =
        serde_json::from_str(&ok(&d, &["screen", &name, "--format", "json"])).unwrap();
    assert!(json["rows"].is_array(), "{json}");
    let file = d.home.join("notes.txt");
    std::fs::write(&file, "echo from-a-file").unwrap();
    let out = ok(&d, &["upload", &name, file.to_str().unwrap()]);
    assert_eq!(out.trim(), "/home/agent/uploads/notes.txt");
    let id = wait_for(T, "a recording", || {
        let out = ok(&d, &["recordings", "ls", &name, "--json"]);
        let v: serde_json::Value = serde_json::from_str(&out).ok()?;
        v.as_array()?
            .first()
            .map(|r| r["id"].as_str().unwrap().to_string())
    });
    assert!(ok(&d, &["recordings", "ls", &name]).contains(&id));
    let cast = d.home.join("out.cast");
    wait_for(T, "the prompt in the recording", || {
        ok(
            &d,
            &[
                "recordings",
                "get",
                &name,
                &id,
                "-o",
                cast.to_str().unwrap(),
            ],
        );
        std::fs::read_to_string(&cast)
            .ok()?
            .contains("from-a-file")
            .then_some(())
    });
    assert!(ok(&d, &["recordings", "off", &name]).contains("recording off"));
    // A prompt to an island that is not there fails with the daemon's word for it.
    let o = dejima(&d, &["prompt", "no-such-island-x", "hi"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
}
