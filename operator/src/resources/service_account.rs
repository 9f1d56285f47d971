//! The nodes' ServiceAccount. Its token is mounted for one purpose: the
//! elected node labels its own pod, with a Role allowing nothing else
//! ([`super::node_role`]).

use k8s_openapi::api::core::v1::ServiceAccount;

use chat_k8s::ReplicatedChat;

use super::{names, owned_meta};

pub fn build(cluster: &ReplicatedChat) -> ServiceAccount {
    ServiceAccount {
        metadata: owned_meta(cluster, names(cluster).service_account()),
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }
}
