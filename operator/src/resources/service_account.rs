//! The nodes' ServiceAccount. Nodes never call the Kubernetes API, so it has
//! no role bound and its token is not mounted.

use k8s_openapi::api::core::v1::ServiceAccount;

use chat_k8s::ReplicatedChat;

use super::{names, owned_meta};

pub fn build(cluster: &ReplicatedChat) -> ServiceAccount {
    ServiceAccount {
        metadata: owned_meta(cluster, names(cluster).service_account()),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}
