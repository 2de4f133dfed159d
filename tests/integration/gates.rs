//! Maintenance and http-auth through berth's nginx, with curl as a client: what a request
//! gets, with no reload and no request failing when either is turned on or off.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::harness::{AppRepo, Daemon, get, poll, web_dockerfile};

/// A response as curl saw it.
#[derive(Debug)]
struct Fetched {
    status: u16,
    headers: String,
    body: String,
}

/// `curl` of `path` on the daemon's nginx with `Host: host`, plus `extra` arguments.
fn curl(d: &Daemon, host: &str, path: &str, extra: &[&str]) -> Fetched {
    let dir = crate::harness::temp_dir();
    let headers = dir.path().join("headers");
    let out = Command::new("curl")
        .args(["-s", "-o", "-", "--max-time", "10", "-D"])
        .arg(&headers)
        .args(["-w", "\n%{http_code}", "-H", &format!("Host: {host}")])
        .args(extra)
        .arg(format!("http://127.0.0.1:{}{path}", d.http_port))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Fetched { status: status.trim().parse().unwrap_or(0), headers: std::fs::read_to_string(&headers).unwrap_or_default().to_lowercase(), body: body.to_string() }
}

fn deploy(d: &Daemon, app: &str, text: &str) -> AppRepo {
    d.ssh(&format!("apps:create {app}")).ok();
    d.ssh(&format!("domains:add {app} {app}.example.com")).ok();
    let repo = AppRepo::new(d, app);
    repo.write("Dockerfile", &web_dockerfile(text, 0)).commit(text);
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(get(d, &format!("{app}.example.com")), (200, text.to_string()));
    repo
}

/// nginx's worker pids: a reload replaces them.
fn nginx_workers(d: &Daemon) -> BTreeSet<i32> {
    let pid = std::fs::read_to_string(d.root().join("nginx/nginx.pid")).unwrap();
    let out = Command::new("pgrep").args(["-P", pid.trim()]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// A tar of `files` (name, content), as a user makes one with `tar c` (names written as
/// they are, `..` included: the tar crate itself would refuse those).
fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_ustar();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.set_cksum();
        builder.append(&header, content.as_bytes()).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Where berth's nginx serves ACME HTTP-01 answers for this root.
fn acme_dir(d: &Daemon) -> std::path::PathBuf {
    let name: String = d.root().display().to_string().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    std::path::Path::new("/run/berth-acme").join(name).join(".well-known/acme-challenge")
}

/// Stops the load when dropped.
struct Stops<'a>(&'a AtomicBool);

impl Drop for Stops<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn maintenance_serves_a_503_page_at_once_without_a_reload_and_requests_never_fail() {
    let mut d = Daemon::start();
    let host = "upkeep.example.com";
    deploy(&d, "upkeep", "upkeep v1");
    let workers = nginx_workers(&d);
    assert!(!workers.is_empty());

    // Requests all along: each is the app or the maintenance page, never an error.
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let (status, body) = get(&d, host);
                seen.lock().unwrap().push((status, body));
            }
        });
        // A failed assertion below ends the load too (else the scope waits for it forever).
        let _stops = Stops(&stop);
        let out = d.ssh("maintenance:enable upkeep");
        out.ok();
        assert!(out.stdout.contains("maintenance"), "{out:#?}");
        // At once: the command returns once nginx holds the gate.
        let page = curl(&d, host, "/anything", &[]);
        assert_eq!(page.status, 503, "{page:#?}");
        assert!(page.headers.contains("retry-after: 60"), "{page:#?}");
        assert!(page.body.contains("Down for maintenance") && page.body.contains("upkeep"), "{page:#?}");
        d.ssh("maintenance:enable upkeep").ok();

        // ACME HTTP-01 answers still pass.
        let acme = acme_dir(&d);
        std::fs::create_dir_all(&acme).unwrap();
        std::fs::write(acme.join("upkeep-token"), "upkeep-token.key-authorization").unwrap();
        let challenge = curl(&d, host, "/.well-known/acme-challenge/upkeep-token", &[]);
        assert_eq!((challenge.status, challenge.body.trim()), (200, "upkeep-token.key-authorization"), "{challenge:#?}");

        // A custom page with its stylesheet.
        let page = tar_of(&[("maintenance.html", "<html><link rel=stylesheet href=/style.css>Back at noon</html>\n"), ("style.css", "body { color: teal }\n")]);
        d.ssh_as(&d.admin, "maintenance:custom-page upkeep", &page).ok();
        let custom = curl(&d, host, "/", &[]);
        assert_eq!(custom.status, 503, "{custom:#?}");
        assert!(custom.body.contains("Back at noon"), "{custom:#?}");
        let css = curl(&d, host, "/style.css", &[]);
        assert_eq!((css.status, css.body.trim()), (200, "body { color: teal }"), "{css:#?}");
        assert!(css.headers.contains("content-type: text/css"), "{css:#?}");

        // Bad pages are refused, one line each, and the page in place stays.
        for (what, bytes) in [
            ("not a tar", b"just some text\n".repeat(100)),
            ("no maintenance.html", tar_of(&[("index.html", "x")])),
            ("a path out of the directory", tar_of(&[("maintenance.html", "x"), ("../escape.html", "x")])),
        ] {
            d.ssh_as(&d.admin, "maintenance:custom-page upkeep", &bytes).refused(match what {
                "not a tar" => "not a tar",
                "no maintenance.html" => "no maintenance.html",
                _ => "not a plain relative path",
            });
        }
        assert!(curl(&d, host, "/", &[]).body.contains("Back at noon"));
        let report: serde_json::Value = serde_json::from_str(&d.ssh("maintenance:report upkeep --format json").ok().stdout).unwrap();
        assert_eq!(report["maintenance-enabled"], true, "{report}");

        let out = d.ssh("maintenance:disable upkeep");
        out.ok();
        assert!(out.stdout.contains("served again"), "{out:#?}");
        assert_eq!(get(&d, host), (200, "upkeep v1".into()));
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
    });
    let seen = seen.into_inner().unwrap();
    let odd: Vec<_> = seen.iter().filter(|(status, body)| !(*status == 200 && body == "upkeep v1" || *status == 503 && (body.contains("maintenance") || body.contains("Back at noon")))).collect();
    assert!(odd.is_empty(), "{} of {} requests were neither the app nor the maintenance page: {:?}", odd.len(), seen.len(), &odd[..odd.len().min(5)]);
    assert!(seen.iter().any(|(s, _)| *s == 503) && seen.last().is_some_and(|(s, _)| *s == 200), "the load saw no maintenance, or did not end served");
    assert_eq!(nginx_workers(&d), workers, "nginx was reloaded");

    // nginx restarted (its memory lost): the gate comes back from the gates file.
    d.ssh("maintenance:enable upkeep").ok();
    d.stop();
    let pid = std::fs::read_to_string(d.root().join("nginx/nginx.pid")).unwrap();
    Command::new("kill").args(["-QUIT", pid.trim()]).status().unwrap();
    poll(Duration::from_secs(10), "nginx stops", || if Command::new("kill").args(["-0", pid.trim()]).status().unwrap().success() { Err("runs".into()) } else { Ok(()) });
    d.boot();
    assert_eq!(curl(&d, host, "/", &[]).status, 503);
}

#[test]
fn http_auth_asks_for_a_password_lets_allowed_addresses_in_and_previews_inherit_it() {
    let d = Daemon::start();
    let host = "locked.example.com";
    let repo = deploy(&d, "locked", "locked v1");

    // Refused inputs, one line each, nothing changed.
    d.ssh("http-auth:enable locked").refused("has no http-auth user");
    d.ssh("http-auth:enable locked bad:name pw").refused("Invalid user name");
    d.ssh("http-auth:add-allowed-ip locked 10.1.2.3/8").refused("10.0.0.0/8");
    d.ssh("http-auth:add-allowed-ip locked example.com").refused("Invalid address");
    assert_eq!(get(&d, host), (200, "locked v1".into()));

    d.ssh("http-auth:enable locked ann s3cret-pass").ok();
    let none = curl(&d, host, "/", &[]);
    assert_eq!(none.status, 401, "{none:#?}");
    assert!(none.headers.contains("www-authenticate: basic realm=\"locked\""), "{none:#?}");
    assert_eq!(curl(&d, host, "/", &["-u", "ann:wrong"]).status, 401);
    assert_eq!(curl(&d, host, "/", &["-u", "nobody:s3cret-pass"]).status, 401);
    let good = curl(&d, host, "/", &["-u", "ann:s3cret-pass"]);
    assert_eq!((good.status, good.body.trim()), (200, "locked v1"), "{good:#?}");
    // Asked again (nginx remembers the answer): the same.
    assert_eq!(curl(&d, host, "/", &["-u", "ann:s3cret-pass"]).status, 200);

    // A password from stdin; a removed user is refused at once (nginx forgets).
    d.ssh_as(&d.admin, "http-auth:add-user locked bob", b"bob's pass phrase\n").ok();
    assert_eq!(curl(&d, host, "/", &["-u", "bob:bob's pass phrase"]).status, 200);
    d.ssh("http-auth:remove-user locked bob").ok();
    assert_eq!(curl(&d, host, "/", &["-u", "bob:bob's pass phrase"]).status, 401);
    d.ssh("http-auth:remove-user locked ann").refused("last http-auth user");

    // Passwords are stored hashed and never shown.
    let state = std::fs::read_to_string(d.root().join("apps/locked/app.toml")).unwrap();
    assert!(state.contains("$argon2id$") && !state.contains("s3cret-pass"), "{state}");
    let report = d.ssh("http-auth:report locked").ok().stdout.clone();
    assert!(report.contains("ann") && !report.contains("argon2") && !report.contains("s3cret"), "{report}");

    // This client's address passes without a password; removed, it is asked again.
    d.ssh("http-auth:add-allowed-ip locked 127.0.0.0/8").ok();
    assert_eq!(get(&d, host), (200, "locked v1".into()));
    d.ssh("http-auth:remove-allowed-ip locked 127.0.0.0/8").ok();
    assert_eq!(curl(&d, host, "/", &[]).status, 401);

    // Previews ask for the parent's users once it says so.
    d.ssh("previews:enable locked").ok();
    d.ssh("previews:set locked http-auth true").ok();
    repo.git(&["checkout", "-q", "-b", "feature", "main"]).ok();
    repo.write("Dockerfile", &web_dockerfile("feature v1", 0)).commit("feature");
    let out = repo.push(&d, "feature");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let preview = "feature.locked.example.com";
    assert_eq!(curl(&d, preview, "/", &[]).status, 401);
    let inside = curl(&d, preview, "/", &["-u", "ann:s3cret-pass"]);
    assert_eq!((inside.status, inside.body.trim()), (200, "feature v1"), "{inside:#?}");
    d.ssh("previews:set locked http-auth false").ok();
    assert_eq!(get(&d, preview), (200, "feature v1".into()));

    // Maintenance wins over http-auth; with both off, the app is open again.
    d.ssh("maintenance:enable locked").ok();
    assert_eq!(curl(&d, host, "/", &["-u", "ann:s3cret-pass"]).status, 503);
    d.ssh("maintenance:disable locked").ok();
    d.ssh("http-auth:disable locked").ok();
    assert_eq!(get(&d, host), (200, "locked v1".into()));
    // Destroyed, its gate goes with it: a new app of the name is open.
    d.ssh("http-auth:enable locked").ok();
    d.ssh("apps:destroy locked --force").ok();
    let live = std::fs::read_to_string(d.root().join("nginx/gates")).unwrap_or_default();
    assert!(!live.lines().any(|l| l.starts_with("locked ")), "{live}");
}
