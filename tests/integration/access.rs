//! Who gets in over SSH, and what they may do once in.

use crate::harness::{Daemon, keygen};

#[test]
fn a_known_key_runs_commands_and_an_unknown_key_is_refused() {
    let d = Daemon::start();
    d.ssh("apps:list").ok();
    let stranger = keygen(d.dir.path(), "stranger");
    let out = d.ssh_as(&stranger, "apps:list", b"");
    assert_eq!(out.code, 255, "ssh should fail to authenticate: {out:#?}");
    assert!(out.stderr.contains("Permission denied"), "{out:#?}");
}

#[test]
fn a_removed_key_is_refused_at_once() {
    let d = Daemon::start();
    let bob = keygen(d.dir.path(), "bob");
    d.ssh_as(&d.admin, "ssh-keys:add bob", bob.public.as_bytes()).ok();
    d.ssh_as(&bob, "apps:list", b"").ok();
    d.ssh("ssh-keys:remove bob").ok();
    assert_eq!(d.ssh_as(&bob, "apps:list", b"").code, 255);
}

#[test]
fn bad_keys_are_refused_and_change_nothing() {
    let d = Daemon::start();
    let before = d.ssh("ssh-keys:list --format json").ok().stdout.clone();
    d.ssh_as(&d.admin, "ssh-keys:add junk", b"ssh-ed25519 notakey\n").refused("Invalid public key");
    d.ssh_as(&d.admin, "ssh-keys:add empty", b"").refused("Expected one public key line");
    d.ssh_as(&d.admin, "ssh-keys:add priv", b"-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n").refused("private key");
    d.ssh_as(&d.admin, "ssh-keys:add again", d.admin.public.as_bytes()).refused("already added as admin");
    let other = keygen(d.dir.path(), "other");
    d.ssh_as(&d.admin, "ssh-keys:add admin", other.public.as_bytes()).refused("already exists");
    d.ssh_as(&d.admin, "ssh-keys:add 'bad name'", other.public.as_bytes()).refused("Invalid key name");
    d.ssh("ssh-keys:remove nobody").refused("No key named nobody");
    assert_eq!(d.ssh("ssh-keys:list --format json").ok().stdout, before);
}

#[test]
fn ssh_keys_list_shows_name_fingerprint_and_role() {
    let d = Daemon::start();
    let bob = keygen(d.dir.path(), "bob");
    d.ssh_as(&d.admin, "ssh-keys:add bob --app blog", bob.public.as_bytes()).ok();
    let text = d.ssh("ssh-keys:list").ok().stdout.clone();
    assert!(text.contains("admin") && text.contains("SHA256:") && text.contains("app key for blog"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&d.ssh("ssh-keys:list --format json").stdout).unwrap();
    assert_eq!(json[1]["name"], "bob");
    assert_eq!(json[1]["apps"][0], "blog");
}

#[test]
fn an_app_key_manages_only_its_apps() {
    let d = Daemon::start();
    d.ssh("apps:create blog").ok();
    d.ssh("apps:create shop").ok();
    let bob = keygen(d.dir.path(), "bob");
    d.ssh_as(&d.admin, "ssh-keys:add bob --app blog", bob.public.as_bytes()).ok();

    let as_bob = |cmd: &str| d.ssh_as(&bob, cmd, b"");
    as_bob("config:set blog A=1").ok();
    assert_eq!(as_bob("config:get blog A").ok().stdout, "1\n");
    assert_eq!(as_bob("apps:list").ok().stdout, "=====> My Apps\nblog\n");
    as_bob("config:set shop A=1").refused("may not manage app shop");
    as_bob("apps:report shop").refused("may not manage app shop");
    as_bob("apps:create mine").refused("not an admin key");
    as_bob("apps:destroy blog --force").refused("not an admin key");
    as_bob("ssh-keys:list").refused("not an admin key");
    as_bob("domains:set-global example.com").refused("not an admin key");
    assert!(!d.app_toml("shop").contains("A ="));
}

#[test]
fn the_local_socket_is_private_to_root() {
    use std::os::unix::fs::PermissionsExt;
    let d = Daemon::start();
    let mode = std::fs::metadata(d.root().join("berth.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let keys = std::fs::metadata(d.root().join("keys/authorized.toml")).unwrap().permissions().mode();
    assert_eq!(keys & 0o777, 0o600);
    let host = std::fs::metadata(d.root().join("keys/host_ed25519")).unwrap().permissions().mode();
    assert_eq!(host & 0o777, 0o600);
}
