//! The engine's build request with a cgroup parent. bollard's `BuildImageOptions` has no
//! `cgroupparent`, which the engine's `/build` takes (moby reads it into the build
//! containers' `CgroupParent`), so a Dockerfile build that should run under berth's
//! idle-priority cgroup is sent here: bollard's own options, serialized as bollard does,
//! plus that one parameter, over the engine's Unix socket with hyper; the answer is read
//! as bollard's `BuildInfo` lines. Any other engine address gets bollard's request.

use std::path::{Path, PathBuf};

use bollard::models::BuildInfo;
use bollard::query_parameters::BuildImageOptions;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::RuntimeError;

/// The engine's Unix socket, as bollard's local defaults find it; None for an engine
/// reached another way (TCP, SSH).
pub(super) fn socket() -> Option<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => host.strip_prefix("unix://").map(PathBuf::from),
        _ => Some(PathBuf::from("/var/run/docker.sock")),
    }
}

/// Starts a build of `context` (the build context's tar, as a stream) with `options` and
/// `cgroupparent`; returns the engine's output, one `BuildInfo` per line, as it streams
/// (dropping it ends the connection, which cancels the build).
pub(super) async fn start<C>(socket: &Path, options: &BuildImageOptions, cgroup_parent: &str, context: C) -> Result<impl Stream<Item = Result<BuildInfo, RuntimeError>> + use<C>, RuntimeError>
where
    C: Stream<Item = std::io::Result<Bytes>> + Send + 'static,
{
    let failed = |what: &str, e: &dyn std::fmt::Display| RuntimeError::Build(format!("{what}: {e}"));
    let mut query = serde_urlencoded::to_string(options).map_err(|e| failed("cannot write the build request", &e))?;
    query.push('&');
    query.push_str(&serde_urlencoded::to_string([("cgroupparent", cgroup_parent)]).map_err(|e| failed("cannot write the build request", &e))?);
    let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| RuntimeError::Unreachable(format!("{}: {e}", socket.display())))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.map_err(|e| failed("the engine's build request", &e))?;
    tokio::spawn(connection);
    let body = context.map(|chunk| chunk.map(Frame::data));
    let request = hyper::Request::post(format!("/build?{query}"))
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONTENT_TYPE, "application/x-tar")
        .body(StreamBody::new(body))
        .map_err(|e| failed("cannot write the build request", &e))?;
    let response = sender.send_request(request).await.map_err(|e| failed("the engine's build request", &e))?;
    let status = response.status();
    let body = response.into_body();
    if !status.is_success() {
        let text = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&text).ok().and_then(|v| v["message"].as_str().map(str::to_string));
        return Err(RuntimeError::Build(message.unwrap_or_else(|| format!("the engine answered {status}"))));
    }
    // The answer's frames cut lines anywhere: whole lines only, each a BuildInfo.
    let lines = async_stream_lines(http_body_util::BodyStream::new(body));
    Ok(lines.map(|line| line.and_then(|l| serde_json::from_slice::<BuildInfo>(&l).map_err(|e| RuntimeError::Build(format!("cannot read the engine's build output: {e}"))))))
}

/// Frames of an HTTP body as lines (without their newline; empty ones skipped).
fn async_stream_lines<S, E>(frames: S) -> impl Stream<Item = Result<Vec<u8>, RuntimeError>>
where
    S: Stream<Item = Result<Frame<Bytes>, E>> + Unpin,
    E: std::fmt::Display,
{
    futures_util::stream::unfold((frames, Vec::<u8>::new(), false), |(mut frames, mut pending, mut done)| async move {
        loop {
            if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).take(end).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some((Ok(line), (frames, pending, done)));
            }
            if done {
                if pending.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                let line = std::mem::take(&mut pending);
                return Some((Ok(line), (frames, pending, done)));
            }
            match frames.next().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        pending.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    done = true;
                    pending.clear();
                    return Some((Err(RuntimeError::Build(format!("the engine's build output ended: {e}"))), (frames, pending, done)));
                }
                None => done = true,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_become_whole_lines_wherever_they_are_cut() {
        let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = ["{\"stream\":\"Step 1\"}\n{\"str", "eam\":\"Step 2\"}\n\n", "{\"stream\":\"last\"}"]
            .into_iter()
            .map(|s| Ok(Frame::data(Bytes::from(s))))
            .collect();
        let lines: Vec<String> = async_stream_lines(futures_util::stream::iter(frames)).map(|l| String::from_utf8(l.unwrap()).unwrap()).collect().await;
        assert_eq!(lines, ["{\"stream\":\"Step 1\"}", "{\"stream\":\"Step 2\"}", "{\"stream\":\"last\"}"]);
    }

}
