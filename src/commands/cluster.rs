//! `cluster:*`: the Docker Swarm this server manages, for apps that `scheduler:set APP
//! selected swarm` moved there. berth uses Swarm as it is (Debian's docker.io has it): this
//! server's engine becomes the manager, other servers join it as workers.

use std::collections::{BTreeMap, HashMap};

use super::{CmdResult, Ctx, Scope, failed};
use crate::output::{Format, Report};
use crate::scheduler::swarm::said;
use bollard::models::{Node, NodeSpecAvailabilityEnum};
use clap::Subcommand;

/// How often the cluster's servers report to the manager.
pub const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(1);

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("cluster", "Manage the servers apps on swarm run on")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Make this server the manager of a new cluster (Docker Swarm)
    #[command(name = "cluster:init")]
    Init {
        /// The address other servers reach this one at (default: the engine's choice)
        #[arg(long)]
        advertise_addr: Option<String>,
        /// Run no registry here (cluster:registry names one later)
        #[arg(long)]
        no_registry: bool,
    },
    /// Join a server to the cluster over ssh (USER@HOST, with berth's key in its authorized_keys), or print what joins it
    #[command(name = "cluster:add")]
    Add {
        /// The server to join, as root over ssh (installs docker.io where it is missing)
        server: Option<String>,
        /// Join as a manager rather than a worker
        #[arg(long)]
        manager: bool,
        /// The server's ssh port
        #[arg(long, default_value_t = 22)]
        ssh_port: u16,
    },
    /// List the cluster's servers: state, availability, labels, and what runs on each
    #[command(name = "cluster:list")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Label a server (KEY=VALUE; KEY= removes), for placement: scheduler:set APP constraint node.labels.KEY==VALUE
    #[command(name = "cluster:label")]
    Label { node: String, labels: Vec<String> },
    /// Move every task off a server (Swarm places them on the others)
    #[command(name = "cluster:drain")]
    Drain { node: String },
    /// Let a drained server run tasks again
    #[command(name = "cluster:activate")]
    Activate { node: String },
    /// Set the registry swarm apps' images go through (HOST:PORT, one every server pulls from); no address: show it
    #[command(name = "cluster:registry")]
    Registry {
        address: Option<String>,
        /// berth runs the registry itself, listening on ADDRESS (IP:PORT; default: this server's cluster address, port 5000), with TLS and a password
        #[arg(long)]
        serve: bool,
        /// Use none again (only this server's engine has the images: a one-server cluster)
        #[arg(long, conflicts_with_all = ["address", "serve"])]
        unset: bool,
    },
    /// Remove a server from the cluster (drain it, or run `docker swarm leave` on it, first)
    #[command(name = "cluster:remove")]
    Remove {
        node: String,
        #[arg(long)]
        force: bool,
    },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        Scope::Admin
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Init { advertise_addr, no_registry } => init(ctx, advertise_addr, no_registry).await,
            Cmd::Add { server, manager, ssh_port } => add(ctx, server, manager, ssh_port).await,
            Cmd::List { format } => list(ctx, format).await,
            Cmd::Label { node, labels } => label(ctx, &node, &labels).await,
            Cmd::Drain { node } => availability(ctx, &node, NodeSpecAvailabilityEnum::DRAIN).await,
            Cmd::Activate { node } => availability(ctx, &node, NodeSpecAvailabilityEnum::ACTIVE).await,
            Cmd::Remove { node, force } => remove(ctx, &node, force).await,
            Cmd::Registry { address, serve: true, .. } => serve_registry(ctx, address).await,
            Cmd::Registry { address, unset, .. } => registry(ctx, address, unset).await,
        }
    }
}

async fn docker(ctx: &Ctx<'_>) -> Result<bollard::Docker, super::CmdError> {
    Ok(ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?.docker().clone())
}


async fn manager(ctx: &Ctx<'_>) -> Result<bollard::Docker, super::CmdError> {
    let docker = docker(ctx).await?;
    crate::scheduler::swarm::manager_state(&docker).await.map_err(failed)?;
    Ok(docker)
}

pub async fn init(ctx: &mut Ctx<'_>, advertise_addr: Option<String>, no_registry: bool) -> CmdResult {
    let docker = docker(ctx).await?;
    if crate::scheduler::swarm::manager_state(&docker).await.is_ok() {
        return Err(failed("This server manages a cluster already: cluster:list shows it, cluster:add joins more servers"));
    }
    if let Some(addr) = &advertise_addr
        && addr.parse::<std::net::IpAddr>().is_err()
    {
        return Err(failed(format!("Invalid address {}: an IP address of this server", crate::validate::quoted(addr))));
    }
    // Checked before anything changes: a cluster made without the registry it was to have
    // would be half of what was asked.
    if !no_registry && which("docker-registry").is_none() {
        return Err(failed("docker-registry is not installed (Debian: apt-get install docker-registry), or use --no-registry"));
    }
    // Servers report every HEARTBEAT: a lost one is seen (and routed away from) within a
    // few of them, not Swarm's default 5 s each.
    let dispatcher = bollard::models::SwarmSpecDispatcher { heartbeat_period: Some(HEARTBEAT.as_nanos() as i64) };
    let spec = bollard::models::SwarmSpec { dispatcher: Some(dispatcher), ..Default::default() };
    let request = bollard::models::SwarmInitRequest { listen_addr: Some("0.0.0.0:2377".into()), advertise_addr, spec: Some(spec), ..Default::default() };
    let node = docker.init_swarm(request).await.map_err(|e| failed(format!("cannot make this server a cluster manager: {}", said(e))))?;
    ctx.out.step(format!("This server manages a cluster now (node {})", short(&node))).await;
    if !no_registry {
        serve_registry(ctx, None).await?;
    }
    ctx.out.detail("cluster:add prints what joins another server; scheduler:set APP selected swarm moves an app there").await;
    Ok(())
}

pub async fn add(ctx: &mut Ctx<'_>, server: Option<String>, as_manager: bool, ssh_port: u16) -> CmdResult {
    if let Some(server) = &server
        && !valid_server(server)
    {
        return Err(failed(format!("Invalid server {}: USER@HOST or HOST (root by default), e.g. root@10.0.0.3", crate::validate::quoted(server))));
    }
    let docker = manager(ctx).await?;
    let swarm = docker.inspect_swarm().await.map_err(|e| failed(said(e)))?;
    let tokens = swarm.join_tokens.unwrap_or_default();
    let token = if as_manager { tokens.manager } else { tokens.worker }.ok_or_else(|| failed("the engine gave no join token"))?;
    let addr = node_addr(&docker).await?;
    let script = join_script(&token, &addr, served_ca(ctx).as_ref());
    let key = crate::scheduler::join::Key::new(ctx.engine.store.root());
    let Some(server) = server else {
        ctx.out.step("On the server to add, as root:").await;
        for line in script.lines() {
            ctx.out.line(line).await;
        }
        let public = key.public().await.map_err(failed)?;
        ctx.out.step("Or let berth do it: add this key to root's ~/.ssh/authorized_keys there, then cluster:add root@SERVER").await;
        ctx.out.line(public.trim_end()).await;
        return Ok(());
    };
    let server = if server.contains('@') { server } else { format!("root@{server}") };
    ctx.out.step(format!("Joining {server} over ssh")).await;
    key.run(&server, ssh_port, &script, &ctx.out).await.map_err(|why| failed(format!("Joining {server} failed: {why}")))?;
    ctx.out.step(format!("{server} joined the cluster")).await;
    Ok(())
}

/// `USER@HOST` or `HOST`: USER a login name, HOST a name or an IP address. Pure.
pub fn valid_server(server: &str) -> bool {
    let (user, host) = server.rsplit_once('@').unwrap_or(("root", server));
    let user_ok = user.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_') && user.len() <= 32 && user.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    user_ok && (host.parse::<std::net::IpAddr>().is_ok() || crate::validate::domain(host).is_ok())
}

/// This manager's address in the cluster.
async fn node_addr(docker: &bollard::Docker) -> Result<String, super::CmdError> {
    let info = docker.info().await.map_err(|e| failed(said(e)))?;
    info.swarm.and_then(|s| s.node_addr).filter(|a| !a.is_empty()).ok_or_else(|| failed("the engine gave no address for this server"))
}

/// The registry berth serves and its CA, when it serves the one swarm apps use.
fn served_ca(ctx: &Ctx<'_>) -> Option<(String, String)> {
    let files = crate::scheduler::registry::Files::new(ctx.engine.store.root());
    let address = files.address()?;
    let used = ctx.engine.store.load_global().ok()?.cluster_registry;
    (used.as_deref() == Some(address.as_str())).then_some(())?;
    Some((address, files.ca()?))
}

/// What joins a Debian server to the cluster, as root: docker.io where it is missing, the CA
/// of berth's registry, the join. Pure.
pub fn join_script(token: &str, manager: &str, ca: Option<&(String, String)>) -> String {
    let mut script = String::from("command -v docker >/dev/null || { apt-get update && apt-get install -y docker.io; }\n");
    if let Some((address, pem)) = ca {
        script.push_str(&format!("mkdir -p /etc/docker/certs.d/{address} && cat >/etc/docker/certs.d/{address}/ca.crt <<'BERTH_CA'\n{}\nBERTH_CA\n", pem.trim_end()));
    }
    script.push_str(&format!("docker swarm join --token {token} {manager}:2377\n"));
    script
}

/// A node by its hostname, or its id or a prefix of it.
async fn find(docker: &bollard::Docker, wanted: &str) -> Result<Node, super::CmdError> {
    let nodes = docker.list_nodes(None).await.map_err(|e| failed(said(e)))?;
    let hostname = |n: &Node| n.description.as_ref().and_then(|d| d.hostname.clone()).unwrap_or_default();
    let mut matching: Vec<Node> = nodes.into_iter().filter(|n| hostname(n) == wanted || n.id.as_deref().is_some_and(|id| !wanted.is_empty() && id.starts_with(wanted))).collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(failed(format!("No server {} in the cluster (cluster:list shows them)", crate::validate::quoted(wanted)))),
        _ => Err(failed(format!("{} names more than one server: give more of its id", crate::validate::quoted(wanted)))),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// What runs on each node: node id → `APP web.1` lines.
async fn placed(docker: &bollard::Docker, root: &str) -> HashMap<String, Vec<String>> {
    let filters = HashMap::from([("desired-state".to_string(), vec!["running".to_string()])]);
    let tasks = docker.list_tasks(Some(bollard::query_parameters::ListTasksOptions { filters: Some(filters) })).await.unwrap_or_default();
    let mut placed: HashMap<String, Vec<String>> = HashMap::new();
    for task in tasks {
        let labels = task.spec.as_ref().and_then(|s| s.container_spec.as_ref()).and_then(|c| c.labels.clone()).unwrap_or_default();
        if labels.get(crate::runtime::LABEL_ROOT).map(String::as_str) != Some(root) {
            continue;
        }
        let (Some(app), Some(process)) = (labels.get(crate::runtime::LABEL_APP), labels.get(crate::runtime::LABEL_PROCESS)) else { continue };
        let release = labels.get(crate::runtime::LABEL_RELEASE).cloned().unwrap_or_default();
        let state = task.status.as_ref().and_then(|s| s.state).map(|s| s.to_string()).unwrap_or_default();
        placed.entry(task.node_id.unwrap_or_default()).or_default().push(format!("{app} {process}.{} v{release} ({state})", task.slot.unwrap_or(0)));
    }
    placed
}

pub async fn list(ctx: &mut Ctx<'_>, format: Format) -> CmdResult {
    let docker = manager(ctx).await?;
    let nodes = docker.list_nodes(None).await.map_err(|e| failed(said(e)))?;
    let root = ctx.engine.root().display().to_string();
    let mut placed = placed(&docker, &root).await;
    let mut reports = Vec::new();
    for node in nodes {
        let id = node.id.clone().unwrap_or_default();
        let spec = node.spec.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        let hostname = node.description.as_ref().and_then(|d| d.hostname.clone()).unwrap_or_default();
        let labels: BTreeMap<String, String> = spec.labels.unwrap_or_default().into_iter().collect();
        let mut runs = placed.remove(&id).unwrap_or_default();
        runs.sort();
        let report = Report::new(format!("{hostname} node information"))
            .row("Id", short(&id).to_string())
            .row("Address", status.addr.unwrap_or_default())
            .row("State", status.state.map(|s| s.to_string()).unwrap_or_default())
            .row("Availability", spec.availability.map(|a| a.to_string()).unwrap_or_default())
            .row("Role", if node.manager_status.is_some() { "manager" } else { "worker" })
            .row("Labels", labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>())
            .row("Runs", runs);
        reports.push((hostname, report));
    }
    reports.sort_by(|a, b| a.0.cmp(&b.0));
    crate::output::print_reports(&ctx.out, &reports, false, format).await.map_err(failed)
}

/// Changes a node's spec (the whole spec goes back, at its current version).
async fn update(docker: &bollard::Docker, node: Node, change: impl FnOnce(&mut bollard::models::NodeSpec)) -> Result<(), super::CmdError> {
    let id = node.id.clone().unwrap_or_default();
    let version = node.version.and_then(|v| v.index).unwrap_or(0) as i64;
    let mut spec = node.spec.unwrap_or_default();
    change(&mut spec);
    let options = bollard::query_parameters::UpdateNodeOptions { version };
    docker.update_node(&id, spec, options).await.map_err(|e| failed(format!("cannot change the server: {}", said(e))))
}

pub async fn label(ctx: &mut Ctx<'_>, wanted: &str, labels: &[String]) -> CmdResult {
    let mut changes = Vec::new();
    for pair in labels {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(failed(format!("Invalid label {}: KEY=VALUE (KEY= removes it)", crate::validate::quoted(pair))));
        };
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) || !value.chars().all(|c| c.is_ascii_alphanumeric() || "._-:/".contains(c)) {
            return Err(failed(format!("Invalid label {}: letters, digits, dots, dashes and underscores", crate::validate::quoted(pair))));
        }
        changes.push((key.to_string(), value.to_string()));
    }
    if changes.is_empty() {
        return Err(failed("No label given: cluster:label NODE KEY=VALUE…"));
    }
    let docker = manager(ctx).await?;
    let node = find(&docker, wanted).await?;
    update(&docker, node, |spec| {
        let labels = spec.labels.get_or_insert_with(Default::default);
        for (key, value) in &changes {
            if value.is_empty() {
                labels.remove(key);
            } else {
                labels.insert(key.clone(), value.clone());
            }
        }
    })
    .await?;
    ctx.out.step(format!("Labels of {wanted}: {}", changes.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "))).await;
    Ok(())
}

pub async fn availability(ctx: &mut Ctx<'_>, wanted: &str, availability: NodeSpecAvailabilityEnum) -> CmdResult {
    let docker = manager(ctx).await?;
    let node = find(&docker, wanted).await?;
    update(&docker, node, |spec| spec.availability = Some(availability)).await?;
    let said = if availability == NodeSpecAvailabilityEnum::DRAIN { "drained: its tasks move to the other servers" } else { "active: it runs tasks again" };
    ctx.out.step(format!("{wanted} is {said}")).await;
    Ok(())
}

pub async fn remove(ctx: &mut Ctx<'_>, wanted: &str, force: bool) -> CmdResult {
    let docker = manager(ctx).await?;
    let node = find(&docker, wanted).await?;
    if node.manager_status.as_ref().and_then(|m| m.leader) == Some(true) {
        return Err(failed(format!("{wanted} is this cluster's manager: it cannot remove itself")));
    }
    let id = node.id.unwrap_or_default();
    let options = bollard::query_parameters::DeleteNodeOptions { force };
    docker.delete_node(&id, Some(options)).await.map_err(|e| failed(format!("cannot remove {wanted}: {} (drain it and run `docker swarm leave` on it, or --force)", said(e))))?;
    ctx.out.step(format!("Removed {wanted} from the cluster")).await;
    Ok(())
}

/// A registry's address: HOST:PORT, HOST a name or an IPv4 address. Pure.
pub fn valid_registry(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else { return false };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    port_ok && (host.parse::<std::net::Ipv4Addr>().is_ok() || crate::validate::domain(host).is_ok())
}

pub async fn registry(ctx: &mut Ctx<'_>, address: Option<String>, unset: bool) -> CmdResult {
    let store = &ctx.engine.store;
    if address.is_none() && !unset {
        let current = store.load_global()?.cluster_registry;
        let served = crate::scheduler::registry::Files::new(store.root());
        let line = match current {
            Some(current) if served.address().as_deref() == Some(current.as_str()) => format!("{current} (served by berth: TLS from its CA, a password it keeps; log {})", served.log().display()),
            Some(current) => current,
            None => "(none: images stay on this server)".into(),
        };
        ctx.out.line(line).await;
        return Ok(());
    }
    if let Some(address) = &address
        && !valid_registry(address)
    {
        return Err(failed(format!("Invalid registry {}: HOST:PORT, e.g. 10.0.0.2:5000", crate::validate::quoted(address))));
    }
    ctx.engine
        .update_global(|global| {
            global.cluster_registry = address.clone();
            Ok::<_, super::CmdError>(())
        })
        .await?;
    // berth's own registry stops when another (or none) is used.
    let served = crate::scheduler::registry::Files::new(store.root());
    if served.address().is_some_and(|a| Some(a) != address) {
        served.remove();
        ctx.engine.registry.changed();
    }
    ctx.engine.forget_swarm_scheduler().await;
    match address {
        Some(address) => ctx.out.step(format!("Swarm apps' images go through {address} from their next deploy")).await,
        None => ctx.out.step("Swarm apps' images stay on this server").await,
    }
    Ok(())
}

/// berth runs the cluster's registry (Debian's docker-registry) on `listen`, or on this
/// manager's cluster address, port 5000: TLS from berth's CA (installed for this server's
/// engine; `cluster:add` installs it on the others), a password berth keeps.
pub async fn serve_registry(ctx: &mut Ctx<'_>, listen: Option<String>) -> CmdResult {
    let docker = manager(ctx).await?;
    let listen = match listen {
        Some(listen) => listen,
        None => format!("{}:5000", node_addr(&docker).await?),
    };
    let addr = listen.parse::<std::net::SocketAddr>().ok().filter(|a| a.is_ipv4() && a.port() != 0);
    let Some(addr) = addr else {
        return Err(failed(format!("Invalid registry address {}: IP:PORT of this server, e.g. 10.0.0.1:5000", crate::validate::quoted(&listen))));
    };
    if std::net::TcpListener::bind(addr).is_err() && crate::scheduler::registry::Files::new(ctx.engine.store.root()).address() != Some(addr.to_string()) {
        return Err(failed(format!("Cannot serve a registry on {addr}: the address is in use or not this server's (Debian's own docker-registry service takes port 5000: systemctl disable --now docker-registry)")));
    }
    if which("docker-registry").is_none() {
        return Err(failed("docker-registry is not installed (Debian: apt-get install docker-registry)"));
    }
    let files = crate::scheduler::registry::Files::new(ctx.engine.store.root());
    files.prepare(addr).map_err(failed)?;
    ctx.engine.registry.changed();
    if !crate::scheduler::registry::answers(&addr.to_string(), std::time::Duration::from_secs(10)).await {
        return Err(failed(format!("The registry did not start on {addr}: see {}", files.log().display())));
    }
    ctx.engine
        .update_global(|global| {
            global.cluster_registry = Some(addr.to_string());
            Ok::<_, super::CmdError>(())
        })
        .await?;
    ctx.engine.forget_swarm_scheduler().await;
    ctx.out.step(format!("The cluster's registry runs on {addr} (TLS, a password berth keeps): swarm apps' images go there from their next deploy")).await;
    Ok(())
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|path| std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_host_and_port() {
        for ok in ["10.231.0.2:5000", "registry.example.com:443", "localhost:5000"] {
            assert!(valid_registry(ok), "{ok}");
        }
        for bad in ["10.231.0.2", "example.com:0", "example.com:99999", "http://x:5000", "a b:5000", ":5000"] {
            assert!(!valid_registry(bad), "{bad}");
        }
    }

    #[test]
    fn servers_are_a_login_and_a_host() {
        for ok in ["root@10.0.0.3", "10.0.0.3", "deploy@node-2.example.com", "node2.example.com"] {
            assert!(valid_server(ok), "{ok}");
        }
        for bad in ["-oProxyCommand=x", "root@-p", "root@", "@host", "Root@host", "root@ho st", "a@b@c", "root@host;id", ""] {
            assert!(!valid_server(bad), "{bad}");
        }
    }

    #[test]
    fn the_join_script_installs_docker_and_the_registrys_ca_then_joins() {
        let ca = ("10.0.0.1:5000".to_string(), "-----BEGIN CERTIFICATE-----\nMII\n-----END CERTIFICATE-----\n".to_string());
        let script = join_script("SWMTKN-1-x", "10.0.0.1", Some(&ca));
        let lines: Vec<&str> = script.lines().collect();
        assert!(lines[0].contains("apt-get install -y docker.io"));
        assert_eq!(lines[1], "mkdir -p /etc/docker/certs.d/10.0.0.1:5000 && cat >/etc/docker/certs.d/10.0.0.1:5000/ca.crt <<'BERTH_CA'");
        assert_eq!(lines.last(), Some(&"docker swarm join --token SWMTKN-1-x 10.0.0.1:2377"));
        assert!(!join_script("T", "10.0.0.1", None).contains("certs.d"));
    }
}
