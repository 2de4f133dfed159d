//! `scheduler:*`: where an app runs (dokku's names): `docker-local`, containers on this
//! server, or `swarm`, services on the cluster this server manages (`cluster:*`). Moving an
//! app is a deploy of its running image on the new scheduler, through the usual swap: the
//! old instances serve until the new ones are ready, then retire.

use super::property::{SetArgs, app_only, app_or_global};
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, Scope, Target, failed};
use crate::deploy::{self, Source};
use crate::output::Report;
use crate::store::{AppConfig, SchedulerName};
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[
    ("scheduler", "Manage scheduler settings: where apps run (docker-local, swarm)"),
    ("scheduler-docker-local", "Manage the docker-local scheduler integration for an app: init process, containers started at once"),
];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Set where an app runs: selected docker-local|swarm (no value: the global choice), constraint EXPR[,EXPR…] (swarm placement), shell PROGRAM (of enter without a command); --global selected|shell
    #[command(name = "scheduler:set")]
    Set(SetArgs),
    /// Show where apps run
    #[command(name = "scheduler:report")]
    Report(ReportArgs),
    /// Set a docker-local property: init-process true|false (tini as PID 1; default true), parallel-schedule-count N (containers a deploy starts at once; default 1); APP or --global
    #[command(name = "scheduler-docker-local:set")]
    DockerLocalSet(SetArgs),
    /// Show apps' docker-local settings
    #[command(name = "scheduler-docker-local:report")]
    DockerLocalReport(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            // Which servers an app runs on is the admin's to decide.
            Cmd::Set(_) => Scope::Admin,
            Cmd::Report(args) | Cmd::DockerLocalReport(args) => args.scope(),
            Cmd::DockerLocalSet(args) => args.target.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Set(args) => set(ctx, &args).await,
            Cmd::Report(args) => report(ctx, &args).await,
            Cmd::DockerLocalSet(args) => docker_local_set(ctx, &args).await,
            Cmd::DockerLocalReport(args) => docker_local_report(ctx, &args).await,
        }
    }
}

pub async fn set(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let key = args.property(&[app_or_global("selected"), app_only("constraint"), app_or_global("shell")])?;
    match (key, &args.target) {
        ("shell", _) => {
            let shell = args.value().map(valid_shell).transpose()?;
            args.save(ctx, "shell", |c| c.scheduler.shell = shell.clone(), |g| g.shell = shell.clone()).await
        }
        ("selected", Target::Global) => {
            let selected = args.value().map(str::parse::<SchedulerName>).transpose().map_err(failed)?;
            let store = &ctx.engine.store;
            let _global = store.lock_global().await;
            let mut global = store.load_global()?;
            let was = global.scheduler.unwrap_or_default();
            // Deployed apps that chose none stay where they run (scheduler:set APP moves one).
            let mut kept = 0;
            for app in store.list_apps()? {
                if store.load_releases(&app)?.active().is_some() && store.load_app(&app)?.scheduler.selected.is_none() {
                    save_selected(ctx, &app, Some(was)).await?;
                    kept += 1;
                }
            }
            global.scheduler = selected;
            store.save_global(&global)?;
            let shown = selected.unwrap_or_default().as_str();
            ctx.out.step(format!("New apps run on {shown}; {kept} deployed apps stay on {} (scheduler:set APP selected {shown} moves one)", was.as_str())).await;
            Ok(())
        }
        ("selected", Target::App(app)) => {
            let selected = args.value().map(str::parse::<SchedulerName>).transpose().map_err(failed)?;
            move_app(ctx, app, selected).await
        }
        (_, _) => {
            let app = args.app()?;
            let constraints: Vec<String> = args.value().map(|v| v.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect()).unwrap_or_default();
            if let Some(bad) = constraints.iter().find(|c| !valid_constraint(c)) {
                return Err(failed(format!("Invalid constraint {}: node.ATTRIBUTE==VALUE or !=, e.g. node.labels.env==qa", crate::validate::quoted(bad))));
            }
            let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
            ctx.engine
                .update_app(app, |config| {
                    config.scheduler.constraints = constraints.clone();
                    Ok::<_, CmdError>(())
                })
                .await?;
            ctx.out.step(format!("Placement of {app}: {}", if constraints.is_empty() { "anywhere".to_string() } else { constraints.join(", ") })).await;
            // Placement applies to the next tasks: a swarm app's are placed anew now.
            if ctx.engine.scheduler_of(app) == SchedulerName::Swarm && serving(ctx, app)? {
                deploy::deploy_locked(ctx.engine, app, Source::Reuse { scale: None }, &ctx.cause("scheduler:set constraint"), &ctx.out).await.map_err(CmdError::from)?;
            }
            Ok(())
        }
    }
}

/// `scheduler-docker-local:set (APP|--global) init-process|parallel-schedule-count [VALUE]`:
/// containers started from then on take it.
pub async fn docker_local_set(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let key = args.property(&[app_or_global("init-process"), app_or_global("parallel-schedule-count")])?;
    let value = args.value();
    let (mut init, mut count) = (None, None);
    if key == "init-process" {
        init = value.map(|v| v.parse::<bool>().map_err(|_| failed(format!("Invalid init-process {}: true or false", crate::validate::quoted(v))))).transpose()?;
    } else {
        let invalid = |v: &str| failed(format!("Invalid parallel-schedule-count {}: containers started at once, 1 to 100", crate::validate::quoted(v)));
        count = value.map(|v| v.parse::<u32>().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| invalid(v))).transpose()?;
    }
    let change = |settings: &mut crate::store::DockerLocalSettings| {
        if key == "init-process" {
            settings.init_process = init;
        } else {
            settings.parallel_schedule_count = count;
        }
    };
    args.save(ctx, key, |c| change(&mut c.docker_local), |g| change(&mut g.docker_local)).await
}

pub async fn docker_local_report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    let text = |v: Option<bool>| v.map(|b| b.to_string());
    let count = |v: Option<u32>| v.map(|n| n.to_string());
    if args.global {
        let default = AppConfig::default();
        let report = Report::new("--global scheduler-docker-local information")
            .namespace("scheduler-docker-local")
            .global_layer("init-process", text(global.docker_local.init_process), default.init_process_with(&global).to_string())
            .global_layer("parallel-schedule-count", count(global.docker_local.parallel_schedule_count), default.parallel_schedule_count_with(&global).to_string());
        return args.print_global(ctx, report).await;
    }
    args.print_apps(ctx, |_, app, config| {
        Ok(Report::new(format!("{app} scheduler-docker-local information"))
            .namespace("scheduler-docker-local")
            .layered("init-process", text(config.docker_local.init_process), text(global.docker_local.init_process), config.init_process_with(&global).to_string())
            .layered(
                "parallel-schedule-count",
                count(config.docker_local.parallel_schedule_count),
                count(global.docker_local.parallel_schedule_count),
                config.parallel_schedule_count_with(&global).to_string(),
            ))
    })
    .await
}

/// A shell `enter` may run: a program name or absolute path (`bash`, `/bin/ash`). Pure.
fn valid_shell(text: &str) -> Result<String, CmdError> {
    let ok = !text.is_empty() && text.len() <= 100 && !text.starts_with('-') && text.chars().all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if ok { Ok(text.to_string()) } else { Err(failed(format!("Invalid shell {}: a program, like bash or /bin/ash", crate::validate::quoted(text)))) }
}

/// A Swarm placement constraint as Swarm takes them: `node.…`/`engine.labels.…`, then `==`
/// or `!=`, then a value. Pure.
pub fn valid_constraint(text: &str) -> bool {
    let Some((left, right)) = text.split_once("==").or_else(|| text.split_once("!=")) else { return false };
    let left = left.trim();
    (left.starts_with("node.") || left.starts_with("engine.labels."))
        && !right.trim().is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || "._-=!/: ".contains(c))
}

/// Whether the app runs a release now (deployed, not stopped).
fn serving(ctx: &Ctx<'_>, app: &str) -> Result<bool, CmdError> {
    let config = ctx.engine.store.load_app(app)?;
    Ok(!config.stopped && ctx.engine.store.load_releases(app)?.active().is_some())
}

/// Refuses, for an app on swarm, what the cluster does not give it yet (`what`), rather than
/// doing it differently.
pub fn not_on_swarm(ctx: &Ctx<'_>, app: &str, what: &str) -> CmdResult {
    if ctx.engine.scheduler_of(app) == SchedulerName::Swarm {
        return Err(failed(format!("{app} runs on swarm, which has no {what} yet: scheduler:set {app} selected docker-local first")));
    }
    Ok(())
}

/// What an app uses that the cluster does not give it yet: refused rather than silently
/// different. Pure.
pub fn unsupported_on_swarm(config: &AppConfig, linked: bool) -> Option<&'static str> {
    let mut container_ports: Vec<u16> = config.effective_ports().iter().map(|p| p.container).collect();
    container_ports.sort_unstable();
    container_ports.dedup();
    if container_ports.len() > 1 {
        Some("ports mapped to more than one container port (a task publishes the app's PORT only): ports:set it to one first")
    } else if !config.storage.is_empty() {
        Some("storage mounts (a directory of this server is not on the other nodes): storage:unmount them first")
    } else if linked {
        Some("linked services (they run on this server's engine, out of the cluster's reach): unlink them first")
    } else if !config.networks.is_empty() {
        Some("networks of network:set (they are this server's bridges): network:set APP attach-post-create without them first")
    } else if config.docker_options.keys().any(|k| k.starts_with("deploy")) {
        Some("docker-options of the deploy phase (a service's tasks take few of docker run's options): docker-options:clear APP deploy first")
    } else {
        None
    }
}

/// Moves an app to `selected` (None: the global choice): a deploy of its running image there,
/// then its instances on the old scheduler retire once drained. A failed move changes nothing.
async fn move_app(ctx: &mut Ctx<'_>, app: &str, selected: Option<SchedulerName>) -> CmdResult {
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    let config = ctx.engine.store.load_app(app)?;
    let before = ctx.engine.scheduler_of(app);
    let global = ctx.engine.store.load_global()?.scheduler.unwrap_or_default();
    let after = selected.unwrap_or(global);
    if after == SchedulerName::Swarm {
        let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
        crate::scheduler::swarm::manager_state(runtime.docker()).await.map_err(failed)?;
        let linked = !crate::services::reached_by(ctx.engine, app, &config).is_empty();
        if let Some(what) = unsupported_on_swarm(&config, linked) {
            return Err(failed(format!("{app} cannot run on swarm yet: it has {what}")));
        }
    }
    if after == before || !serving(ctx, app)? {
        save_selected(ctx, app, selected).await?;
        ctx.out.step(format!("Scheduler of {app}: {}", after.as_str())).await;
        return Ok(());
    }
    ctx.out.step(format!("Moving {app} from {} to {}", before.as_str(), after.as_str())).await;
    let old = ctx.engine.scheduler(app).await.map_err(|e| failed(e.to_string()))?;
    let instances = old.instances(app).await.map_err(|e| failed(e.to_string()))?;
    let mut drain = Vec::new();
    for web in instances.iter().filter(|i| i.process == crate::process::WEB && i.running) {
        drain.extend(old.endpoint(&web.id).await.ok());
    }
    {
        // Deploys go to the new scheduler; nothing else routes the app until it is saved there.
        let _moving = ctx.engine.moving(app, after);
        deploy::deploy_locked(ctx.engine, app, Source::Reuse { scale: None }, &ctx.cause("scheduler:set selected"), &ctx.out)
            .await
            .map_err(|e| failed(format!("{e}; {app} stays on {}", before.as_str())))?;
        save_selected(ctx, app, selected).await?;
    }
    ctx.out.step(format!("{app} runs on {} now; its {} instances on {} retire once drained", after.as_str(), instances.len(), before.as_str())).await;
    deploy::retire_drained(ctx.engine, app, &*old, instances, drain, std::time::Duration::from_secs(config.checks.wait_to_retire)).await;
    // What the old scheduler readied for a next rollout there goes too.
    old.cool(app).await;
    Ok(())
}

async fn save_selected(ctx: &Ctx<'_>, app: &str, selected: Option<SchedulerName>) -> CmdResult {
    ctx.engine
        .update_app(app, move |config| {
            config.scheduler.selected = selected;
            Ok::<_, CmdError>(())
        })
        .await
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    let name = |s: SchedulerName| s.as_str().to_string();
    if args.global {
        let report = Report::new("--global scheduler information")
            .namespace("scheduler")
            .global_layer("selected", global.scheduler.map(name), name(global.scheduler.unwrap_or_default()))
            .global_layer("shell", global.shell.clone(), global.shell.clone().unwrap_or_default());
        return args.print_global(ctx, report).await;
    }
    args.print_apps(ctx, |_, app, config| {
        Ok(Report::new(format!("{app} scheduler information"))
            .namespace("scheduler")
            .layered("selected", config.scheduler.selected.map(name), global.scheduler.map(name), name(config.scheduler.selected.or(global.scheduler).unwrap_or_default()))
            .layered("shell", config.scheduler.shell.clone(), global.shell.clone(), config.shell_with(&global).unwrap_or_default())
            .row("Scheduler constraints", config.scheduler.constraints.clone()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constraints_are_swarms() {
        for ok in ["node.labels.env==qa", "node.role!=manager", "node.hostname == web-1", "engine.labels.disk==ssd"] {
            assert!(valid_constraint(ok), "{ok}");
        }
        for bad in ["env==qa", "node.labels.env", "node.labels.env==", "node.labels.env==qa;rm", "node.labels.env==$(x)"] {
            assert!(!valid_constraint(bad), "{bad}");
        }
    }

    #[test]
    fn what_the_cluster_does_not_give_yet_is_named() {
        let mut config = AppConfig::default();
        assert_eq!(unsupported_on_swarm(&config, false), None);
        assert!(unsupported_on_swarm(&config, true).is_some_and(|w| w.contains("linked services")));
        config.storage.push(crate::validate::mount("data:/data").unwrap());
        assert!(unsupported_on_swarm(&config, false).is_some_and(|w| w.contains("storage")));
    }
}
