//! TLS for replicated-chat, shared by the node, the client library, the
//! operator and the test tools.
//!
//! Layout, one idea per module:
//! - [`ca`]: a CA per cluster and the certificates it issues (rcgen).
//! - [`role`]: who a certificate belongs to (node or operator), read from it.
//! - [`files`]: certificates on disk, as a mounted Kubernetes TLS Secret lays them out.
//! - [`config`]: rustls server and client configurations.
//! - [`reload`]: [`Live`] values rebuilt when certificate files rotate.
//! - [`server`]: accepting TLS connections for tonic, bounded against strangers.
//! - [`connect`]: tonic channels over TLS, over TCP or any byte stream.
//! - [`peer`]: the caller's role on a mutual-TLS port; an interceptor checking it.

pub mod ca;
pub mod config;
pub mod connect;
pub mod error;
pub mod files;
pub mod peer;
pub mod reload;
pub mod role;
pub mod server;

pub use ca::{Ca, Issued, Leaf};
pub use config::ClientAuth;
pub use error::{Error, Result};
pub use files::{Material, TlsDir};
pub use peer::{peer_role, require};
pub use reload::{Live, watch};
pub use role::Role;
