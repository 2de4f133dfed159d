//! `network:*`: networks an admin makes to connect apps that should talk (dokku's names).
//! Every app has a network of its own that only it and its linked services are on; on a
//! network made here, the apps attached to it reach each other by name (`APP`,
//! `APP.PROCESS`, `APP.PROCESS.INDEX`). Admins only, as letting one app reach another is.

use super::property::{SetArgs, app_or_global};
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, EXIT_FAILURE, Scope, Target, failed};
use crate::output::{Format, Report};
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("network", "Manage network settings for an app: networks that connect apps")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Create a network apps can be attached to
    #[command(name = "network:create")]
    Create { network: NetworkName },
    /// Destroy a network no app is attached to
    #[command(name = "network:destroy")]
    Destroy {
        network: NetworkName,
        /// Also when apps are attached: they are detached first
        #[arg(long)]
        force: bool,
    },
    /// Exit 0 if a network exists, 1 if not
    #[command(name = "network:exists")]
    Exists { network: NetworkName },
    /// Show a network: the apps attached to it and the containers on it
    #[command(name = "network:info")]
    Info {
        network: NetworkName,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// List the networks apps can be attached to: those made with network:create, then the engine's others
    #[command(name = "network:list")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only those made with network:create
        #[arg(long)]
        dokku_managed: bool,
    },
    /// Attach an app (or, with --global, every app that sets none) to networks (attach-post-create|attach-post-deploy NETWORK…; none: detach): made with network:create, or the engine's own; or set the suffix of its containers' names on networks (tld TLD; APP or --global)
    #[command(name = "network:set")]
    Set { target: Target, key: Option<String>, values: Vec<String> },
    /// Connect an app's running containers to its networks again (after a network was re-created)
    #[command(name = "network:rebuild")]
    Rebuild { app: AppName },
    /// Show an app's networks
    #[command(name = "network:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Report(args) => args.scope(),
            _ => Scope::Admin,
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Create { network } => create(ctx, &network).await,
            Cmd::Destroy { network, force } => destroy(ctx, &network, force).await,
            Cmd::Exists { network } => exists(ctx, &network).await,
            Cmd::Info { network, format } => info(ctx, &network, format).await,
            Cmd::List { format, dokku_managed } => list(ctx, format, dokku_managed).await,
            Cmd::Set { target, key, values } => set(ctx, target, key, values).await,
            Cmd::Rebuild { app } => rebuild(ctx, &app).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

/// A network's name: a lowercase letter or digit, then up to 63 lowercase letters, digits,
/// dashes or underscores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkName(String);

impl std::str::FromStr for NetworkName {
    type Err = String;
    fn from_str(name: &str) -> Result<NetworkName, String> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok {
            Ok(NetworkName(name.to_string()))
        } else {
            Err(format!(
                "Invalid network name {}: a lowercase letter or digit, then up to 63 lowercase letters, digits, dashes or underscores",
                crate::validate::quoted(name)
            ))
        }
    }
}

impl std::fmt::Display for NetworkName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

async fn runtime(ctx: &Ctx<'_>) -> Result<crate::runtime::Runtime, CmdError> {
    ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))
}

async fn find(ctx: &Ctx<'_>, network: &NetworkName) -> Result<Option<crate::runtime::UserNetwork>, CmdError> {
    let all = runtime(ctx).await?.user_networks().await.map_err(|e| failed(e.to_string()))?;
    Ok(all.into_iter().find(|n| n.name == network.0))
}

/// The apps attached to a network, by their settings.
fn attached_apps(ctx: &Ctx<'_>, network: &str) -> Result<Vec<String>, CmdError> {
    let mut apps = Vec::new();
    for app in ctx.engine.store.list_apps()? {
        if ctx.engine.store.load_app(&app)?.networks.all().iter().any(|n| n == network) {
            apps.push(app);
        }
    }
    Ok(apps)
}

pub async fn create(ctx: &mut Ctx<'_>, network: &NetworkName) -> CmdResult {
    if !runtime(ctx).await?.create_user_network(&network.0).await.map_err(|e| failed(format!("cannot create the network {network}: {e}")))? {
        return Err(failed(format!("Network {network} already exists")));
    }
    ctx.out.step(format!("Created network {network}")).await;
    Ok(())
}

pub async fn destroy(ctx: &mut Ctx<'_>, network: &NetworkName, force: bool) -> CmdResult {
    if find(ctx, network).await?.is_none() {
        if attachable(ctx, &network.0).await? {
            return Err(failed(format!("Network {network} was not made by network:create: berth destroys only its own (docker network rm it)")));
        }
        return Err(failed(format!("Network {network} does not exist")));
    }
    let mut apps = attached_apps(ctx, &network.0)?;
    let global = ctx.engine.store.load_global()?;
    if global.attach_post_create.contains(&network.0) || global.attach_post_deploy.contains(&network.0) {
        apps.push("--global".into());
    }
    if !apps.is_empty() && !force {
        return Err(failed(format!("Network {network} has apps attached ({}): network:set APP attach-post-create without it first, or --force", apps.join(", "))));
    }
    ctx.engine
        .update_global(|g| {
            g.attach_post_create.retain(|n| *n != network.0);
            g.attach_post_deploy.retain(|n| *n != network.0);
            Ok::<_, CmdError>(())
        })
        .await?;
    for app in apps.iter().filter(|a| *a != "--global") {
        ctx.engine
            .update_app(app, |config| {
                config.networks.attach_post_create.retain(|n| *n != network.0);
                config.networks.attach_post_deploy.retain(|n| *n != network.0);
                Ok::<_, CmdError>(())
            })
            .await?;
    }
    let runtime = runtime(ctx).await?;
    runtime.remove_network(&runtime.user_network(&network.0)).await.map_err(|e| failed(format!("cannot destroy the network {network}: {e}")))?;
    ctx.out.step(format!("Destroyed network {network}")).await;
    Ok(())
}

/// Whether apps can be attached to `network` (made with `network:create`, or the engine's).
async fn attachable(ctx: &Ctx<'_>, network: &str) -> Result<bool, CmdError> {
    let all = runtime(ctx).await?.attachable_networks().await.map_err(|e| failed(e.to_string()))?;
    Ok(all.iter().any(|n| n.name == network))
}

pub async fn exists(ctx: &mut Ctx<'_>, network: &NetworkName) -> CmdResult {
    if attachable(ctx, &network.0).await? {
        ctx.out.line("Network exists").await;
        Ok(())
    } else {
        ctx.out.error("Network does not exist").await;
        Err(CmdError::Exit(EXIT_FAILURE))
    }
}

pub async fn info(ctx: &mut Ctx<'_>, network: &NetworkName, format: Format) -> CmdResult {
    let found = find(ctx, network).await?.ok_or_else(|| failed(format!("Network {network} does not exist")))?;
    let runtime = runtime(ctx).await?;
    let report = Report::new(format!("{network} network information"))
        .row("Name", network.0.clone())
        .row("Engine name", runtime.user_network(&network.0))
        .row("Apps", attached_apps(ctx, &network.0)?)
        .row("Containers", found.containers);
    crate::output::print_reports(&ctx.out, &[(network.0.clone(), report)], true, format).await.map_err(failed)
}

/// `network:list [--dokku-managed] [--format json]`: the fields of dokku's JSON (`Name`,
/// `DokkuManaged`: made with `network:create`, `Driver`, `Scope`, `Internal`).
pub async fn list(ctx: &mut Ctx<'_>, format: Format, made_only: bool) -> CmdResult {
    let mut all = runtime(ctx).await?.attachable_networks().await.map_err(|e| failed(e.to_string()))?;
    all.retain(|n| n.made || !made_only);
    if format == Format::Json {
        let listed: Vec<_> = all.iter().map(|n| serde_json::json!({"Name": n.name, "DokkuManaged": n.made, "Driver": n.driver, "Scope": n.scope, "Internal": n.internal})).collect();
        ctx.out.line(serde_json::Value::Array(listed).to_string()).await;
        return Ok(());
    }
    ctx.out.header("Networks").await;
    for network in &all {
        ctx.out.line(&network.name).await;
    }
    Ok(())
}

/// `network:set (APP|--global) PROPERTY [VALUE…]`.
pub async fn set(ctx: &mut Ctx<'_>, target: Target, key: Option<String>, values: Vec<String>) -> CmdResult {
    let args = SetArgs { target, key, value: values.first().cloned() };
    let key = args.property(&[app_or_global("attach-post-create"), app_or_global("attach-post-deploy"), app_or_global("tld")])?;
    if key == "tld" {
        return set_tld(ctx, &args).await;
    }
    let networks = values.iter().map(|v| v.parse::<NetworkName>()).collect::<Result<Vec<_>, _>>().map_err(failed)?;
    if let Target::App(app) = &args.target {
        ctx.engine.store.load_app(app)?;
        super::scheduler::not_on_swarm(ctx, app, "networks of network:set (they are this server's bridges)")?;
    }
    let all = runtime(ctx).await?.attachable_networks().await.map_err(|e| failed(e.to_string()))?;
    if let Some(network) = networks.iter().find(|n| !all.iter().any(|a| a.name == n.0)) {
        return Err(failed(format!("Network {network} does not exist: network:create {network} first")));
    }
    let names: Vec<String> = networks.iter().map(|n| n.0.clone()).collect();
    let create = key == "attach-post-create";
    let Target::App(app) = &args.target else {
        ctx.engine
            .update_global(|g| {
                *(if create { &mut g.attach_post_create } else { &mut g.attach_post_deploy }) = names.clone();
                Ok::<_, CmdError>(())
            })
            .await?;
        let shown = if names.is_empty() { "none".to_string() } else { names.join(", ") };
        ctx.out.step(format!("Setting {key} of apps that set none to {shown}")).await;
        // Every app on this engine that follows it: its running containers too.
        for app in ctx.engine.store.list_apps()? {
            let config = ctx.engine.store.load_app(&app)?;
            let follows = if create { config.networks.attach_post_create.is_empty() } else { config.networks.attach_post_deploy.is_empty() };
            if follows && ctx.engine.scheduler_of(&app) != crate::store::SchedulerName::Swarm {
                rebuild(ctx, &app).await?;
            }
        }
        return Ok(());
    };
    ctx.engine
        .update_app(app, |config| {
            *(if create { &mut config.networks.attach_post_create } else { &mut config.networks.attach_post_deploy }) = names.clone();
            Ok::<_, CmdError>(())
        })
        .await?;
    let shown = if names.is_empty() { "none".to_string() } else { names.join(", ") };
    ctx.out.step(format!("Setting {key} of {app} to {shown}")).await;
    rebuild(ctx, app).await
}

/// `network:set (APP|--global) tld [TLD]`: names its containers also answer to on networks,
/// `APP.web.TLD` beside `APP.web`; containers started from then on take them.
async fn set_tld(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let tld = args.value().map(|v| v.trim_start_matches('.').to_ascii_lowercase());
    if let Some(tld) = &tld {
        let label_ok = |l: &str| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-') && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if tld.len() > 200 || !tld.split('.').all(label_ok) {
            return Err(failed(format!("Invalid tld {}: DNS labels, like internal or svc.local", crate::validate::quoted(args.value().unwrap_or_default()))));
        }
    }
    if let Target::App(app) = &args.target {
        super::scheduler::not_on_swarm(ctx, app, "names on networks (a service's tasks are reached through the app's own routes)")?;
    }
    args.save(ctx, "tld", |c| c.networks.tld = tld.clone(), |g| g.tld = tld.clone()).await
}

/// The app's running containers on exactly the networks its settings name (of those an
/// admin may attach apps to): connected to the new ones, taken off the others.
pub async fn rebuild(ctx: &mut Ctx<'_>, app: &str) -> CmdResult {
    let (config, global) = (ctx.engine.store.load_app(app)?, ctx.engine.store.load_global()?);
    let (wanted, tld) = (config.networks_with(&global), config.tld_with(&global));
    let runtime = runtime(ctx).await?;
    let all = runtime.attachable_networks().await.map_err(|e| failed(e.to_string()))?;
    let containers = runtime.containers(app).await.map_err(|e| failed(e.to_string()))?;
    // Containers berth is retiring are left as they are: they are on their way out, and the
    // engine refuses to change one it is removing.
    for container in containers.iter().filter(|c| c.running && !runtime.stopped_by_berth(&c.id)) {
        for network in &all {
            let engine_name = if network.made { runtime.user_network(&network.name) } else { network.name.clone() };
            let result = if wanted.contains(&network.name) {
                runtime.attach(&container.id, &engine_name, crate::runtime::with_tld(crate::runtime::aliases(app, &container.process, container.index), tld.as_deref())).await
            } else {
                runtime.detach(&container.id, &engine_name).await
            };
            if let Err(e) = result {
                // Gone or stopping meanwhile (a deploy retired it): nothing left to change.
                if runtime.stopped_by_berth(&container.id) || !runtime.live(&container.id).await.is_some_and(|l| l.running) {
                    break;
                }
                return Err(failed(format!("cannot change the networks of {}: {e}", container.name)));
            }
        }
    }
    ctx.out.step(format!("{app}'s {} running containers are on: {}", containers.iter().filter(|c| c.running).count(), if wanted.is_empty() { "its own network only".to_string() } else { wanted.join(", ") })).await;
    Ok(())
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    // A list as dokku reports it: its names, space-separated; unset when empty.
    let joined = |names: &[String]| (!names.is_empty()).then(|| names.join(" "));
    if args.global {
        let report = Report::new("--global network information")
            .namespace("network")
            .global_layer("attach-post-create", joined(&global.attach_post_create), global.attach_post_create.join(" "))
            .global_layer("attach-post-deploy", joined(&global.attach_post_deploy), global.attach_post_deploy.join(" "))
            .global_layer("tld", global.tld.clone(), global.tld.clone().unwrap_or_default());
        return args.print_global(ctx, report).await;
    }
    let runtime = runtime(ctx).await.ok();
    args.print_apps(ctx, |ctx, name, config| {
        // What nginx routes the app's web traffic to, as dokku's web listeners.
        let port = config.container_port();
        let listeners: Vec<String> = ctx.engine.nginx.peers(name).iter().map(|ip| if ip.contains(':') { ip.clone() } else { format!("{ip}:{port}") }).collect();
        Ok(Report::new(format!("{name} network information"))
            .namespace("network")
            .layered("attach-post-create", joined(&config.networks.attach_post_create), joined(&global.attach_post_create), config.attach_post_create_with(&global).join(" "))
            .layered("attach-post-deploy", joined(&config.networks.attach_post_deploy), joined(&global.attach_post_deploy), config.attach_post_deploy_with(&global).join(" "))
            .layered("tld", config.networks.tld.clone(), global.tld.clone(), config.tld_with(&global).unwrap_or_default())
            .row("Network web listeners", listeners.join(" "))
            .row("Network own", runtime.as_ref().map(|r| r.app_network(name)).unwrap_or_default()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::NetworkName;

    #[test]
    fn network_names_take_what_dokku_users_name_them() {
        // dokku's own tests name theirs test-network-<uuid>.
        assert!("test-network-9c9ab55d-f6db-4116-b609-087f86a51d8d".parse::<NetworkName>().is_ok());
        assert!("a".repeat(64).parse::<NetworkName>().is_ok());
        assert!("a".repeat(65).parse::<NetworkName>().is_err());
        assert!("-x".parse::<NetworkName>().is_err());
        assert!("Net".parse::<NetworkName>().is_err());
        assert!("a/b".parse::<NetworkName>().is_err());
    }
}
