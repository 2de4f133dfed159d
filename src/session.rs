//! One running command, detached from the transport that asked for it.
//!
//! A front door calls [`spawn`] and gets three ends: where to send the caller's stdin,
//! where to read output chunks from, and the exit code. The command keeps running to a
//! consistent end even if the caller goes away mid-way.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::commands::{self, EXIT_FAILURE};
use crate::engine::{Caller, Engine};
use crate::output::{Chunk, Input, Output};
use crate::runtime::Terminal;

/// The three ends of a running command. The transport moves `stdin` into its input pump:
/// when that sender is dropped (client EOF), the command sees end of input.
pub struct Running {
    pub stdin: mpsc::Sender<Vec<u8>>,
    pub output: mpsc::Receiver<Chunk>,
    pub exit: Exit,
}

pub struct Exit(JoinHandle<i32>);

impl Exit {
    /// The exit code, once the command is done (1 if it panicked). Drop the output receiver
    /// first if the client is gone, so the command's writes become no-ops.
    pub async fn code(self) -> i32 {
        self.0.await.unwrap_or(EXIT_FAILURE)
    }
}

/// Starts a command; `terminal` is the client's pty, if it asked for one (`ssh -t`).
pub fn spawn(engine: Arc<Engine>, caller: Caller, argv: Vec<String>, terminal: Option<Terminal>) -> Running {
    let (out, output) = Output::channel(64);
    let (stdin, input) = Input::channel(16);
    let exit = tokio::spawn(async move {
        tracing::info!(caller = %caller.name, command = ?argv.first(), "command");
        commands::run(&engine, &caller, argv, out, input, terminal).await
    });
    Running { stdin, output, exit: Exit(exit) }
}

/// Where a front door writes a command's output (an SSH channel, the local socket).
pub trait Sink {
    fn write(&mut self, chunk: Chunk) -> impl std::future::Future<Output = std::io::Result<()>> + Send;
}

/// How long a client may leave output unread before berth takes it for gone: a vanished
/// peer (no FIN) or a suspended `ssh` must not hold a deploy, and its lock, forever.
pub const STALLED_CLIENT: Duration = Duration::from_secs(30);

/// Copies a command's output to `sink` until the command is done, or the client is gone
/// (`gone` resolves, a write fails, or one stalls for `STALLED_CLIENT`); then waits for the
/// command to end. Returns its exit code, and whether the client is still there to be told.
pub async fn deliver(mut output: mpsc::Receiver<Chunk>, exit: Exit, mut gone: oneshot::Receiver<()>, sink: &mut impl Sink) -> (i32, bool) {
    let mut present = true;
    loop {
        let chunk = tokio::select! {
            chunk = output.recv() => chunk,
            _ = &mut gone => {
                present = false;
                break;
            }
        };
        let Some(chunk) = chunk else { break };
        let written = tokio::select! {
            result = tokio::time::timeout(STALLED_CLIENT, sink.write(chunk)) => matches!(result, Ok(Ok(()))),
            _ = &mut gone => false,
        };
        if !written {
            present = false;
            break;
        }
    }
    // With the receiver gone, the command's further writes are no-ops: it runs to its end.
    drop(output);
    (exit.code().await, present)
}

/// Copies a child process's output stream to the client until the child closes it. When
/// the client is gone (a write fails or stalls for `STALLED_CLIENT`) it keeps reading and
/// drops the bytes: a child blocked on a full pipe would never finish what it was doing
/// (git receive-pack waiting for its hook, which waits for a deploy).
pub async fn drain<R, W>(mut from: R, to: &mut W)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 32 * 1024];
    let mut present = true;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if present {
            present = matches!(tokio::time::timeout(STALLED_CLIENT, to.write_all(&buf[..n])).await, Ok(Ok(())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that reads nothing: writes never complete.
    struct Stalled;

    impl tokio::io::AsyncWrite for Stalled {
        fn poll_write(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>, _: &[u8]) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Pending
        }
        fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
        fn poll_shutdown(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_client_does_not_stop_the_child_from_finishing() {
        // 4 MiB through a 64 KiB pipe: the writer finishes only if the reader keeps reading.
        let (mut child, from) = tokio::io::duplex(64 * 1024);
        let producer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            child.write_all(&vec![b'x'; 4 * 1024 * 1024]).await.unwrap();
        });
        drain(from, &mut Stalled).await;
        producer.await.unwrap();
    }

    #[tokio::test]
    async fn a_client_gone_mid_stream_does_not_stop_the_child() {
        let (mut child, from) = tokio::io::duplex(64 * 1024);
        let (client, far_end) = tokio::io::duplex(1024);
        drop(far_end);
        let mut client = client;
        let producer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            child.write_all(&vec![b'x'; 1024 * 1024]).await.unwrap();
        });
        drain(from, &mut client).await;
        producer.await.unwrap();
    }
}
