//! Port: brokered host files against the real daemon and engine. Grants are the owner's;
//! intake, export and write work for the island's own token within its grants; every
//! crossing is ledgered with its hash; and every path trick is refused, ledgered as denied,
//! and leaves the host as it was.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

const T: std::time::Duration = std::time::Duration::from_secs(20);

fn sha(bytes: &[u8]) -> String {
    dejima::util::hex(&Sha256::digest(bytes))
}

/// Every path under `root` (links not followed) with what it is and holds.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let what = if m.file_type().is_symlink() {
            format!("link {}", std::fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            "dir".into()
        } else if m.is_file() {
            sha(&std::fs::read(&p).unwrap())
        } else {
            "special".into()
        };
        out.insert(p, what);
    }
    out
}

fn grant(d: &Daemon, island: &str, path: &Path, mode: &str) -> Value {
    d.ok(
        "POST",
        &format!("/v1/islands/{island}/port/scopes"),
        Some(json!({"host_path": path, "mode": mode})),
    )
}

#[test]
fn grants_intake_export_and_write_round_trip_ledgered() {
    let d = Daemon::start();
    let i = d.create("port");
    let n = &i.name;
    let t = tempfile::tempdir().unwrap();
    let docs = t.path().join("docs");
    std::fs::create_dir_all(docs.join("sub/deeper")).unwrap();
    std::fs::write(docs.join("a.txt"), "alpha\n").unwrap();
    let blob: Vec<u8> = (0..300_000u32).map(|k| (k * 7 % 251) as u8).collect();
    std::fs::write(docs.join("sub/b.bin"), &blob).unwrap();
    std::fs::write(docs.join("sub/deeper/c name.txt"), "spaced").unwrap();
    symlink("/etc", docs.join("etc-link")).unwrap();
    nix::unistd::mkfifo(
        &docs.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();

    // The owner grants; the name is the folder's, and a second grant of it is de-duplicated.
    let s = grant(&d, n, &docs, "ro");
    assert_eq!(s["name"], "docs");
    assert_eq!(s["mode"], "ro");
    assert_eq!(
        s["host_path"],
        docs.canonicalize().unwrap().to_str().unwrap()
    );
    assert_eq!(grant(&d, n, &docs, "ro")["name"], "docs-2");
    d.ok(
        "DELETE",
        &format!("/v1/islands/{n}/port/scopes/docs-2"),
        None,
    );
    assert_eq!(
        d.req(
            "DELETE",
            &format!("/v1/islands/{n}/port/scopes/docs-2"),
            None
        )
        .0,
        404
    );

    // The island's own token sees its scopes and spends them; it cannot grant.
    let me = as_island(&d, n);
    let (st, list) = call(&me, "GET", &format!("/v1/islands/{n}/port/scopes"), None);
    assert_eq!(st, 200, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1);
    let (st, _) = call(
        &me,
        "POST",
        &format!("/v1/islands/{n}/port/scopes"),
        Some(json!({"host_path": "/"})),
    );
    assert_eq!(st, 403, "an island token cannot grant itself host access");

    // The whole scope: files and folders cross, the link and the FIFO are left (listed).
    let (st, v) = call(
        &me,
        "POST",
        &format!("/v1/islands/{n}/port/intake"),
        Some(json!({"scope": "docs"})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["files"], 3, "{v}");
    assert_eq!(v["dest"], "/home/agent/intake/docs");
    assert_eq!(v["bytes"], 6 + 300_000 + 6);
    let mut skipped: Vec<&str> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    skipped.sort();
    assert_eq!(skipped, ["etc-link", "pipe"]);
    let (out, _) = d.exec(
        n,
        &[
            "sh",
            "-c",
            "cd /home/agent/intake/docs && cat a.txt && sha256sum sub/b.bin && cat 'sub/deeper/c name.txt' && stat -c %U a.txt && ls -A",
        ],
    );
    assert!(out.starts_with("alpha\n"), "{out}");
    assert!(out.contains(&sha(&blob)), "{out}");
    assert!(out.contains("spaced"), "{out}");
    assert!(out.contains("agent"), "files belong to the agent: {out}");
    assert!(!out.contains("etc-link") && !out.contains("pipe"), "{out}");
    // The ledger has the crossing, with its hash, before anything else.
    let entries = ledger(&d, "port.intake", n);
    let last = entries.last().expect("a port.intake entry");
    assert_eq!(last["decision"], "allowed");
    assert_eq!(last["actor"], format!("island:{n}"));
    assert_eq!(last["detail"]["files"], 3);
    assert_eq!(last["seq"], v["ledger_seq"]);

    // One file to a chosen place: the hash is the content's.
    let (st, v) = call(
        &me,
        "POST",
        &format!("/v1/islands/{n}/port/intake"),
        Some(json!({"scope": "docs", "src_rel": "sub/b.bin", "dest": "/workspace/in/b.bin"})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["sha256"], sha(&blob));
    let (out, _) = d.exec(n, &["sha256sum", "/workspace/in/b.bin"]);
    assert!(out.starts_with(&sha(&blob)), "{out}");

    // Export: island folder → the island's export area; links there are not copied.
    d.exec(
        n,
        &[
            "sh",
            "-c",
            "mkdir -p /workspace/out/x /workspace/out/.git && printf report > /workspace/out/r.md && printf deep > /workspace/out/x/y && ln -s /etc/passwd /workspace/out/pw && printf '[core]\\n\\tfsmonitor = touch /tmp/pwned\\n' > /workspace/out/.git/config",
        ],
    );
    let (st, v) = call(
        &me,
        "POST",
        &format!("/v1/islands/{n}/port/export"),
        Some(json!({"src": "/workspace/out"})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["files"], 2, "{v}");
    let mut skipped = v["skipped"].as_array().unwrap().clone();
    skipped.sort_by_key(|s| s.to_string());
    assert_eq!(
        skipped,
        [json!(".git"), json!("pw")],
        "links and .git stay behind"
    );
    let host = PathBuf::from(v["host_path"].as_str().unwrap());
    assert!(host.starts_with(d.home.join("port").join(n).join("exports")));
    assert_eq!(
        std::fs::read_to_string(host.join("r.md")).unwrap(),
        "report"
    );
    assert_eq!(std::fs::read_to_string(host.join("x/y")).unwrap(), "deep");
    assert!(std::fs::symlink_metadata(host.join("pw")).is_err());
    assert!(
        !host.join(".git").exists(),
        "a repository's config never lands on the host"
    );

    // Write: an rw scope takes one island file, atomically, folders made on the way.
    let outbox = t.path().join("outbox");
    std::fs::create_dir(&outbox).unwrap();
    assert_eq!(grant(&d, n, &outbox, "rw")["mode"], "rw");
    let (st, v) = call(
        &me,
        "POST",
        &format!("/v1/islands/{n}/port/write"),
        Some(
            json!({"scope": "outbox", "src": "/workspace/out/r.md", "dest_rel": "reports/today.md"}),
        ),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["sha256"], sha(b"report"));
    assert_eq!(
        std::fs::read_to_string(outbox.join("reports/today.md")).unwrap(),
        "report"
    );
    // Again over the same name: replaced whole.
    d.exec(n, &["sh", "-c", "printf v2 > /workspace/out/r.md"]);
    let (st, _) = call(
        &me,
        "POST",
        &format!("/v1/islands/{n}/port/write"),
        Some(
            json!({"scope": "outbox", "src": "/workspace/out/r.md", "dest_rel": "reports/today.md"}),
        ),
    );
    assert_eq!(st, 200);
    assert_eq!(
        std::fs::read_to_string(outbox.join("reports/today.md")).unwrap(),
        "v2"
    );
    let names: Vec<_> = std::fs::read_dir(outbox.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
    for kind in ["port.grant", "port.revoke", "port.export", "port.write"] {
        assert!(!ledger(&d, kind, n).is_empty(), "{kind} is ledgered");
    }

    // A clone starts deny-all.
    let clone = unique("port-clone");
    d.ok(
        "POST",
        &format!("/v1/islands/{n}/clone"),
        Some(json!({"name": clone})),
    );
    let _c = Island {
        d: &d,
        name: clone.clone(),
    };
    assert_eq!(
        d.ok("GET", &format!("/v1/islands/{clone}/port/scopes"), None),
        json!([])
    );
    assert!(ledger_verifies(&d));
}

#[test]
fn every_path_trick_is_refused_ledgered_and_changes_nothing() {
    let d = Daemon::start();
    let a = d.create("port-a");
    let b = d.create("port-b");
    let c = d.create("port-c");
    let n = &a.name;
    let t = tempfile::tempdir().unwrap();
    let scope = t.path().join("scope");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(scope.join("inner")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "SECRET").unwrap();
    std::fs::write(scope.join("inner/ok.txt"), "fine").unwrap();
    symlink(outside.join("secret.txt"), scope.join("escape")).unwrap();
    symlink(&outside, scope.join("linkdir")).unwrap();
    grant(&d, n, &scope, "ro");
    let rw = t.path().join("rw");
    std::fs::create_dir(&rw).unwrap();
    symlink(&outside, rw.join("out")).unwrap();
    grant(&d, n, &rw, "rw");
    let theirs = t.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    grant(&d, &b.name, &theirs, "rw");
    d.exec(
        n,
        &[
            "sh",
            "-c",
            "ln -s /etc/shadow /workspace/evil && ln -s /workspace /workspace/evildir && printf x > /workspace/plain",
        ],
    );
    let before = snapshot(t.path());
    let me = as_island(&d, n);
    let denied = |kind: &str| {
        ledger(&d, kind, n)
            .iter()
            .filter(|e| e["decision"] == "denied")
            .count()
    };
    let intake = |body: Value| {
        call(
            &me,
            "POST",
            &format!("/v1/islands/{n}/port/intake"),
            Some(body),
        )
    };
    let write = |body: Value| {
        call(
            &me,
            "POST",
            &format!("/v1/islands/{n}/port/write"),
            Some(body),
        )
    };
    let export = |body: Value| {
        call(
            &me,
            "POST",
            &format!("/v1/islands/{n}/port/export"),
            Some(body),
        )
    };

    let cases: Vec<(&str, Box<dyn Fn() -> (u16, Value)>, u16, &str)> = vec![
        (
            "..",
            Box::new(|| intake(json!({"scope": "scope", "src_rel": ".."}))),
            403,
            "port.intake",
        ),
        (
            "../outside",
            Box::new(|| intake(json!({"scope": "scope", "src_rel": "../outside/secret.txt"}))),
            403,
            "port.intake",
        ),
        (
            "inner/../..",
            Box::new(|| intake(json!({"scope": "scope", "src_rel": "inner/../../outside"}))),
            403,
            "port.intake",
        ),
        (
            "%2e%2e",
            Box::new(|| intake(json!({"scope": "scope", "src_rel": "%2e%2e/outside"}))),
            403,
            "port.intake",
        ),
        (
            "%2F",
            Box::new(|| intake(json!({"scope": "scope", "src_rel": "inner%2F..%2F..%2Foutside"}))),
            403,
            "port.intake",
        ),
        (
            "absolute",
            Box::new(|| intake(json!({"scope": "scope", "src_rel": "/etc/passwd"}))),
            403,
            "port.intake",
        ),
        (
            "NUL",
            Box::new(|| intake(json!({"scope": "scope", "src_rel": "inner/ok.txt\u{0}x"}))),
            403,
            "port.intake",
        ),
        (
            "symlink leaf",
            Box::new(|| intake(json!({"scope": "scope", "src_rel": "escape"}))),
            403,
            "port.intake",
        ),
        (
            "symlinked ancestor",
            Box::new(|| intake(json!({"scope": "scope", "src_rel": "linkdir/secret.txt"}))),
            403,
            "port.intake",
        ),
        (
            "dest outside the island roots",
            Box::new(|| {
                intake(
                    json!({"scope": "scope", "src_rel": "inner/ok.txt", "dest": "/etc/cron.d/x"}),
                )
            }),
            403,
            "port.intake",
        ),
        (
            "unknown scope",
            Box::new(|| intake(json!({"scope": "theirs"}))),
            403,
            "port.intake",
        ),
        (
            "write to ro",
            Box::new(|| {
                write(json!({"scope": "scope", "src": "/workspace/plain", "dest_rel": "new.txt"}))
            }),
            403,
            "port.write",
        ),
        (
            "write ..",
            Box::new(|| {
                write(
                    json!({"scope": "rw", "src": "/workspace/plain", "dest_rel": "../outside/secret.txt"}),
                )
            }),
            403,
            "port.write",
        ),
        (
            "write through a symlinked folder",
            Box::new(|| {
                write(
                    json!({"scope": "rw", "src": "/workspace/plain", "dest_rel": "out/secret.txt"}),
                )
            }),
            403,
            "port.write",
        ),
        (
            "write an island symlink",
            Box::new(|| {
                write(json!({"scope": "rw", "src": "/workspace/evil", "dest_rel": "got.txt"}))
            }),
            403,
            "port.write",
        ),
        (
            "write an island symlinked folder",
            Box::new(|| {
                write(json!({"scope": "rw", "src": "/workspace/evildir", "dest_rel": "got.txt"}))
            }),
            403,
            "port.write",
        ),
        (
            "write into a .git folder",
            Box::new(|| {
                write(
                    json!({"scope": "rw", "src": "/workspace/plain", "dest_rel": "repo/.git/hooks/pre-commit"}),
                )
            }),
            403,
            "port.write",
        ),
        (
            "export an island symlink",
            Box::new(|| export(json!({"src": "/workspace/evil"}))),
            403,
            "port.export",
        ),
        (
            "export outside the roots",
            Box::new(|| export(json!({"src": "/etc/shadow"}))),
            403,
            "port.export",
        ),
        (
            "export ..",
            Box::new(|| export(json!({"src": "/workspace/../etc"}))),
            403,
            "port.export",
        ),
    ];
    for (what, f, want, kind) in &cases {
        let was = denied(kind);
        let (st, v) = f();
        assert_eq!(st, *want, "{what}: {v}");
        assert!(v["error"].is_string(), "{what}: a JSON error: {v}");
        wait_for(T, &format!("{what} to be ledgered as denied"), || {
            (denied(kind) > was).then_some(())
        });
        assert_eq!(snapshot(t.path()), before, "{what} changed the host");
    }
    // The daemon's own state, a folder holding it, and system trees are never granted.
    for host in [
        d.home.clone(),
        d.home.join("islands"),
        d.home.parent().unwrap().to_path_buf(),
        PathBuf::from("/proc"),
        PathBuf::from("/"),
    ] {
        let (st, v) = d.req(
            "POST",
            &format!("/v1/islands/{n}/port/scopes"),
            Some(json!({"host_path": host})),
        );
        assert_eq!(st, 403, "{}: {v}", host.display());
    }
    // The island cannot plant anything in the folder the daemon writes its agents' scripts
    // to, not even as root in the island.
    let (out, code) = d.exec(
        n,
        &[
            "sudo",
            "sh",
            "-c",
            "ln -s /etc /run/dejima/planted 2>&1 || rm -rf /run/dejima/agents.d 2>&1",
        ],
    );
    assert_ne!(code, 0, "the run folder is read-only: {out}");
    // An island's own tar may send anything: a long-name header far past any real name, or
    // a sparse entry, is refused before it is read into memory.
    let evil_tar = |kind: &str| {
        let script = format!(
            r#"
import io, sys, tarfile
b = io.BytesIO()
with tarfile.open(fileobj=b, mode="w", format=tarfile.GNU_FORMAT) as t:
    if "{kind}" == "long":
        ti = tarfile.TarInfo("plain/" + "n" * 200_000)
    else:
        ti = tarfile.TarInfo("plain")
    ti.size = 1
    t.addfile(ti, io.BytesIO(b"x"))
data = bytearray(b.getvalue())
if "{kind}" == "sparse":
    data[156] = ord("S")
    chk = sum(data[:148]) + 8 * 32 + sum(data[156:512])
    data[148:156] = ("%06o\0 " % chk).encode()
sys.stdout.buffer.write(data)
"#
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    for kind in ["long", "sparse"] {
        let bytes = evil_tar(kind);
        let r = d
            .client
            .send(
                "PUT",
                &format!("/v1/islands/{n}/files/workspace/evil.tar"),
                dejima::client::Body::Bytes(&bytes, "application/octet-stream"),
            )
            .unwrap();
        assert!(r.status < 300, "{}", r.status);
        d.exec(
            n,
            &["sudo", "sh", "-c", "printf '#!/bin/sh\ncat /workspace/evil.tar\n' > /usr/local/bin/tar && chmod 755 /usr/local/bin/tar"],
        );
        let (st, v) = export(json!({"src": "/workspace/plain"}));
        assert_eq!(st, 403, "{kind}: {v}");
        assert!(err_text(&v).contains("not acceptable"), "{kind}: {v}");
        d.exec(n, &["sudo", "rm", "-f", "/usr/local/bin/tar"]);
    }
    // Another island's scope, by its route: refused before any handler.
    let (st, _) = call(
        &me,
        "POST",
        &format!("/v1/islands/{}/port/intake", b.name),
        Some(json!({"scope": "theirs"})),
    );
    assert_eq!(st, 403);
    // An island with no grants spends nothing.
    let (st, _) = call(
        &as_island(&d, &c.name),
        "POST",
        &format!("/v1/islands/{}/port/intake", c.name),
        Some(json!({"scope": "scope"})),
    );
    assert_eq!(st, 403);
    // Past the caps: 413, and nothing crosses.
    let big = t.path().join("big");
    std::fs::create_dir(&big).unwrap();
    for k in 0..2001 {
        std::fs::write(big.join(format!("f{k}")), "").unwrap();
    }
    let huge = t.path().join("huge");
    std::fs::create_dir(&huge).unwrap();
    std::fs::File::create(huge.join("sparse"))
        .unwrap()
        .set_len(513 << 20)
        .unwrap();
    grant(&d, n, &big, "ro");
    grant(&d, n, &huge, "ro");
    for scope in ["big", "huge"] {
        let was = denied("port.intake");
        let (st, v) = intake(json!({"scope": scope}));
        assert_eq!(st, 413, "{scope}: {v}");
        assert!(denied("port.intake") > was);
        let (_, code) = d.exec(n, &["test", "-e", &format!("/home/agent/intake/{scope}")]);
        assert_ne!(code, 0, "{scope}: nothing arrived");
    }
    let (_, code) = d.exec(n, &["grep", "-rq", "SECRET", "/home/agent", "/workspace"]);
    assert_ne!(code, 0, "the outside secret never reached the island");
    assert!(ledger_verifies(&d));
}

#[test]
fn a_folder_swapped_for_a_link_during_intake_never_leaks() {
    let d = Daemon::start();
    let i = d.create("port-race");
    let n = &i.name;
    let t = tempfile::tempdir().unwrap();
    let scope = t.path().join("scope");
    let outside = t.path().join("outside");
    std::fs::create_dir_all(scope.join("d")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    for k in 0..20 {
        std::fs::write(scope.join(format!("d/f{k}")), "ok").unwrap();
        std::fs::write(outside.join(format!("f{k}")), "SECRET").unwrap();
    }
    symlink(&outside, scope.join("swap")).unwrap();
    grant(&d, n, &scope, "ro");
    // Exchange "d" (a folder) and "swap" (a link out) atomically, as fast as possible.
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let flipper = {
        let (stop, flips) = (stop.clone(), flips.clone());
        let a = std::ffi::CString::new(scope.join("d").to_str().unwrap()).unwrap();
        let b = std::ffi::CString::new(scope.join("swap").to_str().unwrap()).unwrap();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                // SAFETY: two valid C strings; renameat2 only renames.
                let r = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
                flips.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let me = as_island(&d, n);
    let (mut ok, mut refused) = (0, 0);
    for k in 0..30 {
        let src = if k % 2 == 0 { "" } else { "d" };
        let dest = format!("/home/agent/race/{k}");
        let (st, v) = call(
            &me,
            "POST",
            &format!("/v1/islands/{n}/port/intake"),
            Some(json!({"scope": "scope", "src_rel": src, "dest": dest})),
        );
        match st {
            200 => ok += 1,
            403 => refused += 1,
            _ => panic!("intake {k}: {st} {v}"),
        }
    }
    stop.store(true, Ordering::Relaxed);
    flipper.join().unwrap();
    assert!(flips.load(Ordering::Relaxed) > 100, "the race ran");
    assert!(ok > 0, "some intakes went through ({refused} refused)");
    let (out, code) = d.exec(n, &["grep", "-rl", "SECRET", "/home/agent/race"]);
    assert_ne!(code, 0, "an outside file leaked: {out}");
    let (out, _) = d.exec(n, &["sh", "-c", "find /home/agent/race -type f | wc -l"]);
    assert!(out.trim().parse::<u32>().unwrap() > 0);
    assert!(ledger_verifies(&d));
}

/// Makes the ledger's current segment immutable (even to root) while alive.
struct Frozen(PathBuf);

impl Frozen {
    fn new(d: &Daemon) -> Frozen {
        let seg = dejima::audit::segments(&d.home.join("audit"))
            .unwrap()
            .pop()
            .expect("a ledger segment");
        let st = std::process::Command::new("chattr")
            .args(["+i", seg.to_str().unwrap()])
            .status()
            .expect("chattr (e2fsprogs)");
        assert!(
            st.success(),
            "chattr +i {}: this test needs it",
            seg.display()
        );
        Frozen(seg)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .args(["-i", self.0.to_str().unwrap()])
            .status();
    }
}

#[test]
fn a_ledger_that_cannot_be_written_stops_every_crossing() {
    let d = Daemon::start();
    let i = d.create("port-closed");
    let n = &i.name;
    let t = tempfile::tempdir().unwrap();
    let docs = t.path().join("docs");
    std::fs::create_dir(&docs).unwrap();
    std::fs::write(docs.join("a.txt"), "alpha").unwrap();
    grant(&d, n, &docs, "rw");
    let marker = t.path().join("ran");
    let caps = d.home.join("capabilities");
    std::fs::create_dir_all(&caps).unwrap();
    std::fs::write(
        caps.join("touch"),
        format!("#!/bin/sh\ntouch {}\n", marker.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        caps.join("touch"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    d.ok(
        "POST",
        &format!("/v1/islands/{n}/capability/grants"),
        Some(json!({"target": "touch"})),
    );
    d.exec(n, &["sh", "-c", "printf out > /workspace/o.txt"]);
    let me = as_island(&d, n);
    let before = snapshot(t.path());
    {
        let _frozen = Frozen::new(&d);
        for (path, body) in [
            ("port/intake", json!({"scope": "docs"})),
            (
                "port/write",
                json!({"scope": "docs", "src": "/workspace/o.txt", "dest_rel": "o.txt"}),
            ),
            ("port/export", json!({"src": "/workspace/o.txt"})),
        ] {
            let (st, v) = call(&me, "POST", &format!("/v1/islands/{n}/{path}"), Some(body));
            assert_eq!(st, 503, "{path}: {v}");
            assert!(err_text(&v).contains("nothing crossed"), "{v}");
        }
        let (st, v) = call(
            &me,
            "POST",
            "/v1/capabilities/execute",
            Some(json!({"target": "touch"})),
        );
        assert_eq!(st, 503, "{v}");
    }
    assert_eq!(snapshot(t.path()), before, "nothing reached the host");
    assert!(!marker.exists(), "the capability never ran");
    let (_, code) = d.exec(n, &["test", "-e", "/home/agent/intake/docs"]);
    assert_ne!(code, 0, "nothing reached the island");
    assert!(
        !d.home.join("port").join(n).join("exports").exists()
            || std::fs::read_dir(d.home.join("port").join(n).join("exports"))
                .unwrap()
                .next()
                .is_none(),
        "nothing was exported"
    );
    // Writable again: the same calls go through, and the chain still verifies.
    let (st, v) = call(
        &me,
        "POST",
        &format!("/v1/islands/{n}/port/intake"),
        Some(json!({"scope": "docs"})),
    );
    assert_eq!(st, 200, "{v}");
    assert!(ledger_verifies(&d));
}
