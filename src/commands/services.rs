//! `postgres:*` and `redis:*`: the same commands for every kind of service
//! (`crate::services::Kind`), declared once by [`service_namespace!`].

use super::{CmdError, CmdResult, Ctx, EXIT_FAILURE, Target, failed};
use crate::output::{Format, Report, print_reports};
use crate::runtime::Client;
use crate::services::{self, Kind};
use crate::store::Service;
use crate::validate::{AppName, Invalid};

/// Parses a service name (clap `value_parser`): refused with exit 1 like an app name.
pub fn service_name(name: &str) -> Result<String, Invalid> {
    services::valid_name(name).map(str::to_string).map_err(Invalid)
}

/// Declares a namespace of service commands: its `Cmd` (clap subcommands named
/// `NS:create` …), scopes (admins: a service is the server's) and dispatch to the handlers
/// below with the kind.
macro_rules! service_namespace {
    ($ns:literal, $kind:expr, $about:literal) => {
        use super::services as handlers;
        use super::{CmdResult, Ctx, Scope};
        use crate::output::Format;
        use crate::validate::AppName;

        /// The namespace of this module and its help line.
        pub(super) const NAMESPACES: &[(&str, &str)] = &[($ns, $about)];

        #[derive(Debug, clap::Subcommand)]
        pub enum Cmd {
            /// Create a service (data in a volume of its own; the image is built once if no registry answers)
            #[command(name = concat!($ns, ":create"))]
            Create {
                #[arg(value_parser = handlers::service_name)]
                name: String,
                /// The image's major version (default: the newest berth can build)
                #[arg(long)]
                image_version: Option<String>,
            },
            /// Give an app the service's URL in its config (ALIAS_URL), as a new release
            #[command(name = concat!($ns, ":link"))]
            Link {
                #[arg(value_parser = handlers::service_name)]
                name: String,
                app: AppName,
                /// The env var is ALIAS_URL (default: the kind's)
                #[arg(long, short)]
                alias: Option<String>,
                /// Print the URL with its password (it is masked otherwise)
                #[arg(long)]
                show_password: bool,
            },
            /// Take the service's URL out of an app's config, as a new release
            #[command(name = concat!($ns, ":unlink"))]
            Unlink {
                #[arg(value_parser = handlers::service_name)]
                name: String,
                app: AppName,
            },
            /// Show a service: status, version, volume, links, URL (password masked)
            #[command(name = concat!($ns, ":info"))]
            Info {
                #[arg(value_parser = handlers::service_name)]
                name: String,
                #[arg(long, value_enum, default_value_t)]
                format: Format,
                /// Show the password in the URL
                #[arg(long)]
                show_password: bool,
            },
            /// List the services
            #[command(name = concat!($ns, ":list"))]
            List {
                #[arg(long, value_enum, default_value_t)]
                format: Format,
            },
            /// Exit 0 if the service exists, 1 if not
            #[command(name = concat!($ns, ":exists"))]
            Exists {
                #[arg(value_parser = handlers::service_name)]
                name: String,
            },
            /// Open the service's client in its container (use ssh -t)
            #[command(name = concat!($ns, ":connect"))]
            Connect {
                #[arg(value_parser = handlers::service_name)]
                name: String,
            },
            /// Write a dump of the service's data on stdout
            #[command(name = concat!($ns, ":export"))]
            Export {
                #[arg(value_parser = handlers::service_name)]
                name: String,
            },
            /// Restore a dump from stdin into the service
            #[command(name = concat!($ns, ":import"))]
            Import {
                #[arg(value_parser = handlers::service_name)]
                name: String,
            },
            /// Dump the service now into <root>/backups/KIND/NAME/ (the oldest beyond --keep go)
            #[command(name = concat!($ns, ":backup"))]
            Backup {
                #[arg(value_parser = handlers::service_name)]
                name: String,
                /// Dumps kept (default: the schedule's, else 7)
                #[arg(long)]
                keep: Option<u32>,
            },
            /// Dump the service on a cron schedule ("0 3 * * *"), keeping the newest N dumps
            #[command(name = concat!($ns, ":backup-schedule"))]
            BackupSchedule {
                #[arg(value_parser = handlers::service_name)]
                name: String,
                schedule: String,
                #[arg(long, default_value_t = 7)]
                keep: u32,
            },
            /// Stop the scheduled dumps (the dumps stay)
            #[command(name = concat!($ns, ":backup-unschedule"))]
            BackupUnschedule {
                #[arg(value_parser = handlers::service_name)]
                name: String,
            },
            /// Upload every dump to an S3-compatible bucket too (s3://BUCKET/PREFIX); the secret access key is read from stdin
            #[command(name = concat!($ns, ":backup-set-target"))]
            BackupSetTarget {
                #[arg(value_parser = handlers::service_name)]
                name: String,
                url: String,
                /// The access key id (the secret key comes on stdin, one line)
                #[arg(long)]
                access_key_id: String,
                /// An S3-compatible service other than AWS (https://s3.example.com)
                #[arg(long)]
                endpoint: Option<String>,
                /// The bucket's region (default us-east-1)
                #[arg(long)]
                region: Option<String>,
            },
            /// Upload dumps no more (what was uploaded stays)
            #[command(name = concat!($ns, ":backup-unset-target"))]
            BackupUnsetTarget {
                #[arg(value_parser = handlers::service_name)]
                name: String,
            },
            /// Encrypt what is uploaded (age format) with a passphrase read from stdin
            #[command(name = concat!($ns, ":backup-set-encryption"))]
            BackupSetEncryption {
                #[arg(value_parser = handlers::service_name)]
                name: String,
            },
            /// Upload dumps unencrypted from now on (keep the passphrase: earlier uploads need it)
            #[command(name = concat!($ns, ":backup-unset-encryption"))]
            BackupUnsetEncryption {
                #[arg(value_parser = handlers::service_name)]
                name: String,
            },
            /// List the service's backups: on this server and at its target
            #[command(name = concat!($ns, ":backups"))]
            Backups {
                #[arg(value_parser = handlers::service_name)]
                name: String,
                #[arg(long, value_enum, default_value_t)]
                format: Format,
            },
            /// Restore a backup (a name KIND:backups lists) into the service, or into a new one with --to NEW
            #[command(name = concat!($ns, ":restore"))]
            Restore {
                #[arg(value_parser = handlers::service_name)]
                name: String,
                backup: String,
                /// A new service to restore into (the service itself is left alone)
                #[arg(long, value_parser = handlers::service_name)]
                to: Option<String>,
            },
            /// Destroy a service and its data (refused while linked)
            #[command(name = concat!($ns, ":destroy"))]
            Destroy {
                #[arg(value_parser = handlers::service_name)]
                name: String,
                /// Do not ask for the name to confirm
                #[arg(long)]
                force: bool,
            },
        }

        impl Cmd {
            pub(super) fn scope(&self) -> Scope<'_> {
                Scope::Admin
            }

            pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
                let kind: &dyn crate::services::Kind = $kind;
                match self {
                    Cmd::Create { name, image_version } => handlers::create(ctx, kind, &name, image_version.as_deref()).await,
                    Cmd::Link { name, app, alias, show_password } => handlers::link(ctx, kind, &name, &app, alias.as_deref(), show_password).await,
                    Cmd::Unlink { name, app } => handlers::unlink(ctx, kind, &name, &app).await,
                    Cmd::Info { name, format, show_password } => handlers::info(ctx, kind, &name, format, show_password).await,
                    Cmd::List { format } => handlers::list(ctx, kind, format).await,
                    Cmd::Exists { name } => handlers::exists(ctx, kind, &name).await,
                    Cmd::Connect { name } => handlers::connect(ctx, kind, &name).await,
                    Cmd::Export { name } => handlers::export(ctx, kind, &name).await,
                    Cmd::Import { name } => handlers::import(ctx, kind, &name).await,
                    Cmd::Destroy { name, force } => handlers::destroy(ctx, kind, &name, force).await,
                    Cmd::Backup { name, keep } => handlers::backup(ctx, kind, &name, keep).await,
                    Cmd::BackupSchedule { name, schedule, keep } => handlers::backup_schedule(ctx, kind, &name, Some((schedule, keep))).await,
                    Cmd::BackupUnschedule { name } => handlers::backup_schedule(ctx, kind, &name, None).await,
                    Cmd::BackupSetTarget { name, url, access_key_id, endpoint, region } => {
                        handlers::set_target(ctx, kind, &name, Some(handlers::NewTarget { url, access_key_id, endpoint, region })).await
                    }
                    Cmd::BackupUnsetTarget { name } => handlers::set_target(ctx, kind, &name, None).await,
                    Cmd::BackupSetEncryption { name } => handlers::set_encryption(ctx, kind, &name, true).await,
                    Cmd::BackupUnsetEncryption { name } => handlers::set_encryption(ctx, kind, &name, false).await,
                    Cmd::Backups { name, format } => handlers::backups(ctx, kind, &name, format).await,
                    Cmd::Restore { name, backup, to } => handlers::restore(ctx, kind, &name, &backup, to.as_deref()).await,
                }
            }
        }
    };
}
pub(super) use service_namespace;

/// The service's state, or the error that it does not exist.
fn load(ctx: &Ctx<'_>, kind: &dyn Kind, name: &str) -> Result<Service, CmdError> {
    ctx.engine.store.load_service(kind.name(), name)?.ok_or_else(|| failed(format!("{} service {name} does not exist", kind.name())))
}

/// One change to a service at a time.
async fn lock(ctx: &Ctx<'_>, kind: &dyn Kind, name: &str) -> Result<crate::engine::DeployGuard, CmdError> {
    ctx.engine.deploy_lock(&format!("@{}/{name}", kind.name()), &ctx.out).await.map_err(CmdError::Failed)
}

pub async fn create(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, version: Option<&str>) -> CmdResult {
    let version = version.unwrap_or(kind.built_versions()[0]);
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') || version.len() > 10 {
        return Err(failed(format!("Invalid image version {}: a version number such as {}", crate::validate::quoted(version), kind.built_versions()[0])));
    }
    let _lock = lock(ctx, kind, name).await?;
    if ctx.engine.store.load_service(kind.name(), name)?.is_some() {
        return Err(failed(format!("{} service {name} already exists", kind.name())));
    }
    let started = std::time::Instant::now();
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
    runtime.ensure_network().await.map_err(|e| failed(e.to_string()))?;
    ctx.out.step(format!("Creating {} service {name}", kind.name())).await;
    let image = services::image_for(kind, version, &runtime, &ctx.engine.root(), &ctx.out).await.map_err(CmdError::Failed)?;
    let service = Service {
        kind: kind.name().into(),
        name: name.into(),
        image: image.name,
        image_id: Some(image.id),
        version: version.into(),
        password: services::new_password(),
        created_at: crate::unix_now(),
        links: Default::default(),
        backup: None,
        offsite: None,
        backup_passphrases: Vec::new(),
        backup_encrypt: false,
    };
    // The state first: a service that started is always one berth knows (and can destroy).
    ctx.engine.store.save_service(&service)?;
    if let Err(e) = services::start(kind, &service, &runtime).await {
        let container = runtime.service_name(kind.name(), name);
        let _ = runtime.remove_service(&container, true).await;
        let _ = ctx.engine.store.remove_service(kind.name(), name);
        return Err(failed(format!("{e}; nothing was kept")));
    }
    ctx.out.step(format!("{} service {name} ({}) accepts clients, after {:.1}s", kind.name(), service.image, started.elapsed().as_secs_f64())).await;
    ctx.out.detail(format!("{}:link {name} APP gives an app its URL", kind.name())).await;
    Ok(())
}

/// What a password is shown as unless `--show-password` asks for it.
const MASKED: &str = "********";

/// The env var a link sets: `ALIAS_URL`, the alias a valid env key in capitals.
fn link_var(kind: &dyn Kind, alias: Option<&str>) -> Result<String, CmdError> {
    let alias = alias.unwrap_or(kind.env_var()).to_ascii_uppercase().replace('-', "_");
    let var = format!("{alias}_URL");
    crate::validate::env_key(&var)?;
    Ok(var)
}

pub async fn link(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, app: &AppName, alias: Option<&str>, show_password: bool) -> CmdResult {
    let var = link_var(kind, alias)?;
    super::scheduler::not_on_swarm(ctx, app, "linked services (they run on this server's engine, out of the cluster's reach)")?;
    let _lock = lock(ctx, kind, name).await?;
    let mut service = load(ctx, kind, name)?;
    let config = ctx.engine.store.load_app(app)?;
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
    let url = kind.url(&service, &runtime.service_name(kind.name(), name), &service.password);
    match config.env.get(&var) {
        Some(value) if *value == url => {
            ctx.out.step(format!("{app} is already linked to {} service {name} ({var})", kind.name())).await;
        }
        Some(_) => {
            return Err(failed(format!("{app} already has {var}: {}:link {name} {app} --alias OTHER puts this one in OTHER_URL", kind.name())));
        }
        None => {
            ctx.out.step(format!("Linking {} service {name} to {app} as {var}", kind.name())).await;
            // On the app's network before its new release starts, which reaches it by name.
            let container = runtime.service_name(kind.name(), name);
            let network = runtime.ensure_app_network(app).await.map_err(|e| failed(e.to_string()))?;
            runtime.attach(&container, &network, Vec::new()).await.map_err(|e| failed(format!("cannot put {} service {name} on {app}'s network: {e}", kind.name())))?;
            // The URL holds the password: printed masked, as postgres:info does, unless asked.
            let shown = if show_password { url.clone() } else { kind.url(&service, &runtime.service_name(kind.name(), name), MASKED) };
            let pair = [format!("{var}={url}")];
            let change = super::config::Change { pairs: &pair, unset: &[], encoded: false };
            super::config::set_showing(ctx, &Target::App(app.clone()), change, false, |_, _| shown.clone()).await?;
        }
    }
    service.links.insert(app.to_string(), var);
    ctx.engine.store.save_service(&service)?;
    Ok(())
}

pub async fn unlink(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, app: &AppName) -> CmdResult {
    let _lock = lock(ctx, kind, name).await?;
    let mut service = load(ctx, kind, name)?;
    let Some(var) = service.links.get(app.as_str()).cloned() else {
        return Err(failed(format!("{app} is not linked to {} service {name}", kind.name())));
    };
    if ctx.engine.store.app_exists(app) {
        ctx.out.step(format!("Unlinking {} service {name} from {app} ({var})", kind.name())).await;
        super::config::unset(ctx, &Target::App(app.clone()), &[var], false).await?;
    }
    service.links.remove(app.as_str());
    ctx.engine.store.save_service(&service)?;
    // Off the app's network (and its previews'): the app no longer reaches it.
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
    let container = runtime.service_name(kind.name(), name);
    let preview = format!("{app}--");
    for (on, network) in runtime.app_networks_of(&container).await.unwrap_or_default() {
        if on == app.as_str() || on.starts_with(&preview) {
            runtime.detach(&container, &network).await.map_err(|e| failed(format!("cannot take {} service {name} off {app}'s network: {e}", kind.name())))?;
        }
    }
    Ok(())
}

pub async fn info(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, format: Format, show_password: bool) -> CmdResult {
    let service = load(ctx, kind, name)?;
    let runtime = ctx.engine.runtime().await.ok();
    let container = runtime.as_ref().map(|r| r.service_name(kind.name(), name)).unwrap_or_default();
    let status = match &runtime {
        None => "unknown (the Docker engine is not reachable)".to_string(),
        Some(r) => match r.service(&container).await {
            Ok(Some(c)) if c.running => "running".into(),
            Ok(Some(c)) => format!("stopped ({})", c.status),
            Ok(None) => "missing (the daemon creates it again at start)".into(),
            Err(e) => format!("unknown ({e})"),
        },
    };
    let password = if show_password { service.password.clone() } else { MASKED.into() };
    let links: Vec<String> = service.links.iter().map(|(app, var)| format!("{app} ({var})")).collect();
    let report = Report::new(format!("{} service {name} information", kind.name()))
        .row("Status", status)
        .row("Version", service.version.clone())
        .row("Image", service.image.clone())
        .row("Image id", service.image_id.clone().unwrap_or_default())
        .row("Container", container.clone())
        .row("Volume", container.clone())
        .row("Links", links)
        .row("Dsn", kind.url(&service, &container, &password))
        .row("Backup schedule", service.backup.as_ref().map(|b| format!("{} (keeping {})", b.schedule, b.keep)).unwrap_or_default())
        .row("Backup dir", services::backup_dir(ctx.engine, kind.name(), name).display().to_string())
        .row("Backup target", service.offsite.as_ref().map(|t| t.url.clone()).unwrap_or_default())
        .row("Backup encryption", if service.backup_encrypt { "age (passphrase)" } else { "" })
        .row("Created at", crate::output::utc(service.created_at));
    print_reports(&ctx.out, &[(name.to_string(), report)], true, format).await.map_err(failed)
}

pub async fn list(ctx: &mut Ctx<'_>, kind: &dyn Kind, format: Format) -> CmdResult {
    let names = ctx.engine.store.list_services(kind.name())?;
    let runtime = ctx.engine.runtime().await.ok();
    let mut rows = Vec::new();
    for name in &names {
        let service = load(ctx, kind, name)?;
        let status = match &runtime {
            Some(r) => match r.service(&r.service_name(kind.name(), name)).await {
                Ok(Some(c)) if c.running => "running",
                Ok(Some(_)) => "stopped",
                Ok(None) => "missing",
                Err(_) => "unknown",
            },
            None => "unknown",
        };
        rows.push((service, status));
    }
    if format == Format::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|(s, status)| serde_json::json!({"name": s.name, "version": s.version, "status": status, "links": s.links.keys().collect::<Vec<_>>()}))
            .collect();
        ctx.out.line(serde_json::Value::Array(list).to_string()).await;
        return Ok(());
    }
    if rows.is_empty() {
        ctx.out.error(format!("There are no {} services", kind.name())).await;
        return Ok(());
    }
    ctx.out.header(format!("{} services", kind.name())).await;
    for (s, status) in rows {
        let links = s.links.keys().cloned().collect::<Vec<_>>().join(" ");
        ctx.out.line(format!("{:<24} {:<8} {:<9} {links}", s.name, s.version, status)).await;
    }
    Ok(())
}

pub async fn exists(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str) -> CmdResult {
    if ctx.engine.store.load_service(kind.name(), name)?.is_some() { Ok(()) } else { Err(CmdError::Exit(EXIT_FAILURE)) }
}

/// The service's running container, or why there is none.
async fn running(ctx: &Ctx<'_>, kind: &dyn Kind, name: &str) -> Result<(crate::runtime::Runtime, String), CmdError> {
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
    let container = runtime.service_name(kind.name(), name);
    match runtime.service(&container).await.map_err(|e| failed(e.to_string()))? {
        Some(c) if c.running => Ok((runtime, container)),
        _ => Err(failed(format!("{} service {name} is not running", kind.name()))),
    }
}

/// Runs a command in the service's container with the caller's streams; its exit code is
/// the command's.
async fn exec(ctx: &mut Ctx<'_>, container: &str, runtime: &crate::runtime::Runtime, cmd: Vec<String>, env: Vec<String>, terminal: bool) -> CmdResult {
    let terminal = if terminal { ctx.terminal.as_mut() } else { None };
    let client = Client { out: &ctx.out, input: &mut ctx.input, terminal };
    match runtime.exec_env(container, cmd, env, client).await.map_err(|e| failed(e.to_string()))? {
        0 => Ok(()),
        code => Err(CmdError::Exit(i32::try_from(code).ok().filter(|c| (1..=254).contains(c)).unwrap_or(EXIT_FAILURE))),
    }
}

pub async fn connect(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str) -> CmdResult {
    let service = load(ctx, kind, name)?;
    let (runtime, container) = running(ctx, kind, name).await?;
    let (cmd, env) = kind.connect(&service);
    exec(ctx, &container, &runtime, cmd, env, true).await
}

pub async fn export(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str) -> CmdResult {
    let service = load(ctx, kind, name)?;
    let cmd = kind.export(&service).ok_or_else(|| failed(format!("{}:export is not supported: berth dumps postgres only", kind.name())))?;
    let (runtime, container) = running(ctx, kind, name).await?;
    exec(ctx, &container, &runtime, cmd, Vec::new(), false).await
}

pub async fn import(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str) -> CmdResult {
    let service = load(ctx, kind, name)?;
    let cmd = kind.import(&service).ok_or_else(|| failed(format!("{}:import is not supported: berth restores postgres only", kind.name())))?;
    let _lock = lock(ctx, kind, name).await?;
    let (runtime, container) = running(ctx, kind, name).await?;
    exec(ctx, &container, &runtime, cmd, Vec::new(), false).await?;
    ctx.out.step(format!("Imported into {} service {name}", kind.name())).await;
    Ok(())
}

pub async fn destroy(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, force: bool) -> CmdResult {
    let service = load(ctx, kind, name)?;
    if !service.links.is_empty() {
        let apps: Vec<&str> = service.links.keys().map(String::as_str).collect();
        return Err(failed(format!("{} service {name} is linked to {}: {}:unlink it first", kind.name(), apps.join(", "), kind.name())));
    }
    if !force {
        super::confirm(ctx, &format!("{}:destroy", kind.name()), &format!("{} service {name} and its data", kind.name()), name).await?;
    }
    let _lock = lock(ctx, kind, name).await?;
    if !load(ctx, kind, name)?.links.is_empty() {
        return Err(failed(format!("{} service {name} was linked meanwhile: {}:unlink it first", kind.name(), kind.name())));
    }
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(format!("cannot reach the Docker engine to remove {name}: {e}")))?;
    runtime.remove_service(&runtime.service_name(kind.name(), name), true).await.map_err(|e| failed(e.to_string()))?;
    ctx.engine.store.remove_service(kind.name(), name)?;
    ctx.out.step(format!("Destroyed {} service {name} and its data", kind.name())).await;
    Ok(())
}

pub async fn backup(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, keep: Option<u32>) -> CmdResult {
    let service = load(ctx, kind, name)?;
    let keep = keep.or(service.backup.as_ref().map(|b| b.keep)).unwrap_or(7);
    if !(1..=1000).contains(&keep) {
        return Err(failed("--keep is a number of dumps from 1 to 1000"));
    }
    let started = std::time::Instant::now();
    let file = services::backup(ctx.engine, kind, &service, keep).await.map_err(CmdError::Failed)?;
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    ctx.out.step(format!("Backed up {} service {name} to {} ({size} bytes, {:.1}s)", kind.name(), file.display(), started.elapsed().as_secs_f64())).await;
    Ok(())
}

/// `KIND:backup-schedule NAME SCHEDULE [--keep N]` (`Some`) or `KIND:backup-unschedule` (`None`).
pub async fn backup_schedule(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, schedule: Option<(String, u32)>) -> CmdResult {
    let _lock = lock(ctx, kind, name).await?;
    let mut service = load(ctx, kind, name)?;
    if kind.export(&service).is_none() {
        return Err(failed(format!("{} has no dumps: berth backs up postgres only", kind.name())));
    }
    match schedule {
        Some((schedule, keep)) => {
            crate::app_json::schedule(&schedule)?;
            if !(1..=1000).contains(&keep) {
                return Err(failed("--keep is a number of dumps from 1 to 1000"));
            }
            let next = crate::app_json::CronJob { schedule: schedule.clone(), command: String::new() }.next(&chrono::Utc::now());
            service.backup = Some(crate::store::BackupSchedule { schedule: schedule.trim().to_string(), keep });
            ctx.engine.store.save_service(&service)?;
            let next = next.map(|t| t.format(" (next: %Y-%m-%d %H:%M UTC)").to_string()).unwrap_or_default();
            ctx.out.step(format!("Backups of {} service {name}: {}, keeping {keep}{next}", kind.name(), schedule.trim())).await;
        }
        None => {
            service.backup = None;
            ctx.engine.store.save_service(&service)?;
            ctx.out.step(format!("No more scheduled backups of {} service {name} (the dumps stay)", kind.name())).await;
        }
    }
    Ok(())
}

/// `KIND:backup-set-target`'s arguments (the secret key comes on stdin).
pub struct NewTarget {
    pub url: String,
    pub access_key_id: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
}

/// `KIND:backup-set-target NAME URL …` (`Some`) or `KIND:backup-unset-target NAME`.
pub async fn set_target(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, target: Option<NewTarget>) -> CmdResult {
    let target = match target {
        Some(t) => {
            services::offsite::bucket_and_prefix(&t.url).map_err(failed)?;
            if let Some(endpoint) = &t.endpoint {
                services::offsite::check_endpoint(endpoint).map_err(failed)?;
            }
            let printable = |v: &str| !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| b.is_ascii_graphic());
            if !printable(&t.access_key_id) {
                return Err(failed("Invalid --access-key-id: printable characters without spaces"));
            }
            if let Some(region) = &t.region
                && !(printable(region) && region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
            {
                return Err(failed(format!("Invalid --region {}: letters, digits and dashes (eu-west-1)", crate::validate::quoted(region))));
            }
            let secret = ctx.input.read_line(1024).await.map_err(|_| failed("The input is not a secret access key: one line of at most 1024 bytes"))?;
            let secret = secret.trim().to_string();
            if !printable(&secret) {
                return Err(failed("The input is not a secret access key: give it on stdin, one line (echo KEY | ssh … KIND:backup-set-target …)"));
            }
            Some(crate::store::BackupTarget { url: t.url.trim_end_matches('/').to_string(), endpoint: t.endpoint, region: t.region, access_key_id: t.access_key_id, secret_access_key: secret })
        }
        None => None,
    };
    let _lock = lock(ctx, kind, name).await?;
    let mut service = load(ctx, kind, name)?;
    if kind.export(&service).is_none() {
        return Err(failed(format!("{} has no dumps: berth backs up postgres only", kind.name())));
    }
    let said = match &target {
        Some(t) => format!("Dumps of {} service {name} are uploaded to {} too", kind.name(), t.url),
        None => format!("Dumps of {} service {name} stay on this server (what was uploaded stays)", kind.name()),
    };
    service.offsite = target;
    ctx.engine.store.save_service(&service)?;
    ctx.out.step(said).await;
    Ok(())
}

/// `KIND:backups NAME`: the dumps on this server and at the target, oldest first.
pub async fn backups(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, format: Format) -> CmdResult {
    let service = load(ctx, kind, name)?;
    let mut rows: Vec<serde_json::Value> = services::local_dumps(ctx.engine, kind.name(), name)
        .into_iter()
        .map(|(file, size, modified)| serde_json::json!({"name": file, "where": "local", "size": size, "modified": modified}))
        .collect();
    if let Some(target) = &service.offsite {
        for remote in services::offsite::list(target, name).await.map_err(failed)? {
            rows.push(serde_json::json!({"name": remote.name, "where": target.url, "size": remote.size, "modified": remote.modified}));
        }
    }
    if format == Format::Json {
        ctx.out.line(serde_json::Value::Array(rows).to_string()).await;
        return Ok(());
    }
    ctx.out.header(format!("{} service {name} backups", kind.name())).await;
    for row in &rows {
        ctx.out.line(format!("{}  {}  {} bytes  {}", row["name"].as_str().unwrap_or_default(), row["where"].as_str().unwrap_or_default(), row["size"], row["modified"].as_str().unwrap_or_default())).await;
    }
    Ok(())
}

/// `KIND:restore NAME BACKUP [--to NEW]`: the dump from this server, else from the target,
/// imported into the service, or into NEW made for it (and removed again if the restore
/// fails).
pub async fn restore(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, backup: &str, to: Option<&str>) -> CmdResult {
    let service = load(ctx, kind, name)?;
    if !services::offsite::is_dump_of(backup, name) {
        return Err(failed(format!("Invalid backup {}: a name {}:backups {name} lists ({name}-YYYYmmdd-HHMMSS.dump)", crate::validate::quoted(backup), kind.name())));
    }
    let mut file = services::backup_dir(ctx.engine, kind.name(), name).join(backup);
    // Files this restore makes, removed when it ends.
    let mut made = Vec::new();
    let tmp = ctx.engine.root().join("tmp");
    if !file.exists() {
        let target = service.offsite.as_ref().ok_or_else(|| failed(format!("{backup} is not on this server, and {} service {name} has no backup target", kind.name())))?;
        std::fs::create_dir_all(&tmp).map_err(|e| failed(format!("cannot create {}: {e}", tmp.display())))?;
        let fetched = services::offsite::Removed(tmp.join(format!("restore-{}-{backup}", rand::random::<u32>())));
        ctx.out.step(format!("Downloading {backup} from {}", target.url)).await;
        services::offsite::download(target, backup, &fetched.0).await.map_err(failed)?;
        file = fetched.0.clone();
        made.push(fetched);
    }
    if backup.ends_with(".age") {
        if service.backup_passphrases.is_empty() {
            return Err(failed(format!("{backup} is encrypted, and {} service {name} has no passphrase: {}:backup-set-encryption {name}", kind.name(), kind.name())));
        }
        std::fs::create_dir_all(&tmp).map_err(|e| failed(format!("cannot create {}: {e}", tmp.display())))?;
        let opened = services::offsite::Removed(tmp.join(format!("restore-{}-{name}.dump", rand::random::<u32>())));
        let (from, to, passphrases) = (file.clone(), opened.0.clone(), service.backup_passphrases.clone());
        // The newest passphrase first; an earlier one opens what was uploaded before it.
        let opening = tokio::task::spawn_blocking(move || {
            let mut why = String::new();
            for passphrase in passphrases.iter().rev() {
                let _ = std::fs::remove_file(&to);
                match services::offsite::decrypt(&from, &to, passphrase) {
                    Ok(()) => return Ok(()),
                    Err(e) => why = e,
                }
            }
            Err(why)
        });
        opening.await.map_err(|e| failed(e.to_string()))?.map_err(failed)?;
        file = opened.0.clone();
        made.push(opened);
    }
    let into = to.unwrap_or(name);
    if let Some(new) = to {
        create(ctx, kind, new, Some(&service.version)).await?;
    }
    // The dump is the import's stdin.
    let (feed, input) = crate::output::Input::channel(4);
    ctx.input = input;
    let reader = tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let Ok(mut f) = tokio::fs::File::open(&file).await else { return };
        let mut buf = vec![0u8; 256 * 1024];
        while let Ok(n) = f.read(&mut buf).await {
            if n == 0 || feed.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    });
    let imported = import(ctx, kind, into).await;
    reader.abort();
    drop(made);
    if let (Err(_), Some(new)) = (&imported, to) {
        ctx.out.step(format!("The restore failed: removing {} service {new} again", kind.name())).await;
        let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
        let _ = runtime.remove_service(&runtime.service_name(kind.name(), new), true).await;
        let _ = ctx.engine.store.remove_service(kind.name(), new);
    }
    imported?;
    ctx.out.step(format!("Restored {backup} into {} service {into}", kind.name())).await;
    Ok(())
}

/// `KIND:backup-set-encryption NAME` (passphrase on stdin) or `KIND:backup-unset-encryption`.
pub async fn set_encryption(ctx: &mut Ctx<'_>, kind: &dyn Kind, name: &str, on: bool) -> CmdResult {
    let passphrase = if on {
        let line = ctx.input.read_line(1024).await.map_err(|_| failed("The input is not a passphrase: one line of at most 1024 bytes"))?;
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.chars().count() < 8 {
            return Err(failed("The input is not a passphrase: give one of at least 8 characters on stdin, one line"));
        }
        Some(line)
    } else {
        None
    };
    let _lock = lock(ctx, kind, name).await?;
    let mut service = load(ctx, kind, name)?;
    if kind.export(&service).is_none() {
        return Err(failed(format!("{} has no dumps: berth backs up postgres only", kind.name())));
    }
    let said = if on {
        format!("Dumps of {} service {name} are encrypted (age, with the passphrase) before they are uploaded", kind.name())
    } else {
        format!("Dumps of {} service {name} are uploaded unencrypted from now on", kind.name())
    };
    // Unset: the passphrases stay, for restoring earlier uploads; new ones go unencrypted.
    service.backup_encrypt = passphrase.is_some();
    if let Some(p) = passphrase {
        service.backup_passphrases.retain(|known| *known != p);
        service.backup_passphrases.push(p);
    }
    ctx.engine.store.save_service(&service)?;
    ctx.out.step(said).await;
    Ok(())
}
