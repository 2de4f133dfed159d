//! Crash safety (issue 12): the daemon killed at every point of a deploy, containers dying
//! under it, one-off containers of a dead daemon, SIGTERM during a push. After any of it,
//! git, releases.toml and what nginx serves agree, nothing of another release is left, and
//! traffic never reaches the wrong app.
//!
//! Crash points (`BERTH_CRASHPOINT`, src/lib.rs `crashpoint`) make the daemon SIGKILL itself
//! at a named step of a deploy; the daemon is booted with one set, a push reaches it, and
//! the daemon is booted again without it.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::harness::{AppRepo, Daemon, Out, docker, get, git_ssh, poll, process_runs, web_dockerfile};

/// Every point of a deploy where the daemon can be made to die, in the order a deploy
/// reaches them.
const CRASH_POINTS: [&str; 6] = ["built", "checks", "release-saved", "peers-written", "routed", "retire"];

/// The newest images a test app keeps (`releases:set APP keep`): small, so pruning is
/// exercised within a few pushes.
const KEEP: u32 = 2;

// ---------------------------------------------------------------------------------------
// Helpers: polling, background commands, probes, the server's state.
// ---------------------------------------------------------------------------------------

/// A command running in the background, its output collected as it comes (stdin stays
/// open, so a remote command does not see its client's input end).
struct Running {
    child: Child,
    _stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn pump(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

fn spawn(mut cmd: Command) -> Running {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let stdout = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(Vec::new()));
    let readers = vec![pump(child.stdout.take().unwrap(), stdout.clone()), pump(child.stderr.take().unwrap(), stderr.clone())];
    Running { _stdin: child.stdin.take(), child, stdout, stderr, readers }
}

impl Running {
    fn output(&self) -> String {
        let out = String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned();
        let err = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        format!("{out}{err}")
    }

    fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits until it ends; kills it and fails the test after `timeout`.
    #[track_caller]
    fn wait(mut self, timeout: Duration) -> Out {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("still running after {timeout:?}; its output so far:\n{}", self.output());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        Out {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned(),
            stderr: String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned(),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `git push deploy main` as the admin, in the background.
fn spawn_push(d: &Daemon, repo: &AppRepo) -> Running {
    let mut cmd = Command::new("git");
    cmd.current_dir(&repo.dir).args(["push", "deploy", "main"]).env("GIT_SSH_COMMAND", git_ssh(&d.admin));
    spawn(cmd)
}

/// `git push deploy main`, failing the test if it takes more than two minutes (a push to a
/// daemon that died must end, not hang).
fn push(d: &Daemon, repo: &AppRepo) -> Out {
    spawn_push(d, repo).wait(Duration::from_secs(120))
}

/// The daemon listens on a new SSH port after each boot: the app's remote follows it.
fn follow(d: &Daemon, repo: &AppRepo, app: &str) {
    repo.git(&["remote", "set-url", "deploy", &format!("ssh://berth@127.0.0.1:{}/{app}", d.port)]).ok();
}

/// Commits a web app serving `text` and returns the commit.
fn commit_version(repo: &AppRepo, text: &str) -> String {
    repo.write("Dockerfile", &web_dockerfile(text, 0)).commit(text);
    repo.git(&["rev-parse", "HEAD"]).ok().stdout.trim().to_string()
}

/// Where the daemon's log of each earlier boot goes before the next boot truncates
/// daemon.log; printed if the test fails.
struct BootLogs(std::path::PathBuf);

impl BootLogs {
    fn new(d: &Daemon) -> BootLogs {
        BootLogs(d.dir.path().join("earlier-boots.log"))
    }

    fn keep(&self, d: &Daemon, why: &str) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&self.0).unwrap();
        writeln!(file, "--- daemon log until {why} ---\n{}", d.log()).unwrap();
    }

    /// Boots the daemon again (after a crash or a stop), keeping the last boot's log.
    fn reboot(&self, d: &mut Daemon, why: &str) {
        self.keep(d, why);
        d.boot();
    }
}

impl Drop for BootLogs {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", std::fs::read_to_string(&self.0).unwrap_or_default());
        }
    }
}

/// GET / with a Host header from nginx on `port`, giving up after `timeout` (status 0): a
/// request that hangs is a failure too, and must not stall a prober for long.
fn get_within(port: u16, host: &str, timeout: Duration) -> (u16, String) {
    use std::io::Write;
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&address, timeout) else {
        return (0, "connection refused".into());
    };
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.set_write_timeout(Some(timeout)).unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, "write failed".into());
    }
    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response)
        && response.is_empty()
    {
        return (0, format!("no answer: {e}"));
    }
    let response = String::from_utf8_lossy(&response);
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string()).unwrap_or_default();
    (status, body)
}

/// How long a probe waits for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// One GET of a prober: when it was sent (since the prober started), status, body.
#[derive(Debug, Clone)]
struct Probe {
    at: Duration,
    status: u16,
    body: String,
}

/// GETs `/` of `host` through the daemon's nginx every `every`, on a new connection each
/// time, until stopped.
struct Prober {
    started: Instant,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Vec<Probe>>>,
}

impl Prober {
    fn start(d: &Daemon, host: &str, every: Duration) -> Prober {
        let (port, name, stop, started) = (d.http_port, host.to_string(), Arc::new(AtomicBool::new(false)), Instant::now());
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut probes = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let (status, body) = get_within(port, &name, PROBE_TIMEOUT);
                probes.push(Probe { at: sent - started, status, body });
                std::thread::sleep(every.saturating_sub(sent.elapsed()));
            }
            probes
        });
        Prober { started, stop, thread: Some(thread) }
    }

    fn finish(mut self) -> Vec<Probe> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// What probes of an app saw: `wrong` are 200s with a body that is not the app's (another
/// app's, nginx's own page); a failure is any other answer, no answer or a timeout.
struct Verdict {
    probes: usize,
    wrong: Vec<Probe>,
    failed: Vec<Probe>,
    max_failed_in_a_row: usize,
    /// The longest time from a probe that was not a 200 of the app to the next one that was
    /// (or to the last probe).
    longest_outage: Duration,
    /// When the last probe that was not a 200 of the app was sent.
    last_bad: Option<Duration>,
}

impl std::fmt::Debug for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} probes, {} with another body (first: {:?}), {} failed (first: {:?}), at most {} failed in a row, longest outage {:?}, last bad probe at {:?}",
            self.probes,
            self.wrong.len(),
            &self.wrong[..self.wrong.len().min(5)],
            self.failed.len(),
            &self.failed[..self.failed.len().min(5)],
            self.max_failed_in_a_row,
            self.longest_outage,
            self.last_bad
        )
    }
}

fn judge(probes: &[Probe], own: impl Fn(&str) -> bool) -> Verdict {
    let mut verdict = Verdict { probes: probes.len(), wrong: Vec::new(), failed: Vec::new(), max_failed_in_a_row: 0, longest_outage: Duration::ZERO, last_bad: None };
    let (mut in_a_row, mut outage_since) = (0, None);
    for p in probes {
        if p.status == 200 && own(&p.body) {
            if let Some(since) = outage_since.take() {
                verdict.longest_outage = verdict.longest_outage.max(p.at - since);
            }
            in_a_row = 0;
            continue;
        }
        verdict.last_bad = Some(p.at);
        outage_since.get_or_insert(p.at);
        if p.status == 200 {
            verdict.wrong.push(p.clone());
            in_a_row = 0;
        } else {
            verdict.failed.push(p.clone());
            in_a_row += 1;
            verdict.max_failed_in_a_row = verdict.max_failed_in_a_row.max(in_a_row);
        }
    }
    if let (Some(since), Some(last)) = (outage_since, probes.last()) {
        verdict.longest_outage = verdict.longest_outage.max(last.at - since);
    }
    verdict
}

/// `APP vN`: a version of this app's text (test apps serve `APP vN`).
fn is_version_of(app: &str, body: &str) -> bool {
    body.strip_prefix(app).and_then(|rest| rest.strip_prefix(" v")).is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Where the app's deploy branch points on the server.
fn branch_head(d: &Daemon, app: &str) -> String {
    let repo = d.root().join("apps").join(app).join("repo.git");
    let out = Command::new("git").arg("--git-dir").arg(repo).args(["rev-parse", "--verify", "-q", "refs/heads/main"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A release as releases.toml records it.
#[derive(Debug, Clone)]
struct Rel {
    version: u32,
    status: String,
    git_sha: String,
    image_tag: String,
}

fn releases(d: &Daemon, app: &str) -> Result<Vec<Rel>, String> {
    let path = d.root().join("apps").join(app).join("releases.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value: toml::Value = toml::from_str(&text).map_err(|e| format!("releases.toml does not parse: {e}\n{text}"))?;
    let list = value.get("release").and_then(|r| r.as_array()).cloned().unwrap_or_default();
    let field = |r: &toml::Value, k: &str| r.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    Ok(list
        .iter()
        .map(|r| Rel {
            version: r.get("version").and_then(|v| v.as_integer()).unwrap_or(-1) as u32,
            status: field(r, "status"),
            git_sha: field(r, "git_sha"),
            image_tag: field(r, "image_tag"),
        })
        .collect())
}

fn active(d: &Daemon, app: &str) -> Result<Rel, String> {
    let all = releases(d, app)?;
    let active: Vec<&Rel> = all.iter().filter(|r| r.status == "active").collect();
    match active[..] {
        [one] => Ok(one.clone()),
        _ => Err(format!("{} active releases: {all:?}", active.len())),
    }
}

/// The image tags berth may keep (src/store/releases.rs `images_to_prune`): the active
/// release's, and those of the newest serving releases up to `keep` images in all.
fn kept_tags(all: &[Rel], keep: u32) -> Vec<String> {
    let mut kept = Vec::new();
    for r in all.iter().rev() {
        let keep_it = r.status == "active" || (r.status == "superseded" && (kept.len() as u32) < keep.max(1));
        if keep_it && !kept.contains(&r.image_tag) {
            kept.push(r.image_tag.clone());
        }
    }
    kept
}

/// A container of this root labelled with `app`, one-off or not.
#[derive(Debug, Clone)]
struct Ctr {
    #[allow(dead_code)] // shown in failure messages
    id: String,
    process: String,
    /// Empty for one-off containers (`run`, the release phase).
    index: String,
    release: String,
    state: String,
}

/// The app's containers, but not the holders of web containers' or builds' network
/// namespaces.
fn containers(d: &Daemon, app: &str) -> Vec<Ctr> {
    let root = format!("label=berth.root={}", d.root().display());
    let label = format!("label=berth.app={app}");
    let format = format!("{{{{.ID}}}}|{{{{.Label \"berth.process\"}}}}|{{{{.Label \"berth.index\"}}}}|{{{{.Label \"berth.release\"}}}}|{{{{.State}}}}|{}", crate::harness::HOLDER);
    docker(&["ps", "-a", "--filter", &root, "--filter", &label, "--format", &format])
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            (f.len() == 6 && f[5].is_empty()).then(|| Ctr { id: f[0].into(), process: f[1].into(), index: f[2].into(), release: f[3].into(), state: f[4].into() })
        })
        .collect()
}

/// The app's holders (full ids) that no container of the app joined.
fn unjoined_holders(d: &Daemon, app: &str) -> Vec<String> {
    let root = format!("label=berth.root={}", d.root().display());
    let label = format!("label=berth.app={app}");
    let holders = docker(&["ps", "-aq", "--no-trunc", "--filter", &root, "--filter", &label, "--filter", "label=berth.holder"]);
    let joined: Vec<String> = containers(d, app).iter().map(|c| inspect(&c.id, "{{.HostConfig.NetworkMode}}")).collect();
    holders.lines().filter(|h| !joined.iter().any(|j| *j == format!("container:{h}"))).map(str::to_string).collect()
}

fn one_offs(d: &Daemon, app: &str) -> Vec<Ctr> {
    containers(d, app).into_iter().filter(|c| c.index.is_empty()).collect()
}

/// Waits until the app has exactly one one-off container and it runs.
fn running_one_off(d: &Daemon, app: &str, within: Duration, what: &str) -> Ctr {
    poll(within, what, || match one_offs(d, app)[..] {
        [ref one] if one.state == "running" => Ok(one.clone()),
        ref other => Err(format!("{other:?}")),
    })
}

/// Waits (10 s at most) until the app has no one-off container left.
fn no_one_offs(d: &Daemon, app: &str, what: &str) {
    poll(Duration::from_secs(10), what, || match one_offs(d, app) {
        left if left.is_empty() => Ok(()),
        left => Err(format!("{left:?}")),
    });
}

/// The state berth must reach after any crash and restart, or an error saying what
/// disagrees: the active release is the branch head (and `releases` says so too), and
/// nginx serves that commit's text. Returns the active release.
fn agreement(d: &Daemon, app: &str, texts: &HashMap<String, String>) -> Result<Rel, String> {
    let head = branch_head(d, app);
    let active = active(d, app)?;
    if active.git_sha != head {
        return Err(format!("the active release v{} is {} but the branch is at {head}", active.version, active.git_sha));
    }
    let listed = d.ssh(&format!("releases {app} --format json"));
    let json: serde_json::Value = serde_json::from_str(&listed.stdout).map_err(|e| format!("releases --format json: {e}: {listed:?}"))?;
    let shown: Vec<&serde_json::Value> = json.as_array().into_iter().flatten().filter(|r| r["status"] == "active").collect();
    if shown.len() != 1 || shown[0]["version"] != active.version || shown[0]["git_sha"] != active.git_sha.as_str() {
        return Err(format!("`releases {app}` shows {shown:?} active, releases.toml v{}", active.version));
    }
    let want = texts.get(&head).ok_or_else(|| format!("the branch is at {head}, a commit this test never pushed"))?;
    let served = get(d, &format!("{app}.example.com"));
    if served != (200, want.clone()) {
        return Err(format!("{head} (v{}) is active, it serves {want:?}, nginx answers {served:?}", active.version));
    }
    Ok(active)
}

/// Image ids tagged `berth/APP` right after a crash, by app: a Dockerfile build's image
/// carries no label, so this is how a test knows it once a later build took its tag.
static TAGGED_AFTER_CRASH: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

fn remember_images(app: &str) {
    let ids = docker(&["images", "-q", "--no-trunc", &format!("berth/{app}")]);
    TAGGED_AFTER_CRASH.lock().unwrap().extend(ids.split_whitespace().map(|id| (app.to_string(), id.to_string())));
}

/// Nothing of another release is left once retirement is over: every container of the app
/// (running or not, one-off or not) is the active release's, every `berth/APP` image tag
/// is one a release keeps, and no dangling image is labelled with the app or was tagged
/// `berth/APP` after a crash.
fn leftovers(d: &Daemon, app: &str) -> Result<(), String> {
    let all = releases(d, app)?;
    let active = active(d, app)?;
    let strays: Vec<Ctr> = containers(d, app).into_iter().filter(|c| c.release != active.version.to_string()).collect();
    if !strays.is_empty() {
        return Err(format!("containers of other releases than the active v{}: {strays:?}", active.version));
    }
    // At most the one made ahead for the next rollout's web.1.
    let unjoined = unjoined_holders(d, app);
    if unjoined.len() > 1 {
        return Err(format!("holders no container joined, beyond the next rollout's one: {unjoined:?}"));
    }
    let kept = kept_tags(&all, KEEP);
    let repo = format!("berth/{app}");
    let tags = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}", &repo]);
    let unkept: Vec<&str> = tags.lines().filter(|t| !kept.iter().any(|k| k == t)).collect();
    if !unkept.is_empty() {
        return Err(format!("images no kept release uses: {unkept:?} (kept: {kept:?}; releases: {all:?})"));
    }
    let label = format!("label=berth.app={app}");
    let mut dangling: BTreeSet<String> = docker(&["images", "-q", "--no-trunc", "-f", "dangling=true", "-f", &label]).split_whitespace().map(String::from).collect();
    let all_dangling = docker(&["images", "-q", "--no-trunc", "-f", "dangling=true"]);
    let remembered = TAGGED_AFTER_CRASH.lock().unwrap().clone();
    dangling.extend(remembered.into_iter().filter(|(a, id)| a == app && all_dangling.split_whitespace().any(|d| d == id)).map(|(_, id)| id));
    if !dangling.is_empty() {
        return Err(format!("dangling images of {app}: {dangling:?}"));
    }
    Ok(())
}

/// Creates `app` served at `APP.example.com`, old containers retired at once, `KEEP` images
/// kept, and its repository; pushes `APP v1`. Returns the repo and the pushed texts by commit.
fn create_app(d: &Daemon, app: &str) -> (AppRepo, HashMap<String, String>) {
    forget_images(app);
    d.ssh(&format!("apps:create {app}")).ok();
    d.ssh(&format!("domains:add {app} {app}.example.com")).ok();
    d.ssh(&format!("checks:set {app} wait-to-retire 0")).ok();
    d.ssh(&format!("releases:set {app} keep {KEEP}")).ok();
    let repo = AppRepo::new(d, app);
    let text = format!("{app} v1");
    let sha = commit_version(&repo, &text);
    push(d, &repo).ok();
    assert_eq!(get(d, &format!("{app}.example.com")), (200, text.clone()));
    (repo, HashMap::from([(sha, text)]))
}

/// Images are the engine's, not a root's: remove what an earlier run of this test left of
/// `app` (its name is this test's alone), so only this run's images are judged.
fn forget_images(app: &str) {
    let label = format!("label=berth.app={app}");
    let mut ids: Vec<String> = docker(&["images", "-q", &format!("berth/{app}")]).split_whitespace().map(String::from).collect();
    ids.extend(docker(&["images", "-q", "-f", &label]).split_whitespace().map(String::from));
    ids.sort();
    ids.dedup();
    if !ids.is_empty() {
        let _ = Command::new("docker").args(["rmi", "-f"]).args(&ids).stdout(Stdio::null()).stderr(Stdio::null()).status();
    }
}

/// The id of the app's one running web container.
fn web_container(d: &Daemon, app: &str) -> String {
    let ids = d.container_ids(false, &[&format!("berth.app={app}"), "berth.process=web"]);
    assert_eq!(ids.len(), 1, "{app} should run one web container: {ids:?}");
    ids[0].clone()
}

fn inspect(id: &str, format: &str) -> String {
    docker(&["inspect", "-f", format, id]).trim().to_string()
}

fn ps_report(d: &Daemon, app: &str) -> serde_json::Value {
    serde_json::from_str(&d.ssh(&format!("ps:report {app} --format json")).ok().stdout).unwrap()
}

// ---------------------------------------------------------------------------------------
// 1. A crash at each point of a deploy.
// ---------------------------------------------------------------------------------------

/// An app under test and what was pushed to it.
struct Subject {
    app: String,
    repo: AppRepo,
    /// The text each pushed commit serves.
    texts: HashMap<String, String>,
    next: u32,
}

/// How one crash round went, for the test's output.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug
struct Round {
    point: &'static str,
    push_code: i32,
    landed: bool,
    /// Whether the pushed version was served at some moment (before a rollback, or for good).
    served_pushed: bool,
    daemon_died_by: Option<i32>,
    time_to_agree: Duration,
    probes: usize,
    failed_probes: usize,
    longest_outage: Duration,
    max_failed_in_a_row: usize,
    bystander_failed_probes: usize,
}

/// Boots the daemon with `point` set, pushes the next version into it, and checks that
/// after the crash and a restart without the crash point git, releases and nginx agree,
/// nothing of another release is left, both apps were served throughout, and the next
/// push deploys and serves.
fn crash_round(d: &mut Daemon, logs: &BootLogs, s: &mut Subject, bystander: &str, point: &'static str) -> Round {
    let app = s.app.clone();
    if point == "retire" {
        // The retirement waits this long after the push: long enough that the push has
        // landed (git moved the branch) when the daemon dies with old containers running.
        d.ssh(&format!("checks:set {app} wait-to-retire 2")).ok();
    }
    d.set_env("BERTH_CRASHPOINT", Some(point));
    d.stop();
    logs.reboot(d, &format!("the restart that sets crash point {point}"));
    follow(d, &s.repo, &app);
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.running(), "the daemon died before any deploy reached crash point {point} (at its start?):\n{}", d.log());

    let before = branch_head(d, &app);
    s.next += 1;
    let text = format!("{app} v{}", s.next);
    let sha = commit_version(&s.repo, &text);
    s.texts.insert(sha.clone(), text.clone());

    let probe_app = Prober::start(d, &format!("{app}.example.com"), Duration::from_millis(100));
    let probe_other = Prober::start(d, &format!("{bystander}.example.com"), Duration::from_millis(100));

    let pushed = push(d, &s.repo);
    let status = {
        let deadline = Duration::from_secs(if point == "retire" { 30 } else { 10 });
        let how = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.wait_dead(deadline)));
        how.unwrap_or_else(|_| panic!("the deploy never reached crash point {point}: the daemon still runs; the push gave {pushed:#?}"))
    };
    assert_eq!(status.signal(), Some(9), "the daemon should have SIGKILLed itself at {point}, it ended with {status}");
    remember_images(&app);
    let head_after_crash = branch_head(d, &app);
    let landed = head_after_crash == sha;
    assert!(landed || head_after_crash == before, "the branch is at neither the old nor the pushed commit: {head_after_crash}");
    if pushed.code == 0 {
        // A push the client saw succeed is a promise: that commit serves.
        assert!(landed, "the push succeeded but the branch did not move (crash at {point}): {pushed:#?}");
    }

    d.set_env("BERTH_CRASHPOINT", None);
    let restarted = Instant::now();
    logs.reboot(d, &format!("the crash at {point}"));
    follow(d, &s.repo, &app);
    if point == "retire" {
        d.ssh(&format!("checks:set {app} wait-to-retire 0")).ok();
    }
    let agreed = poll(Duration::from_secs(60), &format!("after a crash at {point}, git, releases and nginx agree"), || agreement(d, &app, &s.texts));
    let time_to_agree = restarted.elapsed();
    // The branch is the truth: the restart moved nothing in git.
    assert_eq!(agreed.git_sha, head_after_crash, "the restart changed the branch");
    poll(Duration::from_secs(30), &format!("after a crash at {point}, only the active release's containers and kept images are left"), || leftovers(d, &app));

    // Throughout the crash and the restart, each app was served by its own containers. nginx
    // keeps running while berth is dead and reloads gracefully (old workers finish what they
    // accepted, the listening socket is never closed), so a probe (a new connection each
    // time) should not fail at all; one failure in a row is tolerated for the instant an
    // old container stops while a worker of the previous configuration still proxies a
    // request to it (a single 502). Two in a row (200 ms) is an outage, not a reload; so is
    // a probe left without an answer (it times out after 2 s): no stretch without the app's
    // own 200 may last a second.
    let probes = probe_app.finish();
    let served_pushed = probes.iter().any(|p| p.status == 200 && p.body == text);
    let seen = judge(&probes, |b| is_version_of(&app, b));
    let seen_other = judge(&probe_other.finish(), |b| is_version_of(bystander, b));
    let pushed_text = text.clone();
    for (name, verdict) in [(&app, &seen), (&bystander.to_string(), &seen_other)] {
        assert!(verdict.wrong.is_empty(), "{name} answered with something not its own during a crash of {app}'s deploy at {point}: {verdict:?}");
        assert!(verdict.max_failed_in_a_row <= 1, "{name} failed {} probes in a row during a crash of {app}'s deploy at {point}: {verdict:?}", verdict.max_failed_in_a_row);
        assert!(verdict.longest_outage < Duration::from_secs(1), "{name} was not served for {:?} during a crash of {app}'s deploy at {point}: {verdict:?}", verdict.longest_outage);
    }
    assert!(seen.probes >= 10, "too few probes to mean anything: {seen:?}");
    agreement(d, bystander, &HashMap::from([(branch_head(d, bystander), format!("{bystander} v1"))])).unwrap();

    // The next push deploys and serves, and leaves nothing behind either.
    s.next += 1;
    let text = format!("{app} v{}", s.next);
    let sha = commit_version(&s.repo, &text);
    s.texts.insert(sha.clone(), text.clone());
    let out = push(d, &s.repo);
    assert_eq!(out.code, 0, "the first push after a crash at {point} failed: {out:#?}");
    assert_eq!(get(d, &format!("{app}.example.com")), (200, text.clone()), "the push after a crash at {point} returned before serving");
    let now = poll(Duration::from_secs(10), "after the next push, git, releases and nginx agree", || agreement(d, &app, &s.texts));
    assert_eq!(now.git_sha, sha);
    poll(Duration::from_secs(30), "after the next push, nothing of other releases is left", || leftovers(d, &app));

    let round = Round {
        point,
        push_code: pushed.code,
        landed,
        served_pushed,
        daemon_died_by: status.signal(),
        time_to_agree,
        probes: seen.probes,
        failed_probes: seen.failed.len(),
        longest_outage: seen.longest_outage,
        max_failed_in_a_row: seen.max_failed_in_a_row,
        bystander_failed_probes: seen_other.failed.len(),
    };
    eprintln!("crash round ({pushed_text}): {round:?}");
    round
}

/// One daemon, an app under test and a bystander app, then a crash round at each point.
fn crash_at(tag: &str, points: &[&'static str]) {
    let mut d = Daemon::start();
    let logs = BootLogs::new(&d);
    let app = format!("cr-{tag}");
    let bystander = format!("cr-{tag}-by");
    let (_other_repo, _) = create_app(&d, &bystander);
    let (repo, texts) = create_app(&d, &app);
    let mut subject = Subject { app: app.clone(), repo, texts, next: 1 };
    poll(Duration::from_secs(30), "after the first pushes, nothing is left over", || leftovers(&d, &app).and(leftovers(&d, &bystander)));
    for point in points {
        assert!(CRASH_POINTS.contains(point));
        crash_round(&mut d, &logs, &mut subject, &bystander, point);
    }
    assert_eq!(get(&d, &format!("{bystander}.example.com")), (200, format!("{bystander} v1")));
}

#[test]
fn a_crash_at_any_point_of_a_deploy_leaves_git_releases_and_routing_agreeing_before_the_release_is_saved() {
    crash_at("early", &CRASH_POINTS[0..2]);
}

#[test]
fn a_crash_at_any_point_of_a_deploy_leaves_git_releases_and_routing_agreeing_while_routing_switches() {
    crash_at("mid", &CRASH_POINTS[2..4]);
}

#[test]
fn a_crash_at_any_point_of_a_deploy_leaves_git_releases_and_routing_agreeing_after_routing_switched() {
    crash_at("late", &CRASH_POINTS[4..6]);
}

// ---------------------------------------------------------------------------------------
// 2, 3. Web containers dying outside a deploy.
// ---------------------------------------------------------------------------------------

#[test]
fn a_crashed_container_that_gets_another_apps_address_never_serves_the_wrong_app() {
    let d = Daemon::start();
    let (a, b) = ("cr-swap-a", "cr-swap-b");
    create_app(&d, a);
    create_app(&d, b);
    let (web_a, web_b) = (web_container(&d, a), web_container(&d, b));
    let address = |id: &str| crate::harness::addresses(id);
    let before = (address(&web_a), address(&web_b));
    let pid = |id: &str| inspect(id, "{{.State.Pid}}").parse::<i32>().unwrap();
    let (pid_a, pid_b) = (pid(&web_a), pid(&web_b));
    assert!(pid_a > 0 && pid_b > 0);

    let probe_a = Prober::start(&d, &format!("{a}.example.com"), Duration::from_millis(50));
    let probe_b = Prober::start(&d, &format!("{b}.example.com"), Duration::from_millis(50));
    std::thread::sleep(Duration::from_millis(300));
    // Both main processes at once: whichever comes back first may get the other's address.
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    kill(Pid::from_raw(pid_a), Signal::SIGKILL).unwrap();
    kill(Pid::from_raw(pid_b), Signal::SIGKILL).unwrap();
    let killed_at = probe_a.started.elapsed();
    std::thread::sleep(Duration::from_secs(15));
    let (seen_a, seen_b) = (probe_a.finish(), probe_b.finish());

    let after: Vec<String> = [a, b]
        .iter()
        .map(|app| d.container_ids(false, &[&format!("berth.app={app}"), "berth.process=web"]).iter().map(|id| address(id)).collect::<Vec<_>>().join(","))
        .collect();
    eprintln!("web addresses before the kill (a, b): {before:?}, after: {after:?}");
    let verdict_a = judge(&seen_a, |body| body == format!("{a} v1"));
    let verdict_b = judge(&seen_b, |body| body == format!("{b} v1"));
    eprintln!("{a}: {verdict_a:?}\n{b}: {verdict_b:?}");
    // Any other body is another app's container (of this daemon, or of another root's on
    // the same engine network) answering at an address nginx still routes to.
    assert!(verdict_a.wrong.is_empty(), "{a}'s domain served another app: {verdict_a:?}");
    assert!(verdict_b.wrong.is_empty(), "{b}'s domain served another app: {verdict_b:?}");
    // Back within a few seconds, by berth alone (no restart of the daemon), and it stays.
    for (app, verdict, seen) in [(a, &verdict_a, &seen_a), (b, &verdict_b, &seen_b)] {
        let back = verdict.last_bad.map(|t| t.saturating_sub(killed_at)).unwrap_or_default();
        assert!(
            back < Duration::from_secs(8),
            "{app} was not serving itself again within 8 s of the kill (last bad probe {back:?} after it): {:?}",
            seen.iter().rev().take(5).collect::<Vec<_>>()
        );
    }
    for app in [a, b] {
        let report = ps_report(&d, app);
        assert_eq!(report["status"], "running", "{report}");
        assert_eq!(report["running"], 1, "{report}");
        assert_eq!(get(&d, &format!("{app}.example.com")), (200, format!("{app} v1")));
    }
}

#[test]
fn a_docker_killed_web_container_is_back_within_seconds() {
    let d = Daemon::start();
    let app = "cr-dockerkill";
    create_app(&d, app);
    let id = web_container(&d, app);
    let started = inspect(&id, "{{.State.StartedAt}}");
    docker(&["kill", &id]);
    let killed = Instant::now();
    // `docker kill` counts as a manual stop: the engine's restart policy does not bring it
    // back; berth must.
    poll(Duration::from_secs(10), &format!("{app} serves again after docker kill"), || match get_within(d.http_port, &format!("{app}.example.com"), PROBE_TIMEOUT) {
        (200, body) if body == format!("{app} v1") => Ok(()),
        other => Err(format!("{other:?}")),
    });
    eprintln!("{app} served again {:?} after docker kill", killed.elapsed());
    // Served by a container that started again (or a new one), not by the killed one.
    let now = web_container(&d, app);
    assert!(now != id || inspect(&now, "{{.State.StartedAt}}") != started, "the killed container never stopped?");
    let active = active(&d, app).unwrap();
    let web: Vec<Ctr> = containers(&d, app).into_iter().filter(|c| c.process == "web" && c.state == "running").collect();
    assert!(web.len() == 1 && web[0].release == active.version.to_string(), "{web:?} (active v{})", active.version);
    let report = ps_report(&d, app);
    assert_eq!(report["running"], 1, "{report}");
    for _ in 0..5 {
        assert_eq!(get(&d, &format!("{app}.example.com")), (200, format!("{app} v1")));
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------
// 4. One-off containers.
// ---------------------------------------------------------------------------------------

#[test]
fn one_off_containers_do_not_survive_a_crash_or_destroy() {
    let mut d = Daemon::start();
    let logs = BootLogs::new(&d);
    let app = "cr-oneoff";
    let (repo, _) = create_app(&d, app);
    let v1 = branch_head(&d, app);

    // `run` in a session that dies with the daemon.
    let session = spawn(d.ssh_command(&d.admin, &[], &format!("run {app} sh -c 'sleep 600'")));
    let running = running_one_off(&d, app, Duration::from_secs(30), "the one-off container of `run` starts");
    assert_eq!(running.process, "run");
    d.kill();
    let client = session.wait(Duration::from_secs(20));
    assert_ne!(client.code, 0, "the ssh client of a killed daemon cannot succeed: {client:#?}");
    logs.reboot(&mut d, "SIGKILL during run");
    no_one_offs(&d, app, "the one-off container of a dead daemon's `run` is removed at start");

    // The release phase of a push whose daemon dies.
    follow(&d, &repo, app);
    repo.write("Procfile", "release: sleep 600\n");
    repo.write("Dockerfile", &web_dockerfile(&format!("{app} v2"), 0)).commit("a release command that hangs");
    let pushing = spawn_push(&d, &repo);
    let phase = running_one_off(&d, app, Duration::from_secs(60), "the release phase's container starts");
    assert_eq!(phase.process, "release");
    d.kill();
    let pushed = pushing.wait(Duration::from_secs(30));
    assert_ne!(pushed.code, 0, "a push whose daemon died during the release phase landed: {pushed:#?}");
    logs.reboot(&mut d, "SIGKILL during the release phase");
    no_one_offs(&d, app, "the release phase's container of a dead daemon is removed at start");
    assert_eq!(branch_head(&d, app), v1);
    assert_eq!(get(&d, &format!("{app}.example.com")), (200, format!("{app} v1")));

    // apps:destroy while `run` runs.
    let mut session = spawn(d.ssh_command(&d.admin, &[], &format!("run {app} sh -c 'sleep 600'")));
    running_one_off(&d, app, Duration::from_secs(30), "the one-off container of the second `run` starts");
    d.ssh(&format!("apps:destroy {app} --force")).ok();
    let left = containers(&d, app);
    assert!(left.is_empty(), "containers of {app} left after apps:destroy: {left:?}");
    let holders = unjoined_holders(&d, app);
    assert!(holders.is_empty(), "holders of {app} left after apps:destroy: {holders:?}");
    poll(Duration::from_secs(20), "the `run` session ends once its app is destroyed", || if session.exited() { Ok(()) } else { Err(session.output()) });
    assert!(d.container_ids(true, &[&format!("berth.app={app}")]).is_empty());
    assert!(d.holder_ids(&[&format!("berth.app={app}")]).is_empty());
}

// ---------------------------------------------------------------------------------------
// 5. SIGTERM during a push.
// ---------------------------------------------------------------------------------------

#[test]
fn sigterm_lets_a_running_deploy_finish() {
    let mut d = Daemon::start();
    let logs = BootLogs::new(&d);
    let app = "cr-sigterm";
    let (repo, _) = create_app(&d, app);
    let text = format!("{app} v2");
    repo.write(
        "Dockerfile",
        // A new RUN line each time, so the engine's build cache never skips the sleep.
        &format!("FROM berth-test/busybox\nRUN echo {} && sleep 6\nRUN mkdir /www && echo '{text}' > /www/index.html\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n", rand::random::<u64>()),
    )
    .commit("a slow build");
    let sha = repo.git(&["rev-parse", "HEAD"]).ok().stdout.trim().to_string();
    let pushing = spawn_push(&d, &repo);
    poll(Duration::from_secs(60), "the push is building", || {
        let output = pushing.output();
        if output.contains("Building") && output.contains("sleep 6") { Ok(()) } else { Err(output) }
    });

    // What `systemctl restart berth` does first.
    let signalled = Instant::now();
    d.signal(nix::sys::signal::Signal::SIGTERM);
    let status = d.wait_dead(Duration::from_secs(120));
    let stopped_after = signalled.elapsed();
    let pushed = pushing.wait(Duration::from_secs(60));
    eprintln!("the daemon exited {stopped_after:?} after SIGTERM, with {status}");
    assert_eq!(pushed.code, 0, "a push running when the daemon got SIGTERM failed: {pushed:#?}");
    assert!(pushed.stderr.contains("is live"), "{}", pushed.stderr);
    assert!(status.success(), "the daemon exited with {status} after SIGTERM:\n{}", d.log());
    assert_eq!(branch_head(&d, app), sha);

    logs.reboot(&mut d, "SIGTERM");
    let texts = HashMap::from([(sha.clone(), text.clone())]);
    let agreed = poll(Duration::from_secs(30), "after the restart, git, releases and nginx agree", || agreement(&d, app, &texts));
    assert_eq!(agreed.git_sha, sha);
    assert_eq!(get(&d, &format!("{app}.example.com")), (200, text));
}

// ---------------------------------------------------------------------------------------
// The Docker engine restarting. It stops every container on the machine, so this test runs
// alone, after the others (scripts/test.sh: `--ignored --test-threads=1`).
// ---------------------------------------------------------------------------------------

fn docker_answers() -> bool {
    Command::new("docker").arg("info").output().is_ok_and(|o| o.status.success())
}

/// Starts dockerd in a session of its own (it outlives this test), logging where
/// scripts/lib.sh's ensure_docker does.
fn start_dockerd() {
    let log = std::fs::OpenOptions::new().create(true).append(true).open("/var/log/dockerd.log").unwrap();
    let started = Command::new("setsid").args(["-f", "dockerd"]).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).status().unwrap();
    assert!(started.success());
}

/// Brings the Docker engine back when it is dropped, whatever happened in between (a failed
/// assertion included): the tests after this one, and the machine, need it.
struct EngineBack;

impl Drop for EngineBack {
    fn drop(&mut self) {
        if docker_answers() {
            return;
        }
        let systemd = Command::new("systemctl").args(["is-enabled", "--quiet", "docker"]).status().is_ok_and(|s| s.success());
        if systemd {
            let _ = Command::new("systemctl").args(["start", "docker"]).status();
        } else {
            start_dockerd();
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker_answers() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Restarts the Docker engine the way it was started: systemd's unit, or dockerd itself.
fn restart_docker() {
    let _back = EngineBack;
    let systemd = Command::new("systemctl").args(["is-active", "--quiet", "docker"]).status().is_ok_and(|s| s.success());
    if systemd {
        assert!(Command::new("systemctl").args(["restart", "docker"]).status().unwrap().success());
    } else {
        // The engine at /var/run/docker.sock, by its pid file: other dockerd processes (a
        // test's cluster nodes) may run beside it.
        let pid = std::fs::read_to_string("/var/run/docker.pid").expect("the Docker engine's pid file");
        let pid: i32 = pid.trim().parse().expect("a pid in /var/run/docker.pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM).unwrap();
        poll(Duration::from_secs(60), "dockerd to stop", || if process_runs(pid) { Err("still running".into()) } else { Ok(()) });
        start_dockerd();
    }
    poll(Duration::from_secs(60), "the Docker engine to answer", || if docker_answers() { Ok(()) } else { Err("no answer".into()) });
}

#[test]
fn a_zombie_is_a_stopped_process() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id() as i32;
    // Not waited for yet: a zombie until this test reaps it.
    poll(Duration::from_secs(10), "true to exit", || if process_runs(pid) { Err("runs".into()) } else { Ok(()) });
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists(), "still a zombie, not reaped");
    child.wait().unwrap();
    assert!(process_runs(std::process::id() as i32));
}

#[test]
#[ignore = "restarts the Docker engine: run alone (scripts/test.sh runs it after the others)"]
fn when_the_engine_restarts_berth_reconnects_and_brings_every_app_back() {
    let d = Daemon::start();
    let app = "cr-engine";
    create_app(&d, app);
    let before = web_container(&d, app);
    restart_docker();
    // The engine stopped every container and, their restart policy being `no`, starts none:
    // only berth's reconnected event stream and its reconcile bring the app back.
    poll(Duration::from_secs(60), "the app to serve again after the engine restarted", || {
        let served = get(&d, &format!("{app}.example.com"));
        if served == (200, format!("{app} v1")) { Ok(()) } else { Err(format!("{served:?}")) }
    });
    assert_eq!(web_container(&d, app), before, "the same container was started again");
    assert!(d.log().contains("reconnect"), "{}", d.log());
    assert!(d.ssh(&format!("ps:report {app}")).ok().stdout.contains("running"));
    // And it keeps following: a crash afterwards is healed too.
    docker(&["kill", &before]);
    poll(Duration::from_secs(30), "the app to serve again after docker kill", || {
        let served = get(&d, &format!("{app}.example.com"));
        if served == (200, format!("{app} v1")) { Ok(()) } else { Err(format!("{served:?}")) }
    });
}
