//! An app going away: everything of it (containers, images, site, state, storage, its name
//! in scoped keys), for `apps:destroy`, a failed first push and previews (a deleted branch,
//! an expired or destroyed preview). Below the commands, so the scheduler can expire
//! previews without calling up into them.

use crate::engine::Engine;

/// Destroys a preview app (branch deleted, expired, `previews:destroy`): everything of it,
/// as `apps:destroy`, under the same locks.
pub async fn destroy_preview(engine: &Engine, app: &str) -> Result<(), String> {
    let _deploying = engine.deploy_lock(app, &crate::output::Output::discard()).await?;
    let _apps = engine.store.lock_apps().await;
    let _app = engine.store.lock_app(app).await;
    if !engine.store.app_exists(app) {
        return Ok(());
    }
    remove_everything(engine, app).await?;
    let _ = crate::plugins::trigger(engine, "post-delete", &[app.to_string()], &[], &crate::output::Output::discard()).await;
    Ok(())
}

/// An app and everything of it: containers and images (refused, with nothing removed, when
/// the Docker engine cannot be reached for an app that ran), its nginx site, its state, its
/// storage directories, and its name in scoped keys. Call with its deploy, apps and app
/// locks held. Returns the keys removed because they were scoped to it alone.
pub async fn remove_everything(engine: &Engine, app: &str) -> Result<Vec<String>, String> {
    // Nothing is removed unless the engine answers (teardown refuses first). Once the
    // containers are gone there is no way back, so every later step runs even if one fails:
    // above all the keys, or a new app of the same name would inherit an old key's rights.
    crate::deploy::teardown(engine, app).await?;
    let mut errors = Vec::new();
    if let Err(e) = engine.store.destroy_app(app) {
        errors.push(e.to_string());
    }
    if let Err(e) = crate::services::relink_app(engine, app, None) {
        errors.push(e.to_string());
    }
    let storage = engine.root().join("storage").join(app);
    if storage.exists()
        && let Err(e) = std::fs::remove_dir_all(&storage)
    {
        errors.push(format!("cannot remove {}: {e}", storage.display()));
    }
    let _keys = engine.store.lock_keys().await;
    let removed = match engine.store.load_keys() {
        Ok(mut keys) => {
            let removed = keys.forget_app(app);
            match engine.store.save_keys(&keys) {
                Ok(()) => removed,
                Err(e) => {
                    errors.push(e.to_string());
                    Vec::new()
                }
            }
        }
        Err(e) => {
            errors.push(e.to_string());
            Vec::new()
        }
    };
    if errors.is_empty() { Ok(removed) } else { Err(format!("{app} was destroyed, but not all of it: {}", errors.join("; "))) }
}

