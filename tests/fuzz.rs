//! The contract under a fuzzer: schemathesis (PyPI) generates requests from openapi.yaml and
//! checks every answer against it (status codes, response schemas, content types, negative
//! data rejected, positive data accepted, no 5xx) against a live daemon and the real engine.
//! Run twice: with a fixed seed (reproducible) and a fresh one. The daemon runs with
//! --egress-loopback: webhook and GitHub URLs the fuzzer makes up never leave loopback.
//!
//! Two passes per seed: an operator token drives the island routes (so a repo "path" is a 403
//! and the host's disk is never copied), the owner token the owner-only routes (credentials,
//! tokens, the ledger), and last the panic switch and (disabled) host terminals. What is
//! left out, and why, is listed at LEFT_OUT.

mod support;

use std::process::Command;

use serde_json::json;
use support::*;

const OWNER_ONLY: &str = "^/v1/(credentials|tokens|audit)";
/// Left out: websocket and SSH upgrades and follow streams (the SDK suites drive those); prompts
/// and uploads, which wait seconds on a real agent's screen for each call and answer 504 when
/// the pane never shows the paste (tests/live.rs drives both); image builds
/// (each a real 1 GB build), and clone, which pauses its source while it copies: on this
/// engine (docker 20.10) an exec into a paused container waits instead of failing, so the
/// fuzzer's concurrent reads of the source time out (tests/islands.rs covers clone). Port
/// scope grants too: a made-up host path that exists (/, /usr) would hand host folders to
/// the fuzzer's islands (tests/port.rs covers grants and every path trick).
const LEFT_OUT: &str =
    "/session$|/ssh$|^/v1/stream$|/prompt$|/upload$|^/v1/events/stream|^/v1/image/build|^/v1/panic|^/v1/terminals|/clone$|/port/scopes";
/// Last: the panic switch (engaging it stops everything after it) and host terminals (off on
/// this daemon, so their refusals; the fuzzer never starts a shell on the host).
const LAST: &str = "^/v1/(panic|terminals)";
/// Revoking a token is fuzzed on its own: with the token list in the same run, the fuzzer's
/// stateful phase would follow an id it read there and revoke the very token it runs with.
const OWNER_MAIN: &str = "^/v1/(credentials|audit)|^/v1/tokens$";
const REVOKE: &str = "^/v1/tokens/";

/// A copy of the command with `--seed` added (std's Command cannot be cloned).
trait WithSeed {
    fn clone_with_seed(&self, seed: u64) -> Command;
}

impl WithSeed for Command {
    fn clone_with_seed(&self, seed: u64) -> Command {
        let mut c = Command::new(self.get_program());
        c.args(self.get_args()).args(["--seed", &seed.to_string()]);
        if let Some(d) = self.get_current_dir() {
            c.current_dir(d);
        }
        c
    }
}

fn schemathesis(
    addr: &str,
    token: &str,
    seed: u64,
    secs: u64,
    include: &str,
    exclude: &str,
) -> String {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut cmd = Command::new("python3");
    // Its cache and crash records go in a scratch directory, not the checkout.
    let scratch = std::env::temp_dir().join("dejima-fuzz");
    let _ = std::fs::create_dir_all(&scratch);
    cmd.current_dir(&scratch)
        .args(["-m", "schemathesis.cli"])
        .args(["--config-file", &format!("{root}/tests/schemathesis.toml")])
        .args(["run", &format!("{root}/openapi.yaml")])
        .args(["--url", &format!("http://{addr}")])
        .args(["--checks", "all"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--max-time", &secs.to_string()])
        .args(["--workers", "2"])
        .args(["--no-color"]);
    if !include.is_empty() {
        cmd.args(["--include-path-regex", include]);
    }
    if include == OWNER_MAIN {
        // On these schemas the coverage phase reliably crashes the tool itself (CPython 3.11's
        // ast, see below); the other phases still generate, negate and chain every operation.
        cmd.args(["--phases", "examples,fuzzing,stateful"]);
    }
    if !exclude.is_empty() {
        cmd.args(["--exclude-path-regex", exclude]);
    }
    // CPython 3.11's ast module can trip over its own recursion counter when Hypothesis
    // parses a big source file deep in a stack ("AST constructor recursion depth mismatch"):
    // a crash inside the tool, not a finding about the API. Such a run, with no failures,
    // is run again with the next seed (up to three tries); anything else is reported.
    let mut attempts = 0;
    loop {
        attempts += 1;
        // The crash follows the seed, so another try takes the next one.
        let seed = seed + (attempts - 1) * 7919;
        let out = cmd
            .clone_with_seed(seed)
            .output()
            .expect("python3 -m schemathesis (scripts/setup installs it)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let tool_crash = !text.contains("Failures:")
            && text.contains("AST constructor recursion depth mismatch");
        if out.status.success() || !tool_crash || attempts == 3 {
            assert!(
                out.status.success(),
                "schemathesis (seed {seed}, {include}{exclude}) found failures:\n{text}"
            );
            return text;
        }
        eprintln!(
            "schemathesis crashed inside Python's ast module (seed {seed}); trying the next seed"
        );
    }
}

#[test]
fn the_contract_holds_under_schemathesis() {
    // The islands the fuzzer makes run the slim image: its agents are plain shells, so dozens
    // of them do not load a 2-core host with agent CLIs starting up.
    let image = "dejima/island:fuzz-slim";
    {
        let b = Daemon::start();
        let r = b
            .client
            .call(
                "POST",
                "/v1/image/build",
                dejima::client::Body::Bytes(
                    json!({"tag": image, "slim": true}).to_string().as_bytes(),
                    "application/json",
                ),
            )
            .unwrap();
        let text = r.text().unwrap();
        assert!(
            text.trim_end()
                .lines()
                .last()
                .unwrap_or("")
                .starts_with("ok:"),
            "{text}"
        );
    }
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start_with(
        &[
            "--tcp",
            &addr,
            "--require-token",
            "--egress-loopback",
            "--image",
            image,
        ],
        &[],
    );
    // Whatever happens, what the fuzzer made is purged (islands with their engine objects).
    struct PurgeAll<'a>(&'a Daemon);
    impl Drop for PurgeAll<'_> {
        fn drop(&mut self) {
            let (_, islands) = self.0.req("GET", "/v1/islands", None);
            for i in islands.as_array().into_iter().flatten() {
                if let Some(n) = i["name"].as_str() {
                    purge_everything(self.0, n);
                }
            }
        }
    }
    let _purge = PurgeAll(&d);
    let token = |role: &str| {
        d.ok(
            "POST",
            "/v1/tokens",
            Some(json!({"role": role, "label": "fuzz"})),
        )["secret"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (operator, owner) = (token("operator"), token("owner"));
    // FUZZ_SCALE stretches the time budget (e.g. 4 for a long local run).
    let scale: u64 = std::env::var("FUZZ_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let fresh = u64::from_str_radix(&dejima::util::random_hex(6), 16).unwrap();
    for (seed, secs) in [(1, [60, 30, 15]), (fresh, [45, 20, 10])] {
        let secs = secs.map(|s| s * scale);
        let runs = [
            schemathesis(
                &addr,
                &operator,
                seed,
                secs[0],
                "",
                &format!("{OWNER_ONLY}|{LEFT_OUT}"),
            ),
            schemathesis(&addr, &owner, seed, secs[1], OWNER_MAIN, ""),
            schemathesis(&addr, &owner, seed, secs[2], REVOKE, ""),
            schemathesis(&addr, &owner, seed, secs[2], LAST, ""),
        ];
        for t in runs {
            let summary = t
                .lines()
                .filter(|l| l.contains("generated") || l.contains(" in "))
                .collect::<Vec<_>>()
                .join(" / ");
            println!("seed {seed}: {summary}");
        }
    }
}
