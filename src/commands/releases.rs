//! `releases`, `releases:rollback`: an app's history, and going back in it.

use super::{CmdError, CmdResult, Ctx};
use crate::deploy::{self, Source};
use crate::output::{Format, utc};
use crate::store::Status;
use crate::validate;

pub async fn list(ctx: &mut Ctx<'_>, app: &str, format: Format) -> CmdResult {
    validate::app_name(app)?;
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
                })
            })
            .collect();
        ctx.out.line(serde_json::Value::Array(list).to_string()).await;
        return Ok(());
    }
    ctx.out.header(format!("{app} releases")).await;
    for r in releases.releases.iter().rev() {
        let sha = &r.git_sha[..r.git_sha.len().min(7)];
        let image = r.image.strip_prefix("sha256:").map(|i| &i[..i.len().min(12)]).unwrap_or(&r.image);
        ctx.out
            .detail(format!("v{:<4} {}  {sha:<7}  {image:<12}  {:<10}  {}", r.version, utc(r.created_at), status(r.status), r.cause))
            .await;
    }
    Ok(())
}

pub async fn rollback(ctx: &mut Ctx<'_>, app: &str, target: Option<&str>) -> CmdResult {
    validate::app_name(app)?;
    ctx.engine.store.load_app(app)?;
    let _deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    let releases = ctx.engine.store.load_releases(app)?;
    let version = match target {
        Some(v) => v
            .trim_start_matches('v')
            .parse::<u32>()
            .map_err(|_| super::failed(format!("Invalid release {}: expected vN, e.g. v3", validate::quoted(v))))?,
        // The release that served before the active one.
        None => {
            let active = releases.active().map(|r| r.version).unwrap_or(0);
            releases
                .releases
                .iter()
                .rev()
                .find(|r| r.status == Status::Superseded && r.version < active)
                .map(|r| r.version)
                .ok_or_else(|| super::failed(format!("{app} has no earlier release to roll back to")))?
        }
    };
    let cause = format!("rollback to v{version}");
    deploy::deploy_locked(ctx.engine, app, Source::Rollback { version }, &cause, &ctx.out).await.map_err(CmdError::Failed)?;
    Ok(())
}

pub async fn set(ctx: &mut Ctx<'_>, app: &str, key: &str, value: &str) -> CmdResult {
    validate::app_name(app)?;
    if key != "keep" {
        return Err(super::failed(format!("Unknown releases setting {}: the settings are: keep", validate::quoted(key))));
    }
    let keep: u32 = value
        .parse()
        .ok()
        .filter(|n| (1..=100).contains(n))
        .ok_or_else(|| super::failed(format!("Invalid value {} for keep: a number from 1 to 100", validate::quoted(value))))?;
    ctx.engine
        .update_app(app, |config| {
            config.keep_releases = keep;
            Ok::<_, CmdError>(())
        })
        .await?;
    ctx.out.step(format!("{app} keeps the images of its last {keep} releases")).await;
    Ok(())
}

fn status(status: Status) -> &'static str {
    match status {
        Status::Active => "active",
        Status::Superseded => "superseded",
        Status::Failed => "failed",
    }
}

