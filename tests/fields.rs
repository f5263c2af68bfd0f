//! The contract at the field level, against a live daemon: every request body the spec
//! describes has exactly the fields the daemon takes (its own "unknown field" refusal lists
//! them), and every response carries only fields the spec names, always with the ones the
//! spec requires. A field added to the code and not the spec (or the reverse) fails here.

mod support;

use std::collections::BTreeSet;

use dejima::client::Body;
use serde_json::{json, Value};
use support::*;

/// openapi.yaml as JSON (PyYAML comes with schemathesis; scripts/setup installs it).
fn spec() -> Value {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,sys,yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
            concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"),
        ])
        .output()
        .expect("python3 with PyYAML (run scripts/setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Follow a local `$ref`.
fn resolve<'a>(spec: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut cur = spec;
            for part in r.trim_start_matches("#/").split('/') {
                cur = &cur[part];
            }
            resolve(spec, cur)
        }
        None => v,
    }
}

fn names(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// The body schema of an operation, resolved.
fn body_schema<'a>(spec: &'a Value, path: &str, method: &str) -> Option<&'a Value> {
    let op = &spec["paths"][path][method];
    let s = &op["requestBody"]["content"]["application/json"]["schema"];
    (!s.is_null()).then(|| resolve(spec, s))
}

/// The fields named in a serde "unknown field `x`, expected one of `a`, `b`" refusal.
fn expected_fields(msg: &str) -> Option<BTreeSet<String>> {
    let rest = msg.split("expected").nth(1)?;
    Some(
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect(),
    )
}

#[test]
fn request_bodies_take_exactly_the_fields_the_spec_names() {
    let d = Daemon::start();
    let spec = spec();
    let island = d.create("fields");
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in ["post", "put", "patch"] {
            let Some(schema) = body_schema(&spec, path, method) else {
                continue;
            };
            let url = path
                .replace("{name}", &island.name)
                .replace("{id}", "a1")
                .replace("{provider}", "anthropic")
                .replace("{path...}", "workspace/x");
            if path.contains("/files/") || item[method].is_null() {
                continue;
            }
            let probe = br#"{"__probe__": 1}"#;
            let r = d
                .client
                .send(
                    &method.to_uppercase(),
                    &url,
                    Body::Bytes(probe, "application/json"),
                )
                .unwrap();
            let status = r.status;
            let text = r.text().unwrap_or_default();
            let spec_fields = names(&schema["properties"]);
            let closed = schema["additionalProperties"] == json!(false);
            match serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .filter(|e| e.contains("unknown field"))
            {
                Some(e) => {
                    assert_eq!(status, 400, "{method} {path}: {text}");
                    let code_fields = expected_fields(&e).unwrap_or_else(|| {
                        panic!("{method} {path}: no field list in {e:?}")
                    });
                    assert_eq!(
                        code_fields, spec_fields,
                        "{method} {path}: the daemon takes {code_fields:?}, the spec names {spec_fields:?}"
                    );
                    assert!(closed, "{method} {path}: the daemon refuses unknown fields; the spec should say additionalProperties: false");
                    checked += 1;
                }
                None => assert!(
                    !closed,
                    "{method} {path}: the spec refuses unknown fields, the daemon took one ({status} {text})"
                ),
            }
        }
    }
    assert!(checked >= 20, "only {checked} bodies checked");
}

/// Keys of `v` missing from the schema's properties, and required ones missing from `v`.
fn check_object(spec: &Value, schema: &Value, v: &Value, what: &str) {
    let schema = resolve(spec, schema);
    let props = names(&schema["properties"]);
    let keys = names(v);
    let extra: Vec<_> = keys.difference(&props).collect();
    assert!(
        extra.is_empty(),
        "{what}: the daemon sends {extra:?}, which the spec does not name"
    );
    let required: BTreeSet<String> = schema["required"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let missing: Vec<_> = required.difference(&keys).collect();
    assert!(
        missing.is_empty(),
        "{what}: the spec requires {missing:?}, the daemon left them out: {v}"
    );
}

fn response_schema<'a>(spec: &'a Value, path: &str, method: &str, status: &str) -> &'a Value {
    let r = resolve(spec, &spec["paths"][path][method]["responses"][status]);
    resolve(spec, &r["content"]["application/json"]["schema"])
}

#[test]
fn responses_carry_the_fields_the_spec_names() {
    let d = Daemon::start();
    let spec = spec();
    let island = d.create("respfields");
    let n = island.name.clone();
    d.ok(
        "PUT",
        "/v1/credentials/providers/anthropic",
        Some(json!({"api_key": "sk-ant-fields-0123456789"})),
    );
    d.ok(
        "PUT",
        "/v1/credentials/github/work",
        Some(json!({"login": "octo", "token": "ghp_fields0123456789", "id": 1})),
    );
    d.ok(
        "PUT",
        "/v1/credentials/claude",
        Some(json!({"credentials_json": {"x": 1}})),
    );
    d.ok(
        "POST",
        &format!("/v1/islands/{n}/agents"),
        Some(json!({"type": "claude-code", "label": "l", "model": "m"})),
    );
    d.ok(
        "POST",
        "/v1/events/subscribe",
        Some(json!({"url": "http://127.0.0.1:9/x", "secret": "s"})),
    );
    d.ok("POST", "/v1/tokens", Some(json!({"role": "viewer"})));
    let cases: Vec<(&str, &str, String, Option<Value>, &str)> = vec![
        (
            "/v1/islands/{name}",
            "get",
            format!("/v1/islands/{n}"),
            None,
            "200",
        ),
        (
            "/v1/islands/{name}/agents/{id}",
            "get",
            format!("/v1/islands/{n}/agents/a2"),
            None,
            "200",
        ),
        (
            "/v1/islands/{name}/agents/{id}/config",
            "patch",
            format!("/v1/islands/{n}/agents/a2/config"),
            Some(json!({"model": "m2"})),
            "200",
        ),
        (
            "/v1/islands/{name}/exec",
            "post",
            format!("/v1/islands/{n}/exec"),
            Some(json!({"cmd": ["true"]})),
            "200",
        ),
        (
            "/v1/islands/{name}/workspace-ready",
            "get",
            format!("/v1/islands/{n}/workspace-ready"),
            None,
            "200",
        ),
        (
            "/v1/credentials/claude",
            "get",
            "/v1/credentials/claude".into(),
            None,
            "200",
        ),
        (
            "/v1/credentials/providers/{provider}",
            "get",
            "/v1/credentials/providers/anthropic".into(),
            None,
            "200",
        ),
        ("/v1/panic", "get", "/v1/panic".into(), None, "200"),
    ];
    for (path, method, url, body, status) in cases {
        let v = d.ok(&method.to_uppercase(), &url, body);
        check_object(
            &spec,
            response_schema(&spec, path, method, status),
            &v,
            &format!("{method} {path}"),
        );
    }
    // Lists: every item against the item schema.
    let lists: Vec<(&str, String)> = vec![
        ("/v1/islands", "/v1/islands".into()),
        (
            "/v1/islands/{name}/agents",
            format!("/v1/islands/{n}/agents"),
        ),
        ("/v1/tokens", "/v1/tokens".into()),
        (
            "/v1/events/subscriptions",
            "/v1/events/subscriptions".into(),
        ),
        ("/v1/credentials/github", "/v1/credentials/github".into()),
        (
            "/v1/credentials/providers",
            "/v1/credentials/providers".into(),
        ),
    ];
    for (path, url) in lists {
        let v = d.ok("GET", &url, None);
        let schema = response_schema(&spec, path, "get", "200");
        let items = resolve(&spec, &schema["items"]);
        let arr = v
            .as_array()
            .unwrap_or_else(|| panic!("{path}: not a list: {v}"));
        assert!(!arr.is_empty(), "{path}: nothing to check");
        for item in arr {
            check_object(&spec, items, item, &format!("get {path} item"));
        }
    }
    // An island's agents, as the island detail nests them.
    let info = d.ok("GET", &format!("/v1/islands/{n}"), None);
    let agent_schema = &spec["components"]["schemas"]["AgentInfo"];
    for a in info["agents"].as_array().unwrap() {
        check_object(&spec, agent_schema, a, "IslandInfo.agents[]");
    }
}
