//! What other features keep of an app, told when the app goes or takes a new name: one
//! list of hooks (dokku's triggers), walked in order. Adding a feature that keeps something
//! per app is one more entry here, not one more call in every command that destroys or
//! renames. A rename that fails part-way is walked back, in reverse.

use std::future::Future;
use std::pin::Pin;

use crate::engine::Engine;
use crate::output::Output;

/// What happened to an app.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// It is gone (its containers, site and state already are).
    Destroyed(&'a str),
    /// It is named `new` now (its state already is).
    Renamed { old: &'a str, new: &'a str },
}

impl Event<'_> {
    /// The same rename the other way round: what undoes it.
    fn reversed(self) -> Self {
        match self {
            Event::Renamed { old, new } => Event::Renamed { old: new, new: old },
            destroyed => destroyed,
        }
    }
}

type Done<'a> = Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + 'a>>;

/// One feature's part: what it does on an event; what it has to say (notes for the user).
struct Hook {
    run: for<'a> fn(&'a Engine, Event<'a>, &'a Output) -> Done<'a>,
}

/// In order: a rename walks them forward and, on a failure, the done ones back.
const HOOKS: &[Hook] = &[Hook { run: service_links }, Hook { run: storage }, Hook { run: gates }, Hook { run: metrics }, Hook { run: build_holders }, Hook { run: scoped_keys }, Hook { run: plugins }];

/// Tells every hook that `app` was destroyed. Each runs even if one before failed (the app is
/// gone already: what is left is named). Returns their notes, or what failed.
pub async fn destroyed(engine: &Engine, app: &str, out: &Output) -> Result<Vec<String>, Vec<String>> {
    let (mut notes, mut errors) = (Vec::new(), Vec::new());
    for hook in HOOKS {
        match (hook.run)(engine, Event::Destroyed(app), out).await {
            Ok(said) => notes.extend(said),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() { Ok(notes) } else { Err(errors) }
}

/// Tells every hook that `old` is named `new` now, in order; if one fails, those done are
/// told the rename the other way round, in reverse, and its error is returned.
pub async fn renamed(engine: &Engine, old: &str, new: &str, out: &Output) -> Result<(), String> {
    let event = Event::Renamed { old, new };
    for (done, hook) in HOOKS.iter().enumerate() {
        if let Err(e) = (hook.run)(engine, event, out).await {
            for undo in HOOKS[..done].iter().rev() {
                if let Err(again) = (undo.run)(engine, event.reversed(), out).await {
                    tracing::error!(old, new, "cannot undo part of a rename: {again}");
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Metrics: what nginx counted and the deploys of an app go with it, renamed or destroyed
/// (an app made later under the name starts from nothing, not from another's figures).
fn metrics<'a>(engine: &'a Engine, event: Event<'a>, _: &'a Output) -> Done<'a> {
    Box::pin(async move {
        let app = match event {
            Event::Destroyed(app) | Event::Renamed { old: app, .. } => app,
        };
        engine.deploys.lock().unwrap_or_else(|e| e.into_inner()).remove(app);
        if let Err(e) = engine.nginx.forget_traffic(app).await {
            tracing::warn!(app, "cannot clear nginx's counts: {e}");
        }
        Ok(Vec::new())
    })
}

/// The namespace kept for the app's next builds goes with the app and with its name: an app
/// made later under the name never builds in it. (The only place it goes with the app:
/// `teardown` removes what the app runs, not what its builds keep.)
fn build_holders<'a>(engine: &'a Engine, event: Event<'a>, _: &'a Output) -> Done<'a> {
    Box::pin(async move {
        let app = match event {
            Event::Destroyed(app) | Event::Renamed { old: app, .. } => app,
        };
        if let Ok(runtime) = engine.runtime().await
            && let Err(e) = runtime.remove_build_holders(app).await
        {
            tracing::warn!(app, "cannot remove the holder of its builds' network: {e}");
        }
        Ok(Vec::new())
    })
}

/// Linked services: the app's links follow its name, or go with it.
fn service_links<'a>(engine: &'a Engine, event: Event<'a>, _: &'a Output) -> Done<'a> {
    Box::pin(async move {
        let linked = match event {
            Event::Destroyed(app) => crate::services::relink_app(engine, app, None),
            Event::Renamed { old, new } => crate::services::relink_app(engine, old, Some(new)),
        };
        linked.map(|()| Vec::new()).map_err(|e| e.to_string())
    })
}

/// Named storage under `<root>/storage/APP`: moved with the app, or removed with it.
fn storage<'a>(engine: &'a Engine, event: Event<'a>, _: &'a Output) -> Done<'a> {
    Box::pin(async move {
        let dir = |app: &str| engine.root().join("storage").join(app);
        match event {
            Event::Destroyed(app) if dir(app).exists() => std::fs::remove_dir_all(dir(app)).map_err(|e| format!("cannot remove {}: {e}", dir(app).display()))?,
            Event::Renamed { old, new } if dir(old).exists() => std::fs::rename(dir(old), dir(new)).map_err(|e| format!("cannot move {}: {e}", dir(old).display()))?,
            _ => {}
        }
        Ok(Vec::new())
    })
}

/// Maintenance and http-auth in nginx: open for a destroyed app, moved to the new name.
fn gates<'a>(engine: &'a Engine, event: Event<'a>, _: &'a Output) -> Done<'a> {
    Box::pin(async move {
        match event {
            Event::Destroyed(app) => crate::gates::remove(engine, app).await,
            Event::Renamed { old, new } => {
                crate::gates::remove(engine, old).await;
                if engine.store.load_app(new).is_ok() {
                    crate::gates::apply(engine, new).await?;
                }
            }
        }
        Ok(Vec::new())
    })
}

/// Keys scoped to apps: they follow the name; a key scoped to a destroyed app alone goes
/// (a new app of the same name must not inherit its rights).
fn scoped_keys<'a>(engine: &'a Engine, event: Event<'a>, _: &'a Output) -> Done<'a> {
    Box::pin(async move {
        let _keys = engine.store.lock_keys().await;
        let mut keys = engine.store.load_keys().map_err(|e| e.to_string())?;
        let notes = match event {
            Event::Destroyed(app) => keys.forget_app(app).into_iter().map(|key| format!("Removed key {key}: it could manage only {app}")).collect(),
            Event::Renamed { old, new } => {
                keys.rename_app(old, new);
                Vec::new()
            }
        };
        engine.store.save_keys(&keys).map_err(|e| e.to_string())?;
        Ok(notes)
    })
}

/// Plugins: `post-delete APP`, `post-app-rename OLD NEW` (reported, never failing the change).
fn plugins<'a>(engine: &'a Engine, event: Event<'a>, out: &'a Output) -> Done<'a> {
    Box::pin(async move {
        let (trigger, args) = match event {
            Event::Destroyed(app) => ("post-delete", vec![app.to_string()]),
            Event::Renamed { old, new } => ("post-app-rename", vec![old.to_string(), new.to_string()]),
        };
        let _ = crate::plugins::trigger(engine, trigger, &args, &[], out).await;
        Ok(Vec::new())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuthorizedKey, AuthorizedKeys, Role, Store};

    fn engine(dir: &std::path::Path) -> std::sync::Arc<Engine> {
        let any = "127.0.0.1:1".parse().unwrap();
        Engine::new(Store::open(dir).unwrap(), crate::engine::Settings { ssh_listen: any, http_listen: any, https_listen: any, api_listen: any })
    }

    fn scoped(name: &str, apps: &[&str]) -> AuthorizedKey {
        let role = Role::App { apps: apps.iter().map(|a| a.to_string()).collect() };
        AuthorizedKey { name: name.into(), public_key: String::new(), fingerprint: String::new(), role, added_at: 0, may_create: false }
    }

    fn roles(engine: &Engine) -> Vec<(String, Role)> {
        engine.store.load_keys().unwrap().keys.into_iter().map(|k| (k.name, k.role)).collect()
    }

    #[tokio::test]
    async fn a_rename_moves_storage_and_keys_and_a_failure_walks_back() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        let storage = |app: &str| dir.path().join("storage").join(app).join("uploads");
        std::fs::create_dir_all(storage("shop")).unwrap();
        engine.store.save_keys(&AuthorizedKeys { keys: vec![scoped("ci", &["shop", "blog"])] }).unwrap();
        renamed(&engine, "shop", "store", &Output::discard()).await.unwrap();
        assert!(storage("store").is_dir() && !storage("shop").exists());
        assert_eq!(roles(&engine), vec![("ci".to_string(), Role::App { apps: vec!["store".into(), "blog".into()] })]);

        // The keys cannot be read: the storage move before them is undone, the error says why.
        let keys = dir.path().join("keys").join("authorized.toml");
        std::fs::write(&keys, "# damaged\n[[key]\n").unwrap();
        let err = renamed(&engine, "store", "shop", &Output::discard()).await.unwrap_err();
        assert!(err.contains("authorized.toml"), "{err}");
        assert!(storage("store").is_dir() && !storage("shop").exists(), "the storage went back");
    }

    #[tokio::test]
    async fn a_destroy_removes_storage_and_keys_scoped_to_it_alone_and_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path());
        std::fs::create_dir_all(dir.path().join("storage").join("shop").join("db")).unwrap();
        engine.store.save_keys(&AuthorizedKeys { keys: vec![scoped("only", &["shop"]), scoped("both", &["shop", "blog"])] }).unwrap();
        let notes = destroyed(&engine, "shop", &Output::discard()).await.unwrap();
        assert_eq!(notes, vec!["Removed key only: it could manage only shop"]);
        assert!(!dir.path().join("storage").join("shop").exists());
        assert_eq!(roles(&engine), vec![("both".to_string(), Role::App { apps: vec!["blog".into()] })]);
        // Every hook runs even when one fails; what failed is named.
        std::fs::create_dir_all(dir.path().join("storage").join("blog")).unwrap();
        std::fs::write(dir.path().join("keys").join("authorized.toml"), "# damaged\n[[key]\n").unwrap();
        let errors = destroyed(&engine, "blog", &Output::discard()).await.unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(!dir.path().join("storage").join("blog").exists());
    }
}
