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
    let noisy = "FROM berth-test/busybox\nRUN i=0; while [ $i -lt 40000 ]; do echo \"build output line $i\"; i=$((i+1)); done; sleep 2\nRUN mkdir /www && echo dropped > /www/index.html\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n";
    repo.write("Dockerfile", noisy).commit("noisy");

    // git push in its own process group, so that git and its ssh die together.
    let ssh = format!(
        "ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -F /dev/null",
        d.admin.private.display()
    );
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
    // next push deploys. Started while the first deploy ran, it finds main moved and says so;
    // pushed again, it goes through.
    repo.write("Dockerfile", &web_dockerfile("second", 0)).commit("second");
    let mut next = repo.push(&d, "main");
    if next.stderr.contains("main moved while this push waited") {
        next = repo.push(&d, "main");
    }
    assert_eq!(next.code, 0, "{}", next.stderr);
    d.ssh("domains:add dropped dropped.example.com").ok();
    assert_eq!(get(&d, "dropped.example.com"), (200, "second".into()));
}

#[test]
fn build_output_of_one_huge_line_is_passed_on_in_pieces_and_the_push_lands() {
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "longline");
    // 6 MB without a newline: more than the local socket's largest frame (4 MiB).
    let dockerfile = "FROM berth-test/busybox\nRUN head -c 6000000 /dev/zero | tr '\\0' x; echo\nRUN mkdir /www && echo long > /www/index.html\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n";
    repo.write("Dockerfile", dockerfile).commit("long line");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{}", &out.stderr[out.stderr.len().saturating_sub(2000)..]);
    let longest = out.stderr.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 20_000, "a line of {longest} bytes reached the client");
    assert_eq!(d.ssh("releases longline --format json").stdout.matches("\"active\"").count(), 1);
}
