//! An app's routing: its nginx site planned from its domains, ports and certificate, its
//! peers from the web instances that run; `reroute` and the supervisor's heal ask the
//! scheduler what runs and the reconcile what to route.

use std::collections::{HashMap, HashSet};

use super::Error;
use crate::engine::Engine;
use crate::output::Output;
use crate::proxy;
use crate::reconcile;
use crate::scheduler::{Instance, Scheduler};
use crate::store::{AppConfig, Release};

/// An app's routing, planned: its next site (checked by nginx on its own) or none, what to
/// say once it serves, and the URLs it serves.
pub(crate) struct RoutePlan {
    app: String,
    /// None: the app gets no site.
    site: Option<proxy::Candidate>,
    /// The release and web container addresses its peers become.
    release: u32,
    peers: Vec<String>,
    note: String,
    urls: Vec<String>,
}

/// Plans the app's nginx site and its peers (the web containers at `ips`), or no site when
/// there is nothing to serve: no domains, or no mapping that can be served. An app whose
/// web containers are all gone (crashed, scaled to 0) keeps its site with no peers (502),
/// so nginx does not reload when they go and come back. The app's certificate, if any, is
/// served on its https mappings.
pub(super) async fn plan_route(engine: &Engine, app: &str, config: &AppConfig, version: u32, ips: &[String], out: &Output) -> Result<RoutePlan, Error> {
    if config.proxy_disabled {
        let note = format!("Nothing is routed to {app}: its proxy is disabled (proxy:enable {app})");
        return Ok(RoutePlan { app: app.to_string(), site: None, release: version, peers: Vec::new(), note, urls: Vec::new() });
    }
    let ports = config.effective_ports();
    let routing = proxy::Routing { app, domains: &config.domains, ports: &ports, listen: engine.nginx.listen, tls: site_tls(engine, app, config, out).await };
    let Some(site) = proxy::plan_site(&routing, &engine.nginx.acme_root()) else {
        let note = format!("Nothing is routed to {app}: no domains (domains:add {app} DOMAIN)");
        return Ok(RoutePlan { app: app.to_string(), site: None, release: version, peers: Vec::new(), note, urls: Vec::new() });
    };
    let candidate = engine.nginx.check_site(&site).await?;
    if ips.is_empty() {
        let note = format!("Nothing is routed to {app}: no web containers run (ps:scale {app} web=1)");
        return Ok(RoutePlan { app: app.to_string(), site: Some(candidate), release: version, peers: Vec::new(), note, urls: Vec::new() });
    }
    let n = ips.len();
    let secure: Vec<&str> = site.servers.iter().filter(|s| s.certificate.is_some()).map(|s| s.server_names.as_str()).collect();
    let https = if secure.is_empty() { String::new() } else { format!(", https for {}", secure[0]) };
    let note = format!("Routing {} → v{version} ({n} web container{}{https})", config.domains.join(", "), if n == 1 { "" } else { "s" });
    Ok(RoutePlan { app: app.to_string(), site: Some(candidate), release: version, peers: ips.to_vec(), note, urls: proxy::urls(&routing) })
}

/// Puts a planned routing in place (call with the app's route lock held): the site first
/// (a reload only if its server blocks changed; if nginx refuses it, the peers stay as they
/// were and keep serving), then the peers (no reload). Returns the URLs the app is served at
/// (none when nothing is routed).
pub(super) async fn apply_route(engine: &Engine, plan: RoutePlan, out: &Output) -> Result<Vec<String>, Error> {
    match plan.site {
        Some(candidate) => {
            engine.nginx.switch_site(candidate).await?;
            engine.nginx.set_peers(&plan.app, plan.release, &plan.peers).await?;
        }
        None => engine.nginx.remove_site(&plan.app).await?,
    }
    out.step(plan.note).await;
    Ok(plan.urls)
}

/// Routes the app to the web containers at `ips` now (call with its route lock held).
pub async fn route(engine: &Engine, app: &str, config: &AppConfig, version: u32, ips: &[String], out: &Output) -> Result<Vec<String>, Error> {
    let plan = plan_route(engine, app, config, version, ips, out).await?;
    apply_route(engine, plan, out).await
}

/// The app's certificate for its site. A certificate that cannot be read is reported and
/// left out (the app keeps being served over plain http) rather than failing the route.
async fn site_tls(engine: &Engine, app: &str, config: &AppConfig, out: &Output) -> Option<proxy::SiteTls> {
    match engine.store.current_certificate(app) {
        Ok(Some((state, info))) => Some(proxy::SiteTls { bundle: engine.store.tls_bundle_path(app, &state), names: info.names, hsts: config.nginx.hsts_header() }),
        Ok(None) => None,
        Err(e) => {
            tracing::error!(app, "{e}");
            out.error(format!("{e}: serving {app} without https")).await;
            None
        }
    }
}

/// The addresses of the instances that run now among `ids`, each asked by id (identity,
/// not a listed address that may be stale).
pub(super) async fn live_ips(scheduler: &dyn Scheduler, ids: &[String]) -> Vec<String> {
    let mut ips = Vec::new();
    for id in ids {
        ips.extend(scheduler.probe(id).await.endpoint);
    }
    ips
}

/// The app's config and active release when it is meant to serve (deployed, not stopped).
pub fn serving(engine: &Engine, app: &str) -> Result<Option<(AppConfig, Release)>, Error> {
    let config = engine.store.load_app(app)?;
    let Some(active) = engine.store.load_releases(app)?.active().cloned() else {
        return Ok(None);
    };
    Ok((!config.stopped).then_some((config, active)))
}

/// Routes the app again from its current state (domains, ports, certificate, nginx
/// properties) to the web containers of the active release that run now, without a new
/// release. Nothing to do for an app that was never deployed or is stopped. Call with the
/// app's deploy lock held.
pub async fn reroute(engine: &Engine, app: &str, out: &Output) -> Result<(), Error> {
    let _routing = engine.route_lock(app).await;
    let Some((config, active)) = serving(engine, app)? else {
        return Ok(());
    };
    let scheduler = engine.scheduler(app).await?;
    let instances = scheduler.instances(app).await?;
    let (_, ips) = heal_plan(&*scheduler, &instances, &active, &config, &Default::default()).await;
    route(engine, app, &config, active.version, &ips, out).await.map(|_| ())
}

/// A heal's plan for the app whose `instances` these are, running `active` (its
/// formation, or the app's scale), and the addresses of the web instances it routes.
/// `warming`: instances berth is starting again right now.
pub async fn heal_plan(scheduler: &dyn Scheduler, instances: &[Instance], active: &Release, config: &AppConfig, warming: &HashSet<String>) -> (reconcile::Plan, Vec<String>) {
    let (seen, ips) = observe(scheduler, instances, active.version, warming).await;
    let plan = reconcile::plan(reconcile::Mode::Heal, active.version, &active.formation_or(&config.scale), &seen);
    let routed = plan.route.iter().filter_map(|id| ips.get(id).cloned()).collect();
    (plan, routed)
}

/// The instances of `release` among `instances` as a reconcile sees them, each asked by id
/// (the engine's list can still say "running" just after a death), with the addresses of
/// those that run.
async fn observe(scheduler: &dyn Scheduler, instances: &[Instance], release: u32, warming: &HashSet<String>) -> (Vec<reconcile::Seen>, HashMap<String, String>) {
    let mut seen = Vec::new();
    let mut ips = HashMap::new();
    for i in instances.iter().filter(|i| i.release == release) {
        let probe = scheduler.probe(&i.id).await;
        ips.extend(probe.endpoint.map(|ip| (i.id.clone(), ip)));
        seen.push(reconcile::Seen { id: i.id.clone(), process: i.process.clone(), index: i.index, release: i.release, state: probe.state, warming: warming.contains(&i.id) });
    }
    (seen, ips)
}
