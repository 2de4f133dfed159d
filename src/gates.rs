//! Maintenance and http-auth of apps, as nginx enforces them (`proxy::gates`, berth.lua's
//! `gate`): what an app's gate is, putting it in place, the custom maintenance page, and
//! the gatekeeper's answers about addresses and passwords.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::proxy::Gate;
use crate::store::{AppConfig, HttpAuth};

/// Failed passwords from one address within `FAILURE_WINDOW` past which its passwords are
/// no longer checked (every answer is no) until the window has passed.
const MAX_FAILURES: usize = 20;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Passwords checked at once: each costs Argon2's 19 MiB and tens of milliseconds.
const CHECKS_AT_ONCE: usize = 2;

/// The http-auth that guards `app`: its own when on, else its parent's when it is a preview
/// and the parent's previews inherit it (`previews:set APP http-auth true`).
pub fn auth_of(engine: &Engine, config: &AppConfig) -> Option<HttpAuth> {
    if config.gates.http_auth.enabled {
        return Some(config.gates.http_auth.clone());
    }
    let parent = engine.store.load_app(&config.preview_of.as_ref()?.parent).ok()?;
    (parent.previews.http_auth && parent.gates.http_auth.enabled).then_some(parent.gates.http_auth)
}

/// The app's gate as nginx should hold it.
pub fn gate_of(engine: &Engine, config: &AppConfig) -> Gate {
    let auth = auth_of(engine, config).map(|auth| auth.tag());
    Gate { maintenance: config.gates.maintenance, auth, page: config.gates.page.clone() }
}

/// Where an app's custom maintenance page is kept (nginx reads a copy under /run).
pub fn page_dir(engine: &Engine, app: &str) -> PathBuf {
    engine.store.app_dir(app).join("maintenance")
}

/// The files of a custom maintenance page from a tar: regular files at safe relative paths
/// (`maintenance.html` among them), at most `max` of them. Pure.
pub fn read_page_tar(bytes: &[u8], max: usize) -> Result<Vec<(PathBuf, Vec<u8>)>, String> {
    use std::io::Read;
    if bytes.len() < 512 || !crate::tls::looks_like_tar(bytes) {
        return Err("stdin is not a tar: send one with maintenance.html (tar c maintenance.html style.css | ssh … maintenance:custom-page APP)".into());
    }
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(bytes);
    for entry in archive.entries().map_err(|_| "stdin is not a tar".to_string())? {
        let mut entry = entry.map_err(|e| format!("the tar is damaged: {e}"))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        let path = entry.path().map_err(|_| "the tar has a file name that is not UTF-8".to_string())?.into_owned();
        let shown = path.display().to_string();
        if !kind.is_file() {
            return Err(format!("{shown} in the tar is not a regular file (links are refused)"));
        }
        let path: PathBuf = path.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect();
        let safe = path.components().all(|c| matches!(c, std::path::Component::Normal(n) if n.to_str().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) && !n.starts_with('.'))));
        if !safe || path.as_os_str().is_empty() {
            return Err(format!("{shown:?} in the tar is not a plain relative path (letters, digits, '-', '_', '.'; no '..' or hidden files)"));
        }
        if files.len() == max {
            return Err(format!("the tar has more than {max} files: a maintenance page needs few"));
        }
        let mut content = Vec::new();
        entry.read_to_end(&mut content).map_err(|e| format!("cannot read {shown} from the tar: {e}"))?;
        files.push((path, content));
    }
    if !files.iter().any(|(p, _)| p == std::path::Path::new("maintenance.html")) {
        return Err("the tar has no maintenance.html at its top".into());
    }
    Ok(files)
}

/// Keeps a custom maintenance page in the app's directory (replacing the last one); its tag.
pub fn keep_page(engine: &Engine, app: &str, files: &[(PathBuf, Vec<u8>)]) -> Result<String, String> {
    use sha2::Digest;
    let dir = page_dir(engine, app);
    let _ = std::fs::remove_dir_all(&dir);
    let mut tag = sha2::Sha256::new();
    for (path, content) in files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        crate::store::write_atomic(&target, content, 0o644).map_err(|e| format!("{}: {e}", target.display()))?;
        tag.update(path.to_string_lossy().as_bytes());
        tag.update([0]);
        tag.update(content);
    }
    Ok(tag.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect())
}

/// Puts the app's gate (and those of its previews, which may inherit its http-auth) in
/// nginx's memory.
pub async fn apply(engine: &Engine, app: &str) -> Result<(), String> {
    let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
    put(engine, app, &config).await?;
    for (preview, _) in engine.store.previews_of(app) {
        if let Ok(config) = engine.store.load_app(&preview) {
            put(engine, &preview, &config).await?;
        }
    }
    Ok(())
}

async fn put(engine: &Engine, app: &str, config: &AppConfig) -> Result<(), String> {
    let gate = gate_of(engine, config);
    let page = page_dir(engine, app);
    let page = (gate.page.is_some() && page.is_dir()).then_some(page.as_path());
    engine.nginx.place_maintenance_page(app, page).map_err(|e| e.to_string())?;
    engine.nginx.set_gate(app, &gate).await.map_err(|e| format!("cannot set {app}'s gate in nginx: {e}"))
}

/// Every app's gate, as the state says (at start: /run may have been emptied).
pub async fn apply_all(engine: &Engine) {
    for app in engine.store.list_apps().unwrap_or_default() {
        if let Err(e) = apply(engine, &app).await {
            tracing::error!(app, "{e}");
        }
    }
}

/// An app no longer exists: its gate opens and its page goes.
pub async fn remove(engine: &Engine, app: &str) {
    let _ = engine.nginx.place_maintenance_page(app, None);
    if let Err(e) = engine.nginx.set_gate(app, &Gate::default()).await {
        tracing::warn!(app, "{e}");
    }
}

/// What the gatekeeper answers nginx: `ip` (the address passes), `ok` (the user and
/// password are right), `no`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ip,
    Ok,
    No,
}

impl Answer {
    pub fn word(self) -> &'static str {
        match self {
            Answer::Ip => "ip",
            Answer::Ok => "ok",
            Answer::No => "no",
        }
    }
}

/// The gatekeeper's memory: failures by address, and how many checks run.
pub struct Keeper {
    failures: Mutex<std::collections::HashMap<IpAddr, Vec<Instant>>>,
    checks: tokio::sync::Semaphore,
}

impl Default for Keeper {
    fn default() -> Keeper {
        Keeper { failures: Default::default(), checks: tokio::sync::Semaphore::new(CHECKS_AT_ONCE) }
    }
}

impl Keeper {
    /// The answer to nginx's question about a request to `app` from `ip` with basic-auth
    /// `credentials` (the header's base64, if any).
    pub async fn answer(&self, engine: &Engine, app: &str, ip: IpAddr, credentials: Option<&str>) -> Answer {
        let Ok(config) = engine.store.load_app(app) else { return Answer::No };
        let Some(auth) = auth_of(engine, &config) else { return Answer::Ok };
        if auth.allows(ip) {
            return Answer::Ip;
        }
        let Some((user, password)) = credentials.and_then(decode) else { return Answer::No };
        if self.failed_often(ip) {
            return Answer::No;
        }
        let Ok(_turn) = self.checks.acquire().await else { return Answer::No };
        let right = tokio::task::spawn_blocking(move || auth.verify(&user, &password)).await.unwrap_or(false);
        if right {
            Answer::Ok
        } else {
            self.failures.lock().unwrap_or_else(|p| p.into_inner()).entry(ip).or_default().push(Instant::now());
            Answer::No
        }
    }

    fn failed_often(&self, ip: IpAddr) -> bool {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|_, times| {
            times.retain(|t| t.elapsed() < FAILURE_WINDOW);
            !times.is_empty()
        });
        failures.get(&ip).is_some_and(|t| t.len() >= MAX_FAILURES)
    }
}

/// `USER:PASSWORD` from basic auth's base64. Pure.
fn decode(credentials: &str) -> Option<(String, String)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(credentials).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_decoded() {
        assert_eq!(decode("YW5uOnMzY3JldDp3aXRoIGNvbG9u"), Some(("ann".into(), "s3cret:with colon".into())));
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode("bm9jb2xvbg=="), None, "no colon");
    }
}
