//! `stack:*`, `buildpacks:*`, `builder:*`: how apps without a Dockerfile are built.

use super::Scope;
use super::Target;
use super::property::{SetArgs, app_or_global, global_only};
use crate::validate;
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::buildpack::{self, STACK_IMAGE};
use crate::output::{Format, Report, print_reports};
use crate::store::{AppConfig, Builder};
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[
    ("builder", "Manage the builder settings for an app"),
    ("buildpacks", "Manage buildpacks settings for an app"),
    ("stack", "Manage the buildpack stack image"),
];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Build the stack image buildpack builds run in (debootstrap when no registry answers)
    #[command(name = "stack:build")]
    StackBuild {
        /// Build it again even if it exists
        #[arg(long)]
        force: bool,
    },
    /// Show the stack image and the built-in buildpacks
    #[command(name = "stack:report")]
    StackReport {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Add a buildpack (a built-in name or a git URL)
    #[command(name = "buildpacks:add")]
    BuildpacksAdd {
        app: AppName,
        buildpack: String,
        /// Position in the list, from 1
        #[arg(long)]
        index: Option<usize>,
    },
    /// Set the buildpack at a position (--index N, default 1; past the end: added), or the whole list (--replace BUILDPACK…)
    #[command(name = "buildpacks:set")]
    BuildpacksSet {
        app: AppName,
        buildpacks: Vec<String>,
        /// Position in the list, from 1
        #[arg(long)]
        index: Option<usize>,
        /// Replace the whole list with the buildpacks given
        #[arg(long)]
        replace: bool,
    },
    /// Remove a buildpack, by value or by position (--index N)
    #[command(name = "buildpacks:remove")]
    BuildpacksRemove {
        app: AppName,
        buildpack: Option<String>,
        /// Position in the list, from 1
        #[arg(long)]
        index: Option<usize>,
    },
    /// Go back to detecting the buildpack
    #[command(name = "buildpacks:clear")]
    BuildpacksClear { app: AppName },
    /// List an app's buildpacks
    #[command(name = "buildpacks:list")]
    BuildpacksList { app: AppName },
    /// Set a buildpacks property: stack IMAGE (the image buildpack builds run in; default berth/stack:bookworm); APP or --global (admins)
    #[command(name = "buildpacks:set-property")]
    BuildpacksSetProperty(SetArgs),
    /// Show an app's buildpacks and the stack image they build on
    #[command(name = "buildpacks:report")]
    BuildpacksReport(ReportArgs),
    /// Set a build setting: selected dockerfile|buildpacks (no value: detect), build-dir SUB/DIR (the directory of the tree built), skip-cleanup true|false (keep a Dockerfile build's intermediate containers), build-cpu-shares N, build-memory SIZE|0 (admins), build-concurrency N, build-cpu-priority idle|normal (--global); `builder:set APP dockerfile` works too
    #[command(name = "builder:set")]
    BuilderSet(SetArgs),
    /// Show an app's builder
    #[command(name = "builder:report")]
    BuilderReport(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::StackReport { .. } => Scope::Anyone,
            Cmd::StackBuild { .. } => Scope::Admin,
            Cmd::BuilderReport(args) | Cmd::BuildpacksReport(args) => args.scope(),
            Cmd::BuildpacksAdd { app, .. }
            | Cmd::BuildpacksSet { app, .. }
            | Cmd::BuildpacksRemove { app, .. }
            | Cmd::BuildpacksClear { app, .. }
            | Cmd::BuildpacksList { app, .. }
 => Scope::App(app),
            // Build limits bound what a build may take from the apps beside it (an app's value
            // wins over the global one): an admin's, like `resource:limit`.
            // Kept build containers take the engine's disk: an admin's too.
            Cmd::BuilderSet(args) if args.key.as_deref().is_some_and(|k| (k.starts_with("build-") && k != "build-dir") || k == "skip-cleanup") => Scope::Admin,
            // The image buildpack builds run in: an admin's (it sees every app's source it builds).
            Cmd::BuildpacksSetProperty(_) => Scope::Admin,
            Cmd::BuilderSet(args) => args.target.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::StackBuild { force } => stack_build(ctx, force).await,
            Cmd::StackReport { format } => stack_report(ctx, format).await,
            Cmd::BuildpacksAdd { app, buildpack, index } => buildpacks_change(ctx, &app, Change::Add(buildpack, index)).await,
            Cmd::BuildpacksSet { app, buildpacks, index, replace } => {
                let change = match (replace, index, buildpacks.len()) {
                    (true, Some(_), _) => return Err(failed("buildpacks:set --replace sets the whole list: --index cannot go with it")),
                    (true, None, 0) => return Err(failed("buildpacks:set --replace needs the buildpacks to set (buildpacks:clear removes them all)")),
                    (true, None, _) => Change::Set(buildpacks),
                    (false, _, 0) => return Err(failed("Must specify a buildpack: buildpacks:set APP BUILDPACK")),
                    (false, index, 1) => Change::SetAt(buildpacks[0].clone(), index.unwrap_or(1)),
                    (false, _, _) => return Err(failed("Several buildpacks replace the whole list: buildpacks:set --replace APP BUILDPACK…")),
                };
                buildpacks_change(ctx, &app, change).await
            }
            Cmd::BuildpacksRemove { app, buildpack, index } => {
                let change = match (buildpack, index) {
                    (Some(v), None) => Change::Remove(v),
                    (None, Some(i)) => Change::RemoveAt(i),
                    (Some(_), Some(_)) => return Err(failed("buildpacks:remove takes a buildpack or --index N, not both")),
                    (None, None) => return Err(failed("Must specify a buildpack or --index N: buildpacks:remove APP BUILDPACK")),
                };
                buildpacks_change(ctx, &app, change).await
            }
            Cmd::BuildpacksClear { app } => buildpacks_change(ctx, &app, Change::Clear).await,
            Cmd::BuildpacksList { app } => buildpacks_list(ctx, &app).await,
            Cmd::BuilderSet(args) => builder_set(ctx, args).await,
            Cmd::BuilderReport(args) => builder_report(ctx, &args).await,
            Cmd::BuildpacksReport(args) => buildpacks_report(ctx, &args).await,
            Cmd::BuildpacksSetProperty(args) => buildpacks_set_property(ctx, &args).await,
        }
    }
}

pub async fn stack_build(ctx: &mut Ctx<'_>, force: bool) -> CmdResult {
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
    if !force && let Some((id, size, _)) = runtime.image_info(STACK_IMAGE).await {
        ctx.out.step(format!("{STACK_IMAGE} is already built ({id}, {} MB); --force builds it again", size / 1_000_000)).await;
        return Ok(());
    }
    crate::stack::build(&runtime, &ctx.engine.root(), &ctx.out).await.map_err(CmdError::Failed)
}

pub async fn stack_report(ctx: &mut Ctx<'_>, format: Format) -> CmdResult {
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
    let info = runtime.image_info(STACK_IMAGE).await;
    let report = Report::new("stack information")
        .row("Stack image", STACK_IMAGE)
        .row("Stack built", info.is_some())
        .row("Stack id", info.as_ref().map(|i| i.0.clone()).unwrap_or_default())
        .row("Stack size mb", info.as_ref().map(|i| i.1 / 1_000_000).unwrap_or(0))
        .row("Stack created", info.map(|i| i.2).unwrap_or_default())
        .row("Buildpacks builtin", buildpack::builtin_names());
    print_reports(&ctx.out, &[("stack".into(), report)], true, format).await.map_err(failed)?;
    Ok(())
}

pub enum Change {
    Add(String, Option<usize>),
    /// The whole list (`--replace`).
    Set(Vec<String>),
    /// The buildpack at a position from 1 (past the end: added).
    SetAt(String, usize),
    Remove(String),
    RemoveAt(usize),
    Clear,
}

pub async fn buildpacks_change(ctx: &mut Ctx<'_>, app: &AppName, change: Change) -> CmdResult {
    let change = match change {
        Change::Add(v, index) => Change::Add(buildpack::normalize(&v)?, index),
        Change::Set(list) => Change::Set(list.iter().map(|v| buildpack::normalize(v)).collect::<Result<_, _>>()?),
        Change::SetAt(v, index) => Change::SetAt(buildpack::normalize(&v)?, index),
        Change::Remove(v) => Change::Remove(buildpack::normalize(&v).unwrap_or(v)),
        other => other,
    };
    if let Change::SetAt(_, 0) | Change::RemoveAt(0) | Change::Add(_, Some(0)) = change {
        return Err(failed("--index counts from 1"));
    }
    let list = ctx
        .engine
        .update_app(app, |config| {
            let list = &mut config.buildpacks;
            match &change {
                Change::Add(v, _) if list.contains(v) => {
                    return Err(failed(format!("{v} is already a buildpack of {app}")));
                }
                Change::Add(v, index) => {
                    let at = index.map(|i| i.saturating_sub(1).min(list.len())).unwrap_or(list.len());
                    list.insert(at, v.clone());
                }
                Change::Set(values) => *list = values.clone(),
                Change::SetAt(v, index) => {
                    if list.iter().enumerate().any(|(i, b)| b == v && i != index - 1) {
                        return Err(failed(format!("{v} is already a buildpack of {app}")));
                    }
                    match list.get_mut(index - 1) {
                        Some(at) => *at = v.clone(),
                        None => list.push(v.clone()),
                    }
                }
                Change::RemoveAt(index) => {
                    if *index > list.len() {
                        return Err(failed(format!("{app} has {} buildpack(s): none at --index {index}", list.len())));
                    }
                    list.remove(index - 1);
                }
                Change::Remove(v) => {
                    if !list.contains(v) {
                        return Err(failed(format!("{v} is not a buildpack of {app}")));
                    }
                    list.retain(|b| b != v);
                }
                Change::Clear => list.clear(),
            }
            Ok::<_, CmdError>(list.clone())
        })
        .await?;
    if list.is_empty() {
        ctx.out.step(format!("{app} detects its buildpack ({})", buildpack::builtin_names().join(", "))).await;
    } else {
        ctx.out.step(format!("Buildpacks of {app}: {}", list.join(", "))).await;
    }
    Ok(())
}

pub async fn buildpacks_list(ctx: &mut Ctx<'_>, app: &AppName) -> CmdResult {
    let config = ctx.engine.store.load_app(app)?;
    // dokku's shape: a header, then one buildpack per line in the order they run.
    ctx.out.header(format!("{app} buildpack urls")).await;
    if config.buildpacks.is_empty() {
        ctx.out.step(format!("none: detected from {}", buildpack::builtin_names().join(", "))).await;
    }
    for b in &config.buildpacks {
        ctx.out.detail(b).await;
    }
    Ok(())
}

/// `builder:set (APP|--global) PROPERTY [VALUE]` (no VALUE: the default); dokku's older
/// `builder:set APP dockerfile|buildpacks|detect` is `selected`.
pub async fn builder_set(ctx: &mut Ctx<'_>, mut args: SetArgs) -> CmdResult {
    if args.value.is_none() && matches!(args.key.as_deref(), Some("dockerfile" | "buildpacks" | "detect")) {
        args.value = args.key.replace("selected".into()).filter(|v| v != "detect");
    }
    let key = args.property(&[app_or_global("selected"), app_or_global("build-dir"), app_or_global("skip-cleanup"), app_or_global("build-cpu-shares"), app_or_global("build-memory"), global_only("build-concurrency"), global_only("build-cpu-priority")])?;
    let value = args.value();
    let invalid = |what: &str| failed(format!("Invalid value {} for {key}: {what}", validate::quoted(value.unwrap_or_default())));
    match key {
        "selected" => {
            let builder = match value {
                None => None,
                Some("dockerfile") => Some(Builder::Dockerfile),
                Some("buildpacks" | "herokuish") => Some(Builder::Buildpacks),
                Some(_) => return Err(invalid("dockerfile or buildpacks (no value: detect)")),
            };
            let shown = match builder {
                Some(Builder::Dockerfile) => "dockerfile",
                Some(Builder::Buildpacks) => "buildpacks",
                None => "detected (a Dockerfile wins, else buildpacks)",
            };
            match &args.target {
                Target::App(app) => {
                    ctx.engine.update_app(app, |config| {
                        config.builder = builder;
                        Ok::<_, CmdError>(())
                    }).await?;
                    ctx.out.step(format!("Builder of {app}: {shown}")).await;
                }
                Target::Global => {
                    ctx.engine.update_global(|global| {
                        global.builder = builder;
                        Ok::<_, CmdError>(())
                    }).await?;
                    ctx.out.step(format!("Builder of apps that choose none: {shown}")).await;
                }
            }
            return Ok(());
        }
        "build-dir" => {
            let dir = value.map(validate::tree_path).transpose().map_err(|e| failed(format!("Invalid build-dir: {e}")))?;
            update_build(ctx, &args.target, |build, _| build.dir = dir.clone()).await?;
        }
        "skip-cleanup" => {
            let skip = value.map(|v| v.parse::<bool>().map_err(|_| invalid("true or false (no value: false)"))).transpose()?;
            update_build(ctx, &args.target, |build, _| build.skip_cleanup = skip).await?;
        }
        "build-cpu-shares" => {
            let shares = value.map(|v| v.parse::<u32>().ok().filter(|n| (2..=262_144).contains(n)).ok_or_else(|| invalid("a CPU weight from 2 to 262144 (apps run at 1024)"))).transpose()?;
            update_build(ctx, &args.target, |build, _| build.cpu_shares = shares).await?;
        }
        "build-memory" => {
            let memory = match value {
                None | Some("0") => value.map(str::to_string),
                Some(size) => {
                    let bytes = validate::memory(size)?;
                    if bytes > crate::deploy::MAX_BUILD_MEMORY {
                        return Err(invalid("at most 2047m (the engine's build API as berth calls it), or 0 for no limit"));
                    }
                    Some(size.to_string())
                }
            };
            update_build(ctx, &args.target, |build, _| build.memory = memory.clone()).await?;
        }
        "build-cpu-priority" => {
            if value.is_some_and(|v| v != "idle" && v != "normal") {
                return Err(invalid("idle (a build takes only the CPU the apps leave; the default) or normal (the apps' priority: faster builds under load, slower apps)"));
            }
            let priority = value.filter(|v| *v == "normal").map(str::to_string);
            update_build(ctx, &args.target, |build, _| build.cpu_priority = priority.clone()).await?;
        }
        _ => {
            let n = value.map(|v| v.parse::<u32>().ok().filter(|n| (1..=32).contains(n)).ok_or_else(|| invalid("builds at once, 1 to 32"))).transpose()?;
            update_build(ctx, &args.target, |_, concurrency| *concurrency = n).await?;
        }
    }
    let whose = match &args.target {
        Target::Global => "every app".to_string(),
        Target::App(app) => app.to_string(),
    };
    match value {
        Some(v) => ctx.out.step(format!("Setting {key} to {v} for {whose}")).await,
        None => ctx.out.step(format!("Unsetting {key} for {whose}")).await,
    }
    Ok(())
}

/// Changes build settings: an app's, or the global ones (with `build_concurrency`).
async fn update_build(ctx: &Ctx<'_>, target: &Target, change: impl FnOnce(&mut crate::store::BuildSettings, &mut Option<u32>)) -> CmdResult {
    match target {
        Target::App(app) => {
            ctx.engine
                .update_app(app, |config| {
                    change(&mut config.build, &mut None);
                    Ok::<_, CmdError>(())
                })
                .await?;
        }
        Target::Global => ctx.engine.update_global(|global| {
            change(&mut global.build, &mut global.build_concurrency);
            Ok::<_, CmdError>(())
        }).await?,
    }
    Ok(())
}

/// A builder as `builder:set` names it.
fn builder_name(builder: Builder) -> String {
    match builder {
        Builder::Dockerfile => "dockerfile",
        Builder::Buildpacks => "buildpacks",
    }
    .to_string()
}

/// `buildpacks:set-property (APP|--global) stack [IMAGE]`: an image on the server's engine
/// (made from berth's stack, as `stack:build` makes it), checked when a build starts.
pub async fn buildpacks_set_property(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    args.property(&[app_or_global("stack")])?;
    let stack = args.value().map(str::to_string);
    if let Some(image) = &stack {
        let ok = image.len() <= 255 && !image.starts_with(['-', '/', ':']) && image.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:@".contains(c));
        if !ok {
            return Err(failed(format!("Invalid stack {}: an image reference, like berth/stack:bookworm", validate::quoted(image))));
        }
    }
    args.save(ctx, "stack", |c| c.build.stack = stack.clone(), |g| g.build.stack = stack.clone()).await
}

pub async fn buildpacks_report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    if args.global {
        let report = Report::new("--global buildpacks information").namespace("buildpacks").global_layer("stack", global.build.stack.clone(), AppConfig::default().stack_with(&global));
        return args.print_global(ctx, report).await;
    }
    args.print_apps(ctx, |_, name, config| {
        Ok(Report::new(format!("{name} buildpacks information"))
            .namespace("buildpacks")
            .row("Buildpacks list", config.buildpacks.clone())
            .layered("stack", config.build.stack.clone(), global.build.stack.clone(), config.stack_with(&global)))
    })
    .await
}

pub async fn builder_report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    let shown = |v: Option<String>| v.unwrap_or_default();
    if args.global {
        let default = AppConfig::default();
        let report = Report::new("--global builder information")
            .namespace("builder")
            .global_layer("selected", global.builder.map(builder_name), global.builder.map(builder_name).unwrap_or_default())
            .global_layer("build-dir", global.build.dir.clone(), default.build_dir_with(&global).unwrap_or_default())
            .global_layer("skip-cleanup", global.build.skip_cleanup.map(|b| b.to_string()), crate::deploy::build_limits(&default, &global, None).skip_cleanup.to_string())
            .row("Builder global build cpu shares", shown(global.build.cpu_shares.map(|n| n.to_string())))
            .row("Builder global build memory", shown(global.build.memory.clone()))
            .row("Builder global build concurrency", global.build_concurrency.unwrap_or(1))
            .row("Builder global build cpu priority", global.build.cpu_priority.clone().unwrap_or_else(|| "idle".into()));
        return args.print_global(ctx, report).await;
    }
    args.print_apps(ctx, |_, name, config| {
        let limits = crate::deploy::build_limits(config, &global, None);
        Ok(Report::new(format!("{name} builder information"))
            .namespace("builder")
            .layered("selected", config.builder.map(builder_name), global.builder.map(builder_name), config.builder_with(&global).map(builder_name).unwrap_or_default())
            .layered("build-dir", config.build.dir.clone(), global.build.dir.clone(), config.build_dir_with(&global).unwrap_or_default())
            .layered("skip-cleanup", config.build.skip_cleanup.map(|b| b.to_string()), global.build.skip_cleanup.map(|b| b.to_string()), limits.skip_cleanup.to_string())
            .row("Builder buildpacks", config.buildpacks.clone())
            .row("Builder build cpu shares", shown(config.build.cpu_shares.map(|n| n.to_string())))
            .row("Builder build memory", shown(config.build.memory.clone()))
            .row("Builder computed build cpu shares", limits.cpu_shares.unwrap_or(1024))
            .row("Builder computed build memory", config.build.memory.clone().or(global.build.memory.clone()).unwrap_or_else(|| "half of the machine's, at most 2047m".into())))
    })
    .await
}
