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
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, EndpointSpec, EndpointSpecModeEnum, Limit, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, Task,
    TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
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
    registry: Option<String>,
    /// Image id → the reference nodes pull it by (pushed once).
    pushed: tokio::sync::Mutex<HashMap<String, String>>,
}

impl Swarm {
    pub fn new(runtime: Runtime, registry: Option<String>) -> Swarm {
        let docker = runtime.docker().clone();
        let root = runtime.root().to_string();
        Swarm { local: super::docker::DockerLocal::new(runtime.clone()), runtime, docker, root, nodes: Default::default(), registry, pushed: Default::default() }
    }

    /// The reference every node pulls a unit's image by: pushed to the cluster's registry
    /// (once) and named by its digest there; the image as it is here without a registry.
    async fn distribute(&self, unit: &Unit<'_>) -> Result<String, SchedError> {
        let Some(registry) = &self.registry else { return Ok(unit.image.to_string()) };
        let mut pushed = self.pushed.lock().await;
        if let Some(reference) = pushed.get(unit.image) {
            return Ok(reference.clone());
        }
        let cannot = |why: String| SchedError::Start { slot: format!("{}.*", unit.process), why: format!("cannot push the image to the cluster's registry {registry}: {why}") };
        let repo = format!("{registry}/berth/{}", unit.app);
        let tag = format!("v{}", unit.release);
        self.runtime.tag(unit.image, &repo, &tag).await.map_err(|e| cannot(e.to_string()))?;
        let options = bollard::query_parameters::PushImageOptions { tag: Some(tag.clone()), ..Default::default() };
        let mut stream = self.docker.push_image(&repo, Some(options), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| cannot(e.to_string()))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(cannot(message));
            }
        }
        let digests = self.runtime.repo_digests(&format!("{repo}:{tag}")).await;
        let reference = digests.into_iter().find(|d| d.starts_with(&format!("{repo}@"))).ok_or_else(|| cannot("the registry gave no digest".into()))?;
        pushed.insert(unit.image.to_string(), reference.clone());
        Ok(reference)
    }

    /// The engine-wide name of the service of an app's process in a release.
    fn service_name(&self, app: &str, process: &str, release: u32) -> String {
        format!("berth-{app}-{process}-v{release}-{}", crate::runtime::root_tag(&self.root))
    }

    /// This root's services of an app (every release): (id, process, release, replicas).
    async fn services(&self, app: &str) -> Result<Vec<ServiceInfo>, SchedError> {
        let labels = vec![format!("{LABEL_APP}={app}"), format!("{LABEL_ROOT}={}", self.root), format!("{LABEL_SCHEDULER}=swarm")];
        let options = bollard::query_parameters::ListServicesOptions { filters: Some(HashMap::from([("label".to_string(), labels)])), ..Default::default() };
        let listed = self.docker.list_services(Some(options)).await.map_err(engine)?;
        Ok(listed.into_iter().filter_map(ServiceInfo::of).collect())
    }

    /// The tasks Swarm means to run for a service (older tasks of a slot are history).
    async fn tasks(&self, service: &str) -> Result<Vec<Task>, SchedError> {
        let filters = HashMap::from([("service".to_string(), vec![service.to_string()]), ("desired-state".to_string(), vec!["running".to_string()])]);
        let options = bollard::query_parameters::ListTasksOptions { filters: Some(filters) };
        self.docker.list_tasks(Some(options)).await.map_err(engine)
    }

    /// A node's address, asked once.
    async fn node_address(&self, node: &str) -> Option<String> {
        if let Some(addr) = self.nodes.lock().unwrap_or_else(|p| p.into_inner()).get(node) {
            return Some(addr.clone());
        }
        let addr = self.docker.inspect_node(node).await.ok()?.status?.addr?;
        self.nodes.lock().unwrap_or_else(|p| p.into_inner()).insert(node.to_string(), addr.clone());
        Some(addr)
    }

    /// Where a running task is reached: its node's address and the port it published there.
    async fn task_endpoint(&self, task: &Task) -> Option<String> {
        let status = task.status.as_ref()?;
        let port = status.port_status.as_ref()?.ports.as_ref()?.iter().find_map(|p| p.published_port)?;
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
        self.docker.create_service(spec, None).await.map_err(|e| SchedError::Start { slot: format!("{}.*", unit.process), why: e.to_string() })?;
        Ok(name)
    }

    /// Waits until the service runs `replicas` tasks (each with its endpoint, for web):
    /// their ids by slot. A task Swarm could not start fails it, saying why.
    async fn running_tasks(&self, service: &str, process: &str, replicas: u32) -> Result<Vec<Task>, SchedError> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let mut tasks = self.tasks(service).await?;
            tasks.sort_by_key(|t| t.slot.unwrap_or(0));
            if let Some(why) = tasks.iter().find_map(failure) {
                return Err(SchedError::Start { slot: format!("{process}.*"), why });
            }
            let running = tasks.iter().filter(|t| state(t) == Some(TaskState::RUNNING)).count();
            let reachable = process != crate::process::WEB || tasks.iter().all(|t| t.status.as_ref().and_then(|s| s.port_status.as_ref()).is_some());
            if running as u32 >= replicas && reachable {
                return Ok(tasks);
            }
            if Instant::now() > deadline {
                let said: Vec<String> = tasks.iter().filter_map(|t| t.status.as_ref()?.message.clone()).collect();
                return Err(SchedError::Start { slot: format!("{process}.*"), why: format!("{running} of {replicas} tasks run after {}s ({})", START_LIMIT.as_secs(), said.join("; ")) });
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
        let version = current.version.and_then(|v| v.index).unwrap_or(0) as i32;
        let mut spec = current.spec.unwrap_or_default();
        spec.mode = Some(replicated(replicas));
        let options = bollard::query_parameters::UpdateServiceOptions { version, ..Default::default() };
        self.docker.update_service(service, spec, options, None).await.map_err(engine)?;
        Ok(())
    }

    /// Every running task of this root's swarm services: id → (app, running).
    async fn all_tasks(&self) -> Result<HashMap<String, (String, bool)>, SchedError> {
        let labels = vec![format!("{LABEL_ROOT}={}", self.root), format!("{LABEL_SCHEDULER}=swarm")];
        let options = bollard::query_parameters::ListServicesOptions { filters: Some(HashMap::from([("label".to_string(), labels)])), ..Default::default() };
        let services: Vec<ServiceInfo> = self.docker.list_services(Some(options)).await.map_err(engine)?.into_iter().filter_map(ServiceInfo::of).collect();
        let mut all = HashMap::new();
        for service in services {
            for task in self.tasks(&service.id).await? {
                let running = state(&task) == Some(TaskState::RUNNING);
                all.insert(task.id.clone().unwrap_or_default(), (service.app.clone(), running));
            }
        }
        Ok(all)
    }
}

/// A service berth made, as listed.
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
    let labels = HashMap::from([
        (LABEL_APP.to_string(), unit.app.to_string()),
        (LABEL_PROCESS.to_string(), unit.process.to_string()),
        (LABEL_RELEASE.to_string(), unit.release.to_string()),
        (LABEL_ROOT.to_string(), root.to_string()),
        (LABEL_SCHEDULER.to_string(), "swarm".to_string()),
    ]);
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
        init: Some(true),
        stop_grace_period: Some(Duration::from_secs(10).as_nanos() as i64),
        ..Default::default()
    };
    let task = TaskSpec {
        container_spec: Some(container),
        restart_policy: Some(TaskSpecRestartPolicy { condition: Some(TaskSpecRestartPolicyConditionEnum::ANY), delay: Some(Duration::from_secs(1).as_nanos() as i64), ..Default::default() }),
        placement: Some(TaskSpecPlacement { constraints: (!unit.placement.is_empty()).then(|| unit.placement.clone()), ..Default::default() }),
        resources: Some(TaskSpecResources { limits: Some(Limit { nano_cpus: unit.nano_cpus, memory_bytes: unit.memory, ..Default::default() }), ..Default::default() }),
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
        manager_state(&self.docker).await.map(|_| ()).map_err(SchedError::NoEndpoint)
    }

    async fn roll_out(&self, units: &[Unit<'_>]) -> Vec<Result<String, SchedError>> {
        let mut ids: BTreeMap<(String, u32), Result<String, String>> = BTreeMap::new();
        for (unit, replicas) in by_process(units) {
            let started = async {
                let service = self.create(unit, replicas).await?;
                self.running_tasks(&service, unit.process, replicas).await
            };
            match started.await {
                Ok(tasks) => {
                    for (i, task) in tasks.iter().enumerate() {
                        ids.insert((unit.process.to_string(), i as u32 + 1), Ok(task.id.clone().unwrap_or_default()));
                    }
                }
                Err(e) => {
                    for index in 1..=replicas {
                        ids.insert((unit.process.to_string(), index), Err(e.to_string()));
                    }
                }
            }
        }
        units
            .iter()
            .map(|u| match ids.remove(&(u.process.to_string(), u.index)) {
                Some(Ok(id)) => Ok(id),
                Some(Err(why)) => Err(SchedError::Start { slot: format!("{}.{}", u.process, u.index), why }),
                None => Err(SchedError::Start { slot: format!("{}.{}", u.process, u.index), why: "Swarm ran fewer tasks".into() }),
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
            let tasks = self.running_tasks(&name, unit.process, replicas).await?;
            if unit.process == crate::process::WEB {
                converged.web.extend(tasks.iter().filter_map(|t| t.id.clone()));
            }
        }
        let wanted: Vec<&str> = units.iter().map(|u| u.process).collect();
        for stale in services.iter().filter(|s| s.release != release || !wanted.contains(&s.process.as_str())) {
            converged.retire.extend(self.tasks(&stale.id).await?.into_iter().filter_map(|t| t.id));
        }
        Ok(converged)
    }

    async fn instances(&self, app: &str) -> Result<Vec<Instance>, SchedError> {
        let mut instances = Vec::new();
        for service in self.services(app).await? {
            for task in self.tasks(&service.id).await? {
                let slot = task.slot.unwrap_or(0) as u32;
                let status = task.status.as_ref();
                let said = status.and_then(|s| s.message.clone()).unwrap_or_default();
                let node = task.node_id.clone().unwrap_or_default();
                instances.push(Instance {
                    id: task.id.clone().unwrap_or_default(),
                    name: format!("{}.{slot}", service.name),
                    process: service.process.clone(),
                    index: slot,
                    release: service.release,
                    running: state(&task) == Some(TaskState::RUNNING),
                    status: format!("{} on node {}", said, self.node_address(&node).await.unwrap_or(node)),
                });
            }
        }
        Ok(instances)
    }

    async fn probe(&self, id: &str) -> Probe {
        let Ok(task) = self.docker.inspect_task(id).await else {
            return Probe { state: reconcile::State::Gone, endpoint: None };
        };
        let by_berth = task.desired_state != Some(TaskState::RUNNING);
        match state(&task) {
            Some(TaskState::RUNNING) if !by_berth => Probe { state: reconcile::State::Running, endpoint: self.task_endpoint(&task).await },
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
        // By service: all its tasks retired, it goes; some, it runs fewer.
        let mut by_service: HashMap<String, Vec<String>> = HashMap::new();
        for id in ids {
            match self.docker.inspect_task(id).await {
                Ok(task) => by_service.entry(task.service_id.unwrap_or_default()).or_default().push(id.clone()),
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(e) => failed.push((id.clone(), engine(e))),
            }
        }
        for (service, retiring) in by_service {
            let left = match self.tasks(&service).await {
                Ok(tasks) => tasks.iter().filter(|t| !retiring.contains(t.id.as_ref().unwrap_or(&String::new()))).count(),
                Err(e) => {
                    failed.extend(retiring.into_iter().map(|id| (id, SchedError::NoEndpoint(e.to_string()))));
                    continue;
                }
            };
            let done = if left == 0 { self.remove_service(&service).await } else { self.scale(&service, left as u32).await };
            if let Err(e) = done {
                failed.extend(retiring.into_iter().map(|id| (id, SchedError::NoEndpoint(e.to_string()))));
            }
        }
        failed
    }

    async fn discard(&self, ids: &[String]) -> Result<(), SchedError> {
        match self.retire(ids, Duration::ZERO).await.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
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
        Err(SchedError::NoEndpoint("Swarm starts its tasks again itself".into()))
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
                    tokio::time::sleep(IDLE_POLL).await;
                    return Some((Vec::new(), (this, None)));
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
    for (id, (app, running)) in before {
        if !now.contains_key(id) {
            events.push(event(id, app, "destroy", *running));
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
