//! An app's certificate: `apps/<app>/tls/`.
//!
//! `tls.toml` names the bundle nginx serves (`cert-<stamp>.pem`: chain then key, 0600) and
//! where it came from. A new certificate is written as a new bundle file first, and
//! becomes the app's only when `tls.toml` is replaced (atomically) to name it; the site is
//! then rendered against it. Bundles no `tls.toml` names are removed afterwards. So a crash
//! at any point leaves `tls.toml` naming a complete bundle. `renewal.toml` keeps failed
//! Let's Encrypt attempts of an app that has no certificate yet (with one, `tls.toml` does).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Result, Store, io_err, read_toml_if_present, write_atomic, write_toml};
use crate::tls::Bundle;

/// Where an app's certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CertSource {
    Letsencrypt,
    User,
    SelfSigned,
}

impl std::fmt::Display for CertSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CertSource::Letsencrypt => "letsencrypt",
            CertSource::User => "user",
            CertSource::SelfSigned => "self-signed",
        })
    }
}

/// `tls/tls.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TlsState {
    pub source: CertSource,
    /// The bundle's file name inside `tls/`.
    pub file: String,
    pub installed_at: u64,
    /// Let's Encrypt renewals that failed since the last success.
    #[serde(default)]
    pub renewal: Renewal,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Renewal {
    pub failures: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Unix time before which the daemon does not try again.
    pub next_attempt: u64,
}

/// Writes `bundle` as a new bundle file in `dir` (`cert-<stamp>.pem`, 0600; `dir` made
/// 0700) and returns its name. An app's certificate and berth's own site's both live so.
pub fn write_bundle(dir: &Path, bundle: &Bundle) -> Result<String> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let name = format!("cert-{stamp}.pem");
    let path = dir.join(&name);
    write_atomic(&path, bundle.nginx_pem().as_bytes(), 0o600).map_err(io_err(&path))?;
    Ok(name)
}

/// Removes the bundle files in `dir` but `keep`.
pub fn prune_bundles(dir: &Path, keep: Option<&str>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("cert-") && name.ends_with(".pem") && keep != Some(name.as_str()) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

impl Store {
    fn tls_file(&self, app: &str) -> PathBuf {
        self.tls_dir(app).join("tls.toml")
    }

    /// The app's certificate state, if it has a certificate.
    pub fn load_tls(&self, app: &str) -> Result<Option<TlsState>> {
        read_toml_if_present(&self.tls_file(app))
    }

    /// The file nginx reads for the app's certificate.
    pub fn tls_bundle_path(&self, app: &str, state: &TlsState) -> PathBuf {
        self.tls_dir(app).join(&state.file)
    }

    /// Writes `bundle` as a new bundle file (0600) and returns its name; the app's
    /// certificate is unchanged until [`Store::save_tls`] names it.
    pub fn write_tls_bundle(&self, app: &str, bundle: &Bundle) -> Result<String> {
        write_bundle(&self.tls_dir(app), bundle)
    }

    /// Makes `state` the app's certificate. Call with the app's lock held.
    pub fn save_tls(&self, app: &str, state: &TlsState) -> Result<()> {
        write_toml(&self.tls_file(app), "An app's certificate: the bundle file nginx serves", state, 0o600)
    }

    /// Reads the bundle the app serves.
    pub fn load_tls_bundle(&self, app: &str, state: &TlsState) -> Result<String> {
        let path = self.tls_bundle_path(app, state);
        fs::read_to_string(&path).map_err(io_err(&path))
    }

    /// The certificate an app serves, read from its bundle: what `tls.toml` says of it,
    /// and what the certificate itself says (names, expiry, issuer).
    pub fn current_certificate(&self, app: &str) -> std::result::Result<Option<(TlsState, crate::tls::CertInfo)>, String> {
        let Some(state) = self.load_tls(app).map_err(|e| e.to_string())? else { return Ok(None) };
        let text = self.load_tls_bundle(app, &state).map_err(|e| e.to_string())?;
        let bundle = Bundle::from_nginx_pem(&text).map_err(|e| format!("the certificate of {app} cannot be read: {e}"))?;
        Ok(Some((state, bundle.info)))
    }

    /// Forgets the app's certificate (the bundle files go with [`Store::prune_tls`]).
    pub fn remove_tls(&self, app: &str) -> Result<()> {
        let path = self.tls_file(app);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    fn pending_renewal_file(&self, app: &str) -> PathBuf {
        self.tls_dir(app).join("renewal.toml")
    }

    /// Failed Let's Encrypt attempts of an app that has no certificate to keep them with
    /// (once it has one, `tls.toml` keeps them).
    pub fn load_pending_renewal(&self, app: &str) -> Result<Option<Renewal>> {
        read_toml_if_present(&self.pending_renewal_file(app))
    }

    /// Call with the app's lock held.
    pub fn save_pending_renewal(&self, app: &str, renewal: &Renewal) -> Result<()> {
        let dir = self.tls_dir(app);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
        write_toml(&self.pending_renewal_file(app), "Let's Encrypt attempts that failed while the app had no certificate", renewal, 0o600)
    }

    /// Forgets failed attempts kept without a certificate (one was installed, or Let's
    /// Encrypt is off). Call with the app's lock held.
    pub fn clear_pending_renewal(&self, app: &str) -> Result<()> {
        let path = self.pending_renewal_file(app);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Removes bundle files `tls.toml` does not name (replaced or abandoned ones).
    pub fn prune_tls(&self, app: &str) -> Result<()> {
        let keep = self.load_tls(app)?.map(|s| s.file);
        prune_bundles(&self.tls_dir(app), keep.as_deref());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_becomes_the_apps_only_when_saved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_app("web", &crate::store::AppConfig::new()).unwrap();
        let now = crate::unix_now() as i64;
        let one = crate::tls::self_signed(&["a.example.com".into()], 10, now).unwrap();
        let name = store.write_tls_bundle("web", &one).unwrap();
        assert_eq!(store.load_tls("web").unwrap(), None);
        let state = TlsState { source: CertSource::SelfSigned, file: name.clone(), installed_at: 1, renewal: Renewal::default() };
        store.save_tls("web", &state).unwrap();
        let path = store.tls_bundle_path("web", &state);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // A second bundle written but never saved is pruned; the saved one stays.
        let two = crate::tls::self_signed(&["a.example.com".into()], 10, now).unwrap();
        let abandoned = store.write_tls_bundle("web", &two).unwrap();
        store.prune_tls("web").unwrap();
        assert!(path.exists());
        assert!(!store.tls_dir("web").join(abandoned).exists());
        store.remove_tls("web").unwrap();
        store.prune_tls("web").unwrap();
        assert!(!path.exists());
    }
}
