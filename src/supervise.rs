//! Between deploys, what nginx routes follows what runs.
//!
//! berth, not the engine, restarts app containers: every container runs with the engine's
//! restart policy `no`, and this module follows the engine's events for the root's
//! containers. When a container of an app's active release stops without berth stopping
//! it, the app is routed again at once without it (so its address, which the engine may
//! hand to any other container, is no longer routed), and it is started again as the app's
//! restart policy says, with backoff; once ready it is routed again. The event stream
//! reconnects when the engine restarts, and every app is reconciled on each (re)connect.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;

use crate::deploy;
use crate::engine::Engine;
use crate::output::Output;
use crate::process;
use crate::scheduler::{Instance, Scheduler};
use crate::store::RestartPolicy;

/// The first restart waits this long; each failed one doubles it, up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A container that ran this long since its restart starts its backoff afresh (as Docker).
const RESET_AFTER: Duration = Duration::from_secs(10);

/// Restarts of one container slot (app, release, process, index).
#[derive(Debug, Clone, Copy)]
struct Restarts {
    count: u32,
    last: Instant,
}

/// Whether a container that stopped with `exit_code` is started again under `policy`,
/// after `restarts` restarts in a row. Pure.
pub fn should_restart(policy: RestartPolicy, exit_code: Option<i64>, restarts: u32) -> bool {
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::OnFailure(max) => exit_code != Some(0) && (max == 0 || restarts < max),
    }
}

/// How long to wait before restart number `restarts + 1`. Pure.
pub fn backoff(restarts: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1u32 << restarts.min(16)).min(MAX_BACKOFF)
}

pub struct Supervisor {
    engine: Arc<Engine>,
    restarts: Mutex<HashMap<String, Restarts>>,
    /// Containers berth started again and is waiting for: not routed until ready.
    warming: Mutex<HashSet<String>>,
    /// Apps with a heal scheduled and not yet begun.
    scheduled: Mutex<HashSet<String>>,
    /// Heals scheduled or running. A restart waits until there are none: a container that
    /// starts takes whatever address the engine gives it, possibly one a dead container of
    /// another app had, which must no longer be routed by then.
    healing: tokio::sync::watch::Sender<usize>,
    /// Deaths not yet routed away from (counted from the event, before any lock): while
    /// there are any, no container on this machine starts (`Runtime::hold_addresses`).
    unrouting: Mutex<usize>,
    /// Per app, the deaths its next heal routes away from.
    dying: Mutex<HashMap<String, usize>>,
    /// Per app, heals in a row that failed (retried a few times, a second apart).
    failures: Mutex<HashMap<String, u32>>,
    /// Per app, endpoints of instances an engine started on its own (Swarm replacing a task)
    /// whose readiness checks passed; and those being checked now.
    checked: Mutex<HashMap<String, HashSet<String>>>,
    checking: Mutex<HashSet<String>>,
}

/// A heal that fails is tried again this many times, a second apart.
const HEAL_RETRIES: u32 = 10;

/// How long a restart waits for heals in flight before it goes ahead anyway.
const HEAL_WAIT: Duration = Duration::from_secs(10);
/// nginx's `proxy_connect_timeout` (site.conf.hbs) and a margin: once a dead web container
/// is no longer routed, requests nginx accepted before may still be connecting to its
/// address for this long. No container is started again before then, so none can take
/// that address and answer them.
const CONNECT_DRAIN: Duration = Duration::from_millis(2200);

impl Supervisor {
    pub fn new(engine: Arc<Engine>) -> Arc<Supervisor> {
        Arc::new(Supervisor {
            engine,
            restarts: Mutex::default(),
            warming: Mutex::default(),
            scheduled: Mutex::default(),
            healing: tokio::sync::watch::channel(0).0,
            unrouting: Mutex::new(0),
            dying: Mutex::default(),
            failures: Mutex::default(),
            checked: Mutex::default(),
            checking: Mutex::default(),
        })
    }

    /// Follows the engine's events until `stop`; reconnects (and reconciles every app)
    /// whenever the stream ends, e.g. because the engine restarted.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut connected_before = false;
        loop {
            if *stop.borrow() {
                return;
            }
            let runtime = match self.engine.runtime().await {
                Ok(runtime) if runtime.version().await.is_ok() => runtime,
                _ => {
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let Ok(mut events) = self.engine.instance_events().await else { continue };
            drop(runtime);
            if connected_before {
                tracing::info!("Docker engine events: reconnected; reconciling every app");
            }
            connected_before = true;
            // Whatever happened while nobody listened: every app, once the stream is open.
            for app in self.engine.store.list_apps().unwrap_or_default() {
                self.schedule(&app);
            }
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    event = events.next() => match event {
                        Some(Ok(event)) => {
                            if event.process {
                                tracing::debug!(app = event.app, action = event.action, "container event");
                                if event.died && let Ok(scheduler) = self.engine.scheduler(&event.app).await {
                                    // Its address is free now: hold every start at once, before
                                    // any lock or lookup, until the heal has routed away from it.
                                    self.dying(&*scheduler, &event.app);
                                }
                                self.schedule(&event.app);
                            }
                        }
                        Some(Err(e)) => {
                            tracing::warn!("Docker engine events: {e}; reconnecting");
                            break;
                        }
                        None => {
                            tracing::warn!("Docker engine events ended; reconnecting");
                            break;
                        }
                    },
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// A container of `app` died on its own: no container starts until its heal is done.
    fn dying(&self, scheduler: &dyn Scheduler, app: &str) {
        *self.dying.lock().unwrap_or_else(|p| p.into_inner()).entry(app.to_string()).or_default() += 1;
        self.unrouting(scheduler);
    }

    /// One more dead address to route away from: starts wait (see `unrouted`).
    fn unrouting(&self, scheduler: &dyn Scheduler) {
        *self.unrouting.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        scheduler.hold_starts(HEAL_WAIT);
    }

    /// `n` deaths have been routed away from (or given up on): once none is left, starts
    /// wait only for nginx's connects to the dead addresses to time out.
    fn unrouted(&self, scheduler: &dyn Scheduler, n: usize) {
        if n == 0 {
            return;
        }
        let mut unrouting = self.unrouting.lock().unwrap_or_else(|p| p.into_inner());
        *unrouting = unrouting.saturating_sub(n);
        if *unrouting == 0 {
            scheduler.hold_starts(CONNECT_DRAIN);
        }
    }

    /// Heals `app` soon; events that arrive meanwhile are covered by the same heal.
    pub fn schedule(self: &Arc<Self>, app: &str) {
        if !self.scheduled.lock().unwrap_or_else(|p| p.into_inner()).insert(app.to_string()) {
            return;
        }
        self.healing.send_modify(|n| *n += 1);
        let this = self.clone();
        let app = app.to_string();
        tokio::spawn(async move {
            // A burst of events (a container dying, its network detaching) is one heal.
            tokio::time::sleep(Duration::from_millis(20)).await;
            this.scheduled.lock().unwrap_or_else(|p| p.into_inner()).remove(&app);
            let deaths = this.dying.lock().unwrap_or_else(|p| p.into_inner()).remove(&app).unwrap_or(0);
            let healed = this.heal(&app, deaths).await;
            let failures = {
                let mut all = this.failures.lock().unwrap_or_else(|p| p.into_inner());
                match &healed {
                    Ok(()) => {
                        all.remove(&app);
                        0
                    }
                    Err(_) => *all.entry(app.clone()).and_modify(|n| *n += 1).or_insert(1),
                }
            };
            if let Err(e) = healed {
                tracing::warn!(app, "cannot reconcile: {e}");
                if failures <= HEAL_RETRIES {
                    let again = this.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        again.schedule(&app);
                    });
                }
            }
            this.healing.send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    /// Makes the app's routing equal to its live, ready web containers of the active
    /// release, and starts again (later, with backoff) those that stopped on their own.
    /// `deaths`: containers of the app that died on their own since its last heal; they are
    /// counted as routed away from once this heal is done, whatever its outcome.
    async fn heal(self: &Arc<Self>, app: &str, deaths: usize) -> Result<(), deploy::Error> {
        let scheduler = self.engine.scheduler(app).await?;
        let healed = self.heal_locked(&*scheduler, app).await;
        self.unrouted(&*scheduler, deaths);
        healed
    }

    async fn heal_locked(self: &Arc<Self>, scheduler: &dyn Scheduler, app: &str) -> Result<(), deploy::Error> {
        let engine = &self.engine;
        let _routing = engine.route_lock(app).await;
        // Moving to another scheduler: the move's deploy routes it.
        if !engine.store.app_exists(app) || engine.is_moving(app) {
            return Ok(());
        }
        let Some((config, active)) = deploy::serving(engine, app)? else {
            return Ok(());
        };
        let containers = scheduler.instances(app).await?;
        let warming = self.warming.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (plan, ips) = deploy::heal_plan(scheduler, &containers, &active, &config, &warming).await;
        let ips = if scheduler.heals_itself() { self.only_ready(app, &config, &active, ips) } else { ips };
        // An engine that heals itself starts its dead again: berth only routes.
        let restarts = if scheduler.heals_itself() { &[][..] } else { &plan.restart[..] };
        let policy = if restarts.is_empty() { Default::default() } else { config.restart_policy_with(&engine.store.load_global().unwrap_or_default()) };
        for (slot, id, exit_code) in restarts {
            let Some(c) = containers.iter().find(|c| &c.id == id) else { continue };
            let slot = format!("{app}/v{}/{}.{}", active.version, slot.process, slot.index);
            self.restart_later(app, &slot, c, *exit_code, policy);
        }
        let dead_web = plan.dead_web;
        // A dead web container found without its event (after a reconnect) holds starts too.
        if dead_web {
            self.unrouting(scheduler);
        }
        // Peers change in nginx's memory; the site (and a reload) only if it differs.
        let routed = deploy::route(engine, app, &config, active.version, &ips, &Output::discard()).await.map(|_| ());
        if dead_web {
            self.unrouted(scheduler, 1);
        }
        routed
    }

    /// Of the endpoints a heal would route, those nginx routes already or whose checks
    /// passed: an instance the engine started on its own (Swarm replacing a task) is checked
    /// first, in the background, and routed by the heal after its checks pass.
    fn only_ready(self: &Arc<Self>, app: &str, config: &crate::store::AppConfig, active: &crate::store::Release, ips: Vec<String>) -> Vec<String> {
        if config.checks.disabled_for(process::WEB) || config.checks.skipped_for(process::WEB) || ips.is_empty() {
            return ips;
        }
        let routed = self.engine.nginx.peers(app);
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        let known = checked.entry(app.to_string()).or_default();
        // What no longer runs is forgotten.
        known.retain(|ip| ips.contains(ip));
        let (ready, new): (Vec<String>, Vec<String>) = ips.into_iter().partition(|ip| routed.contains(ip) || known.contains(ip));
        for ip in new {
            if !self.checking.lock().unwrap_or_else(|p| p.into_inner()).insert(format!("{app} {ip}")) {
                continue;
            }
            let (this, app, port, specs, checks) = (self.clone(), app.to_string(), config.container_port(), crate::checks::effective(&active.checks), config.checks.clone());
            tokio::spawn(async move {
                match crate::checks::wait_ready(&ip, port, &specs, &checks, || async { Ok(()) }).await {
                    Ok(_) => {
                        this.checked.lock().unwrap_or_else(|p| p.into_inner()).entry(app.clone()).or_default().insert(ip.clone());
                    }
                    Err(e) => tracing::warn!(app, instance = ip, "an instance the engine started on its own is not routed: {e}"),
                }
                this.checking.lock().unwrap_or_else(|p| p.into_inner()).remove(&format!("{app} {ip}"));
                this.schedule(&app);
            });
        }
        ready
    }

    /// Starts a container that stopped on its own again after its backoff, if the app's
    /// policy says so, then waits until it is ready and routes it.
    fn restart_later(self: &Arc<Self>, app: &str, slot: &str, c: &Instance, exit_code: Option<i64>, policy: RestartPolicy) {
        let now = Instant::now();
        let restarts = {
            let mut all = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
            let entry = all.entry(slot.to_string()).or_insert(Restarts { count: 0, last: now });
            if entry.count > 0 && now.duration_since(entry.last) > RESET_AFTER + backoff(entry.count) {
                entry.count = 0;
            }
            *entry
        };
        let code = exit_code.map_or("unknown".to_string(), |c| c.to_string());
        if !should_restart(policy, exit_code, restarts.count) {
            tracing::warn!(app, container = c.name, "exited with code {code}; restart policy {policy}: not started again");
            return;
        }
        // Claimed now, so a heal meanwhile does not schedule it twice.
        self.warming.lock().unwrap_or_else(|p| p.into_inner()).insert(c.id.clone());
        let delay = backoff(restarts.count);
        tracing::warn!(app, container = c.name, "exited with code {code}: starting it again in {}ms", delay.as_millis());
        let (this, app, slot, id, name) = (self.clone(), app.to_string(), slot.to_string(), c.id.clone(), c.name.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            this.restarts.lock().unwrap_or_else(|p| p.into_inner()).insert(slot, Restarts { count: restarts.count + 1, last: Instant::now() });
            if let Err(e) = this.start_again(&app, &id).await {
                tracing::warn!(app, container = name, "{e}");
            }
            this.warming.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            this.schedule(&app);
        });
    }

    /// Starts the container again unless berth stopped it meanwhile (a deploy retired it,
    /// ps:stop), and for web waits for its readiness checks.
    async fn start_again(&self, app: &str, id: &str) -> Result<(), deploy::Error> {
        let engine = &self.engine;
        // Every dead address routed away from first (see `healing`), and no connect in
        // flight to one (`hold_addresses`). Waited for without the app's route lock, so the
        // app's own heals go on meanwhile.
        let _ = tokio::time::timeout(HEAL_WAIT, self.healing.subscribe().wait_for(|n| *n == 0)).await;
        let scheduler = engine.scheduler(app).await?;
        let (config, active, c) = {
            let _routing = loop {
                scheduler.starts_free().await;
                let routing = engine.route_lock(app).await;
                if !scheduler.starts_held() {
                    break routing;
                }
            };
            let Some((config, active)) = deploy::serving(engine, app)? else {
                return Ok(());
            };
            let containers = scheduler.instances(app).await?;
            let Some(c) = containers.into_iter().find(|c| c.id == id) else { return Ok(()) };
            // Gone, running, or stopped by berth (a deploy retired it, ps:stop): not to start.
            let died = matches!(scheduler.probe(id).await.state, crate::reconcile::State::Exited { by_berth: false, .. });
            if !died || c.release != active.version {
                return Ok(());
            }
            scheduler.start_again(id).await.map_err(|e| deploy::Error::from(format!("cannot start {} again: {e}", c.name)))?;
            tracing::info!(app, container = c.name, "started again");
            (config, active, c)
        };
        if c.process != process::WEB || config.checks.disabled_for(&c.process) || config.checks.skipped_for(&c.process) {
            return Ok(());
        }
        let ip = scheduler.endpoint(id).await?;
        let specs = crate::checks::effective(&active.checks);
        // Routed once ready; if the checks never pass, routed anyway (as before the crash)
        // rather than leaving the app without the container for good.
        if let Err(e) = crate::checks::wait_ready(&ip, config.container_port(), &specs, &config.checks, || scheduler.alive(id)).await {
            tracing::warn!(app, container = c.name, "after its restart: {e}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_decide_as_docker_does() {
        assert!(!should_restart(RestartPolicy::No, Some(137), 0));
        assert!(should_restart(RestartPolicy::UnlessStopped, Some(0), 50));
        assert!(should_restart(RestartPolicy::Always, None, 0));
        assert!(should_restart(RestartPolicy::OnFailure(3), Some(137), 2));
        assert!(!should_restart(RestartPolicy::OnFailure(3), Some(137), 3));
        assert!(!should_restart(RestartPolicy::OnFailure(0), Some(0), 0));
        assert!(should_restart(RestartPolicy::OnFailure(0), Some(1), 1000));
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(5), Duration::from_millis(3200));
        assert_eq!(backoff(10), MAX_BACKOFF);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
