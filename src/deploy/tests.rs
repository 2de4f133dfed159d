//! The pipeline driven through the scheduler seam by a scheduler in memory
//! (`scheduler::fake`): what a deploy, a restore, a stop and a heal ask of it and what the
//! state records, with the crash states a real engine produces on purpose. The app has no
//! domains, so nothing reaches nginx.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::scheduler::fake::Fake;
use crate::store::{Releases, Store};

const APP: &str = "shop";

/// An engine over a fresh root whose app `shop` serves v1 (web=2 worker=1) on `fake`.
async fn serving_v1(dir: &std::path::Path) -> (Arc<Engine>, Arc<Fake>) {
    let any = "127.0.0.1:1".parse().unwrap();
    let engine = Engine::new(Store::open(dir).unwrap(), crate::engine::Settings { ssh_listen: any, http_listen: any, https_listen: any, api_listen: any });
    let fake = Arc::new(Fake::default());
    engine.use_scheduler(fake.clone()).await;
    let mut config = AppConfig::new();
    // No HTTP probe (nothing listens at a fake's addresses) and no wait to retire.
    config.checks.disabled = true;
    config.scale = BTreeMap::from([("web".to_string(), 2), ("worker".to_string(), 1)]);
    engine.store.create_app(APP, &config).unwrap();
    let v1 = Release {
        version: 1,
        image: "sha256:one".into(),
        image_tag: format!("berth/{APP}:v1"),
        git_sha: "0123456789abcdef".into(),
        cause: "git push".into(),
        deployed_by: "alice".into(),
        created_at: 1,
        status: Status::Active,
        env: BTreeMap::new(),
        checks: Vec::new(),
        processes: BTreeMap::from([("web".to_string(), "serve".to_string()), ("worker".to_string(), "work".to_string())]),
        launcher: false,
        predeploy: None,
        postdeploy: None,
        cron: Vec::new(),
        formation: config.scale.clone(),
        ref_pending: false,
        compacted: false,
    };
    engine.store.save_releases(APP, &Releases { releases: vec![v1] }).unwrap();
    for slot in ["web.1", "web.2", "worker.1"] {
        fake.running(APP, 1, slot);
    }
    (engine, fake)
}

/// The output of a command as text, and the Output to give it.
fn captured() -> (Output, tokio::task::JoinHandle<String>) {
    let (out, mut rx) = Output::channel(64);
    let text = tokio::spawn(async move {
        let mut text = String::new();
        while let Some(chunk) = rx.recv().await {
            let (crate::output::Chunk::Stdout(bytes) | crate::output::Chunk::Stderr(bytes)) = chunk;
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
        text
    });
    (out, text)
}

fn statuses(engine: &Engine) -> Vec<(u32, Status)> {
    engine.store.load_releases(APP).unwrap().releases.iter().map(|r| (r.version, r.status)).collect()
}

/// Waits until what runs is `want` (the retirement runs in the background).
async fn runs(fake: &Fake, want: &[&str]) {
    for _ in 0..100 {
        if fake.what_runs(APP) == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fake.what_runs(APP), want);
}

fn cause() -> Cause {
    Cause::new("config:set", "bob")
}

#[tokio::test]
async fn a_deploy_starts_the_whole_new_formation_then_retires_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, fake) = serving_v1(dir.path()).await;
    let (out, text) = captured();
    let version = deploy_locked(&engine, APP, Source::Reuse { scale: None }, &cause(), &out).await.unwrap();
    assert_eq!(version, 2);
    runs(&fake, &["v2 web.1", "v2 web.2", "v2 worker.1"]).await;
    assert_eq!(statuses(&engine), vec![(1, Status::Superseded), (2, Status::Active)]);
    let releases = engine.store.load_releases(APP).unwrap();
    assert_eq!(releases.active().unwrap().deployed_by, "bob");
    // Every new instance started before any old one retired.
    let log = fake.log();
    let last_start = log.iter().rposition(|l| l.starts_with("start ")).unwrap();
    let first_retire = log.iter().position(|l| l.starts_with("retire ")).unwrap();
    assert!(last_start < first_retire, "{log:?}");
    drop(out);
    let text = text.await.unwrap();
    assert!(text.contains("Retiring 3 old container(s)"), "{text}");
    assert!(text.contains("shop v2 is live"), "{text}");
}

#[tokio::test]
async fn a_scale_change_rolls_out_the_new_formation_and_becomes_the_apps() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, fake) = serving_v1(dir.path()).await;
    let scale = BTreeMap::from([("web".to_string(), 1), ("worker".to_string(), 0)]);
    deploy_locked(&engine, APP, Source::Reuse { scale: Some(scale.clone()) }, &cause(), &Output::discard()).await.unwrap();
    runs(&fake, &["v2 web.1"]).await;
    assert_eq!(engine.store.load_app(APP).unwrap().scale, scale);
}

#[tokio::test]
async fn an_instance_that_cannot_start_fails_the_deploy_and_the_old_release_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, fake) = serving_v1(dir.path()).await;
    fake.refuse("web.2");
    let err = deploy_locked(&engine, APP, Source::Reuse { scale: None }, &cause(), &Output::discard()).await.unwrap_err();
    assert!(matches!(err, Error::Kept { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("cannot start web.2: refused") && err.ends_with("v1 keeps serving"), "{err}");
    // Its output is kept, ending with why it failed (`releases:output`).
    let kept = std::fs::read_to_string(super::last_output(&engine, APP)).unwrap();
    assert!(kept.contains("Releasing v2") && kept.trim_end().ends_with(&format!(" !     {err}")), "{kept}");
    assert_eq!(fake.what_runs(APP), ["v1 web.1", "v1 web.2", "v1 worker.1"]);
    // What did start of v2 is gone, not only stopped.
    assert_eq!(fake.count(APP), 3);
    assert_eq!(statuses(&engine), vec![(1, Status::Active), (2, Status::Failed)]);
}

#[tokio::test]
async fn an_instance_that_dies_before_its_check_ends_shows_its_last_output() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, fake) = serving_v1(dir.path()).await;
    fake.dies_after_probes("worker.1", 0);
    let (out, text) = captured();
    let err = deploy_locked(&engine, APP, Source::Reuse { scale: None }, &cause(), &out).await.unwrap_err().to_string();
    assert!(err.contains("worker.1 of v2 did not become ready: the container exited with code 1"), "{err}");
    drop(out);
    let text = text.await.unwrap();
    assert!(text.contains("Last output of worker.1:") && text.contains("says goodbye"), "{text}");
    assert_eq!(fake.what_runs(APP), ["v1 web.1", "v1 web.2", "v1 worker.1"]);
    assert_eq!(fake.count(APP), 3);
}

#[tokio::test]
async fn an_instance_dead_between_its_checks_and_the_switch_is_never_routed() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, fake) = serving_v1(dir.path()).await;
    // Ready (asked twice: alive, address), then dead when asked again under the route lock.
    fake.dies_after_probes("web.1", 2);
    let err = deploy_locked(&engine, APP, Source::Reuse { scale: None }, &cause(), &Output::discard()).await.unwrap_err().to_string();
    assert!(err.starts_with("web.1 stopped after it became ready") && err.ends_with("v1 keeps serving"), "{err}");
    assert_eq!(statuses(&engine), vec![(1, Status::Active), (2, Status::Failed)]);
    assert_eq!(fake.what_runs(APP), ["v1 web.1", "v1 web.2", "v1 worker.1"]);
    assert_eq!(fake.count(APP), 3);
}

#[tokio::test]
async fn a_locked_app_or_one_never_deployed_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, fake) = serving_v1(dir.path()).await;
    engine
        .update_app(APP, |c| {
            c.locked = true;
            Ok::<_, crate::store::StoreError>(())
        })
        .await
        .unwrap();
    let err = deploy_locked(&engine, APP, Source::Reuse { scale: None }, &cause(), &Output::discard()).await.unwrap_err().to_string();
    assert!(err.contains("locked"), "{err}");
    engine.store.create_app("fresh", &AppConfig::new()).unwrap();
    let err = deploy_locked(&engine, "fresh", Source::Reuse { scale: None }, &cause(), &Output::discard()).await.unwrap_err().to_string();
    assert!(err.contains("has not been deployed yet"), "{err}");
    assert!(!fake.log().iter().any(|l| l.starts_with("start ")));
}

#[tokio::test]
async fn a_restore_converges_on_the_active_formation() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, fake) = serving_v1(dir.path()).await;
    // After an engine restart: web.2 is gone, the worker died, a v0 container is left over.
    let instances = fake.instances(APP).await.unwrap();
    let web2 = instances.iter().find(|i| i.slot() == "web.2").unwrap().id.clone();
    let worker = instances.iter().find(|i| i.slot() == "worker.1").unwrap().id.clone();
    fake.discard(&[web2]).await.unwrap();
    fake.kill(&worker, 137);
    fake.running(APP, 0, "web.1");
    restore(&engine, APP).await.unwrap();
    assert_eq!(fake.what_runs(APP), ["v1 web.1", "v1 web.2", "v1 worker.1"]);
    assert_eq!(fake.count(APP), 3, "the dead worker and v0's container retired");
    // Twice is once.
    restore(&engine, APP).await.unwrap();
    assert_eq!(fake.count(APP), 3);
    assert_eq!(fake.log().iter().filter(|l| l.starts_with("start ")).count(), 2);
}

#[tokio::test]
async fn a_stopped_app_is_restored_stopped_and_a_started_one_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, fake) = serving_v1(dir.path()).await;
    assert_eq!(stop(&engine, APP).await.unwrap(), 3);
    assert!(fake.what_runs(APP).is_empty());
    engine
        .update_app(APP, |c| {
            c.stopped = true;
            Ok::<_, crate::store::StoreError>(())
        })
        .await
        .unwrap();
    restore(&engine, APP).await.unwrap();
    assert!(fake.what_runs(APP).is_empty());
    engine
        .update_app(APP, |c| {
            c.stopped = false;
            Ok::<_, crate::store::StoreError>(())
        })
        .await
        .unwrap();
    restore(&engine, APP).await.unwrap();
    assert_eq!(fake.what_runs(APP), ["v1 web.1", "v1 web.2", "v1 worker.1"]);
}

#[tokio::test]
async fn a_heal_routes_what_runs_and_restarts_only_what_died_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, fake) = serving_v1(dir.path()).await;
    let (config, active) = serving(&engine, APP).unwrap().unwrap();
    let instances = fake.instances(APP).await.unwrap();
    let id = |slot: &str| instances.iter().find(|i| i.slot() == slot).unwrap().id.clone();
    fake.kill(&id("web.1"), 1);
    let (plan, routed) = heal_plan(&*fake, &instances, &active, &config, &Default::default()).await;
    assert_eq!(plan.restart.iter().map(|(slot, id, code)| (slot.process.as_str(), id.clone(), *code)).collect::<Vec<_>>(), vec![("web", id("web.1"), Some(1))]);
    assert!(plan.dead_web);
    assert_eq!(routed, vec![format!("10.0.0.{}", &id("web.2")[1..])]);
    // What berth stopped is not a death: only web.1, which died on its own, starts again.
    fake.stop(APP, Duration::ZERO).await.unwrap();
    let (plan, routed) = heal_plan(&*fake, &instances, &active, &config, &Default::default()).await;
    assert_eq!(plan.restart.iter().map(|(_, id, _)| id.clone()).collect::<Vec<_>>(), vec![id("web.1")]);
    assert!(routed.is_empty());
}
