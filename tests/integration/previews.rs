//! Preview environments: a pushed branch other than the deploy branch becomes the app
//! `APP--SLUG`, served at `SLUG.<APP's domain>`, with the parent's config (minus excluded
//! keys, plus overrides), destroyed with its branch, by its TTL or by `previews:destroy`;
//! the parent keeps serving its own version throughout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::harness::*;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// Calls `f` every `every` until it returns Ok; fails the test with its last reason after
/// `timeout`.
#[track_caller]
fn poll<T>(timeout: Duration, every: Duration, what: &str, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(value) => return value,
            Err(why) if Instant::now() >= deadline => panic!("{what}: not within {timeout:?}: {why}"),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// The preview's name by the rule users are told: the branch lowercased, every run of
/// characters other than a-z0-9 one `-`, trimmed of dashes.
fn slug(branch: &str) -> String {
    let mut slug = String::new();
    for c in branch.to_ascii_lowercase().chars() {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_matches('-').to_string()
}

/// Checks out `branch` (made from main the first time), commits a web app serving `text`
/// (after `delay` seconds) on it, pushes it with `key`, and goes back to main.
fn push_branch_as(key: &Key, repo: &AppRepo, branch: &str, text: &str, delay: u32) -> Out {
    let exists = repo.git(&["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")]).code == 0;
    if exists {
        repo.git(&["checkout", "-q", branch]).ok();
    } else {
        repo.git(&["checkout", "-q", "-b", branch, "main"]).ok();
    }
    repo.write("Dockerfile", &web_dockerfile(text, delay)).commit(text);
    let out = repo.push_as(key, &[branch]);
    repo.git(&["checkout", "-q", "main"]).ok();
    out
}

fn push_branch(d: &Daemon, repo: &AppRepo, branch: &str, text: &str) -> Out {
    push_branch_as(&d.admin, repo, branch, text, 0)
}

/// Pushes main serving `text`; the push must succeed.
fn deploy_main(d: &Daemon, repo: &AppRepo, text: &str) {
    if repo.git(&["rev-parse", "--verify", "--quiet", "refs/heads/main"]).code == 0 {
        repo.git(&["checkout", "-q", "main"]).ok();
    }
    repo.write("Dockerfile", &web_dockerfile(text, 0)).commit(text);
    let out = repo.push(d, "main");
    assert_eq!(out.code, 0, "push of main failed: {out:#?}");
}

/// The push succeeded and said where the preview of `branch` is served: the text after
/// `Preview of APP for BRANCH:` (that line and the next) names `http://HOST`.
#[track_caller]
fn assert_preview_announced(out: &Out, app: &str, branch: &str, host: &str) {
    assert_eq!(out.code, 0, "the push of {branch} failed: {out:#?}");
    let marker = format!("Preview of {app} for {branch}:");
    let Some(at) = out.stderr.find(&marker) else {
        panic!("{marker:?} missing from the push's output:\n{}", out.stderr);
    };
    let after: String = out.stderr[at + marker.len()..].lines().take(2).collect::<Vec<_>>().join("\n");
    assert!(after.contains(&format!("http://{host}")), "the preview's URL (http://{host}) does not follow {marker:?}:\n{}", out.stderr);
}

/// `previews APP --format json`.
#[track_caller]
fn previews(d: &Daemon, app: &str) -> Vec<serde_json::Value> {
    let out = d.ssh(&format!("previews {app} --format json"));
    out.ok();
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("previews {app} --format json is not JSON ({e}): {out:#?}"));
    value.as_array().unwrap_or_else(|| panic!("previews {app} --format json is not an array: {value}")).clone()
}

/// The entry of `previews APP --format json` for `branch`.
#[track_caller]
fn preview_entry(d: &Daemon, app: &str, branch: &str) -> serde_json::Value {
    let list = previews(d, app);
    list.iter().find(|p| p["branch"] == branch).cloned().unwrap_or_else(|| panic!("no preview of {branch} in {list:?}"))
}

/// One row of `previews:report APP` (text), as a person reads it.
#[track_caller]
fn report_row(d: &Daemon, app: &str, label: &str) -> String {
    let out = d.ssh(&format!("previews:report {app}"));
    out.ok();
    let prefix = format!("{label}:");
    out.stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(&prefix).map(|v| v.trim().to_string()))
        .unwrap_or_else(|| panic!("no {label:?} row in previews:report {app}:\n{}", out.stdout))
}

/// Ids of the app's running containers, sorted.
fn containers_of(d: &Daemon, app: &str) -> Vec<String> {
    let mut ids = d.container_ids(false, &[&format!("berth.app={app}")]);
    ids.sort();
    ids
}

fn release_count(d: &Daemon, app: &str) -> usize {
    let out = d.ssh(&format!("releases {app} --format json"));
    out.ok();
    serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap().as_array().map_or(0, Vec::len)
}

fn ps_report(d: &Daemon, app: &str) -> serde_json::Value {
    let out = d.ssh(&format!("ps:report {app} --format json"));
    out.ok();
    serde_json::from_str(&out.stdout).unwrap()
}

/// Images of `app` in this daemon's root: tagged `berth/APP` (a Dockerfile build's image
/// carries no label) unless labelled as another root's, or labelled as this root's app (a
/// buildpack build's). Tags are the engine's: an earlier run's leftover is removed with the
/// app as well, since berth takes any `berth/APP` tag not labelled as another root's.
fn images_of(d: &Daemon, app: &str) -> Vec<String> {
    let root = d.root().display().to_string();
    let tagged = docker(&["image", "ls", "-q", &format!("berth/{app}")]);
    let owner = |id: &str| docker(&["image", "inspect", "-f", "{{index .Config.Labels \"berth.root\"}}", id]).trim().to_string();
    let mut ids: Vec<String> = tagged.split_whitespace().filter(|id| [String::new(), root.clone()].contains(&owner(id))).map(String::from).collect();
    let labelled = docker(&[
        "image", "ls", "-q",
        "--filter", &format!("label=berth.app={app}"),
        "--filter", &format!("label=berth.root={root}"),
    ]);
    ids.extend(labelled.split_whitespace().map(String::from));
    ids.sort();
    ids.dedup();
    ids
}

/// Removes what an earlier run of a test left of `parent` and its previews (tags are the
/// engine's, not a root's), so that only this run's images are judged.
fn forget_images(parent: &str) {
    let listed = docker(&["image", "ls", "--format", "{{.Repository}} {{.ID}}"]);
    let ours = format!("berth/{parent}");
    let ids: Vec<&str> = listed.lines().filter_map(|l| l.split_once(' ')).filter(|(repo, _)| *repo == ours || repo.starts_with(&format!("{ours}--"))).map(|(_, id)| id).collect();
    if !ids.is_empty() {
        let _ = std::process::Command::new("docker").args(["rmi", "-f"]).args(&ids).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status();
    }
}

/// Whether the parent's bare repository has `branch`.
fn server_has_branch(d: &Daemon, parent: &str, branch: &str) -> bool {
    let repo = d.root().join("apps").join(parent).join("repo.git");
    std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")])
        .output()
        .unwrap()
        .status
        .success()
}

/// Nothing of the preview `app` is left: no app, no container (running or not), no image,
/// no state, no site; its host answers 404.
#[track_caller]
fn assert_preview_gone(d: &Daemon, app: &str, host: &str) {
    d.ssh(&format!("apps:exists {app}")).refused("does not exist");
    poll(Duration::from_secs(30), Duration::from_millis(500), &format!("{app}'s containers and images to go"), || {
        let containers = d.container_ids(true, &[&format!("berth.app={app}")]);
        let images = images_of(d, app);
        if containers.is_empty() && images.is_empty() { Ok(()) } else { Err(format!("containers {containers:?}, images {images:?}")) }
    });
    assert!(!d.root().join("apps").join(app).exists(), "{app}'s state directory is left");
    let site = d.root().join("nginx/sites").join(format!("{app}.conf"));
    assert!(!site.exists(), "{app}'s nginx site is left");
    assert_eq!(get(d, host).0, 404, "{host} still answers");
}

/// Requests each `(host, body prefix)` in a loop while `during` runs; returns its result,
/// how many requests were answered as expected, and the ones that were not.
fn probe_during<T>(d: &Daemon, hosts: &[(&str, &str)], during: impl FnOnce() -> T) -> (T, usize, Vec<(String, u16, String)>) {
    let stop = AtomicBool::new(false);
    let served = Mutex::new(0usize);
    let failed = Mutex::new(Vec::new());
    let result = std::thread::scope(|s| {
        for &(host, prefix) in hosts {
            let (stop, served, failed) = (&stop, &served, &failed);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (status, body) = get(d, host);
                    if status == 200 && body.starts_with(prefix) {
                        *served.lock().unwrap() += 1;
                    } else {
                        failed.lock().unwrap().push((host.to_string(), status, body));
                    }
                }
            });
        }
        let result = during();
        stop.store(true, Ordering::Relaxed);
        result
    });
    (result, served.into_inner().unwrap(), failed.into_inner().unwrap())
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn a_branch_preview_serves_its_version_while_the_parent_serves_its_own() {
    let d = Daemon::start();
    d.ssh("apps:create pvserve").ok();
    d.ssh("domains:add pvserve serve.example.com").ok();
    let repo = AppRepo::new(&d, "pvserve");
    // A web and a worker process; the parent runs both.
    repo.write("Dockerfile", &web_dockerfile("serve main", 0))
        .write("Procfile", "web: sh -c 'exec httpd -f -p $PORT -h /www'\nworker: sh -c 'while true; do sleep 1; done'\n")
        .commit("main");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{out:#?}");
    d.ssh("ps:scale pvserve worker=1").ok();
    assert_eq!(get(&d, "serve.example.com"), (200, "serve main".into()));

    // Off by default: a branch deploys nothing, as before.
    assert_eq!(report_row(&d, "pvserve", "Previews enabled"), "false");
    let out = push_branch(&d, &repo, "feature", "serve feature v0");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("Pushed feature: not deployed"), "{}", out.stderr);
    assert!(!out.stderr.contains("Preview of"), "{}", out.stderr);
    d.ssh("apps:exists pvserve--feature").refused("does not exist");
    assert_eq!(get(&d, "feature.serve.example.com").0, 404);

    d.ssh("previews:enable pvserve").ok();
    assert_eq!(report_row(&d, "pvserve", "Previews enabled"), "true");
    // Web and worker of the parent (once whatever ps:scale retires has gone).
    let parent_containers = poll(Duration::from_secs(30), Duration::from_millis(500), "the parent's web and worker", || {
        let ids = containers_of(&d, "pvserve");
        if ids.len() == 2 { Ok(ids) } else { Err(format!("{ids:?}")) }
    });
    let parent_releases = release_count(&d, "pvserve");

    let out = push_branch(&d, &repo, "feature", "serve feature v1");
    assert_preview_announced(&out, "pvserve", "feature", "feature.serve.example.com");
    assert_eq!(get(&d, "feature.serve.example.com"), (200, "serve feature v1".into()));
    assert_eq!(get(&d, "serve.example.com"), (200, "serve main".into()));
    // The parent is untouched: same containers, no new release.
    assert_eq!(containers_of(&d, "pvserve"), parent_containers, "the parent's containers changed");
    assert_eq!(release_count(&d, "pvserve"), parent_releases, "the parent got a release");

    // Listed, as JSON and as text.
    let list = previews(&d, "pvserve");
    assert_eq!(list.len(), 1, "{list:?}");
    let p = &list[0];
    assert_eq!(p["branch"], "feature", "{p}");
    assert_eq!(p["app"], "pvserve--feature", "{p}");
    assert!(p["url"].as_str().is_some_and(|u| u.contains("http://feature.serve.example.com")), "{p}");
    assert_eq!(p["release"], 1, "{p}");
    assert!(p["age_seconds"].as_u64().is_some(), "{p}");
    let expires = p["expires_in_seconds"].as_u64().unwrap_or_else(|| panic!("expires_in_seconds: {p}"));
    assert!(expires > 0 && expires <= 7 * 86_400, "default TTL is 7 days: {p}");
    let text = d.ssh("previews pvserve").ok().stdout.clone();
    assert!(text.contains("feature") && text.contains("pvserve--feature"), "{text}");

    // An app of its own, running web=1 only (the parent's worker scale is not inherited).
    d.ssh("apps:exists pvserve--feature").ok();
    let report = ps_report(&d, "pvserve--feature");
    assert_eq!(report["running"], 1, "{report}");
    assert_eq!(report["containers"], serde_json::json!(["web.1: running (v1)"]), "{report}");
    assert_eq!(containers_of(&d, "pvserve--feature").len(), 1);
    assert_eq!(release_count(&d, "pvserve--feature"), 1);

    // Disabled: no new preview; the existing one stays.
    d.ssh("previews:disable pvserve").ok();
    assert_eq!(report_row(&d, "pvserve", "Previews enabled"), "false");
    let out = push_branch(&d, &repo, "later", "serve later");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("Pushed later: not deployed"), "{}", out.stderr);
    assert!(!out.stderr.contains("Preview of"), "{}", out.stderr);
    d.ssh("apps:exists pvserve--later").refused("does not exist");
    assert_eq!(get(&d, "later.serve.example.com").0, 404);
    assert_eq!(get(&d, "feature.serve.example.com"), (200, "serve feature v1".into()));
    assert_eq!(previews(&d, "pvserve").len(), 1);
    assert_eq!(containers_of(&d, "pvserve"), parent_containers, "the parent's containers changed");

    // Deleting an existing preview's branch destroys it, previews on or off.
    let out = repo.push(&d, ":feature");
    assert_eq!(out.code, 0, "{out:#?}");
    assert_preview_gone(&d, "pvserve--feature", "feature.serve.example.com");
    assert!(previews(&d, "pvserve").is_empty());
    assert_eq!(get(&d, "serve.example.com"), (200, "serve main".into()));
}

#[test]
fn a_preview_inherits_the_parents_config_at_each_push_minus_excluded_keys_plus_overrides() {
    let d = Daemon::start();
    d.ssh("apps:create pvconf").ok();
    d.ssh("domains:add pvconf conf.example.com").ok();
    d.ssh("config:set pvconf SHARED=from-parent SECRET=parent-secret MODE=parent").ok();
    let repo = AppRepo::new(&d, "pvconf");
    // The page shows the env the web process got.
    let env_app = |tag: &str| {
        format!(
            "FROM berth-test/busybox\nCMD [\"sh\", \"-c\", \"mkdir -p /www && echo \\\"{tag} MODE=$MODE SHARED=$SHARED SECRET=$SECRET EXTRA=$EXTRA\\\" > /www/index.html && exec httpd -f -p $PORT -h /www\"]\n"
        )
    };
    repo.write("Dockerfile", &env_app("main")).commit("main");
    assert_eq!(repo.push(&d, "main").code, 0);
    let parent_page = "main MODE=parent SHARED=from-parent SECRET=parent-secret EXTRA=";
    assert_eq!(get(&d, "conf.example.com"), (200, parent_page.into()));

    d.ssh("previews:enable pvconf").ok();
    d.ssh("previews:set pvconf config-exclude SECRET").ok();
    d.ssh("previews:set pvconf config MODE=preview EXTRA=only-preview").ok();
    assert!(report_row(&d, "pvconf", "Previews config exclude").contains("SECRET"));
    let overrides = report_row(&d, "pvconf", "Previews config");
    assert!(overrides.contains("MODE") && overrides.contains("EXTRA"), "{overrides}");

    repo.git(&["checkout", "-q", "-b", "conf"]).ok();
    repo.write("Dockerfile", &env_app("conf")).commit("conf 1");
    let out = repo.push(&d, "conf");
    assert_preview_announced(&out, "pvconf", "conf", "conf.conf.example.com");
    assert_eq!(get(&d, "conf.conf.example.com"), (200, "conf MODE=preview SHARED=from-parent SECRET= EXTRA=only-preview".into()));
    assert_eq!(d.ssh("config:get pvconf--conf SHARED").ok().stdout, "from-parent\n");
    assert_eq!(d.ssh("config:get pvconf--conf MODE").ok().stdout, "preview\n");
    assert_eq!(d.ssh("config:get pvconf--conf EXTRA").ok().stdout, "only-preview\n");
    d.ssh("config:get pvconf--conf SECRET").refused("not set");
    let out = d.ssh("run pvconf--conf sh -c 'echo $MODE-$SECRET-$SHARED'");
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(out.stdout, "preview--from-parent\n");
    // The parent keeps its own config: the overrides are the preview's alone.
    assert_eq!(get(&d, "conf.example.com"), (200, parent_page.into()));
    assert_eq!(d.ssh("config:get pvconf MODE").ok().stdout, "parent\n");
    d.ssh("config:get pvconf EXTRA").refused("not set");

    // The parent's config as it is at the next push: a changed value, no exclusions any
    // more (no keys clears the list), and overrides replaced (EXTRA gone).
    d.ssh("config:set pvconf SHARED=changed").ok();
    d.ssh("previews:set pvconf config-exclude").ok();
    d.ssh("previews:set pvconf config MODE=second").ok();
    assert_eq!(report_row(&d, "pvconf", "Previews config exclude"), "");
    let overrides = report_row(&d, "pvconf", "Previews config");
    assert!(overrides.contains("MODE") && !overrides.contains("EXTRA"), "{overrides}");
    repo.write("Dockerfile", &env_app("conf2")).commit("conf 2");
    let out = repo.push(&d, "conf");
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(get(&d, "conf.conf.example.com"), (200, "conf2 MODE=second SHARED=changed SECRET=parent-secret EXTRA=".into()));
    assert_eq!(d.ssh("config:get pvconf--conf SECRET").ok().stdout, "parent-secret\n");
    d.ssh("config:get pvconf--conf EXTRA").refused("not set");
    assert_eq!(get(&d, "conf.example.com"), (200, "main MODE=parent SHARED=changed SECRET=parent-secret EXTRA=".into()));
}

#[test]
fn pushing_the_branch_again_redeploys_the_preview_with_no_failed_request() {
    let d = Daemon::start();
    d.ssh("apps:create pvredo").ok();
    d.ssh("domains:add pvredo redo.example.com").ok();
    let repo = AppRepo::new(&d, "pvredo");
    deploy_main(&d, &repo, "redo main");
    d.ssh("previews:enable pvredo").ok();
    // Takes a second to listen, so the swap has something to wait for.
    let out = push_branch_as(&d.admin, &repo, "next", "redo next v1", 1);
    assert_preview_announced(&out, "pvredo", "next", "next.redo.example.com");
    assert_eq!(get(&d, "next.redo.example.com"), (200, "redo next v1".into()));
    let first = preview_entry(&d, "pvredo", "next");
    assert_eq!(first["release"], 1, "{first}");
    let parent_containers = containers_of(&d, "pvredo");
    let parent_releases = release_count(&d, "pvredo");

    let (out, served, failed) = probe_during(&d, &[("next.redo.example.com", "redo next v"), ("redo.example.com", "redo main")], || {
        let out = push_branch_as(&d.admin, &repo, "next", "redo next v2", 1);
        // Served by the new version as soon as the push returns.
        let now = get(&d, "next.redo.example.com");
        (out, now)
    });
    let (out, now) = out;
    assert_preview_announced(&out, "pvredo", "next", "next.redo.example.com");
    assert_eq!(now, (200, "redo next v2".into()));
    assert!(failed.is_empty(), "{} requests failed during the preview's redeploy: {:?}", failed.len(), &failed[..failed.len().min(5)]);
    assert!(served > 20, "too few requests ({served}) to mean anything");

    let second = preview_entry(&d, "pvredo", "next");
    assert_eq!(second["release"], 2, "{second}");
    assert_eq!(second["app"], "pvredo--next", "{second}");
    // A push resets the TTL's clock: the preview now expires later after its creation
    // (age + expires_in is the expiry time since creation; the redeploy came seconds later).
    let lifetime = |p: &serde_json::Value| p["age_seconds"].as_u64().unwrap() + p["expires_in_seconds"].as_u64().unwrap();
    assert!(lifetime(&second) > lifetime(&first), "the push did not move the expiry: {first} then {second}");
    assert_eq!(release_count(&d, "pvredo--next"), 2);
    assert_eq!(previews(&d, "pvredo").len(), 1);
    // The old container retires; one web container of v2 is left.
    poll(Duration::from_secs(30), Duration::from_millis(500), "the preview's v1 container to retire", || {
        let report = ps_report(&d, "pvredo--next");
        if report["containers"] == serde_json::json!(["web.1: running (v2)"]) { Ok(()) } else { Err(report.to_string()) }
    });
    // The parent is untouched.
    assert_eq!(containers_of(&d, "pvredo"), parent_containers);
    assert_eq!(release_count(&d, "pvredo"), parent_releases);
    assert_eq!(get(&d, "redo.example.com"), (200, "redo main".into()));
}

#[test]
fn deleting_the_branch_destroys_the_preview_and_all_it_had() {
    let d = Daemon::start();
    d.ssh("apps:create pvgone").ok();
    d.ssh("domains:add pvgone gone.example.com").ok();
    let repo = AppRepo::new(&d, "pvgone");
    deploy_main(&d, &repo, "gone main");
    d.ssh("previews:enable pvgone").ok();
    let out = push_branch(&d, &repo, "doomed", "gone doomed");
    assert_preview_announced(&out, "pvgone", "doomed", "doomed.gone.example.com");
    assert_eq!(get(&d, "doomed.gone.example.com"), (200, "gone doomed".into()));
    assert_eq!(containers_of(&d, "pvgone--doomed").len(), 1);
    assert!(!images_of(&d, "pvgone--doomed").is_empty(), "the preview has no image to remove");
    assert!(d.root().join("apps/pvgone--doomed").exists());
    let parent_containers = containers_of(&d, "pvgone");
    let parent_releases = release_count(&d, "pvgone");

    let out = repo.push(&d, ":doomed");
    assert_eq!(out.code, 0, "deleting the branch failed: {out:#?}");
    assert!(!server_has_branch(&d, "pvgone", "doomed"));
    assert_preview_gone(&d, "pvgone--doomed", "doomed.gone.example.com");
    assert_eq!(previews(&d, "pvgone"), Vec::<serde_json::Value>::new());
    assert_eq!(get(&d, "gone.example.com"), (200, "gone main".into()));
    assert_eq!(containers_of(&d, "pvgone"), parent_containers);
    assert_eq!(release_count(&d, "pvgone"), parent_releases);
    d.ssh("apps:exists pvgone").ok();

    // Pushed again, the branch makes a fresh preview: nothing of the old one came back.
    let out = push_branch(&d, &repo, "doomed", "gone doomed again");
    assert_preview_announced(&out, "pvgone", "doomed", "doomed.gone.example.com");
    assert_eq!(get(&d, "doomed.gone.example.com"), (200, "gone doomed again".into()));
    assert_eq!(preview_entry(&d, "pvgone", "doomed")["release"], 1);
    assert_eq!(release_count(&d, "pvgone--doomed"), 1);

    // previews:destroy removes it just as well.
    d.ssh("previews:destroy pvgone doomed").ok();
    assert_preview_gone(&d, "pvgone--doomed", "doomed.gone.example.com");
    assert!(previews(&d, "pvgone").is_empty());
    assert_eq!(get(&d, "gone.example.com"), (200, "gone main".into()));
    assert_eq!(containers_of(&d, "pvgone"), parent_containers);
}

#[test]
fn a_preview_not_pushed_within_its_ttl_is_destroyed_by_the_daemon() {
    let d = Daemon::start();
    d.ssh("apps:create pvttl").ok();
    d.ssh("domains:add pvttl ttl.example.com").ok();
    let repo = AppRepo::new(&d, "pvttl");
    deploy_main(&d, &repo, "ttl main");
    d.ssh("previews:enable pvttl").ok();
    d.ssh("previews:set pvttl ttl 1m").ok();
    let out = push_branch(&d, &repo, "brief", "ttl brief");
    assert_preview_announced(&out, "pvttl", "brief", "brief.ttl.example.com");
    assert_eq!(get(&d, "brief.ttl.example.com"), (200, "ttl brief".into()));
    let entry = preview_entry(&d, "pvttl", "brief");
    let expires = entry["expires_in_seconds"].as_u64().unwrap_or_else(|| panic!("{entry}"));
    assert!(expires <= 60, "a 1m TTL: {entry}");
    let parent_containers = containers_of(&d, "pvttl");

    // Expires 60 s after the push; the daemon looks every minute.
    poll(Duration::from_secs(150), Duration::from_secs(2), "the expired preview to be destroyed", || {
        let out = d.ssh("apps:exists pvttl--brief");
        if out.code != 0 { Ok(()) } else { Err(format!("{:?}", previews(&d, "pvttl"))) }
    });
    assert_preview_gone(&d, "pvttl--brief", "brief.ttl.example.com");
    assert!(previews(&d, "pvttl").is_empty());
    assert_eq!(get(&d, "ttl.example.com"), (200, "ttl main".into()));
    assert_eq!(containers_of(&d, "pvttl"), parent_containers);
    d.ssh("apps:exists pvttl").ok();
}

#[test]
fn a_push_beyond_the_most_previews_is_rejected_and_creates_nothing() {
    forget_images("pvmax");
    let d = Daemon::start();
    d.ssh("apps:create pvmax").ok();
    d.ssh("domains:add pvmax max.example.com").ok();
    let repo = AppRepo::new(&d, "pvmax");
    deploy_main(&d, &repo, "max main");
    d.ssh("previews:enable pvmax --max 2").ok();
    assert_eq!(report_row(&d, "pvmax", "Previews max"), "2");
    for branch in ["alpha", "beta"] {
        let out = push_branch(&d, &repo, branch, &format!("max {branch}"));
        assert_preview_announced(&out, "pvmax", branch, &format!("{branch}.max.example.com"));
    }

    let out = push_branch(&d, &repo, "gamma", "max gamma");
    assert!(out.code != 0, "a third preview was accepted with --max 2: {out:#?}");
    // The refusal names the previews there are (remote lines: git's own say only gamma).
    let remote: String = out.stderr.lines().filter(|l| l.starts_with("remote:")).collect::<Vec<_>>().join("\n");
    assert!(remote.contains("alpha") && remote.contains("beta"), "the refusal does not name the existing previews:\n{}", out.stderr);
    assert!(!out.stderr.contains("Preview of"), "{}", out.stderr);
    d.ssh("apps:exists pvmax--gamma").refused("does not exist");
    assert!(d.container_ids(true, &["berth.app=pvmax--gamma"]).is_empty());
    assert!(d.holder_ids(&["berth.app=pvmax--gamma"]).is_empty());
    assert!(images_of(&d, "pvmax--gamma").is_empty(), "a rejected preview left images");
    assert!(!server_has_branch(&d, "pvmax", "gamma"), "the rejected push moved the branch");
    assert_eq!(get(&d, "gamma.max.example.com").0, 404);
    assert_eq!(previews(&d, "pvmax").len(), 2);
    assert_eq!(get(&d, "alpha.max.example.com"), (200, "max alpha".into()));
    assert_eq!(get(&d, "max.example.com"), (200, "max main".into()));

    // Room again once one goes; more with a higher max.
    d.ssh("previews:destroy pvmax alpha").ok();
    let out = repo.push(&d, "gamma");
    assert_preview_announced(&out, "pvmax", "gamma", "gamma.max.example.com");
    assert_eq!(get(&d, "gamma.max.example.com"), (200, "max gamma".into()));
    d.ssh("previews:set pvmax max 3").ok();
    let out = push_branch(&d, &repo, "delta", "max delta");
    assert_preview_announced(&out, "pvmax", "delta", "delta.max.example.com");
    let mut branches: Vec<String> = previews(&d, "pvmax").iter().map(|p| p["branch"].as_str().unwrap().to_string()).collect();
    branches.sort();
    assert_eq!(branches, ["beta", "delta", "gamma"]);
}

#[test]
fn odd_branch_names_map_to_app_names_and_hosts_that_serve() {
    let d = Daemon::start();
    d.ssh("domains:set-global example.test").ok();
    let repo = AppRepo::new(&d, "pvodd");
    deploy_main(&d, &repo, "odd main");
    assert_eq!(get(&d, "pvodd.example.test"), (200, "odd main".into()));
    d.ssh("previews:enable pvodd").ok();

    // Slashes, capitals and underscores.
    let out = push_branch(&d, &repo, "feature/Login_2", "odd login");
    assert_eq!(slug("feature/Login_2"), "feature-login-2");
    assert_preview_announced(&out, "pvodd", "feature/Login_2", "feature-login-2.pvodd.example.test");
    assert_eq!(get(&d, "feature-login-2.pvodd.example.test"), (200, "odd login".into()));
    let entry = preview_entry(&d, "pvodd", "feature/Login_2");
    assert_eq!(entry["app"], "pvodd--feature-login-2", "{entry}");
    d.ssh("apps:exists pvodd--feature-login-2").ok();

    // Two branches that map to one app: the second is refused, the first keeps its preview.
    // (Not Feature/feature: git cannot have refs feature and feature/Login_2 at once.)
    let out = push_branch(&d, &repo, "Hotfix", "odd Hotfix");
    assert_preview_announced(&out, "pvodd", "Hotfix", "hotfix.pvodd.example.test");
    assert_eq!(preview_entry(&d, "pvodd", "Hotfix")["app"], "pvodd--hotfix");
    let out = push_branch(&d, &repo, "hotfix", "odd hotfix lowercase");
    assert!(out.code != 0, "a second branch for pvodd--hotfix was accepted: {out:#?}");
    assert!(out.stderr.contains("already serves"), "{}", out.stderr);
    assert!(!server_has_branch(&d, "pvodd", "hotfix"), "the refused push moved the branch");
    assert_eq!(get(&d, "hotfix.pvodd.example.test"), (200, "odd Hotfix".into()));
    assert_eq!(preview_entry(&d, "pvodd", "Hotfix")["app"], "pvodd--hotfix");

    // 100 characters: the slug is cut and a hash of the branch appended, so two branches
    // alike up to their last character still get apps (and hosts) of their own.
    let stem = format!("Team_X/Feature.Big--{}", "Abcdefghij0123456789".repeat(4));
    let long_a = format!("{}9", &stem[..99]);
    let long_b = format!("{}Z", &stem[..99]);
    assert_eq!((long_a.len(), long_b.len()), (100, 100));
    let mut names = Vec::new();
    for (branch, text) in [(&long_a, "odd long a"), (&long_b, "odd long b")] {
        let out = push_branch(&d, &repo, branch, text);
        assert_eq!(out.code, 0, "{out:#?}");
        let entry = preview_entry(&d, "pvodd", branch);
        let app = entry["app"].as_str().unwrap_or_else(|| panic!("{entry}")).to_string();
        assert!(app.len() <= 63, "{app} is {} characters", app.len());
        let cut = app.strip_prefix("pvodd--").unwrap_or_else(|| panic!("{app} is not pvodd--…"));
        let (kept, hash) = cut.rsplit_once('-').unwrap_or_else(|| panic!("{app} has no -HASH"));
        assert!(hash.len() == 6 && hash.chars().all(|c| c.is_ascii_hexdigit()), "{app} does not end with - and 6 hex characters");
        assert!(!kept.is_empty() && slug(branch).starts_with(kept), "{app}: {kept:?} is not a start of {:?}", slug(branch));
        // The host is SLUG.APP.<global domain>, with the cut slug.
        let host = format!("{cut}.pvodd.example.test");
        assert_preview_announced(&out, "pvodd", branch, &host);
        assert!(entry["url"].as_str().is_some_and(|u| u.contains(&host)), "{entry}");
        assert_eq!(get(&d, &host), (200, text.into()));
        d.ssh(&format!("apps:exists {app}")).ok();
        d.ssh(&format!("ps:report {app}")).ok();
        names.push(app);
    }
    assert_ne!(names[0], names[1], "two branches, one preview name");
    // Cut no more than it must: exactly 63 characters (here the cut never lands on a dash).
    assert_eq!(names[0].len(), 63, "{}", names[0]);

    assert_eq!(previews(&d, "pvodd").len(), 4);
    assert_eq!(get(&d, "pvodd.example.test"), (200, "odd main".into()));
}

#[test]
fn a_key_scoped_to_the_parent_manages_its_previews_and_no_others() {
    let d = Daemon::start();
    d.ssh("apps:create pvteam").ok();
    d.ssh("domains:add pvteam team.example.com").ok();
    d.ssh("previews:enable pvteam").ok();
    let bob = keygen(d.dir.path(), "bob");
    d.ssh_as(&d.admin, "ssh-keys:add bob --app pvteam", bob.public.as_bytes()).ok();
    let as_bob = |cmd: &str| d.ssh_as(&bob, cmd, b"");

    let repo = AppRepo::new(&d, "pvteam");
    repo.write("Dockerfile", &web_dockerfile("team main", 0)).commit("main");
    let out = repo.push_as(&bob, &["main"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let out = push_branch_as(&bob, &repo, "fix", "team fix", 0);
    assert_preview_announced(&out, "pvteam", "fix", "fix.team.example.com");
    assert_eq!(get(&d, "fix.team.example.com"), (200, "team fix".into()));
    // Both releases name bob, the key that pushed (the hook itself runs as root).
    for app in ["pvteam", "pvteam--fix"] {
        let releases: serde_json::Value = serde_json::from_str(&as_bob(&format!("releases {app} --format json")).ok().stdout).unwrap();
        assert_eq!(releases[0]["deployed_by"], "bob", "{app}: {releases}");
    }
    assert!(as_bob("releases pvteam").ok().stdout.lines().nth(2).is_some_and(|l| l.split_whitespace().any(|w| w == "bob")), "releases shows who deployed");

    let list: serde_json::Value = serde_json::from_str(&as_bob("previews pvteam --format json").ok().stdout).unwrap();
    assert_eq!(list[0]["app"], "pvteam--fix", "{list}");
    as_bob("previews pvteam").ok();
    as_bob("ps:report pvteam--fix").ok();
    as_bob("logs pvteam--fix -n 5").ok();
    as_bob("config:set pvteam--fix ONLY_HERE=1").ok();
    assert_eq!(as_bob("config:get pvteam--fix ONLY_HERE").ok().stdout, "1\n");
    assert_eq!(get(&d, "fix.team.example.com"), (200, "team fix".into()));
    d.ssh("config:get pvteam ONLY_HERE").refused("not set");

    // Another app's previews, and a name that only starts like its own app, are not its.
    d.ssh("apps:create pvother").ok();
    d.ssh("domains:add pvother other.example.com").ok();
    d.ssh("previews:enable pvother").ok();
    let other = AppRepo::new(&d, "pvother");
    deploy_main(&d, &other, "other main");
    let out = push_branch(&d, &other, "x", "other x");
    assert_preview_announced(&out, "pvother", "x", "x.other.example.com");
    as_bob("previews pvother").refused("may not manage app pvother");
    as_bob("config:get pvother--x K").refused("may not manage app pvother--x");
    as_bob("ps:report pvother--x").refused("may not manage app pvother--x");
    as_bob("previews:destroy pvother x").refused("may not manage app pvother");
    as_bob("config:get pvteamx--y K").refused("may not manage app pvteamx--y");
    d.ssh("apps:exists pvother--x").ok();
    assert_eq!(get(&d, "x.other.example.com"), (200, "other x".into()));

    // Its own: destroyed by the scoped key.
    as_bob("previews:destroy pvteam fix").ok();
    assert_preview_gone(&d, "pvteam--fix", "fix.team.example.com");
    assert_eq!(get(&d, "team.example.com"), (200, "team main".into()));
}

#[test]
fn refusals_say_why_and_change_nothing() {
    let d = Daemon::start();
    // `--` is the previews' separator.
    d.ssh("apps:create x--y").refused("reserved for previews");
    d.ssh("apps:exists x--y").refused("does not exist");
    d.ssh("apps:create pvrefuse").ok();
    d.ssh("apps:rename pvrefuse pv--refuse").refused("reserved for previews");
    d.ssh("apps:exists pvrefuse").ok();
    // Nor does a first push create one.
    let repo = AppRepo::new(&d, "x--y");
    repo.write("Dockerfile", &web_dockerfile("never", 0)).commit("x--y");
    let out = repo.push(&d, "main");
    assert!(out.code != 0, "a push created x--y: {out:#?}");
    d.ssh("apps:exists x--y").refused("does not exist");
    assert!(!d.root().join("apps/x--y").exists());

    d.ssh("previews:enable ghost").refused("App ghost does not exist");
    d.ssh("previews ghost").refused("App ghost does not exist");
    d.ssh("previews:report ghost").refused("App ghost does not exist");

    let before = d.app_toml("pvrefuse");
    for ttl in ["7", "7x", "d", "1.5d", "7w", "-1d", "'7 d'", "0d", "''"] {
        let out = d.ssh(&format!("previews:enable pvrefuse --ttl {ttl}"));
        out.refused("");
    }
    for max in ["0", "51", "-1", "many"] {
        d.ssh(&format!("previews:enable pvrefuse --max {max}")).refused("");
    }
    d.ssh("previews:set pvrefuse ttl 1y").refused("");
    d.ssh("previews:set pvrefuse max 0").refused("");
    d.ssh("previews:set pvrefuse max 51").refused("");
    d.ssh("previews:set pvrefuse link-services maybe").refused("");
    d.ssh("previews:set pvrefuse config NOEQUALS").refused("");
    d.ssh("previews:set pvrefuse config 1BAD=x").refused("");
    d.ssh("previews:set pvrefuse nope 1").refused("");
    d.ssh("previews:destroy pvrefuse nobranch").refused("");
    assert_eq!(d.app_toml("pvrefuse"), before, "a refusal changed the app's state");
    assert_eq!(report_row(&d, "pvrefuse", "Previews enabled"), "false");

    // Accepted values show in the report.
    d.ssh("previews:enable pvrefuse --ttl 7d --max 5").ok();
    assert_eq!(report_row(&d, "pvrefuse", "Previews enabled"), "true");
    assert!(report_row(&d, "pvrefuse", "Previews ttl").contains("7d"));
    assert_eq!(report_row(&d, "pvrefuse", "Previews max"), "5");
    d.ssh("previews:set pvrefuse ttl 2m").ok();
    assert!(report_row(&d, "pvrefuse", "Previews ttl").contains("2m"));
    d.ssh("previews:set pvrefuse ttl 12h").ok();
    assert!(report_row(&d, "pvrefuse", "Previews ttl").contains("12h"));
    d.ssh("previews:set pvrefuse max 50").ok();
    assert_eq!(report_row(&d, "pvrefuse", "Previews max"), "50");
    d.ssh("previews:set pvrefuse config-exclude A B").ok();
    let exclude = report_row(&d, "pvrefuse", "Previews config exclude");
    assert!(exclude.contains('A') && exclude.contains('B'), "{exclude}");
    d.ssh("previews:set pvrefuse link-services true").ok();
    d.ssh("previews:set pvrefuse link-services false").ok();
    d.ssh("previews:disable pvrefuse").ok();
    assert_eq!(report_row(&d, "pvrefuse", "Previews enabled"), "false");
    assert!(previews(&d, "pvrefuse").is_empty());

    // A TTL ending in a multi-byte character is refused like any other bad TTL.
    let before = d.app_toml("pvrefuse");
    d.ssh("previews:enable pvrefuse --ttl 7é").refused("Invalid ttl");
    d.ssh("previews:set pvrefuse ttl 7日").refused("Invalid ttl");
    assert_eq!(d.app_toml("pvrefuse"), before);
    d.ssh("apps:exists pvrefuse").ok();
}

