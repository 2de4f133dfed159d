//! The dashboard as a person uses it, in real headless Chromium (tests/dashboard/drive.py,
//! through Debian's chromium-driver): a one-time login, the apps, a rollback served through
//! nginx, a config value in the running container, live logs. And what a stranger, a used
//! link, a forged form or a scoped key's session get.

use std::process::Command;

use crate::harness::*;

/// `dashboard:login` as `key` (None: the admin): the URL it printed.
fn login_url(d: &Daemon, key: Option<&Key>) -> String {
    let out = match key {
        Some(key) => d.ssh_as(key, "dashboard:login", b""),
        None => d.ssh("dashboard:login"),
    };
    out.ok();
    let url = out.stdout.lines().last().unwrap_or_default().trim().to_string();
    assert!(url.contains("/dashboard/login?code="), "{out:#?}");
    url
}

/// curl with a cookie jar: (status, body).
fn curl(jar: &std::path::Path, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl").args(["-s", "-b"]).arg(jar).arg("-c").arg(jar).args(["-w", "\n%{http_code}"]).args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap_or(0), body.to_string())
}

#[test]
fn a_person_logs_in_rolls_back_sets_config_and_follows_logs_in_a_browser() {
    base_image();
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "dash");
    for n in 1..=2 {
        let dockerfile = format!("FROM berth-test/busybox\nRUN mkdir /www && echo 'dash v{n}' > /www/index.html\nCMD [\"sh\", \"-c\", \"(while true; do echo tick; sleep 0.5; done) & exec httpd -f -p $PORT -h /www\"]\n");
        repo.write("Dockerfile", &dockerfile).commit(&format!("v{n}"));
        assert_eq!(repo.push(&d, "main").code, 0);
    }
    d.ssh("domains:add dash dash.example.com").ok();
    assert_eq!(get(&d, "dash.example.com"), (200, "dash v2".into()));

    let shots = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
    let url = login_url(&d, None);
    let out = Command::new("/usr/bin/python3").arg("tests/dashboard/drive.py").args([&url, "dash"]).arg(&shots).output().unwrap();
    assert!(out.status.success(), "the browser: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // What the browser did, seen from outside it.
    assert_eq!(get(&d, "dash.example.com"), (200, "dash v1".into()), "the rollback is served");
    let web = poll(std::time::Duration::from_secs(30), "the config change's old container to retire", || {
        let web = d.container_ids(false, &["berth.app=dash", "berth.process=web"]);
        if web.len() == 1 { Ok(web) } else { Err(format!("{web:?}")) }
    });
    assert_eq!(docker(&["exec", &web[0], "sh", "-c", "echo $GREETING"]).trim(), "from the browser", "the running container has the value");
    for page in ["apps", "app", "rollback", "config", "logs"] {
        assert!(shots.join(format!("{page}.png")).exists(), "a screenshot of {page}");
    }

    // A used link, a stranger, a forged form.
    let jar = d.dir.path().join("jar");
    let (status, body) = curl(&jar, &[&url]);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("used already, has expired, or is wrong"));
    let base = url.split("/dashboard").next().unwrap().to_string();
    assert_eq!(curl(&jar, &[&format!("{base}/dashboard")]).0, 401);
    let fresh = login_url(&d, None);
    assert_eq!(curl(&jar, &[&fresh]).0, 303);
    let (status, page) = curl(&jar, &[&format!("{base}/dashboard/apps/dash")]);
    assert_eq!(status, 200);
    assert!(!page.contains("from the browser"), "values hidden by default");
    let (status, _) = curl(&jar, &["-X", "POST", "-d", "key=X&value=1&csrf=forged", &format!("{base}/dashboard/apps/dash/config")]);
    assert_eq!(status, 403, "a form without the session's token changes nothing");
    assert!(!d.ssh("config:show dash").ok().stdout.contains("X:"));
    assert_eq!(curl(&jar, &[&format!("{base}/dashboard/apps/nothere")]).0, 404);
    assert_eq!(curl(&jar, &[&format!("{base}/dashboard/apps/--help")]).0, 422, "a name that is none is refused as one");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|v| v.split('"').next()).unwrap().to_string();
    let (status, _) = curl(&jar, &["-X", "POST", "-d", &format!("key=X&value=1&csrf={csrf}"), &format!("{base}/dashboard/apps/--global/config")]);
    assert_eq!(status, 404, "the app in a form's path is an app's name, never an option");
    assert!(!d.ssh("config:show --global").ok().stdout.contains("X:"));

    // A scoped key's session sees its apps only.
    d.ssh("apps:create secret-app").ok();
    let scoped = keygen(d.dir.path(), "scoped");
    d.local(&["ssh-keys:add", "scoped", "--app", "dash"], scoped.public.as_bytes()).ok();
    let scoped_jar = d.dir.path().join("scoped-jar");
    assert_eq!(curl(&scoped_jar, &[&login_url(&d, Some(&scoped))]).0, 303);
    let (status, page) = curl(&scoped_jar, &[&format!("{base}/dashboard")]);
    assert_eq!(status, 200);
    assert!(page.contains("data-app=\"dash\"") && !page.contains("secret-app"), "{page}");
    assert_eq!(curl(&scoped_jar, &[&format!("{base}/dashboard/apps/secret-app")]).0, 403);
    let events = d.ssh("events --app dash").ok().stdout.clone();
    assert!(events.contains("admin (dashboard)  releases:rollback dash  exit 0"), "{events}");
}
