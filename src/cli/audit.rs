//! dejima audit: the daemon's ledger, filtered, with its verify verdict; or a ledger on disk
//! checked offline (`--file`), no daemon needed.

use std::path::PathBuf;

use argh::FromArgs;
use serde::Deserialize;

use super::{fail, print_json, table, Out};
use crate::audit::{self, Entry, Verdict};
use crate::client::Client;

/// the audit ledger: who did what, hash-chained (owner only)
#[derive(FromArgs)]
#[argh(subcommand, name = "audit")]
pub struct AuditCmd {
    /// only say whether the chain verifies (exit 1 when it does not)
    #[argh(switch)]
    verify: bool,
    /// check this ledger file or directory offline instead of asking the daemon
    #[argh(option)]
    file: Option<String>,
    /// HMAC key file the ledger was chained with (offline checks of --audit-key ledgers)
    #[argh(option)]
    key: Option<String>,
    /// at most this many entries (newest)
    #[argh(option)]
    limit: Option<usize>,
    /// only this island
    #[argh(option)]
    island: Option<String>,
    /// only this entry type, e.g. api.request
    #[argh(option, long = "type")]
    kind: Option<String>,
    /// only this actor, e.g. socket or token:tok_1a2b3c
    #[argh(option)]
    actor: Option<String>,
    /// only allowed or denied
    #[argh(option)]
    decision: Option<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

#[derive(Deserialize)]
struct Listing {
    entries: Vec<Entry>,
    verify: Verdict,
}

fn say(v: &Verdict) -> Out {
    if v.ok {
        println!("ledger verifies: {} entries", v.checked);
        Ok(())
    } else {
        Err(fail(format!(
            "ledger does NOT verify: first bad entry is seq {} ({}); {} good before it",
            v.first_bad_seq.unwrap_or(0),
            v.problem.as_deref().unwrap_or("?"),
            v.checked
        )))
    }
}

pub fn audit(c: &Client, a: AuditCmd) -> Out {
    if let Some(path) = &a.file {
        let p = PathBuf::from(path);
        let key = match &a.key {
            Some(k) => Some(std::fs::read(k)?),
            None => None,
        };
        let (files, genesis) = if p.is_dir() {
            (audit::segments(&p)?, true)
        } else {
            // A lone segment: its first entry's prev cannot be checked without the one before.
            let first = std::fs::read_to_string(&p)?
                .lines()
                .next()
                .and_then(|l| serde_json::from_str::<Entry>(l).ok())
                .is_some_and(|e| e.body.seq == 1);
            (vec![p], first)
        };
        let v = audit::verify_files(&files, key.as_deref(), genesis)?;
        if a.json {
            print_json(&v);
            return if v.ok { Ok(()) } else { Err(fail("")) };
        }
        return say(&v);
    }
    let mut q = vec!["format=json".to_string()];
    let enc = |s: &str| crate::client::seg(s);
    if let Some(n) = a.limit {
        q.push(format!("limit={n}"));
    }
    for (k, v) in [
        ("island", &a.island),
        ("type", &a.kind),
        ("actor", &a.actor),
        ("decision", &a.decision),
    ] {
        if let Some(v) = v {
            q.push(format!("{k}={}", enc(v)));
        }
    }
    let l: Listing = c.get_json(&format!("/v1/audit?{}", q.join("&")))?;
    if a.verify {
        if a.json {
            print_json(&l.verify);
            return if l.verify.ok { Ok(()) } else { Err(fail("")) };
        }
        return say(&l.verify);
    }
    if a.json {
        print_json(&l.entries);
    } else {
        let rows: Vec<Vec<String>> = l
            .entries
            .iter()
            .map(|e| {
                let b = &e.body;
                vec![
                    b.seq.to_string(),
                    b.time.clone(),
                    b.kind.clone(),
                    b.actor.clone(),
                    b.decision.clone(),
                    b.island.clone().unwrap_or_else(|| "-".into()),
                    match (&b.method, &b.route, b.status) {
                        (Some(m), Some(r), Some(s)) => format!("{m} {r} {s}"),
                        _ => b.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
                    },
                ]
            })
            .collect();
        table(
            &["SEQ", "TIME", "TYPE", "ACTOR", "DECISION", "ISLAND", "WHAT"],
            &rows,
        );
        if !l.verify.ok {
            say(&l.verify)?;
        }
    }
    Ok(())
}
