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

mod address_hold;
mod build_holders;
mod build_request;
pub mod cgroups;
mod holders;
mod images;
mod networks;
mod oneshot;
mod services;

pub use build_holders::LABEL_BUILD_HOLDER;
pub use holders::{LABEL_HOLDER, Warm};
pub use images::{AppImage, BuildLimits, BuildPlace};
pub use networks::{AttachableNetwork, BUILD_NETWORK, UserNetwork};
pub use oneshot::{Client, Committed, OneShot, Terminal, TimeLimit};
pub use services::{ServiceContainer, ServiceSpec, service_name};

pub const NETWORK: &str = "berth";
/// The buildpack stack image (see `stack.rs`): builds run in it, holders sleep in it.
pub const STACK_IMAGE: &str = "berth/stack:bookworm";
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

#[derive(Clone)]
pub struct Runtime {
    docker: Docker,
    root: String,
    /// Containers berth itself is stopping or removing: their end is not a crash.
    stopping: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Networks this process made or found (not asked of the engine again before each start).
    networks_made: std::sync::Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    /// Network namespaces being made for web containers about to start (`holders.rs`).
    holders: holders::Pool,
    /// Network namespaces kept for apps' next builds (`build_holders.rs`).
    build_holders: std::sync::Arc<build_holders::Pool>,
}

/// A container of an app, as the engine reports it.
#[derive(Debug, Clone)]
pub struct AppContainer {
    pub id: String,
    pub app: String,
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
    /// Its address on its app's network while it runs.
    pub ip: Option<String>,
    pub exit_code: Option<i64>,
}

/// A container's host name, `APP-PROCESS-INDEX`, within the 63 characters a host name can
/// have (the app's part cut). Pure.
pub fn hostname(app: &str, process: &str, index: u32) -> String {
    let suffix = format!("-{process}-{index}");
    let room = 63usize.saturating_sub(suffix.len());
    let app: String = app.chars().take(room).collect();
    format!("{}{suffix}", app.trim_end_matches(['-', '.']))
}

/// A short tag of a root, in the names of its containers on a shared engine. Pure.
pub fn root_tag(root: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    root.hash(&mut h);
    format!("{:08x}", h.finish() as u32)
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
#[derive(Clone)]
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
    /// What is reserved for it (`resource:reserve`): memory in bytes (the engine reclaims
    /// memory above it first when the machine runs short) and nano-CPUs (Swarm places a
    /// task where they are free; one engine has no CPU reservation).
    pub memory_reservation: Option<i64>,
    pub cpu_reservation: Option<i64>,
    /// The suffix its names on networks also take (`network:set tld`).
    pub tld: Option<String>,
    /// An init process as PID 1 (`scheduler-docker-local:set init-process`).
    pub init: bool,
    /// How many of the app's containers a rollout starts at once (at least 1).
    pub parallel_starts: u32,
    /// The size past which its log file rotates (None: never), and a label key that also
    /// names its app (`logs:set`).
    pub log_max_size: Option<String>,
    pub app_label: Option<String>,
    /// How long it has between SIGTERM and SIGKILL (Swarm's grace period; docker-local
    /// reads the app's when it stops one).
    pub stop_timeout: std::time::Duration,
    /// What happens when it ends: berth's supervisor restarts docker-local containers
    /// itself (reading the app's policy then); Swarm restarts a service's tasks as this says.
    pub restart: crate::store::RestartPolicy,
    /// Networks an admin attached the app to (`network:set`), by the names the admin gave.
    pub networks: Vec<String>,
    /// The containers of the services the app reaches (its links): berth attaches them to
    /// the app's network.
    pub services: Vec<String>,
    /// Where on a cluster it may run (Swarm placement constraints; docker-local has one
    /// server and ignores them).
    pub placement: Vec<String>,
    /// `docker-options` of the phase (deploy, or run for one-off containers), as an admin
    /// wrote them: applied over berth's own settings when the container is made.
    pub options: Vec<String>,
}

impl ContainerSpec<'_> {
    /// The admin's `docker-options` over what berth set (checked when added; an option an
    /// older berth stored that this one cannot pass on is the start's error).
    fn apply_options(&self, body: &mut ContainerCreateBody) -> Result<(), RuntimeError> {
        if !self.options.is_empty() {
            crate::docker_options::run_options(&self.options).map_err(|e| RuntimeError::Container(format!("docker-options of {}: {e}", self.app)))?.apply(body);
        }
        Ok(())
    }

    /// What every container of an app gets: its network, init, log rotation, mounts, limits.
    fn host_config(&self, network: &str) -> HostConfig {
        HostConfig {
            network_mode: Some(network.into()),
            init: Some(self.init),
            binds: (!self.binds.is_empty()).then(|| self.binds.clone()),
            memory: self.memory,
            // Without a swap limit, a memory limit would only bound RAM, not RAM + swap.
            memory_swap: self.memory,
            nano_cpus: self.nano_cpus,
            memory_reservation: self.memory_reservation,
            log_config: Some(bollard::models::HostConfigLogConfig {
                typ: Some("json-file".into()),
                config: Some(self.log_options()),
            }),
            ..Default::default()
        }
    }

    /// `labels` and the app's name under its `app_label` key (`logs:set app-label-alias`),
    /// which never replaces one of them.
    pub fn with_app_label(&self, mut labels: HashMap<String, String>) -> HashMap<String, String> {
        if let Some(alias) = &self.app_label {
            labels.entry(alias.clone()).or_insert_with(|| self.app.to_string());
        }
        labels
    }

    /// The json-file log's options: rotated past the app's max size, three files kept.
    pub fn log_options(&self) -> HashMap<String, String> {
        match &self.log_max_size {
            Some(size) => HashMap::from([("max-size".into(), size.clone()), ("max-file".into(), "3".into())]),
            None => HashMap::new(),
        }
    }
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

/// Where berth daemons on this machine meet (locks, holds): /run/lock, /run, or the temp dir.
fn machine_dir() -> std::path::PathBuf {
    ["/run/lock", "/run"].iter().map(std::path::Path::new).find(|d| d.is_dir()).map_or_else(std::env::temp_dir, |d| d.to_path_buf())
}

impl Runtime {
    pub async fn connect(root: std::path::PathBuf) -> Result<Runtime, RuntimeError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        let docker = docker.negotiate_version().await.map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        Ok(Runtime { docker, root: root.display().to_string(), stopping: Default::default(), networks_made: Default::default(), holders: Default::default(), build_holders: Default::default() })
    }

    /// The engine itself, for what is not a container's (a cluster's services and nodes).
    pub fn docker(&self) -> &Docker {
        &self.docker
    }

    /// The root whose containers these are.
    pub fn root(&self) -> &str {
        &self.root
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
        let labels = spec.with_app_label(labels);
        let network = self.network_for(spec).await?;
        let aliases = with_tld(aliases(spec.app, spec.process, spec.index), spec.tld.as_deref());
        let mut body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            env: Some(spec.env.clone()),
            cmd: spec.cmd.clone(),
            labels: Some(labels),
            hostname: Some(hostname(spec.app, spec.process, spec.index)),
            host_config: Some(HostConfig {
                // Never restarted by the engine: a crash during start-up fails the deploy, and
                // later berth restarts it (see `no_engine_restarts` and supervise.rs).
                restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }),
                ..spec.host_config(&network)
            }),
            networking_config: Some(bollard::models::NetworkingConfig {
                endpoints_config: Some(HashMap::from([(network.clone(), bollard::models::EndpointSettings { aliases: Some(aliases.clone()), ..Default::default() })])),
            }),
            ..Default::default()
        };
        spec.apply_options(&mut body)?;
        // A web container joins the namespace made for it while the release was built.
        let holder = match spec.process == crate::process::WEB && holders::joinable(&body, &network) {
            true => self.take_holder(spec, &network, &aliases).await,
            false => None,
        };
        if let Some(h) = &holder {
            body = holders::join(body, h);
        }
        // A container of the same name is left from an interrupted attempt at this release.
        let _ = self.remove(&name).await;
        if holder.is_none() {
            self.wait_for_addresses().await;
        }
        let created = async { Ok::<_, RuntimeError>(self.docker.create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body).await?) };
        let started = async {
            let created = created.await?;
            if holder.is_none() {
                self.attach_networks(&created.id, spec, aliases).await?;
            }
            match self.docker.start_container(&created.id, None).await {
                Ok(()) => Ok(created.id),
                Err(e) => {
                    let _ = self.remove_container(&created.id).await;
                    Err(e.into())
                }
            }
        };
        match started.await {
            Ok(id) => Ok(id),
            Err(e) => {
                if let Some(h) = &holder {
                    let _ = self.remove_container(h).await;
                }
                Err(e)
            }
        }
    }

    /// The app's network, made if missing, with the services it reaches on it.
    async fn network_for(&self, spec: &ContainerSpec<'_>) -> Result<String, RuntimeError> {
        let network = self.ensure_app_network(spec.app).await?;
        for service in &spec.services {
            self.attach(service, &network, Vec::new()).await.map_err(|e| RuntimeError::Container(format!("cannot give {} its service {service}: {e}", spec.app)))?;
        }
        Ok(network)
    }

    /// Connects a created container to the networks an admin attached its app to.
    async fn attach_networks(&self, id: &str, spec: &ContainerSpec<'_>, aliases: Vec<String>) -> Result<(), RuntimeError> {
        for network in &spec.networks {
            self.attach(id, &self.attachable_network(network).await?, aliases.clone())
                .await
                .map_err(|e| RuntimeError::Container(format!("cannot attach {} to the network {network} ({e}): network:create {network}, or network:set {} attach-post-create with another", spec.app, spec.app)))?;
        }
        Ok(())
    }

    fn container_name(&self, app: &str, process: &str, index: u32, release: u32) -> String {
        container_name(app, process, index, release, &self.root_tag())
    }

    fn root_tag(&self) -> String {
        root_tag(&self.root)
    }

    /// The container's address on its app's network.
    pub async fn ip(&self, id: &str) -> Result<String, RuntimeError> {
        let info = self.docker.inspect_container(id, None).await?;
        self.address(info).await.ok_or_else(|| RuntimeError::Container("the container has no address on its app's network".into()))
    }

    /// A container's address on its app's network, or its holder's (`holders.rs`).
    async fn address(&self, info: bollard::models::ContainerInspectResponse) -> Option<String> {
        let joined = info.host_config.as_ref().and_then(|h| h.network_mode.as_deref()).and_then(|m| m.strip_prefix("container:")).map(str::to_string);
        match joined {
            Some(holder) => self.network_ip(self.docker.inspect_container(&holder, None).await.ok()?),
            None => self.network_ip(info),
        }
    }

    /// A container's address on its app's network (or, for a container an older berth
    /// started, on the shared `berth` network), if it has one.
    fn network_ip(&self, info: bollard::models::ContainerInspectResponse) -> Option<String> {
        let app = info.config.as_ref().and_then(|c| c.labels.as_ref()).and_then(|l| l.get(LABEL_APP)).cloned();
        let mut networks = info.network_settings.and_then(|n| n.networks)?;
        let own = app.and_then(|app| networks.remove(&self.app_network(&app)));
        own.or_else(|| networks.remove(NETWORK)).and_then(|n| n.ip_address).filter(|ip| !ip.is_empty())
    }

    /// A container as it is this moment, asked of the engine by id (the engine's list can
    /// lag behind a container that just stopped): None if it is gone.
    pub async fn live(&self, id: &str) -> Option<Live> {
        let info = self.docker.inspect_container(id, None).await.ok()?;
        let state = info.state.clone().unwrap_or_default();
        let running = state.running == Some(true) && state.restarting != Some(true);
        let ip = if running { self.address(info).await } else { None };
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
        // Its holder first (stopped with the engine, say): the namespace it joins.
        if let Some(holder) = self.holder_of(id).await {
            match self.docker.start_container(&holder, None).await {
                Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
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

    /// A container's output as timestamped lines (`2026-…Z text`): the last `tail` lines,
    /// then, with `follow`, whatever it writes until it stops.
    pub fn log_lines(&self, id: &str, tail: usize, follow: bool) -> futures_util::stream::BoxStream<'static, String> {
        let options = LogsOptions { stdout: true, stderr: true, follow, timestamps: true, tail: tail.to_string(), ..Default::default() };
        let chunks = self.docker.logs(id, Some(options));
        crate::output::lines_of(crate::output::ok_until_error(chunks).map(|chunk| chunk.into_bytes()), crate::output::MAX_LOG_LINE)
    }

    /// A container's output from `since` (Unix seconds) on, followed until it stops: each
    /// line timestamped (`2026-…Z text`), and whether it came from stderr.
    pub fn output_since(&self, id: &str, since: i64) -> futures_util::stream::BoxStream<'static, (bool, String)> {
        let options = LogsOptions { stdout: true, stderr: true, follow: true, timestamps: true, since: since.clamp(0, i32::MAX as i64) as i32, ..Default::default() };
        crate::output::ok_until_error(self.docker.logs(id, Some(options)))
            .flat_map(|chunk| {
                let stderr = matches!(chunk, bollard::container::LogOutput::StdErr { .. });
                let text = String::from_utf8_lossy(&chunk.into_bytes()).into_owned();
                let lines: Vec<(bool, String)> = text.lines().map(|l| (stderr, l.to_string())).collect();
                futures_util::stream::iter(lines)
            })
            .boxed()
    }

    /// SIGTERM, SIGKILL after `stop_timeout`, then remove; its holder, if it had one, is
    /// kept for the slot's next container (`holders.rs`).
    pub async fn retire(&self, id: &str, stop_timeout: Duration) -> Result<(), RuntimeError> {
        self.mark_stopping(id);
        let options = StopContainerOptions { t: Some(stop_timeout.as_secs() as i32), signal: None };
        let _ = self.docker.stop_container(id, Some(options)).await;
        self.remove_recycling(id).await
    }

    /// Removes a container, and the holder of its network namespace with it.
    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let holder = self.holder_of(id).await;
        self.remove_container(id).await?;
        match holder {
            Some(holder) => self.remove_container(&holder).await,
            None => Ok(()),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.mark_stopping(id);
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        let mut waited = false;
        loop {
            match self.docker.remove_container(id, Some(options.clone())).await {
                Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(()),
                // Another removal of it runs (a daemon's start-up sweep, a retirement, someone's
                // `docker rm`): gone once that ends (for at most 10 s); asked again after.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, message }) if message.contains("already in progress") && !waited => {
                    waited = true;
                    for _ in 0..200 {
                        if matches!(self.docker.inspect_container(id, None).await, Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })) {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Every process container berth runs for `app`, running or not (not one-off `run`
    /// containers: those have no index, and live only as long as their session).
    pub async fn containers(&self, app: &str) -> Result<Vec<AppContainer>, RuntimeError> {
        self.processes(Some(app), true).await
    }

    /// Every app's process containers that run now (for metrics: one list, not one per app).
    pub async fn running_processes(&self) -> Result<Vec<AppContainer>, RuntimeError> {
        self.processes(None, false).await
    }

    /// Every app's process containers, running or not (for log drains).
    pub async fn every_process(&self) -> Result<Vec<AppContainer>, RuntimeError> {
        self.processes(None, true).await
    }

    async fn processes(&self, app: Option<&str>, all: bool) -> Result<Vec<AppContainer>, RuntimeError> {
        let mut labels = vec![format!("{LABEL_ROOT}={}", self.root), LABEL_INDEX.to_string()];
        labels.extend(app.map(|app| format!("{LABEL_APP}={app}")));
        let filters = HashMap::from([("label".to_string(), labels)]);
        let options = ListContainersOptions { all, filters: Some(filters), ..Default::default() };
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
                    app: labels.get(LABEL_APP).cloned().unwrap_or_default(),
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

}

/// The names a process container answers to on its app's network and the networks an
/// admin attached it to (dokku's `APP.PROCESS`; the app's own name for its web). Pure.
/// The names with `.TLD` too, when the app has a tld (`network:set tld`). Pure.
pub fn with_tld(mut names: Vec<String>, tld: Option<&str>) -> Vec<String> {
    if let Some(tld) = tld {
        let suffixed: Vec<String> = names.iter().map(|n| format!("{n}.{tld}")).collect();
        names.extend(suffixed);
    }
    names
}

pub fn aliases(app: &str, process: &str, index: u32) -> Vec<String> {
    let mut names = vec![format!("{app}.{process}"), format!("{app}.{process}.{index}")];
    if process == crate::process::WEB {
        names.push(app.to_string());
    }
    names
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
