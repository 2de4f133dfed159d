//! Network namespaces made ahead of time for an app's next web containers.
//!
//! Starting a container on a user-defined network costs the engine most of its start (the
//! namespace, the veth pair, the embedded DNS); joining a namespace that is ready costs a
//! third of it. So berth starts one small holder per web slot ahead of time, and the new web
//! container joins it (`network_mode: container:HOLDER`): the swap waits for little more
//! than the app itself. A holder waits on the park network (no names, no traffic between
//! its containers): only when a container takes it does it join the app's network and the
//! networks an admin attached the app to, under the slot's names, and leave the park, so no
//! name ever leads to a holder with nothing behind it. Holders are made while a release
//! builds, and, once a rollout's old containers have retired, for the next rollout (a
//! sleeping process per web slot), so even a build that takes no time finds them ready.
//! A holder goes with the container that joined it when that container is removed
//! (`Runtime::remove`); when it retires (`Runtime::retire`: a rollout's old container), the
//! holder is recycled instead (`recycle`): taken off every network (nothing behind it may
//! answer to a name or an address) and kept for the slot's next container, so a swap costs
//! the engine one container's start and stop, as a swap by hand does, not two. Its
//! namespace keeps no TIME_WAIT sockets (`tcp_max_tw_buckets` 0, set when it is made): the
//! retired app's closed connections would keep the next one's port from binding without
//! SO_REUSEADDR. One no container took goes when the deploy ends (`cool`) or the app
//! does, and one an interrupted daemon left goes when the next one starts
//! (`orphaned_holders`).
//!
//! A holder runs `sleep infinity` from the buildpack stack image: where that image is
//! missing, or the app's docker-options give its containers network settings of their own
//! (ports, DNS, hosts, another network), web containers start on the network themselves.
//! Whatever fails in taking a holder (it died, a network refused it) removes it, and the
//! container starts on the network itself.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{CreateContainerOptions, ListContainersOptions};

use super::{LABEL_APP, LABEL_DAEMON, LABEL_ROOT, Runtime, RuntimeError};

/// On a holder: the slot whose namespace it holds (`web.1`).
pub const LABEL_HOLDER: &str = "berth.holder";

/// The sysctl a holder is made with so it can be recycled (see the module's text): its
/// namespace keeps no TIME_WAIT sockets.
const RECYCLABLE: (&str, &str) = ("net.ipv4.tcp_max_tw_buckets", "0");

/// A web slot whose namespace is made ahead: `web.INDEX` of `app` (its host name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warm {
    pub app: String,
    pub index: u32,
}

/// A holder being made for a slot.
pub(super) struct Pending {
    made: tokio::task::JoinHandle<Option<String>>,
}

/// The pending holders of this process, by app and index.
pub(super) type Pool = std::sync::Arc<std::sync::Mutex<HashMap<(String, u32), Pending>>>;

/// Whether a container made with `body` may join another's network namespace: the engine
/// refuses one that also asks for network settings of its own (the admin's docker-options).
/// Pure.
pub(super) fn joinable(body: &ContainerCreateBody, network: &str) -> bool {
    let host = body.host_config.as_ref();
    let empty = |v: Option<&Vec<String>>| v.is_none_or(Vec::is_empty);
    host.and_then(|h| h.network_mode.as_deref()) == Some(network)
        && host.is_none_or(|h| {
            h.port_bindings.as_ref().is_none_or(HashMap::is_empty)
                && h.publish_all_ports != Some(true)
                && empty(h.dns.as_ref())
                && empty(h.dns_search.as_ref())
                && empty(h.dns_options.as_ref())
                && empty(h.extra_hosts.as_ref())
                && empty(h.links.as_ref())
        })
        && body.exposed_ports.as_ref().is_none_or(|p| p.is_empty())
        && body.domainname.is_none()
}

/// `body`, joined to `holder`'s namespace: the holder has the network, the names and the
/// host name.
pub(super) fn join(mut body: ContainerCreateBody, holder: &str) -> ContainerCreateBody {
    if let Some(host) = body.host_config.as_mut() {
        host.network_mode = Some(format!("container:{holder}"));
    }
    body.networking_config = None;
    body.hostname = None;
    body
}

impl Runtime {
    /// Starts making a holder for each slot (in the background; a slot that has one
    /// already keeps it); the app's holders for other slots (a recycled one of a slot
    /// scaled away) go.
    pub fn warm(&self, slots: Vec<Warm>) {
        let mut pool = self.holders.lock().unwrap_or_else(|p| p.into_inner());
        let beyond: Vec<_> = pool.keys().filter(|(app, index)| slots.iter().any(|w| &w.app == app) && !slots.iter().any(|w| &w.app == app && w.index == *index)).cloned().collect();
        for key in beyond {
            if let Some(pending) = pool.remove(&key) {
                let runtime = self.clone();
                tokio::spawn(async move {
                    if let Ok(Some(id)) = pending.made.await {
                        let _ = runtime.remove_container(&id).await;
                    }
                });
            }
        }
        for warm in slots {
            let key = (warm.app.clone(), warm.index);
            if pool.contains_key(&key) {
                continue;
            }
            let runtime = self.clone();
            let made = tokio::spawn(async move {
                match runtime.make_holder(&warm).await {
                    Ok(id) => Some(id),
                    Err(e) => {
                        tracing::debug!(app = warm.app, index = warm.index, "no holder: {e}");
                        None
                    }
                }
            });
            pool.insert(key, Pending { made });
        }
    }

    /// The holder made for this container's slot, if one was: moved from the park to the
    /// app's `network` and the admin's networks under `aliases` (taken: it is the
    /// container's from now on).
    pub(super) async fn take_holder(&self, spec: &super::ContainerSpec<'_>, network: &str, aliases: &[String]) -> Option<String> {
        let pending = self.holders.lock().unwrap_or_else(|p| p.into_inner()).remove(&(spec.app.to_string(), spec.index))?;
        let id = pending.made.await.ok().flatten()?;
        let dressed = async {
            self.alive(&id).await.map_err(RuntimeError::Container)?;
            // The address it takes on the app's network must not be a dead container's yet.
            self.wait_for_addresses().await;
            let mut joins = vec![self.connect_to(&id, network.to_string(), aliases.to_vec())];
            for admin in &spec.networks {
                joins.push(self.connect_to(&id, self.attachable_network(admin).await?, aliases.to_vec()));
            }
            for joined in futures_util::future::join_all(joins).await {
                joined?;
            }
            self.detach(&id, super::networks::PARK_NETWORK).await
        };
        match dressed.await {
            Ok(()) => Some(id),
            Err(e) => {
                tracing::debug!(app = spec.app, index = spec.index, "cannot take the holder: {e}");
                let _ = self.remove_container(&id).await;
                None
            }
        }
    }

    /// Removes the holders made for `app` that no container took.
    pub async fn cool(&self, app: &str) {
        let pending: Vec<Pending> = {
            let mut pool = self.holders.lock().unwrap_or_else(|p| p.into_inner());
            let keys: Vec<_> = pool.keys().filter(|(a, _)| a == app).cloned().collect();
            keys.into_iter().filter_map(|k| pool.remove(&k)).collect()
        };
        for p in pending {
            if let Ok(Some(id)) = p.made.await {
                let _ = self.remove_container(&id).await;
            }
        }
    }

    /// Removes every holder of `app` on the engine, joined or not: the app goes, and a
    /// retirement running beside it may have recycled one after `cool`.
    pub async fn remove_holders(&self, app: &str) -> Result<(), RuntimeError> {
        self.cool(app).await;
        for holder in self.labelled(vec![format!("{LABEL_ROOT}={}", self.root), format!("{LABEL_APP}={app}"), LABEL_HOLDER.to_string()]).await? {
            if let Some(id) = holder.id {
                self.remove_container(&id).await?;
            }
        }
        self.cool(app).await;
        Ok(())
    }

    /// Removes a retired container; its holder, if it had one, is recycled.
    pub(super) async fn remove_recycling(&self, id: &str) -> Result<(), RuntimeError> {
        let holder = self.holder_of(id).await;
        self.remove_container(id).await?;
        match holder {
            Some(holder) => self.recycle(&holder).await,
            None => Ok(()),
        }
    }

    /// The holder of a retired container: kept for its slot's next container, off every
    /// network, if it was made to be (`RECYCLABLE`), still runs and the slot has no other;
    /// else removed.
    async fn recycle(&self, holder: &str) -> Result<(), RuntimeError> {
        let Ok(info) = self.docker.inspect_container(holder, None).await else {
            return self.remove_container(holder).await;
        };
        let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
        let slot = labels.get(LABEL_HOLDER).and_then(|s| s.strip_prefix(&format!("{}.", crate::process::WEB))).and_then(|i| i.parse::<u32>().ok());
        let recyclable = info.host_config.and_then(|h| h.sysctls).is_some_and(|s| s.get(RECYCLABLE.0).map(String::as_str) == Some(RECYCLABLE.1));
        let running = info.state.and_then(|s| s.running) == Some(true);
        let (Some(app), Some(index), true, true) = (labels.get(LABEL_APP).cloned(), slot, recyclable, running) else {
            return self.remove_container(holder).await;
        };
        let key = (app, index);
        // (Asked again below, under the lock: this only spares the network work.)
        if self.holders.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&key) {
            return self.remove_container(holder).await;
        }
        let networks: Vec<String> = info.network_settings.and_then(|n| n.networks).map(|n| n.into_keys().collect()).unwrap_or_default();
        for network in networks {
            let request = bollard::models::NetworkDisconnectRequest { container: holder.to_string(), force: Some(true) };
            if let Err(e) = self.docker.disconnect_network(&network, request).await {
                tracing::debug!(holder, network, "cannot take the holder off the network: {e}");
                return self.remove_container(holder).await;
            }
        }
        let kept = {
            let mut pool = self.holders.lock().unwrap_or_else(|p| p.into_inner());
            let free = !pool.contains_key(&key);
            if free {
                let id = holder.to_string();
                pool.insert(key, Pending { made: tokio::spawn(async move { Some(id) }) });
            }
            free
        };
        if kept { Ok(()) } else { self.remove_container(holder).await }
    }

    async fn make_holder(&self, warm: &Warm) -> Result<String, RuntimeError> {
        let image = self.holder_image().await?;
        let web = crate::process::WEB;
        let park = self.ensure_park_network().await?;
        // The app's network exists before a container takes the holder.
        self.ensure_app_network(&warm.app).await?;
        let name = format!("berth-{}-{web}.{}-net-{:08x}-{}", warm.app, warm.index, rand::random::<u32>(), self.root_tag());
        let hostname = super::hostname(&warm.app, web, warm.index);
        self.start_holder(image, name, park, Some(hostname), &warm.app, (LABEL_HOLDER, format!("{web}.{}", warm.index))).await
    }

    /// The image holders sleep in (the stack image), if the engine has it.
    pub(super) async fn holder_image(&self) -> Result<&'static str, RuntimeError> {
        let image = super::STACK_IMAGE;
        if self.image_info(image).await.is_none() {
            return Err(RuntimeError::Container(format!("no {image}")));
        }
        Ok(image)
    }

    /// Starts a holder named `name`: `sleep` in `image` on `network`, labelled as `app`'s of
    /// this root and daemon run, with `kind` (its label and value); never restarted, no log,
    /// its namespace keeping no TIME_WAIT sockets (`RECYCLABLE`). Removed if it cannot start.
    pub(super) async fn start_holder(&self, image: &str, name: String, network: &str, hostname: Option<String>, app: &str, kind: (&str, String)) -> Result<String, RuntimeError> {
        let labels = HashMap::from([
            (LABEL_APP.to_string(), app.to_string()),
            (LABEL_ROOT.to_string(), self.root.clone()),
            (kind.0.to_string(), kind.1),
            (LABEL_DAEMON.to_string(), super::daemon_run().to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.into()),
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            labels: Some(labels),
            hostname,
            host_config: Some(HostConfig {
                network_mode: Some(network.into()),
                restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }),
                log_config: Some(bollard::models::HostConfigLogConfig { typ: Some("none".into()), config: None }),
                sysctls: Some(HashMap::from([(RECYCLABLE.0.to_string(), RECYCLABLE.1.to_string())])),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self.docker.create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body).await?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove_container(&created.id).await;
            return Err(e.into());
        }
        Ok(created.id)
    }

    /// Every container, running or not, with all these labels (`key` or `key=value`).
    pub(super) async fn labelled(&self, labels: Vec<String>) -> Result<Vec<bollard::models::ContainerSummary>, RuntimeError> {
        let filters = HashMap::from([("label".to_string(), labels)]);
        Ok(self.docker.list_containers(Some(ListContainersOptions { all: true, filters: Some(filters), ..Default::default() })).await?)
    }

    /// The holder whose namespace this container joined, if it did.
    pub(super) async fn holder_of(&self, id: &str) -> Option<String> {
        let info = self.docker.inspect_container(id, None).await.ok()?;
        let mode = info.host_config?.network_mode?;
        let holder = mode.strip_prefix("container:")?;
        self.is_holder(holder).await.then(|| holder.to_string())
    }

    async fn is_holder(&self, id: &str) -> bool {
        let Ok(info) = self.docker.inspect_container(id, None).await else {
            return false;
        };
        let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
        labels.contains_key(LABEL_HOLDER) && labels.get(LABEL_ROOT) == Some(&self.root)
    }

    /// The container that has the network of this one: its holder, or itself.
    pub(super) async fn network_owner(&self, id: &str) -> String {
        self.holder_of(id).await.unwrap_or_else(|| id.to_string())
    }

    /// Holders an earlier run of the daemon made for this root that no container uses: it
    /// was stopped between making one and handing it to a container, or removing it; and
    /// the holders it kept for apps' next builds (`build_holders.rs`).
    pub async fn orphaned_holders(&self) -> Result<Vec<String>, RuntimeError> {
        let all = self.labelled(vec![format!("{LABEL_ROOT}={}", self.root)]).await?;
        let joined: Vec<String> = all.iter().filter_map(|c| c.host_config.as_ref()?.network_mode.as_deref()?.strip_prefix("container:").map(str::to_string)).collect();
        let holder = |labels: &HashMap<String, String>| labels.contains_key(LABEL_HOLDER) || labels.contains_key(super::LABEL_BUILD_HOLDER);
        let earlier = |labels: &HashMap<String, String>| labels.get(LABEL_DAEMON).is_none_or(|run| run != super::daemon_run());
        Ok(all.into_iter().filter(|c| c.labels.as_ref().is_some_and(|l| holder(l) && earlier(l))).filter_map(|c| c.id).filter(|id| !joined.iter().any(|j| j == id || id.starts_with(j.as_str()))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(network: &str) -> ContainerCreateBody {
        ContainerCreateBody { hostname: Some("shop-web-1".into()), host_config: Some(HostConfig { network_mode: Some(network.into()), ..Default::default() }), ..Default::default() }
    }

    #[test]
    fn a_container_with_network_settings_of_its_own_starts_on_the_network_itself() {
        assert!(joinable(&body("berth-app-shop"), "berth-app-shop"));
        assert!(!joinable(&body("host"), "berth-app-shop"), "--network host");
        let with = |f: &dyn Fn(&mut HostConfig)| {
            let mut b = body("berth-app-shop");
            f(b.host_config.as_mut().unwrap());
            joinable(&b, "berth-app-shop")
        };
        assert!(!with(&|h| h.dns = Some(vec!["1.1.1.1".into()])));
        assert!(!with(&|h| h.extra_hosts = Some(vec!["db:10.0.0.1".into()])));
        assert!(!with(&|h| h.publish_all_ports = Some(true)));
        assert!(!with(&|h| h.port_bindings = Some(HashMap::from([("80/tcp".to_string(), None)]))));
        assert!(with(&|h| h.dns = Some(Vec::new())), "an empty list is no setting");
        let mut exposed = body("berth-app-shop");
        exposed.exposed_ports = Some(vec!["80/tcp".to_string()]);
        assert!(!joinable(&exposed, "berth-app-shop"));
    }

    #[test]
    fn a_joined_container_has_the_holders_network_and_host_name() {
        let joined = join(body("berth-app-shop"), "abc123");
        assert_eq!(joined.host_config.unwrap().network_mode.as_deref(), Some("container:abc123"));
        assert!(joined.hostname.is_none() && joined.networking_config.is_none());
    }
}
