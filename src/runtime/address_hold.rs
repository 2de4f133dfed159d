//! Holding the berth network's addresses: a dead container's address may still be routed
//! or connected to, so no new container may take one for a while after a swap.

use std::time::Duration;

use super::{Runtime, machine_dir};

/// Where berth daemons on this machine say until when no new container may take an address
/// on the berth network (one file per root, holding a Unix time in milliseconds).
fn drain_dir() -> std::path::PathBuf {
    machine_dir().join("berth-address-drain")
}

fn unix_millis() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The longest any daemon may hold addresses: a deadline further away is not believed.
const MAX_HOLD: Duration = Duration::from_secs(30);

impl Runtime {
    /// No container may start on the berth network for `hold` from now: a dead container's
    /// address may still be routed or connected to, and the engine hands freed addresses to
    /// the next container that starts (of any app, of any berth root on this engine).
    /// Replaces this root's earlier hold.
    pub fn hold_addresses(&self, hold: Duration) {
        let dir = drain_dir();
        let until = unix_millis() + hold.min(MAX_HOLD).as_millis() as u64;
        if std::fs::create_dir_all(&dir).is_ok()
            && let Err(e) = crate::store::write_atomic(&dir.join(self.root_tag()), until.to_string().as_bytes(), 0o644)
        {
            tracing::warn!("cannot hold container addresses: {e}");
        }
    }

    /// Until when (Unix ms) some daemon on this machine holds the berth network's addresses.
    fn held_until(&self, now: u64) -> u64 {
        std::fs::read_dir(drain_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| std::fs::read_to_string(entry.path()).ok()?.trim().parse::<u64>().ok())
            .filter(|until| *until <= now + MAX_HOLD.as_millis() as u64)
            .max()
            .unwrap_or(0)
    }

    /// Whether a container started now could take an address that must not be reused yet.
    pub fn addresses_held(&self) -> bool {
        let now = unix_millis();
        self.held_until(now) > now
    }

    /// Waits until no daemon on this machine holds the berth network's addresses.
    pub async fn wait_for_addresses(&self) {
        loop {
            let now = unix_millis();
            let until = self.held_until(now);
            if until <= now {
                return;
            }
            tracing::debug!("waiting {}ms for addresses of dead containers to drain", until - now);
            tokio::time::sleep(Duration::from_millis(until - now)).await;
        }
    }
}
