//! `plugin:*`: plugins users add (see `crate::plugins` and plugins/README.md). Admins only:
//! a plugin runs as root on the server.

use super::{CmdResult, Ctx, Scope, failed};
use crate::output::Format;
use crate::plugins;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("plugin", "Manage installed plugins")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List installed plugins
    #[command(name = "plugin:list")]
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Install a plugin: a directory on the server (copied) or an https git URL (cloned)
    #[command(name = "plugin:install")]
    Install { source: String },
    /// Turn a plugin back on
    #[command(name = "plugin:enable")]
    Enable { name: String },
    /// Turn a plugin off (its triggers and commands stop; it stays installed)
    #[command(name = "plugin:disable")]
    Disable { name: String },
    /// Remove a plugin and its data
    #[command(name = "plugin:uninstall")]
    Uninstall { name: String },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        Scope::Admin
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::List { format } => list(ctx, format).await,
            Cmd::Install { source } => install(ctx, &source).await,
            Cmd::Enable { name } => set_enabled(ctx, &name, true).await,
            Cmd::Disable { name } => set_enabled(ctx, &name, false).await,
            Cmd::Uninstall { name } => uninstall(ctx, &name).await,
        }
    }
}

async fn list(ctx: &mut Ctx<'_>, format: Format) -> CmdResult {
    let all = plugins::list(ctx.engine);
    if format == Format::Json {
        let list: Vec<_> = all
            .iter()
            .map(|p| serde_json::json!({"name": p.manifest.name, "version": p.manifest.version, "enabled": p.enabled, "description": p.manifest.description}))
            .collect();
        ctx.out.line(serde_json::Value::Array(list).to_string()).await;
        return Ok(());
    }
    if all.is_empty() {
        ctx.out.error("No plugins are installed (plugin:install PATH|HTTPS_GIT_URL)").await;
        return Ok(());
    }
    ctx.out.header("Installed plugins").await;
    for p in all {
        let state = if p.enabled { "enabled" } else { "disabled" };
        ctx.out.detail(format!("{:<20}{:<10}{:<10}{}", p.manifest.name, p.manifest.version, state, p.manifest.description)).await;
    }
    Ok(())
}

async fn install(ctx: &mut Ctx<'_>, source: &str) -> CmdResult {
    let namespaces: Vec<&str> = super::namespaces().into_iter().map(|(n, _)| n).collect();
    let (manifest, upgraded) = plugins::install(ctx.engine, source, &namespaces, &ctx.out).await.map_err(failed)?;
    let how = if upgraded { "Upgraded" } else { "Installed" };
    ctx.out.step(format!("{how} plugin {} {}: {}", manifest.name, manifest.version, manifest.description)).await;
    Ok(())
}

fn installed(ctx: &Ctx<'_>, name: &str) -> Result<plugins::Plugin, super::CmdError> {
    plugins::valid_name(name).map_err(failed)?;
    plugins::find(ctx.engine, name).ok_or_else(|| failed(format!("Plugin {name} is not installed (see plugin:list)")))
}

async fn set_enabled(ctx: &mut Ctx<'_>, name: &str, enabled: bool) -> CmdResult {
    let plugin = installed(ctx, name)?;
    let marker = plugin.dir.join("disabled");
    let changed = if enabled { std::fs::remove_file(&marker) } else { std::fs::write(&marker, b"") };
    match changed {
        Ok(()) => {}
        Err(e) if enabled && e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed(format!("cannot change {}: {e}", marker.display()))),
    }
    ctx.out.step(format!("Plugin {name} {}", if enabled { "enabled" } else { "disabled" })).await;
    Ok(())
}

async fn uninstall(ctx: &mut Ctx<'_>, name: &str) -> CmdResult {
    plugins::valid_name(name).map_err(failed)?;
    // Even one whose plugin.toml no longer reads.
    let dir = plugins::installed_dir(ctx.engine, name).ok_or_else(|| failed(format!("Plugin {name} is not installed (see plugin:list)")))?;
    std::fs::remove_dir_all(&dir).map_err(|e| failed(format!("cannot remove {}: {e}", dir.display())))?;
    ctx.out.step(format!("Uninstalled plugin {name} and its data")).await;
    Ok(())
}
