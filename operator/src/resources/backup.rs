//! The CronJob of scheduled backups (`spec.backup`): the node image's
//! `kubectl-chat backup` in direct mode, reaching the members' peer ports
//! with the admin certificate, writing `<claim>/<name>-<UTC time>.backup` and
//! keeping the newest `keep`. Members are tried in turn, read replicas and
//! the highest ordinals first (more likely followers: a backup is a full
//! read, better not on the leader). Locked down like the nodes.

use chat_k8s::ReplicatedChat;
use chat_k8s::crd::BackupSpec;
use chat_k8s::names::{BACKUP_OF_LABEL, REPLICA_ID_BASE};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::statefulset::{locked_down, pod_security};
use super::{names, owned_meta};

const ADMIN_DIR: &str = "/etc/chat/admin";
const BACKUPS_DIR: &str = "/backups";

/// The CronJob for `backup`; `suspend` keeps it but runs nothing (the
/// section was removed: the operator deletes nothing, it stops it).
pub fn cron_job(cluster: &ReplicatedChat, backup: &BackupSpec, suspend: bool) -> CronJob {
    let names = names(cluster);
    let voters = u64::try_from(cluster.spec.replicas.max(1)).unwrap_or(1);
    let replicas = u64::try_from(cluster.spec.read_replicas.max(0)).unwrap_or(0);
    let members: Vec<String> = (0..replicas)
        .rev()
        .map(|k| REPLICA_ID_BASE + k)
        .chain((0..voters).rev())
        .map(|id| names.pod_peer_address(id))
        .collect();
    let secret = backup.admin_secret.clone().unwrap_or_else(|| names.admin_secret());
    let container = Container {
        name: "backup".into(),
        image: Some(cluster.spec.image.clone()),
        image_pull_policy: cluster.spec.image_pull_policy.map(|p| p.as_str().into()),
        // Absolute: a FROM-scratch image may set no PATH.
        command: Some(vec!["/usr/local/bin/kubectl-chat".into()]),
        args: Some(vec![
            "backup".into(),
            "--to-dir".into(),
            BACKUPS_DIR.into(),
            "--prefix".into(),
            names.cluster.clone(),
            "--keep".into(),
            backup.keep.to_string(),
            "--member".into(),
            members.join(","),
            "--admin-tls-dir".into(),
            ADMIN_DIR.into(),
        ]),
        security_context: Some(locked_down()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "admin".into(),
                mount_path: ADMIN_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount { name: "backups".into(), mount_path: BACKUPS_DIR.into(), ..Default::default() },
        ]),
        ..Container::default()
    };
    let pod = PodSpec {
        restart_policy: Some("OnFailure".into()),
        automount_service_account_token: Some(false),
        security_context: Some(pod_security()),
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: "admin".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret),
                    default_mode: Some(0o440),
                    ..Default::default()
                }),
                ..Default::default()
            },
            Volume {
                name: "backups".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: backup.claim_name.clone(),
                    read_only: Some(false),
                }),
                ..Default::default()
            },
        ]),
        ..PodSpec::default()
    };
    CronJob {
        metadata: owned_meta(cluster, names.backup_cron_job()),
        spec: Some(CronJobSpec {
            schedule: backup.schedule.clone(),
            suspend: Some(suspend),
            // Never two at once: each holds a full copy of the state.
            concurrency_policy: Some("Forbid".into()),
            successful_jobs_history_limit: Some(3),
            failed_jobs_history_limit: Some(3),
            job_template: JobTemplateSpec {
                metadata: None,
                spec: Some(JobSpec {
                    backoff_limit: Some(2),
                    template: PodTemplateSpec {
                        metadata: Some(ObjectMeta {
                            labels: Some([(BACKUP_OF_LABEL.to_string(), names.cluster.clone())].into()),
                            ..ObjectMeta::default()
                        }),
                        spec: Some(pod),
                    },
                    ..JobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        }),
        ..CronJob::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    fn spec() -> BackupSpec {
        BackupSpec { schedule: "0 3 * * *".into(), claim_name: "backups".into(), keep: 5, admin_secret: None }
    }

    #[test]
    fn a_scheduled_backup_runs_the_plugin_against_every_member_followers_first() {
        let mut c = cluster(3);
        c.spec.read_replicas = 1;
        let job = cron_job(&c, &spec(), false);
        let cron = job.spec.unwrap();
        assert_eq!(
            (cron.schedule.as_str(), cron.suspend, cron.concurrency_policy.as_deref()),
            ("0 3 * * *", Some(false), Some("Forbid"))
        );
        let template = cron.job_template.spec.unwrap().template;
        assert_eq!(template.metadata.unwrap().labels.unwrap()[BACKUP_OF_LABEL], "demo");
        let pod = template.spec.unwrap();
        let args = pod.containers[0].args.clone().unwrap();
        let members = &args[args.iter().position(|a| a == "--member").unwrap() + 1];
        assert_eq!(
            members,
            "demo-replica-0.demo-peers.chat.svc:50052,demo-2.demo-peers.chat.svc:50052,\
             demo-1.demo-peers.chat.svc:50052,demo-0.demo-peers.chat.svc:50052"
        );
        assert!(args.windows(2).any(|w| w == ["--keep", "5"]) && args.windows(2).any(|w| w == ["--prefix", "demo"]));
        let secret = pod.volumes.unwrap()[0].secret.clone().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("demo-admin-tls"));
        assert_eq!(pod.automount_service_account_token, Some(false), "it needs no Kubernetes API");
        let security = pod.containers[0].security_context.clone().unwrap();
        assert_eq!((security.read_only_root_filesystem, security.run_as_non_root), (Some(true), Some(true)));
        assert_eq!(cron_job(&c, &spec(), true).spec.unwrap().suspend, Some(true));
    }
}
