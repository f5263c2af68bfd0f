//! The written contract stays equal to the code: openapi.yaml lists exactly the router's
//! routes, and the man pages are lint-clean and name every subcommand and flag.

use std::collections::BTreeSet;
use std::process::Command;

use dejima::http::router::ROUTES;

/// (METHOD, /path) pairs under `paths:` in openapi.yaml (two-space path keys, four-space
/// method keys).
fn spec_routes() -> BTreeSet<(String, String)> {
    spec_roles().into_keys().collect()
}

/// Each operation under `paths:` in openapi.yaml, with its `x-dejima-role` ("" when none).
fn spec_roles() -> std::collections::BTreeMap<(String, String), String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let mut out = std::collections::BTreeMap::new();
    let (mut in_paths, mut path, mut method) = (false, String::new(), String::new());
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
            method = m.trim_end().trim_end_matches(':').to_uppercase();
            if ["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                out.insert((method.clone(), path.clone()), String::new());
            }
        } else if let Some(r) = line.trim().strip_prefix("x-dejima-role:") {
            out.insert((method.clone(), path.clone()), r.trim().to_string());
        }
    }
    out
}

#[test]
fn openapi_names_the_role_each_route_needs() {
    let spec = spec_roles();
    for r in ROUTES {
        let key = (r.method.to_string(), r.pattern.replace("...}", "}"));
        let want = match r.access {
            dejima::http::router::Access::Any => "any".to_string(),
            _ => r.role.to_string(),
        };
        assert_eq!(
            spec.get(&key).map(String::as_str),
            Some(want.as_str()),
            "x-dejima-role of {} {}",
            key.0,
            key.1
        );
    }
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
    // dejimad's flags and environment come from its own --help, so a new one without a
    // man entry fails here.
    let d = man("dejimad.8");
    let help = Command::new(env!("CARGO_BIN_EXE_dejimad"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let options = help
        .split_once("\nOptions:\n")
        .map(|(_, o)| o)
        .unwrap_or("");
    let flags: Vec<&str> = options
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("--"))
        .filter_map(|l| l.split_whitespace().next())
        .map(|f| f.trim_end_matches(','))
        .filter(|f| *f != "help")
        .collect();
    assert!(flags.len() >= 10, "parsed too few flags: {flags:?}");
    for flag in &flags {
        assert!(
            d.contains(&format!("Fl \\-{}", flag.replace('-', "\\-"))),
            "dejimad.8 lacks --{flag}"
        );
    }
    let envs: std::collections::BTreeSet<&str> = help
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .filter(|w| w.starts_with("DEJIMA_") || *w == "RUST_LOG")
        .collect();
    assert!(envs.len() >= 8, "parsed too few variables: {envs:?}");
    for env in envs {
        assert!(d.contains(&format!("Ev {env}")), "dejimad.8 lacks {env}");
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

#[test]
fn the_sdks_version_with_the_daemon() {
    let root = env!("CARGO_MANIFEST_DIR");
    let want = env!("CARGO_PKG_VERSION");
    let pkg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/sdk/ts/package.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(pkg["version"], want, "sdk/ts/package.json");
    let py = std::fs::read_to_string(format!("{root}/sdk/python/pyproject.toml")).unwrap();
    assert!(
        py.lines()
            .any(|l| l.trim() == format!("version = \"{want}\"")),
        "sdk/python/pyproject.toml must say version = \"{want}\""
    );
}
