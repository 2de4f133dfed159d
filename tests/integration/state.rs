//! State on disk: it survives restarts and crashes, and the local CLI sees what SSH sees.

use crate::harness::Daemon;

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
    let dir = tempfile::tempdir().unwrap();
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
