//! One client, input or app must not hang a deploy or hurt another app.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;

#[test]
fn a_client_killed_mid_push_does_not_hold_the_deploy_lock() {
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "dropped");
    // Lots of build output (more than any pipe holds), then a pause, then the rest.
    // This run's root in the step, so it runs rather than come from an earlier run's cache.
    let noisy = &format!("FROM berth-test/busybox\nRUN echo {} >/dev/null; i=0; while [ $i -lt 40000 ]; do echo \"build output line $i\"; i=$((i+1)); done; sleep 2\nRUN mkdir /www && echo dropped > /www/index.html\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n", d.root().display());
    repo.write("Dockerfile", noisy).commit("noisy");

    // git push in its own process group, so that git and its ssh die together.
    let ssh = git_ssh(&d.admin);
    let mut push = Command::new("git")
        .current_dir(&repo.dir)
        .args(["push", "deploy", "main"])
        .env("GIT_SSH_COMMAND", &ssh)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(push.stderr.take().unwrap()).lines();
    let started = Instant::now();
    while let Some(Ok(line)) = lines.next() {
        if line.contains("build output line") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the build never started");
    }
    // The client vanishes mid-build, without reading the rest of the output.
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(push.id() as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    let _ = push.wait();
    drop(lines);

    // The deploy runs to its end (the killed push still lands) and lets go of the lock: the
    // next push deploys. Started while the first deploy ran, on top of its commit, it waits
    // for it before git shows it the branch, and goes through at once.
    repo.write("Dockerfile", &web_dockerfile("second", 0)).commit("second");
    let next = repo.push(&d, "main");
    assert_eq!(next.code, 0, "{}", next.stderr);
    d.ssh("domains:add dropped dropped.example.com").ok();
    assert_eq!(get(&d, "dropped.example.com"), (200, "second".into()));
}

#[test]
fn build_output_is_cut_to_lines_a_user_can_read_and_bounded_and_the_push_lands() {
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "longline");
    // 6 MB without a newline (more than the local socket's largest frame, 4 MiB), then 20 MB
    // of ordinary lines: a client reading slowly (git behind OpenSSH's non-blocking stderr)
    // would drop some of it.
    // The root's name makes the steps new to the engine's build cache, so they run.
    let dockerfile = format!("FROM berth-test/busybox\nRUN echo {} >/dev/null; head -c 6000000 /dev/zero | tr '\\0' x; echo\nRUN i=0; while [ $i -lt 200000 ]; do echo \"line $i of a chatty build, padded to about a hundred bytes ..........................\"; i=$((i+1)); done\nRUN mkdir /www && echo long > /www/index.html\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n", d.root().display());
    repo.write("Dockerfile", &dockerfile).commit("long line");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{}", &out.stderr[out.stderr.len().saturating_sub(2000)..]);
    let longest = out.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 4096 + 200, "a line of {longest} bytes reached the client");
    let cut = out.stderr.lines().find(|l| l.contains("more bytes of this line cut]"));
    let cut = cut.unwrap_or_else(|| panic!("the cut is not marked: {}", &out.stderr[..out.stderr.len().min(3000)]));
    assert!(cut.contains(&format!("[{} more bytes of this line cut]", 6_000_000 - 4096)), "{cut}");
    // Berth sends at most 1 MiB of it; git adds `remote: ` and padding to each line.
    assert!(out.stderr.len() < 1_400_000, "{} bytes of output reached the client", out.stderr.len());
    assert!(out.stderr.contains("the rest of it is not shown"), "the bound is said");
    // What comes after the bound still reaches the client: the phases and the verdict.
    assert!(out.stderr.contains("is live"), "{}", &out.stderr[out.stderr.len().saturating_sub(2000)..]);
    assert_eq!(d.ssh("releases longline --format json").stdout.matches("\"active\"").count(), 1);
    d.ssh("domains:add longline longline.example.com").ok();
    assert_eq!(get(&d, "longline.example.com"), (200, "long".into()));
}

#[test]
fn idle_unauthenticated_sockets_are_bounded_and_closed_and_users_still_get_in() {
    use std::io::Read;
    let d = Daemon::start();
    let pid = std::fs::read_to_string(d.root().join("berth.pid")).unwrap().trim().to_string();
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let before = fds();
    // 400 connections that never say anything (each also costs this test a descriptor).
    let idle: Vec<std::net::TcpStream> = (0..400).map(|_| std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(fds() < before + 200, "the daemon holds {} descriptors for idle sockets", fds() - before);
    // A real user gets in meanwhile.
    assert!(d.ssh("apps:list").ok().stderr.contains("You haven't deployed any applications yet"));
    // And the idle ones are closed once the authentication deadline has passed.
    std::thread::sleep(Duration::from_secs(11));
    let mut open = 0;
    for mut socket in idle {
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 256];
        // The server's version line may be there; then EOF.
        loop {
            match socket.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(_) => {
                    open += 1;
                    break;
                }
            }
        }
    }
    assert_eq!(open, 0, "{open} idle connections are still open after the deadline");

    // Connections that send their version line, then nothing: the session has started on
    // the server, and goes all the same.
    use std::io::Write;
    let banner_only: Vec<std::net::TcpStream> = (0..300)
        .map(|_| {
            let mut socket = std::net::TcpStream::connect(("127.0.0.1", d.port)).unwrap();
            socket.write_all(b"SSH-2.0-flood\r\n").unwrap();
            socket
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    assert!(d.ssh("apps:list").ok().stderr.contains("You haven't deployed any applications yet"));
    std::thread::sleep(Duration::from_secs(11));
    let mut open = 0;
    for mut socket in banner_only {
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut buf = [0u8; 4096];
        loop {
            match socket.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(_) => {
                    open += 1;
                    break;
                }
            }
        }
    }
    assert_eq!(open, 0, "{open} connections that sent only their version line are still open after the deadline");
    assert!(fds() < before + 20, "the daemon still holds {} descriptors after the flood", fds() - before);
}

#[test]
fn a_removed_key_loses_its_rights_on_a_connection_already_open() {
    let d = Daemon::start();
    let temp = keygen(d.dir.path(), "temp");
    d.local(&["ssh-keys:add", "temp"], temp.public.as_bytes()).ok();
    let control = d.dir.path().join("control");
    let control_path = format!("ControlPath={}", control.display());
    // One connection, kept open by a master; later commands go through it.
    let mut master = d.ssh_command(&temp, &["-M", "-N", "-o", &control_path], "").spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !control.exists() {
        assert!(Instant::now() < deadline, "the ssh master did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let through_master = |command: &str| run_command(d.ssh_command(&temp, &["-o", &control_path], command), b"");
    through_master("apps:create before").ok();
    d.ssh("ssh-keys:remove temp").ok();
    through_master("apps:create after").refused("Permission denied: key temp was removed");
    d.ssh("apps:exists after").refused("does not exist");
    let _ = master.kill();
    let _ = master.wait();
}

#[test]
fn oversized_command_lines_and_config_values_are_refused_with_one_short_line() {
    let d = Daemon::start();
    d.ssh("apps:create big").ok();
    let before = d.app_toml("big");
    let out = d.ssh(&"x".repeat(100_000));
    out.refused("is not a berth command");
    assert!(out.stderr.len() < 200, "{} bytes echoed", out.stderr.len());
    // One argument of a process is at most 128 KiB (for ssh too): larger values are sent as
    // two arguments, which ssh joins with a space.
    let two_args = |first: String, second: String| {
        let mut cmd = d.ssh_command(&d.admin, &[], &first);
        cmd.arg(second);
        run_command(cmd, b"")
    };
    two_args(format!("config:set big A={}", "y".repeat(100 * 1024)), format!("B={}", "y".repeat(100 * 1024)))
        .refused("The command line is 200 KiB: berth takes at most 192 KiB");
    two_args(format!("config:set big 'A={}", "y".repeat(100 * 1024)), format!("{}'", "y".repeat(30 * 1024)))
        .refused("a container's environment takes at most 128 KiB per variable");
    for i in 0..8 {
        d.ssh(&format!("config:set big --no-restart V{i}={}", "z".repeat(120 * 1024))).ok();
    }
    d.ssh(&format!("config:set big --no-restart V9={}", "z".repeat(120 * 1024))).refused("an app's environment takes at most 1 MiB in all");
    assert!(!d.app_toml("big").contains("V9"));
    d.ssh("config:unset big --no-restart V0 V1 V2 V3 V4 V5 V6 V7").ok();
    assert_eq!(d.app_toml("big"), before);
}

#[test]
fn a_config_change_the_app_cannot_start_with_is_undone() {
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "picky");
    let dockerfile = "FROM berth-test/busybox\nRUN mkdir /www && echo picky > /www/index.html\nCMD [\"sh\", \"-c\", \"[ -z \\\"$CRASH\\\" ] || exit 3; exec httpd -f -p $PORT -h /www\"]\n";
    repo.write("Dockerfile", dockerfile).commit("v1");
    repo.push(&d, "main").ok();
    d.ssh("domains:add picky picky.example.com").ok();
    d.ssh("checks:set picky attempts 1").ok();
    let out = d.ssh("config:set picky CRASH=1 KEEP=no");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("The config change was undone"), "{out:#?}");
    assert!(!d.app_toml("picky").contains("CRASH"), "{}", d.app_toml("picky"));
    assert_eq!(get(&d, "picky.example.com"), (200, "picky".into()));
    // The next change and the next push work.
    d.ssh("config:set picky GOOD=1").ok();
    repo.commit("v2");
    repo.push(&d, "main").ok();
    assert_eq!(d.ssh("config:get picky GOOD").ok().stdout.trim(), "1");
}

#[test]
fn a_build_that_runs_too_long_is_stopped_and_the_old_release_keeps_serving() {
    let d = Daemon::start();
    // Builds join a namespace kept for them (a holder from the stack image).
    crate::harness::stack_image(&d);
    let repo = AppRepo::new(&d, "slow");
    repo.write("Dockerfile", &web_dockerfile("slow v1", 0)).commit("v1");
    repo.push(&d, "main").ok();
    d.ssh("domains:add slow slow.example.com").ok();
    // A limit of 3 s (berth.toml, read at each deploy), then a build that would take a minute.
    d.setting("build_timeout = 3".into());
    repo.write("Dockerfile", "FROM berth-test/busybox\nRUN sleep 60\n").commit("slow build");
    let started = Instant::now();
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("the build was stopped after 3s (build_timeout in berth.toml)"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(40), "the push took {:?}", started.elapsed());
    assert_eq!(get(&d, "slow.example.com"), (200, "slow v1".into()));
    // The stopped step may still run in the namespace the build joined: it is never kept
    // for the next build.
    let root = format!("label=berth.root={}", d.root().display());
    crate::harness::poll(Duration::from_secs(20), "the stopped build's namespace gone", || {
        let left = crate::harness::docker(&["ps", "-aq", "--filter", &root, "--filter", "label=berth.app=slow", "--filter", "label=berth.build-holder"]);
        if left.trim().is_empty() { Ok(()) } else { Err(left) }
    });

    // The release phase holds the deploy lock too: a release command that would take a
    // minute is stopped at `release_timeout`, its container goes, and the next push deploys.
    d.setting("release_timeout = 3".into());
    repo.write("Dockerfile", &web_dockerfile("slow v2", 0))
        .write("Procfile", "web: sh -c 'exec httpd -f -p $PORT -h /www'\nrelease: sleep 60\n")
        .commit("slow release");
    let started = Instant::now();
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("the release command was stopped after 3s (release_timeout in berth.toml)"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(40), "the push took {:?}", started.elapsed());
    assert_eq!(get(&d, "slow.example.com"), (200, "slow v1".into()));
    assert!(d.container_ids(true, &["berth.app=slow", "berth.one-off=release"]).is_empty());
    repo.write("Procfile", "web: sh -c 'exec httpd -f -p $PORT -h /www'\nrelease: sh -c 'exit 0'\n").commit("quick release");
    repo.push(&d, "main").ok();
    assert_eq!(get(&d, "slow.example.com"), (200, "slow v2".into()));
}

#[test]
fn a_dockerfile_cannot_build_from_another_apps_image() {
    let d = Daemon::start();
    let victim = AppRepo::new(&d, "victim");
    victim.write("Dockerfile", &web_dockerfile("secret", 0)).commit("v1");
    victim.push(&d, "main").ok();
    // A key that may manage only its own app.
    let mallory = keygen(d.dir.path(), "mallory");
    d.local(&["ssh-keys:add", "mallory", "--app", "thief"], mallory.public.as_bytes()).ok();
    d.ssh("apps:create thief").ok();
    let thief = AppRepo::new(&d, "thief");
    for dockerfile in [
        "FROM berth/victim:v1\n",
        "ARG B=berth/victim:v1\nFROM ${B}\n",
        "FROM berth-test/busybox\nCOPY --from=docker.io/berth/victim:v1 /www /www\n",
        "# escape=`\nFROM `\n  berth/victim:v1\n",
        "FROM berth-test/busybox\nONBUILD COPY --from=berth/victim:v1 /www /www\n",
        // Docker unquotes and unescapes words before it names an image.
        "FROM \"berth/victim:v1\"\n",
        "FROM b\\erth/victim:v1\n",
        "ARG B='berth/victim:v1'\nFROM $B\n",
        "FROM berth-test/busybox\nCOPY --from=\"berth/victim:v1\" /www /www\n",
    ] {
        thief.write("Dockerfile", dockerfile).commit("steal");
        let out = thief.push_as(&mallory, &["main"]);
        assert_ne!(out.code, 0, "{dockerfile}");
        assert!(out.stderr.contains("an app may use only public images and its own (berth/thief)"), "{dockerfile}: {}", out.stderr);
    }
    // ADD's URLs are fetched by the engine from the host's own network: not from the host's
    // services (a server only this machine reaches, here nginx's own listener).
    let local = format!("http://127.0.0.1:{}/", d.http_port);
    // The same for the registry git:from-image pulls from (and its answer is never shown).
    d.ssh_as(&mallory, &format!("git:from-image thief 127.0.0.1:{}/x:1", d.http_port), b"").refused("a private address");
    for dockerfile in [
        format!("FROM berth-test/busybox\nADD {local} /stolen\n"),
        "FROM berth-test/busybox\nARG U=http://localhost:22/\nADD \"$U\" /stolen\n".to_string(),
        "FROM berth-test/busybox\nADD git@localhost:repo.git /src\n".to_string(),
    ] {
        thief.write("Dockerfile", &dockerfile).commit("fetch");
        let out = thief.push_as(&mallory, &["main"]);
        assert_ne!(out.code, 0, "{dockerfile}");
        assert!(out.stderr.contains("The Dockerfile fetches"), "{dockerfile}: {}", out.stderr);
    }
    assert!(d.container_ids(true, &["berth.app=thief"]).is_empty());
    assert!(d.holder_ids(&["berth.app=thief"]).is_empty(), "a refused build left the holders made during it");
}

#[test]
fn a_port_nginx_cannot_take_is_undone_and_every_app_keeps_serving() {
    let d = Daemon::start();
    for app in ["ours", "theirs"] {
        let repo = AppRepo::new(&d, app);
        repo.write("Dockerfile", &web_dockerfile(app, 0)).commit("v1");
        repo.push(&d, "main").ok();
        d.ssh(&format!("domains:add {app} {app}.example.com")).ok();
    }
    // A port berth may use (berth.toml), but another server holds it: nginx -t passes, the reload cannot.
    let held = std::net::TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    let port = held.local_addr().unwrap().port();
    d.setting(format!("proxy_ports = [{port}]"));
    let before = d.app_toml("ours");
    let out = d.ssh(&format!("ports:add ours http:{port}:5000"));
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("The port change was undone"), "{out:#?}");
    assert_eq!(d.app_toml("ours"), before);
    // Nothing is left broken: both apps serve, and the next changes and deploys work.
    assert_eq!(get(&d, "ours.example.com"), (200, "ours".into()));
    assert_eq!(get(&d, "theirs.example.com"), (200, "theirs".into()));
    d.ssh("domains:add theirs www.theirs.example.com").ok();
    assert_eq!(get(&d, "www.theirs.example.com"), (200, "theirs".into()));
    d.ssh("ps:restart ours").ok();
    drop(held);
}

#[test]
fn domains_as_long_as_validation_allows_are_served_and_default_names_never_collide() {
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "longname");
    repo.write("Dockerfile", &web_dockerfile("long", 0)).commit("v1");
    repo.push(&d, "main").ok();
    // 253 characters, four labels of 63: the longest name there is.
    let label = "a".repeat(63);
    let longest = format!("{label}.{label}.{label}.{}", "b".repeat(61));
    assert_eq!(longest.len(), 253);
    let many: Vec<String> = (0..40).map(|i| format!("n{i}.{}.{}.example.com", "x".repeat(10 + i), "y".repeat(60 - i))).collect();
    d.ssh(&format!("domains:set longname {longest} {}", many.join(" "))).ok();
    assert_eq!(get(&d, &longest), (200, "long".into()));
    assert_eq!(get(&d, &many[39]), (200, "long".into()));
    d.ssh(&format!("domains:add longname {longest}a")).refused("longer than 253 characters");

    // A default name (APP.<global>) that another app has is not taken by a new app.
    d.ssh("domains:set-global apps.example").ok();
    d.ssh("domains:add longname later.apps.example").ok();
    d.ssh("apps:create later").ok();
    assert!(!d.app_toml("later").contains("later.apps.example"), "{}", d.app_toml("later"));
    assert!(d.app_toml("longname").contains("later.apps.example"));
}

#[test]
fn scoped_keys_cannot_lift_an_admins_lock_or_limits() {
    let d = Daemon::start();
    d.ssh("apps:create mine").ok();
    let user = keygen(d.dir.path(), "user");
    d.local(&["ssh-keys:add", "user", "--app", "mine"], user.public.as_bytes()).ok();
    d.ssh("apps:lock mine").ok();
    d.ssh("resource:limit mine --memory 256m").ok();
    d.ssh("builder:set --global build-memory 300m").ok();
    d.ssh("builder:set --global build-cpu-shares 200").ok();
    // Build limits are an admin's too: an app's value wins over the global one, so a scoped
    // key setting it (0 = no memory limit, or a CPU weight above the apps') would lift them.
    for command in [
        "apps:unlock mine",
        "resource:limit-clear mine",
        "resource:limit mine --memory 8g",
        "builder:set mine build-memory 0",
        "builder:set mine build-memory 2000m",
        "builder:set mine build-cpu-shares 100000",
        "builder:set mine build-cpu-shares",
        // The ACME server is called from this host: a scoped key could probe its ports.
        "letsencrypt:set mine server https://127.0.0.1:22/directory",
        // Reservations take from the other apps; kept build containers fill the disk; the
        // stack image runs every build of the app (another app's image would hand its code over).
        "resource:reserve mine --memory 8g",
        "builder:set mine skip-cleanup true",
        "buildpacks:set-property mine stack berth/other:v1",
        "ps:set --global stop-timeout-seconds 1",
    ] {
        d.ssh_as(&user, command, b"").refused("Permission denied");
    }
    assert!(d.app_toml("mine").contains("locked = true"));
    assert!(d.app_toml("mine").contains("256m"));
    let toml = d.app_toml("mine");
    assert!(!toml.contains("cpu_shares") && !toml.contains("2000m") && !toml.contains("memory = \"0\""), "{toml}");
    // What is the app's own stays the key's: the builder it uses.
    d.ssh_as(&user, "builder:set mine selected dockerfile", b"").ok();
    d.ssh_as(&user, "builder:set mine build-dir web", b"").ok();
    d.ssh_as(&user, "ps:set mine stop-timeout-seconds 5", b"").ok();
    d.ssh_as(&user, "config:set mine --no-restart A=1", b"").ok();
}

#[test]
fn destroy_removes_everything_of_an_app_or_nothing_when_docker_is_away() {
    let mut d = Daemon::start();
    let repo = AppRepo::new(&d, "gone");
    repo.write("Dockerfile", &web_dockerfile("gone", 0)).commit("v1");
    repo.push(&d, "main").ok();
    d.ssh("storage:mount gone data:/data").ok();
    std::fs::write(d.root().join("storage/gone/data/secret"), "s").unwrap();
    let user = keygen(d.dir.path(), "user");
    d.local(&["ssh-keys:add", "user", "--app", "gone"], user.public.as_bytes()).ok();
    for dir in ["apps", "storage", "keys"] {
        let mode = std::fs::metadata(d.root().join(dir)).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o700, "{dir}");
    }

    // Docker unreachable: refused, nothing removed.
    d.stop();
    d.set_env("DOCKER_HOST", Some("unix:///nonexistent/docker.sock"));
    d.boot();
    let out = d.ssh("apps:destroy gone --force");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("nothing was"), "{out:#?}");
    d.ssh("apps:exists gone").ok();
    assert_eq!(d.container_ids(false, &["berth.app=gone"]).len(), 1);

    d.stop();
    d.set_env("DOCKER_HOST", None);
    d.boot();
    let out = d.ssh("apps:destroy gone --force");
    out.ok();
    assert!(out.stdout.contains("Removed key user"), "{out:#?}");
    assert!(d.container_ids(true, &["berth.app=gone"]).is_empty());
    assert!(d.holder_ids(&["berth.app=gone"]).is_empty());
    assert!(!d.root().join("storage/gone").exists());
    // A new app of the same name starts with nothing of the old one's.
    d.ssh("apps:create gone").ok();
    let refused = d.ssh_as(&user, "apps:list", b"");
    assert!(refused.code == 255 && refused.stderr.contains("Permission denied"), "the removed key still gets in: {refused:#?}");
    assert!(!d.root().join("storage/gone").exists());

    // A rename takes the storage and the keys scoped to the app along.
    d.ssh("storage:mount gone data:/data").ok();
    std::fs::write(d.root().join("storage/gone/data/kept"), "k").unwrap();
    d.local(&["ssh-keys:add", "mover", "--app", "gone"], keygen(d.dir.path(), "mover").public.as_bytes()).ok();
    d.ssh("apps:rename gone moved").ok();
    assert_eq!(std::fs::read_to_string(d.root().join("storage/moved/data/kept")).unwrap(), "k");
    assert!(!d.root().join("storage/gone").exists());
    let keys = d.ssh("ssh-keys:list --format json").ok().stdout.clone();
    assert!(keys.contains("moved") && !keys.contains("\"gone\""), "{keys}");
}

#[test]
fn a_push_of_main_and_master_together_deploys_main_once() {
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "twobranch");
    repo.write("Dockerfile", &web_dockerfile("from main", 0)).commit("main");
    repo.git(&["branch", "master"]).ok();
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{}", out.stderr);
    repo.write("Dockerfile", &web_dockerfile("second", 0)).commit("second");
    repo.git(&["checkout", "-q", "master"]).ok();
    repo.write("Dockerfile", &web_dockerfile("from master", 0)).commit("master");
    let both = repo.push_as(&d.admin, &["main", "master"]);
    assert_eq!(both.code, 0, "{}", both.stderr);
    assert!(both.stderr.contains("Pushed master: not deployed (twobranch deploys main"), "{}", both.stderr);
    let releases: serde_json::Value = serde_json::from_str(&d.ssh("releases twobranch --format json").ok().stdout).unwrap();
    assert_eq!(releases.as_array().unwrap().len(), 2, "{releases}");
    d.ssh("domains:add twobranch twobranch.example.com").ok();
    assert_eq!(get(&d, "twobranch.example.com"), (200, "second".into()));
}

#[test]
fn a_pushed_tree_over_the_size_limit_is_refused_and_leaves_nothing() {
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "heavy");
    repo.write("Dockerfile", &web_dockerfile("light", 0)).commit("light");
    repo.push(&d, "main").ok();
    d.setting("max_build_context_mb = 1".into());
    // Random bytes: git cannot compress them below the limit.
    let noise: String = (0..3_000_000).map(|_| char::from(b'a' + rand::random::<u8>() % 26)).collect();
    repo.write("blob.txt", &noise).commit("heavy");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("the pushed tree is larger than 1 MiB (max_build_context_mb in berth.toml)"), "{}", out.stderr);
    assert_eq!(std::fs::read_dir(d.root().join("tmp")).unwrap().count(), 0, "a build context was left behind");
    d.ssh("domains:add heavy heavy.example.com").ok();
    assert_eq!(get(&d, "heavy.example.com"), (200, "light".into()));
    // Under the limit again, pushes build as before (and leave nothing behind either).
    repo.git(&["rm", "-q", "blob.txt"]).ok();
    repo.commit("light again");
    repo.push(&d, "main").ok();
    assert_eq!(std::fs::read_dir(d.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn two_scales_at_once_are_both_kept() {
    let d = Daemon::start();
    d.ssh("apps:create scaled").ok();
    for round in 0..5 {
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| d.ssh(&format!("ps:scale scaled web={}", round + 1)));
            let b = s.spawn(|| d.ssh(&format!("ps:scale scaled worker={}", round + 2)));
            (a.join().unwrap(), b.join().unwrap())
        });
        a.ok();
        b.ok();
        let shown = d.ssh("ps:scale scaled").ok().stdout.clone();
        assert!(shown.contains(&format!("web={}", round + 1)) && shown.contains(&format!("worker={}", round + 2)), "round {round}: {shown}");
    }
}

#[test]
fn a_build_whose_image_carries_another_apps_labels_is_never_taken_for_its_containers() {
    let d = Daemon::start();
    let victim = AppRepo::new(&d, "victim");
    victim.write("Dockerfile", &web_dockerfile("victim v1", 0)).commit("v1");
    assert_eq!(victim.push(&d, "main").code, 0);
    d.ssh("domains:add victim victim.example.com").ok();

    // A Dockerfile may not set berth's labels, however it writes them.
    let root = d.root().display().to_string();
    let forger = AppRepo::new(&d, "forger");
    let labels = format!("berth.app=victim berth.process=web berth.index=1 berth.release=1 berth.root={root}");
    forger.write("Dockerfile", &format!("FROM berth-test/busybox\nARG K=berth.app\nLABEL ${{K}}=victim\n{}", web_dockerfile("forger", 0))).commit("labels");
    let refused = forger.push(&d, "main");
    assert!(refused.code != 0 && refused.stderr.contains("labels starting with berth. are berth's own"), "{}", refused.stderr);

    // But an image it builds from may carry them (any public image could): then another
    // tenant's build step carries every label berth puts on victim's web container.
    let base = format!("berth-test/forged-{}", std::process::id());
    built(&base, &format!("FROM berth-test/busybox\nLABEL {labels}\n"));
    let dockerfile = format!(
        "FROM {base}\nRUN echo forged-output; sleep 20\n{}",
        web_dockerfile("forger", 0).lines().skip(1).map(|l| format!("{l}\n")).collect::<String>()
    );
    forger.write("Dockerfile", &dockerfile).commit("forged labels");
    let pushing = {
        let dir = forger.dir.clone();
        let ssh = crate::harness::git_ssh(&d.admin);
        std::thread::spawn(move || Command::new("git").current_dir(dir).args(["push", "deploy", "main"]).env("GIT_SSH_COMMAND", ssh).output().unwrap())
    };
    // The engine lists the build step as one of victim's containers, by its labels.
    let label = format!("label=berth.root={root}");
    poll(Duration::from_secs(60), "the forged build step to run", || {
        let listed = docker(&["ps", "-q", "--filter", "label=berth.app=victim", "--filter", &label, "--filter", "label=berth.index"]);
        if listed.lines().count() == 2 { Ok(()) } else { Err(listed) }
    });
    // berth does not: it knows the one it made by the name it gave it.
    let report: serde_json::Value = serde_json::from_str(&d.ssh("ps:report victim --format json").ok().stdout).unwrap();
    assert_eq!(report["running"], 1, "{report}");
    assert_eq!(report["containers"].as_array().map(Vec::len), Some(1), "{report}");
    assert!(!d.ssh("logs victim -n 100").ok().stdout.contains("forged-output"), "the forged step's output shows as victim's");
    d.ssh("ps:restart victim").ok();
    assert_eq!(get(&d, "victim.example.com"), (200, "victim v1".into()));

    let pushed = pushing.join().unwrap();
    assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
    let report: serde_json::Value = serde_json::from_str(&d.ssh("ps:report victim --format json").ok().stdout).unwrap();
    assert_eq!(report["running"], 1, "{report}");
    assert_eq!(get(&d, "victim.example.com"), (200, "victim v1".into()));
    d.ssh("apps:destroy forger --force").ok();
    let _ = docker_cli(&["rmi", &base]);
}

/// `docker build -q -t TAG` of `dockerfile` (from the test base image); the image's ID.
fn built(tag: &str, dockerfile: &str) -> String {
    crate::harness::base_image();
    let dir = temp_dir();
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    let out = std::process::Command::new("docker").args(["build", "-q", "-t", tag]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn docker_cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker").args(args).output().unwrap()
}

#[test]
fn an_image_archive_moves_no_name_on_the_engine_and_a_refused_one_is_removed() {
    let d = Daemon::start();
    let base = format!("berth-test/secbase-{:08x}:1", rand::random::<u32>());
    // An image other apps build FROM, and a tenant's archive that names its image so.
    let genuine = built(&base, "FROM berth-test/busybox\nLABEL which=genuine\n");
    let planted = built(&base, "FROM berth-test/busybox\nLABEL which=planted\nRUN echo planted > /planted\n");
    let archive = docker_cli(&["save", &base]);
    assert!(archive.status.success());
    assert!(docker_cli(&["tag", &genuine, &base]).status.success());
    assert!(docker_cli(&["rmi", &planted]).status.success());
    let mallory = keygen(d.dir.path(), "mallory");
    d.local(&["ssh-keys:add", "mallory", "--app", "thief"], mallory.public.as_bytes()).ok();
    d.ssh("apps:create thief").ok();
    // It has no command to run: the deploy fails, and what it loaded goes again.
    let out = d.ssh_as(&mallory, "git:load-image thief", &archive.stdout);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("nothing was serving"), "{out:#?}");
    let id = |name: &str| String::from_utf8_lossy(&docker_cli(&["image", "inspect", "-f", "{{.Id}}", name]).stdout).trim().to_string();
    assert_eq!(id(&base), genuine, "the archive moved {base}");
    assert!(!docker_cli(&["image", "inspect", &planted]).status.success(), "the refused image stayed on the engine");
    let _ = docker_cli(&["rmi", &base]);
}

#[test]
fn one_host_port_serves_one_scheme_across_apps() {
    let d = Daemon::start();
    let port = free_port();
    d.setting(format!("proxy_ports = [{port}]"));
    d.ssh("apps:create blog").ok();
    d.ssh(&format!("ports:add blog http:{port}:5000")).ok();
    let mallory = keygen(d.dir.path(), "mallory");
    d.local(&["ssh-keys:add", "mallory", "--app", "mine"], mallory.public.as_bytes()).ok();
    d.ssh("apps:create mine").ok();
    let before = d.app_toml("mine");
    // nginx has one TLS setting per listen socket: https there would turn TLS on for blog's HTTP.
    d.ssh_as(&mallory, &format!("ports:add mine https:{port}:5000"), b"").refused(&format!("serves http for app blog (http:{port}:5000)"));
    d.ssh_as(&mallory, &format!("ports:set mine http:80:5000 https:{port}:5000"), b"").refused("for app blog");
    assert_eq!(d.app_toml("mine"), before);
    // The same scheme is shared, as before.
    d.ssh_as(&mallory, &format!("ports:add mine http:{port}:5000"), b"").ok();
}

#[test]
fn a_scoped_key_claims_no_name_of_another_app_nor_of_this_server() {
    let d = Daemon::start();
    d.ssh("apps:create victim").ok();
    d.ssh("domains:add victim victim.test").ok();
    let mallory = keygen(d.dir.path(), "mallory");
    d.local(&["ssh-keys:add", "mallory", "--app", "mine"], mallory.public.as_bytes()).ok();
    d.ssh("apps:create mine").ok();
    let before = d.app_toml("mine");
    for name in ["www.victim.test", "*.victim.test", "127.0.0.1", "localhost"] {
        d.ssh_as(&mallory, &format!("domains:add mine {name}"), b"").refused("Permission denied");
    }
    assert_eq!(d.app_toml("mine"), before);
    // Its own names, and names of no app, are its to add; an admin may add the others.
    d.ssh_as(&mallory, "domains:add mine mine.test www.mine.test", b"").ok();
    d.ssh("domains:add mine 127.0.0.1").ok();
}

#[test]
fn a_scoped_key_creates_its_app_by_a_first_push_only_when_an_admin_allowed_it() {
    let d = Daemon::start();
    let mallory = keygen(d.dir.path(), "mallory");
    d.local(&["ssh-keys:add", "mallory", "--app", "fresh"], mallory.public.as_bytes()).ok();
    let repo = AppRepo::new(&d, "fresh");
    repo.write("Dockerfile", &web_dockerfile("fresh", 0)).commit("v1");
    let out = repo.push_as(&mallory, &["main"]);
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("may not create apps"), "{out:#?}");
    assert!(!d.root().join("apps/fresh").exists());
    // Allowed: the first push creates it, as dokku's does.
    let maker = keygen(d.dir.path(), "maker");
    d.local(&["ssh-keys:add", "maker", "--app", "fresh", "--may-create"], maker.public.as_bytes()).ok();
    assert!(d.ssh("ssh-keys:list").ok().stdout.contains("(may create them)"));
    repo.push_as(&maker, &["main"]).ok();
    assert!(d.root().join("apps/fresh").exists());
    d.local(&["ssh-keys:add", "nobody", "--may-create"], keygen(d.dir.path(), "nobody").public.as_bytes()).refused("--may-create is for a key scoped with --app");
}

/// A web server on every address of this host (as a database or an admin page bound to
/// 0.0.0.0 would be) serving `secret`; stopped when dropped.
struct HostService {
    port: u16,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl HostService {
    fn start(secret: &str) -> HostService {
        let dir = temp_dir();
        std::fs::write(dir.path().join("index.html"), secret).unwrap();
        // Port 0: the server binds a free port itself and says which ("Serving HTTP on
        // 0.0.0.0 port N …"). A port picked here and bound there later could be taken by
        // another test in between, and the probe would knock at that test's listener.
        let mut child = Command::new("python3")
            .args(["-u", "-m", "http.server", "0", "--bind", "0.0.0.0", "--directory"])
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        let port: u16 = line.split(" port ").nth(1).and_then(|rest| rest.split_whitespace().next()).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("the host service did not say its port: {line:?}"));
        HostService { port, child, _dir: dir }
    }
}

impl Drop for HostService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every IPv4 address of this host but loopback (what a container could try).
fn host_addresses() -> Vec<String> {
    let out = Command::new("hostname").arg("-I").output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|a| a.parse::<std::net::Ipv4Addr>().is_ok()).map(String::from).collect()
}

#[test]
fn a_build_reaches_none_of_the_hosts_own_services() {
    let d = Daemon::start();
    let service = HostService::start("host-secret");
    // The service answers a container on the engine's default bridge: the host is reachable
    // there, as it was from every build.
    base_image();
    let gateway = docker(&["network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"]);
    let dir = temp_dir();
    std::fs::write(dir.path().join("probe"), PROBE_SH).unwrap();
    let mount = format!("{}:/probe:ro", dir.path().join("probe").display());
    // (Asked again for a while: under the whole suite's load one probe's 3 s can pass.)
    poll(Duration::from_secs(60), "the test's host service reachable from a container on the default bridge", || {
        let reached = docker(&["run", "--rm", "-v", &mount, "berth-test/busybox", "sh", "/probe", gateway.trim(), &service.port.to_string()]);
        if reached.contains("host-secret") { Ok(()) } else { Err(reached) }
    });

    // A build tries the host through its gateway and every address the host has.
    let mut targets = vec!["$(ip route | awk '/default/ {print $3}')".to_string()];
    targets.extend(host_addresses());
    let tries: String = targets.iter().map(|t| format!("sh /probe {t} {} >> /www/index.html; ", service.port)).collect();
    let repo = AppRepo::new(&d, "prober");
    let dockerfile = format!(
        "FROM berth-test/busybox\nCOPY probe.sh /probe\nRUN mkdir /www && echo {} > /www/root\nRUN {tries}true\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n",
        d.root().display()
    );
    repo.write("probe.sh", PROBE_SH).write("Dockerfile", &dockerfile).commit("probe the host");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{}", out.stderr);
    d.ssh("domains:add prober prober.example.com").ok();
    let (status, body) = get(&d, "prober.example.com");
    assert_eq!(status, 200);
    assert!(!body.contains("host-secret"), "a build step read the host's service: {body}");
    assert_eq!(body.matches("unreachable").count(), targets.len(), "{body}");
}

#[test]
fn apps_reach_each_other_only_on_a_network_an_admin_attached_them_to() {
    let d = Daemon::start();
    probe_app(&d, "alpha", "alpha");
    probe_app(&d, "beta", "beta");
    let label = format!("label=berth.root={}", d.root().display());
    let beta = docker(&["ps", "-q", "--filter", "label=berth.app=beta", "--filter", &label, "--filter", "label=berth.index"]);
    let beta_ip = crate::harness::addresses(beta.trim());
    let beta_ip = beta_ip.split_whitespace().next().expect("beta's container has an address").to_string();
    // What alpha's one-off container reads from a name or address on port 5000.
    // What alpha's one-off container reads from a name or address on port 5000: the body.
    let probe = |target: &str| {
        let said = d.ssh(&format!("run alpha /probe {target} 5000")).ok().stdout.clone();
        said.split("\n\n").last().unwrap_or_default().trim().to_string()
    };
    assert_eq!(probe(&beta_ip), "unreachable", "alpha reaches beta's container by its address, past nginx");
    assert_eq!(probe("beta"), "unreachable");

    // Connecting apps is an admin's: a key scoped to alpha can neither make nor attach.
    let mallory = keygen(d.dir.path(), "mallory");
    d.local(&["ssh-keys:add", "mallory", "--app", "alpha"], mallory.public.as_bytes()).ok();
    d.ssh_as(&mallory, "network:create shared", b"").refused("not an admin key");
    d.ssh_as(&mallory, "network:set alpha attach-post-create shared", b"").refused("not an admin key");
    d.ssh("network:set alpha attach-post-create nowhere").refused("Network nowhere does not exist");
    d.ssh("network:create Bad!").refused("Invalid network name");

    d.ssh("network:create shared").ok();
    d.ssh("network:create shared").refused("Network shared already exists");
    d.ssh("network:exists shared").ok();
    d.ssh("network:set alpha attach-post-create shared").ok();
    d.ssh("network:set beta attach-post-deploy shared").ok();
    let shared = "{{range .Containers}}{{.Name}} {{end}}";
    let on_shared = docker(&["network", "ls", "-q", "--filter", "label=berth.network-name=shared", "--filter", &label]);
    let on_shared = docker(&["network", "inspect", "-f", shared, on_shared.trim()]);
    assert_eq!(probe("beta"), "beta", "attached, alpha reaches beta by its name (on the network: {on_shared})");
    assert_eq!(probe("beta.web"), "beta");
    let report: serde_json::Value = serde_json::from_str(&d.ssh("network:report beta --format json").ok().stdout).unwrap();
    assert_eq!(report["network-attach-post-deploy"], serde_json::json!("shared"), "{report}");
    assert!(d.ssh("network:info shared").ok().stdout.contains("alpha"));

    // A redeploy keeps it; with a tld (global, then beta's own), its names also end in it.
    d.ssh("network:set --global tld internal").ok();
    d.ssh("network:set beta tld 'bad tld'").refused("Invalid tld");
    d.ssh("ps:restart beta").ok();
    assert_eq!(probe("beta"), "beta");
    let names = || {
        let ids = d.container_ids(false, &["berth.app=beta", "berth.process=web"]).into_iter().chain(d.holder_ids(&["berth.app=beta"]));
        ids.map(|id| docker(&["inspect", "-f", "{{.Name}} {{.HostConfig.NetworkMode}} {{range $n, $e := .NetworkSettings.Networks}}{{$n}}={{$e.Aliases}} {{end}}", &id])).collect::<String>()
    };
    assert_eq!(probe("beta.web.internal"), "beta", "{}", names());
    assert_eq!(d.ssh("network:report beta --network-computed-tld").ok().stdout, "internal\n");
    d.ssh("network:set beta tld svc.local").ok();
    d.ssh("network:set --global tld").ok();
    d.ssh("ps:restart beta").ok();
    assert_eq!(probe("beta.web.svc.local"), "beta");
    assert_eq!(probe("beta.web.internal"), "unreachable");
    d.ssh("network:destroy shared").refused("has apps attached");
    d.ssh("network:set beta attach-post-deploy").ok();
    assert_eq!(probe("beta"), "unreachable");
    d.ssh("network:destroy shared --force").ok();
    d.ssh("network:exists shared").refused("Network does not exist");
    assert!(!d.app_toml("alpha").contains("shared"), "{}", d.app_toml("alpha"));

    // A network made outside berth (`docker network create`), attached globally: every app
    // that sets none joins it, running containers at once; berth lists it, never destroys it.
    let external = format!("ext-{}", std::process::id());
    docker(&["network", "create", &external]);
    d.ssh(&format!("network:set --global attach-post-deploy {external}")).ok();
    assert_eq!(probe("beta"), "beta", "both follow the global setting");
    assert_eq!(d.ssh("network:report beta --network-computed-attach-post-deploy").ok().stdout, format!("{external}\n"));
    assert_eq!(d.ssh("network:report beta --network-attach-post-deploy").ok().stdout, "\n");
    let listed: serde_json::Value = serde_json::from_str(&d.ssh("network:list --format json").ok().stdout).unwrap();
    let entry = listed.as_array().unwrap().iter().find(|n| n["Name"] == external.as_str()).cloned();
    assert_eq!(entry.map(|n| n["DokkuManaged"].clone()), Some(serde_json::json!(false)), "{listed}");
    assert!(!d.ssh("network:list --dokku-managed").ok().stdout.contains(&external));
    assert!(!d.ssh("network:list").ok().stdout.contains("berth-app-"), "berth's own networks are not an admin's to attach");
    d.ssh(&format!("network:destroy {external}")).refused("was not made by network:create");
    d.ssh(&format!("network:set --global attach-post-deploy {external}-nowhere")).refused("does not exist");
    d.ssh("network:set --global attach-post-deploy").ok();
    assert_eq!(probe("beta"), "unreachable");
    docker(&["network", "rm", &external]);
    // alpha still serves, and runs with its own network only.
    d.ssh("ps:restart alpha").ok();
}

/// The id of the image tagged `tag` now.
fn image_id(tag: &str) -> String {
    docker(&["image", "inspect", "--format", "{{.Id}}", tag]).trim().to_string()
}

#[test]
fn two_servers_on_one_engine_never_remove_each_others_images() {
    // Two roots, one engine, one app name: both give their images the tags `berth/twin:vN`.
    let a = Daemon::start();
    let b = Daemon::start();
    let push = |d: &Daemon, repo: &AppRepo, text: &str| {
        repo.write("Dockerfile", &web_dockerfile(text, 0)).commit(text);
        repo.push(d, "main").ok();
    };
    let b_repo = AppRepo::new(&b, "twin");
    push(&b, &b_repo, "b v1");
    let b_first = image_id("berth/twin:v1");
    a.ssh("apps:create twin").ok();
    a.ssh("checks:set twin wait-to-retire 0").ok();
    a.ssh("domains:add twin twin.example.com").ok();
    let a_repo = AppRepo::new(&a, "twin");
    push(&a, &a_repo, "a v1");
    let a_first = image_id("berth/twin:v1");
    push(&a, &a_repo, "a v2");
    // A's v1 is history: no container uses its image, which the engine would refuse to remove.
    poll(Duration::from_secs(30), "A's v1 container retired", || {
        let left = a.container_ids(true, &["berth.app=twin", "berth.release=1"]);
        if left.is_empty() { Ok(()) } else { Err(format!("{left:?}")) }
    });

    // B's `berth/twin:v1` is A's image now: B's destroy removes only its own.
    b.ssh("apps:destroy twin --force").ok();
    assert!(image_exists(&a_first), "B's apps:destroy removed A's v1 image");
    assert!(!image_exists(&b_first), "B's apps:destroy left its own image, whose tag A took");

    // B's next v1 build takes the tag (its earlier build did not leave it), and its
    // releases' pruning leaves A's images alone.
    let b_repo = AppRepo::new(&b, "twin");
    b.ssh("apps:create twin").ok();
    b.ssh("domains:add twin twin.example.com").ok();
    push(&b, &b_repo, "b v1 again");
    let b_again = image_id("berth/twin:v1");
    assert_eq!(get(&b, "twin.example.com"), (200, "b v1 again".into()));
    assert!(image_exists(&a_first), "B's build of v1 removed A's v1 image");
    a.ssh("releases:rollback twin v1").ok();
    assert_eq!(get(&a, "twin.example.com"), (200, "a v1".into()));

    b.ssh("apps:destroy twin --force").ok();
    assert!(!image_exists(&b_again), "B's apps:destroy left its image");
    a.ssh("apps:destroy twin --force").ok();
    assert!(!image_exists(&a_first), "A's apps:destroy left its v1 image");
}
