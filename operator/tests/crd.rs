//! The committed CRD (crds/ and the Helm chart's copy, which its crd.yaml
//! template installs) is exactly what `chat-operator crdgen` prints;
//! regenerate with `cargo run -p chat-operator -- crdgen > crds/replicatedchat.yaml`
//! and copy it to `charts/replicated-chat/files/replicatedchat-crd.yaml`.

use chat_operator::crdgen::crd_yaml;

fn committed(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

#[test]
fn committed_crds_match_the_rust_types() {
    let generated = crd_yaml();
    for path in ["crds/replicatedchat.yaml", "charts/replicated-chat/files/replicatedchat-crd.yaml"] {
        assert!(
            committed(path) == generated,
            "{path} drifted from the Rust types: run `cargo run -p chat-operator -- crdgen > {path}`"
        );
    }
}

#[test]
fn the_crd_has_what_kubectl_needs() {
    let crd: serde_json::Value = serde_saphyr::from_str(&crd_yaml()).unwrap();
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "rchat");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["scale"]["specReplicasPath"], ".spec.replicas");
    assert_eq!(version["subresources"]["scale"]["labelSelectorPath"], ".status.selector");
    let columns: Vec<&str> =
        version["additionalPrinterColumns"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(columns, ["Replicas", "Ready", "Leader", "Term", "Age"]);
    let replicas = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["replicas"];
    assert_eq!((replicas["default"].as_i64(), replicas["minimum"].as_f64()), (Some(3), Some(1.0)));
}

/// What can be judged at admission is judged there (CEL), so `kubectl apply`
/// of a bad spec fails at once with the reason.
#[test]
fn cross_field_rules_are_checked_at_admission() {
    let crd: serde_json::Value = serde_saphyr::from_str(&crd_yaml()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let rules = |v: &serde_json::Value| -> Vec<String> {
        v["x-kubernetes-validations"].as_array().unwrap().iter().map(|r| r["rule"].as_str().unwrap().into()).collect()
    };
    assert_eq!(
        rules(&spec["raft"]),
        ["self.electionTimeoutMinMs >= 3 * self.heartbeatMs", "self.electionTimeoutMaxMs > self.electionTimeoutMinMs"]
    );
    assert_eq!(rules(&spec["storage"]["properties"]["size"]), ["self == oldSelf"]);
    assert_eq!(rules(&spec["tls"]), ["has(self.nodeSecret) == has(self.operatorSecret)"]);
    let message = spec["storage"]["properties"]["size"]["x-kubernetes-validations"][0]["message"].as_str().unwrap();
    assert!(message.contains("volume claims are immutable"), "{message}");
}
