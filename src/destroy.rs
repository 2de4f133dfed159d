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
    remove_everything(engine, app, &crate::output::Output::discard()).await?;
    Ok(())
}

/// An app and everything of it: containers and images (refused, with nothing removed, when
/// the Docker engine cannot be reached for an app that ran), its nginx site, its state, then
/// whatever other features keep of it (`hooks`: service links, storage, scoped keys,
/// plugins' `post-delete`). Call with its deploy, apps and app locks held. Returns what the
/// hooks had to say (keys removed because they were scoped to it alone).
pub async fn remove_everything(engine: &Engine, app: &str, out: &crate::output::Output) -> Result<Vec<String>, String> {
    // Nothing is removed unless the engine answers (teardown refuses first). Once the
    // containers are gone there is no way back, so every later step runs even if one fails:
    // above all the keys, or a new app of the same name would inherit an old key's rights.
    crate::deploy::teardown(engine, app).await.map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    if let Err(e) = engine.store.destroy_app(app) {
        errors.push(e.to_string());
    }
    match crate::hooks::destroyed(engine, app, out).await {
        Ok(notes) if errors.is_empty() => Ok(notes),
        Ok(_) => Err(format!("{app} was destroyed, but not all of it: {}", errors.join("; "))),
        Err(more) => Err(format!("{app} was destroyed, but not all of it: {}", errors.into_iter().chain(more).collect::<Vec<_>>().join("; "))),
    }
}
