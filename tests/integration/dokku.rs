//! dokku's command line, as a dokku user's scripts write it, over the real OpenSSH client:
//! global flags before the command, namespace help, dokku's app names and messages.

use crate::harness::{AppRepo, Daemon, docker, get, temp_dir, web_dockerfile};

/// What a command line must print and exit with: `stdout`/`stderr` are exact when they
/// start with `=`, else a part that must appear; `""` means nothing at all.
struct Case {
    line: &'static str,
    code: i32,
    stdout: &'static str,
    stderr: &'static str,
}

fn check(d: &Daemon, case: &Case) {
    let out = d.ssh_as(&d.admin, case.line, b"");
    let expect = |what: &str, got: &str, want: &str| match want.strip_prefix('=') {
        Some(exact) => assert_eq!(got, exact, "{what} of `{}`: {out:#?}", case.line),
        None if want.is_empty() => assert_eq!(got, "", "{what} of `{}`: {out:#?}", case.line),
        None => assert!(got.contains(want), "{what} of `{}` lacks {want:?}: {out:#?}", case.line),
    };
    assert_eq!(out.code, case.code, "exit code of `{}`: {out:#?}", case.line);
    expect("stdout", &out.stdout, case.stdout);
    expect("stderr", &out.stderr, case.stderr);
}

#[test]
fn a_dokku_users_command_lines_work_unchanged() {
    let d = Daemon::start();
    let cases = [
        // No apps yet: said on stderr, not a failure.
        Case { line: "apps:list", code: 0, stdout: "", stderr: "= !     You haven't deployed any applications yet\n" },
        Case { line: "apps:list --format json", code: 0, stdout: "=[]\n", stderr: "" },
        // Namespace help, three ways, the same text.
        Case { line: "apps", code: 0, stdout: "Usage: berth apps[:COMMAND]\n\nManage apps\n", stderr: "" },
        Case { line: "apps:help", code: 0, stdout: "apps:create <APP>", stderr: "" },
        Case { line: "config --help", code: 0, stdout: "Manage global and app-specific config vars", stderr: "" },
        Case { line: "help", code: 0, stdout: "letsencrypt", stderr: "" },
        Case { line: "frobnicate", code: 2, stdout: "", stderr: "= !     `frobnicate` is not a berth command.\n" },
        // dokku's app names: a digit first, dots.
        Case { line: "apps:create 1994app", code: 0, stdout: "Creating 1994app", stderr: "" },
        Case { line: "apps:create api.v2", code: 0, stdout: "Creating api.v2", stderr: "" },
        Case { line: "apps:create app-", code: 1, stdout: "", stderr: "cannot end with a dash or a dot" },
        Case { line: "apps:create my..app", code: 1, stdout: "", stderr: "Invalid app name" },
        Case { line: "apps:list --format json", code: 0, stdout: "=[\"1994app\",\"api.v2\"]\n", stderr: "" },
        // Global flags before the command.
        Case { line: "--app 1994app config:set --no-restart GREETING=hi", code: 0, stdout: "GREETING: hi", stderr: "" },
        Case { line: "--app 1994app config:get GREETING", code: 0, stdout: "=hi\n", stderr: "" },
        Case { line: "--app=1994app config:get 1994app GREETING", code: 0, stdout: "=hi\n", stderr: "" },
        Case { line: "--trace --app 1994app config:keys", code: 0, stdout: "=GREETING\n", stderr: "" },
        Case { line: "--quiet apps:create quiet", code: 0, stdout: "", stderr: "" },
        Case { line: "--force apps:destroy quiet", code: 0, stdout: "Destroying quiet", stderr: "" },
        Case { line: "--quiet --force --app api.v2 apps:destroy", code: 0, stdout: "", stderr: "" },
        Case { line: "--app", code: 2, stdout: "", stderr: "--app needs an app name" },
        Case { line: "apps:list --quiet", code: 0, stdout: "=1994app\n", stderr: "" },
        // Info flags: one value of a report, an empty line when unset.
        Case { line: "apps:report 1994app --app-locked", code: 0, stdout: "=false\n", stderr: "" },
        Case { line: "ps:report 1994app --ps-restart-policy", code: 0, stdout: "=\n", stderr: "" },
        Case { line: "--app 1994app ps:report --ps-computed-restart-policy", code: 0, stdout: "=on-failure:10\n", stderr: "" },
        Case { line: "git:report 1994app --git-sha", code: 0, stdout: "=\n", stderr: "" },
        // git:set rev-env-var: the env var that carries the deployed commit (GIT_REV).
        Case { line: "git:report 1994app --git-rev-env-var", code: 0, stdout: "=\n", stderr: "" },
        Case { line: "git:report 1994app --git-computed-rev-env-var", code: 0, stdout: "=GIT_REV\n", stderr: "" },
        Case { line: "git:set 1994app rev-env-var COMMIT_SHA", code: 0, stdout: "Set rev-env-var of 1994app to COMMIT_SHA", stderr: "" },
        Case { line: "git:report 1994app --git-rev-env-var", code: 0, stdout: "=COMMIT_SHA\n", stderr: "" },
        Case { line: "git:set 1994app rev-env-var 1BAD", code: 1, stdout: "", stderr: "Invalid env key" },
        Case { line: "git:set 1994app rev-env-var", code: 0, stdout: "GIT_REV (the default)", stderr: "" },
        // git: the deploy branch before any push (master until there is a main), global ones.
        Case { line: "git:report 1994app --git-deploy-branch", code: 0, stdout: "=\n", stderr: "" },
        Case { line: "git:report 1994app --git-computed-deploy-branch", code: 0, stdout: "=master\n", stderr: "" },
        Case { line: "git:set --global deploy-branch trunk", code: 0, stdout: "Setting deploy-branch to trunk for apps that set none", stderr: "" },
        Case { line: "git:report 1994app --git-computed-deploy-branch", code: 0, stdout: "=trunk\n", stderr: "" },
        Case { line: "git:report --global --format json", code: 0, stdout: "\"global-deploy-branch\":\"trunk\"", stderr: "" },
        Case { line: "git:set --global deploy-branch", code: 0, stdout: "Unsetting deploy-branch", stderr: "" },
        Case { line: "git:set --global keep-git-dir true", code: 0, stdout: "Setting keep-git-dir to true", stderr: "" },
        Case { line: "git:report 1994app --git-computed-keep-git-dir", code: 0, stdout: "=true\n", stderr: "" },
        Case { line: "git:set 1994app keep-git-dir false", code: 0, stdout: "Setting keep-git-dir to false", stderr: "" },
        Case { line: "git:report 1994app --git-computed-keep-git-dir", code: 0, stdout: "=false\n", stderr: "" },
        Case { line: "git:set --global keep-git-dir", code: 0, stdout: "Unsetting keep-git-dir", stderr: "" },
        Case { line: "git:set --global source-image x", code: 1, stdout: "", stderr: "= !     Property cannot be specified globally\n" },
        Case { line: "git:set 1994app source-image alpine:3.20", code: 0, stdout: "Setting source-image to alpine:3.20", stderr: "" },
        Case { line: "git:report 1994app --git-source-image", code: 0, stdout: "=alpine:3.20\n", stderr: "" },
        Case { line: "git:set 1994app source-image", code: 0, stdout: "Unsetting source-image", stderr: "" },
        // ps:set skip-deploy: raw, global, computed.
        Case { line: "ps:set --global skip-deploy true", code: 0, stdout: "Setting skip-deploy to true", stderr: "" },
        Case { line: "ps:report 1994app --ps-computed-skip-deploy", code: 0, stdout: "=true\n", stderr: "" },
        Case { line: "ps:set 1994app skip-deploy false", code: 0, stdout: "Setting skip-deploy to false", stderr: "" },
        Case { line: "ps:report 1994app --ps-computed-skip-deploy", code: 0, stdout: "=false\n", stderr: "" },
        Case { line: "ps:set 1994app skip-deploy", code: 0, stdout: "Unsetting skip-deploy", stderr: "" },
        Case { line: "ps:set --global skip-deploy", code: 0, stdout: "Unsetting skip-deploy", stderr: "" },
        Case { line: "ps:set 1994app skip-deploy maybe", code: 1, stdout: "", stderr: "Invalid skip-deploy" },
        // network: the engine's networks are listed (not made here: DokkuManaged false).
        Case { line: "network:list --format json", code: 0, stdout: "{\"DokkuManaged\":false,\"Driver\":\"bridge\",\"Internal\":false,\"Name\":\"bridge\"", stderr: "" },
        Case { line: "network:set --global attach-post-create nowhere", code: 1, stdout: "", stderr: "Network nowhere does not exist" },
        Case { line: "network:report 1994app --network-computed-attach-post-create", code: 0, stdout: "=\n", stderr: "" },
        Case { line: "ps:report 1994app --ps-nope", code: 1, stdout: "", stderr: "Invalid flag passed, valid flags: --ps-computed-dockerfile-start-cmd, --ps-computed-procfile-path, --ps-computed-restart-policy, " },
        // NS:set: dokku's messages for a missing, unknown or app-only property.
        Case { line: "git:set 1994app nope x", code: 1, stdout: "", stderr: "= !     Invalid property specified, valid properties include: deploy-branch, keep-git-dir, rev-env-var, source-image\n" },
        Case { line: "git:set 1994app", code: 1, stdout: "", stderr: "= !     No property specified\n" },
        Case { line: "scheduler:set --global constraint node.role==manager", code: 1, stdout: "", stderr: "= !     Property cannot be specified globally\n" },
        // ps:set restart-policy: the app's (raw), the global one, and the one in force.
        Case { line: "ps:set --global restart-policy always", code: 0, stdout: "Global restart policy always", stderr: "" },
        Case { line: "ps:report 1994app --ps-global-restart-policy", code: 0, stdout: "=always\n", stderr: "" },
        Case { line: "ps:report 1994app --ps-computed-restart-policy", code: 0, stdout: "=always\n", stderr: "" },
        Case { line: "ps:report --global --ps-global-restart-policy", code: 0, stdout: "=always\n", stderr: "" },
        Case { line: "ps:set 1994app restart-policy bogus", code: 1, stdout: "", stderr: "Invalid restart-policy specified" },
        Case { line: "ps:set 1994app restart-policy on-failure:3", code: 0, stdout: "on-failure:3", stderr: "" },
        Case { line: "ps:report 1994app --ps-restart-policy", code: 0, stdout: "=on-failure:3\n", stderr: "" },
        Case { line: "ps:set 1994app restart-policy", code: 0, stdout: "unset: always applies", stderr: "" },
        Case { line: "ps:set --global restart-policy", code: 0, stdout: "Global restart policy unset", stderr: "" },
        Case { line: "ps:report 1994app --ps-computed-restart-policy", code: 0, stdout: "=on-failure:10\n", stderr: "" },
        Case { line: "releases:set 1994app keep", code: 0, stdout: "last 5 releases", stderr: "" },
        Case { line: "letsencrypt:set --global email me@example.com", code: 0, stdout: "Setting email to me@example.com globally", stderr: "" },
        Case { line: "letsencrypt:report --global --letsencrypt-global-email", code: 0, stdout: "=me@example.com\n", stderr: "" },
        Case { line: "letsencrypt:set --global email", code: 0, stdout: "Unsetting email globally", stderr: "" },
        // config: dokku's messages when nothing is given, and for keys that are not set.
        Case { line: "config:set 1994app", code: 1, stdout: "", stderr: "= !     At least one env pair must be given\n" },
        Case { line: "config:unset 1994app", code: 1, stdout: "", stderr: "= !     At least one key must be given\n" },
        Case { line: "config:get 1994app", code: 1, stdout: "", stderr: "= !     Expected: key\n" },
        Case { line: "config:unset --no-restart 1994app NEVER", code: 0, stdout: "Skipping NEVER, it is not set in the environment", stderr: "" },
        // An app name is checked once, as it is parsed: a refusal (exit 1), not a usage error.
        Case { line: "config:show Ghost", code: 1, stdout: "", stderr: "Invalid app name \"Ghost\"" },
        Case { line: "apps:report --global --app-global-disable-autocreation", code: 0, stdout: "=\n", stderr: "" },
        Case { line: "apps:set --global deploy-source git", code: 1, stdout: "", stderr: "= !     Property cannot be specified globally\n" },
        Case { line: "apps:set 1994app deploy-source git", code: 1, stdout: "", stderr: "it is not set by hand" },
        // Every report key with and without its namespace, as dokku gives both.
        Case { line: "scheduler:report 1994app --format json", code: 0, stdout: "\"scheduler-selected\":\"\"", stderr: "" },
        Case { line: "scheduler:report 1994app --format json", code: 0, stdout: "\"selected\":\"\"", stderr: "" },
        Case { line: "ps:report 1994app --format json", code: 0, stdout: "\"ps-computed-stop-timeout-seconds\":\"30\"", stderr: "" },
        // Properties an app sets or takes from the global settings: raw, global, computed.
        Case { line: "scheduler:set 1994app shell bash", code: 0, stdout: "Setting shell to bash for 1994app", stderr: "" },
        Case { line: "scheduler:set --global shell 'sh;reboot'", code: 1, stdout: "", stderr: "Invalid shell" },
        Case { line: "scheduler:report 1994app --scheduler-computed-shell", code: 0, stdout: "=bash\n", stderr: "" },
        Case { line: "scheduler:set 1994app shell", code: 0, stdout: "Unsetting shell for 1994app", stderr: "" },
        Case { line: "builder:set --global selected dockerfile", code: 0, stdout: "Builder of apps that choose none: dockerfile", stderr: "" },
        Case { line: "builder:report 1994app --builder-selected", code: 0, stdout: "=\n", stderr: "" },
        Case { line: "builder:report 1994app --builder-computed-selected", code: 0, stdout: "=dockerfile\n", stderr: "" },
        Case { line: "builder:set --global selected", code: 0, stdout: "detected", stderr: "" },
        Case { line: "builder:set --global build-dir /etc", code: 1, stdout: "", stderr: "Invalid build-dir" },
        Case { line: "ps:set --global stop-timeout-seconds 90", code: 0, stdout: "Setting stop-timeout-seconds to 90", stderr: "" },
        Case { line: "ps:report 1994app --ps-computed-stop-timeout-seconds", code: 0, stdout: "=90\n", stderr: "" },
        Case { line: "ps:set 1994app stop-timeout-seconds 45", code: 0, stdout: "Setting stop-timeout-seconds to 45", stderr: "" },
        Case { line: "ps:report 1994app --ps-computed-stop-timeout-seconds", code: 0, stdout: "=45\n", stderr: "" },
        Case { line: "ps:set 1994app stop-timeout-seconds", code: 0, stdout: "Unsetting stop-timeout-seconds", stderr: "" },
        Case { line: "ps:set --global stop-timeout-seconds", code: 0, stdout: "Unsetting stop-timeout-seconds", stderr: "" },
        Case { line: "ps:set 1994app procfile-path ../Procfile", code: 1, stdout: "", stderr: "Invalid procfile-path" },
        // resource: one report key per value set; `clear` removes one value; build limits.
        Case { line: "resource:limit 1994app --memory 512MB", code: 0, stdout: "memory 512MB", stderr: "" },
        Case { line: "resource:report 1994app --resource-_default_.limit.memory", code: 0, stdout: "=512MB\n", stderr: "" },
        Case { line: "resource:limit 1994app --memory clear", code: 0, stdout: "Limits of 1994app (every container): memory clear", stderr: "" },
        Case { line: "resource:report 1994app --resource-_default_.limit.memory", code: 1, stdout: "", stderr: "Invalid flag passed" },
        Case { line: "resource:limit 1994app --memory 256m --process-type build", code: 0, stdout: "(its builds): memory 256m; applies to the next build", stderr: "" },
        Case { line: "resource:report 1994app --resource-build.limit.memory", code: 0, stdout: "=256m\n", stderr: "" },
        Case { line: "resource:limit-clear 1994app --process-type build", code: 0, stdout: "cleared", stderr: "" },
        // Reports over every app, and storage.
        Case { line: "resource:report --format json", code: 0, stdout: "\"1994app\":{", stderr: "" },
        Case { line: "storage:report 1994app --storage-run-mounts", code: 0, stdout: "=\n", stderr: "" },
        Case { line: "buildpacks:report 1994app --buildpacks-stack", code: 0, stdout: "=\n", stderr: "" },
        Case { line: "buildpacks:report 1994app --buildpacks-computed-stack", code: 0, stdout: "=berth/stack:bookworm\n", stderr: "" },
        Case { line: "buildpacks:set-property --global stack gliderlabs/herokuish:latest", code: 0, stdout: "Setting stack to gliderlabs/herokuish:latest for apps that set none", stderr: "" },
        Case { line: "buildpacks:report 1994app --buildpacks-global-stack", code: 0, stdout: "=gliderlabs/herokuish:latest\n", stderr: "" },
        Case { line: "buildpacks:set-property --global stack", code: 0, stdout: "Unsetting stack for apps that set none", stderr: "" },
        Case { line: "buildpacks:set-property 1994app nope x", code: 1, stdout: "", stderr: "valid properties include: stack" },
        Case { line: "storage:ensure-directory shared-data --chown paketo", code: 0, stdout: "Setting directory ownership to 2000:2000", stderr: "" },
        Case { line: "storage:ensure-directory ../x", code: 1, stdout: "", stderr: "Invalid directory" },
        Case { line: "checks:set 1994app nope 1", code: 1, stdout: "", stderr: "valid properties include: attempts, timeout, wait-to-retire" },
        Case { line: "nginx:set 1994app nope x", code: 1, stdout: "", stderr: "valid properties include: hsts, hsts-include-subdomains, hsts-max-age, hsts-preload" },
        // dokku's flags, and berth's last minute of requests beside them.
        Case { line: "apps:report 1994app --app-nope", code: 1, stdout: "", stderr: "= !     Invalid flag passed, valid flags: --app-computed-disable-autocreation, --app-created-at, --app-deploy-source, --app-deploy-source-metadata, --app-dir, --app-errors-last-minute, --app-global-disable-autocreation, --app-latency-p50, --app-latency-p99, --app-locked, --app-requests-per-second\n" },
        // dokku's version flags, and the words its tests look for in each namespace's help.
        Case { line: "-v", code: 0, stdout: "berth ", stderr: "" },
        Case { line: "--version", code: 0, stdout: "berth ", stderr: "" },
        Case { line: "buildpacks:help", code: 0, stdout: "Manage buildpacks settings for an app", stderr: "" },
        Case { line: "certs:help", code: 0, stdout: "Manage SSL (TLS) certs", stderr: "" },
        Case { line: "logs:help", code: 0, stdout: "Manage log integration for an app", stderr: "" },
        Case { line: "network:help", code: 0, stdout: "Manage network settings for an app", stderr: "" },
        Case { line: "resource:help", code: 0, stdout: "Manage resource settings for an app", stderr: "" },
        Case { line: "scheduler:help", code: 0, stdout: "Manage scheduler settings", stderr: "" },
        Case { line: "repo:help", code: 0, stdout: "Manage the app's repo", stderr: "" },
        // Before a deploy, the detected ports are the default berth serves.
        Case { line: "ports:report 1994app --ports-map-detected", code: 0, stdout: "=http:80:5000\n", stderr: "" },
        Case { line: "proxy:help", code: 0, stdout: "Manage the proxy integration for an app", stderr: "" },
        Case { line: "proxy:report 1994app --format json", code: 0, stdout: "\"proxy-computed-type\":\"nginx\"", stderr: "" },
        Case { line: "events:help", code: 0, stdout: "Manage event logging", stderr: "" },
        Case { line: "ssh-keys:help", code: 0, stdout: "Manage public ssh keys used for deployment", stderr: "" },
        // checks: dokku's lists of process types with checks disabled or skipped.
        Case { line: "checks:report 1994app --checks-disabled-list", code: 0, stdout: "=none\n", stderr: "" },
        Case { line: "checks:disable 1994app", code: 0, stdout: "disabled", stderr: "" },
        Case { line: "checks:report 1994app --checks-disabled-list", code: 0, stdout: "=_all_\n", stderr: "" },
        Case { line: "checks:report 1994app --checks-skipped-list", code: 0, stdout: "=none\n", stderr: "" },
        Case { line: "checks:skip 1994app", code: 0, stdout: "skipped", stderr: "" },
        Case { line: "checks:report 1994app --checks-skipped-list", code: 0, stdout: "=_all_\n", stderr: "" },
        Case { line: "checks:enable 1994app", code: 0, stdout: "enabled", stderr: "" },
        Case { line: "checks:report 1994app --checks-skipped-list", code: 0, stdout: "=none\n", stderr: "" },
        // buildpacks:set at a position, --replace for the whole list; buildpacks:remove --index.
        Case { line: "buildpacks:set 1994app heroku/nodejs", code: 0, stdout: "Buildpacks of 1994app: https://github.com/heroku/heroku-buildpack-nodejs.git", stderr: "" },
        Case { line: "buildpacks:set --index 2 1994app heroku/ruby", code: 0, stdout: "heroku-buildpack-nodejs.git, https://github.com/heroku/heroku-buildpack-ruby.git", stderr: "" },
        Case { line: "buildpacks:set 1994app heroku/golang", code: 0, stdout: "heroku-buildpack-golang.git, https://github.com/heroku/heroku-buildpack-ruby.git", stderr: "" },
        Case { line: "buildpacks:set 1994app heroku/php heroku/go", code: 1, stdout: "", stderr: "buildpacks:set --replace APP BUILDPACK" },
        Case { line: "buildpacks:set --replace --index 1 1994app heroku/php", code: 1, stdout: "", stderr: "--index cannot go with it" },
        Case { line: "buildpacks:set --replace 1994app", code: 1, stdout: "", stderr: "buildpacks:clear removes them all" },
        Case { line: "buildpacks:set --replace 1994app heroku/php heroku/go", code: 0, stdout: "heroku-buildpack-php.git, https://github.com/heroku/heroku-buildpack-go.git", stderr: "" },
        Case { line: "buildpacks:remove 1994app --index 1", code: 0, stdout: "Buildpacks of 1994app: https://github.com/heroku/heroku-buildpack-go.git\n", stderr: "" },
        Case { line: "buildpacks:remove 1994app --index 2", code: 1, stdout: "", stderr: "none at --index 2" },
        Case { line: "buildpacks:remove 1994app heroku/php", code: 1, stdout: "", stderr: "is not a buildpack of 1994app" },
        Case { line: "buildpacks:clear 1994app", code: 0, stdout: "1994app detects its buildpack", stderr: "" },
        Case { line: "--quiet buildpacks:list 1994app", code: 0, stdout: "", stderr: "" },
        // Buildpack builds' CPU priority: idle by default, normal when an admin says so.
        Case { line: "builder:report --global --builder-global-build-cpu-priority", code: 0, stdout: "=idle\n", stderr: "" },
        Case { line: "builder:set --global build-cpu-priority sometimes", code: 1, stdout: "", stderr: "idle (a build takes only the CPU the apps leave" },
        Case { line: "builder:set --global build-cpu-priority normal", code: 0, stdout: "Setting build-cpu-priority to normal for every app", stderr: "" },
        Case { line: "builder:report --global --builder-global-build-cpu-priority", code: 0, stdout: "=normal\n", stderr: "" },
        Case { line: "builder:set 1994app build-cpu-priority normal", code: 1, stdout: "", stderr: "Property can only be specified globally" },
        Case { line: "builder:set --global build-cpu-priority", code: 0, stdout: "Unsetting build-cpu-priority for every app", stderr: "" },
        // docker-options: dokku's phases, words grouped into options, per process type.
        Case { line: "docker-options:help", code: 0, stdout: "Manage docker options for an app", stderr: "" },
        Case { line: "docker-options:add 1994app build,deploy,run '-v /tmp'", code: 0, stdout: "Docker options added to", stderr: "" },
        Case { line: "docker-options:report 1994app --docker-options-run", code: 0, stdout: "=-v /tmp\n", stderr: "" },
        Case { line: "docker-options:add 1994app build --build-arg X=Y --link foo", code: 0, stdout: "Docker options added to", stderr: "" },
        Case { line: "docker-options:list 1994app --phase build", code: 0, stdout: "=-v /tmp\n--build-arg X=Y\n--link foo\n", stderr: "" },
        Case { line: "docker-options:add 1994app deploy --label 'a.b=my app' --process web", code: 0, stdout: "Docker options added to", stderr: "" },
        Case { line: "docker-options:list 1994app --phase deploy --process web", code: 0, stdout: "=--label 'a.b=my app'\n", stderr: "" },
        Case { line: "docker-options:report 1994app --docker-options-deploy.web", code: 0, stdout: "=--label 'a.b=my app'\n", stderr: "" },
        Case { line: "docker-options:report 1994app --format json", code: 0, stdout: "\"deploy.web-list\":[\"--label 'a.b=my app'\"]", stderr: "" },
        Case { line: "docker-options:add 1994app build --shm-size 1m --process web", code: 1, stdout: "", stderr: "deploy phase only" },
        Case { line: "docker-options:add 1994app deploy '-v /x' --process _default_", code: 1, stdout: "", stderr: "_default_ is reserved" },
        Case { line: "docker-options:add 1994app later '-v /x'", code: 1, stdout: "", stderr: "Phase(s) must be one of [build deploy run]" },
        Case { line: "docker-options:add 1994app deploy '--restart always'", code: 1, stdout: "", stderr: "berth sets --restart itself (ps:set APP restart-policy)" },
        Case { line: "docker-options:add 1994app deploy '--frobnicate 1'", code: 1, stdout: "", stderr: "berth does not pass --frobnicate to Docker" },
        Case { line: "docker-options:list 1994app", code: 1, stdout: "", stderr: "needs --phase" },
        Case { line: "docker-options:remove 1994app build --build-arg X=Y --link foo", code: 0, stdout: "Docker options removed from build", stderr: "" },
        Case { line: "docker-options:clear 1994app", code: 0, stdout: "Docker options of 1994app cleared", stderr: "" },
        Case { line: "docker-options:report 1994app --docker-options-deploy.web", code: 1, stdout: "", stderr: "Invalid flag passed" },
        Case { line: "docker-options:list 1994app --phase build", code: 0, stdout: "", stderr: "" },
    ];
    for case in &cases {
        check(&d, case);
    }
    use std::os::unix::fs::MetadataExt;
    let ensured = std::fs::metadata(d.root().join("data/storage/shared-data")).unwrap();
    assert!(ensured.is_dir() && ensured.uid() == 2000 && ensured.gid() == 2000, "{ensured:?}");
    // config:import (an env file on stdin), --replace, config:clear.
    let import = |line: &str, stdin: &[u8]| d.ssh_as(&d.admin, line, stdin);
    import("config:import 1994app - --no-restart", b"# from .env\nA=1\nexport B='two words'\n").ok();
    assert_eq!(d.ssh("config:keys 1994app").ok().stdout, "A\nB\nGREETING\n");
    assert_eq!(d.ssh("config:get 1994app B").ok().stdout, "two words\n");
    import("config:import 1994app --replace --no-restart", b"A=2\n").ok();
    assert_eq!(d.ssh("config:keys 1994app").ok().stdout, "A\n");
    import("config:import 1994app --no-restart", b"1BAD=x\n").refused("line 1: Invalid env key");
    import("config:import 1994app /etc/passwd", b"").refused("reads the env file from stdin");
    d.ssh("config:clear 1994app --no-restart").ok();
    assert_eq!(d.ssh("config:keys 1994app").ok().stdout, "");
    d.ssh("--app 1994app config:set --no-restart GREETING=hi").ok();
    // Global domains one by one, and their report.
    d.ssh("domains:add-global g1.test g2.test").ok();
    assert_eq!(d.ssh("domains:report --global --domains-global-vhosts").ok().stdout, "g1.test g2.test\n");
    d.ssh("domains:remove-global g1.test").ok();
    assert_eq!(d.ssh("domains:report --global --domains-global-vhosts").ok().stdout, "g2.test\n");
    assert!(d.ssh("domains:report --global").ok().stdout.starts_with("=====> --global domains information\n"));
    // domains:reset: back to the default name under the global domain, following it again.
    d.ssh("domains:set 1994app elsewhere.test").ok();
    assert!(d.ssh("domains:reset 1994app").ok().stdout.contains("Reset the domains of 1994app to 1994app.g2.test"));
    assert_eq!(d.ssh("domains:report 1994app --domains-app-vhosts").ok().stdout, "1994app.g2.test\n");
    d.ssh("domains:add-global g3.test").ok();
    assert_eq!(d.ssh("domains:report 1994app --domains-app-vhosts").ok().stdout, "1994app.g2.test 1994app.g3.test\n");
    // dokku's process lists: a type is disabled or skipped, never both.
    d.ssh("checks:disable 1994app worker").ok();
    assert_eq!(d.ssh("checks:report 1994app --checks-disabled-list").ok().stdout, "worker\n");
    assert_eq!(d.ssh("checks:report 1994app --checks-checks").ok().stdout, "enabled\n", "web's checks are what the report's first line says");
    assert!(d.ssh("checks:disable 1994app web,worker").ok().stdout.contains("disabled"));
    d.ssh("checks:skip 1994app worker").ok();
    assert_eq!(d.ssh("checks:report 1994app --checks-disabled-list").ok().stdout, "web\n");
    assert_eq!(d.ssh("checks:report 1994app --checks-skipped-list").ok().stdout, "worker\n");
    d.ssh("checks:disable 1994app 'web,Bad!'").refused("Invalid process type");
    d.ssh("checks:enable 1994app web,worker").ok();
    assert_eq!(d.ssh("checks:report 1994app --checks-disabled-list").ok().stdout, "none\n");
    assert_eq!(d.ssh("checks:report 1994app --checks-skipped-list").ok().stdout, "none\n");
    assert_eq!(d.ssh("ports:list 1994app --quiet").ok().stdout, "http:80:5000\n");
    assert_eq!(d.ssh("apps:locked 1994app").code, 1);
    d.ssh("apps:lock 1994app").ok();
    assert_eq!(d.ssh("apps:locked 1994app").ok().stdout, "Deploy lock exists\n");
    d.ssh("apps:unlock 1994app").ok();
    // The same on the local CLI.
    assert_eq!(d.local(&["--app", "1994app", "config:get", "GREETING"], b"").ok().stdout, "hi\n");
    assert!(d.local(&["apps:help"], b"").ok().stdout.starts_with("Usage: berth apps[:COMMAND]"));
    // Without --force, apps:destroy wants the name: none given, nothing destroyed.
    let out = d.ssh("apps:destroy 1994app");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("confirm on a terminal (ssh -t) or run it with --force"), "{out:#?}");
    assert!(d.ssh("apps:exists 1994app").code == 0);
}

#[test]
fn an_app_named_as_dokku_allows_deploys_and_is_served() {
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "1994app");
    repo.write("Dockerfile", &web_dockerfile("born in 1994", 0)).commit("v1");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{out:#?}");
    d.ssh("--app 1994app domains:add 1994.example.com").ok();
    assert_eq!(get(&d, "1994.example.com"), (200, "born in 1994".into()));
    let out = d.ssh("--quiet --app 1994app ps:restart");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(!out.stdout.contains("----->"), "{out:#?}");
    assert_eq!(get(&d, "1994.example.com"), (200, "born in 1994".into()));
    // dockerfile-start-cmd: the web process's command in place of the image's CMD (the app
    // has no Procfile); unset, the image's CMD again.
    d.ssh("ps:set 1994app dockerfile-start-cmd \"sh -c 'echo started by its start-cmd > /www/index.html; exec httpd -f -p $PORT -h /www'\"").ok();
    d.ssh("ps:set 1994app start-cmd \"sh -c 'unclosed\"").refused("Invalid start-cmd");
    d.ssh("ps:restart 1994app").ok();
    assert_eq!(get(&d, "1994.example.com"), (200, "started by its start-cmd".into()));
    assert_eq!(d.ssh("ps:report 1994app --ps-computed-dockerfile-start-cmd").ok().stdout.lines().next(), Some("sh -c 'echo started by its start-cmd > /www/index.html; exec httpd -f -p $PORT -h /www'"));
    d.ssh("ps:set 1994app dockerfile-start-cmd").ok();
    d.ssh("ps:restart 1994app").ok();
    assert_eq!(get(&d, "1994.example.com"), (200, "born in 1994".into()));
    // logs:set: the log file's rotation size and a label naming the app, on containers
    // started from then on.
    d.ssh("logs:set 1994app max-size 20m").ok();
    d.ssh("logs:set 1994app max-size 20").refused("Invalid max-size");
    d.ssh("logs:set --global app-label-alias com.example.app").ok();
    d.ssh("logs:set 1994app app-label-alias 'not a label'").refused("Invalid app-label-alias value");
    d.ssh("ps:restart 1994app").ok();
    let web = d.container_ids(false, &["berth.app=1994app", "berth.process=web"]);
    let inspected = docker(&["inspect", "-f", "{{index .HostConfig.LogConfig.Config \"max-size\"}} {{index .Config.Labels \"com.example.app\"}}", &web[0]]);
    assert_eq!(inspected.trim(), "20m 1994app");
    assert_eq!(d.ssh("logs:report 1994app --logs-computed-max-size").ok().stdout, "20m\n");
    assert_eq!(d.ssh("logs:report --global --logs-global-app-label-alias").ok().stdout, "com.example.app\n");
    d.ssh("logs:set --global app-label-alias").ok();
    d.ssh("logs:set 1994app max-size").ok();
    // scheduler-docker-local: no init process when the app says so; two containers at once.
    d.ssh("scheduler-docker-local:set 1994app init-process false").ok();
    d.ssh("scheduler-docker-local:set 1994app parallel-schedule-count 0").refused("Invalid parallel-schedule-count");
    d.ssh("scheduler-docker-local:set --global parallel-schedule-count 2").ok();
    d.ssh("ps:restart 1994app").ok();
    let web = d.container_ids(false, &["berth.app=1994app", "berth.process=web"]);
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.Init}}", &web[0]]).trim(), "false");
    assert_eq!(get(&d, "1994.example.com"), (200, "born in 1994".into()));
    assert_eq!(d.ssh("scheduler-docker-local:report 1994app --scheduler-docker-local-computed-parallel-schedule-count").ok().stdout, "2\n");
    d.ssh("scheduler-docker-local:set 1994app init-process").ok();
    d.ssh("scheduler-docker-local:set --global parallel-schedule-count").ok();
    d.ssh("ps:restart 1994app").ok();
    let web = d.container_ids(false, &["berth.app=1994app", "berth.process=web"]);
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.Init}}", &web[0]]).trim(), "true");
    // repo:gc packs the pushed objects; repo:purge-cache empties the build cache.
    assert!(d.ssh("repo:gc 1994app").ok().stdout.contains("Packed 1994app's repository"));
    let repo_dir = d.root().join("apps/1994app/repo.git");
    let counted = std::process::Command::new("git").arg("--git-dir").arg(&repo_dir).args(["count-objects", "-v"]).output().unwrap();
    assert!(String::from_utf8_lossy(&counted.stdout).contains("\ncount: 0\n") || String::from_utf8_lossy(&counted.stdout).starts_with("count: 0\n"), "{counted:?}");
    assert!(d.ssh("repo:purge-cache 1994app").ok().stdout.contains("Purged 1994app's build cache"));
    d.ssh("repo:gc nosuchapp").refused("does not exist");
    // The global env reaches every app's containers; an app's own value wins.
    d.ssh("config:set --global SHARED=from-global TZ=UTC").ok();
    assert_eq!(d.ssh("config:get --global SHARED").ok().stdout, "from-global\n");
    assert_eq!(d.ssh("config:keys --global").ok().stdout, "SHARED\nTZ\n");
    assert_eq!(d.ssh("config:show 1994app --format json").ok().stdout, "{}\n");
    let echo = |d: &Daemon| d.ssh("run 1994app sh -c 'echo $SHARED $TZ'").ok().stdout.clone();
    assert_eq!(echo(&d), "from-global UTC\n");
    d.ssh("config:set 1994app SHARED=mine").ok();
    assert_eq!(echo(&d), "mine UTC\n");
    d.ssh("config:unset --global TZ").ok();
    assert_eq!(echo(&d), "mine\n");
    assert_eq!(get(&d, "1994.example.com"), (200, "born in 1994".into()));
    // apps:clone: config and code, not domains; deployed from the copied repository.
    let out = d.ssh("apps:clone 1994app copy.of.1994");
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(d.ssh("config:get copy.of.1994 SHARED").ok().stdout, "mine\n");
    assert!(!d.ssh("domains:report copy.of.1994 --domains-app-vhosts").ok().stdout.contains("1994.example.com"));
    d.ssh("domains:add copy.of.1994 copy.example.com").ok();
    assert_eq!(get(&d, "copy.example.com"), (200, "born in 1994".into()));
    d.ssh("apps:clone 1994app copy.of.1994").refused("already exists");
    d.ssh("apps:clone 1994app copy.of.1994 --ignore-existing").ok();
    assert_eq!(get(&d, "1994.example.com"), (200, "born in 1994".into()));
}

/// An image built elsewhere (here: by `docker build` on this machine, as CI would), with a
/// Procfile in its working directory.
fn ci_image(name: &str, text: &str) {
    crate::harness::base_image();
    let dir = temp_dir();
    let dockerfile = format!("FROM berth-test/busybox\nWORKDIR /srv\nEXPOSE 5000\nRUN mkdir /www && echo '{text}' > /www/index.html\nCOPY Procfile /srv/Procfile\n");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).unwrap();
    // Procfile commands of an image run without a shell (as dokku's): the shell is asked for.
    let procfile = format!("web: sh -c 'exec httpd -f -p $PORT -h /www'\nrelease: echo release phase of {text}\n");
    std::fs::write(dir.path().join("Procfile"), procfile).unwrap();
    let status = std::process::Command::new("docker").args(["build", "-q", "-t", name]).arg(dir.path()).stdout(std::process::Stdio::null()).status().unwrap();
    assert!(status.success());
}

#[test]
fn images_built_elsewhere_deploy_as_releases() {
    let d = Daemon::start();
    let app = "from-ci";
    d.ssh(&format!("apps:create {app}")).ok();
    d.ssh(&format!("domains:add {app} ci.example.com")).ok();
    // git:load-image: a `docker save` archive on stdin.
    ci_image("berth-test/ci-app:one", "built in ci, one");
    let archive = std::process::Command::new("docker").args(["save", "berth-test/ci-app:one"]).output().unwrap();
    assert!(archive.status.success());
    let out = d.ssh_as(&d.admin, &format!("git:load-image {app}"), &archive.stdout);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("Loading the image archive") && out.stdout.contains("release phase of built in ci, one"), "{out:#?}");
    assert_eq!(get(&d, "ci.example.com"), (200, "built in ci, one".into()));
    // git:from-image: an image already on this engine; served without a failed request.
    ci_image("berth-test/ci-app:two", "built in ci, two");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let prober = {
        let (stop, port) = (stop.clone(), d.http_port);
        std::thread::spawn(move || {
            let mut bad = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body) = crate::harness::http_get(port, "ci.example.com", "/");
                if status != 200 || !body.starts_with("built in ci") {
                    bad.push((status, body));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            bad
        })
    };
    d.ssh(&format!("git:from-image {app} berth-test/ci-app:two")).ok();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(prober.join().unwrap(), Vec::<(u16, String)>::new());
    assert_eq!(get(&d, "ci.example.com"), (200, "built in ci, two".into()));
    // A normal release: it rolls back.
    d.ssh(&format!("releases:rollback {app} 1")).ok();
    assert_eq!(get(&d, "ci.example.com"), (200, "built in ci, one".into()));
    // ps:rebuild of an app deployed from an image deploys that image again (no git branch).
    let out = d.ssh(&format!("ps:rebuild {app}"));
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("from the image"), "{out:#?}");
    assert_eq!(get(&d, "ci.example.com"), (200, "built in ci, one".into()));
    // Refusals: another app's image, a bad name, an empty archive, an unknown image.
    d.ssh("apps:create other").ok();
    d.ssh(&format!("git:from-image other berth/{app}:v1")).refused("another app's image");
    d.ssh(&format!("git:from-image {app} 'bad image'")).refused("Invalid image name");
    d.ssh(&format!("git:load-image {app}")).refused("No image archive on stdin");
    d.ssh_as(&d.admin, &format!("git:load-image {app}"), b"not a tar").refused("not an image archive");
    assert_eq!(get(&d, "ci.example.com"), (200, "built in ci, one".into()));
    // dokku's detected port map: what the deployed image EXPOSEs.
    assert_eq!(d.ssh(&format!("ports:report {app} --ports-map-detected")).ok().stdout, "http:5000:5000\n");
    // The images are their owner's: berth's restart, pruning and destroy remove only its own
    // names (berth/APP:vN) of them.
    let exists = crate::harness::image_exists;
    let mut d = d;
    d.kill();
    d.boot();
    d.ssh(&format!("apps:destroy {app} --force")).ok();
    assert!(exists("berth-test/ci-app:one") && exists("berth-test/ci-app:two"));
    assert!(!exists(&format!("berth/{app}:v1")));
}

/// docker-options take effect: a build arg reaches the Dockerfile build, deploy options the
/// app's containers (a label, shm size, an extra host, an anonymous volume) and run options
/// the one-off containers; changing them is an admin's, reading them an app key's too.
#[test]
fn docker_options_reach_the_build_the_apps_containers_and_one_offs() {
    let d = Daemon::start();
    let app = "dopts";
    d.ssh(&format!("apps:create {app}")).ok();
    d.ssh(&format!("domains:add {app} dopts.example.com")).ok();
    d.ssh(&format!("docker-options:add {app} build --build-arg GREETING=hello-from-arg --link ignored")).ok();
    d.ssh(&format!("docker-options:add {app} deploy --label com.example.team=web '--shm-size 64m' -v /cache")).ok();
    d.ssh(&format!("docker-options:add --process worker {app} deploy --label com.example.only=worker")).ok();
    d.ssh(&format!("docker-options:add {app} run --add-host special.test:10.1.2.3")).ok();
    let repo = AppRepo::new(&d, app);
    // Its own first step (this run's root), so the steps run rather than come from the
    // engine's cache of an earlier run (whose images another root's tags keep).
    let dockerfile = format!(
        "FROM berth-test/busybox\nRUN echo {}\nARG GREETING=unset\nRUN mkdir /www && echo \"$GREETING\" > /www/index.html\nRUN grep -E ':cpu[,:]' /proc/self/cgroup\nRUN grep Cpus_allowed_list /proc/self/status\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n",
        d.root().display()
    );
    repo.write("Dockerfile", &dockerfile).commit("v1");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("Skipping the docker-option --link ignored: not an option of a build"), "{out:#?}");
    // The build's RUN steps ran under berth's idle-priority cgroup (visible as a path where
    // the engine uses cgroup v1 and cgroupfs, as here).
    assert!(out.stderr.contains("idle CPU priority"), "{out:#?}");
    if crate::harness::docker(&["info", "--format", "{{.CgroupVersion}} {{.CgroupDriver}}"]).trim() == "1 cgroupfs" {
        assert!(out.stderr.contains(":/berth-builds/"), "the build's steps did not run under berth-builds: {out:#?}");
    }
    // And off CPU 0, which stays the apps' (where the machine has another).
    let cpus = crate::harness::build_cpus_allowed();
    assert!(out.stderr.lines().any(|l| l.contains("Cpus_allowed_list:") && l.split_whitespace().last() == Some(cpus.as_str())), "the build's steps did not run on CPUs {cpus}: {out:#?}");
    assert_eq!(get(&d, "dopts.example.com"), (200, "hello-from-arg".into()));
    let web = d.container_ids(false, &[&format!("berth.app={app}"), "berth.process=web"]);
    assert_eq!(web.len(), 1, "{web:?}");
    let inspect = |format: &str| crate::harness::docker(&["inspect", "-f", format, &web[0]]).trim().to_string();
    assert_eq!(inspect("{{index .Config.Labels \"com.example.team\"}}"), "web");
    assert_eq!(inspect("{{index .Config.Labels \"com.example.only\"}}"), "", "a worker's option on web");
    assert_eq!(inspect("{{.HostConfig.ShmSize}}"), (64u64 << 20).to_string());
    assert!(inspect("{{json .Config.Volumes}}").contains("\"/cache\""), "{}", inspect("{{json .Config.Volumes}}"));
    let hosts = d.ssh(&format!("run {app} cat /etc/hosts")).ok().stdout.clone();
    assert!(hosts.contains("10.1.2.3\tspecial.test"), "{hosts}");
    // The containers know their commit (dokku's GIT_REV), under another name when asked.
    let sha = repo.git(&["rev-parse", "HEAD"]).ok().stdout.trim().to_string();
    assert_eq!(d.ssh(&format!("run {app} sh -c 'echo $GIT_REV'")).ok().stdout, format!("{sha}\n"));
    d.ssh(&format!("git:set {app} rev-env-var COMMIT_SHA")).ok();
    assert_eq!(d.ssh(&format!("run {app} sh -c 'echo $COMMIT_SHA-$GIT_REV'")).ok().stdout, format!("{sha}-\n"));
    d.ssh(&format!("git:set {app} rev-env-var ''")).ok();
    assert_eq!(d.ssh(&format!("run {app} sh -c 'echo x$COMMIT_SHA$GIT_REV'")).ok().stdout, "x\n");
    // An app's key reads them, and may not change them.
    let bob = crate::harness::keygen(d.dir.path(), "bob");
    d.ssh_as(&d.admin, &format!("ssh-keys:add bob --app {app}"), bob.public.as_bytes()).ok();
    let listed = d.ssh_as(&bob, &format!("docker-options:list {app} --phase run"), b"");
    assert_eq!((listed.code, listed.stdout.as_str()), (0, "--add-host special.test:10.1.2.3\n"), "{listed:#?}");
    let refused = d.ssh_as(&bob, &format!("docker-options:add {app} deploy --privileged"), b"");
    assert_ne!(refused.code, 0, "{refused:#?}");
    assert_eq!(d.ssh(&format!("docker-options:list {app} --phase deploy")).ok().stdout, "--label com.example.team=web\n--shm-size 64m\n-v /cache\n");
}

/// dokku's build and process properties take effect: `builder:set build-dir` builds a
/// directory of the pushed tree, `ps:set procfile-path` reads the Procfile there,
/// `ps:set stop-timeout-seconds` bounds how long a stop waits for a process that ignores
/// SIGTERM, `builder:set skip-cleanup` keeps a failed step's container, and
/// `apps:set --global disable-autocreation` refuses a push to a new app.
#[test]
fn build_dir_procfile_path_stop_timeout_and_skip_cleanup_take_effect() {
    let d = Daemon::start();
    d.ssh("apps:create mono").ok();
    d.ssh("builder:set mono build-dir services/web").ok();
    d.ssh("builder:set mono build-dir ../etc").refused("Invalid build-dir");
    d.ssh("ps:set --global procfile-path deploy/Procfile").ok();
    assert_eq!(d.ssh("ps:report mono --ps-computed-procfile-path").ok().stdout, "deploy/Procfile\n");
    let repo = AppRepo::new(&d, "mono");
    // The root has a Dockerfile that would fail; the app is the directory's. Its web
    // process ignores SIGTERM (a trap in the shell that tini signals).
    repo.write("Dockerfile", "FROM berth-test/busybox\nRUN false\n")
        .write("services/web/Dockerfile", &web_dockerfile("from the subdirectory", 0))
        .write("services/web/deploy/Procfile", "web: sh -c 'trap \"\" TERM; httpd -f -p $PORT -h /www & while true; do sleep 1; done'\n")
        .commit("monorepo");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{out:#?}");
    d.ssh("domains:add mono mono.example.com").ok();
    assert_eq!(get(&d, "mono.example.com"), (200, "from the subdirectory".into()));
    // A stop waits the app's stop timeout, then kills.
    d.ssh("ps:set mono stop-timeout-seconds 1").ok();
    d.ssh("ps:set mono stop-timeout-seconds 0").refused("Invalid stop-timeout-seconds");
    let started = std::time::Instant::now();
    d.ssh("ps:stop mono").ok();
    let took = started.elapsed();
    assert!(took < std::time::Duration::from_secs(15), "ps:stop took {took:?}: the 1 s stop timeout was not used (default 30 s)");
    d.ssh("ps:set --global procfile-path").ok();
    // A build dir the tree does not have: the push is refused, saying which.
    d.ssh("builder:set mono build-dir services/api").ok();
    repo.write("README", "moved").commit("readme");
    let out = repo.push(&d, "main");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("no directory services/api"), "{out:#?}");
    // skip-cleanup: the failed step's container stays for a look.
    d.ssh("apps:create keep").ok();
    d.ssh("builder:set keep skip-cleanup yes").refused("true or false");
    d.ssh("builder:set keep skip-cleanup true").ok();
    let keep = AppRepo::new(&d, "keep");
    keep.write("Dockerfile", "FROM berth-test/busybox\nRUN echo kept-by-skip-cleanup && false\n").commit("fails");
    assert_ne!(keep.push(&d, "main").code, 0);
    let kept = docker(&["ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Command}}"]);
    let ids: Vec<&str> = kept.lines().filter(|l| l.contains("kept-by-skip-cleanup")).filter_map(|l| l.split_whitespace().next()).collect();
    assert!(!ids.is_empty(), "no container of the failed step was kept: {kept}");
    for id in ids {
        docker(&["rm", "-f", id]);
    }
    // No push creates an app once autocreation is off.
    d.ssh("apps:set --global disable-autocreation true").ok();
    d.ssh("apps:set keep disable-autocreation true").refused("Property can only be specified globally");
    let fresh = AppRepo::new(&d, "fresh");
    fresh.write("Dockerfile", &web_dockerfile("new", 0)).commit("new");
    let out = fresh.push(&d, "main");
    assert_ne!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("a push does not create apps here"), "{out:#?}");
    assert_eq!(d.ssh("apps:exists fresh").code, 1);
}

/// git:set keep-git-dir: the build sees the repository, whose branch is the pushed commit
/// (git reads it back). ps:set skip-deploy: a push builds a release that does not serve
/// until `releases:rollback` deploys it. git:set source-image: what ps:rebuild deploys; a
/// push clears it.
#[test]
fn keep_git_dir_skip_deploy_and_source_image_take_effect() {
    let d = Daemon::start();
    let app = "keeper";
    d.ssh(&format!("apps:create {app}")).ok();
    d.ssh(&format!("domains:add {app} keeper.example.com")).ok();
    assert_eq!(d.ssh(&format!("git:report {app} --git-computed-keep-git-dir")).ok().stdout, "false\n");
    d.ssh("git:set --global keep-git-dir true").ok();
    d.ssh(&format!("git:set {app} keep-git-dir maybe")).refused("Invalid keep-git-dir");
    let repo = AppRepo::new(&d, app);
    let dockerfile = |text: &str| format!("FROM berth-test/busybox\nCOPY . /src\nRUN test -f /src/.git/HEAD\nRUN mkdir /www && echo '{text}' > /www/index.html\nCMD [\"sh\", \"-c\", \"exec httpd -f -p $PORT -h /www\"]\n");
    repo.write("Dockerfile", &dockerfile("one")).commit("one");
    repo.write("notes.txt", "second commit\n").commit("two");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{out:#?}");
    assert_eq!(get(&d, "keeper.example.com"), (200, "one".into()));
    // The image's /src/.git is a repository whose main is the pushed commit, history and all.
    let head = repo.git(&["rev-parse", "HEAD"]).stdout.trim().to_string();
    let container = docker(&["create", &format!("berth/{app}:v1")]);
    let copied = temp_dir();
    docker(&["cp", &format!("{}:/src/.git", container.trim()), &copied.path().join("git").to_string_lossy()]);
    docker(&["rm", container.trim()]);
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").arg("--git-dir").arg(copied.path().join("git")).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(git(&["rev-parse", "main"]), head);
    assert_eq!(git(&["symbolic-ref", "HEAD"]), "refs/heads/main");
    assert_eq!(git(&["log", "--format=%s"]), "two\none");
    git(&["fsck", "--no-dangling"]);

    // skip-deploy: built and recorded, not served; rollback to it deploys it.
    d.ssh(&format!("ps:set {app} skip-deploy true")).ok();
    assert_eq!(d.ssh(&format!("ps:report {app} --ps-computed-skip-deploy")).ok().stdout, "true\n");
    repo.write("Dockerfile", &dockerfile("two")).commit("three");
    let out = repo.push(&d, "main");
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stderr.contains("Skipping the deploy of v2"), "{out:#?}");
    assert_eq!(get(&d, "keeper.example.com"), (200, "one".into()));
    let listed = d.ssh(&format!("releases {app}")).ok().stdout.clone();
    assert!(listed.contains("built, not deployed"), "{listed}");
    d.ssh(&format!("releases:rollback {app} 2")).ok();
    assert_eq!(get(&d, "keeper.example.com"), (200, "two".into()));
    d.ssh(&format!("ps:set {app} skip-deploy")).ok();

    // source-image: ps:rebuild deploys it; a push clears it.
    ci_image("berth-test/keeper-src:one", "from the source image");
    d.ssh(&format!("git:set {app} source-image berth/other:v1")).refused("another app's image");
    d.ssh(&format!("git:set {app} source-image berth-test/keeper-src:one")).ok();
    d.ssh(&format!("ps:rebuild {app}")).ok();
    assert_eq!(get(&d, "keeper.example.com"), (200, "from the source image".into()));
    repo.write("Dockerfile", &dockerfile("three")).commit("four");
    assert_eq!(repo.push(&d, "main").code, 0);
    assert_eq!(d.ssh(&format!("git:report {app} --git-source-image")).ok().stdout, "\n");
    d.ssh(&format!("ps:rebuild {app}")).ok();
    assert_eq!(get(&d, "keeper.example.com"), (200, "three".into()));
    d.ssh(&format!("apps:destroy {app} --force")).ok();
    // Its layers may be another test's build cache at this moment: only the name goes.
    docker(&["rmi", "--no-prune", "berth-test/keeper-src:one"]);
}
