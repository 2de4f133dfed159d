//! State on disk: TOML files under the berth root, written atomically, guarded by locks.
//!
//! Only the daemon writes here. Every write goes to a temp file in the same directory, is
//! fsynced and renamed over the old file, so a crash leaves the old or the new file, never
//! half of one. Mutations of one app hold that app's lock; creating, renaming and destroying
//! apps also hold the lock on the set of apps.

mod app;
mod gates;
mod global;
mod keys;
mod releases;
mod services;
mod settings;
mod wildcards;
pub use wildcards::wildcard_serving;
mod tls;
mod tokens;

pub use app::{ALL_PROCESSES, BUILD_PROCESS, AppConfig, BuildSettings, Builder, PreviewOf, PreviewSettings, DEFAULT_HSTS_MAX_AGE, DEFAULT_KEEP_RELEASES, DEFAULT_REV_ENV_VAR, LetsencryptConfig, Limits, NginxConfig, RestartPolicy, SchedulerName, SchedulerSettings};
pub use settings::{ChecksConfig, ChecksMode, DEFAULT_LOG_MAX_SIZE, DEFAULT_PROCFILE, DEFAULT_STOP_TIMEOUT, DockerLocalSettings, GitSettings, LogSettings, ProcessSettings};
pub use services::{BackupSchedule, BackupTarget, Service};
pub use tls::{CertSource, Renewal, TlsState, prune_bundles, write_bundle};
pub use global::GlobalConfig;
pub use gates::{Cidr, Gates, HttpAuth, hash_password, password, user_name};
pub use keys::{AuthorizedKey, AuthorizedKeys, Role, fingerprint};
pub use tokens::{Access, Login, Logins, Token, Tokens};
pub mod token {
    pub use super::tokens::{duration, hash, new_secret, same};
}
pub use releases::{Implausible, LAUNCHER, MAX_RELEASES, NoRollback, Release, Releases, Status};

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::validate;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("App {0} does not exist")]
    AppMissing(String),
    #[error("App {0} already exists")]
    AppExists(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A state file of zero bytes or only whitespace. berth never writes one (every file it
    /// writes starts with a comment line), so it was damaged: reading it as "nothing stored"
    /// would make the next push v1 and retire what runs.
    #[error("{path} is empty: it was damaged (berth never writes an empty file); restore it from a backup")]
    Empty { path: PathBuf },
    /// A state file that is not valid TOML or not the shape berth writes: `path:line: message`.
    #[error("{}: {message}", located(.path, *.line))]
    Parse { path: PathBuf, line: Option<usize>, message: String },
    /// A releases.toml that parses but cannot be true (two active releases, a version twice…):
    /// damaged or edited by hand.
    #[error("{path}: {problem}")]
    Implausible { path: PathBuf, problem: releases::Implausible },
    #[error("cannot write {path}: {message}")]
    Unwritable { path: PathBuf, message: String },
    #[error(transparent)]
    Invalid(#[from] validate::Invalid),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// `path:line`, or `path` when the line is not known.
fn located(path: &Path, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}

/// The berth root and the locks over what is in it.
pub struct Store {
    root: PathBuf,
    app_locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    apps_lock: Arc<AsyncMutex<()>>,
    keys_lock: Arc<AsyncMutex<()>>,
    global_lock: Arc<AsyncMutex<()>>,
}

impl Store {
    /// Opens (and creates if needed) the directory layout under `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        // Apps' sources, caches, config and storage are the root user's alone; the root itself
        // stays traversable for nginx's workers (nobody), which read <root>/nginx/tmp.
        let private = [root.join("apps"), root.join("keys"), root.join("storage"), root.join("buildpacks-custom"), root.join("tmp")];
        for (dir, mode) in std::iter::once((root.clone(), 0o711)).chain(private.into_iter().map(|d| (d, 0o700))) {
            fs::create_dir_all(&dir).map_err(io_err(&dir))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(io_err(&dir))?;
        }
        Ok(Store {
            root,
            app_locks: Mutex::new(HashMap::new()),
            apps_lock: Arc::default(),
            keys_lock: Arc::default(),
            global_lock: Arc::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Build contexts on their way to a build (0700).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn app_dir(&self, app: &str) -> PathBuf {
        self.root.join("apps").join(app)
    }

    fn app_file(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("app.toml")
    }

    fn keys_file(&self) -> PathBuf {
        self.root.join("keys").join("authorized.toml")
    }

    pub fn global_file(&self) -> PathBuf {
        self.root.join("berth.toml")
    }

    /// Waits for the lock of one app. Held across a read-modify-write of its state.
    pub async fn lock_app(&self, app: &str) -> OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.app_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(app.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Waits for the lock on the set of apps (create, rename, destroy).
    pub async fn lock_apps(&self) -> OwnedMutexGuard<()> {
        self.apps_lock.clone().lock_owned().await
    }

    pub async fn lock_keys(&self) -> OwnedMutexGuard<()> {
        self.keys_lock.clone().lock_owned().await
    }

    pub async fn lock_global(&self) -> OwnedMutexGuard<()> {
        self.global_lock.clone().lock_owned().await
    }

    /// Sorted names of all apps.
    /// Every other app's port mappings as they serve (the default when it has none).
    pub fn ports_of_others(&self, app: &str) -> Result<Vec<(String, Vec<crate::validate::PortMap>)>> {
        let mut others = Vec::new();
        for other in self.list_apps()?.into_iter().filter(|o| o != app) {
            let ports = self.load_app(&other)?.effective_ports();
            others.push((other, ports));
        }
        Ok(others)
    }

    pub fn list_apps(&self) -> Result<Vec<String>> {
        let dir = self.root.join("apps");
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if validate::app_name(&name).is_ok() && entry.path().join("app.toml").is_file() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Every preview of `parent`: (app, its preview marker).
    pub fn previews_of(&self, parent: &str) -> Vec<(String, PreviewOf)> {
        let prefix = format!("{parent}--");
        self.list_apps()
            .unwrap_or_default()
            .into_iter()
            .filter(|a| a.starts_with(&prefix))
            .filter_map(|a| {
                let of = self.load_app(&a).ok()?.preview_of?;
                (of.parent == parent).then_some((a, of))
            })
            .collect()
    }

    pub fn app_exists(&self, app: &str) -> bool {
        validate::app_name(app).is_ok() && self.app_file(app).is_file()
    }

    pub fn load_app(&self, app: &str) -> Result<AppConfig> {
        validate::app_name(app)?;
        let path = self.app_file(app);
        if !path.is_file() {
            return Err(StoreError::AppMissing(app.to_string()));
        }
        read_toml(&path)
    }

    /// Writes an existing app's state. Call with the app's lock held.
    pub fn save_app(&self, app: &str, config: &AppConfig) -> Result<()> {
        // app.toml holds the app's env, which is secrets: 0600.
        write_toml(&self.app_file(app), "An app's settings and env", config, 0o600)
    }

    /// Creates the app's directory and state. Call with the apps lock held.
    pub fn create_app(&self, app: &str, config: &AppConfig) -> Result<()> {
        // A preview's name (`APP--BRANCH`) is made by berth, not chosen: only it has `--`.
        if config.preview_of.is_some() {
            validate::app_name(app)?;
        } else {
            validate::new_app_name(app)?;
        }
        if self.app_exists(app) {
            return Err(StoreError::AppExists(app.to_string()));
        }
        let dir = self.app_dir(app);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        self.save_app(app, config)
    }

    /// Renames an app's directory. Call with the apps lock and both app locks held.
    pub fn rename_app(&self, old: &str, new: &str) -> Result<()> {
        validate::new_app_name(new)?;
        if !self.app_exists(old) {
            return Err(StoreError::AppMissing(old.to_string()));
        }
        if self.app_dir(new).exists() {
            return Err(StoreError::AppExists(new.to_string()));
        }
        let from = self.app_dir(old);
        fs::rename(&from, self.app_dir(new)).map_err(io_err(&from))?;
        sync_dir(&self.root.join("apps"))
    }

    /// Removes an app and everything under its directory. Call with the apps lock held.
    pub fn destroy_app(&self, app: &str) -> Result<()> {
        if !self.app_exists(app) {
            return Err(StoreError::AppMissing(app.to_string()));
        }
        // Remove app.toml first: an interrupted removal then leaves a directory that is no
        // longer listed as an app rather than an app with half its files.
        let file = self.app_file(app);
        fs::remove_file(&file).map_err(io_err(&file))?;
        let dir = self.app_dir(app);
        fs::remove_dir_all(&dir).map_err(io_err(&dir))?;
        sync_dir(&self.root.join("apps"))
    }

    pub fn repo_dir(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("repo.git")
    }

    fn releases_file(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("releases.toml")
    }

    /// The app's releases. No file is no release yet; a file that cannot be read, or whose
    /// releases cannot be true, is an error: guessing would deploy the next push as v1.
    pub fn load_releases(&self, app: &str) -> Result<Releases> {
        let path = self.releases_file(app);
        let Some(releases) = read_toml_if_present::<Releases>(&path)? else {
            return Ok(Releases::default());
        };
        releases.check().map_err(|problem| StoreError::Implausible { path, problem })?;
        Ok(releases)
    }

    /// Call with the app's lock held. Holds env snapshots: 0600. Refuses a history that
    /// could not be read back (a bug would otherwise leave the app unreadable).
    pub fn save_releases(&self, app: &str, releases: &Releases) -> Result<()> {
        let path = self.releases_file(app);
        releases.check().map_err(|problem| StoreError::Unwritable { path: path.clone(), message: problem.to_string() })?;
        write_toml(&path, "An app's releases, oldest first", releases, 0o600)
    }

    fn build_tag_file(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("build-tag")
    }

    /// The tag of the newest image made for the app (`berth/APP:vN`), saved before its build.
    /// While no release records it, its image is what a crash or a failure before the record
    /// left, and this root's to remove: several roots can share one engine, and another
    /// root's app of the same name is given the same tags.
    pub fn load_build_tag(&self, app: &str) -> Option<String> {
        let text = fs::read_to_string(self.build_tag_file(app)).ok()?;
        Some(text.trim().to_string()).filter(|t| !t.is_empty())
    }

    pub fn save_build_tag(&self, app: &str, tag: &str) -> Result<()> {
        let path = self.build_tag_file(app);
        write_atomic(&path, format!("{tag}\n").as_bytes(), 0o644).map_err(io_err(&path))
    }

    /// An app's settings, after checking that each of its state files reads (releases,
    /// certificate): what reports use, so a damaged app is named in each of them.
    pub fn load_app_checked(&self, app: &str) -> Result<AppConfig> {
        let config = self.load_app(app)?;
        self.load_releases(app)?;
        self.load_tls(app)?;
        Ok(config)
    }

    pub fn load_keys(&self) -> Result<AuthorizedKeys> {
        Ok(read_toml_if_present(&self.keys_file())?.unwrap_or_default())
    }

    /// Call with the keys lock held.
    pub fn save_keys(&self, keys: &AuthorizedKeys) -> Result<()> {
        write_toml(&self.keys_file(), "The keys that may connect, and their roles", keys, 0o600)
    }

    fn tokens_file(&self) -> PathBuf {
        self.root.join("keys").join("tokens.toml")
    }

    pub fn load_tokens(&self) -> Result<Tokens> {
        Ok(read_toml_if_present(&self.tokens_file())?.unwrap_or_default())
    }

    /// Call with the keys lock held.
    pub fn save_tokens(&self, tokens: &Tokens) -> Result<()> {
        write_toml(&self.tokens_file(), "API tokens (hashes only), what they may do, who made them", tokens, 0o600)
    }

    fn logins_file(&self) -> PathBuf {
        self.root.join("keys").join("dashboard-logins.toml")
    }

    pub fn load_logins(&self) -> Result<Logins> {
        Ok(read_toml_if_present(&self.logins_file())?.unwrap_or_default())
    }

    /// Call with the keys lock held.
    pub fn save_logins(&self, logins: &Logins) -> Result<()> {
        write_toml(&self.logins_file(), "One-time dashboard logins (hashes only), until they are used or expire", logins, 0o600)
    }

    pub fn tls_dir(&self, app: &str) -> PathBuf {
        self.app_dir(app).join("tls")
    }

    pub fn load_global(&self) -> Result<GlobalConfig> {
        let path = self.global_file();
        if !path.exists() {
            return Ok(GlobalConfig::default());
        }
        // Unlike the other state files, berth.toml is a config file the user edits, and every
        // setting in it has a default: an empty one means "all defaults", as a missing one
        // does (`touch berth.toml` is a fair way to start one). Emptying it costs no app its
        // state: apps keep their own domains, env and releases. Text that does not parse is
        // still an error naming its line.
        let text = read_text(&path)?;
        if text.trim().is_empty() {
            return Ok(GlobalConfig::default());
        }
        parse_toml(&path, &text)
    }

    /// Call with the global lock held.
    pub fn save_global(&self, global: &GlobalConfig) -> Result<()> {
        // A global drain's token is a secret: 0600.
        write_toml(&self.global_file(), "berth's global settings (berth daemon flags override them)", global, 0o600)
    }

    /// The env every app's containers get (`config:set --global`); an app's own env wins.
    /// Secrets: its own file, 0600 (berth.toml is world-readable).
    fn global_env_file(&self) -> PathBuf {
        self.root.join("keys").join("global-env.toml")
    }

    fn service_file(&self, kind: &str, name: &str) -> PathBuf {
        self.root.join("services").join(kind).join(format!("{name}.toml"))
    }

    /// The services of a kind, by name (sorted).
    pub fn list_services(&self, kind: &str) -> Result<Vec<String>> {
        let dir = self.root.join("services").join(kind);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut names: Vec<String> = entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".toml").map(str::to_string)).collect();
        names.sort();
        Ok(names)
    }

    /// A service's state, None if there is no such service.
    pub fn load_service(&self, kind: &str, name: &str) -> Result<Option<Service>> {
        read_toml_if_present(&self.service_file(kind, name))
    }

    /// Call with the service's lock held.
    pub fn save_service(&self, service: &Service) -> Result<()> {
        let path = self.service_file(&service.kind, &service.name);
        let dir = path.parent().expect("a service file has a directory");
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
        write_toml(&path, &format!("{} service {}", service.kind, service.name), service, 0o600)
    }

    pub fn remove_service(&self, kind: &str, name: &str) -> Result<()> {
        let path = self.service_file(kind, name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn load_global_env(&self) -> Result<GlobalEnv> {
        Ok(read_toml_if_present(&self.global_env_file())?.unwrap_or_default())
    }

    /// Call with the global lock held.
    pub fn save_global_env(&self, env: &GlobalEnv) -> Result<()> {
        write_toml(&self.global_env_file(), "env vars every app gets (config:set --global)", env, 0o600)
    }
}

/// The env every app's containers and builds get; the app's own env wins.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct GlobalEnv {
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

impl GlobalEnv {
    /// The env a container of an app gets: this, with the app's own over it.
    pub fn under(&self, app_env: &std::collections::BTreeMap<String, String>) -> std::collections::BTreeMap<String, String> {
        let mut env = self.env.clone();
        env.extend(app_env.iter().map(|(k, v)| (k.clone(), v.clone())));
        env
    }
}

fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(io_err(path))
}

/// The one read path of the state files. A file of nothing or only whitespace is damaged
/// (berth never writes one), never "nothing stored"; one that does not parse is named
/// with its line. A missing file is the caller's to judge (usually: nothing stored yet).
/// A state file that may not exist yet (None); one that exists is read as `read_toml` does.
fn read_toml_if_present<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    if !path.exists() {
        return Ok(None);
    }
    read_toml(path).map(Some)
}

fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = read_text(path)?;
    if text.trim().is_empty() {
        return Err(StoreError::Empty { path: path.to_path_buf() });
    }
    parse_toml(path, &text)
}

fn parse_toml<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    toml::from_str(text).map_err(|e| StoreError::Parse {
        path: path.to_path_buf(),
        line: e.span().map(|span| line_of(text, span.start)),
        message: crate::one_line(e.message()),
    })
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = &text.as_bytes()[..offset.min(text.len())];
    before.iter().filter(|b| **b == b'\n').count() + 1
}

/// Writes `value` as TOML after a comment line saying what the file is, so that no file
/// berth writes is empty, even with nothing in it (no keys, no releases): an empty state
/// file is then always damage.
fn write_toml<T: Serialize>(path: &Path, what: &str, value: &T, mode: u32) -> Result<()> {
    let body = toml::to_string_pretty(value).map_err(|e| StoreError::Unwritable { path: path.to_path_buf(), message: crate::one_line(&e.to_string()) })?;
    let text = format!("# {what}; written by berth\n{body}");
    write_atomic(path, text.as_bytes(), mode).map_err(io_err(path))
}

/// Replaces `path` with `bytes`: temp file in the same directory, fsync, rename, fsync the
/// directory. Readers see the old content or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.{:x}.tmp", std::process::id(), rand::random::<u32>()));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        sync_dir_io(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn sync_dir_io(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn sync_dir(dir: &Path) -> Result<()> {
    sync_dir_io(dir).map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_keeps_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.toml");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        // No temp files left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn apps_round_trip_rename_and_destroy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut app = AppConfig::new();
        app.env.insert("A".into(), "b c".into());
        store.create_app("one", &app).unwrap();
        assert!(matches!(store.create_app("one", &app), Err(StoreError::AppExists(_))));
        assert_eq!(store.load_app("one").unwrap().env["A"], "b c");
        store.rename_app("one", "two").unwrap();
        assert_eq!(store.list_apps().unwrap(), vec!["two".to_string()]);
        assert!(matches!(store.load_app("one"), Err(StoreError::AppMissing(_))));
        store.destroy_app("two").unwrap();
        assert!(store.list_apps().unwrap().is_empty());
    }

    #[test]
    fn a_stray_temp_file_is_not_an_app() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("apps/half")).unwrap();
        fs::write(dir.path().join("apps/half/.app.toml.1.2.tmp"), "partial").unwrap();
        assert!(store.list_apps().unwrap().is_empty());
    }

    fn one_release() -> Releases {
        let text = "[[release]]\nversion = 1\nimage = \"sha256:1\"\nimage_tag = \"berth/web:v1\"\ngit_sha = \"abc\"\ncause = \"git push\"\ncreated_at = 1\nstatus = \"active\"\n";
        toml::from_str(text).unwrap()
    }

    #[test]
    fn an_empty_state_file_is_damage_not_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_app("web", &AppConfig::new()).unwrap();
        // Missing: nothing stored yet.
        assert_eq!(store.load_releases("web").unwrap(), Releases::default());
        assert_eq!(store.load_keys().unwrap(), AuthorizedKeys::default());
        let releases = dir.path().join("apps/web/releases.toml");
        for text in ["", "\n", "  \n\t\n"] {
            fs::write(&releases, text).unwrap();
            let err = store.load_releases("web").unwrap_err();
            assert!(matches!(err, StoreError::Empty { .. }), "{err:?}");
            let message = err.to_string();
            assert_eq!(message, format!("{} is empty: it was damaged (berth never writes an empty file); restore it from a backup", releases.display()));
        }
        fs::write(dir.path().join("apps/web/app.toml"), "").unwrap();
        assert!(matches!(store.load_app("web"), Err(StoreError::Empty { .. })));
        fs::write(store.keys_file(), "\n").unwrap();
        assert!(matches!(store.load_keys(), Err(StoreError::Empty { .. })));
    }

    #[test]
    fn a_truncated_state_file_is_named_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut app = AppConfig::new();
        app.env.insert("GREETING".into(), "hello world".into());
        app.domains = vec!["a.example.com".into()];
        store.create_app("web", &app).unwrap();
        let path = dir.path().join("apps/web/app.toml");
        let text = fs::read_to_string(&path).unwrap();
        // Cut in the middle of the GREETING line.
        let cut = text.find("hello").unwrap() + 2;
        let line = text[..cut].lines().count();
        fs::write(&path, &text[..cut]).unwrap();
        let message = store.load_app("web").unwrap_err().to_string();
        assert!(message.starts_with(&format!("{}:{line}: ", path.display())), "{message}");
        assert!(!message.contains('\n'), "{message}");
        // A missing field has no line of its own: the file is still named.
        store.save_releases("web", &one_release()).unwrap();
        let releases = dir.path().join("apps/web/releases.toml");
        let text = fs::read_to_string(&releases).unwrap().replace("image_tag = \"berth/web:v1\"\n", "");
        fs::write(&releases, text).unwrap();
        let message = store.load_releases("web").unwrap_err().to_string();
        assert!(message.starts_with(&releases.display().to_string()) && message.contains("image_tag"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn line_numbers_count_from_one() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 4), 3);
        assert_eq!(line_of("a\n", 99), 2);
        assert_eq!(crate::one_line("expected\n  a value\n"), "expected a value");
    }

    #[test]
    fn berth_never_writes_an_empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // One config: a second `new()` may be a second later.
        let config = AppConfig::new();
        store.create_app("web", &config).unwrap();
        store.save_keys(&AuthorizedKeys::default()).unwrap();
        store.save_releases("web", &Releases::default()).unwrap();
        store.save_global(&GlobalConfig::default()).unwrap();
        for path in [store.keys_file(), dir.path().join("apps/web/releases.toml"), store.global_file(), store.app_file("web")] {
            let text = fs::read_to_string(&path).unwrap();
            assert!(text.starts_with("# ") && text.lines().next().unwrap().ends_with("; written by berth"), "{}: {text:?}", path.display());
        }
        // And reads back what it wrote, empty lists included.
        assert_eq!(store.load_keys().unwrap(), AuthorizedKeys::default());
        assert_eq!(store.load_releases("web").unwrap(), Releases::default());
        assert_eq!(store.load_global().unwrap(), GlobalConfig::default());
        assert_eq!(store.load_app("web").unwrap(), config);
        store.save_releases("web", &one_release()).unwrap();
        assert_eq!(store.load_releases("web").unwrap(), one_release());
    }

    #[test]
    fn an_empty_berth_toml_is_all_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        fs::write(store.global_file(), "\n").unwrap();
        assert_eq!(store.load_global().unwrap(), GlobalConfig::default());
        fs::write(store.global_file(), "global_domains = [\"example.com\"]\nbuild_timeout = \n").unwrap();
        let message = store.load_global().unwrap_err().to_string();
        assert!(message.starts_with(&format!("{}:2: ", store.global_file().display())), "{message}");
    }

    #[test]
    fn an_implausible_history_is_refused_on_read_and_on_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.create_app("web", &AppConfig::new()).unwrap();
        let mut two = one_release();
        two.releases.push(Release { version: 2, ..two.releases[0].clone() });
        let err = store.save_releases("web", &two).unwrap_err().to_string();
        assert!(err.starts_with("cannot write ") && err.ends_with("releases.toml: v1 and v2 are both active (one release serves at a time)"), "{err}");
        assert!(!dir.path().join("apps/web/releases.toml").exists(), "nothing written");
        let path = dir.path().join("apps/web/releases.toml");
        fs::write(&path, toml::to_string(&two).unwrap()).unwrap();
        assert_eq!(
            store.load_releases("web").unwrap_err().to_string(),
            format!("{}: v1 and v2 are both active (one release serves at a time)", path.display())
        );
        // Reports see it through the app.
        assert!(matches!(store.load_app_checked("web"), Err(StoreError::Implausible { problem: Implausible::TwoActive(1, 2), .. })));
        fs::remove_file(&path).unwrap();
        assert!(store.load_app_checked("web").is_ok());
    }
}
