//! The SSH front door: russh, public-key auth against `keys/authorized.toml`, one berth
//! command per exec request.
//!
//! Handler callbacks run inside the connection's loop, so they only record state and hand
//! the channel to a spawned task; the task pumps stdin into the command, copies its
//! stdout/stderr back, and sends the exit status only once all output is written.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use russh::keys::ssh_key::{self, LineEnding, PrivateKey};
use russh::server::{Auth, Config, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, MethodKind, MethodSet, SshId};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::gate::{self, Gate};
use super::memory;
use super::quickack::QuickAck;
use crate::engine::{Caller, Engine};
use crate::output::Chunk;
use crate::session;

/// Loads the persisted host key, or generates an ed25519 key and keeps it (0600).
pub fn load_or_create_host_key(path: &Path) -> anyhow::Result<PrivateKey> {
    if path.exists() {
        return PrivateKey::read_openssh_file(path)
            .map_err(|e| anyhow::anyhow!("cannot read the SSH host key {}: {e}", path.display()));
    }
    let key = PrivateKey::random(&mut rand::rng(), ssh_key::Algorithm::Ed25519)?;
    let text = key.to_openssh(LineEnding::LF)?;
    crate::store::write_atomic(path, text.as_bytes(), 0o600)?;
    let public = key.public_key().to_openssh()?;
    crate::store::write_atomic(&path.with_extension("pub"), format!("{public}\n").as_bytes(), 0o644)?;
    tracing::info!("generated SSH host key {}", crate::store::fingerprint(key.public_key()));
    Ok(key)
}

pub fn config(host_key: PrivateKey) -> Config {
    Config {
        server_id: SshId::Standard(format!("SSH-2.0-berth_{}", env!("CARGO_PKG_VERSION")).into()),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        keys: vec![host_key],
        // OpenSSH probes with "none" first: answer it at once, delay only real rejections.
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        // Builds can be silent for long stretches; keepalives find dead peers instead.
        inactivity_timeout: Some(Duration::from_secs(3600)),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        ..Config::default()
    }
}

/// Accepts connections until `shutdown` changes. Sessions already running finish on their own.
/// Before authenticating, a connection is under the `gate`'s limits.
pub async fn serve(listener: TcpListener, config: Arc<Config>, engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let gate = Arc::new(Gate::default());
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let Some(ticket) = gate.admit(peer.ip(), Instant::now()) else {
                        tracing::debug!(%peer, "refused: too many failed connections from this address");
                        continue;
                    };
                    // run_stream does not apply Config::nodelay (only run_on_socket does):
                    // QuickAck sets TCP_NODELAY and keeps ACKs immediate (see quickack.rs).
                    // The session runs in russh's own task once the version lines are
                    // exchanged: dropping its handle does not end it. Cutting the stream does.
                    let (socket, cut) = QuickAck::new(socket);
                    let config = config.clone();
                    let authenticated = Arc::new(AtomicBool::new(false));
                    let (ending, ended) = watch::channel(());
                    let handler = Connection {
                        ended,
                        engine: engine.clone(),
                        caller: None,
                        key: None,
                        channels: HashMap::new(),
                        ptys: HashMap::new(),
                        gate: gate.clone(),
                        ticket: ticket.id,
                        authenticated: authenticated.clone(),
                    };
                    let gate = gate.clone();
                    tokio::spawn(async move {
                        let id = ticket.id;
                        let connection = async {
                            match russh::server::run_stream(config, socket, handler).await {
                                Ok(session) => {
                                    if let Err(e) = session.await {
                                        tracing::debug!(%peer, "ssh session ended: {e}");
                                    }
                                }
                                Err(e) => tracing::debug!(%peer, "ssh handshake failed: {e}"),
                            }
                        };
                        // Dropping the connection future closes the socket.
                        let unauthenticated_limit = async {
                            tokio::select! {
                                _ = tokio::time::sleep(gate::AUTH_DEADLINE) => {}
                                _ = ticket.evicted => {}
                            }
                            if authenticated.load(Ordering::Acquire) {
                                std::future::pending::<()>().await;
                            }
                        };
                        tokio::select! {
                            _ = connection => {}
                            _ = unauthenticated_limit => {
                                cut.cancel();
                                tracing::debug!(%peer, "closed: not authenticated in time");
                            }
                        }
                        if gate.ended(id, peer.ip(), authenticated.load(Ordering::Acquire), Instant::now()) {
                            memory::release_freed();
                        }
                        drop(ending);
                    });
                }
                Err(e) => {
                    tracing::warn!("accept on the SSH port failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

struct Connection {
    engine: Arc<Engine>,
    caller: Option<Caller>,
    /// The key the client authenticated with: its rights are looked up again per command,
    /// so removing or narrowing a key takes effect on connections already open.
    key: Option<ssh_key::PublicKey>,
    /// Session channels opened but not yet given a command.
    channels: HashMap<ChannelId, Channel<Msg>>,
    /// Ptys requested on those channels: TERM, columns, rows.
    ptys: HashMap<ChannelId, (String, u16, u16)>,
    gate: Arc<Gate>,
    ticket: u64,
    authenticated: Arc<AtomicBool>,
    /// Closed when the connection has ended (its socket is closed).
    ended: watch::Receiver<()>,
}

impl Connection {
    fn known_key(&self, key: &ssh_key::PublicKey) -> Option<Caller> {
        let keys = match self.engine.store.load_keys() {
            Ok(keys) => keys,
            Err(e) => {
                tracing::error!("cannot read authorized keys: {e}");
                return None;
            }
        };
        keys.find(key).map(Caller::of_key)
    }

    /// Who the client is now, by its key as `keys/authorized.toml` says at this moment.
    fn current_caller(&self) -> Result<Caller, String> {
        let (Some(key), Some(authenticated)) = (&self.key, &self.caller) else {
            return Err("not authenticated".into());
        };
        self.known_key(key).ok_or_else(|| format!("Permission denied: key {} was removed", authenticated.name))
    }

    fn start(&mut self, id: ChannelId, argv: Result<Vec<String>, String>, session: &mut Session) -> Result<(), russh::Error> {
        let (Some(channel), Some(authenticated)) = (self.channels.remove(&id), self.caller.clone()) else {
            return session.channel_failure(id);
        };
        let (caller, argv) = match self.current_caller() {
            Ok(caller) => (caller, argv),
            Err(refusal) => (authenticated, Err(refusal)),
        };
        session.channel_success(id)?;
        let engine = self.engine.clone();
        let pty = self.ptys.remove(&id);
        let ended = self.ended.clone();
        tokio::spawn(async move {
            let held = run_channel(engine, caller, channel, argv, pty).await;
            // The exit status is queued in the connection, not yet on the wire: what the
            // command holds (a push's place in a graceful shutdown) stays until the client has
            // closed the connection, or a moment has passed (a client may keep it open).
            let mut ended = ended;
            let _ = tokio::time::timeout(DELIVERY_GRACE, ended.changed()).await;
            drop(held);
        });
        Ok(())
    }
}

impl Handler for Connection {
    type Error = russh::Error;

    async fn auth_publickey_offered(&mut self, user: &str, offer: PublicKeyOffer<'_>) -> Result<Auth, Self::Error> {
        if self.known_key(offer.public_key).is_some() {
            Ok(Auth::Accept)
        } else {
            tracing::info!(user, key = %crate::store::fingerprint(offer.public_key), "unknown key refused");
            Ok(Auth::reject())
        }
    }

    async fn auth_publickey(&mut self, _user: &str, key: VerifiedPublicKey<'_>) -> Result<Auth, Self::Error> {
        // Checked again: the key may have been removed since it was offered.
        match self.known_key(key.public_key) {
            Some(caller) => {
                self.caller = Some(caller);
                self.key = Some(key.public_key.clone());
                self.authenticated.store(true, Ordering::Release);
                if self.gate.authenticated(self.ticket) {
                    memory::release_freed();
                }
                Ok(Auth::Accept)
            }
            None => Ok(Auth::reject()),
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(channel.id(), channel);
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        cols: u32,
        rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Only a plain TERM name reaches a container's environment.
        let term = if !term.is_empty() && term.len() <= 64 && term.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c)) { term } else { "xterm" };
        // A client without a terminal of its own (`ssh -tt` from a script) sends 0x0.
        let (cols, rows) = if cols == 0 || rows == 0 { (80, 24) } else { (cols, rows) };
        self.ptys.insert(channel, (term.to_string(), clamp_size(cols), clamp_size(rows)));
        session.channel_success(channel)
    }

    async fn env_request(&mut self, channel: ChannelId, _name: &str, _value: &str, session: &mut Session) -> Result<(), Self::Error> {
        // The client's environment never reaches a command.
        session.channel_failure(channel)
    }

    async fn shell_request(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), Self::Error> {
        self.start(channel, Ok(Vec::new()), session)
    }

    async fn exec_request(&mut self, channel: ChannelId, data: &[u8], session: &mut Session) -> Result<(), Self::Error> {
        let argv = match std::str::from_utf8(data) {
            Ok(line) => split_command(line),
            Err(_) => Err("the command is not valid UTF-8".to_string()),
        };
        self.start(channel, argv, session)
    }
}

/// Splits an exec request by shell-word rules. Nothing here is ever given to a shell.
/// OpenSSH users often write `ssh host berth apps:list` out of habit: a leading `berth` is dropped.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = shell_words::split(line).map_err(|e| format!("cannot split the command line: {e}"))?;
    if words.first().is_some_and(|w| w == "berth") {
        words.remove(0);
    }
    Ok(words)
}

fn clamp_size(n: u32) -> u16 {
    n.clamp(1, 10_000) as u16
}

/// Runs one channel's command; returns what the command holds until its client was told.
async fn run_channel(engine: Arc<Engine>, caller: Caller, channel: Channel<Msg>, argv: Result<Vec<String>, String>, pty: Option<(String, u16, u16)>) -> Option<crate::output::Held> {
    let (mut reader, writer) = channel.split();
    let stdout = writer.make_writer();
    let mut stderr = writer.make_writer_ext(Some(1));
    let argv = match argv {
        Ok(argv) => argv,
        Err(message) => {
            let _ = stderr.write_all(format!(" !     {message}\n").as_bytes()).await;
            let _ = stderr.flush().await;
            let _ = writer.exit_status(crate::commands::EXIT_USAGE as u32).await;
            let _ = writer.eof().await;
            let _ = writer.close().await;
            return None;
        }
    };
    let (resize, terminal) = match pty {
        Some((term, cols, rows)) => {
            let (tx, size) = tokio::sync::watch::channel((cols, rows));
            (Some(tx), Some(crate::runtime::Terminal { term, size }))
        }
        None => (None, None),
    };
    let session::Running { stdin, output, exit, held } = session::spawn(engine, caller, argv, terminal);

    // Every channel message must be read, or the session stalls once the queue fills.
    // When the channel closes, the client is gone: `gone` tells `deliver`.
    let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
    let stdin_pump = tokio::spawn(async move {
        let mut stdin = Some(stdin);
        while let Some(msg) = reader.wait().await {
            match msg {
                ChannelMsg::Data { data } => {
                    if let Some(tx) = &stdin
                        && tx.send(data.to_vec()).await.is_err()
                    {
                        stdin = None;
                    }
                }
                // EOF closes the command's stdin only; output still flows back.
                ChannelMsg::Eof => stdin = None,
                ChannelMsg::WindowChange { col_width, row_height, .. } => {
                    if let Some(tx) = resize.as_ref().filter(|_| col_width > 0 && row_height > 0) {
                        let _ = tx.send((clamp_size(col_width), clamp_size(row_height)));
                    }
                }
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });

    let mut sink = ChannelSink { stdout, stderr };
    let (code, present) = session::deliver(output, exit, gone, &mut sink).await;
    stdin_pump.abort();
    if !present {
        return Some(held);
    }
    let _ = sink.stdout.flush().await;
    let _ = sink.stderr.flush().await;
    // Exit status only after all output is queued: the channel keeps order.
    let _ = writer.exit_status(code as u32).await;
    let _ = writer.eof().await;
    let _ = writer.close().await;
    Some(held)
}

/// How long what a finished command holds outlives its channel while the client keeps the
/// connection open (a ControlMaster): the exit status is on the wire by then.
const DELIVERY_GRACE: Duration = Duration::from_secs(5);

/// A channel's stdout and its stderr (extended data 1).
struct ChannelSink<O, E> {
    stdout: O,
    stderr: E,
}

impl<O, E> session::Sink for ChannelSink<O, E>
where
    O: tokio::io::AsyncWrite + Unpin + Send,
    E: tokio::io::AsyncWrite + Unpin + Send,
{
    async fn write(&mut self, chunk: Chunk) -> std::io::Result<()> {
        match chunk {
            Chunk::Stdout(bytes) => self.stdout.write_all(&bytes).await,
            Chunk::Stderr(bytes) => self.stderr.write_all(&bytes).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_by_shell_words() {
        assert_eq!(split_command("config:set myapp 'A=b c' D=e").unwrap(), vec!["config:set", "myapp", "A=b c", "D=e"]);
        assert_eq!(split_command("berth apps:list").unwrap(), vec!["apps:list"]);
        assert_eq!(split_command("apps:create x; rm -rf /").unwrap(), vec!["apps:create", "x;", "rm", "-rf", "/"]);
        assert!(split_command("config:set x 'unterminated").is_err());
    }
}
