//! What nginx answers before an app sees a request: `maintenance:*` (a 503 page) and
//! `http-auth:*` (HTTP basic auth, with addresses that pass without it). Stored in the app's
//! app.toml; nginx holds one line per app (`proxy::gates`) and asks the daemon to check a
//! password it has not seen (`server::gatekeeper`).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::validate::Invalid;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Gates {
    /// `maintenance:enable`: every request gets the maintenance page (503).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub maintenance: bool,
    /// `maintenance:custom-page`: a tag of the page the app has (kept in its directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
    #[serde(skip_serializing_if = "HttpAuth::is_empty")]
    pub http_auth: HttpAuth,
}

impl Gates {
    pub fn is_empty(&self) -> bool {
        *self == Gates::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpAuth {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub enabled: bool,
    /// User name → its password's Argon2id hash (PHC string).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub users: BTreeMap<String, String>,
    /// Addresses and IPv4/IPv6 networks (CIDR) whose requests pass without a password.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
}

impl HttpAuth {
    pub fn is_empty(&self) -> bool {
        *self == HttpAuth::default()
    }

    /// A short tag of the users, their hashes and the allowed addresses: nginx forgets
    /// what it verified when it changes. Pure.
    pub fn tag(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for (user, hash) in &self.users {
            h.update(user.as_bytes());
            h.update([0]);
            h.update(hash.as_bytes());
            h.update([0]);
        }
        for allowed in &self.allowed {
            h.update([1]);
            h.update(allowed.as_bytes());
        }
        h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `user` with `password` is one of the users.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        use argon2::password_hash::PasswordVerifier;
        let Some(stored) = self.users.get(user) else {
            // As long as a known user's check: whether a name exists does not show.
            if let Some(dummy) = dummy_hash() {
                let _ = argon2::Argon2::default().verify_password(password.as_bytes(), &dummy);
            }
            return false;
        };
        argon2::password_hash::phc::PasswordHash::new(stored).is_ok_and(|parsed| argon2::Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    }

    /// Whether requests from `ip` pass without a password. Pure.
    pub fn allows(&self, ip: IpAddr) -> bool {
        self.allowed.iter().filter_map(|a| Cidr::parse(a).ok()).any(|c| c.contains(ip))
    }
}

/// A hash of no user's password, checked against when the user does not exist.
fn dummy_hash() -> Option<argon2::password_hash::phc::PasswordHash> {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let text = HASH.get_or_init(|| hash_password(&format!("{:032x}", rand::random::<u128>())).unwrap_or_default());
    argon2::password_hash::phc::PasswordHash::new(text).ok()
}

/// Argon2id (the crate's defaults: OWASP's 19 MiB, 2 passes) with a random salt.
pub fn hash_password(password: &str) -> Result<String, Invalid> {
    use argon2::password_hash::PasswordHasher;
    argon2::Argon2::default().hash_password(password.as_bytes()).map(|h| h.to_string()).map_err(|e| Invalid(format!("cannot hash the password: {e}")))
}

/// A user name basic auth can carry: 1–64 printable characters, no `:` (it ends the name
/// in the header) and no space. Pure.
pub fn user_name(name: &str) -> Result<&str, Invalid> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
        return Err(Invalid(format!("Invalid user name {:?}: 1 to 64 printable characters, without spaces or ':'", name)));
    }
    Ok(name)
}

/// A password: 1–256 bytes of UTF-8 without control characters (one line). Pure.
pub fn password(text: &str) -> Result<&str, Invalid> {
    if text.is_empty() || text.len() > 256 || text.chars().any(char::is_control) {
        return Err(Invalid("Invalid password: 1 to 256 characters on one line".into()));
    }
    Ok(text)
}

/// An address or network: `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    /// Pure. A host part that is not zero is refused (`10.1.2.3/8` is surely a typo).
    pub fn parse(text: &str) -> Result<Cidr, Invalid> {
        let bad = || Invalid(format!("Invalid address {:?}: give an IP address or network, e.g. 203.0.113.7 or 10.0.0.0/8", text));
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len {
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) && l.len() <= 3 => l.parse::<u8>().map_err(|_| bad())?,
            Some(_) => return Err(bad()),
            None => max,
        };
        if len > max {
            return Err(bad());
        }
        let cidr = Cidr { addr, len };
        if cidr.network() != bits(addr) {
            return Err(Invalid(format!("Invalid network {text:?}: its address has bits set past /{len} (did you mean {}?)", cidr.canonical())));
        }
        Ok(cidr)
    }

    fn mask(&self) -> u128 {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        if self.len == 0 { 0 } else { (u128::MAX << (width - u32::from(self.len))) & (u128::MAX >> (128 - width)) }
    }

    fn network(&self) -> u128 {
        bits(self.addr) & self.mask()
    }

    /// Pure.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && bits(ip) & self.mask() == self.network()
    }

    /// `ADDR/LEN` with the host bits cleared. Pure.
    pub fn canonical(&self) -> String {
        let net = self.network();
        let addr = match self.addr {
            IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(net as u32)),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(net)),
        };
        format!("{addr}/{}", self.len)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_and_addresses_are_parsed_matched_and_typos_refused() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains("10.200.3.4".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.1.1".parse().unwrap()), "an IPv4 client on a dual-stack socket");
        let one = Cidr::parse("192.0.2.7").unwrap();
        assert_eq!(one.len, 32);
        assert!(one.contains("192.0.2.7".parse().unwrap()) && !one.contains("192.0.2.8".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()) && !v6.contains("2001:db9::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/8/8", "host.example", "10.0.0.0/-1", "10.0.0.0/ 8", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
        let typo = Cidr::parse("10.1.2.3/8").unwrap_err().0;
        assert!(typo.contains("10.0.0.0/8"), "{typo}");
    }

    #[test]
    fn passwords_are_hashed_salted_and_verified() {
        let mut auth = HttpAuth::default();
        let hash = hash_password("s3cret pass").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert_ne!(hash, hash_password("s3cret pass").unwrap(), "salted");
        auth.users.insert("ann".into(), hash);
        assert!(auth.verify("ann", "s3cret pass"));
        assert!(!auth.verify("ann", "s3cret"));
        assert!(!auth.verify("bob", "s3cret pass"));
        let tag = auth.tag();
        auth.users.insert("bob".into(), hash_password("x").unwrap());
        assert_ne!(tag, auth.tag());
        let tag = auth.tag();
        auth.allowed.push("10.0.0.0/8".into());
        assert_ne!(tag, auth.tag());
    }

    #[test]
    fn user_names_and_passwords_are_checked() {
        assert!(user_name("ann").is_ok() && user_name("a.b-c_d@e").is_ok());
        for bad in ["", "a b", "a:b", "a\tb", &"x".repeat(65)] {
            assert!(user_name(bad).is_err(), "{bad:?}");
        }
        assert!(password("correct horse battery staple").is_ok());
        assert!(password("").is_err() && password("a\nb").is_err());
    }
}
