//! Paths inside an island for the files API. The request's `{path...}` is percent-decoded,
//! `..` is resolved lexically, and the result must lie under the workspace or the agent home;
//! the in-container helper then checks the same after symlinks are resolved.

use crate::error::{Error, Result};
use crate::runtime::{AGENT_HOME, WORKSPACE};

/// Roots a file path may live under.
pub const ROOTS: [&str; 2] = [WORKSPACE, AGENT_HOME];

/// Turn the raw (still percent-encoded) tail of `/files/...` into an absolute container path.
pub fn resolve(raw: &str) -> Result<String> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| Error::bad("file path is not valid UTF-8"))?;
    if decoded.contains('\0') {
        return Err(Error::bad("file path contains a NUL byte"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(outside(&decoded));
                }
            }
            s => parts.push(s),
        }
    }
    let path = format!("/{}", parts.join("/"));
    if !under_roots(&path) {
        return Err(outside(&decoded));
    }
    Ok(path)
}

/// Whether `path` (already normalised) is inside a root, not the root itself.
pub fn under_roots(path: &str) -> bool {
    ROOTS.iter().any(|r| {
        path.strip_prefix(r)
            .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
    })
}

fn outside(p: &str) -> Error {
    Error::Forbidden(format!(
        "path {p:?} is outside the island's workspace ({WORKSPACE}) and agent home ({AGENT_HOME})"
    ))
}

/// Shell helper run in the container: resolve symlinks, refuse escapes, then act.
/// `$1` is the path. Exit codes: 3 not a regular file, 4 missing, 5 escapes, 6 cannot write.
pub const GUARD: &str = r#"p="$1"
r=$(realpath -m -- "$p") || exit 5
case "$r" in /workspace/?*|/home/agent/?*) ;; *) exit 5 ;; esac
"#;

/// Probe before a read: print the size of a regular file.
pub fn stat_script() -> String {
    format!("{GUARD}[ -e \"$r\" ] || exit 4\n[ -f \"$r\" ] || exit 3\n[ -r \"$r\" ] || exit 6\nexec stat -c %s -- \"$r\"\n")
}

/// Read: stream the file to stdout.
pub fn read_script() -> String {
    format!("{GUARD}[ -e \"$r\" ] || exit 4\n[ -f \"$r\" ] || exit 3\nexec cat -- \"$r\"\n")
}

/// Write: create parents, write to a temp file beside the target, check that `$2` bytes
/// arrived, rename over it. A short upload leaves the old file as it was.
pub fn write_script() -> String {
    format!(
        "{GUARD}[ -d \"$r\" ] && exit 3\nd=$(dirname -- \"$r\")\nmkdir -p -- \"$d\" || exit 6\n\
         t=\"$d/.dejima-put.$$\"\ncat > \"$t\" || {{ rm -f -- \"$t\"; exit 6; }}\n\
         [ \"$(stat -c %s -- \"$t\")\" = \"$2\" ] || {{ rm -f -- \"$t\"; exit 7; }}\n\
         mv -f -- \"$t\" \"$r\" || {{ rm -f -- \"$t\"; exit 6; }}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_roots() {
        assert_eq!(resolve("workspace/a.txt").unwrap(), "/workspace/a.txt");
        assert_eq!(resolve("/workspace//a/./b").unwrap(), "/workspace/a/b");
        assert_eq!(
            resolve("home/agent/.bashrc").unwrap(),
            "/home/agent/.bashrc"
        );
        assert_eq!(resolve("workspace/x/../y").unwrap(), "/workspace/y");
        assert_eq!(resolve("workspace%2Fsub%2Ff").unwrap(), "/workspace/sub/f");
    }

    #[test]
    fn refuses_escapes() {
        for p in [
            "etc/passwd",
            "workspace/../etc/passwd",
            "workspace/%2e%2e/etc/passwd",
            "workspace%2F..%2F..%2Fetc%2Fshadow",
            "../../etc",
            "workspace",
            "workspacex/a",
            "home/agentx/a",
            "",
        ] {
            assert!(matches!(resolve(p), Err(Error::Forbidden(_))), "{p}");
        }
        assert!(matches!(
            resolve("workspace/a%00b"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            resolve("workspace/%ff"),
            Err(Error::BadRequest(_))
        ));
    }
}
