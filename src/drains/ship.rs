//! One drain's sender: a bounded buffer the followers put lines in (never waiting: when it
//! is full the oldest line goes, and is counted), and a task that sends what it holds,
//! reconnecting with backoff while the drain is down. A line leaves the buffer once it was
//! written (syslog) or the batch was answered 2xx (HTTP).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use super::wire::{self, Drain, Line};

/// Lines a drain holds while it is down; past this the oldest are dropped (and counted).
pub const BUFFER_LINES: usize = 20_000;
/// Lines sent at once.
const BATCH: usize = 500;
/// How long a connection, a handshake, a write or an HTTP answer may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_millis(200);
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
    hostname: String,
    buffer: Mutex<VecDeque<Line>>,
    ready: Notify,
    sent: AtomicU64,
    dropped: AtomicU64,
    failing: Mutex<Option<String>>,
}

impl Sender {
    pub fn new(drain: Drain, token: Option<String>, hostname: String) -> Sender {
        Sender {
            drain,
            token,
            hostname,
            buffer: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failing: Mutex::new(None),
        }
    }

    /// Takes a line; never waits. A full buffer drops its oldest line.
    pub fn put(&self, line: Line) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        if buffer.len() >= BUFFER_LINES {
            buffer.pop_front();
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!("log drain {:?}: buffer full, {dropped} line(s) dropped so far", self.drain);
            }
        }
        buffer.push_back(line);
        drop(buffer);
        self.ready.notify_one();
    }

    pub fn status(&self) -> Status {
        Status {
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            buffered: self.buffer.lock().unwrap_or_else(|e| e.into_inner()).len(),
            failing: self.failing.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }

    /// The first lines held, up to `BATCH` (they stay until `sent`).
    fn batch(&self) -> Vec<Line> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner()).iter().take(BATCH).cloned().collect()
    }

    /// `n` lines of the front were delivered. (The front may have been dropped meanwhile,
    /// the buffer being full: then fewer go.)
    fn sent(&self, batch: &[Line]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let mut delivered = 0;
        for line in batch {
            if buffer.front() == Some(line) {
                buffer.pop_front();
                delivered += 1;
            }
        }
        drop(buffer);
        self.sent.fetch_add(delivered, Ordering::Relaxed);
        *self.failing.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn failed(&self, why: String) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if failing.is_none() {
            tracing::warn!("log drain {:?}: {why}; retrying", self.drain);
        }
        *failing = Some(why);
    }

    async fn wait_for_lines(&self) {
        loop {
            let ready = self.ready.notified();
            if !self.buffer.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
                return;
            }
            ready.await;
        }
    }

    /// Sends forever (the daemon's task for this drain).
    pub async fn run(self: std::sync::Arc<Self>) {
        let mut retry = FIRST_RETRY;
        let mut connection: Option<Connection> = None;
        let client = match &self.drain {
            Drain::Http { .. } => Some(http_client()),
            Drain::Syslog { .. } => None,
        };
        loop {
            self.wait_for_lines().await;
            let result = match (&self.drain, &client) {
                (Drain::Syslog { host, port, tls }, _) => self.send_syslog(&mut connection, host, *port, *tls).await,
                (Drain::Http { url }, Some(client)) => {
                    // A moment for more lines to come: one request carries them all.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.send_http(client, url).await
                }
                (Drain::Http { .. }, None) => unreachable!("an HTTP drain has a client"),
            };
            match result {
                Ok(()) => retry = FIRST_RETRY,
                Err(why) => {
                    connection = None;
                    self.failed(why);
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
    }

    async fn send_syslog(&self, connection: &mut Option<Connection>, host: &str, port: u16, tls: bool) -> Result<(), String> {
        // A syslog server never writes: a connection it closed (it stopped) reads as ended.
        if connection.as_ref().is_some_and(|c| c.closed.load(Ordering::Relaxed)) {
            *connection = None;
        }
        if connection.is_none() {
            *connection = Some(Connection::open(host, port, tls).await?);
        }
        let Some(conn) = connection.as_mut() else { return Err("no connection".into()) };
        let batch = self.batch();
        let mut bytes = Vec::new();
        for line in &batch {
            bytes.extend(wire::syslog(line, &self.hostname));
        }
        let write = async {
            conn.writer.write_all(&bytes).await?;
            conn.writer.flush().await
        };
        match tokio::time::timeout(IO_TIMEOUT, write).await {
            Ok(Ok(())) => {
                self.sent(&batch);
                Ok(())
            }
            Ok(Err(e)) => Err(format!("{host}:{port}: {e}")),
            Err(_) => Err(format!("{host}:{port}: a write took over {IO_TIMEOUT:?}")),
        }
    }

    async fn send_http(&self, client: &HttpClient, url: &str) -> Result<(), String> {
        use http_body_util::BodyExt;
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
fn http_client() -> HttpClient {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .expect("the system's CA store is read (an empty one fails only the HTTPS requests)")
        .https_or_http()
        .enable_http1()
        .build();
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// A syslog connection: its writing half, and whether the server closed it (read by a
/// task of its own, which ends with it).
struct Connection {
    writer: tokio::io::WriteHalf<Box<dyn Stream>>,
    closed: std::sync::Arc<AtomicBool>,
}

impl Connection {
    async fn open(host: &str, port: u16, tls: bool) -> Result<Connection, String> {
        let at = format!("{host}:{port}");
        let tcp = tokio::time::timeout(IO_TIMEOUT, tokio::net::TcpStream::connect((host, port)))
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
        let closed = std::sync::Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            flag.store(true, Ordering::Relaxed);
        });
        Ok(Connection { writer, closed })
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
        let s = Sender::new(Drain::Http { url: "http://x/".into() }, None, "h".into());
        for n in 0..BUFFER_LINES + 5 {
            s.put(line(n));
        }
        let status = s.status();
        assert_eq!((status.dropped, status.buffered), (5, BUFFER_LINES));
        assert_eq!(s.batch()[0], line(5));
    }

    #[test]
    fn sent_lines_leave_the_buffer_even_when_some_were_dropped_meanwhile() {
        let s = Sender::new(Drain::Http { url: "http://x/".into() }, None, "h".into());
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
