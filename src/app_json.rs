//! An app's `app.json` (dokku's format), read once per release into what the rest of berth
//! uses: the web readiness checks, the cron jobs and the deploy scripts. Pure: no IO, and
//! nothing of berth above it, so the store can keep these specs in every release.

use crate::validate::Invalid;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a release takes from its app.json. No app.json is the default: no checks of its
/// own (the default check applies), no jobs, no scripts.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AppJson {
    pub checks: Vec<CheckSpec>,
    pub cron: Vec<CronJob>,
    pub scripts: Scripts,
}

/// Reads an app.json; a malformed one, or one whose checks, jobs or scripts are not
/// acceptable, is an error that says which entry and why.
pub fn parse(text: &str) -> Result<AppJson, Invalid> {
    let raw: Raw = serde_json::from_str(text).map_err(|e| Invalid(format!("app.json is not valid: {e}")))?;
    Ok(AppJson { checks: checks(&raw.healthchecks)?, cron: cron(raw.cron)?, scripts: scripts(raw.scripts) })
}

#[derive(Deserialize)]
struct Raw {
    #[serde(default)]
    healthchecks: HashMap<String, Vec<RawCheck>>,
    #[serde(default)]
    cron: Vec<RawCron>,
    #[serde(default)]
    scripts: Option<RawScripts>,
}

// ---------------------------------------------------------------------------------------
// Readiness checks (`healthchecks.web`)
// ---------------------------------------------------------------------------------------

/// One check of the `web` process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpec {
    pub name: String,
    /// Request path, starting with `/`.
    pub path: String,
    /// Text the body must contain, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Bad answers tolerated (overrides `checks:set attempts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// Seconds one request may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<u64>,
    /// Seconds to wait after the container starts before the first probe.
    #[serde(default)]
    pub initial_delay: u64,
    /// Port to probe instead of the app's container port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl CheckSpec {
    /// With no app.json checks: the port accepts and HTTP answers below 500.
    pub fn default_check() -> CheckSpec {
        CheckSpec {
            name: "default".into(),
            path: "/".into(),
            content: None,
            attempts: None,
            request_timeout: None,
            initial_delay: 0,
            port: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCheck {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    name: Option<String>,
    path: Option<String>,
    content: Option<String>,
    attempts: Option<u32>,
    timeout: Option<u64>,
    initial_delay: Option<u64>,
    port: Option<u16>,
    command: Option<serde_json::Value>,
}

/// Longest app.json `initialDelay`, `timeout` (per request), and most `attempts`. Whatever
/// they say, `checks:set timeout` (at most an hour) bounds a container's whole wait.
pub const MAX_INITIAL_DELAY: u64 = 600;
pub const MAX_REQUEST_TIMEOUT: u64 = 120;
pub const MAX_ATTEMPTS: u32 = 1000;

/// The web checks, in dokku's format. No checks for web gives an empty list (the default
/// check applies).
fn checks(healthchecks: &HashMap<String, Vec<RawCheck>>) -> Result<Vec<CheckSpec>, Invalid> {
    let Some(raw) = healthchecks.get("web") else { return Ok(Vec::new()) };
    let mut checks = Vec::new();
    for (i, check) in raw.iter().enumerate() {
        let name = check.name.clone().unwrap_or_else(|| format!("check {}", i + 1));
        // liveness checks are for running containers, not for the swap.
        if matches!(check.kind.as_deref(), Some("liveness")) {
            continue;
        }
        if check.command.is_some() {
            return Err(Invalid(format!("app.json check {name:?}: command checks are not supported yet; use path")));
        }
        // Bounded, so a check can never hold a deploy (and its lock) for long.
        for (field, value, max) in [("initialDelay", check.initial_delay, MAX_INITIAL_DELAY), ("timeout", check.timeout, MAX_REQUEST_TIMEOUT)] {
            if value.is_some_and(|v| v > max) {
                return Err(Invalid(format!("app.json check {name:?}: {field} is at most {max} seconds")));
            }
        }
        if check.attempts.is_some_and(|a| a > MAX_ATTEMPTS) {
            return Err(Invalid(format!("app.json check {name:?}: attempts is at most {MAX_ATTEMPTS}")));
        }
        let path = check.path.clone().unwrap_or_else(|| "/".into());
        if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Invalid(format!("app.json check {name:?}: path must start with / and contain no spaces")));
        }
        checks.push(CheckSpec {
            name,
            path,
            content: check.content.clone(),
            attempts: check.attempts,
            request_timeout: check.timeout,
            initial_delay: check.initial_delay.unwrap_or(0),
            port: check.port,
        });
    }
    Ok(checks)
}

// ---------------------------------------------------------------------------------------
// Scheduled jobs (`cron`)
// ---------------------------------------------------------------------------------------

/// At most this many jobs per app.
pub const MAX_JOBS: usize = 50;

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
pub fn schedule(text: &str) -> Result<croner::Cron, Invalid> {
    let text = text.trim();
    if text.len() > 100 || text.split_whitespace().count() > 5 {
        return Err(Invalid(format!("Invalid cron schedule {}: five fields, minute hour day month weekday (e.g. \"0 3 * * *\")", crate::validate::quoted(text))));
    }
    croner::Cron::new(text)
        .parse()
        .map_err(|e| Invalid(format!("Invalid cron schedule {}: {e} (five fields, minute hour day month weekday, e.g. \"0 3 * * *\")", crate::validate::quoted(text))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCron {
    command: String,
    schedule: String,
}

/// The `cron` entries, checked: a valid schedule and a command each.
fn cron(entries: Vec<RawCron>) -> Result<Vec<CronJob>, Invalid> {
    if entries.len() > MAX_JOBS {
        return Err(Invalid(format!("app.json has {} cron entries: berth runs at most {MAX_JOBS}", entries.len())));
    }
    let mut jobs = Vec::new();
    for (n, entry) in entries.into_iter().enumerate() {
        let command = entry.command.trim().to_string();
        if command.is_empty() || command.len() > 4096 || command.contains('\0') {
            return Err(Invalid(format!("app.json cron entry {}: the command is empty or too long", n + 1)));
        }
        schedule(&entry.schedule).map_err(|e| Invalid(format!("app.json cron entry {}: {e}", n + 1)))?;
        jobs.push(CronJob { schedule: entry.schedule.trim().to_string(), command });
    }
    Ok(jobs)
}

// ---------------------------------------------------------------------------------------
// Deploy scripts (`scripts.dokku`)
// ---------------------------------------------------------------------------------------

/// The deploy scripts (`scripts.dokku.predeploy` / `postdeploy`).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Scripts {
    pub predeploy: Option<String>,
    pub postdeploy: Option<String>,
}

#[derive(Deserialize)]
struct RawScripts {
    #[serde(default)]
    dokku: Option<RawDokkuScripts>,
}

#[derive(Deserialize)]
struct RawDokkuScripts {
    predeploy: Option<String>,
    postdeploy: Option<String>,
}

fn scripts(raw: Option<RawScripts>) -> Scripts {
    let Some(dokku) = raw.and_then(|s| s.dokku) else { return Scripts::default() };
    let clean = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    Scripts { predeploy: clean(dokku.predeploy), postdeploy: clean(dokku.postdeploy) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    fn parse_checks(text: &str) -> Result<Vec<CheckSpec>, Invalid> {
        parse(text).map(|a| a.checks)
    }

    fn parse_cron(text: &str) -> Result<Vec<CronJob>, Invalid> {
        parse(text).map(|a| a.cron)
    }

    fn parse_scripts(text: &str) -> Result<Scripts, Invalid> {
        parse(text).map(|a| a.scripts)
    }

    #[test]
    fn check_waits_are_bounded() {
        let err = parse_checks(r#"{"healthchecks": {"web": [{"path": "/", "initialDelay": 86400}]}}"#).unwrap_err();
        assert!(err.0.contains("initialDelay is at most 600 seconds"), "{err}");
        let err = parse_checks(r#"{"healthchecks": {"web": [{"path": "/", "timeout": 99999}]}}"#).unwrap_err();
        assert!(err.0.contains("timeout is at most 120 seconds"), "{err}");
        assert!(parse_checks(r#"{"healthchecks": {"web": [{"path": "/", "attempts": 4000000000}]}}"#).is_err());
    }

    #[test]
    fn parses_dokku_healthchecks() {
        let json = r#"{"healthchecks": {"web": [
            {"type": "startup", "name": "health", "path": "/health", "content": "ok", "attempts": 2, "timeout": 3},
            {"type": "liveness", "path": "/live"},
            {"path": "/second", "initialDelay": 1, "port": 8080}
        ], "worker": [{"path": "/x"}]}}"#;
        let checks = parse_checks(json).unwrap();
        assert_eq!(checks.len(), 2);
        assert_eq!(checks[0].path, "/health");
        assert_eq!(checks[0].content.as_deref(), Some("ok"));
        assert_eq!(checks[0].attempts, Some(2));
        assert_eq!(checks[1].initial_delay, 1);
        assert_eq!(checks[1].port, Some(8080));
        assert_eq!(parse_checks("{}").unwrap(), vec![]);
        assert!(parse_checks("{not json").is_err());
        assert!(parse_checks(r#"{"healthchecks":{"web":[{"path":"no-slash"}]}}"#).is_err());
        assert!(parse_checks(r#"{"healthchecks":{"web":[{"path":"/a b"}]}}"#).is_err());
        assert!(parse_checks(r#"{"healthchecks":{"web":[{"command":["true"]}]}}"#).is_err());
    }

    #[test]
    fn app_json_cron_entries_are_checked() {
        let jobs = parse_cron(r#"{"cron":[{"command":"python3 task.py","schedule":"*/5 * * * *"},{"command":"echo hi","schedule":"@daily"}]}"#).unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].id().len(), 10);
        assert_ne!(jobs[0].id(), jobs[1].id());
        assert!(parse_cron(r#"{"scripts":{}}"#).unwrap().is_empty());
        for bad in [
            r#"{"cron":[{"command":"x","schedule":"61 * * * *"}]}"#,
            r#"{"cron":[{"command":"x","schedule":"* * * * * *"}]}"#,
            r#"{"cron":[{"command":" ","schedule":"* * * * *"}]}"#,
            r#"{"cron":[{"command":"x"}]}"#,
        ] {
            assert!(parse_cron(bad).is_err(), "{bad}");
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

    #[test]
    fn deploy_scripts() {
        let s = parse_scripts(r#"{"scripts":{"dokku":{"predeploy":"./migrate","postdeploy":" "}}}"#).unwrap();
        assert_eq!(s, Scripts { predeploy: Some("./migrate".into()), postdeploy: None });
        assert_eq!(parse_scripts("{}").unwrap(), Scripts::default());
        assert!(parse_scripts("{").is_err());
    }

    #[test]
    fn one_reading_gives_all_three() {
        let all = parse(r#"{"healthchecks":{"web":[{"path":"/up"}]},"cron":[{"command":"x","schedule":"@hourly"}],"scripts":{"dokku":{"postdeploy":"./warm"}},"name":"ignored"}"#).unwrap();
        assert_eq!((all.checks.len(), all.cron.len(), all.scripts.postdeploy.as_deref()), (1, 1, Some("./warm")));
        // A bad entry in one section refuses the whole file.
        assert!(parse(r#"{"healthchecks":{"web":[{"path":"/up"}]},"cron":[{"command":"x","schedule":"nope"}]}"#).is_err());
    }
}
