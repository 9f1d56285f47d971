//! The objects that carry a cluster's certificates: the CA's Secret (only
//! the operator reads it), the nodes' TLS Secret (the pods mount it), and a
//! ConfigMap with the CA certificate alone (clients read it to verify the
//! nodes without being allowed to read Secrets).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};

use chat_k8s::ReplicatedChat;

use super::{names, owned_meta};

/// Annotation on the TLS Secret: the host names its certificate was issued
/// for, so a change (a renamed Service) is noticed and a new one issued.
pub const HOSTS_ANNOTATION: &str = "chat.replicated.dev/hosts";

fn data(entries: &[(&str, &str)]) -> BTreeMap<String, ByteString> {
    entries.iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()
}

/// `<name>-ca`: the CA certificate and its private key.
pub fn ca_secret(cluster: &ReplicatedChat, cert_pem: &str, key_pem: &str) -> Secret {
    Secret {
        metadata: owned_meta(cluster, names(cluster).ca_secret()),
        type_: Some("Opaque".into()),
        data: Some(data(&[("ca.crt", cert_pem), ("ca.key", key_pem)])),
        ..Secret::default()
    }
}

/// `<name>-tls`: what every node mounts (`ca.crt`, `tls.crt`, `tls.key`).
pub fn tls_secret(cluster: &ReplicatedChat, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Secret {
    tls_secret_for(cluster, names(cluster).tls_secret(), hosts_annotation(cluster), ca_pem, cert_pem, key_pem)
}

/// `<name>-console-tls`: the web console's HTTPS certificate.
pub fn console_tls_secret(cluster: &ReplicatedChat, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Secret {
    let name = names(cluster).console_tls_secret();
    tls_secret_for(cluster, name, console_hosts_annotation(cluster), ca_pem, cert_pem, key_pem)
}

/// A server certificate's Secret, annotated with the hosts it was issued for
/// (the [`HOSTS_ANNOTATION`] value the staleness check compares).
fn tls_secret_for(
    cluster: &ReplicatedChat,
    name: String,
    hosts: String,
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Secret {
    let mut metadata = owned_meta(cluster, name);
    metadata.annotations = Some(BTreeMap::from([(HOSTS_ANNOTATION.to_string(), hosts)]));
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data(&[("ca.crt", ca_pem), ("tls.crt", cert_pem), ("tls.key", key_pem)])),
        ..Secret::default()
    }
}

/// `<name>-admin-tls`: an admin's client certificate (`chat-admin`): what
/// `kubectl chat backup` presents to a node's peer port. Kubernetes RBAC on
/// this Secret decides who is an admin.
pub fn admin_secret(cluster: &ReplicatedChat, ca_pem: &str, cert_pem: &str, key_pem: &str) -> Secret {
    Secret {
        metadata: owned_meta(cluster, names(cluster).admin_secret()),
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data(&[("ca.crt", ca_pem), ("tls.crt", cert_pem), ("tls.key", key_pem)])),
        ..Secret::default()
    }
}

/// The value of [`HOSTS_ANNOTATION`] for this cluster's node certificate.
pub fn hosts_annotation(cluster: &ReplicatedChat) -> String {
    names(cluster).node_hosts().join(",")
}

/// The value of [`HOSTS_ANNOTATION`] for the console's certificate.
pub fn console_hosts_annotation(cluster: &ReplicatedChat) -> String {
    names(cluster).console_hosts().join(",")
}

/// `<name>-ca`: the CA certificate only.
pub fn ca_config_map(cluster: &ReplicatedChat, ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: owned_meta(cluster, names(cluster).ca_config_map()),
        data: Some(BTreeMap::from([("ca.crt".to_string(), ca_pem.to_string())])),
        ..ConfigMap::default()
    }
}

/// A Secret's entry as text, if present and UTF-8.
pub fn entry(secret: &Secret, key: &str) -> Option<String> {
    secret.data.as_ref()?.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn the_secrets_and_the_config_map_are_owned_and_named_after_the_cluster() {
        let c = cluster(3);
        let tls = tls_secret(&c, "CA", "CERT", "KEY");
        assert_eq!(tls.metadata.name.as_deref(), Some("demo-tls"));
        assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(entry(&tls, "tls.key").as_deref(), Some("KEY"));
        assert!(hosts_annotation(&c).contains("*.demo-peers.chat.svc"), "{}", hosts_annotation(&c));
        let ca = ca_secret(&c, "CA", "CAKEY");
        assert_eq!(ca.metadata.name.as_deref(), Some("demo-ca"));
        assert_eq!(ca.metadata.owner_references.unwrap()[0].kind, "ReplicatedChat");
        let cm = ca_config_map(&c, "CA");
        assert_eq!(cm.data.unwrap()["ca.crt"], "CA");
        assert!(cm.metadata.name.as_deref() == Some("demo-ca"), "clients find it by the cluster's name");
        let console = console_tls_secret(&c, "CA", "CERT", "KEY");
        assert_eq!(console.metadata.name.as_deref(), Some("demo-console-tls"));
        let annotated = &console.metadata.annotations.unwrap()[HOSTS_ANNOTATION];
        assert_eq!(annotated, &console_hosts_annotation(&c));
        assert!(annotated.contains("demo-console.chat.svc") && annotated.contains("localhost"), "{annotated}");
    }
}
