//! Readiness checks: probing a new container until it passes the checks its release has
//! (`app_json::CheckSpec`, from app.json in dokku's format).
//!
//! Probing polls instead of sleeping a fixed time, 10 ms apart at first, doubling up to
//! 200 ms: an app that is ready at once swaps within milliseconds of listening, a slow one
//! costs a probe every 200 ms, and an app that crashes fails the deploy at once.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use crate::app_json::CheckSpec;
use crate::store::AppConfig;

/// How often a container is probed while it starts: at first, and at most.
pub const POLL_FIRST: Duration = Duration::from_millis(10);
pub const POLL: Duration = Duration::from_millis(200);

/// What one probe saw.
#[derive(Debug, PartialEq)]
enum Probe {
    /// Not listening yet (refused, reset, or no answer in time): keep waiting.
    NotYet(String),
    Passed(u16),
    /// Answered, but badly: counts against the attempts.
    Bad(String),
}

async fn probe(addr: &str, spec: &CheckSpec, request_timeout: Duration) -> Probe {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|e| Probe::NotYet(e.to_string()))?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: berth-checks\r\nConnection: close\r\n\r\n",
            spec.path
        );
        stream.write_all(request.as_bytes()).await.map_err(|e| Probe::NotYet(e.to_string()))?;
        let mut response = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    response.extend_from_slice(&buf[..n]);
                    if response.len() > 1024 * 1024 {
                        break;
                    }
                }
                Err(e) if response.is_empty() => return Err(Probe::NotYet(e.to_string())),
                Err(_) => break,
            }
        }
        Ok(response)
    };
    let response = match tokio::time::timeout(request_timeout, attempt).await {
        Err(_) => return Probe::NotYet(format!("no answer within {}s", request_timeout.as_secs())),
        Ok(Err(probe)) => return probe,
        Ok(Ok(response)) => response,
    };
    judge(&response, spec)
}

/// Judges a raw HTTP response against a check. Pure.
fn judge(response: &[u8], spec: &CheckSpec) -> Probe {
    if response.is_empty() {
        return Probe::NotYet("connection closed without an answer".into());
    }
    let text = String::from_utf8_lossy(response);
    let status_line = text.lines().next().unwrap_or_default();
    let status: Option<u16> = status_line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    let Some(status) = status.filter(|_| status_line.starts_with("HTTP/")) else {
        return Probe::Bad(format!("GET {} answered something that is not HTTP", spec.path));
    };
    if status >= 500 {
        return Probe::Bad(format!("GET {} answered {status}", spec.path));
    }
    if let Some(content) = &spec.content {
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        if !body.contains(content.as_str()) {
            return Probe::Bad(format!("GET {} answered {status} without {content:?} in the body", spec.path));
        }
    }
    Probe::Passed(status)
}

/// Waits until one container passes every check, or fails.
/// `alive` is asked every round, so a container that exits fails the deploy at once.
pub async fn wait_ready<F, Fut>(endpoint: &str, port: u16, specs: &[CheckSpec], config: &AppConfigChecks, alive: F) -> Result<Duration, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let (ip, port) = split_endpoint(endpoint, port);
    // tokio's clock: tests can run a timeout of minutes in no time.
    use tokio::time::Instant;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(config.timeout);
    for spec in specs {
        if spec.initial_delay > 0 {
            // The delay counts against the timeout like any other wait.
            tokio::time::sleep_until(deadline.min(Instant::now() + Duration::from_secs(spec.initial_delay))).await;
        }
        let addr = format!("{ip}:{}", spec.port.unwrap_or(port));
        let allowed = spec.attempts.unwrap_or(config.attempts);
        let request_timeout = Duration::from_secs(spec.request_timeout.unwrap_or(5)).min(deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1)));
        let mut bad = 0;
        let mut last: String;
        let mut wait = POLL_FIRST;
        loop {
            alive().await?;
            match probe(&addr, spec, request_timeout).await {
                Probe::Passed(_) => break,
                Probe::NotYet(why) => last = format!("port {} not answering ({why})", spec.port.unwrap_or(port)),
                Probe::Bad(why) => {
                    bad += 1;
                    last = why;
                    if bad > allowed {
                        return Err(format!("check {:?} failed: {last} ({bad} times)", spec.name));
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(format!("check {:?} did not pass within {}s: {last}", spec.name, config.timeout));
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(POLL);
        }
    }
    Ok(started.elapsed())
}

/// An instance's endpoint as a scheduler gives it: an address (docker-local: the container's
/// port is the app's) or `ADDRESS:PORT` (swarm: the port the task published on its node),
/// and the port to reach it at. Pure.
pub fn split_endpoint(endpoint: &str, port: u16) -> (&str, u16) {
    match endpoint.rsplit_once(':') {
        Some((host, published)) if !host.contains(':') => published.parse().map_or((endpoint, port), |p| (host, p)),
        _ => (endpoint, port),
    }
}

/// The `checks:*` settings a probe needs.
pub type AppConfigChecks = crate::store::ChecksConfig;

/// The checks a release runs: app.json's, or the default one.
pub fn effective(specs: &[CheckSpec]) -> Vec<CheckSpec> {
    if specs.is_empty() { vec![CheckSpec::default_check()] } else { specs.to_vec() }
}

/// Shown in reports.
pub fn describe(config: &AppConfig) -> &'static str {
    if config.checks.disabled_for(crate::process::WEB) {
        "disabled"
    } else if config.checks.skipped_for(crate::process::WEB) {
        "skipped"
    } else {
        "enabled"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_initial_delay_counts_against_the_timeout() {
        let spec = CheckSpec { initial_delay: 600, ..CheckSpec::default_check() };
        let config = AppConfigChecks { timeout: 5, attempts: 1, ..Default::default() };
        let started = tokio::time::Instant::now();
        let result = wait_ready("127.0.0.1", 1, &[spec], &config, || async { Ok(()) }).await;
        assert!(result.is_err());
        assert!(started.elapsed() < Duration::from_secs(30), "waited {:?}", started.elapsed());
    }

    #[test]
    fn judges_http_answers() {
        let spec = CheckSpec::default_check();
        assert_eq!(judge(b"HTTP/1.1 200 OK\r\n\r\nhi", &spec), Probe::Passed(200));
        assert_eq!(judge(b"HTTP/1.0 404 Not Found\r\n\r\n", &spec), Probe::Passed(404));
        assert!(matches!(judge(b"HTTP/1.1 502 Bad Gateway\r\n\r\n", &spec), Probe::Bad(_)));
        assert!(matches!(judge(b"SSH-2.0-x\r\n", &spec), Probe::Bad(_)));
        assert!(matches!(judge(b"", &spec), Probe::NotYet(_)));
        let content = CheckSpec { content: Some("ready".into()), ..CheckSpec::default_check() };
        assert_eq!(judge(b"HTTP/1.1 200 OK\r\n\r\nall ready", &content), Probe::Passed(200));
        assert!(matches!(judge(b"HTTP/1.1 200 OK\r\n\r\nstarting", &content), Probe::Bad(_)));
    }

    #[tokio::test]
    async fn a_port_that_never_answers_times_out_and_a_dead_container_fails_at_once() {
        let config = AppConfigChecks { timeout: 1, ..Default::default() };
        let specs = effective(&[]);
        // Port 1 on loopback: refused.
        let err = wait_ready("127.0.0.1", 1, &specs, &config, || async { Ok(()) }).await.unwrap_err();
        assert!(err.contains("did not pass within 1s"), "{err}");
        let err = wait_ready("127.0.0.1", 1, &specs, &config, || async { Err("container exited with code 3".to_string()) })
            .await
            .unwrap_err();
        assert_eq!(err, "container exited with code 3");
    }

    #[tokio::test]
    async fn a_listening_http_server_passes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            }
        });
        let config = AppConfigChecks::default();
        wait_ready("127.0.0.1", port, &effective(&[]), &config, || async { Ok(()) }).await.unwrap();
    }

    #[test]
    fn an_endpoint_may_name_its_port() {
        assert_eq!(split_endpoint("172.16.3.2", 5000), ("172.16.3.2", 5000));
        assert_eq!(split_endpoint("10.231.0.12:30001", 5000), ("10.231.0.12", 30001));
        assert_eq!(split_endpoint("fd00::1", 5000), ("fd00::1", 5000));
    }
}
