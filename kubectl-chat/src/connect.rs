//! The two ways to reach a cluster: directly by address (`--addr`), or through
//! the Kubernetes API (kube mode), the way `kubectl cnpg` does.
//!
//! Kube mode resolves the ReplicatedChat (`--cluster`, or the only one in the
//! namespace), seeds the client with the pod its client Service selects (the
//! leader) plus the other running pods, and dials every member address through
//! a port-forward. The client's own leader discovery then re-resolves after a
//! failover: it asks the members who leads and port-forwards to that pod.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chat_client::{Client, ClientOptions, Security};
use chat_k8s::names::ClusterNames;
use chat_k8s::portforward::PortForwardDial;
use chat_k8s::resolve::{self, ResolveError};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, ResourceExt};

/// A client for the chosen cluster and the key its saved session is filed under.
pub struct Connection {
    pub client: Client,
    pub cluster_key: String,
    /// The Kubernetes side, in kube mode.
    pub kube: Option<KubeCluster>,
}

/// Where the user pointed us.
pub struct Target<'a> {
    pub addrs: &'a [String],
    /// `--ca`: the CA to verify members against.
    pub ca: Option<&'a std::path::Path>,
    /// `--plaintext`: no TLS.
    pub plaintext: bool,
    pub kubeconfig: Option<&'a str>,
    pub context: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub cluster: Option<&'a str>,
}

impl Target<'_> {
    /// What the flags say about TLS: `--ca` (verify against that CA),
    /// `--plaintext`, or neither (`None`: each mode decides).
    fn chosen_security(&self) -> anyhow::Result<Option<Security>> {
        Ok(match (self.ca, self.plaintext) {
            (Some(ca), _) => Some(Security::ca_file(ca)?),
            (None, true) => Some(Security::Plaintext),
            (None, false) => None,
        })
    }
}

impl Connection {
    /// # Errors
    /// A malformed address, an unusable kubeconfig, or a ReplicatedChat that
    /// cannot be found ([`ResolveError`], which says whether it is the user's
    /// or the cluster's fault).
    pub async fn open(target: &Target<'_>, deadline: Duration) -> anyhow::Result<Self> {
        let addrs: Vec<String> = target.addrs.iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
        if !addrs.is_empty() {
            let Some(security) = target.chosen_security()? else {
                anyhow::bail!(
                    "the cluster's CA certificate is needed to verify it: --ca FILE or CHAT_CA (`chat-node dev` \
                     prints its path); --plaintext for a cluster that serves without TLS"
                )
            };
            let options = ClientOptions { deadline, ..ClientOptions::new(security) };
            let mut sorted = addrs.clone();
            sorted.sort();
            return Ok(Self {
                client: Client::new(addrs, options)?,
                cluster_key: format!("addr:{}", sorted.join(",")),
                kube: None,
            });
        }
        Self::through_kubernetes(target, deadline).await
    }

    async fn through_kubernetes(target: &Target<'_>, deadline: Duration) -> anyhow::Result<Self> {
        let cluster = KubeCluster::open(target).await?;
        let KubeCluster { kube, server, names } = cluster.clone();
        let namespace = names.namespace.clone();
        let pods = Api::namespaced(kube.clone(), &namespace);
        let services = Api::namespaced(kube.clone(), &namespace);
        let seeds = resolve::seeds(&services, &pods, &names).await.map_err(unavailable_if)?;
        tracing::debug!(?seeds, "kube mode seeds");
        // TLS inside the tunnel too, verifying each pod's own name against the
        // cluster's CA: the operator's ConfigMap, unless `--ca` names another.
        let security = match target.chosen_security()? {
            Some(security) => security,
            None => {
                let config_maps = Api::namespaced(kube.clone(), &namespace);
                let pem = resolve::ca_certificate(&config_maps, &names).await.map_err(unavailable_if)?;
                Security::ca_pem(pem.as_bytes())?
            }
        };
        // A tunnel through the API server takes longer to open than a TCP connect.
        let options =
            ClientOptions { deadline, connect_timeout: Duration::from_secs(5), ..ClientOptions::new(security.clone()) };
        let dial = PortForwardDial::new(kube, namespace.clone(), security);
        let client = Client::with_dial(seeds, options, Arc::new(dial))?;
        Ok(Self { client, cluster_key: format!("kube:{server}/{namespace}/{}", names.cluster), kube: Some(cluster) })
    }
}

/// The Kubernetes side of kube mode: a client of the API server and the
/// names of the ReplicatedChat the flags chose.
#[derive(Clone)]
pub struct KubeCluster {
    pub kube: kube::Client,
    /// The API server's URL (part of the session key).
    pub server: String,
    pub names: ClusterNames,
}

impl KubeCluster {
    /// # Errors
    /// An unusable kubeconfig, or a ReplicatedChat that cannot be found.
    pub async fn open(target: &Target<'_>) -> anyhow::Result<Self> {
        let config_options = KubeConfigOptions { context: target.context.map(str::to_string), ..Default::default() };
        let config = match target.kubeconfig {
            Some(path) => {
                let kubeconfig = Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {path}"))?;
                kube::Config::from_custom_kubeconfig(kubeconfig, &config_options).await
            }
            None => kube::Config::from_kubeconfig(&config_options).await,
        }
        .context("no cluster address (--addr or CHAT_ADDR) and no usable kubeconfig for kube mode")?;
        let namespace = target.namespace.map_or_else(|| config.default_namespace.clone(), str::to_string);
        let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let kube = kube::Client::try_from(config).context("building the Kubernetes client")?;

        let cluster = resolve::find_cluster(&kube, &namespace, target.cluster).await.map_err(unavailable_if)?;
        let names = ClusterNames::new(cluster.name_any(), namespace);
        Ok(Self { kube, server, names })
    }
}

/// Resolution failures that are the cluster's fault exit with code 2, like an
/// unavailable chat cluster; the rest are the user's (code 1).
fn unavailable_if(e: ResolveError) -> anyhow::Error {
    if e.is_unavailable() {
        anyhow::Error::new(chat_client::Error::Unavailable(e.to_string()))
    } else {
        anyhow::Error::new(e)
    }
}
