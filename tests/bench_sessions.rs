//! Session benchmarks, run by `scripts/bench` (ignored in the normal run). Each figure is set
//! against a raw `docker exec -it <c> tmux attach` on a PTY measured in the same run.
//!
//! Output protocol (what `scripts/bench` keeps): figures are lines starting `bench: `, goal
//! verdicts are lines `goal: <name>: met|missed (<measured> vs <target>)`, also appended to the
//! file named by `BENCH_GOALS` when it is set.

mod support;

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::bench::*;
use support::*;

/// A raw attach: docker exec -it on a PTY of our own.
struct Raw {
    master: std::fs::File,
    child: Child,
    out: Vec<u8>,
}

impl Raw {
    fn start(container: &str) -> Raw {
        let ws = nix::pty::Winsize {
            ws_row: 50,
            ws_col: 200,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&ws), None).unwrap();
        let s = pty.slave;
        let child = Command::new("docker")
            .args([
                "exec",
                "-it",
                "-u",
                "agent",
                "-e",
                "TERM=xterm-256color",
                container,
                "tmux",
                "-L",
                "dejima",
                "attach",
                "-t",
                "=agent-a1",
            ])
            .stdin(Stdio::from(s.try_clone().unwrap()))
            .stdout(Stdio::from(s.try_clone().unwrap()))
            .stderr(Stdio::from(s))
            .spawn()
            .unwrap();
        Raw {
            master: std::fs::File::from(pty.master),
            child,
            out: Vec::new(),
        }
    }
    fn wait_readable(&self, t: Duration) -> bool {
        let mut p = libc::pollfd {
            fd: self.master.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        unsafe { libc::poll(&mut p, 1, t.as_millis() as i32) > 0 }
    }
    fn read_some(&mut self) {
        let mut buf = [0u8; 65536];
        if self.wait_readable(Duration::from_millis(200)) {
            if let Ok(n) = self.master.read(&mut buf) {
                self.out.extend_from_slice(&buf[..n]);
            }
        }
    }
    fn until(&mut self, needle: &[u8], from: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut scanned = from;
        while !found(&self.out, needle, from, &mut scanned) {
            assert!(
                Instant::now() < deadline,
                "raw: no {:?}",
                String::from_utf8_lossy(needle)
            );
            self.read_some();
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `needle` is in `buf[from..]`, looking only at what came since the last call (plus
/// an overlap): the bench must measure the terminal, not its own search of a long output.
fn found(buf: &[u8], needle: &[u8], from: usize, scanned: &mut usize) -> bool {
    let start = scanned
        .saturating_sub(needle.len())
        .max(from)
        .min(buf.len());
    *scanned = buf.len();
    buf[start..].windows(needle.len()).any(|w| w == needle)
}

fn ws_until(w: &mut Ws, needle: &str, from: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut scanned = from;
    while !found(&w.output, needle.as_bytes(), from, &mut scanned) {
        assert!(Instant::now() < deadline, "ws: no {needle:?}");
        assert!(w.closed.is_none(), "closed: {:?}", w.closed);
        w.pump_once();
    }
}

/// A `kB` field of a /proc file (`VmRSS:` in status, `Pss:` in smaps_rollup); 0 when gone.
fn proc_kb(pid: u32, file: &str, key: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Every live descendant of `root` (children, their children, ...), from the ppid field of
/// each /proc/<pid>/stat.
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|v| v.parse().ok()) {
            parent_of.push((pid, ppid));
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(c, pp) in &parent_of {
            if pp == p && c != root && !out.contains(&c) {
                out.push(c);
                frontier.push(c);
            }
        }
    }
    out
}

/// Memory of `root` and all its descendants: (processes, summed RSS kB, summed PSS kB).
/// RSS counts shared pages once per process (the figure the goal uses); PSS splits them.
fn tree_mem(root: u32) -> (usize, u64, u64) {
    let mut pids = descendants(root);
    pids.push(root);
    let rss = pids.iter().map(|&p| rss_kb(p)).sum();
    let pss = pids
        .iter()
        .map(|&p| proc_kb(p, "smaps_rollup", "Pss:"))
        .sum();
    (pids.len(), rss, pss)
}

/// The descendants of `root` by command name: `2 docker, 1 sh`.
fn kinds(root: u32) -> String {
    let mut by: Vec<(String, usize)> = Vec::new();
    for p in descendants(root) {
        let c = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        let c = c.trim().to_string();
        match by.iter_mut().find(|(n, _)| *n == c) {
            Some((_, k)) => *k += 1,
            None => by.push((c, 1)),
        }
    }
    let v: Vec<String> = by.iter().map(|(n, k)| format!("{k} {n}")).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

#[test]
#[ignore]
fn bench_sessions() {
    println!();
    let d = Daemon::start();
    let idle = rss_kb(d.pid());
    let (idle_n, idle_tree, idle_pss) = tree_mem(d.pid());
    figure(format_args!(
        "daemon idle: RSS {idle} kB; process tree {idle_n} processes, RSS {idle_tree} kB, PSS {idle_pss} kB (descendants: {})",
        kinds(d.pid())
    ));
    goal(
        "daemon idle RSS",
        mb(idle) <= 15.0,
        format_args!("{:.1} MB", mb(idle)),
        "<= 15 MB",
    );
    let i = d.create("sbench");
    let c = format!("dejima-{}", i.name);
    let path = format!("/v1/islands/{}/session?label=bench", i.name);
    // Warm the agent's shell so both sides attach to a settled screen.
    d.exec(
        &i.name,
        &[
            "tmux",
            "-L",
            "dejima",
            "send-keys",
            "-t",
            "agent-a1",
            "clear",
            "Enter",
        ],
    );

    // --- time to first screen byte ---
    let (mut raw_fb, mut ws_fb, mut hs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..10 {
        let t = Instant::now();
        let mut r = Raw::start(&c);
        while r.out.is_empty() {
            r.read_some();
        }
        raw_fb.push(t.elapsed());
        drop(r);
        let t = Instant::now();
        let mut w = d.attach(&path);
        hs.push(t.elapsed());
        w.resize(50, 200);
        while w.output.is_empty() {
            w.pump_once();
        }
        ws_fb.push(t.elapsed());
        // The daemon ends each attach inside the island after the client leaves (a docker
        // exec of its own); let that finish outside the timed windows.
        drop(w);
        wait_for(
            Duration::from_secs(20),
            "the attach to end in the island",
            || {
                let (n, _) = d.exec(
                    &i.name,
                    &[
                        "sh",
                        "-c",
                        "grep -lzs '^DEJIMA_ATTACH=' /proc/[0-9]*/environ | wc -l",
                    ],
                );
                (n.trim() == "0").then_some(())
            },
        );
    }
    let (r, w) = (pct(&raw_fb, 0.5), pct(&ws_fb, 0.5));
    let fb = ms(w) - ms(r);
    figure(format_args!(
        "first byte (10 rounds): raw attach p50 {:.1} ms, websocket p50 {:.1} ms (handshake {:.1} ms of it), {fb:+.1} ms",
        ms(r),
        ms(w),
        ms(pct(&hs, 0.5)),
    ));
    goal(
        "first screen byte",
        fb <= 20.0,
        format_args!("{fb:+.1} ms"),
        "<= +20 ms",
    );

    // --- keystroke echo round trip ---
    let rounds = 200;
    let mut raw = Raw::start(&c);
    raw.until(b"$", 0);
    let mut lat_raw = Vec::new();
    for k in 0..rounds {
        let ch = [b'a' + (k % 26) as u8];
        let from = raw.out.len();
        let t = Instant::now();
        raw.master.write_all(&ch).unwrap();
        raw.until(&ch, from);
        lat_raw.push(t.elapsed());
        raw.master.write_all(b"\x7f").unwrap();
    }
    drop(raw);
    let mut w = d.attach(&path);
    w.resize(50, 200);
    ws_until(&mut w, "$", 0);
    let mut lat_ws = Vec::new();
    for k in 0..rounds {
        let ch = [b'a' + (k % 26) as u8];
        let from = w.output.len();
        let t = Instant::now();
        w.send_data(&ch);
        ws_until(&mut w, std::str::from_utf8(&ch).unwrap(), from);
        lat_ws.push(t.elapsed());
        w.send_data(b"\x7f");
    }
    let (r50, r99, w50, w99) = (
        pct(&lat_raw, 0.5),
        pct(&lat_raw, 0.99),
        pct(&lat_ws, 0.5),
        pct(&lat_ws, 0.99),
    );
    let echo = ms(w50) - ms(r50);
    figure(format_args!(
        "echo ({rounds} keys): raw p50 {:.2} ms p99 {:.2} ms, websocket p50 {:.2} ms p99 {:.2} ms, {echo:+.2} ms at p50",
        ms(r50), ms(r99), ms(w50), ms(w99)
    ));
    goal(
        "keystroke echo p50",
        echo <= 1.0,
        format_args!("{echo:+.2} ms"),
        "<= +1 ms",
    );
    drop(w);

    // --- reading the screen without a client, against the raw capture-pane exec ---
    let (mut raw_cap, mut api_cap) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let t = Instant::now();
        let o = Command::new("docker")
            .args([
                "exec",
                "-u",
                "agent",
                &c,
                "tmux",
                "-L",
                "dejima",
                "capture-pane",
                "-p",
                "-t",
                "=agent-a1:",
            ])
            .output()
            .unwrap();
        assert!(o.status.success());
        raw_cap.push(t.elapsed());
        let t = Instant::now();
        d.ok(
            "GET",
            &format!("/v1/islands/{}/agents/a1/screen?format=json", i.name),
            None,
        );
        api_cap.push(t.elapsed());
    }
    let (rc, ac) = (pct(&raw_cap, 0.5), pct(&api_cap, 0.5));
    let over = ms(ac) - ms(rc);
    figure(format_args!(
        "screen read (20 rounds): raw capture-pane exec p50 {:.1} ms, GET screen p50 {:.1} ms, {over:+.1} ms",
        ms(rc),
        ms(ac)
    ));
    goal(
        "screen read p50",
        over <= 20.0,
        format_args!("{over:+.1} ms"),
        "<= +20 ms",
    );

    // --- bulk output to 1 and 10 clients ---
    let n = 2_000_000;
    // Ctrl-U first: a keystroke left over from the echo rounds must not spoil the command.
    let run = |tag: &str| format!("\x15seq 1 {n}; echo bulk-{tag}-$((1+1))\r");
    let mut raw = Raw::start(&c);
    raw.until(b"$", 0);
    let from = raw.out.len();
    let t = Instant::now();
    raw.master.write_all(run("raw").as_bytes()).unwrap();
    raw.until(b"bulk-raw-2", from);
    let t_raw = t.elapsed();
    drop(raw);
    let mut one = d.attach(&path);
    one.resize(50, 200);
    ws_until(&mut one, "$", 0);
    let from = one.output.len();
    let t = Instant::now();
    one.send_data(run("one").as_bytes());
    ws_until(&mut one, "bulk-one-2", from);
    let t_one = t.elapsed();
    drop(one);
    // Many clients of one size: one attach, its output copied to each.
    let bulk_many = |n: usize, tag: &str| {
        let mut many: Vec<Ws> = (0..n).map(|_| d.attach(&path)).collect();
        for w in many.iter_mut() {
            w.resize(50, 200);
            w.hello();
        }
        let t = Instant::now();
        many[0].send_data(run(tag).as_bytes());
        let needle = format!("bulk-{tag}-2");
        let handles: Vec<_> = many
            .into_iter()
            .map(|mut w| {
                let needle = needle.clone();
                std::thread::spawn(move || {
                    ws_until(&mut w, &needle, 0);
                    Instant::now()
                })
            })
            .collect();
        let last = handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .max()
            .unwrap();
        last - t
    };
    let t_ten = bulk_many(10, "ten");
    let t_hundred = bulk_many(100, "hundred");
    let (b1, b10, b100) = (
        ms(t_one) / ms(t_raw),
        ms(t_ten) / ms(t_raw),
        ms(t_hundred) / ms(t_raw),
    );
    figure(format_args!(
        "bulk ({n} lines): raw attach {:.0} ms, 1 websocket {:.0} ms (ratio {b1:.2}), 10 websockets {:.0} ms (ratio {b10:.2}), 100 websockets {:.0} ms (ratio {b100:.2})",
        ms(t_raw), ms(t_one), ms(t_ten), ms(t_hundred)
    ));
    goal(
        "bulk output 1 client",
        b1 <= 1.05,
        format_args!("ratio {b1:.2}"),
        "<= 1.05",
    );
    goal(
        "bulk output 10 clients",
        b10 <= 1.3,
        format_args!("ratio {b10:.2}"),
        "<= 1.3",
    );
    goal(
        "bulk output 100 clients",
        b100 <= 1.3,
        format_args!("ratio {b100:.2}"),
        "<= 1.3",
    );

    // --- memory with many attached clients ---
    let target: usize = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let mut clients = Vec::new();
    for k in 0..target {
        let mut w = d.attach(&format!("/v1/islands/{}/session?label=c{k}", i.name));
        w.hello();
        clients.push(w);
    }
    wait_for(Duration::from_secs(120), "every client attached", || {
        (d.island(&i.name).attached.len() == target).then_some(())
    });
    // Let each pump settle, reading so no client is the slow one.
    let settle = Instant::now() + Duration::from_secs(3);
    while Instant::now() < settle {
        for w in clients.iter_mut() {
            w.pump_once_nowait();
        }
    }
    let own = rss_kb(d.pid());
    let threads = std::fs::read_dir(format!("/proc/{}/task", d.pid()))
        .map(|r| r.count())
        .unwrap_or(0);
    let (procs, tree, pss) = tree_mem(d.pid());
    let per = |total: u64, base: u64| mb(total.saturating_sub(base)) / target.max(1) as f64;
    figure(format_args!(
        "memory with {target} attached clients: daemon RSS {own} kB ({threads} threads); process tree (daemon + {} descendants: {}) RSS {tree} kB = {:.1} MB, PSS {pss} kB = {:.1} MB; per client {:.2} MB RSS, {:.2} MB PSS",
        procs - 1,
        kinds(d.pid()),
        mb(tree),
        mb(pss),
        per(tree, idle_tree),
        per(pss, idle_pss),
    ));
    goal(
        &format!("process tree RSS with {target} clients"),
        mb(tree) <= 300.0,
        format_args!("{:.1} MB (daemon alone {:.1} MB)", mb(tree), mb(own)),
        "<= 300 MB",
    );
    drop(clients);
}
