//! `checks:*`: readiness checks of an app's deploys.

use super::Scope;
use super::property::SetArgs;
use super::property::app_only;
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::output::Report;
use crate::validate;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("checks", "Manage zero-downtime settings")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Set a readiness check setting: timeout SECONDS | wait-to-retire SECONDS | attempts N
    #[command(name = "checks:set")]
    Set(SetArgs),
    /// Turn readiness checks off; old containers stop as soon as new ones run
    #[command(name = "checks:disable")]
    Disable {
        app: AppName,
        /// The process types (`web,worker`); none: every one
        processes: Option<String>,
    },
    /// Turn readiness checks back on
    #[command(name = "checks:enable")]
    Enable {
        app: AppName,
        /// The process types (`web,worker`); none: every one
        processes: Option<String>,
    },
    /// Move traffic as soon as new containers run, without checks
    #[command(name = "checks:skip")]
    Skip {
        app: AppName,
        /// The process types (`web,worker`); none: every one
        processes: Option<String>,
    },
    /// Show an app's check settings
    #[command(name = "checks:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Set(args) => args.target.scope(),
            Cmd::Report(args) => args.scope(),
            Cmd::Disable { app, .. } | Cmd::Enable { app, .. } | Cmd::Skip { app, .. } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Set(args) => set(ctx, &args).await,
            Cmd::Disable { app, processes } => set_mode(ctx, &app, Mode::Disable, processes.as_deref()).await,
            Cmd::Enable { app, processes } => set_mode(ctx, &app, Mode::Enable, processes.as_deref()).await,
            Cmd::Skip { app, processes } => set_mode(ctx, &app, Mode::Skip, processes.as_deref()).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

pub use crate::store::ChecksMode as Mode;

pub async fn set_mode(ctx: &mut Ctx<'_>, app: &AppName, mode: Mode, processes: Option<&str>) -> CmdResult {
    let types: Option<Vec<String>> = processes.map(|list| list.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect());
    let types = types.filter(|t| !t.is_empty() && !t.iter().any(|t| t == "_all_"));
    for t in types.iter().flatten() {
        validate::process_type(t)?;
    }
    ctx.engine
        .update_app(app, |config| {
            config.checks.set_mode(mode, types.as_deref());
            Ok::<_, CmdError>(())
        })
        .await?;
    let which = types.as_ref().map_or_else(|| app.to_string(), |t| format!("{app} ({})", t.join(",")));
    let message = match mode {
        Mode::Enable => format!("Readiness checks enabled for {which}"),
        Mode::Disable => format!("Readiness checks disabled for {which}: old containers stop as soon as new ones run"),
        Mode::Skip => format!("Readiness checks skipped for {which}: traffic moves as soon as the container runs"),
    };
    ctx.out.step(message).await;
    Ok(())
}

/// `checks:set APP timeout|wait-to-retire|attempts [N]` (no N: the default).
pub async fn set(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let key = args.property(&[app_only("timeout"), app_only("wait-to-retire"), app_only("attempts")])?;
    let app = args.app()?;
    let defaults = crate::store::ChecksConfig::default();
    let (low, high, default) = match key {
        "timeout" => (1, 3600, defaults.timeout),
        "wait-to-retire" => (0, 3600, defaults.wait_to_retire),
        _ => (0, 1000, u64::from(defaults.attempts)),
    };
    let number: u64 = match args.value() {
        None => default,
        Some(value) => value.parse().map_err(|_| failed(format!("Invalid value {} for {key}: expected a whole number", validate::quoted(value))))?,
    };
    if !(low..=high).contains(&number) {
        return Err(failed(format!("{key} must be between {low} and {high}")));
    }
    ctx.engine
        .update_app(app, |config| {
            match key {
                "timeout" => config.checks.timeout = number,
                "wait-to-retire" => config.checks.wait_to_retire = number,
                _ => config.checks.attempts = number as u32,
            }
            Ok::<_, CmdError>(())
        })
        .await?;
    ctx.out.step(format!("Set {key} of {app} to {number}")).await;
    Ok(())
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("checks")?;
    args.print_apps(ctx, |_, name, config| {
        Ok({
            Report::new(format!("{name} checks information")).namespace("checks")
                .row("Checks", crate::checks::describe(config))
                .row("Checks disabled list", crate::store::ChecksConfig::shown_list(config.checks.disabled, &config.checks.disabled_processes))
                .row("Checks skipped list", crate::store::ChecksConfig::shown_list(config.checks.skipped, &config.checks.skipped_processes))
                .row("Checks timeout", config.checks.timeout)
                .row("Checks wait to retire", config.checks.wait_to_retire)
                .row("Checks attempts", config.checks.attempts)
        })
    })
    .await
}
