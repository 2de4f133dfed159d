//! The README's first step from a laptop: `ssh root@host berth ssh-keys:add me < key.pub`,
//! through a real OpenSSH server, with the local CLI reading the key from stdin.

use std::path::Path;
use std::process::{Child, Command};

use crate::harness::*;

/// Debian's sshd on a loopback port, for root, with one authorized key. Stopped on drop.
struct Sshd {
    child: Child,
    port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sshd(dir: &Path, operator: &Key) -> Sshd {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let host_key = dir.join("sshd_host_key");
    assert!(Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&host_key).status().unwrap().success());
    let authorized = dir.join("root_authorized_keys");
    std::fs::write(&authorized, &operator.public).unwrap();
    let port = free_port();
    let config = dir.join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPidFile {}\n",
            host_key.display(),
            authorized.display(),
            dir.join("sshd.pid").display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/sbin/sshd").arg("-D").arg("-f").arg(&config).arg("-E").arg(dir.join("sshd.log")).spawn().expect("run /usr/sbin/sshd (apt-get install openssh-server)");
    let sshd = Sshd { child, port };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "sshd did not start: {}", std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sshd
}

/// `ssh root@127.0.0.1 COMMAND < stdin` as the operator, through the real sshd.
fn ssh_root(sshd: &Sshd, operator: &Key, command: &str, stdin: &[u8]) -> Out {
    let mut cmd = Command::new("ssh");
    cmd.args(["-p", &sshd.port.to_string(), "-i"]).arg(&operator.private).args([
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-F", "/dev/null",
        "root@127.0.0.1",
        command,
    ]);
    run_command(cmd, stdin)
}

#[test]
fn a_key_added_over_ssh_to_root_can_push_and_run_commands() {
    let d = Daemon::start();
    let operator = keygen(d.dir.path(), "operator");
    let sshd = sshd(d.dir.path(), &operator);
    let berth = format!("{BERTH} --root {}", d.root().display());

    // Refusals: nothing on stdin, or not a key. Neither adds anything.
    let empty = ssh_root(&sshd, &operator, &format!("{berth} ssh-keys:add laptop"), b"");
    assert!(empty.code != 0 && empty.code != 255, "{empty:#?}");
    assert_eq!(empty.stderr.lines().count(), 1, "{empty:#?}");
    assert!(empty.stderr.starts_with(" !     "), "{empty:#?}");
    ssh_root(&sshd, &operator, &format!("{berth} ssh-keys:add laptop"), b"not a key\n").refused("");
    assert!(!d.ssh("ssh-keys:list").ok().stdout.contains("laptop"));

    // The key from the laptop's stdin, through root's ssh and the local CLI.
    let laptop = keygen(d.dir.path(), "laptop");
    let out = ssh_root(&sshd, &operator, &format!("{berth} ssh-keys:add laptop"), laptop.public.as_bytes());
    out.ok();
    assert!(format!("{}{}", out.stdout, out.stderr).contains("laptop"), "{out:#?}");
    assert!(d.ssh("ssh-keys:list").ok().stdout.contains("laptop"));

    // That key now works against berth's own SSH server, as an admin.
    d.ssh_as(&laptop, "apps:create fromlaptop", b"").ok();
    assert!(d.ssh_as(&laptop, "apps:list", b"").ok().stdout.contains("fromlaptop"));
}
