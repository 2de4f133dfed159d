//! `stack:*`, `buildpacks:*`, `builder:*`: how apps without a Dockerfile are built.

use super::Scope;
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::buildpack::{self, STACK_IMAGE};
use crate::output::{Format, Report, print_reports};
use crate::store::Builder;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[
    ("builder", "Manage the builder settings for an app"),
    ("buildpacks", "Manage buildpack settings for an app"),
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
    /// Replace an app's buildpacks
    #[command(name = "buildpacks:set")]
    BuildpacksSet {
        app: AppName,
        #[arg(required = true)]
        buildpacks: Vec<String>,
    },
    /// Remove a buildpack
    #[command(name = "buildpacks:remove")]
    BuildpacksRemove { app: AppName, buildpack: String },
    /// Go back to detecting the buildpack
    #[command(name = "buildpacks:clear")]
    BuildpacksClear { app: AppName },
    /// List an app's buildpacks
    #[command(name = "buildpacks:list")]
    BuildpacksList { app: AppName },
    /// Show an app's buildpacks and the stack image they build on
    #[command(name = "buildpacks:report")]
    BuildpacksReport(ReportArgs),
    /// Choose how an app is built: dockerfile | buildpacks | detect
    #[command(name = "builder:set")]
    BuilderSet { app: AppName, builder: BuilderChoice },
    /// Show an app's builder
    #[command(name = "builder:report")]
    BuilderReport(ReportArgs),
}

/// `builder:set` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuilderChoice {
    Dockerfile,
    Buildpacks,
    Detect,
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
            | Cmd::BuilderSet { app, .. } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::StackBuild { force } => stack_build(ctx, force).await,
            Cmd::StackReport { format } => stack_report(ctx, format).await,
            Cmd::BuildpacksAdd { app, buildpack, index } => buildpacks_change(ctx, &app, Change::Add(buildpack, index)).await,
            Cmd::BuildpacksSet { app, buildpacks } => buildpacks_change(ctx, &app, Change::Set(buildpacks)).await,
            Cmd::BuildpacksRemove { app, buildpack } => buildpacks_change(ctx, &app, Change::Remove(buildpack)).await,
            Cmd::BuildpacksClear { app } => buildpacks_change(ctx, &app, Change::Clear).await,
            Cmd::BuildpacksList { app } => buildpacks_list(ctx, &app).await,
            Cmd::BuilderSet { app, builder } => {
                let choice = match builder {
                    BuilderChoice::Dockerfile => Some(crate::store::Builder::Dockerfile),
                    BuilderChoice::Buildpacks => Some(crate::store::Builder::Buildpacks),
                    BuilderChoice::Detect => None,
                };
                builder_set(ctx, &app, choice).await
            }
            Cmd::BuilderReport(args) => builder_report(ctx, &args).await,
            Cmd::BuildpacksReport(args) => buildpacks_report(ctx, &args).await,
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
    Set(Vec<String>),
    Remove(String),
    Clear,
}

pub async fn buildpacks_change(ctx: &mut Ctx<'_>, app: &AppName, change: Change) -> CmdResult {
    match &change {
        Change::Add(v, _) => buildpack::validate(v).map_err(CmdError::Failed)?,
        Change::Set(list) => {
            for v in list {
                buildpack::validate(v).map_err(CmdError::Failed)?;
            }
        }
        _ => {}
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
    ctx.out.header(format!("{app} buildpacks")).await;
    if config.buildpacks.is_empty() {
        ctx.out.detail(format!("(detected from: {})", buildpack::builtin_names().join(", "))).await;
    }
    for (i, b) in config.buildpacks.iter().enumerate() {
        ctx.out.detail(format!("{}. {b}", i + 1)).await;
    }
    Ok(())
}

pub async fn builder_set(ctx: &mut Ctx<'_>, app: &AppName, builder: Option<Builder>) -> CmdResult {
    ctx.engine
        .update_app(app, |config| {
            config.builder = builder;
            Ok::<_, CmdError>(())
        })
        .await?;
    let shown = match builder {
        Some(Builder::Dockerfile) => "dockerfile",
        Some(Builder::Buildpacks) => "buildpacks",
        None => "detected (a Dockerfile wins, else buildpacks)",
    };
    ctx.out.step(format!("Builder of {app}: {shown}")).await;
    Ok(())
}

pub async fn buildpacks_report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("buildpacks")?;
    args.print_apps(ctx, |_, name, config| {
        Ok(Report::new(format!("{name} buildpacks information")).row("Buildpacks list", config.buildpacks.clone()).row("Buildpacks stack", STACK_IMAGE))
    })
    .await
}

pub async fn builder_report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    args.no_global("builder")?;
    args.print_apps(ctx, |_, name, config| {
        Ok({
            let builder = match config.builder {
                Some(Builder::Dockerfile) => "dockerfile",
                Some(Builder::Buildpacks) => "buildpacks",
                None => "",
            };
            Report::new(format!("{name} builder information")).row("Builder selected", builder).row("Builder buildpacks", config.buildpacks.clone())
        })
    })
    .await
}
