//! The scheduler seam: how a release's formation comes to run on an engine, and what runs
//! there. The pipeline (`deploy`), the supervisor and the one-off commands speak to a
//! [`Scheduler`]; [`docker::DockerLocal`] (containers on this machine's Docker engine, which
//! berth starts, checks, routes and restarts itself) is the first one. It sits at rollout
//! level, so that an engine that updates and heals itself (Swarm services) fits the same
//! calls: roll out, list instances and their endpoints, retire, converge, stop, run once,
//! follow events. Images, volumes and builds are not a scheduler's: they stay behind
//! `runtime::Runtime`.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use crate::reconcile;
pub use crate::runtime::{Client, ContainerSpec as Unit, TimeLimit};

pub mod docker;
pub mod join;
pub mod registry;
pub mod swarm;
#[cfg(test)]
pub mod fake;

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error(transparent)]
    Engine(#[from] crate::runtime::RuntimeError),
    /// A unit of the formation could not be started.
    #[error("cannot start {slot}: {why}")]
    Start { slot: String, why: String },
    /// The instance has no endpoint (it stopped, or is not attached where berth routes).
    #[error("{0}")]
    NoEndpoint(String),
    /// The cluster refused or could not do what berth asked (its words).
    #[error("{0}")]
    Swarm(String),
}

/// One instance of an app's process, as an engine lists it: a container here, a task under
/// Swarm (same fields: id, name, process, index, release, running as listed, status).
pub use crate::runtime::AppContainer as Instance;

impl Instance {
    /// `web.1`.
    pub fn slot(&self) -> String {
        format!("{}.{}", self.process, self.index)
    }

    /// How a reconcile sees it from the listing alone (after a restart nothing is warming,
    /// and nothing was stopped by this run of berth; `probe` asks the instance itself).
    pub fn as_listed(&self) -> reconcile::Seen {
        reconcile::Seen {
            id: self.id.clone(),
            process: self.process.clone(),
            index: self.index,
            release: self.release,
            state: if self.running { reconcile::State::Running } else { reconcile::State::Exited { code: None, by_berth: false } },
            warming: false,
        }
    }
}

/// The formation `units` make up: each process type with its highest index.
pub fn formation_of(units: &[Unit<'_>]) -> Vec<(String, u32)> {
    let mut formation: Vec<(String, u32)> = Vec::new();
    for unit in units {
        match formation.iter_mut().find(|(p, _)| p == unit.process) {
            Some((_, n)) => *n = (*n).max(unit.index),
            None => formation.push((unit.process.to_string(), unit.index)),
        }
    }
    formation
}

/// An instance as it is this moment, asked by id: its state as a reconcile sees it, and
/// where traffic reaches it while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub state: reconcile::State,
    pub endpoint: Option<String>,
}

impl Probe {
    pub fn running(&self) -> bool {
        self.state == reconcile::State::Running
    }
}

/// What a convergence did: the instances of the release's web process that serve now
/// (kept or started), and the instances outside the formation, to retire once traffic has
/// moved.
#[derive(Debug, Default, PartialEq)]
pub struct Converged {
    pub web: Vec<String>,
    pub retire: Vec<String>,
}

/// Something that happened to an instance of this root's (`start`, `die`, `destroy`, …).
#[derive(Debug, Clone)]
pub struct InstanceEvent {
    pub app: String,
    pub id: String,
    pub action: String,
    /// An instance of a process (not a one-off); `died`: it ended without berth ending it.
    pub process: bool,
    pub died: bool,
}

#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Whether the engine starts again what dies (Swarm), or berth does (docker-local).
    fn heals_itself(&self) -> bool;

    /// Makes ready what instances need before any starts (the network they share).
    async fn prepare(&self) -> Result<(), SchedError>;

    /// Readies, in the background, what the web instances of a rollout about to come will
    /// need (docker-local: their network namespaces, while the release builds). A hint: a
    /// rollout starts without it.
    fn warm(&self, _slots: Vec<crate::runtime::Warm>) {}

    /// Lets go of what `warm` readied and no instance took.
    async fn cool(&self, _app: &str) {}

    /// Starts every unit of a new release's formation beside what runs, all at once: per
    /// unit, in order, the new instance's id or why it did not start.
    async fn roll_out(&self, units: &[Unit<'_>]) -> Vec<Result<String, SchedError>>;

    /// Makes the app run exactly `units` (the active release's whole formation): what runs
    /// of it stays, what is missing or not running starts, the rest is left to retire.
    async fn converge(&self, app: &str, release: u32, units: &[Unit<'_>]) -> Result<Converged, SchedError>;

    /// The app's instances, of every release, as the engine lists them.
    async fn instances(&self, app: &str) -> Result<Vec<Instance>, SchedError>;

    /// One instance asked by id (`Gone` when it no longer exists).
    async fn probe(&self, id: &str) -> Probe;

    /// The last `lines` lines an instance wrote.
    async fn last_output(&self, id: &str, lines: usize) -> Vec<String>;

    /// An instance's output as timestamped lines (`2026-…Z text`): the last `tail`, then,
    /// with `follow`, whatever it writes until it stops.
    fn log_lines(&self, id: &str, tail: usize, follow: bool) -> BoxStream<'static, String>;

    /// Stops these instances (SIGTERM, then SIGKILL after `grace`) and removes them: traffic
    /// has moved away. Returns those that could not be retired, with why.
    async fn retire(&self, ids: &[String], grace: Duration) -> Vec<(String, SchedError)>;

    /// Removes these instances at once (a rollout that did not go through).
    async fn discard(&self, ids: &[String]) -> Result<(), SchedError>;

    /// Stops the app's running instances, keeping them (`ps:stop`). How many were stopped.
    async fn stop(&self, app: &str, grace: Duration) -> Result<usize, SchedError>;

    /// Removes every instance of the app, one-offs too (the app goes away).
    async fn remove_all(&self, app: &str) -> Result<(), SchedError>;

    /// Starts an instance that died on its own again (only asked of a scheduler that does
    /// not heal itself).
    async fn start_again(&self, id: &str) -> Result<(), SchedError>;

    /// Runs `unit` once, wired to `client`, removed afterwards; stopped after `limit`.
    /// Returns its exit code.
    async fn run_once(&self, unit: &Unit<'_>, client: Client<'_>, limit: Option<TimeLimit>) -> Result<i64, SchedError>;

    /// This root's instance events, until the engine goes away.
    fn events(&self) -> BoxStream<'static, Result<InstanceEvent, SchedError>>;

    /// Starts wait for `hold` from now: an endpoint a death freed may be handed to the next
    /// instance that starts while nginx could still connect to it.
    fn hold_starts(&self, hold: Duration);

    /// Whether starts are being held now.
    fn starts_held(&self) -> bool;

    /// Returns once starts are no longer held.
    async fn starts_free(&self);

    /// Ok while the instance runs; otherwise why it stopped.
    async fn alive(&self, id: &str) -> Result<(), String> {
        match self.probe(id).await.state {
            reconcile::State::Running => Ok(()),
            reconcile::State::Exited { code, .. } => Err(format!("the container exited with code {}", code.unwrap_or(-1))),
            reconcile::State::Gone => Err("the container is gone".to_string()),
        }
    }

    /// Where a running instance is reached.
    async fn endpoint(&self, id: &str) -> Result<String, SchedError> {
        let probe = self.probe(id).await;
        probe.endpoint.ok_or_else(|| SchedError::NoEndpoint(format!("the container has no address on the {} network", crate::runtime::NETWORK)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_formation_is_read_back_from_its_units() {
        let unit =
            |process: &'static str, index| Unit { app: "a", process, index, release: 1, image: "i", env: Vec::new(), cmd: None, binds: Vec::new(), memory: None, nano_cpus: None, memory_reservation: None, cpu_reservation: None, tld: None, restart: Default::default(), init: true, parallel_starts: 1, log_max_size: None, app_label: None, stop_timeout: Duration::from_secs(30), networks: Vec::new(), services: Vec::new(), placement: Vec::new(), options: Vec::new() };
        let units = [unit("web", 1), unit("web", 2), unit("worker", 1)];
        assert_eq!(formation_of(&units), vec![("web".to_string(), 2), ("worker".to_string(), 1)]);
        assert!(formation_of(&[]).is_empty());
    }
}
