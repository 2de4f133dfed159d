//! Handing freed heap memory back to the kernel once a surge of SSH connections is over.
//!
//! glibc's malloc keeps what is freed in its arenas (the main one and one per tokio worker
//! thread) for reuse, and returns pages to the kernel only from the top of the main heap.
//! Thousands of short unauthenticated connections (a flood) leave those arenas full of
//! free but scattered chunks: the daemon's resident memory stayed 4 to 8 MB above idle
//! after one (scripts/bench-ssh.sh), with nothing holding it. `malloc_trim` releases every
//! whole free page of every arena; it is called once the gate empties after a surge (see
//! `gate::SURGE`), not per connection.

/// Returns the heap's free pages to the kernel: 0.5 to 2 ms on the daemon's heaps, once per
/// surge. Only glibc keeps memory this way: elsewhere there is nothing to do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_freed() {
    let start = std::time::Instant::now();
    // SAFETY: malloc_trim takes no pointers and no memory of ours; it locks each arena in
    // turn and is callable from any thread at any time (glibc's malloc_trim(3)).
    let released = unsafe { libc::malloc_trim(0) };
    tracing::debug!(released = released != 0, elapsed = ?start.elapsed(), "handed freed memory back after a surge of connections");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() {}
