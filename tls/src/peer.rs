//! Who is calling: the role in the certificate a caller presented on a
//! mutual-TLS port, and a tonic interceptor that admits only given roles.

use tonic::{Request, Status};

use crate::role::{Role, parse_leaf};

/// The role of the certificate the caller presented, if any: `None` on a
/// plaintext connection, without a certificate, or with a common name no
/// role carries.
pub fn peer_role<T>(request: &Request<T>) -> Option<Role> {
    let certs = request.peer_certs()?;
    parse_leaf(certs.first()?).ok()?.role
}

/// An interceptor admitting callers whose certificate carries one of
/// `allowed`; everyone else gets PERMISSION_DENIED naming what was needed.
/// The handshake has already checked the certificate's signature.
///
/// With `enforce` false (a node run with `--insecure-peer-plaintext`, which
/// logs a warning at start) everyone is admitted: there are no certificates.
pub fn require(
    allowed: &'static [Role],
    enforce: bool,
) -> impl FnMut(Request<()>) -> Result<Request<()>, Status> + Clone {
    move |request: Request<()>| {
        if !enforce {
            return Ok(request);
        }
        match peer_role(&request) {
            Some(role) if allowed.contains(&role) => Ok(request),
            role => Err(Status::permission_denied(format!(
                "this call needs a client certificate with common name {}; the caller presented {}",
                allowed.iter().map(|r| r.common_name()).collect::<Vec<_>>().join(" or "),
                role.map_or("none of them".to_string(), |r| r.common_name().to_string()),
            ))),
        }
    }
}
