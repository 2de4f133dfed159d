//! `run APP CMD…`: a one-off container of the active release, with the app's env.
//! Its exit code is the command's exit code (as SSH's exit status).

use super::{CmdError, CmdResult, Ctx, failed};
use crate::validate;

/// What buildpack-built images start with: berth's launcher.
const LAUNCHER: &str = "/usr/local/bin/berth-launch";

pub async fn run(ctx: &mut Ctx<'_>, app: &str, command: Vec<String>) -> CmdResult {
    validate::app_name(app)?;
    let config = ctx.engine.store.load_app(app)?;
    let releases = ctx.engine.store.load_releases(app)?;
    let active = releases.active().ok_or_else(|| failed(format!("{app} has not been deployed yet: git push it first")))?;
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
    runtime.ensure_network().await.map_err(|e| failed(e.to_string()))?;
    // Buildpack images run commands through the launcher, which sources .profile.d.
    let cmd = if runtime.image_cmd(&active.image).await.first().map(String::as_str) == Some(LAUNCHER) {
        let mut wrapped = vec![LAUNCHER.to_string(), "--run".to_string()];
        wrapped.extend(command);
        wrapped
    } else {
        command
    };
    let env = crate::deploy::container_env(&config.env, config.container_port());
    let code = runtime.run_once(app, &active.image, cmd, env, &ctx.out).await.map_err(|e| failed(e.to_string()))?;
    match code {
        0 => Ok(()),
        // Exit codes are 0-255; 255 is ssh's own, and negative means no code.
        code if (1..=254).contains(&code) => Err(CmdError::Exit(code as i32)),
        _ => Err(CmdError::Exit(1)),
    }
}
