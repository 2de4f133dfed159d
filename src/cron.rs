//! Scheduled jobs: app.json's `cron` entries (dokku's format), and the one scheduler of the
//! daemon that runs them (and services' backup schedules) each minute.
//!
//! A job runs in a one-off container of the app's active release with its config, as
//! `run` would run it; its output goes to `<root>/apps/APP/cron.log` (`logs APP -p cron`).
//! A job still running when its next time comes is skipped, and the log says so. Times the
//! daemon was down for are not made up for.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::output::{Chunk, Input, Output};
use crate::runtime::Client;

/// At most this many jobs per app.
pub const MAX_JOBS: usize = 50;
/// The cron log is rotated (one old file kept) beyond this size.
const LOG_LIMIT: u64 = 1 << 20;

/// One scheduled job of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronJob {
    pub schedule: String,
    pub command: String,
}

impl CronJob {
    /// A short id that stays the same while schedule and command do (dokku's cron ids are
    /// hashes too).
    pub fn id(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(format!("{}\n{}", self.schedule, self.command));
        digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
    }

    /// Whether the job is due in the minute `at` starts.
    pub fn due(&self, at: &DateTime<Utc>) -> bool {
        schedule(&self.schedule).ok().is_some_and(|cron| cron.is_time_matching(at).unwrap_or(false))
    }

    /// The next time the job is due after `after`.
    pub fn next(&self, after: &DateTime<Utc>) -> Option<DateTime<Utc>> {
        schedule(&self.schedule).ok()?.find_next_occurrence(after, false).ok()
    }
}

/// A cron schedule: five fields (minute hour day-of-month month day-of-week) or a
/// shorthand such as `@daily`, as Vixie cron takes them.
pub fn schedule(text: &str) -> Result<croner::Cron, String> {
    let text = text.trim();
    if text.len() > 100 || text.split_whitespace().count() > 5 {
        return Err(format!("Invalid cron schedule {}: five fields, minute hour day month weekday (e.g. \"0 3 * * *\")", crate::validate::quoted(text)));
    }
    croner::Cron::new(text)
        .parse()
        .map_err(|e| format!("Invalid cron schedule {}: {e} (five fields, minute hour day month weekday, e.g. \"0 3 * * *\")", crate::validate::quoted(text)))
}

#[derive(Deserialize)]
struct AppJson {
    #[serde(default)]
    cron: Vec<CronJson>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CronJson {
    command: String,
    schedule: String,
}

/// The `cron` entries of an app.json, checked: a valid schedule and a command each. Pure.
pub fn parse_app_json(app_json: &str) -> Result<Vec<CronJob>, String> {
    let parsed: AppJson = serde_json::from_str(app_json).map_err(|e| format!("app.json is not valid: {e}"))?;
    if parsed.cron.len() > MAX_JOBS {
        return Err(format!("app.json has {} cron entries: berth runs at most {MAX_JOBS}", parsed.cron.len()));
    }
    let mut jobs = Vec::new();
    for (n, entry) in parsed.cron.into_iter().enumerate() {
        let command = entry.command.trim().to_string();
        if command.is_empty() || command.len() > 4096 || command.contains('\0') {
            return Err(format!("app.json cron entry {}: the command is empty or too long", n + 1));
        }
        schedule(&entry.schedule).map_err(|e| format!("app.json cron entry {}: {e}", n + 1))?;
        jobs.push(CronJob { schedule: entry.schedule.trim().to_string(), command });
    }
    Ok(jobs)
}

/// When a job last started and how it ended (None: still running).
pub type LastRun = (DateTime<Utc>, Option<i64>);

/// What the scheduler knows of jobs between runs (not kept across daemon restarts).
#[derive(Default)]
pub struct Jobs {
    /// `APP/ID` of jobs running now.
    running: Mutex<HashSet<String>>,
    /// `APP/ID` → when it last started and how it ended (None: still running).
    last: Mutex<BTreeMap<String, LastRun>>,
}

impl Jobs {
    /// Marks `key` running; false if it already was.
    pub fn start(&self, key: &str) -> bool {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string())
    }

    pub fn end(&self, key: &str) {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// When the job last started and its exit code (None while it runs).
    pub fn last(&self, app: &str, id: &str) -> Option<LastRun> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).get(&format!("{app}/{id}")).cloned()
    }
}

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
    engine.jobs.last.lock().unwrap_or_else(|e| e.into_inner()).insert(key.clone(), (Utc::now(), None));
    let code = match run_once(engine, app, job, out).await {
        Ok(code) => code,
        Err(e) => {
            out.error(format!("cron job {} of {app} did not run: {e}", job.id())).await;
            -1
        }
    };
    engine.jobs.last.lock().unwrap_or_else(|e| e.into_inner()).insert(key, (Utc::now(), Some(code)));
    code
}

async fn run_once(engine: &Engine, app: &str, job: &CronJob, out: &Output) -> Result<i64, String> {
    let config = engine.store.load_app(app).map_err(|e| e.to_string())?;
    let releases = engine.store.load_releases(app).map_err(|e| e.to_string())?;
    let active = releases.active().ok_or_else(|| format!("{app} is not deployed"))?;
    let runtime = engine.runtime().await.map_err(|e| e.to_string())?;
    let command = active.one_off(vec!["/bin/sh".into(), "-c".into(), job.command.clone()]);
    let mut spec = crate::deploy::process_spec(engine, app, &config, active, "cron", 0, Some(command));
    let global = engine.store.load_global_env().map_err(|e| e.to_string())?;
    spec.env = crate::deploy::container_env(&global.under(&config.env), config.container_port());
    let mut input = Input::channel(1).1;
    let client = Client { out, input: &mut input, terminal: None };
    runtime.run_once(&spec, client).await.map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_json_cron_entries_are_checked() {
        let jobs = parse_app_json(r#"{"cron":[{"command":"python3 task.py","schedule":"*/5 * * * *"},{"command":"echo hi","schedule":"@daily"}]}"#).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].id().len(), 10);
        assert_ne!(jobs[0].id(), jobs[1].id());
        assert!(parse_app_json(r#"{"scripts":{}}"#).unwrap().is_empty());
        for bad in [
            r#"{"cron":[{"command":"x","schedule":"61 * * * *"}]}"#,
            r#"{"cron":[{"command":"x","schedule":"* * * * * *"}]}"#,
            r#"{"cron":[{"command":" ","schedule":"* * * * *"}]}"#,
            r#"{"cron":[{"command":"x"}]}"#,
        ] {
            assert!(parse_app_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jobs_are_due_in_the_minutes_their_schedule_names() {
        let job = CronJob { schedule: "30 3 * * *".into(), command: "x".into() };
        let at = |h: u32, m: u32| Utc::now().with_hour(h).unwrap().with_minute(m).unwrap().with_second(0).unwrap().with_nanosecond(0).unwrap();
        assert!(job.due(&at(3, 30)));
        assert!(!job.due(&at(3, 31)));
        assert_eq!(job.next(&at(3, 0)).unwrap(), at(3, 30));
    }
}
