//! `repo:*`: an app's git repository on the server and its build cache (dokku's names).

use super::{CmdError, CmdResult, Ctx, Scope, failed};
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("repo", "Manage the app's repo: git gc, the buildpack build cache")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Pack the app's repository on the server (git gc): less disk, faster pushes
    #[command(name = "repo:gc")]
    Gc { app: AppName },
    /// Empty the app's buildpack build cache: the next build downloads dependencies again
    #[command(name = "repo:purge-cache")]
    PurgeCache { app: AppName },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Gc { app } | Cmd::PurgeCache { app } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Gc { app } => gc(ctx, &app).await,
            Cmd::PurgeCache { app } => purge_cache(ctx, &app).await,
        }
    }
}

/// `git gc` in the app's bare repository (safe beside a push: git's own locking).
pub async fn gc(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let repo = ctx.engine.store.repo_dir(app);
    if !repo.join("HEAD").exists() {
        return Err(failed(format!("{app} has no repository yet: nothing was pushed")));
    }
    let before = dir_size(&repo);
    let out = tokio::process::Command::new("git")
        .arg("--git-dir")
        .arg(&repo)
        .args(["gc", "--quiet"])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| failed(format!("cannot run git gc: {e}")))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(failed(format!("git gc of {app} failed: {}", said.lines().last().unwrap_or("no output"))));
    }
    ctx.out.step(format!("Packed {app}'s repository: {} KiB, was {} KiB", dir_size(&repo) / 1024, before / 1024)).await;
    Ok(())
}

/// Removes what buildpack builds keep between builds, under the deploy lock (no build of
/// the app runs meanwhile).
pub async fn purge_cache(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    let cache = ctx.engine.store.app_dir(app).join("cache");
    let freed = dir_size(&cache);
    if cache.exists() {
        std::fs::remove_dir_all(&cache).map_err(|e| failed(format!("cannot empty {}: {e}", cache.display())))?;
    }
    ctx.out.step(format!("Purged {app}'s build cache ({} KiB)", freed / 1024)).await;
    Ok(())
}

/// Bytes of the regular files under `dir` (symlinks not followed; 0 when absent).
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
