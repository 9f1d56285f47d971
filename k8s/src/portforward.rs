//! Reaching a node from outside the cluster: every gRPC connection to a
//! member's advertised address (`<pod>.<peers>.<ns>.svc:<port>`) becomes a
//! port-forward to that pod through the API server, as `kubectl port-forward`
//! does. Because it maps *any* member address to its pod, the client library's
//! leader discovery works unchanged: after a failover it learns the new
//! leader's address from GetStatus and reaches it the same way.

use std::time::Duration;

use chat_client::Security;
use chat_client::dial::{Dial, endpoint};
use chat_tls::connect::{Connecting, Io, Transport};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tonic::transport::Channel;

use crate::names::{namespace_of, pod_and_port};

/// A [`Dial`] that tunnels each connection through the Kubernetes API.
#[derive(Clone)]
pub struct PortForwardDial {
    client: kube::Client,
    /// For addresses that do not name a namespace (`<pod>:<port>`).
    default_namespace: String,
    /// TLS inside the tunnel, or plaintext.
    security: Security,
}

impl std::fmt::Debug for PortForwardDial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortForwardDial").finish_non_exhaustive()
    }
}

impl PortForwardDial {
    /// Dials pods in the namespace each address names (`<pod>.<service>.<namespace>…`),
    /// else in `default_namespace`, with `security` inside the tunnel.
    pub fn new(client: kube::Client, default_namespace: impl Into<String>, security: Security) -> Self {
        Self { client, default_namespace: default_namespace.into(), security }
    }
}

/// Why a tunnel could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum TunnelError {
    #[error("port-forward to pod {pod}: {source}")]
    Api { pod: String, source: kube::Error },
    #[error("port-forward to pod {pod}: the API server opened no stream for port {port}")]
    NoStream { pod: String, port: u16 },
}

/// One pod's port, reached through the API server.
#[derive(Clone)]
struct Tunnel {
    pods: Api<Pod>,
    pod: String,
    port: u16,
}

impl Transport for Tunnel {
    type Io = Box<dyn Io>;

    fn open(&self, _uri: &http::Uri) -> Connecting<Box<dyn Io>> {
        let Tunnel { pods, pod, port } = self.clone();
        Box::pin(async move {
            let mut forwarder = pods
                .portforward(&pod, &[port])
                .await
                .map_err(|source| TunnelError::Api { pod: pod.clone(), source })?;
            let stream = forwarder.take_stream(port).ok_or_else(|| TunnelError::NoStream { pod, port })?;
            // The forwarder's task lives on (it is not aborted on drop) until the stream closes.
            Ok(Box::new(stream) as Box<dyn Io>)
        })
    }
}

impl Dial for PortForwardDial {
    fn dial(&self, addr: &str, connect_timeout: Duration) -> chat_client::Result<Channel> {
        let (pod, port) = pod_and_port(addr).ok_or_else(|| {
            chat_client::Error::Invalid(format!("address {addr:?} does not name a pod (want <pod>[.<domain>]:<port>)"))
        })?;
        let namespace = namespace_of(addr).unwrap_or(&self.default_namespace);
        let tunnel = Tunnel { pods: Api::namespaced(self.client.clone(), namespace), pod, port };
        // TLS (when on) runs inside the tunnel and verifies the pod's own
        // name: the address dialled, not the API server's.
        Ok(self.security.channel(endpoint(addr)?.connect_timeout(connect_timeout), tunnel))
    }
}
