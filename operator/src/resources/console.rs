//! The web console (`spec.console`): a Deployment of one `chat-console` pod
//! and a ClusterIP Service, both `<name>-console`, serving HTTPS (passwords
//! cross it at login) with the certificate in `<name>-console-tls` (or
//! `spec.console.tlsSecret`). The console is a client of the public port like
//! any other (the CA from the `<name>-ca` ConfigMap; its only Secret is its
//! own server certificate); its ServiceAccount may read this ReplicatedChat and the
//! namespace's Events (the cluster view shows conditions and Events), and
//! nothing else. Locked down like the nodes. One pod: browser sessions live
//! in the console's memory.

use chat_k8s::ReplicatedChat;
use chat_k8s::crd::ConsoleSpec;
use chat_k8s::names::CONSOLE_PORT;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSpec,
    PodTemplateSpec, Probe, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::statefulset::{locked_down, pod_security, secret_volume};
use super::{names, owned_meta, role_binding};

const CA_DIR: &str = "/etc/chat/ca";
const TLS_DIR: &str = "/etc/chat/console-tls";

/// Metadata with the console's labels (never the nodes': no node Service,
/// budget or policy selects a console pod).
fn meta(cluster: &ReplicatedChat) -> ObjectMeta {
    let names = names(cluster);
    let mut meta = owned_meta(cluster, names.console());
    let labels = meta.labels.get_or_insert_with(Default::default);
    labels.extend(names.console_selector_labels());
    labels.insert("app.kubernetes.io/component".into(), "console".into());
    meta
}

/// The Deployment; `enabled: false` keeps it with no pod.
pub fn deployment(cluster: &ReplicatedChat, console: &ConsoleSpec) -> Deployment {
    let names = names(cluster);
    let voters = u64::try_from(cluster.spec.replicas.max(1)).unwrap_or(1);
    let replicas = u64::try_from(cluster.spec.read_replicas.max(0)).unwrap_or(0);
    let env = |name: &str, value: String| EnvVar { name: name.into(), value: Some(value), ..EnvVar::default() };
    let probe = |initial: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(i32::from(CONSOLE_PORT)),
            scheme: Some("HTTPS".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(10),
        ..Probe::default()
    };
    let container = Container {
        name: "console".into(),
        image: Some(console.image.clone().unwrap_or_else(|| cluster.spec.image.clone())),
        image_pull_policy: cluster.spec.image_pull_policy.map(|p| p.as_str().into()),
        command: Some(vec!["/usr/local/bin/chat-console".into()]),
        env: Some(vec![
            env("CHAT_ADDR", names.member_addresses(voters, replicas).join(",")),
            env("CHAT_CA", format!("{CA_DIR}/ca.crt")),
            env("CHAT_CONSOLE_LISTEN", format!("0.0.0.0:{CONSOLE_PORT}")),
            env("CHAT_CONSOLE_TLS_DIR", TLS_DIR.into()),
            env("CHAT_CONSOLE_KUBE_CLUSTER", names.cluster.clone()),
            EnvVar {
                name: "POD_NAMESPACE".into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.namespace".into(),
                        ..Default::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("https".into()),
            container_port: i32::from(CONSOLE_PORT),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(probe(1)),
        liveness_probe: Some(probe(10)),
        resources: console.resources.clone(),
        security_context: Some(locked_down()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "ca".into(),
                mount_path: CA_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tls".into(),
                mount_path: TLS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    let selector = names.console_selector_labels();
    let template_meta = ObjectMeta { labels: meta(cluster).labels, ..ObjectMeta::default() };
    Deployment {
        metadata: meta(cluster),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::from(console.enabled)),
            selector: LabelSelector { match_labels: Some(selector), ..LabelSelector::default() },
            // Sessions live in the pod: never two consoles behind the Service.
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".into()), ..DeploymentStrategy::default() }),
            template: PodTemplateSpec {
                metadata: Some(template_meta),
                spec: Some(PodSpec {
                    service_account_name: Some(names.console()),
                    security_context: Some(pod_security()),
                    containers: vec![container],
                    volumes: Some(vec![
                        Volume {
                            name: "ca".into(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: names.ca_config_map(),
                                ..ConfigMapVolumeSource::default()
                            }),
                            ..Volume::default()
                        },
                        secret_volume("tls", tls_secret(cluster, console)),
                    ]),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The Secret holding the console's certificate: the one brought, or the operator's.
pub fn tls_secret(cluster: &ReplicatedChat, console: &ConsoleSpec) -> String {
    console.tls_secret.clone().unwrap_or_else(|| names(cluster).console_tls_secret())
}

/// The console's Service: HTTPS on port 8088, its pod only.
pub fn service(cluster: &ReplicatedChat) -> Service {
    let names = names(cluster);
    Service {
        metadata: meta(cluster),
        spec: Some(ServiceSpec {
            selector: Some(names.console_selector_labels()),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port: i32::from(CONSOLE_PORT),
                target_port: Some(IntOrString::Int(i32::from(CONSOLE_PORT))),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

pub fn service_account(cluster: &ReplicatedChat) -> ServiceAccount {
    ServiceAccount { metadata: meta(cluster), ..ServiceAccount::default() }
}

/// Read this ReplicatedChat (by name) and list the namespace's Events.
pub fn role(cluster: &ReplicatedChat) -> Role {
    let names = names(cluster);
    Role {
        metadata: meta(cluster),
        rules: Some(vec![
            PolicyRule {
                api_groups: Some(vec!["chat.replicated.dev".into()]),
                resources: Some(vec!["replicatedchats".into()]),
                resource_names: Some(vec![names.cluster.clone()]),
                verbs: vec!["get".into()],
                ..PolicyRule::default()
            },
            PolicyRule {
                api_groups: Some(vec!["events.k8s.io".into()]),
                resources: Some(vec!["events".into()]),
                verbs: vec!["list".into()],
                ..PolicyRule::default()
            },
        ]),
    }
}

pub fn binding(cluster: &ReplicatedChat) -> RoleBinding {
    role_binding(cluster, meta(cluster), names(cluster).console())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    fn enabled() -> ConsoleSpec {
        ConsoleSpec { enabled: true, ..ConsoleSpec::default() }
    }

    #[test]
    fn the_console_is_one_locked_down_pod_that_reaches_every_member_with_the_ca_alone() {
        let mut c = cluster(3);
        c.spec.read_replicas = 1;
        let d = deployment(&c, &enabled());
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.selector.match_labels.as_ref().unwrap()["app.kubernetes.io/name"], "chat-console");
        let pod = spec.template.spec.unwrap();
        let container = &pod.containers[0];
        assert_eq!(container.image.as_deref(), Some("chat-node:dev"), "the node image carries the console");
        let env: std::collections::BTreeMap<_, _> =
            container.env.clone().unwrap().into_iter().map(|e| (e.name, e.value.unwrap_or_default())).collect();
        assert_eq!(
            env["CHAT_ADDR"],
            "demo-0.demo-peers.chat.svc:50051,demo-1.demo-peers.chat.svc:50051,\
             demo-2.demo-peers.chat.svc:50051,demo-replica-0.demo-peers.chat.svc:50051"
        );
        assert_eq!(env["CHAT_CONSOLE_KUBE_CLUSTER"], "demo");
        let volumes = pod.volumes.unwrap();
        assert_eq!(volumes[0].config_map.as_ref().unwrap().name, "demo-ca", "the CA certificate from a ConfigMap");
        let secrets: Vec<_> = volumes.iter().filter_map(|v| v.secret.as_ref()?.secret_name.clone()).collect();
        assert_eq!(secrets, ["demo-console-tls"], "its own HTTPS certificate is its only Secret");
        assert_eq!(env["CHAT_CONSOLE_TLS_DIR"], "/etc/chat/console-tls", "HTTPS, never plain HTTP off loopback");
        assert!(!env.contains_key("CHAT_CONSOLE_PLAINTEXT_HTTP"));
        let probe = container.readiness_probe.as_ref().unwrap().http_get.clone().unwrap();
        assert_eq!(probe.scheme.as_deref(), Some("HTTPS"));
        let brought = ConsoleSpec { tls_secret: Some("mine".into()), ..enabled() };
        let pod = deployment(&c, &brought).spec.unwrap().template.spec.unwrap();
        assert!(
            pod.volumes
                .unwrap()
                .iter()
                .any(|v| v.secret.as_ref().is_some_and(|s| s.secret_name.as_deref() == Some("mine")))
        );
        let security = container.security_context.clone().unwrap();
        assert_eq!((security.read_only_root_filesystem, security.run_as_non_root), (Some(true), Some(true)));
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
        let off = ConsoleSpec { enabled: false, ..enabled() };
        assert_eq!(deployment(&c, &off).spec.unwrap().replicas, Some(0), "turned off: kept, with no pod");
    }

    #[test]
    fn no_node_object_selects_the_console_and_its_rights_are_read_only() {
        let c = cluster(3);
        let labels = deployment(&c, &enabled()).spec.unwrap().template.metadata.unwrap().labels.unwrap();
        let nodes = names(&c).selector_labels();
        assert!(!nodes.iter().all(|(k, v)| labels.get(k) == Some(v)), "a console pod is not a member: {labels:?}");
        let rules = role(&c).rules.unwrap();
        assert!(rules.iter().all(|r| r.verbs.iter().all(|v| v == "get" || v == "list")));
        assert_eq!(rules[0].resource_names.as_deref(), Some(&["demo".to_string()][..]));
        assert_eq!(service(&c).spec.unwrap().ports.unwrap()[0].port, 8088);
        assert_eq!(binding(&c).subjects.unwrap()[0].name, "demo-console");
    }
}
