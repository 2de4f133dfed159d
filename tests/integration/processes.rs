//! Process types, scaling, the release phase, one-off and interactive commands, mounts,
//! limits, and reconciling after a crash: through real git, ssh, Docker and nginx.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::io::{Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{AppRepo, Daemon, docker, get};

/// A busybox app with a web process (serving `text`) and a worker that ticks every 200 ms.
/// Procfile commands of Dockerfile apps are words, not shell: `sh -c` gives them one.
fn procfile_app(repo: &AppRepo, text: &str, extra_procfile: &str) {
    repo.write(
        "Dockerfile",
        &format!("FROM berth-test/busybox\nRUN mkdir /www && echo '{text}' > /www/index.html\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n"),
    )
    .write(
        "Procfile",
        &format!(
            "web: sh -c 'echo web says hello from $HOSTNAME; exec httpd -f -p $PORT -h /www'\nworker: sh -c 'while true; do echo worker tick; sleep 0.2; done'\n{extra_procfile}"
        ),
    )
    .commit(text);
}

fn push_ok(d: &Daemon, repo: &AppRepo) -> String {
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "push failed: {out:#?}");
    out.stderr
}

fn report(d: &Daemon, app: &str) -> serde_json::Value {
    serde_json::from_str(&d.ssh(&format!("ps:report {app} --format json")).ok().stdout).unwrap()
}

/// The process containers of the active release, as `ps:report` lists them (`web.1`, …).
fn running(d: &Daemon, app: &str) -> Vec<String> {
    let r = report(d, app);
    let release = r["release"].as_str().unwrap().to_string();
    let mut list: Vec<String> = r["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .filter(|c| c.ends_with(&format!("running ({release})")))
        .map(|c| c.split(':').next().unwrap().to_string())
        .collect();
    list.sort();
    list
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How many web containers nginx routes the app to (its line in the peers file,
/// `APP vN IP…`).
fn upstream_servers(d: &Daemon, app: &str) -> usize {
    let peers = std::fs::read_to_string(d.root().join("nginx/peers")).unwrap_or_default();
    peers.lines().find(|l| l.split_whitespace().next() == Some(app)).map_or(0, |l| l.split_whitespace().skip(2).count())
}

#[test]
fn scaling_up_and_down_under_load_drops_no_request_and_logs_show_every_process() {
    let d = Daemon::start();
    d.ssh("apps:create scaler").ok();
    d.ssh("domains:add scaler scaler.example.com").ok();
    let repo = AppRepo::new(&d, "scaler");
    procfile_app(&repo, "scaled v1", "");
    let log = push_ok(&d, &repo);
    assert!(log.contains("Starting web.1 … checks passed"), "{log}");
    // Only web runs until another type is scaled, as with dokku.
    assert_eq!(running(&d, "scaler"), vec!["web.1"]);
    assert_eq!(report(&d, "scaler")["processes"], serde_json::json!(["web", "worker"]));

    d.ssh("ps:scale scaler clock=1").refused("has no clock process type (it has: web, worker)");
    d.ssh("ps:scale scaler web=two").refused("whole number");
    d.ssh("ps:scale scaler release=1").refused("cannot be scaled");

    let stop = AtomicBool::new(false);
    let served = AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    match get(&d, "scaler.example.com") {
                        (200, body) if body == "scaled v1" => served.fetch_add(1, Ordering::Relaxed),
                        other => {
                            failed.lock().unwrap().push(other);
                            0
                        }
                    };
                }
            });
        }
        // A failed assertion must stop the load too, or the scope never ends.
        let _stop = StopOnDrop(&stop);
        let out = d.ssh("ps:scale scaler web=2 worker=1");
        out.ok();
        assert!(out.stdout.contains("Starting web.2 … checks passed") && out.stdout.contains("Starting worker.1 … running"), "{}", out.stdout);
        assert_eq!(running(&d, "scaler"), vec!["web.1", "web.2", "worker.1"]);
        assert_eq!(upstream_servers(&d, "scaler"), 2, "both web containers are behind the proxy");
        assert_eq!(d.ssh("ps:scale scaler").ok().stdout, "=====> scaler process scale\nweb=2\nworker=1\n");

        // Every process's output, prefixed by process; -p picks one type.
        std::thread::sleep(Duration::from_millis(800));
        let logs = d.ssh("logs scaler -n 200").ok().stdout.clone();
        for prefix in ["scaler[web.1]: web says hello", "scaler[web.2]: web says hello", "scaler[worker.1]: worker tick"] {
            assert!(logs.contains(prefix), "{prefix:?} missing from logs:\n{logs}");
        }
        let workers = d.ssh("logs scaler -n 3 -p worker").ok().stdout.clone();
        assert_eq!(workers.lines().count(), 3, "{workers}");
        assert!(workers.lines().all(|l| l.contains("scaler[worker.1]: worker tick")), "{workers}");

        d.ssh("ps:scale scaler web=1 worker=0").ok();
        assert_eq!(running(&d, "scaler"), vec!["web.1"]);
        assert_eq!(upstream_servers(&d, "scaler"), 1);
        stop.store(true, Ordering::Relaxed);
    });
    let failed = failed.into_inner().unwrap();
    assert!(failed.is_empty(), "{} requests failed while scaling: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    assert!(served.load(Ordering::Relaxed) > 50, "too few requests to mean anything");

    // Scale changes are releases with their cause; the formation is kept in app.toml.
    let releases = d.ssh("releases scaler").ok().stdout.clone();
    assert!(releases.contains("ps:scale web=2 worker=1") && releases.contains("ps:scale web=1 worker=0"), "{releases}");
    assert!(d.app_toml("scaler").contains("worker = 0"), "{}", d.app_toml("scaler"));

    // web=0: nothing serves: the site stays, without peers (502, no reload); web=1 brings it back.
    d.ssh("ps:scale scaler web=0").ok();
    assert_eq!(get(&d, "scaler.example.com").0, 502);
    assert_eq!(upstream_servers(&d, "scaler"), 0);
    d.ssh("ps:scale scaler web=1").ok();
    assert_eq!(get(&d, "scaler.example.com"), (200, "scaled v1".into()));
}

#[test]
fn a_failing_release_command_keeps_the_old_version_serving() {
    let d = Daemon::start();
    d.ssh("apps:create phases").ok();
    d.ssh("domains:add phases phases.example.com").ok();
    // The release command sees the app's mounts: it records each run on the host.
    d.ssh("storage:mount phases data:/data").ok();
    let repo = AppRepo::new(&d, "phases");
    repo.write("app.json", r#"{"scripts": {"dokku": {"predeploy": "echo predeploy ran >> /data/log", "postdeploy": "echo postdeploy says hi"}}}"#);
    procfile_app(&repo, "phases v1", "release: sh -c 'echo migrating $DATABASE; echo release ran >> /data/log'\n");
    d.ssh("config:set phases DATABASE=db1 --no-restart").ok();
    let log = push_ok(&d, &repo);
    for line in ["Running the release command", "migrating db1", "Running the predeploy", "Running postdeploy", "postdeploy says hi"] {
        assert!(log.contains(line), "{line:?} missing from:\n{log}");
    }
    let host_log = d.root().join("storage/phases/data/log");
    assert_eq!(std::fs::read_to_string(&host_log).unwrap(), "release ran\npredeploy ran\n");
    assert_eq!(get(&d, "phases.example.com"), (200, "phases v1".into()));

    procfile_app(&repo, "phases v2", "release: sh -c 'echo migration failed; exit 3'\n");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("migration failed"), "{}", out.stderr);
    assert!(out.stderr.contains("the release command failed with exit code 3; v1 keeps serving"), "{}", out.stderr);
    assert_eq!(get(&d, "phases.example.com"), (200, "phases v1".into()));
    let releases = d.ssh("releases phases --format json").ok().stdout.clone();
    assert!(releases.contains("\"failed\""), "{releases}");

    // A config change makes a release without running the release phase again.
    d.ssh("config:set phases DATABASE=db2").ok();
    assert_eq!(std::fs::read_to_string(&host_log).unwrap(), "release ran\npredeploy ran\n");

    // Mount and limit settings are validated and applied on the next release.
    d.ssh("storage:mount phases ../etc:/x").refused("Invalid mount");
    d.ssh("storage:mount phases /nonexistent-dir:/x").refused("not a directory");
    d.ssh("storage:mount phases other:/data").refused("already mounts something at /data");
    d.ssh("storage:list phases").ok();
    d.ssh("resource:limit phases --memory 5m").refused("Invalid memory size");
    d.ssh("resource:limit phases --cpu 0").refused("Invalid CPU count");
    d.ssh("resource:limit phases --memory 64m --cpu 0.5").ok();
    d.ssh("resource:limit phases --memory 32m --process worker").ok();
    // A reservation (dokku's resource:reserve), and one value cleared on its own.
    d.ssh("resource:reserve phases --memory 48m --cpu 0.25").ok();
    d.ssh("resource:reserve phases --cpu clear").ok();
    d.ssh("resource:reserve phases --memory 1x").refused("Invalid memory size");
    d.ssh("ps:restart phases").ok();
    let web = d.container_ids(false, &["berth.app=phases", "berth.process=web"]);
    let limits = docker(&["inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.MemoryReservation}}", &web[0]]);
    assert_eq!(limits.trim(), format!("{} 500000000 {}", 64 << 20, 48 << 20));
    let report = d.ssh("resource:report phases").ok().stdout.clone();
    assert!(report.contains("memory=64m cpu=0.5") && report.contains("worker: memory=32m"), "{report}");
    assert_eq!(d.ssh("resource:report phases --resource-_default_.reserve.memory").ok().stdout, "48m\n");
    assert_eq!(d.ssh("resource:report phases --resource-worker.limit.memory").ok().stdout, "32m\n");
    d.ssh("resource:report phases --resource-_default_.reserve.cpu").refused("Invalid flag passed");
    d.ssh("resource:reserve-clear phases").ok();
    d.ssh("resource:report phases --resource-_default_.reserve.memory").refused("Invalid flag passed");
    d.ssh("storage:unmount phases data:/data").ok();
    assert_eq!(d.ssh("storage:list phases --format json").ok().stdout, "[]\n");
}

#[test]
fn run_and_enter_give_a_pty_pass_stdin_and_return_exit_codes() {
    let d = Daemon::start();
    d.ssh("apps:create tty").ok();
    let repo = AppRepo::new(&d, "tty");
    procfile_app(&repo, "tty v1", "");
    push_ok(&d, &repo);

    // With ssh -tt the command runs on a terminal of the client's size (80x24 without one).
    // Engine 20.10 sizes a tty only once the container runs (as `docker run -t` does), so a
    // command reading the size in its first instant sees 0x0: hence the sleep.
    let out = d.ssh_tty("run tty sh -c 'sleep 1; tty; stty -a; echo term=$TERM; exit 5'", b"");
    assert_eq!(out.code, 5, "{out:#?}");
    assert!(out.stdout.contains("/dev/pts/"), "{out:#?}");
    assert!(out.stdout.contains("rows 24; columns 80"), "{out:#?}");
    // An interactive shell: what the client types runs there.
    let out = d.ssh_tty("run tty sh", b"echo typed $((6 * 7))\nexit 7\n");
    assert_eq!(out.code, 7, "{out:#?}");
    assert!(out.stdout.contains("typed 42"), "{out:#?}");
    // Ctrl-C on the client's terminal interrupts the command: 0x03 through the pty.
    let mut ssh = d.ssh_command(&d.admin, &["-tt"], "run tty sh -c 'echo ready; exec sleep 60'");
    let mut child = ssh.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = stdout.read(&mut buf).unwrap();
        assert!(n > 0, "run ended early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    std::thread::sleep(Duration::from_millis(300));
    let interrupted = Instant::now();
    child.stdin.as_mut().unwrap().write_all(b"\x03").unwrap();
    let status = child.wait().unwrap();
    assert!(interrupted.elapsed() < Duration::from_secs(10), "Ctrl-C did not stop the command");
    assert_eq!(status.code(), Some(130), "sleep ends by SIGINT: 128 + 2");

    // Without a pty, stdin is passed through as a stream.
    let out = d.ssh_as(&d.admin, "run tty wc -l", b"one\ntwo\nthree\n");
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout.trim(), "3");

    // enter: a command in a running container.
    let out = d.ssh("enter tty web.1 sh -c 'echo inside $HOSTNAME; exit 4'");
    assert_eq!(out.code, 4, "{out:#?}");
    assert_eq!(out.stdout, "inside tty-web-1\n");
    let out = d.ssh_tty("enter tty web.1", b"echo entered\nexit\n");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("entered"), "{out:#?}");
    d.ssh("enter tty web.9").refused("tty has no running web.9 (running: web.1)");
    d.ssh("enter tty web").refused("is not PROCESS.N");
}

#[test]
fn after_a_crash_and_lost_containers_every_app_comes_back_as_it_was() {
    let mut d = Daemon::start();
    d.ssh("apps:create phoenix").ok();
    d.ssh("domains:add phoenix phoenix.example.com").ok();
    d.ssh("apps:create quiet").ok();
    d.ssh("domains:add quiet quiet.example.com").ok();
    let phoenix = AppRepo::new(&d, "phoenix");
    procfile_app(&phoenix, "phoenix v1", "");
    push_ok(&d, &phoenix);
    d.ssh("ps:scale phoenix web=2 worker=1").ok();
    let quiet = AppRepo::new(&d, "quiet");
    procfile_app(&quiet, "quiet v1", "");
    push_ok(&d, &quiet);
    d.ssh("ps:stop quiet").ok();
    assert_eq!(running(&d, "quiet"), Vec::<String>::new());
    assert_eq!(get(&d, "quiet.example.com").0, 404, "a stopped app is not routed");

    // A crash, and meanwhile the engine lost phoenix's containers (as after a host reboot
    // with containers pruned).
    d.kill();
    let ids = d.container_ids(true, &["berth.app=phoenix"]);
    assert!(ids.len() >= 3, "{ids:?}");
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    docker(&[&["rm", "-f"][..], &ids].concat());
    d.boot();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while running(&d, "phoenix").len() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(running(&d, "phoenix"), vec!["web.1", "web.2", "worker.1"]);
    while get(&d, "phoenix.example.com").0 != 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get(&d, "phoenix.example.com"), (200, "phoenix v1".into()));
    assert_eq!(upstream_servers(&d, "phoenix"), 2);
    // The stopped app stayed stopped; ps:start brings it back.
    assert_eq!(running(&d, "quiet"), Vec::<String>::new());
    d.ssh("ps:start quiet").ok();
    assert_eq!(get(&d, "quiet.example.com"), (200, "quiet v1".into()));

    d.ssh("ps:set phoenix restart-policy sometimes").refused("Invalid restart-policy specified");
    d.ssh("ps:set phoenix restart-policy on-failure:3").ok();
    // berth restarts containers itself (after routing away from a dead one): the engine never does.
    let worker = d.container_ids(false, &["berth.app=phoenix", "berth.process=worker"]);
    let policy = docker(&["inspect", "-f", "{{.HostConfig.RestartPolicy.Name}}", &worker[0]]);
    assert_eq!(policy.trim(), "no");
    assert!(report(&d, "phoenix")["restart-policy"] == "on-failure:3", "{}", report(&d, "phoenix"));
}
