//! `ps:*`: scale, start, stop, restart, rebuild and report an app's processes.

use super::Scope;
use super::property::SetArgs;
use super::property::{app_only, app_or_global};
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, Target, failed};
use crate::deploy::{self, Source};
use crate::output::Report;
use crate::store::{AppConfig, RestartPolicy};
use crate::validate::AppName;
use crate::{git, process};
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("ps", "Manage app processes")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Restart an app: a new release of the running image with the current config
    #[command(name = "ps:restart")]
    Restart { app: AppName },
    /// Build the deploy branch again and deploy it
    #[command(name = "ps:rebuild")]
    Rebuild { app: AppName },
    /// Set how many containers of each process type run (web=2 worker=1); none: show it
    #[command(name = "ps:scale")]
    Scale { app: AppName, scale: Vec<String> },
    /// Start a stopped app's processes again
    #[command(name = "ps:start")]
    Start { app: AppName },
    /// Stop an app's processes (kept stopped across restarts until ps:start)
    #[command(name = "ps:stop")]
    Stop { app: AppName },
    /// Set a process setting: restart-policy no|always|unless-stopped|on-failure[:N], procfile-path PATH (default Procfile), stop-timeout-seconds N (default 30), skip-deploy true|false (builds are recorded as releases, not deployed); APP or --global; start-cmd CMD, dockerfile-start-cmd CMD (the web command when the Procfile has none)
    #[command(name = "ps:set")]
    Set(SetArgs),
    /// Show an app's containers
    #[command(name = "ps:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Report(args) => args.scope(),
            Cmd::Restart { app, .. } | Cmd::Rebuild { app, .. } | Cmd::Scale { app, .. } | Cmd::Start { app, .. } | Cmd::Stop { app, .. } => Scope::App(app),
            Cmd::Set(args) => args.target.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Restart { app } => restart(ctx, &app, "ps:restart").await,
            Cmd::Rebuild { app } => rebuild(ctx, &app).await,
            Cmd::Scale { app, scale: args } => scale(ctx, &app, &args).await,
            Cmd::Start { app } => start(ctx, &app).await,
            Cmd::Stop { app } => stop(ctx, &app).await,
            Cmd::Set(args) => set(ctx, &args).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

/// A new release of the active image with the current config, through the usual swap.
pub async fn restart(ctx: &mut Ctx<'_>, app: &AppName, cause: &str) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    deploy::deploy_locked(ctx.engine, app, Source::Reuse { scale: None }, &ctx.cause(cause), &ctx.out).await.map_err(CmdError::from)?;
    Ok(())
}

/// Builds the deploy branch's head again and deploys it (or the app's source image).
pub async fn rebuild(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    // An app deployed from an image by name (git:from-image, git:set source-image): that
    // image again, pulled again where a registry is reachable.
    if let Some(image) = ctx.engine.store.load_app(app)?.source_image {
        return super::images::from_image(ctx, app, &image, "ps:rebuild").await;
    }
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    let config = ctx.engine.store.load_app(app)?;
    // An app deployed from an image (git:from-image, git:load-image: its releases have no
    // commit) is deployed from its running image again: Procfile and app.json read again,
    // a new release. (`git:from-image` pulls a newer one where a registry is reachable.)
    if let Some(active) = ctx.engine.store.load_releases(app)?.active().filter(|r| r.git_sha.is_empty()) {
        let source = Source::Image { image: active.image.clone(), shown: active.image_tag.clone() };
        deploy::deploy_locked(ctx.engine, app, source, &ctx.cause("ps:rebuild"), &ctx.out).await.map_err(CmdError::from)?;
        return Ok(());
    }
    let repo_dir = ctx.engine.store.repo_dir(app);
    let global = ctx.engine.store.load_global()?;
    let branches = config.deploy_branches(&global);
    let tmp = ctx.engine.store.tmp_dir();
    let (limit, build_dir, keep_git) = (global.build_context_limit_mb(), config.build_dir_with(&global), config.keep_git_dir_with(&global));
    let (context, sha) = tokio::task::spawn_blocking(move || -> Result<(git::BuildContext, String), String> {
        for branch in branches {
            if let Some(commit) = git::branch_head(&repo_dir, &branch).map_err(|e| e.to_string())? {
                let repo = git2::Repository::open_bare(&repo_dir).map_err(|e| e.to_string())?;
                let source = git::Tree { commit, subdir: build_dir.as_deref(), keep_git: keep_git.then_some(branch.as_str()) };
                return Ok((git::BuildContext::write(&repo, &source, &tmp, limit).map_err(|e| e.to_string())?, commit.to_string()));
            }
        }
        Err("nothing has been pushed to the deploy branch yet".into())
    })
    .await
    .map_err(|e| failed(e.to_string()))?
    .map_err(|e| failed(format!("Cannot rebuild {app}: {e}")))?;
    deploy::deploy_locked(ctx.engine, app, Source::Build { context, git_sha: sha, pushed: false }, &ctx.cause("ps:rebuild"), &ctx.out).await.map_err(CmdError::from)?;
    Ok(())
}

/// `ps:scale APP web=2 worker=1`: a new release with that formation (web swaps with no
/// downtime). Before the first deploy it is only recorded. Without arguments, shows it.
pub async fn scale(ctx: &mut Ctx<'_>, app: &AppName, args: &[String]) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    // A change reads the app's state under its deploy lock: two scales at once both count.
    let _deploying = if args.is_empty() { None } else { Some(ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?) };
    let config = ctx.engine.store.load_app(app)?;
    let active = ctx.engine.store.load_releases(app)?.active().cloned();
    if args.is_empty() {
        let types = active.as_ref().map(|r| r.types()).unwrap_or_else(|| config.scale.keys().cloned().collect());
        ctx.out.header(format!("{app} process scale")).await;
        for (name, count) in config.formation(&types) {
            ctx.out.line(format!("{name}={count}")).await;
        }
        return Ok(());
    }
    let changes = process::parse_scale(args)?;
    let mut scale = config.scale.clone();
    for (name, count) in &changes {
        scale.insert(name.clone(), *count);
    }
    let summary = changes.iter().map(|(n, c)| format!("{n}={c}")).collect::<Vec<_>>().join(" ");
    let Some(active) = active else {
        ctx.engine
            .update_app(app, |c| {
                for (name, count) in &changes {
                    c.scale.insert(name.clone(), *count);
                }
                Ok::<_, CmdError>(())
            })
            .await?;
        ctx.out.step(format!("Scale of {app} set to {summary}: it applies at the first deploy")).await;
        return Ok(());
    };
    let types = active.types();
    if let Some((missing, _)) = changes.iter().find(|(n, c)| *c > 0 && !types.contains(n)) {
        return Err(failed(format!(
            "v{} of {app} has no {missing} process type (it has: {}); add `{missing}: COMMAND` to the Procfile",
            active.version,
            types.join(", ")
        )));
    }
    if config.stopped {
        return Err(failed(format!("{app} is stopped: ps:start {app} first")));
    }
    ctx.out.step(format!("Scaling {app}: {summary}")).await;
    let source = Source::Reuse { scale: Some(scale) };
    deploy::deploy_locked(ctx.engine, app, source, &ctx.cause(format!("ps:scale {summary}")), &ctx.out).await.map_err(CmdError::from)?;
    Ok(())
}

/// `ps:start`: run the active release's formation again after `ps:stop`.
pub async fn start(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    let config = ctx.engine.store.load_app(app)?;
    let Some(active) = ctx.engine.store.load_releases(app)?.active().cloned() else {
        return Err(failed(format!("{app} has not been deployed yet: git push it first")));
    };
    if config.env != active.env {
        // The config changed while it was stopped: start as a new release.
        deploy::deploy_locked(ctx.engine, app, Source::Reuse { scale: None }, &ctx.cause("ps:start"), &ctx.out).await.map_err(CmdError::from)?;
        return Ok(());
    }
    ctx.engine
        .update_app(app, |c| {
            c.stopped = false;
            Ok::<_, CmdError>(())
        })
        .await?;
    deploy::restore(ctx.engine, app).await.map_err(|e| failed(format!("Cannot start {app}: {e}")))?;
    ctx.out.step(format!("{app} is running")).await;
    Ok(())
}

/// `ps:stop`: stop every container of the app; it stays stopped across daemon and host
/// restarts until `ps:start` (or a deploy).
pub async fn stop(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    ctx.engine
        .update_app(app, |c| {
            c.stopped = true;
            Ok::<_, CmdError>(())
        })
        .await?;
    let n = deploy::stop(ctx.engine, app).await.map_err(|e| failed(format!("Cannot stop {app}: {e}")))?;
    ctx.out.step(format!("Stopped {n} container(s) of {app}; ps:start {app} starts them again")).await;
    Ok(())
}

/// `ps:set (APP|--global) restart-policy [POLICY]` (no POLICY: unset, so the global policy,
/// else berth's default, applies). berth restarts containers itself (supervise.rs): a new
/// policy applies to the next stop.
pub async fn set(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let properties = [
        app_or_global("restart-policy"),
        app_or_global("procfile-path"),
        app_or_global("stop-timeout-seconds"),
        app_or_global("skip-deploy"),
        app_only("start-cmd"),
        app_only("dockerfile-start-cmd"),
    ];
    match args.property(&properties)? {
        "restart-policy" => set_restart_policy(ctx, args).await,
        key => set_process(ctx, args, key).await,
    }
}

/// `ps:set (APP|--global) procfile-path PATH|stop-timeout-seconds N`: read at the next
/// deploy (the Procfile) and the next stop (the timeout).
async fn set_process(ctx: &mut Ctx<'_>, args: &SetArgs, key: &str) -> CmdResult {
    let value = args.value();
    let (mut path, mut seconds, mut command, mut skip) = (None, None, None, None);
    if key == "skip-deploy" {
        skip = value.map(|v| v.parse::<bool>().map_err(|_| failed(format!("Invalid skip-deploy {}: true or false", crate::validate::quoted(v))))).transpose()?;
    } else if key.ends_with("start-cmd") {
        if let Some(line) = value {
            shell_words::split(line).map_err(|e| failed(format!("Invalid {key} {}: {e}", crate::validate::quoted(line))))?;
            if line.trim().is_empty() || line.len() > 4096 {
                return Err(failed(format!("Invalid {key}: a command line of at most 4096 bytes")));
            }
        }
        command = value.map(str::to_string);
    } else if key == "procfile-path" {
        path = value.map(crate::validate::tree_path).transpose().map_err(|e| failed(format!("Invalid procfile-path: {e}")))?;
    } else {
        let invalid = |v: &str| failed(format!("Invalid stop-timeout-seconds {}: whole seconds from 1 to 3600", crate::validate::quoted(v)));
        seconds = value.map(|v| v.parse::<u32>().ok().filter(|n| (1..=3600).contains(n)).ok_or_else(|| invalid(v))).transpose()?;
    }
    let change = |p: &mut crate::store::ProcessSettings| {
        if key == "skip-deploy" {
            p.skip_deploy = skip;
        } else if key == "start-cmd" {
            p.start_cmd = command.clone();
        } else if key == "dockerfile-start-cmd" {
            p.dockerfile_start_cmd = command.clone();
        } else if key == "procfile-path" {
            p.procfile_path = path.clone();
        } else {
            p.stop_timeout = seconds;
        }
    };
    args.save(ctx, key, |c| change(&mut c.process), |g| change(&mut g.process)).await
}

async fn set_restart_policy(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let policy: Option<RestartPolicy> = args.value().map(str::parse).transpose().map_err(failed)?;
    let shown = |p: Option<RestartPolicy>| p.map_or_else(|| "unset".to_string(), |p| p.to_string());
    let Target::App(app) = &args.target else {
        ctx.engine.update_global(|g| {
            g.restart_policy = policy;
            Ok::<_, CmdError>(())
        }).await?;
        ctx.out.step(format!("Global restart policy {}: apps that set none use {}", shown(policy), policy.unwrap_or_default())).await;
        return Ok(());
    };
    // Under the deploy lock: a deploy running now would start containers with the old policy.
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    // berth restarts containers itself (supervise.rs): the new policy applies to the next stop.
    let global = ctx.engine.store.load_global()?;
    let applies = ctx
        .engine
        .update_app(app, |c| {
            c.restart_policy = policy;
            Ok::<_, CmdError>(c.restart_policy_with(&global))
        })
        .await?;
    ctx.out.step(format!("Restart policy of {app} {}: {applies} applies", shown(policy))).await;
    Ok(())
}

/// What a container of an app is doing, given the app's active release: an older
/// release's container still running is retiring (its requests drain, then it stops); a
/// newer one's is starting (a deploy is under way).
fn container_state(c: &crate::runtime::AppContainer, active: Option<u32>) -> String {
    match (c.running, active) {
        (false, _) => format!("stopped: {}", c.status.to_lowercase()),
        (true, Some(v)) if c.release < v => "retiring".into(),
        (true, Some(v)) if c.release > v => "starting".into(),
        (true, _) => "running".into(),
    }
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    if args.global {
        let policy = global.restart_policy;
        let default = AppConfig::default();
        let report = Report::new("--global ps information")
            .namespace("ps")
            .global_layer("restart-policy", policy.map(|p| p.to_string()), policy.unwrap_or_default().to_string())
            .global_layer("procfile-path", global.process.procfile_path.clone(), default.procfile_path_with(&global))
            .global_layer("stop-timeout-seconds", global.process.stop_timeout.map(|n| n.to_string()), default.stop_timeout_with(&global).as_secs().to_string())
            .global_layer("skip-deploy", global.process.skip_deploy.map(|b| b.to_string()), default.skip_deploy_with(&global).to_string());
        return args.print_global(ctx, report).await;
    }
    // Each app's instances as its scheduler lists them, asked first.
    let runtime = ctx.engine.runtime().await.ok();
    let mut running = std::collections::HashMap::new();
    if runtime.is_some() {
        for name in args.app_names(ctx)? {
            let instances = match ctx.engine.scheduler(&name).await {
                Ok(scheduler) => scheduler.instances(&name).await.unwrap_or_default(),
                Err(_) => Vec::new(),
            };
            running.insert(name, instances);
        }
    }
    let minutes = crate::metrics::minutes(ctx.engine, &args.app_names(ctx)?).await;
    args.print_apps(ctx, |ctx, name, config| {
        let active = ctx.engine.store.load_releases(name)?.active().cloned();
        let mut containers = running.get(name).cloned().unwrap_or_default();
        containers.sort_by_key(|c| (c.process != process::WEB, c.process.clone(), c.index, c.release));
        let list: Vec<String> = containers
            .iter()
            .map(|c| {
                // Where a cluster's instance runs (a swarm task's status names its node).
                let node = c.status.split_once(" on node ").map(|(_, node)| format!(" on {node}")).unwrap_or_default();
                format!("{}.{}: {} (v{}){node}", c.process, c.index, container_state(c, active.as_ref().map(|r| r.version)), c.release)
            })
            .collect();
        let formation = match &active {
            Some(r) => r.formation_or(&config.scale),
            None => config.scale.iter().map(|(t, n)| (t.clone(), *n)).collect(),
        };
        let wanted: u32 = formation.iter().map(|(_, n)| n).sum();
        let live = active.as_ref().map_or(0, |r| containers.iter().filter(|c| c.running && c.release == r.version).count() as u32);
        let formation: Vec<String> = formation.iter().map(|(t, n)| format!("{t}={n}")).collect();
        // What really runs: the engine's containers of the active release, not the intent.
        let status = match (&active, config.stopped) {
            (None, _) => "not deployed".to_string(),
            (Some(_), true) => "stopped".to_string(),
            (Some(_), false) if runtime.is_none() => "unknown (the Docker engine is not reachable)".to_string(),
            (Some(_), false) if live >= wanted => "running".to_string(),
            (Some(_), false) => format!("degraded: {live} of {wanted} containers running"),
        };
        let report = Report::new(format!("{name} ps information")).namespace("ps")
            .row("Deployed", active.is_some())
            .row("Status", status)
            .row("Release", active.as_ref().map(|r| format!("v{}", r.version)).unwrap_or_default())
            .row("Processes", active.as_ref().map(|r| r.types()).unwrap_or_default())
            .row("Scale", formation)
            .layered("restart-policy", config.restart_policy.map(|p| p.to_string()), global.restart_policy.map(|p| p.to_string()), config.restart_policy_with(&global).to_string())
            .layered("procfile-path", config.process.procfile_path.clone(), global.process.procfile_path.clone(), config.procfile_path_with(&global))
            .layered(
                "stop-timeout-seconds",
                config.process.stop_timeout.map(|n| n.to_string()),
                global.process.stop_timeout.map(|n| n.to_string()),
                config.stop_timeout_with(&global).as_secs().to_string(),
            )
            .layered("skip-deploy", config.process.skip_deploy.map(|b| b.to_string()), global.process.skip_deploy.map(|b| b.to_string()), config.skip_deploy_with(&global).to_string())
            .keyed_row("Ps start cmd", "start-cmd".into(), config.process.start_cmd.clone().unwrap_or_default())
            .keyed_row("Ps computed start cmd", "computed-start-cmd".into(), config.process.start_cmd.clone().unwrap_or_default())
            .keyed_row("Ps dockerfile start cmd", "dockerfile-start-cmd".into(), config.process.dockerfile_start_cmd.clone().unwrap_or_default())
            .keyed_row(
                "Ps computed dockerfile start cmd",
                "computed-dockerfile-start-cmd".into(),
                config.process.dockerfile_start_cmd.clone().or(config.process.start_cmd.clone()).unwrap_or_default(),
            )
            // Only the active release's: an old one still running is on its way out.
            .row("Running", live)
            .row("Retiring", containers.iter().filter(|c| container_state(c, active.as_ref().map(|r| r.version)) == "retiring").count())
            .row("Containers", list);
        Ok(crate::metrics::with_minute(report, minutes.get(name)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_old_releases_running_container_is_retiring_not_running() {
        let c = |release, running, status: &str| crate::runtime::AppContainer {
            id: "id".into(),
            app: "a".into(),
            name: "n".into(),
            process: "web".into(),
            index: 1,
            release,
            running,
            status: status.into(),
        };
        assert_eq!(container_state(&c(3, true, "Up 1 second"), Some(4)), "retiring");
        assert_eq!(container_state(&c(4, true, "Up 1 second"), Some(4)), "running");
        assert_eq!(container_state(&c(5, true, "Up 1 second"), Some(4)), "starting");
        assert_eq!(container_state(&c(4, false, "Exited (137) 2 seconds ago"), Some(4)), "stopped: exited (137) 2 seconds ago");
        assert_eq!(container_state(&c(1, true, "Up"), None), "running");
    }
}
