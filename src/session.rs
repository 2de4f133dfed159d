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
    /// What the command keeps alive until the front door has told the client how it ended.
    pub held: crate::output::Held,
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
    let held = out.held();
    let (stdin, input) = Input::channel(16);
    let exit = tokio::spawn(async move {
        tracing::info!(caller = %caller.name, command = ?argv.first(), "command");
        commands::run(&engine, &caller, argv, out, input, terminal).await
    });
    Running { stdin, output, exit: Exit(exit), held }
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
