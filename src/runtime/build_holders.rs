//! A network namespace kept ready for an app's next build.
//!
//! A build's containers (a buildpack build's one container, each RUN step of a Dockerfile)
//! start on the build network. Making a container's namespace there (the namespace, its
//! veth pair, the embedded DNS) and tearing it down after costs the engine and the kernel
//! about as much as the rest of the container's start and stop, and that work runs at the
//! apps' CPU priority while they serve, not at the build's. So an app's builds join a
//! holder on the build network (`network_mode: container:HOLDER`, which the classic builder
//! takes for its RUN steps too): the app's first build makes it, each build after it
//! reuses it, and it goes `IDLE` after the app's last build, or with the app (destroyed or
//! renamed).
//!
//! Nothing of one build stays in the namespace for the next. A build's processes end with
//! its container (their sockets with them; the namespace keeps no TIME_WAIT sockets, as a
//! web holder's), and a build cannot change the namespace's addresses, routes or firewall
//! (no NET_ADMIN). What it can change are the files a joined container shares with the
//! holder (`/etc/resolv.conf`, `/etc/hosts`, `/etc/hostname`): a holder whose files are not
//! what they were when it was made goes after the build, so a build can never point the
//! next one's names elsewhere. A holder serves one app's builds only, one at a time
//! (`Taken`: given back when the build ends, removed if the build is dropped midway). At
//! most `MOST_KEPT` are kept (the build network's addresses are shared by every root on
//! the engine), the oldest going first. A holder runs `sleep` from the stack image, named
//! for no app (other builds on the network can look names up); without that image, where
//! berth cannot read its files (an engine on another machine), or when the build's options
//! set hosts of its own (which the engine refuses beside a joined namespace), a build starts
//! on the network itself. A holder an earlier daemon left goes when the next one starts
//! (`orphaned_holders`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{LABEL_APP, LABEL_ROOT, Runtime, RuntimeError};

/// On the holder of an app's builds' namespace (the value: `build`).
pub const LABEL_BUILD_HOLDER: &str = "berth.build-holder";

/// How long a holder waits for the app's next build.
const IDLE: Duration = Duration::from_secs(600);

/// How many holders this daemon keeps at most.
const MOST_KEPT: usize = 8;

/// A holder: its id, and its shared files as they were made (`files`).
#[derive(Clone)]
struct Holder {
    id: String,
    files: Vec<u8>,
}

/// A kept holder: when it was kept, and which keeping it is (the timer that removes it
/// removes only the keeping it was started for).
pub(super) struct Kept {
    holder: Holder,
    since: Instant,
    generation: u64,
}

/// The holders kept for apps' next builds, by app; and whether berth found it cannot read
/// a holder's files (then builds make none).
#[derive(Default)]
pub(super) struct Pool {
    kept: std::sync::Mutex<HashMap<String, Kept>>,
    unreadable: std::sync::atomic::AtomicBool,
}

impl Pool {
    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A holder a build of `app` has joined (or one being made): given back when the build
/// ends (`give_back`); removed if it is dropped instead (the build was dropped midway, or
/// ended in a way that may leave its container running in the namespace).
pub(super) struct Taken {
    runtime: Runtime,
    app: String,
    holder: Option<Holder>,
}

impl Taken {
    /// The namespace a build's containers join.
    pub(super) fn network_mode(&self) -> String {
        format!("container:{}", self.holder.as_ref().map_or("", |h| h.id.as_str()))
    }

    /// Keeps the holder for the app's next build if its files are as they were made;
    /// otherwise removes it.
    pub(super) async fn give_back(mut self) {
        let Some(id) = self.holder.as_ref().map(|h| h.id.clone()) else { return };
        // Read while the guard still holds it (dropped meanwhile, it goes).
        let files = self.runtime.shared_files(&id).await;
        if files.as_ref() == self.holder.as_ref().map(|h| &h.files)
            && let Some(holder) = self.holder.take()
        {
            self.runtime.keep_build_holder(&self.app, holder);
        } else {
            tracing::info!(app = self.app, "a build changed the files its namespace shares (resolv.conf, hosts, hostname): the namespace goes");
        }
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some(holder) = self.holder.take() {
            let runtime = self.runtime.clone();
            tokio::spawn(async move {
                let _ = runtime.remove_container(&holder.id).await;
            });
        }
    }
}

impl Runtime {
    /// The network a build of `app` runs its containers in: the build network `network`
    /// itself, or a holder on it (`Taken::network_mode`).
    pub(super) async fn build_network(&self, app: Option<&str>, network: &str, extra_hosts: bool) -> (String, Option<Taken>) {
        let taken = match app {
            Some(app) if !extra_hosts && !self.build_holders.unreadable.load(std::sync::atomic::Ordering::Relaxed) => self.take_build_holder(app, network).await,
            _ => None,
        };
        match taken {
            Some(taken) => (taken.network_mode(), Some(taken)),
            None => (network.to_string(), None),
        }
    }

    /// The app's kept holder if it still runs, else a new one on `network`.
    async fn take_build_holder(&self, app: &str, network: &str) -> Option<Taken> {
        let kept = self.build_holders.kept().remove(app);
        if let Some(Kept { holder, .. }) = kept {
            let taken = Taken { runtime: self.clone(), app: app.to_string(), holder: Some(holder.clone()) };
            if self.alive(&holder.id).await.is_ok() {
                return Some(taken);
            }
        }
        match self.make_build_holder(app, network).await {
            Ok(taken) => Some(taken),
            Err(e) => {
                tracing::debug!(app, "the build starts on the build network itself: {e}");
                None
            }
        }
    }

    /// Keeps `holder` for the app's next build; removed `IDLE` after, unless a build took
    /// it meanwhile. One kept already (a build beside this one made its own) goes, and so
    /// do the oldest beyond `MOST_KEPT`.
    fn keep_build_holder(&self, app: &str, holder: Holder) {
        let generation = rand::random::<u64>();
        let gone: Vec<Holder> = {
            let mut kept = self.build_holders.kept();
            let mut gone: Vec<Holder> = kept.insert(app.to_string(), Kept { holder, since: Instant::now(), generation }).map(|k| k.holder).into_iter().collect();
            for app in oldest_beyond(kept.iter().map(|(app, k)| (app.clone(), k.since)).collect(), MOST_KEPT) {
                gone.extend(kept.remove(&app).map(|k| k.holder));
            }
            gone
        };
        let runtime = self.clone();
        let app = app.to_string();
        tokio::spawn(async move {
            for holder in gone {
                let _ = runtime.remove_container(&holder.id).await;
            }
            tokio::time::sleep(IDLE).await;
            let expired = {
                let mut kept = runtime.build_holders.kept();
                match kept.get(&app) {
                    Some(k) if k.generation == generation => kept.remove(&app),
                    _ => None,
                }
            };
            if let Some(k) = expired {
                let _ = runtime.remove_container(&k.holder.id).await;
            }
        });
    }

    /// Removes every holder of `app`'s builds on the engine (the app goes, or is renamed).
    pub async fn remove_build_holders(&self, app: &str) -> Result<(), RuntimeError> {
        let kept = self.build_holders.kept().remove(app).map(|k| k.holder.id);
        let listed = self.labelled(vec![format!("{LABEL_ROOT}={}", self.root), format!("{LABEL_APP}={app}"), LABEL_BUILD_HOLDER.to_string()]).await;
        let (listed, mut first_error) = match listed {
            Ok(listed) => (listed.into_iter().filter_map(|c| c.id).collect(), None),
            Err(e) => (Vec::new(), Some(e)),
        };
        for id in kept.into_iter().chain(listed) {
            if let Err(e) = self.remove_container(&id).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// The files a container joining `id`'s namespace shares with it (resolv.conf, hosts,
    /// hostname), read where the engine keeps them; None where berth cannot read them.
    async fn shared_files(&self, id: &str) -> Option<Vec<u8>> {
        let info = self.docker.inspect_container(id, None).await.ok()?;
        let mut files = Vec::new();
        for path in [info.resolv_conf_path, info.hosts_path, info.hostname_path] {
            files.extend(tokio::fs::read(path?).await.ok()?);
            files.push(0);
        }
        Some(files)
    }

    async fn make_build_holder(&self, app: &str, network: &str) -> Result<Taken, RuntimeError> {
        let image = self.holder_image().await?;
        // Named for no app: other builds on the network can look its name up.
        let name = format!("berth-build-net-{:08x}-{}", rand::random::<u32>(), self.root_tag());
        let id = self.start_holder(image, name, network, None, app, (LABEL_BUILD_HOLDER, "build".to_string())).await?;
        // Removed if anything below fails (the guard's drop).
        let mut taken = Taken { runtime: self.clone(), app: app.to_string(), holder: Some(Holder { id: id.clone(), files: Vec::new() }) };
        let Some(files) = self.shared_files(&id).await else {
            self.build_holders.unreadable.store(true, std::sync::atomic::Ordering::Relaxed);
            return Err(RuntimeError::Container("berth cannot read the files it shares (an engine on another machine?): builds make no holders".into()));
        };
        if let Some(holder) = taken.holder.as_mut() {
            holder.files = files;
        }
        Ok(taken)
    }
}

/// The apps whose holders go so that at most `most` stay: the longest kept first. Pure.
fn oldest_beyond(mut kept: Vec<(String, Instant)>, most: usize) -> Vec<String> {
    kept.sort_by_key(|(_, since)| *since);
    let beyond = kept.len().saturating_sub(most);
    kept.into_iter().take(beyond).map(|(app, _)| app).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beyond_the_most_kept_the_longest_kept_go() {
        let now = Instant::now();
        let at = |app: &str, secs: u64| (app.to_string(), now + Duration::from_secs(secs));
        assert!(oldest_beyond(vec![at("a", 1), at("b", 2)], 2).is_empty());
        assert_eq!(oldest_beyond(vec![at("new", 9), at("old", 1), at("mid", 5)], 2), ["old"]);
        assert_eq!(oldest_beyond(vec![at("c", 3), at("a", 1), at("b", 2), at("d", 4)], 1), ["a", "b", "c"]);
    }
}
