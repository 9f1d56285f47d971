//! `chat-operator render`: the objects the operator would create for a
//! ReplicatedChat manifest, as YAML, without a cluster. For reviewing a spec
//! before applying it, and for CI to validate the builders' output against the
//! Kubernetes schemas.

use chat_k8s::ReplicatedChat;
use serde::Serialize;

use crate::resources::{console, network_policy, node_role, pdb, service_account, services, statefulset};
use crate::validate::{Severity, validate};

/// The owned objects of the ReplicatedChat in `manifest` (YAML), as a
/// multi-document YAML stream.
///
/// # Errors
/// When the manifest does not parse or its spec has errors (each named).
pub fn render(manifest: &str) -> anyhow::Result<String> {
    let mut cluster: ReplicatedChat = serde_saphyr::from_str(manifest)?;
    if cluster.metadata.namespace.is_none() {
        cluster.metadata.namespace = Some("default".into());
    }
    // Owner references need a uid; a real one comes from the API server.
    cluster.metadata.uid.get_or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
    let errors: Vec<String> =
        validate(&cluster.spec).into_iter().filter(|f| f.severity == Severity::Error).map(|f| f.to_string()).collect();
    anyhow::ensure!(errors.is_empty(), "invalid ReplicatedChat: {}", errors.join("; "));
    let mut out = String::new();
    let replicas = u64::try_from(cluster.spec.read_replicas.max(0)).unwrap_or(0);
    push(&mut out, &service_account::build(&cluster))?;
    push(&mut out, &node_role::role(&cluster, u64::try_from(cluster.spec.replicas.max(1)).unwrap_or(1), replicas))?;
    push(&mut out, &node_role::binding(&cluster))?;
    push(&mut out, &services::peers(&cluster))?;
    push(&mut out, &services::client(&cluster))?;
    push(&mut out, &services::read_only(&cluster))?;
    push(&mut out, &services::any_member(&cluster))?;
    push(&mut out, &pdb::build(&cluster))?;
    push(&mut out, &statefulset::build(&cluster, cluster.spec.replicas))?;
    if replicas > 0 {
        push(&mut out, &statefulset::build_replicas(&cluster, cluster.spec.read_replicas))?;
    }
    if let Some(backup) = &cluster.spec.backup {
        push(&mut out, &crate::resources::backup::cron_job(&cluster, backup, false))?;
    }
    if let Some(console) = cluster.spec.console.as_ref().filter(|c| c.enabled) {
        push(&mut out, &console::service_account(&cluster))?;
        push(&mut out, &console::role(&cluster))?;
        push(&mut out, &console::binding(&cluster))?;
        push(&mut out, &console::service(&cluster))?;
        push(&mut out, &network_policy::console(&cluster))?;
        push(&mut out, &console::deployment(&cluster, console))?;
    }
    Ok(out)
}

fn push(out: &mut String, object: &impl Serialize) -> anyhow::Result<()> {
    out.push_str("---\n");
    out.push_str(&serde_saphyr::to_string(object)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_renders_and_a_bad_spec_is_refused() {
        let example = include_str!("../../deploy/examples/chat.yaml");
        let out = render(example).unwrap();
        assert_eq!(out.matches("---\n").count(), 9);
        assert!(out.contains("kind: StatefulSet") && out.contains("replicas: 3"), "{out}");
        assert!(!out.contains("demo-replica"), "no replicas' set without readReplicas");
        let with_replicas = render(&example.replace("replicas: 3", "replicas: 3\n  readReplicas: 2")).unwrap();
        assert_eq!(with_replicas.matches("---\n").count(), 10);
        assert!(with_replicas.contains("name: demo-replica\n"), "{with_replicas}");
        let bad = example.replace("image: chat-node:dev", "image: \"\"");
        assert!(render(&bad).unwrap_err().to_string().contains("spec.image"));
    }

    #[test]
    fn the_console_example_renders_its_deployment_and_policy() {
        let out = render(include_str!("../../deploy/examples/console.yaml")).unwrap();
        for kind in ["Deployment", "NetworkPolicy", "Role", "RoleBinding", "ServiceAccount"] {
            assert!(out.contains(&format!("kind: {kind}\n")), "{kind}: {out}");
        }
        assert!(out.contains("name: demo-console\n"), "{out}");
    }
}
