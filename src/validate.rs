//! Validation of everything a user types: app names, env keys, domains, port specs, key names.
//!
//! Pure functions only. Every value that later reaches a file name, a container's environment
//! or an nginx template passes through here first, so nothing a user sends can escape its slot.

use std::fmt;

/// A refused input: one line saying what was wrong and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid(msg: impl Into<String>) -> Invalid {
    Invalid(msg.into())
}

/// App names: `^[a-z][a-z0-9-]{0,62}$` (they become directory, container and nginx names).
pub fn app_name(name: &str) -> Result<&str, Invalid> {
    let ok = name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(name)
    } else {
        Err(invalid(format!(
            "Invalid app name {}: use a lowercase letter, then up to 62 lowercase letters, digits or dashes",
            quoted(name)
        )))
    }
}

/// Environment variable keys: `^[A-Za-z_][A-Za-z0-9_]*$`.
pub fn env_key(key: &str) -> Result<&str, Invalid> {
    let ok = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && key.len() <= 255;
    if ok {
        Ok(key)
    } else {
        Err(invalid(format!(
            "Invalid env key {}: use a letter or _ followed by letters, digits or _",
            quoted(key)
        )))
    }
}

/// Environment values: anything but NUL, which no process environment can hold.
pub fn env_value<'a>(key: &str, value: &'a str) -> Result<&'a str, Invalid> {
    if value.contains('\0') {
        return Err(invalid(format!("Invalid value for {key}: it contains a NUL byte")));
    }
    Ok(value)
}

/// Splits `KEY=value` at the first `=`, validating both halves.
pub fn env_pair(pair: &str) -> Result<(String, String), Invalid> {
    let Some((key, value)) = pair.split_once('=') else {
        return Err(invalid(format!(
            "Invalid env pair {}: expected KEY=value",
            quoted(pair)
        )));
    };
    env_key(key)?;
    env_value(key, value)?;
    Ok((key.to_string(), value.to_string()))
}

/// Domain names per RFC 1123, lowercased; `*.` is allowed as the first label (nginx wildcard).
/// Only `[a-z0-9.-]` survive, so a domain can never carry nginx syntax (`;`, `{`, spaces…).
pub fn domain(raw: &str) -> Result<String, Invalid> {
    let name = raw.to_ascii_lowercase();
    let bad = |why: &str| invalid(format!("Invalid domain {}: {why}", quoted(raw)));
    if name.is_empty() {
        return Err(bad("it is empty"));
    }
    if name.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    for label in rest.split('.') {
        if label.is_empty() {
            return Err(bad("it has an empty label"));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 characters"));
        }
        if !label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(bad("use only letters, digits, dashes and dots"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label starts or ends with a dash"));
        }
    }
    Ok(name)
}

/// Names of SSH keys: short, printable, no spaces.
pub fn key_name(name: &str) -> Result<&str, Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(invalid(format!(
            "Invalid key name {}: use up to 64 letters, digits, '.', '_', '@' or '-'",
            quoted(name)
        )))
    }
}

/// The protocol a port mapping serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        })
    }
}

/// `scheme:host-port:container-port`, as dokku writes it (`http:80:5000`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct PortMap {
    pub scheme: Scheme,
    pub host: u16,
    pub container: u16,
}

impl PortMap {
    pub const DEFAULT: PortMap = PortMap { scheme: Scheme::Http, host: 80, container: 5000 };
}

impl fmt::Display for PortMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.scheme, self.host, self.container)
    }
}

pub fn port_map(spec: &str) -> Result<PortMap, Invalid> {
    let bad = |why: &str| {
        invalid(format!(
            "Invalid port mapping {}: {why} (expected scheme:host-port:container-port, e.g. http:80:5000)",
            quoted(spec)
        ))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let [scheme, host, container] = parts[..] else {
        return Err(bad("wrong number of fields"));
    };
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(bad("the scheme must be http or https")),
    };
    Ok(PortMap { scheme, host: port(host).map_err(|_| bad("bad host port"))?, container: port(container).map_err(|_| bad("bad container port"))? })
}

/// A TCP port, 1 to 65535.
pub fn port(raw: &str) -> Result<u16, Invalid> {
    match raw.parse::<u16>() {
        Ok(p) if p > 0 && raw.chars().all(|c| c.is_ascii_digit()) => Ok(p),
        _ => Err(invalid(format!("Invalid port {}: expected a number from 1 to 65535", quoted(raw)))),
    }
}

/// Quotes a user value for an error message, escaping control characters so that the
/// message stays on one line whatever was sent.
pub fn quoted(value: &str) -> String {
    let shown: String = value.chars().take(80).collect();
    let ellipsis = if value.chars().count() > 80 { "…" } else { "" };
    format!("{:?}{ellipsis}", shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_follow_the_pattern() {
        for ok in ["a", "myapp", "my-app-2", &"a".repeat(63)] {
            assert!(app_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1app", "-app", "My", "my_app", "my.app", "../x", "a b", &"a".repeat(64), "app;rm"] {
            assert!(app_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_keys_follow_the_pattern() {
        for ok in ["A", "_", "DATABASE_URL", "a1", "_x9"] {
            assert!(env_key(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "ÄB", "A$"] {
            assert!(env_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn env_pairs_split_at_the_first_equals() {
        assert_eq!(env_pair("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(env_pair("A=").unwrap(), ("A".into(), "".into()));
        assert_eq!(env_pair("G=hello world").unwrap(), ("G".into(), "hello world".into()));
        assert!(env_pair("NOEQUALS").is_err());
        assert!(env_pair("=value").is_err());
        assert!(env_pair("A=x\0y").is_err());
    }

    #[test]
    fn domains_are_rfc1123_and_cannot_inject_nginx() {
        assert_eq!(domain("WWW.Example.com").unwrap(), "www.example.com");
        for ok in ["localhost", "a.b.c", "x-1.example.org", "*.example.com", "123.example"] {
            assert!(domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "-a.com", "a-.com", "a..com", ".a.com", "a.com.", "a_b.com", "a.com;", "a.com{",
            "evil.com; return 200", "a b.com", "a.*.com", "*", "a.com\n", &"a".repeat(64),
        ] {
            assert!(domain(bad).is_err(), "{bad:?}");
        }
        let long = ["abcdefghij"; 26].join(".");
        assert!(domain(&long).is_err());
    }

    #[test]
    fn port_maps_parse_and_print() {
        let p = port_map("http:80:5000").unwrap();
        assert_eq!(p, PortMap::DEFAULT);
        assert_eq!(p.to_string(), "http:80:5000");
        assert_eq!(port_map("https:443:8080").unwrap().scheme, Scheme::Https);
        for bad in ["", "http:80", "tcp:80:5000", "http:0:5000", "http:80:70000", "http:+80:5000", "http:80:5000:1", "http: 80:5000"] {
            assert!(port_map(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_names() {
        assert!(key_name("me").is_ok());
        assert!(key_name("alice@laptop").is_ok());
        assert!(key_name("").is_err());
        assert!(key_name("a b").is_err());
        assert!(key_name("-x").is_err());
    }

    #[test]
    fn quoted_values_stay_on_one_line() {
        assert_eq!(quoted("a\nb"), "\"a\\nb\"");
        assert!(quoted(&"x".repeat(200)).ends_with('…'));
    }
}
