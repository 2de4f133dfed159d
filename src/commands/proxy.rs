//! `proxy:*`: whether berth's proxy (nginx, the only one berth runs) routes an app, with
//! dokku's names.

use super::property::SetArgs;
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, Scope, Target, failed};
use crate::output::Report;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("proxy", "Manage the proxy integration for an app: nginx routes it, or not")];

/// The one proxy berth runs.
const PROXY: &str = "nginx";

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Stop routing an app through nginx (its site goes; other apps on its networks still reach it by name)
    #[command(name = "proxy:disable")]
    Disable { app: AppName },
    /// Route an app through nginx again
    #[command(name = "proxy:enable")]
    Enable { app: AppName },
    /// Set the proxy type: nginx, the one berth runs (dokku's `proxy:set APP TYPE` works too)
    #[command(name = "proxy:set")]
    Set(SetArgs),
    /// Show whether nginx routes apps
    #[command(name = "proxy:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Disable { app } | Cmd::Enable { app } => Scope::App(app),
            Cmd::Set(args) => args.target.scope(),
            Cmd::Report(args) => args.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Disable { app } => set_disabled(ctx, &app, true).await,
            Cmd::Enable { app } => set_disabled(ctx, &app, false).await,
            Cmd::Set(args) => set(ctx, args).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

/// `proxy:disable|enable APP`: its site goes or comes back now (no deploy).
async fn set_disabled(ctx: &mut Ctx<'_>, app: &AppName, disabled: bool) -> CmdResult {
    let changed = ctx
        .engine
        .update_app(app, |c| {
            let changed = c.proxy_disabled != disabled;
            c.proxy_disabled = disabled;
            Ok::<_, CmdError>(changed)
        })
        .await?;
    if !changed {
        ctx.out.step(format!("The proxy of {app} is already {}", if disabled { "disabled" } else { "enabled" })).await;
        return Ok(());
    }
    ctx.out.step(format!("{} the proxy of {app}", if disabled { "Disabling" } else { "Enabling" })).await;
    super::domains::apply_routing(ctx, app).await
}

/// `proxy:set (APP|--global) type nginx` (or dokku's older `proxy:set APP nginx`): nginx is
/// the only proxy berth runs; a port mapping given by mistake is named as one.
async fn set(ctx: &mut Ctx<'_>, mut args: SetArgs) -> CmdResult {
    if args.value.is_none() && args.key.as_deref().is_some_and(|k| k != "type") {
        args.value = args.key.replace("type".into());
    }
    if let Some(value) = args.value()
        && value.contains(':')
    {
        return Err(failed(format!("Detected potential port mapping instead of proxy type: {} (ports:set APP {value} sets port mappings)", crate::validate::quoted(value))));
    }
    args.property(&[super::property::app_or_global("type")])?;
    match args.value() {
        None | Some(PROXY) => {
            let whose = match &args.target {
                Target::Global => "every app".to_string(),
                Target::App(app) => app.to_string(),
            };
            ctx.out.step(format!("The proxy of {whose} is nginx, the one berth runs")).await;
            Ok(())
        }
        Some(other) => Err(failed(format!("berth runs one proxy, nginx: {} is not one it runs", crate::validate::quoted(other)))),
    }
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    if args.global {
        let report = Report::new("--global proxy information").namespace("proxy").global_layer("type", None, PROXY);
        return args.print_global(ctx, report).await;
    }
    args.print_apps(ctx, |_, name, config| {
        Ok(Report::new(format!("{name} proxy information"))
            .namespace("proxy")
            .row("Proxy enabled", !config.proxy_disabled)
            .layered("disabled", config.proxy_disabled.then(|| "true".to_string()), None, config.proxy_disabled)
            .layered("type", None, None, PROXY))
    })
    .await
}
