//! dejima clients, dejima logout-all

use argh::FromArgs;
use serde::{Deserialize, Serialize};

use super::{print_json, table, Out};
use crate::client::{Body, Client};

/// One attach (and maybe its detach) in the daemon's recent history.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ClientEntry {
    pub label: String,
    #[serde(default)]
    pub island: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub attached_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detached_at: Option<String>,
}

/// recent attach/detach history, newest first (kept in memory by the daemon)
#[derive(FromArgs)]
#[argh(subcommand, name = "clients")]
pub struct Clients {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// disconnect every attached client on every island (agents keep running)
#[derive(FromArgs)]
#[argh(subcommand, name = "logout-all")]
pub struct LogoutAll {}

#[derive(Deserialize)]
struct Revoked {
    revoked: u64,
}

fn row(e: &ClientEntry) -> Vec<String> {
    let or_dash = |s: Option<&String>| s.filter(|s| !s.is_empty()).cloned().unwrap_or("-".into());
    vec![
        e.label.clone(),
        or_dash(Some(&e.island)),
        or_dash(e.agent.as_ref()),
        e.attached_at.clone(),
        or_dash(e.detached_at.as_ref()),
    ]
}

pub fn clients(c: &Client, a: Clients) -> Out {
    let list: Vec<ClientEntry> = c.get_json("/v1/clients")?;
    if a.json {
        print_json(&list);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list.iter().map(row).collect();
    table(&["LABEL", "ISLAND", "AGENT", "ATTACHED", "DETACHED"], &rows);
    Ok(())
}

pub fn logout_all(c: &Client, _: LogoutAll) -> Out {
    let r: Revoked = c.call("POST", "/v1/sessions/revoke", Body::None)?.json()?;
    println!("revoked {} session(s)", r.revoked);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_rows() {
        let list: Vec<ClientEntry> = serde_json::from_str(
            r#"[{"label":"phone-pwa","island":"foo","attached_at":"2026-05-22T10:28:00Z"},
                {"label":"laptop","island":"foo","agent":"a2","attached_at":"2026-05-22T10:00:00Z",
                 "detached_at":"2026-05-22T10:27:30Z"}]"#,
        )
        .unwrap();
        assert_eq!(
            row(&list[0]),
            ["phone-pwa", "foo", "-", "2026-05-22T10:28:00Z", "-"]
        );
        assert_eq!(
            row(&list[1]),
            [
                "laptop",
                "foo",
                "a2",
                "2026-05-22T10:00:00Z",
                "2026-05-22T10:27:30Z"
            ]
        );
    }
}
