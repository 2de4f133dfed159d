//! A newcomer's first ten minutes: routing changes that serve at once, the URL a push ends
//! with, a Python app without a Procfile, a failed first push, and `doctor`.

use crate::harness::*;

fn releases(d: &Daemon, app: &str) -> usize {
    let out = d.ssh(&format!("releases {app} --format json"));
    out.ok();
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap().as_array().map_or(0, Vec::len)
}

#[test]
fn routing_changes_are_served_at_once_without_a_deploy() {
    let d = Daemon::start();
    d.ssh("domains:set-global one.example").ok();
    let repo = AppRepo::new(&d, "site");
    repo.write("Dockerfile", &web_dockerfile("site v1", 0)).commit("v1");
    let push = repo.push(&d, "main");
    assert_eq!(push.code, 0, "{}", push.stderr);
    // The push ends with where the app is served.
    let tail: Vec<&str> = push.stderr.lines().filter(|l| l.starts_with("remote: ")).collect();
    let url = format!("remote:        http://site.one.example:{}", d.http_port);
    assert!(tail.iter().any(|l| l.trim_end() == "remote: =====> Application deployed:"), "{}", push.stderr);
    assert!(tail.iter().any(|l| l.trim_end() == url), "{url:?} missing:\n{}", push.stderr);
    assert_eq!(get(&d, "site.one.example"), (200, "site v1".into()));
    assert_eq!(releases(&d, "site"), 1);

    // A new name serves at once; a removed one stops at once.
    d.ssh("domains:add site www.example.com").ok();
    assert_eq!(get(&d, "www.example.com"), (200, "site v1".into()));
    d.ssh("domains:remove site www.example.com").ok();
    assert_ne!(get(&d, "www.example.com").0, 200);
    d.ssh("domains:set site a.example.com b.example.com").ok();
    assert_eq!(get(&d, "b.example.com").0, 200);
    assert_ne!(get(&d, "site.one.example").0, 200);
    d.ssh("domains:clear site").ok();
    assert_ne!(get(&d, "a.example.com").0, 200);
    d.ssh("domains:set site site.one.example").ok();
    assert_eq!(get(&d, "site.one.example").0, 200);

    // proxy:disable: nginx routes nothing to the app, at once; proxy:enable brings it back.
    d.ssh("proxy:disable site").ok();
    assert_ne!(get(&d, "site.one.example").0, 200);
    assert_eq!(d.ssh("proxy:report site --proxy-enabled").ok().stdout, "false\n");
    assert_eq!(d.ssh("proxy:report site --proxy-computed-disabled").ok().stdout, "true\n");
    d.ssh("proxy:set site http:80:5000").refused("Detected potential port mapping instead of proxy type");
    d.ssh("proxy:set site type caddy").refused("berth runs one proxy, nginx");
    d.ssh("proxy:enable site").ok();
    assert_eq!(get(&d, "site.one.example"), (200, "site v1".into()));
    // A port mapping serves at once and goes at once (an admin's, on any free host port).
    let extra = free_port();
    d.ssh(&format!("ports:add site http:{extra}:5000")).ok();
    assert_eq!(http_get(extra, "site.one.example", "/"), (200, "site v1".into()));
    d.ssh(&format!("ports:remove site http:{extra}:5000")).ok();
    assert_ne!(http_get(extra, "site.one.example", "/").0, 200);

    // The global domain: every app's default name follows it; hand-set names stay.
    d.ssh("apps:create other").ok();
    d.ssh("domains:set other other.example.com").ok();
    let out = d.ssh("domains:set-global two.example");
    out.ok();
    assert!(out.stdout.contains("site now answers to site.two.example"), "{out:#?}");
    assert_eq!(get(&d, "site.two.example"), (200, "site v1".into()));
    assert_ne!(get(&d, "site.one.example").0, 200);
    assert!(d.app_toml("other").contains("other.example.com") && !d.app_toml("other").contains("two.example"));
    d.ssh("apps:create bare").ok();
    d.ssh("domains:clear bare").ok();
    d.ssh("domains:clear-global").ok();
    assert_ne!(get(&d, "site.two.example").0, 200);
    // A global domain set again gives back the default names the clear took, but not to an
    // app whose domains were cleared by hand, nor to one whose domains were set by hand.
    let out = d.ssh("domains:set-global three.example");
    out.ok();
    assert!(out.stdout.contains("site now answers to site.three.example"), "{out:#?}");
    assert_eq!(get(&d, "site.three.example"), (200, "site v1".into()));
    assert!(!d.app_toml("bare").contains("three.example") && !d.app_toml("other").contains("three.example"));

    // An app's key: a wildcard may not catch every app's default name, nor another app's
    // names; a plain name under another app's wildcard is fine (nginx prefers the exact
    // name). An admin may add a wildcard over the global domain, as on dokku: every app
    // keeps its default name.
    let user = crate::harness::keygen(d.dir.path(), "user");
    d.local(&["ssh-keys:add", "user", "--app", "other"], user.public.as_bytes()).ok();
    d.ssh_as(&user, "domains:add other '*.three.example'", b"").refused("would catch every app's name under the global domain three.example");
    d.ssh_as(&user, "domains:add other '*.example'", b"").refused("would catch every app's name under the global domain three.example");
    d.ssh("domains:add other '*.three.example'").ok();
    assert_eq!(get(&d, "site.three.example"), (200, "site v1".into()));
    d.ssh("domains:remove other '*.three.example'").ok();
    d.ssh("domains:add other '*.example.com'").ok();
    d.ssh("domains:add site www.example.com").ok();
    assert_eq!(get(&d, "www.example.com"), (200, "site v1".into()));
    d.ssh("domains:add-global example.com").refused("*.example.com of app other would catch every app's name under example.com");
    d.ssh("domains:remove site www.example.com").ok();

    // All or nothing: when one app cannot be routed (here its release history is damaged),
    // the global domains and every app's domains stay, and the apps routed already are
    // routed back.
    d.ssh("apps:create zzz").ok();
    std::fs::write(d.root().join("apps/zzz/releases.toml"), "damaged [").unwrap();
    let state = || (std::fs::read_to_string(d.root().join("berth.toml")).unwrap(), d.app_toml("site"), d.app_toml("zzz"));
    let before = state();
    let out = d.ssh("domains:set-global four.example");
    assert!(out.code != 0 && out.code != 255, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(out.stderr.starts_with(" !     Global domains not changed: routing zzz failed: "), "{out:#?}");
    assert_eq!(state(), before);
    assert_eq!(get(&d, "site.three.example"), (200, "site v1".into()));
    assert_ne!(get(&d, "site.four.example").0, 200);
    std::fs::remove_file(d.root().join("apps/zzz/releases.toml")).unwrap();

    // None of it was a deploy.
    assert_eq!(releases(&d, "site"), 1);
}

#[test]
fn a_failed_first_push_removes_the_app_it_created() {
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "doomed");
    repo.write("Dockerfile", "FROM berth-test/busybox\nRUN false\n").commit("broken");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("doomed was created by this push, which failed: removed it"), "{}", out.stderr);
    d.ssh("apps:exists doomed").refused("App doomed does not exist");
    assert!(!d.root().join("apps/doomed").exists());

    // Fixed, the same push creates it again and deploys.
    repo.write("Dockerfile", &web_dockerfile("fixed", 0)).commit("fixed");
    repo.push(&d, "main").ok();
    d.ssh("apps:exists doomed").ok();

    // An app made with apps:create stays when its first push fails.
    d.ssh("apps:create kept").ok();
    let repo = AppRepo::new(&d, "kept");
    repo.write("Dockerfile", "FROM berth-test/busybox\nRUN false\n").commit("broken");
    assert_ne!(repo.push(&d, "main").code, 0);
    d.ssh("apps:exists kept").ok();
}

#[test]
fn a_python_app_without_a_procfile_is_refused_before_building_or_gets_gunicorn() {
    let d = Daemon::start();
    stack_image(&d);
    d.ssh("domains:set-global py.example").ok();
    let repo = AppRepo::new(&d, "noproc");
    repo.write("requirements.txt", "six==1.16.0\n").write("run.py", "print('hello')\n").commit("no procfile");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("No Procfile: add one saying how the app starts"), "{}", out.stderr);
    assert!(!out.stderr.contains("Building with buildpack"), "it built first:\n{}", out.stderr);

    let repo = AppRepo::new(&d, "flask");
    repo.write("requirements.txt", "flask\ngunicorn\n")
        .write("app.py", "from flask import Flask\n\napp = Flask(__name__)\n\n\n@app.route('/')\ndef hello():\n    return 'hello from flask'\n")
        .commit("flask without a procfile");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("No Procfile: running web: gunicorn app:app"), "{}", out.stderr);
    assert_eq!(get(&d, "flask.py.example"), (200, "hello from flask".into()));
}

/// berth's nginx, stopped, with its HTTP port held so the daemon cannot start it again.
fn stop_nginx_and_hold_its_port(d: &Daemon) -> std::net::TcpListener {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        assert!(std::time::Instant::now() < deadline, "could not stop berth's nginx");
        if let Ok(pid) = std::fs::read_to_string(d.root().join("nginx/nginx.pid")) {
            // Bounded: a master still starting may ignore SIGTERM, and a pid can be reused.
            let pid = pid.trim().to_string();
            let is_nginx = || std::fs::read_to_string(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c.contains("nginx"));
            let _ = std::process::Command::new("kill").arg(&pid).status();
            let gone_by = std::time::Instant::now() + std::time::Duration::from_secs(3);
            while is_nginx() && std::time::Instant::now() < gone_by {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if is_nginx() {
                let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
            }
        }
        // The daemon restarts a dead nginx every 2 s: take the port before it does.
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", d.http_port)) {
            return listener;
        }
    }
}

#[test]
fn doctor_on_a_healthy_and_a_broken_server() {
    let d = Daemon::start();
    let out = d.ssh("doctor");
    out.ok();
    for needle in ["=====> berth doctor", "ok    docker", "ok    nginx", "ok    ports", "ok    certificates", "warn  dns           no global domain"] {
        assert!(out.stdout.contains(needle), "{needle:?} missing:\n{}", out.stdout);
    }
    // The same on the server, through the local socket.
    assert!(d.local(&["doctor"], b"").ok().stdout.contains("ok    nginx"));
    // Admins only.
    let scoped = keygen(d.dir.path(), "scoped");
    d.local(&["ssh-keys:add", "scoped", "--app", "mine"], scoped.public.as_bytes()).ok();
    d.ssh_as(&scoped, "doctor", b"").refused("Permission denied");

    let held = stop_nginx_and_hold_its_port(&d);
    let out = d.ssh("doctor");
    assert_eq!(out.code, 1, "{out:#?}");
    assert!(out.stdout.contains("FAIL  nginx         berth's nginx is not running"), "{}", out.stdout);
    assert!(out.stdout.contains("ok    docker"), "{}", out.stdout);
    // Its HTTPS port is closed too, unless the daemon's restart attempt holds it right now
    // (nginx binds every port, then retries the held one for a while before giving up).
    let https_closed = out.stdout.contains(&format!("FAIL  ports         nothing accepts on HTTPS 127.0.0.1:{}", d.https_port));
    let expected = if https_closed { "!     2 checks failed: see FAIL above" } else { "!     1 check failed: see FAIL above" };
    assert_eq!(out.stderr.trim(), expected, "{}", out.stdout);

    // Once the port is free again the daemon starts nginx, and doctor says so.
    drop(held);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while d.ssh("doctor").code != 0 {
        assert!(std::time::Instant::now() < deadline, "nginx did not come back: {}", d.ssh("doctor").stdout);
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
