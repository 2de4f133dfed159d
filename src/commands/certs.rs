//! `certs:*`: an app's own certificate (a tar from the user, or self-signed), and the
//! report of whatever certificate it serves.

use super::Scope;
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::https;
use crate::output::Report;
use crate::store::CertSource;
use crate::tls::{self, Bundle};
use crate::validate;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("certs", "Manage SSL (TLS) certs")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Add a certificate: a tar on stdin with server.crt (the chain, PEM) and server.key
    #[command(name = "certs:add")]
    Add { app: AppName },
    /// Serve a self-signed certificate for DOMAIN (default: every domain of the app), for testing
    #[command(name = "certs:generate")]
    Generate { app: AppName, domain: Option<String> },
    /// Remove an app's certificate: back to plain http
    #[command(name = "certs:remove")]
    Remove { app: AppName },
    /// Show an app's certificate: source, issuer, subject, names, expiry
    #[command(name = "certs:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Report(args) => args.scope(),
            Cmd::Add { app, .. } | Cmd::Generate { app, .. } | Cmd::Remove { app, .. } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Add { app } => add(ctx, &app).await,
            Cmd::Generate { app, domain } => generate(ctx, &app, domain.as_deref()).await,
            Cmd::Remove { app } => remove(ctx, &app).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

/// Self-signed certificates last a year.
const SELF_SIGNED_DAYS: i64 = 365;

fn now() -> i64 {
    crate::unix_now() as i64
}

/// `certs:add APP < tar`: server.crt and server.key, checked before anything changes.
pub async fn add(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let input = ctx
        .input
        .read_to_end(tls::MAX_TAR)
        .await
        .map_err(|_| failed(format!("The tar is too large (over {} KiB): send server.crt and server.key only", tls::MAX_TAR / 1024)))?;
    let (crt, key) = tls::read_cert_tar(&input).map_err(|e| failed(capitalized(&e.to_string())))?;
    let bundle = Bundle::new(&crt, &key, now()).map_err(|e| failed(capitalized(&e.to_string())))?;
    put_in_service(ctx, app, bundle, CertSource::User).await
}

/// `certs:generate APP [DOMAIN]`: a self-signed certificate for DOMAIN, else every domain.
pub async fn generate(ctx: &mut Ctx<'_>, app: &AppName, domain: Option<&str>) -> CmdResult {
    let config = ctx.engine.store.load_app(app)?;
    let domains = match domain {
        Some(d) => vec![validate::domain(d)?],
        None if config.domains.is_empty() => {
            return Err(failed(format!("{app} has no domains: give one (certs:generate {app} DOMAIN) or domains:add {app} DOMAIN")));
        }
        None => config.domains.clone(),
    };
    let bundle = tls::self_signed(&domains, SELF_SIGNED_DAYS, now()).map_err(|e| failed(e.to_string()))?;
    ctx.out.step(format!("Generated a self-signed certificate for {} (valid {SELF_SIGNED_DAYS} days)", domains.join(", "))).await;
    put_in_service(ctx, app, bundle, CertSource::SelfSigned).await
}

/// A certificate of the user's replaces Let's Encrypt's: renewal stops.
async fn put_in_service(ctx: &mut Ctx<'_>, app: &str, bundle: Bundle, source: CertSource) -> CmdResult {
    let engine = ctx.engine;
    let _deploying = engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    https::install(engine, app, &bundle, source, &ctx.out).await.map_err(CmdError::Failed)?;
    let was_letsencrypt = engine.update_app(app, |config| Ok::<_, CmdError>(std::mem::take(&mut config.letsencrypt.enabled))).await?;
    if was_letsencrypt {
        ctx.out.step(format!("Let's Encrypt is now disabled for {app}: this certificate replaces its")).await;
    }
    Ok(())
}

/// `certs:remove APP`: back to plain http (Let's Encrypt, if enabled, is disabled too).
pub async fn remove(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    let engine = ctx.engine;
    engine.store.load_app(app)?;
    if engine.store.load_tls(app)?.is_none() {
        return Err(failed(format!("{app} has no certificate")));
    }
    let _deploying = engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    engine
        .update_app(app, |config| {
            config.letsencrypt.enabled = false;
            Ok::<_, CmdError>(())
        })
        .await?;
    https::remove(engine, app, https::HttpsMappings::All, &ctx.out).await.map_err(CmdError::Failed)?;
    ctx.out.step(format!("Removed the certificate of {app}: it is served over plain http")).await;
    Ok(())
}

/// `certs:report [APP]`, with dokku's `Ssl …` names.
pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("certs")?;
    let wildcards = ctx.engine.store.wildcards();
    args.print_apps(ctx, |ctx, name, _| {
        Ok({
            let dir = ctx.engine.store.tls_dir(name).display().to_string();
            let base = Report::new(format!("{name} ssl information")).row("Ssl dir", dir);
            match https::current(ctx.engine, name) {
                Ok(Some((state, info))) => base
                    .row("Ssl enabled", true)
                    .row("Ssl source", state.source.to_string())
                    .row("Ssl hostnames", info.names.clone())
                    .row("Ssl subject", info.subject.clone())
                    .row("Ssl issuer", info.issuer.clone())
                    .row("Ssl serial", info.serial.clone())
                    .row("Ssl starts at", format!("{} UTC", tls::utc(info.not_before)))
                    .row("Ssl expires at", format!("{} UTC", tls::utc(info.not_after)))
                    .row("Ssl days left", info.days_left(now()))
                    .row("Ssl verified", if info.self_signed { "self signed" } else { "" })
                    // Which certificate it is: a wildcard of `letsencrypt:wildcard` (renewed as
                    // that), or the app's own.
                    .row("Ssl wildcard", crate::store::wildcard_serving(&wildcards, &info).map(|d| format!("*.{d}")).unwrap_or_default()),
                Ok(None) => base.row("Ssl enabled", false),
                Err(e) => base.row("Ssl enabled", false).row("Ssl error", e),
            }
        })
    })
    .await
}

fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
