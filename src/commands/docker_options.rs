//! `docker-options:*` (dokku's names): options of `docker run` and `docker build` an admin
//! gives an app, by phase (`build`, `deploy`, `run`), and for the deploy phase by process
//! type (`--process web`). They take effect at the next deploy (`run`: the next one-off).
//! An option can hand a container the host (`-v /:/host`, `--privileged`), so changing them
//! is an admin's; an app's keys may read them. What each option becomes is
//! `crate::docker_options`'s.

use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, Scope, failed};
use crate::docker_options::{PHASES, check, group, phases};
use crate::output::Report;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("docker-options", "Manage docker options for an app (admins): docker run and docker build options by phase")];

/// dokku's name for the options of every process type, which no process type may take.
const DEFAULT_SCOPE: &str = "_default_";

#[derive(Debug, Clone, clap::Args)]
pub struct ChangeArgs {
    /// For this process type only (deploy phase; may be given more than once)
    #[arg(long = "process")]
    pub processes: Vec<String>,
    pub app: AppName,
    /// Phases, comma-separated: build, deploy, run
    pub phases: String,
    /// The options, as for docker run (deploy, run) or docker build (build): "-v /data:/data" --shm-size 256m
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub options: Vec<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ClearArgs {
    #[arg(long = "process")]
    pub processes: Vec<String>,
    pub app: AppName,
    /// Phases, comma-separated (default: all three)
    pub phases: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    pub app: AppName,
    /// build, deploy or run
    #[arg(long)]
    pub phase: Option<String>,
    /// The options of this process type (deploy phase)
    #[arg(long)]
    pub process: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Add docker options to an app's phases: [--process TYPE] APP build,deploy,run OPTION…
    #[command(name = "docker-options:add")]
    Add(ChangeArgs),
    /// Remove docker options from an app's phases: [--process TYPE] APP PHASES OPTION…
    #[command(name = "docker-options:remove")]
    Remove(ChangeArgs),
    /// Remove every docker option of an app's phases: [--process TYPE] APP [PHASES]
    #[command(name = "docker-options:clear")]
    Clear(ClearArgs),
    /// List an app's docker options of one phase: APP --phase PHASE [--process TYPE]
    #[command(name = "docker-options:list")]
    List(ListArgs),
    /// Show apps' docker options
    #[command(name = "docker-options:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Add(_) | Cmd::Remove(_) | Cmd::Clear(_) => Scope::Admin,
            Cmd::List(args) => Scope::App(&args.app),
            Cmd::Report(args) => args.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Add(args) => change(ctx, &args, true).await,
            Cmd::Remove(args) => change(ctx, &args, false).await,
            Cmd::Clear(args) => clear(ctx, &args).await,
            Cmd::List(args) => list(ctx, &args).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

/// The stored keys `phases` and `processes` name: `deploy`, or `deploy.web` per process.
fn scopes(phases: &[&'static str], processes: &[String]) -> Result<Vec<String>, CmdError> {
    if processes.is_empty() {
        return Ok(phases.iter().map(|p| p.to_string()).collect());
    }
    if phases.iter().any(|p| *p != "deploy") {
        return Err(failed("--process applies to the deploy phase only"));
    }
    for process in processes {
        if process == DEFAULT_SCOPE {
            return Err(failed(format!("{DEFAULT_SCOPE} is reserved (the options of every process type): leave out --process")));
        }
        crate::validate::process_type(process).map_err(|e| failed(e.to_string()))?;
    }
    Ok(processes.iter().map(|p| format!("deploy.{p}")).collect())
}

async fn change(ctx: &mut Ctx<'_>, args: &ChangeArgs, add: bool) -> CmdResult {
    let phases = phases(&args.phases).map_err(failed)?;
    let (options, lifted) = group(&args.options).map_err(failed)?;
    if options.is_empty() {
        return Err(failed("No docker options given"));
    }
    let processes: Vec<String> = args.processes.iter().chain(&lifted).cloned().collect();
    let scopes = scopes(&phases, &processes)?;
    let app = &args.app;
    if add {
        for phase in phases.iter().filter(|p| **p != "build") {
            for option in &options {
                check(phase, option).map_err(|e| failed(format!("{e} (phase {phase})")))?;
            }
        }
        // The build's options are checked together with those it has (one --add-host).
        if phases.contains(&"build") {
            let mut all = ctx.engine.store.load_app(app)?.docker_options_for("build", None);
            all.extend(options.iter().filter(|o| !all.contains(o)).cloned().collect::<Vec<_>>());
            crate::docker_options::build_options(&all).map_err(|e| failed(format!("{e} (phase build)")))?;
        }
    }
    if add && let Some(active) = ctx.engine.store.load_releases(app)?.active().cloned() {
        let types = active.types();
        for process in processes.iter().filter(|p| !types.contains(p)) {
            ctx.out.step(format!("Note: {app} v{} has no process type {process} (it has: {})", active.version, types.join(", "))).await;
        }
    }
    ctx.engine
        .update_app(app, |config| {
            for scope in &scopes {
                let stored = config.docker_options.entry(scope.clone()).or_default();
                for option in &options {
                    if add && !stored.contains(option) {
                        stored.push(option.clone());
                    } else if !add {
                        stored.retain(|o| o != option && !same_option(o, option));
                    }
                }
                if stored.is_empty() {
                    config.docker_options.remove(scope);
                }
            }
            Ok::<_, CmdError>(())
        })
        .await?;
    let what = if add { "added to" } else { "removed from" };
    ctx.out.step(format!("Docker options {what} {}: they apply to {app}'s containers started from now on (ps:rebuild {app} restarts them)", scopes.join(", "))).await;
    Ok(())
}

/// Whether a stored option is `option` written another way (an older, unquoted form).
fn same_option(stored: &str, option: &str) -> bool {
    let words = |o: &str| shell_words::split(o).ok();
    words(stored).is_some_and(|w| Some(w) == words(option)) || stored == option.replace('\'', "")
}

async fn clear(ctx: &mut Ctx<'_>, args: &ClearArgs) -> CmdResult {
    let phases = match &args.phases {
        Some(list) => phases(list).map_err(failed)?,
        None if args.processes.is_empty() => PHASES.to_vec(),
        None => vec!["deploy"],
    };
    let scopes = scopes(&phases, &args.processes)?;
    let everything = args.processes.is_empty();
    ctx.engine
        .update_app(&args.app, |config| {
            config.docker_options.retain(|key, _| {
                let phase = key.split('.').next().unwrap_or_default();
                // A phase cleared for every process type takes its per-process options too.
                !(scopes.contains(key) || (everything && phases.contains(&phase)))
            });
            Ok::<_, CmdError>(())
        })
        .await?;
    ctx.out.step(format!("Docker options of {} cleared ({})", args.app, scopes.join(", "))).await;
    Ok(())
}

async fn list(ctx: &mut Ctx<'_>, args: &ListArgs) -> CmdResult {
    let Some(phase) = args.phase.as_deref() else {
        return Err(failed(format!("docker-options:list needs --phase ({})", PHASES.join(", "))));
    };
    let phase = phases(phase).map_err(failed)?;
    let [phase] = phase.as_slice() else {
        return Err(failed("docker-options:list takes one --phase"));
    };
    let scope = match &args.process {
        Some(process) => scopes(&[phase], std::slice::from_ref(process))?.remove(0),
        None => phase.to_string(),
    };
    let config = ctx.engine.store.load_app(&args.app)?;
    for option in config.docker_options.get(&scope).into_iter().flatten() {
        ctx.out.line(option).await;
    }
    Ok(())
}

async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("docker-options")?;
    args.print_apps(ctx, |_, name, config| {
        let mut report = Report::new(format!("{name} docker options information")).namespace("docker-options");
        for phase in PHASES {
            let options = config.docker_options.get(phase).cloned().unwrap_or_default();
            report = report.row(format!("Docker options {phase}"), options.join(" ")).json_only(format!("{phase}-list"), options);
        }
        for (scope, options) in config.docker_options.iter().filter(|(k, _)| k.contains('.')) {
            let label = format!("Docker options {}", scope.replace('.', " "));
            report = report.keyed_row(label, format!("docker-options-{scope}"), options.join(" ")).json_only(format!("{scope}-list"), options.clone());
        }
        Ok(report)
    })
    .await
}
