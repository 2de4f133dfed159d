//! API tokens: `keys/tokens.toml`, a name, the SHA-256 of the token (the token itself is
//! shown once, at `tokens:create`, and kept nowhere), what it may do and on which apps, who
//! made it, when it expires and when it was last used.

use serde::{Deserialize, Serialize};
use sha2::Digest;

/// How much a caller may do, each level including the ones before it: read (reports, lists,
/// logs; config values hidden), deploy (also deploys, rollbacks, restarts, stops, starts),
/// write (every command on its apps), admin (everything: an admin key's). A key is write
/// (scoped) or admin; a token is what its maker chose, never more than the maker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Read,
    Deploy,
    #[default]
    Write,
    Admin,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Deploy => "deploy",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tokens {
    #[serde(default, rename = "token")]
    pub tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    pub name: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub scope: Access,
    /// The apps it may touch; None: every app (an admin key's token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps: Option<Vec<String>>,
    /// The key that made it (a token dies with its key), `root` for the server's root.
    pub created_by: String,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<i64>,
}

/// One-time dashboard logins (`dashboard:login`), `keys/dashboard-logins.toml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Logins {
    #[serde(default, rename = "login")]
    pub logins: Vec<Login>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Login {
    /// Hex SHA-256 of the one-time code.
    pub hash: String,
    /// The key whose holder asked (`root` on the server).
    pub key: String,
    pub expires_at: i64,
}

impl Logins {
    /// Takes the login whose code this is, if it has not expired (expired ones go too).
    pub fn take(&mut self, code: &str, now: i64) -> Option<Login> {
        let hashed = hash(code);
        self.logins.retain(|l| l.expires_at > now);
        let at = self.logins.iter().position(|l| same(&l.hash, &hashed))?;
        Some(self.logins.remove(at))
    }
}

/// What a new token looks like: `berth_` and 43 characters of base64url (256 random bits).
pub fn new_secret() -> String {
    use base64::Engine;
    format!("berth_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>()))
}

pub fn hash(secret: &str) -> String {
    sha2::Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Tokens {
    /// The token whose secret this is, if any and unexpired at `now`: every stored hash is
    /// compared, each in constant time.
    pub fn find(&self, secret: &str, now: i64) -> Option<&Token> {
        let hashed = hash(secret);
        let mut found = None;
        for token in &self.tokens {
            if same(&token.hash, &hashed) {
                found = Some(token);
            }
        }
        found.filter(|t| t.expires_at.is_none_or(|at| now < at))
    }
}

/// `30d`, `12h`, `90m`, `3600s` (or plain seconds): seconds. Pure.
pub fn duration(text: &str) -> Option<i64> {
    let (number, unit) = match text.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let n: i64 = number.parse().ok().filter(|n| *n > 0)?;
    let unit = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        'w' => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit).filter(|s| *s <= 10 * 366 * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_by_its_secret_until_it_expires() {
        let secret = new_secret();
        assert!(secret.starts_with("berth_") && secret.len() == 49, "{secret}");
        let token = Token { name: "ci".into(), hash: hash(&secret), scope: Access::Read, apps: None, created_by: "root".into(), created_at: 0, expires_at: Some(100), last_used_at: None };
        let tokens = Tokens { tokens: vec![token] };
        assert_eq!(tokens.find(&secret, 99).map(|t| t.name.as_str()), Some("ci"));
        assert!(tokens.find(&secret, 100).is_none(), "expired");
        assert!(tokens.find(&new_secret(), 0).is_none());
        assert!(tokens.find("", 0).is_none());
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration("30d"), Some(30 * 86_400));
        assert_eq!(duration("12h"), Some(43_200));
        assert_eq!(duration("90m"), Some(5400));
        assert_eq!(duration("3600"), Some(3600));
        for bad in ["", "d", "0d", "-1d", "30x", "1.5d", "99999d"] {
            assert_eq!(duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn access_levels_include_the_ones_before() {
        assert!(Access::Read < Access::Deploy && Access::Deploy < Access::Write && Access::Write < Access::Admin);
    }
}
