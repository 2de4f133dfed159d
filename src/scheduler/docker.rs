//! docker-local: the app's containers on this machine's Docker engine. berth starts them on
//! its network, checks them, routes to their addresses and, since the engine never restarts
//! them (restart policy `no`), starts again those that die, after routing away from them.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::{Client, Converged, Instance, InstanceEvent, Probe, SchedError, Scheduler, TimeLimit, Unit, formation_of};
use crate::reconcile;
use crate::runtime::Runtime;

pub struct DockerLocal {
    runtime: Runtime,
}

impl DockerLocal {
    pub fn new(runtime: Runtime) -> DockerLocal {
        DockerLocal { runtime }
    }
}

#[async_trait]
impl Scheduler for DockerLocal {
    fn heals_itself(&self) -> bool {
        false
    }

    async fn prepare(&self) -> Result<(), SchedError> {
        Ok(self.runtime.ensure_network().await?)
    }

    fn warm(&self, slots: Vec<crate::runtime::Warm>) {
        self.runtime.warm(slots);
    }

    async fn cool(&self, app: &str) {
        self.runtime.cool(app).await;
    }

    async fn roll_out(&self, units: &[Unit<'_>]) -> Vec<Result<String, SchedError>> {
        // At most as many at once as the app says (`parallel-schedule-count`), in order.
        let parallel = units.first().map_or(1, |u| u.parallel_starts.max(1) as usize);
        let mut started = Vec::with_capacity(units.len());
        for wave in units.chunks(parallel) {
            started.extend(futures_util::future::join_all(wave.iter().map(|unit| self.runtime.start(unit))).await);
        }
        started.into_iter().zip(units).map(|(id, unit)| id.map_err(|e| SchedError::Start { slot: format!("{}.{}", unit.process, unit.index), why: e.to_string() })).collect()
    }

    async fn converge(&self, app: &str, release: u32, units: &[Unit<'_>]) -> Result<Converged, SchedError> {
        let seen: Vec<reconcile::Seen> = self.runtime.containers(app).await?.iter().map(Instance::as_listed).collect();
        let plan = reconcile::plan(reconcile::Mode::Restore, release, &formation_of(units), &seen);
        for id in &plan.keep {
            // Containers of older berth versions: restarts are berth's now.
            let _ = self.runtime.no_engine_restarts(id).await;
        }
        let mut web = plan.route;
        for slot in &plan.start {
            let Some(unit) = units.iter().find(|u| u.process == slot.process && u.index == slot.index) else {
                continue;
            };
            let id = self.runtime.start(unit).await.map_err(|e| SchedError::Start { slot: format!("{}.{}", slot.process, slot.index), why: e.to_string() })?;
            tracing::info!(app, release, process = slot.process, index = slot.index, "started");
            if slot.process == crate::process::WEB {
                web.push(id);
            }
        }
        Ok(Converged { web, retire: plan.retire })
    }

    async fn instances(&self, app: &str) -> Result<Vec<Instance>, SchedError> {
        Ok(self.runtime.containers(app).await?)
    }

    async fn probe(&self, id: &str) -> Probe {
        match self.runtime.live(id).await {
            None => Probe { state: reconcile::State::Gone, endpoint: None },
            Some(live) if live.running => Probe { state: reconcile::State::Running, endpoint: live.ip },
            Some(live) => Probe { state: reconcile::State::Exited { code: live.exit_code, by_berth: self.runtime.stopped_by_berth(id) }, endpoint: None },
        }
    }

    async fn last_output(&self, id: &str, lines: usize) -> Vec<String> {
        self.runtime.tail(id, lines).await
    }

    fn log_lines(&self, id: &str, tail: usize, follow: bool) -> BoxStream<'static, String> {
        self.runtime.log_lines(id, tail, follow)
    }

    async fn retire(&self, ids: &[String], grace: Duration) -> Vec<(String, SchedError)> {
        let mut failed = Vec::new();
        for id in ids {
            if let Err(e) = self.runtime.retire(id, grace).await {
                failed.push((id.clone(), e.into()));
            }
        }
        failed
    }

    async fn discard(&self, ids: &[String]) -> Result<(), SchedError> {
        let mut first = Ok(());
        for id in ids {
            if let Err(e) = self.runtime.remove(id).await {
                first = first.and(Err(e.into()));
            }
        }
        first
    }

    async fn stop(&self, app: &str, grace: Duration) -> Result<usize, SchedError> {
        let running: Vec<_> = self.runtime.containers(app).await?.into_iter().filter(|c| c.running).collect();
        for c in &running {
            self.runtime.stop(&c.id, grace).await?;
        }
        Ok(running.len())
    }

    async fn remove_all(&self, app: &str) -> Result<(), SchedError> {
        self.runtime.cool(app).await;
        for c in self.runtime.containers(app).await? {
            self.runtime.remove(&c.id).await?;
        }
        for id in self.runtime.one_offs(Some(app)).await.unwrap_or_default() {
            self.runtime.remove(&id).await?;
        }
        self.runtime.remove_holders(app).await?;
        // Its network last: services linked to it are taken off it with it.
        Ok(self.runtime.remove_network(&self.runtime.app_network(app)).await?)
    }

    async fn start_again(&self, id: &str) -> Result<(), SchedError> {
        Ok(self.runtime.restart(id).await?)
    }

    async fn run_once(&self, unit: &Unit<'_>, client: Client<'_>, limit: Option<TimeLimit>) -> Result<i64, SchedError> {
        Ok(self.runtime.run_once_within(unit, client, limit).await?)
    }

    fn events(&self) -> BoxStream<'static, Result<InstanceEvent, SchedError>> {
        let runtime = self.runtime.clone();
        self.runtime
            .events()
            .map(move |event| {
                let event = event?;
                if event.action == "destroy" {
                    // Gone: nothing more to tell apart.
                    runtime.forget(&event.id);
                }
                let died = event.action == "die" && !runtime.stopped_by_berth(&event.id);
                Ok(InstanceEvent { app: event.app, id: event.id, action: event.action, process: event.process, died })
            })
            .boxed()
    }

    fn hold_starts(&self, hold: Duration) {
        self.runtime.hold_addresses(hold);
    }

    fn starts_held(&self) -> bool {
        self.runtime.addresses_held()
    }

    async fn starts_free(&self) {
        self.runtime.wait_for_addresses().await;
    }
}
