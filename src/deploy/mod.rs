//! The deploy pipeline: build → release → swap → route → retire.
//!
//! A failed step never touches what is serving: new containers are removed, the old
//! containers and the old nginx site stay, and the release is recorded as failed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::git;
use crate::output::{Input, Output};
use crate::process;
use crate::runtime::{Client, ContainerSpec};
use crate::scheduler::{SchedError, Scheduler};
use crate::store::{AppConfig, Release, Status};

mod build;
mod lifecycle;
mod rollout;
mod route;

pub use build::build_limits;
pub use lifecycle::{prune_images, ref_landed, restore, settle_ref, stop, teardown};
pub use rollout::retire_drained;
pub use route::{heal_plan, reroute, route, serving};

/// Why a deploy, a restore, a reroute, a stop or a teardown did not go through. Its text is
/// the one line the user reads; a door maps the kinds (the state, the scheduler, Docker,
/// nginx, a refusal) to its own answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    State(#[from] crate::store::StoreError),
    #[error(transparent)]
    Scheduler(#[from] SchedError),
    #[error(transparent)]
    Docker(#[from] crate::runtime::RuntimeError),
    #[error(transparent)]
    Proxy(#[from] crate::proxy::ProxyError),
    /// A plugin's `pre-*` trigger refused.
    #[error(transparent)]
    Plugin(#[from] crate::plugins::TriggerError),
    /// What the pushed tree or image says cannot be taken (its Procfile, its app.json).
    #[error(transparent)]
    Refused(#[from] crate::validate::Invalid),
    /// A step failed or was refused (the app is locked, a build failed, checks did not pass,
    /// a plugin said no, …), in words.
    #[error("{0}")]
    Failed(String),
    /// A failure that left what served before serving, as the user is told.
    #[error("{why}; {serving}")]
    Kept { why: Box<Error>, serving: String },
}

impl From<String> for Error {
    fn from(why: String) -> Error {
        Error::Failed(why)
    }
}

impl Error {
    /// This failure, saying what keeps serving.
    fn kept(self, serving: &str) -> Error {
        Error::Kept { why: Box::new(self), serving: serving.to_string() }
    }
}

/// What a new release runs.
pub enum Source {
    /// Build this build context (a tar of the pushed commit, on disk). `pushed`: from a
    /// push, whose branch git moves only once the deploy succeeded.
    Build { context: git::BuildContext, git_sha: String, pushed: bool },
    /// Deploy an image built elsewhere (`git:from-image`, `git:load-image`): its Procfile
    /// and app.json are read from its working directory. `shown`: how the user named it.
    Image { image: String, shown: String },
    /// Run the active release's image again with the current config; with `scale`, that
    /// formation instead (it becomes the app's once it serves).
    Reuse { scale: Option<BTreeMap<String, u32>> },
    /// Run an earlier release's image with that release's config (which becomes the app's
    /// config once it serves).
    Rollback { version: u32 },
}

/// How long an app's processes have between SIGTERM and SIGKILL when they stop
/// (`ps:set stop-timeout-seconds`): read when they stop, so a change applies to the next stop.
pub fn stop_timeout(engine: &Engine, app: &str) -> Duration {
    let global = engine.store.load_global().unwrap_or_default();
    match engine.store.load_app(app) {
        Ok(config) => config.stop_timeout_with(&global),
        Err(_) => AppConfig::default().stop_timeout_with(&global),
    }
}
/// Lines of a failed container's output shown to the user.
const LOG_LINES: usize = 20;
/// How long a new non-web container must keep running to count as started.
const SETTLE: Duration = Duration::from_secs(2);

/// How long a deploy's holders wait at most for the last rollout's retirement (its drain
/// is bounded by `checks:set wait-to-retire`, 10 s by default).
const RETIRED_WAIT: Duration = Duration::from_secs(15);

/// The largest app.json berth reads.
pub const MAX_APP_JSON: usize = 256 * 1024;
/// The CPU weight builds get unless set (apps' containers run at 1024).
pub const DEFAULT_BUILD_CPU_SHARES: u32 = 256;
/// The largest build memory limit the engine's build API takes as berth calls it (bollard
/// carries it as a 32-bit number of bytes): 2047 MiB.
pub const MAX_BUILD_MEMORY: i64 = i32::MAX as i64;

/// How long the release command, predeploy and postdeploy may each take, as they run with
/// the app's deploy lock held (`release_timeout` in berth.toml, seconds; an hour by default).
fn release_limit(engine: &Engine, what: &'static str) -> crate::runtime::TimeLimit {
    let secs = engine.store.load_global().ok().and_then(|g| g.release_timeout).unwrap_or(3600).max(1);
    crate::runtime::TimeLimit { limit: Duration::from_secs(secs), what, setting: "release_timeout" }
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Why a release is made (`git push`, `ps:scale web=2`, …) and by whom: the name of the key
/// behind the push or command (`root` on the server itself).
#[derive(Debug, Clone)]
pub struct Cause {
    pub what: String,
    pub by: String,
}

impl Cause {
    pub fn new(what: impl Into<String>, by: impl Into<String>) -> Cause {
        Cause { what: what.into(), by: by.into() }
    }

    /// What plugins are told of it, in their environment.
    fn env(&self) -> [(&str, &str); 2] {
        [("BERTH_DEPLOY_CAUSE", &self.what), ("BERTH_DEPLOYED_BY", &self.by)]
    }
}

/// Deploys with the app's deploy lock already held. Returns the new release's version.
pub async fn deploy_locked(engine: &Engine, app: &str, source: Source, cause: &Cause, out: &Output) -> Result<u32, Error> {
    let next = engine.store.load_releases(app).map(|r| r.next_version()).unwrap_or(0);
    let env = cause.env();
    // Its output is kept for `releases:output` (the last deploy's, whoever saw it).
    let out = &out.teed(&last_output(engine, app));
    let started = std::time::Instant::now();
    let result = deploy_release(engine, app, source, cause, out).await;
    engine.deploys.lock().unwrap_or_else(|e| e.into_inner()).entry(app.to_string()).or_default().record(started.elapsed().as_secs_f64(), result.is_err());
    match result {
        Ok((version, deployed)) => {
            if deployed {
                let _ = crate::plugins::trigger(engine, "post-deploy", &[app.to_string(), version.to_string()], &env, out).await;
            }
            Ok(version)
        }
        Err(why) => {
            out.note_in_copy(&format!(" !     {why}\n"));
            let _ = crate::plugins::trigger(engine, "deploy-failed", &[app.to_string(), next.to_string(), why.to_string()], &env, out).await;
            Err(why)
        }
    }
}

/// Where the output of an app's last deploy is kept.
pub fn last_output(engine: &Engine, app: &str) -> std::path::PathBuf {
    engine.store.app_dir(app).join("last-deploy.log")
}

/// A release about to be made, from its source: the release (not yet served) and what
/// becomes the app's once it serves.
struct Made {
    release: Release,
    /// The rolled-back-to release's env (it becomes the app's config).
    rollback_env: Option<BTreeMap<String, String>>,
    /// A new formation (it becomes the app's scale).
    new_scale: Option<BTreeMap<String, u32>>,
    /// Built or imported now: its image goes if it never serves.
    built: bool,
    /// Its release phase and postdeploy run: built now, or built before and never deployed
    /// (`skip-deploy`).
    first_run: bool,
    /// From a push, whose branch git moves only once it served.
    pushed: bool,
}

/// A deploy, without its plugins' `post-deploy`/`deploy-failed` (`deploy_locked` runs them):
/// the release made, and whether it was deployed (not when `ps:set skip-deploy` stops a
/// build short of it).
async fn deploy_release(engine: &Engine, app: &str, source: Source, cause: &Cause, out: &Output) -> Result<(u32, bool), Error> {
    let started = Instant::now();
    let config = engine.store.load_app(app)?;
    if config.locked {
        return Err(Error::from(format!("Deploys of {app} are locked; run apps:unlock {app} first")));
    }
    // Where the app is being moved to, during a move; else where it runs.
    let scheduler = engine.deploy_scheduler(app).await?;
    scheduler.prepare().await?;
    // The web containers' namespaces are made while the release builds; while the last
    // rollout's old instances retire, once they did: their namespaces are kept for the
    // next containers (a holder made now would go instead, and the engine would start and
    // stop a container more). A build done before that starts its containers on the
    // network themselves.
    if matches!(source, Source::Build { .. } | Source::Image { .. }) {
        if engine.is_retiring(app) {
            let (engine, scheduler, app) = (engine.shared(), scheduler.clone(), app.to_string());
            tokio::spawn(async move {
                engine.retired(&app, RETIRED_WAIT).await;
                warm_from_config(&engine, &*scheduler, &app);
            });
        } else {
            scheduler.warm(warm_slots(app, &config));
        }
    }
    let deployed = deploy_made(engine, &scheduler, app, &config, source, cause, started, out).await;
    scheduler.cool(app).await;
    deployed
}

/// Makes the web namespaces of the app's next rollout, as its config stands now.
pub(super) fn warm_from_config(engine: &Engine, scheduler: &dyn Scheduler, app: &str) {
    if let Ok(config) = engine.store.load_app(app) {
        scheduler.warm(warm_slots(app, &config));
    }
}

/// The web slots a rollout of the app's config starts. (Its release's formation is known
/// only once it is built: a slot too many is let go, one too few starts as before.)
fn warm_slots(app: &str, config: &AppConfig) -> Vec<crate::runtime::Warm> {
    let web = config.scale.get(process::WEB).copied().unwrap_or(1);
    (1..=web).map(|index| crate::runtime::Warm { app: app.to_string(), index }).collect()
}

#[allow(clippy::too_many_arguments)]
async fn deploy_made(engine: &Engine, scheduler: &std::sync::Arc<dyn Scheduler>, app: &str, config: &AppConfig, source: Source, cause: &Cause, started: Instant, out: &Output) -> Result<(u32, bool), Error> {
    let releases = engine.store.load_releases(app)?;
    let mut made = make_release(engine, app, config, &releases, source, cause, out).await?;
    let version = made.release.version;
    if let Err(e) = formation(&mut made, config, out).await {
        if made.built {
            remove_images(engine, app, vec![(made.release.image_tag.clone(), made.release.image.clone())]).await;
        }
        return Err(e);
    }
    if made.built && config.skip_deploy_with(&engine.store.load_global()?) {
        made.release.status = Status::Built;
        let prune = record(engine, app, &made.release, false).await?;
        remove_images(engine, app, prune).await;
        out.step(format!("Skipping the deploy of v{version} (ps:set {app} skip-deploy true): releases:rollback {app} v{version} deploys it")).await;
        return Ok((version, false));
    }
    out.step(format!("Releasing v{version}")).await;
    let previous = releases.active().map(|r| r.version);
    let urls = rollout::go_live(engine, scheduler, app, config, &mut made, previous, cause, out).await?;
    finish(engine, &**scheduler, app, config, made, started, urls, out).await;
    Ok((version, true))
}

/// The release a source gives, not yet served.
#[allow(clippy::too_many_arguments)]
async fn make_release(engine: &Engine, app: &str, config: &AppConfig, releases: &crate::store::Releases, source: Source, cause: &Cause, out: &Output) -> Result<Made, Error> {
    let version = releases.next_version();
    let made = |release, built, pushed| Made { release, rollback_env: None, new_scale: None, built, first_run: built, pushed };
    let runtime = || async { engine.runtime().await.map_err(|e| e.to_string()) };
    Ok(match source {
        Source::Build { context, git_sha, pushed } => {
            made(build::from_context(engine, &runtime().await?, app, config, version, (context, git_sha), cause, out).await?, true, pushed)
        }
        Source::Image { image, shown } => {
            let procfile_path = config.procfile_path_with(&engine.store.load_global()?);
            made(build::from_image((engine, &runtime().await?), app, (config, &procfile_path), version, (image, shown), cause, out).await?, true, false)
        }
        Source::Reuse { scale } => {
            let active = releases.active().ok_or_else(|| format!("{app} has not been deployed yet: git push it first"))?;
            Made { new_scale: scale, ..made(Release { env: config.env.clone(), ..successor(active, version, cause) }, false, false) }
        }
        Source::Rollback { version: target } => {
            let old = releases.releases.iter().find(|r| r.version == target).ok_or_else(|| format!("{app} has no release v{target} (see: releases {app})"))?;
            if old.status == Status::Failed {
                return Err(Error::from(format!("v{target} of {app} never served (it failed): roll back to a release that did")));
            }
            if old.compacted {
                return Err(format!(
                    "v{target} of {app} is history only: its image and env are no longer kept (releases:set {app} keep N keeps more); push commit {} again instead",
                    short(&old.git_sha)
                )
                .into());
            }
            if runtime().await?.image_info(&old.image).await.is_none() {
                return Err(Error::from(format!("The image of v{target} is no longer kept: push that commit again instead")));
            }
            out.step(format!("Rolling back {app} to v{target} ({}), without a build", short(&old.git_sha))).await;
            let first_run = old.status == Status::Built;
            Made { rollback_env: Some(old.env.clone()), first_run, ..made(successor(old, version, cause), false, false) }
        }
    })
}

/// Sets what the release runs: the new scale, else the app's, over the process types the
/// release has (a type scaled but missing is noted).
async fn formation(made: &mut Made, config: &AppConfig, out: &Output) -> Result<(), Error> {
    let release = &mut made.release;
    let scale = made.new_scale.clone().unwrap_or_else(|| config.scale.clone());
    let types = release.types();
    if types.is_empty() {
        return Err(Error::from(format!("{} declares no process to run: add a Procfile with `web: COMMAND`", short(&release.git_sha))));
    }
    for (name, count) in &scale {
        if *count > 0 && !types.contains(name) {
            out.step(format!("Note: {name}={count} is set but v{} has no {name} process type (it has: {})", release.version, types.join(", "))).await;
        }
    }
    release.formation = process::formation(&scale, &types).into_iter().collect();
    Ok(())
}

/// What follows once the release serves: the app's config says so too, postdeploy runs, the
/// URLs are shown. The release serves whatever happens here, so a failure is reported, not
/// returned (a push would be rejected while its release serves).
#[allow(clippy::too_many_arguments)]
async fn finish(engine: &Engine, scheduler: &dyn Scheduler, app: &str, config: &AppConfig, made: Made, started: Instant, urls: Vec<String>, out: &Output) {
    let Made { release, rollback_env, new_scale, first_run, .. } = made;
    let version = release.version;
    let updated = engine
        .update_app(app, |config| {
            if let Some(env) = rollback_env {
                config.env = env;
            }
            if let Some(scale) = new_scale {
                config.scale = scale;
            }
            config.stopped = false;
            Ok::<_, crate::store::StoreError>(())
        })
        .await;
    if let Err(e) = updated {
        tracing::error!(app, "v{version} serves but its config could not be updated: {e}");
        out.error(format!("v{version} serves, but {app}'s config could not be updated to match: {e}")).await;
    }
    out.step(format!("{app} v{version} is live (deployed in {})", secs(started.elapsed()))).await;
    if let Some(script) = release.postdeploy.clone().filter(|_| first_run) {
        out.step(format!("Running postdeploy: {script}")).await;
        let spec = process_spec(engine, app, config, &release, "postdeploy", 0, Some(release.one_off(shell(&script))));
        match attached(scheduler, &spec, out, release_limit(engine, "postdeploy")).await {
            Ok(0) => {}
            Ok(code) => out.error(format!("postdeploy exited with code {code}; v{version} is serving")).await,
            Err(e @ SchedError::Engine(crate::runtime::RuntimeError::TimedOut { .. })) => out.error(format!("{e}; v{version} is serving")).await,
            Err(e) => out.error(format!("postdeploy could not run: {e}; v{version} is serving")).await,
        }
    }
    if !urls.is_empty() {
        out.header("Application deployed:").await;
        for url in &urls {
            out.detail(url).await;
        }
    }
}

/// Adds `release` to the app's history (`active`: as the active one, the previous one
/// superseded). A failed release is also when history is compacted, and the image tags
/// no release needs any more are returned; after an activation that waits for the
/// retirement (`settle_history`): until then the activation can still be undone.
async fn record(engine: &Engine, app: &str, release: &Release, active: bool) -> Result<Vec<Unneeded>, Error> {
    let _lock = engine.store.lock_app(app).await;
    let mut releases = engine.store.load_releases(app)?;
    releases.releases.push(release.clone());
    let prune = if active {
        releases.activate(release.version);
        Vec::new()
    } else {
        settle(&mut releases, engine.store.load_app(app)?.keep_releases)
    };
    engine.store.save_releases(app, &releases)?;
    Ok(prune)
}

/// An image no release needs: the tag a release gave it, and its id.
pub(super) type Unneeded = (String, String);

/// Compacts what can no longer be rolled back to and returns the images no release needs.
/// Pure.
fn settle(releases: &mut crate::store::Releases, keep: u32) -> Vec<Unneeded> {
    let ids: BTreeMap<String, String> = releases.releases.iter().map(|r| (r.image_tag.clone(), r.image.clone())).collect();
    let mut prune = releases.images_to_prune(keep);
    prune.extend(releases.compact(keep));
    prune.into_iter().filter_map(|tag| Some((tag.clone(), ids.get(&tag)?.clone()))).collect()
}

/// History stays bounded once a release is settled (served, and landed if pushed): what can
/// no longer be rolled back to keeps no env. Returns the images no release needs.
async fn settle_history(engine: &Engine, app: &str) -> Result<Vec<Unneeded>, Error> {
    let _lock = engine.store.lock_app(app).await;
    let keep = engine.store.load_app(app)?.keep_releases;
    let mut releases = engine.store.load_releases(app)?;
    let prune = settle(&mut releases, keep);
    engine.store.save_releases(app, &releases)?;
    Ok(prune)
}

/// After a switch nginx refused: `version` never served, `previous` (if any) is active again.
async fn undo_activation(engine: &Engine, app: &str, version: u32, previous: Option<u32>) {
    let _lock = engine.store.lock_app(app).await;
    let undone = engine.store.load_releases(app).and_then(|mut releases| {
        for r in &mut releases.releases {
            if r.version == version {
                r.status = Status::Failed;
                r.ref_pending = false;
            } else if Some(r.version) == previous {
                r.status = Status::Active;
            }
        }
        engine.store.save_releases(app, &releases)
    });
    if let Err(e) = undone {
        tracing::error!(app, "cannot record that v{version} did not route: {e}");
    }
}

/// A new release that runs `from`'s image with the same processes.
fn successor(from: &Release, version: u32, cause: &Cause) -> Release {
    Release {
        version,
        cause: cause.what.clone(),
        deployed_by: cause.by.clone(),
        created_at: crate::unix_now(),
        status: Status::Failed,
        formation: BTreeMap::new(),
        ref_pending: false,
        compacted: false,
        ..from.clone()
    }
}

/// `sh -c SCRIPT`, as app.json scripts run.
fn shell(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// The release phase: the Procfile's `release` command, then app.json's predeploy, each
/// once in a one-off container of the new image. A failure stops the deploy.
async fn release_phase(engine: &Engine, scheduler: &dyn Scheduler, app: &str, config: &AppConfig, release: &Release, out: &Output) -> Result<(), Error> {
    let mut steps = Vec::new();
    if release.processes.contains_key(process::RELEASE_TYPE) {
        let command = release.command(process::RELEASE_TYPE).unwrap_or_default();
        steps.push(("release command", release.processes[process::RELEASE_TYPE].clone(), command));
    }
    if let Some(script) = &release.predeploy {
        steps.push(("predeploy", script.clone(), release.one_off(shell(script))));
    }
    for (what, shown, command) in steps {
        out.step(format!("Running the {what}: {shown}")).await;
        let started = Instant::now();
        // The command is the release's own (already wrapped by the launcher if needed).
        let spec = process_spec(engine, app, config, release, process::RELEASE_TYPE, 0, Some(command));
        let code = match attached(scheduler, &spec, out, release_limit(engine, what)).await {
            Ok(code) => code,
            Err(e @ SchedError::Engine(crate::runtime::RuntimeError::TimedOut { .. })) => {
                return Err(e.into());
            }
            Err(e) => return Err(format!("the {what} could not run: {e}").into()),
        };
        if code != 0 {
            return Err(Error::from(format!("the {what} failed with exit code {code}")));
        }
        out.step(format!("The {what} succeeded in {}", secs(started.elapsed()))).await;
    }
    Ok(())
}

/// A one-off container with no stdin, its output streamed to `out`, stopped after `limit`.
async fn attached(scheduler: &dyn Scheduler, spec: &ContainerSpec<'_>, out: &Output, limit: crate::runtime::TimeLimit) -> Result<i64, SchedError> {
    let (_, mut input) = Input::channel(1);
    let client = Client { out, input: &mut input, terminal: None };
    scheduler.run_once(spec, client, Some(limit)).await
}

/// What a container of `process` (index `index`) of `release` runs: the release's image
/// and env, the app's mounts and limits. `command` overrides the process's command.
pub fn process_spec<'a>(engine: &Engine, app: &'a str, config: &AppConfig, release: &'a Release, process: &'a str, index: u32, command: Option<Vec<String>>) -> ContainerSpec<'a> {
    let limits = config.limits_for(process);
    let reserved = config.reservations_for(process);
    let settings = engine.store.load_global().unwrap_or_default();
    // The global env is read when a container starts; the release's own wins.
    let global = engine.store.load_global_env().unwrap_or_else(|e| {
        tracing::error!("{e}: containers start without the global env");
        Default::default()
    });
    ContainerSpec {
        app,
        process,
        index,
        release: release.version,
        image: &release.image,
        env: with_rev(container_env(&global.under(&release.env), config.container_port()), config, &release.git_sha),
        binds: config.storage.iter().map(|m| bind(engine, app, m)).collect(),
        memory: limits.memory.as_deref().and_then(|m| crate::validate::memory(m).ok()),
        nano_cpus: limits.cpus.as_deref().and_then(|c| crate::validate::cpus(c).ok()),
        memory_reservation: reserved.memory.as_deref().and_then(|m| crate::validate::memory(m).ok()),
        cpu_reservation: reserved.cpus.as_deref().and_then(|c| crate::validate::cpus(c).ok()),
        tld: config.tld_with(&settings),
        restart: config.restart_policy_with(&settings),
        init: config.init_process_with(&settings),
        parallel_starts: config.parallel_schedule_count_with(&settings),
        log_max_size: config.log_max_size_with(&settings),
        app_label: config.app_label_alias_with(&settings),
        stop_timeout: config.stop_timeout_with(&settings),
        networks: config.networks_with(&settings),
        services: crate::services::reached_by(engine, app, config),
        placement: config.scheduler.constraints.clone(),
        // A command: a one-off container (run, release phase, cron); else the process's own.
        options: if command.is_some() { config.docker_options_for("run", None) } else { config.docker_options_for("deploy", Some(process)) },
        cmd: command.or_else(|| config.start_cmd_for(release, process)).or_else(|| release.command(process)),
    }
}

/// A mount as a Docker bind: names live under `<root>/storage/<app>/`.
fn bind(engine: &Engine, app: &str, mount: &crate::validate::Mount) -> String {
    let host = if mount.host_is_path() { mount.host.clone() } else { storage_dir(engine, app, &mount.host).display().to_string() };
    format!("{host}:{}{}", mount.container, if mount.read_only { ":ro" } else { "" })
}

/// Where a named storage directory of an app lives.
pub fn storage_dir(engine: &Engine, app: &str, name: &str) -> std::path::PathBuf {
    engine.root().join("storage").join(app).join(name)
}

/// The commit a pushed release runs (`sha`), as `GIT_REV` (or the app's `rev-env-var`),
/// unless `env` (the app's config) sets that variable itself; an image deployed without git
/// has none.
pub fn with_rev(mut env: Vec<String>, config: &AppConfig, sha: &str) -> Vec<String> {
    if let Some(var) = config.rev_env_var()
        && sha.len() == 40
        && sha.chars().all(|c| c.is_ascii_hexdigit())
        && !env.iter().any(|e| e.split_once('=').is_some_and(|(k, _)| k == var))
    {
        env.push(format!("{var}={sha}"));
    }
    env
}

/// A container's environment: the app's config, and PORT set to where the proxy connects.
pub fn container_env(config: &BTreeMap<String, String>, port: u16) -> Vec<String> {
    let mut env: Vec<String> = config.iter().filter(|(k, _)| *k != "PORT").map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("PORT={port}"));
    env
}

/// Removes images no release needs (once the Docker engine answers; a later prune catches
/// what could not go now).
async fn remove_images(engine: &Engine, app: &str, images: Vec<Unneeded>) {
    if images.is_empty() {
        return;
    }
    match engine.runtime().await {
        Ok(runtime) => {
            for (tag, id) in images {
                runtime.remove_release_image(&tag, &id).await;
            }
        }
        Err(e) => tracing::warn!(app, "cannot remove images no release needs: {e}"),
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

#[cfg(test)]
mod tests;
