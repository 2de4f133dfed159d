//! The Docker engine, through bollard: images, containers, the `berth` network.
//!
//! Only API 1.41 features (Debian's engine 20.10). Every container berth runs carries
//! labels saying whose it is, so state can be rebuilt from the engine after a restart.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{ContainerCreateBody, HostConfig, NetworkCreateRequest, RestartPolicy, RestartPolicyNameEnum};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use futures_util::StreamExt;

use crate::output::Output;

pub const NETWORK: &str = "berth";
pub const LABEL_APP: &str = "berth.app";
pub const LABEL_PROCESS: &str = "berth.process";
pub const LABEL_RELEASE: &str = "berth.release";
pub const LABEL_INDEX: &str = "berth.index";
/// The berth root a container belongs to: several roots (tests) can share one engine.
pub const LABEL_ROOT: &str = "berth.root";

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the Docker engine is not reachable ({0}); start it with `dockerd` or `systemctl start docker`")]
    Unreachable(String),
    #[error("build failed: {0}")]
    Build(String),
    #[error("{0}")]
    Container(String),
    #[error("Docker: {0}")]
    Docker(#[from] bollard::errors::Error),
    /// A build container exited with this code.
    #[error("the build exited with code {0}")]
    Exited(i64),
}

/// A container that runs once, from `image`, and is committed as a new image if it succeeds
/// (buildpack builds, the stack image).
pub struct OneShot<'a> {
    pub image: &'a str,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub binds: Vec<String>,
    /// A tar unpacked at this path before the container starts.
    pub upload: Option<(&'a str, Vec<u8>)>,
    /// `repo:tag` of the committed image, with its default command and working directory.
    pub commit_as: (&'a str, &'a str),
    pub commit_cmd: Option<Vec<String>>,
    pub commit_workdir: Option<&'a str>,
}

#[derive(Clone)]
pub struct Runtime {
    docker: Docker,
    root: String,
}

/// A container of an app, as the engine reports it.
#[derive(Debug, Clone)]
pub struct AppContainer {
    pub id: String,
    pub name: String,
    pub process: String,
    pub index: u32,
    pub release: u32,
    pub running: bool,
}

/// What to run.
pub struct ContainerSpec<'a> {
    pub app: &'a str,
    pub process: &'a str,
    pub index: u32,
    pub release: u32,
    pub image: &'a str,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
}

impl Runtime {
    pub async fn connect(root: std::path::PathBuf) -> Result<Runtime, RuntimeError> {
        let docker = Docker::connect_with_local_defaults().map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        let docker = docker.negotiate_version().await.map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        Ok(Runtime { docker, root: root.display().to_string() })
    }

    pub async fn ensure_network(&self) -> Result<(), RuntimeError> {
        if self.docker.inspect_network(NETWORK, None).await.is_ok() {
            return Ok(());
        }
        let request = NetworkCreateRequest { name: NETWORK.into(), driver: Some("bridge".into()), ..Default::default() };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            // Created concurrently by another deploy.
            Err(_) if self.docker.inspect_network(NETWORK, None).await.is_ok() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Builds `context` (a tar with a Dockerfile at its root) as `tag`, streaming the build
    /// output as detail lines. Returns the image id.
    pub async fn build(&self, context: Vec<u8>, tag: &str, out: &Output) -> Result<String, RuntimeError> {
        let options = BuildImageOptions { dockerfile: "Dockerfile".into(), t: Some(tag.into()), rm: true, forcerm: true, ..Default::default() };
        let mut stream = self.docker.build_image(options, None, Some(bollard::body_full(context.into())));
        let mut pending = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(RuntimeError::Build(detail.trim().to_string()));
                    }
                    if let Some(text) = info.stream {
                        pending.push_str(&text);
                        while let Some(line) = take_line(&mut pending) {
                            if !line.is_empty() {
                                out.detail(line).await;
                            }
                        }
                    }
                }
                Err(bollard::errors::Error::DockerStreamError { error }) => return Err(RuntimeError::Build(error.trim().to_string())),
                Err(e) => return Err(e.into()),
            }
        }
        let image = self.docker.inspect_image(tag).await?;
        image.id.ok_or_else(|| RuntimeError::Build("the engine reported no image id".into()))
    }

    /// Creates and starts one container on the berth network; returns its id.
    pub async fn start(&self, spec: &ContainerSpec<'_>) -> Result<String, RuntimeError> {
        // Names are unique per engine; the root's hash keeps two roots (tests) apart.
        let name = format!("berth-{}-{}.{}-v{}-{}", spec.app, spec.process, spec.index, spec.release, self.root_tag());
        let labels = HashMap::from([
            (LABEL_APP.to_string(), spec.app.to_string()),
            (LABEL_PROCESS.to_string(), spec.process.to_string()),
            (LABEL_RELEASE.to_string(), spec.release.to_string()),
            (LABEL_INDEX.to_string(), spec.index.to_string()),
            (LABEL_ROOT.to_string(), self.root.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            env: Some(spec.env.clone()),
            cmd: spec.cmd.clone(),
            labels: Some(labels),
            hostname: Some(format!("{}-{}-{}", spec.app, spec.process, spec.index)),
            host_config: Some(HostConfig {
                network_mode: Some(NETWORK.into()),
                // No restarts until it has proved it starts (see `keep_running`): a crash
                // during start-up must fail the deploy, not loop.
                restart_policy: Some(RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }),
                init: Some(true),
                log_config: Some(bollard::models::HostConfigLogConfig {
                    typ: Some("json-file".into()),
                    config: Some(HashMap::from([("max-size".into(), "10m".into()), ("max-file".into(), "3".into())])),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        // A container of the same name is left from an interrupted attempt at this release.
        let _ = self.remove(&name).await;
        let created = self.docker.create_container(Some(CreateContainerOptions { name: Some(name), ..Default::default() }), body).await?;
        if let Err(e) = self.docker.start_container(&created.id, None).await {
            let _ = self.remove(&created.id).await;
            return Err(e.into());
        }
        Ok(created.id)
    }

    fn root_tag(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.root.hash(&mut h);
        format!("{:08x}", h.finish() as u32)
    }

    /// The container's address on the berth network.
    pub async fn ip(&self, id: &str) -> Result<String, RuntimeError> {
        let info = self.docker.inspect_container(id, None).await?;
        info.network_settings
            .and_then(|n| n.networks)
            .and_then(|mut n| n.remove(NETWORK))
            .and_then(|n| n.ip_address)
            .filter(|ip| !ip.is_empty())
            .ok_or_else(|| RuntimeError::Container(format!("the container has no address on the {NETWORK} network")))
    }

    /// From now on the engine restarts the container whenever it stops (and after a reboot),
    /// unless berth stops it.
    pub async fn keep_running(&self, id: &str) -> Result<(), RuntimeError> {
        let policy = RestartPolicy { name: Some(RestartPolicyNameEnum::UNLESS_STOPPED), maximum_retry_count: None };
        let body = bollard::models::ContainerUpdateBody { restart_policy: Some(policy), ..Default::default() };
        Ok(self.docker.update_container(id, body).await?)
    }

    /// Ok while the container runs; otherwise why it stopped.
    pub async fn alive(&self, id: &str) -> Result<(), String> {
        match self.docker.inspect_container(id, None).await {
            Ok(info) => {
                let state = info.state.unwrap_or_default();
                if state.running == Some(true) && state.restarting != Some(true) {
                    Ok(())
                } else {
                    Err(format!("the container exited with code {}", state.exit_code.unwrap_or(-1)))
                }
            }
            Err(e) => Err(format!("the container is gone: {e}")),
        }
    }

    /// The last `lines` lines of a container's output.
    pub async fn tail(&self, id: &str, lines: usize) -> Vec<String> {
        let options = LogsOptions { stdout: true, stderr: true, tail: lines.to_string(), ..Default::default() };
        let mut stream = self.docker.logs(id, Some(options));
        let mut text = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
        }
        text.lines().map(str::to_string).collect()
    }

    /// Runs `cmd` once in a new container of `image` on the berth network, streaming its
    /// stdout and stderr, and removes it. Returns its exit code. If the caller goes away
    /// first, the container is removed at once.
    pub async fn run_once(&self, app: &str, image: &str, cmd: Vec<String>, env: Vec<String>, out: &Output) -> Result<i64, RuntimeError> {
        let labels = HashMap::from([
            (LABEL_APP.to_string(), app.to_string()),
            (LABEL_PROCESS.to_string(), "run".to_string()),
            (LABEL_ROOT.to_string(), self.root.clone()),
        ]);
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(cmd),
            env: Some(env),
            labels: Some(labels),
            host_config: Some(HostConfig { network_mode: Some(NETWORK.into()), init: Some(true), ..Default::default() }),
            ..Default::default()
        };
        let id = self.docker.create_container(None, body).await?.id;
        let result = async {
            let mut logs = self.attach_and_start(&id).await?;
            loop {
                tokio::select! {
                    chunk = logs.next() => match chunk {
                        Some(Ok(bollard::container::LogOutput::StdErr { message })) => out.stderr(message.to_vec()).await,
                        Some(Ok(other)) => out.stdout(other.into_bytes().to_vec()).await,
                        Some(Err(_)) | None => break,
                    },
                    _ = out.closed() => return Ok(-1),
                }
            }
            self.exit_code(&id).await
        }
        .await;
        let _ = self.remove(&id).await;
        result
    }

    /// Attaches to a created container, then starts it, as `docker run` does: reading the
    /// logs of a container that already exited can miss what it wrote last.
    async fn attach_and_start(
        &self,
        id: &str,
    ) -> Result<std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>>, RuntimeError> {
        let options = bollard::query_parameters::AttachContainerOptions { stream: true, stdout: true, stderr: true, logs: true, ..Default::default() };
        let output = self.docker.attach_container(id, Some(options)).await?.output;
        self.docker.start_container(id, None).await?;
        Ok(output)
    }

    /// The container's exit code once it has stopped (-1 when the engine gives none).
    async fn exit_code(&self, id: &str) -> Result<i64, RuntimeError> {
        let mut wait = self.docker.wait_container(id, None::<bollard::query_parameters::WaitContainerOptions>);
        match wait.next().await {
            Some(Ok(status)) => Ok(status.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(e.into()),
            None => Ok(-1),
        }
    }

    /// The image's default command (to tell buildpack images, run by berth-launch).
    pub async fn image_cmd(&self, image: &str) -> Vec<String> {
        self.docker.inspect_image(image).await.ok().and_then(|i| i.config).and_then(|c| c.cmd).unwrap_or_default()
    }

    /// A container's output as timestamped lines (`2026-…Z text`): the last `tail` lines,
    /// then, with `follow`, whatever it writes until it stops.
    pub fn log_lines(&self, id: &str, tail: usize, follow: bool) -> futures_util::stream::BoxStream<'static, String> {
        let options = LogsOptions { stdout: true, stderr: true, follow, timestamps: true, tail: tail.to_string(), ..Default::default() };
        let chunks = self.docker.logs(id, Some(options));
        futures_util::stream::unfold((chunks, String::new()), |(mut chunks, mut pending)| async move {
            loop {
                if let Some(line) = take_line(&mut pending) {
                    return Some((line, (chunks, pending)));
                }
                match chunks.next().await {
                    Some(Ok(chunk)) => pending.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                    _ if !pending.is_empty() => {
                        let line = std::mem::take(&mut pending);
                        return Some((line, (chunks, pending)));
                    }
                    _ => return None,
                }
            }
        })
        .boxed()
    }

    /// SIGTERM, SIGKILL after `stop_timeout`, then remove.
    pub async fn retire(&self, id: &str, stop_timeout: Duration) -> Result<(), RuntimeError> {
        let options = StopContainerOptions { t: Some(stop_timeout.as_secs() as i32), signal: None };
        let _ = self.docker.stop_container(id, Some(options)).await;
        self.remove(id).await
    }

    pub async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Every container berth runs for `app`, running or not.
    pub async fn containers(&self, app: &str) -> Result<Vec<AppContainer>, RuntimeError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_APP}={app}"), format!("{LABEL_ROOT}={}", self.root)])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let list = self.docker.list_containers(Some(options)).await?;
        Ok(list
            .into_iter()
            .map(|c| {
                let labels = c.labels.unwrap_or_default();
                AppContainer {
                    id: c.id.unwrap_or_default(),
                    name: c.names.and_then(|n| n.into_iter().next()).unwrap_or_default().trim_start_matches('/').to_string(),
                    process: labels.get(LABEL_PROCESS).cloned().unwrap_or_default(),
                    release: labels.get(LABEL_RELEASE).and_then(|r| r.parse().ok()).unwrap_or(0),
                    index: labels.get(LABEL_INDEX).and_then(|r| r.parse().ok()).unwrap_or(1),
                    running: c.state.map(|s| s.to_string() == "running").unwrap_or(false),
                }
            })
            .collect())
    }

    /// Runs a one-shot container, streaming its output as lines, and commits it as an image
    /// if it exits 0. The container is removed either way. Returns the image id.
    pub async fn run_and_commit(&self, job: OneShot<'_>, out: &Output) -> Result<String, RuntimeError> {
        let labels = HashMap::from([(LABEL_ROOT.to_string(), self.root.clone())]);
        let body = ContainerCreateBody {
            image: Some(job.image.to_string()),
            cmd: Some(job.cmd.clone()),
            env: Some(job.env.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig { binds: Some(job.binds.clone()), ..Default::default() }),
            ..Default::default()
        };
        let created = self.docker.create_container(None, body).await?;
        let id = created.id;
        let result = async {
            if let Some((path, tar)) = job.upload {
                let options = bollard::query_parameters::UploadToContainerOptions { path: path.to_string(), ..Default::default() };
                self.docker.upload_to_container(&id, Some(options), bollard::body_full(tar.into())).await?;
            }
            let mut logs = self.attach_and_start(&id).await?;
            let mut pending = String::new();
            while let Some(Ok(chunk)) = logs.next().await {
                pending.push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
                while let Some(line) = take_line(&mut pending) {
                    out.line(line).await;
                }
            }
            if !pending.trim().is_empty() {
                out.line(pending.trim_end()).await;
            }
            match self.exit_code(&id).await? {
                0 => {}
                code => return Err(RuntimeError::Exited(code)),
            }
            let (repo, tag) = job.commit_as;
            let options = bollard::query_parameters::CommitContainerOptions {
                container: Some(id.clone()),
                repo: Some(repo.to_string()),
                tag: Some(tag.to_string()),
                ..Default::default()
            };
            let config = bollard::models::ContainerConfig {
                cmd: job.commit_cmd.clone(),
                working_dir: job.commit_workdir.map(str::to_string),
                labels: Some(HashMap::new()),
                ..Default::default()
            };
            let committed = self.docker.commit_container(options, config).await?;
            Ok(committed.id)
        }
        .await;
        let _ = self.remove(&id).await;
        result
    }

    /// Whether an image exists locally: Some((id, size in bytes, created)).
    pub async fn image_info(&self, image: &str) -> Option<(String, i64, String)> {
        let info = self.docker.inspect_image(image).await.ok()?;
        Some((info.id.unwrap_or_default(), info.size.unwrap_or(0), info.created.map(|c| c.to_string()).unwrap_or_default()))
    }

    /// Pulls `image:tag` from a registry; Err if no registry answers within `limit`.
    pub async fn pull(&self, image: &str, tag: &str, limit: Duration) -> Result<(), String> {
        let options = bollard::query_parameters::CreateImageOptions { from_image: Some(image.into()), tag: Some(tag.into()), ..Default::default() };
        let pulling = async {
            let mut stream = self.docker.create_image(Some(options), None, None);
            while let Some(item) = stream.next().await {
                item.map_err(|e| e.to_string())?;
            }
            Ok::<(), String>(())
        };
        tokio::time::timeout(limit, pulling).await.map_err(|_| format!("no answer within {}s", limit.as_secs()))?
    }

    /// `docker import`: a root filesystem tar stream becomes the image `repo:tag`.
    pub async fn import(&self, rootfs: impl futures_util::Stream<Item = bytes::Bytes> + Send + 'static, repo: &str, tag: &str) -> Result<(), RuntimeError> {
        let options = bollard::query_parameters::CreateImageOptions { from_src: Some("-".into()), repo: Some(repo.into()), tag: Some(tag.into()), ..Default::default() };
        let mut stream = self.docker.create_image(Some(options), Some(bollard::body_stream(rootfs)), None);
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok(())
    }

    pub async fn remove_image(&self, image: &str) {
        let _ = self.docker.remove_image(image, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
    }
}

/// The first whole line of `pending` (without its line ending), removed from it; None
/// while only a partial line is there.
fn take_line(pending: &mut String) -> Option<String> {
    let pos = pending.find('\n')?;
    let line: String = pending.drain(..=pos).collect();
    Some(line.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_taken_whole() {
        let mut pending = String::from("one\r\ntwo\npart");
        assert_eq!(take_line(&mut pending).as_deref(), Some("one"));
        assert_eq!(take_line(&mut pending).as_deref(), Some("two"));
        assert_eq!(take_line(&mut pending), None);
        assert_eq!(pending, "part");
    }
}
