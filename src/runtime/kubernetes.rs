//! The Kubernetes runtime (issue 16; docs/scale-out.md has the mapping and its limits): an
//! island is a pod with two PVCs, a Secret that seeds its run and secrets folders, and a
//! NetworkPolicy that keeps other pods out. Only v1 kinds, so any current cluster takes them.
//! Driven through `kubectl` as the Docker runtime is through `docker`: every kubectl argv in
//! the program lives here. Objects go to `kubectl apply -f -` on stdin, so a Secret's bytes
//! never reach an argv.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use serde_json::{json, Value};

use super::{
    ContainerObs, ContainerSpec, ContainerState, EngineError, ExecOpts, Inspect, Observed, Relay,
    Result, Runtime, AGENT_HOME, ISLAND_LABEL, SECRETS_MOUNT, WORKSPACE,
};
use crate::process::{self, Input, Output, Run};
use crate::util::lock;

/// Where a daemon's islands go on a cluster.
#[derive(Debug, Clone)]
pub struct Placement {
    /// The namespace the daemon owns (`--namespace`, default `dejima`).
    pub namespace: String,
    /// The storage class of the islands' claims; None: the cluster's default.
    pub storage_class: Option<String>,
    /// Size each claim asks for.
    pub volume_size: String,
    /// `Never` where images are imported onto the nodes (no registry), else `IfNotPresent`.
    pub pull_policy: String,
    /// Extra labels on every object (tests tag theirs for the sweeper).
    pub labels: Vec<(String, String)>,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            namespace: "dejima".into(),
            storage_class: None,
            volume_size: "10Gi".into(),
            pull_policy: "IfNotPresent".into(),
            labels: Vec::new(),
        }
    }
}

pub fn pod_name(island: &str) -> String {
    format!("dejima-{island}")
}

pub fn claim_name(island: &str, volume: &str) -> String {
    format!("dejima-{island}-{volume}")
}

pub fn secret_name(island: &str) -> String {
    format!("dejima-{island}-secrets")
}

fn metadata(name: &str, island: &str, p: &Placement) -> Value {
    let mut labels = serde_json::Map::new();
    labels.insert(ISLAND_LABEL.into(), Value::String(island.into()));
    for (k, v) in &p.labels {
        labels.insert(k.clone(), Value::String(v.clone()));
    }
    json!({ "name": name, "namespace": p.namespace, "labels": labels })
}

/// One of the island's two claims (`workspace`, `home`): its state, kept while it hibernates.
pub fn claim(island: &str, volume: &str, p: &Placement) -> Value {
    let mut spec = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": { "requests": { "storage": p.volume_size } },
    });
    if let Some(class) = &p.storage_class {
        spec["storageClassName"] = Value::String(class.clone());
    }
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(&claim_name(island, volume), island, p),
        "spec": spec,
    })
}

/// The Secret that seeds an island's two folders: `files.tar` holds `run/` (the agents' start
/// scripts, what the Docker runtime bind-mounts at /run/dejima) and `secrets/` (the token, the
/// bound providers' keys, the GitHub identity), owners and modes kept.
pub fn secret(island: &str, tar: &[u8], p: &Placement) -> Value {
    use base64::Engine as _;
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(&secret_name(island), island, p),
        "data": { "files.tar": base64::engine::general_purpose::STANDARD.encode(tar) },
    })
}

/// Nothing may connect to an island (another island included); what it reaches out to is its
/// own business. Needs a CNI that enforces NetworkPolicy (Calico, Cilium; not plain bridge).
pub fn network_policy(island: &str, p: &Placement) -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(&pod_name(island), island, p),
        "spec": {
            "podSelector": { "matchLabels": { ISLAND_LABEL: island } },
            "policyTypes": ["Ingress"],
            "ingress": [],
        },
    })
}

/// Unpacks the island's files (`$1`: a tar, `-` for stdin) into its two in-memory folders,
/// replacing what they held. Root-owned folders: the island reads them and plants nothing.
const UNPACK: &str = r#"set -e
umask 077
f=$1
if [ "$f" = - ]; then f=$(mktemp /run/.dejima-in.XXXXXX); cat > "$f"; fi
for pair in "run /run/dejima" "secrets /run/secrets/dejima"; do
  set -- $pair
  find "$2" -mindepth 1 -delete
  tar -x -p --numeric-owner -C "$2" --strip-components=1 -f "$f" "$1"
  chown 0:0 "$2"; chmod 755 "$2"
done
case "$f" in /run/.dejima-in.*) rm -f "$f" ;; esac
# The daemon's socket: a relay (sshd, as the agent) binds it in its own folder.
chown 1000:1000 /run/dejima-relay; chmod 700 /run/dejima-relay
ln -sfn /run/dejima-relay/dejimad.sock /run/dejima/dejimad.sock
"#;

/// The island's pod. It never restarts on its own (the daemon decides, as `--restart no` does
/// on Docker), holds no service-account token and no host path, and finds its state on its
/// claims. An init container unpacks the seed Secret into two in-memory folders before the
/// island starts (its entrypoint starts the agents it finds there); later changes are pushed
/// into the running pod (`Kube::sync_files`). A disk cap is the container's ephemeral
/// storage; `oom_score_adj` has no Kubernetes form (refused before it gets here).
pub fn pod(spec: &ContainerSpec, p: &Placement) -> Value {
    let island = spec.island.as_str();
    let mut limits = serde_json::Map::new();
    if let Some(m) = spec.memory {
        limits.insert("memory".into(), Value::String(m.to_string()));
    }
    if !spec.cpus.is_empty() {
        limits.insert("cpu".into(), Value::String(spec.cpus.clone()));
    }
    if !spec.disk.is_empty() {
        limits.insert("ephemeral-storage".into(), Value::String(spec.disk.clone()));
    }
    let folders = [
        json!({ "name": "run", "mountPath": "/run/dejima" }),
        json!({ "name": "secrets", "mountPath": SECRETS_MOUNT }),
        json!({ "name": "relay", "mountPath": RELAY_DIR }),
    ];
    let mut mounts = vec![
        json!({ "name": "workspace", "mountPath": WORKSPACE }),
        json!({ "name": "home", "mountPath": AGENT_HOME }),
    ];
    mounts.extend(folders.iter().cloned());
    let mut seed_mounts = folders.to_vec();
    seed_mounts.push(json!({ "name": "seed", "mountPath": "/seed", "readOnly": true }));
    let memory = json!({ "medium": "Memory" });
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(&pod_name(island), island, p),
        "spec": {
            "hostname": island,
            // The pod's pause process is PID 1 and reaps orphans (Docker's `--init`); the
            // entrypoint, no longer PID 1, ends on the TERM a hibernate sends.
            "shareProcessNamespace": true,
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 10,
            "initContainers": [{
                "name": "seed",
                "image": spec.image,
                "imagePullPolicy": p.pull_policy,
                "command": ["sh", "-c", UNPACK, "sh", "/seed/files.tar"],
                "volumeMounts": seed_mounts,
            }],
            "containers": [{
                "name": "island",
                "image": spec.image,
                "imagePullPolicy": p.pull_policy,
                "env": [{ "name": "DEJIMA_ISLAND", "value": island }],
                "resources": { "limits": limits },
                "volumeMounts": mounts,
            }],
            "volumes": [
                { "name": "workspace", "persistentVolumeClaim": { "claimName": claim_name(island, "workspace") } },
                { "name": "home", "persistentVolumeClaim": { "claimName": claim_name(island, "home") } },
                { "name": "run", "emptyDir": memory },
                { "name": "secrets", "emptyDir": memory },
                { "name": "relay", "emptyDir": memory },
                { "name": "seed", "secret": { "secretName": secret_name(island), "defaultMode": 0o400 } },
            ],
        },
    })
}

/// A short-lived pod on the island image with some of its claims mounted (a clone's copy, a
/// check on a hibernated island's workspace). A bare pod, not a Job: a Job's retries would
/// hide a failed copy, and its pod is all we wait on anyway.
pub fn helper_pod(
    island: &str,
    name: &str,
    image: &str,
    claims: &[(&str, &str, bool)],
    uid: Option<u32>,
    argv: &[&str],
    p: &Placement,
) -> Value {
    let mut meta = metadata(name, island, p);
    meta["labels"][HELPER_LABEL] = Value::String("1".into());
    let mounts: Vec<Value> = claims
        .iter()
        .enumerate()
        .map(|(i, (_, path, ro))| json!({ "name": format!("v{i}"), "mountPath": path, "readOnly": ro }))
        .collect();
    let volumes: Vec<Value> = claims
        .iter()
        .enumerate()
        .map(|(i, (claim, _, ro))| {
            json!({ "name": format!("v{i}"), "persistentVolumeClaim": { "claimName": claim, "readOnly": ro } })
        })
        .collect();
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "containers": [{
                "name": "helper",
                "image": image,
                "imagePullPolicy": p.pull_policy,
                "command": argv,
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        },
    });
    if let Some(uid) = uid {
        pod["spec"]["securityContext"] = json!({ "runAsUser": uid, "runAsGroup": uid });
    }
    pod
}

/// Where the island's socket is relayed to in the pod (`/run/dejima/dejimad.sock` links here).
pub const RELAY_DIR: &str = "/run/dejima-relay";

/// Marks helper pods, which carry the island's label but are not the island.
pub const HELPER_LABEL: &str = "dejima.helper";

/// Runs a command in the island as `$1` in `$2` (empty: the image's), marked `$3` (empty: no
/// mark), with the environment file `$4` (empty: none; read as root, then removed) — what
/// `docker exec -u -w --env-file -e` does, which `kubectl exec` cannot. With `$5` set, the
/// command's output is spooled under its mark and sent after it ends, stdout then stderr then
/// a trailer with the exit status and both lengths: kubectl can lose the end of an exec's
/// output and still exit 0 (kubernetes/kubernetes#124571), and a missing trailer shows it; the
/// spool is read again then (`REREAD`). Spools older than ten minutes are removed.
const AS_USER: &str = r#"u=$1 w=$2 m=$3 e=$4 s=$5; shift 5
if [ -n "$e" ]; then
  while IFS= read -r l || [ -n "$l" ]; do export "$l"; done < "$e"
  rm -f "$e"
fi
[ -z "$m" ] || export DEJIMA_EXEC="$m"
if [ -n "$w" ]; then cd "$w" || exit 126; fi
if [ "$u" = root ]; then
  export HOME=/root
else
  h=$(getent passwd "$u" | cut -d: -f6)
  export HOME="${h:-/}" USER="$u" LOGNAME="$u"
  set -- setpriv --reuid="$u" --regid="$u" --init-groups -- "$@"
fi
[ -n "$s" ] || exec "$@"
d=/run/.dejima-out
mkdir -p -m 700 $d && find $d -type f -mmin +10 -delete 2>/dev/null
o=$d/$m
"$@" >"$o.out" 2>"$o.err"
echo $? >"$o.rc"
cat "$o.out" "$o.err"
printf '\036dejima %s %s %s\n' "$(cat "$o.rc")" "$(wc -c <"$o.out")" "$(wc -c <"$o.err")"
"#;

/// Send a spooled exec's output again (`$1`: its mark), once the command has ended.
const REREAD: &str = r#"o=/run/.dejima-out/$1
while [ ! -f "$o.rc" ]; do [ -f "$o.out" ] || exit 3; sleep 0.05; done
cat "$o.out" "$o.err"
printf '\036dejima %s %s %s\n' "$(cat "$o.rc")" "$(wc -c <"$o.out")" "$(wc -c <"$o.err")"
"#;

/// Split a spooled exec's stdout (output, errors, trailer) back into the command's own
/// streams and status. False when the trailer is missing or does not add up.
fn unspool(out: &mut Output) -> bool {
    let text = &out.stdout;
    let Some(at) = text.windows(8).rposition(|w| w == b"\x1edejima ") else {
        return false;
    };
    let tail = String::from_utf8_lossy(&text[at + 8..]).into_owned();
    let f: Vec<u64> = tail
        .trim_end()
        .split(' ')
        .filter_map(|x| x.parse().ok())
        .collect();
    let [rc, o, e] = f[..] else { return false };
    if !tail.ends_with('\n') || o + e != at as u64 {
        return false;
    }
    let mut all = std::mem::take(&mut out.stdout);
    all.truncate(at);
    out.stderr = all.split_off(o as usize);
    out.stdout = all;
    out.status = Some(rc as i32);
    true
}

/// How AS_USER runs a command (its `$1`..`$5`).
#[derive(Default)]
struct As<'a> {
    user: &'a str,
    workdir: &'a str,
    mark: &'a str,
    env_file: &'a str,
    spool: bool,
}

impl<'a> As<'a> {
    fn user(user: &'a str) -> As<'a> {
        As {
            user,
            ..As::default()
        }
    }
}

/// Where an exec's environment file waits (root only) until its command reads it.
const ENV_DIR: &str = "/run/.dejima-env";

/// The Kubernetes runtime: one namespace of one cluster, through `kubectl`.
#[derive(Debug, Clone)]
pub struct Kube {
    kubectl: String,
    context: Option<String>,
    place: Placement,
    timeout: Duration,
    /// This daemon run's id, the prefix of its marks (as `Engine::boot`).
    boot: String,
    /// The island pods as the watch last saw them.
    pods: Arc<Pods>,
}

/// The island pods as the `kube-pods` watch last saw them, shared by every clone of a `Kube`:
/// a wait for a pod to run or to go reads this instead of asking the apiserver over and over
/// (every kubectl call is a process; polling with them starved the cluster of CPU).
#[derive(Debug, Default)]
struct Pods {
    map: Mutex<HashMap<String, Value>>,
    changed: Condvar,
    /// Whether the watch runs (else waits ask the apiserver themselves).
    live: AtomicBool,
}

impl Pods {
    fn put(&self, island: &str, pod: Option<Value>) {
        let mut m = lock(&self.map);
        match pod {
            Some(p) => m.insert(island.to_string(), p),
            None => m.remove(island),
        };
        self.changed.notify_all();
    }

    fn replace(&self, pods: Vec<(String, Value)>) {
        *lock(&self.map) = pods.into_iter().collect();
        self.changed.notify_all();
    }
}

impl Kube {
    pub fn new(
        kubectl: &str,
        context: Option<String>,
        place: Placement,
        timeout: Duration,
    ) -> Kube {
        Kube {
            kubectl: kubectl.to_string(),
            context,
            place,
            timeout,
            boot: crate::util::random_hex(4),
            pods: Arc::default(),
        }
    }

    /// `kubectl [--context C] --namespace N` and `args`.
    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![self.kubectl.clone()];
        if let Some(c) = &self.context {
            v.extend(["--context".into(), c.clone()]);
        }
        v.extend(["--namespace".into(), self.place.namespace.clone()]);
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn call(&self, argv: &[String], input: Input<'_>, timeout: Duration) -> Result<Output> {
        let started = std::time::Instant::now();
        let out = Run::new(argv)
            .input(input)
            .timeout(timeout)
            .run()
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        crate::metrics::engine_call(
            argv.iter()
                .skip_while(|a| a.starts_with("--") || *a == &self.kubectl)
                .nth(2)
                .map(String::as_str)
                .unwrap_or(""),
            started.elapsed(),
        );
        if out.timed_out {
            return Err(EngineError::Unavailable(format!(
                "kubectl timed out after {}s",
                timeout.as_secs()
            )));
        }
        Ok(out)
    }

    fn ok(&self, args: &[&str]) -> Result<Output> {
        self.ok_input(args, Input::None)
    }

    fn ok_input(&self, args: &[&str], input: Input<'_>) -> Result<Output> {
        let argv = self.argv(args);
        let out = self.call(&argv, input, self.timeout)?;
        if out.ok() {
            Ok(out)
        } else {
            Err(classify(argv, out.status, &out.stderr_str()))
        }
    }

    /// `kubectl apply -f -` of one object, the document on stdin.
    fn apply(&self, doc: &Value) -> Result<()> {
        let bytes = serde_json::to_vec(doc).unwrap_or_default();
        self.ok_input(&["apply", "-f", "-"], Input::Bytes(&bytes))
            .map(drop)
    }

    fn delete(&self, kind: &str, name: &str, extra: &[&str]) -> Result<()> {
        let mut args = vec!["delete", kind, name, "--ignore-not-found"];
        args.extend_from_slice(extra);
        self.ok(&args).map(drop)
    }

    /// The daemon's namespace, made when missing.
    pub fn prepare(&self) -> Result<()> {
        let mut labels = serde_json::Map::new();
        labels.insert("app.kubernetes.io/managed-by".into(), "dejimad".into());
        for (k, v) in &self.place.labels {
            labels.insert(k.clone(), Value::String(v.clone()));
        }
        let ns = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": self.place.namespace, "labels": labels },
        });
        match self.ok(&["get", "namespace", &self.place.namespace, "-o", "name"]) {
            Ok(_) => Ok(()),
            Err(EngineError::NotFound(_)) => self.apply(&ns),
            Err(e) => Err(e),
        }
    }

    fn get_pod(&self, island: &str) -> Result<Value> {
        let out = self.ok(&["get", "pod", &pod_name(island), "-o", "json"])?;
        serde_json::from_slice(&out.stdout).map_err(|e| EngineError::Failed {
            argv: self.argv(&["get", "pod"]),
            status: out.status,
            stderr: format!("unreadable pod: {e}"),
        })
    }

    /// `kubectl exec [-i|-it] POD -c island -- sh -c AS_USER ...`.
    fn exec_argv(&self, island: &str, mode: &[&str], how: &As<'_>, argv: &[String]) -> Vec<String> {
        let pod = pod_name(island);
        let mut args = vec!["exec"];
        args.extend_from_slice(mode);
        args.extend([
            pod.as_str(),
            "-c",
            "island",
            "--",
            "sh",
            "-c",
            AS_USER,
            "sh",
            how.user,
            how.workdir,
            how.mark,
            how.env_file,
            if how.spool { "1" } else { "" },
        ]);
        let mut v = self.argv(&args);
        v.extend(argv.iter().cloned());
        v
    }

    /// `sh -c SCRIPT sh ARG` in the island as `user`: the daemon's own helper scripts.
    fn script_argv(
        &self,
        island: &str,
        mode: &[&str],
        user: &str,
        script: &str,
        arg: &str,
    ) -> Vec<String> {
        let argv = ["sh", "-c", script, "sh", arg].map(String::from);
        self.exec_argv(island, mode, &As::user(user), &argv)
    }

    /// Write an exec's environment into the island (root-only, on stdin: never an argv).
    fn put_env(&self, island: &str, env: &[(String, String)]) -> Result<String> {
        let mut text = String::new();
        for (k, v) in env {
            text.push_str(&format!("{k}={v}\n"));
        }
        let path = format!("{ENV_DIR}/{}", crate::util::random_hex(8));
        let script = format!("umask 077; mkdir -p {ENV_DIR}; cat > \"$1\"");
        let pod = pod_name(island);
        self.ok_input(
            &[
                "exec", "-i", &pod, "-c", "island", "--", "sh", "-c", &script, "sh", &path,
            ],
            Input::Bytes(text.as_bytes()),
        )?;
        Ok(path)
    }

    fn kill_marked(&self, island: &str, user: &str, mark: &str) {
        let argv = self.script_argv(island, &[], user, super::KILL_MARKED, mark);
        if let Err(e) = self.call(&argv, Input::None, Duration::from_secs(15)) {
            log::warn!("cannot kill timed-out exec {mark} in {island}: {e}");
        }
    }

    /// The island's two folders as one tar (owners and modes kept): `run/` and `secrets/`.
    fn files_tar(&self, run_dir: Option<&Path>, secrets_dir: Option<&Path>) -> Result<Vec<u8>> {
        let mut argv = vec![
            "tar".to_string(),
            "-c".into(),
            "--numeric-owner".into(),
            "-f".into(),
            "-".into(),
        ];
        for (dir, want) in [(run_dir, "run"), (secrets_dir, "secrets")] {
            let Some(dir) = dir else { continue };
            let parent = dir.parent().unwrap_or(Path::new("/"));
            let base = dir
                .file_name()
                .map(|b| b.to_string_lossy().into_owned())
                .unwrap_or_default();
            if base != want {
                return Err(EngineError::Failed {
                    argv: vec!["tar".into()],
                    status: None,
                    stderr: format!("{} is not a {want} folder", dir.display()),
                });
            }
            argv.extend(["-C".into(), parent.display().to_string(), base]);
        }
        let out = Run::new(&argv)
            .timeout(Duration::from_secs(60))
            .run()
            .map_err(|e| EngineError::Unavailable(e.to_string()))?;
        // Sockets (the island's own listener) are skipped with a warning, not an error.
        if !out.ok() {
            return Err(EngineError::Failed {
                argv,
                status: out.status,
                stderr: out.stderr_str(),
            });
        }
        Ok(out.stdout)
    }

    /// Run a helper pod to completion: its output and exit status. Removed afterwards.
    fn run_helper(
        &self,
        island: &str,
        image: &str,
        claims: &[(&str, &str, bool)],
        uid: Option<u32>,
        argv: &[&str],
        timeout: Duration,
    ) -> Result<Output> {
        let name = format!("{}-h{}", pod_name(island), crate::util::random_hex(3));
        let doc = helper_pod(island, &name, image, claims, uid, argv, &self.place);
        self.apply(&doc)?;
        let deadline = std::time::Instant::now() + timeout;
        let result = (|| loop {
            let out = self.ok(&[
                "get",
                "pod",
                &name,
                "-o",
                "jsonpath={.status.phase} {.status.containerStatuses[0].state.terminated.exitCode}",
            ])?;
            let text = out.stdout_str();
            let mut f = text.split_whitespace();
            match (f.next(), f.next()) {
                (Some("Succeeded" | "Failed"), code) => {
                    let logs =
                        self.call(&self.argv(&["logs", &name]), Input::None, self.timeout)?;
                    return Ok(Output {
                        status: Some(code.and_then(|c| c.parse().ok()).unwrap_or(1)),
                        stdout: logs.stdout,
                        stderr: logs.stderr,
                        timed_out: false,
                        truncated: false,
                    });
                }
                _ if std::time::Instant::now() > deadline => {
                    return Err(EngineError::Unavailable(format!(
                        "helper pod {name} did not finish within {}s",
                        timeout.as_secs()
                    )))
                }
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        })();
        let _ = self.delete("pod", &name, &["--wait=false"]);
        result
    }

    /// Wait on the island's pod as the watch sees it (the apiserver's, once a second, when the
    /// watch is down) until `decide` has an answer, or the engine timeout.
    fn wait_pod<T>(
        &self,
        island: &str,
        what: &str,
        decide: impl Fn(Option<&Value>) -> Option<Result<T>>,
    ) -> Result<T> {
        let deadline = std::time::Instant::now() + self.timeout;
        let mut map = lock(&self.pods.map);
        loop {
            if !self.pods.live.load(Ordering::Relaxed) {
                drop(map);
                let pod = match self.get_pod(island) {
                    Ok(p) => Some(p),
                    Err(EngineError::NotFound(_)) => None,
                    Err(e) => return Err(e),
                };
                if let Some(r) = decide(pod.as_ref()) {
                    return r;
                }
                std::thread::sleep(Duration::from_secs(1));
                map = lock(&self.pods.map);
            } else if let Some(r) = decide(map.get(island)) {
                return r;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(EngineError::Unavailable(format!(
                    "the island's pod did not {what} within {}s",
                    self.timeout.as_secs()
                )));
            }
            map = self
                .pods
                .changed
                .wait_timeout(map, left.min(Duration::from_secs(1)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wait for a terminating pod to be gone: true when it went, false when the pod there is
    /// not going.
    fn wait_gone(&self, island: &str) -> Result<bool> {
        let going = self.wait_pod(island, "go", |p| match p {
            None => Some(Ok(true)),
            Some(p) if p["metadata"]["deletionTimestamp"].is_null() => Some(Ok(false)),
            Some(_) => None,
        })?;
        // The watch may not have seen it at all yet: the apiserver has the last word.
        match self.get_pod(island) {
            Err(EngineError::NotFound(_)) => Ok(true),
            Ok(p) if going && !p["metadata"]["deletionTimestamp"].is_null() => {
                self.wait_gone(island)
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Wait until the island's pod (the one with `uid`, not an earlier one the watch may still
    /// show) runs, or say why it cannot.
    fn wait_running(&self, island: &str, uid: &str) -> Result<()> {
        let failed = |why: String| EngineError::Failed {
            argv: self.argv(&["get", "pod"]),
            status: None,
            stderr: why,
        };
        self.wait_pod(island, "start", |pod| {
            let pod = pod.filter(|p| uid.is_empty() || p["metadata"]["uid"] == uid)?;
            let obs = pod_state(pod);
            if obs.state == ContainerState::Running {
                return Some(Ok(()));
            }
            if obs.state == ContainerState::Exited && pod["status"]["phase"] != "Pending" {
                return Some(Err(failed(format!(
                    "the island's pod ended at start (exit {})",
                    obs.exit_code
                ))));
            }
            stuck(pod).map(|why| Err(failed(why)))
        })
    }

    /// Every island pod of the namespace, whole.
    fn list_pods(&self) -> Result<Vec<(String, Value)>> {
        let sel = format!("{ISLAND_LABEL},!{HELPER_LABEL}");
        let out = self.ok(&["get", "pods", "-l", &sel, "-o", "json"])?;
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        Ok(v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| island_of(p).map(|(i, p)| (i, p.clone())))
            .collect())
    }
}

/// A pod that will not start by waiting: why (image missing, bad config, unschedulable).
fn stuck(pod: &Value) -> Option<String> {
    let statuses = pod["status"]["initContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            pod["status"]["containerStatuses"]
                .as_array()
                .into_iter()
                .flatten(),
        );
    for c in statuses {
        let w = &c["state"]["waiting"];
        let reason = w["reason"].as_str().unwrap_or("");
        if matches!(
            reason,
            "ErrImageNeverPull"
                | "ImagePullBackOff"
                | "ErrImagePull"
                | "InvalidImageName"
                | "CreateContainerConfigError"
                | "CreateContainerError"
                | "RunContainerError"
        ) {
            return Some(format!("{reason}: {}", w["message"].as_str().unwrap_or("")));
        }
    }
    None
}

/// What a pod says of the island: running, ended (with its exit), or only just made.
pub fn pod_state(pod: &Value) -> ContainerObs {
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    let main = pod["status"]["containerStatuses"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "island"));
    let term = main
        .map(|c| &c["state"]["terminated"])
        .filter(|t| t.is_object());
    let running = main.is_some_and(|c| c["state"]["running"].is_object());
    // A pod being deleted is on its way out, whatever still runs in it.
    let going = !pod["metadata"]["deletionTimestamp"].is_null();
    let state = match phase {
        "Running" if running && !going => ContainerState::Running,
        "Running" | "Pending" | "Succeeded" | "Failed" => ContainerState::Exited,
        _ => ContainerState::Errored,
    };
    ContainerObs {
        state,
        exit_code: term.and_then(|t| t["exitCode"].as_i64()).unwrap_or(0),
        oom_killed: term.is_some_and(|t| t["reason"] == "OOMKilled"),
    }
}

/// A Kubernetes quantity (`2Gi`, `512M`, `1073741824`) in bytes.
fn quantity(q: &str) -> u64 {
    let q = q.trim();
    let (num, mult): (&str, u64) = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ]
    .iter()
    .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
    .unwrap_or((q, 1));
    num.parse::<f64>()
        .map(|n| (n * mult as f64) as u64)
        .unwrap_or(0)
}

/// Sort a failed kubectl call: unreachable, a missing object, or a refusal kept whole.
pub fn classify(argv: Vec<String>, status: Option<i32>, err: &str) -> EngineError {
    let e = err.trim();
    let lower = e.to_ascii_lowercase();
    if status.is_none()
        || lower.contains("unable to connect to the server")
        || lower.contains("the connection to the server")
        || lower.contains("connection refused")
    {
        EngineError::Unavailable(if e.is_empty() {
            "kubectl ended on a signal".into()
        } else {
            e.to_string()
        })
    } else if lower.contains("(notfound)")
        || lower.contains("not found") && lower.starts_with("error from server")
    {
        EngineError::NotFound(e.to_string())
    } else {
        EngineError::refused(argv, status, e)
    }
}

/// kubectl's own word on an exec (the pod or its container is not there, the API refused):
/// not the command's output.
fn exec_refused(err: &str) -> bool {
    err.starts_with("Error from server")
        || err.starts_with("error: unable to upgrade connection")
        || err.starts_with("error: Internal error occurred")
        || err.contains("Unable to connect to the server")
        || err.starts_with("error: cannot exec into a container")
}

impl Runtime for Kube {
    fn kind(&self) -> &'static str {
        "kubernetes"
    }

    fn unsupported(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            (super::feature::LIVE_MEMORY, "a running pod's memory limit cannot change; hibernate and wake the island after PUT resources"),
            (super::feature::OOM_PRIORITY, "Kubernetes has no per-pod OOM score; priorities follow the pod's QoS class"),
            (super::feature::PAUSE, "pods cannot be paused: a clone copies a running source's volumes as they change (hibernate it first for a consistent copy)"),
            (super::feature::STATS, "no memory/CPU figures (the metrics API is not read)"),
        ]
    }

    fn mark(&self) -> String {
        format!("{}.{}", self.boot, crate::util::random_hex(6))
    }

    fn sweep_strays(&self, island: &str, user: &str) -> Result<usize> {
        let argv = self.script_argv(island, &[], user, super::SWEEP_STRAYS, &self.boot);
        let out = self.call(&argv, Input::None, Duration::from_secs(30))?;
        if !out.ok() {
            return Err(classify(argv, out.status, &out.stderr_str()));
        }
        Ok(out.stdout_str().trim().parse().unwrap_or(0))
    }

    fn ping(&self) -> Result<()> {
        self.ok(&["get", "namespace", &self.place.namespace, "-o", "name"])
            .map(drop)
    }

    /// No network of its own: the island's NetworkPolicy keeps other pods out.
    fn create_network(&self, island: &str, _subnet: &str) -> Result<()> {
        self.apply(&network_policy(island, &self.place))
    }

    fn network_subnet(&self, _island: &str) -> Result<String> {
        Ok(String::new())
    }

    fn remove_network(&self, island: &str) -> Result<()> {
        self.delete("networkpolicy", &pod_name(island), &[])
    }

    /// A claim named as the Docker runtime names the volume (`dejima-<island>-<kind>`).
    fn create_volume(&self, island: &str, volume: &str) -> Result<()> {
        let kind = volume
            .strip_prefix(&format!("dejima-{island}-"))
            .unwrap_or(volume);
        self.apply(&claim(island, kind, &self.place))
    }

    /// Waits until the claim is gone (a reset makes one of the same name next).
    fn remove_volume(&self, volume: &str) -> Result<()> {
        self.delete("pvc", volume, &["--wait=true"])
    }

    /// The seed Secret, then the pod; returns once the island runs.
    fn run_container(&self, spec: &ContainerSpec) -> Result<()> {
        let tar = self.files_tar(spec.run_dir.as_deref(), spec.secrets_dir.as_deref())?;
        // One apply for both (each kubectl call is a process and a round trip).
        self.apply(&json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                secret(&spec.island, &tar, &self.place),
                network_policy(&spec.island, &self.place),
            ],
        }))?;
        let doc = pod(spec, &self.place);
        let bytes = serde_json::to_vec(&doc).unwrap_or_default();
        let create = || {
            self.ok_input(
                &["create", "-f", "-", "-o", "jsonpath={.metadata.uid}"],
                Input::Bytes(&bytes),
            )
        };
        let made = match create() {
            Err(EngineError::Failed { stderr, .. }) if stderr.contains("AlreadyExists") => {
                // A hibernate returns before its pod is gone; a wake right after waits here.
                if !self.wait_gone(&spec.island)? {
                    return Err(EngineError::Failed {
                        argv: self.argv(&["create", "pod"]),
                        status: None,
                        stderr: format!("the island's pod is already in use: {stderr}"),
                    });
                }
                create()?
            }
            r => r?,
        };
        let r = self.wait_running(&spec.island, made.stdout_str().trim());
        if r.is_err() {
            let _ = self.remove_container(&spec.island);
        }
        r
    }

    /// A pod is never restarted: a running one is left, a finished one removed, and a missing
    /// one is NotFound, so the caller makes it anew (`run_container`).
    fn start(&self, island: &str) -> Result<()> {
        let pod = self.get_pod(island)?;
        if pod_state(&pod).state == ContainerState::Running {
            return Ok(());
        }
        self.remove_container(island)?;
        Err(EngineError::NotFound(format!(
            "pod {} ended; it is made anew",
            pod_name(island)
        )))
    }

    /// Hibernate: the pod goes (the call returns once it is terminating; the watch reports it
    /// gone), its claims stay.
    fn stop(&self, island: &str, grace_secs: u32) -> Result<()> {
        let grace = format!("--grace-period={}", grace_secs.max(1));
        self.delete("pod", &pod_name(island), &[&grace, "--wait=false"])
    }

    fn remove_container(&self, island: &str) -> Result<()> {
        self.delete(
            "pod",
            &pod_name(island),
            &["--grace-period=1", "--wait=true"],
        )?;
        self.delete("secret", &secret_name(island), &[])
    }

    fn pause(&self, _island: &str) -> Result<()> {
        Err(EngineError::Failed {
            argv: Vec::new(),
            status: None,
            stderr: "pods cannot be paused".into(),
        })
    }

    fn unpause(&self, _island: &str) -> Result<()> {
        Ok(())
    }

    fn update_memory(&self, _island: &str, _bytes: u64) -> Result<()> {
        Err(EngineError::Failed {
            argv: Vec::new(),
            status: None,
            stderr: "on Kubernetes a running pod's memory limit cannot change; hibernate and wake the island to apply it".into(),
        })
    }

    fn inspect(&self, island: &str) -> Result<Inspect> {
        let pod = self.get_pod(island)?;
        let obs = pod_state(&pod);
        let main = pod["status"]["containerStatuses"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == "island"))
            .cloned()
            .unwrap_or_default();
        Ok(Inspect {
            status: obs.state,
            exit_code: obs.exit_code,
            oom_killed: obs.oom_killed,
            restart_count: main["restartCount"].as_i64().unwrap_or(0),
            memory_limit: pod["spec"]["containers"][0]["resources"]["limits"]["memory"]
                .as_str()
                .map(quantity)
                .unwrap_or(0),
        })
    }

    fn exec(&self, island: &str, opts: &ExecOpts, input: Input<'_>) -> Result<Output> {
        let mark = self.mark();
        let env_file = if opts.env.is_empty() {
            String::new()
        } else {
            self.put_env(island, &opts.env)?
        };
        let stdin = !matches!(input, Input::None);
        let argv = self.exec_argv(
            island,
            if stdin { &["-i"] } else { &[] },
            &As {
                user: &opts.user,
                workdir: &opts.workdir,
                mark: &mark,
                env_file: &env_file,
                spool: true,
            },
            &opts.argv,
        );
        let started = std::time::Instant::now();
        // Room for the command's two streams, which arrive on one.
        let cap = opts.cap.saturating_mul(2);
        let run = |argv: &[String], input: Input<'_>, timeout: Duration| {
            Run::new(argv)
                .input(input)
                .timeout(timeout)
                .cap(cap)
                .run()
                .map_err(|e| EngineError::Unavailable(e.to_string()))
        };
        let mut out = run(&argv, input, opts.timeout)?;
        crate::metrics::engine_call("exec", started.elapsed());
        if out.timed_out {
            self.kill_marked(island, &opts.user, &mark);
            return Ok(out);
        }
        if unspool(&mut out) {
            return Ok(out);
        }
        if out.status == Some(0) && !out.truncated {
            // kubectl lost the end of the output: read the spool again.
            for _ in 0..3 {
                let left = opts.timeout.saturating_sub(started.elapsed());
                let again = self.script_argv(island, &[], "root", REREAD, &mark);
                let mut out = run(&again, Input::None, left.max(Duration::from_secs(5)))?;
                if unspool(&mut out) {
                    return Ok(out);
                }
            }
            return Err(EngineError::Unavailable(
                "kubectl lost the command's output three times over; try again".into(),
            ));
        }
        // No trailer: the wrapper itself failed (the folder, the user), or kubectl did.
        if let Some(code) = out.status.filter(|c| *c != 0) {
            let tail = format!("command terminated with exit code {code}\n");
            if out.stderr.ends_with(tail.as_bytes()) {
                let n = out.stderr.len() - tail.len();
                out.stderr.truncate(n);
            } else if exec_refused(&out.stderr_str()) {
                return Err(classify(argv, out.status, &out.stderr_str()));
            }
        }
        Ok(out)
    }

    fn tty_exec_argv(
        &self,
        island: &str,
        user: &str,
        env: &[(&str, &str)],
        argv: &[String],
    ) -> Vec<String> {
        self.exec_argv(island, &["-i", "-t"], &As::user(user), &with_env(env, argv))
    }

    fn pipe_exec_argv(
        &self,
        island: &str,
        user: &str,
        env: &[(&str, &str)],
        argv: &[&str],
    ) -> Vec<String> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        self.exec_argv(island, &["-i"], &As::user(user), &with_env(env, &argv))
    }

    fn exec_stream(&self, island: &str, opts: &ExecOpts) -> Result<process::Stream> {
        debug_assert!(opts.env.is_empty());
        let argv = self.exec_argv(
            island,
            &[],
            &As {
                user: &opts.user,
                workdir: &opts.workdir,
                ..As::default()
            },
            &opts.argv,
        );
        process::spawn_stream(&argv, true).map_err(|e| EngineError::Unavailable(e.to_string()))
    }

    /// A host folder's contents into the island, as a tar over the exec's stdin.
    fn copy_in(&self, island: &str, src: &Path, dst: &str) -> Result<()> {
        let put = self.exec_argv(
            island,
            &["-i"],
            &As::user("root"),
            &[
                "tar".into(),
                "-x".into(),
                "--no-same-owner".into(),
                "-C".into(),
                dst.into(),
                "-f".into(),
                "-".into(),
            ],
        );
        let mut argv: Vec<String> = [
            "sh",
            "-c",
            "tar -C \"$1\" -cf - . | { shift; \"$@\"; }",
            "sh",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        argv.push(src.display().to_string());
        argv.extend(put);
        let out = self.call(&argv, Input::None, Duration::from_secs(600))?;
        if out.ok() {
            Ok(())
        } else {
            Err(classify(argv, out.status, &out.stderr_str()))
        }
    }

    /// A helper pod mounts the source claim read-only and the new one, and copies.
    fn copy_volume(&self, island: &str, src: &str, dst: &str, image: &str) -> Result<()> {
        let out = self.run_helper(
            island,
            image,
            &[(src, "/from", true), (dst, "/to", false)],
            None,
            &["cp", "-a", "/from/.", "/to/"],
            Duration::from_secs(1800),
        )?;
        if out.ok() {
            Ok(())
        } else {
            Err(EngineError::Failed {
                argv: vec!["cp".into()],
                status: out.status,
                stderr: format!(
                    "copying {src} to {dst} failed: {}{}",
                    out.stdout_str(),
                    out.stderr_str()
                ),
            })
        }
    }

    fn run_on_volumes(&self, island: &str, image: &str, script: &str) -> Result<Output> {
        let ws = super::workspace_volume(island);
        self.run_helper(
            island,
            image,
            &[(&ws, WORKSPACE, true)],
            Some(1000),
            &["sh", "-c", script],
            self.timeout,
        )
    }

    /// Whether a node holds the image (pods take it from the node: `imagePullPolicy`).
    fn image_present(&self, image: &str) -> Result<bool> {
        let out = self.ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={.items[*].status.images[*].names}",
        ])?;
        let text = out.stdout_str();
        let want = [
            image.to_string(),
            format!("docker.io/{image}"),
            format!("docker.io/library/{image}"),
        ];
        Ok(text
            .split(|c: char| c.is_whitespace() || c == '[' || c == ']' || c == ',' || c == '"')
            .any(|n| want.iter().any(|w| w == n)))
    }

    fn logs(&self, island: &str, follow: bool, tail: &str) -> Result<process::Stream> {
        let tail = format!("--tail={}", if tail == "all" { "-1" } else { tail });
        let pod = pod_name(island);
        let mut args = vec!["logs", &tail, "-c", "island"];
        if follow {
            args.push("--follow");
        }
        args.push(&pod);
        let sh: Vec<String> = ["sh", "-c", "exec \"$@\" 2>&1", "sh"]
            .iter()
            .map(|s| s.to_string())
            .chain(self.argv(&args))
            .collect();
        process::spawn_stream(&sh, true).map_err(|e| EngineError::Unavailable(e.to_string()))
    }

    fn list_islands(&self) -> Result<Vec<(String, String)>> {
        Ok(self
            .list_pods()?
            .into_iter()
            .map(|(island, pod)| (island, state_word(&pod).to_string()))
            .collect())
    }

    fn relays_socket(&self) -> bool {
        true
    }

    /// OpenSSH relays the socket: `ssh -N -R` to the island's own sshd (started per relay
    /// through `kubectl exec -i`, as the SSH route does) binds it in the pod, as the agent, and
    /// sends each connection back over that one exec to the host socket, where the island's
    /// token rules apply as on Docker. The daemon's relay key may only forward.
    fn socket_relay(&self, island: &str, r: &Relay<'_>) -> Option<Vec<String>> {
        let sshd = self.exec_argv(
            island,
            &["-i"],
            &As::user("root"),
            &[
                "/usr/sbin/sshd".into(),
                "-i".into(),
                "-e".into(),
                "-f".into(),
                "/etc/ssh/dejima_sshd_config".into(),
                "-o".into(),
                "LogLevel=ERROR".into(),
                // A socket left by an earlier relay of this pod is replaced.
                "-o".into(),
                "StreamLocalBindUnlink=yes".into(),
            ],
        );
        let script = format!("#!/bin/sh\nexec {}\n", process::shell_words(&sshd));
        if let Err(e) = crate::store::atomic_write_mode(r.proxy_script, script.as_bytes(), 0o700) {
            log::warn!("island {island}: cannot write its relay's proxy command: {e}");
            return None;
        }
        let alias = pod_name(island);
        let mut argv: Vec<String> = ["ssh", "-N", "-T", "-F", "/dev/null"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (k, v) in [
            ("BatchMode", "yes".to_string()),
            ("StrictHostKeyChecking", "yes".into()),
            ("UserKnownHostsFile", r.known_hosts.display().to_string()),
            ("HostKeyAlias", alias.clone()),
            ("IdentitiesOnly", "yes".into()),
            ("IdentityFile", r.key.display().to_string()),
            ("ProxyCommand", r.proxy_script.display().to_string()),
            ("ExitOnForwardFailure", "yes".into()),
            ("ServerAliveInterval", "15".into()),
            ("ServerAliveCountMax", "3".into()),
            ("LogLevel", "ERROR".into()),
        ] {
            argv.extend(["-o".to_string(), format!("{k}={v}")]);
        }
        argv.extend([
            "-R".into(),
            format!("{RELAY_DIR}/dejimad.sock:{}", r.host_socket.display()),
            "-l".into(),
            super::AGENT_USER.into(),
            alias,
        ]);
        Some(argv)
    }

    fn sync_files(&self, island: &str, run_dir: &Path, secrets_dir: &Path) -> Result<()> {
        let tar = self.files_tar(Some(run_dir), Some(secrets_dir))?;
        self.apply(&secret(island, &tar, &self.place))?;
        let argv = self.script_argv(island, &["-i"], "root", UNPACK, "-");
        let out = self.call(&argv, Input::Bytes(&tar), self.timeout)?;
        if out.ok() {
            Ok(())
        } else {
            Err(classify(argv, out.status, &out.stderr_str()))
        }
    }
}

/// A pod's state in the Docker runtime's words (`Observed::replace_all` reads them).
fn state_word(pod: &Value) -> &'static str {
    match pod_state(pod).state {
        ContainerState::Running => "running",
        ContainerState::Exited => "exited",
        _ => "unknown",
    }
}

/// `env K=V ... argv`: the marks and terminal type an interactive exec carries (never a
/// secret: those go through `Kube::put_env`).
fn with_env(env: &[(&str, &str)], argv: &[String]) -> Vec<String> {
    std::iter::once("env".to_string())
        .chain(env.iter().map(|(k, v)| format!("{k}={v}")))
        .chain(argv.iter().cloned())
        .collect()
}

/// An island pod's island (helpers and strangers are left out).
fn island_of(pod: &Value) -> Option<(String, &Value)> {
    let island = pod["metadata"]["labels"][ISLAND_LABEL].as_str()?;
    (pod["metadata"]["name"].as_str() == Some(pod_name(island).as_str()))
        .then(|| (island.to_string(), pod))
}

/// Follow the namespace's island pods through one long-running
/// `kubectl get pods --watch -o json`; on every (re)start, relist so no change is missed.
pub fn watch(kube: Kube, observed: Arc<Observed>) -> std::io::Result<()> {
    thread::Builder::new()
        .name("kube-pods".into())
        .spawn(move || {
            let mut backoff = Duration::from_millis(250);
            loop {
                let sel = format!("{ISLAND_LABEL},!{HELPER_LABEL}");
                let argv = kube.argv(&[
                    "get",
                    "pods",
                    "-l",
                    &sel,
                    "--watch",
                    "--output-watch-events",
                    "-o",
                    "json",
                ]);
                let started = std::time::Instant::now();
                match process::spawn_stream(&argv, true) {
                    Ok(mut child) => {
                        match kube.list_pods() {
                            Ok(pods) => {
                                observed.replace_all(
                                    pods.iter()
                                        .map(|(i, p)| (i.clone(), state_word(p).to_string()))
                                        .collect(),
                                );
                                kube.pods.replace(pods);
                                kube.pods.live.store(true, Ordering::Relaxed);
                                observed.set_reachable(true);
                                backoff = Duration::from_millis(250);
                            }
                            Err(e) => {
                                observed.set_reachable(false);
                                log::warn!("cluster unreachable: {e}");
                            }
                        }
                        if let Some(out) = child.stdout.take() {
                            let events =
                                serde_json::Deserializer::from_reader(std::io::BufReader::new(out))
                                    .into_iter::<Value>();
                            for ev in events {
                                let Ok(ev) = ev else { break };
                                let Some((island, pod)) = island_of(&ev["object"]) else {
                                    continue;
                                };
                                let gone = ev["type"] == "DELETED";
                                let now = (!gone).then(|| pod_state(pod));
                                kube.pods.put(&island, (!gone).then(|| pod.clone()));
                                observed.apply_observation(&island, now);
                            }
                        }
                        let code = child.wait();
                        if started.elapsed() > Duration::from_secs(30) {
                            backoff = Duration::from_millis(250);
                        }
                        log::info!("kubectl watch ended ({code:?}): {}", child.stderr());
                    }
                    Err(e) => log::warn!("cannot start kubectl watch: {e}"),
                }
                kube.pods.live.store(false, Ordering::Relaxed);
                observed.set_reachable(false);
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            island: "alpha".into(),
            image: "dejima/island:latest".into(),
            memory: Some(2 << 30),
            cpus: "1.5".into(),
            disk: "5G".into(),
            secrets_dir: Some("/x/secrets".into()),
            ..Default::default()
        }
    }

    #[test]
    fn an_island_pod_holds_no_credential_of_the_cluster_and_no_host_path() {
        let p = Placement {
            labels: vec![("dejima.test".into(), "1".into())],
            ..Default::default()
        };
        let pod = pod(&spec(), &p);
        assert_eq!(pod["kind"], "Pod");
        assert_eq!(pod["metadata"]["name"], "dejima-alpha");
        assert_eq!(pod["metadata"]["namespace"], "dejima");
        assert_eq!(pod["metadata"]["labels"][ISLAND_LABEL], "alpha");
        assert_eq!(pod["metadata"]["labels"]["dejima.test"], "1");
        assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert!(!pod.to_string().contains("hostPath"));
        let c = &pod["spec"]["containers"][0];
        assert_eq!(c["resources"]["limits"]["memory"], (2u64 << 30).to_string());
        assert_eq!(c["resources"]["limits"]["cpu"], "1.5");
        assert_eq!(c["resources"]["limits"]["ephemeral-storage"], "5G");
        // The secrets live in memory, seeded from the Secret by the init container.
        let secrets = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == SECRETS_MOUNT)
            .unwrap();
        let vol = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == secrets["name"])
            .unwrap();
        assert_eq!(vol["emptyDir"]["medium"], "Memory");
        let seeds = pod["spec"]["initContainers"][0]["volumeMounts"]
            .as_array()
            .unwrap();
        assert!(seeds.iter().any(|m| m["mountPath"] == "/seed"));
        assert!(seeds.iter().any(|m| m["mountPath"] == RELAY_DIR));
        assert_eq!(pod["spec"]["shareProcessNamespace"], true);
        let claims: Vec<&str> = pod["spec"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .collect();
        assert_eq!(claims, ["dejima-alpha-workspace", "dejima-alpha-home"]);
    }

    #[test]
    fn claims_secrets_and_policy() {
        let p = Placement {
            storage_class: Some("fast".into()),
            ..Default::default()
        };
        let c = claim("alpha", "home", &p);
        assert_eq!(c["metadata"]["name"], "dejima-alpha-home");
        assert_eq!(c["spec"]["storageClassName"], "fast");
        assert!(claim("alpha", "home", &Placement::default())["spec"]
            .get("storageClassName")
            .is_none());
        let s = secret("alpha", b"s3cret", &p);
        assert_eq!(s["data"]["files.tar"], "czNjcmV0");
        assert!(!s.to_string().contains("s3cret"));
        let np = network_policy("alpha", &p);
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"][ISLAND_LABEL],
            "alpha"
        );
        assert_eq!(np["spec"]["ingress"], json!([]));
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    }

    #[test]
    fn spooled_output_splits_back_and_a_lost_tail_shows() {
        let mut o = Output {
            status: Some(0),
            stdout: b"out\nmore\x1eerr\n\x1edejima 3 9 4\n".to_vec(),
            ..Default::default()
        };
        assert!(unspool(&mut o));
        assert_eq!(o.stdout, b"out\nmore\x1e");
        assert_eq!(o.stderr, b"err\n");
        assert_eq!(o.status, Some(3));
        for cut in [
            &b"out\nmore"[..],
            b"out\x1edejima 0 3 0",
            b"out\x1edejima 0 9 0\n",
            b"",
        ] {
            let mut o = Output {
                status: Some(0),
                stdout: cut.to_vec(),
                ..Default::default()
            };
            assert!(!unspool(&mut o), "{cut:?}");
        }
    }

    #[test]
    fn pod_states_and_quantities() {
        let running = json!({"status": {"phase": "Running", "containerStatuses": [
            {"name": "island", "state": {"running": {}}}]}});
        assert_eq!(pod_state(&running).state, ContainerState::Running);
        let mut going = running.clone();
        going["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(pod_state(&going).state, ContainerState::Exited);
        let oom = json!({"status": {"phase": "Failed", "containerStatuses": [
            {"name": "island", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]}});
        let o = pod_state(&oom);
        assert_eq!(
            (o.state, o.exit_code, o.oom_killed),
            (ContainerState::Exited, 137, true)
        );
        assert_eq!(
            pod_state(&json!({"status": {"phase": "Pending"}})).state,
            ContainerState::Exited
        );
        assert_eq!(
            pod_state(&json!({"status": {"phase": "Unknown"}})).state,
            ContainerState::Errored
        );
        assert_eq!(quantity("2Gi"), 2 << 30);
        assert_eq!(quantity("734003200"), 734003200);
        assert_eq!(quantity("512M"), 512_000_000);
        let stuck_pod = json!({"status": {"phase": "Pending", "containerStatuses": [
            {"name": "island", "state": {"waiting": {"reason": "ErrImageNeverPull", "message": "no image"}}}]}});
        assert!(stuck(&stuck_pod).unwrap().contains("ErrImageNeverPull"));
    }

    #[test]
    fn classifies_kubectl_errors() {
        let nf = classify(
            vec![],
            Some(1),
            "Error from server (NotFound): pods \"dejima-x\" not found",
        );
        assert!(matches!(nf, EngineError::NotFound(_)));
        let down = classify(vec![], Some(1), "The connection to the server 127.0.0.1:16443 was refused - did you specify the right host or port?");
        assert!(matches!(down, EngineError::Unavailable(_)));
        let other = classify(
            vec![],
            Some(1),
            "Error from server (Forbidden): pods is forbidden",
        );
        assert!(matches!(other, EngineError::Failed { .. }));
    }
}
