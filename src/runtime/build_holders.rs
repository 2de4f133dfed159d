//! A network namespace kept ready for an app's next build.
//!
//! A build's containers (a buildpack build's one container, each RUN step of a Dockerfile)
//! start on the build network. Making a container's namespace there (the namespace, its
//! veth pair, the embedded DNS) and tearing it down after costs the engine and the kernel
//! about as much as the rest of the container's start and stop, and that work runs at the
//! apps' CPU priority while they serve, not at the build's. So an app's builds join a
//! holder on the build network (`network_mode: container:HOLDER`, which the classic builder
//! takes for its RUN steps too): the app's first build makes it, each build after it
//! reuses it, and it goes `IDLE` after the app's last build, or with the app (destroyed or
//! renamed).
//!
//! Nothing of one build stays in the namespace for the next: a build's processes end with
//! its container (their sockets with them), a build cannot change the namespace's addresses,
//! routes or firewall (no NET_ADMIN), and a holder serves one app's builds only, one at a
//! time (`take_build_holder` hands it out, `keep_build_holder` takes it back). A holder
//! runs `sleep` from the stack image; without that image, or when the build's options set
//! hosts of its own (which the engine refuses beside a joined namespace), a build starts on
//! the network itself. A holder an earlier daemon left goes when the next one starts
//! (`orphaned_holders`).

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::CreateContainerOptions;

use super::{LABEL_APP, LABEL_DAEMON, LABEL_ROOT, Runtime, RuntimeError};

/// On the holder of an app's builds' namespace (the value: `build`).
pub const LABEL_BUILD_HOLDER: &str = "berth.build-holder";

/// How long a holder waits for the app's next build.
const IDLE: Duration = Duration::from_secs(600);

/// The holders kept for apps' next builds: by app, the holder's id and which keeping it is
/// (the timer that removes it removes only the keeping it was started for).
pub(super) type Kept = std::sync::Arc<std::sync::Mutex<HashMap<String, (String, u64)>>>;

impl Runtime {
    /// The network a build of `app` runs its containers in (`container:HOLDER`, or the
    /// build network `network`), and the holder to give back after the build
    /// (`keep_build_holder`).
    pub(super) async fn build_network(&self, app: Option<&str>, network: &str, extra_hosts: bool) -> (String, Option<String>) {
        let holder = match app {
            Some(app) if !extra_hosts => self.take_build_holder(app, network).await,
            _ => None,
        };
        match holder {
            Some(id) => (format!("container:{id}"), Some(id)),
            None => (network.to_string(), None),
        }
    }

    /// The app's kept holder if it still runs, else a new one on `network`.
    async fn take_build_holder(&self, app: &str, network: &str) -> Option<String> {
        let kept = self.kept_build_holders.lock().unwrap_or_else(|p| p.into_inner()).remove(app);
        if let Some((id, _)) = kept {
            if self.alive(&id).await.is_ok() {
                return Some(id);
            }
            let _ = self.remove_container(&id).await;
        }
        match self.make_build_holder(app, network).await {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::debug!(app, "the build starts on the build network itself: {e}");
                None
            }
        }
    }

    /// Keeps `holder` for the app's next build; removed `IDLE` after, unless a build took
    /// it meanwhile. One kept already (a build beside this one made its own) goes.
    pub(super) fn keep_build_holder(&self, app: &str, holder: String) {
        let generation = rand::random::<u64>();
        let replaced = self.kept_build_holders.lock().unwrap_or_else(|p| p.into_inner()).insert(app.to_string(), (holder, generation));
        let runtime = self.clone();
        let app = app.to_string();
        tokio::spawn(async move {
            if let Some((id, _)) = replaced {
                let _ = runtime.remove_container(&id).await;
            }
            tokio::time::sleep(IDLE).await;
            let expired = {
                let mut kept = runtime.kept_build_holders.lock().unwrap_or_else(|p| p.into_inner());
                match kept.get(&app) {
                    Some((_, g)) if *g == generation => kept.remove(&app),
                    _ => None,
                }
            };
            if let Some((id, _)) = expired {
                let _ = runtime.remove_container(&id).await;
            }
        });
    }

    /// Removes every holder of `app`'s builds on the engine (the app goes, or is renamed).
    pub async fn remove_build_holders(&self, app: &str) -> Result<(), RuntimeError> {
        self.kept_build_holders.lock().unwrap_or_else(|p| p.into_inner()).remove(app);
        for holder in self.labelled(vec![format!("{LABEL_ROOT}={}", self.root), format!("{LABEL_APP}={app}"), LABEL_BUILD_HOLDER.to_string()]).await? {
            if let Some(id) = holder.id {
                self.remove_container(&id).await?;
            }
        }
        Ok(())
    }

    async fn make_build_holder(&self, app: &str, network: &str) -> Result<String, RuntimeError> {
        let image = super::STACK_IMAGE;
        if self.image_info(image).await.is_none() {
            return Err(RuntimeError::Container(format!("no {image}")));
        }
        let labels = HashMap::from([
            (LABEL_APP.to_string(), app.to_string()),
            (LABEL_ROOT.to_string(), self.root.clone()),
            (LABEL_BUILD_HOLDER.to_string(), "build".to_string()),
            (LABEL_DAEMON.to_string(), super::daemon_run().to_string()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.into()),
            cmd: Some(vec!["sleep".into(), "infinity".into()]),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(network.into()),
                restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }),
                log_config: Some(bollard::models::HostConfigLogConfig { typ: Some("none".into()), config: None }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let name = format!("berth-{app}-build-net-{:08x}-{}", rand::random::<u32>(), self.root_tag());
        let created = self.docker.create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body).await?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove_container(&created.id).await;
            return Err(e.into());
        }
        Ok(created.id)
    }
}
