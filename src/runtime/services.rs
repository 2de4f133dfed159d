//! Database service containers: one per service on berth's network, its data in a named
//! volume, restarted by the engine.

use super::*;

/// A database service's container: one per service, on berth's network under its name
/// (apps reach it by that name), its data in a named volume, restarted by the engine.
pub struct ServiceSpec<'a> {
    /// `postgres/mydb`: the `berth.service` label.
    pub label: String,
    /// Container, volume and host name (unique per engine and root).
    pub name: &'a str,
    pub image: &'a str,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    /// Where the volume is mounted in the container.
    pub data_dir: &'a str,
}

/// The engine-wide name of a root's service (its container, volume and host name). Pure.
pub fn service_name(root: &str, kind: &str, name: &str) -> String {
    format!("berth-{kind}-{name}-{}", super::root_tag(root))
}

/// A service container as the engine has it.
pub struct ServiceContainer {
    pub id: String,
    pub running: bool,
    pub status: String,
}

impl Runtime {
    /// The engine-wide name of this root's service (its container, volume and host name).
    pub fn service_name(&self, kind: &str, name: &str) -> String {
        service_name(&self.root, kind, name)
    }

    /// Makes a service's container run: started if stopped, created (on its volume, which
    /// the engine creates the first time and keeps) if missing. Returns its id.
    pub async fn ensure_service(&self, spec: &ServiceSpec<'_>) -> Result<String, RuntimeError> {
        if let Some(found) = self.service(spec.name).await? {
            if !found.running {
                self.docker.start_container(&found.id, None).await?;
            }
            return Ok(found.id);
        }
        let labels = HashMap::from([(LABEL_SERVICE.to_string(), spec.label.clone()), (LABEL_ROOT.to_string(), self.root.clone())]);
        let mount = bollard::models::Mount {
            target: Some(spec.data_dir.to_string()),
            source: Some(spec.name.to_string()),
            typ: Some(bollard::models::MountType::VOLUME),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            env: Some(spec.env.clone()),
            cmd: spec.cmd.clone(),
            labels: Some(labels),
            hostname: Some(spec.name.to_string()),
            host_config: Some(HostConfig {
                network_mode: Some(NETWORK.into()),
                mounts: Some(vec![mount]),
                // Reached by name, not address: the engine may restart it (a crash, the
                // engine's or the host's restart) without berth.
                restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None }),
                log_config: Some(bollard::models::HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([("max-size".into(), "10m".into()), ("max-file".into(), "3".into())])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.wait_for_addresses().await;
        let created = self.docker.create_container(Some(CreateContainerOptions { name: Some(spec.name.to_string()), ..Default::default() }), body).await?;
        self.docker.start_container(&created.id, None).await?;
        Ok(created.id)
    }

    /// The service container of this name, if the engine has one.
    pub async fn service(&self, name: &str) -> Result<Option<ServiceContainer>, RuntimeError> {
        match self.docker.inspect_container(name, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                let running = state.running == Some(true);
                let status = state.status.map(|s| s.to_string()).unwrap_or_default();
                Ok(Some(ServiceContainer { id: info.id.unwrap_or_default(), running, status }))
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a service's container and, with `volume`, its data. Nothing else ever
    /// removes a service's volume.
    pub async fn remove_service(&self, name: &str, volume: bool) -> Result<(), RuntimeError> {
        self.remove(name).await?;
        if volume {
            match self.docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
                Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
