//! `previews:*`: pushed branches as preview apps (`crate::previews`).

use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, Scope, failed};
use crate::deploy::{self, Source};
use crate::output::{Format, Report};
use crate::previews;
use crate::store::{AppConfig, PreviewOf, PreviewSettings, StoreError};
use crate::validate::{self, AppName};
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("previews", "Manage preview apps of pushed branches")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List an app's previews: branch, URL, release, age, expiry
    #[command(name = "previews")]
    List {
        app: AppName,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Turn previews on: a push of any other branch than the deploy branch becomes APP--BRANCH
    #[command(name = "previews:enable")]
    Enable {
        app: AppName,
        /// Destroyed when not pushed for this long: 7d, 12h, 30m (default 7d)
        #[arg(long)]
        ttl: Option<String>,
        /// Most previews at once (default 5)
        #[arg(long)]
        max: Option<u32>,
    },
    /// Turn previews off (the existing ones stay until destroyed or expired)
    #[command(name = "previews:disable")]
    Disable { app: AppName },
    /// Set: ttl 7d | max N | config-exclude KEY… | config KEY=VALUE… | link-services true|false | http-auth true|false
    #[command(name = "previews:set")]
    Set {
        app: AppName,
        key: String,
        values: Vec<String>,
    },
    /// Destroy the preview of a branch
    #[command(name = "previews:destroy")]
    Destroy { app: AppName, branch: String },
    /// Show an app's preview settings
    #[command(name = "previews:report")]
    Report(ReportArgs),
    /// (internal) deploy a pushed branch as its preview; called by the git hook
    #[command(name = "previews:deploy", hide = true)]
    Deploy {
        app: AppName,
        new: String,
        refname: String,
        #[arg(long)]
        context: std::path::PathBuf,
        /// The push's token (`BERTH_PUSH`): who pushed
        #[arg(long)]
        push: Option<String>,
    },
    /// (internal) a branch was deleted: its preview goes; called by the git hook
    #[command(name = "previews:gone", hide = true)]
    Gone { app: AppName, branch: String },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::List { app, .. } | Cmd::Enable { app, .. } | Cmd::Disable { app } | Cmd::Set { app, .. } | Cmd::Destroy { app, .. } => Scope::App(app),
            Cmd::Report(args) => args.scope(),
            Cmd::Deploy { .. } | Cmd::Gone { .. } => Scope::Internal,
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::List { app, format } => list(ctx, &app, format).await,
            Cmd::Enable { app, ttl, max } => enable(ctx, &app, ttl.as_deref(), max).await,
            Cmd::Disable { app } => update(ctx, &app, |p| p.enabled = false, "Previews of {app} turned off (the existing ones stay)").await,
            Cmd::Set { app, key, values } => set(ctx, &app, &key, &values).await,
            Cmd::Destroy { app, branch } => destroy(ctx, &app, &branch).await,
            Cmd::Report(args) => report(ctx, &args).await,
            Cmd::Deploy { app, new, refname, context, push } => {
                let pusher = ctx.pusher(&app, push.as_deref())?;
                deploy_branch(ctx, &app, &new, &refname, &context, &pusher.name).await
            }
            Cmd::Gone { app, branch } => gone(ctx, &app, &branch).await,
        }
    }
}

fn check_max(max: u32) -> Result<u32, CmdError> {
    if (1..=50).contains(&max) { Ok(max) } else { Err(failed(format!("Invalid max {max}: 1 to 50 previews"))) }
}

async fn update(ctx: &mut Ctx<'_>, app: &AppName, change: impl FnOnce(&mut PreviewSettings), said: &str) -> CmdResult {
    let config = ctx.engine.store.load_app(app)?;
    if config.preview_of.is_some() {
        return Err(failed(format!("{app} is a preview: previews are set on its parent")));
    }
    ctx.engine
        .update_app(app, |c| {
            change(&mut c.previews);
            Ok::<_, CmdError>(())
        })
        .await?;
    ctx.out.step(said.replace("{app}", app)).await;
    Ok(())
}

async fn enable(ctx: &mut Ctx<'_>, app: &AppName, ttl: Option<&str>, max: Option<u32>) -> CmdResult {
    let ttl = ttl.map(previews::parse_ttl).transpose().map_err(CmdError::Failed)?;
    let max = max.map(check_max).transpose()?;
    let said = format!("Previews of {app} turned on: a push of a branch other than its deploy branch becomes {app}--BRANCH");
    update(
        ctx,
        app,
        |p| {
            p.enabled = true;
            p.ttl = ttl.or(p.ttl);
            p.max = max.or(p.max);
        },
        &said,
    )
    .await?;
    preview_wildcard(ctx, app).await;
    Ok(())
}

/// With a DNS provider set: `*.` of the previews' names, so that each preview is served
/// over https from its first push (served to the app and its previews only). Without one,
/// or if the order fails (said), previews are served over http. An app's key orders it only
/// under the global domain (`*.APP.<global>`, the app's own names); under one of the app's
/// domains, that is an admin's (`letsencrypt:wildcard`).
async fn preview_wildcard(ctx: &Ctx<'_>, app: &str) {
    let engine = ctx.engine;
    let (Ok(config), Ok(global), Ok(dns)) = (engine.store.load_app(app), engine.store.load_global(), engine.store.load_dns()) else { return };
    let Some(base) = previews::base_domain(app, &config.domains, &global.global_domains) else { return };
    let own = global.global_domains.first().is_some_and(|g| base == format!("{app}.{g}"));
    if !own && !ctx.caller.role.is_admin() {
        return;
    }
    if !matches!(dns.provider(), Ok(Some(_))) || engine.store.wildcards().iter().any(|(d, b)| *d == base && b.info.not_after > crate::unix_now() as i64) {
        return;
    }
    if let Err(e) = crate::wildcard::issue(engine, &base, crate::wildcard::Serve::AppAndPreviews(app), &ctx.out).await {
        ctx.out.error(format!("*.{base} could not be issued ({e}): previews are served over http until letsencrypt:wildcard {base} succeeds")).await;
    }
}

async fn set(ctx: &mut Ctx<'_>, app: &AppName, key: &str, values: &[String]) -> CmdResult {
    let one = || values.first().map(String::as_str).ok_or_else(|| failed(format!("previews:set {app} {key} needs a value")));
    match key {
        "ttl" => {
            let ttl = previews::parse_ttl(one()?).map_err(CmdError::Failed)?;
            update(ctx, app, |p| p.ttl = Some(ttl), &format!("Previews of {app} expire after {} without a push", previews::show_ttl(ttl))).await
        }
        "max" => {
            let max = check_max(one()?.parse().map_err(|_| failed("max is a number of previews, 1 to 50"))?)?;
            update(ctx, app, |p| p.max = Some(max), &format!("{app} has at most {max} previews")).await
        }
        "config-exclude" => {
            for key in values {
                validate::env_key(key)?;
            }
            let keys = values.to_vec();
            update(ctx, app, |p| p.config_exclude = keys, &format!("Previews of {app} do not get: {}", values.join(" "))).await
        }
        "config" => {
            let pairs = values.iter().map(|pair| validate::env_pair(pair)).collect::<Result<Vec<_>, _>>()?;
            let keys: Vec<String> = pairs.iter().map(|(k, _)| k.clone()).collect();
            update(ctx, app, |p| p.config = pairs.into_iter().collect(), &format!("Previews of {app} get their own: {}", keys.join(" "))).await
        }
        "link-services" => {
            let on = match one()? {
                "true" => true,
                "false" => false,
                other => return Err(failed(format!("Invalid value {} for link-services: true or false", validate::quoted(other)))),
            };
            update(ctx, app, |p| p.link_services = on, &format!("Previews of {app} {} its linked services", if on { "share" } else { "do not share" })).await
        }
        "http-auth" => {
            let on = match one()? {
                "true" => true,
                "false" => false,
                other => return Err(failed(format!("Invalid value {} for http-auth: true or false", validate::quoted(other)))),
            };
            update(ctx, app, |p| p.http_auth = on, &format!("Previews of {app} {} its http-auth users", if on { "ask for" } else { "do not ask for" })).await?;
            crate::gates::apply(ctx.engine, app).await.map_err(failed)
        }
        _ => Err(failed("Invalid property specified, valid properties include: config, config-exclude, http-auth, link-services, max, ttl")),
    }
}

/// Where a preview is served, as a browser opens it.
fn url(ctx: &Ctx<'_>, config: &AppConfig) -> String {
    let Some(domain) = config.domains.first() else { return String::new() };
    match ctx.engine.nginx.listen.http.port() {
        80 => format!("http://{domain}"),
        port => format!("http://{domain}:{port}"),
    }
}

async fn list(ctx: &mut Ctx<'_>, app: &AppName, format: Format) -> CmdResult {
    let parent = ctx.engine.store.load_app(app)?;
    let ttl = parent.previews.ttl.unwrap_or(PreviewSettings::DEFAULT_TTL);
    let now = crate::unix_now();
    let mut rows = Vec::new();
    for (name, of) in previews::of(ctx.engine, app) {
        let config = ctx.engine.store.load_app(&name)?;
        let release = ctx.engine.store.load_releases(&name)?.active().map(|r| r.version);
        rows.push((name, of.branch.clone(), url(ctx, &config), release, now.saturating_sub(config.created_at), (of.last_push + ttl).saturating_sub(now)));
    }
    if format == Format::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|(name, branch, url, release, age, expires)| serde_json::json!({"branch": branch, "app": name, "url": url, "release": release, "age_seconds": age, "expires_in_seconds": expires}))
            .collect();
        ctx.out.line(serde_json::Value::Array(list).to_string()).await;
        return Ok(());
    }
    if rows.is_empty() {
        ctx.out.error(format!("{app} has no previews{}", if parent.previews.enabled { "" } else { " (previews:enable to have pushed branches become previews)" })).await;
        return Ok(());
    }
    ctx.out.header(format!("{app} previews")).await;
    for (name, branch, url, release, age, expires) in rows {
        let release = release.map(|v| format!("v{v}")).unwrap_or_else(|| "-".into());
        ctx.out.detail(format!("{branch:<30} {release:<6} {url:<50} age {} expires in {} ({name})", previews::show_ttl(age.max(60)), previews::show_ttl(expires.max(60)))).await;
    }
    Ok(())
}

async fn destroy(ctx: &mut Ctx<'_>, app: &AppName, branch: &str) -> CmdResult {
    let name = previews::app_name(app, branch);
    let found = previews::of(ctx.engine, app).into_iter().any(|(n, of)| n == name && of.branch == branch);
    if !found {
        return Err(failed(format!("{app} has no preview of branch {} (see previews {app})", validate::quoted(branch))));
    }
    crate::destroy::destroy_preview(ctx.engine, &name).await.map_err(CmdError::Failed)?;
    ctx.out.step(format!("Destroyed the preview of {app} for {branch} ({name})")).await;
    Ok(())
}

async fn gone(ctx: &mut Ctx<'_>, app: &AppName, branch: &str) -> CmdResult {
    let name = previews::app_name(app, branch);
    if previews::of(ctx.engine, app).into_iter().any(|(n, of)| n == name && of.branch == branch) {
        crate::destroy::destroy_preview(ctx.engine, &name).await.map_err(CmdError::Failed)?;
        ctx.out.step(format!("Deleted {branch}: its preview {name} is destroyed")).await;
    } else {
        ctx.out.step(format!("Deleted {branch}: it had no preview")).await;
    }
    Ok(())
}

async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("previews")?;
    args.print_apps(ctx, |ctx, name, config| {
        let p = &config.previews;
        let count = previews::of(ctx.engine, name).len();
        Ok(Report::new(format!("{name} previews information"))
            .row("Previews enabled", p.enabled)
            .row("Previews ttl", previews::show_ttl(p.ttl.unwrap_or(PreviewSettings::DEFAULT_TTL)))
            .row("Previews max", p.max.unwrap_or(PreviewSettings::DEFAULT_MAX))
            .row("Previews count", count)
            .row("Previews config exclude", p.config_exclude.clone())
            .row("Previews config", p.config.keys().cloned().collect::<Vec<_>>())
            .row("Previews link services", p.link_services)
            .row("Previews http auth", p.http_auth)
            .row("Previews of", config.preview_of.as_ref().map(|o| format!("{} ({})", o.parent, o.branch)).unwrap_or_default()))
    })
    .await
}

/// The preview app of `parent`'s `branch`, created if this is its first push (within the
/// parent's `max`, its domain free): whether it was created now.
async fn claim(ctx: &Ctx<'_>, parent: &AppName, parent_config: &AppConfig, branch: &str, domain: &str, now: u64) -> Result<bool, CmdError> {
    let engine = ctx.engine;
    let name = previews::app_name(parent, branch);
    let _apps = engine.store.lock_apps().await;
    match engine.store.load_app(&name) {
        Ok(existing) => match existing.preview_of {
            Some(of) if of.parent == parent.as_str() && of.branch == branch => Ok(false),
            Some(of) => Err(failed(format!("{name} already serves branch {} of {}: rename this branch", of.branch, of.parent))),
            None => Err(failed(format!("{name} already serves an app that is not a preview"))),
        },
        Err(StoreError::AppMissing(_)) => {
            let existing = previews::of(engine, parent);
            let max = parent_config.previews.max.unwrap_or(PreviewSettings::DEFAULT_MAX) as usize;
            if existing.len() >= max {
                let branches: Vec<String> = existing.iter().map(|(_, of)| of.branch.clone()).collect();
                return Err(failed(format!(
                    "{parent} has {} previews, its most (previews:set {parent} max N, or previews:destroy {parent} BRANCH): {}",
                    existing.len(),
                    branches.join(", ")
                )));
            }
            if super::apps::domains_in_use(engine, None)?.iter().any(|d| d == domain) {
                return Err(failed(format!("{domain} is served by another app already")));
            }
            let mut config = AppConfig::new();
            config.domains = vec![domain.to_string()];
            config.preview_of = Some(PreviewOf { parent: parent.to_string(), branch: branch.to_string(), last_push: now });
            engine.store.create_app(&name, &config)?;
            crate::gates::apply(engine, &name).await.map_err(failed)?;
            // The parent's build cache, copied: the first build of a preview reuses it.
            let cache = engine.store.app_dir(parent).join("cache");
            if cache.is_dir() {
                let _ = tokio::process::Command::new("cp").arg("-a").arg(&cache).arg(engine.store.app_dir(&name).join("cache")).status().await;
            }
            ctx.out.step(format!("Creating the preview of {parent} for {branch}: {name}")).await;
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}

/// A pushed branch deployed as its preview: created on its first push (within `max`), its
/// config the parent's (minus exclusions, plus overrides) at each push, then a normal
/// deploy. A first push that fails leaves no preview behind.
async fn deploy_branch(ctx: &mut Ctx<'_>, parent: &AppName, new: &str, refname: &str, context: &std::path::Path, pusher: &str) -> CmdResult {
    let context = crate::git::BuildContext::adopt(context, &ctx.engine.store.tmp_dir()).ok_or_else(|| failed(format!("{} is not a build context of berth's", context.display())))?;
    let branch = refname.strip_prefix("refs/heads/").ok_or_else(|| failed(format!("{refname} is not a branch")))?;
    let engine = ctx.engine;
    let parent_config = engine.store.load_app(parent)?;
    if !parent_config.previews.enabled {
        return Err(failed(format!("Previews of {parent} are off (previews:enable {parent})")));
    }
    let name = previews::app_name(parent, branch);
    let slug = previews::slug(parent, branch);
    let global = engine.store.load_global()?;
    let domain = previews::domain(parent, &slug, &parent_config.domains, &global.global_domains)
        .ok_or_else(|| failed(format!("A preview needs a name to be served at: domains:add {parent} DOMAIN, or domains:set-global DOMAIN")))?;
    let now = crate::unix_now();
    let created = claim(ctx, parent, &parent_config, branch, &domain, now).await?;
    let linked = previews::linked_vars(engine, parent);
    let has_certificate = engine.store.load_tls(&name).ok().flatten().is_some();
    engine
        .update_app(&name, |c| {
            c.env = previews::env(&parent_config, &linked);
            c.builder = parent_config.builder;
            c.buildpacks = parent_config.buildpacks.clone();
            c.checks = parent_config.checks.clone();
            // The parent's mappings, and the https one a certificate of the preview's brought
            // (its wildcard's: the parent may have none).
            let kept: Vec<_> = if has_certificate { c.ports.iter().filter(|p| p.scheme == crate::validate::Scheme::Https).cloned().collect() } else { Vec::new() };
            c.ports = if kept.is_empty() { parent_config.ports.clone() } else { parent_config.effective_ports() };
            for https in kept {
                if !c.ports.iter().any(|p| p.host == https.host) {
                    c.ports.push(https);
                }
            }
            c.build = parent_config.build.clone();
            if let Some(of) = c.preview_of.as_mut() {
                of.last_push = now;
            }
            Ok::<_, CmdError>(())
        })
        .await?;
    let deployed = {
        let _deploying = engine.deploy_lock(&name, &ctx.out).await.map_err(CmdError::Failed)?;
        let source = Source::Build { context, git_sha: new.to_string(), pushed: false };
        // Under its parent's previews wildcard: the certificate first, so that the first
        // route already serves https.
        crate::wildcard::serve_new_app(engine, &name, &ctx.out).await;
        deploy::deploy_locked(engine, &name, source, &deploy::Cause::new(format!("git push {branch}"), pusher), &ctx.out).await
    };
    match deployed {
        Ok(_) => {
            let config = engine.store.load_app(&name)?;
            ctx.out.header(format!("Preview of {parent} for {branch}: {}", url(ctx, &config))).await;
            Ok(())
        }
        Err(why) => {
            if created {
                let _ = crate::destroy::destroy_preview(engine, &name).await;
                ctx.out.error(format!("{name} was created by this push, which failed: removed it")).await;
            }
            Err(why.into())
        }
    }
}
