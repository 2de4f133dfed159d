//! More than one server: apps on a real three-node Docker Swarm on this machine
//! (scripts/swarm-lab.sh: three engines, each in a network namespace of its own, joined over
//! a bridge, with a registry), routed by berth's nginx to each task's node address and the
//! port it published there, with no request dropped.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::*;

/// The lab, up for one test: torn down (every node, namespace and mount) when dropped.
struct Lab {
    nodes: Vec<String>,
    /// The root namespace's address on the lab's network.
    host: String,
}

impl Lab {
    fn up() -> Lab {
        let out = Command::new("scripts/swarm-lab.sh").args(["up", "3"]).stderr(Stdio::inherit()).output().unwrap();
        assert!(out.status.success(), "scripts/swarm-lab.sh up 3 failed");
        let exports = String::from_utf8_lossy(&out.stdout).into_owned();
        let value = |name: &str| {
            exports.lines().find_map(|l| l.strip_prefix(&format!("export {name}="))).map(|v| v.trim_matches('\'').trim_matches('"').to_string()).unwrap_or_else(|| panic!("no {name} in {exports}"))
        };
        Lab { nodes: (1..=3).map(|k| value(&format!("BERTHLAB_NODE{k}"))).collect(), host: value("BERTHLAB_HOST") }
    }

    /// `docker -H NODE ARGS…` on node `k` (1-based): its stdout; the test fails if it does.
    fn docker(&self, k: usize, args: &[&str]) -> String {
        let out = Command::new("docker").arg("-H").arg(&self.nodes[k - 1]).args(args).output().unwrap();
        assert!(out.status.success(), "docker -H node{k} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("scripts/swarm-lab.sh").arg("down").stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// Sets its flag when dropped: a panic in a thread scope stops the load it runs.
struct Stops<'a>(&'a AtomicBool);

impl Drop for Stops<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// GETs `host` through nginx until `stop`, every 10 ms: (answered as expected, what failed).
fn load(http_port: u16, host: &str, stop: &AtomicBool, expect: &str) -> (usize, Vec<String>) {
    let (mut served, mut failed) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        match http_get(http_port, host, "/") {
            (200, body) if body.starts_with(expect) => served += 1,
            (status, body) => failed.push(format!("{status} {body:.80}")),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (served, failed)
}

/// A web app that says where it started, then serves `text` on $PORT.
fn spread_dockerfile(text: &str) -> String {
    format!("FROM berth-test/busybox\nRUN mkdir /www && echo '{text}' > /www/index.html\nCMD [\"sh\", \"-c\", \"echo started on $(hostname); exec httpd -f -p $PORT -h /www\"]\n")
}

/// How many running web tasks of `app`'s active release each server has, from `cluster:list`.
fn placement(d: &Daemon, app: &str) -> Vec<(String, usize)> {
    let active = serde_json::from_str::<serde_json::Value>(&d.ssh(&format!("ps:report {app} --format json")).stdout).ok().and_then(|r| r["release"].as_str().map(String::from)).unwrap_or_default();
    let listed: serde_json::Value = serde_json::from_str(&d.ssh("cluster:list --format json").ok().stdout).unwrap();
    let nodes = listed.as_object().unwrap_or_else(|| panic!("cluster:list is not an object of servers: {listed}"));
    let ours = |r: &&serde_json::Value| r.as_str().is_some_and(|r| r.starts_with(&format!("{app} web.")) && r.ends_with(&format!(" {active} (running)")));
    nodes.iter().map(|(name, node)| (name.clone(), node["runs"].as_array().map_or(0, |runs| runs.iter().filter(ours).count()))).collect()
}

/// Waits until `app`'s placement is as `wanted` says of it (old releases retire after a switch).
#[track_caller]
fn placed_as(d: &Daemon, app: &str, what: &str, wanted: impl Fn(&[(String, usize)]) -> bool) {
    poll(Duration::from_secs(60), what, || {
        let placed = placement(d, app);
        if wanted(&placed) { Ok(()) } else { Err(format!("{placed:?}")) }
    });
}

/// The third server leaves the cluster and is removed from it, then berth joins it again
/// over ssh: Debian's sshd in its namespace (its root's shell reaches its own engine),
/// berth's key in root's authorized_keys, `cluster:add root@ADDRESS`.
fn rejoin_over_ssh(lab: &Lab, d: &Daemon) {
    lab.docker(3, &["swarm", "leave", "--force"]);
    poll(Duration::from_secs(30), "the manager to see the third server leave", || {
        let listed = lab.docker(1, &["node", "ls", "--format", "{{.Hostname}} {{.Status}}"]);
        if listed.contains("berthlab-node3 Down") { Ok(()) } else { Err(listed) }
    });
    d.ssh("cluster:remove berthlab-node3").ok();
    assert_eq!(placement(d, "none").len(), 2, "cluster:list without the removed server");

    let public = std::fs::read_to_string(d.root().join("cluster/ssh/id_ed25519.pub")).expect("cluster:add showed berth's key, made on first use");
    assert!(d.ssh("cluster:add").ok().stdout.contains(public.trim()), "cluster:add shows the key to authorize");
    let dir = temp_dir();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let host_key = dir.path().join("host_key");
    assert!(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host_key).status().unwrap().success());
    std::fs::write(dir.path().join("authorized_keys"), &public).unwrap();
    let config = dir.path().join("sshd_config");
    let engine = lab.nodes[2].clone();
    std::fs::write(
        &config,
        format!(
            "Port 22\nListenAddress 10.231.0.13\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}\nSetEnv DOCKER_HOST={engine}\n",
            host_key.display(),
            dir.path().join("authorized_keys").display(),
            dir.path().join("sshd.pid").display()
        ),
    )
    .unwrap();
    let mut sshd = Command::new("ip").args(["netns", "exec", "berthlab-node3", "/usr/sbin/sshd", "-D", "-f"]).arg(&config).arg("-E").arg(dir.path().join("sshd.log")).spawn().unwrap();
    poll(Duration::from_secs(10), "sshd on the third server", || Command::new("ip").args(["netns", "exec", "berthlab-node3", "bash", "-c", "exec 3<>/dev/tcp/10.231.0.13/22"]).stderr(Stdio::null()).status().unwrap().success().then_some(()).ok_or_else(|| "not yet".to_string()));

    d.ssh("cluster:add 'root@10.231.0.13;id'").refused("Invalid server");
    // A join that fails: what ssh said as it went (stdout), then one line why (stderr).
    let failed = d.ssh("cluster:add root@10.231.0.13 --ssh-port 2");
    assert!(failed.code != 0 && failed.code != 255 && failed.stderr.lines().count() == 1, "{failed:#?}");
    assert!(failed.stderr.contains("Joining root@10.231.0.13 failed: ssh: connect to host 10.231.0.13 port 2: Connection refused"), "{failed:#?}");
    let joined = d.ssh("cluster:add root@10.231.0.13").ok().stdout.clone();
    assert!(joined.contains("This node joined a swarm as a worker"), "{joined}");
    let _ = sshd.kill();
    let _ = sshd.wait();
    poll(Duration::from_secs(30), "the third server back in cluster:list", || {
        let listed: serde_json::Value = serde_json::from_str(&d.ssh("cluster:list --format json").ok().stdout).unwrap();
        if listed["berthlab-node3"]["state"] == "ready" { Ok(()) } else { Err(listed.to_string()) }
    });
}

#[test]
fn a_web_app_runs_on_three_servers_and_redeploys_and_scales_without_a_failed_request() {
    let lab = Lab::up();
    // berth's engine is the manager's: it builds there, and the base image is built there.
    let dir = temp_dir();
    std::fs::copy("/bin/busybox", dir.path().join("busybox")).unwrap();
    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n").unwrap();
    lab.docker(1, &["build", "-q", "-t", "berth-test/busybox", &dir.path().display().to_string()]);
    // The lab made its swarm itself: servers report as often as cluster:init has them.
    lab.docker(1, &["swarm", "update", "--dispatcher-heartbeat", "1s"]);
    let d = Daemon::start_with_env(&[("DOCKER_HOST", lab.nodes[0].clone())]);

    // The cluster as berth sees it: three servers, one way to add more, one registry.
    d.ssh("cluster:init").refused("This server manages a cluster already");
    assert_eq!(placement(&d, "none").len(), 3, "cluster:list shows the three servers");
    assert!(d.ssh("cluster:add").ok().stdout.contains("docker swarm join --token SWMTKN-"));
    d.ssh("cluster:registry not-an-address").refused("Invalid registry");
    // berth runs the registry, on its side of the lab: TLS from its CA, which only the
    // engine on this machine trusts (the workers pull with it below through the shared
    // /etc/docker/certs.d), and a password.
    let registry = format!("{}:5000", lab.host);
    d.ssh("cluster:registry --serve 10.231.0.1:0").refused("Invalid registry address");
    d.ssh(&format!("cluster:registry --serve {registry}")).ok();
    assert!(d.ssh("cluster:registry").ok().stdout.contains(&format!("{registry} (served by berth")));
    let ca = d.root().join("cluster/registry/ca.pem");
    let curl = |args: &[&str]| String::from_utf8_lossy(&Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"]).arg(&ca).args(args).output().unwrap().stdout).into_owned();
    assert_eq!(curl(&[&format!("https://{registry}/v2/")]), "401", "the registry refuses a stranger");
    let password = std::fs::read_to_string(d.root().join("cluster/registry/password")).unwrap();
    assert_eq!(curl(&["-u", &format!("berth:{password}"), &format!("https://{registry}/v2/")]), "200", "berth's login opens it");
    let plain = Command::new("curl").args(["-s", "-o", "/dev/null", "-w", "%{http_code}", &format!("http://{registry}/v2/")]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "400", "no plain HTTP");
    assert!(d.ssh("cluster:add").ok().stdout.contains(&format!("/etc/docker/certs.d/{registry}/ca.crt")), "joining installs the CA");
    rejoin_over_ssh(&lab, &d);
    d.ssh("scheduler:set --global selected nowhere").refused("Invalid scheduler");
    d.ssh("scheduler:set --global selected swarm").ok();
    let scoped = keygen(d.dir.path(), "scoped");
    d.local(&["ssh-keys:add", "scoped", "--app", "spread"], scoped.public.as_bytes()).ok();
    d.ssh_as(&scoped, "scheduler:set spread selected docker-local", b"").refused("not an admin key");
    d.ssh_as(&scoped, "cluster:drain berthlab-node2", b"").refused("not an admin key");

    // A push: its image goes through the registry, its web runs as a swarm task, nginx routes
    // to the task's node and port.
    let repo = AppRepo::new(&d, "spread");
    repo.write("Dockerfile", &spread_dockerfile("spread v1")).commit("v1");
    let pushed = repo.push(&d, "main");
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    d.ssh("domains:add spread spread.example.com").ok();
    assert_eq!(get(&d, "spread.example.com"), (200, "spread v1".into()));
    let report: serde_json::Value = serde_json::from_str(&d.ssh("scheduler:report spread --format json").ok().stdout).unwrap();
    assert_eq!(report["scheduler-computed-selected"], "swarm", "{report}");

    // Three web tasks, spread over the three servers, while requests keep coming.
    let stop = AtomicBool::new(false);
    let (served, failed) = std::thread::scope(|s| {
        let prober = s.spawn(|| load(d.http_port, "spread.example.com", &stop, "spread v"));
        let _stops = Stops(&stop);
        d.ssh("ps:scale spread web=3").ok();
        for n in 2..=3 {
            repo.write("Dockerfile", &spread_dockerfile(&format!("spread v{n}"))).commit(&format!("v{n}"));
            let out = repo.push(&d, "main");
            assert_eq!(out.code, 0, "{}", out.stderr);
        }
        stop.store(true, Ordering::Relaxed);
        prober.join().unwrap()
    });
    assert!(failed.is_empty(), "{} of {} requests failed across a scale and two redeploys on the cluster: {failed:?}", failed.len(), served + failed.len());
    assert!(served > 50, "only {served} requests were made");
    assert_eq!(get(&d, "spread.example.com"), (200, "spread v3".into()));
    placed_as(&d, "spread", "web=3 to be one task per server", |placed| placed.len() == 3 && placed.iter().all(|(_, n)| *n == 1));
    // A server lost under load (its link cut: it answers nothing): routing leaves it once the
    // manager sees it down, its task comes back on the other two, and no request fails
    // (nginx tries the next task when it cannot reach one within 2 s).
    let peers = d.root().join("nginx/peers");
    let routed = || std::fs::read_to_string(&peers).unwrap_or_default().lines().find(|l| l.starts_with("spread ")).unwrap_or_default().to_string();
    assert!(routed().contains("10.231.0.13:"), "a task on the third server is routed: {}", routed());
    let stop = AtomicBool::new(false);
    let (served, failed, left, back) = std::thread::scope(|s| {
        let prober = s.spawn(|| load(d.http_port, "spread.example.com", &stop, "spread v3"));
        let _stops = Stops(&stop);
        std::thread::sleep(Duration::from_secs(1));
        let cut = std::time::Instant::now();
        let status = Command::new("ip").args(["-n", "berthlab-lan", "link", "set", "node3", "down"]).status().unwrap();
        assert!(status.success(), "cannot cut the third server's link");
        poll(Duration::from_secs(60), "routing to leave the lost server", || if routed().contains("10.231.0.13:") { Err(routed()) } else { Ok(()) });
        let left = cut.elapsed();
        placed_as(&d, "spread", "the lost server's task to run on the other two", |placed| {
            placed.iter().map(|(_, n)| n).sum::<usize>() == 3 && placed.iter().all(|(node, n)| node != "berthlab-node3" || *n == 0)
        });
        let back = cut.elapsed();
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::Relaxed);
        let (served, failed) = prober.join().unwrap();
        (served, failed, left, back)
    });
    eprintln!("a lost server: routed away after {:.1}s, its task serving elsewhere after {:.1}s", left.as_secs_f64(), back.as_secs_f64());
    assert!(failed.is_empty(), "{} of {} requests failed while a server was lost: {failed:?}", failed.len(), served + failed.len());
    let ps = d.ssh("ps:report spread").ok().stdout.clone();
    assert!(ps.contains("on 10.231.0.11") && ps.contains("on 10.231.0.12"), "ps:report does not say which server runs each task: {ps}");
    let logs = d.ssh("logs spread -n 10").ok().stdout.clone();
    assert!(logs.contains("spread[web.") && logs.contains("started on"), "logs come from the tasks: {logs}");

    // The other commands work on a swarm app: config (a new release there), a one-off (on
    // the manager, with the app's config), a rollback, a stop and a start.
    d.ssh("config:set spread GREETING=hi").ok();
    assert_eq!(get(&d, "spread.example.com"), (200, "spread v3".into()));
    assert_eq!(d.ssh("run spread sh -c 'echo ran-$GREETING'").ok().stdout.trim(), "ran-hi");
    d.ssh("releases:rollback spread").ok();
    assert_eq!(get(&d, "spread.example.com"), (200, "spread v3".into()), "the rollback (to v3 without GREETING) serves");
    d.ssh("ps:stop spread").ok();
    assert_ne!(get(&d, "spread.example.com").0, 200, "a stopped app is not served");
    poll(Duration::from_secs(30), "ps:stop to leave no task running", || {
        let listed = lab.docker(1, &["service", "ls", "--format", "{{.Name}} {{.Replicas}}"]);
        if listed.lines().all(|l| l.ends_with(" 0/0")) { Ok(()) } else { Err(listed) }
    });
    d.ssh("ps:start spread").ok();
    assert_eq!(get(&d, "spread.example.com"), (200, "spread v3".into()));

    // A server labelled, and the app placed by its label: every task moves there.
    d.ssh("cluster:label berthlab-node2 env=qa").ok();
    d.ssh("scheduler:set spread constraint node.labels.env==qa").ok();
    placed_as(&d, "spread", "every task on the labelled server", |placed| placed.iter().all(|(node, n)| if node == "berthlab-node2" { *n == 3 } else { *n == 0 }));
    assert_eq!(get(&d, "spread.example.com"), (200, "spread v3".into()));

    // What the cluster does not give yet is refused, one line, nothing changed.
    d.ssh("storage:mount spread data:/data").refused("runs on swarm, which has no storage mounts");
    d.ssh("enter spread web.1 true").refused("runs on swarm, which has no enter");
    d.ssh("ports:add spread http:8080:6000").refused("more than one container port");
    assert!(lab.docker(1, &["service", "ls", "--format", "{{.Name}}"]).lines().any(|l| l.starts_with("berth-spread-web-")));

    // Destroyed: nothing of it is left on the cluster.
    d.ssh("apps:destroy spread --force").ok();
    assert_eq!(lab.docker(1, &["service", "ls", "-q"]).trim(), "", "services left after apps:destroy");
}

/// This machine's engine as a one-server cluster, for as long as a test holds it: left (and
/// its bridge removed) when dropped. Its `docker_gwbridge` is made first, on a subnet of its
/// own: Docker would otherwise take one from the pools berth's app networks come from,
/// while other tests make theirs.
struct OneServer {
    /// Dropped after the fields' owner's drop: the swarm is left before others may look.
    _lock: std::fs::File,
}

impl OneServer {
    fn init(d: &Daemon) -> OneServer {
        let lock = engine_swarm(true);
        let _ = Command::new("docker").args(["swarm", "leave", "--force"]).output();
        let _ = Command::new("docker").args(["network", "rm", "docker_gwbridge"]).output();
        docker(&[
            "network", "create", "--subnet", "10.233.0.0/24",
            "--opt", "com.docker.network.bridge.name=docker_gwbridge",
            "--opt", "com.docker.network.bridge.enable_icc=false",
            "--opt", "com.docker.network.bridge.enable_ip_masquerade=true",
            "docker_gwbridge",
        ]);
        let guard = OneServer { _lock: lock };
        d.ssh("cluster:init --advertise-addr not-an-ip").refused("Invalid address");
        assert!(d.ssh("cluster:init --advertise-addr 127.0.0.1 --no-registry").ok().stdout.contains("This server manages a cluster now"));
        guard
    }
}

impl Drop for OneServer {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["swarm", "leave", "--force"]).output();
        let _ = Command::new("docker").args(["network", "rm", "docker_gwbridge"]).output();
    }
}

#[test]
fn an_app_moves_to_the_cluster_and_back_without_a_failed_request() {
    base_image();
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "mover");
    repo.write("Dockerfile", &web_dockerfile("mover v1", 0)).commit("v1");
    assert_eq!(repo.push(&d, "main").code, 0);
    d.ssh("domains:add mover mover.example.com").ok();
    d.ssh("ps:scale mover web=2").ok();
    assert_eq!(get(&d, "mover.example.com"), (200, "mover v1".into()));
    d.ssh("scheduler:set mover selected swarm").refused("not a Swarm manager");
    let _cluster = OneServer::init(&d);

    let peers = d.root().join("nginx/peers");
    let routed = || std::fs::read_to_string(&peers).unwrap_or_default().lines().find(|l| l.starts_with("mover ")).unwrap_or_default().to_string();
    // The app's containers that are not Swarm's tasks (on one server, those run here too),
    // nor holders of web containers' or builds' network namespaces.
    let local = || {
        let root = format!("label=berth.root={}", d.root().display());
        let format = format!("{{{{.Label \"com.docker.swarm.task.id\"}}}}|{}", crate::harness::HOLDER);
        docker(&["ps", "--filter", &root, "--filter", "label=berth.app=mover", "--format", &format]).lines().filter(|l| l.trim() == "|").count()
    };
    let ours = |filter: &str| docker(&["service", "ls", "-q", "--filter", &format!("label=berth.root={}", d.root().display()), "--filter", filter]);
    let stop = AtomicBool::new(false);
    let (served, failed) = std::thread::scope(|s| {
        let prober = s.spawn(|| load(d.http_port, "mover.example.com", &stop, "mover v1"));
        // A failed assertion below ends the scope's prober too (or the scope waits forever).
        let _stops = Stops(&stop);
        std::thread::sleep(Duration::from_millis(300));
        d.ssh("scheduler:set mover selected swarm").ok();
        assert!(routed().contains("127.0.0.1:"), "routed to the tasks' published ports: {}", routed());
        assert_eq!(ours("label=berth.app=mover").lines().count(), 1, "one service for web");
        assert_eq!(local(), 0, "the docker-local containers are retired");
        std::thread::sleep(Duration::from_millis(500));
        d.ssh("scheduler:set mover selected docker-local").ok();
        assert!(!routed().contains("127.0.0.1:"), "routed to containers again: {}", routed());
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        prober.join().unwrap()
    });
    assert!(failed.is_empty(), "{} of {} requests failed across two moves: {failed:?}", failed.len(), served + failed.len());
    assert!(served > 20, "only {served} requests were made");
    assert_eq!(ours("label=berth.app=mover").trim(), "", "the app's services are removed once it is back");
    poll(Duration::from_secs(30), "the tasks to be gone", || if d.container_ids(false, &["berth.app=mover"]).len() == 2 { Ok(()) } else { Err(docker(&["ps"])) });
    assert_eq!(local(), 2, "web=2 runs here again");
    let report: serde_json::Value = serde_json::from_str(&d.ssh("scheduler:report mover --format json").ok().stdout).unwrap();
    assert_eq!(report["scheduler-computed-selected"], "docker-local", "{report}");
    d.ssh("apps:destroy mover --force").ok();
}
