//! Containers that run once, wired to a client (`run`, the release phase, cron, `enter`'s
//! exec) or committed as an image when they succeed (buildpack builds, the stack image):
//! attached before they start, their stdin, output and terminal pumped, bounded in time.

use super::*;

/// How long a one-off container may run: `what` it runs, and the berth.toml `setting`
/// that gives the limit (both for the error).
#[derive(Debug, Clone, Copy)]
pub struct TimeLimit {
    pub limit: Duration,
    pub what: &'static str,
    pub setting: &'static str,
}

/// A container that runs once, from `image`, and is committed as a new image if it succeeds
/// (buildpack builds, the stack image).
pub struct OneShot<'a> {
    /// The app it builds for (None: the stack image).
    pub app: Option<&'a str>,
    pub image: &'a str,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub binds: Vec<String>,
    /// A tar file unpacked at this path before the container starts.
    pub upload: Option<(&'a str, &'a std::path::Path)>,
    /// `repo:tag` of the committed image, with its default command and working directory.
    pub commit_as: (&'a str, &'a str),
    pub commit_cmd: Option<Vec<String>>,
    pub commit_workdir: Option<&'a str>,
    /// A file read from the container after it succeeded (the build's process list).
    pub collect: Option<&'a str>,
    /// Stopped and failed after this long.
    pub time_limit: Option<Duration>,
    pub limits: BuildLimits,
}

/// A committed one-shot container: the image id, and the collected file if it existed.
pub struct Committed {
    pub image: String,
    pub collected: Option<Vec<u8>>,
}

/// The client's terminal, when it asked for one (`ssh -t`): its TERM and size (columns,
/// rows), which changes when the client's window does.
pub struct Terminal {
    pub term: String,
    pub size: tokio::sync::watch::Receiver<(u16, u16)>,
}

/// The client's side of an interactive process: its output, its stdin, its terminal.
pub struct Client<'a> {
    pub out: &'a Output,
    pub input: &'a mut crate::output::Input,
    pub terminal: Option<&'a mut Terminal>,
}

/// What a terminal resize applies to.
pub(super) enum TtyOf<'a> {
    Container(&'a str),
    Exec(&'a str),
}

impl Runtime {
    /// Runs `spec` once in a new container, wired to the client: its stdin goes to the
    /// container, the container's stdout and stderr come back (one stream with a terminal),
    /// and the container is removed afterwards. Returns its exit code; if the client goes
    /// away first, the container is removed at once (-1).
    pub async fn run_once(&self, spec: &ContainerSpec<'_>, client: Client<'_>) -> Result<i64, RuntimeError> {
        self.run_once_within(spec, client, None).await
    }

    /// `run_once`, stopped (and its container removed) after `limit`.
    pub async fn run_once_within(&self, spec: &ContainerSpec<'_>, client: Client<'_>, limit: Option<TimeLimit>) -> Result<i64, RuntimeError> {
        let labels = HashMap::from([
            (LABEL_APP.to_string(), spec.app.to_string()),
            (LABEL_PROCESS.to_string(), spec.process.to_string()),
            (LABEL_RELEASE.to_string(), spec.release.to_string()),
            (LABEL_ROOT.to_string(), self.root.clone()),
            (LABEL_ONE_OFF.to_string(), spec.process.to_string()),
            (LABEL_DAEMON.to_string(), daemon_run().to_string()),
        ]);
        let network = self.network_for(spec).await?;
        let tty = client.terminal.is_some();
        let mut env = spec.env.clone();
        if let Some(terminal) = &client.terminal {
            env.push(format!("TERM={}", terminal.term));
        }
        let mut body = ContainerCreateBody {
            image: Some(spec.image.to_string()),
            cmd: spec.cmd.clone(),
            env: Some(env),
            labels: Some(labels),
            tty: Some(tty),
            open_stdin: Some(true),
            stdin_once: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(spec.host_config(&network)),
            ..Default::default()
        };
        spec.apply_options(&mut body)?;
        self.wait_for_addresses().await;
        let id = self.docker.create_container(None, body).await?.id;
        let result = async {
            self.attach_networks(&id, spec, Vec::new()).await?;
            let attached = self.attach_and_start(&id, true).await?;
            if !self.pump(attached.output, attached.input, client, TtyOf::Container(&id)).await {
                return Ok(-1);
            }
            self.exit_code(&id).await
        };
        let result = match limit {
            Some(l) => {
                tokio::time::timeout(l.limit, result).await.unwrap_or(Err(RuntimeError::TimedOut { what: l.what, secs: l.limit.as_secs(), setting: l.setting }))
            }
            None => result.await,
        };
        // Removed (killed if it still runs) whatever happened.
        let _ = self.remove(&id).await;
        result
    }

    /// Runs `cmd` in a running container (`enter`), wired to the client as `run_once` is.
    pub async fn exec(&self, container: &str, cmd: Vec<String>, client: Client<'_>) -> Result<i64, RuntimeError> {
        self.exec_env(container, cmd, Vec::new(), client).await
    }

    /// `exec` with more environment for the command (secrets that must not be in its argv).
    pub async fn exec_env(&self, container: &str, cmd: Vec<String>, mut env: Vec<String>, client: Client<'_>) -> Result<i64, RuntimeError> {
        let tty = client.terminal.is_some();
        env.extend(client.terminal.as_ref().map(|t| format!("TERM={}", t.term)));
        let env = Some(env);
        let options = bollard::exec::CreateExecOptions::<String> {
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(tty),
            env,
            cmd: Some(cmd),
            ..Default::default()
        };
        let exec = self.docker.create_exec(container, options).await?.id;
        let start = bollard::exec::StartExecOptions { detach: false, tty, output_capacity: None };
        let bollard::exec::StartExecResults::Attached { output, input } = self.docker.start_exec(&exec, Some(start)).await? else {
            return Err(RuntimeError::Container("the engine did not attach to the command".into()));
        };
        if !self.pump(output, input, client, TtyOf::Exec(&exec)).await {
            return Ok(-1);
        }
        // The output ends a moment before the engine records the exit code.
        for _ in 0..50 {
            let info = self.docker.inspect_exec(&exec).await?;
            if info.running != Some(true) {
                return Ok(info.exit_code.unwrap_or(-1));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(-1)
    }

    /// Copies the client's stdin to a process and its output back, following the client's
    /// window size, until the process's output ends (true) or the client goes (false).
    async fn pump(
        &self,
        mut output: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>>,
        mut stdin: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
        client: Client<'_>,
        target: TtyOf<'_>,
    ) -> bool {
        use tokio::io::AsyncWriteExt;
        let Client { out, input, mut terminal } = client;
        if let Some(t) = terminal.as_deref_mut() {
            let (cols, rows) = *t.size.borrow_and_update();
            self.resize(&target, cols, rows).await;
        }
        let mut stdin_open = true;
        loop {
            let resized = async {
                if let Some(t) = terminal.as_deref_mut()
                    && t.size.changed().await.is_ok()
                {
                    return *t.size.borrow_and_update();
                }
                std::future::pending().await
            };
            tokio::select! {
                chunk = output.next() => match chunk {
                    Some(Ok(bollard::container::LogOutput::StdErr { message })) => out.stderr(message.to_vec()).await,
                    Some(Ok(other)) => out.stdout(other.into_bytes().to_vec()).await,
                    Some(Err(_)) | None => return true,
                },
                data = input.recv(), if stdin_open => match data {
                    Some(bytes) => {
                        if stdin.write_all(&bytes).await.is_err() || stdin.flush().await.is_err() {
                            stdin_open = false;
                        }
                    }
                    None => {
                        // The client's EOF: without a terminal the process sees the end of
                        // its stdin. A terminal stays open (closing it would hang it up), as
                        // sshd does for pty sessions.
                        if terminal.is_none() {
                            let _ = stdin.shutdown().await;
                        }
                        stdin_open = false;
                    }
                },
                (cols, rows) = resized => self.resize(&target, cols, rows).await,
                _ = out.closed() => return false,
            }
        }
    }

    async fn resize(&self, target: &TtyOf<'_>, cols: u16, rows: u16) {
        let (w, h) = (i32::from(cols.max(1)), i32::from(rows.max(1)));
        let resized = match target {
            TtyOf::Container(id) => self.docker.resize_container_tty(id, bollard::query_parameters::ResizeContainerTTYOptions { h, w }).await,
            TtyOf::Exec(id) => self.docker.resize_exec(id, bollard::query_parameters::ResizeExecOptions { h, w }).await,
        };
        if let Err(e) = resized {
            tracing::warn!("cannot resize the terminal to {cols}x{rows}: {e}");
        }
    }

    /// Attaches to a created container (its stdin too, with `stdin`), then starts it, as
    /// `docker run` does: reading the logs of a container that already exited can miss what
    /// it wrote last.
    async fn attach_and_start(&self, id: &str, stdin: bool) -> Result<bollard::container::AttachContainerResults, RuntimeError> {
        // Stream only, as `docker run` attaches: attached before the start, the stream has
        // everything; asking for the logs too can replay output the stream also carries.
        let options = bollard::query_parameters::AttachContainerOptions { stream: true, stdin, stdout: true, stderr: true, logs: false, ..Default::default() };
        let attached = self.docker.attach_container(id, Some(options)).await?;
        self.docker.start_container(id, None).await?;
        Ok(attached)
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

    /// Runs a one-shot container, streaming its output as lines, and commits it as an image
    /// if it exits 0. The container is removed either way. Returns the image id.
    pub async fn run_and_commit(&self, job: OneShot<'_>, out: &Output) -> Result<Committed, RuntimeError> {
        let network = self.ensure_build_network().await?;
        let (network, mut holder) = self.build_network(job.app, network, false).await;
        let mut body = self.one_shot_body(&job, &network);
        if let Some(host) = body.host_config.as_mut() {
            let place = self.build_place(&job.limits).await;
            (host.cgroup_parent, host.cpuset_cpus) = (place.cgroup, place.cpus);
        }
        let id = match self.docker.create_container(None, body).await {
            Ok(created) => created.id,
            Err(e) => {
                if let Some(holder) = holder.take() {
                    holder.give_back().await;
                }
                return Err(e.into());
            }
        };
        let work = async {
            if let Some((path, tar)) = job.upload {
                let options = bollard::query_parameters::UploadToContainerOptions { path: path.to_string(), ..Default::default() };
                self.docker.upload_to_container(&id, Some(options), bollard::body_try_stream(super::images::file_stream(tar).await?)).await?;
            }
            let mut logs = self.attach_and_start(&id, false).await?.output;
            let mut lines = crate::output::Lines::default();
            while let Some(Ok(chunk)) = logs.next().await {
                for line in lines.push(&chunk.into_bytes()) {
                    out.child_line(&line, false).await;
                }
            }
            if let Some(line) = lines.finish().filter(|l| !l.trim().is_empty()) {
                out.child_line(&line, false).await;
            }
            match self.exit_code(&id).await? {
                0 => {}
                code => return Err(RuntimeError::Exited(code)),
            }
            let collected = match job.collect {
                Some(path) => self.read_file(&id, path).await,
                None => None,
            };
            let (options, config) = self.commit_of(&job, &id);
            let committed = self.docker.commit_container(options, config).await?;
            Ok(Committed { image: committed.id, collected })
        };
        let result = match job.time_limit {
            Some(limit) => tokio::time::timeout(limit, work).await.unwrap_or(Err(RuntimeError::TimedOut {
                what: "build",
                secs: limit.as_secs(),
                setting: "build_timeout",
            })),
            None => work.await,
        };
        // Removed (killed if it still runs) whatever happened.
        let removed = self.remove(&id).await;
        // The namespace it joined, for the app's next build, once it is gone (else the
        // namespace goes with the guard).
        if let (Some(holder), Ok(())) = (holder, removed) {
            holder.give_back().await;
        }
        result
    }

    /// How a one-shot container is created: its image, command, env, mounts and limits, on
    /// the build network, labelled as a build of this daemon run (and of its app, if any).
    fn one_shot_body(&self, job: &OneShot<'_>, network: &str) -> ContainerCreateBody {
        let mut labels = HashMap::from([
            (LABEL_ROOT.to_string(), self.root.clone()),
            (LABEL_ONE_OFF.to_string(), "build".to_string()),
            (LABEL_DAEMON.to_string(), daemon_run().to_string()),
        ]);
        if let Some(app) = job.app {
            labels.insert(LABEL_APP.to_string(), app.to_string());
        }
        ContainerCreateBody {
            image: Some(job.image.to_string()),
            cmd: Some(job.cmd.clone()),
            env: Some(job.env.clone()),
            labels: Some(labels),
            host_config: Some(HostConfig {
                network_mode: Some(network.to_string()),
                binds: Some(job.binds.clone()),
                cpu_shares: job.limits.cpu_shares.map(i64::from),
                memory: job.limits.memory.map(i64::from),
                memory_swap: job.limits.memory.map(i64::from),
                nano_cpus: job.limits.nano_cpus,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// How a one-shot container that succeeded is committed: as `job.commit_as`, with its
    /// command, working directory and labels.
    fn commit_of(&self, job: &OneShot<'_>, id: &str) -> (bollard::query_parameters::CommitContainerOptions, bollard::models::ContainerConfig) {
        let (repo, tag) = job.commit_as;
        let options = bollard::query_parameters::CommitContainerOptions {
            container: Some(id.to_string()),
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        // The engine adds these to the build container's labels rather than replacing
        // them, and every container of the image inherits them: the one-off and daemon
        // labels are blanked (an image is no session's one-off), and a shared image (the
        // stack, services) belongs to no root.
        let mut labels = HashMap::from([(LABEL_ONE_OFF.to_string(), String::new()), (LABEL_DAEMON.to_string(), String::new())]);
        match job.app {
            Some(app) => labels.extend(self.image_labels(app)),
            None => {
                labels.insert(LABEL_ROOT.to_string(), String::new());
            }
        }
        let config = bollard::models::ContainerConfig {
            cmd: job.commit_cmd.clone(),
            working_dir: job.commit_workdir.map(str::to_string),
            labels: Some(labels),
            ..Default::default()
        };
        (options, config)
    }

    /// One file of a container's filesystem (None if it is not there or not a file).
    pub(super) async fn read_file(&self, id: &str, path: &str) -> Option<Vec<u8>> {
        let options = bollard::query_parameters::DownloadFromContainerOptions { path: path.to_string() };
        let mut stream = self.docker.download_from_container(id, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(&chunk.ok()?);
        }
        let mut tar = tar::Archive::new(archive.as_slice());
        let mut entry = tar.entries().ok()?.next()?.ok()?;
        if !entry.header().entry_type().is_file() {
            return None;
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).ok()?;
        Some(bytes)
    }
}
