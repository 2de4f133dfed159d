//! `logs APP [-t] [-n N] [-p TYPE]`: the output of an app's running containers, merged and
//! prefixed by process (`app[web.1]:`), as dokku prints it.

use futures_util::StreamExt;

use super::Scope;
use super::property::{SetArgs, app_or_global};
use super::report::ReportArgs;
use super::{CmdResult, Ctx, failed};
use crate::output::Report;
use crate::validate::AppName;
use clap::Subcommand;

/// The namespaces of this module and their help line.
pub(super) const NAMESPACES: &[(&str, &str)] = &[("logs", "Manage log integration for an app: output its logs")];

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Show an app's output: its running containers, merged, prefixed by process
    #[command(name = "logs")]
    Logs {
        app: AppName,
        /// Keep following new output
        #[arg(short = 't', long = "tail")]
        follow: bool,
        /// How many lines of history
        #[arg(short = 'n', long = "num", default_value_t = 100)]
        lines: usize,
        /// Only this process type
        #[arg(short = 'p', long = "ps")]
        process: Option<String>,
    },
    /// Set a log property: max-size SIZE|unlimited (when a container's log file rotates; default 10m), app-label-alias KEY (a label each container carries its app's name under, for log collectors), drain URL (syslog+tcp://HOST:PORT, syslog+tls://HOST:PORT or https://…: where its output is sent too), drain-token TOKEN (an HTTP drain's bearer token); APP or --global
    #[command(name = "logs:set")]
    Set(SetArgs),
    /// Show apps' log settings
    #[command(name = "logs:report")]
    Report(ReportArgs),
}

impl Cmd {
    pub(super) fn scope(&self) -> Scope<'_> {
        match self {
            Cmd::Logs { app, .. } => Scope::App(app),
            Cmd::Set(args) => args.target.scope(),
            Cmd::Report(args) => args.scope(),
        }
    }

    pub(super) async fn run(self, ctx: &mut Ctx<'_>) -> CmdResult {
        match self {
            Cmd::Logs { app, follow, lines, process } => logs(ctx, &app, follow, lines, process.as_deref()).await,
            Cmd::Set(args) => set(ctx, &args).await,
            Cmd::Report(args) => report(ctx, &args).await,
        }
    }
}

/// `logs:set (APP|--global) max-size|app-label-alias [VALUE]`: containers started from
/// then on take it.
pub async fn set(ctx: &mut Ctx<'_>, args: &SetArgs) -> CmdResult {
    let key = args.property(&[app_or_global("max-size"), app_or_global("app-label-alias"), app_or_global("drain"), app_or_global("drain-token")])?;
    let value = args.value().map(str::to_string);
    if let Some(v) = &value {
        if key == "drain" {
            let drain = crate::drains::wire::Drain::parse(v).map_err(failed)?;
            // A key of an app sends its lines to public addresses only (the daemon checks
            // again at each connection); an admin may name this server's networks.
            if !ctx.caller.role.is_admin() {
                crate::drains::ship::check_public(&drain).await.map_err(|e| failed(format!("Invalid drain {}: {e}", crate::validate::quoted(v))))?;
            }
        }
        if key == "drain-token" && (v.is_empty() || v.len() > 4096 || !v.bytes().all(|b| b.is_ascii_graphic())) {
            return Err(failed("Invalid drain-token: printable characters without spaces, at most 4096"));
        }
        if key == "max-size" && v != "unlimited" && !valid_size(v) {
            return Err(failed(format!("Invalid max-size {}: a size such as 10m, 1g or 500k, or unlimited", crate::validate::quoted(v))));
        }
        if key == "app-label-alias" && !valid_label_key(v) {
            return Err(failed(format!("Invalid app-label-alias value {}: a label key of lowercase letters, digits, dots and dashes (com.example.app)", crate::validate::quoted(v))));
        }
    }
    let change = |logs: &mut crate::store::LogSettings| match key {
        "max-size" => logs.max_size = value.clone(),
        "drain" => {
            logs.drain = value.clone();
            logs.drain_private = ctx.caller.role.is_admin();
        }
        "drain-token" => logs.drain_token = value.clone(),
        _ => logs.app_label_alias = value.clone(),
    };
    args.save(ctx, key, |c| change(&mut c.logs), |g| change(&mut g.logs)).await?;
    // The follower looks again: containers of an app with a drain now are read into it.
    ctx.engine.drains.settings_changed();
    Ok(())
}

/// A size Docker's json-file driver takes: digits, then k, m or g. Pure.
fn valid_size(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let digits = lower.trim_end_matches(['k', 'm', 'g']);
    lower.len() - digits.len() == 1 && !digits.is_empty() && digits.len() <= 6 && digits.chars().all(|c| c.is_ascii_digit()) && digits != "0"
}

/// A label key: lowercase letters and digits, dots and dashes between them. Pure.
fn valid_label_key(text: &str) -> bool {
    text.len() <= 128
        && text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && !text.starts_with("berth.")
}

pub async fn report(ctx: &mut Ctx<'_>, args: &ReportArgs) -> CmdResult {
    let global = ctx.engine.store.load_global()?;
    let default = crate::store::AppConfig::default();
    let computed_size = |c: &crate::store::AppConfig| c.log_max_size_with(&global).unwrap_or_else(|| "unlimited".into());
    if args.global {
        let report = Report::new("--global logs information")
            .namespace("logs")
            .global_layer("max-size", global.logs.max_size.clone(), computed_size(&default))
            .global_layer("app-label-alias", global.logs.app_label_alias.clone(), default.app_label_alias_with(&global).unwrap_or_default())
            .global_layer("drain", global.logs.drain.clone(), global.logs.drain.clone().unwrap_or_default())
            .global_layer("drain-token", hidden(&global.logs.drain_token), hidden(&global.logs.drain_token).unwrap_or_default());
        return args.print_global(ctx, report).await;
    }
    // The global drain's URL may carry a key in its query: only admins see that.
    let shown = |url: &Option<String>| if ctx.caller.role.is_admin() { url.clone() } else { url.as_deref().map(without_query) };
    let global_drain = shown(&global.logs.drain);
    args.print_apps(ctx, |ctx, name, config| {
        let drain = config.drain_with(&global);
        let report = Report::new(format!("{name} logs information"))
            .namespace("logs")
            .layered("max-size", config.logs.max_size.clone(), global.logs.max_size.clone(), computed_size(config))
            .layered("app-label-alias", config.logs.app_label_alias.clone(), global.logs.app_label_alias.clone(), config.app_label_alias_with(&global).unwrap_or_default())
            .layered("drain", config.logs.drain.clone(), global_drain.clone(), if config.logs.drain.is_some() { config.logs.drain.clone() } else { global_drain.clone() }.unwrap_or_default())
            .layered("drain-token", hidden(&config.logs.drain_token), hidden(&global.logs.drain_token), hidden(&drain.as_ref().and_then(|(_, t, _)| t.clone())).unwrap_or_default());
        Ok(report.keyed_row("Logs drain status", "drain-status".into(), drain_status(ctx.engine, drain.as_ref().map(|(d, _, _)| d.as_str()))))
    })
    .await
}

/// A URL without its query (which may carry a key).
fn without_query(url: &str) -> String {
    url.split_once('?').map_or(url, |(u, _)| u).to_string()
}

/// A secret as a report shows it.
fn hidden(value: &Option<String>) -> Option<String> {
    value.as_ref().map(|_| "****".to_string())
}

/// What the daemon did with the drain's lines: sent, buffered, dropped, and the failure
/// while it fails.
fn drain_status(engine: &crate::engine::Engine, drain: Option<&str>) -> String {
    let Some(drain) = drain.and_then(|d| crate::drains::wire::Drain::parse(d).ok()) else { return String::new() };
    let Some(status) = engine.drains.status(&drain) else { return "no line sent yet".into() };
    let mut words = format!("{} sent, {} buffered, {} dropped", status.sent, status.buffered, status.dropped);
    if let Some(why) = status.failing {
        words.push_str(&format!("; failing: {why}"));
    }
    words
}


pub async fn logs(ctx: &mut Ctx<'_>, app: &AppName, follow: bool, lines: usize, process: Option<&str>) -> CmdResult {
    ctx.engine.store.load_app(app)?;
    if process == Some("cron") {
        return cron_logs(ctx, app, follow, lines).await;
    }
    let scheduler = ctx.engine.scheduler(app).await.map_err(|e| failed(e.to_string()))?;
    let active = ctx.engine.store.load_releases(app)?.active().map(|r| r.version);
    let containers: Vec<_> = scheduler
        .instances(app)
        .await
        .map_err(|e| failed(e.to_string()))?
        .into_iter()
        .filter(|c| Some(c.release) == active)
        .filter(|c| process.is_none_or(|p| c.process == p))
        .collect();
    if containers.is_empty() {
        let what = process.map(|p| format!("{p} processes")).unwrap_or_else(|| "containers".into());
        return Err(failed(format!("{app} has no {what} of its active release")));
    }
    let streams = containers.iter().map(|c| {
        let label = format!("{app}[{}.{}]:", c.process, c.index);
        scheduler.log_lines(&c.id, lines, follow).map(move |line| prefix(&label, &line)).boxed()
    });
    let mut merged = futures_util::stream::select_all(streams);
    if !follow {
        // History: every container's last lines, in time order, the last N overall.
        let mut all: Vec<String> = merged.collect().await;
        all.sort();
        let skip = all.len().saturating_sub(lines);
        for line in &all[skip..] {
            ctx.out.line(line).await;
        }
        return Ok(());
    }
    // Following: each container's history comes first, then new lines; lines are held a
    // moment and let out in time order, so instances interleave as they wrote.
    let mut order = TimeOrder::new(lines);
    loop {
        let due = order.deadline();
        tokio::select! {
            line = merged.next() => match line {
                Some(line) => order.push(tokio::time::Instant::now().into_std(), line),
                None => {
                    for line in order.flush() {
                        ctx.out.line(line).await;
                    }
                    return Ok(());
                }
            },
            _ = sleep_until(due) => {
                for line in order.due(tokio::time::Instant::now().into_std()) {
                    ctx.out.line(line).await;
                }
            }
            _ = ctx.out.closed() => return Ok(()),
        }
    }
}

async fn sleep_until(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// How long a followed line waits for lines of other instances written before it.
const HOLD: std::time::Duration = std::time::Duration::from_millis(150);

/// Lines of several instances put in time order (each starts with the engine's RFC 3339
/// timestamp, fixed width, so text order is time order): a line is held `HOLD` after it
/// arrived, and then everything held goes out sorted. History (lines written before
/// `since`, the moment `logs` started) is cut to the last `history` lines overall, as
/// `logs -n` without `-t` is; what is written afterwards is never cut.
struct TimeOrder {
    held: Vec<String>,
    oldest: Option<std::time::Instant>,
    since: String,
    history: usize,
}

impl TimeOrder {
    fn new(history: usize) -> TimeOrder {
        let since = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
        TimeOrder::since(since, history)
    }

    fn since(since: String, history: usize) -> TimeOrder {
        TimeOrder { held: Vec::new(), oldest: None, since, history }
    }

    fn push(&mut self, now: std::time::Instant, line: String) {
        self.oldest.get_or_insert(now);
        self.held.push(line);
    }

    fn deadline(&self) -> Option<std::time::Instant> {
        self.oldest.map(|at| at + HOLD)
    }

    /// What may go out at `now`.
    fn due(&mut self, now: std::time::Instant) -> Vec<String> {
        if self.deadline().is_some_and(|at| at <= now) { self.flush() } else { Vec::new() }
    }

    fn flush(&mut self) -> Vec<String> {
        self.oldest = None;
        let mut lines = std::mem::take(&mut self.held);
        lines.sort();
        let old = lines.partition_point(|l| l.as_str() < self.since.as_str());
        let cut = old.saturating_sub(self.history);
        self.history = self.history.saturating_sub(old);
        lines.drain(..cut);
        lines
    }
}

/// `2026-11-21T23:10:11.123456789Z text` → `2026-11-21T23:10:11.123456789Z app[web.1]: text`.
fn prefix(label: &str, line: &str) -> String {
    match line.split_once(' ') {
        Some((time, text)) if time.ends_with('Z') => format!("{time} {label} {text}"),
        _ => format!("{label} {line}"),
    }
}

/// `logs APP -p cron`: the scheduled jobs' output, kept in the app's cron log (their
/// containers are gone once they end). With `-t`, new lines as they are written.
async fn cron_logs(ctx: &mut Ctx<'_>, app: &AppName, follow: bool, lines: usize) -> CmdResult {
    let path = crate::cron::log_file(ctx.engine, app);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    for line in &all[all.len().saturating_sub(lines)..] {
        ctx.out.line(format!("{app}[cron]: {line}")).await;
    }
    if !follow {
        if all.is_empty() {
            ctx.out.error(format!("{app} has no cron output yet")).await;
        }
        return Ok(());
    }
    let mut seen = text.len() as u64;
    loop {
        tokio::select! {
            _ = ctx.out.closed() => return Ok(()),
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
        }
        let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if len < seen {
            seen = 0; // rotated
        }
        if len > seen {
            let bytes = std::fs::read(&path).unwrap_or_default();
            let start = (seen as usize).min(bytes.len());
            let new = String::from_utf8_lossy(&bytes[start..]).into_owned();
            let complete = new.rfind('\n').map_or(0, |i| i + 1);
            for line in new[..complete].lines() {
                ctx.out.line(format!("{app}[cron]: {line}")).await;
            }
            seen += complete as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_label_keys_are_what_docker_takes() {
        for ok in ["10m", "1g", "500k", "20M"] {
            assert!(valid_size(ok), "{ok}");
        }
        for bad in ["10", "m", "0m", "1.5m", "10mb", "-1m"] {
            assert!(!valid_size(bad), "{bad}");
        }
        assert!(valid_label_key("com.example.app") && valid_label_key("app"));
        for bad in ["not a label", "_leading_underscore", "Com.App", "berth.app", "app."] {
            assert!(!valid_label_key(bad), "{bad}");
        }
        assert_eq!(crate::store::DEFAULT_LOG_MAX_SIZE, "10m");
    }

    #[test]
    fn followed_lines_go_out_in_time_order_after_a_moment() {
        let start = std::time::Instant::now();
        let ms = |n| start + std::time::Duration::from_millis(n);
        let mut order = TimeOrder::since("2026-12-01T10:00:04.000000000Z".into(), 2);
        // Histories of two instances, arriving one instance after the other.
        order.push(ms(0), "2026-12-01T10:00:03.000000000Z a[web.1]: c".into());
        order.push(ms(1), "2026-12-01T10:00:01.000000000Z a[web.1]: a".into());
        order.push(ms(2), "2026-12-01T10:00:02.000000000Z a[web.2]: b".into());
        assert!(order.due(ms(100)).is_empty(), "held a moment");
        assert_eq!(order.deadline(), Some(ms(150)));
        // The last 2 of the history overall, oldest first.
        assert_eq!(order.due(ms(150)), ["2026-12-01T10:00:02.000000000Z a[web.2]: b", "2026-12-01T10:00:03.000000000Z a[web.1]: c"]);
        assert_eq!(order.deadline(), None);
        // New lines: a later one that arrived first waits for the earlier one; none is cut.
        order.push(ms(1000), "2026-12-01T10:00:05.000000000Z a[web.1]: e".into());
        order.push(ms(1040), "2026-12-01T10:00:04.900000000Z a[web.2]: d".into());
        order.push(ms(1041), "2026-12-01T10:00:05.100000000Z a[web.2]: f".into());
        let out: Vec<String> = order.due(ms(1150)).iter().map(|l| l.rsplit(' ').next().unwrap().to_string()).collect();
        assert_eq!(out, ["d", "e", "f"]);
        order.push(ms(2000), "2026-12-01T10:00:06.000000000Z a[web.1]: g".into());
        assert_eq!(order.flush(), ["2026-12-01T10:00:06.000000000Z a[web.1]: g"]);
        // `-t -n 0`: no history, and the first new lines are not cut.
        let mut order = TimeOrder::since("2026-12-01T10:00:04.000000000Z".into(), 0);
        order.push(ms(0), "2026-12-01T10:00:03.000000000Z a[web.1]: old".into());
        order.push(ms(0), "2026-12-01T10:00:05.000000000Z a[web.1]: new".into());
        assert_eq!(order.flush(), ["2026-12-01T10:00:05.000000000Z a[web.1]: new"]);
        // A line with no timestamp is shown, never taken for history.
        assert!(TimeOrder::new(0).since.as_str() < "a[web.1]: plain");
    }

    #[test]
    fn lines_get_the_process_after_the_timestamp() {
        assert_eq!(prefix("a[web.1]:", "2026-11-21T23:10:11.1Z hello world"), "2026-11-21T23:10:11.1Z a[web.1]: hello world");
        assert_eq!(prefix("a[web.1]:", "no timestamp"), "a[web.1]: no timestamp");
    }
}
