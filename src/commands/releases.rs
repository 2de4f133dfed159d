//! `releases`, `releases:rollback`: an app's history, and going back in it.

use super::Scope;
use super::property::SetArgs;
use super::property::app_only;
use super::{CmdError, CmdResult, Ctx};
use crate::deploy::{self, Source};
use crate::output::{Format, utc};
use crate::store::{NoRollback, Status};
use crate::validate;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("releases", "Manage an app's releases: list them, roll back")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// List an app's releases, newest first
    #[command(name = "releases")]
    List {
        app: AppName,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Serve an earlier release's image and config again as a new release, no build
    #[command(name = "releases:rollback")]
    Rollback {
        app: AppName,
        /// vN (see `releases APP`); default: the newest release below the active one that
        /// served (failed ones are skipped), so a second rollback goes one further back
        version: Option<String>,
    },
    /// Set a release setting: keep N (images kept for rollbacks, default 5)
    #[command(name = "releases:set")]
    Set(SetArgs),
    /// Show the output of the app's last deploy (a push, a rollback, a config change…)
    #[command(name = "releases:output")]
    Output { app: AppName },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::List { app, .. } | Cmd::Rollback { app, .. } | Cmd::Output { app } => Scope::App(app),
            Cmd::Set(args) => args.target.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::List { app, format } => list(ctx, &app, format).await,
            Cmd::Rollback { app, version } => rollback(ctx, &app, version.as_deref()).await,
            Cmd::Set(args) => set(ctx, &args).await,
            Cmd::Output { app } => output(ctx, &app).await,
        }
    }
}

pub async fn output(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    match std::fs::read(crate::deploy::last_output(ctx.engine, app)) {
        Ok(text) => ctx.out.stdout(text).await,
        Err(_) => return Err(super::failed(format!("{app} has not been deployed since berth kept deploy output"))),
    }
    Ok(())
}

pub async fn list(ctx: &mut Ctx<'_>, app: &AppName, format: Format) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let releases = ctx.engine.store.load_releases(app)?;
    if format == Format::Json {
        let list: Vec<_> = releases
            .releases
            .iter()
            .rev()
            .map(|r| {
                serde_json::json!({
                    "version": r.version, "status": status(r.status), "created_at": r.created_at,
                    "git_sha": r.git_sha, "image": r.image, "image_tag": r.image_tag, "cause": r.cause,
                    "deployed_by": (!r.deployed_by.is_empty()).then_some(&r.deployed_by),
                    "compacted": r.compacted,
                })
            })
            .collect();
        ctx.out.line(serde_json::Value::Array(list).to_string()).await;
        return Ok(());
    }
    ctx.out.header(format!("{app} releases")).await;
    let by = releases.releases.iter().map(|r| r.deployed_by.len()).max().unwrap_or(0).max(2);
    if !releases.releases.is_empty() {
        ctx.out.detail(format!("{:<5} {:<16}  {:<7}  {:<12}  {:<10}  {:<by$}  {}", "Rel", "Created (UTC)", "Commit", "Image", "Status", "By", "Cause")).await;
    }
    for r in releases.releases.iter().rev() {
        let sha = short_sha(&r.git_sha);
        let image = r.image.strip_prefix("sha256:").map(|i| &i[..i.len().min(12)]).unwrap_or(&r.image);
        let kept = if r.compacted { format!("  {HISTORY_ONLY}") } else { String::new() };
        // Releases made before berth recorded who made them show `-`.
        let made_by = if r.deployed_by.is_empty() { "-" } else { &r.deployed_by };
        ctx.out.detail(format!("v{:<4} {}  {sha:<7}  {image:<12}  {:<10}  {made_by:<by$}  {}{kept}", r.version, utc(r.created_at), status(r.status), r.cause)).await;
    }
    if releases.releases.iter().any(|r| r.compacted) {
        ctx.out.detail(format!("{HISTORY_ONLY}: image and env no longer kept, so not a rollback target (releases:set {app} keep N keeps more)")).await;
    }
    Ok(())
}

/// How `releases` marks a compacted release.
const HISTORY_ONLY: &str = "[history only]";

pub async fn rollback(ctx: &mut Ctx<'_>, app: &AppName, target: Option<&str>) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    // No version: the release that served before the active one.
    let target = target
        .map(|v| v.trim_start_matches('v').parse::<u32>().map_err(|_| super::failed(format!("Invalid release {}: expected vN, e.g. v3", validate::quoted(v)))))
        .transpose()?;
    // Checked under the deploy lock: no deploy can compact the history meanwhile.
    let releases = ctx.engine.store.load_releases(app)?;
    let version = match releases.rollback_target(target) {
        Ok(release) => release.version,
        Err(NoRollback::NoEarlier) => {
            return Err(super::failed(format!("{app} has no earlier release to roll back to")));
        }
        Err(NoRollback::Missing(v)) => {
            return Err(super::failed(format!("{app} has no release v{v} (see: releases {app})")));
        }
        Err(NoRollback::Failed(v)) => {
            return Err(super::failed(format!("v{v} of {app} never served (it failed): roll back to a release that did")));
        }
        Err(NoRollback::Compacted(v)) => {
            let sha = releases.releases.iter().find(|r| r.version == v).map(|r| short_sha(&r.git_sha)).unwrap_or_default();
            return Err(super::failed(format!(
                "v{v} of {app} is history only: its image and env are no longer kept (releases:set {app} keep N keeps more); push commit {sha} again instead"
            )));
        }
    };
    let cause = format!("rollback to v{version}");
    deploy::deploy_locked(ctx.engine, app, Source::Rollback { version }, &ctx.cause(cause), &ctx.out).await.map_err(CmdError::from)?;
    // ps:rebuild deploys the release rolled back to, not an image named before.
    super::images::set_source_image(ctx, app, None).await
}

/// `releases:set APP keep [N]` (no N: the default, 5).
pub async fn set(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    args.property(&[app_only("keep")])?;
    let app = args.app()?;
    let keep: u32 = match args.value() {
        None => crate::store::DEFAULT_KEEP_RELEASES,
        Some(value) => value
            .parse()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| super::failed(format!("Invalid value {} for keep: a number from 1 to 100", validate::quoted(value))))?,
    };
    ctx.engine
        .update_app(app, |config| {
            config.keep_releases = keep;
            Ok::<_, CmdError>(())
        })
        .await?;
    ctx.out.step(format!("{app} keeps the images of its last {keep} releases")).await;
    Ok(())
}

/// The first 7 characters of a commit id, as git shows it.
fn short_sha(sha: &str) -> &str {
    sha.get(..7).unwrap_or(sha)
}

fn status(status: Status) -> &'static str {
    match status {
        Status::Active => "active",
        Status::Superseded => "superseded",
        Status::Failed => "failed",
        Status::Built => "built, not deployed",
    }
}
