//! A scheduler in memory, for unit tests of what drives the [`Scheduler`] seam: instances
//! are rows, each call is logged, and a test says which units refuse to start and which
//! instances die after being looked at a number of times.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::stream::BoxStream;

use super::{Client, Converged, Instance, InstanceEvent, Probe, SchedError, Scheduler, TimeLimit, Unit};
use crate::reconcile::{self, State};

#[derive(Default)]
pub struct Fake {
    state: Mutex<Rows>,
}

#[derive(Default)]
struct Rows {
    rows: Vec<Row>,
    next: u32,
    /// Slots (`web.2`) whose start fails.
    refuse: Vec<String>,
    /// Slots whose instance dies after it has been probed this many times.
    dies_after: HashMap<String, u32>,
    /// What was asked, in order (`roll_out web.1`, `retire c3`, …).
    log: Vec<String>,
}

struct Row {
    instance: Instance,
    app: String,
    state: State,
    probes: u32,
}

impl Fake {
    fn rows(&self) -> std::sync::MutexGuard<'_, Rows> {
        self.state.lock().unwrap()
    }

    /// An instance of `app`'s `release` in `slot` (`web.1`) that runs. Returns its id.
    pub fn running(&self, app: &str, release: u32, slot: &str) -> String {
        let (process, index) = slot.split_once('.').unwrap();
        self.add(app, release, process, index.parse().unwrap())
    }

    fn add(&self, app: &str, release: u32, process: &str, index: u32) -> String {
        let mut rows = self.rows();
        rows.next += 1;
        let id = format!("c{}", rows.next);
        let instance =
            Instance { id: id.clone(), app: app.into(), name: format!("berth-{app}-{process}.{index}-v{release}"), process: process.into(), index, release, running: true, status: "Up".into() };
        rows.rows.push(Row { instance, app: app.into(), state: State::Running, probes: 0 });
        id
    }

    /// Starting `slot` fails.
    pub fn refuse(&self, slot: &str) {
        self.rows().refuse.push(slot.into());
    }

    /// A started instance in `slot` dies (code 1) once it has been probed `n` times.
    pub fn dies_after_probes(&self, slot: &str, n: u32) {
        self.rows().dies_after.insert(slot.into(), n);
    }

    /// The instance dies on its own.
    pub fn kill(&self, id: &str, code: i64) {
        let mut rows = self.rows();
        if let Some(row) = rows.rows.iter_mut().find(|r| r.instance.id == id) {
            row.state = State::Exited { code: Some(code), by_berth: false };
        }
    }

    /// What runs of `app`, as `vN web.1` sorted.
    pub fn what_runs(&self, app: &str) -> Vec<String> {
        let mut runs: Vec<String> =
            self.rows().rows.iter().filter(|r| r.app == app && r.state == State::Running).map(|r| format!("v{} {}", r.instance.release, r.instance.slot())).collect();
        runs.sort();
        runs
    }

    /// Every instance of `app` there is, running or not.
    pub fn count(&self, app: &str) -> usize {
        self.rows().rows.iter().filter(|r| r.app == app).count()
    }

    pub fn log(&self) -> Vec<String> {
        self.rows().log.clone()
    }

    fn end(&self, id: &str, by_berth: bool) {
        let mut rows = self.rows();
        if let Some(row) = rows.rows.iter_mut().find(|r| r.instance.id == id) {
            row.state = State::Exited { code: Some(if by_berth { 143 } else { 1 }), by_berth };
        }
    }

    fn remove(&self, id: &str) {
        self.rows().rows.retain(|r| r.instance.id != id);
    }

    fn start(&self, unit: &Unit<'_>) -> Result<String, SchedError> {
        let slot = format!("{}.{}", unit.process, unit.index);
        self.rows().log.push(format!("start {slot} v{}", unit.release));
        if self.rows().refuse.contains(&slot) {
            return Err(SchedError::Start { slot, why: "refused".into() });
        }
        Ok(self.add(unit.app, unit.release, unit.process, unit.index))
    }
}

#[async_trait]
impl Scheduler for Fake {
    fn heals_itself(&self) -> bool {
        false
    }

    async fn prepare(&self) -> Result<(), SchedError> {
        Ok(())
    }

    async fn roll_out(&self, units: &[Unit<'_>]) -> Vec<Result<String, SchedError>> {
        units.iter().map(|unit| self.start(unit)).collect()
    }

    async fn converge(&self, app: &str, release: u32, units: &[Unit<'_>]) -> Result<Converged, SchedError> {
        let seen: Vec<reconcile::Seen> = self
            .rows()
            .rows
            .iter()
            .filter(|r| r.app == app)
            .map(|r| reconcile::Seen {
                id: r.instance.id.clone(),
                process: r.instance.process.clone(),
                index: r.instance.index,
                release: r.instance.release,
                state: r.state.clone(),
                warming: false,
            })
            .collect();
        let plan = reconcile::plan(reconcile::Mode::Restore, release, &super::formation_of(units), &seen);
        let mut web = plan.route;
        for slot in &plan.start {
            let unit = units.iter().find(|u| u.process == slot.process && u.index == slot.index).unwrap();
            let id = self.start(unit)?;
            if slot.process == "web" {
                web.push(id);
            }
        }
        Ok(Converged { web, retire: plan.retire })
    }

    async fn instances(&self, app: &str) -> Result<Vec<Instance>, SchedError> {
        Ok(self.rows().rows.iter().filter(|r| r.app == app).map(|r| Instance { running: r.state == State::Running, ..r.instance.clone() }).collect())
    }

    async fn probe(&self, id: &str) -> Probe {
        let mut rows = self.state.lock().unwrap();
        let Rows { rows, dies_after, .. } = &mut *rows;
        let Some(row) = rows.iter_mut().find(|r| r.instance.id == id) else {
            return Probe { state: State::Gone, endpoint: None };
        };
        row.probes += 1;
        if dies_after.get(&row.instance.slot()).is_some_and(|n| row.probes > *n) {
            row.state = State::Exited { code: Some(1), by_berth: false };
        }
        let endpoint = (row.state == State::Running).then(|| format!("10.0.0.{}", &id[1..]));
        Probe { state: row.state.clone(), endpoint }
    }

    async fn last_output(&self, id: &str, _lines: usize) -> Vec<String> {
        vec![format!("{id} says goodbye")]
    }

    fn log_lines(&self, id: &str, _tail: usize, _follow: bool) -> BoxStream<'static, String> {
        futures_util::StreamExt::boxed(futures_util::stream::iter(vec![format!("2026-01-01T00:00:00Z {id} says hello")]))
    }

    async fn retire(&self, ids: &[String], _grace: Duration) -> Vec<(String, SchedError)> {
        for id in ids {
            self.rows().log.push(format!("retire {id}"));
            self.end(id, true);
            self.remove(id);
        }
        Vec::new()
    }

    async fn discard(&self, ids: &[String]) -> Result<(), SchedError> {
        for id in ids {
            self.rows().log.push(format!("discard {id}"));
            self.remove(id);
        }
        Ok(())
    }

    async fn stop(&self, app: &str, _grace: Duration) -> Result<usize, SchedError> {
        let ids: Vec<String> = self.rows().rows.iter().filter(|r| r.app == app && r.state == State::Running).map(|r| r.instance.id.clone()).collect();
        for id in &ids {
            self.end(id, true);
        }
        Ok(ids.len())
    }

    async fn remove_all(&self, app: &str) -> Result<(), SchedError> {
        self.rows().rows.retain(|r| r.app != app);
        Ok(())
    }

    async fn start_again(&self, id: &str) -> Result<(), SchedError> {
        self.rows().log.push(format!("start again {id}"));
        let mut rows = self.rows();
        if let Some(row) = rows.rows.iter_mut().find(|r| r.instance.id == id) {
            row.state = State::Running;
        }
        Ok(())
    }

    async fn run_once(&self, unit: &Unit<'_>, _client: Client<'_>, _limit: Option<TimeLimit>) -> Result<i64, SchedError> {
        self.rows().log.push(format!("run once {}", unit.cmd.clone().unwrap_or_default().join(" ")));
        Ok(0)
    }

    fn events(&self) -> BoxStream<'static, Result<InstanceEvent, SchedError>> {
        Box::pin(futures_util::stream::empty())
    }

    fn hold_starts(&self, _hold: Duration) {}

    fn starts_held(&self) -> bool {
        false
    }

    async fn starts_free(&self) {}
}
