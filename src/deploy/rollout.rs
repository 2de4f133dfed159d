//! A new release goes live: plugins may refuse it, its release phase runs, its whole
//! formation starts beside what runs and is checked (through the scheduler), its site is
//! planned; then, under the app's route lock, every new instance is asked again, the release
//! is recorded as active, the site and peers switch, and the old instances retire once no
//! request is in flight to them. What to start and what retires is the reconcile's
//! (`reconcile::Mode::Rollout`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::route::{RoutePlan, apply_route, plan_route};
use super::{LOG_LINES, Made, SETTLE, record, stop_timeout, release_phase, secs, settle_history, undo_activation};
use crate::checks;
use super::Error;
use crate::engine::Engine;
use crate::output::Output;
use crate::process;
use crate::reconcile;
use crate::scheduler::{Instance, Scheduler};
use crate::store::{AppConfig, Release, Status};

/// Takes `made` live: returns the URLs it is served at. On failure nothing that served
/// before changed, the release is recorded as failed and its instances are gone.
#[allow(clippy::too_many_arguments)]
pub(super) async fn go_live(
    engine: &Engine,
    scheduler: &Arc<dyn Scheduler>,
    app: &str,
    config: &AppConfig,
    made: &mut Made,
    previous: Option<u32>,
    cause: &super::Cause,
    out: &Output,
) -> Result<Vec<String>, Error> {
    let version = made.release.version;
    let keeps_serving = previous.map(|v| format!("v{v} keeps serving")).unwrap_or_else(|| "nothing was serving".into());
    let swapped = async {
        // Plugins may refuse the deploy before any container of it starts.
        crate::plugins::trigger(engine, "pre-deploy", &[app.to_string(), version.to_string(), made.release.image.clone()], &cause.env(), out)
            .await
            .map_err(|e| Error::from(e).kept(&keeps_serving))?;
        if made.first_run {
            release_phase(engine, &**scheduler, app, config, &made.release, out).await.map_err(|e| e.kept(&keeps_serving))?;
        }
        swap(engine, &**scheduler, app, config, &made.release, &keeps_serving, out).await
    }
    .await;
    let swapped = match swapped {
        Ok(swapped) => swapped,
        Err(e) => {
            // Recorded as failed; its image goes at once (nothing to retire).
            let prune = record(engine, app, &made.release, false).await?;
            super::remove_images(engine, app, prune).await;
            return Err(e);
        }
    };
    // The release is recorded as active before the site routes to it, so the site on disk
    // never serves a release the state does not know (a crash in between leaves the new
    // release active with the old site, which the restart routes again).
    made.release.status = Status::Active;
    made.release.ref_pending = made.pushed;
    switch(engine, scheduler, app, made, swapped, previous, &keeps_serving, out).await
}

/// Under the route lock: the new instances still run where planned → recorded active →
/// site and peers switched → old instances retire in the background. Undone if any fails.
#[allow(clippy::too_many_arguments)]
async fn switch(
    engine: &Engine,
    scheduler: &Arc<dyn Scheduler>,
    app: &str,
    made: &mut Made,
    swapped: Swapped,
    previous: Option<u32>,
    keeps_serving: &str,
    out: &Output,
) -> Result<Vec<String>, Error> {
    let release = &mut made.release;
    let _routing = engine.route_lock(app).await;
    // An instance that passed its checks can die before the switch; its death was not this
    // release's to heal yet (it was not active): never route to it.
    let mut recorded = false;
    let switched = match still_running(&**scheduler, &swapped).await {
        Err(why) => Err(why),
        Ok(()) => {
            recorded = true;
            record(engine, app, release, true).await?;
            crate::crashpoint("release-saved");
            // nginx refused the switch: the old site kept serving; so does the state.
            apply_route(engine, swapped.plan, out).await.map_err(|e| Error::from(format!("cannot route {app}: {e}")))
        }
    };
    match switched {
        Ok(urls) => {
            crate::crashpoint("routed");
            let (engine, app, scheduler, retirement) = (engine.shared(), app.to_string(), scheduler.clone(), swapped.retirement);
            // Counted from now: a deploy starting meanwhile makes its holders once it ends.
            let retiring = (!retirement.instances.is_empty()).then(|| engine.retiring(&app));
            tokio::spawn(async move {
                let prune = retirement.run(&engine, &app, &*scheduler).await;
                drop(retiring);
                super::remove_images(&engine, &app, prune).await;
                // The next rollout's web namespaces, once this one's work is done; not while
                // another rollout of the app runs: the container it retires leaves its
                // namespace to the next one (one made now would go instead).
                engine.no_swap_starting(SWAP_WAIT).await;
                if engine.deploying(&app) || engine.is_retiring(&app) {
                    return;
                }
                super::warm_from_config(&engine, &*scheduler, &app);
            });
            Ok(urls)
        }
        Err(why) => {
            if recorded {
                undo_activation(engine, app, release.version, previous).await;
            } else {
                release.status = Status::Failed;
                release.ref_pending = false;
                record(engine, app, release, false).await?;
            }
            let _ = scheduler.discard(&swapped.started.iter().map(|c| c.id.clone()).collect::<Vec<_>>()).await;
            if made.built {
                super::remove_images(engine, app, vec![(release.image_tag.clone(), release.image.clone())]).await;
            }
            Err(why.kept(keeps_serving))
        }
    }
}

/// Every instance the swap started still runs, each web one at the address the site plan
/// routes to (asked by id, under the route lock).
async fn still_running(scheduler: &dyn Scheduler, swapped: &Swapped) -> Result<(), Error> {
    for c in &swapped.started {
        let probe = scheduler.probe(&c.id).await;
        let moved = swapped.web.iter().any(|(web, ip)| *web == c.id && probe.endpoint.as_deref() != Some(ip.as_str()));
        if !probe.running() || moved {
            return Err(Error::from(format!("{}.{} stopped after it became ready", c.process, c.index)));
        }
    }
    Ok(())
}

/// An instance started for the new release.
pub(super) struct Started {
    process: String,
    index: u32,
    id: String,
}

/// What a swap leaves to do once the release is recorded: switch the site, retire.
struct Swapped {
    plan: RoutePlan,
    retirement: Retirement,
    /// The new instances (removed if the site cannot be switched).
    started: Vec<Started>,
    /// The new web instances and the addresses the plan routes to.
    web: Vec<(String, String)>,
}

/// Starts every instance of the new release's formation, waits until all are ready (web:
/// checks; others: still running after a moment) and plans the site that routes to the new
/// web instances (checked by nginx, not yet in place). On any failure the new instances
/// are removed.
async fn swap(engine: &Engine, scheduler: &dyn Scheduler, app: &str, config: &AppConfig, release: &Release, keeps_serving: &str, out: &Output) -> Result<Swapped, Error> {
    // Listed before anything new starts: exactly what retires once traffic has moved.
    let instances = scheduler.instances(app).await?;
    let plan = rollout_plan(release, &instances);
    let draining = engine.nginx.peers(app);
    let mut started = Vec::new();
    let planned = async {
        let web = start_all(engine, scheduler, app, config, release, &plan.start, out, &mut started).await?;
        crate::crashpoint("checks");
        let ips: Vec<String> = web.iter().map(|(_, ip)| ip.clone()).collect();
        let plan = plan_route(engine, app, config, release.version, &ips, out).await.map_err(|e| Error::from(format!("cannot route {app}: {e}")))?;
        Ok::<_, Error>((plan, web))
    }
    .await;
    let (route, web) = match planned {
        Ok(planned) => planned,
        Err(why) => {
            let _ = scheduler.discard(&started.iter().map(|c| c.id.clone()).collect::<Vec<_>>()).await;
            return Err(why.kept(keeps_serving));
        }
    };
    let retiring: Vec<Instance> = instances.into_iter().filter(|i| plan.retire.contains(&i.id)).collect();
    let wait = if config.checks.disabled_for(process::WEB) { 0 } else { config.checks.wait_to_retire };
    if !retiring.is_empty() {
        out.step(format!("Retiring {} old container(s) once no request is in flight to them (at most {wait}s)", retiring.len())).await;
    }
    Ok(Swapped { plan: route, retirement: Retirement { instances: retiring, drain: draining, wait: Duration::from_secs(wait) }, started, web })
}

/// What a rollout of `release` starts and retires, given the app's instances as listed.
fn rollout_plan(release: &Release, instances: &[Instance]) -> reconcile::Plan {
    let seen: Vec<reconcile::Seen> = instances.iter().map(Instance::as_listed).collect();
    let formation: Vec<(String, u32)> = release.formation.iter().map(|(p, n)| (p.clone(), *n)).collect();
    reconcile::plan(reconcile::Mode::Rollout, release.version, &formation, &seen)
}

/// Starts `slots` of the release (recording each instance in `started` at once, so the
/// caller can remove them all on failure) and returns the web instances with their
/// addresses once every one is ready.
#[allow(clippy::too_many_arguments)]
pub(super) async fn start_all(
    engine: &Engine,
    scheduler: &dyn Scheduler,
    app: &str,
    config: &AppConfig,
    release: &Release,
    slots: &[reconcile::Slot],
    out: &Output,
    started: &mut Vec<Started>,
) -> Result<Vec<(String, String)>, Error> {
    let clock = Instant::now();
    let _starting = engine.starting();
    let units: Vec<_> = slots.iter().map(|s| super::process_spec(engine, app, config, release, &s.process, s.index, None)).collect();
    let mut failure = None;
    for (unit, id) in units.iter().zip(scheduler.roll_out(&units).await) {
        match id {
            Ok(id) => started.push(Started { process: unit.process.to_string(), index: unit.index, id }),
            Err(e) => {
                failure.get_or_insert(e.to_string());
            }
        }
    }
    if let Some(why) = failure {
        return Err(Error::from(why));
    }
    if started.is_empty() {
        out.step(format!("Nothing to start: every process type of {app} is scaled to 0")).await;
        return Ok(Vec::new());
    }
    let checks = started.iter().map(|c| async move { (ready(scheduler, config, release, c).await, clock.elapsed()) });
    let outcomes = futures_util::future::join_all(checks).await;
    let mut failure = None;
    let mut ips = Vec::new();
    for (c, outcome) in started.iter().zip(outcomes) {
        let label = format!("{}.{}", c.process, c.index);
        match outcome {
            (Ok((ip, checked)), took) => {
                let how = if checked { format!("checks passed in {}", secs(took)) } else { format!("running (checks {})", what_checked(config, &c.process)) };
                out.step(format!("Starting {label} … {how}")).await;
                if c.process == process::WEB {
                    ips.push((c.id.clone(), ip));
                }
            }
            (Err(why), _) => {
                out.step(format!("Starting {label} … failed")).await;
                let lines = scheduler.last_output(&c.id, LOG_LINES).await;
                if !lines.is_empty() {
                    out.step(format!("Last output of {label}:")).await;
                    for line in lines {
                        out.detail(line).await;
                    }
                }
                failure.get_or_insert(format!("{label} of v{} did not become ready: {why}", release.version));
            }
        }
    }
    if let Some(why) = failure {
        return Err(Error::from(why));
    }
    Ok(ips)
}

fn what_checked(config: &AppConfig, process: &str) -> &'static str {
    if process == process::WEB { checks::describe(config) } else { "are for web only" }
}

/// Waits until one new instance is ready. Web: its readiness checks (unless disabled or
/// skipped); others: still running after SETTLE. Returns its address and whether checks ran.
async fn ready(scheduler: &dyn Scheduler, config: &AppConfig, release: &Release, c: &Started) -> Result<(String, bool), Error> {
    // One that crashes at once has no address: say why it stopped instead.
    scheduler.alive(&c.id).await?;
    let ip = match scheduler.endpoint(&c.id).await {
        Ok(ip) => ip,
        Err(e) => {
            return Err(Error::from(scheduler.alive(&c.id).await.err().unwrap_or_else(|| e.to_string())));
        }
    };
    if c.process != process::WEB {
        if !config.checks.disabled_for(&c.process) {
            tokio::time::sleep(SETTLE).await;
        }
        scheduler.alive(&c.id).await?;
        return Ok((ip, false));
    }
    if config.checks.disabled_for(&c.process) || config.checks.skipped_for(&c.process) {
        return Ok((ip, false));
    }
    let specs = checks::effective(&release.checks);
    checks::wait_ready(&ip, config.container_port(), &specs, &config.checks, || scheduler.alive(&c.id)).await?;
    Ok((ip, true))
}

/// Old instances to stop once traffic has moved: when no request is in flight to the
/// addresses that were routed (`drain`), at most `wait` after the switch.
pub(super) struct Retirement {
    instances: Vec<Instance>,
    drain: Vec<String>,
    wait: Duration,
}

/// How long retirement waits at least after the switch, and how often it asks nginx.
const DRAIN_MIN: Duration = Duration::from_millis(500);
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// How long a retirement waits at most for swaps starting containers.
const SWAP_WAIT: Duration = Duration::from_secs(30);

/// How long a retirement waits for a push's branch to land before it goes ahead.
const LANDING_WAIT: Duration = Duration::from_secs(600);

impl Retirement {
    /// Stops the old instances, then compacts history; returns the images no release keeps
    /// (removed after the instances: the engine refuses to remove an image a container
    /// still uses). Decided then, from the state as it is: a push's release is first let
    /// land (or be undone), and an instance of whatever release is active then stays.
    async fn run(self, engine: &Engine, app: &str, scheduler: &dyn Scheduler) -> Vec<super::Unneeded> {
        self.drained(engine).await;
        let deadline = tokio::time::Instant::now() + LANDING_WAIT;
        let active = loop {
            let releases = engine.store.load_releases(app).ok();
            let active = releases.as_ref().and_then(|r| r.active());
            if active.is_none_or(|r| !r.ref_pending) || tokio::time::Instant::now() > deadline {
                break active.map(|r| r.version);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        crate::crashpoint("retire");
        let retiring: Vec<String> = self.instances.iter().filter(|i| Some(i.release) != active).map(|i| i.id.clone()).collect();
        // One at a time, and never while a swap starts containers (of any app).
        let timeout = stop_timeout(engine, app);
        for id in retiring {
            engine.no_swap_starting(SWAP_WAIT).await;
            for (id, e) in scheduler.retire(std::slice::from_ref(&id), timeout).await {
                let name = self.instances.iter().find(|i| i.id == id).map_or(id.as_str(), |i| i.name.as_str());
                tracing::warn!("cannot retire {name}: {e}");
            }
        }
        settle_history(engine, app).await.unwrap_or_else(|e| {
            tracing::warn!(app, "cannot compact the release history: {e}");
            Vec::new()
        })
    }

    /// Returns once nothing is in flight to the addresses that were routed (nginx picks
    /// them no more since the switch; asked twice in a row, so a request being handed to
    /// one at that instant is seen), or after `wait`, which stays the upper bound: a
    /// WebSocket to an old instance lives until then, and is closed when it stops.
    async fn drained(&self, engine: &Engine) {
        let deadline = tokio::time::Instant::now() + self.wait;
        tokio::time::sleep(DRAIN_MIN.min(self.wait)).await;
        let mut idle = 0;
        while tokio::time::Instant::now() < deadline {
            match engine.nginx.inflight(&self.drain).await {
                Ok(0) => {
                    idle += 1;
                    if idle == 2 {
                        return;
                    }
                }
                Ok(_) => idle = 0,
                Err(e) => {
                    tracing::warn!("cannot ask nginx for requests in flight ({e}): old containers retire after the full wait");
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
    }
}

/// Retires another scheduler's instances of an app that moved (`scheduler:set APP
/// selected`), once nginx has no request in flight to the endpoints it routed to them
/// (`drain`), at most `wait` after the switch.
pub async fn retire_drained(engine: &Engine, app: &str, scheduler: &dyn Scheduler, instances: Vec<Instance>, drain: Vec<String>, wait: Duration) {
    let retirement = Retirement { instances, drain, wait };
    retirement.drained(engine).await;
    let ids: Vec<String> = retirement.instances.iter().map(|i| i.id.clone()).collect();
    for (id, e) in scheduler.retire(&ids, stop_timeout(engine, app)).await {
        let name = retirement.instances.iter().find(|i| i.id == id).map_or(id.as_str(), |i| i.name.as_str());
        tracing::warn!("cannot retire {name}: {e}");
    }
}
