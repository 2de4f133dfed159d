//! `domains:*`: the host names an app answers to, and the global domains new apps inherit.

use super::Scope;
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::output::Report;
use crate::validate;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("domains", "Manage domains used by the proxy")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Add domains to an app
    #[command(name = "domains:add")]
    Add {
        app: AppName,
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Remove domains from an app
    #[command(name = "domains:remove")]
    Remove {
        app: AppName,
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Replace an app's domains
    #[command(name = "domains:set")]
    Set {
        app: AppName,
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Remove all of an app's domains
    #[command(name = "domains:clear")]
    Clear { app: AppName },
    /// Show an app's domains (all apps without APP)
    #[command(name = "domains:report")]
    Report(ReportArgs),
    /// Add global domains: new apps get APP.DOMAIN
    #[command(name = "domains:add-global")]
    AddGlobal {
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Remove global domains (apps' default names under them go too)
    #[command(name = "domains:remove-global")]
    RemoveGlobal {
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Set the global domains: new apps get APP.DOMAIN
    #[command(name = "domains:set-global")]
    SetGlobal {
        #[arg(required = true)]
        domains: Vec<String>,
    },
    /// Remove all global domains
    #[command(name = "domains:clear-global")]
    ClearGlobal,
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::AddGlobal { .. } | Cmd::RemoveGlobal { .. } | Cmd::SetGlobal { .. } | Cmd::ClearGlobal => Scope::Admin,
            Cmd::Report(args) => args.scope(),
            Cmd::Add { app, .. } | Cmd::Remove { app, .. } | Cmd::Set { app, .. } | Cmd::Clear { app, .. } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Add { app, domains } => change(ctx, &app, Change::Add(domains)).await,
            Cmd::Remove { app, domains } => change(ctx, &app, Change::Remove(domains)).await,
            Cmd::Set { app, domains } => change(ctx, &app, Change::Set(domains)).await,
            Cmd::Clear { app } => change(ctx, &app, Change::Clear).await,
            Cmd::Report(args) => report(ctx, &args).await,
            Cmd::AddGlobal { domains } => change_global(ctx, &domains, true).await,
            Cmd::RemoveGlobal { domains } => change_global(ctx, &domains, false).await,
            Cmd::SetGlobal { domains } => set_global(ctx, &domains).await,
            Cmd::ClearGlobal => set_global(ctx, &[]).await,
        }
    }
}

pub enum Change {
    Add(Vec<String>),
    Remove(Vec<String>),
    Set(Vec<String>),
    Clear,
}

pub async fn change(ctx: &mut Ctx<'_>, app: &AppName, change: Change) -> CmdResult {
    let store = &ctx.engine.store;
    let names = match &change {
        Change::Add(d) | Change::Remove(d) | Change::Set(d) => d.iter().map(|d| validate::domain(d)).collect::<Result<Vec<_>, _>>()?,
        Change::Clear => Vec::new(),
    };
    // The apps lock makes "no other app has this domain" hold until the write is done.
    let _apps = store.lock_apps().await;
    if matches!(change, Change::Add(_) | Change::Set(_)) {
        for other in store.list_apps()?.into_iter().filter(|o| o != app) {
            let config = store.load_app(&other)?;
            if let Some(taken) = names.iter().find(|d| config.domains.contains(d)) {
                return Err(failed(format!("Domain {taken} is already used by app {other}")));
            }
        }
    }
    let mut before = Vec::new();
    let message = ctx
        .engine
        .update_app(app, |config| {
            before = config.domains.clone();
            Ok::<_, CmdError>(match &change {
                Change::Add(_) => {
                    for name in &names {
                        if !config.domains.contains(name) {
                            config.domains.push(name.clone());
                        }
                    }
                    format!("Added {} to {app}", names.join(" "))
                }
                Change::Remove(_) => {
                    if let Some(missing) = names.iter().find(|d| !config.domains.contains(d)) {
                        return Err(failed(format!("Domain {missing} is not a domain of {app}")));
                    }
                    config.domains.retain(|d| !names.contains(d));
                    format!("Removed {} from {app}", names.join(" "))
                }
                Change::Set(_) => {
                    config.domains.clear();
                    for name in &names {
                        if !config.domains.contains(name) {
                            config.domains.push(name.clone());
                        }
                    }
                    format!("Set {} for {app}", names.join(" "))
                }
                Change::Clear => {
                    config.domains.clear();
                    format!("Cleared domains in {app}")
                }
            })
        })
        .await?;
    ctx.out.step(message).await;
    drop(_apps);
    let routed = apply_routing(ctx, app).await;
    if routed.is_err() {
        // What nginx refused is not kept: it would fail every later deploy of the app.
        ctx.engine
            .update_app(app, |config| {
                config.domains = before;
                Ok::<_, CmdError>(())
            })
            .await?;
        ctx.out.error("The domain change was undone").await;
        return routed;
    }
    let domains = ctx.engine.store.load_app(app)?.domains;
    let args: Vec<String> = std::iter::once(app.to_string()).chain(domains).collect();
    let _ = crate::plugins::trigger(ctx.engine, "post-domains-update", &args, &[], &ctx.out).await;
    Ok(())
}

/// Routes the app again after a change of its domains or ports, so the change serves at
/// once; with Let's Encrypt enabled, a domain the certificate does not cover yet gets a new
/// certificate now. If that fails, the change stands (the new name is served over plain
/// http) and the daemon retries.
pub(super) async fn apply_routing(ctx: &Ctx<'_>, app: &str) -> CmdResult {
    let engine = ctx.engine;
    {
        let _deploying = engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
        crate::deploy::reroute(engine, app, &ctx.out).await.map_err(CmdError::Failed)?;
    }
    let config = engine.store.load_app(app)?;
    if !config.letsencrypt.enabled || config.domains.is_empty() {
        return Ok(());
    }
    let cert = crate::https::current(engine, app).map_err(CmdError::Failed)?;
    let uncovered: Vec<&String> = config.domains.iter().filter(|d| !cert.as_ref().is_some_and(|(_, info)| info.covers(d))).collect();
    if uncovered.is_empty() {
        return Ok(());
    }
    ctx.out.step(format!("Getting a certificate that covers {} too", uncovered.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", "))).await;
    if let Err(e) = crate::https::issue_letsencrypt(engine, app, &ctx.out).await {
        crate::https::record_failure(engine, app, &e).await;
        ctx.out
            .error(format!("Let's Encrypt: {e}; those names are served over plain http until a renewal succeeds (letsencrypt:auto-renew {app} --force)"))
            .await;
    }
    Ok(())
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    if args.global {
        let report = Report::new("Global domains information")
            .row("Domains global enabled", !global.global_domains.is_empty())
            .row("Domains global vhosts", global.global_domains.clone());
        return args.print_global(ctx, report).await;
    }
    args.print_apps(ctx, |_, name, config| {
        Ok(Report::new(format!("{name} domains information"))
            .row("Domains app enabled", !config.domains.is_empty())
            .row("Domains app vhosts", config.domains.clone())
            .row("Domains global enabled", !global.global_domains.is_empty())
            .row("Domains global vhosts", global.global_domains.clone()))
    })
    .await
}

/// `domains:add-global` / `domains:remove-global`: the global domains with these added or
/// removed, applied as `domains:set-global` applies them.
pub async fn change_global(ctx: &mut Ctx<'_>, domains: &[String], add: bool) -> CmdResult {
    let names = domains.iter().map(|d| validate::domain(d)).collect::<Result<Vec<_>, _>>()?;
    let mut next = ctx.engine.store.load_global()?.global_domains;
    for name in names {
        match (add, next.contains(&name)) {
            (true, false) => next.push(name),
            (false, true) => next.retain(|d| *d != name),
            (true, true) => ctx.out.step(format!("{name} is already a global domain")).await,
            (false, false) => ctx.out.step(format!("{name} is not a global domain")).await,
        }
    }
    set_global(ctx, &next).await
}

pub async fn set_global(ctx: &mut Ctx<'_>, domains: &[String]) -> CmdResult {
    let names = domains.iter().map(|d| validate::domain(d)).collect::<Result<Vec<_>, _>>()?;
    if names.iter().any(|d| d.starts_with("*.")) {
        return Err(failed("A global domain cannot be a wildcard: apps get APP.DOMAIN under it"));
    }
    let store = &ctx.engine.store;
    let changed = {
        let _apps = store.lock_apps().await;
        let _global = store.lock_global().await;
        let mut global = store.load_global()?;
        let before = std::mem::replace(&mut global.global_domains, names.clone());
        let apps = store.list_apps()?;
        let mut taken: Vec<(String, Vec<String>)> = Vec::new();
        for app in &apps {
            taken.push((app.clone(), store.load_app(app)?.domains));
        }
        // Every app's new names are decided before anything is written.
        let mut plans = Vec::new();
        for (app, domains) in &taken {
            let Some(proposed) = follow_global(app, domains, &before, &names) else {
                continue;
            };
            let mut next = Vec::new();
            for d in proposed {
                match taken.iter().find(|(other, theirs)| other != app && theirs.contains(&d)) {
                    Some((other, _)) => ctx.out.error(format!("{d} stays with app {other}: not added to {app}")).await,
                    None => next.push(d),
                }
            }
            plans.push((app.clone(), next));
        }
        store.save_global(&global)?;
        let mut changed = Vec::new();
        for (app, next) in plans {
            ctx.engine
                .update_app(&app, |config| {
                    config.domains = next.clone();
                    Ok::<_, CmdError>(())
                })
                .await?;
            changed.push(app);
        }
        changed
    };
    if names.is_empty() {
        ctx.out.step("Cleared global domains").await;
    } else {
        ctx.out.step(format!("Set global domains: {}", names.join(" "))).await;
    }
    for app in changed {
        let domains = store.load_app(&app)?.domains;
        ctx.out.step(format!("{app} now answers to {}", if domains.is_empty() { "no domain".to_string() } else { domains.join(" ") })).await;
        apply_routing(ctx, &app).await?;
    }
    Ok(())
}

/// An app's domains once the global domains change from `before` to `after`: its default
/// names (`APP.<old global>`) become `APP.<new global>`; its own names stay. `None` when
/// the app has no default name (its domains were set by hand) or nothing changes.
fn follow_global(app: &str, domains: &[String], before: &[String], after: &[String]) -> Option<Vec<String>> {
    let defaults: Vec<String> = before.iter().map(|g| format!("{app}.{g}")).collect();
    if !domains.iter().any(|d| defaults.contains(d)) {
        return None;
    }
    let mut next: Vec<String> = domains.iter().filter(|d| !defaults.contains(d)).cloned().collect();
    for g in after {
        let name = format!("{app}.{g}");
        if !next.contains(&name) {
            next.push(name);
        }
    }
    (next != domains).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::follow_global;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_names_follow_the_global_domain() {
        let next = follow_global("web", &v(&["web.1.2.3.4.sslip.io", "www.example.com"]), &v(&["1.2.3.4.sslip.io"]), &v(&["apps.example.com"]));
        assert_eq!(next, Some(v(&["www.example.com", "web.apps.example.com"])));
    }

    #[test]
    fn hand_set_domains_stay() {
        assert_eq!(follow_global("web", &v(&["www.example.com"]), &v(&["old.example"]), &v(&["new.example"])), None);
        assert_eq!(follow_global("web", &[], &v(&["old.example"]), &v(&["new.example"])), None);
    }

    #[test]
    fn clearing_the_global_domain_removes_default_names() {
        assert_eq!(follow_global("web", &v(&["web.old.example"]), &v(&["old.example"]), &[]), Some(vec![]));
        assert_eq!(follow_global("web", &v(&["web.same.example"]), &v(&["same.example"]), &v(&["same.example"])), None);
    }
}
