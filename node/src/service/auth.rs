//! Session tokens: minted at login, carried as `authorization: Bearer <token>`,
//! and known to the cluster only by their SHA-256.

use chat_proto::AUTHORIZATION;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tonic::Request;

use crate::error::{Error, Result};

/// A fresh random token (256 bits, hex) and the hash the cluster stores.
pub fn new_token() -> (String, [u8; 32]) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = hex::encode(bytes);
    let hash = hash(&token);
    (token, hash)
}

pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token hash of the session a request carries.
///
/// # Errors
/// `Unauthenticated` when the metadata entry is missing or malformed.
pub fn token_hash<T>(request: &Request<T>) -> Result<[u8; 32]> {
    let value = request.metadata().get(AUTHORIZATION).ok_or_else(|| {
        Error::Unauthenticated("missing session: log in and send `authorization: Bearer <token>`".into())
    })?;
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Unauthenticated("authorization must be `Bearer <token>`".into()))?;
    Ok(hash(token))
}

/// Hashes a password with argon2id and a random salt (CPU-heavy: call off the async runtime).
///
/// # Errors
/// Only if argon2 itself fails, which its defaults never do.
pub fn hash_password(password: &str) -> Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing password: {e}")))
}

/// Checks a password against a stored argon2 PHC string (CPU-heavy, like [`hash_password`]).
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc)
        .is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let phc = hash_password("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify_password("correct horse", &phc));
        assert!(!verify_password("wrong horse", &phc));
        assert!(!verify_password("x", "not a phc string"));
    }

    #[test]
    fn tokens_come_from_bearer_metadata() {
        let (token, hash) = new_token();
        assert_eq!(token.len(), 64);
        let mut req = Request::new(());
        assert!(token_hash(&req).is_err());
        req.metadata_mut().insert(AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        assert_eq!(token_hash(&req).unwrap(), hash);
        req.metadata_mut().insert(AUTHORIZATION, format!("bearer  {token}").parse().unwrap());
        assert_eq!(token_hash(&req).unwrap(), hash, "the scheme is case-insensitive");
        req.metadata_mut().insert(AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(token_hash(&req).is_err());
        req.metadata_mut().insert(AUTHORIZATION, "Bearer".parse().unwrap());
        assert!(token_hash(&req).is_err());
    }
}
