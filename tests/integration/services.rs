//! Built-in database services (`postgres:*`, `redis:*`): real PostgreSQL and Redis in
//! containers of images built from the stack image with Debian's packages, on berth's
//! network, linked to real apps that berth's python buildpack built (psycopg and redis-py
//! from PyPI). The data outlives a container restart, a daemon crash and a container removed
//! behind berth's back; a pg_dump exported over SSH comes back through an import into a new
//! service; every refusal is one line and changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{AppRepo, BERTH, Daemon, Out, base_image, docker, free_port, http_get, image_exists, stack_image, web_dockerfile, poll};

// ---------------------------------------------------------------------------------------
// Fixture apps (tests/fixtures/services/): Python apps with a Procfile, built by buildpack.
// ---------------------------------------------------------------------------------------

/// GET / says "up"; /write?v=X inserts X into DATABASE_URL's database; /read lists the rows.
const PG_APP: &[(&str, &str)] = &[
    ("app.py", include_str!("../fixtures/services/pg-app/app.py")),
    ("requirements.txt", include_str!("../fixtures/services/pg-app/requirements.txt")),
    ("Procfile", include_str!("../fixtures/services/pg-app/Procfile")),
];

/// GET / says "up"; /hit increments a counter in REDIS_URL's Redis and says "hits N".
const REDIS_APP: &[(&str, &str)] = &[
    ("app.py", include_str!("../fixtures/services/redis-app/app.py")),
    ("requirements.txt", include_str!("../fixtures/services/redis-app/requirements.txt")),
    ("Procfile", include_str!("../fixtures/services/redis-app/Procfile")),
];

/// An app served at `NAME.example.com`, built from `files` by the python buildpack and
/// deployed.
fn python_app(d: &Daemon, name: &str, files: &[(&str, &str)]) {
    stack_image(d);
    d.ssh(&format!("apps:create {name}")).ok();
    d.ssh(&format!("domains:add {name} {}", host(name))).ok();
    let repo = AppRepo::new(d, name);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.commit("first");
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "push of {name} failed: {out:#?}");
}

fn host(app: &str) -> String {
    format!("{app}.example.com")
}

/// GET `path` of the app through berth's nginx: (status, body).
fn fetch(d: &Daemon, app: &str, path: &str) -> (u16, String) {
    http_get(d.http_port, &host(app), path)
}

// ---------------------------------------------------------------------------------------
// Services: create (the image once per machine), info, the container and volume.
// ---------------------------------------------------------------------------------------

/// The Docker volumes a test's services made, removed when the test ends: declared before
/// the daemon, so dropped after it (the harness removes this root's containers, which
/// carry `berth.root`; a container still using a volume is removed here too).
#[derive(Default)]
struct Volumes(Mutex<BTreeSet<String>>);

impl Volumes {
    fn keep(&self, name: String) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(name);
    }
}

impl Drop for Volumes {
    fn drop(&mut self) {
        for volume in self.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let users = Command::new("docker").args(["ps", "-aq", "--filter", &format!("volume={volume}")]).output();
            let users: Vec<String> = users.map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect()).unwrap_or_default();
            if !users.is_empty() {
                let _ = Command::new("docker").args(["rm", "-f"]).args(&users).stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
            let _ = Command::new("docker").args(["volume", "rm", "-f", volume]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
}

/// `berth/postgres:15`, `berth/redis:7`: the image a service kind runs.
fn service_image(kind: &str) -> &'static str {
    match kind {
        "postgres" => "berth/postgres:15",
        "redis" => "berth/redis:7",
        _ => panic!("no service kind {kind}"),
    }
}

fn volume_exists(volume: &str) -> bool {
    Command::new("docker").args(["volume", "inspect", volume]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success()
}

/// `KIND:create NAME`, which must succeed; its volume is removed when the test ends. Tests
/// creating the same kind take turns, so that the machine builds the image once, as a
/// server does (the first create builds it and must show progress while it does).
#[track_caller]
fn create(d: &Daemon, volumes: &Volumes, kind: &str, name: &str) -> Out {
    static POSTGRES: Mutex<()> = Mutex::new(());
    static REDIS: Mutex<()> = Mutex::new(());
    stack_image(d);
    let image = service_image(kind);
    let turn = if kind == "postgres" { &POSTGRES } else { &REDIS };
    let out = {
        let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
        let built_before = image_exists(image);
        let out = d.ssh(&format!("{kind}:create {name}"));
        if !built_before && image_exists(image) {
            assert!(out.stdout.contains("-----> ") && out.stdout.lines().count() >= 3, "the first {kind}:create builds {image}: it shows its progress: {out:#?}");
        }
        out
    };
    out.ok();
    let report = info(d, kind, name);
    volumes.keep(text(&report["volume"]));
    // berth's image where no registry gives the official one (none does here), by its ID:
    // the name is only what berth chose it by.
    let runs = text(&inspect(&text(&report["container"]))["Image"]);
    assert_eq!(runs, docker(&["image", "inspect", "-f", "{{.Id}}", image]).trim(), "{kind} {name} runs another image than {image}");
    assert_eq!(text(&report["image-id"]), runs, "{kind}:info names the image it runs by its ID");
    out
}

/// `KIND:info NAME --format json`.
#[track_caller]
fn info(d: &Daemon, kind: &str, name: &str) -> serde_json::Value {
    info_with(d, kind, name, "")
}

#[track_caller]
fn info_with(d: &Daemon, kind: &str, name: &str, flags: &str) -> serde_json::Value {
    let out = d.ssh(&format!("{kind}:info {name} --format json {flags}"));
    out.ok();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{kind}:info is not JSON ({e}): {out:#?}"));
    for key in ["status", "version", "volume", "links", "dsn", "container"] {
        assert!(report.get(key).is_some(), "{kind}:info {name} has no {key:?}: {report}");
    }
    report
}

/// A report value as a person reads it (a string bare, a number or bool written out).
fn text(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The apps of a `Links` value: a JSON array of entries (`APP` or `APP (VAR)`), or such
/// entries separated by commas.
fn linked_apps(value: &serde_json::Value) -> Vec<String> {
    let entries: Vec<String> = match value {
        serde_json::Value::Array(items) => items.iter().map(text).collect(),
        other => text(other).split(',').map(String::from).collect(),
    };
    entries.iter().filter_map(|e| e.split_whitespace().next()).map(String::from).collect()
}

/// The password of a `SCHEME://USER:PASSWORD@HOST:PORT…` URL.
fn password(url: &str) -> &str {
    let credentials = url.split_once("://").and_then(|(_, rest)| rest.split_once('@')).map(|(c, _)| c).unwrap_or_else(|| panic!("no credentials in {url:?}"));
    credentials.split_once(':').map(|(_, p)| p).unwrap_or_else(|| panic!("no password in {url:?}"))
}

/// Checks the URL a link sets: `SCHEME://USER:PASSWORD@HOST:PORTPATH`, with a password
/// that needs no escaping in a URL and is not guessable, and a host on berth's network
/// (the service is not published on the host).
#[track_caller]
fn assert_service_url(url: &str, scheme_and_user: &str, port_and_path: &str) {
    let rest = url.strip_prefix(scheme_and_user).unwrap_or_else(|| panic!("{url:?} does not start with {scheme_and_user:?}"));
    let (secret, address) = rest.split_once('@').unwrap_or_else(|| panic!("no @ in {url:?}"));
    assert!(secret.len() >= 16 && secret.chars().all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c)), "a weak or unescaped password in {url:?}");
    let service_host = address.strip_suffix(port_and_path).unwrap_or_else(|| panic!("{url:?} does not end with {port_and_path:?}"));
    assert!(!service_host.is_empty() && !["127.0.0.1", "localhost", "0.0.0.0"].contains(&service_host), "the host of {url:?} is not on berth's network");
}

/// `docker inspect` of one container.
#[track_caller]
fn inspect(container: &str) -> serde_json::Value {
    let all: serde_json::Value = serde_json::from_str(&docker(&["inspect", container])).unwrap();
    all[0].clone()
}

/// The service's container as the engine sees it: running under berth's labels on berth's
/// network, restarted by the engine's `unless-stopped`, no port published on the host, its
/// data in `volume`.
#[track_caller]
fn assert_service_container(d: &Daemon, kind: &str, name: &str, container: &str, volume: &str) {
    let c = inspect(container);
    let what = format!("the container of {kind} {name} ({container})");
    assert_eq!(c["Name"], format!("/{container}"), "{what}");
    assert_eq!(c["State"]["Running"], true, "{what} does not run: {}", c["State"]);
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["berth.service"], format!("{kind}/{name}"), "{what}: labels {labels}");
    assert_eq!(labels["berth.root"], d.root().display().to_string(), "{what}: labels {labels}");
    assert_eq!(c["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped", "{what}");
    assert!(c["NetworkSettings"]["Networks"].get("berth").is_some(), "{what} is not on berth's network: {}", c["NetworkSettings"]["Networks"]);
    let published = |v: &serde_json::Value| v.as_object().is_some_and(|ports| ports.values().any(|b| b.as_array().is_some_and(|b| !b.is_empty())));
    assert!(!published(&c["HostConfig"]["PortBindings"]) && !published(&c["NetworkSettings"]["Ports"]), "{what} publishes a port on the host: {}", c["NetworkSettings"]["Ports"]);
    assert_ne!(c["HostConfig"]["PublishAllPorts"], true, "{what}");
    let mounts = c["Mounts"].as_array().cloned().unwrap_or_default();
    assert!(mounts.iter().any(|m| m["Type"] == "volume" && m["Name"] == volume), "{what} does not keep its data in {volume}: {mounts:?}");
}

/// Checks what `KIND:info`, `KIND:list` and `KIND:exists` say of a running service with
/// the container and volume berth names, and returns (container, volume).
#[track_caller]
fn assert_running_service(d: &Daemon, kind: &str, name: &str) -> (String, String) {
    let report = info(d, kind, name);
    assert_eq!(text(&report["status"]), "running", "{report}");
    let prefix = format!("berth-{kind}-{name}-");
    let (container, volume) = (text(&report["container"]), text(&report["volume"]));
    assert!(container.starts_with(&prefix) && container.len() > prefix.len(), "container {container:?} is not {prefix}<hash>");
    assert!(volume.starts_with(&prefix) && volume.len() > prefix.len(), "volume {volume:?} is not {prefix}<hash>");
    assert_service_container(d, kind, name, &container, &volume);
    let list = d.ssh(&format!("{kind}:list")).ok().stdout.clone();
    assert!(list.lines().any(|l| l.split_whitespace().any(|w| w == name) && l.contains("running")), "{kind}:list does not show {name} running:\n{list}");
    d.ssh(&format!("{kind}:exists {name}")).ok();
    (container, volume)
}

/// After `KIND:destroy`: no container, no volume, not listed, `exists` says no.
#[track_caller]
fn assert_service_gone(d: &Daemon, kind: &str, name: &str, volume: &str) {
    let label = format!("berth.service={kind}/{name}");
    assert_eq!(d.container_ids(true, &[&label]), Vec::<String>::new(), "a container of {kind} {name} is left after destroy");
    assert!(!volume_exists(volume), "the volume {volume} is left after destroy");
    let list = d.ssh(&format!("{kind}:list")).ok().stdout.clone();
    assert!(!list.lines().any(|l| l.split_whitespace().any(|w| w == name)), "{kind}:list still shows {name}:\n{list}");
    let out = d.ssh(&format!("{kind}:exists {name}"));
    assert!(out.code != 0 && out.code != 255, "{kind}:exists {name} after destroy: {out:#?}");
}

/// The app's env (`config:show APP --format json`).
#[track_caller]
fn config(d: &Daemon, app: &str) -> BTreeMap<String, String> {
    let out = d.ssh(&format!("config:show {app} --format json"));
    out.ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("config:show is not JSON ({e}): {out:#?}"))
}

/// The app's active release (`vN`), as `ps:report` says.
#[track_caller]
fn active_release(d: &Daemon, app: &str) -> String {
    let out = d.ssh(&format!("ps:report {app} --format json"));
    out.ok();
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("ps:report is not JSON ({e}): {out:#?}"));
    text(&report["release"])
}

// ---------------------------------------------------------------------------------------
// Polling, a prober, commands with a deadline and binary output.
// ---------------------------------------------------------------------------------------

/// Waits until GET `path` of the app answers 200 with `body`.
#[track_caller]
fn wait_for(d: &Daemon, app: &str, path: &str, body: &str, timeout: Duration, after: &str) {
    poll(timeout, &format!("GET {path} of {app} answers {body:?} after {after}"), || match fetch(d, app, path) {
        (200, b) if b == body => Ok(()),
        other => Err(format!("{other:?}")),
    });
}

/// Sets the flag when dropped: the prober stops even when the work under it fails.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Runs `work` while a client fetches `path` of the app from nginx on `http_port` every
/// 20 ms (the port, not the daemon: `work` may restart it); returns what `work` returned,
/// how many answers were (200, `expect`) and every other one.
fn probing<R>(http_port: u16, app: &str, path: &str, expect: &str, work: impl FnOnce() -> R) -> (R, usize, Vec<String>) {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let prober = s.spawn(|| {
            let (mut served, mut errors) = (0, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match http_get(http_port, &host(app), path) {
                    (200, body) if body == expect => served += 1,
                    (status, body) => errors.push(format!("{status} {body:.100}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (served, errors)
        });
        let result = {
            let _stop = StopOnDrop(&stop);
            work()
        };
        let (served, errors) = prober.join().unwrap();
        (result, served, errors)
    })
}

/// Watches the service's container for `window` (the daemon restores in the background
/// after it starts, and a correct one changes nothing): it must run all along, as the
/// container `id` when given. Returns its id.
#[track_caller]
fn watch_service(container: &str, id: Option<&str>, window: Duration, after: &str) -> String {
    let deadline = Instant::now() + window;
    let mut seen = id.map(String::from);
    loop {
        let out = Command::new("docker").args(["inspect", "-f", "{{.Id}} {{.State.Running}}", container]).output().unwrap();
        let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (now, running) = state.split_once(' ').unwrap_or_else(|| panic!("the service container {container} is gone {after}: {}", String::from_utf8_lossy(&out.stderr).trim()));
        assert_eq!(running, "true", "the service container {container} stopped {after}");
        let first = seen.get_or_insert_with(|| now.to_string());
        assert_eq!(now, first, "the service container {container} was replaced {after}");
        if Instant::now() >= deadline {
            return now.to_string();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What a command printed (stdout as bytes: a dump is binary) and how it exited.
struct RawOut {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl RawOut {
    fn text(&self) -> Out {
        Out { code: self.code, stdout: String::from_utf8_lossy(&self.stdout).into_owned(), stderr: self.stderr.clone() }
    }
}

/// Runs `cmd` with `stdin` as its input, then closes it (or, with `hold_stdin`, keeps it
/// open as a person at a terminal who typed a line and waits); kills the command and fails
/// the test if it still runs after `timeout`.
#[track_caller]
fn run_within(mut cmd: Command, stdin: &[u8], hold_stdin: bool, timeout: Duration) -> RawOut {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
        let _ = pipe.flush();
        hold_stdin.then_some(pipe)
    });
    let reader = |mut from: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = from.read_to_end(&mut all);
            all
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (stdout.join().unwrap(), stderr.join().unwrap());
            panic!("{cmd:?} still ran after {timeout:?}; it printed:\n{}{}", String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(writer.join().unwrap());
    RawOut { code: status.code().unwrap_or(-1), stdout: stdout.join().unwrap(), stderr: String::from_utf8_lossy(&stderr.join().unwrap()).into_owned() }
}

/// `ssh … COMMAND` as the admin with `extra` ssh options, stdin closed after `stdin`.
#[track_caller]
fn ssh_within(d: &Daemon, extra: &[&str], command: &str, stdin: &[u8], timeout: Duration) -> RawOut {
    run_within(d.ssh_command(&d.admin, extra, command), stdin, false, timeout)
}

/// `berth --root ROOT ARGS…` (the local CLI), stdin closed after `stdin`.
#[track_caller]
fn local_within(d: &Daemon, args: &[&str], stdin: &[u8], timeout: Duration) -> RawOut {
    let mut cmd = Command::new(BERTH);
    cmd.arg("--root").arg(d.root()).args(args);
    run_within(cmd, stdin, false, timeout)
}

/// `psql` inside the service's container, connecting with `url` (the credentials a link
/// hands an app), running the SQL on stdin; its unaligned, tuples-only output.
#[track_caller]
fn psql(container: &str, url: &str, sql: &str) -> String {
    let mut cmd = Command::new("docker");
    cmd.args(["exec", "-i", "-e", "PGCLIENTENCODING=UTF8", container, "psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]);
    let out = run_within(cmd, sql.as_bytes(), false, Duration::from_secs(60)).text();
    assert_eq!(out.code, 0, "psql in {container}: {sql}\n{out:#?}");
    out.stdout
}

/// A refusal as berth's invariants say (one ` !     ` line, a non-zero exit other than
/// ssh's 255, nothing on stdout) that names each of `needles`.
#[track_caller]
fn assert_refused(command: &str, out: &Out, needles: &[&str]) {
    assert!(out.code != 0 && out.code != 255, "{command:?} was not refused: {out:#?}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{command:?}: expected one error line: {out:#?}");
    assert!(lines[0].starts_with(" !     "), "{command:?}: error not in dokku form: {out:#?}");
    for needle in needles {
        assert!(lines[0].contains(needle), "{command:?}: expected {needle:?} in the error line: {out:#?}");
    }
    assert_eq!(out.stdout, "", "{command:?}: a refusal printed on stdout: {out:#?}");
}

// ---------------------------------------------------------------------------------------
// 1. PostgreSQL linked to a real app.
// ---------------------------------------------------------------------------------------

#[test]
fn a_linked_postgres_keeps_the_apps_rows_through_a_restart_a_daemon_crash_and_a_lost_container() {
    let volumes = Volumes::default();
    let mut d = Daemon::start();
    let app = "pg-app";
    python_app(&d, app, PG_APP);
    assert_eq!(fetch(&d, app, "/"), (200, "up".into()));

    create(&d, &volumes, "postgres", "pg-main");
    let (container, volume) = assert_running_service(&d, "postgres", "pg-main");
    let report = info(&d, "postgres", "pg-main");
    assert_eq!(text(&report["version"]), "15", "{report}");
    assert_eq!(linked_apps(&report["links"]), Vec::<String>::new(), "{report}");
    assert!(text(&report["dsn"]).contains(":********@"), "the password is not hidden: {report}");

    // Linking is a new release that no request notices.
    let before = active_release(&d, app);
    let (out, served, errors) = probing(d.http_port, app, "/", "up", || d.ssh(&format!("postgres:link pg-main {app}")));
    let out = out.ok();
    assert!(errors.is_empty(), "{} of {} requests failed while postgres:link deployed: {errors:?}", errors.len(), errors.len() + served);
    assert_ne!(active_release(&d, app), before, "postgres:link made no release");
    let url = config(&d, app).get("DATABASE_URL").cloned().unwrap_or_else(|| panic!("no DATABASE_URL after postgres:link: {:?}", config(&d, app)));
    assert_service_url(&url, "postgres://postgres:", ":5432/pg_main");
    // The link says what it set, with the password masked as postgres:info masks it.
    let printed = format!("{}{}", out.stdout, out.stderr);
    assert!(!printed.contains(password(&url)), "postgres:link printed the password:\n{printed}");
    assert!(printed.contains(&format!("DATABASE_URL: {}", url.replace(password(&url), "********"))), "{printed}");
    let report = info(&d, "postgres", "pg-main");
    assert_eq!(linked_apps(&report["links"]), vec![app.to_string()], "{report}");
    assert_eq!(text(&report["dsn"]), url.replace(password(&url), "********"), "{report}");
    assert_eq!(text(&info_with(&d, "postgres", "pg-main", "--show-password")["dsn"]), url);
    for shown in [d.ssh("postgres:info pg-main").ok().stdout.clone(), d.ssh("postgres:info pg-main --format json").ok().stdout.clone()] {
        assert!(!shown.contains(password(&url)), "postgres:info shows the password without --show-password:\n{shown}");
    }

    // The app writes and reads through DATABASE_URL at once: create returned a database
    // that accepts connections, link a release that has the variable.
    assert_eq!(fetch(&d, app, "/write?v=first"), (200, "wrote first".into()));
    assert_eq!(fetch(&d, app, "/read"), (200, "first".into()));

    // The engine restarts the container: the row is on the volume.
    docker(&["restart", &container]);
    wait_for(&d, app, "/read", "first", Duration::from_secs(60), "docker restart of the service");
    assert_eq!(fetch(&d, app, "/write?v=second"), (200, "wrote second".into()));

    // The daemon dies: the app and its database serve on without it, and a new daemon
    // leaves both alone (no request fails, the service keeps its container).
    let id = text(&inspect(&container)["Id"]);
    let ((), served, errors) = probing(d.http_port, app, "/read", "first,second", || {
        d.kill();
        std::thread::sleep(Duration::from_secs(1));
        d.boot();
        watch_service(&container, Some(&id), Duration::from_secs(8), "after a daemon SIGKILL and start");
    });
    assert!(errors.is_empty(), "{} of {} reads failed across a daemon SIGKILL and start: {errors:?}", errors.len(), errors.len() + served);
    assert_running_service(&d, "postgres", "pg-main");
    assert_eq!(fetch(&d, app, "/write?v=third"), (200, "wrote third".into()));

    // The container is removed behind berth's back: the next daemon start creates it again
    // on the same volume, and the link's URL still reaches it.
    docker(&["rm", "-f", &container]);
    d.stop();
    d.boot();
    let label = "berth.service=postgres/pg-main";
    poll(Duration::from_secs(90), "the removed service container is created again at the daemon's start", || {
        let running = d.container_ids(false, &[label]);
        if running.len() == 1 { Ok(()) } else { Err(format!("running containers labelled {label}: {running:?}")) }
    });
    watch_service(&container, None, Duration::from_secs(8), "once the daemon's start created it again");
    assert_eq!(assert_running_service(&d, "postgres", "pg-main"), (container.clone(), volume.clone()), "the restored service has another name or volume");
    wait_for(&d, app, "/read", "first,second,third", Duration::from_secs(60), "the service container was removed and the daemon restarted");
    assert_eq!(config(&d, app).get("DATABASE_URL"), Some(&url), "the link changed");
    assert_eq!(fetch(&d, app, "/write?v=fourth"), (200, "wrote fourth".into()));
    assert_eq!(fetch(&d, app, "/read"), (200, "first,second,third,fourth".into()));
}

// ---------------------------------------------------------------------------------------
// 2. export → destroy → create → import.
// ---------------------------------------------------------------------------------------

#[test]
fn a_postgres_export_imported_into_a_new_service_brings_the_rows_back() {
    let volumes = Volumes::default();
    let d = Daemon::start();
    let app = "keeper";
    let repo = AppRepo::new(&d, app);
    repo.write("Dockerfile", &web_dockerfile("keeper", 0)).commit("v1");
    repo.push(&d, "main").ok();

    create(&d, &volumes, "postgres", "pg-kept");
    let (container, volume) = assert_running_service(&d, "postgres", "pg-kept");
    d.ssh(&format!("postgres:link pg-kept {app}")).ok();
    let url = config(&d, app)["DATABASE_URL"].clone();
    assert_service_url(&url, "postgres://postgres:", ":5432/pg_kept");

    // Rows with text beyond ASCII and a bytea of every byte value: a dump mangled on its way
    // (decoded as text, cut short) does not restore them.
    psql(
        &container,
        &url,
        "CREATE TABLE items (v text NOT NULL);\n\
         INSERT INTO items VALUES ('kept row'), ('café ✓ 東京');\n\
         CREATE TABLE blobs (b bytea NOT NULL);\n\
         INSERT INTO blobs SELECT decode(string_agg(lpad(to_hex(i), 2, '0'), '' ORDER BY i), 'hex') FROM generate_series(0, 255) AS i;\n\
         INSERT INTO blobs SELECT decode(string_agg(md5(random()::text), ''), 'hex') FROM generate_series(1, 20000);\n",
    );
    let check = "SELECT v FROM items ORDER BY v;\nSELECT md5(b) || ' ' || length(b) FROM blobs ORDER BY length(b);\n";
    let rows = psql(&container, &url, check);
    assert!(rows.contains("kept row") && rows.contains("café ✓ 東京") && rows.contains(" 256\n") && rows.contains(" 320000\n"), "{rows}");

    // postgres:connect opens psql on the service's database, on the client's terminal.
    let out = ssh_within(&d, &["-tt"], "postgres:connect pg-kept", b"SELECT count(*) * 1000 + 7 AS answer FROM items;\n\\q\n", Duration::from_secs(60)).text();
    assert_eq!(out.code, 0, "postgres:connect: {out:#?}");
    assert!(out.stdout.contains("2007"), "psql through postgres:connect did not answer from the service's database: {out:#?}");

    // The dump over SSH: pg_dump's custom format, binary, on stdout alone.
    let dump = ssh_within(&d, &[], "postgres:export pg-kept", b"", Duration::from_secs(120));
    assert_eq!(dump.code, 0, "postgres:export: {}", dump.stderr);
    assert!(dump.stdout.starts_with(b"PGDMP"), "postgres:export is not a pg_dump -Fc archive: {:?}…", String::from_utf8_lossy(&dump.stdout[..dump.stdout.len().min(80)]));
    // 320 kB of random bytes do not compress.
    assert!(dump.stdout.len() > 320_000, "a {}-byte dump", dump.stdout.len());

    // Linked: destroy is refused and names the app; nothing is removed.
    let out = d.ssh("postgres:destroy pg-kept --force");
    assert_refused("postgres:destroy pg-kept --force", &out, &[app]);
    assert_running_service(&d, "postgres", "pg-kept");

    // Unlinked (a new release without the variable), then destroyed with everything of it.
    let before = active_release(&d, app);
    d.ssh(&format!("postgres:unlink pg-kept {app}")).ok();
    assert!(!config(&d, app).contains_key("DATABASE_URL"), "DATABASE_URL left after postgres:unlink");
    assert_ne!(active_release(&d, app), before, "postgres:unlink made no release");
    assert_eq!(linked_apps(&info(&d, "postgres", "pg-kept")["links"]), Vec::<String>::new());
    d.ssh("postgres:destroy pg-kept --force").ok();
    assert_service_gone(&d, "postgres", "pg-kept", &volume);

    // A new service of the same name starts empty.
    create(&d, &volumes, "postgres", "pg-kept");
    let (container, _) = assert_running_service(&d, "postgres", "pg-kept");
    let linked = d.ssh(&format!("postgres:link pg-kept {app} --alias ARCHIVE --show-password"));
    linked.ok();
    let env = config(&d, app);
    assert!(!env.contains_key("DATABASE_URL"), "--alias ARCHIVE set DATABASE_URL too: {env:?}");
    let url = env.get("ARCHIVE_URL").cloned().unwrap_or_else(|| panic!("no ARCHIVE_URL after --alias ARCHIVE: {env:?}"));
    assert!(linked.stdout.contains(&format!("ARCHIVE_URL: {url}")), "--show-password shows the URL whole: {}", linked.stdout);
    assert_service_url(&url, "postgres://postgres:", ":5432/pg_kept");
    assert_eq!(psql(&container, &url, "SELECT to_regclass('items') IS NULL;\n").trim(), "t", "a new service still has the old rows");

    // The import through the local CLI (stdin over the local socket) brings them back.
    let out = local_within(&d, &["postgres:import", "pg-kept"], &dump.stdout, Duration::from_secs(120)).text();
    assert_eq!(out.code, 0, "postgres:import: {out:#?}");
    assert_eq!(psql(&container, &url, check), rows, "the rows after export, destroy, create and import");

    // Something that is not a dump is refused, and the rows stay.
    let out = ssh_within(&d, &[], "postgres:import pg-kept", b"this is not a pg_dump archive\n", Duration::from_secs(60)).text();
    assert!(out.code != 0 && out.code != 255, "importing garbage succeeded: {out:#?}");
    assert_eq!(psql(&container, &url, check), rows, "a refused import changed the rows");
    d.ssh(&format!("postgres:unlink pg-kept {app}")).ok();
}

// ---------------------------------------------------------------------------------------
// 3. Redis linked to a real app.
// ---------------------------------------------------------------------------------------

/// An image put on the engine under a service's official name (a `docker load`, a build
/// tagged so: anything that can tag) is never what a service runs: berth runs the official
/// image only as its registry gave it (by digest), else the one it built (by ID).
#[test]
fn a_service_never_runs_an_image_planted_under_its_official_name() {
    struct Untag(&'static str);
    impl Drop for Untag {
        fn drop(&mut self) {
            let _ = Command::new("docker").args(["rmi", self.0]).stdout(Stdio::null()).stderr(Stdio::null()).status();
        }
    }
    base_image();
    let volumes = Volumes::default();
    let d = Daemon::start();
    assert!(!image_exists("postgres:15"), "no registry is reachable here: the engine has no official postgres:15");
    let _untag = Untag("postgres:15");
    docker(&["tag", "berth-test/busybox", "postgres:15"]);
    let planted = docker(&["image", "inspect", "-f", "{{.Id}}", "postgres:15"]);

    create(&d, &volumes, "postgres", "pg-planted");
    let report = info(&d, "postgres", "pg-planted");
    assert_eq!(text(&report["image"]), "berth/postgres:15", "{report}");
    assert_ne!(text(&report["image-id"]), planted.trim(), "{report}");
    d.ssh("postgres:destroy pg-planted --force").ok();
}

#[test]
fn a_linked_redis_counts_the_apps_hits_across_a_restart() {
    let volumes = Volumes::default();
    let d = Daemon::start();
    let app = "counter";
    python_app(&d, app, REDIS_APP);
    assert_eq!(fetch(&d, app, "/"), (200, "up".into()));

    create(&d, &volumes, "redis", "rd-counter");
    let (container, volume) = assert_running_service(&d, "redis", "rd-counter");
    let report = info(&d, "redis", "rd-counter");
    assert!(text(&report["version"]).starts_with('7'), "{report}");
    assert!(text(&report["dsn"]).contains(":********@"), "the password is not hidden: {report}");

    let before = active_release(&d, app);
    let (out, served, errors) = probing(d.http_port, app, "/", "up", || d.ssh(&format!("redis:link rd-counter {app}")));
    out.ok();
    assert!(errors.is_empty(), "{} of {} requests failed while redis:link deployed: {errors:?}", errors.len(), errors.len() + served);
    assert_ne!(active_release(&d, app), before, "redis:link made no release");
    let url = config(&d, app).get("REDIS_URL").cloned().unwrap_or_else(|| panic!("no REDIS_URL after redis:link: {:?}", config(&d, app)));
    assert_service_url(&url, "redis://:", ":6379");
    assert_eq!(linked_apps(&info(&d, "redis", "rd-counter")["links"]), vec![app.to_string()]);
    assert_eq!(text(&info_with(&d, "redis", "rd-counter", "--show-password")["dsn"]), url);

    for n in 1..=3 {
        assert_eq!(fetch(&d, app, "/hit"), (200, format!("hits {n}")));
    }

    // The engine restarts the container: the count is on the volume.
    docker(&["restart", &container]);
    let first = poll(Duration::from_secs(60), "the app counts again after docker restart of redis", || match fetch(&d, app, "/hit") {
        (200, body) => Ok(body),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(first, "hits 4", "the count did not survive the restart");

    // Redis has no export or import: one clear line each, nothing read or changed.
    for command in ["redis:export rd-counter", "redis:import rd-counter"] {
        let out = ssh_within(&d, &[], command, b"SET hits 0\n", Duration::from_secs(30)).text();
        assert_refused(command, &out, &[]);
        assert!(out.stderr.to_lowercase().contains("redis"), "{command:?}: the refusal does not say it is about redis: {out:#?}");
    }
    assert_eq!(fetch(&d, app, "/hit"), (200, "hits 5".into()));

    // An app it is not linked to reaches it neither by name nor by any address it has.
    crate::harness::probe_app(&d, "stranger", "stranger");
    let addresses = docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", &container]);
    let name = docker(&["inspect", "-f", "{{.Name}}", &container]);
    for target in addresses.split_whitespace().chain([name.trim().trim_start_matches('/')]) {
        let said = d.ssh(&format!("run stranger /probe {target} 6379")).ok().stdout.clone();
        assert_eq!(said.trim(), "unreachable", "an app not linked to redis reached it at {target}");
    }

    d.ssh(&format!("redis:unlink rd-counter {app}")).ok();
    assert!(!config(&d, app).contains_key("REDIS_URL"), "REDIS_URL left after redis:unlink");
    let networks = docker(&["inspect", "-f", "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}", &container]);
    assert!(!networks.contains(&format!("berth-app-{app}-")), "redis is still on {app}'s network after redis:unlink: {networks}");
    d.ssh("redis:destroy rd-counter --force").ok();
    assert_service_gone(&d, "redis", "rd-counter", &volume);
}

// ---------------------------------------------------------------------------------------
// 4. Refusals.
// ---------------------------------------------------------------------------------------

/// What a refused command must leave as it was: the state files (every `.toml`, and every
/// file under `services/`), this root's containers and their states, and both lists.
fn snapshot(d: &Daemon) -> (BTreeMap<String, Vec<u8>>, Vec<String>, String, String) {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if name.starts_with("nginx") || name.ends_with(".git") || name == "tmp" || name == "buildpacks" {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, files);
            } else if name.ends_with(".toml") || name.starts_with("services/") {
                files.insert(name, std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(&d.root(), &d.root(), &mut files);
    let root = format!("label=berth.root={}", d.root().display());
    let mut containers: Vec<String> = docker(&["ps", "-a", "--filter", &root, "--format", "{{.ID}} {{.Names}} {{.State}}"]).lines().map(String::from).collect();
    containers.sort();
    (files, containers, d.ssh("postgres:list").ok().stdout.clone(), d.ssh("redis:list").ok().stdout.clone())
}

#[test]
fn service_refusals_are_one_line_and_change_nothing() {
    let volumes = Volumes::default();
    let d = Daemon::start();
    for app in ["linked-a", "linked-b", "unlinked-c"] {
        d.ssh(&format!("apps:create {app}")).ok();
    }
    create(&d, &volumes, "postgres", "pg-guarded");
    let (_, volume) = assert_running_service(&d, "postgres", "pg-guarded");
    for app in ["linked-a", "linked-b"] {
        d.ssh(&format!("postgres:link pg-guarded {app}")).ok();
    }
    let url = config(&d, "linked-a")["DATABASE_URL"].clone();

    let cases: &[(&str, &[&str])] = &[
        // Names: lowercase letters, digits and dashes, starting with a letter or digit.
        ("postgres:create Upper", &["Upper"]),
        ("postgres:create a_b", &["a_b"]),
        ("postgres:create x.y", &["x.y"]),
        ("postgres:create 'a b'", &["a b"]),
        ("postgres:create ../x", &["../x"]),
        ("postgres:create 'a;rm -rf /'", &["a;rm"]),
        ("postgres:create é", &["é"]),
        ("postgres:create ''", &[]),
        ("postgres:create -- -lead", &["-lead"]),
        ("redis:create Upper", &["Upper"]),
        ("redis:create a_b", &["a_b"]),
        ("postgres:link 'Bad_Name' linked-a", &["Bad_Name"]),
        // A name taken, a version berth does not build.
        ("postgres:create pg-guarded", &["pg-guarded"]),
        // Linked: destroy names every app it is linked to.
        ("postgres:destroy pg-guarded --force", &["linked-a", "linked-b"]),
        ("postgres:destroy pg-guarded", &[]),
        // Apps that do not exist, aliases that are no env key.
        ("postgres:link pg-guarded nope-app", &["nope-app"]),
        ("postgres:link pg-guarded 'Bad App'", &["Bad App"]),
        ("postgres:link pg-guarded unlinked-c --alias 'BAD ALIAS'", &["BAD ALIAS"]),
        ("postgres:link pg-guarded unlinked-c --alias 1X", &["1X"]),
        // Services that do not exist (a postgres service is no redis service).
        ("postgres:link nope-db linked-a", &["nope-db"]),
        ("postgres:unlink nope-db linked-a", &["nope-db"]),
        ("postgres:info nope-db", &["nope-db"]),
        ("postgres:export nope-db", &["nope-db"]),
        ("postgres:import nope-db", &["nope-db"]),
        ("postgres:connect nope-db", &["nope-db"]),
        ("postgres:destroy nope-db --force", &["nope-db"]),
        ("redis:info nope-db", &["nope-db"]),
        ("redis:link nope-db linked-a", &["nope-db"]),
        ("redis:info pg-guarded", &["pg-guarded"]),
        ("redis:destroy pg-guarded --force", &["pg-guarded"]),
    ];
    let before = snapshot(&d);
    for (command, needles) in cases {
        let out = ssh_within(&d, &[], command, b"", Duration::from_secs(60)).text();
        assert_refused(command, &out, needles);
        assert!(out.stderr.len() < 400, "{command:?}: a {}-byte error line", out.stderr.len());
        assert_eq!(snapshot(&d), before, "{command:?} changed something");
    }
    // A version berth cannot build fails once no registry gives its official image (the
    // create may say what it tried first), and leaves nothing.
    let out = ssh_within(&d, &[], "postgres:create pg-fresh --image-version 99", b"", Duration::from_secs(120)).text();
    assert!(out.code != 0 && out.code != 255, "postgres:create --image-version 99: {out:#?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with(" !     ") && last.contains("99") && out.stderr.lines().count() == 1, "postgres:create --image-version 99: {out:#?}");
    assert_eq!(snapshot(&d), before, "postgres:create --image-version 99 changed something");
    let out = d.ssh("postgres:exists nope-db");
    assert!(out.code != 0 && out.code != 255 && out.stdout.is_empty(), "postgres:exists of a missing service: {out:#?}");
    for kind in ["postgres", "redis"] {
        for name in ["pg-fresh", "a-b", "upper", "x-y"] {
            let label = format!("berth.service={kind}/{name}");
            assert_eq!(d.container_ids(true, &[&label]), Vec::<String>::new(), "a refused create left a container {label}");
            let prefix = format!("berth-{kind}-{name}-");
            let left: Vec<String> = docker(&["volume", "ls", "-q", "--filter", &format!("name={prefix}")]).lines().filter(|v| v.starts_with(&prefix)).map(String::from).collect();
            assert!(left.is_empty(), "a refused create left volumes {left:?}");
        }
    }
    assert!(volume_exists(&volume), "the volume of pg-guarded is gone");
    assert_eq!(config(&d, "linked-a").get("DATABASE_URL"), Some(&url));

    // Without --force, destroy asks for the name on a terminal: refused without a terminal,
    // refused for another name typed there, done for its own name (typed, then Enter: a
    // terminal in raw mode sends a carriage return, and the person waits).
    create(&d, &volumes, "postgres", "pg-spare");
    let (_, spare_volume) = assert_running_service(&d, "postgres", "pg-spare");
    let before = snapshot(&d);
    let out = ssh_within(&d, &[], "postgres:destroy pg-spare", b"pg-spare\n", Duration::from_secs(60)).text();
    assert_refused("postgres:destroy pg-spare (no terminal)", &out, &[]);
    assert_eq!(snapshot(&d), before, "destroy without a terminal changed something");
    let out = run_within(d.ssh_command(&d.admin, &["-tt"], "postgres:destroy pg-spare"), b"pg-other\r", true, Duration::from_secs(60)).text();
    assert!(out.code != 0 && out.code != 255, "destroy went ahead with another name typed: {out:#?}");
    assert_eq!(snapshot(&d), before, "destroy with another name typed changed something");
    let out = run_within(d.ssh_command(&d.admin, &["-tt"], "postgres:destroy pg-spare"), b"pg-spare\r", true, Duration::from_secs(60)).text();
    assert_eq!(out.code, 0, "destroy with its name typed on the terminal: {out:#?}");
    assert_service_gone(&d, "postgres", "pg-spare", &spare_volume);
    assert_running_service(&d, "postgres", "pg-guarded");
}

// ---------------------------------------------------------------------------------------
// 4. Backups off the machine: an S3-compatible server (moto's, from PyPI).
// ---------------------------------------------------------------------------------------

/// moto's S3 server (scripts/test.sh installs it in target/moto), stopped when dropped.
struct S3(std::process::Child, u16);

impl S3 {
    fn start() -> S3 {
        let bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto/bin");
        assert!(bin.join("moto_server").exists(), "{} is missing: scripts/test.sh installs moto there", bin.display());
        let port = free_port();
        let child = Command::new(bin.join("moto_server")).args(["-H", "127.0.0.1", "-p", &port.to_string()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        poll(Duration::from_secs(30), "moto's S3 server", || std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ()).map_err(|e| e.to_string()));
        S3(child, port)
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.1)
    }

    /// boto3 (moto's own dependency) on this server: `code` with `s3` a client.
    fn boto(&self, code: &str) -> String {
        let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto/bin/python");
        let script = format!("import boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='AKIDTEST', aws_secret_access_key='test-secret', region_name='us-east-1')\n{code}\n", self.endpoint());
        let out = Command::new(python).args(["-c", &script]).output().unwrap();
        assert!(out.status.success(), "boto3: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn postgres_backups_are_uploaded_to_s3_listed_and_restored_into_a_new_database() {
    let volumes = Volumes::default();
    let mut s3 = S3::start();
    s3.boto("s3.create_bucket(Bucket='berth-backups')");
    let d = Daemon::start();
    create(&d, &volumes, "postgres", "pg-off");
    let (container, _) = assert_running_service(&d, "postgres", "pg-off");
    let url = text(&info_with(&d, "postgres", "pg-off", "--show-password")["dsn"]);
    psql(&container, &url, "CREATE TABLE items (v text NOT NULL);\nINSERT INTO items SELECT 'row ' || i FROM generate_series(1, 500) AS i;\nINSERT INTO items VALUES ('café ✓ 東京');\n");
    let check = "SELECT count(*), md5(string_agg(v, ',' ORDER BY v)) FROM items;\n";
    let rows = psql(&container, &url, check);

    // Bad targets and a missing secret are refused; nothing is saved.
    let set = format!("postgres:backup-set-target pg-off s3://berth-backups/db/prod --endpoint {} --access-key-id AKIDTEST", s3.endpoint());
    d.ssh("postgres:backup-set-target pg-off http://berth-backups --access-key-id AKIDTEST").refused("Invalid backup target");
    d.ssh("postgres:backup-set-target pg-off s3://berth-backups --endpoint ftp://x --access-key-id AKIDTEST").refused("Invalid endpoint");
    d.ssh(&set).refused("The input is not a secret access key");
    assert!(!std::fs::read_to_string(d.root().join("services/postgres/pg-off.toml")).unwrap_or_default().contains("berth-backups"));
    d.ssh_as(&d.admin, &set, b"test-secret\n").ok();
    let stored = d.root().join("services/postgres/pg-off.toml");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&stored).unwrap().permissions().mode() & 0o777, 0o600, "the credentials are stored 0600");
    assert!(!d.ssh("postgres:info pg-off").stdout.contains("test-secret"), "the secret key is never shown");

    // A backup is uploaded as well: the same bytes there as here.
    d.ssh("postgres:backup pg-off").ok();
    let listed: serde_json::Value = serde_json::from_str(&d.ssh("postgres:backups pg-off --format json").stdout).unwrap();
    let rows_listed = listed.as_array().unwrap();
    assert_eq!(rows_listed.len(), 2, "one here, one at the target: {listed}");
    let name = rows_listed[0]["name"].as_str().unwrap().to_string();
    assert!(rows_listed.iter().all(|r| r["name"] == name.as_str()) && rows_listed[1]["where"] == "s3://berth-backups/db/prod", "{listed}");
    let local = d.root().join("backups/postgres/pg-off").join(&name);
    let size = std::fs::metadata(&local).unwrap().len();
    let remote = s3.boto(&format!("print(s3.head_object(Bucket='berth-backups', Key='db/prod/{name}')['ContentLength'])"));
    assert_eq!(remote.trim().parse::<u64>().unwrap(), size);

    // Restored from the target (the copy here is gone) into a new database: the same rows.
    std::fs::remove_file(&local).unwrap();
    d.ssh("postgres:restore pg-off nope.dump --to pg-back").refused("Invalid backup");
    d.ssh(&format!("postgres:restore pg-off {name} --to pg-back")).ok();
    volumes.keep(text(&info(&d, "postgres", "pg-back")["volume"]));
    let (restored, _) = assert_running_service(&d, "postgres", "pg-back");
    let back_url = text(&info_with(&d, "postgres", "pg-back", "--show-password")["dsn"]);
    assert_eq!(psql(&restored, &back_url, check), rows, "the rows restored from S3");
    assert_eq!(psql(&container, &url, check), rows, "the service itself is left alone");

    // With a passphrase, what is uploaded is encrypted (age) and restores with it.
    d.ssh("postgres:backup-set-encryption pg-off").refused("The input is not a passphrase");
    d.ssh_as(&d.admin, "postgres:backup-set-encryption pg-off", b"correct horse battery\n").ok();
    std::thread::sleep(Duration::from_secs(1));
    d.ssh("postgres:backup pg-off").ok();
    let listed: serde_json::Value = serde_json::from_str(&d.ssh("postgres:backups pg-off --format json").stdout).unwrap();
    let sealed = listed.as_array().unwrap().iter().filter_map(|r| r["name"].as_str()).find(|n| n.ends_with(".dump.age")).unwrap_or_else(|| panic!("no encrypted upload: {listed}")).to_string();
    let head = s3.boto(&format!("print(s3.get_object(Bucket='berth-backups', Key='db/prod/{sealed}')['Body'].read()[:40])"));
    assert!(head.contains("age-encryption.org/v1") && head.contains("scrypt"), "{head}");
    d.ssh(&format!("postgres:restore pg-off {sealed} --to pg-sealed")).ok();
    volumes.keep(text(&info(&d, "postgres", "pg-sealed")["volume"]));
    let (opened, _) = assert_running_service(&d, "postgres", "pg-sealed");
    let sealed_url = text(&info_with(&d, "postgres", "pg-sealed", "--show-password")["dsn"]);
    assert_eq!(psql(&opened, &sealed_url, check), rows, "the rows restored from an encrypted upload");
    d.ssh("postgres:destroy pg-sealed --force").ok();

    // Encryption off: the passphrase stays for what was uploaded with it. A restore into
    // the service itself brings back rows deleted since.
    d.ssh("postgres:backup-unset-encryption pg-off").ok();
    psql(&container, &url, "DELETE FROM items WHERE v LIKE 'row 1%';\n");
    assert_ne!(psql(&container, &url, check), rows);
    d.ssh(&format!("postgres:restore pg-off {sealed}")).ok();
    assert_eq!(psql(&container, &url, check), rows, "the rows restored into the service itself");

    // The target down: the backup fails loudly, and its dump stays here.
    let _ = s3.0.kill();
    let _ = s3.0.wait();
    let before = std::fs::read_dir(d.root().join("backups/postgres/pg-off")).unwrap().count();
    let out = d.ssh("postgres:backup pg-off");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("the dump is kept at") && out.stderr.contains("upload"), "{out:#?}");
    assert_eq!(std::fs::read_dir(d.root().join("backups/postgres/pg-off")).unwrap().count(), before + 1);
    d.ssh("postgres:destroy pg-back --force").ok();
}
