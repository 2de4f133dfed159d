//! Hostile input, table-driven: every line is refused with one ` !     ` line and a non-zero
//! exit (never ssh's 255), changes no state file, and the daemon and the other apps carry on.

use std::collections::BTreeMap;
use std::path::Path;

use crate::harness::*;

/// Every state file under the root (not nginx's logs and pids): path → contents.
fn state(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            if name.starts_with("nginx") || name.ends_with(".git") || name == "tmp" {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if name.ends_with(".toml") {
                files.insert(name, std::fs::read(&path).unwrap_or_default());
            }
        }
    }
    files
}

const CASES: &[(&str, &str)] = &[
    ("apps:create 'Bad Name'", "Invalid app name"),
    ("apps:create ../etc", "Invalid app name"),
    ("apps:create -x", "unexpected argument '-x'"),
    ("apps:create 'a;rm -rf /'", "Invalid app name"),
    ("apps:create target", "already exists"),
    ("config:set target 1A=x", "Invalid env key"),
    ("config:set target 'A B=x'", "Invalid env key"),
    ("config:set target 'A\nB=x'", "Invalid env key"),
    ("config:set target A", "expected KEY=value"),
    ("config:set target =x", "Invalid env key"),
    ("config:set nope A=1", "App nope does not exist"),
    ("config:set target --encoded A=%%%", "base64"),
    ("domains:add target 'bad;.com'", "Invalid domain"),
    ("domains:add target '*.*.com'", "Invalid domain"),
    ("domains:add target a..com", "empty label"),
    ("domains:add target 'a.com{'", "Invalid domain"),
    ("domains:add target victim.example.com", "already used by app victim"),
    ("domains:add target '*.example.com'", "covers victim.example.com, a domain of app victim"),
    ("domains:set target ok.example.org '*.com'", "covers victim.example.com, a domain of app victim"),
    ("domains:set-global '*.example.com'", "cannot be a wildcard"),
    ("ports:set target http:0:5000", "bad host port"),
    ("ports:set target udp:53:53", "the scheme must be http or https"),
    ("ports:set target http:8080:5000 http:8080:5001", "two container ports"),
    ("ports:set target 'http:80:5000;'", "bad container port"),
    ("ps:scale target web=-1", "whole number from 0 to 100"),
    ("ps:scale target web=abc", "whole number from 0 to 100"),
    ("ps:scale target 'we b=1'", "Invalid process type"),
    ("ps:scale target web=100000", "at most 100 containers"),
    ("ps:set target restart-policy bogus", "Invalid restart-policy specified"),
    ("checks:set target timeout 999999", "between 1 and 3600"),
    ("checks:set target attempts -1", "unexpected argument"),
    ("resource:limit target --memory 1x", "Invalid memory size"),
    ("resource:limit target --memory 1k", "at least 6m"),
    ("storage:mount target ../../etc:/etc", "Invalid mount"),
    ("storage:mount target name:relative", "container path must be absolute"),
    ("storage:mount target 'name:/data:rw,exec'", "the only option is ro"),
    ("builder:set target nonsense", "Invalid property specified, valid properties include: build-concurrency, build-cpu-priority, build-cpu-shares, build-dir, build-memory, selected, skip-cleanup"),
    ("buildpacks:add target file:///etc", "only https:// git URLs"),
    ("buildpacks:add target git@host:x.git", "only https:// git URLs"),
    ("buildpacks:add target https://user:pw@example.com/x.git", "credentials in the URL"),
    ("git:set target deploy-branch ../x", "Invalid branch name"),
    ("releases:rollback target v99", "has no release v99"),
    ("releases:set target keep 0", "a number from 1 to 100"),
    ("letsencrypt:set --global email 'not an email'", "Invalid email"),
    ("letsencrypt:set --global server http://insecure.example", "expected an https:// directory URL"),
    ("nginx:set target hsts maybe", "true or false"),
    ("ssh-keys:add 'bad name'", "Invalid key name"),
    ("nope:nope", "is not a berth command"),
    ("logs target -n -5", "unexpected argument"),
    ("run target true", "has not been deployed yet"),
    ("certs:add target", "Stdin is not a tar"),
    ("git-receive-pack '../x'", "Invalid app name"),
    ("git-upload-pack '/etc/passwd'", "Invalid app name"),
    ("git-upload-pack nothere", "App nothere does not exist"),
    ("enter target web.1", "has no running web.1"),
    ("letsencrypt:enable target", "Set an email for Let's Encrypt first"),
    ("network:create 'Bad!'", "Invalid network name"),
    ("network:set target attach-post-create nowhere", "Network nowhere does not exist"),
    ("network:set target nonsense", "Invalid property specified, valid properties include: attach-post-create, attach-post-deploy, tld"),
    ("network:destroy nowhere", "Network nowhere does not exist"),
    ("scheduler:set target selected kubernetes", "Invalid scheduler"),
    ("scheduler:set target constraint 'env==qa'", "Invalid constraint"),
    ("scheduler:set target constraint 'node.labels.env==$(reboot)'", "Invalid constraint"),
    ("scheduler:set target selected swarm", "not a Swarm manager: run cluster:init first"),
    ("cluster:list", "not a Swarm manager"),
    ("cluster:label nowhere a=b", "not a Swarm manager"),
    ("cluster:label nowhere 'a b'", "Invalid label"),
    ("cluster:registry 'http://x:5000'", "Invalid registry"),
    ("cluster:init --advertise-addr not-an-ip", "Invalid address"),
];

#[test]
fn hostile_commands_are_refused_with_one_line_and_change_nothing() {
    assert!(CASES.len() >= 50);
    // Some rows are refused because this engine manages no cluster: not while a test makes it one.
    let _no_cluster = engine_swarm(false);
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "victim");
    repo.write("Dockerfile", &web_dockerfile("still here", 0)).commit("v1");
    repo.push(&d, "main").ok();
    d.ssh("domains:add victim victim.example.com").ok();
    d.ssh("apps:create target").ok();
    let before = state(&d.root());
    for (i, (command, needle)) in CASES.iter().enumerate() {
        let out = d.ssh(command);
        assert!(out.code != 0 && out.code != 255, "{command:?} was not refused: {out:#?}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{command:?}: expected one error line: {out:#?}");
        assert!(lines[0].starts_with(" !     ") && lines[0].contains(needle), "{command:?}: expected {needle:?}: {out:#?}");
        assert!(lines[0].len() < 400, "{command:?}: a {}-byte error line", lines[0].len());
        assert_eq!(state(&d.root()), before, "{command:?} changed state");
        if i % 10 == 9 {
            assert_eq!(get(&d, "victim.example.com"), (200, "still here".into()), "after {command:?}");
        }
    }
    d.ssh("version").ok();
    assert_eq!(get(&d, "victim.example.com"), (200, "still here".into()));
}

#[test]
fn hostile_pushes_are_rejected_and_the_running_release_keeps_serving() {
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "victim");
    // Not the other test's page: the same Dockerfile is the same cached image on the one
    // engine, which one test's teardown can remove while the other starts it.
    repo.write("Dockerfile", &web_dockerfile("still standing", 0)).commit("v1");
    repo.push(&d, "main").ok();
    d.ssh("domains:add victim victim.example.com").ok();
    let huge_procfile: String = (0..20_000).map(|i| format!("p{i}: sleep {i}\n")).collect();
    let cron: Vec<String> = (0..20_000).map(|i| format!("{{\"command\": \"echo {i}\", \"schedule\": \"* * * * *\"}}")).collect();
    let huge_app_json = format!("{{\"cron\": [{}]}}", cron.join(","));
    let pushes: &[(&str, &str, &str)] = &[
        ("Procfile", "web sleep 1\n", "Procfile"),
        ("Procfile", "WEB: x\n", "Procfile"),
        ("Procfile", &huge_procfile, "Procfile"),
        ("app.json", "{not json", "app.json is not valid"),
        ("app.json", &huge_app_json, "app.json is over 256 KiB"),
        ("app.json", "{\"healthchecks\": {\"web\": [{\"path\": \"/\", \"initialDelay\": 99999999}]}}", "initialDelay is at most 600 seconds"),
        ("app.json", "{\"healthchecks\": {\"web\": [{\"path\": \"no-slash\"}]}}", "path must start with /"),
        ("Dockerfile", "FROM berth/other:v1\n", "an app may use only public images"),
        ("Dockerfile", "FROM berth-test/busybox\nRUN exit 3\n", "returned a non-zero code"),
    ];
    for (file, text, needle) in pushes {
        let before = state(&d.root());
        let releases = d.ssh("releases victim --format json").ok().stdout.clone();
        repo.write(file, text).commit("hostile");
        let out = repo.push(&d, "main");
        assert_ne!(out.code, 0, "{file}: {text:.60}");
        assert!(out.stderr.contains(needle), "{file}: expected {needle:?}:\n{}", out.stderr);
        assert_eq!(get(&d, "victim.example.com"), (200, "still standing".into()), "{file}");
        // A failed deploy is recorded as failed, nothing else changes.
        let after = state(&d.root());
        for (path, contents) in &before {
            if !path.ends_with("releases.toml") {
                assert_eq!(after.get(path), Some(contents), "{file} changed {path}");
            }
        }
        let now: serde_json::Value = serde_json::from_str(&d.ssh("releases victim --format json").ok().stdout).unwrap();
        let was: serde_json::Value = serde_json::from_str(&releases).unwrap();
        assert_eq!(now.as_array().unwrap().iter().filter(|r| r["status"] == "active").count(), 1);
        assert!(now.as_array().unwrap().len() <= was.as_array().unwrap().len() + 1);
        // Back to a good tree for the next case.
        repo.git(&["reset", "-q", "--hard", "HEAD~1"]).ok();
    }
}
