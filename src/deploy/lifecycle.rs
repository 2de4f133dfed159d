//! An app's life outside a deploy: restored to its state (daemon or engine start,
//! `ps:start`), stopped, torn down; a push's release settled against its branch; images no
//! release needs removed.

use std::time::Duration;

use super::route::{live_ips, route};
use super::{process_spec, stop_timeout};
use super::Error;
use crate::engine::Engine;
use crate::git;
use crate::output::Output;
use crate::runtime::Runtime;
use crate::store::Status;

/// Makes what runs match what the app's state says (after a daemon or engine restart, and
/// for `ps:start`): the active release's formation runs, its web instances are routed, and
/// instances of other releases retire (the scheduler converges, as the reconcile plans). A
/// stopped app has nothing running. Call with the app's deploy lock held.
pub async fn restore(engine: &Engine, app: &str) -> Result<(), Error> {
    let releases = engine.store.load_releases(app)?;
    let scheduler = engine.scheduler(app).await?;
    let Some(active) = releases.active().cloned() else {
        if releases.releases.is_empty() {
            return Ok(());
        }
        // Nothing serves (e.g. a first push that never landed): nothing runs or is routed.
        {
            let _routing = engine.route_lock(app).await;
            engine.nginx.remove_site(app).await?;
        }
        let stale: Vec<String> = scheduler.instances(app).await?.into_iter().map(|i| i.id).collect();
        scheduler.retire(&stale, stop_timeout(engine, app)).await;
        return Ok(());
    };
    scheduler.prepare().await?;
    let config = engine.store.load_app(app)?;
    if config.stopped {
        return stop(engine, app).await.map(|_| ());
    }
    let routing = engine.route_lock(app).await;
    let formation = active.formation_or(&config.scale);
    let slots = formation.iter().flat_map(|(process, count)| (1..=*count).map(move |index| (process, index)));
    let units: Vec<_> = slots.map(|(process, index)| process_spec(engine, app, &config, &active, process, index, None)).collect();
    let converged = scheduler.converge(app, active.version, &units).await?;
    let ips = live_ips(&*scheduler, &converged.web).await;
    route(engine, app, &config, active.version, &ips, &Output::discard()).await?;
    drop(routing);
    scheduler.retire(&converged.retire, stop_timeout(engine, app)).await;
    Ok(())
}

/// What git says of a push's release that served before git moved the branch (a crash or a
/// failed ref update in between). The branch is the truth: if it points at the release's
/// commit, the mark goes; if not, the push never landed: the release is recorded as failed
/// and the one that served before is active again (`restore` then runs it). Returns
/// whether the active release changed. Call with the app's deploy lock held.
pub async fn settle_ref(engine: &Engine, app: &str) -> Result<bool, Error> {
    let (config, global) = (engine.store.load_app(app)?, engine.store.load_global()?);
    let _lock = engine.store.lock_app(app).await;
    let mut releases = engine.store.load_releases(app)?;
    let Some(active) = releases.active().filter(|r| r.ref_pending).cloned() else {
        return Ok(false);
    };
    let repo = engine.store.repo_dir(app);
    let branches = config.deploy_branches(&global);
    // git may be moving the branch this very moment (its lock file is there): let it finish.
    for _ in 0..100 {
        if !branches.iter().any(|b| repo.join("refs/heads").join(format!("{b}.lock")).exists()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let landed = branches.iter().any(|b| git::branch_head(&repo, b).ok().flatten().is_some_and(|oid| oid.to_string() == active.git_sha));
    let previous = releases.releases.iter().filter(|r| r.status == Status::Superseded && r.version < active.version).map(|r| r.version).max();
    for r in &mut releases.releases {
        if r.version == active.version {
            r.ref_pending = false;
            if !landed {
                r.status = Status::Failed;
                r.cause = format!("{} (not landed: the push did not complete)", r.cause);
            }
        } else if !landed && Some(r.version) == previous {
            r.status = Status::Active;
        }
    }
    engine.store.save_releases(app, &releases)?;
    if !landed {
        tracing::warn!(app, "v{} served but its push never landed: v{} is active again", active.version, previous.map_or("none".into(), |v| v.to_string()));
    }
    Ok(!landed)
}

/// The branch now points at `version`'s commit: its push landed.
pub async fn ref_landed(engine: &Engine, app: &str, version: u32) {
    let _lock = engine.store.lock_app(app).await;
    let saved = engine.store.load_releases(app).and_then(|mut releases| {
        let Some(r) = releases.releases.iter_mut().find(|r| r.version == version && r.ref_pending) else {
            return Ok(());
        };
        r.ref_pending = false;
        engine.store.save_releases(app, &releases)
    });
    if let Err(e) = saved {
        tracing::error!(app, "cannot record that v{version} landed: {e}");
    }
}

/// Removes images of the app's that no release needs (failed or aborted builds, releases
/// beyond `keep`, pruning a crash interrupted). An image a container still uses stays.
/// Call with the app's deploy lock held.
pub async fn prune_images(engine: &Engine, app: &str) -> Result<usize, Error> {
    let config = engine.store.load_app(app)?;
    let releases = engine.store.load_releases(app)?;
    let runtime = engine.runtime().await?;
    let pruned = releases.images_to_prune(config.keep_releases);
    let kept: Vec<&str> = releases.releases.iter().filter(|r| !pruned.contains(&r.image_tag)).map(|r| r.image.as_str()).collect();
    let mut removed = 0;
    for image in own_images(engine, &runtime, app, &releases).await? {
        if kept.contains(&image.id.as_str()) {
            // A kept image may also carry tags of releases that no longer need them.
            for tag in image.tags.iter().filter(|t| pruned.contains(t)) {
                runtime.remove_image(tag).await;
            }
            continue;
        }
        if remove_app_image(&runtime, app, &image).await {
            removed += 1;
        }
    }
    Ok(removed)
}

/// The images this root made for the app (`Runtime::app_images`): its releases' and the one
/// its last build left if no release records it.
async fn own_images(engine: &Engine, runtime: &Runtime, app: &str, releases: &crate::store::Releases) -> Result<Vec<crate::runtime::AppImage>, Error> {
    let mut known: Vec<String> = releases.releases.iter().map(|r| r.image.clone()).collect();
    known.sort();
    known.dedup();
    let leftover = engine.store.load_build_tag(app).filter(|tag| !releases.releases.iter().any(|r| r.image_tag == *tag));
    Ok(runtime.app_images(app, &known, leftover.as_deref()).await?)
}

/// Removes an image of the app's: berth's tags of it (`berth/APP:…`), then the image itself
/// unless it carries other names: an image deployed with `git:from-image` keeps the name
/// its owner gave it. True if the image is gone.
async fn remove_app_image(runtime: &Runtime, app: &str, image: &crate::runtime::AppImage) -> bool {
    let ours = format!("berth/{app}:");
    let named: Vec<&String> = image.tags.iter().filter(|t| t.as_str() != "<none>:<none>").collect();
    for tag in named.iter().filter(|t| t.starts_with(&ours)) {
        runtime.remove_image_checked(tag).await;
    }
    if named.iter().any(|t| !t.starts_with(&ours)) {
        return false;
    }
    runtime.remove_image_checked(&image.id).await
}

/// Stops an app's containers, keeping them and its state (`ps:stop`). Its site goes first,
/// so requests get nginx's answer for an unknown host at once rather than a connection
/// to an address that no longer answers.
pub async fn stop(engine: &Engine, app: &str) -> Result<usize, Error> {
    {
        let _routing = engine.route_lock(app).await;
        engine.nginx.remove_site(app).await?;
    }
    let scheduler = engine.scheduler(app).await?;
    Ok(scheduler.stop(app, stop_timeout(engine, app)).await?)
}

/// Stops and removes everything an app runs (one-off containers too), its images, and its
/// site.
pub async fn teardown(engine: &Engine, app: &str) -> Result<(), Error> {
    // Docker first: when it cannot be reached, nothing is removed (containers would be
    // left running with no app to own them).
    let ever_ran = !engine.store.load_releases(app)?.releases.is_empty();
    let reached = async { Ok::<_, Error>((engine.scheduler(app).await?, engine.runtime().await?)) }.await;
    match reached {
        Ok((scheduler, runtime)) => {
            match scheduler.instances(app).await {
                Err(e) if ever_ran => {
                    return Err(Error::from(format!("cannot list {app}'s containers: {e}; nothing was removed")));
                }
                Err(_) => {}
                Ok(_) => scheduler.remove_all(app).await?,
            }
            let releases = engine.store.load_releases(app)?;
            // Their tags first: an app renamed since keeps the tags of its earlier name.
            for release in &releases.releases {
                runtime.remove_release_image(&release.image_tag, &release.image).await;
            }
            for image in own_images(engine, &runtime, app, &releases).await.unwrap_or_default() {
                remove_app_image(&runtime, app, &image).await;
            }
        }
        Err(e) if ever_ran => {
            return Err(Error::from(format!("{e}: {app}'s containers cannot be removed, so nothing was; run this again once Docker answers")));
        }
        Err(_) => {}
    }
    let _routing = engine.route_lock(app).await;
    Ok(engine.nginx.remove_site(app).await?)
}
