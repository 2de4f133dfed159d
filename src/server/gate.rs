//! Who may hold an SSH connection before authenticating: at most `MAX_WAITING` such
//! connections (a new one pushes out the oldest), each for at most `AUTH_DEADLINE`, and an
//! address whose connections keep ending unauthenticated is refused for a while. Idle or
//! hostile sockets then cannot use up the daemon's file descriptors, while an authenticated
//! session is never limited by any of this. Pure bookkeeping: the SSH server applies it,
//! and hands memory back when the gate says it has emptied after a surge.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Unauthenticated connections held at once.
pub const MAX_WAITING: usize = 128;
/// Time from accept to a successful authentication.
pub const AUTH_DEADLINE: Duration = Duration::from_secs(10);
/// Unauthenticated endings per address within `FAILURE_WINDOW` before it is refused.
pub const MAX_FAILURES: u32 = 30;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most (the oldest are forgotten first).
const MAX_TRACKED: usize = 10_000;
/// Unauthenticated connections held at once that make a surge (a flood, or a crowd of
/// clients): once the gate has emptied after one, the memory they used is handed back.
pub const SURGE: usize = MAX_WAITING / 4;

#[derive(Default)]
pub struct Gate {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next: u64,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
    failures: HashMap<IpAddr, (u32, Instant)>,
    /// The gate has held `SURGE` connections since it was last empty.
    surged: bool,
}

impl State {
    /// Forgets connection `id`; true if that emptied the gate after a surge.
    fn remove(&mut self, id: u64) -> bool {
        self.waiting.retain(|(w, _)| *w != id);
        if self.waiting.is_empty() && self.surged {
            self.surged = false;
            return true;
        }
        false
    }
}

/// A connection let in: `evicted` fires when a newer one needs its place before it has
/// authenticated.
pub struct Ticket {
    pub id: u64,
    pub evicted: oneshot::Receiver<()>,
}

impl Gate {
    /// Lets a new connection from `ip` in, or None if that address is throttled. Loopback
    /// is never throttled (the server's own tools and tests).
    pub fn admit(&self, ip: IpAddr, now: Instant) -> Option<Ticket> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if !ip.is_loopback()
            && let Some((count, since)) = state.failures.get(&ip)
            && *count >= MAX_FAILURES
            && now.duration_since(*since) < FAILURE_WINDOW
        {
            return None;
        }
        while state.waiting.len() >= MAX_WAITING {
            if let Some((_, evict)) = state.waiting.pop_front() {
                let _ = evict.send(());
            }
        }
        let id = state.next;
        state.next += 1;
        let (tx, evicted) = oneshot::channel();
        state.waiting.push_back((id, tx));
        state.surged |= state.waiting.len() >= SURGE;
        Some(Ticket { id, evicted })
    }

    /// The connection authenticated: it no longer counts against anything. True when that
    /// emptied the gate after a surge (see `ended`).
    pub fn authenticated(&self, id: u64) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.remove(id)
    }

    /// The connection ended; if it never authenticated, that counts against its address.
    /// True when that emptied the gate after a surge: the caller may hand back the memory
    /// the surge used (the allocator keeps it otherwise).
    pub fn ended(&self, id: u64, ip: IpAddr, authenticated: bool, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let drained = state.remove(id);
        if authenticated || ip.is_loopback() {
            return drained;
        }
        let entry = state.failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
        if state.failures.len() > MAX_TRACKED {
            state.failures.retain(|_, (_, since)| now.duration_since(*since) < FAILURE_WINDOW);
        }
        drained
    }

    pub fn waiting(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_full_gate_pushes_out_the_oldest_waiting_connection() {
        let gate = Gate::default();
        let now = Instant::now();
        let mut tickets: Vec<Ticket> = (0..MAX_WAITING).map(|_| gate.admit(ip("198.51.100.1"), now).unwrap()).collect();
        gate.authenticated(tickets[5].id);
        let _newer = gate.admit(ip("198.51.100.2"), now).unwrap();
        let _newest = gate.admit(ip("198.51.100.2"), now).unwrap();
        assert!(tickets[0].evicted.try_recv().is_ok(), "the oldest goes first");
        assert!(tickets[1].evicted.try_recv().is_err(), "one place was freed by an authentication");
        assert_eq!(gate.waiting(), MAX_WAITING);
    }

    #[test]
    fn an_address_that_keeps_failing_is_refused_for_a_while() {
        let gate = Gate::default();
        let now = Instant::now();
        let bad = ip("203.0.113.9");
        for _ in 0..MAX_FAILURES {
            let t = gate.admit(bad, now).unwrap();
            gate.ended(t.id, bad, false, now);
        }
        assert!(gate.admit(bad, now + Duration::from_secs(1)).is_none());
        assert!(gate.admit(ip("203.0.113.10"), now).is_some(), "others are not affected");
        assert!(gate.admit(bad, now + FAILURE_WINDOW).is_some(), "the refusal ends");
        // Loopback and authenticated connections never count.
        for _ in 0..MAX_FAILURES * 2 {
            let t = gate.admit(ip("127.0.0.1"), now).unwrap();
            gate.ended(t.id, ip("127.0.0.1"), false, now);
        }
        assert!(gate.admit(ip("127.0.0.1"), now).is_some());
    }

    #[test]
    fn the_gate_says_once_when_it_empties_after_a_surge() {
        let gate = Gate::default();
        let now = Instant::now();
        let local = ip("127.0.0.1");
        // A few at a time is no surge.
        let t = gate.admit(local, now).unwrap();
        assert!(!gate.ended(t.id, local, false, now));
        let tickets: Vec<Ticket> = (0..SURGE).map(|_| gate.admit(local, now).unwrap()).collect();
        let (last, rest) = tickets.split_last().unwrap();
        for t in rest {
            assert!(!gate.ended(t.id, local, false, now), "not empty yet");
        }
        assert!(gate.authenticated(last.id), "the last one out empties the gate");
        assert!(!gate.ended(last.id, local, true, now), "said once");
    }
}
