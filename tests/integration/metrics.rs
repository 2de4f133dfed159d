//! Metrics as a user reads them: Debian's Prometheus scrapes the daemon's API listener with
//! a read token, and a query through Prometheus' HTTP API returns exactly the requests the
//! test sent through nginx; the reports show the last minute.

use std::process::{Child, Command};
use std::time::Duration;

use crate::harness::{AppRepo, Daemon, base_image, free_port, http_get, poll, temp_dir, web_dockerfile};

/// A Prometheus server, stopped when dropped.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target`'s /metrics every second with `token`.
    fn start(target: &str, token: &str) -> Prometheus {
        let dir = temp_dir();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: berth\n    metrics_path: /metrics\n    authorization:\n      credentials: {token}\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus is installed (scripts/test.sh installs it)");
        Prometheus { child, port, _dir: dir }
    }

    /// The value of an instant query's one result (None: no result yet).
    fn query(&self, query: &str) -> Option<f64> {
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "--get", "--data-urlencode"])
            .arg(format!("query={query}"))
            .arg(format!("http://127.0.0.1:{}/api/v1/query", self.port))
            .output()
            .unwrap();
        let answer: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let result = answer["data"]["result"].as_array()?;
        assert!(result.len() <= 1, "{query}: one series expected, got {answer}");
        result.first()?["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` answers `want`.
    fn expect(&self, query: &str, want: f64) {
        poll(Duration::from_secs(60), &format!("{query} = {want} in Prometheus"), || match self.query(query) {
            Some(v) if v == want => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_scrapes_exactly_the_requests_sent_through_nginx() {
    base_image();
    let d = Daemon::start();
    d.ssh("apps:create web").ok();
    d.ssh("domains:add web web.example.com").ok();
    let repo = AppRepo::new(&d, "web");
    repo.write("Dockerfile", &web_dockerfile("metered", 0)).commit("v1");
    let pushed = repo.push(&d, "main");
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    d.ssh("apps:create other").ok();

    // Exactly 7 answered 200 and 3 answered 404 (busybox httpd has no /missing).
    for _ in 0..7 {
        assert_eq!(http_get(d.http_port, "web.example.com", "/").0, 200);
    }
    for _ in 0..3 {
        assert_eq!(http_get(d.http_port, "web.example.com", "/missing").0, 404);
    }

    // The text itself: a family per metric, the app's container by its process.
    let text = d.ssh("metrics").stdout;
    let line = |l: &str| text.lines().any(|have| have == l);
    assert!(line("# TYPE berth_http_requests_total counter"), "{text}");
    assert!(line("berth_http_requests_total{app=\"web\",status=\"2xx\"} 7"), "{text}");
    assert!(line("berth_http_requests_total{app=\"web\",status=\"4xx\"} 3"), "{text}");
    assert!(line("berth_http_request_duration_seconds_count{app=\"web\"} 10"), "{text}");
    assert!(text.contains("berth_container_memory_bytes{app=\"web\",process=\"web\",index=\"1\",release=\"v1\"}"), "{text}");
    assert!(line("berth_deploys_total{app=\"web\"} 1"), "{text}");
    assert!(text.contains("\nprocess_open_fds "), "an admin sees the server's own figures: {text}");

    // A token of another app sees none of web's series, nor the server's.
    let other = token(&d, "other-reader --scope read --app other");
    let (status, body) = metrics_over_api(&d, &other);
    assert_eq!(status, 200);
    assert!(!body.contains("app=\"web\"") && !body.contains("process_open_fds"), "{body}");
    let (status, _) = metrics_over_api(&d, "berth_wrong");
    assert_eq!(status, 401);

    // Prometheus scrapes with a read token and answers the exact counts.
    let read = token(&d, "prometheus --scope read");
    let prometheus = Prometheus::start(&d.api_address(), &read);
    prometheus.expect("up{job=\"berth\"}", 1.0);
    prometheus.expect("berth_http_requests_total{app=\"web\",status=\"2xx\"}", 7.0);
    prometheus.expect("berth_http_requests_total{app=\"web\",status=\"4xx\"}", 3.0);
    prometheus.expect("berth_http_request_duration_seconds_count{app=\"web\"}", 10.0);
    prometheus.expect("berth_deploys_total{app=\"web\"}", 1.0);
    prometheus.expect("count(berth_container_cpu_seconds_total{app=\"web\",process=\"web\"})", 1.0);
    let memory = prometheus.query("berth_container_memory_bytes{app=\"web\",process=\"web\"}").unwrap();
    assert!(memory > 0.0, "{memory}");

    // The reports show the last minute.
    let report: serde_json::Value = serde_json::from_str(&d.ssh("ps:report web --format json").stdout).unwrap();
    let rate = report["requests-per-second"].as_str().unwrap();
    assert!(rate.ends_with("/s") && rate != "0.00/s", "{report}");
    assert!(report["latency-p50"].as_str().unwrap().ends_with(" ms"), "{report}");
    assert_eq!(report["errors-last-minute"], "0", "{report}");
    let apps = d.ssh("apps:report web").stdout;
    assert!(apps.contains("Requests per second (last minute)"), "{apps}");

    // An app made again under a destroyed one's name starts from nothing.
    drop(prometheus);
    d.ssh("apps:destroy web --force").ok();
    d.ssh("apps:create web").ok();
    let text = d.ssh("metrics").stdout;
    assert!(!text.contains("app=\"web\""), "the destroyed app's figures are gone: {text}");
}

/// `tokens:create ARGS` over ssh: the token it printed once.
fn token(d: &Daemon, args: &str) -> String {
    let out = d.ssh(&format!("tokens:create {args}"));
    out.ok();
    out.stdout.lines().last().unwrap_or_default().trim().to_string()
}

/// GET /metrics on the API listener with `token`: (status, body).
fn metrics_over_api(d: &Daemon, token: &str) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("http://{}/metrics", d.api_address()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap_or(0), body.to_string())
}
