//! `ps:*`: restart, rebuild and report an app's processes.

use super::{CmdError, CmdResult, Ctx, failed};
use crate::deploy::{self, Source};
use crate::output::{Format, Report, print_reports};
use crate::{git, validate};

/// A new release of the active image with the current config, through the usual swap.
pub async fn restart(ctx: &mut Ctx<'_>, app: &str, cause: &str) -> CmdResult {
    validate::app_name(app)?;
    ctx.engine.store.load_app(app)?;
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    deploy::deploy_locked(ctx.engine, app, Source::Reuse, cause, &ctx.out).await.map_err(CmdError::Failed)?;
    Ok(())
}

/// Builds the deploy branch's head again and deploys it.
pub async fn rebuild(ctx: &mut Ctx<'_>, app: &str) -> CmdResult {
    validate::app_name(app)?;
    let config = ctx.engine.store.load_app(app)?;
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    let repo_dir = ctx.engine.store.repo_dir(app);
    let branches: Vec<String> = match &config.deploy_branch {
        Some(b) => vec![b.clone()],
        None => vec!["main".into(), "master".into()],
    };
    let (tar, sha) = tokio::task::spawn_blocking(move || -> Result<(Vec<u8>, String), String> {
        for branch in branches {
            if let Some(oid) = git::branch_head(&repo_dir, &branch).map_err(|e| e.to_string())? {
                let repo = git2::Repository::open_bare(&repo_dir).map_err(|e| e.to_string())?;
                return Ok((git::tar_commit(&repo, oid).map_err(|e| e.to_string())?, oid.to_string()));
            }
        }
        Err("nothing has been pushed to the deploy branch yet".into())
    })
    .await
    .map_err(|e| failed(e.to_string()))?
    .map_err(|e| failed(format!("Cannot rebuild {app}: {e}")))?;
    deploy::deploy_locked(ctx.engine, app, Source::Build { tar, git_sha: sha }, "ps:rebuild", &ctx.out)
        .await
        .map_err(CmdError::Failed)?;
    Ok(())
}

pub async fn report(ctx: &mut Ctx<'_>, app: Option<&str>, format: Format) -> CmdResult {
    let names = super::apps::app_names(ctx, app)?;
    let runtime = ctx.engine.runtime().await.ok();
    let mut reports = Vec::new();
    for name in names {
        ctx.engine.store.load_app(&name)?;
        let active = ctx.engine.store.load_releases(&name)?.active().map(|r| format!("v{}", r.version)).unwrap_or_default();
        let containers = match &runtime {
            Some(rt) => rt.containers(&name).await.unwrap_or_default(),
            None => Vec::new(),
        };
        let list: Vec<String> = containers
            .iter()
            .map(|c| format!("{}.v{}:{}", c.process, c.release, if c.running { "running" } else { "stopped" }))
            .collect();
        let report = Report::new(format!("{name} ps information"))
            .row("Deployed", !active.is_empty())
            .row("Release", active)
            .row("Running", containers.iter().filter(|c| c.running).count())
            .row("Containers", list);
        reports.push((name, report));
    }
    print_reports(&ctx.out, &reports, app.is_some(), format).await;
    Ok(())
}
