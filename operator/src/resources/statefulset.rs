//! The StatefulSet of nodes: stable pod names (the ordinal is the Raft id),
//! one volume each, pods told their advertised DNS address.
//!
//! Pods start with neither `--bootstrap` nor `--join`: a node with an empty
//! volume waits to be added, and the operator decides who founds the cluster
//! (once) and who joins it. So a pod that comes back with a lost volume can
//! never found a second cluster by itself.

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PodAffinityTerm,
    PodAntiAffinity, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretVolumeSource,
    SecurityContext, Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use std::collections::BTreeMap;

use chat_k8s::ReplicatedChat;
use chat_k8s::crd::FromBackup;
use chat_k8s::names::{
    DATA_DIR, DATA_VOLUME, GRPC_PORT, HTTP_PORT, PEER_PORT, READ_ONLY_LABEL, READ_REPLICA_LABEL, REPLICA_ID_BASE,
    RESTARTED_AT_ANNOTATION, TLS_DIR,
};
use kube::ResourceExt;

use super::{names, owned_meta};

/// The read replicas' StatefulSet with `replicas` pods: the voters' pod
/// template, plus the read-replica label (also in its selector, so the two
/// sets never claim each other's pods) and `CHAT_ID_OFFSET`, which puts the
/// replicas' Raft ids at [`REPLICA_ID_BASE`] and up. The operator joins each
/// as a learner that is never promoted.
pub fn build_replicas(cluster: &ReplicatedChat, replicas: i32) -> StatefulSet {
    let names = names(cluster);
    let mut sts = build(cluster, replicas);
    sts.metadata.name = Some(names.replica_statefulset());
    let label = (READ_REPLICA_LABEL.to_string(), "true".to_string());
    if let Some(spec) = sts.spec.as_mut() {
        spec.selector.match_labels.get_or_insert_default().insert(label.0.clone(), label.1.clone());
        if let Some(meta) = spec.template.metadata.as_mut() {
            let labels = meta.labels.get_or_insert_default();
            labels.insert(label.0, label.1);
            // Never the leader: always behind the `-ro` Service.
            labels.insert(READ_ONLY_LABEL.into(), "true".into());
        }
        // Read replicas join a founded cluster; they never restore.
        if let Some(pod) = spec.template.spec.as_mut() {
            pod.init_containers = None;
            pod.volumes.get_or_insert_default().retain(|v| v.name != BACKUP_VOLUME);
        }
        if let Some(container) = spec.template.spec.as_mut().and_then(|p| p.containers.first_mut()) {
            let offset = EnvVar {
                name: "CHAT_ID_OFFSET".into(),
                value: Some(REPLICA_ID_BASE.to_string()),
                ..Default::default()
            };
            container.env.get_or_insert_default().push(offset);
        }
    }
    sts
}

/// The pod volume holding the certificates.
const TLS_VOLUME: &str = "tls";
/// The volume of a backup to restore, and where the restore reads it.
const BACKUP_VOLUME: &str = "backup";
const BACKUP_DIR: &str = "/backup";

/// UID/GID the node runs as (the `nonroot` user of distroless-style images).
pub const NODE_UID: i64 = 65532;

/// The StatefulSet with `replicas` pods. `replicas` comes from the membership
/// planner, not straight from the spec: on scale-down the set shrinks only
/// after the members are out of Raft.
pub fn build(cluster: &ReplicatedChat, replicas: i32) -> StatefulSet {
    let names = names(cluster);
    let spec = &cluster.spec;
    let mut pod_labels = names.labels();
    // The role label is the operator's to move; never part of the template.
    pod_labels.remove(chat_k8s::names::ROLE_LABEL);
    StatefulSet {
        metadata: owned_meta(cluster, names.statefulset()),
        spec: Some(StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(names.peers_service()),
            // Parallel: new pods wait to be admitted, and are not ready until
            // they are; OrderedReady would stall behind the first of them.
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector { match_labels: Some(names.selector_labels()), ..LabelSelector::default() },
            // OnDelete: a pod runs a new template only when the operator
            // deletes it, in the order `rollout` picks (followers first, one
            // at a time, leadership handed over once, the old leader last).
            // RollingUpdate would go by ordinal and restart the leader
            // whenever its turn came.
            update_strategy: Some(StatefulSetUpdateStrategy { type_: Some("OnDelete".into()), ..Default::default() }),
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_scaled: Some(spec.storage.on_scale_down.as_str().into()),
                when_deleted: Some(spec.storage.on_delete.as_str().into()),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: template_annotations(cluster),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec(cluster)),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(DATA_VOLUME.into()),
                    labels: Some(names.selector_labels()),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: spec.storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some([("storage".to_string(), spec.storage.size.clone())].into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// `spec.podAnnotations`, plus a restart request (`kubectl chat restart`):
/// a new value changes the template, which the operator rolls out leader last.
fn template_annotations(cluster: &ReplicatedChat) -> Option<BTreeMap<String, String>> {
    let mut annotations = cluster.spec.pod_annotations.clone();
    if let Some(at) = cluster.annotations().get(RESTARTED_AT_ANNOTATION) {
        annotations.insert(RESTARTED_AT_ANNOTATION.into(), at.clone());
    }
    (!annotations.is_empty()).then_some(annotations)
}

fn pod_spec(cluster: &ReplicatedChat) -> PodSpec {
    let names = names(cluster);
    let spec = &cluster.spec;
    PodSpec {
        service_account_name: Some(names.service_account()),
        // The token lets the elected node label its own pod (node_role: nothing else).
        automount_service_account_token: Some(true),
        // chat-node hands leadership over on SIGTERM; give it time to.
        termination_grace_period_seconds: Some(30),
        security_context: Some(pod_security()),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: Some(spec.affinity.clone().unwrap_or_else(|| spread_across_nodes(cluster))),
        init_containers: restoring(cluster).map(|backup| vec![restore_container(cluster, backup)]),
        containers: vec![container(cluster)],
        volumes: Some(
            std::iter::once(tls_volume(cluster))
                .chain(restoring(cluster).map(|backup| Volume {
                    name: BACKUP_VOLUME.into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: backup.claim_name.clone(),
                        read_only: Some(true),
                    }),
                    ..Default::default()
                }))
                .collect(),
        ),
        ..PodSpec::default()
    }
}

/// The backup to restore, while the cluster is not founded yet
/// (`spec.bootstrap.fromBackup`); afterwards the template drops it.
pub fn restoring(cluster: &ReplicatedChat) -> Option<&FromBackup> {
    let founded = cluster.status.as_ref().is_some_and(|s| s.bootstrapped);
    cluster.spec.bootstrap.as_ref().and_then(|b| b.from_backup.as_ref()).filter(|_| !founded)
}

/// Before the node starts: `chat-node restore` makes pod 0's empty data dir
/// a one-member cluster from the backup (the node's own environment names
/// its id and addresses). A data dir that already holds a database — a
/// restarted pod — is left alone, and no other ordinal restores anything.
fn restore_container(cluster: &ReplicatedChat, backup: &FromBackup) -> Container {
    let node = container(cluster);
    Container {
        name: "restore".into(),
        args: Some(vec![
            "restore".into(),
            "--from".into(),
            format!("{BACKUP_DIR}/{}", backup.path),
            "--skip-if-present".into(),
            "--only-id".into(),
            "0".into(),
        ]),
        ports: None,
        readiness_probe: None,
        liveness_probe: None,
        volume_mounts: Some(vec![
            VolumeMount { name: DATA_VOLUME.into(), mount_path: DATA_DIR.into(), ..Default::default() },
            VolumeMount {
                name: BACKUP_VOLUME.into(),
                mount_path: BACKUP_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..node
    }
}

fn container(cluster: &ReplicatedChat) -> Container {
    let names = names(cluster);
    let raft = &cluster.spec.raft;
    let field = |path: &str| EnvVar {
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let env = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), ..Default::default() };
    let probe = |path: &str, period_seconds, failure_threshold| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(1),
        failure_threshold: Some(failure_threshold),
        ..Default::default()
    };
    Container {
        name: "chat-node".into(),
        image: Some(cluster.spec.image.clone()),
        image_pull_policy: cluster.spec.image_pull_policy.map(|p| p.as_str().into()),
        env: Some(vec![
            EnvVar { name: "POD_NAME".into(), ..field("metadata.name") },
            EnvVar { name: "POD_NAMESPACE".into(), ..field("metadata.namespace") },
            env("CHAT_LISTEN", format!("0.0.0.0:{GRPC_PORT}")),
            env("CHAT_PEER_LISTEN", format!("0.0.0.0:{PEER_PORT}")),
            // Kubernetes expands $(VAR) from the variables above.
            env("CHAT_ADVERTISE", format!("$(POD_NAME).{}.$(POD_NAMESPACE).svc:{GRPC_PORT}", names.peers_service())),
            env(
                "CHAT_PEER_ADVERTISE",
                format!("$(POD_NAME).{}.$(POD_NAMESPACE).svc:{PEER_PORT}", names.peers_service()),
            ),
            // The mounted TLS Secret: mutual TLS between members, TLS for clients.
            env("CHAT_TLS_DIR", TLS_DIR.into()),
            // The elected node labels its own pod (fenced by the `<name>-leader` Lease).
            env("CHAT_KUBE_CLUSTER", names.cluster.clone()),
            env("CHAT_HTTP", format!("0.0.0.0:{HTTP_PORT}")),
            env("CHAT_DATA_DIR", DATA_DIR.into()),
            env("CHAT_LOG_FORMAT", "json".into()),
            env("CHAT_HEARTBEAT_MS", raft.heartbeat_ms.to_string()),
            env("CHAT_ELECTION_TIMEOUT_MIN_MS", raft.election_timeout_min_ms.to_string()),
            env("CHAT_ELECTION_TIMEOUT_MAX_MS", raft.election_timeout_max_ms.to_string()),
            env("CHAT_SNAPSHOT_THRESHOLD", raft.snapshot_threshold.to_string()),
        ]),
        ports: Some(vec![
            ContainerPort { name: Some("grpc".into()), container_port: i32::from(GRPC_PORT), ..Default::default() },
            ContainerPort { name: Some("peer".into()), container_port: i32::from(PEER_PORT), ..Default::default() },
            ContainerPort { name: Some("http".into()), container_port: i32::from(HTTP_PORT), ..Default::default() },
        ]),
        // Readiness every second: a pod that comes back is routable within a
        // second or two. Three failures in a row to drop out, so one slow
        // answer does not take the leader out of the Service; a short election
        // does not count against a voter at all (the node's /readyz keeps it
        // ready for 5 s without a leader), so the new leader is in the ready
        // endpoints from the moment it is labelled.
        readiness_probe: Some(probe("/readyz", 1, 3)),
        liveness_probe: Some(probe("/healthz", 5, 6)),
        resources: cluster.spec.resources.clone(),
        security_context: Some(locked_down()),
        volume_mounts: Some(vec![
            VolumeMount { name: DATA_VOLUME.into(), mount_path: DATA_DIR.into(), ..Default::default() },
            VolumeMount {
                name: TLS_VOLUME.into(),
                mount_path: TLS_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..Container::default()
    }
}

/// Every pod the operator makes runs as the node user, with the runtime's
/// default seccomp profile; volumes are group-writable for it.
pub fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NODE_UID),
        run_as_group: Some(NODE_UID),
        fs_group: Some(NODE_UID),
        seccomp_profile: Some(SeccompProfile { type_: "RuntimeDefault".into(), ..Default::default() }),
        ..Default::default()
    }
}

/// Every container the operator makes: read-only root filesystem, no
/// privilege escalation, no capabilities.
pub fn locked_down() -> SecurityContext {
    SecurityContext {
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities { drop: Some(vec!["ALL".into()]), ..Default::default() }),
        ..Default::default()
    }
}

/// The certificates: the operator's `<name>-tls` Secret, or the one
/// `spec.tls.nodeSecret` brings. Readable by the node's group only; the
/// kubelet updates the files in place when the Secret is renewed.
fn tls_volume(cluster: &ReplicatedChat) -> Volume {
    let secret = cluster.spec.tls.node_secret.clone().unwrap_or_else(|| names(cluster).tls_secret());
    secret_volume(TLS_VOLUME, secret)
}

/// A Secret as a volume readable by the pod's group only (its `fsGroup`).
pub fn secret_volume(name: &str, secret: String) -> Volume {
    Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource { secret_name: Some(secret), default_mode: Some(0o440), ..Default::default() }),
        ..Default::default()
    }
}

/// Prefer one pod per node: losing a node then costs one member, not a quorum.
/// A preference, not a rule, so a one-node kind cluster still schedules.
fn spread_across_nodes(cluster: &ReplicatedChat) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    topology_key: "kubernetes.io/hostname".into(),
                    label_selector: Some(LabelSelector {
                        match_labels: Some(names(cluster).selector_labels()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    fn env_of(sts: &StatefulSet) -> std::collections::BTreeMap<String, String> {
        let c = &sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
        c.env.as_ref().unwrap().iter().filter_map(|e| Some((e.name.clone(), e.value.clone()?))).collect()
    }

    #[test]
    fn pods_advertise_their_dns_name_and_never_bootstrap_themselves() {
        let sts = build(&cluster(3), 3);
        let env = env_of(&sts);
        assert_eq!(env["CHAT_ADVERTISE"], "$(POD_NAME).demo-peers.$(POD_NAMESPACE).svc:50051");
        assert!(!env.contains_key("CHAT_BOOTSTRAP") && !env.contains_key("CHAT_JOIN"));
        assert_eq!(env["CHAT_ELECTION_TIMEOUT_MIN_MS"], "350");
        let spec = sts.spec.unwrap();
        assert_eq!(spec.service_name.as_deref(), Some("demo-peers"));
        assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
        let strategy = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref());
        assert_eq!(strategy, Some("OnDelete"), "the operator orders upgrades, not the StatefulSet controller");
    }

    #[test]
    fn pods_mount_their_certificates_read_only_and_serve_tls() {
        let sts = build(&cluster(3), 3);
        let env = env_of(&sts);
        assert_eq!(env["CHAT_TLS_DIR"], "/etc/chat/tls");
        assert_eq!(env["CHAT_KUBE_CLUSTER"], "demo");
        assert_eq!(env["CHAT_PEER_ADVERTISE"], "$(POD_NAME).demo-peers.$(POD_NAMESPACE).svc:50052");
        assert!(!env.contains_key("CHAT_PUBLIC_PLAINTEXT") && !env.contains_key("CHAT_INSECURE_PEER_PLAINTEXT"));
        let pod = sts.spec.unwrap().template.spec.unwrap();
        let secret = pod.volumes.unwrap()[0].secret.clone().unwrap();
        assert_eq!((secret.secret_name.as_deref(), secret.default_mode), (Some("demo-tls"), Some(0o440)));
        let mount = pod.containers[0].volume_mounts.clone().unwrap().into_iter().find(|m| m.name == "tls").unwrap();
        assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/etc/chat/tls", Some(true)));

        let mut brought = cluster(3);
        brought.spec.tls.node_secret = Some("mine".into());
        let pod = build(&brought, 3).spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.volumes.unwrap()[0].secret.clone().unwrap().secret_name.as_deref(), Some("mine"));
    }

    #[test]
    fn a_restart_request_changes_both_templates_and_nothing_else() {
        let plain = cluster(3);
        let mut asked = plain.clone();
        asked.annotations_mut().insert(RESTARTED_AT_ANNOTATION.into(), "2026-12-02T22:00:00Z".into());
        for (before, after) in
            [(build(&plain, 3), build(&asked, 3)), (build_replicas(&plain, 1), build_replicas(&asked, 1))]
        {
            let (mut before, after) = (before.spec.unwrap().template, after.spec.unwrap().template);
            let annotations = after.metadata.as_ref().unwrap().annotations.clone().unwrap();
            assert_eq!(annotations[RESTARTED_AT_ANNOTATION], "2026-12-02T22:00:00Z");
            before.metadata.as_mut().unwrap().annotations = Some(annotations);
            assert_eq!(before, after);
        }
    }

    #[test]
    fn a_backup_is_restored_by_pod_zero_until_the_cluster_is_founded() {
        let mut restored = cluster(3);
        restored.spec.bootstrap = Some(chat_k8s::crd::BootstrapSpec {
            from_backup: Some(FromBackup { claim_name: "backups".into(), path: "chat/one.backup".into() }),
        });
        let pod = build(&restored, 1).spec.unwrap().template.spec.unwrap();
        let init = &pod.init_containers.as_ref().unwrap()[0];
        assert_eq!(
            init.args.as_deref().unwrap(),
            ["restore", "--from", "/backup/chat/one.backup", "--skip-if-present", "--only-id", "0"]
        );
        assert_eq!(init.image, pod.containers[0].image);
        assert_eq!(init.env, pod.containers[0].env, "the node's id and addresses come from its environment");
        assert_eq!(init.security_context, pod.containers[0].security_context);
        let backup = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "backup").unwrap();
        let claim = backup.persistent_volume_claim.as_ref().unwrap();
        assert_eq!((claim.claim_name.as_str(), claim.read_only), ("backups", Some(true)));
        let replicas = build_replicas(&restored, 1).spec.unwrap().template.spec.unwrap();
        assert!(replicas.init_containers.is_none() && replicas.volumes.unwrap().iter().all(|v| v.name != "backup"));

        restored.status = Some(chat_k8s::ReplicatedChatStatus { bootstrapped: true, ..Default::default() });
        let founded = build(&restored, 3).spec.unwrap().template.spec.unwrap();
        assert!(founded.init_containers.is_none(), "founded: nothing left to restore");
        assert!(founded.volumes.unwrap().iter().all(|v| v.name != "backup"));
    }

    #[test]
    fn replicas_come_from_the_planner_not_the_spec() {
        assert_eq!(build(&cluster(3), 5).spec.unwrap().replicas, Some(5));
    }

    #[test]
    fn pods_are_locked_down() {
        let sts = build(&cluster(3), 3);
        let pod = sts.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(true), "for self-labelling; node_role limits it");
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let sc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert!(pod.affinity.unwrap().pod_anti_affinity.is_some(), "spread across nodes by default");
    }

    #[test]
    fn volume_policy_follows_the_spec() {
        let mut c = cluster(3);
        c.spec.storage.on_scale_down = chat_k8s::crd::VolumePolicy::Retain;
        let policy = build(&c, 3).spec.unwrap().persistent_volume_claim_retention_policy.unwrap();
        assert_eq!(policy.when_scaled.as_deref(), Some("Retain"));
        assert_eq!(policy.when_deleted.as_deref(), Some("Delete"));
    }

    #[test]
    fn read_replicas_have_their_own_set_selector_and_ids() {
        let sts = build_replicas(&cluster(3), 2);
        assert_eq!(sts.metadata.name.as_deref(), Some("demo-replica"));
        let spec = sts.spec.clone().unwrap();
        assert_eq!(spec.replicas, Some(2));
        let selector = spec.selector.match_labels.unwrap();
        assert_eq!(selector.get(READ_REPLICA_LABEL).map(String::as_str), Some("true"), "not the voters' selector");
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert!(selector.iter().all(|(k, v)| labels.get(k) == Some(v)), "the template matches its selector");
        assert_eq!(env_of(&sts)["CHAT_ID_OFFSET"], REPLICA_ID_BASE.to_string());
        assert!(!env_of(&build(&cluster(3), 3)).contains_key("CHAT_ID_OFFSET"));
    }
}
