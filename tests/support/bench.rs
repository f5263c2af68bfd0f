//! What the benchmarks share: percentiles, figures and goal verdicts in the form
//! `scripts/bench` collects (`bench: ...`, `goal: <name>: met|missed (...)`, also appended to
//! `$BENCH_GOALS`), and process readings.

use std::io::Write;
use std::time::Duration;

/// The `p` quantile (0..=1) of `v`.
pub fn pct(v: &[Duration], p: f64) -> Duration {
    let mut v = v.to_vec();
    v.sort();
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// One measured figure.
pub fn figure(line: impl std::fmt::Display) {
    println!("bench: {line}");
}

/// One goal verdict: printed, and appended to `$BENCH_GOALS` for the closing summary.
pub fn goal(
    name: &str,
    met: bool,
    measured: impl std::fmt::Display,
    target: impl std::fmt::Display,
) {
    let line = format!(
        "goal: {name}: {} ({measured} vs {target})",
        if met { "met" } else { "missed" }
    );
    println!("{line}");
    if let Some(p) = std::env::var_os("BENCH_GOALS").filter(|p| !p.is_empty()) {
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// A field of /proc/<pid>/status (`VmRSS`, `Threads`), as a number (kB for sizes).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn rss_kb(pid: u32) -> u64 {
    proc_status(pid, "VmRSS")
}
