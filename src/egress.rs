//! Where the daemon's own outbound HTTP may go (webhook deliveries, GitHub calls). Open by
//! default; `dejimad --egress-loopback` keeps it on loopback addresses, for tests and
//! sandboxes where a URL someone typed (or a fuzzer made up) must reach nothing else. Set
//! once at start-up, read everywhere: immutable configuration, not state.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

static LOOPBACK_ONLY: AtomicBool = AtomicBool::new(false);

/// Keep outbound HTTP on loopback from now on.
pub fn restrict_to_loopback() {
    LOOPBACK_ONLY.store(true, Ordering::SeqCst);
}

/// Whether `host` (a URL's host, brackets allowed) is a loopback address or `localhost`.
pub fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// May the daemon send a request to `url`? A 422 naming the switch when not.
pub fn check(url: &str) -> Result<()> {
    if !LOOPBACK_ONLY.load(Ordering::SeqCst) {
        return Ok(());
    }
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    if is_loopback(&host) {
        Ok(())
    } else {
        Err(Error::Unprocessable(format!(
            "this daemon sends HTTP to loopback addresses only (dejimad --egress-loopback); {host:?} is not one"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("LOCALHOST"));
        assert!(!is_loopback("example.com"));
        assert!(!is_loopback("10.0.0.1"));
    }
}
