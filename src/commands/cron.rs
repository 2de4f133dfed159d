//! `cron:*`: an app's scheduled jobs, from app.json's `cron` (dokku's format).

use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, EXIT_FAILURE, Scope, failed};
use crate::app_json::CronJob;
use crate::output::{Format, Report};
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("cron", "Manage scheduled cron tasks")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List an app's scheduled jobs (from app.json's "cron") with their next and last runs
    #[command(name = "cron:list")]
    List {
        app: AppName,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Run a job now, its output to you (the schedule is not changed)
    #[command(name = "cron:run")]
    Run { app: AppName, id: String },
    /// Show an app's scheduled jobs
    #[command(name = "cron:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::List { app, .. } | Cmd::Run { app, .. } => Scope::App(app),
            Cmd::Report(args) => args.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::List { app, format } => list(ctx, &app, format).await,
            Cmd::Run { app, id } => run(ctx, &app, &id).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

/// The active release's jobs (none before the first deploy).
fn jobs(ctx: &Ctx<'_>, app: &str) -> Result<Vec<CronJob>, CmdError> {
    ctx.engine.store.load_app(app)?;
    Ok(ctx.engine.store.load_releases(app)?.active().map(|r| r.cron.clone()).unwrap_or_default())
}

fn last_run(ctx: &Ctx<'_>, app: &str, job: &CronJob) -> String {
    match ctx.engine.jobs.last(app, &job.id()) {
        None => String::new(),
        Some((at, None)) => format!("{} (running)", at.format("%Y-%m-%d %H:%M:%S UTC")),
        Some((at, Some(code))) => format!("{} (exit {code})", at.format("%Y-%m-%d %H:%M:%S UTC")),
    }
}

pub async fn list(ctx: &mut Ctx<'_>, app: &AppName, format: Format) -> CmdResult {
    let jobs = jobs(ctx, app)?;
    let now = chrono::Utc::now();
    let next = |job: &CronJob| job.next(&now).map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default();
    if format == Format::Json {
        let list: Vec<_> = jobs
            .iter()
            .map(|j| serde_json::json!({"id": j.id(), "schedule": j.schedule, "command": j.command, "next_run": next(j), "last_run": last_run(ctx, app, j)}))
            .collect();
        ctx.out.line(serde_json::Value::Array(list).to_string()).await;
        return Ok(());
    }
    if jobs.is_empty() {
        ctx.out.error(format!("{app} has no scheduled jobs (app.json \"cron\": [{{\"command\": …, \"schedule\": …}}])")).await;
        return Ok(());
    }
    ctx.out.header(format!("{app} cron jobs")).await;
    ctx.out.detail(format!("{:<12}{:<18}{:<22}command", "id", "schedule", "next run")).await;
    for job in &jobs {
        ctx.out.detail(format!("{:<12}{:<18}{:<22}{}", job.id(), job.schedule, next(job), job.command)).await;
    }
    Ok(())
}

pub async fn run(ctx: &mut Ctx<'_>, app: &AppName, id: &str) -> CmdResult {
    let jobs = jobs(ctx, app)?;
    let job = jobs.iter().find(|j| j.id() == id).ok_or_else(|| failed(format!("{app} has no cron job {} (see cron:list {app})", crate::validate::quoted(id))))?;
    ctx.out.step(format!("Running cron job {id} of {app}: {}", job.command)).await;
    match crate::cron::run_job(ctx.engine, app, job, &ctx.out).await {
        0 => Ok(()),
        code => Err(CmdError::Exit(i32::try_from(code).ok().filter(|c| (1..=254).contains(c)).unwrap_or(EXIT_FAILURE))),
    }
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("cron")?;
    let now = chrono::Utc::now();
    args.print_apps(ctx, |ctx, name, _| {
        let jobs = ctx.engine.store.load_releases(name)?.active().map(|r| r.cron.clone()).unwrap_or_default();
        let listed: Vec<String> = jobs.iter().map(|j| format!("{} {} {}", j.id(), j.schedule, j.command)).collect();
        let next = jobs.iter().filter_map(|j| j.next(&now)).min().map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string()).unwrap_or_default();
        Ok(Report::new(format!("{name} cron information")).namespace("cron").row("Cron jobs", listed).row("Cron task count", jobs.len()).row("Cron next run", next))
    })
    .await
}
