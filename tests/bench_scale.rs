//! Scale benchmark, run by `scripts/bench` (ignored in the normal run): BENCH_ISLANDS islands
//! (default 500) on one daemon, all but the last few hibernated so the host can hold them.
//! Measures how create latency grows over the run, `GET /v1/islands` at that size, and a raw
//! `docker network create` + `docker network rm` round trip as the engine's own figure.
//!
//! Output protocol (what `scripts/bench` keeps): figures are lines starting `bench: `, goal
//! verdicts are lines `goal: <name>: met|missed (<measured> vs <target>)`, also appended to the
//! file named by `BENCH_GOALS` when it is set. A create that fails is reported, not a panic:
//! the run goes on (or stops creating) and everything it made is removed either way.

mod support;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dejima::client::{Body, Client};
use serde_json::{json, Value};
use support::bench::*;
use support::*;

/// Islands left running; older ones are hibernated as the run goes.
const KEEP_RUNNING: usize = 20;
/// Parallel creators in the bulk phase.
const THREADS: usize = 4;
/// Sequential creates timed at the start and at the end of the run.
const PROBE: usize = 20;
/// Stop issuing creates after this many failures in a row (e.g. the engine out of subnets).
const MAX_FAILS_IN_A_ROW: usize = 5;

/// `p50 x ms, p99 y ms (n)` or `none`.
fn summary(v: &[Duration]) -> String {
    if v.is_empty() {
        return "none".into();
    }
    format!(
        "p50 {:.0} ms, p99 {:.0} ms (n={})",
        ms(pct(v, 0.5)),
        ms(pct(v, 0.99)),
        v.len()
    )
}

/// One request; never panics: a transport error or a non-JSON body comes back as text.
fn request(
    c: &Client,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let bytes = body.map(|v| serde_json::to_vec(v).unwrap());
    let r = match &bytes {
        Some(b) => c.send(method, path, Body::Bytes(b, "application/json")),
        None => c.send(method, path, Body::None),
    }
    .map_err(|e| format!("{method} {path}: {e}"))?;
    let s = r.status;
    let b = r.bytes().map_err(|e| format!("{method} {path}: {e}"))?;
    let v = serde_json::from_slice(&b)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into_owned()));
    Ok((s, v))
}

/// Removes, straight through docker, everything whose name carries this run's prefix:
/// containers `dejima-<name>`, volumes `dejima-<name>-workspace`/`-home`, networks
/// `dejima-net-<name>`, and the raw round-trip networks. Runs on drop, panic or not.
struct Leftovers(String);

impl Leftovers {
    fn sweep(&self) -> (usize, usize, usize) {
        let filter = format!("name={}", self.0);
        let list = |args: &[&str]| -> Vec<String> {
            let o = docker(args);
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::trim)
                .filter(|l| l.contains(self.0.as_str()))
                .map(String::from)
                .collect()
        };
        let remove = |base: &[&str], names: &[String]| {
            for chunk in names.chunks(50) {
                let mut args: Vec<&str> = base.to_vec();
                args.extend(chunk.iter().map(String::as_str));
                let _ = docker(&args);
            }
        };
        let cs = list(&["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
        remove(&["rm", "-f"], &cs);
        let vs = list(&["volume", "ls", "-q", "--filter", &filter]);
        remove(&["volume", "rm", "-f"], &vs);
        let ns = list(&[
            "network",
            "ls",
            "--filter",
            &filter,
            "--format",
            "{{.Name}}",
        ]);
        remove(&["network", "rm"], &ns);
        (cs.len(), vs.len(), ns.len())
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let (c, v, n) = self.sweep();
        if c + v + n > 0 {
            figure(format_args!(
                "scale cleanup: removed leftovers through docker: {c} containers, {v} volumes, {n} networks"
            ));
        }
    }
}

/// The raw engine figure: `docker network create` + `docker network rm`, `k` rounds.
fn raw_network_round_trips(prefix: &str, tag: &str, k: usize) -> (Vec<Duration>, Vec<String>) {
    let (mut lat, mut errs) = (Vec::new(), Vec::new());
    for j in 0..k {
        let net = format!("dejima-net-{prefix}raw-{tag}{j}");
        let t = Instant::now();
        let c = docker(&["network", "create", "--label=dejima.test=1", &net]);
        if !c.status.success() {
            errs.push(String::from_utf8_lossy(&c.stderr).trim().to_string());
            continue;
        }
        let r = docker(&["network", "rm", &net]);
        if !r.status.success() {
            errs.push(String::from_utf8_lossy(&r.stderr).trim().to_string());
            continue;
        }
        lat.push(t.elapsed());
    }
    (lat, errs)
}

struct Run<'a> {
    c: Client,
    prefix: &'a str,
    /// Running islands, oldest first.
    running: Mutex<VecDeque<String>>,
    /// Names a create was tried for (purged at the end whatever the answer was).
    tried: Mutex<Vec<String>>,
    created: AtomicUsize,
    failed: AtomicUsize,
    fails_in_a_row: AtomicUsize,
    hibernate_failed: AtomicUsize,
    stop: AtomicBool,
}

impl Run<'_> {
    fn name(&self, k: usize) -> String {
        format!("{}{k:04}", self.prefix)
    }

    /// Hibernate the oldest running islands until there is room for one more (untimed).
    fn make_room(&self) {
        loop {
            let oldest = {
                let mut r = self.running.lock().unwrap();
                if r.len() < KEEP_RUNNING {
                    return;
                }
                r.pop_front().unwrap()
            };
            match request(
                &self.c,
                "POST",
                &format!("/v1/islands/{oldest}/hibernate"),
                None,
            ) {
                Ok((s, _)) if (200..300).contains(&s) => {}
                Ok((s, v)) => {
                    self.hibernate_failed.fetch_add(1, Ordering::SeqCst);
                    figure(format_args!("scale: hibernate {oldest} failed: {s} {v}"));
                }
                Err(e) => {
                    self.hibernate_failed.fetch_add(1, Ordering::SeqCst);
                    figure(format_args!("scale: hibernate {oldest} failed: {e}"));
                }
            }
        }
    }

    /// Create island `k`; its latency when it answered 201.
    fn create(&self, k: usize) -> Option<Duration> {
        if self.stop.load(Ordering::SeqCst) {
            return None;
        }
        self.make_room();
        let name = self.name(k);
        self.tried.lock().unwrap().push(name.clone());
        let body = json!({"name": name, "no_repo": true, "agent": "custom", "cmd": "bash"});
        let t = Instant::now();
        let r = request(&self.c, "POST", "/v1/islands", Some(&body));
        let el = t.elapsed();
        let failure = match r {
            Ok((201, _)) => None,
            Ok((s, v)) => Some(format!("{s} {v}")),
            Err(e) => Some(e),
        };
        match failure {
            None => {
                self.running.lock().unwrap().push_back(name);
                self.fails_in_a_row.store(0, Ordering::SeqCst);
                let n = self.created.fetch_add(1, Ordering::SeqCst) + 1;
                if n % 50 == 0 {
                    eprintln!("progress: {n} islands created");
                }
                Some(el)
            }
            Some(why) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                figure(format_args!(
                    "scale: create {name} failed after {:.0} ms: {why}",
                    ms(el)
                ));
                if self.fails_in_a_row.fetch_add(1, Ordering::SeqCst) + 1 >= MAX_FAILS_IN_A_ROW
                    && !self.stop.swap(true, Ordering::SeqCst)
                {
                    figure(format_args!(
                        "scale: stopped creating after {MAX_FAILS_IN_A_ROW} failures in a row"
                    ));
                }
                None
            }
        }
    }
}

#[test]
#[ignore]
fn bench_scale() {
    println!();
    let n: usize = std::env::var("BENCH_ISLANDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500)
        .max(1);
    let probe = PROBE.min(n / 2);
    let prefix = format!("sc{}-", dejima::util::random_hex(3));
    let d = Daemon::start();
    // Declared after the daemon: dropped (and swept) first, whatever happens below.
    let guard = Leftovers(prefix.clone());
    let mut c = d.client.clone();
    c.timeout = Some(Duration::from_secs(300));
    let run = Run {
        c,
        prefix: &prefix,
        running: Mutex::new(VecDeque::new()),
        tried: Mutex::new(Vec::new()),
        created: AtomicUsize::new(0),
        failed: AtomicUsize::new(0),
        fails_in_a_row: AtomicUsize::new(0),
        hibernate_failed: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    };

    let (raw0, raw0_err) = raw_network_round_trips(&prefix, "a", 5);

    // Start: sequential creates on an empty host.
    let t_all = Instant::now();
    let start: Vec<Duration> = (0..probe).filter_map(|k| run.create(k)).collect();

    // Bulk: THREADS creators in parallel.
    let next = AtomicUsize::new(probe);
    let bulk_end = n - probe;
    let t_bulk = Instant::now();
    let bulk: Vec<Duration> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::SeqCst);
                        if k >= bulk_end || run.stop.load(Ordering::SeqCst) {
                            return mine;
                        }
                        mine.extend(run.create(k));
                    }
                })
            })
            .collect();
        hs.into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let bulk_time = t_bulk.elapsed();

    // End: sequential creates with the host holding all the others.
    let end: Vec<Duration> = (bulk_end..n).filter_map(|k| run.create(k)).collect();
    let total_time = t_all.elapsed();
    let created = run.created.load(Ordering::SeqCst);
    let failed = run.failed.load(Ordering::SeqCst);
    let all: Vec<Duration> = start.iter().chain(&bulk).chain(&end).copied().collect();

    figure(format_args!(
        "scale: {created} of {n} islands created ({failed} failed, {} not tried) in {:.1} s; {} hibernate failures",
        n - run.tried.lock().unwrap().len(),
        total_time.as_secs_f64(),
        run.hibernate_failed.load(Ordering::SeqCst),
    ));
    figure(format_args!(
        "scale create: first {probe} (sequential, empty host) {}; last {probe} (sequential, host full) {}",
        summary(&start),
        summary(&end)
    ));
    figure(format_args!(
        "scale create: bulk ({THREADS} threads) {}, {:.1} creates/s; whole run {}",
        summary(&bulk),
        bulk.len() as f64 / bulk_time.as_secs_f64().max(1e-9),
        summary(&all)
    ));

    // GET /v1/islands with everything registered.
    let mut listed = None;
    let mut list_lat = Vec::new();
    let mut list_errs = Vec::new();
    for _ in 0..200 {
        // Timed to the last byte of the reply; parsing it is the client's cost, after.
        let t = Instant::now();
        let reply = run
            .c
            .send("GET", "/v1/islands", Body::None)
            .and_then(|r| Ok((r.status, r.bytes()?)));
        let took = t.elapsed();
        match reply {
            Ok((200, b)) => {
                list_lat.push(took);
                listed = serde_json::from_slice::<Value>(&b)
                    .ok()
                    .and_then(|v| v.as_array().map(|a| a.len()));
            }
            Ok((s, b)) => list_errs.push(format!("{s} {}", String::from_utf8_lossy(&b))),
            Err(e) => list_errs.push(e.to_string()),
        }
    }
    figure(format_args!(
        "scale list: GET /v1/islands returning {} islands (200 samples): {}{}",
        listed.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
        if list_lat.is_empty() {
            "no successful sample".to_string()
        } else {
            format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                ms(pct(&list_lat, 0.5)),
                ms(pct(&list_lat, 0.99))
            )
        },
        if list_errs.is_empty() {
            String::new()
        } else {
            format!("; {} failed, first: {}", list_errs.len(), list_errs[0])
        }
    ));

    // The raw engine figure, before and after.
    let (raw1, raw1_err) = raw_network_round_trips(&prefix, "b", 5);
    for (when, lat, errs) in [
        ("empty host", &raw0, &raw0_err),
        ("host full", &raw1, &raw1_err),
    ] {
        figure(format_args!(
            "scale raw: docker network create + rm ({when}): {}{}",
            summary(lat),
            errs.first()
                .map(|e| format!("; {} failed: {e}", errs.len()))
                .unwrap_or_default()
        ));
    }

    // Purge everything, in parallel, then check through docker that nothing is left.
    let names = std::mem::take(&mut *run.tried.lock().unwrap());
    let purge_fail = AtomicUsize::new(0);
    let t_purge = Instant::now();
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some(name) = names.get(k) else { return };
                match request(
                    &run.c,
                    "DELETE",
                    &format!("/v1/islands/{name}?force=true"),
                    None,
                ) {
                    Ok((s, _)) if (200..300).contains(&s) || s == 404 => {}
                    Ok((s, v)) => {
                        purge_fail.fetch_add(1, Ordering::SeqCst);
                        figure(format_args!("scale: purge {name} failed: {s} {v}"));
                    }
                    Err(e) => {
                        purge_fail.fetch_add(1, Ordering::SeqCst);
                        figure(format_args!("scale: purge {name} failed: {e}"));
                    }
                }
            });
        }
    });
    let (lc, lv, ln) = guard.sweep();
    figure(format_args!(
        "scale purge: {} islands in {:.1} s ({THREADS} threads), {} failed; left behind: {lc} containers, {lv} volumes, {ln} networks",
        names.len(),
        t_purge.elapsed().as_secs_f64(),
        purge_fail.load(Ordering::SeqCst),
    ));

    // Goals.
    goal(
        &format!("scale islands created ({n})"),
        created == n,
        format_args!("{created} created, {failed} failed"),
        format_args!("{n}"),
    );
    match (list_lat.is_empty(), list_errs.is_empty()) {
        (false, true) => {
            let p99 = ms(pct(&list_lat, 0.99));
            goal(
                &format!("scale list p99 at {} islands", listed.unwrap_or(0)),
                p99 <= 2.0,
                format_args!("{p99:.2} ms"),
                "<= 2 ms",
            );
        }
        _ => goal(
            "scale list p99",
            false,
            format_args!("{} of 200 samples failed", list_errs.len()),
            "<= 2 ms",
        ),
    }
    if start.len() == probe
        && end.len() == probe
        && probe > 0
        && !raw0.is_empty()
        && !raw1.is_empty()
    {
        // The engine's own network create slows as networks (and their firewall rules)
        // accumulate; the goal is that a create slows by no more than that.
        let (s50, e50) = (ms(pct(&start, 0.5)), ms(pct(&end, 0.5)));
        let (r0, r1) = (ms(pct(&raw0, 0.5)), ms(pct(&raw1, 0.5)));
        let (ours, engine) = (e50 - s50, (r1 - r0).max(0.0));
        goal(
            "scale create growth vs the engine's",
            ours <= 1.15 * engine + 20.0,
            format_args!(
                "create p50 {s50:.0} -> {e50:.0} ms (+{ours:.0}), raw network create+rm {r0:.0} -> {r1:.0} ms (+{engine:.0})"
            ),
            "create grows <= 1.15 x the engine's own growth (+20 ms)",
        );
    } else {
        goal(
            "scale create growth vs the engine's",
            false,
            format_args!(
                "not measured: {} of the first {probe} and {} of the last {probe} created",
                start.len(),
                end.len()
            ),
            "<= 1.15",
        );
    }
}
