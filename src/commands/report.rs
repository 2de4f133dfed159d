//! What every `NS:report` shares: its arguments (`[APP] [--format json] [--global]`), the
//! apps it covers, and how it prints. dokku's info flags (`--NS-KEY`) are taken off the
//! command line by the dispatcher and carried by the `Output`, so `print_reports` prints
//! only that value, for every report alike.

use super::{CmdError, CmdResult, Ctx, EXIT_FAILURE, Scope, failed};
use crate::output::{Format, Report, print_reports};
use crate::store::AppConfig;
use crate::validate::AppName;

/// `NS:report [APP] [--format json] [--global]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The app (without it: every app the key may manage)
    pub app: Option<AppName>,
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// The global settings, where the namespace has them
    #[arg(long, conflicts_with = "app")]
    pub global: bool,
}

impl ReportArgs {
    /// One app's report is for its keys; every app's (each filtered) or the global one, for anyone.
    pub fn scope(&self) -> Scope<'_> {
        self.app.as_deref().map_or(Scope::Anyone, Scope::App)
    }

    /// For a namespace without global settings: `--global` is refused, saying so.
    pub fn no_global(&self, namespace: &str) -> CmdResult {
        if self.global { Err(failed(format!("{namespace} has no global settings: {namespace}:report [APP]"))) } else { Ok(()) }
    }

    /// The app named, or every app the caller may manage (sorted).
    pub fn app_names(&self, ctx: &Ctx<'_>) -> Result<Vec<String>, CmdError> {
        Ok(match &self.app {
            Some(app) => vec![app.to_string()],
            None => manageable_apps(ctx)?,
        })
    }

    /// Prints the global report (`--global`).
    pub async fn print_global(&self, ctx: &Ctx<'_>, report: Report) -> CmdResult {
        print_reports(&ctx.out, &[("global".into(), report)], true, self.format).await.map_err(failed)
    }

    /// Prints one report per app: the one named, or every app the caller may manage. With an
    /// app named, an error reading its state is the command's error. Without, an app whose
    /// state cannot be read (any of its files: app.toml, releases.toml, tls.toml) is one error
    /// line naming the file, the other apps are reported, and the exit is non-zero. What a
    /// report asks of the engine is gathered before (`app_names`), as this reads state only.
    pub async fn print_apps(&self, ctx: &Ctx<'_>, build: impl Fn(&Ctx<'_>, &str, &AppConfig) -> Result<Report, CmdError>) -> CmdResult {
        let mut reports = Vec::new();
        let mut unreadable = Vec::new();
        for name in self.app_names(ctx)? {
            let built = match ctx.engine.store.load_app_checked(&name) {
                Ok(config) => build(ctx, &name, &config),
                Err(e) => Err(e.into()),
            };
            match built {
                Ok(report) => reports.push((name, report)),
                Err(e) if self.app.is_none() => unreadable.push(e),
                Err(e) => return Err(e),
            }
        }
        print_reports(&ctx.out, &reports, self.app.is_some(), self.format).await.map_err(failed)?;
        for error in &unreadable {
            ctx.out.error(error.to_string()).await;
        }
        if unreadable.is_empty() { Ok(()) } else { Err(CmdError::Exit(EXIT_FAILURE)) }
    }
}

/// Every app the caller may manage (sorted).
pub fn manageable_apps(ctx: &Ctx<'_>) -> Result<Vec<String>, CmdError> {
    Ok(ctx.engine.store.list_apps()?.into_iter().filter(|n| ctx.caller.role.may_manage(n)).collect())
}
