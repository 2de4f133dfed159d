//! `apps:*`: create, destroy, list, exists, rename, report, lock, unlock.

use super::{CmdError, CmdResult, Ctx, EXIT_FAILURE, failed};
use crate::engine::Engine;
use crate::output::{Format, Report, print_reports};
use crate::store::{AppConfig, StoreError};
use crate::validate;

pub async fn create(ctx: &mut Ctx<'_>, app: &str) -> CmdResult {
    create_app(ctx.engine, app).await?;
    ctx.out.step(format!("Creating {app}...")).await;
    Ok(())
}

/// Creates an app with its default vhosts (`app.<global domain>`); also used by the first
/// push to an unknown app.
pub async fn create_app(engine: &Engine, app: &str) -> CmdResult {
    validate::new_app_name(app)?;
    let store = &engine.store;
    let _apps = store.lock_apps().await;
    if store.app_exists(app) {
        return Err(StoreError::AppExists(app.to_string()).into());
    }
    let global = store.load_global()?;
    let mut config = AppConfig::new();
    // A default name another app already answers to stays that app's.
    let taken = domains_in_use(engine, None)?;
    config.domains = global.global_domains.iter().map(|g| format!("{app}.{g}")).filter(|d| !taken.contains(d)).collect();
    store.create_app(app, &config)?;
    Ok(())
}

/// Every domain some app answers to, but `except`'s. Call with the apps lock held.
pub fn domains_in_use(engine: &Engine, except: Option<&str>) -> Result<Vec<String>, CmdError> {
    let mut taken = Vec::new();
    for other in engine.store.list_apps()?.into_iter().filter(|o| Some(o.as_str()) != except) {
        taken.extend(engine.store.load_app(&other)?.domains);
    }
    Ok(taken)
}

pub async fn destroy(ctx: &mut Ctx<'_>, app: &str, force: bool) -> CmdResult {
    validate::app_name(app)?;
    let store = &ctx.engine.store;
    if !store.app_exists(app) {
        return Err(StoreError::AppMissing(app.to_string()).into());
    }
    if !force {
        ctx.out.error("WARNING: Potentially Destructive Action").await;
        ctx.out.error(format!("This command will destroy app {app}.")).await;
        ctx.out.error(format!("To proceed, type \"{app}\" (or run apps:destroy {app} --force)")).await;
        let answer = ctx.input.read_line(256).await.unwrap_or_default();
        if answer.trim() != app {
            return Err(failed(format!("Confirmation did not match {app}. Aborted.")));
        }
    }
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    let _apps = store.lock_apps().await;
    let _app = store.lock_app(app).await;
    ctx.out.step(format!("Destroying {app}")).await;
    for key in remove_everything(ctx.engine, app).await? {
        ctx.out.step(format!("Removed key {key}: it could manage only {app}")).await;
    }
    Ok(())
}

/// An app and everything of it: containers and images (refused, with nothing removed, when
/// the Docker engine cannot be reached for an app that ran), its nginx site, its state, its
/// storage directories, and its name in scoped keys. Call with its deploy, apps and app
/// locks held. Returns the keys removed because they were scoped to it alone.
async fn remove_everything(engine: &Engine, app: &str) -> Result<Vec<String>, CmdError> {
    crate::deploy::teardown(engine, app).await.map_err(CmdError::Failed)?;
    engine.store.destroy_app(app)?;
    let storage = engine.root().join("storage").join(app);
    if storage.exists() {
        std::fs::remove_dir_all(&storage).map_err(|e| failed(format!("cannot remove {}: {e}", storage.display())))?;
    }
    let _keys = engine.store.lock_keys().await;
    let mut keys = engine.store.load_keys()?;
    let removed = keys.forget_app(app);
    engine.store.save_keys(&keys)?;
    Ok(removed)
}

/// Removes an app that a first push created, when that push landed nothing (its deploy
/// failed, so the branch was not updated) and the app was never deployed. Returns whether
/// it was removed. A push or command that got in meanwhile keeps the app.
pub async fn remove_unborn(engine: &Engine, app: &str) -> Result<bool, CmdError> {
    let _deploying = engine.deploy_lock(app, &crate::output::Output::discard()).await.map_err(CmdError::Failed)?;
    let store = &engine.store;
    let _apps = store.lock_apps().await;
    let _app = store.lock_app(app).await;
    if !store.app_exists(app) || store.load_releases(app)?.active().is_some() {
        return Ok(false);
    }
    let repo = store.repo_dir(app);
    if repo.exists() && !crate::git::is_empty_repo(&repo).map_err(|e| failed(e.to_string()))? {
        return Ok(false);
    }
    remove_everything(engine, app).await?;
    Ok(true)
}

/// Lists every app by its directory, so an app whose state is damaged is listed too.
pub async fn list(ctx: &mut Ctx<'_>, quiet: bool, format: Format) -> CmdResult {
    let names = app_names(ctx, None)?;
    if format == Format::Json {
        ctx.out.line(serde_json::to_string(&names).unwrap_or_else(|_| "[]".into())).await;
        return Ok(());
    }
    if names.is_empty() {
        // dokku's words, on stderr, and not an error.
        ctx.out.error("You haven't deployed any applications yet").await;
        return Ok(());
    }
    if !quiet {
        ctx.out.header("My Apps").await;
    }
    for name in names {
        ctx.out.line(name).await;
    }
    Ok(())
}

pub async fn exists(ctx: &mut Ctx<'_>, app: &str) -> CmdResult {
    validate::app_name(app)?;
    if ctx.engine.store.app_exists(app) {
        Ok(())
    } else {
        Err(StoreError::AppMissing(app.to_string()).into())
    }
}

pub async fn rename(ctx: &mut Ctx<'_>, old: &str, new: &str) -> CmdResult {
    validate::app_name(old)?;
    validate::new_app_name(new)?;
    if old == new {
        return Err(failed(format!("App {old} is already named {new}")));
    }
    let store = &ctx.engine.store;
    let _deploying = ctx.engine.deploy_lock(old, &ctx.out).await.map_err(CmdError::Failed)?;
    let _apps = store.lock_apps().await;
    let _old = store.lock_app(old).await;
    let _new = store.lock_app(new).await;
    let mut config = store.load_app(old)?;
    if store.load_releases(old)?.active().is_some() {
        return Err(failed(format!(
            "{old} is deployed: renaming a running app is not supported yet (destroy it and push to {new})"
        )));
    }
    if store.app_exists(new) {
        return Err(StoreError::AppExists(new.to_string()).into());
    }
    // Default vhosts (`old.<global>`) follow the app, as in dokku, unless another app has
    // the new name already: then it is dropped.
    let global = store.load_global()?;
    let taken = domains_in_use(ctx.engine, Some(old))?;
    let defaults: Vec<String> = global.global_domains.iter().map(|g| format!("{old}.{g}")).collect();
    config.domains = config
        .domains
        .iter()
        .map(|d| match defaults.iter().position(|x| x == d) {
            Some(i) => format!("{new}.{}", global.global_domains[i]),
            None => d.clone(),
        })
        .filter(|d| !taken.contains(d))
        .collect();
    ctx.out.step(format!("Renaming {old} to {new}")).await;
    let (from, to) = (ctx.engine.root().join("storage").join(old), ctx.engine.root().join("storage").join(new));
    if to.exists() {
        return Err(failed(format!("{} is left from an earlier app {new}: remove it first", to.display())));
    }
    store.rename_app(old, new)?;
    store.save_app(new, &config)?;
    if from.exists() {
        std::fs::rename(&from, &to).map_err(|e| failed(format!("cannot move {}: {e}", from.display())))?;
    }
    let _keys = store.lock_keys().await;
    let mut keys = store.load_keys()?;
    keys.rename_app(old, new);
    store.save_keys(&keys)?;
    Ok(())
}

pub async fn set_locked(ctx: &mut Ctx<'_>, app: &str, locked: bool) -> CmdResult {
    validate::app_name(app)?;
    ctx.engine
        .update_app(app, |config| {
            config.locked = locked;
            Ok::<_, CmdError>(())
        })
        .await?;
    ctx.out.step(if locked { "Deploy lock created" } else { "Deploy lock removed" }).await;
    Ok(())
}

/// `apps:clone OLD NEW`: a new app with OLD's env and settings and a copy of its git
/// repository, deployed from its deploy branch unless `skip_deploy`. Domains (they are
/// OLD's), storage, certificates and locks are not copied.
pub async fn clone(ctx: &mut Ctx<'_>, old: &str, new: &str, skip_deploy: bool, ignore_existing: bool) -> CmdResult {
    validate::app_name(old)?;
    validate::new_app_name(new)?;
    let source = ctx.engine.store.load_app(old)?;
    if ctx.engine.store.app_exists(new) {
        if ignore_existing {
            ctx.out.step(format!("{new} already exists: nothing cloned")).await;
            return Ok(());
        }
        return Err(StoreError::AppExists(new.to_string()).into());
    }
    create_app(ctx.engine, new).await?;
    let copied = async {
        ctx.engine
            .update_app(new, |config| {
                let domains = std::mem::take(&mut config.domains);
                let created_at = config.created_at;
                *config = source.clone();
                config.domains = domains;
                config.created_at = created_at;
                config.locked = false;
                config.stopped = false;
                config.letsencrypt = Default::default();
                // Named storage is OLD's data: the copy starts without mounts.
                config.storage.clear();
                Ok::<_, CmdError>(())
            })
            .await?;
        let (from, to) = (ctx.engine.store.repo_dir(old), ctx.engine.store.repo_dir(new));
        if from.join("HEAD").exists() {
            copy_dir(&from, &to).map_err(|e| failed(format!("cannot copy the git repository of {old}: {e}")))?;
            crate::git::ensure_repo(&to, &ctx.engine.exe, &ctx.engine.root(), new).map_err(|e| failed(e.to_string()))?;
        }
        Ok::<_, CmdError>(())
    }
    .await;
    if let Err(e) = copied {
        let _ = remove_unborn(ctx.engine, new).await;
        return Err(e);
    }
    ctx.out.step(format!("Cloned {old} to {new}")).await;
    let deployed = ctx.engine.store.load_releases(old)?.active().is_some();
    if skip_deploy || !deployed {
        return Ok(());
    }
    super::ps::rebuild(ctx, new).await
}

/// Copies a directory tree (files, directories, symlinks as symlinks).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_dir(&src, &dst)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
        } else {
            std::fs::copy(&src, &dst)?;
        }
    }
    Ok(())
}

/// `apps:locked APP`: exit 0 when deploys are locked, 1 when not (dokku's words).
pub async fn locked(ctx: &mut Ctx<'_>, app: &str) -> CmdResult {
    validate::app_name(app)?;
    if ctx.engine.store.load_app(app)?.locked {
        ctx.out.line("Deploy lock exists").await;
        Ok(())
    } else {
        ctx.out.line("Deploy lock does not exist").await;
        Err(CmdError::Exit(EXIT_FAILURE))
    }
}

pub async fn report(ctx: &mut Ctx<'_>, app: Option<&str>, format: Format) -> CmdResult {
    report_apps(ctx, app, format, |ctx, name, config| {
        Report::new(format!("{name} app information"))
            .row("App created at", config.created_at)
            .row("App dir", ctx.engine.store.app_dir(name).display().to_string())
            .row("App locked", config.locked)
    })
    .await
}

/// The app named, or every app the caller may manage (sorted).
pub(super) fn app_names(ctx: &Ctx<'_>, app: Option<&str>) -> Result<Vec<String>, CmdError> {
    Ok(match app {
        Some(app) => vec![validate::app_name(app)?.to_string()],
        None => ctx.engine.store.list_apps()?.into_iter().filter(|n| ctx.caller.role.may_manage(n)).collect(),
    })
}

/// Prints one report per app: the one named, or every app the caller may manage. With an
/// app named, an error reading its state is the command's error. Without, an app whose
/// state cannot be read (any of its files: app.toml, releases.toml, tls.toml) is one error
/// line naming the file, the other apps are reported, and the exit is non-zero.
pub(super) async fn report_apps(
    ctx: &Ctx<'_>,
    app: Option<&str>,
    format: Format,
    build: impl Fn(&Ctx<'_>, &str, &AppConfig) -> Report,
) -> CmdResult {
    let mut reports = Vec::new();
    let mut unreadable = Vec::new();
    for name in app_names(ctx, app)? {
        match ctx.engine.store.load_app_checked(&name) {
            Ok(config) => {
                let report = build(ctx, &name, &config);
                reports.push((name, report));
            }
            Err(e) if app.is_none() => unreadable.push(CmdError::from(e)),
            Err(e) => return Err(e.into()),
        }
    }
    print_app_reports(ctx, &reports, unreadable, app.is_some(), format).await
}

/// The end of a report over apps: the reports, then one error line per app that could not
/// be read (` !     <file>…`), and a non-zero exit if there was one (the lines already say
/// why). For reports that gather per app in a loop of their own: collect each app's load
/// error instead of returning it when no app was named, and finish with this.
pub(super) async fn print_app_reports(
    ctx: &Ctx<'_>,
    reports: &[(String, Report)],
    unreadable: Vec<CmdError>,
    single: bool,
    format: Format,
) -> CmdResult {
    print_reports(&ctx.out, reports, single, format).await.map_err(failed)?;
    for error in &unreadable {
        ctx.out.error(error.to_string()).await;
    }
    if unreadable.is_empty() { Ok(()) } else { Err(CmdError::Exit(EXIT_FAILURE)) }
}
