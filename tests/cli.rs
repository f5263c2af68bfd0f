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
    let help = String::from_utf8_lossy(&o.stdout);
    for sub in [
        "ls",
        "create",
        "init",
        "status",
        "hibernate",
        "wake",
        "reset",
        "upgrade",
        "clone",
        "purge",
        "exec",
        "cp",
        "logs",
        "overview",
        "image",
    ] {
        assert!(
            help.contains(&format!("  {sub} ")),
            "--help lacks {sub}:\n{help}"
        );
    }
}
