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

pub fn glob(pattern: &str) -> Result<glob::Pattern> {
    let pattern = if pattern.is_empty() { "*" } else { pattern };
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

#[cfg(test)]
mod tests {
    use super::*;

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
