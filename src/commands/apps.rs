//! `apps:*`: create, destroy, list, exists, rename, report, lock, unlock.

use super::Scope;
use super::property::{SetArgs, app_only, global_only};
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, EXIT_FAILURE, failed};
use crate::engine::Engine;
use crate::output::{Format, Report};
use crate::store::{AppConfig, StoreError};
use crate::validate;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("apps", "Manage apps")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create an app
    #[command(name = "apps:create")]
    Create {
        #[arg(value_parser = AppName::new_app)]
        app: AppName,
    },
    /// Destroy an app and everything berth keeps for it
    #[command(name = "apps:destroy")]
    Destroy {
        app: AppName,
        /// Do not ask for the app's name to confirm
        #[arg(long)]
        force: bool,
    },
    /// List apps
    #[command(name = "apps:list")]
    List {
        /// Names only, without the header
        #[arg(long, short)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Exit 0 if the app exists, 1 if not
    #[command(name = "apps:exists")]
    Exists { app: AppName },
    /// Rename an app
    #[command(name = "apps:rename")]
    Rename {
        old: AppName,
        #[arg(value_parser = AppName::new_app)]
        new: AppName,
    },
    /// Show an app's information (all apps without APP)
    #[command(name = "apps:report")]
    Report(ReportArgs),
    /// Refuse deploys of an app until unlocked
    #[command(name = "apps:lock")]
    Lock { app: AppName },
    /// Copy an app: its config, settings and git repository (not its domains, storage or
    /// certificates), then deploy the copy
    #[command(name = "apps:clone")]
    Clone {
        old: AppName,
        #[arg(value_parser = AppName::new_app)]
        new: AppName,
        /// Do not deploy the copy
        #[arg(long)]
        skip_deploy: bool,
        /// Do nothing (and succeed) if the new app exists
        #[arg(long)]
        ignore_existing: bool,
    },
    /// Exit 0 if deploys of the app are locked, 1 if not
    #[command(name = "apps:locked")]
    Locked { app: AppName },
    /// Allow deploys of an app again
    #[command(name = "apps:unlock")]
    Unlock { app: AppName },
    /// Set a setting of apps: --global disable-autocreation true|false (a push to an app that does not exist is refused)
    #[command(name = "apps:set")]
    Set(SetArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::List { .. } => Scope::Anyone,
            Cmd::Create { .. } | Cmd::Destroy { .. } | Cmd::Rename { .. } | Cmd::Clone { .. } | Cmd::Unlock { .. } => Scope::Admin,
            Cmd::Report(args) => args.scope(),
            Cmd::Set(_) => Scope::Admin,
            Cmd::Exists { app, .. } | Cmd::Lock { app, .. } | Cmd::Locked { app, .. } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Create { app } => create(ctx, &app).await,
            Cmd::Destroy { app, force } => destroy(ctx, &app, force).await,
            Cmd::List { quiet, format } => list(ctx, quiet, format).await,
            Cmd::Exists { app } => exists(ctx, &app).await,
            Cmd::Rename { old, new } => rename(ctx, &old, &new).await,
            Cmd::Report(args) => report(ctx, &args).await,
            Cmd::Lock { app } => set_locked(ctx, &app, true).await,
            Cmd::Clone { old, new, skip_deploy, ignore_existing } => clone(ctx, &old, &new, skip_deploy, ignore_existing).await,
            Cmd::Locked { app } => locked(ctx, &app).await,
            Cmd::Unlock { app } => set_locked(ctx, &app, false).await,
            Cmd::Set(args) => set(ctx, &args).await,
        }
    }
}

pub async fn create(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    create_app(ctx.engine, app).await?;
    ctx.out.step(format!("Creating {app}...")).await;
    let _ = crate::plugins::trigger(ctx.engine, "post-create", &[app.to_string()], &[], &ctx.out).await;
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
    config.domains = global.global_domains.iter().map(|g| crate::front::default_name(app, g)).filter(|d| !taken.contains(d)).collect();
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

pub async fn destroy(ctx: &mut Ctx<'_>, app: &AppName, force: bool) -> CmdResult {
    let store = &ctx.engine.store;
    if !store.app_exists(app) {
        return Err(StoreError::AppMissing(app.to_string()).into());
    }
    if !force {
        super::confirm(ctx, "apps:destroy", &format!("app {app}"), app).await?;
    }
    // Its previews go first: they are copies of it.
    for (preview, _) in crate::previews::of(ctx.engine, app) {
        crate::destroy::destroy_preview(ctx.engine, &preview).await.map_err(CmdError::Failed)?;
        ctx.out.step(format!("Destroyed its preview {preview}")).await;
    }
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    let _apps = store.lock_apps().await;
    let _app = store.lock_app(app).await;
    ctx.out.step(format!("Destroying {app}")).await;
    for note in crate::destroy::remove_everything(ctx.engine, app, &ctx.out).await.map_err(CmdError::Failed)? {
        ctx.out.step(note).await;
    }
    Ok(())
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
    crate::destroy::remove_everything(engine, app, &crate::output::Output::discard()).await.map_err(CmdError::Failed)?;
    Ok(true)
}

/// Lists every app by its directory, so an app whose state is damaged is listed too.
pub async fn list(ctx: &mut Ctx<'_>, quiet: bool, format: Format) -> CmdResult {
    let names = super::report::manageable_apps(ctx)?;
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

pub async fn exists(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    if ctx.engine.store.app_exists(app) { Ok(()) } else { Err(StoreError::AppMissing(app.to_string()).into()) }
}

pub async fn rename(ctx: &mut Ctx<'_>, old: &AppName, new: &AppName) -> CmdResult {
    if old == new {
        return Err(failed(format!("App {old} is already named {new}")));
    }
    let previews = crate::previews::of(ctx.engine, old);
    if !previews.is_empty() {
        let names: Vec<&str> = previews.iter().map(|(_, of)| of.branch.as_str()).collect();
        return Err(failed(format!("{old} has previews ({}): previews:destroy them first, their names follow the app's", names.join(", "))));
    }
    let store = &ctx.engine.store;
    // Both names' deploy locks (a first push to the new name would create it meanwhile),
    // taken in name order so two renames the other way round cannot deadlock.
    let (first, second) = {
        let (old, new): (&str, &str) = (old, new);
        if old < new { (old, new) } else { (new, old) }
    };
    let _deploying = ctx.engine.deploy_lock(first, &ctx.out).await.map_err(CmdError::Failed)?;
    let _deploying_too = ctx.engine.deploy_lock(second, &ctx.out).await.map_err(CmdError::Failed)?;
    let _apps = store.lock_apps().await;
    let _old = store.lock_app(old).await;
    let _new = store.lock_app(new).await;
    let mut config = store.load_app(old)?;
    if store.load_releases(old)?.active().is_some() {
        return Err(failed(format!("{old} is deployed: renaming a running app is not supported yet (destroy it and push to {new})")));
    }
    if store.app_exists(new) {
        return Err(StoreError::AppExists(new.to_string()).into());
    }
    // Default vhosts (`old.<global>`) follow the app, as in dokku, unless another app has
    // the new name already: then it is dropped.
    let global = store.load_global()?.global_domains;
    config.domains = renamed_domains(&config.domains, (old, new), &global, &domains_in_use(ctx.engine, Some(old))?);
    ctx.out.step(format!("Renaming {old} to {new}")).await;
    let to = ctx.engine.root().join("storage").join(new);
    if to.exists() {
        return Err(failed(format!("{} is left from an earlier app {new}: remove it first", to.display())));
    }
    // All or nothing: the state first, then whatever other features keep of the app
    // (`hooks`); if one fails, what was done is undone, in reverse.
    let old_config = store.load_app(old)?;
    store.rename_app(old, new)?;
    let renamed = async {
        store.save_app(new, &config)?;
        crate::hooks::renamed(ctx.engine, old, new, &ctx.out).await.map_err(failed)
    }
    .await;
    if let Err(e) = renamed {
        let _ = store.save_app(new, &old_config);
        let back = store.rename_app(new, old).map_err(|e| e.to_string());
        return Err(failed(format!(
            "Cannot rename {old} to {new}: {e}{}",
            back.err().map(|b| format!("; and cannot name it {old} again: {b}")).unwrap_or_default()
        )));
    }
    Ok(())
}

/// An app's domains once it is renamed from `old` to `new`: its default names under the
/// global domains follow it; a name another app has (`taken`) is dropped. Pure.
fn renamed_domains(domains: &[String], (old, new): (&str, &str), global: &[String], taken: &[String]) -> Vec<String> {
    let defaults: Vec<String> = global.iter().map(|g| format!("{old}.{g}")).collect();
    domains
        .iter()
        .map(|d| match defaults.iter().position(|x| x == d) {
            Some(i) => format!("{new}.{}", global[i]),
            None => d.clone(),
        })
        .filter(|d| !taken.contains(d))
        .collect()
}


pub async fn set_locked(ctx: &mut Ctx<'_>, app: &AppName, locked: bool) -> CmdResult {
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
pub async fn clone(ctx: &mut Ctx<'_>, old: &AppName, new: &AppName, skip_deploy: bool, ignore_existing: bool) -> CmdResult {
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
                // Its http-auth and maintenance come along, with berth's own page.
                config.gates.page = None;
                Ok::<_, CmdError>(())
            })
            .await?;
        crate::gates::apply(ctx.engine, new).await.map_err(failed)?;
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
pub async fn locked(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    if ctx.engine.store.load_app(app)?.locked {
        ctx.out.line("Deploy lock exists").await;
        Ok(())
    } else {
        ctx.out.line("Deploy lock does not exist").await;
        Err(CmdError::Exit(EXIT_FAILURE))
    }
}

/// `apps:set --global disable-autocreation [true|false]`. The deploy source is what berth
/// records of each deploy (`apps:report`), not a setting.
pub async fn set(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let key = args.property(&[global_only("disable-autocreation"), app_only("deploy-source"), app_only("deploy-source-metadata")])?;
    if key != "disable-autocreation" {
        return Err(failed(format!("{key} is what berth records of each deploy (apps:report shows it): it is not set by hand")));
    }
    let disabled = match args.value() {
        None => false,
        Some(v) => v.parse::<bool>().map_err(|_| failed(format!("Invalid value {} for disable-autocreation: true or false", validate::quoted(v))))?,
    };
    ctx.engine.update_global(|g| {
        g.disable_autocreation = disabled;
        Ok::<_, CmdError>(())
    }).await?;
    let shown = if disabled { "a push to an app that does not exist is refused (apps:create it first)" } else { "a first push creates its app" };
    ctx.out.step(format!("Autocreation {}: {shown}", if disabled { "disabled" } else { "enabled" })).await;
    Ok(())
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    let autocreation = |global: &crate::store::GlobalConfig| global.disable_autocreation.then(|| "true".to_string());
    if args.global {
        let report = Report::new("--global app information").namespace("app").global_layer("disable-autocreation", autocreation(&global), global.disable_autocreation);
        return args.print_global(ctx, report).await;
    }
    let minutes = crate::metrics::minutes(ctx.engine, &args.app_names(ctx)?).await;
    args.print_apps(ctx, |ctx, name, config| {
        // Where the release that serves came from: a push (its commit) or an image.
        let active = ctx.engine.store.load_releases(name)?.active().cloned();
        let (source, metadata) = match &active {
            Some(r) if !r.git_sha.is_empty() => ("git", r.git_sha.clone()),
            Some(r) => ("docker-image", r.image_tag.clone()),
            None => ("", String::new()),
        };
        let report = Report::new(format!("{name} app information"))
            .namespace("app")
            .row("App created at", config.created_at)
            .row("App dir", ctx.engine.store.app_dir(name).display().to_string())
            .row("App locked", config.locked)
            .row("App deploy source", source)
            .row("App deploy source metadata", metadata)
            .global_layer("disable-autocreation", autocreation(&global), global.disable_autocreation);
        Ok(crate::metrics::with_minute(report, minutes.get(name)))
    })
    .await
}
