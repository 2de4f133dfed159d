//! State on disk: it survives restarts and crashes, the local CLI sees what SSH sees, and a
//! damaged state file is named (file and line), never read as empty.

use crate::harness::{AppRepo, Daemon, get, temp_dir, web_dockerfile};

#[test]
fn state_survives_a_graceful_restart_and_a_crash() {
    let mut d = Daemon::start();
    d.ssh("apps:create myapp").ok();
    d.ssh("config:set myapp GREETING=hello world").ok();
    d.ssh("domains:add myapp www.example.com").ok();
    let host_key = std::fs::read(d.root().join("keys/host_ed25519")).unwrap();
    let report = d.ssh("apps:report myapp --format json").ok().stdout.clone();

    d.stop();
    assert!(!d.root().join("berth.sock").exists(), "socket left behind after SIGTERM");
    d.boot();
    // Same host key: the client's known_hosts entry from the first run still matches.
    assert_eq!(std::fs::read(d.root().join("keys/host_ed25519")).unwrap(), host_key);
    assert_eq!(d.ssh("config:get myapp GREETING").ok().stdout, "hello world\n");
    assert_eq!(d.ssh("apps:report myapp --format json").ok().stdout, report);

    d.kill();
    d.boot();
    assert_eq!(d.ssh("apps:list --quiet").ok().stdout, "myapp\n");
    let domains = d.ssh("domains:report myapp").ok().stdout.clone();
    assert!(domains.contains("www.example.com"), "{domains}");
}

#[test]
fn the_local_cli_and_ssh_agree() {
    let d = Daemon::start();
    d.ssh("apps:create myapp").ok();
    d.local(&["config:set", "myapp", "GREETING=hello world"], b"").ok();
    for line in [
        "apps:list",
        "config:get myapp GREETING",
        "config:show myapp",
        "apps:report myapp --format json",
        "domains:report myapp",
        "ports:list myapp",
        "apps:exists nope",
        "config:set myapp 1=2",
        "nonsense",
        "help",
    ] {
        let words = shell_words::split(line).unwrap();
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        assert_eq!(d.local(&words, b""), d.ssh(line), "local and SSH differ for {line:?}");
    }
    // stdin reaches commands through the local socket too.
    let wrong = d.local(&["apps:destroy", "myapp"], b"other\n");
    assert_eq!(wrong.code, 1);
    d.local(&["apps:destroy", "myapp"], b"myapp\n").ok();
}

#[test]
fn the_local_cli_says_when_no_daemon_runs() {
    let mut d = Daemon::start();
    d.stop();
    let out = d.local(&["apps:list"], b"");
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with(" !     The berth daemon is not running"), "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1);
}

#[test]
fn a_second_daemon_on_the_same_root_refuses_to_start() {
    let d = Daemon::start();
    let out = std::process::Command::new(crate::harness::BERTH)
        .arg("--root")
        .arg(d.root())
        .args(["daemon", "--ssh-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another berth daemon is already running"));
    d.ssh("apps:list").ok();
}

#[test]
fn a_bad_listen_address_is_one_clear_line() {
    let dir = temp_dir();
    let out = std::process::Command::new(crate::harness::BERTH)
        .arg("--root")
        .arg(dir.path())
        .args(["daemon", "--ssh-listen", "nowhere"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid --ssh-listen address \"nowhere\""), "{err}");
}

/// Creates `app` with the domain `<app>.example.com`, pushes a web app answering `text`, and
/// expects it served.
fn serve(d: &Daemon, app: &str, text: &str) -> AppRepo {
    d.ssh(&format!("apps:create {app}")).ok();
    d.ssh(&format!("domains:add {app} {app}.example.com")).ok();
    let repo = AppRepo::new(d, app);
    repo.write("Dockerfile", &web_dockerfile(text, 0)).commit(text);
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "push failed: {out:#?}");
    assert_eq!(get(d, &format!("{app}.example.com")), (200, text.to_string()));
    // The daemon marks the push landed (in releases.toml) once git has moved the branch, just
    // after the push returns: wait for that, so a test damaging the file has the last word.
    let releases = d.root().join("apps").join(app).join("releases.toml");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::fs::read_to_string(&releases).unwrap().contains("ref_pending = true") {
        assert!(std::time::Instant::now() < deadline, "the push of {app} never settled");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    repo
}

/// The one ` !     ` line of `stderr`, which must contain `needle`.
#[track_caller]
fn one_error_line(stderr: &str, needle: &str) {
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line: {stderr}");
    assert!(lines[0].starts_with(" !     ") && lines[0].contains(needle), "expected {needle:?} in {stderr}");
}

#[test]
fn an_emptied_releases_file_is_an_error_not_a_fresh_start() {
    let d = Daemon::start();
    serve(&d, "healthy", "healthy v1");
    let damaged = serve(&d, "damaged", "damaged v1");
    let file = d.root().join("apps/damaged/releases.toml");
    std::fs::File::create(&file).unwrap(); // truncated to 0 bytes
    let named = format!("{} is empty: it was damaged", file.display());

    d.ssh("releases damaged").refused(&named);
    d.ssh("ps:report damaged").refused(&named);
    d.ssh("apps:report damaged").refused(&named);
    d.ssh("releases:rollback damaged").refused(&named);

    // A report over every app names the damaged one and reports the other.
    let all = d.ssh("apps:report");
    assert_eq!(all.code, 1, "{all:#?}");
    assert!(all.stdout.contains("healthy app information") && !all.stdout.contains("damaged app information"), "{all:#?}");
    one_error_line(&all.stderr, &named);
    let json = d.ssh("apps:report --format json");
    assert_eq!(json.code, 1, "{json:#?}");
    let reports: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert!(reports.get("healthy").is_some() && reports.get("damaged").is_none(), "{json:#?}");
    one_error_line(&json.stderr, &named);
    // It is still an app: listed, so it can be found and mended.
    assert_eq!(d.ssh("apps:list --quiet").ok().stdout, "damaged\nhealthy\n");

    // A push to it is refused before anything is built: it does not become v1 and retire
    // what runs. The other app is untouched throughout.
    damaged.write("Dockerfile", &web_dockerfile("damaged v2", 0)).commit("v2");
    let out = damaged.push(&d, "main");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains(&named), "{out:#?}");
    assert!(!out.stderr.contains("Building"), "{out:#?}");
    assert_eq!(get(&d, "damaged.example.com"), (200, "damaged v1".into()));
    assert_eq!(get(&d, "healthy.example.com"), (200, "healthy v1".into()));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), 0, "the damaged file is left for the admin to restore");
    let report: serde_json::Value = serde_json::from_str(&d.ssh("ps:report healthy --format json").ok().stdout).unwrap();
    assert_eq!(report["release"], "v1");
}

#[test]
fn a_half_written_app_toml_is_named_with_its_line() {
    let d = Daemon::start();
    d.ssh("apps:create cut").ok();
    d.ssh("apps:create whole").ok();
    d.ssh("config:set cut GREETING=hello FAREWELL=goodbye").ok();
    let file = d.root().join("apps/cut/app.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    // Cut in the middle of the GREETING line, as a half-written file would end.
    let cut = text.find("\"hello").unwrap() + 3;
    let line = text[..cut].lines().count();
    std::fs::write(&file, &text[..cut]).unwrap();
    let at = format!("{}:{line}: ", file.display());

    d.ssh("config:get cut GREETING").refused(&at);
    d.ssh("apps:report cut").refused(&at);
    // A change is refused too: it must not write defaults over what is left.
    d.ssh("config:set cut OTHER=1").refused(&at);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text[..cut]);

    let all = d.ssh("apps:report");
    assert_eq!(all.code, 1, "{all:#?}");
    assert!(all.stdout.contains("whole app information"), "{all:#?}");
    one_error_line(&all.stderr, &at);
    assert_eq!(d.ssh("apps:list --quiet").ok().stdout, "cut\nwhole\n");
    d.ssh("apps:report whole").ok();
}

/// A container another removal is already taking away (a daemon's start-up sweep, a
/// retirement, an admin's `docker rm -f`) does not fail `apps:destroy`: the engine answers
/// "removal already in progress" (409), and berth waits for that removal instead.
#[test]
fn apps_destroy_waits_for_a_removal_already_in_progress() {
    let d = Daemon::start();
    let app = "rm-race";
    d.ssh(&format!("apps:create {app}")).ok();
    d.ssh(&format!("domains:add {app} rm-race.example.com")).ok();
    let repo = AppRepo::new(&d, app);
    repo.write("Dockerfile", &web_dockerfile("up", 0)).commit("v1");
    assert_eq!(repo.push(&d, "main").code, 0);
    let web = d.container_ids(false, &[&format!("berth.app={app}"), "berth.process=web"]);
    assert_eq!(web.len(), 1, "{web:?}");
    // A writable layer of many files: its removal takes the engine a while.
    crate::harness::docker(&["exec", &web[0], "sh", "-c", "mkdir /junk && cd /junk && seq 150000 | xargs touch"]);
    let mut rm = std::process::Command::new("docker").args(["rm", "-f", &web[0]]).stdout(std::process::Stdio::null()).spawn().unwrap();
    crate::harness::poll(std::time::Duration::from_secs(10), "the engine to start removing the container", || {
        let state = std::process::Command::new("docker").args(["inspect", "-f", "{{.State.Status}}", &web[0]]).output().unwrap();
        match String::from_utf8_lossy(&state.stdout).trim() {
            "removing" => Ok(()),
            other => Err(format!("state {other:?}")),
        }
    });
    d.ssh(&format!("apps:destroy {app} --force")).ok();
    assert!(rm.wait().unwrap().success());
    assert!(d.container_ids(true, &[&format!("berth.app={app}")]).is_empty());
    assert_eq!(d.ssh("apps:list").ok().stdout.lines().filter(|l| *l == app).count(), 0);
}
