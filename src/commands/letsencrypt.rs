//! `letsencrypt:*`: certificates from an ACME CA (Let's Encrypt by default), issued through
//! berth's nginx and renewed by the daemon. Names and settings follow dokku's plugin.

use super::Scope;
use super::Target;
use super::property::SetArgs;
use super::property::{app_or_global, global_only};
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::https::{self, HttpsMappings, Issued, Renewed};
use crate::output::{Format, Report};
use crate::store::{CertSource, LetsencryptConfig};
use crate::tls;
use crate::validate;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("letsencrypt", "Automated certificate management via Let's Encrypt")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Set a Let's Encrypt setting: email ADDRESS | server DIRECTORY_URL (admins) | graceperiod SECONDS (no value: unset); auto true (--global: every app gets a certificate at its first deploy); DNS-01 (--global, admins): dns-provider rfc2136|exec, dns-rfc2136-server IP[:PORT], dns-rfc2136-key-name NAME, dns-rfc2136-key-secret BASE64, dns-rfc2136-key-algorithm hmac-sha256|384|512, dns-exec-path PROGRAM (called with present|cleanup FQDN VALUE), dns-check-server IP[:PORT]
    #[command(name = "letsencrypt:set")]
    Set(SetArgs),
    /// Get a certificate for *.DOMAIN and DOMAIN over DNS-01 (letsencrypt:set --global dns-provider) and serve it to every app whose names it covers, now and at their first deploy; renewed by the daemon
    #[command(name = "letsencrypt:wildcard")]
    Wildcard { domain: String },
    /// Get a certificate for every domain of the app (or, with --server, for berth.DOMAIN, berth's API and dashboard) from Let's Encrypt and serve it at once
    #[command(name = "letsencrypt:enable")]
    Enable {
        #[arg(required_unless_present = "server", conflicts_with = "server")]
        app: Option<AppName>,
        /// berth's own site (admins)
        #[arg(long)]
        server: bool,
    },
    /// Stop renewing and remove the app's (or, with --server, berth's site's) Let's Encrypt certificate
    #[command(name = "letsencrypt:disable")]
    Disable {
        #[arg(required_unless_present = "server", conflicts_with = "server")]
        app: Option<AppName>,
        /// berth's own site (admins)
        #[arg(long)]
        server: bool,
    },
    /// List apps with Let's Encrypt: expiry, days left, renewal status
    #[command(name = "letsencrypt:list")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Renew now the certificates that are due (the wildcards and every app's, or APP's)
    #[command(name = "letsencrypt:auto-renew")]
    AutoRenew {
        app: Option<AppName>,
        /// Renew even if not due
        #[arg(long)]
        force: bool,
    },
    /// Show an app's Let's Encrypt settings and certificate state
    #[command(name = "letsencrypt:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::List { .. } => Scope::Anyone,
            Cmd::AutoRenew { app, .. } => app.as_deref().map_or(Scope::Anyone, Scope::App),
            Cmd::Report(args) => args.scope(),
            // The ACME server is called from this host: which one is an admin's choice (a
            // scoped key could probe the host's own ports through its errors).
            Cmd::Set(args) if args.key.as_deref() == Some("server") || args.key.as_deref().is_some_and(|k| k.starts_with("dns-")) => Scope::Admin,
            Cmd::Wildcard { .. } => Scope::Admin,
            Cmd::Set(args) => args.target.scope(),
            Cmd::Enable { app: Some(app), .. } | Cmd::Disable { app: Some(app), .. } => Scope::App(app),
            Cmd::Enable { app: None, .. } | Cmd::Disable { app: None, .. } => Scope::Admin,
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Set(args) => set(ctx, &args).await,
            Cmd::Wildcard { domain } => wildcard(ctx, &domain).await,
            Cmd::Enable { app: Some(app), .. } => enable(ctx, &app).await,
            Cmd::Disable { app: Some(app), .. } => disable(ctx, &app).await,
            Cmd::Enable { app: None, .. } => crate::front::enable_letsencrypt(ctx.engine, &ctx.out).await.map_err(|e| failed(format!("Let's Encrypt: {e}; berth's site is served as before"))),
            Cmd::Disable { app: None, .. } => crate::front::disable_letsencrypt(ctx.engine, &ctx.out).await.map_err(failed),
            Cmd::List { format } => list(ctx, format).await,
            Cmd::AutoRenew { app, force } => auto_renew(ctx, app.as_deref(), force).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

/// `letsencrypt:set (APP|--global) email|server|graceperiod [VALUE]`: no VALUE unsets.
pub async fn set(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let mut properties = vec![app_or_global("email"), app_or_global("server"), app_or_global("graceperiod"), global_only("auto")];
    properties.extend(crate::dns::PROPERTIES.iter().map(|p| global_only(p)));
    let key = args.property(&properties)?;
    let value = args.value();
    if key.starts_with("dns-") {
        let mut dns = ctx.engine.store.load_dns().map_err(failed)?;
        dns.set(key, value).map_err(|e| failed(e.to_string()))?;
        ctx.engine.store.save_dns(&dns).map_err(failed)?;
        match value {
            Some(_) => ctx.out.step(format!("Setting {key} to {} globally", dns.shown(key))).await,
            None => ctx.out.step(format!("Unsetting {key} globally")).await,
        }
        return Ok(());
    }
    let apply = |settings: &mut LetsencryptConfig| -> Result<(), CmdError> {
        match key {
            "email" => settings.email = value.map(|v| validate::email(v).map(str::to_string)).transpose()?,
            "server" => settings.server = value.map(|v| validate::acme_server(v).map(str::to_string)).transpose()?,
            "auto" => {
                settings.auto = value.map(|v| v.parse::<bool>().map_err(|_| failed(format!("Invalid auto {}: true or false", validate::quoted(v))))).transpose()?.unwrap_or(false)
            }
            _ => {
                settings.graceperiod = value
                    .map(|v| {
                        v.parse::<u64>().ok().filter(|n| *n <= 10 * 365 * 86_400).ok_or_else(|| {
                            failed(format!("Invalid graceperiod {}: seconds before expiry to renew, e.g. 2592000 (30 days)", validate::quoted(v)))
                        })
                    })
                    .transpose()?
            }
        }
        Ok(())
    };
    match &args.target {
        Target::Global => ctx.engine.update_global(|config| apply(&mut config.letsencrypt)).await?,
        Target::App(app) => ctx.engine.update_app(app, |config| apply(&mut config.letsencrypt)).await?,
    }
    let target = match &args.target {
        Target::Global => "globally".to_string(),
        Target::App(app) => format!("for {app}"),
    };
    match value {
        Some(v) => ctx.out.step(format!("Setting {key} to {v} {target}")).await,
        None => ctx.out.step(format!("Unsetting {key} {target}")).await,
    }
    Ok(())
}

/// `letsencrypt:wildcard DOMAIN`: `*.DOMAIN` and `DOMAIN` over DNS-01, served to every app
/// they cover.
pub async fn wildcard(ctx: &mut Ctx<'_>, domain: &str) -> CmdResult {
    let domain = domain.trim_start_matches("*.").to_ascii_lowercase();
    validate::domain(&domain).map_err(|e| failed(e.to_string()))?;
    if domain.contains('*') {
        return Err(failed(format!("Invalid domain {}: DOMAIN gives *.DOMAIN and DOMAIN", validate::quoted(&domain))));
    }
    let started = std::time::Instant::now();
    crate::wildcard::issue(ctx.engine, &domain, crate::wildcard::Serve::Covered, &ctx.out).await.map_err(|e| failed(format!("Let's Encrypt: {e}; the current certificates keep serving")))?;
    ctx.out.step(format!("*.{domain} issued in {:.2}s; the daemon renews it before expiry", started.elapsed().as_secs_f64())).await;
    Ok(())
}

/// `letsencrypt:enable APP`: issue now, serve at once, renew from then on.
pub async fn enable(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    let config = ctx.engine.store.load_app(app)?;
    if https::effective(&config, &ctx.engine.store.load_global()?).email.is_none() {
        return Err(failed("Set an email for Let's Encrypt first: letsencrypt:set --global email you@example.com"));
    }
    if config.domains.is_empty() {
        return Err(failed(format!("{app} has no domains: domains:add {app} DOMAIN first")));
    }
    let started = std::time::Instant::now();
    ctx.out.step(format!("Enabling Let's Encrypt for {app}")).await;
    // Installing the certificate marks Let's Encrypt enabled, under the same lock.
    match https::issue_letsencrypt(ctx.engine, app, &ctx.out).await {
        Ok(Issued::Installed) => {}
        Ok(Issued::Dropped(why)) => return Err(failed(format!("Let's Encrypt was not enabled for {app}: {why}"))),
        Err(e) => return Err(failed(format!("Let's Encrypt: {e}; {app} is served as before"))),
    }
    ctx.out.step(format!("Let's Encrypt enabled for {app} in {:.2}s; the daemon renews it before expiry", started.elapsed().as_secs_f64())).await;
    Ok(())
}

/// `letsencrypt:disable APP`: renewal stops, the Let's Encrypt certificate is removed, and
/// with it the https mapping enabling added (one of the user's stays).
pub async fn disable(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    let engine = ctx.engine;
    let letsencrypt_cert = || -> Result<bool, CmdError> { Ok(engine.store.load_tls(app)?.is_some_and(|s| s.source == CertSource::Letsencrypt)) };
    if !engine.store.load_app(app)?.letsencrypt.enabled && !letsencrypt_cert()? {
        return Err(failed(format!("Let's Encrypt is not enabled for {app}")));
    }
    let _deploying = engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    // Read again under the lock: a renewal may have finished (or a certificate come) meanwhile.
    let letsencrypt_cert = letsencrypt_cert()?;
    let had_certificate = engine.store.load_tls(app)?.is_some();
    engine
        .update_app(app, |config| {
            config.letsencrypt.enabled = false;
            Ok::<_, CmdError>(())
        })
        .await?;
    if letsencrypt_cert || !had_certificate {
        https::remove(engine, app, HttpsMappings::AddedByLetsencrypt, &ctx.out).await.map_err(CmdError::Failed)?;
    }
    let message = match (letsencrypt_cert, had_certificate) {
        (true, _) => format!("Removed the Let's Encrypt certificate of {app}: it is served over plain http"),
        (false, false) => format!("Let's Encrypt disabled for {app}"),
        (false, true) => format!("Let's Encrypt disabled for {app} (its certificate is not Let's Encrypt's and stays)"),
    };
    ctx.out.step(message).await;
    Ok(())
}

/// One row of `letsencrypt:list`.
struct Listed {
    app: String,
    domains: Vec<String>,
    expires_at: Option<i64>,
    /// When the daemon renews it (`graceperiod` before expiry).
    renews_at: Option<i64>,
    status: String,
    error: Option<String>,
}

/// `letsencrypt:list`: every app with Let's Encrypt enabled, its expiry and renewal state.
pub async fn list(ctx: &mut Ctx<'_>, format: Format) -> CmdResult {
    let now = crate::unix_now() as i64;
    let global = ctx.engine.store.load_global()?;
    let mut rows = Vec::new();
    for app in super::report::manageable_apps(ctx)? {
        let config = ctx.engine.store.load_app(&app)?;
        if !config.letsencrypt.enabled {
            continue;
        }
        let (expires_at, error, status) = match https::current(ctx.engine, &app) {
            Ok(cert) => {
                let renewal = https::renewal(ctx.engine, &app);
                let retry = format!("failed {} time(s); next try {} UTC", renewal.failures, tls::utc(renewal.next_attempt as i64));
                let status = match (&cert, &renewal.last_error, https::due(&config, &global, cert.as_ref(), now)) {
                    (Some(_), Some(_), _) => format!("renewal {retry}"),
                    (None, Some(_), _) => format!("no certificate: issuing {retry}"),
                    (None, None, _) => "no certificate".into(),
                    (Some(_), None, Some(why)) => format!("renewal due: {why}"),
                    (Some(_), None, None) => "ok".into(),
                };
                (cert.map(|(_, info)| info.not_after), renewal.last_error, status)
            }
            Err(e) => (None, Some(e), "the certificate cannot be read".into()),
        };
        let grace = https::effective(&config, &global).graceperiod as i64;
        rows.push(Listed { app, domains: config.domains, renews_at: expires_at.map(|t| t - grace), expires_at, status, error });
    }
    // berth's own site, for admins.
    let front = crate::front::load_state(ctx.engine).map_err(failed)?;
    if let (true, true, Some(host)) = (ctx.caller.role.is_admin(), front.letsencrypt, crate::front::host(&global)) {
        let status = match (&front.renewal.last_error, crate::front::due(ctx.engine, now)) {
            (Some(_), _) => format!("renewal failed {} time(s); next try {} UTC", front.renewal.failures, tls::utc(front.renewal.next_attempt as i64)),
            (None, Some(why)) => format!("renewal due: {why}"),
            (None, None) => "ok".into(),
        };
        let expires_at = crate::front::certificate(ctx.engine).map(|info| info.not_after);
        rows.push(Listed { app: format!("{} (--server)", crate::front::NAME), domains: vec![host], expires_at, renews_at: None, status, error: front.renewal.last_error });
    }
    // Wildcards, for admins: which apps each serves.
    if ctx.caller.role.is_admin() {
        let grace = https::effective(&crate::store::AppConfig::default(), &global).graceperiod as i64;
        let wildcards = ctx.engine.store.wildcards();
        // Each app's certificate read once: (app, the wildcard it is served with).
        let mut served_by = Vec::new();
        for app in ctx.engine.store.list_apps()? {
            if let Some((_, info)) = https::current(ctx.engine, &app).ok().flatten() {
                served_by.push((app, crate::store::wildcard_serving(&wildcards, &info).map(str::to_string)));
            }
        }
        for (domain, bundle) in &wildcards {
            let serves: Vec<&str> = served_by.iter().filter(|(_, w)| w.as_ref() == Some(domain)).map(|(a, _)| a.as_str()).collect();
            let renewal = ctx.engine.store.wildcard_renewal(domain);
            let due = match (&renewal.last_error, bundle.info.not_after - grace <= now) {
                (Some(_), _) => format!("renewal failed {} time(s); next try {} UTC; ", renewal.failures, tls::utc(renewal.next_attempt as i64)),
                (None, true) => "renewal due; ".to_string(),
                (None, false) => String::new(),
            };
            let status = format!("{due}serves {}", if serves.is_empty() { "no app".to_string() } else { serves.join(" ") });
            let renews_at = Some(bundle.info.not_after - grace);
            rows.push(Listed { app: format!("*.{domain} (wildcard)"), domains: bundle.info.names.clone(), expires_at: Some(bundle.info.not_after), renews_at, status, error: renewal.last_error });
        }
    }
    match format {
        Format::Json => {
            let list: Vec<_> = rows
                .iter()
                .map(|r| {
                    serde_json::json!({
                        "app": r.app,
                        "domains": r.domains,
                        "expires_at": r.expires_at.map(|t| format!("{} UTC", tls::utc(t))),
                        "days_left": r.expires_at.map(|t| (t - now).div_euclid(86_400)),
                        "renews_at": r.renews_at.map(|t| format!("{} UTC", tls::utc(t))),
                        "status": r.status,
                        "error": r.error,
                    })
                })
                .collect();
            ctx.out.line(serde_json::Value::Array(list).to_string()).await;
        }
        Format::Text => {
            ctx.out.header("Let's Encrypt certificates").await;
            let width = rows.iter().map(|r| r.app.len()).max().unwrap_or(3).max(3) + 2;
            ctx.out.detail(format!("{:<width$}{:<22}{:<11}{}", "app", "expires (UTC)", "days left", "status / domains")).await;
            for r in &rows {
                let expiry = r.expires_at.map(tls::utc).unwrap_or_else(|| "-".into());
                let days = r.expires_at.map(|t| (t - now).div_euclid(86_400).to_string()).unwrap_or_else(|| "-".into());
                let renews = r.renews_at.map(|t| format!("; renews {} UTC", tls::utc(t))).unwrap_or_default();
                ctx.out.detail(format!("{:<width$}{:<22}{:<11}{}{renews} ({})", r.app, expiry, days, r.status, r.domains.join(" "))).await;
                if let Some(error) = &r.error {
                    ctx.out.detail(format!("{:<width$}last error: {error}", "")).await;
                }
            }
        }
    }
    Ok(())
}

/// `letsencrypt:auto-renew [APP] [--force]`: renew now what is due (everything with --force).
pub async fn auto_renew(ctx: &mut Ctx<'_>, app: Option<&str>, force: bool) -> CmdResult {
    let mut failures = 0;
    // Wildcards first (an admin's): an app they serve then has nothing due.
    let wildcards = ctx.engine.store.wildcards();
    let mut any = app.is_none() && ctx.caller.role.is_admin() && !wildcards.is_empty();
    if any {
        failures += crate::wildcard::renew_due(ctx.engine, crate::unix_now() as i64, force, &ctx.out).await;
    }
    let names = match app {
        Some(app) => vec![app.to_string()],
        None => super::report::manageable_apps(ctx)?,
    };
    for name in names {
        let enabled = ctx.engine.store.load_app(&name)?.letsencrypt.enabled;
        if !enabled {
            if app.is_some() {
                return Err(failed(format!("Let's Encrypt is not enabled for {name} (letsencrypt:enable {name})")));
            }
            continue;
        }
        any = true;
        match https::renew(ctx.engine, &name, force, &ctx.out).await {
            Ok(Renewed::Renewed) => {}
            Ok(Renewed::NotDue) => ctx.out.step(format!("{name}: the certificate is not due for renewal (--force to renew anyway)")).await,
            Ok(Renewed::BackingOff(at)) => {
                ctx.out.step(format!("{name}: the last renewal failed; the daemon retries after {} UTC (--force to retry now)", tls::utc(at as i64))).await
            }
            // Its line is printed by `issue_letsencrypt`.
            Ok(Renewed::NotEnabled | Renewed::Dropped(_)) => {}
            Err(e) => {
                failures += 1;
                let serving = match ctx.engine.store.load_tls(&name) {
                    Ok(Some(_)) => "the current certificate keeps serving",
                    _ => "it has no certificate until a renewal succeeds",
                };
                ctx.out.error(format!("{name}: renewal failed: {e}; {serving}")).await;
            }
        }
    }
    if !any && app.is_none() {
        ctx.out.step("No app has Let's Encrypt enabled").await;
    }
    if failures > 0 { Err(CmdError::Exit(super::EXIT_FAILURE)) } else { Ok(()) }
}

/// `letsencrypt:report [APP]`.
pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    let now = crate::unix_now() as i64;
    if args.global {
        let settings = &global.letsencrypt;
        let report = Report::new("--global letsencrypt information").namespace("letsencrypt")
            .row("Letsencrypt global email", settings.email.clone())
            .row("Letsencrypt global server", settings.server.clone().unwrap_or_else(|| crate::acme::LETSENCRYPT_PRODUCTION.to_string()))
            .row("Letsencrypt global graceperiod", settings.graceperiod.unwrap_or(https::DEFAULT_GRACEPERIOD))
            .row("Letsencrypt global auto", settings.auto);
        let dns = ctx.engine.store.load_dns().map_err(failed)?;
        let mut report = crate::dns::PROPERTIES.iter().fold(report, |r, key| r.keyed_row(format!("Letsencrypt global {}", key.replace('-', " ")), format!("global-{key}"), dns.shown(key)));
        let wildcards: Vec<String> = ctx.engine.store.wildcards().iter().map(|(d, b)| format!("*.{d} (expires {} UTC)", tls::utc(b.info.not_after))).collect();
        report = report.row("Letsencrypt wildcards", wildcards);
        return args.print_global(ctx, report).await;
    }
    args.print_apps(ctx, |ctx, name, config| {
        Ok({
            let settings = https::effective(config, &global);
            let cert = https::current(ctx.engine, name).ok().flatten();
            let letsencrypt = cert.as_ref().filter(|(s, _)| s.source == CertSource::Letsencrypt);
            let renewal = if config.letsencrypt.enabled { https::renewal(ctx.engine, name) } else { Default::default() };
            let next_attempt = (renewal.failures > 0).then(|| format!("{} UTC", tls::utc(renewal.next_attempt as i64)));
            Report::new(format!("{name} letsencrypt information")).namespace("letsencrypt")
                .row("Letsencrypt active", config.letsencrypt.enabled && letsencrypt.is_some())
                .row("Letsencrypt enabled", config.letsencrypt.enabled)
                .row("Letsencrypt email", settings.email.clone())
                .row("Letsencrypt server", settings.server.clone())
                .row("Letsencrypt graceperiod", settings.graceperiod)
                .row("Letsencrypt expires at", letsencrypt.map(|(_, i)| format!("{} UTC", tls::utc(i.not_after))))
                .row("Letsencrypt days left", letsencrypt.map(|(_, i)| i.days_left(now)))
                .row("Letsencrypt renewal due", config.letsencrypt.enabled && https::due(config, &global, cert.as_ref(), now).is_some())
                .row("Letsencrypt renewal failures", renewal.failures)
                .row("Letsencrypt last error", renewal.last_error)
                .row("Letsencrypt next attempt", next_attempt)
        })
    })
    .await
}
