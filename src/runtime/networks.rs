//! Networks: each app's own bridge, the networks an admin makes (`network:*`), and the build
//! network.
//!
//! An app's containers start on its own network (`berth-app-APP-<root>`): they reach each
//! other and the services linked to the app (berth attaches those to it), nothing else; nginx
//! on the host reaches every bridge. An admin connects apps that should talk through a network
//! of their own (`network:create`, `network:set APP attach-post-create NET`); there apps reach
//! each other by name (`APP`, `APP.PROCESS`, `APP.PROCESS.INDEX`). Builds run on
//! `berth-build`, where containers do not reach each other (no inter-container traffic) and a
//! firewall rule keeps them from the host's own services (whatever listens on the host's
//! addresses), while the internet stays reachable for package installs.
//!
//! Subnets are berth's choice, one /24 each out of 172.16.0.0/12, skipping every subnet the
//! engine or the host's routes already use: the engine's own pools hold about 30 networks,
//! fewer than a server has apps.

use std::collections::HashMap;

use bollard::models::{EndpointSettings, Ipam, IpamConfig, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;

use super::{LABEL_APP, LABEL_ROOT, Runtime, RuntimeError};

/// The network builds run on, and its bridge's interface name (the firewall rule's match).
pub const BUILD_NETWORK: &str = "berth-build";
/// Where holders of web containers' namespaces wait, nameless, until one is taken
/// (`holders.rs`): its bridge keeps them from each other (no inter-container traffic).
pub const PARK_NETWORK: &str = "berth-park";
/// On networks berth made: `app`, `user`, `build` or `park`.
const LABEL_NETWORK: &str = "berth.network";
/// On a `network:create` network: the name the admin gave it.
const LABEL_NAME: &str = "berth.network-name";

/// A network an admin made, as the engine has it.
#[derive(Debug, Clone)]
pub struct UserNetwork {
    pub name: String,
    /// The containers on it now, by name.
    pub containers: Vec<String>,
}

/// A network an admin may attach apps to: one made with `network:create` in this root
/// (`made`, by the name given) or another of the engine's (`docker network create`, the
/// engine's own `bridge`), by its own name.
#[derive(Debug, Clone)]
pub struct AttachableNetwork {
    pub name: String,
    pub made: bool,
    pub driver: String,
    pub scope: String,
    pub internal: bool,
}

impl Runtime {
    /// The name of an app's own network on the engine.
    pub fn app_network(&self, app: &str) -> String {
        format!("berth-app-{app}-{}", stable_tag(&self.root))
    }

    /// The engine's name of a network an admin named `name`.
    pub fn user_network(&self, name: &str) -> String {
        format!("berth-net-{name}-{}", stable_tag(&self.root))
    }

    /// Makes the app's network if it is missing; returns its name.
    pub async fn ensure_app_network(&self, app: &str) -> Result<String, RuntimeError> {
        let name = self.app_network(app);
        if !self.networks_made.lock().unwrap_or_else(|p| p.into_inner()).contains(&name) {
            let labels = [(LABEL_NETWORK, "app"), (LABEL_APP, app), (LABEL_ROOT, self.root.as_str())];
            self.ensure_bridge(&name, &labels, HashMap::new()).await?;
            self.networks_made.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone());
        }
        Ok(name)
    }

    /// Makes a network an admin named; false if it was there already.
    pub async fn create_user_network(&self, name: &str) -> Result<bool, RuntimeError> {
        let network = self.user_network(name);
        if self.network_exists(&network).await? {
            return Ok(false);
        }
        self.ensure_bridge(&network, &[(LABEL_NETWORK, "user"), (LABEL_NAME, name), (LABEL_ROOT, self.root.as_str())], HashMap::new()).await?;
        Ok(true)
    }

    /// The networks an admin made in this root, with what is on each, by name.
    pub async fn user_networks(&self) -> Result<Vec<UserNetwork>, RuntimeError> {
        let filters = HashMap::from([("label", vec![format!("{LABEL_ROOT}={}", self.root), format!("{LABEL_NETWORK}=user")])]);
        let listed = self.docker.list_networks(Some(ListNetworksOptionsBuilder::new().filters(&filters).build())).await?;
        let mut networks = Vec::new();
        for network in listed {
            let Some(name) = network.labels.as_ref().and_then(|l| l.get(LABEL_NAME)).cloned() else { continue };
            let id = network.id.unwrap_or_default();
            let inspected = self.docker.inspect_network(&id, None).await?;
            let mut containers: Vec<String> = inspected.containers.unwrap_or_default().into_values().filter_map(|c| c.name).collect();
            containers.sort();
            networks.push(UserNetwork { name, containers });
        }
        networks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(networks)
    }

    /// Every network an admin may attach apps to, by name: those of `network:create`, then
    /// the engine's others that take containers (not `host`, `none` or swarm's ingress).
    /// Never berth's own (apps', builds') nor another root's.
    pub async fn attachable_networks(&self) -> Result<Vec<AttachableNetwork>, RuntimeError> {
        let mut networks = Vec::new();
        for network in self.docker.list_networks(None).await? {
            let labels = network.labels.clone().unwrap_or_default();
            let ours = labels.get(LABEL_ROOT) == Some(&self.root);
            let name = match (labels.get(LABEL_NETWORK).map(String::as_str), labels.get(LABEL_NAME)) {
                (Some("user"), Some(name)) if ours => name.clone(),
                (Some(_), _) => continue,
                (None, _) => network.name.clone().unwrap_or_default(),
            };
            let made = labels.contains_key(LABEL_NETWORK);
            if !made && (["host", "none", ""].contains(&name.as_str()) || network.ingress == Some(true)) {
                continue;
            }
            let (driver, scope, internal) = (network.driver.unwrap_or_default(), network.scope.unwrap_or_default(), network.internal.unwrap_or(false));
            networks.push(AttachableNetwork { name, made, driver, scope, internal });
        }
        networks.sort_by(|a, b| (!a.made, &a.name).cmp(&(!b.made, &b.name)));
        Ok(networks)
    }

    /// The engine's name of the network an admin named `name`: the one made with
    /// `network:create`, else the engine's network of that name.
    pub async fn attachable_network(&self, name: &str) -> Result<String, RuntimeError> {
        let made = self.user_network(name);
        Ok(if self.network_exists(&made).await? { made } else { name.to_string() })
    }

    /// Removes a network, disconnecting whatever is still on it first; a missing one is fine.
    pub async fn remove_network(&self, network: &str) -> Result<(), RuntimeError> {
        self.networks_made.lock().unwrap_or_else(|p| p.into_inner()).remove(network);
        let inspected = match self.docker.inspect_network(network, None).await {
            Ok(n) => n,
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for id in inspected.containers.unwrap_or_default().into_keys() {
            let _ = self.docker.disconnect_network(network, NetworkDisconnectRequest { container: id, force: Some(true) }).await;
        }
        match self.docker.remove_network(network).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Connects a container to a network under these extra names (already on it is fine).
    pub async fn attach(&self, container: &str, network: &str, aliases: Vec<String>) -> Result<(), RuntimeError> {
        // A web container that joined a holder's namespace is on its holder's networks.
        self.connect_to(&self.network_owner(container).await, network.to_string(), aliases).await
    }

    /// `attach` of a container that has its own network namespace.
    pub(super) async fn connect_to(&self, container: &str, network: String, aliases: Vec<String>) -> Result<(), RuntimeError> {
        let network = network.as_str();
        let endpoint = EndpointSettings { aliases: (!aliases.is_empty()).then_some(aliases), ..Default::default() };
        let request = NetworkConnectRequest { container: container.to_string(), endpoint_config: Some(endpoint) };
        match self.docker.connect_network(network, request).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 403, message }) if message.contains("already exists") => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, message }) if message.contains("network") => {
                Err(RuntimeError::Container(format!("the network {network} does not exist")))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes a container off a network (not on it, or either gone, is fine).
    pub async fn detach(&self, container: &str, network: &str) -> Result<(), RuntimeError> {
        let container = self.network_owner(container).await;
        let request = NetworkDisconnectRequest { container, force: Some(true) };
        match self.docker.disconnect_network(network, request).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) if message.contains("is not connected") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The app networks a container is on, by app.
    pub async fn app_networks_of(&self, container: &str) -> Result<Vec<(String, String)>, RuntimeError> {
        let info = self.docker.inspect_container(container, None).await?;
        let on: Vec<String> = info.network_settings.and_then(|n| n.networks).map(|n| n.into_keys().collect()).unwrap_or_default();
        let suffix = format!("-{}", stable_tag(&self.root));
        Ok(on.into_iter().filter_map(|n| Some((n.strip_prefix("berth-app-")?.strip_suffix(&suffix)?.to_string(), n.clone()))).collect())
    }

    /// The build network, made if missing, with the firewall rule that keeps its containers
    /// from the host's own services in place. Refused (no build runs) if the rule cannot be.
    pub async fn ensure_build_network(&self) -> Result<&'static str, RuntimeError> {
        self.ensure_apart(BUILD_NETWORK, "build").await?;
        // One check-and-add at a time on the machine: two would both add the rule.
        let _machine = super::network_lock().await;
        fence_from_host(BUILD_NETWORK).await.map_err(|e| RuntimeError::Container(format!("builds cannot be kept from the host's own services: {e}")))?;
        Ok(BUILD_NETWORK)
    }

    /// The network holders wait on, made if missing.
    pub(super) async fn ensure_park_network(&self) -> Result<&'static str, RuntimeError> {
        self.ensure_apart(PARK_NETWORK, "park").await?;
        Ok(PARK_NETWORK)
    }

    /// A bridge of berth's own (`kind`: its `berth.network` label) whose containers cannot
    /// reach each other, its interface named as the network; made once per process.
    async fn ensure_apart(&self, name: &str, kind: &str) -> Result<(), RuntimeError> {
        if !self.networks_made.lock().unwrap_or_else(|p| p.into_inner()).contains(name) {
            let options = HashMap::from([
                ("com.docker.network.bridge.name".to_string(), name.to_string()),
                ("com.docker.network.bridge.enable_icc".to_string(), "false".to_string()),
            ]);
            self.ensure_bridge(name, &[(LABEL_NETWORK, kind)], options).await?;
            self.networks_made.lock().unwrap_or_else(|p| p.into_inner()).insert(name.to_string());
        }
        Ok(())
    }

    async fn network_exists(&self, network: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_network(network, None).await {
            Ok(_) => Ok(true),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A bridge network of this name, made once (serialized across every berth daemon on the
    /// machine, as the engine accepts two networks of one name), on a free /24. An app's or
    /// an admin's network carries its root's label; the build network, shared by every root
    /// on the engine, none.
    async fn ensure_bridge(&self, name: &str, labels: &[(&str, &str)], options: HashMap<String, String>) -> Result<(), RuntimeError> {
        let _machine = super::network_lock().await;
        if self.network_exists(name).await? {
            return Ok(());
        }
        let labels: HashMap<String, String> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let listed = self.docker.list_networks(None).await?;
        let mut used: Vec<Subnet> = listed.iter().flat_map(|n| n.ipam.iter().flat_map(|i| i.config.iter().flatten())).filter_map(|c| parse_subnet(c.subnet.as_deref()?)).collect();
        used.extend(host_routes());
        let subnet = free_subnet(&used).ok_or_else(|| RuntimeError::Container("no /24 in 172.16.0.0/12 is free for another network".into()))?;
        let ipam = Ipam { config: Some(vec![IpamConfig { subnet: Some(show_subnet(subnet)), ..Default::default() }]), ..Default::default() };
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam: Some(ipam),
            options: Some(options),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker.create_network(request).await?;
        Ok(())
    }
}

/// A tag of the root that stays the same across builds of berth (network names outlive the
/// daemon): FNV-1a, 8 hex digits.
fn stable_tag(root: &str) -> String {
    let hash = root.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{hash:08x}")
}

/// An IPv4 subnet: its first address and its prefix length.
type Subnet = (u32, u32);

fn parse_subnet(text: &str) -> Option<Subnet> {
    let (address, prefix) = text.split_once('/')?;
    let address: std::net::Ipv4Addr = address.parse().ok()?;
    let prefix: u32 = prefix.parse().ok().filter(|p| *p <= 32)?;
    Some((u32::from(address) & mask(prefix), prefix))
}

fn show_subnet((address, prefix): Subnet) -> String {
    format!("{}/{prefix}", std::net::Ipv4Addr::from(address))
}

fn mask(prefix: u32) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) }
}

fn overlaps(a: Subnet, b: Subnet) -> bool {
    let shorter = a.1.min(b.1);
    a.0 & mask(shorter) == b.0 & mask(shorter)
}

/// The first /24 of 172.16.0.0/12 that overlaps none of `used`. Pure.
fn free_subnet(used: &[Subnet]) -> Option<Subnet> {
    let (base, _) = parse_subnet("172.16.0.0/12")?;
    (0..4096u32).map(|i| (base + (i << 8), 24)).find(|candidate| !used.iter().any(|u| overlaps(*candidate, *u)))
}

/// The host's routes other than the default one (a subnet there is a network the host
/// reaches: a container network on it would hide it).
fn host_routes() -> Vec<Subnet> {
    let table = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    table.lines().skip(1).filter_map(route_line).collect()
}

/// One line of /proc/net/route (`IFACE DEST GATEWAY FLAGS … MASK …`, addresses in hex, in
/// the host's byte order): its subnet, unless it is the default route. Pure.
fn route_line(line: &str) -> Option<Subnet> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| u32::from_be_bytes(v.to_ne_bytes()));
    let (destination, netmask) = (hex(fields.get(1)?)?, hex(fields.get(7)?)?);
    (netmask != 0).then(|| (destination & netmask, netmask.count_ones()))
}

/// Makes sure a firewall rule drops whatever a container of `bridge` sends to the host
/// itself (any of its addresses): `iptables -I INPUT -i BRIDGE -j DROP`, added once.
async fn fence_from_host(bridge: &str) -> Result<(), String> {
    let rule = ["INPUT", "-i", bridge, "-j", "DROP"];
    let iptables = |action: &'static str| {
        let mut cmd = tokio::process::Command::new("iptables");
        cmd.arg("-w").arg(action).args(rule).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
        cmd
    };
    let present = iptables("-C").output().await.map_err(|e| format!("cannot run iptables: {e}"))?;
    if present.status.success() {
        return Ok(());
    }
    let added = iptables("-I").output().await.map_err(|e| format!("cannot run iptables: {e}"))?;
    if added.status.success() { Ok(()) } else { Err(format!("iptables: {}", String::from_utf8_lossy(&added.stderr).trim())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_subnet_overlaps_nothing_the_engine_or_the_host_uses() {
        let used: Vec<Subnet> = ["172.17.0.0/16", "172.16.0.0/24", "172.16.1.0/24", "10.0.0.0/8"].iter().map(|s| parse_subnet(s).unwrap()).collect();
        assert_eq!(free_subnet(&used).map(show_subnet).as_deref(), Some("172.16.2.0/24"));
        // A wide route over the whole range leaves nothing.
        assert_eq!(free_subnet(&[parse_subnet("172.16.0.0/12").unwrap()]), None);
        // A /16 anywhere skips its 256 /24s.
        let used = [parse_subnet("172.16.0.0/16").unwrap()];
        assert_eq!(free_subnet(&used).map(show_subnet).as_deref(), Some("172.17.0.0/24"));
        assert_eq!(parse_subnet("172.18.5.9/24"), parse_subnet("172.18.5.0/24"));
        assert_eq!(parse_subnet("nonsense"), None);
        assert_eq!(parse_subnet("1.2.3.4/33"), None);
    }

    #[test]
    fn routes_are_read_as_the_kernel_writes_them() {
        // 172.17.0.0/16 on docker0, the default route, 10.0.2.0/24.
        assert_eq!(route_line("docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0").map(show_subnet).as_deref(), Some("172.17.0.0/16"));
        assert_eq!(route_line("eth0\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0"), None);
        assert_eq!(route_line("eth0\t0002000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0").map(show_subnet).as_deref(), Some("10.0.2.0/24"));
        assert_eq!(route_line("Iface\tDestination"), None);
    }

    #[test]
    fn the_roots_tag_is_the_same_on_every_build() {
        assert_eq!(stable_tag("/var/lib/berth"), stable_tag("/var/lib/berth"));
        assert_ne!(stable_tag("/var/lib/berth"), stable_tag("/tmp/root"));
        assert_eq!(stable_tag(""), "811c9dc5");
    }
}
