//! Wildcard certificates over DNS-01, against real parts: Debian's BIND9 serving a test zone
//! that accepts TSIG-signed RFC 2136 updates, and pebble resolving through that BIND (so it
//! validates the TXT records berth puts there). What berth serves is checked by SNI with
//! curl against pebble's issuing root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

use crate::harness::{AppRepo, Daemon, free_port, web_dockerfile};
use crate::https::{Pebble, TestCa, https};

const ZONE: &str = "berth.test";
const KEY_NAME: &str = "berth-test-key";

/// A BIND9 of the test's own: the zone `berth.test` (every name 127.0.0.1), updatable with
/// the TSIG key `secret`; stopped on drop.
struct Bind {
    port: u16,
    secret: String,
    dir: PathBuf,
    child: Child,
}

impl Bind {
    fn start(dir: &Path) -> Bind {
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let secret = base64::engine::general_purpose::STANDARD.encode(std::array::from_fn::<u8, 32, _>(|i| (i as u8).wrapping_mul(37).wrapping_add(port as u8)));
        let d = dir.display();
        let conf = format!(
            "options {{ directory \"{d}\"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; pid-file \"{d}/named.pid\"; \
             recursion no; dnssec-validation no; notify no; }};\n\
             controls {{ }};\n\
             key \"{KEY_NAME}\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\n\
             zone \"{ZONE}\" {{ type primary; file \"{d}/{ZONE}.zone\"; allow-update {{ key \"{KEY_NAME}\"; }}; }};\n"
        );
        std::fs::write(dir.join("named.conf"), conf).unwrap();
        let zone = format!("$TTL 60\n@ IN SOA ns.{ZONE}. admin.{ZONE}. 1 60 60 600 60\n@ IN NS ns.{ZONE}.\nns IN A 127.0.0.1\n@ IN A 127.0.0.1\n* IN A 127.0.0.1\n");
        std::fs::write(dir.join(format!("{ZONE}.zone")), zone).unwrap();
        let log = std::fs::File::create(dir.join("named.log")).unwrap();
        let child = Command::new("named")
            .args(["-g", "-c"])
            .arg(dir.join("named.conf"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("named is installed (bind9, scripts/test.sh)");
        let bind = Bind { port, secret, dir: dir.to_path_buf(), child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while bind.dig("TXT", ZONE).is_none() {
            assert!(Instant::now() < deadline, "named did not start: {}", std::fs::read_to_string(dir.join("named.log")).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(100));
        }
        bind
    }

    /// What BIND answers for `name` (`dig +short`), None when it does not answer.
    fn dig(&self, kind: &str, name: &str) -> Option<String> {
        let out = Command::new("dig").args(["+short", "+time=1", "+tries=1", "-p", &self.port.to_string(), "@127.0.0.1", kind, name]).output().expect("dig is installed (bind9-dnsutils)");
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A daemon whose global domain is the zone, pebble resolving through BIND, and the
/// RFC 2136 provider set.
fn setup(name: &str) -> (Daemon, TestCa, Bind, Pebble) {
    let dir = std::env::temp_dir().join(format!("berth-wildcard-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ca = TestCa::new(&dir.join("ca"));
    let bind = Bind::start(&dir.join("bind"));
    let d = Daemon::start_with_env(&[("SSL_CERT_FILE", ca.ca().display().to_string())]);
    let pebble = Pebble::start_resolving(&ca, d.http_port, Some(bind.port));
    d.ssh("letsencrypt:set --global email ops@example.com").ok();
    d.ssh(&format!("letsencrypt:set --global server {}", pebble.directory)).ok();
    d.ssh(&format!("domains:set-global {ZONE}")).ok();
    (d, ca, bind, pebble)
}

fn push(d: &Daemon, app: &str, body: &str) -> AppRepo {
    let repo = AppRepo::new(d, app);
    repo.write("Dockerfile", &web_dockerfile(body, 0)).commit(body);
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "{out:#?}");
    repo
}

/// Failed after it said what it did: non-zero, one line on stderr in dokku's form.
#[track_caller]
fn failed(out: &crate::harness::Out, needle: &str) {
    assert!(out.code != 0 && out.code != 255, "{out:#?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:#?}");
    assert!(out.stderr.starts_with(" !     ") && out.stderr.contains(needle), "{needle:?}: {out:#?}");
}

fn serial(d: &Daemon, app: &str) -> String {
    let report: serde_json::Value = serde_json::from_str(&d.ssh(&format!("certs:report {app} --format json")).ok().stdout).unwrap();
    report["ssl-serial"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_wildcard_over_dns01_serves_every_app_under_the_domain_and_a_new_one_at_its_first_push() {
    let (d, _ca, bind, pebble) = setup("serve");
    let one = push(&d, "one", "first app");
    push(&d, "two", "second app");

    // Bad input: one line each, nothing saved.
    d.ssh("letsencrypt:wildcard berth.test").refused("No DNS provider for DNS-01");
    d.ssh("letsencrypt:set --global dns-provider route53").refused("Unknown dns-provider");
    d.ssh("letsencrypt:set --global dns-rfc2136-key-secret 'not base64!'").refused("base64");
    d.ssh("letsencrypt:set one dns-provider rfc2136").refused("Property can only be specified globally");
    d.ssh("letsencrypt:set --global dns-provider rfc2136").ok();
    d.ssh("letsencrypt:wildcard berth.test").refused("needs dns-rfc2136-server");
    d.ssh(&format!("letsencrypt:set --global dns-rfc2136-server 127.0.0.1:{}", bind.port)).ok();
    d.ssh(&format!("letsencrypt:set --global dns-rfc2136-key-name {KEY_NAME}")).ok();
    let out = d.ssh(&format!("letsencrypt:set --global dns-rfc2136-key-secret {}", bind.secret));
    assert!(out.ok().stdout.contains("****") && !out.stdout.contains(&bind.secret), "{out:#?}");
    let global = d.ssh("letsencrypt:report --global --format json").ok().stdout.clone();
    assert!(!global.contains(&bind.secret) && global.contains("\"global-dns-rfc2136-key-secret\":\"****\""), "{global}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(d.root().join("letsencrypt/dns.toml")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    let started = Instant::now();
    let out = d.ssh("letsencrypt:wildcard berth.test");
    out.ok();
    let took = started.elapsed();
    assert!(out.stdout.contains("answering the DNS-01 challenge at _acme-challenge.berth.test"), "{out:#?}");
    for (app, body) in [("one", "first app"), ("two", "second app")] {
        let served = https(d.https_port, &format!("{app}.{ZONE}"), Some(&pebble.root));
        assert_eq!((served.status, served.body.as_str()), (200, body), "{app}: {served:#?}");
    }
    assert_eq!(d.ssh("certs:report one --certs-ssl-wildcard").ok().stdout, "*.berth.test\n");
    // The challenge records are gone again.
    assert_eq!(bind.dig("TXT", "_acme-challenge.berth.test").as_deref(), Some(""));
    eprintln!("wildcard enable → every covered app served over https: {:.2} s", took.as_secs_f64());

    // A new app under the domain: on https from its first push, with no command.
    push(&d, "three", "third app");
    let served = https(d.https_port, "three.berth.test", Some(&pebble.root));
    assert_eq!((served.status, served.body.as_str()), (200, "third app"), "{served:#?}");
    let listed = d.ssh("letsencrypt:list").ok().stdout.clone();
    assert!(listed.contains("*.berth.test (wildcard)") && listed.contains("serves one three two"), "{listed}");

    // Previews: *.one.berth.test is ordered when they are turned on; a new preview is
    // served over https by its first push.
    let out = d.ssh("previews:enable one");
    assert!(out.ok().stdout.contains("Ordering *.one.berth.test"), "{out:#?}");
    one.git(&["checkout", "-q", "-b", "feature"]);
    one.write("Dockerfile", &web_dockerfile("a preview", 0)).commit("preview");
    let out = one.push(&d, "feature");
    assert_eq!(out.code, 0, "{out:#?}");
    let served = https(d.https_port, "feature.one.berth.test", Some(&pebble.root));
    assert_eq!((served.status, served.body.as_str()), (200, "a preview"), "{served:#?}");
    // Its next push keeps https (the parent's mappings come again, with the preview's own).
    one.write("Dockerfile", &web_dockerfile("a preview, again", 0)).commit("preview again");
    assert_eq!(one.push(&d, "feature").code, 0);
    let served = https(d.https_port, "feature.one.berth.test", Some(&pebble.root));
    assert_eq!((served.status, served.body.as_str()), (200, "a preview, again"), "{served:#?}");
    // A certificate removed stays removed at the next deploy.
    d.ssh("certs:remove two").ok();
    d.ssh("ps:rebuild two").ok();
    assert_eq!(d.ssh("certs:report two --certs-ssl-enabled").ok().stdout, "false\n");

    // Renewed (forced): every app it serves gets the new one.
    let before = serial(&d, "three");
    let renewed = d.ssh("letsencrypt:auto-renew --force");
    assert!(renewed.ok().stdout.contains("Renewing *.berth.test") && !renewed.stdout.contains("HTTP-01"), "{renewed:#?}");
    let after = serial(&d, "three");
    assert_ne!(before, after);
    assert_eq!(serial(&d, "one"), serial(&d, "one--feature"), "*.one.berth.test serves one and its preview");
    assert_eq!(serial(&d, "two"), "", "a certificate removed is not brought back by a renewal");

    // A wrong TSIG key: one line, the current certificates keep serving.
    d.ssh("letsencrypt:set --global dns-rfc2136-key-secret c29tZSBvdGhlciBzZWNyZXQga2V5IG9mIDMyIGJ5dGVz").ok();
    let out = d.ssh("letsencrypt:wildcard berth.test");
    failed(&out, "the current certificates keep serving");
    assert!(out.stderr.contains("127.0.0.1") && out.stderr.contains("the TSIG key"), "{out:#?}");
    // A failed renewal is recorded and backed off, as an app's is.
    let out = d.ssh("letsencrypt:auto-renew --force");
    assert!(out.code == 1 && out.stderr.contains("*.berth.test: renewal failed"), "{out:#?}");
    let listed = d.ssh("letsencrypt:list").ok().stdout.clone();
    assert!(listed.contains("renewal failed 1 time(s); next try"), "{listed}");
    assert_eq!(serial(&d, "three"), after);
    let served = https(d.https_port, "three.berth.test", Some(&pebble.root));
    assert_eq!(served.status, 200, "{served:#?}");
}

#[test]
fn the_exec_provider_writes_through_a_script_and_a_failed_order_leaves_no_record() {
    let (d, _ca, bind, pebble) = setup("exec");
    push(&d, "solo", "solo app");
    // An admin's script for their DNS host's API: here, nsupdate against the test's BIND.
    let script = bind.dir.join("dns-hook");
    let fail = bind.dir.join("fail-after-add");
    let body = format!(
        "#!/bin/sh\nset -e\ncase \"$1\" in present) op=add ;; cleanup) op=delete ;; *) echo \"unknown action $1\" >&2; exit 2 ;; esac\n\
         printf 'server 127.0.0.1 {port}\\nzone {ZONE}\\nupdate %s %s. 60 TXT \"%s\"\\nsend\\n' \"$op\" \"$2\" \"$3\" | nsupdate -y hmac-sha256:{KEY_NAME}:{secret}\n\
         if [ \"$1\" = present ] && [ -e {fail} ]; then echo 'the DNS API timed out' >&2; exit 1; fi\n",
        port = bind.port,
        secret = bind.secret,
        fail = fail.display()
    );
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    d.ssh("letsencrypt:set --global dns-provider exec").ok();
    d.ssh("letsencrypt:set --global dns-exec-path relative/hook").refused("absolute path");
    d.ssh(&format!("letsencrypt:set --global dns-exec-path {}", script.display())).ok();
    // Where berth sees the record arrive: the test's BIND is no NS on port 53.
    d.ssh(&format!("letsencrypt:set --global dns-check-server 127.0.0.1:{}", bind.port)).ok();
    d.ssh("letsencrypt:wildcard berth.test").ok();
    let served = https(d.https_port, "solo.berth.test", Some(&pebble.root));
    assert_eq!((served.status, served.body.as_str()), (200, "solo app"), "{served:#?}");
    assert_eq!(bind.dig("TXT", "_acme-challenge.berth.test").as_deref(), Some(""));

    // A domain the provider does not serve: one line, nothing changed.
    let serial_before = serial(&d, "solo");
    failed(&d.ssh("letsencrypt:wildcard elsewhere.example"), "the current certificates keep serving");
    // A program that fails after it wrote the record: the order fails with its line, and
    // the record is taken away again.
    std::fs::write(&fail, "").unwrap();
    failed(&d.ssh("letsencrypt:wildcard berth.test"), "the DNS API timed out");
    assert_eq!(bind.dig("TXT", "_acme-challenge.berth.test").as_deref(), Some(""));
    assert_eq!(serial(&d, "solo"), serial_before);
    let served = https(d.https_port, "solo.berth.test", Some(&pebble.root));
    assert_eq!(served.status, 200, "{served:#?}");
}
