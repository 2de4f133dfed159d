//! The engine the front doors share: state, settings, and who is calling.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::store::{AppConfig, Role, Store};

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
}

impl Engine {
    pub fn new(store: Store, settings: Settings) -> Engine {
        Engine { store, settings }
    }

    pub fn root(&self) -> PathBuf {
        self.store.root().to_path_buf()
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

/// Who runs a command: the name of their SSH key (or `root` on the local socket) and its role.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

impl Caller {
    /// Root on the server itself, through the local socket.
    pub fn local_root() -> Caller {
        Caller { name: "root".into(), role: Role::Admin }
    }
}
