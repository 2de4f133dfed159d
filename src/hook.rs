//! `berth git-hook APP`: the pre-receive hook of every app repository.
//!
//! It runs inside `git receive-pack`, where the pushed objects are still quarantined: it
//! reads them with git2 (`open_from_env`), sends the commit's tree to the daemon as a tar,
//! and relays the deploy's output, which git shows the pusher as `remote:` lines. A non-zero
//! exit rejects the push, so the branch never points at a commit that failed to deploy.

use std::io::BufRead;
use std::path::Path;

use crate::store::Store;

const ZERO_SHA: &str = "0000000000000000000000000000000000000000";

pub async fn run(root: &Path, app: &str) -> i32 {
    let updates: Vec<(String, String, String)> = std::io::stdin()
        .lock()
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| {
            let mut parts = line.split_whitespace();
            Some((parts.next()?.to_string(), parts.next()?.to_string(), parts.next()?.to_string()))
        })
        .collect();
    let store = match Store::open(root) {
        Ok(store) => store,
        Err(e) => {
            eprintln!(" !     {e}");
            return 1;
        }
    };
    let (config, limit, global) = match (store.load_app(app), store.load_global()) {
        (Ok(config), Ok(global)) => {
            let limit = Limit { mb: global.build_context_limit_mb(), build_dir: config.build_dir_with(&global), keep_git: config.keep_git_dir_with(&global) };
            (config, limit, global)
        }
        (Err(e), _) | (_, Err(e)) => {
            eprintln!(" !     {e}");
            return 1;
        }
    };
    // Who pushed, as berth's `git receive-pack` was told: handed back with each request.
    let push: Vec<String> = std::env::var("BERTH_PUSH").map(|t| vec!["--push".to_string(), t]).unwrap_or_default();
    let pushed: Vec<&str> = updates.iter().filter_map(|(_, _, r)| r.strip_prefix("refs/heads/")).collect();
    let has_main = git2::Repository::open_from_env().is_ok_and(|repo| repo.find_reference("refs/heads/main").is_ok());
    let deploys = config.deploy_branch_of(&global, &pushed, has_main);
    let wanted = config.wanted_branch(&global, &pushed, has_main).to_string();
    for (old, new, refname) in updates.iter().cloned() {
        let Some(branch) = refname.strip_prefix("refs/heads/") else { continue };
        if deploys.as_deref() != Some(branch) {
            // A deleted branch's preview goes even when previews were turned off since.
            let serves = config.previews.enabled || (new == ZERO_SHA && store.app_exists(&crate::previews::app_name(app, branch)));
            if !serves {
                println!("-----> Pushed {branch}: not deployed ({app} deploys {wanted}; git:set {app} deploy-branch to change, or previews:enable {app})");
                continue;
            }
            // Previews: any other branch is deployed as its own app; deleted, it goes.
            let code = preview(root, &store, (app, branch), (&new, &refname), &limit, &push).await;
            if code != 0 {
                return code;
            }
            continue;
        }
        if new == ZERO_SHA {
            println!("-----> Deleted {branch}: the running release keeps serving");
            continue;
        }
        // Written to a file, streamed: a push of any size costs no memory here or in the daemon.
        let context = match write_context((&new, branch), &store.tmp_dir(), &limit) {
            Ok(context) => context,
            Err(e) => {
                eprintln!(" !     Cannot take the pushed commit {new}: {e}");
                return 1;
            }
        };
        // The daemon takes the file over and removes it when the deploy is done; dropping
        // it here removes it if the daemon never got that far.
        let mut argv = vec!["git:receive".into(), app.into(), old, new, refname, "--context".into(), context.path().display().to_string()];
        // git moves the branch after this hook, before it exits itself: the daemon follows it.
        argv.extend(["--receive-pack".to_string(), nix::unistd::getppid().as_raw().to_string()]);
        argv.extend(push.iter().cloned());
        let code = crate::client::run_with(root, argv, tokio::io::empty(), true).await;
        drop(context);
        if code != 0 {
            return code;
        }
    }
    0
}

/// A pushed branch of an app with previews: deployed as its own app, or gone if deleted.
/// The exit code of the daemon's command.
async fn preview(root: &Path, store: &Store, (app, branch): (&str, &str), (new, refname): (&str, &str), limit: &Limit, push: &[String]) -> i32 {
    if new == ZERO_SHA {
        return crate::client::run_with(root, vec!["previews:gone".into(), app.into(), branch.into()], tokio::io::empty(), true).await;
    }
    let context = match write_context((new, branch), &store.tmp_dir(), limit) {
        Ok(context) => context,
        Err(e) => {
            eprintln!(" !     Cannot take the pushed commit {new}: {e}");
            return 1;
        }
    };
    let mut argv = vec!["previews:deploy".into(), app.into(), new.to_string(), refname.to_string(), "--context".into(), context.path().display().to_string()];
    argv.extend(push.iter().cloned());
    let code = crate::client::run_with(root, argv, tokio::io::empty(), true).await;
    drop(context);
    code
}

/// What a pushed tree's build context is cut to: its size, and the directory built; and
/// whether it keeps the repository (`keep-git-dir`).
struct Limit {
    mb: u64,
    build_dir: Option<String>,
    keep_git: bool,
}

/// The build context of commit `sha`, pushed to `branch`.
fn write_context((sha, branch): (&str, &str), dir: &Path, limit: &Limit) -> Result<crate::git::BuildContext, String> {
    let repo = git2::Repository::open_from_env().map_err(|e| e.to_string())?;
    let commit = git2::Oid::from_str(sha).map_err(|e| e.to_string())?;
    let source = crate::git::Tree { commit, subdir: limit.build_dir.as_deref(), keep_git: limit.keep_git.then_some(branch) };
    crate::git::BuildContext::write(&repo, &source, dir, limit.mb).map_err(|e| e.to_string())
}
