//! Scheduled jobs: app.json's `cron` entries (dokku's format), and the one scheduler of the
//! daemon that runs them (and services' backup schedules) each minute.
//!
//! A job runs in a one-off container of the app's active release with its config, as
//! `run` would run it; its output goes to `<root>/apps/APP/cron.log` (`logs APP -p cron`).
//! A job still running when its next time comes is skipped, and the log says so. Times the
//! daemon was down for are not made up for.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use crate::engine::Engine;
use crate::output::{Chunk, Input, Output};
use crate::runtime::Client;

/// The cron log is rotated (one old file kept) beyond this size.
const LOG_LIMIT: u64 = 1 << 20;

pub use crate::app_json::{CronJob, schedule};

/// The daemon's scheduler: at the start of each minute, every due job of every deployed,
/// running app, and every due service backup. Runs until `stop`.
pub async fn run(engine: Arc<Engine>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        let now = Utc::now();
        let next_minute = (now + chrono::Duration::seconds(60)).with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap_or(now);
        let wait = (next_minute - now).to_std().unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        tick(&engine, next_minute).await;
    }
}

/// Starts what is due at `at` (a minute's start).
async fn tick(engine: &Arc<Engine>, at: DateTime<Utc>) {
    for app in engine.store.list_apps().unwrap_or_default() {
        let Ok(Some((_, active))) = crate::deploy::serving(engine, &app) else { continue };
        for job in active.cron.iter().filter(|j| j.due(&at)) {
            let key = format!("{app}/{}", job.id());
            if !engine.jobs.start(&key) {
                append_log(engine, &app, &format!("{} cron[{}]: skipped: the run started before is still running", stamp(&at), job.id()));
                continue;
            }
            let (engine, app, job) = (engine.clone(), app.clone(), job.clone());
            tokio::spawn(async move {
                let out = log_output(&engine, &app, &job.id());
                run_job(&engine, &app, &job, &out).await;
                engine.jobs.end(&key);
            });
        }
    }
    crate::services::backups_due(engine, &at).await;
    crate::previews::expire(engine).await;
}

fn stamp(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Runs one job in a one-off container of the app's active release, its output to `out`.
/// Returns its exit code (or -1 if it could not start, said in `out`).
pub async fn run_job(engine: &Engine, app: &str, job: &CronJob, out: &Output) -> i64 {
    let key = format!("{app}/{}", job.id());
    engine.jobs.record(&key, None);
    let code = match run_once(engine, app, job, out).await {
        Ok(code) => code,
        Err(e) => {
            out.error(format!("cron job {} of {app} did not run: {e}", job.id())).await;
            -1
        }
    };
    engine.jobs.record(&key, Some(code));
    code
}

async fn run_once(engine: &Engine, app: &str, job: &CronJob, out: &Output) -> Result<i64, String> {
    let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
    let releases = engine.store.load_releases(app).map_err(|e| e.to_string())?;
    let active = releases.active().ok_or_else(|| format!("{app} is not deployed"))?;
    let scheduler = engine.scheduler(app).await.map_err(|e| e.to_string())?;
    let command = active.one_off(vec!["/bin/sh".into(), "-c".into(), job.command.clone()]);
    let mut spec = crate::deploy::process_spec(engine, app, &config, active, "cron", 0, Some(command));
    let global = engine.store.load_global_env().map_err(|e| e.to_string())?;
    spec.env = crate::deploy::container_env(&global.under(&config.env), config.container_port());
    let mut input = Input::channel(1).1;
    let client = Client { out, input: &mut input, terminal: None };
    scheduler.run_once(&spec, client, None).await.map_err(|e| e.to_string())
}

/// An Output whose lines go to the app's cron log, each stamped and named by job.
fn log_output(engine: &Arc<Engine>, app: &str, id: &str) -> Output {
    let (out, mut chunks) = Output::channel(64);
    let (engine, app, id) = (engine.clone(), app.to_string(), id.to_string());
    tokio::spawn(async move {
        let mut pending = String::new();
        append_log(&engine, &app, &format!("{} cron[{id}]: started", stamp(&Utc::now())));
        while let Some(chunk) = chunks.recv().await {
            let (Chunk::Stdout(bytes) | Chunk::Stderr(bytes)) = chunk;
            pending.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                append_log(&engine, &app, &format!("{} cron[{id}]: {}", stamp(&Utc::now()), line.trim_end()));
            }
        }
        if !pending.trim().is_empty() {
            append_log(&engine, &app, &format!("{} cron[{id}]: {}", stamp(&Utc::now()), pending.trim_end()));
        }
        let ended = engine.jobs.last(&app, &id).and_then(|(_, code)| code);
        let how = ended.map_or("ended".to_string(), |code| format!("exited with {code}"));
        append_log(&engine, &app, &format!("{} cron[{id}]: {how}", stamp(&Utc::now())));
    });
    out
}

/// Where an app's cron output goes.
pub fn log_file(engine: &Engine, app: &str) -> std::path::PathBuf {
    engine.store.app_dir(app).join("cron.log")
}

/// Appends a line to the app's cron log, rotating it (one old file kept) beyond 1 MiB.
fn append_log(engine: &Engine, app: &str, line: &str) {
    use std::io::Write;
    let path = log_file(engine, app);
    if std::fs::metadata(&path).is_ok_and(|m| m.len() > LOG_LIMIT) {
        let _ = std::fs::rename(&path, path.with_extension("log.1"));
    }
    let written = std::fs::OpenOptions::new().create(true).append(true).open(&path).and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        tracing::warn!(app, "cannot write {}: {e}", path.display());
    }
}
