//! The HTTP API as a script uses it: tokens made over ssh, plain HTTP calls (curl) to the
//! running daemon, the same commands and refusals as ssh, and the audit log of both doors.

use crate::harness::*;

/// `tokens:create ARGS` over ssh as `key` (None: the admin): the token it printed once.
fn token(d: &Daemon, key: Option<&Key>, args: &str) -> String {
    let out = match key {
        Some(key) => d.ssh_as(key, &format!("tokens:create {args}"), b""),
        None => d.ssh(&format!("tokens:create {args}")),
    };
    out.ok();
    let secret = out.stdout.lines().last().unwrap_or_default().trim().to_string();
    assert!(secret.starts_with("berth_"), "no token in {out:#?}");
    secret
}

#[track_caller]
fn error(reply: &(u16, serde_json::Value), status: u16, needle: &str) {
    assert_eq!(reply.0, status, "{reply:?}");
    assert_eq!(reply.1["error"]["status"], status, "the error's shape: {reply:?}");
    let message = reply.1["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(needle), "{needle:?} in {reply:?}");
}

#[test]
fn tokens_are_scoped_like_keys_and_the_api_runs_the_same_commands() {
    base_image();
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "web");
    repo.write("Dockerfile", &web_dockerfile("web v1", 0)).commit("v1");
    assert_eq!(repo.push(&d, "main").code, 0);
    repo.write("Dockerfile", &web_dockerfile("web v2", 0)).commit("v2");
    assert_eq!(repo.push(&d, "main").code, 0);
    d.ssh("domains:add web web.example.com").ok();
    d.ssh("config:set web SECRET=s3cret OLD=gone").ok();
    d.ssh("apps:create other").ok();

    // No token, a wrong one: 401 with the error's shape; the OpenAPI document needs none.
    error(&d.api("GET", "/api/v1/apps", None, None), 401, "Bearer");
    error(&d.api("GET", "/api/v1/apps", Some("berth_wrong"), None), 401, "Invalid or expired token");
    let (status, doc) = d.api("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    assert!(doc["paths"]["/api/v1/apps/{app}/config"]["patch"].is_object(), "{doc}");

    // A read token: lists and reports; config values hidden; no change.
    let read = token(&d, None, "ci --scope read");
    assert!(!std::fs::read_to_string(d.root().join("keys/tokens.toml")).unwrap().contains(&read), "only the hash is stored");
    let (status, apps) = d.api("GET", "/api/v1/apps", Some(&read), None);
    assert_eq!(status, 200, "{apps}");
    assert!(apps.to_string().contains("\"web\""), "{apps}");
    let (status, log) = d.api("GET", "/api/v1/apps/web/deploys/last", Some(&read), None);
    assert_eq!(status, 403, "a deploy's output needs deploy access: {log}");
    let (status, config) = d.api("GET", "/api/v1/apps/web/config", Some(&read), None);
    assert_eq!((status, config["SECRET"].as_str()), (200, Some("<hidden>")), "{config}");
    error(&d.api("PATCH", "/api/v1/apps/web/config", Some(&read), Some(r#"{"A":"b"}"#)), 403, "read access");
    error(&d.api("POST", "/api/v1/apps/web/actions/restart", Some(&read), None), 403, "needs deploy");
    error(&d.api("GET", "/api/v1/apps/nothere", Some(&read), None), 404, "App nothere does not exist");

    // A scoped key makes tokens of its apps only, never more than it may do.
    let scoped = keygen(d.dir.path(), "scoped");
    d.local(&["ssh-keys:add", "scoped", "--app", "web"], scoped.public.as_bytes()).ok();
    d.ssh_as(&scoped, "tokens:create boss --scope admin", b"").refused("may not make a token with scope admin");
    d.ssh_as(&scoped, "tokens:create elsewhere --scope write --app other", b"").refused("may not manage app other");
    let deployer = token(&d, Some(&scoped), "deployer --scope deploy");
    error(&d.api("GET", "/api/v1/apps/other", Some(&deployer), None), 403, "may not manage app other");
    error(&d.api("DELETE", "/api/v1/apps/other", Some(&deployer), None), 403, "");
    // Deploy access: a rollback through the API serves the old release, as over ssh.
    let (status, out) = d.api("POST", "/api/v1/apps/web/rollback", Some(&deployer), Some(r#"{"version":1}"#));
    assert_eq!(status, 200, "{out}");
    let (status, log) = d.api("GET", "/api/v1/apps/web/deploys/last", Some(&deployer), None);
    assert_eq!(status, 200, "{log}");
    assert_eq!(log["output"].as_array().unwrap().iter().map(|l| l.as_str().unwrap_or_default().to_string()).collect::<Vec<_>>(), out["output"].as_array().unwrap().iter().map(|l| l.as_str().unwrap_or_default().to_string()).collect::<Vec<_>>(), "the kept output is what the rollback said");
    assert_eq!(get(&d, "web.example.com"), (200, "web v1".into()));
    error(&d.api("PATCH", "/api/v1/apps/web/formation", Some(&deployer), Some(r#"{"web":2}"#)), 403, "needs write");
    assert!(d.ssh_as(&scoped, "tokens:list", b"").ok().stdout.contains("deployer"));
    assert!(!d.ssh_as(&scoped, "tokens:list", b"").ok().stdout.contains("ci "), "a key sees its own tokens");

    // An admin token: create (an admin command), refuse, set and unset config in one release.
    let admin = token(&d, None, "ops --scope admin --expires 30d");
    let (status, _) = d.api("POST", "/api/v1/apps", Some(&admin), Some(r#"{"name":"api-made"}"#));
    assert_eq!(status, 201);
    error(&d.api("POST", "/api/v1/apps", Some(&admin), Some(r#"{"name":"api-made"}"#)), 409, "already exists");
    error(&d.api("POST", "/api/v1/apps", Some(&admin), Some(r#"{"name":"Bad!"}"#)), 422, "Invalid app name");
    error(&d.api("POST", "/api/v1/apps", Some(&admin), Some(r#"{"name":"--force"}"#)), 422, "Invalid name");
    error(&d.api("POST", "/api/v1/apps", Some(&admin), Some("{not json")), 400, "not JSON");
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(70_000));
    assert_eq!(d.api("POST", "/api/v1/apps", Some(&admin), Some(&big)).0, 413);
    error(&d.api("GET", "/api/v1/nothing", Some(&admin), None), 404, "No such API path");
    error(&d.api("POST", "/api/v1/tokens", Some(&admin), None), 405, "Method not allowed");
    error(&d.api("POST", "/api/v1/apps/web/actions/explode", Some(&admin), None), 404, "No action");
    error(&d.api("GET", "/api/v1/apps/web/config", None, None), 401, "");
    let releases_before = d.ssh("releases web --format json").ok().stdout.matches("\"version\"").count();
    let (status, out) = d.api("PATCH", "/api/v1/apps/web/config", Some(&admin), Some(r#"{"GREETING":"hello world","OLD":null}"#));
    assert_eq!(status, 200, "{out}");
    assert_eq!(d.ssh("run web sh -c 'echo $GREETING-$OLD'").ok().stdout.trim(), "hello world-", "the running release has the change");
    assert_eq!(d.ssh("releases web --format json").ok().stdout.matches("\"version\"").count(), releases_before + 1, "one release for both");
    let (status, config) = d.api("GET", "/api/v1/apps/web/config", Some(&admin), None);
    assert_eq!((status, config["GREETING"].as_str()), (200, Some("hello world")), "a token that may write reads values");
    error(&d.api("POST", "/api/v1/tokens", Some(&admin), None), 405, "");
    assert_eq!(d.api("GET", "/api/v1/apps/web/processes", Some(&admin), None).0, 200);

    // The audit log: both doors, each command once, the caller and how it ended.
    let (status, events) = d.api("GET", "/api/v1/events?app=web", Some(&admin), None);
    assert_eq!(status, 200, "{events}");
    let events = events.as_array().unwrap();
    assert!(events.iter().any(|e| e["door"] == "api" && e["caller"] == "token:ops" && e["command"] == "config:set" && e["code"] == 0), "{events:?}");
    assert!(events.iter().any(|e| e["door"] == "api" && e["caller"] == "token:ci" && e["command"] == "config:set" && e["code"] != 0), "{events:?}");
    assert!(events.iter().any(|e| e["door"] == "ssh" && e["command"] == "domains:add"), "{events:?}");
    assert!(!serde_json::to_string(events).unwrap().contains("hello world"), "no values in the audit log");
    assert!(d.ssh("events --app web").ok().stdout.contains("token:deployer (api)  releases:rollback web  exit 0"));

    // Revoked, expired, or its key removed: no more.
    d.ssh("tokens:revoke ops").ok();
    error(&d.api("GET", "/api/v1/apps", Some(&admin), None), 401, "Invalid or expired token");
    d.ssh("ssh-keys:remove scoped").ok();
    error(&d.api("GET", "/api/v1/apps/web", Some(&deployer), None), 401, "");
    let brief = token(&d, None, "brief --expires 1s");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    error(&d.api("GET", "/api/v1/apps", Some(&brief), None), 401, "");
    d.ssh("tokens:create bad --expires soon").refused("Invalid expiry");
}

#[test]
fn failed_authentications_are_limited_per_address() {
    let d = Daemon::start();
    let good = token(&d, None, "good");
    for _ in 0..10 {
        assert_eq!(d.api("GET", "/api/v1/apps", Some("berth_guess"), None).0, 401);
    }
    error(&d.api("GET", "/api/v1/apps", Some("berth_guess"), None), 429, "Too many failed authentications");
    error(&d.api("GET", "/api/v1/apps", Some(&good), None), 429, "", );
}

#[test]
fn logs_stream_as_server_sent_events_until_the_client_goes() {
    base_image();
    let d = Daemon::start();
    let repo = AppRepo::new(&d, "ticker");
    repo.write(
        "Dockerfile",
        "FROM berth-test/busybox\nRUN mkdir /www && echo hi > /www/index.html\nCMD [\"sh\", \"-c\", \"(while true; do echo tick; sleep 0.2; done) & exec httpd -f -p $PORT -h /www\"]\n",
    )
    .commit("v1");
    assert_eq!(repo.push(&d, "main").code, 0);
    let reader = token(&d, None, "reader --scope read");
    error(&d.api("GET", "/api/v1/apps/nothere/logs/stream", Some(&reader), None), 404, "App nothere does not exist");
    let out = std::process::Command::new("curl")
        .args(["-sN", "--max-time", "2", "-H", &format!("Authorization: Bearer {reader}")])
        .arg(format!("http://{}/api/v1/apps/ticker/logs/stream?tail=1", d.api_address()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ticks = text.lines().filter(|l| l.starts_with("data: ") && l.ends_with("tick")).count();
    assert!(ticks >= 4, "new lines arrive as events: {text:?}");
    // The client went: so did the command (its end is in the audit log).
    poll(std::time::Duration::from_secs(10), "the followed logs command to end", || {
        let events = d.ssh("events --app ticker --format json").ok().stdout.clone();
        if events.contains("\"command\":\"logs\"") { Ok(()) } else { Err(events) }
    });
}

/// schemathesis (PyPI; scripts/test.sh installs it in target/schemathesis) reads the OpenAPI
/// document from the live daemon and sends what it allows and what it does not: every
/// response must be one the document names, with its shape, and every request the schemas
/// allow must be taken (or refused only by the state: 404, 409).
#[test]
fn the_openapi_document_is_what_the_server_does() {
    let st = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/schemathesis/bin/st");
    assert!(st.exists(), "{} is missing: scripts/test.sh installs schemathesis there", st.display());
    base_image();
    let mut d = Daemon::start();
    // Its requests without a valid token are many: the limit on guesses would answer the
    // rest with 429.
    d.setting("api_auth_failures = 1000000".into());
    d.stop();
    d.boot();
    let repo = AppRepo::new(&d, "demo");
    repo.write("Dockerfile", &web_dockerfile("demo", 0)).commit("v1");
    assert_eq!(repo.push(&d, "main").code, 0);
    let admin = token(&d, None, "schemathesis --scope admin");
    let out = std::process::Command::new(&st)
        .args(["run", &format!("http://{}/api/v1/openapi.json", d.api_address()), "-H", &format!("Authorization: Bearer {admin}"), "--max-examples", "15", "--seed", "1"])
        // An image archive's validity is no schema's to say (any bytes are a "binary"): the
        // upload has its own test above.
        .args(["--exclude-path", "/api/v1/apps/{app}/images"])
        // Creating a service builds its image from the stack image (minutes, once per
        // machine): the services test over ssh does that; here the rest is checked.
        .args(["--exclude-operation-id", "post_services_kind"])
        .env("NO_COLOR", "1")
        .current_dir(d.dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "schemathesis found differences:\n{said}\n{}", String::from_utf8_lossy(&out.stderr));
    let (_, doc) = d.api("GET", "/api/v1/openapi.json", None, None);
    let total: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert!(said.contains(&format!("{} selected / {total} total", total - 2)), "every other route is checked: {said}");
}

#[test]
fn an_image_archive_uploaded_to_the_api_is_deployed_as_git_load_image_does() {
    base_image();
    let d = Daemon::start();
    d.ssh("apps:create uploaded").ok();
    d.ssh("domains:add uploaded uploaded.example.com").ok();
    let deployer = token(&d, None, "uploader --scope deploy");
    let dir = temp_dir();
    std::fs::write(dir.path().join("Dockerfile"), web_dockerfile("uploaded v1", 0)).unwrap();
    let tag = "berth-test/api-upload:v1";
    docker(&["build", "-q", "-t", tag, &dir.path().display().to_string()]);
    let archive = dir.path().join("image.tar");
    docker(&["save", "-o", &archive.display().to_string(), tag]);
    docker(&["rmi", "-f", tag]);
    let upload = |file: &std::path::Path| {
        let out = std::process::Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST", "-H", &format!("Authorization: Bearer {deployer}"), "-H", "Content-Type: application/x-tar", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(format!("http://{}/api/v1/apps/uploaded/images", d.api_address()))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.parse::<u16>().unwrap(), serde_json::from_str::<serde_json::Value>(body).unwrap_or_default())
    };
    let junk = dir.path().join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").unwrap();
    error(&upload(&junk), 422, "not an image archive");
    let (status, out) = upload(&archive);
    assert_eq!(status, 201, "{out}");
    assert_eq!(get(&d, "uploaded.example.com"), (200, "uploaded v1".into()));
    let events = d.ssh("events --app uploaded").ok().stdout.clone();
    assert!(events.contains("token:uploader (api)  git:load-image uploaded  exit 0"), "{events}");
    // Asked as server-sent events, a command's output comes as it is written, then how it ended.
    let out = std::process::Command::new("curl")
        .args(["-sN", "-X", "POST", "-H", &format!("Authorization: Bearer {deployer}"), "-H", "Accept: text/event-stream"])
        .arg(format!("http://{}/api/v1/apps/uploaded/actions/restart", d.api_address()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("data: -----> ") && text.trim_end().ends_with("event: end\ndata: {\"code\": 0}"), "{text}");
    assert_eq!(get(&d, "uploaded.example.com"), (200, "uploaded v1".into()));
}

#[test]
fn services_answer_through_the_api_as_over_ssh() {
    let d = Daemon::start();
    d.ssh("apps:create web").ok();
    let admin = token(&d, None, "ops --scope admin");
    let writer = token(&d, None, "writer --scope write --app web");
    let (status, list) = d.api("GET", "/api/v1/services/postgres", Some(&admin), None);
    assert_eq!((status, list.clone()), (200, serde_json::json!([])), "{list}");
    error(&d.api("GET", "/api/v1/services/postgres/nothere", Some(&admin), None), 404, "postgres service nothere does not exist");
    error(&d.api("GET", "/api/v1/services/mysql", Some(&admin), None), 404, "No service kind");
    error(&d.api("POST", "/api/v1/services/redis", Some(&admin), Some(r#"{"name":"Bad_Name"}"#)), 422, "Invalid service name");
    error(&d.api("POST", "/api/v1/services/redis", Some(&writer), Some(r#"{"name":"cache"}"#)), 403, "is not an admin key");
    error(&d.api("POST", "/api/v1/services/redis/nothere/links", Some(&admin), Some(r#"{"app":"web"}"#)), 404, "redis service nothere does not exist");
    assert_eq!(d.ssh("redis:list --format json").ok().stdout.trim(), "[]", "nothing was made");
}
