//! The stack image buildpack builds run in: `berth/stack:bookworm`, Debian 12 with the
//! runtimes of the built-in buildpacks (python3 + venv + pip, nodejs + npm, Go, busybox).
//!
//! From a registry's `debian:bookworm-slim` where one answers; otherwise debootstrap from
//! Debian's mirror into a directory, the runtimes installed by apt in a chroot (apt
//! resolves dependencies that debootstrap's `--include` misses), then `docker import`.

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use crate::buildpack::STACK_IMAGE;
use crate::output::{Output, lines_of_reader};
use crate::runtime::{OneShot, Runtime};

const PACKAGES: &str = "ca-certificates busybox python3 python3-venv python3-pip nodejs npm golang-go";

pub async fn build(runtime: &Runtime, root: &std::path::Path, out: &Output) -> Result<(), String> {
    let started = Instant::now();
    out.step(format!("Building the stack image {STACK_IMAGE}")).await;
    match runtime.pull("debian", "bookworm-slim", Duration::from_secs(20)).await {
        Ok(()) => from_registry(runtime, out).await?,
        Err(why) => {
            out.detail(format!("No registry: {why}; building from Debian's mirror with debootstrap")).await;
            from_debootstrap(runtime, root, out).await?
        }
    }
    let (id, size, _) = runtime.image_info(STACK_IMAGE).await.ok_or("the stack image is missing after the build")?;
    out.step(format!("Built {STACK_IMAGE} ({}, {} MB) in {:.0}s", short_id(&id), size / 1_000_000, started.elapsed().as_secs_f64())).await;
    Ok(())
}

async fn from_registry(runtime: &Runtime, out: &Output) -> Result<(), String> {
    let script = format!(
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q; apt-get install -y -q --no-install-recommends {PACKAGES}; mkdir -p /app; rm -rf /var/lib/apt/lists/*"
    );
    let (repo, tag) = STACK_IMAGE.split_once(':').unwrap_or((STACK_IMAGE, "latest"));
    let job = OneShot {
        app: None,
        image: "debian:bookworm-slim",
        cmd: vec!["bash".into(), "-c".into(), script],
        env: Vec::new(),
        binds: Vec::new(),
        upload: None,
        commit_as: (repo, tag),
        commit_cmd: Some(vec!["bash".into()]),
        commit_workdir: Some("/app"),
        collect: None,
        time_limit: None,
        limits: Default::default(),
    };
    runtime.run_and_commit(job, out).await.map(|_| ()).map_err(|e| e.to_string())
}

async fn from_debootstrap(runtime: &Runtime, root: &std::path::Path, out: &Output) -> Result<(), String> {
    let mirror = std::env::var("BERTH_DEBIAN_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let rootfs = root.join("stack").join("rootfs");
    let _ = std::fs::remove_dir_all(&rootfs);
    std::fs::create_dir_all(&rootfs).map_err(|e| e.to_string())?;
    let result = async {
        let t = Instant::now();
        stream_command(out, "debootstrap", &["--variant=minbase".as_ref(), "bookworm".as_ref(), rootfs.as_os_str(), mirror.as_ref()]).await?;
        out.step(format!("Base system in {:.0}s; installing runtimes: {PACKAGES}", t.elapsed().as_secs_f64())).await;
        let t = Instant::now();
        // The daemon's TMPDIR names a directory of the host, not of the chroot: its own /tmp.
        let install = format!(
            "set -e; unset TMPDIR TMP TEMP; export DEBIAN_FRONTEND=noninteractive; apt-get install -y -q --no-install-recommends {PACKAGES}; apt-get clean; rm -rf /var/lib/apt/lists/*; mkdir -p /app"
        );
        stream_command(out, "chroot", &[rootfs.as_os_str(), "bash".as_ref(), "-c".as_ref(), install.as_ref()]).await?;
        out.step(format!("Runtimes in {:.0}s; importing into the Docker engine", t.elapsed().as_secs_f64())).await;
        let mut tar = tokio::process::Command::new("tar")
            .arg("--numeric-owner")
            .arg("-C")
            .arg(&rootfs)
            .args(["-cf", "-", "."])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run tar: {e}"))?;
        let stdout = tar.stdout.take().ok_or("tar has no stdout")?;
        let stream = chunks(stdout);
        let (repo, tag) = STACK_IMAGE.split_once(':').unwrap_or((STACK_IMAGE, "latest"));
        runtime.import(stream, repo, tag).await.map_err(|e| e.to_string())?;
        let status = tar.wait().await.map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("tar of the stack failed: {status}"));
        }
        Ok(())
    }
    .await;
    let _ = std::fs::remove_dir_all(root.join("stack"));
    result
}

/// A reader as a stream of byte chunks (for bollard's request body).
fn chunks(reader: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> futures_util::stream::BoxStream<'static, bytes::Bytes> {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(reader, |mut reader| async move {
        let mut buf = vec![0u8; 256 * 1024];
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((bytes::Bytes::from(buf), reader))
            }
        }
    })
    .boxed()
}

/// Runs a command, streaming its output as detail lines; Err with its last line on failure.
async fn stream_command(out: &Output, program: &str, args: &[&std::ffi::OsStr]) -> Result<(), String> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e} (apt-get install {program})"))?;
    let stdout = lines_of_reader(child.stdout.take().ok_or("no stdout")?);
    let stderr = lines_of_reader(child.stderr.take().ok_or("no stderr")?);
    let mut lines = futures_util::stream::select(stdout, stderr);
    let mut last = String::new();
    while let Some(line) = lines.next().await {
        out.child_line(&line, true).await;
        last = line;
    }
    let status = child.wait().await.map_err(|e| e.to_string())?;
    if status.success() { Ok(()) } else { Err(format!("{program} failed ({status}): {last}")) }
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}
