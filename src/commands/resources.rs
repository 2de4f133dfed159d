//! `storage:*` and `resource:*`: what an app's containers mount, and their limits. Both
//! are settings applied on the next release (`ps:restart` applies them at once).

use super::Scope;
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::output::{Format, Report};
use crate::store::{ALL_PROCESSES, BUILD_PROCESS, Limits};
use crate::validate;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("resource", "Manage resource settings for an app"), ("storage", "Manage mounted volumes")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Mount a directory into the app's containers: NAME:/path (under the berth root) or /host/path:/path (admins), :ro for read-only
    #[command(name = "storage:mount")]
    StorageMount { app: AppName, mount: String },
    /// Remove a mount (the host directory and its files stay)
    #[command(name = "storage:unmount")]
    StorageUnmount { app: AppName, mount: String },
    /// List an app's mounts
    #[command(name = "storage:list")]
    StorageList {
        app: AppName,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show an app's mounts (dokku's build, deploy and run mounts)
    #[command(name = "storage:report")]
    StorageReport(ReportArgs),
    /// Create DIRECTORY under <root>/data/storage, owned as the app's processes run, to mount as a host path
    #[command(name = "storage:ensure-directory")]
    StorageEnsureDirectory {
        directory: String,
        /// Owner: herokuish or heroku (32767), paketo (2000), root, or false (leave it)
        #[arg(long, value_enum, default_value_t)]
        chown: Chown,
    },
    /// Limit the memory and CPUs of an app's containers (every process type, or one)
    #[command(name = "resource:limit")]
    ResourceLimit(ResourceArgs),
    /// Remove limits (of every process type, or of one)
    #[command(name = "resource:limit-clear")]
    ResourceLimitClear {
        app: AppName,
        #[arg(long, visible_alias = "process-type")]
        process: Option<String>,
    },
    /// Reserve memory and CPUs for an app's containers (every process type, or one): the
    /// engine reclaims memory above the reservation first when the machine runs short;
    /// Swarm places tasks where the reservation is free
    #[command(name = "resource:reserve")]
    ResourceReserve(ResourceArgs),
    /// Remove reservations (of every process type, or of one)
    #[command(name = "resource:reserve-clear")]
    ResourceReserveClear {
        app: AppName,
        #[arg(long, visible_alias = "process-type")]
        process: Option<String>,
    },
    /// Show an app's limits and reservations
    #[command(name = "resource:report")]
    ResourceReport(ReportArgs),
}

/// `resource:limit|reserve APP [--memory SIZE|clear] [--cpu N|clear] [--process-type TYPE]`.
#[derive(Debug, clap::Args)]
pub struct ResourceArgs {
    app: AppName,
    /// e.g. 256m, 1g (clear: remove it)
    #[arg(long)]
    memory: Option<String>,
    /// e.g. 0.5, 2 (clear: remove it)
    #[arg(long = "cpu")]
    cpus: Option<String>,
    /// Only this process type (build: the app's builds)
    #[arg(long, visible_alias = "process-type")]
    process: Option<String>,
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::ResourceLimit(_) | Cmd::ResourceLimitClear { .. } | Cmd::ResourceReserve(_) | Cmd::ResourceReserveClear { .. } | Cmd::StorageEnsureDirectory { .. } => {
                Scope::Admin
            }
            Cmd::StorageReport(args) => args.scope(),
            Cmd::StorageMount { app, .. } | Cmd::StorageUnmount { app, .. } | Cmd::StorageList { app, .. } => Scope::App(app),
            Cmd::ResourceReport(args) => args.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::StorageMount { app, mount: spec } => mount(ctx, &app, &spec).await,
            Cmd::StorageUnmount { app, mount } => unmount(ctx, &app, &mount).await,
            Cmd::StorageList { app, format } => list_mounts(ctx, &app, format).await,
            Cmd::StorageReport(args) => storage_report(ctx, &args).await,
            Cmd::StorageEnsureDirectory { directory, chown } => ensure_directory(ctx, &directory, chown).await,
            Cmd::ResourceLimit(args) => limit(ctx, Kind::Limit, &args).await,
            Cmd::ResourceLimitClear { app, process } => clear(ctx, &app, Kind::Limit, process.as_deref()).await,
            Cmd::ResourceReserve(args) => limit(ctx, Kind::Reserve, &args).await,
            Cmd::ResourceReserveClear { app, process } => clear(ctx, &app, Kind::Reserve, process.as_deref()).await,
            Cmd::ResourceReport(args) => report(ctx, &args).await,
        }
    }
}

/// dokku's `--chown` choices: who owns a directory made for an app to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Chown {
    /// 32767:32767, the user buildpack apps run as
    #[default]
    Herokuish,
    /// 32767:32767
    Heroku,
    /// 2000:2000 (dokku also takes the spelling packeto)
    #[value(alias = "packeto")]
    Paketo,
    /// 0:0
    Root,
    /// Leave the owner as it is
    False,
}

impl Chown {
    fn owner(self) -> Option<u32> {
        match self {
            Chown::Herokuish | Chown::Heroku => Some(32767),
            Chown::Paketo => Some(2000),
            Chown::Root => Some(0),
            Chown::False => None,
        }
    }
}

/// `storage:ensure-directory DIRECTORY [--chown …]`: `<root>/data/storage/DIRECTORY`, as
/// dokku makes `/var/lib/dokku/data/storage/DIRECTORY`, for an admin to mount as a host path.
pub async fn ensure_directory(ctx: &mut Ctx<'_>, directory: &str, chown: Chown) -> CmdResult {
    let name_ok = !directory.is_empty()
        && directory.len() <= 64
        && directory.starts_with(|c: char| c.is_ascii_alphanumeric())
        && directory.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !name_ok {
        return Err(failed(format!("Invalid directory {}: a name of letters, digits, '.', '_' or '-'", validate::quoted(directory))));
    }
    let path = ctx.engine.root().join("data").join("storage").join(directory);
    ctx.out.step(format!("Ensuring {} exists", path.display())).await;
    std::fs::create_dir_all(&path).map_err(|e| failed(format!("cannot create {}: {e}", path.display())))?;
    if let Some(id) = chown.owner() {
        ctx.out.detail(format!("Setting directory ownership to {id}:{id}")).await;
        nix::unistd::chown(&path, Some(nix::unistd::Uid::from_raw(id)), Some(nix::unistd::Gid::from_raw(id)))
            .map_err(|e| failed(format!("cannot change the owner of {}: {e}", path.display())))?;
    }
    ctx.out.detail(format!("Mount it with storage:mount APP {}:/path (admins)", path.display())).await;
    Ok(())
}

/// `storage:report [APP]`: berth mounts storage into every container of a release (its
/// processes, its release phase and `run`), never into builds.
pub async fn storage_report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("storage")?;
    args.print_apps(ctx, |_, name, config| {
        let mounts: Vec<String> = config.storage.iter().map(|m| m.to_string()).collect();
        Ok(Report::new(format!("{name} storage information")).namespace("storage")
            .row("Storage build mounts", Vec::<String>::new())
            .row("Storage deploy mounts", mounts.clone())
            .row("Storage run mounts", mounts))
    })
    .await
}

const APPLIES: &str = "applies on the next release (ps:restart APP applies it now)";

pub async fn mount(ctx: &mut Ctx<'_>, app: &AppName, spec: &str) -> CmdResult {
    let mount = validate::mount(spec)?;
    ctx.engine.store.load_app(app)?;
    super::scheduler::not_on_swarm(ctx, app, "storage mounts (a directory of this server is not on the other nodes)")?;
    // A host path can expose anything on the server to the app: admins only. Names stay
    // inside the app's own directory under the berth root.
    let host_dir = if mount.host_is_path() {
        if !ctx.caller.role.is_admin() {
            return Err(CmdError::Denied(format!("only admins may mount host paths; use a name such as data:{}", mount.container)));
        }
        let path = std::path::PathBuf::from(&mount.host);
        if !path.is_dir() {
            return Err(failed(format!("{} is not a directory on the server: create it first", mount.host)));
        }
        path
    } else {
        crate::deploy::storage_dir(ctx.engine, app, &mount.host)
    };
    ctx.engine
        .update_app(app, |c| {
            if c.storage.iter().any(|m| m.container == mount.container) {
                return Err(failed(format!("{app} already mounts something at {}: storage:unmount it first", mount.container)));
            }
            c.storage.push(mount.clone());
            Ok(())
        })
        .await?;
    std::fs::create_dir_all(&host_dir).map_err(|e| failed(format!("cannot create {}: {e}", host_dir.display())))?;
    ctx.out.step(format!("Mounting {} at {} in {app}'s containers: {APPLIES}", host_dir.display(), mount.container)).await;
    Ok(())
}

pub async fn unmount(ctx: &mut Ctx<'_>, app: &AppName, spec: &str) -> CmdResult {
    let mount = validate::mount(spec)?;
    ctx.engine
        .update_app(app, |c| {
            let before = c.storage.len();
            c.storage.retain(|m| !(m.host == mount.host && m.container == mount.container));
            if c.storage.len() == before {
                return Err(failed(format!("{app} does not mount {}:{} (see storage:list {app})", mount.host, mount.container)));
            }
            Ok(())
        })
        .await?;
    ctx.out.step(format!("Unmounted {}:{} from {app} (its files stay): {APPLIES}", mount.host, mount.container)).await;
    Ok(())
}

pub async fn list_mounts(ctx: &mut Ctx<'_>, app: &AppName, format: Format) -> CmdResult {
    let config = ctx.engine.store.load_app(app)?;
    let mounts: Vec<String> = config.storage.iter().map(|m| m.to_string()).collect();
    if format == Format::Json {
        ctx.out.line(serde_json::Value::from(mounts).to_string()).await;
        return Ok(());
    }
    ctx.out.header(format!("{app} volume bind-mounts")).await;
    for m in &config.storage {
        let host = if m.host_is_path() { m.host.clone() } else { crate::deploy::storage_dir(ctx.engine, app, &m.host).display().to_string() };
        ctx.out.line(format!("{m}  ({host})")).await;
    }
    Ok(())
}

/// Limits (`resource:limit`) or reservations (`resource:reserve`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Limit,
    Reserve,
}

impl Kind {
    fn of(self, config: &mut crate::store::AppConfig) -> &mut std::collections::BTreeMap<String, Limits> {
        match self {
            Kind::Limit => &mut config.resources,
            Kind::Reserve => &mut config.reservations,
        }
    }

    /// dokku's word in report keys (`web.limit.memory`).
    fn word(self) -> &'static str {
        match self {
            Kind::Limit => "limit",
            Kind::Reserve => "reserve",
        }
    }
}

/// A value of `--memory`/`--cpu`: set it, or (`clear`) remove it.
fn change(value: Option<&str>, check: impl Fn(&str) -> Result<i64, validate::Invalid>) -> Result<Option<Option<String>>, CmdError> {
    match value {
        None => Ok(None),
        Some("clear") => Ok(Some(None)),
        Some(v) => {
            check(v)?;
            Ok(Some(Some(v.to_string())))
        }
    }
}

/// `resource:limit|reserve APP [--memory SIZE|clear] [--cpu N|clear] [--process-type TYPE]`.
/// The `build` type's limits are those of the app's builds.
pub async fn limit(ctx: &mut Ctx<'_>, kind: Kind, args: &ResourceArgs) -> CmdResult {
    let (app, process, memory, cpus) = (&args.app, args.process.as_deref(), args.memory.as_deref(), args.cpus.as_deref());
    if let Some(p) = process {
        validate::process_type(p)?;
    }
    if memory.is_none() && cpus.is_none() {
        return Err(failed(format!("Say what to {}: --memory SIZE (e.g. 256m) and/or --cpu N (e.g. 0.5), or clear", if kind == Kind::Limit { "limit" } else { "reserve" })));
    }
    let (memory_change, cpu_change) = (change(memory, validate::memory)?, change(cpus, validate::cpus)?);
    let key = process.unwrap_or(ALL_PROCESSES).to_string();
    ctx.engine
        .update_app(app, |c| {
            let map = kind.of(c);
            let entry = map.entry(key.clone()).or_default();
            if let Some(m) = memory_change.clone() {
                entry.memory = m;
            }
            if let Some(cpu) = cpu_change.clone() {
                entry.cpus = cpu;
            }
            if *entry == Limits::default() {
                map.remove(&key);
            }
            Ok::<_, CmdError>(())
        })
        .await?;
    let whose = match process {
        Some(BUILD_PROCESS) => "its builds".to_string(),
        Some(p) => format!("{p} containers"),
        None => "every container".into(),
    };
    let what = [memory.map(|m| format!("memory {m}")), cpus.map(|c| format!("{c} CPU"))].into_iter().flatten().collect::<Vec<_>>().join(", ");
    let title = if kind == Kind::Limit { "Limits" } else { "Reservations" };
    let applies = if process == Some(BUILD_PROCESS) { "applies to the next build" } else { APPLIES };
    ctx.out.step(format!("{title} of {app} ({whose}): {what}; {applies}")).await;
    Ok(())
}

pub async fn clear(ctx: &mut Ctx<'_>, app: &AppName, kind: Kind, process: Option<&str>) -> CmdResult {
    if let Some(p) = process {
        validate::process_type(p)?;
    }
    ctx.engine
        .update_app(app, |c| {
            match process {
                Some(p) => {
                    kind.of(c).remove(p);
                }
                None => kind.of(c).clear(),
            }
            Ok::<_, CmdError>(())
        })
        .await?;
    let title = if kind == Kind::Limit { "Limits" } else { "Reservations" };
    ctx.out.step(format!("{title} of {app} cleared; {APPLIES}")).await;
    Ok(())
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("resource")?;
    let show = |l: &Limits| {
        let mut parts = Vec::new();
        if let Some(m) = &l.memory {
            parts.push(format!("memory={m}"));
        }
        if let Some(c) = &l.cpus {
            parts.push(format!("cpu={c}"));
        }
        if parts.is_empty() { "unlimited".to_string() } else { parts.join(" ") }
    };
    args.print_apps(ctx, |_, name, config| {
        let per: Vec<String> = config.resources.iter().filter(|(k, _)| *k != ALL_PROCESSES).map(|(k, l)| format!("{k}: {}", show(l))).collect();
        let mut report = Report::new(format!("{name} resource information"))
            .namespace("resource")
            .row("All processes", show(&config.resources.get(ALL_PROCESSES).cloned().unwrap_or_default()))
            .row("Per process", per);
        // dokku's one row per value set: `_default_.limit.memory`, `web.reserve.cpu`.
        for (kind, map) in [(Kind::Limit, &config.resources), (Kind::Reserve, &config.reservations)] {
            for (process, values) in map {
                let process = if process == ALL_PROCESSES { "_default_" } else { process.as_str() };
                for (what, value) in [("memory", &values.memory), ("cpu", &values.cpus)] {
                    if let Some(value) = value {
                        let key = format!("{process}.{}.{what}", kind.word());
                        report = report.keyed_row(key.clone(), key, value.clone());
                    }
                }
            }
        }
        Ok(report)
    })
    .await
}
