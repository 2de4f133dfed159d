//! The Docker engine, through bollard: images, containers, the `berth` network.
//!
//! Only API 1.41 features (Debian's engine 20.10). Every container berth runs carries
//! labels saying whose it is, so state can be rebuilt from the engine after a restart.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, ListContainersOptions, ListNetworksOptionsBuilder, LogsOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;

use crate::output::Output;

pub const NETWORK: &str = "berth";
pub const LABEL_APP: &str = "berth.app";
/// A service container's `KIND/NAME`.
pub const LABEL_SERVICE: &str = "berth.service";
pub const LABEL_PROCESS: &str = "berth.process";
pub const LABEL_RELEASE: &str = "berth.release";
pub const LABEL_INDEX: &str = "berth.index";
/// The berth root a container belongs to: several roots (tests) can share one engine.
pub const LABEL_ROOT: &str = "berth.root";
/// On containers that run once (builds, the release phase, `run`): what they are. They live
/// only as long as the daemon session that started them, so a new daemon removes them all.
pub const LABEL_ONE_OFF: &str = "berth.one-off";
/// On one-off containers: which run of the daemon started them (a new daemon removes only
/// those of earlier runs: its own may already serve a session).
pub const LABEL_DAEMON: &str = "berth.daemon";

/// This run of the daemon, told apart from earlier ones on one-off containers.
fn daemon_run() -> &'static str {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| format!("{}-{:08x}", std::process::id(), rand::random::<u32>()))
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the Docker engine is not reachable ({0}); start it with `dockerd` or `systemctl start docker`")]
    Unreachable(String),
    #[error("build failed: {0}")]
    Build(String),
    #[error("{0}")]
    Container(String),
    #[error("Docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// A build container exited with this code.
    #[error("the build exited with code {0}")]
    Exited(i64),
    /// What ran was stopped after `secs`, as the berth.toml `setting` allows.
    #[error("the {what} was stopped after {secs}s ({setting} in berth.toml)")]
    TimedOut { what: &'static str, secs: u64, setting: &'static str },
}

/// How long a one-off container may run: `what` it runs, and the berth.toml `setting`
/// that gives the limit (both for the error).
#[derive(Debug, Clone, Copy)]
pub struct TimeLimit {
    pub limit: Duration,
    pub what: &'static str,
    pub setting: &'static str,
}

/// A container that runs once, from `image`, and is committed as a new image if it succeeds
/// (buildpack builds, the stack image).
pub struct OneShot<'a> {
    /// The app it builds for (None: the stack image).
    pub app: Option<&'a str>,
    pub image: &'a str,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub binds: Vec<String>,
    /// A tar file unpacked at this path before the container starts.
    pub upload: Option<(&'a str, &'a std::path::Path)>,
    /// `repo:tag` of the committed image, with its default command and working directory.
    pub commit_as: (&'a str, &'a str),
    pub commit_cmd: Option<Vec<String>>,
    pub commit_workdir: Option<&'a str>,
    /// A file read from the container after it succeeded (the build's process list).
    pub collect: Option<&'a str>,
    /// Stopped and failed after this long.
    pub time_limit: Option<Duration>,
    pub limits: BuildLimits,
}

/// A committed one-shot container: the image id, and the collected file if it existed.
pub struct Committed {
    pub image: String,
    pub collected: Option<Vec<u8>>,
}

#[derive(Clone)]
pub struct Runtime {
    docker: Docker,
    root: String,
    /// Containers berth itself is stopping or removing: their end is not a crash.
    stopping: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// A container of an app, as the engine reports it.
#[derive(Debug, Clone)]
pub struct AppContainer {
    pub id: String,
    pub name: String,
    pub process: String,
    pub index: u32,
    pub release: u32,
    /// As listed (the list can lag a container that just stopped: ask `live` to be sure).
    pub running: bool,
    /// The engine's words for its state ("Up 3 minutes", "Exited (137) 2 seconds ago").
    pub status: String,
}

/// A container event of this root's: which app, which container, what happened
/// (`start`, `die`, `destroy`, `health_status: unhealthy`, …).
#[derive(Debug, Clone)]
pub struct ContainerEvent {
    pub app: String,
    pub id: String,
    pub action: String,
    /// A process container (not a one-off).
    pub process: bool,
}

/// A container's state, from inspecting it.
#[derive(Debug, Clone)]
pub struct Live {
    pub running: bool,
    /// Its address on the berth network while it runs.
    pub ip: Option<String>,
    pub exit_code: Option<i64>,
}

/// An image of an app's, as the engine lists it.
#[derive(Debug, Clone)]
pub struct AppImage {
    pub id: String,
    pub tags: Vec<String>,
}

/// What a build container may take: a CPU weight below the apps' (Docker's cpu-shares;
/// containers run at 1024) and a memory limit, so a build cannot starve the apps it is about
/// to replace. None: the engine's default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BuildLimits {
    pub cpu_shares: Option<i32>,
    pub memory: Option<i32>,
}

/// A database service's container: one per service, on berth's network under its name
/// (apps reach it by that name), its data in a named volume, restarted by the engine.
pub struct ServiceSpec<'a> {
    /// `postgres/mydb`: the `berth.service` label.
    pub label: String,
    /// Container, volume and host name (unique per engine and root).
    pub name: &'a str,
    pub image: &'a str,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    /// Where the volume is mounted in the container.
    pub data_dir: &'a str,
}

/// A service container as the engine has it.
pub struct ServiceContainer {
    pub id: String,
    pub running: bool,
    pub status: String,
}

/// A container's host name, `APP-PROCESS-INDEX`, within the 63 characters a host name can
/// have (the app's part cut). Pure.
pub fn hostname(app: &str, process: &str, index: u32) -> String {
    let suffix = format!("-{process}-{index}");
    let room = 63usize.saturating_sub(suffix.len());
    let app: String = app.chars().take(room).collect();
    format!("{}{suffix}", app.trim_end_matches(['-', '.']))
}

/// The name berth gives the container of `app`'s `process`.`index` in `release` (on the
/// engine of the root whose tag is `root_tag`). Names are unique per engine and no image can
/// set one: a container with berth's labels but not this name was not made by berth (a build
/// step of an image that carries `LABEL berth.app=…` has them all), and is never taken for
/// an app's.
fn container_name(app: &str, process: &str, index: u32, release: u32, root_tag: &str) -> String {
    format!("berth-{app}-{process}.{index}-v{release}-{root_tag}")
}

/// Whether a container with these labels and this name is one berth made for an app. The
/// root's tag at the end of the name is not compared: the engine is asked for this root's
/// containers already (`berth.root`, which berth sets on the containers it creates), and a
/// tag's hash may change with the compiler, which must not lose every running container.
fn made_by_berth(labels: &HashMap<String, String>, name: &str) -> bool {
    let number = |label: &str| labels.get(label).and_then(|v| v.parse::<u32>().ok());
    let (Some(app), Some(process), Some(index), Some(release)) = (labels.get(LABEL_APP), labels.get(LABEL_PROCESS), number(LABEL_INDEX), number(LABEL_RELEASE)) else {
        return false;
    };
    let name = name.trim_start_matches('/');
    let prefix = container_name(app, process, index, release, "");
    name.strip_prefix(&prefix).is_some_and(|tag| tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// What to run.
pub struct ContainerSpec<'a> {
    pub app: &'a str,
    pub process: &'a str,
    pub index: u32,
    pub release: u32,
    pub image: &'a str,
    pub env: Vec<String>,
    /// None: the image's own CMD.
    pub cmd: Option<Vec<String>>,
    /// `host:container[:ro]` bind mounts.
    pub binds: Vec<String>,
    /// Memory limit in bytes and CPU limit in nano-CPUs.
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
}

impl ContainerSpec<'_> {
    /// What every container of an app gets: its network, init, log rotation, mounts, limits.
    fn host_config(&self) -> HostConfig {
        HostConfig {
            network_mode: Some(NETWORK.into()),
            init: Some(true),
            binds: (!self.binds.is_empty()).then(|| self.binds.clone()),
            memory: self.memory,
            // Without a swap limit, a memory limit would only bound RAM, not RAM + swap.
            memory_swap: self.memory,
            nano_cpus: self.nano_cpus,
            log_config: Some(bollard::models::HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(HashMap::from([("max-size".into(), "10m".into()), ("max-file".into(), "3".into())])),
            }),
            ..Default::default()
        }
    }
}

/// The client's terminal, when it asked for one (`ssh -t`): its TERM and size (columns,
/// rows), which changes when the client's window does.
pub struct Terminal {
    pub term: String,
    pub size: tokio::sync::watch::Receiver<(u16, u16)>,
}

/// The client's side of an interactive process: its output, its stdin, its terminal.
pub struct Client<'a> {
    pub out: &'a Output,
    pub input: &'a mut crate::output::Input,
    pub terminal: Option<&'a mut Terminal>,
}

/// What a terminal resize applies to.
enum TtyOf<'a> {
    Container(&'a str),
    Exec(&'a str),
}

/// An exclusive lock held by one berth process on this machine at a time (flock on a file
/// under /run; a lock file in a temp dir where /run is not writable).
async fn network_lock() -> Option<nix::fcntl::Flock<std::fs::File>> {
    tokio::task::spawn_blocking(|| {
        let path = machine_dir().join("berth-docker-network.lock");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).ok()?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).ok()
    })
    .await
    .ok()
    .flatten()
}

/// Where berth daemons on this machine say until when no new container may take an address
/// on the berth network (one file per root, holding a Unix time in milliseconds).
fn drain_dir() -> std::path::PathBuf {
    machine_dir().join("berth-address-drain")
}

/// Where berth daemons on this machine meet (locks, holds): /run/lock, /run, or the temp dir.
fn machine_dir() -> std::path::PathBuf {
    ["/run/lock", "/run"].iter().map(std::path::Path::new).find(|d| d.is_dir()).map_or_else(std::env::temp_dir, |d| d.to_path_buf())
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The longest any daemon may hold addresses: a deadline further away is not believed.
const MAX_HOLD: Duration = Duration::from_secs(30);

impl Runtime {
    /// No container may start on the berth network for `hold` from now: a dead container's
    /// address may still be routed or connected to, and the engine hands freed addresses to
    /// the next container that starts (of any app, of any berth root on this engine).
    /// Replaces this root's earlier hold.
    pub fn hold_addresses(&self, hold: Duration) {
        let dir = drain_dir();
        let until = unix_millis() + hold.min(MAX_HOLD).as_millis() as u64;
        if std::fs::create_dir_all(&dir).is_ok()
            && let Err(e) = crate::store::write_atomic(&dir.join(self.root_tag()), until.to_string().as_bytes(), 0o644)
        {
            tracing::warn!("cannot hold container addresses: {e}");
        }
    }

    /// Until when (Unix ms) some daemon on this machine holds the berth network's addresses.
    fn held_until(&self, now: u64) -> u64 {
        std::fs::read_dir(drain_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok()?.trim().parse::<u64>().ok())
            .filter(|until| *until <= now + MAX_HOLD.as_millis() as u64)
            .max()
            .unwrap_or(0)
    }

    /// Whether a container started now could take an address that must not be reused yet.
    pub fn addresses_held(&self) -> bool {
        let now = unix_millis();
        self.held_until(now) > now
    }

    /// Waits until no daemon on this machine holds the berth network's addresses.
    pub async fn wait_for_addresses(&self) {
        loop {
            let now = unix_millis();
            let until = self.held_until(now);
            if until <= now {
                return;
            }
            tracing::debug!("waiting {}ms for addresses of dead containers to drain", until - now);
            tokio::time::sleep(Duration::from_millis(until - now)).await;
        }
    }

    pub async fn connect(root: std::path::PathBuf) -> Result<Runtime, RuntimeError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        let docker = docker.negotiate_version().await.map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        Ok(Runtime { docker, root: root.display().to_string(), stopping: Default::default() })
    }

    /// The engine's version, asked anew (so a stopped engine shows).
    pub async fn version(&self) -> Result<String, RuntimeError> {
        let version = self.docker.version().await.map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        Ok(version.version.unwrap_or_else(|| "(unknown version)".into()))
    }

    /// The `berth` network, made once. The engine accepts two networks of one name (and
    /// then refuses containers on either as "ambiguous"), so creation is serialized across
    /// every berth daemon on this machine, and duplicates an earlier race left are removed.
    pub async fn ensure_network(&self) -> Result<(), RuntimeError> {
        let _machine = network_lock().await;
        let filters = HashMap::from([("name", vec![NETWORK])]);
        let listed = self.docker.list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build())).await?;
        let ids: Vec<String> = listed.into_iter().filter(|n| n.name.as_deref() == Some(NETWORK)).filter_map(|n| n.id).collect();
        if ids.is_empty() {
            let request = NetworkCreateRequest { name: NETWORK.into(), driver: Some("bridge".into()), ..Default::default() };
            self.docker.create_network(request).await?;
            return Ok(());
        }
        if ids.len() > 1 {
            // Keep the one most containers use; the others go if nothing uses them.
            let mut used = Vec::new();
            for id in &ids {
                let n = self.docker.inspect_network(id, None).await.ok().and_then(|n| n.containers).map_or(0, |c| c.len());
                used.push((n, id.clone()));
            }
            used.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            for (count, id) in &used[1..] {
                if *count == 0 {
                    let _ = self.docker.remove_network(id).await;
                }
            }
            tracing::warn!("removed duplicate Docker networks named {NETWORK}");
        }
        Ok(())
    }

    /// Builds `context` (a tar with a Dockerfile at its root) as `tag`, streaming the build
    /// output as detail lines. Returns the image id.
    /// Stopped after `limit` (dropping the request cancels the engine's build).
    pub async fn build(&self, context: &std::path::Path, tag: &str, limit: Duration, limits: BuildLimits, out: &Output) -> Result<String, RuntimeError> {
        let app = tag.strip_prefix("berth/").and_then(|t| t.split(':').next()).unwrap_or_default();
        let options = BuildImageOptions {
            dockerfile: "Dockerfile".into(),
            t: Some(tag.into()),
            rm: true,
            forcerm: true,
            // Whose image it is, also once a later build of the same tag has untagged it.
            labels: Some(self.image_labels(app)),
            cpushares: limits.cpu_shares,
            memory: limits.memory,
            // No swap beyond the limit: a build over it fails rather than thrashing the disk.
            memswap: limits.memory,
            ..Default::default()
        };
        let mut stream = self.docker.build_image(options, None, Some(bollard::body_try_stream(file_stream(context).await?)));
        let mut lines = crate::output::Lines::default();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let Ok(item) = tokio::time::timeout_at(deadline, stream.next()).await else {
                return Err(RuntimeError::TimedOut { what: "build", secs: limit.as_secs(), setting: "build_timeout" });
            };
            let Some(item) = item else { break };
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(RuntimeError::Build(detail.trim().to_string()));
                    }
                    if let Some(text) = info.stream {
                        for line in lines.push(text.as_bytes()) {
                            if !line.is_empty() {
                                out.child_line(&line, true).await;
                            }
                        }
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => return Err(RuntimeError::Build(error.trim().to_string())),
                Err(e) => return Err(e.into()),
            }
        }
        let image = self.docker.inspect_image(tag).await?;
        image.id.ok_or_else(|| RuntimeError::Build("the engine reported no image id".into()))
    }

    /// Creates and starts one container on the berth network; returns its id.
    pub async fn start(&self, spec: &ContainerSpec<'_>) -> Result<String, RuntimeError> {
        // Names are unique per engine; the root's hash keeps two roots (tests) apart.
        let name = self.container_name(spec.app, spec.process, spec.index, spec.release);
        let labels = HashMap::from([
            (LABEL_APP.to_string(), spec.app.to_string()),
            (LABEL_PROCESS.to_string(), spec.process.to_string()),
            (LABEL_RELEASE.to_string(), spec.release.to_string()),
            (LABEL_INDEX.to_string(), spec.index.to_string()),
            (LABEL_ROOT.to_string(), self.root.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            env: Some(spec.env.clone()),
            cmd: spec.cmd.clone(),
            labels: Some(labels),
            hostname: Some(hostname(spec.app, spec.process, spec.index)),
            host_config: Some(HostConfig {
                // Never restarted by the engine: a crash during start-up fails the deploy, and
                // later berth restarts it (see `no_engine_restarts` and supervise.rs).
                restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }),
                ..spec.host_config()
            }),
            ..Default::default()
        };
        // A container of the same name is left from an interrupted attempt at this release.
        let _ = self.remove(&name).await;
        self.wait_for_addresses().await;
        let created = self.docker.create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body).await?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove(&created.id).await;
            return Err(e.into());
        }
        Ok(created.id)
    }

    /// The engine-wide name of this root's service (its container, volume and host name).
    pub fn service_name(&self, kind: &str, name: &str) -> String {
        format!("berth-{kind}-{name}-{}", self.root_tag())
    }

    /// Makes a service's container run: started if stopped, created (on its volume, which
    /// the engine creates the first time and keeps) if missing. Returns its id.
    pub async fn ensure_service(&self, spec: &ServiceSpec<'_>) -> Result<String, RuntimeError> {
        if let Some(found) = self.service(spec.name).await? {
            if !found.running {
                self.docker.start_container(&found.id, None).await?;
            }
            return Ok(found.id);
        }
        let labels = HashMap::from([(LABEL_SERVICE.to_string(), spec.label.clone()), (LABEL_ROOT.to_string(), self.root.clone())]);
        let mount = bollard::models::Mount {
            target: Some(spec.data_dir.to_string()),
            source: Some(spec.name.to_string()),
            typ: Some(bollard::models::MountType::VOLUME),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            env: Some(spec.env.clone()),
            cmd: spec.cmd.clone(),
            labels: Some(labels),
            hostname: Some(spec.name.to_string()),
            host_config: Some(HostConfig {
                network_mode: Some(NETWORK.into()),
                mounts: Some(vec![mount]),
                // Reached by name, not address: the engine may restart it (a crash, the
                // engine's or the host's restart) without berth.
                restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
                log_config: Some(bollard::models::HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([("max-size".into(), "10m".into()), ("max-file".into(), "3".into())])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.wait_for_addresses().await;
        let created = self.docker.create_container(Some(CreateContainerOptions { name: Some(spec.name.to_string()), ..Default::default() }), body).await?;
        self.docker.start_container(&created.id, None).await?;
        Ok(created.id)
    }

    /// The service container of this name, if the engine has one.
    pub async fn service(&self, name: &str) -> Result<Option<ServiceContainer>, RuntimeError> {
        match self.docker.inspect_container(name, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let running = state.running == Some(true);
                let status = state.status.map(|s| s.to_string()).unwrap_or_default();
                Ok(Some(ServiceContainer { id: info.id.unwrap_or_default(), running, status }))
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a service's container and, with `volume`, its data. Nothing else ever
    /// removes a service's volume.
    pub async fn remove_service(&self, name: &str, volume: bool) -> Result<(), RuntimeError> {
        self.remove(name).await?;
        if volume {
            match self.docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
                Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn container_name(&self, app: &str, process: &str, index: u32, release: u32) -> String {
        container_name(app, process, index, release, &self.root_tag())
    }

    fn root_tag(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.root.hash(&mut h);
        format!("{:08x}", h.finish() as u32)
    }

    /// The container's address on the berth network.
    pub async fn ip(&self, id: &str) -> Result<String, RuntimeError> {
        let info = self.docker.inspect_container(id, None).await?;
        network_ip(info).ok_or_else(|| RuntimeError::Container(format!("the container has no address on the {NETWORK} network")))
    }

    /// A container as it is this moment, asked of the engine by id (the engine's list can
    /// lag behind a container that just stopped): None if it is gone.
    pub async fn live(&self, id: &str) -> Option<Live> {
        let info = self.docker.inspect_container(id, None).await.ok()?;
        let state = info.state.clone().unwrap_or_default();
        let running = state.running == Some(true) && state.restarting != Some(true);
        let ip = network_ip(info).filter(|_| running);
        Some(Live { running, ip, exit_code: state.exit_code.filter(|_| !running) })
    }

    /// Takes restarts away from the engine (containers of older berth versions had the
    /// engine's restart policy): berth restarts containers itself, after routing away from
    /// the dead one, so an address the engine hands to another container is never routed.
    pub async fn no_engine_restarts(&self, id: &str) -> Result<(), RuntimeError> {
        let policy = RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None };
        let body = bollard::models::ContainerUpdateBody { restart_policy: Some(policy), ..Default::default() };
        Ok(self.docker.update_container(id, body).await?)
    }

    /// Starts a stopped container again (same container, same logs, a new address). The
    /// caller waits for `wait_for_addresses` first (without holding locks heals need).
    pub async fn restart(&self, id: &str) -> Result<(), RuntimeError> {
        self.stopping.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        Ok(self.docker.start_container(id, None).await?)
    }

    /// Whether berth stopped (or is stopping) this container: its end is not a crash.
    pub fn stopped_by_berth(&self, id: &str) -> bool {
        self.stopping.lock().unwrap_or_else(|p| p.into_inner()).contains(id)
    }

    /// The container is gone (its `destroy` event): nothing more to tell apart.
    pub fn forget(&self, id: &str) {
        self.stopping.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    fn mark_stopping(&self, id: &str) {
        self.stopping.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string());
    }

    /// Ok while the container runs; otherwise why it stopped.
    pub async fn alive(&self, id: &str) -> Result<(), String> {
        match self.docker.inspect_container(id, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                if state.running == Some(true) && state.restarting != Some(true) {
                    Ok(())
                } else {
                    Err(format!("the container exited with code {}", state.exit_code.unwrap_or(-1)))
                }
            }
            Err(e) => Err(format!("the container is gone: {e}")),
        }
    }

    /// The last `lines` lines of a container's output.
    pub async fn tail(&self, id: &str, lines: usize) -> Vec<String> {
        let options = LogsOptions { stdout: true, stderr: true, tail: lines.to_string(), ..Default::default() };
        let mut stream = self.docker.logs(id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        text.lines().map(str::to_string).collect()
    }

    /// Runs `spec` once in a new container, wired to the client: its stdin goes to the
    /// container, the container's stdout and stderr come back (one stream with a terminal),
    /// and the container is removed afterwards. Returns its exit code; if the client goes
    /// away first, the container is removed at once (-1).
    pub async fn run_once(&self, spec: &ContainerSpec<'_>, client: Client<'_>) -> Result<i64, RuntimeError> {
        self.run_once_within(spec, client, None).await
    }

    /// `run_once`, stopped (and its container removed) after `limit`.
    pub async fn run_once_within(&self, spec: &ContainerSpec<'_>, client: Client<'_>, limit: Option<TimeLimit>) -> Result<i64, RuntimeError> {
        let labels = HashMap::from([
            (LABEL_APP.to_string(), spec.app.to_string()),
            (LABEL_PROCESS.to_string(), spec.process.to_string()),
            (LABEL_RELEASE.to_string(), spec.release.to_string()),
            (LABEL_ROOT.to_string(), self.root.clone()),
            (LABEL_ONE_OFF.to_string(), spec.process.to_string()),
            (LABEL_DAEMON.to_string(), daemon_run().to_string()),
        ]);
        let tty = client.terminal.is_some();
        let mut env = spec.env.clone();
        if let Some(terminal) = &client.terminal {
            env.push(format!("TERM={}", terminal.term));
        }
        let body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            cmd: spec.cmd.clone(),
            env: Some(env),
            labels: Some(labels),
            tty: Some(tty),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(spec.host_config()),
            ..Default::default()
        };
        self.wait_for_addresses().await;
        let id = self.docker.create_container(None, body).await?.id;
        let result = async {
            let attached = self.attach_and_start(&id, true).await?;
            if !self.pump(attached.output, attached.input, client, TtyOf::Container(&id)).await {
                return Ok(-1);
            }
            self.exit_code(&id).await
        };
        let result = match limit {
            Some(l) => {
                tokio::time::timeout(l.limit, result).await.unwrap_or(Err(RuntimeError::TimedOut { what: l.what, secs: l.limit.as_secs(), setting: l.setting }))
            }
            None => result.await,
        };
        // Removed (killed if it still runs) whatever happened.
        let _ = self.remove(&id).await;
        result
    }

    /// Runs `cmd` in a running container (`enter`), wired to the client as `run_once` is.
    pub async fn exec(&self, container: &str, cmd: Vec<String>, client: Client<'_>) -> Result<i64, RuntimeError> {
        self.exec_env(container, cmd, Vec::new(), client).await
    }

    /// `exec` with more environment for the command (secrets that must not be in its argv).
    pub async fn exec_env(&self, container: &str, cmd: Vec<String>, mut env: Vec<String>, client: Client<'_>) -> Result<i64, RuntimeError> {
        let tty = client.terminal.is_some();
        env.extend(client.terminal.as_ref().map(|t| format!("TERM={}", t.term)));
        let env = Some(env);
        let options = bollard::exec::CreateExecOptions::<String> {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty),
            env,
            cmd: Some(cmd),
            ..Default::default()
        };
        let exec = self.docker.create_exec(container, options).await?.id;
        let start = bollard::exec::StartExecOptions { detach: false, tty, output_capacity: None };
        let bollard::exec::StartExecResults::Attached { output, input } = self.docker.start_exec(&exec, Some(start)).await? else {
            return Err(RuntimeError::Container("the engine did not attach to the command".into()));
        };
        if !self.pump(output, input, client, TtyOf::Exec(&exec)).await {
            return Ok(-1);
        }
        // The output ends a moment before the engine records the exit code.
        for _ in 0..50 {
            let info = self.docker.inspect_exec(&exec).await?;
            if info.running != Some(true) {
                return Ok(info.exit_code.unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(-1)
    }

    /// Copies the client's stdin to a process and its output back, following the client's
    /// window size, until the process's output ends (true) or the client goes (false).
    async fn pump(
        &self,
        mut output: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>>,
        mut stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
        client: Client<'_>,
        target: TtyOf<'_>,
    ) -> bool {
        use tokio::io::AsyncWriteExt;
        let Client { out, input, mut terminal } = client;
        if let Some(t) = terminal.as_deref_mut() {
            let (cols, rows) = *t.size.borrow_and_update();
            self.resize(&target, cols, rows).await;
        }
        let mut stdin_open = true;
        loop {
            let resized = async {
                if let Some(t) = terminal.as_deref_mut()
                    && t.size.changed().await.is_ok()
                {
                    return *t.size.borrow_and_update();
                }
                std::future::pending().await
            };
            tokio::select! {
                chunk = output.next() => match chunk {
                    Some(Ok(bollard::container::LogOutput::StdErr { message })) => out.stderr(message.to_vec()).await,
                    Some(Ok(other)) => out.stdout(other.into_bytes().to_vec()).await,
                    Some(Err(_)) | None => return true,
                },
                data = input.recv(), if stdin_open => match data {
                    Some(bytes) => {
                        if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                            stdin_open = false;
                        }
                    }
                    None => {
                        // The client's EOF: without a terminal the process sees the end of
                        // its stdin. A terminal stays open (closing it would hang it up), as
                        // sshd does for pty sessions.
                        if terminal.is_none() {
                            let _ = stdin.shutdown().await;
                        }
                        stdin_open = false;
                    }
                },
                (cols, rows) = resized => self.resize(&target, cols, rows).await,
                _ = out.closed() => return false,
            }
        }
    }

    async fn resize(&self, target: &TtyOf<'_>, cols: u16, rows: u16) {
        let (w, h) = (i32::from(cols.max(1)), i32::from(rows.max(1)));
        let resized = match target {
            TtyOf::Container(id) => self.docker.resize_container_tty(id, bollard::query_parameters::ResizeContainerTTYOptions { h, w }).await,
            TtyOf::Exec(id) => self.docker.resize_exec(id, bollard::query_parameters::ResizeExecOptions { h, w }).await,
        };
        if let Err(e) = resized {
            tracing::warn!("cannot resize the terminal to {cols}x{rows}: {e}");
        }
    }

    /// Stops a container, keeping it (`ps:stop`); SIGKILL after `timeout`.
    pub async fn stop(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        self.mark_stopping(id);
        let options = StopContainerOptions { t: Some(timeout.as_secs() as i32), signal: None };
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304 | 404, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Attaches to a created container (its stdin too, with `stdin`), then starts it, as
    /// `docker run` does: reading the logs of a container that already exited can miss what
    /// it wrote last.
    async fn attach_and_start(&self, id: &str, stdin: bool) -> Result<bollard::container::AttachContainerResults, RuntimeError> {
        // Stream only, as `docker run` attaches: attached before the start, the stream has
        // everything; asking for the logs too can replay output the stream also carries.
        let options = bollard::query_parameters::AttachContainerOptions { stream: true, stdin, stdout: true, stderr: true, logs: false, ..Default::default() };
        let attached = self.docker.attach_container(id, Some(options)).await?;
        self.docker.start_container(id, None).await?;
        Ok(attached)
    }

    /// The container's exit code once it has stopped (-1 when the engine gives none).
    async fn exit_code(&self, id: &str) -> Result<i64, RuntimeError> {
        let mut wait = self.docker.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
        match wait.next().await {
            Some(Ok(status)) => Ok(status.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(e.into()),
            None => Ok(-1),
        }
    }

    /// A container's output as timestamped lines (`2026-…Z text`): the last `tail` lines,
    /// then, with `follow`, whatever it writes until it stops.
    pub fn log_lines(&self, id: &str, tail: usize, follow: bool) -> futures_util::stream::BoxStream<'static, String> {
        let options = LogsOptions { stdout: true, stderr: true, follow, timestamps: true, tail: tail.to_string(), ..Default::default() };
        let chunks = self.docker.logs(id, Some(options));
        crate::output::lines_of(crate::output::ok_until_error(chunks).map(|chunk| chunk.into_bytes()), crate::output::MAX_LOG_LINE)
    }

    /// SIGTERM, SIGKILL after `stop_timeout`, then remove.
    pub async fn retire(&self, id: &str, stop_timeout: Duration) -> Result<(), RuntimeError> {
        self.mark_stopping(id);
        let options = StopContainerOptions { t: Some(stop_timeout.as_secs() as i32), signal: None };
        let _ = self.docker.stop_container(id, Some(options)).await;
        self.remove(id).await
    }

    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        self.mark_stopping(id);
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every process container berth runs for `app`, running or not (not one-off `run`
    /// containers: those have no index, and live only as long as their session).
    pub async fn containers(&self, app: &str) -> Result<Vec<AppContainer>, RuntimeError> {
        let labels = vec![format!("{LABEL_APP}={app}"), format!("{LABEL_ROOT}={}", self.root), LABEL_INDEX.to_string()];
        let filters = HashMap::from([("label".to_string(), labels)]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let list = self.docker.list_containers(Some(options)).await?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                let labels = c.labels.unwrap_or_default();
                let name = c.names.and_then(|n| n.into_iter().next()).unwrap_or_default().trim_start_matches('/').to_string();
                if !made_by_berth(&labels, &name) {
                    return None;
                }
                Some(AppContainer {
                    id: c.id.unwrap_or_default(),
                    name,
                    process: labels.get(LABEL_PROCESS).cloned().unwrap_or_default(),
                    release: labels.get(LABEL_RELEASE).and_then(|r| r.parse().ok()).unwrap_or(0),
                    index: labels.get(LABEL_INDEX).and_then(|r| r.parse().ok()).unwrap_or(1),
                    running: c.state.map(|s| s.to_string() == "running").unwrap_or(false),
                    status: c.status.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// One-off containers of this root (of one app, or of all): builds, release phases,
    /// `run`s. Each lives only as long as the daemon session that started it.
    pub async fn one_offs(&self, app: Option<&str>) -> Result<Vec<String>, RuntimeError> {
        Ok(self.one_off_list(app).await?.into_iter().map(|(id, _)| id).collect())
    }

    /// One-off containers earlier runs of the daemon started: nothing serves them any more.
    pub async fn orphaned_one_offs(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self.one_off_list(None).await?.into_iter().filter(|(_, run)| run.as_deref() != Some(daemon_run())).map(|(id, _)| id).collect())
    }

    async fn one_off_list(&self, app: Option<&str>) -> Result<Vec<(String, Option<String>)>, RuntimeError> {
        let mut labels = vec![format!("{LABEL_ROOT}={}", self.root), LABEL_ONE_OFF.to_string()];
        if let Some(app) = app {
            labels.push(format!("{LABEL_APP}={app}"));
        }
        let filters = HashMap::from([("label".to_string(), labels)]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        Ok(self
            .docker
            .list_containers(Some(options))
            .await?
            .into_iter()
            // Containers of images committed by an older berth inherit a one-off label:
            // a process (it has an index) or a service container is never a one-off.
            .filter(|c| {
                c.labels
                    .as_ref()
                    .is_some_and(|l| l.get(LABEL_ONE_OFF).is_some_and(|v| !v.is_empty()) && !l.contains_key(LABEL_INDEX) && !l.contains_key(LABEL_SERVICE))
            })
            .filter_map(|c| Some((c.id?, c.labels.and_then(|mut l| l.remove(LABEL_DAEMON)))))
            .collect())
    }

    /// The labels of an app's images: whose they are, also once untagged.
    fn image_labels(&self, app: &str) -> HashMap<String, String> {
        HashMap::from([(LABEL_APP.to_string(), app.to_string()), (LABEL_ROOT.to_string(), self.root.clone())])
    }

    /// Every image of an app's: labelled as this root's (tagged or not), or tagged
    /// `berth/APP:*` (images built before berth labelled them).
    pub async fn app_images(&self, app: &str) -> Result<Vec<AppImage>, RuntimeError> {
        let by_label = HashMap::from([("label".to_string(), vec![format!("{LABEL_APP}={app}"), format!("{LABEL_ROOT}={}", self.root)])]);
        let by_name = HashMap::from([("reference".to_string(), vec![format!("berth/{app}")])]);
        let mut images: Vec<AppImage> = Vec::new();
        for filters in [by_label, by_name] {
            let options = bollard::query_parameters::ListImagesOptions { all: false, filters: Some(filters), ..Default::default() };
            for image in self.docker.list_images(Some(options)).await? {
                // Another root's (several roots can share one engine) is not this app's.
                let root = image.labels.get(LABEL_ROOT);
                if root.is_some_and(|r| *r != self.root) {
                    continue;
                }
                if !images.iter().any(|i| i.id == image.id) {
                    images.push(AppImage { id: image.id, tags: image.repo_tags });
                }
            }
        }
        Ok(images)
    }

    /// Removes an image by id or tag; false if the engine refused (e.g. a container uses it).
    pub async fn remove_image_checked(&self, image: &str) -> bool {
        let options = bollard::query_parameters::RemoveImageOptions { force: false, noprune: false, ..Default::default() };
        match self.docker.remove_image(image, Some(options), None).await {
            Ok(_) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => true,
            Err(_) => false,
        }
    }

    /// Container events of this root's containers, as the engine reports them; ends (or
    /// errs) when the engine goes away.
    pub fn events(&self) -> impl futures_util::Stream<Item = Result<ContainerEvent, RuntimeError>> + Send + 'static {
        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()]), ("label".to_string(), vec![format!("{LABEL_ROOT}={}", self.root)])]);
        let options = bollard::query_parameters::EventsOptions { filters: Some(filters), ..Default::default() };
        self.docker.events(Some(options)).filter_map(move |item| {
            // An app's process container, by the name berth gave it. (Not by labels: a
            // buildpack image carries `berth.one-off` from the build that made it, and its
            // process containers inherit it; one-offs have names the engine chose.)
            let process = |attributes: &HashMap<String, String>| made_by_berth(attributes, attributes.get("name").map(String::as_str).unwrap_or_default());
            let event = match item {
                Ok(message) => message.actor.and_then(|actor| {
                    let attributes = actor.attributes.unwrap_or_default();
                    Some(Ok(ContainerEvent {
                        app: attributes.get(LABEL_APP)?.clone(),
                        id: actor.id.unwrap_or_default(),
                        action: message.action.unwrap_or_default(),
                        process: process(&attributes),
                    }))
                }),
                Err(e) => Some(Err(RuntimeError::from(e))),
            };
            std::future::ready(event)
        })
    }

    /// Runs a one-shot container, streaming its output as lines, and commits it as an image
    /// if it exits 0. The container is removed either way. Returns the image id.
    pub async fn run_and_commit(&self, job: OneShot<'_>, out: &Output) -> Result<Committed, RuntimeError> {
        let mut labels = HashMap::from([
            (LABEL_ROOT.to_string(), self.root.clone()),
            (LABEL_ONE_OFF.to_string(), "build".to_string()),
            (LABEL_DAEMON.to_string(), daemon_run().to_string()),
        ]);
        if let Some(app) = job.app {
            labels.insert(LABEL_APP.to_string(), app.to_string());
        }
        let body = ContainerCreateBody {
            image: Some(job.image.to_string()),
            cmd: Some(job.cmd.clone()),
            env: Some(job.env.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                binds: Some(job.binds.clone()),
                cpu_shares: job.limits.cpu_shares.map(i64::from),
                memory: job.limits.memory.map(i64::from),
                memory_swap: job.limits.memory.map(i64::from),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self.docker.create_container(None, body).await?;
        let id = created.id;
        let work = async {
            if let Some((path, tar)) = job.upload {
                let options = bollard::query_parameters::UploadToContainerOptions { path: path.to_string(), ..Default::default() };
                self.docker.upload_to_container(&id, Some(options), bollard::body_try_stream(file_stream(tar).await?)).await?;
            }
            let mut logs = self.attach_and_start(&id, false).await?.output;
            let mut lines = crate::output::Lines::default();
            while let Some(Ok(chunk)) = logs.next().await {
                for line in lines.push(&chunk.into_bytes()) {
                    out.child_line(&line, false).await;
                }
            }
            if let Some(line) = lines.finish().filter(|l| !l.trim().is_empty()) {
                out.child_line(&line, false).await;
            }
            match self.exit_code(&id).await? {
                0 => {}
                code => return Err(RuntimeError::Exited(code)),
            }
            let collected = match job.collect {
                Some(path) => self.read_file(&id, path).await,
                None => None,
            };
            let (repo, tag) = job.commit_as;
            let options = bollard::query_parameters::CommitContainerOptions {
                container: Some(id.clone()),
                repo: Some(repo.to_string()),
                tag: Some(tag.to_string()),
                ..Default::default()
            };
            // The engine adds these to the build container's labels rather than replacing
            // them, and every container of the image inherits them: the one-off and daemon
            // labels are blanked (an image is no session's one-off), and a shared image (the
            // stack, services) belongs to no root.
            let mut labels = HashMap::from([(LABEL_ONE_OFF.to_string(), String::new()), (LABEL_DAEMON.to_string(), String::new())]);
            match job.app {
                Some(app) => labels.extend(self.image_labels(app)),
                None => {
                    labels.insert(LABEL_ROOT.to_string(), String::new());
                }
            }
            let config = bollard::models::ContainerConfig {
                cmd: job.commit_cmd.clone(),
                working_dir: job.commit_workdir.map(str::to_string),
                labels: Some(labels),
                ..Default::default()
            };
            let committed = self.docker.commit_container(options, config).await?;
            Ok(Committed { image: committed.id, collected })
        };
        let result = match job.time_limit {
            Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or(Err(RuntimeError::TimedOut {
                what: "build",
                secs: limit.as_secs(),
                setting: "build_timeout",
            })),
            None => work.await,
        };
        // Removed (killed if it still runs) whatever happened.
        let _ = self.remove(&id).await;
        result
    }

    /// One file of a container's filesystem (None if it is not there or not a file).
    async fn read_file(&self, id: &str, path: &str) -> Option<Vec<u8>> {
        let options = bollard::query_parameters::DownloadFromContainerOptions { path: path.to_string() };
        let mut stream = self.docker.download_from_container(id, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk.ok()?);
        }
        let mut tar = tar::Archive::new(archive.as_slice());
        let mut entry = tar.entries().ok()?.next()?.ok()?;
        if !entry.header().entry_type().is_file() {
            return None;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).ok()?;
        Some(bytes)
    }

    /// Whether an image exists locally: Some((id, size in bytes, created)).
    pub async fn image_info(&self, image: &str) -> Option<(String, i64, String)> {
        let info = self.docker.inspect_image(image).await.ok()?;
        Some((info.id.unwrap_or_default(), info.size.unwrap_or(0), info.created.map(|c| c.to_string()).unwrap_or_default()))
    }

    /// The ports an image EXPOSEs (`5000/tcp` → 5000), sorted; none for an image that is
    /// not there.
    pub async fn exposed_ports(&self, image: &str) -> Vec<u16> {
        let Ok(info) = self.docker.inspect_image(image).await else { return Vec::new() };
        let mut ports: Vec<u16> =
            info.config.and_then(|c| c.exposed_ports).map(|p| p.iter().filter_map(|k| k.strip_suffix("/tcp")?.parse().ok()).collect()).unwrap_or_default();
        ports.sort_unstable();
        ports
    }

    /// Pulls `image:tag` from a registry; Err if no registry answers within `limit`.
    pub async fn pull(&self, image: &str, tag: &str, limit: Duration) -> Result<(), String> {
        let options = bollard::query_parameters::CreateImageOptions { from_image: Some(image.into()), tag: Some(tag.into()), ..Default::default() };
        let pulling = async {
            let mut stream = self.docker.create_image(Some(options), None, None);
            while let Some(item) = stream.next().await {
                item.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        };
        tokio::time::timeout(limit, pulling).await.map_err(|_| format!("no answer within {}s", limit.as_secs()))?
    }

    /// `docker import`: a root filesystem tar stream becomes the image `repo:tag`.
    pub async fn import(&self, rootfs: impl futures_util::Stream<Item = bytes::Bytes> + Send + 'static, repo: &str, tag: &str) -> Result<(), RuntimeError> {
        let options =
            bollard::query_parameters::CreateImageOptions { from_src: Some("-".into()), repo: Some(repo.into()), tag: Some(tag.into()), ..Default::default() };
        let mut stream = self.docker.create_image(Some(options), Some(bollard::body_stream(rootfs)), None);
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok(())
    }

    /// `docker load` of a `docker save` tar file; returns what it loaded (`repo:tag`, or
    /// the image id of an untagged one).
    pub async fn load(&self, tar: &std::path::Path) -> Result<Vec<String>, RuntimeError> {
        let options = bollard::query_parameters::ImportImageOptions { quiet: true, ..Default::default() };
        let mut stream = self.docker.import_image_stream(options, file_stream(tar).await?, None);
        let mut loaded = Vec::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| RuntimeError::Container(format!("the image archive cannot be loaded: {e}")))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::Container(format!("the image archive cannot be loaded: {}", message.trim())));
            }
            for line in info.stream.unwrap_or_default().lines() {
                if let Some(name) = line.strip_prefix("Loaded image: ").or_else(|| line.strip_prefix("Loaded image ID: ")) {
                    loaded.push(name.trim().to_string());
                }
            }
        }
        Ok(loaded)
    }

    /// Tags `image` as `repo:tag`.
    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), RuntimeError> {
        let options = bollard::query_parameters::TagImageOptions { repo: Some(repo.to_string()), tag: Some(tag.to_string()) };
        Ok(self.docker.tag_image(image, Some(options)).await?)
    }

    /// The working directory an image's containers start in ("/" when it names none).
    pub async fn image_workdir(&self, image: &str) -> Result<String, RuntimeError> {
        let info = self.docker.inspect_image(image).await?;
        Ok(info.config.and_then(|c| c.working_dir).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()))
    }

    /// Regular files of an image, read from a container of it that never starts (None
    /// for a path that is not a file there).
    pub async fn image_files(&self, image: &str, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>, RuntimeError> {
        let labels = HashMap::from([
            (LABEL_ROOT.to_string(), self.root.clone()),
            (LABEL_ONE_OFF.to_string(), "inspect".to_string()),
            (LABEL_DAEMON.to_string(), daemon_run().to_string()),
        ]);
        let body = ContainerCreateBody { image: Some(image.to_string()), labels: Some(labels), cmd: Some(vec!["true".into()]), ..Default::default() };
        let id = self.docker.create_container(None, body).await?.id;
        let mut files = Vec::new();
        for path in paths {
            files.push(self.read_file(&id, path).await);
        }
        let _ = self.remove(&id).await;
        Ok(files)
    }

    pub async fn remove_image(&self, image: &str) {
        self.remove_image_checked(image).await;
    }
}

/// A container's address on the berth network, if it has one.
fn network_ip(info: bollard::models::ContainerInspectResponse) -> Option<String> {
    info.network_settings.and_then(|n| n.networks).and_then(|mut n| n.remove(NETWORK)).and_then(|n| n.ip_address).filter(|ip| !ip.is_empty())
}

/// A build context file, read as a stream: a context of any size costs no memory.
async fn file_stream(path: &std::path::Path) -> Result<tokio_util::io::ReaderStream<tokio::fs::File>, RuntimeError> {
    let file = tokio::fs::File::open(path).await.map_err(|e| RuntimeError::Build(format!("cannot read the build context: {e}")))?;
    Ok(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_container_berth_named_is_an_apps() {
        let labels = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        let web = labels(&[(LABEL_APP, "shop"), (LABEL_PROCESS, "web"), (LABEL_INDEX, "1"), (LABEL_RELEASE, "3"), (LABEL_ROOT, "/var/lib/berth")]);
        assert!(made_by_berth(&web, "/berth-shop-web.1-v3-0a1b2c3d"));
        // Whatever the root's tag (it is a hash: another compiler may give another one).
        assert!(made_by_berth(&web, "berth-shop-web.1-v3-ffffffff"));
        // The same labels on a build step of a tenant's image (`LABEL berth.app=shop …`): the
        // engine named it, not berth.
        assert!(!made_by_berth(&web, "/quirky_hopper"));
        // Labels that do not match the name: another app's, release or index.
        assert!(!made_by_berth(&web, "/berth-blog-web.1-v3-0a1b2c3d"));
        assert!(!made_by_berth(&web, "/berth-shop-web.2-v3-0a1b2c3d"));
        assert!(!made_by_berth(&web, "/berth-shop-web.1-v4-0a1b2c3d"));
        assert!(!made_by_berth(&web, "/berth-shop-web.1-v3-"));
        assert!(!made_by_berth(&web, "/berth-shop-web.1-v3-0a1b2c3d-x"));
        assert!(!made_by_berth(&web, "/berth-shop-web.1-v33-0a1b2c3d"));
        // Labels missing or not numbers.
        assert!(!made_by_berth(&labels(&[(LABEL_APP, "shop")]), "/berth-shop-web.1-v3-0a1b2c3d"));
        let odd = labels(&[(LABEL_APP, "shop"), (LABEL_PROCESS, "web"), (LABEL_INDEX, "01"), (LABEL_RELEASE, "3")]);
        assert!(made_by_berth(&odd, "berth-shop-web.1-v3-0a1b2c3d"), "berth's own index, however the label spells it");
        let junk = labels(&[(LABEL_APP, "shop"), (LABEL_PROCESS, "web"), (LABEL_INDEX, "x"), (LABEL_RELEASE, "3")]);
        assert!(!made_by_berth(&junk, "berth-shop-web.x-v3-0a1b2c3d"));
        // A buildpack app's container carries `berth.one-off` from its image: still the app's.
        let mut inherited = web.clone();
        inherited.insert(LABEL_ONE_OFF.into(), String::new());
        assert!(made_by_berth(&inherited, "/berth-shop-web.1-v3-0a1b2c3d"));
    }
}
