//! Database services (postgres, redis): one module per kind behind [`Kind`], the rest here.
//!
//! A service is one container on berth's network, named `berth-KIND-NAME-<root hash>` (apps
//! reach it by that name; it is never published on the host), with its data in the named
//! volume of the same name, which only `KIND:destroy` removes. Its state (image, version,
//! password, linked apps) is `<root>/services/KIND/NAME.toml`, 0600. Images: the official one
//! where the engine has it or a registry answers, else one built once from the stack image
//! with Debian's packages. The engine restarts service containers (`unless-stopped`); the
//! daemon makes every service run again at start.

pub mod offsite;
pub mod postgres;
pub mod redis;

use std::time::{Duration, Instant};

use crate::engine::Engine;
use crate::output::{Input, Output};
use crate::runtime::{Client, OneShot, Runtime, ServiceSpec};
use crate::store::Service;

/// What differs between kinds of service.
pub trait Kind: Send + Sync {
    /// The namespace: `postgres`.
    fn name(&self) -> &'static str;
    /// The namespace's help line.
    fn about(&self) -> &'static str;
    /// The default alias of a link: its URL goes in `ALIAS_URL`.
    fn env_var(&self) -> &'static str;
    /// Versions berth can build from Debian's packages when no registry answers.
    fn built_versions(&self) -> &'static [&'static str];
    fn official_image(&self, version: &str) -> String;
    /// Run in a container of the stack image to make berth's image.
    fn install_script(&self) -> String;
    /// The command of berth's image.
    fn entrypoint(&self) -> &'static str;
    /// The command of the official image, if its default does not take berth's environment.
    fn official_cmd(&self) -> Option<Vec<String>> {
        None
    }
    /// Where the volume is mounted.
    fn data_dir(&self) -> &'static str;
    fn port(&self) -> u16;
    fn container_env(&self, service: &Service) -> Vec<String>;
    fn url(&self, service: &Service, host: &str, password: &str) -> String;
    /// Exits 0 once the service accepts clients.
    fn ready(&self, service: &Service) -> Vec<String>;
    /// The interactive client, and the environment it needs.
    fn connect(&self, service: &Service) -> (Vec<String>, Vec<String>);
    /// A dump on stdout, if the kind has one.
    fn export(&self, _service: &Service) -> Option<Vec<String>> {
        None
    }
    /// A dump from stdin restored, if the kind has one.
    fn import(&self, _service: &Service) -> Option<Vec<String>> {
        None
    }
}

/// Every kind of service berth has.
pub const KINDS: &[&dyn Kind] = &[&postgres::Postgres, &redis::Redis];

/// How long a new or restarted service has to accept clients.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long berth tries a registry for an official image.
const PULL_LIMIT: Duration = Duration::from_secs(15);

/// A service name: a lowercase letter or digit, then lowercase letters, digits and dashes,
/// at most 40, not ending in a dash (it becomes a host name, a volume and a database name).
pub fn valid_name(name: &str) -> Result<&str, String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(name)
    } else {
        Err(format!(
            "Invalid service name {}: use a lowercase letter or digit, then up to 39 lowercase letters, digits or dashes, not ending in a dash",
            crate::validate::quoted(name)
        ))
    }
}

/// A new password: 32 characters of [A-Za-z0-9] (safe in a URL without escaping).
pub fn new_password() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut password = String::with_capacity(32);
    while password.len() < 32 {
        // 248 = 4 × 62: bytes above it are skipped, so every character is equally likely.
        let byte = rand::random::<u8>();
        if byte < 248 {
            password.push(CHARS[usize::from(byte) % CHARS.len()] as char);
        }
    }
    password
}

/// berth's own image of a kind and version, built from the stack image.
pub fn built_image(kind: &dyn Kind, version: &str) -> String {
    format!("berth/{}:{version}", kind.name())
}

/// An image a service may run: its name, and what berth verified that name to be (the ID
/// of an image berth built, or an official image's registry digest).
#[derive(Debug, Clone, PartialEq)]
pub struct Pinned {
    pub name: String,
    pub id: String,
}

/// The image a new service of this version runs: the official one if the engine has it
/// from a registry (or a registry gives it), else berth's (built now from the stack image
/// unless the engine has the one berth built). A name anything else put on the engine (a
/// `docker load`, a build tagged so) is never run.
pub async fn image_for(kind: &dyn Kind, version: &str, runtime: &Runtime, root: &std::path::Path, out: &Output) -> Result<Pinned, String> {
    let official = kind.official_image(version);
    if let Some(id) = registry_digest(runtime, &official).await {
        return Ok(Pinned { name: official, id });
    }
    let built = built_image(kind, version);
    if let Some(id) = built_by_berth(runtime, &built).await {
        return Ok(Pinned { name: built, id });
    }
    let (repo, tag) = official.split_once(':').unwrap_or((&official, "latest"));
    let why = match runtime.pull(repo, tag, PULL_LIMIT).await {
        Ok(()) => match registry_digest(runtime, &official).await {
            Some(id) => return Ok(Pinned { name: official, id }),
            None => "the pulled image has no registry digest".to_string(),
        },
        Err(why) => why,
    };
    if !kind.built_versions().contains(&version) {
        return Err(format!(
            "{} {version} needs the official image {official}, which no registry gave ({why}); without one berth builds {}",
            kind.name(),
            kind.built_versions().join(", ")
        ));
    }
    out.step(format!("No registry gave {official} ({why}): building {built} from Debian's packages, once")).await;
    let id = build_image(kind, version, runtime, root, out).await?;
    Ok(Pinned { name: built, id })
}

/// The digest an image of this name was pulled by (`postgres@sha256:…`), if the engine
/// has it from its registry: an image loaded or built under the name has none.
async fn registry_digest(runtime: &Runtime, image: &str) -> Option<String> {
    let repo = image.split_once(':').map_or(image, |(repo, _)| repo);
    let digests = runtime.repo_digests(image).await;
    digests.into_iter().find(|d| d.split_once('@').is_some_and(|(r, _)| same_repository(r, repo)))
}

/// `postgres`, `library/postgres` and `docker.io/library/postgres` are one repository.
fn same_repository(a: &str, b: &str) -> bool {
    let normal = |r: &str| {
        let r = r.strip_prefix("docker.io/").unwrap_or(r);
        if r.contains('/') { r.to_string() } else { format!("library/{r}") }
    };
    normal(a) == normal(b)
}

/// Where berth notes the ID of each service image it built: machine-wide, since every
/// root on the machine shares the engine (and the build takes minutes).
const BUILT_RECORD: &str = "/var/lib/berth-service-images.toml";

/// The ID of the image of this name, if it is the one berth built.
async fn built_by_berth(runtime: &Runtime, image: &str) -> Option<String> {
    let (id, _, _) = runtime.image_info(image).await?;
    let recorded = read_built(std::path::Path::new(BUILT_RECORD)).remove(image)?;
    (recorded == id).then_some(id)
}

fn read_built(record: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(record).ok().and_then(|text| toml::from_str(&text).ok()).unwrap_or_default()
}

/// Notes that berth built `image` as `id` (another root's entries kept).
fn record_built(record: &std::path::Path, image: &str, id: &str) -> Result<(), String> {
    let mut built = read_built(record);
    built.insert(image.to_string(), id.to_string());
    let text = toml::to_string(&built).map_err(|e| e.to_string())?;
    let text = format!("# service images berth built (name = ID); written by berth\n{text}");
    crate::store::write_atomic(record, text.as_bytes(), 0o644).map_err(|e| format!("cannot write {}: {e}", record.display()))
}

/// Builds berth's image of a kind: Debian's packages installed in a container of the stack
/// image (built first if missing), committed with the kind's entrypoint. Returns its ID,
/// noted as berth's.
pub async fn build_image(kind: &dyn Kind, version: &str, runtime: &Runtime, root: &std::path::Path, out: &Output) -> Result<String, String> {
    if runtime.image_info(crate::buildpack::STACK_IMAGE).await.is_none() {
        crate::stack::build(runtime, root, out).await?;
    }
    let started = Instant::now();
    let image = built_image(kind, version);
    let (repo, tag) = image.split_once(':').expect("built images have a tag");
    let job = OneShot {
        app: None,
        image: crate::buildpack::STACK_IMAGE,
        cmd: vec!["bash".into(), "-c".into(), kind.install_script()],
        env: Vec::new(),
        binds: Vec::new(),
        upload: None,
        commit_as: (repo, tag),
        commit_cmd: Some(vec![kind.entrypoint().into()]),
        commit_workdir: Some("/"),
        collect: None,
        time_limit: Some(Duration::from_secs(1800)),
        limits: Default::default(),
    };
    let quiet = Output::discard();
    let committed = runtime.run_and_commit(job, &quiet).await.map_err(|e| format!("cannot build {image}: {e}"))?;
    let id = committed.image;
    record_built(std::path::Path::new(BUILT_RECORD), &image, &id)?;
    out.step(format!("Built {image} in {:.0}s", started.elapsed().as_secs_f64())).await;
    Ok(id)
}

/// The service's container as it should run.
pub fn spec<'a>(kind: &dyn Kind, service: &'a Service, name: &'a str) -> ServiceSpec<'a> {
    let official = service.image == kind.official_image(&service.version);
    ServiceSpec {
        label: format!("{}/{}", service.kind, service.name),
        name,
        image: service.image_id.as_deref().unwrap_or(&service.image),
        env: kind.container_env(service),
        cmd: if official { kind.official_cmd() } else { None },
        data_dir: kind.data_dir(),
    }
}

/// Makes the service run, on the networks of the apps linked to it, and waits until it
/// accepts clients.
pub async fn start(kind: &dyn Kind, service: &Service, runtime: &Runtime) -> Result<(), String> {
    let name = runtime.service_name(&service.kind, &service.name);
    let cannot = |e: crate::runtime::RuntimeError| format!("cannot start {} {}: {e}", service.kind, service.name);
    runtime.ensure_service(&spec(kind, service, &name)).await.map_err(cannot)?;
    for app in service.links.keys() {
        let network = runtime.ensure_app_network(app).await.map_err(cannot)?;
        runtime.attach(&name, &network, Vec::new()).await.map_err(cannot)?;
    }
    wait_ready(kind, service, runtime, &name).await
}

/// Polls the kind's readiness command in the container until it succeeds.
pub async fn wait_ready(kind: &dyn Kind, service: &Service, runtime: &Runtime, container: &str) -> Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let out = Output::discard();
        let mut input = Input::channel(1).1;
        let client = Client { out: &out, input: &mut input, terminal: None };
        if let Ok(0) = runtime.exec(container, kind.ready(service), client).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail = runtime.tail(container, 10).await.join(" / ");
            return Err(format!("{} {} did not accept clients within {}s: {tail}", service.kind, service.name, READY_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// At daemon start: every service runs again (a container removed behind berth's back is
/// created again on its volume).
pub async fn restore_all(engine: &Engine) {
    let Ok(runtime) = engine.runtime().await else { return };
    for kind in KINDS {
        for name in engine.store.list_services(kind.name()).unwrap_or_default() {
            match engine.store.load_service(kind.name(), &name) {
                Ok(Some(service)) => {
                    if let Err(e) = start(*kind, &service, &runtime).await {
                        tracing::error!("{e}");
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::error!("{e}"),
            }
        }
    }
}

/// Where a service's dumps go (0700).
pub fn backup_dir(engine: &Engine, kind: &str, name: &str) -> std::path::PathBuf {
    engine.root().join("backups").join(kind).join(name)
}

/// Dumps the service into a new file under its backup directory (0600), then removes the
/// oldest dumps beyond `keep`. A failed dump leaves no file. Returns the file.
pub async fn backup(engine: &Engine, kind: &dyn Kind, service: &Service, keep: u32) -> Result<std::path::PathBuf, String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let cmd = kind.export(service).ok_or_else(|| format!("{} has no dumps: berth backs up postgres only", kind.name()))?;
    let dir = backup_dir(engine, kind.name(), &service.name);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file = dir.join(format!("{}-{}.dump", service.name, chrono::Utc::now().format("%Y%m%d-%H%M%S")));
    let mut writer = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&file).map_err(|e| format!("cannot create {}: {e}", file.display()))?;
    let runtime = engine.runtime().await.map_err(|e| e.to_string())?;
    let container = runtime.service_name(kind.name(), &service.name);
    let (out, mut chunks) = Output::channel(64);
    let write = tokio::task::spawn_blocking(move || {
        let mut errors = String::new();
        let mut written = Ok(());
        while let Some(chunk) = chunks.blocking_recv() {
            match chunk {
                crate::output::Chunk::Stdout(bytes) => {
                    if written.is_ok() {
                        written = writer.write_all(&bytes);
                    }
                }
                crate::output::Chunk::Stderr(bytes) => errors.push_str(&String::from_utf8_lossy(&bytes)),
            }
        }
        written.and_then(|()| writer.sync_all()).map(|()| errors)
    });
    let mut input = Input::channel(1).1;
    let code = runtime.exec(&container, cmd, Client { out: &out, input: &mut input, terminal: None }).await;
    drop(out);
    let written = write.await.map_err(|e| e.to_string())?;
    let failure = match (code, written) {
        (Ok(0), Ok(_)) => None,
        (Ok(code), Ok(errors)) => Some(format!("the dump exited with {code}: {}", errors.trim())),
        (Err(e), _) => Some(e.to_string()),
        (_, Err(e)) => Some(format!("cannot write {}: {e}", file.display())),
    };
    if let Some(why) = failure {
        let _ = std::fs::remove_file(&file);
        return Err(format!("backup of {} {} failed: {why}", kind.name(), service.name));
    }
    let mut dumps: Vec<std::path::PathBuf> = std::fs::read_dir(&dir).map_err(|e| e.to_string())?.filter_map(|e| Some(e.ok()?.path())).filter(|p| p.extension().is_some_and(|x| x == "dump")).collect();
    dumps.sort();
    let excess = dumps.len().saturating_sub(keep.max(1) as usize);
    for old in &dumps[..excess] {
        let _ = std::fs::remove_file(old);
    }
    // Off the machine too: a failed upload fails the backup, and the local dump stays.
    if let Some(target) = &service.offsite {
        offsite::upload(target, &file, service.backup_encrypt.then(|| service.backup_passphrases.last()).flatten().map(String::as_str)).await.map_err(|e| format!("backup of {} {}: the dump is kept at {}, but {e}", kind.name(), service.name, file.display()))?;
        offsite::prune(target, &service.name, keep).await.map_err(|e| format!("backup of {} {}: uploaded, but {e}", kind.name(), service.name))?;
    }
    Ok(file)
}

/// The service's dumps on this server: (file name, size, RFC 3339 time), oldest first.
pub fn local_dumps(engine: &Engine, kind: &str, name: &str) -> Vec<(String, u64, String)> {
    let mut dumps: Vec<(String, u64, String)> = std::fs::read_dir(backup_dir(engine, kind, name))
        .map(|d| {
            d.filter_map(|e| {
                let e = e.ok()?;
                let file = e.file_name().into_string().ok()?;
                let meta = e.metadata().ok()?;
                offsite::is_dump_of(&file, name).then(|| (file, meta.len(), meta.modified().map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339()).unwrap_or_default()))
            })
            .collect()
        })
        .unwrap_or_default();
    dumps.sort();
    dumps
}

/// The scheduler's tick for services: each service whose backup schedule is due at `at`
/// is dumped in the background (one dump per service at a time).
pub async fn backups_due(engine: &std::sync::Arc<Engine>, at: &chrono::DateTime<chrono::Utc>) {
    for kind in KINDS {
        for name in engine.store.list_services(kind.name()).unwrap_or_default() {
            let Ok(Some(service)) = engine.store.load_service(kind.name(), &name) else { continue };
            let Some(schedule) = service.backup.clone() else { continue };
            let job = crate::app_json::CronJob { schedule: schedule.schedule.clone(), command: String::new() };
            if !job.due(at) {
                continue;
            }
            let key = format!("@{}/{name}", kind.name());
            if !engine.jobs.start(&key) {
                tracing::warn!("backup of {} {name} skipped: the one before is still running", kind.name());
                continue;
            }
            let engine = engine.clone();
            tokio::spawn(async move {
                match backup(&engine, *kind, &service, schedule.keep).await {
                    Ok(file) => tracing::info!("backed up {} {}: {}", kind.name(), service.name, file.display()),
                    Err(e) => tracing::error!("{e}"),
                }
                engine.jobs.end(&key);
            });
        }
    }
}

/// An app renamed (`Some(new)`) or destroyed (`None`): the services' links follow. A
/// destroyed app's config goes with it; the service stays.
pub fn relink_app(engine: &Engine, app: &str, new: Option<&str>) -> Result<(), crate::store::StoreError> {
    for kind in KINDS {
        for name in engine.store.list_services(kind.name())? {
            let Some(mut service) = engine.store.load_service(kind.name(), &name)? else { continue };
            if let Some(var) = service.links.remove(app) {
                if let Some(new) = new {
                    service.links.insert(new.to_string(), var);
                }
                engine.store.save_service(&service)?;
            }
        }
    }
    Ok(())
}

/// The containers of the services `app` reaches: those linked to it, and for a preview
/// whose parent gives previews its services, those linked to the parent.
pub fn reached_by(engine: &Engine, app: &str, config: &crate::store::AppConfig) -> Vec<String> {
    let parent = config.preview_of.as_ref().map(|of| of.parent.as_str());
    let parent_shares = parent.and_then(|p| engine.store.load_app(p).ok()).is_some_and(|p| p.previews.link_services);
    let root = engine.root().display().to_string();
    let mut reached = Vec::new();
    for kind in KINDS {
        for name in engine.store.list_services(kind.name()).unwrap_or_default() {
            let Ok(Some(service)) = engine.store.load_service(kind.name(), &name) else { continue };
            if service.links.contains_key(app) || (parent_shares && parent.is_some_and(|p| service.links.contains_key(p))) {
                reached.push(crate::runtime::service_name(&root, kind.name(), &name));
            }
        }
    }
    reached
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_can_be_host_volume_and_database_names() {
        for ok in ["mydb", "db-1", "1db"] {
            assert!(valid_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "My", "db_1", "db.1", "-db", "db-", "a/b", &"a".repeat(41)] {
            assert!(valid_name(bad).is_err(), "{bad}");
        }
        let password = new_password();
        assert_eq!(password.len(), 32);
        assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn urls_carry_the_password_host_and_database() {
        let service = Service {
            kind: "postgres".into(),
            name: "my-db".into(),
            image: "berth/postgres:15".into(),
            image_id: Some("sha256:0123".into()),
            version: "15".into(),
            password: "pw".into(),
            created_at: 0,
            links: Default::default(),
            backup: None,
            offsite: None,
            backup_passphrases: Vec::new(),
            backup_encrypt: false,
        };
        assert_eq!(postgres::Postgres.url(&service, "h", "pw"), "postgres://postgres:pw@h:5432/my_db");
        assert_eq!(redis::Redis.url(&service, "h", "pw"), "redis://:pw@h:6379");
        // berth's image runs its own entrypoint; the official redis needs berth's command.
        assert!(spec(&postgres::Postgres, &service, "c").cmd.is_none());
        let official = Service { image: "redis:7".into(), version: "7".into(), ..service };
        assert!(spec(&redis::Redis, &official, "c").cmd.is_some());
    }

    #[test]
    fn only_the_official_repository_digest_pins_an_official_image() {
        assert!(same_repository("postgres", "postgres"));
        assert!(same_repository("docker.io/library/postgres", "postgres"));
        assert!(same_repository("library/redis", "redis"));
        assert!(!same_repository("mallory/postgres", "postgres"));
        assert!(!same_repository("berth/postgres", "postgres"));
        assert!(!same_repository("registry.example/postgres", "postgres"));
    }

    #[test]
    fn the_record_of_built_images_keeps_every_roots_entries() {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("images.toml");
        assert!(read_built(&record).is_empty(), "no record: nothing is berth's");
        record_built(&record, "berth/postgres:15", "sha256:aa").unwrap();
        record_built(&record, "berth/redis:7", "sha256:bb").unwrap();
        record_built(&record, "berth/postgres:15", "sha256:cc").unwrap();
        let built = read_built(&record);
        assert_eq!(built.get("berth/postgres:15").map(String::as_str), Some("sha256:cc"));
        assert_eq!(built.get("berth/redis:7").map(String::as_str), Some("sha256:bb"));
        std::fs::write(&record, "not = [toml").unwrap();
        assert!(read_built(&record).is_empty(), "a damaged record trusts nothing");
    }
}
