//! exec, cp, logs

use std::io::{Read, Write};

use argh::FromArgs;

use super::{fail, Out};
use crate::api::{ExecRequest, ExecResult};
use crate::client::{path_enc, seg, Body, Client};

/// run a command in an island and print its output (exit code is the command's)
#[derive(FromArgs)]
#[argh(subcommand, name = "exec")]
pub struct Exec {
    #[argh(positional)]
    island: String,
    /// the command and its arguments (put `--` before it if it has flags)
    #[argh(positional, greedy)]
    cmd: Vec<String>,
    /// run as root instead of the agent user
    #[argh(switch)]
    root: bool,
    /// working directory (default /workspace)
    #[argh(option, short = 'w')]
    workdir: Option<String>,
    /// seconds before the command is killed (default 60)
    #[argh(option)]
    timeout: Option<u64>,
    /// print the JSON result instead
    #[argh(switch)]
    json: bool,
}

/// copy a file between this host and an island (ISLAND:/path names the island side)
#[derive(FromArgs)]
#[argh(subcommand, name = "cp")]
pub struct Cp {
    #[argh(positional)]
    src: String,
    #[argh(positional)]
    dst: String,
}

/// print an island's container logs
#[derive(FromArgs)]
#[argh(subcommand, name = "logs")]
pub struct Logs {
    #[argh(positional)]
    island: String,
    /// keep streaming
    #[argh(switch, short = 'f')]
    follow: bool,
    /// lines from the end (default all)
    #[argh(option)]
    tail: Option<String>,
}

pub fn exec(c: &Client, a: Exec) -> Out {
    if a.cmd.is_empty() {
        return Err(fail("exec needs a command"));
    }
    let stdin = if atty_stdin() {
        None
    } else {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        (!s.is_empty()).then_some(s)
    };
    let req = ExecRequest {
        cmd: a.cmd,
        stdin,
        timeout_secs: a.timeout,
        workdir: a.workdir,
        user: a.root.then(|| "root".to_string()),
        env: Default::default(),
    };
    let r: ExecResult = c.send_json(
        "POST",
        &format!("/v1/islands/{}/exec", seg(&a.island)),
        &req,
    )?;
    if a.json {
        super::print_json(&r);
        return Ok(());
    }
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    let _ = std::io::stdout().flush();
    if r.exit_code != 0 {
        return Err(super::Failure {
            message: if r.timed_out {
                "command timed out".into()
            } else {
                format!("command exited {}", r.exit_code)
            },
            code: r.exit_code.clamp(1, 255) as i32,
        });
    }
    Ok(())
}

fn atty_stdin() -> bool {
    nix::unistd::isatty(0).unwrap_or(true)
}

/// `island:/path` → (island, path); a plain path (or one with a slash before the colon) is
/// local.
fn split_remote(s: &str) -> Option<(&str, &str)> {
    let (i, p) = s.split_once(':')?;
    (!i.is_empty() && !i.contains('/') && p.starts_with('/')).then_some((i, p))
}

pub fn cp(c: &Client, a: Cp) -> Out {
    match (split_remote(&a.src), split_remote(&a.dst)) {
        (Some((island, path)), None) => {
            let mut r = c.call(
                "GET",
                &format!("/v1/islands/{}/files{}", seg(island), path_enc(path)),
                Body::None,
            )?;
            let dst = std::path::Path::new(&a.dst);
            let dst = if dst.is_dir() {
                dst.join(
                    std::path::Path::new(path)
                        .file_name()
                        .ok_or_else(|| fail("source has no file name"))?,
                )
            } else {
                dst.to_path_buf()
            };
            let tmp = dst.with_extension("dejima-part");
            let mut f = std::fs::File::create(&tmp)?;
            let res = std::io::copy(r.reader(), &mut f);
            match res {
                Ok(_) => {
                    f.sync_all()?;
                    std::fs::rename(&tmp, &dst)?;
                    Ok(())
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(fail(format!("download cut: {e}")))
                }
            }
        }
        (None, Some((island, path))) => {
            let mut f = std::fs::File::open(&a.src)?;
            let len = f.metadata()?.len();
            let path = if path.ends_with('/') {
                let name = std::path::Path::new(&a.src)
                    .file_name()
                    .ok_or_else(|| fail("source has no file name"))?;
                format!("{path}{}", name.to_string_lossy())
            } else {
                path.to_string()
            };
            c.call(
                "PUT",
                &format!("/v1/islands/{}/files{}", seg(island), path_enc(&path)),
                Body::Reader(&mut f, len),
            )?;
            Ok(())
        }
        (Some(_), Some(_)) => Err(fail(
            "copying between two islands is not supported; copy through this host",
        )),
        (None, None) => Err(fail("one side must be ISLAND:/path")),
    }
}

pub fn logs(c: &Client, a: Logs) -> Out {
    let mut q = vec![];
    if a.follow {
        q.push("follow=true".to_string());
    }
    if let Some(t) = a.tail {
        q.push(format!("tail={}", seg(&t)));
    }
    let qs = if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    };
    let mut r = c.call(
        "GET",
        &format!("/v1/islands/{}/logs{qs}", seg(&a.island)),
        Body::None,
    )?;
    let mut out = std::io::stdout();
    let mut buf = [0u8; 16384];
    loop {
        let n = r.reader().read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])?;
        out.flush()?;
    }
}

#[cfg(test)]
mod tests {
    use super::split_remote;

    #[test]
    fn remote_paths() {
        assert_eq!(
            split_remote("foo:/workspace/a"),
            Some(("foo", "/workspace/a"))
        );
        assert_eq!(split_remote("./a:b"), None);
        assert_eq!(split_remote("/tmp/x"), None);
        assert_eq!(split_remote("foo:rel"), None);
    }
}
