//! The gatekeeper: a unix socket nginx's workers (as nobody) ask about requests to apps
//! behind http-auth, one line per question, `APP IP CREDENTIALS|-`, answered `ip`, `ok` or
//! `no` (`gates::Keeper`). nginx remembers the answers for a while (berth.lua), so the
//! daemon sees a client's first request, not every one.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;

use crate::engine::Engine;
use crate::gates::{Answer, Keeper};

/// The longest question nginx sends (an app name, an address, basic auth's base64).
const MAX_LINE: usize = 4096;

/// Binds the socket where nginx's workers reach it: world-writable (they run as nobody;
/// `handle` hangs up on any other user), in a world-traversable directory under /run.
pub fn bind(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, engine: Arc<Engine>, mut shutdown: watch::Receiver<bool>) {
    let keeper = Arc::new(Keeper::default());
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (engine, keeper) = (engine.clone(), keeper.clone());
                    tokio::spawn(async move {
                        if let Err(e) = handle(stream, &engine, &keeper).await {
                            tracing::debug!("gatekeeper: {e}");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!("accept on the gatekeeper socket failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn handle(stream: UnixStream, engine: &Engine, keeper: &Keeper) -> std::io::Result<()> {
    // nginx's workers (nobody) and the daemon's own user; no other local user.
    let uid = stream.peer_cred()?.uid();
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten().map(|u| u.uid.as_raw());
    if uid != nix::unistd::geteuid().as_raw() && Some(uid) != nobody {
        return Ok(());
    }
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader).take(u64::MAX);
    let mut line = String::new();
    loop {
        line.clear();
        reader.set_limit(MAX_LINE as u64);
        if reader.read_line(&mut line).await? == 0 || !line.ends_with('\n') {
            return Ok(());
        }
        let answer = match question(&line) {
            Some((app, ip, credentials)) => keeper.answer(engine, app, ip, credentials).await,
            None => Answer::No,
        };
        writer.write_all(format!("{}\n", answer.word()).as_bytes()).await?;
    }
}

/// `APP IP CREDENTIALS|-` → its parts, if well formed. Pure.
fn question(line: &str) -> Option<(&str, IpAddr, Option<&str>)> {
    let mut words = line.split_ascii_whitespace();
    let (app, ip, credentials) = (words.next()?, words.next()?, words.next()?);
    if words.next().is_some() {
        return None;
    }
    let app = crate::validate::app_name(app).ok()?;
    Some((app, ip.parse().ok()?, (credentials != "-").then_some(credentials)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_are_three_words_with_a_valid_app_and_address() {
        assert_eq!(question("shop 10.0.0.1 YW5uOng=\n"), Some(("shop", "10.0.0.1".parse().unwrap(), Some("YW5uOng="))));
        assert_eq!(question("shop ::1 -\n"), Some(("shop", "::1".parse().unwrap(), None)));
        assert_eq!(question("../etc 10.0.0.1 -\n"), None);
        assert_eq!(question("shop nowhere -\n"), None);
        assert_eq!(question("shop 10.0.0.1\n"), None);
        assert_eq!(question("shop 10.0.0.1 a b\n"), None);
    }
}
