//! The engine the front doors share: state, settings, the Docker engine, nginx, and who is
//! calling.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use crate::output::Output;
use crate::proxy::Nginx;
use crate::runtime::{Runtime, RuntimeError};
use crate::scheduler::{SchedError, Scheduler};
use crate::store::{AppConfig, Role, Store};

/// How long a deploy waits for another deploy of the same app before giving up.
pub const DEPLOY_LOCK_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// Addresses the daemon serves on, after flags have overridden berth.toml.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ssh_listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub https_listen: SocketAddr,
    pub api_listen: SocketAddr,
}

pub struct Engine {
    pub store: Store,
    pub settings: Settings,
    pub nginx: Arc<Nginx>,
    /// This binary: the git hook calls it.
    pub exe: PathBuf,
    runtime: AsyncMutex<Option<Runtime>>,
    /// Where apps run by default (docker-local on the Docker engine), set on first use.
    scheduler: AsyncMutex<Option<Arc<dyn Scheduler>>>,
    /// Where apps run that `scheduler:set APP selected swarm` moved to the cluster.
    swarm: AsyncMutex<Option<Arc<dyn Scheduler>>>,
    /// The registry the daemon runs for the cluster, when `cluster:init` made one.
    pub registry: crate::scheduler::registry::Registry,
    /// Apps being moved to another scheduler, and where: their deploy goes there, and
    /// nothing else routes them meanwhile (the move's deploy does).
    moving: Mutex<HashMap<String, crate::store::SchedulerName>>,
    deploy_locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    route_locks: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    /// Work a shutdown waits for: deploys (their locks) and pushes in flight.
    busy: Arc<tokio::sync::watch::Sender<usize>>,
    /// Swaps starting containers now (of any app): retirements wait for none.
    starting: Arc<tokio::sync::watch::Sender<usize>>,
    /// Retirements of old instances in flight, by app (a deploy's holders wait for them).
    retiring: Arc<tokio::sync::watch::Sender<HashMap<String, usize>>>,
    /// Builds running now (at most `build_concurrency` of berth.toml).
    builds: Arc<Builds>,
    /// Scheduled jobs running now and how they last ended.
    pub jobs: Jobs,
    /// Itself, for work that outlives a command (waiting for git to move a branch).
    me: std::sync::Weak<Engine>,
    /// Pushes in flight, by the token their `git receive-pack` hands its hook.
    pushes: Pushes,
    /// What nginx counted, sampled every few seconds: the reports' last minute.
    pub traffic: Mutex<crate::traffic::Window>,
    /// Deploys since the daemon started, by app (for metrics).
    pub deploys: Mutex<BTreeMap<String, Deploys>>,
    /// Log drains: their senders, and the containers followed into them.
    pub drains: crate::drains::Drains,
}

/// The upper bounds, in seconds, of the deploy duration histogram.
pub const DEPLOY_BOUNDS: [f64; 9] = [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// An app's deploys since the daemon started: how many, how many failed, how long they took.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deploys {
    pub count: u64,
    pub failures: u64,
    pub seconds: f64,
    /// Deploys by duration (`DEPLOY_BOUNDS`, then the rest), not cumulative.
    pub buckets: [u64; DEPLOY_BOUNDS.len() + 1],
}

impl Deploys {
    pub fn record(&mut self, seconds: f64, failed: bool) {
        self.count += 1;
        self.failures += u64::from(failed);
        self.seconds += seconds;
        let bucket = DEPLOY_BOUNDS.iter().position(|b| seconds <= *b).unwrap_or(DEPLOY_BOUNDS.len());
        self.buckets[bucket] += 1;
    }
}

type Pushes = Arc<Mutex<HashMap<String, Caller>>>;

/// When a scheduled job last started and how it ended (None: still running).
pub type LastRun = (chrono::DateTime<chrono::Utc>, Option<i64>);

/// What the scheduler knows of jobs between runs (not kept across daemon restarts).
#[derive(Default)]
pub struct Jobs {
    /// `APP/ID` of jobs running now.
    running: Mutex<std::collections::HashSet<String>>,
    /// `APP/ID` → when it last started and how it ended (None: still running).
    last: Mutex<std::collections::BTreeMap<String, LastRun>>,
}

impl Jobs {
    /// Marks `key` running; false if it already was.
    pub fn start(&self, key: &str) -> bool {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string())
    }

    pub fn end(&self, key: &str) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// Records that job `key` started now (`code` None) or ended now with `code`.
    pub fn record(&self, key: &str, code: Option<i64>) {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), (chrono::Utc::now(), code));
    }

    /// When the job last started and its exit code (None while it runs).
    pub fn last(&self, app: &str, id: &str) -> Option<LastRun> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).get(&format!("{app}/{id}")).cloned()
    }
}

/// A push in flight. Its token goes to `git receive-pack` (`BERTH_PUSH`), whose hook hands it
/// back with `git:receive`: the deploy then knows the key that pushed, not only the hook's
/// local root. Forgotten when dropped (the push is over).
pub struct Push {
    token: String,
    pushes: Pushes,
}

impl Push {
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for Push {
    fn drop(&mut self) {
        self.pushes.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.token);
    }
}

/// The app's deploy lock, held; it also counts as work a graceful shutdown waits for.
pub struct DeployGuard {
    _lock: OwnedMutexGuard<()>,
    _busy: Busy,
}

/// Builds running now, and a wake-up for builds waiting for a slot.
#[derive(Default)]
struct Builds {
    running: Mutex<usize>,
    /// Builds waiting for a slot.
    queued: std::sync::atomic::AtomicUsize,
    ended: tokio::sync::Notify,
}

/// A build's slot: while it is held, the build counts against `build_concurrency`.
pub struct BuildSlot(Arc<Builds>);

impl Drop for BuildSlot {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap_or_else(|e| e.into_inner());
        *running = running.saturating_sub(1);
        self.0.ended.notify_waiters();
    }
}

/// A build waiting for a slot, counted until dropped.
struct Queued(Arc<Builds>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One piece of work in flight (a deploy, a push): a graceful shutdown waits until none is.
pub struct Busy(Arc<tokio::sync::watch::Sender<usize>>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A retirement of an app's old instances in flight (`Engine::retiring`).
pub struct Retiring {
    apps: Arc<tokio::sync::watch::Sender<HashMap<String, usize>>>,
    app: String,
}

impl Drop for Retiring {
    fn drop(&mut self) {
        self.apps.send_modify(|apps| {
            if let Some(n) = apps.get_mut(&self.app) {
                *n -= 1;
                if *n == 0 {
                    apps.remove(&self.app);
                }
            }
        });
    }
}

impl Engine {
    pub fn new(store: Store, settings: Settings) -> Arc<Engine> {
        let nginx = Arc::new(Nginx::new(store.root(), crate::proxy::Listen { http: settings.http_listen, https: settings.https_listen }));
        let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("berth"));
        Arc::new_cyclic(|me| Engine {
            me: me.clone(),
            store,
            settings,
            nginx,
            exe,
            runtime: AsyncMutex::new(None),
            scheduler: AsyncMutex::new(None),
            swarm: AsyncMutex::new(None),
            registry: Default::default(),
            moving: Mutex::new(HashMap::new()),
            deploy_locks: Mutex::new(HashMap::new()),
            route_locks: Mutex::new(HashMap::new()),
            busy: Arc::new(tokio::sync::watch::channel(0).0),
            starting: Arc::new(tokio::sync::watch::channel(0).0),
            retiring: Arc::new(tokio::sync::watch::channel(HashMap::new()).0),
            builds: Arc::new(Builds::default()),
            jobs: Jobs::default(),
            pushes: Pushes::default(),
            traffic: Default::default(),
            deploys: Default::default(),
            drains: Default::default(),
        })
    }

    /// Builds running now, and builds waiting for a slot.
    pub fn builds(&self) -> (usize, usize) {
        let running = *self.builds.running.lock().unwrap_or_else(|e| e.into_inner());
        (running, self.builds.queued.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Records a push by `caller`; its token names the pusher until the push ends.
    pub fn begin_push(&self, caller: &Caller) -> Push {
        let token: String = (0..4).map(|_| format!("{:016x}", rand::random::<u64>())).collect();
        self.pushes.lock().unwrap_or_else(|e| e.into_inner()).insert(token.clone(), caller.clone());
        Push { token, pushes: self.pushes.clone() }
    }

    /// Who made the push in flight that `token` names.
    pub fn pusher(&self, token: &str) -> Option<Caller> {
        self.pushes.lock().unwrap_or_else(|e| e.into_inner()).get(token).cloned()
    }

    /// This engine, shared.
    pub fn shared(&self) -> Arc<Engine> {
        self.me.upgrade().expect("the engine lives as long as the daemon")
    }

    pub fn root(&self) -> PathBuf {
        self.store.root().to_path_buf()
    }

    /// The Docker engine, connected on first use (berth runs without it until a deploy).
    pub async fn runtime(&self) -> Result<Runtime, RuntimeError> {
        let mut slot = self.runtime.lock().await;
        if let Some(runtime) = slot.as_ref() {
            return Ok(runtime.clone());
        }
        let runtime = Runtime::connect(self.root()).await?;
        *slot = Some(runtime.clone());
        Ok(runtime)
    }

    /// Where `app` runs: the scheduler its settings select (`scheduler:set APP selected`, else
    /// the global one, else docker-local), connected on first use.
    pub async fn scheduler(&self, app: &str) -> Result<Arc<dyn Scheduler>, SchedError> {
        match self.scheduler_of(app) {
            crate::store::SchedulerName::Swarm => self.swarm_scheduler().await,
            crate::store::SchedulerName::DockerLocal => self.local_scheduler().await,
        }
    }

    /// Where a deploy of `app` goes: where it is being moved to, else where it runs.
    pub async fn deploy_scheduler(&self, app: &str) -> Result<Arc<dyn Scheduler>, SchedError> {
        let moving = self.moving.lock().unwrap_or_else(|p| p.into_inner()).get(app).copied();
        match moving {
            Some(crate::store::SchedulerName::Swarm) => self.swarm_scheduler().await,
            Some(crate::store::SchedulerName::DockerLocal) => self.local_scheduler().await,
            None => self.scheduler(app).await,
        }
    }

    /// Marks `app` as moving to `to` until the guard drops (see `moving`).
    pub fn moving(&self, app: &str, to: crate::store::SchedulerName) -> MoveGuard {
        self.moving.lock().unwrap_or_else(|p| p.into_inner()).insert(app.to_string(), to);
        MoveGuard { engine: self.me.clone(), app: app.to_string() }
    }

    /// Whether `app` is being moved to another scheduler now.
    pub fn is_moving(&self, app: &str) -> bool {
        self.moving.lock().unwrap_or_else(|p| p.into_inner()).contains_key(app)
    }

    /// The scheduler an app's settings select (a damaged app.toml: the global one).
    pub fn scheduler_of(&self, app: &str) -> crate::store::SchedulerName {
        let global = self.store.load_global().ok().and_then(|g| g.scheduler).unwrap_or_default();
        self.store.load_app(app).ok().and_then(|c| c.scheduler.selected).unwrap_or(global)
    }

    /// docker-local: containers on this server's Docker engine.
    pub async fn local_scheduler(&self) -> Result<Arc<dyn Scheduler>, SchedError> {
        let mut slot = self.scheduler.lock().await;
        if let Some(scheduler) = slot.as_ref() {
            return Ok(scheduler.clone());
        }
        let scheduler: Arc<dyn Scheduler> = Arc::new(crate::scheduler::docker::DockerLocal::new(self.runtime().await?));
        *slot = Some(scheduler.clone());
        Ok(scheduler)
    }

    /// swarm: services on the cluster this server manages.
    pub async fn swarm_scheduler(&self) -> Result<Arc<dyn Scheduler>, SchedError> {
        let mut slot = self.swarm.lock().await;
        if let Some(scheduler) = slot.as_ref() {
            return Ok(scheduler.clone());
        }
        let address = self.store.load_global().ok().and_then(|g| g.cluster_registry);
        let registry = address.map(|address| {
            let login = crate::scheduler::registry::Files::new(self.store.root()).login(&address);
            crate::scheduler::swarm::Target { address, login }
        });
        let scheduler: Arc<dyn Scheduler> = Arc::new(crate::scheduler::swarm::Swarm::new(self.runtime().await?, registry));
        *slot = Some(scheduler.clone());
        Ok(scheduler)
    }

    /// The cluster's settings changed: the next use connects anew.
    pub async fn forget_swarm_scheduler(&self) {
        *self.swarm.lock().await = None;
    }

    /// Every instance event of this root's, from each scheduler: docker-local's, and the
    /// cluster's once this server manages one.
    pub async fn instance_events(&self) -> Result<futures_util::stream::BoxStream<'static, Result<crate::scheduler::InstanceEvent, SchedError>>, SchedError> {
        use futures_util::StreamExt;
        let local = self.local_scheduler().await?.events();
        // The cluster's stream never ends nor errs: the local one says when the engine went.
        let swarm = self.swarm_scheduler().await?.events();
        let local = local.map(Some).chain(futures_util::stream::once(async { None }));
        let merged = futures_util::stream::select(local, swarm.map(Some));
        Ok(merged.take_while(|e| std::future::ready(e.is_some())).filter_map(std::future::ready).boxed())
    }

    /// Runs apps on `scheduler` instead (a fake one, in unit tests).
    #[cfg(test)]
    pub async fn use_scheduler(&self, scheduler: Arc<dyn Scheduler>) {
        *self.scheduler.lock().await = Some(scheduler);
    }

    /// A slot to build in: at once while fewer than `builder:set --global build-concurrency`
    /// (default 1) builds run, else queued (and saying so) until one ends. A build on a small
    /// server competes with the apps it is about to replace; one at a time keeps them served.
    pub async fn build_slot(&self, out: &Output) -> BuildSlot {
        // Counted as queued from its first wait until it has a slot or is given up.
        let mut queued: Option<Queued> = None;
        loop {
            let limit = self.store.load_global().ok().and_then(|g| g.build_concurrency).unwrap_or(1).max(1) as usize;
            let ended = self.builds.ended.notified();
            let running = {
                let mut running = self.builds.running.lock().unwrap_or_else(|e| e.into_inner());
                if *running < limit {
                    *running += 1;
                    return BuildSlot(self.builds.clone());
                }
                *running
            };
            if queued.is_none() {
                self.builds.queued.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                queued = Some(Queued(self.builds.clone()));
                out.step(format!("Queued: {running} build(s) running, at most {limit} at a time (builder:set --global build-concurrency N); this one starts when one ends")).await;
            }
            // Woken when a build ends; the limit is read again now and then (it may change).
            let _ = tokio::time::timeout(Duration::from_secs(1), ended).await;
        }
    }

    /// Takes the app's deploy lock, saying so if another deploy holds it.
    pub async fn deploy_lock(&self, app: &str, out: &Output) -> Result<DeployGuard, String> {
        let lock = lock_of(&self.deploy_locks, app);
        if let Ok(guard) = lock.clone().try_lock_owned() {
            return Ok(DeployGuard { _lock: guard, _busy: self.busy() });
        }
        out.step(format!("Waiting for another deploy of {app} to finish")).await;
        let guard = tokio::time::timeout(DEPLOY_LOCK_TIMEOUT, lock.lock_owned()).await.map_err(|_| {
            format!("Gave up after {} minutes waiting for another deploy of {app}", DEPLOY_LOCK_TIMEOUT.as_secs() / 60)
        })?;
        Ok(DeployGuard { _lock: guard, _busy: self.busy() })
    }

    /// Waits until no deploy of the app runs (holding nothing after): a push waits here
    /// before git advertises the branch, so it is made against where the deploy in flight
    /// leaves the branch. Says so on stderr (stdout is git's protocol then).
    pub async fn wait_for_deploy(&self, app: &str, out: &Output) -> Result<(), String> {
        let lock = lock_of(&self.deploy_locks, app);
        if lock.try_lock().is_ok() {
            return Ok(());
        }
        out.stderr(format!("-----> Waiting for another deploy of {app} to finish\n")).await;
        tokio::time::timeout(DEPLOY_LOCK_TIMEOUT, lock.lock())
            .await
            .map(drop)
            .map_err(|_| format!("Gave up after {} minutes waiting for another deploy of {app}", DEPLOY_LOCK_TIMEOUT.as_secs() / 60))
    }

    /// The app's routing lock: held while its site is planned and switched, and by a
    /// deploy from recording its new release as active until the site serves it. Short:
    /// a crashed container is routed away from while a build of the same app runs.
    pub async fn route_lock(&self, app: &str) -> OwnedMutexGuard<()> {
        lock_of(&self.route_locks, app).lock_owned().await
    }

    /// Counts one piece of work in flight until the guard drops.
    pub fn busy(&self) -> Busy {
        self.busy.send_modify(|n| *n += 1);
        Busy(self.busy.clone())
    }

    /// Counts a swap starting containers until the guard drops.
    pub fn starting(&self) -> Busy {
        self.starting.send_modify(|n| *n += 1);
        Busy(self.starting.clone())
    }

    /// Counts a retirement of the app's old instances until the guard drops.
    pub fn retiring(&self, app: &str) -> Retiring {
        self.retiring.send_modify(|apps| *apps.entry(app.to_string()).or_default() += 1);
        Retiring { apps: self.retiring.clone(), app: app.to_string() }
    }

    /// Whether a deploy (or another command that holds the app's deploy lock) runs now.
    pub fn deploying(&self, app: &str) -> bool {
        lock_of(&self.deploy_locks, app).try_lock().is_err()
    }

    /// Whether a retirement of the app's old instances is in flight.
    pub fn is_retiring(&self, app: &str) -> bool {
        self.retiring.borrow().contains_key(app)
    }

    /// Waits until no retirement of the app is in flight, at most `limit`.
    pub async fn retired(&self, app: &str, limit: Duration) {
        let mut apps = self.retiring.subscribe();
        let _ = tokio::time::timeout(limit, apps.wait_for(|apps| !apps.contains_key(app))).await;
    }

    /// Waits until no swap is starting containers, at most `limit`: stopping a container
    /// costs the engine and the kernel CPU that a starting one's readiness would wait for.
    pub async fn no_swap_starting(&self, limit: Duration) {
        let mut count = self.starting.subscribe();
        let _ = tokio::time::timeout(limit, count.wait_for(|n| *n == 0)).await;
    }

    /// Waits until no deploy or push is in flight, at most `limit`. False if some still was.
    pub async fn idle(&self, limit: Duration) -> bool {
        let mut count = self.busy.subscribe();
        tokio::time::timeout(limit, count.wait_for(|n| *n == 0)).await.is_ok()
    }

    /// Locks the app, loads it, applies `change`, and saves it if `change` altered it.
    /// The closure's error leaves the state on disk untouched.
    pub async fn update_app<T, E>(
        &self,
        app: &str,
        change: impl FnOnce(&mut AppConfig) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<crate::store::StoreError>,
    {
        let _lock = self.store.lock_app(app).await;
        let before = self.store.load_app(app)?;
        let mut after = before.clone();
        let result = change(&mut after)?;
        if after != before {
            self.store.save_app(app, &after)?;
        }
        Ok(result)
    }

    /// The same for the global settings: locked, loaded, changed, saved if changed.
    pub async fn update_global<T, E>(&self, change: impl FnOnce(&mut crate::store::GlobalConfig) -> Result<T, E>) -> Result<T, E>
    where
        E: From<crate::store::StoreError>,
    {
        let _lock = self.store.lock_global().await;
        let before = self.store.load_global()?;
        let mut after = before.clone();
        let result = change(&mut after)?;
        if after != before {
            self.store.save_global(&after)?;
        }
        Ok(result)
    }
}

fn lock_of(locks: &Mutex<HashMap<String, Arc<AsyncMutex<()>>>>, app: &str) -> Arc<AsyncMutex<()>> {
    let mut locks = locks.lock().unwrap_or_else(|p| p.into_inner());
    locks.entry(app.to_string()).or_default().clone()
}

/// Who runs a command: the name of their SSH key (or `root` on the local socket), its role,
/// and whether they came through the local socket (root on the server).
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
    pub local: bool,
    /// A scoped key an admin allowed to create its apps with a first push.
    pub may_create: bool,
    /// How much it may do on the apps its role covers (a key: write, or admin; a token: what
    /// its maker chose).
    pub access: crate::store::Access,
    /// Which door it came through (the audit log says).
    pub door: Door,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    Local,
    Ssh,
    Api,
    Dashboard,
}

impl Door {
    pub fn as_str(self) -> &'static str {
        match self {
            Door::Local => "local",
            Door::Ssh => "ssh",
            Door::Api => "api",
            Door::Dashboard => "dashboard",
        }
    }
}

impl Caller {
    /// Root on the server itself, through the local socket.
    pub fn local_root() -> Caller {
        Caller { name: "root".into(), role: Role::Admin, local: true, may_create: true, access: crate::store::Access::Admin, door: Door::Local }
    }

    /// The holder of an SSH key.
    pub fn of_key(key: &crate::store::AuthorizedKey) -> Caller {
        let access = if key.role.is_admin() { crate::store::Access::Admin } else { crate::store::Access::Write };
        Caller { name: key.name.clone(), role: key.role.clone(), local: false, may_create: key.may_create, access, door: Door::Ssh }
    }
}

/// An app's move to another scheduler, ended when dropped.
pub struct MoveGuard {
    engine: std::sync::Weak<Engine>,
    app: String,
}

impl Drop for MoveGuard {
    fn drop(&mut self) {
        if let Some(engine) = self.engine.upgrade() {
            engine.moving.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.app);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        Settings { ssh_listen: any, http_listen: any, https_listen: any, api_listen: any }
    }

    #[test]
    fn a_push_names_its_pusher_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::new(Store::open(dir.path()).unwrap(), settings());
        let bob = Caller { name: "bob".into(), role: Role::Admin, local: false, may_create: true, access: crate::store::Access::Admin, door: Door::Ssh };
        let push = engine.begin_push(&bob);
        let other = engine.begin_push(&Caller::local_root());
        assert_ne!(push.token(), other.token());
        assert_eq!(push.token().len(), 64);
        assert_eq!(engine.pusher(push.token()).map(|c| c.name), Some("bob".to_string()));
        assert!(engine.pusher("0123").is_none());
        let token = push.token().to_string();
        drop(push);
        assert!(engine.pusher(&token).is_none(), "forgotten once the push is over");
        assert_eq!(engine.pusher(other.token()).map(|c| c.name), Some("root".to_string()));
    }
}

