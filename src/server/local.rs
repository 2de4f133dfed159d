//! The local front door: a unix socket in the berth root (mode 0600) that `berth COMMAND`
//! on the server talks to. Only the daemon's own user may connect; it runs as admin.

use std::path::Path;
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use super::protocol::{self, read_frame, write_frame};
use crate::engine::{Caller, Engine};
use crate::output::Chunk;
use crate::session;

pub async fn serve(listener: UnixListener, engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, engine).await {
                            tracing::debug!("local client: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept on the local socket failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// Binds the socket, replacing a stale one (the caller holds the daemon lock, so no other
/// daemon is using it), and restricts it to the owner.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

async fn handle(stream: UnixStream, engine: Arc<Engine>) -> std::io::Result<()> {
    let peer = stream.peer_cred()?;
    let (mut reader, mut writer) = stream.into_split();
    if peer.uid() != nix::unistd::geteuid().as_raw() {
        let msg = " !     Permission denied: only the daemon's user may use the local socket\n";
        write_frame(&mut writer, protocol::STDERR, msg.as_bytes()).await?;
        return write_frame(&mut writer, protocol::EXIT, &1i32.to_be_bytes()).await;
    }
    let argv: Vec<String> = match read_frame(&mut reader).await? {
        Some((protocol::ARGS, payload)) => serde_json::from_slice(&payload)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?,
        _ => return Ok(()),
    };
    let session::Running { stdin, output, exit, held } = session::spawn(engine, Caller::local_root(), argv, None);

    // The socket closing means the client is gone: `gone` tells `deliver`.
    let (gone_tx, gone) = tokio::sync::oneshot::channel::<()>();
    let stdin_pump = tokio::spawn(async move {
        let mut stdin = Some(stdin);
        while let Ok(Some((tag, payload))) = read_frame(&mut reader).await {
            match tag {
                protocol::STDIN => {
                    if let Some(tx) = &stdin
                        && tx.send(payload).await.is_err()
                    {
                        stdin = None;
                    }
                }
                protocol::STDIN_EOF => stdin = None,
                _ => {}
            }
        }
        let _ = gone_tx.send(());
    });

    let (code, present) = session::deliver(output, exit, gone, &mut writer).await;
    stdin_pump.abort();
    if present {
        write_frame(&mut writer, protocol::EXIT, &code.to_be_bytes()).await?;
        writer.shutdown().await?;
    }
    drop(held);
    Ok(())
}

/// Output chunks as stdout/stderr frames.
impl session::Sink for tokio::net::unix::OwnedWriteHalf {
    async fn write(&mut self, chunk: Chunk) -> std::io::Result<()> {
        match chunk {
            Chunk::Stdout(bytes) => write_frame(self, protocol::STDOUT, &bytes).await,
            Chunk::Stderr(bytes) => write_frame(self, protocol::STDERR, &bytes).await,
        }
    }
}
