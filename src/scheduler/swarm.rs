//! swarm: an app's processes as Docker Swarm services, on every node of the cluster this
//! server manages. Swarm places and restarts tasks (it heals itself); berth still decides when
//! traffic moves: each release's process type is a service of its own
//! (`berth-APP-PROCESS-vN-<root>`), started beside the running release's, its tasks checked
//! as docker-local's containers are, routed by nginx to each task's node address and the
//! port the task published on its node (host mode, a port of Swarm's choosing per task, so
//! two releases overlap on one node), and the old release's services removed once traffic
//! has moved. No routing mesh and no virtual IPs (`endpoint_mode: dnsrr`): the kernel here
//! has no IPVS, and the mesh is where other PaaS's 502s come from.
//!
//! One-off containers (`run`, the release phase, cron) run on this server's own engine, as
//! docker-local runs them. Tasks are followed by polling the manager (the engine's event
//! stream has no task events).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, Limit, ResourceObject, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, Task,
    TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecLogDriver, TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{Client, Converged, Instance, InstanceEvent, Probe, SchedError, Scheduler, TimeLimit, Unit};
use crate::reconcile;
use crate::runtime::{LABEL_APP, LABEL_PROCESS, LABEL_RELEASE, LABEL_ROOT, Runtime};

/// On services berth made: which scheduler (so docker-local never lists them).
const LABEL_SCHEDULER: &str = "berth.scheduler";
/// How long a new service's tasks have to run (the nodes may pull the image first).
const START_LIMIT: Duration = Duration::from_secs(180);
/// How long a convergence (a restore) waits for tasks before routing those that run.
const CONVERGE_LIMIT: Duration = Duration::from_secs(20);
/// How often the manager is asked what its tasks do.
const POLL: Duration = Duration::from_millis(500);
/// How often an engine that manages no swarm is asked whether it does now.
const IDLE_POLL: Duration = Duration::from_secs(5);

pub struct Swarm {
    runtime: Runtime,
    docker: Docker,
    root: String,
    /// One-offs run on this server's engine, as docker-local runs them.
    local: super::docker::DockerLocal,
    /// Node id → its address (nodes keep theirs while they are in the cluster).
    nodes: std::sync::Mutex<HashMap<String, String>>,
    /// Where images go for every node to pull (`cluster:registry`); None: this server's own
    /// engine is the only one that has them (a one-server cluster).
    registry: Option<Target>,
    /// Image id → the reference nodes pull it by (pushed once).
    pushed: tokio::sync::Mutex<HashMap<String, String>>,
}

/// The registry of a cluster, and the login berth pushes with and hands to the servers that
/// pull (for the registry berth runs; none for one that needs no login).
#[derive(Debug, Clone)]
pub struct Target {
    pub address: String,
    pub login: Option<super::registry::Login>,
}

impl Swarm {
    pub fn new(runtime: Runtime, registry: Option<Target>) -> Swarm {
        let docker = runtime.docker().clone();
        let root = runtime.root().to_string();
        Swarm { local: super::docker::DockerLocal::new(runtime.clone()), runtime, docker, root, nodes: Default::default(), registry, pushed: Default::default() }
    }

    /// The reference every node pulls a unit's image by: pushed to the cluster's registry
    /// (once) and named by its digest there; the image as it is here without a registry.
    async fn distribute(&self, unit: &Unit<'_>) -> Result<String, SchedError> {
        let Some(Target { address: registry, login }) = &self.registry else { return Ok(unit.image.to_string()) };
        let mut pushed = self.pushed.lock().await;
        if let Some(reference) = pushed.get(unit.image) {
            return Ok(reference.clone());
        }
        let cannot = |why: String| SchedError::Start { slot: format!("{}.*", unit.process), why: format!("cannot push the image to the cluster's registry {registry}: {why}") };
        let repo = format!("{registry}/berth/{}", unit.app);
        let tag = format!("v{}", unit.release);
        self.runtime.tag(unit.image, &repo, &tag).await.map_err(|e| cannot(e.to_string()))?;
        let options = bollard::query_parameters::PushImageOptions { tag: Some(tag.clone()), ..Default::default() };
        let mut stream = self.docker.push_image(&repo, Some(options), login.as_ref().map(|l| l.credentials()));
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| cannot(e.to_string()))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(cannot(message));
            }
        }
        let digests = self.runtime.repo_digests(&format!("{repo}:{tag}")).await;
        let reference = digests.into_iter().find(|d| d.starts_with(&format!("{repo}@"))).ok_or_else(|| cannot("the registry gave no digest".into()))?;
        // The registry's name for it is not one of the app's images: untagged here (the
        // nodes pull it by digest).
        self.runtime.remove_image(&format!("{repo}:{tag}")).await;
        pushed.insert(unit.image.to_string(), reference.clone());
        Ok(reference)
    }

    /// The login the servers pull with, handed over with each service.
    fn credentials(&self) -> Option<bollard::auth::DockerCredentials> {
        self.registry.as_ref()?.login.as_ref().map(|l| l.credentials())
    }

    /// The engine-wide name of the service of an app's process in a release.
    fn service_name(&self, app: &str, process: &str, release: u32) -> String {
        service_name(app, process, release, &crate::runtime::root_tag(&self.root))
    }

    /// This root's services of an app (every release).
    async fn services(&self, app: &str) -> Result<Vec<ServiceInfo>, SchedError> {
        self.listed_services(Some(app)).await
    }

    /// This root's swarm services (of one app, or of all).
    async fn listed_services(&self, app: Option<&str>) -> Result<Vec<ServiceInfo>, SchedError> {
        let mut labels = vec![format!("{LABEL_ROOT}={}", self.root), format!("{LABEL_SCHEDULER}=swarm")];
        labels.extend(app.map(|app| format!("{LABEL_APP}={app}")));
        let options = bollard::query_parameters::ListServicesOptions { filters: Some(HashMap::from([("label".to_string(), labels)])), ..Default::default() };
        let listed = self.docker.list_services(Some(options)).await.map_err(engine)?;
        Ok(listed.into_iter().filter_map(ServiceInfo::of).collect())
    }

    /// The tasks Swarm means to run for a service (older tasks of a slot are history). A
    /// service that is gone has none.
    async fn tasks(&self, service: &str) -> Result<Vec<Task>, SchedError> {
        Ok(self.running_wanted().await?.into_iter().filter(|t| t.service_id.as_deref() == Some(service)).collect())
    }

    /// Every task the cluster means to run now, in one call (a filter by service fails once
    /// the service is removed, which a deploy does at any time).
    async fn running_wanted(&self) -> Result<Vec<Task>, SchedError> {
        let filters = HashMap::from([("desired-state".to_string(), vec!["running".to_string()])]);
        let options = bollard::query_parameters::ListTasksOptions { filters: Some(filters) };
        self.docker.list_tasks(Some(options)).await.map_err(engine)
    }

    /// Every task of a service, history included (tasks Swarm gave up on are shut down at
    /// once, so they show only here).
    async fn all_tasks_of(&self, service: &str) -> Result<Vec<Task>, SchedError> {
        let filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        let options = bollard::query_parameters::ListTasksOptions { filters: Some(filters) };
        self.docker.list_tasks(Some(options)).await.map_err(engine)
    }

    /// A node's address, asked once.
    async fn node_address(&self, node: &str) -> Option<String> {
        if let Some(addr) = self.nodes.lock().unwrap_or_else(|p| p.into_inner()).get(node) {
            return Some(addr.clone());
        }
        if node.is_empty() {
            return None;
        }
        let inspected = self.docker.inspect_node(node).await.ok()?;
        // A manager's own Status.Addr may read 0.0.0.0: its manager address is the one others use.
        let manager = inspected.manager_status.and_then(|m| m.addr).and_then(|a| a.rsplit_once(':').map(|(host, _)| host.to_string()));
        let addr = [inspected.status.and_then(|s| s.addr), manager].into_iter().flatten().find(|a| usable_address(a))?;
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).insert(node.to_string(), addr.clone());
        Some(addr)
    }

    /// The nodes that are not ready now (down, disconnected): their tasks are not routed,
    /// whatever the manager still says of them (it notices a lost node's tasks later).
    async fn lost_nodes(&self) -> std::collections::HashSet<String> {
        let nodes = self.docker.list_nodes(None).await.unwrap_or_default();
        nodes.into_iter().filter(|n| n.status.as_ref().and_then(|s| s.state) != Some(bollard::models::NodeState::READY)).filter_map(|n| n.id).collect()
    }

    /// Whether a task runs, on a node that is there.
    fn runs(task: &Task, lost: &std::collections::HashSet<String>) -> bool {
        state(task) == Some(TaskState::RUNNING) && !task.node_id.as_ref().is_some_and(|n| lost.contains(n))
    }

    /// Where a running task is reached: its node's address and the port it published there.
    async fn task_endpoint(&self, task: &Task) -> Option<String> {
        let status = task.status.as_ref()?;
        let wanted = task.spec.as_ref().and_then(|s| s.container_spec.as_ref()).and_then(|c| c.env.as_ref()).and_then(|env| env.iter().find_map(|e| e.strip_prefix("PORT=")?.parse::<i64>().ok()));
        // One entry per host binding (0.0.0.0 and ::): the IPv4 one comes first.
        let ports = status.port_status.as_ref()?.ports.as_ref()?;
        let port = ports.iter().filter(|p| wanted.is_none() || p.target_port == wanted).find_map(|p| p.published_port)?;
        let addr = self.node_address(task.node_id.as_deref()?).await?;
        Some(format!("{addr}:{port}"))
    }

    /// Creates the service of one process type of a release with `replicas` tasks.
    async fn create(&self, unit: &Unit<'_>, replicas: u32) -> Result<String, SchedError> {
        let name = self.service_name(unit.app, unit.process, unit.release);
        let image = self.distribute(unit).await?;
        let spec = service_spec(&name, &Unit { image: &image, ..unit.clone() }, replicas, &self.root);
        // Left from an interrupted attempt at this release.
        let _ = self.docker.delete_service(&name).await;
        self.docker.create_service(spec, self.credentials()).await.map_err(|e| SchedError::Swarm(said(e)))?;
        Ok(name)
    }

    /// Waits until the service runs `replicas` tasks (each with its endpoint, for web), at
    /// most `limit`: the tasks that run. A task Swarm could not start or that ended fails it
    /// at once, saying why (as a container that crashes at start fails a docker-local deploy).
    async fn running_tasks(&self, service: &str, process: &str, replicas: u32, limit: Duration) -> Result<Vec<Task>, SchedError> {
        let deadline = Instant::now() + limit;
        loop {
            let all = self.all_tasks_of(service).await?;
            if let Some(why) = all.iter().find_map(failure) {
                return Err(SchedError::Swarm(why));
            }
            let mut running: Vec<Task> = all.into_iter().filter(|t| t.desired_state == Some(TaskState::RUNNING) && state(t) == Some(TaskState::RUNNING)).collect();
            running.sort_by_key(|t| t.slot.unwrap_or(0));
            let reachable = process != crate::process::WEB || running.iter().all(|t| t.status.as_ref().and_then(|s| s.port_status.as_ref()).is_some());
            if running.len() as u32 >= replicas && reachable {
                return Ok(running);
            }
            if Instant::now() > deadline {
                return Err(SchedError::Swarm(format!("{} of {replicas} tasks of {process} run after {}s", running.len(), limit.as_secs())));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Removes a service (Swarm stops its tasks, SIGKILL after the spec's grace).
    async fn remove_service(&self, service: &str) -> Result<(), SchedError> {
        match self.docker.delete_service(service).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// Sets a service's replicas (the whole spec goes back, at its current version).
    async fn scale(&self, service: &str, replicas: u32) -> Result<(), SchedError> {
        let current = self.docker.inspect_service(service, None).await.map_err(engine)?;
        let version = current.version.and_then(|v| v.index).and_then(|v| i32::try_from(v).ok()).unwrap_or(0);
        let mut spec = current.spec.unwrap_or_default();
        spec.mode = Some(replicated(replicas));
        let options = bollard::query_parameters::UpdateServiceOptions { version, ..Default::default() };
        self.docker.update_service(service, spec, options, self.credentials()).await.map_err(engine)?;
        Ok(())
    }

    /// The tasks the cluster means to run for this root's services (of one app, or of
    /// all), each with its service.
    async fn tasks_of(&self, app: Option<&str>) -> Result<Vec<(Task, ServiceInfo)>, SchedError> {
        let services: HashMap<String, ServiceInfo> = self.listed_services(app).await?.into_iter().map(|s| (s.id.clone(), s)).collect();
        let tasks = self.running_wanted().await?;
        Ok(tasks.into_iter().filter_map(|t| Some((t.clone(), services.get(t.service_id.as_deref()?)?.clone()))).collect())
    }

    /// Every task of this root's swarm services: id → (app, running on a node that is there).
    async fn all_tasks(&self) -> Result<HashMap<String, (String, bool)>, SchedError> {
        let tasks = self.tasks_of(None).await?;
        let lost = if tasks.is_empty() { Default::default() } else { self.lost_nodes().await };
        Ok(tasks.into_iter().map(|(t, s)| (t.id.clone().unwrap_or_default(), (s.app, Swarm::runs(&t, &lost)))).collect())
    }
}

/// A service berth made, as listed.
#[derive(Clone)]
struct ServiceInfo {
    id: String,
    name: String,
    app: String,
    process: String,
    release: u32,
    replicas: u32,
}

impl ServiceInfo {
    fn of(service: bollard::models::Service) -> Option<ServiceInfo> {
        let spec = service.spec?;
        let labels = spec.labels.unwrap_or_default();
        Some(ServiceInfo {
            id: service.id?,
            name: spec.name.unwrap_or_default(),
            app: labels.get(LABEL_APP)?.clone(),
            process: labels.get(LABEL_PROCESS)?.clone(),
            release: labels.get(LABEL_RELEASE)?.parse().ok()?,
            replicas: spec.mode.and_then(|m| m.replicated).and_then(|r| r.replicas).unwrap_or(0) as u32,
        })
    }
}

fn engine(e: bollard::errors::Error) -> SchedError {
    SchedError::Engine(e.into())
}

/// The engine's words, on one line.
pub fn said(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.lines().next().unwrap_or_default().to_string(),
        other => other.to_string(),
    }
}

/// An address other machines reach a node at (not unset, any or loopback). Pure.
/// A node address berth's nginx can reach a task at. Loopback is one: only a manager that
/// advertises it has it, in a cluster of that one server, where nginx runs too.
fn usable_address(addr: &str) -> bool {
    addr.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_unspecified())
}

/// A service's name: `berth-APP-PROCESS-vN-ROOT`, as Swarm takes names (a DNS label: no
/// dots, at most 63 characters; a hash of it when longer). Pure.
pub fn service_name(app: &str, process: &str, release: u32, root_tag: &str) -> String {
    let name = format!("berth-{}-{process}-v{release}-{root_tag}", app.replace('.', "-"));
    if name.len() <= 63 {
        return name;
    }
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let keep: String = app.chars().take(24).map(|c| if c == '.' { '-' } else { c }).collect();
    format!("berth-{}-{hash:016x}", keep.trim_end_matches('-'))
}

fn state(task: &Task) -> Option<TaskState> {
    task.status.as_ref()?.state
}

/// Why a task will not run, if Swarm gave up on it (rejected: no node fits, the image cannot
/// be had; failed: it exited).
fn failure(task: &Task) -> Option<String> {
    let status = task.status.as_ref()?;
    match status.state? {
        TaskState::REJECTED | TaskState::FAILED => Some(status.err.clone().or_else(|| status.message.clone()).unwrap_or_else(|| "the task failed".into())),
        _ => None,
    }
}

fn replicated(replicas: u32) -> ServiceSpecMode {
    ServiceSpecMode { replicated: Some(ServiceSpecModeReplicated { replicas: Some(i64::from(replicas)) }), ..Default::default() }
}

/// The port an app's container listens on: its `PORT`.
fn port_of(unit: &Unit<'_>) -> Option<i64> {
    unit.env.iter().find_map(|e| e.strip_prefix("PORT="))?.parse().ok()
}

/// The service of one process type of a release. Pure.
pub fn service_spec(name: &str, unit: &Unit<'_>, replicas: u32, root: &str) -> ServiceSpec {
    let labels = unit.with_app_label(HashMap::from([
        (LABEL_APP.to_string(), unit.app.to_string()),
        (LABEL_PROCESS.to_string(), unit.process.to_string()),
        (LABEL_RELEASE.to_string(), unit.release.to_string()),
        (LABEL_ROOT.to_string(), root.to_string()),
        (LABEL_SCHEDULER.to_string(), "swarm".to_string()),
    ]));
    let web = unit.process == crate::process::WEB;
    // Each task publishes the app's port on its own node, on a port Swarm picks.
    let ports = port_of(unit).filter(|_| web).map(|port| {
        vec![EndpointPortConfig { target_port: Some(port), publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST), ..Default::default() }]
    });
    let container = TaskSpecContainerSpec {
        image: Some(unit.image.to_string()),
        labels: Some(labels.clone()),
        args: unit.cmd.clone(),
        env: Some(unit.env.clone()),
        init: Some(unit.init),
        stop_grace_period: Some(unit.stop_timeout.as_nanos() as i64),
        ..Default::default()
    };
    let task = TaskSpec {
        container_spec: Some(container),
        restart_policy: Some(restart_policy(unit.restart)),
        log_driver: Some(TaskSpecLogDriver { name: Some("json-file".into()), options: Some(unit.log_options()) }),
        placement: Some(TaskSpecPlacement { constraints: (!unit.placement.is_empty()).then(|| unit.placement.clone()), ..Default::default() }),
        resources: Some(TaskSpecResources {
            limits: Some(Limit { nano_cpus: unit.nano_cpus, memory_bytes: unit.memory, ..Default::default() }),
            reservations: (unit.cpu_reservation.is_some() || unit.memory_reservation.is_some())
                .then(|| ResourceObject { nano_cpus: unit.cpu_reservation, memory_bytes: unit.memory_reservation, ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    };
    ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(labels),
        task_template: Some(task),
        mode: Some(replicated(replicas)),
        endpoint_spec: Some(EndpointSpec { mode: Some(EndpointSpecModeEnum::DNSRR), ports }),
        ..Default::default()
    }
}

/// Units by process type, in order: (a unit of it, how many).
fn by_process<'u, 'a>(units: &'u [Unit<'a>]) -> Vec<(&'u Unit<'a>, u32)> {
    let mut groups: Vec<(&Unit<'_>, u32)> = Vec::new();
    for unit in units {
        match groups.iter_mut().find(|(u, _)| u.process == unit.process) {
            Some((_, n)) => *n += 1,
            None => groups.push((unit, 1)),
        }
    }
    groups
}

#[async_trait]
impl Scheduler for Swarm {
    fn heals_itself(&self) -> bool {
        true
    }

    async fn prepare(&self) -> Result<(), SchedError> {
        manager_state(&self.docker).await.map(|_| ()).map_err(SchedError::Swarm)
    }

    async fn roll_out(&self, units: &[Unit<'_>]) -> Vec<Result<String, SchedError>> {
        if let Some(unit) = units.iter().find(|u| !u.options.is_empty()) {
            // A service's tasks take few of `docker run`'s options, and not in its words.
            let why = format!("docker-options (deploy phase) apply on the docker-local scheduler only: docker-options:clear {} deploy", unit.app);
            return units.iter().map(|u| Err(SchedError::Start { slot: format!("{}.{}", u.process, u.index), why: why.clone() })).collect();
        }
        let mut ids: BTreeMap<(String, u32), Result<String, String>> = BTreeMap::new();
        for (unit, replicas) in by_process(units) {
            let name = self.service_name(unit.app, unit.process, unit.release);
            let started = async {
                self.create(unit, replicas).await?;
                self.running_tasks(&name, unit.process, replicas, START_LIMIT).await
            };
            let result = started.await;
            if result.is_err() {
                // Nothing of a process type that did not start stays behind.
                let _ = self.remove_service(&name).await;
            }
            for index in 1..=replicas {
                let id = match &result {
                    Ok(tasks) => tasks.get(index as usize - 1).and_then(|t| t.id.clone()).ok_or_else(|| "Swarm ran fewer tasks".to_string()),
                    Err(e) => Err(e.to_string()),
                };
                ids.insert((unit.process.to_string(), index), id);
            }
        }
        units
            .iter()
            .map(|u| {
                let id = ids.remove(&(u.process.to_string(), u.index)).unwrap_or_else(|| Err("Swarm ran fewer tasks".into()));
                id.map_err(|why| SchedError::Start { slot: format!("{}.{}", u.process, u.index), why })
            })
            .collect()
    }

    async fn converge(&self, app: &str, release: u32, units: &[Unit<'_>]) -> Result<Converged, SchedError> {
        let services = self.services(app).await?;
        let mut converged = Converged::default();
        for (unit, replicas) in by_process(units) {
            let name = match services.iter().find(|s| s.release == release && s.process == unit.process) {
                Some(s) if s.replicas == replicas => s.name.clone(),
                Some(s) => {
                    self.scale(&s.id, replicas).await?;
                    s.name.clone()
                }
                None => self.create(unit, replicas).await?,
            };
            // What runs now is routed; the rest is routed as it comes (a node may be down).
            let tasks = match self.running_tasks(&name, unit.process, replicas, CONVERGE_LIMIT).await {
                Ok(tasks) => tasks,
                Err(_) => self.tasks(&self.docker.inspect_service(&name, None).await.ok().and_then(|s| s.id).unwrap_or_default()).await?.into_iter().filter(|t| state(t) == Some(TaskState::RUNNING)).collect(),
            };
            if unit.process == crate::process::WEB {
                converged.web.extend(tasks.iter().filter_map(|t| t.id.clone()));
            }
        }
        let wanted: Vec<&str> = units.iter().map(|u| u.process).collect();
        for stale in services.iter().filter(|s| s.release != release || !wanted.contains(&s.process.as_str())) {
            let tasks: Vec<String> = self.tasks(&stale.id).await?.into_iter().filter_map(|t| t.id).collect();
            if tasks.is_empty() {
                // Stopped (no replicas): nothing to drain, it goes now.
                self.remove_service(&stale.id).await?;
            }
            converged.retire.extend(tasks);
        }
        Ok(converged)
    }

    async fn instances(&self, app: &str) -> Result<Vec<Instance>, SchedError> {
        let mut instances = Vec::new();
        let lost = self.lost_nodes().await;
        for (task, service) in self.tasks_of(Some(app)).await? {
            let slot = task.slot.unwrap_or(0) as u32;
            let said = task.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default();
            let node = task.node_id.clone().unwrap_or_default();
            let on = self.node_address(&node).await.unwrap_or_else(|| if node.is_empty() { "no node yet".into() } else { node.clone() });
            instances.push(Instance {
                id: task.id.clone().unwrap_or_default(),
                app: app.to_string(),
                name: format!("{}.{slot}", service.name),
                process: service.process.clone(),
                index: slot,
                release: service.release,
                running: Swarm::runs(&task, &lost),
                status: if lost.contains(&node) { format!("its server is lost ({said}) on node {on}") } else { format!("{said} on node {on}") },
            });
        }
        Ok(instances)
    }

    async fn probe(&self, id: &str) -> Probe {
        let Ok(task) = self.docker.inspect_task(id).await else {
            return Probe { state: reconcile::State::Gone, endpoint: None };
        };
        let by_berth = task.desired_state != Some(TaskState::RUNNING);
        let lost = task.node_id.as_ref().is_some_and(|n| !n.is_empty()) && self.lost_nodes().await.contains(task.node_id.as_deref().unwrap_or_default());
        match state(&task) {
            Some(TaskState::RUNNING) if !by_berth && !lost => Probe { state: reconcile::State::Running, endpoint: self.task_endpoint(&task).await },
            Some(TaskState::REMOVE) | None => Probe { state: reconcile::State::Gone, endpoint: None },
            // Not running (yet, or any more): Swarm starts or replaces it, berth only routes.
            _ => {
                let code = task.status.as_ref().and_then(|s| s.container_status.as_ref()).and_then(|c| c.exit_code);
                Probe { state: reconcile::State::Exited { code, by_berth: true }, endpoint: None }
            }
        }
    }

    async fn last_output(&self, id: &str, lines: usize) -> Vec<String> {
        let options = bollard::query_parameters::LogsOptions { stdout: true, stderr: true, tail: lines.to_string(), ..Default::default() };
        let mut stream = self.docker.task_logs(id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        text.lines().map(str::to_string).collect()
    }

    fn log_lines(&self, id: &str, tail: usize, follow: bool) -> BoxStream<'static, String> {
        let options = bollard::query_parameters::LogsOptions { stdout: true, stderr: true, follow, timestamps: true, tail: tail.to_string(), ..Default::default() };
        let chunks = self.docker.task_logs(id, Some(options));
        crate::output::lines_of(crate::output::ok_until_error(chunks).map(|chunk| chunk.into_bytes()), crate::output::MAX_LOG_LINE)
    }

    async fn retire(&self, ids: &[String], _grace: Duration) -> Vec<(String, SchedError)> {
        let mut failed = Vec::new();
        // By service and slot (Swarm gives a task it replaces a new id, in the same slot): all
        // its slots retired, the service goes; some, it runs fewer.
        let mut by_service: HashMap<String, (Vec<String>, Vec<i64>)> = HashMap::new();
        for id in ids {
            match self.docker.inspect_task(id).await {
                Ok(task) => {
                    let entry = by_service.entry(task.service_id.unwrap_or_default()).or_default();
                    entry.0.push(id.clone());
                    entry.1.push(task.slot.unwrap_or(0));
                }
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(e) => failed.push((id.clone(), engine(e))),
            }
        }
        for (service, (retiring, slots)) in by_service {
            let done = async {
                let left = self.tasks(&service).await?.iter().filter(|t| !slots.contains(&t.slot.unwrap_or(0))).count();
                if left == 0 { self.remove_service(&service).await } else { self.scale(&service, left as u32).await }
            };
            if let Err(e) = done.await {
                failed.extend(retiring.into_iter().map(|id| (id, SchedError::Swarm(e.to_string()))));
            }
        }
        failed
    }

    async fn discard(&self, ids: &[String]) -> Result<(), SchedError> {
        // A rollout that did not go through: its services go whole.
        let mut services: Vec<String> = Vec::new();
        for id in ids {
            if let Ok(task) = self.docker.inspect_task(id).await
                && let Some(service) = task.service_id
                && !services.contains(&service)
            {
                services.push(service);
            }
        }
        for service in services {
            self.remove_service(&service).await?;
        }
        Ok(())
    }

    async fn stop(&self, app: &str, _grace: Duration) -> Result<usize, SchedError> {
        let mut stopped = 0;
        for service in self.services(app).await? {
            stopped += self.tasks(&service.id).await?.iter().filter(|t| state(t) == Some(TaskState::RUNNING)).count();
            self.scale(&service.id, 0).await?;
        }
        Ok(stopped)
    }

    async fn remove_all(&self, app: &str) -> Result<(), SchedError> {
        for service in self.services(app).await? {
            self.remove_service(&service.id).await?;
        }
        self.local.remove_all(app).await
    }

    async fn start_again(&self, _id: &str) -> Result<(), SchedError> {
        Err(SchedError::Swarm("Swarm starts its tasks again itself".into()))
    }

    async fn run_once(&self, unit: &Unit<'_>, client: Client<'_>, limit: Option<TimeLimit>) -> Result<i64, SchedError> {
        self.local.run_once(unit, client, limit).await
    }

    fn events(&self) -> BoxStream<'static, Result<InstanceEvent, SchedError>> {
        let this = Swarm::new(self.runtime.clone(), self.registry.clone());
        // Never an error: while this server manages no swarm (or the engine is away, which
        // docker-local's stream reports), it asks again now and then.
        futures_util::stream::unfold((this, None::<HashMap<String, (String, bool)>>), |(this, before)| async move {
            if before.is_some() {
                tokio::time::sleep(POLL).await;
            }
            let now = match this.all_tasks().await {
                Ok(now) => now,
                Err(_) => {
                    // What was seen stays the baseline: a blip loses no event.
                    tokio::time::sleep(IDLE_POLL).await;
                    return Some((Vec::new(), (this, before)));
                }
            };
            let events = before.map(|before| task_changes(&before, &now)).unwrap_or_default();
            Some((events.into_iter().map(Ok).collect::<Vec<_>>(), (this, Some(now))))
        })
        .flat_map(futures_util::stream::iter)
        .boxed()
    }

    fn hold_starts(&self, _hold: Duration) {
        // Each task publishes a port of its own on its node: a dead task's port is not
        // handed to the next one while nginx may still connect to it.
    }

    fn starts_held(&self) -> bool {
        false
    }

    async fn starts_free(&self) {}
}

/// What changed between two looks at the tasks (id → (app, running)): a task that runs now
/// started; one that ran and does not, died (Swarm replaces it); one gone was removed. Pure.
pub fn task_changes(before: &HashMap<String, (String, bool)>, now: &HashMap<String, (String, bool)>) -> Vec<InstanceEvent> {
    let event = |id: &str, app: &str, action: &str, died: bool| InstanceEvent { app: app.to_string(), id: id.to_string(), action: action.to_string(), process: true, died };
    let mut events = Vec::new();
    for (id, (app, running)) in now {
        match before.get(id) {
            Some((_, true)) if !running => events.push(event(id, app, "die", true)),
            Some((_, false)) | None if *running => events.push(event(id, app, "start", false)),
            _ => {}
        }
    }
    for (id, (app, _)) in before {
        if !now.contains_key(id) {
            // Removed: by berth (a retired release), or replaced by Swarm (its new task starts).
            events.push(event(id, app, "destroy", false));
        }
    }
    events.sort_by(|a, b| a.id.cmp(&b.id));
    events
}

/// Whether this engine manages a swarm: Ok(its node id), or why berth cannot schedule on it.
pub async fn manager_state(docker: &Docker) -> Result<String, String> {
    let info = docker.info().await.map_err(|e| format!("the Docker engine does not answer: {e}"))?;
    let swarm = info.swarm.unwrap_or_default();
    if swarm.control_available != Some(true) {
        return Err("this server is not a Swarm manager: run cluster:init first".into());
    }
    Ok(swarm.node_id.unwrap_or_default())
}

/// The app's restart policy as Swarm's: `no` never, `on-failure[:N]` after a failure (at
/// most N attempts), `always` and `unless-stopped` whenever a task ends. Pure.
fn restart_policy(policy: crate::store::RestartPolicy) -> TaskSpecRestartPolicy {
    use crate::store::RestartPolicy;
    let (condition, max_attempts) = match policy {
        RestartPolicy::No => (TaskSpecRestartPolicyConditionEnum::NONE, None),
        RestartPolicy::OnFailure(n) => (TaskSpecRestartPolicyConditionEnum::ON_FAILURE, (n > 0).then_some(i64::from(n))),
        RestartPolicy::Always | RestartPolicy::UnlessStopped => (TaskSpecRestartPolicyConditionEnum::ANY, None),
    };
    TaskSpecRestartPolicy { condition: Some(condition), delay: Some(Duration::from_secs(1).as_nanos() as i64), max_attempts, ..Default::default() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit<'a>(process: &'a str, env: Vec<String>) -> Unit<'a> {
        Unit {
            app: "shop",
            process,
            index: 1,
            release: 7,
            image: "reg:5000/berth/shop@sha256:ab",
            env,
            cmd: Some(vec!["serve".into()]),
            binds: Vec::new(),
            memory: Some(256 << 20),
            nano_cpus: None,
            memory_reservation: Some(128 << 20),
            cpu_reservation: Some(500_000_000),
            tld: None,
            restart: crate::store::RestartPolicy::OnFailure(3),
            init: true,
            parallel_starts: 1,
            log_max_size: Some("20m".into()),
            app_label: Some("com.example.app".into()),
            stop_timeout: Duration::from_secs(45),
            networks: Vec::new(),
            services: Vec::new(),
            options: Vec::new(),
            placement: vec!["node.labels.env==qa".into()],
        }
    }

    #[test]
    fn web_publishes_its_port_per_task_and_workers_publish_none() {
        let web = service_spec("berth-shop-web-v7-x", &unit("web", vec!["PORT=5000".into()]), 3, "/root");
        let endpoint = web.endpoint_spec.clone().unwrap();
        assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::DNSRR), "no virtual IP");
        let ports = endpoint.ports.unwrap();
        assert_eq!((ports[0].target_port, ports[0].published_port, ports[0].publish_mode), (Some(5000), None, Some(EndpointPortConfigPublishModeEnum::HOST)));
        assert_eq!(web.mode.unwrap().replicated.unwrap().replicas, Some(3));
        let task = web.task_template.unwrap();
        assert_eq!(task.placement.unwrap().constraints, Some(vec!["node.labels.env==qa".to_string()]));
        assert_eq!(task.container_spec.as_ref().unwrap().args, Some(vec!["serve".to_string()]));
        let logs = task.log_driver.clone().unwrap().options.unwrap();
        assert_eq!(logs.get("max-size").map(String::as_str), Some("20m"), "the app's logs:set max-size");
        let container = task.container_spec.clone().unwrap();
        assert_eq!(container.stop_grace_period, Some(45_000_000_000), "the app's stop timeout");
        assert_eq!(container.labels.unwrap().get("com.example.app").map(String::as_str), Some("shop"), "the app's label alias");
        let restart = task.restart_policy.clone().unwrap();
        assert_eq!((restart.condition, restart.max_attempts), (Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE), Some(3)), "the app's on-failure:3");
        assert_eq!(restart_policy(crate::store::RestartPolicy::No).condition, Some(TaskSpecRestartPolicyConditionEnum::NONE));
        assert_eq!(restart_policy(crate::store::RestartPolicy::UnlessStopped).condition, Some(TaskSpecRestartPolicyConditionEnum::ANY));
        let resources = task.resources.unwrap();
        assert_eq!(resources.limits.unwrap().memory_bytes, Some(256 << 20));
        let reserved = resources.reservations.unwrap();
        assert_eq!((reserved.memory_bytes, reserved.nano_cpus), (Some(128 << 20), Some(500_000_000)));
        assert_eq!(web.labels.unwrap().get("berth.release").map(String::as_str), Some("7"));
        let worker = service_spec("w", &unit("worker", vec!["PORT=5000".into()]), 1, "/root");
        assert_eq!(worker.endpoint_spec.unwrap().ports, None);
    }

    #[test]
    fn task_changes_say_what_started_died_and_went() {
        let seen = |pairs: &[(&str, bool)]| pairs.iter().map(|(id, running)| (id.to_string(), ("shop".to_string(), *running))).collect::<HashMap<_, _>>();
        let events = task_changes(&seen(&[("a", true), ("b", false), ("c", true)]), &seen(&[("a", false), ("b", true), ("d", false)]));
        let got: Vec<(String, String, bool)> = events.into_iter().map(|e| (e.id, e.action, e.died)).collect();
        assert_eq!(
            got,
            vec![("a".into(), "die".into(), true), ("b".into(), "start".into(), false), ("c".into(), "destroy".into(), false)],
            "d is new and not running: nothing yet"
        );
    }

    #[test]
    fn service_names_are_dns_labels() {
        assert_eq!(service_name("shop", "web", 3, "0123abcd"), "berth-shop-web-v3-0123abcd");
        assert_eq!(service_name("my.shop", "web", 3, "0123abcd"), "berth-my-shop-web-v3-0123abcd");
        let long = service_name(&"a".repeat(63), "worker", 12, "0123abcd");
        assert!(long.len() <= 63 && !long.contains('.'), "{long}");
        assert_ne!(long, service_name(&"a".repeat(63), "worker", 13, "0123abcd"));
        assert!(usable_address("10.231.0.11") && !usable_address("0.0.0.0") && usable_address("127.0.0.1") && !usable_address(""));
    }
}
