//! `config:*`: the app's environment variables.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::{CmdError, CmdResult, Ctx, failed};
use crate::output::Format;
use crate::validate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExportFormat {
    /// `export KEY='value'` lines, for `eval` in a shell
    #[default]
    Exports,
    /// `KEY=value` lines, for docker --env-file (values on one line)
    Envfile,
    /// `KEY='value' …` on one line
    Shell,
    /// A JSON object
    Json,
}

/// Each changed key with its value before the change (None: it was not set).
type Undo = Vec<(String, Option<String>)>;

pub async fn set(ctx: &mut Ctx<'_>, app: &str, pairs: &[String], encoded: bool, no_restart: bool) -> CmdResult {
    validate::app_name(app)?;
    // Every pair is checked before anything changes: one bad pair refuses the whole command.
    let mut parsed = Vec::with_capacity(pairs.len());
    for pair in join_continuations(pairs) {
        let (key, value) = validate::env_pair(&pair)?;
        let value = if encoded { decode(&key, &value)? } else { value };
        parsed.push((key, value));
    }
    let undo = ctx
        .engine
        .update_app(app, |config| {
            let undo: Undo = parsed.iter().map(|(k, _)| (k.clone(), config.env.get(k).cloned())).collect();
            for (key, value) in &parsed {
                config.env.insert(key.clone(), value.clone());
            }
            validate::env_total(&config.env)?;
            Ok::<_, CmdError>(undo)
        })
        .await?;
    ctx.out.step("Setting config vars").await;
    let shown: BTreeMap<String, String> = parsed.into_iter().collect();
    print_aligned(ctx, &shown).await;
    apply(ctx, app, no_restart, undo).await
}

pub async fn unset(ctx: &mut Ctx<'_>, app: &str, keys: &[String], no_restart: bool) -> CmdResult {
    validate::app_name(app)?;
    for key in keys {
        validate::env_key(key)?;
    }
    let (undo, removed) = ctx
        .engine
        .update_app(app, |config| {
            let undo: Undo = keys.iter().map(|k| (k.clone(), config.env.get(k).cloned())).collect();
            Ok::<_, CmdError>((undo, keys.iter().map(|k| (k, config.env.remove(k).is_some())).collect::<Vec<_>>()))
        })
        .await?;
    for (key, was_set) in removed {
        if was_set {
            ctx.out.step(format!("Unsetting {key}")).await;
        } else {
            ctx.out.step(format!("{key} was not set")).await;
        }
    }
    apply(ctx, app, no_restart, undo).await
}

/// Config changes reach running containers through a new release (the usual swap).
/// Until an app has been deployed there is nothing to restart: the next deploy uses them.
/// If the restart fails, the changed keys go back to what they were (`undo`): a value the
/// app cannot start with must not stay to fail every later deploy.
async fn apply(ctx: &mut Ctx<'_>, app: &str, no_restart: bool, undo: Undo) -> CmdResult {
    if no_restart || ctx.engine.store.load_releases(app)?.active().is_none() {
        return Ok(());
    }
    if ctx.engine.store.load_app(app)?.stopped {
        ctx.out.step(format!("{app} is stopped: the new config applies at ps:start {app}")).await;
        return Ok(());
    }
    ctx.out.step(format!("Restarting {app} with the new config")).await;
    let restarted = super::ps::restart(ctx, app, "config change").await;
    if restarted.is_err() {
        ctx.engine
            .update_app(app, |config| {
                for (key, old) in undo {
                    match old {
                        Some(value) => config.env.insert(key, value),
                        None => config.env.remove(&key),
                    };
                }
                Ok::<_, CmdError>(())
            })
            .await?;
        ctx.out.error("The config change was undone: the running release keeps its config").await;
    }
    restarted
}

pub async fn get(ctx: &mut Ctx<'_>, app: &str, key: &str) -> CmdResult {
    validate::app_name(app)?;
    validate::env_key(key)?;
    let config = ctx.engine.store.load_app(app)?;
    match config.env.get(key) {
        Some(value) => {
            ctx.out.line(value).await;
            Ok(())
        }
        None => Err(failed(format!("Config var {key} is not set for {app}"))),
    }
}

pub async fn show(ctx: &mut Ctx<'_>, app: &str, format: Format) -> CmdResult {
    validate::app_name(app)?;
    let config = ctx.engine.store.load_app(app)?;
    match format {
        Format::Json => ctx.out.line(serde_json::to_string(&config.env).unwrap_or_default()).await,
        Format::Text => {
            ctx.out.header(format!("{app} env vars")).await;
            print_aligned(ctx, &config.env).await;
        }
    }
    Ok(())
}

pub async fn export(ctx: &mut Ctx<'_>, app: &str, format: ExportFormat) -> CmdResult {
    validate::app_name(app)?;
    let config = ctx.engine.store.load_app(app)?;
    ctx.out.stdout(render_export(&config.env, format)).await;
    Ok(())
}

pub async fn keys(ctx: &mut Ctx<'_>, app: &str) -> CmdResult {
    validate::app_name(app)?;
    let config = ctx.engine.store.load_app(app)?;
    for key in config.env.keys() {
        ctx.out.line(key).await;
    }
    Ok(())
}

/// `ssh host config:set app 'A=hello world'` reaches the server as `A=hello world`: the
/// local shell strips the quotes and ssh joins the words with spaces. A word without `=`
/// therefore continues the value before it (joined by one space), so the user gets what they
/// typed. A word without `=` and no pair before it stays as is and is refused as a bad pair.
fn join_continuations(words: &[String]) -> Vec<String> {
    let mut pairs: Vec<String> = Vec::with_capacity(words.len());
    for word in words {
        match pairs.last_mut() {
            Some(last) if !word.contains('=') => {
                last.push(' ');
                last.push_str(word);
            }
            _ => pairs.push(word.clone()),
        }
    }
    pairs
}

fn decode(key: &str, value: &str) -> Result<String, CmdError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|_| failed(format!("Value of {key} is not valid base64 (--encoded)")))?;
    let text = String::from_utf8(bytes).map_err(|_| failed(format!("Value of {key} is not UTF-8 once decoded")))?;
    validate::env_value(key, &text)?;
    Ok(text)
}

async fn print_aligned(ctx: &Ctx<'_>, env: &BTreeMap<String, String>) {
    let width = env.keys().map(|k| k.len()).max().unwrap_or(0) + 1;
    for (key, value) in env {
        ctx.out.detail(format!("{:<width$} {value}", format!("{key}:"))).await;
    }
}

fn render_export(env: &BTreeMap<String, String>, format: ExportFormat) -> String {
    match format {
        ExportFormat::Exports => {
            env.iter().map(|(k, v)| format!("export {k}={}\n", shell_words::quote(v))).collect()
        }
        ExportFormat::Envfile => env
            .iter()
            .map(|(k, v)| format!("{k}={}\n", v.replace('\\', "\\\\").replace('\n', "\\n")))
            .collect(),
        ExportFormat::Shell => {
            let words: Vec<String> = env.iter().map(|(k, v)| format!("{k}={}", shell_words::quote(v))).collect();
            format!("{}\n", words.join(" "))
        }
        ExportFormat::Json => format!("{}\n", serde_json::to_string(env).unwrap_or_default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exports_quote_for_the_shell() {
        let env: BTreeMap<String, String> =
            [("A".to_string(), "hello world".to_string()), ("B".to_string(), "it's".to_string())].into();
        let text = render_export(&env, ExportFormat::Exports);
        assert_eq!(text, "export A='hello world'\nexport B='it'\\''s'\n");
        assert_eq!(shell_words::split(&render_export(&env, ExportFormat::Shell)).unwrap(), vec!["A=hello world", "B=it's"]);
        assert_eq!(render_export(&env, ExportFormat::Json).trim(), r#"{"A":"hello world","B":"it's"}"#);
    }

    #[test]
    fn words_without_equals_continue_the_value_before() {
        let words: Vec<String> = ["GREETING=hello", "world", "PORT=5000"].map(String::from).to_vec();
        assert_eq!(join_continuations(&words), vec!["GREETING=hello world", "PORT=5000"]);
        let words: Vec<String> = ["stray", "A=b"].map(String::from).to_vec();
        assert_eq!(join_continuations(&words), vec!["stray", "A=b"]);
    }

    #[test]
    fn envfile_keeps_one_line_per_var() {
        let env: BTreeMap<String, String> = [("A".to_string(), "x\ny".to_string())].into();
        assert_eq!(render_export(&env, ExportFormat::Envfile), "A=x\\ny\n");
    }
}
