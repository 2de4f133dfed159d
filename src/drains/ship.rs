//! One drain's sender: a bounded buffer the followers put lines in (never waiting: when it
//! is full the oldest line goes, and is counted), and a task that sends what it holds,
//! reconnecting with backoff while the drain is down. A line leaves the buffer once it was
//! written (syslog) or the batch was answered 2xx (HTTP).
//!
//! Syslog over TCP has no answer: a server that stops drops what it had not read yet, and
//! the writer learns only that the connection closed. So lines written shortly before a
//! connection was found closed are sent again on the next one: a server may get a line
//! twice, never lose one to a restart.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::wire::{self, Drain, Line};

/// Lines a drain holds while it is down, and their bytes at most; past either the oldest
/// are dropped (and counted).
pub const BUFFER_LINES: usize = 20_000;
pub const BUFFER_BYTES: usize = 8 * 1024 * 1024;
/// Lines sent at once.
const BATCH: usize = 500;
/// How long a connection, a handshake, a write or an HTTP answer may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// Lines written to a syslog connection this long before it was found closed may have
/// been lost with it (the server stopped reading, or closed before it read them): they
/// are sent again.
const UNCONFIRMED: Duration = Duration::from_secs(2);
const LAST_RETRY: Duration = Duration::from_secs(5);

/// What a drain's sender has done, for `logs:report`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub sent: u64,
    pub dropped: u64,
    pub buffered: usize,
    /// The last failure, while the drain is failing.
    pub failing: Option<String>,
}

pub struct Sender {
    drain: Drain,
    token: Option<String>,
    /// It may be at a private address (an admin set it).
    private_ok: bool,
    hostname: String,
    buffer: Mutex<Buffer>,
    /// Lines were put, it was stopped, or its syslog connection closed.
    ready: Arc<Notify>,
    sent: AtomicU64,
    dropped: AtomicU64,
    failing: Mutex<Option<String>>,
    /// No app's lines go here any more: its task ends.
    stopped: AtomicBool,
}

#[derive(Default)]
struct Buffer {
    lines: VecDeque<Line>,
    bytes: usize,
}

/// What a line takes in the buffer, about.
fn size(line: &Line) -> usize {
    line.text.len() + line.app.len() + line.process.len() + line.time.len() + 64
}

impl Sender {
    pub fn new(drain: Drain, token: Option<String>, private_ok: bool, hostname: String) -> Sender {
        Sender {
            drain,
            token,
            private_ok,
            hostname,
            buffer: Mutex::new(Buffer::default()),
            ready: Arc::new(Notify::new()),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failing: Mutex::new(None),
            stopped: AtomicBool::new(false),
        }
    }

    /// Takes a line; never waits. A full buffer drops its oldest lines.
    pub fn put(&self, line: Line) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer.bytes += size(&line);
        buffer.lines.push_back(line);
        self.bound(&mut buffer);
        drop(buffer);
        self.ready.notify_one();
    }

    /// Drops the oldest lines past the buffer's bounds, counted.
    fn bound(&self, buffer: &mut Buffer) {
        while buffer.lines.len() > BUFFER_LINES || (buffer.bytes > BUFFER_BYTES && buffer.lines.len() > 1) {
            let Some(old) = buffer.lines.pop_front() else { break };
            buffer.bytes = buffer.bytes.saturating_sub(size(&old));
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!("log drain {:?}: buffer full, {dropped} line(s) dropped so far", self.drain);
            }
        }
    }

    /// A syslog connection ended at `ended` (a write that began then failed), or earlier,
    /// when the server closed it. The lines written to it since `UNCONFIRMED` before go back to the buffer's front, to be sent first on the next connection;
    /// they count as sent once they are. Returns how many went back.
    fn lost(&self, mut connection: Connection, ended: Instant) -> usize {
        let ended = connection.closed.get().map_or(ended, |closed| (*closed).min(ended));
        let since = ended.checked_sub(UNCONFIRMED).unwrap_or(ended);
        let again: Vec<Line> = connection.written.drain(..).filter(|(at, _)| *at >= since).flat_map(|(_, lines)| lines).collect();
        let count = again.len();
        if count == 0 {
            return 0;
        }
        let _ = self.sent.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |sent| Some(sent.saturating_sub(count as u64)));
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        for line in again.into_iter().rev() {
            buffer.bytes += size(&line);
            buffer.lines.push_front(line);
        }
        self.bound(&mut buffer);
        count
    }

    /// Ends its task (what it holds is dropped).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.ready.notify_one();
    }

    pub fn status(&self) -> Status {
        Status {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            buffered: self.buffer.lock().unwrap_or_else(|e| e.into_inner()).lines.len(),
            failing: self.failing.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// The first lines held, up to `BATCH` (they stay until `sent`).
    fn batch(&self) -> Vec<Line> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner()).lines.iter().take(BATCH).cloned().collect()
    }

    /// `batch`, the front, was delivered. (The front may have been dropped meanwhile, the
    /// buffer being full: then fewer go, the batch's last ones.) Returns how many went.
    fn sent(&self, batch: &[Line]) -> usize {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let mut delivered = 0;
        for line in batch {
            if buffer.lines.front() == Some(line) {
                buffer.lines.pop_front();
                buffer.bytes = buffer.bytes.saturating_sub(size(line));
                delivered += 1;
            }
        }
        drop(buffer);
        self.sent.fetch_add(delivered as u64, Ordering::Relaxed);
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
        delivered
    }

    fn failed(&self, why: String) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.is_none() {
            tracing::warn!("log drain {:?}: {why}; retrying", self.drain);
        }
        *failing = Some(why);
    }

    /// Waits until it holds lines, or `closed` (its syslog connection's, if lines were
    /// written to it) is set; false once it is stopped.
    async fn wait_for_lines(&self, closed: Option<Arc<OnceLock<Instant>>>) -> bool {
        loop {
            let ready = self.ready.notified();
            if self.stopped.load(Ordering::Relaxed) {
                return false;
            }
            if !self.buffer.lock().unwrap_or_else(|e| e.into_inner()).lines.is_empty() || closed.as_ref().is_some_and(|c| c.get().is_some()) {
                return true;
            }
            ready.await;
        }
    }

    /// Sends until stopped (the daemon's task for this drain).
    pub async fn run(self: std::sync::Arc<Self>) {
        let mut retry = FIRST_RETRY;
        let mut connection: Option<Connection> = None;
        let mut client: Option<HttpClient> = None;
        while self.wait_for_lines(connection.as_ref().filter(|c| !c.written.is_empty()).map(|c| c.closed.clone())).await {
            let result = match &self.drain {
                Drain::Syslog { host, port, tls } => self.send_syslog(&mut connection, host, *port, *tls).await,
                Drain::Http { url } => {
                    // A moment for more lines to come: one request carries them all.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    match client.take().map_or_else(http_client, Ok) {
                        Ok(c) => {
                            let sent = self.send_http(&c, url).await;
                            client = Some(c);
                            sent
                        }
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                // A syslog connection works once it stayed open for `UNCONFIRMED`: a server
                // that takes lines and closes at once is retried with backoff.
                Ok(()) => {
                    if connection.as_ref().is_none_or(|c| c.opened.elapsed() >= UNCONFIRMED) {
                        retry = FIRST_RETRY;
                    }
                }
                // A syslog connection that failed was taken (`lost`) where it failed.
                Err(why) => {
                    self.failed(why);
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
    }

    async fn send_syslog(&self, connection: &mut Option<Connection>, host: &str, port: u16, tls: bool) -> Result<(), String> {
        // A syslog server never writes: a connection it closed (it stopped) reads as ended.
        if connection.as_ref().is_some_and(|c| c.closed.get().is_some())
            && let Some(c) = connection.take()
            && self.lost(c, Instant::now()) > 0
        {
            return Err(format!("{host}:{port} closed the connection; sending again what it may not have read"));
        }
        let batch = self.batch();
        if batch.is_empty() {
            return Ok(());
        }
        if connection.is_none() {
            let addrs = resolve(host, port, self.private_ok).await?;
            *connection = Some(Connection::open(host, &addrs, tls, self.ready.clone()).await?);
        }
        let Some(conn) = connection.as_mut() else { return Err("no connection".into()) };
        let mut bytes = Vec::new();
        for line in &batch {
            bytes.extend(wire::syslog(line, &self.hostname));
        }
        let write = async {
            conn.writer.write_all(&bytes).await?;
            conn.writer.flush().await
        };
        let started = Instant::now();
        let written = tokio::time::timeout(IO_TIMEOUT, write).await;
        if let Ok(Ok(())) = written {
            let delivered = self.sent(&batch);
            conn.wrote(batch[batch.len() - delivered..].to_vec());
            return Ok(());
        }
        // The batch stays in the buffer; what went before it may not have been read either.
        if let Some(c) = connection.take() {
            self.lost(c, started);
        }
        match written {
            Ok(Err(e)) => Err(format!("{host}:{port}: {e}")),
            _ => Err(format!("{host}:{port}: a write took over {IO_TIMEOUT:?}")),
        }
    }

    async fn send_http(&self, client: &HttpClient, url: &str) -> Result<(), String> {
        use http_body_util::BodyExt;
        let (host, port) = self.drain.host_and_port();
        resolve(&host, port, self.private_ok).await?;
        let batch = self.batch();
        let mut request = hyper::Request::post(url).header(hyper::header::CONTENT_TYPE, "application/x-ndjson").header(hyper::header::USER_AGENT, "berth");
        if let Some(token) = &self.token {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(http_body_util::Full::new(bytes::Bytes::from(wire::json_lines(&batch)))).map_err(|e| e.to_string())?;
        let answer = tokio::time::timeout(IO_TIMEOUT, client.request(request)).await.map_err(|_| format!("{url}: no answer within {IO_TIMEOUT:?}"))?.map_err(|e| format!("{url}: {}", crate::with_causes(&e)))?;
        let status = answer.status();
        let _ = tokio::time::timeout(IO_TIMEOUT, answer.into_body().collect()).await;
        if status.is_success() {
            self.sent(&batch);
            return Ok(());
        }
        Err(format!("{url} answered {status}"))
    }
}

type HttpClient = hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, http_body_util::Full<bytes::Bytes>>;

/// HTTPS (and HTTP) with the system's CAs, or `SSL_CERT_FILE`'s.
fn http_client() -> Result<HttpClient, String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .map_err(|e| format!("no CA certificates to check the drain's certificate with: {e}"))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector))
}

/// Whether the drain's host is at public addresses only (what a key of an app may name).
pub async fn check_public(drain: &Drain) -> Result<(), String> {
    let (host, port) = drain.host_and_port();
    resolve(&host, port, false).await.map(|_| ())
}

/// The addresses of a drain's host; a private one (this server's networks: loopback,
/// private, link-local) only when an admin set the drain.
async fn resolve(host: &str, port: u16, private_ok: bool) -> Result<Vec<std::net::SocketAddr>, String> {
    let addrs: Vec<std::net::SocketAddr> = tokio::time::timeout(IO_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| format!("{host} did not resolve within {IO_TIMEOUT:?}"))?
        .map_err(|e| format!("{host} does not resolve ({e})"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{host} has no address"));
    }
    if !private_ok && let Some(private) = addrs.iter().find(|a| crate::buildpack::is_private(a.ip())) {
        return Err(format!("{host} is at {}, a private address: only an admin may send an app's lines to this server's networks", private.ip()));
    }
    Ok(addrs)
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A syslog connection: its writing half; when the server closed it, seen by its reading
/// half's task (which wakes the sender, and ends with the connection); and the batches
/// written to it in the last `UNCONFIRMED` (at most a buffer's lines and bytes), with
/// their lines and bytes in all.
struct Connection {
    writer: tokio::io::WriteHalf<Box<dyn Stream>>,
    reader: tokio::task::AbortHandle,
    opened: Instant,
    closed: Arc<OnceLock<Instant>>,
    written: VecDeque<(Instant, Vec<Line>)>,
    held: (usize, usize),
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The reading half holds the socket open too.
        self.reader.abort();
    }
}

impl Connection {
    /// Notes a batch written now; forgets those written `UNCONFIRMED` before now (or
    /// before the close, if it was seen first).
    fn wrote(&mut self, batch: Vec<Line>) {
        let now = Instant::now();
        let bytes = |batch: &[Line]| batch.iter().map(size).sum::<usize>();
        self.held = (self.held.0 + batch.len(), self.held.1 + bytes(&batch));
        self.written.push_back((now, batch));
        let until = self.closed.get().map_or(now, |closed| (*closed).min(now));
        while let Some((at, oldest)) = self.written.front() {
            if until.duration_since(*at) < UNCONFIRMED && self.held.0 <= BUFFER_LINES && self.held.1 <= BUFFER_BYTES {
                break;
            }
            self.held = (self.held.0 - oldest.len(), self.held.1 - bytes(oldest));
            self.written.pop_front();
        }
    }

    async fn open(host: &str, addrs: &[std::net::SocketAddr], tls: bool, wake: Arc<Notify>) -> Result<Connection, String> {
        let at = format!("{host}:{}", addrs.first().map(|a| a.port()).unwrap_or_default());
        let tcp = tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect(addrs))
            .await
            .map_err(|_| format!("{at}: no connection within {IO_TIMEOUT:?}"))?
            .map_err(|e| format!("{at}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let stream: Box<dyn Stream> = if tls {
            let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| format!("{at}: {e}"))?;
            let connector = tokio_rustls::TlsConnector::from(tls_config()?);
            Box::new(tokio::time::timeout(IO_TIMEOUT, connector.connect(name, tcp)).await.map_err(|_| format!("{at}: no TLS handshake within {IO_TIMEOUT:?}"))?.map_err(|e| format!("{at}: TLS: {e}"))?)
        } else {
            Box::new(tcp)
        };
        let (mut reader, writer) = tokio::io::split(stream);
        let closed = Arc::new(OnceLock::new());
        let flag = closed.clone();
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            let _ = flag.set(Instant::now());
            wake.notify_one();
        })
        .abort_handle();
        Ok(Connection { writer, reader, opened: Instant::now(), closed, written: VecDeque::new(), held: (0, 0) })
    }
}

/// TLS for syslog: the system's CAs (or `SSL_CERT_FILE`'s), made once.
fn tls_config() -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<std::sync::Arc<rustls::ClientConfig>, String>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err("no CA certificates found to check the drain's certificate with".to_string());
            }
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions().map_err(|e| e.to_string())?.with_root_certificates(roots).with_no_client_auth();
            Ok(std::sync::Arc::new(config))
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Line {
        Line { time: format!("t{n:06}"), app: "a".into(), process: "web".into(), instance: 1, release: "v1".into(), stream: "stdout", text: n.to_string() }
    }

    #[test]
    fn a_full_buffer_drops_its_oldest_lines_and_counts_them() {
        let s = Sender::new(Drain::Http { url: "http://x/".into() }, None, false, "h".into());
        for n in 0..BUFFER_LINES + 5 {
            s.put(line(n));
        }
        let status = s.status();
        assert_eq!((status.dropped, status.buffered), (5, BUFFER_LINES));
        assert_eq!(s.batch()[0], line(5));
        // Long lines: the bytes bound it first.
        let s = Sender::new(Drain::Http { url: "http://x/".into() }, None, false, "h".into());
        for n in 0..1000 {
            s.put(Line { text: "x".repeat(16 * 1024), ..line(n) });
        }
        let status = s.status();
        assert!(status.buffered < 520 && status.dropped == 1000 - status.buffered as u64, "{status:?}");
    }

    #[tokio::test]
    async fn a_drain_an_app_key_set_is_never_at_a_private_address() {
        let refused = resolve("127.0.0.1", 514, false).await.unwrap_err();
        assert!(refused.contains("a private address"), "{refused}");
        assert!(resolve("10.1.2.3", 514, false).await.is_err());
        assert_eq!(resolve("127.0.0.1", 514, true).await.unwrap()[0].port(), 514);
        assert!(resolve("203.0.113.9", 514, false).await.is_ok());
    }

    /// The texts of the octet-counted syslog messages read from `socket` until `last` came
    /// (or 10 s passed).
    async fn read_until(socket: &mut tokio::net::TcpStream, last: &str) -> Vec<String> {
        let mut bytes = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let texts = messages(&bytes);
            if texts.iter().any(|t| t == last) {
                return texts;
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => bytes.extend_from_slice(&buf[..n]),
                _ => return texts,
            }
        }
    }

    fn messages(mut bytes: &[u8]) -> Vec<String> {
        let mut texts = Vec::new();
        while let Some(space) = bytes.iter().position(|b| *b == b' ') {
            let Some(len) = std::str::from_utf8(&bytes[..space]).ok().and_then(|n| n.parse::<usize>().ok()) else { break };
            let Some(message) = bytes.get(space + 1..space + 1 + len) else { break };
            texts.push(String::from_utf8_lossy(message).rsplit_once("] ").map(|(_, t)| t.to_string()).unwrap_or_default());
            bytes = &bytes[space + 1 + len..];
        }
        texts
    }

    #[tokio::test]
    async fn lines_written_as_the_syslog_server_stopped_are_sent_again_on_the_next_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let s = Arc::new(Sender::new(Drain::Syslog { host: "127.0.0.1".into(), port, tls: false }, None, true, "h".into()));
        tokio::spawn(s.clone().run());
        s.put(line(0));
        let (mut first, _) = listener.accept().await.unwrap();
        assert_eq!(read_until(&mut first, "0").await, ["0"]);
        // The server stops reading; line 1 is written all the same (TCP takes it), then the
        // server closes with it unread.
        s.put(line(1));
        for _ in 0..500 {
            if s.status().sent == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(s.status().sent, 2);
        drop(first);
        // Nothing else is put: the close alone brings line 1 to the next connection.
        let (mut second, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept()).await.expect("the sender connects again to send what the closed connection may have lost").unwrap();
        let again = read_until(&mut second, "1").await;
        assert_eq!(again.last().map(String::as_str), Some("1"), "{again:?}");
        // Then new lines go on the same connection, once.
        s.put(line(2));
        assert_eq!(read_until(&mut second, "2").await, ["2"]);
    }

    #[tokio::test]
    async fn a_server_that_closes_every_connection_it_took_lines_on_is_retried_with_backoff_and_reported_failing() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
            }
        });
        let s = Arc::new(Sender::new(Drain::Syslog { host: "127.0.0.1".into(), port, tls: false }, None, true, "h".into()));
        tokio::spawn(s.clone().run());
        s.put(line(0));
        // Connections at 0, 0.2, 0.6 and 1.4 s, the next at 3 s: a handful, not one per
        // wake-up (and the line back in the buffer while it waits).
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let connections = accepted.load(Ordering::Relaxed);
        assert!((2..=5).contains(&connections), "{connections} connections in 2.5 s");
        let status = s.status();
        assert!(status.failing.as_deref().is_some_and(|f| f.contains("closed the connection")), "{status:?}");
        assert_eq!((status.sent, status.buffered), (0, 1), "the line waits for a server that keeps it");
        s.stop();
    }

    #[test]
    fn sent_lines_leave_the_buffer_even_when_some_were_dropped_meanwhile() {
        let s = Sender::new(Drain::Http { url: "http://x/".into() }, None, false, "h".into());
        for n in 0..3 {
            s.put(line(n));
        }
        let batch = s.batch();
        assert_eq!(batch.len(), 3);
        s.put(line(3));
        s.sent(&batch);
        assert_eq!(s.status(), Status { sent: 3, dropped: 0, buffered: 1, failing: None });
        assert_eq!(s.batch(), vec![line(3)]);
    }
}
