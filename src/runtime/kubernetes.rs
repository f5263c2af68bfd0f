//! What an island is on a Kubernetes cluster, as v1 objects (issue 16; docs/scale-out.md has
//! the mapping): a pod, two PVCs, a Secret for its secrets directory, a NetworkPolicy that
//! keeps other pods out. Only v1 kinds, so any current cluster takes them. The objects are
//! JSON documents for `kubectl apply -f -` (on stdin: a Secret's bytes never reach an argv).
//! The runtime that applies and watches them, and the flag that selects it, come next; until
//! then nothing in the daemon calls this module.

use serde_json::{json, Value};

use super::{ContainerSpec, AGENT_HOME, ISLAND_LABEL, SECRETS_MOUNT, WORKSPACE};

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

/// The island's secrets directory as a Secret (the token, bound providers' keys, the GitHub
/// identity), mounted read-only where the Docker runtime bind-mounts the directory.
pub fn secret(island: &str, files: &[(String, Vec<u8>)], p: &Placement) -> Value {
    use base64::Engine as _;
    let data: serde_json::Map<String, Value> = files
        .iter()
        .map(|(name, bytes)| {
            (
                name.clone(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            )
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(&secret_name(island), island, p),
        "data": data,
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

/// The island's pod. It never restarts on its own (the daemon decides, as `--restart no` does
/// on Docker), holds no service-account token and no host path, and finds its state on its
/// claims. A disk cap is the container's ephemeral storage; `oom_score_adj` has no
/// Kubernetes form and is left out.
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
    let mut mounts = vec![
        json!({ "name": "workspace", "mountPath": WORKSPACE }),
        json!({ "name": "home", "mountPath": AGENT_HOME }),
    ];
    let mut volumes = vec![
        json!({ "name": "workspace", "persistentVolumeClaim": { "claimName": claim_name(island, "workspace") } }),
        json!({ "name": "home", "persistentVolumeClaim": { "claimName": claim_name(island, "home") } }),
    ];
    if spec.secrets_dir.is_some() {
        mounts.push(json!({ "name": "secrets", "mountPath": SECRETS_MOUNT, "readOnly": true }));
        volumes.push(json!({
            "name": "secrets",
            "secret": { "secretName": secret_name(island), "defaultMode": 0o440 },
        }));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata(&pod_name(island), island, p),
        "spec": {
            "hostname": island,
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "terminationGracePeriodSeconds": 10,
            "containers": [{
                "name": "island",
                "image": spec.image,
                "imagePullPolicy": p.pull_policy,
                "env": [{ "name": "DEJIMA_ISLAND", "value": island }],
                "resources": { "limits": limits },
                "volumeMounts": mounts,
            }],
            "volumes": volumes,
        },
    })
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
        let secrets = c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == SECRETS_MOUNT)
            .unwrap();
        assert_eq!(secrets["readOnly"], true);
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
        let s = secret("alpha", &[("token".into(), b"s3cret".to_vec())], &p);
        assert_eq!(s["data"]["token"], "czNjcmV0");
        assert!(!s.to_string().contains("s3cret"));
        let np = network_policy("alpha", &p);
        assert_eq!(
            np["spec"]["podSelector"]["matchLabels"][ISLAND_LABEL],
            "alpha"
        );
        assert_eq!(np["spec"]["ingress"], json!([]));
        assert_eq!(np["spec"]["policyTypes"], json!(["Ingress"]));
    }
}
