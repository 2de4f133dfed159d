//! What the HTTP doors (the API and the dashboard) share: the state of the listener
//! (`Http`: the engine, failed authentications by address, the dashboard's sessions), the
//! error every refusal becomes, and running a command line through `session::spawn` as the
//! ssh door does (collected, fed an upload, or streamed as server-sent events).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::engine::{Caller, Engine};
use crate::output::Chunk;

/// A command's output kept for the response.
const MAX_OUTPUT: usize = 8 * 1024 * 1024;
/// Failed authentications per address within `FAILURE_WINDOW` before it is refused (429),
/// unless berth.toml's `api_auth_failures` says otherwise.
const MAX_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// How long a dashboard session lasts from its login.
pub(super) const SESSION: Duration = Duration::from_secs(12 * 3600);

/// An error the API returns: its status and the one line that says why.
#[derive(Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
}

impl ApiError {
    pub(super) fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(json!({"error": {"status": self.status, "message": self.message}}))).into_response();
        if self.status == 401 {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"berth\""));
        }
        response
    }
}

/// The HTTP status of a command's one-line error: 400 a line the grammar refuses, 403 a
/// caller who may not, 404 what does not exist, 422 a value the checks refuse (their
/// words start with "Invalid", or "The input is not" for stdin), 413 an upload over the
/// limit, 409 anything else: what the state refuses now (not
/// deployed, exists already, locked). Pure.
pub fn status_of(message: &str, code: i32) -> u16 {
    if code == crate::commands::EXIT_USAGE {
        400
    } else if message.starts_with("Permission denied") {
        403
    } else if message.contains("does not exist") || message.starts_with("No such") {
        404
    } else if message.starts_with("Invalid") || message.starts_with("The input is not") || message.starts_with("No image archive") {
        422
    } else if message.contains(" is over ") && message.contains(" MB") {
        413
    } else {
        409
    }
}

/// Who is asking, for counting failed authentications: the peer, or behind berth's nginx
/// (a loopback peer) the address nginx appended to X-Forwarded-For (the last one: what the
/// client sent itself comes before it).
pub(super) fn client(peer: std::net::SocketAddr, headers: &axum::http::HeaderMap) -> IpAddr {
    if !peer.ip().is_loopback() {
        return peer.ip();
    }
    let forwarded = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).last();
    forwarded.and_then(|a| a.trim().parse().ok()).unwrap_or(peer.ip())
}

/// Failed authentications by address.
pub(super) struct Failures {
    seen: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    limit: u32,
}

impl Failures {
    fn new(limit: u32) -> Failures {
        Failures { seen: Mutex::new(HashMap::new()), limit }
    }

    pub(super) fn blocked(&self, ip: IpAddr) -> bool {
        let map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).is_some_and(|(n, since)| *n >= self.limit && since.elapsed() < FAILURE_WINDOW)
    }

    pub(super) fn failed(&self, ip: IpAddr) {
        let mut map = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
        // Bounded: addresses whose window ended go.
        if map.len() > 10_000 {
            map.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
    }
}

pub struct Http {
    pub(super) engine: Arc<Engine>,
    pub(super) failures: Failures,
    pub(super) last_used: Mutex<HashMap<String, Instant>>,
    /// The dashboard's sessions.
    pub(super) sessions: Sessions,
}

impl Http {
    pub fn new(engine: Arc<Engine>) -> Arc<Http> {
        let limit = engine.store.load_global().ok().and_then(|g| g.api_auth_failures).unwrap_or(MAX_FAILURES);
        Arc::new(Http { engine, failures: Failures::new(limit), last_used: Mutex::new(HashMap::new()), sessions: Default::default() })
    }

}

/// A dashboard session: the key it stands for, its CSRF token, when it ends.
pub struct Session {
    key: String,
    csrf: String,
    expires: Instant,
}

#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    pub(super) fn open(&self, key: &str) -> String {
        let id = crate::store::token::new_secret();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, s| s.expires > Instant::now());
        map.insert(id.clone(), Session { key: key.to_string(), csrf: crate::store::token::new_secret(), expires: Instant::now() + SESSION });
        id
    }

    /// The session's key and CSRF token.
    pub(super) fn find(&self, id: &str) -> Option<(String, String)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(id).filter(|s| s.expires > Instant::now()).map(|s| (s.key.clone(), s.csrf.clone()))
    }

    pub(super) fn close(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// The one line a failed command said why in (its stderr, without the ` !` mark).
pub(super) fn error_line(stderr: &str) -> String {
    stderr.lines().map(|l| l.trim_start_matches(" !").trim()).find(|l| !l.is_empty()).unwrap_or("the command failed").to_string()
}

/// The error of a command that failed: its first line, the status that fits.
pub(super) fn failure(code: i32, stderr: &str) -> ApiError {
    let message = error_line(stderr);
    ApiError::new(status_of(&message, code), message)
}

/// A command's output on its way out as server-sent events: its stdout lines as `data:`,
/// its stderr lines as `event: error`, then `event: end` with its exit code.
struct Streamed {
    output: tokio::sync::mpsc::Receiver<Chunk>,
    out: Vec<u8>,
    err: Vec<u8>,
    exit: Option<crate::session::Exit>,
    _held: crate::output::Held,
}

impl Streamed {
    /// The events of the whole lines written so far (none: an empty string).
    fn frames(&mut self) -> String {
        let mut frames = String::new();
        for (buffer, event) in [(&mut self.out, ""), (&mut self.err, "event: error\n")] {
            if let Some(end) = buffer.iter().rposition(|b| *b == b'\n') {
                let rest = buffer.split_off(end + 1);
                let whole = std::mem::replace(buffer, rest);
                for line in String::from_utf8_lossy(&whole).lines().filter(|l| !l.is_empty()) {
                    frames.push_str(&format!("{event}data: {line}\n\n"));
                }
            }
        }
        frames
    }
}

/// How long a server-sent event stream stays silent before a comment line.
const KEEPALIVE: Duration = Duration::from_secs(20);

/// Runs a command as server-sent events (`Streamed`) until it ends, or the client goes (a
/// command that goes on, `logs -t`, ends then). One that fails at once is a JSON error like
/// any other.
pub(super) async fn stream(engine: Arc<Engine>, caller: Caller, argv: Vec<String>) -> Response {
    let running = crate::session::spawn(engine, caller, argv, None);
    drop(running.stdin);
    let mut output = running.output;
    let first = tokio::time::timeout(Duration::from_millis(500), output.recv()).await;
    let first = match first {
        Ok(Some(Chunk::Stderr(bytes))) => {
            let mut stderr = bytes;
            while let Some(chunk) = output.recv().await {
                if let Chunk::Stderr(bytes) = chunk {
                    stderr.extend(bytes);
                }
            }
            let code = running.exit.code().await;
            return failure(code.max(1), &String::from_utf8_lossy(&stderr)).into_response();
        }
        Ok(Some(Chunk::Stdout(bytes))) => bytes,
        Ok(None) => {
            let code = running.exit.code().await;
            if code != 0 {
                return failure(code, "").into_response();
            }
            return events_response(axum::body::Body::from("event: end\ndata: {\"code\": 0}\n\n"));
        }
        Err(_) => Vec::new(),
    };
    let state = Streamed { output, out: first, err: Vec::new(), exit: Some(running.exit), _held: running.held };
    let events = futures_util::stream::unfold(state, |mut state| async move {
        loop {
            let frames = state.frames();
            if !frames.is_empty() {
                return Some((Ok::<_, std::convert::Infallible>(Bytes::from(frames)), state));
            }
            // A comment now and then: a proxy between (berth's nginx cuts after 60 s idle)
            // keeps a quiet stream open, and a client that went is noticed.
            let Ok(chunk) = tokio::time::timeout(KEEPALIVE, state.output.recv()).await else {
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), state));
            };
            match chunk {
                Some(Chunk::Stdout(bytes)) => state.out.extend(bytes),
                Some(Chunk::Stderr(bytes)) => state.err.extend(bytes),
                None => {
                    // The command is done: what is left of its lines, then how it ended.
                    let exit = state.exit.take()?;
                    state.out.push(b'\n');
                    state.err.push(b'\n');
                    let mut frames = state.frames();
                    frames.push_str(&format!("event: end\ndata: {{\"code\": {}}}\n\n", exit.code().await));
                    return Some((Ok(Bytes::from(frames)), state));
                }
            }
        }
    });
    events_response(axum::body::Body::from_stream(events))
}

fn events_response(body: axum::body::Body) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        // nginx (berth's site) passes each event on at once instead of buffering.
        .header("x-accel-buffering", "no")
        .body(body)
        .unwrap_or_else(|_| ApiError::new(500, "cannot stream").into_response())
}

/// Runs a command line for `caller` with `body` as its stdin, streamed as it arrives.
pub(super) async fn run_with_input(engine: Arc<Engine>, caller: Caller, argv: Vec<String>, body: axum::body::Body) -> (i32, String, String) {
    use futures_util::StreamExt;
    let running = crate::session::spawn(engine, caller, argv, None);
    let stdin = running.stdin;
    let feed = tokio::spawn(async move {
        let mut data = body.into_data_stream();
        while let Some(Ok(chunk)) = data.next().await {
            if stdin.send(chunk.to_vec()).await.is_err() {
                break;
            }
        }
    });
    let collected = collect(running.output, running.exit, running.held).await;
    feed.abort();
    collected
}

/// A command's output until it ends, and its exit code.
async fn collect(mut output: tokio::sync::mpsc::Receiver<Chunk>, exit: crate::session::Exit, held: crate::output::Held) -> (i32, String, String) {
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    while let Some(chunk) = output.recv().await {
        match chunk {
            Chunk::Stdout(bytes) if stdout.len() < MAX_OUTPUT => stdout.extend(bytes),
            Chunk::Stderr(bytes) if stderr.len() < MAX_OUTPUT => stderr.extend(bytes),
            _ => {}
        }
    }
    let code = exit.code().await;
    drop(held);
    (code, String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

/// Runs a command line for `caller` with no input: (exit code, stdout, stderr).
pub(super) async fn run(engine: Arc<Engine>, caller: Caller, argv: Vec<String>) -> (i32, String, String) {
    let running = crate::session::spawn(engine, caller, argv, None);
    drop(running.stdin);
    collect(running.output, running.exit, running.held).await
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_get_the_status_that_fits() {
        assert_eq!(status_of("App nothere does not exist", 1), 404);
        assert_eq!(status_of("Permission denied: key x may not manage app y", 1), 403);
        assert_eq!(status_of("App web already exists", 1), 409);
        assert_eq!(status_of("Invalid app name \"A\"", 1), 422);
        assert_eq!(status_of("web has no containers of its active release", 1), 409);
        assert_eq!(status_of("unexpected argument", crate::commands::EXIT_USAGE), 400);
    }
}
