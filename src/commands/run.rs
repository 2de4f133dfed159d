//! `run APP CMD…`: a one-off container of the active release, with the app's env and
//! mounts; `enter APP [PROCESS.N] [CMD…]`: a command inside a running container. Both give
//! the client a pty when it asked for one (`ssh -t`), pass its stdin through, and end with
//! the command's exit code as SSH's exit status.

use super::Scope;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::runtime::Client;
use crate::validate;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("enter", "Connect to a specific app container"), ("run", "Run a one-off process inside a container")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run a one-off command in a new container of the app's release, with its env
    #[command(name = "run")]
    Run {
        app: AppName,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Run a command (default: the shell of scheduler:set, else /bin/sh) inside a running container (default: the first)
    #[command(name = "enter")]
    Enter {
        app: AppName,
        /// PROCESS.N, e.g. web.1
        target: Option<String>,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Run { app, .. } | Cmd::Enter { app, .. } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Run { app, command } => run(ctx, &app, command).await,
            Cmd::Enter { app, target, command } => enter(ctx, &app, target.as_deref(), command).await,
        }
    }
}

pub async fn run(ctx: &mut Ctx<'_>, app: &AppName, command: Vec<String>) -> CmdResult {
    let config = ctx.engine.store.load_app(app)?;
    let releases = ctx.engine.store.load_releases(app)?;
    let active = releases.active().ok_or_else(|| failed(format!("{app} has not been deployed yet: git push it first")))?;
    let scheduler = ctx.engine.scheduler(app).await.map_err(|e| failed(e.to_string()))?;
    scheduler.prepare().await.map_err(|e| failed(e.to_string()))?;
    // Buildpack images run commands through the launcher, which sources .profile.d.
    let mut spec = crate::deploy::process_spec(ctx.engine, app, &config, active, "run", 0, Some(active.one_off(command)));
    // The app's config as it is now, as Heroku and dokku run it (even after --no-restart).
    let global = ctx.engine.store.load_global_env()?;
    spec.env = crate::deploy::with_rev(crate::deploy::container_env(&global.under(&config.env), config.container_port()), &config, &active.git_sha);
    let client = Client { out: &ctx.out, input: &mut ctx.input, terminal: ctx.terminal.as_mut() };
    let code = scheduler.run_once(&spec, client, None).await.map_err(|e| failed(e.to_string()))?;
    exit_status(code)
}

pub async fn enter(ctx: &mut Ctx<'_>, app: &AppName, target: Option<&str>, command: Vec<String>) -> CmdResult {
    let config = ctx.engine.store.load_app(app)?;
    super::scheduler::not_on_swarm(ctx, app, "enter (its tasks run on other servers' engines): run APP CMD runs a one-off on this server")?;
    let active = ctx.engine.store.load_releases(app)?.active().cloned();
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
    let running: Vec<_> = runtime
        .containers(app)
        .await
        .map_err(|e| failed(e.to_string()))?
        .into_iter()
        .filter(|c| c.running && Some(c.release) == active.as_ref().map(|r| r.version))
        .collect();
    let names = || running.iter().map(|c| format!("{}.{}", c.process, c.index)).collect::<Vec<_>>().join(", ");
    let container = match target {
        Some(target) => {
            let (process, index) = target
                .split_once('.')
                .and_then(|(p, i)| Some((p, i.parse::<u32>().ok()?)))
                .ok_or_else(|| failed(format!("{} is not PROCESS.N (e.g. web.1)", validate::quoted(target))))?;
            running.iter().find(|c| c.process == process && c.index == index).ok_or_else(|| {
                failed(format!("{app} has no running {target}{}", if running.is_empty() { String::new() } else { format!(" (running: {})", names()) }))
            })?
        }
        None => running.first().ok_or_else(|| failed(format!("{app} has no running containers")))?,
    };
    let shell = config.shell_with(&ctx.engine.store.load_global()?).unwrap_or_else(|| "/bin/sh".into());
    let command = if command.is_empty() { vec![shell] } else { command };
    let command = match &active {
        Some(release) => release.one_off(command),
        None => command,
    };
    let client = Client { out: &ctx.out, input: &mut ctx.input, terminal: ctx.terminal.as_mut() };
    let code = runtime.exec(&container.id, command, client).await.map_err(|e| failed(e.to_string()))?;
    exit_status(code)
}

/// A command's exit code as ours: 0-254 pass through (255 is ssh's own; no code is 1).
fn exit_status(code: i64) -> CmdResult {
    match code {
        0 => Ok(()),
        code if (1..=254).contains(&code) => Err(CmdError::Exit(code as i32)),
        _ => Err(CmdError::Exit(1)),
    }
}
