//! Log drains: each app's output sent on as it is written, to a syslog server (RFC 5424
//! over TCP or TLS) or an HTTP(S) endpoint (JSON lines), as `logs:set APP drain URL` (or
//! `--global`) says. `follow` reads every running process container's output from the
//! engine and puts each line into its drain's `ship::Sender`, which buffers (bounded: the
//! oldest lines go first, counted) and sends, retrying with backoff while the drain is
//! down. An app never waits for its drain.
//!
//! `Drains` is the daemon's state of it (the engine holds it): the senders by drain, the
//! containers followed and where each got to, and a wake-up for the follower when a
//! setting changed.

pub mod follow;
pub mod ship;
pub mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use wire::Drain;

/// A drain, the token it is sent with, and whether it may be at a private address.
pub type Key = (Drain, Option<String>, bool);

#[derive(Default)]
pub struct Drains {
    /// One sender per drain and token, made (and its task started) on first use.
    senders: Mutex<HashMap<Key, Arc<ship::Sender>>>,
    /// Containers followed now (id → true), or followed before (false), with the time of
    /// the last line taken (RFC 3339): a container started again is followed from there.
    followed: Mutex<HashMap<String, (bool, String)>>,
    /// A container started, or a drain setting changed: the follower looks again.
    pub changed: Notify,
    /// Drain settings changed this many times: followers ask again where lines go.
    generation: std::sync::atomic::AtomicU64,
}

impl Drains {
    /// The sender for a drain, made and started on first use.
    pub fn sender(&self, key: &Key) -> Arc<ship::Sender> {
        let mut senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = senders.get(key) {
            return sender.clone();
        }
        let sender = Arc::new(ship::Sender::new(key.0.clone(), key.1.clone(), key.2, hostname()));
        tokio::spawn(sender.clone().run());
        senders.insert(key.clone(), sender.clone());
        sender
    }

    /// Stops and forgets the senders no app's lines go to any more.
    fn retain(&self, in_use: &std::collections::HashSet<Key>) {
        self.senders.lock().unwrap_or_else(|e| e.into_inner()).retain(|key, sender| {
            let keep = in_use.contains(key);
            if !keep {
                sender.stop();
            }
            keep
        });
    }

    /// A drain setting changed (`logs:set`): followers ask again at their next line.
    pub fn settings_changed(&self) {
        self.generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.changed.notify_one();
    }

    fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether a container was read before (and is not now).
    fn was_followed(&self, id: &str) -> bool {
        self.followed.lock().unwrap_or_else(|e| e.into_inner()).get(id).is_some_and(|(now, _)| !now)
    }

    /// What the sender of `drain` has done (None: no line went to it since the daemon
    /// started). Summed over its tokens.
    pub fn status(&self, drain: &Drain) -> Option<ship::Status> {
        let senders = self.senders.lock().unwrap_or_else(|e| e.into_inner());
        let mut found = senders.iter().filter(|((d, _, _), _)| d == drain).map(|(_, s)| s.status()).peekable();
        found.peek()?;
        Some(found.fold(ship::Status::default(), |mut sum, s| {
            sum.sent += s.sent;
            sum.dropped += s.dropped;
            sum.buffered += s.buffered;
            sum.failing = sum.failing.or(s.failing);
            sum
        }))
    }

    /// Marks a container followed from now; false if it already is. Returns where its
    /// last follow got to (the RFC 3339 time of the last line taken), if it was followed.
    fn start_following(&self, id: &str) -> Option<Option<String>> {
        let mut followed = self.followed.lock().unwrap_or_else(|e| e.into_inner());
        match followed.get_mut(id) {
            Some((true, _)) => None,
            Some((now, last)) => {
                *now = true;
                Some(Some(last.clone()))
            }
            None => {
                followed.insert(id.to_string(), (true, String::new()));
                Some(None)
            }
        }
    }

    /// Notes the time of the last line taken from a container.
    fn took(&self, id: &str, time: &str) {
        if let Some((_, last)) = self.followed.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            *last = time.to_string();
        }
    }

    fn stop_following(&self, id: &str) {
        if let Some((now, _)) = self.followed.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            *now = false;
        }
    }

    /// Forgets containers that are gone (not in `ids`) and not followed.
    fn forget_except(&self, ids: &std::collections::HashSet<String>) {
        self.followed.lock().unwrap_or_else(|e| e.into_inner()).retain(|id, (now, _)| *now || ids.contains(id));
    }
}

/// This machine's host name, for syslog's HOSTNAME field.
fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}
