//! scripts/install.sh as a newcomer runs it (into a temp root, on loopback ports, with this
//! build's binary): a short progress, the next steps, and an upgrade by running it again;
//! then scripts/uninstall.sh.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::*;

/// Stops what install.sh started on this root, also when the test fails.
struct Installed {
    root: PathBuf,
}

impl Drop for Installed {
    fn drop(&mut self) {
        for pid_file in ["berth.pid", "nginx/nginx.pid"] {
            if let Ok(pid) = std::fs::read_to_string(self.root.join(pid_file))
                && !pid.trim().is_empty()
            {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
        let filter = format!("label=berth.root={}", self.root.display());
        let ids = docker(&["ps", "-aq", "--filter", &filter]);
        for id in ids.split_whitespace() {
            docker(&["rm", "-f", id]);
        }
    }
}

fn script(name: &str, env: &[(&str, String)], args: &[&str]) -> Out {
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    // As on a fresh machine: none of the test run's own settings.
    for k in ["BERTH_DOMAIN", "BERTH_LOG"] {
        cmd.env_remove(k);
    }
    run_command(cmd, b"")
}

fn daemon_pid(root: &Path) -> String {
    std::fs::read_to_string(root.join("berth.pid")).unwrap_or_default().trim().to_string()
}

#[test]
fn install_prints_one_line_per_step_then_next_steps_and_runs_again_as_an_upgrade() {
    let dir = temp_dir();
    let root = dir.path().join("root");
    let bin = dir.path().join("bin/berth");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    let _installed = Installed { root: root.clone() };
    let env = [
        ("BERTH_ROOT", root.display().to_string()),
        ("BERTH_BIN", bin.display().to_string()),
        ("BERTH_PREBUILT", BERTH.to_string()),
        ("BERTH_NO_SYSTEMD", "1".to_string()),
        ("BERTH_SSH_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("BERTH_HTTP_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("BERTH_HTTPS_LISTEN", format!("127.0.0.1:{}", free_port())),
        ("BERTH_INSTALL_LOG", dir.path().join("install.log").display().to_string()),
        ("BERTH_DAEMON_LOG", dir.path().join("daemon.log").display().to_string()),
    ];
    let out = script("install.sh", &env, &[]);
    let printed = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, 0, "install failed:\n{printed}\n--- log ---\n{}", std::fs::read_to_string(dir.path().join("install.log")).unwrap_or_default());
    let lines = printed.lines().count();
    assert!(lines <= 40, "install printed {lines} lines:\n{printed}");
    assert!(printed.contains("-----> Starting the berth daemon … done"), "{printed}");

    // The next steps name the real host key and the commands to run.
    let fingerprint = Command::new("ssh-keygen").arg("-lf").arg(root.join("keys/host_ed25519.pub")).output().unwrap();
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout).split_whitespace().nth(1).unwrap().to_string();
    assert!(fingerprint.starts_with("SHA256:") && printed.contains(&fingerprint), "{fingerprint} missing:\n{printed}");
    for needle in ["=====> Next steps", "berth ssh-keys:add me < ~/.ssh/id_ed25519.pub", "git push deploy main", "doctor", "install.log"] {
        assert!(printed.contains(needle), "{needle:?} missing:\n{printed}");
    }
    // A new install gets APP.<its IPv4>.sslip.io, which works without any DNS setup.
    let toml = std::fs::read_to_string(root.join("berth.toml")).unwrap();
    assert!(toml.contains(".sslip.io"), "{toml}");
    let global = toml.split("global_domains = [\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap();
    assert!(global.ends_with(".sslip.io"), "{toml}");
    assert!(printed.lines().any(|l| l.trim() == format!("Apps:      http://APP.{global}")), "{printed}");
    // On a NAT cloud the address install chose is private: it says so, and what to do.
    let chosen: std::net::Ipv4Addr = global.trim_end_matches(".sslip.io").parse().unwrap();
    let private = chosen.is_private() || chosen.is_loopback() || chosen.is_link_local() || (chosen.octets()[0] == 100 && (chosen.octets()[1] & 0xc0) == 64);
    let note = format!("=====> Note: {chosen} is a private address (this server is behind NAT)");
    assert_eq!(printed.contains(&note), private, "{chosen}: {printed}");
    if private {
        assert!(printed.contains("domains:set-global <public IPv4>.sslip.io"), "{printed}");
    }

    // The next steps' key command works as printed (run as root would run it over ssh): it
    // names this root, which is not the default, and reads the key from stdin.
    let key = keygen(dir.path(), "me");
    let line = printed.lines().find(|l| l.contains("ssh-keys:add me <")).unwrap();
    let add = line.trim().strip_prefix("ssh root@").and_then(|rest| rest.split_once(' ')).map(|(_, cmd)| cmd).unwrap();
    assert!(add.starts_with(&format!("BERTH_ROOT={} {} ", root.display(), bin.display())), "{line}");
    let add = add.replace("~/.ssh/id_ed25519.pub", &key.private.with_extension("pub").display().to_string());
    let mut sh = Command::new("sh");
    sh.arg("-c").arg(&add).env_remove("BERTH_ROOT");
    assert_eq!(run_command(sh, b"").code, 0, "{add}");
    let body = key.public.split_whitespace().nth(1).unwrap();
    assert!(std::fs::read_to_string(root.join("keys/authorized.toml")).unwrap().contains(body));

    // Again: an upgrade. The daemon restarts; the global domains the user chose stay, two of
    // them too (berth.toml spreads them over several lines), and the next steps name both.
    let berth = |args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.args(args).env("BERTH_ROOT", &root);
        assert_eq!(run_command(cmd, b"").code, 0, "{args:?}");
    };
    berth(&["domains:set-global", "apps.example.com", "more.example.net"]);
    let toml = std::fs::read_to_string(root.join("berth.toml")).unwrap();
    let before = daemon_pid(&root);
    let again = script("install.sh", &env, &[]);
    assert_eq!(again.code, 0, "{again:#?}");
    assert_ne!(daemon_pid(&root), before);
    assert_eq!(std::fs::read_to_string(root.join("berth.toml")).unwrap(), toml);
    assert!(toml.contains("apps.example.com") && toml.contains("more.example.net") && !toml.contains("sslip.io"), "{toml}");
    assert!(again.stdout.lines().any(|l| l.trim() == "Apps:      http://APP.apps.example.com, http://APP.more.example.net"), "{}", again.stdout);

    // Global domains cleared on purpose stay cleared.
    berth(&["domains:clear-global"]);
    let toml = std::fs::read_to_string(root.join("berth.toml")).unwrap();
    let third = script("install.sh", &env, &[]);
    assert_eq!(third.code, 0, "{third:#?}");
    assert_eq!(std::fs::read_to_string(root.join("berth.toml")).unwrap(), toml);
    assert!(third.stdout.contains("Apps:      no global domain yet"), "{}", third.stdout);

    // Uninstall: the daemon, its nginx and the binary go; the state stays without --purge.
    let nginx_pid = std::fs::read_to_string(root.join("nginx/nginx.pid")).unwrap().trim().to_string();
    let pid = daemon_pid(&root);
    // Other tests' roots share this engine's stack image and network: they stay.
    let keep_shared = [("BERTH_KEEP_SHARED", "1".to_string())];
    let gone = script("uninstall.sh", &[&env[..], &keep_shared].concat(), &[]);
    assert_eq!(gone.code, 0, "{gone:#?}");
    for pid in [pid, nginx_pid] {
        assert!(!process_runs(pid.parse().unwrap()), "{pid} still runs after uninstall:\n{gone:#?}");
    }
    assert!(!bin.exists());
    assert!(root.join("berth.toml").exists());
}
