//! dejima token create|ls|revoke: operator tokens for TCP clients (the socket's owner only).

use argh::FromArgs;

use super::{print_json, table, Out};
use crate::api::{CreateToken, TokenCreated, TokenInfo};
use crate::client::{seg, Body, Client};

/// operator tokens for TCP clients (owner only)
#[derive(FromArgs)]
#[argh(subcommand, name = "token")]
pub struct TokenCmd {
    #[argh(subcommand)]
    cmd: TokenSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum TokenSub {
    Create(Create),
    Ls(Ls),
    Revoke(Revoke),
}

/// create a token; its secret is printed once, give it to the client as DEJIMA_TOKEN
#[derive(FromArgs)]
#[argh(subcommand, name = "create")]
struct Create {
    /// viewer (read), operator (run islands, agents, sessions) or owner (everything)
    #[argh(option)]
    role: String,
    /// what the token is for (shown in listings)
    #[argh(option, default = "String::new()")]
    label: String,
    /// scope the token to this island (repeatable); others are invisible to it
    #[argh(option)]
    island: Vec<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// list tokens (never their secrets)
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct Ls {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// revoke a token at once, closing its open sessions and event streams
#[derive(FromArgs)]
#[argh(subcommand, name = "revoke")]
struct Revoke {
    /// the token's id (tok_...)
    #[argh(positional)]
    id: String,
}

fn row(t: &TokenInfo) -> Vec<String> {
    vec![
        t.id.clone(),
        t.role.to_string(),
        if t.label.is_empty() {
            "-".into()
        } else {
            t.label.clone()
        },
        t.created_at.clone(),
        t.last_used_at.clone().unwrap_or_else(|| "-".into()),
    ]
}

pub fn token(c: &Client, a: TokenCmd) -> Out {
    match a.cmd {
        TokenSub::Create(a) => {
            let body = CreateToken {
                role: a.role,
                label: a.label,
                islands: a.island,
            };
            let t: TokenCreated = c.send_json("POST", "/v1/tokens", &body)?;
            if a.json {
                print_json(&t);
            } else {
                println!("{} ({}): {}", t.id, t.role, t.secret);
                eprintln!("the secret is shown only now; keep it as DEJIMA_TOKEN");
            }
            Ok(())
        }
        TokenSub::Ls(a) => {
            let list: Vec<TokenInfo> = c.get_json("/v1/tokens")?;
            if a.json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = list.iter().map(row).collect();
                table(&["ID", "ROLE", "LABEL", "CREATED", "LAST USED"], &rows);
            }
            Ok(())
        }
        TokenSub::Revoke(a) => {
            c.call("DELETE", &format!("/v1/tokens/{}", seg(&a.id)), Body::None)?;
            println!("revoked {}", a.id);
            Ok(())
        }
    }
}
