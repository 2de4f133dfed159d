//! Apps without a Dockerfile, built by berth's buildpacks in the stack image.

use crate::harness::{AppRepo, Daemon, get, stack_image, temp_dir};

fn app(d: &Daemon, name: &str, files: &[(&str, &str)]) -> AppRepo {
    stack_image(d);
    d.ssh(&format!("apps:create {name}")).ok();
    d.ssh(&format!("domains:add {name} {name}.example.com")).ok();
    let repo = AppRepo::new(d, name);
    for (path, text) in files {
        repo.write(path, text);
    }
    repo.commit("first");
    repo
}

/// A child process killed when dropped.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[track_caller]
fn pushed(d: &Daemon, repo: &AppRepo) -> String {
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "push failed: {}", out.stderr);
    out.stderr
}

const PYTHON_APP: &str = r#"import os
import six
from http.server import BaseHTTPRequestHandler, HTTPServer

class Hello(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("python with six " + six.__version__).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

HTTPServer(("0.0.0.0", int(os.environ["PORT"])), Hello).serve_forever()
"#;

#[test]
fn a_python_app_installs_its_requirements_and_a_rebuild_uses_the_cache() {
    let d = Daemon::start();
    let repo = app(&d, "py-app", &[("app.py", PYTHON_APP), ("requirements.txt", "six==1.16.0\n"), ("Procfile", "web: python app.py\n")]);
    let log = pushed(&d, &repo);
    for needle in
        ["Building py-app with buildpacks", "Building with buildpack python", "Installing requirements", "Successfully installed six-1.16.0", "Compiled in"]
    {
        assert!(log.contains(needle), "{needle:?} missing:\n{log}");
    }
    assert_eq!(get(&d, "py-app.example.com"), (200, "python with six 1.16.0".into()));

    // Unchanged requirements: the cached virtualenv, no pip install.
    repo.commit("again");
    let log = pushed(&d, &repo);
    assert!(log.contains("Reusing the cached virtualenv"), "{log}");
    assert!(!log.contains("Installing requirements"), "{log}");
    assert_eq!(get(&d, "py-app.example.com"), (200, "python with six 1.16.0".into()));

    // A dependency that cannot be installed rejects the push; the old release serves on.
    repo.write("requirements.txt", "six==1.16.0\nberth-no-such-package-anywhere==0.0.1\n").commit("bad requirement");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("The buildpack build failed"), "{}", out.stderr);
    assert_eq!(get(&d, "py-app.example.com"), (200, "python with six 1.16.0".into()));

    // A daemon restart keeps the web container of a buildpack image running (its image's
    // labels once made it look like a one-off of an earlier daemon, removed at start).
    let web = d.container_ids(false, &["berth.app=py-app", "berth.process=web"]);
    assert_eq!(web.len(), 1, "{web:?}");
    let mut d = d;
    d.stop();
    d.boot();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(d.container_ids(false, &["berth.app=py-app", "berth.process=web"]), web, "the daemon's start replaced or removed the web container");
    assert_eq!(get(&d, "py-app.example.com"), (200, "python with six 1.16.0".into()));
}

#[test]
fn a_nodejs_app_runs_npm_install_and_npm_start() {
    let d = Daemon::start();
    let server = r#"const http = require('http');
const isNumber = require('is-number');
http.createServer((req, res) => res.end('node says ' + isNumber(5))).listen(process.env.PORT);
"#;
    let package = r#"{"name": "node-app", "version": "1.0.0", "scripts": {"start": "node server.js"}, "dependencies": {"is-number": "7.0.0"}}"#;
    let repo = app(&d, "node-app", &[("server.js", server), ("package.json", package)]);
    let log = pushed(&d, &repo);
    assert!(log.contains("Building with buildpack nodejs"), "{log}");
    assert!(log.contains("npm install"), "{log}");
    assert!(log.contains("added 1 package"), "npm did not install: {log}");
    assert_eq!(get(&d, "node-app.example.com"), (200, "node says true".into()));
}

#[test]
fn a_go_app_with_only_the_standard_library_builds() {
    let d = Daemon::start();
    let main = r#"package main

import (
	"fmt"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "go says hello") })
	http.ListenAndServe(":"+os.Getenv("PORT"), nil)
}
"#;
    let repo = app(&d, "go-app", &[("main.go", main), ("go.mod", "module example.com/goapp\n\ngo 1.19\n")]);
    let log = pushed(&d, &repo);
    assert!(log.contains("Building with buildpack go"), "{log}");
    assert_eq!(get(&d, "go-app.example.com"), (200, "go says hello".into()));
}

#[test]
fn a_static_site_and_a_procfile_app_are_served() {
    let d = Daemon::start();
    let site = app(&d, "static-app", &[("index.html", "static hello\n"), ("about.html", "about\n")]);
    // The stack a build runs in is the app's choice, else the global one (admins): one the
    // engine lacks fails the push, naming it; a copy of berth's stack builds.
    d.ssh("buildpacks:set-property static-app stack berth-test/missing-stack:1").ok();
    d.ssh("buildpacks:set-property static-app stack 'Not An Image'").refused("Invalid stack");
    let out = site.push(&d, "main");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("berth-test/missing-stack:1 (buildpacks:set-property stack) is not on the server's engine"), "{out:#?}");
    crate::harness::docker(&["tag", "berth/stack:bookworm", "berth-test/stack:copy"]);
    d.ssh("buildpacks:set-property --global stack berth-test/stack:copy").ok();
    d.ssh("buildpacks:set-property static-app stack").ok();
    assert_eq!(d.ssh("buildpacks:report static-app --buildpacks-computed-stack").ok().stdout, "berth-test/stack:copy\n");
    let log = pushed(&d, &site);
    d.ssh("buildpacks:set-property --global stack").ok();
    crate::harness::docker(&["rmi", "berth-test/stack:copy"]);
    assert!(log.contains("Building with buildpack static"), "{log}");
    assert_eq!(get(&d, "static-app.example.com"), (200, "static hello".into()));

    let procfile = app(&d, "procfile-app", &[("Procfile", "web: busybox httpd -f -p $PORT -h /app/public\n"), ("public/index.html", "from a procfile\n")]);
    let log = pushed(&d, &procfile);
    assert!(log.contains("Building with buildpack procfile"), "{log}");
    assert_eq!(get(&d, "procfile-app.example.com"), (200, "from a procfile".into()));

    // A buildpack app's container killed behind berth's back comes back (its image carries
    // `berth.one-off` from the build; its death must still be seen as the app's).
    let ids = d.container_ids(false, &["berth.app=static-app", "berth.process=web"]);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let started = || crate::harness::docker(&["inspect", "-f", "{{.State.StartedAt}}", &ids[0]]).trim().to_string();
    let before = started();
    crate::harness::docker(&["kill", &ids[0]]);
    crate::harness::poll(std::time::Duration::from_secs(60), "the killed buildpack app to be started again and serve", || {
        let served = get(&d, "static-app.example.com");
        if started() != before && served == (200, "static hello".into()) { Ok(()) } else { Err(format!("{served:?}")) }
    });
}

#[test]
fn nothing_to_build_is_one_clear_refusal_and_buildpacks_can_be_chosen() {
    let d = Daemon::start();
    let repo = app(&d, "nothing-app", &[("README.md", "no code here\n")]);
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("Nothing to build: berth looked for a Dockerfile, requirements.txt"), "{}", out.stderr);

    d.ssh("buildpacks:add nothing-app ruby").refused("Unknown buildpack");
    d.ssh("buildpacks:set nothing-app static").ok();
    assert!(d.ssh("buildpacks:list nothing-app").ok().stdout.contains("       static\n"));
    // The chosen buildpack does not apply to this app.
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("does not apply"), "{}", out.stderr);
    repo.write("index.html", "chosen static\n").commit("site");
    pushed(&d, &repo);
    assert_eq!(get(&d, "nothing-app.example.com"), (200, "chosen static".into()));

    // builder:set dockerfile refuses an app without one.
    d.ssh("builder:set nothing-app dockerfile").ok();
    repo.commit("again");
    let out = repo.push(&d, "main");
    assert!(out.stderr.contains("No Dockerfile"), "{}", out.stderr);
    d.ssh("builder:set nothing-app detect").ok();
    d.ssh("buildpacks:clear nothing-app").ok();
}

#[test]
fn a_third_party_buildpack_from_a_git_url_builds_the_app() {
    let ca_dir = temp_dir();
    let ca = crate::https::TestCa::new(ca_dir.path());
    let d = Daemon::start_with_env(&[("GIT_SSL_CAINFO", ca.ca().display().to_string())]);
    // A buildpack in the Heroku API v2, in its own git repository (a bare one on disk:
    // no git host is reachable from here, but `git clone URL` is the same path).
    let src = d.dir.path().join("custom-bp");
    for (file, text) in [
        ("bin/detect", "#!/bin/sh\n[ -f \"$1/hello.txt\" ] && echo custom && exit 0\nexit 1\n"),
        (
            "bin/compile",
            "#!/bin/sh\nset -e\necho \"       custom compile, GREETING=$(cat \"$3/GREETING\")\"\necho \"       build cgroup: $(grep -E ':cpu[,:]' /proc/self/cgroup | head -n1)\"\necho \"       build $(grep Cpus_allowed_list /proc/self/status)\"\n(echo \"custom: $(cat \"$3/GREETING\")\"; cat \"$1/hello.txt\") > \"$1/index.html\"\n",
        ),
        ("bin/release", "#!/bin/sh\nprintf -- '---\\ndefault_process_types:\\n  web: busybox httpd -f -p $PORT -h /app\\n'\n"),
    ] {
        let path = src.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let git = |args: &[&str]| assert!(std::process::Command::new("git").current_dir(&src).args(args).status().unwrap().success());
    git(&["init", "-q", "-b", "main"]);
    git(&["-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"]);
    git(&["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "bp"]);
    let site = d.dir.path().join("git-site");
    let bare = site.join("custom-bp.git");
    assert!(std::process::Command::new("git").args(["clone", "-q", "--bare"]).arg(&src).arg(&bare).status().unwrap().success());
    // Served over https, as git hosts do ("dumb" HTTP: static files), by a server with a
    // certificate of a CA the daemon trusts.
    assert!(std::process::Command::new("git").current_dir(&bare).args(["update-server-info"]).status().unwrap().success());
    let (cert, key) = ca.leaf("git", &["localhost", "127.0.0.1"]);
    let port = crate::harness::free_port();
    let server = format!(
        "import http.server, ssl, functools\nh = functools.partial(http.server.SimpleHTTPRequestHandler, directory={:?})\ns = http.server.ThreadingHTTPServer(('127.0.0.1', {port}), h)\nc = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\nc.load_cert_chain({:?}, {:?})\ns.socket = c.wrap_socket(s.socket, server_side=True)\ns.serve_forever()\n",
        site.display().to_string(),
        cert.display().to_string(),
        key.display().to_string()
    );
    let _server = Killed(std::process::Command::new("python3").args(["-c", &server]).stderr(std::process::Stdio::null()).spawn().unwrap());
    let url = format!("https://localhost:{port}/custom-bp.git");

    let repo = app(&d, "custom-app", &[("hello.txt", "world\n")]);
    // Only https, never a local path.
    d.ssh(&format!("buildpacks:add custom-app {}", bare.display())).refused("only https:// git URLs are fetched");
    d.ssh(&format!("buildpacks:add custom-app {url}")).ok();
    d.ssh("config:set custom-app GREETING=hi --no-restart").ok();
    // localhost is a private address: refused until berth.toml allows such hosts.
    let out = repo.push(&d, "main");
    assert!(out.stderr.contains("a private address: berth fetches only from public hosts"), "{}", out.stderr);
    d.setting("allow_private_buildpack_hosts = true".into());
    let log = pushed(&d, &repo);
    assert!(log.contains("Fetching buildpack"), "{log}");
    assert!(log.contains("custom compile, GREETING=hi"), "ENV_DIR did not reach compile: {log}");
    // The build ran at the idle CPU priority: under berth's cgroup whose cpu.idle is 1 (where
    // the engine uses cgroup v1 and cgroupfs, as here, the build sees that path).
    assert!(log.contains("idle CPU priority"), "{log}");
    // And off CPU 0, which stays the apps' (where the machine has another).
    let cpus = crate::harness::build_cpus_allowed();
    assert!(log.lines().any(|l| l.contains("Cpus_allowed_list:") && l.split_whitespace().last() == Some(cpus.as_str())), "the build did not run on CPUs {cpus}: {log}");
    let engine = crate::harness::docker(&["info", "--format", "{{.CgroupVersion}} {{.CgroupDriver}}"]);
    if engine.trim() == "1 cgroupfs" {
        assert!(log.contains(":/berth-builds/"), "the build did not run under berth-builds: {log}");
        assert_eq!(std::fs::read_to_string("/sys/fs/cgroup/cpu/berth-builds/cpu.idle").unwrap().trim(), "1");
    }
    assert_eq!(get(&d, "custom-app.example.com"), (200, "custom: hi\nworld".into()));

    // A buildpack over the size limit (100 MiB) is stopped while it downloads, and nothing of
    // it stays.
    let mut noise = vec![0u8; 110 << 20];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for chunk in noise.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(src.join("noise.bin"), noise).unwrap();
    git(&["-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"]);
    git(&["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", "huge"]);
    let huge = site.join("huge-bp.git");
    assert!(std::process::Command::new("git").args(["clone", "-q", "--bare"]).arg(&src).arg(&huge).status().unwrap().success());
    assert!(std::process::Command::new("git").current_dir(&huge).args(["update-server-info"]).status().unwrap().success());
    let repo = app(&d, "huge-app", &[("hello.txt", "world\n")]);
    d.ssh(&format!("buildpacks:add huge-app https://localhost:{port}/huge-bp.git")).ok();
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("larger than 100 MiB: berth does not take it"), "{}", out.stderr);
    let fetched = std::fs::read_dir(d.root().join("buildpacks-custom")).map(|r| r.count()).unwrap_or(0);
    assert_eq!(fetched, 1, "only the first buildpack stays fetched");
}
