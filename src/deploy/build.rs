//! Where a release's image comes from: a build of a pushed tree (Dockerfile or buildpacks,
//! in a build slot, with limits) or an image built elsewhere. Each gives a release that has
//! not served yet; the pipeline (`deploy`) takes it from there.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Cause, DEFAULT_BUILD_CPU_SHARES, MAX_APP_JSON, MAX_BUILD_MEMORY, secs, short};
use crate::app_json::AppJson;
use crate::buildpack;
use super::Error;
use crate::engine::Engine;
use crate::git::BuildContext;
use crate::output::Output;
use crate::process;
use crate::runtime::Runtime;
use crate::store::{AppConfig, Builder, Release, Status};

/// What the app's builds may take: its settings, else the global ones, else the defaults
/// (cpu-shares 256; memory half of the machine's, at most 2047 MiB). A memory of `0` is no
/// limit. Pure.
pub fn build_limits(config: &AppConfig, global: &crate::store::GlobalConfig, machine_memory: Option<i64>) -> crate::runtime::BuildLimits {
    let cpu = config.build.cpu_shares.or(global.build.cpu_shares).unwrap_or(DEFAULT_BUILD_CPU_SHARES);
    // dokku's `resource:limit --process-type build` is the app's too.
    let build_type = config.resources.get(crate::store::BUILD_PROCESS);
    let memory = match config.build.memory.as_deref().or(build_type.and_then(|l| l.memory.as_deref())).or(global.build.memory.as_deref()) {
        Some("0") => None,
        Some(size) => crate::validate::memory(size).ok(),
        None => machine_memory.map(|m| m / 2),
    };
    let idle = global.build.cpu_priority.as_deref() != Some("normal");
    let skip_cleanup = config.build.skip_cleanup.or(global.build.skip_cleanup).unwrap_or(false);
    let nano_cpus = build_type.and_then(|l| l.cpus.as_deref()).and_then(|c| crate::validate::cpus(c).ok());
    crate::runtime::BuildLimits { cpu_shares: Some(cpu.min(262_144) as i32), memory: memory.map(|m| m.min(MAX_BUILD_MEMORY) as i32), nano_cpus, idle, skip_cleanup }
}

/// The machine's memory in bytes (`MemTotal` of /proc/meminfo).
fn machine_memory() -> Option<i64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse::<i64>().ok().map(|kb| kb * 1024)
}

/// How long a build may take (`build_timeout` in berth.toml, seconds; an hour by default).
fn build_limit(engine: &Engine) -> Duration {
    Duration::from_secs(engine.store.load_global().ok().and_then(|g| g.build_timeout).unwrap_or(3600).max(1))
}

/// A release not yet served: its image, processes and what app.json gives.
fn unserved(version: u32, image: String, image_tag: String, git_sha: String, cause: String, by: &str, config: &AppConfig) -> Release {
    Release {
        version,
        image,
        image_tag,
        git_sha,
        cause,
        deployed_by: by.to_string(),
        created_at: crate::unix_now(),
        status: Status::Failed,
        env: config.env.clone(),
        checks: Vec::new(),
        processes: BTreeMap::new(),
        launcher: false,
        predeploy: None,
        postdeploy: None,
        cron: Vec::new(),
        formation: BTreeMap::new(),
        ref_pending: false,
        compacted: false,
    }
}

/// What a tree gives before any build: its app.json (bounded, parsed once) and Procfile
/// (checked here for both builders, so a bad one fails before the build).
fn read_tree(context: &BuildContext, procfile_path: &str) -> Result<(AppJson, BTreeMap<String, String>), Error> {
    let app_json = context.file("app.json").map(|b| String::from_utf8_lossy(&b).into_owned());
    // What app.json gives is kept in every release (checks, scripts, cron): bounded.
    if app_json.as_ref().is_some_and(|text| text.len() > MAX_APP_JSON) {
        return Err(Error::from(format!("app.json is over {} KiB: berth reads at most that", MAX_APP_JSON / 1024)));
    }
    let app_json = app_json.as_deref().map(crate::app_json::parse).transpose()?.unwrap_or_default();
    let procfile = match context.file(procfile_path) {
        Some(bytes) => process::parse_procfile(&String::from_utf8_lossy(&bytes))?,
        None => BTreeMap::new(),
    };
    Ok((app_json, procfile))
}

/// Builds the pushed tree into `berth/APP:vN`: plugins may refuse it (`pre-build`), then a
/// build slot (one build at a time by default), then the build with the app's limits.
#[allow(clippy::too_many_arguments)]
pub(super) async fn from_context(
    engine: &Engine,
    runtime: &Runtime,
    app: &str,
    config: &AppConfig,
    version: u32,
    (context, git_sha): (BuildContext, String),
    cause: &Cause,
    out: &Output,
) -> Result<Release, Error> {
    let global = engine.store.load_global()?;
    let has_dockerfile = context.file("Dockerfile").is_some();
    let builder = config.builder_with(&global).unwrap_or(if has_dockerfile { Builder::Dockerfile } else { Builder::Buildpacks });
    let (AppJson { checks, cron, scripts }, procfile) = read_tree(&context, &config.procfile_path_with(&global))?;
    crate::plugins::trigger(engine, "pre-build", &[app.to_string(), git_sha.clone()], &cause.env(), out).await?;
    let slot = engine.build_slot(out).await;
    let limits = build_limits(config, &global, machine_memory());
    let build_started = Instant::now();
    let tag = format!("berth/{app}:v{version}");
    claim_tag(engine, runtime, app, &tag).await?;
    let job = Job { engine, runtime, app, config, context: &context, git_sha: &git_sha, tag: &tag, limits };
    let built = match builder {
        Builder::Dockerfile => job.dockerfile(procfile, has_dockerfile, out).await,
        Builder::Buildpacks => job.buildpacks(out).await,
    };
    // What the build printed past its output bound: its last lines, where a failure says why.
    out.child_output_done().await;
    let (image, processes, launcher) = built?;
    drop(slot);
    out.step(format!("Build done in {}", secs(build_started.elapsed()))).await;
    crate::plugins::trigger(engine, "post-build", &[app.to_string(), image.clone()], &cause.env(), out).await?;
    crate::crashpoint("built");
    Ok(Release {
        checks,
        processes,
        launcher,
        predeploy: scripts.predeploy,
        postdeploy: scripts.postdeploy,
        cron,
        ..unserved(version, image, tag, git_sha, cause.what.clone(), &cause.by, config)
    })
}

/// One build of a pushed tree.
struct Job<'a> {
    engine: &'a Engine,
    runtime: &'a Runtime,
    app: &'a str,
    config: &'a AppConfig,
    context: &'a BuildContext,
    git_sha: &'a str,
    tag: &'a str,
    limits: crate::runtime::BuildLimits,
}

/// A built image: its id, its processes, whether they run through the buildpack launcher.
type Built = (String, BTreeMap<String, String>, bool);

impl Job<'_> {
    /// The build's limits as its output says them, with the idle CPU priority and the CPUs
    /// when the build runs with them (`Runtime::build_place`).
    async fn describe_limits(&self) -> String {
        let limits = &self.limits;
        let memory = limits.memory.map_or("no memory limit".to_string(), |m| format!("memory {}m", m / (1 << 20)));
        let place = self.runtime.build_place(limits).await;
        let idle = if place.cgroup.is_some() { ", idle CPU priority" } else { "" };
        let cpus = place.cpus.map(|c| format!(", CPUs {c} (CPU 0 left to the apps)")).unwrap_or_default();
        format!("cpu-shares {}, {memory}{idle}{cpus}", limits.cpu_shares.unwrap_or(1024))
    }

    async fn dockerfile(&self, procfile: BTreeMap<String, String>, has_dockerfile: bool, out: &Output) -> Result<Built, Error> {
        let (app, git_sha) = (self.app, self.git_sha);
        if !has_dockerfile {
            return Err(Error::from(format!("No Dockerfile at the root of {} (builder:set {app} dockerfile)", short(git_sha))));
        }
        let text = self.context.file("Dockerfile").map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
        if let Some(image) = crate::dockerfile::foreign_image(app, &crate::dockerfile::image_refs(&text)) {
            return Err(Error::from(format!("The Dockerfile builds from {}: an app may use only public images and its own (berth/{app})", crate::validate::quoted(&image))));
        }
        // berth.* labels are what berth puts on what it builds and runs: never a tenant's.
        if let Some(key) = crate::dockerfile::berth_label(&text) {
            return Err(Error::from(format!("The Dockerfile sets the label {}: labels starting with berth. are berth's own", crate::validate::quoted(key.trim_start_matches(crate::dockerfile::UNCLEAR)))));
        }
        // What ADD fetches, the engine fetches from the host's network: public hosts only.
        let allow_private = self.engine.store.load_global().is_ok_and(|g| g.allow_private_buildpack_hosts);
        for source in crate::dockerfile::remote_sources(&text) {
            crate::buildpack::check_remote_source(&source, allow_private).await?;
        }
        let extra = crate::docker_options::build_options(&self.config.docker_options_for("build", None)).map_err(|e| format!("docker-options of {app} (build phase): {e}"))?;
        out.step(format!("Building {app} from Dockerfile ({}; {})", short(git_sha), self.describe_limits().await)).await;
        for skipped in &extra.skipped {
            out.step(format!("Skipping the docker-option {skipped}: not an option of a build")).await;
        }
        let limit = build_limit(self.engine);
        let image = self.runtime.build(self.app, self.context.path(), self.tag, limit, self.limits, extra, out).await?;
        Ok((image, procfile, false))
    }

    async fn buildpacks(&self, out: &Output) -> Result<Built, Error> {
        let (engine, app, config) = (self.engine, self.app, self.config);
        let read = |path: &str| self.context.file(path).map(|b| String::from_utf8_lossy(&b).into_owned());
        let mut defaults = BTreeMap::new();
        if let Some(command) = buildpack::python_web(&config.buildpacks, &read, &self.context.paths())? {
            out.step(format!("No Procfile: running web: {command} (add a Procfile to choose)")).await;
            defaults.insert(process::WEB.to_string(), command);
        }
        out.step(format!("Building {app} with buildpacks ({}; {})", short(self.git_sha), self.describe_limits().await)).await;
        for skipped in config.docker_options_for("build", None) {
            out.step(format!("Skipping the docker-option {skipped}: build-phase options apply to Dockerfile builds")).await;
        }
        let build_env = engine.store.load_global_env()?.under(&config.env);
        let version_tag = self.tag.rsplit_once(':').map_or("", |(_, t)| t);
        let request = buildpack::BuildRequest {
            app,
            tag: version_tag,
            source: self.context.path(),
            env: &build_env,
            chosen: &config.buildpacks,
            defaults: &defaults,
            time_limit: build_limit(engine),
            limits: self.limits,
            allow_private: engine.store.load_global().is_ok_and(|g| g.allow_private_buildpack_hosts),
            stack: &config.stack_with(&engine.store.load_global()?),
        };
        let built = buildpack::build(self.runtime, &engine.root(), request, out).await?;
        Ok((built.image, built.processes, true))
    }
}

/// Makes `tag` (`berth/APP:vN`) this build's, recorded before the build. The same tag left
/// by the app's last build (no release records it, or N would not be made again) is what
/// a crash or a failure before the record left: it goes, or the build would leave its
/// image with no name. An image tagged so otherwise is another root's on the engine, which
/// the build only takes the name from.
async fn claim_tag(engine: &Engine, runtime: &Runtime, app: &str, tag: &str) -> Result<(), Error> {
    if engine.store.load_build_tag(app).as_deref() == Some(tag) {
        runtime.untag_stale(tag).await;
    }
    Ok(engine.store.save_build_tag(app, tag)?)
}

/// An image built elsewhere (`git:from-image`, `git:load-image`), tagged `berth/APP:vN`: its
/// Procfile and app.json are read from its working directory. `shown`: how the user named it.
pub(super) async fn from_image(
    (engine, runtime): (&Engine, &Runtime),
    app: &str,
    (config, procfile_path): (&AppConfig, &str),
    version: u32,
    (image, shown): (String, String),
    cause: &Cause,
    out: &Output,
) -> Result<Release, Error> {
    let workdir = runtime.image_workdir(&image).await.map_err(|e| format!("{shown}: {e}"))?;
    let at = |name: &str| format!("{}/{name}", workdir.trim_end_matches('/'));
    let files = runtime.image_files(&image, &[at(procfile_path), at("app.json")]).await.map_err(|e| format!("{shown}: {e}"))?;
    let text = |i: usize| files.get(i).cloned().flatten().map(|b| String::from_utf8_lossy(&b).into_owned());
    let procfile = text(0).as_deref().map(process::parse_procfile).transpose()?.unwrap_or_default();
    let app_json = text(1);
    let AppJson { checks, cron, scripts } = app_json.as_deref().map(crate::app_json::parse).transpose()?.unwrap_or_default();
    out.step(format!("Deploying {app} from the image {shown}, without a build")).await;
    let version_tag = format!("v{version}");
    let tag = format!("berth/{app}:{version_tag}");
    claim_tag(engine, runtime, app, &tag).await?;
    runtime.tag(&image, &format!("berth/{app}"), &version_tag).await.map_err(|e| format!("cannot tag {shown}: {e}"))?;
    let id = runtime.image_info(&tag).await.map(|(id, _, _)| id).ok_or_else(|| format!("{shown} vanished while it was tagged"))?;
    crate::crashpoint("built");
    Ok(Release {
        checks,
        processes: procfile,
        predeploy: scripts.predeploy,
        postdeploy: scripts.postdeploy,
        cron,
        ..unserved(version, id, tag, String::new(), format!("image {shown}"), &cause.by, config)
    })
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
        // The idle CPU priority unless the admin asked for the apps' own.
        assert!(limits.idle);
        global.build.cpu_priority = Some("normal".into());
        assert!(!build_limits(&config, &global, None).idle);
    }
}
