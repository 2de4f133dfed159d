//! The engine the front doors share: state, settings, the Docker engine, nginx, and who is
//! calling.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::output::Output;
use crate::proxy::Nginx;
use crate::runtime::{Runtime, RuntimeError};
use crate::store::{AppConfig, Role, Store};

/// How long a deploy waits for another deploy of the same app before giving up.
pub const DEPLOY_LOCK_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Addresses the daemon serves on, after flags have overridden berth.toml.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ssh_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub https_listen: SocketAddr,
}

pub struct Engine {
    pub store: Store,
    pub settings: Settings,
    pub nginx: Arc<Nginx>,
    /// This binary: the git hook calls it.
    pub exe: PathBuf,
    runtime: AsyncMutex<Option<Runtime>>,
    deploy_locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

impl Engine {
    pub fn new(store: Store, settings: Settings) -> Engine {
        let nginx = Arc::new(Nginx::new(store.root(), crate::proxy::Listen { http: settings.http_listen, https: settings.https_listen }));
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("berth"));
        Engine { store, settings, nginx, exe, runtime: AsyncMutex::new(None), deploy_locks: Mutex::new(HashMap::new()) }
    }

    pub fn root(&self) -> PathBuf {
        self.store.root().to_path_buf()
    }

    /// The Docker engine, connected on first use (berth runs without it until a deploy).
    pub async fn runtime(&self) -> Result<Runtime, RuntimeError> {
        let mut slot = self.runtime.lock().await;
        if let Some(runtime) = slot.as_ref() {
            return Ok(runtime.clone());
        }
        let runtime = Runtime::connect(self.root()).await?;
        *slot = Some(runtime.clone());
        Ok(runtime)
    }

    /// Takes the app's deploy lock, saying so if another deploy holds it.
    pub async fn deploy_lock(&self, app: &str, out: &Output) -> Result<OwnedMutexGuard<()>, String> {
        let lock = {
            let mut locks = self.deploy_locks.lock().unwrap_or_else(|p| p.into_inner());
            locks.entry(app.to_string()).or_default().clone()
        };
        if let Ok(guard) = lock.clone().try_lock_owned() {
            return Ok(guard);
        }
        out.step(format!("Waiting for another deploy of {app} to finish")).await;
        tokio::time::timeout(DEPLOY_LOCK_TIMEOUT, lock.lock_owned()).await.map_err(|_| {
            format!("Gave up after {} minutes waiting for another deploy of {app}", DEPLOY_LOCK_TIMEOUT.as_secs() / 60)
        })
    }

    /// Locks the app, loads it, applies `change`, and saves it if `change` altered it.
    /// The closure's error leaves the state on disk untouched.
    pub async fn update_app<T, E>(
        &self,
        app: &str,
        change: impl FnOnce(&mut AppConfig) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<crate::store::StoreError>,
    {
        let _lock = self.store.lock_app(app).await;
        let before = self.store.load_app(app)?;
        let mut after = before.clone();
        let result = change(&mut after)?;
        if after != before {
            self.store.save_app(app, &after)?;
        }
        Ok(result)
    }
}

/// Who runs a command: the name of their SSH key (or `root` on the local socket), its role,
/// and whether they came through the local socket (root on the server).
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub local: bool,
}

impl Caller {
    /// Root on the server itself, through the local socket.
    pub fn local_root() -> Caller {
        Caller { name: "root".into(), role: Role::Admin, local: true }
    }
}
