//! Small helpers with no better home: RFC 3339 time (on the `time` crate), constant-time
//! compare (on `subtle`), random ids, size parsing, poison-tolerant locking.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// RFC 3339 UTC timestamp (`2026-05-21T15:04:05Z`) for the current time.
pub fn now_rfc3339() -> String {
    rfc3339(unix_now())
}

/// RFC 3339 UTC timestamp for `secs` since the epoch (whole seconds, `Z`).
pub fn rfc3339(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Parse an RFC 3339 timestamp (any offset) to epoch seconds.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// Lock a mutex whether or not a thread panicked while holding it. Every critical section
/// here leaves its data consistent at each step (plain inserts, removes and field stores), so
/// a panic elsewhere must not turn every later request into a second panic.
pub fn lock<T: ?Sized>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Constant-time comparison of secrets (the length is not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.ct_eq(b).into()
}

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // getrandom only fails when the kernel has no entropy source at all.
    getrandom::getrandom(&mut buf).expect("kernel random source");
    hex(&buf)
}

pub fn hex(bytes: &[u8]) -> String {
    const H: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(H[(b >> 4) as usize] as char);
        s.push(H[(b & 15) as usize] as char);
    }
    s
}

/// Parse a human size as docker prints or accepts it: `512`, `4G`, `1.5GiB`, `300MB`, `10kB`.
/// Binary and decimal suffixes both mean powers of 1024 for the one-letter forms docker
/// accepts (`4g` = 4 GiB), and powers of 1000 for `kB`/`MB`/`GB` as docker stats prints them.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let mult: f64 = match unit.trim() {
        "" | "b" | "B" => 1.0,
        "k" | "K" | "KiB" | "kiB" => 1024.0,
        "m" | "M" | "MiB" => 1024.0 * 1024.0,
        "g" | "G" | "GiB" => 1024.0 * 1024.0 * 1024.0,
        "t" | "T" | "TiB" => 1024.0f64.powi(4),
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        _ => return None,
    };
    // Past u64 it is still a size, just one no host has: saturate, and let the caller's
    // limits say so.
    let v = n * mult;
    if v >= u64::MAX as f64 {
        return Some(u64::MAX);
    }
    Some(v.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_779_462_245), "2026-05-22T15:04:05Z");
        for t in [0u64, 951_782_400, 1_779_462_245, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("nope"), None);
        assert_eq!(
            parse_rfc3339("2026-05-22T17:04:05+02:00"),
            Some(1_779_462_245)
        );
        assert!(ct_eq(b"abc", b"abc") && !ct_eq(b"abc", b"abd") && !ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G"), Some(4 << 30));
        assert_eq!(parse_size("1.5GiB"), Some(1_610_612_736));
        assert_eq!(parse_size("300MB"), Some(300_000_000));
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("0B"), Some(0));
        assert_eq!(parse_size("4X"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("-1G"), None);
    }
}

/// In a child between fork and exec: close every descriptor from `from` up (stdin, stdout
/// and stderr stay), so nothing the daemon holds open reaches a program it starts.
/// Async-signal-safe (one syscall).
pub fn close_from(from: u32) {
    // SAFETY: close_range only closes descriptors; failure (old kernels) leaves them to
    // close-on-exec.
    unsafe {
        libc::syscall(libc::SYS_close_range, from, u32::MAX, 0);
    }
}

/// The length of the longest prefix of `b` that does not end inside a UTF-8 character.
pub fn utf8_end(b: &[u8]) -> usize {
    let n = b.len();
    for back in 1..=3.min(n) {
        let c = b[n - back];
        if c & 0xC0 == 0x80 {
            continue;
        }
        if c >= 0xC0 {
            let len = if c >= 0xF0 {
                4
            } else if c >= 0xE0 {
                3
            } else {
                2
            };
            if back < len {
                return n - back;
            }
        }
        break;
    }
    n
}

/// Caller text as the ledger keeps it: at most 256 bytes, then `…` (the rest is not
/// evidence, and a caller must not be able to grow the ledger with it).
pub fn clip(s: &str) -> String {
    if s.len() <= 256 {
        return s.to_string();
    }
    let mut cut = 256;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &s[..cut])
}
