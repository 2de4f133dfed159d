//! berth's metrics in Prometheus' text format (the `metrics` command, GET /metrics on the
//! API): what nginx counted of each app's requests (berth.lua, `traffic`), each running
//! container's CPU and memory from its cgroup files, deploys since the daemon started,
//! certificates' days left; for admins also the build queue and berth's own memory and
//! file descriptors. A caller sees the apps it may manage, no other. The daemon samples
//! nginx's counts every few seconds (`sample_forever`) for the reports' last minute
//! (`minute`).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::engine::{Caller, DEPLOY_BOUNDS, Engine};
use crate::output::Report;
use crate::traffic::{BOUNDS, CLASSES, Minute};

/// How often the daemon samples nginx's counts.
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// Seconds since this process first asked (a monotonic clock for the samples).
fn clock() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Samples nginx's counts every `SAMPLE_EVERY`, forever (the daemon's task).
pub async fn sample_forever(engine: std::sync::Arc<Engine>) {
    loop {
        sample(&engine).await;
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

async fn sample(engine: &Engine) {
    match engine.nginx.traffic().await {
        Ok(traffic) => engine.traffic.lock().unwrap_or_else(|e| e.into_inner()).push(clock(), traffic),
        Err(e) => tracing::debug!("cannot read nginx's counts: {e}"),
    }
}

/// Each app's last minute (up to it, just after the daemon started); an app is missing
/// when nginx's counts cannot be read or no sample is old enough yet.
pub async fn minutes(engine: &Engine, apps: &[String]) -> HashMap<String, Minute> {
    let Ok(now) = engine.nginx.traffic().await else { return HashMap::new() };
    let at = clock();
    let window = engine.traffic.lock().unwrap_or_else(|e| e.into_inner());
    apps.iter().filter_map(|app| Some((app.clone(), window.minute(app, at, &now)?))).collect()
}

/// A report with the app's last minute: requests per second, latency p50 and p99, and
/// the answers that were errors (5xx).
pub fn with_minute(report: Report, minute: Option<&Minute>) -> Report {
    let [rate, p50, p99, errors] = minute_words(minute);
    report
        .keyed_row("Requests per second (last minute)", "requests-per-second".into(), rate)
        .keyed_row("Latency p50 (last minute)", "latency-p50".into(), p50)
        .keyed_row("Latency p99 (last minute)", "latency-p99".into(), p99)
        .keyed_row("Errors 5xx (last minute)", "errors-last-minute".into(), errors)
}

/// The report's words for a minute: rate, p50, p99, errors ("-" without figures).
fn minute_words(minute: Option<&Minute>) -> [String; 4] {
    let Some(m) = minute else { return ["-".into(), "-".into(), "-".into(), "-".into()] };
    let ms = |q: Option<f64>| q.map(|s| format!("{:.1} ms", s * 1000.0)).unwrap_or_else(|| "-".into());
    [format!("{:.2}/s", m.rate()), ms(m.p50), ms(m.p99), m.errors.to_string()]
}

/// One metric family: its samples, written together under its HELP and TYPE lines.
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    samples: Vec<(String, f64)>,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family { name, help, kind, samples: Vec::new() }
    }

    /// A sample of this family (`suffix`: `_bucket`, `_sum`, `_count` or nothing).
    fn add(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        let mut name = format!("{}{suffix}", self.name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = write!(name, "{{{}}}", pairs.join(","));
        }
        self.samples.push((name, value));
    }

    /// A histogram's samples from counts per bucket (not cumulative; the last is over the
    /// highest bound).
    fn histogram(&mut self, labels: &[(&str, &str)], bounds: &[f64], buckets: &[u64], sum: f64) {
        let mut cumulative = 0u64;
        for (i, count) in buckets.iter().enumerate() {
            cumulative += count;
            let le = bounds.get(i).map(|b| b.to_string()).unwrap_or_else(|| "+Inf".into());
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.add("_bucket", &with_le, cumulative as f64);
        }
        self.add("_sum", labels, sum);
        self.add("_count", labels, cumulative as f64);
    }

    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} {}", self.name, self.help, self.name, self.kind);
        for (name, value) in &self.samples {
            let _ = writeln!(out, "{name} {value}");
        }
    }
}

/// A label value as the text format writes it.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Every metric the caller may see, in Prometheus' text format (version 0.0.4).
pub async fn text(engine: &Engine, caller: &Caller) -> String {
    let apps: Vec<String> = engine.store.list_apps().unwrap_or_default().into_iter().filter(|a| caller.role.may_manage(a)).collect();
    let mut families = Vec::new();

    let traffic = engine.nginx.traffic().await.unwrap_or_else(|e| {
        tracing::warn!("metrics: cannot read nginx's counts: {e}");
        Default::default()
    });
    let mut requests = Family::new("berth_http_requests_total", "counter", "Requests nginx answered for the app, by status class.");
    let mut latency = Family::new("berth_http_request_duration_seconds", "histogram", "Time nginx took to answer the app's requests.");
    for app in &apps {
        let Some(counts) = traffic.get(app) else { continue };
        for (class, n) in CLASSES.iter().zip(counts.classes) {
            requests.add("", &[("app", app), ("status", class)], n as f64);
        }
        latency.histogram(&[("app", app)], &BOUNDS, &counts.buckets, counts.seconds);
    }
    families.extend([requests, latency]);

    let mut cpu = Family::new("berth_container_cpu_seconds_total", "counter", "CPU time the app's running container has used.");
    let mut memory = Family::new("berth_container_memory_bytes", "gauge", "Memory the app's running container uses (less page cache it can drop).");
    if let Ok(runtime) = engine.runtime().await {
        let containers = runtime.running_processes().await.unwrap_or_default();
        let containers: Vec<_> = containers.into_iter().filter(|c| apps.contains(&c.app)).collect();
        let usages = tokio::task::spawn_blocking({
            let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
            move || ids.iter().map(|id| crate::runtime::cgroups::usage(id)).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (c, usage) in containers.iter().zip(usages) {
            let Some(usage) = usage else { continue };
            let (index, release) = (c.index.to_string(), format!("v{}", c.release));
            let labels = [("app", c.app.as_str()), ("process", c.process.as_str()), ("index", index.as_str()), ("release", release.as_str())];
            cpu.add("", &labels, usage.cpu_seconds);
            memory.add("", &labels, usage.memory_bytes as f64);
        }
    }
    families.extend([cpu, memory]);

    let mut deploys = Family::new("berth_deploys_total", "counter", "Deploys of the app since the daemon started.");
    let mut failures = Family::new("berth_deploy_failures_total", "counter", "Deploys of the app that failed since the daemon started.");
    let mut durations = Family::new("berth_deploy_duration_seconds", "histogram", "How long the app's deploys took.");
    for (app, d) in engine.deploys.lock().unwrap_or_else(|e| e.into_inner()).iter().filter(|(app, _)| apps.contains(app)) {
        deploys.add("", &[("app", app)], d.count as f64);
        failures.add("", &[("app", app)], d.failures as f64);
        durations.histogram(&[("app", app)], &DEPLOY_BOUNDS, &d.buckets, d.seconds);
    }
    families.extend([deploys, failures, durations]);

    let mut days = Family::new("berth_certificate_expiry_days", "gauge", "Days until the app's certificate expires (negative: expired).");
    let now = crate::unix_now() as f64;
    for app in &apps {
        if let Ok(Some((_, info))) = engine.store.current_certificate(app) {
            days.add("", &[("app", app)], ((info.not_after as f64 - now) / 86400.0 * 100.0).round() / 100.0);
        }
    }
    families.push(days);

    if caller.role.is_admin() {
        let (running, queued) = engine.builds();
        let mut builds = Family::new("berth_builds_running", "gauge", "Builds running now.");
        builds.add("", &[], running as f64);
        let mut queue = Family::new("berth_build_queue_length", "gauge", "Builds waiting for a slot (builder:set --global build-concurrency).");
        queue.add("", &[], queued as f64);
        families.extend([builds, queue]);
        let (rss, fds) = own_usage();
        let mut resident = Family::new("process_resident_memory_bytes", "gauge", "berth's resident memory.");
        resident.add("", &[], rss as f64);
        let mut open = Family::new("process_open_fds", "gauge", "berth's open file descriptors.");
        open.add("", &[], fds as f64);
        families.extend([resident, open]);
    }

    let mut out = String::new();
    for family in &families {
        family.write(&mut out);
    }
    out
}

/// This process's resident memory (bytes) and open file descriptors.
fn own_usage() -> (u64, usize) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())))
        .unwrap_or(0)
        * 1024;
    let fds = std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0);
    (rss, fds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_written_together_with_cumulative_buckets() {
        let mut f = Family::new("x_seconds", "histogram", "How long.");
        f.histogram(&[("app", "web")], &[0.1, 1.0], &[2, 3, 1], 4.5);
        let mut out = String::new();
        f.write(&mut out);
        assert_eq!(
            out,
            "# HELP x_seconds How long.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{app=\"web\",le=\"0.1\"} 2\nx_seconds_bucket{app=\"web\",le=\"1\"} 5\n\
             x_seconds_bucket{app=\"web\",le=\"+Inf\"} 6\nx_seconds_sum{app=\"web\"} 4.5\nx_seconds_count{app=\"web\"} 6\n"
        );
        let mut empty = String::new();
        Family::new("y", "gauge", "Nothing.").write(&mut empty);
        assert_eq!(empty, "");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn a_minute_in_words() {
        let m = Minute { span: 60.0, requests: 30, errors: 2, p50: Some(0.0123), p99: None };
        assert_eq!(minute_words(Some(&m)), ["0.50/s".to_string(), "12.3 ms".into(), "-".into(), "2".into()]);
        assert_eq!(minute_words(None)[0], "-");
    }
}
