//! The deploy pipeline: build → release → swap → route → retire.
//!
//! A failed step never touches what is serving: new containers are removed, the old
//! containers and the old nginx site stay, and the release is recorded as failed.

use std::time::{Duration, Instant};

use crate::buildpack;
use crate::checks;
use crate::engine::Engine;
use crate::git;
use crate::output::Output;
use crate::proxy;
use crate::runtime::{ContainerSpec, Runtime};
use crate::store::{AppConfig, Builder, Release, Status};

/// What a new release runs.
pub enum Source {
    /// Build this build context (a tar of the pushed commit).
    Build { tar: Vec<u8>, git_sha: String },
    /// Run the active release's image again with the current config.
    Reuse,
    /// Run an earlier release's image with that release's config (which becomes the app's
    /// config once it serves).
    Rollback { version: u32 },
}

/// How long old containers get between SIGTERM and SIGKILL.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a failed container's output shown to the user.
const LOG_LINES: usize = 20;

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// Deploys with the app's deploy lock already held. Returns the new release's version.
pub async fn deploy_locked(engine: &Engine, app: &str, source: Source, cause: &str, out: &Output) -> Result<u32, String> {
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

    let (image, image_tag, git_sha, release_checks) = match source {
        Source::Build { tar, git_sha } => {
            let has_dockerfile = git::file_in_tar(&tar, "Dockerfile").is_some();
            let builder = config.builder.unwrap_or(if has_dockerfile { Builder::Dockerfile } else { Builder::Buildpacks });
            let release_checks = match git::file_in_tar(&tar, "app.json") {
                Some(bytes) => checks::parse_app_json(&String::from_utf8_lossy(&bytes))?,
                None => Vec::new(),
            };
            let build_started = Instant::now();
            let version_tag = format!("v{version}");
            let tag = format!("berth/{app}:{version_tag}");
            let image = match builder {
                Builder::Dockerfile => {
                    if !has_dockerfile {
                        return Err(format!("No Dockerfile at the root of {} (builder:set {app} dockerfile)", short(&git_sha)));
                    }
                    out.step(format!("Building {app} from Dockerfile ({})", short(&git_sha))).await;
                    runtime.build(tar, &tag, out).await.map_err(|e| e.to_string())?
                }
                Builder::Buildpacks => {
                    out.step(format!("Building {app} with buildpacks ({})", short(&git_sha))).await;
                    let request = buildpack::BuildRequest { app, tag: &version_tag, source: tar, env: &config.env, chosen: &config.buildpacks };
                    buildpack::build(&runtime, &engine.root(), request, out).await?
                }
            };
            out.step(format!("Build done in {}", secs(build_started.elapsed()))).await;
            (image, tag, git_sha, release_checks)
        }
        Source::Reuse => {
            let active = releases.active().ok_or_else(|| format!("{app} has not been deployed yet: git push it first"))?;
            (active.image.clone(), active.image_tag.clone(), active.git_sha.clone(), active.checks.clone())
        }
        Source::Rollback { version: target } => {
            let old = releases
                .releases
                .iter()
                .find(|r| r.version == target)
                .ok_or_else(|| format!("{app} has no release v{target} (see: releases {app})"))?;
            if old.status == Status::Failed {
                return Err(format!("v{target} of {app} never served (it failed): roll back to a release that did"));
            }
            if runtime.image_info(&old.image).await.is_none() {
                return Err(format!("The image of v{target} is no longer kept: push that commit again instead"));
            }
            rollback_env = Some(old.env.clone());
            out.step(format!("Rolling back {app} to v{target} ({}), without a build", short(&old.git_sha))).await;
            (old.image.clone(), old.image_tag.clone(), old.git_sha.clone(), old.checks.clone())
        }
    };

    out.step(format!("Releasing v{version}")).await;
    let mut release = Release {
        version,
        image,
        image_tag,
        git_sha,
        cause: cause.to_string(),
        created_at: crate::unix_now(),
        status: Status::Failed,
        env: rollback_env.clone().unwrap_or_else(|| config.env.clone()),
        checks: release_checks,
    };
    let previous = releases.active().map(|r| r.version);
    let swapped = swap(engine, &runtime, app, &config, &release, previous, out).await;
    if swapped.is_ok() {
        release.status = Status::Active;
    }
    let prune = {
        let _lock = store.lock_app(app).await;
        let mut releases = store.load_releases(app).map_err(|e| e.to_string())?;
        releases.releases.push(release);
        if swapped.is_ok() {
            releases.activate(version);
        }
        store.save_releases(app, &releases).map_err(|e| e.to_string())?;
        releases.images_to_prune(config.keep_releases)
    };
    match swapped {
        Ok(retirement) => retirement.spawn(runtime.clone(), prune),
        // Nothing to retire; a failed release's image goes at once.
        Err(e) => {
            for tag in prune {
                runtime.remove_image(&tag).await;
            }
            return Err(e);
        }
    }
    if let Some(env) = rollback_env {
        engine
            .update_app(app, |config| {
                config.env = env;
                Ok::<_, crate::store::StoreError>(())
            })
            .await
            .map_err(|e| e.to_string())?;
    }
    out.step(format!("{app} v{version} is live (deployed in {})", secs(started.elapsed()))).await;
    Ok(version)
}

/// Starts the new web container, waits until it is ready, moves traffic, retires the old.
async fn swap(engine: &Engine, runtime: &Runtime, app: &str, config: &AppConfig, release: &Release, previous: Option<u32>, out: &Output) -> Result<Retirement, String> {
    let port = config.container_port();
    let env = container_env(&release.env, port);
    let old = runtime.containers(app).await.map_err(|e| e.to_string())?;
    let keeps_serving = previous.map(|v| format!("v{v} keeps serving")).unwrap_or_else(|| "nothing was serving".into());

    let spec = ContainerSpec { app, process: "web", index: 1, release: release.version, image: &release.image, env, cmd: None };
    let started = Instant::now();
    let id = runtime.start(&spec).await.map_err(|e| format!("cannot start web.1: {e}; {keeps_serving}"))?;
    let ready = async {
        // A container that crashes at once is restarting and has no address: say why.
        runtime.alive(&id).await?;
        let ip = match runtime.ip(&id).await {
            Ok(ip) => ip,
            Err(e) => return Err(runtime.alive(&id).await.err().unwrap_or_else(|| e.to_string())),
        };
        if config.checks.disabled || config.checks.skipped {
            return Ok((ip, None));
        }
        let specs = checks::effective(&release.checks);
        let waited = checks::wait_ready(&ip, port, &specs, &config.checks, || runtime.alive(&id)).await?;
        Ok::<_, String>((ip, Some(waited)))
    }
    .await;
    let ready = match ready {
        Ok(found) => runtime.keep_running(&id).await.map(|()| found).map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let ip = match ready {
        Ok((ip, Some(_))) => {
            out.step(format!("Starting web.1 … checks passed in {}", secs(started.elapsed()))).await;
            ip
        }
        Ok((ip, None)) => {
            out.step(format!("Starting web.1 … started (checks {})", checks::describe(config))).await;
            ip
        }
        Err(why) => {
            out.step("Starting web.1 … failed").await;
            let lines = runtime.tail(&id, LOG_LINES).await;
            if !lines.is_empty() {
                out.step("Last output of web.1:").await;
                for line in lines {
                    out.detail(line).await;
                }
            }
            let _ = runtime.remove(&id).await;
            return Err(format!("web.1 of v{} did not become ready: {why}; {keeps_serving}", release.version));
        }
    };

    match route(engine, app, config, release.version, ip).await {
        Ok(true) => out.step(format!("Routing {} → v{}", config.domains.join(", "), release.version)).await,
        Ok(false) => {
            let _ = engine.nginx.remove_site(app).await;
            out.step(format!("No domains for {app}: nothing is routed to it (domains:add {app} DOMAIN)")).await;
        }
        Err(e) => {
            let _ = runtime.remove(&id).await;
            return Err(format!("cannot route {app}: {e}; {keeps_serving}"));
        }
    }

    let retiring: Vec<_> = old.into_iter().filter(|c| c.id != id).collect();
    let wait = if config.checks.disabled { 0 } else { config.checks.wait_to_retire };
    if !retiring.is_empty() {
        out.step(format!("Retiring {} old container(s) in {wait}s", retiring.len())).await;
    }
    Ok(Retirement { containers: retiring, wait: Duration::from_secs(wait) })
}

/// Old containers to stop once traffic has moved, after `wait`.
struct Retirement {
    containers: Vec<crate::runtime::AppContainer>,
    wait: Duration,
}

impl Retirement {
    /// In the background: stop the old containers, then remove images no release keeps
    /// (the engine refuses to remove an image a container still uses, hence the order).
    fn spawn(self, runtime: Runtime, prune: Vec<String>) {
        tokio::spawn(async move {
            tokio::time::sleep(self.wait).await;
            for container in self.containers {
                if let Err(e) = runtime.retire(&container.id, STOP_TIMEOUT).await {
                    tracing::warn!("cannot retire {}: {e}", container.name);
                }
            }
            for tag in prune {
                runtime.remove_image(&tag).await;
            }
        });
    }
}

/// Points the app's nginx site at `ip` (checked alone, swapped in, reloaded). Ok(false)
/// when there is nothing to route: no domains or no http mapping.
async fn route(engine: &Engine, app: &str, config: &AppConfig, version: u32, ip: String) -> Result<bool, String> {
    let Some(site) = proxy::plan_site(app, version, &config.domains, &config.effective_ports(), &[ip], engine.settings.http_listen) else {
        return Ok(false);
    };
    let text = engine.nginx.render_site(&site).map_err(|e| e.to_string())?;
    engine.nginx.install_site(app, &text).await.map_err(|e| e.to_string())?;
    Ok(true)
}

/// After a daemon or engine restart: start the active release's web container if it is
/// gone, route to where it runs now, and retire containers of other releases.
pub async fn restore(engine: &Engine, app: &str) -> Result<(), String> {
    let Some(active) = engine.store.load_releases(app).map_err(|e| e.to_string())?.active().cloned() else {
        return Ok(());
    };
    let runtime = engine.runtime().await.map_err(|e| e.to_string())?;
    runtime.ensure_network().await.map_err(|e| e.to_string())?;
    let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
    let containers = runtime.containers(app).await.map_err(|e| e.to_string())?;
    let mut current: Vec<_> = containers.iter().filter(|c| c.release == active.version && c.running).collect();
    let started_id;
    if current.is_empty() {
        let port = config.container_port();
        let env = container_env(&active.env, port);
        let spec = ContainerSpec { app, process: "web", index: 1, release: active.version, image: &active.image, env, cmd: None };
        started_id = runtime.start(&spec).await.map_err(|e| e.to_string())?;
        runtime.keep_running(&started_id).await.map_err(|e| e.to_string())?;
        tracing::info!(app, release = active.version, "restarted the active release's web container");
    } else {
        started_id = current.remove(0).id.clone();
    }
    let ip = runtime.ip(&started_id).await.map_err(|e| e.to_string())?;
    route(engine, app, &config, active.version, ip).await?;
    for stale in containers.iter().filter(|c| c.release != active.version) {
        let _ = runtime.retire(&stale.id, STOP_TIMEOUT).await;
    }
    Ok(())
}

/// Stops and removes everything an app runs, and its site.
pub async fn teardown(engine: &Engine, app: &str) -> Result<(), String> {
    engine.nginx.remove_site(app).await.map_err(|e| e.to_string())?;
    let Ok(runtime) = engine.runtime().await else { return Ok(()) };
    for container in runtime.containers(app).await.map_err(|e| e.to_string())? {
        runtime.remove(&container.id).await.map_err(|e| e.to_string())?;
    }
    for release in engine.store.load_releases(app).map_err(|e| e.to_string())?.releases {
        runtime.remove_image(&release.image_tag).await;
    }
    Ok(())
}

/// A container's environment: the app's config, and PORT set to where the proxy connects.
pub fn container_env(config: &std::collections::BTreeMap<String, String>, port: u16) -> Vec<String> {
    let mut env: Vec<String> = config.iter().filter(|(k, _)| *k != "PORT").map(|(k, v)| format!("{k}={v}")).collect();
    env.push(format!("PORT={port}"));
    env
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}
