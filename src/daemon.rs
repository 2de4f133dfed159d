//! `berth daemon`: takes the root, starts the front doors, and stops them on SIGTERM/SIGINT.

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::engine::{Engine, Settings};
use crate::server::{local, ssh};
use crate::store::{GlobalConfig, Store};

/// Flags of `berth daemon`; each overrides the same key of berth.toml.
#[derive(Debug, Clone, clap::Args)]
pub struct DaemonArgs {
    /// Address of the SSH server [default: 0.0.0.0:2222]
    #[arg(long, value_name = "ADDR:PORT", env = "BERTH_SSH_LISTEN")]
    pub ssh_listen: Option<String>,
    /// Address nginx serves HTTP on [default: 0.0.0.0:80]
    #[arg(long, value_name = "ADDR:PORT", env = "BERTH_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Address nginx serves HTTPS on (host port 443 of an https mapping) [default: 0.0.0.0:443]
    #[arg(long, value_name = "ADDR:PORT", env = "BERTH_HTTPS_LISTEN")]
    pub https_listen: Option<String>,
    /// Address of the HTTP API (plain HTTP: keep it on loopback, or behind a TLS proxy) [default: 127.0.0.1:2280]
    #[arg(long, value_name = "ADDR:PORT", env = "BERTH_API_LISTEN")]
    pub api_listen: Option<String>,
}

fn resolve(flag: &Option<String>, file: &Option<String>, default: &str, what: &str) -> anyhow::Result<SocketAddr> {
    let raw = flag.as_deref().or(file.as_deref()).unwrap_or(default);
    raw.parse().with_context(|| format!("invalid {what} address {raw:?}: expected ADDR:PORT, e.g. 0.0.0.0:2222"))
}

pub fn settings(args: &DaemonArgs, file: &GlobalConfig) -> anyhow::Result<Settings> {
    Ok(Settings {
        ssh_listen: resolve(&args.ssh_listen, &file.ssh_listen, "0.0.0.0:2222", "--ssh-listen")?,
        http_listen: resolve(&args.http_listen, &file.http_listen, "0.0.0.0:80", "--http-listen")?,
        https_listen: resolve(&args.https_listen, &file.https_listen, "0.0.0.0:443", "--https-listen")?,
        api_listen: resolve(&args.api_listen, &file.api_listen, "127.0.0.1:2280", "--api-listen")?,
    })
}

/// Held for the daemon's life: a second daemon on the same root refuses to start.
fn take_root_lock(root: &Path) -> anyhow::Result<File> {
    let path = root.join("daemon.lock");
    let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    if file.try_lock().is_err() {
        bail!("another berth daemon is already running on {}", root.display());
    }
    Ok(file)
}

/// Every SSH session, container stream and nginx check holds descriptors: the soft limit
/// (often 1024) goes up to the hard one.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!("cannot raise the open files limit from {soft} to {hard}: {e}");
    }
}

pub async fn run(root: PathBuf, args: DaemonArgs) -> anyhow::Result<()> {
    let store = Store::open(&root).with_context(|| format!("cannot open the berth root {}", root.display()))?;
    let _lock = take_root_lock(&root)?;
    raise_open_files_limit();
    // Build contexts a crash left behind: no deploy runs before this daemon does.
    for entry in std::fs::read_dir(store.tmp_dir()).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with("context-") {
            // A file, or the repository a `keep-git-dir` context was being written from.
            let _ = std::fs::remove_file(entry.path()).or_else(|_| std::fs::remove_dir_all(entry.path()));
        }
    }
    let global = store.load_global()?;
    let mut settings = settings(&args, &global)?;

    let host_key = ssh::load_or_create_host_key(&root.join("keys").join("host_ed25519"))?;
    let ssh_listener = TcpListener::bind(settings.ssh_listen).await.with_context(|| format!("cannot listen for SSH on {}", settings.ssh_listen))?;
    let ssh_addr = ssh_listener.local_addr()?;
    let api_listener = TcpListener::bind(settings.api_listen).await.with_context(|| format!("cannot listen for the API on {} (--api-listen)", settings.api_listen))?;
    let api_addr = api_listener.local_addr()?;
    // berth's site proxies to what was bound (`--api-listen 127.0.0.1:0` in tests).
    settings.api_listen = api_addr;
    let socket_path = crate::socket_path(&root);
    let local_listener = local::bind(&socket_path).with_context(|| format!("cannot bind {}", socket_path.display()))?;

    crate::store::write_atomic(&root.join("berth.pid"), format!("{}\n", std::process::id()).as_bytes(), 0o644)?;

    let engine = Engine::new(store, settings);
    // Before any command: a push that served but never landed (a crash before git moved
    // its branch) is undone in the state; `restore_all` then runs what the state says.
    for app in engine.store.list_apps().unwrap_or_default() {
        if let Err(e) = crate::deploy::settle_ref(&engine, &app).await {
            tracing::error!(app, "{e}");
        }
    }
    // nginx is up (or its failure logged) before the daemon answers, so no command sees it
    // still starting (doctor would call it down; a routing change would race its start).
    engine.nginx.set_counting(engine.store.load_global().ok().and_then(|g| g.nginx_metrics).unwrap_or(true));
    if let Err(e) = engine.nginx.ensure_running().await {
        tracing::error!("cannot start nginx: {e}");
    }
    // Maintenance and http-auth as the state says (the gates file and /run may be older).
    crate::gates::apply_all(&engine).await;
    let gatekeeper_path = engine.nginx.gatekeeper_socket();
    let gatekeeper = crate::server::gatekeeper::bind(&gatekeeper_path).with_context(|| format!("cannot bind {}", gatekeeper_path.display()))?;
    crate::front::route_at_start(&engine).await;
    // Where tests and scripts find what was actually bound (`--ssh-listen 127.0.0.1:0`),
    // written once the daemon is about to answer.
    crate::store::write_atomic(&root.join("ssh-address"), format!("{ssh_addr}\n").as_bytes(), 0o644)?;
    crate::store::write_atomic(&root.join("api-address"), format!("{api_addr}\n").as_bytes(), 0o644)?;
    let (stop, stopped) = watch::channel(false);
    // The local socket outlives SSH at shutdown: pushes in flight reach it from their hook.
    let (stop_local, local_stopped) = watch::channel(false);
    let config = Arc::new(ssh::config(host_key));
    let ssh_task = tokio::spawn(ssh::serve(ssh_listener, config, engine.clone(), stopped.clone()));
    let local_task = tokio::spawn(local::serve(local_listener, engine.clone(), local_stopped));
    tokio::spawn(crate::server::api::serve(api_listener, engine.clone(), stop.subscribe()));
    tokio::spawn(crate::server::gatekeeper::serve(gatekeeper, engine.clone(), stop.subscribe()));
    tokio::spawn(crate::metrics::sample_forever(engine.clone()));
    tokio::spawn(crate::drains::follow::run(engine.clone()));
    tracing::info!(root = %root.display(), ssh = %ssh_addr, socket = %socket_path.display(), "berth daemon ready");

    // The apps come back in the background: SSH answers meanwhile.
    let nginx_watch = tokio::spawn(engine.nginx.clone().watch(stop.subscribe()));
    // Then routing follows the engine's events, and certificates due while the daemon was
    // down are renewed.
    let renewals = stop.subscribe();
    // Scheduled jobs and backups: one scheduler, from the minute after the apps are back.
    let scheduled = stop.subscribe();
    // The supervisor runs until deploys in flight are done: they start containers too.
    let supervised = stop_local.subscribe();
    let registry = (engine.clone(), stop.subscribe());
    tokio::spawn(async move { registry.0.registry.run(registry.0.store.root().to_path_buf(), registry.1).await });
    let restored = engine.clone();
    tokio::spawn(async move {
        restore_all(restored.clone()).await;
        tokio::spawn(crate::supervise::Supervisor::new(restored.clone()).run(supervised));
        tokio::spawn(crate::cron::run(restored.clone(), scheduled));
        tokio::spawn(crate::front::renewal_loop(restored.clone(), renewals.clone()));
        renew_certificates(restored, renewals).await;
    });

    shut_down(&engine, (stop, stop_local), (ssh_task, local_task, nginx_watch)).await?;
    let _ = std::fs::remove_file(&socket_path);
    let _ = std::fs::remove_file(root.join("berth.pid"));
    let _ = std::fs::remove_file(root.join("ssh-address"));
    let _ = std::fs::remove_file(root.join("api-address"));
    tracing::info!("stopped");
    Ok(())
}

/// Renews what is due: the wildcards first (an app they serve then has nothing due), then
/// every app's own; at daemon start, then every hour.
async fn renew_certificates(engine: Arc<Engine>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        crate::wildcard::renew_due(&engine, crate::unix_now() as i64, false, &crate::output::Output::discard()).await;
        crate::https::renew_all(&engine).await;
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(crate::https::RENEW_CHECK_EVERY) => {}
        }
    }
}

type Task = tokio::task::JoinHandle<()>;

/// On SIGTERM or SIGINT: no new connections; deploys and pushes in flight finish (or fail
/// and roll back) within the bound; what still runs after it is reconciled at the next
/// start. The local socket stops last: pushes in flight reach it from their hook.
async fn shut_down(engine: &Engine, (stop, stop_local): (watch::Sender<bool>, watch::Sender<bool>), tasks: (Task, Task, Task)) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    let _ = stop.send(true);
    if !engine.idle(Duration::ZERO).await {
        tracing::info!("waiting up to {}s for deploys in progress", SHUTDOWN_WAIT.as_secs());
        if !engine.idle(SHUTDOWN_WAIT).await {
            tracing::warn!("deploys still running after {}s: stopping anyway (the next start reconciles them)", SHUTDOWN_WAIT.as_secs());
        }
    }
    let _ = stop_local.send(true);
    let _ = tokio::join!(tasks.0, tasks.1, tasks.2);
    Ok(())
}

/// How long a graceful shutdown waits for deploys and pushes in flight (systemd's unit
/// allows a little more, see scripts/install.sh).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(300);

/// Starts (or reloads) nginx and brings every deployed app back: one-off containers of the
/// previous daemon go, containers the engine lost are started again, peers point where
/// containers run now, stale containers and images no release needs go.
async fn restore_all(engine: Arc<Engine>) {
    let mut apps = match engine.store.list_apps() {
        Ok(apps) => apps,
        Err(e) => return tracing::error!("cannot list apps: {e}"),
    };
    // Apps whose peers route to another release than the active one (a push undone at
    // start) are routed first.
    let active = |app: &str| engine.store.load_releases(app).ok().and_then(|r| r.active().map(|r| r.version));
    apps.sort_by_cached_key(|app| engine.nginx.peers_release(app).is_none_or(|v| Some(v) == active(app)));
    // Services first: apps connect to them as they start.
    crate::services::restore_all(&engine).await;
    // Builds, release phases and `run`s belong to sessions that ended with the last daemon.
    if let Ok(runtime) = engine.runtime().await {
        for id in runtime.orphaned_one_offs().await.unwrap_or_default() {
            let _ = runtime.remove(&id).await;
        }
        for id in runtime.orphaned_holders().await.unwrap_or_default() {
            let _ = runtime.remove(&id).await;
        }
    }
    for app in apps {
        let out = crate::output::Output::channel(1).0;
        let Ok(_deploying) = engine.deploy_lock(&app, &out).await else { continue };
        if let Err(e) = crate::deploy::restore(&engine, &app).await {
            tracing::error!(app, "cannot restore: {e}");
            continue;
        }
        match crate::deploy::prune_images(&engine, &app).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(app, "removed {n} image(s) no release needs"),
            Err(e) => tracing::warn!(app, "cannot prune images: {e}"),
        }
    }
}
