//! Island names and repo references.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// `^[a-z0-9][a-z0-9._-]{0,62}$`
pub fn validate(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"._-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::bad(format!(
            "invalid island name {name:?}: must match ^[a-z0-9][a-z0-9._-]{{0,62}}$"
        )))
    }
}

/// A display label (agents, terminals, attached clients): short, no control characters.
pub fn check_label(l: &str) -> Result<()> {
    if l.chars().count() > 128 || l.chars().any(char::is_control) {
        return Err(Error::bad(
            "label must be at most 128 characters with no control characters",
        ));
    }
    Ok(())
}

/// A display title: at most 256 characters, no control characters.
pub fn check_title(t: &str) -> Result<()> {
    if t.chars().count() > 256 || t.chars().any(char::is_control) {
        return Err(Error::bad(
            "title must be at most 256 characters with no control characters",
        ));
    }
    Ok(())
}

/// A name from a repo: the last path component without `.git`, lowercased, other characters
/// folded to `-`.
pub fn derive(repo: &str) -> Option<String> {
    let trimmed = repo.trim().trim_end_matches('/');
    let last = trimmed
        .rsplit(|c| c == '/' || c == ':' || c == '\\')
        .next()?;
    let last = last.strip_suffix(".git").unwrap_or(last);
    let mut out = String::new();
    for c in last.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_start_matches(['-', '.', '_']).to_string();
    let out: String = out.chars().take(63).collect();
    validate(&out).ok().map(|_| out)
}

/// Where a workspace comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// Cloned inside the island.
    Url(String),
    /// A directory on the daemon host, copied in with its history.
    Path(PathBuf),
}

/// Sort a `repo` string into a URL (cloned in the island) or a host path (copied).
pub fn classify_repo(repo: &str) -> Result<Source> {
    let r = repo.trim();
    if r.is_empty() {
        return Err(Error::bad("repo is required (or set no_repo with a name)"));
    }
    if r.contains('\0') || r.contains('\n') {
        return Err(Error::bad("repo contains control characters"));
    }
    if r.starts_with('-') {
        return Err(Error::bad("repo must not start with '-'"));
    }
    let is_url = r.contains("://") || scp_like(r);
    if is_url {
        return Ok(Source::Url(r.to_string()));
    }
    let path = if let Some(rest) = r.strip_prefix("~/") {
        PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(rest)
    } else {
        PathBuf::from(r)
    };
    if !path.is_absolute() {
        return Err(Error::bad(format!(
            "repo {r:?} is neither a git URL nor an absolute path on the daemon host"
        )));
    }
    if !path.is_dir() {
        return Err(Error::Unprocessable(format!(
            "repo path {} is not a directory on the daemon host",
            path.display()
        )));
    }
    Ok(Source::Path(path))
}

/// `user@host:path` (git's scp-like syntax), not a Windows drive or a plain path.
fn scp_like(r: &str) -> bool {
    match r.split_once(':') {
        Some((host, _)) => !host.contains('/') && host.len() > 1,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["foo", "a", "0x", "foo-bar.baz_1", &"a".repeat(63)] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Foo",
            "-x",
            ".x",
            "a/b",
            "a b",
            &"a".repeat(64),
            "é",
            "a%2fb",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn derives_from_repos() {
        assert_eq!(derive("git@github.com:you/foo.git").as_deref(), Some("foo"));
        assert_eq!(
            derive("https://x.org/a/My Repo/").as_deref(),
            Some("my-repo")
        );
        assert_eq!(derive("/home/me/src/Proj.git").as_deref(), Some("proj"));
        assert_eq!(derive("/").as_deref(), None);
    }

    #[test]
    fn classifies() {
        assert!(matches!(
            classify_repo("git@github.com:you/foo.git"),
            Ok(Source::Url(_))
        ));
        assert!(matches!(
            classify_repo("https://x/y.git"),
            Ok(Source::Url(_))
        ));
        assert!(matches!(classify_repo("/"), Ok(Source::Path(_))));
        assert!(classify_repo("relative/dir").is_err());
        assert!(classify_repo("/definitely/not/here").is_err());
        assert!(classify_repo("--upload-pack=x").is_err());
        assert!(classify_repo("").is_err());
    }
}
