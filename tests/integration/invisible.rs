//! Invisible deploys (issue 14): a redeploy, a scale, a restart, a rollback or a crashed
//! container changes which containers nginx routes to without reloading it (the peers live
//! in a Lua shared dict, and in `<root>/nginx/peers` for nginx's next start), so no client
//! sees a dropped request or a closed keep-alive connection; an open WebSocket lives until
//! its old container retires; builds wait in a queue and run under limits of their own.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{AppRepo, Daemon, Out, docker, get, stack_image, web_dockerfile, poll};

// ---------------------------------------------------------------------------------------
// Helpers: apps, pushes, polling.
// ---------------------------------------------------------------------------------------

/// An app with the domain `NAME.example.com` and its repository (nothing pushed yet).
fn new_app(d: &Daemon, name: &str) -> AppRepo {
    d.ssh(&format!("apps:create {name}")).ok();
    d.ssh(&format!("domains:add {name} {}", host(name))).ok();
    AppRepo::new(d, name)
}

fn host(app: &str) -> String {
    format!("{app}.example.com")
}

/// `git push deploy main`, which must succeed; returns git's output (the `remote:` lines).
#[track_caller]
fn pushed(d: &Daemon, repo: &AppRepo) -> String {
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "push failed: {out:#?}");
    out.stderr
}

/// The daemon listens on a new SSH port after each boot: the app's remote follows it.
fn follow(d: &Daemon, repo: &AppRepo, app: &str) {
    repo.git(&["remote", "set-url", "deploy", &format!("ssh://berth@127.0.0.1:{}/{app}", d.port)]).ok();
}

/// The active release (`vN`) as `ps:report` says.
#[track_caller]
fn active_release(d: &Daemon, app: &str) -> String {
    let out = d.ssh(&format!("ps:report {app} --format json"));
    out.ok();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ps:report is not JSON ({e}): {out:#?}"));
    report["release"].as_str().unwrap_or_else(|| panic!("no release in {report}")).to_string()
}

/// A random word, so that no build step of a test is ever found in the engine's build cache.
fn nonce() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Running containers of the app's `release` (`vN`) of process `web`, with their addresses.
fn web_ips(d: &Daemon, app: &str, release: &str) -> BTreeSet<String> {
    let app_label = format!("berth.app={app}");
    let release_label = format!("berth.release={}", release.trim_start_matches('v'));
    d.container_ids(false, &[&app_label, "berth.process=web", &release_label])
        .iter()
        .filter_map(|id| crate::harness::addresses_if_there(id))
        .collect()
}

// ---------------------------------------------------------------------------------------
// berth's nginx: its processes, its peers file.
// ---------------------------------------------------------------------------------------

fn nginx_dir(d: &Daemon) -> std::path::PathBuf {
    d.root().join("nginx")
}

/// `nginx ARGS…` on this root's config, as src/proxy.rs runs it.
fn nginx(d: &Daemon, args: &[&str]) -> Out {
    let dir = nginx_dir(d);
    let mut cmd = Command::new("nginx");
    cmd.arg("-c").arg(dir.join("nginx.conf")).arg("-p").arg(&dir).arg("-e").arg(dir.join("logs/error.log")).args(args);
    crate::harness::run_command(cmd, b"")
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).replace('\0', " ")).unwrap_or_default()
}

/// The master's pid from `<root>/nginx/nginx.pid`, if that process is an nginx.
fn nginx_master(d: &Daemon) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(nginx_dir(d).join("nginx.pid")).ok()?.trim().parse().ok()?;
    cmdline(pid).contains("nginx").then_some(pid)
}

#[track_caller]
fn running_master(d: &Daemon) -> i32 {
    nginx_master(d).unwrap_or_else(|| panic!("berth's nginx does not run (no live pid in {})", nginx_dir(d).join("nginx.pid").display()))
}

/// The master's worker processes that accept connections (a worker of the config before a
/// reload is titled "shutting down" until its last connection ends).
fn nginx_workers(master: i32) -> BTreeSet<i32> {
    let mut workers = BTreeSet::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{master}/task")) else { return workers };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let title = cmdline(pid);
            if title.contains("worker process") && !title.contains("shutting down") {
                workers.insert(pid);
            }
        }
    }
    workers
}

/// nginx's workers, and who they are, for a failure message.
fn describe_workers(master: i32) -> String {
    let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
    let all: Vec<String> = children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()).map(|p| format!("{p} ({})", cmdline(p).trim())).collect();
    format!("master {master}, children: [{}]", all.join(", "))
}

/// What nginx's own error log says lately (reloads are logged there as "reconfiguring").
fn nginx_log_tail(d: &Daemon) -> String {
    let text = std::fs::read_to_string(nginx_dir(d).join("logs/error.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Fails the test unless the same master runs with the same workers as in `before`: nothing
/// made nginx reload (or restart).
#[track_caller]
fn assert_no_reload(d: &Daemon, before: (i32, BTreeSet<i32>), during: &str) {
    let (master, workers) = before;
    let now = nginx_master(d);
    assert_eq!(now, Some(master), "nginx's master changed during {during} (it was restarted):\nnginx error.log:\n{}", nginx_log_tail(d));
    let after = nginx_workers(master);
    assert_eq!(
        after,
        workers,
        "nginx's workers changed during {during}: it was reloaded (workers before {workers:?}, after {after:?}; {})\nnginx error.log:\n{}",
        describe_workers(master),
        nginx_log_tail(d)
    );
}

fn nginx_state(d: &Daemon) -> (i32, BTreeSet<i32>) {
    let master = running_master(d);
    let workers = nginx_workers(master);
    assert!(!workers.is_empty(), "nginx runs without workers? {}", describe_workers(master));
    (master, workers)
}

/// The app's line of `<root>/nginx/peers` ("APP vN IP IP…"): its release and addresses.
fn peers_line(d: &Daemon, app: &str) -> Result<(String, BTreeSet<String>), String> {
    let file = nginx_dir(d).join("peers");
    let text = std::fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let line = text.lines().find(|l| l.split_whitespace().next() == Some(app)).ok_or_else(|| format!("no line for {app} in {}:\n{text}", file.display()))?;
    let mut words = line.split_whitespace().skip(1);
    let release = words.next().filter(|r| r.starts_with('v')).ok_or_else(|| format!("no vRELEASE in the line {line:?} of {}", file.display()))?;
    // Tolerates IP:PORT, though the file holds bare addresses.
    let ips = words.map(|w| w.split(':').next().unwrap_or(w).to_string()).collect();
    Ok((release.to_string(), ips))
}

/// Waits (10 s at most) until the peers file names the app's active release and exactly the
/// addresses of its running web containers.
#[track_caller]
fn assert_peers_follow(d: &Daemon, app: &str) {
    poll(Duration::from_secs(10), &format!("{}/peers lists what serves {app}", nginx_dir(d).display()), || {
        let release = active_release(d, app);
        let running = web_ips(d, app, &release);
        let (listed, ips) = peers_line(d, app)?;
        if listed == release && ips == running && !ips.is_empty() {
            Ok(())
        } else {
            Err(format!("the peers file says {listed} {ips:?}; the active release is {release}, its web containers run at {running:?}"))
        }
    })
}

/// nginx's `keepalive_requests` (1000 unless berth's config says otherwise): after that many
/// requests nginx closes a keep-alive connection, saying so (`Connection: close`).
fn keepalive_requests(d: &Daemon) -> u64 {
    let mut files = vec![nginx_dir(d).join("nginx.conf")];
    if let Ok(sites) = std::fs::read_dir(nginx_dir(d).join("sites")) {
        files.extend(sites.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "conf")));
    }
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|l| l.trim().strip_prefix("keepalive_requests")?.trim().trim_end_matches(';').trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .min()
        .unwrap_or(1000)
}

// ---------------------------------------------------------------------------------------
// HTTP clients: one keep-alive connection, and a new connection per request.
// ---------------------------------------------------------------------------------------

struct Response {
    status: u16,
    body: String,
    /// The server said `Connection: close`: it closes the connection after this response.
    close: bool,
}

fn read_line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = String::new();
    match reader.read_line(&mut line) {
        Ok(0) => Err("the server closed the connection (EOF)".into()),
        Ok(_) => Ok(line.trim_end_matches(['\r', '\n']).to_string()),
        Err(e) => Err(format!("read failed: {e}")),
    }
}

/// One HTTP/1.1 response: status line, headers, a body by Content-Length or chunked.
fn read_response(reader: &mut impl BufRead) -> Result<Response, String> {
    let status_line = read_line(reader)?;
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| format!("not a header line: {line:?}"))?;
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_ascii_lowercase());
        match name.as_str() {
            "content-length" => length = Some(value.parse::<usize>().map_err(|_| format!("bad Content-Length {value:?}"))?),
            "transfer-encoding" => chunked = value.contains("chunked"),
            "connection" => close = value.contains("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let size_line = read_line(reader)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or_default().trim(), 16).map_err(|_| format!("bad chunk size {size_line:?}"))?;
            if size == 0 {
                while !read_line(reader)?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            reader.read_exact(&mut body[start..]).map_err(|e| format!("body cut short: {e}"))?;
            read_line(reader)?;
        }
    } else if let Some(length) = length {
        body.resize(length, 0);
        reader.read_exact(&mut body).map_err(|e| format!("body cut short: {e}"))?;
    } else {
        return Err(format!("status {status} without Content-Length or chunked body on a keep-alive connection"));
    }
    Ok(Response { status, body: String::from_utf8_lossy(&body).trim().to_string(), close })
}

/// One keep-alive HTTP/1.1 connection to nginx: requests back to back on it, as a browser
/// or an API client sends them.
struct KeepAlive {
    reader: BufReader<TcpStream>,
    /// Requests sent on this connection.
    requests: u64,
}

impl KeepAlive {
    fn connect(port: u16) -> std::io::Result<KeepAlive> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_write_timeout(Some(Duration::from_secs(10)))?;
        Ok(KeepAlive { reader: BufReader::new(stream), requests: 0 })
    }

    fn get(&mut self, host: &str) -> Result<Response, String> {
        let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: berth-test-keepalive\r\n\r\n");
        self.requests += 1;
        self.reader.get_mut().write_all(request.as_bytes()).map_err(|e| format!("write failed: {e}"))?;
        read_response(&mut self.reader)
    }
}

/// What the two clients saw while a test changed the app under them.
struct Traffic<'a> {
    d: &'a Daemon,
    host: String,
    /// Whether a 200's body is one the app may serve at that moment.
    accept: &'a (dyn Fn(&str) -> bool + Sync),
    stop: AtomicBool,
    keepalive_served: AtomicUsize,
    fresh_served: AtomicUsize,
    /// Keep-alive connections nginx ended as HTTP allows: `Connection: close` after
    /// `keepalive_requests` requests.
    announced_closes: AtomicUsize,
    errors: Mutex<Vec<String>>,
    started: Instant,
}

/// Sets the flag when dropped: the clients stop even when the test fails under them.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl<'a> Traffic<'a> {
    /// Runs `work` while two clients fetch the app: one over a single keep-alive connection
    /// (any reconnection it needs is an error), one with a new connection per request.
    fn during<R>(d: &'a Daemon, app: &str, accept: &'a (dyn Fn(&str) -> bool + Sync), work: impl FnOnce() -> R) -> (R, Traffic<'a>) {
        let traffic = Traffic {
            d,
            host: host(app),
            accept,
            stop: AtomicBool::new(false),
            keepalive_served: AtomicUsize::new(0),
            fresh_served: AtomicUsize::new(0),
            announced_closes: AtomicUsize::new(0),
            errors: Mutex::new(Vec::new()),
            started: Instant::now(),
        };
        let result = std::thread::scope(|s| {
            let _stop = StopOnDrop(&traffic.stop);
            s.spawn(|| traffic.keepalive_client());
            s.spawn(|| traffic.fresh_client());
            poll(Duration::from_secs(10), "both clients are served before the test goes on", || {
                let (k, f) = (traffic.keepalive_served.load(Ordering::Relaxed), traffic.fresh_served.load(Ordering::Relaxed));
                if k > 0 && f > 0 { Ok(()) } else { Err(traffic.summary()) }
            });
            work()
        });
        (result, traffic)
    }

    fn error(&self, what: String) {
        self.errors.lock().unwrap().push(format!("{:7.2}s {what}", self.started.elapsed().as_secs_f64()));
    }

    fn keepalive_client(&self) {
        let limit = keepalive_requests(self.d);
        let mut conn: Option<KeepAlive> = None;
        let mut connections = 0;
        while !self.stop.load(Ordering::Relaxed) {
            let c = match conn.as_mut() {
                Some(c) => c,
                None => match KeepAlive::connect(self.d.http_port) {
                    Ok(c) => {
                        connections += 1;
                        conn.insert(c)
                    }
                    Err(e) => {
                        self.error(format!("keep-alive client: cannot connect: {e}"));
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                },
            };
            match c.get(&self.host) {
                Ok(response) => {
                    if response.status == 200 && (self.accept)(&response.body) {
                        self.keepalive_served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.error(format!("keep-alive connection {connections}, request {}: {} {:.120}", c.requests, response.status, response.body));
                    }
                    if response.close {
                        if c.requests >= limit {
                            self.announced_closes.fetch_add(1, Ordering::Relaxed);
                        } else {
                            self.error(format!(
                                "keep-alive connection {connections}: nginx answered `Connection: close` after {} requests (keepalive_requests is {limit}): the client must reconnect",
                                c.requests
                            ));
                        }
                        conn = None;
                    }
                }
                Err(e) => {
                    self.error(format!("keep-alive connection {connections}, request {}: {e} (the client must reconnect)", c.requests));
                    conn = None;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn fresh_client(&self) {
        let mut n = 0;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let (status, body) = get(self.d, &self.host);
            if status == 200 && (self.accept)(&body) {
                self.fresh_served.fetch_add(1, Ordering::Relaxed);
            } else {
                self.error(format!("new-connection request {n}: {status} {body:.120}"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn summary(&self) -> String {
        let errors = self.errors.lock().unwrap();
        let shown: Vec<&String> = errors.iter().take(12).collect();
        format!(
            "keep-alive client served {} (announced closes at keepalive_requests: {}), new-connection client served {}; {} errors{}{}",
            self.keepalive_served.load(Ordering::Relaxed),
            self.announced_closes.load(Ordering::Relaxed),
            self.fresh_served.load(Ordering::Relaxed),
            errors.len(),
            if shown.is_empty() { String::new() } else { format!(", the first ones:\n  {}", shown.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  ")) },
            if errors.len() > shown.len() { "\n  …" } else { "" },
        )
    }

    /// No request failed, no connection was dropped, and both clients were served enough to
    /// mean something.
    #[track_caller]
    fn assert_clean(&self, during: &str) {
        let errors = self.errors.lock().unwrap().len();
        assert_eq!(errors, 0, "requests failed during {during}: {}", self.summary());
        let (k, f) = (self.keepalive_served.load(Ordering::Relaxed), self.fresh_served.load(Ordering::Relaxed));
        assert!(k >= 20 && f >= 20, "too few requests during {during} to mean anything: {}", self.summary());
    }
}

// ---------------------------------------------------------------------------------------
// Redeploys, scaling, restarts, rollbacks: peers change, nginx does not reload.
// ---------------------------------------------------------------------------------------

#[test]
fn five_redeploys_drop_no_request_nor_keep_alive_connection_and_never_reload_nginx() {
    let d = Daemon::start();
    let app = "unseen";
    let repo = new_app(&d, app);
    repo.write("Dockerfile", &web_dockerfile("unseen v1", 0)).commit("v1");
    pushed(&d, &repo);
    assert_eq!(get(&d, &host(app)), (200, "unseen v1".into()));
    let before = nginx_state(&d);

    let accept = |body: &str| body == "unseen v1";
    let (releases, traffic) = Traffic::during(&d, app, &accept, || {
        let mut releases = vec![active_release(&d, app)];
        for i in 1..=5 {
            // An empty commit: the same image, a new release and new containers.
            repo.commit(&format!("redeploy {i}"));
            pushed(&d, &repo);
            releases.push(active_release(&d, app));
        }
        releases
    });
    traffic.assert_clean("5 redeploys");
    let distinct: BTreeSet<&String> = releases.iter().collect();
    assert_eq!(distinct.len(), 6, "each redeploy must make a new release: {releases:?}");
    assert_no_reload(&d, before, "5 redeploys");
    assert_peers_follow(&d, app);
    assert_eq!(get(&d, &host(app)), (200, "unseen v1".into()));
}

#[test]
fn scaling_restarting_rolling_back_and_a_crashed_container_never_reload_nginx() {
    let d = Daemon::start();
    let app = "shifty";
    let repo = new_app(&d, app);
    repo.write("Dockerfile", &web_dockerfile("shifty one", 0)).commit("one");
    pushed(&d, &repo);
    let first = active_release(&d, app);
    repo.write("Dockerfile", &web_dockerfile("shifty two", 0)).commit("two");
    pushed(&d, &repo);
    assert_eq!(get(&d, &host(app)), (200, "shifty two".into()));
    let before = nginx_state(&d);

    let accept = |body: &str| body == "shifty one" || body == "shifty two";
    let ((), traffic) = Traffic::during(&d, app, &accept, || {
        d.ssh(&format!("ps:scale {app} web=2")).ok();
        assert_peers_follow(&d, app);
        assert_eq!(peers_line(&d, app).unwrap().1.len(), 2, "ps:scale web=2: two peers");
        d.ssh(&format!("ps:restart {app}")).ok();
        assert_peers_follow(&d, app);
        d.ssh(&format!("releases:rollback {app} {first}")).ok();
        assert_peers_follow(&d, app);
        assert_eq!(get(&d, &host(app)), (200, "shifty one".into()), "after releases:rollback {first}");
        d.ssh(&format!("ps:scale {app} web=1")).ok();
        assert_peers_follow(&d, app);
    });
    traffic.assert_clean("ps:scale, ps:restart and releases:rollback");
    assert_no_reload(&d, before.clone(), "ps:scale, ps:restart and releases:rollback");

    // A container dies behind berth's back: routed away from, started again, routed again,
    // all without a reload. (Requests in flight to it when it dies may fail: not counted.)
    let release = active_release(&d, app);
    let app_label = format!("berth.app={app}");
    let release_label = format!("berth.release={}", release.trim_start_matches('v'));
    let web = d.container_ids(false, &[&app_label, "berth.process=web", &release_label]);
    assert_eq!(web.len(), 1, "one web container of {release} after ps:scale web=1: {web:?}");
    docker(&["kill", &web[0]]);
    poll(Duration::from_secs(30), "the killed web container is replaced and served", || {
        let running = web_ips(&d, app, &release);
        let answer = get(&d, &host(app));
        if running.len() == 1 && answer == (200, "shifty one".into()) { Ok(()) } else { Err(format!("running {running:?}, answer {answer:?}")) }
    });
    assert_peers_follow(&d, app);
    assert_no_reload(&d, before, "a web container's crash and restart");
}

// ---------------------------------------------------------------------------------------
// Peers survive nginx's restart and the daemon's crash.
// ---------------------------------------------------------------------------------------

#[test]
fn peers_are_restored_after_nginx_stops_and_after_a_daemon_crash() {
    let mut d = Daemon::start();
    let app = "sticky";
    let repo = new_app(&d, app);
    repo.write("Dockerfile", &web_dockerfile("sticky v1", 0)).commit("v1");
    pushed(&d, &repo);
    assert_eq!(get(&d, &host(app)), (200, "sticky v1".into()));
    assert_peers_follow(&d, app);

    // nginx stopped behind berth's back: the daemon's watcher starts it again, and nginx
    // loads the peers from the file (nothing is pushed to it).
    let master = running_master(&d);
    nginx(&d, &["-s", "stop"]).ok();
    poll(Duration::from_secs(10), "nginx -s stop ends the master", || {
        if cmdline(master).is_empty() { Ok(()) } else { Err(format!("{master} still runs")) }
    });
    poll(Duration::from_secs(15), "the app is served again after nginx -s stop", || match get(&d, &host(app)) {
        (200, body) if body == "sticky v1" => Ok(()),
        other => Err(format!("{other:?}; nginx error.log:\n{}", nginx_log_tail(&d))),
    });
    assert_ne!(running_master(&d), master, "a new nginx master serves");

    // The daemon SIGKILLed: nginx and the containers serve on.
    d.kill();
    assert_eq!(get(&d, &host(app)), (200, "sticky v1".into()), "the daemon's crash interrupted the app");
    // nginx started again while the daemon is down (as after a crash of both): the peers
    // come from the file alone.
    let master = running_master(&d);
    nginx(&d, &["-s", "stop"]).ok();
    poll(Duration::from_secs(10), "nginx -s stop ends the master", || {
        if cmdline(master).is_empty() { Ok(()) } else { Err(format!("{master} still runs")) }
    });
    assert_eq!(get(&d, &host(app)).0, 0, "nginx was stopped, yet something answers");
    nginx(&d, &[]).ok();
    poll(Duration::from_secs(10), "nginx started by hand serves the app from the peers file alone", || match get(&d, &host(app)) {
        (200, body) if body == "sticky v1" => Ok(()),
        other => Err(format!("{other:?}; {}/peers:\n{}\nnginx error.log:\n{}", nginx_dir(&d).display(), std::fs::read_to_string(nginx_dir(&d).join("peers")).unwrap_or_default(), nginx_log_tail(&d))),
    });

    // Back up: the next push deploys and serves the new version.
    d.boot();
    follow(&d, &repo, app);
    assert_eq!(get(&d, &host(app)), (200, "sticky v1".into()), "the daemon's start interrupted the app");
    repo.write("Dockerfile", &web_dockerfile("sticky v2", 0)).commit("v2");
    pushed(&d, &repo);
    assert_eq!(get(&d, &host(app)), (200, "sticky v2".into()));
    assert_peers_follow(&d, app);
}

// ---------------------------------------------------------------------------------------
// A WebSocket through a swap.
// ---------------------------------------------------------------------------------------

/// A WebSocket echo server on Python's standard library (no package to install): answers
/// `ws VERSION` to a plain GET, and `VERSION echo: TEXT` to each text message.
const WS_SERVER: &str = r#"import base64, hashlib, os, signal, socketserver, struct

VERSION = open("version.txt").read().strip()
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def exact(f, n):
    data = f.read(n)
    if len(data) < n:
        raise EOFError()
    return data


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        try:
            self.serve()
        except (EOFError, OSError):
            pass

    def serve(self):
        if not self.rfile.readline().strip():
            return
        headers = {}
        while True:
            line = self.rfile.readline().decode("latin-1")
            if not line.strip():
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("upgrade", "").lower() != "websocket":
            body = ("ws " + VERSION + "\n").encode()
            head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            self.wfile.write(head.encode() + body)
            return
        accept = base64.b64encode(hashlib.sha1((headers["sec-websocket-key"] + GUID).encode()).digest()).decode()
        self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n").encode())
        while True:
            b0, b1 = exact(self.rfile, 2)
            opcode, length = b0 & 0x0F, b1 & 0x7F
            if length == 126:
                length = struct.unpack(">H", exact(self.rfile, 2))[0]
            elif length == 127:
                length = struct.unpack(">Q", exact(self.rfile, 8))[0]
            mask = exact(self.rfile, 4) if b1 & 0x80 else bytes(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(exact(self.rfile, length)))
            if opcode == 8:
                self.send(8, data[:2])
                return
            if opcode == 9:
                self.send(10, data)
            elif opcode == 1:
                self.send(1, (VERSION + " echo: ").encode() + data)

    def send(self, opcode, data):
        head = bytes([0x80 | opcode])
        if len(data) < 126:
            head += bytes([len(data)])
        else:
            head += bytes([126]) + struct.pack(">H", len(data))
        self.wfile.write(head + data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


# Stopped (retired): exit at once, closing every connection.
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
Server(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"#;

/// A minimal WebSocket client (RFC 6455): text frames out (masked), frames in.
struct WebSocket {
    reader: BufReader<TcpStream>,
}

/// How a receive ended when no text came.
enum Received {
    Text(String),
    /// The socket ended: a close frame, EOF or a reset.
    Ended(String),
}

impl WebSocket {
    /// The handshake through nginx, with RFC 6455's sample key (and its known answer).
    fn connect(port: u16, host: &str) -> Result<WebSocket, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        stream.set_write_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut reader = BufReader::new(stream);
        let request = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        reader.get_mut().write_all(request.as_bytes()).map_err(|e| format!("handshake write: {e}"))?;
        let status = read_line(&mut reader)?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(&mut reader)?;
            if line.is_empty() {
                break;
            }
            headers.push(line);
        }
        if !status.starts_with("HTTP/1.1 101") {
            return Err(format!("handshake answered {status:?} {headers:?}"));
        }
        let accepted = headers.iter().any(|h| h.to_ascii_lowercase().starts_with("sec-websocket-accept:") && h.ends_with("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
        if !accepted {
            return Err(format!("handshake without the right Sec-WebSocket-Accept: {headers:?}"));
        }
        Ok(WebSocket { reader })
    }

    fn send_text(&mut self, text: &str) -> std::io::Result<()> {
        let payload = text.as_bytes();
        assert!(payload.len() < 126, "short messages only");
        let mask = rand::random::<u32>().to_be_bytes();
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.reader.get_mut().write_all(&frame)
    }

    /// The next text message, or how the socket ended; Err if nothing came within the read
    /// timeout (a hang) or the frame is not WebSocket.
    fn receive(&mut self) -> Result<Received, String> {
        loop {
            let mut head = [0u8; 2];
            if let Err(e) = self.reader.read_exact(&mut head) {
                return match e.kind() {
                    std::io::ErrorKind::UnexpectedEof => Ok(Received::Ended("EOF".into())),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => Ok(Received::Ended(format!("reset ({e})"))),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => Err("nothing came within 15 s: the socket hangs".into()),
                    _ => Err(format!("read: {e}")),
                };
            }
            let opcode = head[0] & 0x0F;
            if head[1] & 0x80 != 0 {
                return Err("the server sent a masked frame".into());
            }
            let length = match head[1] & 0x7F {
                126 => {
                    let mut n = [0u8; 2];
                    self.reader.read_exact(&mut n).map_err(|e| format!("frame length: {e}"))?;
                    u16::from_be_bytes(n) as usize
                }
                127 => {
                    let mut n = [0u8; 8];
                    self.reader.read_exact(&mut n).map_err(|e| format!("frame length: {e}"))?;
                    u64::from_be_bytes(n) as usize
                }
                n => n as usize,
            };
            let mut payload = vec![0u8; length];
            self.reader.read_exact(&mut payload).map_err(|e| format!("frame cut short: {e}"))?;
            match opcode {
                0x1 => return Ok(Received::Text(String::from_utf8_lossy(&payload).into_owned())),
                0x8 => {
                    let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok(Received::Ended(format!("close frame (code {code:?})")));
                }
                0x9 | 0xA => continue,
                other => return Err(format!("unexpected opcode {other:#x}")),
            }
        }
    }
}

/// What one WebSocket saw while the app was redeployed under it.
#[derive(Default)]
struct Exchange {
    /// When each echo came back.
    echoes: Vec<Instant>,
    /// Echoes that were not the answer to the message sent.
    wrong: Vec<String>,
    /// The message in flight when the socket ended (its container retired under it).
    unanswered: Option<String>,
    /// How the socket ended, or why the test gave up on it.
    end: Option<Result<String, String>>,
}

#[test]
fn a_websocket_keeps_working_through_a_swap_until_its_old_container_retires() {
    let d = Daemon::start();
    stack_image(&d);
    let app = "chatty";
    let repo = new_app(&d, app);
    repo.write("server.py", WS_SERVER).write("Procfile", "web: python3 -u server.py\n").write("version.txt", "v1\n").commit("v1");
    pushed(&d, &repo);
    assert_eq!(get(&d, &host(app)), (200, "ws v1".into()));
    let old_release = active_release(&d, app);

    let mut ws = WebSocket::connect(d.http_port, &host(app)).unwrap_or_else(|e| panic!("WebSocket to v1: {e}"));
    ws.send_text("hello").unwrap();
    match ws.receive() {
        Ok(Received::Text(t)) => assert_eq!(t, "v1 echo: hello"),
        Ok(Received::Ended(how)) => panic!("the WebSocket ended at once: {how}"),
        Err(e) => panic!("no echo from v1: {e}"),
    }

    d.ssh(&format!("checks:set {app} wait-to-retire 5")).ok();
    repo.write("version.txt", "v2\n").commit("v2");
    let abandon = AtomicBool::new(false);
    let push_returned: Mutex<Option<Instant>> = Mutex::new(None);
    let new_served: Mutex<Option<Instant>> = Mutex::new(None);
    let exchange = std::thread::scope(|s| {
        let _abandon = StopOnDrop(&abandon);
        // Messages back and forth until the socket ends.
        let talker = s.spawn(|| {
            let mut seen = Exchange::default();
            for i in 0.. {
                let returned = *push_returned.lock().unwrap();
                if abandon.load(Ordering::Relaxed) || returned.is_some_and(|t| t.elapsed() > Duration::from_secs(60)) {
                    seen.end = Some(Err("still open 60 s after the push returned: the old container never retired, or nginx kept the socket".into()));
                    break;
                }
                let message = format!("message {i}");
                if let Err(e) = ws.send_text(&message) {
                    seen.end = Some(Ok(format!("send failed: {e}")));
                    break;
                }
                match ws.receive() {
                    Ok(Received::Text(text)) if text == format!("v1 echo: {message}") => seen.echoes.push(Instant::now()),
                    Ok(Received::Text(text)) => seen.wrong.push(format!("sent {message:?}, got {text:?}")),
                    Ok(Received::Ended(how)) => {
                        seen.unanswered = Some(message);
                        seen.end = Some(Ok(how));
                        break;
                    }
                    Err(e) => {
                        seen.end = Some(Err(e));
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        });
        // When the new release is served to new connections: the swap.
        s.spawn(|| {
            while !abandon.load(Ordering::Relaxed) {
                if get(&d, &host(app)) == (200, "ws v2".into()) {
                    *new_served.lock().unwrap() = Some(Instant::now());
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let log = pushed(&d, &repo);
        *push_returned.lock().unwrap() = Some(Instant::now());
        let seen = talker.join().unwrap();
        (seen, log)
    });
    let (seen, log) = exchange;
    let swapped = new_served.lock().unwrap().unwrap_or_else(|| panic!("v2 was never served to a new connection; push output:\n{log}"));
    let after_swap = seen.echoes.iter().filter(|t| **t > swapped).count();
    let story = format!(
        "{} echoes from v1 ({} of them after v2 served new connections), wrong: {:?}, unanswered at the end: {:?}, end: {:?}\npush output:\n{log}",
        seen.echoes.len(),
        after_swap,
        seen.wrong,
        seen.unanswered,
        seen.end
    );
    assert!(seen.wrong.is_empty(), "the WebSocket lost or mixed up messages: {story}");
    match &seen.end {
        Some(Ok(_)) => {}
        _ => panic!("the WebSocket did not end with a close, EOF or reset once its container retired: {story}"),
    }
    assert!(after_swap >= 1, "the WebSocket to v1 stopped working at the swap instead of when its container retired: {story}");
    // It ended because its container retired.
    poll(Duration::from_secs(30), "the old release's web container retires", || {
        let running = web_ips(&d, app, &old_release);
        if running.is_empty() { Ok(()) } else { Err(format!("{old_release} still runs at {running:?}")) }
    });

    // A new connection reaches the new release.
    let mut ws = WebSocket::connect(d.http_port, &host(app)).unwrap_or_else(|e| panic!("WebSocket to v2: {e}"));
    ws.send_text("again").unwrap();
    match ws.receive() {
        Ok(Received::Text(t)) => assert_eq!(t, "v2 echo: again"),
        Ok(Received::Ended(how)) => panic!("the new WebSocket ended at once: {how}"),
        Err(e) => panic!("no echo from v2: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Builds: a queue, and limits of their own.
// ---------------------------------------------------------------------------------------

/// `(began, ended)` of a build step that prints `build APP began at UPTIME` and `… ended at
/// UPTIME` (/proc/uptime: one clock for every container), from a push's output.
fn build_interval(app: &str, output: &str) -> Option<(f64, f64)> {
    let at = |word: &str| {
        let marker = format!("build {app} {word} at ");
        output.lines().find_map(|l| l.split_once(&marker)?.1.split_whitespace().next()?.parse::<f64>().ok())
    };
    Some((at("began")?, at("ended")?))
}

#[test]
fn a_second_build_waits_in_the_queue_and_both_pushes_land() {
    let d = Daemon::start();
    d.ssh("builder:set --global build-concurrency many").refused("");
    d.ssh("builder:set --global build-concurrency 1").ok();
    let apps = ["queue-a", "queue-b"];
    let repos: Vec<AppRepo> = apps
        .iter()
        .map(|app| {
            let repo = new_app(&d, app);
            let dockerfile = format!(
                "FROM berth-test/busybox\n\
                 RUN echo \"{nonce}\" >/dev/null; echo \"build {app} began at $(cut -d' ' -f1 /proc/uptime)\"; sleep 5; echo \"build {app} ended at $(cut -d' ' -f1 /proc/uptime)\"\n\
                 RUN mkdir /www && echo '{app} served' > /www/index.html\n\
                 CMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n",
                nonce = nonce()
            );
            repo.write("Dockerfile", &dockerfile).commit("slow build");
            repo
        })
        .collect();

    let outs: Vec<Out> = std::thread::scope(|s| {
        let pushes: Vec<_> = repos.iter().map(|repo| s.spawn(|| repo.push(&d, "main"))).collect();
        pushes.into_iter().map(|p| p.join().unwrap()).collect()
    });
    for (app, out) in apps.iter().zip(&outs) {
        assert_eq!(out.code, 0, "the push of {app} failed: {out:#?}");
    }
    let both = format!("--- push of {}:\n{}\n--- push of {}:\n{}", apps[0], outs[0].stderr, apps[1], outs[1].stderr);
    let queued: Vec<usize> = (0..2).filter(|i| outs[*i].stderr.contains("Queued")).collect();
    assert!(!queued.is_empty(), "with build-concurrency 1, one of two pushes at once must say it is Queued:\n{both}");

    // The builds ran one after the other, and a queued push built only after its wait.
    let intervals: Vec<(f64, f64)> =
        apps.iter().zip(&outs).map(|(app, out)| build_interval(app, &out.stderr).unwrap_or_else(|| panic!("no build step times of {app}:\n{both}"))).collect();
    let (a, b) = (intervals[0], intervals[1]);
    assert!(a.1 <= b.0 || b.1 <= a.0, "with build-concurrency 1 two builds overlapped ({a:?} and {b:?} in uptime seconds):\n{both}");
    for i in queued {
        let out = &outs[i].stderr;
        let queued_at = out.find("Queued").unwrap();
        let began_at = out.find(&format!("build {} began at ", apps[i])).unwrap_or(0);
        assert!(queued_at < began_at, "{} said Queued only after its build began:\n{both}", apps[i]);
    }
    for app in apps {
        assert_eq!(get(&d, &host(app)), (200, format!("{app} served")));
    }
}

/// Prints the build container's CPU weight and memory limit as cgroups (v1 or v2) see them,
/// as `limits: shares=N memory=BYTES` (v1) or `limits: weight=N memory=BYTES|max` (v2).
const PRINT_LIMITS: &str = r#"if [ -f /sys/fs/cgroup/cpu/cpu.shares ]; then echo "limits: shares=$(cat /sys/fs/cgroup/cpu/cpu.shares) memory=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"; else echo "limits: weight=$(cat /sys/fs/cgroup/cpu.weight) memory=$(cat /sys/fs/cgroup/memory.max)"; fi"#;

/// The values a PRINT_LIMITS line shows in a push's output (not the line of the command).
fn build_limits(output: &str) -> Option<BTreeMap<String, String>> {
    output.lines().rev().find_map(|line| {
        let (_, rest) = line.split_once("limits: ")?;
        let values: BTreeMap<String, String> = rest.split_whitespace().filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let numeric = |v: &String| v == "max" || v.chars().all(|c| c.is_ascii_digit());
        (values.contains_key("memory") && values.len() == 2 && values.values().all(numeric)).then_some(values)
    })
}

/// The build ran with these CPU shares, as its cgroup shows them: shares (v1), or the
/// weight Docker converts them to (v2).
fn has_cpu_shares(limits: &BTreeMap<String, String>, shares: u64) -> bool {
    let weight = 1 + ((shares - 2) * 9999) / 262_142;
    limits.get("shares") == Some(&shares.to_string()) || limits.get("weight") == Some(&weight.to_string())
}

fn shown(limits: &BTreeMap<String, String>) -> String {
    limits.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

#[test]
fn builds_run_with_a_lower_cpu_weight_and_a_memory_limit() {
    let d = Daemon::start();
    let app = "limited";
    let repo = new_app(&d, app);
    let dockerfile = |n: &str| format!("FROM berth-test/busybox\nRUN echo {n} >/dev/null; {PRINT_LIMITS}\n{}", web_dockerfile("limited", 0).split_once('\n').unwrap().1);

    // By default: a lower CPU weight than the apps' (1024 shares) and a memory limit.
    repo.write("Dockerfile", &dockerfile(&nonce())).commit("defaults");
    let log = pushed(&d, &repo);
    let limits = build_limits(&log).unwrap_or_else(|| panic!("the build printed no limits:\n{log}"));
    let cpu = limits.get("shares").map(|s| (s, 1024)).or(limits.get("weight").map(|w| (w, 100))).unwrap();
    assert!(cpu.0.parse::<u64>().unwrap() < cpu.1, "a build runs with the CPU weight of an app ({}):\n{log}", shown(&limits));
    let memory = &limits["memory"];
    assert!(memory != "max" && memory.parse::<u64>().unwrap() < 1 << 50, "a build runs without a memory limit ({}):\n{log}", shown(&limits));

    // Global settings, then the app's own memory limit over the global one.
    d.ssh("builder:set --global build-cpu-shares lots").refused("");
    d.ssh(&format!("builder:set {app} build-memory lots")).refused("memory");
    d.ssh("builder:set --global build-cpu-shares 512").ok();
    d.ssh("builder:set --global build-memory 300m").ok();
    repo.write("Dockerfile", &dockerfile(&nonce())).commit("global limits");
    let log = pushed(&d, &repo);
    let limits = build_limits(&log).unwrap_or_else(|| panic!("the build printed no limits:\n{log}"));
    assert!(has_cpu_shares(&limits, 512), "build-cpu-shares 512 did not reach the build ({}):\n{log}", shown(&limits));
    assert_eq!(limits["memory"], (300u64 << 20).to_string(), "build-memory 300m did not reach the build:\n{log}");

    d.ssh(&format!("builder:set {app} build-memory 200m")).ok();
    repo.write("Dockerfile", &dockerfile(&nonce())).commit("app limits");
    let log = pushed(&d, &repo);
    let limits = build_limits(&log).unwrap_or_else(|| panic!("the build printed no limits:\n{log}"));
    assert_eq!(limits["memory"], (200u64 << 20).to_string(), "the app's build-memory 200m did not win over the global 300m:\n{log}");
    assert!(has_cpu_shares(&limits, 512), "the global build-cpu-shares 512 was lost ({}):\n{log}", shown(&limits));
    assert_eq!(get(&d, &host(app)), (200, "limited".into()));

    // A buildpack build (the stack image's one-shot container) runs under them too: npm
    // runs the app's postinstall script inside it.
    stack_image(&d);
    let node = new_app(&d, "limited-node");
    node.write("limits.sh", &format!("{PRINT_LIMITS}\n"))
        .write("server.js", "require('http').createServer((q, s) => s.end('node limited')).listen(process.env.PORT);\n")
        .write("package.json", r#"{"name": "limited-node", "version": "1.0.0", "scripts": {"start": "node server.js", "postinstall": "sh limits.sh"}}"#)
        .commit("node");
    let log = pushed(&d, &node);
    let limits = build_limits(&log).unwrap_or_else(|| panic!("the buildpack build printed no limits:\n{log}"));
    assert!(has_cpu_shares(&limits, 512), "build-cpu-shares 512 did not reach the buildpack build ({}):\n{log}", shown(&limits));
    assert_eq!(limits["memory"], (300u64 << 20).to_string(), "build-memory 300m did not reach the buildpack build:\n{log}");
    assert_eq!(get(&d, &host("limited-node")), (200, "node limited".into()));
}
