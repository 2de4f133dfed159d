//! The HTTP API, `/api/v1`: the second door to the same commands. Each route is a row of
//! [`ROUTES`] that turns a request (path, query, JSON body) into a command line, which runs
//! through `session::spawn` exactly as an ssh command does, for a caller made from the bearer
//! token (`tokens:create`): same parsing, same authorization, same handlers, same audit log.
//! A command's JSON report (`--format json`) is the response; its one-line error becomes
//! `{"error": {"status", "message"}}` with the HTTP status that fits. The OpenAPI document
//! (`/api/v1/openapi.json`) is made from the same rows.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::http::{ApiError, Http, failure, run, run_with_input, stream};
use crate::engine::{Caller, Door, Engine};
use crate::store::{Access, Role};

/// A request body is at most this (JSON settings; images are pushed, not uploaded here).
pub const MAX_BODY: usize = 64 * 1024;
/// A token's last use is written at most this often.
const LAST_USED_EVERY: Duration = Duration::from_secs(60);

/// What a command's stdout is, for the response.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A JSON object (`--format json`): the response as it is.
    Json,
    /// A JSON array (`--format json` of a list): the response as it is.
    List,
    /// Lines for a person: `{"output": [lines]}`.
    Lines,
    /// Lines as they come, as server-sent events (`data: LINE`), until the client goes.
    Stream,
    /// Prometheus' text format (`metrics`), as the command printed it.
    Metrics,
}

/// What a route reads from the request, and the command line it makes of it.
pub struct Request<'a> {
    pub params: &'a HashMap<String, String>,
    pub query: &'a HashMap<String, String>,
    pub body: &'a Value,
}

type Build = fn(&Request) -> Result<Vec<String>, ApiError>;

pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// The body's JSON Schema, for the OpenAPI document (None: no body).
    pub body: Option<&'static str>,
    /// The query's parameters: (name, JSON Schema).
    pub query: &'static [(&'static str, &'static str)],
    pub shape: Shape,
    pub created: bool,
    /// The body is not JSON but the command's stdin, streamed (an image archive).
    pub upload: bool,
    pub build: Build,
}

fn param<'a>(r: &'a Request, name: &str) -> Result<&'a str, ApiError> {
    word(r.params.get(name).map(String::as_str).unwrap_or_default(), name)
}

/// A value that goes into a command line as one word: never one clap would take for an
/// option.
fn word<'a>(value: &'a str, what: &str) -> Result<&'a str, ApiError> {
    if value.is_empty() || value.starts_with('-') {
        return Err(ApiError::new(422, format!("Invalid {what} {}", crate::validate::quoted(value))));
    }
    Ok(value)
}

fn body_str<'a>(r: &'a Request, name: &str) -> Result<&'a str, ApiError> {
    let value = r.body.get(name).ok_or_else(|| ApiError::new(422, format!("The body has no {name:?}")))?;
    word(value.as_str().ok_or_else(|| ApiError::new(422, format!("{name:?} must be a string")))?, name)
}

fn line(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

fn with_app(r: &Request, words: &[&str]) -> Result<Vec<String>, ApiError> {
    let app = param(r, "app")?;
    let mut argv = vec![words[0].to_string(), app.to_string()];
    argv.extend(words[1..].iter().map(|w| w.to_string()));
    Ok(argv)
}

/// PATCH config: `{"KEY": "value", "OTHER": null}` sets and unsets in one release.
fn config_patch(r: &Request) -> Result<Vec<String>, ApiError> {
    use base64::Engine;
    let app = param(r, "app")?;
    let fields = r.body.as_object().filter(|f| !f.is_empty()).ok_or_else(|| ApiError::new(422, "The body must be an object of KEY: value (a string, or null to unset)"))?;
    let mut argv = line(&["config:set", app, "--encoded"]);
    for (key, value) in fields {
        word(key, "key")?;
        match value {
            Value::Null => argv.extend([format!("--unset={key}")]),
            Value::String(v) => argv.push(format!("{key}={}", base64::engine::general_purpose::STANDARD.encode(v))),
            _ => return Err(ApiError::new(422, format!("{key}: a value is a string, or null to unset"))),
        }
    }
    Ok(argv)
}

/// A JSON number that is a whole one (`2` or `2.0`, as JSON Schema's "integer" takes both).
fn whole(value: &Value) -> Option<u64> {
    value.as_u64().or_else(|| value.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= 9.0e15).map(|f| f as u64))
}

/// PATCH formation: `{"web": 2, "worker": 1}`.
fn formation(r: &Request) -> Result<Vec<String>, ApiError> {
    let app = param(r, "app")?;
    let fields = r.body.as_object().filter(|f| !f.is_empty()).ok_or_else(|| ApiError::new(422, "The body must be an object of PROCESS: count"))?;
    let mut argv = line(&["ps:scale", app]);
    for (process, count) in fields {
        word(process, "process")?;
        let count = whole(count).ok_or_else(|| ApiError::new(422, format!("{process}: a count is a whole number")))?;
        argv.push(format!("{process}={count}"));
    }
    Ok(argv)
}

fn action(r: &Request) -> Result<Vec<String>, ApiError> {
    let command = match param(r, "action")? {
        "restart" => "ps:restart",
        "stop" => "ps:stop",
        "start" => "ps:start",
        "rebuild" => "ps:rebuild",
        other => return Err(ApiError::new(404, format!("No action {} (restart, stop, start, rebuild)", crate::validate::quoted(other)))),
    };
    with_app(r, &[command])
}

fn logs(r: &Request) -> Result<Vec<String>, ApiError> {
    let mut argv = with_app(r, &["logs"])?;
    if let Some(n) = r.query.get("tail") {
        let n: u32 = n.parse().ok().filter(|n| *n <= 10_000).ok_or_else(|| ApiError::new(422, format!("Invalid tail {}: a number of lines, at most 10000", crate::validate::quoted(n))))?;
        argv.extend(["-n".into(), n.to_string()]);
    }
    if let Some(process) = r.query.get("process") {
        argv.extend(["-p".into(), word(process, "process")?.to_string()]);
    }
    Ok(argv)
}

fn events(r: &Request) -> Result<Vec<String>, ApiError> {
    let mut argv = line(&["events", "--format", "json"]);
    if let Some(app) = r.query.get("app") {
        crate::validate::app_name(app).map_err(|e| ApiError::new(422, e.to_string()))?;
        argv.extend(["--app".into(), app.clone()]);
    }
    if let Some(n) = r.query.get("n") {
        let n: u32 = n.parse().ok().filter(|n| *n <= 100_000).ok_or_else(|| ApiError::new(422, format!("Invalid n {}: a number, at most 100000", crate::validate::quoted(n))))?;
        argv.extend(["-n".into(), n.to_string()]);
    }
    Ok(argv)
}

/// `KIND:VERB` of the path's kind, then the path's service (if `named`) and `rest`.
fn service(r: &Request, verb: &str, named: bool, rest: &[&str]) -> Result<Vec<String>, ApiError> {
    let kind = match param(r, "kind")? {
        kind @ ("postgres" | "redis") => kind,
        other => return Err(ApiError::new(404, format!("No service kind {} (postgres, redis)", crate::validate::quoted(other)))),
    };
    let mut argv = vec![format!("{kind}:{verb}")];
    if named {
        argv.push(param(r, "service")?.to_string());
    }
    argv.extend(rest.iter().map(|w| w.to_string()));
    Ok(argv)
}

fn service_create(r: &Request) -> Result<Vec<String>, ApiError> {
    let name = body_str(r, "name")?;
    let mut argv = service(r, "create", false, &[name])?;
    if let Some(version) = r.body.get("version") {
        let version = word(version.as_str().ok_or_else(|| ApiError::new(422, "\"version\" must be a string"))?, "version")?;
        argv.extend(["--image-version".to_string(), version.to_string()]);
    }
    Ok(argv)
}

fn rollback(r: &Request) -> Result<Vec<String>, ApiError> {
    let mut argv = with_app(r, &["releases:rollback"])?;
    match r.body.get("version") {
        None | Some(Value::Null) => {}
        Some(n) if whole(n).is_some_and(|n| n <= u64::from(u32::MAX)) => argv.push(format!("v{}", whole(n).unwrap_or(0))),
        Some(_) => return Err(ApiError::new(422, "\"version\": a release number")),
    }
    Ok(argv)
}

// JSON Schemas of what requests carry, as strict as the commands' own checks (a value the
// schema allows is one the command takes, unless the state refuses it).
const APP: &str = r#"{"type": "string", "pattern": "^[a-z0-9][a-z0-9-]*(\\.[a-z0-9-]+)*$", "maxLength": 63}"#;
const DOMAIN: &str = r#"{"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$", "maxLength": 253}"#;
const PROCESS: &str = r#"{"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,29}$"}"#;
const ACTION: &str = r#"{"type": "string", "enum": ["restart", "stop", "start", "rebuild"]}"#;
const NEW_APP_BODY: &str = r#"{"type": "object", "required": ["name"], "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]+(-[a-z0-9]+)*(\\.[a-z0-9]+(-[a-z0-9]+)*)*$", "maxLength": 63}}}"#;
const DOMAIN_BODY: &str = r#"{"type": "object", "required": ["domain"], "properties": {"domain": DOMAIN}}"#;
const ROLLBACK_BODY: &str = r#"{"type": "object", "properties": {"version": {"type": "integer", "minimum": 1, "maximum": 4294967295}}}"#;
const DEPLOY_BODY: &str = r#"{"type": "object", "required": ["image"], "properties": {"image": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$", "maxLength": 255}}}"#;
const CONFIG_BODY: &str = r#"{"type": "object", "minProperties": 1, "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$", "maxLength": 255}, "additionalProperties": {"type": ["string", "null"], "pattern": "^[^\\u0000]*$", "maxLength": 4096}}"#;
const SCALE_BODY: &str = r#"{"type": "object", "minProperties": 1, "propertyNames": PROCESS, "additionalProperties": {"type": "integer", "minimum": 0, "maximum": 100}}"#;
const IMAGE: &str = r#"{"type": "string", "pattern": "^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?$", "maxLength": 255}"#;
const KIND: &str = r#"{"type": "string", "enum": ["postgres", "redis"]}"#;
const SERVICE: &str = r#"{"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$"}"#;
const SERVICE_BODY: &str = r#"{"type": "object", "required": ["name"], "properties": {"name": SERVICE, "version": {"type": "string", "pattern": "^[0-9]+$", "maxLength": 3}}}"#;
const LINK_BODY: &str = r#"{"type": "object", "required": ["app"], "properties": {"app": APP}}"#;
const TAIL: &str = r#"{"type": "integer", "minimum": 0, "maximum": 10000}"#;
const COUNT: &str = r#"{"type": "integer", "minimum": 0, "maximum": 100000}"#;
const NO_QUERY: &[(&str, &str)] = &[];

/// A path parameter's schema, by its name.
fn path_schema(name: &str) -> &'static str {
    match name {
        "app" => APP,
        "domain" => DOMAIN,
        "action" => ACTION,
        "kind" => KIND,
        "service" => SERVICE,
        _ => r#"{"type": "string"}"#,
    }
}

/// A schema of the constants above, with the names of others in it (`"domain": DOMAIN`)
/// replaced by them.
fn schema(text: &str) -> Value {
    let text = text.replace(": DOMAIN", &format!(": {DOMAIN}")).replace(": PROCESS", &format!(": {PROCESS}")).replace(": SERVICE", &format!(": {SERVICE}")).replace(": APP", &format!(": {APP}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("a schema that is not JSON ({e}): {text}"))
}

macro_rules! route {
    ($method:literal, $path:literal, $summary:literal, $shape:ident, $build:expr) => {
        route!($method, $path, $summary, $shape, None, NO_QUERY, false, $build)
    };
    ($method:literal, $path:literal, $summary:literal, $shape:ident, $body:expr, $query:expr, $created:literal, $build:expr) => {
        Route { method: $method, path: $path, summary: $summary, body: $body, query: $query, shape: Shape::$shape, created: $created, upload: false, build: $build }
    };
}

/// Every route of the API, in the order the OpenAPI document lists them.
pub static ROUTES: &[Route] = &[
    route!("GET", "/api/v1/apps", "List the apps", List, |_| Ok(line(&["apps:list", "--format", "json"]))),
    route!("POST", "/api/v1/apps", "Create an app", Lines, Some(NEW_APP_BODY), NO_QUERY, true, |r| Ok(line(&["apps:create", body_str(r, "name")?]))),
    route!("GET", "/api/v1/apps/{app}", "An app's report", Json, |r| with_app(r, &["apps:report", "--format", "json"])),
    route!("DELETE", "/api/v1/apps/{app}", "Destroy an app", Lines, |r| with_app(r, &["apps:destroy", "--force"])),
    route!("GET", "/api/v1/apps/{app}/releases", "An app's releases", List, |r| with_app(r, &["releases", "--format", "json"])),
    route!("POST", "/api/v1/apps/{app}/rollback", "Roll back to the previous release, or to `version`", Lines, Some(ROLLBACK_BODY), NO_QUERY, false, rollback),
    route!("POST", "/api/v1/apps/{app}/deploys", "Deploy an image this server has", Lines, Some(DEPLOY_BODY), NO_QUERY, true, |r| {
        let image = body_str(r, "image")?;
        with_app(r, &["git:from-image", image])
    }),
    Route {
        method: "POST",
        path: "/api/v1/apps/{app}/images",
        summary: "Deploy the image of a `docker save` archive (the body), as git:load-image",
        body: None,
        query: &[("image", IMAGE)],
        shape: Shape::Lines,
        created: true,
        upload: true,
        build: |r| {
            let mut argv = with_app(r, &["git:load-image"])?;
            if let Some(image) = r.query.get("image") {
                argv.push(word(image, "image")?.to_string());
            }
            Ok(argv)
        },
    },
    route!("GET", "/api/v1/apps/{app}/deploys/last", "The output of the app's last deploy", Lines, |r| with_app(r, &["releases:output"])),
    route!("GET", "/api/v1/apps/{app}/config", "An app's config (values hidden unless the token may write)", Json, |r| with_app(r, &["config:show", "--format", "json"])),
    route!("PATCH", "/api/v1/apps/{app}/config", "Set config values (a string) and unset keys (null), in one release", Lines, Some(CONFIG_BODY), NO_QUERY, false, config_patch),
    route!("GET", "/api/v1/apps/{app}/domains", "An app's domains", Json, |r| with_app(r, &["domains:report", "--format", "json"])),
    route!("POST", "/api/v1/apps/{app}/domains", "Add a domain", Lines, Some(DOMAIN_BODY), NO_QUERY, true, |r| {
        let domain = body_str(r, "domain")?;
        with_app(r, &["domains:add", domain])
    }),
    route!("DELETE", "/api/v1/apps/{app}/domains/{domain}", "Remove a domain", Lines, |r| {
        let domain = param(r, "domain")?;
        with_app(r, &["domains:remove", domain])
    }),
    route!("GET", "/api/v1/apps/{app}/processes", "What runs: each instance, its state and where", Json, |r| with_app(r, &["ps:report", "--format", "json"])),
    route!("PATCH", "/api/v1/apps/{app}/formation", "Scale process types", Lines, Some(SCALE_BODY), NO_QUERY, false, formation),
    route!("POST", "/api/v1/apps/{app}/actions/{action}", "restart, stop, start or rebuild", Lines, action),
    route!("GET", "/api/v1/apps/{app}/logs", "The app's last log lines", Lines, None, &[("tail", TAIL), ("process", PROCESS)], false, logs),
    route!("GET", "/api/v1/apps/{app}/logs/stream", "The app's log lines as they are written (server-sent events)", Stream, None, &[("tail", TAIL), ("process", PROCESS)], false, |r| {
        let mut argv = logs(r)?;
        argv.push("-t".into());
        Ok(argv)
    }),
    route!("GET", "/api/v1/apps/{app}/certificate", "The app's certificate", Json, |r| with_app(r, &["certs:report", "--format", "json"])),
    route!("GET", "/api/v1/apps/{app}/previews", "The app's previews", List, |r| with_app(r, &["previews", "--format", "json"])),
    route!("GET", "/api/v1/services/{kind}", "The services of a kind", List, |r| service(r, "list", false, &["--format", "json"])),
    route!("POST", "/api/v1/services/{kind}", "Create a service (admin)", Lines, Some(SERVICE_BODY), NO_QUERY, true, service_create),
    route!("GET", "/api/v1/services/{kind}/{service}", "A service: status, version, links, URL (password masked)", Json, |r| service(r, "info", true, &["--format", "json"])),
    route!("DELETE", "/api/v1/services/{kind}/{service}", "Destroy a service and its data (admin)", Lines, |r| service(r, "destroy", true, &["--force"])),
    route!("POST", "/api/v1/services/{kind}/{service}/links", "Link an app: its ALIAS_URL, as a new release", Lines, Some(LINK_BODY), NO_QUERY, true, |r| {
        let app = body_str(r, "app")?;
        service(r, "link", true, &[app])
    }),
    route!("DELETE", "/api/v1/services/{kind}/{service}/links/{app}", "Unlink an app, as a new release", Lines, |r| {
        let app = param(r, "app")?;
        service(r, "unlink", true, &[app])
    }),
    route!("POST", "/api/v1/services/{kind}/{service}/backups", "Back the service up now", Lines, |r| service(r, "backup", true, &[])),
    route!("GET", "/api/v1/events", "The audit log (the caller's apps)", List, None, &[("app", APP), ("n", COUNT)], false, events),
    route!("GET", "/api/v1/tokens", "The tokens the caller's key made", List, |_| Ok(line(&["tokens:list", "--format", "json"]))),
    route!("GET", "/metrics", "Metrics in Prometheus' text format: the token's apps (an admin's: every app and the server)", Metrics, |_| Ok(line(&["metrics"]))),
];

/// The caller a token stands for: never more than the key that made it has now (a token
/// whose key is gone is no more).
fn caller_of(engine: &Engine, token: &crate::store::Token) -> Option<Caller> {
    let maker = if token.created_by == "root" { Some((Role::Admin, Access::Admin)) } else { engine.store.load_keys().ok()?.keys.into_iter().find(|k| k.name == token.created_by).map(|k| { let c = Caller::of_key(&k); (c.role, c.access) }) };
    let (maker_role, maker_access) = maker?;
    let role = match (&maker_role, &token.apps) {
        (Role::Admin, None) => Role::Admin,
        (Role::Admin, Some(apps)) => Role::App { apps: apps.clone() },
        (Role::App { apps: own }, None) => Role::App { apps: own.clone() },
        (Role::App { apps: own }, Some(apps)) => Role::App { apps: apps.iter().filter(|a| own.contains(a)).cloned().collect() },
    };
    Some(Caller { name: format!("token:{}", token.name), role, local: false, may_create: false, access: token.scope.min(maker_access), door: Door::Api })
}

impl Http {
    fn authenticate(&self, headers: &HeaderMap, ip: IpAddr) -> Result<Caller, ApiError> {
        let secret = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
        let Some(secret) = secret else {
            return Err(ApiError::new(401, "Authorization: Bearer TOKEN is required (tokens:create over ssh makes one)"));
        };
        // Only a guess is limited: a request with no token at all guesses nothing.
        if self.failures.blocked(ip) {
            return Err(ApiError::new(429, "Too many failed authentications from this address: wait a minute"));
        }
        let now = chrono::Utc::now().timestamp();
        let tokens = self.engine.store.load_tokens().map_err(|e| ApiError::new(500, e.to_string()))?;
        let Some(token) = tokens.find(secret, now) else {
            self.failures.failed(ip);
            return Err(ApiError::new(401, "Invalid or expired token"));
        };
        let caller = caller_of(&self.engine, token).ok_or_else(|| {
            self.failures.failed(ip);
            ApiError::new(401, "Invalid or expired token")
        })?;
        self.touch(&token.name, now);
        Ok(caller)
    }

    /// Notes a token's use (at most once a minute: the file is not written per request).
    fn touch(&self, name: &str, now: i64) {
        {
            let mut seen = self.last_used.lock().unwrap_or_else(|p| p.into_inner());
            if seen.get(name).is_some_and(|at| at.elapsed() < LAST_USED_EVERY) {
                return;
            }
            seen.insert(name.to_string(), Instant::now());
        }
        let engine = self.engine.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let _keys = engine.store.lock_keys().await;
            if let Ok(mut tokens) = engine.store.load_tokens()
                && let Some(token) = tokens.tokens.iter_mut().find(|t| t.name == name)
            {
                token.last_used_at = Some(now);
                let _ = engine.store.save_tokens(&tokens);
            }
        });
    }

    /// Runs a route's command; `wants_events`: the client asked for its output as it comes
    /// (`Accept: text/event-stream`), a deploy's for one.
    async fn serve_route(&self, route: &'static Route, caller: Caller, request: &Request<'_>, upload: Option<axum::body::Body>, wants_events: bool) -> Response {
        let argv = match (route.build)(request) {
            Ok(argv) => argv,
            Err(e) => return e.into_response(),
        };
        if route.shape == Shape::Stream || (wants_events && upload.is_none()) {
            return stream(self.engine.clone(), caller, argv).await;
        }
        let (code, stdout, stderr) = match upload {
            Some(body) => run_with_input(self.engine.clone(), caller, argv, body).await,
            None => run(self.engine.clone(), caller, argv).await,
        };
        if code != 0 {
            return failure(code, &stderr).into_response();
        }
        let status = if route.created { StatusCode::CREATED } else { StatusCode::OK };
        match route.shape {
            Shape::Json | Shape::List => match serde_json::from_str::<Value>(stdout.trim()) {
                Ok(value) => (status, axum::Json(value)).into_response(),
                Err(_) => ApiError::new(500, "the command's report is not JSON").into_response(),
            },
            Shape::Metrics => (status, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], stdout).into_response(),
            Shape::Lines | Shape::Stream => {
                let lines: Vec<&str> = stdout.lines().collect();
                let mut body = json!({"output": lines});
                // A deploy's id is the release it made (a deploy, rollback, config change…).
                if let Some(release) = request.params.get("app").and_then(|app| released(app, &lines)) {
                    body["release"] = json!(release);
                }
                (status, axum::Json(body)).into_response()
            }
        }
    }
}

type Shared = Arc<Http>;

/// The router: every row of [`ROUTES`], the OpenAPI document, JSON 404/405s.
pub fn router(api: Shared) -> axum::Router {
    let mut router = super::dashboard::routes().route("/api/v1/openapi.json", axum::routing::get(|| async { axum::Json(openapi()) }));
    for route in ROUTES {
        let method: Method = route.method.parse().expect("a method");
        let filter = axum::routing::MethodFilter::try_from(method).expect("a method filter");
        if route.upload {
            let handler = move |State(api): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Path(params): Path<HashMap<String, String>>, Query(query): Query<HashMap<String, String>>, headers: HeaderMap, body: axum::body::Body| async move {
                let caller = match api.authenticate(&headers, super::http::client(peer, &headers)) {
                    Ok(caller) => caller,
                    Err(e) => return e.into_response(),
                };
                api.serve_route(route, caller, &Request { params: &params, query: &query, body: &Value::Null }, Some(body), false).await
            };
            router = router.route(route.path, axum::routing::on(filter, handler));
            continue;
        }
        let handler = move |State(api): State<Shared>, ConnectInfo(peer): ConnectInfo<SocketAddr>, Path(params): Path<HashMap<String, String>>, Query(query): Query<HashMap<String, String>>, headers: HeaderMap, body: Bytes| async move {
            let caller = match api.authenticate(&headers, super::http::client(peer, &headers)) {
                Ok(caller) => caller,
                Err(e) => return e.into_response(),
            };
            let body: Value = if body.is_empty() {
                Value::Null
            } else {
                match serde_json::from_slice(&body) {
                    Ok(value) => value,
                    Err(e) => return ApiError::new(400, format!("The body is not JSON: {e}")).into_response(),
                }
            };
            let wants_events = route.shape == Shape::Lines && headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/event-stream"));
            api.serve_route(route, caller, &Request { params: &params, query: &query, body: &body }, None, wants_events).await
        };
        router = router.route(route.path, axum::routing::on(filter, handler));
    }
    router
        .fallback(|| async { ApiError::new(404, "No such API path (see /api/v1/openapi.json)") })
        .method_not_allowed_fallback(|| async { ApiError::new(405, "Method not allowed here (see /api/v1/openapi.json)") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// Serves the API on `listener` until `stop`.
pub async fn serve(listener: tokio::net::TcpListener, engine: Arc<Engine>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let app = router(Http::new(engine)).into_make_service_with_connect_info::<SocketAddr>();
    let stopped = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
        tracing::error!("the API stopped: {e}");
    }
}

/// The OpenAPI 3 document of [`ROUTES`].
pub fn openapi() -> Value {
    let error = json!({"$ref": "#/components/schemas/Error"});
    let mut paths = serde_json::Map::new();
    for route in ROUTES {
        let mut parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": schema(path_schema(name))}))
            .collect();
        parameters.extend(route.query.iter().map(|(name, kind)| json!({"name": name, "in": "query", "required": false, "schema": schema(kind)})));
        let ok = if route.created { "201" } else { "200" };
        let content = match route.shape {
            Shape::Json => json!({"application/json": {"schema": {"type": "object"}}}),
            Shape::List => json!({"application/json": {"schema": {"type": "array"}}}),
            Shape::Lines => json!({"application/json": {"schema": {"$ref": "#/components/schemas/Output"}}}),
            Shape::Stream => json!({"text/event-stream": {"schema": {"type": "string"}}}),
            Shape::Metrics => json!({"text/plain": {"schema": {"type": "string"}}}),
        };
        let mut responses = serde_json::Map::new();
        responses.insert(ok.into(), json!({"description": "Done", "content": content}));
        for (code, what) in [("400", "Malformed request"), ("401", "No valid token"), ("403", "The token may not do this"), ("404", "Not found"), ("409", "Conflicts with the state"), ("413", "Body too large"), ("422", "Invalid value, or one the state refuses"), ("429", "Too many failed authentications")] {
            responses.insert(code.into(), json!({"description": what, "content": {"application/json": {"schema": error}}}));
        }
        let mut operation = json!({"summary": route.summary, "operationId": operation_id(route), "parameters": parameters, "responses": responses, "security": [{"token": []}]});
        if let Some(body) = route.body {
            operation["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": schema(body)}}});
        }
        if route.upload {
            operation["requestBody"] = json!({"required": true, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}});
        }
        let entry = paths.entry(route.path.to_string()).or_insert_with(|| json!({}));
        entry[route.method.to_ascii_lowercase()] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "berth", "version": env!("CARGO_PKG_VERSION"), "description": "Everything the ssh commands do: the same commands, the same authorization, the same errors."},
        "paths": paths,
        "components": {
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["status", "message"], "properties": {"status": {"type": "integer"}, "message": {"type": "string"}}}}},
                "Output": {"type": "object", "required": ["output"], "properties": {
                    "output": {"type": "array", "items": {"type": "string"}},
                    "release": {"type": "integer", "description": "The release the command made live: a deploy's id (GET /apps/{app}/releases)"}
                }}
            }
        }
    })
}

/// The release a command's output says went live (`-----> APP vN is live …`), the last one.
fn released(app: &str, lines: &[&str]) -> Option<u32> {
    let prefix = format!("-----> {app} v");
    lines.iter().rev().find_map(|line| line.strip_prefix(&prefix)?.split_once(" is live")?.0.parse().ok())
}

fn operation_id(route: &Route) -> String {
    let words: Vec<String> = route.path.trim_start_matches("/api/v1/").split('/').filter(|s| !s.is_empty()).map(|s| s.trim_matches(|c| c == '{' || c == '}').replace('-', "_")).collect();
    format!("{}_{}", route.method.to_ascii_lowercase(), words.join("_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(params: &[(&str, &str)], body: Value) -> (HashMap<String, String>, Value) {
        (params.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), body)
    }

    fn build(method: &str, path: &str, params: &[(&str, &str)], body: Value) -> Result<Vec<String>, ApiError> {
        let route = ROUTES.iter().find(|r| r.method == method && r.path == path).unwrap();
        let (params, body) = request(params, body);
        (route.build)(&Request { params: &params, query: &HashMap::new(), body: &body })
    }

    #[test]
    fn requests_become_the_command_lines_ssh_takes() {
        assert_eq!(build("POST", "/api/v1/apps", &[], json!({"name": "web"})).unwrap(), ["apps:create", "web"]);
        assert_eq!(released("web", &["-----> Deploying", "-----> web v12 is live (deployed in 1.2 s)", "done"]), Some(12));
        assert_eq!(released("web", &["-----> webshop v3 is live (deployed in 1 s)"]), None);
        assert_eq!(build("PATCH", "/api/v1/apps/{app}/formation", &[("app", "web")], json!({"web": 2})).unwrap(), ["ps:scale", "web", "web=2"]);
        assert_eq!(build("PATCH", "/api/v1/apps/{app}/config", &[("app", "web")], json!({"A": "b c", "B": null})).unwrap(), ["config:set", "web", "--encoded", "A=YiBj", "--unset=B"]);
        assert_eq!(build("POST", "/api/v1/apps/{app}/rollback", &[("app", "web")], json!({"version": 3})).unwrap(), ["releases:rollback", "web", "v3"]);
        assert_eq!(build("POST", "/api/v1/services/{kind}", &[("kind", "postgres")], json!({"name": "db", "version": "15"})).unwrap(), ["postgres:create", "db", "--image-version", "15"]);
        assert_eq!(build("POST", "/api/v1/services/{kind}/{service}/links", &[("kind", "redis"), ("service", "cache")], json!({"app": "web"})).unwrap(), ["redis:link", "cache", "web"]);
        assert_eq!(build("GET", "/api/v1/services/{kind}", &[("kind", "mysql")], Value::Null).unwrap_err().status, 404);
    }

    #[test]
    fn nothing_from_a_request_becomes_an_option() {
        assert_eq!(build("DELETE", "/api/v1/apps/{app}", &[("app", "--help")], Value::Null).unwrap_err().status, 422);
        assert_eq!(build("POST", "/api/v1/apps", &[], json!({"name": "--force"})).unwrap_err().status, 422);
        assert_eq!(build("PATCH", "/api/v1/apps/{app}/config", &[("app", "web")], json!({"--x": "1"})).unwrap_err().status, 422);
        assert_eq!(build("POST", "/api/v1/apps", &[], json!({"name": 3})).unwrap_err().status, 422);
        assert_eq!(build("PATCH", "/api/v1/apps/{app}/formation", &[("app", "web")], json!({"web": -1})).unwrap_err().status, 422);
    }

    #[test]
    fn the_openapi_document_lists_every_route_once() {
        let doc = openapi();
        for route in ROUTES {
            assert!(doc["paths"][route.path][route.method.to_ascii_lowercase()].is_object(), "{} {}", route.method, route.path);
        }
        let ids: std::collections::HashSet<String> = ROUTES.iter().map(operation_id).collect();
        assert_eq!(ids.len(), ROUTES.len(), "operation ids are unique");
    }
}
