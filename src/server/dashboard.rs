//! The dashboard, `/dashboard` on the API's listener: server-rendered pages (handlebars
//! templates in `assets/dashboard/`, which escape every value) and a little JavaScript (live
//! logs), no build step. Its data and its forms go through the same commands as ssh and the
//! API, for the caller of the session: the key that asked for the login (`dashboard:login`),
//! seeing and doing what that key may, now. A session is an HttpOnly, Secure, SameSite=Strict
//! cookie; every form carries the session's CSRF token.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::extract::{ConnectInfo, Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::http::{Http as Api, SESSION, error_line, run, status_of, stream};
use crate::engine::{Caller, Door};
use crate::store::{Access, Role};

const COOKIE: &str = "berth_session";

fn templates() -> &'static handlebars::Handlebars<'static> {
    static TEMPLATES: OnceLock<handlebars::Handlebars<'static>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut hb = handlebars::Handlebars::new();
        hb.set_strict_mode(false);
        for (name, text) in [("layout", include_str!("../../assets/dashboard/layout.hbs")), ("apps", include_str!("../../assets/dashboard/apps.hbs")), ("app", include_str!("../../assets/dashboard/app.hbs"))] {
            hb.register_template_string(name, text).expect("the dashboard's templates parse");
        }
        hb
    })
}

/// A page in the layout, with the security headers every page has.
fn page(template: &str, title: &str, who: &str, csrf: &str, notes: &Notes, data: &Value) -> Response {
    let body = templates().render(template, data).unwrap_or_else(|e| format!("<p>cannot render: {}</p>", handlebars::html_escape(&e.to_string())));
    let layout = json!({"title": title, "who": who, "csrf": csrf, "error": notes.error, "done": notes.done, "body": body});
    let html = templates().render("layout", &layout).unwrap_or_default();
    secured(Html(html).into_response())
}

fn secured(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, header::HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'; form-action 'self'"));
    headers.insert(header::X_FRAME_OPTIONS, header::HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, header::HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

/// A page for someone with no session (or a wrong link): how to get one.
fn stranger(status: StatusCode, why: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>berth</title><link rel=\"stylesheet\" href=\"/dashboard/static/dashboard.css\"></head><body><main><h1>berth</h1><p id=\"why\">{}</p><p>Log in with <code>ssh -p 2222 berth@HOST dashboard:login</code>, and open the link it prints.</p></main></body></html>",
        handlebars::html_escape(why)
    );
    secured((status, Html(html)).into_response())
}

/// What the last form did, shown once (`?done=…`, `?error=…`).
#[derive(Default, serde::Deserialize)]
pub struct Notes {
    done: Option<String>,
    error: Option<String>,
    reveal: Option<String>,
}

/// The caller a session stands for: its key as `keys/authorized.toml` says now.
fn caller_of(api: &Api, key: &str) -> Option<Caller> {
    if key == "root" {
        return Some(Caller { name: "root".into(), role: Role::Admin, local: false, may_create: true, access: Access::Admin, door: Door::Dashboard });
    }
    let keys = api.engine.store.load_keys().ok()?;
    keys.keys.iter().find(|k| k.name == key).map(|k| Caller { door: Door::Dashboard, ..Caller::of_key(k) })
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::COOKIE)?.to_str().ok()?;
    raw.split(';').filter_map(|c| c.trim().split_once('=')).find(|(name, _)| *name == COOKIE).map(|(_, v)| v.to_string())
}

/// The session's caller and CSRF token, or the page that says to log in.
fn visitor(api: &Api, headers: &HeaderMap) -> Result<(Caller, String, String), Box<Response>> {
    let away = |why: &str| Box::new(stranger(StatusCode::UNAUTHORIZED, why));
    let id = cookie(headers).ok_or_else(|| away("You are not logged in."))?;
    let (key, csrf) = api.sessions.find(&id).ok_or_else(|| away("Your session ended."))?;
    let caller = caller_of(api, &key).ok_or_else(|| away("The key of this session was removed."))?;
    Ok((caller, csrf, id))
}

/// Runs a command for the page's data: its JSON report, or the command's error line.
async fn report(api: &Api, caller: &Caller, argv: &[&str]) -> Result<Value, String> {
    let (code, stdout, stderr) = run(api.engine.clone(), caller.clone(), argv.iter().map(|w| w.to_string()).collect()).await;
    if code != 0 {
        return Err(error_line(&stderr));
    }
    serde_json::from_str(stdout.trim()).map_err(|e| format!("not JSON: {e}"))
}

/// One app's part of a report (a report of one app is that part itself).
fn of_app(report: Value, app: &str) -> Value {
    match report.get(app) {
        Some(part) if part.is_object() => part.clone(),
        _ => report,
    }
}

fn utc(secs: Option<i64>) -> String {
    secs.and_then(|s| u64::try_from(s).ok()).map(crate::output::utc).unwrap_or_default()
}

async fn login(State(api): State<std::sync::Arc<Api>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: axum::http::HeaderMap, Query(query): Query<HashMap<String, String>>) -> Response {
    let client = super::http::client(peer, &headers);
    if api.failures.blocked(client) {
        return stranger(StatusCode::TOO_MANY_REQUESTS, "Too many wrong login links from this address: wait a minute.");
    }
    let code = query.get("code").cloned().unwrap_or_default();
    let taken = {
        let _keys = api.engine.store.lock_keys().await;
        let mut logins = api.engine.store.load_logins().unwrap_or_default();
        let taken = logins.take(&code, chrono::Utc::now().timestamp());
        let _ = api.engine.store.save_logins(&logins);
        taken
    };
    let Some(login) = taken.filter(|l| caller_of(&api, &l.key).is_some()) else {
        api.failures.failed(client);
        return stranger(StatusCode::UNAUTHORIZED, "This login link was used already, has expired, or is wrong: ask for another with dashboard:login.");
    };
    let id = api.sessions.open(&login.key);
    let mut response = Redirect::to("/dashboard").into_response();
    let value = format!("{COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/dashboard; Max-Age={}", SESSION.as_secs());
    response.headers_mut().insert(header::SET_COOKIE, header::HeaderValue::from_str(&value).expect("a cookie"));
    secured(response)
}

async fn logout(State(api): State<std::sync::Arc<Api>>, headers: HeaderMap, Form(form): Form<HashMap<String, String>>) -> Response {
    let (_, csrf, id) = match visitor(&api, &headers) {
        Ok(v) => v,
        Err(page) => return *page,
    };
    if !crate::store::token::same(form.get("csrf").map(String::as_str).unwrap_or_default(), &csrf) {
        return stranger(StatusCode::FORBIDDEN, "This form is not from your session.");
    }
    api.sessions.close(&id);
    let mut response = stranger(StatusCode::OK, "You are logged out.");
    response.headers_mut().insert(header::SET_COOKIE, header::HeaderValue::from_static("berth_session=; HttpOnly; Secure; SameSite=Strict; Path=/dashboard; Max-Age=0"));
    response
}

async fn apps(State(api): State<std::sync::Arc<Api>>, headers: HeaderMap, Query(notes): Query<Notes>) -> Response {
    let (caller, csrf, _) = match visitor(&api, &headers) {
        Ok(v) => v,
        Err(page) => return *page,
    };
    let names: Vec<String> = report(&api, &caller, &["apps:list", "--format", "json"]).await.ok().and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default();
    let ps = report(&api, &caller, &["ps:report", "--format", "json"]).await.unwrap_or(Value::Null);
    let domains = report(&api, &caller, &["domains:report", "--format", "json"]).await.unwrap_or(Value::Null);
    let mut rows = Vec::new();
    for name in &names {
        let releases = report(&api, &caller, &["releases", name, "--format", "json"]).await.unwrap_or(Value::Null);
        let url = domains[name]["domains-app-vhosts"].get(0).and_then(Value::as_str).map(|d| format!("http://{d}"));
        rows.push(json!({"name": name, "status": ps[name]["status"], "release": ps[name]["release"], "url": url, "deployed": utc(releases[0]["created_at"].as_i64())}));
    }
    page("apps", "Apps", &caller.name, &csrf, &notes, &json!({"apps": rows}))
}

async fn app(State(api): State<std::sync::Arc<Api>>, headers: HeaderMap, Path(name): Path<String>, Query(notes): Query<Notes>) -> Response {
    let (caller, csrf, _) = match visitor(&api, &headers) {
        Ok(v) => v,
        Err(page) => return *page,
    };
    let known = match crate::validate::app_name(&name) {
        Ok(_) => report(&api, &caller, &["apps:report", &name, "--format", "json"]).await.map(|_| ()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(why) = known {
        let status = StatusCode::from_u16(status_of(&why, 1)).unwrap_or(StatusCode::NOT_FOUND);
        let mut response = page("apps", "Apps", &caller.name, &csrf, &Notes { error: Some(why), ..Default::default() }, &json!({}));
        *response.status_mut() = status;
        return response;
    }
    let ps = of_app(report(&api, &caller, &["ps:report", &name, "--format", "json"]).await.unwrap_or(Value::Null), &name);
    let ps = &ps;
    let releases = report(&api, &caller, &["releases", &name, "--format", "json"]).await.unwrap_or(Value::Null);
    let releases: Vec<Value> = releases
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let rollback = r["status"] != "active" && r["compacted"] != true && r["image"].as_str().is_some_and(|i| !i.is_empty());
            json!({"version": r["version"], "status": r["status"], "created": utc(r["created_at"].as_i64()), "by": r["deployed_by"], "cause": r["cause"], "rollback": rollback})
        })
        .collect();
    let reveal = notes.reveal.is_some() && caller.access >= Access::Write;
    let config = report(&api, &caller, &["config:show", &name, "--format", "json"]).await.unwrap_or(Value::Null);
    let config: Vec<Value> = config.as_object().into_iter().flatten().map(|(k, v)| json!({"key": k, "value": if reveal { v.clone() } else { json!("••••••") }})).collect();
    let domains = of_app(report(&api, &caller, &["domains:report", &name, "--format", "json"]).await.unwrap_or(Value::Null), &name);
    let domains = domains["domains-app-vhosts"].clone();
    let urls: Vec<String> = domains.as_array().into_iter().flatten().filter_map(Value::as_str).map(|d| format!("http://{d}")).collect();
    let previews = report(&api, &caller, &["previews", &name, "--format", "json"]).await.unwrap_or(Value::Null);
    let (_, deploy_log, _) = run(api.engine.clone(), caller.clone(), vec!["releases:output".into(), name.clone()]).await;
    let scale: Vec<Value> = ps["scale"].as_array().into_iter().flatten().filter_map(Value::as_str).filter_map(|s| s.split_once('=')).map(|(p, n)| json!({"process": p, "count": n})).collect();
    let data = json!({
        "name": name, "csrf": csrf, "status": ps["status"], "release": ps["release"], "urls": urls,
        "actions": ["restart", "stop", "start", "rebuild"], "releases": releases, "config": config, "reveal": reveal,
        "domains": domains, "containers": ps["containers"], "scale": scale, "previews": previews, "deploy_log": deploy_log,
    });
    page("app", &name, &caller.name, &csrf, &notes, &data)
}

/// A form's command: its line from the form, run for the session's caller, then back to the
/// app's page saying how it went.
async fn act(api: &Api, headers: &HeaderMap, app: &str, form: &HashMap<String, String>, argv: Result<Vec<String>, String>, done: &str) -> Response {
    let (caller, csrf, _) = match visitor(api, headers) {
        Ok(v) => v,
        Err(page) => return *page,
    };
    if !crate::store::token::same(form.get("csrf").map(String::as_str).unwrap_or_default(), &csrf) {
        return stranger(StatusCode::FORBIDDEN, "This form is not from your session.");
    }
    let back = |key: &str, text: &str| {
        let text: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
        let app: String = url::form_urlencoded::byte_serialize(app.as_bytes()).collect();
        secured(Redirect::to(&format!("/dashboard/apps/{app}?{key}={text}")).into_response())
    };
    let argv = match argv {
        Ok(argv) => argv,
        Err(why) => return back("error", &why),
    };
    let (code, _, stderr) = run(api.engine.clone(), caller, argv).await;
    if code != 0 {
        return back("error", &error_line(&stderr));
    }
    back("done", done)
}

/// A form value that goes into a command line as one word.
fn field<'a>(form: &'a HashMap<String, String>, name: &str) -> Result<&'a str, String> {
    let value = form.get(name).map(String::as_str).unwrap_or_default();
    if value.is_empty() || value.starts_with('-') {
        return Err(format!("Invalid {name} {}", crate::validate::quoted(value)));
    }
    Ok(value)
}

async fn post(State(api): State<std::sync::Arc<Api>>, headers: HeaderMap, Path((app, what)): Path<(String, String)>, Form(form): Form<HashMap<String, String>>) -> Response {
    use base64::Engine;
    if crate::validate::app_name(&app).is_err() {
        return stranger(StatusCode::NOT_FOUND, "No such app.");
    }
    let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (argv, done) = match what.as_str() {
        "rollback" => (field(&form, "version").map(|v| words(&["releases:rollback", &app, &format!("v{v}")])), "Rolled back".to_string()),
        "config" => {
            let value = base64::engine::general_purpose::STANDARD.encode(form.get("value").map(String::as_str).unwrap_or_default());
            (field(&form, "key").map(|k| words(&["config:set", &app, "--encoded", &format!("{k}={value}")])), "Config set".to_string())
        }
        "config/unset" => (field(&form, "key").map(|k| words(&["config:unset", &app, k])), "Config unset".to_string()),
        "domains" => (field(&form, "domain").map(|d| words(&["domains:add", &app, d])), "Domain added".to_string()),
        "domains/remove" => (field(&form, "domain").map(|d| words(&["domains:remove", &app, d])), "Domain removed".to_string()),
        "scale" => {
            let mut argv = words(&["ps:scale", &app]);
            let mut bad = None;
            for (process, count) in form.iter().filter(|(k, _)| *k != "csrf") {
                match (field(&form, process), count.parse::<u32>()) {
                    (Ok(_), Ok(n)) => argv.push(format!("{process}={n}")),
                    _ => bad = Some(format!("Invalid scale {process}={count}")),
                }
            }
            (bad.map_or(Ok(argv), Err), "Scaled".to_string())
        }
        action @ ("actions/restart" | "actions/stop" | "actions/start" | "actions/rebuild") => {
            let verb = action.trim_start_matches("actions/");
            (Ok(words(&[&format!("ps:{verb}"), &app])), format!("Done: {verb}"))
        }
        _ => return stranger(StatusCode::NOT_FOUND, "No such form."),
    };
    act(&api, &headers, &app, &form, argv, &done).await
}

async fn logs(State(api): State<std::sync::Arc<Api>>, headers: HeaderMap, Path(app): Path<String>) -> Response {
    let (caller, _, _) = match visitor(&api, &headers) {
        Ok(v) => v,
        Err(page) => return *page,
    };
    if crate::validate::app_name(&app).is_err() {
        return stranger(StatusCode::NOT_FOUND, "No such app.");
    }
    stream(api.engine.clone(), caller, vec!["logs".into(), app, "-t".into(), "-n".into(), "50".into()]).await
}

fn asset(kind: &'static str, text: &'static str) -> Response {
    secured(([(header::CONTENT_TYPE, kind)], text).into_response())
}

/// The dashboard's routes, for the API's router.
pub fn routes() -> axum::Router<std::sync::Arc<Api>> {
    use axum::routing::{get, post as on_post};
    axum::Router::new()
        .route("/dashboard", get(apps))
        .route("/dashboard/login", get(login))
        .route("/dashboard/logout", on_post(logout))
        .route("/dashboard/apps/{app}", get(app))
        .route("/dashboard/apps/{app}/logs", get(logs))
        .route("/dashboard/apps/{app}/{*what}", on_post(post))
        .route("/dashboard/static/dashboard.js", get(|| async { asset("application/javascript; charset=utf-8", include_str!("../../assets/dashboard/dashboard.js")) }))
        .route("/dashboard/static/dashboard.css", get(|| async { asset("text/css; charset=utf-8", include_str!("../../assets/dashboard/dashboard.css")) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_templates_parse_and_escape_what_they_show() {
        let data = json!({"apps": [{"name": "<script>x</script>", "status": "running", "release": "v1", "url": null, "deployed": ""}]});
        let html = templates().render("apps", &data).unwrap();
        assert!(html.contains("&lt;script&gt;") && !html.contains("<script>x"), "{html}");
        templates().render("app", &json!({"name": "a"})).unwrap();
    }

    #[test]
    fn a_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=b; berth_session=xyz; c=d".parse().unwrap());
        assert_eq!(cookie(&headers).as_deref(), Some("xyz"));
    }
}
