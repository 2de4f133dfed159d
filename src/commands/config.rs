//! `config:*`: the app's environment variables.

use std::collections::BTreeMap;

use base64::Engine as _;

use super::Scope;
use super::Target;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::output::Format;
use crate::validate;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("config", "Manage global and app-specific config vars")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Set env vars: KEY=value… (--global: for every app; an app's own value wins)
    #[command(name = "config:set")]
    Set {
        target: Target,
        #[arg(value_name = "KEY=VALUE")]
        pairs: Vec<String>,
        /// Do not restart the app to apply the change
        #[arg(long)]
        no_restart: bool,
        /// Values are base64-encoded
        #[arg(long)]
        encoded: bool,
        /// Also unset this key, in the same release (repeatable)
        #[arg(long = "unset", value_name = "KEY")]
        unset: Vec<String>,
    },
    /// Unset every env var of an app
    #[command(name = "config:clear")]
    Clear {
        target: Target,
        /// Do not restart the app
        #[arg(long)]
        no_restart: bool,
    },
    /// Set env vars from an env file on stdin (KEY=value lines): config:import APP - < .env
    #[command(name = "config:import")]
    Import {
        target: Target,
        /// `-`: stdin (the only source)
        source: Option<String>,
        /// Also unset the keys the file does not name
        #[arg(long)]
        replace: bool,
        /// Do not restart the app
        #[arg(long)]
        no_restart: bool,
    },
    /// Unset env vars
    #[command(name = "config:unset")]
    Unset {
        target: Target,
        keys: Vec<String>,
        #[arg(long)]
        no_restart: bool,
    },
    /// Print one env var's value
    #[command(name = "config:get")]
    Get { target: Target, key: Option<String> },
    /// Show an app's env vars
    #[command(name = "config:show")]
    Show {
        target: Target,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print an app's env vars for a shell or an env file
    #[command(name = "config:export")]
    Export {
        target: Target,
        #[arg(long, value_enum, default_value_t)]
        format: ExportFormat,
    },
    /// List the env var names of an app
    #[command(name = "config:keys")]
    Keys { target: Target },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Set { target, .. }
            | Cmd::Clear { target, .. }
            | Cmd::Import { target, .. }
            | Cmd::Unset { target, .. }
            | Cmd::Get { target, .. }
            | Cmd::Show { target, .. }
            | Cmd::Export { target, .. }
            | Cmd::Keys { target, .. } => target.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Set { target, pairs, no_restart, encoded, unset } => set(ctx, &target, &pairs, &unset, encoded, no_restart).await,
            Cmd::Clear { target, no_restart } => clear(ctx, &target, no_restart).await,
            Cmd::Import { target, source, replace, no_restart } => import(ctx, &target, source.as_deref(), replace, no_restart).await,
            Cmd::Unset { target, keys, no_restart } => unset(ctx, &target, &keys, no_restart).await,
            Cmd::Get { target, key } => get(ctx, &target, key.as_deref()).await,
            Cmd::Show { target, format } => show(ctx, &target, format).await,
            Cmd::Export { target, format } => export(ctx, &target, format).await,
            Cmd::Keys { target } => keys(ctx, &target).await,
        }
    }
}

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

/// Changes an app's env, or the global one, saving only what changed.
async fn update_env<T>(ctx: &Ctx<'_>, target: &Target, change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<T, CmdError>) -> Result<T, CmdError> {
    if let Target::App(app) = target {
        return ctx.engine.update_app(app, |config| change(&mut config.env)).await;
    }
    let store = &ctx.engine.store;
    let _global = store.lock_global().await;
    let mut global = store.load_global_env()?;
    let before = global.clone();
    let result = change(&mut global.env)?;
    if global != before {
        store.save_global_env(&global)?;
    }
    Ok(result)
}

/// An app's env, or the global one.
fn read_env(ctx: &Ctx<'_>, target: &Target) -> Result<BTreeMap<String, String>, CmdError> {
    Ok(match target {
        Target::Global => ctx.engine.store.load_global_env()?.env,
        Target::App(app) => ctx.engine.store.load_app(app)?.env,
    })
}

/// How a command names what it changed.
fn shown(target: &Target) -> String {
    match target {
        Target::Global => "the global env".to_string(),
        Target::App(app) => app.to_string(),
    }
}

pub async fn set(ctx: &mut Ctx<'_>, app: &Target, pairs: &[String], unset: &[String], encoded: bool, no_restart: bool) -> CmdResult {
    let show = |_: &str, value: &str| value.to_string();
    set_showing(ctx, app, Change { pairs, unset, encoded }, no_restart, show).await
}

/// What a `config:set` changes: pairs to set (base64 values when `encoded`), keys to unset.
pub struct Change<'a> {
    pub pairs: &'a [String],
    pub unset: &'a [String],
    pub encoded: bool,
}

/// `set`, printing each value as `show(key, value)` says (a link masks its password).
pub async fn set_showing(ctx: &mut Ctx<'_>, app: &Target, change: Change<'_>, no_restart: bool, show: impl Fn(&str, &str) -> String) -> CmdResult {
    let Change { pairs, unset, encoded } = change;
    if pairs.is_empty() && unset.is_empty() {
        return Err(failed("At least one env pair must be given"));
    }
    for key in unset {
        validate::env_key(key)?;
    }
    // Every pair is checked before anything changes: one bad pair refuses the whole command.
    let mut parsed = Vec::with_capacity(pairs.len());
    for pair in join_continuations(pairs) {
        let (key, value) = validate::env_pair(&pair)?;
        let value = if encoded { decode(&key, &value)? } else { value };
        parsed.push((key, value));
    }
    let undo = update_env(ctx, app, |env| {
        let undo: Undo = parsed.iter().map(|(k, _)| k).chain(unset).map(|k| (k.clone(), env.get(k).cloned())).collect();
        for key in unset {
            env.remove(key);
        }
        for (key, value) in &parsed {
            env.insert(key.clone(), value.clone());
        }
        validate::env_total(env)?;
        Ok(undo)
    })
    .await?;
    if !parsed.is_empty() {
        ctx.out.step("Setting config vars").await;
        let shown: BTreeMap<String, String> = parsed.iter().map(|(k, v)| (k.clone(), show(k, v))).collect();
        print_aligned(ctx, &shown).await;
    }
    if !unset.is_empty() {
        ctx.out.step(format!("Unsetting {}", unset.join(", "))).await;
    }
    apply(ctx, app, no_restart, undo).await
}

pub async fn unset(ctx: &mut Ctx<'_>, app: &Target, keys: &[String], no_restart: bool) -> CmdResult {
    if keys.is_empty() {
        return Err(failed("At least one key must be given"));
    }
    for key in keys {
        validate::env_key(key)?;
    }
    let (undo, removed) = update_env(ctx, app, |env| {
        let undo: Undo = keys.iter().map(|k| (k.clone(), env.get(k).cloned())).collect();
        Ok((undo, keys.iter().map(|k| (k, env.remove(k).is_some())).collect::<Vec<_>>()))
    })
    .await?;
    for (key, was_set) in removed {
        if was_set {
            ctx.out.step(format!("Unsetting {key}")).await;
        } else {
            ctx.out.step(format!("Skipping {key}, it is not set in the environment")).await;
        }
    }
    apply(ctx, app, no_restart, undo).await
}

/// `config:clear APP`: every key unset.
pub async fn clear(ctx: &mut Ctx<'_>, app: &Target, no_restart: bool) -> CmdResult {
    let undo = update_env(ctx, app, |env| {
        let undo: Undo = env.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        env.clear();
        Ok(undo)
    })
    .await?;
    if undo.is_empty() {
        ctx.out.step(format!("{} has no config vars", shown(app))).await;
        return Ok(());
    }
    ctx.out.step("Unsetting all config vars").await;
    apply(ctx, app, no_restart, undo).await
}

/// The most `config:import` reads from stdin.
const MAX_IMPORT: usize = 1024 * 1024;

/// `config:import APP [-] [--replace]`: an env file on stdin (`KEY=value` lines, `export`,
/// quotes and `#` comments as shells and docker's env files write them); `--replace` also
/// unsets the keys the file does not name.
pub async fn import(ctx: &mut Ctx<'_>, app: &Target, source: Option<&str>, replace: bool, no_restart: bool) -> CmdResult {
    if source.is_some_and(|s| s != "-") {
        return Err(failed("config:import reads the env file from stdin: config:import APP - < FILE"));
    }
    let bytes = ctx.input.read_to_end(MAX_IMPORT).await.map_err(|_| failed(format!("The env file is over {} KiB", MAX_IMPORT / 1024)))?;
    let text = String::from_utf8(bytes).map_err(|_| failed("The env file is not UTF-8 text"))?;
    let parsed = parse_env_file(&text).map_err(failed)?;
    if parsed.is_empty() && !replace {
        return Err(failed("No config vars in the input: lines are KEY=value"));
    }
    let undo = update_env(ctx, app, |env| {
        let mut undo: Undo = parsed.keys().map(|k| (k.clone(), env.get(k).cloned())).collect();
        if replace {
            let dropped: Vec<String> = env.keys().filter(|k| !parsed.contains_key(*k)).cloned().collect();
            for key in dropped {
                undo.push((key.clone(), env.remove(&key)));
            }
        }
        for (key, value) in &parsed {
            env.insert(key.clone(), value.clone());
        }
        validate::env_total(env)?;
        Ok(undo)
    })
    .await?;
    ctx.out.step(format!("Importing {} config var(s){}", parsed.len(), if replace { ", replacing the others" } else { "" })).await;
    let keys: Vec<&String> = parsed.keys().collect();
    for key in keys {
        ctx.out.detail(key).await;
    }
    apply(ctx, app, no_restart, undo).await
}

/// An env file: `KEY=value` per line, optionally after `export `; blank lines and `#`
/// comments skipped; a value in single quotes is taken as is, in double quotes with `\"`,
/// `\\` and `\n` unescaped. Every key and value is validated. Pure.
pub fn parse_env_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut vars = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").map_or(line, str::trim_start);
        let (key, raw) = line.split_once('=').ok_or_else(|| format!("line {}: expected KEY=value", n + 1))?;
        let key = validate::env_key(key.trim()).map_err(|e| format!("line {}: {e}", n + 1))?.to_string();
        let value = if raw.len() >= 2 && raw.starts_with('\'') && raw.ends_with('\'') {
            raw[1..raw.len() - 1].to_string()
        } else if raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"') {
            let mut value = String::new();
            let mut chars = raw[1..raw.len() - 1].chars();
            while let Some(c) = chars.next() {
                match (c, c == '\\') {
                    (_, true) => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => value.push('\\'),
                    },
                    (c, false) => value.push(c),
                }
            }
            value
        } else {
            raw.to_string()
        };
        let (key, value) = validate::env_pair(&format!("{key}={value}")).map_err(|e| format!("line {}: {e}", n + 1))?;
        vars.insert(key, value);
    }
    Ok(vars)
}

/// Config changes reach running containers through a new release (the usual swap).
/// Until an app has been deployed there is nothing to restart: the next deploy uses them.
/// If the restart fails, the changed keys go back to what they were (`undo`): a value the
/// app cannot start with must not stay to fail every later deploy.
async fn apply(ctx: &mut Ctx<'_>, target: &Target, no_restart: bool, undo: Undo) -> CmdResult {
    let Target::App(app) = target else {
        ctx.out.step("The global env reaches each app's containers started from now on (ps:restart APP applies it now)").await;
        return Ok(());
    };
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

pub async fn get(ctx: &mut Ctx<'_>, app: &Target, key: Option<&str>) -> CmdResult {
    let Some(key) = key else {
        return Err(failed("Expected: key"));
    };
    validate::env_key(key)?;
    match read_env(ctx, app)?.get(key) {
        Some(value) => {
            ctx.out.line(value).await;
            Ok(())
        }
        None => Err(failed(format!("Config var {key} is not set for {}", shown(app)))),
    }
}

/// What a caller who may not read secrets (a read or deploy token) sees of each value.
pub const HIDDEN: &str = "<hidden>";

pub async fn show(ctx: &mut Ctx<'_>, app: &Target, format: Format) -> CmdResult {
    let mut env = read_env(ctx, app)?;
    if ctx.caller.access < crate::store::Access::Write {
        env.values_mut().for_each(|v| *v = HIDDEN.to_string());
    }
    match format {
        Format::Json => ctx.out.line(serde_json::to_string(&env).unwrap_or_default()).await,
        Format::Text => {
            ctx.out
                .header(match app {
                    Target::Global => "global env vars".to_string(),
                    Target::App(app) => format!("{app} env vars"),
                })
                .await;
            print_aligned(ctx, &env).await;
        }
    }
    Ok(())
}

pub async fn export(ctx: &mut Ctx<'_>, app: &Target, format: ExportFormat) -> CmdResult {
    ctx.out.stdout(render_export(&read_env(ctx, app)?, format)).await;
    Ok(())
}

pub async fn keys(ctx: &mut Ctx<'_>, app: &Target) -> CmdResult {
    for key in read_env(ctx, app)?.keys() {
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
    let bytes = base64::engine::general_purpose::STANDARD.decode(value).map_err(|_| failed(format!("Value of {key} is not valid base64 (--encoded)")))?;
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
        ExportFormat::Exports => env.iter().map(|(k, v)| format!("export {k}={}\n", shell_words::quote(v))).collect(),
        ExportFormat::Envfile => env.iter().map(|(k, v)| format!("{k}={}\n", v.replace('\\', "\\\\").replace('\n', "\\n"))).collect(),
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
        let env: BTreeMap<String, String> = [("A".to_string(), "hello world".to_string()), ("B".to_string(), "it's".to_string())].into();
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

#[cfg(test)]
mod import_tests {
    use super::*;

    #[test]
    fn env_files_read_as_shells_and_docker_write_them() {
        let text = "# comment\n\nA=1\nexport B='two words'\nC=\"line\\nnext \\\"q\\\"\"\nD=\nE=a=b\n";
        let vars = parse_env_file(text).unwrap();
        assert_eq!(vars["A"], "1");
        assert_eq!(vars["B"], "two words");
        assert_eq!(vars["C"], "line\nnext \"q\"");
        assert_eq!(vars["D"], "");
        assert_eq!(vars["E"], "a=b");
        assert!(parse_env_file("1BAD=x").unwrap_err().starts_with("line 1: "));
        assert!(parse_env_file("A=1\nnoequals").unwrap_err().starts_with("line 2: expected"));
    }
}
