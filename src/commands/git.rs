//! `git:*`: the deploy branch, images built elsewhere, and git itself: `git-receive-pack`
//! and `git-upload-pack` (what `git push` and `git fetch` run over SSH) serve the app's bare
//! repository through the real git, and `git:receive` is what its pre-receive hook calls.

use super::Scope;
use super::images::{deploy_image_as, image_name, set_source_image};
use super::property::SetArgs;
use super::property::{app_only, app_or_global};
use super::report::ReportArgs;
use super::{CmdError, CmdResult, Ctx, failed};
use crate::deploy::{self, Source};
use crate::output::Report;
use crate::validate::AppName;
use crate::{git, validate};
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("git", "Manage app deploys via git")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Set a git setting: deploy-branch NAME (APP or --global; no NAME: main, or master where there is no main), keep-git-dir true|false (APP or --global: the build context holds .git), rev-env-var VAR (the env var holding the deployed commit; no VAR: GIT_REV; "" for none), source-image IMAGE (what ps:rebuild deploys; git:from-image sets it, a push clears it)
    #[command(name = "git:set")]
    Set(SetArgs),
    /// Show an app's git settings
    #[command(name = "git:report")]
    Report(ReportArgs),
    /// Deploy an image built elsewhere (on this server's engine, or pulled)
    #[command(name = "git:from-image")]
    FromImage { app: AppName, image: String },
    /// Deploy an image from a `docker save` archive on stdin: docker save IMG | ssh … git:load-image APP
    #[command(name = "git:load-image")]
    LoadImage { app: AppName, image: Option<String> },
    /// git's side of `git push`: the app's repository (created with the app on a first push)
    #[command(name = "git-receive-pack", hide = true)]
    ReceivePack {
        #[arg(value_parser = git_path)]
        app: AppName,
    },
    /// git's side of `git fetch` and `git clone`
    #[command(name = "git-upload-pack", hide = true)]
    UploadPack {
        #[arg(value_parser = git_path)]
        app: AppName,
    },
    /// (internal) deploy a pushed commit; called by the git hook
    #[command(name = "git:receive", hide = true)]
    Receive {
        app: AppName,
        old: String,
        new: String,
        refname: String,
        /// The build context the hook wrote (a tar in `<root>/tmp`)
        #[arg(long)]
        context: std::path::PathBuf,
        /// The `git receive-pack` running the hook: the branch moves before it exits
        #[arg(long)]
        receive_pack: Option<i32>,
        /// The push's token (`BERTH_PUSH`): who pushed
        #[arg(long)]
        push: Option<String>,
    },
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Set(args) => args.target.scope(),
            Cmd::Receive { .. } => Scope::Internal,
            Cmd::Report(args) => args.scope(),
            Cmd::FromImage { app, .. } | Cmd::LoadImage { app, .. } | Cmd::ReceivePack { app } | Cmd::UploadPack { app } => Scope::App(app),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Set(args) => set(ctx, &args).await,
            Cmd::Report(args) => report(ctx, &args).await,
            Cmd::FromImage { app, image } => super::images::from_image(ctx, &app, &image, "git:from-image").await,
            Cmd::LoadImage { app, image } => load_image(ctx, &app, image.as_deref()).await,
            Cmd::ReceivePack { app } => serve_git(ctx, &app, GitService::ReceivePack).await,
            Cmd::UploadPack { app } => serve_git(ctx, &app, GitService::UploadPack).await,
            Cmd::Receive { app, old, new, refname, context, receive_pack, push } => {
                let pushed = Pushed { old, new, refname, receive_pack, push };
                receive(ctx, &app, &pushed, &context).await
            }
        }
    }
}

/// The app a git path names: `myapp`, `/myapp`, `myapp.git`, `~/myapp/`. Anything else,
/// including any `..` or a deeper path, is not an app and is refused.
fn git_path(path: &str) -> Result<AppName, validate::Invalid> {
    let name = path.trim_start_matches("~/").trim_start_matches('/').trim_end_matches('/');
    name.strip_suffix(".git").unwrap_or(name).parse()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum GitService {
    ReceivePack,
    UploadPack,
}

/// Serves a push or a fetch: the real `git receive-pack`/`upload-pack` on the app's bare
/// repository, its streams bridged to the caller's. A first push creates the app (as dokku
/// does); if that push fails, the app goes again. The child's output is read to its end
/// even when the client is gone (writes to a gone client are no-ops): git then finishes the
/// push, and the deploy its hook is running.
async fn serve_git(ctx: &mut Ctx<'_>, app: &AppName, service: GitService) -> CmdResult {
    let engine = ctx.engine;
    // A push in flight is work a graceful shutdown lets finish (its hook deploys).
    // Held until its client has been told how it ended, not only until git is done.
    if service == GitService::ReceivePack {
        ctx.out.hold_until_delivered(engine.busy());
    }
    let mut created = false;
    if !engine.store.app_exists(app) {
        if service == GitService::UploadPack {
            return Err(crate::store::StoreError::AppMissing(app.to_string()).into());
        }
        if engine.store.load_global()?.disable_autocreation {
            return Err(failed(format!("{app} does not exist, and a push does not create apps here (apps:set --global disable-autocreation): apps:create {app} first")));
        }
        // A key scoped to apps creates one only when an admin allowed it.
        if !ctx.caller.role.is_admin() && !ctx.caller.may_create {
            return Err(CmdError::Denied(format!(
                "{app} does not exist, and key {} may not create apps: an admin creates it (apps:create {app}) or allows it (ssh-keys:add NAME --app {app} --may-create)",
                ctx.caller.name
            )));
        }
        match super::apps::create_app(engine, app).await {
            Ok(()) => {
                tracing::info!(%app, "created by a first push");
                created = true;
                // Not to the caller: stdout is git's protocol here.
                let _ = crate::plugins::trigger(engine, "post-create", &[app.to_string()], &[], &crate::output::Output::discard()).await;
            }
            Err(CmdError::Store(crate::store::StoreError::AppExists(_))) => {}
            Err(e) => return Err(e),
        }
    }
    let served = run_git(ctx, app, service).await;
    if created {
        match super::apps::remove_unborn(engine, app).await {
            Ok(true) => {
                tracing::info!(%app, "removed: its first push failed");
                ctx.out.error(format!("{app} was created by this push, which failed: removed it")).await;
            }
            Ok(false) => {}
            Err(e) => tracing::error!(%app, "cannot remove after a failed first push: {e}"),
        }
    }
    served
}

async fn run_git(ctx: &mut Ctx<'_>, app: &AppName, service: GitService) -> CmdResult {
    let engine = ctx.engine;
    let repo = engine.store.repo_dir(app);
    git::ensure_repo(&repo, &engine.exe, &engine.root(), app).map_err(|e| failed(format!("cannot prepare the repository of {app}: {e}")))?;
    let program = match service {
        GitService::ReceivePack => "receive-pack",
        GitService::UploadPack => "upload-pack",
    };
    // A push waits for a deploy of the app in flight before git advertises the branch: the
    // deploy moves it, and a push made against the branch before it would be refused.
    if service == GitService::ReceivePack {
        engine.wait_for_deploy(app, &ctx.out).await.map_err(failed)?;
    }
    // The hook tells the daemon who pushed by this token (it runs as root on the server).
    let push = (service == GitService::ReceivePack).then(|| engine.begin_push(ctx.caller));
    let mut child = tokio::process::Command::new("git")
        .arg(program)
        .arg(&repo)
        .env("BERTH_ROOT", engine.root())
        .envs(push.as_ref().map(|p| ("BERTH_PUSH", p.token())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed(format!("cannot run git {program}: {e}")))?;
    let (stdin, stdout, stderr) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    // After the pack the client sends EOF (end of input) and waits for the report.
    let stdin_pump = tokio::spawn(ctx.input.take().feed(stdin));
    tokio::join!(ctx.out.copy_from(stdout, false), ctx.out.copy_from(stderr, true));
    let status = child.wait().await;
    stdin_pump.abort();
    match status.ok().and_then(|s| s.code()) {
        Some(0) => Ok(()),
        Some(code) => Err(CmdError::Exit(code)),
        None => Err(CmdError::Exit(super::EXIT_FAILURE)),
    }
}

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

/// `git:set (APP|--global) deploy-branch [BRANCH]` (no BRANCH: back to main or master),
/// `git:set (APP|--global) keep-git-dir true|false`, `git:set APP rev-env-var [VAR]` (no
/// VAR: GIT_REV; an empty one: none), `git:set APP source-image [IMAGE]`.
pub async fn set(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let key = args.property(&[app_or_global("deploy-branch"), app_or_global("keep-git-dir"), app_only("rev-env-var"), app_only("source-image")])?;
    match key {
        "rev-env-var" => set_rev_env_var(ctx, args).await,
        "keep-git-dir" => {
            let keep = args.value().map(|v| v.parse::<bool>().map_err(|_| failed(format!("Invalid keep-git-dir {}: true or false", validate::quoted(v))))).transpose()?;
            args.save(ctx, key, |c| c.keep_git_dir = keep, |g| g.git.keep_git_dir = keep).await
        }
        "source-image" => {
            let app = args.app()?;
            let image = args.value().filter(|v| !v.is_empty()).map(|v| image_name(app, v)).transpose()?;
            args.save(ctx, key, |c| c.source_image = image.clone(), |_| {}).await
        }
        _ => {
            let branch = match args.value() {
                Some(b) if git::valid_branch(b) => Some(b.to_string()),
                Some(b) => return Err(failed(format!("Invalid branch name {}", validate::quoted(b)))),
                None => None,
            };
            args.save(ctx, key, |c| c.deploy_branch = branch.clone(), |g| g.git.deploy_branch = branch.clone()).await
        }
    }
}

async fn set_rev_env_var(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let app = args.app()?;
    let var = args.value().map(str::to_string);
    if let Some(v) = var.as_deref().filter(|v| !v.is_empty()) {
        validate::env_key(v)?;
    }
    ctx.engine
        .update_app(app, |config| {
            config.rev_env_var = var.clone();
            Ok::<_, CmdError>(())
        })
        .await?;
    let shown = match var.as_deref() {
        None => format!("{} (the default)", crate::store::DEFAULT_REV_ENV_VAR),
        Some("") => "none".to_string(),
        Some(v) => v.to_string(),
    };
    ctx.out.step(format!("Set rev-env-var of {app} to {shown}: containers started from now on get it")).await;
    Ok(())
}

/// The deploy branch before any push: `master` until the repository has `main`.
fn computed_branch(ctx: &Ctx<'_>, app: Option<&str>, config: &crate::store::AppConfig, global: &crate::store::GlobalConfig) -> String {
    let has_main = app.is_some_and(|app| git::branch_head(&ctx.engine.store.repo_dir(app), "main").ok().flatten().is_some());
    config.wanted_branch(global, &[], has_main).to_string()
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    let flag = |b: Option<bool>| b.map(|b| b.to_string());
    if args.global {
        let default = crate::store::AppConfig::default();
        let report = Report::new("--global git information")
            .namespace("git")
            .global_layer("deploy-branch", global.git.deploy_branch.clone(), computed_branch(ctx, None, &default, &global))
            .global_layer("keep-git-dir", flag(global.git.keep_git_dir), default.keep_git_dir_with(&global).to_string());
        return args.print_global(ctx, report).await;
    }
    args.print_apps(ctx, |ctx, name, config| {
        Ok({
            let repo = ctx.engine.store.repo_dir(name);
            let branch = computed_branch(ctx, Some(name), config, &global);
            let head = git::branch_head(&repo, &branch).ok().flatten().map(|o| o.to_string()).unwrap_or_default();
            Report::new(format!("{name} git information")).namespace("git")
                .layered("deploy-branch", config.deploy_branch.clone(), global.git.deploy_branch.clone(), branch)
                .layered("keep-git-dir", flag(config.keep_git_dir), flag(global.git.keep_git_dir), config.keep_git_dir_with(&global).to_string())
                .row("Git sha", head)
                .row("Git rev env var", config.rev_env_var.clone().unwrap_or_default())
                .row("Git computed rev env var", config.rev_env_var().unwrap_or_default())
                .row("Git source image", config.source_image.clone().unwrap_or_default())
                .row("Git repo", repo.display().to_string())
        })
    })
    .await
}

/// `git:load-image APP [IMAGE] < image.tar`: loads a `docker save` archive from stdin and
/// deploys the image it holds (IMAGE names which, when it holds several).
pub async fn load_image(ctx: &mut Ctx<'_>, app: &AppName, image: Option<&str>) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    let wanted = image.map(|i| image_name(app, i)).transpose()?;
    let limit = ctx.engine.store.load_global()?.build_context_limit_mb() * 1024 * 1024;
    // Removed when dropped; named `context-*` so a crash's leftover goes at the next start.
    let stored = |e: std::io::Error| failed(format!("cannot store the archive: {e}"));
    let archive = tempfile::Builder::new().prefix("context-image-").suffix(".tar").tempfile_in(ctx.engine.store.tmp_dir()).map_err(stored)?;
    let mut file = tokio::fs::File::from_std(archive.reopen().map_err(stored)?);
    let mut size = 0u64;
    while let Some(chunk) = ctx.input.recv().await {
        size += chunk.len() as u64;
        if size > limit {
            return Err(failed(format!("The image archive is over {} MB (max_build_context_mb in berth.toml)", limit / 1024 / 1024)));
        }
        tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await.map_err(stored)?;
    }
    tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(|e| failed(e.to_string()))?;
    if size == 0 {
        return Err(failed("No image archive on stdin: docker save IMAGE | ssh … git:load-image APP"));
    }
    // A tar's first header says "ustar" at byte 257 (docker save writes POSIX tar).
    let mut header = [0u8; 512];
    let read = std::fs::File::open(archive.path()).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut header));
    if read.is_err() || &header[257..262] != b"ustar" {
        return Err(failed("The input is not an image archive: docker save IMAGE | ssh … git:load-image APP"));
    }
    // What the archive holds, read before anything loads; it loads without the names it
    // gives (docker load would move them, whatever they name): by ID, tagged by the deploy.
    let unnamed = tempfile::Builder::new().prefix("context-image-").suffix(".tar").tempfile_in(ctx.engine.store.tmp_dir()).map_err(stored)?;
    let (from, stripped) = (archive.path().to_path_buf(), unnamed.path().to_path_buf());
    let images = tokio::task::spawn_blocking(move || crate::image_archive::strip_names(&from, &stripped)).await.map_err(|e| failed(e.to_string()))?;
    let images = images.map_err(failed)?;
    let chosen = crate::image_archive::choose(&images, wanted.as_deref()).map_err(failed)?.clone();
    ctx.out.step(format!("Loading the image archive ({:.1} MB)", size as f64 / 1e6)).await;
    let runtime = ctx.engine.runtime().await.map_err(|e| failed(e.to_string()))?;
    let was_there = runtime.image_info(&chosen.id).await.is_some();
    runtime.load(unnamed.path()).await.map_err(|e| failed(e.to_string()))?;
    if runtime.image_info(&chosen.id).await.is_none() {
        return Err(failed(format!("The archive did not load {}", chosen.tags.first().unwrap_or(&chosen.id))));
    }
    // Shown by a name it carried, unless that name is another app's (it never loads).
    let shown = chosen.tags.iter().find(|t| crate::dockerfile::foreign_image(app, std::slice::from_ref(t)).is_none()).cloned().unwrap_or_else(|| chosen.id.clone());
    let deployed = deploy_image_as(ctx, app, (&chosen.id, &shown), "git:load-image", None).await;
    // Loaded for a deploy that did not go through: it goes again (an image a release or a
    // name still holds stays: the engine refuses to remove it).
    if deployed.is_err() && !was_there {
        runtime.remove_image_checked(&chosen.id).await;
    }
    deployed
}

/// A branch update the hook hands over: the branch moved from `old` to `new`, by the
/// `git receive-pack` whose pid is `receive_pack`, for the push whose token is `push`.
pub struct Pushed {
    pub old: String,
    pub new: String,
    pub refname: String,
    pub receive_pack: Option<i32>,
    pub push: Option<String>,
}

/// Called by the pre-receive hook with the pushed commit's tree, a tar it wrote to
/// `<root>/tmp` (`context`), which this takes over and removes when done.
pub async fn receive(ctx: &mut Ctx<'_>, app: &AppName, pushed: &Pushed, context: &std::path::Path) -> CmdResult {
    let (old, new, refname, receive_pack) = (pushed.old.as_str(), pushed.new.as_str(), pushed.refname.as_str(), pushed.receive_pack);
    let pusher = ctx.pusher(app, pushed.push.as_deref())?;
    tracing::info!(%app, pusher = %pusher.name, "deploying a push");
    let context = git::BuildContext::adopt(context, &ctx.engine.store.tmp_dir())
        .ok_or_else(|| failed(format!("{} is not a build context of berth's", context.display())))?;
    let branch = refname.strip_prefix("refs/heads/").ok_or_else(|| failed(format!("{refname} is not a branch")))?;
    let deploying = ctx.engine.deploy_lock(app, &ctx.out).await.map_err(CmdError::Failed)?;
    // Another push may have landed while this one waited: deploying now would serve a
    // commit the branch will not point to.
    let expected = if old == ZERO_SHA { None } else { Some(old.to_string()) };
    let repo = ctx.engine.store.repo_dir(app);
    let current = git::branch_head(&repo, branch).map_err(|e| failed(e.to_string()))?.map(|o| o.to_string());
    if current != expected {
        return Err(failed(format!("{branch} moved while this push waited for another deploy of {app}: fetch, merge and push again")));
    }
    let source = Source::Build { context, git_sha: new.to_string(), pushed: true };
    let cause = deploy::Cause::new("git push", pusher.name);
    // A new app under a wildcard's domain: its certificate first, so that the deploy's
    // first route already serves https.
    crate::wildcard::serve_new_app(ctx.engine, app, &ctx.out).await;
    let version = deploy::deploy_locked(ctx.engine, app, source, &cause, &ctx.out).await.map_err(CmdError::from)?;
    set_source_image(ctx, app, None).await?;
    // git updates the branch only after this hook returns. Until it has, the next push
    // must not look at the branch: keep the deploy lock until it moves. Then the release
    // has landed; if git ends without moving it, the release it made does not stay active.
    let (branch, new, app, engine) = (branch.to_string(), new.to_string(), app.to_string(), ctx.engine.shared());
    tokio::spawn(async move {
        let _deploying = deploying;
        let landed = || git::branch_head(&repo, &branch).ok().flatten().is_some_and(|oid| oid.to_string() == new);
        // The push's git is followed until it exits (it moves the branch first); without
        // its pid (an older hook), for a while.
        let git_runs = || receive_pack.is_some_and(git_process_runs);
        let deadline = std::time::Instant::now() + if receive_pack.is_some() { REF_UPDATE_LIMIT } else { REF_UPDATE_WAIT };
        while std::time::Instant::now() < deadline {
            if landed() {
                deploy::ref_landed(&engine, &app, version).await;
                return;
            }
            if receive_pack.is_some() && !git_runs() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if landed() {
            deploy::ref_landed(&engine, &app, version).await;
            return;
        }
        match deploy::settle_ref(&engine, &app).await {
            Ok(true) => {
                if let Err(e) = deploy::restore(&engine, &app).await {
                    tracing::error!(app, "cannot restore the release that served before an unlanded push: {e}");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::error!(app, "{e}"),
        }
    });
    Ok(())
}

/// Whether `pid` is a live git process (not gone, not a zombie waiting to be reaped).
fn git_process_runs(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // pid (comm) state …: comm may hold spaces, the state follows the last ')'.
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    head.contains("git") && !rest.trim_start().starts_with(['Z', 'X'])
}

/// How long a deploy's lock outlives it, waiting for git to move the branch, when the hook
/// did not say which git runs it.
const REF_UPDATE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// The most a push's git may take to move the branch after its hook succeeded.
const REF_UPDATE_LIMIT: std::time::Duration = std::time::Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_paths_name_one_app() {
        for (path, app) in [("myapp", "myapp"), ("/myapp", "myapp"), ("myapp.git", "myapp"), ("~/myapp/", "myapp"), ("/myapp.git", "myapp")] {
            assert_eq!(git_path(path).unwrap(), *app, "{path}");
        }
        for bad in ["", "../etc", "/var/lib/berth/apps/x", "a/b", "My", "x;y"] {
            assert!(git_path(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_client_gone_does_not_stop_the_child_from_finishing() {
        // 4 MiB through a 64 KiB pipe: the child finishes only if its output keeps being read.
        let (mut child, from) = tokio::io::duplex(64 * 1024);
        let (out, receiver) = crate::output::Output::channel(4);
        drop(receiver);
        let producer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            child.write_all(&vec![b'x'; 4 * 1024 * 1024]).await.unwrap();
        });
        out.copy_from(from, false).await;
        producer.await.unwrap();
    }
}
