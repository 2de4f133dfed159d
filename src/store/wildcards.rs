//! What DNS-01 needs on disk: the DNS provider's settings (`letsencrypt/dns.toml`, 0600: the
//! TSIG secret) and the wildcard certificates (`letsencrypt/wildcards/DOMAIN.pem`, chain then
//! key, 0600).

use std::path::PathBuf;

use super::{Renewal, Store, read_toml_if_present, write_atomic, write_toml};
use crate::dns::DnsSettings;
use crate::tls::Bundle;

impl Store {
    fn dns_file(&self) -> PathBuf {
        self.root().join("letsencrypt").join("dns.toml")
    }

    fn wildcards_dir(&self) -> PathBuf {
        self.root().join("letsencrypt").join("wildcards")
    }

    /// `letsencrypt:set --global dns-*`, as saved (none: the defaults). A file that does not
    /// parse is said by its line and toml's message, never its text (the secret).
    pub fn load_dns(&self) -> Result<DnsSettings, String> {
        read_toml_if_present(&self.dns_file()).map(Option::unwrap_or_default).map_err(|e| e.to_string())
    }

    /// Saves the DNS settings, readable by root only.
    pub fn save_dns(&self, settings: &DnsSettings) -> Result<(), String> {
        let path = self.dns_file();
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        write_toml(&path, "DNS-01 settings (letsencrypt:set --global dns-*)", settings, 0o600).map_err(|e| e.to_string())
    }

    /// Keeps `bundle` as the wildcard certificate of `domain` (replacing the one before).
    pub fn save_wildcard(&self, domain: &str, bundle: &Bundle) -> Result<(), String> {
        let dir = self.wildcards_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{domain}.pem"));
        write_atomic(&path, bundle.nginx_pem().as_bytes(), 0o600).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The wildcard's renewals that failed since it was last issued.
    pub fn wildcard_renewal(&self, domain: &str) -> Renewal {
        read_toml_if_present(&self.wildcards_dir().join(format!("{domain}.toml"))).ok().flatten().unwrap_or_default()
    }

    /// Records the wildcard's failed renewals (the default: none, the file goes).
    pub fn save_wildcard_renewal(&self, domain: &str, renewal: &Renewal) -> Result<(), String> {
        let path = self.wildcards_dir().join(format!("{domain}.toml"));
        if *renewal == Renewal::default() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("{}: {e}", path.display())),
                _ => Ok(()),
            };
        }
        write_toml(&path, "A wildcard certificate's failed renewals", renewal, 0o600).map_err(|e| e.to_string())
    }

    /// The wildcard certificates kept, by domain.
    pub fn wildcards(&self) -> Vec<(String, Bundle)> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.wildcards_dir()).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(domain) = name.strip_suffix(".pem") else { continue };
            match std::fs::read_to_string(entry.path()).map_err(|e| e.to_string()).and_then(|t| Bundle::from_nginx_pem(&t).map_err(|e| e.to_string())) {
                Ok(bundle) => all.push((domain.to_string(), bundle)),
                Err(e) => tracing::warn!(domain, "the wildcard certificate cannot be read: {e}"),
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// The domain of the kept wildcard (of `wildcards`, as [`Store::wildcards`] gives them) that
/// certificate `info` is, if it is one. Pure.
pub fn wildcard_serving<'a>(wildcards: &'a [(String, Bundle)], info: &crate::tls::CertInfo) -> Option<&'a str> {
    wildcards.iter().find(|(_, w)| w.info.serial == info.serial).map(|(domain, _)| domain.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_settings_round_trip_0600_and_a_broken_file_never_shows_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load_dns().unwrap(), DnsSettings::default());
        let mut settings = DnsSettings::default();
        settings.set("dns-rfc2136-key-secret", Some("c2VjcmV0LXNlY3JldC1zZWNyZXQ=")).unwrap();
        store.save_dns(&settings).unwrap();
        assert_eq!(store.load_dns().unwrap(), settings);
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(store.dns_file()).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(store.dns_file(), "rfc2136_key_secret = \"c2VjcmV0LXNlY3JldC1zZWNyZXQ=\" broken\n").unwrap();
        let error = store.load_dns().unwrap_err();
        assert!(!error.contains("c2VjcmV0") && error.contains("dns.toml"), "{error}");
    }
}
