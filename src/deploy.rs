//! The deploy pipeline: build → release → swap → route → retire.
//!
//! A failed step never touches what is serving: new containers are removed, the old
//! containers and the old nginx site stay, and the release is recorded as failed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::app_json::AppJson;
use crate::buildpack;
use crate::checks;
use crate::engine::Engine;
use crate::git;
use crate::output::{Input, Output};
use crate::process;
use crate::proxy;
use crate::reconcile;
use crate::runtime::{AppContainer, Client, ContainerSpec, Runtime};
use crate::store::{AppConfig, Builder, Release, Status};

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

/// How long old containers get between SIGTERM and SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a failed container's output shown to the user.
const LOG_LINES: usize = 20;
/// How long a new non-web container must keep running to count as started.
const SETTLE: Duration = Duration::from_secs(2);

/// The largest app.json berth reads.
pub const MAX_APP_JSON: usize = 256 * 1024;
/// The CPU weight builds get unless set (apps' containers run at 1024).
pub const DEFAULT_BUILD_CPU_SHARES: u32 = 256;
/// The largest build memory limit the engine's build API takes as berth calls it (bollard
/// carries it as a 32-bit number of bytes): 2047 MiB.
pub const MAX_BUILD_MEMORY: i64 = i32::MAX as i64;

/// What the app's builds may take: its settings, else the global ones, else the defaults
/// (cpu-shares 256; memory half of the machine's, at most 2047 MiB). A memory of `0` is no
/// limit. Pure.
pub fn build_limits(config: &AppConfig, global: &crate::store::GlobalConfig, machine_memory: Option<i64>) -> crate::runtime::BuildLimits {
    let cpu = config.build.cpu_shares.or(global.build.cpu_shares).unwrap_or(DEFAULT_BUILD_CPU_SHARES);
    let memory = match config.build.memory.as_deref().or(global.build.memory.as_deref()) {
        Some("0") => None,
        Some(size) => crate::validate::memory(size).ok(),
        None => machine_memory.map(|m| m / 2),
    };
    crate::runtime::BuildLimits { cpu_shares: Some(cpu.min(262_144) as i32), memory: memory.map(|m| m.min(MAX_BUILD_MEMORY) as i32) }
}

/// The machine's memory in bytes (`MemTotal` of /proc/meminfo).
fn machine_memory() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse::<i64>().ok().map(|kb| kb * 1024)
}

/// How a build's limits read in its output.
fn describe_limits(limits: &crate::runtime::BuildLimits) -> String {
    let memory = limits.memory.map_or("no memory limit".to_string(), |m| format!("memory {}m", m / (1 << 20)));
    format!("cpu-shares {}, {memory}", limits.cpu_shares.unwrap_or(1024))
}

/// How long a build may take (`build_timeout` in berth.toml, seconds; an hour by default).
fn build_limit(engine: &Engine) -> Duration {
    Duration::from_secs(engine.store.load_global().ok().and_then(|g| g.build_timeout).unwrap_or(3600).max(1))
}

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
pub async fn deploy_locked(engine: &Engine, app: &str, source: Source, cause: &Cause, out: &Output) -> Result<u32, String> {
    let next = engine.store.load_releases(app).map(|r| r.next_version()).unwrap_or(0);
    let env = cause.env();
    match deploy_release(engine, app, source, cause, out).await {
        Ok(version) => {
            let _ = crate::plugins::trigger(engine, "post-deploy", &[app.to_string(), version.to_string()], &env, out).await;
            Ok(version)
        }
        Err(why) => {
            let _ = crate::plugins::trigger(engine, "deploy-failed", &[app.to_string(), next.to_string(), why.clone()], &env, out).await;
            Err(why)
        }
    }
}

/// A deploy, without its plugins' `post-deploy`/`deploy-failed` (`deploy_locked` runs them).
async fn deploy_release(engine: &Engine, app: &str, source: Source, cause: &Cause, out: &Output) -> Result<u32, String> {
    let started = Instant::now();
    let store = &engine.store;
    let config = store.load_app(app).map_err(|e| e.to_string())?;
    if config.locked {
        return Err(format!("Deploys of {app} are locked; run apps:unlock {app} first"));
    }
    let runtime = engine.runtime().await.map_err(|e| e.to_string())?;
    runtime.ensure_network().await.map_err(|e| e.to_string())?;
    let releases = store.load_releases(app).map_err(|e| e.to_string())?;
    let version = releases.next_version();
    let mut rollback_env = None;
    let mut new_scale = None;
    let built = matches!(source, Source::Build { .. } | Source::Image { .. });
    let pushed = matches!(source, Source::Build { pushed: true, .. });

    let mut release = match source {
        Source::Build { context, git_sha, .. } => {
            let has_dockerfile = context.file("Dockerfile").is_some();
            let builder = config.builder.unwrap_or(if has_dockerfile { Builder::Dockerfile } else { Builder::Buildpacks });
            let app_json = context.file("app.json").map(|b| String::from_utf8_lossy(&b).into_owned());
            // What app.json gives is kept in every release (checks, scripts, cron): bounded.
            if app_json.as_ref().is_some_and(|text| text.len() > MAX_APP_JSON) {
                return Err(format!("app.json is over {} KiB: berth reads at most that", MAX_APP_JSON / 1024));
            }
            let AppJson { checks, cron, scripts } = app_json.as_deref().map(crate::app_json::parse).transpose()?.unwrap_or_default();
            // Checked here for both builders, so a bad Procfile fails before any build.
            let procfile = match context.file("Procfile") {
                Some(bytes) => process::parse_procfile(&String::from_utf8_lossy(&bytes))?,
                None => BTreeMap::new(),
            };
            // Plugins may refuse the build; then a build slot (one build at a time by
            // default), then the build, with limits.
            crate::plugins::trigger(engine, "pre-build", &[app.to_string(), git_sha.clone()], &cause.env(), out).await?;
            let _slot = engine.build_slot(out).await;
            let global = engine.store.load_global().map_err(|e| e.to_string())?;
            let limits = build_limits(&config, &global, machine_memory());
            let build_started = Instant::now();
            let version_tag = format!("v{version}");
            let tag = format!("berth/{app}:{version_tag}");
            let built = async {
                Ok::<_, String>(match builder {
                Builder::Dockerfile => {
                    if !has_dockerfile {
                        return Err(format!("No Dockerfile at the root of {} (builder:set {app} dockerfile)", short(&git_sha)));
                    }
                    let text = context.file("Dockerfile").map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                    if let Some(image) = crate::dockerfile::foreign_image(app, &crate::dockerfile::image_refs(&text)) {
                        return Err(format!(
                            "The Dockerfile builds from {}: an app may use only public images and its own (berth/{app})",
                            crate::validate::quoted(&image)
                        ));
                    }
                    out.step(format!("Building {app} from Dockerfile ({}; {})", short(&git_sha), describe_limits(&limits))).await;
                    let limit = build_limit(engine);
                    (runtime.build(context.path(), &tag, limit, limits, out).await.map_err(|e| e.to_string())?, procfile, false)
                }
                Builder::Buildpacks => {
                    let read = |path: &str| context.file(path).map(|b| String::from_utf8_lossy(&b).into_owned());
                    let mut defaults = BTreeMap::new();
                    if let Some(command) = buildpack::python_web(&config.buildpacks, &read, &context.paths())? {
                        out.step(format!("No Procfile: running web: {command} (add a Procfile to choose)")).await;
                        defaults.insert(process::WEB.to_string(), command);
                    }
                    out.step(format!("Building {app} with buildpacks ({}; {})", short(&git_sha), describe_limits(&limits))).await;
                    let build_env = engine.store.load_global_env().map_err(|e| e.to_string())?.under(&config.env);
                    let request = buildpack::BuildRequest {
                        app,
                        tag: &version_tag,
                        source: context.path(),
                        env: &build_env,
                        chosen: &config.buildpacks,
                        defaults: &defaults,
                        time_limit: build_limit(engine),
                        limits,
                        allow_private: engine.store.load_global().is_ok_and(|g| g.allow_private_buildpack_hosts),
                    };
                    let built = buildpack::build(&runtime, &engine.root(), request, out).await?;
                    (built.image, built.processes, true)
                }
                })
            }
            .await;
            // What the build printed past its output bound: its last lines, where a failure says why.
            out.child_output_done().await;
            let (image, processes, launcher) = built?;
            drop(_slot);
            out.step(format!("Build done in {}", secs(build_started.elapsed()))).await;
            crate::plugins::trigger(engine, "post-build", &[app.to_string(), image.clone()], &cause.env(), out).await?;
            crate::crashpoint("built");
            Release {
                version,
                image,
                image_tag: tag,
                git_sha,
                cause: cause.what.clone(),
                deployed_by: cause.by.clone(),
                created_at: crate::unix_now(),
                status: Status::Failed,
                env: config.env.clone(),
                checks,
                processes,
                launcher,
                predeploy: scripts.predeploy,
                postdeploy: scripts.postdeploy,
                cron,
                formation: BTreeMap::new(),
                ref_pending: false,
                compacted: false,
            }
        }
        Source::Image { image, shown } => {
            let workdir = runtime.image_workdir(&image).await.map_err(|e| format!("{shown}: {e}"))?;
            let at = |name: &str| format!("{}/{name}", workdir.trim_end_matches('/'));
            let files = runtime.image_files(&image, &[at("Procfile"), at("app.json")]).await.map_err(|e| format!("{shown}: {e}"))?;
            let text = |i: usize| files.get(i).cloned().flatten().map(|b| String::from_utf8_lossy(&b).into_owned());
            let procfile = text(0).as_deref().map(process::parse_procfile).transpose()?.unwrap_or_default();
            let app_json = text(1);
            let AppJson { checks, cron, scripts } = app_json.as_deref().map(crate::app_json::parse).transpose()?.unwrap_or_default();
            out.step(format!("Deploying {app} from the image {shown}, without a build")).await;
            let version_tag = format!("v{version}");
            let tag = format!("berth/{app}:{version_tag}");
            runtime.tag(&image, &format!("berth/{app}"), &version_tag).await.map_err(|e| format!("cannot tag {shown}: {e}"))?;
            let id = runtime.image_info(&tag).await.map(|(id, _, _)| id).ok_or_else(|| format!("{shown} vanished while it was tagged"))?;
            crate::crashpoint("built");
            Release {
                version,
                image: id,
                image_tag: tag,
                git_sha: String::new(),
                cause: format!("image {shown}"),
                deployed_by: cause.by.clone(),
                created_at: crate::unix_now(),
                status: Status::Failed,
                env: config.env.clone(),
                checks,
                processes: procfile,
                launcher: false,
                predeploy: scripts.predeploy,
                postdeploy: scripts.postdeploy,
                cron,
                formation: BTreeMap::new(),
                ref_pending: false,
                compacted: false,
            }
        }
        Source::Reuse { scale } => {
            let active = releases.active().ok_or_else(|| format!("{app} has not been deployed yet: git push it first"))?;
            new_scale = scale;
            Release { env: config.env.clone(), ..successor(active, version, cause) }
        }
        Source::Rollback { version: target } => {
            let old = releases.releases.iter().find(|r| r.version == target).ok_or_else(|| format!("{app} has no release v{target} (see: releases {app})"))?;
            if old.status == Status::Failed {
                return Err(format!("v{target} of {app} never served (it failed): roll back to a release that did"));
            }
            if old.compacted {
                return Err(format!(
                    "v{target} of {app} is history only: its image and env are no longer kept (releases:set {app} keep N keeps more); push commit {} again instead",
                    short(&old.git_sha)
                ));
            }
            if runtime.image_info(&old.image).await.is_none() {
                return Err(format!("The image of v{target} is no longer kept: push that commit again instead"));
            }
            rollback_env = Some(old.env.clone());
            out.step(format!("Rolling back {app} to v{target} ({}), without a build", short(&old.git_sha))).await;
            successor(old, version, cause)
        }
    };
    let scale = new_scale.clone().unwrap_or_else(|| config.scale.clone());
    let types = release.types();
    if types.is_empty() {
        if built {
            runtime.remove_image(&release.image_tag).await;
        }
        return Err(format!("{} declares no process to run: add a Procfile with `web: COMMAND`", short(&release.git_sha)));
    }
    for (name, count) in &scale {
        if *count > 0 && !types.contains(name) {
            out.step(format!("Note: {name}={count} is set but v{version} has no {name} process type (it has: {})", types.join(", "))).await;
        }
    }
    release.formation = process::formation(&scale, &types).into_iter().collect();

    out.step(format!("Releasing v{version}")).await;
    let previous = releases.active().map(|r| r.version);
    let keeps_serving = previous.map(|v| format!("v{v} keeps serving")).unwrap_or_else(|| "nothing was serving".into());
    let swapped = async {
        // Plugins may refuse the deploy before any container of it starts.
        crate::plugins::trigger(engine, "pre-deploy", &[app.to_string(), version.to_string(), release.image.clone()], &cause.env(), out)
            .await
            .map_err(|e| format!("{e}; {keeps_serving}"))?;
        if built {
            release_phase(engine, &runtime, app, &config, &release, out).await.map_err(|e| format!("{e}; {keeps_serving}"))?;
        }
        swap(engine, &runtime, app, &config, &release, &keeps_serving, out).await
    }
    .await;
    let swapped = match swapped {
        Ok(swapped) => swapped,
        Err(e) => {
            // Recorded as failed; its image goes at once (nothing to retire).
            let prune = record(engine, app, &release, false).await?;
            for tag in prune {
                runtime.remove_image(&tag).await;
            }
            return Err(e);
        }
    };
    // The release is recorded as active before the site routes to it, so the site on disk
    // never serves a release the state does not know (a crash in between leaves the new
    // release active with the old site, which the restart routes again).
    release.status = Status::Active;
    release.ref_pending = pushed;
    let postdeploy = release.postdeploy.clone().filter(|_| built);
    let urls = {
        let _routing = engine.route_lock(app).await;
        // A container that passed its checks can die before the switch; its death was not
        // this release's to heal yet (it was not active): never route to it.
        let mut recorded = false;
        let switched = match still_running(&runtime, &swapped).await {
            Err(why) => Err(why),
            Ok(()) => {
                recorded = true;
                record(engine, app, &release, true).await?;
                crate::crashpoint("release-saved");
                apply_route(engine, swapped.plan, out).await.map_err(|e| {
                    // nginx refused the switch: the old site kept serving; so does the state.
                    format!("cannot route {app}: {e}")
                })
            }
        };
        match switched {
            Ok(urls) => {
                crate::crashpoint("routed");
                swapped.retirement.spawn(engine.shared(), app.to_string(), runtime.clone());
                urls
            }
            Err(why) => {
                if recorded {
                    undo_activation(engine, app, version, previous).await;
                } else {
                    release.status = Status::Failed;
                    release.ref_pending = false;
                    record(engine, app, &release, false).await?;
                }
                for c in &swapped.started {
                    let _ = runtime.remove(&c.id).await;
                }
                if built {
                    runtime.remove_image(&release.image_tag).await;
                }
                return Err(format!("{why}; {keeps_serving}"));
            }
        }
    };
    // What now serves is this release: the app's config says so too. The release serves
    // whatever happens here, so a failure is reported, not returned (a push would be
    // rejected while its release serves).
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
    if let Some(script) = postdeploy {
        out.step(format!("Running postdeploy: {script}")).await;
        let spec = process_spec(engine, app, &config, &release, "postdeploy", 0, Some(release.one_off(shell(&script))));
        match attached(&runtime, &spec, out, release_limit(engine, "postdeploy")).await {
            Ok(0) => {}
            Ok(code) => out.error(format!("postdeploy exited with code {code}; v{version} is serving")).await,
            Err(e @ crate::runtime::RuntimeError::TimedOut { .. }) => out.error(format!("{e}; v{version} is serving")).await,
            Err(e) => out.error(format!("postdeploy could not run: {e}; v{version} is serving")).await,
        }
    }
    if !urls.is_empty() {
        out.header("Application deployed:").await;
        for url in &urls {
            out.detail(url).await;
        }
    }
    Ok(version)
}

/// Adds `release` to the app's history (`active`: as the active one, the previous one
/// superseded). A failed release is also when history is compacted, and the image tags
/// no release needs any more are returned; after an activation that waits for the
/// retirement (`settle_history`): until then the activation can still be undone.
async fn record(engine: &Engine, app: &str, release: &Release, active: bool) -> Result<Vec<String>, String> {
    let _lock = engine.store.lock_app(app).await;
    let mut releases = engine.store.load_releases(app).map_err(|e| e.to_string())?;
    releases.releases.push(release.clone());
    let prune = if active {
        releases.activate(release.version);
        Vec::new()
    } else {
        settle(&mut releases, engine.store.load_app(app).map_err(|e| e.to_string())?.keep_releases)
    };
    engine.store.save_releases(app, &releases).map_err(|e| e.to_string())?;
    Ok(prune)
}

/// Compacts what can no longer be rolled back to and returns the image tags no release
/// needs. Pure.
fn settle(releases: &mut crate::store::Releases, keep: u32) -> Vec<String> {
    let mut prune = releases.images_to_prune(keep);
    prune.extend(releases.compact(keep));
    prune
}

/// History stays bounded once a release is settled (served, and landed if pushed): what can
/// no longer be rolled back to keeps no env. Returns the image tags no release needs.
async fn settle_history(engine: &Engine, app: &str) -> Result<Vec<String>, String> {
    let _lock = engine.store.lock_app(app).await;
    let keep = engine.store.load_app(app).map_err(|e| e.to_string())?.keep_releases;
    let mut releases = engine.store.load_releases(app).map_err(|e| e.to_string())?;
    let prune = settle(&mut releases, keep);
    engine.store.save_releases(app, &releases).map_err(|e| e.to_string())?;
    Ok(prune)
}

/// Every container the swap started still runs, each web one at the address the site plan
/// routes to (asked by id, under the route lock).
async fn still_running(runtime: &Runtime, swapped: &Swapped) -> Result<(), String> {
    for c in &swapped.started {
        let live = runtime.live(&c.id).await;
        let running = live.as_ref().is_some_and(|l| l.running);
        let moved = swapped.web.iter().any(|(web, ip)| *web == c.id && live.as_ref().and_then(|l| l.ip.as_deref()) != Some(ip.as_str()));
        if !running || moved {
            return Err(format!("{}.{} stopped after it became ready", c.process, c.index));
        }
    }
    Ok(())
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
async fn release_phase(engine: &Engine, runtime: &Runtime, app: &str, config: &AppConfig, release: &Release, out: &Output) -> Result<(), String> {
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
        let code = match attached(runtime, &spec, out, release_limit(engine, what)).await {
            Ok(code) => code,
            Err(e @ crate::runtime::RuntimeError::TimedOut { .. }) => return Err(e.to_string()),
            Err(e) => return Err(format!("the {what} could not run: {e}")),
        };
        if code != 0 {
            return Err(format!("the {what} failed with exit code {code}"));
        }
        out.step(format!("The {what} succeeded in {}", secs(started.elapsed()))).await;
    }
    Ok(())
}

/// A one-off container with no stdin, its output streamed to `out`, stopped after `limit`.
async fn attached(runtime: &Runtime, spec: &ContainerSpec<'_>, out: &Output, limit: crate::runtime::TimeLimit) -> Result<i64, crate::runtime::RuntimeError> {
    let (_, mut input) = Input::channel(1);
    let client = Client { out, input: &mut input, terminal: None };
    runtime.run_once_within(spec, client, Some(limit)).await
}

/// What a container of `process` (index `index`) of `release` runs: the release's image
/// and env, the app's mounts and limits. `command` overrides the process's command.
pub fn process_spec<'a>(
    engine: &Engine,
    app: &'a str,
    config: &AppConfig,
    release: &'a Release,
    process: &'a str,
    index: u32,
    command: Option<Vec<String>>,
) -> ContainerSpec<'a> {
    let limits = config.limits_for(process);
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
        env: container_env(&global.under(&release.env), config.container_port()),
        cmd: command.or_else(|| release.command(process)),
        binds: config.storage.iter().map(|m| bind(engine, app, m)).collect(),
        memory: limits.memory.as_deref().and_then(|m| crate::validate::memory(m).ok()),
        nano_cpus: limits.cpus.as_deref().and_then(|c| crate::validate::cpus(c).ok()),
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

/// A container started for the new release, and how it fared.
struct Started {
    process: String,
    index: u32,
    id: String,
}

/// What a swap leaves to do once the release is recorded: switch the site, retire.
struct Swapped {
    plan: RoutePlan,
    retirement: Retirement,
    /// The new containers (removed if the site cannot be switched).
    started: Vec<Started>,
    /// The new web containers and the addresses the plan routes to.
    web: Vec<(String, String)>,
}

/// Starts every container of the new release's formation, waits until all are ready (web:
/// checks; others: still running after a moment) and plans the site that routes to the new
/// web containers (checked by nginx, not yet in place). On any failure the new containers
/// are removed.
async fn swap(
    engine: &Engine,
    runtime: &Runtime,
    app: &str,
    config: &AppConfig,
    release: &Release,
    keeps_serving: &str,
    out: &Output,
) -> Result<Swapped, String> {
    // Listed before anything new starts: exactly what retires once traffic has moved.
    let retiring = runtime.containers(app).await.map_err(|e| e.to_string())?;
    let draining = engine.nginx.peers(app);
    let mut started = Vec::new();
    let planned = async {
        let web = start_all(engine, runtime, app, config, release, out, &mut started).await?;
        crate::crashpoint("checks");
        let ips: Vec<String> = web.iter().map(|(_, ip)| ip.clone()).collect();
        let plan = plan_route(engine, app, config, release.version, &ips, out).await.map_err(|e| format!("cannot route {app}: {e}"))?;
        Ok::<_, String>((plan, web))
    }
    .await;
    let (plan, web) = match planned {
        Ok(planned) => planned,
        Err(why) => {
            for c in &started {
                let _ = runtime.remove(&c.id).await;
            }
            return Err(format!("{why}; {keeps_serving}"));
        }
    };
    let wait = if config.checks.disabled { 0 } else { config.checks.wait_to_retire };
    if !retiring.is_empty() {
        out.step(format!("Retiring {} old container(s) once no request is in flight to them (at most {wait}s)", retiring.len())).await;
    }
    Ok(Swapped { plan, retirement: Retirement { containers: retiring, drain: draining, wait: Duration::from_secs(wait) }, started, web })
}

/// Starts the formation (recording each container in `started` at once, so the caller can
/// remove them all on failure) and returns the web containers with their addresses.
async fn start_all(
    engine: &Engine,
    runtime: &Runtime,
    app: &str,
    config: &AppConfig,
    release: &Release,
    out: &Output,
    started: &mut Vec<Started>,
) -> Result<Vec<(String, String)>, String> {
    let clock = Instant::now();
    let specs: Vec<ContainerSpec> = release
        .formation
        .iter()
        .flat_map(|(process, count)| (1..=*count).map(move |index| (process, index)))
        .map(|(process, index)| process_spec(engine, app, config, release, process, index, None))
        .collect();
    // All at once: the engine creates and starts containers in parallel.
    let ids = futures_util::future::join_all(specs.iter().map(|spec| runtime.start(spec))).await;
    let mut failure = None;
    for (spec, id) in specs.iter().zip(ids) {
        match id {
            Ok(id) => started.push(Started { process: spec.process.to_string(), index: spec.index, id }),
            Err(e) => {
                failure.get_or_insert(format!("cannot start {}.{}: {e}", spec.process, spec.index));
            }
        }
    }
    if let Some(why) = failure {
        return Err(why);
    }
    if started.is_empty() {
        out.step(format!("Nothing to start: every process type of {app} is scaled to 0")).await;
        return Ok(Vec::new());
    }
    let checks = started.iter().map(|c| async move { (ready(runtime, config, release, c).await, clock.elapsed()) });
    let outcomes = futures_util::future::join_all(checks).await;
    let mut failure = None;
    let mut ips = Vec::new();
    for (c, outcome) in started.iter().zip(outcomes) {
        let label = format!("{}.{}", c.process, c.index);
        match outcome {
            (Ok((ip, checked)), took) => {
                let how = if checked { format!("checks passed in {}", secs(took)) } else { format!("running (checks {})", what_checked(config, &c.process)) };
                out.step(format!("Starting {label} … {how}")).await;
                if c.process == process::WEB {
                    ips.push((c.id.clone(), ip));
                }
            }
            (Err(why), _) => {
                out.step(format!("Starting {label} … failed")).await;
                let lines = runtime.tail(&c.id, LOG_LINES).await;
                if !lines.is_empty() {
                    out.step(format!("Last output of {label}:")).await;
                    for line in lines {
                        out.detail(line).await;
                    }
                }
                failure.get_or_insert(format!("{label} of v{} did not become ready: {why}", release.version));
            }
        }
    }
    if let Some(why) = failure {
        return Err(why);
    }
    Ok(ips)
}

fn what_checked(config: &AppConfig, process: &str) -> &'static str {
    if process == process::WEB { checks::describe(config) } else { "are for web only" }
}

/// Waits until one new container is ready. Web: its readiness checks (unless disabled or
/// skipped); others: still running after SETTLE. Returns its address and whether checks ran.
async fn ready(runtime: &Runtime, config: &AppConfig, release: &Release, c: &Started) -> Result<(String, bool), String> {
    // A container that crashes at once has no address: say why it stopped instead.
    runtime.alive(&c.id).await?;
    let ip = match runtime.ip(&c.id).await {
        Ok(ip) => ip,
        Err(e) => return Err(runtime.alive(&c.id).await.err().unwrap_or_else(|| e.to_string())),
    };
    if c.process != process::WEB {
        if !config.checks.disabled {
            tokio::time::sleep(SETTLE).await;
        }
        runtime.alive(&c.id).await?;
        return Ok((ip, false));
    }
    if config.checks.disabled || config.checks.skipped {
        return Ok((ip, false));
    }
    let specs = checks::effective(&release.checks);
    checks::wait_ready(&ip, config.container_port(), &specs, &config.checks, || runtime.alive(&c.id)).await?;
    Ok((ip, true))
}

/// Old containers to stop once traffic has moved: when no request is in flight to the
/// addresses that were routed (`drain`), at most `wait` after the switch.
struct Retirement {
    containers: Vec<AppContainer>,
    drain: Vec<String>,
    wait: Duration,
}

/// How long retirement waits at least after the switch, and how often it asks nginx.
const DRAIN_MIN: Duration = Duration::from_millis(500);
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// How long a retirement waits for a push's branch to land before it goes ahead.
const LANDING_WAIT: Duration = Duration::from_secs(600);

impl Retirement {
    /// In the background: stop the old containers, then compact history and remove images
    /// no release keeps (the engine refuses to remove an image a container still uses,
    /// hence the order). Decided then, from the state as it is: a push's release is first
    /// let land (or be undone), and a container of whatever release is active then stays.
    fn spawn(self, engine: std::sync::Arc<Engine>, app: String, runtime: Runtime) {
        tokio::spawn(async move {
            self.drained(&engine).await;
            let deadline = tokio::time::Instant::now() + LANDING_WAIT;
            let active = loop {
                let releases = engine.store.load_releases(&app).ok();
                let active = releases.as_ref().and_then(|r| r.active());
                if active.is_none_or(|r| !r.ref_pending) || tokio::time::Instant::now() > deadline {
                    break active.map(|r| r.version);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            crate::crashpoint("retire");
            for container in self.containers.iter().filter(|c| Some(c.release) != active) {
                if let Err(e) = runtime.retire(&container.id, STOP_TIMEOUT).await {
                    tracing::warn!("cannot retire {}: {e}", container.name);
                }
            }
            match settle_history(&engine, &app).await {
                Ok(prune) => {
                    for tag in prune {
                        runtime.remove_image(&tag).await;
                    }
                }
                Err(e) => tracing::warn!(app, "cannot compact the release history: {e}"),
            }
        });
    }

    /// Returns once nothing is in flight to the addresses that were routed (nginx picks
    /// them no more since the switch; asked twice in a row, so a request being handed to
    /// one at that instant is seen), or after `wait`, which stays the upper bound: a
    /// WebSocket to an old container lives until then, and is closed when it stops.
    async fn drained(&self, engine: &Engine) {
        let deadline = tokio::time::Instant::now() + self.wait;
        tokio::time::sleep(DRAIN_MIN.min(self.wait)).await;
        let mut idle = 0;
        while tokio::time::Instant::now() < deadline {
            match engine.nginx.inflight(&self.drain).await {
                Ok(0) => {
                    idle += 1;
                    if idle == 2 {
                        return;
                    }
                }
                Ok(_) => idle = 0,
                Err(e) => {
                    tracing::warn!("cannot ask nginx for requests in flight ({e}): old containers retire after the full wait");
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

/// An app's routing, planned: its next site (checked by nginx on its own) or none, what to
/// say once it serves, and the URLs it serves.
pub struct RoutePlan {
    app: String,
    /// None: the app gets no site.
    site: Option<proxy::Candidate>,
    /// The release and web container addresses its peers become.
    release: u32,
    peers: Vec<String>,
    note: String,
    urls: Vec<String>,
}

/// Plans the app's nginx site and its peers (the web containers at `ips`), or no site when
/// there is nothing to serve: no domains, or no mapping that can be served. An app whose
/// web containers are all gone (crashed, scaled to 0) keeps its site with no peers (502),
/// so nginx does not reload when they go and come back. The app's certificate, if any, is
/// served on its https mappings.
async fn plan_route(engine: &Engine, app: &str, config: &AppConfig, version: u32, ips: &[String], out: &Output) -> Result<RoutePlan, String> {
    let ports = config.effective_ports();
    let routing = proxy::Routing { app, domains: &config.domains, ports: &ports, listen: engine.nginx.listen, tls: site_tls(engine, app, config, out).await };
    let Some(site) = proxy::plan_site(&routing, &engine.nginx.acme_root()) else {
        let note = format!("Nothing is routed to {app}: no domains (domains:add {app} DOMAIN)");
        return Ok(RoutePlan { app: app.to_string(), site: None, release: version, peers: Vec::new(), note, urls: Vec::new() });
    };
    let text = engine.nginx.render_site(&site).map_err(|e| e.to_string())?;
    let candidate = engine.nginx.check_site(app, &text).await.map_err(|e| e.to_string())?;
    if ips.is_empty() {
        let note = format!("Nothing is routed to {app}: no web containers run (ps:scale {app} web=1)");
        return Ok(RoutePlan { app: app.to_string(), site: Some(candidate), release: version, peers: Vec::new(), note, urls: Vec::new() });
    }
    let n = ips.len();
    let secure: Vec<&str> = site.servers.iter().filter(|s| s.certificate.is_some()).map(|s| s.server_names.as_str()).collect();
    let https = if secure.is_empty() { String::new() } else { format!(", https for {}", secure[0]) };
    let note = format!("Routing {} → v{version} ({n} web container{}{https})", config.domains.join(", "), if n == 1 { "" } else { "s" });
    Ok(RoutePlan { app: app.to_string(), site: Some(candidate), release: version, peers: ips.to_vec(), note, urls: proxy::urls(&routing) })
}

/// Puts a planned routing in place (call with the app's route lock held): the site first
/// (a reload only if its server blocks changed; if nginx refuses it, the peers stay as they
/// were and keep serving), then the peers (no reload). Returns the URLs the app is served at
/// (none when nothing is routed).
async fn apply_route(engine: &Engine, plan: RoutePlan, out: &Output) -> Result<Vec<String>, String> {
    match plan.site {
        Some(candidate) => {
            engine.nginx.switch_site(candidate).await.map_err(|e| e.to_string())?;
            engine.nginx.set_peers(&plan.app, plan.release, &plan.peers).await.map_err(|e| e.to_string())?;
        }
        None => engine.nginx.remove_site(&plan.app).await.map_err(|e| e.to_string())?,
    }
    out.step(plan.note).await;
    Ok(plan.urls)
}

/// Routes the app to the web containers at `ips` now (call with its route lock held).
pub async fn route(engine: &Engine, app: &str, config: &AppConfig, version: u32, ips: &[String], out: &Output) -> Result<Vec<String>, String> {
    let plan = plan_route(engine, app, config, version, ips, out).await?;
    apply_route(engine, plan, out).await
}

/// The app's certificate for its site. A certificate that cannot be read is reported and
/// left out (the app keeps being served over plain http) rather than failing the route.
async fn site_tls(engine: &Engine, app: &str, config: &AppConfig, out: &Output) -> Option<proxy::SiteTls> {
    match engine.store.current_certificate(app) {
        Ok(Some((state, info))) => {
            Some(proxy::SiteTls { bundle: engine.store.tls_bundle_path(app, &state), names: info.names, hsts: config.nginx.hsts_header() })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(app, "{e}");
            out.error(format!("{e}: serving {app} without https")).await;
            None
        }
    }
}

/// The addresses of the containers that run now among `ids`, each asked of the engine by id
/// (identity, not a listed address that may be stale).
async fn live_ips(runtime: &Runtime, ids: &[String]) -> Vec<String> {
    let mut ips = Vec::new();
    for id in ids {
        if let Some(ip) = runtime.live(id).await.and_then(|live| live.ip) {
            ips.push(ip);
        }
    }
    ips
}

/// The app's config and active release when it is meant to serve (deployed, not stopped).
pub fn serving(engine: &Engine, app: &str) -> Result<Option<(AppConfig, Release)>, String> {
    let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
    let Some(active) = engine.store.load_releases(app).map_err(|e| e.to_string())?.active().cloned() else {
        return Ok(None);
    };
    Ok((!config.stopped).then_some((config, active)))
}

/// Routes the app again from its current state (domains, ports, certificate, nginx
/// properties) to the web containers of the active release that run now, without a new
/// release. Nothing to do for an app that was never deployed or is stopped. Call with the
/// app's deploy lock held.
pub async fn reroute(engine: &Engine, app: &str, out: &Output) -> Result<(), String> {
    let _routing = engine.route_lock(app).await;
    let Some((config, active)) = serving(engine, app)? else {
        return Ok(());
    };
    let runtime = engine.runtime().await.map_err(|e| e.to_string())?;
    let containers = runtime.containers(app).await.map_err(|e| e.to_string())?;
    let (_, ips) = heal_plan(&runtime, &containers, &active, &config, &Default::default()).await;
    route(engine, app, &config, active.version, &ips, out).await.map(|_| ())
}

/// A heal's plan for the app whose `containers` these are, running `active` (its
/// formation, or the app's scale), and the addresses of the web containers it routes.
/// `warming`: containers berth is starting again right now.
pub async fn heal_plan(
    runtime: &Runtime,
    containers: &[AppContainer],
    active: &Release,
    config: &AppConfig,
    warming: &std::collections::HashSet<String>,
) -> (reconcile::Plan, Vec<String>) {
    let (seen, ips) = observe(runtime, containers, active.version, warming).await;
    let plan = reconcile::plan(reconcile::Mode::Heal, active.version, &active.formation_or(&config.scale), &seen);
    let routed = plan.route.iter().filter_map(|id| ips.get(id).cloned()).collect();
    (plan, routed)
}

/// The containers of `release` among `containers` as a reconcile sees them, each asked by
/// id (the engine's list can still say "running" just after a death), with the addresses
/// of those that run.
async fn observe(
    runtime: &Runtime,
    containers: &[AppContainer],
    release: u32,
    warming: &std::collections::HashSet<String>,
) -> (Vec<reconcile::Seen>, std::collections::HashMap<String, String>) {
    let mut seen = Vec::new();
    let mut ips = std::collections::HashMap::new();
    for c in containers.iter().filter(|c| c.release == release) {
        let state = match runtime.live(&c.id).await {
            None => reconcile::State::Gone,
            Some(live) if live.running => {
                ips.extend(live.ip.map(|ip| (c.id.clone(), ip)));
                reconcile::State::Running
            }
            Some(live) => reconcile::State::Exited { code: live.exit_code, by_berth: runtime.stopped_by_berth(&c.id) },
        };
        seen.push(reconcile::Seen { id: c.id.clone(), process: c.process.clone(), index: c.index, release: c.release, state, warming: warming.contains(&c.id) });
    }
    (seen, ips)
}

/// Makes what runs match what the app's state says (after a daemon or engine restart, and
/// for `ps:start`): the active release's formation runs, its web containers are routed,
/// and containers of other releases retire. A stopped app has nothing running. Call with
/// the app's deploy lock held.
pub async fn restore(engine: &Engine, app: &str) -> Result<(), String> {
    let releases = engine.store.load_releases(app).map_err(|e| e.to_string())?;
    let Some(active) = releases.active().cloned() else {
        if releases.releases.is_empty() {
            return Ok(());
        }
        // Nothing serves (e.g. a first push that never landed): nothing runs or is routed.
        let runtime = engine.runtime().await.map_err(|e| e.to_string())?;
        {
            let _routing = engine.route_lock(app).await;
            engine.nginx.remove_site(app).await.map_err(|e| e.to_string())?;
        }
        for stale in runtime.containers(app).await.map_err(|e| e.to_string())? {
            let _ = runtime.retire(&stale.id, STOP_TIMEOUT).await;
        }
        return Ok(());
    };
    let runtime = engine.runtime().await.map_err(|e| e.to_string())?;
    runtime.ensure_network().await.map_err(|e| e.to_string())?;
    let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
    if config.stopped {
        return stop(engine, app).await.map(|_| ());
    }
    let routing = engine.route_lock(app).await;
    let containers = runtime.containers(app).await.map_err(|e| e.to_string())?;
    let seen: Vec<reconcile::Seen> = containers
        .iter()
        .map(|c| reconcile::Seen {
            id: c.id.clone(),
            process: c.process.clone(),
            index: c.index,
            release: c.release,
            state: if c.running { reconcile::State::Running } else { reconcile::State::Exited { code: None, by_berth: false } },
            warming: false,
        })
        .collect();
    let plan = reconcile::plan(reconcile::Mode::Restore, active.version, &active.formation_or(&config.scale), &seen);
    for id in &plan.keep {
        // Containers of older berth versions: restarts are berth's now.
        let _ = runtime.no_engine_restarts(id).await;
    }
    let mut web = plan.route.clone();
    for slot in &plan.start {
        let spec = process_spec(engine, app, &config, &active, &slot.process, slot.index, None);
        let id = runtime.start(&spec).await.map_err(|e| format!("cannot start {}.{}: {e}", slot.process, slot.index))?;
        tracing::info!(app, release = active.version, process = slot.process, index = slot.index, "started");
        if slot.process == process::WEB {
            web.push(id);
        }
    }
    let ips = live_ips(&runtime, &web).await;
    route(engine, app, &config, active.version, &ips, &Output::discard()).await?;
    drop(routing);
    for stale in &plan.retire {
        let _ = runtime.retire(stale, STOP_TIMEOUT).await;
    }
    Ok(())
}

/// What git says of a push's release that served before git moved the branch (a crash or a
/// failed ref update in between). The branch is the truth: if it points at the release's
/// commit, the mark goes; if not, the push never landed: the release is recorded as failed
/// and the one that served before is active again (`restore` then runs it). Returns
/// whether the active release changed. Call with the app's deploy lock held.
pub async fn settle_ref(engine: &Engine, app: &str) -> Result<bool, String> {
    let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
    let _lock = engine.store.lock_app(app).await;
    let mut releases = engine.store.load_releases(app).map_err(|e| e.to_string())?;
    let Some(active) = releases.active().filter(|r| r.ref_pending).cloned() else {
        return Ok(false);
    };
    let repo = engine.store.repo_dir(app);
    let branches = config.deploy_branches();
    // git may be moving the branch this very moment (its lock file is there): let it finish.
    for _ in 0..100 {
        if !branches.iter().any(|b| repo.join("refs/heads").join(format!("{b}.lock")).exists()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let landed = branches.iter().any(|b| git::branch_head(&repo, b).ok().flatten().is_some_and(|oid| oid.to_string() == active.git_sha));
    let previous = releases.releases.iter().filter(|r| r.status == Status::Superseded && r.version < active.version).map(|r| r.version).max();
    for r in &mut releases.releases {
        if r.version == active.version {
            r.ref_pending = false;
            if !landed {
                r.status = Status::Failed;
                r.cause = format!("{} (not landed: the push did not complete)", r.cause);
            }
        } else if !landed && Some(r.version) == previous {
            r.status = Status::Active;
        }
    }
    engine.store.save_releases(app, &releases).map_err(|e| e.to_string())?;
    if !landed {
        tracing::warn!(app, "v{} served but its push never landed: v{} is active again", active.version, previous.map_or("none".into(), |v| v.to_string()));
    }
    Ok(!landed)
}

/// The branch now points at `version`'s commit: its push landed.
pub async fn ref_landed(engine: &Engine, app: &str, version: u32) {
    let _lock = engine.store.lock_app(app).await;
    let saved = engine.store.load_releases(app).and_then(|mut releases| {
        let Some(r) = releases.releases.iter_mut().find(|r| r.version == version && r.ref_pending) else {
            return Ok(());
        };
        r.ref_pending = false;
        engine.store.save_releases(app, &releases)
    });
    if let Err(e) = saved {
        tracing::error!(app, "cannot record that v{version} landed: {e}");
    }
}

/// Removes images of the app's that no release needs (failed or aborted builds, releases
/// beyond `keep`, pruning a crash interrupted). An image a container still uses stays.
/// Call with the app's deploy lock held.
pub async fn prune_images(engine: &Engine, app: &str) -> Result<usize, String> {
    let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
    let releases = engine.store.load_releases(app).map_err(|e| e.to_string())?;
    let runtime = engine.runtime().await.map_err(|e| e.to_string())?;
    let pruned = releases.images_to_prune(config.keep_releases);
    let kept: Vec<&str> = releases.releases.iter().filter(|r| !pruned.contains(&r.image_tag)).map(|r| r.image.as_str()).collect();
    let mut removed = 0;
    for image in runtime.app_images(app).await.map_err(|e| e.to_string())? {
        if kept.contains(&image.id.as_str()) {
            // A kept image may also carry tags of releases that no longer need them.
            for tag in image.tags.iter().filter(|t| pruned.contains(t)) {
                runtime.remove_image(tag).await;
            }
            continue;
        }
        if remove_app_image(&runtime, app, &image).await {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes an image of the app's: berth's tags of it (`berth/APP:…`), then the image itself
/// unless it carries other names: an image deployed with `git:from-image` keeps the name
/// its owner gave it. True if the image is gone.
async fn remove_app_image(runtime: &Runtime, app: &str, image: &crate::runtime::AppImage) -> bool {
    let ours = format!("berth/{app}:");
    let named: Vec<&String> = image.tags.iter().filter(|t| t.as_str() != "<none>:<none>").collect();
    for tag in named.iter().filter(|t| t.starts_with(&ours)) {
        runtime.remove_image_checked(tag).await;
    }
    if named.iter().any(|t| !t.starts_with(&ours)) {
        return false;
    }
    runtime.remove_image_checked(&image.id).await
}

/// Stops an app's containers, keeping them and its state (`ps:stop`). Its site goes first,
/// so requests get nginx's answer for an unknown host at once rather than a connection
/// to an address that no longer answers.
pub async fn stop(engine: &Engine, app: &str) -> Result<usize, String> {
    {
        let _routing = engine.route_lock(app).await;
        engine.nginx.remove_site(app).await.map_err(|e| e.to_string())?;
    }
    let runtime = engine.runtime().await.map_err(|e| e.to_string())?;
    let running: Vec<_> = runtime.containers(app).await.map_err(|e| e.to_string())?.into_iter().filter(|c| c.running).collect();
    for c in &running {
        runtime.stop(&c.id, STOP_TIMEOUT).await.map_err(|e| e.to_string())?;
    }
    Ok(running.len())
}

/// Stops and removes everything an app runs (one-off containers too), its images, and its
/// site.
pub async fn teardown(engine: &Engine, app: &str) -> Result<(), String> {
    // Docker first: when it cannot be reached, nothing is removed (containers would be
    // left running with no app to own them).
    let ever_ran = !engine.store.load_releases(app).map_err(|e| e.to_string())?.releases.is_empty();
    match engine.runtime().await {
        Ok(runtime) => {
            let containers = match runtime.containers(app).await {
                Ok(containers) => containers,
                Err(e) if ever_ran => return Err(format!("cannot list {app}'s containers: {e}; nothing was removed")),
                Err(_) => Vec::new(),
            };
            for container in containers {
                runtime.remove(&container.id).await.map_err(|e| e.to_string())?;
            }
            for id in runtime.one_offs(Some(app)).await.unwrap_or_default() {
                runtime.remove(&id).await.map_err(|e| e.to_string())?;
            }
            for release in engine.store.load_releases(app).map_err(|e| e.to_string())?.releases {
                runtime.remove_image(&release.image_tag).await;
            }
            for image in runtime.app_images(app).await.unwrap_or_default() {
                remove_app_image(&runtime, app, &image).await;
            }
        }
        Err(e) if ever_ran => return Err(format!("{e}: {app}'s containers cannot be removed, so nothing was; run this again once Docker answers")),
        Err(_) => {}
    }
    let _routing = engine.route_lock(app).await;
    engine.nginx.remove_site(app).await.map_err(|e| e.to_string())
}

/// A container's environment: the app's config, and PORT set to where the proxy connects.
pub fn container_env(config: &BTreeMap<String, String>, port: u16) -> Vec<String> {
    let mut env: Vec<String> = config.iter().filter(|(k, _)| *k != "PORT").map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("PORT={port}"));
    env
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_get_the_apps_limits_else_the_global_ones_else_the_defaults() {
        let mut config = AppConfig::new();
        let mut global = crate::store::GlobalConfig::default();
        let gib = 1i64 << 30;
        // Defaults: a quarter of an app's CPU weight, half the machine's memory, at most 2047 MiB.
        let limits = build_limits(&config, &global, Some(2 * gib));
        assert_eq!((limits.cpu_shares, limits.memory), (Some(256), Some(gib as i32)));
        assert_eq!(build_limits(&config, &global, Some(24 * gib)).memory, Some(i32::MAX));
        assert_eq!(build_limits(&config, &global, None).memory, None);
        global.build.cpu_shares = Some(512);
        global.build.memory = Some("300m".into());
        let limits = build_limits(&config, &global, Some(24 * gib));
        assert_eq!((limits.cpu_shares, limits.memory), (Some(512), Some(300 << 20)));
        config.build.memory = Some("0".into());
        config.build.cpu_shares = Some(1024);
        let limits = build_limits(&config, &global, Some(24 * gib));
        assert_eq!((limits.cpu_shares, limits.memory), (Some(1024), None));
    }
}
