//! The Kubernetes runtime at scale on the test cluster (`scripts/bench kube`): islands created
//! through the API (most then hibernated), create, hibernate and wake latency against kubectl
//! doing the same by hand in the same run, and list latency with them all. Needs
//! `scripts/kube-up`. Knob: BENCH_KUBE_ISLANDS (default 200).

mod support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;
use support::bench::*;
use support::kube::OnKube;
use support::*;

/// Ten rounds of what the runtime does for a create and a wake, by hand: two claims and a pod
/// from the island image, waited on until it runs; then the pod deleted and made again.
fn raw_rounds(k: &OnKube) -> (Vec<Duration>, Vec<Duration>) {
    let (mut create, mut wake) = (Vec::new(), Vec::new());
    for r in 0..10 {
        let name = format!("raw-{r}");
        let claim = |v: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                   "metadata": {"name": format!("{name}-{v}")},
                   "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}})
        };
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
              "containers": [{"name": "island", "image": "dejima/island:latest", "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [{"name": "w", "mountPath": "/workspace"}, {"name": "h", "mountPath": "/home/agent"}]}],
              "volumes": [
                {"name": "w", "persistentVolumeClaim": {"claimName": format!("{name}-workspace")}},
                {"name": "h", "persistentVolumeClaim": {"claimName": format!("{name}-home")}}]}});
        let apply = |doc: &serde_json::Value| {
            let f = std::env::temp_dir().join(format!("djb-{}.json", dejima::util::random_hex(4)));
            std::fs::write(&f, doc.to_string()).unwrap();
            k.k(&["apply", "-f", f.to_str().unwrap()]).unwrap();
            let _ = std::fs::remove_file(f);
        };
        let ready = || {
            k.k(&[
                "wait",
                "--for=condition=Ready",
                &format!("pod/{name}"),
                "--timeout=120s",
            ])
            .unwrap();
        };
        let t = Instant::now();
        apply(&claim("workspace"));
        apply(&claim("home"));
        apply(&pod);
        ready();
        create.push(t.elapsed());
        k.k(&["delete", "pod", &name, "--wait=true"]).unwrap();
        let t = Instant::now();
        apply(&pod);
        ready();
        wake.push(t.elapsed());
        k.k(&["delete", "pod", &name, "--wait=false"]).unwrap();
    }
    (create, wake)
}

fn p(v: &[Duration]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    format!(
        "p50 {:.0} ms, p95 {:.0} ms",
        ms(pct(v, 0.5)),
        ms(pct(v, 0.95))
    )
}

#[test]
#[ignore]
fn kube_islands_at_scale() {
    let Some(k) = OnKube::start() else {
        panic!("no cluster: scripts/kube-up first")
    };
    let d = &k.d;
    let n: usize = std::env::var("BENCH_KUBE_ISLANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let keep_running = 10.min(n);

    // libtest prints the test's name without a newline first: the figures start on their own.
    println!();

    let names: Vec<String> = (0..n)
        .map(|i| format!("bk{i:03}-{}", dejima::util::random_hex(2)))
        .collect();
    let sample = 10.min(n);
    let fleet = n - sample;
    // One create through the API, timed.
    let create = |name: &str| {
        let t = Instant::now();
        let (st, v) = d.req(
            "POST",
            "/v1/islands",
            Some(json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "bash"})),
        );
        assert_eq!(st, 201, "create {name}: {v}");
        t.elapsed()
    };
    // The fleet four at once, as a team's scripts would; all but the last few hibernated.
    let creates = Mutex::new(Vec::new());
    let hibernates = Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(name) = names[..fleet].get(i) else {
                    break;
                };
                let took = create(name);
                creates.lock().unwrap().push(took);
                if i + keep_running < fleet {
                    let t = Instant::now();
                    d.ok("POST", &format!("/v1/islands/{name}/hibernate"), None);
                    hibernates.lock().unwrap().push(t.elapsed());
                }
                if i % 20 == 19 {
                    println!("progress: {} islands", i + 1);
                }
            });
        }
    });
    let creates = creates.into_inner().unwrap();
    let hibernates = hibernates.into_inner().unwrap();
    figure(format_args!(
        "{fleet} islands created 4 at a time in {:.0} s: create {}; hibernate {} ({} left running)",
        started.elapsed().as_secs_f64(),
        p(&creates),
        p(&hibernates),
        keep_running.min(fleet)
    ));

    // Then, beside the fleet: ten more one at a time, and the same by hand.
    let mut one_by_one = Vec::new();
    for name in &names[fleet..] {
        one_by_one.push(create(name));
        d.ok("POST", &format!("/v1/islands/{name}/hibernate"), None);
    }
    let (raw_create, raw_wake) = raw_rounds(&k);
    figure(format_args!(
        "beside the fleet, one at a time (10 rounds): create through the API {}; by hand, claims + pod until Ready {}, pod again on its claims {}",
        p(&one_by_one),
        p(&raw_create),
        p(&raw_wake)
    ));
    // Wake ten of the hibernated (their pods long gone).
    let mut wakes = Vec::new();
    for name in &names[fleet..] {
        wait_for(Duration::from_secs(120), "the pod gone", || {
            (d.island(name).container.as_str() == "missing").then_some(())
        });
        let t = Instant::now();
        d.ok("POST", &format!("/v1/islands/{name}/wake"), None);
        wakes.push(t.elapsed());
        d.ok("POST", &format!("/v1/islands/{name}/hibernate"), None);
    }

    // Listing: the daemon answers from memory; kubectl asks the apiserver.
    let (mut api, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..30 {
        let t = Instant::now();
        let v = d.ok("GET", "/v1/islands", None);
        api.push(t.elapsed());
        assert_eq!(v.as_array().unwrap().len(), n);
        let t = Instant::now();
        k.k(&["get", "pods", "-l", "dejima.island", "-o", "name"])
            .unwrap();
        raw.push(t.elapsed());
    }
    figure(format_args!(
        "wake (10 hibernated islands) {}; list of {n} islands (30 rounds): GET /v1/islands {}, kubectl get pods {}",
        p(&wakes),
        p(&api),
        p(&raw)
    ));
    let create_ratio = ms(pct(&one_by_one, 0.5)) / ms(pct(&raw_create, 0.5));
    goal(
        "kubernetes create p50 vs kubectl by hand",
        create_ratio <= 2.0,
        format_args!("ratio {create_ratio:.2}"),
        "<= 2.0",
    );
    if !wakes.is_empty() {
        let wake_ratio = ms(pct(&wakes, 0.5)) / ms(pct(&raw_wake, 0.5));
        goal(
            "kubernetes wake p50 vs kubectl by hand",
            wake_ratio <= 1.5,
            format_args!("ratio {wake_ratio:.2}"),
            "<= 1.5",
        );
    }
    let list99 = ms(pct(&api, 0.99));
    goal(
        &format!("list p99 with {n} islands on kubernetes"),
        list99 <= 50.0,
        format_args!("{list99:.1} ms"),
        "<= 50 ms",
    );
}
