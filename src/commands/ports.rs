//! `ports:*`: which host ports the proxy listens on for an app, and where they lead.

use super::Scope;
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::output::{Format, Report};
use crate::validate::AppName;
use crate::validate::{self, PortMap};
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("ports", "Manage ports for an app")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List an app's port mappings
    #[command(name = "ports:list")]
    List {
        app: AppName,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// One `scheme:host:container` per line, without the table
        #[arg(long, short)]
        quiet: bool,
    },
    /// Replace an app's port mappings: scheme:host-port:container-port…
    #[command(name = "ports:set")]
    Set {
        app: AppName,
        #[arg(required = true, value_name = "SCHEME:HOST:CONTAINER")]
        maps: Vec<String>,
    },
    /// Add port mappings
    #[command(name = "ports:add")]
    Add {
        app: AppName,
        #[arg(required = true, value_name = "SCHEME:HOST:CONTAINER")]
        maps: Vec<String>,
    },
    /// Remove port mappings (a full mapping, or a host port)
    #[command(name = "ports:remove")]
    Remove {
        app: AppName,
        #[arg(required = true, value_name = "SCHEME:HOST:CONTAINER|HOST")]
        maps: Vec<String>,
    },
    /// Go back to the default mapping, http:80:5000
    #[command(name = "ports:clear")]
    Clear { app: AppName },
    /// Show an app's port mappings (all apps without APP)
    #[command(name = "ports:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Report(args) => args.scope(),
            Cmd::List { app, .. } | Cmd::Set { app, .. } | Cmd::Add { app, .. } | Cmd::Remove { app, .. } | Cmd::Clear { app, .. } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::List { app, format, quiet } => list(ctx, &app, format, quiet).await,
            Cmd::Set { app, maps } => change(ctx, &app, Change::Set(maps)).await,
            Cmd::Add { app, maps } => change(ctx, &app, Change::Add(maps)).await,
            Cmd::Remove { app, maps } => change(ctx, &app, Change::Remove(maps)).await,
            Cmd::Clear { app } => change(ctx, &app, Change::Clear).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

pub enum Change {
    Set(Vec<String>),
    Add(Vec<String>),
    Remove(Vec<String>),
    Clear,
}

pub async fn list(ctx: &mut Ctx<'_>, app: &AppName, format: Format, quiet: bool) -> CmdResult {
    let config = ctx.engine.store.load_app(app)?;
    let ports = config.effective_ports();
    match format {
        Format::Json => {
            let list: Vec<_> =
                ports.iter().map(|p| serde_json::json!({"scheme": p.scheme.to_string(), "host_port": p.host, "container_port": p.container})).collect();
            ctx.out.line(serde_json::Value::Array(list).to_string()).await;
        }
        Format::Text if quiet => {
            for p in ports {
                ctx.out.line(p.to_string()).await;
            }
        }
        Format::Text => {
            ctx.out.header(format!("{app} port mappings")).await;
            ctx.out.detail(format!("{:<8}{:<11}{}", "scheme", "host port", "container port")).await;
            for p in ports {
                ctx.out.detail(format!("{:<8}{:<11}{}", p.scheme.to_string(), p.host, p.container)).await;
            }
        }
    }
    Ok(())
}

pub async fn change(ctx: &mut Ctx<'_>, app: &AppName, change: Change) -> CmdResult {
    let allowed = ctx.engine.store.load_global()?.allowed_host_ports();
    let admin = ctx.caller.role.is_admin();
    let parse_all = |specs: &[String]| -> Result<Vec<PortMap>, CmdError> {
        let maps = specs.iter().map(|s| validate::port_map(s)).collect::<Result<Vec<_>, _>>()?;
        // berth's nginx shares the host with other servers: an app's key has it listen only
        // where berth.toml allows; an admin chooses any port, as on dokku (a port nginx cannot
        // take is undone below).
        if let Some(map) = maps.iter().find(|m| !admin && !allowed.contains(&m.host)) {
            let list = allowed.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
            return Err(failed(format!("Host port {} of {map} is not one berth serves ({list}; proxy_ports in berth.toml adds more)", map.host)));
        }
        Ok(maps)
    };
    let (message, (before, after)) = match change {
        Change::Set(specs) => {
            let maps = parse_all(&specs)?;
            check_conflicts(&maps)?;
            let changed = update(ctx, app, |ports| *ports = dedup(maps.clone())).await?;
            (format!("Set port mappings for {app}: {}", join(&maps)), changed)
        }
        Change::Add(specs) => {
            let maps = parse_all(&specs)?;
            let mut combined = ctx.engine.store.load_app(app)?.ports;
            if let Some(there) = maps.iter().find(|m| combined.contains(m)) {
                return Err(failed(format!("Port mapping {there} is already set for {app}")));
            }
            combined.extend(maps.iter().copied());
            check_conflicts(&dedup(combined))?;
            let changed = update(ctx, app, |ports| {
                // Adding to the default makes the default explicit, as the user sees it listed.
                if ports.is_empty() {
                    ports.push(PortMap::DEFAULT);
                }
                ports.extend(maps.iter().copied());
                *ports = dedup(std::mem::take(ports));
            })
            .await?;
            (format!("Added port mappings to {app}: {}", join(&maps)), changed)
        }
        Change::Remove(specs) => {
            let targets = specs.iter().map(|s| RemoveTarget::parse(s)).collect::<Result<Vec<_>, _>>()?;
            let app_name = app.to_string();
            let changed = ctx
                .engine
                .update_app(app, |config| {
                    let before = config.ports.clone();
                    let mut ports = config.effective_ports();
                    for target in &targets {
                        if !ports.iter().any(|p| target.matches(p)) {
                            return Err(failed(format!("No port mapping {} in {app_name}", target.shown)));
                        }
                        ports.retain(|p| !target.matches(p));
                    }
                    if ports.is_empty() {
                        return Err(failed(format!("That would leave {app_name} with no port mapping; use ports:clear to go back to http:80:5000")));
                    }
                    config.ports = ports;
                    Ok::<_, CmdError>((before, config.ports.clone()))
                })
                .await?;
            (format!("Removed port mappings from {app}: {}", specs.join(" ")), changed)
        }
        Change::Clear => {
            let changed = update(ctx, app, |ports| ports.clear()).await?;
            (format!("Cleared port mappings of {app} (default: {})", PortMap::DEFAULT), changed)
        }
    };
    ctx.out.step(message).await;
    let routed = super::domains::apply_routing(ctx, app).await;
    if routed.is_err() {
        // What cannot be served is not kept: it would fail every later deploy of the app.
        // Only this change is undone: a change made since (by another command) stays.
        let undone = ctx
            .engine
            .update_app(app, |config| {
                let ours = config.ports == after;
                if ours {
                    config.ports = before;
                }
                Ok::<_, CmdError>(ours)
            })
            .await?;
        ctx.out.error(if undone { "The port change was undone" } else { "The port change was not undone: another change of the ports came after it" }).await;
    }
    routed
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("ports")?;
    // What the active release's image EXPOSEs (dokku's detected map), asked of the engine first.
    let mut detected = std::collections::HashMap::new();
    if let Ok(runtime) = ctx.engine.runtime().await {
        for name in args.app_names(ctx)? {
            let Some(active) = ctx.engine.store.load_releases(&name).ok().and_then(|r| r.active().cloned()) else {
                continue;
            };
            let ports: Vec<String> = runtime.exposed_ports(&active.image).await.iter().map(|p| format!("http:{p}:{p}")).collect();
            detected.insert(name, ports);
        }
    }
    args.print_apps(ctx, |_, name, config| {
        // Sorted as dokku lists them (`http:1234:5001 http:8080:5000 https:8443:5000`).
        let shown = |ports: &[PortMap]| {
            let mut shown: Vec<String> = ports.iter().map(|p| p.to_string()).collect();
            shown.sort();
            shown
        };
        // dokku's structured form, as one JSON text (an info flag prints it as it is).
        let map_json = |p: &PortMap| serde_json::json!({"scheme": p.scheme.to_string(), "host_port": p.host, "container_port": p.container});
        let json: Vec<serde_json::Value> = config.ports.iter().map(map_json).collect();
        let detected_of = |name: &str| -> Vec<String> {
            let exposed = detected.get(name).cloned().unwrap_or_default();
            if exposed.is_empty() { vec![PortMap::DEFAULT.to_string()] } else { exposed }
        };
        Ok(Report::new(format!("{name} ports information"))
            .namespace("ports")
            .row("Ports map", shown(&config.ports))
            .row("Ports map json", serde_json::Value::Array(json).to_string())
            // What the image EXPOSEs; without it (or before a deploy), the default berth serves.
            .row("Ports map detected", detected_of(name))
            .row("Ports map detected json", serde_json::Value::Array(detected_of(name).iter().map(|p| map_json(&validate::port_map(p).unwrap_or(PortMap::DEFAULT))).collect()).to_string())
            .row("Ports map effective", shown(&config.effective_ports())))
    })
    .await
}

/// Edits the app's port mappings; returns them as they were and as they are now (read and
/// written in one locked step, so an undo knows exactly what this change did).
async fn update(ctx: &Ctx<'_>, app: &str, edit: impl FnOnce(&mut Vec<PortMap>)) -> Result<(Vec<PortMap>, Vec<PortMap>), CmdError> {
    // The apps lock holds the other apps' mappings still while this one changes.
    let _apps = ctx.engine.store.lock_apps().await;
    let others = ctx.engine.store.ports_of_others(app)?;
    let listen = ctx.engine.nginx.listen;
    let swarm = ctx.engine.scheduler_of(app) == crate::store::SchedulerName::Swarm;
    ctx.engine
        .update_app(app, |config| {
            let before = config.ports.clone();
            edit(&mut config.ports);
            check_conflicts(&config.ports)?;
            if swarm && let Some(what) = super::scheduler::unsupported_on_swarm(config, false) {
                return Err(failed(format!("{app} runs on swarm, which has no {what}")));
            }
            if let Some((mine, other, theirs)) = crate::proxy::scheme_clash(listen, &config.effective_ports(), &others) {
                return Err(failed(format!(
                    "Host port {} serves {} for app {other} ({theirs}): {mine} would change it for {other} too; use another host port",
                    mine.host,
                    theirs.scheme
                )));
            }
            Ok((before, config.ports.clone()))
        })
        .await
}

/// One host port serves one scheme: `http:80:…` beside `https:80:…` cannot both listen.
fn check_conflicts(maps: &[PortMap]) -> CmdResult {
    for (i, a) in maps.iter().enumerate() {
        if let Some(b) = maps[i + 1..].iter().find(|b| b.host == a.host && b.scheme != a.scheme) {
            return Err(failed(format!("Port mappings {a} and {b} use host port {} with different schemes", a.host)));
        }
        if let Some(b) = maps[i + 1..].iter().find(|b| b.host == a.host && b.container != a.container) {
            return Err(failed(format!("Port mappings {a} and {b} send host port {} to two container ports: one per host port", a.host)));
        }
    }
    Ok(())
}

fn dedup(mut maps: Vec<PortMap>) -> Vec<PortMap> {
    let mut seen = Vec::with_capacity(maps.len());
    maps.retain(|m| {
        let new = !seen.contains(m);
        seen.push(*m);
        new
    });
    maps
}

fn join(maps: &[PortMap]) -> String {
    maps.iter().map(|m| m.to_string()).collect::<Vec<_>>().join(" ")
}

/// What `ports:remove` takes: a whole mapping, or just a host port.
struct RemoveTarget {
    shown: String,
    map: Option<PortMap>,
    host: u16,
}

impl RemoveTarget {
    fn parse(spec: &str) -> Result<RemoveTarget, CmdError> {
        if spec.contains(':') {
            let map = validate::port_map(spec)?;
            Ok(RemoveTarget { shown: spec.to_string(), map: Some(map), host: map.host })
        } else {
            Ok(RemoveTarget { shown: spec.to_string(), map: None, host: validate::port(spec)? })
        }
    }

    fn matches(&self, p: &PortMap) -> bool {
        self.map.map_or(p.host == self.host, |m| m == *p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(specs: &[&str]) -> Vec<PortMap> {
        specs.iter().map(|s| validate::port_map(s).unwrap()).collect()
    }

    #[test]
    fn conflicting_schemes_on_one_host_port_are_refused() {
        assert!(check_conflicts(&maps(&["http:80:5000", "https:80:5000"])).is_err());
        // Two server blocks for one port and the same names: nginx would serve the first only.
        assert!(check_conflicts(&maps(&["http:80:5000", "http:80:5001"])).unwrap_err().to_string().contains("two container ports"));
        assert!(check_conflicts(&maps(&["http:80:5000", "http:8080:5001", "https:443:5000", "http:80:5000"])).is_ok());
    }

    #[test]
    fn remove_by_host_port_or_mapping() {
        let by_port = RemoveTarget::parse("80").unwrap();
        let by_map = RemoveTarget::parse("http:80:5000").unwrap();
        let p = maps(&["http:80:5001"])[0];
        assert!(by_port.matches(&p));
        assert!(!by_map.matches(&p));
        assert!(RemoveTarget::parse("http").is_err());
    }
}
