//! Self-update against a real local release server (signed archives, a tampered one, a wrong
//! signature) and a real local upstream git repository (a failed build, a good one), with the
//! daemon re-executing itself while an island runs and a client is attached.

mod support;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::Signer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

const T: Duration = Duration::from_secs(60);

fn sha(b: &[u8]) -> String {
    dejima::util::hex(&Sha256::digest(b))
}

fn key(seed: u8) -> ed25519_dalek::SigningKey {
    let mut s = [0u8; 32];
    getrandom::getrandom(&mut s).unwrap();
    s[0] = seed;
    ed25519_dalek::SigningKey::from_bytes(&s)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A .tar.gz holding these files.
fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, format!("dejima-9.9.9/{name}"), *bytes)
            .unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// Python's http.server on loopback over `dir`: the stand-in release server.
struct Server(Child, u16);

impl Server {
    fn start(dir: &Path) -> Server {
        let port = free_port();
        let c = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(T, "the release server", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        Server(c, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The binaries, copied where a daemon can replace them.
fn install(dir: &Path) -> PathBuf {
    for (name, from) in [
        ("dejimad", env!("CARGO_BIN_EXE_dejimad")),
        ("dejima", env!("CARGO_BIN_EXE_dejima")),
    ] {
        std::fs::copy(from, dir.join(name)).unwrap();
        std::fs::set_permissions(dir.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir.join("dejimad")
}

fn update(d: &Daemon, body: Value) -> (u16, Value) {
    d.req("POST", "/v1/admin/update", Some(body))
}

#[test]
fn a_signed_release_replaces_the_binaries_and_the_daemon_comes_back() {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    let site = t.path().join("site");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&site).unwrap();
    let exe = install(&bin);
    let signer = key(1);
    let stranger = key(2);
    // The "new" dejimad: the same program with bytes after its end (so its hash differs).
    let mut new_daemon = std::fs::read(&exe).unwrap();
    new_daemon.extend_from_slice(b"\0release 9.9.9\0");
    let cli = std::fs::read(bin.join("dejima")).unwrap();
    let good = archive(&[("dejimad", &new_daemon), ("dejima", &cli)]);
    std::fs::write(site.join("good.tar.gz"), &good).unwrap();
    let mut tampered = good.clone();
    let n = tampered.len();
    tampered[n - 20] ^= 0xff;
    std::fs::write(site.join("tampered.tar.gz"), &tampered).unwrap();
    let platform = dejima::update::platform();
    let index = |file: &str, sha256: &str, sig: &[u8]| {
        std::fs::write(
            site.join("index.json"),
            json!({"version": "9.9.9", "archives": {platform.clone(): {
                "url": file, "sha256": sha256, "signature": b64(sig)}}})
            .to_string(),
        )
        .unwrap();
    };
    let server = Server::start(&site);
    let url = format!("http://127.0.0.1:{}/index.json", server.1);
    let pk = b64(signer.verifying_key().as_bytes());
    let d = Daemon::start_exe(&exe, &["--update-index", &url, "--update-key", &pk], &[]);
    let before = sha(&std::fs::read(&exe).unwrap());

    index("good.tar.gz", &sha(&good), &signer.sign(&good).to_bytes());
    let (st, v) = update(&d, json!({}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["mode"], "release");
    assert_eq!(v["latest"], "9.9.9");
    assert_eq!(v["update_available"], true);
    assert_eq!(v["applying"], false, "a dry run changes nothing");

    // A tampered archive (its hash in the index, the signature of the good one), a checksum
    // that does not match, a signature by another key: refused, the old binaries stay.
    for (file, sum, sig, why) in [
        (
            "tampered.tar.gz",
            sha(&tampered),
            signer.sign(&good).to_bytes(),
            "signature",
        ),
        (
            "good.tar.gz",
            sha(b"other"),
            signer.sign(&good).to_bytes(),
            "SHA-256",
        ),
        (
            "good.tar.gz",
            sha(&good),
            stranger.sign(&good).to_bytes(),
            "signature",
        ),
    ] {
        index(file, &sum, &sig);
        let (st, v) = update(&d, json!({"execute": true, "force": true}));
        assert_eq!(st, 502, "{file}: {v}");
        assert!(err_text(&v).contains(why), "{v}");
        assert_eq!(sha(&std::fs::read(&exe).unwrap()), before, "unchanged");
    }
    assert_eq!(
        ledger(&d, "update.failed", "").len(),
        3,
        "each refusal is ledgered"
    );

    // An island runs and a client is attached: the update waits unless forced.
    index("good.tar.gz", &sha(&good), &signer.sign(&good).to_bytes());
    let i = d.create("upd");
    let mut ws = d.attach(&format!("/v1/islands/{}/session?label=laptop", i.name));
    ws.hello();
    let (st, v) = update(&d, json!({"execute": true}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["applying"], false);
    assert!(v["attached"].to_string().contains("laptop"), "{v}");
    assert_eq!(sha(&std::fs::read(&exe).unwrap()), before);
    let (st, v) = update(&d, json!({"execute": true, "force": true}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["applying"], true, "{v}");
    let closed = ws.expect_close(T);
    assert!(closed.starts_with("1012"), "restart, reconnect: {closed}");
    // The new binary is in place (the old kept beside it), and it runs.
    assert_eq!(sha(&std::fs::read(&exe).unwrap()), sha(&new_daemon));
    assert!(bin.join(".dejimad.old").exists());
    wait_for(T, "the re-executed daemon to answer", || {
        d.client
            .send("GET", "/v1/healthz", dejima::client::Body::None)
            .ok()
            .filter(|r| r.status == 200)
    });
    assert!(
        d.log().matches("listening on").count() >= 2,
        "it started again"
    );
    // The island kept running and is the new process's (once its first look at the engine
    // is in, it reports it running).
    wait_for(T, "the new process to see the island running", || {
        let info = d.ok("GET", &format!("/v1/islands/{}", i.name), None);
        (info["container"] == "running").then_some(())
    });
    let (out, code) = d.exec(&i.name, &["echo", "still-here"]);
    assert_eq!((out.trim(), code), ("still-here", 0));
    assert_eq!(ledger(&d, "update.applied", "").len(), 1);
    // Already the latest now? The index says 9.9.9, this binary is still 0.x: it would offer
    // it again, so a dry run is all that is asked here.
    assert_eq!(update(&d, json!({})).0, 200);
    drop(server);
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A tiny project whose `dejimad` writes a marker and exits (what the re-exec runs).
fn write_project(dir: &Path, marker: &Path, body: &str) {
    std::fs::create_dir_all(dir.join("src/bin")).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"fake-dejima\"\nversion = \"0.0.1\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/bin/dejimad.rs"),
        format!(
            "fn main() {{ {body}; std::fs::write({:?}, \"new dejimad ran\").unwrap(); }}\n",
            marker.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("src/bin/dejima.rs"), "fn main() {}\n").unwrap();
    std::fs::write(dir.join(".gitignore"), "target/\n").unwrap();
}

#[test]
fn a_source_checkout_fast_forwards_builds_and_keeps_the_old_on_failure() {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = install(&bin);
    let marker = t.path().join("marker");
    let upstream = t.path().join("upstream.git");
    let dev = t.path().join("dev");
    let checkout = t.path().join("checkout");
    git(
        t.path(),
        &["init", "-q", "--bare", upstream.to_str().unwrap()],
    );
    git(
        t.path(),
        &[
            "clone",
            "-q",
            upstream.to_str().unwrap(),
            dev.to_str().unwrap(),
        ],
    );
    write_project(&dev, &marker, "");
    git(&dev, &["add", "."]);
    git(&dev, &["commit", "-q", "-m", "v1"]);
    git(&dev, &["push", "-q", "origin", "HEAD:main"]);
    git(
        t.path(),
        &[
            "clone",
            "-q",
            upstream.to_str().unwrap(),
            checkout.to_str().unwrap(),
        ],
    );
    let d = Daemon::start_exe(&exe, &["--update-source", checkout.to_str().unwrap()], &[]);
    let before = sha(&std::fs::read(&exe).unwrap());
    let (st, v) = update(&d, json!({}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["mode"].clone(), v["update_available"].clone()),
        (json!("source"), json!(false))
    );
    // Upstream moves on with code that does not build: the old binaries stay, and it says why.
    write_project(&dev, &marker, "let x: u32 = \"not a number\"");
    git(&dev, &["commit", "-q", "-am", "broken"]);
    git(&dev, &["push", "-q", "origin", "HEAD:main"]);
    let (st, v) = update(&d, json!({}));
    assert_eq!(v["update_available"], true, "{st} {v}");
    let (st, v) = update(&d, json!({"execute": true}));
    assert_eq!(st, 409, "{v}");
    assert!(err_text(&v).contains("build failed"), "{v}");
    assert_eq!(sha(&std::fs::read(&exe).unwrap()), before);
    assert!(!marker.exists());
    // Fixed upstream: built, put in place, and the daemon re-executes into it.
    write_project(&dev, &marker, "");
    git(&dev, &["commit", "-q", "-am", "fixed"]);
    git(&dev, &["push", "-q", "origin", "HEAD:main"]);
    let (st, v) = update(&d, json!({"execute": true}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["applying"], true);
    wait_for(T, "the rebuilt dejimad to run", || {
        std::fs::read_to_string(&marker).ok()
    });
    assert_ne!(sha(&std::fs::read(&exe).unwrap()), before);
    let _ = std::io::stdout().flush();
}
