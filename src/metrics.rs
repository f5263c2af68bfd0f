//! Counters and latency histograms for `GET /metrics` (Prometheus text format 0.0.4). The
//! request and engine-call figures are recorded where they happen (the router, the engine's
//! one-shot calls); gauges (islands, agents, clients, webhooks, the process) are read when
//! scraped. One owner: this module's statics, each behind its own lock, never nested.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::util::lock;

/// Upper bounds (seconds) of the latency buckets.
const BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        for (i, b) in BUCKETS.iter().enumerate() {
            if s <= *b {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += s;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (i, b) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels},le=\"{b}\"}} {}",
                self.counts[i]
            );
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

type Requests = BTreeMap<(String, String, u16), u64>;

static REQUESTS: Mutex<Requests> = Mutex::new(BTreeMap::new());
static REQUEST_LATENCY: Mutex<BTreeMap<String, Histogram>> = Mutex::new(BTreeMap::new());
static ENGINE_LATENCY: Mutex<BTreeMap<String, Histogram>> = Mutex::new(BTreeMap::new());
static BUS_DROPS: AtomicU64 = AtomicU64::new(0);
static WEBHOOK_RETRIES: AtomicU64 = AtomicU64::new(0);

/// A request answered: by route pattern (never the raw path), method and status.
pub fn request(route: &str, method: &str, status: u16, took: Duration) {
    *lock(&REQUESTS)
        .entry((route.to_string(), method.to_string(), status))
        .or_default() += 1;
    lock(&REQUEST_LATENCY)
        .entry(route.to_string())
        .or_default()
        .observe(took);
}

/// A one-shot engine call (`docker <verb> …`) and how long it took.
pub fn engine_call(verb: &str, took: Duration) {
    lock(&ENGINE_LATENCY)
        .entry(verb.to_string())
        .or_default()
        .observe(took);
}

/// An event stream subscriber cut off for falling behind.
pub fn bus_drop() {
    BUS_DROPS.fetch_add(1, Ordering::Relaxed);
}

/// A webhook delivery attempt that will be tried again.
pub fn webhook_retry() {
    WEBHOOK_RETRIES.fetch_add(1, Ordering::Relaxed);
}

/// A label value, escaped as the text format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What is read at scrape time.
#[derive(Default)]
pub struct Gauges {
    /// (desired, observed) → count.
    pub islands: BTreeMap<(String, String), u64>,
    pub agents: BTreeMap<String, u64>,
    pub attached_clients: u64,
    pub webhook_pending: u64,
    pub webhook_delivered: u64,
    pub webhook_failed: u64,
    pub webhook_subscriptions: u64,
    pub panic_engaged: bool,
}

fn proc_status(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The whole exposition.
pub fn render(g: &Gauges) -> String {
    let mut out = String::new();
    let head = |out: &mut String, name: &str, kind: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    };
    head(
        &mut out,
        "dejima_http_requests_total",
        "counter",
        "API requests answered, by route pattern, method and status.",
    );
    for ((route, method, status), n) in lock(&REQUESTS).iter() {
        let _ = writeln!(
            out,
            "dejima_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
            esc(route),
            esc(method)
        );
    }
    head(
        &mut out,
        "dejima_http_request_duration_seconds",
        "histogram",
        "Time to answer an API request (to the start of a stream or upgrade), by route pattern.",
    );
    for (route, h) in lock(&REQUEST_LATENCY).iter() {
        h.render(
            &mut out,
            "dejima_http_request_duration_seconds",
            &format!("route=\"{}\"", esc(route)),
        );
    }
    head(
        &mut out,
        "dejima_engine_call_duration_seconds",
        "histogram",
        "Time of one-shot container engine calls, by verb.",
    );
    for (verb, h) in lock(&ENGINE_LATENCY).iter() {
        h.render(
            &mut out,
            "dejima_engine_call_duration_seconds",
            &format!("verb=\"{}\"", esc(verb)),
        );
    }
    head(
        &mut out,
        "dejima_islands",
        "gauge",
        "Islands by desired state and what the engine reports.",
    );
    for ((desired, observed), n) in &g.islands {
        let _ = writeln!(
            out,
            "dejima_islands{{state=\"{}\",container=\"{}\"}} {n}",
            esc(desired),
            esc(observed)
        );
    }
    head(&mut out, "dejima_agents", "gauge", "Agents by state.");
    for (state, n) in &g.agents {
        let _ = writeln!(out, "dejima_agents{{state=\"{}\"}} {n}", esc(state));
    }
    let simple: [(&str, &str, &str, u64); 9] = [
        (
            "dejima_attached_clients",
            "gauge",
            "Terminal clients attached now.",
            g.attached_clients,
        ),
        (
            "dejima_webhook_subscriptions",
            "gauge",
            "Webhook subscriptions.",
            g.webhook_subscriptions,
        ),
        (
            "dejima_webhook_queue_depth",
            "gauge",
            "Webhook deliveries waiting, all subscriptions.",
            g.webhook_pending,
        ),
        (
            "dejima_webhook_delivered_total",
            "counter",
            "Webhook deliveries made since the daemon started.",
            g.webhook_delivered,
        ),
        (
            "dejima_webhook_failed_total",
            "counter",
            "Webhook deliveries given up on since the daemon started.",
            g.webhook_failed,
        ),
        (
            "dejima_webhook_retries_total",
            "counter",
            "Webhook delivery attempts that will be tried again.",
            WEBHOOK_RETRIES.load(Ordering::Relaxed),
        ),
        (
            "dejima_event_stream_drops_total",
            "counter",
            "Event stream subscribers cut off for falling behind.",
            BUS_DROPS.load(Ordering::Relaxed),
        ),
        (
            "dejima_panic_engaged",
            "gauge",
            "1 while the panic switch is engaged.",
            u64::from(g.panic_engaged),
        ),
        (
            "process_threads",
            "gauge",
            "Threads of the daemon process.",
            proc_status("Threads").unwrap_or(0),
        ),
    ];
    for (name, kind, help, v) in simple {
        head(&mut out, name, kind, help);
        let _ = writeln!(out, "{name} {v}");
    }
    head(
        &mut out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory of the daemon process.",
    );
    let _ = writeln!(
        out,
        "process_resident_memory_bytes {}",
        proc_status("VmRSS").unwrap_or(0) * 1024
    );
    head(
        &mut out,
        "process_open_fds",
        "gauge",
        "Open file descriptors of the daemon process.",
    );
    let fds = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0);
    let _ = writeln!(out, "process_open_fds {fds}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let mut h = Histogram::default();
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_millis(300));
        let mut out = String::new();
        h.render(&mut out, "x", "route=\"a\"");
        assert!(out.contains("x_bucket{route=\"a\",le=\"0.005\"} 1"));
        assert!(out.contains("x_bucket{route=\"a\",le=\"0.5\"} 2"));
        assert!(out.contains("x_bucket{route=\"a\",le=\"+Inf\"} 2"));
        assert_eq!(esc("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
