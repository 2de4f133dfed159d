//! An app's images: built from a Dockerfile, imported, loaded, tagged, listed by label and
//! name, read (working directory, files, exposed ports) and removed.

use super::*;

/// An image of an app's, as the engine lists it.
#[derive(Debug, Clone)]
pub struct AppImage {
    pub id: String,
    pub tags: Vec<String>,
}

/// What a build container may take: a CPU weight below the apps' (Docker's cpu-shares;
/// containers run at 1024) and a memory limit, so a build cannot starve the apps it is about
/// to replace. None: the engine's default.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BuildLimits {
    pub cpu_shares: Option<i32>,
    pub memory: Option<i32>,
    /// CPUs a build may use at most, in nano-CPUs (`resource:limit --process-type build --cpu`).
    pub nano_cpus: Option<i64>,
    /// Under the idle-priority cgroup (`Runtime::idle_cgroup`) where the machine has one.
    pub idle: bool,
    /// Keeps a Dockerfile build's intermediate containers, even of a failed step
    /// (`builder:set skip-cleanup true`), to look into with `docker`.
    pub skip_cleanup: bool,
}

/// A build context file, read as a stream: a context of any size costs no memory.
pub(super) async fn file_stream(path: &std::path::Path) -> Result<tokio_util::io::ReaderStream<tokio::fs::File>, RuntimeError> {
    let file = tokio::fs::File::open(path).await.map_err(|e| RuntimeError::Build(format!("cannot read the build context: {e}")))?;
    Ok(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024))
}

/// The cgroup build containers run under (`cgroup_parent`), made once per daemon: its CPU
/// priority is the idle one (`cpu.idle`, the whole group SCHED_IDLE), so a build takes only
/// the CPU the apps and nginx leave and yields the moment one of them wakes, where a low
/// cpu-shares weight still lets it run ahead of a waking app for a scheduler slice.
const IDLE_CGROUP: &str = "berth-builds";

/// Makes the idle cgroup on this machine for the engine's cgroup driver and version; None
/// where it cannot (no cgroup file system, a kernel without `cpu.idle`, a systemd without
/// `CPUWeight=idle`): builds then run with their cpu-shares alone.
fn make_idle_cgroup(driver: &str, version: &str) -> Result<String, String> {
    let write_idle = |dir: &std::path::Path| -> Result<(), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        std::fs::write(dir.join("cpu.idle"), "1").map_err(|e| format!("{}/cpu.idle: {e}", dir.display()))
    };
    match driver {
        "cgroupfs" => {
            let dir = if version == "2" { format!("/sys/fs/cgroup/{IDLE_CGROUP}") } else { format!("/sys/fs/cgroup/cpu/{IDLE_CGROUP}") };
            write_idle(std::path::Path::new(&dir))?;
            Ok(format!("/{IDLE_CGROUP}"))
        }
        "systemd" => {
            // A slice of its own (under berth.slice), which systemd marks idle itself.
            let slice = format!("{IDLE_CGROUP}.slice");
            for args in [vec!["set-property", "--runtime", slice.as_str(), "CPUWeight=idle"], vec!["start", slice.as_str()]] {
                let out = std::process::Command::new("systemctl").args(&args).output().map_err(|e| format!("systemctl: {e}"))?;
                if !out.status.success() {
                    return Err(format!("systemctl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
                }
            }
            Ok(slice)
        }
        other => Err(format!("the engine's cgroup driver is {other}")),
    }
}

/// Where a build at the idle priority runs: under the idle-priority cgroup where the machine
/// has one, and on every CPU but the first where it has more than one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BuildPlace {
    pub cgroup: Option<String>,
    /// Docker's `--cpuset-cpus`.
    pub cpus: Option<String>,
}

/// The CPUs an idle-priority build may use on an engine with `ncpu` CPUs: all but CPU 0,
/// where there are two or more. A build of the idle priority still takes every moment a CPU
/// is free, and an app's thread that wakes then must first preempt it: with one CPU kept
/// free of builds, a waking thread finds it idle (`bench-deploy.sh` section 2 measures the
/// p99 across redeploys; a build kept on its CPUs also finishes sooner under load). Pure.
pub fn build_cpus(ncpu: i64) -> Option<String> {
    match ncpu {
        ..=1 => None,
        2 => Some("1".into()),
        n => Some(format!("1-{}", n - 1)),
    }
}

impl Runtime {
    /// Where idle-priority builds run on this engine (see `IDLE_CGROUP`, `build_cpus`),
    /// asked of the engine and made once; no cgroup when this machine has none (said once
    /// in the log).
    async fn idle_place(&self) -> BuildPlace {
        // Kept once the engine answered (an engine away for a moment is asked again).
        static PLACE: tokio::sync::OnceCell<BuildPlace> = tokio::sync::OnceCell::const_new();
        PLACE
            .get_or_try_init(|| async {
                let info = self.docker.info().await?;
                let (driver, version) = (info.cgroup_driver.map(|d| d.to_string()).unwrap_or_default(), info.cgroup_version.map(|v| v.to_string()).unwrap_or_default());
                let cgroup = match tokio::task::spawn_blocking(move || make_idle_cgroup(&driver, &version)).await {
                    Ok(Ok(parent)) => Some(parent),
                    Ok(Err(e)) => {
                        tracing::warn!("builds run without the idle CPU priority: {e}");
                        None
                    }
                    Err(_) => None,
                };
                Ok::<_, bollard::errors::Error>(BuildPlace { cgroup, cpus: build_cpus(info.ncpu.unwrap_or(1)) })
            })
            .await
            .cloned()
            .unwrap_or_default()
    }

    /// Where a build with `limits` runs: the idle place when the limits ask for the idle
    /// priority; the engine's defaults otherwise.
    pub async fn build_place(&self, limits: &BuildLimits) -> BuildPlace {
        if limits.idle { self.idle_place().await } else { BuildPlace::default() }
    }

    /// Builds `context` (a tar with a Dockerfile at its root) as `tag`, streaming the build
    /// output as detail lines. Returns the image id.
    /// Stopped after `limit` (dropping the request cancels the engine's build).
    /// `extra`: the app's build-phase `docker-options` (build args, extra hosts, shm size).
    /// With `limits.idle`, the build's containers run under the idle-priority cgroup.
    /// RUN steps run on the build network (no route to the host's own services), in the
    /// namespace kept for `app`'s builds (`build_holders.rs`).
    #[allow(clippy::too_many_arguments)]
    pub async fn build(&self, app: &str, context: &std::path::Path, tag: &str, limit: Duration, limits: BuildLimits, extra: crate::docker_options::BuildOptions, out: &Output) -> Result<String, RuntimeError> {
        let network = self.ensure_build_network().await?;
        let (network, holder) = self.build_network(Some(app), network, !extra.extra_hosts.is_empty()).await;
        let built = self.build_on(network, context, tag, limit, limits, extra, out).await;
        // Given back once its steps have ended: built, or failed by a step. A build stopped
        // (its time limit) or cut off from the engine may still run a step there: the
        // namespace goes with the guard.
        if let (Some(holder), Ok(_) | Err(RuntimeError::Build(_))) = (holder, &built) {
            holder.give_back().await;
        }
        built
    }

    #[allow(clippy::too_many_arguments)]
    async fn build_on(&self, network: String, context: &std::path::Path, tag: &str, limit: Duration, limits: BuildLimits, extra: crate::docker_options::BuildOptions, out: &Output) -> Result<String, RuntimeError> {
        let place = self.build_place(&limits).await;
        let options = BuildImageOptions {
            networkmode: Some(network),
            dockerfile: "Dockerfile".into(),
            t: Some(tag.into()),
            rm: !limits.skip_cleanup,
            forcerm: !limits.skip_cleanup,
            // No `labels`: the classic builder turns each into a LABEL step of its own, an
            // extra image layer on every build whose source changed (0.1–0.15 s here). An
            // app's images are known by their `berth/APP` tag and its releases' ids
            // (`app_images`; `untag_stale` keeps a tag from ever moving off an image).
            cpushares: limits.cpu_shares,
            cpusetcpus: place.cpus,
            memory: limits.memory,
            // No swap beyond the limit: a build over it fails rather than thrashing the disk.
            memswap: limits.memory,
            // At most this many CPUs: a quota of the period (100 ms).
            cpuperiod: limits.nano_cpus.map(|_| 100_000),
            cpuquota: limits.nano_cpus.map(|n| i32::try_from(n / 10_000).unwrap_or(i32::MAX).max(1_000)),
            buildargs: (!extra.build_args.is_empty()).then_some(extra.build_args),
            extrahosts: (!extra.extra_hosts.is_empty()).then(|| extra.extra_hosts.join(",")),
            shmsize: extra.shm_size.and_then(|s| i32::try_from(s).ok()),
            ..Default::default()
        };
        // Under the idle-priority cgroup when there is one: through the request that can say so.
        let mut stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bollard::models::BuildInfo, RuntimeError>> + Send>> = match (place.cgroup, super::build_request::socket()) {
            (Some(parent), Some(socket)) => Box::pin(super::build_request::start(&socket, &options, &parent, file_stream(context).await?).await?),
            _ => Box::pin(self.docker.build_image(options, None, Some(bollard::body_try_stream(file_stream(context).await?))).map(|item| {
                item.map_err(|e| match e {
                    bollard::errors::Error::DockerStreamError { error } => RuntimeError::Build(error.trim().to_string()),
                    e => e.into(),
                })
            })),
        };
        let mut lines = crate::output::Lines::default();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let Ok(item) = tokio::time::timeout_at(deadline, stream.next()).await else {
                return Err(RuntimeError::TimedOut { what: "build", secs: limit.as_secs(), setting: "build_timeout" });
            };
            let Some(item) = item else { break };
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                        return Err(RuntimeError::Build(detail.trim().to_string()));
                    }
                    if let Some(text) = info.stream {
                        for line in lines.push(text.as_bytes()) {
                            if !line.is_empty() {
                                out.child_line(&line, true).await;
                            }
                        }
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // A build sets no label (see above), so the image has its base image's, which may be
        // any (a public image can carry berth's): they never make it another app's (berth
        // knows an app's containers by name, its images by release and tag), and release
        // images go by tag when they are pruned.
        let image = self.docker.inspect_image(tag).await?;
        image.id.ok_or_else(|| RuntimeError::Build("the engine reported no image id".into()))
    }

    /// The labels of an app's committed images (buildpack builds): whose they are. A commit
    /// sets them at no cost, unlike a Dockerfile build (see `build`).
    pub(super) fn image_labels(&self, app: &str) -> HashMap<String, String> {
        HashMap::from([(LABEL_APP.to_string(), app.to_string()), (LABEL_ROOT.to_string(), self.root.clone())])
    }

    /// The images of an app's this root made: those its releases name (`known`, ids), the
    /// one tagged `leftover` (the root's last build's tag when no release records it: what a
    /// crash or a failure before the record left), and those labelled as this root's app (a
    /// buildpack build's commits). A `berth/APP` tag alone is not enough: several roots can
    /// share one engine, another root's app of the same name gets the same tags, and a
    /// Dockerfile build carries no label (see `build`).
    pub async fn app_images(&self, app: &str, known: &[String], leftover: Option<&str>) -> Result<Vec<AppImage>, RuntimeError> {
        let by_label = HashMap::from([("label".to_string(), vec![format!("{LABEL_APP}={app}"), format!("{LABEL_ROOT}={}", self.root)])]);
        let by_name = HashMap::from([("reference".to_string(), vec![format!("berth/{app}")])]);
        // A release's image whose tag another root's build took has no name left.
        let nameless = HashMap::from([("dangling".to_string(), vec!["true".to_string()])]);
        let mut images: Vec<AppImage> = Vec::new();
        for (filters, labelled) in [(by_label, true), (by_name, false), (nameless, false)] {
            let options = bollard::query_parameters::ListImagesOptions { all: false, filters: Some(filters), ..Default::default() };
            for image in self.docker.list_images(Some(options)).await? {
                let ours = labelled || known.contains(&image.id) || leftover.is_some_and(|t| image.repo_tags.iter().any(|r| r == t));
                if ours && !images.iter().any(|i| i.id == image.id) {
                    images.push(AppImage { id: image.id, tags: image.repo_tags });
                }
            }
        }
        Ok(images)
    }

    /// Removes `tag` (`berth/APP:vN`) before version N is made, when the root's record says
    /// it is what a crash left between a build and its release (`Store::load_build_tag`).
    /// Otherwise the new build would move the tag and leave that image with no name.
    pub async fn untag_stale(&self, tag: &str) {
        let Ok(info) = self.docker.inspect_image(tag).await else { return };
        let root = info.config.and_then(|c| c.labels).and_then(|l| l.get(LABEL_ROOT).cloned());
        if root.is_none_or(|r| r == self.root) && !self.remove_image_checked(tag).await {
            tracing::warn!("cannot remove the stale tag {tag} (a container uses its image): the next build takes the tag from it");
        }
    }

    /// Removes the tag a release gave its image `id`, when the tag still names that image
    /// (another root on the engine may have built its own app of the same name since, and
    /// the tag is then that root's); an image of `id` left with no name goes too.
    pub async fn remove_release_image(&self, tag: &str, id: &str) {
        match self.docker.inspect_image(tag).await {
            Ok(info) if info.id.as_deref() == Some(id) => {
                self.remove_image_checked(tag).await;
            }
            _ => {
                if let Ok(info) = self.docker.inspect_image(id).await
                    && info.repo_tags.unwrap_or_default().is_empty()
                {
                    self.remove_image_checked(id).await;
                }
            }
        }
    }

    /// Removes an image by id or tag; false if the engine refused (e.g. a container uses it).
    pub async fn remove_image_checked(&self, image: &str) -> bool {
        let options = bollard::query_parameters::RemoveImageOptions { force: false, noprune: false, ..Default::default() };
        match self.docker.remove_image(image, Some(options), None).await {
            Ok(_) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => true,
            Err(_) => false,
        }
    }

    /// Whether an image exists locally: Some((id, size in bytes, created)).
    pub async fn image_info(&self, image: &str) -> Option<(String, i64, String)> {
        let info = self.docker.inspect_image(image).await.ok()?;
        Some((info.id.unwrap_or_default(), info.size.unwrap_or(0), info.created.map(|c| c.to_string()).unwrap_or_default()))
    }

    /// The registry digests the engine has for an image (`postgres@sha256:…`): none for an
    /// image that was loaded, built or committed rather than pulled, or is not there.
    pub async fn repo_digests(&self, image: &str) -> Vec<String> {
        self.docker.inspect_image(image).await.ok().and_then(|info| info.repo_digests).unwrap_or_default()
    }

    /// The ports an image EXPOSEs (`5000/tcp` → 5000), sorted; none for an image that is
    /// not there.
    pub async fn exposed_ports(&self, image: &str) -> Vec<u16> {
        let Ok(info) = self.docker.inspect_image(image).await else { return Vec::new() };
        let mut ports: Vec<u16> =
            info.config.and_then(|c| c.exposed_ports).map(|p| p.iter().filter_map(|k| k.strip_suffix("/tcp")?.parse().ok()).collect()).unwrap_or_default();
        ports.sort_unstable();
        ports
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
        let options =
            bollard::query_parameters::CreateImageOptions { from_src: Some("-".into()), repo: Some(repo.into()), tag: Some(tag.into()), ..Default::default() };
        let mut stream = self.docker.create_image(Some(options), Some(bollard::body_stream(rootfs)), None);
        while let Some(item) = stream.next().await {
            item?;
        }
        Ok(())
    }

    /// `docker load` of a `docker save` tar file; returns what it loaded (`repo:tag`, or
    /// the image id of an untagged one).
    pub async fn load(&self, tar: &std::path::Path) -> Result<Vec<String>, RuntimeError> {
        let options = bollard::query_parameters::ImportImageOptions { quiet: true, ..Default::default() };
        let mut stream = self.docker.import_image_stream(options, file_stream(tar).await?, None);
        let mut loaded = Vec::new();
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| RuntimeError::Container(format!("the image archive cannot be loaded: {e}")))?;
            if let Some(message) = info.error_detail.and_then(|d| d.message) {
                return Err(RuntimeError::Container(format!("the image archive cannot be loaded: {}", message.trim())));
            }
            for line in info.stream.unwrap_or_default().lines() {
                if let Some(name) = line.strip_prefix("Loaded image: ").or_else(|| line.strip_prefix("Loaded image ID: ")) {
                    loaded.push(name.trim().to_string());
                }
            }
        }
        Ok(loaded)
    }

    /// Tags `image` as `repo:tag`.
    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), RuntimeError> {
        let options = bollard::query_parameters::TagImageOptions { repo: Some(repo.to_string()), tag: Some(tag.to_string()) };
        Ok(self.docker.tag_image(image, Some(options)).await?)
    }

    /// The working directory an image's containers start in ("/" when it names none).
    pub async fn image_workdir(&self, image: &str) -> Result<String, RuntimeError> {
        let info = self.docker.inspect_image(image).await?;
        Ok(info.config.and_then(|c| c.working_dir).filter(|w| !w.is_empty()).unwrap_or_else(|| "/".into()))
    }

    /// Regular files of an image, read from a container of it that never starts (None
    /// for a path that is not a file there).
    pub async fn image_files(&self, image: &str, paths: &[String]) -> Result<Vec<Option<Vec<u8>>>, RuntimeError> {
        let labels = HashMap::from([
            (LABEL_ROOT.to_string(), self.root.clone()),
            (LABEL_ONE_OFF.to_string(), "inspect".to_string()),
            (LABEL_DAEMON.to_string(), daemon_run().to_string()),
        ]);
        let body = ContainerCreateBody { image: Some(image.to_string()), labels: Some(labels), cmd: Some(vec!["true".into()]), ..Default::default() };
        let id = self.docker.create_container(None, body).await?.id;
        let mut files = Vec::new();
        for path in paths {
            files.push(self.read_file(&id, path).await);
        }
        let _ = self.remove(&id).await;
        Ok(files)
    }

    pub async fn remove_image(&self, image: &str) {
        self.remove_image_checked(image).await;
    }
}

#[cfg(test)]
mod tests {
    use super::build_cpus;

    #[test]
    fn an_idle_build_leaves_cpu_0_to_the_apps_where_there_is_another() {
        assert_eq!(build_cpus(1), None);
        assert_eq!(build_cpus(0), None);
        assert_eq!(build_cpus(2).as_deref(), Some("1"));
        assert_eq!(build_cpus(8).as_deref(), Some("1-7"));
    }
}
