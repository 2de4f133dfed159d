//! The daemon's follower of containers' output for the drains: it looks at the process
//! containers when the daemon starts, when the engine says one started, when a drain
//! setting changed and every half minute; each container of an app with a drain is read
//! (the engine's log stream, followed) line by line into its drain's sender.
//!
//! Where a container is read from: one found at the daemon's first look, from then (its
//! earlier output was the last daemon's to send); one found later, from the look before
//! (it started since; one that already stopped is read once, to its end: a crash's last
//! lines are the ones wanted); one read before, after the last line taken (it was started
//! again, or its app has a drain again: what it wrote meanwhile is not sent).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::Key;
use super::wire::{Drain, Line};
use crate::engine::Engine;
use crate::runtime::{AppContainer, Runtime};

/// How often the follower looks even when nothing told it to.
const LOOK_EVERY: Duration = Duration::from_secs(30);
/// How often a follower asks again where its app's lines go, when no setting changed
/// (the global settings' file may be edited by hand).
const ROUTE_EVERY: Duration = Duration::from_secs(5);

/// Follows containers into their drains, forever (the daemon's task).
pub async fn run(engine: Arc<Engine>) {
    tokio::spawn(wake_on_starts(engine.clone()));
    let mut since = chrono::Utc::now().timestamp();
    loop {
        let looked = chrono::Utc::now().timestamp();
        if let Ok(runtime) = engine.runtime().await {
            look(&engine, &runtime, since).await;
        }
        // A container that starts while this look ran is read from a second before it.
        since = looked - 1;
        tokio::select! {
            _ = engine.drains.changed.notified() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

/// Wakes the follower each time one of this root's process containers starts.
async fn wake_on_starts(engine: Arc<Engine>) {
    loop {
        if let Ok(runtime) = engine.runtime().await {
            let mut events = runtime.events();
            while let Some(event) = events.next().await {
                match event {
                    Ok(e) if e.process && e.action == "start" => engine.drains.changed.notify_one(),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Where an app's lines go now: its drain (or the global one), the token, and whether it
/// may be at a private address.
fn route(engine: &Engine, app: &str) -> Option<Key> {
    route_with(engine, &engine.store.load_global().ok()?, app)
}

fn route_with(engine: &Engine, global: &crate::store::GlobalConfig, app: &str) -> Option<Key> {
    let (url, token, private_ok) = engine.store.load_app(app).ok()?.drain_with(global)?;
    Some((Drain::parse(&url).ok()?, token, private_ok))
}

async fn look(engine: &Arc<Engine>, runtime: &Runtime, since: i64) {
    // Senders no app uses any more stop (an app key cannot pile up buffers by changing
    // its drain again and again).
    // Each app's route once per look (the global settings read once).
    let global = engine.store.load_global().ok();
    let routed: HashMap<String, Key> = engine.store.list_apps().unwrap_or_default().into_iter().filter_map(|app| Some((app.clone(), route_with(engine, global.as_ref()?, &app)?))).collect();
    engine.drains.retain(&routed.values().cloned().collect());
    let Ok(containers) = runtime.every_process().await else { return };
    let ids: HashSet<String> = containers.iter().map(|c| c.id.clone()).collect();
    engine.drains.forget_except(&ids);
    for c in containers {
        if !routed.contains_key(&c.app) || (!c.running && engine.drains.was_followed(&c.id)) {
            continue;
        }
        let Some(last) = engine.drains.start_following(&c.id) else { continue };
        let from = match &last {
            // Read before: from the second of its last line (lines up to it are skipped).
            Some(time) if !time.is_empty() => chrono::DateTime::parse_from_rfc3339(time).map(|t| t.timestamp()).unwrap_or(since),
            _ => since,
        };
        tokio::spawn(follow(engine.clone(), runtime.clone(), c, from, last.filter(|t| !t.is_empty())));
    }
}

/// Now, as the engine stamps lines (RFC 3339, nine digits): text order is time order.
fn stamp_now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Reads one container's output into its app's drain until it stops, or until its app has
/// no drain any more.
async fn follow(engine: Arc<Engine>, runtime: Runtime, c: AppContainer, from: i64, after: Option<String>) {
    let mut lines = runtime.output_since(&c.id, from);
    let mut sender = None;
    let (mut routed, mut generation) = (Instant::now() - ROUTE_EVERY, u64::MAX);
    let release = format!("v{}", c.release);
    while let Some((stderr, raw)) = lines.next().await {
        let (time, text) = raw.split_once(' ').unwrap_or((raw.as_str(), ""));
        if after.as_deref().is_some_and(|after| time <= after) {
            continue;
        }
        if routed.elapsed() >= ROUTE_EVERY || generation != engine.drains.generation() {
            (routed, generation) = (Instant::now(), engine.drains.generation());
            sender = route(&engine, &c.app).map(|key| engine.drains.sender(&key));
        }
        let Some(to) = &sender else {
            // No drain now: a later one starts from now, not from here.
            engine.drains.took(&c.id, &stamp_now());
            break;
        };
        to.put(Line { time: time.to_string(), app: c.app.clone(), process: c.process.clone(), instance: c.index, release: release.clone(), stream: if stderr { "stderr" } else { "stdout" }, text: text.to_string() });
        engine.drains.took(&c.id, time);
    }
    engine.drains.stop_following(&c.id);
}
