//! The written contract stays equal to the code: openapi.yaml lists exactly the router's
//! routes, and the man pages are lint-clean and name every subcommand and flag.

use std::collections::BTreeSet;
use std::process::Command;

use dejima::http::router::ROUTES;

/// (METHOD, /path) pairs under `paths:` in openapi.yaml (two-space path keys, four-space
/// method keys).
fn spec_routes() -> BTreeSet<(String, String)> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let mut out = BTreeSet::new();
    let mut in_paths = false;
    let mut path = String::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line.trim_end() == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /") {
            path = format!("/{}", p.trim_end().trim_end_matches(':'));
        } else if let Some(m) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let m = m.trim_end().trim_end_matches(':');
            if ["get", "post", "put", "patch", "delete"].contains(&m) {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn openapi_lists_exactly_the_routes() {
    let code: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.pattern.replace("...}", "}")))
        .collect();
    let spec = spec_routes();
    let missing: Vec<_> = code.difference(&spec).collect();
    let extra: Vec<_> = spec.difference(&code).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes not in openapi.yaml: {missing:?}\nin openapi.yaml but not routed: {extra:?}"
    );
}

/// The subcommand names `dejima <prefix> --help` lists under "Commands:".
fn help_commands(prefix: &[&str]) -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_dejima"))
        .args(prefix)
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some((_, rest)) = text.split_once("\nCommands:\n") else {
        return Vec::new();
    };
    rest.lines()
        .take_while(|l| !l.trim().is_empty())
        // A command line starts at column 2; wrapped descriptions are indented further.
        .filter(|l| l.starts_with("  ") && !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn man(name: &str) -> String {
    std::fs::read_to_string(format!("{}/man/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn man_pages_name_every_subcommand_and_flag() {
    // The commands come from the CLI itself (its --help, one level of subcommands down), so
    // a new command without a man entry fails here.
    let m = man("dejima.1");
    let mut all = Vec::new();
    for top in help_commands(&[]) {
        let subs = help_commands(&[top.as_str()]);
        if subs.is_empty() {
            all.push(top);
        } else {
            all.extend(subs.into_iter().map(|s| format!("{top} {s}")));
        }
    }
    assert!(
        all.len() >= 30,
        "parsed too few commands from --help: {all:?}"
    );
    for sub in &all {
        let cm = format!(".Cm {}\n", sub.replace('-', "\\-"));
        assert!(m.contains(&cm), "dejima.1 lacks {sub}");
    }
    let d = man("dejimad.8");
    for flag in ["tcp", "allow-cidr", "image", "host-terminals", "version"] {
        assert!(
            d.contains(&format!("Fl \\-{}", flag.replace('-', "\\-"))),
            "dejimad.8 lacks --{flag}"
        );
    }
    for env in [
        "DEJIMA_HOME",
        "DEJIMA_DOCKER",
        "RUST_LOG",
        "DEJIMA_ENGINE_TIMEOUT",
        "DEJIMA_BASE_IMAGE",
    ] {
        assert!(d.contains(env), "dejimad.8 lacks {env}");
    }
    // The daemon's --help names the same flags.
    let help = Command::new(env!("CARGO_BIN_EXE_dejimad"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in ["--tcp", "--allow-cidr", "--image", "--host-terminals"] {
        assert!(help.contains(flag), "dejimad --help lacks {flag}");
    }
}

#[test]
fn man_pages_are_lint_clean() {
    let Ok(out) = Command::new("mandoc")
        .args(["-Tlint", "-W", "warning"])
        .arg(format!("{}/man/dejima.1", env!("CARGO_MANIFEST_DIR")))
        .arg(format!("{}/man/dejimad.8", env!("CARGO_MANIFEST_DIR")))
        .output()
    else {
        // scripts/test installs mandoc; a bare `cargo test` elsewhere may not have it.
        assert!(std::env::var("CI").is_err(), "mandoc is required under CI");
        eprintln!("mandoc not installed; lint skipped");
        return;
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "mandoc -Tlint:\n{text}"
    );
}
