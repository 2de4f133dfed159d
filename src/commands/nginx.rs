//! `nginx:*`: an app's proxy properties, with dokku's names. A change applies at once
//! (the app's site is rendered again), not at the next deploy.

use super::Scope;
use super::property::SetArgs;
use super::property::app_only;
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::output::Report;
use crate::store::{DEFAULT_HSTS_MAX_AGE, NginxConfig};
use crate::validate;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("nginx", "Manage the nginx proxy")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Set an nginx property: hsts | hsts-include-subdomains | hsts-preload true|false, hsts-max-age SECONDS (no value: default)
    #[command(name = "nginx:set")]
    Set(SetArgs),
    /// Show an app's nginx properties
    #[command(name = "nginx:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Report(args) => args.scope(),
            Cmd::Set(args) => args.target.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Set(args) => set(ctx, &args).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

const KEYS: [&str; 4] = ["hsts", "hsts-include-subdomains", "hsts-max-age", "hsts-preload"];

/// `nginx:set APP PROPERTY [VALUE]` (no VALUE: the default), applied at once.
pub async fn set(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let key = args.property(&KEYS.map(app_only))?;
    let app = args.app()?;
    let value = args.value();
    let boolean = |v: &str| match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(failed(format!("Invalid value {} for {key}: true or false", validate::quoted(v)))),
    };
    let apply = |nginx: &mut NginxConfig| -> Result<(), CmdError> {
        match key {
            "hsts" => nginx.hsts = value.map(boolean).transpose()?,
            "hsts-include-subdomains" => nginx.hsts_include_subdomains = value.map(boolean).transpose()?,
            "hsts-preload" => nginx.hsts_preload = value.map(boolean).transpose()?,
            _ => {
                nginx.hsts_max_age = value
                    .map(|v| {
                        v.parse::<u64>()
                            .ok()
                            .filter(|n| *n <= 2 * 365 * 86_400)
                            .ok_or_else(|| failed(format!("Invalid value {} for hsts-max-age: seconds, at most 63072000 (two years)", validate::quoted(v))))
                    })
                    .transpose()?
            }
        }
        Ok(())
    };
    let engine = ctx.engine;
    engine.update_app(app, |config| apply(&mut config.nginx)).await?;
    match value {
        Some(v) => ctx.out.step(format!("Setting {key} to {v} for {app}")).await,
        None => ctx.out.step(format!("Unsetting {key} for {app}")).await,
    }
    let _deploying = engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    crate::deploy::reroute(engine, app, &ctx.out).await.map_err(CmdError::from)
}

/// `nginx:report [APP]`: the values in force (defaults filled in).
pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("nginx")?;
    args.print_apps(ctx, |_, name, config| {
        Ok({
            let n = &config.nginx;
            Report::new(format!("{name} nginx information")).namespace("nginx")
                .row("Nginx hsts", n.hsts.unwrap_or(true))
                .row("Nginx hsts include subdomains", n.hsts_include_subdomains.unwrap_or(true))
                .row("Nginx hsts max age", n.hsts_max_age.unwrap_or(DEFAULT_HSTS_MAX_AGE))
                .row("Nginx hsts preload", n.hsts_preload.unwrap_or(false))
                .row("Nginx hsts header", n.hsts_header())
        })
    })
    .await
}
