//! Starts the real `berth daemon` in a temp root on a random loopback port and drives it
//! with the real OpenSSH client and the real local CLI.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

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
    pub admin: Key,
}

impl Daemon {
    /// A daemon on a new root with one admin key, `admin`, added through the local CLI.
    pub fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let admin = keygen(dir.path(), "admin");
        let mut daemon = Daemon { dir, child: None, port: 0, admin };
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
            .args(["daemon", "--ssh-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--https-listen", "127.0.0.1:0"])
            .env("BERTH_LOG", "info")
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

    /// `ssh -i KEY -p PORT berth@127.0.0.1 COMMAND` with the real OpenSSH client.
    pub fn ssh_as(&self, key: &Key, command: &str, stdin: &[u8]) -> Out {
        let mut cmd = Command::new("ssh");
        cmd.arg("-i").arg(&key.private).args(ssh_options(self.port));
        cmd.arg("-o").arg(format!("UserKnownHostsFile={}", self.dir.path().join("known_hosts").display()));
        cmd.arg("berth@127.0.0.1");
        if !command.is_empty() {
            cmd.arg(command);
        }
        run(cmd, stdin)
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
    }
}
