//! Joining a server to the cluster over ssh (`cluster:add root@HOST`): berth's own key
//! (`ROOT/cluster/ssh/id_ed25519`, made on first use; its public half goes in the server's
//! root `authorized_keys`), the OpenSSH client, and the join script on its standard input.
//! The server's host key is taken on first contact and checked afterwards
//! (`ROOT/cluster/ssh/known_hosts`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

use crate::output::Output;

/// At most this long for a join: installing docker.io is most of it.
const LIMIT: Duration = Duration::from_secs(15 * 60);

pub struct Key {
    dir: PathBuf,
}

impl Key {
    pub fn new(root: &Path) -> Key {
        Key { dir: root.join("cluster").join("ssh") }
    }

    fn private(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// The public key, made with its private half on first use.
    pub async fn public(&self) -> Result<String, String> {
        let private = self.private();
        if !private.exists() {
            std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
            let made = tokio::process::Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", "berth-cluster", "-f"]).arg(&private).stdin(Stdio::null()).output().await;
            match made {
                Ok(out) if out.status.success() => {}
                Ok(out) => return Err(format!("ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
                Err(e) => return Err(format!("cannot run ssh-keygen (Debian: apt-get install openssh-client): {e}")),
            }
        }
        std::fs::read_to_string(private.with_extension("pub")).map_err(|e| format!("cannot read berth's public key: {e}"))
    }

    /// Runs `script` with `sh -s` as `server` (USER@HOST), its output passed on as details:
    /// Err with the last line it printed when it fails.
    pub async fn run(&self, server: &str, port: u16, script: &str, out: &Output) -> Result<(), String> {
        self.public().await?;
        let mut child = tokio::process::Command::new("ssh")
            .arg("-i")
            .arg(self.private())
            .args(["-p", &port.to_string(), "-F", "/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.dir.join("known_hosts").display()))
            .args(["--", server, "sh -s"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run ssh (Debian: apt-get install openssh-client): {e}"))?;
        let mut stdin = child.stdin.take().expect("piped");
        let script = script.to_string();
        let writer = tokio::spawn(async move { stdin.write_all(script.as_bytes()).await });
        let (stdout, stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let mut lines = futures_util::stream::select(lines_of(stdout), lines_of(stderr));
        let mut last = String::new();
        let followed = tokio::time::timeout(LIMIT, async {
            use futures_util::StreamExt;
            while let Some(line) = lines.next().await {
                // Nothing a terminal would act on.
                let line: String = line.chars().filter(|c| !c.is_control()).collect();
                if !line.trim().is_empty() {
                    last = line.trim().to_string();
                }
                out.detail(line).await;
            }
            child.wait().await
        })
        .await;
        let _ = writer.await;
        match followed {
            Err(_) => Err(format!("no end after {} minutes", LIMIT.as_secs() / 60)),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(_)) if last.is_empty() => Err("ssh failed".into()),
            Ok(Ok(_)) => Err(last),
        }
    }
}

fn lines_of(reader: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> futures_util::stream::BoxStream<'static, String> {
    let lines = tokio::io::BufReader::new(reader).lines();
    Box::pin(futures_util::stream::unfold(lines, |mut lines| async move { lines.next_line().await.ok().flatten().map(|l| (l, lines)) }))
}
