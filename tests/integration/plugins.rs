//! Plugins: the notifier that ships with berth (plugins/notify) posting to a webhook of the
//! test's, a `pre-deploy` trigger that refuses a deploy, the triggers of an app's life with
//! their arguments and environment, and the refusals of `plugin:*`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{AppRepo, Daemon, Out, get, keygen, web_dockerfile, poll};

/// A plugin directory of this repository (`plugins/NAME`) or a test fixture
/// (`tests/fixtures/plugins/NAME`), as an absolute path the daemon can copy.
fn shipped(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins").join(name).display().to_string()
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/plugins").join(name).display().to_string()
}

/// The installed plugin's directory on the server.
fn installed(d: &Daemon, name: &str) -> PathBuf {
    d.root().join("plugins").join(name)
}

/// The line of `plugin:list` naming `name`, if any.
fn listed(d: &Daemon, name: &str) -> Option<String> {
    let out = d.ssh("plugin:list");
    out.ok().stdout.lines().find(|l| l.split_whitespace().any(|w| w == name)).map(str::to_string)
}

/// One request the hook received.
#[derive(Debug, Clone)]
struct Received {
    request_line: String,
    content_type: String,
    body: String,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("the notifier posted invalid JSON ({e}): {:?}", self.body))
    }
}

/// A webhook receiver of the test's: a std `TcpListener` on loopback answering every request
/// 200 and keeping what it got. Its thread lives as long as the test binary.
struct Hook {
    port: u16,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Hook {
    fn start() -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(request) = Hook::serve(stream) {
                    sink.lock().unwrap().push(request);
                }
            }
        });
        Hook { port, received }
    }

    /// Reads one HTTP/1.1 request (headers, then Content-Length bytes) and answers 200.
    fn serve(stream: std::net::TcpStream) -> Option<Received> {
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        let mut writer = stream.try_clone().ok()?;
        let mut reader = BufReader::new(stream);
        let mut request_line = String::new();
        reader.read_line(&mut request_line).ok()?;
        let (mut length, mut content_type, mut expect) = (0usize, String::new(), false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':')?;
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().ok()?,
                "content-type" => content_type = value.trim().to_string(),
                "expect" => expect = value.trim().eq_ignore_ascii_case("100-continue"),
                _ => {}
            }
        }
        if expect {
            writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").ok()?;
        Some(Received { request_line: request_line.trim_end().to_string(), content_type, body: String::from_utf8_lossy(&body).into_owned() })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits for the `n`th request (counting from 1) and returns it.
    #[track_caller]
    fn nth(&self, n: usize) -> Received {
        poll(Duration::from_secs(30), &format!("request {n} to the hook"), || {
            let got = self.received();
            got.get(n - 1).cloned().ok_or_else(|| format!("{} received: {got:#?}", got.len()))
        })
    }
}

/// A release version as a trigger may have passed it (`2` or `v2`), without the `v`.
fn version(event: &serde_json::Value) -> String {
    event["version"].as_str().unwrap_or_else(|| panic!("no version string in {event}")).trim_start_matches('v').to_string()
}

/// True if git showed a `remote:` line (what the server printed) containing `text`.
fn remote_line(stderr: &str, text: &str) -> bool {
    stderr.lines().any(|l| l.starts_with("remote:") && l.contains(text))
}

fn server_head(d: &Daemon, app: &str) -> String {
    let repo = d.root().join("apps").join(app).join("repo.git");
    let out = std::process::Command::new("git").arg("--git-dir").arg(repo).args(["rev-parse", "main"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn the_notifier_posts_deploys_and_failed_deploys_until_it_is_disabled_and_uninstalled() {
    let d = Daemon::start();
    let hook = Hook::start();

    // Installed from this repository's plugins/notify, listed with its version and description.
    d.ssh(&format!("plugin:install {}", shipped("notify"))).ok();
    assert!(installed(&d, "notify").join("plugin.toml").is_file());
    let line = listed(&d, "notify").expect("plugin:list does not show notify");
    assert!(line.contains("0.1.0") && line.contains("deploy"), "{line}");
    let help = d.ssh("notify:help");
    help.ok();
    assert!(help.stdout.contains("notify:set APP url [URL]"), "{help:#?}");

    d.ssh("apps:create notified").ok();
    d.ssh("domains:add notified notified.example.com").ok();
    let set = d.ssh(&format!("notify:set notified url {}", hook.url()));
    set.ok();
    assert!(set.stdout.contains("Setting url"), "{set:#?}");
    let report = d.ssh("notify:report notified");
    report.ok();
    assert!(report.stdout.contains(&hook.url()), "{report:#?}");

    // A push deploys; the hook gets `deployed` with the app, version and cause, as JSON.
    let repo = AppRepo::new(&d, "notified");
    repo.write("Dockerfile", &web_dockerfile("notified v1", 0)).commit("v1");
    let push = repo.push(&d, "main");
    assert_eq!(push.code, 0, "{push:#?}");
    assert_eq!(get(&d, "notified.example.com"), (200, "notified v1".into()));
    let first = hook.nth(1);
    assert!(first.request_line.starts_with("POST /hook "), "{first:#?}");
    assert!(first.content_type.starts_with("application/json"), "{first:#?}");
    let event = first.json();
    assert_eq!(event["app"], "notified", "{event}");
    assert_eq!(event["event"], "deployed", "{event}");
    assert_eq!(version(&event), "1", "{event}");
    assert_eq!(event["cause"], "git push", "{event}");
    assert!(event["reason"].is_null(), "{event}");
    assert!(event["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{event}");
    // The trigger's line reaches the pusher, without the URL's path (it may hold a token).
    assert!(remote_line(&push.stderr, "notify: deployed v1 sent to 127.0.0.1"), "{}", push.stderr);
    assert!(!push.stderr.contains("/hook"), "{}", push.stderr);

    // A release that crashes at start fails its deploy: `deploy-failed` with berth's reason;
    // v1 keeps serving.
    repo.write("Dockerfile", "FROM berth-test/busybox\nCMD [\"sh\", \"-c\", \"echo no config; exit 4\"]\n").commit("crashes");
    let push = repo.push(&d, "main");
    assert_ne!(push.code, 0, "{push:#?}");
    assert_eq!(get(&d, "notified.example.com"), (200, "notified v1".into()));
    let event = hook.nth(2).json();
    assert_eq!(event["app"], "notified", "{event}");
    assert_eq!(event["event"], "deploy-failed", "{event}");
    assert_eq!(version(&event), "2", "{event}");
    assert_eq!(event["cause"], "git push", "{event}");
    assert_eq!(event["by"], "admin", "the pusher's key: {event}");
    let reason = event["reason"].as_str().unwrap_or_else(|| panic!("no reason in {event}"));
    assert!(reason.contains("exited with code 4"), "{event}");
    assert!(remote_line(&push.stderr, "notify: deploy-failed v2 sent to 127.0.0.1"), "{}", push.stderr);
    let report = d.ssh("notify:report notified");
    assert!(report.stdout.contains("deploy-failed v2: delivered to 127.0.0.1"), "{report:#?}");

    // A URL that is not http(s), or that would break out of its quoting, is refused in one
    // line and the stored one stays.
    d.ssh("notify:set notified url ftp://example.com/hook").refused("Invalid url");
    d.ssh(r#"notify:set notified url 'http://example.com/"hook'"#).refused("Invalid url");
    d.ssh("notify:set notified url 'http://example.com/a b'").refused("Invalid url");
    assert!(d.ssh("notify:report notified").stdout.contains(&hook.url()));
    d.ssh("notify:set no-such-app url http://example.com/").refused("no-such-app");

    // An app's URL goes with the app (the notifier's post-delete): a new app of that name
    // starts with none.
    d.ssh("apps:create short-lived").ok();
    d.ssh(&format!("notify:set short-lived url {}", hook.url())).ok();
    assert!(installed(&d, "notify").join("data/urls/short-lived").is_file());
    d.ssh("apps:destroy short-lived --force").ok();
    assert!(!installed(&d, "notify").join("data/urls/short-lived").exists());
    d.ssh("apps:create short-lived").ok();
    assert!(!d.ssh("notify:report short-lived").ok().stdout.contains(&hook.url()));

    // Disabled: the next deploy posts nothing and prints nothing of the notifier's.
    d.ssh("plugin:disable notify").ok();
    assert!(installed(&d, "notify").join("disabled").exists());
    assert_ne!(listed(&d, "notify").as_deref(), Some(line.as_str()), "plugin:list does not show notify disabled");
    repo.write("Dockerfile", &web_dockerfile("notified v3", 0)).commit("v3");
    let push = repo.push(&d, "main");
    assert_eq!(push.code, 0, "{push:#?}");
    assert_eq!(get(&d, "notified.example.com"), (200, "notified v3".into()));
    assert!(!push.stderr.contains("notify:"), "{}", push.stderr);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(hook.received().len(), 2, "a disabled notifier posted: {:#?}", hook.received());

    // Uninstalled: gone from disk and from the list, and its commands with it.
    d.ssh("plugin:uninstall notify").ok();
    assert!(!installed(&d, "notify").exists());
    assert_eq!(listed(&d, "notify"), None);
    d.ssh("notify:report notified").refused("notify:report");
    repo.write("Dockerfile", &web_dockerfile("notified v4", 0)).commit("v4");
    let push = repo.push(&d, "main");
    assert_eq!(push.code, 0, "{push:#?}");
    assert_eq!(hook.received().len(), 2);
}

#[test]
fn a_failing_pre_deploy_trigger_rejects_the_push_and_the_old_release_keeps_serving() {
    let d = Daemon::start();
    d.ssh("apps:create weekday").ok();
    d.ssh("domains:add weekday weekday.example.com").ok();
    let repo = AppRepo::new(&d, "weekday");
    repo.write("Dockerfile", &web_dockerfile("weekday v1", 0)).commit("v1");
    assert_eq!(repo.push(&d, "main").code, 0);
    let good = server_head(&d, "weekday");

    d.ssh(&format!("plugin:install {}", fixture("fridays"))).ok();
    assert!(listed(&d, "fridays").is_some());
    repo.write("Dockerfile", &web_dockerfile("weekday v2", 0)).commit("v2");
    let push = repo.push(&d, "main");
    assert_ne!(push.code, 0, "{push:#?}");
    assert!(remote_line(&push.stderr, "checking the calendar for weekday"), "{}", push.stderr);
    assert!(remote_line(&push.stderr, "no deploys on Fridays"), "{}", push.stderr);
    assert!(push.stderr.contains("pre-receive hook declined"), "{}", push.stderr);
    assert_eq!(server_head(&d, "weekday"), good, "the branch moved to a commit that did not deploy");
    assert_eq!(get(&d, "weekday.example.com"), (200, "weekday v1".into()));
    // No container of the refused release started: v1's one container serves alone.
    let report: serde_json::Value = serde_json::from_str(&d.ssh("ps:report weekday --format json").ok().stdout).unwrap();
    assert_eq!(report["release"], "v1", "{report}");
    assert_eq!(report["running"], 1, "{report}");

    // A restart is a deploy too: refused the same way.
    let restart = d.ssh("ps:restart weekday");
    assert!(restart.code != 0 && restart.code != 255, "{restart:#?}");
    assert!(restart.stderr.contains("no deploys on Fridays"), "{restart:#?}");
    assert_eq!(get(&d, "weekday.example.com"), (200, "weekday v1".into()));

    // Disabled, it stops nothing.
    d.ssh("plugin:disable fridays").ok();
    let push = repo.push(&d, "main");
    assert_eq!(push.code, 0, "{push:#?}");
    assert!(!push.stderr.contains("no deploys on Fridays"), "{}", push.stderr);
    assert_eq!(get(&d, "weekday.example.com"), (200, "weekday v2".into()));
}

/// The lines `recorder` wrote for `trigger`.
fn recorded(d: &Daemon, trigger: &str) -> Vec<String> {
    let events = std::fs::read_to_string(installed(d, "recorder").join("data/events")).unwrap_or_default();
    events.lines().filter(|l| l.split(' ').next() == Some(trigger)).map(str::to_string).collect()
}

#[test]
fn post_create_and_post_delete_run_with_the_apps_name() {
    let d = Daemon::start();
    d.ssh(&format!("plugin:install {}", fixture("recorder"))).ok();
    let dir = installed(&d, "recorder");

    // apps:create, and a first push that creates its app.
    d.ssh("apps:create made-here").ok();
    let repo = AppRepo::new(&d, "pushed-here");
    repo.write("Dockerfile", &web_dockerfile("pushed", 0)).commit("v1");
    assert_eq!(repo.push(&d, "main").code, 0);
    let created = recorded(&d, "post-create");
    assert_eq!(created.len(), 2, "{created:#?}");
    assert!(created[0].starts_with("post-create [made-here] "), "{created:#?}");
    assert!(created[1].starts_with("post-create [pushed-here] "), "{created:#?}");
    // Run in the plugin's directory, named, with the root, and nothing on stdin.
    let env = format!("name=[recorder] cwd=[{0}] dir=[{0}] root=[{1}] stdin=[]", dir.display(), d.root().display());
    assert!(created[0].ends_with(&env), "{created:#?}\nwanted the end: {env}");

    d.ssh("apps:destroy made-here --force").ok();
    d.ssh("apps:destroy pushed-here --force").ok();
    let deleted = recorded(&d, "post-delete");
    assert_eq!(deleted.len(), 2, "{deleted:#?}");
    assert!(deleted[0].starts_with("post-delete [made-here] "), "{deleted:#?}");
    assert!(deleted[1].starts_with("post-delete [pushed-here] "), "{deleted:#?}");
    // The plugin's data outlives the apps (only plugin:uninstall removes it).
    assert!(dir.join("data/events").is_file());
}

#[test]
fn a_push_runs_the_build_and_deploy_triggers_in_order_with_their_arguments() {
    let d = Daemon::start();
    d.ssh(&format!("plugin:install {}", fixture("recorder"))).ok();
    d.ssh("apps:create traced").ok();
    let repo = AppRepo::new(&d, "traced");
    repo.write("Dockerfile", &web_dockerfile("traced v1", 0)).commit("v1");
    let push = repo.push(&d, "main");
    assert_eq!(push.code, 0, "{push:#?}");
    let sha = repo.git(&["rev-parse", "HEAD"]).ok().stdout.trim().to_string();

    let events = std::fs::read_to_string(installed(&d, "recorder").join("data/events")).unwrap();
    let order: Vec<&str> = events.lines().filter_map(|l| l.split(' ').next()).collect();
    assert_eq!(order, ["post-create", "pre-build", "post-build", "pre-deploy", "post-deploy"], "{events}");
    let one = |trigger: &str| recorded(&d, trigger).remove(0);
    assert!(one("pre-build").starts_with(&format!("pre-build [traced] [{sha}] ")), "{events}");
    let post_build = one("post-build");
    let image = post_build.split(['[', ']']).nth(3).unwrap_or_default().to_string();
    assert!(post_build.starts_with("post-build [traced] [") && !image.is_empty(), "{events}");
    let pre_deploy = one("pre-deploy");
    let args: Vec<&str> = pre_deploy.split(" [").skip(1).take(3).map(|a| a.split(']').next().unwrap()).collect();
    assert_eq!(args[0], "traced", "{events}");
    assert_eq!(args[1].trim_start_matches('v'), "1", "{events}");
    assert!(!args[2].is_empty(), "{events}");
    assert!(pre_deploy.contains(" cause=[git push] "), "{events}");
    let post_deploy = one("post-deploy");
    assert!(post_deploy.starts_with("post-deploy [traced] [") && post_deploy.contains(" cause=[git push] "), "{events}");
    // Who pushed: the key, not the hook's root; post-create of a push's app had no deploy.
    assert!(pre_deploy.contains(" by=[admin] ") && post_deploy.contains(" by=[admin] "), "{events}");

    // A config change deploys with its own cause.
    d.ssh("config:set traced GREETING=hi").ok();
    let deployed = recorded(&d, "post-deploy");
    assert_eq!(deployed.len(), 2, "{deployed:#?}");
    assert!(deployed[1].contains(" cause=[config change] ") && deployed[1].contains(" by=[admin] "), "{deployed:#?}");

    // Domains: the app's domains after the change, each its own argument.
    d.ssh("domains:add traced a.example.com b.example.com").ok();
    d.ssh("domains:remove traced a.example.com").ok();
    let updates = recorded(&d, "post-domains-update");
    assert_eq!(updates.len(), 2, "{updates:#?}");
    assert!(updates[0].starts_with("post-domains-update [traced] [a.example.com] [b.example.com] "), "{updates:#?}");
    assert!(updates[1].starts_with("post-domains-update [traced] [b.example.com] "), "{updates:#?}");
}

#[test]
fn a_plugins_commands_get_their_arguments_streams_and_exit_code_for_admins_only() {
    let d = Daemon::start();
    d.ssh(&format!("plugin:install {}", fixture("recorder"))).ok();

    // Arguments as the command line split them, the caller's key, stdin, stdout, exit code.
    let out = d.ssh_as(&d.admin, r#"recorder:echo 'two words' "it's" --flag"#, b"line one\nline two\n");
    let echoed = "two words|it's|--flag|caller=admin name=recorder\nline one\nline two\n";
    assert_eq!(out, Out { code: 0, stdout: echoed.into(), stderr: String::new() });
    let local = d.local(&["recorder:echo", "x"], b"piped");
    assert_eq!(local.code, 0, "{local:#?}");
    assert!(local.stdout.starts_with("x|caller=") && local.stdout.ends_with("name=recorder\npiped"), "{local:#?}");
    assert_eq!(d.ssh("recorder:fail"), Out { code: 3, stdout: String::new(), stderr: "failing on purpose\n".into() });
    assert_eq!(d.ssh("recorder:help").ok().stdout, "Usage: berth recorder[:COMMAND]\n");

    // Not for app keys: a plugin runs as root.
    let bob = keygen(d.dir.path(), "bob");
    d.ssh_as(&d.admin, "ssh-keys:add bob --app blog", bob.public.as_bytes()).ok();
    d.ssh_as(&bob, "recorder:echo x", b"").refused("not an admin key");

    // Disabled, its commands are gone with its triggers.
    d.ssh("plugin:disable recorder").ok();
    d.ssh("recorder:echo x").refused("recorder:echo");
    d.ssh("plugin:enable recorder").ok();
    assert_eq!(d.ssh("recorder:echo x").ok().stdout, "x|caller=admin name=recorder\n");
}

#[test]
fn plugin_refusals_are_one_line_and_install_nothing() {
    let d = Daemon::start();
    let nothing_installed = |d: &Daemon| {
        let dirs: Vec<String> = std::fs::read_dir(d.root().join("plugins"))
            .map(|r| r.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(dirs.is_empty(), "something was installed: {dirs:?}");
    };

    // A directory without plugin.toml is not a plugin.
    d.ssh(&format!("plugin:install {}", fixture("no-manifest"))).refused("plugin.toml");
    nothing_installed(&d);
    // A name that is not lowercase letters, digits and dashes.
    d.ssh(&format!("plugin:install {}", fixture("invalid-name"))).refused("Not_Valid");
    nothing_installed(&d);
    // Git over plain http: refused before anything is fetched.
    d.ssh("plugin:install http://example.com/berth-plugin.git").refused("https");
    nothing_installed(&d);
    // Nothing there at all.
    d.ssh("plugin:install /does/not/exist").refused("/does/not/exist");
    nothing_installed(&d);
    // Unknown plugins cannot be enabled, disabled or uninstalled.
    d.ssh("plugin:enable nope").refused("nope");
    d.ssh("plugin:disable nope").refused("nope");
    d.ssh("plugin:uninstall nope").refused("nope");
    nothing_installed(&d);
    assert_eq!(listed(&d, "Not_Valid"), None);
    assert_eq!(listed(&d, "no-manifest"), None);
}

#[test]
fn installing_an_installed_plugin_upgrades_it_keeping_its_data_and_state_and_global_flags_reach_its_commands() {
    let d = Daemon::start();
    d.ssh(&format!("plugin:install {}", fixture("recorder"))).ok();
    d.ssh("apps:create kept").ok();
    let data = installed(&d, "recorder").join("data");
    assert!(std::fs::read_dir(&data).unwrap().count() > 0, "post-create left nothing in data/");
    let before: Vec<_> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name()).collect();
    d.ssh("plugin:disable recorder").ok();
    let out = d.ssh(&format!("plugin:install {}", fixture("recorder")));
    assert!(out.ok().stdout.contains("Upgraded plugin recorder"), "{out:#?}");
    let after: Vec<_> = std::fs::read_dir(&data).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "the upgrade lost the plugin's data");
    assert!(installed(&d, "recorder").join("disabled").exists(), "the upgrade enabled a disabled plugin");
    d.ssh("plugin:enable recorder").ok();
    // dokku's --app is the command's first argument, as for berth's own commands.
    let out = d.ssh("--app kept recorder:echo x");
    assert!(out.ok().stdout.starts_with("kept|x|caller="), "{out:#?}");
    // A plugin cannot take one of berth's namespaces.
    let dir = d.dir.path().join("apps-plugin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("plugin.toml"), "name = \"apps\"\nversion = \"1\"\ndescription = \"x\"\n").unwrap();
    d.ssh(&format!("plugin:install {}", dir.display())).refused("one of berth's namespaces");
    // A plugin whose plugin.toml broke can still be uninstalled.
    std::fs::write(installed(&d, "recorder").join("plugin.toml"), "not toml [").unwrap();
    d.ssh("plugin:uninstall recorder").ok();
    assert!(!installed(&d, "recorder").exists());
}
