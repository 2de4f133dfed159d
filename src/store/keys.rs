//! Who may connect: `keys/authorized.toml`, a name, a public key and a role per entry.

use russh::keys::ssh_key::{HashAlg, PublicKey};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuthorizedKeys {
    #[serde(default, rename = "key")]
    pub keys: Vec<AuthorizedKey>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthorizedKey {
    pub name: String,
    /// The public key in OpenSSH form (`ssh-ed25519 AAAA… comment`).
    pub public_key: String,
    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    #[serde(flatten)]
    pub role: Role,
    pub added_at: u64,
    /// A key scoped to apps that may create them with a first push (`--may-create`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub may_create: bool,
}

/// What a key may do: everything, or only the named apps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Role {
    Admin,
    App { apps: Vec<String> },
}

impl Role {
    pub fn may_manage(&self, app: &str) -> bool {
        match self {
            Role::Admin => true,
            // A key of an app also manages its previews (`APP--BRANCH`).
            Role::App { apps } => apps.iter().any(|a| a == app || app.strip_prefix(a.as_str()).is_some_and(|rest| rest.starts_with("--"))),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Role::Admin)
    }
}

impl AuthorizedKeys {
    /// The entry holding this key. Keys are compared by their key data: comments differ.
    pub fn find(&self, key: &PublicKey) -> Option<&AuthorizedKey> {
        self.keys.iter().find(|entry| {
            PublicKey::from_openssh(&entry.public_key).is_ok_and(|known| known.key_data() == key.key_data())
        })
    }
}

impl AuthorizedKeys {
    /// An app is gone: no key names it any more. A key scoped to it alone has nothing left
    /// and is removed (a new app of that name must not inherit it). Returns those keys' names.
    pub fn forget_app(&mut self, app: &str) -> Vec<String> {
        let mut removed = Vec::new();
        self.keys.retain_mut(|entry| {
            let Role::App { apps } = &mut entry.role else { return true };
            if !apps.iter().any(|a| a == app) {
                return true;
            }
            apps.retain(|a| a != app);
            if apps.is_empty() {
                removed.push(entry.name.clone());
                return false;
            }
            true
        });
        removed
    }

    /// Keys scoped to `old` manage it under its new name.
    pub fn rename_app(&mut self, old: &str, new: &str) {
        for entry in &mut self.keys {
            if let Role::App { apps } = &mut entry.role {
                for a in apps.iter_mut().filter(|a| *a == old) {
                    *a = new.to_string();
                }
            }
        }
    }
}

/// `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod app_tests {
    use super::*;

    fn key(name: &str, role: Role) -> AuthorizedKey {
        AuthorizedKey { name: name.into(), public_key: String::new(), fingerprint: String::new(), role, added_at: 0, may_create: false }
    }

    #[test]
    fn keys_follow_an_app_that_is_renamed_and_forget_one_that_is_destroyed() {
        let apps = |names: &[&str]| Role::App { apps: names.iter().map(|s| s.to_string()).collect() };
        let mut keys = AuthorizedKeys { keys: vec![key("admin", Role::Admin), key("only", apps(&["web"])), key("two", apps(&["web", "api"]))] };
        keys.rename_app("web", "site");
        assert!(keys.keys[1].role.may_manage("site") && !keys.keys[1].role.may_manage("web"));
        assert_eq!(keys.forget_app("site"), vec!["only".to_string()]);
        assert_eq!(keys.keys.len(), 2);
        assert!(!keys.keys[1].role.may_manage("site") && keys.keys[1].role.may_manage("api"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_serialize_readably() {
        let keys = AuthorizedKeys {
            keys: vec![
                AuthorizedKey {
                    name: "me".into(),
                    public_key: "ssh-ed25519 AAAA me".into(),
                    fingerprint: "SHA256:x".into(),
                    role: Role::Admin,
                    added_at: 1,
                    may_create: false,
                },
                AuthorizedKey {
                    name: "bob".into(),
                    public_key: "ssh-ed25519 AAAB bob".into(),
                    fingerprint: "SHA256:y".into(),
                    role: Role::App { apps: vec!["blog".into()] },
                    added_at: 2,
                    may_create: false,
                },
            ],
        };
        let text = toml::to_string_pretty(&keys).unwrap();
        assert!(text.contains("role = \"admin\""), "{text}");
        let back: AuthorizedKeys = toml::from_str(&text).unwrap();
        assert_eq!(back, keys);
        assert!(back.keys[1].role.may_manage("blog"));
        assert!(!back.keys[1].role.may_manage("other"));
    }
}
