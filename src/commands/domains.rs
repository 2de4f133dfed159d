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
    /// Reset an app's domains to its default names under the global domains (APP.DOMAIN)
    #[command(name = "domains:reset")]
    Reset { app: AppName },
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
            Cmd::Add { app, .. } | Cmd::Remove { app, .. } | Cmd::Set { app, .. } | Cmd::Clear { app, .. } | Cmd::Reset { app } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Add { app, domains } => change(ctx, &app, Change::Add(domains)).await,
            Cmd::Remove { app, domains } => change(ctx, &app, Change::Remove(domains)).await,
            Cmd::Set { app, domains } => change(ctx, &app, Change::Set(domains)).await,
            Cmd::Clear { app } => change(ctx, &app, Change::Clear).await,
            Cmd::Reset { app } => change(ctx, &app, Change::Reset).await,
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
    /// Back to the default names (those no other app has), following the global domains.
    Reset,
}

/// The change applied to the app's domains; what to say of it.
fn apply(config: &mut crate::store::AppConfig, app: &AppName, change: &Change, names: &[String]) -> Result<String, CmdError> {
    Ok(match change {
        Change::Add(_) => {
            for name in names {
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
            for name in names {
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
        Change::Reset => {
            config.domains = names.to_vec();
            match names {
                [] => format!("Reset the domains of {app}: there is no global domain, so it has none"),
                _ => format!("Reset the domains of {app} to {}", names.join(" ")),
            }
        }
    })
}

pub async fn change(ctx: &mut Ctx<'_>, app: &AppName, change: Change) -> CmdResult {
    let store = &ctx.engine.store;
    let names = match &change {
        Change::Add(d) | Change::Remove(d) | Change::Set(d) => d.iter().map(|d| validate::domain(d)).collect::<Result<Vec<_>, _>>()?,
        Change::Clear | Change::Reset => Vec::new(),
    };
    // The apps lock makes "no other app has this domain" hold until the write is done.
    let _apps = store.lock_apps().await;
    let global = store.load_global()?.global_domains;
    // A default name another app answers to stays that app's (as at apps:create).
    let names = match change {
        Change::Reset => {
            let taken = super::apps::domains_in_use(ctx.engine, Some(app))?;
            default_names(app, &global).into_iter().filter(|d| !taken.contains(d)).collect()
        }
        _ => names,
    };
    if matches!(change, Change::Add(_) | Change::Set(_)) {
        let mut others = Vec::new();
        for other in store.list_apps()?.into_iter().filter(|o| o != app) {
            let domains = store.load_app(&other)?.domains;
            others.push((other, domains));
        }
        check_conflicts(&names, &others, &global, ctx.caller.role.is_admin())?;
        // A key scoped to apps claims only names of its own.
        if !ctx.caller.role.is_admin() {
            let may_manage = |other: &str| ctx.caller.role.may_manage(other);
            if let Some(why) = names.iter().find_map(|name| belongs_elsewhere(name, &others, &global, &may_manage)) {
                return Err(CmdError::Denied(why));
            }
        }
    }
    let defaults = default_names(app, &global);
    let (mut before, mut after) = ((Vec::new(), None), Vec::new());
    let message = ctx
        .engine
        .update_app(app, |config| {
            before = (config.domains.clone(), config.follows_global);
            let message = apply(config, app, &change, &names)?;
            // Whether the app keeps following the global domain is what the user just did to
            // its default names; with no global domain there are none to judge by.
            if matches!(change, Change::Clear) {
                config.follows_global = Some(false);
            } else if matches!(change, Change::Reset) {
                config.follows_global = Some(true);
            } else if !defaults.is_empty() {
                config.follows_global = Some(config.domains.iter().any(|d| defaults.contains(d)));
            }
            after = config.domains.clone();
            Ok::<_, CmdError>(message)
        })
        .await?;
    ctx.out.step(message).await;
    drop(_apps);
    let routed = apply_routing(ctx, app).await;
    if routed.is_err() {
        // What nginx refused is not kept: it would fail every later deploy of the app.
        // Only this change is undone: a change made since (by another command) stays.
        let undone = ctx
            .engine
            .update_app(app, |config| {
                let ours = config.domains == after;
                if ours {
                    (config.domains, config.follows_global) = before;
                }
                Ok::<_, CmdError>(ours)
            })
            .await?;
        ctx.out
            .error(if undone { "The domain change was undone" } else { "The domain change was not undone: another change of the domains came after it" })
            .await;
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
        crate::deploy::reroute(engine, app, &ctx.out).await.map_err(CmdError::from)?;
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
        let report = Report::new("--global domains information").namespace("domains")
            .row("Domains global enabled", !global.global_domains.is_empty())
            .row("Domains global vhosts", global.global_domains.clone());
        return args.print_global(ctx, report).await;
    }
    args.print_apps(ctx, |_, name, config| {
        Ok(Report::new(format!("{name} domains information")).namespace("domains")
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

/// One app's domains before and after a change of the global domains.
struct Move {
    app: String,
    /// Its domains and `follows_global` before.
    from: (Vec<String>, Option<bool>),
    to: Vec<String>,
}

/// `domains:set-global` (and `clear-global`, `add-global`, `remove-global`): every app that
/// follows the global domains gets its default names under the new ones, and is routed
/// again at once. All or nothing: if one app cannot be routed, the global domains and every
/// app's domains go back, and the apps routed already are routed again as they were.
pub async fn set_global(ctx: &mut Ctx<'_>, domains: &[String]) -> CmdResult {
    let names = domains.iter().map(|d| validate::domain(d)).collect::<Result<Vec<_>, _>>()?;
    if names.iter().any(|d| d.starts_with("*.")) {
        return Err(failed("A global domain cannot be a wildcard: apps get APP.DOMAIN under it"));
    }
    let store = &ctx.engine.store;
    let (before, moves) = {
        let _apps = store.lock_apps().await;
        let _global = store.lock_global().await;
        let mut global = store.load_global()?;
        let before = std::mem::replace(&mut global.global_domains, names.clone());
        let mut apps = Vec::new();
        for app in store.list_apps()? {
            let config = store.load_app(&app)?;
            apps.push((app, config));
        }
        // A wildcard that would catch every app's name under a new global domain is refused
        // here as domains:add refuses it.
        let added: Vec<&String> = names.iter().filter(|g| !before.contains(g)).collect();
        for (app, config) in &apps {
            if let Some(why) = config.domains.iter().find_map(|d| crate::front::claimed(d, &names)) {
                return Err(failed(format!("{why}: it is a domain of app {app} (domains:remove it first)")));
            }
            for wildcard in &config.domains {
                if let Some(g) = added.iter().find(|g| covers_global(wildcard, g)) {
                    return Err(failed(format!("{wildcard} of app {app} would catch every app's name under {g}: domains:remove {app} {wildcard} first")));
                }
            }
        }
        // Every app's new names are decided before anything is written.
        let mut moves = Vec::new();
        for (app, config) in &apps {
            if !follows_global(app, config.follows_global, &config.domains, &before) {
                continue;
            }
            let Some(proposed) = follow_global(app, &config.domains, &before, &names) else {
                continue;
            };
            let mut to = Vec::new();
            for d in proposed {
                match apps.iter().find(|(other, theirs)| other != app && theirs.domains.contains(&d)) {
                    Some((other, _)) => ctx.out.error(format!("{d} stays with app {other}: not added to {app}")).await,
                    None => to.push(d),
                }
            }
            if to != config.domains {
                moves.push(Move { app: app.clone(), from: (config.domains.clone(), config.follows_global), to });
            }
        }
        if let Err(e) = save_moves(ctx, &global, &moves).await {
            let problems = restore_moves(ctx, &before, &names, &moves).await;
            return Err(failed(format!("Global domains not changed: {e}{}", also(&problems))));
        }
        (before, moves)
    };
    for (i, moved) in moves.iter().enumerate() {
        if let Err(e) = apply_routing(ctx, &moved.app).await {
            let mut problems = {
                let _apps = store.lock_apps().await;
                let _global = store.lock_global().await;
                restore_moves(ctx, &before, &names, &moves).await
            };
            // The failed app too: the Let's Encrypt step may fail after its routing did not.
            for back in &moves[..=i] {
                if let Err(e) = apply_routing(ctx, &back.app).await {
                    problems.push(format!("routing {} back failed: {e}", back.app));
                }
            }
            return Err(failed(format!("Global domains not changed: routing {} failed: {e}{}", moved.app, also(&problems))));
        }
    }
    if names.is_empty() {
        ctx.out.step("Cleared global domains").await;
    } else {
        ctx.out.step(format!("Set global domains: {}", names.join(" "))).await;
    }
    for moved in &moves {
        let now = if moved.to.is_empty() { "no domain".to_string() } else { moved.to.join(" ") };
        ctx.out.step(format!("{} now answers to {now}", moved.app)).await;
    }
    // berth's own site follows the first global domain. Its failure leaves the apps as set.
    match crate::front::route(ctx.engine).await {
        Ok(()) => {
            if let Some(url) = crate::front::url(ctx.engine) {
                ctx.out.step(format!("berth's API and dashboard: {url}")).await;
            }
        }
        Err(e) => ctx.out.error(format!("berth's API and dashboard are not served through nginx: {e}")).await,
    }
    Ok(())
}

/// Writes the new global domains, then each app's new domains. Call with the apps and
/// global locks held.
async fn save_moves(ctx: &Ctx<'_>, global: &crate::store::GlobalConfig, moves: &[Move]) -> CmdResult {
    ctx.engine.store.save_global(global)?;
    for moved in moves {
        ctx.engine
            .update_app(&moved.app, |config| {
                config.domains = moved.to.clone();
                config.follows_global = Some(true);
                Ok::<_, CmdError>(())
            })
            .await?;
    }
    Ok(())
}

/// Puts back the global domains and the domains of the apps moved, where they are still what
/// `save_moves` wrote. Returns what could not be put back. Call with the apps and global
/// locks held.
async fn restore_moves(ctx: &Ctx<'_>, before: &[String], after: &[String], moves: &[Move]) -> Vec<String> {
    let store = &ctx.engine.store;
    let mut problems = Vec::new();
    let global = store.load_global().map_err(CmdError::from).and_then(|mut global| {
        if global.global_domains == after {
            global.global_domains = before.to_vec();
            store.save_global(&global)?;
        }
        Ok(())
    });
    if let Err(e) = global {
        problems.push(format!("the global domains stay changed: {e}"));
    }
    for moved in moves {
        let restored = ctx
            .engine
            .update_app(&moved.app, |config| {
                if config.domains == moved.to {
                    (config.domains, config.follows_global) = moved.from.clone();
                }
                Ok::<_, CmdError>(())
            })
            .await;
        if let Err(e) = restored {
            problems.push(format!("{}'s domains stay changed: {e}", moved.app));
        }
    }
    problems
}

/// What went wrong too, as the end of an error line.
fn also(problems: &[String]) -> String {
    problems.iter().map(|p| format!("; {p}")).collect()
}

/// An app's default names: `APP.<global domain>` for each global domain.
fn default_names(app: &str, global: &[String]) -> Vec<String> {
    global.iter().map(|g| crate::front::default_name(app, g)).collect()
}



/// Whether an app's default names follow the global domains (`global`, as they are before
/// a change): as recorded; for an app whose state predates the record, when it has one of
/// them, or has no domain at all while there is no global domain (`domains:clear-global`
/// took them).
fn follows_global(app: &str, recorded: Option<bool>, domains: &[String], global: &[String]) -> bool {
    recorded.unwrap_or_else(|| {
        let defaults = default_names(app, global);
        domains.iter().any(|d| defaults.contains(d)) || (global.is_empty() && domains.is_empty())
    })
}

/// The domains of an app that follows the global domains once they change from `before` to
/// `after`: its default names (`APP.<old global>`) become `APP.<new global>`; its own names
/// stay. `None` when nothing changes.
fn follow_global(app: &str, domains: &[String], before: &[String], after: &[String]) -> Option<Vec<String>> {
    let defaults = default_names(app, before);
    let mut next: Vec<String> = domains.iter().filter(|d| !defaults.contains(d)).cloned().collect();
    for name in default_names(app, after) {
        if !next.contains(&name) {
            next.push(name);
        }
    }
    (next != domains).then_some(next)
}

/// Refuses domains for an app that would take names of `others` (each app's name and
/// domains): a name another app has; a wildcard that covers one of another app's names; a
/// wildcard that covers a global domain's default names (`*.<global>`, or `*.<a parent of
/// it>`), which would catch every app's `APP.<global>` while that app is not served, and
/// every app to come. A plain name under another app's wildcard is allowed: nginx prefers
/// an exact name to any wildcard (and a longer wildcard to a shorter one), so it takes from
/// the wildcard's app only the name the user asked for. An admin may, as on dokku, add a
/// wildcard over a global domain: every app's default name under it stays that app's (an
/// exact name), the wildcard's app takes the rest. Pure.
fn check_conflicts(names: &[String], others: &[(String, Vec<String>)], global: &[String], admin: bool) -> CmdResult {
    for name in names {
        if let Some(why) = crate::front::claimed(name, global) {
            return Err(failed(why));
        }
        if let Some((other, _)) = others.iter().find(|(_, theirs)| theirs.contains(name)) {
            return Err(failed(format!("Domain {name} is already used by app {other}")));
        }
        if let Some(g) = global.iter().find(|g| covers_global(name, g))
            && !admin
        {
            return Err(failed(format!("Domain {name} would catch every app's name under the global domain {g} (APP.{g}): add names of this app only")));
        }
        for (other, theirs) in others {
            let defaults = default_names(other, global);
            if let Some(taken) = theirs.iter().find(|d| covers(name, d) && !(admin && defaults.contains(d))) {
                return Err(failed(format!("Domain {name} covers {taken}, a domain of app {other}")));
            }
        }
    }
    Ok(())
}

/// Why a key scoped to some apps may not add `name`: it is an address of this server (an IP
/// literal, `localhost`), or it is under another app's domain (`www.shop.test` or
/// `*.shop.test` when shop has `shop.test`; `SLUG.shop.<global>`, shop's preview names) and
/// the key may not manage that app. Pure.
fn belongs_elsewhere(name: &str, others: &[(String, Vec<String>)], global: &[String], may_manage: &dyn Fn(&str) -> bool) -> Option<String> {
    let bare = name.trim_start_matches("*.");
    if bare.parse::<std::net::IpAddr>().is_ok() || bare == "localhost" || bare.ends_with(".localhost") {
        return Some(format!("{name} names this server itself: only admins may add it"));
    }
    for (other, theirs) in others.iter().filter(|(other, _)| !may_manage(other)) {
        let parents = theirs.iter().map(|d| d.trim_start_matches("*.").to_string()).chain(global.iter().map(|g| format!("{other}.{g}")));
        for parent in parents {
            if name.ends_with(&format!(".{parent}")) {
                return Some(format!("{name} is under {parent}, a name of app {other}: only keys of {other} may add it"));
            }
        }
    }
    None
}

/// Whether `wildcard` catches the default names under the global domain `global`
/// (`APP.<global>`, whatever the app): it is `*.<global>` or `*.<a parent of it>`. Pure.
fn covers_global(wildcard: &str, global: &str) -> bool {
    covers(wildcard, &format!("any-app.{global}"))
}

/// Whether nginx would send `name` to a server named `wildcard` (`*.example.com`: every
/// name under example.com, at any depth, not example.com itself). False when `wildcard` is
/// a plain name. Pure.
fn covers(wildcard: &str, name: &str) -> bool {
    wildcard.strip_prefix('*').is_some_and(|dot_suffix| name.len() > dot_suffix.len() && name.ends_with(dot_suffix))
}

#[cfg(test)]
mod tests {
    use super::{belongs_elsewhere, check_conflicts, covers, follow_global, follows_global};
    use crate::front::default_name;

    #[test]
    fn a_scoped_key_claims_only_names_of_its_own() {
        let others = vec![("shop".to_string(), v(&["shop.test", "*.api.shop.io"])), ("blog".to_string(), v(&["blog.test"]))];
        let global = v(&["apps.example.com"]);
        let mine = |app: &str| app == "blog";
        let refused = |name: &str| belongs_elsewhere(name, &others, &global, &mine);
        for name in ["www.shop.test", "*.shop.test", "a.b.shop.test", "x.api.shop.io", "feature.shop.apps.example.com", "127.0.0.1", "::1", "localhost", "*.localhost", "app.localhost"] {
            assert!(refused(name).is_some(), "{name}");
        }
        for name in ["shop-fan.test", "myshop.test", "www.blog.test", "mine.apps.example.com", "feature.mine.apps.example.com", "example.org"] {
            assert_eq!(refused(name), None, "{name}");
        }
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_names_follow_the_global_domain() {
        let next = follow_global("web", &v(&["web.1.2.3.4.sslip.io", "www.example.com"]), &v(&["1.2.3.4.sslip.io"]), &v(&["apps.example.com"]));
        assert_eq!(next, Some(v(&["www.example.com", "web.apps.example.com"])));
    }

    #[test]
    fn clearing_the_global_domain_removes_default_names_and_setting_one_brings_them_back() {
        assert_eq!(follow_global("web", &v(&["web.old.example"]), &v(&["old.example"]), &[]), Some(vec![]));
        assert_eq!(follow_global("web", &v(&["web.same.example"]), &v(&["same.example"]), &v(&["same.example"])), None);
        assert_eq!(follow_global("web", &[], &[], &v(&["new.example"])), Some(v(&["web.new.example"])));
    }

    #[test]
    fn whether_an_app_follows_the_global_domain() {
        let old = v(&["old.example"]);
        // As recorded.
        assert!(follows_global("web", Some(true), &[], &old));
        assert!(!follows_global("web", Some(false), &[], &[]));
        // State from before the record: the domains tell.
        assert!(follows_global("web", None, &v(&["web.old.example", "www.example.com"]), &old));
        assert!(!follows_global("web", None, &v(&["www.example.com"]), &old));
        assert!(!follows_global("web", None, &[], &old));
        assert!(follows_global("web", None, &[], &[]));
        assert!(!follows_global("web", None, &v(&["www.example.com"]), &[]));
    }

    #[test]
    fn wildcards_cover_names_under_them_at_any_depth() {
        assert!(covers("*.example.com", "www.example.com"));
        assert!(covers("*.example.com", "a.b.example.com"));
        assert!(covers("*.example.com", "*.b.example.com"));
        assert!(!covers("*.example.com", "example.com"));
        assert!(!covers("*.example.com", "notexample.com"));
        assert!(!covers("www.example.com", "www.example.com"));
    }

    #[test]
    fn a_domain_may_not_take_another_apps_names_or_every_apps_default_name() {
        let others = vec![("shop".to_string(), v(&["shop.example.com", "*.cdn.example.net"]))];
        let global = v(&["apps.example.org"]);
        let refused = |names: &[&str]| check_conflicts(&v(names), &others, &global, false).unwrap_err().to_string();
        assert_eq!(refused(&["shop.example.com"]), "Domain shop.example.com is already used by app shop");
        assert_eq!(refused(&["*.example.com"]), "Domain *.example.com covers shop.example.com, a domain of app shop");
        assert_eq!(refused(&["*.example.net"]), "Domain *.example.net covers *.cdn.example.net, a domain of app shop");
        assert!(refused(&["*.apps.example.org"]).contains("every app's name under the global domain apps.example.org"));
        assert!(refused(&["*.example.org"]).contains("every app's name under the global domain apps.example.org"));
        // Exact names win over wildcards in nginx: a name under another app's wildcard is fine.
        assert!(check_conflicts(&v(&["img.cdn.example.net", "*.eu.cdn.example.net", "*.mine.example.com", "x.apps.example.org"]), &others, &global, false).is_ok());
        // An admin's wildcard over the global domain: other apps keep their default names.
        let others = vec![("shop".to_string(), v(&["shop.apps.example.org", "shop.example.com"]))];
        assert!(check_conflicts(&v(&["*.apps.example.org"]), &others, &global, true).is_ok());
        assert!(check_conflicts(&v(&["*.apps.example.org"]), &others, &global, false).is_err());
        assert!(check_conflicts(&v(&["*.example.com"]), &others, &global, true).unwrap_err().to_string().contains("covers shop.example.com"));
        assert_eq!(default_name("test.apps.example.org", "apps.example.org"), "test.apps.example.org");
        assert_eq!(default_name("test", "apps.example.org"), "test.apps.example.org");
    }
}
