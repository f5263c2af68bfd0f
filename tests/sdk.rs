//! The SDKs' own live suites against a real daemon and engine: Python (`sdk/python`, pytest,
//! requests + websocket-client) and TypeScript (`sdk/ts`, node:test, ws). Each suite covers
//! every operation its SDK has, attaches (island, a named agent, two sessions on one
//! screen), and checks errors, the Unix socket and TCP with tokens; each also fails when
//! openapi.yaml has an operation its SDK lacks. A suite that skips tests fails here.
//! scripts/setup installs both (pip install ./sdk/python[ws] pytest; npm ci in sdk/ts).

mod support;

use std::process::Command;

use support::*;

fn run(program: &str, args: &[&str], dir: &str, envs: &[(&str, String)]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(format!("{}/{dir}", env!("CARGO_MANIFEST_DIR")))
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .env_remove("DEJIMA_HOST")
        .env_remove("DEJIMA_TOKEN")
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e} (run scripts/setup)"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n--- the whole output ---\n{text}",
        failures(&text)
    );
    text
}

/// The failed tests' own reports (node:test `not ok` blocks, pytest's FAILED/ERROR lines),
/// put first: a long report's tail is what a CI log keeps.
fn failures(text: &str) -> String {
    let mut out = String::new();
    let mut in_block = false;
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with("not ok") || t.starts_with("FAILED ") || t.starts_with("ERROR ") {
            in_block = t.starts_with("not ok");
            out.push_str(l);
            out.push('\n');
        } else if in_block {
            if t == "..." {
                in_block = false;
            } else if t.starts_with("error:") || t.starts_with("location:") {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    out
}

fn tcp_daemon() -> (Daemon, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    (Daemon::start_with(&["--tcp", &addr], &[]), addr)
}

#[test]
fn the_typescript_sdk_passes_its_live_suite() {
    let (d, addr) = tcp_daemon();
    // The committed types are what openapi.yaml generates, and they type-check.
    run("npm", &["run", "--silent", "gen:check"], "sdk/ts", &[]);
    run("npm", &["run", "--silent", "build"], "sdk/ts", &[]);
    run("npm", &["run", "--silent", "check"], "sdk/ts", &[]);
    // What `npm pack` would ship: the built module and its types.
    let pack = run(
        "npm",
        &["pack", "--dry-run", "--json", "--silent"],
        "sdk/ts",
        &[],
    );
    for f in ["dist/index.js", "dist/index.d.ts", "package.json"] {
        assert!(
            pack.contains(&format!("\"{f}\"")),
            "npm pack lacks {f}:\n{pack}"
        );
    }
    let out = run(
        "npm",
        &["test", "--silent"],
        "sdk/ts",
        &[
            ("DEJIMA_HOME", d.home.display().to_string()),
            ("DEJIMA_TEST_TCP", addr.clone()),
        ],
    );
    let count = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("# {key} ")))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or_else(|| panic!("no '# {key}' in the node:test report:\n{out}"))
    };
    assert!(count("pass") >= 30, "{out}");
    assert_eq!(count("fail"), 0, "{out}");
    assert_eq!(count("skipped"), 0, "a skipped test hides a gap:\n{out}");
    assert_eq!(count("todo"), 0, "{out}");
}

#[test]
fn the_python_sdk_passes_its_live_suite() {
    let (d, addr) = tcp_daemon();
    let out = run(
        "python3",
        &[
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-p",
            "no:cacheprovider",
            "sdk/python/tests",
        ],
        ".",
        &[
            ("DEJIMA_HOME", d.home.display().to_string()),
            ("DEJIMA_TEST_TCP", addr.clone()),
            // The SDK under test is this checkout's, whatever is installed.
            (
                "PYTHONPATH",
                format!("{}/sdk/python", env!("CARGO_MANIFEST_DIR")),
            ),
        ],
    );
    let summary = out
        .lines()
        .rev()
        .find(|l| l.contains(" passed"))
        .unwrap_or_else(|| panic!("no pytest summary:\n{out}"));
    let passed: u32 = summary
        .split_whitespace()
        .zip(summary.split_whitespace().skip(1))
        .find(|(_, w)| w.starts_with("passed"))
        .and_then(|(n, _)| n.trim_start_matches('=').parse().ok())
        .unwrap_or(0);
    assert!(passed >= 30, "{out}");
    for bad in ["skipped", "failed", "error", "xfail"] {
        assert!(
            !summary.contains(bad),
            "{bad} in the suite: {summary}\n{out}"
        );
    }
}
