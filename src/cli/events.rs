//! dejima events, dejima webhook subscribe|ls|rm: the daemon's typed events, listed per
//! island, followed live as server-sent events, or pushed to a URL.

use std::io::{self, BufRead, BufReader, Read, Write};

use argh::FromArgs;
use serde_json::Value;

use super::{fail, print_json, table, Out};
use crate::client::{seg, Body, Client};

/// Where `webhook subscribe` looks for a secret when `--secret` is absent, so it need not
/// show up in `ps` or shell history.
const SECRET_ENV: &str = "DEJIMA_WEBHOOK_SECRET";
/// Payloads are clipped to this many characters in tables.
const PAYLOAD_WIDTH: usize = 60;
/// The longest stream line accepted; the daemon caps payloads at 64 KiB, so anything this
/// long is not a sane event and would otherwise grow without bound.
const MAX_LINE: u64 = 4 << 20;

/// The API's own types; both deserialize leniently (absent fields are empty).
pub use crate::events::webhooks::SubscriptionInfo;
pub use crate::events::Event as EventInfo;

/// list an island's recent events, or follow events live with --follow
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "events",
    note = "Without --follow an island is required. With --follow events are streamed from every island, or from the one given, until interrupted."
)]
pub struct Events {
    #[argh(positional)]
    island: Option<String>,
    /// keep streaming new events (from all islands unless one is given)
    #[argh(switch, short = 'f')]
    follow: bool,
    /// only events of this type (repeatable, or comma-separated)
    #[argh(option, long = "type")]
    types: Vec<String>,
    /// with --follow, first replay up to N recent events
    #[argh(option)]
    replay: Option<usize>,
    /// print JSON (with --follow, one event per line)
    #[argh(switch)]
    json: bool,
}

/// webhooks: the daemon POSTs matching events to a URL, retrying until delivered
#[derive(FromArgs)]
#[argh(subcommand, name = "webhook")]
pub struct WebhookCmd {
    #[argh(subcommand)]
    cmd: WebhookSub,
}

#[derive(FromArgs)]
#[argh(subcommand)]
enum WebhookSub {
    Subscribe(Subscribe),
    Ls(Ls),
    Rm(Rm),
}

/// subscribe a URL to events (every type and island unless narrowed)
#[derive(FromArgs)]
#[argh(
    subcommand,
    name = "subscribe",
    note = "The secret may be given in DEJIMA_WEBHOOK_SECRET instead of --secret."
)]
struct Subscribe {
    /// the URL each event is POSTed to
    #[argh(option)]
    url: String,
    /// key for the X-Dejima-Signature HMAC (default: $DEJIMA_WEBHOOK_SECRET)
    #[argh(option)]
    secret: Option<String>,
    /// only events of this type (repeatable)
    #[argh(option, long = "event")]
    events: Vec<String>,
    /// only events of this island (repeatable)
    #[argh(option, long = "island")]
    islands: Vec<String>,
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// list webhook subscriptions and their delivery state
#[derive(FromArgs)]
#[argh(subcommand, name = "ls")]
struct Ls {
    /// print JSON
    #[argh(switch)]
    json: bool,
}

/// remove a webhook subscription (its pending deliveries are dropped)
#[derive(FromArgs)]
#[argh(subcommand, name = "rm")]
struct Rm {
    #[argh(positional)]
    id: String,
}

/// The subscribe body: only what was given, so the daemon's defaults ("all") apply.
fn subscribe_body(
    url: &str,
    secret: Option<String>,
    events: &[String],
    islands: &[String],
) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("url".into(), url.into());
    if let Some(s) = secret.filter(|s| !s.is_empty()) {
        m.insert("secret".into(), s.into());
    }
    if !events.is_empty() {
        m.insert("events".into(), events.to_vec().into());
    }
    if !islands.is_empty() {
        m.insert("islands".into(), islands.to_vec().into());
    }
    m.into()
}

/// Collapse whitespace (newlines included) so a cell stays on its line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn or_dash(s: Option<&str>) -> String {
    match s.map(one_line) {
        Some(s) if !s.is_empty() => s,
        _ => "-".into(),
    }
}

fn sub_row(s: &SubscriptionInfo) -> Vec<String> {
    let events = if s.events.is_empty() {
        "all".to_string()
    } else {
        s.events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    vec![
        s.id.clone(),
        s.url.clone(),
        events,
        s.pending.to_string(),
        s.delivered.to_string(),
        s.failed.to_string(),
        or_dash(Some(&s.last_error)),
    ]
}

pub fn webhook(c: &Client, a: WebhookCmd) -> Out {
    match a.cmd {
        WebhookSub::Subscribe(a) => {
            let secret = a.secret.or_else(|| std::env::var(SECRET_ENV).ok());
            let body = subscribe_body(&a.url, secret, &a.events, &a.islands);
            let s: SubscriptionInfo = c.send_json("POST", "/v1/events/subscribe", &body)?;
            if a.json {
                print_json(&s);
            } else {
                println!("subscribed {} → {}", s.id, s.url);
            }
            Ok(())
        }
        WebhookSub::Ls(a) => {
            let list: Vec<SubscriptionInfo> = c.get_json("/v1/events/subscriptions")?;
            if a.json {
                print_json(&list);
            } else {
                let rows: Vec<Vec<String>> = list.iter().map(sub_row).collect();
                table(
                    &[
                        "ID",
                        "URL",
                        "EVENTS",
                        "PENDING",
                        "DELIVERED",
                        "FAILED",
                        "LAST-ERROR",
                    ],
                    &rows,
                );
            }
            Ok(())
        }
        WebhookSub::Rm(a) => {
            c.call(
                "DELETE",
                &format!("/v1/events/subscriptions/{}", seg(&a.id)),
                Body::None,
            )?;
            println!("removed subscription {}", a.id);
            Ok(())
        }
    }
}

/// `--type a --type b,c` → [a, b, c]: the daemon's stream takes a comma list, so accept one
/// here too.
fn split_types(types: &[String]) -> Vec<String> {
    types
        .iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

/// The stream's path with only the parameters given.
fn stream_path(island: Option<&str>, types: &[String], replay: Option<usize>) -> String {
    let mut q = vec![];
    if let Some(i) = island {
        q.push(format!("island={}", seg(i)));
    }
    if !types.is_empty() {
        let t: Vec<String> = types.iter().map(|t| seg(t)).collect();
        q.push(format!("type={}", t.join(",")));
    }
    if let Some(n) = replay {
        q.push(format!("replay={n}"));
    }
    if q.is_empty() {
        "/v1/events/stream".into()
    } else {
        format!("/v1/events/stream?{}", q.join("&"))
    }
}

/// Compact JSON, clipped to `max` characters (counted as chars so we never split one).
fn clip_payload(v: &Value, max: usize) -> String {
    let s = match v {
        Value::Null => return "-".into(),
        v => serde_json::to_string(v).unwrap_or_default(),
    };
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn event_row(e: &EventInfo) -> Vec<String> {
    vec![
        or_dash(Some(&e.timestamp)),
        or_dash(Some(e.kind.as_str())),
        or_dash(Some(&e.agent)),
        clip_payload(&e.payload, PAYLOAD_WIDTH),
    ]
}

/// One followed event as a line: padded so consecutive lines mostly line up, since a stream
/// can't be measured ahead like a table.
fn follow_line(e: &EventInfo) -> String {
    format!(
        "{:<20}  {:<23}  {:<16}  {:<5}  {}",
        or_dash(Some(&e.timestamp)),
        or_dash(Some(e.kind.as_str())),
        or_dash(Some(&e.island)),
        or_dash(Some(&e.agent)),
        clip_payload(&e.payload, PAYLOAD_WIDTH)
    )
}

pub fn events(c: &Client, a: Events) -> Out {
    let types = split_types(&a.types);
    if a.follow {
        return follow(c, a.island.as_deref(), &types, a.replay, a.json);
    }
    if a.replay.is_some() {
        return Err(fail("--replay only applies with --follow"));
    }
    let Some(island) = a.island else {
        return Err(fail("give an island, or --follow to stream all islands"));
    };
    // Kept as raw JSON so --json passes on fields this client doesn't know.
    let list: Vec<Value> = c.get_json(&format!("/v1/islands/{}/events", seg(&island)))?;
    let wanted = |v: &Value| {
        types.is_empty()
            || v.get("type")
                .and_then(Value::as_str)
                .is_some_and(|k| types.iter().any(|t| t == k))
    };
    let list: Vec<Value> = list.into_iter().filter(wanted).collect();
    if a.json {
        print_json(&list);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = list
        .into_iter()
        .map(|v| event_row(&serde_json::from_value(v).unwrap_or_default()))
        .collect();
    table(&["TIME", "TYPE", "AGENT", "PAYLOAD"], &rows);
    Ok(())
}

fn follow(
    c: &Client,
    island: Option<&str>,
    types: &[String],
    replay: Option<usize>,
    json: bool,
) -> Out {
    let mut r = c.call("GET", &stream_path(island, types, replay), Body::None)?;
    let mut input = BufReader::new(r.reader());
    let mut parser = SseParser::default();
    let mut out = io::stdout().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut input).take(MAX_LINE).read_until(b'\n', &mut line)?;
        if n == 0 {
            // The daemon ended the stream (it is stopping, or restarted); say so, since a
            // follower is expected to run until interrupted.
            return Err(fail("the event stream ended"));
        }
        if n as u64 == MAX_LINE && !line.ends_with(b"\n") {
            return Err(fail("the event stream sent an over-long line"));
        }
        let Some(frame) = parser.line(&String::from_utf8_lossy(&line)) else {
            continue;
        };
        if frame.event == "dropped" {
            let reason = serde_json::from_str::<Value>(&frame.data)
                .ok()
                .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| one_line(&frame.data));
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            };
            return Err(fail(format!(
                "dejimad cut this stream off{reason}; events may have been missed \
                 (rerun with --replay to catch up)"
            )));
        }
        if frame.data.is_empty() {
            continue;
        }
        let text = if json {
            frame.data
        } else {
            match serde_json::from_str::<EventInfo>(&frame.data) {
                Ok(e) => follow_line(&e),
                Err(e) => {
                    eprintln!("dejima: skipping an unreadable event: {e}");
                    continue;
                }
            }
        };
        // A reader that went away (`| head`) is a normal end, not an error.
        match writeln!(out, "{text}").and_then(|_| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            r => r?,
        }
    }
}

/// One server-sent-events frame.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub id: Option<String>,
    /// The `event` field, "message" when the frame has none (as the SSE spec says).
    pub event: String,
    /// The `data` lines joined with "\n".
    pub data: String,
}

/// A line-at-a-time SSE parser: feed it lines (with or without their line ending), get a
/// frame back at each blank line that ends one. Comments (`:`) and unknown fields are
/// ignored.
#[derive(Debug, Default)]
pub struct SseParser {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn line(&mut self, line: &str) -> Option<Frame> {
        let line = line.strip_suffix('\n').unwrap_or(line);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        // "field: value" (one space after the colon is dropped); a bare "field" has an
        // empty value.
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "id" => self.id = Some(value.to_string()),
            "event" => self.event = Some(value.to_string()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_string()),
            },
            // `retry` only matters to a reconnecting browser; anything else is unknown.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<Frame> {
        let id = self.id.take();
        let (event, data) = (self.event.take(), self.data.take());
        // Blank lines after a keepalive comment (or an id alone) carry nothing.
        if event.is_none() && data.is_none() {
            return None;
        }
        Some(Frame {
            id,
            event: event.unwrap_or_else(|| "message".into()),
            data: data.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(text: &str) -> Vec<Frame> {
        let mut p = SseParser::default();
        text.split_inclusive('\n')
            .filter_map(|l| p.line(l))
            .collect()
    }

    #[test]
    fn sse_frames_end_at_blank_lines() {
        let got = frames(
            ": dejima event stream\n\n\
             id: e1\nevent: island.running\ndata: {\"a\":1}\n\n\
             : keepalive\n\n\
             id: e2\r\nevent: agent.error\r\ndata: {}\r\n\r\n\
             id: e3\nevent: island.reset\ndata: {}\n",
        );
        assert_eq!(
            got,
            [
                Frame {
                    id: Some("e1".into()),
                    event: "island.running".into(),
                    data: "{\"a\":1}".into()
                },
                Frame {
                    id: Some("e2".into()),
                    event: "agent.error".into(),
                    data: "{}".into()
                },
            ],
            "comments and keepalives yield nothing; an unterminated frame is not emitted"
        );
    }

    #[test]
    fn sse_multiline_data_and_field_forms() {
        let got = frames("data: one\ndata:two\ndata\nretry: 10\nx-other: y\n\n");
        assert_eq!(
            got,
            [Frame {
                id: None,
                event: "message".into(),
                data: "one\ntwo\n".into()
            }]
        );
        // Only one space after the colon is stripped; a colon in the value stays.
        let got = frames("event: dropped\ndata:  {\"reason\":\"slow\"}\n\n");
        assert_eq!(got[0].event, "dropped");
        assert_eq!(got[0].data, " {\"reason\":\"slow\"}");
        assert!(frames("id: only\n\n\n").is_empty());
    }

    #[test]
    fn stream_paths_carry_only_what_was_given() {
        assert_eq!(stream_path(None, &[], None), "/v1/events/stream");
        let types = split_types(&["agent.error,island.reset".into(), " a b ".into()]);
        assert_eq!(types, ["agent.error", "island.reset", "a b"]);
        assert_eq!(
            stream_path(Some("foo"), &types, Some(20)),
            "/v1/events/stream?island=foo&type=agent%2Eerror,island%2Ereset,a%20b&replay=20"
        );
        assert_eq!(
            stream_path(None, &[], Some(0)),
            "/v1/events/stream?replay=0"
        );
    }

    #[test]
    fn subscribe_body_omits_empty_fields() {
        assert_eq!(
            subscribe_body("http://h/x", None, &[], &[]),
            serde_json::json!({"url": "http://h/x"})
        );
        assert_eq!(
            subscribe_body("http://h/x", Some(String::new()), &[], &[]),
            serde_json::json!({"url": "http://h/x"})
        );
        assert_eq!(
            subscribe_body(
                "http://h/x",
                Some("s3".into()),
                &["agent.error".into()],
                &["foo".into(), "bar".into()]
            ),
            serde_json::json!({"url": "http://h/x", "secret": "s3",
                "events": ["agent.error"], "islands": ["foo", "bar"]})
        );
    }

    #[test]
    fn subscription_rows() {
        let list: Vec<SubscriptionInfo> = serde_json::from_str(
            r#"[{"id":"w1","url":"http://h/x","events":[],"islands":[],"created_at":"2026-05-22T10:00:00Z",
                 "has_secret":true,"pending":0,"attempts":0,"delivered":12,"failed":0},
                {"id":"w2","url":"http://h/y","events":["agent.error","island.reset"],"islands":["foo"],
                 "created_at":"2026-05-22T10:00:00Z","has_secret":false,"pending":3,"attempts":4,
                 "last_error":"HTTP 503\n","next_attempt_at":"2026-05-22T10:05:00Z","delivered":1,"failed":2}]"#,
        )
        .unwrap();
        assert_eq!(
            sub_row(&list[0]),
            ["w1", "http://h/x", "all", "0", "12", "0", "-"]
        );
        assert_eq!(
            sub_row(&list[1]),
            [
                "w2",
                "http://h/y",
                "agent.error,island.reset",
                "3",
                "1",
                "2",
                "HTTP 503"
            ]
        );
    }

    #[test]
    fn event_rows_and_payload_clipping() {
        let e: EventInfo = serde_json::from_str(
            r#"{"id":"e1","type":"agent.task-complete","island":"foo","agent":"a2",
                "timestamp":"2026-05-22T10:00:00Z","payload":{"summary":"done"}}"#,
        )
        .unwrap();
        assert_eq!(
            event_row(&e),
            [
                "2026-05-22T10:00:00Z",
                "agent.task-complete",
                "a2",
                "{\"summary\":\"done\"}"
            ]
        );
        assert!(follow_line(&e).contains("  foo  "));
        let long = serde_json::json!({ "text": "é".repeat(100) });
        let clipped = clip_payload(&long, 60);
        assert_eq!(clipped.chars().count(), 60);
        assert!(clipped.ends_with('…'));
        assert_eq!(clip_payload(&Value::Null, 60), "-");
        // A sparse event still renders.
        let bare: EventInfo = serde_json::from_str(r#"{"type":"island.created"}"#).unwrap();
        assert_eq!(event_row(&bare), ["-", "island.created", "-", "-"]);
    }
}
