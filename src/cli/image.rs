//! dejima image build

use std::io::Write;

use argh::FromArgs;

use super::{fail, Out};
use crate::client::{Body, Client};

/// manage the island image
#[derive(FromArgs)]
#[argh(subcommand, name = "image")]
pub struct ImageCmd {
    #[argh(subcommand)]
    cmd: ImageSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum ImageSub {
    Build(Build),
}

/// build (or rebuild) the island image from the context built into dejimad
#[derive(FromArgs)]
#[argh(subcommand, name = "build")]
struct Build {
    /// rebuild even if the image is current
    #[argh(switch)]
    force: bool,
    /// base image (default: $DEJIMA_BASE_IMAGE, dejima/base:bookworm if present, else debian:bookworm-slim)
    #[argh(option)]
    base: Option<String>,
    /// leave out the agent CLIs (Claude Code, Codex): a smaller image for custom and headless agents
    #[argh(switch)]
    slim: bool,
    /// image tag (default: the daemon's island image)
    #[argh(option)]
    tag: Option<String>,
}

pub fn image(c: &Client, a: ImageCmd) -> Out {
    let ImageSub::Build(b) = a.cmd;
    let body = serde_json::json!({
        "force": b.force,
        "base": b.base.unwrap_or_default(),
        "slim": b.slim,
        "tag": b.tag.unwrap_or_default(),
    });
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut r = c.call(
        "POST",
        "/v1/image/build",
        Body::Bytes(&bytes, "application/json"),
    )?;
    // The verdict is the stream's last line.
    let mut last: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    let mut out = std::io::stdout();
    loop {
        let n = r.reader().read(&mut buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
        out.flush()?;
        last.extend_from_slice(&buf[..n]);
        if last.len() > 4096 {
            last.drain(..last.len() - 2048);
        }
    }
    let last = String::from_utf8_lossy(&last);
    match last.trim_end().lines().last() {
        Some(l) if l.starts_with("ok:") => Ok(()),
        Some(l) => Err(fail(l.trim_start_matches("error: ").to_string())),
        None => Err(fail("the build stream ended with no verdict")),
    }
}
