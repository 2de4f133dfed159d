//! `checks:*`: readiness checks of an app's deploys.

use super::{CmdError, CmdResult, Ctx, failed};
use crate::output::{Format, Report};
use crate::validate;

pub enum Mode {
    Enable,
    Disable,
    Skip,
}

pub async fn set_mode(ctx: &mut Ctx<'_>, app: &str, mode: Mode, processes: Option<&str>) -> CmdResult {
    validate::app_name(app)?;
    // dokku takes a list of process types; berth checks web only (others must keep running
    // for 2 s), so a list without web changes nothing.
    if let Some(list) = processes {
        let types: Vec<&str> = list.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        for t in &types {
            validate::process_type(t)?;
        }
        if !types.contains(&crate::process::WEB) {
            ctx.out.step(format!("Readiness checks are for web only: nothing to change for {}", types.join(","))).await;
            return Ok(());
        }
    }
    ctx.engine
        .update_app(app, |config| {
            let checks = &mut config.checks;
            (checks.disabled, checks.skipped) = match mode {
                Mode::Enable => (false, false),
                Mode::Disable => (true, false),
                Mode::Skip => (false, true),
            };
            Ok::<_, CmdError>(())
        })
        .await?;
    let message = match mode {
        Mode::Enable => format!("Readiness checks enabled for {app}"),
        Mode::Disable => format!("Readiness checks disabled for {app}: old containers stop as soon as new ones run"),
        Mode::Skip => format!("Readiness checks skipped for {app}: traffic moves as soon as the container runs"),
    };
    ctx.out.step(message).await;
    Ok(())
}

pub async fn set(ctx: &mut Ctx<'_>, app: &str, key: &str, value: &str) -> CmdResult {
    validate::app_name(app)?;
    let number: u64 = value
        .parse()
        .map_err(|_| failed(format!("Invalid value {} for {key}: expected a whole number", validate::quoted(value))))?;
    let (low, high) = match key {
        "timeout" => (1, 3600),
        "wait-to-retire" => (0, 3600),
        "attempts" => (0, 1000),
        other => {
            return Err(super::invalid_property(other, &["timeout", "wait-to-retire", "attempts"]));
        }
    };
    if !(low..=high).contains(&number) {
        return Err(failed(format!("{key} must be between {low} and {high}")));
    }
    ctx.engine
        .update_app(app, |config| {
            match key {
                "timeout" => config.checks.timeout = number,
                "wait-to-retire" => config.checks.wait_to_retire = number,
                _ => config.checks.attempts = number as u32,
            }
            Ok::<_, CmdError>(())
        })
        .await?;
    ctx.out.step(format!("Set {key} of {app} to {number}")).await;
    Ok(())
}

pub async fn report(ctx: &mut Ctx<'_>, app: Option<&str>, format: Format) -> CmdResult {
    super::apps::report_apps(ctx, app, format, |_, name, config| {
        Report::new(format!("{name} checks information"))
            .row("Checks", crate::checks::describe(config))
            .row("Checks timeout", config.checks.timeout)
            .row("Checks wait to retire", config.checks.wait_to_retire)
            .row("Checks attempts", config.checks.attempts)
    })
    .await
}
