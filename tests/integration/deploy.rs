//! git push deploys through the real Docker engine and berth's own nginx.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::process::{Command, Stdio};

use crate::harness::{AppRepo, Daemon, docker, get, web_dockerfile};

/// Pushes `text` as a new version of the app and expects the push to succeed.
fn deploy(d: &Daemon, repo: &AppRepo, text: &str, delay: u32) -> String {
    repo.write("Dockerfile", &web_dockerfile(text, delay)).commit(text);
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "push failed: {out:#?}");
    out.stderr
}

fn server_head(d: &Daemon, app: &str) -> String {
    let repo = d.root().join("apps").join(app).join("repo.git");
    let out = std::process::Command::new("git").arg("--git-dir").arg(repo).args(["rev-parse", "main"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_pushed_dockerfile_app_is_served_through_nginx_by_host() {
    let d = Daemon::start();
    // The first push creates the app, as dokku does.
    let repo = AppRepo::new(&d, "hello-push");
    let log = deploy(&d, &repo, "hello v1", 0);
    for line in ["remote: -----> Building hello-push from Dockerfile", "Step 1/", "Releasing v1", "Starting web.1 … checks passed", "is live"] {
        assert!(log.contains(line), "{line:?} missing from push output:\n{log}");
    }
    assert!(log.contains("Nothing is routed to hello-push: no domains"), "{log}");
    d.ssh("domains:add hello-push hello.example.com www.hello.example.com").ok();
    d.ssh("ps:restart hello-push").ok();
    assert_eq!(get(&d, "hello.example.com"), (200, "hello v1".into()));
    assert_eq!(get(&d, "www.hello.example.com"), (200, "hello v1".into()));
    assert_eq!(get(&d, "unknown.example.com").0, 404);

    let releases = std::fs::read_to_string(d.root().join("apps/hello-push/releases.toml")).unwrap();
    assert!(releases.contains("version = 2") && releases.contains("cause = \"ps:restart\""), "{releases}");
    let report: serde_json::Value = serde_json::from_str(&d.ssh("ps:report hello-push --format json").ok().stdout).unwrap();
    assert_eq!(report["release"], "v2");

    // Clone back (upload-pack) as an admin.
    let clone = d.dir.path().join("clone");
    let ssh = format!(
        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR",
        d.admin.private.display()
    );
    let status = std::process::Command::new("git")
        .args(["clone", "-q", &format!("ssh://berth@127.0.0.1:{}/hello-push", d.port)])
        .arg(&clone)
        .env("GIT_SSH_COMMAND", ssh)
        .status()
        .unwrap();
    assert!(status.success());
    assert!(std::fs::read_to_string(clone.join("Dockerfile")).unwrap().contains("hello v1"));
}

#[test]
fn a_redeploy_under_continuous_requests_drops_none() {
    let d = Daemon::start();
    // Web containers join namespaces made while their release builds (from the stack image).
    crate::harness::stack_image(&d);
    d.ssh("apps:create steady").ok();
    d.ssh("domains:add steady steady.example.com").ok();
    let repo = AppRepo::new(&d, "steady");
    // This app takes two seconds to start listening.
    deploy(&d, &repo, "steady v1", 2);
    assert_eq!(get(&d, "steady.example.com"), (200, "steady v1".into()));

    let stop = AtomicBool::new(false);
    let served = AtomicUsize::new(0);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = get(&d, "steady.example.com");
                    if status == 200 && body.starts_with("steady v") {
                        served.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.lock().unwrap().push((status, body));
                    }
                }
            });
        }
        deploy(&d, &repo, "steady v2", 2);
        // Served by the new version as soon as the push returns.
        assert_eq!(get(&d, "steady.example.com"), (200, "steady v2".into()));
        // v3 once v1 has retired, so v3 takes the namespace v1 leaves (a build that ends
        // before an old container's retirement starts its container on the network itself).
        let root = format!("label=berth.root={}", d.root().display());
        crate::harness::poll(std::time::Duration::from_secs(20), "v1 retired", || {
            let web = docker(&["ps", "-aq", "--filter", &root, "--filter", "label=berth.app=steady", "--filter", "label=berth.process=web"]);
            if web.lines().count() == 1 { Ok(()) } else { Err(web) }
        });
        deploy(&d, &repo, "steady v3", 0);
        assert_eq!(get(&d, "steady.example.com"), (200, "steady v3".into()));
        stop.store(true, Ordering::Relaxed);
    });
    let failed = failed.into_inner().unwrap();
    assert!(failed.is_empty(), "{} requests failed during redeploys: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    assert!(served.load(Ordering::Relaxed) > 50, "too few requests to mean anything");
    // The web container joined its holder's namespace, the old ones' holders went with them
    // (retired after the push returned: waited for), and the next deploy's is ready.
    let root = d.root().display().to_string();
    let listed = |filter: &str| -> Vec<String> {
        docker(&["ps", "-aq", "--no-trunc", "--filter", &format!("label=berth.root={root}"), "--filter", "label=berth.app=steady", "--filter", filter])
            .lines()
            .map(str::to_string)
            .collect()
    };
    // Waited for as a whole: a retired container's holder goes just after it.
    let inspect = |id: &str, format: &str| {
        let out = std::process::Command::new("docker").args(["inspect", "-f", format, id]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let settled = || {
        let (web, holders) = (listed("label=berth.process=web"), listed("label=berth.holder"));
        let [web] = web.as_slice() else { return Err(format!("web containers: {web:?}")) };
        let joined = inspect(web, "{{.HostConfig.NetworkMode}}");
        let (taken, parked): (Vec<&String>, Vec<&String>) = holders.iter().partition(|h| joined == format!("container:{h}"));
        // The next one waits on the park network (made new) or on none (a retired
        // container's, recycled): no name or address of the app leads to it.
        let park = |h: &&String| inspect(h, "{{.State.Status}} {{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{end}}");
        match (taken.len(), parked.as_slice()) {
            (1, [next]) if ["running berth-park", "running"].contains(&park(next).as_str()) => Ok(()),
            _ => Err(format!("{web} joined {joined}; holders {holders:?}, the others: {:?}", parked.iter().map(park).collect::<Vec<_>>())),
        }
    };
    crate::harness::poll(std::time::Duration::from_secs(20), "one web container in its holder, and the next one's holder parked", settled);
    d.ssh("apps:destroy steady --force").ok();
    assert!(listed("label=berth.holder").is_empty(), "a holder outlived its app");
}

/// A server that binds without SO_REUSEADDR and closes each connection itself, so its
/// network namespace keeps the port's TIME_WAIT sockets for a minute after each request.
const NO_REUSE_SERVER: &str = r#"import os, socket
s = socket.socket()
s.bind(("", int(os.environ["PORT"])))
s.listen(64)
body = open("/version.txt", "rb").read()
while True:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    c.close()
"#;

#[test]
fn a_retired_web_containers_namespace_serves_the_next_release_even_with_its_ports_sockets_lingering() {
    let d = Daemon::start();
    crate::harness::stack_image(&d);
    d.ssh("apps:create lingering").ok();
    d.ssh("domains:add lingering lingering.example.com").ok();
    let repo = AppRepo::new(&d, "lingering");
    // A build that takes `slow` seconds more (a step no earlier run can have cached).
    let nonce = d.root().display().to_string();
    let push_slowly = |text: &str, slow: u32| {
        repo.write("server.py", NO_REUSE_SERVER).write("version.txt", text);
        let wait = if slow > 0 { format!("RUN echo {nonce} && sleep {slow}\n") } else { String::new() };
        repo.write("Dockerfile", &format!("FROM berth/stack:bookworm\nCOPY server.py version.txt /\n{wait}CMD [\"python3\", \"/server.py\"]\n")).commit(text);
        let out = repo.push(&d, "main");
        assert_eq!(out.code, 0, "push of {text} failed: {out:#?}");
        for _ in 0..5 {
            assert_eq!(get(&d, "lingering.example.com"), (200, text.to_string()));
        }
    };
    let push = |text: &str| push_slowly(text, 0);
    let root = format!("label=berth.root={}", d.root().display());
    // The holder of the one web container, once the old one has retired.
    let web = || {
        let id = crate::harness::poll(std::time::Duration::from_secs(20), "one web container", || {
            let ids = docker(&["ps", "-aq", "--no-trunc", "--filter", &root, "--filter", "label=berth.app=lingering", "--filter", "label=berth.process=web"]);
            match ids.lines().collect::<Vec<_>>()[..] {
                [id] => Ok(id.to_string()),
                _ => Err(ids.clone()),
            }
        });
        let mode = docker(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", &id]);
        mode.trim().strip_prefix("container:").unwrap_or_else(|| panic!("a web container in a holder's namespace: {mode}")).to_string()
    };
    push("lingering v1");
    let first = web();
    push("lingering v2");
    assert_ne!(web(), first, "v2 ran beside v1, in a namespace of its own");
    // v1 retired: its holder is kept for the slot's next container, on no network.
    crate::harness::poll(std::time::Duration::from_secs(20), "v1's holder kept, off every network", || {
        match docker(&["inspect", "-f", "{{.State.Status}}|{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{end}}", &first]).trim() {
            "running|" => Ok(()),
            other => Err(other.to_string()),
        }
    });
    // v1 served requests in it within the minute: its port's TIME_WAIT sockets would keep a
    // server without SO_REUSEADDR from binding.
    push("lingering v3");
    assert_eq!(web(), first, "v3 took v1's namespace again");
    // A push while the last rollout's old container still retires: its build does not make
    // a namespace (the engine would start and stop one more container); the retired one's
    // is kept for it. v4 retires v3 from v1's namespace; v5 comes at once and takes it.
    push("lingering v4");
    push_slowly("lingering v5", 3);
    assert_eq!(web(), first, "v5 took the namespace v3 retired from, while its build ran");
    d.ssh("apps:destroy lingering --force").ok();
    assert!(docker(&["ps", "-aq", "--filter", &root, "--filter", "label=berth.holder"]).trim().is_empty(), "a holder outlived its app");
}

/// What a build's RUN step says of its network: the namespace's host name and address, and
/// how many lines of its /etc/hosts name forged.example.
const SAY_NETWORK: &str = "RUN echo \"netns $(hostname) $(ip -o -4 addr show eth0 | awk '{print $4}') forged $(grep -c forged.example /etc/hosts)\"";

#[test]
fn an_apps_builds_run_in_one_namespace_kept_for_them_on_the_build_network_that_goes_with_the_app() {
    let d = Daemon::start();
    // The holder sleeps in the stack image.
    crate::harness::stack_image(&d);
    d.ssh("apps:create nsbuild").ok();
    let repo = AppRepo::new(&d, "nsbuild");
    let root = format!("label=berth.root={}", d.root().display());
    let holders = || docker(&["ps", "-aq", "--no-trunc", "--filter", &root, "--filter", "label=berth.app=nsbuild", "--filter", "label=berth.build-holder"]);
    // Each push changes `stamp` (never built before: the root's path is in it), so its RUN
    // steps run again (two per build).
    let nonce = d.root().display().to_string();
    let build = |stamp: &str, between: &str| -> Vec<String> {
        repo.write("stamp", &format!("{nonce} {stamp}"));
        repo.write("Dockerfile", &format!("FROM berth-test/busybox\nCOPY stamp /stamp\n{SAY_NETWORK}\n{between}\n{SAY_NETWORK}\nRUN mkdir /www && echo ok > /www/index.html\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n")).commit(stamp);
        let out = repo.push(&d, "main");
        assert_eq!(out.code, 0, "push of {stamp} failed: {out:#?}");
        out.stderr.lines().filter(|l| !l.contains("RUN echo")).filter_map(|l| l.split_once("netns ").map(|(_, said)| said.trim().to_string())).collect()
    };
    let first = build("one", "");
    let [a, b] = first.as_slice() else { panic!("two RUN steps said their network: {first:?}") };
    assert_eq!(a, b, "a build's RUN steps ran in one namespace");
    assert!(a.ends_with(" forged 0"), "{a}");
    let second = build("two", "");
    assert_eq!(second, first, "the next build ran in the same namespace");
    // A build that changes a file the namespace shares (here /etc/hosts, to point a name
    // elsewhere) changes it for itself only: the next build runs in a new namespace.
    let forging = build("three", "RUN echo '10.9.9.9 forged.example' >> /etc/hosts");
    assert_eq!(forging, [a.clone(), a.replace(" forged 0", " forged 1")], "the forging build, in the kept namespace");
    let next = build("four", "");
    let [c, d2] = next.as_slice() else { panic!("two RUN steps said their network: {next:?}") };
    assert_eq!(c, d2, "a build's RUN steps ran in one namespace");
    assert!(c.ends_with(" forged 0"), "the build after a forging one sees the engine's own hosts file: {c}");
    assert_ne!(c.split(' ').next(), a.split(' ').next(), "the forged namespace went");
    // It is the app's build holder, running, on the build network (the address the steps
    // saw), nowhere else, named for no app (other builds can look names up).
    let listed = holders();
    let [holder] = listed.lines().collect::<Vec<_>>()[..] else { panic!("one build holder: {listed}") };
    let [host, address, ..] = c.split(' ').collect::<Vec<_>>()[..] else { panic!("{c}") };
    assert!(holder.starts_with(host), "the steps ran in the holder's namespace ({host}), not {holder}'s");
    let state = docker(&["inspect", "-f", "{{.State.Status}}|{{range $n, $e := .NetworkSettings.Networks}}{{$n}} {{$e.IPAddress}}/{{$e.IPPrefixLen}};{{end}}|{{.Name}}", holder]);
    let [status, networks, name] = state.trim().split('|').collect::<Vec<_>>()[..] else { panic!("{state}") };
    assert_eq!((status, networks), ("running", format!("berth-build {address};").as_str()));
    assert!(!name.contains("nsbuild"), "the holder's name says its app: {name}");
    // A build of another app gets a namespace of its own.
    d.ssh("apps:create nsother").ok();
    let other = AppRepo::new(&d, "nsother");
    other.write("stamp", &nonce).write("Dockerfile", &format!("FROM berth-test/busybox\nCOPY stamp /stamp\n{SAY_NETWORK}\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /\"]\n")).commit("x");
    let out = other.push(&d, "main");
    assert_eq!(out.code, 0, "push of nsother failed: {out:#?}");
    assert!(out.stderr.contains("netns ") && !out.stderr.contains(&format!("netns {host} ")), "nsother built in nsbuild's namespace: {}", out.stderr);
    // It goes with its app, destroyed or renamed; the other app's stays.
    d.ssh("apps:destroy nsbuild --force").ok();
    assert!(holders().trim().is_empty(), "a build holder outlived its app");
    let others = || docker(&["ps", "-aq", "--filter", &root, "--filter", "label=berth.app=nsother", "--filter", "label=berth.build-holder"]);
    assert_eq!(others().lines().count(), 1, "nsother's build holder");
    d.ssh("apps:destroy nsother --force").ok();
    assert!(others().trim().is_empty(), "a build holder outlived its app");
    // A failed build keeps it too; a rename (of an app never deployed) takes it away, so an
    // app made later under the old name never builds in it.
    d.ssh("apps:create nsfail").ok();
    let failing = AppRepo::new(&d, "nsfail");
    failing.write("stamp", &nonce).write("Dockerfile", &format!("FROM berth-test/busybox\nCOPY stamp /stamp\n{SAY_NETWORK}\nRUN exit 3\n")).commit("fails");
    assert_ne!(failing.push(&d, "main").code, 0, "a failing build was refused");
    let failed = || docker(&["ps", "-aq", "--filter", &root, "--filter", "label=berth.app=nsfail", "--filter", "label=berth.build-holder"]);
    assert_eq!(failed().lines().count(), 1, "the failed build's holder, kept");
    d.ssh("apps:rename nsfail nsrenamed").ok();
    assert!(failed().trim().is_empty(), "a build holder outlived its app's name");
    d.ssh("apps:destroy nsrenamed --force").ok();
}

#[test]
fn a_broken_dockerfile_is_rejected_and_the_old_version_keeps_serving() {
    let d = Daemon::start();
    d.ssh("apps:create broken").ok();
    d.ssh("domains:add broken broken.example.com").ok();
    let repo = AppRepo::new(&d, "broken");
    deploy(&d, &repo, "broken v1", 0);
    let good = server_head(&d, "broken");

    repo.write("Dockerfile", "FROM berth-test/busybox\nRUN echo compiling && exit 3\n").commit("broken build");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("compiling"), "build output is not shown: {}", out.stderr);
    assert!(out.stderr.contains("build failed"), "{}", out.stderr);
    assert!(out.stderr.contains("pre-receive hook declined"), "{}", out.stderr);
    assert_eq!(server_head(&d, "broken"), good, "the branch moved to a commit that failed");
    assert_eq!(get(&d, "broken.example.com"), (200, "broken v1".into()));

    repo.write("Dockerfile", "FROM does-not-exist/anywhere\n").commit("missing base");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert_eq!(get(&d, "broken.example.com"), (200, "broken v1".into()));

    // No Dockerfile at all, with the Dockerfile builder chosen.
    d.ssh("builder:set broken dockerfile").ok();
    repo.git(&["rm", "-q", "Dockerfile"]).ok();
    repo.commit("no dockerfile");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("No Dockerfile"), "{}", out.stderr);
    assert_eq!(get(&d, "broken.example.com"), (200, "broken v1".into()));
}

#[test]
fn an_app_that_never_becomes_ready_is_rejected_with_its_logs() {
    let d = Daemon::start();
    d.ssh("apps:create never").ok();
    d.ssh("domains:add never never.example.com").ok();
    let repo = AppRepo::new(&d, "never");
    deploy(&d, &repo, "never v1", 0);
    d.ssh("checks:set never timeout 3").ok();

    // Never listens.
    repo.write("Dockerfile", "FROM berth-test/busybox\nCMD [\"sh\", \"-c\", \"echo booting forever; sleep 1000\"]\n").commit("hangs");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("did not become ready"), "{}", out.stderr);
    assert!(out.stderr.contains("did not pass within 3s"), "{}", out.stderr);
    assert!(out.stderr.contains("booting forever"), "the container's output is not shown: {}", out.stderr);
    assert!(out.stderr.contains("v1 keeps serving"), "{}", out.stderr);
    assert_eq!(get(&d, "never.example.com"), (200, "never v1".into()));

    // Crashes at once: fails without waiting for the timeout.
    d.ssh("checks:set never timeout 600").ok();
    repo.write("Dockerfile", "FROM berth-test/busybox\nCMD [\"sh\", \"-c\", \"echo no config; exit 4\"]\n").commit("crashes");
    let started = std::time::Instant::now();
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("exited with code 4"), "{}", out.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(120));

    // An app.json check whose content never appears.
    repo.write("Dockerfile", &web_dockerfile("never v2", 0));
    repo.write("app.json", r#"{"healthchecks": {"web": [{"type": "startup", "name": "ready", "path": "/", "content": "READY", "attempts": 2}]}}"#);
    repo.commit("wrong content");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("without \"READY\" in the body"), "{}", out.stderr);
    assert_eq!(get(&d, "never.example.com"), (200, "never v1".into()));

    // Still there: the running container of v1 and nothing else.
    let report: serde_json::Value = serde_json::from_str(&d.ssh("ps:report never --format json").ok().stdout).unwrap();
    assert_eq!(report["release"], "v1");
    assert_eq!(report["running"], 1, "{report}");
}

#[test]
fn a_push_to_another_branch_deploys_nothing() {
    let d = Daemon::start();
    d.ssh("apps:create branches").ok();
    d.ssh("domains:add branches branches.example.com").ok();
    let repo = AppRepo::new(&d, "branches");
    deploy(&d, &repo, "branches v1", 0);
    repo.git(&["checkout", "-q", "-b", "feature"]).ok();
    repo.write("Dockerfile", &web_dockerfile("branches feature", 0)).commit("feature");
    let out = repo.push(&d, "feature");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("Pushed feature: not deployed"), "{}", out.stderr);
    assert!(!out.stderr.contains("Building"), "{}", out.stderr);
    assert_eq!(get(&d, "branches.example.com"), (200, "branches v1".into()));

    // Unless it is made the deploy branch.
    d.ssh("git:set branches deploy-branch feature").ok();
    d.ssh("git:set branches deploy-branch 'bad..name'").refused("Invalid branch name");
    repo.write("Dockerfile", &web_dockerfile("branches feature 2", 0)).commit("feature 2");
    let out = repo.push(&d, "feature");
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(get(&d, "branches.example.com"), (200, "branches feature 2".into()));
}

#[test]
fn two_pushes_at_once_both_end_cleanly_and_the_branch_matches_what_serves() {
    let d = Daemon::start();
    d.ssh("apps:create race").ok();
    d.ssh("domains:add race race.example.com").ok();
    let first = AppRepo::new(&d, "race");
    deploy(&d, &first, "race v1", 0);

    // A second clone based on the same commit.
    let second_dir = d.dir.path().join("src-race-2");
    let status = std::process::Command::new("cp").arg("-a").arg(&first.dir).arg(&second_dir).status().unwrap();
    assert!(status.success());
    let second = AppRepo { dir: second_dir };
    first.write("Dockerfile", &web_dockerfile("race from one", 1)).commit("one");
    second.write("Dockerfile", &web_dockerfile("race from two", 1)).commit("two");

    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| first.push(&d, "main"));
        let b = s.spawn(|| second.push(&d, "main"));
        (a.join().unwrap(), b.join().unwrap())
    });
    let succeeded = [&a, &b].iter().filter(|o| o.code == 0).count();
    assert!(succeeded >= 1, "neither push landed: {a:#?} {b:#?}");
    for out in [&a, &b] {
        if out.code != 0 {
            assert!(
                out.stderr.contains("moved while this push waited") || out.stderr.contains("fetch first") || out.stderr.contains("failed to update ref") || out.stderr.contains("cannot lock ref"),
                "a rejected push must say why: {out:#?}"
            );
        }
    }
    // What serves is what the branch says.
    let head = server_head(&d, "race");
    let served = get(&d, "race.example.com").1;
    let winner = if head == first.git(&["rev-parse", "HEAD"]).stdout.trim() { "race from one" } else { "race from two" };
    assert_eq!(served, winner);
}

#[test]
fn config_changes_restart_the_app_with_the_new_env() {
    let d = Daemon::start();
    d.ssh("apps:create greeter").ok();
    d.ssh("domains:add greeter greeter.example.com").ok();
    let repo = AppRepo::new(&d, "greeter");
    repo.write(
        "Dockerfile",
        "FROM berth-test/busybox\nCMD [\"sh\", \"-c\", \"mkdir -p /www && echo \\\"$GREETING\\\" > /www/index.html && exec httpd -f -p $PORT -h /www\"]\n",
    )
    .commit("greeter");
    d.ssh("config:set greeter GREETING=hello").ok();
    assert_eq!(repo.push(&d, "main").code, 0);
    assert_eq!(get(&d, "greeter.example.com"), (200, "hello".into()));

    let out = d.ssh("config:set greeter GREETING=hello world");
    out.ok();
    assert!(out.stdout.contains("Restarting greeter"), "{}", out.stdout);
    assert_eq!(get(&d, "greeter.example.com"), (200, "hello world".into()));

    d.ssh("config:set greeter GREETING=quiet --no-restart").ok();
    assert_eq!(get(&d, "greeter.example.com"), (200, "hello world".into()));
    d.ssh("ps:rebuild greeter").ok();
    assert_eq!(get(&d, "greeter.example.com"), (200, "quiet".into()));

    // Locked apps refuse deploys; the running release stays.
    d.ssh("apps:lock greeter").ok();
    d.ssh("ps:restart greeter").refused("locked");
    d.ssh("apps:unlock greeter").ok();
    d.ssh("apps:destroy greeter --force").ok();
    assert_eq!(get(&d, "greeter.example.com").0, 404);
}

#[test]
fn apps_keep_serving_across_daemon_restarts_and_crashes() {
    let mut d = Daemon::start();
    d.ssh("apps:create survivor").ok();
    d.ssh("domains:add survivor survivor.example.com").ok();
    let repo = AppRepo::new(&d, "survivor");
    deploy(&d, &repo, "survivor v1", 0);

    d.stop();
    // nginx and the containers do not depend on the daemon.
    assert_eq!(get(&d, "survivor.example.com"), (200, "survivor v1".into()));
    d.boot();
    assert_eq!(get(&d, "survivor.example.com"), (200, "survivor v1".into()));

    d.kill();
    d.boot();
    let remote = format!("ssh://berth@127.0.0.1:{}/survivor", d.port);
    repo.git(&["remote", "set-url", "deploy", &remote]).ok();
    deploy(&d, &repo, "survivor v2", 0);
    assert_eq!(get(&d, "survivor.example.com"), (200, "survivor v2".into()));
}

#[test]
fn rollback_serves_an_earlier_release_without_a_build() {
    let d = Daemon::start();
    d.ssh("apps:create rewind").ok();
    d.ssh("domains:add rewind rewind.example.com").ok();
    let repo = AppRepo::new(&d, "rewind");
    deploy(&d, &repo, "rewind v1", 0);
    deploy(&d, &repo, "rewind v2", 0);
    d.ssh("config:set rewind AFTER=v2").ok(); // v3: a config change
    assert_eq!(get(&d, "rewind.example.com"), (200, "rewind v2".into()));

    let out = d.ssh("releases:rollback rewind v1");
    out.ok();
    assert!(out.stdout.contains("without a build") && !out.stdout.contains("Building"), "{}", out.stdout);
    assert_eq!(get(&d, "rewind.example.com"), (200, "rewind v1".into()));
    // v1's config came back with its image.
    d.ssh("config:get rewind AFTER").refused("not set");

    let list = d.ssh("releases rewind").ok().stdout.clone();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines[0], "=====> rewind releases");
    // Column headers, then the releases, newest first.
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["Rel", "Created", "(UTC)", "Commit", "Image", "Status", "By", "Cause"], "{list}");
    assert!(lines[2].contains("v4") && lines[2].contains("active") && lines[2].contains("rollback to v1"), "{list}");
    assert!(lines[5].contains("v1") && lines[5].contains("superseded") && lines[5].contains("git push"), "{list}");

    // No version: back to the one before.
    d.ssh("releases:rollback rewind").ok();
    assert_eq!(d.ssh("config:get rewind AFTER").ok().stdout, "v2\n");
    assert_eq!(get(&d, "rewind.example.com"), (200, "rewind v2".into()));
    d.ssh("releases:rollback rewind v99").refused("has no release v99");
    d.ssh("releases:rollback rewind vx").refused("Invalid release");
    let json: serde_json::Value = serde_json::from_str(&d.ssh("releases rewind --format json").ok().stdout).unwrap();
    assert_eq!(json[0]["version"], 5);
    assert_eq!(json[0]["cause"], "rollback to v3");
}

#[test]
fn logs_show_the_apps_output_prefixed_by_process_and_follow_it() {
    let d = Daemon::start();
    d.ssh("apps:create chatty").ok();
    d.ssh("domains:add chatty chatty.example.com").ok();
    let repo = AppRepo::new(&d, "chatty");
    repo.write(
        "Dockerfile",
        "FROM berth-test/busybox\nRUN mkdir /www && echo chatty > /www/index.html\nCMD [\"sh\", \"-c\", \"echo started web; exec httpd -f -vv -p $PORT -h /www\"]\n",
    )
    .commit("chatty");
    assert_eq!(repo.push(&d, "main").code, 0);

    let logs = d.ssh("logs chatty").ok().stdout.clone();
    assert!(logs.lines().any(|l| l.ends_with("chatty[web.1]: started web") && l.starts_with("20")), "{logs}");
    assert_eq!(d.ssh("logs chatty -n 1").ok().stdout.lines().count(), 1);
    d.ssh("logs chatty -p worker").refused("has no worker processes");
    d.ssh("logs ghost").refused("App ghost does not exist");

    // -t follows: a request made after it started shows up.
    let mut cmd = std::process::Command::new("ssh");
    cmd.arg("-i").arg(&d.admin.private).args(crate::harness::ssh_options(d.port));
    cmd.arg("-o").arg("UserKnownHostsFile=/dev/null").arg("berth@127.0.0.1").arg("logs chatty -t -n 0");
    let mut follower = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::null()).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(800));
    let marker = "/followed-request-marker";
    let _ = crate::harness::http_get(d.http_port, "chatty.example.com", marker);
    std::thread::sleep(std::time::Duration::from_millis(800));
    follower.kill().unwrap();
    let output = follower.wait_with_output().unwrap();
    let seen = String::from_utf8_lossy(&output.stdout);
    assert!(seen.contains(marker) && seen.contains("chatty[web.1]:"), "follow missed the request: {seen}");
}

#[test]
fn run_executes_a_one_off_command_with_the_apps_env_and_returns_its_exit_code() {
    let d = Daemon::start();
    d.ssh("apps:create oneoff").ok();
    let repo = AppRepo::new(&d, "oneoff");
    deploy(&d, &repo, "oneoff v1", 0);
    d.ssh("config:set oneoff SECRET=shh --no-restart").ok();

    let out = d.ssh("run oneoff sh -c 'echo out $SECRET; echo err >&2; exit 3'");
    assert_eq!(out.code, 3, "{out:#?}");
    assert_eq!(out.stdout, "out shh\n");
    assert_eq!(out.stderr, "err\n");
    assert_eq!(d.ssh("run oneoff cat /www/index.html").ok().stdout, "oneoff v1\n");
    // The same through the local CLI; and no one-off container is left behind.
    assert_eq!(d.local(&["run", "oneoff", "echo", "-n", "local"], b"").ok().stdout, "local");
    let left = d.container_ids(true, &["berth.process=run"]);
    assert!(left.is_empty(), "one-off containers left: {left:?}");
    d.ssh("run ghost true").refused("App ghost does not exist");
    d.ssh("apps:create fresh").ok();
    d.ssh("run fresh true").refused("has not been deployed yet");
}

#[test]
fn old_release_images_are_pruned_beyond_the_kept_number() {
    // What an earlier run left (images are the engine's, not a root's) is not this run's.
    let earlier: Vec<String> = docker(&["images", "-q", "berth/pruned"]).split_whitespace().map(String::from).collect();
    if !earlier.is_empty() {
        let _ = Command::new("docker").args(["rmi", "-f"]).args(&earlier).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
    let d = Daemon::start();
    d.ssh("apps:create pruned").ok();
    d.ssh("releases:set pruned keep 2").ok();
    d.ssh("releases:set pruned keep 0").refused("a number from 1 to 100");
    let repo = AppRepo::new(&d, "pruned");
    d.ssh("checks:set pruned wait-to-retire 0").ok();
    for v in 1..=4 {
        deploy(&d, &repo, &format!("pruned v{v}"), 0);
    }
    // Pruning follows the old containers' retirement, in the background.
    let tags = || {
        let mut tags: Vec<String> = docker(&["image", "ls", "--format", "{{.Tag}}", "berth/pruned"]).lines().map(String::from).collect();
        tags.sort();
        tags
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while tags() != ["v3", "v4"] && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(tags(), vec!["v3", "v4"]);
    d.ssh("releases:rollback pruned v1").refused("no longer kept");
    d.ssh("releases:rollback pruned v3").ok();

    // A tag of the next version that this root did not make is another's on the engine
    // (several roots can share one, with apps of the same name): the build takes the name,
    // and leaves the image to its owner. What a crash left between a build and its release
    // is this root's and goes (crash.rs, crash point `built`).
    let stale = Command::new("sh")
        .args(["-c", "printf 'FROM berth-test/busybox\\nLABEL left.by=another\\n' | docker build -q -t berth/pruned:v6 -"])
        .output()
        .unwrap();
    assert!(stale.status.success(), "{}", String::from_utf8_lossy(&stale.stderr));
    let stale = String::from_utf8_lossy(&stale.stdout).trim().to_string();
    deploy(&d, &repo, "pruned v6", 0);
    let kept = crate::harness::image_exists(&stale);
    let _ = Command::new("docker").args(["rmi", &stale]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(kept, "the image another root tagged berth/pruned:v6 was removed");
}
