//! Benchmark, run by `scripts/bench` (ignored in the normal test run): how long
//! `Bus::publish` takes with a webhook subscription that matches every event, against the
//! same bus with no subscriber, in the same run. Publishing must never wait on a disk: the
//! webhook outbox thread writes the deliveries.

mod support;

use std::time::{Duration, Instant};

use dejima::events::webhooks::{Policy, Subscribe, Webhooks};
use dejima::events::Bus;
use dejima::store::Home;
use support::bench::*;

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn time_publishes(bus: &Bus, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|k| {
            let t = Instant::now();
            bus.publish(
                dejima::events::EventType::AgentTaskComplete,
                "bench",
                "a1",
                serde_json::json!({ "k": k }),
            );
            t.elapsed()
        })
        .collect()
}

#[test]
#[ignore]
fn bench_bus() {
    println!();
    let n: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let dir = tempfile::tempdir().unwrap();
    let home = Home::new(dir.path());
    home.ensure().unwrap();

    let bare = Bus::new();
    let raw = time_publishes(&bare, n);

    let hooked = Bus::new();
    let webhooks = Webhooks::start(&home, Policy::default()).unwrap();
    // A receiver that is down (nothing listens on the discard port): every delivery is
    // written to disk and stays pending, the most a publish could be made to wait for.
    webhooks
        .subscribe(Subscribe {
            url: "http://127.0.0.1:9/hook".into(),
            ..Subscribe::default()
        })
        .unwrap();
    {
        let w = webhooks.clone();
        hooked.add_sink(Box::new(move |e| w.enqueue(e)));
    }
    let with = time_publishes(&hooked, n);
    let (r50, r99) = (pct(&raw, 0.5), pct(&raw, 0.99));
    let (w50, w99, wmax) = (pct(&with, 0.5), pct(&with, 0.99), pct(&with, 1.0));
    figure(format!(
        "publish, no subscriber: p50 {:.1} µs, p99 {:.1} µs ({n} events)",
        us(r50),
        us(r99)
    ));
    figure(format!(
        "publish, a webhook matching every event: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        us(w50),
        us(w99),
        us(wmax)
    ));
    // Every delivery still reaches the disk, off the publishing thread.
    let pending = dir.path().join("webhooks/pending");
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(&pending).unwrap().count() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let written = std::fs::read_dir(&pending).unwrap().count();
    figure(format!(
        "deliveries persisted by the outbox: {written} of {n}"
    ));
    // One fsync is a millisecond or more; a publish that waited on one would show it here.
    goal(
        "publish p99 with a matching webhook",
        w99 <= Duration::from_micros(100) && written == n,
        format!("{:.1} µs, {written}/{n} persisted", us(w99)),
        "<= 100 µs, all persisted",
    );
}

/// What ledgering costs a request: an append (written now, fsynced with its group) and a
/// synced append (what a broker crossing will pay), against nothing.
#[test]
#[ignore]
fn bench_audit() {
    use dejima::audit::{Ledger, Record};
    println!();
    let n = 5000;
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::open(dir.path(), None).unwrap();
    let rec = || Record {
        kind: "api.request".into(),
        actor: "token:tok_123456".into(),
        allowed: true,
        method: Some("POST".into()),
        route: Some("/v1/islands/{name}/exec".into()),
        status: Some(200),
        island: Some("bench".into()),
        ..Record::default()
    };
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed()
    };
    let grouped: Vec<Duration> = (0..n).map(|_| time(&mut || l.append(rec()))).collect();
    let synced: Vec<Duration> = (0..200)
        .map(|_| time(&mut || drop(l.append_sync(rec()).unwrap())))
        .collect();
    let v = l.verify().unwrap();
    figure(format!(
        "audit append (grouped fsync): p50 {:.1} µs, p99 {:.1} µs ({n} entries); synced append p50 {:.2} ms, p99 {:.2} ms; chain of {} verifies: {}",
        us(pct(&grouped, 0.5)),
        us(pct(&grouped, 0.99)),
        ms(pct(&synced, 0.5)),
        ms(pct(&synced, 0.99)),
        v.checked,
        v.ok
    ));
    goal(
        "ledger cost per mutating request",
        pct(&grouped, 0.5) <= Duration::from_millis(1) && v.ok,
        format!("p50 {:.1} µs", us(pct(&grouped, 0.5))),
        "<= 1 ms median",
    );
}
