//! Benchmark, run by `scripts/bench` (ignored in the normal test run): SSH into an island
//! through `dejima ssh-proxy` against the raw `docker exec -i` it rides on, in the same run:
//! a whole connection that runs `true` (proxy, upgrade, sshd, key exchange, key auth), and
//! scp throughput against scp with `docker exec -i … sshd -i` as the ProxyCommand (OpenSSH's
//! own cost, no daemon in between), with piping into `docker exec -i … cat` as a figure.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::bench::*;
use support::*;

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

#[test]
#[ignore]
fn bench_ssh() {
    println!();
    let d = Daemon::start();
    let i = d.create("bench-ssh");
    let n = i.name.clone();
    let c = format!("dejima-{n}");
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("id");
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap()
        .success());
    let public = std::fs::read_to_string(t.path().join("id.pub")).unwrap();
    d.ok(
        "POST",
        "/v1/ssh/account-keys",
        Some(json!({"public_key": public.trim()})),
    );
    let ssh = |program: &str| {
        let mut cmd = Command::new(program);
        cmd.args(["-F", "/dev/null", "-i"])
            .arg(&key)
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}/kh", t.path().display()))
            .args(["-o", "StrictHostKeyChecking=accept-new", "-o", "User=agent"])
            .arg("-o")
            .arg(format!(
                "ProxyCommand={} ssh-proxy %h",
                env!("CARGO_BIN_EXE_dejima")
            ))
            .env("DEJIMA_HOME", &d.home)
            .stdin(Stdio::null());
        cmd
    };
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
        .clamp(3, 200);
    let ssh_true = || {
        let o = ssh("ssh")
            .arg(format!("{n}.dejima"))
            .arg("true")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    let raw_true = || {
        let o = Command::new("docker")
            .args(["exec", "-i", "-u", "agent", &c, "true"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success());
    };
    ssh_true();
    let (mut raw, mut api) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(time(raw_true));
        api.push(time(ssh_true));
    }
    figure(format!(
        "ssh connect+true: p50 {:.0} ms, p95 {:.0} ms (docker exec -i true: p50 {:.0} ms)",
        ms(pct(&api, 0.5)),
        ms(pct(&api, 0.95)),
        ms(pct(&raw, 0.5))
    ));
    goal(
        "ssh connection against a raw docker exec",
        pct(&api, 0.5) < pct(&raw, 0.5) * 4,
        format!(
            "{:.2}x",
            pct(&api, 0.5).as_secs_f64() / pct(&raw, 0.5).as_secs_f64()
        ),
        "4x",
    );

    let file = t.path().join("blob");
    {
        let mut f = std::fs::File::create(&file).unwrap();
        let chunk: Vec<u8> = (0..(1u32 << 20)).map(|k| (k * 7 % 251) as u8).collect();
        for _ in 0..128 {
            f.write_all(&chunk).unwrap();
        }
    }
    // The same scp with the engine as the ProxyCommand (sshd -i through docker exec, no
    // daemon in between): what OpenSSH itself costs, so the ratio is the daemon's share.
    let (mut cat, mut raw, mut api) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        cat.push(time(|| {
            let st = Command::new("docker")
                .args([
                    "exec",
                    "-i",
                    "-u",
                    "agent",
                    &c,
                    "sh",
                    "-c",
                    "cat > /tmp/raw.bin",
                ])
                .stdin(std::fs::File::open(&file).unwrap())
                .status()
                .unwrap();
            assert!(st.success());
        }));
        raw.push(time(|| {
            // The first option given wins in ssh: this ProxyCommand comes before ours.
            let mut cmd = Command::new("scp");
            cmd.arg("-o").arg(format!(
                "ProxyCommand=docker exec -i {c} /usr/sbin/sshd -i -f /etc/ssh/dejima_sshd_config"
            ));
            let base = ssh("scp");
            cmd.args(base.get_args()).env("DEJIMA_HOME", &d.home);
            cmd.arg(&file).arg(format!("{n}.dejima:/tmp/direct.bin"));
            assert!(cmd.status().unwrap().success());
        }));
        api.push(time(|| {
            let st = ssh("scp")
                .arg(&file)
                .arg(format!("{n}.dejima:/tmp/scp.bin"))
                .status()
                .unwrap();
            assert!(st.success());
        }));
    }
    let mb = 128.0;
    let rate = |v: &[Duration]| mb / pct(v, 0.5).as_secs_f64();
    figure(format!(
        "scp {mb:.0} MiB: {:.0} MiB/s through dejimad; {:.0} MiB/s with docker exec as the ProxyCommand; docker exec -i cat {:.0} MiB/s",
        rate(&api),
        rate(&raw),
        rate(&cat)
    ));
    goal(
        "scp through dejimad against scp with docker exec as the ProxyCommand",
        pct(&api, 0.5) < pct(&raw, 0.5) * 3 / 2,
        format!(
            "{:.2}x",
            pct(&api, 0.5).as_secs_f64() / pct(&raw, 0.5).as_secs_f64()
        ),
        "1.5x",
    );
}
