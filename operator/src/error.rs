//! The operator's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("chat node: {0}")]
    Node(String),
    #[error("object has no {0}")]
    MissingField(&'static str),
    #[error("certificates: {0}")]
    Certificates(String),
    #[error("leader label: {0}")]
    Route(#[from] chat_k8s::routing::RouteError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Low-cardinality label for the reconcile failure metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Node(_) => "node",
            Error::MissingField(_) => "object",
            Error::Certificates(_) => "certificates",
            Error::Route(_) => "route",
        }
    }
}
