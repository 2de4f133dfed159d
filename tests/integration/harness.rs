//! Starts the real `berth daemon` in a temp root on a random loopback port and drives it
//! with the real OpenSSH client and the real local CLI.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");
/// A `docker ps --format` field that is empty for all but the holders of network
/// namespaces (a web slot's, or an app's builds').
pub const HOLDER: &str = "{{.Label \"berth.holder\"}}{{.Label \"berth.build-holder\"}}";

/// What a command printed and how it exited.
#[derive(Debug, Clone, PartialEq)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    #[track_caller]
    pub fn ok(&self) -> &Out {
        assert_eq!(self.code, 0, "expected success, got {self:#?}");
        self
    }

    /// Refused: non-zero (never ssh's 255), one line on stderr, nothing on stdout.
    #[track_caller]
    pub fn refused(&self, needle: &str) -> &Out {
        assert!(self.code != 0 && self.code != 255, "expected a refusal, got {self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected one error line, got {self:#?}");
        assert!(lines[0].starts_with(" !     "), "error not in dokku form: {self:#?}");
        assert!(self.stderr.contains(needle), "expected {needle:?} in {self:#?}");
        assert_eq!(self.stdout, "", "a refusal printed on stdout: {self:#?}");
        self
    }
}

/// Runs `cmd` with `stdin` as its input.
pub fn run_command(cmd: Command, stdin: &[u8]) -> Out {
    run(cmd, stdin)
}

fn run(mut cmd: Command, stdin: &[u8]) -> Out {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A fresh ed25519 key pair made by ssh-keygen.
pub struct Key {
    pub private: PathBuf,
    pub public: String,
}

pub fn keygen(dir: &Path, name: &str) -> Key {
    let private = dir.join(name);
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&private)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let public = std::fs::read_to_string(private.with_extension("pub")).unwrap();
    Key { private, public }
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pub port: u16,
    /// Where this daemon's nginx serves HTTP.
    pub http_port: u16,
    /// Where this daemon's nginx serves HTTPS.
    pub https_port: u16,
    pub admin: Key,
    /// Extra environment of the daemon process (kept across restarts).
    env: Vec<(String, String)>,
}

/// A loopback port nobody listens on right now, below Linux's ephemeral range (32768+):
/// a port taken from that range and let go could be handed out again at once by a later
/// `bind(0)` (the daemon's own SSH listener), and nginx would then fail to bind it.
/// True while process `pid` runs. A zombie has stopped: where no init reaps (a container
/// started without --init), an exited dockerd stays one for good.
pub fn process_runs(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name in parentheses, which may itself hold spaces.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z' | 'X'))
}

/// A new temporary directory under the build's own (target/tmp), not /tmp: daemons run git
/// hooks, plugins and scripts from their roots, and a hardened machine mounts /tmp noexec.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

pub fn free_port() -> u16 {
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

impl Daemon {
    /// A daemon on a new root with one admin key, `admin`, added through the local CLI.
    pub fn start() -> Daemon {
        Daemon::start_with_env(&[])
    }

    /// Like `start`, with extra environment for the daemon (e.g. SSL_CERT_FILE).
    pub fn start_with_env(env: &[(&str, String)]) -> Daemon {
        let dir = temp_dir();
        let admin = keygen(dir.path(), "admin");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let mut daemon = Daemon { dir, child: None, port: 0, http_port: free_port(), https_port: free_port(), admin, env };
        daemon.boot();
        daemon.local(&["ssh-keys:add", "admin"], daemon.admin.public.clone().as_bytes()).ok();
        daemon
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Starts (or restarts) the daemon process on this root.
    pub fn boot(&mut self) {
        let address = self.root().join("ssh-address");
        let _ = std::fs::remove_file(&address);
        let log = std::fs::File::create(self.dir.path().join("daemon.log")).unwrap();
        let child = Command::new(BERTH)
            .arg("--root")
            .arg(self.root())
            .args(["daemon", "--ssh-listen", "127.0.0.1:0"])
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{}", self.http_port))
            .arg("--https-listen")
            .arg(format!("127.0.0.1:{}", self.https_port))
            .args(["--api-listen", "127.0.0.1:0"])
            .env("BERTH_LOG", "info")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start berth daemon");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&address)
                && let Some(port) = text.trim().rsplit(':').next().and_then(|p| p.parse().ok())
            {
                self.port = port;
                return;
            }
            assert!(Instant::now() < deadline, "daemon did not start: {}", self.log());
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Sets (Some) or removes (None) a variable of the daemon's environment, from its next boot.
    pub fn set_env(&mut self, key: &str, value: Option<&str>) {
        self.env.retain(|(k, _)| k != key);
        if let Some(value) = value {
            self.env.push((key.to_string(), value.to_string()));
        }
    }

    /// SIGTERM, then wait: the graceful shutdown path.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
            let status = child.wait().unwrap();
            assert!(status.success(), "daemon exited with {status}: {}", self.log());
        }
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// The daemon process's id, while this harness holds one (None after `stop`/`kill`).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends `signal` to the daemon process without waiting for it (see `wait_dead`).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = self.pid().expect("no daemon process to signal");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
    }

    /// True while the daemon process runs (an exited one is not reaped here).
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().unwrap().is_none())
    }

    /// Waits up to `timeout` for the daemon process to end by itself (a crash point, a
    /// signal sent with `signal`), reaps it and returns how it ended; panics if it still
    /// runs then (the process is left to `kill` or the drop).
    #[track_caller]
    pub fn wait_dead(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut().expect("no daemon process to wait for");
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            if Instant::now() >= deadline {
                panic!("the daemon still runs after {timeout:?}:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `ssh -i KEY -p PORT berth@127.0.0.1 COMMAND` with the real OpenSSH client.
    pub fn ssh_as(&self, key: &Key, command: &str, stdin: &[u8]) -> Out {
        self.ssh_with(key, &[], command, stdin)
    }

    /// `ssh -tt … COMMAND`: the client asks for a pty although it has no terminal.
    pub fn ssh_tty(&self, command: &str, stdin: &[u8]) -> Out {
        self.ssh_with(&self.admin, &["-tt"], command, stdin)
    }

    fn ssh_with(&self, key: &Key, extra: &[&str], command: &str, stdin: &[u8]) -> Out {
        run(self.ssh_command(key, extra, command), stdin)
    }

    /// The `ssh` command line of `ssh_as`, with `extra` options, to spawn as a test likes.
    pub fn ssh_command(&self, key: &Key, extra: &[&str], command: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.arg("-i").arg(&key.private).args(ssh_options(self.port)).args(extra);
        cmd.arg("-o").arg(format!("UserKnownHostsFile={}", self.dir.path().join("known_hosts").display()));
        // `--`: a command line may start with `-` (dokku's `--app APP …`); OpenSSH would take
        // it for its own option even after the destination.
        cmd.arg("--").arg("berth@127.0.0.1");
        if !command.is_empty() {
            cmd.arg(command);
        }
        cmd
    }

    pub fn ssh(&self, command: &str) -> Out {
        self.ssh_as(&self.admin, command, b"")
    }

    /// `berth --root ROOT ARGS…` on the server.
    pub fn local(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut cmd = Command::new(BERTH);
        cmd.arg("--root").arg(self.root()).args(args);
        run(cmd, stdin)
    }

    /// Ids of this root's containers (running ones, or all with `all`) carrying every one of
    /// `labels` (`berth.app=NAME`, …).
    pub fn container_ids(&self, all: bool, labels: &[&str]) -> Vec<String> {
        self.listed(all, labels).into_iter().filter(|(_, holder)| !holder).map(|(id, _)| id).collect()
    }

    /// The holders of web containers' and builds' network namespaces with these labels
    /// (running or not).
    pub fn holder_ids(&self, labels: &[&str]) -> Vec<String> {
        self.listed(true, labels).into_iter().filter(|(_, holder)| *holder).map(|(id, _)| id).collect()
    }

    /// This root's containers with these labels, each with whether it is a holder (of a web
    /// container's namespace, or of the app's builds').
    fn listed(&self, all: bool, labels: &[&str]) -> Vec<(String, bool)> {
        let root = format!("label=berth.root={}", self.root().display());
        let format = format!("{{{{.ID}}}}|{HOLDER}");
        let mut args = vec!["ps", "--filter", &root, "--format", &format];
        if all {
            args.push("-a");
        }
        let filters: Vec<String> = labels.iter().map(|l| format!("label={l}")).collect();
        for f in &filters {
            args.extend(["--filter", f]);
        }
        // The engine (20.10) can fail a listing when a container goes while it lists
        // ("No such container"): asked again, it lists what is there.
        let parse = |text: &str| text.lines().filter_map(|l| l.split_once('|')).map(|(id, holder)| (id.to_string(), !holder.is_empty())).collect();
        for _ in 0..2 {
            let out = Command::new("docker").args(&args).output().unwrap();
            if out.status.success() {
                return parse(&String::from_utf8_lossy(&out.stdout));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        parse(&docker(&args))
    }

    /// The API's address (the daemon picked a free port).
    pub fn api_address(&self) -> String {
        std::fs::read_to_string(self.root().join("api-address")).expect("the daemon wrote api-address").trim().to_string()
    }

    /// An API call as a script makes it (curl): the status and the JSON body (Null when
    /// the body is not JSON).
    pub fn api(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, serde_json::Value) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method]).arg(format!("http://{}{path}", self.api_address()));
        if let Some(token) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        if let Some(body) = body {
            cmd.args(["-H", "Content-Type: application/json", "--data-binary", body]);
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or_else(|| panic!("curl said {text:?} {}", String::from_utf8_lossy(&out.stderr)));
        (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
    }

    /// Adds a line to berth.toml (the daemon reads it at each use).
    pub fn setting(&self, line: String) {
        let toml = self.root().join("berth.toml");
        let text = std::fs::read_to_string(&toml).unwrap_or_default();
        std::fs::write(&toml, format!("{line}\n{text}")).unwrap();
    }

    pub fn app_toml(&self, app: &str) -> String {
        std::fs::read_to_string(self.root().join("apps").join(app).join("app.toml")).unwrap_or_default()
    }
}

pub fn ssh_options(port: u16) -> Vec<String> {
    [
        "-p", &port.to_string(),
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=accept-new",
        "-o", "LogLevel=ERROR",
        "-o", "ConnectTimeout=10",
        "-F", "/dev/null",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- daemon log ---\n{}", self.log());
        }
        self.kill();
        // nginx and app containers outlive the daemon by design: clean up this root's.
        if let Ok(pid) = std::fs::read_to_string(self.root().join("nginx/nginx.pid"))
            && !pid.trim().is_empty()
        {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let label = format!("label=berth.root={}", self.root().display());
        if let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &label]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
            if !ids.is_empty() {
                let _ = Command::new("docker").args(["rm", "-f"]).args(&ids).stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
        }
        // And its networks (one per app, and those network:create made).
        if let Ok(out) = Command::new("docker").args(["network", "ls", "-q", "--filter", &label]).output() {
            let ids: Vec<String> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect();
            if !ids.is_empty() {
                let _ = Command::new("docker").args(["network", "rm"]).args(&ids).stdout(Stdio::null()).stderr(Stdio::null()).status();
            }
        }
    }
}

/// `docker ARGS…`: its stdout; the test fails if it does.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CPUs a build may run on (`Cpus_allowed_list` of a process in it): every CPU of the
/// engine's but CPU 0, where it has two or more; a build there never takes the CPU that
/// stays free for the apps.
pub fn build_cpus_allowed() -> String {
    let ncpu: u32 = docker(&["info", "--format", "{{.NCPU}}"]).trim().parse().unwrap();
    match ncpu {
        1 => "0".into(),
        2 => "1".into(),
        n => format!("1-{}", n - 1),
    }
}

/// A container's addresses, space-separated: a web container that joined its holder's
/// network namespace has the holder's.
pub fn addresses(id: &str) -> String {
    addresses_if_there(id).unwrap_or_else(|| panic!("no container {id}"))
}

/// `addresses`, or None once the container (or its holder) is gone: a container listed a
/// moment ago may have been removed since.
pub fn addresses_if_there(id: &str) -> Option<String> {
    let inspect = |format: &str, id: &str| {
        let out = Command::new("docker").args(["inspect", "-f", format, id]).output().unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let mode = inspect("{{.HostConfig.NetworkMode}}", id)?;
    let owner = mode.strip_prefix("container:").unwrap_or(id);
    inspect("{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", owner)
}

/// Whether the engine has an image of this name or id.
pub fn image_exists(image: &str) -> bool {
    Command::new("docker").args(["image", "inspect", image]).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap().success()
}

/// `berth-test/busybox`: FROM scratch plus Debian's busybox-static, built once per run.
/// No registry is reachable, so every test image starts from it.
pub fn base_image() {
    static BUILT: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = temp_dir();
        std::fs::copy("/bin/busybox", dir.path().join("busybox")).expect("busybox-static is installed (scripts/test.sh)");
        std::fs::write(
            dir.path().join("Dockerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n",
        )
        .unwrap();
        let status = Command::new("docker").args(["build", "-q", "-t", "berth-test/busybox"]).arg(dir.path()).stdout(Stdio::null()).status().unwrap();
        assert!(status.success(), "cannot build the busybox base image");
    });
}

/// The buildpack stack image, built once per machine through a daemon (`stack:build`).
pub fn stack_image(d: &Daemon) {
    static BUILT: std::sync::Mutex<bool> = std::sync::Mutex::new(false);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if !*built {
        let out = d.local(&["stack:build"], b"");
        assert_eq!(out.code, 0, "stack:build failed: {out:#?}");
        *built = true;
    }
}

/// A git repository of an app, pushed with the real git over the real ssh.
pub struct AppRepo {
    pub dir: PathBuf,
}

impl AppRepo {
    pub fn new(d: &Daemon, name: &str) -> AppRepo {
        base_image();
        let dir = d.dir.path().join(format!("src-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        let repo = AppRepo { dir };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.git(&["config", "user.email", "t@example.com"]);
        repo.git(&["config", "user.name", "t"]);
        repo.git(&["remote", "add", "deploy", &format!("ssh://berth@127.0.0.1:{}/{name}", d.port)]);
        repo
    }

    pub fn git(&self, args: &[&str]) -> Out {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.dir).args(args);
        run(cmd, b"")
    }

    pub fn write(&self, path: &str, text: &str) -> &AppRepo {
        let file = self.dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
        self
    }

    pub fn commit(&self, message: &str) -> &AppRepo {
        self.git(&["add", "-A"]).ok();
        self.git(&["commit", "-q", "--allow-empty", "-m", message]).ok();
        self
    }

    /// `git push deploy BRANCH` as the daemon's admin.
    pub fn push(&self, d: &Daemon, refspec: &str) -> Out {
        self.push_as(&d.admin, &[refspec])
    }

    /// `git push deploy REFSPEC…` with `key`.
    pub fn push_as(&self, key: &Key, refspecs: &[&str]) -> Out {
        let mut cmd = Command::new("git");
        cmd.current_dir(&self.dir).args(["push", "deploy"]).args(refspecs);
        cmd.env("GIT_SSH_COMMAND", git_ssh(key));
        run(cmd, b"")
    }
}

/// What git runs to reach the daemon as `key`.
pub fn git_ssh(key: &Key) -> String {
    format!(
        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -F /dev/null",
        key.private.display()
    )
}

impl AppRepo {
}

/// `/probe TARGET PORT` in an image: what TARGET (an address, or a name looked up with
/// nslookup) answers on PORT to `GET / HTTP/1.0`, the whole answer, or `unreachable`.
/// (Debian's static busybox has no working name lookup in wget or nc: they crash.)
pub const PROBE_SH: &str = r#"#!/bin/sh
t=$1
case $t in
*[!0-9.]*) t=$(nslookup "$t" 2>/dev/null | awk '/^Name:/ {n=1} n && /^Address/ {print $2; exit}') ;;
esac
said=
[ -n "$t" ] && said=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 "$t" "$2" 2>/dev/null | tr -d '\r')
echo "${said:-unreachable}"
"#;

/// An app that serves `text` at / and has `/probe` (see [`PROBE_SH`]).
pub fn probe_app(d: &Daemon, app: &str, text: &str) -> AppRepo {
    let repo = AppRepo::new(d, app);
    let dockerfile = web_dockerfile(text, 0).replacen("\n", "\nCOPY probe.sh /probe\nRUN chmod 755 /probe\n", 1);
    repo.write("probe.sh", PROBE_SH).write("Dockerfile", &dockerfile).commit(app);
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "{}", out.stderr);
    repo
}

/// A Dockerfile serving `text` at / with busybox httpd on $PORT, after `delay` seconds.
pub fn web_dockerfile(text: &str, delay: u32) -> String {
    format!(
        "FROM berth-test/busybox\nRUN mkdir /www && echo '{text}' > /www/index.html\nCMD [\"sh\", \"-c\", \"sleep {delay}; exec httpd -f -p $PORT -h /www\"]\n"
    )
}

/// GET / with a Host header from this daemon's nginx: (status, body).
pub fn get(d: &Daemon, host: &str) -> (u16, String) {
    http_get(d.http_port, host, "/")
}

pub fn http_get(port: u16, host: &str, path: &str) -> (u16, String) {
    use std::io::Read;
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return (0, "connection refused".into());
    };
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return (0, "write failed".into());
    }
    let mut response = String::new();
    if stream.read_to_string(&mut response).is_err() && response.is_empty() {
        return (0, "read failed".into());
    }
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string()).unwrap_or_default();
    (status, body)
}

/// Calls `f` every 200 ms until it returns Ok; fails the test with its last reason after
/// `timeout`.
#[track_caller]
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(value) => return value,
            Err(why) if Instant::now() >= deadline => panic!("{what}: not within {timeout:?}: {why}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The machine's engine is no Swarm manager while a holder of a shared lock runs; the one
/// test that makes it one for a while holds the lock alone (a file lock, machine-wide).
pub fn engine_swarm(exclusive: bool) -> std::fs::File {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open("/run/lock/berth-test-engine-swarm.lock").unwrap();
    if exclusive { file.lock().unwrap() } else { file.lock_shared().unwrap() }
    file
}
