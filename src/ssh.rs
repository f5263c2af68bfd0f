//! SSH into islands: public keys (account keys, allowed into every island, in
//! `$DEJIMA_HOME/ssh/account_keys.json`; island keys live in the island's record), their
//! fingerprints as OpenSSH prints them, and the lines sshd's log gives for a connection.

use std::path::PathBuf;
use std::sync::Mutex;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::util::{self, lock};

/// Key types sshd in the island accepts.
const TYPES: [&str; 7] = [
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A public key as stored and listed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SshKey {
    /// `SHA256:<base64>`, as `ssh-keygen -l` prints it.
    pub fingerprint: String,
    #[serde(rename = "type")]
    pub key_type: String,
    /// `<type> <base64>` (the comment is kept apart).
    pub public_key: String,
    #[serde(default)]
    pub comment: String,
    pub added_at: String,
}

impl SshKey {
    /// The authorized_keys line.
    pub fn line(&self) -> String {
        self.public_key.clone()
    }
}

/// Parse one OpenSSH public key line (`type base64 [comment]`). Options, certificates and
/// anything that is not a key of a known type are refused.
pub fn parse(line: &str) -> Result<SshKey> {
    let line = line.trim();
    if line.len() > 16 << 10 || line.contains('\n') || line.contains('\r') {
        return Err(Error::bad("public_key must be one line, at most 16 KiB"));
    }
    let mut parts = line.splitn(3, char::is_whitespace);
    let (kind, b64) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let comment = parts.next().unwrap_or("").trim();
    if !TYPES.contains(&kind) {
        return Err(Error::Unprocessable(format!(
            "public_key must start with a key type ({}); options and certificates are not taken",
            TYPES.join(", ")
        )));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| Error::Unprocessable("public_key's key is not valid base64".into()))?;
    // The blob starts with its own type, length-prefixed: it must say the same.
    let named = blob
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Err(Error::Unprocessable(
            "public_key's key does not match its type".into(),
        ));
    }
    if comment.chars().any(|c| c.is_control()) || comment.len() > 256 {
        return Err(Error::Unprocessable(
            "the key's comment is too long or has control characters".into(),
        ));
    }
    Ok(SshKey {
        fingerprint: fingerprint(&blob),
        key_type: kind.to_string(),
        public_key: format!("{kind} {b64}"),
        comment: comment.to_string(),
        added_at: util::now_rfc3339(),
    })
}

/// `SHA256:` and the unpadded base64 of the blob's SHA-256.
pub fn fingerprint(blob: &[u8]) -> String {
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(blob))
    )
}

/// A fingerprint as given in a path: with or without its `SHA256:` prefix.
pub fn same_fingerprint(stored: &str, given: &str) -> bool {
    stored == given || stored.strip_prefix("SHA256:") == Some(given)
}

/// From sshd's log (LogLevel VERBOSE): the key a connection was let in with.
/// `Accepted publickey for agent from … ssh2: ED25519 SHA256:…`
pub fn accepted_key(log_line: &str) -> Option<(String, String)> {
    let rest = log_line.split("Accepted publickey for ").nth(1)?;
    let tail = rest.split(" ssh2: ").nth(1)?;
    let mut w = tail.split_whitespace();
    let kind = w.next()?.to_string();
    let fp = w.next()?.to_string();
    fp.starts_with("SHA256:").then_some((kind, fp))
}

/// The account keys: allowed into every island.
pub struct AccountKeys {
    path: PathBuf,
    keys: Mutex<Vec<SshKey>>,
}

impl AccountKeys {
    pub fn open(home: &std::path::Path) -> std::io::Result<AccountKeys> {
        let path = home.join("ssh").join("account_keys.json");
        let keys = match crate::store::read_json::<Vec<SshKey>>(&path) {
            Ok(k) => k,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(AccountKeys {
            path,
            keys: Mutex::new(keys),
        })
    }

    /// None yet (the file is written on the first add).
    pub fn empty(home: &std::path::Path) -> AccountKeys {
        AccountKeys {
            path: home.join("ssh").join("account_keys.json"),
            keys: Mutex::new(Vec::new()),
        }
    }

    pub fn list(&self) -> Vec<SshKey> {
        lock(&self.keys).clone()
    }

    /// Add a key; the same key again is the one already there (`false`: not new).
    pub fn add(&self, k: SshKey) -> Result<(SshKey, bool)> {
        let mut keys = lock(&self.keys);
        if let Some(old) = keys.iter().find(|o| o.fingerprint == k.fingerprint) {
            return Ok((old.clone(), false));
        }
        if keys.len() >= 256 {
            return Err(Error::Conflict("at most 256 account keys".into()));
        }
        let mut next = keys.clone();
        next.push(k.clone());
        crate::store::write_json(&self.path, &next)
            .map_err(|e| Error::Internal(format!("cannot save account keys: {e}")))?;
        *keys = next;
        Ok((k, true))
    }

    pub fn remove(&self, fp: &str) -> Result<SshKey> {
        let mut keys = lock(&self.keys);
        let i = keys
            .iter()
            .position(|k| same_fingerprint(&k.fingerprint, fp))
            .ok_or_else(|| Error::NotFound(format!("no account key {fp:?}")))?;
        let mut next = keys.clone();
        let gone = next.remove(i);
        crate::store::write_json(&self.path, &next)
            .map_err(|e| Error::Internal(format!("cannot save account keys: {e}")))?;
        *keys = next;
        Ok(gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl you@laptop";

    #[test]
    fn parses_keys_and_prints_their_fingerprint() {
        let k = parse(KEY).unwrap();
        assert_eq!(k.key_type, "ssh-ed25519");
        assert_eq!(k.comment, "you@laptop");
        assert!(k.fingerprint.starts_with("SHA256:") && !k.fingerprint.ends_with('='));
        for bad in [
            "",
            "ssh-dss AAAA",
            "command=\"x\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "ssh-ed25519 !!!",
            "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl a\nb",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert!(same_fingerprint(&k.fingerprint, &k.fingerprint[7..]));
    }

    #[test]
    fn reads_the_accepted_key_from_sshd() {
        let l =
            "Accepted publickey for agent from UNKNOWN port 65535 ssh2: ED25519 SHA256:abc/def+g";
        assert_eq!(
            accepted_key(l),
            Some(("ED25519".into(), "SHA256:abc/def+g".into()))
        );
        assert_eq!(accepted_key("Failed publickey for agent"), None);
    }
}
