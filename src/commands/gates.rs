//! `maintenance:*` and `http-auth:*` (dokku's plugins of those names): what nginx answers
//! before an app sees a request. Each change is put in nginx's memory at once (no deploy,
//! no reload: requests in flight finish).

use clap::Subcommand;

use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, Scope, failed};
use crate::output::Report;
use crate::store::{AppConfig, Cidr};
use crate::validate::AppName;

pub(super) const NAMESPACES: &[(&str, &str)] = &[("maintenance", "Serve a maintenance page instead of an app"), ("http-auth", "Ask for a user name and password before an app")];

/// The largest custom maintenance page tar, and the most files in it.
const MAX_PAGE_TAR: usize = 4 * 1024 * 1024;
const MAX_PAGE_FILES: usize = 64;
/// The longest password line read from stdin.
const MAX_PASSWORD_INPUT: usize = 1024;

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Serve the maintenance page (503) instead of the app, at once
    #[command(name = "maintenance:enable", visible_alias = "maintenance:on")]
    Enable { app: AppName },
    /// Serve the app again
    #[command(name = "maintenance:disable", visible_alias = "maintenance:off")]
    Disable { app: AppName },
    /// Set the maintenance page: a tar on stdin with maintenance.html and its files
    #[command(name = "maintenance:custom-page")]
    CustomPage { app: AppName },
    /// Go back to berth's own maintenance page
    #[command(name = "maintenance:clear-page")]
    ClearPage { app: AppName },
    /// Show whether an app is in maintenance (all apps without APP)
    #[command(name = "maintenance:report")]
    MaintenanceReport(ReportArgs),
    /// Ask for a user name and password before the app (USER's password from stdin when not given)
    #[command(name = "http-auth:enable", visible_alias = "http-auth:on")]
    AuthEnable { app: AppName, user: Option<String>, password: Option<String> },
    /// Stop asking for a password (the users are kept)
    #[command(name = "http-auth:disable", visible_alias = "http-auth:off")]
    AuthDisable { app: AppName },
    /// Add a user, or set a user's password (from stdin when not given)
    #[command(name = "http-auth:add-user")]
    AddUser { app: AppName, user: String, password: Option<String> },
    /// Remove a user
    #[command(name = "http-auth:remove-user")]
    RemoveUser { app: AppName, user: String },
    /// Let requests from an address or network (CIDR) in without a password
    #[command(name = "http-auth:add-allowed-ip", visible_alias = "http-auth:allowed-ip")]
    AddAllowedIp { app: AppName, address: String },
    /// Ask requests from an address or network for a password again
    #[command(name = "http-auth:remove-allowed-ip")]
    RemoveAllowedIp { app: AppName, address: String },
    /// Show an app's http-auth: on or off, its users (not their passwords), allowed addresses
    #[command(name = "http-auth:report")]
    AuthReport(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::MaintenanceReport(args) | Cmd::AuthReport(args) => args.scope(),
            Cmd::Enable { app }
            | Cmd::Disable { app }
            | Cmd::CustomPage { app }
            | Cmd::ClearPage { app }
            | Cmd::AuthEnable { app, .. }
            | Cmd::AuthDisable { app }
            | Cmd::AddUser { app, .. }
            | Cmd::RemoveUser { app, .. }
            | Cmd::AddAllowedIp { app, .. }
            | Cmd::RemoveAllowedIp { app, .. } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Enable { app } => maintenance(ctx, &app, true).await,
            Cmd::Disable { app } => maintenance(ctx, &app, false).await,
            Cmd::CustomPage { app } => custom_page(ctx, &app).await,
            Cmd::ClearPage { app } => {
                change(ctx, &app, |c| Ok(c.gates.page.take().is_some())).await?;
                let _ = std::fs::remove_dir_all(crate::gates::page_dir(ctx.engine, &app));
                apply(ctx, &app).await?;
                ctx.out.step(format!("{app}'s maintenance page is berth's own")).await;
                Ok(())
            }
            Cmd::MaintenanceReport(args) => maintenance_report(ctx, &args).await,
            Cmd::AuthEnable { app, user, password } => {
                if let Some(user) = user {
                    add_user(ctx, &app, &user, password).await?;
                } else if ctx.engine.store.load_app(&app)?.gates.http_auth.users.is_empty() {
                    return Err(failed(format!("{app} has no http-auth user yet: http-auth:enable {app} USER [PASSWORD]")));
                }
                change(ctx, &app, |c| Ok(!std::mem::replace(&mut c.gates.http_auth.enabled, true))).await?;
                apply(ctx, &app).await?;
                ctx.out.step(format!("{app} asks for a user name and password")).await;
                Ok(())
            }
            Cmd::AuthDisable { app } => {
                change(ctx, &app, |c| Ok(std::mem::replace(&mut c.gates.http_auth.enabled, false))).await?;
                apply(ctx, &app).await?;
                ctx.out.step(format!("{app} no longer asks for a password")).await;
                Ok(())
            }
            Cmd::AddUser { app, user, password } => {
                add_user(ctx, &app, &user, password).await?;
                apply(ctx, &app).await
            }
            Cmd::RemoveUser { app, user } => {
                let removed = change(ctx, &app, |c| {
                    let auth = &mut c.gates.http_auth;
                    if !auth.users.contains_key(&user) {
                        return Err(failed(format!("{app} has no http-auth user {user:?}")));
                    }
                    if auth.enabled && auth.users.len() == 1 {
                        return Err(failed(format!("{user} is {app}'s last http-auth user: http-auth:disable {app} first, or add another")));
                    }
                    Ok(auth.users.remove(&user).is_some())
                })
                .await?;
                apply(ctx, &app).await?;
                if removed {
                    ctx.out.step(format!("Removed the http-auth user {user} of {app}")).await;
                }
                Ok(())
            }
            Cmd::AddAllowedIp { app, address } => allowed(ctx, &app, &address, true).await,
            Cmd::RemoveAllowedIp { app, address } => allowed(ctx, &app, &address, false).await,
            Cmd::AuthReport(args) => auth_report(ctx, &args).await,
        }
    }
}

/// Changes the app's config; whether `f` says it changed something.
async fn change(ctx: &Ctx<'_>, app: &str, f: impl FnOnce(&mut AppConfig) -> Result<bool, CmdError>) -> Result<bool, CmdError> {
    ctx.engine.update_app(app, f).await
}

async fn apply(ctx: &Ctx<'_>, app: &str) -> CmdResult {
    crate::gates::apply(ctx.engine, app).await.map_err(failed)
}

async fn maintenance(ctx: &mut Ctx<'_>, app: &str, on: bool) -> CmdResult {
    let changed = change(ctx, app, |c| Ok(std::mem::replace(&mut c.gates.maintenance, on) != on)).await?;
    apply(ctx, app).await?;
    let said = match (on, changed) {
        (true, true) => format!("{app} is in maintenance: every request gets the maintenance page (503); maintenance:disable {app} ends it"),
        (true, false) => format!("{app} is already in maintenance"),
        (false, true) => format!("{app} is served again"),
        (false, false) => format!("{app} is not in maintenance"),
    };
    ctx.out.step(said).await;
    Ok(())
}

async fn custom_page(ctx: &mut Ctx<'_>, app: &str) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let input = ctx.input.read_to_end(MAX_PAGE_TAR).await.map_err(|_| failed(format!("The tar is over {} MiB: keep the maintenance page small", MAX_PAGE_TAR / 1024 / 1024)))?;
    let files = crate::gates::read_page_tar(&input, MAX_PAGE_FILES).map_err(failed)?;
    let tag = crate::gates::keep_page(ctx.engine, app, &files).map_err(failed)?;
    change(ctx, app, |c| Ok(c.gates.page.replace(tag.clone()) != Some(tag))).await?;
    apply(ctx, app).await?;
    ctx.out.step(format!("{app}'s maintenance page is the one sent ({} file(s))", files.len())).await;
    Ok(())
}

async fn maintenance_report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("maintenance")?;
    args.print_apps(ctx, |_, name, config| {
        Ok(Report::new(format!("{name} maintenance information"))
            .namespace("maintenance")
            .row("Maintenance enabled", config.gates.maintenance)
            .row("Maintenance custom page", config.gates.page.is_some()))
    })
    .await
}

/// The password given, else one line read from stdin.
async fn password_of(ctx: &mut Ctx<'_>, given: Option<String>) -> Result<String, CmdError> {
    let text = match given {
        Some(p) => p,
        None => {
            let bytes = ctx.input.read_to_end(MAX_PASSWORD_INPUT).await.map_err(|_| failed("The password on stdin is too long"))?;
            let text = String::from_utf8(bytes).map_err(|_| failed("The password on stdin is not UTF-8"))?;
            let line = text.strip_suffix('\n').unwrap_or(&text);
            line.strip_suffix('\r').unwrap_or(line).to_string()
        }
    };
    if text.is_empty() {
        return Err(failed("Give a password: as the last argument, or on stdin"));
    }
    Ok(crate::store::password(&text)?.to_string())
}

async fn add_user(ctx: &mut Ctx<'_>, app: &str, user: &str, password: Option<String>) -> CmdResult {
    let user = crate::store::user_name(user)?.to_string();
    ctx.engine.store.load_app(app)?;
    let password = password_of(ctx, password).await?;
    let hash = tokio::task::spawn_blocking(move || crate::store::hash_password(&password)).await.map_err(|e| failed(e.to_string()))??;
    let new = change(ctx, app, |c| Ok(c.gates.http_auth.users.insert(user.clone(), hash).is_none())).await?;
    let said = if new { format!("Added the http-auth user {user} to {app}") } else { format!("Set the password of {user} of {app}") };
    ctx.out.step(said).await;
    Ok(())
}

async fn allowed(ctx: &mut Ctx<'_>, app: &str, address: &str, add: bool) -> CmdResult {
    let cidr = Cidr::parse(address)?.canonical();
    let changed = change(ctx, app, |c| {
        let list = &mut c.gates.http_auth.allowed;
        let had = list.contains(&cidr);
        match add {
            true if !had => list.push(cidr.clone()),
            false => list.retain(|a| *a != cidr),
            true => {}
        }
        Ok(had != add)
    })
    .await?;
    apply(ctx, app).await?;
    let said = match (add, changed) {
        (true, true) => format!("Requests to {app} from {cidr} need no password"),
        (true, false) => format!("{cidr} is already allowed in {app} without a password"),
        (false, true) => format!("Requests to {app} from {cidr} need a password again"),
        (false, false) => format!("{cidr} was not allowed in {app} without a password"),
    };
    ctx.out.step(said).await;
    Ok(())
}

async fn auth_report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("http-auth")?;
    args.print_apps(ctx, |ctx, name, config| {
        let inherited = crate::gates::auth_of(ctx.engine, config).filter(|_| !config.gates.http_auth.enabled).is_some();
        let auth = &config.gates.http_auth;
        Ok(Report::new(format!("{name} http-auth information"))
            .namespace("http-auth")
            .row("Http auth enabled", auth.enabled || inherited)
            .row("Http auth inherited", inherited)
            .row("Http auth users", auth.users.keys().cloned().collect::<Vec<_>>())
            .row("Http auth allowed ips", auth.allowed.clone()))
    })
    .await
}
