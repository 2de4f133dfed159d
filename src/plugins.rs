//! Plugins: what users add themselves. A plugin is a directory `<root>/plugins/NAME/` with
//! `plugin.toml` (name, version, description), executables named after triggers, and an
//! optional executable `commands` adding `NAME:*` commands (see plugins/README.md). A file
//! `disabled` in it turns it off. Plugins run as root on the server: only admins install,
//! enable, disable, uninstall and run their commands.
//!
//! Triggers run at fixed points of berth's operations, for every enabled plugin that has
//! one, in name order, with a timeout; their output goes to whoever runs the operation. A
//! `pre-*` trigger that fails stops the operation, which then changes nothing; a failing
//! `post-*` (or `deploy-failed`) trigger is reported.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use crate::engine::Engine;
use crate::output::{Input, Output};

/// How long one trigger may run.
pub const TRIGGER_TIMEOUT: Duration = Duration::from_secs(60);

/// Every trigger berth runs, and its arguments (documented in plugins/README.md).
pub const TRIGGERS: &[&str] = &["post-create", "pre-build", "post-build", "pre-deploy", "post-deploy", "deploy-failed", "post-domains-update", "post-delete", "post-app-rename"];

#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub name: String,
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub description: String,
}

/// An installed plugin.
#[derive(Debug, Clone)]
pub struct Plugin {
    pub manifest: Manifest,
    pub dir: PathBuf,
    pub enabled: bool,
}

/// A plugin name: also a command namespace, a directory name.
pub fn valid_name(name: &str) -> Result<&str, String> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok { Ok(name) } else { Err(format!("Invalid plugin name {}: a lowercase letter, then lowercase letters, digits or dashes", crate::validate::quoted(name))) }
}

pub fn plugins_dir(engine: &Engine) -> PathBuf {
    engine.root().join("plugins")
}

/// Reads a plugin directory's manifest, checked.
pub fn read_manifest(dir: &Path) -> Result<Manifest, String> {
    let path = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e} (a plugin has a plugin.toml with name, version, description)", path.display()))?;
    let manifest: Manifest = toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
    valid_name(&manifest.name)?;
    Ok(manifest)
}

/// Every installed plugin, by name.
pub fn list(engine: &Engine) -> Vec<Plugin> {
    let mut plugins: Vec<Plugin> = std::fs::read_dir(plugins_dir(engine))
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let dir = e.ok()?.path();
                    let manifest = read_manifest(&dir).ok()?;
                    let named = dir.file_name().is_some_and(|n| n == manifest.name.as_str());
                    named.then(|| Plugin { enabled: !dir.join("disabled").exists(), manifest, dir })
                })
                .collect()
        })
        .unwrap_or_default();
    plugins.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
    plugins
}

pub fn find(engine: &Engine, name: &str) -> Option<Plugin> {
    list(engine).into_iter().find(|p| p.manifest.name == name)
}

/// An executable file of the plugin's, if it has one by that name.
fn executable(plugin: &Plugin, name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = plugin.dir.join(name);
    let meta = std::fs::metadata(&path).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(path)
}

/// The environment every plugin program gets.
fn command(engine: &Engine, plugin: &Plugin, program: &Path) -> tokio::process::Command {
    let data = plugin.dir.join("data");
    let _ = std::fs::create_dir_all(&data);
    let mut cmd = tokio::process::Command::new(program);
    cmd.current_dir(&plugin.dir)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("BERTH_ROOT", engine.root())
        .env("BERTH_PLUGIN_NAME", &plugin.manifest.name)
        .env("BERTH_PLUGIN_DIR", &plugin.dir)
        .env("BERTH_PLUGIN_DATA", &data)
        .kill_on_drop(true);
    cmd
}

/// A plugin's trigger that failed: it exited non-zero (its last line says why, if it
/// said anything), or could not run.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("the {trigger} of plugin {plugin} exited with {code}")]
    Exited { trigger: String, plugin: String, code: i32 },
    #[error("the {trigger} of plugin {plugin}: {why}")]
    Said { trigger: String, plugin: String, why: String },
}

/// Runs `trigger` of every enabled plugin that has it. A `pre-*` trigger that fails is
/// the error (its last output line saying why); others are reported to `out` and logged.
pub async fn trigger(engine: &Engine, trigger: &str, args: &[String], env: &[(&str, &str)], out: &Output) -> Result<(), TriggerError> {
    debug_assert!(TRIGGERS.contains(&trigger), "{trigger} is not a documented trigger");
    for plugin in list(engine).into_iter().filter(|p| p.enabled) {
        let Some(program) = executable(&plugin, trigger) else { continue };
        let name = plugin.manifest.name.clone();
        let mut cmd = command(engine, &plugin, &program);
        cmd.args(args).envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let result = run_trigger(cmd, out).await;
        let (trigger, plugin) = (trigger.to_string(), name);
        let failure = match result {
            Ok((0, _)) => None,
            Ok((code, last)) if last.is_empty() => Some(TriggerError::Exited { trigger, plugin, code }),
            Ok((_, why)) | Err(why) => Some(TriggerError::Said { trigger, plugin, why }),
        };
        if let Some(failure) = failure {
            if failure_stops(&failure) {
                return Err(failure);
            }
            tracing::warn!("{failure}");
            out.error(failure.to_string()).await;
        }
    }
    Ok(())
}

/// Whether a failed trigger stops what it was fired for: only a `pre-*` trigger does.
fn failure_stops(failure: &TriggerError) -> bool {
    let (TriggerError::Exited { trigger, .. } | TriggerError::Said { trigger, .. }) = failure;
    trigger.starts_with("pre-")
}

/// Runs one trigger program, its output lines shown as they come; (exit code, last line).
async fn run_trigger(mut cmd: tokio::process::Command, out: &Output) -> Result<(i32, String), String> {
    let mut child = cmd.spawn().map_err(|e| format!("cannot run it: {e}"))?;
    let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let last = std::sync::Mutex::new(String::new());
    let show = |stream: Box<dyn tokio::io::AsyncRead + Unpin + Send>| {
        let last = &last;
        async move {
            let mut lines = crate::output::lines_of_reader(stream.take(1 << 20));
            while let Some(line) = lines.next().await {
                if !line.trim().is_empty() {
                    *last.lock().unwrap_or_else(|e| e.into_inner()) = line.trim().chars().take(300).collect();
                }
                out.child_line(&line, true).await;
            }
        }
    };
    let run = async {
        tokio::join!(show(Box::new(stdout)), show(Box::new(stderr)));
        child.wait().await
    };
    let status = tokio::time::timeout(TRIGGER_TIMEOUT, run).await.map_err(|_| format!("did not finish within {}s", TRIGGER_TIMEOUT.as_secs()))?;
    let code = status.map_err(|e| e.to_string())?.code().unwrap_or(-1);
    Ok((code, last.into_inner().unwrap_or_else(|e| e.into_inner())))
}

/// The enabled plugin whose `commands` serves this command word (`notify:set` → notify).
pub fn command_plugin(engine: &Engine, word: &str) -> Option<Plugin> {
    let namespace = word.split(':').next()?;
    valid_name(namespace).ok()?;
    find(engine, namespace).filter(|p| p.enabled && executable(p, "commands").is_some())
}

/// Runs a plugin's command: `commands WORD ARGS…` with the caller's streams. Its exit code.
pub async fn run_command(engine: &Engine, plugin: &Plugin, words: &[String], caller: &str, out: &Output, input: Input) -> i32 {
    let Some(program) = executable(plugin, "commands") else { return crate::output::EXIT_FAILURE };
    let mut cmd = command(engine, plugin, &program);
    cmd.args(words).env("BERTH_CALLER", caller).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            out.error(format!("cannot run plugin {}'s commands: {e}", plugin.manifest.name)).await;
            return crate::output::EXIT_FAILURE;
        }
    };
    let (stdin, stdout, stderr) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let pump = tokio::spawn(input.feed(stdin));
    tokio::join!(out.copy_from(stdout, false), out.copy_from(stderr, true));
    let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(crate::output::EXIT_FAILURE);
    pump.abort();
    if (1..=254).contains(&code) || code == 0 { code } else { crate::output::EXIT_FAILURE }
}

/// How long a plugin's clone may take.
const CLONE_TIME: Duration = Duration::from_secs(120);

/// Installs a plugin from a directory on the server (copied) or an https git URL (cloned,
/// shallow, `URL#REF` for a branch or tag, without the host's git config or credentials).
/// Refused, with nothing changed, unless it has a valid plugin.toml whose name is not one
/// of berth's namespaces. A plugin of that name already installed is upgraded: its data and
/// its enabled state are kept. Returns the manifest and whether it was an upgrade.
pub async fn install(engine: &Engine, source: &str, berth_namespaces: &[&str], out: &Output) -> Result<(Manifest, bool), String> {
    let dir = plugins_dir(engine);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let staging = dir.join(format!(".install-{:08x}", rand::random::<u32>()));
    let fetched = async {
        if source.starts_with("https://") {
            // The same rules as a third-party buildpack's URL: https, no credentials.
            crate::buildpack::validate(source).map_err(|e| e.0)?;
            let (url, reference) = source.split_once('#').map_or((source, None), |(u, r)| (u, Some(r)));
            out.step(format!("Cloning {source}")).await;
            let mut git = tokio::process::Command::new("git");
            git.args(["clone", "-q", "--depth", "1"]);
            if let Some(reference) = reference {
                git.args(["--branch", reference]);
            }
            git.args(["--", url])
                .arg(&staging)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("HOME", "/nonexistent")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_TERMINAL_PROMPT", "0")
                .stdin(Stdio::null())
                .kill_on_drop(true);
            let output = tokio::time::timeout(CLONE_TIME, git.output()).await.map_err(|_| format!("cloning {source} took over {}s", CLONE_TIME.as_secs()))?;
            let output = output.map_err(|e| format!("cannot run git: {e}"))?;
            if !output.status.success() {
                let why = String::from_utf8_lossy(&output.stderr).lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default().trim().to_string();
                return Err(format!("git could not clone {source}: {why}"));
            }
        } else if source.starts_with('/') {
            let from = Path::new(source);
            if !from.is_dir() {
                return Err(format!("{source} is not a directory on the server"));
            }
            let status = tokio::process::Command::new("cp").arg("-a").arg(from).arg(&staging).status().await.map_err(|e| format!("cannot run cp: {e}"))?;
            if !status.success() {
                return Err(format!("cannot copy {source}"));
            }
        } else {
            return Err(format!("{} is neither an absolute path on the server nor an https git URL", crate::validate::quoted(source)));
        }
        let manifest = read_manifest(&staging).map_err(|e| e.replace(&staging.display().to_string(), source))?;
        if berth_namespaces.contains(&manifest.name.as_str()) {
            return Err(format!("A plugin cannot be named {}: it is one of berth's namespaces", manifest.name));
        }
        let _ = std::fs::remove_dir_all(staging.join(".git"));
        let _ = std::fs::remove_dir_all(staging.join("data"));
        let _ = std::fs::remove_file(staging.join("disabled"));
        let target = dir.join(&manifest.name);
        let upgrade = target.exists();
        if upgrade {
            // Its data and whether it is enabled carry over; the old files go.
            for keep in ["data", "disabled"] {
                if target.join(keep).exists() {
                    std::fs::rename(target.join(keep), staging.join(keep)).map_err(|e| format!("cannot keep {keep} of plugin {}: {e}", manifest.name))?;
                }
            }
            let old = dir.join(format!(".old-{:08x}", rand::random::<u32>()));
            std::fs::rename(&target, &old).map_err(|e| format!("cannot replace {}: {e}", target.display()))?;
            let _ = std::fs::remove_dir_all(&old);
        }
        std::fs::rename(&staging, &target).map_err(|e| format!("cannot install {}: {e}", target.display()))?;
        Ok((manifest, upgrade))
    };
    let result = fetched.await;
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// A plugin's directory by name, even when its manifest no longer reads (so that it can
/// still be uninstalled).
pub fn installed_dir(engine: &Engine, name: &str) -> Option<PathBuf> {
    valid_name(name).ok()?;
    let dir = plugins_dir(engine).join(name);
    dir.is_dir().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_are_namespaces() {
        for ok in ["notify", "slack-2"] {
            assert!(valid_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Notify", "2fa", "a_b", "a:b", "../x", &"a".repeat(41)] {
            assert!(valid_name(bad).is_err(), "{bad}");
        }
    }
}
