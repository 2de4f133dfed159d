//! One running command, detached from the transport that asked for it.
//!
//! A front door calls [`spawn`] and gets three ends: where to send the caller's stdin,
//! where to read output chunks from, and the exit code. The command keeps running to a
//! consistent end even if the caller goes away mid-way.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::commands::{self, EXIT_FAILURE};
use crate::engine::{Caller, Engine};
use crate::output::{Chunk, Input, Output};

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

pub fn spawn(engine: Arc<Engine>, caller: Caller, argv: Vec<String>) -> Running {
    let (out, output) = Output::channel(64);
    let (stdin, input) = Input::channel(16);
    let exit = tokio::spawn(async move {
        tracing::info!(caller = %caller.name, command = ?argv.first(), "command");
        commands::run(&engine, &caller, argv, out, input).await
    });
    Running { stdin, output, exit: Exit(exit) }
}
