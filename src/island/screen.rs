//! Reading an agent's screen without attaching (one `tmux capture-pane` exec, no client, so
//! nobody's window is resized or redrawn), and sending it a prompt whose delivery is verified
//! on that screen.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::agents::PRIMARY;
use super::Islands;
use crate::error::{Error, Result};
use crate::process::Input;
use crate::runtime::ExecOpts;
use crate::session::tmux;
use crate::util::lock;

/// Most history lines a capture returns.
pub const MAX_SCROLLBACK: u32 = 10_000;
/// Largest prompt text.
pub const MAX_PROMPT: usize = 256 << 10;

/// Prints the pane's state line, then its history (up to `$2` lines) and visible rows.
/// `$3` is `-e` to keep colours and attributes as escape sequences.
const CAPTURE: &str = r#"t="=$1:"
tmux -L dejima display-message -p -t "$t" '#{cursor_y} #{cursor_x} #{cursor_flag} #{pane_height} #{pane_width} #{alternate_on} #{history_size} #{pane_dead}' || exit 3
if [ "$2" -gt 0 ]; then tmux -L dejima capture-pane -p $3 -t "$t" -S "-$2"; else tmux -L dejima capture-pane -p $3 -t "$t"; fi
"#;

/// One delivery step in the island: capture the screen, act (`paste` the buffer from stdin,
/// or press the submit key `$3`), then wait up to `$4` ms for the screen to change; print
/// whether it did, then the screen as CAPTURE does.
const STEP: &str = r#"t="=$1:"
cap() { tmux -L dejima display-message -p -t "$t" '#{cursor_y} #{cursor_x} #{cursor_flag} #{pane_height} #{pane_width} #{alternate_on} #{history_size} #{pane_dead}' && tmux -L dejima capture-pane -p -t "$t"; }
before=$(cap) || exit 3
case "$2" in
paste) tmux -L dejima load-buffer -b "dejima-prompt-$$" - && tmux -L dejima paste-buffer -p -r -d -b "dejima-prompt-$$" -t "$t" || exit 4 ;;
key) tmux -L dejima send-keys -t "$t" "$3" || exit 4 ;;
esac
end=$(( $(date +%s%N) / 1000000 + $4 ))
changed=0
while [ $(( $(date +%s%N) / 1000000 )) -lt $end ]; do
  sleep 0.03
  now=$(cap) || exit 3
  if [ "$now" != "$before" ]; then
    # Let a redraw finish: the screen stays the same for 60 ms (at most 1 s more: a spinner
    # never settles).
    settle=$(( $(date +%s%N) / 1000000 + 1000 ))
    while sleep 0.06; do next=$(cap) || exit 3; [ "$next" = "$now" ] && break; now=$next; [ $(( $(date +%s%N) / 1000000 )) -lt $settle ] || break; done
    changed=1; break
  fi
done
echo "$changed"
cap
"#;

/// Largest upload.
pub const MAX_UPLOAD: u64 = 8 << 20;
/// Text uploads up to this size are pasted into the agent's input; larger ones (and binary
/// files) paste their path.
pub const PASTE_TEXT_MAX: usize = 256 << 10;

/// Write stdin to `~/uploads/$1`, or `$2-N$3` while that name is taken (never over a file):
/// `set -C` makes the redirection fail on an existing name, before `cat` reads anything.
/// Prints the path written.
const UPLOAD: &str = r#"set -C
d="$HOME/uploads"
mkdir -p "$d" || exit 4
cand=$1; i=1
# Claim a free name (the exclusive create fails on a taken one), then fill it; a failed
# write is final (no half file is left, and no further name is tried with the input spent).
while ! ( : > "$d/$cand" ) 2>/dev/null; do
  [ -e "$d/$cand" ] || exit 4
  i=$((i+1)); [ $i -le 1000 ] || exit 5
  cand="$2-$i$3"
done
cat >| "$d/$cand" || { rm -f "$d/$cand"; exit 4; }
printf '%s\n' "$d/$cand"
"#;

/// An upload's result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Uploaded {
    /// Where the file is in the island.
    pub path: String,
    pub bytes: u64,
    /// `text` (its contents were pasted) or `file` (its path was pasted).
    pub pasted_as: &'static str,
    /// Whether the paste was seen on the agent's screen (the file is saved either way).
    pub pasted: bool,
    /// Why the paste was not seen, when it was not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paste_error: Option<String>,
}

/// A safe file name: the last path component, characters outside `[A-Za-z0-9._-]` made `_`,
/// no leading dots, at most 100 bytes. Returns (name, stem, extension with its dot).
pub fn upload_name(raw: &str) -> (String, String, String) {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let mut n: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    n = n.trim_start_matches('.').to_string();
    if n.len() > 100 {
        // Keep the extension when shortening.
        let ext = n
            .rfind('.')
            .map(|i| n[i..].to_string())
            .filter(|e| e.len() <= 16)
            .unwrap_or_default();
        n = format!("{}{ext}", &n[..100 - ext.len()]);
    }
    if n.is_empty() || n.chars().all(|c| c == '_') {
        n = "upload".into();
    }
    let (stem, ext) = match n.rfind('.') {
        Some(i) if i > 0 => (n[..i].to_string(), n[i..].to_string()),
        _ => (n.clone(), String::new()),
    };
    (n, stem, ext)
}

/// The screen of one pane.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Screen {
    pub agent: String,
    pub size: Size,
    pub cursor: Cursor,
    pub alternate_screen: bool,
    /// The visible rows, top first.
    pub rows: Vec<String>,
    /// Up to `scrollback` lines that scrolled off the top, oldest first.
    pub history: Vec<String>,
    /// The agent's program has exited (its pane stays, dead).
    pub exited: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Size {
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Cursor {
    pub row: u16,
    pub col: u16,
    pub visible: bool,
}

impl Screen {
    /// Parse CAPTURE's output.
    fn parse(agent: &str, out: &str) -> Result<Screen> {
        let mut lines = out.split('\n');
        let head = lines.next().unwrap_or_default();
        let f: Vec<u32> = head
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() < 8 {
            return Err(Error::Internal(format!(
                "unexpected pane state line {head:?}"
            )));
        }
        let mut body: Vec<String> = lines.map(str::to_string).collect();
        // capture-pane ends every line with a newline: the last split is empty.
        if body.last().is_some_and(|l| l.is_empty()) {
            body.pop();
        }
        let height = f[3] as usize;
        let split = body.len().saturating_sub(height);
        let rows = body.split_off(split);
        Ok(Screen {
            agent: agent.to_string(),
            size: Size {
                rows: f[3] as u16,
                cols: f[4] as u16,
            },
            cursor: Cursor {
                row: f[0] as u16,
                col: f[1] as u16,
                visible: f[2] == 1,
            },
            alternate_screen: f[5] == 1,
            rows,
            history: body,
            exited: f[7] == 1,
        })
    }

    /// The screen as text: history then rows, trailing blank rows dropped.
    pub fn text(&self) -> String {
        let mut all: Vec<&str> = self
            .history
            .iter()
            .chain(self.rows.iter())
            .map(String::as_str)
            .collect();
        while all.last().is_some_and(|l| l.trim().is_empty()) {
            all.pop();
        }
        let mut s = all.join("\n");
        s.push('\n');
        s
    }

    /// The row the cursor is on.
    fn cursor_row(&self) -> &str {
        self.rows
            .get(self.cursor.row as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// The last `n` non-blank rows, for saying what was seen.
    fn tail(&self, n: usize) -> String {
        let rows: Vec<&str> = self
            .rows
            .iter()
            .map(|r| r.trim_end())
            .filter(|r| !r.is_empty())
            .collect();
        rows[rows.len().saturating_sub(n)..].join(" | ")
    }
}

/// A verified delivery.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Delivery {
    pub delivered: bool,
    pub submitted: bool,
    /// Times the submit key was pressed.
    pub attempts: u32,
    pub elapsed_ms: u64,
}

/// What a prompt's text becomes on the pane: control characters other than tab and newline
/// are dropped (an ESC could end the bracketed paste early and turn the rest into keys), CR
/// and CRLF become newlines. Everything else arrives literally.
pub fn clean_prompt(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .chars()
        .filter(|&c| c == '\n' || c == '\t' || !c.is_control())
        .collect()
}

impl Islands {
    /// The agent whose pane a request names: it exists, has a screen, and its island runs.
    pub fn pane_target(&self, island: &str, agent: Option<&str>) -> Result<String> {
        let rec = self.record(island)?;
        let id = agent.unwrap_or(PRIMARY);
        let a = rec
            .agents
            .iter()
            .find(|a| a.id == id)
            .ok_or_else(|| Error::NotFound(format!("no agent {id:?} in island {island:?}")))?;
        if a.headless() {
            return Err(Error::Conflict(format!(
                "agent {id} is headless and has no screen; read its log (logs?agent={id})"
            )));
        }
        if !self.observed.running(island) {
            return Err(Error::Conflict(format!(
                "island {island:?} is not running; wake it first"
            )));
        }
        Ok(id.to_string())
    }

    fn pane_exec(&self, island: &str, argv: &[&str], stdin: Option<&[u8]>) -> Result<String> {
        let opts = ExecOpts {
            timeout: Duration::from_secs(30),
            ..ExecOpts::agent(argv)
        };
        let input = match stdin {
            Some(b) => Input::Bytes(b),
            None => Input::None,
        };
        let out = self.runtime.exec(island, &opts, input)?;
        // A failure here is the island's tmux (gone, restarting, refusing): its state, not
        // ours, so a 409 that says what tmux said.
        match out.status {
            Some(0) => Ok(String::from_utf8_lossy(&out.stdout).into_owned()),
            Some(3) => Err(Error::Conflict(
                "the agent has no tmux session now (stopped or restarting); try again".into(),
            )),
            _ => Err(Error::Conflict(format!(
                "the agent's tmux refused: {}",
                crate::util::clip(out.stderr_str().trim())
            ))),
        }
    }

    /// The agent's screen now (and up to `scrollback` lines of history); `ansi` keeps
    /// colours and attributes as escape sequences.
    pub fn screen(
        &self,
        island: &str,
        agent: Option<&str>,
        scrollback: u32,
        ansi: bool,
    ) -> Result<Screen> {
        let id = self.pane_target(island, agent)?;
        let session = tmux::session_name(&id);
        let n = scrollback.min(MAX_SCROLLBACK).to_string();
        // Rows as the pane shows them (no -J): history and screen split by the pane height.
        let e = if ansi { "-e" } else { "" };
        let out = self.pane_exec(island, &["sh", "-c", CAPTURE, "sh", &session, &n, e], None)?;
        Screen::parse(&id, &out)
    }

    /// What a client shows before the live screen when it asks for history: up to `n` lines
    /// that scrolled off (colours kept, each reset at its end), then `rows` line breaks that
    /// push them into the client's own history. Empty when there is none, or no screen now.
    pub fn history_bytes(&self, island: &str, agent: &str, n: u32, rows: u16) -> Vec<u8> {
        let s = match self.screen(island, Some(agent), n, true) {
            Ok(s) if !s.history.is_empty() => s,
            Ok(_) => return Vec::new(),
            Err(e) => {
                log::debug!("history for an attach to {island}/{agent}: {e}");
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for l in &s.history {
            out.extend_from_slice(l.as_bytes());
            out.extend_from_slice(b"\x1b[m\r\n");
        }
        out.extend(std::iter::repeat_n(b"\r\n".as_slice(), rows as usize).flatten());
        out
    }

    /// Send `text` to an agent as one bracketed paste and (with `submit`) press its submit
    /// key, verifying each on the screen. One prompt at a time per agent.
    pub fn prompt(
        &self,
        island: &str,
        agent: Option<&str>,
        text: &str,
        submit: bool,
    ) -> Result<Delivery> {
        let id = self.pane_target(island, agent)?;
        let text = clean_prompt(text);
        if text.trim().is_empty() {
            return Err(Error::Unprocessable(
                "the prompt is empty once control characters are removed".into(),
            ));
        }
        let key = {
            let rec = self.record(island)?;
            let kind = rec
                .agents
                .iter()
                .find(|a| a.id == id)
                .map(|a| a.kind)
                .unwrap_or_default();
            super::agents::submit_key(kind)
        };
        let gate = self
            .with_slot(island, |s| {
                s.prompt_locks
                    .entry(id.clone())
                    .or_insert_with(|| Arc::new(Mutex::new(())))
                    .clone()
            })
            .ok_or_else(|| Error::NotFound(format!("no island {island:?}")))?;
        let _one = lock(&gate);
        self.touch(island);
        let started = Instant::now();
        let session = tmux::session_name(&id);
        let step = |action: &str, key: &str, wait_ms: u32, stdin: Option<&[u8]>| {
            let w = wait_ms.to_string();
            let out = self.pane_exec(
                island,
                &["sh", "-c", STEP, "sh", &session, action, key, &w],
                stdin,
            )?;
            let (changed, rest) = out.split_once('\n').unwrap_or((&out, ""));
            Ok::<_, Error>((changed.trim() == "1", Screen::parse(&id, rest)?))
        };
        // A TUI may draw its prompt a moment before it reads: a paste that left no trace is
        // sent once more (nothing of it landed, so nothing doubles).
        let (mut landed, mut pasted) = step("paste", "", 3000, Some(text.as_bytes()))?;
        if !landed && !pasted.exited {
            (landed, pasted) = step("paste", "", 3000, Some(text.as_bytes()))?;
        }
        if pasted.exited {
            return Err(Error::Conflict(format!(
                "agent {id} has exited; restart it first"
            )));
        }
        if !landed {
            return Err(Error::Timeout(format!(
                "the paste did not show on agent {id}'s screen (twice, 3 s each; is it hung or not reading?); seen: {}",
                pasted.tail(3)
            )));
        }
        let mut attempts = 0;
        if submit {
            let input_row = pasted.cursor_row().to_string();
            loop {
                attempts += 1;
                let (changed, after) = step("key", key, 1500, None)?;
                // Delivered: the key changed the screen and the cursor no longer sits at the
                // end of the pasted text (the input box emptied, or the shell moved on).
                let still_in_box = after.cursor == pasted.cursor && after.cursor_row() == input_row;
                if changed && !still_in_box {
                    break;
                }
                if attempts >= 3 {
                    return Err(Error::Conflict(format!(
                        "pressed {key} {attempts} times but the text is still in agent {id}'s input box; seen: {}",
                        after.tail(3)
                    )));
                }
            }
        }
        Ok(Delivery {
            delivered: true,
            submitted: submit,
            attempts,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }
}

impl Islands {
    /// Save `data` as `~/uploads/<name>` in the island (never over an existing file), then
    /// paste it into the agent's input: its text when it is UTF-8 text of at most 256 KiB,
    /// else its path. Nothing is submitted.
    pub fn upload(
        &self,
        island: &str,
        agent: Option<&str>,
        filename: &str,
        data: &[u8],
    ) -> Result<Uploaded> {
        let id = self.pane_target(island, agent)?;
        let (name, stem, ext) = upload_name(filename);
        let opts = ExecOpts {
            timeout: Duration::from_secs(120),
            ..ExecOpts::agent(&["sh", "-c", UPLOAD, "sh", &name, &stem, &ext])
        };
        let out = self.runtime.exec(island, &opts, Input::Bytes(data))?;
        let path = match out.status {
            Some(0) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
            Some(5) => {
                return Err(Error::Conflict(format!(
                    "1000 files named like {name:?} are in ~/uploads already; pick another name"
                )))
            }
            _ => {
                return Err(Error::Unprocessable(format!(
                    "cannot write ~/uploads/{name} in the island: {}",
                    out.stderr_str().trim()
                )))
            }
        };
        let text = std::str::from_utf8(data)
            .ok()
            .filter(|t| t.len() <= PASTE_TEXT_MAX && !t.contains('\0') && !t.trim().is_empty());
        let (what, paste) = match text {
            Some(t) => ("text", t.to_string()),
            None => ("file", path.clone()),
        };
        let (pasted, paste_error) = match self.prompt(island, Some(&id), &paste, false) {
            Ok(_) => (true, None),
            Err(e) => (false, Some(e.to_string())),
        };
        Ok(Uploaded {
            path,
            bytes: data.len() as u64,
            pasted_as: what,
            pasted,
            paste_error,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_capture() {
        let out = "1 2 1 3 10 0 2 0\nold1\nold2\n$ ls\nfile\n\n";
        let s = Screen::parse("a1", out).unwrap();
        assert_eq!(s.rows, vec!["$ ls", "file", ""]);
        assert_eq!(s.history, vec!["old1", "old2"]);
        assert_eq!(
            s.cursor,
            Cursor {
                row: 1,
                col: 2,
                visible: true
            }
        );
        assert_eq!(s.size, Size { rows: 3, cols: 10 });
        assert_eq!(s.cursor_row(), "file");
        assert_eq!(s.text(), "old1\nold2\n$ ls\nfile\n");
        assert!(Screen::parse("a1", "garbage").is_err());
    }

    #[test]
    fn upload_names_are_tamed() {
        assert_eq!(upload_name("a.png").0, "a.png");
        assert_eq!(upload_name("../../etc/passwd").0, "passwd");
        assert_eq!(
            upload_name("C:\\x\\my file (1).txt"),
            (
                "my_file__1_.txt".into(),
                "my_file__1_".into(),
                ".txt".into()
            )
        );
        assert_eq!(upload_name(".bashrc").0, "bashrc");
        assert_eq!(upload_name("..").0, "upload");
        assert_eq!(upload_name("").0, "upload");
        assert_eq!(upload_name("héllo").0, "h_llo");
        let long = format!("{}.tar", "x".repeat(300));
        let n = upload_name(&long).0;
        assert_eq!(n.len(), 100);
        assert!(n.ends_with(".tar"));
    }

    #[test]
    fn prompts_arrive_literally_but_without_controls() {
        assert_eq!(clean_prompt("a\r\nb\rc"), "a\nb\nc");
        assert_eq!(clean_prompt("x\x1b[201~y\x03"), "x[201~y");
        assert_eq!(clean_prompt("C-c Enter ünï 🙂\t"), "C-c Enter ünï 🙂\t");
    }
}
