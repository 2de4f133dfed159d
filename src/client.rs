//! The local CLI: `berth COMMAND ARGS…` on the server, a thin client of the daemon's socket.
//! Same commands, output and exit codes as over SSH.

use std::io::Write;
use std::path::Path;

use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;

use crate::server::protocol::{self, read_frame, write_frame};

/// Runs one command through the daemon, with this process's stdin, and returns its exit code.
pub async fn run(root: &Path, argv: Vec<String>) -> i32 {
    run_with(root, argv, tokio::io::stdin(), false).await
}

/// Runs one command with `stdin` as its input. With `all_to_stderr`, the command's stdout is
/// written to stderr too (the git hook: git shows both as `remote:` lines, in order).
pub async fn run_with<R>(root: &Path, argv: Vec<String>, mut stdin: R, all_to_stderr: bool) -> i32
where
    R: tokio::io::AsyncRead + Send + Unpin + 'static,
{
    let socket = crate::socket_path(root);
    let stream = match UnixStream::connect(&socket).await {
        Ok(stream) => stream,
        Err(e) => {
            let why = match e.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => "is not running".to_string(),
                std::io::ErrorKind::PermissionDenied => "refused the connection: run berth as root".to_string(),
                _ => format!("cannot be reached: {e}"),
            };
            eprintln!(" !     The berth daemon {why} (socket {}); start it with `berth daemon` or scripts/install.sh", socket.display());
            return 1;
        }
    };
    let (mut reader, mut writer) = stream.into_split();
    let args = serde_json::to_vec(&argv).unwrap_or_default();
    if let Err(e) = write_frame(&mut writer, protocol::ARGS, &args).await {
        eprintln!(" !     Lost the connection to the berth daemon: {e}");
        return 1;
    }
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if write_frame(&mut writer, protocol::STDIN, &buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = write_frame(&mut writer, protocol::STDIN_EOF, &[]).await;
        // Dropping the write half would shut the socket's write side, which the daemon
        // takes for "the client is gone". Keep it open until this process exits.
        std::future::pending::<()>().await;
        drop(writer);
    });
    loop {
        match read_frame(&mut reader).await {
            Ok(Some((protocol::STDOUT, bytes))) if !all_to_stderr => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(&bytes);
                let _ = out.flush();
            }
            Ok(Some((protocol::STDERR | protocol::STDOUT, bytes))) => {
                let mut err = std::io::stderr().lock();
                let _ = err.write_all(&bytes);
                let _ = err.flush();
            }
            Ok(Some((protocol::EXIT, bytes))) if bytes.len() == 4 => {
                return i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                eprintln!(" !     Lost the connection to the berth daemon before the command finished");
                return 1;
            }
        }
    }
}
