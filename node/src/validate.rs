//! Input rules, checked before anything is proposed. Each error names the field.

use crate::error::{Error, Result};

pub const MAX_USERNAME: usize = 32;
pub const MAX_BODY: usize = 4096;
pub const MAX_PASSWORD: usize = 1024;
pub const MIN_PASSWORD: usize = 8;
pub const MAX_REQUEST_ID: usize = 64;
pub const MAX_DELETE_IDS: usize = 1000;

/// 1–32 characters of `[A-Za-z0-9_.-]`.
pub fn username(field: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid(format!("{field} must not be empty")));
    }
    if name.len() > MAX_USERNAME {
        return Err(Error::invalid(format!(
            "{field} is {} characters; at most {MAX_USERNAME} are allowed",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))) {
        return Err(Error::invalid(format!(
            "{field} contains {c:?}; only letters, digits, '_', '.' and '-' are allowed"
        )));
    }
    Ok(())
}

/// A username as the cluster keeps it: valid, and lower case. Usernames are
/// case-insensitive (`Alice` is `alice`): every request's are folded here, so
/// two accounts can never differ only in case.
///
/// # Errors
/// As [`username`].
pub fn canonical_username(field: &str, name: &str) -> Result<String> {
    username(field, name)?;
    Ok(name.to_ascii_lowercase())
}

/// A username as a command in the log must carry it: valid and already folded.
///
/// # Errors
/// As [`username`], or `InvalidArgument` if it has upper-case letters.
pub fn stored_username(field: &str, name: &str) -> Result<()> {
    username(field, name)?;
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(Error::invalid(format!("{field} must be lower case (usernames are case-insensitive)")));
    }
    Ok(())
}

/// The longest ListAccounts pattern.
pub const MAX_PATTERN: usize = 64;

/// A password offered at login: bounded, so no one makes argon2 chew a megabyte.
pub fn password_length(p: &str) -> Result<()> {
    if p.len() > MAX_PASSWORD {
        return Err(Error::invalid(format!("password must be at most {MAX_PASSWORD} bytes")));
    }
    Ok(())
}

pub fn password(p: &str) -> Result<()> {
    if p.len() < MIN_PASSWORD {
        return Err(Error::invalid(format!("password must be at least {MIN_PASSWORD} bytes")));
    }
    if p.len() > MAX_PASSWORD {
        return Err(Error::invalid(format!("password must be at most {MAX_PASSWORD} bytes")));
    }
    Ok(())
}

/// Non-empty UTF-8 (guaranteed by protobuf strings) of at most 4 KiB.
pub fn body(b: &str) -> Result<()> {
    if b.trim().is_empty() {
        return Err(Error::invalid("body must not be empty"));
    }
    if b.len() > MAX_BODY {
        return Err(Error::invalid(format!("body is {} bytes; at most {MAX_BODY} are allowed", b.len())));
    }
    Ok(())
}

pub fn request_id(id: &str) -> Result<()> {
    if id.len() > MAX_REQUEST_ID {
        return Err(Error::invalid(format!("request_id is {} bytes; at most {MAX_REQUEST_ID} are allowed", id.len())));
    }
    Ok(())
}

/// 1–1000 message ids. (Id 0 never exists; the caller reports it as not found.)
pub fn delete_ids(ids: &[u64]) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::invalid("ids must name at least one message"));
    }
    if ids.len() > MAX_DELETE_IDS {
        return Err(Error::invalid(format!("ids has {} entries; at most {MAX_DELETE_IDS} are allowed", ids.len())));
    }
    Ok(())
}

/// The longest argon2 PHC string a node produces is ~100 bytes.
pub const MAX_PASSWORD_HASH: usize = 256;

/// An argon2id PHC string, as `auth::hash_password` makes: what the log may
/// carry in place of a password.
pub fn password_hash(phc: &str) -> Result<()> {
    if !phc.starts_with("$argon2id$") || phc.len() > MAX_PASSWORD_HASH {
        return Err(Error::invalid("password_hash must be an argon2id PHC string"));
    }
    argon2::password_hash::PasswordHash::new(phc)
        .map(|_| ())
        .map_err(|e| Error::invalid(format!("password_hash does not parse: {e}")))
}

/// A ListAccounts glob, folded to lower case like the names it matches.
pub fn glob(pattern: &str) -> Result<glob::Pattern> {
    if pattern.len() > MAX_PATTERN {
        return Err(Error::invalid(format!("pattern is {} bytes; at most {MAX_PATTERN} are allowed", pattern.len())));
    }
    let pattern = if pattern.is_empty() { "*".to_string() } else { pattern.to_ascii_lowercase() };
    let pattern = pattern.as_str();
    glob::Pattern::new(pattern).map_err(|e| Error::invalid(format!("pattern {pattern:?} is not a valid glob: {e}")))
}

/// Clamps a page size: 0 means `default`, more than `max` is an error.
pub fn page_size(field: &str, n: u32, default: usize, max: usize) -> Result<usize> {
    match n as usize {
        0 => Ok(default),
        n if n > max => Err(Error::invalid(format!("{field} is {n}; at most {max} is allowed"))),
        n => Ok(n),
    }
}

/// A strict `host:port`: a DNS name, an IPv4 address or a bracketed IPv6
/// address, then a port 1–65535. Nothing else — no scheme, user, path or
/// query — since members dial it and the operator derives pod names from it.
pub fn host_port(field: &str, value: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::invalid(format!("{field} {value:?} is not host:port: {why}")));
    if value.len() > 261 {
        return bad("too long");
    }
    let Some((host, port)) = value.rsplit_once(':') else { return bad("no port") };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) || !matches!(port.parse::<u16>(), Ok(1..)) {
        return bad("the port must be a number from 1 to 65535");
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return match v6.parse::<std::net::Ipv6Addr>() {
            Ok(_) => Ok(()),
            Err(_) => bad("not an IPv6 address in brackets"),
        };
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if !chat_tls::ca::is_dns_name(host) {
        return bad("the host must be a DNS name, an IPv4 address or [IPv6]");
    }
    Ok(())
}

/// A ListAccounts page token: empty, or the last username of the previous page.
pub fn page_token(token: &str) -> Result<String> {
    if token.is_empty() {
        return Ok(String::new());
    }
    canonical_username("page_token", token).map_err(|_| Error::invalid("page_token is not one this API returned"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_fold_to_lower_case() {
        assert_eq!(canonical_username("username", "Alice.B").unwrap(), "alice.b");
        assert!(stored_username("to", "alice").is_ok());
        assert!(stored_username("to", "Alice").unwrap_err().to_string().contains("lower case"));
        assert!(glob(&"*".repeat(65)).unwrap_err().to_string().contains("pattern"));
        assert!(glob("A*").unwrap().matches("alice"));
        assert!(page_token(&"x".repeat(1000)).is_err());
        assert_eq!(page_token("Bob").unwrap(), "bob");
    }

    #[test]
    fn host_ports_are_strict() {
        for ok in ["demo-0.demo-peers.ns.svc:50052", "127.0.0.1:1", "[::1]:65535", "localhost:50051"] {
            assert!(host_port("address", ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:65536",
            "host:+1",
            "http://x@y:1/path",
            "x@y:1",
            "y:1/path",
            "-a.b:1",
            "a..b:1",
            "a.b.:1",
            "::1:5",
            "[zz]:1",
            "a b:1",
            "evil\0:1",
        ] {
            let err = host_port("peer_address", bad).unwrap_err().to_string();
            assert!(err.starts_with("peer_address"), "{bad}: {err}");
        }
        assert!(host_port("address", &format!("{}:1", "a".repeat(64))).is_err());
    }

    #[test]
    fn usernames() {
        assert!(username("username", "alice_01.x-y").is_ok());
        assert!(username("username", "").unwrap_err().to_string().contains("username must not be empty"));
        assert!(username("to", &"a".repeat(33)).unwrap_err().to_string().contains("to is 33"));
        assert!(username("username", &"a".repeat(32)).is_ok());
        assert!(username("username", "al ice").is_err());
        assert!(username("username", "al\0ice").is_err(), "NUL separates key parts");
        assert!(username("username", "élodie").is_err());
    }

    #[test]
    fn bodies() {
        assert!(body("hi").is_ok());
        assert!(body("").is_err());
        assert!(body("   ").is_err());
        assert!(body(&"x".repeat(4096)).is_ok());
        assert!(body(&"x".repeat(4097)).unwrap_err().to_string().contains("body is 4097 bytes"));
    }

    #[test]
    fn pages_and_globs() {
        assert_eq!(page_size("limit", 0, 50, 1000).unwrap(), 50);
        assert!(page_size("limit", 1001, 50, 1000).is_err());
        assert!(glob("a[").is_err());
        assert!(glob("").unwrap().matches("anyone"));
    }
}
