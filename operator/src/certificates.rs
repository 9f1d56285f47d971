//! Each cluster's certificates. By default the operator keeps a CA per
//! ReplicatedChat (in the `<name>-ca` Secret, which only it reads), issues
//! the nodes' certificate into the `<name>-tls` Secret the pods mount, renews
//! it well before it expires (the nodes pick the new files up without a
//! restart), publishes the CA certificate alone in the `<name>-ca` ConfigMap
//! for clients, issues an admin certificate (`chat-admin`, for backups) into
//! the `<name>-admin-tls` Secret — whoever may read it is an admin — the
//! web console's HTTPS certificate into `<name>-console-tls` while
//! `spec.console` runs one, and
//! issues itself a client certificate in memory — never stored — to reach
//! the nodes' peer ports. With `spec.tls` it uses the Secrets you bring
//! instead, renews nothing and makes no admin or console certificate (issue
//! them from your CA: common name `chat-admin`; the console's Service names).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chat_client::Security;
use chat_k8s::{ClusterNames, ReplicatedChat};
use chat_tls::role::parse_leaf;
use chat_tls::{Ca, Leaf, Live, Material, Role};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::runtime::events::EventType;

use crate::controller::Context;
use crate::error::{Error, Result};
use crate::reconcile::ssa;
use crate::resources::certificates::{self, HOSTS_ANNOTATION, entry, hosts_annotation};

/// A node certificate is renewed once it has less than this left (of 90 days).
pub const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// The operator's in-memory certificate is replaced after this long (it is valid for 90 days).
const OPERATOR_CERT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The operator's own client certificates, one per cluster.
#[derive(Default)]
pub struct OperatorCerts {
    /// A std Mutex: held only to look up or replace an entry.
    by_cluster: Mutex<HashMap<String, Held>>,
}

struct Held {
    ca_pem: String,
    issued: Instant,
    cert_pem: String,
    security: Security,
}

impl OperatorCerts {
    /// A client certificate of `ca` for the cluster `names`: the one held, or a new one.
    fn for_cluster(&self, names: &ClusterNames, ca: &Ca) -> Result<(String, Security)> {
        let key = format!("{}/{}", names.namespace, names.cluster);
        let mut held = self.by_cluster.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(h) =
            held.get(&key).filter(|h| h.ca_pem == ca.cert_pem() && h.issued.elapsed() < OPERATOR_CERT_MAX_AGE)
        {
            return Ok((h.cert_pem.clone(), h.security.clone()));
        }
        let issued = ca.issue(&Leaf::client(Role::Operator)).map_err(tls_error)?;
        let material = Material::from_pem(
            ca.cert_pem().as_bytes(),
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
            "operator certificate",
        )
        .map_err(tls_error)?;
        let security = Security::Tls(Live::fixed(chat_tls::config::mutual_client(&material).map_err(tls_error)?));
        let entry = Held {
            ca_pem: ca.cert_pem().to_string(),
            issued: Instant::now(),
            cert_pem: issued.cert_pem.clone(),
            security: security.clone(),
        };
        held.insert(key, entry);
        Ok((issued.cert_pem, security))
    }
}

fn tls_error(e: chat_tls::Error) -> Error {
    Error::Certificates(e.to_string())
}

/// Makes sure the cluster's certificates exist and are current, and tells
/// [`crate::nodes::Nodes`] how to reach its nodes.
///
/// # Errors
/// API failures; `Certificates` for Secrets that are missing (brought ones) or unusable.
pub async fn ensure(ctx: &Context, cluster: &ReplicatedChat, names: &ClusterNames) -> Result<()> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &names.namespace);
    let (ca_pem, key, security) = match (&cluster.spec.tls.node_secret, &cluster.spec.tls.operator_secret) {
        (Some(node), Some(operator)) => brought(&secrets, node, operator).await?,
        _ => issued(ctx, cluster, names, &secrets).await?,
    };
    ssa(ctx, &names.namespace, &certificates::ca_config_map(cluster, &ca_pem)).await?;
    ctx.nodes.secure(names, &key, security);
    Ok(())
}

/// The operator's own CA and what it issued.
async fn issued(
    ctx: &Context,
    cluster: &ReplicatedChat,
    names: &ClusterNames,
    secrets: &Api<Secret>,
) -> Result<(String, String, Security)> {
    let ns = &names.namespace;
    let ca = match secrets.get_opt(&names.ca_secret()).await? {
        Some(secret) => {
            let (cert, key) = (entry(&secret, "ca.crt"), entry(&secret, "ca.key"));
            let (Some(cert), Some(key)) = (cert, key) else {
                return Err(Error::Certificates(format!("Secret {} has no ca.crt and ca.key", names.ca_secret())));
            };
            Ca::from_pem(&cert, &key).map_err(tls_error)?
        }
        None => {
            let ca = Ca::generate(&format!("replicated-chat {ns}/{}", names.cluster)).map_err(tls_error)?;
            ssa(ctx, ns, &certificates::ca_secret(cluster, ca.cert_pem(), &ca.key_pem())).await?;
            ctx.publish(cluster, EventType::Normal, "CACreated", "Certificates", "made the cluster's CA".into(), None)
                .await;
            ca
        }
    };
    let issuer = Issuer { ctx, cluster, secrets, ca: &ca, ns };
    let nodes = Leaf::node(names.node_hosts());
    let hosts = hosts_annotation(cluster);
    if let Some((why, renewal)) =
        issuer.keep(&names.tls_secret(), Some(&hosts), nodes, certificates::tls_secret).await?
    {
        // A renewal is its own Event series: a repeat of one keeps its first note.
        let reason = if renewal { "CertificateRenewed" } else { "CertificateIssued" };
        let note = format!("issued the nodes' certificate ({why}); nodes load it without restarting");
        ctx.publish(cluster, EventType::Normal, reason, "Certificates", note, None).await;
    }
    let admin = Leaf::client(Role::Admin);
    if let Some((why, _)) = issuer.keep(&names.admin_secret(), None, admin, certificates::admin_secret).await? {
        let note = format!("issued the admin certificate in Secret {} ({why})", names.admin_secret());
        ctx.publish(cluster, EventType::Normal, "AdminCertificateIssued", "Certificates", note, None).await;
    }
    if cluster.spec.console.as_ref().is_some_and(|c| c.enabled && c.tls_secret.is_none()) {
        let (name, console) = (names.console_tls_secret(), Leaf::console(names.console_hosts()));
        let hosts = certificates::console_hosts_annotation(cluster);
        if let Some((why, _)) = issuer.keep(&name, Some(&hosts), console, certificates::console_tls_secret).await? {
            let note = format!("issued the console's HTTPS certificate in Secret {name} ({why})");
            ctx.publish(cluster, EventType::Normal, "ConsoleCertificateIssued", "Certificates", note, None).await;
        }
    }
    let (cert_pem, security) = ctx.certs.for_cluster(names, &ca)?;
    Ok((ca.cert_pem().to_string(), cert_pem, security))
}

/// Makes a certificate's Secret: the cluster, then the CA, certificate and key (PEM).
type MakeSecret = fn(&ReplicatedChat, &str, &str, &str) -> Secret;

/// Keeps the certificates the cluster's CA issues in their Secrets.
struct Issuer<'a> {
    ctx: &'a Context,
    cluster: &'a ReplicatedChat,
    secrets: &'a Api<Secret>,
    ca: &'a Ca,
    ns: &'a str,
}

impl Issuer<'_> {
    /// Issues `leaf` into Secret `name` (made by `secret`) when
    /// [`certificate_stale`] says the one there must go. Returns why, and
    /// whether one was there (a renewal), when it issued.
    async fn keep(
        &self,
        name: &str,
        hosts: Option<&str>,
        leaf: Leaf,
        secret: MakeSecret,
    ) -> Result<Option<(&'static str, bool)>> {
        let current = self.secrets.get_opt(name).await?;
        let Some(why) = certificate_stale(current.as_ref(), self.ca.cert_pem(), hosts) else { return Ok(None) };
        let issued = self.ca.issue(&leaf).map_err(tls_error)?;
        ssa(self.ctx, self.ns, &secret(self.cluster, self.ca.cert_pem(), &issued.cert_pem, &issued.key_pem)).await?;
        Ok(Some((why, current.is_some())))
    }
}

/// Why a certificate Secret (the nodes' or the console's, with their
/// `hosts`; the admin's, with none) must be (re)issued, if it must.
fn certificate_stale(secret: Option<&Secret>, ca_pem: &str, hosts: Option<&str>) -> Option<&'static str> {
    let Some(secret) = secret else { return Some("there was none") };
    if entry(secret, "ca.crt").as_deref() != Some(ca_pem) {
        return Some("the CA changed");
    }
    let annotated = secret.metadata.annotations.as_ref().and_then(|a| a.get(HOSTS_ANNOTATION));
    if hosts.is_some() && annotated.map(String::as_str) != hosts {
        return Some("its host names changed");
    }
    let leaf = entry(secret, "tls.crt")
        .and_then(|pem| chat_tls::files::first_cert(pem.as_bytes()).ok())
        .and_then(|der| parse_leaf(&der).ok());
    match leaf {
        None => Some("the one there does not parse"),
        Some(leaf) if leaf.remaining() < RENEW_BEFORE => Some("the old one expires within 30 days"),
        Some(_) => None,
    }
}

/// Secrets the user brought (`spec.tls`): the node Secret must exist (the
/// pods mount it); the operator presents the other.
async fn brought(secrets: &Api<Secret>, node: &str, operator: &str) -> Result<(String, String, Security)> {
    let get = |name: &str| {
        let name = name.to_string();
        async move {
            secrets.get_opt(&name).await?.ok_or_else(|| {
                Error::Certificates(format!("spec.tls names Secret {name:?}, which does not exist (yet)"))
            })
        }
    };
    let node_secret = get(node).await?;
    let op = get(operator).await?;
    let part = |secret: &Secret, name: &str, key: &str| {
        entry(secret, key).ok_or_else(|| Error::Certificates(format!("Secret {name:?} has no {key}")))
    };
    let ca_pem = part(&node_secret, node, "ca.crt")?;
    let (cert, key) = (part(&op, operator, "tls.crt")?, part(&op, operator, "tls.key")?);
    let material =
        Material::from_pem(ca_pem.as_bytes(), cert.as_bytes(), key.as_bytes(), &format!("Secret {operator}"))
            .map_err(tls_error)?;
    let config = chat_tls::config::mutual_client(&material).map_err(tls_error)?;
    Ok((ca_pem, cert, Security::Tls(Live::fixed(config))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::tests::cluster;

    #[test]
    fn the_node_certificate_is_reissued_only_when_it_must_be() {
        let c = cluster(3);
        let names = crate::resources::names(&c);
        let ca = Ca::generate("test").unwrap();
        let hosts = hosts_annotation(&c);
        let secret_with = |ca: &Ca, leaf: Leaf| {
            let issued = ca.issue(&leaf).unwrap();
            certificates::tls_secret(&c, ca.cert_pem(), &issued.cert_pem, &issued.key_pem)
        };
        let fresh = secret_with(&ca, Leaf::node(names.node_hosts()));
        assert_eq!(certificate_stale(Some(&fresh), ca.cert_pem(), Some(&hosts)), None);
        assert_eq!(certificate_stale(None, ca.cert_pem(), Some(&hosts)), Some("there was none"));
        let other = Ca::generate("other").unwrap();
        assert_eq!(certificate_stale(Some(&fresh), other.cert_pem(), Some(&hosts)), Some("the CA changed"));
        assert_eq!(certificate_stale(Some(&fresh), ca.cert_pem(), Some("a,b")), Some("its host names changed"));
        let expiring = secret_with(&ca, Leaf::node(names.node_hosts()).valid_for(Duration::from_secs(29 * 86_400)));
        assert_eq!(
            certificate_stale(Some(&expiring), ca.cert_pem(), Some(&hosts)),
            Some("the old one expires within 30 days")
        );
        // The admin's certificate names no hosts: only its CA and age count.
        let admin = ca.issue(&Leaf::client(Role::Admin)).unwrap();
        let admin = certificates::admin_secret(&c, ca.cert_pem(), &admin.cert_pem, &admin.key_pem);
        assert_eq!(certificate_stale(Some(&admin), ca.cert_pem(), None), None);
        assert_eq!(certificate_stale(Some(&admin), other.cert_pem(), None), Some("the CA changed"));
    }

    #[test]
    fn the_consoles_certificate_is_its_own_role_and_follows_its_service_names() {
        let c = cluster(3);
        let names = crate::resources::names(&c);
        let ca = Ca::generate("test").unwrap();
        let issued = ca.issue(&Leaf::console(names.console_hosts())).unwrap();
        let secret = certificates::console_tls_secret(&c, ca.cert_pem(), &issued.cert_pem, &issued.key_pem);
        let hosts = certificates::console_hosts_annotation(&c);
        assert_eq!(certificate_stale(Some(&secret), ca.cert_pem(), Some(&hosts)), None);
        let renamed = hosts.replace("demo-console", "other-console");
        assert_eq!(certificate_stale(Some(&secret), ca.cert_pem(), Some(&renamed)), Some("its host names changed"));
        let leaf = parse_leaf(&chat_tls::files::first_cert(issued.cert_pem.as_bytes()).unwrap()).unwrap();
        assert_eq!(leaf.role, Some(Role::Console), "a console certificate is no node's, operator's or admin's");
    }

    #[test]
    fn the_operator_keeps_one_certificate_per_cluster_until_the_ca_changes() {
        let certs = OperatorCerts::default();
        let names = ClusterNames::new("demo", "chat");
        let ca = Ca::generate("test").unwrap();
        let (first, _) = certs.for_cluster(&names, &ca).unwrap();
        assert_eq!(certs.for_cluster(&names, &ca).unwrap().0, first);
        let leaf = parse_leaf(&chat_tls::files::first_cert(first.as_bytes()).unwrap()).unwrap();
        assert_eq!(leaf.role, Some(Role::Operator));
        let rotated = Ca::generate("rotated").unwrap();
        assert_ne!(certs.for_cluster(&names, &rotated).unwrap().0, first);
    }
}
