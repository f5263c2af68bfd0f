//! A real Kubernetes cluster for the tests and benches (the one `scripts/kube-up` starts), and
//! a daemon on `--runtime kubernetes` in a namespace of its own.

use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{unique, Daemon};

pub struct Cluster {
    pub kubeconfig: String,
    pub kubectl: String,
}

impl Cluster {
    pub fn find() -> Option<Cluster> {
        let kubeconfig = std::env::var("DEJIMA_TEST_KUBECONFIG")
            .unwrap_or_else(|_| "/tmp/dejima-kube/admin.kubeconfig".into());
        let kubectl = std::env::var("DEJIMA_TEST_KUBECTL")
            .unwrap_or_else(|_| "/var/cache/dejima-kube/kubectl/usr/bin/kubectl".into());
        let c = Cluster {
            kubeconfig,
            kubectl,
        };
        let up = std::path::Path::new(&c.kubeconfig).exists()
            && c.run(&["get", "nodes"]).is_ok_and(|o| o.contains(" Ready"));
        if up {
            return Some(c);
        }
        if std::env::var("DEJIMA_TEST_KUBE").as_deref() == Ok("1") {
            panic!(
                "no Kubernetes cluster at {} (run scripts/kube-up)",
                c.kubeconfig
            );
        }
        eprintln!("skipped: no Kubernetes cluster (scripts/kube-up starts one)");
        None
    }

    /// scripts/kube-up's state folder (where the kubeconfig is).
    pub fn root(&self) -> &std::path::Path {
        std::path::Path::new(&self.kubeconfig).parent().unwrap()
    }

    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let o = Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if o.status.success() {
            Ok(String::from_utf8_lossy(&o.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&o.stderr).into_owned())
        }
    }
}

static IMPORTED: std::sync::Mutex<bool> = std::sync::Mutex::new(false);

/// The node itself: shared by every test on it, held alone by one that restarts its kubelet.
static NODE: RwLock<()> = RwLock::new(());

enum NodeGuard {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Alone(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

/// A daemon on `--runtime kubernetes` in a namespace of its own, deleted on drop.
pub struct OnKube {
    pub d: Daemon,
    pub ns: String,
    pub c: Cluster,
    _node: NodeGuard,
}

impl OnKube {
    pub fn start() -> Option<OnKube> {
        let node = NodeGuard::Shared(NODE.read().unwrap_or_else(|e| e.into_inner()));
        Self::start_on(node)
    }

    /// For a test that disturbs the node (restarts its kubelet): no other runs meanwhile.
    pub fn start_alone() -> Option<OnKube> {
        let node = NodeGuard::Alone(NODE.write().unwrap_or_else(|e| e.into_inner()));
        Self::start_on(node)
    }

    fn start_on(node: NodeGuard) -> Option<OnKube> {
        let c = Cluster::find()?;
        let ns = unique("djt");
        let d = Daemon::start_with(
            &["--runtime", "kubernetes", "--namespace", &ns],
            &[
                ("KUBECONFIG", c.kubeconfig.as_str()),
                ("DEJIMA_KUBECTL", c.kubectl.as_str()),
            ],
        );
        // The daemon built the island image on the host's engine: the node gets that build.
        {
            let mut done = IMPORTED.lock().unwrap_or_else(|e| e.into_inner());
            if !*done {
                let out = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kube-up"))
                    .arg("--import-image")
                    .env("KUBE_ROOT", c.root())
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "image import: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                *done = true;
            }
        }
        Some(OnKube {
            d,
            ns,
            c,
            _node: node,
        })
    }

    pub fn k(&self, args: &[&str]) -> Result<String, String> {
        let mut a = vec!["--namespace", self.ns.as_str()];
        a.extend_from_slice(args);
        self.c.run(&a)
    }
}

impl OnKube {
    /// The objects the cluster holds for an island, as `kind/name`.
    pub fn objects(&self, island: &str) -> Vec<String> {
        let sel = format!("dejima.island={island}");
        self.k(&[
            "get",
            "pods,pvc,secrets,networkpolicies",
            "-l",
            &sel,
            "-o",
            "name",
        ])
        .unwrap_or_else(|e| panic!("kubectl get: {e}"))
        .lines()
        .map(str::to_string)
        .collect()
    }
}

impl Drop for OnKube {
    fn drop(&mut self) {
        let _ = self
            .c
            .run(&["delete", "namespace", &self.ns, "--wait=false"]);
    }
}
