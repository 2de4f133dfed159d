//! Each command as a user types it over SSH, and each refusal.

use crate::harness::{Daemon, keygen};

#[test]
fn the_first_session_walkthrough() {
    let d = Daemon::start();
    d.ssh("apps:create myapp").ok();
    assert_eq!(d.ssh("apps:list").ok().stdout, "=====> My Apps\nmyapp\n");
    // The local shell strips the quotes; the value still arrives whole.
    d.ssh("config:set myapp GREETING=hello world PORT=5000").ok();
    assert_eq!(d.ssh("config:get myapp GREETING").ok().stdout, "hello world\n");
    d.ssh("config:set myapp 'QUOTED=a  b'").ok();
    assert_eq!(d.ssh("config:get myapp QUOTED").ok().stdout, "a  b\n");
    d.ssh("domains:add myapp www.example.com").ok();
    let report: serde_json::Value = serde_json::from_str(&d.ssh("apps:report myapp --format json").ok().stdout).unwrap();
    assert_eq!(report["app-locked"], false);
    assert!(report["app-dir"].as_str().unwrap().ends_with("/apps/myapp"));
    let domains: serde_json::Value = serde_json::from_str(&d.ssh("domains:report myapp --format json").ok().stdout).unwrap();
    assert_eq!(domains["domains-app-vhosts"][0], "www.example.com");
}

#[test]
fn help_and_version_and_unknown_commands() {
    let d = Daemon::start();
    // No command, or `help`: the namespaces, as dokku lists them; `help --all`: every command.
    let help = d.ssh("").ok().stdout.clone();
    for name in ["apps ", "config ", "domains ", "ports ", "ssh-keys "] {
        assert!(help.contains(&format!("    {name}")), "{name} not in help:\n{help}");
    }
    assert_eq!(d.ssh("help").ok().stdout, help);
    let all = d.ssh("help --all").ok().stdout.clone();
    for name in ["apps:create", "config:set", "domains:add", "ports:set", "ssh-keys:add"] {
        assert!(all.contains(name), "{name} not in help --all:\n{all}");
    }
    assert!(d.ssh("config:set --help").ok().stdout.contains("KEY=VALUE"));
    assert!(d.ssh("version").ok().stdout.starts_with("berth "));
    assert_eq!(d.ssh("frobnicate x").refused("is not a berth command").stderr, " !     `frobnicate` is not a berth command.\n");
    d.ssh("config:set").refused("required");
    d.ssh("apps:create a b c").refused("unexpected argument");
    d.ssh("config:set x 'unterminated").refused("cannot split");
}

#[test]
fn apps_lifecycle() {
    let d = Daemon::start();
    d.ssh("apps:create one").ok();
    d.ssh("apps:create one").refused("App one already exists");
    d.ssh("apps:exists one").ok();
    d.ssh("apps:exists two").refused("App two does not exist");
    d.ssh("config:set one K=v").ok();
    d.ssh("apps:rename one two").ok();
    d.ssh("apps:exists one").refused("does not exist");
    assert_eq!(d.ssh("config:get two K").ok().stdout, "v\n");
    d.ssh("apps:create three").ok();
    d.ssh("apps:rename two three").refused("App three already exists");
    assert_eq!(d.ssh("apps:list --quiet").ok().stdout, "three\ntwo\n");

    d.ssh("apps:lock two").ok();
    let report: serde_json::Value = serde_json::from_str(&d.ssh("apps:report two --format json").stdout).unwrap();
    assert_eq!(report["app-locked"], true);
    d.ssh("apps:unlock two").ok();

    // Without --force the name must be typed back, on a terminal: a script piping it in is
    // refused (it says --force).
    let piped = d.ssh_as(&d.admin, "apps:destroy two", b"two\n");
    assert_eq!(piped.code, 1, "{piped:#?}");
    assert!(piped.stderr.contains("confirm on a terminal (ssh -t) or run it with --force") && piped.stderr.lines().count() == 1, "{piped:#?}");
    let wrong = d.ssh_tty("apps:destroy two", b"nope\r");
    assert_eq!(wrong.code, 1, "{wrong:#?}");
    assert!(format!("{}{}", wrong.stdout, wrong.stderr).contains("Confirmation did not match two"), "{wrong:#?}");
    d.ssh("apps:exists two").ok();
    let typed = d.ssh_tty("apps:destroy two", b"two\r");
    assert_eq!(typed.code, 0, "{typed:#?}");
    d.ssh("apps:exists two").refused("does not exist");
    d.ssh("apps:destroy three --force").ok();
    assert_eq!(d.ssh("apps:list --quiet").ok().stdout, "");
    d.ssh("apps:destroy ghost --force").refused("App ghost does not exist");
}

#[test]
fn config_commands() {
    let d = Daemon::start();
    d.ssh("apps:create app").ok();
    let set = d.ssh("config:set app B=2 A=1 --no-restart").ok().stdout.clone();
    assert_eq!(set, "-----> Setting config vars\n       A: 1\n       B: 2\n");
    assert_eq!(d.ssh("config:show app").ok().stdout, "=====> app env vars\n       A: 1\n       B: 2\n");
    assert_eq!(d.ssh("config:keys app").ok().stdout, "A\nB\n");
    d.ssh("config:set app 'Q=it'\"'\"'s here'").ok();
    let exports = d.ssh("config:export app").ok().stdout.clone();
    assert_eq!(exports, "export A=1\nexport B=2\nexport Q='it'\\''s here'\n");
    let json: serde_json::Value = serde_json::from_str(&d.ssh("config:show app --format json").stdout).unwrap();
    assert_eq!(json["Q"], "it's here");
    // base64 of "hello\nworld"
    d.ssh("config:set app --encoded M=aGVsbG8Kd29ybGQ=").ok();
    assert_eq!(d.ssh("config:get app M").ok().stdout, "hello\nworld\n");
    d.ssh("config:unset app A M").ok();
    assert_eq!(d.ssh("config:keys app").ok().stdout, "B\nQ\n");
    d.ssh("config:get app A").refused("Config var A is not set for app");
}

#[test]
fn config_refusals_change_nothing() {
    let d = Daemon::start();
    d.ssh("apps:create app").ok();
    d.ssh("config:set app KEEP=me").ok();
    let before = d.app_toml("app");
    d.ssh("config:set app GOOD=1 1BAD=2").refused("Invalid env key \"1BAD\"");
    d.ssh("config:set app BAD-KEY=1").refused("Invalid env key");
    d.ssh("config:set app NOEQUALS").refused("expected KEY=value");
    d.ssh("config:set app =x").refused("Invalid env key");
    d.ssh("config:set app --encoded A=%%%").refused("not valid base64");
    d.ssh("config:unset app 'B;C'").refused("Invalid env key");
    d.ssh("config:set ghost A=1").refused("App ghost does not exist");
    d.ssh("config:set Ghost A=1").refused("Invalid app name");
    d.ssh("config:set ../etc A=1").refused("Invalid app name");
    assert_eq!(d.app_toml("app"), before);
}

#[test]
fn domains_commands() {
    let d = Daemon::start();
    d.ssh("apps:create app").ok();
    d.ssh("apps:create other").ok();
    d.ssh("domains:add app WWW.Example.com api.example.com").ok();
    let vhosts = |app: &str| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(&d.ssh(&format!("domains:report {app} --format json")).ok().stdout).unwrap()
            ["domains-app-vhosts"]
            .clone()
    };
    assert_eq!(vhosts("app"), serde_json::json!(["www.example.com", "api.example.com"]));
    d.ssh("domains:add other www.example.com").refused("already used by app app");
    d.ssh("domains:remove app api.example.com").ok();
    d.ssh("domains:remove app nope.example.com").refused("is not a domain of app");
    d.ssh("domains:set app a.example.com b.example.com").ok();
    assert_eq!(vhosts("app"), serde_json::json!(["a.example.com", "b.example.com"]));
    d.ssh("domains:clear app").ok();
    assert_eq!(vhosts("app"), serde_json::json!([]));

    let before = d.app_toml("app");
    for bad in ["'a.com;evil'", "'a b.com'", "x-.com", "a..com", "'x.com{'", "a_b.com"] {
        d.ssh(&format!("domains:add app {bad}")).refused("Invalid domain");
    }
    d.ssh("domains:add app good.com 'bad;.com'").refused("Invalid domain");
    assert_eq!(d.app_toml("app"), before);

    d.ssh("domains:set-global berth.example.org").ok();
    d.ssh("apps:create fresh").ok();
    assert_eq!(vhosts("fresh"), serde_json::json!(["fresh.berth.example.org"]));
    d.ssh("apps:rename fresh renamed").ok();
    assert_eq!(vhosts("renamed"), serde_json::json!(["renamed.berth.example.org"]));
    let report = d.ssh("domains:report renamed").ok().stdout.clone();
    assert!(report.contains("Domains global vhosts:  berth.example.org"), "{report}");
    d.ssh("domains:set-global '*.x.org'").refused("cannot be a wildcard");
    d.ssh("domains:clear-global").ok();
}

#[test]
fn ports_commands() {
    let d = Daemon::start();
    d.ssh("apps:create app").ok();
    let list = |d: &Daemon| -> serde_json::Value { serde_json::from_str(&d.ssh("ports:list app --format json").ok().stdout).unwrap() };
    assert_eq!(list(&d), serde_json::json!([{"scheme": "http", "host_port": 80, "container_port": 5000}]));
    let text = d.ssh("ports:list app").ok().stdout.clone();
    assert!(text.contains("http    80         5000"), "{text}");
    d.ssh("ports:add app https:443:5000").ok();
    assert_eq!(list(&d).as_array().unwrap().len(), 2);
    d.ssh("ports:add app https:443:5000").refused("Port mapping https:443:5000 is already set for app");
    // An app's key: host ports other than 80 and 443 only when berth.toml lists them (an
    // admin chooses any, as on dokku).
    let user = keygen(d.dir.path(), "user");
    d.local(&["ssh-keys:add", "user", "--app", "app"], user.public.as_bytes()).ok();
    d.ssh_as(&user, "ports:set app http:8080:3000", b"").refused("Host port 8080 of http:8080:3000 is not one berth serves (80, 443; proxy_ports in berth.toml adds more)");
    d.setting("proxy_ports = [8080, 8081]".into());
    d.ssh_as(&user, "ports:set app http:8080:3000", b"").ok();
    assert_eq!(list(&d), serde_json::json!([{"scheme": "http", "host_port": 8080, "container_port": 3000}]));
    d.ssh("ports:add app http:8081:3000").ok();
    d.ssh("ports:remove app 8080").ok();
    assert_eq!(list(&d)[0]["host_port"], 8081);
    d.ssh("ports:remove app http:8081:3000").refused("no port mapping");
    d.ssh("ports:clear app").ok();
    assert_eq!(list(&d)[0]["host_port"], 80);

    let before = d.app_toml("app");
    d.ssh("ports:set app tcp:80:5000").refused("scheme must be http or https");
    d.ssh("ports:set app http:80").refused("wrong number of fields");
    d.ssh("ports:set app http:99999:5000").refused("bad host port");
    d.ssh("ports:set app http:80:5000 https:80:5000").refused("different schemes");
    d.ssh("ports:add app https:80:5000").refused("different schemes");
    d.ssh("ports:add app http:80:5001").refused("two container ports");
    d.ssh("ports:remove app 9999").refused("No port mapping 9999");
    assert_eq!(d.app_toml("app"), before);
}

#[test]
fn concurrent_changes_to_one_app_are_all_kept() {
    let d = Daemon::start();
    d.ssh("apps:create app").ok();
    std::thread::scope(|s| {
        for i in 0..8 {
            let d = &d;
            s.spawn(move || d.ssh(&format!("config:set app K{i}={i}")).ok().code);
        }
    });
    assert_eq!(d.ssh("config:keys app").ok().stdout, "K0\nK1\nK2\nK3\nK4\nK5\nK6\nK7\n");
}
