//! What nginx answers before an app sees a request (berth.lua's `gate`): the maintenance
//! page (503) and HTTP basic auth. One line per app in nginx's memory, set through the
//! control socket and kept in the gates file nginx loads at start and on reload, so turning
//! either on or off reloads nothing and lets requests in flight finish. A password nginx has
//! not seen is checked by the daemon (its gatekeeper socket, `server::gatekeeper`): nginx
//! remembers the answer for a few minutes, and forgets it when the users change.
//!
//! nginx's workers run as nobody, and the berth root's parents may be private: the custom
//! maintenance page and the gatekeeper socket live under /run.

use std::path::PathBuf;

use super::{Nginx, ProxyError, Table, io};

/// Parent of every root's gate directory (see `Nginx::gate_dir`).
pub const GATE_RUN_DIR: &str = "/run/berth-gate";

/// One app's gate as nginx holds it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Gate {
    pub maintenance: bool,
    /// A tag of the users and allowed addresses when http-auth is on: what nginx verified
    /// under another tag is asked again.
    pub auth: Option<String>,
    /// A tag of the custom maintenance page, if the app has one.
    pub page: Option<String>,
}

impl Gate {
    /// `APP m=0|1 a=-|TAG p=-|TAG`, or None when the gate lets everything through. Pure.
    pub fn line(&self, app: &str) -> Option<String> {
        if !self.maintenance && self.auth.is_none() {
            return None;
        }
        Some(format!("{app} m={} a={} p={}", u8::from(self.maintenance), self.auth.as_deref().unwrap_or("-"), self.page.as_deref().unwrap_or("-")))
    }
}

impl Nginx {
    /// This root's directory under /run, which nginx's workers can reach.
    pub fn gate_dir(&self) -> PathBuf {
        PathBuf::from(GATE_RUN_DIR).join(self.root_name())
    }

    /// Where the daemon answers nginx's questions about passwords.
    pub fn gatekeeper_socket(&self) -> PathBuf {
        self.gate_dir().join("gatekeeper.sock")
    }

    /// Where nginx reads an app's custom maintenance page (`maintenance.html` and its files).
    pub fn maintenance_page_dir(&self, app: &str) -> PathBuf {
        self.gate_dir().join("maintenance").join(app)
    }

    /// Puts the app's gate in place: the gates file, then nginx's memory (no reload).
    pub async fn set_gate(&self, app: &str, gate: &Gate) -> Result<(), ProxyError> {
        let line = gate.line(app);
        self.write_table(Table::Gates, app, line.as_deref())?;
        self.push_table(Table::Gates, line.as_deref().unwrap_or(app)).await
    }

    /// Copies an app's custom maintenance page (the files of `from`) where nginx reads it,
    /// replacing what was there; None removes it.
    pub fn place_maintenance_page(&self, app: &str, from: Option<&std::path::Path>) -> Result<(), ProxyError> {
        let dir = self.maintenance_page_dir(app);
        let _ = std::fs::remove_dir_all(&dir);
        let Some(from) = from else { return Ok(()) };
        super::create_public_dir(&dir)?;
        for entry in walk(from).map_err(io(from))? {
            let relative = entry.strip_prefix(from).unwrap_or(&entry);
            let target = dir.join(relative);
            if let Some(parent) = target.parent() {
                super::create_public_dir(parent)?;
            }
            let bytes = std::fs::read(&entry).map_err(io(&entry))?;
            crate::store::write_atomic(&target, &bytes, 0o644).map_err(io(&target))?;
        }
        Ok(())
    }

    /// nginx's gate line for an app, from its memory (for tests and reports).
    pub async fn live_gate(&self, app: &str) -> Result<String, ProxyError> {
        Ok(self.control("GET", &format!("/gates?app={app}"), "").await?.trim().to_string())
    }
}

/// The regular files under `dir`, recursively.
fn walk(dir: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            files.extend(walk(&entry.path())?);
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_is_one_line_and_none_when_it_lets_everything_through() {
        assert_eq!(Gate::default().line("shop"), None);
        assert_eq!(Gate { maintenance: true, ..Default::default() }.line("shop").as_deref(), Some("shop m=1 a=- p=-"));
        let both = Gate { maintenance: false, auth: Some("0a1b2c".into()), page: Some("ff00".into()) };
        assert_eq!(both.line("shop").as_deref(), Some("shop m=0 a=0a1b2c p=ff00"));
    }
}
